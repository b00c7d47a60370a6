/* hfmodel.c — load a Hugging Face model folder into an aflo_model.
 *
 * Flow of hfmodel_load():
 *   1. config.json -> aflo_config and its model family (family.h: by
 *      model_type, else architectures[0]; none is "unsupported architecture")
 *      -> model_create_ex() (fresh adapter and head, base weights left zero);
 *   2. open the weights: model.safetensors, or every shard named by
 *      model.safetensors.index.json (each shard opened once), into one list of
 *      (name in the file, shard, tensor index) entries;
 *   3. map each file name to the engine's name with the family's naming
 *      (strip its model prefixes "bert."/"roberta.", skip what it ignores,
 *      its head renames such as RoBERTa's classifier.dense -> pooler.dense;
 *      LayerNorm gamma/beta -> weight/bias) and claim the model tensor it
 *      fills;
 *   4. check everything before touching the model: every base tensor present,
 *      every claimed tensor of the right shape and a float dtype, each of the
 *      family's head layers complete or absent. All problems go into one
 *      bounded error;
 *   5. copy (st_read_f32_at converts F16/BF16), fill in the report. A
 *      frozen F16/BF16 weight the model may keep 16-bit (model_may_keep_half:
 *      LLaMA-family projections and embeddings under an adapter method) is
 *      not copied: the model points at its bytes in the mapping, and the
 *      open files are handed to the model (model_attach), which unmaps them
 *      when freed. So a model folder must not be rewritten in place while a
 *      job uses it (replace it by renaming a new folder over it: the old
 *      mapping stays valid).
 * Nothing is copied until the whole folder has passed step 4, and the model
 * is freed on any error, so a caller never sees a half-loaded model.
 * Nothing here names a family's tensors: the family descriptor does. */
#include "io/hfmodel.h"

#include "base/errmsg.h"
#include "model/family.h"
#include "base/folder.h"
#include "base/json.h"
#include "base/problems.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONFIG_FILE "config.json"
#define WEIGHTS_FILE "model.safetensors"
#define INDEX_FILE "model.safetensors.index.json"
/* A config.json is a few KB; an index lists one line per tensor (about
 * 100 KB for a 7B model). Anything far bigger is not what we think it is. */
#define MAX_CONFIG_BYTES ((size_t)1 << 20)
#define MAX_INDEX_BYTES ((size_t)64 << 20)
/* Unknown tensor names quoted as examples in the report. */
#define MAX_UNKNOWN_EXAMPLES 3
/* Longest tensor name the loader maps (the engine's own names are < 96). */
#define MAX_NAME 192

static const char *const pickle_files[] = {"pytorch_model.bin", "pytorch_model.bin.index.json"};

