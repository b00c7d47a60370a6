/* test_spec.c — the job spec (daemon/spec.c): defaults, strict validation,
 * the normalised JSON round trip, the conversions to engine configs and the
 * generated documentation.
 *
 * Expected defaults come from the task statement and aflora.md (rank 4 / 1024
 * / 8 by method, alpha 2 x rank, final phase 70% of epochs, initial warm-up 1
 * epoch or 10% of a run shorter than 10 epochs, batch 32, ...), worked out by
 * hand here, never read back from the table. Error cases are written as
 * JSON with single quotes (turned into double quotes by J()) and each one
 * states the error code and the exact field path the API must report. The
 * list of field names the documentation must contain is typed out here from
 * the task statement, not taken from spec_fields[]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/bert.h"
#include "model/family.h"
#include "presets.h"
#include "spec.h"

/* JSON written with ' for " so the cases stay readable. Returns a static
 * buffer (one at a time is enough). */
static const char *J(const char *s) {
    static char buf[8192];
    size_t n = strlen(s);
    if (n >= sizeof buf) fail_msg("J(): case too long");
    for (size_t i = 0; i <= n; i++) buf[i] = s[i] == '\'' ? '"' : s[i];
    return buf;
}

static void parse_ok_n(const char *json, size_t len, aflo_job_spec *s) {
    aflo_spec_error e;
    if (spec_parse(json, len, s, &e) != 0)
        fail_msg("spec rejected: %s [%s]\n  %s", e.message, spec_error_code_name(e.code), json);
}

static void parse_ok(const char *json, aflo_job_spec *s) { parse_ok_n(json, strlen(json), s); }

/* Parse must fail with this code and field; the message must start with
 * "<field>: " when there is a field; the output must be left empty. Returns
 * false (after printing why) instead of failing, so a table of cases reports
 * every mismatch at once. */
static bool check_error_n(const char *json, size_t len, spec_error_code code, const char *field,
                          aflo_spec_error *out_err) {
    aflo_job_spec s;
    aflo_spec_error e;
    memset(&s, 0x5A, sizeof s);
    if (spec_parse(json, len, &s, &e) == 0) {
        print_error("accepted, want %s at '%s':\n  %.200s\n", spec_error_code_name(code), field,
                    json);
        spec_free(&s);
        return false;
    }
    bool ok = true;
    if (e.code != code || strcmp(e.field, field) != 0) {
        print_error("got %s at '%s' (%s), want %s at '%s':\n  %.200s\n",
                    spec_error_code_name(e.code), e.field, e.message, spec_error_code_name(code),
                    field, json);
        ok = false;
    }
    size_t fl = strlen(field);
    if (fl && (strncmp(e.message, field, fl) != 0 || strncmp(e.message + fl, ": ", 2) != 0)) {
        print_error("message does not start with '%s: ': %s\n", field, e.message);
        ok = false;
    }
    if (s.model || s.dataset.train || s.dataset.labels || s.epochs != 0) {
        print_error("output not left empty after an error\n");
        ok = false;
    }
    if (out_err) *out_err = e;
    return ok;
}

static bool check_error(const char *json, spec_error_code code, const char *field) {
    return check_error_n(json, strlen(json), code, field, NULL);
}

static void expect_error(const char *json, spec_error_code code, const char *field,
                         const char *words) {
    aflo_spec_error e;
    if (!check_error_n(json, strlen(json), code, field, &e)) fail_msg("wrong error");
    if (words && !strstr(e.message, words)) fail_msg("message '%s' lacks '%s'", e.message, words);
}

/* ---- defaults ------------------------------------------------------------- */

static void test_minimal_demo_gets_every_default(void **state) {
    (void)state;
    aflo_job_spec s;
    parse_ok(J("{'model':'demo'}"), &s);
    assert_string_equal(s.model, "demo");
    assert_true(spec_is_demo(&s));
    assert_int_equal(s.task, TASK_CLASSIFICATION);
    assert_int_equal(s.num_labels, 2); /* the demo task is binary */
    assert_false(s.has_dataset);
    assert_null(s.dataset.train);
    assert_int_equal(s.method, METHOD_AFLORA);
    assert_int_equal(s.rank, 4);
    assert_true(s.alpha == 8.0); /* 2 x rank */
    /* every family's names: BERT's 6, DeBERTa's own 3, LLaMA's 7 */
    assert_int_equal(s.target_modules, 0xFFFF);
    assert_int_equal(s.trainable_projections, PROJ_FFN);
    assert_true(s.freeze.initial_warmup_epochs == 1.0);
    assert_true(s.freeze.final_warmup_epochs == 14.0); /* 70% of 20 */
    assert_int_equal(s.freeze.delta_t, 10);
    assert_true(s.freeze.beta1 == 0.85);
    assert_true(s.freeze.beta2 == 0.95);
    assert_int_equal(s.epochs, 20);
    assert_int_equal(s.batch_size, 32);
    assert_int_equal(s.grad_accum, 1);
    assert_int_equal(s.max_seq_len, 128);
    assert_true(s.learning_rate == 1e-2);
    assert_true(s.head_learning_rate == 4e-2);
    assert_true(s.weight_decay == 0.1);
    assert_true(s.warmup_ratio == 0.06);
    assert_true(s.max_grad_norm == 0.1);
    assert_int_equal(s.seed, 42);
    assert_int_equal(s.threads, 0);
    assert_true(s.dropout);
    assert_null(s.init_adapter);
    assert_int_equal(s.metric, SPEC_METRIC_ACCURACY); /* classification's default */
    assert_false(s.length_bucketing);

    /* The normalised JSON: exactly the fields that apply to aflora on the
     * demo (no dataset, no alpha, no init_adapter), in table order. */
    cJSON *j = spec_to_json(&s);
    assert_non_null(j);
    static const char *const keys[] = {"model",          "task",
                                       "num_labels",     "metric",
                                       "method",         "rank",
                                       "target_modules", "trainable_projections",
                                       "freeze",         "epochs",
                                       "batch_size",     "grad_accum",
                                       "max_seq_len",    "length_bucketing",
                                       "learning_rate",  "head_learning_rate",
                                       "weight_decay",   "warmup_ratio",
                                       "max_grad_norm",  "seed",
                                       "threads",        "dropout"};
    int n = 0;
    for (cJSON *it = j->child; it; it = it->next, n++) {
        assert_true(n < (int)(sizeof keys / sizeof keys[0]));
        assert_string_equal(it->string, keys[n]);
    }
    assert_int_equal(n, (int)(sizeof keys / sizeof keys[0]));
    cJSON *fr = cJSON_GetObjectItemCaseSensitive(j, "freeze");
    assert_true(cJSON_GetObjectItemCaseSensitive(fr, "final_warmup_epochs")->valuedouble == 14.0);
    /* the default: every family's names (BERT's six, DeBERTa's own three, LLaMA's seven) */
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "target_modules")), 16);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "trainable_projections")->valuestring,
                        "ffn");
    cJSON_Delete(j);
    spec_free(&s);
    spec_free(&s); /* idempotent */
}

/* The README's three-line quickstart. */
static const char QUICKSTART[] =
    "{\"model\": \"bert-base-uncased\",\n"
    " \"dataset\": {\"train\": \"glue/SST-2/train.tsv\", \"eval\": \"glue/SST-2/dev.tsv\"},\n"
    " \"epochs\": 3}\n";

static void test_quickstart(void **state) {
    (void)state;
    aflo_job_spec s;
    parse_ok(QUICKSTART, &s);
    assert_false(spec_is_demo(&s));
    assert_true(s.has_dataset);
    assert_string_equal(s.dataset.train, "glue/SST-2/train.tsv");
    assert_string_equal(s.dataset.eval, "glue/SST-2/dev.tsv");
    assert_int_equal(s.dataset.format, TEXTDATA_AUTO);
    assert_int_equal(s.dataset.n_text_fields, 1);
    assert_int_equal(s.dataset.text_fields[0].kind, TEXTDATA_FIELD_NAME);
    assert_string_equal(s.dataset.text_fields[0].name, "sentence");
    assert_int_equal(s.dataset.label_field.kind, TEXTDATA_FIELD_NAME);
    assert_string_equal(s.dataset.label_field.name, "label");
    assert_null(s.dataset.labels);
    assert_true(s.dataset.has_header);
    assert_int_equal(s.num_labels, SPEC_NUM_LABELS_UNSET);
    assert_int_equal(spec_num_labels(&s), 2);
    assert_int_equal(s.epochs, 3);
    /* 3 epochs < 10: initial warm-up 10% = 0.3, final 70% = 2.1. */
    assert_true(s.freeze.initial_warmup_epochs == 0.3);
    assert_true(s.freeze.final_warmup_epochs == 2.1);

    aflo_train_config tc;
    spec_to_train_config(&s, &tc);
    assert_int_equal(tc.epochs, 3);
    assert_int_equal(tc.batch_size, 32);
    assert_true(tc.lr == 1e-2f);
    assert_true(tc.head_lr == 4e-2f);
    assert_true(tc.freeze_initial_epochs == 0.3);
    assert_true(tc.freeze_final_epochs == 2.1);

    textdata_spec ts;
    assert_int_equal(spec_to_textdata_spec(&s, &ts), 0);
    assert_int_equal(ts.format, TEXTDATA_AUTO);
    assert_int_equal(ts.text_a.kind, TEXTDATA_FIELD_NAME);
    assert_string_equal(ts.text_a.name, "sentence");
    assert_int_equal(ts.text_b.kind, TEXTDATA_FIELD_NONE);
    assert_int_equal(ts.label.kind, TEXTDATA_FIELD_NAME);
    assert_string_equal(ts.label.name, "label");
    assert_int_equal(ts.task, TEXTDATA_CLASSIFICATION);
    assert_null(ts.labels);
    assert_int_equal(ts.num_labels, 0);
    assert_false(ts.no_header);

    /* num_labels stays unset in the stored spec, to be taken from the data. */
    cJSON *j = spec_to_json(&s);
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "num_labels"));
    cJSON_Delete(j);
    spec_free(&s);
}

static void test_method_defaults(void **state) {
    (void)state;
    aflo_job_spec s;
    aflo_adapter_config ac;

    parse_ok(J("{'model':'demo','method':'elora'}"), &s);
    assert_int_equal(s.rank, 1024);
    assert_int_equal(spec_to_adapter_config(&s, &bert_family, &ac, NULL, 0), 0);
    assert_int_equal(ac.method, METHOD_ELORA);
    assert_int_equal(ac.rank, 1024);
    assert_int_equal(ac.targets, 0x3F);
    spec_free(&s);

    parse_ok(J("{'model':'demo','method':'elora','rank':64}"), &s);
    assert_int_equal(s.rank, 64);
    spec_free(&s);

    parse_ok(J("{'model':'demo','method':'lora'}"), &s);
    assert_int_equal(s.rank, 8);
    assert_true(s.alpha == 16.0);
    assert_int_equal(spec_to_adapter_config(&s, &bert_family, &ac, NULL, 0), 0);
    assert_true(ac.alpha == 16.0f);
    cJSON *j = spec_to_json(&s);
    assert_true(cJSON_GetObjectItemCaseSensitive(j, "alpha")->valuedouble == 16.0);
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "freeze"));
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "trainable_projections"));
    cJSON_Delete(j);
    spec_free(&s);

    parse_ok(J("{'model':'demo','method':'lora','rank':4}"), &s);
    assert_true(s.alpha == 8.0);
    spec_free(&s);

    parse_ok(J("{'model':'demo','method':'lora','rank':4,'alpha':3.5}"), &s);
    assert_true(s.alpha == 3.5);
    spec_free(&s);

    parse_ok(J("{'model':'demo','method':'full','learning_rate':2e-5}"), &s);
    assert_int_equal(s.rank, 0);
    j = spec_to_json(&s);
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "rank"));
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "target_modules"));
    cJSON_Delete(j);
    spec_free(&s);

    parse_ok(J("{'model':'demo','target_modules':['value','query','output.dense'],"
               "'trainable_projections':'all'}"),
             &s);
    assert_int_equal(spec_to_adapter_config(&s, &bert_family, &ac, NULL, 0), 0);
    /* query bit 0, value bit 2, output.dense bit 5: 1 + 4 + 32. */
    assert_int_equal(ac.targets, 37);
    assert_int_equal(ac.projections, PROJ_ALL);
    spec_free(&s);
}

