/* predict.c — inference with a finished adapter (see predict.h). */
#include "predict.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/adapter_native.h"
#include "io/adapter_peft.h"
#include "model/family.h"
#include "fsutil.h"
#include "io/hfmodel.h"
#include "job.h"
#include "base/json.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"

typedef struct cache_entry cache_entry;

struct predictor {
    bool lm; /* a causal LM (predictor_open_lm): generates, never classifies */
    aflo_model *m;
    tokenizer *tok;
    char **labels;
    int num_labels;
    int max_len;
    adapter_inputs inputs;
    cache_entry *entry; /* the cache entry holding it, or NULL */
};

void predictor_free(predictor *p) {
    if (!p) return;
    model_free(p->m);
    tokenizer_free(p->tok);
    if (p->labels)
        for (int i = 0; i < p->num_labels; i++) free(p->labels[i]);
    free(p->labels);
    free(p);
}

/* The class names from a JSON array (the native file's labels), or the ids
 * (json NULL). */
static int labels_from_json(predictor *p, const char *json, char *err, size_t errlen) {
    cJSON *arr = json ? cJSON_Parse(json) : NULL;
    p->labels = calloc((size_t)p->num_labels, sizeof *p->labels);
    for (int i = 0; p->labels && i < p->num_labels; i++) {
        cJSON *it = cJSON_IsArray(arr) ? cJSON_GetArrayItem(arr, i) : NULL;
        char buf[32];
        snprintf(buf, sizeof buf, "%d", i);
        if (!(p->labels[i] = strdup(cJSON_IsString(it) ? it->valuestring : buf))) {
            cJSON_Delete(arr);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    cJSON_Delete(arr);
    if (p->labels) return 0;
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* Whether a PEFT key names this checkpoint tensor: the key is the name, or
 * ends with "." + name (after PEFT's root). */
static bool key_names(const char *key, const char *name) {
    size_t len = strlen(key), n = strlen(name);
    return len >= n && (len == n || key[len - n - 1] == '.') && strcmp(key + len - n, name) == 0;
}

/* Rows of the head's output layer in a PEFT folder's weights: its label
 * count. The layer is the model family's (family_head_output), under the
 * checkpoint name of any of its variants (BERT "classifier.weight", RoBERTa
 * "classifier.out_proj.weight"); a folder keyed for a sibling variant is
 * refused by the import, with its reasons. */
static int peft_num_labels(const char *dir, const aflo_family *fam, char *err, size_t errlen) {
    const char *output = family_head_output(fam);
    char engine[128], hf[128], path[4096];
    if (!output || (size_t)snprintf(engine, sizeof engine, "%s.weight", output) >= sizeof engine) {
        snprintf(err, errlen, "%s: the %s family has no classification head", dir, fam->name);
        return -1;
    }
    if (path_join(path, sizeof path, dir, PEFT_WEIGHTS_FILE, err, errlen) != 0) return -1;
    st_file *f = st_open(path, err, errlen);
    if (!f) return -1;
    int n = -1;
    for (size_t i = 0; i < st_count(f); i++)
        for (int v = 0; v < fam->n_variants && st_ndim(f, i) == 2; v++)
            if (family_hf_name(&fam->variants[v], engine, true, hf, sizeof hf) == 0 &&
                key_names(st_name(f, i), hf))
                n = (int)st_shape(f, i)[0];
    st_close(f);
    if (n < 1) snprintf(err, errlen, "%s: no classifier weights in the PEFT folder", dir);
    return n;
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int load_peft(predictor *p, const aflo_family *fam, const char *model_dir,
                     const char *adapter, char *err, size_t errlen) {
    aflo_adapter_config ac;
    if (adapter_peft_read_config(adapter, &ac, NULL, 0, err, errlen) != 0) return -1;
    if (adapter_read_inputs_file(adapter, &p->inputs, err, errlen) != 0) return -1;
    p->num_labels = peft_num_labels(adapter, fam, err, errlen);
    if (p->num_labels < 1) return -1;
    aflo_task task = p->num_labels == 1 ? TASK_REGRESSION : TASK_CLASSIFICATION;
    p->m = hfmodel_load(model_dir, &ac, task, p->num_labels, 0, NULL, err, errlen);
    if (!p->m || adapter_import_peft(p->m, adapter, NULL, err, errlen) != 0) return -1;
    /* the names aflorad wrote beside the adapter (config.json), as the native
     * file has them; the ids for a folder without them */
    hf_head_info head;
    if (adapter_peft_read_labels(adapter, p->num_labels, &head, err, errlen) != 0) return -1;
    if (head.num_labels == 0) return labels_from_json(p, NULL, err, errlen);
    p->labels = head.labels; /* taken */
    return 0;
}

static int load_native(predictor *p, const char *model_dir, const char *path, char *err,
                       size_t errlen) {
    adapter_native_meta meta;
    if (adapter_native_read_meta(path, &meta, err, errlen) != 0) return -1;
    p->num_labels = meta.num_labels;
    p->inputs = meta.inputs;
    p->m = hfmodel_load(model_dir, &meta.ac, meta.task, meta.num_labels, 0, NULL, err, errlen);
    int rc = -1;
    if (p->m && adapter_import_native(p->m, path, err, errlen) == 0)
        rc = labels_from_json(p, meta.labels_json, err, errlen);
    adapter_native_meta_free(&meta);
    return rc;
}

/* A model folder with its own fine-tuned head (method full's model/). */
static int load_finetuned_folder(predictor *p, const char *model, const char *model_dir, char *err,
                                 size_t errlen) {
    hf_head_info head;
    if (hfmodel_read_head(model_dir, &head, err, errlen) != 0) return -1;
    int rc = -1;
    if (head.num_labels == 0) {
        snprintf(err, errlen,
                 "model %s has no fine-tuned head (its config.json names no labels): give "
                 "--adapter, or use the adapter/model/ folder of a method-full run",
                 model);
        goto out;
    }
    aflo_adapter_config full = {.method = METHOD_FULL};
    aflo_task task = head.regression ? TASK_REGRESSION : TASK_CLASSIFICATION;
    hf_load_report rep;
    p->m = hfmodel_load(model_dir, &full, task, head.num_labels, 0, &rep, err, errlen);
    if (!p->m) goto out;
    if (!rep.classifier_pretrained || !rep.pooler_pretrained) {
        snprintf(err, errlen,
                 "model %s: config.json names %d labels but the weights hold no matching "
                 "classification head (%s)",
                 model, head.num_labels, rep.info);
        goto out;
    }
    if (adapter_read_inputs_file(model_dir, &p->inputs, err, errlen) != 0) goto out;
    p->num_labels = head.num_labels;
    p->labels = head.labels; /* taken */
    head.labels = NULL;
    head.num_labels = 0;
    rc = 0;
out:
    hf_head_info_free(&head);
    return rc;
}

static int predictor_load(predictor *p, const char *models, const char *model, const char *adapter,
                          char *err, size_t errlen) {
    char model_dir[4096], path[4096];
    if (job_model_dir(models, model, model_dir, sizeof model_dir, err, errlen) != 0) return -1;
    p->tok = tokenizer_load_dir(model_dir, err, errlen);
    if (!p->tok) return -1;
    aflo_config c;
    if (hfmodel_read_config(model_dir, &c, err, errlen) != 0) return -1;
    const aflo_family *fam = family_for_config(c.model_type, NULL, NULL, err, errlen);
    if (!fam) return -1;
    p->max_len = family_max_tokens(&c);
    if (!adapter) return load_finetuned_folder(p, model, model_dir, err, errlen);
    if (!is_dir(adapter)) return load_native(p, model_dir, adapter, err, errlen);
    if (path_join(path, sizeof path, adapter, PEFT_CONFIG_FILE, err, errlen) != 0) return -1;
    if (file_exists(path)) return load_peft(p, fam, model_dir, adapter, err, errlen);
    /* the adapter/ folder `aflorad run` prints */
    if (path_join(path, sizeof path, adapter, "adapter.safetensors", err, errlen) != 0) return -1;
    if (file_exists(path)) return load_native(p, model_dir, path, err, errlen);
    snprintf(err, errlen,
             "%s: a folder with neither adapter.safetensors (the adapter/ folder `aflorad run` "
             "writes) nor %s (a PEFT folder)",
             adapter, PEFT_CONFIG_FILE);
    return -1;
}

predictor *predictor_open(const char *models_dir, const char *model, const char *adapter, char *err,
                          size_t errlen) {
    predictor *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (predictor_load(p, models_dir, model, adapter, err, errlen) != 0) {
        predictor_free(p);
        return NULL;
    }
    return p;
}

predictor *predictor_open_lm(const char *models_dir, const char *model, const char *adapter,
                             char *err, size_t errlen) {
    char model_dir[4096];
    if (job_model_dir(models_dir, model, model_dir, sizeof model_dir, err, errlen) != 0)
        return NULL;
    predictor *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->lm = true;
    char terr[512];
    int probe = tokenizer_probe_dir(model_dir, terr, sizeof terr);
    if (probe == -1) {
        snprintf(err, errlen, "model %s: its tokenizer cannot be used: %s", model, terr);
        goto fail;
    }
    if (probe == 0 && !(p->tok = tokenizer_load_dir(model_dir, err, errlen))) goto fail;
    if (!(p->m = lmgen_load(model_dir, adapter, err, errlen))) goto fail;
    p->max_len = family_max_tokens(model_config(p->m));
    return p;
fail:
    predictor_free(p);
    return NULL;
}

int predictor_generate(predictor *p, const lmgen_request *req, lmgen_token_fn on_token, void *user,
                       lmgen_report *rep, predict_status *status, char *err, size_t errlen) {
    predict_status local;
    if (!status) status = &local;
    *status = PREDICT_E_INPUT;
    memset(rep, 0, sizeof *rep);
    if (!p->lm) {
        snprintf(err, errlen, "the model is not a causal language model: it cannot generate");
        return -1;
    }
    int32_t *ids = NULL;
    int n = 0;
    lmgen_request r = *req;
    if (lmgen_prompt(p->tok, req, &ids, &n, &r.gp.eos_id, err, errlen) != 0) return -1;
    int vocab = model_config(p->m)->vocab_size;
    int rc = -1;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) {
            snprintf(err, errlen, "prompt_ids[%d]: %d is outside the model's vocabulary (0 to %d)",
                     i, ids[i], vocab - 1);
            goto out;
        }
    if (n < 1) {
        snprintf(err, errlen, "the prompt has no tokens (a causal LM needs at least one)");
        goto out;
    }
    if (n >= p->max_len) {
        snprintf(err, errlen,
                 "the prompt has %d tokens: the model's %d positions leave no room for a new "
                 "one (at most %d prompt tokens)",
                 n, p->max_len, p->max_len - 1);
        goto out;
    }
    *status = PREDICT_E_INTERNAL;
    rc = lmgen_run(p->m, p->tok, ids, n, &r.gp, on_token, user, rep, err, errlen);
    if (rc == 0) *status = PREDICT_OK;
out:
    free(ids);
    return rc;
}

const adapter_inputs *predictor_inputs(const predictor *p) { return &p->inputs; }

void predictor_describe_fields(const predictor *p, char *buf, size_t cap) {
    buf[0] = '\0';
    size_t used = 0;
    for (int i = 0; i < p->inputs.n_fields && used < cap; i++) {
        const adapter_text_field *t = &p->inputs.fields[i];
        int n = t->by_index
                    ? snprintf(buf + used, cap - used, "%scolumn %d", i ? " and " : "", t->index)
                    : snprintf(buf + used, cap - used, "%s\"%.200s\"", i ? " and " : "", t->name);
        if (n < 0) return;
        used += (size_t)n;
    }
}

int predictor_check_pair(const predictor *p, bool has_pair, char *err, size_t errlen) {
    int n = p->inputs.n_fields;
    if (n == 0 || (n == 2) == has_pair) return 0;
    char fields[512];
    predictor_describe_fields(p, fields, sizeof fields);
    if (n == 2)
        snprintf(err, errlen,
                 "the adapter was trained on text pairs (%s): give the second text too", fields);
    else
        snprintf(err, errlen,
                 "the adapter was trained on single texts (%s): a second text does not apply",
                 fields);
    return -1;
}

cJSON *predictor_run(predictor *p, const char *a, const char *b, predict_status *status, char *err,
                     size_t errlen) {
    predict_status local;
    if (!status) status = &local;
    *status = PREDICT_E_INPUT;
    if (p->lm) {
        snprintf(err, errlen, "the model is a causal language model: it generates, not predicts");
        return NULL;
    }
    const char *bad = !json_utf8_valid(a, strlen(a))        ? "the text"
                      : b && !json_utf8_valid(b, strlen(b)) ? "the second text"
                                                            : NULL;
    if (bad) {
        snprintf(err, errlen, "%s is not valid UTF-8", bad);
        return NULL;
    }
    *status = PREDICT_E_INTERNAL;
    int32_t ids[PREDICT_MAX_TOKENS], tt[PREDICT_MAX_TOKENS];
    int len, max = p->max_len < PREDICT_MAX_TOKENS ? p->max_len : PREDICT_MAX_TOKENS;
    if (tokenizer_encode(p->tok, a, b, max, ids, tt, &len, err, errlen) != 0) return NULL;
    if (model_reserve(p->m, 1, len, err, errlen) != 0) return NULL;
    aflo_batch batch = {.batch = 1, .seq = len, .input_ids = ids, .token_type_ids = tt};
    if (model_forward(p->m, &batch, NULL, err, errlen) != 0) return NULL;
    const float *logits = model_logits(p->m);
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL;
    if (ok && model_task(p->m) == TASK_REGRESSION) {
        ok = cJSON_AddNumberToObject(o, "value", logits[0]) != NULL;
    } else if (ok) {
        int L = p->num_labels, best = 0;
        double mx, sum = 0;
        for (int k = 1; k < L; k++)
            if (logits[k] > logits[best]) best = k;
        mx = logits[best];
        for (int k = 0; k < L; k++) sum += exp(logits[k] - mx);
        cJSON *probs, *lg;
        ok = cJSON_AddStringToObject(o, "label", p->labels[best]) &&
             cJSON_AddNumberToObject(o, "label_id", best) &&
             (probs = cJSON_AddArrayToObject(o, "probabilities")) &&
             (lg = cJSON_AddArrayToObject(o, "logits"));
        for (int k = 0; ok && k < L; k++) {
            cJSON *pr = cJSON_CreateNumber(exp(logits[k] - mx) / sum);
            cJSON *lv = cJSON_CreateNumber(logits[k]);
            ok = pr && lv;
            if (pr) cJSON_AddItemToArray(probs, pr);
            if (lv) cJSON_AddItemToArray(lg, lv);
        }
    }
    if (!ok) {
        cJSON_Delete(o);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    *status = PREDICT_OK;
    return o;
}

/* ---------------------------------------------------------------- the cache */

/* Job ids are 16 characters, "model:" + a model name (at most 255) the
 * longest key. */
#define CACHE_KEY_MAX 272

/* The adapter file a predictor was loaded from: another inode, size or
 * mtime means it was replaced (written anew by a retried job). */
typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} file_id;

struct cache_entry {
    char key[CACHE_KEY_MAX];
    bool lm; /* loaded with predictor_open_lm */
    file_id id;
    predictor *p; /* NULL while loading */
    bool loading;
    bool detached; /* out of the table (stale), freed by its last user */
    int users;     /* acquired and not yet released */
    uint64_t last_used;
    pthread_mutex_t run; /* held by the user running forward passes */
};

struct predict_cache {
    pthread_mutex_t mu;
    pthread_cond_t changed; /* a load ended or an entry was released */
    int capacity;
    int live;            /* entries loaded or loading, detached ones included */
    cache_entry **slots; /* capacity slots, NULL when free */
    uint64_t tick, loads, hits;
};

predict_cache *predict_cache_new(int capacity) {
    if (capacity < 1) return NULL;
    predict_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->slots = calloc((size_t)capacity, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return NULL;
    }
    c->capacity = capacity;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->changed, NULL);
    return c;
}

static void entry_free(cache_entry *e) {
    if (!e) return;
    predictor_free(e->p);
    pthread_mutex_destroy(&e->run);
    free(e);
}

void predict_cache_free(predict_cache *c) {
    if (!c) return;
    for (int i = 0; i < c->capacity; i++) entry_free(c->slots[i]);
    free(c->slots);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->changed);
    free(c);
}

static int slot_of(const predict_cache *c, const cache_entry *e) {
    for (int i = 0; i < c->capacity; i++)
        if (c->slots[i] == e) return i;
    return -1;
}

static bool same_file(const file_id *a, const file_id *b) {
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Take e out of the table; returns it when nobody uses it any more (the
 * caller frees it after unlocking), else its last user will. */
static cache_entry *detach(predict_cache *c, cache_entry *e) {
    c->slots[slot_of(c, e)] = NULL;
    e->detached = true;
    if (e->users > 0) return NULL;
    c->live--;
    return e;
}

/* An entry for key of the kind (lm) over adapter (NULL: none, only for
 * LMs), loaded if absent, stale or of the other kind. */
static predictor *acquire(predict_cache *c, bool lm, const char *key, const char *models_dir,
                          const char *model, const char *adapter, char *err, size_t errlen) {
    if (strlen(key) >= CACHE_KEY_MAX) {
        snprintf(err, errlen, "predict cache: key too long");
        return NULL;
    }
    struct stat st;
    file_id id = {0};
    if (adapter && stat(adapter, &st) != 0) {
        snprintf(err, errlen, "%s: %s", adapter, strerror(errno));
        return NULL;
    }
    if (adapter) id = (file_id){st.st_dev, st.st_ino, st.st_size, st.st_mtim};
    cache_entry *e = NULL, *unused = NULL;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        e = NULL;
        for (int i = 0; i < c->capacity && !e; i++)
            if (c->slots[i] && strcmp(c->slots[i]->key, key) == 0) e = c->slots[i];
        if (e && (!same_file(&e->id, &id) || e->lm != lm)) {
            cache_entry *gone = detach(c, e);
            if (gone) { /* free outside the lock */
                pthread_mutex_unlock(&c->mu);
                entry_free(gone);
                pthread_mutex_lock(&c->mu);
                continue;
            }
            e = NULL;
        }
        if (e && e->loading) {
            pthread_cond_wait(&c->changed, &c->mu);
            continue;
        }
        if (e) {
            e->users++;
            e->last_used = ++c->tick;
            c->hits++;
            pthread_mutex_unlock(&c->mu);
            pthread_mutex_lock(&e->run);
            return e->p;
        }
        if (c->live < c->capacity) break;
        cache_entry *lru = NULL;
        for (int i = 0; i < c->capacity; i++) {
            cache_entry *x = c->slots[i];
            if (x && x->users == 0 && !x->loading && (!lru || x->last_used < lru->last_used))
                lru = x;
        }
        if (!lru) { /* every loaded model is in use: wait for one */
            pthread_cond_wait(&c->changed, &c->mu);
            continue;
        }
        unused = detach(c, lru);
        break;
    }
    e = calloc(1, sizeof *e);
    if (!e) {
        pthread_mutex_unlock(&c->mu);
        entry_free(unused);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(e->key, sizeof e->key, "%s", key);
    e->lm = lm;
    e->id = id;
    e->loading = true;
    e->users = 1;
    e->last_used = ++c->tick;
    pthread_mutex_init(&e->run, NULL);
    c->slots[slot_of(c, NULL)] = e; /* live < capacity: the table has a free slot */
    c->live++;
    pthread_mutex_unlock(&c->mu);
    entry_free(unused);

    predictor *p = lm ? predictor_open_lm(models_dir, model, adapter, err, errlen)
                      : predictor_open(models_dir, model, adapter, err, errlen);
    pthread_mutex_lock(&c->mu);
    e->loading = false;
    if (!p) {
        if (!e->detached) c->slots[slot_of(c, e)] = NULL;
        c->live--;
        pthread_cond_broadcast(&c->changed);
        pthread_mutex_unlock(&c->mu);
        entry_free(e);
        return NULL;
    }
    e->p = p;
    p->entry = e;
    c->loads++;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_lock(&e->run);
    return p;
}

predictor *predict_cache_acquire(predict_cache *c, const char *key, const char *models_dir,
                                 const char *model, const char *adapter, char *err, size_t errlen) {
    return acquire(c, false, key, models_dir, model, adapter, err, errlen);
}

predictor *predict_cache_acquire_lm(predict_cache *c, const char *key, const char *models_dir,
                                    const char *model, const char *adapter, char *err,
                                    size_t errlen) {
    return acquire(c, true, key, models_dir, model, adapter, err, errlen);
}

void predict_cache_release(predict_cache *c, predictor *p) {
    cache_entry *e = p->entry;
    pthread_mutex_unlock(&e->run);
    pthread_mutex_lock(&c->mu);
    bool gone = --e->users == 0 && e->detached;
    if (gone) c->live--;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->mu);
    if (gone) entry_free(e);
}

void predict_cache_stats_read(predict_cache *c, predict_cache_stats *out) {
    pthread_mutex_lock(&c->mu);
    out->loads = c->loads;
    out->hits = c->hits;
    out->entries = c->live;
    out->capacity = c->capacity;
    pthread_mutex_unlock(&c->mu);
}
