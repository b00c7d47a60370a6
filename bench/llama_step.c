/* llama_step.c — the causal-LM training-step benchmark: one AFLoRA
 * optimizer step of a TinyLlama-1.1B-shaped model (22 layers, hidden 2048,
 * intermediate 5632, 32 heads, 4 KV heads, vocab 32000, untied lm_head) on
 * one sequence of 256 tokens; its time, the FLOPs it executes against the
 * sgemm rate measured in the same process, its peak memory, and the job
 * memory estimate (train/memory.h) beside the measured growth.
 *
 * Weights: random, rounded to bf16 precision (a checkpoint in bf16 holds
 * exactly such values), kept in fp32 by default (as a model loads from an
 * F32 folder), or with --bf16 as 16-bit codes (model_keep_half: as a BF16
 * folder loads under an adapter method; the codes are on the heap here, in
 * the mapped file there, resident either way once read), widened before each
 * product. --checkpointing turns on activation checkpointing
 * (model_set_checkpointing). They are uniform with the init's std 0.02, from a counter hash
 * per element on all threads (cheaper than 1.1e9 sequential normal draws);
 * norms are 1. The adapter is AFLoRA r=32 on q, k, v, up and down (the
 * family's default targets), projections trainable on the FFN ones (up,
 * down), as at the start of training.
 *
 * What is timed is what the trainer's step does for one micro-batch, as in
 * step.c: model_zero_grad, model_forward, model_backward, global-norm
 * clipping and one adamw_update per trainable tensor. One warm-up step, then
 * --steps timed; the median step is reported. AFLoRA's freezer (scores per
 * projection element) is not run: the estimate includes its memory, this
 * program does not hold it (the report prints the parts).
 *
 * Output: a short report, then one JSON line (bench/llama.sh reads it). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "base/rng.h"
#include "model/gemm.h"
#include "model/llama.h"
#include "model/model.h"
#include "train/memory.h"
#include "train/optim.h"
#include "train/train.h"

/* TinyLlama-1.1B (TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T
 * config.json). */
#define TL_VOCAB 32000
#define TL_HIDDEN 2048
#define TL_INTERMEDIATE 5632
#define TL_LAYERS 22
#define TL_HEADS 32
#define TL_KV_HEADS 4
#define TL_MAX_POSITION 2048
#define TL_RMS_EPS 1e-5f
#define TL_ROPE_THETA 10000.0f
#define INIT_STD 0.02f

#define BENCH_BATCH 1
#define BENCH_SEQ 256
#define AFLORA_RANK 32
#define BENCH_SEED 42
#define DEFAULT_STEPS 3
#define MAX_STEPS 100

/* sgemm rate: a 2048 cube and the model's largest projection for one
 * sequence (tokens x intermediate x hidden, X W^T as linear_forward does). */
#define PEAK_CUBE 2048
#define PEAK_CUBE_REPS 3
#define PEAK_PROJ_M (BENCH_BATCH * BENCH_SEQ)
#define PEAK_PROJ_N TL_INTERMEDIATE
#define PEAK_PROJ_K TL_HIDDEN
#define PEAK_PROJ_REPS 5

typedef struct {
    double zero, fwd, bwd, opt, total, cpu;
} step_times;

static int cmp_total(const void *a, const void *b) {
    double x = ((const step_times *)a)->total, y = ((const step_times *)b)->total;
    return (x > y) - (x < y);
}

static void tinyllama_config(aflo_config *c, int layers) {
    memset(c, 0, sizeof *c);
    snprintf(c->model_type, sizeof c->model_type, "llama");
    c->vocab_size = TL_VOCAB;
    c->hidden_size = TL_HIDDEN;
    c->intermediate_size = TL_INTERMEDIATE;
    c->num_hidden_layers = layers;
    c->num_attention_heads = TL_HEADS;
    c->num_key_value_heads = TL_KV_HEADS;
    c->max_position_embeddings = TL_MAX_POSITION;
    c->type_vocab_size = 1;
    c->rms_norm_eps = TL_RMS_EPS;
    c->rope_theta = TL_ROPE_THETA;
    c->layer_norm_eps = 1e-12f; /* config_validate checks it for every family */
    c->tie_word_embeddings = false;
}