/* target_modules are checked against every family's names at parse time
 * and against the model's family at job start: a family without "query"
 * (a stand-in with two modules, as a decoder family would have) refuses it
 * by name, and the default selects all of its own modules. */
static void test_target_modules_bind_to_the_family(void **state) {
    (void)state;
    static const aflo_module_info mods[] = {{"self_attn.q_proj", "q_proj", "q", false},
                                            {"mlp.up_proj", "up_proj", "up", true}};
    aflo_family other = bert_family;
    other.description = "stand-in decoder";
    other.modules = mods;
    other.n_modules = 2;
    aflo_job_spec s;
    aflo_adapter_config ac;
    char err[256];

    parse_ok(J("{'model':'demo'}"), &s);
    assert_int_equal(spec_to_adapter_config(&s, &other, &ac, err, sizeof err), 0);
    assert_int_equal(ac.targets, 3);
    assert_int_equal(spec_to_adapter_config(&s, &bert_family, &ac, err, sizeof err), 0);
    assert_int_equal(ac.targets, 0x3F);
    spec_free(&s);

    parse_ok(J("{'model':'demo','target_modules':['query','value']}"), &s);
    assert_int_equal(spec_to_adapter_config(&s, &other, &ac, err, sizeof err), -1);
    assert_string_equal(err, "target_modules: \"query\" is not a module of this model (a stand-in "
                             "decoder); use q_proj or up_proj");
    spec_free(&s);

    /* the parser's message lists every family's names */
    aflo_spec_error e;
    const char *bad = J("{'model':'demo','target_modules':['qkv']}");
    assert_int_equal(spec_parse(bad, strlen(bad), &s, &e), -1);
    assert_non_null(strstr(e.message, "\"qkv\" is not a module; use query, key, value, "
                                      "attention.output.dense, intermediate.dense, "
                                      "output.dense, query_proj, key_proj, value_proj, q_proj, "
                                      "k_proj, v_proj, o_proj, gate_proj, "
                                      "up_proj or down_proj"));
}

static void test_freeze_defaults_scale_with_epochs(void **state) {
    (void)state;
    static const struct {
        int epochs;
        double initial, final;
    } cases[] = {
        {20, 1.0, 14.0}, {10, 1.0, 7.0}, {30, 1.0, 21.0},
        {3, 0.3, 2.1},   {1, 0.1, 0.7},  {9, 0.9, 6.3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"model\":\"demo\",\"epochs\":%d}", cases[i].epochs);
        aflo_job_spec s;
        parse_ok(json, &s);
        if (s.freeze.initial_warmup_epochs != cases[i].initial ||
            s.freeze.final_warmup_epochs != cases[i].final)
            fail_msg("epochs %d: got %.17g + %.17g", cases[i].epochs,
                     s.freeze.initial_warmup_epochs, s.freeze.final_warmup_epochs);
        spec_free(&s);
    }
    /* A given value is kept; the other keeps its default. */
    aflo_job_spec s;
    parse_ok(J("{'model':'demo','freeze':{'final_warmup_epochs':5}}"), &s);
    assert_true(s.freeze.final_warmup_epochs == 5.0);
    assert_true(s.freeze.initial_warmup_epochs == 1.0);
    spec_free(&s);
    /* Exactly filling the run is allowed: 3 + 7 = 10. */
    parse_ok(J("{'model':'demo','epochs':10,'freeze':{'initial_warmup_epochs':3,"
               "'final_warmup_epochs':7}}"),
             &s);
    spec_free(&s);
}

static void test_freeze_phases_must_fit(void **state) {
    (void)state;
    /* 1 (default) + 9.5 > 10. */
    expect_error(J("{'model':'demo','epochs':10,'freeze':{'final_warmup_epochs':9.5}}"),
                 SPEC_E_CONFLICT, "freeze.final_warmup_epochs", "exceeds epochs (10)");
    /* 2 + 3.5 (70% of 5, default) > 5: the given field is named. */
    expect_error(J("{'model':'demo','epochs':5,'freeze':{'initial_warmup_epochs':2}}"),
                 SPEC_E_CONFLICT, "freeze.initial_warmup_epochs", "3.5 (default)");
    expect_error(J("{'model':'demo','epochs':4,'freeze':{'initial_warmup_epochs':2,"
                   "'final_warmup_epochs':2.5}}"),
                 SPEC_E_CONFLICT, "freeze.final_warmup_epochs", NULL);
}

/* ---- rejections ------------------------------------------------------------ */

typedef struct {
    const char *json;
    spec_error_code code;
    const char *field;
} error_case;

#define D "'dataset':{'train':'t.tsv'" /* an open dataset object, for brevity */

