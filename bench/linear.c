/* bench/linear.c — one adapted linear layer, forward + backward, the
 * engine's linear.c against a copy of the code it replaced (BLAS for every
 * product with a dimension r), side by side in one process.
 *
 * Shapes: N = 1024 tokens (batch 8 x 128) through BERT-base's three linear
 * shapes, 768 -> 768, 768 -> 3072, 3072 -> 768. Methods: AFLoRA r = 4 with
 * every adapter tensor training, AFLoRA r = 4 with A and B frozen, LoRA
 * r = 8, ELoRA r = 1024 (A, B frozen). Backward wants the input gradient.
 * Variants, alternated per repetition (median of --reps):
 *   old      the code before the skinny kernels (kept below)
 *   new      linear.c as it runs (merge rule AUTO)
 *   nomerge  linear.c with the merged weight off
 *   merge    linear.c with the merged weight wherever it fits
 *   base     the same layer without adapter (the floor; variant - base is
 *            what the adapter costs)
 * Share of sgemm = the base GEMMs' FLOPs (Y = X W^T and dX = dY W,
 * 4 * N * in * out) / time / the rate of X W^T measured here (best of 5).
 *
 * First, the r-dimension products alone on one thread: each BLAS call of
 * the old code against the skinny kernel that replaced it.
 *
 *   build/bench/linear [--threads 2] [--reps 7] [--products: only those] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/isa.h"
#include "model/gemm.h"
#include "model/linear.h"
#include "model/ops.h"
#include "model/skinny.h"

/* ------------------------------------------- the code before (reference) */

static float *old_grad(const aflo_param *p) { return p && p->trainable ? p->grad : NULL; }

static void old_add_scaled_cols(float *restrict Y, const float *restrict h3,
                                const float *restrict s, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= 32768)
    for (int n = 0; n < N; n++) {
        float *y = Y + (size_t)n * C;
        const float *h = h3 + (size_t)n * C;
        for (int c = 0; c < C; c++) y[c] += h[c] * s[c];
    }
}

static void old_scale_rows(float *restrict out, const float *restrict B, const float *restrict s,
                           int rows, int r) {
    for (int c = 0; c < rows; c++)
        for (int j = 0; j < r; j++) out[(size_t)c * r + j] = s[c] * B[(size_t)c * r + j];
}

static void old_forward(const aflo_linear *l, float *Y, const float *X, int N,
                        aflo_linear_acts acts, aflo_linear_scratch scratch, aflo_flops *f) {
    gemm(f, FLOP_FORWARD, false, true, N, l->out, l->in, 1.0f, X, l->in, l->W->data, l->in, 0.0f, Y,
         l->out);
    bias_forward(Y, l->b->data, N, l->out);
    int r = l->rank;
    gemm(f, FLOP_FORWARD, false, true, N, r, l->in, 1.0f, X, l->in, l->A->data, l->in, 0.0f,
         acts.h1, r);
    if (!l->sb) {
        gemm(f, FLOP_FORWARD, false, true, N, l->out, r, l->scale, acts.h1, r, l->B->data, r, 1.0f,
             Y, l->out);
        return;
    }
    float *h2 = scratch.r2;
    scale_cols_forward(h2, acts.h1, l->sd->data, N, r);
    if (linear_folds_sb(l)) {
        float *Bs = scratch.or2;
        old_scale_rows(Bs, l->B->data, l->sb->data, l->out, r);
        gemm(f, FLOP_FORWARD, false, true, N, l->out, r, l->scale, h2, r, Bs, r, 1.0f, Y, l->out);
        return;
    }
    gemm(f, FLOP_FORWARD, false, true, N, l->out, r, l->scale, h2, r, l->B->data, r, 0.0f, acts.h3,
         l->out);
    old_add_scaled_cols(Y, acts.h3, l->sb->data, N, l->out);
}

