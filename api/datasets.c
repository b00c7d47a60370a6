/* datasets.c — POST /datasets (upload), GET /datasets, GET/DELETE
 * /datasets/{id}.
 *
 * An upload is streamed, never held in memory by the server: after the
 * headers (datasets_upload_begin) the parameters are checked, the dataset's
 * id is drawn and an atomic file (atomicfile.h) is opened for
 * data_dir/datasets/<id>.<format>; each body chunk is written to its
 * temporary and fed to SHA-256 as it arrives, and the size limit is enforced
 * on the way (a declared Content-Length over the limit is refused before any
 * byte is read). At the end the temporary is parsed with the same loader
 * training uses (textdata_load), so a file that uploads is one the worker can
 * read; the parser's message names the line of the first bad row. Only then
 * is the file committed (fsync, rename, directory fsync) and recorded in the
 * store. A temporary is removed whatever happens to the request (and, after a
 * crash, at the next start-up).
 *
 * Which columns to check: ?text_field= (and ?text_b_field=, ?label_field=)
 * name them; without, TSV/CSV check the first column and JSONL the first key
 * of the first row whose value is a string — enough to prove every row
 * parses and has it. A job's spec picks its columns later.
 *
 * ?task=causal_lm uploads JSON Lines of causal-LM rows instead, checked by
 * the engine's lmdata_check (one row form per dataset, detected from the
 * rows; chat roles and empty turns; without a model, at most 1 MiB a line
 * and 131,072 ids a row). ?model=NAME checks them with that model's
 * tokenizer (chat rows with its template) and counts the tokens and the
 * rows over its context. The record keeps the task, the form (encoder
 * uploads: "columns") and the token count, which POST /jobs checks against
 * the job's task. */
#include "api_internal.h"
#include "dbpool.h"
#include "handlers.h"
#include "base/json.h"
#include "log.h"
#include "reply.h"
#include "request.h"
#include "base/folder.h"
#include "io/lmdata.h"
#include "io/textdata.h"
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_MAX_BYTES 200
#define FIELD_MAX_BYTES 200
/* JSONL: how much of the file is read to find the first row's keys. */
#define FIRST_ROW_MAX ((size_t)1 << 20)
#define DATASETS_DEFAULT_LIMIT 100

typedef struct {
    char id[STORE_ID_SIZE]; /* drawn when the upload begins */
    textdata_format format;
    textdata_task task;
    bool task_given; /* ?task= named one */
    bool causal_lm;  /* ?task=causal_lm: lmdata rows, not textdata columns */
    char model[256]; /* ?model= (causal_lm): count and check with its tokenizer */
    bool no_header;
    char name[NAME_MAX_BYTES + 1];
    char text_field[FIELD_MAX_BYTES + 1], text_b_field[FIELD_MAX_BYTES + 1];
    char label_field[FIELD_MAX_BYTES + 1];
} upload_params;

/* Printable UTF-8 text without control characters or path separators.
 * Valid UTF-8 because names and fields are echoed in JSON (GET /datasets,
 * error messages), which must be UTF-8. */
static bool text_param_ok(const char *s, size_t max, bool allow_slash) {
    size_t n = strlen(s);
    if (n == 0 || n > max || !json_utf8_valid(s, n)) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || (!allow_slash && (c == '/' || c == '\\'))) return false;
    }
    return true;
}

static textdata_format format_from_content_type(const char *ct) {
    if (!ct) return TEXTDATA_AUTO;
    if (strncasecmp(ct, "text/csv", 8) == 0) return TEXTDATA_CSV;
    if (strncasecmp(ct, "text/tab-separated-values", 25) == 0) return TEXTDATA_TSV;
    if (strncasecmp(ct, "application/x-ndjson", 20) == 0 ||
        strncasecmp(ct, "application/jsonl", 17) == 0 ||
        strncasecmp(ct, "application/x-jsonlines", 23) == 0)
        return TEXTDATA_JSONL;
    return TEXTDATA_AUTO;
}

