/* freeze.c — AFLoRA freezing score, cubic schedule and freezing decision
 * (aflora.md §3-4).
 *
 * State per trainable matrix is one allocation holding three float arrays of
 * the matrix size: Ibar | Ubar | Iwin (window sum of |grad|). The window
 * count is shared because every trainable matrix sees every step. Freezing a
 * matrix frees its block at once.
 *
 * The decision needs the k-th smallest of all N element scores. It is found
 * by a quickselect with a three-way partition (early in training many scores
 * are equal, often zero, and a two-way partition degrades to O(N^2) on equal
 * keys) and pivots taken at hashed positions, so the expected cost is O(N)
 * whatever the order of the scores, and the result is deterministic. The
 * scratch copy it permutes lives in the freezer and shrinks as matrices
 * freeze.
 *
 * The score update's element loops are optim_kern.c's vector kernels (same
 * bits at every ISA level). They take |x| of what they are given: the
 * gradient itself for the grad sensitivity; for weight_grad the products
 * P * grad, formed a block at a time in a stack buffer (elementwise, so the
 * blocking changes no bit and nothing is allocated per step).
 *
 * EMAs are stored in float and computed in double; the matrix mean s(P) is
 * always computed by the same function in the same order, so the value that
 * freezer_matrix_score reports is bit-for-bit the one the decision used. */
#include "train/freeze.h"

#include "base/errmsg.h"
#include "base/rng.h"
#include "model/gemm.h"
#include "train/optim_kern.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Elements per work unit of the parallel score update (64K floats). */
#define SCORE_CHUNK ((size_t)1 << 16)
/* Elements per stack block of P * grad products (4 KB). */
#define SENS_BLOCK 1024
/* Score arrays per matrix: Ibar, Ubar, Iwin. */
#define SCORE_ARRAYS 3
/* Checkpoint blob identification: "AFFZ" little-endian, format version 1. */
#define FREEZER_BLOB_MAGIC 0x5A464641u
#define FREEZER_BLOB_VERSION 1u
/* Fixed part of the blob: magic, version, n, sensitivity (4 x u32); config
 * (2 x f64 + 4 x i64); window count (i64); trailing checksum (u64). */
#define BLOB_HEADER_BYTES (4 * 4)
#define BLOB_CONFIG_BYTES (6 * 8)
#define BLOB_WINDOW_BYTES 8
#define BLOB_MATRIX_BYTES (8 + 8 + 8) /* size u64, frozen step i64, frozen score f64 */
#define BLOB_CHECKSUM_BYTES 8
/* FNV-1a 64-bit parameters. */
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL
/* Key of the pivot-position hash: any fixed value keeps selection deterministic. */
#define SELECT_PIVOT_KEY 0x61667265657a65ULL

/* frozen_step values */
#define STEP_TRAINABLE (-1L)
#define STEP_NEVER_TRAINED 0L

struct aflo_freezer {
    aflo_freeze_config cfg;
    int n;
    int n_trainable;
    size_t *sizes;
    long *frozen_step;    /* STEP_TRAINABLE, STEP_NEVER_TRAINED or the step */
    double *frozen_score; /* s(P) when it froze */
    float **state;        /* Ibar | Ubar | Iwin per trainable matrix, else NULL */
    long window_count;    /* steps summed into Iwin so far */
    float *scratch;       /* element scores for selection */
    size_t scratch_cap;
};

/* ------------------------------------------------------------- sensitivity */

const char *const freeze_sensitivity_names[FREEZE_SENS_COUNT] = {
    [FREEZE_SENS_GRAD] = "grad",
    [FREEZE_SENS_WEIGHT_GRAD] = "weight_grad",
};

/* Whether a sensitivity multiplies the gradient by the weight. */
static const bool SENS_READS_WEIGHTS[FREEZE_SENS_COUNT] = {
    [FREEZE_SENS_GRAD] = false,
    [FREEZE_SENS_WEIGHT_GRAD] = true,
};

float freeze_sensitivity_element(aflo_freeze_sensitivity s, float p, float g) {
    return SENS_READS_WEIGHTS[s] ? fabsf(p * g) : fabsf(g);
}

