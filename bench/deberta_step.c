/* deberta_step.c — one training step of a DeBERTa-v3-base-shaped model
 * (random weights, the 128100-token vocabulary, batch 8 x 128) under
 * AFLoRA r=4 (FFN projections trainable), ELoRA r=1024, LoRA r=8 and full
 * fine-tuning: wall time by part, FLOPs executed, and the ELoRA:AFLoRA time
 * and FLOP ratios beside the paper's (AFLoRA Table 4 on DeBERTaV3-base:
 * 1.86x training time, 2.96x FLOPs).
 *
 * The step is the trainer's for one micro-batch, as bench/step.c times it
 * for BERT-base: zero_grad, forward, backward, global-norm clipping, AdamW
 * on each trainable tensor; dropout off. C only: there is no PyTorch twin of
 * this shape yet. The disentangled attention is the engine's first, plain
 * version (deberta_attn.h: per-head loops, probabilities stored), so the
 * times say as much about it as about the methods; the FLOP ratios do not
 * depend on it.
 *
 *   build/bench/deberta_step [--steps N] [--method NAME] [--layers L] [--threads T] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "bench_util.h"
#include "model/config.h"
#include "model/gemm.h"
#include "model/model.h"
#include "train/optim.h"
#include "train/train.h"

/* microsoft/deberta-v3-base config.json (docs/deberta.md). */
static const char deberta_v3_base[] =
    "{\"model_type\": \"deberta-v2\", \"vocab_size\": 128100, \"hidden_size\": 768, "
    "\"num_hidden_layers\": %d, \"num_attention_heads\": 12, \"intermediate_size\": 3072, "
    "\"max_position_embeddings\": 512, \"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-7, "
    "\"relative_attention\": true, \"position_buckets\": 256, \"max_relative_positions\": -1, "
    "\"position_biased_input\": false, \"pos_att_type\": \"p2c|c2p\", \"norm_rel_ebd\": "
    "\"layer_norm\", \"share_att_key\": true, \"type_vocab_size\": 0, \"pad_token_id\": 0, "
    "\"hidden_dropout_prob\": 0.1, \"attention_probs_dropout_prob\": 0.1}";
#define BASE_LAYERS 12

#define BENCH_BATCH 8
#define BENCH_SEQ 128
#define BENCH_LABELS 2
#define BENCH_SEED 42
#define MAX_STEPS 100

/* The paper's ratios, ELoRA over AFLoRA on DeBERTaV3-base (Table 4). */
#define PAPER_TIME_RATIO 1.86
#define PAPER_FLOP_RATIO 2.96

typedef struct {
    const char *name;
    aflo_adapter_config ac;
} variant;

static const variant variants[] = {
    {"aflora", {METHOD_AFLORA, 4, 0.0f, ALL_MODULES, PROJ_FFN}},
    {"elora", {METHOD_ELORA, 1024, 0.0f, ALL_MODULES, PROJ_NONE}},
    {"lora", {METHOD_LORA, 8, 16.0f, ALL_MODULES, PROJ_NONE}},
    {"full", {METHOD_FULL, 0, 0.0f, ALL_MODULES, PROJ_NONE}},
};
#define N_VARIANTS ((int)(sizeof variants / sizeof *variants))