static int copy_field_param(api_req *r, const char *key, char *dst) {
    const char *v = api_query(r, key);
    if (!v) return 0;
    if (!text_param_ok(v, FIELD_MAX_BYTES, true)) {
        reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", key,
                    "%s must be a column or key name of 1 to %d bytes of UTF-8 without control "
                    "characters",
                    key, FIELD_MAX_BYTES);
        return -1;
    }
    strcpy(dst, v);
    return 0;
}

static int parse_params(api_req *r, upload_params *p) {
    memset(p, 0, sizeof *p);
    const char *name = api_query(r, "name");
    if (name && !text_param_ok(name, NAME_MAX_BYTES, false)) {
        reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "name",
                    "name must be 1 to %d bytes of UTF-8 without '/', '\\' or control "
                    "characters",
                    NAME_MAX_BYTES);
        return -1;
    }
    const char *task = api_query(r, "task");
    if (task) {
        p->task_given = true;
        if (strcmp(task, "classification") == 0)
            p->task = TEXTDATA_CLASSIFICATION;
        else if (strcmp(task, "regression") == 0)
            p->task = TEXTDATA_REGRESSION;
        else if (strcmp(task, "causal_lm") == 0)
            p->causal_lm = true;
        else {
            reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "task",
                        "task must be classification, regression or causal_lm");
            return -1;
        }
    }
    const char *model = api_query(r, "model");
    if (model && !p->causal_lm) {
        reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "model",
                    "model is used with task=causal_lm only (its tokenizer counts the rows' "
                    "tokens)");
        return -1;
    }
    if (model) {
        if (!text_param_ok(model, sizeof p->model - 1, false)) {
            reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "model",
                        "model must be the name of a model (GET /models lists them)");
            return -1;
        }
        strcpy(p->model, model);
    }
    const char *fmt = api_query(r, "format");
    if (fmt) {
        if (strcmp(fmt, "tsv") == 0)
            p->format = TEXTDATA_TSV;
        else if (strcmp(fmt, "csv") == 0)
            p->format = TEXTDATA_CSV;
        else if (strcmp(fmt, "jsonl") == 0 || strcmp(fmt, "json") == 0)
            p->format = TEXTDATA_JSONL;
        else {
            reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "format",
                        "format must be tsv, csv or jsonl, not '%.20s'", fmt);
            return -1;
        }
    }
    if (p->format == TEXTDATA_AUTO && p->causal_lm) p->format = TEXTDATA_JSONL;
    if (p->format == TEXTDATA_AUTO && name) p->format = textdata_format_from_path(name);
    if (p->format == TEXTDATA_AUTO)
        p->format = format_from_content_type(api_header(r, MHD_HTTP_HEADER_CONTENT_TYPE));
    if (p->format == TEXTDATA_AUTO) {
        reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "format",
                    "cannot tell the file format: give ?format=tsv|csv|jsonl, a ?name= ending in "
                    ".tsv, .csv or .jsonl, or a Content-Type of text/tab-separated-values, "
                    "text/csv or application/x-ndjson");
        return -1;
    }
    if (p->causal_lm && p->format != TEXTDATA_JSONL) {
        reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "format",
                    "causal_lm datasets are JSON Lines (format jsonl), not %s",
                    textdata_format_name(p->format));
        return -1;
    }
    snprintf(p->name, sizeof p->name, "%s", name ? name : "upload");
    if (!name) {
        size_t n = strlen(p->name);
        snprintf(p->name + n, sizeof p->name - n, ".%s", textdata_format_name(p->format));
    }
    const char *header = api_query(r, "header");
    if (header) {
        if (strcmp(header, "true") == 0 || strcmp(header, "1") == 0)
            p->no_header = false;
        else if (strcmp(header, "false") == 0 || strcmp(header, "0") == 0)
            p->no_header = true;
        else {
            reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "header",
                        "header must be true or false");
            return -1;
        }
    }
    if (copy_field_param(r, "text_field", p->text_field) != 0 ||
        copy_field_param(r, "text_b_field", p->text_b_field) != 0 ||
        copy_field_param(r, "label_field", p->label_field) != 0)
        return -1;
    return 0;
}

