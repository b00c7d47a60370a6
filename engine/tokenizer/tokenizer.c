/* tokenizer.c — the tokenizer front end: loading a Hugging Face tokenizer
 * folder, special and added tokens, and building model input. The
 * algorithms (wordpiece.c, bpe.c, spm.c) are reached through
 * tokenizer_internal.h; the utilities they all use (arrays, hash map,
 * UTF-8, file reading) are in tokutil.c.
 *
 * Loading: the file set decides the kind (see tokenizer.h); the algorithm
 * file (wordpiece.c / bpe.c / spm.c / spmodel.c) reads its vocabulary into
 * t->vocab, then this
 * file resolves the special tokens by name (tokenizer_config.json and
 * special_tokens_map.json may rename them) and builds the list of added
 * tokens that are matched literally in text, as transformers' Trie does.
 *
 * Encoding one sequence: validate UTF-8, split the text on added tokens
 * (longest match at the leftmost position; lstrip/rstrip tokens swallow the
 * neighbouring whitespace), hand each plain piece to the algorithm and each
 * added token to its id. Then the pair is truncated longest-first and
 * wrapped in special tokens: a table of what goes before and after each
 * sequence (make_wrap: [CLS]/[SEP] for encoders, BOS/EOS for causal LMs;
 * a SentencePiece model is an encoder's when its vocabulary has [CLS] and
 * [SEP], detect_spm_encoder).
 *
 * Truncation only ever keeps the first max_len - specials tokens of each
 * sequence, and longest-first gives the same result whether a sequence's
 * length is its true length or that length capped at the budget (lengths
 * above the budget only ever lose tokens down to the budget first), so each
 * sequence is tokenized only until it has `budget` tokens: a megabyte of text
 * costs no more than its first few hundred words. */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/tokutil.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/errmsg.h"
#include "base/folder.h"
#include "tokenizer/unicode_tables.h"

/* ------------------------------------------------------------------ */
/* Special and added tokens                                             */

/* A special token name: "[CLS]" or {"content": "[CLS]", ...} (the
 * AddedToken serialisation). NULL when absent or null. */
static const char *token_name(const json_value *obj, const char *key, size_t *len) {
    const json_value *v = json_get(obj, key);
    if (json_type_of(v) == JSON_OBJECT) v = json_get(v, "content");
    if (json_type_of(v) != JSON_STRING) return NULL;
    return json_string(v, len);
}

static int added_find(const tokenizer *t, const char *s, size_t len) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && memcmp(t->added[i].content, s, len) == 0) return (int)i;
    return -1;
}

static int added_push(tokenizer *t, const char *s, size_t len, int32_t id, bool lstrip, bool rstrip,
                      bool special) {
    tok_added *na = realloc(t->added, (t->n_added + 1) * sizeof *na);
    if (!na) return -1;
    t->added = na;
    char *c = malloc(len + 1);
    if (!c) return -1;
    memcpy(c, s, len);
    c[len] = '\0';
    t->added[t->n_added++] = (tok_added){c, len, id, lstrip, rstrip, special};
    return 0;
}

int tok_added_push(tokenizer *t, const char *s, size_t len, int32_t id, bool special) {
    if (added_find(t, s, len) >= 0) return 0;
    return added_push(t, s, len, id, false, false, special);
}

/* Entries {content, lstrip, rstrip} with the id either in field "id"
 * (tokenizer.json added_tokens) or given by the caller (added_tokens_decoder
 * keys). Later entries with the same content replace earlier ones. */
static int add_entry(tokenizer *t, const json_value *e, int64_t id, const char *where, char *err,
                     size_t errlen) {
    size_t clen;
    const char *c = json_string(json_get(e, "content"), &clen);
    if (!c || clen == 0 || id < 0 || id > INT32_MAX - 1)
        return set_err(err, errlen, "%s: added token without content or with a bad id", where);
    if (tok_utf8_invalid_at(c, clen) < clen)
        return set_err(err, errlen, "%s: added token is not valid UTF-8", where);
    bool ls = json_bool(json_get(e, "lstrip")), rs = json_bool(json_get(e, "rstrip"));
    bool sp = json_bool(json_get(e, "special"));
    int k = added_find(t, c, clen);
    if (k >= 0) {
        t->added[k].id = (int32_t)id;
        t->added[k].lstrip = ls;
        t->added[k].rstrip = rs;
        t->added[k].special = sp;
        return 0;
    }
    if (added_push(t, c, clen, (int32_t)id, ls, rs, sp))
        return set_err(err, errlen, "out of memory");
    return 0;
}