typedef struct {
    bool ran;
    double fwd, bwd, opt, total; /* ms, the median step */
    aflo_flops flops;
    size_t trainable;
    float loss;
} result;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run_variant(const variant *v, int layers, int steps, result *r, char *err,
                       size_t errlen) {
    char json[sizeof deberta_v3_base + 16];
    snprintf(json, sizeof json, deberta_v3_base, layers);
    aflo_config c;
    if (config_from_json(&c, json, strlen(json), err, errlen)) return -1;
    aflo_model *m =
        model_create(&c, &v->ac, TASK_CLASSIFICATION, BENCH_LABELS, BENCH_SEED, err, errlen);
    if (!m) return -1;
    int rc = -1, np = model_param_count(m), n = 0;
    aflo_param **tp = calloc((size_t)np, sizeof *tp);
    aflo_adam_state *adam = calloc((size_t)np, sizeof *adam);
    float **grads = calloc((size_t)np, sizeof *grads);
    size_t *sizes = calloc((size_t)np, sizeof *sizes);
    size_t ntok = (size_t)BENCH_BATCH * BENCH_SEQ;
    int32_t *ids = malloc(ntok * sizeof *ids), labels[BENCH_BATCH];
    double *fwd = calloc(MAX_STEPS, sizeof *fwd), *bwd = calloc(MAX_STEPS, sizeof *bwd),
           *opt = calloc(MAX_STEPS, sizeof *opt), *tot = calloc(MAX_STEPS, sizeof *tot);
    if (!tp || !adam || !grads || !sizes || !ids || !fwd || !bwd || !opt || !tot) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (model_reserve(m, BENCH_BATCH, BENCH_SEQ, err, errlen)) goto out;
    model_set_training(m, true);
    for (int i = 0; i < np; i++) {
        aflo_param *p = model_param(m, i);
        if (!p->trainable) continue;
        if (adam_state_init(&adam[n], p->size) != 0) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        tp[n] = p;
        grads[n] = p->grad;
        sizes[n] = p->size;
        r->trainable += p->size;
        n++;
    }
    aflo_rng rng;
    rng_seed(&rng, BENCH_SEED);
    for (size_t i = 0; i < ntok; i++) ids[i] = (int32_t)rng_below(&rng, (uint64_t)c.vocab_size);
    for (int i = 0; i < BENCH_BATCH; i++) labels[i] = (int32_t)rng_below(&rng, BENCH_LABELS);
    aflo_batch b = {.batch = BENCH_BATCH, .seq = BENCH_SEQ, .input_ids = ids, .labels = labels};
    for (int s = 0; s <= steps; s++) { /* step 0 warms up */
        memset(model_flops(m), 0, sizeof(aflo_flops));
        double t0 = bench_now_ms();
        model_zero_grad(m);
        if (model_forward(m, &b, &r->loss, err, errlen)) goto out;
        double t1 = bench_now_ms();
        model_backward(m, 1.0f);
        double t2 = bench_now_ms();
        grad_clip_global_norm(grads, sizes, n, TRAIN_DEFAULT_MAX_GRAD_NORM);
        for (int i = 0; i < n; i++)
            adamw_update(tp[i]->data, tp[i]->grad, &adam[i], (float)TRAIN_DEFAULT_LR, 0.0f,
                         TRAIN_ADAM_BETA1, TRAIN_ADAM_BETA2, TRAIN_ADAM_EPS, s + 1);
        double t3 = bench_now_ms();
        if (s == 0) continue;
        fwd[s - 1] = t1 - t0;
        bwd[s - 1] = t2 - t1;
        opt[s - 1] = t3 - t2;
        tot[s - 1] = t3 - t0;
        r->flops = *model_flops(m);
    }
    qsort(fwd, (size_t)steps, sizeof *fwd, cmp_double);
    qsort(bwd, (size_t)steps, sizeof *bwd, cmp_double);
    qsort(opt, (size_t)steps, sizeof *opt, cmp_double);
    qsort(tot, (size_t)steps, sizeof *tot, cmp_double);
    int mid = (steps - 1) / 2;
    r->fwd = fwd[mid];
    r->bwd = bwd[mid];
    r->opt = opt[mid];
    r->total = tot[mid];
    r->ran = true;
    rc = 0;
out:
    for (int i = 0; adam && i < n; i++) adam_state_free(&adam[i]);
    free(adam);
    free(tp);
    free(grads);
    free(sizes);
    free(ids);
    free(fwd);
    free(bwd);
    free(opt);
    free(tot);
    model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    int steps = 2, layers = BASE_LAYERS, threads = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc)
            layers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--method") == 0 && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr, "usage: deberta_step [--steps N] [--method aflora|elora|lora|full] "
                            "[--layers L] [--threads T]\n");
            return 2;
        }
    }
    if (steps < 1 || steps > MAX_STEPS || layers < 1 || layers > BASE_LAYERS) {
        fprintf(stderr, "deberta_step: --steps 1..%d, --layers 1..%d\n", MAX_STEPS, BASE_LAYERS);
        return 2;
    }
    engine_set_threads(threads);
    engine_set_blas_threads(threads);
    char cpu[256], err[512];
    bench_cpu_model(cpu, sizeof cpu);
    printf("DeBERTa-v3-base shape, %d layers, batch %dx%d, vocab 128100, %d timed steps, %d "
           "threads, %s\n",
           layers, BENCH_BATCH, BENCH_SEQ, steps, engine_threads(), cpu);
    printf("%-8s %11s %10s %9s %9s %8s | %9s %9s %9s %9s\n", "method", "trainable", "step_ms",
           "fwd_ms", "bwd_ms", "opt_ms", "GF_fwd", "GF_bwdin", "GF_bwdw", "GF_tot");
    result res[N_VARIANTS];
    memset(res, 0, sizeof res);
    for (int k = 0; k < N_VARIANTS; k++) {
        if (only && strcmp(only, variants[k].name) != 0) continue;
        if (run_variant(&variants[k], layers, steps, &res[k], err, sizeof err)) {
            fprintf(stderr, "deberta_step: %s: %s\n", variants[k].name, err);
            return 1;
        }
        const result *r = &res[k];
        printf("%-8s %11zu %10.1f %9.1f %9.1f %8.1f | %9.2f %9.2f %9.2f %9.2f\n", variants[k].name,
               r->trainable, r->total, r->fwd, r->bwd, r->opt,
               (double)r->flops.by_kind[FLOP_FORWARD] * 1e-9,
               (double)r->flops.by_kind[FLOP_BACKWARD_INPUT] * 1e-9,
               (double)r->flops.by_kind[FLOP_BACKWARD_WEIGHT] * 1e-9,
               (double)flops_total(&r->flops) * 1e-9);
        fflush(stdout);
    }
    if (res[0].ran && res[1].ran)
        printf("ELoRA : AFLoRA   time %.2fx (paper %.2fx)   FLOPs %.2fx (paper %.2fx)\n",
               res[1].total / res[0].total, PAPER_TIME_RATIO,
               (double)flops_total(&res[1].flops) / (double)flops_total(&res[0].flops),
               PAPER_FLOP_RATIO);
    return 0;
}