static bool disk_full(int e) { return e == ENOSPC || e == EDQUOT || e == EFBIG; }

static enum MHD_Result reply_write_error(api_req *r, int e) {
    if (disk_full(e))
        return reply_error(r, MHD_HTTP_INSUFFICIENT_STORAGE, "insufficient_storage", NULL,
                           "the server cannot store the upload: %s", strerror(e));
    return reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", NULL,
                       "writing the upload failed: %s", strerror(e));
}

/* ?model=: a model a causal-LM job could train, so its tokenizer can count
 * the rows. 0, or -1 after replying. */
static int check_model_param(api_req *r, const upload_params *p) {
    if (!p->model[0]) return 0;
    api_model_info mi;
    char err[1024];
    if (api_model_lookup(r->srv, p->model, false, &mi, err, sizeof err) != 0) {
        reply_error(r, MHD_HTTP_BAD_REQUEST, "unknown_model", "model", "model: %s", err);
        return -1;
    }
    if (!mi.usable || mi.builtin || !(mi.info.tasks & (1u << TASK_CAUSAL_LM))) {
        char tasks[128];
        modelinfo_tasks_text(&mi.info, tasks, sizeof tasks);
        reply_error(r, MHD_HTTP_BAD_REQUEST, "unusable_model", "model",
                    "model: '%s' cannot train causal_lm (its tasks: %s)", p->model, tasks);
        return -1;
    }
    return 0;
}

enum MHD_Result datasets_upload_begin(api_req *r) {
    const char *ct = api_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct && (strncasecmp(ct, "multipart/form-data", 19) == 0 ||
               strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0))
        return reply_error(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", NULL,
                           "send the file itself as the body (curl --data-binary @file -H "
                           "'Content-Type: text/tab-separated-values'), not as a form (%.40s)",
                           ct);
    upload_params *p = malloc(sizeof *p);
    if (!p) return MHD_NO;
    r->upload_state = p;
    if (parse_params(r, p) != 0 || check_model_param(r, p) != 0) return MHD_YES;
    store_new_id(p->id);
    char path[4096 + 32], err[256];
    snprintf(path, sizeof path, "%s/%s.%s", r->srv->datasets_dir, p->id,
             textdata_format_name(p->format));
    if (atomic_file_open(&r->up.file, path, err, sizeof err) != 0)
        return reply_write_error(r, errno);
    sha256_init(&r->up.sha);
    return MHD_YES;
}

enum MHD_Result datasets_upload_chunk(api_req *r, const char *data, size_t len) {
    api_upload *u = &r->up;
    if (len > r->srv->max_upload - u->bytes)
        return reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", NULL,
                           "the upload is larger than the limit of %zu bytes", r->srv->max_upload);
    u->bytes += len;
    sha256_update(&u->sha, data, len);
    if (atomic_file_write(&u->file, data, len) != 0) return reply_write_error(r, errno);
    return MHD_YES;
}

void datasets_upload_abort(api_req *r) {
    atomic_file_abort(&r->up.file);
    free(r->upload_state);
    r->upload_state = NULL;
}

/* JSONL: the first key of the first non-blank row whose value is a string,
 * or "" when it cannot be found (the loader then reports the bad row). */
