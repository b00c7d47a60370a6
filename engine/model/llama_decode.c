/* llama_decode.c — the LLaMA family's incremental decoder (decode.h): the
 * forward of llama.c for a few new positions of one sequence, attending to
 * the keys and values of every earlier position kept per layer.
 *
 * Per block, for n new rows at positions pos..pos+n-1 (as llama.c's
 * layer_forward, with N = n):
 *   xn1 = RMSNorm(x); q = q_proj(xn1); k, v = k_proj(xn1), v_proj(xn1)
 *   written straight into the cache rows pos..pos+n-1; q, k = RoPE
 *   ctx[i] = softmax over s <= pos+i (and within the sliding window) of
 *            q_i.k_s / sqrt(head_dim), times v_s, per head (grouped-query:
 *            query head h reads KV head h / (n_heads / n_kv_heads))
 *   h = x + o_proj(ctx); out = h + down(silu(gate(xn2)) * up(xn2))
 * then the final norm and lm_head for the last row only.
 *
 * The kernels are llama.c's own (llama_ops.h, linear.h, ops.h), so a
 * decode agrees with the training forward to rounding; tests/test_generate.c
 * checks every position. The adapted linear layers are rebuilt here from
 * the tensor table by name (W, bias, lora_A/B, s_d/s_b; LoRA's alpha/r), so
 * this file needs nothing from llama.c's private state. Adapters are never
 * merged into the weight (an inference forward). Weights kept 16-bit are
 * widened as llama.c widens them: embedding rows on gather, the others whole
 * into the model's widening buffer before each product. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"
#include "model/decode.h"
#include "model/linear.h"
#include "model/llama.h"
#include "model/llama_ops.h"
#include "model/model_internal.h"
#include "model/ops.h"

/* The module paths of llama.c's table (llama_modules), in the same order. */
static const char *const module_path[LLAMA_MODULE_COUNT] = {
    [LLAMA_Q] = "self_attn.q_proj", [LLAMA_K] = "self_attn.k_proj", [LLAMA_V] = "self_attn.v_proj",
    [LLAMA_O] = "self_attn.o_proj", [LLAMA_GATE] = "mlp.gate_proj", [LLAMA_UP] = "mlp.up_proj",
    [LLAMA_DOWN] = "mlp.down_proj",
};

typedef struct {
    aflo_linear lin[LLAMA_MODULE_COUNT];
    const float *ln1, *ln2;
    float *k, *v; /* cache: cap x kvd each */
} dec_layer;

typedef struct {
    aflo_model *m;
    int H, I, nh, nkv, hd, qd, kvd, L, V, window, cap;
    float eps;
    dec_layer *layers;
    const aflo_param *embed, *head;
    const float *norm;
    float *cos_t, *sin_t; /* cap x hd/2 */
    /* rows of the current chunk (DECODE_CHUNK) */
    float *x, *xn, *q, *ctx, *h, *g, *u, *rstd, *probs;
    float *h1, *h3, *r2, *sout, *or2;
    int32_t *ids, *pos;
} llama_dec;

/* Tensor layers.<l>.<path><suffix>, NULL when absent. */
static aflo_param *find(aflo_model *m, int l, const char *path, const char *suffix) {
    char name[128];
    snprintf(name, sizeof name, "layers.%d.%s%s", l, path, suffix);
    return model_find_param(m, name);
}

/* One adapted linear layer of block l, as llama.c declared it. */
static int rebuild_linear(aflo_model *m, aflo_linear *lin, int l, int mod, char *err,
                          size_t errlen) {
    const char *p = module_path[mod];
    memset(lin, 0, sizeof *lin);
    lin->W = find(m, l, p, ".weight");
    if (!lin->W) return set_err(err, errlen, "decode: layer %d has no %s.weight", l, p);
    lin->out = lin->W->shape[0];
    lin->in = lin->W->shape[1];
    lin->b = find(m, l, p, ".bias");
    lin->A = find(m, l, p, ".lora_A");
    lin->scale = 1.0f;
    if (!lin->A) return 0;
    lin->B = find(m, l, p, ".lora_B");
    lin->sd = find(m, l, p, ".s_d");
    lin->sb = find(m, l, p, ".s_b");
    lin->rank = lin->A->shape[0];
    if (!lin->B || (!lin->sd) != (!lin->sb))
        return set_err(err, errlen, "decode: layer %d %s has an incomplete adapter", l, p);
    if (!lin->sd) lin->scale = m->ac.alpha / (float)lin->rank; /* LoRA */
    return 0;
}

