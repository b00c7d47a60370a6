/* bert.c — the BERT family: BERT and RoBERTa encoders (and the RoBERTa
 * derivatives XLM-RoBERTa and CamemBERT) with adapters: tensor declaration,
 * activation layout, forward, backward, and the family's descriptor.
 *
 * Data flow of one block (post-LN, as BERT), N = batch*seq tokens:
 *   q,k,v  = linear(x)                       (adapted)
 *   ctx    = dropout(softmax(q k^T/sqrt(d) + mask)) v      per (batch, head)
 *   res1   = dropout(linear_attn_out(ctx)) + x;   h1  = LN1(res1)
 *   inter  = h1 W_i^T (+ adapter);                g   = gelu(inter + b_i)
 *   res2   = dropout(linear_output(g)) + h1;      out = LN2(res2)
 * Saved for backward: q, k, v, attention's row log-sum-exps, ctx, res1, h1,
 * inter, res2, out, LN statistics and each adapter's h1/h3. The
 * intermediate's bias is added inside the GELU (one pass instead of two;
 * inter is kept without it), and g is recomputed from inter in backward
 * (cheap elementwise) instead of kept: N*I floats a layer.
 *
 * Embeddings: word + position + token type, LayerNorm, dropout. RoBERTa
 * differs only in numbering positions from pad_token_id + 1 (padding keeps
 * pad_token_id), switched on by the variant's BERT_ROBERTA_POSITIONS.
 *
 * Head: pooled = tanh(W_p x[CLS] + b_p) -> dropout -> logits = W_c pooled + b_c.
 * RoBERTa's classification head (classifier.dense -> tanh -> out_proj) is
 * the same computation under other names: the variant's head_names map them.
 *
 * model.c owns the tensor table, the arenas and the generic checks; this file
 * owns the pointers to its tensors and activations and the current batch, in
 * a bert_model hung on m->impl (model_internal.h). */
#include "model/bert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"
#include "model/attention.h"
#include "model/linear.h"
#include "model/model_internal.h"
#include "model/ops.h"
#include "model/resnorm.h"

/* Dropout sites, to give every dropout call its own mask stream. */
enum { SITE_EMB, SITE_ATTN_PROBS, SITE_ATTN_OUT, SITE_FFN_OUT, SITE_HEAD };

typedef struct {
    aflo_linear lin[BERT_MODULE_COUNT];
    aflo_param *ln1_w, *ln1_b, *ln2_w, *ln2_b;
} aflo_layer;

typedef struct {
    float *q, *k, *v, *lse, *ctx, *res1, *mean1, *rstd1, *h1, *inter, *res2, *mean2, *rstd2, *out;
    aflo_linear_acts ad[BERT_MODULE_COUNT];
} layer_acts;

typedef struct {
    int H, I, nh, hd, L;

    aflo_param *word_emb, *pos_emb, *type_emb, *emb_ln_w, *emb_ln_b;
    aflo_layer *layers;
    aflo_param *pool_w, *pool_b, *cls_w, *cls_b;

    /* activations: pointers into the model's arena (bert_layout) */
    float *emb_in, *emb_mean, *emb_rstd, *x0;
    layer_acts *la;
    float *cls, *pooled, *pooled_drop, *probs_cls;
    float *scratch_big, *scratch_h, *scratch_out, *scratch_r, *scratch_or, *scratch_ln;
    float *scratch_attn; /* attn_threads slices of attention_scratch_floats */
    int attn_threads;
    float *d_cur, *d_prev, *d_tmp, *d_h1, *d_big, *dq, *dk, *dv, *dctx;
    int32_t *pos_ids, *type_ids, *ids, *labels;
    uint8_t *mask;
    float *targets;

    /* the current batch */
    int B, S, N;
    bool has_labels;
    bool training; /* m->training for this forward (lin_scratch reads it) */
} bert_model;

/* ---------------------------------------------------------------- tensor table */

/* The adapted linear layers of a block, in forward order; the AFLoRA
 * authors' target_modules for BERT-family GLUE runs are all six. */
static const aflo_module_info bert_modules[BERT_MODULE_COUNT] = {
    [BERT_QUERY] = {"attention.self.query", "query", "query", false},
    [BERT_KEY] = {"attention.self.key", "key", "key", false},
    [BERT_VALUE] = {"attention.self.value", "value", "value", false},
    [BERT_ATTN_OUT] = {"attention.output.dense", "attention.output.dense", "attention output",
                       false},
    [BERT_INTERMEDIATE] = {"intermediate.dense", "intermediate.dense", "intermediate", true},
    [BERT_OUTPUT] = {"output.dense", "output.dense", "output", true},
};

