/* step.c — the training-step benchmark: how long one optimizer step of a
 * BERT-base-shaped model takes under each fine-tuning method, how many FLOPs
 * it executes, how close that comes to this machine's sgemm peak, and how
 * much memory it holds.
 *
 * What is timed is exactly what the trainer's step does for one micro-batch
 * (engine/train/train.c train_step): model_zero_grad, model_forward,
 * model_backward, global-norm clipping over the trainable gradients and one
 * adamw_update per trainable tensor. Dataset batching, freezing scores and
 * callbacks are left out: they are not model compute.
 *
 * Methods ("variants"): AFLoRA r=4 with FFN projections trainable (the
 * default) and with all projections trainable, both as at the start of
 * training; AFLoRA after freezing (every A and B frozen, as at the end of
 * training: only s_d, s_b and the head train); ELoRA r=1024; LoRA r=8,
 * alpha 16; full fine-tuning. AFLoRA's saving over ELoRA comes from its rank
 * (4 vs 1024) and, once projections freeze, from the weight-gradient GEMMs it
 * skips; the two AFLoRA rows bracket what a real run averages.
 *
 * Dropout is off by default (model_set_dropout(false)): the kernels skipped
 * are the five dropout sites (embeddings, attention probabilities, the two
 * residual branches, the pooled output), each a hash per element in forward
 * and again in backward. --dropout turns them on to measure that cost.
 *
 * The sgemm peak is measured in the same process, after the methods ran
 * (so its buffers do not count in the methods' ru_maxrss), on a 2048^3 cube
 * and on the model's largest projection shape; the best GFLOP/s of either is
 * the reference. ru_maxrss is a per-process high-water mark: for clean
 * per-method memory figures run one method per process (--method, as
 * bench/run.sh does).
 *
 * Output: a human-readable table, then one JSON line for scripts. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "model/gemm.h"
#include "model/model.h"
#include "train/optim.h"
#include "base/rng.h"
#include "train/memory.h"
#include "train/train.h"

/* BERT-base (bert-base-uncased config.json). */
#define BERT_VOCAB 30522
#define BERT_HIDDEN 768
#define BERT_LAYERS 12
#define BERT_HEADS 12
#define BERT_INTERMEDIATE 3072
#define BERT_MAX_POSITION 512
#define BERT_TYPE_VOCAB 2
#define BERT_LN_EPS 1e-12f
#define BERT_DROPOUT 0.1f

/* The benchmark batch: 8 sequences of 128 tokens, a binary task. */
#define BENCH_BATCH 8
#define BENCH_SEQ 128
#define BENCH_LABELS 2
#define BENCH_SEED 42
#define DEFAULT_STEPS 3
#define MAX_STEPS 1000

/* Ranks as in the paper's comparison (aflora.md §1, §6). */
#define AFLORA_RANK 4
#define ELORA_RANK 1024
#define LORA_RANK 8
#define LORA_ALPHA 16.0f

/* The optimizer settings are the trainer's defaults (train.h: aflora.md §5);
 * they only affect the numbers the step writes, not its cost (clipping at
 * 0.1 always rescales, as in training). */

/* sgemm peak: a large cube and the intermediate projection of one batch
 * (tokens x intermediate x hidden, X W^T as linear_forward calls it). */
#define PEAK_CUBE 2048
#define PEAK_CUBE_REPS 3
#define PEAK_PROJ_M (BENCH_BATCH * BENCH_SEQ)
#define PEAK_PROJ_N BERT_INTERMEDIATE
#define PEAK_PROJ_K BERT_HIDDEN
#define PEAK_PROJ_REPS 5

typedef struct {
    const char *name;
    const char *what;
    aflo_adapter_config ac;
    bool freeze_projections; /* freeze every A and B before timing */
} variant;

static const variant variants[] = {
    {"aflora",
     "AFLoRA r=4, FFN projections trainable (before freezing)",
     {METHOD_AFLORA, AFLORA_RANK, 0.0f, ALL_MODULES, PROJ_FFN},
     false},
    {"aflora-all",
     "AFLoRA r=4, all projections trainable (before freezing)",
     {METHOD_AFLORA, AFLORA_RANK, 0.0f, ALL_MODULES, PROJ_ALL},
     false},
    {"aflora-frozen",
     "AFLoRA r=4 after freezing: every A and B frozen",
     {METHOD_AFLORA, AFLORA_RANK, 0.0f, ALL_MODULES, PROJ_FFN},
     true},
    {"elora",
     "ELoRA r=1024, projections frozen",
     {METHOD_ELORA, ELORA_RANK, 0.0f, ALL_MODULES, PROJ_NONE},
     false},
    {"lora",
     "LoRA r=8, alpha 16",
     {METHOD_LORA, LORA_RANK, LORA_ALPHA, ALL_MODULES, PROJ_NONE},
     false},
    {"full", "full fine-tuning", {METHOD_FULL, 0, 0.0f, ALL_MODULES, PROJ_NONE}, false},
};
#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))

