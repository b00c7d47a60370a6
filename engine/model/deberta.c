/* deberta.c — the DeBERTa family: DebertaV2ForSequenceClassification
 * (DeBERTa-v3 configs and v2-style ones that differ only in switches) with
 * adapters: tensor declaration, activation layout, forward, backward and the
 * family's descriptor. The facts are docs/deberta.md.
 *
 * Embeddings: word (+ absolute positions when position_biased_input, + token
 * types when type_vocab_size > 0), LayerNorm (eps from config, 1e-7 in v3),
 * dropout. transformers also multiplies each embedding by its token's mask;
 * padding rows never reach a real token (attention masks them both ways) or
 * the loss, so that product is left out.
 *
 * Relative embeddings: R = LayerNorm_enc(rel_embeddings) (norm_rel_ebd
 * "layer_norm"; else R = rel_embeddings), 2*span rows (span =
 * position_buckets, or max_relative_positions without buckets), once per
 * forward and shared by every layer. Layer l's positional rows are
 * kr = key_proj(R), qr = query_proj(R) with share_att_key (the layer's own
 * projections, bias and adapter included, as PEFT's wrapped modules compute
 * them), else its pos_key_proj / pos_query_proj; R gets hidden dropout first
 * (pos_dropout).
 *
 * A block is BERT's post-LN block with disentangled attention
 * (deberta_attn.h) in place of plain attention:
 *   q,k,v  = query/key/value_proj(x)                         (adapted)
 *   ctx    = disentangled attention(q, k, v, qr, kr)
 *   h1     = LN1(x + dropout(attention.output.dense(ctx)))   (adapted)
 *   out    = LN2(h1 + dropout(output.dense(gelu(intermediate.dense(h1)))))
 * Head (ContextPooler): pooled = gelu(pooler.dense(out[CLS])) -> dropout
 * (hidden_dropout_prob) -> classifier.
 *
 * Backward follows the same steps in reverse; the positional rows' gradients
 * (dkr, dqr) go through their projections (weights, adapters) and, when
 * rel_embeddings or its LayerNorm train, are summed over the layers into
 * dR and taken through the LayerNorm into rel_embeddings. */
#include "model/deberta.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"
#include "model/attention.h"
#include "model/deberta_attn.h"
#include "model/linear.h"
#include "model/model_internal.h"
#include "model/ops.h"
#include "model/resnorm.h"

/* Dropout sites, to give every dropout call its own mask stream. */
enum { SITE_EMB, SITE_ATTN_PROBS, SITE_ATTN_OUT, SITE_FFN_OUT, SITE_HEAD, SITE_REL };

/* The positional projections of a layer: [0] gives kr, [1] qr. */
enum { POS_KEY, POS_QUERY };

typedef struct {
    aflo_linear lin[DEBERTA_MODULE_COUNT];
    aflo_linear pos_lin[2]; /* without share_att_key: pos_key_proj, pos_query_proj */
    aflo_param *ln1_w, *ln1_b, *ln2_w, *ln2_b;
} deberta_layer;

typedef struct {
    float *q, *k, *v, *probs, *ctx, *res1, *mean1, *rstd1, *h1, *inter, *res2, *mean2, *rstd2, *out;
    float *kr, *qr; /* 2*span x H */
    aflo_linear_acts ad[DEBERTA_MODULE_COUNT];
    aflo_linear_acts ad_pos[2]; /* the positional path through an adapted key/query_proj */
} layer_acts;

typedef struct {
    int H, I, nh, hd, L, span, P; /* P = 2*span positional rows */
    unsigned pos;                 /* CONFIG_POS_* of the config */
    float scale;

    aflo_param *word_emb, *pos_emb, *type_emb, *emb_ln_w, *emb_ln_b;
    aflo_param *rel_emb, *rel_ln_w, *rel_ln_b;
    deberta_layer *layers;
    aflo_param *pool_w, *pool_b, *cls_w, *cls_b;

    /* activations: pointers into the model's arena (deberta_layout) */
    float *emb_in, *emb_mean, *emb_rstd, *x0;
    float *rel, *rel_mean, *rel_rstd; /* R (rel_ln when normalised, else the weight) */
    float *rel_ln, *rel_drop, *d_rel, *d_reltmp, *dkr, *dqr;
    layer_acts *la;
    float *cls, *pooled_pre, *pooled, *pooled_drop, *probs_cls;
    float *scratch_big, *scratch_h, *scratch_out, *scratch_r, *scratch_or, *scratch_ln;
    float *scratch_attn;
    int attn_threads;
    float *d_cur, *d_prev, *d_tmp, *d_h1, *d_big, *dq, *dk, *dv, *dctx;
    int32_t *pos_ids, *type_ids, *ids, *labels, *rel_idx;
    uint8_t *mask;
    float *targets;

    /* the current batch */
    int B, S, N;
    bool has_labels;
    bool training;
} deberta_model;

/* ---------------------------------------------------------------- tensor table */

/* The adapted linear layers of a block, in forward order, by the names the
 * AFLoRA authors' DeBERTa runs target (query_proj, key_proj, value_proj,
 * output.dense, intermediate.dense) and attention.output.dense. */
