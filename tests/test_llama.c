/* test_llama.c — the LLaMA family against its float64 PyTorch reference,
 * finite differences, and its structure.
 *
 * Golden fixtures (tests/golden/llama_*.safetensors, made by
 * make_llama_golden.py): a tiny model's weights, a right-padded batch with
 * per-token labels, the reference logits, loss and every trainable
 * gradient; cases cover grouped-query attention, tied and untied lm_head,
 * Qwen2's q/k/v biases, Mistral's sliding window with a given head_dim,
 * linear and llama3 RoPE scaling, and the aflora, elora, lora and full
 * methods. The engine must agree within |c - ref| <= ATOL + RTOL * max|ref|
 * per tensor. Then central differences of the engine's own loss check every
 * trainable tensor of small random models of each variant, and the rest
 * checks what the family declares (tensor names, shapes, biases, tying, what
 * trains) and how the loss treats ignored labels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/family.h"
#include "model/gemm.h"
#include "model/llama.h"
#include "model/model.h"

#ifndef GOLDEN_DIR
#define GOLDEN_DIR "tests/golden"
#endif

/* fp32 against float64, as test_golden.c. */
#define RTOL 1e-4
#define ATOL 1e-6

static char err[512];

/* ---------------------------------------------------------------- golden */

static float *read_tensor(const st_file *f, const char *name, size_t *n) {
    long i = st_find(f, name);
    if (i < 0) fail_msg("fixture lacks %s", name);
    *n = st_numel(f, (size_t)i);
    float *d = malloc(*n * sizeof *d);
    assert_non_null(d);
    assert_int_equal(st_read_f32_at(f, (size_t)i, d, *n, err, sizeof err), 0);
    return d;
}

static void compare(const char *what, const float *got, const float *ref, size_t n) {
    double scale = 0, worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)ref[i]);
        if (!(e <= worst)) { /* NaN counts as the worst */
            worst = e;
            at = i;
        }
    }
    if (!(worst <= ATOL + RTOL * scale))
        fail_msg("%s: max error %.3g at %zu (got %.8g, ref %.8g, scale %.3g)", what, worst, at,
                 got[at], ref[at], scale);
}

static void run_fixture(const char *file, int want_gradients) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", GOLDEN_DIR, file);
    st_file *f = st_open(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    const char *cfg_text = st_metadata(f, "config");
    assert_non_null(cfg_text);
    aflo_config c;
    if (config_from_json(&c, cfg_text, strlen(cfg_text), err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(st_metadata(f, "task"), "causal_lm");
    aflo_adapter_config ac = {.targets = ALL_MODULES, .projections = PROJ_ALL};
    const char *method = st_metadata(f, "method");
    for (int i = 0; i < METHOD_COUNT; i++)
        if (strcmp(method, method_names[i]) == 0) ac.method = (aflo_method)i;
    ac.rank = atoi(st_metadata(f, "rank"));
    ac.alpha = (float)atof(st_metadata(f, "alpha"));
    int labels = atoi(st_metadata(f, "num_labels"));
    aflo_model *m = model_create(&c, &ac, TASK_CAUSAL_LM, labels, 1, err, sizeof err);
    if (!m) fail_msg("%s", err);

    /* every model tensor comes from the fixture, and every fixture weight is one */
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        size_t n;
        float *d = read_tensor(f, p->name, &n);
        assert_int_equal(model_set_tensor(m, p->name, d, n, err, sizeof err), 0);
        free(d);
    }
    int n_weights = 0;
    for (size_t i = 0; i < st_count(f); i++) {
        const char *name = st_name(f, i);
        if (strncmp(name, "in.", 3) && strncmp(name, "out.", 4) && strncmp(name, "grad.", 5))
            n_weights++;
    }
    assert_int_equal(n_weights, model_param_count(m));

    size_t n_ids, n_mask, n_lab, n_logits, n_loss;
    float *ids_f = read_tensor(f, "in.input_ids", &n_ids);
    float *mask_f = read_tensor(f, "in.attention_mask", &n_mask);
    float *lab_f = read_tensor(f, "in.labels", &n_lab);
    float *ref_logits = read_tensor(f, "out.logits", &n_logits);
    float *ref_loss = read_tensor(f, "out.loss", &n_loss);
    long ii = st_find(f, "in.input_ids");
    int B = (int)st_shape(f, (size_t)ii)[0], S = (int)st_shape(f, (size_t)ii)[1];
    assert_int_equal(n_logits, (size_t)B * S * labels);
    int32_t *ids = calloc(n_ids, sizeof *ids), *lab = calloc(n_lab, sizeof *lab);
    uint8_t *mask = calloc(n_ids, 1);
    assert_true(ids && lab && mask);
    for (size_t i = 0; i < n_ids; i++) {
        ids[i] = (int32_t)ids_f[i];
        mask[i] = mask_f[i] != 0.0f;
        lab[i] = (int32_t)lab_f[i];
    }
    aflo_batch b = {
        .batch = B, .seq = S, .input_ids = ids, .attention_mask = mask, .token_labels = lab};
    assert_int_equal(model_reserve(m, B, S, err, sizeof err), 0);
    model_zero_grad(m);
    float loss;
    if (model_forward(m, &b, &loss, err, sizeof err)) fail_msg("%s", err);
    compare("logits", model_logits(m), ref_logits, n_logits);
    compare("loss", &loss, ref_loss, 1);
    model_backward(m, 1.0f);

    int checked = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        char gname[128];
        snprintf(gname, sizeof gname, "grad.%s", p->name);
        bool in_fixture = st_find(f, gname) >= 0;
        /* the fixture names exactly the tensors that train in this method */
        if (in_fixture != p->trainable)
            fail_msg("%s: trainable %d, in fixture %d", p->name, p->trainable, in_fixture);
        if (!in_fixture) continue;
        size_t n;
        float *ref = read_tensor(f, gname, &n);
        assert_int_equal(n, p->size);
        compare(gname, p->grad, ref, n);
        free(ref);
        checked++;
    }
    assert_int_equal(checked, want_gradients);
    free(ids_f);
    free(mask_f);
    free(lab_f);
    free(ref_logits);
    free(ref_loss);
    free(ids);
    free(lab);
    free(mask);
    model_free(m);
    st_close(f);
}

