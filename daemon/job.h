/* job.h — one fine-tuning job from spec to adapter files: the single code
 * path behind `aflorad run` and every daemon worker.
 *
 * Given a validated job spec it resolves the model folder (the built-in demo
 * is written on first use), tokenises the training and evaluation files,
 * builds the model and trainer, resumes from the job's checkpoint if one is
 * there, trains with the caller's event callbacks, checkpoints at every epoch
 * end and when cancelled, and on success keeps the best epoch and writes
 * into the job's work folder:
 *   adapter/adapter.safetensors          native file (A, B, s_d, s_b, head, metadata;
 *                                        method full: every tensor)
 *   adapter/peft/adapter_config.json     PEFT LoRA folder (not for method full),
 *   adapter/peft/adapter_model.safetensors   base_model_name_or_path: the model
 *   adapter/peft/config.json             folder's _name_or_path, else the spec's
 *   adapter/peft/README.md               model; config.json names the labels
 *   adapter/peft/aflorad.json            how the training text was read (also in the
 *                                        native file's metadata and in model/)
 *   adapter/model/                       method full: the whole fine-tuned model as a
 *                                        Hugging Face folder (labels, tokenizer), usable
 *                                        as --model and as a base model
 *   metrics.json                         per-epoch metrics, best epoch, FLOPs, parameters
 *   checkpoint.ckpt                      training state (removed after success)
 *
 * A checkpoint records the run it belongs to (trainer_set_checkpoint_note):
 * the normalised spec and, per dataset, its row count and a fingerprint of
 * its tokenised rows and labels. A run resumes from it only if that record
 * matches: every spec field but `threads` (speed, not training — a note says
 * that results then stop being bit-identical to an uninterrupted run) and
 * the dataset paths (the data is compared by content instead, so moved files
 * still resume). Otherwise it fails naming each difference ("learning_rate:
 * checkpoint 0.01, spec 0.02") before any model is loaded, unless restart
 * says to discard the checkpoint. Checkpoints from before these records are
 * resumed unchecked, as before.
 * It knows nothing of HTTP or SQLite. */
#ifndef AFLO_JOB_H
#define AFLO_JOB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "spec.h"
#include "train/train.h"

/* Epochs as people read them: the engine counts from 0 (an index into the
 * data orders), everything aflorad shows — console, metrics.json, events,
 * the API, the dashboard — counts from 1, so "best epoch 3" is the third. */
#define JOB_EPOCH_SHOWN(engine_epoch) ((engine_epoch) + 1)

/* Name of the built-in demo model (and its folder under models_dir). */
#define JOB_DEMO_MODEL "demo"

typedef struct {
    void *ctx;
    void (*on_step)(void *ctx, const aflo_step_info *info);
    void (*on_freeze)(void *ctx, const aflo_freeze_event *ev);
    void (*on_eval)(void *ctx, const aflo_eval_info *ev);
    void (*on_log)(void *ctx, const char *message); /* notes worth showing a user */
    /* Training continues from a checkpoint taken after `step`: progress
     * reported earlier for later steps (before a crash) is superseded. A
     * resumed run is deterministic, so those steps come again identical. */
    void (*on_resume)(void *ctx, long step);
} job_events;

typedef struct {
    const aflo_job_spec *spec;
    const char *models_dir;   /* model names resolve to models_dir/<name> */
    const char *datasets_dir; /* uploaded dataset ids resolve to datasets_dir/<id> (may be NULL) */
    const char *jobs_dir;     /* init_adapter "job:<id>" resolves under jobs_dir/<id> (may be
                                  NULL: refused, as in `aflorad run`) */
    const char *work_dir;     /* the job's own folder, created if missing */
    const atomic_int *cancel; /* checked before every step; may be NULL */
    job_events ev;
    /* Discard a checkpoint in work_dir and start over (aflorad run --restart). */
    bool restart;
    /* Appended to the refusal of a checkpoint made for another run, e.g. how
     * to discard it; may be NULL. */
    const char *mismatch_hint;
} job_args;

typedef enum { JOB_SUCCEEDED = 0, JOB_CANCELLED = 1, JOB_FAILED = -1 } job_outcome;

typedef struct {
    aflo_train_summary summary;
    char *metrics_json; /* malloc'd: the content of metrics.json; NULL unless succeeded */
} job_result;

/* Runs on the calling thread, whose kernel threads it sets to spec->threads
 * (engine_set_threads); OpenBLAS's count is process-wide and the caller's to
 * set (engine_set_blas_threads) before jobs run. */
job_outcome job_run(const job_args *a, job_result *r, char *err, size_t errlen);
void job_result_free(job_result *r);

/* The differences between the spec a checkpoint recorded and this one (both
 * JSON text of spec_to_json_string), ignoring the fields that may differ
 * (threads, dataset.train, dataset.eval): "field: checkpoint X, spec Y" for
 * each, joined by "; ", into out. Returns how many, or -1 when either text is
 * not a JSON object. */
int job_spec_differences(const char *checkpoint_spec, const char *spec, char *out, size_t outlen);

/* Ensure models_dir/demo exists (written deterministically when missing). */
int job_ensure_demo(const char *models_dir, char *err, size_t errlen);

/* The native adapter file an init_adapter names: "job:<id>" is
 * jobs_dir/<id>/adapter/adapter.safetensors (refused when jobs_dir is NULL),
 * a folder means its adapter.safetensors, anything else is the path. */
int job_init_adapter_path(const char *jobs_dir, const char *ref, char *out, size_t outlen,
                          char *err, size_t errlen);

/* Whether the native adapter at path can start job s: method, rank, alpha,
 * target modules, task and the base model's shapes must match, and the
 * labels — their number when known (num_labels > 0), their names in id order
 * when given (labels != NULL). 0; -1 when they do not match, with a message
 * starting "init_adapter: " that says what differs; -2 when the adapter or
 * the model cannot be read. */
int job_check_init_adapter(const char *models_dir, const aflo_job_spec *s, const char *path,
                           const char *const *labels, int num_labels, char *err, size_t errlen);

/* Resolve a model name or path to its folder: "demo" and plain names live
 * under models_dir; a value with a '/' is a path. -1 if it has no config.json. */
int job_model_dir(const char *models_dir, const char *model, char *out, size_t outlen, char *err,
                  size_t errlen);

#endif