static const aflo_module_info deberta_modules[DEBERTA_MODULE_COUNT] = {
    [DEBERTA_QUERY] = {"attention.self.query_proj", "query_proj", "query", false},
    [DEBERTA_KEY] = {"attention.self.key_proj", "key_proj", "key", false},
    [DEBERTA_VALUE] = {"attention.self.value_proj", "value_proj", "value", false},
    [DEBERTA_ATTN_OUT] = {"attention.output.dense", "attention.output.dense", "attention output",
                          false},
    [DEBERTA_INTERMEDIATE] = {"intermediate.dense", "intermediate.dense", "intermediate", true},
    [DEBERTA_OUTPUT] = {"output.dense", "output.dense", "output", true},
};

/* The positional rows: position_buckets when bucketed, else
 * max_relative_positions (< 1: max_position_embeddings), each side. */
static int rel_span(const aflo_config *c) {
    if (c->position_buckets > 0) return c->position_buckets;
    return c->max_relative_positions > 0 ? c->max_relative_positions : c->max_position_embeddings;
}
static int rel_max_position(const aflo_config *c) {
    return c->max_relative_positions > 0 ? c->max_relative_positions : c->max_position_embeddings;
}

/* Embeddings five, relative embeddings three, per block six linear layers
 * of up to six tensors, two positional projections of two, two LayerNorms;
 * head four. */
static int deberta_max_params(const aflo_config *c) {
    return 5 + 3 + c->num_hidden_layers * (DEBERTA_MODULE_COUNT * 6 + 4 + 4) + 4;
}

static int deberta_build(aflo_model *m, char *err, size_t errlen) {
    const aflo_config *c = &m->cfg;
    deberta_model *e = calloc(1, sizeof *e);
    if (!e) goto oom;
    m->impl = e;
    e->H = c->hidden_size;
    e->I = c->intermediate_size;
    e->nh = c->num_attention_heads;
    e->hd = e->H / e->nh;
    e->L = c->num_hidden_layers;
    e->pos = c->relative_attention ? c->pos_att_type : 0;
    e->span = rel_span(c);
    e->P = c->relative_attention ? 2 * e->span : 0;
    int terms =
        ((c->pos_att_type & CONFIG_POS_C2P) != 0) + ((c->pos_att_type & CONFIG_POS_P2C) != 0);
    e->scale = 1.0f / sqrtf((float)e->hd * (float)(1 + terms));
    e->layers = calloc((size_t)e->L, sizeof *e->layers);
    e->la = calloc((size_t)e->L, sizeof *e->la);
    if (!e->layers || !e->la) goto oom;

    int H = e->H, I = e->I, V = c->vocab_size;
    char name[96];
    bool adapters = m->ac.method != METHOD_FULL;
    bool vectors = m->ac.method == METHOD_AFLORA || m->ac.method == METHOD_ELORA;
    int r = m->ac.rank;

    e->word_emb = model_add_param(m, "embeddings.word_embeddings.weight", V, H, PGROUP_BASE,
                                  PROLE_EMBEDDING, -1, -1);
    if (c->position_biased_input)
        e->pos_emb =
            model_add_param(m, "embeddings.position_embeddings.weight", c->max_position_embeddings,
                            H, PGROUP_BASE, PROLE_EMBEDDING, -1, -1);
    if (c->type_vocab_size > 0)
        e->type_emb = model_add_param(m, "embeddings.token_type_embeddings.weight",
                                      c->type_vocab_size, H, PGROUP_BASE, PROLE_EMBEDDING, -1, -1);
    e->emb_ln_w = model_add_param(m, "embeddings.LayerNorm.weight", 0, H, PGROUP_BASE,
                                  PROLE_NORM_WEIGHT, -1, -1);
    e->emb_ln_b =
        model_add_param(m, "embeddings.LayerNorm.bias", 0, H, PGROUP_BASE, PROLE_NORM_BIAS, -1, -1);

    for (int l = 0; l < e->L; l++) {
        deberta_layer *ly = &e->layers[l];
        for (int mod = 0; mod < DEBERTA_MODULE_COUNT; mod++) {
            aflo_linear *lin = &ly->lin[mod];
            lin->in = mod == DEBERTA_OUTPUT ? I : H;
            lin->out = mod == DEBERTA_INTERMEDIATE ? I : H;
            lin->bias_by_caller = mod == DEBERTA_INTERMEDIATE; /* added inside the GELU */
            const char *path = deberta_modules[mod].path;
            snprintf(name, sizeof name, "encoder.layer.%d.%s.weight", l, path);
            lin->W = model_add_param(m, name, lin->out, lin->in, PGROUP_BASE, PROLE_WEIGHT, l, mod);
            snprintf(name, sizeof name, "encoder.layer.%d.%s.bias", l, path);
            lin->b = model_add_param(m, name, 0, lin->out, PGROUP_BASE, PROLE_BIAS, l, mod);
            if (mod == DEBERTA_ATTN_OUT || mod == DEBERTA_OUTPUT) {
                const char *ln = mod == DEBERTA_ATTN_OUT ? "attention.output" : "output";
                aflo_param **w = mod == DEBERTA_ATTN_OUT ? &ly->ln1_w : &ly->ln2_w;
                aflo_param **b = mod == DEBERTA_ATTN_OUT ? &ly->ln1_b : &ly->ln2_b;
                snprintf(name, sizeof name, "encoder.layer.%d.%s.LayerNorm.weight", l, ln);
                *w = model_add_param(m, name, 0, H, PGROUP_BASE, PROLE_NORM_WEIGHT, l, -1);
                snprintf(name, sizeof name, "encoder.layer.%d.%s.LayerNorm.bias", l, ln);
                *b = model_add_param(m, name, 0, H, PGROUP_BASE, PROLE_NORM_BIAS, l, -1);
            }
            lin->scale = 1.0f;
            lin->rank = 0;
            if (adapters && (m->ac.targets & (1u << mod))) {
                lin->rank = r;
                snprintf(name, sizeof name, "encoder.layer.%d.%s.lora_A", l, path);
                lin->A = model_add_param(m, name, r, lin->in, PGROUP_ADAPTER, PROLE_A, l, mod);
                snprintf(name, sizeof name, "encoder.layer.%d.%s.lora_B", l, path);
                lin->B = model_add_param(m, name, lin->out, r, PGROUP_ADAPTER, PROLE_B, l, mod);
                if (vectors) {
                    snprintf(name, sizeof name, "encoder.layer.%d.%s.s_d", l, path);
                    lin->sd = model_add_param(m, name, 0, r, PGROUP_ADAPTER, PROLE_SD, l, mod);
                    snprintf(name, sizeof name, "encoder.layer.%d.%s.s_b", l, path);
                    lin->sb =
                        model_add_param(m, name, 0, lin->out, PGROUP_ADAPTER, PROLE_SB, l, mod);
                } else {
                    lin->scale = m->ac.alpha / (float)r;
                }
            }
            /* v2's own positional projections sit after value_proj, as
             * transformers declares them */
            if (mod != DEBERTA_VALUE || c->share_att_key || !c->relative_attention) continue;
            static const char *const pos_paths[2] = {"attention.self.pos_key_proj",
                                                     "attention.self.pos_query_proj"};
            static const unsigned pos_bits[2] = {CONFIG_POS_C2P, CONFIG_POS_P2C};
            for (int p = 0; p < 2; p++) {
                if (!(c->pos_att_type & pos_bits[p])) continue;
                aflo_linear *pl = &ly->pos_lin[p];
                pl->in = pl->out = H;
                pl->scale = 1.0f;
                snprintf(name, sizeof name, "encoder.layer.%d.%s.weight", l, pos_paths[p]);
                pl->W = model_add_param(m, name, H, H, PGROUP_BASE, PROLE_WEIGHT, l, -1);
                snprintf(name, sizeof name, "encoder.layer.%d.%s.bias", l, pos_paths[p]);
                pl->b = model_add_param(m, name, 0, H, PGROUP_BASE, PROLE_BIAS, l, -1);
            }
        }
    }
    if (c->relative_attention) {
        e->rel_emb = model_add_param(m, "encoder.rel_embeddings.weight", e->P, H, PGROUP_BASE,
                                     PROLE_EMBEDDING, -1, -1);
        if (c->norm_rel_ebd_layer_norm) {
            e->rel_ln_w = model_add_param(m, "encoder.LayerNorm.weight", 0, H, PGROUP_BASE,
                                          PROLE_NORM_WEIGHT, -1, -1);
            e->rel_ln_b = model_add_param(m, "encoder.LayerNorm.bias", 0, H, PGROUP_BASE,
                                          PROLE_NORM_BIAS, -1, -1);
        }
    }
    e->pool_w = model_add_param(m, "pooler.dense.weight", H, H, PGROUP_HEAD, PROLE_WEIGHT, -1, -1);
    e->pool_b = model_add_param(m, "pooler.dense.bias", 0, H, PGROUP_HEAD, PROLE_BIAS, -1, -1);
    e->cls_w = model_add_param(m, "classifier.weight", m->num_labels, H, PGROUP_HEAD, PROLE_WEIGHT,
                               -1, -1);
    e->cls_b =
        model_add_param(m, "classifier.bias", 0, m->num_labels, PGROUP_HEAD, PROLE_BIAS, -1, -1);
    return 0;
oom:
    return set_err(err, errlen, "out of memory building the model");
}

