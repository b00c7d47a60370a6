/* bpe.c — byte-level BPE (GPT-2 / RoBERTa as Hugging Face's RobertaTokenizer
 * (slow) does it; LLaMA-3 and Qwen2 as their tokenizer.json says), and the
 * merge loop SentencePiece-style BPE (spm.c) shares.
 *
 * 1. Pre-tokenisation by GPT-2's regex (the `regex` module, Unicode classes):
 *      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *    implemented by hand below: alternatives are tried in that order at each
 *    position, with the backtracking the regex engine would do (" ?" tries the
 *    space first; "\s+(?!\S)" gives back one whitespace character when a
 *    non-space follows, so "a   b" splits "a", "  ", " b"). \s is the
 *    White_Space property, \p{L} / \p{N} the general categories.
 *    or by LLaMA-3's / Qwen2's (tiktoken-style) regex, also by hand, see
 *    pretoken_end_llama3; Qwen2's NFC normalizer runs first.
 * 2. Each pre-token's UTF-8 bytes become printable characters through GPT-2's
 *    bytes_to_unicode table (printable Latin-1 bytes map to themselves, the
 *    other 68 bytes to U+0100..U+0143; so space is "Ġ", U+0120).
 *    With ignore_merges (LLaMA-3) a pre-token that is itself in the
 *    vocabulary is that one token.
 * 3. BPE: repeatedly take the adjacent pair with the lowest merge rank and
 *    merge all its occurrences left to right; stop when no pair has a rank.
 *    A min-heap of (rank, position) candidates makes this O(n log n) rather
 *    than Python's O(n^2); all occurrences of one rank are merged as a batch
 *    before new neighbours are considered, which is what Python's loop does
 *    even for merge tables where a newly formed pair outranks the current
 *    one.
 * 4. Each symbol's id comes from the vocabulary; a symbol missing from it
 *    becomes its <0xNN> byte tokens with byte_fallback (SentencePiece
 *    style), else the unknown token (one per run with fuse_unk), else an
 *    error. */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/normalize.h"
#include "tokenizer/tokutil.h"

#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"
#include "tokenizer/unicode_tables.h"

/* bytes_to_unicode: non-printable bytes map to U+0100 upwards, in byte order. */
#define BYTE_SHIFT_BASE 0x100u

/* ------------------------------------------------------------------ */
/* GPT-2 bytes_to_unicode                                               */

static uint32_t byte_char(unsigned b) {
    /* Printable: '!'..'~', '¡'..'¬', '®'..'ÿ' map to themselves. */
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    /* The others, counted in byte order: 0x00-0x20 (33), 0x7F-0xA0 (34), 0xAD. */
    if (b <= 0x20) return BYTE_SHIFT_BASE + b;
    if (b <= 0xA0) return BYTE_SHIFT_BASE + 33 + (b - 0x7F);
    return BYTE_SHIFT_BASE + 67;
}

int bpe_char_byte(uint32_t cp) {
    if (cp < 0x100 && byte_char(cp) == cp) return (int)cp;
    if (cp >= BYTE_SHIFT_BASE && cp < BYTE_SHIFT_BASE + 68) {
        uint32_t k = cp - BYTE_SHIFT_BASE;
        return (int)(k <= 32 ? k : k <= 66 ? 0x7F + (k - 33) : 0xAD);
    }
    return -1;
}

/* ------------------------------------------------------------------ */
/* Pre-tokenisation                                                     */

static bool is_letter(uint32_t c) { return (uni_flags(c) & UNI_LETTER) != 0; }
static bool is_number(uint32_t c) { return (uni_flags(c) & UNI_NUMBER) != 0; }
static bool is_space(uint32_t c) { return (uni_flags(c) & UNI_WHITE_SPACE) != 0; }
static bool is_other(uint32_t c) {
    return !(uni_flags(c) & (UNI_LETTER | UNI_NUMBER | UNI_WHITE_SPACE));
}

