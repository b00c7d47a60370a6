/* test_hfmodel.c — Hugging Face model folders in.
 *
 * Each test builds a tiny folder in a temp dir: config.json from
 * config_to_json and weights written from a "source" model under the names
 * transformers uses (BertForSequenceClassification, RobertaForSequence-
 * Classification, a bare BertModel, a sharded checkpoint with F16/BF16
 * shards written byte by byte here). The loaded model's tensors are compared
 * with the source's values, which the test chose; what the loader must refuse
 * (missing or mis-shaped tensors, pickle files, duplicates, bad indexes) is
 * checked through its error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/config.h"
#include "io/hfmodel.h"
#include "model/model.h"
#include "testutil.h"
#include "base/rng.h"
#include "io/safetensors.h"

#define NUM_LABELS 3
#define SRC_SEED 11
#define LOAD_SEED 5

static char errbuf[1024];

/* ---------------------------------------------------------------- temp dirs */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static void write_config(void **state, const aflo_config *c) {
    char path[600];
    path_in(path, sizeof path, state, "config.json");
    char *json = config_to_json(c);
    assert_non_null(json);
    write_text(path, json);
    free(json);
}

/* ---------------------------------------------------------------- the source model */

static aflo_adapter_config full_ac(void) {
    return (aflo_adapter_config){
        .method = METHOD_FULL, .rank = 0, .alpha = 0, .targets = 0, .projections = PROJ_FFN};
}

static aflo_adapter_config aflora_ac(void) {
    return (aflo_adapter_config){.method = METHOD_AFLORA,
                                 .rank = 2,
                                 .alpha = 2,
                                 .targets = ALL_MODULES,
                                 .projections = PROJ_FFN};
}

/* A model whose every base and head value is a multiple of 1/1024 below 1/8
 * in magnitude (exact in F16 and BF16), biases and LayerNorm included, so no
 * tensor is trivially 0 or 1. */
static aflo_model *source_model(const aflo_config *c, int num_labels) {
    aflo_adapter_config ac = full_ac();
    aflo_model *m =
        model_create(c, &ac, TASK_CLASSIFICATION, num_labels, SRC_SEED, errbuf, sizeof errbuf);
    assert_non_null(m);
    aflo_rng rng;
    rng_seed(&rng, 1234);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        for (size_t j = 0; j < p->size; j++)
            p->data[j] = (float)((int)rng_below(&rng, 255) - 127) / 1024.0f;
    }
    return m;
}

/* How the source's tensors are named in the file. */
typedef enum { STYLE_BERT_SEQCLS, STYLE_ROBERTA_SEQCLS, STYLE_BERT_BARE } name_style;

/* File name of an engine tensor under a style, or NULL when that style's
 * checkpoint does not have it. */
static const char *file_name(char *buf, size_t cap, name_style style, const char *name) {
    bool head_pool = strncmp(name, "pooler.", 7) == 0;
    bool head_cls = strncmp(name, "classifier.", 11) == 0;
    switch (style) {
    case STYLE_BERT_SEQCLS: snprintf(buf, cap, head_cls ? "%s" : "bert.%s", name); return buf;
    case STYLE_ROBERTA_SEQCLS:
        if (head_pool)
            snprintf(buf, cap, "classifier.dense.%s", name + strlen("pooler.dense."));
        else if (head_cls)
            snprintf(buf, cap, "classifier.out_proj.%s", name + strlen("classifier."));
        else
            snprintf(buf, cap, "roberta.%s", name);
        return buf;
    case STYLE_BERT_BARE:
        if (head_pool || head_cls) return NULL;
        snprintf(buf, cap, "%s", name);
        return buf;
    }
    return NULL;
}

static void add_tensor(st_writer *w, const char *name, const aflo_param *p) {
    int64_t shape[2] = {p->shape[0], p->shape[1]};
    assert_int_equal(st_writer_add(w, name, shape, (size_t)p->ndim, p->data, errbuf, sizeof errbuf),
                     0);
}

/* Write model.safetensors of src under a style; `skip` names engine tensors
 * to leave out (NULL-terminated, may be NULL). */
static void write_weights(void **state, aflo_model *src, name_style style, const char *const *skip,
                          st_writer *w) {
    char name[160];
    for (int i = 0; i < model_param_count(src); i++) {
        aflo_param *p = model_param(src, i);
        bool skipped = false;
        for (const char *const *s = skip; s && *s; s++) skipped |= strcmp(*s, p->name) == 0;
        if (skipped) continue;
        const char *fname = file_name(name, sizeof name, style, p->name);
        if (fname) add_tensor(w, fname, p);
    }
    char path[600];
    path_in(path, sizeof path, state, "model.safetensors");
    assert_int_equal(st_writer_write(w, path, errbuf, sizeof errbuf), 0);
}

static void write_model_folder(void **state, aflo_model *src, name_style style,
                               const char *const *skip) {
    write_config(state, model_config(src));
    st_writer *w = st_writer_new();
    assert_non_null(w);
    write_weights(state, src, style, skip, w);
    st_writer_free(w);
}

static aflo_model *load(void **state, int num_labels, hf_load_report *rep) {
    aflo_adapter_config ac = aflora_ac();
    return hfmodel_load((const char *)*state, &ac, TASK_CLASSIFICATION, num_labels, LOAD_SEED, rep,
                        errbuf, sizeof errbuf);
}