static void llama_dec_close(void *state) {
    llama_dec *d = state;
    if (!d) return;
    if (d->layers)
        for (int l = 0; l < d->L; l++) {
            free(d->layers[l].k);
            free(d->layers[l].v);
        }
    free(d->layers);
    float *bufs[] = {d->cos_t, d->sin_t, d->x,     d->xn, d->q,  d->ctx, d->h,    d->g,
                     d->u,     d->rstd,  d->probs, d->h1, d->h3, d->r2,  d->sout, d->or2};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(d->ids);
    free(d->pos);
    free(d);
}

static float *floats(size_t n) { return malloc((n ? n : 1) * sizeof(float)); }

static void *llama_dec_open(aflo_model *m, int max_tokens, char *err, size_t errlen) {
    const aflo_config *c = &m->cfg;
    llama_dec *d = calloc(1, sizeof *d);
    if (!d) goto oom;
    d->m = m;
    d->H = c->hidden_size;
    d->I = c->intermediate_size;
    d->nh = c->num_attention_heads;
    d->nkv = config_kv_heads(c);
    d->hd = config_head_dim(c);
    d->qd = d->nh * d->hd;
    d->kvd = d->nkv * d->hd;
    d->L = c->num_hidden_layers;
    d->V = c->vocab_size;
    d->window = (m->variant->flags & LLAMA_SLIDING_WINDOW) ? c->sliding_window : 0;
    d->cap = max_tokens;
    d->eps = c->rms_norm_eps;

    aflo_param *embed = model_find_param(m, "embed_tokens.weight");
    aflo_param *norm = model_find_param(m, "norm.weight");
    aflo_param *head = c->tie_word_embeddings ? embed : model_find_param(m, "lm_head.weight");
    if (!embed || !norm || !head) {
        set_err(err, errlen, "decode: the model lacks its embedding, final norm or lm_head");
        goto fail;
    }
    d->embed = embed;
    d->norm = norm->data;
    d->head = head;
    d->layers = calloc((size_t)d->L, sizeof *d->layers);
    if (!d->layers) goto oom;
    size_t R = DECODE_CHUNK, r = 1, maxdim = (size_t)d->H;
    if ((size_t)d->I > maxdim) maxdim = (size_t)d->I;
    if ((size_t)d->qd > maxdim) maxdim = (size_t)d->qd;
    for (int l = 0; l < d->L; l++) {
        dec_layer *ly = &d->layers[l];
        for (int mod = 0; mod < LLAMA_MODULE_COUNT; mod++) {
            if (rebuild_linear(m, &ly->lin[mod], l, mod, err, errlen)) goto fail;
            if ((size_t)ly->lin[mod].rank > r) r = (size_t)ly->lin[mod].rank;
        }
        aflo_param *n1 = find(m, l, "input_layernorm", ".weight");
        aflo_param *n2 = find(m, l, "post_attention_layernorm", ".weight");
        if (!n1 || !n2) {
            set_err(err, errlen, "decode: layer %d lacks its norms", l);
            goto fail;
        }
        ly->ln1 = n1->data;
        ly->ln2 = n2->data;
        ly->k = floats((size_t)max_tokens * d->kvd);
        ly->v = floats((size_t)max_tokens * d->kvd);
        if (!ly->k || !ly->v) goto oom;
    }
    d->cos_t = floats((size_t)max_tokens * d->hd / 2);
    d->sin_t = floats((size_t)max_tokens * d->hd / 2);
    d->x = floats(R * d->H);
    d->xn = floats(R * d->H);
    d->q = floats(R * d->qd);
    d->ctx = floats(R * d->qd);
    d->h = floats(R * d->H);
    d->g = floats(R * d->I);
    d->u = floats(R * d->I);
    d->rstd = floats(R);
    d->probs = floats((size_t)max_tokens);
    d->h1 = floats(R * r);
    d->h3 = floats(R * maxdim);
    d->r2 = floats(2 * R * r);
    d->sout = floats(R * maxdim);
    d->or2 = floats(2 * maxdim * r);
    d->ids = malloc(R * sizeof *d->ids);
    d->pos = malloc(R * sizeof *d->pos);
    double *inv_freq = malloc((size_t)d->hd / 2 * sizeof *inv_freq);
    if (!d->cos_t || !d->sin_t || !d->x || !d->xn || !d->q || !d->ctx || !d->h || !d->g || !d->u ||
        !d->rstd || !d->probs || !d->h1 || !d->h3 || !d->r2 || !d->sout || !d->or2 || !d->ids ||
        !d->pos || !inv_freq) {
        free(inv_freq);
        goto oom;
    }
    rope_inv_freq(inv_freq, c, d->hd);
    rope_tables(d->cos_t, d->sin_t, inv_freq, max_tokens, d->hd);
    free(inv_freq);
    return d;
oom:
    set_err(err, errlen, "out of memory for a decoder of %d positions", max_tokens);
fail:
    llama_dec_close(d);
    return NULL;
}

/* ctx rows of the n new positions: each query head over the cached keys
 * up to its own position (within the window), softmax in float with the
 * maximum subtracted, as causal_attn.c. */
