/* adapter_native.c — see adapter_native.h: the native file's tensors and
 * metadata written, and read back with every field checked against the
 * model. */
#include "io/adapter_native.h"

#include "io/adapter_internal.h"
#include "base/errmsg.h"
#include "model/config.h"
#include "model/family.h"
#include "base/json.h"
#include "base/problems.h"
#include "io/safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const task_names[TASK_COUNT] = {[TASK_CLASSIFICATION] = "classification",
                                                   [TASK_REGRESSION] = "regression",
                                                   [TASK_CAUSAL_LM] = "causal_lm"};

/* Tensors a native file of this model holds. */
static bool native_holds(const aflo_model *m, const aflo_param *p) {
    return p->group != PGROUP_BASE || model_adapter_config(m)->method == METHOD_FULL;
}

/* target_modules as the metadata stores it: the family's names of the set bits. */
static char *targets_json(const aflo_family *fam, unsigned targets) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return NULL;
    fputc('[', f);
    bool first = true;
    for (int mod = 0; mod < fam->n_modules; mod++) {
        if (!(targets & (1u << mod))) continue;
        fprintf(f, "%s\"%s\"", first ? "" : ",", fam->modules[mod].target);
        first = false;
    }
    fputc(']', f);
    if (fclose(f)) {
        free(buf);
        return NULL;
    }
    return buf;
}

static char *labels_json(const aflo_model *m, const char *const *labels) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return NULL;
    fputc('[', f);
    for (int i = 0; labels && i < model_num_labels(m); i++) {
        size_t len = strlen(labels[i]);
        char *q = malloc(6 * len + 3);
        if (!q) {
            fclose(f);
            free(buf);
            return NULL;
        }
        json_quote(q, 6 * len + 3, labels[i], len);
        fprintf(f, "%s%s", i ? "," : "", q);
        free(q);
    }
    fputc(']', f);
    if (fclose(f)) {
        free(buf);
        return NULL;
    }
    return buf;
}

static char *frozen_json(aflo_model *m, const adapter_export_info *info) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return NULL;
    fputc('{', f);
    bool first = true;
    for (int i = 0; i < model_param_count(m); i++) {
        const aflo_param *p = model_param(m, i);
        if (p->role != PROLE_A && p->role != PROLE_B) continue;
        long step = info && info->frozen_step ? info->frozen_step(info->frozen_ctx, p) : -1;
        if (step >= 0)
            fprintf(f, "%s\"%s\":%ld", first ? "" : ",", p->name, step);
        else
            fprintf(f, "%s\"%s\":null", first ? "" : ",", p->name);
        first = false;
    }
    fputc('}', f);
    if (fclose(f)) {
        free(buf);
        return NULL;
    }
    return buf;
}