/* The linear giving layer l's kr (POS_KEY) or qr (POS_QUERY), NULL when
 * that term is off. */
static aflo_linear *pos_linear(deberta_model *e, const aflo_config *c, int l, int which) {
    unsigned bit = which == POS_KEY ? CONFIG_POS_C2P : CONFIG_POS_P2C;
    if (!(e->pos & bit)) return NULL;
    deberta_layer *ly = &e->layers[l];
    if (c->share_att_key) return &ly->lin[which == POS_KEY ? DEBERTA_KEY : DEBERTA_QUERY];
    return &ly->pos_lin[which];
}

/* ---------------------------------------------------------------- activations */

static size_t deberta_layout(aflo_model *m, float *base, int Bm, int Sm) {
    deberta_model *e = m->impl;
    size_t off = 0;
    size_t N = (size_t)Bm * Sm, H = (size_t)e->H, I = (size_t)e->I, r = (size_t)m->ac.rank;
    size_t P = (size_t)e->P, maxdim = H > I ? H : I;
    size_t rows = N > P ? N : P; /* the linear scratch serves both paths */
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
    deberta_attn_opts ao = {.batch = Bm, .heads = e->nh, .seq = Sm, .head_dim = e->hd};
    TAKE(e->emb_in, N * H);
    TAKE(e->emb_mean, N);
    TAKE(e->emb_rstd, N);
    TAKE(e->x0, N * H);
    TAKE(e->rel_ln, P * H);
    TAKE(e->rel_mean, P);
    TAKE(e->rel_rstd, P);
    TAKE(e->rel_drop, P * H);
    TAKE(e->d_rel, P * H);
    TAKE(e->d_reltmp, P * H);
    TAKE(e->dkr, P * H);
    TAKE(e->dqr, P * H);
    for (int l = 0; l < e->L; l++) {
        layer_acts dummy, *a = base ? &e->la[l] : &dummy;
        TAKE(a->q, N * H);
        TAKE(a->k, N * H);
        TAKE(a->v, N * H);
        TAKE(a->probs, deberta_attn_probs_floats(&ao));
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
        a->kr = a->qr = NULL;
        if (pos_linear(e, &m->cfg, l, POS_KEY)) TAKE(a->kr, P * H);
        if (pos_linear(e, &m->cfg, l, POS_QUERY)) TAKE(a->qr, P * H);
        for (int mod = 0; mod < DEBERTA_MODULE_COUNT; mod++) {
            const aflo_linear *lin = &e->layers[l].lin[mod];
            a->ad[mod].h1 = a->ad[mod].h3 = NULL;
            if (!linear_adapted(lin)) continue;
            TAKE(a->ad[mod].h1, N * r);
            if (lin->sb && !linear_folds_sb(lin)) TAKE(a->ad[mod].h3, N * (size_t)lin->out);
        }
        for (int p = 0; p < 2; p++) {
            const aflo_linear *lin = pos_linear(e, &m->cfg, l, p);
            a->ad_pos[p].h1 = a->ad_pos[p].h3 = NULL;
            if (!lin || !linear_adapted(lin)) continue;
            TAKE(a->ad_pos[p].h1, P * r);
            if (lin->sb && !linear_folds_sb(lin)) TAKE(a->ad_pos[p].h3, P * (size_t)lin->out);
        }
    }
    size_t BL = (size_t)Bm * m->num_labels;
    TAKE(e->cls, (size_t)Bm * H);
    TAKE(e->pooled_pre, (size_t)Bm * H);
    TAKE(e->pooled, (size_t)Bm * H);
    TAKE(e->pooled_drop, (size_t)Bm * H);
    TAKE(m->logits, BL);
    TAKE(e->probs_cls, BL);
    TAKE(e->scratch_big, N * I);
    TAKE(e->scratch_h, N * H);
    TAKE(e->scratch_out, rows * maxdim);
    TAKE(e->scratch_r, 2 * rows * (r ? r : 1));
    TAKE(e->scratch_or, 2 * maxdim * (r ? r : 1));
    e->attn_threads = attention_max_threads();
    TAKE(e->scratch_attn, deberta_attn_scratch_floats(&ao) * (size_t)e->attn_threads);
    size_t ln_rows = N > P ? N : P;
    TAKE(e->scratch_ln, resnorm_scratch_floats((int)ln_rows, (int)H));
    TAKE(e->d_cur, N * H);
    TAKE(e->d_prev, N * H);
    TAKE(e->d_tmp, N * H);
    TAKE(e->d_h1, N * H);
    TAKE(e->d_big, N * I);
    TAKE(e->dq, N * H);
    TAKE(e->dk, N * H);
    TAKE(e->dv, N * H);
    TAKE(e->dctx, N * H);
    TAKE_INT(e->pos_ids, N);
    TAKE_INT(e->type_ids, N);
    TAKE_INT(e->ids, N);
    TAKE_INT(e->mask, N);
    TAKE_INT(e->labels, Bm);
    TAKE_INT(e->rel_idx, (size_t)Sm * Sm);
    TAKE(e->targets, Bm);
#undef TAKE
#undef TAKE_INT
    return off;
}

