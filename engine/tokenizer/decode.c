/* decode.c — token ids back to text (tokenizer_decode), per tokenizer kind,
 * as Hugging Face's decoders do it:
 *   - WordPiece: tokens joined by spaces, "##" continuations glued to the
 *     previous token (BertTokenizer's convert_tokens_to_string; its
 *     clean_up_tokenization_spaces pass is not applied).
 *   - byte-level BPE: each character maps back to the byte it stands for
 *     (GPT-2's bytes_to_unicode inverse); the bytes are read as UTF-8 with
 *     each ill-formed sequence (maximal subpart) replaced by U+FFFD, as
 *     Rust's from_utf8_lossy / Python's errors="replace" do.
 *   - SentencePiece: "▁" becomes a space; runs of <0xNN> byte tokens are
 *     reassembled and read as UTF-8 (a run that is not valid UTF-8 becomes
 *     one U+FFFD per byte, HF's ByteFallback decoder); the dummy-prefix space
 *     at the start of the text is dropped (HF's Strip / Metaspace decoder).
 * Added tokens are written as their content; those marked special are left
 * out with skip_special. */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/tokutil.h"

#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"

static const char REPLACEMENT_CHAR[] = "\xef\xbf\xbd"; /* U+FFFD */

/* Length of the longest prefix of s[0..n) (n > 0, s[0] starting an
 * ill-formed sequence) that could begin a well-formed one: the maximal
 * subpart replaced by one U+FFFD (Unicode 3.9, "U+FFFD substitution of
 * maximal subparts"). */
static size_t maximal_subpart(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 1;
    size_t k = 1;
    if (k < n && s[k] >= lo && s[k] <= hi) {
        k++;
        while (k < need && k < n && s[k] >= 0x80 && s[k] <= 0xBF) k++;
    }
    return k;
}

/* Append b[0..n) as UTF-8, ill-formed parts replaced (see above). */
static int append_lossy(tok_bytes *out, const char *b, size_t n) {
    size_t i = 0;
    if (n == 0) return 0;
    while (i < n) {
        size_t bad = tok_utf8_invalid_at(b + i, n - i);
        if (tok_bytes_append(out, b + i, bad)) return -1;
        i += bad;
        if (i < n) {
            if (tok_bytes_append(out, REPLACEMENT_CHAR, 3)) return -1;
            i += maximal_subpart((const unsigned char *)b + i, n - i);
        }
    }
    return 0;
}

/* The byte of a "<0xNN>" token, or -1. */
static int byte_token(const char *s) {
    if (strncmp(s, "<0x", 3) != 0 || strlen(s) != 6 || s[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static const tok_added *added_by_id(const tokenizer *t, int32_t id) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return &t->added[i];
    return NULL;
}

/* SentencePiece: flush the pending byte run. */
static int flush_bytes(tok_bytes *out, tok_bytes *run) {
    int rc = 0;
    if (run->n == 0) return 0;
    if (tok_utf8_invalid_at(run->v, run->n) == run->n)
        rc = tok_bytes_append(out, run->v, run->n);
    else
        for (size_t k = 0; k < run->n && rc == 0; k++)
            rc = tok_bytes_append(out, REPLACEMENT_CHAR, 3);
    run->n = 0;
    return rc;
}

int tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                     char **text, size_t *len, char *err, size_t errlen) {
    tok_bytes out = {0}, run = {0};
    *text = NULL;
    *len = 0;
    if (tok_bytes_append(&out, "", 0)) goto oom;
    bool spm = t->kind == TOKENIZER_SPM_BPE || t->kind == TOKENIZER_SPM_UNIGRAM;
    for (size_t i = 0; i < n; i++) {
        const char *tok = tokenizer_id_to_token(t, ids[i]);
        if (!tok) {
            set_err(err, errlen, "token id %d is not in the vocabulary", (int)ids[i]);
            goto fail;
        }
        const tok_added *a = added_by_id(t, ids[i]);
        if (a && a->special && skip_special) continue;
        size_t tl = strlen(tok);
        if (spm) {
            int b = byte_token(tok);
            if (b >= 0 && t->byte_fallback) {
                char c = (char)b;
                if (tok_bytes_append(&run, &c, 1)) goto oom;
                continue;
            }
            if (flush_bytes(&out, &run)) goto oom;
            if (a) {
                if (tok_bytes_append(&out, tok, tl)) goto oom;
                continue;
            }
            for (size_t k = 0; k < tl; k++) {
                if (k + 3 <= tl && memcmp(tok + k, "\xe2\x96\x81", 3) == 0) {
                    if (tok_bytes_append(&out, " ", 1)) goto oom;
                    k += 2;
                } else if (tok_bytes_append(&out, tok + k, 1)) {
                    goto oom;
                }
            }
        } else if (t->kind == TOKENIZER_BPE) {
            if (a) {
                if (append_lossy(&out, run.v, run.n) || tok_bytes_append(&out, tok, tl)) goto oom;
                run.n = 0;
                continue;
            }
            for (size_t k = 0; k < tl;) {
                int b = bpe_char_byte(tok_utf8_next(tok, tl, &k));
                char c = (char)b;
                if (b >= 0 && tok_bytes_append(&run, &c, 1)) goto oom;
            }
        } else { /* WordPiece */
            bool cont = !a && tl > 2 && tok[0] == '#' && tok[1] == '#';
            if (out.n > 0 && !cont && tok_bytes_append(&out, " ", 1)) goto oom;
            if (tok_bytes_append(&out, cont ? tok + 2 : tok, cont ? tl - 2 : tl)) goto oom;
        }
    }
    if (spm ? flush_bytes(&out, &run) : append_lossy(&out, run.v, run.n)) goto oom;
    if (spm && t->sp_prefix != SP_PREFIX_NEVER && out.n > 0 && out.v[0] == ' ') {
        memmove(out.v, out.v + 1, out.n); /* with the NUL */
        out.n--;
    }
    free(run.v);
    *text = out.v;
    *len = out.n;
    return 0;
oom:
    set_err(err, errlen, "out of memory");
fail:
    free(out.v);
    free(run.v);
    return -1;
}
