/* test_deberta.c — the DeBERTa family (deberta.c, deberta_attn.c).
 *
 * - golden: the engine against make_deberta_golden.py's float64 PyTorch port
 *   (logits, loss, every trainable gradient) on v3 (shared keys, layer-normed
 *   relative embeddings, log buckets), v2-style switches (absolute positions
 *   and token types, own positional projections, no buckets, c2p or p2c
 *   alone) and a regression head, under AFLoRA, ELoRA, LoRA and full;
 * - the log buckets against the values of docs/deberta.md;
 * - finite differences of the attention alone and of the whole model (with
 *   dropout too);
 * - FLOPs of a forward counted by hand;
 * - config.json: defaults, refusals naming the key, write -> read;
 * - the PEFT fold proof: the exported folder merged in double (from the file
 *   alone, keys written out here) gives the adapter model's logits;
 * - a Hugging Face folder (config.json + model.safetensors under the
 *   checkpoint's names, written here) loads to the same logits;
 * - a few steps of SGD lower the loss. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/json.h"
#include "base/rng.h"
#include "io/adapter_peft.h"
#include "io/hfmodel.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/deberta.h"
#include "model/deberta_attn.h"
#include "model/family.h"
#include "model/gemm.h"
#include "model/model.h"
#include "testutil.h"

#ifndef GOLDEN_DIR
#define GOLDEN_DIR "tests/golden"
#endif

static char errbuf[1024];

/* ---------------------------------------------------------------- configs */

/* A tiny DeBERTa-v3: buckets of 4 up to 6 so that a 6-token batch reaches
 * the logarithmic buckets and the clamp. */
static const char v3_json[] =
    "{\"architectures\": [\"DebertaV2ForSequenceClassification\"], \"model_type\": "
    "\"deberta-v2\", \"vocab_size\": 30, \"hidden_size\": 8, \"num_hidden_layers\": 2, "
    "\"num_attention_heads\": 2, \"intermediate_size\": 12, \"max_position_embeddings\": 16, "
    "\"hidden_act\": \"gelu\", \"relative_attention\": true, \"position_buckets\": 4, "
    "\"max_relative_positions\": 6, \"pos_att_type\": \"p2c|c2p\", \"norm_rel_ebd\": "
    "\"layer_norm\", \"share_att_key\": true, \"position_biased_input\": false, "
    "\"pooler_hidden_size\": 8, \"pooler_hidden_act\": \"gelu\", \"pooler_dropout\": 0, "
    "\"hidden_dropout_prob\": 0.1, \"attention_probs_dropout_prob\": 0.1}";

/* v2-style: absolute positions, token types, own positional projections,
 * no buckets, no LayerNorm on the relative embeddings. */
static const char v2_json[] =
    "{\"model_type\": \"deberta-v2\", \"vocab_size\": 30, \"hidden_size\": 8, "
    "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"intermediate_size\": 12, "
    "\"max_position_embeddings\": 16, \"type_vocab_size\": 2, \"relative_attention\": true, "
    "\"max_relative_positions\": 4, \"pos_att_type\": [\"c2p\", \"p2c\"], "
    "\"share_att_key\": false, \"position_biased_input\": true, "
    "\"hidden_dropout_prob\": 0.2, \"attention_probs_dropout_prob\": 0.2}";

static void parse_config(aflo_config *c, const char *json) {
    if (config_from_json(c, json, strlen(json), errbuf, sizeof errbuf))
        fail_msg("config: %s", errbuf);
}

/* ---------------------------------------------------------------- batches */

#define B 3
#define S 6

typedef struct {
    int32_t ids[B * S], types[B * S], labels[B];
    uint8_t mask[B * S];
    float targets[B];
    aflo_batch batch;
} fixture_batch;

static void make_batch(fixture_batch *fb, int num_labels) {
    static const int lens[B] = {6, 4, 2};
    aflo_rng rng;
    rng_seed(&rng, 7);
    for (int b = 0; b < B; b++) {
        for (int s = 0; s < S; s++) {
            int i = b * S + s;
            bool real = s < lens[b];
            fb->ids[i] = real ? 2 + (int)rng_below(&rng, 28) : 0;
            fb->types[i] = (b == 0 && s >= 3) ? 1 : 0;
            fb->mask[i] = real;
        }
        fb->labels[b] = b % num_labels;
        fb->targets[b] = 0.5f * (float)b - 0.3f;
    }
    fb->batch = (aflo_batch){.batch = B,
                             .seq = S,
                             .input_ids = fb->ids,
                             .token_type_ids = fb->types,
                             .attention_mask = fb->mask,
                             .labels = fb->labels,
                             .targets = fb->targets};
}

static aflo_model *make_model(const char *json, aflo_method method, aflo_task task, int labels,
                              unsigned targets) {
    aflo_config c;
    parse_config(&c, json);
    aflo_adapter_config ac = {
        .method = method, .rank = 3, .alpha = 6.0f, .targets = targets, .projections = PROJ_ALL};
    aflo_model *m = model_create(&c, &ac, task, labels, 1234, errbuf, sizeof errbuf);
    if (!m) fail_msg("model_create: %s", errbuf);
    assert_int_equal(model_reserve(m, B, S, errbuf, sizeof errbuf), 0);
    return m;
}