/* Per block: six linear layers of up to six tensors (W, b, A, B, s_d, s_b)
 * and two LayerNorms; embeddings five, head four. */
static int bert_max_params(const aflo_config *c) {
    return 5 + c->num_hidden_layers * (BERT_MODULE_COUNT * 6 + 4) + 4;
}

/* Tensors in table order: embeddings, then per block each linear layer (W,
 * b, its LayerNorm after attention.output.dense and output.dense, then its
 * adapter when targeted), then the head. */
static int bert_build(aflo_model *m, char *err, size_t errlen) {
    const aflo_config *c = &m->cfg;
    bert_model *enc = calloc(1, sizeof *enc);
    if (!enc) goto oom;
    m->impl = enc;
    enc->H = c->hidden_size;
    enc->I = c->intermediate_size;
    enc->nh = c->num_attention_heads;
    enc->hd = enc->H / enc->nh;
    enc->L = c->num_hidden_layers;
    enc->layers = calloc((size_t)enc->L, sizeof *enc->layers);
    enc->la = calloc((size_t)enc->L, sizeof *enc->la);
    if (!enc->layers || !enc->la) goto oom;

    int H = enc->H, I = enc->I, V = m->cfg.vocab_size;
    char name[96];
    bool adapters = m->ac.method != METHOD_FULL;
    bool vectors = m->ac.method == METHOD_AFLORA || m->ac.method == METHOD_ELORA;
    int r = m->ac.rank;

    enc->word_emb = model_add_param(m, "embeddings.word_embeddings.weight", V, H, PGROUP_BASE,
                                    PROLE_EMBEDDING, -1, -1);
    enc->pos_emb =
        model_add_param(m, "embeddings.position_embeddings.weight", m->cfg.max_position_embeddings,
                        H, PGROUP_BASE, PROLE_EMBEDDING, -1, -1);
    enc->type_emb =
        model_add_param(m, "embeddings.token_type_embeddings.weight", m->cfg.type_vocab_size, H,
                        PGROUP_BASE, PROLE_EMBEDDING, -1, -1);
    enc->emb_ln_w = model_add_param(m, "embeddings.LayerNorm.weight", 0, H, PGROUP_BASE,
                                    PROLE_NORM_WEIGHT, -1, -1);
    enc->emb_ln_b =
        model_add_param(m, "embeddings.LayerNorm.bias", 0, H, PGROUP_BASE, PROLE_NORM_BIAS, -1, -1);

    for (int l = 0; l < enc->L; l++) {
        aflo_layer *ly = &enc->layers[l];
        for (int mod = 0; mod < BERT_MODULE_COUNT; mod++) {
            aflo_linear *lin = &ly->lin[mod];
            lin->in = mod == BERT_OUTPUT ? I : H;
            lin->out = mod == BERT_INTERMEDIATE ? I : H;
            /* The intermediate's bias is added inside the GELU (bias_gelu_*). */
            lin->bias_by_caller = mod == BERT_INTERMEDIATE;
            const char *path = bert_modules[mod].path;
            snprintf(name, sizeof name, "encoder.layer.%d.%s.weight", l, path);
            lin->W = model_add_param(m, name, lin->out, lin->in, PGROUP_BASE, PROLE_WEIGHT, l, mod);
            snprintf(name, sizeof name, "encoder.layer.%d.%s.bias", l, path);
            lin->b = model_add_param(m, name, 0, lin->out, PGROUP_BASE, PROLE_BIAS, l, mod);
            if (mod == BERT_ATTN_OUT || mod == BERT_OUTPUT) {
                const char *ln = mod == BERT_ATTN_OUT ? "attention.output" : "output";
                aflo_param **w = mod == BERT_ATTN_OUT ? &ly->ln1_w : &ly->ln2_w;
                aflo_param **b = mod == BERT_ATTN_OUT ? &ly->ln1_b : &ly->ln2_b;
                snprintf(name, sizeof name, "encoder.layer.%d.%s.LayerNorm.weight", l, ln);
                *w = model_add_param(m, name, 0, H, PGROUP_BASE, PROLE_NORM_WEIGHT, l, -1);
                snprintf(name, sizeof name, "encoder.layer.%d.%s.LayerNorm.bias", l, ln);
                *b = model_add_param(m, name, 0, H, PGROUP_BASE, PROLE_NORM_BIAS, l, -1);
            }
            lin->scale = 1.0f;
            lin->rank = 0;
            if (!adapters || !(m->ac.targets & (1u << mod))) continue;
            lin->rank = r;
            snprintf(name, sizeof name, "encoder.layer.%d.%s.lora_A", l, path);
            lin->A = model_add_param(m, name, r, lin->in, PGROUP_ADAPTER, PROLE_A, l, mod);
            snprintf(name, sizeof name, "encoder.layer.%d.%s.lora_B", l, path);
            lin->B = model_add_param(m, name, lin->out, r, PGROUP_ADAPTER, PROLE_B, l, mod);
            if (vectors) {
                snprintf(name, sizeof name, "encoder.layer.%d.%s.s_d", l, path);
                lin->sd = model_add_param(m, name, 0, r, PGROUP_ADAPTER, PROLE_SD, l, mod);
                snprintf(name, sizeof name, "encoder.layer.%d.%s.s_b", l, path);
                lin->sb = model_add_param(m, name, 0, lin->out, PGROUP_ADAPTER, PROLE_SB, l, mod);
            } else {
                lin->scale = m->ac.alpha / (float)r;
            }
        }
    }
    enc->pool_w =
        model_add_param(m, "pooler.dense.weight", H, H, PGROUP_HEAD, PROLE_WEIGHT, -1, -1);
    enc->pool_b = model_add_param(m, "pooler.dense.bias", 0, H, PGROUP_HEAD, PROLE_BIAS, -1, -1);
    enc->cls_w = model_add_param(m, "classifier.weight", m->num_labels, H, PGROUP_HEAD,
                                 PROLE_WEIGHT, -1, -1);
    enc->cls_b =
        model_add_param(m, "classifier.bias", 0, m->num_labels, PGROUP_HEAD, PROLE_BIAS, -1, -1);
    return 0;
oom:
    return set_err(err, errlen, "out of memory building the model");
}

