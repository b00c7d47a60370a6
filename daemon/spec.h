/* spec.h — the job spec: one JSON format for `aflorad run SPEC.json` and
 * POST /jobs, parsed and validated once, here, into one struct.
 *
 * Every field is a row of one table (spec_fields[]: dotted name, type,
 * default, allowed range, the methods it applies to, a doc string). The
 * table drives parsing, range checks, defaults, the normalised JSON stored
 * with a job, and the documentation (spec_doc_markdown for the README,
 * spec_schema_json for OpenAPI), so they cannot drift apart. Defaults that
 * depend on other fields (rank on method, alpha on rank, the freezing phases
 * on epochs, num_labels on task) are worked out after the table pass, and
 * their table row documents the rule. The training defaults in the table
 * (and the freezing-phase rule) are the engine's constants (train.h,
 * freeze.h), which train_config_defaults() fills in too: a spec that gives
 * only model and epochs trains with train_config_defaults(epochs).
 *
 * Parsing is strict: an unknown key, a key given twice, a wrong JSON type
 * (1.5 or "3" for an integer, 1 for a boolean, null for anything), a value
 * out of range, NaN/infinity, a field that has no effect for the chosen
 * method (alpha outside lora, freeze outside aflora, ...) and inconsistent
 * fields are all rejected. Every error names the field by its dotted path
 * ("dataset.text_fields[1]") in the message and, separately, in
 * aflo_spec_error.field, with a stable code for the API's
 * {"error": {"code", "message", "field"}}.
 *
 * Strings in a spec are owned (malloc'd) and released by spec_free(). This
 * module does no file system or network access beyond spec_parse_file: it
 * does not check that the model or data files exist (the worker does, when
 * it runs the job). */
#ifndef AFLO_SPEC_H
#define AFLO_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "model/family.h"
#include "model/model.h"
#include "io/textdata.h"
#include "train/memory.h"
#include "train/train.h"

/* Limits on the document. A spec with a thousand declared labels and a few
 * long paths fits in SPEC_MAX_BYTES many times over; a valid spec nests 3
 * deep (root, dataset, text_fields), so SPEC_MAX_DEPTH refuses anything much
 * deeper before cJSON recurses into it. */
#define SPEC_MAX_BYTES ((size_t)256 << 10)
#define SPEC_MAX_DEPTH 8
/* Strings (model, paths, field and label names): at most PATH_MAX bytes. */
#define SPEC_MAX_STRING 4096
#define SPEC_MAX_TEXT_FIELDS 2      /* single text or a pair */
#define SPEC_MAX_COLUMN_INDEX 65535 /* far beyond any real file's columns */
#define SPEC_NUM_LABELS_UNSET 0     /* num_labels: infer from the data */
#define SPEC_DEMO_MODEL "demo"
/* init_adapter "job:<id>": the adapter of a succeeded job of the daemon. */
#define SPEC_JOB_REF_PREFIX "job:"
/* Seeds travel as JSON numbers: keep them exact in a double. */
#define SPEC_MAX_SEED ((1ull << 53) - 1)

#define SPEC_FIELD_PATH_MAX 160
#define SPEC_MESSAGE_MAX 512

/* ---- the spec ------------------------------------------------------------ */

/* A data column: by header/JSON key name, or by 0-based column index. */
typedef struct {
    textdata_field_kind kind; /* TEXTDATA_FIELD_NAME or _INDEX */
    char *name;               /* owned; kind NAME */
    int index;                /* kind INDEX */
} spec_column;

typedef struct {
    char *train; /* file path or uploaded dataset id */
    char *eval;  /* NULL: no evaluation set */
    textdata_format format;
    spec_column text_fields[SPEC_MAX_TEXT_FIELDS];
    int n_text_fields; /* 1 or 2 */
    spec_column label_field;
    char **labels; /* declared label names, or NULL */
    int n_labels;
    bool has_header; /* TSV/CSV only */
} spec_dataset;

typedef struct {
    bool enabled; /* false: A and B never freeze */
    aflo_freeze_sensitivity sensitivity;
    double initial_warmup_epochs, final_warmup_epochs;
    int delta_t;
    double beta1, beta2;
} spec_freeze;

/* The evaluation metric that picks the best epoch; names as metrics_lookup
 * takes them. The first three judge classification, the next three
 * regression, perplexity and exact_match (with an answer_rule) causal_lm. */
