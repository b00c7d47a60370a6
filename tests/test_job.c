/* test_job.c — job_run's handling of an existing checkpoint: it resumes
 * only a checkpoint made with the same spec and data, refuses any other
 * naming each difference (before loading the model), lets `threads` differ
 * with a note, and starts over when told to (aflorad run --restart). Also
 * job_spec_differences on its own. Runs the demo model on 120 rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "job.h"
#include "spec.h"
#include "testutil.h"

/* ---- job_spec_differences ----------------------------------------------------- */

static void test_spec_differences(void **state) {
    (void)state;
    char out[512];
    const char *base = "{\"model\":\"demo\",\"epochs\":3,\"learning_rate\":0.01,\"threads\":1,"
                       "\"freeze\":{\"delta_t\":10,\"beta1\":0.85},"
                       "\"dataset\":{\"train\":\"a.tsv\",\"format\":\"auto\"}}";
    assert_int_equal(job_spec_differences(base, base, out, sizeof out), 0);
    assert_string_equal(out, "");
    /* threads and the dataset paths may differ */
    const char *free_fields = "{\"model\":\"demo\",\"epochs\":3,\"learning_rate\":0.01,"
                              "\"threads\":4,\"freeze\":{\"delta_t\":10,\"beta1\":0.85},"
                              "\"dataset\":{\"train\":\"moved/a.tsv\",\"eval\":\"b.tsv\","
                              "\"format\":\"auto\"}}";
    assert_int_equal(job_spec_differences(base, free_fields, out, sizeof out), 0);
    /* everything else is named, nested fields by their dotted path */
    const char *changed = "{\"model\":\"demo\",\"epochs\":4,\"learning_rate\":0.02,\"threads\":1,"
                          "\"freeze\":{\"delta_t\":20,\"beta1\":0.85},"
                          "\"dataset\":{\"train\":\"a.tsv\",\"format\":\"tsv\"},\"seed\":7}";
    assert_int_equal(job_spec_differences(base, changed, out, sizeof out), 5);
    assert_string_equal(out,
                        "epochs: checkpoint 3, spec 4; learning_rate: checkpoint 0.01, spec 0.02; "
                        "freeze.delta_t: checkpoint 10, spec 20; dataset.format: checkpoint "
                        "\"auto\", spec \"tsv\"; seed: checkpoint (not set), spec 7");
    /* a short buffer truncates but still counts */
    assert_int_equal(job_spec_differences(base, changed, out, 20), 5);
    assert_true(strlen(out) < 20);
    /* a record from before freeze.enabled/sensitivity existed ran with true
     * and "grad": the same run at those values, a different one otherwise */
    const char *added = "{\"model\":\"demo\",\"epochs\":3,\"learning_rate\":0.01,\"threads\":1,"
                        "\"freeze\":{\"enabled\":true,\"sensitivity\":\"grad\",\"delta_t\":10,"
                        "\"beta1\":0.85},\"dataset\":{\"train\":\"a.tsv\",\"format\":\"auto\"}}";
    assert_int_equal(job_spec_differences(base, added, out, sizeof out), 0);
    const char *other = "{\"model\":\"demo\",\"epochs\":3,\"learning_rate\":0.01,\"threads\":1,"
                        "\"freeze\":{\"enabled\":false,\"sensitivity\":\"weight_grad\","
                        "\"delta_t\":10,\"beta1\":0.85},\"dataset\":{\"train\":\"a.tsv\","
                        "\"format\":\"auto\"}}";
    assert_int_equal(job_spec_differences(base, other, out, sizeof out), 2);
    assert_string_equal(out, "freeze.enabled: checkpoint (not set), spec false; "
                             "freeze.sensitivity: checkpoint (not set), spec \"weight_grad\"");
    /* both recorded: compared like any field, whichever way round */
    assert_int_equal(job_spec_differences(added, other, out, sizeof out), 2);
    assert_string_equal(out, "freeze.enabled: checkpoint true, spec false; "
                             "freeze.sensitivity: checkpoint \"grad\", spec \"weight_grad\"");
    assert_int_equal(job_spec_differences(other, added, out, sizeof out), 2);
    assert_int_equal(job_spec_differences(other, base, out, sizeof out), 2);
    assert_int_equal(job_spec_differences("[1]", base, out, sizeof out), -1);
    assert_int_equal(job_spec_differences(base, "{not json", out, sizeof out), -1);
}

