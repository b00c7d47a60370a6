/* model.c — the BERT encoder with adapters: tensor table, forward, backward.
 *
 * Data flow of one block (post-LN, as BERT), N = batch*seq tokens:
 *   q,k,v  = linear(x)                       (adapted)
 *   ctx    = dropout(softmax(q k^T/sqrt(d) + mask)) v      per (batch, head)
 *   res1   = dropout(linear_attn_out(ctx)) + x;   h1  = LN1(res1)
 *   inter  = linear_intermediate(h1);             g   = gelu(inter)
 *   res2   = dropout(linear_output(g)) + h1;      out = LN2(res2)
 * Saved for backward: q, k, v, softmax probabilities, ctx, res1, h1, inter,
 * res2, out, LN statistics and each adapter's h1/h3. g is recomputed from
 * inter in backward (cheap elementwise) instead of kept: N*I floats a layer.
 *
 * Head: pooled = tanh(W_p x[CLS] + b_p) -> dropout -> logits = W_c pooled + b_c. */
#include "model.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linear.h"
#include "ops.h"
#include "rng.h"

const char *const method_names[METHOD_COUNT] = {"aflora", "elora", "lora", "full"};
const char *const projections_names[PROJ_COUNT] = {"ffn", "all", "none"};

const aflo_module_info module_info[MOD_COUNT] = {
    [MOD_QUERY]        = {"attention.self.query", "query", "query", false},
    [MOD_KEY]          = {"attention.self.key", "key", "key", false},
    [MOD_VALUE]        = {"attention.self.value", "value", "value", false},
    [MOD_ATTN_OUT]     = {"attention.output.dense", "attention.output.dense", "attn_out", false},
    [MOD_INTERMEDIATE] = {"intermediate.dense", "intermediate.dense", "intermediate", true},
    [MOD_OUTPUT]       = {"output.dense", "output.dense", "output", true},
};

/* BERT's initializer_range: base weights and a fresh head start N(0, 0.02). */
#define INIT_STD 0.02f
/* aflora.md §2: s_d starts at 0.1, s_b at 0 (the adapter starts as no change). */
#define INIT_SD 0.1f
#define INIT_SB 0.0f

/* Dropout sites, to give every dropout call its own mask stream. */
enum { SITE_EMB, SITE_ATTN_PROBS, SITE_ATTN_OUT, SITE_FFN_OUT, SITE_HEAD };

typedef struct {
    aflo_linear lin[MOD_COUNT];
    aflo_param *ln1_w, *ln1_b, *ln2_w, *ln2_b;
} aflo_layer;

typedef struct {
    float *q, *k, *v, *probs, *ctx, *res1, *mean1, *rstd1, *h1, *inter, *res2, *mean2, *rstd2,
        *out;
    aflo_linear_acts ad[MOD_COUNT];
} layer_acts;

struct aflo_model {
    aflo_config cfg;
    aflo_adapter_config ac;
    aflo_task task;
    int num_labels;
    int H, I, nh, hd, L;

    aflo_param *params;
    int nparams, params_cap;
    float *base_arena, *train_arena, *grad_arena;
    size_t base_floats, train_floats, grad_floats;

    aflo_param *word_emb, *pos_emb, *type_emb, *emb_ln_w, *emb_ln_b;
    aflo_layer *layers;
    aflo_param *pool_w, *pool_b, *cls_w, *cls_b;

    /* activations */
    float *act_arena;
    size_t act_floats;
    int max_batch, max_seq;
    float *emb_in, *emb_mean, *emb_rstd, *x0;
    layer_acts *la;
    float *cls, *pooled, *pooled_drop, *logits, *probs_cls;
    float *scratch_big, *scratch_h, *scratch_out, *scratch_r, *scratch_or, *scratch_ss,
        *scratch_ss2;
    float *d_cur, *d_prev, *d_tmp, *d_h1, *d_big, *dq, *dk, *dv, *dctx;
    int32_t *pos_ids, *type_ids, *ids, *labels;
    uint8_t *mask;
    float *targets;

    /* the current batch */
    int B, S, N;
    bool has_labels;
    bool dropout;
    uint64_t dropout_key;
    aflo_flops flops;
};

/* ---------------------------------------------------------------- tensor table */

enum { ARENA_BASE, ARENA_TRAIN };

typedef struct { size_t offset; int arena; } param_slot;

static aflo_param *add_param(aflo_model *m, param_slot *slots, size_t *sizes, const char *name,
                             int rows, int cols, aflo_param_group group, aflo_param_role role,
                             int layer, int module) {
    assert(m->nparams < m->params_cap);   /* params_cap counts every tensor build_table adds */
    aflo_param *p = &m->params[m->nparams];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = rows > 0 ? 2 : 1;
    p->shape[0] = rows > 0 ? rows : cols;
    p->shape[1] = rows > 0 ? cols : 0;
    p->size = (size_t)(rows > 0 ? rows : 1) * (size_t)cols;
    p->group = group;
    p->role = role;
    p->layer = layer;
    p->module = module;
    int arena = group == PGROUP_BASE ? ARENA_BASE : ARENA_TRAIN;
    slots[m->nparams].arena = arena;
    slots[m->nparams].offset = sizes[arena];
    sizes[arena] += p->size;
    m->nparams++;
    return p;
}