/* ------------------------------------------------------------------ schedule */

double schedule_remaining_fraction(const aflo_freeze_config *c, long t) {
    if (t <= c->initial_steps) return 1.0;
    if (t > c->total_steps - c->final_steps) return 0.0;
    long span = c->total_steps - c->initial_steps - c->final_steps;
    if (span <= 0) return 0.0; /* unreachable given the two tests above; kept as a guard */
    double x = 1.0 - (double)(t - c->initial_steps) / (double)span;
    return x * x * x;
}

/* ------------------------------------------------------------------ lifetime */

static int config_check(const aflo_freeze_config *c, char *err, size_t errlen) {
    if (!c) return set_err(err, errlen, "freezer: config is NULL");
    if (!(c->beta1 >= 0.0 && c->beta1 < 1.0))
        return set_err(err, errlen, "freezer: beta1 must be in [0, 1), got %g", c->beta1);
    if (!(c->beta2 >= 0.0 && c->beta2 < 1.0))
        return set_err(err, errlen, "freezer: beta2 must be in [0, 1), got %g", c->beta2);
    if (c->delta_t < 1)
        return set_err(err, errlen, "freezer: delta_t must be >= 1, got %d", c->delta_t);
    if ((unsigned)c->sensitivity >= FREEZE_SENS_COUNT)
        return set_err(err, errlen, "freezer: unknown sensitivity %d", (int)c->sensitivity);
    if (c->total_steps < 0 || c->initial_steps < 0 || c->final_steps < 0)
        return set_err(err, errlen,
                       "freezer: total/initial/final steps must be >= 0 (got %ld/%ld/%ld)",
                       c->total_steps, c->initial_steps, c->final_steps);
    return 0;
}

/* One block for the three score arrays; NULL on OOM or size overflow. */
static float *state_alloc(size_t size) {
    if (size > SIZE_MAX / (SCORE_ARRAYS * sizeof(float))) return NULL;
    return calloc(SCORE_ARRAYS * size, sizeof(float));
}

aflo_freezer *freezer_create(const aflo_freeze_config *c, int n_matrices, const size_t *sizes,
                             const bool *trainable, char *err, size_t errlen) {
    if (config_check(c, err, errlen)) return NULL;
    if (n_matrices < 0) {
        set_err(err, errlen, "freezer: n_matrices < 0");
        return NULL;
    }
    if (n_matrices > 0 && (!sizes || !trainable)) {
        set_err(err, errlen, "freezer: sizes/trainable are NULL");
        return NULL;
    }
    for (int i = 0; i < n_matrices; i++) {
        if (trainable[i] && sizes[i] == 0) {
            set_err(err, errlen, "freezer: trainable matrix %d has no elements", i);
            return NULL;
        }
    }

    aflo_freezer *f = calloc(1, sizeof *f);
    if (!f) goto oom;
    f->cfg = *c;
    f->n = n_matrices;
    if (n_matrices > 0) {
        f->sizes = malloc((size_t)n_matrices * sizeof *f->sizes);
        f->frozen_step = malloc((size_t)n_matrices * sizeof *f->frozen_step);
        f->frozen_score = calloc((size_t)n_matrices, sizeof *f->frozen_score);
        f->state = calloc((size_t)n_matrices, sizeof *f->state);
        if (!f->sizes || !f->frozen_step || !f->frozen_score || !f->state) goto oom;
    }
    for (int i = 0; i < n_matrices; i++) {
        f->sizes[i] = sizes[i];
        if (trainable[i]) {
            f->state[i] = state_alloc(sizes[i]);
            if (!f->state[i]) goto oom;
            f->frozen_step[i] = STEP_TRAINABLE;
            f->n_trainable++;
        } else {
            f->frozen_step[i] = STEP_NEVER_TRAINED;
        }
    }
    return f;
oom:
    set_err(err, errlen, "freezer: out of memory");
    freezer_free(f);
    return NULL;
}

void freezer_free(aflo_freezer *f) {
    if (!f) return;
    if (f->state)
        for (int i = 0; i < f->n; i++) free(f->state[i]);
    free(f->state);
    free(f->sizes);
    free(f->frozen_step);
    free(f->frozen_score);
    free(f->scratch);
    free(f);
}