/* Adapters non-zero, base weights larger than the 0.02 init, so that every
 * path (positional ones included) moves the loss. */
static void randomize(aflo_model *m, uint64_t seed) {
    aflo_rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        for (size_t j = 0; j < p->size; j++) {
            if (p->group == PGROUP_ADAPTER)
                p->data[j] = rng_uniform_range(&rng, -0.8f, 0.8f);
            else if (p->role == PROLE_WEIGHT || p->role == PROLE_EMBEDDING)
                p->data[j] *= 15.0f;
            else
                p->data[j] += rng_uniform_range(&rng, -0.2f, 0.2f);
        }
    }
}

/* ---------------------------------------------------------------- golden */

#define RTOL 1e-4
#define ATOL 1e-6

static float *read_all(const st_file *f, const char *name, size_t *n) {
    long i = st_find(f, name);
    if (i < 0) fail_msg("fixture lacks %s", name);
    *n = st_numel(f, (size_t)i);
    float *d = malloc(*n * sizeof *d);
    assert_non_null(d);
    assert_int_equal(st_read_f32_at(f, (size_t)i, d, *n, errbuf, sizeof errbuf), 0);
    return d;
}

static void compare(const char *what, const float *got, const float *ref, size_t n) {
    double scale = 0, worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < n; i++)
        if (fabs((double)got[i] - ref[i]) > worst) {
            worst = fabs((double)got[i] - ref[i]);
            at = i;
        }
    if (worst > ATOL + RTOL * scale)
        fail_msg("%s: max error %.3g at %zu (got %.8g, ref %.8g, scale %.3g)", what, worst, at,
                 got[at], ref[at], scale);
}

static void run_fixture(const char *file) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", GOLDEN_DIR, file);
    st_file *f = st_open(path, errbuf, sizeof errbuf);
    if (!f) fail_msg("%s", errbuf);
    const char *cfg_text = st_metadata(f, "config");
    aflo_config c;
    parse_config(&c, cfg_text);
    aflo_adapter_config ac = {.targets = ALL_MODULES, .projections = PROJ_ALL};
    for (int i = 0; i < METHOD_COUNT; i++)
        if (strcmp(st_metadata(f, "method"), method_names[i]) == 0) ac.method = (aflo_method)i;
    ac.rank = atoi(st_metadata(f, "rank"));
    ac.alpha = (float)atof(st_metadata(f, "alpha"));
    int labels = atoi(st_metadata(f, "num_labels"));
    aflo_task task =
        strcmp(st_metadata(f, "task"), "regression") == 0 ? TASK_REGRESSION : TASK_CLASSIFICATION;
    aflo_model *m = model_create(&c, &ac, task, labels, 1, errbuf, sizeof errbuf);
    if (!m) fail_msg("%s", errbuf);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        size_t n;
        float *d = read_all(f, p->name, &n);
        assert_int_equal(model_set_tensor(m, p->name, d, n, errbuf, sizeof errbuf), 0);
        free(d);
    }
    size_t n_ids, n, n_lab, n_logits;
    float *ids_f = read_all(f, "in.input_ids", &n_ids);
    float *tt_f = read_all(f, "in.token_type_ids", &n);
    float *mask_f = read_all(f, "in.attention_mask", &n);
    float *lab_f = read_all(f, "in.labels", &n_lab);
    float *ref_logits = read_all(f, "out.logits", &n_logits);
    float *ref_loss = read_all(f, "out.loss", &n);
    long ii = st_find(f, "in.input_ids");
    int nb = (int)st_shape(f, (size_t)ii)[0], ns = (int)st_shape(f, (size_t)ii)[1];
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
    aflo_batch b = {.batch = nb,
                    .seq = ns,
                    .input_ids = ids,
                    .token_type_ids = tt,
                    .attention_mask = mask,
                    .labels = lab,
                    .targets = lab_f};
    assert_int_equal(model_reserve(m, nb, ns, errbuf, sizeof errbuf), 0);
    model_zero_grad(m);
    float loss;
    assert_int_equal(model_forward(m, &b, &loss, errbuf, sizeof errbuf), 0);
    compare("logits", model_logits(m), ref_logits, n_logits);
    compare("loss", &loss, ref_loss, 1);
    model_backward(m, 1.0f);
    int checked = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        char gname[128];
        snprintf(gname, sizeof gname, "grad.%s", p->name);
        bool in_fixture = st_find(f, gname) >= 0;
        if (in_fixture != p->trainable)
            fail_msg("%s: trainable %d, in fixture %d", p->name, p->trainable, in_fixture);
        if (!in_fixture) continue;
        float *ref = read_all(f, gname, &n);
        assert_int_equal(n, p->size);
        compare(gname, p->grad, ref, n);
        free(ref);
        checked++;
    }
    assert_true(checked >= 20);
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

