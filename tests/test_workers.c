/* test_workers.c — the worker pool against a real store and the engine:
 * queued jobs run to success with their events, a cancel stops a running job,
 * a shutdown checkpoints and the next start resumes where it stopped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "job.h"
#include "log.h"
#include "io/safetensors.h"
#include "store.h"
#include "workers.h"

typedef struct {
    char dir[64], db[128], models[128], data[128], train[160];
} env;

static void make_env(env *e) {
    snprintf(e->dir, sizeof e->dir, "/tmp/aflo_workers_XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->db, sizeof e->db, "%s/aflorad.db", e->dir);
    snprintf(e->models, sizeof e->models, "%s/models", e->dir);
    snprintf(e->data, sizeof e->data, "%s/data", e->dir);
    snprintf(e->train, sizeof e->train, "%s/small.tsv", e->dir);
    char err[512];
    assert_int_equal(make_dir(e->data, err, sizeof err), 0);
    assert_int_equal(job_ensure_demo(e->models, err, sizeof err), 0);
    /* the first 120 rows of the demo task */
    char src[256];
    snprintf(src, sizeof src, "%s/demo/train.tsv", e->models);
    FILE *in = fopen(src, "r"), *out = fopen(e->train, "w");
    assert_true(in && out);
    char line[1024];
    for (int i = 0; i < 121 && fgets(line, sizeof line, in); i++) fputs(line, out);
    fclose(in);
    fclose(out);
}

static void remove_env(env *e) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    assert_int_equal(system(cmd), 0);
}

static void create_job(store *s, const env *e, int epochs, char id[STORE_ID_SIZE]) {
    char spec[1024], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\":\"%s/demo\",\"dataset\":{\"train\":\"%s\"},\"epochs\":%d,"
             "\"batch_size\":8,\"threads\":1}",
             e->models, e->train, epochs);
    assert_int_equal(store_job_create(s, spec, NULL, NULL, id, err, sizeof err), 0);
}

static store_job_status wait_status(store *s, const char *id, int timeout_s, bool until_final,
                                    store_job_status want) {
    char err[512];
    for (int i = 0; i < timeout_s * 20; i++) {
        store_job j;
        assert_int_equal(store_job_get(s, id, &j, err, sizeof err), 0);
        store_job_status st = j.status;
        int64_t step = j.progress.step;
        store_job_clear(&j);
        bool final =
            st == STORE_JOB_SUCCEEDED || st == STORE_JOB_FAILED || st == STORE_JOB_CANCELLED;
        if (until_final ? final : (st == want && step >= 2)) return st;
        usleep(50000);
    }
    fail_msg("job %s did not reach the expected state in %d s", id, timeout_s);
    return STORE_JOB_FAILED;
}

static int count_events(store *s, const char *id, store_event_type type, int64_t *first_step) {
    char err[512];
    int k = 0;
    int64_t after = 0;
    for (;;) { /* page by page */
        store_event *ev;
        size_t n;
        assert_int_equal(store_event_list(s, id, after, 1000, &ev, &n, err, sizeof err), 0);
        for (size_t i = 0; i < n; i++) {
            after = ev[i].seq;
            if (ev[i].type != type) continue;
            if (k == 0 && first_step) {
                cJSON *o = cJSON_Parse(ev[i].payload);
                *first_step = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "step"));
                cJSON_Delete(o);
            }
            k++;
        }
        store_event_list_free(ev, n);
        if (n == 0) return k;
    }
}

/* At least n workers; AFLORAD_TEST_WORKERS raises it (make test-tsan runs
 * these tests with two, so idle workers race the busy one for claims). */
static workers *start(const env *e, int n) {
    const char *more = getenv("AFLORAD_TEST_WORKERS");
    if (more && atoi(more) > n) n = atoi(more);
    workers_config cfg = {.db_path = e->db,
                          .data_dir = e->data,
                          .models_dir = e->models,
                          .n_workers = n,
                          .threads_per_job = 1};
    char err[512] = "";
    workers *w = workers_start(&cfg, err, sizeof err);
    if (!w) fprintf(stderr, "%s\n", err);
    assert_non_null(w);
    return w;
}

