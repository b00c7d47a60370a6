/* spec.c — the job-spec field table, its strict parser, the normalised JSON
 * and the generated documentation (see spec.h for the contract).
 *
 * Parsing runs in three passes over one table:
 *   1. a raw pre-scan of the bytes (size, NUL, UTF-8, \u0000, nesting depth)
 *      so cJSON only ever sees a small, shallow, well-encoded document;
 *   2. a walk of the cJSON tree, looking every key up in spec_fields[] and
 *      checking its type and range from the row (static defaults were put in
 *      place first, from the same rows);
 *   3. the defaults that depend on other fields, and the cross-field checks.
 * The first error stops the parse: one clear message beats a list of
 * follow-on complaints about the same typo. */
#include "spec.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/freeze.h"
#include "presets.h"
#include "store.h"

/* ---- module names ------------------------------------------------------------ */

/* target_modules bits: every family's names (family_target_names); a spec is
 * checked before its model, and so its family, is known. */
static unsigned all_target_names(void) {
    const char *names[FAMILY_MAX_MODULES];
    int n = family_target_names(names);
    return n >= 32 ? ~0u : (1u << n) - 1u;
}

/* "a, b, c or d" */
static void names_text(const char *const *names, int n, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s",
                                i == 0       ? ""
                                : i == n - 1 ? " or "
                                             : ", ",
                                names[i]);
}

/* ---- defaults and limits that matter --------------------------------------- */

/* The training defaults (learning rates, schedule, clipping, batch, seed,
 * dropout, the freezing phases and score) are the engine's, one set for the
 * trainer and this table: engine/train/train.h's TRAIN_DEFAULT_* and freeze.h's
 * AFLO_FREEZE_DEFAULT_*. The defaults below are of fields the trainer does
 * not take. */

/* Ranks of the paper's comparison (aflora.md §6): AFLoRA r = 4, its ELoRA
 * reproduction r = 1024, its LoRA baseline r = 8. */
#define DEFAULT_RANK_AFLORA 4
#define DEFAULT_RANK_ELORA 1024
#define DEFAULT_RANK_LORA 8
#define MAX_RANK 4096
/* LoRA alpha = 2 * rank: the scale alpha / r stays 2 whatever the rank. */
#define DEFAULT_ALPHA_PER_RANK 2.0
#define MAX_ALPHA 65536.0
#define MAX_DELTA_T 100000
/* aflora.md §5: the paper trains GLUE tasks 20-30 epochs. */
#define DEFAULT_EPOCHS 20
#define MAX_EPOCHS 1000
#define MAX_LR 10.0
#define MAX_GRAD_NORM_LIMIT 1e6
#define MAX_BATCH 4096
#define MAX_GRAD_ACCUM 1024
/* 128 tokens, not the paper's 256: see the max_seq_len doc string. */
#define DEFAULT_MAX_SEQ_LEN 128
#define MIN_MAX_SEQ_LEN 8
#define MAX_MAX_SEQ_LEN 4096
#define MAX_THREADS 1024
/* Binary classification when nothing says otherwise (and the demo's task). */
#define FALLBACK_NUM_LABELS 2
#define DEMO_NUM_LABELS 2
/* Field defaults for the data columns: GLUE's single-sentence headers
 * (SST-2's train.tsv: "sentence\tlabel"). */
#define DEFAULT_TEXT_FIELD "sentence"
#define DEFAULT_LABEL_FIELD "label"
/* The best-epoch metric when none is given: GLUE's headline metric for most
 * classification tasks (SST-2, QNLI, RTE, MNLI) and for regression (STS-B). */
#define DEFAULT_METRIC_CLASSIFICATION SPEC_METRIC_ACCURACY
#define DEFAULT_METRIC_REGRESSION SPEC_METRIC_PEARSON
/* Unknown keys: suggest a known one at most this many edits away. */
#define SUGGEST_MAX_EDITS 2
#define SUGGEST_MAX_KEY 64
/* Keys quoted in messages are cut to this many bytes. */
#define KEY_SNIPPET 48

_Static_assert(sizeof(aflo_task) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(aflo_method) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(aflo_projections) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(textdata_format) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(spec_metric) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(answer_rule) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(aflo_checkpointing) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(aflo_freeze_sensitivity) == sizeof(int), "enums are stored as int");

/* ---- the table -------------------------------------------------------------- */

static const char *const task_choices[] = {[TASK_CLASSIFICATION] = "classification",
                                           [TASK_REGRESSION] = "regression",
                                           [TASK_CAUSAL_LM] = "causal_lm"};
static const char *const format_choices[] = {[TEXTDATA_AUTO] = "auto",
                                             [TEXTDATA_TSV] = "tsv",
                                             [TEXTDATA_CSV] = "csv",
                                             [TEXTDATA_JSONL] = "jsonl"};
/* metrics_lookup's names; spec_to_train_config hands these static strings to
 * the trainer. */
static const char *const metric_choices[] = {[SPEC_METRIC_ACCURACY] = "accuracy",
                                             [SPEC_METRIC_F1] = "f1",
                                             [SPEC_METRIC_MCC] = "mcc",
                                             [SPEC_METRIC_PEARSON] = "pearson",
                                             [SPEC_METRIC_SPEARMAN] = "spearman",
                                             [SPEC_METRIC_MSE] = "mse",
                                             [SPEC_METRIC_PERPLEXITY] = "perplexity",
                                             [SPEC_METRIC_EXACT_MATCH] = "exact_match"};
const char *spec_task_name(aflo_task t) { return (unsigned)t < TASK_COUNT ? task_choices[t] : "?"; }

/* The task each metric judges. */
static const aflo_task metric_task[SPEC_METRIC_COUNT] = {
    [SPEC_METRIC_ACCURACY] = TASK_CLASSIFICATION, [SPEC_METRIC_F1] = TASK_CLASSIFICATION,
    [SPEC_METRIC_MCC] = TASK_CLASSIFICATION,      [SPEC_METRIC_PEARSON] = TASK_REGRESSION,
    [SPEC_METRIC_SPEARMAN] = TASK_REGRESSION,     [SPEC_METRIC_MSE] = TASK_REGRESSION,
    [SPEC_METRIC_PERPLEXITY] = TASK_CAUSAL_LM,    [SPEC_METRIC_EXACT_MATCH] = TASK_CAUSAL_LM};

/* The defaults that are lookups (rank by method, metric by task). */
static const double rank_by_method[METHOD_COUNT] = {[METHOD_AFLORA] = DEFAULT_RANK_AFLORA,
                                                    [METHOD_ELORA] = DEFAULT_RANK_ELORA,
                                                    [METHOD_LORA] = DEFAULT_RANK_LORA,
                                                    [METHOD_FULL] = NAN};
static const int metric_by_task[] = {[TASK_CLASSIFICATION] = DEFAULT_METRIC_CLASSIFICATION,
                                     [TASK_REGRESSION] = DEFAULT_METRIC_REGRESSION,
                                     [TASK_CAUSAL_LM] = SPEC_METRIC_PERPLEXITY};
_Static_assert(sizeof metric_by_task / sizeof *metric_by_task ==
                   sizeof task_choices / sizeof *task_choices,
               "one default metric per task");

#define OFF(member) offsetof(aflo_job_spec, member)
/* A constant's digits in a doc string ("70% of epochs"). */
#define STR_(x) #x
#define XSTR(x) STR_(x)
#define ONLY(m) (1u << (m))
#define ADAPTER_METHODS (ONLY(METHOD_AFLORA) | ONLY(METHOD_ELORA) | ONLY(METHOD_LORA))

