/* test_memory.c — the job memory estimate (train/memory.h) against the
 * model's own tensor table and against the process's measured peak.
 *
 * The parts are checked against independent counts of a created model's
 * tensors for each method (weights, gradients, AdamW moments, AFLoRA's
 * freezer scores, the best-epoch copy); then a LLaMA-shaped model of ~200
 * MiB is trained for a few steps through the real trainer (with an eval
 * set, so every allocation the estimate counts is made) and the growth of
 * ru_maxrss over the run must be within ESTIMATE_FACTOR of the estimate,
 * either way. The model is large enough that the process's own noise (a
 * few MiB) is small beside it; OpenBLAS is warmed up first so its buffers
 * are not counted in the growth. A second run holds the base weights
 * 16-bit (as a BF16 folder loads under an adapter method) and checkpoints
 * its activations; its peak is read from VmHWM after resetting it
 * (/proc/self/clear_refs), as ru_maxrss cannot be reset. Under valgrind or a sanitizer the process's
 * memory is the tool's, so that comparison is skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/rng.h"
#include "model/gemm.h"
#include "model/model.h"
#include "train/dataset.h"
#include "train/memory.h"
#include "train/train.h"

/* Measured ratios were 1.00-1.02 (bench/llama.sh, tests here): the factor
 * leaves room for allocator and page-rounding noise, not for a missing
 * term (the smallest part the trainer adds, AdamW's moments, is ~4%, the
 * activations ~20%). */
#define ESTIMATE_FACTOR 1.10

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

static char err[512];

static void llama_config(aflo_config *c, int vocab, int hidden, int inter, int layers) {
    memset(c, 0, sizeof *c);
    snprintf(c->model_type, sizeof c->model_type, "llama");
    c->vocab_size = vocab;
    c->hidden_size = hidden;
    c->intermediate_size = inter;
    c->num_hidden_layers = layers;
    c->num_attention_heads = 8;
    c->num_key_value_heads = 2;
    c->max_position_embeddings = 512;
    c->type_vocab_size = 1;
    c->rms_norm_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    c->layer_norm_eps = 1e-12f;
}

/* The parts, counted from a created model's tensor table. */
static void check_parts(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                        int num_labels, bool has_eval) {
    aflo_job_memory est;
    assert_int_equal(
        train_estimate_memory(c, ac, task, num_labels, 3, 40, has_eval, &est, err, sizeof err), 0);
    aflo_model *m = model_create(c, ac, task, num_labels, 5, err, sizeof err);
    if (!m) fail_msg("%s", err);
    size_t all = 0, trainable = 0, ab = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        const aflo_param *p = model_param(m, i);
        all += p->size;
        if (!p->trainable) continue;
        trainable += p->size;
        if (p->role == PROLE_A || p->role == PROLE_B) ab += p->size;
    }
    size_t f = sizeof(float);
    assert_int_equal(est.weights, all * f);
    assert_int_equal(est.grads, trainable * f);
    size_t freezer = ac->method == METHOD_AFLORA ? 4 * ab : 0;
    assert_int_equal(est.optimizer, (2 * trainable + (has_eval ? trainable : 0) + freezer) * f);
    assert_int_equal(model_reserve(m, 3, 40, err, sizeof err), 0);
    assert_int_equal(est.activations, model_memory(m).activations);
    assert_int_equal(est.data, 0);
    assert_int_equal(est.total, est.weights + est.grads + est.optimizer + est.activations);
    model_free(m);
}