static int load_added_tokens(tokenizer *t, const json_value *cfg, const json_value *tj, char *err,
                             size_t errlen) {
    const json_value *dec = json_get(cfg, "added_tokens_decoder");
    if (json_type_of(dec) == JSON_OBJECT) {
        for (size_t i = 0; i < json_len(dec); i++) {
            const char *key = json_key_at(dec, i, NULL);
            char *end;
            errno = 0;
            long long id = strtoll(key, &end, 10);
            if (errno || end == key || *end != '\0')
                return set_err(err, errlen,
                               "tokenizer_config.json: added_tokens_decoder key "
                               "\"%s\" is not an id",
                               key);
            if (add_entry(t, json_at(dec, i), id, "tokenizer_config.json", err, errlen)) return -1;
        }
        return 0;
    }
    const json_value *arr = json_get(tj, "added_tokens");
    for (size_t i = 0; i < json_len(arr); i++) {
        const json_value *e = json_at(arr, i);
        const json_value *idv = json_get(e, "id");
        int64_t id = json_is_int(idv) ? json_int(idv) : -1;
        if (add_entry(t, e, id, "tokenizer.json", err, errlen)) return -1;
    }
    return 0;
}

/* Whether the model input is a causal LM's ([BOS] text [EOS], as the
 * config says) rather than an encoder's ([CLS] text [SEP]). */
static bool is_causal(const tokenizer *t) {
    return ((t->kind == TOKENIZER_SPM_BPE || t->kind == TOKENIZER_SPM_UNIGRAM) && !t->sp_encoder) ||
           (t->kind == TOKENIZER_BPE && t->pretok != PRETOK_GPT2);
}

/* The special-token conventions a tokenizer follows, the columns of
 * special_spec's default names. */
typedef enum {
    STYLE_WORDPIECE,   /* BERT: [CLS] [SEP] [PAD] [UNK] [MASK] */
    STYLE_BPE,         /* RoBERTa: <s> </s> <pad> <unk> <mask> */
    STYLE_SPM_CAUSAL,  /* LLaMA's SentencePiece: <unk> <s> </s> only */
    STYLE_SPM_ENCODER, /* DeBERTa-v3's SentencePiece: BERT's names */
    STYLE_COUNT
} special_style;

static special_style style_of(const tokenizer *t) {
    if (t->kind == TOKENIZER_WORDPIECE) return STYLE_WORDPIECE;
    if (t->kind == TOKENIZER_BPE) return STYLE_BPE;
    return t->sp_encoder ? STYLE_SPM_ENCODER : STYLE_SPM_CAUSAL;
}

typedef struct {
    const char *key;               /* tokenizer_config.json / special_tokens_map.json key */
    const char *dflt[STYLE_COUNT]; /* default name per style (byte-level causal BPE: none) */
    bool required_by_encoders, lstrip_bpe; /* RobertaTokenizer gives <mask> lstrip=True */
    bool add_if_missing;                   /* DebertaV2Tokenizer adds [MASK] after the pieces */
} special_spec;

/* Encoders need [CLS] [SEP] [PAD] ([UNK] for WordPiece); a causal LM
 * needs none of them (LLaMA has no pad token). DebertaV2Tokenizer's BOS and
 * EOS are its [CLS] and [SEP]. */
enum { SPEC_CLS, SPEC_SEP, SPEC_PAD, SPEC_UNK, SPEC_MASK, SPEC_BOS, SPEC_EOS, SPEC_COUNT };
static const special_spec special_specs[SPEC_COUNT] = {
    [SPEC_CLS] = {"cls_token", {"[CLS]", "<s>", NULL, "[CLS]"}, true, false, false},
    [SPEC_SEP] = {"sep_token", {"[SEP]", "</s>", NULL, "[SEP]"}, true, false, false},
    [SPEC_PAD] = {"pad_token", {"[PAD]", "<pad>", NULL, "[PAD]"}, true, false, false},
    [SPEC_UNK] = {"unk_token", {"[UNK]", "<unk>", "<unk>", "[UNK]"}, false, false, false},
    [SPEC_MASK] = {"mask_token", {"[MASK]", "<mask>", NULL, "[MASK]"}, false, true, true},
    [SPEC_BOS] = {"bos_token", {NULL, "<s>", "<s>", "[CLS]"}, false, false, false},
    [SPEC_EOS] = {"eos_token", {NULL, "</s>", "</s>", "[SEP]"}, false, false, false},
};

/* The name of special token spec in style: special_tokens_map.json's,
 * else tokenizer_config.json's, else the style's default (NULL: none). */
static const char *special_name(const json_value *cfg, const json_value *stm, int spec,
                                special_style style, bool causal, size_t *len) {
    const special_spec *sp = &special_specs[spec];
    const char *name = token_name(stm, sp->key, len);
    if (!name) name = token_name(cfg, sp->key, len);
    if (!name) {
        name = style == STYLE_BPE && causal ? NULL : sp->dflt[style];
        *len = name ? strlen(name) : 0;
    }
    return name;
}