static void assert_same_tensor(aflo_model *got, aflo_model *want, const char *got_name,
                               const char *want_name) {
    aflo_param *g = model_find_param(got, got_name), *w = model_find_param(want, want_name);
    assert_non_null(g);
    assert_non_null(w);
    assert_int_equal(g->size, w->size);
    if (memcmp(g->data, w->data, g->size * sizeof(float)) != 0)
        fail_msg("tensor %s differs", got_name);
}

static void assert_base_equal(aflo_model *got, aflo_model *want) {
    int checked = 0;
    for (int i = 0; i < model_param_count(got); i++) {
        aflo_param *p = model_param(got, i);
        if (p->group != PGROUP_BASE) continue;
        assert_same_tensor(got, want, p->name, p->name);
        checked++;
    }
    /* 5 embedding tensors + 16 per layer */
    assert_int_equal(checked, 5 + 16 * model_config(got)->num_hidden_layers);
}

/* ---------------------------------------------------------------- tests */

static void test_bert_seqcls_loads_everything(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *src = source_model(&c, NUM_LABELS);
    write_config(state, &c);
    st_writer *w = st_writer_new();
    assert_non_null(w);
    /* what BertForPreTraining-derived checkpoints also carry: skipped */
    float pos_ids[16], mlm_bias[30], foo[2] = {1, 2};
    for (int i = 0; i < 16; i++) pos_ids[i] = (float)i;
    memset(mlm_bias, 0, sizeof mlm_bias);
    int64_t s16 = 16, s30 = 30, s2 = 2;
    assert_int_equal(
        st_writer_add(w, "bert.embeddings.position_ids", &s16, 1, pos_ids, errbuf, sizeof errbuf),
        0);
    assert_int_equal(
        st_writer_add(w, "cls.predictions.bias", &s30, 1, mlm_bias, errbuf, sizeof errbuf), 0);
    assert_int_equal(st_writer_add(w, "foo.unexpected", &s2, 1, foo, errbuf, sizeof errbuf), 0);
    write_weights(state, src, STYLE_BERT_SEQCLS, NULL, w);
    st_writer_free(w);

    hf_load_report rep;
    aflo_model *m = load(state, NUM_LABELS, &rep);
    if (!m) fail_msg("load failed: %s", errbuf);
    assert_base_equal(m, src);
    assert_same_tensor(m, src, "pooler.dense.weight", "pooler.dense.weight");
    assert_same_tensor(m, src, "pooler.dense.bias", "pooler.dense.bias");
    assert_same_tensor(m, src, "classifier.weight", "classifier.weight");
    assert_same_tensor(m, src, "classifier.bias", "classifier.bias");
    assert_true(rep.pooler_pretrained);
    assert_true(rep.classifier_pretrained);
    assert_int_equal(rep.file_num_labels, NUM_LABELS);
    /* 37 encoder tensors + 4 head */
    assert_int_equal(rep.tensors_loaded, 5 + 16 * 2 + 4);
    assert_int_equal(rep.tensors_ignored, 2);
    assert_int_equal(rep.tensors_unknown, 1);
    assert_int_equal(rep.shards, 1);
    assert_non_null(strstr(rep.info, "foo.unexpected"));
    /* the adapters keep their own initialisation (AFLoRA: s_d = 0.1) */
    aflo_param *sd = model_find_param(m, "encoder.layer.1.output.dense.s_d");
    assert_non_null(sd);
    assert_true(sd->data[0] == 0.1f);
    model_free(m);
    model_free(src);
}

static void test_head_size_mismatch_keeps_fresh_classifier(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *src = source_model(&c, NUM_LABELS);
    write_model_folder(state, src, STYLE_BERT_SEQCLS, NULL);

    hf_load_report rep;
    aflo_model *m = load(state, 2, &rep);
    if (!m) fail_msg("load failed: %s", errbuf);
    assert_false(rep.classifier_pretrained);
    assert_true(rep.pooler_pretrained);
    assert_int_equal(rep.file_num_labels, NUM_LABELS);
    assert_non_null(strstr(rep.info, "3 outputs"));
    assert_non_null(strstr(rep.info, "needs 2"));
    /* the classifier is exactly what a fresh model with the same seed has */
    aflo_adapter_config ac = aflora_ac();
    aflo_model *fresh =
        model_create(&c, &ac, TASK_CLASSIFICATION, 2, LOAD_SEED, errbuf, sizeof errbuf);
    assert_non_null(fresh);
    assert_same_tensor(m, fresh, "classifier.weight", "classifier.weight");
    assert_same_tensor(m, fresh, "classifier.bias", "classifier.bias");
    assert_same_tensor(m, src, "pooler.dense.weight", "pooler.dense.weight");
    assert_base_equal(m, src);
    model_free(fresh);

    /* regression: one output, the file has three -> fresh too */
    aflo_model *r = hfmodel_load((const char *)*state, &ac, TASK_REGRESSION, 1, LOAD_SEED, &rep,
                                 errbuf, sizeof errbuf);
    if (!r) fail_msg("load failed: %s", errbuf);
    assert_false(rep.classifier_pretrained);
    model_free(r);
    model_free(m);
    model_free(src);
}