static void test_parts_follow_the_tensor_table(void **state) {
    (void)state;
    aflo_config c;
    llama_config(&c, 50, 32, 48, 2);
    aflo_adapter_config acs[] = {
        {METHOD_AFLORA, 4, 0.0f, ALL_MODULES, PROJ_FFN},
        {METHOD_AFLORA, 4, 0.0f, ALL_MODULES, PROJ_ALL},
        {METHOD_ELORA, 16, 0.0f, ALL_MODULES, PROJ_NONE},
        {METHOD_LORA, 8, 16.0f, ALL_MODULES, PROJ_NONE},
        {METHOD_FULL, 0, 0.0f, ALL_MODULES, PROJ_NONE},
    };
    for (size_t i = 0; i < sizeof acs / sizeof *acs; i++) {
        check_parts(&c, &acs[i], TASK_CAUSAL_LM, c.vocab_size, i % 2 == 0);
        check_parts(&c, &acs[i], TASK_CAUSAL_LM, c.vocab_size, i % 2 == 1);
    }
    /* the logits (2 x batch x seq x vocab floats) are part of the activations */
    aflo_job_memory small, big;
    aflo_config cv = c;
    cv.vocab_size = 1050;
    assert_int_equal(train_estimate_memory(&c, &acs[0], TASK_CAUSAL_LM, c.vocab_size, 3, 40, false,
                                           &small, err, sizeof err),
                     0);
    assert_int_equal(train_estimate_memory(&cv, &acs[0], TASK_CAUSAL_LM, cv.vocab_size, 3, 40,
                                           false, &big, err, sizeof err),
                     0);
    assert_true(big.activations - small.activations >= 2 * 3 * 40 * 1000 * sizeof(float));
    /* what model_create refuses, the estimate refuses */
    aflo_job_memory est;
    assert_int_equal(train_estimate_memory(&c, &acs[0], TASK_CLASSIFICATION, 2, 3, 40, false, &est,
                                           err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "task"));
}

static double maxrss_mib(void) {
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return (double)ru.ru_maxrss / 1024.0;
}

static void add_rows(aflo_dataset *d, int n, int len, int vocab, aflo_rng *rng) {
    int32_t *ids = malloc((size_t)len * sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < len; j++) ids[j] = (int32_t)rng_below(rng, (uint64_t)vocab);
        assert_int_equal(dataset_add_lm(d, ids, ids, len), 0);
    }
    free(ids);
}

static void test_estimate_matches_the_measured_peak(void **state) {
    (void)state;
    if (UNDER_SANITIZER || getenv("AFLORAD_VALGRIND")) skip();
    /* OpenBLAS's buffers, touched by a first GEMM, before the baseline */
    enum { W = 512 };
    float *a = calloc((size_t)W * W * 3, sizeof *a);
    assert_non_null(a);
    aflo_flops fl = {0};
    gemm(&fl, FLOP_FORWARD, false, true, W, W, W, 1.0f, a, W, a + W * W, W, 0.0f, a + 2 * W * W, W);
    free(a);

    aflo_config c;
    llama_config(&c, 16000, 768, 2048, 4);
    aflo_adapter_config ac = {METHOD_AFLORA, 16, 0.0f, ALL_MODULES, PROJ_FFN};
    const int batch = 2, len = 192;
    aflo_dataset train, eval;
    dataset_init(&train);
    dataset_init(&eval);
    aflo_rng rng;
    rng_seed(&rng, 11);
    add_rows(&train, 4, len, c.vocab_size, &rng);
    add_rows(&eval, 2, len, c.vocab_size, &rng);
    aflo_job_memory est;
    assert_int_equal(train_estimate_memory(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, batch, len, true,
                                           &est, err, sizeof err),
                     0);

    double before = maxrss_mib();
    aflo_model *m = model_create(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, 3, err, sizeof err);
    if (!m) fail_msg("%s", err);
    aflo_train_config tc;
    train_config_defaults(&tc, 1);
    tc.batch_size = batch;
    tc.pad_id = 0;
    aflo_trainer *t = trainer_create(m, &tc, &train, &eval, err, sizeof err);
    if (!t) fail_msg("%s", err);
    aflo_train_summary sum;
    aflo_progress pr = {0};
    assert_int_equal(trainer_run(t, &pr, NULL, &sum, err, sizeof err), TRAIN_DONE);
    double grew = maxrss_mib() - before;
    trainer_free(t);
    model_free(m);
    dataset_free(&train);
    dataset_free(&eval);

    double e = (double)est.total / (1024.0 * 1024.0), ratio = e / grew;
    fprintf(stderr,
            "memory: estimate %.1f MiB (weights %.1f, grads %.2f, optimizer %.2f, activations "
            "%.1f), peak RSS grew %.1f MiB: estimate/measured %.3f\n",
            e, (double)est.weights / 1048576.0, (double)est.grads / 1048576.0,
            (double)est.optimizer / 1048576.0, (double)est.activations / 1048576.0, grew, ratio);
    assert_true(e > 150.0); /* large enough that RSS noise is small beside it */
    if (!(ratio <= ESTIMATE_FACTOR && ratio >= 1.0 / ESTIMATE_FACTOR))
        fail_msg("estimate %.1f MiB vs measured %.1f MiB: ratio %.3f outside 1/%.2f..%.2f", e, grew,
                 ratio, ESTIMATE_FACTOR, ESTIMATE_FACTOR);
}

