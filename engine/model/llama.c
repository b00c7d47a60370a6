/* llama.c — the LLaMA family: LLaMA, Mistral and Qwen2 decoders with
 * adapters for causal language modelling: tensor declaration, activation
 * layout, forward, backward, and the family's descriptor.
 *
 * Data flow of one block (pre-norm, as transformers' LlamaDecoderLayer),
 * N = batch*seq tokens:
 *   xn1 = RMSNorm(x)                                   input_layernorm
 *   q, k, v = linear(xn1); q, k = RoPE(q, k)            (adapted)
 *   ctx = causal grouped-query attention(q, k, v)       attention.h
 *   h   = x + o_proj(ctx)                               (adapted)
 *   xn2 = RMSNorm(h)                                    post_attention_layernorm
 *   out = h + down_proj(silu(gate_proj(xn2)) * up_proj(xn2))   (adapted)
 * then norm and lm_head (or the embedding matrix when tied) give logits for
 * every position, and the loss is the mean next-token cross-entropy over
 * the positions whose next token carries a label (labels unshifted; the
 * model shifts, as LlamaForCausalLM does).
 * Saved for backward: each block's input (the previous block's out), RMSNorm
 * statistics, xn1, q and k after RoPE, v, ctx with the attention's row
 * statistics, h, xn2, gate and up outputs, and each adapter's h1/h3; the
 * SwiGLU product is recomputed in backward (N*I floats a block).
 *
 * Positions are 0..seq-1 whatever the padding (transformers' default
 * position_ids), so padding belongs on the right. The only dropout is
 * config attention_dropout on the attention weights (0 in released
 * configs), as LlamaAttention applies it while training; each block draws
 * its masks from its own counter stream (attn_opts).
 *
 * Activation checkpointing (model_set_checkpointing): the layout gives each
 * block only its output (the next block's input) and one shared set of the
 * other activations; backward runs block l's forward again from its input
 * to refill that set, then block l's backward. The last block's set is
 * still there after the forward, so L-1 blocks run twice. Every kernel is
 * deterministic and dropout masks are counter-based, so the rerun writes
 * the very bits the first forward wrote.
 *
 * 16-bit weights (model_keep_half): projections go through linear.c, which
 * widens each into the model's buffer (d->wide); the embedding is widened
 * row by row as it is gathered, lm_head (or the tied embedding) whole before
 * its products.
 *
 * lm_head is a base weight (group BASE): it trains only with method full,
 * like the embeddings, and the adapter formats leave it out; its
 * checkpoint name has no "model." (the variants' head_names). Tied models
 * declare no lm_head and read embed_tokens instead, which then gathers the
 * gradient of both uses. */
#include "model/llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"
#include "model/attention.h"
#include "model/linear.h"
#include "model/llama_ops.h"
#include "model/model_internal.h"
#include "model/ops.h"

typedef struct {
    aflo_linear lin[LLAMA_MODULE_COUNT];
    aflo_param *ln1, *ln2; /* input_layernorm, post_attention_layernorm */
} llama_layer;

typedef struct {
    float *rstd1, *xn1, *q, *k, *v, *ctx, *lse, *h, *rstd2, *xn2, *g, *u, *out;
    aflo_linear_acts ad[LLAMA_MODULE_COUNT];
} llama_acts;

typedef struct {
    int H, I, nh, nkv, hd, qd, kvd, L, V;
    int window; /* sliding window, 0 none */

    aflo_param *embed, *norm, *lm_head; /* lm_head NULL when tied */
    llama_layer *layers;
    double *inv_freq; /* hd/2 */

    /* activations: pointers into the model's arena (llama_layout) */
    llama_acts *la;
    float *x0, *rstd_f, *xf, *lse_lm, *dlogits, *cos_t, *sin_t;
    float *scratch_act, *scratch_out, *scratch_r, *scratch_or;
    float *scratch_attn; /* attn_threads slices of attention_scratch_floats */
    int attn_threads;
    float *d_cur, *d_prev, *d_h, *d_xn, *d_ctx, *dq, *dk, *dv, *d_g, *d_u;
    int32_t *ids, *pos, *targets;
    uint8_t *mask;
    float *wide; /* the model's widening buffer for 16-bit weights (model_wide_buffer) */

    /* the current batch */
    int B, S, N, n_targets;
    bool has_labels;
    bool training; /* m->training for this forward (lin_scratch reads it) */
} llama_model;