/* 2 layers x 7 modules x (A, B, s_d, s_b) */
static void test_golden_aflora_gqa(void **s) {
    (void)s;
    run_fixture("llama_aflora.safetensors", 56);
}
/* embed, 2 x (2 norms + 7 weights), norm; no lm_head */
static void test_golden_full_tied_linear_rope(void **s) {
    (void)s;
    run_fixture("llama_full_tied.safetensors", 20);
}
static void test_golden_lora_llama3_rope(void **s) {
    (void)s;
    run_fixture("llama_lora_llama3.safetensors", 28);
}
/* 21 + 3 q/k/v biases per layer, lm_head */
static void test_golden_qwen2_biases_full(void **s) {
    (void)s;
    run_fixture("llama_qwen2_full.safetensors", 27);
}
static void test_golden_mistral_window_elora(void **s) {
    (void)s;
    run_fixture("llama_mistral_elora.safetensors", 28);
}

/* ---------------------------------------------------------------- models */

enum { FB = 2, FS = 6 };

static void tiny_llama(aflo_config *c, const char *type) {
    memset(c, 0, sizeof *c);
    snprintf(c->model_type, sizeof c->model_type, "%s", type);
    c->vocab_size = 17;
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
}

static aflo_model *make(const aflo_config *c, aflo_method method, aflo_projections proj) {
    aflo_adapter_config ac = {
        .method = method, .rank = 3, .alpha = 6.0f, .targets = ALL_MODULES, .projections = proj};
    aflo_model *m = model_create(c, &ac, TASK_CAUSAL_LM, c->vocab_size, 77, err, sizeof err);
    if (!m) fail_msg("%s", err);
    assert_int_equal(model_reserve(m, FB, FS, err, sizeof err), 0);
    return m;
}

/* Weights of a scale where every path matters (the 0.02 init leaves the
 * attention nearly uniform and the adapters' s_b at 0). */
static void randomize(aflo_model *m) {
    aflo_rng rng;
    rng_seed(&rng, 99);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        for (size_t j = 0; j < p->size; j++) {
            float u = rng_uniform_range(&rng, -1.0f, 1.0f);
            switch (p->role) {
            case PROLE_NORM_WEIGHT: p->data[j] = 1.0f + 0.2f * u; break;
            case PROLE_EMBEDDING:
            case PROLE_A:
            case PROLE_B: p->data[j] = 0.6f * u; break;
            case PROLE_SD:
            case PROLE_SB: p->data[j] = u; break;
            default: p->data[j] = 0.4f * u; break;
            }
        }
    }
}