const spec_field_info spec_fields[] = {
    {.name = "preset",
     .type = SPEC_T_STRING,
     .optional = true,
     .min = 1,
     .max = PRESET_MAX_NAME,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(preset),
     .doc = "Start from a named recipe: glue/cola, glue/mnli, glue/mrpc, glue/qnli, glue/qqp, "
            "glue/rte, glue/sst2 or glue/stsb, the AFLoRA authors' settings for that GLUE task "
            "(task, metric, epochs, learning rates for method aflora, examples per step, "
            "max_seq_len 256, warm-up, weight decay, clipping, seed and, for a dataset object, "
            "the text_fields of Hugging Face's copy of the task; README: Presets). Any field "
            "given explicitly overrides the preset's."},
    {.name = "model",
     .type = SPEC_T_STRING,
     .required = true,
     .min = 1,
     .max = SPEC_MAX_STRING,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(model),
     .doc = "Base model: a model folder name under the daemon's model directory, a path to a "
            "Hugging Face-style folder (config.json, model.safetensors, tokenizer files), or "
            "\"demo\" for the built-in tiny model and its synthetic sentiment dataset."},
    {.name = "task",
     .type = SPEC_T_ENUM,
     .choices = task_choices,
     .n_choices = TASK_COUNT,
     .def = TASK_CLASSIFICATION,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(task),
     .doc = "Classification (cross-entropy over num_labels classes), regression (one "
            "output, mean squared error, e.g. STS-B), or causal_lm: fine-tune a LLaMA-family "
            "decoder (llama, mistral, qwen2) on next-token prediction from JSON Lines rows "
            "{\"text\"}, {\"prompt\", \"completion\"}, Alpaca {\"instruction\", \"input\", "
            "\"output\"}, {\"input_ids\", \"labels\"} or chat {\"messages\": [{\"role\", "
            "\"content\"}]} (rendered with the model's chat template: Llama-2, Mistral, "
            "Llama-3 or ChatML; loss on the assistant turns) (see train_on_inputs); evaluation "
            "reports loss and perplexity, and exact_match with an answer_rule."},
    {.name = "num_labels",
     .type = SPEC_T_INT,
     .min = 1,
     .max = TEXTDATA_MAX_LABELS,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(num_labels),
     .def_doc = "classification: the number of dataset.labels when declared, else taken from "
                "the training data (2 if nothing says); regression: 1",
     .doc = "Outputs of the task head. Must be 1 for regression, and match dataset.labels "
            "when both are given. With integer labels it may exceed the largest label + 1 "
            "(classes the training data lacks); with other labels it must equal their count."},
    {.name = "dataset",
     .type = SPEC_T_OBJECT,
     .methods = SPEC_ALL_METHODS,
     .def_doc = "required, except for model \"demo\" (which must leave it out)",
     .doc = "Training and evaluation data."},
    {.name = "dataset.train",
     .type = SPEC_T_STRING,
     .required = true,
     .min = 1,
     .max = SPEC_MAX_STRING,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(dataset.train),
     .doc = "Training data: a file path (.tsv, .csv, .jsonl or .json for JSON Lines) or the id "
            "of an uploaded dataset (16 lowercase hex characters)."},
    {.name = "dataset.eval",
     .type = SPEC_T_STRING,
     .optional = true,
     .min = 1,
     .max = SPEC_MAX_STRING,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(dataset.eval),
     .doc = "Evaluation data, same forms as train, scored after every epoch; the best epoch's "
            "adapter is kept. Absent: no evaluation, the last epoch's adapter is kept."},
    {.name = "dataset.format",
     .type = SPEC_T_ENUM,
     .choices = format_choices,
     .n_choices = 4,
     .def = TEXTDATA_AUTO,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(dataset.format),
     .doc = "File format; auto goes by the file extension. TSV is GLUE's (no quoting), CSV is "
            "RFC 4180, JSONL is one JSON object per line."},
    {.name = "dataset.text_fields",
     .type = SPEC_T_COLUMNS,
     .min = 1,
     .max = SPEC_MAX_TEXT_FIELDS,
     .def_str = DEFAULT_TEXT_FIELD,
     .methods = SPEC_ALL_METHODS,
     .doc = "The input text: one field, or two for sentence-pair tasks (MRPC, QQP, MNLI, ...). "
            "Each is a header column or JSON key name, or a 0-based column index (TSV/CSV; "
            "required when has_header is false)."},
    {.name = "dataset.label_field",
     .type = SPEC_T_COLUMN,
     .min = 0,
     .max = SPEC_MAX_COLUMN_INDEX,
     .def_str = DEFAULT_LABEL_FIELD,
     .methods = SPEC_ALL_METHODS,
     .doc = "The label: a column or key name, or a 0-based column index."},
    {.name = "dataset.labels",
     .type = SPEC_T_STRINGS,
     .optional = true,
     .min = 1,
     .max = TEXTDATA_MAX_LABELS,
     .methods = SPEC_ALL_METHODS,
     .doc = "Classification only: the label names in class-id order; a row with any other "
            "label is an error. Absent: labels that are all integers are their own ids (0..n-1, "
            "every id present unless num_labels says more); other labels are sorted, as Hugging "
            "Face's run_glue does (\"neg\" 0, \"pos\" 1)."},
    {.name = "dataset.has_header",
     .type = SPEC_T_BOOL,
     .def = 1,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(dataset.has_header),
     .doc = "TSV/CSV: the first row names the columns (CoLA's train.tsv has none). Ignored for "
            "JSONL."},
    {.name = "metric",
     .type = SPEC_T_ENUM,
     .choices = metric_choices,
     .n_choices = SPEC_METRIC_COUNT,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(metric),
     .def_by_task = metric_by_task,
     .doc = "The evaluation metric that picks the best epoch (whose adapter is kept): accuracy, "
            "f1 (class id 1 positive; binary tasks only) or mcc for classification; pearson, "
            "spearman or mse (the lowest wins) for regression; perplexity (the lowest wins) "
            "or, with an answer_rule, exact_match (the highest wins; the earliest of equal "
            "epochs) for causal_lm. GLUE judges CoLA by mcc, STS-B by pearson and MRPC by f1. "
            "No effect without dataset.eval."},
    {.name = "method",
     .type = SPEC_T_ENUM,
     .choices = method_names,
     .n_choices = METHOD_COUNT,
     .def = METHOD_AFLORA,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(method),
     .doc = "aflora: low-rank A and B that freeze adaptively plus trainable vectors; elora: "
            "frozen random A and B, trainable vectors; lora: trainable A and B scaled by "
            "alpha/rank; full: every base weight trains (no adapter)."},
    {.name = "rank",
     .type = SPEC_T_INT,
     .min = 1,
     .max = MAX_RANK,
     .methods = ADAPTER_METHODS,
     .offset = OFF(rank),
     .def_by_method = rank_by_method,
     .doc = "Adapter rank r (the paper's settings by method)."},
    {.name = "alpha",
     .type = SPEC_T_NUMBER,
     .min = 0,
     .min_exclusive = true,
     .max = MAX_ALPHA,
     .methods = ONLY(METHOD_LORA),
     .offset = OFF(alpha),
     .def_doc = "2 × rank",
     .doc = "LoRA scaling numerator: the update is (alpha / rank) B A x."},
    {.name = "target_modules",
     .type = SPEC_T_MODULES,
     .min = 1,
     .max = FAMILY_MAX_MODULES,
     .methods = ADAPTER_METHODS,
     .doc = "Which linear layers of every block get an adapter, by the module names of the "
            "model's family (its Hugging Face names); a name the model's family lacks fails the "
            "job when it starts."},
    {.name = "trainable_projections",
     .type = SPEC_T_ENUM,
     .choices = projections_names,
     .n_choices = PROJ_COUNT,
     .def = PROJ_FFN,
     .methods = ONLY(METHOD_AFLORA),
     .offset = OFF(trainable_projections),
     .doc = "Whose A and B start trainable: ffn (intermediate.dense and output.dense, as in "
            "the authors' code and the paper's best ablation), all, or none (ELoRA-like at "
            "rank r)."},
    {.name = "freeze",
     .type = SPEC_T_OBJECT,
     .methods = ONLY(METHOD_AFLORA),
     .doc = "Adaptive freezing of the projections (AFLoRA's freezing score and cubic "
            "schedule). initial_warmup_epochs + final_warmup_epochs must not exceed epochs."},
    {.name = "freeze.enabled",
     .type = SPEC_T_BOOL,
     .def = 1,
     .methods = ONLY(METHOD_AFLORA),
     .offset = OFF(freeze.enabled),
     .doc = "false: nothing is scored and no projection ever freezes; the A and B that start "
            "trainable (trainable_projections) train to the end, and their weight gradients "
            "are computed and counted every step (the paper's Table 4 \"trainable\" row). The "
            "other freeze fields are then unused."},
    {.name = "freeze.sensitivity",
     .type = SPEC_T_ENUM,
     .choices = freeze_sensitivity_names,
     .n_choices = FREEZE_SENS_COUNT,
     .def = FREEZE_SENS_GRAD,
     .methods = ONLY(METHOD_AFLORA),
     .offset = OFF(freeze.sensitivity),
     .doc = "What the freezing score smooths, per element of A or B: grad, |∇L(p)| (AFLoRA's "
            "choice), or weight_grad, |p·∇L(p)| (AdaLoRA's importance), p being the value "
            "after the step's update."},
    {.name = "freeze.initial_warmup_epochs",
     .type = SPEC_T_NUMBER,
     .min = 0,
     .max = MAX_EPOCHS,
     .methods = ONLY(METHOD_AFLORA),
     .offset = OFF(freeze.initial_warmup_epochs),
     .def_doc = XSTR(TRAIN_DEFAULT_INITIAL_WARMUP_EPOCHS) " (" XSTR(
         TRAIN_SHORT_RUN_INITIAL_PERCENT) "% of epochs when epochs < " XSTR(TRAIN_SHORT_RUN_EPOCHS) ")",
     .doc = "Epochs before any projection may freeze (fractions allowed)."},
    {.name = "freeze.final_warmup_epochs",
     .type = SPEC_T_NUMBER,
     .min = 0,
     .max = MAX_EPOCHS,
     .methods = ONLY(METHOD_AFLORA),
     .offset = OFF(freeze.final_warmup_epochs),
     .def_doc = XSTR(TRAIN_DEFAULT_FINAL_WARMUP_PERCENT) "% of epochs",
     .doc = "Epochs at the end with every projection frozen; its first step freezes what is "
            "left."},
    {.name = "freeze.delta_t",
     .type = SPEC_T_INT,
     .min = 1,
     .max = MAX_DELTA_T,
     .def = AFLO_FREEZE_DEFAULT_DELTA_T,
     .methods = ONLY(METHOD_AFLORA),
     .offset = OFF(freeze.delta_t),
     .doc = "Steps per scoring window; freezing decisions are taken every delta_t steps."},
    {.name = "freeze.beta1",
     .type = SPEC_T_NUMBER,
     .min = 0,
     .max = 1,
     .max_exclusive = true,
     .def = AFLO_FREEZE_DEFAULT_BETA1,
     .methods = ONLY(METHOD_AFLORA),
     .offset = OFF(freeze.beta1),
     .doc = "Smoothing of the sensitivity in the freezing score."},
    {.name = "freeze.beta2",
     .type = SPEC_T_NUMBER,
     .min = 0,
     .max = 1,
     .max_exclusive = true,
     .def = AFLO_FREEZE_DEFAULT_BETA2,
     .methods = ONLY(METHOD_AFLORA),
     .offset = OFF(freeze.beta2),
     .doc = "Smoothing of the uncertainty in the freezing score."},
    {.name = "epochs",
     .type = SPEC_T_INT,
     .min = 1,
     .max = MAX_EPOCHS,
     .def = DEFAULT_EPOCHS,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(epochs),
     .doc = "Passes over the training data (the paper trains GLUE tasks 20-30 epochs)."},
    {.name = "batch_size",
     .type = SPEC_T_INT,
     .min = 1,
     .max = MAX_BATCH,
     .def = TRAIN_DEFAULT_BATCH_SIZE,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(batch_size),
     .doc = "Examples per micro-batch. The paper uses 64 on GPUs; aflorad trains on CPUs, where "
            "activation memory grows linearly with the batch (32 halves it) and, unlike on a "
            "GPU, a bigger batch buys little speed once each matrix product already has "
            "thousands of rows (32 x 128 tokens). Set grad_accum 2 for the paper's 64 examples "
            "per optimizer step."},
    {.name = "grad_accum",
     .type = SPEC_T_INT,
     .min = 1,
     .max = MAX_GRAD_ACCUM,
     .def = TRAIN_DEFAULT_GRAD_ACCUM,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(grad_accum),
     .doc = "Micro-batches per optimizer step (examples per step = batch_size × grad_accum)."},
    {.name = "max_seq_len",
     .type = SPEC_T_INT,
     .min = MIN_MAX_SEQ_LEN,
     .max = MAX_MAX_SEQ_LEN,
     .def = DEFAULT_MAX_SEQ_LEN,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(max_seq_len),
     .doc = "Tokens per example, longer inputs are truncated; also capped by the model's "
            "position embeddings. The paper uses 256; 128 is the usual BERT GLUE setting and "
            "halves the cost on CPU."},
    {.name = "length_bucketing",
     .type = SPEC_T_BOOL,
     .def = TRAIN_DEFAULT_LENGTH_BUCKETING,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(length_bucketing),
     .doc = "Batch examples of similar length together to cut padding: each epoch's shuffled "
            "order is cut into chunks of batch_size × grad_accum × 50 examples, each chunk is "
            "sorted by length and the resulting batches are shuffled, so batch order stays "
            "random. Deterministic for a seed; changes which examples share a batch, hence "
            "the losses."},
    {.name = "learning_rate",
     .type = SPEC_T_NUMBER,
     .min = 0,
     .min_exclusive = true,
     .max = MAX_LR,
     .def = TRAIN_DEFAULT_LR,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(learning_rate),
     .doc = "AdamW learning rate of the adapter (the paper's). For method full use a "
            "full-fine-tuning rate such as 2e-5."},
    {.name = "head_learning_rate",
     .type = SPEC_T_NUMBER,
     .min = 0,
     .min_exclusive = true,
     .max = MAX_LR,
     .def = TRAIN_DEFAULT_HEAD_LR,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(head_learning_rate),
     .doc = "Learning rate of the task head (the paper uses 4e-2 to 8e-2 by task)."},
    {.name = "weight_decay",
     .type = SPEC_T_NUMBER,
     .min = 0,
     .max = 1,
     .def = TRAIN_DEFAULT_WEIGHT_DECAY,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(weight_decay),
     .doc = "AdamW decoupled weight decay."},
    {.name = "warmup_ratio",
     .type = SPEC_T_NUMBER,
     .min = 0,
     .max = 1,
     .max_exclusive = true,
     .def = TRAIN_DEFAULT_WARMUP_RATIO,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(warmup_ratio),
     .doc = "Fraction of steps of linear learning-rate warm-up, then linear decay to 0."},
    {.name = "max_grad_norm",
     .type = SPEC_T_NUMBER,
     .min = 0,
     .max = MAX_GRAD_NORM_LIMIT,
     .def = TRAIN_DEFAULT_MAX_GRAD_NORM,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(max_grad_norm),
     .doc = "Clip gradients to this global norm; 0 turns clipping off."},
    {.name = "seed",
     .type = SPEC_T_INT,
     .min = 0,
     .max = (double)SPEC_MAX_SEED,
     .def = TRAIN_DEFAULT_SEED,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(seed),
     .wide = true,
     .doc = "Seeds initialisation, data order and dropout: the same spec and seed give the same "
            "run."},
    {.name = "threads",
     .type = SPEC_T_INT,
     .min = 0,
     .max = MAX_THREADS,
     .def = 0,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(threads),
     .doc = "Compute threads for this job; 0 uses one per core."},
    {.name = "dropout",
     .type = SPEC_T_BOOL,
     .def = TRAIN_DEFAULT_DROPOUT,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(dropout),
     .doc = "Apply the base model's dropout (its config's probabilities) while training."},
    {.name = "train_on_inputs",
     .type = SPEC_T_BOOL,
     .def = false,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(train_on_inputs),
     .doc = "causal_lm only: the loss covers the prompt too ({\"prompt\"} and Alpaca rows; "
            "in chat rows the system and user turns and the role headers), not only the "
            "completion (assistant turns) and its end-of-sequence (end-of-turn) token."},
    {.name = "answer_rule",
     .type = SPEC_T_ENUM,
     .choices = answer_rule_names,
     .n_choices = ANSWER_RULE_COUNT,
     .def = ANSWER_NONE,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(answer_rule),
     .doc = "causal_lm only: after each epoch's loss, generate greedily from the prompt of "
            "every dataset.eval row with a completion ({\"prompt\", \"completion\"} and "
            "Alpaca rows) and report exact_match, the fraction whose answer equals the "
            "completion's. exact: the whole generated text and the completion, whitespace "
            "trimmed at both ends; gsm8k: the first number after \"####\", else the last number "
            "(commas between thousands dropped, \"7.0\", \"7.\" and \"007\" read as 7, a "
            "text without a number never matches); none: no generation."},
    {.name = "eval_max_new_tokens",
     .type = SPEC_T_INT,
     .min = 1,
     .max = LMEVAL_MAX_NEW_TOKENS,
     .def = LMEVAL_DEFAULT_MAX_NEW_TOKENS,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(eval_max_new_tokens),
     .doc = "causal_lm with an answer_rule: a generation stops at the end-of-sequence token or "
            "after this many tokens (or where the model's positions end)."},
    {.name = "activation_checkpointing",
     .type = SPEC_T_ENUM,
     .choices = checkpointing_names,
     .n_choices = CHECKPOINTING_COUNT,
     .def = CHECKPOINTING_AUTO,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(activation_checkpointing),
     .doc = "causal_lm only: keep only each decoder block's input through the forward and "
            "recompute the block's activations in backward (one more forward of the blocks, "
            "about a third more compute, for the activations of all blocks but one). on, off, "
            "or auto: on when it saves more than 1 GiB or when the job fits in memory only "
            "with it."},
    {.name = "init_adapter",
     .type = SPEC_T_STRING,
     .optional = true,
     .min = 1,
     .max = SPEC_MAX_STRING,
     .methods = SPEC_ALL_METHODS,
     .offset = OFF(init_adapter),
     .doc = "Start from a trained native adapter instead of a fresh one: \"job:<id>\" for the "
            "adapter of a succeeded job (the only form the API accepts), or a file path "
            "(aflorad run; an adapter/ folder means its adapter.safetensors). Its method, rank, "
            "target modules, labels and base model shapes must match this job's."},
};