/* ---------------------------------------------------------------- tensor table */

/* The adapted linear layers of a block, in forward order, under their
 * transformers paths; the MLP's three are the feed-forward ones. */
static const aflo_module_info llama_modules[LLAMA_MODULE_COUNT] = {
    [LLAMA_Q] = {"self_attn.q_proj", "q_proj", "query", false},
    [LLAMA_K] = {"self_attn.k_proj", "k_proj", "key", false},
    [LLAMA_V] = {"self_attn.v_proj", "v_proj", "value", false},
    [LLAMA_O] = {"self_attn.o_proj", "o_proj", "attention output", false},
    [LLAMA_GATE] = {"mlp.gate_proj", "gate_proj", "gate", true},
    [LLAMA_UP] = {"mlp.up_proj", "up_proj", "up", true},
    [LLAMA_DOWN] = {"mlp.down_proj", "down_proj", "down", true},
};

/* Embeddings, final norm and lm_head; per block two norms and seven linear
 * layers of up to six tensors (W, b, A, B, s_d, s_b). */
static int llama_max_params(const aflo_config *c) {
    return 3 + c->num_hidden_layers * (2 + LLAMA_MODULE_COUNT * 6);
}

static int check_config(const aflo_config *c, char *err, size_t errlen) {
    int hd = config_head_dim(c);
    if (hd < 2 || hd % 2)
        return set_err(err, errlen, "config: head_dim %d must be even for rotary embeddings", hd);
    if (c->num_attention_heads % config_kv_heads(c))
        return set_err(err, errlen, "config: num_key_value_heads %d must divide %d",
                       config_kv_heads(c), c->num_attention_heads);
    if (!(c->rms_norm_eps > 0.0f && isfinite(c->rms_norm_eps)))
        return set_err(err, errlen, "config: rms_norm_eps must be positive, got %g",
                       (double)c->rms_norm_eps);
    if (!(c->rope_theta > 0.0f && isfinite(c->rope_theta)))
        return set_err(err, errlen, "config: rope_theta must be positive, got %g",
                       (double)c->rope_theta);
    if (c->rope_scaling != ROPE_SCALING_NONE && !(c->rope_factor >= 1.0f))
        return set_err(err, errlen, "config: rope_scaling factor must be >= 1");
    if (c->rope_scaling == ROPE_SCALING_LLAMA3 &&
        !(c->rope_high_freq_factor > c->rope_low_freq_factor && c->rope_low_freq_factor > 0.0f &&
          c->rope_original_max_position_embeddings > 0))
        return set_err(err, errlen, "config: rope_scaling llama3 fields out of range");
    return 0;
}

static aflo_param *declare_linear(aflo_model *m, aflo_linear *lin, int l, int mod, int in, int out,
                                  bool bias) {
    char name[96];
    const char *path = llama_modules[mod].path;
    lin->in = in;
    lin->out = out;
    snprintf(name, sizeof name, "layers.%d.%s.weight", l, path);
    lin->W = model_add_param(m, name, out, in, PGROUP_BASE, PROLE_WEIGHT, l, mod);
    if (bias) {
        snprintf(name, sizeof name, "layers.%d.%s.bias", l, path);
        lin->b = model_add_param(m, name, 0, out, PGROUP_BASE, PROLE_BIAS, l, mod);
    }
    lin->scale = 1.0f;
    lin->rank = 0;
    if (m->ac.method == METHOD_FULL || !(m->ac.targets & (1u << mod))) return lin->W;
    int r = m->ac.rank;
    lin->rank = r;
    snprintf(name, sizeof name, "layers.%d.%s.lora_A", l, path);
    lin->A = model_add_param(m, name, r, in, PGROUP_ADAPTER, PROLE_A, l, mod);
    snprintf(name, sizeof name, "layers.%d.%s.lora_B", l, path);
    lin->B = model_add_param(m, name, out, r, PGROUP_ADAPTER, PROLE_B, l, mod);
    if (m->ac.method == METHOD_AFLORA || m->ac.method == METHOD_ELORA) {
        snprintf(name, sizeof name, "layers.%d.%s.s_d", l, path);
        lin->sd = model_add_param(m, name, 0, r, PGROUP_ADAPTER, PROLE_SD, l, mod);
        snprintf(name, sizeof name, "layers.%d.%s.s_b", l, path);
        lin->sb = model_add_param(m, name, 0, out, PGROUP_ADAPTER, PROLE_SB, l, mod);
    } else {
        lin->scale = m->ac.alpha / (float)r;
    }
    return lin->W;
}