/* x rounded to the nearest bf16 (ties to even), as a float. */
static float round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

static void free_codes(void *ctx) {
    void **list = ctx;
    for (int i = 0; list && list[i]; i++) free(list[i]);
    free(list);
}

/* Base weights: uniform of std INIT_STD rounded to bf16, from a counter
 * hash so the threads fill their rows independently; norms 1. With bf16,
 * what the model may keep 16-bit is kept as bf16 codes of those values. */
static int fill_base(aflo_model *m, bool bf16, char *err, size_t errlen) {
    void **codes = NULL;
    int ncodes = 0;
    if (bf16 && !(codes = calloc((size_t)model_param_count(m) + 1, sizeof *codes))) goto oom;
    const float half = INIT_STD * sqrtf(3.0f); /* U(-a, a) has std a/sqrt(3) */
    int np = model_param_count(m);
    for (int i = 0; i < np; i++) {
        aflo_param *p = model_param(m, i);
        if (p->group != PGROUP_BASE) continue;
        float *d = p->data;
        long n = (long)p->size;
        if (p->role == PROLE_NORM_WEIGHT) {
            for (long j = 0; j < n; j++) d[j] = 1.0f;
            continue;
        }
        uint64_t key = rng_hash(BENCH_SEED, (uint64_t)i);
        if (bf16 && model_may_keep_half(m, p)) {
            uint16_t *h = malloc((size_t)n * sizeof *h);
            if (!h) goto oom;
            codes[ncodes++] = h;
#pragma omp parallel for schedule(static)
            for (long j = 0; j < n; j++) {
                float u = (float)(rng_hash(key, (uint64_t)j) >> 40) * (1.0f / 16777216.0f);
                float x = round_bf16((2.0f * u - 1.0f) * half);
                uint32_t bits;
                memcpy(&bits, &x, sizeof bits);
                h[j] = (uint16_t)(bits >> 16);
            }
            if (model_keep_half(m, p, h, HALF_BF16, err, errlen) != 0) goto fail;
            continue;
        }
#pragma omp parallel for schedule(static)
        for (long j = 0; j < n; j++) {
            float u = (float)(rng_hash(key, (uint64_t)j) >> 40) * (1.0f / 16777216.0f);
            d[j] = round_bf16((2.0f * u - 1.0f) * half);
        }
    }
    if (!bf16) return 0;
    if (model_compact_base(m, err, errlen) != 0 ||
        model_attach(m, free_codes, codes, err, errlen) != 0)
        goto fail;
    return 0;
oom:
    snprintf(err, errlen, "out of memory filling the weights");
fail:
    free_codes(codes);
    return -1;
}

static bool decays(const aflo_param *p) {
    return p->role != PROLE_BIAS && p->role != PROLE_NORM_WEIGHT && p->role != PROLE_NORM_BIAS;
}

typedef struct {
    int layers, steps;
    bool bf16, checkpointing;
    step_times t[MAX_STEPS], median;
    aflo_flops flops;
    size_t trainable;
    int trainable_tensors;
    aflo_memory mem;
    aflo_job_memory est;
    size_t adam_bytes;
    double rss_before_mb, rss_after_mb, fill_ms;
    float first_loss, loss;
    double cube, proj, best; /* sgemm GFLOP/s */
} result;

