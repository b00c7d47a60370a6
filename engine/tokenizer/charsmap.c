/* charsmap.c — SentencePiece's precompiled_charsmap: the normalization rules
 * of a tokenizer.model (nmt_nfkc, or a model's own rule table) compiled into
 * a byte-string -> replacement map.
 *
 * The blob is: uint32 (little-endian) size of the trie in bytes; the trie,
 * a darts-clone double array of uint32 units; then the replacements, each
 * NUL-terminated, a match's value being its offset there. A unit packs:
 * label (bits 0-7, and bit 31 set on non-label units), has_leaf (bit 8), the
 * offset to the children (bits 10-31, shifted left by 8 more when bit 9 is
 * set), and for a leaf unit the value (bits 0-30). From the root the walk
 * XORs in each input byte and checks the label; a node with has_leaf ends
 * a key. SentencePiece replaces the longest key that matches at each
 * position and copies one character where none does; the replacement is
 * not normalized again. Every index is checked against the blob, so a
 * corrupt model is refused or maps nothing, never reads out of bounds. */
#include "tokenizer/charsmap.h"

#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"

struct tok_charsmap {
    uint32_t *units;
    size_t n_units;
    char *pool; /* replacements, NUL-terminated; pool[pool_len] is a guard NUL */
    size_t pool_len;
};

static uint32_t unit_label(uint32_t u) { return u & ((1u << 31) | 0xFFu); }
static bool unit_has_leaf(uint32_t u) { return (u >> 8) & 1u; }
static uint32_t unit_value(uint32_t u) { return u & ((1u << 31) - 1); }
static size_t unit_offset(uint32_t u) { return (size_t)(u >> 10) << ((u & (1u << 9)) >> 6); }

tok_charsmap *charsmap_new(const unsigned char *blob, size_t len, char *err, size_t errlen) {
    if (len < 4) {
        set_err(err, errlen, "precompiled_charsmap: too short");
        return NULL;
    }
    size_t trie =
        (size_t)blob[0] | (size_t)blob[1] << 8 | (size_t)blob[2] << 16 | (size_t)blob[3] << 24;
    if (trie % 4 != 0 || trie == 0 || trie > len - 4) {
        set_err(err, errlen, "precompiled_charsmap: bad trie size %zu", trie);
        return NULL;
    }
    tok_charsmap *cm = calloc(1, sizeof *cm);
    if (!cm) goto oom;
    cm->n_units = trie / 4;
    cm->units = malloc(trie);
    cm->pool_len = len - 4 - trie;
    cm->pool = malloc(cm->pool_len + 1);
    if (!cm->units || !cm->pool) goto oom;
    for (size_t i = 0; i < cm->n_units; i++) {
        const unsigned char *p = blob + 4 + 4 * i;
        cm->units[i] =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    }
    if (cm->pool_len) memcpy(cm->pool, blob + 4 + trie, cm->pool_len);
    cm->pool[cm->pool_len] = '\0';
    return cm;
oom:
    charsmap_free(cm);
    set_err(err, errlen, "out of memory");
    return NULL;
}

void charsmap_free(tok_charsmap *cm) {
    if (!cm) return;
    free(cm->units);
    free(cm->pool);
    free(cm);
}

/* Longest key matching at s[0..n): its length (0: none) and value. */
static size_t longest_match(const tok_charsmap *cm, const unsigned char *s, size_t n,
                            uint32_t *value) {
    size_t best = 0;
    size_t pos = unit_offset(cm->units[0]);
    for (size_t i = 0; i < n; i++) {
        pos ^= s[i];
        if (pos >= cm->n_units) break;
        uint32_t u = cm->units[pos];
        if (unit_label(u) != s[i]) break;
        pos ^= unit_offset(u);
        if (pos >= cm->n_units) break;
        if (unit_has_leaf(u)) {
            best = i + 1;
            *value = unit_value(cm->units[pos]);
        }
    }
    return best;
}

int charsmap_apply(const tok_charsmap *cm, const char *s, size_t n, tok_bytes *out) {
    size_t i = 0;
    if (tok_bytes_append(out, "", 0)) return -1;
    while (i < n) {
        uint32_t v = 0;
        size_t k = longest_match(cm, (const unsigned char *)s + i, n - i, &v);
        if (k > 0 && v < cm->pool_len) {
            if (tok_bytes_append(out, cm->pool + v, strlen(cm->pool + v))) return -1;
            i += k;
            continue;
        }
        size_t j = i;
        tok_utf8_next(s, n, &j); /* s is valid UTF-8: one character */
        if (tok_bytes_append(out, s + i, j - i)) return -1;
        i = j;
    }
    return 0;
}