static void first_string_key(int fd, char *out, size_t cap) {
    out[0] = '\0';
    char *buf = malloc(FIRST_ROW_MAX + 1);
    if (!buf) return;
    ssize_t n = pread(fd, buf, FIRST_ROW_MAX, 0);
    if (n > 0) {
        buf[n] = '\0';
        char *line = buf;
        while (*line) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = '\0';
            if (strspn(line, " \t\r") != strlen(line)) {
                cJSON *o = cJSON_Parse(line);
                const cJSON *it;
                cJSON_ArrayForEach (it, o) {
                    if (cJSON_IsString(it) && it->string) {
                        snprintf(out, cap, "%s", it->string);
                        break;
                    }
                }
                cJSON_Delete(o);
                break;
            }
            if (!nl) break;
            line = nl + 1;
        }
    }
    free(buf);
}

/* textdata names the file by the path it read; show the user's name instead. */
static void rename_in_message(char *msg, size_t cap, const char *tmp_path, const char *name) {
    size_t tl = strlen(tmp_path), nl = strlen(name), ml = strlen(msg);
    if (strncmp(msg, tmp_path, tl) != 0 || ml - tl + nl >= cap) return;
    memmove(msg + nl, msg + tl, ml - tl + 1);
    memcpy(msg, name, nl);
}

/* A causal-LM upload's rows checked (lmdata_check): without a model for
 * what any model could use, with one tokenised by its tokenizer. 0 with the
 * result, or -1 after replying (400 naming the line and field). */
static int check_causal_rows(api_req *r, const upload_params *p, lmdata_check_result *res) {
    api_server *s = r->srv;
    char err[1024], path[4096];
    size_t len;
    char *text = read_text_file(r->up.file.tmp, s->max_upload, &len, err, sizeof err);
    if (!text) {
        reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", NULL, "reading the upload: %s",
                    err);
        return -1;
    }
    lmdata_check_opts o = {0};
    tokenizer *tok = NULL;
    if (p->model[0]) {
        api_model_info mi;
        if (api_model_lookup(s, p->model, false, &mi, err, sizeof err) != 0) {
            free(text);
            reply_error(r, MHD_HTTP_BAD_REQUEST, "unknown_model", "model", "model: %s", err);
            return -1;
        }
        o.vocab_size = mi.info.vocab_size;
        o.context_length = mi.info.context_length;
        snprintf(path, sizeof path, "%s/%s", s->models_dir, p->model);
        if (mi.info.tokenizer && !(tok = tokenizer_load_dir(path, err, sizeof err))) {
            free(text);
            reply_error(r, MHD_HTTP_BAD_REQUEST, "unusable_model", "model",
                        "model: '%s': its tokenizer cannot be loaded", p->model);
            return -1;
        }
        o.tok = tok;
    }
    int rc = lmdata_check(text, len, p->name, &o, res, err, sizeof err);
    free(text);
    tokenizer_free(tok);
    if (rc == 0 && p->model[0] && !o.tok && res->form != LMDATA_TOKENS) {
        reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_dataset", "model",
                    "%s: %s rows need a tokenizer, and model '%s' has none: only input_ids rows "
                    "can be used",
                    p->name, lmdata_form_name(res->form), p->model);
        return -1;
    }
    if (rc != 0) {
        reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_dataset", NULL, "%s", err);
        return -1;
    }
    return 0;
}

/* With ?model=: the rows longer than its context (training cuts them). */
static bool add_context_report(cJSON *body, const char *model, const lmdata_check_result *lm) {
    cJSON *o = cJSON_AddObjectToObject(body, "model_check");
    return o && cJSON_AddStringToObject(o, "model", model) &&
           api_add_int(o, "longest", lm->longest) &&
           api_add_int(o, "over_context", lm->over_context) &&
           (lm->over_context == 0 ? cJSON_AddNullToObject(o, "first_over_line") != NULL
                                  : api_add_int(o, "first_over_line", lm->first_over_line) != NULL);
}

/* The uploaded file committed and recorded: encoder_rows, the rows of an
 * encoder upload (textdata checked them), or NULL for a causal-LM upload,
 * checked here. Replies 201 with the record. */
