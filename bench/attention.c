/* bench/attention.c — BERT-base self-attention, the fused kernel
 * (engine/model/attention.h) against a copy of the code it replaced
 * (per-(batch, head) BLAS GEMMs with the T x T probabilities stored), side
 * by side in one process, forward and backward timed apart.
 *
 * Shape: batch 8, 12 heads, T 128, head dim 64, q/k/v as bert.c lays them
 * (N x 768 each), full key mask, dropout off as bench/step.c (--dropout p
 * turns it on for both). For 1 and 2 threads (engine and OpenBLAS), the old
 * code once and the new kernel at every ISA level the CPU runs, repetitions
 * alternated; best and median of --reps, ratios (old / new, > 1 = new
 * faster) of the best, the steadiest figure on a shared machine. Share of
 * sgemm = the attention FLOPs the
 * engine counts (2 products forward, 4 backward, 2*T*T*d each per head) /
 * time / the rate of cblas_sgemm on BERT-base's largest projection
 * (1024 x 3072 x 768, best of 5) measured here at the same thread count.
 *
 *   build/bench/attention [--reps 9] [--threads 1,2] [--dropout 0.1] [--level avx2] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/isa.h"
#include "model/attention.h"
#include "model/gemm.h"
#include "model/ops.h"

enum { BATCH = 8, HEADS = 12, SEQ = 128, HD = 64, HID = HEADS * HD };

/* ------------------------------------------- the code before (reference) */

typedef struct {
    float *probs, *ss, *ss2; /* B*nh*S*S stored probabilities; two S*S scratches */
} old_bufs;

static void old_forward(old_bufs *ob, float *ctx, const float *q, const float *k, const float *v,
                        const uint8_t *mask, float p, uint64_t seed, uint64_t stream0) {
    const int S = SEQ, H = HID, hd = HD;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < BATCH; b++) {
        for (int h = 0; h < HEADS; h++) {
            size_t tok = (size_t)b * S * H + (size_t)h * hd;
            float *P = ob->probs + ((size_t)b * HEADS + h) * S * S;
            gemm(NULL, FLOP_FORWARD, false, true, S, S, hd, scale, q + tok, H, k + tok, H, 0.0f, P,
                 S);
            softmax_forward(P, P, mask + (size_t)b * S, S, S);
            const float *Pd = P;
            if (p > 0.0f) {
                dropout_forward(ob->ss, P, (size_t)S * S, p, seed, stream0 + b * HEADS + h);
                Pd = ob->ss;
            }
            gemm(NULL, FLOP_FORWARD, false, false, S, hd, S, 1.0f, Pd, S, v + tok, H, 0.0f,
                 ctx + tok, H);
        }
    }
}