static const error_case field_errors[] = {
    /* model */
    {"{}", SPEC_E_MISSING_FIELD, "model"},
    {"{'model':5}", SPEC_E_WRONG_TYPE, "model"},
    {"{'model':''}", SPEC_E_INVALID_VALUE, "model"},
    {"{'model':'a\\tb'}", SPEC_E_INVALID_VALUE, "model"},
    {"{'model':null}", SPEC_E_WRONG_TYPE, "model"},
    /* task, num_labels */
    {"{'model':'demo','task':'ranking'}", SPEC_E_INVALID_VALUE, "task"},
    {"{'model':'demo','task':1}", SPEC_E_WRONG_TYPE, "task"},
    {"{'model':'m'," D "},'num_labels':0}", SPEC_E_OUT_OF_RANGE, "num_labels"},
    {"{'model':'m'," D "},'num_labels':1001}", SPEC_E_OUT_OF_RANGE, "num_labels"},
    {"{'model':'m'," D "},'num_labels':2.5}", SPEC_E_WRONG_TYPE, "num_labels"},
    {"{'model':'m'," D "},'num_labels':'2'}", SPEC_E_WRONG_TYPE, "num_labels"},
    /* dataset */
    {"{'model':'m','dataset':'t.tsv'}", SPEC_E_WRONG_TYPE, "dataset"},
    {"{'model':'m','dataset':{}}", SPEC_E_MISSING_FIELD, "dataset.train"},
    {"{'model':'m','dataset':{'train':1}}", SPEC_E_WRONG_TYPE, "dataset.train"},
    {"{'model':'m','dataset':{'train':''}}", SPEC_E_INVALID_VALUE, "dataset.train"},
    {"{'model':'m'," D ",'eval':true}}", SPEC_E_WRONG_TYPE, "dataset.eval"},
    {"{'model':'m'," D ",'eval':null}}", SPEC_E_WRONG_TYPE, "dataset.eval"},
    {"{'model':'m'," D ",'format':'xml'}}", SPEC_E_INVALID_VALUE, "dataset.format"},
    {"{'model':'m'," D ",'format':'TSV'}}", SPEC_E_INVALID_VALUE, "dataset.format"},
    {"{'model':'m'," D ",'format':3}}", SPEC_E_WRONG_TYPE, "dataset.format"},
    {"{'model':'m'," D ",'text_fields':'sentence'}}", SPEC_E_WRONG_TYPE, "dataset.text_fields"},
    {"{'model':'m'," D ",'text_fields':[]}}", SPEC_E_OUT_OF_RANGE, "dataset.text_fields"},
    {"{'model':'m'," D ",'text_fields':['a','b','c']}}", SPEC_E_OUT_OF_RANGE,
     "dataset.text_fields"},
    {"{'model':'m'," D ",'text_fields':[1.5]}}", SPEC_E_WRONG_TYPE, "dataset.text_fields[0]"},
    {"{'model':'m'," D ",'text_fields':['a',true]}}", SPEC_E_WRONG_TYPE, "dataset.text_fields[1]"},
    {"{'model':'m'," D ",'text_fields':['a',null]}}", SPEC_E_WRONG_TYPE, "dataset.text_fields[1]"},
    {"{'model':'m'," D ",'has_header':false,'text_fields':[-1]}}", SPEC_E_OUT_OF_RANGE,
     "dataset.text_fields[0]"},
    {"{'model':'m'," D ",'has_header':false,'text_fields':[65536]}}", SPEC_E_OUT_OF_RANGE,
     "dataset.text_fields[0]"},
    {"{'model':'m'," D ",'text_fields':['a','']}}", SPEC_E_INVALID_VALUE, "dataset.text_fields[1]"},
    {"{'model':'m'," D ",'text_fields':['a','a']}}", SPEC_E_INVALID_VALUE,
     "dataset.text_fields[1]"},
    {"{'model':'m'," D ",'label_field':['label']}}", SPEC_E_WRONG_TYPE, "dataset.label_field"},
    {"{'model':'m'," D ",'label_field':false}}", SPEC_E_WRONG_TYPE, "dataset.label_field"},
    {"{'model':'m'," D ",'has_header':false,'text_fields':[0],'label_field':-1}}",
     SPEC_E_OUT_OF_RANGE, "dataset.label_field"},
    {"{'model':'m'," D ",'has_header':false,'text_fields':[0],'label_field':1.5}}",
     SPEC_E_WRONG_TYPE, "dataset.label_field"},
    {"{'model':'m'," D ",'labels':'pos'}}", SPEC_E_WRONG_TYPE, "dataset.labels"},
    {"{'model':'m'," D ",'labels':[]}}", SPEC_E_OUT_OF_RANGE, "dataset.labels"},
    {"{'model':'m'," D ",'labels':['a',1]}}", SPEC_E_WRONG_TYPE, "dataset.labels[1]"},
    {"{'model':'m'," D ",'labels':['a','b','a']}}", SPEC_E_INVALID_VALUE, "dataset.labels[2]"},
    {"{'model':'m'," D ",'labels':['a ','b']}}", SPEC_E_INVALID_VALUE, "dataset.labels[0]"},
    {"{'model':'m'," D ",'has_header':1}}", SPEC_E_WRONG_TYPE, "dataset.has_header"},
    {"{'model':'m'," D ",'has_header':'true'}}", SPEC_E_WRONG_TYPE, "dataset.has_header"},
    {"{'model':'m'," D ",'header':true}}", SPEC_E_UNKNOWN_FIELD, "dataset.header"},
    {"{'model':'m'," D ",'train':'u.tsv'}}", SPEC_E_INVALID_VALUE, "dataset.train"},
    /* method and adapter */
    {"{'model':'demo','method':'LoRA'}", SPEC_E_INVALID_VALUE, "method"},
    {"{'model':'demo','method':null}", SPEC_E_WRONG_TYPE, "method"},
    {"{'model':'demo','rank':0}", SPEC_E_OUT_OF_RANGE, "rank"},
    {"{'model':'demo','rank':4097}", SPEC_E_OUT_OF_RANGE, "rank"},
    {"{'model':'demo','rank':4.5}", SPEC_E_WRONG_TYPE, "rank"},
    {"{'model':'demo','rank':'4'}", SPEC_E_WRONG_TYPE, "rank"},
    {"{'model':'demo','method':'lora','alpha':0}", SPEC_E_OUT_OF_RANGE, "alpha"},
    {"{'model':'demo','method':'lora','alpha':-2}", SPEC_E_OUT_OF_RANGE, "alpha"},
    {"{'model':'demo','method':'lora','alpha':'16'}", SPEC_E_WRONG_TYPE, "alpha"},
    {"{'model':'demo','target_modules':'query'}", SPEC_E_WRONG_TYPE, "target_modules"},
    {"{'model':'demo','target_modules':[]}", SPEC_E_OUT_OF_RANGE, "target_modules"},
    {"{'model':'demo','target_modules':['query','qkv']}", SPEC_E_INVALID_VALUE,
     "target_modules[1]"},
    {"{'model':'demo','target_modules':[1]}", SPEC_E_WRONG_TYPE, "target_modules[0]"},
    {"{'model':'demo','target_modules':['query','value','query']}", SPEC_E_INVALID_VALUE,
     "target_modules[2]"},
    {"{'model':'demo','trainable_projections':'some'}", SPEC_E_INVALID_VALUE,
     "trainable_projections"},
    {"{'model':'demo','trainable_projections':true}", SPEC_E_WRONG_TYPE, "trainable_projections"},
    /* freeze */
    {"{'model':'demo','freeze':1}", SPEC_E_WRONG_TYPE, "freeze"},
    {"{'model':'demo','freeze':[]}", SPEC_E_WRONG_TYPE, "freeze"},
    {"{'model':'demo','freeze':{'initial_warmup_epochs':-1}}", SPEC_E_OUT_OF_RANGE,
     "freeze.initial_warmup_epochs"},
    {"{'model':'demo','freeze':{'initial_warmup_epochs':'1'}}", SPEC_E_WRONG_TYPE,
     "freeze.initial_warmup_epochs"},
    {"{'model':'demo','freeze':{'final_warmup_epochs':1001}}", SPEC_E_OUT_OF_RANGE,
     "freeze.final_warmup_epochs"},
    {"{'model':'demo','freeze':{'final_warmup_epochs':false}}", SPEC_E_WRONG_TYPE,
     "freeze.final_warmup_epochs"},
    {"{'model':'demo','freeze':{'delta_t':0}}", SPEC_E_OUT_OF_RANGE, "freeze.delta_t"},
    {"{'model':'demo','freeze':{'delta_t':2.5}}", SPEC_E_WRONG_TYPE, "freeze.delta_t"},
    {"{'model':'demo','freeze':{'beta1':1}}", SPEC_E_OUT_OF_RANGE, "freeze.beta1"},
    {"{'model':'demo','freeze':{'beta1':'0.8'}}", SPEC_E_WRONG_TYPE, "freeze.beta1"},
    {"{'model':'demo','freeze':{'beta2':-0.1}}", SPEC_E_OUT_OF_RANGE, "freeze.beta2"},
    {"{'model':'demo','freeze':{'beta2':[0.9]}}", SPEC_E_WRONG_TYPE, "freeze.beta2"},
    {"{'model':'demo','freeze':{'delta':10}}", SPEC_E_UNKNOWN_FIELD, "freeze.delta"},
    {"{'model':'demo','freeze':{'enabled':0}}", SPEC_E_WRONG_TYPE, "freeze.enabled"},
    {"{'model':'demo','freeze':{'enabled':'false'}}", SPEC_E_WRONG_TYPE, "freeze.enabled"},
    {"{'model':'demo','freeze':{'enabled':null}}", SPEC_E_WRONG_TYPE, "freeze.enabled"},
    {"{'model':'demo','freeze':{'sensitivity':'magnitude'}}", SPEC_E_INVALID_VALUE,
     "freeze.sensitivity"},
    {"{'model':'demo','freeze':{'sensitivity':'Grad'}}", SPEC_E_INVALID_VALUE,
     "freeze.sensitivity"},
    {"{'model':'demo','freeze':{'sensitivity':1}}", SPEC_E_WRONG_TYPE, "freeze.sensitivity"},
    {"{'model':'demo','freeze':{'sensitivity':['grad']}}", SPEC_E_WRONG_TYPE, "freeze.sensitivity"},
    /* training */
    {"{'model':'demo','epochs':0}", SPEC_E_OUT_OF_RANGE, "epochs"},
    {"{'model':'demo','epochs':1001}", SPEC_E_OUT_OF_RANGE, "epochs"},
    {"{'model':'demo','epochs':1.5}", SPEC_E_WRONG_TYPE, "epochs"},
    {"{'model':'demo','epochs':'20'}", SPEC_E_WRONG_TYPE, "epochs"},
    {"{'model':'demo','epochs':true}", SPEC_E_WRONG_TYPE, "epochs"},
    {"{'model':'demo','batch_size':0}", SPEC_E_OUT_OF_RANGE, "batch_size"},
    {"{'model':'demo','batch_size':4097}", SPEC_E_OUT_OF_RANGE, "batch_size"},
    {"{'model':'demo','batch_size':'32'}", SPEC_E_WRONG_TYPE, "batch_size"},
    {"{'model':'demo','grad_accum':0}", SPEC_E_OUT_OF_RANGE, "grad_accum"},
    {"{'model':'demo','grad_accum':1.25}", SPEC_E_WRONG_TYPE, "grad_accum"},
    {"{'model':'demo','max_seq_len':7}", SPEC_E_OUT_OF_RANGE, "max_seq_len"},
    {"{'model':'demo','max_seq_len':4097}", SPEC_E_OUT_OF_RANGE, "max_seq_len"},
    {"{'model':'demo','max_seq_len':{}}", SPEC_E_WRONG_TYPE, "max_seq_len"},
    {"{'model':'demo','learning_rate':0}", SPEC_E_OUT_OF_RANGE, "learning_rate"},
    {"{'model':'demo','learning_rate':11}", SPEC_E_OUT_OF_RANGE, "learning_rate"},
    {"{'model':'demo','learning_rate':'1e-2'}", SPEC_E_WRONG_TYPE, "learning_rate"},
    {"{'model':'demo','learning_rate':1e999}", SPEC_E_OUT_OF_RANGE, "learning_rate"},
    {"{'model':'demo','head_learning_rate':-1}", SPEC_E_OUT_OF_RANGE, "head_learning_rate"},
    {"{'model':'demo','head_learning_rate':null}", SPEC_E_WRONG_TYPE, "head_learning_rate"},
    {"{'model':'demo','weight_decay':-0.1}", SPEC_E_OUT_OF_RANGE, "weight_decay"},
    {"{'model':'demo','weight_decay':1.5}", SPEC_E_OUT_OF_RANGE, "weight_decay"},
    {"{'model':'demo','weight_decay':true}", SPEC_E_WRONG_TYPE, "weight_decay"},
    {"{'model':'demo','warmup_ratio':1}", SPEC_E_OUT_OF_RANGE, "warmup_ratio"},
    {"{'model':'demo','warmup_ratio':'0.06'}", SPEC_E_WRONG_TYPE, "warmup_ratio"},
    {"{'model':'demo','max_grad_norm':-1}", SPEC_E_OUT_OF_RANGE, "max_grad_norm"},
    {"{'model':'demo','max_grad_norm':-1e999}", SPEC_E_OUT_OF_RANGE, "max_grad_norm"},
    {"{'model':'demo','max_grad_norm':[]}", SPEC_E_WRONG_TYPE, "max_grad_norm"},
    {"{'model':'demo','seed':-1}", SPEC_E_OUT_OF_RANGE, "seed"},
    {"{'model':'demo','seed':9007199254740992}", SPEC_E_OUT_OF_RANGE, "seed"}, /* 2^53 */
    {"{'model':'demo','seed':1.5}", SPEC_E_WRONG_TYPE, "seed"},
    {"{'model':'demo','threads':-1}", SPEC_E_OUT_OF_RANGE, "threads"},
    {"{'model':'demo','threads':1025}", SPEC_E_OUT_OF_RANGE, "threads"},
    {"{'model':'demo','threads':'auto'}", SPEC_E_WRONG_TYPE, "threads"},
    {"{'model':'demo','dropout':0}", SPEC_E_WRONG_TYPE, "dropout"},
    {"{'model':'demo','dropout':'yes'}", SPEC_E_WRONG_TYPE, "dropout"},
    {"{'model':'demo','init_adapter':7}", SPEC_E_WRONG_TYPE, "init_adapter"},
    {"{'model':'demo','init_adapter':''}", SPEC_E_INVALID_VALUE, "init_adapter"},
    {"{'model':'demo','init_adapter':'job:'}", SPEC_E_INVALID_VALUE, "init_adapter"},
    {"{'model':'demo','init_adapter':'job:0123456789ABCDEF'}", SPEC_E_INVALID_VALUE,
     "init_adapter"},
    {"{'model':'demo','init_adapter':'job:0123456789abcdef0'}", SPEC_E_INVALID_VALUE,
     "init_adapter"},
    {"{'model':'demo','metric':'MCC'}", SPEC_E_INVALID_VALUE, "metric"},
    {"{'model':'demo','metric':'matthews'}", SPEC_E_INVALID_VALUE, "metric"},
    {"{'model':'demo','metric':2}", SPEC_E_WRONG_TYPE, "metric"},
    {"{'model':'demo','metric':null}", SPEC_E_WRONG_TYPE, "metric"},
    {"{'model':'demo','length_bucketing':1}", SPEC_E_WRONG_TYPE, "length_bucketing"},
    {"{'model':'demo','length_bucketing':'true'}", SPEC_E_WRONG_TYPE, "length_bucketing"},
    /* unknown keys and keys given twice */
    {"{'model':'demo','foo':1}", SPEC_E_UNKNOWN_FIELD, "foo"},
    {"{'model':'demo','Epochs':3}", SPEC_E_UNKNOWN_FIELD, "Epochs"},
    {"{'model':'demo','freeze.delta_t':5}", SPEC_E_UNKNOWN_FIELD, "freeze.delta_t"},
    {"{'model':'demo','epochs':3,'epochs':4}", SPEC_E_INVALID_VALUE, "epochs"},
    {"{'model':'demo','freeze':{'beta1':0.8,'beta1':0.8}}", SPEC_E_INVALID_VALUE, "freeze.beta1"},
    /* fields that have no effect for the method */
    {"{'model':'demo','alpha':8}", SPEC_E_CONFLICT, "alpha"},
    {"{'model':'demo','method':'elora','alpha':8}", SPEC_E_CONFLICT, "alpha"},
    {"{'model':'demo','method':'lora','trainable_projections':'all'}", SPEC_E_CONFLICT,
     "trainable_projections"},
    {"{'model':'demo','method':'lora','freeze':{'delta_t':5}}", SPEC_E_CONFLICT, "freeze"},
    {"{'model':'demo','method':'lora','freeze':{'enabled':false}}", SPEC_E_CONFLICT, "freeze"},
    {"{'model':'demo','method':'elora','freeze':{'sensitivity':'grad'}}", SPEC_E_CONFLICT,
     "freeze"},
    {"{'model':'demo','method':'full','freeze':{'enabled':true}}", SPEC_E_CONFLICT, "freeze"},
    {"{'model':'demo','method':'full','rank':4}", SPEC_E_CONFLICT, "rank"},
    {"{'model':'demo','method':'full','target_modules':['query']}", SPEC_E_CONFLICT,
     "target_modules"},
    /* labels and task */
    {"{'model':'m'," D "},'task':'regression','num_labels':2}", SPEC_E_CONFLICT, "num_labels"},
    {"{'model':'m'," D ",'labels':['0','1']},'task':'regression'}", SPEC_E_CONFLICT,
     "dataset.labels"},
    {"{'model':'m'," D ",'labels':['a','b']},'num_labels':3}", SPEC_E_CONFLICT, "num_labels"},
    /* metric and task */
    {"{'model':'m'," D "},'task':'regression','metric':'accuracy'}", SPEC_E_CONFLICT, "metric"},
    {"{'model':'m'," D "},'task':'regression','metric':'f1'}", SPEC_E_CONFLICT, "metric"},
    {"{'model':'m'," D "},'task':'regression','metric':'mcc'}", SPEC_E_CONFLICT, "metric"},
    {"{'model':'m'," D "},'metric':'pearson'}", SPEC_E_CONFLICT, "metric"},
    {"{'model':'m'," D "},'metric':'spearman'}", SPEC_E_CONFLICT, "metric"},
    {"{'model':'demo','metric':'mse'}", SPEC_E_CONFLICT, "metric"},
    {"{'model':'m'," D "},'num_labels':3,'metric':'f1'}", SPEC_E_CONFLICT, "metric"},
    {"{'model':'m'," D ",'labels':['a','b','c']},'metric':'f1'}", SPEC_E_CONFLICT, "metric"},
    /* model vs dataset */
    {"{'model':'m'}", SPEC_E_MISSING_FIELD, "dataset"},
    {"{'model':'demo'," D "}}", SPEC_E_CONFLICT, "dataset"},
    {"{'model':'demo','task':'regression'}", SPEC_E_CONFLICT, "task"},
    {"{'model':'demo','num_labels':3}", SPEC_E_CONFLICT, "num_labels"},
    /* columns vs file format */
    {"{'model':'m','dataset':{'train':'t.jsonl','text_fields':[0]}}", SPEC_E_CONFLICT,
     "dataset.text_fields[0]"},
    {"{'model':'m','dataset':{'train':'t.csv','format':'jsonl','label_field':2}}", SPEC_E_CONFLICT,
     "dataset.label_field"},
    {"{'model':'m'," D ",'has_header':false,'text_fields':[3]}}", SPEC_E_CONFLICT,
     "dataset.label_field"},
    {"{'model':'m'," D ",'has_header':false,'text_fields':[3,'s2'],'label_field':1}}",
     SPEC_E_CONFLICT, "dataset.text_fields[1]"},
    {"{'model':'m'," D ",'text_fields':['s','label']}}", SPEC_E_CONFLICT, "dataset.label_field"},
    {"{'model':'m','dataset':{'train':'train.txt'}}", SPEC_E_CONFLICT, "dataset.format"},
    {"{'model':'m'," D ",'eval':'dev'}}", SPEC_E_CONFLICT, "dataset.format"},
};

