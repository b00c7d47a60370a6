/* predict.c — inference with a finished adapter (see predict.h). */
#include "predict.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter_io.h"
#include "fsutil.h"
#include "hfmodel.h"
#include "job.h"
#include "safetensors.h"
#include "tokenizer.h"

struct predictor {
    aflo_model *m;
    tokenizer *tok;
    char **labels;
    int num_labels;
    int max_len;
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

static int labels_from_json(predictor *p, const char *json) {
    cJSON *arr = json ? cJSON_Parse(json) : NULL;
    p->labels = calloc((size_t)p->num_labels, sizeof *p->labels);
    if (!p->labels) {
        cJSON_Delete(arr);
        return -1;
    }
    for (int i = 0; i < p->num_labels; i++) {
        cJSON *it = cJSON_IsArray(arr) ? cJSON_GetArrayItem(arr, i) : NULL;
        char buf[32];
        snprintf(buf, sizeof buf, "%d", i);
        p->labels[i] = strdup(cJSON_IsString(it) ? it->valuestring : buf);
        if (!p->labels[i]) {
            cJSON_Delete(arr);
            return -1;
        }
    }
    cJSON_Delete(arr);
    return 0;
}

/* Rows of the classifier in a PEFT folder's weights: its label count. */
static int peft_num_labels(const char *dir, char *err, size_t errlen) {
    char path[4096];
    if (path_join(path, sizeof path, dir, PEFT_WEIGHTS_FILE, err, errlen) != 0) return -1;
    st_file *f = st_open(path, err, errlen);
    if (!f) return -1;
    int n = -1;
    for (size_t i = 0; i < st_count(f); i++) {
        const char *name = st_name(f, i);
        size_t len = strlen(name);
        static const char *const suffixes[] = {"classifier.weight", "classifier.out_proj.weight"};
        for (size_t k = 0; k < 2; k++) {
            size_t sl = strlen(suffixes[k]);
            if (len >= sl && strcmp(name + len - sl, suffixes[k]) == 0 && st_ndim(f, i) == 2)
                n = (int)st_shape(f, i)[0];
        }
    }
    st_close(f);
    if (n < 1) snprintf(err, errlen, "%s: no classifier weights in the PEFT folder", dir);
    return n;
}

static int predictor_load(predictor *p, const char *models, const char *model,
                          const char *adapter, char *err, size_t errlen) {
    char model_dir[4096], cfgpath[4096];
    if (job_model_dir(models, model, model_dir, sizeof model_dir, err, errlen) != 0) return -1;
    p->tok = tokenizer_load_dir(model_dir, err, errlen);
    if (!p->tok) return -1;
    aflo_config c;
    if (hfmodel_read_config(model_dir, &c, err, errlen) != 0) return -1;
    p->max_len = c.max_position_embeddings - (c.roberta_positions ? c.pad_token_id + 1 : 0);
    bool is_dir = path_join(cfgpath, sizeof cfgpath, adapter, PEFT_CONFIG_FILE, err, errlen) == 0 &&
                  file_exists(cfgpath);
    if (is_dir) {
        aflo_adapter_config ac;
        if (adapter_peft_read_config(adapter, &ac, NULL, 0, err, errlen) != 0) return -1;
        p->num_labels = peft_num_labels(adapter, err, errlen);
        if (p->num_labels < 1) return -1;
        aflo_task task = p->num_labels == 1 ? TASK_REGRESSION : TASK_CLASSIFICATION;
        p->m = hfmodel_load(model_dir, &ac, task, p->num_labels, 0, NULL, err, errlen);
        if (!p->m || adapter_import_peft(p->m, adapter, NULL, err, errlen) != 0) return -1;
        /* the names aflorad wrote beside the adapter, as the native file has them */
        char *names = NULL;
        if (adapter_peft_read_labels(adapter, p->num_labels, &names, err, errlen) != 0) return -1;
        int rc = labels_from_json(p, names);
        free(names);
        if (rc != 0) snprintf(err, errlen, "out of memory");
        return rc;
    }
    adapter_native_meta meta;
    if (adapter_native_read_meta(adapter, &meta, err, errlen) != 0) return -1;
    p->num_labels = meta.num_labels;
    p->m = hfmodel_load(model_dir, &meta.ac, meta.task, meta.num_labels, 0, NULL, err, errlen);
    int rc = -1;
    if (p->m && adapter_import_native(p->m, adapter, err, errlen) == 0)
        rc = labels_from_json(p, meta.labels_json);
    adapter_native_meta_free(&meta);
    return rc;
}

predictor *predictor_open(const char *models_dir, const char *model, const char *adapter,
                          char *err, size_t errlen) {
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

cJSON *predictor_run(predictor *p, const char *a, const char *b, char *err, size_t errlen) {
    int32_t ids[PREDICT_MAX_TOKENS], tt[PREDICT_MAX_TOKENS];
    int len, max = p->max_len < PREDICT_MAX_TOKENS ? p->max_len : PREDICT_MAX_TOKENS;
    if (tokenizer_encode(p->tok, a, b, max, ids, tt, &len, err, errlen) != 0) return NULL;
    if (model_reserve(p->m, 1, len, err, errlen) != 0) return NULL;
    aflo_batch batch = {.batch = 1, .seq = len, .input_ids = ids, .token_type_ids = tt};
    if (model_forward(p->m, &batch, NULL, err, errlen) != 0) return NULL;
    const float *logits = model_logits(p->m);
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (model_task(p->m) == TASK_REGRESSION) {
        cJSON_AddNumberToObject(o, "value", logits[0]);
    } else {
        int L = p->num_labels, best = 0;
        double mx = logits[0], sum = 0;
        for (int k = 1; k < L; k++)
            if (logits[k] > logits[best]) best = k;
        mx = logits[best];
        for (int k = 0; k < L; k++) sum += exp(logits[k] - mx);
        cJSON_AddStringToObject(o, "label", p->labels[best]);
        cJSON_AddNumberToObject(o, "label_id", best);
        cJSON *probs = cJSON_AddArrayToObject(o, "probabilities");
        cJSON *lg = cJSON_AddArrayToObject(o, "logits");
        for (int k = 0; k < L; k++) {
            cJSON_AddItemToArray(probs, cJSON_CreateNumber(exp(logits[k] - mx) / sum));
            cJSON_AddItemToArray(lg, cJSON_CreateNumber(logits[k]));
        }
    }
    return o;
}