/* Parts of one step, in milliseconds of wall time; cpu is the process CPU
 * time of the whole step (all threads, spinning included). On a machine shared
 * with other work, cpu is the steadier figure at --threads 1. */
typedef struct {
    double zero, fwd, bwd, opt, total, cpu;
} step_times;

typedef struct {
    const variant *v;
    bool ran;
    int steps;
    step_times t[MAX_STEPS];
    step_times median; /* the step whose total is the median */
    aflo_flops flops;  /* of one step */
    size_t trainable;  /* elements trained in the timed steps */
    int trainable_tensors;
    aflo_memory mem;
    aflo_job_memory est; /* train_estimate_memory for this method, no eval set */
    size_t adam_bytes;
    double maxrss_before_mb, maxrss_after_mb;
    float first_loss; /* of the warm-up step, before any update: ~ln 2 */
    float loss;       /* of the last timed step */
} result;

typedef struct {
    double cube, proj, best;
} sgemm_peak;

static void bert_base_config(aflo_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->model_type, sizeof c->model_type, "bert");
    c->vocab_size = BERT_VOCAB;
    c->hidden_size = BERT_HIDDEN;
    c->num_hidden_layers = BERT_LAYERS;
    c->num_attention_heads = BERT_HEADS;
    c->intermediate_size = BERT_INTERMEDIATE;
    c->max_position_embeddings = BERT_MAX_POSITION;
    c->type_vocab_size = BERT_TYPE_VOCAB;
    c->pad_token_id = 0;
    c->roberta_positions = 0;
    c->layer_norm_eps = BERT_LN_EPS;
    c->hidden_dropout_prob = BERT_DROPOUT;
    c->attention_probs_dropout_prob = BERT_DROPOUT;
}

static bool decays(const aflo_param *p) {
    /* As the trainer: no weight decay on biases and LayerNorm. */
    return p->role != PROLE_BIAS && p->role != PROLE_NORM_WEIGHT && p->role != PROLE_NORM_BIAS;
}

static int cmp_total(const void *a, const void *b) {
    double x = ((const step_times *)a)->total, y = ((const step_times *)b)->total;
    return (x > y) - (x < y);
}

