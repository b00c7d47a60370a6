/* test_modelinfo.c — model folders described (daemon/modelinfo.h): a
 * LLaMA-2-7B-shaped config (the published parameter count), DeBERTa-v3-base
 * and v2-style configs with the deberta_spm tokenizer (counted from the
 * config as DebertaV2ForSequenceClassification; the spm.model signs the
 * cache), BF16 weights
 * told by their header, the sp_bpe fixture tokenizer with and without a
 * chat template (recognised, unknown), the family's targets and tasks, the
 * memory estimate at the defaults, the demo without files, and the cache:
 * an edited folder is described again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/folder.h"
#include "io/hfmodel.h"
#include "modelinfo.h"
#include "synth.h"
#include "testutil.h"

static const char llama7b[] =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","
    "\"vocab_size\":32000,\"hidden_size\":4096,\"num_hidden_layers\":32,"
    "\"num_attention_heads\":32,\"intermediate_size\":11008,\"hidden_act\":\"silu\","
    "\"max_position_embeddings\":4096,\"rms_norm_eps\":1e-05}";

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static void copy_file(const char *from, const char *to) {
    size_t len;
    char e[256];
    char *text = read_text_file(from, 1 << 24, &len, e, sizeof e);
    if (!text) fail_msg("%s", e);
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(text);
}

/* One tensor named name of rows x cols in dtype (2 or 4 bytes), its data a
 * hole. */
static void write_sparse_tensor(const char *path, const char *name, const char *dtype, long rows,
                                long cols) {
    char header[256];
    long bytes = rows * cols * (strcmp(dtype, "F32") == 0 ? 4 : 2);
    int n = snprintf(header, sizeof header,
                     "{\"%s\":{\"dtype\":\"%s\",\"shape\":[%ld,%ld],"
                     "\"data_offsets\":[0,%ld]}}",
                     name, dtype, rows, cols, bytes);
    while (n % 8) header[n++] = ' ';
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)n >> (8 * i));
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(len, 1, 8, f), 8);
    assert_int_equal(fwrite(header, 1, (size_t)n, f), (size_t)n);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(truncate(path, 8 + n + bytes), 0);
}

static void write_sparse_safetensors(const char *path, const char *dtype, long rows, long cols) {
    write_sparse_tensor(path, "model.embed_tokens.weight", dtype, rows, cols);
}

/* A 7B-shaped folder at dir with the sp_bpe tokenizer and BF16 weights. */
static void make_llama(const char *dir) {
    char p[4200];
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, llama7b);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    copy_file("tests/tokenizer_fixtures/sp_bpe/tokenizer.json", p);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    copy_file("tests/tokenizer_fixtures/sp_bpe/tokenizer_config.json", p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_sparse_safetensors(p, "BF16", 32000, 4096);
}

static void describe(const char *dir, model_info *m) {
    aflo_config c;
    char e[512];
    if (hfmodel_read_config(dir, &c, e, sizeof e) != 0) fail_msg("%s", e);
    modelinfo_describe(dir, &c, m);
}

/* tokenizer_config.json of dir: the fixture's with "chat_template": template. */
static void set_template(const char *dir, const char *template_json) {
    char p[4200], e[256];
    size_t len;
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    char *text = read_text_file("tests/tokenizer_fixtures/sp_bpe/tokenizer_config.json", 1 << 20,
                                &len, e, sizeof e);
    assert_non_null(text);
    char *brace = strrchr(text, '}');
    assert_non_null(brace);
    *brace = '\0';
    size_t cap = len + strlen(template_json) + 64;
    char *out = malloc(cap);
    assert_non_null(out);
    snprintf(out, cap, "%s, \"chat_template\": %s}\n", text, template_json);
    write_file(p, out);
    free(out);
    free(text);
}