static bool base_trains(const aflo_model *m) { return m->ac.method == METHOD_FULL; }

static bool projection_trains(const aflo_model *m, int module) {
    switch (m->ac.method) {
    case METHOD_LORA: return true;
    case METHOD_ELORA: return false;
    case METHOD_FULL: return false;
    case METHOD_AFLORA:
        switch (m->ac.projections) {
        case PROJ_ALL: return true;
        case PROJ_NONE: return false;
        case PROJ_FFN: return module_info[module].ffn;
        default: return false;
        }
    default: return false;
    }
}

static int build_table(aflo_model *m, param_slot *slots) {
    int H = m->H, I = m->I, V = m->cfg.vocab_size;
    size_t sizes[2] = {0, 0};
    char name[96];
    bool adapters = m->ac.method != METHOD_FULL;
    bool vectors = m->ac.method == METHOD_AFLORA || m->ac.method == METHOD_ELORA;
    int r = m->ac.rank;

    m->word_emb = add_param(m, slots, sizes, "embeddings.word_embeddings.weight", V, H,
                            PGROUP_BASE, PROLE_EMBEDDING, -1, -1);
    m->pos_emb = add_param(m, slots, sizes, "embeddings.position_embeddings.weight",
                           m->cfg.max_position_embeddings, H, PGROUP_BASE, PROLE_EMBEDDING, -1, -1);
    m->type_emb = add_param(m, slots, sizes, "embeddings.token_type_embeddings.weight",
                            m->cfg.type_vocab_size, H, PGROUP_BASE, PROLE_EMBEDDING, -1, -1);
    m->emb_ln_w = add_param(m, slots, sizes, "embeddings.LayerNorm.weight", 0, H, PGROUP_BASE,
                            PROLE_NORM_WEIGHT, -1, -1);
    m->emb_ln_b = add_param(m, slots, sizes, "embeddings.LayerNorm.bias", 0, H, PGROUP_BASE,
                            PROLE_NORM_BIAS, -1, -1);

    for (int l = 0; l < m->L; l++) {
        aflo_layer *ly = &m->layers[l];
        for (int mod = 0; mod < MOD_COUNT; mod++) {
            aflo_linear *lin = &ly->lin[mod];
            lin->in = mod == MOD_OUTPUT ? I : H;
            lin->out = mod == MOD_INTERMEDIATE ? I : H;
            const char *path = module_info[mod].path;
            snprintf(name, sizeof name, "encoder.layer.%d.%s.weight", l, path);
            lin->W = add_param(m, slots, sizes, name, lin->out, lin->in, PGROUP_BASE, PROLE_WEIGHT,
                               l, mod);
            snprintf(name, sizeof name, "encoder.layer.%d.%s.bias", l, path);
            lin->b = add_param(m, slots, sizes, name, 0, lin->out, PGROUP_BASE, PROLE_BIAS, l, mod);
            if (mod == MOD_ATTN_OUT || mod == MOD_OUTPUT) {
                const char *ln = mod == MOD_ATTN_OUT ? "attention.output" : "output";
                aflo_param **w = mod == MOD_ATTN_OUT ? &ly->ln1_w : &ly->ln2_w;
                aflo_param **b = mod == MOD_ATTN_OUT ? &ly->ln1_b : &ly->ln2_b;
                snprintf(name, sizeof name, "encoder.layer.%d.%s.LayerNorm.weight", l, ln);
                *w = add_param(m, slots, sizes, name, 0, H, PGROUP_BASE, PROLE_NORM_WEIGHT, l, -1);
                snprintf(name, sizeof name, "encoder.layer.%d.%s.LayerNorm.bias", l, ln);
                *b = add_param(m, slots, sizes, name, 0, H, PGROUP_BASE, PROLE_NORM_BIAS, l, -1);
            }
            lin->scale = 1.0f;
            lin->rank = 0;
            if (!adapters || !(m->ac.targets & (1u << mod))) continue;
            lin->rank = r;
            snprintf(name, sizeof name, "encoder.layer.%d.%s.lora_A", l, path);
            lin->A = add_param(m, slots, sizes, name, r, lin->in, PGROUP_ADAPTER, PROLE_A, l, mod);
            snprintf(name, sizeof name, "encoder.layer.%d.%s.lora_B", l, path);
            lin->B = add_param(m, slots, sizes, name, lin->out, r, PGROUP_ADAPTER, PROLE_B, l, mod);
            if (vectors) {
                snprintf(name, sizeof name, "encoder.layer.%d.%s.s_d", l, path);
                lin->sd = add_param(m, slots, sizes, name, 0, r, PGROUP_ADAPTER, PROLE_SD, l, mod);
                snprintf(name, sizeof name, "encoder.layer.%d.%s.s_b", l, path);
                lin->sb = add_param(m, slots, sizes, name, 0, lin->out, PGROUP_ADAPTER, PROLE_SB,
                                    l, mod);
            } else {
                lin->scale = m->ac.alpha / (float)r;
            }
        }
    }
    m->pool_w = add_param(m, slots, sizes, "pooler.dense.weight", H, H, PGROUP_HEAD, PROLE_WEIGHT,
                          -1, -1);
    m->pool_b = add_param(m, slots, sizes, "pooler.dense.bias", 0, H, PGROUP_HEAD, PROLE_BIAS, -1,
                          -1);
    m->cls_w = add_param(m, slots, sizes, "classifier.weight", m->num_labels, H, PGROUP_HEAD,
                         PROLE_WEIGHT, -1, -1);
    m->cls_b = add_param(m, slots, sizes, "classifier.bias", 0, m->num_labels, PGROUP_HEAD,
                         PROLE_BIAS, -1, -1);
    m->base_floats = sizes[ARENA_BASE];
    m->train_floats = sizes[ARENA_TRAIN];
    return 0;
}