/* ---------------------------------------------------------------- forward */

static float drop_p(const aflo_model *m, float p) { return m->dropout ? p : 0.0f; }

static uint64_t dstream(int layer, int site, int sub) {
    return ((uint64_t)(layer + 1) << 24) | ((uint64_t)site << 20) | (uint64_t)sub;
}

static float *grad_of(const aflo_param *p) { return p && p->trainable ? p->grad : NULL; }
static bool trains(const aflo_param *p) { return p && p->trainable; }

static int load_batch(aflo_model *m, const aflo_batch *b, char *err, size_t errlen) {
    deberta_model *e = m->impl;
    if (b->batch < 1 || b->seq < 1 || b->batch > m->max_batch || b->seq > m->max_seq)
        return set_err(err, errlen, "batch %d x %d exceeds the reserved %d x %d", b->batch, b->seq,
                       m->max_batch, m->max_seq);
    const aflo_config *c = &m->cfg;
    if (c->position_biased_input && b->seq > c->max_position_embeddings)
        return set_err(err, errlen, "sequence of %d tokens exceeds max_position_embeddings %d",
                       b->seq, c->max_position_embeddings);
    e->B = b->batch;
    e->S = b->seq;
    e->N = b->batch * b->seq;
    for (int bi = 0; bi < e->B; bi++) {
        for (int s = 0; s < e->S; s++) {
            int i = bi * e->S + s;
            int32_t id = b->input_ids[i];
            /* token types are ignored without a token-type table (v3) */
            int32_t tt = b->token_type_ids && c->type_vocab_size > 0 ? b->token_type_ids[i] : 0;
            if (id < 0 || id >= c->vocab_size)
                return set_err(err, errlen, "input id %d at [%d,%d] outside vocabulary of %d", id,
                               bi, s, c->vocab_size);
            if (c->type_vocab_size > 0 && (tt < 0 || tt >= c->type_vocab_size))
                return set_err(err, errlen, "token type %d at [%d,%d] outside 0..%d", tt, bi, s,
                               c->type_vocab_size - 1);
            e->ids[i] = id;
            e->type_ids[i] = tt;
            e->pos_ids[i] = s;
            e->mask[i] = b->attention_mask ? (b->attention_mask[i] != 0) : 1;
        }
        if (!e->mask[bi * e->S])
            return set_err(err, errlen, "sequence %d: first token is masked out", bi);
    }
    if (e->P)
        deberta_rel_index(e->rel_idx, e->S, e->span, c->position_buckets, rel_max_position(c));
    else
        memset(e->rel_idx, 0, (size_t)e->S * e->S * sizeof *e->rel_idx);
    e->has_labels = false;
    if (m->task == TASK_CLASSIFICATION && b->labels) {
        for (int bi = 0; bi < e->B; bi++) {
            if (b->labels[bi] < 0 || b->labels[bi] >= m->num_labels)
                return set_err(err, errlen, "label %d of example %d outside 0..%d", b->labels[bi],
                               bi, m->num_labels - 1);
            e->labels[bi] = b->labels[bi];
        }
        e->has_labels = true;
    } else if (m->task == TASK_REGRESSION && b->targets) {
        memcpy(e->targets, b->targets, (size_t)e->B * sizeof(float));
        e->has_labels = true;
    }
    return 0;
}