static void test_llama_folder(void **state) {
    char dir[4096];
    path_in(dir, sizeof dir, state, "llama");
    make_llama(dir);
    model_info m;
    describe(dir, &m);
    assert_non_null(m.family);
    assert_string_equal(m.family->name, "llama");
    assert_int_equal(m.tasks, 1u << TASK_CAUSAL_LM);
    const char *names[TASK_COUNT];
    assert_int_equal(modelinfo_task_names(&m, names, TASK_COUNT), 1);
    assert_string_equal(names[0], "causal_lm");
    /* Llama-2-7b-hf: transformers reports 6 738 415 616 parameters */
    assert_int_equal(m.parameters, 6738415616LL);
    assert_string_equal(m.dtype, "BF16");
    assert_int_equal(m.vocab_size, 32000);
    assert_int_equal(m.context_length, 4096);
    assert_true(m.tokenizer);
    assert_string_equal(m.tokenizer_kind, "spm_bpe");
    assert_string_equal(m.chat_template, "");
    assert_string_equal(m.chat_template_error, "");
    /* the estimate holds at least the fp32 weights, and says its settings */
    assert_true(m.train_memory_bytes > 4 * m.parameters);
    assert_non_null(strstr(m.train_memory_note, "task causal_lm"));

    /* an edited folder is described again: a ChatML template, then one the
     * engine does not know */
    size_t len;
    char e[256];
    char *chatml =
        read_text_file("tests/chat_fixtures/templates/chatml.jinja", 1 << 20, &len, e, sizeof e);
    assert_non_null(chatml);
    char *quoted = malloc(len * 2 + 3), *q = quoted;
    assert_non_null(quoted);
    *q++ = '"';
    for (size_t i = 0; i < len; i++) {
        if (chatml[i] == '"' || chatml[i] == '\\') *q++ = '\\';
        if (chatml[i] == '\n') {
            *q++ = '\\';
            *q++ = 'n';
            continue;
        }
        *q++ = chatml[i];
    }
    *q++ = '"';
    *q = '\0';
    set_template(dir, quoted);
    free(quoted);
    free(chatml);
    describe(dir, &m);
    assert_string_equal(m.chat_template, "chatml");
    set_template(dir, "\"{{ messages }} and more\"");
    describe(dir, &m);
    assert_true(m.tokenizer);
    assert_string_equal(m.chat_template, "");
    assert_true(m.chat_template_error[0] != '\0');
    modelinfo_cache_clear();
}

/* The built-in demo has no files: described from its config, fp32, its
 * WordPiece vocabulary, BERT's tasks and targets. */
static void test_demo(void **state) {
    (void)state;
    aflo_config c;
    synth_demo_config(&c);
    model_info m;
    modelinfo_describe(NULL, &c, &m);
    assert_string_equal(m.family->name, "bert");
    assert_int_equal(m.tasks, (1u << TASK_CLASSIFICATION) | (1u << TASK_REGRESSION));
    char text[64];
    modelinfo_tasks_text(&m, text, sizeof text);
    assert_string_equal(text, "classification, regression");
    assert_string_equal(m.dtype, "F32");
    assert_string_equal(m.tokenizer_kind, "wordpiece");
    assert_int_equal(m.context_length, c.max_position_embeddings);
    /* by hand: embeddings 162*32+64, a layer 8544, pooler 1056 */
    assert_int_equal(m.parameters, 5248 + 2 * 8544 + 1056);
    assert_true(m.train_memory_bytes > 4 * m.parameters);
    assert_non_null(strstr(m.train_memory_note, "task classification"));
}

/* A folder whose weights cannot be read keeps the config's description. */
static void test_unreadable_weights(void **state) {
    char dir[4096], p[4200];
    path_in(dir, sizeof dir, state, "noweights");
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, llama7b);
    model_info m;
    describe(dir, &m);
    assert_int_equal(m.parameters, 6738415616LL);
    assert_string_equal(m.dtype, "");
    assert_false(m.tokenizer);
    assert_string_equal(m.tokenizer_kind, "");
    modelinfo_cache_clear();
}

