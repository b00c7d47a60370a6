/* family.c — the registry of model families and its lookups (family.h).
 *
 * One table, in the order families are tried and listed. Adding a family is
 * one line here, its own file (the descriptor and its functions), and
 * nothing else in the engine or the daemon: they find the family from a
 * config's model_type and ask it for everything architecture-specific. */
#include "model/family.h"

#include <stdio.h>
#include <string.h>

#include "model/bert.h"
#include "model/deberta.h"
#include "model/llama.h"
#include "base/errmsg.h"

static const aflo_family *const families[] = {
    &bert_family,
    &deberta_family,
    &llama_family,
};
#define N_FAMILIES ((int)(sizeof families / sizeof *families))

/* The tasks a job spec offers (daemon/spec.c): a family with none of them
 * adds no target_modules names. */
#define SPEC_TASKS ((1u << TASK_CLASSIFICATION) | (1u << TASK_REGRESSION) | (1u << TASK_CAUSAL_LM))

int family_count(void) { return N_FAMILIES; }

const aflo_family *family_at(int i) { return i >= 0 && i < N_FAMILIES ? families[i] : NULL; }

const aflo_family *family_by_name(const char *name) {
    for (int i = 0; name && i < N_FAMILIES; i++)
        if (strcmp(families[i]->name, name) == 0) return families[i];
    return NULL;
}

const aflo_family *family_for_model_type(const char *model_type, const aflo_family_variant **v) {
    for (int i = 0; model_type && i < N_FAMILIES; i++)
        for (int k = 0; k < families[i]->n_variants; k++)
            if (strcmp(families[i]->variants[k].model_type, model_type) == 0) {
                if (v) *v = &families[i]->variants[k];
                return families[i];
            }
    return NULL;
}

/* transformers names a model type's classes <prefix>Model, <prefix>ForXxx. */
static bool architecture_of(const aflo_family_variant *v, const char *architecture) {
    size_t n = strlen(v->class_prefix);
    if (strncmp(architecture, v->class_prefix, n) != 0) return false;
    return strcmp(architecture + n, "Model") == 0 || strncmp(architecture + n, "For", 3) == 0;
}

void family_supported_text(char *buf, size_t cap) {
    if (cap) buf[0] = '\0';
    for (int i = 0; i < N_FAMILIES; i++)
        for (int k = 0; k < families[i]->n_variants; k++) {
            const aflo_family_variant *v = &families[i]->variants[k];
            appendf(buf, cap, "%s%s (%s)", buf[0] ? ", " : "", v->architecture, v->model_type);
        }
}

const aflo_family *family_for_config(const char *model_type, const char *architecture,
                                     const aflo_family_variant **v, char *err, size_t errlen) {
    if (model_type) {
        const aflo_family *f = family_for_model_type(model_type, v);
        if (f) return f;
    } else if (architecture) {
        for (int i = 0; i < N_FAMILIES; i++)
            for (int k = 0; k < families[i]->n_variants; k++)
                if (architecture_of(&families[i]->variants[k], architecture)) {
                    if (v) *v = &families[i]->variants[k];
                    return families[i];
                }
    }
    char supported[512], what[160];
    family_supported_text(supported, sizeof supported);
    if (architecture && model_type)
        snprintf(what, sizeof what, "%s, model_type \"%s\"", architecture, model_type);
    else if (architecture)
        snprintf(what, sizeof what, "%s", architecture);
    else
        snprintf(what, sizeof what, "model_type \"%s\"", model_type ? model_type : "");
    set_err(err, errlen, "unsupported architecture %s (supported: %s)", what, supported);
    return NULL;
}

int family_max_tokens(const aflo_config *c) {
    const aflo_family *f = family_for_model_type(c->model_type, NULL);
    return f && f->max_tokens ? f->max_tokens(c) : c->max_position_embeddings;
}

int family_hf_name(const aflo_family_variant *v, const char *name, bool head, char *buf,
                   size_t cap) {
    const char *prefix = v->hf_prefix;
    for (const aflo_name_map *h = v->head_names; head && h && h->engine; h++)
        if (strncmp(name, h->engine, strlen(h->engine)) == 0) {
            prefix = h->hf;
            name += strlen(h->engine);
            break;
        }
    int n = snprintf(buf, cap, "%s%s", prefix, name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

const char *family_head_output(const aflo_family *f) {
    const char *last = NULL;
    for (const char *const *h = f->head_layers; h && *h; h++) last = *h;
    return last;
}

int family_module_index(const aflo_family *f, const char *target) {
    for (int i = 0; f && target && i < f->n_modules; i++)
        if (strcmp(f->modules[i].target, target) == 0) return i;
    return -1;
}

unsigned family_all_modules(const aflo_family *f) {
    return f->n_modules >= FAMILY_MAX_MODULES ? ~0u : (1u << f->n_modules) - 1u;
}

int family_target_names(const char *names[FAMILY_MAX_MODULES]) {
    int n = 0;
    for (int i = 0; i < N_FAMILIES; i++)
        for (int k = 0; k < families[i]->n_modules && (families[i]->tasks & SPEC_TASKS); k++) {
            const char *t = families[i]->modules[k].target;
            int j = 0;
            while (j < n && strcmp(names[j], t) != 0) j++;
            if (j == n && n < FAMILY_MAX_MODULES) names[n++] = t;
        }
    return n;
}
