/* presets.c — the GLUE recipes of the AFLoRA authors (see presets.h). */
#include "presets.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Settings every one of the authors' eight GLUE scripts shares:
 * --max_seq_length 256 --warmup_ratio 0.06 --weight_decay 0.1
 * --max_grad_norm 0.1 --seed 42 --per_device_train_batch_size 64. aflorad
 * runs batches of 32 on CPUs (activation memory; see the batch_size field),
 * so the authors' examples per optimizer step come from grad_accum. */
#define GLUE_MAX_SEQ_LEN 256
#define GLUE_WARMUP_RATIO 0.06
#define GLUE_WEIGHT_DECAY 0.1
#define GLUE_MAX_GRAD_NORM 0.1
#define GLUE_SEED 42
#define GLUE_BATCH 32
#define GLUE_DEVICE_BATCH 64

typedef struct {
    const char *name, *task, *metric;
    int epochs;
    double lr, head_lr;
    int gpus; /* --nproc_per_node: examples per step = 64 x gpus */
    /* The text columns under their Hugging Face `datasets` names ("glue"
     * configs), the form most copies of GLUE come in. */
    const char *text1, *text2;
} glue_preset;

/* From glue/ipt_deberta_base_<task>.sh: --num_train_epochs, --learning_rate,
 * --classifier_lr, --nproc_per_node. Metrics as the paper's table reports
 * them (LoRA's convention: Matthews correlation for CoLA, Pearson for STS-B,
 * accuracy for the rest). The mnli and qqp scripts say --lora_r 1024; the
 * paper's AFLoRA rows are rank 4 on every task, and rank stays the method's
 * default here. */
static const glue_preset glue_presets[] = {
    {"glue/cola", "classification", "mcc", 20, 1e-2, 4e-2, 1, "sentence", NULL},
    {"glue/mnli", "classification", "accuracy", 10, 1e-2, 4e-3, 4, "premise", "hypothesis"},
    {"glue/mrpc", "classification", "accuracy", 20, 1e-2, 8e-2, 1, "sentence1", "sentence2"},
    {"glue/qnli", "classification", "accuracy", 10, 1e-3, 4e-3, 4, "question", "sentence"},
    {"glue/qqp", "classification", "accuracy", 10, 4e-3, 4e-3, 4, "question1", "question2"},
    {"glue/rte", "classification", "accuracy", 20, 1e-2, 4e-2, 1, "sentence1", "sentence2"},
    {"glue/sst2", "classification", "accuracy", 10, 4e-3, 4e-3, 1, "sentence", NULL},
    {"glue/stsb", "regression", "pearson", 20, 2e-2, 2e-2, 1, "sentence1", "sentence2"},
};
#define N_PRESETS (sizeof glue_presets / sizeof *glue_presets)

const char *const preset_names[] = {"glue/cola", "glue/mnli", "glue/mrpc", "glue/qnli", "glue/qqp",
                                    "glue/rte",  "glue/sst2", "glue/stsb", NULL};
_Static_assert(sizeof preset_names / sizeof *preset_names == N_PRESETS + 1, "one name per preset");

static const glue_preset *find(const char *name) {
    for (size_t i = 0; i < N_PRESETS; i++)
        if (strcmp(glue_presets[i].name, name) == 0) return &glue_presets[i];
    return NULL;
}

/* Add key = item to obj unless obj has key; item is consumed either way. */
static bool fill(cJSON *obj, const char *key, cJSON *item) {
    if (!item) return false;
    if (cJSON_GetObjectItemCaseSensitive(obj, key)) {
        cJSON_Delete(item);
        return true;
    }
    return cJSON_AddItemToObject(obj, key, item);
}

static bool fill_number(cJSON *obj, const char *key, double v) {
    return fill(obj, key, cJSON_CreateNumber(v));
}

static bool fill_string(cJSON *obj, const char *key, const char *v) {
    return fill(obj, key, cJSON_CreateString(v));
}

