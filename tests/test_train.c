/* test_train.c — the training loop end to end on the synthetic task:
 * learning, adaptive freezing, determinism, cancel, gradient accumulation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "freeze.h"
#include "gemm.h"
#include "synth.h"
#include "train.h"

#define MAX_STEPS 4096
#define MAX_EVENTS 256

typedef struct {
    float loss[MAX_STEPS];
    long steps;
    int epoch_of[MAX_STEPS];
    aflo_freeze_event ev[MAX_EVENTS];
    char ev_names[MAX_EVENTS][96];
    int nev;
    double best_acc;
    long cancel_at;
    atomic_int *cancel;
    size_t trainable_first, trainable_last;
    double trainable_avg;
    uint64_t weight_flops_first, weight_flops_last;
    size_t memory_first, memory_last;
} recorder;

static void rec_step(void *ctx, const aflo_step_info *s) {
    recorder *r = ctx;
    assert_true(s->step == r->steps + 1);
    r->loss[r->steps] = s->loss;
    r->epoch_of[r->steps] = s->epoch;
    if (r->steps == 0) {
        r->trainable_first = s->trainable_now;
        r->weight_flops_first = s->step_flops.by_kind[FLOP_BACKWARD_WEIGHT];
        r->memory_first = s->memory_bytes;
    }
    r->memory_last = s->memory_bytes;
    r->trainable_last = s->trainable_now;
    r->weight_flops_last = s->step_flops.by_kind[FLOP_BACKWARD_WEIGHT];
    r->trainable_avg = s->trainable_avg;
    r->steps++;
    if (r->cancel && s->step == r->cancel_at) atomic_store(r->cancel, 1);
}

static void rec_freeze(void *ctx, const aflo_freeze_event *e) {
    recorder *r = ctx;
    assert_true(r->nev < MAX_EVENTS);
    r->ev[r->nev] = *e;
    snprintf(r->ev_names[r->nev], sizeof r->ev_names[0], "%s", e->name);
    r->ev[r->nev].name = r->ev_names[r->nev];
    r->nev++;
}

static void rec_eval(void *ctx, const aflo_eval_info *e) {
    recorder *r = ctx;
    if (e->metrics->accuracy > r->best_acc) r->best_acc = e->metrics->accuracy;
}

typedef struct {
    aflo_config c;
    aflo_dataset train, eval;
    aflo_model *m;
    aflo_trainer *t;
    aflo_train_config tc;
} setup;

static void make_setup(setup *s, aflo_method method, int ntrain, int epochs, int batch) {
    char err[512];
    synth_demo_config(&s->c);
    dataset_init(&s->train);
    dataset_init(&s->eval);
    assert_int_equal(synth_sentiment(&s->train, ntrain, s->c.vocab_size, 11), 0);
    assert_int_equal(synth_sentiment(&s->eval, 300, s->c.vocab_size, 12), 0);
    aflo_adapter_config ac = {.method = method, .rank = 4, .alpha = 8, .targets = ALL_MODULES,
                              .projections = PROJ_FFN};
    s->m = model_create(&s->c, &ac, TASK_CLASSIFICATION, 2, 5, err, sizeof err);
    assert_non_null(s->m);
    synth_demo_weights(s->m);
    train_config_defaults(&s->tc, epochs);
    s->tc.batch_size = batch;
    s->tc.seed = 3;
    s->t = NULL;
}

static void make_trainer(setup *s) {
    char err[512];
    s->t = trainer_create(s->m, &s->tc, &s->train, &s->eval, err, sizeof err);
    if (!s->t) fprintf(stderr, "%s\n", err);
    assert_non_null(s->t);
}

static void free_setup(setup *s) {
    trainer_free(s->t);
    model_free(s->m);
    dataset_free(&s->train);
    dataset_free(&s->eval);
}

static aflo_train_status run(setup *s, recorder *r, aflo_train_summary *sum) {
    char err[512];
    aflo_progress pr = {.ctx = r, .on_step = rec_step, .on_freeze = rec_freeze,
                        .on_eval = rec_eval};
    aflo_train_status st = trainer_run(s->t, &pr, r->cancel, sum, err, sizeof err);
    if (st == TRAIN_FAILED) fprintf(stderr, "%s\n", err);
    return st;
}

/* AFLoRA on a tiny random model learns the synthetic task, and every
 * trainable projection freezes at a step the schedule allows. */