typedef enum {
    SPEC_METRIC_ACCURACY,
    SPEC_METRIC_F1,
    SPEC_METRIC_MCC,
    SPEC_METRIC_PEARSON,
    SPEC_METRIC_SPEARMAN,
    SPEC_METRIC_MSE,         /* minimised; every other one maximised but perplexity */
    SPEC_METRIC_PERPLEXITY,  /* causal_lm's: minimised */
    SPEC_METRIC_EXACT_MATCH, /* causal_lm with an answer_rule */
    SPEC_METRIC_COUNT
} spec_metric;

typedef struct {
    char *preset; /* NULL, or the preset (presets.h) the spec started from */
    char *model;
    aflo_task task;
    int num_labels;   /* SPEC_NUM_LABELS_UNSET: from the data */
    bool has_dataset; /* false only for the demo model */
    spec_dataset dataset;
    spec_metric metric; /* default by task */
    aflo_method method;
    int rank;                /* 0 for method full */
    double alpha;            /* used by lora; 2*rank otherwise */
    unsigned target_modules; /* bit i: name i of family_target_names(); all of
                                            them (the default): every module of the
                                            model's family */
    aflo_projections trainable_projections;
    spec_freeze freeze; /* resolved even when unused */
    int epochs, batch_size, grad_accum, max_seq_len;
    bool length_bucketing;
    double learning_rate, head_learning_rate, weight_decay, warmup_ratio, max_grad_norm;
    uint64_t seed;
    int threads; /* 0: one per core */
    bool dropout;
    bool train_on_inputs;                        /* causal_lm: prompt tokens carry loss too */
    answer_rule answer_rule;                     /* causal_lm: exact-match evaluation (lmeval.h) */
    int eval_max_new_tokens;                     /* its generations' length limit */
    aflo_checkpointing activation_checkpointing; /* causal_lm (train/memory.h) */
    char *init_adapter;                          /* NULL: fresh adapter; "job:<id>" or a path */
} aflo_job_spec;

/* ---- errors --------------------------------------------------------------- */

typedef enum {
    SPEC_OK = 0,
    SPEC_E_INVALID_JSON, /* syntax, bad UTF-8, NUL, trailing text, too deep */
    SPEC_E_TOO_LARGE,    /* document over SPEC_MAX_BYTES */
    SPEC_E_UNKNOWN_FIELD,
    SPEC_E_WRONG_TYPE,
    SPEC_E_OUT_OF_RANGE,  /* number, string length or array length */
    SPEC_E_INVALID_VALUE, /* not one of the choices, empty, duplicate, given twice */
    SPEC_E_MISSING_FIELD,
    SPEC_E_CONFLICT, /* fields that do not fit together */
    SPEC_E_IO,       /* spec_parse_file: cannot read the file */
    SPEC_E_NO_MEMORY,
    SPEC_E_COUNT
} spec_error_code;

typedef struct {
    spec_error_code code;
    char field[SPEC_FIELD_PATH_MAX]; /* dotted path; "" when not about one field */
    char message[SPEC_MESSAGE_MAX];  /* starts with the field path when there is one */
} aflo_spec_error;

/* "invalid_json", "too_large", "unknown_field", "wrong_type", "out_of_range",
 * "invalid_value", "missing_field", "conflict", "io_error", "out_of_memory"
 * ("ok" for SPEC_OK). */
const char *spec_error_code_name(spec_error_code code);

/* ---- parsing ------------------------------------------------------------- */

/* Parse and validate json[0..len). On success returns 0 with *out complete
 * (every default filled in). On failure returns -1, fills *err (may be NULL)
 * and leaves *out empty; spec_free(out) is safe either way. */
int spec_parse(const char *json, size_t len, aflo_job_spec *out, aflo_spec_error *err);
/* Same from a file; an unreadable or oversized file is SPEC_E_IO/_TOO_LARGE. */
int spec_parse_file(const char *path, aflo_job_spec *out, aflo_spec_error *err);
void spec_free(aflo_job_spec *s);

/* ---- using a spec --------------------------------------------------------- */

bool spec_is_demo(const aflo_job_spec *s);
/* Whether a dataset reference is an uploaded dataset's id (16 lowercase hex
 * characters, as store.h makes them) rather than a file path. */
/* The spec's name of a task: "classification", "regression", "causal_lm". */
const char *spec_task_name(aflo_task t);
bool spec_is_dataset_id(const char *ref);
/* num_labels, or its fallback when unset (2: binary classification). The
 * worker should prefer the label count it finds in the training data. */