#define N_FIELDS ((int)(sizeof spec_fields / sizeof spec_fields[0]))
const int spec_field_count = N_FIELDS;

/* ---- small helpers ------------------------------------------------------- */

/* Shortest text that reads back as the same double (as cJSON prints). */
static void fmt_num(char *buf, size_t n, double v) {
    snprintf(buf, n, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, n, "%.17g", v);
}

static int field_index(const char *name) {
    for (int i = 0; i < N_FIELDS; i++)
        if (strcmp(spec_fields[i].name, name) == 0) return i;
    return -1;
}

/* Whether row f is a direct child of the object named prefix ("" = root). */
static bool is_child(const spec_field_info *f, const char *prefix) {
    size_t pl = strlen(prefix);
    if (pl == 0) return strchr(f->name, '.') == NULL;
    return strncmp(f->name, prefix, pl) == 0 && f->name[pl] == '.' &&
           strchr(f->name + pl + 1, '.') == NULL;
}

static const char *leaf(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static bool streq(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

/* "aflora", "aflora or lora", "aflora, elora or lora". */
static void methods_text(unsigned mask, char *buf, size_t n) {
    int count = 0, seen = 0;
    for (int m = 0; m < METHOD_COUNT; m++) count += (mask >> m) & 1u;
    buf[0] = '\0';
    size_t len = 0;
    for (int m = 0; m < METHOD_COUNT && len < n; m++) {
        if (!((mask >> m) & 1u)) continue;
        const char *sep = seen == 0 ? "" : seen == count - 1 ? " or " : ", ";
        len += (size_t)snprintf(buf + len, n - len, "%s%s", sep, method_names[m]);
        seen++;
    }
}

/* "an integer from 1 to 1000", "a number > 0 and <= 10". */
static void range_text(const spec_field_info *f, char *buf, size_t n) {
    char lo[32], hi[32];
    fmt_num(lo, sizeof lo, f->min);
    fmt_num(hi, sizeof hi, f->max);
    const char *what = f->type == SPEC_T_INT ? "an integer" : "a number";
    if (!f->min_exclusive && !f->max_exclusive)
        snprintf(buf, n, "%s from %s to %s", what, lo, hi);
    else
        snprintf(buf, n, "%s %s %s and %s %s", what, f->min_exclusive ? ">" : ">=", lo,
                 f->max_exclusive ? "<" : "<=", hi);
}

static bool in_range(const spec_field_info *f, double v) {
    if (f->min_exclusive ? !(v > f->min) : !(v >= f->min)) return false;
    if (f->max_exclusive ? !(v < f->max) : !(v <= f->max)) return false;
    return true;
}

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an unknown value";
}

static const char *expected_type(spec_type t) {
    switch (t) {
    case SPEC_T_STRING: return "a string";
    case SPEC_T_INT: return "an integer";
    case SPEC_T_NUMBER: return "a number";
    case SPEC_T_BOOL: return "true or false";
    case SPEC_T_ENUM: return "a string";
    case SPEC_T_OBJECT: return "an object";
    case SPEC_T_COLUMNS: return "an array of column names or indices";
    case SPEC_T_COLUMN: return "a column name (string) or 0-based index (integer)";
    case SPEC_T_STRINGS: return "an array of strings";
    case SPEC_T_MODULES: return "an array of module names";
    }
    return "?";
}

/* A key as it may appear in a message or a path: control bytes as '?', cut
 * to KEY_SNIPPET bytes (at a UTF-8 boundary) with "..." after. */
static void key_snippet(const char *key, char *buf, size_t n) {
    size_t o = 0, i = 0;
    for (; key[i] && i < KEY_SNIPPET && o + 4 < n; i++) {
        unsigned char ch = (unsigned char)key[i];
        buf[o++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    if (key[i]) {
        while (o > 0 && ((unsigned char)buf[o - 1] & 0xC0) == 0x80) o--; /* continuation */
        if (o > 0 && (unsigned char)buf[o - 1] >= 0xC0) o--;             /* its lead byte */
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
}

/* ---- error reporting ------------------------------------------------------ */

static const char *const error_code_names[SPEC_E_COUNT] = {
    [SPEC_OK] = "ok",
    [SPEC_E_INVALID_JSON] = "invalid_json",
    [SPEC_E_TOO_LARGE] = "too_large",
    [SPEC_E_UNKNOWN_FIELD] = "unknown_field",
    [SPEC_E_WRONG_TYPE] = "wrong_type",
    [SPEC_E_OUT_OF_RANGE] = "out_of_range",
    [SPEC_E_INVALID_VALUE] = "invalid_value",
    [SPEC_E_MISSING_FIELD] = "missing_field",
    [SPEC_E_CONFLICT] = "conflict",
    [SPEC_E_IO] = "io_error",
    [SPEC_E_NO_MEMORY] = "out_of_memory",
};

const char *spec_error_code_name(spec_error_code code) {
    if ((int)code < 0 || code >= SPEC_E_COUNT) return "unknown";
    return error_code_names[code];
}

typedef struct {
    aflo_job_spec *s;
    aflo_spec_error *e;
    bool given[N_FIELDS];
} parse_ctx;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int
fail(aflo_spec_error *e, spec_error_code code, const char *field, const char *fmt, ...) {
    if (!e) return -1;
    e->code = code;
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    size_t n = 0;
    if (e->field[0]) n = (size_t)snprintf(e->message, sizeof e->message, "%s: ", e->field);
    if (n >= sizeof e->message) n = sizeof e->message - 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message + n, sizeof e->message - n, fmt, ap);
    va_end(ap);
    return -1;
}

static int fail_type(parse_ctx *c, const char *path, spec_type t, const cJSON *v) {
    if (cJSON_IsNull(v))
        return fail(c->e, SPEC_E_WRONG_TYPE, path,
                    "must be %s, got null (leave the field out to get its default)",
                    expected_type(t));
    return fail(c->e, SPEC_E_WRONG_TYPE, path, "must be %s, got %s", expected_type(t),
                json_type_name(v));
}

static int fail_oom(parse_ctx *c) { return fail(c->e, SPEC_E_NO_MEMORY, NULL, "out of memory"); }

/* ---- storage through the table's offsets ----------------------------------- */

static void *slot(aflo_job_spec *s, const spec_field_info *f) { return (char *)s + f->offset; }
static const void *cslot(const aflo_job_spec *s, const spec_field_info *f) {
    return (const char *)s + f->offset;
}

static void put_int(aflo_job_spec *s, const spec_field_info *f, double v) {
    if (f->wide) {
        uint64_t u = (uint64_t)v;
        memcpy(slot(s, f), &u, sizeof u);
    } else {
        int i = (int)v;
        memcpy(slot(s, f), &i, sizeof i);
    }
}
static double get_int(const aflo_job_spec *s, const spec_field_info *f) {
    if (f->wide) {
        uint64_t u;
        memcpy(&u, cslot(s, f), sizeof u);
        return (double)u;
    }
    int i;
    memcpy(&i, cslot(s, f), sizeof i);
    return i;
}
static void put_double(aflo_job_spec *s, const spec_field_info *f, double v) {
    memcpy(slot(s, f), &v, sizeof v);
}
static double get_double(const aflo_job_spec *s, const spec_field_info *f) {
    double v;
    memcpy(&v, cslot(s, f), sizeof v);
    return v;
}
static void put_bool(aflo_job_spec *s, const spec_field_info *f, bool v) {
    memcpy(slot(s, f), &v, sizeof v);
}
static bool get_bool(const aflo_job_spec *s, const spec_field_info *f) {
    bool v;
    memcpy(&v, cslot(s, f), sizeof v);
    return v;
}
/* ENUM fields are C enums the size of int (asserted above). */
static void put_enum(aflo_job_spec *s, const spec_field_info *f, int v) {
    memcpy(slot(s, f), &v, sizeof v);
}
static int get_enum(const aflo_job_spec *s, const spec_field_info *f) {
    int v;
    memcpy(&v, cslot(s, f), sizeof v);
    return v;
}
static char **str_slot(aflo_job_spec *s, const spec_field_info *f) { return slot(s, f); }
static const char *get_str(const aflo_job_spec *s, const spec_field_info *f) {
    char *const *p = (char *const *)cslot(s, f);
    return *p;
}

/* Static defaults of every scalar row whose default does not depend on
 * other fields; the rest are worked out in resolve(). */
static void apply_static_defaults(aflo_job_spec *s) {
    for (int i = 0; i < N_FIELDS; i++) {
        const spec_field_info *f = &spec_fields[i];
        if (f->def_doc || f->def_by_method || f->def_by_task) continue;
        switch (f->type) {
        case SPEC_T_INT: put_int(s, f, f->def); break;
        case SPEC_T_NUMBER: put_double(s, f, f->def); break;
        case SPEC_T_BOOL: put_bool(s, f, f->def != 0); break;
        case SPEC_T_ENUM: put_enum(s, f, (int)f->def); break;
        case SPEC_T_MODULES: s->target_modules = all_target_names(); break;
        default: break;
        }
    }
}

/* ---- pass 1: the raw bytes --------------------------------------------------- */

static void line_col(const char *s, size_t off, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if (((unsigned char)s[i] & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

/* Length of the UTF-8 sequence at s[0..n), or 0 if it is not valid
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1Fu;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0Fu;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07u;
        min = 0x10000;
    } else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

static int fail_at(aflo_spec_error *e, const char *json, size_t off, const char *what) {
    int line, col;
    line_col(json, off, &line, &col);
    return fail(e, SPEC_E_INVALID_JSON, NULL, "invalid JSON at line %d, column %d: %s", line, col,
                what);
}

/* Reject what cJSON would accept silently or recurse into deeply: NUL
 * bytes, invalid UTF-8, "\u0000" (it would cut a string short), and more
 * than SPEC_MAX_DEPTH nested arrays/objects. */
static int prescan(const char *json, size_t len, aflo_spec_error *e) {
    const unsigned char *s = (const unsigned char *)json;
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        if (c == 0) return fail_at(e, json, i, "NUL byte");
        if (c >= 0x80) {
            size_t n = utf8_seq(s + i, len - i);
            if (n == 0) return fail_at(e, json, i, "invalid UTF-8");
            i += n;
            continue;
        }
        if (in_string) {
            if (c == '"') {
                in_string = false;
            } else if (c == '\\' && i + 1 < len) {
                if (s[i + 1] == 'u' && i + 5 < len && memcmp(s + i + 2, "0000", 4) == 0)
                    return fail_at(e, json, i, "\\u0000 in a string");
                i += 2;
                continue;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > SPEC_MAX_DEPTH)
                return fail_at(e, json, i, "nested too deeply (a spec is at most 3 levels deep)");
        } else if (c == '}' || c == ']') {
            depth--;
        }
        i++;
    }
    return 0;
}

/* ---- pass 2: the tree ------------------------------------------------------------ */

static int parse_object(parse_ctx *c, const cJSON *obj, const char *prefix);

/* A string value: non-empty, at most SPEC_MAX_STRING bytes, no control
 * characters (they are names and paths; a newline would break log lines). */
static int check_string(parse_ctx *c, const char *path, const cJSON *v, spec_type t) {
    if (!cJSON_IsString(v) || !v->valuestring) return fail_type(c, path, t, v);
    const char *s = v->valuestring;
    size_t n = strlen(s);
    if (n == 0) return fail(c->e, SPEC_E_INVALID_VALUE, path, "must not be empty");
    if (n > SPEC_MAX_STRING)
        return fail(c->e, SPEC_E_OUT_OF_RANGE, path, "is %zu bytes long, at most %d are allowed", n,
                    SPEC_MAX_STRING);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return fail(c->e, SPEC_E_INVALID_VALUE, path, "must not contain control characters");
    return 0;
}

/* A number of row f (INT or NUMBER, or a column index) in range. */
static int check_number(parse_ctx *c, const spec_field_info *f, const char *path, const cJSON *v,
                        spec_type t, double *out) {
    if (!cJSON_IsNumber(v)) return fail_type(c, path, t, v);
    double d = v->valuedouble;
    char got[32], range[128];
    if (!isfinite(d)) return fail(c->e, SPEC_E_OUT_OF_RANGE, path, "must be finite");
    fmt_num(got, sizeof got, d);
    if (f->type == SPEC_T_INT || f->type == SPEC_T_COLUMN || f->type == SPEC_T_COLUMNS) {
        if (d != floor(d))
            return fail(c->e, SPEC_E_WRONG_TYPE, path, "must be an integer, got %s", got);
    }
    if (f->type == SPEC_T_COLUMN || f->type == SPEC_T_COLUMNS) {
        if (d < 0 || d > SPEC_MAX_COLUMN_INDEX)
            return fail(c->e, SPEC_E_OUT_OF_RANGE, path,
                        "a column index must be from 0 to %d, got %s", SPEC_MAX_COLUMN_INDEX, got);
    } else if (!in_range(f, d)) {
        range_text(f, range, sizeof range);
        return fail(c->e, SPEC_E_OUT_OF_RANGE, path, "must be %s, got %s", range, got);
    }
    *out = d == 0 ? 0 : d; /* -0 reads back as 0 */
    return 0;
}

static int parse_column(parse_ctx *c, const spec_field_info *f, const char *path, const cJSON *v,
                        spec_column *col) {
    if (cJSON_IsString(v)) {
        if (check_string(c, path, v, SPEC_T_COLUMN)) return -1;
        col->name = xstrdup(v->valuestring);
        if (!col->name) return fail_oom(c);
        col->kind = TEXTDATA_FIELD_NAME;
        return 0;
    }
    double d;
    if (!cJSON_IsNumber(v)) return fail_type(c, path, SPEC_T_COLUMN, v);
    if (check_number(c, f, path, v, SPEC_T_COLUMN, &d)) return -1;
    col->kind = TEXTDATA_FIELD_INDEX;
    col->index = (int)d;
    return 0;
}

static bool same_column(const spec_column *a, const spec_column *b) {
    if (a->kind != b->kind) return false;
    return a->kind == TEXTDATA_FIELD_NAME ? streq(a->name, b->name) : a->index == b->index;
}

static void column_free(spec_column *col) {
    free(col->name);
    memset(col, 0, sizeof *col);
}

static int array_size_check(parse_ctx *c, const spec_field_info *f, const cJSON *v, int *n) {
    if (!cJSON_IsArray(v)) return fail_type(c, f->name, f->type, v);
    *n = cJSON_GetArraySize(v);
    if (*n < (int)f->min || *n > (int)f->max) {
        if (f->type == SPEC_T_COLUMNS)
            return fail(c->e, SPEC_E_OUT_OF_RANGE, f->name,
                        "must list 1 or 2 fields (one text, or a sentence pair), got %d", *n);
        if (f->type == SPEC_T_MODULES && *n == 0)
            return fail(c->e, SPEC_E_OUT_OF_RANGE, f->name, "must name at least one module");
        return fail(c->e, SPEC_E_OUT_OF_RANGE, f->name, "must have %d to %d entries, got %d",
                    (int)f->min, (int)f->max, *n);
    }
    return 0;
}

static int parse_columns(parse_ctx *c, const spec_field_info *f, const cJSON *v) {
    spec_dataset *d = &c->s->dataset;
    int n;
    if (array_size_check(c, f, v, &n)) return -1;
    char path[SPEC_FIELD_PATH_MAX], other[SPEC_FIELD_PATH_MAX];
    int i = 0;
    for (const cJSON *it = v->child; it; it = it->next, i++) {
        snprintf(path, sizeof path, "%s[%d]", f->name, i);
        if (parse_column(c, f, path, it, &d->text_fields[i])) return -1;
        d->n_text_fields = i + 1;
        for (int j = 0; j < i; j++)
            if (same_column(&d->text_fields[j], &d->text_fields[i])) {
                snprintf(other, sizeof other, "%s[%d]", f->name, j);
                return fail(c->e, SPEC_E_INVALID_VALUE, path, "is the same column as %s", other);
            }
    }
    return 0;
}

static int parse_labels(parse_ctx *c, const spec_field_info *f, const cJSON *v) {
    spec_dataset *d = &c->s->dataset;
    int n;
    if (array_size_check(c, f, v, &n)) return -1;
    d->labels = calloc((size_t)n, sizeof *d->labels);
    if (!d->labels) return fail_oom(c);
    char path[SPEC_FIELD_PATH_MAX];
    int i = 0;
    for (const cJSON *it = v->child; it; it = it->next, i++) {
        snprintf(path, sizeof path, "%s[%d]", f->name, i);
        if (check_string(c, path, it, SPEC_T_STRING)) return -1;
        const char *s = it->valuestring;
        size_t len = strlen(s);
        /* The loader trims labels read from data, so a padded name never matches. */
        if (s[0] == ' ' || s[len - 1] == ' ')
            return fail(c->e, SPEC_E_INVALID_VALUE, path,
                        "must not start or end with a space (labels in the data are trimmed)");
        for (int j = 0; j < i; j++)
            if (strcmp(d->labels[j], s) == 0)
                return fail(c->e, SPEC_E_INVALID_VALUE, path, "repeats %s[%d]", f->name, j);
        d->labels[i] = xstrdup(s);
        if (!d->labels[i]) return fail_oom(c);
        d->n_labels = i + 1;
    }
    return 0;
}

static int parse_modules(parse_ctx *c, const spec_field_info *f, const cJSON *v) {
    int n;
    if (!cJSON_IsArray(v)) return fail_type(c, f->name, f->type, v);
    n = cJSON_GetArraySize(v);
    if (n == 0) return fail(c->e, SPEC_E_OUT_OF_RANGE, f->name, "must name at least one module");
    char path[SPEC_FIELD_PATH_MAX];
    unsigned mask = 0;
    int i = 0;
    for (const cJSON *it = v->child; it; it = it->next, i++) {
        snprintf(path, sizeof path, "%s[%d]", f->name, i);
        if (!cJSON_IsString(it)) return fail_type(c, path, SPEC_T_STRING, it);
        const char *names[FAMILY_MAX_MODULES];
        int count = family_target_names(names), m = 0;
        while (m < count && strcmp(names[m], it->valuestring) != 0) m++;
        if (m == count) {
            char key[KEY_SNIPPET + 8], choices[1024];
            key_snippet(it->valuestring, key, sizeof key);
            names_text(names, count, choices, sizeof choices);
            return fail(c->e, SPEC_E_INVALID_VALUE, path, "\"%s\" is not a module; use %s", key,
                        choices);
        }
        if (mask & (1u << m))
            return fail(c->e, SPEC_E_INVALID_VALUE, path, "\"%s\" is listed twice", names[m]);
        mask |= 1u << m;
    }
    c->s->target_modules = mask;
    return 0;
}

static int parse_value(parse_ctx *c, int idx, const cJSON *v) {
    const spec_field_info *f = &spec_fields[idx];
    double d;
    switch (f->type) {
    case SPEC_T_STRING: {
        if (check_string(c, f->name, v, f->type)) return -1;
        char **p = str_slot(c->s, f);
        free(*p);
        *p = xstrdup(v->valuestring);
        return *p ? 0 : fail_oom(c);
    }
    case SPEC_T_INT:
        if (check_number(c, f, f->name, v, f->type, &d)) return -1;
        put_int(c->s, f, d);
        return 0;
    case SPEC_T_NUMBER:
        if (check_number(c, f, f->name, v, f->type, &d)) return -1;
        put_double(c->s, f, d);
        return 0;
    case SPEC_T_BOOL:
        if (!cJSON_IsBool(v)) return fail_type(c, f->name, f->type, v);
        put_bool(c->s, f, cJSON_IsTrue(v));
        return 0;
    case SPEC_T_ENUM: {
        if (!cJSON_IsString(v)) return fail_type(c, f->name, f->type, v);
        for (int k = 0; k < f->n_choices; k++)
            if (strcmp(f->choices[k], v->valuestring) == 0) {
                put_enum(c->s, f, k);
                return 0;
            }
        char got[KEY_SNIPPET + 8], list[256];
        size_t len = 0;
        list[0] = '\0';
        for (int k = 0; k < f->n_choices && len < sizeof list; k++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s\"%s\"",
                                    k == 0                  ? ""
                                    : k == f->n_choices - 1 ? " or "
                                                            : ", ",
                                    f->choices[k]);
        key_snippet(v->valuestring, got, sizeof got);
        return fail(c->e, SPEC_E_INVALID_VALUE, f->name, "must be %s, got \"%s\"", list, got);
    }
    case SPEC_T_OBJECT:
        if (!cJSON_IsObject(v)) return fail_type(c, f->name, f->type, v);
        return parse_object(c, v, f->name);
    case SPEC_T_COLUMNS: return parse_columns(c, f, v);
    case SPEC_T_COLUMN: return parse_column(c, f, f->name, v, &c->s->dataset.label_field);
    case SPEC_T_STRINGS: return parse_labels(c, f, v);
    case SPEC_T_MODULES: return parse_modules(c, f, v);
    }
    return fail(c->e, SPEC_E_INVALID_VALUE, f->name, "unhandled field type");
}

/* Levenshtein distance, for "did you mean"; both strings are short. */
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > SUGGEST_MAX_KEY || lb > SUGGEST_MAX_KEY) return SUGGEST_MAX_EDITS + 1;
    int row[SUGGEST_MAX_KEY + 1];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The field an unknown key was probably meant to be: the same key in
 * another object ("delta_t" at the top -> "freeze.delta_t"), else the
 * closest sibling within SUGGEST_MAX_EDITS edits. NULL if none. */
static const char *suggest(const char *prefix, const char *key) {
    for (int i = 0; i < N_FIELDS; i++)
        if (!is_child(&spec_fields[i], prefix) && strcmp(leaf(spec_fields[i].name), key) == 0)
            return spec_fields[i].name;
    const char *best = NULL;
    int best_d = SUGGEST_MAX_EDITS + 1;
    for (int i = 0; i < N_FIELDS; i++) {
        if (!is_child(&spec_fields[i], prefix)) continue;
        int dist = edit_distance(key, leaf(spec_fields[i].name));
        if (dist < best_d && dist < (int)strlen(key)) {
            best_d = dist;
            best = spec_fields[i].name;
        }
    }
    return best;
}

static int parse_object(parse_ctx *c, const cJSON *obj, const char *prefix) {
    char path[SPEC_FIELD_PATH_MAX], key[KEY_SNIPPET + 8];
    for (const cJSON *it = obj->child; it; it = it->next) {
        const char *k = it->string ? it->string : "";
        int idx = -1;
        if (!strchr(k, '.') && strlen(prefix) + strlen(k) + 2 < sizeof path) {
            snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", k);
            idx = field_index(path);
        }
        if (idx < 0) {
            key_snippet(k, key, sizeof key);
            snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", key);
            const char *hint = suggest(prefix, k);
            if (hint)
                return fail(c->e, SPEC_E_UNKNOWN_FIELD, path, "unknown field (did you mean %s?)",
                            hint);
            return fail(c->e, SPEC_E_UNKNOWN_FIELD, path, "unknown field");
        }
        if (c->given[idx]) return fail(c->e, SPEC_E_INVALID_VALUE, path, "is given twice");
        c->given[idx] = true;
        if (parse_value(c, idx, it)) return -1;
    }
    for (int i = 0; i < N_FIELDS; i++)
        if (spec_fields[i].required && !c->given[i] && is_child(&spec_fields[i], prefix))
            return fail(c->e, SPEC_E_MISSING_FIELD, spec_fields[i].name, "is required");
    return 0;
}

/* ---- pass 3: dependent defaults and cross-field checks ----------------------------- */

static bool given(const parse_ctx *c, const char *name) {
    int i = field_index(name);
    return i >= 0 && c->given[i];
}

static const char *column_path(int text_index, char *buf, size_t n) {
    if (text_index < 0)
        snprintf(buf, n, "dataset.label_field");
    else
        snprintf(buf, n, "dataset.text_fields[%d]", text_index);
    return buf;
}

/* Columns must suit the file's format: JSONL is keyed by name; TSV/CSV
 * without a header can only be indexed. fmt AUTO (an uploaded dataset whose
 * format the store knows) is checked when the data is loaded. */
static int check_columns(parse_ctx *c, textdata_format fmt, const char *which) {
    const spec_dataset *d = &c->s->dataset;
    char path[SPEC_FIELD_PATH_MAX];
    for (int k = -1; k < d->n_text_fields; k++) {
        const spec_column *col = k < 0 ? &d->label_field : &d->text_fields[k];
        column_path(k, path, sizeof path);
        if (fmt == TEXTDATA_JSONL && col->kind == TEXTDATA_FIELD_INDEX)
            return fail(c->e, SPEC_E_CONFLICT, path,
                        "%s is JSON Lines, whose fields are chosen by key name, not by column "
                        "index",
                        which);
        if ((fmt == TEXTDATA_TSV || fmt == TEXTDATA_CSV) && !d->has_header &&
            col->kind == TEXTDATA_FIELD_NAME) {
            bool dflt = k < 0 ? !given(c, "dataset.label_field") : !given(c, "dataset.text_fields");
            return fail(c->e, SPEC_E_CONFLICT, path,
                        "dataset.has_header is false, so choose the column of %s by 0-based "
                        "index%s",
                        which, dflt ? " (the default is a name)" : "");
        }
    }
    return 0;
}

/* causal_lm reads JSON Lines only (lmdata.h): the format, given or from
 * the file names, must say so. */
static int check_lm_dataset(parse_ctx *c) {
    const spec_dataset *d = &c->s->dataset;
    const char *refs[2] = {d->train, d->eval};
    const char *names[2] = {"dataset.train", "dataset.eval"};
    for (int r = 0; r < 2; r++) {
        if (!refs[r] || spec_is_dataset_id(refs[r])) continue;
        textdata_format fmt = d->format;
        if (fmt == TEXTDATA_AUTO) fmt = textdata_format_from_path(refs[r]);
        if (fmt != TEXTDATA_JSONL)
            return fail(c->e, SPEC_E_CONFLICT,
                        d->format == TEXTDATA_AUTO ? names[r] : "dataset.format",
                        "task causal_lm reads JSON Lines (.jsonl or .json, or dataset.format "
                        "\"jsonl\")");
    }
    return 0;
}

static int check_dataset(parse_ctx *c) {
    aflo_job_spec *s = c->s;
    spec_dataset *d = &s->dataset;
    if (d->n_text_fields == 0) {
        d->text_fields[0].name = xstrdup(DEFAULT_TEXT_FIELD);
        if (!d->text_fields[0].name) return fail_oom(c);
        d->text_fields[0].kind = TEXTDATA_FIELD_NAME;
        d->n_text_fields = 1;
    }
    if (d->label_field.kind == TEXTDATA_FIELD_NONE) {
        d->label_field.name = xstrdup(DEFAULT_LABEL_FIELD);
        if (!d->label_field.name) return fail_oom(c);
        d->label_field.kind = TEXTDATA_FIELD_NAME;
    }
    char path[SPEC_FIELD_PATH_MAX];
    for (int k = 0; k < d->n_text_fields; k++)
        if (same_column(&d->label_field, &d->text_fields[k]))
            return fail(c->e, SPEC_E_CONFLICT, "dataset.label_field", "is also %s",
                        column_path(k, path, sizeof path));
    const char *refs[2] = {d->train, d->eval};
    const char *names[2] = {"dataset.train", "dataset.eval"};
    for (int r = 0; r < 2; r++) {
        if (!refs[r] || spec_is_dataset_id(refs[r])) continue;
        textdata_format fmt = d->format;
        if (fmt == TEXTDATA_AUTO) fmt = textdata_format_from_path(refs[r]);
        if (fmt == TEXTDATA_AUTO)
            return fail(c->e, SPEC_E_CONFLICT, "dataset.format",
                        "cannot tell the format of %s from its file name (expected .tsv, .csv, "
                        ".jsonl or .json); set dataset.format",
                        names[r]);
        if (check_columns(c, fmt, names[r])) return -1;
    }
    return 0;
}

/* Fields of one kind of task only: refused for the others, and left out
 * of their normalised spec (so it parses back). A causal LM predicts its
 * vocabulary from rows of its own forms: no labels, no columns. */
static const char *const not_lm[] = {"num_labels", "dataset.labels", "dataset.text_fields",
                                     "dataset.label_field", "dataset.has_header"};
static const char *const lm_only[] = {"train_on_inputs", "answer_rule", "eval_max_new_tokens",
                                      "activation_checkpointing"};

static bool listed(const char *name, const char *const *list, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (strcmp(name, list[k]) == 0) return true;
    return false;
}

/* Whether the field belongs in s's normalised spec by its task. */
static bool task_has_field(const aflo_job_spec *s, const char *name) {
    if (s->task == TASK_CAUSAL_LM) return !listed(name, not_lm, sizeof not_lm / sizeof *not_lm);
    return !listed(name, lm_only, sizeof lm_only / sizeof *lm_only);
}

static int resolve(parse_ctx *c) {
    aflo_job_spec *s = c->s;
    char list[64], m[16];

    /* A field that would have no effect is an error, not a silent no-op. */
    for (int i = 0; i < N_FIELDS; i++) {
        const spec_field_info *f = &spec_fields[i];
        if (!c->given[i] || (f->methods & (1u << s->method))) continue;
        methods_text(f->methods, list, sizeof list);
        snprintf(m, sizeof m, "%s", method_names[s->method]);
        return fail(c->e, SPEC_E_CONFLICT, f->name, "applies only to method %s (method is %s)",
                    list, m);
    }

    /* Labels. */
    bool nl_given = given(c, "num_labels");
    for (size_t k = 0; k < sizeof lm_only / sizeof *lm_only; k++)
        if (given(c, lm_only[k]) && s->task != TASK_CAUSAL_LM)
            return fail(c->e, SPEC_E_CONFLICT, lm_only[k],
                        "applies only to task causal_lm (task is %s)", task_choices[s->task]);
    if (given(c, "eval_max_new_tokens") && s->answer_rule == ANSWER_NONE)
        return fail(c->e, SPEC_E_CONFLICT, "eval_max_new_tokens",
                    "has no effect without an answer_rule (answer_rule is \"none\")");
    if (s->task == TASK_CAUSAL_LM) {
        for (size_t k = 0; k < sizeof not_lm / sizeof *not_lm; k++)
            if (given(c, not_lm[k]))
                return fail(c->e, SPEC_E_CONFLICT, not_lm[k],
                            "does not apply to task causal_lm (its rows are JSON Lines of "
                            "text, prompt/completion, instruction/output or input_ids; the "
                            "labels are the next tokens)");
        s->num_labels = SPEC_NUM_LABELS_UNSET;
    } else if (s->task == TASK_REGRESSION) {
        if (nl_given && s->num_labels != 1)
            return fail(c->e, SPEC_E_CONFLICT, "num_labels",
                        "must be 1 for regression (one output), got %d", s->num_labels);
        if (s->dataset.labels)
            return fail(c->e, SPEC_E_CONFLICT, "dataset.labels",
                        "declared labels apply only to classification (task is regression)");
        s->num_labels = 1;
    } else if (s->dataset.labels) {
        if (nl_given && s->num_labels != s->dataset.n_labels)
            return fail(c->e, SPEC_E_CONFLICT, "num_labels",
                        "is %d but dataset.labels lists %d labels", s->num_labels,
                        s->dataset.n_labels);
        s->num_labels = s->dataset.n_labels;
    } else if (!nl_given) {
        s->num_labels = SPEC_NUM_LABELS_UNSET;
    }

    /* The best-epoch metric must be one of the task's. */
    if (!given(c, "metric"))
        s->metric = (spec_metric)metric_by_task[s->task];
    else if (metric_task[s->metric] != s->task) {
        char use[128] = "";
        size_t len = 0;
        int n = 0, total = 0;
        for (int k = 0; k < SPEC_METRIC_COUNT; k++) total += metric_task[k] == s->task;
        for (int k = 0; k < SPEC_METRIC_COUNT && len < sizeof use; k++) {
            if (metric_task[k] != s->task) continue;
            n++;
            len += (size_t)snprintf(use + len, sizeof use - len, "%s\"%s\"",
                                    n == 1       ? ""
                                    : n == total ? " or "
                                                 : ", ",
                                    metric_choices[k]);
        }
        return fail(c->e, SPEC_E_CONFLICT, "metric", "\"%s\" is a %s metric (task is %s); use %s",
                    metric_choices[s->metric], task_choices[metric_task[s->metric]],
                    task_choices[s->task], use);
    } else if (s->metric == SPEC_METRIC_EXACT_MATCH && s->answer_rule == ANSWER_NONE)
        return fail(c->e, SPEC_E_CONFLICT, "metric",
                    "exact_match needs generations to judge: set answer_rule (\"exact\" or "
                    "\"gsm8k\")");
    else if (s->metric == SPEC_METRIC_F1 && s->num_labels > 2)
        return fail(c->e, SPEC_E_CONFLICT, "metric",
                    "f1 scores class 1 against the rest and needs a binary task (num_labels is "
                    "%d); use \"accuracy\" or \"mcc\"",
                    s->num_labels);

    /* Model and data. */
    s->has_dataset = given(c, "dataset");
    if (spec_is_demo(s)) {
        if (s->has_dataset)
            return fail(c->e, SPEC_E_CONFLICT, "dataset",
                        "the demo model trains on its built-in synthetic dataset; leave dataset "
                        "out or name a real model");
        if (s->task != TASK_CLASSIFICATION)
            return fail(c->e, SPEC_E_CONFLICT, "task", "the demo dataset is binary classification");
        if (s->num_labels != SPEC_NUM_LABELS_UNSET && s->num_labels != DEMO_NUM_LABELS)
            return fail(c->e, SPEC_E_CONFLICT, "num_labels", "the demo dataset has %d labels",
                        DEMO_NUM_LABELS);
        s->num_labels = DEMO_NUM_LABELS;
    } else {
        if (!s->has_dataset)
            return fail(c->e, SPEC_E_MISSING_FIELD, "dataset",
                        "is required unless model is \"" SPEC_DEMO_MODEL "\"");
        if (s->task == TASK_CAUSAL_LM && check_lm_dataset(c)) return -1;
        if (check_dataset(c)) return -1;
    }

    /* Adapter. */
    if (!given(c, "rank")) {
        double r = rank_by_method[s->method];
        s->rank = isnan(r) ? 0 : (int)r;
    }
    if (!given(c, "alpha")) s->alpha = DEFAULT_ALPHA_PER_RANK * s->rank;
    if (s->init_adapter &&
        strncmp(s->init_adapter, SPEC_JOB_REF_PREFIX, strlen(SPEC_JOB_REF_PREFIX)) == 0 &&
        !spec_init_adapter_job(s))
        return fail(c->e, SPEC_E_INVALID_VALUE, "init_adapter",
                    "\"%.40s\": after \"" SPEC_JOB_REF_PREFIX "\" comes a job id (16 lowercase "
                    "hex characters)",
                    s->init_adapter);

    /* Freezing phases: the engine's, for this many epochs. */
    bool ini_given = given(c, "freeze.initial_warmup_epochs");
    bool fin_given = given(c, "freeze.final_warmup_epochs");
    if (!ini_given)
        s->freeze.initial_warmup_epochs = train_default_initial_warmup_epochs(s->epochs);
    if (!fin_given) s->freeze.final_warmup_epochs = train_default_final_warmup_epochs(s->epochs);
    if (s->freeze.initial_warmup_epochs + s->freeze.final_warmup_epochs > s->epochs) {
        char a[32], b[32];
        fmt_num(a, sizeof a, s->freeze.initial_warmup_epochs);
        fmt_num(b, sizeof b, s->freeze.final_warmup_epochs);
        const char *field = fin_given   ? "freeze.final_warmup_epochs"
                            : ini_given ? "freeze.initial_warmup_epochs"
                                        : "epochs";
        return fail(c->e, SPEC_E_CONFLICT, field,
                    "initial_warmup_epochs + final_warmup_epochs = %s%s + %s%s exceeds epochs "
                    "(%d)",
                    a, ini_given ? "" : " (default)", b, fin_given ? "" : " (default)", s->epochs);
    }
    return 0;
}

/* ---- entry points ------------------------------------------------------------------- */

int spec_parse(const char *json, size_t len, aflo_job_spec *out, aflo_spec_error *err) {
    memset(out, 0, sizeof *out);
    if (err) memset(err, 0, sizeof *err);
    if (!json) return fail(err, SPEC_E_INVALID_JSON, NULL, "no document");
    if (len > SPEC_MAX_BYTES)
        return fail(err, SPEC_E_TOO_LARGE, NULL, "the spec is %zu bytes, at most %zu are allowed",
                    len, SPEC_MAX_BYTES);
    if (prescan(json, len, err)) return -1;
    size_t start = 0;
    while (start < len && strchr(" \t\r\n", json[start])) start++;
    if (start == len) return fail(err, SPEC_E_INVALID_JSON, NULL, "the spec is empty");

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t off = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        return fail_at(err, json, off, "syntax error");
    }
    size_t off = (size_t)(end - json);
    while (off < len && strchr(" \t\r\n", json[off])) off++;
    int rc = -1;
    if (off < len) {
        fail_at(err, json, off, "unexpected text after the spec object");
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        fail(err, SPEC_E_WRONG_TYPE, NULL, "the spec must be a JSON object, got %s",
             json_type_name(root));
        goto done;
    }
    char perr[SPEC_MESSAGE_MAX];
    if (preset_apply(root, perr, sizeof perr)) {
        fail(err, SPEC_E_INVALID_VALUE, "preset", "%s", perr);
        goto done;
    }
    parse_ctx c = {.s = out, .e = err};
    apply_static_defaults(out);
    if (parse_object(&c, root, "") || resolve(&c)) goto done;
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc != 0) spec_free(out);
    return rc;
}

int spec_parse_file(const char *path, aflo_job_spec *out, aflo_spec_error *err) {
    memset(out, 0, sizeof *out);
    if (err) memset(err, 0, sizeof *err);
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, SPEC_E_IO, NULL, "cannot open %s: %s", path, strerror(errno));
    char *buf = malloc(SPEC_MAX_BYTES + 1);
    if (!buf) {
        fclose(f);
        return fail(err, SPEC_E_NO_MEMORY, NULL, "out of memory");
    }
    size_t n = fread(buf, 1, SPEC_MAX_BYTES + 1, f);
    int bad = ferror(f);
    fclose(f);
    int rc;
    if (bad)
        rc = fail(err, SPEC_E_IO, NULL, "cannot read %s", path);
    else if (n > SPEC_MAX_BYTES)
        rc = fail(err, SPEC_E_TOO_LARGE, NULL, "%s is larger than %zu bytes", path, SPEC_MAX_BYTES);
    else
        rc = spec_parse(buf, n, out, err);
    free(buf);
    return rc;
}

void spec_free(aflo_job_spec *s) {
    if (!s) return;
    free(s->preset);
    free(s->model);
    free(s->dataset.train);
    free(s->dataset.eval);
    for (int i = 0; i < SPEC_MAX_TEXT_FIELDS; i++) column_free(&s->dataset.text_fields[i]);
    column_free(&s->dataset.label_field);
    if (s->dataset.labels)
        for (int i = 0; i < s->dataset.n_labels; i++) free(s->dataset.labels[i]);
    free(s->dataset.labels);
    free(s->init_adapter);
    memset(s, 0, sizeof *s);
}

bool spec_is_demo(const aflo_job_spec *s) {
    return s->model && strcmp(s->model, SPEC_DEMO_MODEL) == 0;
}

bool spec_is_dataset_id(const char *ref) {
    if (!ref || strlen(ref) != STORE_ID_LEN) return false;
    for (const char *p = ref; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
    return true;
}

const char *spec_init_adapter_job(const aflo_job_spec *s) {
    size_t n = strlen(SPEC_JOB_REF_PREFIX);
    if (!s->init_adapter || strncmp(s->init_adapter, SPEC_JOB_REF_PREFIX, n) != 0) return NULL;
    return spec_is_dataset_id(s->init_adapter + n) ? s->init_adapter + n : NULL;
}

int spec_num_labels(const aflo_job_spec *s) {
    return s->num_labels == SPEC_NUM_LABELS_UNSET ? FALLBACK_NUM_LABELS : s->num_labels;
}

void spec_to_train_config(const aflo_job_spec *s, aflo_train_config *tc) {
    train_config_defaults(tc, s->epochs);
    tc->batch_size = s->batch_size;
    tc->grad_accum = s->grad_accum;
    tc->lr = (float)s->learning_rate;
    tc->head_lr = (float)s->head_learning_rate;
    tc->weight_decay = (float)s->weight_decay;
    tc->warmup_ratio = (float)s->warmup_ratio;
    tc->max_grad_norm = (float)s->max_grad_norm;
    tc->freeze_initial_epochs = s->freeze.initial_warmup_epochs;
    tc->freeze_final_epochs = s->freeze.final_warmup_epochs;
    tc->delta_t = s->freeze.delta_t;
    tc->score_beta1 = s->freeze.beta1;
    tc->score_beta2 = s->freeze.beta2;
    tc->freeze_enabled = s->freeze.enabled;
    tc->freeze_sensitivity = s->freeze.sensitivity;
    tc->seed = s->seed;
    tc->dropout = s->dropout;
    tc->select_metric = metric_choices[s->metric];
    tc->length_bucketing = s->length_bucketing;
    /* the caller adds the detokenizer and the end-of-sequence id */
    tc->gen_eval.rule = s->answer_rule;
    tc->gen_eval.max_new_tokens = s->eval_max_new_tokens;
}

int spec_to_adapter_config(const aflo_job_spec *s, const aflo_family *family,
                           aflo_adapter_config *ac, char *err, size_t errlen) {
    memset(ac, 0, sizeof *ac);
    ac->method = s->method;
    ac->rank = s->rank;
    ac->alpha = (float)s->alpha;
    ac->projections = s->trainable_projections;
    ac->targets = family->default_targets ? family->default_targets : family_all_modules(family);
    if (s->target_modules == all_target_names()) return 0; /* the default */
    const char *names[FAMILY_MAX_MODULES];
    int count = family_target_names(names);
    ac->targets = 0;
    for (int i = 0; i < count; i++) {
        if (!(s->target_modules & (1u << i))) continue;
        int m = family_module_index(family, names[i]);
        if (m < 0) {
            const char *own[FAMILY_MAX_MODULES];
            char choices[1024];
            for (int k = 0; k < family->n_modules; k++) own[k] = family->modules[k].target;
            names_text(own, family->n_modules, choices, sizeof choices);
            snprintf(err, errlen,
                     "target_modules: \"%s\" is not a module of this model (a %s); "
                     "use %s",
                     names[i], family->description, choices);
            return -1;
        }
        ac->targets |= 1u << m;
    }
    return 0;
}

static textdata_field to_textdata_field(const spec_column *c) {
    textdata_field f = {c->kind, c->name, c->index};
    return f;
}

int spec_to_textdata_spec(const aflo_job_spec *s, textdata_spec *ts) {
    memset(ts, 0, sizeof *ts);
    if (!s->has_dataset) return -1;
    const spec_dataset *d = &s->dataset;
    ts->format = d->format;
    ts->text_a = to_textdata_field(&d->text_fields[0]);
    if (d->n_text_fields > 1) ts->text_b = to_textdata_field(&d->text_fields[1]);
    ts->label = to_textdata_field(&d->label_field);
    ts->task = s->task == TASK_REGRESSION ? TEXTDATA_REGRESSION : TEXTDATA_CLASSIFICATION;
    ts->labels = (const char *const *)d->labels;
    /* without names, a declared num_labels is the class count for integer labels */
    if (d->labels)
        ts->num_labels = d->n_labels;
    else if (s->task == TASK_CLASSIFICATION && s->num_labels != SPEC_NUM_LABELS_UNSET)
        ts->num_labels = s->num_labels;
    ts->no_header = !d->has_header;
    return 0;
}

/* ---- the normalised JSON ------------------------------------------------------- */

/* Adds item to obj (or arr when key is NULL); false (item freed) on failure. */
static bool put(cJSON *obj, const char *key, cJSON *item) {
    if (!item) return false;
    cJSON_bool ok = key ? cJSON_AddItemToObject(obj, key, item) : cJSON_AddItemToArray(obj, item);
    if (!ok) cJSON_Delete(item);
    return ok;
}

/* target_modules: the names of the set bits (NULL when out of memory). */
static cJSON *modules_json(unsigned mask) {
    const char *names[FAMILY_MAX_MODULES];
    int count = family_target_names(names);
    cJSON *arr = cJSON_CreateArray();
    for (int m = 0; arr && m < count; m++)
        if ((mask & (1u << m)) && !put(arr, NULL, cJSON_CreateString(names[m]))) {
            cJSON_Delete(arr);
            arr = NULL;
        }
    return arr;
}

/* cJSON's printer compares its 15-digit text with a relative epsilon rather
 * than exactly, so it can drop the last digit of a 16-17 digit value (a seed
 * above 2^50, a rate typed with 17 digits). The text form therefore carries
 * numbers as raw shortest-exact text; the tree form as ordinary numbers. */
static cJSON *number_json(double v, bool exact_text) {
    if (!exact_text) return cJSON_CreateNumber(v);
    char buf[32];
    fmt_num(buf, sizeof buf, v);
    return cJSON_CreateRaw(buf);
}

static cJSON *column_json(const spec_column *c, bool exact_text) {
    return c->kind == TEXTDATA_FIELD_NAME ? cJSON_CreateString(c->name)
                                          : number_json(c->index, exact_text);
}

static bool emit_object(const aflo_job_spec *s, const char *prefix, cJSON *obj, bool exact) {
    for (int i = 0; i < N_FIELDS; i++) {
        const spec_field_info *f = &spec_fields[i];
        if (!is_child(f, prefix) || !(f->methods & (1u << s->method)) ||
            !task_has_field(s, f->name))
            continue;
        const char *key = leaf(f->name);
        cJSON *item = NULL;
        switch (f->type) {
        case SPEC_T_STRING: {
            const char *v = get_str(s, f);
            if (!v) continue;
            item = cJSON_CreateString(v);
            break;
        }
        case SPEC_T_INT:
            if (f->offset == OFF(num_labels) && s->num_labels == SPEC_NUM_LABELS_UNSET) continue;
            /* only with an answer rule, where it applies */
            if (f->offset == OFF(eval_max_new_tokens) && s->answer_rule == ANSWER_NONE) continue;
            item = number_json(get_int(s, f), exact);
            break;
        case SPEC_T_NUMBER: item = number_json(get_double(s, f), exact); break;
        case SPEC_T_BOOL: item = cJSON_CreateBool(get_bool(s, f)); break;
        case SPEC_T_ENUM: item = cJSON_CreateString(f->choices[get_enum(s, f)]); break;
        case SPEC_T_OBJECT:
            if (strcmp(f->name, "dataset") == 0 && !s->has_dataset) continue;
            item = cJSON_CreateObject();
            if (item && !emit_object(s, f->name, item, exact)) {
                cJSON_Delete(item);
                return false;
            }
            break;
        case SPEC_T_COLUMNS:
            item = cJSON_CreateArray();
            for (int k = 0; item && k < s->dataset.n_text_fields; k++)
                if (!put(item, NULL, column_json(&s->dataset.text_fields[k], exact))) {
                    cJSON_Delete(item);
                    item = NULL;
                }
            break;
        case SPEC_T_COLUMN: item = column_json(&s->dataset.label_field, exact); break;
        case SPEC_T_STRINGS:
            if (!s->dataset.labels) continue;
            item = cJSON_CreateArray();
            for (int k = 0; item && k < s->dataset.n_labels; k++)
                if (!put(item, NULL, cJSON_CreateString(s->dataset.labels[k]))) {
                    cJSON_Delete(item);
                    item = NULL;
                }
            break;
        case SPEC_T_MODULES: item = modules_json(s->target_modules); break;
        }
        if (!put(obj, key, item)) return false;
    }
    return true;
}

static cJSON *to_json(const aflo_job_spec *s, bool exact_text) {
    cJSON *root = cJSON_CreateObject();
    if (root && !emit_object(s, "", root, exact_text)) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

cJSON *spec_to_json(const aflo_job_spec *s) { return to_json(s, false); }

char *spec_to_json_string(const aflo_job_spec *s, bool pretty) {
    cJSON *j = to_json(s, true);
    if (!j) return NULL;
    char *text = pretty ? cJSON_Print(j) : cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text) return NULL;
    char *copy = xstrdup(text); /* ours to free() whatever cJSON's hooks are */
    cJSON_free(text);
    return copy;
}

static bool column_equal(const spec_column *a, const spec_column *b) {
    return a->kind == b->kind && streq(a->name, b->name) && a->index == b->index;
}

bool spec_equal(const aflo_job_spec *a, const aflo_job_spec *b) {
    const spec_dataset *da = &a->dataset, *db = &b->dataset;
    if (!streq(a->preset, b->preset) || !streq(a->model, b->model) || a->task != b->task ||
        a->num_labels != b->num_labels || a->has_dataset != b->has_dataset)
        return false;
    if (!streq(da->train, db->train) || !streq(da->eval, db->eval) || da->format != db->format ||
        da->n_text_fields != db->n_text_fields ||
        !column_equal(&da->label_field, &db->label_field) || da->n_labels != db->n_labels ||
        (da->labels == NULL) != (db->labels == NULL) || da->has_header != db->has_header)
        return false;
    for (int k = 0; k < SPEC_MAX_TEXT_FIELDS; k++)
        if (!column_equal(&da->text_fields[k], &db->text_fields[k])) return false;
    for (int k = 0; da->labels && k < da->n_labels; k++)
        if (!streq(da->labels[k], db->labels[k])) return false;
    return a->metric == b->metric && a->method == b->method && a->rank == b->rank &&
           a->alpha == b->alpha && a->target_modules == b->target_modules &&
           a->trainable_projections == b->trainable_projections &&
           a->freeze.initial_warmup_epochs == b->freeze.initial_warmup_epochs &&
           a->freeze.final_warmup_epochs == b->freeze.final_warmup_epochs &&
           a->freeze.delta_t == b->freeze.delta_t && a->freeze.beta1 == b->freeze.beta1 &&
           a->freeze.beta2 == b->freeze.beta2 && a->freeze.enabled == b->freeze.enabled &&
           a->freeze.sensitivity == b->freeze.sensitivity && a->epochs == b->epochs &&
           a->batch_size == b->batch_size && a->grad_accum == b->grad_accum &&
           a->max_seq_len == b->max_seq_len && a->length_bucketing == b->length_bucketing &&
           a->learning_rate == b->learning_rate && a->head_learning_rate == b->head_learning_rate &&
           a->weight_decay == b->weight_decay && a->warmup_ratio == b->warmup_ratio &&
           a->max_grad_norm == b->max_grad_norm && a->seed == b->seed && a->threads == b->threads &&
           a->dropout == b->dropout && a->train_on_inputs == b->train_on_inputs &&
           a->answer_rule == b->answer_rule && a->eval_max_new_tokens == b->eval_max_new_tokens &&
           a->activation_checkpointing == b->activation_checkpointing &&
           streq(a->init_adapter, b->init_adapter);
}

/* ---- documentation --------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->buf, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->buf = p;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_str(strbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* Table cell text: '|' escaped, nothing else needs it in our doc strings. */
static void sb_cell(strbuf *b, const char *s) {
    for (const char *p = s; *p; p++) {
        if (*p == '|')
            sb_str(b, "\\|");
        else
            sb_add(b, p, 1);
    }
}

static const char *type_doc(spec_type t) {
    switch (t) {
    case SPEC_T_STRING: return "string";
    case SPEC_T_INT: return "integer";
    case SPEC_T_NUMBER: return "number";
    case SPEC_T_BOOL: return "boolean";
    case SPEC_T_ENUM: return "string";
    case SPEC_T_OBJECT: return "object";
    case SPEC_T_COLUMNS: return "array";
    case SPEC_T_COLUMN: return "string or integer";
    case SPEC_T_STRINGS: return "array of strings";
    case SPEC_T_MODULES: return "array of strings";
    }
    return "?";
}

/* The rule of a default that depends on other fields, as text ("4 for
 * aflora, 1024 for elora, 8 for lora"); NULL for a fixed default. */
static const char *default_rule(const spec_field_info *f, char *buf, size_t n) {
    size_t len = 0;
    char num[32];
    if (f->def_doc) return f->def_doc;
    if (!f->def_by_method && !f->def_by_task) return NULL;
    buf[0] = '\0';
    for (int m = 0; f->def_by_method && m < METHOD_COUNT && len < n; m++) {
        if (isnan(f->def_by_method[m])) continue;
        fmt_num(num, sizeof num, f->def_by_method[m]);
        len += (size_t)snprintf(buf + len, n - len, "%s%s for %s", len ? ", " : "", num,
                                method_names[m]);
    }
    for (int t = 0;
         f->def_by_task && t < (int)(sizeof task_choices / sizeof *task_choices) && len < n; t++)
        len += (size_t)snprintf(buf + len, n - len, "%s\"%s\" for %s", len ? ", " : "",
                                f->choices[f->def_by_task[t]], task_choices[t]);
    return buf;
}

static void default_doc(const spec_field_info *f, char *buf, size_t n) {
    char num[32], rule_buf[160];
    const char *rule = default_rule(f, rule_buf, sizeof rule_buf);
    if (f->required)
        snprintf(buf, n, "*required*");
    else if (rule)
        snprintf(buf, n, "%s", rule);
    else if (f->optional)
        snprintf(buf, n, "none");
    else
        switch (f->type) {
        case SPEC_T_INT:
        case SPEC_T_NUMBER:
            fmt_num(num, sizeof num, f->def);
            snprintf(buf, n, "`%s`", num);
            break;
        case SPEC_T_BOOL: snprintf(buf, n, "`%s`", f->def != 0 ? "true" : "false"); break;
        case SPEC_T_ENUM: snprintf(buf, n, "`\"%s\"`", f->choices[(int)f->def]); break;
        case SPEC_T_COLUMNS: snprintf(buf, n, "`[\"%s\"]`", f->def_str); break;
        case SPEC_T_COLUMN: snprintf(buf, n, "`\"%s\"`", f->def_str); break;
        case SPEC_T_MODULES:
            snprintf(buf, n,
                     "every module of the model's family (all six for BERT/RoBERTa and "
                     "DeBERTa); q_proj, k_proj, v_proj, up_proj and down_proj for "
                     "LLaMA/Mistral/Qwen2 (the AFLoRA authors' LLaMA targets)");
            break;
        default: snprintf(buf, n, "see its fields"); break;
        }
}

static void allowed_doc(const spec_field_info *f, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = '\0';
    switch (f->type) {
    case SPEC_T_INT:
    case SPEC_T_NUMBER: range_text(f, buf, n); break;
    case SPEC_T_ENUM:
        for (int k = 0; k < f->n_choices && len < n; k++)
            len += (size_t)snprintf(buf + len, n - len, "%s`\"%s\"`", k ? ", " : "", f->choices[k]);
        break;
    case SPEC_T_MODULES: {
        const char *names[FAMILY_MAX_MODULES];
        int count = family_target_names(names);
        for (int m = 0; m < count && len < n; m++)
            len += (size_t)snprintf(buf + len, n - len, "%s`\"%s\"`", m ? ", " : "", names[m]);
        snprintf(buf + len, len < n ? n - len : 0, " (each at most once)");
        break;
    }
    case SPEC_T_STRING: snprintf(buf, n, "non-empty, at most %d bytes", (int)f->max); break;
    case SPEC_T_BOOL: snprintf(buf, n, "`true`, `false`"); break;
    case SPEC_T_COLUMNS:
        snprintf(buf, n, "1 or 2 column names or 0-based indices (up to %d)",
                 SPEC_MAX_COLUMN_INDEX);
        break;
    case SPEC_T_COLUMN:
        snprintf(buf, n, "a column name or 0-based index (up to %d)", SPEC_MAX_COLUMN_INDEX);
        break;
    case SPEC_T_STRINGS:
        snprintf(buf, n, "%d to %d distinct names", (int)f->min, (int)f->max);
        break;
    case SPEC_T_OBJECT: break;
    }
}

char *spec_doc_markdown(void) {
    strbuf b = {0};
    char cell[512], list[64];
    sb_str(&b, "| Field | Type | Default | Allowed | Description |\n"
               "|---|---|---|---|---|\n");
    for (int i = 0; i < N_FIELDS; i++) {
        const spec_field_info *f = &spec_fields[i];
        sb_str(&b, "| `");
        sb_cell(&b, f->name);
        sb_str(&b, "` | ");
        sb_cell(&b, type_doc(f->type));
        sb_str(&b, " | ");
        default_doc(f, cell, sizeof cell);
        sb_cell(&b, cell);
        sb_str(&b, " | ");
        allowed_doc(f, cell, sizeof cell);
        sb_cell(&b, cell);
        sb_str(&b, " | ");
        sb_cell(&b, f->doc);
        if (f->methods != SPEC_ALL_METHODS) {
            methods_text(f->methods, list, sizeof list);
            snprintf(cell, sizeof cell, " Only for method %s.", list);
            sb_cell(&b, cell);
        }
        sb_str(&b, " |\n");
    }
    /* The presets' values, so the README shows what each one fills in. */
    char *presets = preset_doc_markdown();
    if (!presets) b.oom = true;
    sb_str(&b, "\nPresets (`preset`), from the AFLoRA authors' scripts "
               "`glue/ipt_deberta_base_<task>.sh` (github.com/zeyuliu1037/AFLoRA); every one "
               "also sets max_seq_len 256, warmup_ratio 0.06, weight_decay 0.1, "
               "max_grad_norm 0.1 and seed 42, and the learning rates only for method aflora. "
               "Examples per step are the scripts' 64 per GPU times their GPUs. The mnli and "
               "qqp scripts pass --lora_r 1024; the paper's AFLoRA results are rank 4 on every "
               "task, which stays the default rank:\n\n");
    if (presets) sb_str(&b, presets);
    free(presets);
    if (b.oom) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}

static cJSON *column_schema(void) {
    cJSON *one = cJSON_CreateObject();
    if (!one) return NULL;
    cJSON *alts = cJSON_CreateArray();
    cJSON *name = cJSON_CreateObject(), *index = cJSON_CreateObject();
    bool ok = put(one, "oneOf", alts) && name && index;
    if (ok) {
        ok = put(name, "type", cJSON_CreateString("string")) &&
             put(name, "minLength", cJSON_CreateNumber(1)) &&
             put(index, "type", cJSON_CreateString("integer")) &&
             put(index, "minimum", cJSON_CreateNumber(0)) &&
             put(index, "maximum", cJSON_CreateNumber(SPEC_MAX_COLUMN_INDEX));
        ok = put(alts, NULL, name) && ok;
        name = NULL;
        ok = put(alts, NULL, index) && ok;
        index = NULL;
    }
    cJSON_Delete(name);
    cJSON_Delete(index);
    if (!ok) {
        cJSON_Delete(one);
        return NULL;
    }
    return one;
}

static cJSON *string_array(const char *const *items, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; a && k < n; k++)
        if (!put(a, NULL, cJSON_CreateString(items[k]))) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

/* {"method": {"aflora": 4, ...}} or {"task": {"classification": "accuracy", ...}}. */
static cJSON *default_by(const spec_field_info *f) {
    cJSON *o = cJSON_CreateObject(), *map = cJSON_CreateObject();
    bool ok = o && map;
    for (int m = 0; ok && f->def_by_method && m < METHOD_COUNT; m++)
        if (!isnan(f->def_by_method[m]))
            ok = put(map, method_names[m], cJSON_CreateNumber(f->def_by_method[m]));
    for (int t = 0; ok && f->def_by_task && t < (int)(sizeof task_choices / sizeof *task_choices);
         t++)
        ok = put(map, task_choices[t], cJSON_CreateString(f->choices[f->def_by_task[t]]));
    if (ok) {
        ok = put(o, f->def_by_method ? "method" : "task", map);
        map = NULL;
    }
    cJSON_Delete(map);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *object_schema(const char *prefix);

/* One preset as a client shows it: {"fields": what it fills for the default
 * method, "field_methods": {key: [methods]} for the keys it fills only for
 * some methods (the learning rates: aflora's)}. From preset_fields_json, so
 * the numbers live in presets.c alone. */
static cJSON *preset_schema_entry(const char *name) {
    char perr[160];
    cJSON *e = cJSON_CreateObject(), *by = cJSON_CreateObject();
    cJSON *fields = preset_fields_json(name, NULL, perr, sizeof perr);
    cJSON *per[METHOD_COUNT] = {NULL};
    bool ok = e && by && fields;
    for (int m = 0; ok && m < METHOD_COUNT; m++)
        ok = (per[m] = preset_fields_json(name, method_names[m], perr, sizeof perr)) != NULL;
    for (const cJSON *k = ok ? fields->child : NULL; ok && k; k = k->next) {
        const char *names[METHOD_COUNT];
        int n = 0;
        for (int m = 0; m < METHOD_COUNT; m++)
            if (cJSON_GetObjectItemCaseSensitive(per[m], k->string)) names[n++] = method_names[m];
        if (n < METHOD_COUNT) ok = put(by, k->string, string_array(names, n));
    }
    for (int m = 0; m < METHOD_COUNT; m++) cJSON_Delete(per[m]);
    if (ok) {
        ok = put(e, "fields", fields);
        fields = NULL;
    }
    if (ok) {
        ok = put(e, "field_methods", by);
        by = NULL;
    }
    cJSON_Delete(fields);
    cJSON_Delete(by);
    if (!ok) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

/* The preset field's schema beyond its type: the names (enum), the encoder
 * tasks it is for (x-tasks) and what each one fills (x-presets), so a form
 * can show and pre-fill a recipe without a copy of its numbers. */
static bool preset_schema(cJSON *p) {
    int n = 0;
    while (preset_names[n]) n++;
    const char *tasks[] = {task_choices[TASK_CLASSIFICATION], task_choices[TASK_REGRESSION]};
    cJSON *all = cJSON_CreateObject();
    bool ok = all && put(p, "enum", string_array(preset_names, n)) &&
              put(p, "x-tasks", string_array(tasks, 2));
    for (int i = 0; ok && i < n; i++)
        ok = put(all, preset_names[i], preset_schema_entry(preset_names[i]));
    if (ok) return put(p, "x-presets", all);
    cJSON_Delete(all);
    return false;
}

static cJSON *field_schema(const spec_field_info *f) {
    if (f->type == SPEC_T_OBJECT) return object_schema(f->name);
    cJSON *p = f->type == SPEC_T_COLUMN ? column_schema() : cJSON_CreateObject();
    if (!p) return NULL;
    bool ok = true;
    switch (f->type) {
    case SPEC_T_STRING:
        ok = put(p, "type", cJSON_CreateString("string")) &&
             put(p, "minLength", cJSON_CreateNumber(f->min)) &&
             put(p, "maxLength", cJSON_CreateNumber(f->max));
        if (ok && f->offset == OFF(preset)) ok = preset_schema(p);
        break;
    case SPEC_T_INT:
    case SPEC_T_NUMBER:
        ok =
            put(p, "type", cJSON_CreateString(f->type == SPEC_T_INT ? "integer" : "number")) &&
            put(p, f->min_exclusive ? "exclusiveMinimum" : "minimum", cJSON_CreateNumber(f->min)) &&
            put(p, f->max_exclusive ? "exclusiveMaximum" : "maximum", cJSON_CreateNumber(f->max));
        break;
    case SPEC_T_BOOL: ok = put(p, "type", cJSON_CreateString("boolean")); break;
    case SPEC_T_ENUM:
        ok = put(p, "type", cJSON_CreateString("string")) &&
             put(p, "enum", string_array(f->choices, f->n_choices));
        break;
    case SPEC_T_COLUMNS:
        ok = put(p, "type", cJSON_CreateString("array")) &&
             put(p, "minItems", cJSON_CreateNumber(f->min)) &&
             put(p, "maxItems", cJSON_CreateNumber(f->max)) && put(p, "items", column_schema());
        break;
    case SPEC_T_STRINGS: {
        cJSON *items = cJSON_CreateObject();
        ok = put(p, "type", cJSON_CreateString("array")) &&
             put(p, "minItems", cJSON_CreateNumber(f->min)) &&
             put(p, "maxItems", cJSON_CreateNumber(f->max)) &&
             put(p, "uniqueItems", cJSON_CreateTrue()) && items &&
             put(items, "type", cJSON_CreateString("string")) &&
             put(items, "minLength", cJSON_CreateNumber(1));
        ok = put(p, "items", items) && ok;
        break;
    }
    case SPEC_T_MODULES: {
        const char *names[FAMILY_MAX_MODULES];
        int count = family_target_names(names);
        cJSON *items = cJSON_CreateObject();
        ok = put(p, "type", cJSON_CreateString("array")) &&
             put(p, "minItems", cJSON_CreateNumber(f->min)) &&
             put(p, "maxItems", cJSON_CreateNumber(count)) &&
             put(p, "uniqueItems", cJSON_CreateTrue()) && items &&
             put(items, "type", cJSON_CreateString("string")) &&
             put(items, "enum", string_array(names, count));
        ok = put(p, "items", items) && ok;
        if (ok) ok = put(p, "default", string_array(names, count));
        break;
    }
    case SPEC_T_COLUMN:
    case SPEC_T_OBJECT: break;
    }
    /* The default: a value when it is fixed, the rule (x-default) when not,
     * and a lookup a client can apply (x-default-by) when it is one. */
    char rule_buf[160];
    const char *rule = default_rule(f, rule_buf, sizeof rule_buf);
    if (ok && rule) {
        ok = put(p, "x-default", cJSON_CreateString(rule));
        if (ok && (f->def_by_method || f->def_by_task)) ok = put(p, "x-default-by", default_by(f));
    } else if (ok && !f->required && !f->optional) {
        switch (f->type) {
        case SPEC_T_INT:
        case SPEC_T_NUMBER: ok = put(p, "default", cJSON_CreateNumber(f->def)); break;
        case SPEC_T_BOOL: ok = put(p, "default", cJSON_CreateBool(f->def != 0)); break;
        case SPEC_T_ENUM:
            ok = put(p, "default", cJSON_CreateString(f->choices[(int)f->def]));
            break;
        case SPEC_T_COLUMN: ok = put(p, "default", cJSON_CreateString(f->def_str)); break;
        case SPEC_T_COLUMNS: ok = put(p, "default", string_array(&f->def_str, 1)); break;
        default: break;
        }
    }
    if (ok && f->methods != SPEC_ALL_METHODS) {
        const char *names[METHOD_COUNT];
        int n = 0;
        for (int m = 0; m < METHOD_COUNT; m++)
            if (f->methods & (1u << m)) names[n++] = method_names[m];
        ok = put(p, "x-methods", string_array(names, n));
    }
    if (ok) ok = put(p, "description", cJSON_CreateString(f->doc));
    if (!ok) {
        cJSON_Delete(p);
        return NULL;
    }
    return p;
}

static cJSON *object_schema(const char *prefix) {
    cJSON *o = cJSON_CreateObject(), *props = cJSON_CreateObject(), *req = cJSON_CreateArray();
    bool ok = o && put(o, "type", cJSON_CreateString("object")) &&
              put(o, "additionalProperties", cJSON_CreateFalse());
    for (int i = 0; ok && i < N_FIELDS; i++) {
        const spec_field_info *f = &spec_fields[i];
        if (!is_child(f, prefix)) continue;
        ok = put(props, leaf(f->name), field_schema(f));
        if (ok && f->required) ok = put(req, NULL, cJSON_CreateString(leaf(f->name)));
    }
    if (ok && prefix[0]) {
        const spec_field_info *self = &spec_fields[field_index(prefix)];
        if (self->def_doc) ok = put(o, "x-default", cJSON_CreateString(self->def_doc));
        if (ok && self->methods != SPEC_ALL_METHODS) {
            const char *names[METHOD_COUNT];
            int n = 0;
            for (int m = 0; m < METHOD_COUNT; m++)
                if (self->methods & (1u << m)) names[n++] = method_names[m];
            ok = put(o, "x-methods", string_array(names, n));
        }
        if (ok) ok = put(o, "description", cJSON_CreateString(self->doc));
    }
    if (ok) {
        ok = put(o, "properties", props);
        props = NULL;
    }
    if (ok) {
        ok = put(o, "required", req);
        req = NULL;
    }
    cJSON_Delete(props);
    cJSON_Delete(req);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *spec_schema_json(void) { return object_schema(""); }