static int run(result *r, char *err, size_t errlen) {
    aflo_config c;
    tinyllama_config(&c, r->layers);
    aflo_adapter_config ac = {.method = METHOD_AFLORA,
                              .rank = AFLORA_RANK,
                              .alpha = 0.0f,
                              .targets = LLAMA_DEFAULT_TARGETS,
                              .projections = PROJ_FFN};
    aflo_memory_plan_choice plan;
    if (train_estimate_memory_plan(&c, &ac, TASK_CAUSAL_LM, TL_VOCAB, BENCH_BATCH, BENCH_SEQ, false,
                                   r->bf16, r->checkpointing ? CHECKPOINTING_ON : CHECKPOINTING_OFF,
                                   0, &plan, err, errlen) != 0)
        return -1;
    r->est = plan.mem;
    r->rss_before_mb = bench_maxrss_mb();
    int rc = -1, n = 0;
    aflo_param **tp = NULL;
    aflo_adam_state *adam = NULL;
    float **grads = NULL;
    size_t *sizes = NULL;
    int32_t *ids = NULL;
    aflo_model *m =
        model_create_ex(&c, &ac, TASK_CAUSAL_LM, TL_VOCAB, BENCH_SEED, false, err, errlen);
    if (!m) return -1;
    double f0 = bench_now_ms();
    if (fill_base(m, r->bf16, err, errlen) != 0) goto out;
    r->fill_ms = bench_now_ms() - f0;
    if (model_set_checkpointing(m, r->checkpointing, err, errlen) != 0 ||
        model_reserve(m, BENCH_BATCH, BENCH_SEQ, err, errlen) != 0)
        goto out;
    model_set_training(m, true);

    int np = model_param_count(m);
    tp = calloc((size_t)np, sizeof *tp);
    adam = calloc((size_t)np, sizeof *adam);
    grads = calloc((size_t)np, sizeof *grads);
    sizes = calloc((size_t)np, sizeof *sizes);
    size_t ntok = (size_t)BENCH_BATCH * BENCH_SEQ;
    ids = malloc(ntok * sizeof *ids);
    if (!tp || !adam || !grads || !sizes || !ids) goto oom;
    for (int i = 0; i < np; i++) {
        aflo_param *p = model_param(m, i);
        if (!p->trainable) continue;
        if (adam_state_init(&adam[n], p->size) != 0) goto oom;
        tp[n] = p;
        grads[n] = p->grad;
        sizes[n] = p->size;
        r->trainable += p->size;
        r->adam_bytes += 2 * p->size * sizeof(float);
        n++;
    }
    r->trainable_tensors = n;
    aflo_rng rng;
    rng_seed(&rng, BENCH_SEED);
    for (size_t i = 0; i < ntok; i++) ids[i] = (int32_t)rng_below(&rng, TL_VOCAB);
    /* the labels are the ids: the model shifts (position t predicts t+1) */
    aflo_batch b = {.batch = BENCH_BATCH, .seq = BENCH_SEQ, .input_ids = ids, .token_labels = ids};

    for (int s = 0; s <= r->steps; s++) {
        aflo_flops *f = model_flops(m);
        memset(f, 0, sizeof *f);
        double c0 = bench_cpu_ms();
        double t0 = bench_now_ms();
        model_zero_grad(m);
        double t1 = bench_now_ms();
        if (model_forward(m, &b, &r->loss, err, errlen) != 0) goto out;
        double t2 = bench_now_ms();
        model_backward(m, 1.0f);
        double t3 = bench_now_ms();
        grad_clip_global_norm(grads, sizes, n, TRAIN_DEFAULT_MAX_GRAD_NORM);
        for (int i = 0; i < n; i++) {
            aflo_param *p = tp[i];
            float wd = decays(p) ? (float)TRAIN_DEFAULT_WEIGHT_DECAY : 0.0f;
            adamw_update(p->data, p->grad, &adam[i], (float)TRAIN_DEFAULT_LR, wd, TRAIN_ADAM_BETA1,
                         TRAIN_ADAM_BETA2, TRAIN_ADAM_EPS, s + 1);
        }
        double t4 = bench_now_ms();
        double c4 = bench_cpu_ms();
        if (s == 0) {
            r->first_loss = r->loss;
            continue;
        }
        r->t[s - 1] = (step_times){t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0, c4 - c0};
        r->flops = *f;
    }
    step_times sorted[MAX_STEPS];
    memcpy(sorted, r->t, (size_t)r->steps * sizeof *sorted);
    qsort(sorted, (size_t)r->steps, sizeof *sorted, cmp_total);
    r->median = sorted[(r->steps - 1) / 2]; /* lower middle: a step that happened */
    r->mem = model_memory(m);
    r->rss_after_mb = bench_maxrss_mb();
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
out:
    if (adam)
        for (int i = 0; i < n; i++) adam_state_free(&adam[i]);
    free(adam);
    free(tp);
    free(grads);
    free(sizes);
    free(ids);
    model_free(m);
    return rc;
}