/* Logits of two models on one fixed batch agree (the loaded model computes
 * the source's function: the AFLoRA adapter starts as no change, s_b = 0). */
static void assert_same_logits(aflo_model *a, aflo_model *b, int pad) {
    enum { BATCH = 2, SEQ = 5 };
    int32_t ids[BATCH * SEQ] = {2, 7, 9, 4, 3, 2, 11, 3, pad, pad};
    uint8_t mask[BATCH * SEQ] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    aflo_batch bt = {.batch = BATCH, .seq = SEQ, .input_ids = ids, .attention_mask = mask};
    assert_int_equal(model_forward(a, &bt, NULL, errbuf, sizeof errbuf), 0);
    assert_int_equal(model_forward(b, &bt, NULL, errbuf, sizeof errbuf), 0);
    const float *la = model_logits(a), *lb = model_logits(b);
    for (int i = 0; i < BATCH * model_num_labels(a); i++)
        assert_float_equal(la[i], lb[i], 1e-6 * (1.0 + fabs(lb[i])));
}

static void test_roberta_seqcls_head_maps_to_pooler_and_classifier(void **state) {
    aflo_config c;
    tiny_config(&c, true);
    aflo_model *src = source_model(&c, NUM_LABELS);
    write_config(state, &c);
    st_writer *w = st_writer_new();
    assert_non_null(w);
    /* a RobertaModel pooler too: the classification head must win over it */
    aflo_param *decoy_w = model_find_param(src, "encoder.layer.0.attention.self.query.weight");
    aflo_param *decoy_b = model_find_param(src, "encoder.layer.0.attention.self.query.bias");
    add_tensor(w, "roberta.pooler.dense.weight", decoy_w);
    add_tensor(w, "roberta.pooler.dense.bias", decoy_b);
    aflo_param *lm = model_find_param(src, "embeddings.LayerNorm.bias");
    add_tensor(w, "lm_head.bias", lm);
    write_weights(state, src, STYLE_ROBERTA_SEQCLS, NULL, w);
    st_writer_free(w);

    hf_load_report rep;
    aflo_model *m = load(state, NUM_LABELS, &rep);
    if (!m) fail_msg("load failed: %s", errbuf);
    assert_base_equal(m, src);
    assert_same_tensor(m, src, "pooler.dense.weight", "pooler.dense.weight");
    assert_same_tensor(m, src, "pooler.dense.bias", "pooler.dense.bias");
    assert_same_tensor(m, src, "classifier.weight", "classifier.weight");
    assert_same_tensor(m, src, "classifier.bias", "classifier.bias");
    assert_true(rep.pooler_pretrained);
    assert_true(rep.classifier_pretrained);
    assert_non_null(strstr(rep.info, "roberta.pooler.dense.weight"));
    assert_same_logits(m, src, c.pad_token_id);
    model_free(m);
    model_free(src);
}

static void test_bare_model_without_head(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *src = source_model(&c, NUM_LABELS);
    write_model_folder(state, src, STYLE_BERT_BARE, NULL);
    hf_load_report rep;
    aflo_model *m = load(state, 2, &rep);
    if (!m) fail_msg("load failed: %s", errbuf);
    assert_base_equal(m, src);
    assert_false(rep.pooler_pretrained);
    assert_false(rep.classifier_pretrained);
    assert_int_equal(rep.file_num_labels, 0);
    assert_non_null(strstr(rep.info, "no pooler"));
    assert_non_null(strstr(rep.info, "no classifier"));
    model_free(m);
    model_free(src);
}

static void test_layernorm_gamma_beta_names(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *src = source_model(&c, NUM_LABELS);
    write_config(state, &c);
    st_writer *w = st_writer_new();
    assert_non_null(w);
    char name[160];
    for (int i = 0; i < model_param_count(src); i++) {
        aflo_param *p = model_param(src, i);
        const char *n = file_name(name, sizeof name, STYLE_BERT_SEQCLS, p->name);
        char *ln = strstr(name, "LayerNorm.");
        if (ln) strcpy(ln + strlen("LayerNorm."), p->role == PROLE_NORM_WEIGHT ? "gamma" : "beta");
        add_tensor(w, n, p);
    }
    char path[600];
    path_in(path, sizeof path, state, "model.safetensors");
    assert_int_equal(st_writer_write(w, path, errbuf, sizeof errbuf), 0);
    st_writer_free(w);
    aflo_model *m = load(state, NUM_LABELS, NULL);
    if (!m) fail_msg("load failed: %s", errbuf);
    assert_base_equal(m, src);
    model_free(m);
    model_free(src);
}

/* ---------------------------------------------------------------- sharded, F16/BF16 */

/* float -> IEEE half bits; the test only feeds values that are exact. */
static uint16_t f16_bits(float v) {
    uint16_t sign = signbit(v) ? 0x8000u : 0;
    float a = fabsf(v);
    if (a == 0.0f) return sign;
    int e;
    float m = frexpf(a, &e); /* a = m 2^e, m in [0.5, 1) */
    int biased = e - 1 + 15; /* a = (2m) 2^(e-1) */
    assert_true(biased > 0 && biased < 31);
    float frac = (2.0f * m - 1.0f) * 1024.0f;
    assert_true(frac == floorf(frac)); /* exactly representable */
    return (uint16_t)(sign | (uint16_t)(biased << 10) | (uint16_t)frac);
}