/* ---------------------------------------------------------------- activations */

/* One pass assigns pointers when base != NULL, else only counts floats.
 * Integer buffers are carved from the same arena (int32 and float share size). */
static size_t bert_layout(aflo_model *m, float *base, int Bm, int Sm) {
    bert_model *enc = m->impl;
    size_t off = 0;
    size_t N = (size_t)Bm * Sm, H = (size_t)enc->H, I = (size_t)enc->I, r = (size_t)m->ac.rank;
    size_t maxdim = H > I ? H : I;
#define TAKE(ptr, count)                                        \
    do {                                                        \
        if (base) (ptr) = base + off;                           \
        off += ((size_t)(count) + 15) & ~(size_t)15; /* 64 B */ \
    } while (0)
#define TAKE_INT(ptr, count)                         \
    do {                                             \
        if (base) (ptr) = (void *)(base + off);      \
        off += ((size_t)(count) + 15) & ~(size_t)15; \
    } while (0)
    TAKE(enc->emb_in, N * H);
    TAKE(enc->emb_mean, N);
    TAKE(enc->emb_rstd, N);
    TAKE(enc->x0, N * H);
    for (int l = 0; l < enc->L; l++) {
        layer_acts *a = base ? &enc->la[l] : NULL;
        layer_acts dummy;
        if (!a) a = &dummy;
        TAKE(a->q, N * H);
        TAKE(a->k, N * H);
        TAKE(a->v, N * H);
        TAKE(a->lse, (size_t)Bm * enc->nh * Sm); /* attention recomputes P from it */
        TAKE(a->ctx, N * H);
        TAKE(a->res1, N * H);
        TAKE(a->mean1, N);
        TAKE(a->rstd1, N);
        TAKE(a->h1, N * H);
        TAKE(a->inter, N * I);
        TAKE(a->res2, N * H);
        TAKE(a->mean2, N);
        TAKE(a->rstd2, N);
        TAKE(a->out, N * H);
        for (int mod = 0; mod < BERT_MODULE_COUNT; mod++) {
            const aflo_linear *lin = &enc->layers[l].lin[mod];
            a->ad[mod].h1 = a->ad[mod].h3 = NULL;
            if (!linear_adapted(lin)) continue;
            TAKE(a->ad[mod].h1, N * r);
            if (lin->sb && !linear_folds_sb(lin)) TAKE(a->ad[mod].h3, N * (size_t)lin->out);
        }
    }
    size_t BL = (size_t)Bm * m->num_labels;
    TAKE(enc->cls, (size_t)Bm * H);
    TAKE(enc->pooled, (size_t)Bm * H);
    TAKE(enc->pooled_drop, (size_t)Bm * H);
    TAKE(m->logits, BL);
    TAKE(enc->probs_cls, BL);
    TAKE(enc->scratch_big, N * I);
    TAKE(enc->scratch_h, N * H);
    TAKE(enc->scratch_out, N * maxdim);
    TAKE(enc->scratch_r, 2 * N * (r ? r : 1));
    TAKE(enc->scratch_or, 2 * maxdim * (r ? r : 1));
    attention_opts ao = {
        .batch = Bm, .heads = enc->nh, .kv_heads = enc->nh, .seq = Sm, .head_dim = enc->hd};
    enc->attn_threads = attention_max_threads();
    TAKE(enc->scratch_attn, attention_scratch_floats(&ao) * (size_t)enc->attn_threads);
    TAKE(enc->scratch_ln, resnorm_scratch_floats((int)N, (int)H)); /* LN parameter grads */
    TAKE(enc->d_cur, N * H);
    TAKE(enc->d_prev, N * H);
    TAKE(enc->d_tmp, N * H);
    TAKE(enc->d_h1, N * H);
    TAKE(enc->d_big, N * I);
    TAKE(enc->dq, N * H);
    TAKE(enc->dk, N * H);
    TAKE(enc->dv, N * H);
    TAKE(enc->dctx, N * H);
    TAKE_INT(enc->pos_ids, N);
    TAKE_INT(enc->type_ids, N);
    TAKE_INT(enc->ids, N);
    TAKE_INT(enc->mask, N);
    TAKE_INT(enc->labels, Bm);
    TAKE(enc->targets, Bm);
#undef TAKE
#undef TAKE_INT
    return off;
}

