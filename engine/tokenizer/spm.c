/* spm.c — SentencePiece conventions: how text becomes the string the
 * SentencePiece models (LLaMA-2, Mistral, TinyLlama; Unigram models) see,
 * and the tokenizer.json form of such a BPE model.
 *
 * SentencePiece has no pre-tokenizer: spaces are part of the pieces, written
 * as U+2581 "▁", and a "dummy prefix" ▁ goes in front of the text so that the
 * first word looks like every other ("hello" and " hello" inside a sentence
 * are both "▁hello"). Hugging Face expresses the same two ways, both read
 * here:
 *   - legacy: normalizer Sequence [Prepend "▁", Replace " " -> "▁"]; the
 *     prefix goes in front of every piece of text between added tokens;
 *   - Metaspace pre-tokenizer {replacement "▁", prepend_scheme always |
 *     first | never, split}: spaces replaced first, the prefix added unless
 *     the text already starts with ▁ ("first": only for the piece at the
 *     start of the text); split cuts the text before each ▁.
 * tokenizer.model carries the same as normalizer_spec (add_dummy_prefix,
 * remove_extra_whitespaces: strip and collapse runs of spaces), see
 * spmodel.c. The model itself is BPE (merges by rank over the characters,
 * bpe.c) or Unigram (unigram.c); with byte_fallback a character no piece
 * covers becomes its UTF-8 bytes as "<0xNN>" tokens. */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/tokutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"

/* U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's visible space. */
static const char SP_SPACE[] = "\xe2\x96\x81";
#define SP_SPACE_LEN 3

void spm_find_byte_tokens(tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        if (!tok_map_get(&t->vocab, name, 6, &t->byte_ids[b])) t->byte_ids[b] = -1;
    }
}

/* ------------------------------------------------------------------ */
/* Normalization                                                        */

/* The normalized form of one plain piece s[0..n) into out (replaced). */
static int spm_normalize(const tokenizer *t, const char *s, size_t n, bool at_start,
                         tok_bytes *out) {
    out->n = 0;
    if (tok_bytes_append(out, "", 0)) return -1;
    size_t i = 0, end = n;
    if (t->sp_remove_extra_spaces) {
        while (i < end && s[i] == ' ') i++;
        while (end > i && s[end - 1] == ' ') end--;
    }
    if (i == end) return 0; /* nothing to prefix either */
    bool prefix = t->sp_prefix == SP_PREFIX_ALWAYS || (t->sp_prefix == SP_PREFIX_FIRST && at_start);
    if (prefix && t->sp_prefix_unless_space && s[i] == ' ') prefix = false;
    if (prefix && tok_bytes_append(out, SP_SPACE, SP_SPACE_LEN)) return -1;
    for (; i < end; i++) {
        if (s[i] == ' ') {
            if (t->sp_remove_extra_spaces && s[i - 1] == ' ') continue; /* i > start here */
            if (t->sp_escape_spaces ? tok_bytes_append(out, SP_SPACE, SP_SPACE_LEN)
                                    : tok_bytes_append(out, " ", 1))
                return -1;
        } else if (tok_bytes_append(out, s + i, 1)) {
            return -1;
        }
    }
    return 0;
}

int spm_tokenize(const tokenizer *t, const char *s, size_t n, bool at_start, size_t cap,
                 tok_i32vec *out, char *err, size_t errlen) {
    tok_bytes norm = {0}, mapped = {0};
    bpe_scratch *sc = NULL;
    int rc = 0;
    if (t->charsmap) {
        /* The model's normalization rules first; its whitespace handling
         * then sees their output, as in SentencePiece. */
        if (charsmap_apply(t->charsmap, s, n, &mapped)) goto oom;
        if (tok_utf8_invalid_at(mapped.v, mapped.n) < mapped.n) {
            free(mapped.v);
            return set_err(err, errlen, "the model's normalization rules produced invalid UTF-8");
        }
        s = mapped.v;
        n = mapped.n;
    }
    if (spm_normalize(t, s, n, at_start, &norm)) goto oom;
    if (norm.n == 0) goto done;
    if (t->kind == TOKENIZER_SPM_UNIGRAM) {
        rc = unigram_word(t, norm.v, norm.n, out, err, errlen);
        goto done;
    }
    sc = bpe_scratch_new();
    if (!sc) goto oom;
    /* Metaspace split: words begin at each ▁ (MergedWithNext). */
    size_t w0 = 0;
    while (w0 < norm.n && rc == 0 && out->n < cap) {
        size_t w1 = norm.n;
        if (t->sp_split) {
            for (size_t k = w0 + 1; k + SP_SPACE_LEN <= norm.n; k++)
                if (memcmp(norm.v + k, SP_SPACE, SP_SPACE_LEN) == 0) {
                    w1 = k;
                    break;
                }
        }
        rc = bpe_merge_word(t, norm.v + w0, w1 - w0, sc, out, err, errlen);
        w0 = w1;
    }
done:
    bpe_scratch_free(sc);
    free(norm.v);
    free(mapped.v);
    return rc;
oom:
    bpe_scratch_free(sc);
    free(norm.v);
    free(mapped.v);
    return set_err(err, errlen, "out of memory");
}

