/* test_model.c — whole-model gradient checks by finite differences.
 *
 * A tiny encoder for each method; every trainable tensor's analytic gradient
 * is compared with central differences of the loss on sampled elements
 * (the largest-gradient elements plus random ones). Adapter tensors are set
 * to non-zero random values first: at their real initialisation (s_b = 0,
 * LoRA's B = 0) most adapter gradients would be trivially zero. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/bert.h"
#include "model/gemm.h"
#include "model/model.h"
#include "testutil.h"
#include "base/rng.h"

#define B 3
#define S 6

/* The shared tiny config with more dropout, so the dropout gradient checks
 * have many dropped elements to get wrong. */
static void tiny_model_config(aflo_config *c, bool roberta) {
    tiny_config(c, roberta);
    c->hidden_dropout_prob = 0.2f;
    c->attention_probs_dropout_prob = 0.2f;
}

typedef struct {
    int32_t ids[B * S], types[B * S], labels[B];
    uint8_t mask[B * S];
    float targets[B];
    aflo_batch batch;
} fixture_batch;

static void make_batch(fixture_batch *fb, int pad, int num_labels) {
    static const int lens[B] = {6, 4, 2};
    aflo_rng rng;
    rng_seed(&rng, 7);
    for (int b = 0; b < B; b++) {
        for (int s = 0; s < S; s++) {
            int i = b * S + s;
            bool real = s < lens[b];
            fb->ids[i] = real ? 2 + (int)rng_below(&rng, 28) : pad;
            fb->types[i] = (b == 0 && s >= 3) ? 1 : 0;
            fb->mask[i] = real;
        }
        fb->labels[b] = b % num_labels;
        fb->targets[b] = 0.5f * (float)b - 0.3f;
    }
    fb->batch = (aflo_batch){.batch = B,
                             .seq = S,
                             .input_ids = fb->ids,
                             .token_type_ids = fb->types,
                             .attention_mask = fb->mask,
                             .labels = fb->labels,
                             .targets = fb->targets};
}

static void randomize_adapters(aflo_model *m) {
    aflo_rng rng;
    rng_seed(&rng, 99);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->group != PGROUP_ADAPTER) continue;
        for (size_t j = 0; j < p->size; j++) p->data[j] = rng_uniform_range(&rng, -0.8f, 0.8f);
    }
    /* and make base weights larger than BERT's 0.02 so every path matters */
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->role == PROLE_WEIGHT || p->role == PROLE_EMBEDDING)
            for (size_t j = 0; j < p->size; j++) p->data[j] *= 15.0f;
        if (p->role == PROLE_BIAS || p->role == PROLE_NORM_BIAS || p->role == PROLE_NORM_WEIGHT)
            for (size_t j = 0; j < p->size; j++) p->data[j] += rng_uniform_range(&rng, -0.2f, 0.2f);
    }
}

static double loss_at(aflo_model *m, const aflo_batch *b) {
    float loss;
    char err[256];
    assert_int_equal(model_forward(m, b, &loss, err, sizeof err), 0);
    return loss;
}

/* Check every trainable tensor; returns the number of tensors checked. */
static int check_gradients(aflo_model *m, const aflo_batch *b) {
    char err[256];
    model_zero_grad(m);
    float loss;
    assert_int_equal(model_forward(m, b, &loss, err, sizeof err), 0);
    assert_true(isfinite(loss));
    model_backward(m, 1.0f);
    int checked = 0;
    double gscale = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->trainable)
            for (size_t j = 0; j < p->size; j++) gscale = fmax(gscale, fabs(p->grad[j]));
    }
    aflo_rng rng;
    rng_seed(&rng, 5);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (!p->trainable) continue;
        /* copy the analytic gradient: forward calls below do not touch it, but be explicit */
        float *g = malloc(p->size * sizeof *g);
        assert_non_null(g);
        memcpy(g, p->grad, p->size * sizeof *g);
        size_t idx[12];
        int k = 0;
        size_t best = 0;
        for (size_t j = 1; j < p->size; j++)
            if (fabsf(g[j]) > fabsf(g[best])) best = j;
        idx[k++] = best;
        while (k < 12 && (size_t)k < p->size) idx[k++] = (size_t)rng_below(&rng, p->size);
        double num = 0, den = 0, gmax = 0;
        for (int q = 0; q < k; q++) {
            size_t j = idx[q];
            float orig = p->data[j];
            /* Richardson extrapolation of two central differences: error
             * O(eps^4), so eps can be large enough to drown fp32 rounding. */
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
            num += (fd - g[j]) * (fd - g[j]);
            den += fd * fd;
            if (fabs(fd) > gmax) gmax = fabs(fd);
        }
        /* Gradients that are zero in exact arithmetic (e.g. the key bias:
         * softmax ignores a shift of all scores) are judged against the
         * model's overall gradient scale. */
        double rel = sqrt(num) / (sqrt(den) + 1e-3 * gscale * sqrt((double)k));
        if (rel > 3e-2) {
            fprintf(stderr, "gradient mismatch in %s: relative error %.3g (|fd|max %.3g)\n",
                    p->name, rel, gmax);
            fail();
        }
        free(g);
        checked++;
    }
    return checked;
}