/* ---------------------------------------------------------------- forward */

static float drop_p(const aflo_model *m, float p) { return m->dropout ? p : 0.0f; }

static uint64_t dstream(int layer, int site, int sub) {
    return ((uint64_t)(layer + 1) << 24) | ((uint64_t)site << 20) | (uint64_t)sub;
}

static int load_batch(aflo_model *m, const aflo_batch *b, char *err, size_t errlen) {
    bert_model *enc = m->impl;
    if (b->batch < 1 || b->seq < 1 || b->batch > m->max_batch || b->seq > m->max_seq)
        return set_err(err, errlen, "batch %d x %d exceeds the reserved %d x %d", b->batch, b->seq,
                       m->max_batch, m->max_seq);
    enc->B = b->batch;
    enc->S = b->seq;
    enc->N = b->batch * b->seq;
    const aflo_config *c = &m->cfg;
    for (int bi = 0; bi < enc->B; bi++) {
        int running = 0;
        for (int s = 0; s < enc->S; s++) {
            int i = bi * enc->S + s;
            int32_t id = b->input_ids[i];
            int32_t tt = b->token_type_ids ? b->token_type_ids[i] : 0;
            if (id < 0 || id >= c->vocab_size)
                return set_err(err, errlen, "input id %d at [%d,%d] outside vocabulary of %d", id,
                               bi, s, c->vocab_size);
            if (tt < 0 || tt >= c->type_vocab_size)
                return set_err(err, errlen, "token type %d at [%d,%d] outside 0..%d", tt, bi, s,
                               c->type_vocab_size - 1);
            int pos;
            if (c->roberta_positions) {
                /* HF create_position_ids_from_input_ids: padding keeps pad_token_id. */
                bool real = id != c->pad_token_id;
                running += real;
                pos = real ? c->pad_token_id + running : c->pad_token_id;
            } else {
                pos = s;
            }
            if (pos >= c->max_position_embeddings)
                return set_err(err, errlen,
                               "sequence of %d tokens exceeds max_position_embeddings %d", enc->S,
                               c->max_position_embeddings);
            enc->ids[i] = id;
            enc->type_ids[i] = tt;
            enc->pos_ids[i] = pos;
            enc->mask[i] = b->attention_mask ? (b->attention_mask[i] != 0) : 1;
        }
        if (!enc->mask[bi * enc->S])
            return set_err(err, errlen, "sequence %d: first token is masked out", bi);
    }
    enc->has_labels = false;
    if (m->task == TASK_CLASSIFICATION && b->labels) {
        for (int bi = 0; bi < enc->B; bi++) {
            if (b->labels[bi] < 0 || b->labels[bi] >= m->num_labels)
                return set_err(err, errlen, "label %d of example %d outside 0..%d", b->labels[bi],
                               bi, m->num_labels - 1);
            enc->labels[bi] = b->labels[bi];
        }
        enc->has_labels = true;
    } else if (m->task == TASK_REGRESSION && b->targets) {
        memcpy(enc->targets, b->targets, (size_t)enc->B * sizeof(float));
        enc->has_labels = true;
    }
    return 0;
}