static void old_backward(old_bufs *ob, float *dq, float *dk, float *dv, const float *dctx,
                         const float *q, const float *k, const float *v, float p, uint64_t seed,
                         uint64_t stream0) {
    const int S = SEQ, H = HID, hd = HD;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < BATCH; b++) {
        for (int h = 0; h < HEADS; h++) {
            size_t tok = (size_t)b * S * H + (size_t)h * hd;
            const float *P = ob->probs + ((size_t)b * HEADS + h) * S * S;
            uint64_t stream = stream0 + b * HEADS + h;
            const float *Pd = P;
            if (p > 0.0f) {
                dropout_forward(ob->ss, P, (size_t)S * S, p, seed, stream);
                Pd = ob->ss;
            }
            float *dP = ob->ss2;
            gemm(NULL, FLOP_BACKWARD_INPUT, false, true, S, S, hd, 1.0f, dctx + tok, H, v + tok, H,
                 0.0f, dP, S);
            gemm(NULL, FLOP_BACKWARD_INPUT, true, false, S, hd, S, 1.0f, Pd, S, dctx + tok, H, 0.0f,
                 dv + tok, H);
            if (p > 0.0f) dropout_backward(dP, dP, (size_t)S * S, p, seed, stream);
            softmax_backward(dP, P, dP, S, S);
            gemm(NULL, FLOP_BACKWARD_INPUT, false, false, S, hd, S, scale, dP, S, k + tok, H, 0.0f,
                 dq + tok, H);
            gemm(NULL, FLOP_BACKWARD_INPUT, true, false, S, hd, S, scale, dP, S, q + tok, H, 0.0f,
                 dk + tok, H);
        }
    }
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

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v; *best = the minimum, returns the median. */
static double stats(double *v, int n, double *best) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    *best = v[0];
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double sgemm_rate(void) {
    const int N = BATCH * SEQ, in = 3072, out = HID;
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

static void select_level(int level) {
    char err[128];
    if (isa_select((aflo_isa)level, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
}

#define MAXREPS 64

static int only_level = -1; /* --level: one ISA level only */

static int level_wanted(int l) { return only_level < 0 || only_level == l; }

static void run(int threads, int reps, float p) {
    const size_t N = (size_t)BATCH * SEQ, NH = N * HID;
    const uint64_t seed = 42, stream0 = (uint64_t)3 << 20;
    engine_set_threads(threads);
    engine_set_blas_threads(threads);
    double rate = sgemm_rate();
    float *q = buf(NH), *k = buf(NH), *v = buf(NH), *ctx = buf(NH), *dctx = buf(NH);
    float *dq = buf(NH), *dk = buf(NH), *dv = buf(NH);
    float *lse = buf((size_t)BATCH * HEADS * SEQ);
    uint8_t *mask = malloc(N);
    if (!mask) exit(1);
    memset(mask, 1, N);
    old_bufs ob = {buf((size_t)BATCH * HEADS * SEQ * SEQ), buf((size_t)SEQ * SEQ),
                   buf((size_t)SEQ * SEQ)};
    attention_opts o = {.batch = BATCH,
                        .heads = HEADS,
                        .kv_heads = HEADS,
                        .seq = SEQ,
                        .head_dim = HD,
                        .scale = 1.0f / sqrtf((float)HD),
                        .key_mask = mask,
                        .dropout = p,
                        .dropout_seed = seed,
                        .dropout_stream = stream0};
    float *scratch = buf(attention_scratch_floats(&o) * (size_t)threads);
    attention_rows Q = {q, HID}, K = {k, HID}, V = {v, HID}, C = {ctx, HID}, dC = {dctx, HID};
    attention_rows dQ = {dq, HID}, dK = {dk, HID}, dV = {dv, HID};
    /* variant 0: old; 1 + level: new at that level */
    double tf[1 + ISA_COUNT][MAXREPS], tb[1 + ISA_COUNT][MAXREPS];
    aflo_isa before = isa_level();
    for (int rep = 0; rep <= reps; rep++)
        for (int var = 0; var <= ISA_COUNT; var++) {
            if (var > 0 && (!isa_supported((aflo_isa)(var - 1)) || !level_wanted(var - 1)))
                continue;
            double t0 = now_ms(), t1;
            if (var == 0) {
                old_forward(&ob, ctx, q, k, v, mask, p, seed, stream0);
                t1 = now_ms();
                old_backward(&ob, dq, dk, dv, dctx, q, k, v, p, seed, stream0);
            } else {
                select_level(var - 1);
                t0 = now_ms();
                attention_forward(&o, C, lse, Q, K, V, scratch, threads, NULL);
                t1 = now_ms();
                attention_backward(&o, dQ, dK, dV, dC, C, lse, Q, K, V, scratch, threads, NULL);
            }
            double t2 = now_ms();
            if (rep > 0) { /* rep 0 warms up */
                tf[var][rep - 1] = t1 - t0;
                tb[var][rep - 1] = t2 - t1;
            }
        }
    select_level(before);
    double unit = 2.0 * SEQ * SEQ * HD * HEADS * BATCH; /* one product, FLOPs */
    double of, obk, ofm = stats(tf[0], reps, &of), obm = stats(tb[0], reps, &obk);
    printf("\n%d thread%s: sgemm %.0f GFLOP/s in-process (1024x3072x768); ms best (median)\n",
           threads, threads > 1 ? "s" : "", rate);
    printf("  %-18s %17s %6s %17s %6s %7s %7s\n", "variant", "fwd ms", "share", "bwd ms", "share",
           "fwd x", "bwd x");
    printf("  %-18s %7.2f (%7.2f) %5.0f%% %7.2f (%7.2f) %5.0f%% %7s %7s\n", "old per-head BLAS", of,
           ofm, 100.0 * 2 * unit / (of * 1e6) / rate, obk, obm,
           100.0 * 4 * unit / (obk * 1e6) / rate, "1.00", "1.00");
    for (int l = 0; l < ISA_COUNT; l++) {
        if (!isa_supported((aflo_isa)l) || !level_wanted(l)) continue;
        double f, bk, fm = stats(tf[1 + l], reps, &f), bm = stats(tb[1 + l], reps, &bk);
        char name[32];
        snprintf(name, sizeof name, "fused %s", isa_name((aflo_isa)l));
        printf("  %-18s %7.2f (%7.2f) %5.0f%% %7.2f (%7.2f) %5.0f%% %6.2fx %6.2fx\n", name, f, fm,
               100.0 * 2 * unit / (f * 1e6) / rate, bk, bm, 100.0 * 4 * unit / (bk * 1e6) / rate,
               of / f, obk / bk);
    }
    float *all[] = {q, k, v, ctx, dctx, dq, dk, dv, lse, ob.probs, ob.ss, ob.ss2, scratch};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    free(mask);
}

int main(int argc, char **argv) {
    int reps = 9;
    float p = 0.0f;
    const char *threads = "1,2";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = argv[++i];
        else if (!strcmp(argv[i], "--dropout") && i + 1 < argc)
            p = (float)atof(argv[++i]);
        else if (!strcmp(argv[i], "--level") && i + 1 < argc) {
            aflo_isa l;
            if (isa_parse(argv[++i], &l) != 0 || !isa_supported(l)) {
                fprintf(stderr, "level %s unknown or not supported here\n", argv[i]);
                return 2;
            }
            only_level = (int)l;
        } else {
            fprintf(stderr, "usage: %s [--reps n] [--threads 1,2] [--dropout p] [--level avx2]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1 || reps > MAXREPS) reps = 9;
    const char *core = getenv("OPENBLAS_CORETYPE");
    printf("CPU %s, OPENBLAS_CORETYPE=%s\n%s\n", cpu_name(), core ? core : "(unset)",
           engine_blas_info());
    printf("attention %d x %d heads x T %d x d %d, dropout %.2f; %d reps; share = counted "
           "FLOPs / best time / sgemm rate; ratios old / new of the best\n",
           BATCH, HEADS, SEQ, HD, p, reps);
    for (const char *t = threads; *t;) {
        int n = atoi(t);
        if (n >= 1) run(n, reps, p);
        t = strchr(t, ',');
        if (!t) break;
        t++;
    }
    return 0;
}