static uint16_t bf16_bits(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    assert_int_equal(u & 0xFFFFu, 0); /* exactly representable */
    return (uint16_t)(u >> 16);
}

/* Write a safetensors file by hand with 16-bit tensors under the given file
 * names: 2-D weights as F16, everything else as BF16. */
static void write_half_shard(const char *path, char (*fnames)[160], aflo_param *const *params,
                             int n) {
    enum { HEADER_CAP = 8192 };
    char *header = calloc(1, HEADER_CAP); /* heap: its size is not the compiler's business */
    assert_non_null(header);
    header[0] = '{';
    size_t off = 0, total = 0;
    for (int i = 0; i < n; i++) total += params[i]->size * 2;
    uint16_t *data = malloc(total ? total : 2);
    assert_non_null(data);
    for (int i = 0; i < n; i++) {
        const aflo_param *p = params[i];
        bool f16 = p->ndim == 2;
        size_t len = strlen(header);
        if (f16)
            snprintf(header + len, HEADER_CAP - len,
                     "%s\"%s\":{\"dtype\":\"F16\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
                     i ? "," : "", fnames[i], p->shape[0], p->shape[1], off, off + p->size * 2);
        else
            snprintf(header + len, HEADER_CAP - len,
                     "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
                     i ? "," : "", fnames[i], p->shape[0], off, off + p->size * 2);
        for (size_t j = 0; j < p->size; j++)
            data[off / 2 + j] = f16 ? f16_bits(p->data[j]) : bf16_bits(p->data[j]);
        off += p->size * 2;
    }
    strcat(header, "}");
    while (strlen(header) % 8) strcat(header, " ");
    uint64_t hlen = strlen(header);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(&hlen, 8, 1, f), 1);
    assert_int_equal(fwrite(header, 1, hlen, f), hlen);
    if (total) assert_int_equal(fwrite(data, 1, total, f), total);
    assert_int_equal(fclose(f), 0);
    free(data);
    free(header);
}

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"

/* Shard 1: embeddings and layer 0 as F32 (engine writer). Shard 2: layer 1
 * and the head as F16/BF16. The index lists every tensor, plus index_extra
 * (text of further weight_map members, starting with ", "). */
static void write_sharded_folder(void **state, aflo_model *src, const char *index_extra) {
    write_config(state, model_config(src));
    st_writer *w = st_writer_new();
    assert_non_null(w);
    static char half_names[64][160];
    aflo_param *half[64];
    int nhalf = 0;
    char index[16384] = "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {";
    char name[160];
    for (int i = 0; i < model_param_count(src); i++) {
        aflo_param *p = model_param(src, i);
        bool second = strncmp(p->name, "encoder.layer.1.", 16) == 0 || p->group == PGROUP_HEAD;
        const char *fname = file_name(name, sizeof name, STYLE_BERT_SEQCLS, p->name);
        if (second) {
            snprintf(half_names[nhalf], sizeof half_names[nhalf], "%s", fname);
            half[nhalf++] = p;
        } else {
            add_tensor(w, fname, p);
        }
        size_t len = strlen(index);
        snprintf(index + len, sizeof index - len, "%s\"%s\": \"%s\"", i ? ", " : "", fname,
                 second ? SHARD2 : SHARD1);
    }
    strcat(index, index_extra);
    strcat(index, "}}");
    char path[600];
    path_in(path, sizeof path, state, SHARD1);
    assert_int_equal(st_writer_write(w, path, errbuf, sizeof errbuf), 0);
    st_writer_free(w);
    path_in(path, sizeof path, state, SHARD2);
    write_half_shard(path, half_names, half, nhalf);
    path_in(path, sizeof path, state, "model.safetensors.index.json");
    write_text(path, index);
}

static void test_sharded_f16_bf16(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *src = source_model(&c, NUM_LABELS);
    write_sharded_folder(state, src, "");
    hf_load_report rep;
    aflo_model *m = load(state, NUM_LABELS, &rep);
    if (!m) fail_msg("load failed: %s", errbuf);
    assert_base_equal(m, src);
    assert_same_tensor(m, src, "pooler.dense.weight", "pooler.dense.weight");
    assert_same_tensor(m, src, "classifier.bias", "classifier.bias");
    assert_int_equal(rep.shards, 2);
    assert_true(rep.classifier_pretrained);
    model_free(m);
    model_free(src);
}

static void test_hfmodel_info(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *src = source_model(&c, NUM_LABELS);
    write_sharded_folder(state, src, "");
    hf_model_info info;
    assert_int_equal(hfmodel_info((const char *)*state, &info, errbuf, sizeof errbuf), 0);
    assert_string_equal(info.architecture, "BertForSequenceClassification");
    assert_string_equal(info.model_type, "bert");
    assert_int_equal(info.num_hidden_layers, 2);
    assert_int_equal(info.hidden_size, 8);
    assert_int_equal(info.intermediate_size, 12);
    /* By hand, V=30 H=8 I=12 P=16 T=2, 3 labels:
     *   embeddings 30*8 + 16*8 + 2*8 + 8 + 8          =  400
     *   per layer  4*(8*8+8) + 2*8 + (12*8+12) + (8*12+8) + 2*8 = 532, x2 = 1064
     *   pooler 8*8+8 = 72, classifier 3*8+3 = 27      -> 1563 */
    assert_int_equal(info.num_params, 1563);
    /* shard 1: layer 0 + embeddings in F32 = 400 + 532 floats; the rest 2 bytes */
    assert_int_equal(info.weight_bytes, (400 + 532) * 4 + (532 + 72 + 27) * 2);
    assert_string_equal(info.dtype, "mixed");
    assert_int_equal(info.shards, 2);
    assert_int_equal(info.head_num_labels, 3);
    model_free(src);
}

