/* fused.c — micro-benchmark of the training-side kernels against what they
 * replaced, side by side in one process (A then B alternating, best and
 * median of several repetitions):
 * - AdamW, gradient global norm + clip, the AFLoRA freezing-score update:
 *   the previous scalar loops (copied here, built like the engine's ordinary
 *   sources at -O2 -march=x86-64-v2) against optim_kern.c at each ISA level;
 * - residual + dropout + LayerNorm, forward and backward, and the embedding
 *   sum + LayerNorm + dropout: the unfused ops.h sequence bert.c ran before
 *   against resnorm.h at each ISA level, dropout off and on.
 *
 *   build/bench/fused [--threads T] [--adam-n FLOATS] [--reps R]
 *
 * Defaults: T = 1 then 2, FLOATS = 110e6 (BERT-base full fine-tuning;
 * 4 buffers of that size, 1.8 GB), R = 7. Shapes: N = 1024 rows (batch 8 x
 * 128), C = 768. Ratios > 1 mean the new kernel is faster. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/isa.h"
#include "base/rng.h"
#include "model/gemm.h"
#include "model/ops.h"
#include "model/resnorm.h"
#include "train/freeze.h"
#include "train/optim.h"

#define N_ROWS 1024
#define C_COLS 768
#define VOCAB 30522
#define MAX_POS 512
#define LN_EPS 1e-12f
#define DROP_P 0.1f
#define KEY 0x1234abcdULL
#define MAX_REPS 64
/* Freezing-score benchmark: every A and B of AFLoRA-all on BERT-base, 12
 * layers x 12 matrices: 10 of 768*4 floats and 2 of 3072*4 per layer. */
#define SCORE_MATS (12 * 12)
#define SCORE_N ((size_t)12 * (10 * 768 * 4 + 2 * 3072 * 4))

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "fused: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void fill(float *a, size_t n, uint64_t seed, float lo, float hi) {
    aflo_rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) a[i] = rng_uniform_range(&r, lo, hi);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------ the code that was replaced */

static void old_adamw(float *restrict param, const float *restrict grad, float *restrict m,
                      float *restrict v, size_t n, float lr, float wd, float beta1, float beta2,
                      float eps, long t) {
    const double bias1 = 1.0 - pow((double)beta1, (double)t);
    const double bias2 = 1.0 - pow((double)beta2, (double)t);
    const float decay = (float)(1.0 - (double)lr * (double)wd);
    const float one_b1 = (float)(1.0 - (double)beta1), one_b2 = (float)(1.0 - (double)beta2);
    const float step_size = (float)((double)lr / bias1), bias2_sqrt = (float)sqrt(bias2);
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        float p = param[i] * decay;
        m[i] = m[i] * beta1 + g * one_b1;
        v[i] = v[i] * beta2 + one_b2 * g * g;
        float denom = sqrtf(v[i]) / bias2_sqrt + eps;
        param[i] = p - step_size * m[i] / denom;
    }
}

static double old_clip(float *g, size_t n, double max_norm) {
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += (double)g[i] * (double)g[i];
    double norm = sqrt(sum), coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        const float c = (float)coef;
#pragma omp simd
        for (size_t i = 0; i < n; i++) g[i] *= c;
    }
    return norm;
}

static void old_score_update(float *restrict ibar, float *restrict ubar, float *restrict iwin,
                             const float *restrict g, size_t n, bool boundary, double b1, double b2,
                             double inv_count) {
    if (boundary) {
#pragma omp simd
        for (size_t e = 0; e < n; e++) {
            double w = (double)iwin[e] * inv_count;
            double ib = b1 * (double)ibar[e] + (1.0 - b1) * w;
            ibar[e] = (float)ib;
            ubar[e] = (float)(b2 * (double)ubar[e] + (1.0 - b2) * fabs(w - ib));
            iwin[e] = fabsf(g[e]);
        }
    } else {
#pragma omp simd
        for (size_t e = 0; e < n; e++) iwin[e] += fabsf(g[e]);
    }
}

/* bert.c's residual_dropout before the fusion. */
static void old_residual_dropout(float *out, float *y, const float *x, size_t n, float p,
                                 uint64_t key, uint64_t stream) {
    dropout_forward(y, y, n, p, key, stream);
#pragma omp parallel for schedule(static) if (n >= 32768)
    for (size_t i = 0; i < n; i++) out[i] = x[i] + y[i];
}

/* ------------------------------------------------------------ timing harness */

typedef void (*bench_fn)(void *ctx);