static void cached_attention(llama_dec *d, const dec_layer *ly, int n) {
    int hd = d->hd, group = d->nh / d->nkv;
    float scale = 1.0f / sqrtf((float)hd);
    for (int i = 0; i < n; i++) {
        int p = d->pos[i];
        int lo = d->window > 0 && p - d->window + 1 > 0 ? p - d->window + 1 : 0;
        for (int h = 0; h < d->nh; h++) {
            const float *q = d->q + (size_t)i * d->qd + (size_t)h * hd;
            size_t koff = (size_t)(h / group) * hd;
            float mx = -INFINITY;
            for (int s = lo; s <= p; s++) {
                const float *k = ly->k + (size_t)s * d->kvd + koff;
                float dot = 0.0f;
                for (int j = 0; j < hd; j++) dot += q[j] * k[j];
                d->probs[s] = dot * scale;
                if (d->probs[s] > mx) mx = d->probs[s];
            }
            float sum = 0.0f;
            for (int s = lo; s <= p; s++) {
                d->probs[s] = expf(d->probs[s] - mx);
                sum += d->probs[s];
            }
            float *out = d->ctx + (size_t)i * d->qd + (size_t)h * hd;
            memset(out, 0, (size_t)hd * sizeof *out);
            for (int s = lo; s <= p; s++) {
                const float *v = ly->v + (size_t)s * d->kvd + koff;
                float w = d->probs[s] / sum;
                for (int j = 0; j < hd; j++) out[j] += w * v[j];
            }
        }
    }
}

static void add_rows(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static int llama_dec_append(void *state, const int32_t *ids, int n, int pos, float *logits,
                            char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    llama_dec *d = state;
    aflo_model *m = d->m;
    int H = d->H, I = d->I;
    float *wide = model_wide_buffer(m);
    aflo_linear_scratch sc = {
        .r2 = d->r2, .out = d->sout, .or2 = d->or2, .merge_ok = false, .wide = wide};
    aflo_linear_acts acts = {.h1 = d->h1, .h3 = d->h3};
    for (int i = 0; i < n; i++) {
        d->ids[i] = ids[i];
        d->pos[i] = pos + i;
    }
    if (d->embed->half)
        for (int i = 0; i < n; i++)
            half_to_f32(d->x + (size_t)i * H, d->embed->half + (size_t)d->ids[i] * H, (size_t)H,
                        d->embed->half_kind);
    else
        embedding_forward(d->x, d->ids, d->embed->data, n, H, 0);
    for (int l = 0; l < d->L; l++) {
        dec_layer *ly = &d->layers[l];
        float *kn = ly->k + (size_t)pos * d->kvd, *vn = ly->v + (size_t)pos * d->kvd;
        rmsnorm_forward(d->xn, d->rstd, d->x, ly->ln1, n, H, d->eps);
        linear_forward(&ly->lin[LLAMA_Q], d->q, d->xn, n, acts, sc, &m->flops);
        linear_forward(&ly->lin[LLAMA_K], kn, d->xn, n, acts, sc, &m->flops);
        linear_forward(&ly->lin[LLAMA_V], vn, d->xn, n, acts, sc, &m->flops);
        rope_forward(d->q, d->pos, d->cos_t, d->sin_t, n, d->nh, d->hd);
        rope_forward(kn, d->pos, d->cos_t, d->sin_t, n, d->nkv, d->hd);
        cached_attention(d, ly, n);
        linear_forward(&ly->lin[LLAMA_O], d->h, d->ctx, n, acts, sc, &m->flops);
        add_rows(d->h, d->x, (size_t)n * H);
        rmsnorm_forward(d->xn, d->rstd, d->h, ly->ln2, n, H, d->eps);
        linear_forward(&ly->lin[LLAMA_GATE], d->g, d->xn, n, acts, sc, &m->flops);
        linear_forward(&ly->lin[LLAMA_UP], d->u, d->xn, n, acts, sc, &m->flops);
        swiglu_forward(d->g, d->g, d->u, (size_t)n * I);
        linear_forward(&ly->lin[LLAMA_DOWN], d->x, d->g, n, acts, sc, &m->flops);
        add_rows(d->x, d->h, (size_t)n * H);
    }
    const float *last = d->x + (size_t)(n - 1) * H;
    rmsnorm_forward(d->xn, d->rstd, last, d->norm, 1, H, d->eps);
    gemm(&m->flops, FLOP_FORWARD, false, true, 1, d->V, H, 1.0f, d->xn, H, param_f32(d->head, wide),
         H, 0.0f, logits, d->V);
    return 0;
}

const aflo_decoder llama_decoder = {
    .open = llama_dec_open,
    .append = llama_dec_append,
    .close = llama_dec_close,
};
