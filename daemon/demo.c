/* demo.c — `aflorad demo`: builds the demo model and synthetic task from the
 * engine, trains with progress lines on stdout, and reports the summary. */
#include "demo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model/gemm.h"
#include "job.h"
#include "model/model.h"
#include "synth.h"
#include "train/train.h"

typedef struct {
    bool quiet;
    long every;
} demo_ctx;

static void on_step(void *ctx, const aflo_step_info *s) {
    const demo_ctx *d = ctx;
    if (d->quiet || (s->step % d->every != 0 && s->step != s->total_steps)) return;
    printf("step %ld/%ld epoch %d loss %.4f lr %.2e trainable %zu (avg %.0f) "
           "projections %d/%d r(t) %.3f GFLOP %.3f\n",
           s->step, s->total_steps, JOB_EPOCH_SHOWN(s->epoch), s->loss, s->lr, s->trainable_now,
           s->trainable_avg, s->projections_trainable, s->projections_total, s->remaining_fraction,
           (double)flops_total(&s->total_flops) * 1e-9);
}

static void on_freeze(void *ctx, const aflo_freeze_event *e) {
    const demo_ctx *d = ctx;
    if (!d->quiet) printf("freeze step %ld %s (score %.3g)\n", e->step, e->name, e->score);
}

static void on_eval(void *ctx, const aflo_eval_info *e) {
    (void)ctx;
    printf("eval epoch %d step %ld loss %.4f accuracy %.4f f1 %.4f mcc %.4f\n",
           JOB_EPOCH_SHOWN(e->epoch), e->step, e->metrics->loss, e->metrics->accuracy,
           e->metrics->f1, e->metrics->mcc);
}

static int parse_method(const char *s, aflo_method *m) {
    for (int i = 0; i < METHOD_COUNT; i++)
        if (strcmp(s, method_names[i]) == 0) {
            *m = (aflo_method)i;
            return 0;
        }
    return -1;
}

static const char demo_usage[] =
    "usage: aflorad demo [--method aflora|elora|lora|full] [--rank R] [--epochs N]\n"
    "                    [--threads N] [--seed S] [--quiet]\n"
    "  Train the built-in demo model on its synthetic sentiment task in memory (no\n"
    "  files), printing progress, freeze events and every epoch's evaluation.\n";

int demo_main(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(demo_usage, stdout);
        return 0;
    }
    aflo_adapter_config ac = {.method = METHOD_AFLORA,
                              .rank = 4,
                              .alpha = 8.0f,
                              .targets = ALL_MODULES,
                              .projections = PROJ_FFN};
    int epochs = 6, threads = 1;
    unsigned long long seed = TRAIN_DEFAULT_SEED;
    demo_ctx d = {.quiet = false, .every = 10};
    bool rank_set = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quiet") == 0) {
            d.quiet = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "demo: %s needs a value\n", a);
            fputs(demo_usage, stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--method") == 0) {
            if (parse_method(v, &ac.method) != 0) {
                fprintf(stderr, "demo: --method must be aflora, elora, lora or full\n");
                return 2;
            }
        } else if (strcmp(a, "--rank") == 0) {
            ac.rank = atoi(v);
            rank_set = true;
        } else if (strcmp(a, "--epochs") == 0)
            epochs = atoi(v);
        else if (strcmp(a, "--threads") == 0)
            threads = atoi(v);
        else if (strcmp(a, "--seed") == 0)
            seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "demo: unknown option %s\n", a);
            fputs(demo_usage, stderr);
            return 2;
        }
    }
    if (ac.method == METHOD_ELORA && !rank_set) ac.rank = 64; /* the demo's hidden size is 32 */
    engine_set_blas_threads(threads);
    engine_set_threads(threads);

    char err[512];
    aflo_config c;
    synth_demo_config(&c);
    aflo_dataset train, eval;
    dataset_init(&train);
    dataset_init(&eval);
    aflo_model *m = NULL;
    aflo_trainer *t = NULL;
    int rc = 1;
    if (synth_sentiment(&train, SYNTH_DEMO_TRAIN_ROWS, c.vocab_size, seed) != 0 ||
        synth_sentiment(&eval, SYNTH_DEMO_EVAL_ROWS, c.vocab_size, seed + 1) != 0) {
        fprintf(stderr, "demo: out of memory building the dataset\n");
        goto done;
    }
    m = model_create(&c, &ac, TASK_CLASSIFICATION, 2, seed, err, sizeof err);
    if (!m) {
        fprintf(stderr, "demo: %s\n", err);
        goto done;
    }
    synth_demo_weights(m);
    aflo_train_config tc; /* a job's defaults, as for {"model": "demo", "epochs": N, "seed": S} */
    train_config_defaults(&tc, epochs);
    tc.seed = seed;
    t = trainer_create(m, &tc, &train, &eval, err, sizeof err);
    if (!t) {
        fprintf(stderr, "demo: %s\n", err);
        goto done;
    }
    aflo_progress pr = {.ctx = &d, .on_step = on_step, .on_freeze = on_freeze, .on_eval = on_eval};
    aflo_train_summary sum;
    if (trainer_run(t, &pr, NULL, &sum, err, sizeof err) != TRAIN_DONE) {
        fprintf(stderr, "demo: %s\n", err);
        goto done;
    }
    printf("done: %ld steps in %.2f s, final loss %.4f, best accuracy %.4f (epoch %d), "
           "avg trainable params %.0f, GFLOP fwd %.3f bwd-input %.3f bwd-weight %.3f\n",
           sum.steps_done, sum.elapsed_s, sum.last_loss, sum.best_metrics.accuracy,
           JOB_EPOCH_SHOWN(sum.best_epoch), sum.trainable_avg,
           sum.flops.by_kind[FLOP_FORWARD] * 1e-9, sum.flops.by_kind[FLOP_BACKWARD_INPUT] * 1e-9,
           sum.flops.by_kind[FLOP_BACKWARD_WEIGHT] * 1e-9);
    rc = 0;
done:
    trainer_free(t);
    model_free(m);
    dataset_free(&train);
    dataset_free(&eval);
    return rc;
}
