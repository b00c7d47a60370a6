/* tokenizer_internal.h — the contract between the tokenizer front end
 * (tokenizer.c) and its algorithms (wordpiece.c; bpe.c; spm.c with
 * spmodel.c and unigram.c for SentencePiece; decode.c back to text): the
 * tokenizer struct they share and each algorithm's entry points, load and
 * tokenize (BPE loads from vocab.json + merges.txt or tokenizer.json,
 * SentencePiece from tokenizer.json, tokenizer.model or spm.model).
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
#include "tokenizer/charsmap.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokutil.h"

/* A token that is matched literally in the text before tokenization
 * (transformers' added tokens: the special tokens and added_tokens_decoder). */
typedef struct {
    char *content;
    size_t len;
    int32_t id;
    bool lstrip, rstrip; /* swallow whitespace on that side */
    bool special;        /* dropped by tokenizer_decode(skip_special) */
} tok_added;

/* Which regex splits text into pre-tokens for byte-level BPE. */
typedef enum {
    PRETOK_GPT2,   /* GPT-2 / RoBERTa: 's|'t|...| ?\p{L}+| ?\p{N}+|... */
    PRETOK_LLAMA3, /* tiktoken cl100k-style (LLaMA-3): digits in runs of <= 3 */
    PRETOK_QWEN2   /* the same with single digits (Qwen2) */
} tok_pretok;

/* Where SentencePiece's dummy prefix "▁" goes (per plain piece of text,
 * i.e. between added tokens). */
typedef enum {
    SP_PREFIX_NEVER,
    SP_PREFIX_ALWAYS, /* every piece (Prepend normalizer; sentencepiece) */
    SP_PREFIX_FIRST   /* only the piece at the start of the text (Metaspace "first") */
} tok_sp_prefix;

/* Special tokens put around the sequences of one model input: slot 0 before
 * text_a, 1 after it, 2 before text_b, 3 after it. */
typedef struct {
    int32_t ids[4][2];
    uint8_t n[4];
    int32_t type_b; /* token type of text_b and its slots */
} tok_wrap;

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

    /* WordPiece (BertTokenizer options); do_lower_case also SentencePiece's */
    bool do_lower_case;
    bool tokenize_chinese_chars;
    int strip_accents; /* -1 unset (follows do_lower_case), 0, 1 */

    /* BPE (byte-level and SentencePiece-style) */
    tok_map merges; /* "left right" -> rank */
    bool add_prefix_space;
    tok_pretok pretok;
    bool ignore_merges; /* a pre-token that is in the vocabulary is one token */
    bool byte_fallback; /* unknown symbols become their <0xNN> byte tokens */
    bool fuse_unk;      /* consecutive unknowns are one <unk> */
    bool nfc;           /* tokenizer.json normalizer NFC (Qwen2) */
    int32_t byte_ids[256];

    /* SentencePiece conventions (TOKENIZER_SPM_BPE / TOKENIZER_SPM_UNIGRAM) */
    tok_sp_prefix sp_prefix;
    bool sp_prefix_unless_space; /* Metaspace: no prefix when the text starts with one */
    bool sp_escape_spaces;       /* ' ' -> U+2581 */
    bool sp_split;               /* Metaspace split: BPE each "▁word" on its own */
    bool sp_strip_spaces;        /* strip ' ' at both ends (remove_extra_whitespaces, Strip) */
    bool sp_collapse_spaces;     /* runs of ' ' become one (the same, Replace " {2,}") */
    tok_charsmap *charsmap;      /* the model's precompiled normalizer, or NULL */
    bool sp_encoder;             /* [CLS] a [SEP] b [SEP] input (DeBERTa-v3), not BOS/EOS */
    float *scores;               /* Unigram: log-probability of each id (NAN: not a piece) */
    float unk_score;             /* Unigram: the score of an unknown character */

    /* model input */
    int32_t bos_id, eos_id;
    tok_wrap wrap;
    char *chat_template; /* tokenizer_config.json's, or chat_template.jinja; NULL if none */
};