/* Runs one variant; fills r. Returns 0, or -1 with a message. */
static int run_variant(const variant *v, int steps, bool dropout, result *r, char *err,
                       size_t errlen) {
    memset(r, 0, sizeof *r);
    r->v = v;
    r->steps = steps;
    r->maxrss_before_mb = bench_maxrss_mb();

    aflo_config c;
    bert_base_config(&c);
    int rc = -1;
    int n = 0;
    aflo_param **tp = NULL;
    aflo_adam_state *adam = NULL;
    float **grads = NULL;
    size_t *sizes = NULL;
    int32_t *ids = NULL, *labels = NULL;
    uint8_t *mask = NULL;

    if (train_estimate_memory(&c, &v->ac, TASK_CLASSIFICATION, BENCH_LABELS, BENCH_BATCH, BENCH_SEQ,
                              false, &r->est, err, errlen) != 0)
        return -1;
    aflo_model *m =
        model_create(&c, &v->ac, TASK_CLASSIFICATION, BENCH_LABELS, BENCH_SEED, err, errlen);
    if (!m) return -1;
    if (model_reserve(m, BENCH_BATCH, BENCH_SEQ, err, errlen) != 0) goto out;
    model_set_dropout(m, dropout);
    model_set_training(m, true);

    int np = model_param_count(m);
    if (v->freeze_projections)
        for (int i = 0; i < np; i++) {
            aflo_param *p = model_param(m, i);
            if (p->trainable && (p->role == PROLE_A || p->role == PROLE_B))
                model_freeze_param(m, p);
        }

    /* One Adam state per tensor trainable in the timed steps. */
    tp = calloc((size_t)np, sizeof *tp);
    adam = calloc((size_t)np, sizeof *adam);
    grads = calloc((size_t)np, sizeof *grads);
    sizes = calloc((size_t)np, sizeof *sizes);
    size_t ntok = (size_t)BENCH_BATCH * BENCH_SEQ;
    ids = malloc(ntok * sizeof *ids);
    mask = malloc(ntok * sizeof *mask);
    labels = malloc(BENCH_BATCH * sizeof *labels);
    if (!tp || !adam || !grads || !sizes || !ids || !mask || !labels) goto oom;
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
    for (size_t i = 0; i < ntok; i++) {
        ids[i] = (int32_t)rng_below(&rng, BERT_VOCAB);
        mask[i] = 1;
    }
    for (int i = 0; i < BENCH_BATCH; i++) labels[i] = (int32_t)rng_below(&rng, BENCH_LABELS);
    aflo_batch b = {.batch = BENCH_BATCH,
                    .seq = BENCH_SEQ,
                    .input_ids = ids,
                    .token_type_ids = NULL,
                    .attention_mask = mask,
                    .labels = labels,
                    .targets = NULL};

    /* Step 0 is the warm-up (first touch of the activation arena, OpenBLAS
     * buffers, Adam moments); steps 1..steps are timed. */
    for (int s = 0; s <= steps; s++) {
        aflo_flops *f = model_flops(m);
        memset(f, 0, sizeof *f);
        model_set_dropout_key(m, rng_hash(BENCH_SEED, (uint64_t)s));
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
            float lr = (float)(p->group == PGROUP_HEAD ? TRAIN_DEFAULT_HEAD_LR : TRAIN_DEFAULT_LR);
            float wd = decays(p) ? (float)TRAIN_DEFAULT_WEIGHT_DECAY : 0.0f;
            adamw_update(p->data, p->grad, &adam[i], lr, wd, TRAIN_ADAM_BETA1, TRAIN_ADAM_BETA2,
                         TRAIN_ADAM_EPS, s + 1);
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
    memcpy(sorted, r->t, (size_t)steps * sizeof *sorted);
    qsort(sorted, (size_t)steps, sizeof *sorted, cmp_total);
    /* Even counts: the lower middle, so the parts add up to a step that happened. */
    r->median = sorted[(steps - 1) / 2];
    r->mem = model_memory(m);
    r->maxrss_after_mb = bench_maxrss_mb();
    r->ran = true;
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "%s: out of memory", v->name);
out:
    if (adam)
        for (int i = 0; i < n; i++) adam_state_free(&adam[i]);
    free(adam);
    free(tp);
    free(grads);
    free(sizes);
    free(ids);
    free(mask);
    free(labels);
    model_free(m);
    return rc;
}

static int measure_peak(sgemm_peak *pk, char *err, size_t errlen) {
    pk->cube = bench_time_sgemm(PEAK_CUBE, PEAK_CUBE, PEAK_CUBE, false, PEAK_CUBE_REPS, BENCH_SEED,
                                err, errlen);
    pk->proj = bench_time_sgemm(PEAK_PROJ_M, PEAK_PROJ_N, PEAK_PROJ_K, true, PEAK_PROJ_REPS,
                                BENCH_SEED, err, errlen);
    if (pk->cube < 0 || pk->proj < 0) return -1;
    pk->best = pk->cube > pk->proj ? pk->cube : pk->proj;
    return 0;
}

static double step_gflops(const result *r) {
    return (double)flops_total(&r->flops) / (r->median.total * 1e6);
}

static size_t arenas_bytes(const aflo_memory *mem) {
    return mem->base + mem->trainable + mem->grads + mem->activations;
}

