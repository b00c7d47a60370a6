/* test_adapter_llama.c — LLaMA-family adapters out and back in: the PEFT
 * CAUSAL_LM folder, the native file, and a fully fine-tuned decoder as a
 * Hugging Face folder.
 *
 * The fold proof has two halves:
 *   - against PyTorch: tests/golden/llama_aflora.safetensors (a tiny random
 *     LLaMA with AFLoRA adapters whose s_d and s_b are far from 1) is loaded,
 *     its adapted forward must give the logits that make_llama_peft_fold.py
 *     computed in float64 from the base weights and the committed PEFT
 *     folder merged as PEFT merges (W + lora_alpha / r * B A), within 1e-5
 *     relative; and exporting the model today must reproduce that committed
 *     folder byte for byte, so the reference speaks about the current code.
 *     With AFLO_REGEN_PEFT_FOLD=1 the export goes to the committed folder
 *     instead (the first step of regenerating it, see the script).
 *   - in C, for LoRA (scale alpha / r, a subset of modules) and ELoRA (rank
 *     1024 on a tiny model): a method-full model gets every adapted weight
 *     merged in double from the exported file alone, with keys written out
 *     here from PEFT's layout, and must give the adapter model's logits.
 * The native file must restore logits bit for bit and refuse another
 * shape of model; PEFT import must give the same function back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/rng.h"
#include "io/adapter_native.h"
#include "io/adapter_peft.h"
#include "io/hfmodel_export.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/model.h"
#include "testutil.h"

#define GOLDEN_DIR "tests/golden"
#define FOLD_FIXTURE GOLDEN_DIR "/llama_aflora.safetensors"
#define FOLD_PEFT GOLDEN_DIR "/llama_aflora_peft"
#define FOLD_REFERENCE GOLDEN_DIR "/llama_aflora_peft_reference.safetensors"
#define REGEN_ENV "AFLO_REGEN_PEFT_FOLD"
#define TOKENIZER_DIR "tests/tokenizer_fixtures/sp_bpe"
/* The brief's bar for "same logits": float32 engine against float64. */
#define FOLD_RTOL 1e-5

static char err[1024];

/* PEFT's module paths in a LLaMA block and their target_modules names,
 * written out here independently of the engine's module table. */
static const char *const hf_paths[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                        "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                        "mlp.down_proj"};
static const char *const hf_targets[7] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                          "gate_proj", "up_proj", "down_proj"};

/* ---------------------------------------------------------------- helpers */

static float *read_tensor(const st_file *f, const char *name, size_t *n) {
    long i = st_find(f, name);
    if (i < 0) fail_msg("file lacks %s", name);
    *n = st_numel(f, (size_t)i);
    float *d = malloc(*n * sizeof *d);
    assert_non_null(d);
    assert_int_equal(st_read_f32_at(f, (size_t)i, d, *n, err, sizeof err), 0);
    return d;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static json_value *read_json(const char *path) {
    size_t n;
    char *text = read_file(path, &n);
    json_value *v = json_parse(text, n, 0, err, sizeof err);
    if (!v) fail_msg("%s: %s", path, err);
    free(text);
    return v;
}

static void assert_same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = read_file(a, &na), *y = read_file(b, &nb);
    if (na != nb || memcmp(x, y, na) != 0)
        fail_msg("%s differs from %s (regenerate: see tests/golden/make_llama_peft_fold.py)", a, b);
    free(x);
    free(y);
}

/* |got - ref| <= rtol * max|ref| elementwise (NaN fails) */
static void assert_close(const char *what, const float *got, const float *ref, size_t n,
                         double rtol) {
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    assert_true(scale > 1e-3);
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - ref[i]) <= rtol * scale))
            fail_msg("%s %zu: %.9g vs %.9g (tolerance %.3g)", what, i, (double)got[i],
                     (double)ref[i], rtol * scale);
}

/* max|a - b| / max|b| */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / s;
}

/* ---------------------------------------------------------------- tiny models */

enum { FB = 2, FS = 6 };