static void test_golden_v3_aflora(void **s) {
    (void)s;
    run_fixture("deberta_v3_aflora.safetensors");
}
static void test_golden_v3_full_regression(void **s) {
    (void)s;
    run_fixture("deberta_v3_full_reg.safetensors");
}
static void test_golden_v2_lora(void **s) {
    (void)s;
    run_fixture("deberta_v2_lora.safetensors");
}
static void test_golden_c2p_only_full(void **s) {
    (void)s;
    run_fixture("deberta_c2p_full.safetensors");
}
static void test_golden_p2c_only_elora(void **s) {
    (void)s;
    run_fixture("deberta_p2c_elora.safetensors");
}

/* ---------------------------------------------------------------- buckets */

static void test_log_buckets(void **s) {
    (void)s;
    /* docs/deberta.md, deberta-v3-base: 256 buckets up to 512 */
    static const int in[] = {0, 1, -5, 127, 128, 129, 140, 256, 511, 512, -140, -512, 2000};
    static const int want[] = {0, 1, -5, 127, 128, 129, 137, 192, 255, 256, -137, -256, 256 + 128};
    for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
        int got = deberta_rel_bucket(in[i], 256, 512);
        if (i + 1 < sizeof in / sizeof *in)
            assert_int_equal(got, want[i]);
        else
            assert_true(got > 256); /* beyond max_position: above the table, clamped by the index */
    }
    assert_int_equal(deberta_rel_bucket(-300, -1, 512), -300); /* no buckets */
    /* the tiny config's: mid 2, max 6 */
    assert_int_equal(deberta_rel_bucket(2, 4, 6), 2);
    assert_int_equal(deberta_rel_bucket(3, 4, 6), 3);
    assert_int_equal(deberta_rel_bucket(5, 4, 6), 3);
    assert_int_equal(deberta_rel_bucket(-6, 4, 6), -4);
    /* the index: clamp(bucket(i-j) + span, 0, 2 span - 1) */
    int32_t idx[8 * 8];
    deberta_rel_index(idx, 8, 4, 4, 6);
    assert_int_equal(idx[0 * 8 + 0], 4);
    assert_int_equal(idx[1 * 8 + 0], 5);
    assert_int_equal(idx[0 * 8 + 1], 3);
    assert_int_equal(idx[7 * 8 + 0], 7); /* bucket(7) = 4 -> 8, clamped to 7 */
    assert_int_equal(idx[0 * 8 + 7], 0);
    deberta_rel_index(idx, 8, 3, -1, 3); /* v2: no buckets, span 3 */
    assert_int_equal(idx[5 * 8 + 0], 5);
    assert_int_equal(idx[0 * 8 + 5], 0);
    assert_int_equal(idx[2 * 8 + 1], 4);
}

/* ---------------------------------------------------------------- attention alone */

/* loss = sum(ctx * G): the attention's gradients against central
 * differences of it, in every input (q, k, v, qr, kr). */
static double attn_loss(const deberta_attn_opts *o, const float *G, float *ctx, float *probs,
                        float *const in[5], float *scratch) {
    deberta_attn_forward(o, ctx, probs, in[0], in[1], in[2], in[3], in[4], scratch, 1, NULL);
    double l = 0;
    for (int i = 0; i < o->batch * o->seq * o->ld; i++) l += (double)ctx[i] * G[i];
    return l;
}