/* Peak RSS since the last reset_peak(), MiB; -1 when /proc cannot tell. */
static double vm_hwm_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kib) == 1) break;
    fclose(f);
    return kib < 0 ? -1 : kib / 1024.0;
}

static bool reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    bool ok = fputs("5", f) >= 0; /* 5: reset the peak RSS to the current RSS */
    return fclose(f) == 0 && ok;
}

static double vm_rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lf kB", &kib) == 1) break;
    fclose(f);
    return kib < 0 ? -1 : kib / 1024.0;
}

static void free_codes(void *ctx) {
    void **list = ctx;
    for (int i = 0; list[i]; i++) free(list[i]);
    free(list);
}

/* Base weights kept 16-bit from random BF16 codes (what hfmodel_load does
 * with a BF16 folder, the codes here on the heap, there in the mapped file:
 * resident either way once read), norms 1. */
static aflo_model *half_model(const aflo_config *c, const aflo_adapter_config *ac) {
    aflo_model *m =
        model_create_ex(c, ac, TASK_CAUSAL_LM, c->vocab_size, 3, false, err, sizeof err);
    if (!m) fail_msg("%s", err);
    void **list = calloc((size_t)model_param_count(m) + 1, sizeof *list);
    assert_non_null(list);
    aflo_rng rng;
    rng_seed(&rng, 8);
    int n = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->role == PROLE_NORM_WEIGHT)
            for (size_t j = 0; j < p->size; j++) p->data[j] = 1.0f;
        if (!model_may_keep_half(m, p)) continue;
        uint16_t *codes = malloc(p->size * sizeof *codes);
        assert_non_null(codes);
        for (size_t j = 0; j < p->size; j++) /* +-[2^-7, 2^-6): a weight's scale */
            codes[j] = (uint16_t)((rng_below(&rng, 2) << 15) | (120 << 7) | rng_below(&rng, 128));
        list[n++] = codes;
        assert_int_equal(model_keep_half(m, p, codes, HALF_BF16, err, sizeof err), 0);
    }
    assert_int_equal(model_compact_base(m, err, sizeof err), 0);
    assert_int_equal(model_attach(m, free_codes, list, err, sizeof err), 0);
    return m;
}