static int join_path(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static bool is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* config.json's "architectures"[0] into out ("" when absent); the text
 * parsed once already, so only absence is expected. */
static void first_architecture(const char *text, size_t len, char *out, size_t cap) {
    json_value *root = json_parse(text, len, JSON_DEFAULT_MAX_DEPTH, NULL, 0);
    const char *arch = json_string(json_at(json_get(root, "architectures"), 0), NULL);
    snprintf(out, cap, "%s", arch ? arch : "");
    json_free(root);
}

/* dir/config.json into c, and the first architecture it names. */
static int read_config(const char *dir, aflo_config *c, char *arch, size_t arch_cap, char *err,
                       size_t errlen) {
    char path[4096];
    if (join_path(path, sizeof path, dir, CONFIG_FILE))
        return set_err(err, errlen, "%s: path too long", dir);
    size_t len;
    char *text = read_text_file(path, MAX_CONFIG_BYTES, &len, err, errlen);
    if (!text) return -1;
    char cerr[768]; /* an unsupported architecture's message lists what is */
    int rc = config_from_json(c, text, len, cerr, sizeof cerr);
    if (rc == 0) first_architecture(text, len, arch, arch_cap);
    free(text);
    if (rc) return set_err(err, errlen, "%s: %s", dir, cerr);
    return 0;
}

/* config_from_json refuses a config no family reads (family_for_config), so
 * a config read here has a family. */
int hfmodel_read_config(const char *dir, aflo_config *c, char *err, size_t errlen) {
    char arch[64];
    return read_config(dir, c, arch, sizeof arch, err, errlen);
}

/* dir/config.json parsed (path gets its path), or NULL with a message. */
static json_value *parse_config_file(const char *dir, char *path, size_t cap, char *err,
                                     size_t errlen) {
    if (join_path(path, cap, dir, CONFIG_FILE)) {
        set_err(err, errlen, "%s: path too long", dir);
        return NULL;
    }
    return read_json_file(path, MAX_CONFIG_BYTES, err, errlen);
}

int hfmodel_name_or_path(const char *dir, char *out, size_t cap, char *err, size_t errlen) {
    char path[4096];
    json_value *root = parse_config_file(dir, path, sizeof path, err, errlen);
    if (!root) return -1;
    int rc = 0;
    size_t n;
    const char *s = json_string(json_get(root, "_name_or_path"), &n);
    if (s && n > 0 && strlen(s) == n) {
        if (n >= cap)
            rc = set_err(err, errlen, "%s: _name_or_path is longer than %zu bytes", path, cap - 1);
        else {
            memcpy(out, s, n + 1);
            rc = 1;
        }
    }
    json_free(root);
    return rc;
}

/* Largest label count read from id2label: TEXTDATA_MAX_LABELS's bound and
 * far beyond any classification head in use. */
#define MAX_HEAD_LABELS 100000

void hf_head_info_free(hf_head_info *h) {
    if (!h) return;
    for (int i = 0; h->labels && i < h->num_labels; i++) free(h->labels[i]);
    free(h->labels);
    memset(h, 0, sizeof *h);
}

static int read_head(const json_value *root, const char *path, hf_head_info *h, char *err,
                     size_t errlen) {
    const json_value *map = json_get(root, "id2label");
    const json_value *nl = json_get(root, "num_labels");
    const char *pt = json_string(json_get(root, "problem_type"), NULL);
    if (map && json_type_of(map) != JSON_OBJECT)
        return set_err(err, errlen, "%s: id2label is %s, not an object", path,
                       json_type_name(json_type_of(map)));
    size_t n = map ? json_len(map) : 0;
    if (!map && json_is_int(nl) && json_int(nl) > 0 && json_int(nl) <= MAX_HEAD_LABELS)
        n = (size_t)json_int(nl);
    if (n == 0) return 0;
    if (n > MAX_HEAD_LABELS)
        return set_err(err, errlen, "%s: id2label has %zu labels, more than %d", path, n,
                       MAX_HEAD_LABELS);
    h->labels = calloc(n, sizeof *h->labels);
    if (!h->labels) return set_err(err, errlen, "%s: out of memory", path);
    h->num_labels = (int)n;
    for (size_t i = 0; map && i < n; i++) {
        size_t klen, nlen;
        const char *key = json_key_at(map, i, &klen);
        char *end;
        errno = 0;
        long id = strtol(key, &end, 10);
        const char *name = json_string(json_at(map, i), &nlen);
        if (errno || end == key || (size_t)(end - key) != klen || id < 0 || (size_t)id >= n ||
            !name || strlen(name) != nlen)
            return set_err(err, errlen,
                           "%s: id2label entry \"%.40s\" must map a label id below %zu to a name",
                           path, key, n);
        if (h->labels[id])
            return set_err(err, errlen, "%s: id2label names label %ld twice", path, id);
        if (!(h->labels[id] = strdup(name))) return set_err(err, errlen, "%s: out of memory", path);
    }
    for (size_t i = 0; i < n; i++)
        if (!h->labels[i]) {
            char name[24];
            snprintf(name, sizeof name, "LABEL_%zu", i);
            if (!(h->labels[i] = strdup(name)))
                return set_err(err, errlen, "%s: out of memory", path);
        }
    h->regression = pt ? strcmp(pt, "regression") == 0 : n == 1;
    return 0;
}

int hfmodel_read_head(const char *dir, hf_head_info *h, char *err, size_t errlen) {
    memset(h, 0, sizeof *h);
    char path[4096];
    json_value *root = parse_config_file(dir, path, sizeof path, err, errlen);
    if (!root) return -1;
    int rc = read_head(root, path, h, err, errlen);
    json_free(root);
    if (rc) hf_head_info_free(h);
    return rc;
}

/* ---------------------------------------------------------------- weight files */

typedef struct {
    const char *name; /* as in the file; points into the open st_file */
    int file;
    size_t index;
} weight_entry;

typedef struct {
    st_file **files;
    int nfiles;
    weight_entry *entries;
    size_t nentries;
} weight_set;

static void weights_close(weight_set *w) {
    for (int i = 0; i < w->nfiles; i++) st_close(w->files[i]);
    free(w->files);
    free(w->entries);
    memset(w, 0, sizeof *w);
}

static void weights_release(void *ctx) {
    weight_set *w = ctx;
    weights_close(w);
    free(w);
}

static int no_weights_error(const char *dir, char *err, size_t errlen) {
    char path[4096];
    for (size_t i = 0; i < sizeof pickle_files / sizeof *pickle_files; i++) {
        if (join_path(path, sizeof path, dir, pickle_files[i]) == 0 && is_regular_file(path))
            return set_err(
                err, errlen,
                "%s: has %s but no %s; aflorad reads only safetensors (a pickle file can "
                "run code when loaded). Convert it once with: python -c \"from "
                "transformers import AutoModel; AutoModel.from_pretrained('%s')."
                "save_pretrained('%s', safe_serialization=True)\" (use "
                "AutoModelForSequenceClassification to keep a fine-tuned head)",
                dir, pickle_files[i], WEIGHTS_FILE, dir, dir);
    }
    return set_err(err, errlen, "%s: no %s or %s found", dir, WEIGHTS_FILE, INDEX_FILE);
}

static int open_single(weight_set *w, const char *path, char *err, size_t errlen) {
    w->files = calloc(1, sizeof *w->files);
    if (!w->files) return set_err(err, errlen, "%s: out of memory", path);
    w->files[0] = st_open(path, err, errlen);
    if (!w->files[0]) return -1;
    w->nfiles = 1;
    size_t n = st_count(w->files[0]);
    w->entries = calloc(n ? n : 1, sizeof *w->entries);
    if (!w->entries) return set_err(err, errlen, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) w->entries[i] = (weight_entry){st_name(w->files[0], i), 0, i};
    w->nentries = n;
    return 0;
}

/* A shard named in the index must be a plain file name inside the folder. */
static bool plain_file_name(const char *s, size_t len) {
    return len > 0 && strlen(s) == len && !strchr(s, '/') && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0;
}

static int open_sharded(weight_set *w, const char *dir, const char *index_path, char *err,
                        size_t errlen) {
    json_value *root = read_json_file(index_path, MAX_INDEX_BYTES, err, errlen);
    if (!root) return -1;
    int rc = -1;
    const char **shard_names = NULL;
    const json_value *map = json_get(root, "weight_map");
    if (json_type_of(map) != JSON_OBJECT) {
        set_err(err, errlen, "%s: \"weight_map\" must be an object", index_path);
        goto out;
    }
    size_t n = json_len(map);
    shard_names = calloc(n ? n : 1, sizeof *shard_names);
    w->files = calloc(n ? n : 1, sizeof *w->files);
    w->entries = calloc(n ? n : 1, sizeof *w->entries);
    if (!shard_names || !w->files || !w->entries) {
        set_err(err, errlen, "%s: out of memory", index_path);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *tensor = json_key_at(map, i, NULL);
        size_t slen;
        const char *shard = json_string(json_at(map, i), &slen);
        if (!shard || !plain_file_name(shard, slen)) {
            set_err(err, errlen, "%s: weight_map entry \"%s\" must name a file in the folder",
                    index_path, tensor);
            goto out;
        }
        int f = 0;
        while (f < w->nfiles && strcmp(shard_names[f], shard) != 0) f++;
        if (f == w->nfiles) { /* first mention: open the shard, once */
            char path[4096];
            if (join_path(path, sizeof path, dir, shard)) {
                set_err(err, errlen, "%s: path too long", dir);
                goto out;
            }
            w->files[f] = st_open(path, err, errlen);
            if (!w->files[f]) goto out;
            shard_names[f] = shard;
            w->nfiles++;
        }
        long idx = st_find(w->files[f], tensor);
        if (idx < 0) {
            set_err(err, errlen, "%s: says %s is in %s, but that shard has no such tensor",
                    index_path, tensor, shard);
            goto out;
        }
        w->entries[w->nentries++] =
            (weight_entry){st_name(w->files[f], (size_t)idx), f, (size_t)idx};
    }
    rc = 0;
out:
    free(shard_names);
    json_free(root);
    return rc;
}

static int weights_open(weight_set *w, const char *dir, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    char single[4096], index[4096];
    if (join_path(single, sizeof single, dir, WEIGHTS_FILE) ||
        join_path(index, sizeof index, dir, INDEX_FILE))
        return set_err(err, errlen, "%s: path too long", dir);
    int rc;
    if (is_regular_file(single))
        rc = open_single(w, single, err, errlen);
    else if (is_regular_file(index))
        rc = open_sharded(w, dir, index, err, errlen);
    else
        return no_weights_error(dir, err, errlen);
    if (rc) weights_close(w);
    return rc;
}

/* ---------------------------------------------------------------- names */

typedef enum { NAME_MODEL, NAME_IGNORED } name_kind;

static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The family's head rename whose checkpoint prefix starts in, NULL if none
 * (from any of its variants: a checkpoint may use a sibling's head layout). */
static const aflo_name_map *head_rename(const aflo_family *fam, const char *in) {
    for (int v = 0; v < fam->n_variants; v++)
        for (const aflo_name_map *h = fam->variants[v].head_names; h && h->engine; h++)
            if (strcmp(h->engine, h->hf) != 0 && starts_with(in, h->hf)) return h;
    return NULL;
}

/* Map a checkpoint name to the engine's with the family's naming. *priority
 * is 1 for names from a renamed classification head (RoBERTa's
 * classifier.dense / classifier.out_proj), which win over a plain
 * pooler.dense (the head was trained with the classifier it feeds), 0
 * otherwise. */
static name_kind canonical_name(const aflo_family *fam, const char *in, char *out, size_t cap,
                                int *priority) {
    *priority = 0;
    for (int v = 0; v < fam->n_variants; v++)
        if (starts_with(in, fam->variants[v].hf_prefix)) {
            in += strlen(fam->variants[v].hf_prefix);
            break;
        }
    /* hf_ignored: "x." a prefix, "*x" a suffix, else the whole name */
    for (const char *const *ig = fam->hf_ignored; ig && *ig; ig++)
        if ((*ig)[0] == '*'       ? ends_with(in, *ig + 1)
            : ends_with(*ig, ".") ? starts_with(in, *ig)
                                  : strcmp(in, *ig) == 0)
            return NAME_IGNORED;

    int n;
    const aflo_name_map *h = head_rename(fam, in);
    if (h) {
        n = snprintf(out, cap, "%s%s", h->engine, in + strlen(h->hf));
        *priority = 1;
    } else {
        n = snprintf(out, cap, "%s", in);
    }
    if (n < 0 || (size_t)n >= cap) {
        out[0] = '\0'; /* too long to be one of ours: reported as unknown */
        return NAME_MODEL;
    }
    /* Checkpoints converted from TensorFlow name LayerNorm parameters
     * gamma/beta; transformers renames them on load, and so do we. */
    size_t len = (size_t)n;
    if (ends_with(out, "LayerNorm.gamma"))
        snprintf(out + len - strlen("gamma"), cap - (len - strlen("gamma")), "weight");
    else if (ends_with(out, "LayerNorm.beta"))
        snprintf(out + len - strlen("beta"), cap - (len - strlen("beta")), "bias");
    return NAME_MODEL;
}

/* ---------------------------------------------------------------- shapes */

static void shape_text(char *buf, size_t cap, const int64_t *dims, size_t ndim) {
    buf[0] = '\0';
    appendf(buf, cap, "[");
    for (size_t i = 0; i < ndim; i++)
        appendf(buf, cap, "%s%lld", i ? ", " : "", (long long)dims[i]);
    appendf(buf, cap, "]");
}

static void param_shape_text(char *buf, size_t cap, const aflo_param *p) {
    int64_t dims[2] = {p->shape[0], p->shape[1]};
    shape_text(buf, cap, dims, (size_t)p->ndim);
}

static bool float_dtype(st_dtype t) { return t == ST_F32 || t == ST_F16 || t == ST_BF16; }

/* ---------------------------------------------------------------- load */

typedef struct {
    long entry; /* index into weight_set.entries, -1 when not in the file */
    int priority;
} param_source;

typedef struct {
    aflo_model *m;
    const weight_set *w;
    param_source *src;
    problem_list problems;
    hf_load_report *rep;
    char unknown_examples[256];
    char superseded[256];
} load_ctx;

static void claim_tensors(load_ctx *cx) {
    char name[MAX_NAME];
    for (size_t e = 0; e < cx->w->nentries; e++) {
        const char *file_name = cx->w->entries[e].name;
        int priority;
        if (canonical_name(model_family(cx->m), file_name, name, sizeof name, &priority) ==
            NAME_IGNORED) {
            cx->rep->tensors_ignored++;
            continue;
        }
        aflo_param *p = name[0] ? model_find_param(cx->m, name) : NULL;
        /* Only base and head tensors come from a base model; a name that
         * happens to match an adapter tensor is not one of its weights. */
        if (!p || p->group == PGROUP_ADAPTER) {
            if (cx->rep->tensors_unknown++ < MAX_UNKNOWN_EXAMPLES)
                appendf(cx->unknown_examples, sizeof cx->unknown_examples, "%s%s",
                        cx->rep->tensors_unknown > 1 ? ", " : "", file_name);
            continue;
        }
        param_source *s = &cx->src[p - model_param(cx->m, 0)];
        if (s->entry >= 0) {
            const char *prev = cx->w->entries[s->entry].name;
            if (s->priority == priority) {
                problem_add(&cx->problems, "%s appears twice (as %s and %s)", p->name, prev,
                            file_name);
                continue;
            }
            if (s->priority > priority) { /* the renamed head already supplies it */
                appendf(cx->superseded, sizeof cx->superseded, "%s%s",
                        cx->superseded[0] ? ", " : "", file_name);
                cx->rep->tensors_ignored++;
                continue;
            }
            appendf(cx->superseded, sizeof cx->superseded, "%s%s", cx->superseded[0] ? ", " : "",
                    prev);
            cx->rep->tensors_ignored++;
        }
        s->entry = (long)e;
        s->priority = priority;
    }
}

/* Shape and dtype of one claimed tensor; false (and a problem) when wrong. */
static bool check_claim(load_ctx *cx, const aflo_param *p) {
    const param_source *s = &cx->src[p - model_param(cx->m, 0)];
    const weight_entry *e = &cx->w->entries[s->entry];
    const st_file *f = cx->w->files[e->file];
    if (!float_dtype(st_dtype_of(f, e->index))) {
        problem_add(&cx->problems, "%s has dtype %s (F32, F16 or BF16 needed)", e->name,
                    st_dtype_name(st_dtype_of(f, e->index)));
        return false;
    }
    if (!st_shape_equals(f, e->index, p->ndim, p->shape)) {
        char got[64], want[64];
        shape_text(got, sizeof got, st_shape(f, e->index), st_ndim(f, e->index));
        param_shape_text(want, sizeof want, p);
        problem_add(&cx->problems, "%s has shape %s, expected %s", e->name, got, want);
        return false;
    }
    return true;
}

static void note(hf_load_report *rep, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(hf_load_report *rep, const char *fmt, ...) {
    if (rep->info[0]) appendf(rep->info, sizeof rep->info, "; ");
    va_list ap;
    va_start(ap, fmt);
    vappendf(rep->info, sizeof rep->info, fmt, ap);
    va_end(ap);
}

/* Decide about a two-tensor head part (weight + bias): use it, keep the
 * fresh one (absent), or a problem (incomplete, wrong width). Returns true
 * when the file's pair is to be used. rows_may_differ: the classifier's
 * label count may differ from the task's without being an error. */
static bool check_head_pair(load_ctx *cx, aflo_param *w, aflo_param *b, bool rows_may_differ,
                            int *file_rows) {
    param_source *sw = &cx->src[w - model_param(cx->m, 0)];
    param_source *sb = &cx->src[b - model_param(cx->m, 0)];
    *file_rows = 0;
    if (sw->entry < 0 && sb->entry < 0) return false;
    if (sw->entry < 0 || sb->entry < 0) {
        problem_add(&cx->problems, "%s present without %s",
                    cx->w->entries[sw->entry >= 0 ? sw->entry : sb->entry].name,
                    sw->entry >= 0 ? b->name : w->name);
        return false;
    }
    const weight_entry *ew = &cx->w->entries[sw->entry];
    const weight_entry *eb = &cx->w->entries[sb->entry];
    const st_file *fw = cx->w->files[ew->file], *fb = cx->w->files[eb->file];
    if (rows_may_differ && st_ndim(fw, ew->index) == 2 && st_ndim(fb, eb->index) == 1 &&
        st_shape(fw, ew->index)[1] == w->shape[1] &&
        st_shape(fb, eb->index)[0] == st_shape(fw, ew->index)[0] &&
        st_shape(fw, ew->index)[0] != w->shape[0]) {
        *file_rows = (int)st_shape(fw, ew->index)[0];
        sw->entry = sb->entry = -1; /* a different task's head: keep the fresh one */
        return false;
    }
    bool ok = check_claim(cx, w);
    ok = check_claim(cx, b) && ok;
    if (ok) *file_rows = w->shape[0];
    return ok;
}

static int load_into(aflo_model *m, const weight_set *w, hf_load_report *rep, const char *dir,
                     char *err, size_t errlen) {
    int n = model_param_count(m);
    load_ctx cx = {.m = m, .w = w, .rep = rep};
    cx.src = malloc((size_t)n * sizeof *cx.src);
    if (!cx.src) return set_err(err, errlen, "%s: out of memory", dir);
    for (int i = 0; i < n; i++) cx.src[i] = (param_source){-1, 0};
    claim_tensors(&cx);

    for (int i = 0; i < n; i++) {
        aflo_param *p = model_param(m, i);
        if (p->group != PGROUP_BASE) continue;
        if (cx.src[i].entry < 0)
            problem_add(&cx.problems, "%s missing", p->name);
        else
            check_claim(&cx, p);
    }
    /* The family's head layers, input to output: the hidden ones (BERT's
     * pooler) and the output layer, whose label count may be another task's. */
    const char *const *head = model_family(m)->head_layers;
    const char *output = NULL;
    char fresh_hidden[128] = "";
    int rows = 0;
    for (int k = 0; head && head[k]; k++) {
        char wname[96], bname[96];
        snprintf(wname, sizeof wname, "%s.weight", head[k]);
        snprintf(bname, sizeof bname, "%s.bias", head[k]);
        aflo_param *hw = model_find_param(m, wname), *hb = model_find_param(m, bname);
        if (!hw || !hb) continue;
        bool last = head[k + 1] == NULL;
        bool used = check_head_pair(&cx, hw, hb, last, &rows);
        if (last) {
            output = head[k];
            rep->classifier_pretrained = used;
        } else if (!used) {
            appendf(fresh_hidden, sizeof fresh_hidden, "%s%s", fresh_hidden[0] ? ", " : "",
                    head[k]);
        }
    }
    rep->pooler_pretrained = fresh_hidden[0] == '\0';
    rep->file_num_labels = rows;

    if (cx.problems.count) {
        problems_error(&cx.problems, dir, "tensor missing or unusable",
                       "tensors missing or unusable", err, errlen);
        free(cx.src);
        return -1;
    }

    for (int i = 0; i < n; i++) {
        if (cx.src[i].entry < 0) continue;
        aflo_param *p = model_param(m, i);
        const weight_entry *e = &w->entries[cx.src[i].entry];
        char rerr[256];
        st_dtype dt = st_dtype_of(w->files[e->file], e->index);
        if ((dt == ST_BF16 || dt == ST_F16) && model_may_keep_half(m, p)) {
            size_t nbytes;
            const void *bits = st_data(w->files[e->file], e->index, &nbytes);
            assert(nbytes == p->size * sizeof(uint16_t)); /* shape checked above */
            if (model_keep_half(m, p, bits, dt == ST_BF16 ? HALF_BF16 : HALF_F16, rerr,
                                sizeof rerr)) {
                set_err(err, errlen, "%s: %s", dir, rerr);
                free(cx.src);
                return -1;
            }
            rep->tensors_loaded++;
            rep->tensors_half++;
            continue;
        }
        if (st_read_f32_at(w->files[e->file], e->index, p->data, p->size, rerr, sizeof rerr)) {
            set_err(err, errlen, "%s: %s: %s", dir, e->name, rerr);
            free(cx.src);
            return -1;
        }
        rep->tensors_loaded++;
    }
    free(cx.src);

    if (!rep->pooler_pretrained)
        note(rep, "no %s in the checkpoint: it starts fresh and trains with the head",
             fresh_hidden);
    if (output && !rep->classifier_pretrained) {
        if (rep->file_num_labels)
            note(rep,
                 "the checkpoint's %s has %d outputs but the task needs %d: a fresh %s is "
                 "used",
                 output, rep->file_num_labels, model_num_labels(m), output);
        else
            note(rep, "no %s in the checkpoint: a fresh one is used", output);
    }
    if (cx.superseded[0])
        note(rep, "superseded by the checkpoint's classification head: %s", cx.superseded);
    if (rep->tensors_unknown)
        note(rep, "skipped %d tensor%s this engine does not use (%s%s)", rep->tensors_unknown,
             rep->tensors_unknown == 1 ? "" : "s", cx.unknown_examples,
             rep->tensors_unknown > MAX_UNKNOWN_EXAMPLES ? ", ..." : "");
    return 0;
}

aflo_model *hfmodel_load(const char *dir, const aflo_adapter_config *ac, aflo_task task,
                         int num_labels, uint64_t seed, hf_load_report *report, char *err,
                         size_t errlen) {
    hf_load_report local;
    hf_load_report *rep = report ? report : &local;
    memset(rep, 0, sizeof *rep);
    aflo_config c;
    if (hfmodel_read_config(dir, &c, err, errlen)) return NULL;
    /* a causal LM's "labels" are its vocabulary; its family has no head
     * layers, so the head rules of load_into do not apply */
    if (task == TASK_CAUSAL_LM) num_labels = c.vocab_size;
    weight_set w;
    if (weights_open(&w, dir, err, errlen)) return NULL;
    rep->shards = w.nfiles;
    char merr[256];
    /* every base tensor is loaded below (or the load fails): no random init */
    aflo_model *m = model_create_ex(&c, ac, task, num_labels, seed, false, merr, sizeof merr);
    if (!m) {
        set_err(err, errlen, "%s: %s", dir, merr);
        weights_close(&w);
        return NULL;
    }
    if (load_into(m, &w, rep, dir, err, errlen)) {
        model_free(m);
        weights_close(&w);
        return NULL;
    }
    if (rep->tensors_half == 0) {
        weights_close(&w);
        return m;
    }
    /* 16-bit tensors point into the mappings: the model keeps them open */
    char cerr[256];
    weight_set *kept = malloc(sizeof *kept);
    if (!kept || model_compact_base(m, cerr, sizeof cerr) ||
        model_attach(m, weights_release, kept, cerr, sizeof cerr)) {
        set_err(err, errlen, "%s: %s", dir, kept ? cerr : "out of memory");
        free(kept);
        model_free(m);
        weights_close(&w);
        return NULL;
    }
    *kept = w;
    return m;
}

/* ---------------------------------------------------------------- probe */

int hfmodel_probe(const char *dir, aflo_config *c, bool *config_read, char *err, size_t errlen) {
    *config_read = false;
    if (hfmodel_read_config(dir, c, err, errlen)) return -1;
    *config_read = true;
    /* a causal LM may come without one: it trains on token ids */
    int tr = tokenizer_probe_dir(dir, err, errlen);
    const aflo_family *fam = family_for_model_type(c->model_type, NULL);
    if (tr == TOKENIZER_NONE && fam && (fam->tasks & (1u << TASK_CAUSAL_LM))) tr = 0;
    if (tr) return -1;
    /* Opening the weights maps the files and validates every header; no
     * tensor data is read. */
    weight_set w;
    if (weights_open(&w, dir, err, errlen)) return -1;
    weights_close(&w);
    return 0;
}

/* ---------------------------------------------------------------- info */

int hfmodel_info(const char *dir, hf_model_info *info, char *err, size_t errlen) {
    memset(info, 0, sizeof *info);
    aflo_config c;
    if (read_config(dir, &c, info->architecture, sizeof info->architecture, err, errlen)) return -1;
    const aflo_family *fam = family_for_model_type(c.model_type, NULL);
    assert(fam); /* config_from_json read it */
    snprintf(info->model_type, sizeof info->model_type, "%s", c.model_type);
    info->num_hidden_layers = c.num_hidden_layers;
    info->hidden_size = c.hidden_size;
    info->intermediate_size = c.intermediate_size;
    info->num_attention_heads = c.num_attention_heads;
    info->vocab_size = c.vocab_size;
    info->max_position_embeddings = c.max_position_embeddings;
    /* the rows of the head's output layer: a sequence-classification head */
    char output[96] = "";
    const char *head = family_head_output(fam);
    if (head) snprintf(output, sizeof output, "%s.weight", head);

    weight_set w;
    if (weights_open(&w, dir, err, errlen)) return -1;
    info->shards = w.nfiles;
    int seen = -1; /* dtype of the float tensors so far; -2 once they differ */
    char name[MAX_NAME];
    for (size_t e = 0; e < w.nentries; e++) {
        const st_file *f = w.files[w.entries[e].file];
        size_t i = w.entries[e].index;
        st_dtype t = st_dtype_of(f, i);
        /* Parameters are floating point; integer tensors are buffers
         * (position_ids), which transformers does not count either. */
        if (!(float_dtype(t) || t == ST_F64)) continue;
        info->num_params += st_numel(f, i);
        info->weight_bytes += st_numel(f, i) * st_dtype_size(t);
        seen = seen == -1 ? (int)t : (seen == (int)t ? seen : -2);
        int priority;
        if (canonical_name(fam, w.entries[e].name, name, sizeof name, &priority) == NAME_MODEL &&
            output[0] && strcmp(name, output) == 0 && st_ndim(f, i) == 2)
            info->head_num_labels = (int)st_shape(f, i)[0];
    }
    snprintf(info->dtype, sizeof info->dtype, "%s",
             seen == -2   ? "mixed"
             : seen == -1 ? "none"
                          : st_dtype_name((st_dtype)seen));
    weights_close(&w);
    return 0;
}