static bool param_initially_trainable(const aflo_model *m, const aflo_param *p) {
    switch (p->group) {
    case PGROUP_BASE: return base_trains(m);
    case PGROUP_HEAD: return true;
    case PGROUP_ADAPTER:
        if (p->role == PROLE_A || p->role == PROLE_B) return projection_trains(m, p->module);
        return true; /* s_d, s_b */
    }
    return false;
}

/* Each tensor draws from its own stream, seeded by (seed, its index), so a
 * tensor's initial values do not depend on which others were initialised —
 * a loaded model's fresh head equals a random model's head. */
static void init_weights(aflo_model *m, uint64_t seed, bool init_base) {
    aflo_rng rng;
    for (int i = 0; i < m->nparams; i++) {
        aflo_param *p = &m->params[i];
        if (!init_base && p->group == PGROUP_BASE) continue;
        rng_seed(&rng, rng_hash(seed, (uint64_t)i));
        float *d = p->data;
        switch (p->role) {
        case PROLE_WEIGHT:
        case PROLE_EMBEDDING:
            for (size_t j = 0; j < p->size; j++) d[j] = INIT_STD * rng_normal(&rng);
            break;
        case PROLE_NORM_WEIGHT:
            for (size_t j = 0; j < p->size; j++) d[j] = 1.0f;
            break;
        case PROLE_BIAS:
        case PROLE_NORM_BIAS:
            break; /* arenas are zeroed */
        case PROLE_A:
        case PROLE_B: {
            /* fan_in = in for A (r x in) and r for B (out x r): the second dimension. */
            float fan_in = (float)p->shape[1];
            bool lora = m->ac.method == METHOD_LORA;
            if (lora && p->role == PROLE_B) break; /* LoRA: B = 0 */
            /* AFLoRA/ELoRA: Kaiming-uniform with gain sqrt(2), bound sqrt(6/fan_in)
             * (aflora.md §2). LoRA: PyTorch's kaiming_uniform_(a=sqrt(5)), bound 1/sqrt(fan_in). */
            float bound = lora ? 1.0f / sqrtf(fan_in) : sqrtf(6.0f / fan_in);
            for (size_t j = 0; j < p->size; j++) d[j] = rng_uniform_range(&rng, -bound, bound);
            break;
        }
        case PROLE_SD:
            for (size_t j = 0; j < p->size; j++) d[j] = INIT_SD;
            break;
        case PROLE_SB:
            for (size_t j = 0; j < p->size; j++) d[j] = INIT_SB;
            break;
        }
    }
}

aflo_model *model_create(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                         int num_labels, uint64_t seed, char *err, size_t errlen) {
    return model_create_ex(c, ac, task, num_labels, seed, true, err, errlen);
}

aflo_model *model_create_ex(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                            int num_labels, uint64_t seed, bool init_base, char *err,
                            size_t errlen) {
    if (config_validate(c, err, errlen) != 0) return NULL;
    if (ac->method < 0 || ac->method >= METHOD_COUNT) {
        snprintf(err, errlen, "method: unknown value %d", (int)ac->method);
        return NULL;
    }
    if (ac->method != METHOD_FULL && (ac->rank < 1 || ac->rank > 65536)) {
        snprintf(err, errlen, "rank: must be between 1 and 65536, got %d", ac->rank);
        return NULL;
    }
    if (ac->method != METHOD_FULL && (ac->targets & ALL_MODULES) == 0) {
        snprintf(err, errlen, "target_modules: no module selected");
        return NULL;
    }
    if (task == TASK_REGRESSION ? num_labels != 1 : (num_labels < 2 || num_labels > 100000)) {
        snprintf(err, errlen, "num_labels: %d is not valid for %s", num_labels,
                 task == TASK_REGRESSION ? "regression (must be 1)" : "classification (>= 2)");
        return NULL;
    }
    aflo_model *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->cfg = *c;
    m->ac = *ac;
    m->ac.targets &= ALL_MODULES;
    m->task = task;
    m->num_labels = num_labels;
    m->H = c->hidden_size;
    m->I = c->intermediate_size;
    m->nh = c->num_attention_heads;
    m->hd = m->H / m->nh;
    m->L = c->num_hidden_layers;
    m->params_cap = 5 + m->L * (MOD_COUNT * 6 + 4) + 4;
    m->params = calloc((size_t)m->params_cap, sizeof *m->params);
    m->layers = calloc((size_t)m->L, sizeof *m->layers);
    param_slot *slots = calloc((size_t)m->params_cap, sizeof *slots);
    if (!m->params || !m->layers || !slots) {
        free(slots);
        goto oom;
    }
    build_table(m, slots);

    m->base_arena = calloc(m->base_floats, sizeof(float));
    m->train_arena = calloc(m->train_floats, sizeof(float));
    if (!m->base_arena || !m->train_arena) {
        free(slots);
        goto oom;
    }
    for (int i = 0; i < m->nparams; i++) {
        aflo_param *p = &m->params[i];
        p->data = (slots[i].arena == ARENA_BASE ? m->base_arena : m->train_arena) + slots[i].offset;
        p->trainable = param_initially_trainable(m, p);
        if (p->trainable) m->grad_floats += p->size;
    }
    free(slots);
    m->grad_arena = calloc(m->grad_floats ? m->grad_floats : 1, sizeof(float));
    if (!m->grad_arena) goto oom;
    size_t off = 0;
    for (int i = 0; i < m->nparams; i++) {
        aflo_param *p = &m->params[i];
        if (!p->trainable) continue;
        p->grad = m->grad_arena + off;
        off += p->size;
    }
    assert(off == m->grad_floats);
    init_weights(m, seed, init_base);
    return m;
oom:
    snprintf(err, errlen, "out of memory building the model");
    model_free(m);
    return NULL;
}

