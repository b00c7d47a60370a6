/* hfmodel_export.c — see hfmodel_export.h. */
#include "io/hfmodel_export.h"

#include "io/adapter_internal.h"
#include "base/atomicfile.h"
#include "model/config.h"
#include "base/errmsg.h"
#include "base/folder.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    st_writer *w;
    const char *config_json, *inputs_text, *tokenizer_dir;
    bool tokenizer_optional; /* a causal LM trained on token ids may have none */
} hf_model_files;

static int fill_hf_model(const char *staging, void *ctx, char *err, size_t errlen) {
    hf_model_files *hf = ctx;
    char path[4096 + 64], src[4096 + 64];
    snprintf(path, sizeof path, "%s/%s", staging, HF_WEIGHTS_FILE);
    if (st_writer_write(hf->w, path, err, errlen)) return -1;
    int copied = 0;
    for (int i = 0; i < tokenizer_file_count; i++) {
        struct stat st;
        if ((size_t)snprintf(src, sizeof src, "%s/%s", hf->tokenizer_dir,
                             tokenizer_file_names[i]) >= sizeof src)
            return set_err(err, errlen, "%s: path too long", hf->tokenizer_dir);
        if (stat(src, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        snprintf(path, sizeof path, "%s/%s", staging, tokenizer_file_names[i]);
        if (copy_file_atomic(src, path, err, errlen)) return -1;
        copied++;
    }
    if (copied == 0 && !hf->tokenizer_optional)
        return set_err(err, errlen, "%s: no tokenizer files to copy into the model folder",
                       hf->tokenizer_dir);
    if (hf->inputs_text) {
        snprintf(path, sizeof path, "%s/%s", staging, ADAPTER_INPUTS_FILE);
        if (write_file_atomic(path, hf->inputs_text, strlen(hf->inputs_text), err, errlen))
            return -1;
    }
    snprintf(path, sizeof path, "%s/%s", staging, HF_CONFIG_FILE);
    return write_file_atomic(path, hf->config_json, strlen(hf->config_json), err, errlen);
}

int adapter_export_hf_model(aflo_model *m, const char *dir, const char *tokenizer_dir,
                            const adapter_export_info *info, char *err, size_t errlen) {
    if (model_adapter_config(m)->method != METHOD_FULL)
        return set_err(err, errlen,
                       "%s: only a fully fine-tuned model (method full) is exported as a whole "
                       "model folder; an adapter goes to a PEFT folder",
                       dir);
    if (adapter_check_label_names(m, info, err, errlen)) return -1;
    config_task task = {.regression = model_task(m) == TASK_REGRESSION,
                        .num_labels = model_num_labels(m),
                        .labels = info ? info->labels : NULL};
    int rc = -1;
    char *config = config_to_json_task(model_config(m), &task);
    char *inputs = adapter_has_inputs(info) ? adapter_inputs_file_text(info->inputs) : NULL;
    st_writer *w = st_writer_new();
    if (!config || !w || (adapter_has_inputs(info) && !inputs)) {
        set_err(err, errlen, "%s: out of memory", dir);
        goto out;
    }
    char key[MAX_KEY];
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        int64_t shape[2] = {p->shape[0], p->shape[1]};
        /* transformers' name in the task class's checkpoint: the encoder
         * under "bert."/"roberta.", the head as the family's variant names
         * it (RoBERTa: classifier.dense, classifier.out_proj); a decoder
         * under "model." with lm_head beside it (none when tied) */
        if (model_hf_name(m, p, key, sizeof key)) {
            set_err(err, errlen, "%s: tensor name %s is too long", dir, p->name);
            goto out;
        }
        if (st_writer_add(w, key, shape, (size_t)p->ndim, p->data, err, errlen)) goto out;
    }
    if (st_writer_set_metadata(w, "format", "pt", err, errlen)) goto out;
    const char *names[16];
    size_t n = 0;
    names[n++] = HF_WEIGHTS_FILE;
    names[n++] = HF_CONFIG_FILE;
    names[n++] = ADAPTER_INPUTS_FILE;
    for (int i = 0; i < tokenizer_file_count && n < sizeof names / sizeof *names; i++)
        names[n++] = tokenizer_file_names[i];
    hf_model_files hf = {w, config, inputs, tokenizer_dir, model_task(m) == TASK_CAUSAL_LM};
    rc = write_folder_atomic(dir, names, n, fill_hf_model, &hf, err, errlen);
out:
    st_writer_free(w);
    free(config);
    free(inputs);
    return rc;
}