static void tiny_llama(aflo_config *c, const char *type, bool tied) {
    memset(c, 0, sizeof *c);
    snprintf(c->model_type, sizeof c->model_type, "%s", type);
    c->vocab_size = 19;
    c->hidden_size = 8;
    c->intermediate_size = 12;
    c->num_hidden_layers = 2;
    c->num_attention_heads = 4;
    c->num_key_value_heads = 2;
    c->max_position_embeddings = 32;
    c->type_vocab_size = 1;
    c->rms_norm_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    c->layer_norm_eps = 1e-12f; /* config_validate checks it for every family */
    c->tie_word_embeddings = tied;
    if (strcmp(type, "qwen2") == 0) c->qkv_bias = true;
}

static aflo_model *make(const aflo_config *c, aflo_method method, int rank, float alpha,
                        unsigned targets, uint64_t seed) {
    aflo_adapter_config ac = {.method = method,
                              .rank = rank,
                              .alpha = alpha,
                              .targets = targets,
                              .projections = PROJ_ALL};
    aflo_model *m = model_create(c, &ac, TASK_CAUSAL_LM, c->vocab_size, seed, err, sizeof err);
    if (!m) fail_msg("model_create: %s", err);
    assert_int_equal(model_reserve(m, FB, FS, err, sizeof err), 0);
    return m;
}

/* Every tensor random at a scale where every path matters; adapter
 * matrices shrink with the rank so that rank 1024 moves the logits as much
 * as rank 4. */
static void randomize(aflo_model *m, uint64_t seed, bool base_too) {
    aflo_rng rng;
    rng_seed(&rng, seed);
    float ad = 0.6f / sqrtf((float)model_adapter_config(m)->rank / 4.0f + 1.0f);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->group == PGROUP_BASE && !base_too) continue;
        for (size_t j = 0; j < p->size; j++) {
            float u = rng_uniform_range(&rng, -1.0f, 1.0f);
            switch (p->role) {
            case PROLE_NORM_WEIGHT: p->data[j] = 1.0f + 0.2f * u; break;
            case PROLE_A:
            case PROLE_B: p->data[j] = ad * u; break;
            /* s_d, s_b far from 1 and of both signs */
            case PROLE_SD:
            case PROLE_SB: p->data[j] = (u < 0 ? -0.5f : 0.5f) + u; break;
            case PROLE_EMBEDDING: p->data[j] = 0.6f * u; break;
            default: p->data[j] = 0.4f * u; break;
            }
        }
    }
}

static void copy_base(aflo_model *dst, aflo_model *src) {
    for (int i = 0; i < model_param_count(src); i++) {
        aflo_param *p = model_param(src, i);
        if (p->group != PGROUP_BASE) continue;
        assert_int_equal(model_set_tensor(dst, p->name, p->data, p->size, err, sizeof err), 0);
    }
}

/* Sequence 0 full, sequence 1 of length 4 (right padding). */
static void logits_of(aflo_model *m, float *out) {
    int32_t ids[FB * FS];
    uint8_t mask[FB * FS];
    int V = model_config(m)->vocab_size;
    for (int i = 0; i < FB * FS; i++) {
        bool real = i < FS || i % FS < 4;
        ids[i] = real ? 1 + (i * 7) % (V - 1) : 0;
        mask[i] = real;
    }
    aflo_batch b = {.batch = FB, .seq = FS, .input_ids = ids, .attention_mask = mask};
    if (model_forward(m, &b, NULL, err, sizeof err)) fail_msg("forward: %s", err);
    memcpy(out, model_logits(m), sizeof(float) * FB * FS * (size_t)V);
}

#define MAX_V 32
#define N_LOGITS (FB * FS * MAX_V)

/* ---------------------------------------------------------------- PEFT folder checks */