void model_free(aflo_model *m) {
    if (!m) return;
    free(m->params);
    free(m->layers);
    free(m->base_arena);
    free(m->train_arena);
    free(m->grad_arena);
    free(m->act_arena);
    free(m->la);
    free(m);
}

const aflo_config *model_config(const aflo_model *m) { return &m->cfg; }
const aflo_adapter_config *model_adapter_config(const aflo_model *m) { return &m->ac; }
aflo_task model_task(const aflo_model *m) { return m->task; }
int model_num_labels(const aflo_model *m) { return m->num_labels; }
int model_param_count(const aflo_model *m) { return m->nparams; }
aflo_param *model_param(aflo_model *m, int i) { return &m->params[i]; }
const float *model_logits(const aflo_model *m) { return m->logits; }
aflo_flops *model_flops(aflo_model *m) { return &m->flops; }

aflo_param *model_find_param(aflo_model *m, const char *name) {
    static const char *const prefixes[] = {"bert.", "roberta."};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(name, prefixes[i], n) == 0) {
            name += n;
            break;
        }
    }
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

int model_set_tensor(aflo_model *m, const char *name, const float *data, size_t n, char *err,
                     size_t errlen) {
    aflo_param *p = model_find_param(m, name);
    if (!p) {
        snprintf(err, errlen, "tensor %s: not part of this model", name);
        return -1;
    }
    if (n != p->size) {
        snprintf(err, errlen, "tensor %s: expected %zu values, got %zu", name, p->size, n);
        return -1;
    }
    memcpy(p->data, data, n * sizeof(float));
    return 0;
}

void model_freeze_param(aflo_model *m, aflo_param *p) {
    (void)m;
    p->trainable = false;
}

size_t model_trainable_elements(const aflo_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].trainable) n += m->params[i].size;
    return n;
}

void model_zero_grad(aflo_model *m) {
    memset(m->grad_arena, 0, (m->grad_floats ? m->grad_floats : 1) * sizeof(float));
}

void model_set_dropout(aflo_model *m, bool enabled) { m->dropout = enabled; }
void model_set_dropout_key(aflo_model *m, uint64_t key) { m->dropout_key = key; }

aflo_memory model_memory(const aflo_model *m) {
    aflo_memory mem = {
        .base = m->base_floats * sizeof(float),
        .trainable = m->train_floats * sizeof(float),
        .grads = m->grad_floats * sizeof(float),
        .activations = m->act_floats * sizeof(float),
    };
    return mem;
}

/* ---------------------------------------------------------------- activations */

/* One pass assigns pointers when base != NULL, else only counts floats.
 * Integer buffers are carved from the same arena (int32 and float share size). */
static size_t layout_activations(aflo_model *m, float *base, int Bm, int Sm) {
    size_t off = 0;
    size_t N = (size_t)Bm * Sm, H = (size_t)m->H, I = (size_t)m->I, r = (size_t)m->ac.rank;
    size_t maxdim = H > I ? H : I;
#define TAKE(ptr, count)                                        \
    do {                                                        \
        if (base) (ptr) = base + off;                           \
        off += ((size_t)(count) + 15) & ~(size_t)15; /* 64 B */ \
    } while (0)
#define TAKE_INT(ptr, count)                                    \
    do {                                                        \
        if (base) (ptr) = (void *)(base + off);                 \
        off += ((size_t)(count) + 15) & ~(size_t)15;            \
    } while (0)
    TAKE(m->emb_in, N * H);
    TAKE(m->emb_mean, N);
    TAKE(m->emb_rstd, N);
    TAKE(m->x0, N * H);
    for (int l = 0; l < m->L; l++) {
        layer_acts *a = base ? &m->la[l] : NULL;
        layer_acts dummy;
        if (!a) a = &dummy;
        TAKE(a->q, N * H);
        TAKE(a->k, N * H);
        TAKE(a->v, N * H);
        TAKE(a->probs, (size_t)Bm * m->nh * Sm * Sm);
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
        for (int mod = 0; mod < MOD_COUNT; mod++) {
            const aflo_linear *lin = &m->layers[l].lin[mod];
            a->ad[mod].h1 = a->ad[mod].h3 = NULL;
            if (!linear_adapted(lin)) continue;
            TAKE(a->ad[mod].h1, N * r);
            if (lin->sb && !linear_folds_sb(lin)) TAKE(a->ad[mod].h3, N * (size_t)lin->out);
        }
    }
    size_t BL = (size_t)Bm * m->num_labels;
    TAKE(m->cls, (size_t)Bm * H);
    TAKE(m->pooled, (size_t)Bm * H);
    TAKE(m->pooled_drop, (size_t)Bm * H);
    TAKE(m->logits, BL);
    TAKE(m->probs_cls, BL);
    TAKE(m->scratch_big, N * I);
    TAKE(m->scratch_h, N * H);
    TAKE(m->scratch_out, N * maxdim);
    TAKE(m->scratch_r, 2 * N * (r ? r : 1));
    TAKE(m->scratch_or, 2 * maxdim * (r ? r : 1));
    TAKE(m->scratch_ss, (size_t)Sm * Sm);
    TAKE(m->scratch_ss2, (size_t)Sm * Sm);
    TAKE(m->d_cur, N * H);
    TAKE(m->d_prev, N * H);
    TAKE(m->d_tmp, N * H);
    TAKE(m->d_h1, N * H);
    TAKE(m->d_big, N * I);
    TAKE(m->dq, N * H);
    TAKE(m->dk, N * H);
    TAKE(m->dv, N * H);
    TAKE(m->dctx, N * H);
    TAKE_INT(m->pos_ids, N);
    TAKE_INT(m->type_ids, N);
    TAKE_INT(m->ids, N);
    TAKE_INT(m->mask, N);
    TAKE_INT(m->labels, Bm);
    TAKE(m->targets, Bm);
#undef TAKE
#undef TAKE_INT
    return off;
}