static aflo_linear_scratch lin_scratch(const deberta_model *e) {
    return (aflo_linear_scratch){
        .r2 = e->scratch_r, .out = e->scratch_out, .or2 = e->scratch_or, .merge_ok = e->training};
}

static deberta_attn_opts attn_opts(const aflo_model *m, int l) {
    const deberta_model *e = m->impl;
    return (deberta_attn_opts){
        .batch = e->B,
        .heads = e->nh,
        .seq = e->S,
        .head_dim = e->hd,
        .ld = e->H,
        .span = e->span,
        .pos = e->pos,
        .scale = e->scale,
        .rel_idx = e->rel_idx,
        .mask = e->mask,
        .dropout = drop_p(m, m->cfg.attention_probs_dropout_prob),
        .dropout_seed = m->dropout_key,
        .dropout_stream = dstream(l, SITE_ATTN_PROBS, 0),
    };
}

/* R as layer l sees it: with dropout, pos_dropout's mask of this layer. */
static const float *rel_input(aflo_model *m, int l) {
    deberta_model *e = m->impl;
    float p = drop_p(m, m->cfg.hidden_dropout_prob);
    if (p <= 0.0f) return e->rel;
    dropout_forward(e->rel_drop, e->rel, (size_t)e->P * e->H, p, m->dropout_key,
                    dstream(l, SITE_REL, 0));
    return e->rel_drop;
}

static void layer_forward(aflo_model *m, int l, const float *x) {
    deberta_model *e = m->impl;
    deberta_layer *ly = &e->layers[l];
    layer_acts *a = &e->la[l];
    int N = e->N, H = e->H, I = e->I;
    float ph = drop_p(m, m->cfg.hidden_dropout_prob);
    float *qkv[3] = {a->q, a->k, a->v};
    for (int mod = DEBERTA_QUERY; mod <= DEBERTA_VALUE; mod++)
        linear_forward(&ly->lin[mod], qkv[mod], x, N, a->ad[mod], lin_scratch(e), &m->flops);
    if (e->pos) {
        const float *R = rel_input(m, l);
        float *outs[2] = {a->kr, a->qr};
        for (int p = 0; p < 2; p++) {
            aflo_linear *lin = pos_linear(e, &m->cfg, l, p);
            if (lin) linear_forward(lin, outs[p], R, e->P, a->ad_pos[p], lin_scratch(e), &m->flops);
        }
    }
    deberta_attn_opts o = attn_opts(m, l);
    deberta_attn_forward(&o, a->ctx, a->probs, a->q, a->k, a->v, a->qr, a->kr, e->scratch_attn,
                         e->attn_threads, &m->flops);

    linear_forward(&ly->lin[DEBERTA_ATTN_OUT], e->scratch_h, a->ctx, N, a->ad[DEBERTA_ATTN_OUT],
                   lin_scratch(e), &m->flops);
    resnorm_forward(a->h1, a->res1, a->mean1, a->rstd1, x, e->scratch_h, ly->ln1_w->data,
                    ly->ln1_b->data, N, H, m->cfg.layer_norm_eps, ph, m->dropout_key,
                    dstream(l, SITE_ATTN_OUT, 0));
    linear_forward(&ly->lin[DEBERTA_INTERMEDIATE], a->inter, a->h1, N, a->ad[DEBERTA_INTERMEDIATE],
                   lin_scratch(e), &m->flops);
    bias_gelu_forward(e->scratch_big, a->inter, ly->lin[DEBERTA_INTERMEDIATE].b->data, N, I);
    linear_forward(&ly->lin[DEBERTA_OUTPUT], e->scratch_h, e->scratch_big, N, a->ad[DEBERTA_OUTPUT],
                   lin_scratch(e), &m->flops);
    resnorm_forward(a->out, a->res2, a->mean2, a->rstd2, a->h1, e->scratch_h, ly->ln2_w->data,
                    ly->ln2_b->data, N, H, m->cfg.layer_norm_eps, ph, m->dropout_key,
                    dstream(l, SITE_FFN_OUT, 0));
}