typedef struct {
    int32_t ids[FB * FS], labels[FB * FS];
    uint8_t mask[FB * FS];
} tiny_batch;

/* Sequence 0 full, sequence 1 of length 4; labels ignored on padding and on
 * sequence 0's tokens 0 (never a target anyway) and 2. */
static aflo_batch make_batch(tiny_batch *t, int vocab) {
    for (int i = 0; i < FB * FS; i++) {
        bool real = i < FS || i % FS < 4;
        t->ids[i] = real ? 1 + (i * 7) % (vocab - 1) : 0;
        t->mask[i] = real;
        t->labels[i] = real && i != 0 && i != 2 ? t->ids[i] : LABEL_IGNORE;
    }
    return (aflo_batch){.batch = FB,
                        .seq = FS,
                        .input_ids = t->ids,
                        .attention_mask = t->mask,
                        .token_labels = t->labels};
}

static double loss_at(aflo_model *m, const aflo_batch *b) {
    float loss;
    if (model_forward(m, b, &loss, err, sizeof err)) fail_msg("%s", err);
    return loss;
}

/* Central differences (Richardson-extrapolated, as test_model.c) of up to 8
 * elements of every trainable tensor against the analytic gradient. */
static int check_gradients(aflo_model *m, const aflo_batch *b) {
    model_zero_grad(m);
    assert_true(isfinite(loss_at(m, b)));
    model_backward(m, 1.0f);
    double gscale = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        for (size_t j = 0; p->trainable && j < p->size; j++)
            gscale = fmax(gscale, fabs(p->grad[j]));
    }
    assert_true(gscale > 0);
    aflo_rng rng;
    rng_seed(&rng, 5);
    int checked = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (!p->trainable) continue;
        double num = 0, den = 0;
        int k = p->size < 8 ? (int)p->size : 8;
        for (int q = 0; q < k; q++) {
            size_t j = (size_t)rng_below(&rng, p->size);
            float orig = p->data[j];
            double d[2];
            for (int h = 0; h < 2; h++) {
                float eps = (h ? 5e-3f : 1e-2f) * fmaxf(1.0f, fabsf(orig));
                p->data[j] = orig + eps;
                double lp = loss_at(m, b);
                p->data[j] = orig - eps;
                double lm = loss_at(m, b);
                p->data[j] = orig;
                d[h] = (lp - lm) / ((double)(orig + eps) - (double)(orig - eps));
            }
            double fd = (4.0 * d[1] - d[0]) / 3.0;
            num += (fd - p->grad[j]) * (fd - p->grad[j]);
            den += fd * fd;
        }
        double rel = sqrt(num) / (sqrt(den) + 1e-3 * gscale * sqrt((double)k));
        if (rel > 3e-2) fail_msg("gradient mismatch in %s: relative error %.3g", p->name, rel);
        checked++;
    }
    return checked;
}

static void fd_case(aflo_config *c, aflo_method method, int want_tensors) {
    aflo_model *m = make(c, method, PROJ_ALL);
    randomize(m);
    tiny_batch t;
    aflo_batch b = make_batch(&t, c->vocab_size);
    assert_int_equal(check_gradients(m, &b), want_tensors);
    model_free(m);
}

static void test_fd_llama_aflora_gqa(void **s) {
    (void)s;
    aflo_config c;
    tiny_llama(&c, "llama");
    fd_case(&c, METHOD_AFLORA, 2 * 7 * 4);
}

static void test_fd_full_tied_llama3(void **s) {
    (void)s;
    aflo_config c;
    tiny_llama(&c, "llama");
    c.tie_word_embeddings = true;
    c.rope_scaling = ROPE_SCALING_LLAMA3;
    c.rope_factor = 8;
    c.rope_low_freq_factor = 1;
    c.rope_high_freq_factor = 4;
    c.rope_original_max_position_embeddings = 64;
    fd_case(&c, METHOD_FULL, 1 + 2 * 9 + 1);
}

static void test_fd_qwen2_lora_biases(void **s) {
    (void)s;
    aflo_config c;
    tiny_llama(&c, "qwen2");
    c.num_key_value_heads = 1;
    fd_case(&c, METHOD_LORA, 2 * 7 * 2);
    fd_case(&c, METHOD_FULL, 1 + 2 * 12 + 2);
}

