/* gemm.c — cblas_sgemm with FLOP counting, the engine's thread settings,
 * and a start-up self-check of the BLAS kernels against a double reference. */
#include "model/gemm.h"

#include <assert.h>
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/errmsg.h"

const char *const flop_kind_names[FLOP_KINDS] = {"forward", "backward_input", "backward_weight"};

void gemm(aflo_flops *flops, aflo_flop_kind kind, bool trans_a, bool trans_b, int M, int N, int K,
          float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C,
          int ldc) {
    /* A caller's shapes that disagree with its strides read or write past a
     * matrix: a bug, stopped here rather than left to corrupt the model. */
    assert(M >= 0 && N >= 0 && K >= 0 && (unsigned)kind < FLOP_KINDS);
    assert(lda >= (trans_a ? M : K) && lda >= 1);
    assert(ldb >= (trans_b ? K : N) && ldb >= 1);
    assert(ldc >= N && ldc >= 1);
    if (M <= 0 || N <= 0) return;
    if (flops) flops->by_kind[kind] += 2ULL * (uint64_t)M * (uint64_t)N * (uint64_t)K;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* One trainer runs on one thread, so the kernels' thread count lives with
 * the calling thread: two jobs on two worker threads each keep their own
 * (a process-wide value would let one job's `threads` overwrite the other's
 * between two kernels). */
static _Thread_local int engine_nthreads = 1;

static int threads_or_cores(int n) {
    if (n > 0) return n;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? (int)cores : 1;
}

void engine_set_threads(int n) {
    engine_nthreads = threads_or_cores(n);
#ifdef _OPENMP
    /* also the calling thread's own default for regions without num_threads
     * (OpenMP keeps it per thread) */
    omp_set_num_threads(engine_nthreads);
#endif
}

int engine_threads(void) { return engine_nthreads; }

int engine_team_size(int units, int scratch_threads) {
    int n = engine_threads();
    if (n > scratch_threads) n = scratch_threads;
    if (n > units) n = units;
    return n > 0 ? n : 1;
}

int engine_thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

void engine_set_blas_threads(int n) { openblas_set_num_threads(threads_or_cores(n)); }

int engine_blas_threads(void) { return openblas_get_num_threads(); }

const char *engine_blas_info(void) {
    static char info[256];
    static const char *const parallel[] = {"sequential", "pthreads", "OpenMP"};
    int par = openblas_get_parallel();
    snprintf(info, sizeof info, "%s (%s)", openblas_get_config(),
             par >= 0 && par <= 2 ? parallel[par] : "unknown threading");
    return info;
}

const char *engine_blas_version(void) {
    /* openblas_get_config(): "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." */
    static char version[32];
    const char *config = openblas_get_config();
    if (sscanf(config, "OpenBLAS %31s", version) != 1) snprintf(version, sizeof version, "?");
    return version;
}

const char *engine_blas_core(void) { return openblas_get_corename(); }

/* ------------------------------------------------------------ self-check */

/* Shapes that between them take the kernel paths the engine uses: whole and
 * edge tiles, each transposition, the rank-4 products of AFLoRA adapters
 * (a dimension of 4 on each side), padded leading dimensions, alpha != 1,
 * beta 0 / 1 / other, and one product large enough for OpenBLAS's threads
 * (above its 4 * 65536 multiply-add threshold). About 23 M multiply-adds of
 * double reference: ~10-50 ms. */
typedef struct {
    int M, N, K;
    bool trans_a, trans_b;
    int pad; /* extra elements per row in A, B and C */
    float alpha, beta;
} check_shape;

static const check_shape check_shapes[] = {
    {64, 64, 64, false, false, 0, 1.0f, 0.0f},  {127, 93, 211, false, true, 0, 1.0f, 0.5f},
    {97, 131, 75, true, false, 3, -0.7f, 1.0f}, {33, 517, 129, true, true, 5, 0.7f, -1.0f},
    {256, 4, 768, false, true, 0, 1.0f, 0.0f},  {4, 768, 256, true, false, 1, 1.0f, 1.0f},
    {256, 768, 4, false, false, 0, 2.0f, 1.0f}, {200, 300, 256, false, false, 2, 1.0f, 0.0f},
};

/* Padding after each row of C is filled with this and must survive. */
#define CHECK_SENTINEL 12345.0f

static float check_value(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*state >> 40) / 8388608.0 - 1.0); /* [-1, 1) */
}

