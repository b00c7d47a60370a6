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
 * covers becomes its UTF-8 bytes as "<0xNN>" tokens.
 *
 * A piece of text goes through, in SentencePiece's order: lower-casing
 * (do_lower_case: transformers lower-cases before SentencePiece sees the
 * text), the model's precompiled charsmap (nmt_nfkc: NFKC plus mapping
 * every kind of whitespace, U+2581 included, to ' ' and dropping control
 * characters), then the whitespace rules on the result: strip and collapse
 * runs of ' ' (remove_extra_whitespaces), the dummy prefix, ' ' -> ▁.
 *
 * A Unigram tokenizer.json is the same model as transformers converts it
 * (DebertaV2Converter, SpmConverter): normalizer [Lowercase?, Strip?,
 * Precompiled charsmap?, Replace " {2,}" -> " "?], pre-tokenizer Metaspace
 * (maybe after WhitespaceSplit), model {vocab: [[piece, score]], unk_id,
 * byte_fallback}. It is read into the same flags as the .model, so with
 * Strip and Replace (today's DebertaV2Converter) both give SentencePiece's
 * ids; without Strip (older converters) a trailing space stays a last ▁ as
 * in the fast tokenizer. Two differences of the Rust pipeline are not
 * imitated: Strip removes Unicode whitespace before the charsmap rather than
 * the ' ' it leaves (the same text for nmt_nfkc, which maps whitespace to
 * ' '), and Metaspace's split runs the Viterbi per ▁word (the same pieces
 * whenever no piece has a ▁ inside, as SentencePiece trains them by
 * default). */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/tokutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"
#include "tokenizer/normalize.h"

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
    if (t->sp_strip_spaces) {
        while (i < end && s[i] == ' ') i++;
        while (end > i && s[end - 1] == ' ') end--;
    }
    if (i == end) return 0; /* nothing to prefix either */
    bool prefix = t->sp_prefix == SP_PREFIX_ALWAYS || (t->sp_prefix == SP_PREFIX_FIRST && at_start);
    if (prefix && t->sp_prefix_unless_space && s[i] == ' ') prefix = false;
    if (prefix && tok_bytes_append(out, SP_SPACE, SP_SPACE_LEN)) return -1;
    for (; i < end; i++) {
        if (s[i] == ' ') {
            if (t->sp_collapse_spaces && i > 0 && s[i - 1] == ' ') continue;
            if (t->sp_escape_spaces ? tok_bytes_append(out, SP_SPACE, SP_SPACE_LEN)
                                    : tok_bytes_append(out, " ", 1))
                return -1;
        } else if (tok_bytes_append(out, s + i, 1)) {
            return -1;
        }
    }
    return 0;
}

/* out = str.lower(s[0..n)) as UTF-8 (replaced). 0, or -1 on OOM. */
static int spm_lower(const char *s, size_t n, tok_bytes *out) {
    tok_u32vec cps = {0}, low = {0};
    int rc = tok_utf8_decode(s, n, &cps, NULL) || tok_lower(cps.v, cps.n, &low) ? -1 : 0;
    out->n = 0;
    if (rc == 0) rc = tok_bytes_append(out, "", 0);
    for (size_t i = 0; i < low.n && rc == 0; i++) rc = tok_bytes_put_cp(out, low.v[i]);
    free(cps.v);
    free(low.v);
    return rc;
}