/* The id a token name has, as an added token or in the vocabulary; -1. */
static int32_t token_id(const tokenizer *t, const char *name, size_t len) {
    int32_t id = -1;
    if (!name || len == 0) return -1;
    int k = added_find(t, name, len);
    if (k >= 0) return t->added[k].id;
    return tok_map_get(&t->vocab, name, len, &id) ? id : -1;
}

/* A SentencePiece model is an encoder's (DeBERTa-v3, ALBERT) when its
 * vocabulary has the [CLS] and [SEP] tokens (by the config's names or
 * BERT's): they, not BOS/EOS, wrap its input. LLaMA-family models have
 * neither. */
static void detect_spm_encoder(tokenizer *t, const json_value *cfg, const json_value *stm) {
    if (t->kind != TOKENIZER_SPM_BPE && t->kind != TOKENIZER_SPM_UNIGRAM) return;
    size_t lc, ls;
    const char *cls = special_name(cfg, stm, SPEC_CLS, STYLE_SPM_ENCODER, false, &lc);
    const char *sep = special_name(cfg, stm, SPEC_SEP, STYLE_SPM_ENCODER, false, &ls);
    t->sp_encoder = token_id(t, cls, lc) >= 0 && token_id(t, sep, ls) >= 0;
}

/* One more than the largest id of the vocabulary and the added tokens. */
static int64_t next_free_id(const tokenizer *t) {
    int64_t maxid = -1;
    tok_map_entry e;
    for (size_t pos = 0; tok_map_next(&t->vocab, &pos, &e);)
        if (e.value > maxid) maxid = e.value;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id > maxid) maxid = t->added[i].id;
    return maxid + 1;
}

static int resolve_special(tokenizer *t, const json_value *cfg, const json_value *stm, char *err,
                           size_t errlen) {
    bool causal = is_causal(t);
    special_style style = style_of(t);
    int32_t mask = -1;
    int32_t *slots[SPEC_COUNT] = {&t->cls_id, &t->sep_id, &t->pad_id, &t->unk_id,
                                  &mask,      &t->bos_id, &t->eos_id};
    for (int i = 0; i < SPEC_COUNT; i++) {
        const special_spec *sp = &special_specs[i];
        size_t len = 0;
        const char *name = special_name(cfg, stm, i, style, causal, &len);
        int32_t id = -1;
        if (name && len > 0) {
            int k = added_find(t, name, len);
            if (k >= 0)
                id = t->added[k].id;
            else if (tok_map_get(&t->vocab, name, len, &id)) {
                if (added_push(t, name, len, id, style == STYLE_BPE && sp->lstrip_bpe, false, true))
                    return set_err(err, errlen, "out of memory");
            } else if (sp->add_if_missing && style == STYLE_SPM_ENCODER) {
                int64_t next = next_free_id(t);
                if (next > INT32_MAX - 1) return set_err(err, errlen, "too many tokens");
                id = (int32_t)next;
                if (added_push(t, name, len, id, false, false, true))
                    return set_err(err, errlen, "out of memory");
            }
        }
        bool required = sp->required_by_encoders && !causal;
        if (i == SPEC_UNK) required = style == STYLE_WORDPIECE;
        if (id < 0 && required)
            return set_err(err, errlen, "the vocabulary has no %s \"%.*s\"", sp->key,
                           (int)(len > 64 ? 64 : len), name ? name : "");
        if (id >= 0 || *slots[i] < 0) *slots[i] = id;
    }
    return 0;
}

/* A causal LM's BOS/EOS: tokenizer_config.json's add_bos_token /
 * add_eos_token when given (transformers' Llama tokenizers rebuild their
 * post-processor from them), else tokenizer.json's TemplateProcessing
 * "single" template (special tokens before / after $A: LLaMA-3's
 * "<|begin_of_text|> $A"), else SentencePiece's defaults (BOS, no EOS) or,
 * for byte-level models, none. */