static void test_fd_mistral_window_head_dim(void **s) {
    (void)s;
    aflo_config c;
    tiny_llama(&c, "mistral");
    c.sliding_window = 2;
    c.head_dim = 4; /* not 8 / 4 */
    c.rope_scaling = ROPE_SCALING_LINEAR;
    c.rope_factor = 2;
    fd_case(&c, METHOD_ELORA, 2 * 7 * 2);
}

/* ---------------------------------------------------------------- structure */

static void test_tensors_and_names(void **s) {
    (void)s;
    aflo_config c;
    tiny_llama(&c, "qwen2");
    aflo_model *m = make(&c, METHOD_AFLORA, PROJ_FFN);
    assert_ptr_equal(model_family(m), &llama_family);
    /* GQA shapes: k_proj has 2 KV heads of 2 */
    aflo_param *k = model_find_param(m, "model.layers.1.self_attn.k_proj.weight");
    assert_non_null(k);
    assert_int_equal(k->shape[0], 4);
    assert_int_equal(k->shape[1], 8);
    /* Qwen2: q/k/v biases, none on o_proj or the MLP */
    assert_non_null(model_find_param(m, "layers.0.self_attn.v_proj.bias"));
    assert_null(model_find_param(m, "layers.0.self_attn.o_proj.bias"));
    assert_null(model_find_param(m, "layers.0.mlp.up_proj.bias"));
    /* checkpoint names: the model under "model.", lm_head beside it */
    char hf[128];
    aflo_param *head = model_find_param(m, "lm_head.weight");
    assert_non_null(head);
    assert_int_equal(model_hf_name(m, head, hf, sizeof hf), 0);
    assert_string_equal(hf, "lm_head.weight");
    assert_int_equal(model_hf_name(m, k, hf, sizeof hf), 0);
    assert_string_equal(hf, "model.layers.1.self_attn.k_proj.weight");
    aflo_param *e = model_find_param(m, "embed_tokens.weight");
    assert_int_equal(model_hf_name(m, e, hf, sizeof hf), 0);
    assert_string_equal(hf, "model.embed_tokens.weight");
    /* adapter methods: embeddings, lm_head, norms frozen; AFLoRA "ffn":
     * only gate/up/down train their A and B, every s_d/s_b trains */
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        bool want = p->group == PGROUP_ADAPTER &&
                    (p->role == PROLE_SD || p->role == PROLE_SB || model_module(m, p->module)->ffn);
        if (p->trainable != want) fail_msg("%s: trainable %d", p->name, p->trainable);
        if (p->group == PGROUP_ADAPTER && (p->role == PROLE_A || p->role == PROLE_B))
            assert_int_equal(p->trainable, p->module >= LLAMA_GATE);
    }
    model_free(m);

    /* tied: no lm_head at all */
    tiny_llama(&c, "llama");
    c.tie_word_embeddings = true;
    m = make(&c, METHOD_LORA, PROJ_ALL);
    assert_null(model_find_param(m, "lm_head.weight"));
    assert_null(model_find_param(m, "layers.0.self_attn.q_proj.bias"));
    model_free(m);
}

/* The activation estimate is what reserving allocates, and adapter methods
 * keep no gradient for the embeddings or lm_head. */
static void test_memory_estimate(void **s) {
    (void)s;
    aflo_config c;
    tiny_llama(&c, "llama");
    aflo_adapter_config ac = {.method = METHOD_AFLORA,
                              .rank = 3,
                              .targets = LLAMA_DEFAULT_TARGETS,
                              .projections = PROJ_ALL};
    aflo_memory est;
    assert_int_equal(
        model_estimate_memory(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, 3, 5, &est, err, sizeof err),
        0);
    aflo_model *m = model_create(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, 1, err, sizeof err);
    assert_non_null(m);
    assert_int_equal(model_reserve(m, 3, 5, err, sizeof err), 0);
    aflo_memory got = model_memory(m);
    assert_memory_equal(&est, &got, sizeof est);
    /* 2 layers x 5 targeted modules x (A, B, s_d, s_b) train: nothing else */
    size_t want = 0;
    int n = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->group == PGROUP_ADAPTER) want += p->size, n++;
        assert_int_equal(p->trainable, p->group == PGROUP_ADAPTER);
    }
    assert_int_equal(n, 2 * 5 * 4);
    assert_int_equal(got.grads, want * sizeof(float));
    assert_null(model_find_param(m, "layers.0.self_attn.o_proj.lora_A"));
    model_free(m);
}