static void old_folded(const aflo_linear *l, const float *dY, const float *h2, int N, float *dB,
                       float *dsb, float *g, bool need_g, aflo_linear_scratch scratch,
                       aflo_flops *f) {
    int r = l->rank;
    const float *B = l->B->data, *sb = l->sb->data;
    if (dB || dsb) {
        float *G = scratch.or2 + (size_t)l->out * r;
        gemm(f, FLOP_BACKWARD_WEIGHT, true, false, l->out, r, N, 1.0f, dY, l->out, h2, r, 0.0f, G,
             r);
        for (int c = 0; c < l->out; c++) {
            const float *gc = G + (size_t)c * r, *bc = B + (size_t)c * r;
            float acc = 0.0f;
            for (int j = 0; j < r; j++) acc += bc[j] * gc[j];
            if (dsb) dsb[c] += l->scale * acc;
            if (dB)
                for (int j = 0; j < r; j++) dB[(size_t)c * r + j] += l->scale * sb[c] * gc[j];
        }
    }
    if (!need_g) return;
    float *Bs = scratch.or2;
    old_scale_rows(Bs, B, sb, l->out, r);
    gemm(f, FLOP_BACKWARD_INPUT, false, false, N, r, l->out, l->scale, dY, l->out, Bs, r, 0.0f, g,
         r);
}

static void old_backward(const aflo_linear *l, float *dX, bool accumulate_dx, const float *dY,
                         const float *X, int N, aflo_linear_acts acts, aflo_linear_scratch scratch,
                         aflo_flops *f) {
    float *db = old_grad(l->b);
    if (db) bias_backward(db, dY, N, l->out);
    if (dX)
        gemm(f, FLOP_BACKWARD_INPUT, false, false, N, l->in, l->out, 1.0f, dY, l->out, l->W->data,
             l->in, accumulate_dx ? 1.0f : 0.0f, dX, l->in);
    int r = l->rank;
    float *dA = old_grad(l->A), *dB = old_grad(l->B);
    float *dsd = old_grad(l->sd), *dsb = old_grad(l->sb);
    float *h2 = scratch.r2, *g = scratch.r2 + (size_t)N * r;
    bool need_g = dsd || dA || dX;
    if (linear_folds_sb(l)) {
        scale_cols_forward(h2, acts.h1, l->sd->data, N, r);
        old_folded(l, dY, h2, N, dB, dsb, g, need_g, scratch, f);
        if (!need_g) return;
        goto below_B;
    }
    const float *g3 = dY;
    if (l->sb) {
        scale_cols_backward(scratch.out, dsb, dY, acts.h3, l->sb->data, N, l->out);
        g3 = scratch.out;
    }
    if (dB) {
        if (l->sd) scale_cols_forward(h2, acts.h1, l->sd->data, N, r);
        const float *h2in = l->sd ? h2 : acts.h1;
        gemm(f, FLOP_BACKWARD_WEIGHT, true, false, l->out, r, N, l->scale, g3, l->out, h2in, r,
             1.0f, dB, r);
    }
    if (!need_g) return;
    gemm(f, FLOP_BACKWARD_INPUT, false, false, N, r, l->out, l->scale, g3, l->out, l->B->data, r,
         0.0f, g, r);
below_B:
    if (l->sd) scale_cols_backward(g, dsd, g, acts.h1, l->sd->data, N, r);
    if (dA)
        gemm(f, FLOP_BACKWARD_WEIGHT, true, false, r, l->in, N, 1.0f, g, r, X, l->in, 1.0f, dA,
             l->in);
    if (dX)
        gemm(f, FLOP_BACKWARD_INPUT, false, false, N, l->in, r, 1.0f, g, r, l->A->data, l->in, 1.0f,
             dX, l->in);
}

/* ------------------------------------------------------------ harness */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static float *buf(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return p;
}

static void param(aflo_param *p, int rows, int cols, bool trainable) {
    memset(p, 0, sizeof *p);
    p->size = (size_t)rows * cols;
    p->ndim = 2;
    p->shape[0] = rows;
    p->shape[1] = cols;
    p->data = buf(p->size);
    p->grad = buf(p->size);
    p->trainable = trainable;
}

static void param_free(aflo_param *p) {
    free(p->data);
    free(p->grad);
}

typedef struct {
    const char *name;
    int rank;
    bool lora, ab_frozen;
} method;

static const method methods[] = {
    {"aflora r=4", 4, false, false},
    {"aflora r=4 A,B frozen", 4, false, true},
    {"lora r=8", 8, true, false},
    {"elora r=1024", 1024, false, true},
};

enum { V_BASE, V_OLD, V_NEW, V_NOMERGE, V_MERGE, V_COUNT };
static const char *const vnames[V_COUNT] = {"base", "old", "new", "nomerge", "merge"};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* X W^T as linear_forward calls it: best of 5, GFLOP/s. */
static double sgemm_rate(int N, int in, int out) {
    float *X = buf((size_t)N * in), *W = buf((size_t)out * in), *Y = buf((size_t)N * out);
    double best = 1e30;
    for (int i = 0; i < 5; i++) {
        double t0 = now_ms();
        gemm(NULL, FLOP_FORWARD, false, true, N, out, in, 1.0f, X, in, W, in, 0.0f, Y, out);
        double t = now_ms() - t0;
        if (t < best) best = t;
    }
    free(X);
    free(W);
    free(Y);
    return 2.0 * N * in * out / best / 1e6;
}

