/* modelinfo.c — a model folder described (modelinfo.h).
 *
 * describe_uncached does the work: the config's sizes, the family's tasks,
 * the safetensors headers (count and dtype), the tokenizer and its chat
 * template, and the trainer's memory estimate for the job spec's defaults
 * (a spec of just the model and its family's first task, parsed by the spec
 * module, so the defaults are the ones a job gets). The cache in front of
 * it keys a folder by path and a signature of the files the description
 * reads (size and mtime), so an edited or replaced folder is described
 * again. */
#include "modelinfo.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/hfmodel.h"
#include "spec.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/memory.h"

/* The files a description reads; their size and mtime sign it. */
static const char *const signed_files[] = {
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "spm.model",
    "vocab.txt",
    "model.safetensors",
    "model.safetensors.index.json",
    "special_tokens_map.json",
};
#define SIGNED_FILES (sizeof signed_files / sizeof *signed_files)

static const char *const tokenizer_kind_names[] = {
    [TOKENIZER_WORDPIECE] = "wordpiece",
    [TOKENIZER_BPE] = "bytelevel_bpe",
    [TOKENIZER_SPM_BPE] = "spm_bpe",
    [TOKENIZER_SPM_UNIGRAM] = "spm_unigram",
};

const char *modelinfo_tokenizer_kind_name(int kind) {
    int n = (int)(sizeof tokenizer_kind_names / sizeof *tokenizer_kind_names);
    return kind >= 0 && kind < n ? tokenizer_kind_names[kind] : "";
}

int modelinfo_task_names(const model_info *info, const char *names[], int cap) {
    int n = 0;
    for (int t = 0; t < TASK_COUNT && n < cap; t++)
        if (info->tasks & (1u << t)) names[n++] = spec_task_name((aflo_task)t);
    return n;
}

void modelinfo_tasks_text(const model_info *info, char *buf, size_t cap) {
    const char *names[TASK_COUNT];
    int n = modelinfo_task_names(info, names, TASK_COUNT);
    size_t used = 0;
    if (cap) buf[0] = '\0';
    for (int i = 0; i < n && used < cap; i++) {
        int k = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", names[i]);
        if (k > 0) used += (size_t)k;
    }
    if (n == 0) snprintf(buf, cap, "none");
}

/* The first task the family trains that a spec offers. */
static aflo_task default_task(unsigned tasks) {
    for (int t = 0; t < TASK_COUNT; t++)
        if (tasks & (1u << t)) return (aflo_task)t;
    return TASK_CLASSIFICATION;
}

/* The trainer's estimate at the spec's defaults for this model. */
static void estimate_memory(const aflo_config *c, model_info *m) {
    m->train_memory_bytes = -1;
    if (!m->family) {
        snprintf(m->train_memory_note, sizeof m->train_memory_note,
                 "not estimated: no model family reads this config");
        return;
    }
    aflo_task task = default_task(m->tasks);
    char doc[160];
    snprintf(doc, sizeof doc,
             "{\"model\": \"estimate\", \"task\": \"%s\", \"dataset\": {\"train\": \"x.jsonl\"}}",
             spec_task_name(task));
    aflo_job_spec s;
    aflo_spec_error se;
    aflo_adapter_config ac;
    char why[256];
    if (spec_parse(doc, strlen(doc), &s, &se) != 0) {
        snprintf(m->train_memory_note, sizeof m->train_memory_note, "not estimated: %.200s",
                 se.message);
        spec_free(&s);
        return;
    }
    int seq = s.max_seq_len;
    if (m->context_length > 0 && seq > m->context_length) seq = m->context_length;
    aflo_job_memory est;
    if (spec_to_adapter_config(&s, m->family, &ac, why, sizeof why) != 0 ||
        train_estimate_memory(c, &ac, task,
                              task == TASK_CAUSAL_LM ? c->vocab_size : spec_num_labels(&s),
                              s.batch_size, seq, false, &est, why, sizeof why) != 0) {
        snprintf(m->train_memory_note, sizeof m->train_memory_note, "not estimated: %.200s", why);
    } else {
        m->train_memory_bytes = (int64_t)est.total;
        snprintf(m->train_memory_note, sizeof m->train_memory_note,
                 "task %s, method %s rank %d, batch_size %d x %d tokens, no evaluation set, "
                 "weights in fp32; without the data; grows with batch_size x the longest "
                 "example",
                 spec_task_name(task), method_names[s.method], s.rank, s.batch_size, seq);
    }
    spec_free(&s);
}

/* Elements of a BERT encoder + pooler from its sizes (the demo has no
 * weight files): embeddings (word, position, token type, LayerNorm), per
 * layer four attention projections, two LayerNorms and the two FFN
 * projections (all with biases), and the pooler. bert-base: 109 482 240,
 * the count transformers reports. */