/* End of the regex match starting at c[i] (i < n). */
static size_t pretoken_end(const uint32_t *c, size_t n, size_t i) {
    /* 's|'t|'re|'ve|'m|'ll|'d (case-sensitive) */
    if (c[i] == '\'' && i + 1 < n) {
        uint32_t x = c[i + 1];
        if (x == 's' || x == 't' || x == 'm' || x == 'd') return i + 2;
        if (i + 2 < n && ((x == 'r' && c[i + 2] == 'e') || (x == 'v' && c[i + 2] == 'e') ||
                          (x == 'l' && c[i + 2] == 'l')))
            return i + 3;
    }
    /* " ?X+" for X = \p{L}, \p{N}, [^\s\p{L}\p{N}]: with the space if the
     * class follows it; without it the space itself would have to be an X,
     * which it is not for any of the three. */
    size_t j = i + (c[i] == ' ' ? 1 : 0);
    if (j < n) {
        bool (*cls)(uint32_t) = is_letter(c[j])   ? is_letter
                                : is_number(c[j]) ? is_number
                                : is_other(c[j])  ? is_other
                                                  : NULL;
        if (cls) {
            while (j < n && cls(c[j])) j++;
            return j;
        }
    }
    /* \s+(?!\S) then \s+ : c[i] is whitespace here. */
    j = i;
    while (j < n && is_space(c[j])) j++;
    if (j < n && j - i >= 2) return j - 1; /* leave the last space to prefix the next word */
    return j;
}

static bool is_newline(uint32_t c) { return c == '\r' || c == '\n'; }

/* (?i:'s|'t|'re|'ve|'m|'ll|'d) at c[i]: the match's end, or i. Case
 * folding is Unicode's simple folding, so 's' also matches U+017F (ſ). */
static size_t contraction_end(const uint32_t *c, size_t n, size_t i) {
    if (c[i] != '\'' || i + 1 >= n) return i;
    uint32_t x = c[i + 1] | 0x20u, y = i + 2 < n ? c[i + 2] | 0x20u : 0;
    if (x == 's' || x == 't' || x == 'm' || x == 'd' || c[i + 1] == 0x17F) return i + 2;
    if ((x == 'r' && y == 'e') || (x == 'v' && y == 'e') || (x == 'l' && y == 'l')) return i + 3;
    return i;
}

/* End of the match at c[i] (i < n) of LLaMA-3's pre-tokenizer regex
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
 *   | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * or Qwen2's (\p{N} instead of \p{N}{1,3}), alternatives in order, with the
 * regex engine's backtracking worked out per alternative. */
static size_t pretoken_end_llama3(const uint32_t *c, size_t n, size_t i, tok_pretok kind) {
    size_t j = contraction_end(c, n, i);
    if (j > i) return j;
    /* [^\r\n\p{L}\p{N}]?\p{L}+ : the optional character is taken first when
     * a letter follows it, else the run must start at c[i]. */
    j = i;
    if (!is_newline(c[j]) && !is_letter(c[j]) && !is_number(c[j]) && j + 1 < n &&
        is_letter(c[j + 1]))
        j++;
    if (is_letter(c[j])) {
        while (j < n && is_letter(c[j])) j++;
        return j;
    }
    /* \p{N}{1,3} (LLaMA-3) or \p{N} (Qwen2) */
    if (is_number(c[i])) {
        size_t max = kind == PRETOK_QWEN2 ? 1 : 3;
        for (j = i; j < n && j - i < max && is_number(c[j]);) j++;
        return j;
    }
    /* " ?[^\s\p{L}\p{N}]+[\r\n]*" */
    j = i + (c[i] == ' ' && i + 1 < n && is_other(c[i + 1]) ? 1 : 0);
    if (is_other(c[j])) {
        while (j < n && is_other(c[j])) j++;
        while (j < n && is_newline(c[j])) j++;
        return j;
    }
    /* c[i] is whitespace now. \s*[\r\n]+ : \s* backs off to the last
     * newline of the whitespace run, [\r\n]+ takes it (nothing follows it
     * in the run that is a newline). */
    size_t e = i, last_nl = 0;
    bool nl = false;
    while (e < n && is_space(c[e])) {
        if (is_newline(c[e])) {
            nl = true;
            last_nl = e;
        }
        e++;
    }
    if (nl) return last_nl + 1;
    /* \s+(?!\S): give back one space when a non-space follows; then \s+. */
    if (e < n && e - i >= 2) return e - 1;
    return e;
}

/* ------------------------------------------------------------------ */
/* BPE merges                                                           */

typedef struct {
    uint32_t start, len; /* bytes of word; len 0 = merged into its left neighbour */
    int32_t prev, next;
} bpe_sym;

