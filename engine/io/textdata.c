/* textdata.c — TSV / CSV / JSONL data files into raw text rows.
 *
 * Flow: the file is read whole into one buffer with a spare byte at the end
 * (so the last field can be NUL-terminated in place), then parsed in place:
 *   - TSV and CSV are split into records one at a time; the field spans of the
 *     current record sit in one reusable scratch array. CSV quoted fields are
 *     unescaped by copying each field's content over its own opening quote,
 *     which never overtakes the read position. A kept text is NUL-terminated by
 *     overwriting the separator or line end after it, which has been consumed.
 *   - JSONL lines go through the strict JSON parser one at a time; the decoded
 *     texts are copied over the start of their own line (a decoded string is
 *     shorter than its quoted literal, and two distinct literals fit in the line).
 * Rows hold offsets, not pointers, so that at the end the kept texts can be
 * slid to the front of the buffer (in address order, so every move goes left)
 * and the buffer shrunk: a TSV with many unused columns costs only what is kept.
 *
 * Labels are resolved while parsing: a classification label is looked up in a
 * small pool of names (linear: there are few labels, and TEXTDATA_MAX_LABELS
 * bounds it); a regression label is converted to float on the spot.
 *
 * Any error stops the load, frees everything and leaves *out empty: a caller
 * never trains on half a file. Messages are "<name>:<line>: <what>", the line
 * being the physical line where the offending row starts. */
#include "io/textdata.h"

#include "base/errmsg.h"
#include "base/json.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define NO_TEXT SIZE_MAX
/* First read buffer when the size is not known up front (pipes). */
#define READ_CHUNK ((size_t)64 << 10)
/* How much of a value from the file an error message quotes. */
#define SNIPPET_MAX 48
/* Longest label text parsed as a regression target ("-1.2345678901234567e-308"
 * is 24 characters; anything much longer is not a number we want). */
#define TARGET_TEXT_MAX 64
/* Room for lists (header columns, declared labels) quoted in error messages. */
#define LIST_MSG_MAX 240

typedef struct {
    size_t off, len;
} span;

typedef struct {
    const textdata_spec *spec;
    textdata_format format;
    const char *name;
    char *err;
    size_t errlen;
    textdata *d;
    size_t len;                /* bytes of input in d->buf (d->buf[len] is spare) */
    int limit;                 /* rows to read at most */
    int rows_cap;              /* rows allocated: min(limit, lines + 1) */
    size_t pool_len, pool_cap; /* label pool */
    int labels_cap;
    size_t *label_line; /* labels_cap: line each label was first seen on (0: declared) */
    span *fields;       /* current TSV/CSV record */
    size_t nfields, fields_cap;
    int col_a, col_b, col_label;
} loader;

/* ---- messages ------------------------------------------------------------ */

static int fail(loader *L, size_t line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(loader *L, size_t line, const char *fmt, ...) {
    if (!L->err || L->errlen == 0) return -1;
    if (line)
        set_err(L->err, L->errlen, "%s:%zu: ", L->name, line);
    else
        set_err(L->err, L->errlen, "%s: ", L->name);
    size_t n = strlen(L->err); /* < errlen: the append below is at worst empty */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->err + n, L->errlen - n, fmt, ap); /* appendf, from a va_list */
    va_end(ap);
    return -1;
}

/* A value from the file, fit for a message: cut at a character boundary, and
 * not quoted at all when it is not UTF-8 (the message may end up in JSON). */