static int deberta_forward(aflo_model *m, const aflo_batch *b, float *loss, char *err,
                           size_t errlen) {
    deberta_model *e = m->impl;
    if (load_batch(m, b, err, errlen) != 0) return -1;
    e->training = m->training;
    int N = e->N, H = e->H, B = e->B, L = m->num_labels;
    float ph = drop_p(m, m->cfg.hidden_dropout_prob);

    embedding_forward(e->emb_in, e->ids, e->word_emb->data, N, H, 0);
    if (e->pos_emb) embedding_forward(e->emb_in, e->pos_ids, e->pos_emb->data, N, H, 1);
    if (e->type_emb) embedding_forward(e->emb_in, e->type_ids, e->type_emb->data, N, H, 1);
    layernorm_forward(e->x0, e->emb_mean, e->emb_rstd, e->emb_in, e->emb_ln_w->data,
                      e->emb_ln_b->data, N, H, m->cfg.layer_norm_eps);
    dropout_forward(e->x0, e->x0, (size_t)N * H, ph, m->dropout_key, dstream(-1, SITE_EMB, 0));

    if (e->P) {
        if (e->rel_ln_w) {
            layernorm_forward(e->rel_ln, e->rel_mean, e->rel_rstd, e->rel_emb->data,
                              e->rel_ln_w->data, e->rel_ln_b->data, e->P, H, m->cfg.layer_norm_eps);
            e->rel = e->rel_ln;
        } else {
            e->rel = e->rel_emb->data;
        }
    }

    const float *x = e->x0;
    for (int l = 0; l < e->L; l++) {
        layer_forward(m, l, x);
        x = e->la[l].out;
    }
    /* ContextPooler: gelu(dense(x[CLS])) (its own dropout is pooler_dropout, 0) */
    for (int bi = 0; bi < B; bi++)
        memcpy(e->cls + (size_t)bi * H, x + (size_t)bi * e->S * H, (size_t)H * sizeof(float));
    gemm(&m->flops, FLOP_FORWARD, false, true, B, H, H, 1.0f, e->cls, H, e->pool_w->data, H, 0.0f,
         e->pooled_pre, H);
    bias_forward(e->pooled_pre, e->pool_b->data, B, H);
    gelu_forward(e->pooled, e->pooled_pre, (size_t)B * H);
    dropout_forward(e->pooled_drop, e->pooled, (size_t)B * H, ph, m->dropout_key,
                    dstream(-1, SITE_HEAD, 0));
    gemm(&m->flops, FLOP_FORWARD, false, true, B, L, H, 1.0f, e->pooled_drop, H, e->cls_w->data, H,
         0.0f, m->logits, L);
    bias_forward(m->logits, e->cls_b->data, B, L);

    if (e->has_labels && loss)
        *loss = m->task == TASK_CLASSIFICATION
                    ? cross_entropy_forward(e->probs_cls, m->logits, e->labels, B, L)
                    : mse_forward(m->logits, e->targets, B);
    return 0;
}

/* ---------------------------------------------------------------- backward */

/* Whether R's gradient is wanted: rel_embeddings or its LayerNorm trains. */
static bool rel_trains(const deberta_model *e) {
    return trains(e->rel_emb) || trains(e->rel_ln_w) || trains(e->rel_ln_b);
}

/* dkr/dqr of layer l through its positional projections: their weights and
 * adapters, and into d_rel (summed over layers) when R's gradient is wanted. */
static void positional_backward(aflo_model *m, int l) {
    deberta_model *e = m->impl;
    layer_acts *a = &e->la[l];
    float p = drop_p(m, m->cfg.hidden_dropout_prob);
    const float *R = rel_input(m, l); /* regenerates this layer's pos_dropout */
    bool want = rel_trains(e);
    float *dR = p > 0.0f ? e->d_reltmp : e->d_rel;
    const float *dy[2] = {e->dkr, e->dqr};
    bool first = true;
    for (int k = 0; k < 2; k++) {
        aflo_linear *lin = pos_linear(e, &m->cfg, l, k);
        if (!lin) continue;
        /* into d_rel directly without dropout (accumulating over layers) */
        bool acc = p > 0.0f ? !first : true;
        linear_backward(lin, want ? dR : NULL, acc, dy[k], R, e->P, a->ad_pos[k], lin_scratch(e),
                        &m->flops);
        first = false;
    }
    if (want && p > 0.0f && !first) {
        dropout_backward(e->d_reltmp, e->d_reltmp, (size_t)e->P * e->H, p, m->dropout_key,
                         dstream(l, SITE_REL, 0));
        for (size_t i = 0; i < (size_t)e->P * e->H; i++) e->d_rel[i] += e->d_reltmp[i];
    }
}

/* d_cur holds dLoss/d(out of layer l); leaves dLoss/d(input of layer l) in
 * d_prev when want_dx. */