static void test_each_field_rejected_with_its_path(void **state) {
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < sizeof field_errors / sizeof field_errors[0]; i++)
        if (!check_error(J(field_errors[i].json), field_errors[i].code, field_errors[i].field))
            bad++;
    assert_int_equal(bad, 0);
}

static void test_error_messages(void **state) {
    (void)state;
    /* Messages say what is allowed and what was given. */
    expect_error(J("{'model':'demo','epochs':1.5}"), SPEC_E_WRONG_TYPE, "epochs",
                 "must be an integer, got 1.5");
    expect_error(J("{'model':'demo','epochs':0}"), SPEC_E_OUT_OF_RANGE, "epochs",
                 "from 1 to 1000, got 0");
    expect_error(J("{'model':'demo','learning_rate':0}"), SPEC_E_OUT_OF_RANGE, "learning_rate",
                 "> 0 and <= 10");
    expect_error(J("{'model':'demo','method':'LoRA'}"), SPEC_E_INVALID_VALUE, "method",
                 "\"aflora\", \"elora\", \"lora\" or \"full\"");
    expect_error(J("{'model':'demo','seed':null}"), SPEC_E_WRONG_TYPE, "seed", "got null");
    expect_error(J("{'model':'demo','alpha':8}"), SPEC_E_CONFLICT, "alpha",
                 "applies only to method lora (method is aflora)");
    expect_error(J("{'model':'demo','method':'full','rank':8}"), SPEC_E_CONFLICT, "rank",
                 "aflora, elora or lora");
    /* Unknown keys: a typo of a sibling, or a key that lives in another object. */
    expect_error(J("{'model':'demo','learning_rte':0.1}"), SPEC_E_UNKNOWN_FIELD, "learning_rte",
                 "did you mean learning_rate?");
    expect_error(J("{'model':'demo','delta_t':5}"), SPEC_E_UNKNOWN_FIELD, "delta_t",
                 "did you mean freeze.delta_t?");
    expect_error(J("{'model':'m','train':'t.tsv'}"), SPEC_E_UNKNOWN_FIELD, "train",
                 "did you mean dataset.train?");
    expect_error(J("{'model':'demo','zzzzzz':1}"), SPEC_E_UNKNOWN_FIELD, "zzzzzz", "unknown field");
    expect_error(J("{'model':'m','dataset':{'train':'t.tsv','has_header':false,"
                   "'text_fields':[1]}}"),
                 SPEC_E_CONFLICT, "dataset.label_field", "default is a name");
    /* A long unknown key is cut short in the path and message. */
    char json[400];
    snprintf(json, sizeof json, "{\"model\":\"demo\",\"%0200d\":1}", 0);
    aflo_spec_error e;
    aflo_job_spec s;
    assert_int_equal(spec_parse(json, strlen(json), &s, &e), -1);
    assert_int_equal(e.code, SPEC_E_UNKNOWN_FIELD);
    assert_true(strlen(e.field) < 60);
    assert_non_null(strstr(e.field, "..."));
}

static void test_document_limits(void **state) {
    (void)state;
    aflo_spec_error e;
    assert_true(check_error("", SPEC_E_INVALID_JSON, ""));
    assert_true(check_error("   \n", SPEC_E_INVALID_JSON, ""));
    assert_true(check_error("{", SPEC_E_INVALID_JSON, ""));
    assert_true(check_error(J("{'model':'demo',}"), SPEC_E_INVALID_JSON, ""));
    assert_true(check_error(J("{'model':'demo','epochs':NaN}"), SPEC_E_INVALID_JSON, ""));
    assert_true(check_error(J("{'model':'demo','epochs':Infinity}"), SPEC_E_INVALID_JSON, ""));
    assert_true(check_error(J("{'model':'demo'} x"), SPEC_E_INVALID_JSON, ""));
    assert_true(check_error(J("{'model':'demo'}{}"), SPEC_E_INVALID_JSON, ""));
    assert_true(check_error(J("[{'model':'demo'}]"), SPEC_E_WRONG_TYPE, ""));
    assert_true(check_error("\"demo\"", SPEC_E_WRONG_TYPE, ""));
    /* The position of a syntax error: the 5 where a key should be, on line 2. */
    const char *two = "{\"model\":\n\"demo\", 5}";
    assert_true(check_error_n(two, strlen(two), SPEC_E_INVALID_JSON, "", &e));
    assert_non_null(strstr(e.message, "line 2"));
    /* Trailing whitespace is fine. */
    aflo_job_spec s;
    parse_ok(J(" {'model':'demo'} \n\t\r\n"), &s);
    spec_free(&s);

    /* Nesting: 8 levels is refused before cJSON sees it (the type error
     * would come later); a spec needs 3. */
    assert_true(
        check_error(J("{'model':'demo','dataset':[[[[[[[[1]]]]]]]]}"), SPEC_E_INVALID_JSON, ""));
    /* Exactly SPEC_MAX_DEPTH levels gets through the pre-scan to the type check. */
    assert_true(
        check_error(J("{'model':'demo','dataset':[[[[[[[1]]]]]]]}"), SPEC_E_WRONG_TYPE, "dataset"));
    /* NUL byte inside the given length; invalid UTF-8; an escaped NUL. */
    const char nul[] = "{\"model\":\"de\0mo\"}";
    assert_true(check_error_n(nul, sizeof nul - 1, SPEC_E_INVALID_JSON, "", NULL));
    assert_true(check_error("{\"model\":\"d\xff\"}", SPEC_E_INVALID_JSON, ""));
    assert_true(check_error("{\"model\":\"d\xc0\xaf\"}", SPEC_E_INVALID_JSON, "")); /* overlong */
    assert_true(
        check_error("{\"model\":\"\xed\xa0\x80\"}", SPEC_E_INVALID_JSON, "")); /* surrogate */
    assert_true(check_error("{\"model\":\"de\\u0000mo\"}", SPEC_E_INVALID_JSON, ""));
    /* An escaped backslash followed by u0000 is just text. */
    parse_ok("{\"model\":\"de\\\\u0000mo\",\"dataset\":{\"train\":\"t.tsv\"}}", &s);
    assert_string_equal(s.model, "de\\u0000mo");
    spec_free(&s);
    /* Valid UTF-8 and escapes are kept. */
    parse_ok("{\"model\":\"mod\xc3\xa9le\\u00e9\",\"dataset\":{\"train\":\"t.tsv\"}}", &s);
    assert_string_equal(s.model, "mod\xc3\xa9le\xc3\xa9");
    spec_free(&s);

    /* Size: one byte over the limit is refused before parsing. */
    size_t big = SPEC_MAX_BYTES + 1;
    char *buf = malloc(big);
    assert_non_null(buf);
    memset(buf, ' ', big);
    memcpy(buf, "{\"model\":\"demo\"}", 16);
    assert_true(check_error_n(buf, big, SPEC_E_TOO_LARGE, "", NULL));
    /* ... and at the limit (trailing spaces) it parses. */
    parse_ok_n(buf, SPEC_MAX_BYTES, &s);
    spec_free(&s);
    free(buf);

    /* Strings: SPEC_MAX_STRING bytes pass, one more is out of range. */
    char *js = malloc(SPEC_MAX_STRING + 64);
    assert_non_null(js);
    for (int extra = 0; extra <= 1; extra++) {
        int n = sprintf(js, "{\"model\":\"");
        memset(js + n, 'a', (size_t)SPEC_MAX_STRING + (size_t)extra);
        n += SPEC_MAX_STRING + extra;
        strcpy(js + n, "\",\"dataset\":{\"train\":\"t.tsv\"}}");
        if (extra) {
            assert_true(check_error(js, SPEC_E_OUT_OF_RANGE, "model"));
        } else {
            parse_ok(js, &s);
            assert_int_equal(strlen(s.model), SPEC_MAX_STRING);
            spec_free(&s);
        }
    }
    free(js);

    /* NULL error pointer is allowed. */
    assert_int_equal(spec_parse("{}", 2, &s, NULL), -1);
}

static void test_dataset_forms(void **state) {
    (void)state;
    aflo_job_spec s;
    textdata_spec ts;

    /* MRPC: headerless pair chosen by index, declared labels, eval by id. */
    parse_ok(J("{'model':'bert-base-uncased','dataset':{'train':'mrpc/train.tsv',"
               "'eval':'0123456789abcdef','has_header':false,'text_fields':[3,4],"
               "'label_field':0,'labels':['0','1']}}"),
             &s);
    assert_int_equal(s.num_labels, 2); /* from the declared labels */
    assert_int_equal(spec_to_textdata_spec(&s, &ts), 0);
    assert_int_equal(ts.text_a.kind, TEXTDATA_FIELD_INDEX);
    assert_int_equal(ts.text_a.index, 3);
    assert_int_equal(ts.text_b.kind, TEXTDATA_FIELD_INDEX);
    assert_int_equal(ts.text_b.index, 4);
    assert_int_equal(ts.label.kind, TEXTDATA_FIELD_INDEX);
    assert_int_equal(ts.label.index, 0);
    assert_true(ts.no_header);
    assert_int_equal(ts.num_labels, 2);
    assert_string_equal(ts.labels[0], "0");
    assert_string_equal(ts.labels[1], "1");
    spec_free(&s);

    /* STS-B regression from JSONL: num_labels becomes 1. */
    parse_ok(J("{'model':'m','task':'regression','dataset':{'train':'stsb/train.jsonl',"
               "'text_fields':['sentence1','sentence2'],'label_field':'score'}}"),
             &s);
    assert_int_equal(s.num_labels, 1);
    assert_int_equal(spec_to_textdata_spec(&s, &ts), 0);
    assert_int_equal(ts.task, TEXTDATA_REGRESSION);
    assert_string_equal(ts.text_b.name, "sentence2");
    assert_int_equal(ts.num_labels, 0); /* the one output is no class count */
    spec_free(&s);

    /* num_labels without names: the class count for integer labels */
    parse_ok(J("{'model':'m','num_labels':5,'dataset':{'train':'yelp.tsv'}}"), &s);
    assert_int_equal(spec_to_textdata_spec(&s, &ts), 0);
    assert_null(ts.labels);
    assert_int_equal(ts.num_labels, 5);
    spec_free(&s);

    /* An uploaded dataset's id needs no extension; a path with an unknown one
     * is fine when the format is given. */
    parse_ok(J("{'model':'m','dataset':{'train':'0123456789abcdef'}}"), &s);
    assert_true(spec_is_dataset_id(s.dataset.train));
    spec_free(&s);
    parse_ok(J("{'model':'m','dataset':{'train':'data/train.txt','format':'tsv'}}"), &s);
    assert_int_equal(s.dataset.format, TEXTDATA_TSV);
    spec_free(&s);
    /* JSONL ignores has_header, names are fine there. */
    parse_ok(J("{'model':'m','dataset':{'train':'t.jsonl','has_header':false}}"), &s);
    spec_free(&s);

    assert_false(spec_is_dataset_id("0123456789ABCDEF"));
    assert_false(spec_is_dataset_id("0123456789abcde"));
    assert_false(spec_is_dataset_id("0123456789abcdefa"));
    assert_false(spec_is_dataset_id(NULL));

    /* The demo has no dataset to describe. */
    parse_ok(J("{'model':'demo'}"), &s);
    assert_int_equal(spec_to_textdata_spec(&s, &ts), -1);
    spec_free(&s);
}

