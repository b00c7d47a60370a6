/* test_adapter_io.c — adapters out (PEFT folder, native file) and back in.
 *
 * The fold proof: a tiny model with random non-zero adapters is exported as
 * a PEFT folder; a plain model (method full) then gets, for every adapted
 * layer, W = W0 + (lora_alpha / r) lora_B lora_A computed in double from the
 * exported file alone (keys built here from PEFT's documented layout, not
 * from the engine's tables), and the head from the file's modules_to_save
 * keys. Its logits must equal the adapter model's: that is what PEFT would
 * compute after merge_and_unload(). target_modules is checked against PEFT's
 * matching rules (suffix match for a list, full match for a regex string)
 * over every module name of the transformers model.
 *
 * The native round trip must reproduce logits bit for bit; malformed native
 * files (wrong rank, missing tensor, wrong format tag, ...) must fail with a
 * message naming the problem and leave the model untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/adapter_info.h"
#include "io/adapter_native.h"
#include "io/adapter_peft.h"
#include "io/hfmodel.h"
#include "io/hfmodel_export.h"
#include "base/json.h"
#include "model/model.h"
#include "testutil.h"
#include "base/rng.h"
#include "io/safetensors.h"

#define B 3
#define S 6
#define NUM_LABELS 3
#define RANK 4
#define SEED 21

static char errbuf[1024];

/* PEFT's names for the six adapted modules of a BERT layer, written out here
 * independently of the engine's module table. */
static const char *const hf_module_paths[6] = {
    "attention.self.query",   "attention.self.key", "attention.self.value",
    "attention.output.dense", "intermediate.dense", "output.dense",
};

/* ---------------------------------------------------------------- temp dirs */

/* ---------------------------------------------------------------- models */

static aflo_model *make_model(const aflo_config *c, aflo_method method, unsigned targets,
                              float alpha, int rank) {
    aflo_adapter_config ac = {.method = method,
                              .rank = rank,
                              .alpha = alpha,
                              .targets = targets,
                              .projections = PROJ_ALL};
    aflo_model *m =
        model_create(c, &ac, TASK_CLASSIFICATION, NUM_LABELS, SEED, errbuf, sizeof errbuf);
    if (!m) fail_msg("model_create: %s", errbuf);
    return m;
}

/* Every tensor random and non-zero-ish: base in [-0.2, 0.2] (LayerNorm
 * weights around 1), adapters in [-0.5, 0.5], so every path matters. */
static void randomize(aflo_model *m, uint64_t seed, bool base_too) {
    aflo_rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->group == PGROUP_BASE && !base_too) continue;
        float lo = p->group == PGROUP_ADAPTER ? -0.5f : -0.2f, hi = -lo;
        float off = p->role == PROLE_NORM_WEIGHT ? 1.0f : 0.0f;
        for (size_t j = 0; j < p->size; j++) p->data[j] = off + rng_uniform_range(&rng, lo, hi);
    }
}

static void copy_base(aflo_model *dst, aflo_model *src) {
    for (int i = 0; i < model_param_count(src); i++) {
        aflo_param *p = model_param(src, i);
        if (p->group != PGROUP_BASE) continue;
        assert_int_equal(model_set_tensor(dst, p->name, p->data, p->size, errbuf, sizeof errbuf),
                         0);
    }
}

typedef struct {
    int32_t ids[B * S], types[B * S];
    uint8_t mask[B * S];
    aflo_batch batch;
} fixture_batch;

static void make_batch(fixture_batch *fb, int pad) {
    static const int lens[B] = {6, 4, 2};
    aflo_rng rng;
    rng_seed(&rng, 7);
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++) {
            int i = b * S + s;
            bool real = s < lens[b];
            fb->ids[i] = real ? 2 + (int)rng_below(&rng, 28) : pad;
            fb->types[i] = 0;
            fb->mask[i] = real;
        }
    fb->batch = (aflo_batch){.batch = B,
                             .seq = S,
                             .input_ids = fb->ids,
                             .token_type_ids = fb->types,
                             .attention_mask = fb->mask};
}

static void logits_of(aflo_model *m, float out[B * NUM_LABELS]) {
    fixture_batch fb;
    make_batch(&fb, model_config(m)->pad_token_id);
    if (model_forward(m, &fb.batch, NULL, errbuf, sizeof errbuf)) fail_msg("forward: %s", errbuf);
    memcpy(out, model_logits(m), sizeof(float) * B * NUM_LABELS);
}