typedef struct {
    double best, median;
} timing;

/* Runs a and b alternately reps times; per-call seconds of each. */
static void ab(bench_fn a, bench_fn b, void *ctx, int reps, timing *ta, timing *tb) {
    double sa[MAX_REPS], sb[MAX_REPS];
    a(ctx), b(ctx); /* warm-up: pages touched, caches as in steady state */
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        a(ctx);
        double t1 = now();
        b(ctx);
        double t2 = now();
        sa[r] = t1 - t0, sb[r] = t2 - t1;
    }
    qsort(sa, (size_t)reps, sizeof *sa, cmp_double);
    qsort(sb, (size_t)reps, sizeof *sb, cmp_double);
    *ta = (timing){sa[0], sa[reps / 2]};
    *tb = (timing){sb[0], sb[reps / 2]};
}

static void report(const char *what, const char *level, timing old, timing neu) {
    printf("  %-34s %-7s old %8.3f ms  new %8.3f ms  best %5.2fx  median %5.2fx\n", what, level,
           old.best * 1e3, neu.best * 1e3, old.best / neu.best, old.median / neu.median);
}

/* ------------------------------------------------------------------ optimizer */

typedef struct {
    size_t n;
    float *p, *g, *m, *v;
    aflo_adam_state st;
    long t;
} adam_ctx;

static void adam_old(void *c) {
    adam_ctx *a = c;
    old_adamw(a->p, a->g, a->m, a->v, a->n, 1e-5f, 0.1f, 0.9f, 0.999f, 1e-6f, ++a->t);
}
static void adam_new(void *c) {
    adam_ctx *a = c;
    adamw_update(a->p, a->g, &a->st, 1e-5f, 0.1f, 0.9f, 0.999f, 1e-6f, a->t);
}
/* Clip with max_norm above the norm: both read the gradient once and leave
 * it alone, so repetitions see the same data. */
static void clip_old(void *c) {
    adam_ctx *a = c;
    (void)old_clip(a->g, a->n, 1e30);
}
static void clip_new(void *c) {
    adam_ctx *a = c;
    float *g[1] = {a->g};
    (void)grad_clip_global_norm(g, &a->n, 1, 1e30);
}

typedef struct {
    float *ibar, *ubar, *iwin, *g;
    size_t sizes[SCORE_MATS], offs[SCORE_MATS];
    const float *grads[SCORE_MATS];
    aflo_freezer *f;
    long t;
} score_ctx;

static void score_old(void *c) {
    score_ctx *s = c;
    s->t++;
    for (int i = 0; i < SCORE_MATS; i++) {
        size_t o = s->offs[i];
        old_score_update(s->ibar + o, s->ubar + o, s->iwin + o, s->g + o, s->sizes[i],
                         s->t % 10 == 0, 0.85, 0.95, 0.1);
    }
}
static void score_new(void *c) {
    score_ctx *s = c;
    freeze_score_update(s->f, s->t, s->grads, NULL);
}

/* ------------------------------------------------------------------ resnorm */

typedef struct {
    float p;
    float *x, *y, *res, *out, *mean, *rstd, *gamma, *beta, *dout, *dres, *dy, *dtmp;
    float *dg, *db, *scratch;
    bool params;
    int32_t *ids, *pids, *tids;
    float *word, *pos, *type;
} rn_ctx;