/* ------------------------------------------------------------------- score */

/* The window/EMA update of elements [0, n) of one matrix's arrays. */
typedef struct {
    const optim_kernels *kern;
    bool boundary;
    double b1, b2, inv_count;
} score_step;

static void score_kernel(const score_step *st, float *ibar, float *ubar, float *iwin,
                         const float *x, size_t n) {
    if (st->boundary)
        st->kern->score_boundary(ibar, ubar, iwin, x, n, st->b1, st->b2, st->inv_count);
    else
        st->kern->score_accumulate(iwin, x, n);
}

/* Elements [0, n) under the sensitivity: the kernels take |x|, so x is the
 * gradient, or P * grad formed block by block (fabsf(p * g) as in
 * freeze_sensitivity_element). */
static void score_span(const score_step *st, bool weighted, float *ibar, float *ubar, float *iwin,
                       const float *g, const float *p, size_t n) {
    if (!weighted) {
        score_kernel(st, ibar, ubar, iwin, g, n);
        return;
    }
    float prod[SENS_BLOCK];
    for (size_t e = 0; e < n; e += SENS_BLOCK) {
        size_t len = n - e < SENS_BLOCK ? n - e : SENS_BLOCK;
        for (size_t k = 0; k < len; k++) prod[k] = p[e + k] * g[e + k];
        score_kernel(st, ibar + e, ubar + e, iwin + e, prod, len);
    }
}

void freeze_score_update(aflo_freezer *f, long t, const float *const *grads,
                         const float *const *params) {
    if (f->n_trainable == 0) return; /* scoring stops when none is left */
    const bool boundary = (t % f->cfg.delta_t == 0) && f->window_count > 0;
    const score_step st = {.kern = optim_kern(),
                           .boundary = boundary,
                           .b1 = f->cfg.beta1,
                           .b2 = f->cfg.beta2,
                           .inv_count = boundary ? 1.0 / (double)f->window_count : 0.0};
    const bool weighted = SENS_READS_WEIGHTS[f->cfg.sensitivity];

    for (int i = 0; i < f->n; i++) {
        if (!f->state[i]) continue;
        const size_t n = f->sizes[i];
        float *ibar = f->state[i], *ubar = ibar + n, *iwin = ibar + 2 * n;
        const float *g = grads[i], *p = weighted ? params[i] : NULL;
        /* Elementwise, so any split among threads gives the same bits. */
        const size_t nc = (n + SCORE_CHUNK - 1) / SCORE_CHUNK;
        if (nc <= 1) { /* AFLoRA's usual case: no OpenMP region (~1 us each) */
            score_span(&st, weighted, ibar, ubar, iwin, g, p, n);
            continue;
        }
#pragma omp parallel for schedule(static) num_threads(engine_threads())
        for (size_t c = 0; c < nc; c++) {
            size_t e = c * SCORE_CHUNK, len = n - e < SCORE_CHUNK ? n - e : SCORE_CHUNK;
            score_span(&st, weighted, ibar + e, ubar + e, iwin + e, g + e, p ? p + e : NULL, len);
        }
    }
    f->window_count = boundary ? 1 : f->window_count + 1;
}

/* s(P): mean of the element scores, summed in double in element order. */
static double matrix_mean_score(const aflo_freezer *f, int i) {
    const size_t n = f->sizes[i];
    const float *ibar = f->state[i], *ubar = ibar + n;
    double sum = 0.0;
    for (size_t e = 0; e < n; e++) sum += (double)(ibar[e] * ubar[e]);
    return sum / (double)n;
}

static void freeze_matrix(aflo_freezer *f, int i, long t, double score) {
    f->frozen_score[i] = score;
    free(f->state[i]);
    f->state[i] = NULL;
    f->frozen_step[i] = t;
    f->n_trainable--;
}

static inline void swap_f(float *a, float *b) {
    float x = *a;
    *a = *b;
    *b = x;
}

static inline float median3(float a, float b, float c) {
    if (a < b) return b < c ? b : (a < c ? c : a);
    return a < c ? a : (b < c ? c : b);
}

