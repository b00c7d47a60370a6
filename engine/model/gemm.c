/* gemm.c — cblas_sgemm with FLOP counting, and the engine's thread settings. */
#include "model/gemm.h"

#include <assert.h>
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

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

const char *engine_blas_better_core(void) {
    static const char *const weak[] = {"Prescott", "Core2",       "Penryn", "Dunnington",
                                       "Nehalem",  "Sandybridge", "Atom"};
    const char *core = openblas_get_corename();
    bool is_weak = false;
    for (size_t i = 0; i < sizeof weak / sizeof *weak; i++)
        if (core && strcasecmp(core, weak[i]) == 0) is_weak = true;
    if (!is_weak) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}