/* Tensors in table order: embed_tokens; per block input_layernorm, q, k, v,
 * o_proj, post_attention_layernorm, gate, up, down_proj (each with its bias
 * when the variant has one, then its adapter when targeted); norm; lm_head
 * unless tied. */
static int llama_build(aflo_model *m, char *err, size_t errlen) {
    const aflo_config *c = &m->cfg;
    if (check_config(c, err, errlen)) return -1;
    llama_model *d = calloc(1, sizeof *d);
    if (!d) goto oom;
    m->impl = d;
    d->H = c->hidden_size;
    d->I = c->intermediate_size;
    d->nh = c->num_attention_heads;
    d->nkv = config_kv_heads(c);
    d->hd = config_head_dim(c);
    d->qd = d->nh * d->hd;
    d->kvd = d->nkv * d->hd;
    d->L = c->num_hidden_layers;
    d->V = c->vocab_size;
    unsigned flags = m->variant->flags;
    d->window = (flags & LLAMA_SLIDING_WINDOW) ? c->sliding_window : 0;
    bool qkv_bias = c->attention_bias || c->qkv_bias || (flags & LLAMA_QKV_BIAS);
    d->layers = calloc((size_t)d->L, sizeof *d->layers);
    d->la = calloc((size_t)d->L, sizeof *d->la);
    d->inv_freq = calloc((size_t)d->hd / 2, sizeof *d->inv_freq);
    if (!d->layers || !d->la || !d->inv_freq) goto oom;
    rope_inv_freq(d->inv_freq, c, d->hd);

    int H = d->H, I = d->I;
    char name[96];
    d->embed =
        model_add_param(m, "embed_tokens.weight", d->V, H, PGROUP_BASE, PROLE_EMBEDDING, -1, -1);
    for (int l = 0; l < d->L; l++) {
        llama_layer *ly = &d->layers[l];
        snprintf(name, sizeof name, "layers.%d.input_layernorm.weight", l);
        ly->ln1 = model_add_param(m, name, 0, H, PGROUP_BASE, PROLE_NORM_WEIGHT, l, -1);
        declare_linear(m, &ly->lin[LLAMA_Q], l, LLAMA_Q, H, d->qd, qkv_bias);
        declare_linear(m, &ly->lin[LLAMA_K], l, LLAMA_K, H, d->kvd, qkv_bias);
        declare_linear(m, &ly->lin[LLAMA_V], l, LLAMA_V, H, d->kvd, qkv_bias);
        declare_linear(m, &ly->lin[LLAMA_O], l, LLAMA_O, d->qd, H, c->attention_bias);
        snprintf(name, sizeof name, "layers.%d.post_attention_layernorm.weight", l);
        ly->ln2 = model_add_param(m, name, 0, H, PGROUP_BASE, PROLE_NORM_WEIGHT, l, -1);
        declare_linear(m, &ly->lin[LLAMA_GATE], l, LLAMA_GATE, H, I, false);
        declare_linear(m, &ly->lin[LLAMA_UP], l, LLAMA_UP, H, I, false);
        declare_linear(m, &ly->lin[LLAMA_DOWN], l, LLAMA_DOWN, I, H, false);
    }
    d->norm = model_add_param(m, "norm.weight", 0, H, PGROUP_BASE, PROLE_NORM_WEIGHT, -1, -1);
    if (!c->tie_word_embeddings)
        d->lm_head =
            model_add_param(m, "lm_head.weight", d->V, H, PGROUP_BASE, PROLE_WEIGHT, -1, -1);
    return 0;
oom:
    return set_err(err, errlen, "out of memory building the model");
}

