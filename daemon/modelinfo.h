/* modelinfo.h — what a model folder is, for GET /models and POST /jobs:
 * its family and the tasks it trains, its size, stored dtype, context and
 * vocabulary, its tokenizer and chat template, the adapter targets a job
 * may name, and the memory a training job would need at the default
 * settings.
 *
 * Everything comes through the engine's interfaces: config.json
 * (hfmodel_read_config), the safetensors headers (hfmodel_info: parameter
 * count and dtype, no tensor data), the tokenizer files (tokenizer_load_dir,
 * whose chat template chat_template_parse recognises) and the trainer's
 * estimate (train_estimate_memory with the job spec's defaults). No tensor
 * is allocated and no matrix is touched.
 *
 * Loading a tokenizer is the cost (it parses the whole vocabulary and
 * merges: a LLaMA-3 tokenizer.json is 9 MB), so descriptions are cached per
 * folder and reused while the size and mtime of its config, tokenizer and
 * weight files are unchanged; the cache is shared by the API's threads (a
 * mutex) and holds MODELINFO_CACHE_SLOTS folders. The weights' headers are
 * read again only when a folder changes; hfmodel_probe (usability) still
 * runs on every GET /models, as before. */
#ifndef AFLO_MODELINFO_H
#define AFLO_MODELINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "model/family.h"

#define MODELINFO_CACHE_SLOTS 64

typedef struct {
    const aflo_family *family; /* NULL when no family reads the config */
    char model_type[32];       /* config.json model_type: "llama", "bert" */
    unsigned tasks;            /* bit (1u << aflo_task) per task a job may give */
    int layers, hidden_size, intermediate_size, attention_heads, vocab_size;
    int context_length;      /* the longest sequence its positions reach */
    int64_t parameters;      /* from the sizes (the count transformers gives), else the files' */
    char dtype[8];           /* stored: "F32", "BF16", "F16", "mixed"; "" unknown */
    bool tokenizer;          /* tokenizer files that load */
    char tokenizer_kind[16]; /* "wordpiece", "bytelevel_bpe", ...; "" none */
    char chat_template[16];  /* recognised family: "llama3", ...; "" none */
    char chat_template_error[256]; /* a template present but not recognised */
    int64_t train_memory_bytes;    /* -1 when not estimated */
    char train_memory_note[256];   /* the settings estimated, or why not */
} model_info;

/* Describe a config already read (c: what hfmodel_read_config gave, or the
 * built-in demo's) for folder dir (NULL: no files: the demo). Fills what
 * the config tells, the estimate, and with dir the weights' parameter count
 * and dtype and the tokenizer. Problems with the weights or tokenizer leave
 * those fields unset: usability is hfmodel_probe's verdict. Cached by dir. */
void modelinfo_describe(const char *dir, const aflo_config *c, model_info *out);

/* The task names of info->tasks a job spec offers, in task order. */
int modelinfo_task_names(const model_info *info, const char *names[], int cap);

/* "classification, regression" into buf: the tasks, for messages. */
void modelinfo_tasks_text(const model_info *info, char *buf, size_t cap);

/* The kind's name as GET /models shows it. */
const char *modelinfo_tokenizer_kind_name(int kind);

/* Forget every cached description (tests). */
void modelinfo_cache_clear(void);

#endif
