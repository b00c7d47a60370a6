/* adapter_info.h — what travels with a fine-tuned model besides its tensors,
 * shared by the three ways aflorad writes one: a PEFT folder
 * (adapter_peft.h), the native adapter file (adapter_native.h) and, for
 * method full, the whole model as a Hugging Face folder (hfmodel_export.h).
 *
 *   - adapter_export_info: what the caller knows about the job that the
 *     model does not (the base model's name and where it came from, label
 *     names, metrics, the step at which each projection froze, the inputs).
 *     Every writer takes one.
 *   - adapter_inputs: how the training text was read (its columns, header
 *     and file format). It is kept with the adapter in every form — the
 *     native file's "inputs" metadata, aflorad.json beside the PEFT files and
 *     in a full model's folder — so prediction reads the same kind of file
 *     (GLUE's dev.tsv, a header-less CoLA file, a sentence pair) without
 *     being told again. Its JSON form, the parser of that and the reader of a
 *     folder's aflorad.json are here.
 *   - The names of the files the folder formats share.
 *
 * adapter_internal.h holds the few helpers the format writers and readers
 * share beyond this; it is not for callers. */
#ifndef AFLO_ADAPTER_INFO_H
#define AFLO_ADAPTER_INFO_H

#include <stdbool.h>
#include <stddef.h>

#include "model/model.h"
#include "io/textdata.h"

/* A Hugging Face model folder's configuration and weights. */
#define HF_CONFIG_FILE "config.json"
#define HF_WEIGHTS_FILE "model.safetensors"
/* aflorad's notes (the inputs) beside the PEFT files and in a full model folder. */
#define ADAPTER_INPUTS_FILE "aflorad.json"

/* Where adapter_export_info.base_model came from, for the PEFT README. */
typedef enum {
    ADAPTER_BASE_UNSPECIFIED = 0, /* say nothing */
    ADAPTER_BASE_NAME_OR_PATH,    /* the model folder's config.json "_name_or_path" */
    ADAPTER_BASE_LOCAL_NAME,      /* the daemon's own name for the folder (no _name_or_path) */
} adapter_base_source;

/* A column name as the job spec allows it (4096 bytes) and its NUL. */
#define ADAPTER_FIELD_NAME_MAX 4097

/* One text column of the training data: by header/key name or by 0-based
 * column index (header-less TSV/CSV). */
typedef struct {
    bool by_index;
    int index;
    char name[ADAPTER_FIELD_NAME_MAX];
} adapter_text_field;

/* How the training file's text was read. */
typedef struct {
    int n_fields; /* 1: single text, 2: a pair; 0: not recorded */
    adapter_text_field fields[2];
    bool has_header;        /* TSV/CSV: the first row named the columns */
    textdata_format format; /* TEXTDATA_AUTO when not known */
} adapter_inputs;

/* {"text_fields": ["sentence"] or [3, 4], "has_header": true, "format": "tsv"}
 * (format left out when unknown); malloc'd, NULL when out of memory or when
 * in has no fields. */
char *adapter_inputs_json(const adapter_inputs *in);
/* Parse that object (strict: known keys, 1 or 2 fields, names or indices);
 * `where` names the source in messages. */
int adapter_inputs_parse(const char *json, size_t len, const char *where, adapter_inputs *out,
                         char *err, size_t errlen);
/* dir/aflorad.json's inputs; 0 with n_fields 0 when the folder has no such
 * file (a PEFT folder made elsewhere). */
int adapter_read_inputs_file(const char *dir, adapter_inputs *out, char *err, size_t errlen);

/* What the caller knows about the job that the model does not. Every field
 * may be NULL / zero. */
typedef struct {
    const char *base_model; /* name or path of the base model ("" if NULL) */
    adapter_base_source base_model_source;
    const char *const *labels; /* model_num_labels() names, or NULL */
    const char *metrics_json;  /* JSON text stored as given (validated); NULL: null */
    /* Step at which projection p froze, or < 0 when it did not (e.g. a
     * wrapper around trainer_frozen_step). NULL: no freezing information. */
    long (*frozen_step)(const void *ctx, const aflo_param *p);
    const void *frozen_ctx;
    const adapter_inputs *inputs; /* how the training text was read, or NULL */
} adapter_export_info;

#endif