/* ------------------------------------------------------------------ */
/* tokenizer.json                                                       */

static bool is_sp_space_string(const json_value *v) {
    size_t n;
    const char *s = json_string(v, &n);
    return s && n == SP_SPACE_LEN && memcmp(s, SP_SPACE, n) == 0;
}

/* normalizer Sequence [Prepend ▁, Replace " " -> ▁] (either order). */
static int legacy_normalizer(tokenizer *t, const json_value *norm, char *err, size_t errlen) {
    const json_value *seq = json_get(norm, "normalizers");
    bool prepend = false, replace = false;
    const char *type = json_string(json_get(norm, "type"), NULL);
    if (!type || strcmp(type, "Sequence") != 0 || json_len(seq) != 2) goto bad;
    for (size_t i = 0; i < 2; i++) {
        const json_value *e = json_at(seq, i);
        const char *et = json_string(json_get(e, "type"), NULL);
        size_t pl;
        const char *pat = json_string(json_get(json_get(e, "pattern"), "String"), &pl);
        if (et && strcmp(et, "Prepend") == 0 && is_sp_space_string(json_get(e, "prepend")))
            prepend = true;
        else if (et && strcmp(et, "Replace") == 0 && pat && pl == 1 && pat[0] == ' ' &&
                 is_sp_space_string(json_get(e, "content")))
            replace = true;
    }
    if (!prepend || !replace) goto bad;
    t->sp_prefix = SP_PREFIX_ALWAYS;
    t->sp_escape_spaces = true;
    return 0;
bad:
    return set_err(err, errlen,
                   "tokenizer.json: only the SentencePiece normalizer [Prepend \"\xe2\x96\x81\", "
                   "Replace \" \" -> \"\xe2\x96\x81\"] is supported with a non-byte-level BPE");
}

static int metaspace(tokenizer *t, const json_value *pre, char *err, size_t errlen) {
    if (!is_sp_space_string(json_get(pre, "replacement")))
        return set_err(err, errlen,
                       "tokenizer.json: Metaspace replacement must be \"\xe2\x96\x81\"");
    const char *scheme = json_string(json_get(pre, "prepend_scheme"), NULL);
    const json_value *aps = json_get(pre, "add_prefix_space"); /* before tokenizers 0.19 */
    if (scheme && strcmp(scheme, "always") == 0)
        t->sp_prefix = SP_PREFIX_ALWAYS;
    else if (scheme && strcmp(scheme, "first") == 0)
        t->sp_prefix = SP_PREFIX_FIRST;
    else if (scheme && strcmp(scheme, "never") == 0)
        t->sp_prefix = SP_PREFIX_NEVER;
    else if (scheme)
        return set_err(err, errlen, "tokenizer.json: Metaspace prepend_scheme \"%.32s\"", scheme);
    else
        t->sp_prefix =
            json_type_of(aps) == JSON_BOOL && !json_bool(aps) ? SP_PREFIX_NEVER : SP_PREFIX_ALWAYS;
    const json_value *split = json_get(pre, "split");
    t->sp_split = json_type_of(split) == JSON_BOOL ? json_bool(split) : true;
    t->sp_prefix_unless_space = true;
    t->sp_escape_spaces = true;
    return 0;
}

int spm_load_tokenizer_json(tokenizer *t, const json_value *root, char *err, size_t errlen) {
    const json_value *norm = json_get(root, "normalizer");
    const json_value *pre = json_get(root, "pre_tokenizer");
    bool has_norm = json_type_of(norm) != JSON_MISSING && json_type_of(norm) != JSON_NULL;
    bool has_pre = json_type_of(pre) != JSON_MISSING && json_type_of(pre) != JSON_NULL;
    const char *ptype = json_string(json_get(pre, "type"), NULL);
    if (has_norm && !has_pre) {
        if (legacy_normalizer(t, norm, err, errlen)) return -1;
    } else if (!has_norm && ptype && strcmp(ptype, "Metaspace") == 0) {
        if (metaspace(t, pre, err, errlen)) return -1;
    } else {
        return set_err(err, errlen,
                       "tokenizer.json: a BPE that is not byte-level needs SentencePiece's "
                       "conventions (the Prepend/Replace normalizer or a Metaspace "
                       "pre-tokenizer), not pre-tokenizer \"%s\"%s",
                       ptype ? ptype : "none", has_norm ? " with a normalizer" : "");
    }
    return bpe_load_model_json(t, json_get(root, "model"), err, errlen);
}