static const char *cpu_name(void) {
    static char name[128] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return name;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *p = strchr(line, ':');
        if (p) {
            snprintf(name, sizeof name, "%s", p + 2);
            name[strcspn(name, "\n")] = 0;
        }
        break;
    }
    fclose(f);
    return name;
}

static void run_shape(int N, int in, int out, int reps) {
    double rate = sgemm_rate(N, in, out);
    double base_flops = 4.0 * N * in * out;
    printf("\n%d x %d -> %d: X W^T at %.0f GFLOP/s in-process; base GEMMs fwd+dX %.2f GFLOP = "
           "%.2f ms at that rate\n",
           N, in, out, rate, base_flops / 1e9, base_flops / rate / 1e6);
    printf("%-24s", "method");
    for (int v = 0; v < V_COUNT; v++) printf(" %9s ms %5s", vnames[v], "share");
    printf("  adapter old/new\n");
    for (size_t m = 0; m < sizeof methods / sizeof *methods; m++) {
        const method *me = &methods[m];
        int r = me->rank;
        aflo_param W, b, A, B, sd, sb;
        param(&W, out, in, false);
        param(&b, out, 1, false);
        param(&A, r, in, !me->ab_frozen);
        param(&B, out, r, !me->ab_frozen);
        param(&sd, r, 1, true);
        param(&sb, out, 1, true);
        aflo_linear l = {.in = in,
                         .out = out,
                         .W = &W,
                         .b = &b,
                         .A = &A,
                         .B = &B,
                         .rank = r,
                         .scale = me->lora ? 2.0f : 1.0f};
        if (!me->lora) {
            l.sd = &sd;
            l.sb = &sb;
        }
        size_t mx = (size_t)(in > out ? in : out);
        float *X = buf((size_t)N * in), *Y = buf((size_t)N * out), *dY = buf((size_t)N * out);
        float *dX = buf((size_t)N * in), *h1 = buf((size_t)N * r);
        float *h3 = l.sb && !linear_folds_sb(&l) ? buf((size_t)N * out) : NULL;
        float *r2 = buf(2 * (size_t)N * r), *so = buf((size_t)N * mx), *or2 = buf(2 * mx * r);
        aflo_linear_acts acts = {.h1 = h1, .h3 = h3};
        aflo_linear_scratch sc = {.r2 = r2, .out = so, .or2 = or2};
        double t[V_COUNT][64];
        for (int rep = 0; rep <= reps; rep++)
            for (int v = 0; v < V_COUNT; v++) {
                double t0 = now_ms();
                if (v == V_BASE) {
                    aflo_linear plain = {.in = in, .out = out, .W = &W, .b = &b};
                    linear_forward(&plain, Y, X, N, acts, sc, NULL);
                    linear_backward(&plain, dX, false, dY, X, N, acts, sc, NULL);
                } else if (v == V_OLD) {
                    old_forward(&l, Y, X, N, acts, sc, NULL);
                    old_backward(&l, dX, false, dY, X, N, acts, sc, NULL);
                } else {
                    linear_set_merge_policy(v == V_NEW       ? LINEAR_MERGE_AUTO
                                            : v == V_NOMERGE ? LINEAR_MERGE_NEVER
                                                             : LINEAR_MERGE_ALWAYS);
                    linear_forward(&l, Y, X, N, acts, sc, NULL);
                    linear_backward(&l, dX, false, dY, X, N, acts, sc, NULL);
                }
                if (rep > 0) t[v][rep - 1] = now_ms() - t0; /* rep 0 warms up */
            }
        linear_set_merge_policy(LINEAR_MERGE_AUTO);
        printf("%-24s", me->name);
        double med[V_COUNT];
        for (int v = 0; v < V_COUNT; v++) {
            med[v] = median(t[v], reps);
            printf(" %12.2f %4.0f%%", med[v], 100.0 * base_flops / (med[v] * 1e6) / rate);
        }
        printf("  %7.1f / %.1f ms\n", med[V_OLD] - med[V_BASE], med[V_NEW] - med[V_BASE]);
        param_free(&W);
        param_free(&b);
        param_free(&A);
        param_free(&B);
        param_free(&sd);
        param_free(&sb);
        float *all[] = {X, Y, dY, dX, h1, h3, r2, so, or2};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    }
}