/* The k-th smallest (0-based) of a[0..n), n > 0, k < n; permutes a. */
static float select_kth(float *a, size_t n, size_t k) {
    size_t lo = 0, hi = n; /* the answer lies in [lo, hi) */
    uint64_t round = 0;
    while (hi - lo > 1) {
        size_t span = hi - lo;
        float p = median3(a[lo + rng_hash(SELECT_PIVOT_KEY, round) % span],
                          a[lo + rng_hash(SELECT_PIVOT_KEY, round + 1) % span],
                          a[lo + rng_hash(SELECT_PIVOT_KEY, round + 2) % span]);
        round += 3;
        /* Three-way partition: [lo, lt) < p, [lt, gt) == p, [gt, hi) > p.
         * p is an element, so the middle part is never empty and each round
         * shrinks the range. (A NaN pivot puts everything in the middle.) */
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (a[i] < p)
                swap_f(&a[lt++], &a[i++]);
            else if (a[i] > p)
                swap_f(&a[i], &a[--gt]);
            else
                i++;
        }
        if (k < lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return p;
    }
    return a[lo];
}

/* Make the scratch buffer exactly need floats when it can; growing may fail,
 * shrinking failures are harmless (the larger buffer stays). */
static int scratch_fit(aflo_freezer *f, size_t need) {
    if (need == 0) {
        free(f->scratch);
        f->scratch = NULL;
        f->scratch_cap = 0;
        return 0;
    }
    if (need == f->scratch_cap) return 0;
    if (need > SIZE_MAX / sizeof(float)) return -1;
    float *p = realloc(f->scratch, need * sizeof(float));
    if (!p) return need > f->scratch_cap ? -1 : 0;
    f->scratch = p;
    f->scratch_cap = need;
    return 0;
}

int freeze_decide(aflo_freezer *f, long t, int *newly_frozen) {
    const aflo_freeze_config *c = &f->cfg;
    if (f->n_trainable == 0 || t < 1 || t <= c->initial_steps) return 0;

    int count = 0;
    if (t > c->total_steps - c->final_steps) {
        /* First step of the final phase: everything left freezes. */
        for (int i = 0; i < f->n; i++) {
            if (!f->state[i]) continue;
            freeze_matrix(f, i, t, matrix_mean_score(f, i));
            newly_frozen[count++] = i;
        }
        scratch_fit(f, 0);
        return count;
    }
    if (t % c->delta_t != 0) return 0;

    size_t total = 0;
    for (int i = 0; i < f->n; i++)
        if (f->state[i]) total += f->sizes[i];
    double kd = floor((double)total * (1.0 - schedule_remaining_fraction(c, t)));
    if (!(kd >= 1.0)) return 0; /* k = 0: nothing to freeze */
    size_t k = kd >= (double)total ? total : (size_t)kd;

    if (scratch_fit(f, total)) return -1;
    size_t at = 0;
    for (int i = 0; i < f->n; i++) {
        if (!f->state[i]) continue;
        const size_t n = f->sizes[i];
        const float *ibar = f->state[i], *ubar = ibar + n;
        for (size_t e = 0; e < n; e++) f->scratch[at++] = ibar[e] * ubar[e];
    }
    const double threshold = select_kth(f->scratch, total, k - 1);

    size_t left = 0;
    for (int i = 0; i < f->n; i++) {
        if (!f->state[i]) continue;
        double score = matrix_mean_score(f, i);
        if (score < threshold) {
            freeze_matrix(f, i, t, score);
            newly_frozen[count++] = i;
        } else {
            left += f->sizes[i];
        }
    }
    if (count > 0) scratch_fit(f, left); /* give back what frozen matrices used */
    return count;
}

/* --------------------------------------------------------------- accessors */

bool freezer_is_frozen(const aflo_freezer *f, int i) { return f->frozen_step[i] != STEP_TRAINABLE; }

long freezer_frozen_step(const aflo_freezer *f, int i) { return f->frozen_step[i]; }

int freezer_trainable_count(const aflo_freezer *f) { return f->n_trainable; }

double freezer_matrix_score(const aflo_freezer *f, int i) {
    return f->state[i] ? matrix_mean_score(f, i) : 0.0;
}

