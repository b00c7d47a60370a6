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

#include "io/adapter_native.h"
#include "io/adapter_peft.h"
#include "io/hfmodel.h"
#include "io/hfmodel_export.h"
#include "base/rng.h"
#include "job.h"
#include "model/generate.h"
#include "predict.h"
#include "io/safetensors.h"
#include "testutil.h"

#define JOBS 3
#define THREADS 6
#define ROUNDS 8
#define TEXT "a great and lovely film"

static char errbuf[1024];

typedef struct {
    char models[600];
    char adapters[JOBS][700];
    double reference[JOBS]; /* first logit of TEXT, from a lone predictor */
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
    aflo_adapter_config ac = {.method = METHOD_AFLORA,
                              .rank = 4,
                              .alpha = 8,
                              .targets = ALL_MODULES,
                              .projections = PROJ_FFN};
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
        predictor *p = predict_cache_acquire(w->cache, key, w->e->models, "demo", w->e->adapters[j],
                                             err, sizeof err);
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
    predictor *p =
        predict_cache_acquire(c, "a", e.models, "demo", e.adapters[0], errbuf, sizeof errbuf);
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
    assert_null(
        predict_cache_acquire(c, "b", e.models, "demo", "/no/such/file", errbuf, sizeof errbuf));
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

/* Label names in predictions agree across the forms an adapter takes: the
 * native file's metadata, the PEFT folder's config.json and method full's
 * model/ folder name every class alike (the classifier is set so that each
 * class wins in turn); the PEFT folder without config.json (one PEFT wrote)
 * names the ids, and one whose config.json names another class count is
 * refused. The inputs recorded with the adapter come back from both files. */
static const char *label_of(predictor *p) {
    static char label[64];
    predict_status st;
    cJSON *o = predictor_run(p, TEXT, NULL, &st, errbuf, sizeof errbuf);
    if (!o) fail_msg("%s", errbuf);
    snprintf(label, sizeof label, "%s", cJSON_GetObjectItem(o, "label")->valuestring);
    cJSON_Delete(o);
    return label;
}

static void make_class_win(aflo_model *m, int k) {
    aflo_param *w = model_find_param(m, "classifier.weight");
    aflo_param *b = model_find_param(m, "classifier.bias");
    assert_non_null(w);
    assert_non_null(b);
    memset(w->data, 0, w->size * sizeof *w->data);
    for (size_t i = 0; i < b->size; i++) b->data[i] = (int)i == k ? 10.0f : 0.0f;
}

static void test_label_names_agree_across_forms(void **state) {
    char models[600], demo[700], native[700], peft[700], full[700], cfg[800];
    path_in(models, sizeof models, state, "models");
    if (job_ensure_demo(models, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    snprintf(demo, sizeof demo, "%s/demo", models);
    path_in(native, sizeof native, state, "adapter.safetensors");
    path_in(peft, sizeof peft, state, "peft");
    path_in(full, sizeof full, state, "model");
    enum { L = 3 };
    static const char *const labels[L] = {"neg", "neu", "pos \"q\""};
    adapter_inputs in = {.n_fields = 1, .has_header = false, .format = TEXTDATA_TSV};
    in.fields[0].by_index = true;
    in.fields[0].index = 3;
    adapter_export_info info = {.labels = labels, .inputs = &in};
    aflo_adapter_config ac = {.method = METHOD_AFLORA,
                              .rank = 4,
                              .alpha = 8,
                              .targets = ALL_MODULES,
                              .projections = PROJ_FFN};
    aflo_adapter_config fc = {.method = METHOD_FULL};
    for (int k = 0; k < L; k++) {
        aflo_model *m =
            hfmodel_load(demo, &ac, TASK_CLASSIFICATION, L, 7, NULL, errbuf, sizeof errbuf);
        aflo_model *f =
            hfmodel_load(demo, &fc, TASK_CLASSIFICATION, L, 7, NULL, errbuf, sizeof errbuf);
        if (!m || !f) fail_msg("%s", errbuf);
        make_class_win(m, k);
        make_class_win(f, k);
        if (adapter_export_native(m, native, &info, errbuf, sizeof errbuf) ||
            adapter_export_peft(m, peft, &info, errbuf, sizeof errbuf) ||
            adapter_export_hf_model(f, full, demo, &info, errbuf, sizeof errbuf))
            fail_msg("%s", errbuf);
        model_free(m);
        model_free(f);
        predictor *pn = predictor_open(models, "demo", native, errbuf, sizeof errbuf);
        predictor *pp = pn ? predictor_open(models, "demo", peft, errbuf, sizeof errbuf) : NULL;
        predictor *pf = pp ? predictor_open(models, full, NULL, errbuf, sizeof errbuf) : NULL;
        if (!pf) fail_msg("%s", errbuf);
        assert_string_equal(label_of(pn), labels[k]);
        assert_string_equal(label_of(pp), labels[k]);
        assert_string_equal(label_of(pf), labels[k]);
        const adapter_inputs *a = predictor_inputs(pn), *b = predictor_inputs(pp),
                             *c = predictor_inputs(pf);
        assert_true(a->n_fields == 1 && b->n_fields == 1 && c->n_fields == 1);
        assert_true(a->fields[0].by_index && b->fields[0].by_index && c->fields[0].by_index);
        assert_true(a->fields[0].index == 3 && b->fields[0].index == 3 && c->fields[0].index == 3);
        assert_true(!a->has_header && !b->has_header && !c->has_header);
        predictor_free(pn);
        predictor_free(pp);
        predictor_free(pf);
    }
    /* a PEFT folder without config.json: the ids */
    snprintf(cfg, sizeof cfg, "%s/config.json", peft);
    assert_int_equal(unlink(cfg), 0);
    predictor *p = predictor_open(models, "demo", peft, errbuf, sizeof errbuf);
    if (!p) fail_msg("%s", errbuf);
    assert_string_equal(label_of(p), "2");
    predictor_free(p);
    /* a config.json naming another number of classes than the classifier's */
    FILE *fp = fopen(cfg, "w");
    assert_non_null(fp);
    fputs("{\"id2label\": {\"0\": \"a\", \"1\": \"b\"}}", fp);
    assert_int_equal(fclose(fp), 0);
    assert_null(predictor_open(models, "demo", peft, errbuf, sizeof errbuf));
    assert_non_null(strstr(errbuf, "names 2 classes, but the adapter's classifier has 3"));
}

/* The whole of a small file, NUL-terminated (malloc'd). */
static char *slurp(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = buf ? fread(buf, 1, (1 << 16) - 1, fp) : 0;
    fclose(fp);
    if (buf && n == 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* A RoBERTa model (the demo's weights and tokenizer under model_type
 * "roberta"): the PEFT folder's head is classifier.dense/out_proj, which
 * predict finds through the family; method full's folder too; and a text
 * longer than the positions reach is cut to what RoBERTa's numbering
 * (from pad_token_id + 1) leaves, not to max_position_embeddings. */
static void test_roberta_model(void **state) {
    char models[600], demo[700], rob[700], peft[700], full[700], cmd[2000], path[800];
    path_in(models, sizeof models, state, "models");
    if (job_ensure_demo(models, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    snprintf(demo, sizeof demo, "%s/demo", models);
    snprintf(rob, sizeof rob, "%s/demo-roberta", models);
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", demo, rob);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/config.json", rob);
    char *text = slurp(path);
    assert_non_null(text);
    cJSON *cfg = cJSON_Parse(text);
    free(text);
    assert_non_null(cfg);
    cJSON_DeleteItemFromObject(cfg, "model_type");
    cJSON_DeleteItemFromObject(cfg, "architectures");
    cJSON_AddStringToObject(cfg, "model_type", "roberta");
    char *out = cJSON_Print(cfg);
    cJSON_Delete(cfg);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(out, fp);
    assert_int_equal(fclose(fp), 0);
    free(out);

    path_in(peft, sizeof peft, state, "peft");
    path_in(full, sizeof full, state, "model");
    enum { L = 3 };
    static const char *const labels[L] = {"a", "b", "c"};
    adapter_export_info info = {.labels = labels};
    aflo_adapter_config ac = {.method = METHOD_AFLORA,
                              .rank = 4,
                              .alpha = 8,
                              .targets = ALL_MODULES,
                              .projections = PROJ_FFN};
    aflo_adapter_config fc = {.method = METHOD_FULL};
    aflo_model *m = hfmodel_load(rob, &ac, TASK_CLASSIFICATION, L, 7, NULL, errbuf, sizeof errbuf);
    aflo_model *f = hfmodel_load(rob, &fc, TASK_CLASSIFICATION, L, 7, NULL, errbuf, sizeof errbuf);
    if (!m || !f) fail_msg("%s", errbuf);
    assert_string_equal(model_config(m)->model_type, "roberta");
    make_class_win(m, 1);
    make_class_win(f, 2);
    if (adapter_export_peft(m, peft, &info, errbuf, sizeof errbuf) ||
        adapter_export_hf_model(f, full, rob, &info, errbuf, sizeof errbuf))
        fail_msg("%s", errbuf);
    model_free(m);
    model_free(f);
    snprintf(path, sizeof path, "%s/%s", peft, PEFT_WEIGHTS_FILE);
    st_file *st = st_open(path, errbuf, sizeof errbuf);
    if (!st) fail_msg("%s", errbuf);
    assert_true(st_find(st, "base_model.model.classifier.out_proj.weight") >= 0);
    assert_true(st_find(st, "base_model.model.classifier.weight") < 0);
    st_close(st);

    predictor *pp = predictor_open(models, "demo-roberta", peft, errbuf, sizeof errbuf);
    predictor *pf = pp ? predictor_open(models, full, NULL, errbuf, sizeof errbuf) : NULL;
    if (!pf) fail_msg("%s", errbuf);
    assert_string_equal(label_of(pp), "b");
    assert_string_equal(label_of(pf), "c");
    /* far more words than the 64 positions: cut to 63 tokens, and predicted */
    char long_text[2000] = "";
    for (int i = 0; i < 150; i++) strcat(long_text, "great ");
    predict_status ps;
    for (int k = 0; k < 2; k++) {
        cJSON *o = predictor_run(k ? pf : pp, long_text, NULL, &ps, errbuf, sizeof errbuf);
        if (!o) fail_msg("%s", errbuf);
        cJSON_Delete(o);
    }
    predictor_free(pp);
    predictor_free(pf);
}

/* A causal LM: a random tiny LLaMA written as a LlamaForCausalLM folder
 * with the sp_bpe tokenizer, generated from as a base model through the
 * cache (keyed "model:<name>"), as generate() does on the same weights;
 * refusals of the request's fault say so; an entry of the other kind under
 * the same key is reloaded. */
static void test_causal_lm(void **state) {
    char models[600], dir[700];
    path_in(models, sizeof models, state, "models");
    assert_int_equal(mkdir(models, 0755), 0);
    snprintf(dir, sizeof dir, "%s/llama", models);
    tokenizer *tok = tokenizer_load_dir("tests/tokenizer_fixtures/sp_bpe", errbuf, sizeof errbuf);
    assert_non_null(tok);
    aflo_config c = {.model_type = "llama",
                     .vocab_size = tokenizer_vocab_size(tok),
                     .hidden_size = 16,
                     .intermediate_size = 24,
                     .num_hidden_layers = 2,
                     .num_attention_heads = 4,
                     .num_key_value_heads = 2,
                     .max_position_embeddings = 32,
                     .type_vocab_size = 1,
                     .rms_norm_eps = 1e-5f,
                     .rope_theta = 10000.0f,
                     .layer_norm_eps = 1e-12f};
    tokenizer_free(tok);
    aflo_adapter_config full = {.method = METHOD_FULL};
    aflo_model *m = model_create(&c, &full, TASK_CAUSAL_LM, c.vocab_size, 5, errbuf, sizeof errbuf);
    assert_non_null(m);
    aflo_rng rng;
    rng_seed(&rng, 6);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        for (size_t k = 0; k < p->size; k++) p->data[k] = rng_uniform_range(&rng, -0.4f, 0.4f);
    }
    if (adapter_export_hf_model(m, dir, "tests/tokenizer_fixtures/sp_bpe", NULL, errbuf,
                                sizeof errbuf))
        fail_msg("%s", errbuf);
    int32_t prompt[] = {1, 300, 17};
    gen_params gp = gen_params_default();
    gp.max_new_tokens = 10;
    gp.eos_id = 2; /* the tokenizer's EOS, which predictor_generate picks */
    gen_result want;
    assert_int_equal(generate(m, prompt, 3, &gp, &want, errbuf, sizeof errbuf), 0);
    model_free(m);

    predict_cache *cache = predict_cache_new(1);
    predictor *p = predict_cache_acquire_lm(cache, "model:llama", models, "llama", NULL, errbuf,
                                            sizeof errbuf);
    if (!p) fail_msg("%s", errbuf);
    lmgen_request req = {.kind = LMGEN_PROMPT_IDS, .ids = prompt, .n_ids = 3, .gp = gp};
    lmgen_report rep;
    predict_status st;
    assert_int_equal(predictor_generate(p, &req, NULL, NULL, &rep, &st, errbuf, sizeof errbuf), 0);
    assert_int_equal(st, PREDICT_OK);
    assert_int_equal(rep.r.n, want.n);
    assert_memory_equal(rep.r.ids, want.ids, (size_t)want.n * sizeof *want.ids);
    assert_non_null(rep.text);
    lmgen_report_free(&rep);
    /* the request's faults: an id outside the vocabulary, a prompt that
     * fills the 32 positions */
    int32_t bad[32] = {1, 5000};
    req.ids = bad;
    req.n_ids = 2;
    assert_int_equal(predictor_generate(p, &req, NULL, NULL, &rep, &st, errbuf, sizeof errbuf), -1);
    assert_int_equal(st, PREDICT_E_INPUT);
    assert_non_null(strstr(errbuf, "vocabulary"));
    bad[1] = 7;
    req.n_ids = 32;
    assert_int_equal(predictor_generate(p, &req, NULL, NULL, &rep, &st, errbuf, sizeof errbuf), -1);
    assert_int_equal(st, PREDICT_E_INPUT);
    assert_non_null(strstr(errbuf, "positions"));
    /* it generates, it does not classify */
    assert_null(predictor_run(p, "text", NULL, &st, errbuf, sizeof errbuf));
    assert_int_equal(st, PREDICT_E_INPUT);
    predict_cache_release(cache, p);
    /* a second request is a hit */
    p = predict_cache_acquire_lm(cache, "model:llama", models, "llama", NULL, errbuf,
                                 sizeof errbuf);
    assert_non_null(p);
    predict_cache_release(cache, p);
    predict_cache_stats cs;
    predict_cache_stats_read(cache, &cs);
    assert_int_equal(cs.loads, 1);
    assert_int_equal(cs.hits, 1);
    assert_int_equal(cs.entries, 1);
    predict_cache_free(cache);
    gen_result_free(&want);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cache_shared_by_threads, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_cache_reloads_a_replaced_adapter, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_adapter_forms, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_label_names_agree_across_forms, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_roberta_model, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_causal_lm, tmpdir_setup, tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
