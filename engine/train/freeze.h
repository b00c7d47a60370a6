/* freeze.h — AFLoRA's adaptive freezing: the per-matrix freezing score and
 * the cubic schedule that decides how many projection matrices still train
 * (aflora.md §3 and §4).
 *
 * The freezer knows nothing about layers or names: it sees n matrices (each
 * an A or a B projection), their element counts, and once per optimizer step
 * their gradients. The caller owns gradients and parameters; the freezer only
 * says which matrices stop training and when, so the training loop can stop
 * computing their weight gradients and release their optimizer state.
 *
 * Per still-trainable matrix it keeps three float arrays the size of the
 * matrix: the smoothed sensitivity Ibar, the uncertainty Ubar and the running
 * sum of |grad| over the current window of delta_t steps. They are freed the
 * moment the matrix freezes, so a frozen matrix costs nothing more.
 *
 * Steps are 1-based (t = 1..T). All arithmetic is sequential and in a fixed
 * order, so the same gradients give the same decisions on every run. */
#ifndef AFLO_FREEZE_H
#define AFLO_FREEZE_H

#include <stdbool.h>
#include <stddef.h>

/* Defaults from the paper and the authors' code (aflora.md §3). */
#define AFLO_FREEZE_DEFAULT_BETA1 0.85 /* EMA of sensitivity */
#define AFLO_FREEZE_DEFAULT_BETA2 0.95 /* EMA of uncertainty */
#define AFLO_FREEZE_DEFAULT_DELTA_T 10 /* window length, steps */

/* The element sensitivity I(t) that the score smooths (aflora.md §3; the
 * paper's Figure 4 compares choices of it). The values are stored in
 * checkpoints: append, never renumber. */
typedef enum {
    FREEZE_SENS_GRAD = 0,        /* |grad P|: AFLoRA's choice, the default */
    FREEZE_SENS_WEIGHT_GRAD = 1, /* |P * grad P|: AdaLoRA's (and PLATON's) importance */
    FREEZE_SENS_COUNT
} aflo_freeze_sensitivity;

/* The sensitivities' names as the job spec spells them, by value. */
extern const char *const freeze_sensitivity_names[FREEZE_SENS_COUNT];

/* I for one element with value p and gradient g under sensitivity s: what
 * freeze_score_update adds to the window (exposed so tests can check it by
 * hand; the update itself uses vector kernels with the same arithmetic). */
float freeze_sensitivity_element(aflo_freeze_sensitivity s, float p, float g);

typedef struct {
    double beta1;       /* EMA of sensitivity, default 0.85, in [0, 1) */
    double beta2;       /* EMA of uncertainty, default 0.95, in [0, 1) */
    int delta_t;        /* window length in steps, default 10, >= 1 */
    long total_steps;   /* T */
    long initial_steps; /* t_i: no freezing while t <= t_i */
    long final_steps;   /* t_f: everything still trainable freezes at the
                            first step t > T - t_f */
    /* what I(t) is; zero, the default, is FREEZE_SENS_GRAD */
    aflo_freeze_sensitivity sensitivity;
} aflo_freeze_config;

/* r(t), the fraction of score elements that should still train at 1-based
 * step t: 1 for t <= t_i, 0 for t > T - t_f, (1 - (t - t_i)/(T - t_i - t_f))^3
 * in between. When the phases overlap (t_i > T - t_f) the initial phase wins,
 * as in the AdaLoRA budget schedule the authors' code builds on. */
double schedule_remaining_fraction(const aflo_freeze_config *c, long t);

typedef struct aflo_freezer aflo_freezer;

/* A freezer for n_matrices matrices of sizes[i] elements. Matrices with
 * trainable[i] false are frozen from the start (frozen step 0) and never
 * scored. The config is copied. Returns NULL and writes err on an invalid
 * config or size (a trainable matrix needs size > 0) or on OOM. */
aflo_freezer *freezer_create(const aflo_freeze_config *c, int n_matrices, const size_t *sizes,
                             const bool *trainable, char *err, size_t errlen);
void freezer_free(aflo_freezer *f); /* NULL is fine */

/* Step t (1-based, called once per optimizer step, after the optimizer has
 * updated the parameters with the step's gradient). grads[i] is matrix i's
 * gradient and params[i] its values (both ignored, and may be NULL, for
 * frozen matrices; params may be NULL altogether when the sensitivity is
 * FREEZE_SENS_GRAD, which does not read weights). Each element contributes
 * freeze_sensitivity_element(sensitivity, p, g). At a window boundary
 * (t % delta_t == 0, window non-empty) the window mean updates Ibar then Ubar (with the new Ibar) and
 * the window restarts with this step's sensitivity; otherwise the sensitivity
 * is added to the window. Does nothing once every matrix is frozen. */
void freeze_score_update(aflo_freezer *f, long t, const float *const *grads,
                         const float *const *params);

/* Decision at step t, called right after freeze_score_update for the same t.
 * Writes the indices of the matrices frozen now into newly_frozen (capacity
 * n_matrices, ascending), returns their count (0..n), or -1 on allocation
 * failure (then nothing changed). In the middle phase, at multiples of
 * delta_t: k = floor(N * (1 - r(t))) over the N element scores Ibar*Ubar of
 * the trainable matrices; the threshold is the k-th smallest; matrices whose
 * mean score is strictly below it freeze (k = 0 freezes nothing). At the
 * first final-phase step every remaining matrix freezes. */
int freeze_decide(aflo_freezer *f, long t, int *newly_frozen);

bool freezer_is_frozen(const aflo_freezer *f, int i);
long freezer_frozen_step(const aflo_freezer *f,
                         int i); /* -1 while trainable, 0 if never trainable */
int freezer_trainable_count(const aflo_freezer *f);
double freezer_matrix_score(const aflo_freezer *f,
                            int i); /* s(P) = mean(Ibar*Ubar); 0 when frozen */
/* s(P) at the moment matrix i froze (the value the decision compared; for
 * the final phase, the score then); 0 while trainable or if never trainable.
 * Kept because freezer_matrix_score is 0 once the score state is freed. */
double freezer_frozen_score(const aflo_freezer *f, int i);

/* Checkpoint hooks. The blob is little-endian: magic, version, matrix count,
 * the sensitivity (a slot that was reserved and zero, i.e. grad, before
 * there was a choice, so older blobs still load), the rest of the config,
 * the window count, per matrix its size, frozen step and frozen score, the
 * three score arrays of every trainable matrix, and a 64-bit FNV-1a checksum of all of
 * that. freezer_save returns 0, or -1 if n < freezer_state_size(f).
 * freezer_load accepts only a blob saved by a freezer with the same config,
 * sizes and initially-trainable set; on any error it returns -1, writes err
 * and leaves f unchanged. */
size_t freezer_state_size(const aflo_freezer *f);
int freezer_save(const aflo_freezer *f, void *buf, size_t n);
int freezer_load(aflo_freezer *f, const void *buf, size_t n, char *err, size_t errlen);

#endif