static double max_abs(const float *a, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

/* |a - b| <= tol * max|b| elementwise */
static void assert_logits_close(const float *a, const float *b, double tol) {
    double scale = max_abs(b, B * NUM_LABELS);
    assert_true(scale > 1e-3);
    for (int i = 0; i < B * NUM_LABELS; i++)
        if (fabs((double)a[i] - b[i]) > tol * scale)
            fail_msg("logit %d: %.9g vs %.9g (tolerance %.3g)", i, (double)a[i], (double)b[i],
                     tol * scale);
}

/* ---------------------------------------------------------------- reading a PEFT folder */

static json_value *read_json(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char text[65536];
    size_t n = fread(text, 1, sizeof text, f);
    fclose(f);
    json_value *v = json_parse(text, n, 0, errbuf, sizeof errbuf);
    if (!v) fail_msg("%s: %s", path, errbuf);
    return v;
}

/* Module names of a transformers BertForSequenceClassification /
 * RobertaForSequenceClassification (the Linear ones and their neighbours),
 * as peft's target matching sees them. */
static int hf_module_names(char names[][96], bool roberta, int layers) {
    const char *pre = roberta ? "roberta." : "bert.";
    int n = 0;
    snprintf(names[n++], 96, "%sembeddings.word_embeddings", pre);
    for (int l = 0; l < layers; l++) {
        for (int k = 0; k < 6; k++)
            snprintf(names[n++], 96, "%sencoder.layer.%d.%s", pre, l, hf_module_paths[k]);
        snprintf(names[n++], 96, "%sencoder.layer.%d.attention.output.LayerNorm", pre, l);
        snprintf(names[n++], 96, "%sencoder.layer.%d.output.LayerNorm", pre, l);
    }
    if (roberta) {
        snprintf(names[n++], 96, "classifier.dense");
        snprintf(names[n++], 96, "classifier.out_proj");
    } else {
        snprintf(names[n++], 96, "bert.pooler.dense");
        snprintf(names[n++], 96, "classifier");
    }
    return n;
}

/* Does peft's check_target_module_exists select `name`? */
static bool peft_selects(const json_value *target_modules, const char *name) {
    const char *re = json_string(target_modules, NULL);
    if (re) { /* a string: re.fullmatch */
        char anchored[600];
        snprintf(anchored, sizeof anchored, "^(%s)$", re);
        regex_t rx;
        assert_int_equal(regcomp(&rx, anchored, REG_EXTENDED | REG_NOSUB), 0);
        bool hit = regexec(&rx, name, 0, NULL, 0) == 0;
        regfree(&rx);
        return hit;
    }
    /* a list: key == t or key.endswith("." + t) */
    for (size_t i = 0; i < json_len(target_modules); i++) {
        const char *t = json_string(json_at(target_modules, i), NULL);
        assert_non_null(t);
        size_t nl = strlen(name), tl = strlen(t);
        if (strcmp(name, t) == 0) return true;
        if (nl > tl && name[nl - tl - 1] == '.' && strcmp(name + nl - tl, t) == 0) return true;
    }
    return false;
}

static void read_tensor(const st_file *f, const char *key, float *dst, size_t n, int rows,
                        int cols) {
    long i = st_find(f, key);
    if (i < 0) fail_msg("PEFT file lacks %s", key);
    assert_int_equal(st_ndim(f, (size_t)i), cols ? 2 : 1);
    assert_int_equal(st_shape(f, (size_t)i)[0], rows);
    if (cols) assert_int_equal(st_shape(f, (size_t)i)[1], cols);
    assert_int_equal(st_read_f32(f, key, dst, n, errbuf, sizeof errbuf), 0);
}

/* ---------------------------------------------------------------- the fold proof */

static void fold_proof(void **state, bool roberta, aflo_method method, unsigned targets,
                       float alpha, double expect_lora_alpha) {
    aflo_config c;
    tiny_config(&c, roberta);
    aflo_model *m = make_model(&c, method, targets, alpha, RANK);
    randomize(m, 99, true);
    char dir[600];
    path_in(dir, sizeof dir, state, "peft");
    adapter_export_info info = {.base_model = roberta ? "tiny-roberta" : "tiny-bert"};
    if (adapter_export_peft(m, dir, &info, errbuf, sizeof errbuf)) fail_msg("export: %s", errbuf);

    /* adapter_config.json */
    char path[700];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    json_value *cfg = read_json(path);
    assert_string_equal(json_string(json_get(cfg, "peft_type"), NULL), "LORA");
    assert_string_equal(json_string(json_get(cfg, "task_type"), NULL), "SEQ_CLS");
    assert_string_equal(json_string(json_get(cfg, "bias"), NULL), "none");
    assert_string_equal(json_string(json_get(cfg, "base_model_name_or_path"), NULL),
                        info.base_model);
    assert_int_equal(json_type_of(json_get(cfg, "fan_in_fan_out")), JSON_BOOL);
    assert_false(json_bool(json_get(cfg, "fan_in_fan_out")));
    assert_true(json_bool(json_get(cfg, "inference_mode")));
    assert_true(json_number(json_get(cfg, "lora_dropout")) == 0.0);
    assert_int_equal(json_int(json_get(cfg, "r")), RANK);
    double lora_alpha = json_number(json_get(cfg, "lora_alpha"));
    assert_true(lora_alpha == expect_lora_alpha);
    const json_value *mts = json_get(cfg, "modules_to_save");
    assert_int_equal(json_len(mts), roberta ? 1 : 2);
    assert_string_equal(json_string(json_at(mts, 0), NULL), "classifier");
    if (!roberta) assert_string_equal(json_string(json_at(mts, 1), NULL), "pooler");
    /* target_modules selects exactly the adapted modules */
    char names[64][96];
    int nn = hf_module_names(names, roberta, c.num_hidden_layers);
    const json_value *tm = json_get(cfg, "target_modules");
    for (int i = 0; i < nn; i++) {
        bool want = false;
        for (int k = 0; k < 6; k++)
            if (targets & (1u << k)) {
                size_t nl = strlen(names[i]), pl = strlen(hf_module_paths[k]);
                want |= nl > pl && strcmp(names[i] + nl - pl, hf_module_paths[k]) == 0 &&
                        names[i][nl - pl - 1] == '.' && strstr(names[i], ".encoder.layer.") &&
                        /* "output.dense" must not be taken for "attention.output.dense" */
                        !(k == 5 && strstr(names[i], "attention.output.dense"));
            }
        if (peft_selects(tm, names[i]) != want)
            fail_msg("target_modules %s module %s", want ? "misses" : "wrongly selects", names[i]);
    }

    /* the merged model, from the exported file alone */
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    st_file *f = st_open(path, errbuf, sizeof errbuf);
    if (!f) fail_msg("%s", errbuf);
    aflo_model *merged = make_model(&c, METHOD_FULL, 0, 0, 0);
    copy_base(merged, m);
    const char *pre = roberta ? "roberta." : "bert.";
    int H = c.hidden_size, I = c.intermediate_size, consumed = 0;
    for (int l = 0; l < c.num_hidden_layers; l++)
        for (int k = 0; k < 6; k++) {
            if (!(targets & (1u << k))) continue;
            int in = k == 5 ? I : H, out = k == 4 ? I : H;
            char key[256], wname[128];
            float *A = malloc(sizeof(float) * RANK * in), *Bm = malloc(sizeof(float) * out * RANK);
            assert_non_null(A);
            assert_non_null(Bm);
            snprintf(key, sizeof key, "base_model.model.%sencoder.layer.%d.%s.lora_A.weight", pre,
                     l, hf_module_paths[k]);
            read_tensor(f, key, A, (size_t)RANK * in, RANK, in);
            snprintf(key, sizeof key, "base_model.model.%sencoder.layer.%d.%s.lora_B.weight", pre,
                     l, hf_module_paths[k]);
            read_tensor(f, key, Bm, (size_t)out * RANK, out, RANK);
            consumed += 2;
            snprintf(wname, sizeof wname, "encoder.layer.%d.%s.weight", l, hf_module_paths[k]);
            aflo_param *W = model_find_param(merged, wname);
            assert_non_null(W);
            for (int o = 0; o < out; o++)
                for (int j = 0; j < in; j++) {
                    double d = 0;
                    for (int q = 0; q < RANK; q++) d += (double)Bm[o * RANK + q] * A[q * in + j];
                    W->data[o * in + j] = (float)(W->data[o * in + j] + lora_alpha / RANK * d);
                }
            free(A);
            free(Bm);
        }
    struct {
        const char *key, *name;
        int rows, cols;
    } head[4] = {
        {roberta ? "base_model.model.classifier.dense.weight"
                 : "base_model.model.bert.pooler.dense.weight",
         "pooler.dense.weight", H, H},
        {roberta ? "base_model.model.classifier.dense.bias"
                 : "base_model.model.bert.pooler.dense.bias",
         "pooler.dense.bias", H, 0},
        {roberta ? "base_model.model.classifier.out_proj.weight"
                 : "base_model.model.classifier.weight",
         "classifier.weight", NUM_LABELS, H},
        {roberta ? "base_model.model.classifier.out_proj.bias" : "base_model.model.classifier.bias",
         "classifier.bias", NUM_LABELS, 0},
    };
    float base_only[B * NUM_LABELS], want[B * NUM_LABELS], got[B * NUM_LABELS];
    for (int h = 0; h < 4; h++) {
        aflo_param *p = model_find_param(merged, head[h].name);
        read_tensor(f, head[h].key, p->data, p->size, head[h].rows, head[h].cols);
        consumed++;
    }
    assert_int_equal(st_count(f), (size_t)consumed); /* nothing else in the file */
    assert_string_equal(st_metadata(f, "format"), "pt");
    st_close(f);

    logits_of(m, want);
    logits_of(merged, got);
    assert_logits_close(got, want, 1e-5);

    /* and the adapters matter: without them the logits are far off */
    aflo_model *plain = make_model(&c, METHOD_FULL, 0, 0, 0);
    copy_base(plain, m);
    for (int h = 0; h < 4; h++) {
        aflo_param *p = model_find_param(merged, head[h].name);
        assert_int_equal(model_set_tensor(plain, p->name, p->data, p->size, errbuf, sizeof errbuf),
                         0);
    }
    logits_of(plain, base_only);
    double diff = 0;
    for (int i = 0; i < B * NUM_LABELS; i++) diff = fmax(diff, fabs(base_only[i] - want[i]));
    assert_true(diff > 1e-2 * max_abs(want, B * NUM_LABELS));

    model_free(plain);
    model_free(merged);
    model_free(m);
    json_free(cfg);
}

static void test_fold_aflora_bert(void **state) {
    /* AFLoRA: vectors folded, lora_alpha = r */
    fold_proof(state, false, METHOD_AFLORA, ALL_MODULES, 1.0f, RANK);
}

static void test_fold_elora_roberta(void **state) {
    fold_proof(state, true, METHOD_ELORA, ALL_MODULES, 1.0f, RANK);
}

static void test_fold_lora_bert_subset(void **state) {
    /* query, value, intermediate, output without the attention output: the
     * list form would also catch attention.output.dense, so a regex is due */
    unsigned t = (1u << 0) | (1u << 2) | (1u << 4) | (1u << 5);
    fold_proof(state, false, METHOD_LORA, t, 8.0f, 8.0);
}

static void test_fold_lora_roberta_fractional_alpha(void **state) {
    unsigned t = (1u << 0) | (1u << 1) | (1u << 3);
    fold_proof(state, true, METHOD_LORA, t, 6.5f, 6.5);
}

static void test_target_modules_forms(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    char dir[600], path[700];
    path_in(dir, sizeof dir, state, "peft");
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    /* FFN only: a plain list is exact */
    aflo_model *m = make_model(&c, METHOD_AFLORA, (1u << 4) | (1u << 5) | (1u << 3), 1, RANK);
    assert_int_equal(adapter_export_peft(m, dir, NULL, errbuf, sizeof errbuf), 0);
    json_value *cfg = read_json(path);
    const json_value *tm = json_get(cfg, "target_modules");
    assert_int_equal(json_type_of(tm), JSON_ARRAY);
    assert_int_equal(json_len(tm), 3);
    assert_string_equal(json_string(json_at(tm, 0), NULL), "attention.output.dense");
    assert_string_equal(json_string(json_at(tm, 1), NULL), "intermediate.dense");
    assert_string_equal(json_string(json_at(tm, 2), NULL), "output.dense");
    assert_string_equal(json_string(json_get(cfg, "base_model_name_or_path"), NULL), "");
    json_free(cfg);
    model_free(m);
    /* output.dense alone: the regex, spelled out by hand */
    m = make_model(&c, METHOD_AFLORA, 1u << 5, 1, RANK);
    assert_int_equal(adapter_export_peft(m, dir, NULL, errbuf, sizeof errbuf), 0);
    cfg = read_json(path);
    assert_string_equal(json_string(json_get(cfg, "target_modules"), NULL),
                        ".*\\.encoder\\.layer\\.[0-9]+\\.(output\\.dense)");
    json_free(cfg);
    model_free(m);
}

/* ---------------------------------------------------------------- PEFT import */

static void test_peft_import_into_lora_and_aflora(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    unsigned t = (1u << 1) | (1u << 4) | (1u << 5);
    aflo_model *m = make_model(&c, METHOD_AFLORA, t, 1, RANK);
    randomize(m, 5, true);
    char dir[600];
    path_in(dir, sizeof dir, state, "peft");
    adapter_export_info info = {.base_model = "tiny-bert"};
    assert_int_equal(adapter_export_peft(m, dir, &info, errbuf, sizeof errbuf), 0);
    float want[B * NUM_LABELS], got[B * NUM_LABELS];
    logits_of(m, want);

    aflo_adapter_config ac;
    char base[64];
    if (adapter_peft_read_config(dir, &ac, base, sizeof base, errbuf, sizeof errbuf))
        fail_msg("%s", errbuf);
    assert_int_equal(ac.method, METHOD_LORA);
    assert_int_equal(ac.rank, RANK);
    assert_true(ac.alpha == (float)RANK);
    assert_int_equal(ac.targets, t);
    assert_string_equal(base, "tiny-bert");

    aflo_model *l =
        model_create(&c, &ac, TASK_CLASSIFICATION, NUM_LABELS, 77, errbuf, sizeof errbuf);
    assert_non_null(l);
    copy_base(l, m);
    adapter_import_report rep;
    if (adapter_import_peft(l, dir, &rep, errbuf, sizeof errbuf)) fail_msg("import: %s", errbuf);
    assert_true(rep.pooler_loaded);
    assert_true(rep.classifier_loaded);
    logits_of(l, got);
    assert_logits_close(got, want, 1e-5);

    /* an AFLoRA model takes it too: s_d = lora_alpha / r = 1, s_b = 1 */
    aflo_model *a = make_model(&c, METHOD_AFLORA, t, 1, RANK);
    copy_base(a, m);
    assert_int_equal(adapter_import_peft(a, dir, NULL, errbuf, sizeof errbuf), 0);
    aflo_param *sd = model_find_param(a, "encoder.layer.1.output.dense.s_d");
    aflo_param *sb = model_find_param(a, "encoder.layer.1.output.dense.s_b");
    assert_true(sd->data[RANK - 1] == 1.0f);
    assert_true(sb->data[0] == 1.0f);
    logits_of(a, got);
    assert_logits_close(got, want, 1e-5);
    model_free(a);

    /* mismatches refused, model untouched */
    aflo_model *wrong_alpha = make_model(&c, METHOD_LORA, t, 16, RANK);
    assert_int_equal(adapter_import_peft(wrong_alpha, dir, NULL, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "lora_alpha"));
    model_free(wrong_alpha);
    aflo_model *wrong_rank = make_model(&c, METHOD_LORA, t, RANK, 2);
    assert_int_equal(adapter_import_peft(wrong_rank, dir, NULL, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "rank"));
    model_free(wrong_rank);
    aflo_model *wrong_targets = make_model(&c, METHOD_LORA, t | 1u, RANK, RANK);
    assert_int_equal(adapter_import_peft(wrong_targets, dir, NULL, errbuf, sizeof errbuf), -1);
    assert_non_null(
        strstr(errbuf, "no lora_A tensor for encoder.layer.0.attention.self.query.lora_A"));
    model_free(wrong_targets);

    model_free(l);
    model_free(m);
}

/* dir's adapter_model.safetensors rewritten without the tensors named
 * drop[0..n) (keys after PEFT's root). */
static void peft_drop_tensors(const char *dir, const char *const *drop, int n) {
    char path[700], tmp[720];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.new", path);
    st_file *f = st_open(path, errbuf, sizeof errbuf);
    if (!f) fail_msg("%s", errbuf);
    st_writer *w = st_writer_new();
    assert_non_null(w);
    for (size_t i = 0; i < st_count(f); i++) {
        bool dropped = false;
        for (int k = 0; k < n; k++) dropped |= strcmp(st_name(f, i), drop[k]) == 0;
        if (dropped) continue;
        assert_int_equal(st_writer_add(w, st_name(f, i), st_shape(f, i), st_ndim(f, i),
                                       st_f32_view(f, i), errbuf, sizeof errbuf),
                         0);
    }
    if (st_writer_write(w, tmp, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    st_writer_free(w);
    st_close(f);
    assert_int_equal(rename(tmp, path), 0);
}

/* The head in a PEFT folder, layer by layer as the family declares it
 * (RoBERTa's keys: classifier.dense, classifier.out_proj): a layer comes
 * whole or not at all, and the report says which layers the folder had. */
static void test_peft_import_head_layers(void **state) {
    aflo_config c;
    tiny_config(&c, true);
    aflo_model *m = make_model(&c, METHOD_LORA, ALL_MODULES, RANK, RANK);
    randomize(m, 9, true);
    char dir[600];
    path_in(dir, sizeof dir, state, "peft");
    assert_int_equal(adapter_export_peft(m, dir, NULL, errbuf, sizeof errbuf), 0);
    aflo_model *l = make_model(&c, METHOD_LORA, ALL_MODULES, RANK, RANK);
    adapter_import_report rep;
    assert_int_equal(adapter_import_peft(l, dir, &rep, errbuf, sizeof errbuf), 0);
    assert_true(rep.pooler_loaded && rep.classifier_loaded);

    static const char *const no_dense[] = {"base_model.model.classifier.dense.weight",
                                           "base_model.model.classifier.dense.bias"};
    peft_drop_tensors(dir, no_dense, 2);
    assert_int_equal(adapter_import_peft(l, dir, &rep, errbuf, sizeof errbuf), 0);
    assert_true(!rep.pooler_loaded && rep.classifier_loaded);

    static const char *const half_out[] = {"base_model.model.classifier.out_proj.bias"};
    peft_drop_tensors(dir, half_out, 1);
    assert_int_equal(adapter_import_peft(l, dir, &rep, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "classifier.weight without classifier.bias"));
    model_free(l);
    model_free(m);
}

static void test_peft_import_refuses_unknown_options(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *m = make_model(&c, METHOD_LORA, ALL_MODULES, RANK, RANK);
    char dir[600], path[700];
    path_in(dir, sizeof dir, state, "peft");
    assert_int_equal(adapter_export_peft(m, dir, NULL, errbuf, sizeof errbuf), 0);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 4, \"use_rslora\": true}", f);
    fclose(f);
    assert_int_equal(adapter_import_peft(m, dir, NULL, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "use_rslora"));
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"peft_type\": \"IA3\", \"r\": 4, \"lora_alpha\": 4}", f);
    fclose(f);
    assert_int_equal(adapter_import_peft(m, dir, NULL, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "IA3"));
    model_free(m);
}

/* ---------------------------------------------------------------- native */

static long frozen_cb(const void *ctx, const aflo_param *p) {
    (void)ctx;
    /* FFN projections froze at 100 + 10*layer + module (A) / +1 (B); the
     * others never did */
    if (p->module < 4) return -1;
    return 100 + 10 * p->layer + p->module + (p->role == PROLE_B);
}

static const char *const label_names[NUM_LABELS] = {"neg", "neu", "pos \"quoted\""};

static void export_native(aflo_model *m, const char *path) {
    adapter_export_info info = {.base_model = "org/tiny-bert",
                                .labels = label_names,
                                .metrics_json = "{\"accuracy\": 0.75, \"f1\": null}",
                                .frozen_step = frozen_cb};
    if (adapter_export_native(m, path, &info, errbuf, sizeof errbuf))
        fail_msg("export: %s", errbuf);
}

static void native_round_trip(void **state, aflo_method method) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *m = make_model(&c, method, ALL_MODULES, 8, RANK);
    randomize(m, 3, method == METHOD_FULL);
    char path[600];
    path_in(path, sizeof path, state, "adapter.safetensors");
    export_native(m, path);

    aflo_model *fresh = make_model(&c, method, ALL_MODULES, 8, RANK);
    copy_base(fresh, m);
    if (method == METHOD_FULL) randomize(fresh, 4, true); /* the file must restore the base too */
    float want[B * NUM_LABELS], before[B * NUM_LABELS], got[B * NUM_LABELS];
    logits_of(m, want);
    logits_of(fresh, before);
    assert_true(memcmp(before, want, sizeof want) != 0);
    if (adapter_import_native(fresh, path, errbuf, sizeof errbuf)) fail_msg("import: %s", errbuf);
    logits_of(fresh, got);
    assert_memory_equal(got, want, sizeof want);
    model_free(fresh);
    model_free(m);
}