static void llama_destroy(aflo_model *m) {
    llama_model *d = m->impl;
    if (!d) return;
    free(d->layers);
    free(d->la);
    free(d->inv_freq);
    free(d);
    m->impl = NULL;
}

/* ---------------------------------------------------------------- activations */

/* One pass assigns pointers when base != NULL, else only counts floats.
 * Integer buffers are carved from the same arena (int32 and float share
 * size). The RoPE tables for positions 0..Sm-1 are filled here too. */
static size_t llama_layout(aflo_model *m, float *base, int Bm, int Sm) {
    llama_model *d = m->impl;
    size_t off = 0;
    size_t N = (size_t)Bm * Sm, H = (size_t)d->H, I = (size_t)d->I, V = (size_t)d->V;
    size_t qd = (size_t)d->qd, kvd = (size_t)d->kvd, r = (size_t)m->ac.rank;
    size_t maxdim = H > I ? H : I;
    if (qd > maxdim) maxdim = qd;
#define TAKE(ptr, count)                                        \
    do {                                                        \
        if (base) (ptr) = (void *)(base + off);                 \
        off += ((size_t)(count) + 15) & ~(size_t)15; /* 64 B */ \
    } while (0)
    TAKE(d->x0, N * H);
    for (int l = 0; l < d->L; l++) {
        llama_acts dummy, *a = base ? &d->la[l] : &dummy;
        if (m->checkpointing && l > 0) { /* block 0's set, shared; its own output */
            if (base) *a = d->la[0];
            TAKE(a->out, N * H);
            continue;
        }
        TAKE(a->rstd1, N);
        TAKE(a->xn1, N * H);
        TAKE(a->q, N * qd);
        TAKE(a->k, N * kvd);
        TAKE(a->v, N * kvd);
        TAKE(a->ctx, N * qd);
        TAKE(a->lse, N * (size_t)d->nh);
        TAKE(a->h, N * H);
        TAKE(a->rstd2, N);
        TAKE(a->xn2, N * H);
        TAKE(a->g, N * I);
        TAKE(a->u, N * I);
        TAKE(a->out, N * H);
        for (int mod = 0; mod < LLAMA_MODULE_COUNT; mod++) {
            const aflo_linear *lin = &d->layers[l].lin[mod];
            a->ad[mod].h1 = a->ad[mod].h3 = NULL;
            if (!linear_adapted(lin)) continue;
            TAKE(a->ad[mod].h1, N * r);
            if (lin->sb && !linear_folds_sb(lin)) TAKE(a->ad[mod].h3, N * (size_t)lin->out);
        }
    }
    TAKE(d->rstd_f, N);
    TAKE(d->xf, N * H);
    TAKE(m->logits, N * V);
    TAKE(d->lse_lm, N);
    TAKE(d->dlogits, N * V);
    TAKE(d->cos_t, (size_t)Sm * d->hd / 2);
    TAKE(d->sin_t, (size_t)Sm * d->hd / 2);
    TAKE(d->scratch_act, N * I);
    TAKE(d->scratch_out, N * maxdim);
    TAKE(d->scratch_r, 2 * N * (r ? r : 1));
    TAKE(d->scratch_or, 2 * maxdim * (r ? r : 1));
    attention_opts ao = {
        .batch = Bm, .heads = d->nh, .kv_heads = d->nkv, .seq = Sm, .head_dim = d->hd};
    d->attn_threads = attention_max_threads();
    TAKE(d->scratch_attn, attention_scratch_floats(&ao) * (size_t)d->attn_threads);
    TAKE(d->d_cur, N * H);
    TAKE(d->d_prev, N * H);
    TAKE(d->d_h, N * H);
    TAKE(d->d_xn, N * H);
    TAKE(d->d_ctx, N * qd);
    TAKE(d->dq, N * qd);
    TAKE(d->dk, N * kvd);
    TAKE(d->dv, N * kvd);
    TAKE(d->d_g, N * I);
    TAKE(d->d_u, N * I);
    TAKE(d->ids, N);
    TAKE(d->pos, N);
    TAKE(d->targets, N);
    TAKE(d->mask, N);
#undef TAKE
    if (base) rope_tables(d->cos_t, d->sin_t, d->inv_freq, Sm, d->hd);
    return off;
}