int spm_tokenize(const tokenizer *t, const char *s, size_t n, bool at_start, size_t cap,
                 tok_i32vec *out, char *err, size_t errlen) {
    tok_bytes norm = {0}, mapped = {0}, lowered = {0};
    bpe_scratch *sc = NULL;
    int rc = 0;
    if (t->do_lower_case) {
        if (spm_lower(s, n, &lowered)) goto oom;
        s = lowered.v;
        n = lowered.n;
    }
    if (t->charsmap) {
        /* The model's normalization rules first; its whitespace handling
         * then sees their output, as in SentencePiece. */
        if (charsmap_apply(t->charsmap, s, n, &mapped)) goto oom;
        if (tok_utf8_invalid_at(mapped.v, mapped.n) < mapped.n) {
            free(mapped.v);
            free(lowered.v);
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
    free(lowered.v);
    return rc;
oom:
    bpe_scratch_free(sc);
    free(norm.v);
    free(mapped.v);
    free(lowered.v);
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

/* ------------------------------------------------------------------ */
/* tokenizer.json Unigram                                               */

/* SentencePiece's penalty below the lowest piece score for an unknown
 * character (unigram_model.cc kUnkPenalty; tokenizers uses the same). */
#define UNIGRAM_UNK_PENALTY 10.0f

/* Standard base64 (RFC 4648; trailing '=' optional) of s[0..n) into out
 * (replaced). 0; 1 when s is not base64; -1 on OOM. */
static int base64_decode(const char *s, size_t n, tok_bytes *out) {
    uint32_t acc = 0;
    int bits = 0;
    out->n = 0;
    if (tok_bytes_append(out, "", 0)) return -1;
    while (n > 0 && s[n - 1] == '=') n--;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int v = c >= 'A' && c <= 'Z'   ? c - 'A'
                : c >= 'a' && c <= 'z' ? c - 'a' + 26
                : c >= '0' && c <= '9' ? c - '0' + 52
                : c == '+'             ? 62
                : c == '/'             ? 63
                                       : -1;
        if (v < 0) return 1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char b = (char)((acc >> bits) & 0xFF);
            if (tok_bytes_append(out, &b, 1)) return -1;
        }
    }
    return bits >= 6 ? 1 : 0; /* one leftover character cannot end base64 */
}

static bool json_type_is(const json_value *v, const char *type) {
    const char *ty = json_string(json_get(v, "type"), NULL);
    return ty && strcmp(ty, type) == 0;
}

/* Each normalizer of the converted form sets what it stands for; any other
 * is refused, as is one out of the order the flags are applied in
 * (Lowercase before the charsmap). */
static int unigram_normalizer(tokenizer *t, const json_value *norm, char *err, size_t errlen) {
    json_type nt = json_type_of(norm);
    if (nt == JSON_MISSING || nt == JSON_NULL) return 0;
    const json_value *list = json_type_is(norm, "Sequence") ? json_get(norm, "normalizers") : NULL;
    size_t count = list ? json_len(list) : 1;
    bool strip = false, collapse = false;
    for (size_t i = 0; i < count; i++) {
        const json_value *e = list ? json_at(list, i) : norm;
        const char *type = json_string(json_get(e, "type"), NULL);
        if (json_type_is(e, "Lowercase") && !t->charsmap) {
            t->do_lower_case = true;
        } else if (json_type_is(e, "Strip") && json_bool(json_get(e, "strip_left")) &&
                   json_bool(json_get(e, "strip_right"))) {
            strip = true;
        } else if (json_type_is(e, "Replace") &&
                   json_type_of(json_get(json_get(e, "pattern"), "Regex")) == JSON_STRING &&
                   strcmp(json_string(json_get(json_get(e, "pattern"), "Regex"), NULL), " {2,}") ==
                       0 &&
                   json_type_of(json_get(e, "content")) == JSON_STRING &&
                   strcmp(json_string(json_get(e, "content"), NULL), " ") == 0) {
            collapse = true;
        } else if (json_type_is(e, "Precompiled") && !t->charsmap) {
            size_t bl;
            const char *b64 = json_string(json_get(e, "precompiled_charsmap"), &bl);
            if (!b64 || bl == 0) continue; /* an empty charsmap: the identity */
            tok_bytes blob = {0};
            int r = base64_decode(b64, bl, &blob);
            char why[200];
            if (r == 0) {
                t->charsmap = charsmap_new((const unsigned char *)blob.v, blob.n, why, sizeof why);
                if (!t->charsmap) set_err(err, errlen, "tokenizer.json: %s", why);
            }
            free(blob.v);
            if (r < 0) return set_err(err, errlen, "out of memory");
            if (r > 0)
                return set_err(err, errlen,
                               "tokenizer.json: Precompiled precompiled_charsmap is not base64");
            if (!t->charsmap) return -1;
        } else {
            return set_err(err, errlen,
                           "tokenizer.json: normalizer \"%.40s\" is not supported with a Unigram "
                           "model (only SentencePiece's: Lowercase, Strip, Precompiled, Replace "
                           "\" {2,}\" -> \" \", in that order)",
                           type ? type : "?");
        }
    }
    /* Both are SentencePiece's remove_extra_whitespaces; converters before
     * DebertaV2Converter gained Strip leave a trailing space (a last ▁). */
    t->sp_strip_spaces = strip;
    t->sp_collapse_spaces = collapse;
    return 0;
}

/* Metaspace, alone or in a Sequence after WhitespaceSplit (older
 * converters), which drops whitespace runs as remove_extra_whitespaces. */
static int unigram_pretokenizer(tokenizer *t, const json_value *pre, char *err, size_t errlen) {
    const json_value *list = json_type_is(pre, "Sequence") ? json_get(pre, "pretokenizers") : NULL;
    size_t count = list ? json_len(list) : 1;
    bool meta = false;
    for (size_t i = 0; i < count; i++) {
        const json_value *e = list ? json_at(list, i) : pre;
        const char *type = json_string(json_get(e, "type"), NULL);
        if (json_type_is(e, "WhitespaceSplit") && !meta) {
            t->sp_strip_spaces = t->sp_collapse_spaces = true;
        } else if (json_type_is(e, "Metaspace") && !meta) {
            if (metaspace(t, e, err, errlen)) return -1;
            meta = true;
        } else {
            return set_err(err, errlen,
                           "tokenizer.json: pre-tokenizer \"%.40s\" is not supported with a "
                           "Unigram model (only Metaspace, after WhitespaceSplit or alone)",
                           type ? type : "none");
        }
    }
    if (!meta)
        return set_err(err, errlen,
                       "tokenizer.json: a Unigram model needs a Metaspace pre-tokenizer");
    return 0;
}

int spm_load_unigram_json(tokenizer *t, const json_value *root, char *err, size_t errlen) {
    if (unigram_normalizer(t, json_get(root, "normalizer"), err, errlen) ||
        unigram_pretokenizer(t, json_get(root, "pre_tokenizer"), err, errlen))
        return -1;
    const json_value *model = json_get(root, "model");
    const json_value *vocab = json_get(model, "vocab");
    size_t n = json_len(vocab);
    if (json_type_of(vocab) != JSON_ARRAY || n == 0)
        return set_err(err, errlen, "tokenizer.json: Unigram vocab must be a non-empty list");
    if (n > TOKENIZER_MAX_VOCAB)
        return set_err(err, errlen, "tokenizer.json: more than %d pieces", TOKENIZER_MAX_VOCAB);
    const json_value *unk = json_get(model, "unk_id");
    if (json_type_of(unk) != JSON_NULL && json_type_of(unk) != JSON_MISSING &&
        (!json_is_int(unk) || json_int(unk) < 0 || (size_t)json_int(unk) >= n))
        return set_err(err, errlen, "tokenizer.json: Unigram unk_id is not a piece's index");
    t->scores = malloc(n * sizeof *t->scores);
    if (!t->scores) return set_err(err, errlen, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_value *e = json_at(vocab, i);
        size_t len;
        const char *piece = json_string(json_at(e, 0), &len);
        if (json_type_of(e) != JSON_ARRAY || json_len(e) != 2 || !piece || len == 0 ||
            json_type_of(json_at(e, 1)) != JSON_NUMBER)
            return set_err(err, errlen,
                           "tokenizer.json: Unigram vocab entry %zu is not [piece, score]", i);
        if (tok_utf8_invalid_at(piece, len) < len)
            return set_err(err, errlen, "tokenizer.json: Unigram piece %zu is not UTF-8", i);
        if (tok_map_put(&t->vocab, piece, len, (int32_t)i, NULL))
            return set_err(err, errlen, "out of memory");
        t->scores[i] = (float)json_number(json_at(e, 1));
    }
    t->kind = TOKENIZER_SPM_UNIGRAM;
    t->fuse_unk = true;
    const json_value *bf = json_get(model, "byte_fallback");
    t->byte_fallback = json_type_of(bf) == JSON_BOOL && json_bool(bf);
    spm_find_byte_tokens(t);
    /* The Viterbi uses normal pieces only, as SentencePiece: not the
     * unknown piece, added (control) tokens, nor byte pieces. */
    if (json_is_int(unk)) {
        t->unk_id = (int32_t)json_int(unk);
        t->scores[t->unk_id] = NAN;
    }
    const json_value *added = json_get(root, "added_tokens");
    for (size_t i = 0; i < json_len(added); i++) {
        const json_value *id = json_get(json_at(added, i), "id");
        if (json_is_int(id) && json_int(id) >= 0 && (size_t)json_int(id) < n)
            t->scores[json_int(id)] = NAN;
    }
    for (int b = 0; b < 256 && t->byte_fallback; b++)
        if (t->byte_ids[b] >= 0) t->scores[t->byte_ids[b]] = NAN;
    float min_score = INFINITY;
    for (size_t i = 0; i < n; i++)
        if (!isnan(t->scores[i]) && t->scores[i] < min_score) min_score = t->scores[i];
    t->unk_score = (isfinite(min_score) ? min_score : 0.0f) - UNIGRAM_UNK_PENALTY;
    return 0;
}