/* ---- job_run and checkpoints -------------------------------------------------- */

typedef struct {
    char dir[256], models[300], out[300], train[300], other[300];
} env;

typedef struct {
    atomic_int cancel;
    long cancel_at;    /* stop after this step (0: never) */
    long first_step;   /* first step reported */
    long resumed_from; /* -1: no resume */
    char logs[4096];
} run_log;

static void on_step(void *ctx, const aflo_step_info *s) {
    run_log *l = ctx;
    if (!l->first_step) l->first_step = s->step;
    if (l->cancel_at && s->step >= l->cancel_at) atomic_store(&l->cancel, 1);
}

static void on_log(void *ctx, const char *msg) {
    run_log *l = ctx;
    size_t n = strlen(l->logs);
    snprintf(l->logs + n, sizeof l->logs - n, "%s\n", msg);
}

static void on_resume(void *ctx, long step) {
    run_log *l = ctx;
    l->resumed_from = step;
}

static void copy_rows(const char *from, const char *to, int rows) {
    FILE *in = fopen(from, "r"), *out = fopen(to, "w");
    assert_true(in && out);
    char line[1024];
    for (int i = 0; i <= rows && fgets(line, sizeof line, in); i++) fputs(line, out);
    fclose(in);
    fclose(out);
}

static int env_setup(void **state) {
    if (tmpdir_setup(state) != 0) return -1;
    env *e = calloc(1, sizeof *e);
    if (!e) return -1;
    snprintf(e->dir, sizeof e->dir, "%s", (const char *)*state);
    free(*state); /* env_teardown hands tmpdir_teardown a copy again */
    snprintf(e->models, sizeof e->models, "%s/models", e->dir);
    snprintf(e->out, sizeof e->out, "%s/out", e->dir);
    snprintf(e->train, sizeof e->train, "%s/train.tsv", e->dir);
    snprintf(e->other, sizeof e->other, "%s/other.tsv", e->dir);
    char err[512], src[400];
    if (job_ensure_demo(e->models, err, sizeof err) != 0) return -1;
    snprintf(src, sizeof src, "%s/demo/train.tsv", e->models);
    copy_rows(src, e->train, 120);
    copy_rows(src, e->other, 96); /* fewer rows: other data */
    *state = e;
    return 0;
}

static int env_teardown(void **state) {
    env *e = *state;
    char *dir = strdup(e->dir);
    free(e);
    *state = dir;
    return tmpdir_teardown(state);
}

/* Run a spec (JSON text) into e->out, stopping after step cancel_at (0:
 * never); the outcome, with the message in err and what happened in *l. */
static job_outcome run_spec(env *e, const char *spec_json, bool restart, long cancel_at, run_log *l,
                            char *err, size_t errlen) {
    aflo_job_spec spec;
    aflo_spec_error se;
    if (spec_parse(spec_json, strlen(spec_json), &spec, &se) != 0) fail_msg("%s", se.message);
    memset(l, 0, sizeof *l);
    l->resumed_from = -1;
    l->cancel_at = cancel_at;
    job_args a = {.spec = &spec,
                  .models_dir = e->models,
                  .work_dir = e->out,
                  .cancel = &l->cancel,
                  .ev = {.ctx = l, .on_step = on_step, .on_log = on_log, .on_resume = on_resume},
                  .restart = restart,
                  .mismatch_hint = "HINT"};
    job_result r;
    err[0] = '\0';
    job_outcome o = job_run(&a, &r, err, errlen);
    job_result_free(&r);
    spec_free(&spec);
    return o;
}

static void spec_text(char *out, size_t cap, const env *e, const char *train, const char *extra) {
    snprintf(out, cap,
             "{\"model\":\"%s/demo\",\"dataset\":{\"train\":\"%s\"},\"epochs\":4,"
             "\"batch_size\":8%s}",
             e->models, train, extra);
}

/* The base run (threads 1), stopped after step 5: a checkpoint in e->out. */
static void make_checkpoint(env *e, run_log *l) {
    char spec[1024], err[1024];
    spec_text(spec, sizeof spec, e, e->train, ",\"threads\":1");
    if (run_spec(e, spec, false, 5, l, err, sizeof err) != JOB_CANCELLED) fail_msg("%s", err);
    char ckpt[400];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.ckpt", e->out);
    assert_true(file_exists(ckpt));
}