static int causal_wrap(tokenizer *t, const json_value *cfg, const json_value *tj, char *err,
                       size_t errlen) {
    bool spm = t->kind != TOKENIZER_BPE;
    bool add_bos = spm, add_eos = false;
    const json_value *pp = json_get(tj, "post_processor");
    const char *ptype = json_string(json_get(pp, "type"), NULL);
    if (ptype && strcmp(ptype, "Sequence") == 0) { /* LLaMA-3: [ByteLevel, TemplateProcessing] */
        const json_value *procs = json_get(pp, "processors");
        for (size_t i = 0; i < json_len(procs); i++) {
            const char *pt = json_string(json_get(json_at(procs, i), "type"), NULL);
            if (pt && strcmp(pt, "TemplateProcessing") == 0) {
                pp = json_at(procs, i);
                ptype = pt;
                break;
            }
        }
    }
    if (ptype && strcmp(ptype, "TemplateProcessing") == 0) {
        const json_value *single = json_get(pp, "single");
        bool after = false;
        add_bos = add_eos = false;
        for (size_t i = 0; i < json_len(single); i++) {
            const json_value *it = json_at(single, i);
            if (json_type_of(json_get(it, "Sequence")) == JSON_OBJECT) {
                after = true;
                continue;
            }
            size_t nl;
            const char *name = json_string(json_get(json_get(it, "SpecialToken"), "id"), &nl);
            int32_t id = -1;
            int k = name ? added_find(t, name, nl) : -1;
            if (k >= 0)
                id = t->added[k].id;
            else if (!name || !tok_map_get(&t->vocab, name, nl, &id))
                return set_err(err, errlen,
                               "tokenizer.json: post_processor names a special token that is "
                               "not in the vocabulary");
            /* The template's tokens are the ones used, whatever the names. */
            if (!after) {
                add_bos = true;
                t->bos_id = id;
            } else {
                add_eos = true;
                t->eos_id = id;
            }
        }
    }
    const json_value *b = json_get(cfg, "add_bos_token"), *e = json_get(cfg, "add_eos_token");
    if (json_type_of(b) == JSON_BOOL) add_bos = json_bool(b);
    if (json_type_of(e) == JSON_BOOL) add_eos = json_bool(e);
    if ((add_bos && t->bos_id < 0) || (add_eos && t->eos_id < 0))
        return set_err(err, errlen, "the tokenizer adds a %s token but the vocabulary has none",
                       add_bos && t->bos_id < 0 ? "BOS" : "EOS");
    tok_wrap *w = &t->wrap;
    if (add_bos) w->ids[0][w->n[0]++] = t->bos_id, w->ids[2][w->n[2]++] = t->bos_id;
    if (add_eos) w->ids[1][w->n[1]++] = t->eos_id, w->ids[3][w->n[3]++] = t->eos_id;
    w->type_b = 1; /* LlamaTokenizer's token types: 0 for a, 1 for b */
    return 0;
}

static int make_wrap(tokenizer *t, const json_value *cfg, const json_value *tj, char *err,
                     size_t errlen) {
    tok_wrap *w = &t->wrap;
    memset(w, 0, sizeof *w);
    if (is_causal(t)) return causal_wrap(t, cfg, tj, err, errlen);
    /* BERT and DeBERTa: [CLS] a [SEP] b [SEP], types 1 from b on;
     * RoBERTa: <s> a </s></s> b </s>, types all 0. */
    bool roberta = t->kind == TOKENIZER_BPE;
    w->ids[0][w->n[0]++] = t->cls_id;
    w->ids[1][w->n[1]++] = t->sep_id;
    if (roberta) w->ids[2][w->n[2]++] = t->sep_id;
    w->ids[3][w->n[3]++] = t->sep_id;
    w->type_b = roberta ? 0 : 1;
    return 0;
}

static int cmp_added_longest_first(const void *a, const void *b) {
    const tok_added *x = a, *y = b;
    return (x->len < y->len) - (x->len > y->len);
}

static int finish_load(tokenizer *t, const json_value *cfg, const json_value *stm,
                       const json_value *tj, char *err, size_t errlen) {
    if (load_added_tokens(t, cfg, tj, err, errlen)) return -1;
    detect_spm_encoder(t, cfg, stm);
    if (resolve_special(t, cfg, stm, err, errlen) || make_wrap(t, cfg, tj, err, errlen)) return -1;
    /* qsort's pointer must not be NULL even for no elements (C11 7.22.5). */
    if (t->n_added) qsort(t->added, t->n_added, sizeof *t->added, cmp_added_longest_first);
    memset(t->added_first_byte, 0, sizeof t->added_first_byte);
    int64_t maxid = -1;
    for (size_t i = 0; i < t->n_added; i++) {
        unsigned char c = (unsigned char)t->added[i].content[0];
        t->added_first_byte[c >> 3] |= (uint8_t)(1u << (c & 7));
        if (t->added[i].id > maxid) maxid = t->added[i].id;
    }
    tok_map_entry e;
    for (size_t pos = 0; tok_map_next(&t->vocab, &pos, &e);) {
        if (e.value > maxid) maxid = e.value;
        if (e.len > t->max_token_bytes) t->max_token_bytes = e.len;
    }
    if (maxid + 1 > TOKENIZER_MAX_VOCAB)
        return set_err(err, errlen, "token id %lld is beyond the supported vocabulary size %d",
                       (long long)maxid, TOKENIZER_MAX_VOCAB);
    t->vocab_size = (int32_t)(maxid + 1);
    t->id_key_off = malloc((size_t)(maxid + 1) * sizeof *t->id_key_off + 1);
    if (!t->id_key_off) return set_err(err, errlen, "out of memory");
    for (int64_t i = 0; i <= maxid; i++) t->id_key_off[i] = SIZE_MAX;
    for (size_t pos = 0; tok_map_next(&t->vocab, &pos, &e);) t->id_key_off[e.value] = e.off;
    return 0;
}

