/* gemm.h — the one door to matrix multiplication, with FLOP accounting.
 *
 * Every matmul of the engine goes through gemm(): it calls cblas_sgemm
 * (row-major) and adds 2*M*N*K to the counter of the given kind, so the
 * FLOPs reported are exactly the FLOPs executed (aflora.md §7). */
#ifndef AFLO_GEMM_H
#define AFLO_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    FLOP_FORWARD = 0,
    FLOP_BACKWARD_INPUT,  /* gradients with respect to activations */
    FLOP_BACKWARD_WEIGHT, /* gradients with respect to parameters  */
    FLOP_KINDS
} aflo_flop_kind;

extern const char *const flop_kind_names[FLOP_KINDS];

typedef struct {
    uint64_t by_kind[FLOP_KINDS];
} aflo_flops;

/* C[M x N] = alpha * op(A)[M x K] * op(B)[K x N] + beta * C, row-major.
 * trans_a / trans_b select op(X) = X^T; lda/ldb/ldc are row strides of the
 * matrices as stored. flops may be NULL. */
void gemm(aflo_flops *flops, aflo_flop_kind kind, bool trans_a, bool trans_b, int M, int N, int K,
          float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C,
          int ldc);

static inline uint64_t flops_total(const aflo_flops *f) {
    uint64_t t = 0;
    for (int k = 0; k < FLOP_KINDS; k++) t += f->by_kind[k];
    return t;
}

/* Threads of the engine's own (OpenMP) kernels for the CALLING thread: a
 * trainer runs on one thread, so each job sets its own and concurrent jobs
 * do not see each other's. n <= 0 means all online cores. */
void engine_set_threads(int n);
int engine_threads(void);
/* A parallel region over `units` independent pieces, each thread with its
 * own slice of a scratch sized for scratch_threads: the team size (at least
 * 1, at most engine_threads()), and inside the region the slice index. */
int engine_team_size(int units, int scratch_threads);
int engine_thread_id(void);
/* OpenBLAS's thread count, process-wide (0.3.21 has no per-thread setting):
 * set it once, before trainers run concurrently — one caller with every
 * BLAS thread, or one BLAS thread per concurrent caller (platform-facts.md:
 * concurrent multi-threaded calls are serialised). n <= 0: all cores. */
void engine_set_blas_threads(int n);
int engine_blas_threads(void);
/* The BLAS library in use, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... (pthreads)",
 * for start-up logs: OpenBLAS's threading flavour changes how concurrent
 * jobs share the cores. */
const char *engine_blas_info(void);

/* The loaded OpenBLAS's version ("0.3.21") and the kernel set it runs
 * ("SkylakeX", "Haswell", ...: openblas_get_corename), for start-up logs. */
const char *engine_blas_version(void);
const char *engine_blas_core(void);

/* Checks cblas_sgemm once against a double-precision reference on a handful
 * of shapes that take different kernel paths: square, odd sizes that leave
 * edge tiles, transposed operands, the skinny rank-4 products of adapters,
 * padded leading dimensions, alpha != 1 and beta != 0 (~10-50 ms). A kernel
 * set that miscomputes on this CPU (OPENBLAS_CORETYPE forces kernels the
 * library cannot check itself) is caught before any training. Returns 0, or
 * -1 with the first mismatch (shape, element, values) in err. */
int engine_blas_self_check(char *err, size_t errlen);

#endif