static void test_estimate_half_checkpointed_matches_the_measured_peak(void **state) {
    (void)state;
    if (UNDER_SANITIZER || getenv("AFLORAD_VALGRIND")) skip();
    aflo_config c;
    llama_config(&c, 8000, 768, 2048, 5);
    aflo_adapter_config ac = {METHOD_AFLORA, 16, 0.0f, ALL_MODULES, PROJ_FFN};
    const int batch = 2, len = 192;
    aflo_dataset train, eval;
    dataset_init(&train);
    dataset_init(&eval);
    aflo_rng rng;
    rng_seed(&rng, 12);
    add_rows(&train, 2, len, c.vocab_size, &rng);
    add_rows(&eval, 2, len, c.vocab_size, &rng);
    aflo_memory_plan_choice plan;
    assert_int_equal(train_estimate_memory_plan(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, batch, len,
                                                true, true, CHECKPOINTING_ON, 0, &plan, err,
                                                sizeof err),
                     0);
    assert_true(plan.checkpointing && plan.half_weights && plan.can_checkpoint);
    /* what each saves, by the estimate */
    aflo_job_memory full;
    assert_int_equal(train_estimate_memory(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, batch, len, true,
                                           &full, err, sizeof err),
                     0);
    assert_true(plan.without.activations == full.activations);
    assert_true(plan.with.activations < full.activations * 7 / 10);
    assert_true(plan.with.weights < full.weights * 8 / 10); /* lm_head widens whole */
    /* auto: on when the saving passes CHECKPOINT_AUTO_MIN_SAVING, or to fit */
    aflo_memory_plan_choice au;
    assert_int_equal(train_estimate_memory_plan(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, batch, len,
                                                true, true, CHECKPOINTING_AUTO, 0, &au, err,
                                                sizeof err),
                     0);
    assert_false(au.checkpointing); /* saves ~0.3 GiB */
    assert_int_equal(train_estimate_memory_plan(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, batch, len,
                                                true, true, CHECKPOINTING_AUTO, plan.with.total + 1,
                                                &au, err, sizeof err),
                     0);
    assert_true(au.checkpointing);
    assert_int_equal(au.mem.total, plan.with.total);

    /* the heap the previous test freed goes back first, or this one's
     * allocations reuse it unseen */
    malloc_trim(0);
    if (!reset_peak()) skip();
    double before = vm_rss_mib();
    aflo_model *m = half_model(&c, &ac);
    assert_int_equal(model_set_checkpointing(m, true, err, sizeof err), 0);
    aflo_train_config tc;
    train_config_defaults(&tc, 1);
    tc.batch_size = batch;
    tc.pad_id = 0;
    aflo_trainer *t = trainer_create(m, &tc, &train, &eval, err, sizeof err);
    if (!t) fail_msg("%s", err);
    aflo_train_summary sum;
    aflo_progress pr = {0};
    assert_int_equal(trainer_run(t, &pr, NULL, &sum, err, sizeof err), TRAIN_DONE);
    double grew = vm_hwm_mib() - before;
    aflo_memory mm = model_memory(m);
    assert_int_equal(mm.base + mm.trainable + mm.widen, plan.mem.weights);
    trainer_free(t);
    model_free(m);
    dataset_free(&train);
    dataset_free(&eval);

    double e = (double)plan.mem.total / (1024.0 * 1024.0), ratio = e / grew;
    fprintf(stderr,
            "memory (16-bit, checkpointed): estimate %.1f MiB (weights %.1f, activations %.1f; "
            "%.1f MiB without checkpointing), peak RSS grew %.1f MiB: estimate/measured %.3f\n",
            e, (double)plan.mem.weights / 1048576.0, (double)plan.mem.activations / 1048576.0,
            (double)plan.without.total / 1048576.0, grew, ratio);
    assert_true(e > 150.0);
    if (!(ratio <= ESTIMATE_FACTOR && ratio >= 1.0 / ESTIMATE_FACTOR))
        fail_msg("estimate %.1f MiB vs measured %.1f MiB: ratio %.3f outside 1/%.2f..%.2f", e, grew,
                 ratio, ESTIMATE_FACTOR, ESTIMATE_FACTOR);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parts_follow_the_tensor_table),
        cmocka_unit_test(test_estimate_matches_the_measured_peak),
        cmocka_unit_test(test_estimate_half_checkpointed_matches_the_measured_peak),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