static void test_jobs_run_to_success(void **st) {
    (void)st;
    env e;
    make_env(&e);
    char err[512];
    store *s = store_open(e.db, err, sizeof err);
    assert_non_null(s);
    char a[STORE_ID_SIZE], b[STORE_ID_SIZE];
    create_job(s, &e, 2, a);
    create_job(s, &e, 2, b);
    workers *w = start(&e, 2);
    workers_notify(w);
    assert_int_equal(wait_status(s, a, 120, true, 0), STORE_JOB_SUCCEEDED);
    assert_int_equal(wait_status(s, b, 120, true, 0), STORE_JOB_SUCCEEDED);
    workers_stop(w);
    /* 120 rows / batch 8 = 15 steps an epoch, 2 epochs */
    assert_int_equal(count_events(s, a, STORE_EVENT_STEP, NULL), 30);
    assert_true(count_events(s, a, STORE_EVENT_FREEZE, NULL) > 0);
    store_job j;
    assert_int_equal(store_job_get(s, a, &j, err, sizeof err), 0);
    assert_int_equal(j.progress.step, 30);
    assert_int_equal(j.progress.frozen, j.progress.freezable);
    assert_non_null(j.metrics);
    assert_non_null(strstr(j.metrics, "\"best_epoch\""));
    store_job_clear(&j);
    char path[512];
    snprintf(path, sizeof path, "%s/jobs/%s/adapter/adapter.safetensors", e.data, a);
    assert_true(file_exists(path));
    snprintf(path, sizeof path, "%s/jobs/%s/adapter/peft/adapter_config.json", e.data, a);
    assert_true(file_exists(path));
    store_close(s);
    remove_env(&e);
}

static void test_cancel_running_job(void **st) {
    (void)st;
    env e;
    make_env(&e);
    char err[512];
    store *s = store_open(e.db, err, sizeof err);
    assert_non_null(s);
    char a[STORE_ID_SIZE];
    create_job(s, &e, 200, a);
    workers *w = start(&e, 1);
    workers_notify(w);
    wait_status(s, a, 60, false, STORE_JOB_RUNNING);
    /* as the API does: mark in the store, then poke the worker */
    assert_int_equal(store_job_request_cancel(s, a, err, sizeof err), STORE_CANCEL_REQUESTED);
    workers_cancel(w, a);
    assert_int_equal(wait_status(s, a, 10, true, 0), STORE_JOB_CANCELLED);
    workers_stop(w);
    store_close(s);
    remove_env(&e);
}

static void test_failed_job_records_error(void **st) {
    (void)st;
    env e;
    make_env(&e);
    char err[512];
    store *s = store_open(e.db, err, sizeof err);
    assert_non_null(s);
    char a[STORE_ID_SIZE];
    assert_int_equal(store_job_create(s,
                                      "{\"model\":\"/nonexistent/model\",\"dataset\":{\"train\":"
                                      "\"x.tsv\"}}",
                                      NULL, NULL, a, err, sizeof err),
                     0);
    workers *w = start(&e, 1);
    workers_notify(w);
    assert_int_equal(wait_status(s, a, 30, true, 0), STORE_JOB_FAILED);
    workers_stop(w);
    store_job j;
    assert_int_equal(store_job_get(s, a, &j, err, sizeof err), 0);
    assert_non_null(j.error);
    assert_non_null(strstr(j.error, "config.json"));
    store_job_clear(&j);
    store_close(s);
    remove_env(&e);
}

/* Shutdown mid-job: it goes back to the queue with a checkpoint (not
 * counted as a crash); the next start runs it on from the checkpoint, not
 * from step 1. */