/* adapter_config.json as PEFT reads it for a causal LM. */
static void check_peft_config(const char *dir, int r, double lora_alpha, unsigned targets) {
    char path[700];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    json_value *cfg = read_json(path);
    assert_string_equal(json_string(json_get(cfg, "peft_type"), NULL), "LORA");
    assert_string_equal(json_string(json_get(cfg, "task_type"), NULL), "CAUSAL_LM");
    assert_int_equal(json_type_of(json_get(cfg, "modules_to_save")), JSON_NULL);
    assert_string_equal(json_string(json_get(cfg, "bias"), NULL), "none");
    assert_false(json_bool(json_get(cfg, "use_rslora")));
    assert_int_equal(json_int(json_get(cfg, "r")), r);
    assert_true(json_number(json_get(cfg, "lora_alpha")) == lora_alpha);
    const json_value *tm = json_get(cfg, "target_modules");
    assert_int_equal(json_type_of(tm), JSON_ARRAY);
    unsigned seen = 0;
    for (size_t i = 0; i < json_len(tm); i++) {
        const char *t = json_string(json_at(tm, i), NULL);
        int k = 0;
        while (k < 7 && strcmp(hf_targets[k], t) != 0) k++;
        if (k == 7) fail_msg("target_modules names %s", t);
        seen |= 1u << k;
    }
    assert_int_equal(seen, targets & 0x7fu);
    json_free(cfg);
}

/* A method-full copy of m's base with every adapted weight merged from the
 * PEFT folder alone: W += lora_alpha / r * lora_B lora_A in double. Every
 * tensor of the file must be consumed. */