static void test_hfmodel_info_single_f32(void **state) {
    aflo_config c;
    tiny_config(&c, true);
    aflo_model *src = source_model(&c, 2);
    write_model_folder(state, src, STYLE_ROBERTA_SEQCLS, NULL);
    hf_model_info info;
    assert_int_equal(hfmodel_info((const char *)*state, &info, errbuf, sizeof errbuf), 0);
    assert_string_equal(info.architecture, "RobertaForSequenceClassification");
    assert_string_equal(info.dtype, "F32");
    assert_int_equal(info.shards, 1);
    assert_int_equal(info.head_num_labels, 2);
    assert_int_equal(info.num_params, 1563 - 27 + (2 * 8 + 2));
    model_free(src);
}

static void test_name_or_path(void **state) {
    char path[600], name[32];
    path_in(path, sizeof path, state, "config.json");
    /* what transformers' save_pretrained records */
    write_text(path,
               "{\"_name_or_path\": \"google-bert/bert-base-uncased\", \"model_type\": \"bert\"}");
    assert_int_equal(
        hfmodel_name_or_path((const char *)*state, name, sizeof name, errbuf, sizeof errbuf), 1);
    assert_string_equal(name, "google-bert/bert-base-uncased");
    /* absent, empty or not a string: none */
    const char *none[] = {"{\"model_type\": \"bert\"}", "{\"_name_or_path\": \"\"}",
                          "{\"_name_or_path\": 3}"};
    for (size_t i = 0; i < sizeof none / sizeof *none; i++) {
        write_text(path, none[i]);
        strcpy(name, "untouched");
        assert_int_equal(
            hfmodel_name_or_path((const char *)*state, name, sizeof name, errbuf, sizeof errbuf),
            0);
        assert_string_equal(name, "untouched");
    }
    write_text(path, "{\"_name_or_path\": \"a-name-longer-than-the-thirty-two-byte-buffer\"}");
    assert_int_equal(
        hfmodel_name_or_path((const char *)*state, name, sizeof name, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "_name_or_path is longer than 31 bytes"));
    write_text(path, "{\"_name_or_path\": ");
    assert_int_equal(
        hfmodel_name_or_path((const char *)*state, name, sizeof name, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "config.json: "));
    unlink(path);
    assert_int_equal(
        hfmodel_name_or_path((const char *)*state, name, sizeof name, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "cannot open"));
}

static void test_index_errors(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *src = source_model(&c, NUM_LABELS);
    /* a tensor the index places in a shard that does not have it */
    write_sharded_folder(state, src,
                         ", \"bert.ghost.weight\": \"model-00001-of-00002.safetensors\"");
    aflo_model *m = load(state, NUM_LABELS, NULL);
    assert_null(m);
    assert_non_null(strstr(errbuf, "bert.ghost.weight"));
    assert_non_null(strstr(errbuf, "no such tensor"));
    /* a shard outside the folder */
    write_sharded_folder(state, src, ", \"bert.x\": \"../model.safetensors\"");
    m = load(state, NUM_LABELS, NULL);
    assert_null(m);
    assert_non_null(strstr(errbuf, "must name a file in the folder"));
    /* a shard that does not exist */
    write_sharded_folder(state, src, ", \"bert.x\": \"model-00003-of-00002.safetensors\"");
    m = load(state, NUM_LABELS, NULL);
    assert_null(m);
    assert_non_null(strstr(errbuf, "model-00003-of-00002.safetensors"));
    model_free(src);
}

static void test_missing_and_misshaped_listed(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *src = source_model(&c, NUM_LABELS);
    write_config(state, &c);
    static const char *const skip[] = {"encoder.layer.0.attention.self.key.bias",
                                       "embeddings.LayerNorm.weight",
                                       "encoder.layer.1.intermediate.dense.weight", NULL};
    st_writer *w = st_writer_new();
    assert_non_null(w);
    /* the intermediate weight of layer 1 transposed: 8 x 12 instead of 12 x 8 */
    aflo_param *p = model_find_param(src, "encoder.layer.1.intermediate.dense.weight");
    int64_t t[2] = {8, 12};
    assert_int_equal(st_writer_add(w, "bert.encoder.layer.1.intermediate.dense.weight", t, 2,
                                   p->data, errbuf, sizeof errbuf),
                     0);
    write_weights(state, src, STYLE_BERT_SEQCLS, skip, w);
    st_writer_free(w);
    aflo_model *m = load(state, NUM_LABELS, NULL);
    assert_null(m);
    assert_non_null(strstr(errbuf, "3 tensors missing or unusable"));
    assert_non_null(strstr(errbuf, "encoder.layer.0.attention.self.key.bias missing"));
    assert_non_null(strstr(errbuf, "embeddings.LayerNorm.weight missing"));
    assert_non_null(strstr(
        errbuf,
        "bert.encoder.layer.1.intermediate.dense.weight has shape [8, 12], expected [12, 8]"));
    assert_null(strstr(errbuf, "more"));
    model_free(src);
}