static void test_shutdown_then_resume(void **st) {
    (void)st;
    env e;
    make_env(&e);
    char err[512];
    store *s = store_open(e.db, err, sizeof err);
    assert_non_null(s);
    char a[STORE_ID_SIZE];
    create_job(s, &e, 6, a);
    workers *w = start(&e, 1);
    workers_notify(w);
    wait_status(s, a, 60, false, STORE_JOB_RUNNING);
    workers_stop(w);
    store_job j;
    assert_int_equal(store_job_get(s, a, &j, err, sizeof err), 0);
    assert_int_equal(j.status, STORE_JOB_QUEUED);
    assert_int_equal(j.crashes, 0);
    int64_t stopped_at = j.progress.step;
    store_job_clear(&j);
    char ckpt[512];
    snprintf(ckpt, sizeof ckpt, "%s/jobs/%s/checkpoint.ckpt", e.data, a);
    assert_true(file_exists(ckpt));
    int steps_before = count_events(s, a, STORE_EVENT_STEP, NULL);

    store_requeue_result rr;
    assert_int_equal(store_requeue_running(s, 3, &rr, err, sizeof err), 0);
    assert_int_equal(rr.requeued, 0); /* nothing was left running */
    w = start(&e, 1);
    workers_notify(w);
    assert_int_equal(wait_status(s, a, 120, true, 0), STORE_JOB_SUCCEEDED);
    workers_stop(w);
    /* every step exactly once: the resumed run starts after the checkpoint */
    int steps_total = count_events(s, a, STORE_EVENT_STEP, NULL);
    assert_int_equal(steps_total, 90);
    assert_true(steps_before >= stopped_at);
    assert_true(steps_before < 90);
    store_close(s);
    remove_env(&e);
}

/* The classifier weights of a job's native adapter. */
static void classifier_of(const env *e, const char *id, float *out, size_t n) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/jobs/%s/adapter/adapter.safetensors", e->data, id);
    st_file *f = st_open(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    if (st_read_f32(f, "classifier.weight", out, n, err, sizeof err)) fail_msg("%s", err);
    st_close(f);
}

/* init_adapter "job:<id>": the worker starts the job from that job's adapter
 * (with learning rates near zero the result stays that adapter), and a job
 * whose data has other labels fails saying so. The two are queued once the
 * first job has succeeded, as POST /jobs requires (409 before): with more
 * than one worker (make test-tsan) they would otherwise start beside it. */
static void test_init_adapter_from_job(void **st) {
    (void)st;
    env e;
    make_env(&e);
    char err[512];
    store *s = store_open(e.db, err, sizeof err);
    assert_non_null(s);
    char a[STORE_ID_SIZE], b[STORE_ID_SIZE], c[STORE_ID_SIZE], spec[1024], other[200];
    create_job(s, &e, 1, a);
    workers *w = start(&e, 1);
    workers_notify(w);
    assert_int_equal(wait_status(s, a, 120, true, 0), STORE_JOB_SUCCEEDED);
    snprintf(spec, sizeof spec,
             "{\"model\":\"%s/demo\",\"dataset\":{\"train\":\"%s\"},\"epochs\":1,"
             "\"batch_size\":8,\"threads\":1,\"learning_rate\":1e-12,"
             "\"head_learning_rate\":1e-12,\"weight_decay\":0,\"init_adapter\":\"job:%s\"}",
             e.models, e.train, a);
    assert_int_equal(store_job_create(s, spec, NULL, NULL, b, err, sizeof err), 0);
    /* the same sentences labelled x / y */
    snprintf(other, sizeof other, "%s/xy.tsv", e.dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "sed -e 's/\tnegative$/\tx/' -e 's/\tpositive$/\ty/' '%s' > '%s'",
             e.train, other);
    assert_int_equal(system(cmd), 0);
    snprintf(spec, sizeof spec,
             "{\"model\":\"%s/demo\",\"dataset\":{\"train\":\"%s\"},\"epochs\":1,"
             "\"threads\":1,\"init_adapter\":\"job:%s\"}",
             e.models, other, a);
    assert_int_equal(store_job_create(s, spec, NULL, NULL, c, err, sizeof err), 0);
    workers_notify(w);
    assert_int_equal(wait_status(s, b, 120, true, 0), STORE_JOB_SUCCEEDED);
    assert_int_equal(wait_status(s, c, 120, true, 0), STORE_JOB_FAILED);
    workers_stop(w);
    float wa[2 * 32], wb[2 * 32]; /* demo: 2 labels x hidden 32 */
    classifier_of(&e, a, wa, 64);
    classifier_of(&e, b, wb, 64);
    for (int i = 0; i < 64; i++) assert_true(fabsf(wa[i] - wb[i]) < 1e-6f);
    store_job j;
    assert_int_equal(store_job_get(s, c, &j, err, sizeof err), 0);
    assert_non_null(j.error);
    if (!strstr(j.error, "init_adapter: the adapter's labels [\"negative\", \"positive\"] differ"))
        fail_msg("%s", j.error);
    store_job_clear(&j);
    store_close(s);
    remove_env(&e);
}