static const char *snippet(const char *s, size_t len, char out[SNIPPET_MAX + 4]) {
    if (!json_utf8_valid(s, len)) return "<invalid UTF-8>";
    size_t n = len;
    if (n > SNIPPET_MAX) {
        n = SNIPPET_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    memcpy(out, s, n);
    if (n < len) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

/* Append item (UTF-8) to a comma-separated list in buf (LIST_MSG_MAX bytes),
 * ending it with "..." at a character boundary once it is full. */
static void list_append(char *buf, const char *item) {
    const size_t stop = LIST_MSG_MAX - 4; /* room for "..." and the NUL */
    size_t used = strlen(buf);
    if (used >= stop) return; /* already elided */
    int n = snprintf(buf + used, LIST_MSG_MAX - used, "%s%s", used ? ", " : "", item);
    if (n >= 0 && used + (size_t)n < stop) return;
    size_t q = stop;
    while (q > 0 && ((unsigned char)buf[q] & 0xC0) == 0x80) q--;
    memcpy(buf + q, "...", 4);
}

/* "column 'sentence'", "column 3" or "field 'text'" for messages. */
static const char *field_desc(const loader *L, const textdata_field *f,
                              char out[SNIPPET_MAX + 32]) {
    char sn[SNIPPET_MAX + 4];
    if (f->kind == TEXTDATA_FIELD_INDEX) {
        snprintf(out, SNIPPET_MAX + 32, "column %d", f->index);
    } else {
        snprintf(out, SNIPPET_MAX + 32, "%s '%s'", L->format == TEXTDATA_JSONL ? "field" : "column",
                 snippet(f->name, strlen(f->name), sn));
    }
    return out;
}

/* ---- small helpers --------------------------------------------------------- */

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static bool is_blank(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (!is_space(s[i])) return false;
    return true;
}

static void trim(const char **s, size_t *len) {
    while (*len && is_space(**s)) (*s)++, (*len)--;
    while (*len && is_space((*s)[*len - 1])) (*len)--;
}

/* 1-based line of byte offset pos. Only used on error paths. */
static size_t line_of(const char *buf, size_t pos) {
    size_t line = 1;
    for (size_t i = 0; i < pos; i++) line += buf[i] == '\n';
    return line;
}

/* ---- labels ------------------------------------------------------------------ */

static int label_find(const loader *L, const char *s, size_t len) {
    const textdata *d = L->d;
    for (int k = 0; k < d->num_labels; k++) {
        const char *p = d->label_pool + d->label_off[k];
        if (strncmp(p, s, len) == 0 && p[len] == '\0') return k;
    }
    return -1;
}

/* Copy s[0..len) and a NUL to the label pool; its offset, or SIZE_MAX when
 * out of memory. */
static size_t pool_add(loader *L, const char *s, size_t len) {
    textdata *d = L->d;
    if (L->pool_cap - L->pool_len < len + 1) {
        size_t cap = L->pool_cap ? L->pool_cap : 256;
        while (cap - L->pool_len < len + 1) cap *= 2;
        char *pool = realloc(d->label_pool, cap);
        if (!pool) return SIZE_MAX;
        d->label_pool = pool;
        L->pool_cap = cap;
    }
    size_t off = L->pool_len;
    memcpy(d->label_pool + off, s, len);
    d->label_pool[off + len] = '\0';
    L->pool_len += len + 1;
    return off;
}

/* Append a label name first seen on line (0: declared); returns its id, or
 * -1 when out of memory. */
static int label_add(loader *L, const char *s, size_t len, size_t line) {
    textdata *d = L->d;
    if (d->num_labels == L->labels_cap) {
        int cap = L->labels_cap ? L->labels_cap * 2 : 8;
        size_t *off = realloc(d->label_off, (size_t)cap * sizeof *off);
        if (!off) return -1;
        d->label_off = off;
        size_t *lines = realloc(L->label_line, (size_t)cap * sizeof *lines);
        if (!lines) return -1;
        L->label_line = lines;
        L->labels_cap = cap;
    }
    size_t off = pool_add(L, s, len);
    if (off == SIZE_MAX) return -1;
    d->label_off[d->num_labels] = off;
    L->label_line[d->num_labels] = line;
    return d->num_labels++;
}

/* Provisional class id of label text s[0..len) (already trimmed): its index
 * in first-seen order, which finish_labels turns into the final id; or its
 * final id straight away when the labels were declared. */
static int classify(loader *L, size_t line, const char *s, size_t len, int32_t *id) {
    char sn[SNIPPET_MAX + 4];
    if (!json_utf8_valid(s, len)) return fail(L, line, "invalid UTF-8 in the label");
    int k = label_find(L, s, len);
    if (k < 0 && L->spec->labels) {
        char list[LIST_MSG_MAX] = "";
        for (int j = 0; j < L->d->num_labels; j++) {
            const char *name = L->d->label_pool + L->d->label_off[j];
            char sn2[SNIPPET_MAX + 4];
            list_append(list, snippet(name, strlen(name), sn2));
        }
        return fail(L, line, "label '%s' is not one of %s (%s)", snippet(s, len, sn),
                    L->spec->labels_origin ? L->spec->labels_origin : "the declared labels", list);
    }
    if (k < 0) {
        if (L->d->num_labels >= TEXTDATA_MAX_LABELS)
            return fail(L, line,
                        "more than %d distinct labels (label '%s'); did you mean task regression?",
                        TEXTDATA_MAX_LABELS, snippet(s, len, sn));
        k = label_add(L, s, len, line);
        if (k < 0) return fail(L, line, "out of memory");
    }
    *id = k;
    return 0;
}

/* Regression target from label text s[0..len) (already trimmed). */
static int parse_target(loader *L, size_t line, const char *s, size_t len, float *out) {
    char sn[SNIPPET_MAX + 4];
    char tmp[TARGET_TEXT_MAX];
    if (len >= sizeof tmp) return fail(L, line, "label '%s' is not a number", snippet(s, len, sn));
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (len == 0 || end != tmp + len)
        return fail(L, line, "label '%s' is not a number", snippet(s, len, sn));
    if (!isfinite(v) || fabs(v) > FLT_MAX)
        return fail(L, line, "label '%s' is not a finite float", snippet(s, len, sn));
    *out = (float)v;
    return 0;
}

/* ---- class ids ----------------------------------------------------------------- */

/* A label spelled as a decimal integer the way the number prints ("0", "17",
 * "-3"; not "+1", "01" or "1.0"), so that its text and its id agree. */
static bool integer_label(const char *s, long *v) {
    const char *p = s + (*s == '-');
    if (*p < '0' || *p > '9' || (*p == '0' && (p[1] != '\0' || p != s))) return false;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return false;
    *v = strtol(s, NULL, 10); /* out of range: clamped, which is all we need */
    return true;
}

/* A label that reads as a finite decimal number ("3.8", "-1e-3"), not "inf",
 * "nan" or hexadecimal (which strtod would also take). */
static bool number_label(const char *s, double *v) {
    const char *p = s + (*s == '-' || *s == '+');
    if (!((*p >= '0' && *p <= '9') || *p == '.') || strpbrk(s, "xX")) return false;
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (*end != '\0' || !isfinite(x)) return false;
    *v = x;
    return true;
}

typedef struct {
    const char *name;
    int k;
} named_label;

static int by_name(const void *a, const void *b) {
    return strcmp(((const named_label *)a)->name, ((const named_label *)b)->name);
}

/* Turn the provisional ids (first-seen order) into the final ones, by the
 * rule in textdata.h, and check the label set as a whole unless this is a
 * preview (max_rows) or rows_only. */
static int finish_labels(loader *L) {
    const textdata_spec *spec = L->spec;
    textdata *d = L->d;
    if (spec->task != TEXTDATA_CLASSIFICATION || spec->labels || !d->has_labels) return 0;
    const bool check = !spec->rows_only && spec->max_rows == 0;
    const int n = d->num_labels, declared = spec->num_labels;
    const int id_limit = declared ? declared : TEXTDATA_MAX_LABELS;
    char sn[SNIPPET_MAX + 4], list[LIST_MSG_MAX] = "";
#define NAME(k) (d->label_pool + d->label_off[k])

    /* What the labels look like; the first offender of each kind, by line. */
    bool all_int = true, all_number = true;
    int negative = -1, beyond = -1, fractional = -1;
    long max = -1;
    for (int k = 0; k < n; k++) {
        long v;
        double x;
        if (integer_label(NAME(k), &v)) {
            if (v < 0 && negative < 0) negative = k;
            if (v >= id_limit && beyond < 0) beyond = k;
            if (v > max) max = v;
        } else {
            all_int = false;
            if (!number_label(NAME(k), &x))
                all_number = false;
            else if (x != floor(x) && fractional < 0)
                fractional = k;
        }
    }
    if (check && all_int && negative >= 0)
        return fail(
            L, L->label_line[negative],
            "label '%s' is negative, but integer labels are their own class ids (0, 1, ...); "
            "declare the label names in id order (dataset.labels) to use it",
            snippet(NAME(negative), strlen(NAME(negative)), sn));
    if (check && all_int && beyond >= 0) {
        const char *name = snippet(NAME(beyond), strlen(NAME(beyond)), sn);
        if (declared)
            return fail(
                L, L->label_line[beyond],
                "label '%s' is beyond the %d classes num_labels declares (integer labels are "
                "their own class ids: 0..%d)",
                name, declared, declared - 1);
        return fail(
            L, L->label_line[beyond],
            "label '%s' would be class id %s, beyond the limit of %d classes; did you mean task "
            "regression?",
            name, name, TEXTDATA_MAX_LABELS);
    }
    if (check && !all_int && all_number && fractional >= 0)
        return fail(
            L, L->label_line[fractional],
            "label '%s' looks like a continuous value (the %d distinct labels are all numbers); "
            "did you mean task regression? (To use them as class names, declare them with "
            "dataset.labels.)",
            snippet(NAME(fractional), strlen(NAME(fractional)), sn), n);
    if (check && !all_int && declared && declared != n) {
        for (int k = 0; k < n; k++) list_append(list, snippet(NAME(k), strlen(NAME(k)), sn));
        return fail(
            L, 0,
            "num_labels is %d but the data has %d distinct labels (%s); labels that are not "
            "integers name every class, so declare the names with dataset.labels%s",
            declared, n, list, declared > n ? " to have classes the data lacks" : "");
    }

    const bool by_value = all_int && negative < 0 && max < TEXTDATA_MAX_LABELS;
    int count = n;
    if (by_value) count = declared > max + 1 ? declared : (int)max + 1;
    int *new_id = malloc((size_t)n * sizeof *new_id);
    size_t *off = malloc((size_t)count * sizeof *off);
    named_label *sorted = by_value ? NULL : malloc((size_t)n * sizeof *sorted);
    if (!new_id || !off || (!by_value && !sorted)) {
        free(new_id);
        free(off);
        free(sorted);
        return fail(L, 0, "out of memory");
    }
    if (by_value) {
        for (int j = 0; j < count; j++) off[j] = SIZE_MAX;
        for (int k = 0; k < n; k++) {
            long v;
            integer_label(NAME(k), &v);
            new_id[k] = (int)v;
            off[v] = d->label_off[k];
        }
        int missing = -1;
        for (int j = 0; j < count && missing < 0; j++)
            if (off[j] == SIZE_MAX) missing = j;
        if (check && missing >= 0 && !declared) {
            for (int j = 0; j < count; j++)
                if (off[j] != SIZE_MAX) list_append(list, d->label_pool + off[j]);
            /* Many holes between few values: more like measurements than class ids. */
            bool sparse = count - n > n;
            free(new_id);
            free(off);
            return fail(
                L, 0,
                "no row has label %d, but integer labels are their own class ids, so ids 0..%d "
                "need every value (labels: %s); declare the classes with dataset.labels (names "
                "in id order) or num_labels%s",
                missing, count - 1, list, sparse ? "; or did you mean task regression?" : "");
        }
        for (int j = 0; j < count; j++) { /* classes the data lacks: named by their id */
            if (off[j] != SIZE_MAX) continue;
            char text[16];
            int len = snprintf(text, sizeof text, "%d", j);
            if ((off[j] = pool_add(L, text, (size_t)len)) == SIZE_MAX) {
                free(new_id);
                free(off);
                return fail(L, 0, "out of memory");
            }
        }
    } else {
        /* Hugging Face's run_glue sorts such labels; byte order of UTF-8 is
         * code point order, as Python sorts str. */
        for (int k = 0; k < n; k++) sorted[k] = (named_label){NAME(k), k};
        qsort(sorted, (size_t)n, sizeof *sorted, by_name);
        for (int j = 0; j < n; j++) {
            new_id[sorted[j].k] = j;
            off[j] = d->label_off[sorted[j].k];
        }
        free(sorted);
    }
#undef NAME
    for (int i = 0; i < d->n; i++) d->rows[i].label.id = new_id[d->rows[i].label.id];
    free(new_id);
    free(d->label_off);
    d->label_off = off;
    d->num_labels = count;
    return 0;
}

/* ---- spec ------------------------------------------------------------------- */

static int check_field(loader *L, const textdata_field *f, const char *what, bool required) {
    switch (f->kind) {
    case TEXTDATA_FIELD_NONE:
        if (required) return fail(L, 0, "no %s field given", what);
        return 0;
    case TEXTDATA_FIELD_NAME:
        if (!f->name || !f->name[0]) return fail(L, 0, "%s field has an empty name", what);
        if (L->format != TEXTDATA_JSONL && L->spec->no_header)
            return fail(L, 0, "%s is chosen by name but the file has no header row", what);
        return 0;
    case TEXTDATA_FIELD_INDEX:
        if (L->format == TEXTDATA_JSONL)
            return fail(L, 0, "%s is chosen by column index, but JSONL fields are chosen by name",
                        what);
        if (f->index < 0) return fail(L, 0, "%s column index %d is negative", what, f->index);
        return 0;
    }
    return fail(L, 0, "%s field has an unknown kind %d", what, (int)f->kind);
}

static int check_spec(loader *L) {
    const textdata_spec *s = L->spec;
    if (check_field(L, &s->text_a, "text_a", true) || check_field(L, &s->text_b, "text_b", false) ||
        check_field(L, &s->label, "label", false))
        return -1;
    if (s->task != TEXTDATA_CLASSIFICATION && s->task != TEXTDATA_REGRESSION)
        return fail(L, 0, "unknown task kind %d", (int)s->task);
    if (s->max_rows < 0) return fail(L, 0, "max_rows %d is negative", s->max_rows);
    if (!s->labels) {
        if (s->num_labels == 0) return 0;
        if (s->task != TEXTDATA_CLASSIFICATION)
            return fail(L, 0, "num_labels given for a regression task");
        if (s->num_labels < 1 || s->num_labels > TEXTDATA_MAX_LABELS)
            return fail(L, 0, "num_labels %d is not in 1..%d", s->num_labels, TEXTDATA_MAX_LABELS);
        return 0;
    }
    if (s->task != TEXTDATA_CLASSIFICATION)
        return fail(L, 0, "declared labels given for a regression task");
    if (s->num_labels < 1 || s->num_labels > TEXTDATA_MAX_LABELS)
        return fail(L, 0, "declared label count %d is not in 1..%d", s->num_labels,
                    TEXTDATA_MAX_LABELS);
    for (int k = 0; k < s->num_labels; k++) {
        char sn[SNIPPET_MAX + 4];
        const char *name = s->labels[k];
        if (!name) return fail(L, 0, "declared label %d is NULL", k);
        size_t len = strlen(name);
        const char *t = name;
        size_t tl = len;
        trim(&t, &tl);
        if (tl == 0 || tl != len)
            return fail(L, 0, "declared label %d ('%s') is empty or has surrounding whitespace", k,
                        snippet(name, len, sn));
        if (!json_utf8_valid(name, len))
            return fail(L, 0, "declared label %d is not valid UTF-8", k);
        if (label_find(L, name, len) >= 0)
            return fail(L, 0, "declared label '%s' appears twice", snippet(name, len, sn));
        if (label_add(L, name, len, 0) < 0) return fail(L, 0, "out of memory");
    }
    return 0;
}

/* ---- TSV / CSV ------------------------------------------------------------- */

static int push_field(loader *L, size_t off, size_t len) {
    if (L->nfields == L->fields_cap) {
        size_t cap = L->fields_cap ? L->fields_cap * 2 : 16;
        span *f = realloc(L->fields, cap * sizeof *f);
        if (!f) return -1;
        L->fields = f;
        L->fields_cap = cap;
    }
    L->fields[L->nfields++] = (span){off, len};
    return 0;
}

/* Read the record at *pos into L->fields, skipping blank lines before it.
 * *line is the current physical line and is advanced past the record;
 * *rec_line gets the line the record starts on. Returns 1, 0 at the end of
 * the input, -1 on error. */
static int read_record(loader *L, bool csv, size_t *pos, size_t *line, size_t *rec_line) {
    char *b = L->d->buf;
    size_t n = L->len, p = *pos;
    for (;;) {
        if (p >= n) return 0;
        if (b[p] == '\n') {
            p++;
            (*line)++;
        } else if (b[p] == '\r' && p + 1 < n && b[p + 1] == '\n') {
            p += 2;
            (*line)++;
        } else {
            break;
        }
    }
    *rec_line = *line;
    L->nfields = 0;
    const char sep = csv ? ',' : '\t';
    for (;;) {
        if (csv && p < n && b[p] == '"') {
            size_t w = p, q = p + 1; /* content slides over the opening quote */
            for (;;) {
                if (q >= n)
                    return fail(L, *rec_line,
                                "unterminated quoted field (field %zu runs to the end of the file)",
                                L->nfields + 1);
                if (b[q] == '"') {
                    if (q + 1 < n && b[q + 1] == '"') {
                        b[w++] = '"';
                        q += 2;
                        continue;
                    }
                    q++;
                    break;
                }
                if (b[q] == '\n') (*line)++;
                b[w++] = b[q++];
            }
            if (push_field(L, p, w - p)) return fail(L, *rec_line, "out of memory");
            p = q;
            if (p >= n) break;
            if (b[p] == ',') {
                p++;
                continue;
            }
            if (b[p] == '\n' || (b[p] == '\r' && p + 1 < n && b[p + 1] == '\n')) {
                p += b[p] == '\r' ? 2 : 1;
                (*line)++;
                break;
            }
            return fail(L, *rec_line, "unexpected character after the closing quote of field %zu",
                        L->nfields);
        }
        size_t f = p;
        while (p < n && b[p] != sep && b[p] != '\n') p++;
        if (p < n && b[p] == sep) {
            if (push_field(L, f, p - f)) return fail(L, *rec_line, "out of memory");
            p++;
            continue;
        }
        size_t end = p;
        if (end > f && b[end - 1] == '\r') end--; /* CRLF */
        if (push_field(L, f, end - f)) return fail(L, *rec_line, "out of memory");
        if (p < n) {
            p++;
            (*line)++;
        }
        break;
    }
    *pos = p;
    return 1;
}

/* Column index of field f given the header (or first row) in L->fields. */
static int resolve_column(loader *L, const textdata_field *f, bool header, size_t line, int *col) {
    char desc[SNIPPET_MAX + 32], sn[SNIPPET_MAX + 4];
    const char *b = L->d->buf;
    *col = -1;
    if (f->kind == TEXTDATA_FIELD_NONE) return 0;
    if (f->kind == TEXTDATA_FIELD_INDEX) {
        if ((size_t)f->index >= L->nfields)
            return fail(L, line, "%s is out of range: the %s has %zu fields",
                        field_desc(L, f, desc), header ? "header" : "first row", L->nfields);
        *col = f->index;
        return 0;
    }
    size_t want = strlen(f->name);
    for (size_t i = 0; i < L->nfields; i++) {
        const span *s = &L->fields[i];
        if (s->len != want || memcmp(b + s->off, f->name, want) != 0) continue;
        if (*col >= 0)
            return fail(L, line, "column '%s' appears more than once in the header",
                        snippet(f->name, want, sn));
        *col = (int)i;
    }
    if (*col < 0) {
        char list[LIST_MSG_MAX] = "";
        for (size_t i = 0; i < L->nfields; i++)
            list_append(list, snippet(b + L->fields[i].off, L->fields[i].len, sn));
        char sn2[SNIPPET_MAX + 4];
        return fail(L, line, "no column named '%s' in the header (columns: %s)",
                    snippet(f->name, want, sn2), list);
    }
    return 0;
}

static int resolve_columns(loader *L, bool header, size_t line) {
    if (L->nfields > INT_MAX) return fail(L, line, "too many fields");
    const textdata_spec *s = L->spec;
    return resolve_column(L, &s->text_a, header, line, &L->col_a) ||
                   resolve_column(L, &s->text_b, header, line, &L->col_b) ||
                   resolve_column(L, &s->label, header, line, &L->col_label)
               ? -1
               : 0;
}

/* Validate text column col of the current record, NUL-terminate it in place
 * and return its offset. */
static int take_text(loader *L, size_t line, int col, const textdata_field *f, size_t *off) {
    char desc[SNIPPET_MAX + 32];
    char *b = L->d->buf;
    const span *s = &L->fields[col];
    if (!json_utf8_valid(b + s->off, s->len))
        return fail(L, line, "invalid UTF-8 in %s", field_desc(L, f, desc));
    if (is_blank(b + s->off, s->len))
        return fail(L, line, "empty text in %s", field_desc(L, f, desc));
    b[s->off + s->len] = '\0';
    *off = s->off;
    return 0;
}

static int take_label(loader *L, size_t line, const char *s, size_t len, textdata_row *row) {
    char desc[SNIPPET_MAX + 32];
    trim(&s, &len);
    if (len == 0)
        return fail(L, line, "missing label (%s is empty)", field_desc(L, &L->spec->label, desc));
    if (L->spec->task == TEXTDATA_REGRESSION)
        return parse_target(L, line, s, len, &row->label.value);
    return classify(L, line, s, len, &row->label.id);
}

static int parse_delimited(loader *L, size_t start) {
    const textdata_spec *spec = L->spec;
    const bool csv = L->format == TEXTDATA_CSV;
    textdata *d = L->d;
    size_t pos = start, line = 1, rec_line = 0;
    size_t expected = 0;
    bool have_shape = false;
    if (!spec->no_header) {
        int r = read_record(L, csv, &pos, &line, &rec_line);
        if (r < 0) return -1;
        if (r == 0) return fail(L, 0, "empty file: no header row");
        if (resolve_columns(L, true, rec_line)) return -1;
        expected = L->nfields;
        have_shape = true;
    }
    while (d->n < L->limit) {
        int r = read_record(L, csv, &pos, &line, &rec_line);
        if (r < 0) return -1;
        if (r == 0) break;
        if (!have_shape) {
            if (resolve_columns(L, false, rec_line)) return -1;
            expected = L->nfields;
            have_shape = true;
        } else if (L->nfields != expected) {
            return fail(L, rec_line, "ragged row: %zu fields, the %s has %zu", L->nfields,
                        spec->no_header ? "first row" : "header", expected);
        }
        if (d->n >= L->rows_cap) return fail(L, rec_line, "internal error: more rows than lines");
        textdata_row *row = &d->rows[d->n];
        row->b = NO_TEXT;
        row->label.id = -1;
        if (take_text(L, rec_line, L->col_a, &spec->text_a, &row->a)) return -1;
        if (L->col_b >= 0 && take_text(L, rec_line, L->col_b, &spec->text_b, &row->b)) return -1;
        if (L->col_label >= 0) {
            const span *s = &L->fields[L->col_label];
            if (take_label(L, rec_line, d->buf + s->off, s->len, row)) return -1;
        }
        d->n++;
    }
    return 0;
}

/* ---- JSONL -------------------------------------------------------------------- */

/* Copy string member f of obj to *w (inside the current line) and advance *w.
 * line_room bounds the copy, as a guard: distinct members always fit. */
static int jsonl_text(loader *L, size_t line, const json_value *obj, const textdata_field *f,
                      char **w, const char *line_end, size_t *off) {
    char desc[SNIPPET_MAX + 32];
    const json_value *v = json_get(obj, f->name);
    json_type t = json_type_of(v);
    if (t == JSON_MISSING) return fail(L, line, "missing %s", field_desc(L, f, desc));
    if (t != JSON_STRING)
        return fail(L, line, "%s is %s %s, expected a string", field_desc(L, f, desc),
                    t == JSON_ARRAY || t == JSON_OBJECT ? "an" : "a", json_type_name(t));
    size_t len;
    const char *s = json_string(v, &len);
    if (strlen(s) != len)
        return fail(L, line, "%s contains a NUL character", field_desc(L, f, desc));
    if (!json_utf8_valid(s, len))
        return fail(L, line, "invalid UTF-8 in %s", field_desc(L, f, desc));
    if (is_blank(s, len)) return fail(L, line, "empty text in %s", field_desc(L, f, desc));
    if ((size_t)(line_end - *w) < len + 1)
        return fail(L, line, "internal error: decoded text outgrew its line");
    memcpy(*w, s, len);
    (*w)[len] = '\0';
    *off = (size_t)(*w - L->d->buf);
    *w += len + 1;
    return 0;
}

/* Shortest "%.Ng" text that reads back as the same double: 1.0 -> "1". */
static void number_text(double v, char out[32]) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, 32, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
}

static int jsonl_label(loader *L, size_t line, const json_value *obj, textdata_row *row) {
    char desc[SNIPPET_MAX + 32];
    const textdata_field *f = &L->spec->label;
    const json_value *v = json_get(obj, f->name);
    json_type t = json_type_of(v);
    if (t == JSON_MISSING || t == JSON_NULL)
        return fail(L, line, "missing label (%s is %s)", field_desc(L, f, desc),
                    t == JSON_NULL ? "null" : "absent");
    if (L->spec->task == TEXTDATA_REGRESSION) {
        if (t == JSON_NUMBER) {
            double x = json_number(v); /* the parser rejects inf/nan literals */
            if (fabs(x) > FLT_MAX) return fail(L, line, "label %g is not a finite float", x);
            row->label.value = (float)x;
            return 0;
        }
        if (t == JSON_STRING) {
            size_t len;
            const char *s = json_string(v, &len);
            trim(&s, &len);
            if (len == 0)
                return fail(L, line, "missing label (%s is empty)", field_desc(L, f, desc));
            return parse_target(L, line, s, len, &row->label.value);
        }
        return fail(L, line, "%s is %s %s, expected a number", field_desc(L, f, desc),
                    t == JSON_ARRAY || t == JSON_OBJECT ? "an" : "a", json_type_name(t));
    }
    char num[32];
    const char *s;
    size_t len;
    switch (t) {
    case JSON_STRING:
        s = json_string(v, &len);
        trim(&s, &len);
        if (len == 0) return fail(L, line, "missing label (%s is empty)", field_desc(L, f, desc));
        if (strlen(s) < len)
            return fail(L, line, "%s contains a NUL character", field_desc(L, f, desc));
        break;
    case JSON_NUMBER:
        if (json_is_int(v))
            snprintf(num, sizeof num, "%" PRId64, json_int(v));
        else
            number_text(json_number(v), num);
        s = num;
        len = strlen(num);
        break;
    case JSON_BOOL:
        s = json_bool(v) ? "true" : "false";
        len = strlen(s);
        break;
    default:
        return fail(L, line, "%s is %s %s, expected a string, number or boolean",
                    field_desc(L, f, desc), t == JSON_ARRAY || t == JSON_OBJECT ? "an" : "a",
                    json_type_name(t));
    }
    return classify(L, line, s, len, &row->label.id);
}

/* One JSONL row from object obj parsed from the line at ls (line_end = one past
 * its last usable byte, which includes its newline slot). */
static int jsonl_row(loader *L, size_t line, const json_value *obj, char *ls,
                     const char *line_end) {
    const textdata_spec *spec = L->spec;
    textdata *d = L->d;
    json_type t = json_type_of(obj);
    if (t != JSON_OBJECT)
        return fail(L, line,
                    "expected a JSON object (JSON Lines: one object per line), found %s %s",
                    t == JSON_ARRAY ? "an" : "a", json_type_name(t));
    if (d->n >= L->rows_cap) return fail(L, line, "internal error: more rows than lines");
    textdata_row *row = &d->rows[d->n];
    row->b = NO_TEXT;
    row->label.id = -1;
    char *w = ls;
    if (jsonl_text(L, line, obj, &spec->text_a, &w, line_end, &row->a)) return -1;
    if (spec->text_b.kind != TEXTDATA_FIELD_NONE) {
        if (strcmp(spec->text_b.name, spec->text_a.name) == 0)
            row->b = row->a; /* same member: one copy (two might not fit the line) */
        else if (jsonl_text(L, line, obj, &spec->text_b, &w, line_end, &row->b))
            return -1;
    }
    if (spec->label.kind != TEXTDATA_FIELD_NONE && jsonl_label(L, line, obj, row)) return -1;
    d->n++;
    return 0;
}

/* The JSON parser reports "line 1, column C (byte B): ..." for a single line;
 * the file line is ours to give, so drop its "line 1, ". */
static const char *drop_line_prefix(const char *msg) {
    static const char prefix[] = "line 1, ";
    return strncmp(msg, prefix, sizeof prefix - 1) == 0 ? msg + sizeof prefix - 1 : msg;
}

static int parse_jsonl(loader *L, size_t start) {
    char *b = L->d->buf;
    size_t pos = start, line = 0;
    while (pos < L->len && L->d->n < L->limit) {
        line++;
        char *ls = b + pos;
        char *nl = memchr(ls, '\n', L->len - pos);
        size_t ll = nl ? (size_t)(nl - ls) : L->len - pos;
        pos += ll + (nl ? 1 : 0);
        size_t cl = ll;
        if (cl && ls[cl - 1] == '\r') cl--;
        if (is_blank(ls, cl)) continue;
        char jerr[160];
        json_value *v = json_parse(ls, cl, 0, jerr, sizeof jerr);
        if (!v) return fail(L, line, "bad JSON: %s", drop_line_prefix(jerr));
        /* ll + 1 bytes are ours: the line and its '\n' (or the spare end byte). */
        int rc = jsonl_row(L, line, v, ls, ls + ll + 1);
        json_free(v);
        if (rc) return -1;
    }
    return 0;
}

/* ---- driver ------------------------------------------------------------------- */

/* Slide the kept texts to the front of the buffer and shrink it. */
static void compact(textdata *d) {
    size_t w = 0;
    for (int i = 0; i < d->n; i++) {
        textdata_row *r = &d->rows[i];
        size_t *first = &r->a, *second = &r->b;
        if (r->b != NO_TEXT && r->b < r->a) first = &r->b, second = &r->a;
        size_t old_first = *first;
        size_t len = strlen(d->buf + *first) + 1;
        memmove(d->buf + w, d->buf + *first, len);
        *first = w;
        w += len;
        if (*second == NO_TEXT) continue;
        if (*second == old_first) {
            *second = *first;
            continue;
        }
        len = strlen(d->buf + *second) + 1;
        memmove(d->buf + w, d->buf + *second, len);
        *second = w;
        w += len;
    }
    char *shrunk = realloc(d->buf, w ? w : 1);
    if (shrunk) d->buf = shrunk; /* a failed shrink just keeps the larger block */
    if (d->n > 0) {
        textdata_row *rows = realloc(d->rows, (size_t)d->n * sizeof *rows);
        if (rows) d->rows = rows;
    }
}

static void textdata_zero(textdata *d) { memset(d, 0, sizeof *d); }

void textdata_free(textdata *d) {
    if (!d) return;
    free(d->buf);
    free(d->rows);
    free(d->label_off);
    free(d->label_pool);
    textdata_zero(d);
}

/* Parse buf[0..len) (owned; buf[len] is spare) into *out, taking ownership of
 * buf whatever happens. */
static int load_owned(char *buf, size_t len, const char *name, const textdata_spec *spec,
                      textdata *out, char *err, size_t errlen) {
    loader L = {.spec = spec, .name = name, .err = err, .errlen = errlen, .d = out, .len = len};
    textdata_zero(out);
    out->buf = buf;
    buf[len] = '\0';
    int rc = -1;
    L.format = spec->format == TEXTDATA_AUTO ? textdata_format_from_path(name) : spec->format;
    if (L.format == TEXTDATA_AUTO) {
        fail(&L, 0,
             "cannot tell the format from the file name (expected .tsv, .csv, .jsonl or .json)");
        goto done;
    }
    if (L.format != TEXTDATA_TSV && L.format != TEXTDATA_CSV && L.format != TEXTDATA_JSONL) {
        fail(&L, 0, "unknown format %d", (int)L.format);
        goto done;
    }
    if (check_spec(&L)) goto done;

    size_t start = 0;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) start = 3; /* UTF-8 BOM */
    const char *nul = memchr(buf + start, '\0', len - start);
    if (nul) {
        fail(&L, line_of(buf, (size_t)(nul - buf)), "NUL byte in the file (is it text?)");
        goto done;
    }
    size_t lines = 1;
    for (const char *p = buf + start; (p = memchr(p, '\n', (size_t)(buf + len - p))) != NULL; p++)
        lines++;
    L.limit = spec->max_rows > 0 ? spec->max_rows : INT_MAX;
    L.rows_cap = lines < (size_t)L.limit ? (int)lines : L.limit;
    out->rows = malloc((size_t)L.rows_cap * sizeof *out->rows);
    if (!out->rows) {
        fail(&L, 0, "out of memory for %d rows", L.rows_cap);
        goto done;
    }
    out->task = spec->task;
    out->has_text_b = spec->text_b.kind != TEXTDATA_FIELD_NONE;
    out->has_labels = spec->label.kind != TEXTDATA_FIELD_NONE;

    if (L.format == TEXTDATA_JSONL ? parse_jsonl(&L, start) : parse_delimited(&L, start)) goto done;
    if (out->n == 0) {
        fail(&L, 0, "no data rows");
        goto done;
    }
    if (finish_labels(&L)) goto done;
    compact(out);
    rc = 0;
done:
    free(L.fields);
    free(L.label_line);
    if (rc) textdata_free(out);
    return rc;
}