static aflo_model *make_model(aflo_method method, aflo_projections proj, aflo_task task, int labels,
                              bool roberta) {
    aflo_config c;
    tiny_model_config(&c, roberta);
    aflo_adapter_config ac = {
        .method = method, .rank = 3, .alpha = 6.0f, .targets = ALL_MODULES, .projections = proj};
    char err[256];
    aflo_model *m = model_create(&c, &ac, task, labels, 1234, err, sizeof err);
    if (!m) fprintf(stderr, "%s\n", err);
    assert_non_null(m);
    assert_int_equal(model_reserve(m, B, S, err, sizeof err), 0);
    randomize_adapters(m);
    return m;
}

static void run_case(aflo_method method, aflo_projections proj, aflo_task task, int labels,
                     bool roberta, bool dropout, int expect_min_tensors) {
    aflo_model *m = make_model(method, proj, task, labels, roberta);
    fixture_batch fb;
    make_batch(&fb, model_config(m)->pad_token_id, labels);
    model_set_dropout(m, dropout);
    model_set_dropout_key(m, 42);
    model_set_training(m, true);
    int n = check_gradients(m, &fb.batch);
    assert_true(n >= expect_min_tensors);
    model_free(m);
}

/* 2 layers x 6 modules x (A, B, s_d, s_b) + 4 head tensors */
static void test_aflora_all_gradients(void **s) {
    (void)s;
    run_case(METHOD_AFLORA, PROJ_ALL, TASK_CLASSIFICATION, 3, false, false, 2 * 6 * 4 + 4);
}

static void test_aflora_gradients_with_dropout(void **s) {
    (void)s;
    run_case(METHOD_AFLORA, PROJ_ALL, TASK_CLASSIFICATION, 2, false, true, 2 * 6 * 4 + 4);
}

static void test_lora_gradients(void **s) {
    (void)s;
    run_case(METHOD_LORA, PROJ_ALL, TASK_CLASSIFICATION, 2, false, false, 2 * 6 * 2 + 4);
}

static void test_full_regression_gradients(void **s) {
    (void)s;
    /* 5 embedding tensors + 2 x 16 per layer + 4 head */
    run_case(METHOD_FULL, PROJ_NONE, TASK_REGRESSION, 1, false, false, 5 + 2 * 16 + 4);
}

static void test_full_gradients_with_dropout_roberta(void **s) {
    (void)s;
    run_case(METHOD_FULL, PROJ_NONE, TASK_CLASSIFICATION, 2, true, true, 5 + 2 * 16 + 4);
}

static void test_elora_trains_only_vectors(void **s) {
    (void)s;
    aflo_model *m = make_model(METHOD_ELORA, PROJ_ALL, TASK_CLASSIFICATION, 2, false);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        bool expect = p->role == PROLE_SD || p->role == PROLE_SB || p->group == PGROUP_HEAD;
        assert_int_equal(p->trainable, expect);
    }
    fixture_batch fb;
    make_batch(&fb, 0, 2);
    assert_true(check_gradients(m, &fb.batch) == 2 * 6 * 2 + 4);
    model_free(m);
}

