/* tokenizer.h — text to model input ids and back, in process, for BERT,
 * RoBERTa, DeBERTa-v3 and the LLaMA family of causal LMs.
 *
 * Four tokenizers behind one interface, each a re-implementation of the
 * Hugging Face tokenizer it stands for, so that a model fine-tuned here sees
 * the same ids it would see from transformers:
 *   - WordPiece (BertTokenizer): clean text, CJK split, NFC, lower-case and
 *     strip accents (configurable), punctuation split, greedy longest-match
 *     WordPiece with "##" continuations. Input: [CLS] a [SEP] (b [SEP]).
 *   - byte-level BPE: a pre-tokenisation regex (GPT-2's for RoBERTa; the
 *     LLaMA-3 / Qwen2 Split regex), bytes mapped to printable characters,
 *     merges by rank (ignore_merges: a pre-token in the vocabulary is one
 *     token). RoBERTa input: <s> a </s> (</s> b </s>), token types all 0.
 *   - SentencePiece BPE (LLaMA-2, Mistral, TinyLlama): spaces as "▁" with a
 *     dummy prefix, merges by rank over characters, byte fallback to
 *     "<0xNN>" tokens.
 *   - SentencePiece Unigram (DeBERTa-v3; tokenizer.model, spm.model or
 *     tokenizer.json): Viterbi over piece scores, unknown characters one
 *     [UNK] per run (or bytes with byte fallback).
 *   SentencePiece text is lower-cased when do_lower_case says so, then
 *   normalized by the model's precompiled charsmap (nmt_nfkc), stripped of
 *   extra spaces (remove_extra_whitespaces), given the dummy prefix ▁.
 *   Causal-LM input: [BOS] a [EOS] as add_bos_token / add_eos_token (or the
 *   tokenizer.json template) say; pairs repeat it for b (token type 1). A
 *   SentencePiece model whose vocabulary has [CLS] and [SEP] is an
 *   encoder's (DeBERTa-v3): [CLS] a [SEP] b [SEP] like BERT's.
 * Added tokens written literally in the text ("[SEP]", "<mask>", "<s>",
 * "<|eot_id|>") become their ids, as in transformers: they are split out
 * first and each plain piece between them is tokenized on its own (so the
 * SentencePiece dummy prefix goes before each piece, as transformers'
 * legacy Llama tokenizers do). Character classes come from Python's
 * unicodedata (see unicode_tables.h).
 *
 * tokenizer_load_dir() picks the kind from the files of a Hugging Face model
 * folder: vocab.txt => WordPiece; else vocab.json + merges.txt => byte-level
 * BPE; else tokenizer.json whose model.type is "BPE": byte-level when its
 * pre-tokenizer is ByteLevel (alone, or after a Split with the LLaMA-3 or
 * Qwen2 regex; an NFC normalizer, as Qwen2's, is applied), else
 * SentencePiece-style (Prepend/Replace normalizer or Metaspace
 * pre-tokenizer; else tokenizer.json whose model.type is "Unigram"
 * (SentencePiece's as transformers converts it: Precompiled charsmap,
 * Strip, Replace " {2,}" or WhitespaceSplit, Metaspace); else tokenizer.model or
 * spm.model (SentencePiece BPE or Unigram, with its normalizer: identity or
 * a precompiled charsmap such as nmt_nfkc). tokenizer_config.json and
 * special_tokens_map.json, when present, supply do_lower_case (default
 * true for WordPiece, false for SentencePiece), strip_accents (default:
 * follows do_lower_case),
 * tokenize_chinese_chars (default true), add_prefix_space (default false),
 * add_bos_token / add_eos_token, special token names and
 * added_tokens_decoder. Not supported (load fails with a message):
 * do_basic_tokenize = false, split_by_punct = true, WordPiece from
 * tokenizer.json alone, other tokenizer.json normalizers and
 * pre-tokenizers, other Split regexes. The
 * "normalized" and "single_word" flags of added tokens are ignored; tokens
 * with lstrip/rstrip are honoured.
 *
 * A loaded tokenizer is immutable: tokenizer_encode() may be called from
 * several threads at once (each call allocates its own scratch space).
 * Invalid UTF-8 in the text is an error, never a crash. */
#ifndef AFLO_TOKENIZER_H
#define AFLO_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

typedef enum {
    TOKENIZER_WORDPIECE,  /* BERT */
    TOKENIZER_BPE,        /* byte-level BPE: GPT-2/RoBERTa, LLaMA-3, Qwen2 */
    TOKENIZER_SPM_BPE,    /* SentencePiece BPE: LLaMA-2, Mistral, TinyLlama */
    TOKENIZER_SPM_UNIGRAM /* SentencePiece Unigram: DeBERTa-v3 (spm.model, tokenizer.json) */
} tokenizer_kind;

/* BertTokenizer's max_input_chars_per_word: longer words become [UNK]. */
#define WORDPIECE_MAX_INPUT_CHARS_PER_WORD 100
/* Largest tokenizer file read (tokenizer.json of large multilingual models
 * is ~20 MB); a bound so a wrong path cannot make us slurp a huge file. */