/* Read a whole file, refusing more than max bytes; *out gets len + 1 bytes. */
static int read_file(const char *path, size_t max, char **out, size_t *out_len, char *err,
                     size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_err(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        set_err(err, errlen, "%s: is a directory", path);
        close(fd);
        return -1;
    }
    size_t cap = READ_CHUNK;
    if (S_ISREG(st.st_mode)) {
        if ((uintmax_t)st.st_size > (uintmax_t)max) {
            set_err(err, errlen, "%s: file is %jd bytes, larger than the limit of %zu bytes", path,
                    (intmax_t)st.st_size, max);
            close(fd);
            return -1;
        }
        cap = (size_t)st.st_size + 1; /* +1: room to see EOF (or growth) */
    }
    if (cap > max + 1) cap = max + 1;
    char *buf = malloc(cap + 1); /* +1: spare byte for the last NUL */
    size_t used = 0;
    if (!buf) goto oom;
    for (;;) {
        if (used == cap) {
            if (cap > max) break; /* caught just below */
            size_t ncap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) goto oom;
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + used, cap - used);
        if (r < 0) {
            if (errno == EINTR) continue;
            set_err(err, errlen, "%s: read failed: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0) break;
        used += (size_t)r;
        if (used > max) break;
    }
    close(fd);
    if (used > max) {
        set_err(err, errlen, "%s: file is larger than the limit of %zu bytes", path, max);
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = used;
    return 0;
oom:
    set_err(err, errlen, "%s: out of memory reading the file", path);
    free(buf);
    close(fd);
    return -1;
}

int textdata_load(const char *path, const textdata_spec *spec, textdata *out, char *err,
                  size_t errlen) {
    if (!out) return -1;
    textdata_zero(out);
    if (!path || !spec) return set_err(err, errlen, "textdata_load: no path or spec");
    size_t max = spec->max_bytes ? spec->max_bytes : TEXTDATA_DEFAULT_MAX_BYTES;
    if (max >= SIZE_MAX - 2) max = SIZE_MAX - 3; /* keep max + 2 representable */
    char *buf = NULL; /* gcc cannot see that read_file's set_err path returns -1 */
    size_t len = 0;
    if (read_file(path, max, &buf, &len, err, errlen)) return -1;
    return load_owned(buf, len, path, spec, out, err, errlen);
}

int textdata_load_buffer(const char *data, size_t len, const char *name, const textdata_spec *spec,
                         textdata *out, char *err, size_t errlen) {
    if (!out) return -1;
    textdata_zero(out);
    if (!spec || (!data && len))
        return set_err(err, errlen, "textdata_load_buffer: no data or spec");
    if (!name) name = "<buffer>";
    size_t max = spec->max_bytes ? spec->max_bytes : TEXTDATA_DEFAULT_MAX_BYTES;
    if (len > max)
        return set_err(err, errlen, "%s: %zu bytes, larger than the limit of %zu bytes", name, len,
                       max);
    char *buf = malloc(len + 1);
    if (!buf) return set_err(err, errlen, "%s: out of memory copying %zu bytes", name, len);
    if (len) memcpy(buf, data, len);
    return load_owned(buf, len, name, spec, out, err, errlen);
}

textdata_format textdata_format_from_path(const char *path) {
    if (!path) return TEXTDATA_AUTO;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    if (!dot) return TEXTDATA_AUTO;
    if (strcasecmp(dot, ".tsv") == 0) return TEXTDATA_TSV;
    if (strcasecmp(dot, ".csv") == 0) return TEXTDATA_CSV;
    if (strcasecmp(dot, ".jsonl") == 0 || strcasecmp(dot, ".json") == 0) return TEXTDATA_JSONL;
    return TEXTDATA_AUTO;
}

const char *textdata_format_name(textdata_format f) {
    switch (f) {
    case TEXTDATA_TSV: return "tsv";
    case TEXTDATA_CSV: return "csv";
    case TEXTDATA_JSONL: return "jsonl";
    case TEXTDATA_AUTO: return "auto";
    }
    return "unknown";
}

int textdata_count(const textdata *d) { return d ? d->n : 0; }

static bool row_ok(const textdata *d, int i) { return d && d->rows && i >= 0 && i < d->n; }

const char *textdata_text_a(const textdata *d, int i) {
    return row_ok(d, i) ? d->buf + d->rows[i].a : NULL;
}

const char *textdata_text_b(const textdata *d, int i) {
    if (!row_ok(d, i) || d->rows[i].b == NO_TEXT) return NULL;
    return d->buf + d->rows[i].b;
}

bool textdata_has_labels(const textdata *d) { return d && d->has_labels; }

int32_t textdata_label_id(const textdata *d, int i) {
    if (!row_ok(d, i) || !d->has_labels || d->task != TEXTDATA_CLASSIFICATION) return -1;
    return d->rows[i].label.id;
}

float textdata_label_value(const textdata *d, int i) {
    if (!row_ok(d, i) || !d->has_labels || d->task != TEXTDATA_REGRESSION) return NAN;
    return d->rows[i].label.value;
}

int textdata_label_count(const textdata *d) {
    return d && d->task == TEXTDATA_CLASSIFICATION ? d->num_labels : 0;
}

const char *textdata_label_name(const textdata *d, int id) {
    if (!d || d->task != TEXTDATA_CLASSIFICATION || id < 0 || id >= d->num_labels) return NULL;
    return d->label_pool + d->label_off[id];
}
