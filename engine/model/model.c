/* model.c — the family-agnostic half of a model: the tensor table and its
 * arenas, trainable flags and gradients, initialisation, the activation
 * arena, and dispatch to the model's family (family.h) for the rest.
 *
 * Creating a model: pick the family by the config's model_type; the family
 * declares every tensor (model_add_param records each one's arena and
 * offset); the base and trainable arenas are then allocated in one piece
 * each and the tensors pointed into them; trainable flags follow the method
 * (and, for AFLoRA's projections, the family's FFN flags); the gradient
 * arena holds exactly the tensors that start trainable; weights are
 * initialised by role. Reserving activations asks the family's layout for a
 * size, allocates once, and lets the same layout assign the pointers.
 *
 * What this file must never do: know a family's tensor names, shapes or
 * mathematics. Those live in the family (bert.c). */
#include "model/model.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"
#include "model/family.h"
#include "model/model_internal.h"
#include "base/rng.h"

const char *const method_names[METHOD_COUNT] = {"aflora", "elora", "lora", "full"};
const char *const projections_names[PROJ_COUNT] = {"ffn", "all", "none"};

/* The initializer_range of BERT (and most transformers configs): base
 * weights and a fresh head start N(0, 0.02). */
#define INIT_STD 0.02f
/* aflora.md §2: s_d starts at 0.1, s_b at 0 (the adapter starts as no change). */
#define INIT_SD 0.1f
#define INIT_SB 0.0f

/* ---------------------------------------------------------------- tensor table */

aflo_param *model_add_param(aflo_model *m, const char *name, int rows, int cols,
                            aflo_param_group group, aflo_param_role role, int layer, int module) {
    assert(m->nparams < m->params_cap); /* the family's max_params counts every tensor its
                                             build declares */
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
    size_t *floats = arena == ARENA_BASE ? &m->base_floats : &m->train_floats;
    m->slots[m->nparams].arena = arena;
    m->slots[m->nparams].offset = *floats;
    *floats += p->size;
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
        case PROJ_FFN: return m->family->modules[module].ffn;
        default: return false;
        }
    default: return false;
    }
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
        case PROLE_NORM_BIAS: break; /* arenas are zeroed */
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

/* Everything but the data: the family, the checked settings and the tensor
 * table with each tensor's arena slot and trainable flag. Shared by
 * model_create_ex() and model_estimate_memory(). */
static aflo_model *model_declare(const aflo_config *c, const aflo_adapter_config *ac,
                                 aflo_task task, int num_labels, char *err, size_t errlen) {
    if (config_validate(c, err, errlen) != 0) return NULL;
    const aflo_family_variant *variant;
    const aflo_family *fam = family_for_config(c->model_type, NULL, &variant, err, errlen);
    if (!fam) return NULL;
    if (ac->method < 0 || ac->method >= METHOD_COUNT) {
        set_err(err, errlen, "method: unknown value %d", (int)ac->method);
        return NULL;
    }
    if (ac->method != METHOD_FULL && (ac->rank < 1 || ac->rank > 65536)) {
        set_err(err, errlen, "rank: must be between 1 and 65536, got %d", ac->rank);
        return NULL;
    }
    if (ac->method != METHOD_FULL && (ac->targets & family_all_modules(fam)) == 0) {
        set_err(err, errlen, "target_modules: no module selected");
        return NULL;
    }
    if ((unsigned)task >= TASK_COUNT || !(fam->tasks & (1u << task))) {
        set_err(err, errlen, "task: the %s family has no head for this task", fam->name);
        return NULL;
    }
    if (task == TASK_CAUSAL_LM && num_labels != c->vocab_size) {
        set_err(err, errlen, "num_labels: %d is not valid for causal_lm (must be vocab_size %d)",
                num_labels, c->vocab_size);
        return NULL;
    }
    if (task == TASK_REGRESSION       ? num_labels != 1
        : task == TASK_CLASSIFICATION ? (num_labels < 2 || num_labels > 100000)
                                      : false) {
        set_err(err, errlen, "num_labels: %d is not valid for %s", num_labels,
                task == TASK_REGRESSION ? "regression (must be 1)" : "classification (>= 2)");
        return NULL;
    }
    aflo_model *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->family = fam;
    m->variant = variant;
    m->cfg = *c;
    m->ac = *ac;
    m->ac.targets &= family_all_modules(fam);
    m->task = task;
    m->num_labels = num_labels;
    m->params_cap = fam->max_params(c);
    m->params = calloc((size_t)m->params_cap, sizeof *m->params);
    m->slots = calloc((size_t)m->params_cap, sizeof *m->slots);
    if (!m->params || !m->slots) goto oom;
    if (fam->build(m, err, errlen) != 0) {
        model_free(m);
        return NULL;
    }
    for (int i = 0; i < m->nparams; i++) {
        aflo_param *p = &m->params[i];
        p->trainable = param_initially_trainable(m, p);
        if (p->trainable) m->grad_floats += p->size;
    }
    return m;
oom:
    set_err(err, errlen, "out of memory building the model");
    model_free(m);
    return NULL;
}