static void test_native_round_trip_aflora(void **state) { native_round_trip(state, METHOD_AFLORA); }
static void test_native_round_trip_lora(void **state) { native_round_trip(state, METHOD_LORA); }
static void test_native_round_trip_full(void **state) { native_round_trip(state, METHOD_FULL); }

static void test_native_metadata(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *m = make_model(&c, METHOD_AFLORA, ALL_MODULES, 1, RANK);
    char path[600];
    path_in(path, sizeof path, state, "adapter.safetensors");
    export_native(m, path);
    adapter_native_meta meta;
    if (adapter_native_read_meta(path, &meta, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    assert_int_equal(meta.ac.method, METHOD_AFLORA);
    assert_int_equal(meta.ac.rank, RANK);
    assert_int_equal(meta.ac.targets, 0x3F); /* BERT's six modules */
    assert_int_equal(meta.ac.projections, PROJ_ALL);
    assert_int_equal(meta.task, TASK_CLASSIFICATION);
    assert_int_equal(meta.num_labels, NUM_LABELS);
    assert_string_equal(meta.model_type, "bert");
    assert_int_equal(meta.hidden_size, 8);
    assert_int_equal(meta.num_hidden_layers, 2);
    assert_string_equal(meta.base_model, "org/tiny-bert");
    json_value *labels =
        json_parse(meta.labels_json, strlen(meta.labels_json), 0, errbuf, sizeof errbuf);
    assert_int_equal(json_len(labels), 3);
    assert_string_equal(json_string(json_at(labels, 2), NULL), "pos \"quoted\"");
    json_free(labels);
    json_value *metrics =
        json_parse(meta.metrics_json, strlen(meta.metrics_json), 0, errbuf, sizeof errbuf);
    assert_true(json_number(json_get(metrics, "accuracy")) == 0.75);
    json_free(metrics);
    json_value *frozen =
        json_parse(meta.frozen_json, strlen(meta.frozen_json), 0, errbuf, sizeof errbuf);
    /* 2 layers x 6 modules x {A, B} */
    assert_int_equal(json_len(frozen), 24);
    assert_int_equal(json_int(json_get(frozen, "encoder.layer.1.intermediate.dense.lora_A")), 114);
    assert_int_equal(json_int(json_get(frozen, "encoder.layer.0.output.dense.lora_B")), 106);
    assert_int_equal(json_type_of(json_get(frozen, "encoder.layer.0.attention.self.query.lora_A")),
                     JSON_NULL);
    json_free(frozen);
    adapter_native_meta_free(&meta);

    /* bad metrics JSON is refused at export */
    adapter_export_info bad = {.metrics_json = "{accuracy: 1}"};
    assert_int_equal(adapter_export_native(m, path, &bad, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "metrics"));
    model_free(m);
}

/* Rewrite a native file with edits: drop a tensor, add one, reshape one, or
 * change a metadata value (NULL removes the key). */
typedef struct {
    const char *drop, *add, *reshape;
    const char *meta_key, *meta_value;
} file_edit;

static void rewrite(const char *from, const char *to, const file_edit *e) {
    st_file *f = st_open(from, errbuf, sizeof errbuf);
    if (!f) fail_msg("%s", errbuf);
    st_writer *w = st_writer_new();
    assert_non_null(w);
    for (size_t i = 0; i < st_count(f); i++) {
        const char *name = st_name(f, i);
        if (e->drop && strcmp(name, e->drop) == 0) continue;
        int64_t shape[2] = {st_shape(f, i)[0], st_ndim(f, i) > 1 ? st_shape(f, i)[1] : 0};
        if (e->reshape && strcmp(name, e->reshape) == 0 && st_ndim(f, i) == 2) {
            int64_t t = shape[0];
            shape[0] = shape[1];
            shape[1] = t;
        }
        assert_int_equal(
            st_writer_add(w, name, shape, st_ndim(f, i), st_f32_view(f, i), errbuf, sizeof errbuf),
            0);
        if (e->add && i == 0) {
            assert_int_equal(st_writer_add(w, e->add, shape, st_ndim(f, i), st_f32_view(f, i),
                                           errbuf, sizeof errbuf),
                             0);
        }
    }
    for (size_t i = 0; i < st_metadata_count(f); i++) {
        const char *k = st_metadata_key(f, i);
        if (e->meta_key && strcmp(k, e->meta_key) == 0) {
            if (e->meta_value)
                assert_int_equal(st_writer_set_metadata(w, k, e->meta_value, errbuf, sizeof errbuf),
                                 0);
            continue;
        }
        assert_int_equal(
            st_writer_set_metadata(w, k, st_metadata_value(f, i), errbuf, sizeof errbuf), 0);
    }
    assert_int_equal(st_writer_write(w, to, errbuf, sizeof errbuf), 0);
    st_writer_free(w);
    st_close(f);
}

/* Set (or add) one metadata key of a native file in place. */
static void rewrite_meta(const char *path, const char *key, const char *value) {
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.edit", path);
    st_file *f = st_open(path, errbuf, sizeof errbuf);
    if (!f) fail_msg("%s", errbuf);
    st_writer *w = st_writer_new();
    assert_non_null(w);
    for (size_t i = 0; i < st_count(f); i++) {
        int64_t shape[2] = {st_shape(f, i)[0], st_ndim(f, i) > 1 ? st_shape(f, i)[1] : 0};
        assert_int_equal(st_writer_add(w, st_name(f, i), shape, st_ndim(f, i), st_f32_view(f, i),
                                       errbuf, sizeof errbuf),
                         0);
    }
    for (size_t i = 0; i < st_metadata_count(f); i++)
        if (strcmp(st_metadata_key(f, i), key) != 0)
            assert_int_equal(st_writer_set_metadata(w, st_metadata_key(f, i),
                                                    st_metadata_value(f, i), errbuf, sizeof errbuf),
                             0);
    assert_int_equal(st_writer_set_metadata(w, key, value, errbuf, sizeof errbuf), 0);
    assert_int_equal(st_writer_write(w, tmp, errbuf, sizeof errbuf), 0);
    st_writer_free(w);
    st_close(f);
    assert_int_equal(rename(tmp, path), 0);
}

/* Import must fail with `want` in the message and leave m as it was. */
static void expect_import_fail(aflo_model *m, const char *path, const char *want) {
    size_t total = 0;
    for (int i = 0; i < model_param_count(m); i++) total += model_param(m, i)->size;
    float *snap = malloc(total * sizeof(float));
    assert_non_null(snap);
    size_t off = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        memcpy(snap + off, model_param(m, i)->data, model_param(m, i)->size * sizeof(float));
        off += model_param(m, i)->size;
    }
    assert_int_equal(adapter_import_native(m, path, errbuf, sizeof errbuf), -1);
    if (!strstr(errbuf, want)) fail_msg("error \"%s\" lacks \"%s\"", errbuf, want);
    off = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        assert_memory_equal(snap + off, model_param(m, i)->data,
                            model_param(m, i)->size * sizeof(float));
        off += model_param(m, i)->size;
    }
    free(snap);
}

