/* test_llama2c.c — llama2.c checkpoints as LLaMA-family models.
 *
 * The reference is a direct double-precision implementation of llama2.c's
 * run.c forward on the file's raw arrays (adjacent-pair RoPE, one token at
 * a time with a KV cache), written here and sharing nothing with the
 * engine: so the loader's wq/wk permutation, the tensor mapping and the
 * engine's forward are checked together. Random small checkpoints (shared
 * and separate classifier) are written by the test; the real stories260K
 * (../shared/data/stories260K, never committed) is used when present —
 * greedy continuation of BOS by both, its loss, and the float64 PyTorch
 * run of tests/golden/stories260k_reference.py — and skipped with a message
 * when absent. */
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

#include "base/json.h"
#include "base/rng.h"
#include "io/llama2c.h"
#include "model/gemm.h"
#include "model/model.h"
#include "testutil.h"

#ifndef GOLDEN_DIR
#define GOLDEN_DIR "tests/golden"
#endif
#define BOS 1

static char err[512];

/* ---------------------------------------------------------------- run.c in double */

typedef struct {
    int dim, hidden, L, nh, nkv, V, seq;
    bool shared;
    float *data; /* the whole body */
    const float *emb, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_final, *wcls;
} ref_model;

static int ref_open(ref_model *r, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    int32_t h[7];
    assert_int_equal(fread(h, sizeof h[0], 7, f), 7);
    r->dim = h[0], r->hidden = h[1], r->L = h[2], r->nh = h[3], r->nkv = h[4];
    r->shared = h[5] > 0;
    r->V = abs(h[5]), r->seq = h[6];
    fseek(f, 0, SEEK_END);
    size_t n = ((size_t)ftell(f) - 28) / sizeof(float);
    fseek(f, 28, SEEK_SET);
    r->data = malloc(n * sizeof(float));
    assert_non_null(r->data);
    assert_int_equal(fread(r->data, sizeof(float), n, f), n);
    fclose(f);
    size_t dim = (size_t)r->dim, kvd = dim / r->nh * r->nkv, hid = (size_t)r->hidden;
    size_t L = (size_t)r->L, hs = dim / r->nh;
    const float *p = r->data;
    r->emb = p, p += (size_t)r->V * dim;
    r->rms_att = p, p += L * dim;
    r->wq = p, p += L * dim * dim;
    r->wk = p, p += L * kvd * dim;
    r->wv = p, p += L * kvd * dim;
    r->wo = p, p += L * dim * dim;
    r->rms_ffn = p, p += L * dim;
    r->w1 = p, p += L * hid * dim;
    r->w2 = p, p += L * dim * hid;
    r->w3 = p, p += L * hid * dim;
    r->rms_final = p, p += dim;
    p += (size_t)r->seq * hs; /* freq_cis_real, freq_cis_imag */
    r->wcls = r->shared ? r->emb : p;
    return 0;
}

static void rmsnorm_d(double *o, const double *x, const float *w, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    ss = 1.0 / sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++) o[i] = w[i] * (ss * x[i]);
}

static void matvec_d(double *o, const double *x, const float *w, int n, int d) {
    for (int i = 0; i < d; i++) {
        double s = 0;
        for (int j = 0; j < n; j++) s += (double)w[(size_t)i * n + j] * x[j];
        o[i] = s;
    }
}