int adapter_export_native(aflo_model *m, const char *path, const adapter_export_info *info,
                          char *err, size_t errlen) {
    const aflo_adapter_config *ac = model_adapter_config(m);
    const aflo_config *c = model_config(m);
    const char *base_model = info && info->base_model ? info->base_model : "";
    const char *metrics = info && info->metrics_json ? info->metrics_json : "null";
    if (!adapter_valid_utf8(base_model)) return set_err(err, errlen, "base_model: not valid UTF-8");
    if (adapter_check_label_names(m, info, err, errlen)) return -1;
    char jerr[160];
    json_value *check =
        json_parse(metrics, strlen(metrics), JSON_DEFAULT_MAX_DEPTH, jerr, sizeof jerr);
    if (!check) return set_err(err, errlen, "metrics: not valid JSON: %s", jerr);
    json_free(check);

    int rc = -1;
    char *targets = targets_json(model_family(m), ac->targets);
    char *labels = labels_json(m, info ? info->labels : NULL);
    char *frozen = frozen_json(m, info);
    char *inputs = adapter_has_inputs(info) ? adapter_inputs_json(info->inputs) : NULL;
    st_writer *w = st_writer_new();
    if (!targets || !labels || !frozen || !w || (adapter_has_inputs(info) && !inputs)) {
        set_err(err, errlen, "%s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (!native_holds(m, p)) continue;
        int64_t shape[2] = {p->shape[0], p->shape[1]};
        if (st_writer_add(w, p->name, shape, (size_t)p->ndim, p->data, err, errlen)) goto out;
    }
    char rank[16], alpha[32], nl[16], vocab[16], hidden[16], inter[16], layers[16], heads[16],
        kv_heads[16];
    snprintf(rank, sizeof rank, "%d", ac->method == METHOD_FULL ? 0 : ac->rank);
    adapter_format_float(alpha, sizeof alpha, ac->alpha);
    snprintf(nl, sizeof nl, "%d", model_num_labels(m));
    snprintf(vocab, sizeof vocab, "%d", c->vocab_size);
    snprintf(hidden, sizeof hidden, "%d", c->hidden_size);
    snprintf(inter, sizeof inter, "%d", c->intermediate_size);
    snprintf(layers, sizeof layers, "%d", c->num_hidden_layers);
    snprintf(heads, sizeof heads, "%d", c->num_attention_heads);
    snprintf(kv_heads, sizeof kv_heads, "%d", config_kv_heads(c));
    const struct {
        const char *key, *value;
    } meta[] = {
        {"format", ADAPTER_NATIVE_FORMAT},
        {"version", ADAPTER_NATIVE_VERSION},
        {"method", method_names[ac->method]},
        {"rank", rank},
        {"alpha", alpha},
        {"target_modules", targets},
        {"trainable_projections", projections_names[ac->projections]},
        {"base_model", base_model},
        {"model_type", c->model_type},
        {"vocab_size", vocab},
        {"hidden_size", hidden},
        {"intermediate_size", inter},
        {"num_hidden_layers", layers},
        {"num_attention_heads", heads},
        {"num_key_value_heads", kv_heads},
        {"task", task_names[model_task(m)]},
        {"num_labels", nl},
        {"labels", labels},
        {"metrics", metrics},
        {"frozen_steps", frozen},
    };
    for (size_t i = 0; i < sizeof meta / sizeof *meta; i++)
        if (st_writer_set_metadata(w, meta[i].key, meta[i].value, err, errlen)) goto out;
    /* optional: files from before it was recorded lack it */
    if (inputs && st_writer_set_metadata(w, "inputs", inputs, err, errlen)) goto out;
    rc = st_writer_write(w, path, err, errlen);
out:
    st_writer_free(w);
    free(targets);
    free(labels);
    free(frozen);
    free(inputs);
    return rc;
}

/* ---- reading the metadata */

static int meta_get(const st_file *f, const char *path, const char *key, const char **out,
                    char *err, size_t errlen) {
    *out = st_metadata(f, key);
    if (!*out) return set_err(err, errlen, "%s: metadata \"%s\" missing", path, key);
    return 0;
}

static int meta_int(const st_file *f, const char *path, const char *key, int lo, int hi, int *out,
                    char *err, size_t errlen) {
    const char *s;
    if (meta_get(f, path, key, &s, err, errlen)) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return set_err(err, errlen, "%s: metadata \"%s\" = \"%s\" is not an integer in [%d, %d]",
                       path, key, s, lo, hi);
    *out = (int)v;
    return 0;
}

static int meta_enum(const st_file *f, const char *path, const char *key, const char *const *names,
                     int count, int *out, char *err, size_t errlen) {
    const char *s;
    if (meta_get(f, path, key, &s, err, errlen)) return -1;
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], s) == 0) {
            *out = i;
            return 0;
        }
    return set_err(err, errlen, "%s: metadata \"%s\" = \"%s\" is not a known value", path, key, s);
}

static int meta_json(const st_file *f, const char *path, const char *key, json_type want,
                     char **out, char *err, size_t errlen) {
    const char *s;
    if (meta_get(f, path, key, &s, err, errlen)) return -1;
    char jerr[160];
    json_value *v = json_parse(s, strlen(s), JSON_DEFAULT_MAX_DEPTH, jerr, sizeof jerr);
    if (!v) return set_err(err, errlen, "%s: metadata \"%s\": %s", path, key, jerr);
    json_type t = json_type_of(v);
    json_free(v);
    if (want != JSON_MISSING && t != want)
        return set_err(err, errlen, "%s: metadata \"%s\" must be a JSON %s", path, key,
                       json_type_name(want));
    *out = strdup(s);
    if (!*out) return set_err(err, errlen, "%s: out of memory", path);
    return 0;
}

static int parse_targets(const aflo_family *fam, const char *text, unsigned *targets) {
    json_value *v = json_parse(text, strlen(text), JSON_DEFAULT_MAX_DEPTH, NULL, 0);
    int rc = json_type_of(v) == JSON_ARRAY ? 0 : -1;
    *targets = 0;
    for (size_t i = 0; rc == 0 && i < json_len(v); i++) {
        int found = family_module_index(fam, json_string(json_at(v, i), NULL));
        if (found < 0)
            rc = -1;
        else
            *targets |= 1u << found;
    }
    json_free(v);
    return rc;
}