int model_reserve(aflo_model *m, int batch, int seq, char *err, size_t errlen) {
    if (batch < 1 || seq < 1) {
        snprintf(err, errlen, "batch (%d) and sequence length (%d) must be positive", batch, seq);
        return -1;
    }
    if (m->act_arena && batch <= m->max_batch && seq <= m->max_seq) return 0;
    if (batch < m->max_batch) batch = m->max_batch;
    if (seq < m->max_seq) seq = m->max_seq;
    size_t need = layout_activations(m, NULL, batch, seq);
    float *arena = malloc(need * sizeof(float));
    layer_acts *la = calloc((size_t)m->L, sizeof *la);
    if (!arena || !la) {
        free(arena);
        free(la);
        snprintf(err, errlen, "out of memory: activations for batch %d x seq %d need %zu MiB",
                 batch, seq, need * sizeof(float) >> 20);
        return -1;
    }
    free(m->act_arena);
    free(m->la);
    m->act_arena = arena;
    m->la = la;
    m->act_floats = need;
    m->max_batch = batch;
    m->max_seq = seq;
    size_t carved = layout_activations(m, arena, batch, seq);
    assert(carved == need);   /* the carving pass stays inside what the counting pass sized */
    (void)carved;
    return 0;
}

/* ---------------------------------------------------------------- forward */

static float drop_p(const aflo_model *m, float p) { return m->dropout ? p : 0.0f; }

static uint64_t dstream(int layer, int site, int sub) {
    return ((uint64_t)(layer + 1) << 24) | ((uint64_t)site << 20) | (uint64_t)sub;
}

static int load_batch(aflo_model *m, const aflo_batch *b, char *err, size_t errlen) {
    if (b->batch < 1 || b->seq < 1 || b->batch > m->max_batch || b->seq > m->max_seq) {
        snprintf(err, errlen, "batch %d x %d exceeds the reserved %d x %d", b->batch, b->seq,
                 m->max_batch, m->max_seq);
        return -1;
    }
    m->B = b->batch;
    m->S = b->seq;
    m->N = b->batch * b->seq;
    const aflo_config *c = &m->cfg;
    for (int bi = 0; bi < m->B; bi++) {
        int running = 0;
        for (int s = 0; s < m->S; s++) {
            int i = bi * m->S + s;
            int32_t id = b->input_ids[i];
            int32_t tt = b->token_type_ids ? b->token_type_ids[i] : 0;
            if (id < 0 || id >= c->vocab_size) {
                snprintf(err, errlen, "input id %d at [%d,%d] outside vocabulary of %d", id, bi, s,
                         c->vocab_size);
                return -1;
            }
            if (tt < 0 || tt >= c->type_vocab_size) {
                snprintf(err, errlen, "token type %d at [%d,%d] outside 0..%d", tt, bi, s,
                         c->type_vocab_size - 1);
                return -1;
            }
            int pos;
            if (c->roberta_positions) {
                /* HF create_position_ids_from_input_ids: padding keeps pad_token_id. */
                bool real = id != c->pad_token_id;
                running += real;
                pos = real ? c->pad_token_id + running : c->pad_token_id;
            } else {
                pos = s;
            }
            if (pos >= c->max_position_embeddings) {
                snprintf(err, errlen, "sequence of %d tokens exceeds max_position_embeddings %d",
                         m->S, c->max_position_embeddings);
                return -1;
            }
            m->ids[i] = id;
            m->type_ids[i] = tt;
            m->pos_ids[i] = pos;
            m->mask[i] = b->attention_mask ? (b->attention_mask[i] != 0) : 1;
        }
        if (!m->mask[bi * m->S]) {
            snprintf(err, errlen, "sequence %d: first token is masked out", bi);
            return -1;
        }
    }
    m->has_labels = false;
    if (m->task == TASK_CLASSIFICATION && b->labels) {
        for (int bi = 0; bi < m->B; bi++) {
            if (b->labels[bi] < 0 || b->labels[bi] >= m->num_labels) {
                snprintf(err, errlen, "label %d of example %d outside 0..%d", b->labels[bi], bi,
                         m->num_labels - 1);
                return -1;
            }
            m->labels[bi] = b->labels[bi];
        }
        m->has_labels = true;
    } else if (m->task == TASK_REGRESSION && b->targets) {
        memcpy(m->targets, b->targets, (size_t)m->B * sizeof(float));
        m->has_labels = true;
    }
    return 0;
}