static void test_native_malformed(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *m = make_model(&c, METHOD_AFLORA, ALL_MODULES, 1, RANK);
    randomize(m, 8, false);
    char good[600], bad[600];
    path_in(good, sizeof good, state, "good.safetensors");
    path_in(bad, sizeof bad, state, "bad.safetensors");
    export_native(m, good);
    aflo_model *target = make_model(&c, METHOD_AFLORA, ALL_MODULES, 1, RANK);

    /* wrong rank: the model has 2, the file 4 */
    aflo_model *r2 = make_model(&c, METHOD_AFLORA, ALL_MODULES, 1, 2);
    expect_import_fail(r2, good, "adapter rank is 4 but the model has rank 2");
    model_free(r2);
    /* other method, other targets, other labels, other dims */
    aflo_model *lora = make_model(&c, METHOD_LORA, ALL_MODULES, 1, RANK);
    expect_import_fail(lora, good, "method is \"aflora\" but the model uses \"lora\"");
    model_free(lora);
    aflo_model *ffn = make_model(&c, METHOD_AFLORA, (1u << 4) | (1u << 5), 1, RANK);
    expect_import_fail(ffn, good, "target_modules");
    model_free(ffn);
    aflo_adapter_config ac = *model_adapter_config(target);
    aflo_model *two = model_create(&c, &ac, TASK_CLASSIFICATION, 2, SEED, errbuf, sizeof errbuf);
    expect_import_fail(two, good, "3 labels");
    model_free(two);
    aflo_config c3 = c;
    c3.num_hidden_layers = 3;
    aflo_model *deeper = make_model(&c3, METHOD_AFLORA, ALL_MODULES, 1, RANK);
    expect_import_fail(deeper, good, "2 layers");
    model_free(deeper);

    /* a missing tensor */
    rewrite(good, bad, &(file_edit){.drop = "encoder.layer.1.intermediate.dense.s_b"});
    expect_import_fail(target, bad, "encoder.layer.1.intermediate.dense.s_b missing");
    /* an extra one */
    rewrite(good, bad, &(file_edit){.add = "encoder.layer.9.attention.self.query.lora_A"});
    expect_import_fail(target, bad,
                       "unexpected tensor encoder.layer.9.attention.self.query.lora_A");
    /* a transposed one */
    rewrite(good, bad, &(file_edit){.reshape = "encoder.layer.0.intermediate.dense.lora_A"});
    expect_import_fail(
        target, bad, "encoder.layer.0.intermediate.dense.lora_A has shape [8, 4], expected [4, 8]");
    /* wrong format tag, missing tag, future version */
    rewrite(good, bad, &(file_edit){.meta_key = "format", .meta_value = "pt"});
    expect_import_fail(target, bad, "not an aflorad adapter (metadata format is \"pt\"");
    rewrite(good, bad, &(file_edit){.meta_key = "format", .meta_value = NULL});
    expect_import_fail(target, bad, "metadata format is missing");
    rewrite(good, bad, &(file_edit){.meta_key = "version", .meta_value = "2"});
    expect_import_fail(target, bad, "version 2 is not supported");
    rewrite(good, bad, &(file_edit){.meta_key = "rank", .meta_value = "four"});
    expect_import_fail(target, bad, "\"rank\" = \"four\"");
    rewrite(good, bad,
            &(file_edit){.meta_key = "target_modules", .meta_value = "[\"query\",\"fc1\"]"});
    expect_import_fail(target, bad, "target_modules");
    rewrite(good, bad, &(file_edit){.meta_key = "task", .meta_value = NULL});
    expect_import_fail(target, bad, "\"task\" missing");
    /* a PEFT file is not a native file */
    char dir[600], peft[700];
    path_in(dir, sizeof dir, state, "peft");
    assert_int_equal(adapter_export_peft(m, dir, NULL, errbuf, sizeof errbuf), 0);
    snprintf(peft, sizeof peft, "%s/adapter_model.safetensors", dir);
    expect_import_fail(target, peft, "not an aflorad adapter");

    /* and the good file still loads */
    assert_int_equal(adapter_import_native(target, good, errbuf, sizeof errbuf), 0);
    model_free(target);
    model_free(m);
}

