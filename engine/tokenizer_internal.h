/* tokenizer_internal.h — what tokenizer.c, wordpiece.c and bpe.c share.
 *
 * tokenizer.c owns the common parts: the tokenizer struct, a string -> id
 * hash map (vocabularies and BPE merge ranks), growable arrays, UTF-8
 * decoding, file and config reading, splitting text on added/special tokens,
 * and assembling the model input (special tokens, truncation). The two
 * algorithm files fill the struct at load time and turn one piece of plain
 * text (no special tokens in it) into ids. Not part of the engine's API. */
#ifndef AFLO_TOKENIZER_INTERNAL_H
#define AFLO_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "tokenizer.h"

/* ---- growable arrays (zero-initialise; free with free(v.v)) ---- */
typedef struct { int32_t *v; size_t n, cap; } tok_i32vec;
typedef struct { uint32_t *v; size_t n, cap; } tok_u32vec;
typedef struct { char *v; size_t n, cap; } tok_bytes;

int tok_i32_push(tok_i32vec *a, int32_t x);
int tok_u32_push(tok_u32vec *a, uint32_t x);
int tok_u32_reserve(tok_u32vec *a, size_t extra);
int tok_bytes_append(tok_bytes *b, const char *s, size_t n);
/* Append cp as UTF-8. */
int tok_bytes_put_cp(tok_bytes *b, uint32_t cp);

/* ---- string -> int32 hash map; strings are copied into its pool ---- */
typedef struct tok_map_slot tok_map_slot;
typedef struct {
    char *pool;             /* keys, each NUL-terminated */
    size_t pool_len, pool_cap;
    tok_map_slot *slots;
    size_t cap, count;      /* cap is 0 or a power of two */
} tok_map;

/* Insert or overwrite (later wins, as a Python dict built from a list).
 * *key_off (if not NULL) gets the key's offset in pool. 0, or -1 on OOM. */
int tok_map_put(tok_map *m, const char *s, size_t len, int32_t value, size_t *key_off);
/* 1 and *value when present, else 0. */
int tok_map_get(const tok_map *m, const char *s, size_t len, int32_t *value);
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

/* ---- the tokenizer ---- */

/* A token that is matched literally in the text before tokenization
 * (transformers' added tokens: the special tokens and added_tokens_decoder). */
typedef struct {
    char *content;
    size_t len;
    int32_t id;
    bool lstrip, rstrip;    /* swallow whitespace on that side */
} tok_added;

struct tokenizer {
    tokenizer_kind kind;
    tok_map vocab;              /* token -> id */
    size_t *id_key_off;         /* id -> offset in vocab.pool, SIZE_MAX if none */
    int32_t vocab_size;         /* max id + 1 over vocab and added tokens */
    size_t max_token_bytes;     /* longest vocabulary string */
    int32_t cls_id, sep_id, pad_id, unk_id;
    tok_added *added;           /* matched longest first at each position */
    size_t n_added;
    uint8_t added_first_byte[32];  /* bitset of the added tokens' first bytes */

    /* WordPiece (BertTokenizer options) */
    bool do_lower_case;
    bool tokenize_chinese_chars;
    int strip_accents;          /* -1 unset (follows do_lower_case), 0, 1 */

    /* byte-level BPE */
    tok_map merges;             /* "left right" -> rank */
    bool add_prefix_space;
};

/* Read a whole file. 1 read (*buf malloc'd, NUL-terminated), 0 absent,
 * -1 error (message in err). */
int tok_read_file(const char *dir, const char *name, char **buf, size_t *len,
                  char *err, size_t errlen);

/* Algorithm back ends. cfg is tokenizer_config.json (or NULL). */
int wordpiece_load(tokenizer *t, const char *dir, const json_value *cfg, char *err, size_t errlen);
int bpe_load_files(tokenizer *t, const char *dir, const json_value *cfg, char *err, size_t errlen);
int bpe_load_tokenizer_json(tokenizer *t, const json_value *root, const json_value *cfg,
                            char *err, size_t errlen);

/* Tokenize s[0..n) (valid UTF-8, no added tokens in it) appending ids to
 * out; may stop early once out->n >= cap (later tokens would be truncated
 * anyway). 0, or -1 with a message. */
int wordpiece_tokenize(const tokenizer *t, const char *s, size_t n, size_t cap,
                       tok_i32vec *out, char *err, size_t errlen);
int bpe_tokenize(const tokenizer *t, const char *s, size_t n, size_t cap,
                 tok_i32vec *out, char *err, size_t errlen);

#endif
