/* tokenizer_internal.h — the contract between the tokenizer front end
 * (tokenizer.c) and its two algorithms (wordpiece.c, bpe.c): the tokenizer
 * struct they share and each algorithm's two entry points, load and tokenize
 * (BPE loads from either of two file sets).
 *
 * The front end picks the algorithm, calls its load function to fill the
 * vocabulary (and merges and options), then resolves special and added
 * tokens itself; at encode time it splits the text on added tokens and calls
 * the algorithm's tokenize function on each plain piece. The utilities all
 * of them use are in tokutil.h, which knows nothing of this struct. Not part
 * of the engine's API. */
#ifndef AFLO_TOKENIZER_INTERNAL_H
#define AFLO_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/json.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokutil.h"

/* A token that is matched literally in the text before tokenization
 * (transformers' added tokens: the special tokens and added_tokens_decoder). */
typedef struct {
    char *content;
    size_t len;
    int32_t id;
    bool lstrip, rstrip; /* swallow whitespace on that side */
} tok_added;

struct tokenizer {
    tokenizer_kind kind;
    tok_map vocab;          /* token -> id */
    size_t *id_key_off;     /* id -> offset in vocab.pool, SIZE_MAX if none */
    int32_t vocab_size;     /* max id + 1 over vocab and added tokens */
    size_t max_token_bytes; /* longest vocabulary string */
    int32_t cls_id, sep_id, pad_id, unk_id;
    tok_added *added; /* matched longest first at each position */
    size_t n_added;
    uint8_t added_first_byte[32]; /* bitset of the added tokens' first bytes */

    /* WordPiece (BertTokenizer options) */
    bool do_lower_case;
    bool tokenize_chinese_chars;
    int strip_accents; /* -1 unset (follows do_lower_case), 0, 1 */

    /* byte-level BPE */
    tok_map merges; /* "left right" -> rank */
    bool add_prefix_space;
};

/* Load: fill t's vocabulary and options from the folder's files. cfg is
 * tokenizer_config.json (or NULL). 0, or -1 with a message. */
int wordpiece_load(tokenizer *t, const char *dir, const json_value *cfg, char *err, size_t errlen);
int bpe_load_files(tokenizer *t, const char *dir, const json_value *cfg, char *err, size_t errlen);
int bpe_load_tokenizer_json(tokenizer *t, const json_value *root, const json_value *cfg, char *err,
                            size_t errlen);

/* Tokenize s[0..n) (valid UTF-8, no added tokens in it) appending ids to
 * out; may stop early once out->n >= cap (later tokens would be truncated
 * anyway). 0, or -1 with a message. */
int wordpiece_tokenize(const tokenizer *t, const char *s, size_t n, size_t cap, tok_i32vec *out,
                       char *err, size_t errlen);
int bpe_tokenize(const tokenizer *t, const char *s, size_t n, size_t cap, tok_i32vec *out,
                 char *err, size_t errlen);

#endif