static void test_long_aflora_learns_and_freezes(void **st) {
    (void)st;
    setup s;
    make_setup(&s, METHOD_AFLORA, 1000, 10, 32);
    make_trainer(&s);
    recorder *r = calloc(1, sizeof *r);
    assert_non_null(r);
    aflo_train_summary sum;
    assert_int_equal(run(&s, r, &sum), TRAIN_DONE);

    long T = trainer_total_steps(s.t), spe = trainer_steps_per_epoch(s.t);
    assert_int_equal(r->steps, T);
    double first = 0, last = 0;
    int nfirst = 0, nlast = 0;
    for (long i = 0; i < r->steps; i++) {
        if (r->epoch_of[i] == 0) { first += r->loss[i]; nfirst++; }
        if (r->epoch_of[i] == s.tc.epochs - 1) { last += r->loss[i]; nlast++; }
    }
    first /= nfirst;
    last /= nlast;
    fprintf(stderr, "loss first epoch %.4f last epoch %.4f, best eval accuracy %.3f\n", first,
            last, r->best_acc);
    assert_true(last < 0.8 * first);
    assert_true(r->best_acc >= 0.75); /* chance is 0.5 */

    /* ffn: intermediate and output A and B in each of 2 layers */
    assert_int_equal(r->nev, 2 * 2 * 2);
    long ti = lround(s.tc.freeze_initial_epochs * spe), tf = lround(s.tc.freeze_final_epochs * spe);
    for (int i = 0; i < r->nev; i++) {
        long t = r->ev[i].step;
        bool middle = t > ti && t <= T - tf && t % s.tc.delta_t == 0;
        bool final_phase = t == T - tf + 1;
        assert_true(middle || final_phase);
        aflo_param *p = model_find_param(s.m, r->ev[i].name);
        assert_non_null(p);
        assert_false(p->trainable);
        assert_int_equal(trainer_frozen_step(s.t, p), t);
        assert_true(r->ev[i].module == MOD_INTERMEDIATE || r->ev[i].module == MOD_OUTPUT);
    }
    /* trainable parameters shrink; the time average lies between */
    assert_true(r->trainable_last < r->trainable_first);
    assert_true(sum.trainable_avg < (double)r->trainable_first);
    assert_true(sum.trainable_avg > (double)r->trainable_last);
    /* no weight-gradient GEMM is left for frozen projections: only the head's
     * remain (pooler H x H and classifier 2 x H over the batch) */
    uint64_t H = 32, head_w = 2 * (H * H + 2 * H) * 32;
    assert_true(r->weight_flops_last <= head_w);
    assert_true(r->weight_flops_first > head_w);
    /* ... and their Adam moments are released: 2 floats per frozen element */
    size_t frozen_elems = r->trainable_first - r->trainable_last;
    assert_int_equal(r->memory_first - r->memory_last, 2 * frozen_elems * sizeof(float));
    free(r);
    free_setup(&s);
}

static void losses_of(recorder *r, int threads, bool dropout) {
    engine_set_threads(threads);
    setup s;
    make_setup(&s, METHOD_AFLORA, 200, 2, 16);
    s.tc.dropout = dropout;
    make_trainer(&s);
    aflo_train_summary sum;
    assert_int_equal(run(&s, r, &sum), TRAIN_DONE);
    free_setup(&s);
    engine_set_threads(1);
}

static void test_deterministic_losses(void **st) {
    (void)st;
    recorder *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b), *c = calloc(1, sizeof *c);
    assert_true(a && b && c);
    losses_of(a, 2, true);
    losses_of(b, 2, true);
    assert_int_equal(a->steps, b->steps);
    assert_memory_equal(a->loss, b->loss, (size_t)a->steps * sizeof(float));
    assert_int_equal(a->nev, b->nev);
    /* dropout changes the losses: the masks really are applied */
    losses_of(c, 2, false);
    assert_memory_not_equal(a->loss, c->loss, (size_t)a->steps * sizeof(float));
    free(a);
    free(b);
    free(c);
}

static void test_cancel_stops_within_a_step(void **st) {
    (void)st;
    setup s;
    make_setup(&s, METHOD_AFLORA, 200, 3, 16);
    make_trainer(&s);
    recorder *r = calloc(1, sizeof *r);
    assert_non_null(r);
    atomic_int cancel = 0;
    r->cancel = &cancel;
    r->cancel_at = 5;
    aflo_train_summary sum;
    assert_int_equal(run(&s, r, &sum), TRAIN_CANCELLED);
    assert_int_equal(r->steps, 5);
    assert_int_equal(sum.steps_done, 5);
    free(r);
    free_setup(&s);
}