aflo_model *model_create_ex(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                            int num_labels, uint64_t seed, bool init_base, char *err,
                            size_t errlen) {
    aflo_model *m = model_declare(c, ac, task, num_labels, err, errlen);
    if (!m) return NULL;
    m->base_arena = calloc(m->base_floats, sizeof(float));
    m->train_arena = calloc(m->train_floats, sizeof(float));
    m->grad_arena = calloc(m->grad_floats ? m->grad_floats : 1, sizeof(float));
    if (!m->base_arena || !m->train_arena || !m->grad_arena) {
        set_err(err, errlen, "out of memory building the model");
        model_free(m);
        return NULL;
    }
    size_t off = 0;
    for (int i = 0; i < m->nparams; i++) {
        aflo_param *p = &m->params[i];
        p->data =
            (m->slots[i].arena == ARENA_BASE ? m->base_arena : m->train_arena) + m->slots[i].offset;
        if (!p->trainable) continue;
        p->grad = m->grad_arena + off;
        off += p->size;
    }
    assert(off == m->grad_floats);
    free(m->slots);
    m->slots = NULL;
    init_weights(m, seed, init_base);
    return m;
}

void model_free(aflo_model *m) {
    if (!m) return;
    if (m->family && m->family->destroy) m->family->destroy(m);
    free(m->params);
    free(m->slots);
    free(m->base_arena);
    free(m->train_arena);
    free(m->grad_arena);
    free(m->act_arena);
    free(m->wide);
    for (int i = 0; i < m->n_half_copies; i++) free(m->half_copies[i]);
    free(m->half_copies);
    if (m->release) m->release(m->release_ctx);
    free(m);
}

const aflo_config *model_config(const aflo_model *m) { return &m->cfg; }
const aflo_family *model_family(const aflo_model *m) { return m->family; }
const aflo_family_variant *model_variant(const aflo_model *m) { return m->variant; }
int model_module_count(const aflo_model *m) { return m->family->n_modules; }
const aflo_module_info *model_module(const aflo_model *m, int i) { return &m->family->modules[i]; }
const aflo_adapter_config *model_adapter_config(const aflo_model *m) { return &m->ac; }
aflo_task model_task(const aflo_model *m) { return m->task; }
int model_num_labels(const aflo_model *m) { return m->num_labels; }
int model_param_count(const aflo_model *m) { return m->nparams; }
aflo_param *model_param(aflo_model *m, int i) { return &m->params[i]; }
const float *model_logits(const aflo_model *m) { return m->logits; }
aflo_flops *model_flops(aflo_model *m) { return &m->flops; }

