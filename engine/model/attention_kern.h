/* attention_kern.h — the per-(batch, kv head) attention kernels that
 * attention_kern.c builds once per ISA level (base/isa.h); private to
 * attention.c, which splits the units among threads and dispatches.
 *
 * Scratch of one unit (attention_unit_floats): K transposed and padded,
 * V (and K) row-padded copies, dK/dV accumulators, and the buffers of one
 * block of ATTN_BLOCK_Q query rows. Rows and columns are padded to
 * ATTN_PAD so every level's register tile divides them; pads are zero. */
#ifndef AFLO_ATTENTION_KERN_H
#define AFLO_ATTENTION_KERN_H

#include <stddef.h>
#include <stdint.h>

#include "base/isa.h"
#include "model/attention.h"

/* Query rows per block: 64 rows of scores at T = 128 are 32 KiB, and the
 * dK/dV accumulators are loaded and stored once per 64 rows of work. */
#define ATTN_BLOCK_Q 128
/* Padding of sequence and head dimension: a multiple of every level's tile
 * width (32 floats at AVX-512). */
#define ATTN_PAD 32
/* Spare rows of a query block's buffers: rows are padded up to a multiple
 * of the level's register tile (at most 8). */
#define ATTN_ROW_SLACK 8

static inline int attn_roundup(int x, int m) { return (x + m - 1) / m * m; }

typedef struct {
    attention_opts o;
    int Tp, dp, group; /* padded seq and head dim; query heads per kv head */
    /* dropout as an integer test: kept when (hash >> 40) >= thr */
    int drop_on;
    int64_t drop_thr;
    float drop_scale;
    /* forward: out, lse; backward: also dq, dk, dv, dout */
    attention_rows q, k, v, out, dq, dk, dv, dout;
    float *lse;
} attention_job;

/* Offsets (floats) of a unit's scratch buffers, all 64-byte multiples. */
typedef struct {
    size_t kt, vt, kp, vp, dk, dv, qs, dob, s, ds, ob, bias, rowf, total;
} attention_scratch_map;

static inline attention_scratch_map attention_scratch_layout(int Tp, int dp, int d) {
    attention_scratch_map m;
    size_t off = 0;
#define ATTN_TAKE(f, n)                          \
    do {                                         \
        m.f = off;                               \
        off += ((size_t)(n) + 15) & ~(size_t)15; \
    } while (0)
    ATTN_TAKE(kt, (size_t)d * Tp);                                /* K^T: d x Tp */
    ATTN_TAKE(vt, (size_t)d * Tp);                                /* V^T (backward) */
    ATTN_TAKE(kp, (size_t)Tp * dp);                               /* K, padded (backward) */
    ATTN_TAKE(vp, (size_t)Tp * dp);                               /* V, padded (forward) */
    ATTN_TAKE(dk, (size_t)(dp + ATTN_ROW_SLACK) * Tp);            /* dK^T accumulator */
    ATTN_TAKE(dv, (size_t)(dp + ATTN_ROW_SLACK) * Tp);            /* dV^T accumulator */
    ATTN_TAKE(qs, (size_t)(ATTN_BLOCK_Q + ATTN_ROW_SLACK) * dp);  /* scale * Q block */
    ATTN_TAKE(dob, (size_t)(ATTN_BLOCK_Q + ATTN_ROW_SLACK) * dp); /* dO block */
    ATTN_TAKE(s, (size_t)(ATTN_BLOCK_Q + ATTN_ROW_SLACK) * Tp);   /* scores, then P */
    ATTN_TAKE(ds, (size_t)(ATTN_BLOCK_Q + ATTN_ROW_SLACK) * Tp);  /* dP, then dS */
    ATTN_TAKE(ob, (size_t)(ATTN_BLOCK_Q + ATTN_ROW_SLACK) * dp);  /* O / dQ block */
    ATTN_TAKE(bias, Tp);                                          /* 0 or -inf per key */
    ATTN_TAKE(rowf, 2 * ATTN_BLOCK_Q);                            /* lse and D of the block */
#undef ATTN_TAKE
    m.total = off;
    return m;
}

typedef struct {
    void (*forward_unit)(const attention_job *j, int b, int kvh, float *scratch);
    void (*backward_unit)(const attention_job *j, int b, int kvh, float *scratch);
} attention_kernels;

extern const attention_kernels attention_kernels_base, attention_kernels_avx2,
    attention_kernels_avx512;

#endif