static int parse_meta(const st_file *f, const char *path, adapter_native_meta *meta, char *err,
                      size_t errlen) {
    const char *s = st_metadata(f, "format");
    if (!s || strcmp(s, ADAPTER_NATIVE_FORMAT) != 0)
        return set_err(
            err, errlen, "%s: not an aflorad adapter (metadata format is %s%s%s, expected \"%s\")",
            path, s ? "\"" : "", s ? s : "missing", s ? "\"" : "", ADAPTER_NATIVE_FORMAT);
    s = st_metadata(f, "version");
    if (!s || strcmp(s, ADAPTER_NATIVE_VERSION) != 0)
        return set_err(err, errlen,
                       "%s: adapter format version %s is not supported (this build reads %s)", path,
                       s ? s : "(missing)", ADAPTER_NATIVE_VERSION);
    int method = 0, proj = 0, task = 0;
    if (meta_enum(f, path, "method", method_names, METHOD_COUNT, &method, err, errlen) ||
        meta_enum(f, path, "trainable_projections", projections_names, PROJ_COUNT, &proj, err,
                  errlen) ||
        meta_enum(f, path, "task", task_names, TASK_COUNT, &task, err, errlen))
        return -1;
    meta->ac.method = (aflo_method)method;
    meta->ac.projections = (aflo_projections)proj;
    meta->task = (aflo_task)task;
    if (meta_int(f, path, "rank", 0, 65536, &meta->ac.rank, err, errlen) ||
        /* a causal LM's labels are its vocabulary (LLaMA-3: 128256) */
        meta_int(f, path, "num_labels", 1, 1 << 30, &meta->num_labels, err, errlen) ||
        meta_int(f, path, "vocab_size", 1, 1 << 30, &meta->vocab_size, err, errlen) ||
        meta_int(f, path, "hidden_size", 1, 1 << 30, &meta->hidden_size, err, errlen) ||
        meta_int(f, path, "intermediate_size", 1, 1 << 30, &meta->intermediate_size, err, errlen) ||
        meta_int(f, path, "num_hidden_layers", 1, 1 << 20, &meta->num_hidden_layers, err, errlen) ||
        meta_int(f, path, "num_attention_heads", 1, 1 << 20, &meta->num_attention_heads, err,
                 errlen))
        return -1;
    /* optional: files from before grouped-query models lack it (their
     * models had one KV head per query head) */
    meta->num_key_value_heads = meta->num_attention_heads;
    if (st_metadata(f, "num_key_value_heads") &&
        meta_int(f, path, "num_key_value_heads", 1, 1 << 20, &meta->num_key_value_heads, err,
                 errlen))
        return -1;
    if (meta_get(f, path, "alpha", &s, err, errlen)) return -1;
    char *end;
    meta->ac.alpha = strtof(s, &end);
    if (end == s || *end || !isfinite(meta->ac.alpha))
        return set_err(err, errlen, "%s: metadata \"alpha\" = \"%s\" is not a number", path, s);
    /* the model type first: its family's module table names the targets */
    if (meta_get(f, path, "model_type", &s, err, errlen)) return -1;
    if (strlen(s) >= sizeof meta->model_type)
        return set_err(err, errlen, "%s: metadata \"model_type\" is too long", path);
    strcpy(meta->model_type, s);
    char ferr[512];
    const aflo_family *fam = family_for_config(s, NULL, NULL, ferr, sizeof ferr);
    if (!fam) return set_err(err, errlen, "%s: metadata \"model_type\": %s", path, ferr);
    if (meta_get(f, path, "target_modules", &s, err, errlen)) return -1;
    if (parse_targets(fam, s, &meta->ac.targets))
        return set_err(err, errlen,
                       "%s: metadata \"target_modules\" = %s is not a list of known modules", path,
                       s);
    if (meta_get(f, path, "base_model", &s, err, errlen)) return -1;
    if (!(meta->base_model = strdup(s))) return set_err(err, errlen, "%s: out of memory", path);
    if (meta_json(f, path, "labels", JSON_ARRAY, &meta->labels_json, err, errlen) ||
        meta_json(f, path, "metrics", JSON_MISSING, &meta->metrics_json, err, errlen) ||
        meta_json(f, path, "frozen_steps", JSON_OBJECT, &meta->frozen_json, err, errlen))
        return -1;
    s = st_metadata(f, "inputs");
    if (s && adapter_inputs_parse(s, strlen(s), path, &meta->inputs, err, errlen)) return -1;
    return 0;
}

void adapter_native_meta_free(adapter_native_meta *meta) {
    if (!meta) return;
    free(meta->base_model);
    free(meta->labels_json);
    free(meta->metrics_json);
    free(meta->frozen_json);
    memset(meta, 0, sizeof *meta);
}

int adapter_native_read_meta(const char *path, adapter_native_meta *meta, char *err,
                             size_t errlen) {
    memset(meta, 0, sizeof *meta);
    st_file *f = st_open(path, err, errlen);
    if (!f) return -1;
    int rc = parse_meta(f, path, meta, err, errlen);
    st_close(f);
    if (rc) adapter_native_meta_free(meta);
    return rc;
}