double freezer_frozen_score(const aflo_freezer *f, int i) { return f->frozen_score[i]; }

/* ------------------------------------------------------------- checkpoints */

static void put_u32(unsigned char **p, uint32_t v) {
    for (int b = 0; b < 4; b++) *(*p)++ = (unsigned char)(v >> (8 * b));
}
static void put_u64(unsigned char **p, uint64_t v) {
    for (int b = 0; b < 8; b++) *(*p)++ = (unsigned char)(v >> (8 * b));
}
static void put_i64(unsigned char **p, int64_t v) { put_u64(p, (uint64_t)v); }
static void put_f64(unsigned char **p, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    put_u64(p, u);
}

static uint32_t get_u32(const unsigned char **p) {
    uint32_t v = 0;
    for (int b = 0; b < 4; b++) v |= (uint32_t)(*p)[b] << (8 * b);
    *p += 4;
    return v;
}
static uint64_t get_u64(const unsigned char **p) {
    uint64_t v = 0;
    for (int b = 0; b < 8; b++) v |= (uint64_t)(*p)[b] << (8 * b);
    *p += 8;
    return v;
}
static int64_t get_i64(const unsigned char **p) { return (int64_t)get_u64(p); }

static void put_floats(unsigned char **p, const float *x, size_t n) {
    for (size_t e = 0; e < n; e++) {
        uint32_t u;
        memcpy(&u, &x[e], sizeof u);
        put_u32(p, u);
    }
}
static void get_floats(const unsigned char **p, float *x, size_t n) {
    for (size_t e = 0; e < n; e++) {
        uint32_t u = get_u32(p);
        memcpy(&x[e], &u, sizeof u);
    }
}

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = FNV_OFFSET;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

static size_t blob_fixed_bytes(int n) {
    return BLOB_HEADER_BYTES + BLOB_CONFIG_BYTES + BLOB_WINDOW_BYTES +
           (size_t)n * BLOB_MATRIX_BYTES + BLOB_CHECKSUM_BYTES;
}

size_t freezer_state_size(const aflo_freezer *f) {
    size_t s = blob_fixed_bytes(f->n);
    for (int i = 0; i < f->n; i++)
        if (f->state[i]) s += SCORE_ARRAYS * sizeof(float) * f->sizes[i];
    return s;
}

static void put_config(unsigned char **p, const aflo_freeze_config *c) {
    put_f64(p, c->beta1);
    put_f64(p, c->beta2);
    put_i64(p, c->delta_t);
    put_i64(p, c->total_steps);
    put_i64(p, c->initial_steps);
    put_i64(p, c->final_steps);
}

int freezer_save(const aflo_freezer *f, void *buf, size_t n) {
    if (n < freezer_state_size(f)) return -1;
    unsigned char *start = buf, *p = start;
    put_u32(&p, FREEZER_BLOB_MAGIC);
    put_u32(&p, FREEZER_BLOB_VERSION);
    put_u32(&p, (uint32_t)f->n);
    put_u32(&p, (uint32_t)f->cfg.sensitivity);
    put_config(&p, &f->cfg);
    put_i64(&p, f->window_count);
    for (int i = 0; i < f->n; i++) {
        put_u64(&p, f->sizes[i]);
        put_i64(&p, f->frozen_step[i]);
        put_f64(&p, f->frozen_score[i]);
    }
    for (int i = 0; i < f->n; i++)
        if (f->state[i]) put_floats(&p, f->state[i], SCORE_ARRAYS * f->sizes[i]);
    put_u64(&p, fnv1a(start, (size_t)(p - start)));
    return 0;
}

