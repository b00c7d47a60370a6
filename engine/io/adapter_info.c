/* adapter_info.c — see adapter_info.h: the inputs' JSON and aflorad.json,
 * and the helpers of adapter_internal.h. */
#include "io/adapter_info.h"

#include "io/adapter_internal.h"
#include "base/errmsg.h"
#include "base/folder.h"
#include "base/json.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------- inputs */

/* aflorad.json is a few lines; anything much bigger is not one. */
#define MAX_INPUTS_FILE_BYTES ((size_t)1 << 20)

char *adapter_inputs_json(const adapter_inputs *in) {
    if (!in || in->n_fields < 1 || in->n_fields > 2) return NULL;
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return NULL;
    fputs("{\"text_fields\": [", f);
    bool oom = false;
    for (int i = 0; i < in->n_fields && !oom; i++) {
        const adapter_text_field *t = &in->fields[i];
        if (i) fputs(", ", f);
        if (t->by_index) {
            fprintf(f, "%d", t->index);
            continue;
        }
        size_t len = strnlen(t->name, sizeof t->name), cap = 6 * len + 3;
        char *q = malloc(cap);
        if (!q) {
            oom = true;
            break;
        }
        json_quote(q, cap, t->name, len);
        fputs(q, f);
        free(q);
    }
    fprintf(f, "], \"has_header\": %s", in->has_header ? "true" : "false");
    if (in->format != TEXTDATA_AUTO)
        fprintf(f, ", \"format\": \"%s\"", textdata_format_name(in->format));
    fputc('}', f);
    int bad = ferror(f);
    if (fclose(f) || bad || oom) {
        free(buf);
        return NULL;
    }
    return buf;
}

static int inputs_from_value(const json_value *v, const char *where, adapter_inputs *out, char *err,
                             size_t errlen) {
    memset(out, 0, sizeof *out);
    if (json_type_of(v) != JSON_OBJECT)
        return set_err(err, errlen, "%s: inputs must be a JSON object", where);
    for (size_t i = 0; i < json_len(v); i++) {
        const char *k = json_key_at(v, i, NULL);
        if (strcmp(k, "text_fields") && strcmp(k, "has_header") && strcmp(k, "format"))
            return set_err(err, errlen, "%s: inputs: unknown key \"%.64s\"", where, k);
    }
    const json_value *fields = json_get(v, "text_fields");
    size_t n = json_len(fields);
    if (json_type_of(fields) != JSON_ARRAY || n < 1 || n > 2)
        return set_err(err, errlen, "%s: inputs.text_fields must be a list of 1 or 2 columns",
                       where);
    for (size_t i = 0; i < n; i++) {
        const json_value *c = json_at(fields, i);
        adapter_text_field *t = &out->fields[i];
        size_t len;
        const char *name = json_string(c, &len);
        if (json_is_int(c) && json_int(c) >= 0 && json_int(c) <= INT32_MAX) {
            t->by_index = true;
            t->index = (int)json_int(c);
        } else if (name && len > 0 && len < sizeof t->name && strlen(name) == len) {
            memcpy(t->name, name, len + 1);
        } else {
            return set_err(err, errlen,
                           "%s: inputs.text_fields[%zu] must be a column name or a 0-based index",
                           where, i);
        }
    }
    out->n_fields = (int)n;
    const json_value *h = json_get(v, "has_header");
    if (h && json_type_of(h) != JSON_BOOL)
        return set_err(err, errlen, "%s: inputs.has_header must be true or false", where);
    out->has_header = h ? json_bool(h) : true;
    const char *fmt = json_string(json_get(v, "format"), NULL);
    if (json_get(v, "format")) {
        static const textdata_format known[] = {TEXTDATA_TSV, TEXTDATA_CSV, TEXTDATA_JSONL};
        bool found = false;
        for (size_t i = 0; fmt && i < sizeof known / sizeof *known; i++)
            if (strcmp(fmt, textdata_format_name(known[i])) == 0) {
                out->format = known[i];
                found = true;
            }
        if (!found)
            return set_err(err, errlen, "%s: inputs.format must be tsv, csv or jsonl", where);
    }
    return 0;
}