typedef struct {
    int32_t rank;
    int32_t left, right;
    uint32_t llen, rlen; /* lengths when queued: stale if either changed */
} bpe_cand;

struct bpe_scratch {
    tok_u32vec cps, offs;
    tok_bytes word, key;
    bpe_sym *syms;
    size_t syms_cap;
    bpe_cand *heap, *batch;
    size_t heap_n, heap_cap, batch_cap;
    tok_i32vec touched;
};

bpe_scratch *bpe_scratch_new(void) { return calloc(1, sizeof(bpe_scratch)); }

void bpe_scratch_free(bpe_scratch *s) {
    if (!s) return;
    free(s->cps.v);
    free(s->offs.v);
    free(s->word.v);
    free(s->key.v);
    free(s->syms);
    free(s->heap);
    free(s->batch);
    free(s->touched.v);
    free(s);
}

static bool cand_less(const bpe_cand *a, const bpe_cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int heap_push(bpe_scratch *s, bpe_cand c) {
    if (s->heap_n == s->heap_cap) {
        size_t nc = s->heap_cap ? s->heap_cap * 2 : 64;
        bpe_cand *h = realloc(s->heap, nc * sizeof *h);
        if (!h) return -1;
        s->heap = h;
        s->heap_cap = nc;
    }
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = c;
    return 0;
}

static bpe_cand heap_pop(bpe_scratch *s) {
    bpe_cand top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const bpe_cand *best = &last;
        if (l < n && cand_less(&s->heap[l], best)) {
            m = l;
            best = &s->heap[l];
        }
        if (l + 1 < n && cand_less(&s->heap[l + 1], best)) m = l + 1;
        if (m == i) break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

/* Queue the pair (l, r) if the merge table ranks it. */
static int queue_pair(const tokenizer *t, bpe_scratch *s, int32_t l, int32_t r) {
    const bpe_sym *a = &s->syms[l], *b = &s->syms[r];
    s->key.n = 0;
    if (tok_bytes_append(&s->key, s->word.v + a->start, a->len) ||
        tok_bytes_append(&s->key, " ", 1) ||
        tok_bytes_append(&s->key, s->word.v + b->start, b->len))
        return -1;
    int32_t rank;
    if (!tok_map_get(&t->merges, s->key.v, s->key.n, &rank)) return 0;
    return heap_push(s, (bpe_cand){rank, l, r, a->len, b->len});
}

static bool cand_valid(const bpe_scratch *s, const bpe_cand *c) {
    const bpe_sym *a = &s->syms[c->left];
    return a->len == c->llen && a->next == c->right && s->syms[c->right].len == c->rlen;
}

int tok_push_unknown(const tokenizer *t, const char *sym, size_t len, tok_i32vec *out,
                     bool *prev_unk, char *err, size_t errlen) {
    if (t->byte_fallback) {
        /* Only when every byte has its token (HF's rule); else <unk>. */
        size_t k = 0;
        while (k < len && t->byte_ids[(unsigned char)sym[k]] >= 0) k++;
        if (k == len) {
            for (k = 0; k < len; k++)
                if (tok_i32_push(out, t->byte_ids[(unsigned char)sym[k]])) goto oom;
            *prev_unk = false;
            return 0;
        }
    }
    if (t->unk_id < 0)
        return set_err(err, errlen,
                       "token \"%.*s\" is not in the vocabulary and there "
                       "is no unknown token",
                       (int)(len > 64 ? 64 : len), sym);
    if (!(t->fuse_unk && *prev_unk) && tok_i32_push(out, t->unk_id)) goto oom;
    *prev_unk = true;
    return 0;
oom:
    return set_err(err, errlen, "out of memory");
}

int bpe_merge_word(const tokenizer *t, const char *w, size_t n, bpe_scratch *s, tok_i32vec *out,
                   char *err, size_t errlen) {
    if (n > INT32_MAX / 2) return set_err(err, errlen, "text too long");
    if (n > s->syms_cap) {
        bpe_sym *ns = realloc(s->syms, n * sizeof *ns);
        if (!ns) goto oom;
        s->syms = ns;
        s->syms_cap = n;
    }
    if (w != s->word.v) {
        s->word.n = 0;
        if (tok_bytes_append(&s->word, w, n)) goto oom;
    }
    /* One symbol per code point. */
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        size_t start = i;
        tok_utf8_next(s->word.v, n, &i);
        s->syms[m] = (bpe_sym){(uint32_t)start, (uint32_t)(i - start), (int32_t)m - 1, -1};
        if (m > 0) s->syms[m - 1].next = (int32_t)m;
        m++;
    }
    s->heap_n = 0;
    for (size_t k = 0; k + 1 < m; k++)
        if (queue_pair(t, s, (int32_t)k, (int32_t)k + 1)) goto oom;
    while (s->heap_n > 0) {
        /* Take every queued occurrence of the best-ranked pair (the heap
         * yields them left to right), merge the still-valid ones, and only
         * then queue the pairs the merges created. */
        int32_t rank = s->heap[0].rank;
        size_t nb = 0;
        while (s->heap_n > 0 && s->heap[0].rank == rank) {
            if (nb == s->batch_cap) {
                size_t nc = s->batch_cap ? s->batch_cap * 2 : 64;
                bpe_cand *nbat = realloc(s->batch, nc * sizeof *nbat);
                if (!nbat) goto oom;
                s->batch = nbat;
                s->batch_cap = nc;
            }
            s->batch[nb++] = heap_pop(s);
        }
        s->touched.n = 0;
        for (size_t k = 0; k < nb; k++) {
            const bpe_cand *c = &s->batch[k];
            if (!cand_valid(s, c)) continue;
            bpe_sym *l = &s->syms[c->left], *r = &s->syms[c->right];
            l->len += r->len;
            l->next = r->next;
            if (r->next >= 0) s->syms[r->next].prev = c->left;
            r->len = 0;
            if (tok_i32_push(&s->touched, c->left)) goto oom;
        }
        for (size_t k = 0; k < s->touched.n; k++) {
            int32_t x = s->touched.v[k];
            if (s->syms[x].len == 0) continue;
            if (s->syms[x].prev >= 0 && queue_pair(t, s, s->syms[x].prev, x)) goto oom;
            if (s->syms[x].next >= 0 && queue_pair(t, s, x, s->syms[x].next)) goto oom;
        }
    }
    bool prev_unk = false;
    for (int32_t k = 0; k >= 0; k = s->syms[k].next) {
        const char *sym = s->word.v + s->syms[k].start;
        int32_t id;
        if (tok_map_get(&t->vocab, sym, s->syms[k].len, &id)) {
            if (tok_i32_push(out, id)) goto oom;
            prev_unk = false;
        } else if (tok_push_unknown(t, sym, s->syms[k].len, out, &prev_unk, err, errlen)) {
            return -1;
        }
    }
    return 0;
oom:
    return set_err(err, errlen, "out of memory");
}

/* Byte-level BPE of one pre-token (raw bytes b[0..m), m > 0): bytes to
 * GPT-2's printable characters, then merges (or, with ignore_merges, the
 * whole pre-token when the vocabulary has it). */
static int bpe_word(const tokenizer *t, const unsigned char *b, size_t m, bpe_scratch *s,
                    tok_i32vec *out, char *err, size_t errlen) {
    s->word.n = 0;
    for (size_t k = 0; k < m; k++)
        if (tok_bytes_put_cp(&s->word, byte_char(b[k])))
            return set_err(err, errlen, "out of memory");
    int32_t id;
    if (t->ignore_merges && tok_map_get(&t->vocab, s->word.v, s->word.n, &id)) {
        if (tok_i32_push(out, id)) return set_err(err, errlen, "out of memory");
        return 0;
    }
    return bpe_merge_word(t, s->word.v, s->word.n, s, out, err, errlen);
}

/* out = NFC(text) as UTF-8 (uses the scratch's arrays, left empty). */
static int nfc_text(const char *text, size_t len, bpe_scratch *s, tok_bytes *out) {
    tok_u32vec tmp = {0}, normed = {0};
    int rc = tok_utf8_decode(text, len, &s->cps, NULL) ||
             tok_nfc(s->cps.v, s->cps.n, &normed, &tmp) || tok_bytes_append(out, "", 0);
    for (size_t i = 0; i < normed.n && rc == 0; i++) rc = tok_bytes_put_cp(out, normed.v[i]);
    s->cps.n = 0;
    free(tmp.v);
    free(normed.v);
    return rc ? -1 : 0;
}

int bpe_tokenize(const tokenizer *t, const char *text, size_t len, size_t cap, tok_i32vec *out,
                 char *err, size_t errlen) {
    bpe_scratch *s = bpe_scratch_new();
    tok_bytes normed = {0};
    if (!s || (t->nfc && nfc_text(text, len, s, &normed)) ||
        tok_utf8_decode(normed.v ? normed.v : text, normed.v ? normed.n : len, &s->cps, &s->offs)) {
        bpe_scratch_free(s);
        free(normed.v);
        return set_err(err, errlen, "out of memory");
    }
    if (normed.v) text = normed.v;
    int rc = 0;
    size_t i = 0, n = s->cps.n;
    while (rc == 0 && i < n && out->n < cap) {
        size_t j = t->pretok == PRETOK_GPT2 ? pretoken_end(s->cps.v, n, i)
                                            : pretoken_end_llama3(s->cps.v, n, i, t->pretok);
        size_t b0 = s->offs.v[i], b1 = s->offs.v[j];
        rc = bpe_word(t, (const unsigned char *)text + b0, b1 - b0, s, out, err, errlen);
        i = j;
    }
    bpe_scratch_free(s);
    free(normed.v);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Loading                                                              */

static int put_vocab(tokenizer *t, const json_value *vocab, const char *where, char *err,
                     size_t errlen) {
    if (json_type_of(vocab) != JSON_OBJECT || json_len(vocab) == 0)
        return set_err(err, errlen, "%s: the vocabulary must be a non-empty object", where);
    for (size_t i = 0; i < json_len(vocab); i++) {
        size_t klen;
        const char *key = json_key_at(vocab, i, &klen);
        const json_value *v = json_at(vocab, i);
        if (!json_is_int(v) || json_int(v) < 0 || json_int(v) > INT32_MAX - 1)
            return set_err(err, errlen, "%s: id of \"%.*s\" is not an integer in [0, 2^31-1)",
                           where, (int)(klen > 64 ? 64 : klen), key);
        if (tok_map_put(&t->vocab, key, klen, (int32_t)json_int(v), NULL))
            return set_err(err, errlen, "out of memory");
    }
    return 0;
}

static int put_merge(tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                     int32_t rank, tok_bytes *key) {
    key->n = 0;
    if (tok_bytes_append(key, a, alen) || tok_bytes_append(key, " ", 1) ||
        tok_bytes_append(key, b, blen))
        return -1;
    return tok_map_put(&t->merges, key->v, key->n, rank, NULL);
}

/* merges.txt as RobertaTokenizer reads it: read().split("\n")[1:-1] in
 * text mode (so "\r\n" and "\r" count as "\n"): the first line (the
 * "#version" header) and the text after the last newline are dropped
 * whatever they hold; each remaining line's str.split() must give a pair to
 * be a merge, and its index is the rank (a later duplicate wins). */
static int parse_merges(tokenizer *t, const char *buf, size_t len, char *err, size_t errlen) {
    tok_bytes key = {0};
    int rc = 0;
    size_t i = 0;
    int64_t line = 0;
    while (i < len && rc == 0) {
        size_t j = i;
        while (j < len && buf[j] != '\n' && buf[j] != '\r') j++;
        if (j == len) break; /* no newline after it: the dropped last element */
        if (line > 0) {
            /* Split on Python whitespace into at most 3 fields. */
            size_t fs[3], fe[3];
            int nf = 0;
            size_t p = i;
            while (p < j && nf < 3) {
                size_t q = p;
                while (q < j) {
                    size_t r = q;
                    if (uni_flags(tok_utf8_next(buf, j, &r)) & UNI_PY_SPACE) break;
                    q = r;
                }
                if (q > p) {
                    fs[nf] = p;
                    fe[nf] = q;
                    nf++;
                }
                if (q == j) break;
                tok_utf8_next(buf, j, &q);
                p = q;
            }
            if (line - 1 > INT32_MAX - 1) {
                set_err(err, errlen, "merges.txt: too many lines");
                rc = -1;
            } else if (nf == 2 && put_merge(t, buf + fs[0], fe[0] - fs[0], buf + fs[1],
                                            fe[1] - fs[1], (int32_t)(line - 1), &key)) {
                set_err(err, errlen, "out of memory");
                rc = -1;
            }
        }
        line++;
        if (buf[j] == '\r' && j + 1 < len && buf[j + 1] == '\n') j++;
        i = j + 1;
    }
    free(key.v);
    return rc;
}

static int cfg_prefix_space(tokenizer *t, const json_value *cfg, char *err, size_t errlen) {
    const json_value *v = json_get(cfg, "add_prefix_space");
    if (json_type_of(v) == JSON_BOOL)
        t->add_prefix_space = json_bool(v);
    else if (json_type_of(v) != JSON_MISSING && json_type_of(v) != JSON_NULL)
        return set_err(err, errlen, "tokenizer_config.json: add_prefix_space must be a boolean");
    return 0;
}

int bpe_load_files(tokenizer *t, const char *dir, const json_value *cfg, char *err, size_t errlen) {
    json_value *vocab;
    int r = tok_read_json(dir, "vocab.json", TOKENIZER_MAX_FILE_BYTES, &vocab, err, errlen);
    if (r <= 0) {
        if (r == 0) set_err(err, errlen, "%s/vocab.json: not found", dir);
        return -1;
    }
    int rc = put_vocab(t, vocab, "vocab.json", err, errlen);
    json_free(vocab);
    if (rc) return -1;

    char *buf;
    size_t len;
    r = tok_read_file(dir, "merges.txt", TOKENIZER_MAX_FILE_BYTES, &buf, &len, err, errlen);
    if (r <= 0) {
        if (r == 0) set_err(err, errlen, "%s/merges.txt: not found", dir);
        return -1;
    }
    size_t bad = tok_utf8_invalid_at(buf, len);
    if (bad < len) {
        set_err(err, errlen, "%s/merges.txt: invalid UTF-8 at byte %zu", dir, bad);
        free(buf);
        return -1;
    }
    rc = parse_merges(t, buf, len, err, errlen);
    free(buf);
    if (rc) return -1;
    return cfg_prefix_space(t, cfg, err, errlen);
}

/* A string field that must be absent, null or "". */
static bool empty_or_null(const json_value *v) {
    size_t n;
    return json_type_of(v) == JSON_MISSING || json_type_of(v) == JSON_NULL ||
           (json_type_of(v) == JSON_STRING && (json_string(v, &n), n == 0));
}

/* The pre-tokenizer regexes recognised in a Split pre-tokenizer, exactly as
 * tokenizer.json spells them (matched as strings: the matcher for each is
 * written by hand above, there is no general regex engine). */
static const struct {
    const char *pattern;
    tok_pretok kind;
} known_splits[] = {
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     PRETOK_LLAMA3},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     PRETOK_QWEN2},
};