static void attention_fd(unsigned pos, float dropout) {
    enum { AB = 2, AS = 5, NH = 2, HD = 3, LD = NH * HD, SPAN = 3 };
    int32_t idx[AS * AS];
    deberta_rel_index(idx, AS, SPAN, 4, 5);
    uint8_t mask[AB * AS] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    deberta_attn_opts o = {.batch = AB,
                           .heads = NH,
                           .seq = AS,
                           .head_dim = HD,
                           .ld = LD,
                           .span = SPAN,
                           .pos = pos,
                           .scale = 1.0f / sqrtf(3.0f * HD),
                           .rel_idx = idx,
                           .mask = mask,
                           .dropout = dropout,
                           .dropout_seed = 5,
                           .dropout_stream = 77};
    size_t nrow = AB * AS * LD, nrel = 2 * SPAN * LD;
    float q[AB * AS * LD], k[AB * AS * LD], v[AB * AS * LD], qr[2 * SPAN * LD], kr[2 * SPAN * LD];
    float G[AB * AS * LD], ctx[AB * AS * LD], probs[AB * NH * AS * AS];
    float dq[AB * AS * LD], dk[AB * AS * LD], dv[AB * AS * LD], dqr[2 * SPAN * LD],
        dkr[2 * SPAN * LD], scratch[2 * AS * AS];
    float *in[5] = {q, k, v, qr, kr}, *grads[5] = {dq, dk, dv, dqr, dkr};
    size_t sizes[5] = {nrow, nrow, nrow, nrel, nrel};
    aflo_rng rng;
    rng_seed(&rng, 3 + pos);
    for (int t = 0; t < 5; t++)
        for (size_t i = 0; i < sizes[t]; i++) in[t][i] = rng_uniform_range(&rng, -1.5f, 1.5f);
    for (size_t i = 0; i < nrow; i++) G[i] = rng_uniform_range(&rng, -1, 1);
    attn_loss(&o, G, ctx, probs, in, scratch);
    deberta_attn_backward(&o, dq, dk, dv, dqr, dkr, G, probs, q, k, v, qr, kr, scratch, 1, NULL);
    for (int t = 0; t < 5; t++) {
        bool used =
            t < 3 || (t == 3 && (pos & CONFIG_POS_P2C)) || (t == 4 && (pos & CONFIG_POS_C2P));
        if (!used) continue;
        double num = 0, den = 0;
        for (size_t i = 0; i < sizes[t]; i++) {
            float orig = in[t][i];
            double d[2];
            for (int h = 0; h < 2; h++) {
                float eps = h ? 5e-3f : 1e-2f;
                in[t][i] = orig + eps;
                double lp = attn_loss(&o, G, ctx, probs, in, scratch);
                in[t][i] = orig - eps;
                double lm = attn_loss(&o, G, ctx, probs, in, scratch);
                in[t][i] = orig;
                d[h] = (lp - lm) / (2.0 * eps);
            }
            double fd = (4.0 * d[1] - d[0]) / 3.0;
            num += (fd - grads[t][i]) * (fd - grads[t][i]);
            den += fd * fd;
        }
        if (sqrt(num) > 2e-3 * sqrt(den) + 1e-5)
            fail_msg("attention input %d (pos %u, dropout %g): relative error %.3g", t, pos,
                     dropout, sqrt(num / (den + 1e-30)));
        assert_true(den > 0);
    }
}

static void test_attention_finite_differences(void **s) {
    (void)s;
    attention_fd(CONFIG_POS_C2P | CONFIG_POS_P2C, 0.0f);
    attention_fd(CONFIG_POS_C2P, 0.0f);
    attention_fd(CONFIG_POS_P2C, 0.0f);
    attention_fd(0, 0.0f);
    attention_fd(CONFIG_POS_C2P | CONFIG_POS_P2C, 0.3f);
}

/* ---------------------------------------------------------------- whole model */

static double loss_at(aflo_model *m, const aflo_batch *b) {
    float loss;
    assert_int_equal(model_forward(m, b, &loss, errbuf, sizeof errbuf), 0);
    return loss;
}

/* Every trainable tensor, at its largest-gradient element and 11 random ones. */
static int check_gradients(aflo_model *m, const aflo_batch *b) {
    model_zero_grad(m);
    assert_true(isfinite(loss_at(m, b)));
    model_backward(m, 1.0f);
    double gscale = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->trainable)
            for (size_t j = 0; j < p->size; j++) gscale = fmax(gscale, fabs(p->grad[j]));
    }
    aflo_rng rng;
    rng_seed(&rng, 5);
    int checked = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (!p->trainable) continue;
        size_t idx[12], best = 0;
        int k = 0;
        for (size_t j = 1; j < p->size; j++)
            if (fabsf(p->grad[j]) > fabsf(p->grad[best])) best = j;
        idx[k++] = best;
        while (k < 12 && (size_t)k < p->size) idx[k++] = (size_t)rng_below(&rng, p->size);
        double num = 0, den = 0;
        for (int q = 0; q < k; q++) {
            size_t j = idx[q];
            float orig = p->data[j];
            double d[2];
            for (int h = 0; h < 2; h++) {
                float eps = (h ? 5e-3f : 1e-2f) * fmaxf(1.0f, fabsf(orig));
                p->data[j] = orig + eps;
                double lp = loss_at(m, b);
                p->data[j] = orig - eps;
                double lm = loss_at(m, b);
                p->data[j] = orig;
                d[h] = (lp - lm) / ((double)(orig + eps) - (double)(orig - eps));
            }
            double fd = (4.0 * d[1] - d[0]) / 3.0;
            num += (fd - p->grad[j]) * (fd - p->grad[j]);
            den += fd * fd;
        }
        double rel = sqrt(num) / (sqrt(den) + 1e-3 * gscale * sqrt((double)k));
        if (rel > 3e-2) fail_msg("gradient mismatch in %s: relative error %.3g", p->name, rel);
        checked++;
    }
    return checked;
}

static void model_fd(const char *json, aflo_method method, aflo_task task, int labels, bool dropout,
                     int min_tensors) {
    aflo_model *m = make_model(json, method, task, labels, ALL_MODULES);
    randomize(m, 99);
    fixture_batch fb;
    make_batch(&fb, labels);
    model_set_dropout(m, dropout);
    model_set_dropout_key(m, 42);
    model_set_training(m, true);
    assert_true(check_gradients(m, &fb.batch) >= min_tensors);
    model_free(m);
}