static void layer_backward(aflo_model *m, int l, const float *x, bool want_dx) {
    deberta_model *e = m->impl;
    deberta_layer *ly = &e->layers[l];
    layer_acts *a = &e->la[l];
    int N = e->N, H = e->H, I = e->I;
    float ph = drop_p(m, m->cfg.hidden_dropout_prob);
    bool drop = ph > 0.0f;

    resnorm_backward(e->d_h1, drop ? e->d_tmp : NULL, grad_of(ly->ln2_w), grad_of(ly->ln2_b),
                     e->scratch_ln, e->d_cur, a->res2, a->mean2, a->rstd2, ly->ln2_w->data, N, H,
                     ph, m->dropout_key, dstream(l, SITE_FFN_OUT, 0));
    const float *d_o = drop ? e->d_tmp : e->d_h1;
    const aflo_param *bi = ly->lin[DEBERTA_INTERMEDIATE].b;
    bias_gelu_forward(e->scratch_big, a->inter, bi->data, N, I);
    linear_backward(&ly->lin[DEBERTA_OUTPUT], e->d_big, false, d_o, e->scratch_big, N,
                    a->ad[DEBERTA_OUTPUT], lin_scratch(e), &m->flops);
    bias_gelu_backward(e->d_big, grad_of(bi), a->inter, bi->data, e->d_big, N, I);
    linear_backward(&ly->lin[DEBERTA_INTERMEDIATE], e->d_h1, true, e->d_big, a->h1, N,
                    a->ad[DEBERTA_INTERMEDIATE], lin_scratch(e), &m->flops);

    float *dres1 = want_dx ? e->d_prev : (drop ? NULL : e->d_tmp);
    resnorm_backward(dres1, drop ? e->d_tmp : NULL, grad_of(ly->ln1_w), grad_of(ly->ln1_b),
                     e->scratch_ln, e->d_h1, a->res1, a->mean1, a->rstd1, ly->ln1_w->data, N, H, ph,
                     m->dropout_key, dstream(l, SITE_ATTN_OUT, 0));
    const float *d_ao = drop ? e->d_tmp : dres1;
    linear_backward(&ly->lin[DEBERTA_ATTN_OUT], e->dctx, false, d_ao, a->ctx, N,
                    a->ad[DEBERTA_ATTN_OUT], lin_scratch(e), &m->flops);
    deberta_attn_opts o = attn_opts(m, l);
    deberta_attn_backward(&o, e->dq, e->dk, e->dv, a->qr ? e->dqr : NULL, a->kr ? e->dkr : NULL,
                          e->dctx, a->probs, a->q, a->k, a->v, a->qr, a->kr, e->scratch_attn,
                          e->attn_threads, &m->flops);
    if (e->pos) positional_backward(m, l);
    float *dqkv[3] = {e->dq, e->dk, e->dv};
    for (int mod = DEBERTA_QUERY; mod <= DEBERTA_VALUE; mod++)
        linear_backward(&ly->lin[mod], want_dx ? e->d_prev : NULL, true, dqkv[mod], x, N,
                        a->ad[mod], lin_scratch(e), &m->flops);
}

/* d_rel (dLoss/dR) into rel_embeddings, through encoder.LayerNorm. */
static void rel_backward(aflo_model *m) {
    deberta_model *e = m->impl;
    size_t n = (size_t)e->P * e->H;
    if (!e->rel_ln_w) {
        if (trains(e->rel_emb))
            for (size_t i = 0; i < n; i++) e->rel_emb->grad[i] += e->d_rel[i];
        return;
    }
    resnorm_backward(e->d_reltmp, NULL, grad_of(e->rel_ln_w), grad_of(e->rel_ln_b), e->scratch_ln,
                     e->d_rel, e->rel_emb->data, e->rel_mean, e->rel_rstd, e->rel_ln_w->data, e->P,
                     e->H, 0.0f, 0, 0);
    if (trains(e->rel_emb))
        for (size_t i = 0; i < n; i++) e->rel_emb->grad[i] += e->d_reltmp[i];
}