static int check_one(const check_shape *s, float *A, float *B, float *C, float *C0, char *err,
                     size_t errlen) {
    int lda = (s->trans_a ? s->M : s->K) + s->pad, a_rows = s->trans_a ? s->K : s->M;
    int ldb = (s->trans_b ? s->K : s->N) + s->pad, b_rows = s->trans_b ? s->N : s->K;
    int ldc = s->N + s->pad;
    uint64_t state = (uint64_t)s->M * 1000003u + (uint64_t)s->N * 1009u + (uint64_t)s->K;
    for (size_t i = 0; i < (size_t)a_rows * lda; i++) A[i] = check_value(&state);
    for (size_t i = 0; i < (size_t)b_rows * ldb; i++) B[i] = check_value(&state);
    for (int i = 0; i < s->M; i++)
        for (int j = 0; j < ldc; j++) {
            size_t at = (size_t)i * ldc + j;
            /* beta = 0 must not read C: the engine writes into arenas
             * whose old contents may be anything, NaN included. */
            C0[at] = j >= s->N ? CHECK_SENTINEL : s->beta == 0.0f ? NAN : check_value(&state);
            C[at] = C0[at];
        }
    gemm(NULL, FLOP_FORWARD, s->trans_a, s->trans_b, s->M, s->N, s->K, s->alpha, A, lda, B, ldb,
         s->beta, C, ldc);
    for (int i = 0; i < s->M; i++) {
        for (int j = 0; j < ldc; j++) {
            size_t at = (size_t)i * ldc + j;
            if (j >= s->N) {
                if (C[at] != CHECK_SENTINEL)
                    return set_err(err, errlen,
                                   "sgemm %dx%dx%d wrote past its %d columns (row %d, col %d)",
                                   s->M, s->N, s->K, s->N, i, j);
                continue;
            }
            double ref = 0.0, mag = 0.0;
            for (int k = 0; k < s->K; k++) {
                double a = s->trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = s->trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                ref += a * b;
                mag += fabs(a * b);
            }
            ref *= s->alpha;
            mag *= fabs(s->alpha);
            if (s->beta != 0.0f) {
                ref += (double)s->beta * C0[at];
                mag += fabs((double)s->beta * C0[at]);
            }
            /* float accumulation over K terms: |error| <= ~K * eps * sum|terms|;
             * a wrong kernel is off by the size of the terms themselves. */
            double tol = 2.0 * (s->K + 2) * FLT_EPSILON * mag + 1e-30;
            if (!(fabs(C[at] - ref) <= tol))
                return set_err(err, errlen,
                               "sgemm %dx%dx%d (%s%s, alpha %g, beta %g) C[%d][%d] = %.9g, "
                               "reference %.9g",
                               s->M, s->N, s->K, s->trans_a ? "A^T" : "A", s->trans_b ? "B^T" : "B",
                               (double)s->alpha, (double)s->beta, i, j, (double)C[at], ref);
        }
    }
    return 0;
}

int engine_blas_self_check(char *err, size_t errlen) {
    size_t most_a = 0, most_b = 0, most_c = 0;
    for (size_t i = 0; i < sizeof check_shapes / sizeof *check_shapes; i++) {
        const check_shape *s = &check_shapes[i];
        size_t a = (size_t)(s->trans_a ? s->K : s->M) * ((s->trans_a ? s->M : s->K) + s->pad);
        size_t b = (size_t)(s->trans_b ? s->N : s->K) * ((s->trans_b ? s->K : s->N) + s->pad);
        size_t c = (size_t)s->M * (s->N + s->pad);
        most_a = a > most_a ? a : most_a;
        most_b = b > most_b ? b : most_b;
        most_c = c > most_c ? c : most_c;
    }
    float *A = malloc(most_a * sizeof *A), *B = malloc(most_b * sizeof *B);
    float *C = malloc(most_c * sizeof *C), *C0 = malloc(most_c * sizeof *C0);
    int rc = 0;
    if (!A || !B || !C || !C0) rc = set_err(err, errlen, "sgemm self-check: out of memory");
    /* One thread: the check is of the core's kernels, not of the thread
     * split; it stays quick and does not wake OpenBLAS's pool before the
     * daemon has chosen its thread count. */
    int had = openblas_get_num_threads();
    openblas_set_num_threads(1);
    for (size_t i = 0; rc == 0 && i < sizeof check_shapes / sizeof *check_shapes; i++)
        rc = check_one(&check_shapes[i], A, B, C, C0, err, errlen);
    openblas_set_num_threads(had);
    free(A);
    free(B);
    free(C);
    free(C0);
    return rc;
}