/* The chat template: tokenizer_config.json's "chat_template", a string or
 * a list of {"name", "template"} (the one named "default"), else the
 * chat_template.jinja file newer transformers write beside it. A list
 * without "default" leaves none. */
static int load_chat_template(tokenizer *t, const char *dir, const json_value *cfg, char *err,
                              size_t errlen) {
    const json_value *ct = json_get(cfg, "chat_template");
    const char *s = NULL;
    size_t len = 0;
    if (json_type_of(ct) == JSON_STRING) s = json_string(ct, &len);
    for (size_t i = 0; json_type_of(ct) == JSON_ARRAY && i < json_len(ct); i++) {
        const json_value *e = json_at(ct, i);
        const char *name = json_string(json_get(e, "name"), NULL);
        if (name && strcmp(name, "default") == 0) s = json_string(json_get(e, "template"), &len);
    }
    if (s) {
        t->chat_template = malloc(len + 1);
        if (!t->chat_template) return set_err(err, errlen, "out of memory");
        memcpy(t->chat_template, s, len);
        t->chat_template[len] = '\0';
        return 0;
    }
    char path[PATH_MAX];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/chat_template.jinja", dir) >= (int)sizeof path ||
        stat(path, &st) != 0)
        return 0;
    t->chat_template = read_text_file(path, TOKENIZER_MAX_FILE_BYTES, &len, err, errlen);
    return t->chat_template ? 0 : -1;
}

const char *const tokenizer_file_names[] = {
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "spm.model",
    "chat_template.jinja",
};
const int tokenizer_file_count = (int)(sizeof tokenizer_file_names / sizeof *tokenizer_file_names);

/* Whether a tokenizer.json BPE is byte-level: its pre-tokenizer is
 * ByteLevel or a Sequence holding one (else SentencePiece-style). */
static bool json_bpe_is_byte_level(const json_value *tj) {
    const json_value *pre = json_get(tj, "pre_tokenizer");
    const char *type = json_string(json_get(pre, "type"), NULL);
    if (type && strcmp(type, "ByteLevel") == 0) return true;
    const json_value *seq = json_get(pre, "pretokenizers");
    for (size_t i = 0; i < json_len(seq); i++) {
        const char *et = json_string(json_get(json_at(seq, i), "type"), NULL);
        if (et && strcmp(et, "ByteLevel") == 0) return true;
    }
    return false;
}

/* SentencePiece model files, in the order they are looked for:
 * transformers' name for LLaMA-family and most models, then DeBERTa-v3's. */
static const char *const sp_model_names[] = {"tokenizer.model", "spm.model"};

/* Which tokenizer the folder's files make: vocab.txt (WordPiece), else
 * vocab.json + merges.txt (byte-level BPE), else tokenizer.json when its
 * model is BPE or Unigram (*tj: the parsed file, for the loader; a BPE is
 * byte-level or SentencePiece-style by its pre-tokenizer), else
 * tokenizer.model or spm.model (*sp_model: the file's name; the kind is
 * read with the file). The one rule both tokenizer_load_dir and
 * tokenizer_probe_dir follow. 0, TOKENIZER_NONE when the folder has no
 * tokenizer files, or -1. */
static int tokenizer_files(const char *dir, tokenizer_kind *kind, bool *bpe_files,
                           const char **sp_model, json_value **tj, char *err, size_t errlen) {
    char path[PATH_MAX];
    struct stat st;
#define HAS_FILE(name) \
    (snprintf(path, sizeof path, "%s/%s", dir, name) < (int)sizeof path && stat(path, &st) == 0)
    *tj = NULL;
    *bpe_files = false;
    *sp_model = NULL;
    if (HAS_FILE("vocab.txt")) {
        *kind = TOKENIZER_WORDPIECE;
        return 0;
    }
    if (HAS_FILE("vocab.json") && HAS_FILE("merges.txt")) {
        *kind = TOKENIZER_BPE;
        *bpe_files = true;
        return 0;
    }
    int r = tok_read_json(dir, "tokenizer.json", TOKENIZER_MAX_FILE_BYTES, tj, err, errlen);
    if (r < 0) return -1;
    if (r == 0) {
        for (size_t i = 0; i < sizeof sp_model_names / sizeof *sp_model_names; i++) {
            if (HAS_FILE(sp_model_names[i])) {
                *kind = TOKENIZER_SPM_BPE;
                *sp_model = sp_model_names[i];
                return 0;
            }
        }
        set_err(err, errlen,
                "%s: no tokenizer files (expected vocab.txt, "
                "vocab.json + merges.txt, tokenizer.json or tokenizer.model), nor DeBERTa's "
                "spm.model",
                dir);
        return TOKENIZER_NONE;
    }
#undef HAS_FILE
    size_t tl;
    const char *type = json_string(json_get(json_get(*tj, "model"), "type"), &tl);
    if (type && strcmp(type, "Unigram") == 0) {
        *kind = TOKENIZER_SPM_UNIGRAM;
        return 0;
    }
    if (!type || strcmp(type, "BPE") != 0) {
        set_err(err, errlen,
                "%s/tokenizer.json: model type \"%s\" is not supported "
                "without vocab.txt (only BPE and Unigram are)",
                dir, type ? type : "?");
        json_free(*tj);
        *tj = NULL;
        return -1;
    }
    *kind = json_bpe_is_byte_level(*tj) ? TOKENIZER_BPE : TOKENIZER_SPM_BPE;
    return 0;
}

