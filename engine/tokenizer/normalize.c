/* normalize.c — Unicode normalization forms NFD and NFC (UAX #15) over the
 * generated tables (unicode_tables.c), on arrays of code points: BERT's
 * tokenizer runs NFC and, to strip accents, NFD; Qwen2's tokenizer.json has
 * an NFC normalizer. Hangul syllables are composed and decomposed
 * arithmetically (Unicode ch. 3.12), the tables leave them out. Also
 * Python's str.lower(), which BERT's and DeBERTa's do_lower_case apply. */
#include "tokenizer/normalize.h"

#include <stdbool.h>
#include <string.h>

#include "tokenizer/unicode_tables.h"

/* Hangul syllable arithmetic (Unicode ch. 3.12). */
#define HANGUL_S_BASE 0xAC00u
#define HANGUL_L_BASE 0x1100u
#define HANGUL_V_BASE 0x1161u
#define HANGUL_T_BASE 0x11A7u
#define HANGUL_L_COUNT 19u
#define HANGUL_V_COUNT 21u
#define HANGUL_T_COUNT 28u
#define HANGUL_N_COUNT (HANGUL_V_COUNT * HANGUL_T_COUNT)
#define HANGUL_S_COUNT (HANGUL_L_COUNT * HANGUL_N_COUNT)

/* Below this no code point changes under NFC or combines with a neighbour
 * (the first combining mark is U+0300), so Latin-1 text skips NFC. */
#define NFC_QUICK_LIMIT 0x300u

/* The code points str.lower() treats specially. */
#define CP_FINAL_SIGMA 0x3C2u
#define CP_SMALL_SIGMA 0x3C3u
#define CP_CAPITAL_SIGMA 0x3A3u
#define CP_DOTTED_CAPITAL_I 0x130u
#define CP_COMBINING_DOT_ABOVE 0x307u

/* Append the canonical decomposition of in[0..n) to out and put each run of
 * combining marks in canonical order. */
int tok_nfd_append(const uint32_t *in, size_t n, tok_u32vec *out) {
    size_t first = out->n;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = in[i];
        uint32_t d[UNI_MAX_DECOMP];
        int k;
        if (cp >= HANGUL_S_BASE && cp < HANGUL_S_BASE + HANGUL_S_COUNT) {
            uint32_t s = cp - HANGUL_S_BASE;
            d[0] = HANGUL_L_BASE + s / HANGUL_N_COUNT;
            d[1] = HANGUL_V_BASE + (s % HANGUL_N_COUNT) / HANGUL_T_COUNT;
            k = 2;
            if (s % HANGUL_T_COUNT) d[k++] = HANGUL_T_BASE + s % HANGUL_T_COUNT;
        } else if ((k = uni_decompose(cp, d)) == 0) {
            d[0] = cp;
            k = 1;
        }
        if (tok_u32_reserve(out, (size_t)k)) return -1;
        for (int j = 0; j < k; j++) out->v[out->n++] = d[j];
    }
    /* Canonical ordering: stable insertion sort by combining class inside
     * each run of non-starters (runs are short). */
    uint32_t *v = out->v;
    for (size_t i = first; i < out->n; i++) {
        int ci = uni_ccc(v[i]);
        if (ci == 0) continue;
        size_t j = i;
        uint32_t x = v[i];
        while (j > first) {
            int cj = uni_ccc(v[j - 1]);
            if (cj == 0 || cj <= ci) break;
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
    return 0;
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= HANGUL_L_BASE && a < HANGUL_L_BASE + HANGUL_L_COUNT && b >= HANGUL_V_BASE &&
        b < HANGUL_V_BASE + HANGUL_V_COUNT)
        return HANGUL_S_BASE +
               ((a - HANGUL_L_BASE) * HANGUL_V_COUNT + (b - HANGUL_V_BASE)) * HANGUL_T_COUNT;
    if (a >= HANGUL_S_BASE && a < HANGUL_S_BASE + HANGUL_S_COUNT &&
        (a - HANGUL_S_BASE) % HANGUL_T_COUNT == 0 && b > HANGUL_T_BASE &&
        b < HANGUL_T_BASE + HANGUL_T_COUNT)
        return a + (b - HANGUL_T_BASE);
    return uni_compose(a, b);
}

/* out = NFC(in[0..n)); tmp is scratch. */
int tok_nfc(const uint32_t *in, size_t n, tok_u32vec *out, tok_u32vec *tmp) {
    out->n = 0;
    bool quick = true;
    for (size_t i = 0; i < n && quick; i++) quick = in[i] < NFC_QUICK_LIMIT;
    if (quick) {
        if (tok_u32_reserve(out, n)) return -1;
        if (n) memcpy(out->v, in, n * sizeof *in);
        out->n = n;
        return 0;
    }
    tmp->n = 0;
    if (tok_nfd_append(in, n, tmp)) return -1;
    if (tmp->n == 0) return 0;
    if (tok_u32_reserve(out, tmp->n)) return -1;
    /* Canonical composition: a mark composes with the last starter unless
     * a mark of equal or higher class (or a starter) stands between them. */
    uint32_t *o = out->v;
    size_t on = 1, starter = 0;
    o[0] = tmp->v[0];
    int last = uni_ccc(o[0]) ? 256 : 0;
    for (size_t i = 1; i < tmp->n; i++) {
        uint32_t ch = tmp->v[i];
        int cc = uni_ccc(ch);
        uint32_t comp = compose_pair(o[starter], ch);
        if (comp && (last < cc || last == 0)) {
            o[starter] = comp;
            continue;
        }
        if (cc == 0) starter = on;
        last = cc;
        o[on++] = ch;
    }
    out->n = on;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Lower-casing                                                         */

/* CPython's final-sigma context: Cased (Case_Ignorable)* Σ !((Case_Ignorable)* Cased). */
static bool final_sigma(const uint32_t *w, size_t n, size_t i) {
    size_t j = i;
    uint32_t c = 0;
    bool found = false;
    while (j > 0) {
        c = w[--j];
        if (!(uni_flags(c) & UNI_CASE_IGNORABLE)) {
            found = true;
            break;
        }
    }
    if (!found || !(uni_flags(c) & UNI_CASED)) return false;
    for (j = i + 1; j < n; j++) {
        c = w[j];
        if (!(uni_flags(c) & UNI_CASE_IGNORABLE)) return !(uni_flags(c) & UNI_CASED);
    }
    return true;
}

int tok_lower(const uint32_t *w, size_t n, tok_u32vec *out) {
    out->n = 0;
    if (tok_u32_reserve(out, n + 1)) return -1;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = w[i];
        if (cp == CP_DOTTED_CAPITAL_I) {
            if (tok_u32_push(out, 'i') || tok_u32_push(out, CP_COMBINING_DOT_ABOVE)) return -1;
            continue;
        }
        if (cp == CP_CAPITAL_SIGMA)
            cp = final_sigma(w, n, i) ? CP_FINAL_SIGMA : CP_SMALL_SIGMA;
        else
            cp = uni_lower(cp);
        if (tok_u32_push(out, cp)) return -1;
    }
    return 0;
}
