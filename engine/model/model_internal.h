/* model_internal.h — the model as a family implementation sees it: the
 * generic part of aflo_model that model.c owns, and the one function a
 * family's build calls. Included by model.c and by family implementations
 * (bert.c) only; everything else uses model.h.
 *
 * Division of labour. model.c owns the tensor table and the three parameter
 * arenas (allocated from what the family declares), trainable flags and
 * gradients, initialisation, the activation arena (sized by the family's
 * layout), dropout settings and the FLOP counters. The family owns the
 * layout of the activations and everything about the current batch: it
 * keeps that, and pointers to its tensors, in its own state (m->impl). */
#ifndef AFLO_MODEL_INTERNAL_H
#define AFLO_MODEL_INTERNAL_H

#include "model/family.h"
#include "model/model.h"

enum { ARENA_BASE, ARENA_TRAIN };

/* Where a declared tensor's data will live, before the arenas exist. */
typedef struct {
    size_t offset;
    int arena;
} param_slot;

struct aflo_model {
    const aflo_family *family;
    const aflo_family_variant *variant; /* of cfg.model_type */
    aflo_config cfg;
    aflo_adapter_config ac; /* targets masked to the family's modules */
    aflo_task task;
    int num_labels;

    /* the tensor table; params_cap from family->max_params(), so the
     * pointers a family keeps into it stay valid */
    aflo_param *params;
    int nparams, params_cap;
    param_slot *slots; /* only while building */
    float *base_arena, *train_arena, *grad_arena;
    size_t base_floats, train_floats, grad_floats;

    /* activations: one arena laid out by family->layout() */
    float *act_arena;
    size_t act_floats;
    int max_batch, max_seq;
    float *logits; /* batch x num_labels of the last forward */

    /* 16-bit base weights (model_keep_half): the widening buffer, copies
     * of unaligned tensors, and what holds the mapped files */
    float *wide;
    size_t wide_floats;
    void **half_copies;
    int n_half_copies;
    void (*release)(void *);
    void *release_ctx;
    bool checkpointing;

    bool dropout;
    uint64_t dropout_key;
    bool training; /* model_set_training */
    aflo_flops flops;

    void *impl; /* the family's own state */
};

/* Declare the next tensor of the table: rows x cols (rows 0: a vector of
 * cols), its group and role, its block (-1 outside) and module (-1 when not
 * part of an adapted linear layer). Base tensors go to the base arena,
 * adapters and the head to the trainable one. Called by family->build()
 * at most family->max_params() times. */
aflo_param *model_add_param(aflo_model *m, const char *name, int rows, int cols,
                            aflo_param_group group, aflo_param_role role, int layer, int module);

#endif
