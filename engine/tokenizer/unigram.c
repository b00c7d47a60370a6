/* unigram.c — SentencePiece's Unigram model: the segmentation of a
 * normalized text into vocabulary pieces whose scores (log-probabilities)
 * add up to the most, found by Viterbi over code-point positions.
 *
 * At each start position every piece that matches there is a candidate
 * edge (looked up in the vocabulary hash for each length up to the longest
 * piece, on code-point boundaries); when no piece of exactly one character
 * starts there, the character itself is an unknown edge scoring
 * t->unk_score (the lowest piece score minus 10, as SentencePiece sets it).
 * Ties keep the first candidate found, in SentencePiece's order (starts
 * ascending, lengths ascending), and sums are in float as there. Unknown
 * characters become their byte tokens with byte fallback, else one <unk>
 * per run. */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/tokutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"

typedef struct {
    float score;   /* best total score of a segmentation of w[0..pos) */
    int32_t id;    /* last piece's id, -1 for an unknown character */
    uint32_t from; /* where that piece starts */
    bool set;
} lattice_node;

int unigram_word(const tokenizer *t, const char *w, size_t n, tok_i32vec *out, char *err,
                 size_t errlen) {
    if (n > INT32_MAX) return set_err(err, errlen, "text too long");
    lattice_node *best = calloc(n + 1, sizeof *best);
    tok_i32vec path = {0};
    int rc = 0;
    if (!best) return set_err(err, errlen, "out of memory");
    best[0].set = true;
    for (size_t i = 0; i < n;) {
        size_t ci = i;
        tok_utf8_next(w, n, &ci); /* ci: end of the first character */
        if (best[i].set) {
            bool single = false;
            size_t e = ci;
            while (e <= n && e - i <= t->max_token_bytes) {
                int32_t id;
                if (tok_map_get(&t->vocab, w + i, e - i, &id) && id < t->vocab_size &&
                    !isnan(t->scores[id])) {
                    float s = best[i].score + t->scores[id];
                    if (!best[e].set || s > best[e].score)
                        best[e] = (lattice_node){s, id, (uint32_t)i, true};
                    if (e == ci) single = true;
                }
                if (e == n) break;
                tok_utf8_next(w, n, &e);
            }
            if (!single) {
                float s = best[i].score + t->unk_score;
                if (!best[ci].set || s > best[ci].score)
                    best[ci] = (lattice_node){s, -1, (uint32_t)i, true};
            }
        }
        i = ci;
    }
    /* Back from the end: every position is reachable (an unknown edge
     * always leaves each character), so best[n] is set. */
    for (size_t e = n; e > 0; e = best[e].from)
        if (tok_i32_push(&path, (int32_t)e)) goto oom;
    bool prev_unk = false;
    for (size_t k = path.n; k-- > 0 && rc == 0;) {
        const lattice_node *nd = &best[path.v[k]];
        if (nd->id >= 0) {
            if (tok_i32_push(out, nd->id)) goto oom;
            prev_unk = false;
        } else {
            rc = tok_push_unknown(t, w + nd->from, (size_t)path.v[k] - nd->from, out, &prev_unk,
                                  err, errlen);
        }
    }
    free(best);
    free(path.v);
    return rc;
oom:
    free(best);
    free(path.v);
    return set_err(err, errlen, "out of memory");
}