int freezer_load(aflo_freezer *f, const void *buf, size_t n, char *err, size_t errlen) {
    const unsigned char *start = buf, *p = start;
    if (!buf || n < blob_fixed_bytes(0))
        return set_err(err, errlen, "freezer state: blob too short (%zu bytes)", n);
    if (get_u32(&p) != FREEZER_BLOB_MAGIC) return set_err(err, errlen, "freezer state: bad magic");
    uint32_t version = get_u32(&p);
    if (version != FREEZER_BLOB_VERSION)
        return set_err(err, errlen, "freezer state: unsupported version %u", version);
    uint32_t nm = get_u32(&p);
    if (nm != (uint32_t)f->n)
        return set_err(err, errlen, "freezer state: %u matrices, freezer has %d", nm, f->n);
    if (n < blob_fixed_bytes(f->n)) return set_err(err, errlen, "freezer state: blob truncated");
    { /* the checksum is the last 8 bytes, whatever the length claims */
        const unsigned char *q = start + n - BLOB_CHECKSUM_BYTES;
        if (get_u64(&q) != fnv1a(start, n - BLOB_CHECKSUM_BYTES))
            return set_err(err, errlen, "freezer state: checksum mismatch (corrupt or truncated)");
    }
    uint32_t sensitivity = get_u32(&p);
    if (sensitivity != (uint32_t)f->cfg.sensitivity)
        return set_err(
            err, errlen, "freezer state: saved with sensitivity %s, this run scores by %s",
            sensitivity < FREEZE_SENS_COUNT ? freeze_sensitivity_names[sensitivity] : "(unknown)",
            freeze_sensitivity_names[f->cfg.sensitivity]);

    unsigned char want[BLOB_CONFIG_BYTES], *w = want;
    put_config(&w, &f->cfg);
    if (memcmp(p, want, sizeof want) != 0)
        return set_err(err, errlen, "freezer state: saved with a different freezing config");
    p += sizeof want;

    int64_t window = get_i64(&p);
    if (window < 0 || window > f->cfg.delta_t)
        return set_err(err, errlen, "freezer state: window count %lld out of range",
                       (long long)window);
    const unsigned char *table = p;
    size_t expect = blob_fixed_bytes(f->n);
    for (int i = 0; i < f->n; i++) {
        uint64_t size = get_u64(&p);
        int64_t step = get_i64(&p);
        p += 8; /* frozen score: any value */
        if (size != f->sizes[i])
            return set_err(err, errlen, "freezer state: matrix %d has %llu elements, expected %zu",
                           i, (unsigned long long)size, f->sizes[i]);
        bool never = f->frozen_step[i] == STEP_NEVER_TRAINED;
        if (step < STEP_TRAINABLE || (step == STEP_NEVER_TRAINED) != never)
            return set_err(err, errlen, "freezer state: matrix %d frozen step %lld does not fit", i,
                           (long long)step);
        if (step == STEP_TRAINABLE) expect += SCORE_ARRAYS * sizeof(float) * f->sizes[i];
    }
    if (n != expect)
        return set_err(err, errlen, "freezer state: %zu bytes, expected %zu", n, expect);

    /* Allocate what the blob needs before touching f, so a failure leaves it as it was. */
    float **fresh = calloc((size_t)(f->n > 0 ? f->n : 1), sizeof *fresh);
    if (!fresh) return set_err(err, errlen, "freezer state: out of memory");
    p = table;
    for (int i = 0; i < f->n; i++) {
        p += 8;
        int64_t step = get_i64(&p);
        p += 8;
        if (step == STEP_TRAINABLE && !f->state[i]) {
            fresh[i] = state_alloc(f->sizes[i]);
            if (!fresh[i]) {
                for (int j = 0; j < i; j++) free(fresh[j]);
                free(fresh);
                return set_err(err, errlen, "freezer state: out of memory");
            }
        }
    }

    /* Commit: the table gives each matrix's step, the arrays follow it. */
    const unsigned char *arrays = table + (size_t)f->n * BLOB_MATRIX_BYTES;
    p = table;
    f->n_trainable = 0;
    for (int i = 0; i < f->n; i++) {
        p += 8;
        long step = (long)get_i64(&p);
        uint64_t score_bits = get_u64(&p);
        f->frozen_step[i] = step;
        memcpy(&f->frozen_score[i], &score_bits, sizeof score_bits);
        if (step == STEP_TRAINABLE) {
            if (!f->state[i]) f->state[i] = fresh[i];
            get_floats(&arrays, f->state[i], SCORE_ARRAYS * f->sizes[i]);
            f->n_trainable++;
        } else {
            free(f->state[i]);
            f->state[i] = NULL;
        }
    }
    free(fresh);
    f->window_count = (long)window;
    return 0;
}