static void report(const result *r, int threads) {
    char cpu[256];
    bench_cpu_model(cpu, sizeof cpu);
    double gf = (double)flops_total(&r->flops) * 1e-9;
    double gfs = gf / (r->median.total * 1e-3);
    const step_times *t = &r->median;
    double grew = r->rss_after_mb - r->rss_before_mb, est = (double)r->est.total / BENCH_MIB;
    printf(
        "\nstep %.0f ms (forward %.0f, backward %.0f, clip+AdamW %.1f, zero %.1f; CPU %.0f ms)\n",
        t->total, t->fwd, t->bwd, t->opt, t->zero, t->cpu);
    printf("FLOPs %.1f G (forward %.1f, backward-input %.1f, backward-weight %.2f): %.1f GFLOP/s, "
           "%.1f%% of the sgemm rate %.1f (cube %.1f, %dx%dx%d projection %.1f)\n",
           gf, (double)r->flops.by_kind[FLOP_FORWARD] * 1e-9,
           (double)r->flops.by_kind[FLOP_BACKWARD_INPUT] * 1e-9,
           (double)r->flops.by_kind[FLOP_BACKWARD_WEIGHT] * 1e-9, gfs, 100.0 * gfs / r->best,
           r->best, r->cube, PEAK_PROJ_M, PEAK_PROJ_N, PEAK_PROJ_K, r->proj);
    printf("loss %.4f at the warm-up step (ln %d = %.4f), %.4f at the last; %zu trainable in %d "
           "tensors; weights filled in %.0f ms\n",
           r->first_loss, TL_VOCAB, log((double)TL_VOCAB), r->loss, r->trainable,
           r->trainable_tensors, r->fill_ms);
    printf("memory: peak RSS %.0f MiB, grew %.0f MiB while the model ran; estimate %.0f MiB "
           "(weights %.0f, grads %.1f, optimizer %.1f incl. freezer scores not held here, "
           "activations %.0f): estimate/measured %.3f\n",
           r->rss_after_mb, grew, est, (double)r->est.weights / BENCH_MIB,
           (double)r->est.grads / BENCH_MIB, (double)r->est.optimizer / BENCH_MIB,
           (double)r->est.activations / BENCH_MIB, grew > 0 ? est / grew : 0.0);

    printf("{\"bench\":\"llama_step\",\"side\":\"c\",\"layers\":%d,\"batch\":%d,\"seq\":%d,"
           "\"rank\":%d,\"steps\":%d,\"threads\":%d,\"bf16\":%s,\"checkpointing\":%s,"
           "\"nproc\":%ld,\"cpu\":",
           r->layers, BENCH_BATCH, BENCH_SEQ, AFLORA_RANK, r->steps, threads,
           r->bf16 ? "true" : "false", r->checkpointing ? "true" : "false",
           sysconf(_SC_NPROCESSORS_ONLN));
    bench_json_str(cpu);
    printf(",\"openblas\":");
    bench_json_str(openblas_get_config());
    printf(",\"sgemm_gflops\":{\"cube\":%.2f,\"proj\":%.2f,\"best\":%.2f},\"step_ms\":[", r->cube,
           r->proj, r->best);
    for (int s = 0; s < r->steps; s++) printf("%s%.3f", s ? "," : "", r->t[s].total);
    printf("],\"median_ms\":%.3f,\"forward_ms\":%.3f,\"backward_ms\":%.3f,\"optimizer_ms\":%.3f,"
           "\"cpu_ms\":%.3f,\"flops\":{\"forward\":%llu,\"backward_input\":%llu,"
           "\"backward_weight\":%llu,\"total\":%llu},\"gflops_per_s\":%.3f,"
           "\"pct_of_sgemm\":%.2f,\"first_loss\":%.6f,\"loss\":%.6f,\"trainable_params\":%zu,",
           t->total, t->fwd, t->bwd, t->opt, t->cpu,
           (unsigned long long)r->flops.by_kind[FLOP_FORWARD],
           (unsigned long long)r->flops.by_kind[FLOP_BACKWARD_INPUT],
           (unsigned long long)r->flops.by_kind[FLOP_BACKWARD_WEIGHT],
           (unsigned long long)flops_total(&r->flops), gfs, 100.0 * gfs / r->best, r->first_loss,
           r->loss, r->trainable);
    printf("\"estimate_bytes\":{\"weights\":%zu,\"grads\":%zu,\"optimizer\":%zu,"
           "\"activations\":%zu,\"total\":%zu},\"arena_bytes\":%zu,\"adam_bytes\":%zu,"
           "\"maxrss_mb\":%.1f,\"maxrss_delta_mb\":%.1f}\n",
           r->est.weights, r->est.grads, r->est.optimizer, r->est.activations, r->est.total,
           r->mem.base + r->mem.trainable + r->mem.grads + r->mem.activations, r->adam_bytes,
           r->rss_after_mb, grew);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: llama_step [--steps N] [--layers L] [--threads N] [--bf16] [--checkpointing]\n"
            "  --steps N    timed steps after one warm-up step (default %d)\n"
            "  --layers L   decoder layers (default %d, TinyLlama's; fewer for a quick check)\n"
            "  --threads N  engine/OpenBLAS threads (default: all online cores)\n"
            "  --bf16       keep the frozen base weights as bf16, widened per product\n"
            "  --checkpointing  recompute each block's activations in backward\n",
            DEFAULT_STEPS, TL_LAYERS);
}