static void test_train_config(void **state) {
    (void)state;
    aflo_job_spec s;
    parse_ok(J("{'model':'demo','epochs':12,'batch_size':16,'grad_accum':4,'learning_rate':0.005,"
               "'head_learning_rate':0.08,'weight_decay':0.01,'warmup_ratio':0.1,"
               "'max_grad_norm':0,'seed':7,'dropout':false,'threads':2,"
               "'freeze':{'initial_warmup_epochs':2,'final_warmup_epochs':6,'delta_t':5,"
               "'beta1':0.5,'beta2':0.75}}"),
             &s);
    aflo_train_config tc, ref;
    spec_to_train_config(&s, &tc);
    train_config_defaults(&ref, 12);
    assert_int_equal(tc.epochs, 12);
    assert_int_equal(tc.batch_size, 16);
    assert_int_equal(tc.grad_accum, 4);
    assert_true(tc.lr == 0.005f);
    assert_true(tc.head_lr == 0.08f);
    assert_true(tc.weight_decay == 0.01f);
    assert_true(tc.warmup_ratio == 0.1f);
    assert_true(tc.max_grad_norm == 0.0f);
    assert_true(tc.freeze_initial_epochs == 2.0);
    assert_true(tc.freeze_final_epochs == 6.0);
    assert_int_equal(tc.delta_t, 5);
    assert_true(tc.score_beta1 == 0.5);
    assert_true(tc.score_beta2 == 0.75);
    assert_int_equal(tc.seed, 7);
    assert_false(tc.dropout);
    /* What the spec does not cover comes from the engine's defaults. */
    assert_true(tc.adam_beta1 == ref.adam_beta1);
    assert_true(tc.adam_beta2 == ref.adam_beta2);
    assert_true(tc.adam_eps == ref.adam_eps);
    assert_int_equal(tc.pad_id, ref.pad_id);
    assert_int_equal(s.threads, 2);
    /* Not given: classification picks its best epoch by accuracy; no bucketing. */
    assert_string_equal(tc.select_metric, "accuracy");
    assert_false(tc.length_bucketing);
    spec_free(&s);
}

/* One set of training defaults: a spec that gives only the epochs trains
 * exactly as the engine's train_config_defaults says, short runs (initial
 * warm-up 10% of the epochs) and 70% final phases included. */
static void test_defaults_are_the_engines(void **state) {
    (void)state;
    static const int epochs[] = {1, 3, 5, 6, 9, 10, 12, 20, 45, 1000};
    for (size_t i = 0; i < sizeof epochs / sizeof *epochs; i++) {
        char json[64];
        snprintf(json, sizeof json, "{\"model\":\"demo\",\"epochs\":%d}", epochs[i]);
        aflo_job_spec s;
        parse_ok(json, &s);
        aflo_train_config got, want;
        spec_to_train_config(&s, &got);
        spec_free(&s);
        train_config_defaults(&want, epochs[i]);
        assert_int_equal(got.epochs, want.epochs);
        assert_int_equal(got.batch_size, want.batch_size);
        assert_int_equal(got.grad_accum, want.grad_accum);
        assert_true(got.lr == want.lr);
        assert_true(got.head_lr == want.head_lr);
        assert_true(got.weight_decay == want.weight_decay);
        assert_true(got.warmup_ratio == want.warmup_ratio);
        assert_true(got.max_grad_norm == want.max_grad_norm);
        assert_true(got.adam_beta1 == want.adam_beta1);
        assert_true(got.adam_beta2 == want.adam_beta2);
        assert_true(got.adam_eps == want.adam_eps);
        assert_true(got.freeze_initial_epochs == want.freeze_initial_epochs);
        assert_true(got.freeze_final_epochs == want.freeze_final_epochs);
        assert_int_equal(got.delta_t, want.delta_t);
        assert_true(got.score_beta1 == want.score_beta1);
        assert_true(got.score_beta2 == want.score_beta2);
        assert_int_equal(got.freeze_enabled, want.freeze_enabled);
        assert_int_equal(got.freeze_sensitivity, want.freeze_sensitivity);
        assert_int_equal(got.seed, want.seed);
        assert_int_equal(got.dropout, want.dropout);
        assert_int_equal(got.pad_id, want.pad_id);
        assert_int_equal(got.length_bucketing, want.length_bucketing);
        /* The spec names the metric; the engine's NULL means the same. */
        assert_null(want.select_metric);
        assert_string_equal(got.select_metric, "accuracy");
    }
    /* The phases' rule, from integers: 70% of 20 is 14, of 3 is 2.1. */
    assert_true(train_default_final_warmup_epochs(20) == 14.0);
    assert_true(train_default_final_warmup_epochs(3) == 2.1);
    assert_true(train_default_initial_warmup_epochs(3) == 0.3);
    assert_true(train_default_initial_warmup_epochs(10) == 1.0);
}

/* metric: the task's default, the choice handed to the trainer as a name
 * metrics_lookup knows, conflicts with the other task's metrics. */
static void test_metric(void **state) {
    (void)state;
    aflo_job_spec s;
    aflo_train_config tc;
    parse_ok(J("{'model':'m','task':'regression','dataset':{'train':'stsb.tsv'}}"), &s);
    assert_int_equal(s.metric, SPEC_METRIC_PEARSON);
    spec_to_train_config(&s, &tc);
    spec_free(&s);
    assert_string_equal(tc.select_metric, "pearson"); /* not a pointer into the freed spec */

    /* GLUE's choices: CoLA mcc, MRPC f1, STS-B spearman or mse. */
    static const struct {
        const char *json;
        spec_metric want;
        const char *name;
    } cases[] = {
        {"{'model':'m','dataset':{'train':'cola.tsv'},'metric':'mcc'}", SPEC_METRIC_MCC, "mcc"},
        {"{'model':'m','dataset':{'train':'mrpc.tsv','labels':['0','1']},'metric':'f1'}",
         SPEC_METRIC_F1, "f1"},
        {"{'model':'m','dataset':{'train':'sst2.tsv'},'metric':'accuracy'}", SPEC_METRIC_ACCURACY,
         "accuracy"},
        {"{'model':'m','task':'regression','dataset':{'train':'s.tsv'},'metric':'spearman'}",
         SPEC_METRIC_SPEARMAN, "spearman"},
        {"{'model':'m','task':'regression','dataset':{'train':'s.tsv'},'metric':'mse'}",
         SPEC_METRIC_MSE, "mse"},
        {"{'model':'demo','metric':'mcc'}", SPEC_METRIC_MCC, "mcc"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parse_ok(J(cases[i].json), &s);
        assert_int_equal(s.metric, cases[i].want);
        spec_to_train_config(&s, &tc);
        assert_string_equal(tc.select_metric, cases[i].name);
        /* the normalised JSON carries the choice */
        cJSON *j = spec_to_json(&s);
        assert_non_null(j);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "metric")->valuestring,
                            cases[i].name);
        cJSON_Delete(j);
        spec_free(&s);
    }

    /* Every choice in the table is a name the engine's metrics_lookup knows,
     * in the group the spec checks it against (metrics_lookup refuses a
     * metric of the other group): fill each metric with a distinct value and
     * read it back by name. */
    aflo_metrics m = {.accuracy = 1, .f1 = 2, .mcc = 3, .pearson = 4, .spearman = 5, .mse = 6};
    static const char *const names[] = {"accuracy", "f1", "mcc", "pearson", "spearman", "mse"};
    int row = -1;
    for (int i = 0; i < spec_field_count; i++)
        if (strcmp(spec_fields[i].name, "metric") == 0) row = i;
    assert_true(row >= 0);
    assert_int_equal(spec_fields[row].n_choices, 8);
    assert_string_equal(spec_fields[row].choices[6], "perplexity");
    assert_string_equal(spec_fields[row].choices[7], "exact_match");
    /* exact_match: a causal LM's, and only once it was computed */
    aflo_metrics em = {.causal_lm = true, .exact_match = 0.25, .judged = 4};
    double got = -1;
    assert_int_equal(metrics_lookup(&em, "exact_match", &got), -1);
    em.has_exact_match = true;
    assert_int_equal(metrics_lookup(&em, "exact_match", &got), 0);
    assert_true(got == 0.25);
    assert_false(metrics_lower_is_better("exact_match"));
    aflo_metrics lm = {.causal_lm = true, .loss = 2.0};
    double ppl = 0;
    assert_int_equal(metrics_lookup(&lm, "perplexity", &ppl), 0);
    assert_true(ppl == exp(2.0));
    assert_int_equal(metrics_lookup(&m, "perplexity", &ppl), -1);
    assert_int_equal(metrics_lookup(&lm, "accuracy", &ppl), -1);
    for (int k = 0; k < 6; k++) {
        double v = 0;
        bool classification = k < 3; /* accuracy, f1, mcc */
        assert_string_equal(spec_fields[row].choices[k], names[k]);
        m.classification = !classification;
        assert_int_equal(metrics_lookup(&m, spec_fields[row].choices[k], &v), -1);
        m.classification = classification;
        assert_int_equal(metrics_lookup(&m, spec_fields[row].choices[k], &v), 0);
        assert_true(v == (double)(k + 1));
    }

    /* The messages say which task the metric belongs to. */
    expect_error(J("{'model':'m','task':'regression','dataset':{'train':'t.tsv'},'metric':'mcc'}"),
                 SPEC_E_CONFLICT, "metric", "classification metric (task is regression)");
    expect_error(J("{'model':'m','dataset':{'train':'t.tsv'},'metric':'mse'}"), SPEC_E_CONFLICT,
                 "metric", "regression metric (task is classification)");
    expect_error(J("{'model':'m','dataset':{'train':'t.tsv'},'num_labels':3,'metric':'f1'}"),
                 SPEC_E_CONFLICT, "metric", "binary");
    /* f1 with an unknown label count is left to the data */
    parse_ok(J("{'model':'m','dataset':{'train':'t.tsv'},'metric':'f1'}"), &s);
    assert_int_equal(s.metric, SPEC_METRIC_F1);
    spec_free(&s);
}

static void test_length_bucketing_field(void **state) {
    (void)state;
    aflo_job_spec s;
    aflo_train_config tc;
    parse_ok(J("{'model':'demo','length_bucketing':true,'batch_size':8,'grad_accum':2}"), &s);
    assert_true(s.length_bucketing);
    spec_to_train_config(&s, &tc);
    assert_true(tc.length_bucketing);
    assert_int_equal(tc.batch_size, 8);
    assert_int_equal(tc.grad_accum, 2);
    cJSON *j = spec_to_json(&s);
    assert_non_null(j);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "length_bucketing")));
    cJSON_Delete(j);
    spec_free(&s);
    parse_ok(J("{'model':'demo','length_bucketing':false}"), &s);
    spec_to_train_config(&s, &tc);
    assert_false(tc.length_bucketing);
    spec_free(&s);
}

/* init_adapter: a path, or "job:<id>" naming a job of the daemon. */
static void test_init_adapter_forms(void **state) {
    (void)state;
    aflo_job_spec s;
    parse_ok(J("{'model':'demo','init_adapter':'job:0123456789abcdef'}"), &s);
    assert_string_equal(spec_init_adapter_job(&s), "0123456789abcdef");
    assert_string_equal(s.init_adapter, "job:0123456789abcdef"); /* stored as given */
    spec_free(&s);
    parse_ok(J("{'model':'demo','init_adapter':'out/adapter/adapter.safetensors'}"), &s);
    assert_null(spec_init_adapter_job(&s));
    spec_free(&s);
    parse_ok(J("{'model':'demo'}"), &s);
    assert_null(spec_init_adapter_job(&s));
    spec_free(&s);
    aflo_spec_error e;
    const char *bad = J("{'model':'demo','init_adapter':'job:abc'}");
    assert_int_equal(spec_parse(bad, strlen(bad), &s, &e), -1);
    assert_non_null(strstr(e.message, "job id"));
    spec_free(&s);
}