static aflo_linear_scratch lin_scratch(const aflo_model *m) {
    return (aflo_linear_scratch){.r2 = m->scratch_r, .out = m->scratch_out, .or2 = m->scratch_or};
}

static void attention_forward(aflo_model *m, int l, layer_acts *a) {
    int S = m->S, H = m->H, hd = m->hd;
    float scale = 1.0f / sqrtf((float)hd);
    float p = drop_p(m, m->cfg.attention_probs_dropout_prob);
    for (int b = 0; b < m->B; b++) {
        for (int h = 0; h < m->nh; h++) {
            size_t tok = (size_t)b * S * H + (size_t)h * hd;
            float *P = a->probs + ((size_t)b * m->nh + h) * S * S;
            gemm(&m->flops, FLOP_FORWARD, false, true, S, S, hd, scale, a->q + tok, H, a->k + tok,
                 H, 0.0f, P, S);
            softmax_forward(P, P, m->mask + (size_t)b * S, S, S);
            const float *Pd = P;
            if (p > 0.0f) {
                dropout_forward(m->scratch_ss, P, (size_t)S * S, p, m->dropout_key,
                                dstream(l, SITE_ATTN_PROBS, b * m->nh + h));
                Pd = m->scratch_ss;
            }
            gemm(&m->flops, FLOP_FORWARD, false, false, S, hd, S, 1.0f, Pd, S, a->v + tok, H, 0.0f,
                 a->ctx + tok, H);
        }
    }
}

/* x + dropout(y) into out. */
static void residual_dropout(float *out, float *y, const float *x, size_t n, float p, uint64_t key,
                             uint64_t stream) {
    dropout_forward(y, y, n, p, key, stream);
    #pragma omp parallel for schedule(static) if (n >= 32768)
    for (size_t i = 0; i < n; i++) out[i] = x[i] + y[i];
}

static void layer_forward(aflo_model *m, int l, const float *x) {
    aflo_layer *ly = &m->layers[l];
    layer_acts *a = &m->la[l];
    int N = m->N, H = m->H, I = m->I;
    float ph = drop_p(m, m->cfg.hidden_dropout_prob);
    float *qkv[3] = {a->q, a->k, a->v};
    for (int mod = MOD_QUERY; mod <= MOD_VALUE; mod++)
        linear_forward(&ly->lin[mod], qkv[mod], x, N, a->ad[mod], lin_scratch(m), &m->flops);
    attention_forward(m, l, a);

    linear_forward(&ly->lin[MOD_ATTN_OUT], m->scratch_h, a->ctx, N, a->ad[MOD_ATTN_OUT],
                   lin_scratch(m), &m->flops);
    residual_dropout(a->res1, m->scratch_h, x, (size_t)N * H, ph, m->dropout_key,
                     dstream(l, SITE_ATTN_OUT, 0));
    layernorm_forward(a->h1, a->mean1, a->rstd1, a->res1, ly->ln1_w->data, ly->ln1_b->data, N, H,
                      m->cfg.layer_norm_eps);

    linear_forward(&ly->lin[MOD_INTERMEDIATE], a->inter, a->h1, N, a->ad[MOD_INTERMEDIATE],
                   lin_scratch(m), &m->flops);
    gelu_forward(m->scratch_big, a->inter, (size_t)N * I);
    linear_forward(&ly->lin[MOD_OUTPUT], m->scratch_h, m->scratch_big, N, a->ad[MOD_OUTPUT],
                   lin_scratch(m), &m->flops);
    residual_dropout(a->res2, m->scratch_h, a->h1, (size_t)N * H, ph, m->dropout_key,
                     dstream(l, SITE_FFN_OUT, 0));
    layernorm_forward(a->out, a->mean2, a->rstd2, a->res2, ly->ln2_w->data, ly->ln2_b->data, N, H,
                      m->cfg.layer_norm_eps);
}

