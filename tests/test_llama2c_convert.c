/* test_llama2c_convert.c — `aflorad convert llama2c`'s engine side
 * (llama2c_convert): a llama2.c checkpoint written as a Hugging Face LLaMA
 * folder. Random checkpoints (tied and untied classifier) are converted; the
 * folder's tensors, read back with the safetensors reader under
 * transformers' names, must equal llama2c_load's model bit for bit, and
 * config.json must carry LlamaForCausalLM, the header's sizes and KV heads,
 * rms_norm_eps 1e-5, rope_theta 10000, tie_word_embeddings and
 * max_position_embeddings = seq_len (and read back through config_from_json
 * to the loader's config). A failing conversion (truncated file, a folder
 * holding someone else's file) leaves no folder, no staging directory and
 * an existing folder untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/folder.h"
#include "base/json.h"
#include "base/rng.h"
#include "io/hfmodel.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "testutil.h"

static char err[512];

/* Header {dim 16, hidden 24, 2 layers, 4 heads, 2 KV heads, vocab, seq 12}
 * and random floats in run.c's layout; truncate drops the last float. */
static void write_random(const char *path, int32_t vocab_field, bool truncate) {
    int32_t h[7] = {16, 24, 2, 4, 2, vocab_field, 12};
    size_t dim = 16, hid = 24, L = 2, kvd = 8, V = (size_t)abs(vocab_field), hs = 4;
    size_t n = V * dim + L * (dim + dim * dim + 2 * kvd * dim + dim * dim + dim + 3 * hid * dim) +
               dim + (size_t)h[6] * hs + (vocab_field < 0 ? V * dim : 0);
    float *body = malloc(n * sizeof *body);
    assert_non_null(body);
    aflo_rng rng;
    rng_seed(&rng, 17);
    for (size_t i = 0; i < n; i++) body[i] = rng_uniform_range(&rng, -0.5f, 0.5f);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(h, sizeof h[0], 7, f), 7);
    assert_int_equal(fwrite(body, sizeof *body, n - truncate, f), n - truncate);
    assert_int_equal(fclose(f), 0);
    free(body);
}