/* Logits (T x V) of tokens[0..T-1], run.c's forward step by step. */
static void ref_forward(const ref_model *r, const int32_t *tokens, int T, double *logits) {
    int dim = r->dim, hs = dim / r->nh, kvd = hs * r->nkv, hid = r->hidden, grp = r->nh / r->nkv;
    double *x = calloc((size_t)dim, sizeof *x), *xb = calloc((size_t)dim, sizeof *xb);
    double *q = calloc((size_t)dim, sizeof *q), *xb2 = calloc((size_t)dim, sizeof *xb2);
    double *hb = calloc((size_t)hid, sizeof *hb), *hb2 = calloc((size_t)hid, sizeof *hb2);
    double *kc = calloc((size_t)r->L * T * kvd, sizeof *kc);
    double *vc = calloc((size_t)r->L * T * kvd, sizeof *vc);
    double *att = calloc((size_t)T, sizeof *att);
    assert_true(x && xb && q && xb2 && hb && hb2 && kc && vc && att);
    for (int pos = 0; pos < T; pos++) {
        for (int i = 0; i < dim; i++) x[i] = r->emb[(size_t)tokens[pos] * dim + i];
        for (int l = 0; l < r->L; l++) {
            rmsnorm_d(xb, x, r->rms_att + (size_t)l * dim, dim);
            double *k = kc + ((size_t)l * T + pos) * kvd, *v = vc + ((size_t)l * T + pos) * kvd;
            matvec_d(q, xb, r->wq + (size_t)l * dim * dim, dim, dim);
            matvec_d(k, xb, r->wk + (size_t)l * kvd * dim, dim, kvd);
            matvec_d(v, xb, r->wv + (size_t)l * kvd * dim, dim, kvd);
            for (int i = 0; i < dim; i += 2) { /* run.c: adjacent pairs */
                double freq = 1.0 / pow(10000.0, (double)(i % hs) / hs), a = pos * freq;
                double c = cos(a), s = sin(a);
                for (int which = 0; which < (i < kvd ? 2 : 1); which++) {
                    double *vec = which ? k : q, v0 = vec[i], v1 = vec[i + 1];
                    vec[i] = v0 * c - v1 * s;
                    vec[i + 1] = v0 * s + v1 * c;
                }
            }
            for (int h = 0; h < r->nh; h++) {
                double mx = -INFINITY, sum = 0;
                for (int t = 0; t <= pos; t++) {
                    const double *kt = kc + ((size_t)l * T + t) * kvd + (size_t)(h / grp) * hs;
                    double sc = 0;
                    for (int i = 0; i < hs; i++) sc += q[h * hs + i] * kt[i];
                    att[t] = sc / sqrt((double)hs);
                    mx = fmax(mx, att[t]);
                }
                for (int t = 0; t <= pos; t++) sum += (att[t] = exp(att[t] - mx));
                for (int i = 0; i < hs; i++) {
                    double o = 0;
                    for (int t = 0; t <= pos; t++)
                        o += att[t] / sum *
                             vc[((size_t)l * T + t) * kvd + (size_t)(h / grp) * hs + i];
                    xb[h * hs + i] = o;
                }
            }
            matvec_d(xb2, xb, r->wo + (size_t)l * dim * dim, dim, dim);
            for (int i = 0; i < dim; i++) x[i] += xb2[i];
            rmsnorm_d(xb, x, r->rms_ffn + (size_t)l * dim, dim);
            matvec_d(hb, xb, r->w1 + (size_t)l * hid * dim, dim, hid);
            matvec_d(hb2, xb, r->w3 + (size_t)l * hid * dim, dim, hid);
            for (int i = 0; i < hid; i++) hb[i] = hb[i] / (1.0 + exp(-hb[i])) * hb2[i];
            matvec_d(xb2, hb, r->w2 + (size_t)l * dim * hid, hid, dim);
            for (int i = 0; i < dim; i++) x[i] += xb2[i];
        }
        rmsnorm_d(xb, x, r->rms_final, dim);
        matvec_d(logits + (size_t)pos * r->V, xb, r->wcls, dim, r->V);
    }
    free(x), free(xb), free(q), free(xb2), free(hb), free(hb2), free(kc), free(vc), free(att);
}

static int argmax_d(const double *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}
static int argmax_f(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* ---------------------------------------------------------------- engine side */

static aflo_model *load(const char *path) {
    aflo_adapter_config ac = {
        .method = METHOD_AFLORA, .rank = 4, .targets = ALL_MODULES, .projections = PROJ_FFN};
    aflo_model *m = llama2c_load(path, &ac, 3, err, sizeof err);
    if (!m) fail_msg("%s", err);
    return m;
}

/* Engine logits of one sequence (1 x T), loss against labels = tokens. */
static const float *engine_forward(aflo_model *m, const int32_t *tokens, int T, float *loss) {
    assert_int_equal(model_reserve(m, 1, T, err, sizeof err), 0);
    aflo_batch b = {.batch = 1, .seq = T, .input_ids = tokens, .token_labels = tokens};
    if (model_forward(m, &b, loss, err, sizeof err)) fail_msg("%s", err);
    return model_logits(m);
}

/* max |engine - ref| relative to max |ref| over T x V logits */
static double logits_error(const float *got, const double *ref, size_t n) {
    double scale = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(ref[i]));
        worst = fmax(worst, fabs((double)got[i] - ref[i]));
    }
    return worst / scale;
}

/* ---------------------------------------------------------------- random checkpoints */