static void fwd_old(void *c) {
    rn_ctx *r = c;
    size_t n = (size_t)N_ROWS * C_COLS;
    /* drops y in place, as bert.c did; y's drift over repetitions (x1.1 per
     * kept element) does not change the work */
    old_residual_dropout(r->res, r->y, r->x, n, r->p, KEY, 5);
    layernorm_forward(r->out, r->mean, r->rstd, r->res, r->gamma, r->beta, N_ROWS, C_COLS, LN_EPS);
}
static void fwd_new(void *c) {
    rn_ctx *r = c;
    resnorm_forward(r->out, r->res, r->mean, r->rstd, r->x, r->y, r->gamma, r->beta, N_ROWS, C_COLS,
                    LN_EPS, r->p, KEY, 5);
}
/* bert.c's layer_backward at a residual site before the fusion. */
static void bwd_old(void *c) {
    rn_ctx *r = c;
    size_t n = (size_t)N_ROWS * C_COLS;
    layernorm_backward(r->dtmp, r->params ? r->dg : NULL, r->params ? r->db : NULL, r->dout, r->res,
                       r->mean, r->rstd, r->gamma, N_ROWS, C_COLS);
    memcpy(r->dres, r->dtmp, n * sizeof(float));
    dropout_backward(r->dtmp, r->dtmp, n, r->p, KEY, 5);
}
static void bwd_new(void *c) {
    rn_ctx *r = c;
    resnorm_backward(r->dres, r->p > 0 ? r->dy : NULL, r->params ? r->dg : NULL,
                     r->params ? r->db : NULL, r->scratch, r->dout, r->res, r->mean, r->rstd,
                     r->gamma, N_ROWS, C_COLS, r->p, KEY, 5);
}
static void emb_old(void *c) {
    rn_ctx *r = c;
    embedding_forward(r->res, r->ids, r->word, N_ROWS, C_COLS, 0);
    embedding_forward(r->res, r->pids, r->pos, N_ROWS, C_COLS, 1);
    embedding_forward(r->res, r->tids, r->type, N_ROWS, C_COLS, 1);
    layernorm_forward(r->out, r->mean, r->rstd, r->res, r->gamma, r->beta, N_ROWS, C_COLS, LN_EPS);
    dropout_forward(r->out, r->out, (size_t)N_ROWS * C_COLS, r->p, KEY, 6);
}
static void emb_new(void *c) {
    rn_ctx *r = c;
    embnorm_forward(r->out, r->res, r->mean, r->rstd, r->word, r->ids, r->pos, r->pids, r->type,
                    r->tids, r->gamma, r->beta, N_ROWS, C_COLS, LN_EPS, r->p, KEY, 6);
}

static void select_level(int level) {
    char err[128];
    if (isa_select((aflo_isa)level, err, sizeof err) != 0) {
        fprintf(stderr, "fused: %s\n", err);
        exit(1);
    }
}

static void run_threads(int threads, size_t adam_n, int reps, adam_ctx *a, score_ctx *s,
                        rn_ctx *r) {
    engine_set_threads(threads);
    printf("\n== %d thread%s\n", threads, threads == 1 ? "" : "s");
    char what[96];
    for (int level = 0; level < ISA_COUNT; level++) {
        if (!isa_supported((aflo_isa)level)) continue;
        select_level(level);
        const char *ln = isa_name((aflo_isa)level);
        timing to, tn;
        if (adam_n) {
            ab(adam_old, adam_new, a, reps, &to, &tn);
            snprintf(what, sizeof what, "adamw %.0fM floats", (double)adam_n / 1e6);
            report(what, ln, to, tn);
            ab(clip_old, clip_new, a, reps, &to, &tn);
            snprintf(what, sizeof what, "global norm+clip %.0fM", (double)adam_n / 1e6);
            report(what, ln, to, tn);
        }
        ab(score_old, score_new, s, reps, &to, &tn);
        snprintf(what, sizeof what, "freeze score %d mats %.2fM", SCORE_MATS,
                 (double)SCORE_N / 1e6);
        report(what, ln, to, tn);
        for (int drop = 0; drop < 2; drop++) {
            r->p = drop ? DROP_P : 0.0f;
            const char *ps = drop ? "p=0.1" : "p=0";
            ab(fwd_old, fwd_new, r, reps, &to, &tn);
            snprintf(what, sizeof what, "res+LN fwd %s", ps);
            report(what, ln, to, tn);
            for (int params = 0; params < 2; params++) {
                r->params = params;
                ab(bwd_old, bwd_new, r, reps, &to, &tn);
                snprintf(what, sizeof what, "res+LN bwd %s%s", ps, params ? " +dgamma" : "");
                report(what, ln, to, tn);
            }
            ab(emb_old, emb_new, r, reps, &to, &tn);
            snprintf(what, sizeof what, "emb sum+LN+drop fwd %s", ps);
            report(what, ln, to, tn);
        }
    }
}

static void cpu_name(char *buf, size_t n) {
    snprintf(buf, n, "?");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) snprintf(buf, n, "%s", c + 2);
            buf[strcspn(buf, "\n")] = 0;
            break;
        }
    }
    fclose(f);
}