/* Plain gradient descent on the AFLoRA adapter alone fits the batch:
 * forward, backward and the gradients' signs work together. */
static void test_adapter_descent_lowers_loss(void **s) {
    (void)s;
    aflo_config c;
    tiny_llama(&c, "llama");
    aflo_model *m = make(&c, METHOD_AFLORA, PROJ_ALL);
    randomize(m);
    tiny_batch t;
    aflo_batch b = make_batch(&t, c.vocab_size);
    double first = loss_at(m, &b), last = first;
    for (int step = 0; step < 80; step++) {
        model_zero_grad(m);
        last = loss_at(m, &b);
        model_backward(m, 1.0f);
        for (int i = 0; i < model_param_count(m); i++) {
            aflo_param *p = model_param(m, i);
            for (size_t j = 0; p->trainable && j < p->size; j++) p->data[j] -= 0.2f * p->grad[j];
        }
    }
    fprintf(stderr, "adapter descent: loss %.4f -> %.4f\n", first, last);
    assert_true(last < 0.5 * first);
    model_free(m);
}

/* The row-parallel kernels give the same bits on 1 and 2 threads, on
 * tensors large enough for them to fork (32K elements). */
static void test_threads_bit_identical(void **s) {
    (void)s;
    aflo_config c;
    tiny_llama(&c, "llama");
    c.vocab_size = 512;
    c.hidden_size = 64;
    c.intermediate_size = 172;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 4;
    enum { TB = 4, TS = 64, TN = TB * TS };
    aflo_adapter_config ac = {
        .method = METHOD_FULL, .rank = 0, .targets = ALL_MODULES, .projections = PROJ_ALL};
    aflo_model *m = model_create(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, 5, err, sizeof err);
    assert_non_null(m);
    assert_int_equal(model_reserve(m, TB, TS, err, sizeof err), 0);
    randomize(m);
    int32_t ids[TN], labels[TN];
    uint8_t mask[TN];
    for (int i = 0; i < TN; i++) {
        bool real = i % TS < TS - 3 * (i / TS); /* sequence b is 3b tokens short */
        ids[i] = real ? (int32_t)(1 + (i * 37) % 511) : 0;
        mask[i] = real;
        labels[i] = real ? ids[i] : LABEL_IGNORE;
    }
    aflo_batch b = {
        .batch = TB, .seq = TS, .input_ids = ids, .attention_mask = mask, .token_labels = labels};
    size_t G = 0;
    for (int i = 0; i < model_param_count(m); i++) G += model_param(m, i)->size;
    float *grads[2], loss[2];
    for (int run = 0; run < 2; run++) {
        engine_set_threads(run + 1);
        model_zero_grad(m);
        if (model_forward(m, &b, &loss[run], err, sizeof err)) fail_msg("%s", err);
        model_backward(m, 1.0f);
        grads[run] = malloc(G * sizeof(float));
        assert_non_null(grads[run]);
        size_t off = 0;
        for (int i = 0; i < model_param_count(m); i++) {
            aflo_param *p = model_param(m, i);
            memcpy(grads[run] + off, p->grad, p->size * sizeof(float));
            off += p->size;
        }
    }
    engine_set_threads(1);
    assert_true(loss[0] == loss[1]);
    assert_memory_equal(grads[0], grads[1], G * sizeof(float));
    free(grads[0]);
    free(grads[1]);
    model_free(m);
}

static void test_refusals(void **s) {
    (void)s;
    aflo_config c;
    tiny_llama(&c, "llama");
    aflo_adapter_config ac = {.method = METHOD_AFLORA, .rank = 2, .targets = ALL_MODULES};
    /* no sequence-classification head in this family */
    assert_null(model_create(&c, &ac, TASK_CLASSIFICATION, 2, 1, err, sizeof err));
    assert_non_null(strstr(err, "the llama family has no head for this task"));
    assert_null(model_create(&c, &ac, TASK_CAUSAL_LM, 5, 1, err, sizeof err));
    assert_non_null(strstr(err, "must be vocab_size 17"));
    c.head_dim = 3;
    assert_null(model_create(&c, &ac, TASK_CAUSAL_LM, 17, 1, err, sizeof err));
    assert_non_null(strstr(err, "must be even"));
    tiny_llama(&c, "llama");
    c.rope_theta = 0;
    assert_null(model_create(&c, &ac, TASK_CAUSAL_LM, 17, 1, err, sizeof err));
    assert_non_null(strstr(err, "rope_theta"));

    /* ids and labels out of range */
    tiny_llama(&c, "llama");
    aflo_model *m = make(&c, METHOD_AFLORA, PROJ_ALL);
    tiny_batch t;
    aflo_batch b = make_batch(&t, c.vocab_size);
    float loss;
    t.labels[3] = 17;
    assert_int_equal(model_forward(m, &b, &loss, err, sizeof err), -1);
    assert_non_null(strstr(err, "label 17"));
    t.labels[3] = 2;
    t.ids[2] = -1;
    assert_int_equal(model_forward(m, &b, &loss, err, sizeof err), -1);
    assert_non_null(strstr(err, "input id -1"));
    model_free(m);
}

