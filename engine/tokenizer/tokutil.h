/* tokutil.h — what every tokenizer algorithm needs: growable arrays, a
 * string -> int32 hash map (vocabularies, BPE merge ranks), UTF-8 decoding,
 * and reading a file or a JSON file from a model folder.
 *
 * It depends on nothing in the tokenizer (only on json.h and errmsg.h), so
 * the tokenizer's files form a simple graph: wordpiece.c and bpe.c use
 * tokutil; tokenizer.c (the front end) uses tokutil and the two algorithms.
 * Not part of the engine's API. */
#ifndef AFLO_TOKUTIL_H
#define AFLO_TOKUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "base/json.h"

/* ---- growable arrays (zero-initialise; free with free(v.v)) ---- */
typedef struct {
    int32_t *v;
    size_t n, cap;
} tok_i32vec;
typedef struct {
    uint32_t *v;
    size_t n, cap;
} tok_u32vec;
typedef struct {
    char *v;
    size_t n, cap;
} tok_bytes;

/* Make *v (capacity *cap elements of elem bytes) hold at least need
 * elements, doubling from 16. 0, or -1 on overflow or OOM (*v unchanged). */
int tok_grow(void **v, size_t *cap, size_t need, size_t elem);
int tok_i32_push(tok_i32vec *a, int32_t x);
int tok_u32_push(tok_u32vec *a, uint32_t x);
int tok_u32_reserve(tok_u32vec *a, size_t extra);
int tok_bytes_append(tok_bytes *b, const char *s, size_t n);
/* Append cp as UTF-8. */
int tok_bytes_put_cp(tok_bytes *b, uint32_t cp);

/* ---- string -> int32 hash map; strings are copied into its pool ---- */
typedef struct tok_map_slot tok_map_slot;
typedef struct {
    char *pool; /* keys, each NUL-terminated */
    size_t pool_len, pool_cap;
    tok_map_slot *slots;
    size_t cap, count; /* cap is 0 or a power of two */
} tok_map;

/* One entry, as tok_map_next() reports it. */
typedef struct {
    const char *key; /* in pool, NUL-terminated */
    size_t len;
    size_t off; /* key's offset in pool */
    int32_t value;
} tok_map_entry;

/* Insert or overwrite (later wins, as a Python dict built from a list).
 * *key_off (if not NULL) gets the key's offset in pool. 0, or -1 on OOM. */
int tok_map_put(tok_map *m, const char *s, size_t len, int32_t value, size_t *key_off);
/* 1 and *value when present, else 0. */
int tok_map_get(const tok_map *m, const char *s, size_t len, int32_t *value);
/* Every entry in slot order: start with *pos = 0; 1 and *e while there is
 * one more, then 0. The map must not change meanwhile. */
int tok_map_next(const tok_map *m, size_t *pos, tok_map_entry *e);
void tok_map_free(tok_map *m);

/* ---- UTF-8 ---- */
/* Decode one well-formed code point at s[*i] (the text was validated) and
 * advance *i. */
uint32_t tok_utf8_next(const char *s, size_t n, size_t *i);
/* Offset of the first byte that is not well-formed UTF-8, or n when all is. */
size_t tok_utf8_invalid_at(const char *s, size_t n);
/* Decode s[0..n) (valid UTF-8) into cps (appended); offs (if not NULL) gets
 * the byte offset of each code point plus a final n. */
int tok_utf8_decode(const char *s, size_t n, tok_u32vec *cps, tok_u32vec *offs);

/* ---- files of a model folder ---- */
/* Nesting depth accepted in tokenizer JSON files (tokenizer.json nests ~5). */
#define TOK_JSON_MAX_DEPTH 32

/* Read dir/name whole, refusing more than max_bytes. 1 read (*buf malloc'd,
 * NUL-terminated), 0 absent, -1 error (message in err). */
int tok_read_file(const char *dir, const char *name, size_t max_bytes, char **buf, size_t *len,
                  char *err, size_t errlen);
/* Read and parse dir/name as JSON (nesting up to TOK_JSON_MAX_DEPTH). 1
 * parsed (*out to json_free), 0 absent, -1 error (message in err). */
int tok_read_json(const char *dir, const char *name, size_t max_bytes, json_value **out, char *err,
                  size_t errlen);

#endif