/* The job the file was made for must be the model's. */
static int check_meta_matches(const adapter_native_meta *meta, aflo_model *m, const char *path,
                              char *err, size_t errlen) {
    const aflo_adapter_config *ac = model_adapter_config(m);
    const aflo_config *c = model_config(m);
    if (meta->ac.method != ac->method)
        return set_err(err, errlen, "%s: adapter method is \"%s\" but the model uses \"%s\"", path,
                       method_names[meta->ac.method], method_names[ac->method]);
    if (ac->method != METHOD_FULL) {
        if (meta->ac.rank != ac->rank)
            return set_err(err, errlen, "%s: adapter rank is %d but the model has rank %d", path,
                           meta->ac.rank, ac->rank);
        /* target bits index the family's table: another family's file fails
         * on its model type below */
        bool same_family = family_for_model_type(meta->model_type, NULL) == model_family(m);
        if (same_family && meta->ac.targets != ac->targets) {
            char *want = targets_json(model_family(m), ac->targets);
            char *got = targets_json(model_family(m), meta->ac.targets);
            set_err(err, errlen, "%s: adapter target_modules %s differ from the model's %s", path,
                    got ? got : "?", want ? want : "?");
            free(want);
            free(got);
            return -1;
        }
    }
    if (ac->method == METHOD_LORA && meta->ac.alpha != ac->alpha)
        return set_err(err, errlen, "%s: adapter alpha is %g but the model has alpha %g", path,
                       (double)meta->ac.alpha, (double)ac->alpha);
    if (meta->task != model_task(m) || meta->num_labels != model_num_labels(m))
        return set_err(err, errlen,
                       "%s: adapter is for %s with %d label%s; the model does %s with %d", path,
                       task_names[meta->task], meta->num_labels, meta->num_labels == 1 ? "" : "s",
                       task_names[model_task(m)], model_num_labels(m));
    if (strcmp(meta->model_type, c->model_type) != 0 || meta->hidden_size != c->hidden_size ||
        meta->intermediate_size != c->intermediate_size ||
        meta->num_hidden_layers != c->num_hidden_layers ||
        meta->num_attention_heads != c->num_attention_heads ||
        meta->num_key_value_heads != config_kv_heads(c) || meta->vocab_size != c->vocab_size)
        return set_err(err, errlen,
                       "%s: adapter was trained on a %s model (%d layers, hidden %d, intermediate "
                       "%d, %d heads, %d KV heads, vocab %d); this model is %s (%d, %d, %d, %d, "
                       "%d, %d)",
                       path, meta->model_type, meta->num_hidden_layers, meta->hidden_size,
                       meta->intermediate_size, meta->num_attention_heads,
                       meta->num_key_value_heads, meta->vocab_size, c->model_type,
                       c->num_hidden_layers, c->hidden_size, c->intermediate_size,
                       c->num_attention_heads, config_kv_heads(c), c->vocab_size);
    return 0;
}

int adapter_import_native(aflo_model *m, const char *path, char *err, size_t errlen) {
    st_file *f = st_open(path, err, errlen);
    if (!f) return -1;
    adapter_native_meta meta;
    memset(&meta, 0, sizeof meta);
    int rc = -1, n = model_param_count(m);
    long *src = NULL;
    if (parse_meta(f, path, &meta, err, errlen) || check_meta_matches(&meta, m, path, err, errlen))
        goto out;
    src = malloc((size_t)n * sizeof *src);
    if (!src) {
        set_err(err, errlen, "%s: out of memory", path);
        goto out;
    }
    problem_list pr = {.count = 0};
    for (int i = 0; i < n; i++) {
        aflo_param *p = model_param(m, i);
        src[i] = -1;
        if (!native_holds(m, p)) continue;
        long idx = st_find(f, p->name);
        if (idx < 0)
            problem_add(&pr, "%s missing", p->name);
        else if (adapter_check_tensor(&pr, f, (size_t)idx, p))
            src[i] = idx;
    }
    for (size_t i = 0; i < st_count(f); i++) {
        aflo_param *p = model_find_param(m, st_name(f, i));
        if (!p || !native_holds(m, p) || strcmp(p->name, st_name(f, i)) != 0)
            problem_add(&pr, "unexpected tensor %s", st_name(f, i));
    }
    if (pr.count) {
        problems_error(&pr, path, "problem", "problems", err, errlen);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (src[i] < 0) continue;
        aflo_param *p = model_param(m, i);
        if (st_read_f32_at(f, (size_t)src[i], p->data, p->size, err, errlen)) goto out;
    }
    rc = 0;
out:
    free(src);
    adapter_native_meta_free(&meta);
    st_close(f);
    return rc;
}