static void test_ffn_projections_default(void **s) {
    (void)s;
    aflo_model *m = make_model(METHOD_AFLORA, PROJ_FFN, TASK_CLASSIFICATION, 2, false);
    int trainable_proj = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->role != PROLE_A && p->role != PROLE_B) continue;
        bool ffn = p->module == BERT_INTERMEDIATE || p->module == BERT_OUTPUT;
        assert_int_equal(p->trainable, ffn);
        trainable_proj += p->trainable;
    }
    assert_int_equal(trainable_proj, 2 * 2 * 2);
    fixture_batch fb;
    make_batch(&fb, 0, 2);
    check_gradients(m, &fb.batch);
    model_free(m);
}

/* A frozen projection must cost no weight-gradient GEMM and get no gradient. */
static void test_frozen_projection_skips_weight_gemm(void **s) {
    (void)s;
    aflo_model *m = make_model(METHOD_AFLORA, PROJ_ALL, TASK_CLASSIFICATION, 2, false);
    fixture_batch fb;
    make_batch(&fb, 0, 2);
    char err[256];
    float loss;
    memset(model_flops(m), 0, sizeof(aflo_flops));
    model_zero_grad(m);
    assert_int_equal(model_forward(m, &fb.batch, &loss, err, sizeof err), 0);
    model_backward(m, 1.0f);
    uint64_t w_before = model_flops(m)->by_kind[FLOP_BACKWARD_WEIGHT];
    uint64_t f_before = model_flops(m)->by_kind[FLOP_FORWARD];

    aflo_param *a = model_find_param(m, "encoder.layer.1.intermediate.dense.lora_A");
    assert_non_null(a);
    model_freeze_param(m, a);
    memset(a->grad, 0, a->size * sizeof(float));
    memset(model_flops(m), 0, sizeof(aflo_flops));
    assert_int_equal(model_forward(m, &fb.batch, &loss, err, sizeof err), 0);
    model_backward(m, 1.0f);
    /* dA = g1^T X costs 2 * r * in * N */
    uint64_t saved = 2ULL * 3 * 8 * (B * S);
    assert_int_equal(model_flops(m)->by_kind[FLOP_BACKWARD_WEIGHT], w_before - saved);
    assert_int_equal(model_flops(m)->by_kind[FLOP_FORWARD], f_before);
    for (size_t j = 0; j < a->size; j++) assert_true(a->grad[j] == 0.0f);
    model_free(m);
}

/* FLOPs of a forward pass, counted by hand for the tiny config. */
static void test_forward_flops_by_hand(void **s) {
    (void)s;
    aflo_model *m = make_model(METHOD_AFLORA, PROJ_ALL, TASK_CLASSIFICATION, 2, false);
    fixture_batch fb;
    make_batch(&fb, 0, 2);
    char err[256];
    float loss;
    uint64_t N = B * S, H = 8, I = 12, r = 3, nh = 2, hd = 4, L = 2;
    uint64_t lin = 2 * N * (4 * H * H + 2 * H * I); /* base weights */
    uint64_t att = 2 * (2 * S * S * hd) * B * nh;   /* QK^T and PV */
    uint64_t head = 2 * B * H * H + 2 * B * H * L;
    /* Inference: A and B of the 6 projections, each X A^T then (.) B^T. */
    uint64_t ad = 2 * N * r * (4 * (H + H) + (H + I) + (I + H));
    memset(model_flops(m), 0, sizeof(aflo_flops));
    assert_int_equal(model_forward(m, &fb.batch, &loss, err, sizeof err), 0);
    assert_int_equal(model_flops(m)->by_kind[FLOP_FORWARD], 2 * (lin + ad + att) + head);
    /* Training: the intermediate's bias is added in its GELU
     * (bias_by_caller), so with N > in its adapter is merged into W_eff
     * (linear.c): 2*I*H*r to build it plus h1 = X A^T, instead of the
     * adapter's pass over Y. */
    model_set_training(m, true);
    ad = 2 * N * r * (4 * (H + H) + (H + I)) + 2 * N * r * H + 2 * I * H * r;
    memset(model_flops(m), 0, sizeof(aflo_flops));
    assert_int_equal(model_forward(m, &fb.batch, &loss, err, sizeof err), 0);
    assert_int_equal(model_flops(m)->by_kind[FLOP_FORWARD], 2 * (lin + ad + att) + head);
    model_free(m);
}

