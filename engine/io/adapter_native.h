/* adapter_native.h — aflorad's own adapter file, out and back in.
 *
 * One .safetensors file: every adapter tensor (A, B, s_d, s_b) and the head
 * under the model's own tensor names — for method "full", every base tensor
 * too — and a "__metadata__" block describing the job: format
 * "aflorad-adapter", version "1", method, rank, alpha, target_modules,
 * trainable_projections, base model and its dimensions (num_key_value_heads
 * too: grouped-query models), task ("classification", "regression",
 * "causal_lm"; a causal LM's num_labels is its vocabulary), num_labels,
 * labels, metrics, the step at which each projection froze and, when known,
 * how the training text was read ("inputs", adapter_info.h). Importing checks
 * all of it against the model before copying a single value.
 *
 * The write is atomic: the safetensors writer's temporary file, fsync and
 * rename (atomicfile.h). */
#ifndef AFLO_ADAPTER_NATIVE_H
#define AFLO_ADAPTER_NATIVE_H

#include <stddef.h>

#include "io/adapter_info.h"
#include "model/model.h"

#define ADAPTER_NATIVE_FORMAT "aflorad-adapter"
#define ADAPTER_NATIVE_VERSION "1"

/* Write m's adapter (for method full, every tensor) and info to path as
 * above. */
int adapter_export_native(aflo_model *m, const char *path, const adapter_export_info *info,
                          char *err, size_t errlen);

/* The metadata of a native file, parsed and checked. */
typedef struct {
    aflo_adapter_config ac;
    aflo_task task;
    int num_labels;
    char model_type[32];
    int vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
    int num_key_value_heads; /* num_attention_heads in files that do not record it */
    /* malloc'd, NUL-terminated; released by adapter_native_meta_free */
    char *base_model;      /* as given at export */
    char *labels_json;     /* JSON array of label names */
    char *metrics_json;    /* JSON text, "null" when none was given */
    char *frozen_json;     /* JSON object: projection name -> step or null */
    adapter_inputs inputs; /* n_fields 0 when the file does not record them */
} adapter_native_meta;

/* Read path's metadata into meta (release it with adapter_native_meta_free;
 * on error it is empty). */
int adapter_native_read_meta(const char *path, adapter_native_meta *meta, char *err, size_t errlen);
void adapter_native_meta_free(adapter_native_meta *meta);

/* Load a native file into m, which must match it (method, rank, alpha,
 * targets, task, labels, model type and dimensions): clear errors otherwise,
 * and m is untouched on any error. */
int adapter_import_native(aflo_model *m, const char *path, char *err, size_t errlen);

#endif