/* The r-dimension products alone, one thread: the BLAS call the old code
 * made against the skinny kernel (this CPU's level) that replaced it. */
static void run_products(int N, int in, int out, int r, int reps) {
    const skinny_kernels *const tables[ISA_COUNT] = {&skinny_kernels_base, &skinny_kernels_avx2,
                                                     &skinny_kernels_avx512};
    const skinny_kernels *k = tables[isa_level()];
    float *X = buf((size_t)N * in), *dY = buf((size_t)N * out), *Y = buf((size_t)N * out);
    float *dX = buf((size_t)N * in), *H = buf((size_t)N * r), *A = buf((size_t)r * in);
    float *Bs = buf((size_t)out * r), *BT = buf((size_t)out * r), *G = buf((size_t)out * r);
    float *dA = buf((size_t)r * in);
    const char *names[6] = {"h1 = X A^T", "Y += h2 Bs^T", "G = dY^T h2",
                            "g = dY Bs",  "dA += g^T X",  "dX += g A"};
    printf("%d x %d -> %d, r = %d, 1 thread: BLAS / skinny ms (median of %d)\n", N, in, out, r,
           reps);
    for (int p = 0; p < 6; p++) {
        double t[2][64];
        for (int rep = 0; rep <= reps; rep++)
            for (int v = 0; v < 2; v++) {
                double t0 = now_ms();
                switch (p * 2 + v) {
                case 0: gemm(NULL, 0, false, true, N, r, in, 1, X, in, A, in, 0, H, r); break;
                case 1: k->rows_dot(H, NULL, NULL, X, in, A, in, r, 0, N); break;
                case 2: gemm(NULL, 0, false, true, N, out, r, 1, H, r, Bs, r, 1, Y, out); break;
                case 3: k->rows_axpy(Y, out, Y, out, NULL, H, r, BT, out, r, 0, N); break;
                case 4: gemm(NULL, 0, true, false, out, r, N, 1, dY, out, H, r, 0, G, r); break;
                case 5: k->cols_gram(G, out, NULL, dY, out, H, r, r, N, 0, out); break;
                case 6: gemm(NULL, 0, false, false, N, r, out, 1, dY, out, Bs, r, 0, H, r); break;
                case 7: k->rows_dot(H, NULL, NULL, dY, out, BT, out, r, 0, N); break;
                case 8: gemm(NULL, 0, true, false, r, in, N, 1, H, r, X, in, 1, dA, in); break;
                case 9: k->cols_gram(dA, in, NULL, X, in, H, r, r, N, 0, in); break;
                case 10: gemm(NULL, 0, false, false, N, in, r, 1, H, r, A, in, 1, dX, in); break;
                default: k->rows_axpy(dX, in, dX, in, NULL, H, r, A, in, r, 0, N); break;
                }
                if (rep > 0) t[v][rep - 1] = now_ms() - t0;
            }
        double b = median(t[0], reps), s = median(t[1], reps);
        printf("  %-14s %7.3f / %7.3f  %5.1fx\n", names[p], b, s, b / s);
    }
    float *all[] = {X, dY, Y, dX, H, A, Bs, BT, G, dA};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

int main(int argc, char **argv) {
    int threads = 2, reps = 7;
    bool products_only = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--products"))
            products_only = true;
        else {
            fprintf(stderr, "usage: %s [--threads n] [--reps n] [--products]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1 || reps > 64) reps = 7;
    engine_set_blas_threads(threads);
    engine_set_threads(threads);
    const char *core = getenv("OPENBLAS_CORETYPE");
    printf("CPU %s, %d threads, OPENBLAS_CORETYPE=%s, kernels %s\n%s\n", cpu_name(), threads,
           core ? core : "(unset)", isa_name(isa_level()), engine_blas_info());
    printf("median of %d, fwd+bwd with dX; share = base GEMM FLOPs / time / in-process rate\n",
           reps);
    engine_set_blas_threads(1);
    for (int r = 4; r <= 8; r += 4) {
        run_products(1024, 768, 3072, r, reps);
        run_products(1024, 3072, 768, r, reps);
    }
    engine_set_blas_threads(threads);
    if (products_only) return 0;
    run_shape(1024, 768, 768, reps);
    run_shape(1024, 768, 3072, reps);
    run_shape(1024, 3072, 768, reps);
    return 0;
}