static aflo_linear_scratch lin_scratch(const bert_model *enc) {
    return (aflo_linear_scratch){.r2 = enc->scratch_r,
                                 .out = enc->scratch_out,
                                 .or2 = enc->scratch_or,
                                 .merge_ok = enc->training};
}

/* The attention of layer l over a B x S batch: each head (b, h) draws its
 * dropout mask from stream dstream(l, SITE_ATTN_PROBS, b*heads + h). */
static attention_opts attn_opts(const aflo_model *m, int B, int S, int l) {
    const bert_model *enc = m->impl;
    return (attention_opts){
        .batch = B,
        .heads = enc->nh,
        .kv_heads = enc->nh,
        .seq = S,
        .head_dim = enc->hd,
        .scale = 1.0f / sqrtf((float)enc->hd),
        .key_mask = enc->mask,
        .dropout = drop_p(m, m->cfg.attention_probs_dropout_prob),
        .dropout_seed = m->dropout_key,
        .dropout_stream = dstream(l, SITE_ATTN_PROBS, 0),
    };
}

static attention_rows rows(float *p, int ld) { return (attention_rows){p, ld}; }

/* BERT's self-attention: every head its own k/v, key padding mask, no
 * causality; scale 1/sqrt(head size), dropout on the probabilities. */
static void attention_fwd(aflo_model *m, int l, layer_acts *a) {
    bert_model *enc = m->impl;
    attention_opts o = attn_opts(m, enc->B, enc->S, l);
    int H = enc->H;
    attention_forward(&o, rows(a->ctx, H), a->lse, rows(a->q, H), rows(a->k, H), rows(a->v, H),
                      enc->scratch_attn, enc->attn_threads, &m->flops);
}

static void layer_forward(aflo_model *m, int l, const float *x) {
    bert_model *enc = m->impl;
    aflo_layer *ly = &enc->layers[l];
    layer_acts *a = &enc->la[l];
    int N = enc->N, H = enc->H, I = enc->I;
    float ph = drop_p(m, m->cfg.hidden_dropout_prob);
    float *qkv[3] = {a->q, a->k, a->v};
    for (int mod = BERT_QUERY; mod <= BERT_VALUE; mod++)
        linear_forward(&ly->lin[mod], qkv[mod], x, N, a->ad[mod], lin_scratch(enc), &m->flops);
    attention_fwd(m, l, a);

    linear_forward(&ly->lin[BERT_ATTN_OUT], enc->scratch_h, a->ctx, N, a->ad[BERT_ATTN_OUT],
                   lin_scratch(enc), &m->flops);
    /* res1 = x + dropout(ao), h1 = LN1(res1): one pass */
    resnorm_forward(a->h1, a->res1, a->mean1, a->rstd1, x, enc->scratch_h, ly->ln1_w->data,
                    ly->ln1_b->data, N, H, m->cfg.layer_norm_eps, ph, m->dropout_key,
                    dstream(l, SITE_ATTN_OUT, 0));

    linear_forward(&ly->lin[BERT_INTERMEDIATE], a->inter, a->h1, N, a->ad[BERT_INTERMEDIATE],
                   lin_scratch(enc), &m->flops);
    bias_gelu_forward(enc->scratch_big, a->inter, ly->lin[BERT_INTERMEDIATE].b->data, N, I);
    linear_forward(&ly->lin[BERT_OUTPUT], enc->scratch_h, enc->scratch_big, N, a->ad[BERT_OUTPUT],
                   lin_scratch(enc), &m->flops);
    resnorm_forward(a->out, a->res2, a->mean2, a->rstd2, a->h1, enc->scratch_h, ly->ln2_w->data,
                    ly->ln2_b->data, N, H, m->cfg.layer_norm_eps, ph, m->dropout_key,
                    dstream(l, SITE_FFN_OUT, 0));
}