static int64_t bert_parameters(const aflo_config *c) {
    int64_t V = c->vocab_size, P = c->max_position_embeddings, T = c->type_vocab_size;
    int64_t H = c->hidden_size, I = c->intermediate_size, L = c->num_hidden_layers;
    int64_t embeddings = (V + P + T) * H + 2 * H;
    int64_t layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H;
    return embeddings + L * layer + H * H + H;
}

/* Elements of a LLaMA-family decoder from its sizes: the embedding, per
 * layer two RMSNorm weights, q and o (H x H), k and v (kv_dim x H) and the
 * three MLP projections, the final norm, and lm_head unless tied to the
 * embedding (the count transformers' LlamaForCausalLM reports). */
static int64_t llama_parameters(const aflo_config *c) {
    int64_t V = c->vocab_size, H = c->hidden_size, I = c->intermediate_size;
    int64_t L = c->num_hidden_layers;
    int64_t kv = (int64_t)config_kv_heads(c) * config_head_dim(c);
    int64_t layer = 2 * H + 2 * H * H + 2 * kv * H + 3 * H * I;
    return V * H + L * layer + H + (c->tie_word_embeddings ? 0 : V * H);
}

/* transformers' DebertaV2ForSequenceClassification has 2 labels unless the
 * config names more; the config reader keeps no labels (a job's dataset
 * sets them), so the count takes that default. */
#define DEBERTA_DEFAULT_NUM_LABELS 2

/* Elements of DebertaV2ForSequenceClassification from its sizes, as
 * transformers builds it (the engine refuses embed_proj, ConvLayer and a
 * pooler_hidden_size other than hidden): word embeddings, absolute positions
 * only with position_biased_input, token types only when type_vocab_size >
 * 0, the embedding LayerNorm; per layer BERT's block plus, without
 * share_att_key, pos_key_proj (c2p) and pos_query_proj (p2c); with
 * relative_attention 2 x span rel_embeddings rows (span: position_buckets,
 * else max_relative_positions, else max_position_embeddings); the encoder's
 * LayerNorm when norm_rel_ebd is layer_norm (transformers builds it from
 * that key alone); the ContextPooler's dense and
 * the classifier. Counted from the config because a hub checkpoint's weights
 * are the pre-training model's (lm_predictions.*, no pooler or classifier).
 * deberta-v3-base: 184 423 682. */
static int64_t deberta_parameters(const aflo_config *c) {
    int64_t V = c->vocab_size, P = c->max_position_embeddings, T = c->type_vocab_size;
    int64_t H = c->hidden_size, I = c->intermediate_size, L = c->num_hidden_layers;
    int64_t embeddings = (V + (c->position_biased_input ? P : 0) + T) * H + 2 * H;
    int64_t layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H;
    if (!c->share_att_key) {
        if (c->pos_att_type & CONFIG_POS_C2P) layer += H * H + H;
        if (c->pos_att_type & CONFIG_POS_P2C) layer += H * H + H;
    }
    int64_t relative = 0;
    if (c->relative_attention) {
        int64_t span = c->position_buckets > 0         ? c->position_buckets
                       : c->max_relative_positions > 0 ? c->max_relative_positions
                                                       : P;
        relative = 2 * span * H;
    }
    if (c->norm_rel_ebd_layer_norm) relative += 2 * H;
    int64_t head = H * H + H + DEBERTA_DEFAULT_NUM_LABELS * (H + 1);
    return embeddings + L * layer + relative + head;
}

/* The count from the config, per family (data over branches); NULL: the
 * weight files' element count. */
static const struct {
    const char *family;
    int64_t (*count)(const aflo_config *c);
} parameter_counts[] = {
    {"bert", bert_parameters}, {"deberta", deberta_parameters}, {"llama", llama_parameters}};

static int64_t (*parameter_counter(const aflo_family *f))(const aflo_config *) {
    for (size_t i = 0; f && i < sizeof parameter_counts / sizeof *parameter_counts; i++)
        if (strcmp(parameter_counts[i].family, f->name) == 0) return parameter_counts[i].count;
    return NULL;
}

static void describe_tokenizer(const char *dir, model_info *m) {
    char err[512];
    tokenizer *tok = tokenizer_load_dir(dir, err, sizeof err);
    if (!tok) return; /* none, or unusable: hfmodel_probe says which */
    m->tokenizer = true;
    snprintf(m->tokenizer_kind, sizeof m->tokenizer_kind, "%s",
             modelinfo_tokenizer_kind_name((int)tokenizer_kind_of(tok)));
    const char *src = tokenizer_chat_template(tok);
    if (src) {
        chat_template t;
        if (chat_template_parse(src, &t, err, sizeof err) == 0) {
            snprintf(m->chat_template, sizeof m->chat_template, "%s", chat_family_names[t.family]);
            chat_template_free(&t);
        } else {
            snprintf(m->chat_template_error, sizeof m->chat_template_error, "%.250s", err);
        }
    }
    tokenizer_free(tok);
}