/* ---------------------------------------------------------------- folder writes */

static int count_staging(void **state) {
    DIR *d = opendir((const char *)*state);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".tmp") != NULL;
    closedir(d);
    return n;
}

static float first_lora_a(const char *dir) {
    char path[700];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    st_file *f = st_open(path, errbuf, sizeof errbuf);
    assert_non_null(f);
    float v[RANK * 8];
    assert_int_equal(
        st_read_f32(f, "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight",
                    v, RANK * 8, errbuf, sizeof errbuf),
        0);
    st_close(f);
    return v[0];
}

static void test_peft_folder_replace_and_refuse(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *m = make_model(&c, METHOD_LORA, ALL_MODULES, RANK, RANK);
    char dir[600], slash[610], path[700];
    path_in(dir, sizeof dir, state, "out");
    snprintf(slash, sizeof slash, "%s/", dir);
    aflo_param *A = model_find_param(m, "encoder.layer.0.attention.self.query.lora_A");
    A->data[0] = 0.25f;
    assert_int_equal(adapter_export_peft(m, slash, NULL, errbuf, sizeof errbuf), 0);
    assert_true(first_lora_a(dir) == 0.25f);
    /* replace: the new values, no staging directories left behind */
    A->data[0] = -0.5f;
    if (adapter_export_peft(m, dir, NULL, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    assert_true(first_lora_a(dir) == -0.5f);
    assert_int_equal(count_staging(state), 0);

    /* a folder with someone else's file is not replaced */
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("mine", f);
    fclose(f);
    A->data[0] = 0.75f;
    assert_int_equal(adapter_export_peft(m, dir, NULL, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "notes.txt"));
    assert_true(first_lora_a(dir) == -0.5f);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(count_staging(state), 0);

    /* a path that is a file */
    path_in(path, sizeof path, state, "plain");
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(adapter_export_peft(m, path, NULL, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "not a directory"));

    /* a parent that does not exist */
    path_in(path, sizeof path, state, "no/such/dir");
    assert_int_equal(adapter_export_peft(m, path, NULL, errbuf, sizeof errbuf), -1);
    model_free(m);
}

/* A file-size limit stands in for a full disk (SIGXFSZ ignored, so write()
 * fails with EFBIG): the export fails, the previous folder is intact and no
 * staging directory is left behind. */
static void test_peft_failed_write_keeps_previous_folder(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *m = make_model(&c, METHOD_LORA, ALL_MODULES, RANK, RANK);
    char dir[600];
    path_in(dir, sizeof dir, state, "out");
    aflo_param *A = model_find_param(m, "encoder.layer.0.attention.self.query.lora_A");
    A->data[0] = 0.25f;
    assert_int_equal(adapter_export_peft(m, dir, NULL, errbuf, sizeof errbuf), 0);

    A->data[0] = -0.5f;
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 1024; /* the safetensors header alone is larger */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = adapter_export_peft(m, dir, NULL, errbuf, sizeof errbuf);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(errbuf, "failed"));
    assert_true(first_lora_a(dir) == 0.25f);
    assert_int_equal(count_staging(state), 0);
    char path[700];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    json_value *cfg = read_json(path); /* the old config, whole */
    assert_int_equal(json_int(json_get(cfg, "r")), RANK);
    json_free(cfg);
    model_free(m);
}

/* Whole text file (NUL-terminated, static buffer). */
static const char *read_text(const char *path) {
    static char text[65536];
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return text;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void test_peft_labels_and_readme(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *m = make_model(&c, METHOD_AFLORA, ALL_MODULES, 1, RANK);
    char dir[600], path[700];
    path_in(dir, sizeof dir, state, "peft");
    adapter_export_info info = {.base_model = "org/tiny-bert",
                                .base_model_source = ADAPTER_BASE_NAME_OR_PATH,
                                .labels = label_names};
    if (adapter_export_peft(m, dir, &info, errbuf, sizeof errbuf)) fail_msg("export: %s", errbuf);

    /* config.json: the base config with the head's labels */
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_value *cfg = read_json(path);
    assert_string_equal(json_string(json_get(cfg, "model_type"), NULL), "bert");
    assert_int_equal(json_int(json_get(cfg, "hidden_size")), c.hidden_size);
    assert_int_equal(json_int(json_get(cfg, "num_labels")), NUM_LABELS);
    const json_value *id2label = json_get(cfg, "id2label"), *label2id = json_get(cfg, "label2id");
    assert_int_equal(json_len(id2label), NUM_LABELS);
    for (int k = 0; k < NUM_LABELS; k++) {
        char key[16];
        snprintf(key, sizeof key, "%d", k);
        assert_string_equal(json_string(json_get(id2label, key), NULL), label_names[k]);
        assert_int_equal(json_int(json_get(label2id, label_names[k])), k);
    }
    json_free(cfg);
    /* adapter_config.json has no such keys: older PEFT refuses unknown ones */
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    cfg = read_json(path);
    assert_null(json_get(cfg, "id2label"));
    assert_null(json_get(cfg, "num_labels"));
    json_free(cfg);

    /* read back as predict does */
    hf_head_info head;
    if (adapter_peft_read_labels(dir, NUM_LABELS, &head, errbuf, sizeof errbuf))
        fail_msg("%s", errbuf);
    assert_int_equal(head.num_labels, NUM_LABELS);
    assert_false(head.regression);
    for (int k = 0; k < NUM_LABELS; k++) assert_string_equal(head.labels[k], label_names[k]);
    hf_head_info_free(&head);
    assert_int_equal(adapter_peft_read_labels(dir, 2, &head, errbuf, sizeof errbuf), -1);
    assert_non_null(
        strstr(errbuf, "config.json: names 3 classes, but the adapter's classifier has 2"));
    assert_int_equal(head.num_labels, 0);
    assert_null(head.labels);

    /* the model card: where the base model name comes from, the labels */
    snprintf(path, sizeof path, "%s/README.md", dir);
    const char *readme = read_text(path);
    assert_non_null(strstr(readme, "library_name: peft\nbase_model: \"org/tiny-bert\"\n"));
    assert_non_null(
        strstr(readme, "`base_model_name_or_path` in adapter_config.json is \"org/tiny-bert\": the "
                       "`_name_or_path` recorded in the base model folder's config.json."));
    assert_non_null(
        strstr(readme, "{\"0\": \"neg\", \"1\": \"neu\", \"2\": \"pos \\\"quoted\\\"\"}"));
    assert_non_null(strstr(readme, "from_pretrained(\"org/tiny-bert\", config=config)"));

    /* a name only the daemon knows: said so, and no Hub metadata claims it */
    info.base_model = "tiny";
    info.base_model_source = ADAPTER_BASE_LOCAL_NAME;
    info.labels = NULL;
    if (adapter_export_peft(m, dir, &info, errbuf, sizeof errbuf)) fail_msg("export: %s", errbuf);
    readme = read_text(path);
    assert_null(strstr(readme, "base_model:"));
    assert_non_null(strstr(
        readme, "is \"tiny\": the name the aflorad daemon knew the base model by (the "
                "folder's config.json has no `_name_or_path`); only that daemon resolves it."));
    /* no names given: the ids */
    if (adapter_peft_read_labels(dir, NUM_LABELS, &head, errbuf, sizeof errbuf))
        fail_msg("%s", errbuf);
    assert_int_equal(head.num_labels, NUM_LABELS);
    assert_string_equal(head.labels[0], "0");
    assert_string_equal(head.labels[2], "2");
    hf_head_info_free(&head);

    /* label names must be UTF-8, checked before anything is written */
    const char *const bad[NUM_LABELS] = {"a", "b\xFF", "c"};
    info.labels = bad;
    assert_int_equal(adapter_export_peft(m, dir, &info, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "label 1: missing or not valid UTF-8"));

    /* a config.json without usable names */
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, "{\"id2label\": {\"0\": \"a\", \"2\": \"c\", \"3\": \"d\"}}");
    assert_int_equal(adapter_peft_read_labels(dir, NUM_LABELS, &head, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "id2label entry \"3\" must map a label id below 3 to a name"));
    write_file(path, "{\"id2label\": {\"0\": \"a\", \"1\": 7, \"2\": \"c\"}}");
    assert_int_equal(adapter_peft_read_labels(dir, NUM_LABELS, &head, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "id2label entry \"1\" must map a label id below 3 to a name"));
    write_file(path, "{\"id2label\": [\"a\"]}");
    assert_int_equal(adapter_peft_read_labels(dir, NUM_LABELS, &head, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "id2label is array, not an object"));
    write_file(path, "{\"id2label\": ");
    assert_int_equal(adapter_peft_read_labels(dir, NUM_LABELS, &head, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "config.json: "));
    assert_null(head.labels);
    /* transformers' defaults, or a folder PEFT wrote: no names, no error */
    write_file(path, "{\"model_type\": \"bert\"}");
    assert_int_equal(adapter_peft_read_labels(dir, NUM_LABELS, &head, errbuf, sizeof errbuf), 0);
    assert_int_equal(head.num_labels, 0);
    unlink(path);
    assert_int_equal(adapter_peft_read_labels(dir, NUM_LABELS, &head, errbuf, sizeof errbuf), 0);
    assert_int_equal(head.num_labels, 0);
    model_free(m);
}

static void test_peft_export_refuses_full(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *m = make_model(&c, METHOD_FULL, 0, 0, 0);
    char dir[600];
    path_in(dir, sizeof dir, state, "peft");
    assert_int_equal(adapter_export_peft(m, dir, NULL, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "native"));
    assert_int_equal(access(dir, F_OK), -1);
    model_free(m);
}

/* ---------------------------------------------------------------- inputs */

static void set_field(adapter_text_field *t, const char *name, int index) {
    memset(t, 0, sizeof *t);
    t->by_index = name == NULL;
    t->index = index;
    if (name) snprintf(t->name, sizeof t->name, "%s", name);
}

static void assert_inputs_equal(const adapter_inputs *a, const adapter_inputs *b) {
    assert_int_equal(a->n_fields, b->n_fields);
    for (int i = 0; i < a->n_fields; i++) {
        assert_int_equal(a->fields[i].by_index, b->fields[i].by_index);
        if (a->fields[i].by_index)
            assert_int_equal(a->fields[i].index, b->fields[i].index);
        else
            assert_string_equal(a->fields[i].name, b->fields[i].name);
    }
    assert_int_equal(a->has_header, b->has_header);
    assert_int_equal(a->format, b->format);
}

/* How the training text was read survives both adapter forms: a header-less
 * CoLA-style file (column 3) in the native metadata, a named pair in the
 * PEFT folder's aflorad.json; files without the record read as "unknown". */
static void test_inputs_recorded_in_both_forms(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *m = make_model(&c, METHOD_AFLORA, ALL_MODULES, 1, RANK);
    adapter_inputs cola = {.n_fields = 1, .has_header = false, .format = TEXTDATA_TSV};
    set_field(&cola.fields[0], NULL, 3);
    adapter_inputs pair = {.n_fields = 2, .has_header = true, .format = TEXTDATA_CSV};
    set_field(&pair.fields[0], "question1", 0);
    set_field(&pair.fields[1], "qu\"estion 2", 0);

    char path[600], dir[600], file[700];
    path_in(path, sizeof path, state, "adapter.safetensors");
    adapter_export_info info = {.inputs = &cola};
    if (adapter_export_native(m, path, &info, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    adapter_native_meta meta;
    if (adapter_native_read_meta(path, &meta, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    assert_inputs_equal(&meta.inputs, &cola);
    adapter_native_meta_free(&meta);
    /* a file without the record (made before it existed) still loads */
    assert_int_equal(adapter_export_native(m, path, NULL, errbuf, sizeof errbuf), 0);
    assert_int_equal(adapter_native_read_meta(path, &meta, errbuf, sizeof errbuf), 0);
    assert_int_equal(meta.inputs.n_fields, 0);
    adapter_native_meta_free(&meta);

    path_in(dir, sizeof dir, state, "peft");
    info.inputs = &pair;
    if (adapter_export_peft(m, dir, &info, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    adapter_inputs got;
    if (adapter_read_inputs_file(dir, &got, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    assert_inputs_equal(&got, &pair);
    /* replaced by an export without inputs: the old record goes with the folder */
    assert_int_equal(adapter_export_peft(m, dir, NULL, errbuf, sizeof errbuf), 0);
    snprintf(file, sizeof file, "%s/%s", dir, ADAPTER_INPUTS_FILE);
    assert_int_equal(access(file, F_OK), -1);
    assert_int_equal(adapter_read_inputs_file(dir, &got, errbuf, sizeof errbuf), 0);
    assert_int_equal(got.n_fields, 0);

    /* malformed records are refused with the reason */
    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{\"text_fields\": []}", "1 or 2"},
        {"{\"text_fields\": [\"a\", \"b\", \"c\"]}", "1 or 2"},
        {"{\"text_fields\": [-1]}", "text_fields[0]"},
        {"{\"text_fields\": [\"\"]}", "text_fields[0]"},
        {"{\"text_fields\": [\"a\"], \"has_header\": 1}", "has_header"},
        {"{\"text_fields\": [\"a\"], \"format\": \"xml\"}", "format"},
        {"{\"text_fields\": [\"a\"], \"colour\": 1}", "colour"},
        {"[1]", "object"},
        {"{\"text_fields\": [", "inputs"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(adapter_inputs_parse(bad[i].json, strlen(bad[i].json), "t", &got, errbuf,
                                              sizeof errbuf),
                         -1);
        if (!strstr(errbuf, bad[i].want))
            fail_msg("\"%s\": \"%s\" lacks \"%s\"", bad[i].json, errbuf, bad[i].want);
    }
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("{\"inputs\": {\"text_fields\": 3}}", f);
    fclose(f);
    assert_int_equal(adapter_read_inputs_file(dir, &got, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, ADAPTER_INPUTS_FILE));
    rewrite_meta(path, "inputs", "{\"text_fields\": {}}");
    assert_int_equal(adapter_native_read_meta(path, &meta, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "text_fields"));
    model_free(m);
}

/* ---------------------------------------------------------------- a whole model */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* A fully fine-tuned model exported as a Hugging Face folder loads back as a
 * base model with its own head (same logits), names its labels in
 * config.json as transformers does, carries the tokenizer and, for RoBERTa,
 * uses RobertaForSequenceClassification's head names. */
static void hf_model_round_trip(void **state, bool roberta) {
    aflo_config c;
    tiny_config(&c, roberta);
    aflo_model *m = make_model(&c, METHOD_FULL, 0, 0, 0);
    randomize(m, 5, true);
    char tok[600], dir[600], path[700];
    path_in(tok, sizeof tok, state, "base");
    assert_int_equal(mkdir(tok, 0755), 0);
    snprintf(path, sizeof path, "%s/vocab.txt", tok);
    write_text(path, "[PAD]\n[UNK]\n[CLS]\n[SEP]\nfilm\n");
    snprintf(path, sizeof path, "%s/tokenizer_config.json", tok);
    write_text(path, "{\"do_lower_case\": true}\n");
    adapter_inputs in = {.n_fields = 1, .has_header = true, .format = TEXTDATA_TSV};
    set_field(&in.fields[0], "sentence", 0);
    adapter_export_info info = {.labels = label_names, .inputs = &in};
    path_in(dir, sizeof dir, state, "model");
    if (adapter_export_hf_model(m, dir, tok, &info, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);

    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    assert_int_equal(access(path, R_OK), 0);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    assert_int_equal(access(path, R_OK), 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_value *cfg = read_json(path);
    const json_value *id2label = json_get(cfg, "id2label");
    assert_int_equal(json_len(id2label), NUM_LABELS);
    assert_string_equal(json_string(json_get(id2label, "2"), NULL), "pos \"quoted\"");
    assert_int_equal(json_int(json_get(json_get(cfg, "label2id"), "neu")), 1);
    assert_string_equal(json_string(json_get(cfg, "problem_type"), NULL),
                        "single_label_classification");
    assert_string_equal(json_string(json_at(json_get(cfg, "architectures"), 0), NULL),
                        roberta ? "RobertaForSequenceClassification"
                                : "BertForSequenceClassification");
    json_free(cfg);
    hf_head_info head;
    if (hfmodel_read_head(dir, &head, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    assert_int_equal(head.num_labels, NUM_LABELS);
    assert_false(head.regression);
    assert_string_equal(head.labels[0], "neg");
    hf_head_info_free(&head);
    adapter_inputs got;
    assert_int_equal(adapter_read_inputs_file(dir, &got, errbuf, sizeof errbuf), 0);
    assert_inputs_equal(&got, &in);

    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_file *f = st_open(path, errbuf, sizeof errbuf);
    assert_non_null(f);
    if (roberta) {
        assert_true(st_find(f, "classifier.out_proj.weight") >= 0);
        assert_true(st_find(f, "classifier.dense.weight") >= 0);
        assert_true(st_find(f, "roberta.encoder.layer.1.output.dense.weight") >= 0);
    } else {
        assert_true(st_find(f, "classifier.weight") >= 0);
        assert_true(st_find(f, "bert.pooler.dense.weight") >= 0);
    }
    st_close(f);

    aflo_adapter_config full = {.method = METHOD_FULL};
    hf_load_report rep;
    aflo_model *back =
        hfmodel_load(dir, &full, TASK_CLASSIFICATION, NUM_LABELS, 99, &rep, errbuf, sizeof errbuf);
    if (!back) fail_msg("%s", errbuf);
    assert_true(rep.classifier_pretrained && rep.pooler_pretrained);
    float want[B * NUM_LABELS], got_logits[B * NUM_LABELS];
    logits_of(m, want);
    logits_of(back, got_logits);
    assert_memory_equal(got_logits, want, sizeof want);
    model_free(back);

    /* an adapter is not a whole model */
    aflo_model *a = make_model(&c, METHOD_AFLORA, ALL_MODULES, 1, RANK);
    path_in(path, sizeof path, state, "adapter-model");
    assert_int_equal(adapter_export_hf_model(a, path, tok, NULL, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "method full"));
    model_free(a);
    model_free(m);
}

static void test_hf_model_folder_bert(void **state) { hf_model_round_trip(state, false); }
static void test_hf_model_folder_roberta(void **state) { hf_model_round_trip(state, true); }

/* config.json's head as transformers writes it, and what is refused. */
static void test_read_head(void **state) {
    char dir[600], path[700];
    path_in(dir, sizeof dir, state, "m");
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    hf_head_info h;
    write_text(path, "{\"id2label\": {\"1\": \"b\", \"0\": \"a\"}}");
    assert_int_equal(hfmodel_read_head(dir, &h, errbuf, sizeof errbuf), 0);
    assert_int_equal(h.num_labels, 2);
    assert_string_equal(h.labels[0], "a");
    assert_string_equal(h.labels[1], "b");
    assert_false(h.regression);
    hf_head_info_free(&h);
    write_text(path, "{\"id2label\": {\"0\": \"LABEL_0\"}, \"problem_type\": \"regression\"}");
    assert_int_equal(hfmodel_read_head(dir, &h, errbuf, sizeof errbuf), 0);
    assert_true(h.num_labels == 1 && h.regression);
    hf_head_info_free(&h);
    write_text(path, "{\"hidden_size\": 8}");
    assert_int_equal(hfmodel_read_head(dir, &h, errbuf, sizeof errbuf), 0);
    assert_int_equal(h.num_labels, 0);
    write_text(path, "{\"id2label\": {\"0\": \"a\", \"2\": \"b\"}}");
    assert_int_equal(hfmodel_read_head(dir, &h, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "\"2\""));
    write_text(path, "{\"id2label\": {\"0\": \"a\", \"00\": \"b\"}}");
    assert_int_equal(hfmodel_read_head(dir, &h, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "twice"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fold_aflora_bert, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_fold_elora_roberta, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_fold_lora_bert_subset, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_fold_lora_roberta_fractional_alpha, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_target_modules_forms, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_peft_import_into_lora_and_aflora, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_peft_import_head_layers, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_peft_import_refuses_unknown_options, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_native_round_trip_aflora, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_native_round_trip_lora, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_native_round_trip_full, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_native_metadata, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_native_malformed, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_peft_folder_replace_and_refuse, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_peft_failed_write_keeps_previous_folder, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_peft_labels_and_readme, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_peft_export_refuses_full, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_inputs_recorded_in_both_forms, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_hf_model_folder_bert, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_hf_model_folder_roberta, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_read_head, tmpdir_setup, tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