static void print_table(const result *res, int nres, const sgemm_peak *pk) {
    printf("\n%-14s %10s %9s %9s %9s %9s %9s %9s | %8s %8s %8s %8s | %7s %6s | %8s %8s %8s "
           "%8s\n",
           "method", "trainable", "step_ms", "cpu_ms", "zero_ms", "fwd_ms", "bwd_ms", "opt_ms",
           "GF_fwd", "GF_bwdin", "GF_bwdw", "GF_tot", "GFLOP/s", "%peak", "arenaMB", "adamMB",
           "rssMB", "rssΔMB");
    for (int i = 0; i < nres; i++) {
        const result *r = &res[i];
        if (!r->ran) continue;
        const step_times *t = &r->median;
        double gfs = step_gflops(r);
        printf("%-14s %10zu %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f | %8.2f %8.2f %8.2f %8.2f | "
               "%7.1f %5.1f%% | %8.1f %8.1f %8.1f %8.1f\n",
               r->v->name, r->trainable, t->total, t->cpu, t->zero, t->fwd, t->bwd, t->opt,
               (double)r->flops.by_kind[FLOP_FORWARD] * 1e-9,
               (double)r->flops.by_kind[FLOP_BACKWARD_INPUT] * 1e-9,
               (double)r->flops.by_kind[FLOP_BACKWARD_WEIGHT] * 1e-9,
               (double)flops_total(&r->flops) * 1e-9, gfs, 100.0 * gfs / pk->best,
               (double)arenas_bytes(&r->mem) / BENCH_MIB, (double)r->adam_bytes / BENCH_MIB,
               r->maxrss_after_mb, r->maxrss_after_mb - r->maxrss_before_mb);
    }
    printf("memory: the job estimate (train/memory.h) against the growth of peak RSS while the "
           "method ran\n");
    for (int i = 0; i < nres; i++) {
        const result *r = &res[i];
        if (!r->ran) continue;
        double est = (double)r->est.total / BENCH_MIB,
               grew = r->maxrss_after_mb - r->maxrss_before_mb;
        printf("  %-14s estimate %8.1f MiB (weights %.1f, grads %.1f, optimizer %.1f, activations "
               "%.1f), measured %8.1f MiB, estimate/measured %.2f\n",
               r->v->name, est, (double)r->est.weights / BENCH_MIB,
               (double)r->est.grads / BENCH_MIB, (double)r->est.optimizer / BENCH_MIB,
               (double)r->est.activations / BENCH_MIB, grew, grew > 0 ? est / grew : 0.0);
    }
    printf("sgemm peak: %.1f GFLOP/s (%dx%dx%d cube %.1f, %dx%dx%d projection %.1f)\n", pk->best,
           PEAK_CUBE, PEAK_CUBE, PEAK_CUBE, pk->cube, PEAK_PROJ_M, PEAK_PROJ_N, PEAK_PROJ_K,
           pk->proj);
}

static const result *find_result(const result *res, int nres, const char *name) {
    for (int i = 0; i < nres; i++)
        if (res[i].ran && strcmp(res[i].v->name, name) == 0) return &res[i];
    return NULL;
}

static void print_ratios(const result *res, int nres) {
    const result *e = find_result(res, nres, "elora");
    static const char *const afl[] = {"aflora", "aflora-all", "aflora-frozen"};
    if (!e) return;
    for (size_t i = 0; i < sizeof afl / sizeof *afl; i++) {
        const result *a = find_result(res, nres, afl[i]);
        if (!a) continue;
        printf("ELoRA / %-13s  time %.2fx  FLOPs %.2fx\n", afl[i],
               e->median.total / a->median.total,
               (double)flops_total(&e->flops) / (double)flops_total(&a->flops));
    }
}