aflo_param *model_find_param(aflo_model *m, const char *name) {
    for (int v = 0; v < m->family->n_variants; v++) {
        const char *prefix = m->family->variants[v].hf_prefix;
        size_t n = strlen(prefix);
        if (strncmp(name, prefix, n) == 0) {
            name += n;
            break;
        }
    }
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

int model_hf_name(const aflo_model *m, const aflo_param *p, char *buf, size_t cap) {
    /* head_names also place base tensors outside the blocks (LLaMA's
     * lm_head, beside "model.", not in it) */
    return family_hf_name(m->variant, p->name, p->group == PGROUP_HEAD || p->layer < 0, buf, cap);
}

int model_set_tensor(aflo_model *m, const char *name, const float *data, size_t n, char *err,
                     size_t errlen) {
    aflo_param *p = model_find_param(m, name);
    if (!p) return set_err(err, errlen, "tensor %s: not part of this model", name);
    if (n != p->size)
        return set_err(err, errlen, "tensor %s: expected %zu values, got %zu", name, p->size, n);
    memcpy(p->data, data, n * sizeof(float));
    return 0;
}

void model_freeze_param(aflo_model *m, aflo_param *p) {
    (void)m;
    p->trainable = false;
}

/* ---------------------------------------------------------------- 16-bit weights */

bool model_may_keep_half(const aflo_model *m, const aflo_param *p) {
    return m->family->half_weights && !base_trains(m) && p->group == PGROUP_BASE &&
           (p->role == PROLE_WEIGHT || p->role == PROLE_EMBEDDING) && !p->trainable && !p->grad;
}

int model_keep_half(aflo_model *m, aflo_param *p, const void *bits, aflo_half_kind kind, char *err,
                    size_t errlen) {
    if (!model_may_keep_half(m, p) || (kind != HALF_BF16 && kind != HALF_F16))
        return set_err(err, errlen, "tensor %s: cannot be kept 16-bit", p->name);
    if (p->size > m->wide_floats) {
        float *w = malloc(p->size * sizeof(float));
        if (!w) return set_err(err, errlen, "out of memory widening %s", p->name);
        free(m->wide);
        m->wide = w;
        m->wide_floats = p->size;
    }
    const uint16_t *h = bits;
    if ((uintptr_t)bits % sizeof(uint16_t)) { /* safetensors offsets are byte offsets */
        void **copies = realloc(m->half_copies, (size_t)(m->n_half_copies + 1) * sizeof *copies);
        if (!copies) return set_err(err, errlen, "out of memory keeping %s", p->name);
        m->half_copies = copies;
        uint16_t *c = malloc(p->size * sizeof *c);
        if (!c) return set_err(err, errlen, "out of memory keeping %s", p->name);
        memcpy(c, bits, p->size * sizeof *c);
        m->half_copies[m->n_half_copies++] = c;
        h = c;
    }
    p->half = h;
    p->half_kind = kind;
    p->data = NULL;
    return 0;
}

int model_compact_base(aflo_model *m, char *err, size_t errlen) {
    size_t need = 0;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].group == PGROUP_BASE && !m->params[i].half) need += m->params[i].size;
    if (need == m->base_floats) return 0;
    float *arena = malloc((need ? need : 1) * sizeof(float));
    if (!arena) return set_err(err, errlen, "out of memory building the model");
    size_t off = 0;
    for (int i = 0; i < m->nparams; i++) {
        aflo_param *p = &m->params[i];
        if (p->group != PGROUP_BASE || p->half) continue;
        memcpy(arena + off, p->data, p->size * sizeof(float));
        p->data = arena + off;
        off += p->size;
    }
    free(m->base_arena);
    m->base_arena = arena;
    m->base_floats = need;
    return 0;
}

int model_attach(aflo_model *m, void (*release)(void *), void *ctx, char *err, size_t errlen) {
    if (m->release) return set_err(err, errlen, "model: something is already attached");
    m->release = release;
    m->release_ctx = ctx;
    return 0;
}

const float *param_f32(const aflo_param *p, float *wide) {
    if (!p->half) return p->data;
    half_to_f32(wide, p->half, p->size, p->half_kind);
    return wide;
}

float *model_wide_buffer(aflo_model *m) { return m->wide; }

/* ---------------------------------------------------------------- checkpointing */

int model_set_checkpointing(aflo_model *m, bool on, char *err, size_t errlen) {
    if (on && !m->family->checkpointing)
        return set_err(err, errlen, "activation_checkpointing: the %s family does not support it",
                       m->family->name);
    if (on == m->checkpointing) return 0;
    m->checkpointing = on;
    if (!m->act_arena) return 0;
    int batch = m->max_batch, seq = m->max_seq;
    free(m->act_arena);
    m->act_arena = NULL;
    m->act_floats = 0;
    m->max_batch = m->max_seq = 0;
    return model_reserve(m, batch, seq, err, errlen);
}