static void test_many_problems_bounded(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *src = source_model(&c, NUM_LABELS);
    /* all 16 tensors of layer 1 and the pooler bias left out */
    const char *skip[20];
    int n = 0;
    for (int i = 0; i < model_param_count(src); i++) {
        aflo_param *p = model_param(src, i);
        if (strncmp(p->name, "encoder.layer.1.", 16) == 0) skip[n++] = p->name;
    }
    assert_int_equal(n, 16);
    skip[n++] = "pooler.dense.bias";
    skip[n] = NULL;
    write_model_folder(state, src, STYLE_BERT_SEQCLS, skip);
    char small[300];
    aflo_adapter_config ac = aflora_ac();
    aflo_model *m = hfmodel_load((const char *)*state, &ac, TASK_CLASSIFICATION, NUM_LABELS, 1,
                                 NULL, errbuf, sizeof errbuf);
    assert_null(m);
    /* 16 missing + the pooler weight without its bias = 17; 8 listed */
    assert_non_null(strstr(errbuf, "17 tensors missing or unusable"));
    assert_non_null(strstr(errbuf, "and 9 more"));
    assert_non_null(strstr(errbuf, "encoder.layer.1.attention.self.query.weight missing"));
    /* a short buffer gets a truncated but terminated message */
    m = hfmodel_load((const char *)*state, &ac, TASK_CLASSIFICATION, NUM_LABELS, 1, NULL, small,
                     sizeof small);
    assert_null(m);
    assert_true(strlen(small) < sizeof small);
    model_free(src);
}

static void test_duplicate_names(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *src = source_model(&c, NUM_LABELS);
    write_config(state, &c);
    st_writer *w = st_writer_new();
    assert_non_null(w);
    add_tensor(w, "embeddings.LayerNorm.weight",
               model_find_param(src, "embeddings.LayerNorm.weight"));
    write_weights(state, src, STYLE_BERT_SEQCLS, NULL, w);
    st_writer_free(w);
    assert_null(load(state, NUM_LABELS, NULL));
    assert_non_null(strstr(errbuf, "appears twice"));
    model_free(src);
}

static void test_pickle_refused(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    write_config(state, &c);
    char path[600];
    path_in(path, sizeof path, state, "pytorch_model.bin");
    write_text(path, "PK not really a zip");
    assert_null(load(state, NUM_LABELS, NULL));
    assert_non_null(strstr(errbuf, "pytorch_model.bin"));
    assert_non_null(strstr(errbuf, "safe_serialization=True"));
    hf_model_info info;
    assert_int_equal(hfmodel_info((const char *)*state, &info, errbuf, sizeof errbuf), -1);
    assert_non_null(strstr(errbuf, "safetensors"));
    unlink(path);
    assert_null(load(state, NUM_LABELS, NULL));
    assert_non_null(strstr(errbuf, "no model.safetensors"));
}

static void test_bad_config_and_dtype(void **state) {
    /* no config.json at all */
    assert_null(load(state, NUM_LABELS, NULL));
    assert_non_null(strstr(errbuf, "config.json"));
    /* an unsupported activation */
    char path[600];
    path_in(path, sizeof path, state, "config.json");
    write_text(path,
               "{\"vocab_size\": 30, \"hidden_size\": 8, \"num_hidden_layers\": 1, "
               "\"num_attention_heads\": 2, \"intermediate_size\": 12, \"hidden_act\": \"relu\"}");
    assert_null(load(state, NUM_LABELS, NULL));
    assert_non_null(strstr(errbuf, "hidden_act"));
}

/* config.json is read whole (folder.h's read_text_file): something that is
 * not a plain file of plausible size is refused with what is wrong. */
static void test_config_file_refused(void **state) {
    char path[600];
    path_in(path, sizeof path, state, "config.json");
    size_t big = ((size_t)1 << 20) + 1; /* hfmodel.c's MAX_CONFIG_BYTES + 1 */
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < big; i++) assert_int_equal(fputc(' ', f), ' ');
    assert_int_equal(fclose(f), 0);
    assert_null(load(state, NUM_LABELS, NULL));
    if (!strstr(errbuf,
                "config.json: larger than 1048576 bytes, not a plausible file of this kind"))
        fail_msg("got <%s>", errbuf);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_null(load(state, NUM_LABELS, NULL));
    if (!strstr(errbuf, "config.json: not a regular file")) fail_msg("got <%s>", errbuf);
}

/* hfmodel_probe: what a job would need, checked without loading. */
static void expect_probe(void **state, int want_rc, bool want_config, const char *want) {
    aflo_config c;
    bool read = !want_config;
    errbuf[0] = '\0';
    assert_int_equal(hfmodel_probe((const char *)*state, &c, &read, errbuf, sizeof errbuf),
                     want_rc);
    assert_int_equal(read, want_config);
    if (want && !strstr(errbuf, want)) fail_msg("probe said <%s>, want <%s>", errbuf, want);
}