static int entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void check_convert(void **state, int32_t vocab_field) {
    char bin[600], out[600], path[700];
    path_in(bin, sizeof bin, state, "model.bin");
    path_in(out, sizeof out, state, "hf");
    write_random(bin, vocab_field, false);
    if (llama2c_convert(bin, out, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(entries(out), 2);

    aflo_adapter_config full = {.method = METHOD_FULL};
    aflo_model *m = llama2c_load(bin, &full, 0, err, sizeof err);
    if (!m) fail_msg("%s", err);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    st_file *f = st_open(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    assert_int_equal(st_count(f), (size_t)model_param_count(m));
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        char name[160];
        assert_int_equal(model_hf_name(m, p, name, sizeof name), 0);
        /* transformers' names */
        assert_true(strncmp(name, "model.", 6) == 0 || strcmp(name, "lm_head.weight") == 0);
        long k = st_find(f, name);
        if (k < 0) fail_msg("%s missing from the folder", name);
        assert_int_equal(st_numel(f, (size_t)k), p->size);
        const int64_t *shape = st_shape(f, (size_t)k);
        assert_int_equal(shape[0], p->shape[0]);
        if (p->ndim == 2) assert_int_equal(shape[1], p->shape[1]);
        float *d = malloc(p->size * sizeof *d);
        assert_non_null(d);
        assert_int_equal(st_read_f32_at(f, (size_t)k, d, p->size, err, sizeof err), 0);
        assert_memory_equal(d, p->data, p->size * sizeof *d);
        free(d);
    }
    assert_int_equal(st_find(f, "model.layers.1.self_attn.k_proj.weight") >= 0, 1);
    assert_int_equal(st_find(f, "lm_head.weight") >= 0, vocab_field < 0);
    st_close(f);

    /* config.json: the fields by name, then the whole through the reader */
    snprintf(path, sizeof path, "%s/config.json", out);
    json_value *j = read_json_file(path, 1 << 20, err, sizeof err);
    if (!j) fail_msg("%s", err);
    const json_value *arch = json_get(j, "architectures");
    assert_non_null(arch);
    assert_string_equal(json_string(json_at(arch, 0), NULL), "LlamaForCausalLM");
    assert_string_equal(json_string(json_get(j, "model_type"), NULL), "llama");
    assert_int_equal(json_int(json_get(j, "hidden_size")), 16);
    assert_int_equal(json_int(json_get(j, "intermediate_size")), 24);
    assert_int_equal(json_int(json_get(j, "num_hidden_layers")), 2);
    assert_int_equal(json_int(json_get(j, "num_attention_heads")), 4);
    assert_int_equal(json_int(json_get(j, "num_key_value_heads")), 2);
    assert_int_equal(json_int(json_get(j, "vocab_size")), abs(vocab_field));
    assert_int_equal(json_int(json_get(j, "max_position_embeddings")), 12);
    assert_true(fabs(json_number(json_get(j, "rms_norm_eps")) - 1e-5) < 1e-12);
    assert_true(json_number(json_get(j, "rope_theta")) == 10000.0);
    assert_int_equal(json_bool(json_get(j, "tie_word_embeddings")), vocab_field > 0);
    assert_string_equal(json_string(json_get(j, "hidden_act"), NULL), "silu");
    json_free(j);
    aflo_config c, want;
    if (hfmodel_read_config(out, &c, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(llama2c_read_config(bin, &want, err, sizeof err), 0);
    assert_int_equal(c.num_key_value_heads, want.num_key_value_heads);
    assert_int_equal(c.tie_word_embeddings, want.tie_word_embeddings);
    assert_true(c.rms_norm_eps == want.rms_norm_eps && c.rope_theta == want.rope_theta);
    model_free(m);
}

static void test_convert_tied(void **state) { check_convert(state, 40); }
static void test_convert_untied(void **state) { check_convert(state, -40); }

static void test_convert_failures_leave_nothing(void **state) {
    char bin[600], out[600], path[700];
    path_in(bin, sizeof bin, state, "short.bin");
    path_in(out, sizeof out, state, "hf");
    write_random(bin, 40, true);
    assert_int_equal(llama2c_convert(bin, out, err, sizeof err), -1);
    assert_non_null(strstr(err, "implies"));
    struct stat st;
    assert_int_equal(stat(out, &st), -1);
    assert_int_equal(entries(*state), 1); /* short.bin alone: no staging folder */

    /* a folder holding another file is not replaced */
    path_in(bin, sizeof bin, state, "model.bin");
    write_random(bin, 40, false);
    assert_int_equal(mkdir(out, 0755), 0);
    snprintf(path, sizeof path, "%s/notes.txt", out);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("mine", f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(llama2c_convert(bin, out, err, sizeof err), -1);
    assert_int_equal(entries(out), 1);
    assert_int_equal(entries(*state), 3); /* short.bin, model.bin, hf */

    /* a missing file */
    path_in(bin, sizeof bin, state, "absent.bin");
    assert_int_equal(llama2c_convert(bin, out, err, sizeof err), -1);
    assert_int_equal(entries(out), 1);
}

/* Converting again replaces the folder written before. */
static void test_convert_replaces(void **state) {
    char bin[600], out[600];
    path_in(bin, sizeof bin, state, "model.bin");
    path_in(out, sizeof out, state, "hf");
    write_random(bin, 40, false);
    assert_int_equal(llama2c_convert(bin, out, err, sizeof err), 0);
    write_random(bin, -40, false);
    assert_int_equal(llama2c_convert(bin, out, err, sizeof err), 0);
    aflo_config c;
    assert_int_equal(hfmodel_read_config(out, &c, err, sizeof err), 0);
    assert_false(c.tie_word_embeddings);
    assert_int_equal(entries(out), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_convert_tied, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_convert_untied, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_convert_failures_leave_nothing, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_convert_replaces, tmpdir_setup, tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
