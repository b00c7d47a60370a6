/* wordpiece.c — BERT's tokenizer: Hugging Face BertTokenizer (slow), step by step.
 *
 * BasicTokenizer.tokenize, in transformers' order:
 *   1. clean: drop U+0000, U+FFFD and control characters (category C* except
 *      \t \n \r, so unassigned code points go too); whitespace (\t \n \r,
 *      space, Zs) becomes ' ';
 *   2. put spaces around CJK ideographs (BERT's code point ranges);
 *   3. NFC;
 *   4. split on whitespace as Python's str.split() does (str.isspace(): this
 *      also splits on U+2028/U+2029, which step 1 keeps);
 *   5. per word, unless it is a special token: lower-case with str.lower()
 *      (full mapping: the final-sigma rule, U+0130 -> i + U+0307), then strip
 *      accents (NFD, drop Mn) — lower-casing and stripping follow
 *      do_lower_case / strip_accents;
 *   6. split off every punctuation character (ASCII 33-47, 58-64, 91-96,
 *      123-126, and Unicode P*).
 * WordpieceTokenizer then maps each piece: longer than 100 code points ->
 * [UNK]; else greedy longest-match-first against the vocabulary, with "##"
 * on every sub-token after the first; if some position matches nothing, the
 * whole piece is one [UNK].
 *
 * Everything runs on arrays of code points (scratch owned by one call), so
 * the tokenizer stays const and thread-safe. Normalisation forms are in
 * normalize.c. */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/normalize.h"
#include "tokenizer/tokutil.h"

#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"
#include "tokenizer/unicode_tables.h"

/* ------------------------------------------------------------------ */
/* Character classes as BertTokenizer defines them                      */

static bool is_cjk(uint32_t cp) {
    /* _is_chinese_char: the CJK Unified Ideographs blocks (not Hangul,
     * Hiragana or Katakana). */
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static bool is_punct(uint32_t cp) {
    /* _is_punctuation: all non-alphanumeric ASCII counts ("^", "$", "`"
     * are symbols in Unicode), plus general category P*. */
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
        (cp >= 123 && cp <= 126))
        return true;
    return (uni_flags(cp) & UNI_PUNCT) != 0;
}

static bool is_bert_whitespace(uint32_t cp) {
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || (uni_flags(cp) & UNI_ZS);
}

static bool is_bert_control(uint32_t cp) {
    if (cp == '\t' || cp == '\n' || cp == '\r') return false;
    return (uni_flags(cp) & UNI_CONTROL) != 0;
}

/* ------------------------------------------------------------------ */
/* Accents                                                               */

/* out = w without accents: NFD, then drop nonspacing marks. */
static int strip_accents(const uint32_t *w, size_t n, tok_u32vec *out) {
    out->n = 0;
    if (tok_nfd_append(w, n, out)) return -1;
    size_t k = 0;
    for (size_t i = 0; i < out->n; i++)
        if (!(uni_flags(out->v[i]) & UNI_MN)) out->v[k++] = out->v[i];
    out->n = k;
    return 0;
}

/* ------------------------------------------------------------------ */
/* WordPiece                                                            */

typedef struct {
    tok_u32vec cps, clean, norm, tmp, low, bare;
    tok_bytes utf8, key;
    tok_u32vec offs; /* byte offset of each code point of a piece in utf8 */
} wp_scratch;

static void scratch_free(wp_scratch *s) {
    free(s->cps.v);
    free(s->clean.v);
    free(s->norm.v);
    free(s->tmp.v);
    free(s->low.v);
    free(s->bare.v);
    free(s->utf8.v);
    free(s->key.v);
    free(s->offs.v);
}

/* Greedy longest-match-first over one piece (no whitespace, no punctuation
 * boundary inside), appending ids. */
static int wordpiece_piece(const tokenizer *t, const uint32_t *w, size_t n, wp_scratch *s,
                           tok_i32vec *out) {
    if (n > WORDPIECE_MAX_INPUT_CHARS_PER_WORD) return tok_i32_push(out, t->unk_id);
    s->utf8.n = 0;
    s->offs.n = 0;
    for (size_t i = 0; i < n; i++)
        if (tok_u32_push(&s->offs, (uint32_t)s->utf8.n) || tok_bytes_put_cp(&s->utf8, w[i]))
            return -1;
    if (tok_u32_push(&s->offs, (uint32_t)s->utf8.n)) return -1;

    size_t first = out->n, start = 0;
    while (start < n) {
        int32_t id = -1;
        size_t end = n;
        for (; end > start; end--) {
            size_t b0 = s->offs.v[start], b1 = s->offs.v[end];
            size_t prefix = start > 0 ? 2 : 0;
            if (b1 - b0 + prefix > t->max_token_bytes)
                continue; /* longer than any vocabulary entry */
            s->key.n = 0;
            if ((prefix && tok_bytes_append(&s->key, "##", 2)) ||
                tok_bytes_append(&s->key, s->utf8.v + b0, b1 - b0))
                return -1;
            if (tok_map_get(&t->vocab, s->key.v, s->key.n, &id)) break;
        }
        if (end == start) {
            out->n = first; /* the whole piece becomes one [UNK] */
            return tok_i32_push(out, t->unk_id);
        }
        if (tok_i32_push(out, id)) return -1;
        start = end;
    }
    return 0;
}

/* Is w[0..n) exactly an added token (BasicTokenizer's never_split)? */
static bool is_never_split(const tokenizer *t, const uint32_t *w, size_t n, wp_scratch *s) {
    s->key.n = 0;
    for (size_t i = 0; i < n; i++)
        if (tok_bytes_put_cp(&s->key, w[i])) return false;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == s->key.n && memcmp(t->added[i].content, s->key.v, s->key.n) == 0)
            return true;
    return false;
}