static void deberta_backward(aflo_model *m, float loss_scale) {
    deberta_model *e = m->impl;
    if (!e->has_labels) return;
    int N = e->N, H = e->H, B = e->B, L = m->num_labels, S = e->S;
    float ph = drop_p(m, m->cfg.hidden_dropout_prob);
    float *dlogits = e->scratch_out; /* B*L floats */
    if (m->task == TASK_CLASSIFICATION)
        cross_entropy_backward(dlogits, e->probs_cls, e->labels, B, L, loss_scale);
    else
        mse_backward(dlogits, m->logits, e->targets, B, loss_scale);

    if (e->cls_w->trainable)
        gemm(&m->flops, FLOP_BACKWARD_WEIGHT, true, false, L, H, B, 1.0f, dlogits, L,
             e->pooled_drop, H, 1.0f, e->cls_w->grad, H);
    if (e->cls_b->trainable) bias_backward(e->cls_b->grad, dlogits, B, L);
    float *dpooled = e->scratch_h; /* B*H */
    gemm(&m->flops, FLOP_BACKWARD_INPUT, false, false, B, H, L, 1.0f, dlogits, L, e->cls_w->data, H,
         0.0f, dpooled, H);
    dropout_backward(dpooled, dpooled, (size_t)B * H, ph, m->dropout_key,
                     dstream(-1, SITE_HEAD, 0));
    gelu_backward(dpooled, e->pooled_pre, dpooled, (size_t)B * H);
    if (e->pool_w->trainable)
        gemm(&m->flops, FLOP_BACKWARD_WEIGHT, true, false, H, H, B, 1.0f, dpooled, H, e->cls, H,
             1.0f, e->pool_w->grad, H);
    if (e->pool_b->trainable) bias_backward(e->pool_b->grad, dpooled, B, H);

    bool any_below = false;
    for (int i = 0; i < m->nparams && !any_below; i++)
        any_below = m->params[i].trainable && m->params[i].group != PGROUP_HEAD;
    if (!any_below) return;

    float *dcls = e->scratch_big; /* B*H floats */
    gemm(&m->flops, FLOP_BACKWARD_INPUT, false, false, B, H, H, 1.0f, dpooled, H, e->pool_w->data,
         H, 0.0f, dcls, H);
    memset(e->d_cur, 0, (size_t)N * H * sizeof(float));
    for (int bi = 0; bi < B; bi++)
        memcpy(e->d_cur + (size_t)bi * S * H, dcls + (size_t)bi * H, (size_t)H * sizeof(float));
    if (e->P) memset(e->d_rel, 0, (size_t)e->P * H * sizeof(float));

    bool emb_trains = trains(e->word_emb) || trains(e->pos_emb) || trains(e->type_emb) ||
                      trains(e->emb_ln_w) || trains(e->emb_ln_b);
    int l = e->L - 1;
    for (; l >= 0; l--) {
        const float *x = l > 0 ? e->la[l - 1].out : e->x0;
        bool want_dx = l > 0 || emb_trains;
        layer_backward(m, l, x, want_dx);
        if (!want_dx) break;
        float *t = e->d_cur;
        e->d_cur = e->d_prev;
        e->d_prev = t;
    }
    if (e->P && rel_trains(e)) rel_backward(m);
    if (l >= 0) return; /* the embeddings do not train */

    dropout_backward(e->d_cur, e->d_cur, (size_t)N * H, ph, m->dropout_key,
                     dstream(-1, SITE_EMB, 0));
    layernorm_backward(e->d_tmp, grad_of(e->emb_ln_w), grad_of(e->emb_ln_b), e->d_cur, e->emb_in,
                       e->emb_mean, e->emb_rstd, e->emb_ln_w->data, N, H);
    if (trains(e->word_emb)) embedding_backward(e->word_emb->grad, e->ids, e->d_tmp, N, H);
    if (trains(e->pos_emb)) embedding_backward(e->pos_emb->grad, e->pos_ids, e->d_tmp, N, H);
    if (trains(e->type_emb)) embedding_backward(e->type_emb->grad, e->type_ids, e->d_tmp, N, H);
}

static void deberta_destroy(aflo_model *m) {
    deberta_model *e = m->impl;
    if (!e) return;
    free(e->layers);
    free(e->la);
    free(e);
    m->impl = NULL;
}

/* ---------------------------------------------------------------- the family */

/* What this implementation refuses, by the key that asks for it. */
static int deberta_config_check(const aflo_config *c, char *err, size_t errlen) {
    if (c->conv_kernel_size > 0)
        return set_err(err, errlen, "config: conv_kernel_size %d is not supported (no ConvLayer)",
                       c->conv_kernel_size);
    if (c->embedding_size > 0 && c->embedding_size != c->hidden_size)
        return set_err(err, errlen,
                       "config: embedding_size %d differs from hidden_size %d (embed_proj is not "
                       "supported)",
                       c->embedding_size, c->hidden_size);
    if (c->pooler_hidden_size > 0 && c->pooler_hidden_size != c->hidden_size)
        return set_err(err, errlen,
                       "config: pooler_hidden_size %d differs from hidden_size %d (not supported)",
                       c->pooler_hidden_size, c->hidden_size);
    if (!c->relative_attention && c->pos_att_type)
        return set_err(err, errlen,
                       "config: pos_att_type needs relative_attention true (relative_attention "
                       "false with position terms is not supported)");
    if (c->relative_attention && rel_span(c) < 1)
        return set_err(err, errlen,
                       "config: position_buckets / max_relative_positions give no "
                       "relative positions");
    return 0;
}

/* DebertaV2ForSequenceClassification keeps pooler and classifier beside
 * "deberta.": both outside the prefix under their engine names. */
static const aflo_name_map deberta_head_names[] = {
    {"pooler.", "pooler."},
    {"classifier.", "classifier."},
    {NULL, NULL},
};

static const aflo_family_variant deberta_variants[] = {
    {"deberta-v2", "DebertaV2", "DebertaV2ForSequenceClassification", "deberta.",
     deberta_head_names, "[\"classifier\", \"pooler\"]", 0},
};

/* Buffers and the pre-training heads (masked LM, RTD) of checkpoints. */
static const char *const deberta_hf_ignored[] = {
    "embeddings.position_ids",
    "lm_predictions.",
    "mask_predictions.",
    NULL,
};

static const char *const deberta_head_layers[] = {"pooler.dense", "classifier", NULL};

const aflo_family deberta_family = {
    .name = "deberta",
    .description = "DeBERTa-v2/v3 encoder (disentangled attention)",
    .variants = deberta_variants,
    .n_variants = (int)(sizeof deberta_variants / sizeof *deberta_variants),
    .modules = deberta_modules,
    .n_modules = DEBERTA_MODULE_COUNT,
    .block_prefix = "encoder.layer.",
    .hf_ignored = deberta_hf_ignored,
    .head_layers = deberta_head_layers,
    .tasks = (1u << TASK_CLASSIFICATION) | (1u << TASK_REGRESSION),
    .hidden_act = "gelu",
    .config_check = deberta_config_check,
    .token_types_optional = true,
    .relative_attention_keys = true,
    .max_params = deberta_max_params,
    .build = deberta_build,
    .destroy = deberta_destroy,
    .layout = deberta_layout,
    .forward = deberta_forward,
    .backward = deberta_backward,
};