/* A checkpoint of random weights in run.c's layout. */
static void write_random(const char *path, int32_t vocab_field) {
    int32_t h[7] = {16, 24, 2, 4, 2, vocab_field, 12};
    size_t dim = 16, hid = 24, L = 2, kvd = 8, V = (size_t)abs(vocab_field), hs = 4;
    size_t n = V * dim + L * (dim + dim * dim + 2 * kvd * dim + dim * dim + dim + 3 * hid * dim) +
               dim + (size_t)h[6] * hs + (vocab_field < 0 ? V * dim : 0);
    float *body = malloc(n * sizeof *body);
    assert_non_null(body);
    aflo_rng rng;
    rng_seed(&rng, 11);
    for (size_t i = 0; i < n; i++) body[i] = rng_uniform_range(&rng, -0.5f, 0.5f);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(h, sizeof h[0], 7, f), 7);
    assert_int_equal(fwrite(body, sizeof *body, n, f), n);
    assert_int_equal(fclose(f), 0);
    free(body);
}

static void check_random(void **state, int32_t vocab_field) {
    char path[600];
    path_in(path, sizeof path, state, "model.bin");
    write_random(path, vocab_field);
    aflo_model *m = load(path);
    const aflo_config *c = model_config(m);
    assert_int_equal(c->vocab_size, abs(vocab_field));
    assert_int_equal(c->tie_word_embeddings, vocab_field > 0);
    assert_int_equal(model_find_param(m, "lm_head.weight") != NULL, vocab_field < 0);
    ref_model r;
    assert_int_equal(ref_open(&r, path), 0);
    enum { T = 9 };
    int32_t tokens[T];
    for (int t = 0; t < T; t++) tokens[t] = (int32_t)((t * 7 + 1) % r.V);
    double *ref = malloc((size_t)T * r.V * sizeof *ref);
    assert_non_null(ref);
    ref_forward(&r, tokens, T, ref);
    float loss;
    const float *got = engine_forward(m, tokens, T, &loss);
    double e = logits_error(got, ref, (size_t)T * r.V);
    if (e > 1e-5) fail_msg("logits differ from run.c's by %.3g of their scale", e);
    free(ref);
    free(r.data);
    model_free(m);
}

static void test_random_shared_classifier(void **state) { check_random(state, 40); }
static void test_random_separate_classifier(void **state) { check_random(state, -40); }