bool model_checkpointing(const aflo_model *m) { return m->checkpointing; }

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
void model_set_training(aflo_model *m, bool training) { m->training = training; }

aflo_memory model_memory(const aflo_model *m) {
    aflo_memory mem = {
        .base = m->base_floats * sizeof(float),
        .trainable = m->train_floats * sizeof(float),
        .grads = m->grad_floats * sizeof(float),
        .activations = m->act_floats * sizeof(float),
    };
    for (int i = 0; i < m->nparams; i++) {
        const aflo_param *p = &m->params[i];
        if (p->trainable && (p->role == PROLE_A || p->role == PROLE_B))
            mem.projections += p->size * sizeof(float);
        if (p->half) mem.base_half += p->size * sizeof(uint16_t);
    }
    mem.base += mem.base_half;
    mem.widen = m->wide_floats * sizeof(float);
    return mem;
}

/* ---------------------------------------------------------------- activations */

int model_reserve(aflo_model *m, int batch, int seq, char *err, size_t errlen) {
    if (batch < 1 || seq < 1)
        return set_err(err, errlen, "batch (%d) and sequence length (%d) must be positive", batch,
                       seq);
    if (m->act_arena && batch <= m->max_batch && seq <= m->max_seq) return 0;
    if (batch < m->max_batch) batch = m->max_batch;
    if (seq < m->max_seq) seq = m->max_seq;
    size_t need = m->family->layout(m, NULL, batch, seq);
    float *arena = malloc(need * sizeof(float));
    if (!arena)
        return set_err(err, errlen, "out of memory: activations for batch %d x seq %d need %zu MiB",
                       batch, seq, need * sizeof(float) >> 20);
    free(m->act_arena);
    m->act_arena = arena;
    m->act_floats = need;
    m->max_batch = batch;
    m->max_seq = seq;
    size_t carved = m->family->layout(m, arena, batch, seq);
    assert(carved == need); /* the carving pass stays inside what the counting pass sized */
    (void)carved;
    return 0;
}

int model_estimate_memory(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                          int num_labels, int batch, int seq, aflo_memory *out, char *err,
                          size_t errlen) {
    aflo_memory_plan plan = {false, false};
    return model_estimate_memory_plan(c, ac, task, num_labels, batch, seq, &plan, out, err, errlen);
}

int model_estimate_memory_plan(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                               int num_labels, int batch, int seq, const aflo_memory_plan *plan,
                               aflo_memory *out, char *err, size_t errlen) {
    if (batch < 1 || seq < 1)
        return set_err(err, errlen, "batch (%d) and sequence length (%d) must be positive", batch,
                       seq);
    aflo_model *m = model_declare(c, ac, task, num_labels, err, errlen);
    if (!m) return -1;
    if (model_set_checkpointing(m, plan->checkpointing, err, errlen)) {
        model_free(m);
        return -1;
    }
    m->act_floats = m->family->layout(m, NULL, batch, seq);
    *out = model_memory(m);
    if (plan->half_weights) {
        /* as model_keep_half + model_compact_base would leave it */
        size_t half = 0, widest = 0;
        for (int i = 0; i < m->nparams; i++) {
            const aflo_param *p = &m->params[i];
            if (!model_may_keep_half(m, p)) continue;
            half += p->size;
            if (p->size > widest) widest = p->size;
        }
        out->base -= half * (sizeof(float) - sizeof(uint16_t));
        out->base_half = half * sizeof(uint16_t);
        out->widen = widest * sizeof(float);
    }
    model_free(m);
    return 0;
}

/* ---------------------------------------------------------------- forward, backward */

int model_forward(aflo_model *m, const aflo_batch *b, float *loss, char *err, size_t errlen) {
    if (loss) *loss = 0.0f;
    if (!m->act_arena && model_reserve(m, b->batch, b->seq, err, errlen) != 0) return -1;
    return m->family->forward(m, b, loss, err, errlen);
}

void model_backward(aflo_model *m, float loss_scale) { m->family->backward(m, loss_scale); }