static int bert_forward(aflo_model *m, const aflo_batch *b, float *loss, char *err, size_t errlen) {
    bert_model *enc = m->impl;
    if (load_batch(m, b, err, errlen) != 0) return -1;
    enc->training = m->training;
    int N = enc->N, H = enc->H, B = enc->B, L = m->num_labels;
    float ph = drop_p(m, m->cfg.hidden_dropout_prob);

    /* emb_in = word + position + type, x0 = dropout(LN(emb_in)): one pass */
    embnorm_forward(enc->x0, enc->emb_in, enc->emb_mean, enc->emb_rstd, enc->word_emb->data,
                    enc->ids, enc->pos_emb->data, enc->pos_ids, enc->type_emb->data, enc->type_ids,
                    enc->emb_ln_w->data, enc->emb_ln_b->data, N, H, m->cfg.layer_norm_eps, ph,
                    m->dropout_key, dstream(-1, SITE_EMB, 0));

    const float *x = enc->x0;
    for (int l = 0; l < enc->L; l++) {
        layer_forward(m, l, x);
        x = enc->la[l].out;
    }
    for (int bi = 0; bi < B; bi++)
        memcpy(enc->cls + (size_t)bi * H, x + (size_t)bi * enc->S * H, (size_t)H * sizeof(float));
    gemm(&m->flops, FLOP_FORWARD, false, true, B, H, H, 1.0f, enc->cls, H, enc->pool_w->data, H,
         0.0f, enc->pooled, H);
    bias_forward(enc->pooled, enc->pool_b->data, B, H);
    tanh_forward(enc->pooled, enc->pooled, (size_t)B * H);
    dropout_forward(enc->pooled_drop, enc->pooled, (size_t)B * H, ph, m->dropout_key,
                    dstream(-1, SITE_HEAD, 0));
    gemm(&m->flops, FLOP_FORWARD, false, true, B, L, H, 1.0f, enc->pooled_drop, H, enc->cls_w->data,
         H, 0.0f, m->logits, L);
    bias_forward(m->logits, enc->cls_b->data, B, L);

    if (enc->has_labels && loss) {
        *loss = m->task == TASK_CLASSIFICATION
                    ? cross_entropy_forward(enc->probs_cls, m->logits, enc->labels, B, L)
                    : mse_forward(m->logits, enc->targets, B);
    }
    return 0;
}

/* ---------------------------------------------------------------- backward */

static void attention_bwd(aflo_model *m, int l, layer_acts *a) {
    bert_model *enc = m->impl;
    attention_opts o = attn_opts(m, enc->B, enc->S, l);
    int H = enc->H;
    attention_backward(&o, rows(enc->dq, H), rows(enc->dk, H), rows(enc->dv, H), rows(enc->dctx, H),
                       rows(a->ctx, H), a->lse, rows(a->q, H), rows(a->k, H), rows(a->v, H),
                       enc->scratch_attn, enc->attn_threads, &m->flops);
}

static float *grad_of(const aflo_param *p) { return p->trainable ? p->grad : NULL; }

/* d_cur holds dLoss/d(out of layer l); leaves dLoss/d(input of layer l) in
 * d_prev when want_dx. */
static void layer_backward(aflo_model *m, int l, const float *x, bool want_dx) {
    bert_model *enc = m->impl;
    aflo_layer *ly = &enc->layers[l];
    layer_acts *a = &enc->la[l];
    int N = enc->N, H = enc->H, I = enc->I;
    float ph = drop_p(m, m->cfg.hidden_dropout_prob);
    /* Without dropout the branch's gradient is the residual's: no copy. */
    bool drop = ph > 0.0f;

    /* out = LN2(res2), res2 = h1 + dropout(o), in one pass: dres2 -> d_h1
     * (h1's gradient through the residual), do -> d_tmp */
    resnorm_backward(enc->d_h1, drop ? enc->d_tmp : NULL, grad_of(ly->ln2_w), grad_of(ly->ln2_b),
                     enc->scratch_ln, enc->d_cur, a->res2, a->mean2, a->rstd2, ly->ln2_w->data, N,
                     H, ph, m->dropout_key, dstream(l, SITE_FFN_OUT, 0));
    const float *d_o = drop ? enc->d_tmp : enc->d_h1;
    const aflo_param *bi = ly->lin[BERT_INTERMEDIATE].b;
    bias_gelu_forward(enc->scratch_big, a->inter, bi->data, N, I);
    linear_backward(&ly->lin[BERT_OUTPUT], enc->d_big, false, d_o, enc->scratch_big, N,
                    a->ad[BERT_OUTPUT], lin_scratch(enc), &m->flops);
    bias_gelu_backward(enc->d_big, grad_of(bi), a->inter, bi->data, enc->d_big, N, I);
    linear_backward(&ly->lin[BERT_INTERMEDIATE], enc->d_h1, true, enc->d_big, a->h1, N,
                    a->ad[BERT_INTERMEDIATE], lin_scratch(enc), &m->flops);

    /* h1 = LN1(res1), res1 = x + dropout(ao): dres1 -> d_prev (x's gradient
     * through the residual, when wanted), dao -> d_tmp */
    float *dres1 = want_dx ? enc->d_prev : (drop ? NULL : enc->d_tmp);
    resnorm_backward(dres1, drop ? enc->d_tmp : NULL, grad_of(ly->ln1_w), grad_of(ly->ln1_b),
                     enc->scratch_ln, enc->d_h1, a->res1, a->mean1, a->rstd1, ly->ln1_w->data, N, H,
                     ph, m->dropout_key, dstream(l, SITE_ATTN_OUT, 0));
    const float *d_ao = drop ? enc->d_tmp : dres1;
    linear_backward(&ly->lin[BERT_ATTN_OUT], enc->dctx, false, d_ao, a->ctx, N,
                    a->ad[BERT_ATTN_OUT], lin_scratch(enc), &m->flops);
    attention_bwd(m, l, a);
    float *dqkv[3] = {enc->dq, enc->dk, enc->dv};
    for (int mod = BERT_QUERY; mod <= BERT_VALUE; mod++)
        linear_backward(&ly->lin[mod], want_dx ? enc->d_prev : NULL, true, dqkv[mod], x, N,
                        a->ad[mod], lin_scratch(enc), &m->flops);
}