int model_forward(aflo_model *m, const aflo_batch *b, float *loss, char *err, size_t errlen) {
    if (loss) *loss = 0.0f;
    if (!m->act_arena && model_reserve(m, b->batch, b->seq, err, errlen) != 0) return -1;
    if (load_batch(m, b, err, errlen) != 0) return -1;
    int N = m->N, H = m->H, B = m->B, L = m->num_labels;
    float ph = drop_p(m, m->cfg.hidden_dropout_prob);

    embedding_forward(m->emb_in, m->ids, m->word_emb->data, N, H, 0);
    embedding_forward(m->emb_in, m->pos_ids, m->pos_emb->data, N, H, 1);
    embedding_forward(m->emb_in, m->type_ids, m->type_emb->data, N, H, 1);
    layernorm_forward(m->x0, m->emb_mean, m->emb_rstd, m->emb_in, m->emb_ln_w->data,
                      m->emb_ln_b->data, N, H, m->cfg.layer_norm_eps);
    dropout_forward(m->x0, m->x0, (size_t)N * H, ph, m->dropout_key, dstream(-1, SITE_EMB, 0));

    const float *x = m->x0;
    for (int l = 0; l < m->L; l++) {
        layer_forward(m, l, x);
        x = m->la[l].out;
    }
    for (int bi = 0; bi < B; bi++)
        memcpy(m->cls + (size_t)bi * H, x + (size_t)bi * m->S * H, (size_t)H * sizeof(float));
    gemm(&m->flops, FLOP_FORWARD, false, true, B, H, H, 1.0f, m->cls, H, m->pool_w->data, H, 0.0f,
         m->pooled, H);
    bias_forward(m->pooled, m->pool_b->data, B, H);
    tanh_forward(m->pooled, m->pooled, (size_t)B * H);
    dropout_forward(m->pooled_drop, m->pooled, (size_t)B * H, ph, m->dropout_key,
                    dstream(-1, SITE_HEAD, 0));
    gemm(&m->flops, FLOP_FORWARD, false, true, B, L, H, 1.0f, m->pooled_drop, H, m->cls_w->data,
         H, 0.0f, m->logits, L);
    bias_forward(m->logits, m->cls_b->data, B, L);

    if (m->has_labels && loss) {
        *loss = m->task == TASK_CLASSIFICATION
                    ? cross_entropy_forward(m->probs_cls, m->logits, m->labels, B, L)
                    : mse_forward(m->logits, m->targets, B);
    }
    return 0;
}

/* ---------------------------------------------------------------- backward */

static void attention_backward(aflo_model *m, int l, layer_acts *a) {
    int S = m->S, H = m->H, hd = m->hd;
    float scale = 1.0f / sqrtf((float)hd);
    float p = drop_p(m, m->cfg.attention_probs_dropout_prob);
    for (int b = 0; b < m->B; b++) {
        for (int h = 0; h < m->nh; h++) {
            size_t tok = (size_t)b * S * H + (size_t)h * hd;
            const float *P = a->probs + ((size_t)b * m->nh + h) * S * S;
            uint64_t stream = dstream(l, SITE_ATTN_PROBS, b * m->nh + h);
            const float *Pd = P;
            if (p > 0.0f) {
                dropout_forward(m->scratch_ss, P, (size_t)S * S, p, m->dropout_key, stream);
                Pd = m->scratch_ss;
            }
            float *dP = m->scratch_ss2;
            /* dPd = dctx V^T ; dV = Pd^T dctx */
            gemm(&m->flops, FLOP_BACKWARD_INPUT, false, true, S, S, hd, 1.0f, m->dctx + tok, H,
                 a->v + tok, H, 0.0f, dP, S);
            gemm(&m->flops, FLOP_BACKWARD_INPUT, true, false, S, hd, S, 1.0f, Pd, S, m->dctx + tok,
                 H, 0.0f, m->dv + tok, H);
            if (p > 0.0f) dropout_backward(dP, dP, (size_t)S * S, p, m->dropout_key, stream);
            softmax_backward(dP, P, dP, S, S);
            /* scores = scale * q k^T: dq = scale dS k ; dk = scale dS^T q */
            gemm(&m->flops, FLOP_BACKWARD_INPUT, false, false, S, hd, S, scale, dP, S, a->k + tok,
                 H, 0.0f, m->dq + tok, H);
            gemm(&m->flops, FLOP_BACKWARD_INPUT, true, false, S, hd, S, scale, dP, S, a->q + tok,
                 H, 0.0f, m->dk + tok, H);
        }
    }
}

static float *grad_of(const aflo_param *p) { return p->trainable ? p->grad : NULL; }

/* d_cur holds dLoss/d(out of layer l); leaves dLoss/d(input of layer l) in
 * d_prev when want_dx. */
static void layer_backward(aflo_model *m, int l, const float *x, bool want_dx) {
    aflo_layer *ly = &m->layers[l];
    layer_acts *a = &m->la[l];
    int N = m->N, H = m->H, I = m->I;
    size_t NH = (size_t)N * H;
    float ph = drop_p(m, m->cfg.hidden_dropout_prob);

    /* out = LN2(res2): dres2 -> d_tmp */
    layernorm_backward(m->d_tmp, grad_of(ly->ln2_w), grad_of(ly->ln2_b), m->d_cur, a->res2,
                       a->mean2, a->rstd2, ly->ln2_w->data, N, H);
    /* res2 = dropout(o) + h1 */
    memcpy(m->d_h1, m->d_tmp, NH * sizeof(float));
    dropout_backward(m->d_tmp, m->d_tmp, NH, ph, m->dropout_key, dstream(l, SITE_FFN_OUT, 0));
    gelu_forward(m->scratch_big, a->inter, (size_t)N * I);
    linear_backward(&ly->lin[MOD_OUTPUT], m->d_big, false, m->d_tmp, m->scratch_big, N,
                    a->ad[MOD_OUTPUT], lin_scratch(m), &m->flops);
    gelu_backward(m->d_big, a->inter, m->d_big, (size_t)N * I);
    linear_backward(&ly->lin[MOD_INTERMEDIATE], m->d_h1, true, m->d_big, a->h1, N,
                    a->ad[MOD_INTERMEDIATE], lin_scratch(m), &m->flops);

    /* h1 = LN1(res1): dres1 -> d_tmp; res1 = dropout(ao) + x */
    layernorm_backward(m->d_tmp, grad_of(ly->ln1_w), grad_of(ly->ln1_b), m->d_h1, a->res1,
                       a->mean1, a->rstd1, ly->ln1_w->data, N, H);
    if (want_dx) memcpy(m->d_prev, m->d_tmp, NH * sizeof(float));
    dropout_backward(m->d_tmp, m->d_tmp, NH, ph, m->dropout_key, dstream(l, SITE_ATTN_OUT, 0));
    linear_backward(&ly->lin[MOD_ATTN_OUT], m->dctx, false, m->d_tmp, a->ctx, N,
                    a->ad[MOD_ATTN_OUT], lin_scratch(m), &m->flops);
    attention_backward(m, l, a);
    float *dqkv[3] = {m->dq, m->dk, m->dv};
    for (int mod = MOD_QUERY; mod <= MOD_VALUE; mod++)
        linear_backward(&ly->lin[mod], want_dx ? m->d_prev : NULL, true, dqkv[mod], x, N,
                        a->ad[mod], lin_scratch(m), &m->flops);
}