/* ---------------------------------------------------------------- forward */

static int load_batch(aflo_model *m, const aflo_batch *b, char *err, size_t errlen) {
    llama_model *d = m->impl;
    if (b->batch < 1 || b->seq < 1 || b->batch > m->max_batch || b->seq > m->max_seq)
        return set_err(err, errlen, "batch %d x %d exceeds the reserved %d x %d", b->batch, b->seq,
                       m->max_batch, m->max_seq);
    d->B = b->batch;
    d->S = b->seq;
    d->N = b->batch * b->seq;
    for (int i = 0; i < d->N; i++) {
        int32_t id = b->input_ids[i];
        if (id < 0 || id >= d->V)
            return set_err(err, errlen, "input id %d at [%d,%d] outside vocabulary of %d", id,
                           i / d->S, i % d->S, d->V);
        d->ids[i] = id;
        d->pos[i] = i % d->S;
        d->mask[i] = b->attention_mask ? (b->attention_mask[i] != 0) : 1;
    }
    /* Position t predicts token t+1: its target is label t+1. */
    d->has_labels = b->token_labels != NULL;
    d->n_targets = 0;
    for (int i = 0; i < d->N; i++) {
        int t = i % d->S;
        int32_t lab = d->has_labels && t + 1 < d->S ? b->token_labels[i + 1] : LABEL_IGNORE;
        if (lab != LABEL_IGNORE && (lab < 0 || lab >= d->V))
            return set_err(err, errlen, "label %d at [%d,%d] outside vocabulary of %d (or %d)", lab,
                           i / d->S, t + 1, d->V, LABEL_IGNORE);
        d->targets[i] = lab == LABEL_IGNORE ? -1 : lab;
        d->n_targets += lab != LABEL_IGNORE;
    }
    return 0;
}

static aflo_linear_scratch lin_scratch(const llama_model *d) {
    return (aflo_linear_scratch){.r2 = d->scratch_r,
                                 .out = d->scratch_out,
                                 .or2 = d->scratch_or,
                                 .merge_ok = d->training,
                                 .wide = d->wide};
}

/* Causal grouped-query attention over the current batch, padding keys
 * masked, Mistral's window when set; attention_dropout while training
 * with dropout on, block l's masks from streams (l+1)<<24 + b*heads + h
 * (as bert.c's dstream: distinct for every block and head). */
static attention_opts attn_opts(const aflo_model *m, int l) {
    const llama_model *d = m->impl;
    return (attention_opts){.batch = d->B,
                            .heads = d->nh,
                            .kv_heads = d->nkv,
                            .seq = d->S,
                            .head_dim = d->hd,
                            .scale = 1.0f / sqrtf((float)d->hd),
                            .key_mask = d->mask,
                            .causal = true,
                            .window = d->window,
                            .dropout = m->dropout ? m->cfg.attention_dropout : 0.0f,
                            .dropout_seed = m->dropout_key,
                            .dropout_stream = (uint64_t)(l + 1) << 24};
}

static attention_rows rows(float *p, int ld) { return (attention_rows){p, ld}; }