static void test_refuses_bad_files(void **state) {
    char path[600];
    path_in(path, sizeof path, state, "model.bin");
    write_random(path, 40);
    /* one float short */
    assert_int_equal(truncate(path, 28 + 4 * 1000), 0);
    aflo_adapter_config ac = {.method = METHOD_FULL};
    assert_null(llama2c_load(path, &ac, 1, err, sizeof err));
    assert_non_null(strstr(err, "but its header (dim 16, 2 layers, vocab 40) implies"));
    /* a header that is not one */
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    int32_t h[7] = {16, 24, 2, 3, 2, 40, 12};
    assert_int_equal(fwrite(h, sizeof h[0], 7, f), 7);
    assert_int_equal(fclose(f), 0);
    assert_null(llama2c_load(path, &ac, 1, err, sizeof err));
    assert_non_null(strstr(err, "n_heads 3"));
    h[3] = 4;
    h[0] = -16;
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(h, sizeof h[0], 7, f), 7);
    assert_int_equal(fclose(f), 0);
    aflo_config c;
    assert_int_equal(llama2c_read_config(path, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "header dim = -16"));
    assert_int_equal(llama2c_read_config("/nonexistent/x.bin", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file"));
}

/* ---------------------------------------------------------------- stories260K */

/* $AFLORAD_STORIES260K, else the shared data folder beside the checkout
 * (../shared from the main worktree, ../../shared from /work/wt/NAME). */
static const char *STORIES_PATH;

static bool have_stories(void) {
    static const char *const candidates[] = {"../shared/data/stories260K/stories260K.bin",
                                             "../../shared/data/stories260K/stories260K.bin"};
    const char *env = getenv("AFLORAD_STORIES260K");
    if (env && *env) {
        STORIES_PATH = env;
        if (access(env, R_OK) == 0) return true;
    }
    for (size_t i = 0; !env && i < sizeof candidates / sizeof *candidates; i++)
        if (access(candidates[i], R_OK) == 0) {
            STORIES_PATH = candidates[i];
            return true;
        }
    fprintf(stderr,
            "SKIPPED: stories260K.bin not found (%s; set AFLORAD_STORIES260K to its path)\n",
            env && *env ? env : "../shared/data/stories260K/ or ../../shared/data/stories260K/");
    return false;
}

static char *read_file_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

enum { GREEDY = 32 };

/* Greedy continuation of BOS by run.c's forward and by the engine: the same
 * tokens; the engine's logits on them match run.c's in double; and the
 * loss of that sequence is what a trained model gives its own greedy text:
 * far below a uniform guess's log(512) = 6.24 and below the loss of the
 * same tokens reversed. */
static void test_stories_greedy(void **state) {
    (void)state;
    if (!have_stories()) skip();
    ref_model r;
    assert_int_equal(ref_open(&r, STORIES_PATH), 0);
    assert_true(r.dim == 64 && r.L == 5 && r.nh == 8 && r.nkv == 4 && r.V == 512);
    int32_t ref_ids[GREEDY + 1] = {BOS}, eng_ids[GREEDY + 1] = {BOS};
    double *ref = malloc((size_t)(GREEDY + 1) * r.V * sizeof *ref);
    assert_non_null(ref);
    for (int t = 1; t <= GREEDY; t++) { /* whole prefix each step: simple, T is small */
        ref_forward(&r, ref_ids, t, ref);
        ref_ids[t] = argmax_d(ref + (size_t)(t - 1) * r.V, r.V);
    }
    aflo_model *m = load(STORIES_PATH);
    for (int t = 1; t <= GREEDY; t++) {
        float loss;
        const float *lg = engine_forward(m, eng_ids, t, &loss);
        eng_ids[t] = argmax_f(lg + (size_t)(t - 1) * r.V, r.V);
    }
    assert_memory_equal(ref_ids, eng_ids, sizeof ref_ids);
    ref_forward(&r, ref_ids, GREEDY + 1, ref);
    float loss;
    const float *lg = engine_forward(m, eng_ids, GREEDY + 1, &loss);
    double e = logits_error(lg, ref, (size_t)(GREEDY + 1) * r.V);
    if (e > 1e-5) fail_msg("logits differ from run.c's by %.3g of their scale", e);
    int32_t rev[GREEDY + 1];
    rev[0] = BOS;
    for (int t = 1; t <= GREEDY; t++) rev[t] = eng_ids[GREEDY + 1 - t];
    float rev_loss;
    engine_forward(m, rev, GREEDY + 1, &rev_loss);
    fprintf(stderr, "stories260K greedy from BOS: loss %.4f (reversed %.4f), ids", loss, rev_loss);
    for (int t = 0; t <= GREEDY; t++) fprintf(stderr, " %d", eng_ids[t]);
    fprintf(stderr, "\n");
    assert_true(loss < 1.0f);
    assert_true(rev_loss > loss + 1.0f);
    free(ref);
    free(r.data);
    model_free(m);
}

/* The float64 PyTorch run (stories260k_reference.py, written from HF's
 * rotate-half formulas on the permuted weights): its greedy ids and loss. */
static void test_stories_pytorch_reference(void **state) {
    (void)state;
    if (!have_stories()) skip();
    size_t len = 0;
    char *text = read_file_text(GOLDEN_DIR "/stories260k_reference.json", &len);
    assert_non_null(text);
    json_value *root = json_parse(text, len, JSON_DEFAULT_MAX_DEPTH, err, sizeof err);
    if (!root) fail_msg("%s", err);
    const json_value *ids = json_get(root, "greedy_ids");
    int T = (int)json_len(ids);
    assert_true(T > 8);
    int32_t *tok = malloc((size_t)T * sizeof *tok);
    assert_non_null(tok);
    for (int t = 0; t < T; t++) tok[t] = (int32_t)json_int(json_at(ids, t));
    aflo_model *m = load(STORIES_PATH);
    float loss;
    const float *lg = engine_forward(m, tok, T, &loss);
    for (int t = 0; t + 1 < T; t++)
        assert_int_equal(argmax_f(lg + (size_t)t * 512, 512), tok[t + 1]);
    double want = json_number(json_get(root, "loss"));
    if (fabs(loss - want) > 1e-4 * fmax(1.0, fabs(want)))
        fail_msg("loss %.7f, PyTorch float64 %.7f", loss, want);
    const json_value *row = json_get(root, "logits_last");
    assert_int_equal(json_len(row), 512);
    double scale = 0, worst = 0;
    for (int v = 0; v < 512; v++) {
        double r = json_number(json_at(row, v));
        scale = fmax(scale, fabs(r));
        worst = fmax(worst, fabs(lg[(size_t)(T - 1) * 512 + v] - r));
    }
    if (worst > 1e-4 * scale) fail_msg("last logits differ by %.3g (scale %.3g)", worst, scale);
    free(tok);
    json_free(root);
    free(text);
    model_free(m);
}

int main(void) {
    engine_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_random_shared_classifier, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_random_separate_classifier, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_refuses_bad_files, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test(test_stories_greedy),
        cmocka_unit_test(test_stories_pytorch_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