int main(int argc, char **argv) {
    int threads = 0, reps = 7;
    size_t adam_n = 110000000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--adam-n") && i + 1 < argc)
            adam_n = (size_t)atof(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads T] [--adam-n FLOATS] [--reps R]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1 || reps > MAX_REPS) reps = 7;
    char cpu[128];
    cpu_name(cpu, sizeof cpu);
    const char *core = getenv("OPENBLAS_CORETYPE");
    printf("fused: CPU %s, best ISA %s, OPENBLAS_CORETYPE %s, %d reps (A/B alternating)\n", cpu,
           isa_name(isa_best()), core ? core : "(unset)", reps);

    adam_ctx a = {.n = adam_n};
    if (adam_n) {
        a.p = xmalloc(adam_n * 4), a.g = xmalloc(adam_n * 4);
        a.m = calloc(adam_n, 4), a.v = calloc(adam_n, 4);
        /* both sides update the same moments: 4 buffers, not 6 */
        a.st = (aflo_adam_state){.m = a.m, .v = a.v, .size = adam_n};
        if (!a.m || !a.v) {
            fprintf(stderr, "fused: out of memory for AdamW buffers\n");
            return 1;
        }
        fill(a.p, adam_n, 1, -1, 1);
        fill(a.g, adam_n, 2, -1e-3f, 1e-3f);
    }

    score_ctx s = {0};
    s.ibar = calloc(SCORE_N, 4), s.ubar = calloc(SCORE_N, 4), s.iwin = calloc(SCORE_N, 4);
    s.g = xmalloc(SCORE_N * 4);
    if (!s.ibar || !s.ubar || !s.iwin) return 1;
    fill(s.g, SCORE_N, 3, -1, 1);
    aflo_freeze_config fc = {0.85, 0.95, 10, 1000000, 1000000, 0, FREEZE_SENS_GRAD};
    bool tr[SCORE_MATS];
    size_t off = 0;
    for (int i = 0; i < SCORE_MATS; i++) {
        s.sizes[i] = i % 12 < 10 ? 768 * 4 : 3072 * 4;
        s.offs[i] = off;
        s.grads[i] = s.g + off;
        off += s.sizes[i];
        tr[i] = true;
    }
    char err[256];
    s.f = freezer_create(&fc, SCORE_MATS, s.sizes, tr, err, sizeof err);
    if (!s.f) {
        fprintf(stderr, "fused: %s\n", err);
        return 1;
    }

    size_t n = (size_t)N_ROWS * C_COLS;
    rn_ctx r = {0};
    float **bufs[] = {&r.x, &r.y, &r.res, &r.out, &r.dout, &r.dres, &r.dy, &r.dtmp};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) *bufs[i] = xmalloc(n * 4);
    r.mean = xmalloc(N_ROWS * 4), r.rstd = xmalloc(N_ROWS * 4);
    r.gamma = xmalloc(C_COLS * 4), r.beta = xmalloc(C_COLS * 4);
    r.dg = calloc(C_COLS, 4), r.db = calloc(C_COLS, 4);
    r.scratch = xmalloc(resnorm_scratch_floats(N_ROWS, C_COLS) * 4);
    r.word = xmalloc((size_t)VOCAB * C_COLS * 4), r.pos = xmalloc((size_t)MAX_POS * C_COLS * 4);
    r.type = xmalloc(2 * C_COLS * 4);
    r.ids = xmalloc(N_ROWS * 4), r.pids = xmalloc(N_ROWS * 4), r.tids = xmalloc(N_ROWS * 4);
    if (!r.dg || !r.db) return 1;
    fill(r.x, n, 4, -2, 2), fill(r.y, n, 5, -1, 1), fill(r.dout, n, 6, -1, 1);
    fill(r.gamma, C_COLS, 7, 0.5f, 1.5f), fill(r.beta, C_COLS, 8, -0.5f, 0.5f);
    fill(r.word, (size_t)VOCAB * C_COLS, 9, -1, 1),
        fill(r.pos, (size_t)MAX_POS * C_COLS, 10, -1, 1);
    fill(r.type, 2 * C_COLS, 11, -1, 1);
    aflo_rng rng;
    rng_seed(&rng, 12);
    for (int i = 0; i < N_ROWS; i++) {
        r.ids[i] = (int32_t)rng_below(&rng, VOCAB);
        r.pids[i] = i % 128;
        r.tids[i] = i % 2;
    }
    /* forward once so backward has res/mean/rstd */
    resnorm_forward(r.out, r.res, r.mean, r.rstd, r.x, r.y, r.gamma, r.beta, N_ROWS, C_COLS, LN_EPS,
                    0.0f, KEY, 5);

    if (threads > 0) {
        run_threads(threads, adam_n, reps, &a, &s, &r);
    } else {
        run_threads(1, adam_n, reps, &a, &s, &r);
        run_threads(2, adam_n, reps, &a, &s, &r);
    }
    freezer_free(s.f);
    return 0;
}
