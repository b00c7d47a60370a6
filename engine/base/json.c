/* json.c — strict recursive-descent JSON parser building an arena-owned tree.
 *
 * Memory: every node and decoded string of one document lives in a chain of
 * arena blocks hanging off a small json_doc header; json_free() walks the
 * chain. Container children are not known in advance, so while a container
 * is open its children sit on one growable scratch stack (shared by all
 * levels, addressed by index because it may move) and are copied into the
 * arena as one contiguous array when the container closes. The scratch stack
 * is freed when parsing ends, so the finished tree is exactly arena blocks.
 *
 * Strings are parsed in two steps: find the closing quote, then decode into
 * an arena buffer of the raw length (an upper bound, since no escape decodes
 * to more bytes than it is written with) and give the unused tail back.
 *
 * Errors stop the parse at the first problem; the line and column are worked
 * out from the byte offset only then, so the happy path pays nothing for them. */
#include "base/json.h"

#include "base/errmsg.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct json_member json_member;

struct json_value {
    json_type type;
    int is_int; /* numbers only: integer literal fitting int64 */
    union {
        int b;
        struct {
            double d;
            int64_t i;
        } num;
        struct {
            const char *s;
            size_t len;
        } str;
        struct {
            json_value *items;
            size_t n;
        } arr;
        struct {
            json_member *members;
            size_t n;
        } obj;
    } u;
};

struct json_member {
    const char *key;
    size_t key_len;
    json_value value;
};

/* ---- arena ------------------------------------------------------------ */

/* First block size bounds: small documents get one small block, large ones
 * start with roughly their own size (nodes take more room than their text). */
#define ARENA_MIN_BLOCK ((size_t)1024)
#define ARENA_MAX_FIRST_BLOCK ((size_t)1 << 20)
#define ARENA_MAX_BLOCK ((size_t)64 << 20)
#define ARENA_ALIGN \
    (_Alignof(json_member) > _Alignof(double) ? _Alignof(json_member) : _Alignof(double))

typedef struct arena_block {
    struct arena_block *next;
    size_t cap, used;
    max_align_t data[]; /* max_align_t only to align the payload */
} arena_block;

typedef struct {
    arena_block *blocks; /* newest first */
    size_t next_cap;
    json_value root;
} json_doc;

static void *arena_alloc(json_doc *d, size_t size, size_t align) {
    arena_block *b = d->blocks;
    if (b) {
        size_t at = (b->used + align - 1) & ~(align - 1);
        if (at <= b->cap && size <= b->cap - at) {
            b->used = at + size;
            return (unsigned char *)b->data + at;
        }
    }
    size_t cap = d->next_cap;
    if (cap < size) cap = size;
    if (cap > SIZE_MAX - sizeof(arena_block)) return NULL;
    b = malloc(sizeof(arena_block) + cap);
    if (!b) return NULL;
    b->cap = cap;
    b->used = size;
    b->next = d->blocks;
    d->blocks = b;
    if (d->next_cap < ARENA_MAX_BLOCK) d->next_cap *= 2;
    return b->data;
}

/* Give back the unused end of the most recent allocation (strings). */
static void arena_trim_last(json_doc *d, const void *alloc, size_t used) {
    arena_block *b = d->blocks;
    b->used = (size_t)((const unsigned char *)alloc - (const unsigned char *)b->data) + used;
}

static void doc_free(json_doc *d) {
    arena_block *b = d->blocks;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(d);
}

/* ---- parser state ----------------------------------------------------- */

typedef struct {
    const char *key; /* NULL for array elements */
    size_t key_len;
    size_t key_pos; /* byte offset of the key, for duplicate errors */
    json_value value;
} scratch_entry;

typedef struct {
    const unsigned char *start, *p, *end;
    int max_depth;
    json_doc *doc;
    scratch_entry *stack;
    size_t stack_len, stack_cap;
    char *err;
    size_t errlen;
} parser;