/* Sequence [Split{Regex: known pattern, Isolated}, ByteLevel{use_regex:
 * false}]: LLaMA-3 / Qwen2. 0 with t->pretok set, or -1. */
static int split_then_bytelevel(tokenizer *t, const json_value *pre, char *err, size_t errlen) {
    const json_value *seq = json_get(pre, "pretokenizers");
    const json_value *split = json_at(seq, 0), *bl = json_at(seq, 1);
    const char *st = json_string(json_get(split, "type"), NULL);
    const char *bt = json_string(json_get(bl, "type"), NULL);
    const char *beh = json_string(json_get(split, "behavior"), NULL);
    size_t plen;
    const char *pat = json_string(json_get(json_get(split, "pattern"), "Regex"), &plen);
    if (json_len(seq) != 2 || !st || strcmp(st, "Split") != 0 || !bt ||
        strcmp(bt, "ByteLevel") != 0 || json_bool(json_get(bl, "use_regex")) ||
        json_bool(json_get(bl, "add_prefix_space")) || !beh || strcmp(beh, "Isolated") != 0 ||
        json_bool(json_get(split, "invert")) || !pat)
        return set_err(err, errlen,
                       "tokenizer.json: a Sequence pre-tokenizer must be [Split (regex, "
                       "Isolated), ByteLevel (use_regex false)]");
    for (size_t i = 0; i < sizeof known_splits / sizeof known_splits[0]; i++) {
        if (strlen(known_splits[i].pattern) == plen &&
            memcmp(known_splits[i].pattern, pat, plen) == 0) {
            t->pretok = known_splits[i].kind;
            return 0;
        }
    }
    return set_err(err, errlen,
                   "tokenizer.json: Split pattern \"%.80s\" is not one of the known "
                   "pre-tokenizer regexes (GPT-2, LLaMA-3, Qwen2)",
                   pat);
}