/* Clean shutdowns are not crashes: stopping and restarting the daemon
 * around a long job more often than the crash limit (3, serve.c) neither
 * fails it nor loses its progress. It used to count every restart as an
 * attempt and give up after the third ("gave up after 3 attempts"). */
static void test_clean_shutdowns_do_not_count(void **st) {
    (void)st;
    env e;
    make_env(&e);
    char err[512];
    store *s = store_open(e.db, err, sizeof err);
    assert_non_null(s);
    char a[STORE_ID_SIZE];
    /* long enough that no run between restarts finishes it (valgrind runs
     * ~50x slower, so fewer steps keep its final run short) */
    int epochs = getenv("AFLORAD_VALGRIND") ? 10 : 60;
    create_job(s, &e, epochs, a);
    int64_t last_step = 0;
    for (int restart = 0; restart < 4; restart++) {
        store_requeue_result rr; /* what serve does at every start */
        assert_int_equal(store_requeue_running(s, 3, &rr, err, sizeof err), 0);
        assert_int_equal(rr.failed, 0);
        workers *w = start(&e, 1);
        workers_notify(w);
        /* until it has made progress in this run */
        for (int i = 0; i < 60000; i++) {
            store_job j;
            assert_int_equal(store_job_get(s, a, &j, err, sizeof err), 0);
            bool moved = j.status == STORE_JOB_RUNNING && j.progress.step >= last_step + 2;
            store_job_clear(&j);
            if (moved) break;
            usleep(2000);
        }
        workers_stop(w);
        store_job j;
        assert_int_equal(store_job_get(s, a, &j, err, sizeof err), 0);
        assert_true(j.progress.step > last_step);
        last_step = j.progress.step;
        store_job_clear(&j);
    }
    store_requeue_result rr;
    assert_int_equal(store_requeue_running(s, 3, &rr, err, sizeof err), 0);
    workers *w = start(&e, 1);
    workers_notify(w);
    assert_int_equal(wait_status(s, a, 300, true, 0), STORE_JOB_SUCCEEDED);
    workers_stop(w);
    /* every step exactly once over the five runs */
    assert_int_equal(count_events(s, a, STORE_EVENT_STEP, NULL), epochs * 15);
    store_close(s);
    remove_env(&e);
}

int main(void) {
    log_set_level(LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_run_to_success),
        cmocka_unit_test(test_cancel_running_job),
        cmocka_unit_test(test_failed_job_records_error),
        cmocka_unit_test(test_shutdown_then_resume),
        cmocka_unit_test(test_init_adapter_from_job),
        cmocka_unit_test(test_clean_shutdowns_do_not_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