/* tokenizer_config.json's options for a SentencePiece model file (a
 * tokenizer.json carries its own in its normalizer): do_lower_case
 * (DebertaV2Tokenizer's default false); split_by_punct, which no model we
 * know sets, is refused rather than ignored. */
static int spm_config(tokenizer *t, const char *dir, const json_value *cfg, char *err,
                      size_t errlen) {
    const json_value *lower = json_get(cfg, "do_lower_case");
    const json_value *punct = json_get(cfg, "split_by_punct");
    json_type lt = json_type_of(lower), pt = json_type_of(punct);
    if ((lt != JSON_MISSING && lt != JSON_NULL && lt != JSON_BOOL) ||
        (pt != JSON_MISSING && pt != JSON_NULL && pt != JSON_BOOL))
        return set_err(err, errlen,
                       "%s/tokenizer_config.json: do_lower_case and split_by_punct must be "
                       "booleans",
                       dir);
    if (pt == JSON_BOOL && json_bool(punct))
        return set_err(err, errlen,
                       "%s/tokenizer_config.json: split_by_punct = true is not supported", dir);
    t->do_lower_case = lt == JSON_BOOL && json_bool(lower);
    return 0;
}

int tokenizer_probe_dir(const char *dir, char *err, size_t errlen) {
    tokenizer_kind kind;
    bool bpe_files;
    const char *sp_model;
    json_value *tj;
    int r = tokenizer_files(dir, &kind, &bpe_files, &sp_model, &tj, err, errlen);
    if (r != 0) return r;
    json_free(tj);
    return 0;
}

tokenizer *tokenizer_load_dir(const char *dir, char *err, size_t errlen) {
    tokenizer *t = calloc(1, sizeof *t);
    json_value *cfg = NULL, *stm = NULL, *tj = NULL;
    if (!t) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    t->cls_id = t->sep_id = t->pad_id = t->unk_id = t->bos_id = t->eos_id = -1;
    for (int b = 0; b < 256; b++) t->byte_ids[b] = -1;
    if (tok_read_json(dir, "tokenizer_config.json", TOKENIZER_MAX_FILE_BYTES, &cfg, err, errlen) <
            0 ||
        tok_read_json(dir, "special_tokens_map.json", TOKENIZER_MAX_FILE_BYTES, &stm, err, errlen) <
            0)
        goto fail;

    bool bpe_files;
    const char *sp_model;
    if (tokenizer_files(dir, &t->kind, &bpe_files, &sp_model, &tj, err, errlen) != 0) goto fail;
    int rc;
    if (t->kind == TOKENIZER_WORDPIECE)
        rc = wordpiece_load(t, dir, cfg, err, errlen);
    else if (bpe_files)
        rc = bpe_load_files(t, dir, cfg, err, errlen);
    else if (sp_model) /* sets the kind, BPE or Unigram */
        rc = spmodel_load(t, dir, sp_model, err, errlen) || spm_config(t, dir, cfg, err, errlen);
    else if (t->kind == TOKENIZER_SPM_UNIGRAM)
        rc = spm_load_unigram_json(t, tj, err, errlen);
    else if (t->kind == TOKENIZER_SPM_BPE)
        rc = spm_load_tokenizer_json(t, tj, err, errlen);
    else
        rc = bpe_load_tokenizer_json(t, tj, cfg, err, errlen);
    if (rc || finish_load(t, cfg, stm, tj, err, errlen) ||
        load_chat_template(t, dir, cfg, err, errlen))
        goto fail;
    json_free(cfg);
    json_free(stm);
    json_free(tj);
    return t;
fail:
    json_free(cfg);
    json_free(stm);
    json_free(tj);
    tokenizer_free(t);
    return NULL;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    tok_map_free(&t->vocab);
    tok_map_free(&t->merges);
    for (size_t i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->id_key_off);
    free(t->scores);
    free(t->chat_template);
    charsmap_free(t->charsmap);
    free(t);
}