static void test_bad_inputs_rejected(void **s) {
    (void)s;
    aflo_model *m = make_model(METHOD_AFLORA, PROJ_FFN, TASK_CLASSIFICATION, 2, false);
    fixture_batch fb;
    make_batch(&fb, 0, 2);
    char err[256] = "";
    float loss;
    fb.ids[3] = 30; /* vocab is 30 */
    assert_int_equal(model_forward(m, &fb.batch, &loss, err, sizeof err), -1);
    assert_non_null(strstr(err, "vocabulary"));
    fb.ids[3] = 4;
    fb.labels[1] = 2;
    assert_int_equal(model_forward(m, &fb.batch, &loss, err, sizeof err), -1);
    assert_non_null(strstr(err, "label"));
    fb.labels[1] = 1;
    assert_int_equal(model_set_tensor(m, "bert.classifier.weight", fb.targets, 3, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "expected 16"));
    assert_int_equal(model_set_tensor(m, "nope", fb.targets, 3, err, sizeof err), -1);
    model_free(m);

    aflo_config c;
    tiny_model_config(&c, false);
    c.num_attention_heads = 3;
    aflo_adapter_config ac = {.method = METHOD_AFLORA, .rank = 4, .targets = ALL_MODULES};
    assert_null(model_create(&c, &ac, TASK_CLASSIFICATION, 2, 1, err, sizeof err));
    tiny_model_config(&c, false);
    ac.rank = 0;
    assert_null(model_create(&c, &ac, TASK_CLASSIFICATION, 2, 1, err, sizeof err));
    assert_non_null(strstr(err, "rank"));
}

/* The authors' initialisation: s_d = 0.1, s_b = 0, A/B within sqrt(6/fan_in). */
static void test_aflora_initialisation(void **s) {
    (void)s;
    aflo_config c;
    tiny_model_config(&c, false);
    aflo_adapter_config ac = {
        .method = METHOD_AFLORA, .rank = 4, .targets = ALL_MODULES, .projections = PROJ_FFN};
    char err[256];
    aflo_model *m = model_create(&c, &ac, TASK_CLASSIFICATION, 2, 3, err, sizeof err);
    assert_non_null(m);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        float bound =
            p->role == PROLE_A || p->role == PROLE_B ? sqrtf(6.0f / (float)p->shape[1]) : 0;
        float maxabs = 0;
        for (size_t j = 0; j < p->size; j++) maxabs = fmaxf(maxabs, fabsf(p->data[j]));
        switch (p->role) {
        case PROLE_SD:
            for (size_t j = 0; j < p->size; j++) assert_true(p->data[j] == 0.1f);
            break;
        case PROLE_SB: assert_true(maxabs == 0.0f); break;
        case PROLE_A:
        case PROLE_B: assert_true(maxabs <= bound && maxabs > 0.5f * bound); break;
        default: break;
        }
    }
    /* With s_b = 0 the adapter changes nothing: logits equal the plain model's. */
    aflo_adapter_config full = {.method = METHOD_FULL};
    aflo_model *plain = model_create(&c, &full, TASK_CLASSIFICATION, 2, 3, err, sizeof err);
    assert_non_null(plain);
    for (int i = 0; i < model_param_count(plain); i++) {
        aflo_param *p = model_param(plain, i);
        aflo_param *q = model_find_param(m, p->name);
        assert_non_null(q);
        memcpy(p->data, q->data, p->size * sizeof(float));
    }
    fixture_batch fb;
    make_batch(&fb, 0, 2);
    float l1, l2;
    assert_int_equal(model_forward(m, &fb.batch, &l1, err, sizeof err), 0);
    assert_int_equal(model_forward(plain, &fb.batch, &l2, err, sizeof err), 0);
    assert_memory_equal(model_logits(m), model_logits(plain), B * 2 * sizeof(float));
    model_free(m);
    model_free(plain);
}

int main(void) {
    engine_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aflora_all_gradients),
        cmocka_unit_test(test_aflora_gradients_with_dropout),
        cmocka_unit_test(test_lora_gradients),
        cmocka_unit_test(test_full_regression_gradients),
        cmocka_unit_test(test_full_gradients_with_dropout_roberta),
        cmocka_unit_test(test_elora_trains_only_vectors),
        cmocka_unit_test(test_ffn_projections_default),
        cmocka_unit_test(test_frozen_projection_skips_weight_gemm),
        cmocka_unit_test(test_forward_flops_by_hand),
        cmocka_unit_test(test_bad_inputs_rejected),
        cmocka_unit_test(test_aflora_initialisation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