static void test_model_finite_differences(void **s) {
    (void)s;
    /* 2 layers x 6 modules x 4 adapter tensors + head 4 */
    model_fd(v3_json, METHOD_AFLORA, TASK_CLASSIFICATION, 3, false, 52);
    model_fd(v3_json, METHOD_AFLORA, TASK_CLASSIFICATION, 3, true, 52);
    /* every base tensor, rel_embeddings and encoder.LayerNorm among them */
    model_fd(v3_json, METHOD_FULL, TASK_REGRESSION, 1, true, 40);
    model_fd(v2_json, METHOD_FULL, TASK_CLASSIFICATION, 2, true, 45);
    model_fd(v2_json, METHOD_LORA, TASK_CLASSIFICATION, 2, false, 28);
}

/* ---------------------------------------------------------------- FLOPs */

static void test_forward_flops_by_hand(void **s) {
    (void)s;
    aflo_model *m = make_model(v3_json, METHOD_AFLORA, TASK_CLASSIFICATION, 2, ALL_MODULES);
    fixture_batch fb;
    make_batch(&fb, 2);
    float loss;
    uint64_t N = B * S, H = 8, I = 12, r = 3, nh = 2, hd = 4, L = 2, P = 8;
    uint64_t lin = 2 * N * (4 * H * H + 2 * H * I);     /* base weights */
    uint64_t pos = 2 * (2 * P * H * H);                 /* key_proj, query_proj on R */
    uint64_t att = (2 + 2) * (2 * S * S * hd) * B * nh; /* q.k, c2p, p2c, P v */
    uint64_t head = 2 * B * H * H + 2 * B * H * L;
    /* inference: X A^T then (.) B^T in every adapter, R's rows too */
    uint64_t ad = 2 * N * r * (4 * (H + H) + (H + I) + (I + H)) + 2 * (2 * P * r * (H + H));
    memset(model_flops(m), 0, sizeof(aflo_flops));
    assert_int_equal(model_forward(m, &fb.batch, &loss, errbuf, sizeof errbuf), 0);
    assert_int_equal(model_flops(m)->by_kind[FLOP_FORWARD], 2 * (lin + pos + ad + att) + head);
    /* backward: the attention's input products, counted like BERT's (4)
     * plus two per positional term */
    memset(model_flops(m), 0, sizeof(aflo_flops));
    model_zero_grad(m);
    model_backward(m, 1.0f);
    uint64_t att_bwd = (4 + 2 * 2) * (2 * S * S * hd) * B * nh;
    assert_true(model_flops(m)->by_kind[FLOP_BACKWARD_INPUT] > 2 * att_bwd);
    model_free(m);
}

/* ---------------------------------------------------------------- config */

static void refuse(const char *json, const char *needle) {
    aflo_config c;
    if (config_from_json(&c, json, strlen(json), errbuf, sizeof errbuf) == 0)
        fail_msg("accepted %s", json);
    if (!strstr(errbuf, needle)) fail_msg("message \"%s\" lacks \"%s\"", errbuf, needle);
}

#define BASE                                                                    \
    "{\"model_type\": \"deberta-v2\", \"vocab_size\": 30, \"hidden_size\": 8, " \
    "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 12, "

static void test_config(void **s) {
    (void)s;
    aflo_config c;
    parse_config(&c, v3_json);
    assert_string_equal(c.model_type, "deberta-v2");
    assert_int_equal(c.type_vocab_size, 0); /* DebertaV2Config's default */
    assert_true(c.layer_norm_eps == 1e-7f);
    assert_true(c.relative_attention && c.share_att_key && c.norm_rel_ebd_layer_norm);
    assert_false(c.position_biased_input);
    assert_int_equal(c.pos_att_type, CONFIG_POS_C2P | CONFIG_POS_P2C);
    assert_int_equal(c.position_buckets, 4);
    assert_int_equal(c.max_relative_positions, 6);
    parse_config(&c, v2_json);
    assert_true(c.position_biased_input);
    assert_false(c.share_att_key || c.norm_rel_ebd_layer_norm);
    assert_int_equal(c.pos_att_type, CONFIG_POS_C2P | CONFIG_POS_P2C);
    /* DebertaV2Config's own default: absolute positions, no relative attention */
    parse_config(&c, BASE "\"max_position_embeddings\": 16}");
    assert_true(c.position_biased_input);
    assert_false(c.relative_attention);

    refuse(BASE "\"conv_kernel_size\": 3}", "conv_kernel_size");
    refuse(BASE "\"relative_attention\": true, \"pos_att_type\": \"c2p|p2p\"}", "pos_att_type");
    refuse(BASE "\"relative_attention\": true, \"pos_att_type\": [\"c2p\", 3]}", "pos_att_type");
    refuse(BASE "\"pos_att_type\": \"c2p\"}", "relative_attention");
    refuse(BASE "\"relative_attention\": true, \"norm_rel_ebd\": \"batch_norm\"}", "norm_rel_ebd");
    refuse(BASE "\"embedding_size\": 4}", "embedding_size");
    refuse(BASE "\"pooler_hidden_size\": 6}", "pooler_hidden_size");
    refuse(BASE "\"pooler_hidden_act\": \"tanh\"}", "pooler_hidden_act");
    refuse(BASE "\"hidden_act\": \"gelu_new\"}", "hidden_act");
    refuse(BASE "\"type_vocab_size\": -1}", "type_vocab_size");
    /* an unknown architecture names DeBERTa among the supported */
    refuse("{\"model_type\": \"electra\"}", "DebertaV2ForSequenceClassification (deberta-v2)");
    /* BERT still needs token types */
    refuse("{\"model_type\": \"bert\", \"vocab_size\": 30, \"hidden_size\": 8, "
           "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 12, "
           "\"type_vocab_size\": 0}",
           "type_vocab_size");

    /* write -> read gives the same config, both forms */
    const char *forms[2] = {v3_json, v2_json};
    for (int i = 0; i < 2; i++) {
        parse_config(&c, forms[i]);
        config_task task = {.num_labels = 3};
        char *text = config_to_json_task(&c, &task);
        assert_non_null(text);
        assert_non_null(strstr(text, "DebertaV2ForSequenceClassification"));
        aflo_config back;
        parse_config(&back, text);
        assert_memory_equal(&c, &back, sizeof c);
        free(text);
    }
    assert_non_null(family_for_model_type("deberta-v2", NULL));
    assert_int_equal(family_module_index(family_for_model_type("deberta-v2", NULL), "key_proj"),
                     DEBERTA_KEY);
}

