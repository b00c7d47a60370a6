/* json.h — a strict, read-only JSON (RFC 8259) document parser for the engine.
 *
 * The engine reads two kinds of JSON: Hugging Face config.json files and
 * safetensors headers. Both come from outside, so the parser is strict rather
 * than forgiving: it rejects invalid UTF-8, lone surrogates, unescaped control
 * characters, non-RFC numbers (01, 1., .5, overflowing 1e400), duplicate keys
 * within one object, trailing garbage and nesting deeper than a limit.
 * A duplicate key is an error (not "last wins") because two readers of the same
 * file could otherwise disagree about its meaning.
 *
 * json_parse() returns an immutable tree owned by one arena; json_free() on the
 * root releases it all. Values are opaque and read through accessors that
 * accept NULL and wrong types (returning NULL / 0), so lookups chain:
 *     json_type_of(json_get(root, "hidden_size")) == JSON_NUMBER
 * Object members keep document order. Strings are decoded to UTF-8, always
 * NUL-terminated, and carry their length (they may contain "\u0000").
 *
 * Numbers are converted with strtod, so the process must keep LC_NUMERIC at
 * "C" (aflorad never calls setlocale). */
#ifndef AFLO_JSON_H
#define AFLO_JSON_H

#include <stddef.h>
#include <stdint.h>

/* Nesting limit used when json_parse() gets max_depth <= 0. Configs and
 * safetensors headers nest 3 levels; 64 leaves room and bounds recursion. */
#define JSON_DEFAULT_MAX_DEPTH 64
/* Largest max_depth accepted: the parser recurses once per level, and worker
 * threads may have small stacks. */
#define JSON_MAX_DEPTH_CEILING 1024

typedef enum {
    JSON_MISSING = 0, /* what json_type_of(NULL) answers */
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
} json_type;

typedef struct json_value json_value;

/* Parse text[0..len) (need not be NUL-terminated). max_depth <= 0 selects
 * JSON_DEFAULT_MAX_DEPTH; a top-level scalar is depth 0, "[]" is depth 1.
 * On error returns NULL and writes e.g.
 *   "line 3, column 7 (byte 41): expected ',' or '}' after object member"
 * into err (columns count UTF-8 characters from 1). */
json_value *json_parse(const char *text, size_t len, int max_depth, char *err, size_t errlen);

/* Free a tree returned by json_parse (only the root; NULL is fine). */
void json_free(json_value *root);

json_type json_type_of(const json_value *v);
const char *json_type_name(json_type t); /* "object", "string", ... */

/* Bool: 1 or 0 (0 also when v is not a bool). */
int json_bool(const json_value *v);

/* Number as a double (0.0 when v is not a number). */
double json_number(const json_value *v);
/* 1 when v was written as an integer literal (no fraction, no exponent) that
 * fits int64_t; json_int() then gives it exactly. "-0" counts, as 0. */
int json_is_int(const json_value *v);
int64_t json_int(const json_value *v);

/* String bytes (UTF-8, NUL-terminated) or NULL; *len (if len) gets the byte
 * length, which differs from strlen() only if the string holds "\u0000". */
const char *json_string(const json_value *v, size_t *len);

/* Element count of an array or object; 0 for anything else. */
size_t json_len(const json_value *v);
/* Element i of an array, or value of member i of an object; NULL if out of range. */
const json_value *json_at(const json_value *v, size_t i);
/* Key of member i of an object (document order), or NULL; *len as for json_string. */
const char *json_key_at(const json_value *obj, size_t i, size_t *len);
/* Member value by key (keys are unique), or NULL. Linear: objects here are small. */
const json_value *json_get(const json_value *obj, const char *key);

/* Helpers for the engine's JSON writers. */

/* 1 when s[0..len) is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
int json_utf8_valid(const char *s, size_t len);
/* Write s[0..len) as a quoted JSON string literal into dst (snprintf-like:
 * returns the length the literal needs, excluding the NUL; writes at most cap
 * bytes, NUL-terminated when cap > 0). Escapes '"', '\\' and bytes < 0x20;
 * other bytes are copied, so s should be valid UTF-8. */
size_t json_quote(char *dst, size_t cap, const char *s, size_t len);

#endif