int bpe_load_model_json(tokenizer *t, const json_value *model, char *err, size_t errlen) {
    if (!empty_or_null(json_get(model, "dropout")) ||
        !empty_or_null(json_get(model, "continuing_subword_prefix")) ||
        !empty_or_null(json_get(model, "end_of_word_suffix")))
        return set_err(err, errlen,
                       "tokenizer.json: BPE with dropout or a subword prefix/suffix is "
                       "not supported");
    t->byte_fallback = json_bool(json_get(model, "byte_fallback"));
    t->ignore_merges = json_bool(json_get(model, "ignore_merges"));
    t->fuse_unk = json_bool(json_get(model, "fuse_unk"));
    if (put_vocab(t, json_get(model, "vocab"), "tokenizer.json", err, errlen)) return -1;
    size_t ul;
    const char *unk = json_string(json_get(model, "unk_token"), &ul);
    if (unk && !tok_map_get(&t->vocab, unk, ul, &t->unk_id))
        return set_err(err, errlen, "tokenizer.json: unk_token \"%.*s\" is not in the vocabulary",
                       (int)(ul > 64 ? 64 : ul), unk);
    spm_find_byte_tokens(t);
    const json_value *merges = json_get(model, "merges");
    if (json_type_of(merges) != JSON_ARRAY)
        return set_err(err, errlen, "tokenizer.json: model.merges must be an array");
    tok_bytes key = {0};
    int rc = 0;
    for (size_t i = 0; i < json_len(merges) && rc == 0; i++) {
        const json_value *m = json_at(merges, i);
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        if (json_type_of(m) == JSON_STRING) {
            /* "a b": exactly one space (the Rust loader's rule). */
            size_t n;
            const char *s = json_string(m, &n);
            const char *sp = memchr(s, ' ', n);
            if (sp && !memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) {
                a = s;
                alen = (size_t)(sp - s);
                b = sp + 1;
                blen = n - alen - 1;
            }
        } else if (json_type_of(m) == JSON_ARRAY && json_len(m) == 2) {
            a = json_string(json_at(m, 0), &alen);
            b = json_string(json_at(m, 1), &blen);
        }
        if (!a || !b || alen == 0 || blen == 0 || i > INT32_MAX - 1) {
            set_err(err, errlen, "tokenizer.json: merge %zu is not a pair of tokens", i);
            rc = -1;
        } else if (put_merge(t, a, alen, b, blen, (int32_t)i, &key)) {
            set_err(err, errlen, "out of memory");
            rc = -1;
        }
    }
    free(key.v);
    return rc;
}