int preset_apply(cJSON *root, char *err, size_t errlen) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "preset");
    if (!cJSON_IsString(name)) return 0;
    const glue_preset *p = find(name->valuestring);
    if (!p) {
        size_t len = (size_t)snprintf(
            err, errlen, "unknown preset \"%.*s\"; known: ", PRESET_MAX_NAME, name->valuestring);
        for (size_t i = 0; i < N_PRESETS && len < errlen; i++)
            len += (size_t)snprintf(err + len, errlen - len, "%s%s", i ? ", " : "",
                                    glue_presets[i].name);
        return -1;
    }
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(root, "task");
    if (cJSON_IsString(task) && strcmp(task->valuestring, "causal_lm") == 0) {
        snprintf(err, errlen, "preset %s is a GLUE recipe for an encoder task; task is causal_lm",
                 p->name);
        return -1;
    }
    /* The learning rates are AFLoRA's: another method keeps its own (full
     * fine-tuning at 1e-2 would wreck the model). */
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(root, "method");
    bool aflora = !method || (cJSON_IsString(method) && strcmp(method->valuestring, "aflora") == 0);
    int examples = GLUE_DEVICE_BATCH * p->gpus;
    bool ok = fill_string(root, "task", p->task) && fill_string(root, "metric", p->metric) &&
              fill_number(root, "epochs", p->epochs) &&
              (!aflora || (fill_number(root, "learning_rate", p->lr) &&
                           fill_number(root, "head_learning_rate", p->head_lr))) &&
              fill_number(root, "batch_size", GLUE_BATCH) &&
              fill_number(root, "grad_accum", examples / GLUE_BATCH) &&
              fill_number(root, "max_seq_len", GLUE_MAX_SEQ_LEN) &&
              fill_number(root, "warmup_ratio", GLUE_WARMUP_RATIO) &&
              fill_number(root, "weight_decay", GLUE_WEIGHT_DECAY) &&
              fill_number(root, "max_grad_norm", GLUE_MAX_GRAD_NORM) &&
              fill_number(root, "seed", GLUE_SEED);
    cJSON *ds = cJSON_GetObjectItemCaseSensitive(root, "dataset");
    if (ok && cJSON_IsObject(ds)) {
        const char *cols[2] = {p->text1, p->text2};
        cJSON *arr = cJSON_CreateStringArray(cols, p->text2 ? 2 : 1);
        ok = fill(ds, "text_fields", arr);
    }
    if (!ok) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

cJSON *preset_fields_json(const char *name, const char *method, char *err, size_t errlen) {
    cJSON *root = cJSON_CreateObject();
    bool ok = root && cJSON_AddStringToObject(root, "preset", name) &&
              (!method || cJSON_AddStringToObject(root, "method", method)) &&
              cJSON_AddObjectToObject(root, "dataset");
    if (!ok) {
        snprintf(err, errlen, "out of memory");
        cJSON_Delete(root);
        return NULL;
    }
    if (preset_apply(root, err, errlen) != 0) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(root, "preset");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "method");
    /* the dataset's fields last, as the spec table orders them */
    cJSON_AddItemToObject(root, "dataset",
                          cJSON_DetachItemFromObjectCaseSensitive(root, "dataset"));
    return root;
}

char *preset_doc_markdown(void) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    len += (size_t)snprintf(buf + len, cap - len,
                            "| preset | task | metric | epochs | learning_rate | "
                            "head_learning_rate | examples per step | text_fields |\n"
                            "|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < N_PRESETS && len < cap; i++) {
        const glue_preset *p = &glue_presets[i];
        len += (size_t)snprintf(
            buf + len, cap - len, "| `%s` | %s | %s | %d | %g | %g | %d (%d x %d) | %s%s%s |\n",
            p->name, p->task, p->metric, p->epochs, p->lr, p->head_lr, GLUE_DEVICE_BATCH * p->gpus,
            GLUE_BATCH, GLUE_DEVICE_BATCH * p->gpus / GLUE_BATCH, p->text1, p->text2 ? ", " : "",
            p->text2 ? p->text2 : "");
    }
    if (len >= cap) {
        free(buf);
        return NULL;
    }
    return buf;
}