/* Record an error at byte position pos: "line L, column C (byte B): msg". */
static int fail_at(parser *P, const unsigned char *pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(parser *P, const unsigned char *pos, const char *fmt, ...) {
    if (!P->err || P->errlen == 0) return -1;
    size_t line = 1, col = 1;
    for (const unsigned char *q = P->start; q < pos; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else if ((*q & 0xC0) != 0x80) { /* count characters, not continuation bytes */
            col++;
        }
    }
    set_err(P->err, P->errlen, "line %zu, column %zu (byte %zu): ", line, col,
            (size_t)(pos - P->start));
    size_t n = strlen(P->err); /* < errlen: the append below is at worst empty */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(P->err + n, P->errlen - n, fmt, ap); /* appendf, from a va_list */
    va_end(ap);
    return -1;
}

/* What sits at p, for "expected X, found Y" messages. */
static const char *describe(const parser *P, const unsigned char *p, char buf[16]) {
    if (p >= P->end) return "end of input";
    if (*p >= 0x20 && *p < 0x7F) {
        snprintf(buf, 16, "'%c'", *p);
    } else {
        snprintf(buf, 16, "byte 0x%02X", *p);
    }
    return buf;
}

static int fail_expected(parser *P, const char *what) {
    char buf[16];
    return fail_at(P, P->p, "expected %s, found %s", what, describe(P, P->p, buf));
}

static void skip_ws(parser *P) {
    while (P->p < P->end && (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r'))
        P->p++;
}

static int push_entry(parser *P, const scratch_entry *e) {
    if (P->stack_len == P->stack_cap) {
        size_t cap = P->stack_cap ? P->stack_cap * 2 : 64;
        scratch_entry *s = realloc(P->stack, cap * sizeof *s);
        if (!s) return fail_at(P, P->p, "out of memory");
        P->stack = s;
        P->stack_cap = cap;
    }
    P->stack[P->stack_len++] = *e;
    return 0;
}

/* ---- UTF-8 ------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at p (RFC 3629 table 3-7), or 0. */
static size_t utf8_seq_len(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0; /* no overlongs */
        if (c == 0xED) hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90; /* no overlongs */
        if (c == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return n;
}

int json_utf8_valid(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        size_t n = utf8_seq_len(p, end);
        if (!n) return 0;
        p += n;
    }
    return 1;
}

static size_t utf8_encode(unsigned cp, unsigned char *out) {
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- strings ---------------------------------------------------------- */

static int hex4(const unsigned char *p, const unsigned char *end, unsigned *out) {
    if (end - p < 4) return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

/* P->p is at the opening quote. Decodes into the arena; on success P->p is
 * just past the closing quote. */
static int parse_string(parser *P, const char **out, size_t *out_len) {
    const unsigned char *open = P->p;
    const unsigned char *q = open + 1;
    while (q < P->end && *q != '"') {
        if (*q == '\\' && P->end - q < 2) break; /* do not step past the end */
        q += (*q == '\\') ? 2 : 1;
    }
    if (q >= P->end || *q != '"') return fail_at(P, open, "unterminated string");
    size_t raw = (size_t)(q - open - 1);

    unsigned char *buf = arena_alloc(P->doc, raw + 1, 1);
    if (!buf) return fail_at(P, open, "out of memory");
    unsigned char *w = buf;
    const unsigned char *p = open + 1;
    while (p < q) {
        unsigned c = *p;
        if (c == '\\') {
            const unsigned char *esc = p;
            unsigned e = p[1]; /* p + 1 < q: a backslash never ends the scan */
            p += 2;
            switch (e) {
            case '"': *w++ = '"'; break;
            case '\\': *w++ = '\\'; break;
            case '/': *w++ = '/'; break;
            case 'b': *w++ = '\b'; break;
            case 'f': *w++ = '\f'; break;
            case 'n': *w++ = '\n'; break;
            case 'r': *w++ = '\r'; break;
            case 't': *w++ = '\t'; break;
            case 'u': {
                unsigned cp;
                if (hex4(p, q, &cp)) return fail_at(P, esc, "\\u must be followed by 4 hex digits");
                p += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return fail_at(P, esc, "lone low surrogate \\u%04X", cp);
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (q - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, q, &lo) ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return fail_at(
                            P, esc, "high surrogate \\u%04X not followed by a low surrogate", cp);
                    p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                w += utf8_encode(cp, w);
                break;
            }
            default: {
                char buf16[16];
                return fail_at(P, esc, "invalid escape: backslash followed by %s",
                               describe(P, esc + 1, buf16));
            }
            }
        } else if (c < 0x20) {
            return fail_at(P, p, "unescaped control character 0x%02X in string", c);
        } else {
            size_t n = utf8_seq_len(p, q);
            if (!n) return fail_at(P, p, "invalid UTF-8 in string");
            memcpy(w, p, n);
            w += n;
            p += n;
        }
    }
    *w = '\0';
    size_t len = (size_t)(w - buf);
    arena_trim_last(P->doc, buf, len + 1);
    P->p = q + 1;
    *out = (const char *)buf;
    *out_len = len;
    return 0;
}

/* ---- numbers ---------------------------------------------------------- */

#define NUMBER_STACK_BUF 64 /* longer lexemes (rare) are copied to the heap */

static int is_digit(const parser *P, const unsigned char *p) {
    return p < P->end && *p >= '0' && *p <= '9';
}

/* Grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int parse_number(parser *P, json_value *out) {
    const unsigned char *s = P->p, *p = s;
    int integral = 1;
    if (*p == '-') p++;
    if (!is_digit(P, p)) {
        P->p = p;
        return fail_expected(P, "a digit after '-'");
    }
    if (*p == '0') {
        p++;
        if (is_digit(P, p)) return fail_at(P, s, "numbers must not have leading zeros");
    } else {
        while (is_digit(P, p)) p++;
    }
    if (p < P->end && *p == '.') {
        integral = 0;
        p++;
        if (!is_digit(P, p)) {
            P->p = p;
            return fail_expected(P, "a digit after the decimal point");
        }
        while (is_digit(P, p)) p++;
    }
    if (p < P->end && (*p == 'e' || *p == 'E')) {
        integral = 0;
        p++;
        if (p < P->end && (*p == '+' || *p == '-')) p++;
        if (!is_digit(P, p)) {
            P->p = p;
            return fail_expected(P, "a digit in the exponent");
        }
        while (is_digit(P, p)) p++;
    }

    /* strtod needs a NUL-terminated copy: the input need not be terminated. */
    size_t n = (size_t)(p - s);
    char small[NUMBER_STACK_BUF];
    char *lex = n < sizeof small ? small : malloc(n + 1);
    if (!lex) return fail_at(P, s, "out of memory");
    memcpy(lex, s, n);
    lex[n] = '\0';

    errno = 0;
    double d = strtod(lex, NULL);
    int overflow = isinf(d); /* underflow to 0 or a subnormal is accepted */
    int64_t i = 0;
    int fits = 0;
    if (integral && !overflow) {
        errno = 0;
        long long ll = strtoll(lex, NULL, 10);
        fits = errno != ERANGE;
        i = (int64_t)ll;
    }
    if (lex != small) free(lex);
    if (overflow) return fail_at(P, s, "number out of range of a double");

    out->type = JSON_NUMBER;
    out->is_int = fits;
    out->u.num.d = d;
    out->u.num.i = fits ? i : 0;
    P->p = p;
    return 0;
}

/* ---- values ----------------------------------------------------------- */

static int parse_value(parser *P, int depth, json_value *out);

static int parse_literal(parser *P, const char *word, json_value *out, json_type t, int b) {
    size_t n = strlen(word);
    if ((size_t)(P->end - P->p) < n || memcmp(P->p, word, n) != 0)
        return fail_at(P, P->p, "invalid literal (expected %s)", word);
    P->p += n;
    out->type = t;
    out->u.b = b;
    return 0;
}

static int check_depth(parser *P, int depth) {
    if (depth >= P->max_depth)
        return fail_at(P, P->p, "nesting deeper than the limit of %d", P->max_depth);
    return 0;
}

static int parse_array(parser *P, int depth, json_value *out) {
    if (check_depth(P, depth)) return -1;
    size_t base = P->stack_len;
    P->p++; /* '[' */
    skip_ws(P);
    if (P->p < P->end && *P->p == ']') {
        P->p++;
    } else {
        for (;;) {
            scratch_entry e = {0};
            skip_ws(P);
            if (parse_value(P, depth + 1, &e.value)) return -1;
            if (push_entry(P, &e)) return -1;
            skip_ws(P);
            if (P->p < P->end && *P->p == ',') {
                P->p++;
                continue;
            }
            if (P->p < P->end && *P->p == ']') {
                P->p++;
                break;
            }
            return fail_expected(P, "',' or ']' in array");
        }
    }
    size_t n = P->stack_len - base;
    json_value *items = NULL;
    if (n) {
        items = arena_alloc(P->doc, n * sizeof *items, ARENA_ALIGN);
        if (!items) return fail_at(P, P->p, "out of memory");
        for (size_t i = 0; i < n; i++) items[i] = P->stack[base + i].value;
    }
    P->stack_len = base;
    out->type = JSON_ARRAY;
    out->u.arr.items = items;
    out->u.arr.n = n;
    return 0;
}

static int key_cmp(const scratch_entry *a, const scratch_entry *b) {
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, n);
    if (c) return c;
    if (a->key_len != b->key_len) return a->key_len < b->key_len ? -1 : 1;
    return 0;
}

static int entry_ptr_cmp(const void *x, const void *y) {
    const scratch_entry *a = *(const scratch_entry *const *)x,
                        *b = *(const scratch_entry *const *)y;
    int c = key_cmp(a, b);
    if (c) return c;
    return a->key_pos < b->key_pos ? -1 : a->key_pos > b->key_pos;
}

/* Up to this many members, compare all pairs; beyond it, sort. */
#define DUP_CHECK_PAIRWISE_MAX 16

/* Finds the earliest second occurrence of a key among e[0..n); NULL if none. */
static const scratch_entry *find_duplicate(const scratch_entry *e, size_t n, int *oom) {
    const scratch_entry *dup = NULL;
    *oom = 0;
    if (n <= DUP_CHECK_PAIRWISE_MAX) {
        for (size_t j = 1; j < n && !dup; j++)
            for (size_t i = 0; i < j; i++)
                if (key_cmp(&e[i], &e[j]) == 0) {
                    dup = &e[j];
                    break;
                }
        return dup;
    }
    const scratch_entry **idx = malloc(n * sizeof *idx);
    if (!idx) {
        *oom = 1;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) idx[i] = &e[i];
    qsort(idx, n, sizeof *idx, entry_ptr_cmp);
    for (size_t i = 1; i < n; i++)
        if (key_cmp(idx[i - 1], idx[i]) == 0 && (!dup || idx[i]->key_pos < dup->key_pos))
            dup = idx[i];
    free(idx);
    return dup;
}

static int parse_object(parser *P, int depth, json_value *out) {
    if (check_depth(P, depth)) return -1;
    size_t base = P->stack_len;
    P->p++; /* '{' */
    skip_ws(P);
    if (P->p < P->end && *P->p == '}') {
        P->p++;
    } else {
        for (;;) {
            scratch_entry e = {0};
            skip_ws(P);
            if (P->p >= P->end || *P->p != '"') return fail_expected(P, "a string key in object");
            e.key_pos = (size_t)(P->p - P->start);
            if (parse_string(P, &e.key, &e.key_len)) return -1;
            skip_ws(P);
            if (P->p >= P->end || *P->p != ':') return fail_expected(P, "':' after object key");
            P->p++;
            skip_ws(P);
            if (parse_value(P, depth + 1, &e.value)) return -1;
            if (push_entry(P, &e)) return -1;
            skip_ws(P);
            if (P->p < P->end && *P->p == ',') {
                P->p++;
                continue;
            }
            if (P->p < P->end && *P->p == '}') {
                P->p++;
                break;
            }
            return fail_expected(P, "',' or '}' in object");
        }
    }
    size_t n = P->stack_len - base;
    int oom;
    const scratch_entry *dup = find_duplicate(P->stack + base, n, &oom);
    if (oom) return fail_at(P, P->p, "out of memory");
    if (dup) return fail_at(P, P->start + dup->key_pos, "duplicate key \"%s\" in object", dup->key);
    json_member *members = NULL;
    if (n) {
        members = arena_alloc(P->doc, n * sizeof *members, ARENA_ALIGN);
        if (!members) return fail_at(P, P->p, "out of memory");
        for (size_t i = 0; i < n; i++) {
            members[i].key = P->stack[base + i].key;
            members[i].key_len = P->stack[base + i].key_len;
            members[i].value = P->stack[base + i].value;
        }
    }
    P->stack_len = base;
    out->type = JSON_OBJECT;
    out->u.obj.members = members;
    out->u.obj.n = n;
    return 0;
}

/* P->p is at the first byte of the value (whitespace already skipped). */
static int parse_value(parser *P, int depth, json_value *out) {
    memset(out, 0, sizeof *out);
    if (P->p >= P->end) return fail_expected(P, "a JSON value");
    switch (*P->p) {
    case '{': return parse_object(P, depth, out);
    case '[': return parse_array(P, depth, out);
    case '"': out->type = JSON_STRING; return parse_string(P, &out->u.str.s, &out->u.str.len);
    case 't': return parse_literal(P, "true", out, JSON_BOOL, 1);
    case 'f': return parse_literal(P, "false", out, JSON_BOOL, 0);
    case 'n': return parse_literal(P, "null", out, JSON_NULL, 0);
    default:
        if (*P->p == '-' || (*P->p >= '0' && *P->p <= '9')) return parse_number(P, out);
        return fail_expected(P, "a JSON value");
    }
}

json_value *json_parse(const char *text, size_t len, int max_depth, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (max_depth <= 0) max_depth = JSON_DEFAULT_MAX_DEPTH;
    if (max_depth > JSON_MAX_DEPTH_CEILING) {
        set_err(err, errlen, "max_depth %d exceeds the ceiling %d", max_depth,
                JSON_MAX_DEPTH_CEILING);
        return NULL;
    }
    if (!text && len) {
        set_err(err, errlen, "NULL text");
        return NULL;
    }
    json_doc *doc = calloc(1, sizeof *doc);
    if (!doc) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    size_t first = len < ARENA_MAX_FIRST_BLOCK / 2 ? len * 2 : ARENA_MAX_FIRST_BLOCK;
    doc->next_cap = first < ARENA_MIN_BLOCK ? ARENA_MIN_BLOCK : first;

    static const char empty[1] = "";
    parser P = {
        .start = (const unsigned char *)(text ? text : empty),
        .max_depth = max_depth,
        .doc = doc,
        .err = err,
        .errlen = errlen,
    };
    P.p = P.start;
    P.end = P.start + len;

    skip_ws(&P);
    int rc = parse_value(&P, 0, &doc->root);
    if (rc == 0) {
        skip_ws(&P);
        if (P.p < P.end) {
            char buf[16];
            rc = fail_at(&P, P.p, "unexpected %s after the JSON value", describe(&P, P.p, buf));
        }
    }
    free(P.stack);
    if (rc) {
        doc_free(doc);
        return NULL;
    }
    return &doc->root;
}

void json_free(json_value *root) {
    if (!root) return;
    doc_free((json_doc *)(void *)((char *)root - offsetof(json_doc, root)));
}

/* ---- accessors -------------------------------------------------------- */

json_type json_type_of(const json_value *v) { return v ? v->type : JSON_MISSING; }

const char *json_type_name(json_type t) {
    switch (t) {
    case JSON_MISSING: return "missing";
    case JSON_NULL: return "null";
    case JSON_BOOL: return "boolean";
    case JSON_NUMBER: return "number";
    case JSON_STRING: return "string";
    case JSON_ARRAY: return "array";
    case JSON_OBJECT: return "object";
    }
    return "unknown";
}

int json_bool(const json_value *v) { return v && v->type == JSON_BOOL ? v->u.b : 0; }

double json_number(const json_value *v) { return v && v->type == JSON_NUMBER ? v->u.num.d : 0.0; }

int json_is_int(const json_value *v) { return v && v->type == JSON_NUMBER && v->is_int; }

int64_t json_int(const json_value *v) { return json_is_int(v) ? v->u.num.i : 0; }

const char *json_string(const json_value *v, size_t *len) {
    if (!v || v->type != JSON_STRING) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = v->u.str.len;
    return v->u.str.s;
}

size_t json_len(const json_value *v) {
    if (!v) return 0;
    if (v->type == JSON_ARRAY) return v->u.arr.n;
    if (v->type == JSON_OBJECT) return v->u.obj.n;
    return 0;
}

const json_value *json_at(const json_value *v, size_t i) {
    if (!v) return NULL;
    if (v->type == JSON_ARRAY) return i < v->u.arr.n ? &v->u.arr.items[i] : NULL;
    if (v->type == JSON_OBJECT) return i < v->u.obj.n ? &v->u.obj.members[i].value : NULL;
    return NULL;
}

const char *json_key_at(const json_value *obj, size_t i, size_t *len) {
    if (!obj || obj->type != JSON_OBJECT || i >= obj->u.obj.n) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = obj->u.obj.members[i].key_len;
    return obj->u.obj.members[i].key;
}

const json_value *json_get(const json_value *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT || !key) return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < obj->u.obj.n; i++) {
        const json_member *m = &obj->u.obj.members[i];
        if (m->key_len == n && memcmp(m->key, key, n) == 0) return &m->value;
    }
    return NULL;
}

/* ---- writing helper --------------------------------------------------- */

size_t json_quote(char *dst, size_t cap, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    size_t need = 0;
#define EMIT(ch)                              \
    do {                                      \
        if (need + 1 < cap) dst[need] = (ch); \
        need++;                               \
    } while (0)
    EMIT('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            EMIT('\\');
            EMIT('"');
            break;
        case '\\':
            EMIT('\\');
            EMIT('\\');
            break;
        case '\n':
            EMIT('\\');
            EMIT('n');
            break;
        case '\r':
            EMIT('\\');
            EMIT('r');
            break;
        case '\t':
            EMIT('\\');
            EMIT('t');
            break;
        case '\b':
            EMIT('\\');
            EMIT('b');
            break;
        case '\f':
            EMIT('\\');
            EMIT('f');
            break;
        default:
            if (c < 0x20) {
                EMIT('\\');
                EMIT('u');
                EMIT('0');
                EMIT('0');
                EMIT(hex[c >> 4]);
                EMIT(hex[c & 15]);
            } else {
                EMIT((char)c);
            }
        }
    }
    EMIT('"');
#undef EMIT
    if (cap) dst[need < cap ? need : cap - 1] = '\0';
    return need;
}