static void add_inplace(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static void layer_forward(aflo_model *m, int l, const float *x) {
    llama_model *d = m->impl;
    llama_layer *ly = &d->layers[l];
    llama_acts *a = &d->la[l];
    int N = d->N, H = d->H, I = d->I;
    float eps = m->cfg.rms_norm_eps;
    aflo_linear_scratch sc = lin_scratch(d);

    rmsnorm_forward(a->xn1, a->rstd1, x, ly->ln1->data, N, H, eps);
    float *qkv[3] = {a->q, a->k, a->v};
    for (int mod = LLAMA_Q; mod <= LLAMA_V; mod++)
        linear_forward(&ly->lin[mod], qkv[mod], a->xn1, N, a->ad[mod], sc, &m->flops);
    rope_forward(a->q, d->pos, d->cos_t, d->sin_t, N, d->nh, d->hd);
    rope_forward(a->k, d->pos, d->cos_t, d->sin_t, N, d->nkv, d->hd);
    attention_opts ao = attn_opts(m, l);
    attention_forward(&ao, rows(a->ctx, d->qd), a->lse, rows(a->q, d->qd), rows(a->k, d->kvd),
                      rows(a->v, d->kvd), d->scratch_attn, d->attn_threads, &m->flops);
    linear_forward(&ly->lin[LLAMA_O], a->h, a->ctx, N, a->ad[LLAMA_O], sc, &m->flops);
    add_inplace(a->h, x, (size_t)N * H);

    rmsnorm_forward(a->xn2, a->rstd2, a->h, ly->ln2->data, N, H, eps);
    linear_forward(&ly->lin[LLAMA_GATE], a->g, a->xn2, N, a->ad[LLAMA_GATE], sc, &m->flops);
    linear_forward(&ly->lin[LLAMA_UP], a->u, a->xn2, N, a->ad[LLAMA_UP], sc, &m->flops);
    swiglu_forward(d->scratch_act, a->g, a->u, (size_t)N * I);
    linear_forward(&ly->lin[LLAMA_DOWN], a->out, d->scratch_act, N, a->ad[LLAMA_DOWN], sc,
                   &m->flops);
    add_inplace(a->out, a->h, (size_t)N * H);
}

/* The output embedding: lm_head, or embed_tokens when tied. */
static aflo_param *out_embedding(const llama_model *d) {
    return d->lm_head ? d->lm_head : d->embed;
}

/* x[i] = embedding row ids[i], widened row by row when kept 16-bit. */
static void embed_rows(float *x, const llama_model *d) {
    const aflo_param *E = d->embed;
    if (!E->half) {
        embedding_forward(x, d->ids, E->data, d->N, d->H, 0);
        return;
    }
    size_t H = (size_t)d->H;
    for (int i = 0; i < d->N; i++)
        half_to_f32(x + i * H, E->half + (size_t)d->ids[i] * H, H, E->half_kind);
}

static int llama_forward(aflo_model *m, const aflo_batch *b, float *loss, char *err,
                         size_t errlen) {
    llama_model *d = m->impl;
    if (load_batch(m, b, err, errlen) != 0) return -1;
    d->training = m->training;
    d->wide = model_wide_buffer(m);
    int N = d->N, H = d->H, V = d->V;
    embed_rows(d->x0, d);
    const float *x = d->x0;
    for (int l = 0; l < d->L; l++) {
        layer_forward(m, l, x);
        x = d->la[l].out;
    }
    rmsnorm_forward(d->xf, d->rstd_f, x, d->norm->data, N, H, m->cfg.rms_norm_eps);
    gemm(&m->flops, FLOP_FORWARD, false, true, N, V, H, 1.0f, d->xf, H,
         param_f32(out_embedding(d), d->wide), H, 0.0f, m->logits, V);
    if (d->has_labels && loss) {
        double sum = token_cross_entropy_forward(d->lse_lm, m->logits, d->targets, N, V);
        *loss = d->n_targets ? (float)(sum / d->n_targets) : 0.0f;
    }
    return 0;
}

/* ---------------------------------------------------------------- backward */

static float *grad_of(const aflo_param *p) { return p && p->trainable ? p->grad : NULL; }

/* d_cur holds dLoss/d(out of block l); leaves dLoss/d(input of block l) in
 * d_prev when want_dx. */
static void layer_backward(aflo_model *m, int l, const float *x, bool want_dx) {
    llama_model *d = m->impl;
    llama_layer *ly = &d->layers[l];
    llama_acts *a = &d->la[l];
    int N = d->N, H = d->H, I = d->I;
    aflo_linear_scratch sc = lin_scratch(d);

    /* out = h + down(swiglu(gate(xn2), up(xn2))) */
    swiglu_forward(d->scratch_act, a->g, a->u, (size_t)N * I);
    linear_backward(&ly->lin[LLAMA_DOWN], d->d_g, false, d->d_cur, d->scratch_act, N,
                    a->ad[LLAMA_DOWN], sc, &m->flops);
    swiglu_backward(d->d_g, d->d_u, d->d_g, a->g, a->u, (size_t)N * I);
    linear_backward(&ly->lin[LLAMA_GATE], d->d_xn, false, d->d_g, a->xn2, N, a->ad[LLAMA_GATE], sc,
                    &m->flops);
    linear_backward(&ly->lin[LLAMA_UP], d->d_xn, true, d->d_u, a->xn2, N, a->ad[LLAMA_UP], sc,
                    &m->flops);
    /* xn2 = RMSNorm(h); h also reaches out through the residual */
    rmsnorm_backward(d->d_h, grad_of(ly->ln2), d->d_xn, a->h, a->rstd2, ly->ln2->data, N, H);
    add_inplace(d->d_h, d->d_cur, (size_t)N * H);

    /* h = x + o(attention(rope(q(xn1)), rope(k(xn1)), v(xn1))) */
    linear_backward(&ly->lin[LLAMA_O], d->d_ctx, false, d->d_h, a->ctx, N, a->ad[LLAMA_O], sc,
                    &m->flops);
    attention_opts ao = attn_opts(m, l);
    attention_backward(&ao, rows(d->dq, d->qd), rows(d->dk, d->kvd), rows(d->dv, d->kvd),
                       rows(d->d_ctx, d->qd), rows(a->ctx, d->qd), a->lse, rows(a->q, d->qd),
                       rows(a->k, d->kvd), rows(a->v, d->kvd), d->scratch_attn, d->attn_threads,
                       &m->flops);
    rope_backward(d->dq, d->pos, d->cos_t, d->sin_t, N, d->nh, d->hd);
    rope_backward(d->dk, d->pos, d->cos_t, d->sin_t, N, d->nkv, d->hd);
    float *dqkv[3] = {d->dq, d->dk, d->dv};
    for (int mod = LLAMA_Q; mod <= LLAMA_V; mod++)
        linear_backward(&ly->lin[mod], want_dx ? d->d_xn : NULL, mod != LLAMA_Q, dqkv[mod], a->xn1,
                        N, a->ad[mod], sc, &m->flops);
    if (!want_dx) return;
    rmsnorm_backward(d->d_prev, grad_of(ly->ln1), d->d_xn, x, a->rstd1, ly->ln1->data, N, H);
    add_inplace(d->d_prev, d->d_h, (size_t)N * H);
}

static void llama_backward(aflo_model *m, float loss_scale) {
    llama_model *d = m->impl;
    if (!d->has_labels || d->n_targets == 0) return;
    int N = d->N, H = d->H, V = d->V;
    token_cross_entropy_backward(d->dlogits, m->logits, d->lse_lm, d->targets, N, V,
                                 loss_scale / (float)d->n_targets);
    aflo_param *W = out_embedding(d);
    if (W->trainable)
        gemm(&m->flops, FLOP_BACKWARD_WEIGHT, true, false, V, H, N, 1.0f, d->dlogits, V, d->xf, H,
             1.0f, W->grad, H);

    /* Does anything below lm_head train? */
    bool any_below = false;
    for (int i = 0; i < m->nparams && !any_below; i++)
        any_below = m->params[i].trainable && &m->params[i] != d->lm_head;
    if (!any_below) return;

    gemm(&m->flops, FLOP_BACKWARD_INPUT, false, false, N, H, V, 1.0f, d->dlogits, V,
         param_f32(W, d->wide), H, 0.0f, d->d_xn, H);
    const float *xl = d->L > 0 ? d->la[d->L - 1].out : d->x0;
    rmsnorm_backward(d->d_cur, grad_of(d->norm), d->d_xn, xl, d->rstd_f, d->norm->data, N, H);

    bool emb_trains = d->embed->trainable;
    for (int l = d->L - 1; l >= 0; l--) {
        const float *x = l > 0 ? d->la[l - 1].out : d->x0;
        /* Checkpointing: rebuild block l's activations (the last block's
         * are still there). */
        if (m->checkpointing && l < d->L - 1) layer_forward(m, l, x);
        /* Block 0's input gradient is only wanted when what is below trains. */
        bool want_dx = l > 0 || emb_trains || d->layers[0].ln1->trainable;
        layer_backward(m, l, x, want_dx);
        if (!want_dx) return;
        float *t = d->d_cur;
        d->d_cur = d->d_prev;
        d->d_prev = t;
    }
    if (emb_trains) embedding_backward(d->embed->grad, d->ids, d->d_cur, N, H);
}

/* ---------------------------------------------------------------- the family */

/* What a variant implies, filled after config.json's fields are read:
 * grouped-query attention defaults to one KV head per query head, only
 * Mistral windows its attention (Qwen2 configs carry a sliding_window they
 * use only with use_sliding_window), Qwen2 biases q, k and v. */
static void llama_config_finish(aflo_config *c, const aflo_family_variant *v) {
    if (c->num_key_value_heads == 0) c->num_key_value_heads = c->num_attention_heads;
    if (!(v->flags & LLAMA_SLIDING_WINDOW)) c->sliding_window = 0;
    c->qkv_bias = (v->flags & LLAMA_QKV_BIAS) != 0;
}

/* lm_head lives beside the base model ("lm_head.weight", not
 * "model.lm_head.weight"). */
static const aflo_name_map llama_head_names[] = {
    {"lm_head.", "lm_head."},
    {NULL, NULL},
};

/* Older checkpoints saved RoPE's inverse frequencies as a buffer in every
 * block; they follow from the config (rope_inv_freq). */
static const char *const llama_hf_ignored[] = {"*.rotary_emb.inv_freq", NULL};

/* modules_to_save null: a causal LM's PEFT folder holds only lora_A/lora_B
 * (lm_head is a base weight), as PEFT writes it for CAUSAL_LM. */
static const aflo_family_variant llama_variants[] = {
    {"llama", "Llama", "LlamaForCausalLM", "model.", llama_head_names, "null", 0},
    {"mistral", "Mistral", "MistralForCausalLM", "model.", llama_head_names, "null",
     LLAMA_SLIDING_WINDOW},
    {"qwen2", "Qwen2", "Qwen2ForCausalLM", "model.", llama_head_names, "null", LLAMA_QKV_BIAS},
};

const aflo_family llama_family = {
    .name = "llama",
    .description = "LLaMA/Mistral/Qwen2 decoder",
    .variants = llama_variants,
    .n_variants = (int)(sizeof llama_variants / sizeof *llama_variants),
    .modules = llama_modules,
    .n_modules = LLAMA_MODULE_COUNT,
    .block_prefix = "layers.",
    .hf_ignored = llama_hf_ignored,
    .head_layers = NULL,
    .tasks = 1u << TASK_CAUSAL_LM,
    .default_targets = LLAMA_DEFAULT_TARGETS,
    .hidden_act = "silu",
    .half_weights = true,
    .checkpointing = true,
    .config_finish = llama_config_finish,
    .max_tokens = NULL,
    .max_params = llama_max_params,
    .build = llama_build,
    .destroy = llama_destroy,
    .layout = llama_layout,
    .forward = llama_forward,
    .backward = llama_backward,
    .decoder = &llama_decoder,
};