static enum MHD_Result create_record(api_req *r, const int *encoder_rows) {
    upload_params *p = r->upload_state;
    api_upload *u = &r->up;
    char err[1024];
    lmdata_check_result lm;
    int rows;
    if (encoder_rows) {
        rows = *encoder_rows;
    } else {
        if (check_causal_rows(r, p, &lm) != 0) return MHD_YES;
        rows = lm.rows;
    }
    store *st = api_store(r);
    if (!st) return MHD_YES;
    store_dataset d = {0};
    d.tokens = STORE_COUNT_NONE;
    if (!encoder_rows) {
        d.task = "causal_lm";
        d.form = (char *)lmdata_form_name(lm.form);
        if (lm.tokens >= 0) d.tokens = lm.tokens;
    } else {
        d.task = !p->task_given                   ? NULL
                 : p->task == TEXTDATA_REGRESSION ? "regression"
                                                  : "classification";
        d.form = "columns";
    }
    memcpy(d.id, p->id, sizeof d.id);
    char final_path[4096 + 32];
    snprintf(final_path, sizeof final_path, "%s", u->file.path);
    if (atomic_file_commit(&u->file, err, sizeof err) != 0) {
        int e = errno;
        unlink(final_path); /* in place when only the directory fsync failed */
        return reply_write_error(r, e);
    }
    d.name = p->name;
    d.format = (char *)textdata_format_name(p->format);
    d.rows = rows;
    d.bytes = (int64_t)u->bytes;
    sha256_final_hex(&u->sha, d.sha256);
    d.path = final_path;
    char id[STORE_ID_SIZE];
    if (store_dataset_create(st, &d, id, err, sizeof err) != 0) {
        unlink(final_path);
        return reply_store_error(r, st, err);
    }
    store_dataset got;
    if (store_dataset_get(st, id, &got, err, sizeof err) != 0) return reply_store_error(r, st, err);
    cJSON *body = api_dataset_json(&got);
    store_dataset_clear(&got);
    if (body && !encoder_rows && p->model[0] && !add_context_report(body, p->model, &lm)) {
        cJSON_Delete(body);
        body = NULL;
    }
    log_info("dataset %s uploaded: %s, %d rows, %llu bytes", id, p->name, rows,
             (unsigned long long)u->bytes);
    char loc[64];
    snprintf(loc, sizeof loc, "/datasets/%s", id);
    return reply_json_at(r, MHD_HTTP_CREATED, body, loc);
}

enum MHD_Result h_datasets_create(api_req *r) {
    api_server *s = r->srv;
    upload_params *p = r->upload_state;
    api_upload *u = &r->up;
    if (p->causal_lm) return create_record(r, NULL);
    textdata_spec spec = {0};
    spec.format = p->format;
    spec.task = p->task;
    spec.no_header = p->no_header;
    spec.max_bytes = s->max_upload;
    spec.rows_only = true; /* the job that uses it declares labels and num_labels */
    char jsonl_key[FIELD_MAX_BYTES + 1];
    if (p->text_field[0]) {
        spec.text_a = TEXTDATA_BY_NAME(p->text_field);
    } else if (p->format == TEXTDATA_JSONL) {
        first_string_key(u->file.fd, jsonl_key, sizeof jsonl_key);
        spec.text_a = TEXTDATA_BY_NAME(jsonl_key[0] ? jsonl_key : "text");
    } else {
        spec.text_a = TEXTDATA_BY_INDEX(0);
    }
    if (p->text_b_field[0]) spec.text_b = TEXTDATA_BY_NAME(p->text_b_field);
    if (p->label_field[0]) spec.label = TEXTDATA_BY_NAME(p->label_field);

    textdata td;
    char err[1024];
    if (textdata_load(u->file.tmp, &spec, &td, err, sizeof err) != 0) {
        rename_in_message(err, sizeof err, u->file.tmp, p->name);
        return reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_dataset", NULL, "%s", err);
    }
    int rows = textdata_count(&td);
    textdata_free(&td);