int main(int argc, char **argv) {
    static result r;
    r.steps = DEFAULT_STEPS;
    r.layers = TL_LAYERS;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--bf16") == 0) {
            r.bf16 = true;
            continue;
        }
        if (strcmp(argv[i], "--checkpointing") == 0) {
            r.checkpointing = true;
            continue;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        const char *a = argv[i], *v = argv[++i];
        if (strcmp(a, "--steps") == 0)
            r.steps = atoi(v);
        else if (strcmp(a, "--layers") == 0)
            r.layers = atoi(v);
        else if (strcmp(a, "--threads") == 0)
            threads = atoi(v);
        else {
            usage(stderr);
            return 2;
        }
    }
    if (r.steps < 1 || r.steps > MAX_STEPS || r.layers < 1 || r.layers > 256) {
        fprintf(stderr, "llama_step: --steps must be 1..%d and --layers 1..256\n", MAX_STEPS);
        return 2;
    }
    engine_set_blas_threads(threads);
    engine_set_threads(threads);
    printf("TinyLlama-1.1B-shaped training step (%d layers): batch %d x seq %d, AFLoRA r=%d on "
           "q,k,v,up,down, %d timed step%s after 1 warm-up, %d thread%s; base weights %s, "
           "checkpointing %s\n",
           r.layers, BENCH_BATCH, BENCH_SEQ, AFLORA_RANK, r.steps, r.steps == 1 ? "" : "s",
           engine_threads(), engine_threads() == 1 ? "" : "s", r.bf16 ? "bf16" : "fp32",
           r.checkpointing ? "on" : "off");
    fflush(stdout);
    char err[512];
    if (run(&r, err, sizeof err) != 0) {
        fprintf(stderr, "llama_step: %s\n", err);
        return 1;
    }
    /* after the model is freed, so its buffers do not count in its peak */
    r.cube = bench_time_sgemm(PEAK_CUBE, PEAK_CUBE, PEAK_CUBE, false, PEAK_CUBE_REPS, BENCH_SEED,
                              err, sizeof err);
    r.proj = bench_time_sgemm(PEAK_PROJ_M, PEAK_PROJ_N, PEAK_PROJ_K, true, PEAK_PROJ_REPS,
                              BENCH_SEED, err, sizeof err);
    if (r.cube < 0 || r.proj < 0) {
        fprintf(stderr, "llama_step: %s\n", err);
        return 1;
    }
    r.best = r.cube > r.proj ? r.cube : r.proj;
    report(&r, engine_threads());
    return 0;
}