/* ------------------------------------------------------------------ */
/* Encoding                                                             */

typedef struct {
    size_t start, end;
    int added; /* index into t->added, or -1 for plain text */
} piece;

typedef struct {
    piece *v;
    size_t n, cap;
} piece_vec;

static int piece_push(piece_vec *p, size_t start, size_t end, int added) {
    if (tok_grow((void **)&p->v, &p->cap, p->n + 1, sizeof *p->v)) return -1;
    p->v[p->n++] = (piece){start, end, added};
    return 0;
}

/* Longest added token starting at s[i], or -1. */
static int added_at(const tokenizer *t, const char *s, size_t n, size_t i) {
    unsigned char c = (unsigned char)s[i];
    if (!(t->added_first_byte[c >> 3] & (1u << (c & 7)))) return -1;
    for (size_t k = 0; k < t->n_added; k++) { /* sorted longest first */
        const tok_added *a = &t->added[k];
        if (a->len <= n - i && memcmp(s + i, a->content, a->len) == 0) return (int)k;
    }
    return -1;
}

/* Python str.rstrip() / lstrip() on a piece of valid UTF-8. */
static void strip_right(const char *s, piece *p) {
    size_t i = p->start, keep = p->start;
    while (i < p->end) {
        uint32_t cp = tok_utf8_next(s, p->end, &i);
        if (!(uni_flags(cp) & UNI_PY_SPACE)) keep = i;
    }
    p->end = keep;
}

static void strip_left(const char *s, piece *p) {
    while (p->start < p->end) {
        size_t i = p->start;
        uint32_t cp = tok_utf8_next(s, p->end, &i);
        if (!(uni_flags(cp) & UNI_PY_SPACE)) break;
        p->start = i;
    }
}

static int encode_sequence(const tokenizer *t, const char *s, size_t n, size_t cap, tok_i32vec *out,
                           const char *which, char *err, size_t errlen) {
    size_t bad = tok_utf8_invalid_at(s, n);
    if (bad < n) return set_err(err, errlen, "%s: invalid UTF-8 at byte %zu", which, bad);
    if (cap == 0) return 0;

    char *prefixed = NULL;
    if (t->kind == TOKENIZER_BPE && t->pretok == PRETOK_GPT2 && t->add_prefix_space && n > 0) {
        /* RobertaTokenizer.prepare_for_tokenization: prepend a space unless
         * the text already starts with whitespace. */
        size_t i = 0;
        if (!(uni_flags(tok_utf8_next(s, n, &i)) & UNI_PY_SPACE)) {
            prefixed = malloc(n + 1);
            if (!prefixed) return set_err(err, errlen, "out of memory");
            prefixed[0] = ' ';
            memcpy(prefixed + 1, s, n);
            s = prefixed;
            n++;
        }
    }

    piece_vec pv = {0};
    int rc = 0;
    size_t plain = 0, i = 0;
    while (i < n && rc == 0) {
        int k = added_at(t, s, n, i);
        if (k < 0) {
            i++;
            continue;
        }
        if (i > plain) rc = piece_push(&pv, plain, i, -1);
        if (rc == 0) rc = piece_push(&pv, i, i + t->added[k].len, k);
        i += t->added[k].len;
        plain = i;
    }
    if (rc == 0 && plain < n) rc = piece_push(&pv, plain, n, -1);
    if (rc) {
        set_err(err, errlen, "out of memory");
        goto done;
    }
    for (size_t p = 0; p < pv.n; p++) {
        if (pv.v[p].added < 0) continue;
        const tok_added *a = &t->added[pv.v[p].added];
        if (a->lstrip && p > 0 && pv.v[p - 1].added < 0) strip_right(s, &pv.v[p - 1]);
        if (a->rstrip && p + 1 < pv.n && pv.v[p + 1].added < 0) strip_left(s, &pv.v[p + 1]);
    }
    for (size_t p = 0; p < pv.n && out->n < cap && rc == 0; p++) {
        const piece *pc = &pv.v[p];
        if (pc->added >= 0) {
            if (tok_i32_push(out, t->added[pc->added].id)) {
                set_err(err, errlen, "out of memory");
                rc = -1;
            }
        } else if (pc->end > pc->start) {
            const char *ps = s + pc->start;
            size_t pn = pc->end - pc->start;
            switch (t->kind) {
            case TOKENIZER_WORDPIECE:
                rc = wordpiece_tokenize(t, ps, pn, cap, out, err, errlen);
                break;
            case TOKENIZER_BPE: rc = bpe_tokenize(t, ps, pn, cap, out, err, errlen); break;
            default: rc = spm_tokenize(t, ps, pn, pc->start == 0, cap, out, err, errlen);
            }
        }
    }
done:
    free(pv.v);
    free(prefixed);
    return rc;
}

