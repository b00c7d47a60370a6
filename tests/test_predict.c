/* test_predict.c — predictors (daemon/predict.c) on the demo model and the
 * API's predict cache under concurrent use.
 *
 * Adapters are written by the engine's exporters from the demo model with
 * different seeds (different heads, so different logits). The cache test
 * runs many threads against three jobs with room for two: every thread's
 * prediction must equal the one a lone predictor gives for its job, and no
 * more than two models may ever be loaded at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter_io.h"
#include "hfmodel.h"
#include "job.h"
#include "predict.h"
#include "testutil.h"

#define JOBS 3
#define THREADS 6
#define ROUNDS 8
#define TEXT "a great and lovely film"

static char errbuf[1024];

typedef struct {
    char models[600];
    char adapters[JOBS][700];
    double reference[JOBS];      /* first logit of TEXT, from a lone predictor */
} demo_env;

static double first_logit(predictor *p, const char *text) {
    predict_status st;
    cJSON *o = predictor_run(p, text, NULL, &st, errbuf, sizeof errbuf);
    if (!o) return NAN;
    double v = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "logits"), 0)->valuedouble;
    cJSON_Delete(o);
    return v;
}

static void make_env(void **state, demo_env *e) {
    path_in(e->models, sizeof e->models, state, "models");
    if (job_ensure_demo(e->models, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/demo", e->models);
    aflo_adapter_config ac = {.method = METHOD_AFLORA, .rank = 4, .alpha = 8,
                              .targets = ALL_MODULES, .projections = PROJ_FFN};
    static const char *const labels[] = {"negative", "positive"};
    for (int j = 0; j < JOBS; j++) {
        aflo_model *m = hfmodel_load(dir, &ac, TASK_CLASSIFICATION, 2, 100 + (uint64_t)j, NULL,
                                     errbuf, sizeof errbuf);
        if (!m) fail_msg("%s", errbuf);
        char name[32];
        snprintf(name, sizeof name, "job%d.safetensors", j);
        path_in(e->adapters[j], sizeof e->adapters[j], state, name);
        adapter_export_info info = {.labels = labels};
        if (adapter_export_native(m, e->adapters[j], &info, errbuf, sizeof errbuf))
            fail_msg("%s", errbuf);
        model_free(m);
        predictor *p = predictor_open(e->models, "demo", e->adapters[j], errbuf, sizeof errbuf);
        if (!p) fail_msg("%s", errbuf);
        e->reference[j] = first_logit(p, TEXT);
        predictor_free(p);
    }
    assert_true(e->reference[0] != e->reference[1] && e->reference[1] != e->reference[2]);
}

typedef struct {
    const demo_env *e;
    predict_cache *cache;
    int id;
    atomic_int *wrong, *over_capacity, *failed;
} worker_arg;

static void *hammer(void *arg) {
    worker_arg *w = arg;
    for (int r = 0; r < ROUNDS; r++) {
        int j = (w->id + r) % JOBS;
        char key[16], err[512];
        snprintf(key, sizeof key, "job%d", j);
        predictor *p = predict_cache_acquire(w->cache, key, w->e->models, "demo",
                                             w->e->adapters[j], err, sizeof err);
        if (!p) {
            atomic_fetch_add(w->failed, 1);
            continue;
        }
        predict_cache_stats st;
        predict_cache_stats_read(w->cache, &st);
        if (st.entries > st.capacity) atomic_fetch_add(w->over_capacity, 1);
        predict_status ps;
        cJSON *o = predictor_run(p, TEXT, NULL, &ps, err, sizeof err);
        double v = o ? cJSON_GetArrayItem(cJSON_GetObjectItem(o, "logits"), 0)->valuedouble : NAN;
        cJSON_Delete(o);
        if (v != w->e->reference[j]) atomic_fetch_add(w->wrong, 1);
        predict_cache_release(w->cache, p);
    }
    return NULL;
}

static void test_cache_shared_by_threads(void **state) {
    demo_env e;
    make_env(state, &e);
    predict_cache *c = predict_cache_new(2);
    assert_non_null(c);
    atomic_int wrong = 0, over = 0, failed = 0;
    pthread_t t[THREADS];
    worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (worker_arg){&e, c, i, &wrong, &over, &failed};
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&failed), 0);
    assert_int_equal(atomic_load(&wrong), 0);
    assert_int_equal(atomic_load(&over), 0);
    predict_cache_stats st;
    predict_cache_stats_read(c, &st);
    assert_int_equal(st.loads + st.hits, THREADS * ROUNDS);
    assert_true(st.loads >= JOBS);
    assert_true(st.entries <= 2);
    predict_cache_free(c);
    assert_null(predict_cache_new(0));
}