static void test_probe(void **state) {
    aflo_config c;
    tiny_config(&c, false);
    aflo_model *src = source_model(&c, NUM_LABELS);
    write_model_folder(state, src, STYLE_BERT_SEQCLS, NULL);
    model_free(src);
    char vocab[600], tj[600], weights[600], path[600];
    path_in(vocab, sizeof vocab, state, "vocab.txt");
    path_in(tj, sizeof tj, state, "tokenizer.json");
    path_in(weights, sizeof weights, state, "model.safetensors");
    /* config and weights but no tokenizer: the sizes are still known */
    expect_probe(state, -1, true,
                 "no tokenizer files (expected vocab.txt, vocab.json + merges.txt, "
                 "tokenizer.json or tokenizer.model)");
    /* a tokenizer.json of a kind only vocab.txt could stand in for */
    write_text(tj, "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
    expect_probe(state, -1, true, "model type \"WordPiece\" is not supported");
    write_text(tj, "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}");
    expect_probe(state, 0, true, NULL);
    unlink(tj);
    write_text(vocab, "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n");
    expect_probe(state, 0, true, NULL);
    /* a weights file whose header is not safetensors */
    rename(weights, tj);
    write_text(weights, "not safetensors at all");
    expect_probe(state, -1, true, "model.safetensors");
    unlink(weights);
    expect_probe(state, -1, true, "no model.safetensors");
    path_in(path, sizeof path, state, "pytorch_model.bin");
    write_text(path, "PK");
    expect_probe(state, -1, true, "safe_serialization=True");
    rename(tj, weights);
    expect_probe(state, 0, true, NULL);
    /* other families are refused before anything else is looked at */
    path_in(path, sizeof path, state, "config.json");
    write_text(path,
               "{\"model_type\": \"electra\", \"hidden_size\": 768, \"num_hidden_layers\": 12,"
               " \"num_attention_heads\": 12, \"intermediate_size\": 3072, \"vocab_size\": 30522}");
    expect_probe(state, -1, false,
                 "unsupported architecture model_type \"electra\" (supported: "
                 "BertForSequenceClassification (bert)");
    write_text(path,
               "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
               "\"hidden_act\": \"silu\", \"hidden_size\": 4096, \"intermediate_size\": 11008, "
               "\"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"vocab_size\": 32000}");
    /* a causal LM's config reads and is usable (for causal_lm): the probe
     * reads headers, not tensor names */
    expect_probe(state, 0, true, NULL);
    /* and loading it for classification is refused before any training could start */
    assert_null(load(state, NUM_LABELS, NULL));
    assert_non_null(strstr(errbuf, "task: the llama family has no head for this task"));
    write_text(path, "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", "
                     "\"n_embd\": 768, \"n_head\": 12, \"n_layer\": 12, \"vocab_size\": 50257}");
    expect_probe(state, -1, false,
                 "unsupported architecture GPT2LMHeadModel, model_type \"gpt2\" "
                 "(supported: BertForSequenceClassification (bert)");
}

/* ---------------------------------------------------------------- LLaMA family */

/* transformers' LlamaConfig / Qwen2Config as save_pretrained writes them
 * (the fields the engine reads, plus some it does not). */
static void write_llama_config(void **state, const char *type, const char *arch, bool tied) {
    char path[600], text[1024];
    path_in(path, sizeof path, state, "config.json");
    snprintf(text, sizeof text,
             "{\"architectures\": [\"%s\"], \"model_type\": \"%s\", \"hidden_act\": \"silu\", "
             "\"hidden_size\": 8, \"intermediate_size\": 12, \"num_attention_heads\": 4, "
             "\"num_key_value_heads\": 2, \"num_hidden_layers\": 2, \"vocab_size\": 19, "
             "\"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-06, \"rope_theta\": "
             "10000.0, \"tie_word_embeddings\": %s, \"torch_dtype\": \"float32\", "
             "\"bos_token_id\": 1, \"eos_token_id\": 2, \"attention_dropout\": 0.0}",
             arch, type, tied ? "true" : "false");
    write_text(path, text);
}

/* A random causal-LM model of the folder's config (values exact in F16). */
static aflo_model *llama_source(void **state) {
    aflo_config c;
    assert_int_equal(hfmodel_read_config((const char *)*state, &c, errbuf, sizeof errbuf), 0);
    aflo_adapter_config ac = full_ac();
    aflo_model *m =
        model_create(&c, &ac, TASK_CAUSAL_LM, c.vocab_size, SRC_SEED, errbuf, sizeof errbuf);
    if (!m) fail_msg("%s", errbuf);
    aflo_rng rng;
    rng_seed(&rng, 99);
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        for (size_t j = 0; j < p->size; j++)
            p->data[j] = (float)((int)rng_below(&rng, 255) - 127) / 1024.0f;
    }
    return m;
}

/* model.safetensors under LlamaForCausalLM's names: "model." + the engine's
 * name, lm_head.weight beside it, and a rotary_emb.inv_freq buffer per
 * block as older checkpoints have; skip: an engine name to leave out;
 * reshape: one to write with its rows halved. */
