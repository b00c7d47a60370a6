/* test_golden.c — the engine against the float64 PyTorch reference.
 *
 * Each fixture in tests/golden/ (made by gen_golden.py, see its README)
 * holds a tiny model's weights, one batch, and the reference logits, loss and
 * gradients of every trainable tensor. The engine loads the same weights,
 * runs forward and backward in fp32, and must agree within
 * |c - ref| <= ATOL + RTOL * max|ref of that tensor|. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/gemm.h"
#include "model/model.h"
#include "io/safetensors.h"

#ifndef GOLDEN_DIR
#define GOLDEN_DIR "tests/golden"
#endif

/* fp32 against float64: 1e-4 of the tensor's scale, as the issue asks. */
#define RTOL 1e-4
#define ATOL 1e-6

static float *read_tensor(const st_file *f, const char *name, size_t *n) {
    long i = st_find(f, name);
    if (i < 0) {
        fprintf(stderr, "fixture lacks %s\n", name);
        fail();
    }
    *n = st_numel(f, (size_t)i);
    float *d = malloc(*n * sizeof *d);
    assert_non_null(d);
    char err[256];
    assert_int_equal(st_read_f32_at(f, (size_t)i, d, *n, err, sizeof err), 0);
    return d;
}

static void compare(const char *what, const float *got, const float *ref, size_t n) {
    double scale = 0, worst = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)ref[i]);
        if (e > worst) {
            worst = e;
            at = i;
        }
    }
    if (worst > ATOL + RTOL * scale) {
        fprintf(stderr, "%s: max error %.3g at %zu (got %.8g, ref %.8g, scale %.3g)\n", what, worst,
                at, got[at], ref[at], scale);
        fail();
    }
}

static void run_fixture(const char *file) {
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/%s", GOLDEN_DIR, file);
    st_file *f = st_open(path, err, sizeof err);
    if (!f) fprintf(stderr, "%s\n", err);
    assert_non_null(f);

    const char *cfg_text = st_metadata(f, "config");
    assert_non_null(cfg_text);
    aflo_config c;
    assert_int_equal(config_from_json(&c, cfg_text, strlen(cfg_text), err, sizeof err), 0);
    const char *method = st_metadata(f, "method");
    aflo_adapter_config ac = {.targets = ALL_MODULES, .projections = PROJ_ALL};
    for (int i = 0; i < METHOD_COUNT; i++)
        if (strcmp(method, method_names[i]) == 0) ac.method = (aflo_method)i;
    ac.rank = atoi(st_metadata(f, "rank"));
    ac.alpha = (float)atof(st_metadata(f, "alpha"));
    int labels = atoi(st_metadata(f, "num_labels"));
    aflo_task task =
        strcmp(st_metadata(f, "task"), "regression") == 0 ? TASK_REGRESSION : TASK_CLASSIFICATION;
    aflo_model *m = model_create(&c, &ac, task, labels, 1, err, sizeof err);
    if (!m) fprintf(stderr, "%s\n", err);
    assert_non_null(m);

    /* every model tensor comes from the fixture */
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        size_t n;
        float *d = read_tensor(f, p->name, &n);
        assert_int_equal(model_set_tensor(m, p->name, d, n, err, sizeof err), 0);
        free(d);
    }
    size_t n_ids, n_tt, n_mask, n_lab, n_logits, n_loss;
    float *ids_f = read_tensor(f, "in.input_ids", &n_ids);
    float *tt_f = read_tensor(f, "in.token_type_ids", &n_tt);
    float *mask_f = read_tensor(f, "in.attention_mask", &n_mask);
    float *lab_f = read_tensor(f, "in.labels", &n_lab);
    float *ref_logits = read_tensor(f, "out.logits", &n_logits);
    float *ref_loss = read_tensor(f, "out.loss", &n_loss);
    long ii = st_find(f, "in.input_ids");
    int B = (int)st_shape(f, (size_t)ii)[0], S = (int)st_shape(f, (size_t)ii)[1];
    int32_t *ids = calloc(n_ids, sizeof *ids), *tt = calloc(n_ids, sizeof *tt);
    int32_t *lab = calloc(n_lab, sizeof *lab);
    uint8_t *mask = calloc(n_ids, 1);
    assert_true(ids && tt && lab && mask);
    for (size_t i = 0; i < n_ids; i++) {
        ids[i] = (int32_t)ids_f[i];
        tt[i] = (int32_t)tt_f[i];
        mask[i] = mask_f[i] != 0.0f;
    }
    for (size_t i = 0; i < n_lab; i++) lab[i] = (int32_t)lab_f[i];
    aflo_batch b = {.batch = B,
                    .seq = S,
                    .input_ids = ids,
                    .token_type_ids = tt,
                    .attention_mask = mask,
                    .labels = lab,
                    .targets = lab_f};

    assert_int_equal(model_reserve(m, B, S, err, sizeof err), 0);
    model_zero_grad(m);
    float loss;
    assert_int_equal(model_forward(m, &b, &loss, err, sizeof err), 0);
    compare("logits", model_logits(m), ref_logits, n_logits);
    compare("loss", &loss, ref_loss, 1);
    model_backward(m, 1.0f);

    int checked = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        char gname[128];
        snprintf(gname, sizeof gname, "grad.%s", p->name);
        bool in_fixture = st_find(f, gname) >= 0;
        /* the fixture names exactly the tensors that train in this method */
        assert_int_equal(in_fixture, p->trainable);
        if (!in_fixture) continue;
        size_t n;
        float *ref = read_tensor(f, gname, &n);
        assert_int_equal(n, p->size);
        compare(gname, p->grad, ref, n);
        free(ref);
        checked++;
    }
    assert_true(checked >= 4);
    free(ids_f);
    free(tt_f);
    free(mask_f);
    free(lab_f);
    free(ref_logits);
    free(ref_loss);
    free(ids);
    free(tt);
    free(lab);
    free(mask);
    model_free(m);
    st_close(f);
}

static void test_aflora_classification(void **s) {
    (void)s;
    run_fixture("aflora_cls.safetensors");
}
static void test_lora_classification(void **s) {
    (void)s;
    run_fixture("lora_cls.safetensors");
}
static void test_full_regression(void **s) {
    (void)s;
    run_fixture("full_reg.safetensors");
}
static void test_roberta_aflora(void **s) {
    (void)s;
    run_fixture("roberta_aflora.safetensors");
}

int main(void) {
    engine_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aflora_classification),
        cmocka_unit_test(test_lora_classification),
        cmocka_unit_test(test_full_regression),
        cmocka_unit_test(test_roberta_aflora),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