void model_backward(aflo_model *m, float loss_scale) {
    if (!m->has_labels) return;
    int N = m->N, H = m->H, B = m->B, L = m->num_labels, S = m->S;
    float ph = drop_p(m, m->cfg.hidden_dropout_prob);
    float *dlogits = m->scratch_out; /* B*L floats, far below N*max(H,I) */
    if (m->task == TASK_CLASSIFICATION)
        cross_entropy_backward(dlogits, m->probs_cls, m->labels, B, L, loss_scale);
    else
        mse_backward(dlogits, m->logits, m->targets, B, loss_scale);

    /* classifier */
    if (m->cls_w->trainable)
        gemm(&m->flops, FLOP_BACKWARD_WEIGHT, true, false, L, H, B, 1.0f, dlogits, L,
             m->pooled_drop, H, 1.0f, m->cls_w->grad, H);
    if (m->cls_b->trainable) bias_backward(m->cls_b->grad, dlogits, B, L);
    float *dpooled = m->scratch_h; /* B*H */
    gemm(&m->flops, FLOP_BACKWARD_INPUT, false, false, B, H, L, 1.0f, dlogits, L, m->cls_w->data,
         H, 0.0f, dpooled, H);
    dropout_backward(dpooled, dpooled, (size_t)B * H, ph, m->dropout_key,
                     dstream(-1, SITE_HEAD, 0));
    tanh_backward(dpooled, m->pooled, dpooled, (size_t)B * H);
    if (m->pool_w->trainable)
        gemm(&m->flops, FLOP_BACKWARD_WEIGHT, true, false, H, H, B, 1.0f, dpooled, H, m->cls, H,
             1.0f, m->pool_w->grad, H);
    if (m->pool_b->trainable) bias_backward(m->pool_b->grad, dpooled, B, H);

    /* Does anything below the head train? */
    bool any_below = false;
    for (int i = 0; i < m->nparams && !any_below; i++)
        any_below = m->params[i].trainable && m->params[i].group != PGROUP_HEAD;
    if (!any_below) return;

    /* dcls = dpooled W_p, scattered to each sequence's first token. */
    float *dcls = m->scratch_big; /* B*H floats */
    gemm(&m->flops, FLOP_BACKWARD_INPUT, false, false, B, H, H, 1.0f, dpooled, H, m->pool_w->data,
         H, 0.0f, dcls, H);
    memset(m->d_cur, 0, (size_t)N * H * sizeof(float));
    for (int bi = 0; bi < B; bi++)
        memcpy(m->d_cur + (size_t)bi * S * H, dcls + (size_t)bi * H, (size_t)H * sizeof(float));

    bool emb_trains = m->word_emb->trainable || m->pos_emb->trainable ||
                      m->type_emb->trainable || m->emb_ln_w->trainable || m->emb_ln_b->trainable;
    for (int l = m->L - 1; l >= 0; l--) {
        const float *x = l > 0 ? m->la[l - 1].out : m->x0;
        /* Layer 0's input gradient is only wanted when the embeddings train. */
        bool want_dx = l > 0 || emb_trains;
        layer_backward(m, l, x, want_dx);
        if (!want_dx) return;
        float *t = m->d_cur;
        m->d_cur = m->d_prev;
        m->d_prev = t;
    }
    /* embeddings (full fine-tuning) */
    dropout_backward(m->d_cur, m->d_cur, (size_t)N * H, ph, m->dropout_key,
                     dstream(-1, SITE_EMB, 0));
    layernorm_backward(m->d_tmp, grad_of(m->emb_ln_w), grad_of(m->emb_ln_b), m->d_cur, m->emb_in,
                       m->emb_mean, m->emb_rstd, m->emb_ln_w->data, N, H);
    if (m->word_emb->trainable) embedding_backward(m->word_emb->grad, m->ids, m->d_tmp, N, H);
    if (m->pos_emb->trainable) embedding_backward(m->pos_emb->grad, m->pos_ids, m->d_tmp, N, H);
    if (m->type_emb->trainable) embedding_backward(m->type_emb->grad, m->type_ids, m->d_tmp, N, H);
}