int bpe_load_tokenizer_json(tokenizer *t, const json_value *root, const json_value *cfg, char *err,
                            size_t errlen) {
    const json_value *norm = json_get(root, "normalizer");
    const char *ntype = json_string(json_get(norm, "type"), NULL);
    if (ntype && strcmp(ntype, "NFC") == 0)
        t->nfc = true; /* Qwen2 */
    else if (json_type_of(norm) != JSON_MISSING && json_type_of(norm) != JSON_NULL)
        return set_err(err, errlen,
                       "tokenizer.json: normalizer \"%s\" is not supported (only NFC is, "
                       "with a byte-level BPE)",
                       ntype ? ntype : "?");
    const json_value *pre = json_get(root, "pre_tokenizer");
    const char *ptype = json_string(json_get(pre, "type"), NULL);
    const json_value *use_regex = json_get(pre, "use_regex");
    if (ptype && strcmp(ptype, "Sequence") == 0) {
        if (split_then_bytelevel(t, pre, err, errlen)) return -1;
    } else if (!ptype || strcmp(ptype, "ByteLevel") != 0 ||
               (json_type_of(use_regex) == JSON_BOOL && !json_bool(use_regex))) {
        return set_err(err, errlen,
                       "tokenizer.json: only the ByteLevel pre-tokenizer (with its "
                       "regex) is supported, not \"%s\"",
                       ptype ? ptype : "none");
    } else {
        t->add_prefix_space = json_bool(json_get(pre, "add_prefix_space"));
    }
    if (bpe_load_model_json(t, json_get(root, "model"), err, errlen)) return -1;
    if (t->byte_fallback)
        return set_err(err, errlen, "tokenizer.json: byte-level BPE with byte_fallback");
    return cfg_prefix_space(t, cfg, err, errlen);
}