int adapter_inputs_parse(const char *json, size_t len, const char *where, adapter_inputs *out,
                         char *err, size_t errlen) {
    char jerr[160];
    json_value *v = json_parse(json, len, JSON_DEFAULT_MAX_DEPTH, jerr, sizeof jerr);
    if (!v) {
        memset(out, 0, sizeof *out);
        return set_err(err, errlen, "%s: inputs: %s", where, jerr);
    }
    int rc = inputs_from_value(v, where, out, err, errlen);
    json_free(v);
    if (rc) memset(out, 0, sizeof *out);
    return rc;
}

char *adapter_inputs_file_text(const adapter_inputs *in) {
    char *inner = adapter_inputs_json(in);
    if (!inner) return NULL;
    size_t cap = strlen(inner) + 32;
    char *text = malloc(cap);
    if (text) snprintf(text, cap, "{\"inputs\": %s}\n", inner);
    free(inner);
    return text;
}

int adapter_read_inputs_file(const char *dir, adapter_inputs *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    char path[4096 + 64];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, ADAPTER_INPUTS_FILE) >= sizeof path)
        return set_err(err, errlen, "%s: path too long", dir);
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) return 0;
    json_value *root = read_json_file(path, MAX_INPUTS_FILE_BYTES, err, errlen);
    if (!root) return -1;
    int rc = 0;
    if (json_type_of(root) != JSON_OBJECT)
        rc = set_err(err, errlen, "%s: not a JSON object", path);
    else if (json_get(root, "inputs"))
        rc = inputs_from_value(json_get(root, "inputs"), path, out, err, errlen);
    json_free(root);
    if (rc) memset(out, 0, sizeof *out);
    return rc;
}

bool adapter_has_inputs(const adapter_export_info *info) {
    return info && info->inputs && info->inputs->n_fields > 0;
}

/* ---------------------------------------------------------------- shared by the formats */

void adapter_format_float(char *buf, size_t cap, float f) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) return;
    }
}

static void shape_text(char *buf, size_t cap, const st_file *f, size_t i) {
    buf[0] = '\0';
    appendf(buf, cap, "[");
    for (size_t k = 0; k < st_ndim(f, i); k++)
        appendf(buf, cap, "%s%lld", k ? ", " : "", (long long)st_shape(f, i)[k]);
    appendf(buf, cap, "]");
}

static void param_shape_text(char *buf, size_t cap, const aflo_param *p) {
    buf[0] = '\0';
    if (p->ndim == 2)
        snprintf(buf, cap, "[%d, %d]", p->shape[0], p->shape[1]);
    else
        snprintf(buf, cap, "[%d]", p->shape[0]);
}

bool adapter_check_tensor(problem_list *pr, const st_file *f, size_t i, const aflo_param *p) {
    st_dtype t = st_dtype_of(f, i);
    if (t != ST_F32 && t != ST_F16 && t != ST_BF16) {
        problem_add(pr, "%s has dtype %s (F32, F16 or BF16 needed)", st_name(f, i),
                    st_dtype_name(t));
        return false;
    }
    if (!st_shape_equals(f, i, p->ndim, p->shape)) {
        char got[48], want[48];
        shape_text(got, sizeof got, f, i);
        param_shape_text(want, sizeof want, p);
        problem_add(pr, "%s has shape %s, expected %s", st_name(f, i), got, want);
        return false;
    }
    return true;
}

int adapter_check_label_names(const aflo_model *m, const adapter_export_info *info, char *err,
                              size_t errlen) {
    for (int i = 0; info && info->labels && i < model_num_labels(m); i++)
        if (!info->labels[i] || !json_utf8_valid(info->labels[i], strlen(info->labels[i])))
            return set_err(err, errlen, "label %d: missing or not valid UTF-8", i);
    return 0;
}

bool adapter_valid_utf8(const char *s) { return !s || json_utf8_valid(s, strlen(s)); }