static void print_json(const result *res, int nres, const sgemm_peak *pk, int steps, bool dropout) {
    char cpu[256];
    bench_cpu_model(cpu, sizeof cpu);
    printf("{\"bench\":\"step\",\"side\":\"c\",\"batch\":%d,\"seq\":%d,\"steps\":%d,"
           "\"dropout\":%s,\"threads\":%d,\"nproc\":%ld,\"cpu\":",
           BENCH_BATCH, BENCH_SEQ, steps, dropout ? "true" : "false", engine_threads(),
           sysconf(_SC_NPROCESSORS_ONLN));
    bench_json_str(cpu);
    printf(",\"openblas\":");
    bench_json_str(openblas_get_config());
    printf(",\"sgemm_peak_gflops\":{\"cube_%d\":%.2f,\"proj_%dx%dx%d\":%.2f,\"best\":%.2f}",
           PEAK_CUBE, pk->cube, PEAK_PROJ_M, PEAK_PROJ_N, PEAK_PROJ_K, pk->proj, pk->best);
    printf(",\"methods\":[");
    bool first = true;
    for (int i = 0; i < nres; i++) {
        const result *r = &res[i];
        if (!r->ran) continue;
        printf("%s{\"name\":\"%s\",\"trainable_params\":%zu,\"trainable_tensors\":%d,"
               "\"first_loss\":%.6f,\"loss\":%.6f,\"step_ms\":[",
               first ? "" : ",", r->v->name, r->trainable, r->trainable_tensors, r->first_loss,
               r->loss);
        first = false;
        for (int s = 0; s < r->steps; s++) printf("%s%.3f", s ? "," : "", r->t[s].total);
        const step_times *t = &r->median;
        double gfs = step_gflops(r);
        printf("],\"cpu_ms\":[");
        for (int s = 0; s < r->steps; s++) printf("%s%.3f", s ? "," : "", r->t[s].cpu);
        printf("],\"median_ms\":%.3f,\"median_step_cpu_ms\":%.3f,\"zero_grad_ms\":%.3f,\"forward_"
               "ms\":%.3f,"
               "\"backward_ms\":%.3f,\"optimizer_ms\":%.3f,"
               "\"flops\":{\"forward\":%llu,\"backward_input\":%llu,\"backward_weight\":%llu,"
               "\"total\":%llu},\"gflops_per_s\":%.3f,\"pct_of_sgemm_peak\":%.2f,",
               t->total, t->cpu, t->zero, t->fwd, t->bwd, t->opt,
               (unsigned long long)r->flops.by_kind[FLOP_FORWARD],
               (unsigned long long)r->flops.by_kind[FLOP_BACKWARD_INPUT],
               (unsigned long long)r->flops.by_kind[FLOP_BACKWARD_WEIGHT],
               (unsigned long long)flops_total(&r->flops), gfs, 100.0 * gfs / pk->best);
        printf("\"memory_bytes\":{\"base\":%zu,\"trainable\":%zu,\"grads\":%zu,"
               "\"activations\":%zu,\"adam\":%zu,\"accounted\":%zu},"
               "\"estimate_bytes\":{\"weights\":%zu,\"grads\":%zu,\"optimizer\":%zu,"
               "\"activations\":%zu,\"total\":%zu},"
               "\"maxrss_mb\":%.1f,\"maxrss_delta_mb\":%.1f}",
               r->mem.base, r->mem.trainable, r->mem.grads, r->mem.activations, r->adam_bytes,
               arenas_bytes(&r->mem) + r->adam_bytes, r->est.weights, r->est.grads,
               r->est.optimizer, r->est.activations, r->est.total, r->maxrss_after_mb,
               r->maxrss_after_mb - r->maxrss_before_mb);
    }
    printf("]}\n");
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: step [--steps N] [--threads N] [--method NAME] [--dropout]\n"
            "  --steps N     timed steps after one warm-up step (default %d)\n"
            "  --threads N   engine/OpenBLAS threads (default: all online cores)\n"
            "  --method NAME run one method only; NAME is one of:\n",
            DEFAULT_STEPS);
    for (int i = 0; i < N_VARIANTS; i++)
        fprintf(f, "                  %-14s %s\n", variants[i].name, variants[i].what);
    fprintf(f, "  --dropout     dropout on (p = 0.1 at every site) instead of off\n");
}

int main(int argc, char **argv) {
    int steps = DEFAULT_STEPS, threads = 0;
    const char *only = NULL;
    bool dropout = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--dropout") == 0) {
            dropout = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--steps") == 0)
            steps = atoi(v);
        else if (strcmp(a, "--threads") == 0)
            threads = atoi(v);
        else if (strcmp(a, "--method") == 0)
            only = v;
        else {
            usage(stderr);
            return 2;
        }
    }
    if (steps < 1 || steps > MAX_STEPS) {
        fprintf(stderr, "step: --steps must be between 1 and %d\n", MAX_STEPS);
        return 2;
    }
    bool known = only == NULL;
    for (int i = 0; i < N_VARIANTS && !known; i++) known = strcmp(only, variants[i].name) == 0;
    if (!known) {
        fprintf(stderr, "step: unknown method %s\n", only);
        usage(stderr);
        return 2;
    }
    engine_set_blas_threads(threads);
    engine_set_threads(threads);

    static result res[N_VARIANTS];
    char err[512];
    printf("BERT-base training step: batch %d x seq %d, %d timed step%s after 1 warm-up, "
           "%d thread%s, dropout %s\n",
           BENCH_BATCH, BENCH_SEQ, steps, steps == 1 ? "" : "s", engine_threads(),
           engine_threads() == 1 ? "" : "s", dropout ? "on" : "off");
    for (int i = 0; i < N_VARIANTS; i++) {
        if (only && strcmp(only, variants[i].name) != 0) continue;
        printf("running %-14s (%s) ...\n", variants[i].name, variants[i].what);
        fflush(stdout);
        if (run_variant(&variants[i], steps, dropout, &res[i], err, sizeof err) != 0) {
            fprintf(stderr, "step: %s\n", err);
            return 1;
        }
    }
    sgemm_peak pk;
    if (measure_peak(&pk, err, sizeof err) != 0) {
        fprintf(stderr, "step: %s\n", err);
        return 1;
    }
    print_table(res, N_VARIANTS, &pk);
    print_ratios(res, N_VARIANTS);
    print_json(res, N_VARIANTS, &pk, steps, dropout);
    return 0;
}