/* Steps 5-6 and WordPiece for one whitespace-delimited word. */
static int tokenize_word(const tokenizer *t, const uint32_t *w, size_t n, wp_scratch *s,
                         tok_i32vec *out) {
    if (is_never_split(t, w, n, s)) return wordpiece_piece(t, w, n, s, out);
    bool strip = t->strip_accents < 0 ? t->do_lower_case : t->strip_accents == 1;
    if (t->do_lower_case) {
        if (tok_lower(w, n, &s->low)) return -1;
        w = s->low.v;
        n = s->low.n;
    }
    if (strip) {
        if (strip_accents(w, n, &s->bare)) return -1;
        w = s->bare.v;
        n = s->bare.n;
    }
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_punct(w[i])) continue;
        if (i > run && wordpiece_piece(t, w + run, i - run, s, out)) return -1;
        if (wordpiece_piece(t, w + i, 1, s, out)) return -1;
        run = i + 1;
    }
    if (n > run && wordpiece_piece(t, w + run, n - run, s, out)) return -1;
    return 0;
}

int wordpiece_tokenize(const tokenizer *t, const char *text, size_t len, size_t cap,
                       tok_i32vec *out, char *err, size_t errlen) {
    wp_scratch s;
    memset(&s, 0, sizeof s);
    int rc = -1;
    if (tok_utf8_decode(text, len, &s.cps, NULL)) goto oom;

    /* 1-2: clean, space out CJK. */
    for (size_t i = 0; i < s.cps.n; i++) {
        uint32_t cp = s.cps.v[i];
        if (cp == 0 || cp == 0xFFFD || is_bert_control(cp)) continue;
        if (is_bert_whitespace(cp)) cp = ' ';
        if (t->tokenize_chinese_chars && is_cjk(cp)) {
            if (tok_u32_push(&s.clean, ' ') || tok_u32_push(&s.clean, cp) ||
                tok_u32_push(&s.clean, ' '))
                goto oom;
        } else if (tok_u32_push(&s.clean, cp))
            goto oom;
    }
    /* 3: NFC. */
    if (tok_nfc(s.clean.v, s.clean.n, &s.norm, &s.tmp)) goto oom;
    /* 4-6 and WordPiece, word by word, until enough tokens. */
    const uint32_t *v = s.norm.v;
    size_t n = s.norm.n, i = 0;
    while (i < n && out->n < cap) {
        while (i < n && (uni_flags(v[i]) & UNI_PY_SPACE)) i++;
        size_t j = i;
        while (j < n && !(uni_flags(v[j]) & UNI_PY_SPACE)) j++;
        if (j > i && tokenize_word(t, v + i, j - i, &s, out)) goto oom;
        i = j;
    }
    rc = 0;
    goto done;
oom:
    set_err(err, errlen, "out of memory");
done:
    scratch_free(&s);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Loading                                                              */

/* Optional boolean config key: 1/0, or dflt when absent or null; -2 when
 * present with another type. */
static int cfg_bool(const json_value *cfg, const char *key, int dflt) {
    const json_value *v = json_get(cfg, key);
    switch (json_type_of(v)) {
    case JSON_MISSING:
    case JSON_NULL: return dflt;
    case JSON_BOOL: return json_bool(v);
    default: return -2;
    }
}

int wordpiece_load(tokenizer *t, const char *dir, const json_value *cfg, char *err, size_t errlen) {
    int lower = cfg_bool(cfg, "do_lower_case", 1);
    int chinese = cfg_bool(cfg, "tokenize_chinese_chars", 1);
    int strip = cfg_bool(cfg, "strip_accents", -1);
    int basic = cfg_bool(cfg, "do_basic_tokenize", 1);
    if (lower == -2 || chinese == -2 || strip == -2 || basic == -2)
        return set_err(err, errlen,
                       "%s/tokenizer_config.json: do_lower_case, strip_accents, "
                       "tokenize_chinese_chars and do_basic_tokenize must be booleans",
                       dir);
    if (!basic)
        return set_err(err, errlen,
                       "%s/tokenizer_config.json: do_basic_tokenize = false is "
                       "not supported",
                       dir);
    t->do_lower_case = lower;
    t->tokenize_chinese_chars = chinese;
    t->strip_accents = strip;

    char *buf;
    size_t len;
    int r = tok_read_file(dir, "vocab.txt", TOKENIZER_MAX_FILE_BYTES, &buf, &len, err, errlen);
    if (r <= 0) {
        if (r == 0) set_err(err, errlen, "%s/vocab.txt: not found", dir);
        return -1;
    }
    size_t bad = tok_utf8_invalid_at(buf, len);
    if (bad < len) {
        set_err(err, errlen, "%s/vocab.txt: invalid UTF-8 at byte %zu", dir, bad);
        free(buf);
        return -1;
    }
    /* load_vocab: Python text mode reads "\r\n" and "\r" as "\n"; each line
     * minus its newline is a token, its 0-based line number the id; a later
     * duplicate wins. */
    int rc = 0;
    int64_t index = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && buf[j] != '\n' && buf[j] != '\r') j++;
        if (index > INT32_MAX - 1) {
            set_err(err, errlen, "%s/vocab.txt: too many lines", dir);
            rc = -1;
            break;
        }
        if (tok_map_put(&t->vocab, buf + i, j - i, (int32_t)index, NULL)) {
            set_err(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        index++;
        if (j < len && buf[j] == '\r' && j + 1 < len && buf[j + 1] == '\n') j++;
        i = j + 1;
    }
    free(buf);
    if (rc == 0 && index == 0) {
        set_err(err, errlen, "%s/vocab.txt: empty", dir);
        rc = -1;
    }
    return rc;
}