static void test_changed_spec_is_refused_naming_the_field(void **state) {
    env *e = *state;
    run_log *l = calloc(1, sizeof *l);
    assert_non_null(l);
    make_checkpoint(e, l);
    char spec[1024], err[1024];
    spec_text(spec, sizeof spec, e, e->train, ",\"threads\":1,\"learning_rate\":0.02");
    assert_int_equal(run_spec(e, spec, false, 0, l, err, sizeof err), JOB_FAILED);
    assert_non_null(strstr(err, "learning_rate: checkpoint 0.01, spec 0.02"));
    assert_non_null(strstr(err, "HINT"));
    assert_int_equal(l->first_step, 0); /* nothing trained */
    spec_text(spec, sizeof spec, e, e->train, ",\"threads\":1,\"seed\":1,\"dropout\":false");
    assert_int_equal(run_spec(e, spec, false, 0, l, err, sizeof err), JOB_FAILED);
    assert_non_null(strstr(err, "seed: checkpoint 42, spec 1"));
    assert_non_null(strstr(err, "dropout: checkpoint true, spec false"));
    /* the checkpoint is untouched: the right spec still resumes it */
    spec_text(spec, sizeof spec, e, e->train, ",\"threads\":1");
    assert_int_equal(run_spec(e, spec, false, 0, l, err, sizeof err), JOB_SUCCEEDED);
    assert_int_equal(l->resumed_from, 5);
    assert_int_equal(l->first_step, 6);
    free(l);
}

static void test_changed_data_is_refused(void **state) {
    env *e = *state;
    run_log *l = calloc(1, sizeof *l);
    assert_non_null(l);
    make_checkpoint(e, l);
    char spec[1024], err[1024];
    spec_text(spec, sizeof spec, e, e->other, ",\"threads\":1");
    assert_int_equal(run_spec(e, spec, false, 0, l, err, sizeof err), JOB_FAILED);
    assert_non_null(strstr(err, "dataset.train: the data differs"));
    assert_non_null(strstr(err, "120 rows"));
    assert_non_null(strstr(err, "96 rows"));
    /* an evaluation set the checkpoint did not have */
    char eval[1400];
    snprintf(eval, sizeof eval,
             "{\"model\":\"%s/demo\",\"dataset\":{\"train\":\"%s\",\"eval\":\"%s\"},"
             "\"epochs\":4,\"batch_size\":8,\"threads\":1}",
             e->models, e->train, e->other);
    assert_int_equal(run_spec(e, eval, false, 0, l, err, sizeof err), JOB_FAILED);
    assert_non_null(strstr(err, "dataset.eval: checkpoint has none, spec has one"));
    /* the same rows under another name resume */
    char moved[400];
    snprintf(moved, sizeof moved, "%s/moved.tsv", e->dir);
    assert_int_equal(rename(e->train, moved), 0);
    spec_text(spec, sizeof spec, e, moved, ",\"threads\":1");
    assert_int_equal(run_spec(e, spec, false, 0, l, err, sizeof err), JOB_SUCCEEDED);
    assert_int_equal(l->resumed_from, 5);
    free(l);
}

static void test_threads_may_differ_and_restart_starts_over(void **state) {
    env *e = *state;
    run_log *l = calloc(1, sizeof *l);
    assert_non_null(l);
    make_checkpoint(e, l);
    char spec[1024], err[1024];
    /* more threads: resumed, with a note */
    spec_text(spec, sizeof spec, e, e->train, ",\"threads\":2");
    assert_int_equal(run_spec(e, spec, false, 0, l, err, sizeof err), JOB_SUCCEEDED);
    assert_int_equal(l->resumed_from, 5);
    assert_non_null(strstr(l->logs, "threads: checkpoint 1, now 2"));

    /* restart: a changed spec runs from step 1 */
    make_checkpoint(e, l);
    spec_text(spec, sizeof spec, e, e->train, ",\"threads\":1,\"learning_rate\":0.02");
    assert_int_equal(run_spec(e, spec, true, 0, l, err, sizeof err), JOB_SUCCEEDED);
    assert_int_equal(l->resumed_from, -1);
    assert_int_equal(l->first_step, 1);
    assert_non_null(strstr(l->logs, "discarded the checkpoint"));
    free(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_differences),
        cmocka_unit_test_setup_teardown(test_changed_spec_is_refused_naming_the_field, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_changed_data_is_refused, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_threads_may_differ_and_restart_starts_over, env_setup,
                                        env_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