/* ---- round trip ------------------------------------------------------------ */

static void round_trip(const char *json) {
    aflo_job_spec a, b;
    parse_ok(json, &a);
    char *text = spec_to_json_string(&a, true);
    assert_non_null(text);
    parse_ok(text, &b);
    if (!spec_equal(&a, &b)) fail_msg("round trip differs:\n%s\n->\n%s", json, text);
    char *again = spec_to_json_string(&b, true);
    assert_non_null(again);
    assert_string_equal(text, again); /* normalising is idempotent */
    char *compact = spec_to_json_string(&b, false);
    assert_non_null(compact);
    assert_null(strchr(compact, '\n'));
    spec_free(&b);
    parse_ok(compact, &b);
    assert_true(spec_equal(&a, &b));
    free(text);
    free(again);
    free(compact);
    spec_free(&a);
    spec_free(&b);
}

static void test_round_trip(void **state) {
    (void)state;
    round_trip(J("{'model':'demo'}"));
    round_trip(QUICKSTART);
    round_trip(J("{'model':'demo','method':'elora'}"));
    round_trip(J("{'model':'demo','method':'full','learning_rate':2e-5}"));
    round_trip(J("{'model':'models/roberta-base','dataset':{'train':'mrpc/train.tsv',"
                 "'eval':'0123456789abcdef','format':'tsv','has_header':false,"
                 "'text_fields':[3,4],'label_field':0,'labels':['no','yes']}}"));
    round_trip(J("{'model':'m','task':'regression','method':'lora','rank':16,'alpha':0.1,"
                 "'target_modules':['output.dense','query'],'epochs':7,'batch_size':3,"
                 "'grad_accum':5,'max_seq_len':256,'learning_rate':3e-4,"
                 "'head_learning_rate':0.07,'weight_decay':0,'warmup_ratio':0.3333333333333333,"
                 "'max_grad_norm':1e6,'seed':9007199254740991,'threads':3,'dropout':false,"
                 "'init_adapter':'runs/a.adapter',"
                 "'dataset':{'train':'stsb/train.csv','text_fields':['s1','s2'],"
                 "'label_field':'score'}}"));
    round_trip(J("{'model':'m','epochs':3,'trainable_projections':'none',"
                 "'freeze':{'initial_warmup_epochs':0.25,'final_warmup_epochs':1.7,"
                 "'delta_t':1,'beta1':0,'beta2':0.999},"
                 "'dataset':{'train':'t.jsonl','text_fields':['text'],'label_field':'y'},"
                 "'num_labels':5}"));
    round_trip(J("{'model':'m','metric':'mcc','length_bucketing':true,"
                 "'dataset':{'train':'cola.tsv','has_header':false,'text_fields':[3],"
                 "'label_field':1}}"));
    round_trip(J("{'model':'m','task':'regression','metric':'mse',"
                 "'dataset':{'train':'stsb.tsv'}}"));
    round_trip(J("{'model':'m','preset':'glue/stsb','dataset':{'train':'stsb.tsv'}}"));
}

/* ---- presets ----------------------------------------------------------------- */

/* A preset fills what the spec leaves out, with the authors' per-task values. */
static void test_preset_fills_the_recipe(void **state) {
    (void)state;
    aflo_job_spec s;
    parse_ok(J("{'model':'m','preset':'glue/mrpc','dataset':{'train':'mrpc.tsv'}}"), &s);
    assert_string_equal(s.preset, "glue/mrpc");
    assert_int_equal(s.task, TASK_CLASSIFICATION);
    assert_int_equal(s.metric, SPEC_METRIC_ACCURACY);
    assert_int_equal(s.epochs, 20);
    assert_true(s.learning_rate == 1e-2);
    assert_true(s.head_learning_rate == 8e-2);
    assert_int_equal(s.batch_size * s.grad_accum, 64);
    assert_int_equal(s.max_seq_len, 256);
    assert_true(s.warmup_ratio == 0.06);
    assert_true(s.weight_decay == 0.1);
    assert_true(s.max_grad_norm == 0.1);
    assert_int_equal(s.seed, 42);
    assert_int_equal(s.rank, 4);
    assert_int_equal(s.dataset.n_text_fields, 2);
    assert_string_equal(s.dataset.text_fields[0].name, "sentence1");
    assert_string_equal(s.dataset.text_fields[1].name, "sentence2");
    spec_free(&s);

    /* The four-GPU scripts: 256 examples per step; STS-B is regression by Pearson. */
    parse_ok(J("{'model':'m','preset':'glue/qnli','dataset':{'train':'q.tsv'}}"), &s);
    assert_int_equal(s.batch_size * s.grad_accum, 256);
    assert_true(s.learning_rate == 1e-3);
    assert_int_equal(s.epochs, 10);
    spec_free(&s);
    parse_ok(J("{'model':'m','preset':'glue/stsb','dataset':{'train':'s.tsv'}}"), &s);
    assert_int_equal(s.task, TASK_REGRESSION);
    assert_int_equal(s.metric, SPEC_METRIC_PEARSON);
    assert_int_equal(spec_num_labels(&s), 1);
    spec_free(&s);
    parse_ok(J("{'model':'m','preset':'glue/cola','dataset':{'train':'c.tsv'}}"), &s);
    assert_int_equal(s.metric, SPEC_METRIC_MCC);
    assert_int_equal(s.dataset.n_text_fields, 1);
    spec_free(&s);
    /* The demo model has no dataset object: the preset adds none. */
    parse_ok(J("{'model':'demo','preset':'glue/sst2'}"), &s);
    assert_false(s.has_dataset);
    assert_int_equal(s.epochs, 10);
    spec_free(&s);
}

/* Whatever the spec gives wins; other methods keep their own learning rates. */
static void test_preset_is_overridden(void **state) {
    (void)state;
    aflo_job_spec s;
    parse_ok(J("{'model':'m','preset':'glue/rte','epochs':3,'head_learning_rate':0.5,"
               "'metric':'f1','dataset':{'train':'r.tsv','text_fields':['a','b']}}"),
             &s);
    assert_int_equal(s.epochs, 3);
    assert_true(s.head_learning_rate == 0.5);
    assert_true(s.learning_rate == 1e-2);
    assert_int_equal(s.metric, SPEC_METRIC_F1);
    assert_string_equal(s.dataset.text_fields[0].name, "a");
    spec_free(&s);
    aflo_job_spec d;
    parse_ok(J("{'model':'m','method':'full','dataset':{'train':'r.tsv'}}"), &d);
    parse_ok(J("{'model':'m','method':'full','preset':'glue/stsb','dataset':{'train':'r.tsv'}}"),
             &s);
    assert_true(s.learning_rate == d.learning_rate);
    assert_true(s.head_learning_rate == d.head_learning_rate);
    assert_int_equal(s.epochs, 20);
    spec_free(&s);
    spec_free(&d);
}

/* The schema carries each preset's values (x-presets) for the dashboard,
 * and they are what the daemon stores for a spec naming only the preset:
 * every field of "fields" equals the parsed spec's, for every preset. */
static void test_preset_schema(void **state) {
    (void)state;
    cJSON *sc = spec_schema_json();
    assert_non_null(sc);
    cJSON *pp = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(sc, "properties"),
                                                 "preset");
    cJSON *names = cJSON_GetObjectItemCaseSensitive(pp, "enum");
    assert_int_equal(cJSON_GetArraySize(names), 8);
    cJSON *tasks = cJSON_GetObjectItemCaseSensitive(pp, "x-tasks");
    assert_int_equal(cJSON_GetArraySize(tasks), 2);
    for (cJSON *t = tasks->child; t; t = t->next)
        assert_string_not_equal(t->valuestring, "causal_lm");
    cJSON *all = cJSON_GetObjectItemCaseSensitive(pp, "x-presets");
    assert_int_equal(cJSON_GetArraySize(all), 8);
    for (cJSON *n = names->child; n; n = n->next) {
        cJSON *e = cJSON_GetObjectItemCaseSensitive(all, n->valuestring);
        if (!e) fail_msg("x-presets lacks %s", n->valuestring);
        cJSON *fields = cJSON_GetObjectItemCaseSensitive(e, "fields");
        char buf[160];
        snprintf(buf, sizeof buf,
                 "{\"model\":\"m\",\"preset\":\"%s\",\"dataset\":{\"train\":\"t.tsv\"}}",
                 n->valuestring);
        aflo_job_spec s;
        parse_ok(buf, &s);
        cJSON *stored = spec_to_json(&s);
        assert_non_null(stored);
        assert_true(cJSON_GetArraySize(fields) >= 12);
        for (cJSON *f = fields->child; f; f = f->next) {
            cJSON *got = cJSON_GetObjectItemCaseSensitive(stored, f->string);
            if (strcmp(f->string, "dataset") == 0) {
                f = f->child;
                got = cJSON_GetObjectItemCaseSensitive(got, f->string);
                assert_true(cJSON_Compare(f, got, true));
                f = cJSON_GetObjectItemCaseSensitive(fields, "dataset");
                continue;
            }
            if (!cJSON_Compare(f, got, true))
                fail_msg("%s: x-presets %s differs from the stored spec", n->valuestring,
                         f->string);
        }
        /* The learning rates are filled for aflora only; nothing else is
         * method-dependent. */
        cJSON *by = cJSON_GetObjectItemCaseSensitive(e, "field_methods");
        assert_int_equal(cJSON_GetArraySize(by), 2);
        static const char *const rates[] = {"learning_rate", "head_learning_rate"};
        for (int k = 0; k < 2; k++) {
            cJSON *ms = cJSON_GetObjectItemCaseSensitive(by, rates[k]);
            assert_int_equal(cJSON_GetArraySize(ms), 1);
            assert_string_equal(cJSON_GetArrayItem(ms, 0)->valuestring, "aflora");
        }
        cJSON_Delete(stored);
        spec_free(&s);
    }
    cJSON *stsb = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(all, "glue/stsb"), "fields");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(stsb, "task")->valuestring, "regression");
    assert_true(cJSON_GetObjectItemCaseSensitive(stsb, "epochs")->valuedouble == 20);
    cJSON_Delete(sc);
}

/* The accessor: what preset_apply fills, per method; unknown names named. */
static void test_preset_fields_json(void **state) {
    (void)state;
    char err[256];
    cJSON *a = preset_fields_json("glue/rte", NULL, err, sizeof err);
    cJSON *l = preset_fields_json("glue/rte", "lora", err, sizeof err);
    assert_non_null(a);
    assert_non_null(l);
    assert_null(cJSON_GetObjectItemCaseSensitive(a, "preset"));
    assert_null(cJSON_GetObjectItemCaseSensitive(a, "method"));
    assert_true(cJSON_GetObjectItemCaseSensitive(a, "head_learning_rate")->valuedouble == 4e-2);
    assert_null(cJSON_GetObjectItemCaseSensitive(l, "learning_rate"));
    assert_int_equal(cJSON_GetArraySize(a), cJSON_GetArraySize(l) + 2);
    cJSON *tf = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(a, "dataset"),
                                                 "text_fields");
    assert_int_equal(cJSON_GetArraySize(tf), 2);
    cJSON_Delete(a);
    cJSON_Delete(l);
    assert_null(preset_fields_json("glue/wnli", NULL, err, sizeof err));
    assert_non_null(strstr(err, "unknown preset"));
}

static void test_preset_errors(void **state) {
    (void)state;
    expect_error(J("{'model':'m','preset':'glue/wnli','dataset':{'train':'t'}}"),
                 SPEC_E_INVALID_VALUE, "preset", "known: glue/cola");
    expect_error(J("{'model':'m','preset':'glue/rte','task':'causal_lm','dataset':{'train':'t'}}"),
                 SPEC_E_INVALID_VALUE, "preset", "causal_lm");
    expect_error(J("{'model':'m','preset':7,'dataset':{'train':'t'}}"), SPEC_E_WRONG_TYPE, "preset",
                 NULL);
    /* A preset's value is validated like a typed one: stsb's regression
     * refuses a classification metric given with it. */
    expect_error(J("{'model':'m','preset':'glue/stsb','metric':'mcc','dataset':{'train':'t'}}"),
                 SPEC_E_CONFLICT, "metric", NULL);
}