/* microsoft/deberta-v3-base's config.json (the keys the engine reads). */
static const char deberta_v3_base[] =
    "{\"model_type\":\"deberta-v2\",\"vocab_size\":128100,\"hidden_size\":768,"
    "\"num_hidden_layers\":12,\"num_attention_heads\":12,\"intermediate_size\":3072,"
    "\"hidden_act\":\"gelu\",\"max_position_embeddings\":512,\"type_vocab_size\":0,"
    "\"layer_norm_eps\":1e-7,\"relative_attention\":true,\"max_relative_positions\":-1,"
    "\"position_buckets\":256,\"norm_rel_ebd\":\"layer_norm\",\"share_att_key\":true,"
    "\"pos_att_type\":\"p2c|c2p\",\"position_biased_input\":false,\"pad_token_id\":0}";

/* A v2-style config: absolute positions, token types, separate positional
 * projections, no buckets, no LayerNorm on the relative embeddings. */
static const char deberta_v2_style[] =
    "{\"model_type\":\"deberta-v2\",\"vocab_size\":1000,\"hidden_size\":64,"
    "\"num_hidden_layers\":3,\"num_attention_heads\":4,\"intermediate_size\":96,"
    "\"hidden_act\":\"gelu\",\"max_position_embeddings\":128,\"type_vocab_size\":2,"
    "\"relative_attention\":true,\"max_relative_positions\":-1,\"position_buckets\":-1,"
    "\"norm_rel_ebd\":\"none\",\"share_att_key\":false,\"pos_att_type\":[\"p2c\",\"c2p\"],"
    "\"position_biased_input\":true}";

/* A DeBERTa folder at dir: config, the deberta_spm tokenizer as the hub
 * ships it (spm.model + tokenizer_config.json), and weights of the
 * pre-training checkpoint's shape (the word embeddings only here: the
 * count must come from the config, not the file). */
static void make_deberta(const char *dir, const char *config, long vocab, long hidden) {
    char p[4200];
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, config);
    snprintf(p, sizeof p, "%s/spm.model", dir);
    copy_file("tests/tokenizer_fixtures/deberta_spm/spm.model", p);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    copy_file("tests/tokenizer_fixtures/deberta_spm/tokenizer_config.json", p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_sparse_tensor(p, "deberta.embeddings.word_embeddings.weight", "F32", vocab, hidden);
}

static void test_deberta_folders(void **state) {
    char dir[4096], p[4200];
    path_in(dir, sizeof dir, state, "deberta-v3-base");
    make_deberta(dir, deberta_v3_base, 128100, 768);
    model_info m;
    describe(dir, &m);
    assert_non_null(m.family);
    assert_string_equal(m.family->name, "deberta");
    assert_string_equal(m.model_type, "deberta-v2");
    assert_int_equal(m.tasks, (1u << TASK_CLASSIFICATION) | (1u << TASK_REGRESSION));
    /* DebertaV2ForSequenceClassification(deberta-v3-base), 2 labels:
     * 184 423 682, as tests/golden/make_deberta_golden.py's port of
     * transformers' modules counts it (98.4M of it the embedding) */
    assert_int_equal(m.parameters, 184423682LL);
    assert_string_equal(m.dtype, "F32");
    assert_int_equal(m.context_length, 512);
    assert_true(m.tokenizer);
    assert_string_equal(m.tokenizer_kind, "spm_unigram");
    assert_true(m.train_memory_bytes > 4 * m.parameters);

    /* spm.model signs the description: a broken one is seen at once */
    snprintf(p, sizeof p, "%s/spm.model", dir);
    write_file(p, "not a protobuf");
    describe(dir, &m);
    assert_false(m.tokenizer);
    assert_string_equal(m.tokenizer_kind, "");

    /* v2 style: absolute positions (128 x 64), token types (2 x 64), no
     * rel LayerNorm, pos_key_proj and pos_query_proj per layer, span 128:
     * 206 114 by the same port */
    path_in(dir, sizeof dir, state, "deberta-v2-style");
    make_deberta(dir, deberta_v2_style, 1000, 64);
    describe(dir, &m);
    assert_string_equal(m.family->name, "deberta");
    assert_int_equal(m.parameters, 206114LL);
    modelinfo_cache_clear();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_llama_folder, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_deberta_folders, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test(test_demo),
        cmocka_unit_test_setup_teardown(test_unreadable_weights, tmpdir_setup, tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