static void bert_backward(aflo_model *m, float loss_scale) {
    bert_model *enc = m->impl;
    if (!enc->has_labels) return;
    int N = enc->N, H = enc->H, B = enc->B, L = m->num_labels, S = enc->S;
    float ph = drop_p(m, m->cfg.hidden_dropout_prob);
    float *dlogits = enc->scratch_out; /* B*L floats, far below N*max(H,I) */
    if (m->task == TASK_CLASSIFICATION)
        cross_entropy_backward(dlogits, enc->probs_cls, enc->labels, B, L, loss_scale);
    else
        mse_backward(dlogits, m->logits, enc->targets, B, loss_scale);

    /* classifier */
    if (enc->cls_w->trainable)
        gemm(&m->flops, FLOP_BACKWARD_WEIGHT, true, false, L, H, B, 1.0f, dlogits, L,
             enc->pooled_drop, H, 1.0f, enc->cls_w->grad, H);
    if (enc->cls_b->trainable) bias_backward(enc->cls_b->grad, dlogits, B, L);
    float *dpooled = enc->scratch_h; /* B*H */
    gemm(&m->flops, FLOP_BACKWARD_INPUT, false, false, B, H, L, 1.0f, dlogits, L, enc->cls_w->data,
         H, 0.0f, dpooled, H);
    dropout_backward(dpooled, dpooled, (size_t)B * H, ph, m->dropout_key,
                     dstream(-1, SITE_HEAD, 0));
    tanh_backward(dpooled, enc->pooled, dpooled, (size_t)B * H);
    if (enc->pool_w->trainable)
        gemm(&m->flops, FLOP_BACKWARD_WEIGHT, true, false, H, H, B, 1.0f, dpooled, H, enc->cls, H,
             1.0f, enc->pool_w->grad, H);
    if (enc->pool_b->trainable) bias_backward(enc->pool_b->grad, dpooled, B, H);

    /* Does anything below the head train? */
    bool any_below = false;
    for (int i = 0; i < m->nparams && !any_below; i++)
        any_below = m->params[i].trainable && m->params[i].group != PGROUP_HEAD;
    if (!any_below) return;

    /* dcls = dpooled W_p, scattered to each sequence's first token. */
    float *dcls = enc->scratch_big; /* B*H floats */
    gemm(&m->flops, FLOP_BACKWARD_INPUT, false, false, B, H, H, 1.0f, dpooled, H, enc->pool_w->data,
         H, 0.0f, dcls, H);
    memset(enc->d_cur, 0, (size_t)N * H * sizeof(float));
    for (int bi = 0; bi < B; bi++)
        memcpy(enc->d_cur + (size_t)bi * S * H, dcls + (size_t)bi * H, (size_t)H * sizeof(float));

    bool emb_trains = enc->word_emb->trainable || enc->pos_emb->trainable ||
                      enc->type_emb->trainable || enc->emb_ln_w->trainable ||
                      enc->emb_ln_b->trainable;
    for (int l = enc->L - 1; l >= 0; l--) {
        const float *x = l > 0 ? enc->la[l - 1].out : enc->x0;
        /* Layer 0's input gradient is only wanted when the embeddings train. */
        bool want_dx = l > 0 || emb_trains;
        layer_backward(m, l, x, want_dx);
        if (!want_dx) return;
        float *t = enc->d_cur;
        enc->d_cur = enc->d_prev;
        enc->d_prev = t;
    }
    /* embeddings (full fine-tuning) */
    dropout_backward(enc->d_cur, enc->d_cur, (size_t)N * H, ph, m->dropout_key,
                     dstream(-1, SITE_EMB, 0));
    /* LayerNorm backward alone (no residual here) */
    resnorm_backward(enc->d_tmp, NULL, grad_of(enc->emb_ln_w), grad_of(enc->emb_ln_b),
                     enc->scratch_ln, enc->d_cur, enc->emb_in, enc->emb_mean, enc->emb_rstd,
                     enc->emb_ln_w->data, N, H, 0.0f, 0, 0);
    if (enc->word_emb->trainable)
        embedding_backward(enc->word_emb->grad, enc->ids, enc->d_tmp, N, H);
    if (enc->pos_emb->trainable)
        embedding_backward(enc->pos_emb->grad, enc->pos_ids, enc->d_tmp, N, H);
    if (enc->type_emb->trainable)
        embedding_backward(enc->type_emb->grad, enc->type_ids, enc->d_tmp, N, H);
}
static void bert_destroy(aflo_model *m) {
    bert_model *enc = m->impl;
    if (!enc) return;
    free(enc->layers);
    free(enc->la);
    free(enc);
    m->impl = NULL;
}