/* ---------------------------------------------------------------- PEFT fold */

static const char *const hf_paths[DEBERTA_MODULE_COUNT] = {
    "attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj",
    "attention.output.dense",    "intermediate.dense",      "output.dense"};

static void logits_of(aflo_model *m, float *out, int labels) {
    fixture_batch fb;
    make_batch(&fb, labels);
    if (model_forward(m, &fb.batch, NULL, errbuf, sizeof errbuf)) fail_msg("%s", errbuf);
    memcpy(out, model_logits(m), sizeof(float) * B * (size_t)labels);
}

static void read_exact(const st_file *f, const char *key, float *dst, size_t n) {
    long i = st_find(f, key);
    if (i < 0) fail_msg("PEFT file lacks %s", key);
    assert_int_equal(st_numel(f, (size_t)i), n);
    assert_int_equal(st_read_f32(f, key, dst, n, errbuf, sizeof errbuf), 0);
}

static json_value *read_json(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char text[65536];
    size_t n = fread(text, 1, sizeof text, f);
    fclose(f);
    json_value *v = json_parse(text, n, 0, errbuf, sizeof errbuf);
    if (!v) fail_msg("%s: %s", path, errbuf);
    return v;
}

static void fold_proof(void **state, aflo_method method, unsigned targets) {
    enum { LABELS = 3 };
    aflo_model *m = make_model(v3_json, method, TASK_CLASSIFICATION, LABELS, targets);
    randomize(m, 17);
    char dir[600], path[700];
    path_in(dir, sizeof dir, state, "peft");
    adapter_export_info info = {.base_model = "tiny-deberta"};
    if (adapter_export_peft(m, dir, &info, errbuf, sizeof errbuf)) fail_msg("export: %s", errbuf);

    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    json_value *cfg = read_json(path);
    assert_string_equal(json_string(json_get(cfg, "task_type"), NULL), "SEQ_CLS");
    const json_value *mts = json_get(cfg, "modules_to_save");
    assert_int_equal(json_len(mts), 2);
    assert_string_equal(json_string(json_at(mts, 0), NULL), "classifier");
    assert_string_equal(json_string(json_at(mts, 1), NULL), "pooler");
    double lora_alpha = json_number(json_get(cfg, "lora_alpha"));
    int rank = (int)json_int(json_get(cfg, "r"));
    /* target_modules names the DeBERTa modules */
    const json_value *tm = json_get(cfg, "target_modules");
    char tms[1024] = "";
    if (json_string(tm, NULL))
        snprintf(tms, sizeof tms, "%s", json_string(tm, NULL));
    else
        for (size_t i = 0; i < json_len(tm); i++) {
            strncat(tms, json_string(json_at(tm, i), NULL), sizeof tms - strlen(tms) - 2);
            strcat(tms, " ");
        }
    for (int k = 0; k < 3; k++)
        if (targets & (1u << k))
            assert_non_null(strstr(tms, hf_paths[k] + strlen("attention.self.")));

    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    st_file *f = st_open(path, errbuf, sizeof errbuf);
    if (!f) fail_msg("%s", errbuf);
    aflo_model *merged = make_model(v3_json, METHOD_FULL, TASK_CLASSIFICATION, LABELS, 0);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->group == PGROUP_BASE)
            assert_int_equal(
                model_set_tensor(merged, p->name, p->data, p->size, errbuf, sizeof errbuf), 0);
    }
    const aflo_config *c = model_config(m);
    int H = c->hidden_size, I = c->intermediate_size, consumed = 0;
    for (int l = 0; l < c->num_hidden_layers; l++)
        for (int k = 0; k < DEBERTA_MODULE_COUNT; k++) {
            if (!(targets & (1u << k))) continue;
            int in = k == DEBERTA_OUTPUT ? I : H, out = k == DEBERTA_INTERMEDIATE ? I : H;
            float *A = malloc(sizeof(float) * rank * in), *Bm = malloc(sizeof(float) * out * rank);
            assert_true(A && Bm);
            char key[256], wname[128];
            snprintf(key, sizeof key, "base_model.model.deberta.encoder.layer.%d.%s.lora_A.weight",
                     l, hf_paths[k]);
            read_exact(f, key, A, (size_t)rank * in);
            snprintf(key, sizeof key, "base_model.model.deberta.encoder.layer.%d.%s.lora_B.weight",
                     l, hf_paths[k]);
            read_exact(f, key, Bm, (size_t)out * rank);
            consumed += 2;
            snprintf(wname, sizeof wname, "encoder.layer.%d.%s.weight", l, hf_paths[k]);
            aflo_param *W = model_find_param(merged, wname);
            assert_non_null(W);
            for (int o = 0; o < out; o++)
                for (int j = 0; j < in; j++) {
                    double d = 0;
                    for (int q = 0; q < rank; q++) d += (double)Bm[o * rank + q] * A[q * in + j];
                    W->data[o * in + j] = (float)(W->data[o * in + j] + lora_alpha / rank * d);
                }
            free(A);
            free(Bm);
        }
    static const char *const head[][2] = {
        {"base_model.model.pooler.dense.weight", "pooler.dense.weight"},
        {"base_model.model.pooler.dense.bias", "pooler.dense.bias"},
        {"base_model.model.classifier.weight", "classifier.weight"},
        {"base_model.model.classifier.bias", "classifier.bias"},
    };
    for (int h = 0; h < 4; h++) {
        aflo_param *p = model_find_param(merged, head[h][1]);
        read_exact(f, head[h][0], p->data, p->size);
        consumed++;
    }
    assert_int_equal(st_count(f), (size_t)consumed);
    st_close(f);

    float want[B * LABELS], got[B * LABELS];
    logits_of(m, want, LABELS);
    logits_of(merged, got, LABELS);
    double scale = 0, diff = 0;
    for (int i = 0; i < B * LABELS; i++) {
        scale = fmax(scale, fabs(want[i]));
        diff = fmax(diff, fabs(got[i] - want[i]));
    }
    if (diff > 1e-5 * fmax(1.0, scale)) fail_msg("merged logits off by %g", diff);
    /* the adapters matter: the base alone is far off */
    aflo_model *plain = make_model(v3_json, METHOD_FULL, TASK_CLASSIFICATION, LABELS, 0);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->group != PGROUP_ADAPTER)
            assert_int_equal(
                model_set_tensor(plain, p->name, p->data, p->size, errbuf, sizeof errbuf), 0);
    }
    logits_of(plain, got, LABELS);
    diff = 0;
    for (int i = 0; i < B * LABELS; i++) diff = fmax(diff, fabs(got[i] - want[i]));
    assert_true(diff > 1e-2 * scale);
    model_free(plain);
    model_free(merged);
    model_free(m);
    json_free(cfg);
}