/* spec_equal must see a change in any one field, or the round trip proves nothing. */
static void test_equal_detects_differences(void **state) {
    (void)state;
    static const char *const base =
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':5,'seed':1}";
    static const char *const variants[] = {
        "{'model':'n','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':5,'seed':1}",
        "{'model':'m','dataset':{'train':'u.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':5,'seed':1}",
        "{'model':'m','dataset':{'train':'t.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':5,'seed':1}",
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','c'],"
        "'labels':['x','y']},'epochs':5,'seed':1}",
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a'],"
        "'labels':['x','y']},'epochs':5,'seed':1}",
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['y','x']},'epochs':5,'seed':1}",
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':6,'seed':1}",
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':5,'seed':2}",
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':5,'seed':1,'freeze':{'beta2':0.9}}",
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':5,'seed':1,'freeze':{'enabled':false}}",
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':5,'seed':1,'freeze':{'sensitivity':'weight_grad'}}",
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':5,'seed':1,'target_modules':['query']}",
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':5,'seed':1,'init_adapter':'a.bin'}",
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':5,'seed':1,'learning_rate':0.0100001}",
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':5,'seed':1,'metric':'mcc'}",
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':5,'seed':1,'length_bucketing':true}",
        "{'model':'m','dataset':{'train':'t.tsv','eval':'d.tsv','text_fields':['a','b'],"
        "'labels':['x','y']},'epochs':5,'seed':1,'preset':'glue/rte'}",
    };
    /* and the causal-LM fields */
    static const char *const lm_base =
        "{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'},'answer_rule':'exact'}";
    static const char *const lm_variants[] = {
        "{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'},'answer_rule':'gsm8k'}",
        "{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'},'answer_rule':'exact',"
        "'eval_max_new_tokens':9}",
    };
    aflo_job_spec a, b;
    parse_ok(J(base), &a);
    parse_ok(J(base), &b);
    assert_true(spec_equal(&a, &b));
    spec_free(&b);
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        parse_ok(J(variants[i]), &b);
        if (spec_equal(&a, &b)) fail_msg("variant %zu compares equal", i);
        spec_free(&b);
    }
    spec_free(&a);
    parse_ok(J(lm_base), &a);
    for (size_t i = 0; i < sizeof lm_variants / sizeof lm_variants[0]; i++) {
        parse_ok(J(lm_variants[i]), &b);
        if (spec_equal(&a, &b)) fail_msg("causal-LM variant %zu compares equal", i);
        spec_free(&b);
    }
    spec_free(&a);
}

/* ---- documentation ------------------------------------------------------------ */

/* Every field of the task statement, typed out independently of the table. */
static const char *const ALL_FIELDS[] = {
    "preset",
    "model",
    "task",
    "num_labels",
    "dataset",
    "dataset.train",
    "dataset.eval",
    "dataset.format",
    "dataset.text_fields",
    "dataset.label_field",
    "dataset.labels",
    "dataset.has_header",
    "metric",
    "method",
    "rank",
    "alpha",
    "target_modules",
    "trainable_projections",
    "freeze",
    "freeze.enabled",
    "freeze.sensitivity",
    "freeze.initial_warmup_epochs",
    "freeze.final_warmup_epochs",
    "freeze.delta_t",
    "freeze.beta1",
    "freeze.beta2",
    "epochs",
    "batch_size",
    "grad_accum",
    "max_seq_len",
    "learning_rate",
    "head_learning_rate",
    "weight_decay",
    "warmup_ratio",
    "max_grad_norm",
    "seed",
    "threads",
    "dropout",
    "train_on_inputs",
    "answer_rule",
    "eval_max_new_tokens",
    "activation_checkpointing",
    "init_adapter",
    "length_bucketing",
};
#define N_ALL_FIELDS ((int)(sizeof ALL_FIELDS / sizeof ALL_FIELDS[0]))

static const char *find_row(const char *md, const char *name) {
    char key[96];
    snprintf(key, sizeof key, "\n| `%s` |", name);
    return strstr(md, key);
}

static void test_markdown_lists_every_field(void **state) {
    (void)state;
    assert_int_equal(spec_field_count, N_ALL_FIELDS);
    char *md = spec_doc_markdown();
    assert_non_null(md);
    assert_true(strncmp(md, "| Field | Type | Default | Allowed | Description |\n", 51) == 0);
    for (int i = 0; i < N_ALL_FIELDS; i++)
        if (!find_row(md, ALL_FIELDS[i])) fail_msg("no row for %s", ALL_FIELDS[i]);
    int rows = 0;
    /* The field table ends where the presets' paragraph and table begin. */
    char *presets = strstr(md, "\nPresets (`preset`)");
    assert_non_null(presets);
    for (const char *const *n = preset_names; *n; n++) {
        char row[64];
        snprintf(row, sizeof row, "\n| `%s` |", *n);
        if (!strstr(presets, row)) fail_msg("no preset row for %s", *n);
    }
    presets[0] = '\0';
    for (const char *p = md; (p = strstr(p, "\n| `")); p++) rows++;
    assert_int_equal(rows, N_ALL_FIELDS);
    /* Each row has 5 cells: 6 unescaped '|' on its line. */
    for (const char *line = strchr(md, '\n') + 1; *line; line = strchr(line, '\n') + 1) {
        int bars = 0;
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        for (const char *p = line; p < end; p++)
            if (*p == '|' && (p == line || p[-1] != '\\')) bars++;
        assert_int_equal(bars, 6);
    }
    /* Spot checks of content: defaults, ranges, method notes, the batch why. */
    const char *r = find_row(md, "epochs");
    assert_non_null(strstr(r, "| integer | `20` | an integer from 1 to 1000 |"));
    r = find_row(md, "rank");
    assert_non_null(strstr(r, "1024 for elora"));
    r = find_row(md, "alpha");
    assert_non_null(strstr(r, "Only for method lora."));
    r = find_row(md, "batch_size");
    const char *eol = strchr(r + 1, '\n');
    const char *why = strstr(r, "64");
    assert_true(why && why < eol);
    r = find_row(md, "model");
    assert_non_null(strstr(r, "*required*"));
    r = find_row(md, "method");
    assert_non_null(strstr(r, "`\"aflora\"`, `\"elora\"`, `\"lora\"`, `\"full\"`"));
    r = find_row(md, "metric");
    eol = strchr(r + 1, '\n');
    const char *glue = strstr(r, "CoLA by mcc, STS-B by pearson and MRPC by f1");
    assert_true(glue && glue < eol);
    assert_non_null(strstr(r, "| string | \"accuracy\" for classification, \"pearson\" for "
                              "regression, \"perplexity\" for causal_lm | `\"accuracy\"`, "
                              "`\"f1\"`, `\"mcc\"`, `\"pearson\"`, `\"spearman\"`, `\"mse\"`, "
                              "`\"perplexity\"`, `\"exact_match\"` |"));
    r = find_row(md, "answer_rule");
    assert_non_null(strstr(r, "| string | `\"none\"` | `\"none\"`, `\"exact\"`, `\"gsm8k\"` |"));
    r = find_row(md, "eval_max_new_tokens");
    assert_non_null(strstr(r, "| integer | `256` | an integer from 1 to 4096 |"));
    r = find_row(md, "length_bucketing");
    assert_non_null(strstr(r, "| boolean | `false` | `true`, `false` |"));
    free(md);
}

static void test_schema(void **state) {
    (void)state;
    cJSON *sc = spec_schema_json();
    assert_non_null(sc);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(sc, "type")->valuestring, "object");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(sc, "additionalProperties")));
    cJSON *req = cJSON_GetObjectItemCaseSensitive(sc, "required");
    assert_int_equal(cJSON_GetArraySize(req), 1);
    assert_string_equal(cJSON_GetArrayItem(req, 0)->valuestring, "model");
    /* Every field is reachable through "properties" by its dotted path. */
    for (int i = 0; i < N_ALL_FIELDS; i++) {
        char path[96];
        snprintf(path, sizeof path, "%s", ALL_FIELDS[i]);
        cJSON *node = sc;
        for (char *tok = strtok(path, "."); tok; tok = strtok(NULL, ".")) {
            node = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(node, "properties"), tok);
            if (!node) fail_msg("schema lacks %s", ALL_FIELDS[i]);
        }
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(node, "description")))
            fail_msg("%s has no description", ALL_FIELDS[i]);
    }
    cJSON *props = cJSON_GetObjectItemCaseSensitive(sc, "properties");
    cJSON *epochs = cJSON_GetObjectItemCaseSensitive(props, "epochs");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(epochs, "type")->valuestring, "integer");
    assert_true(cJSON_GetObjectItemCaseSensitive(epochs, "minimum")->valuedouble == 1);
    assert_true(cJSON_GetObjectItemCaseSensitive(epochs, "maximum")->valuedouble == 1000);
    assert_true(cJSON_GetObjectItemCaseSensitive(epochs, "default")->valuedouble == 20);
    cJSON *alpha = cJSON_GetObjectItemCaseSensitive(props, "alpha");
    assert_true(cJSON_GetObjectItemCaseSensitive(alpha, "exclusiveMinimum")->valuedouble == 0);
    assert_null(cJSON_GetObjectItemCaseSensitive(alpha, "minimum"));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(alpha, "x-default")->valuestring,
                        "2 × rank");
    cJSON *xm = cJSON_GetObjectItemCaseSensitive(alpha, "x-methods");
    assert_int_equal(cJSON_GetArraySize(xm), 1);
    assert_string_equal(cJSON_GetArrayItem(xm, 0)->valuestring, "lora");
    cJSON *method = cJSON_GetObjectItemCaseSensitive(props, "method");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(method, "enum")), 4);
    cJSON *ds = cJSON_GetObjectItemCaseSensitive(props, "dataset");
    cJSON *dreq = cJSON_GetObjectItemCaseSensitive(ds, "required");
    assert_int_equal(cJSON_GetArraySize(dreq), 1);
    assert_string_equal(cJSON_GetArrayItem(dreq, 0)->valuestring, "train");
    cJSON *tf = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ds, "properties"),
                                                 "text_fields");
    assert_true(cJSON_GetObjectItemCaseSensitive(tf, "maxItems")->valuedouble == 2);
    cJSON *fr = cJSON_GetObjectItemCaseSensitive(props, "freeze");
    assert_string_equal(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(fr, "x-methods"), 0)->valuestring,
        "aflora");
    cJSON_Delete(sc);
}

/* freeze.enabled and freeze.sensitivity: defaults, parsing, the trainer's
 * config and the normalised JSON (which a checkpoint's record compares). */
static void test_freeze_switches(void **state) {
    (void)state;
    aflo_job_spec s;
    aflo_train_config tc;
    parse_ok(J("{'model':'demo'}"), &s);
    assert_true(s.freeze.enabled);
    assert_int_equal(s.freeze.sensitivity, FREEZE_SENS_GRAD);
    cJSON *j = spec_to_json(&s);
    cJSON *fr = cJSON_GetObjectItemCaseSensitive(j, "freeze");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(fr, "enabled")));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(fr, "sensitivity")->valuestring, "grad");
    cJSON_Delete(j);
    spec_free(&s);

    parse_ok(J("{'model':'demo','freeze':{'enabled':false,'sensitivity':'weight_grad'}}"), &s);
    assert_false(s.freeze.enabled);
    assert_int_equal(s.freeze.sensitivity, FREEZE_SENS_WEIGHT_GRAD);
    spec_to_train_config(&s, &tc);
    assert_false(tc.freeze_enabled);
    assert_int_equal(tc.freeze_sensitivity, FREEZE_SENS_WEIGHT_GRAD);
    char *text = spec_to_json_string(&s, false);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"enabled\":false"));
    assert_non_null(strstr(text, "\"sensitivity\":\"weight_grad\""));
    aflo_job_spec back;
    parse_ok(text, &back); /* the normalised form parses to the same spec */
    assert_true(spec_equal(&s, &back));
    spec_free(&back);
    free(text);
    spec_free(&s);
    /* the table's choices are the engine's names, by value */
    for (int i = 0; i < spec_field_count; i++) {
        const spec_field_info *f = &spec_fields[i];
        if (strcmp(f->name, "freeze.sensitivity") != 0) continue;
        assert_int_equal(f->n_choices, FREEZE_SENS_COUNT);
        assert_string_equal(f->choices[FREEZE_SENS_GRAD], "grad");
        assert_string_equal(f->choices[FREEZE_SENS_WEIGHT_GRAD], "weight_grad");
    }
}

