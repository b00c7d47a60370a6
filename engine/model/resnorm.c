/* resnorm.c — fused residual / dropout / LayerNorm passes (resnorm.h):
 * splits rows among the engine's threads and runs the row kernels of
 * resnorm_kern.c at the engine's ISA level.
 *
 * Work is cut into fixed blocks of RESNORM_BLOCK rows. The backward's
 * parameter gradients are summed per block into scratch (each block by one
 * thread, rows in order), then the blocks are added to dgamma/dbeta in block
 * order: one pass over dout and res, no atomics, and the same bits for any
 * thread count. */
#include "model/resnorm.h"

#include "base/rng.h"
#include "model/gemm.h"
#include "model/resnorm_kern.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

/* Rows per block: 32 rows of BERT-base are 96 KiB of a tensor, enough to
 * amortise a block's partial sums (2*C floats) and still share 1024 rows
 * evenly among threads. */
#define RESNORM_BLOCK 32
/* Below this many elements a call runs on the calling thread (as ops.c). */
#define RESNORM_PARALLEL_MIN_ELEMS 32768

static const resnorm_kernels *const variants[ISA_COUNT] = {
    &resnorm_kernels_base, &resnorm_kernels_avx2, &resnorm_kernels_avx512};

static int blocks_of(int N) { return (N + RESNORM_BLOCK - 1) / RESNORM_BLOCK; }

static inline int parallel(int N, int C) { /* inline: unused without OpenMP */
    return (size_t)N * (size_t)C >= (size_t)RESNORM_PARALLEL_MIN_ELEMS;
}

static resnorm_drop drop_of(float p, uint64_t seed, uint64_t stream) {
    resnorm_drop d = {0};
    if (!(p > 0.0f)) return d;
    d.on = 1;
    d.thr = rng_drop_threshold(p);
    d.scale = rng_drop_scale(p);
    d.seed = seed;
    d.base = stream << 32;
    return d;
}

void resnorm_forward(float *out, float *res, float *mean, float *rstd, const float *x,
                     const float *y, const float *gamma, const float *beta, int N, int C, float eps,
                     float p, uint64_t seed, uint64_t stream) {
    const resnorm_kernels *k = variants[isa_level()];
    const resnorm_drop d = drop_of(p, seed, stream);
    const int nb = blocks_of(N);
#pragma omp parallel for schedule(static) num_threads(engine_threads()) if (parallel(N, C))
    for (int b = 0; b < nb; b++) {
        int n0 = b * RESNORM_BLOCK, n1 = n0 + RESNORM_BLOCK < N ? n0 + RESNORM_BLOCK : N;
        k->res_ln_fwd(out, res, mean, rstd, x, y, gamma, beta, n0, n1, C, eps, &d);
    }
}

size_t resnorm_scratch_floats(int N, int C) { return (size_t)blocks_of(N) * 2 * (size_t)C; }

void resnorm_backward(float *dres, float *dy, float *dgamma, float *dbeta, float *scratch,
                      const float *dout, const float *res, const float *mean, const float *rstd,
                      const float *gamma, int N, int C, float p, uint64_t seed, uint64_t stream) {
    const resnorm_kernels *k = variants[isa_level()];
    const resnorm_drop d = drop_of(p, seed, stream);
    const int nb = blocks_of(N);
    const bool params = dgamma || dbeta;
#pragma omp parallel for schedule(static) num_threads(engine_threads()) if (parallel(N, C))
    for (int b = 0; b < nb; b++) {
        int n0 = b * RESNORM_BLOCK, n1 = n0 + RESNORM_BLOCK < N ? n0 + RESNORM_BLOCK : N;
        float *dg = NULL, *db = NULL;
        if (params) {
            float *part = scratch + (size_t)b * 2 * C;
            memset(part, 0, 2 * (size_t)C * sizeof *part);
            dg = dgamma ? part : NULL;
            db = dbeta ? part + C : NULL;
        }
        k->ln_bwd(dres, dy, dg, db, dout, res, mean, rstd, gamma, n0, n1, C, &d);
    }
    if (!params) return;
    for (int b = 0; b < nb; b++) {
        const float *part = scratch + (size_t)b * 2 * C;
        if (dgamma) {
#pragma omp simd
            for (int c = 0; c < C; c++) dgamma[c] += part[c];
        }
        if (dbeta) {
#pragma omp simd
            for (int c = 0; c < C; c++) dbeta[c] += part[C + c];
        }
    }
}

void embnorm_forward(float *out, float *sum, float *mean, float *rstd, const float *word,
                     const int32_t *ids, const float *pos, const int32_t *pos_ids,
                     const float *type, const int32_t *type_ids, const float *gamma,
                     const float *beta, int N, int C, float eps, float p, uint64_t seed,
                     uint64_t stream) {
    const resnorm_kernels *k = variants[isa_level()];
    const resnorm_drop d = drop_of(p, seed, stream);
    const int nb = blocks_of(N);
#pragma omp parallel for schedule(static) num_threads(engine_threads()) if (parallel(N, C))
    for (int b = 0; b < nb; b++) {
        int n0 = b * RESNORM_BLOCK, n1 = n0 + RESNORM_BLOCK < N ? n0 + RESNORM_BLOCK : N;
        k->emb_ln_fwd(out, sum, mean, rstd, word, ids, pos, pos_ids, type, type_ids, gamma, beta,
                      n0, n1, C, eps, &d);
    }
}
