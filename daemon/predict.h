/* predict.h — inference with a finished adapter: a base model folder plus a
 * native adapter file or a PEFT LoRA folder (or a model folder that carries
 * its own fine-tuned head), one input at a time. Used by `aflorad predict`
 * and by POST /jobs/{id}/predict; callers see JSON, never tensors.
 *
 * A predictor knows how its adapter's training text was read (the columns,
 * header and format recorded with the adapter), so callers can read the same
 * kind of file and refuse a pair for a single-text adapter or the reverse.
 * A predictor is not thread-safe (it owns activations).
 *
 * A causal LM's predictor (predictor_open_lm) generates text instead:
 * predictor_generate takes a request in the daemon's terms (lmgen.h) and
 * returns its report, so callers never see the model either.
 *
 * predict_cache keeps a few loaded predictors for the API, keyed by job id
 * (a base model for generation: "model:<name>"), so a request does not
 * reload the model: least recently used out, at most `capacity` loaded at
 * once, the users of one entry serialised, reloaded when the adapter file
 * is replaced (a retried job). */
#ifndef AFLO_PREDICT_H
#define AFLO_PREDICT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/adapter_info.h"
#include "lmgen.h"

/* Longest input, in tokens, a prediction accepts (also capped by the model). */
#define PREDICT_MAX_TOKENS 4096

typedef struct predictor predictor;

/* Whose fault a failed prediction is. */
typedef enum { PREDICT_OK = 0, PREDICT_E_INPUT, PREDICT_E_INTERNAL } predict_status;

/* model: a name under models_dir ("demo" included) or a path. adapter: a
 * native .safetensors file, a folder holding one (the adapter/ folder
 * `aflorad run` writes), a PEFT folder, or NULL when the model folder itself
 * is fine-tuned (config.json names its labels and the weights hold the
 * classifier: method full's adapter/model/). NULL with a message on error. */
predictor *predictor_open(const char *models_dir, const char *model, const char *adapter, char *err,
                          size_t errlen);
/* A causal LM for generation: model (a name under models_dir or a path)
 * with the native adapter file adapter (NULL: the base model alone), and
 * the model folder's tokenizer when it has one (prompt_ids work without). */
predictor *predictor_open_lm(const char *models_dir, const char *model, const char *adapter,
                             char *err, size_t errlen);
void predictor_free(predictor *p);

/* How the adapter's training text was read; n_fields 0 when it was not
 * recorded (a PEFT folder made elsewhere, an older adapter). */
const adapter_inputs *predictor_inputs(const predictor *p);
/* The recorded text fields for messages: "\"question1\" and \"question2\"",
 * "column 3", or "" when not recorded. */
void predictor_describe_fields(const predictor *p, char *buf, size_t cap);
/* 0 when an input with (has_pair) or without a second text fits the
 * adapter's training data (or it is not recorded), else -1 with a message
 * saying what the adapter expects. */
int predictor_check_pair(const predictor *p, bool has_pair, char *err, size_t errlen);

/* {"label", "label_id", "probabilities", "logits"} for classification,
 * {"value"} for regression. text_b may be NULL. NULL with a message on
 * error; *status (may be NULL) says whether the input was at fault. */
cJSON *predictor_run(predictor *p, const char *text_a, const char *text_b, predict_status *status,
                     char *err, size_t errlen);

/* Generate for req with a causal LM's predictor: the prompt built from the
 * request (lmgen_prompt), checked against the model (ids in its
 * vocabulary, a prompt that leaves room for a token), then lmgen_run with
 * on_token (may be NULL). 0 with *rep filled (lmgen_report_free it), or -1
 * with a message and *status saying whether the request was at fault. */
int predictor_generate(predictor *p, const lmgen_request *req, lmgen_token_fn on_token, void *user,
                       lmgen_report *rep, predict_status *status, char *err, size_t errlen);

/* ---- the API's cache --------------------------------------------------------
 * Memory: each entry holds one base model's weights (about 4 bytes a
 * parameter: ~440 MB for BERT-base), its adapter and the activations of one
 * input; `capacity` bounds how many are loaded at once — a request that
 * needs a new one waits while every entry is in use. */

typedef struct predict_cache predict_cache;

typedef struct {
    uint64_t loads;        /* predictors loaded (misses, reloads included) */
    uint64_t hits;         /* acquisitions served by a loaded predictor */
    int entries, capacity; /* loaded now (or loading), and the bound */
} predict_cache_stats;

/* NULL when out of memory or capacity < 1. */
predict_cache *predict_cache_new(int capacity);
/* Every acquired predictor must have been released. NULL is fine. */
void predict_cache_free(predict_cache *c);
/* The predictor for key (a job id) over model and the native adapter file,
 * loaded if absent or if the file changed since it was loaded; the caller
 * holds it exclusively until predict_cache_release. NULL with a message when
 * the file or the model cannot be loaded. */
predictor *predict_cache_acquire(predict_cache *c, const char *key, const char *models_dir,
                                 const char *model, const char *adapter, char *err, size_t errlen);
/* The same for a causal LM (predictor_open_lm): key "model:<name>" for a
 * base model (adapter NULL), the job id for a job's adapter on its model. */
predictor *predict_cache_acquire_lm(predict_cache *c, const char *key, const char *models_dir,
                                    const char *model, const char *adapter, char *err,
                                    size_t errlen);
void predict_cache_release(predict_cache *c, predictor *p);
void predict_cache_stats_read(predict_cache *c, predict_cache_stats *out);

#endif