/* Load: fill t's vocabulary and options from the folder's files. cfg is
 * tokenizer_config.json (or NULL). 0, or -1 with a message. */
int wordpiece_load(tokenizer *t, const char *dir, const json_value *cfg, char *err, size_t errlen);
int bpe_load_files(tokenizer *t, const char *dir, const json_value *cfg, char *err, size_t errlen);
int bpe_load_tokenizer_json(tokenizer *t, const json_value *root, const json_value *cfg, char *err,
                            size_t errlen);
/* model: {vocab, merges, unk_token, byte_fallback, fuse_unk, ignore_merges}
 * of a tokenizer.json BPE, for both loaders. */
int bpe_load_model_json(tokenizer *t, const json_value *model, char *err, size_t errlen);
/* tokenizer.json BPE with SentencePiece conventions (normalizer or Metaspace
 * pre-tokenizer, byte fallback): spm.c. */
int spm_load_tokenizer_json(tokenizer *t, const json_value *root, char *err, size_t errlen);
/* tokenizer.json Unigram (SentencePiece's as transformers converts it:
 * Precompiled charsmap, Strip, Replace or WhitespaceSplit, Metaspace): spm.c. */
int spm_load_unigram_json(tokenizer *t, const json_value *root, char *err, size_t errlen);
/* A SentencePiece model file, dir/file (tokenizer.model, spm.model:
 * ModelProto, BPE or Unigram): spmodel.c. */
int spmodel_load(tokenizer *t, const char *dir, const char *file, char *err, size_t errlen);
/* Add a literal token (special: dropped by decode with skip_special); a
 * token already listed keeps its entry. 0, or -1 on OOM. */
int tok_added_push(tokenizer *t, const char *s, size_t len, int32_t id, bool special);
/* Fill t->byte_ids from the vocabulary's "<0xNN>" tokens (-1 where absent). */
void spm_find_byte_tokens(tokenizer *t);

/* Tokenize s[0..n) (valid UTF-8, no added tokens in it) appending ids to
 * out; may stop early once out->n >= cap (later tokens would be truncated
 * anyway). 0, or -1 with a message. */
int wordpiece_tokenize(const tokenizer *t, const char *s, size_t n, size_t cap, tok_i32vec *out,
                       char *err, size_t errlen);
int bpe_tokenize(const tokenizer *t, const char *s, size_t n, size_t cap, tok_i32vec *out,
                 char *err, size_t errlen);
/* SentencePiece kinds: s is one plain piece of the text, at_start whether it
 * begins the text (for SP_PREFIX_FIRST). Normalizes, then BPE or Unigram. */
int spm_tokenize(const tokenizer *t, const char *s, size_t n, bool at_start, size_t cap,
                 tok_i32vec *out, char *err, size_t errlen);

/* BPE merges over the code points of w[0..n) (valid UTF-8, n > 0), then
 * each symbol's id (byte fallback / unknown as t says). Used by both BPE
 * flavours; scratch is opaque (bpe_scratch_free when done). */
typedef struct bpe_scratch bpe_scratch;
bpe_scratch *bpe_scratch_new(void);
void bpe_scratch_free(bpe_scratch *s);
int bpe_merge_word(const tokenizer *t, const char *w, size_t n, bpe_scratch *s, tok_i32vec *out,
                   char *err, size_t errlen);
/* GPT-2's bytes_to_unicode inverse: the byte a character stands for, or -1. */
int bpe_char_byte(uint32_t cp);
/* Unigram: the best segmentation of w[0..n) by piece scores (unigram.c). */
int unigram_word(const tokenizer *t, const char *w, size_t n, tok_i32vec *out, char *err,
                 size_t errlen);
/* Append the id of a symbol missing from the vocabulary: its byte tokens
 * with byte fallback, else <unk> (once per run with fuse_unk), else fail. */
int tok_push_unknown(const tokenizer *t, const char *sym, size_t len, tok_i32vec *out,
                     bool *prev_unk, char *err, size_t errlen);

#endif