static void test_table_agrees_with_engine_names(void **state) {
    (void)state;
    /* The format choices are indexed by textdata_format. */
    for (int i = 0; i < spec_field_count; i++) {
        const spec_field_info *f = &spec_fields[i];
        if (strcmp(f->name, "dataset.format") != 0) continue;
        assert_int_equal(f->n_choices, 4);
        for (int k = 0; k < f->n_choices; k++)
            assert_string_equal(f->choices[k], textdata_format_name((textdata_format)k));
    }
    aflo_job_spec s;
    parse_ok(J("{'model':'m','dataset':{'train':'t','format':'jsonl'}}"), &s);
    assert_int_equal(s.dataset.format, TEXTDATA_JSONL);
    spec_free(&s);
    parse_ok(J("{'model':'demo','trainable_projections':'none','method':'aflora'}"), &s);
    assert_int_equal(s.trainable_projections, PROJ_NONE);
    spec_free(&s);
    parse_ok(J("{'model':'m','task':'regression','dataset':{'train':'t.csv'}}"), &s);
    assert_int_equal(s.task, TASK_REGRESSION);
    spec_free(&s);
}

static void test_parse_file_and_codes(void **state) {
    (void)state;
    char dir[] = "/tmp/test_spec_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/spec.json", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(QUICKSTART, f);
    assert_int_equal(fclose(f), 0);
    aflo_job_spec s;
    aflo_spec_error e;
    assert_int_equal(spec_parse_file(path, &s, &e), 0);
    assert_int_equal(s.epochs, 3);
    spec_free(&s);
    unlink(path);
    assert_int_equal(spec_parse_file(path, &s, &e), -1);
    assert_int_equal(e.code, SPEC_E_IO);
    assert_string_equal(e.field, "");
    assert_non_null(strstr(e.message, "spec.json"));
    rmdir(dir);

    assert_string_equal(spec_error_code_name(SPEC_OK), "ok");
    assert_string_equal(spec_error_code_name(SPEC_E_UNKNOWN_FIELD), "unknown_field");
    assert_string_equal(spec_error_code_name(SPEC_E_WRONG_TYPE), "wrong_type");
    assert_string_equal(spec_error_code_name(SPEC_E_OUT_OF_RANGE), "out_of_range");
    assert_string_equal(spec_error_code_name(SPEC_E_CONFLICT), "conflict");
    assert_string_equal(spec_error_code_name(SPEC_E_COUNT), "unknown");
}

/* task causal_lm: JSON Lines only, no labels or columns, perplexity by
 * default, train_on_inputs only for it. */
static void test_causal_lm(void **state) {
    (void)state;
    aflo_job_spec s;
    aflo_train_config tc;
    parse_ok(J("{'model':'tiny-llama','task':'causal_lm','dataset':{'train':'t.jsonl',"
               "'eval':'e.json'},'train_on_inputs':true}"),
             &s);
    assert_int_equal(s.task, TASK_CAUSAL_LM);
    assert_int_equal(s.metric, SPEC_METRIC_PERPLEXITY);
    assert_true(s.train_on_inputs);
    assert_int_equal(s.activation_checkpointing, CHECKPOINTING_AUTO);
    spec_to_train_config(&s, &tc);
    assert_string_equal(tc.select_metric, "perplexity");
    cJSON *j = spec_to_json(&s);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "task")->valuestring, "causal_lm");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "train_on_inputs")));
    cJSON_Delete(j);
    spec_free(&s);
    expect_error(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.tsv'}}"), SPEC_E_CONFLICT,
                 "dataset.train", "task causal_lm reads JSON Lines");
    expect_error(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'},"
                   "'num_labels':3}"),
                 SPEC_E_CONFLICT, "num_labels", "does not apply to task causal_lm");
    expect_error(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl',"
                   "'text_fields':['a']}}"),
                 SPEC_E_CONFLICT, "dataset.text_fields", "does not apply to task causal_lm");
    parse_ok(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'},"
               "'activation_checkpointing':'on'}"),
             &s);
    assert_int_equal(s.activation_checkpointing, CHECKPOINTING_ON);
    spec_free(&s);
    expect_error(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'},"
                   "'activation_checkpointing':'always'}"),
                 SPEC_E_INVALID_VALUE, "activation_checkpointing", NULL);
    expect_error(J("{'model':'m','dataset':{'train':'t.tsv'},'activation_checkpointing':'on'}"),
                 SPEC_E_CONFLICT, "activation_checkpointing",
                 "applies only to task causal_lm (task is classification)");
    expect_error(J("{'model':'m','dataset':{'train':'t.tsv'},'train_on_inputs':false}"),
                 SPEC_E_CONFLICT, "train_on_inputs",
                 "applies only to task causal_lm (task is classification)");
    expect_error(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'},"
                   "'metric':'mcc'}"),
                 SPEC_E_CONFLICT, "metric",
                 "\"mcc\" is a classification metric (task is causal_lm); use \"perplexity\" or "
                 "\"exact_match\"");
    expect_error(J("{'model':'m','dataset':{'train':'t.tsv'},'metric':'perplexity'}"),
                 SPEC_E_CONFLICT, "metric",
                 "\"perplexity\" is a causal_lm metric (task is classification); use "
                 "\"accuracy\", \"f1\" or \"mcc\"");
    expect_error(J("{'model':'demo','task':'causal_lm'}"), SPEC_E_CONFLICT, "task",
                 "the demo dataset is binary classification");
}

/* answer_rule and eval_max_new_tokens: causal_lm's, the second only with
 * a rule; metric exact_match only with a rule; into the trainer's
 * gen_eval; in the normalised spec only where they apply. */
static void test_answer_rule(void **state) {
    (void)state;
    aflo_job_spec s;
    aflo_train_config tc;
    parse_ok(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl','eval':'e.jsonl'},"
               "'answer_rule':'gsm8k','eval_max_new_tokens':64,'metric':'exact_match'}"),
             &s);
    assert_int_equal(s.answer_rule, ANSWER_GSM8K);
    assert_int_equal(s.eval_max_new_tokens, 64);
    assert_int_equal(s.metric, SPEC_METRIC_EXACT_MATCH);
    spec_to_train_config(&s, &tc);
    assert_int_equal(tc.gen_eval.rule, ANSWER_GSM8K);
    assert_int_equal(tc.gen_eval.max_new_tokens, 64);
    assert_string_equal(tc.select_metric, "exact_match");
    cJSON *j = spec_to_json(&s);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "answer_rule")->valuestring, "gsm8k");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "eval_max_new_tokens")->valueint, 64);
    cJSON_Delete(j);
    spec_free(&s);
    /* defaults: no rule, 256 tokens; the limit is left out of the JSON */
    parse_ok(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'}}"), &s);
    assert_int_equal(s.answer_rule, ANSWER_NONE);
    assert_int_equal(s.eval_max_new_tokens, LMEVAL_DEFAULT_MAX_NEW_TOKENS);
    spec_to_train_config(&s, &tc);
    assert_int_equal(tc.gen_eval.rule, ANSWER_NONE);
    j = spec_to_json(&s);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "answer_rule")->valuestring, "none");
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "eval_max_new_tokens"));
    cJSON_Delete(j);
    spec_free(&s);
    /* other tasks' specs do not mention them */
    parse_ok(J("{'model':'m','dataset':{'train':'t.tsv'}}"), &s);
    j = spec_to_json(&s);
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "answer_rule"));
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "eval_max_new_tokens"));
    cJSON_Delete(j);
    spec_free(&s);
    round_trip(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl','eval':'e.jsonl'},"
                 "'answer_rule':'exact','eval_max_new_tokens':4096}"));
    round_trip(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'},"
                 "'answer_rule':'none'}"));

    expect_error(J("{'model':'m','dataset':{'train':'t.tsv'},'answer_rule':'gsm8k'}"),
                 SPEC_E_CONFLICT, "answer_rule",
                 "applies only to task causal_lm (task is classification)");
    expect_error(J("{'model':'m','task':'regression','dataset':{'train':'t.tsv'},"
                   "'eval_max_new_tokens':8}"),
                 SPEC_E_CONFLICT, "eval_max_new_tokens",
                 "applies only to task causal_lm (task is regression)");
    expect_error(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'},"
                   "'eval_max_new_tokens':8}"),
                 SPEC_E_CONFLICT, "eval_max_new_tokens", "has no effect without an answer_rule");
    expect_error(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'},"
                   "'answer_rule':'exact','eval_max_new_tokens':0}"),
                 SPEC_E_OUT_OF_RANGE, "eval_max_new_tokens", NULL);
    expect_error(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'},"
                   "'answer_rule':'exact','eval_max_new_tokens':4097}"),
                 SPEC_E_OUT_OF_RANGE, "eval_max_new_tokens", NULL);
    expect_error(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'},"
                   "'answer_rule':'regex'}"),
                 SPEC_E_INVALID_VALUE, "answer_rule", NULL);
    expect_error(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'},"
                   "'metric':'exact_match'}"),
                 SPEC_E_CONFLICT, "metric", "exact_match needs generations to judge");
    expect_error(J("{'model':'m','dataset':{'train':'t.tsv'},'metric':'exact_match'}"),
                 SPEC_E_CONFLICT, "metric", "\"exact_match\" is a causal_lm metric");
}

/* A LLaMA-family model's default targets are the AFLoRA authors' (q, k, v,
 * up, down); named targets map to its own module indices. */
static void test_llama_targets(void **state) {
    (void)state;
    char err_buf[256];
    aflo_job_spec s;
    aflo_adapter_config ac;
    const aflo_family *llama = family_by_name("llama");
    assert_non_null(llama);
    parse_ok(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'}}"), &s);
    assert_int_equal(spec_to_adapter_config(&s, llama, &ac, err_buf, sizeof err_buf), 0);
    assert_int_equal(ac.targets, (1u << 0) | (1u << 1) | (1u << 2) | (1u << 5) | (1u << 6));
    spec_free(&s);
    parse_ok(J("{'model':'m','task':'causal_lm','dataset':{'train':'t.jsonl'},"
               "'target_modules':['o_proj','gate_proj']}"),
             &s);
    assert_int_equal(spec_to_adapter_config(&s, llama, &ac, err_buf, sizeof err_buf), 0);
    assert_int_equal(ac.targets, (1u << 3) | (1u << 4));
    spec_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_demo_gets_every_default),
        cmocka_unit_test(test_quickstart),
        cmocka_unit_test(test_method_defaults),
        cmocka_unit_test(test_target_modules_bind_to_the_family),
        cmocka_unit_test(test_freeze_defaults_scale_with_epochs),
        cmocka_unit_test(test_freeze_phases_must_fit),
        cmocka_unit_test(test_each_field_rejected_with_its_path),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_document_limits),
        cmocka_unit_test(test_dataset_forms),
        cmocka_unit_test(test_train_config),
        cmocka_unit_test(test_defaults_are_the_engines),
        cmocka_unit_test(test_metric),
        cmocka_unit_test(test_causal_lm),
        cmocka_unit_test(test_answer_rule),
        cmocka_unit_test(test_llama_targets),
        cmocka_unit_test(test_length_bucketing_field),
        cmocka_unit_test(test_init_adapter_forms),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_preset_fills_the_recipe),
        cmocka_unit_test(test_preset_is_overridden),
        cmocka_unit_test(test_preset_errors),
        cmocka_unit_test(test_preset_schema),
        cmocka_unit_test(test_preset_fields_json),
        cmocka_unit_test(test_equal_detects_differences),
        cmocka_unit_test(test_markdown_lists_every_field),
        cmocka_unit_test(test_schema),
        cmocka_unit_test(test_freeze_switches),
        cmocka_unit_test(test_table_agrees_with_engine_names),
        cmocka_unit_test(test_parse_file_and_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