/* The loss is the mean over the positions whose next token has a label: a
 * label's value moves the loss only where it is read (shifted), an ignored
 * label adds nothing, and with none there is neither loss nor gradient. */
static void test_loss_masking(void **s) {
    (void)s;
    aflo_config c;
    tiny_llama(&c, "llama");
    aflo_model *m = make(&c, METHOD_AFLORA, PROJ_ALL);
    randomize(m);
    tiny_batch t;
    aflo_batch b = make_batch(&t, c.vocab_size);
    double base = loss_at(m, &b);
    /* label 0 of each sequence is never a target: changing it changes nothing */
    t.labels[FS] = 5;
    assert_true(loss_at(m, &b) == base);
    /* by hand: the mean of -log softmax(logits[t])[label[t+1]] */
    const float *lg = model_logits(m);
    double sum = 0;
    int n = 0;
    for (int i = 0; i < FB * FS; i++) {
        if (i % FS == FS - 1 || t.labels[i + 1] == LABEL_IGNORE) continue;
        const float *row = lg + (size_t)i * c.vocab_size;
        double mx = row[0], z = 0;
        for (int v = 1; v < c.vocab_size; v++) mx = fmax(mx, row[v]);
        for (int v = 0; v < c.vocab_size; v++) z += exp(row[v] - mx);
        sum += mx + log(z) - row[t.labels[i + 1]];
        n++;
    }
    assert_int_equal(n, 4 + 3); /* sequence 0 labels 1, 3, 4, 5; sequence 1 labels 1..3 */
    assert_float_equal(base, sum / n, 1e-5);
    /* nothing labelled: loss 0, backward adds nothing */
    for (int i = 0; i < FB * FS; i++) t.labels[i] = LABEL_IGNORE;
    model_zero_grad(m);
    assert_true(loss_at(m, &b) == 0.0);
    model_backward(m, 1.0f);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        for (size_t j = 0; p->trainable && j < p->size; j++) assert_true(p->grad[j] == 0.0f);
    }
    /* padding does not leak into real positions: changing a padded id
     * leaves the real positions' logits as they were */
    b = make_batch(&t, c.vocab_size);
    assert_int_equal(model_forward(m, &b, NULL, err, sizeof err), 0);
    size_t nl = (size_t)FB * FS * c.vocab_size;
    float *before = malloc(nl * sizeof *before);
    assert_non_null(before);
    memcpy(before, model_logits(m), nl * sizeof *before);
    t.ids[FS + 5] = 9;
    assert_int_equal(model_forward(m, &b, NULL, err, sizeof err), 0);
    for (size_t i = 0; i < (size_t)(FS + 4) * c.vocab_size; i++)
        assert_true(model_logits(m)[i] == before[i]);
    free(before);
    model_free(m);
}

int main(void) {
    engine_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_aflora_gqa),
        cmocka_unit_test(test_golden_full_tied_linear_rope),
        cmocka_unit_test(test_golden_lora_llama3_rope),
        cmocka_unit_test(test_golden_qwen2_biases_full),
        cmocka_unit_test(test_golden_mistral_window_elora),
        cmocka_unit_test(test_fd_llama_aflora_gqa),
        cmocka_unit_test(test_fd_full_tied_llama3),
        cmocka_unit_test(test_fd_qwen2_lora_biases),
        cmocka_unit_test(test_fd_mistral_window_head_dim),
        cmocka_unit_test(test_tensors_and_names),
        cmocka_unit_test(test_memory_estimate),
        cmocka_unit_test(test_adapter_descent_lowers_loss),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_loss_masking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