/* batch 8 with 2 accumulation steps is the same optimizer step as batch 16 */
static void test_grad_accumulation_matches_large_batch(void **st) {
    (void)st;
    setup a, b;
    make_setup(&a, METHOD_LORA, 16, 1, 16);
    make_setup(&b, METHOD_LORA, 16, 1, 8);
    b.tc.grad_accum = 2;
    a.tc.dropout = b.tc.dropout = false;
    a.tc.max_grad_norm = b.tc.max_grad_norm = 0; /* clipping would hide a scale error */
    a.tc.warmup_ratio = b.tc.warmup_ratio = 0;
    make_trainer(&a);
    make_trainer(&b);
    assert_int_equal(trainer_total_steps(a.t), 1);
    assert_int_equal(trainer_total_steps(b.t), 1);
    recorder *ra = calloc(1, sizeof *ra), *rb = calloc(1, sizeof *rb);
    assert_true(ra && rb);
    aflo_train_summary sa, sb;
    assert_int_equal(run(&a, ra, &sa), TRAIN_DONE);
    assert_int_equal(run(&b, rb, &sb), TRAIN_DONE);
    assert_true(fabsf(ra->loss[0] - rb->loss[0]) < 1e-5f * fabsf(ra->loss[0]));
    for (int i = 0; i < model_param_count(a.m); i++) {
        aflo_param *p = model_param(a.m, i), *q = model_param(b.m, i);
        if (!p->trainable) continue;
        for (size_t j = 0; j < p->size; j++) {
            float g1 = p->grad[j], g2 = q->grad[j];
            assert_true(fabsf(g1 - g2) <= 1e-4f * fmaxf(1e-3f, fabsf(g1)));
        }
    }
    free(ra);
    free(rb);
    free_setup(&a);
    free_setup(&b);
}

static void test_bad_train_config_rejected(void **st) {
    (void)st;
    setup s;
    make_setup(&s, METHOD_AFLORA, 50, 2, 8);
    char err[512];
    s.tc.freeze_initial_epochs = 1.5;
    s.tc.freeze_final_epochs = 1.0;
    assert_null(trainer_create(s.m, &s.tc, &s.train, NULL, err, sizeof err));
    assert_non_null(strstr(err, "exceed epochs"));
    s.tc.freeze_initial_epochs = 0.5;
    s.tc.batch_size = 0;
    assert_null(trainer_create(s.m, &s.tc, &s.train, NULL, err, sizeof err));
    assert_non_null(strstr(err, "batch_size"));
    aflo_dataset empty;
    dataset_init(&empty);
    s.tc.batch_size = 8;
    assert_null(trainer_create(s.m, &s.tc, &empty, NULL, err, sizeof err));
    assert_non_null(strstr(err, "empty"));
    free_setup(&s);
}

/* ELoRA and LoRA never freeze anything; full trains the base weights. */
static void test_other_methods_train(void **st) {
    (void)st;
    static const aflo_method methods[] = {METHOD_ELORA, METHOD_LORA, METHOD_FULL};
    for (size_t k = 0; k < 3; k++) {
        setup s;
        make_setup(&s, methods[k], 200, 2, 16);
        make_trainer(&s);
        recorder *r = calloc(1, sizeof *r);
        assert_non_null(r);
        aflo_train_summary sum;
        assert_int_equal(run(&s, r, &sum), TRAIN_DONE);
        assert_int_equal(r->nev, 0);
        assert_int_equal(r->trainable_first, r->trainable_last);
        assert_true(isfinite(sum.last_loss));
        free(r);
        free_setup(&s);
    }
}

/* Stopped mid-epoch, checkpointed, restored into a fresh process-like setup
 * (new model, new trainer) and run on: the same final loss and tensors as an
 * uninterrupted run, bit for bit. */