static void test_fold_aflora(void **state) { fold_proof(state, METHOD_AFLORA, ALL_MODULES); }
static void test_fold_elora(void **state) { fold_proof(state, METHOD_ELORA, ALL_MODULES); }
static void test_fold_lora_subset(void **state) {
    fold_proof(state, METHOD_LORA, (1u << DEBERTA_KEY) | (1u << DEBERTA_OUTPUT));
}

/* ---------------------------------------------------------------- HF folder */

/* A folder as transformers saves DebertaV2ForSequenceClassification, names
 * spelled out here (docs/deberta.md), plus tensors a checkpoint carries that
 * the engine ignores. */
static void test_load_hf_folder(void **state) {
    enum { LABELS = 2 };
    aflo_model *src = make_model(v3_json, METHOD_FULL, TASK_CLASSIFICATION, LABELS, 0);
    randomize(src, 5);
    char dir[600], path[700];
    path_in(dir, sizeof dir, state, "hf");
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *cf = fopen(path, "w");
    assert_non_null(cf);
    fputs(v3_json, cf);
    fclose(cf);

    st_writer *w = st_writer_new();
    assert_non_null(w);
    char names[64][128];
    int n = 0;
    const aflo_config *c = model_config(src);
    snprintf(names[n++], 128, "deberta.embeddings.word_embeddings.weight");
    snprintf(names[n++], 128, "deberta.embeddings.LayerNorm.weight");
    snprintf(names[n++], 128, "deberta.embeddings.LayerNorm.bias");
    snprintf(names[n++], 128, "deberta.encoder.rel_embeddings.weight");
    snprintf(names[n++], 128, "deberta.encoder.LayerNorm.weight");
    snprintf(names[n++], 128, "deberta.encoder.LayerNorm.bias");
    static const char *const block[] = {"attention.self.query_proj.weight",
                                        "attention.self.query_proj.bias",
                                        "attention.self.key_proj.weight",
                                        "attention.self.key_proj.bias",
                                        "attention.self.value_proj.weight",
                                        "attention.self.value_proj.bias",
                                        "attention.output.dense.weight",
                                        "attention.output.dense.bias",
                                        "attention.output.LayerNorm.weight",
                                        "attention.output.LayerNorm.bias",
                                        "intermediate.dense.weight",
                                        "intermediate.dense.bias",
                                        "output.dense.weight",
                                        "output.dense.bias",
                                        "output.LayerNorm.weight",
                                        "output.LayerNorm.bias"};
    for (int l = 0; l < c->num_hidden_layers; l++)
        for (size_t k = 0; k < sizeof block / sizeof *block; k++)
            snprintf(names[n++], 128, "deberta.encoder.layer.%d.%s", l, block[k]);
    snprintf(names[n++], 128, "pooler.dense.weight");
    snprintf(names[n++], 128, "pooler.dense.bias");
    snprintf(names[n++], 128, "classifier.weight");
    snprintf(names[n++], 128, "classifier.bias");
    assert_int_equal(n, model_param_count(src));
    for (int i = 0; i < n; i++) {
        /* the engine name is the checkpoint's without "deberta." */
        const char *engine = strncmp(names[i], "deberta.", 8) == 0 ? names[i] + 8 : names[i];
        aflo_param *p = model_find_param(src, engine);
        if (!p) fail_msg("no engine tensor for %s", names[i]);
        int64_t shape[2] = {p->shape[0], p->shape[1]};
        assert_int_equal(
            st_writer_add(w, names[i], shape, (size_t)p->ndim, p->data, errbuf, sizeof errbuf), 0);
    }
    static const float junk[4] = {1, 2, 3, 4};
    const int64_t four[1] = {4};
    assert_int_equal(
        st_writer_add(w, "deberta.embeddings.position_ids", four, 1, junk, errbuf, sizeof errbuf),
        0);
    assert_int_equal(
        st_writer_add(w, "lm_predictions.lm_head.bias", four, 1, junk, errbuf, sizeof errbuf), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(st_writer_write(w, path, errbuf, sizeof errbuf), 0);
    st_writer_free(w);

    aflo_adapter_config ac = {
        .method = METHOD_AFLORA, .rank = 2, .targets = ALL_MODULES, .projections = PROJ_FFN};
    hf_load_report rep;
    aflo_model *m =
        hfmodel_load(dir, &ac, TASK_CLASSIFICATION, LABELS, 1, &rep, errbuf, sizeof errbuf);
    if (!m) fail_msg("load: %s", errbuf);
    assert_true(rep.pooler_pretrained && rep.classifier_pretrained);
    assert_int_equal(rep.tensors_ignored, 2);
    assert_int_equal(rep.tensors_unknown, 0);
    assert_int_equal(model_reserve(m, B, S, errbuf, sizeof errbuf), 0);
    float want[B * LABELS], got[B * LABELS];
    logits_of(src, want, LABELS);
    logits_of(m, got, LABELS); /* s_b starts at 0 in AFLoRA: the adapter adds nothing yet */
    for (int i = 0; i < B * LABELS; i++) assert_float_equal(got[i], want[i], 1e-5);
    model_free(m);
    model_free(src);
}

/* ---------------------------------------------------------------- learning */

static void test_loss_drops(void **s) {
    (void)s;
    aflo_model *m = make_model(v3_json, METHOD_AFLORA, TASK_CLASSIFICATION, 3, ALL_MODULES);
    fixture_batch fb;
    make_batch(&fb, 3);
    model_set_training(m, true);
    float first = 0, loss = 0;
    for (int step = 0; step < 40; step++) {
        model_zero_grad(m);
        assert_int_equal(model_forward(m, &fb.batch, &loss, errbuf, sizeof errbuf), 0);
        if (step == 0) first = loss;
        model_backward(m, 1.0f);
        for (int i = 0; i < model_param_count(m); i++) {
            aflo_param *p = model_param(m, i);
            if (p->trainable)
                for (size_t j = 0; j < p->size; j++) p->data[j] -= 0.5f * p->grad[j];
        }
    }
    if (!(loss < 0.5f * first)) fail_msg("loss %g -> %g", first, loss);
    model_free(m);
}

int main(void) {
    engine_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_v3_aflora),
        cmocka_unit_test(test_golden_v3_full_regression),
        cmocka_unit_test(test_golden_v2_lora),
        cmocka_unit_test(test_golden_c2p_only_full),
        cmocka_unit_test(test_golden_p2c_only_elora),
        cmocka_unit_test(test_log_buckets),
        cmocka_unit_test(test_attention_finite_differences),
        cmocka_unit_test(test_model_finite_differences),
        cmocka_unit_test(test_forward_flops_by_hand),
        cmocka_unit_test(test_config),
        cmocka_unit_test_setup_teardown(test_fold_aflora, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_fold_elora, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_fold_lora_subset, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_load_hf_folder, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test(test_loss_drops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