static aflo_model *merged_from_peft(aflo_model *m, const char *dir, int r, double lora_alpha) {
    const aflo_config *c = model_config(m);
    aflo_model *merged = make(c, METHOD_FULL, 0, 0, 0, 5);
    copy_base(merged, m);
    char path[700];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    st_file *f = st_open(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    int H = c->hidden_size, I = c->intermediate_size, hd = config_head_dim(c);
    int qd = c->num_attention_heads * hd, kvd = config_kv_heads(c) * hd;
    const int outs[7] = {qd, kvd, kvd, H, I, I, H}, ins[7] = {H, H, H, qd, H, H, I};
    size_t consumed = 0;
    for (int l = 0; l < c->num_hidden_layers; l++)
        for (int k = 0; k < 7; k++) {
            char ka[256], kb[256], wname[128];
            snprintf(ka, sizeof ka, "base_model.model.model.layers.%d.%s.lora_A.weight", l,
                     hf_paths[k]);
            snprintf(kb, sizeof kb, "base_model.model.model.layers.%d.%s.lora_B.weight", l,
                     hf_paths[k]);
            long ia = st_find(f, ka), ib = st_find(f, kb);
            assert_true((ia < 0) == (ib < 0));
            if (ia < 0) continue;
            int in = ins[k], out = outs[k];
            assert_int_equal(st_ndim(f, (size_t)ia), 2);
            assert_int_equal(st_shape(f, (size_t)ia)[0], r);
            assert_int_equal(st_shape(f, (size_t)ia)[1], in);
            assert_int_equal(st_shape(f, (size_t)ib)[0], out);
            assert_int_equal(st_shape(f, (size_t)ib)[1], r);
            size_t na, nb;
            float *A = read_tensor(f, ka, &na), *Bm = read_tensor(f, kb, &nb);
            snprintf(wname, sizeof wname, "layers.%d.%s.weight", l, hf_paths[k]);
            aflo_param *W = model_find_param(merged, wname);
            assert_non_null(W);
            for (int o = 0; o < out; o++)
                for (int j = 0; j < in; j++) {
                    double d = 0;
                    for (int q = 0; q < r; q++)
                        d += (double)Bm[(size_t)o * r + q] * A[(size_t)q * in + j];
                    W->data[(size_t)o * in + j] =
                        (float)(W->data[(size_t)o * in + j] + lora_alpha / r * d);
                }
            free(A);
            free(Bm);
            consumed += 2;
        }
    assert_int_equal(st_count(f), consumed); /* only lora_A / lora_B: nothing to save */
    assert_string_equal(st_metadata(f, "format"), "pt");
    st_close(f);
    return merged;
}

static void fold_in_c(void **state, const char *type, bool tied, aflo_method method, int rank,
                      float alpha, unsigned targets, double expect_lora_alpha) {
    aflo_config c;
    tiny_llama(&c, type, tied);
    aflo_model *m = make(&c, method, rank, alpha, targets, 3);
    randomize(m, 41, true);
    char dir[600];
    path_in(dir, sizeof dir, state, "peft");
    adapter_export_info info = {.base_model = "tiny-llama"};
    if (adapter_export_peft(m, dir, &info, err, sizeof err)) fail_msg("export: %s", err);
    check_peft_config(dir, rank, expect_lora_alpha, targets);

    aflo_model *merged = merged_from_peft(m, dir, rank, expect_lora_alpha);
    static float want[N_LOGITS], got[N_LOGITS], base[N_LOGITS];
    size_t n = (size_t)FB * FS * c.vocab_size;
    logits_of(m, want);
    logits_of(merged, got);
    assert_close("logit", got, want, n, FOLD_RTOL);
    /* and the adapters matter */
    aflo_model *plain = make(&c, METHOD_FULL, 0, 0, 0, 5);
    copy_base(plain, m);
    logits_of(plain, base);
    assert_true(rel_diff(base, want, n) > 1e-2);
    model_free(plain);
    model_free(merged);
    model_free(m);
}

/* LoRA: A and B as they are, lora_alpha = alpha, so PEFT's scale alpha / r
 * is ours; four of the seven modules (a list PEFT suffix-matches). */
static void test_fold_lora_subset(void **state) {
    unsigned targets = (1u << 0) | (1u << 2) | (1u << 5) | (1u << 6); /* q, v, up, down */
    fold_in_c(state, "llama", false, METHOD_LORA, 4, 8.0f, targets, 8.0);
}

/* ELoRA at its rank 1024 on a tiny tied model: the vectors folded, lora_alpha = r. */
static void test_fold_elora_rank_1024(void **state) {
    fold_in_c(state, "llama", true, METHOD_ELORA, 1024, 1.0f, ALL_MODULES, 1024.0);
}

/* AFLoRA on Qwen2 (q/k/v biases stay in the base). */
static void test_fold_aflora_qwen2(void **state) {
    fold_in_c(state, "qwen2", false, METHOD_AFLORA, 3, 1.0f, ALL_MODULES, 3.0);
}

/* ---------------------------------------------------------------- the PyTorch fold proof */

typedef struct {
    aflo_model *m;
    int B, S;
    int32_t *ids;
    uint8_t *mask;
} golden_model;

/* The AFLoRA model of llama_aflora.safetensors with every tensor from the
 * file, and its batch. */
static golden_model load_golden(void) {
    golden_model g = {0};
    st_file *f = st_open(FOLD_FIXTURE, err, sizeof err);
    if (!f) fail_msg("%s", err);
    const char *cfg_text = st_metadata(f, "config");
    assert_non_null(cfg_text);
    aflo_config c;
    if (config_from_json(&c, cfg_text, strlen(cfg_text), err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(st_metadata(f, "method"), "aflora");
    aflo_adapter_config ac = {.method = METHOD_AFLORA,
                              .rank = atoi(st_metadata(f, "rank")),
                              .alpha = 1.0f,
                              .targets = ALL_MODULES,
                              .projections = PROJ_ALL};
    g.m = model_create(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, 1, err, sizeof err);
    if (!g.m) fail_msg("%s", err);
    for (int i = 0; i < model_param_count(g.m); i++) {
        aflo_param *p = model_param(g.m, i);
        size_t n;
        float *d = read_tensor(f, p->name, &n);
        assert_int_equal(model_set_tensor(g.m, p->name, d, n, err, sizeof err), 0);
        free(d);
    }
    size_t n_ids, n_mask;
    float *ids_f = read_tensor(f, "in.input_ids", &n_ids);
    float *mask_f = read_tensor(f, "in.attention_mask", &n_mask);
    long ii = st_find(f, "in.input_ids");
    g.B = (int)st_shape(f, (size_t)ii)[0];
    g.S = (int)st_shape(f, (size_t)ii)[1];
    g.ids = calloc(n_ids, sizeof *g.ids);
    g.mask = calloc(n_ids, 1);
    assert_true(g.ids && g.mask && n_mask == n_ids);
    for (size_t i = 0; i < n_ids; i++) {
        g.ids[i] = (int32_t)ids_f[i];
        g.mask[i] = mask_f[i] != 0.0f;
    }
    free(ids_f);
    free(mask_f);
    st_close(f);
    assert_int_equal(model_reserve(g.m, g.B, g.S, err, sizeof err), 0);
    return g;
}

static void test_fold_matches_pytorch(void **state) {
    golden_model g = load_golden();
    const aflo_config *c = model_config(g.m);
    /* the fixture's vectors are far from the identity: the fold is not trivial */
    double far = 0;
    for (int i = 0; i < model_param_count(g.m); i++) {
        aflo_param *p = model_param(g.m, i);
        if (p->role != PROLE_SD && p->role != PROLE_SB) continue;
        for (size_t j = 0; j < p->size; j++) far = fmax(far, fabs(p->data[j] - 1.0));
    }
    assert_true(far > 0.5);

    const bool regen = getenv(REGEN_ENV) != NULL;
    char dir[600];
    if (regen)
        snprintf(dir, sizeof dir, "%s", FOLD_PEFT);
    else
        path_in(dir, sizeof dir, state, "peft");
    adapter_export_info info = {.base_model = "tiny-llama-golden"};
    if (adapter_export_peft(g.m, dir, &info, err, sizeof err)) fail_msg("export: %s", err);
    check_peft_config(dir, model_adapter_config(g.m)->rank, model_adapter_config(g.m)->rank,
                      ALL_MODULES);
    if (regen) { /* step 1 of regenerating: the script reads this folder next */
        printf("wrote %s; now run tests/golden/make_llama_peft_fold.py\n", dir);
        free(g.ids);
        free(g.mask);
        model_free(g.m);
        return;
    }
    /* what the reference was computed from is what the engine writes today */
    const char *const files[] = {"adapter_config.json", "adapter_model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char a[700], b[700];
        snprintf(a, sizeof a, "%s/%s", dir, files[i]);
        snprintf(b, sizeof b, "%s/%s", FOLD_PEFT, files[i]);
        assert_same_file(a, b);
    }

    aflo_batch b = {.batch = g.B, .seq = g.S, .input_ids = g.ids, .attention_mask = g.mask};
    if (model_forward(g.m, &b, NULL, err, sizeof err)) fail_msg("forward: %s", err);
    size_t n_logits = (size_t)g.B * g.S * c->vocab_size;
    st_file *ref = st_open(FOLD_REFERENCE, err, sizeof err);
    if (!ref) fail_msg("%s", err);
    size_t n, nb;
    float *want = read_tensor(ref, "out.logits", &n);
    float *base = read_tensor(ref, "out.base_logits", &nb);
    assert_int_equal(n, n_logits);
    assert_int_equal(nb, n_logits);
    assert_close("logit", model_logits(g.m), want, n, FOLD_RTOL);
    assert_true(rel_diff(base, want, n) > 1e-2); /* the adapter matters */
    free(want);
    free(base);
    st_close(ref);
    free(g.ids);
    free(g.mask);
    model_free(g.m);
}

/* ---------------------------------------------------------------- PEFT import */

/* The folder read back: adapter_peft_read_config gives a LoRA model of the
 * same function; an AFLoRA model takes it too (s_d = lora_alpha / r). */
static void test_peft_import_round_trip(void **state) {
    aflo_config c;
    tiny_llama(&c, "llama", false);
    unsigned targets = (1u << 1) | (1u << 3) | (1u << 4); /* k, o, gate */
    aflo_model *m = make(&c, METHOD_AFLORA, 4, 1.0f, targets, 3);
    randomize(m, 43, true);
    char dir[600];
    path_in(dir, sizeof dir, state, "peft");
    if (adapter_export_peft(m, dir, NULL, err, sizeof err)) fail_msg("export: %s", err);
    aflo_adapter_config ac;
    char base_name[64];
    if (adapter_peft_read_config(dir, &ac, base_name, sizeof base_name, err, sizeof err))
        fail_msg("read_config: %s", err);
    assert_int_equal(ac.method, METHOD_LORA);
    assert_int_equal(ac.rank, 4);
    assert_true(ac.alpha == 4.0f);
    assert_int_equal(ac.targets, targets);

    static float want[N_LOGITS], got[N_LOGITS];
    size_t n = (size_t)FB * FS * c.vocab_size;
    logits_of(m, want);
    aflo_model *l = make(&c, METHOD_LORA, ac.rank, ac.alpha, ac.targets, 9);
    copy_base(l, m);
    if (adapter_import_peft(l, dir, NULL, err, sizeof err)) fail_msg("import: %s", err);
    logits_of(l, got);
    assert_close("logit", got, want, n, FOLD_RTOL);
    aflo_model *a = make(&c, METHOD_AFLORA, 4, 1.0f, targets, 9);
    copy_base(a, m);
    if (adapter_import_peft(a, dir, NULL, err, sizeof err)) fail_msg("import: %s", err);
    logits_of(a, got);
    assert_close("logit", got, want, n, FOLD_RTOL);
    /* other modules than the file's: named */
    aflo_model *wrong = make(&c, METHOD_LORA, 4, 4.0f, ALL_MODULES, 9);
    assert_int_equal(adapter_import_peft(wrong, dir, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "no lora_A tensor for layers.0.self_attn.q_proj.lora_A"));
    model_free(wrong);
    model_free(a);
    model_free(l);
    model_free(m);
}

/* ---------------------------------------------------------------- native file */

static void native_round_trip(void **state, aflo_method method, const char *type, bool tied) {
    aflo_config c;
    tiny_llama(&c, type, tied);
    aflo_model *m = make(&c, method, 3, 6.0f, ALL_MODULES, 3);
    randomize(m, 47, true);
    char path[600];
    path_in(path, sizeof path, state, "adapter.safetensors");
    adapter_export_info info = {.base_model = "tiny-llama"};
    if (adapter_export_native(m, path, &info, err, sizeof err)) fail_msg("export: %s", err);

    adapter_native_meta meta;
    if (adapter_native_read_meta(path, &meta, err, sizeof err)) fail_msg("meta: %s", err);
    assert_int_equal(meta.task, TASK_CAUSAL_LM);
    assert_int_equal(meta.num_labels, c.vocab_size);
    assert_int_equal(meta.num_key_value_heads, 2);
    assert_string_equal(meta.model_type, type);
    adapter_native_meta_free(&meta);
    st_file *f = st_open(path, err, sizeof err);
    assert_non_null(f);
    assert_string_equal(st_metadata(f, "task"), "causal_lm");
    if (method != METHOD_FULL)
        assert_string_equal(st_metadata(f, "target_modules"),
                            "[\"q_proj\",\"k_proj\",\"v_proj\",\"o_proj\",\"gate_proj\","
                            "\"up_proj\",\"down_proj\"]");
    /* an adapter holds no base tensor: not lm_head, not the embeddings */
    assert_true((st_find(f, "embed_tokens.weight") >= 0) == (method == METHOD_FULL));
    st_close(f);

    static float want[N_LOGITS], got[N_LOGITS];
    size_t n = (size_t)FB * FS * c.vocab_size;
    logits_of(m, want);
    aflo_model *back = make(&c, method, 3, 6.0f, ALL_MODULES, 8);
    if (method != METHOD_FULL) copy_base(back, m);
    if (adapter_import_native(back, path, err, sizeof err)) fail_msg("import: %s", err);
    logits_of(back, got);
    assert_memory_equal(got, want, n * sizeof *got); /* the same bits */

    /* another shape of model: refused with its dimensions, nothing copied */
    aflo_config other = c;
    other.num_key_value_heads = 4;
    aflo_model *wrong = make(&other, method, 3, 6.0f, ALL_MODULES, 8);
    logits_of(wrong, want);
    assert_int_equal(adapter_import_native(wrong, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "2 KV heads"));
    logits_of(wrong, got);
    assert_memory_equal(got, want, n * sizeof *got);
    model_free(wrong);
    model_free(back);
    model_free(m);
}

static void test_native_aflora(void **state) {
    native_round_trip(state, METHOD_AFLORA, "llama", false);
}
static void test_native_lora_mistral(void **state) {
    native_round_trip(state, METHOD_LORA, "mistral", false);
}
static void test_native_full_tied(void **state) {
    native_round_trip(state, METHOD_FULL, "llama", true);
}

/* ---------------------------------------------------------------- whole model, README */

/* Method full as a LlamaForCausalLM folder: every tensor under its
 * transformers name, lm_head beside "model." (absent when tied). */
static void hf_export(void **state, bool tied) {
    aflo_config c;
    tiny_llama(&c, "llama", tied);
    aflo_model *m = make(&c, METHOD_FULL, 0, 0, 0, 3);
    randomize(m, 53, true);
    char dir[600], path[700];
    path_in(dir, sizeof dir, state, "model");
    if (adapter_export_hf_model(m, dir, TOKENIZER_DIR, NULL, err, sizeof err))
        fail_msg("export: %s", err);
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_value *cfg = read_json(path);
    assert_string_equal(json_string(json_get(cfg, "model_type"), NULL), "llama");
    assert_string_equal(json_string(json_at(json_get(cfg, "architectures"), 0), NULL),
                        "LlamaForCausalLM");
    assert_int_equal(json_bool(json_get(cfg, "tie_word_embeddings")), tied);
    assert_int_equal(json_int(json_get(cfg, "num_key_value_heads")), 2);
    assert_null(json_get(cfg, "id2label"));
    json_free(cfg);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *tok = fopen(path, "rb");
    assert_non_null(tok);
    fclose(tok);

    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_file *f = st_open(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    assert_int_equal(st_count(f), (size_t)model_param_count(m));
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        char key[160];
        if (strcmp(p->name, "lm_head.weight") == 0)
            snprintf(key, sizeof key, "lm_head.weight");
        else
            snprintf(key, sizeof key, "model.%s", p->name);
        size_t n;
        float *d = read_tensor(f, key, &n);
        assert_int_equal(n, p->size);
        assert_memory_equal(d, p->data, n * sizeof *d);
        free(d);
    }
    assert_true((st_find(f, "lm_head.weight") >= 0) == !tied);
    assert_true(st_find(f, "model.layers.1.mlp.down_proj.weight") >= 0);
    st_close(f);
    model_free(m);
}

static void test_hf_export_untied(void **state) { hf_export(state, false); }
static void test_hf_export_tied(void **state) { hf_export(state, true); }

static char *readme_of(void **state, int rank) {
    aflo_config c;
    tiny_llama(&c, "llama", false);
    aflo_model *m = make(&c, METHOD_AFLORA, rank, 1.0f, ALL_MODULES, 3);
    char dir[600], path[700];
    path_in(dir, sizeof dir, state, "peft");
    adapter_export_info info = {.base_model = "org/tiny-llama",
                                .base_model_source = ADAPTER_BASE_NAME_OR_PATH};
    if (adapter_export_peft(m, dir, &info, err, sizeof err)) fail_msg("export: %s", err);
    model_free(m);
    snprintf(path, sizeof path, "%s/README.md", dir);
    size_t n;
    return read_file(path, &n);
}

static void test_readme_causal(void **state) {
    char *r = readme_of(state, 32);
    assert_non_null(strstr(r, "pipeline_tag: text-generation\n"));
    assert_non_null(strstr(r, "for causal language modelling"));
    assert_non_null(strstr(r, "needs `--max-lora-rank` of at least 32"));
    assert_non_null(strstr(r, "convert_lora_to_gguf.py"));
    assert_non_null(
        strstr(r, "model = AutoModelForCausalLM.from_pretrained(\"org/tiny-llama\")\n"));
    assert_null(strstr(r, "## Labels"));
    assert_null(strstr(r, "AutoConfig"));
    free(r);
    r = readme_of(state, 16);
    assert_non_null(strstr(r, "takes it as it is (rank 16"));
    assert_null(strstr(r, "--max-lora-rank` of at least"));
    free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fold_matches_pytorch, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_fold_lora_subset, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_fold_elora_rank_1024, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_fold_aflora_qwen2, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_peft_import_round_trip, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_native_aflora, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_native_lora_mistral, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_native_full_tied, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_hf_export_untied, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_hf_export_tied, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_readme_causal, tmpdir_setup, tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