#define TOKENIZER_MAX_FILE_BYTES ((size_t)256 << 20)

/* Largest id accepted (exclusive): real vocabularies stay below ~300k; the
 * bound keeps a corrupt file from making us allocate an id table for 2^31. */
#define TOKENIZER_MAX_VOCAB (1 << 24)

/* The tokenizer files a model folder may hold: those tokenizer_load_dir
 * reads, and added_tokens.json, which transformers' slow tokenizers read. A
 * copy of a tokenizer is a copy of these. */
extern const char *const tokenizer_file_names[];
extern const int tokenizer_file_count;

/* Load from a model folder. NULL on error, with a message in err. */
tokenizer *tokenizer_load_dir(const char *dir, char *err, size_t errlen);
/* Whether dir holds tokenizer files tokenizer_load_dir can use (the same
 * choice of files; tokenizer.json is parsed for its model type), without
 * building the vocabulary: 0; TOKENIZER_NONE when there are no tokenizer
 * files at all (a causal LM trained on token ids needs none); -1 when they
 * are unusable. err says why whenever it is not 0. */
#define TOKENIZER_NONE 1
int tokenizer_probe_dir(const char *dir, char *err, size_t errlen);
void tokenizer_free(tokenizer *t);

/* Tokenize text_a (and text_b when not NULL; "" is an empty second
 * segment, not a single sequence) into model input with special tokens,
 * truncated longest-first (one token at a time from the longer segment, the
 * second on ties — as transformers' "longest_first") so the total is
 * <= max_len. ids (and type_ids, unless NULL) must hold max_len entries;
 * *len gets the count. Token types: WordPiece and DeBERTa-v3 0 for
 * [CLS] a [SEP], 1 for b [SEP]; RoBERTa all 0; causal LMs 0 for a, 1 for
 * b. Returns 0, or -1 with a message (invalid UTF-8, max_len smaller than
 * the special tokens, out of memory). */
int tokenizer_encode(const tokenizer *t, const char *text_a, const char *text_b, int max_len,
                     int32_t *ids, int32_t *type_ids, int *len, char *err, size_t errlen);
/* Same with explicit byte lengths (texts may contain NUL, which is dropped
 * like any control character); text_b == NULL for a single sequence. */
int tokenizer_encode_n(const tokenizer *t, const char *text_a, size_t len_a, const char *text_b,
                       size_t len_b, int max_len, int32_t *ids, int32_t *type_ids, int *len,
                       char *err, size_t errlen);

/* The ids of text (len bytes) alone: no special tokens added, no
 * truncation (causal-LM data joins prompt and completion itself). *ids is
 * malloc'd (free it; NULL when *n is 0). 0, or -1 with a message. */
int tokenizer_tokenize(const tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n,
                       char *err, size_t errlen);
/* Ids back to text (see decode.c for each kind's rules); skip_special drops
 * special tokens (BOS, EOS, <|...|>). *text is malloc'd and NUL-terminated,
 * *len its length. Any id outside the vocabulary is an error. */
int tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                     char **text, size_t *len, char *err, size_t errlen);

tokenizer_kind tokenizer_kind_of(const tokenizer *t);
int32_t tokenizer_pad_id(const tokenizer *t);
/* First token of every input: [CLS] (WordPiece) or <s> (BPE). */
int32_t tokenizer_cls_id(const tokenizer *t);
/* Separator / end token: [SEP] or </s>. */
int32_t tokenizer_sep_id(const tokenizer *t);
/* [UNK] / <unk>; -1 when the BPE vocabulary has none. */
int32_t tokenizer_unk_id(const tokenizer *t);
/* Causal LMs: BOS / EOS ids (-1 when none) and whether tokenizer_encode
 * puts them around a sequence (always 0 for encoder tokenizers, whose
 * [CLS]/<s> and [SEP]/</s> are the cls/sep ids above). */
int32_t tokenizer_bos_id(const tokenizer *t);
int32_t tokenizer_eos_id(const tokenizer *t);
int tokenizer_adds_bos(const tokenizer *t);
int tokenizer_adds_eos(const tokenizer *t);
/* One more than the largest id the tokenizer can produce (vocabulary and
 * added tokens): the model's embedding table must have at least this many rows. */
int32_t tokenizer_vocab_size(const tokenizer *t);
/* The chat template text (tokenizer_config.json's "chat_template": the
 * string, or of a list of {"name", "template"} the "default" one; else the
 * folder's chat_template.jinja), NUL-terminated; NULL when there is none.
 * chat_template.h renders it. */
const char *tokenizer_chat_template(const tokenizer *t);
/* Special tokens added around one sequence (pair = 0) or a pair (pair = 1). */
int tokenizer_num_special_tokens(const tokenizer *t, int pair);
/* The vocabulary string of an id (NUL-terminated), or NULL. For logs/tests. */
const char *tokenizer_id_to_token(const tokenizer *t, int32_t id);

#endif