static void test_checkpoint_resume_is_exact(void **st) {
    (void)st;
    char dir[] = "/tmp/aflo_ckpt_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/state.ckpt", dir);
    char err[512];

    setup a;
    make_setup(&a, METHOD_AFLORA, 160, 4, 16);
    make_trainer(&a);
    recorder *ra = calloc(1, sizeof *ra), *rb = calloc(1, sizeof *rb);
    assert_true(ra && rb);
    aflo_train_summary sa, sb;
    assert_int_equal(run(&a, ra, &sa), TRAIN_DONE);
    assert_true(ra->nev > 0);

    setup b;
    make_setup(&b, METHOD_AFLORA, 160, 4, 16);
    make_trainer(&b);
    atomic_int cancel = 0;
    rb->cancel = &cancel;
    /* 10 steps an epoch; freeze decisions fall at steps 10 and 13: stop at
     * step 7, mid-epoch and mid-window, so the score window must resume too */
    rb->cancel_at = 7;
    assert_int_equal(run(&b, rb, &sb), TRAIN_CANCELLED);
    assert_int_equal(trainer_save_checkpoint(b.t, path, err, sizeof err), 0);
    free_setup(&b);

    setup c;
    make_setup(&c, METHOD_AFLORA, 160, 4, 16);
    make_trainer(&c);
    assert_int_equal(trainer_load_checkpoint(c.t, path, err, sizeof err), 0);
    assert_int_equal(trainer_step(c.t), 7);
    rb->cancel = NULL;
    aflo_train_summary sc;
    assert_int_equal(run(&c, rb, &sc), TRAIN_DONE);
    assert_int_equal(rb->steps, ra->steps);
    assert_memory_equal(ra->loss, rb->loss, (size_t)ra->steps * sizeof(float));
    assert_true(sa.last_loss == sc.last_loss);
    assert_int_equal(sa.best_epoch, sc.best_epoch);
    assert_true(sa.flops.by_kind[FLOP_BACKWARD_WEIGHT] == sc.flops.by_kind[FLOP_BACKWARD_WEIGHT]);
    assert_true(sa.trainable_avg == sc.trainable_avg);
    for (int i = 0; i < model_param_count(a.m); i++) {
        aflo_param *p = model_param(a.m, i), *q = model_param(c.m, i);
        assert_int_equal(p->trainable, q->trainable);
        assert_memory_equal(p->data, q->data, p->size * sizeof(float));
        if (p->role == PROLE_A || p->role == PROLE_B)
            assert_int_equal(trainer_frozen_step(a.t, p), trainer_frozen_step(c.t, q));
    }

    /* A damaged checkpoint is refused and changes nothing. */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 200, SEEK_SET), 0);
    fputc(0x5a, f);
    fclose(f);
    setup d;
    make_setup(&d, METHOD_AFLORA, 160, 4, 16);
    make_trainer(&d);
    assert_int_equal(trainer_load_checkpoint(d.t, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "checksum"));
    assert_int_equal(trainer_step(d.t), 0);
    /* ... and so is a checkpoint of another run */
    setup e;
    make_setup(&e, METHOD_AFLORA, 160, 5, 16);
    make_trainer(&e);
    assert_int_equal(trainer_save_checkpoint(e.t, path, err, sizeof err), 0);
    assert_int_equal(trainer_load_checkpoint(d.t, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "different run"));
    free_setup(&d);
    free_setup(&e);

    unlink(path);
    rmdir(dir);
    free(ra);
    free(rb);
    free_setup(&a);
    free_setup(&c);
}

/* trainer_restore_best puts back the best epoch's adapter and head. */
static void test_long_restore_best_epoch(void **st) {
    (void)st;
    setup s;
    make_setup(&s, METHOD_AFLORA, 300, 4, 32);
    make_trainer(&s);
    recorder *r = calloc(1, sizeof *r);
    assert_non_null(r);
    aflo_train_summary sum;
    assert_int_equal(run(&s, r, &sum), TRAIN_DONE);
    assert_true(sum.best_epoch >= 0);
    trainer_restore_best(s.t);
    aflo_metrics mt;
    char err[256];
    assert_int_equal(evaluate(s.m, &s.eval, 32, 0, &mt, err, sizeof err), 0);
    assert_true(mt.accuracy == sum.best_metrics.accuracy);
    free(r);
    free_setup(&s);
}

int main(void) {
    engine_set_threads(1);
    /* Under valgrind (make test-valgrind) the two long training runs are
     * skipped — reported as skipped, not passed; every code path they use
     * also runs in the shorter tests, and both run in the plain and ASan passes. */
    if (getenv("AFLORAD_VALGRIND"))
        cmocka_set_skip_filter("test_long_*");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_aflora_learns_and_freezes),
        cmocka_unit_test(test_deterministic_losses),
        cmocka_unit_test(test_cancel_stops_within_a_step),
        cmocka_unit_test(test_grad_accumulation_matches_large_batch),
        cmocka_unit_test(test_bad_train_config_rejected),
        cmocka_unit_test(test_other_methods_train),
        cmocka_unit_test(test_checkpoint_resume_is_exact),
        cmocka_unit_test(test_long_restore_best_epoch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