int tokenizer_num_special_tokens(const tokenizer *t, int pair) {
    const tok_wrap *w = &t->wrap;
    return w->n[0] + w->n[1] + (pair ? w->n[2] + w->n[3] : 0);
}

int tokenizer_encode_n(const tokenizer *t, const char *text_a, size_t len_a, const char *text_b,
                       size_t len_b, int max_len, int32_t *ids, int32_t *type_ids, int *len,
                       char *err, size_t errlen) {
    bool pair = text_b != NULL;
    int nspecial = tokenizer_num_special_tokens(t, pair);
    *len = 0;
    if (!text_a) return set_err(err, errlen, "text_a is NULL");
    if (max_len < nspecial || max_len < 1)
        return set_err(err, errlen, "max_len %d leaves no room for the %d special tokens", max_len,
                       nspecial);
    size_t budget = (size_t)(max_len - nspecial);
    tok_i32vec a = {0}, b = {0};
    int rc = encode_sequence(t, text_a, len_a, budget, &a, "text_a", err, errlen);
    if (rc == 0 && pair) rc = encode_sequence(t, text_b, len_b, budget, &b, "text_b", err, errlen);
    if (rc == 0) {
        /* transformers' longest_first: drop the last token of the longer
         * sequence, of the second on ties, until the total fits. */
        size_t la = a.n < budget ? a.n : budget, lb = b.n < budget ? b.n : budget;
        while (la + lb > budget) {
            if (la > lb)
                la--;
            else
                lb--;
        }
        const tok_wrap *w = &t->wrap;
        int n = 0;
#define EMIT(id, ty)                      \
    do {                                  \
        ids[n] = (id);                    \
        if (type_ids) type_ids[n] = (ty); \
        n++;                              \
    } while (0)
        for (int k = 0; k < w->n[0]; k++) EMIT(w->ids[0][k], 0);
        for (size_t i = 0; i < la; i++) EMIT(a.v[i], 0);
        for (int k = 0; k < w->n[1]; k++) EMIT(w->ids[1][k], 0);
        if (pair) {
            for (int k = 0; k < w->n[2]; k++) EMIT(w->ids[2][k], w->type_b);
            for (size_t i = 0; i < lb; i++) EMIT(b.v[i], w->type_b);
            for (int k = 0; k < w->n[3]; k++) EMIT(w->ids[3][k], w->type_b);
        }
#undef EMIT
        *len = n;
    }
    free(a.v);
    free(b.v);
    return rc;
}

int tokenizer_tokenize(const tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n,
                       char *err, size_t errlen) {
    tok_i32vec v = {0};
    *ids = NULL;
    *n = 0;
    if (!text && len > 0) return set_err(err, errlen, "text is NULL");
    if (encode_sequence(t, text ? text : "", len, SIZE_MAX, &v, "text", err, errlen)) {
        free(v.v);
        return -1;
    }
    *ids = v.v;
    *n = v.n;
    return 0;
}

int tokenizer_encode(const tokenizer *t, const char *text_a, const char *text_b, int max_len,
                     int32_t *ids, int32_t *type_ids, int *len, char *err, size_t errlen) {
    return tokenizer_encode_n(t, text_a, text_a ? strlen(text_a) : 0, text_b,
                              text_b ? strlen(text_b) : 0, max_len, ids, type_ids, len, err,
                              errlen);
}

tokenizer_kind tokenizer_kind_of(const tokenizer *t) { return t->kind; }
int32_t tokenizer_pad_id(const tokenizer *t) { return t->pad_id; }
int32_t tokenizer_cls_id(const tokenizer *t) { return t->cls_id; }
int32_t tokenizer_sep_id(const tokenizer *t) { return t->sep_id; }
int32_t tokenizer_unk_id(const tokenizer *t) { return t->unk_id; }
int32_t tokenizer_bos_id(const tokenizer *t) { return t->bos_id; }
int32_t tokenizer_eos_id(const tokenizer *t) { return t->eos_id; }
int tokenizer_adds_bos(const tokenizer *t) { return is_causal(t) && t->wrap.n[0] > 0; }
int tokenizer_adds_eos(const tokenizer *t) { return is_causal(t) && t->wrap.n[1] > 0; }
int32_t tokenizer_vocab_size(const tokenizer *t) { return t->vocab_size; }
const char *tokenizer_chat_template(const tokenizer *t) { return t->chat_template; }

const char *tokenizer_id_to_token(const tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->vocab_size) return NULL;
    if (t->id_key_off[id] != SIZE_MAX) return t->vocab.pool + t->id_key_off[id];
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return t->added[i].content;
    return NULL;
}