/* Hits, a reload when the file is replaced, and no entry left by a failed load. */
static void test_cache_reloads_a_replaced_adapter(void **state) {
    demo_env e;
    make_env(state, &e);
    predict_cache *c = predict_cache_new(1);
    assert_non_null(c);
    predictor *p = predict_cache_acquire(c, "a", e.models, "demo", e.adapters[0], errbuf,
                                         sizeof errbuf);
    assert_non_null(p);
    assert_true(first_logit(p, TEXT) == e.reference[0]);
    predict_cache_release(c, p);
    p = predict_cache_acquire(c, "a", e.models, "demo", e.adapters[0], errbuf, sizeof errbuf);
    assert_non_null(p);
    predict_cache_release(c, p);
    predict_cache_stats st;
    predict_cache_stats_read(c, &st);
    assert_true(st.loads == 1 && st.hits == 1 && st.entries == 1);
    /* job a's adapter replaced by another one (a rename: a new inode) */
    char copy[800];
    snprintf(copy, sizeof copy, "%s.new", e.adapters[0]);
    char cmd[4000];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && mv '%s' '%s'", e.adapters[1], copy, copy,
             e.adapters[0]);
    assert_int_equal(system(cmd), 0);
    p = predict_cache_acquire(c, "a", e.models, "demo", e.adapters[0], errbuf, sizeof errbuf);
    assert_non_null(p);
    assert_true(first_logit(p, TEXT) == e.reference[1]);
    predict_cache_release(c, p);
    predict_cache_stats_read(c, &st);
    assert_true(st.loads == 2 && st.entries == 1);
    /* a failed load leaves nothing behind */
    assert_null(predict_cache_acquire(c, "b", e.models, "demo", "/no/such/file", errbuf,
                                      sizeof errbuf));
    assert_non_null(strstr(errbuf, "/no/such/file"));
    char bad[700];
    path_in(bad, sizeof bad, state, "not-an-adapter.safetensors");
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fputs("garbage", f);
    fclose(f);
    assert_null(predict_cache_acquire(c, "b", e.models, "demo", bad, errbuf, sizeof errbuf));
    /* (room for b was made before its load: the bound holds during loads) */
    predict_cache_stats_read(c, &st);
    assert_true(st.loads == 2 && st.entries == 0);
    p = predict_cache_acquire(c, "a", e.models, "demo", e.adapters[0], errbuf, sizeof errbuf);
    assert_non_null(p);
    predict_cache_release(c, p);
    predict_cache_stats_read(c, &st);
    assert_true(st.loads == 3 && st.entries == 1);
    predict_cache_free(c);
}

/* The adapter forms --adapter takes, and what a predictor knows of its inputs. */
static void test_adapter_forms(void **state) {
    demo_env e;
    make_env(state, &e);
    char run_dir[700], dst[800], cmd[2000];
    path_in(run_dir, sizeof run_dir, state, "adapter");
    assert_int_equal(mkdir(run_dir, 0755), 0);
    snprintf(dst, sizeof dst, "%s/adapter.safetensors", run_dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", e.adapters[2], dst);
    assert_int_equal(system(cmd), 0);
    predictor *p = predictor_open(e.models, "demo", run_dir, errbuf, sizeof errbuf);
    if (!p) fail_msg("%s", errbuf);
    assert_true(first_logit(p, TEXT) == e.reference[2]);
    /* this file records no inputs: any input shape is accepted */
    assert_int_equal(predictor_inputs(p)->n_fields, 0);
    assert_int_equal(predictor_check_pair(p, true, errbuf, sizeof errbuf), 0);
    predict_status st;
    assert_null(predictor_run(p, "bad \xff byte", NULL, &st, errbuf, sizeof errbuf));
    assert_int_equal(st, PREDICT_E_INPUT);
    predictor_free(p);

    char empty[700];
    path_in(empty, sizeof empty, state, "empty");
    assert_int_equal(mkdir(empty, 0755), 0);
    assert_null(predictor_open(e.models, "demo", empty, errbuf, sizeof errbuf));
    assert_non_null(strstr(errbuf, "adapter.safetensors"));
    assert_non_null(strstr(errbuf, "adapter_config.json"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cache_shared_by_threads, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_cache_reloads_a_replaced_adapter, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_adapter_forms, tmpdir_setup, tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