static void write_llama_weights(void **state, aflo_model *src, const char *skip,
                                const char *reshape) {
    st_writer *w = st_writer_new();
    assert_non_null(w);
    char name[160];
    for (int i = 0; i < model_param_count(src); i++) {
        aflo_param *p = model_param(src, i);
        if (skip && strcmp(p->name, skip) == 0) continue;
        bool head = strncmp(p->name, "lm_head.", 8) == 0;
        snprintf(name, sizeof name, head ? "%s" : "model.%s", p->name);
        int64_t shape[2] = {p->shape[0], p->shape[1]};
        if (reshape && strcmp(p->name, reshape) == 0) shape[0] /= 2;
        assert_int_equal(
            st_writer_add(w, name, shape, (size_t)p->ndim, p->data, errbuf, sizeof errbuf), 0);
    }
    static const float inv_freq[2] = {1.0f, 0.01f};
    int64_t fshape[1] = {2};
    for (int l = 0; l < model_config(src)->num_hidden_layers; l++) {
        snprintf(name, sizeof name, "model.layers.%d.self_attn.rotary_emb.inv_freq", l);
        assert_int_equal(st_writer_add(w, name, fshape, 1, inv_freq, errbuf, sizeof errbuf), 0);
    }
    char path[600];
    path_in(path, sizeof path, state, "model.safetensors");
    assert_int_equal(st_writer_write(w, path, errbuf, sizeof errbuf), 0);
    st_writer_free(w);
}

static aflo_model *load_causal(void **state, hf_load_report *rep) {
    aflo_adapter_config ac = aflora_ac();
    /* num_labels is ignored for causal LMs: the vocabulary size is used */
    return hfmodel_load((const char *)*state, &ac, TASK_CAUSAL_LM, 0, LOAD_SEED, rep, errbuf,
                        sizeof errbuf);
}

static void assert_llama_base_equal(aflo_model *got, aflo_model *want, int want_count) {
    int checked = 0;
    for (int i = 0; i < model_param_count(got); i++) {
        aflo_param *p = model_param(got, i);
        if (p->group != PGROUP_BASE) continue;
        assert_same_tensor(got, want, p->name, p->name);
        checked++;
    }
    assert_int_equal(checked, want_count);
}

static void test_llama_causal_lm_loads(void **state) {
    write_llama_config(state, "llama", "LlamaForCausalLM", false);
    aflo_model *src = llama_source(state);
    write_llama_weights(state, src, NULL, NULL);
    hf_load_report rep;
    aflo_model *m = load_causal(state, &rep);
    if (!m) fail_msg("load failed: %s", errbuf);
    assert_int_equal(model_task(m), TASK_CAUSAL_LM);
    assert_int_equal(model_num_labels(m), 19);
    /* embed, norm, lm_head + per block 2 norms and 7 weights */
    assert_llama_base_equal(m, src, 3 + 2 * 9);
    assert_int_equal(rep.tensors_loaded, 3 + 2 * 9);
    assert_int_equal(rep.tensors_ignored, 2); /* the inv_freq buffers */
    assert_int_equal(rep.tensors_unknown, 0);
    assert_int_equal(rep.info[0], '\0');
    /* the adapter is fresh: AFLoRA's q/k/v/up/down... all targeted here */
    assert_non_null(model_find_param(m, "layers.1.mlp.down_proj.lora_A"));
    model_free(m);
    model_free(src);
    /* the probe calls such a folder usable once it has a tokenizer */
    char tj[600];
    path_in(tj, sizeof tj, state, "tokenizer.json");
    write_text(tj, "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}");
    expect_probe(state, 0, true, NULL);
}

/* Qwen2, tied: no lm_head in the file (transformers drops it), q/k/v biases. */
static void test_qwen2_tied_loads(void **state) {
    write_llama_config(state, "qwen2", "Qwen2ForCausalLM", true);
    aflo_model *src = llama_source(state);
    assert_null(model_find_param(src, "lm_head.weight"));
    assert_non_null(model_find_param(src, "layers.0.self_attn.q_proj.bias"));
    write_llama_weights(state, src, NULL, NULL);
    aflo_model *m = load_causal(state, NULL);
    if (!m) fail_msg("load failed: %s", errbuf);
    assert_llama_base_equal(m, src, 2 + 2 * 12);
    model_free(m);
    model_free(src);
}

/* Missing and mis-shaped tensors: one message that lists them all. */
static void test_llama_problems_listed(void **state) {
    write_llama_config(state, "mistral", "MistralForCausalLM", false);
    aflo_model *src = llama_source(state);
    write_llama_weights(state, src, "layers.1.mlp.up_proj.weight", "lm_head.weight");
    assert_null(load_causal(state, NULL));
    if (!strstr(errbuf, "layers.1.mlp.up_proj.weight missing") ||
        !strstr(errbuf, "lm_head.weight has shape [9, 8], expected [19, 8]"))
        fail_msg("got <%s>", errbuf);
    model_free(src);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bert_seqcls_loads_everything, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_head_size_mismatch_keeps_fresh_classifier,
                                        tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_roberta_seqcls_head_maps_to_pooler_and_classifier,
                                        tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_bare_model_without_head, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_layernorm_gamma_beta_names, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_sharded_f16_bf16, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_hfmodel_info, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_probe, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_llama_causal_lm_loads, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_qwen2_tied_loads, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_llama_problems_listed, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_hfmodel_info_single_f32, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_name_or_path, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_index_errors, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_misshaped_listed, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_many_problems_bounded, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_names, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_pickle_refused, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_bad_config_and_dtype, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_config_file_refused, tmpdir_setup, tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