    return create_record(r, &rows);
}

cJSON *api_dataset_json(const store_dataset *d) {
    cJSON *o = cJSON_CreateObject();
    /* names recorded before they were checked may not be UTF-8 */
    char *name = api_utf8_sanitize(d->name ? d->name : "");
    if (!o || !name || !cJSON_AddStringToObject(o, "id", d->id) ||
        !cJSON_AddStringToObject(o, "name", name) ||
        !cJSON_AddStringToObject(o, "format", d->format ? d->format : "") ||
        !(d->task ? cJSON_AddStringToObject(o, "task", d->task)
                  : cJSON_AddNullToObject(o, "task")) ||
        !(d->form ? cJSON_AddStringToObject(o, "form", d->form)
                  : cJSON_AddNullToObject(o, "form")) ||
        !api_add_int(o, "rows", d->rows) ||
        !(d->tokens >= 0 ? api_add_int(o, "tokens", d->tokens)
                         : cJSON_AddNullToObject(o, "tokens")) ||
        !api_add_int(o, "bytes", d->bytes) || !cJSON_AddStringToObject(o, "sha256", d->sha256) ||
        !api_add_time(o, "created_at", d->created_at)) {
        free(name);
        cJSON_Delete(o);
        return NULL;
    }
    free(name);
    return o;
}

enum MHD_Result h_datasets_list(api_req *r) {
    int64_t limit, offset;
    if (api_query_int(r, "limit", DATASETS_DEFAULT_LIMIT, 1, STORE_LIST_LIMIT_MAX, &limit) != 0 ||
        api_query_int(r, "offset", 0, 0, INT64_MAX, &offset) != 0)
        return MHD_YES;
    store *st = api_store(r);
    if (!st) return MHD_YES;
    store_dataset *ds;
    size_t n;
    char err[512];
    if (store_dataset_list(st, limit, offset, &ds, &n, err, sizeof err) != 0)
        return reply_store_error(r, st, err);
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "datasets");
    bool ok = arr && api_add_int(root, "limit", limit) && api_add_int(root, "offset", offset);
    for (size_t i = 0; ok && i < n; i++) ok = cJSON_AddItemToArray(arr, api_dataset_json(&ds[i]));
    store_dataset_list_free(ds, n);
    if (!ok) {
        cJSON_Delete(root);
        root = NULL;
    }
    return reply_json(r, MHD_HTTP_OK, root);
}

enum MHD_Result h_dataset_get(api_req *r) {
    store *st = api_store(r);
    if (!st) return MHD_YES;
    store_dataset d;
    char err[512];
    if (store_dataset_get(st, r->id, &d, err, sizeof err) != 0)
        return reply_store_error(r, st, err);
    cJSON *o = api_dataset_json(&d);
    store_dataset_clear(&d);
    return reply_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result h_dataset_delete(api_req *r) {
    store *st = api_store(r);
    if (!st) return MHD_YES;
    store_dataset d;
    char err[512];
    if (store_dataset_get(st, r->id, &d, err, sizeof err) != 0)
        return reply_store_error(r, st, err);
    if (store_dataset_delete(st, r->id, err, sizeof err) != 0) {
        store_dataset_clear(&d);
        return reply_store_error(r, st, err);
    }
    /* Only files this server wrote are removed (the record could name any
     * path if it came from elsewhere). */
    size_t dl = strlen(r->srv->datasets_dir);
    if (d.path && strncmp(d.path, r->srv->datasets_dir, dl) == 0 && d.path[dl] == '/' &&
        !strchr(d.path + dl + 1, '/') && unlink(d.path) != 0 && errno != ENOENT)
        log_warn("dataset %s deleted but its file stays: %s: %s", r->id, d.path, strerror(errno));
    store_dataset_clear(&d);
    return reply_empty(r, MHD_HTTP_NO_CONTENT);
}
