/* llama2c_convert.c — a llama2.c checkpoint as a Hugging Face LLaMA folder
 * (see llama2c.h): the checkpoint is loaded as llama2c_load reads it (wq
 * and wk already permuted to rotate-half order), then every base tensor is
 * written under its transformers name (model.embed_tokens.weight,
 * model.layers.N.self_attn.q_proj.weight, ..., lm_head.weight unless tied)
 * into model.safetensors, and config.json is the decoder config of
 * config_to_json (LlamaForCausalLM, num_key_value_heads, rms_norm_eps 1e-5,
 * rope_theta 10000, tie_word_embeddings, max_position_embeddings = seq_len).
 * The folder is written through write_folder_atomic: a failure leaves no
 * partial folder. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/atomicfile.h"
#include "base/errmsg.h"
#include "base/folder.h"
#include "io/adapter_info.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "model/config.h"

typedef struct {
    st_writer *w;
    const char *config_json;
} convert_files;

static int fill(const char *staging, void *ctx, char *err, size_t errlen) {
    convert_files *cf = ctx;
    char path[4096 + 64];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", staging, HF_WEIGHTS_FILE) >= sizeof path)
        return set_err(err, errlen, "%s: path too long", staging);
    if (st_writer_write(cf->w, path, err, errlen)) return -1;
    snprintf(path, sizeof path, "%s/%s", staging, HF_CONFIG_FILE);
    return write_file_atomic(path, cf->config_json, strlen(cf->config_json), err, errlen);
}

int llama2c_convert(const char *path, const char *outdir, char *err, size_t errlen) {
    aflo_adapter_config full = {.method = METHOD_FULL};
    aflo_model *m = llama2c_load(path, &full, 0, err, errlen);
    if (!m) return -1;
    convert_files cf = {.w = st_writer_new(), .config_json = config_to_json(model_config(m))};
    int rc = -1;
    if (!cf.w || !cf.config_json) {
        set_err(err, errlen, "out of memory converting %s", path);
        goto done;
    }
    rc = st_writer_set_metadata(cf.w, "format", "pt", err, errlen);
    for (int i = 0; i < model_param_count(m) && rc == 0; i++) {
        aflo_param *p = model_param(m, i);
        if (p->group != PGROUP_BASE) continue;
        char name[160];
        if (model_hf_name(m, p, name, sizeof name)) {
            rc = set_err(err, errlen, "tensor name %s too long", p->name);
            break;
        }
        int64_t shape[2] = {p->shape[0], p->shape[1]};
        rc = st_writer_add(cf.w, name, shape, (size_t)p->ndim, p->data, err, errlen);
    }
    static const char *const files[] = {HF_WEIGHTS_FILE, HF_CONFIG_FILE};
    if (rc == 0) rc = write_folder_atomic(outdir, files, 2, fill, &cf, err, errlen);
done:
    free((char *)cf.config_json);
    st_writer_free(cf.w);
    model_free(m);
    return rc;
}