int spec_num_labels(const aflo_job_spec *s);
/* The job id of an init_adapter "job:<id>" (pointing into s), or NULL when
 * init_adapter is absent or a path. Job ids look like dataset ids. */
const char *spec_init_adapter_job(const aflo_job_spec *s);

/* Fill a trainer config: train_config_defaults() for what the spec does not
 * cover (Adam moments, pad_id — set pad_id from the tokenizer), then every
 * spec value (gen_eval: rule and max_new_tokens; set its detokenizer and
 * eos_id from the tokenizer). select_metric points at a static string, not
 * into *s. */
void spec_to_train_config(const aflo_job_spec *s, aflo_train_config *tc);
/* The adapter config for a model of this family (the model's, from its
 * config.json): target_modules become the family's module bits. The spec
 * checked the names against every family's; a name the model's family lacks
 * is an error here ("target_modules: ..."), at job start. */
int spec_to_adapter_config(const aflo_job_spec *s, const aflo_family *family,
                           aflo_adapter_config *ac, char *err, size_t errlen);
/* A textdata_spec for loading the train/eval files. Its strings point into
 * *s, which must outlive it. Returns -1 when the spec has no dataset. */
int spec_to_textdata_spec(const aflo_job_spec *s, textdata_spec *ts);

/* The normalised spec: every field that applies to the method, defaults
 * filled in (num_labels omitted while unset, optional strings while absent).
 * Parsing its text gives back an equal spec. NULL when out of memory.
 * Store and send the text from spec_to_json_string: cJSON_Print of this tree
 * may round a 16-17 digit number (cJSON compares with an epsilon). */
cJSON *spec_to_json(const aflo_job_spec *s);
/* The same as exact text (malloc'd, release with free()); pretty: indented. */
char *spec_to_json_string(const aflo_job_spec *s, bool pretty);
/* Field-by-field equality (strings by content). */
bool spec_equal(const aflo_job_spec *a, const aflo_job_spec *b);

/* ---- the field table and documentation ------------------------------------ */

typedef enum {
    SPEC_T_STRING,
    SPEC_T_INT,
    SPEC_T_NUMBER,
    SPEC_T_BOOL,
    SPEC_T_ENUM,    /* one string of `choices` */
    SPEC_T_OBJECT,  /* its fields are the rows named "<name>.<key>" */
    SPEC_T_COLUMNS, /* array of column names/indices (dataset.text_fields) */
    SPEC_T_COLUMN,  /* a column name or index (dataset.label_field) */
    SPEC_T_STRINGS, /* array of distinct strings (dataset.labels) */
    SPEC_T_MODULES  /* array of distinct family_target_names() */
} spec_type;

#define SPEC_ALL_METHODS ((1u << METHOD_COUNT) - 1u)

typedef struct {
    const char *name; /* dotted path: "freeze.delta_t" */
    spec_type type;
    bool required; /* must be present when its object is */
    bool optional; /* absent is a valid state (no default value) */
    /* Numbers: the allowed range. STRING: length in bytes. COLUMNS, STRINGS,
     * MODULES: number of items. COLUMN: the column index. */
    double min, max;
    bool min_exclusive, max_exclusive;
    /* Static default: INT, NUMBER, BOOL, ENUM (index into choices). */
    double def;
    const char *def_str; /* static default of STRING/COLUMN(S), or NULL */
    const char *def_doc; /* the rule when the default depends on other fields */
    /* Defaults that are a lookup on another field, applied by the parser and
     * documented (text and x-default-by) from these same arrays: */
    const double *def_by_method; /* INT: one value per aflo_method, NaN where none */
    const int *def_by_task;      /* ENUM: one choice index per aflo_task */
    const char *const *choices;  /* ENUM */
    int n_choices;
    unsigned methods; /* bit (1u << aflo_method): where the field applies */
    size_t offset;    /* scalar storage in aflo_job_spec */
    bool wide;        /* INT stored as uint64_t (seed) */
    const char *doc;
} spec_field_info;

extern const spec_field_info spec_fields[];
extern const int spec_field_count;

/* A Markdown table of every field (name, type, default, allowed values,
 * description) for the README. malloc'd; NULL when out of memory. */
char *spec_doc_markdown(void);
/* A JSON-Schema-style description of the spec object (type, properties,
 * required, enum, minimum/maximum, default or x-default, x-methods,
 * description) for the OpenAPI document. NULL when out of memory. */
cJSON *spec_schema_json(void);

#endif