static void describe_uncached(const char *dir, const aflo_config *c, model_info *m) {
    memset(m, 0, sizeof *m);
    m->family = family_for_model_type(c->model_type, NULL);
    snprintf(m->model_type, sizeof m->model_type, "%s", c->model_type);
    m->tasks = m->family ? m->family->tasks & ((1u << TASK_COUNT) - 1) : 0;
    m->layers = c->num_hidden_layers;
    m->hidden_size = c->hidden_size;
    m->intermediate_size = c->intermediate_size;
    m->attention_heads = c->num_attention_heads;
    m->vocab_size = c->vocab_size;
    m->context_length = family_max_tokens(c);
    int64_t (*count)(const aflo_config *) = parameter_counter(m->family);
    m->parameters = count ? count(c) : 0;
    hf_model_info hi;
    char err[512];
    if (dir && hfmodel_info(dir, &hi, err, sizeof err) == 0) {
        if (!count) m->parameters = (int64_t)hi.num_params;
        snprintf(m->dtype, sizeof m->dtype, "%s", hi.dtype);
    } else if (!dir) {
        /* the demo: created in fp32, with its WordPiece vocabulary (synth.h) */
        snprintf(m->dtype, sizeof m->dtype, "F32");
        m->tokenizer = true;
        snprintf(m->tokenizer_kind, sizeof m->tokenizer_kind, "wordpiece");
    }
    if (dir) describe_tokenizer(dir, m);
    estimate_memory(c, m);
}

/* ---- the cache --------------------------------------------------------------- */

typedef struct {
    long long size, mtime_ns; /* -1, -1 when absent */
} file_sig;

typedef struct {
    char *dir;
    file_sig sig[SIGNED_FILES];
    model_info info;
} cache_entry;

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static cache_entry cache[MODELINFO_CACHE_SLOTS];
static unsigned cache_next; /* the slot replaced next when all are used */

static void sign(const char *dir, file_sig sig[SIGNED_FILES]) {
    char path[4096];
    for (size_t i = 0; i < SIGNED_FILES; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, signed_files[i]);
        if (stat(path, &st) != 0) {
            sig[i] = (file_sig){-1, -1};
            continue;
        }
        sig[i] = (file_sig){(long long)st.st_size,
                            (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec};
    }
}

void modelinfo_describe(const char *dir, const aflo_config *c, model_info *out) {
    if (!dir) {
        describe_uncached(NULL, c, out);
        return;
    }
    file_sig sig[SIGNED_FILES];
    sign(dir, sig);
    pthread_mutex_lock(&cache_mu);
    for (int i = 0; i < MODELINFO_CACHE_SLOTS; i++) {
        cache_entry *e = &cache[i];
        if (e->dir && strcmp(e->dir, dir) == 0 && memcmp(e->sig, sig, sizeof sig) == 0) {
            *out = e->info;
            pthread_mutex_unlock(&cache_mu);
            return;
        }
    }
    pthread_mutex_unlock(&cache_mu);
    /* described outside the lock: two threads may both do it once */
    describe_uncached(dir, c, out);
    char *copy = strdup(dir);
    if (!copy) return; /* not cached: described again next time */
    pthread_mutex_lock(&cache_mu);
    cache_entry *slot = NULL;
    for (int i = 0; i < MODELINFO_CACHE_SLOTS && !slot; i++)
        if (cache[i].dir && strcmp(cache[i].dir, dir) == 0) slot = &cache[i];
    for (int i = 0; i < MODELINFO_CACHE_SLOTS && !slot; i++)
        if (!cache[i].dir) slot = &cache[i];
    if (!slot) slot = &cache[cache_next++ % MODELINFO_CACHE_SLOTS];
    free(slot->dir);
    slot->dir = copy;
    memcpy(slot->sig, sig, sizeof sig);
    slot->info = *out;
    pthread_mutex_unlock(&cache_mu);
}

void modelinfo_cache_clear(void) {
    pthread_mutex_lock(&cache_mu);
    for (int i = 0; i < MODELINFO_CACHE_SLOTS; i++) {
        free(cache[i].dir);
        memset(&cache[i], 0, sizeof cache[i]);
    }
    cache_next = 0;
    pthread_mutex_unlock(&cache_mu);
}