/* ---------------------------------------------------------------- the family */

static void bert_config_finish(aflo_config *c, const aflo_family_variant *v) {
    c->roberta_positions = (v->flags & BERT_ROBERTA_POSITIONS) != 0;
}

/* RoBERTa's positions run pad_token_id + 1 .. pad_token_id + length (see
 * load_batch), BERT's 0 .. length - 1. */
static int bert_max_tokens(const aflo_config *c) {
    return c->max_position_embeddings - (c->roberta_positions ? c->pad_token_id + 1 : 0);
}

/* BertForSequenceClassification keeps the pooler inside the model
 * (bert.pooler.dense) and the classifier beside it (classifier). */
static const aflo_name_map bert_head_names[] = {
    {"classifier.", "classifier."},
    {NULL, NULL},
};
/* RobertaClassificationHead: classifier.dense -> tanh -> classifier.out_proj
 * is the engine's pooler + classifier; RobertaModel's own pooler is unused
 * by the task classes. */
static const aflo_name_map roberta_head_names[] = {
    {"pooler.dense.", "classifier.dense."},
    {"classifier.", "classifier.out_proj."},
    {NULL, NULL},
};

/* The model types this family reads. XLM-RoBERTa and CamemBERT are RoBERTa
 * with another vocabulary; their task classes call the encoder "roberta". */
static const aflo_family_variant bert_variants[] = {
    {"bert", "Bert", "BertForSequenceClassification", "bert.", bert_head_names,
     "[\"classifier\", \"pooler\"]", 0},
    {"roberta", "Roberta", "RobertaForSequenceClassification", "roberta.", roberta_head_names,
     "[\"classifier\"]", BERT_ROBERTA_POSITIONS},
    {"xlm-roberta", "XLMRoberta", "XLMRobertaForSequenceClassification", "roberta.",
     roberta_head_names, "[\"classifier\"]", BERT_ROBERTA_POSITIONS},
    {"camembert", "Camembert", "CamembertForSequenceClassification", "roberta.", roberta_head_names,
     "[\"classifier\"]", BERT_ROBERTA_POSITIONS},
};

/* Checkpoint tensors sequence classification does not use: buffers, and
 * the pre-training heads of BERT (cls.*) and RoBERTa (lm_head.*). */
static const char *const bert_hf_ignored[] = {
    "embeddings.position_ids",
    "embeddings.token_type_ids",
    "cls.predictions.",
    "cls.seq_relationship.",
    "lm_head.",
    NULL,
};

/* The head: pooled = tanh(pooler.dense(x[CLS])), logits = classifier(pooled). */
static const char *const bert_head_layers[] = {"pooler.dense", "classifier", NULL};

const aflo_family bert_family = {
    .name = "bert",
    .description = "BERT/RoBERTa encoder",
    .variants = bert_variants,
    .n_variants = (int)(sizeof bert_variants / sizeof *bert_variants),
    .modules = bert_modules,
    .n_modules = BERT_MODULE_COUNT,
    .block_prefix = "encoder.layer.",
    .hf_ignored = bert_hf_ignored,
    .head_layers = bert_head_layers,
    .tasks = (1u << TASK_CLASSIFICATION) | (1u << TASK_REGRESSION),
    .hidden_act = "gelu",
    .config_finish = bert_config_finish,
    .max_tokens = bert_max_tokens,
    .max_params = bert_max_params,
    .build = bert_build,
    .destroy = bert_destroy,
    .layout = bert_layout,
    .forward = bert_forward,
    .backward = bert_backward,
};
