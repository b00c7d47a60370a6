/* spmodel.c — reading a SentencePiece model file (a serialized ModelProto,
 * protobuf wire format: LLaMA's tokenizer.model, DeBERTa-v3's spm.model)
 * into a tokenizer, for folders that have no tokenizer.json.
 *
 * The wire format is a sequence of (tag, value): tag = varint field << 3 |
 * wire type; types 0 varint, 1 eight bytes, 2 varint length + bytes, 5 four
 * bytes. Only the fields we need are read, every other is skipped by its
 * wire type (a decoder for the whole schema would be larger than the rest
 * of this file); every length is checked against what remains, so a
 * truncated or hostile file is an error, never an overread. Fields
 * (sentencepiece_model.proto):
 *   ModelProto      1 pieces (repeated), 2 trainer_spec, 3 normalizer_spec
 *   SentencePiece   1 piece, 2 score (float), 3 type (1 normal, 2 unknown,
 *                   3 control, 4 user-defined, 5 unused, 6 byte)
 *   TrainerSpec     3 model_type (1 unigram, 2 bpe, 3 word, 4 char),
 *                   24 treat_whitespace_as_suffix, 35 byte_fallback
 *   NormalizerSpec  1 name, 2 precompiled_charsmap, 3 add_dummy_prefix,
 *                   4 remove_extra_whitespaces, 5 escape_whitespaces
 *                   (the three booleans default to true)
 *
 * Ids are piece indices. BPE: the merge of two pieces a, b is ranked by the
 * score of the piece a+b (SentencePiece merges the pair whose concatenation
 * is the best-scoring normal piece), so every split of a normal piece into
 * two vocabulary pieces becomes a merge with that piece's rank. Unigram:
 * the scores themselves. Control and unknown pieces become special added
 * tokens, user-defined pieces plain added tokens: they are split out of the
 * text before the model, as transformers does. The normalizer's
 * precompiled_charsmap (nmt_nfkc, or the model's own rules) is applied by
 * charsmap.c. */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/tokutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errmsg.h"

/* SentencePiece piece types and model types (enum values in the proto). */
enum {
    SP_NORMAL = 1,
    SP_UNKNOWN = 2,
    SP_CONTROL = 3,
    SP_USER_DEFINED = 4,
    SP_UNUSED = 5,
    SP_BYTE = 6
};
enum { SP_MODEL_UNIGRAM = 1, SP_MODEL_BPE = 2 };
/* SentencePiece's penalty below the lowest piece score for an unknown
 * character (unigram_model.cc kUnkPenalty). */
#define SP_UNK_PENALTY 10.0f

/* ------------------------------------------------------------------ */
/* Protobuf wire format                                                 */

typedef struct {
    const unsigned char *p, *end;
} pb_reader;

typedef struct {
    uint32_t field;
    int wire;
    uint64_t u;                /* varint / fixed value */
    const unsigned char *data; /* length-delimited */
    size_t len;
} pb_field;

static int pb_varint(pb_reader *r, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return -1;
        unsigned char b = *r->p++;
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* Next field: 1, 0 at the end, -1 malformed. */
static int pb_next(pb_reader *r, pb_field *f) {
    if (r->p >= r->end) return 0;
    uint64_t tag;
    if (pb_varint(r, &tag) || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX) return -1;
    f->field = (uint32_t)(tag >> 3);
    f->wire = (int)(tag & 7);
    f->data = NULL;
    f->len = 0;
    f->u = 0;
    size_t left = (size_t)(r->end - r->p);
    switch (f->wire) {
    case 0: return pb_varint(r, &f->u) ? -1 : 1;
    case 1:
    case 5: {
        size_t k = f->wire == 1 ? 8 : 4;
        if (left < k) return -1;
        for (size_t i = 0; i < k; i++) f->u |= (uint64_t)r->p[i] << (8 * i);
        r->p += k;
        return 1;
    }
    case 2: {
        uint64_t n;
        if (pb_varint(r, &n)) return -1;
        if (n > (uint64_t)(r->end - r->p)) return -1;
        f->data = r->p;
        f->len = (size_t)n;
        r->p += n;
        return 1;
    }
    default: /* groups (3, 4) and reserved types: not in this schema */ return -1;
    }
}

static float pb_float(const pb_field *f) {
    uint32_t u = (uint32_t)f->u;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* ------------------------------------------------------------------ */
/* ModelProto                                                           */

typedef struct {
    const char *piece;
    size_t len;
    float score;
    int type;
} sp_piece;

typedef struct {
    sp_piece *pieces;
    size_t n, cap;
    int model_type;
    bool byte_fallback, ws_suffix;
    bool add_dummy_prefix, remove_extra_ws, escape_ws;
    const char *norm_name;
    size_t norm_name_len, charsmap_len;
    const unsigned char *charsmap;
} sp_model;

static int parse_piece(const pb_field *outer, sp_piece *pc) {
    pb_reader r = {outer->data, outer->data + outer->len};
    pb_field f;
    int k;
    *pc = (sp_piece){NULL, 0, 0.0f, SP_NORMAL};
    while ((k = pb_next(&r, &f)) > 0) {
        if (f.field == 1 && f.wire == 2) {
            pc->piece = (const char *)f.data;
            pc->len = f.len;
        } else if (f.field == 2 && f.wire == 5) {
            pc->score = pb_float(&f);
        } else if (f.field == 3 && f.wire == 0) {
            pc->type = (int)(f.u > 6 ? 0 : f.u);
        }
    }
    return k < 0 || !pc->piece ? -1 : 0;
}

static int parse_trainer(const pb_field *outer, sp_model *m) {
    pb_reader r = {outer->data, outer->data + outer->len};
    pb_field f;
    int k;
    while ((k = pb_next(&r, &f)) > 0) {
        if (f.wire != 0) continue;
        if (f.field == 3) m->model_type = (int)(f.u > 4 ? 0 : f.u);
        if (f.field == 24) m->ws_suffix = f.u != 0;
        if (f.field == 35) m->byte_fallback = f.u != 0;
    }
    return k;
}

static int parse_normalizer(const pb_field *outer, sp_model *m) {
    pb_reader r = {outer->data, outer->data + outer->len};
    pb_field f;
    int k;
    while ((k = pb_next(&r, &f)) > 0) {
        if (f.field == 1 && f.wire == 2) {
            m->norm_name = (const char *)f.data;
            m->norm_name_len = f.len;
        } else if (f.field == 2 && f.wire == 2) {
            m->charsmap = f.data;
            m->charsmap_len = f.len;
        } else if (f.wire == 0 && f.field >= 3 && f.field <= 5) {
            bool v = f.u != 0;
            if (f.field == 3) m->add_dummy_prefix = v;
            if (f.field == 4) m->remove_extra_ws = v;
            if (f.field == 5) m->escape_ws = v;
        }
    }
    return k;
}

static int parse_model(const unsigned char *buf, size_t len, const char *name, sp_model *m,
                       char *err, size_t errlen) {
    pb_reader r = {buf, buf + len};
    pb_field f;
    int k;
    m->model_type = SP_MODEL_UNIGRAM;
    m->add_dummy_prefix = m->remove_extra_ws = m->escape_ws = true;
    while ((k = pb_next(&r, &f)) > 0) {
        if (f.wire != 2) continue;
        if (f.field == 1) {
            if (m->n >= TOKENIZER_MAX_VOCAB)
                return set_err(err, errlen, "%s: more than %d pieces", name, TOKENIZER_MAX_VOCAB);
            if (tok_grow((void **)&m->pieces, &m->cap, m->n + 1, sizeof *m->pieces))
                return set_err(err, errlen, "out of memory");
            if (parse_piece(&f, &m->pieces[m->n]))
                return set_err(err, errlen, "%s: piece %zu is malformed", name, m->n);
            m->n++;
        } else if (f.field == 2) {
            if (parse_trainer(&f, m) < 0) k = -1;
        } else if (f.field == 3) {
            if (parse_normalizer(&f, m) < 0) k = -1;
        }
        if (k < 0) break;
    }
    if (k < 0) return set_err(err, errlen, "%s: not a valid SentencePiece model", name);
    if (m->n == 0) return set_err(err, errlen, "%s: no pieces", name);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Into the tokenizer                                                   */

/* Merge ranks: normal pieces ordered by score, best first (ties by id). */
typedef struct {
    float score;
    int32_t id;
} ranked;

static int cmp_ranked(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int build_merges(tokenizer *t, const sp_model *m, char *err, size_t errlen) {
    ranked *order = malloc(m->n * sizeof *order);
    tok_bytes key = {0};
    size_t nn = 0;
    int rc = 0;
    if (!order) return set_err(err, errlen, "out of memory");
    for (size_t i = 0; i < m->n; i++)
        if (m->pieces[i].type == SP_NORMAL) order[nn++] = (ranked){m->pieces[i].score, (int32_t)i};
    qsort(order, nn, sizeof *order, cmp_ranked);
    for (size_t r = 0; r < nn && rc == 0; r++) {
        const sp_piece *p = &m->pieces[order[r].id];
        for (size_t k = 1; k < p->len && rc == 0; k++) {
            if (((unsigned char)p->piece[k] & 0xC0) == 0x80) continue; /* inside a character */
            int32_t a, b;
            if (!tok_map_get(&t->vocab, p->piece, k, &a) ||
                !tok_map_get(&t->vocab, p->piece + k, p->len - k, &b))
                continue;
            key.n = 0;
            int32_t old;
            if (tok_bytes_append(&key, p->piece, k) || tok_bytes_append(&key, " ", 1) ||
                tok_bytes_append(&key, p->piece + k, p->len - k))
                rc = -1;
            /* The same pair could only make the same piece: keep the first. */
            else if (!tok_map_get(&t->merges, key.v, key.n, &old) &&
                     tok_map_put(&t->merges, key.v, key.n, (int32_t)r, NULL))
                rc = -1;
        }
    }
    free(order);
    free(key.v);
    return rc ? set_err(err, errlen, "out of memory") : 0;
}

int spmodel_load(tokenizer *t, const char *dir, const char *file, char *err, size_t errlen) {
    char *buf, name[512];
    size_t len;
    int r = tok_read_file(dir, file, TOKENIZER_MAX_FILE_BYTES, &buf, &len, err, errlen);
    if (r <= 0) {
        if (r == 0) set_err(err, errlen, "%s/%s: not found", dir, file);
        return -1;
    }
    /* Messages name the file as dir/file (shortened if the path is long). */
    snprintf(name, sizeof name, "%s/%s", dir, file);
    sp_model m = {0};
    int rc = parse_model((const unsigned char *)buf, len, name, &m, err, errlen);
    if (rc == 0 && m.model_type != SP_MODEL_BPE && m.model_type != SP_MODEL_UNIGRAM)
        rc = set_err(err, errlen, "%s: model type %d is not supported (only BPE and Unigram)", name,
                     m.model_type);
    if (rc == 0 && m.charsmap_len > 0) {
        char why[256];
        t->charsmap = charsmap_new(m.charsmap, m.charsmap_len, why, sizeof why);
        if (!t->charsmap) rc = set_err(err, errlen, "%s: %s", name, why);
    }
    if (rc == 0 && (m.ws_suffix || !m.escape_ws))
        rc = set_err(err, errlen,
                     "%s: treat_whitespace_as_suffix and unescaped whitespace are "
                     "not supported",
                     name);
    float min_score = INFINITY;
    for (size_t i = 0; i < m.n && rc == 0; i++) {
        const sp_piece *p = &m.pieces[i];
        if (p->len == 0 || tok_utf8_invalid_at(p->piece, p->len) < p->len)
            rc = set_err(err, errlen, "%s: piece %zu is empty or not UTF-8", name, i);
        else if (tok_map_put(&t->vocab, p->piece, p->len, (int32_t)i, NULL))
            rc = set_err(err, errlen, "out of memory");
        if (p->type == SP_NORMAL && p->score < min_score) min_score = p->score;
    }
    if (rc == 0) {
        t->kind = m.model_type == SP_MODEL_BPE ? TOKENIZER_SPM_BPE : TOKENIZER_SPM_UNIGRAM;
        t->byte_fallback = m.byte_fallback;
        t->fuse_unk = true; /* SentencePiece merges runs of unknown pieces */
        t->sp_prefix = m.add_dummy_prefix ? SP_PREFIX_ALWAYS : SP_PREFIX_NEVER;
        t->sp_escape_spaces = true;
        t->sp_strip_spaces = t->sp_collapse_spaces = m.remove_extra_ws;
        t->unk_score = (isfinite(min_score) ? min_score : 0.0f) - SP_UNK_PENALTY;
        spm_find_byte_tokens(t);
        t->scores = malloc(m.n * sizeof *t->scores);
        if (!t->scores) rc = set_err(err, errlen, "out of memory");
    }
    for (size_t i = 0; i < m.n && rc == 0; i++) {
        const sp_piece *p = &m.pieces[i];
        /* Pieces the Viterbi may use: normal ones (user-defined ones are
         * split out of the text before). */
        t->scores[i] = p->type == SP_NORMAL ? p->score : NAN;
        bool special = p->type == SP_CONTROL || p->type == SP_UNKNOWN;
        if (p->type == SP_UNKNOWN) t->unk_id = (int32_t)i;
        if ((special || p->type == SP_USER_DEFINED) &&
            tok_added_push(t, p->piece, p->len, (int32_t)i, special))
            rc = set_err(err, errlen, "out of memory");
    }
    if (rc == 0 && t->kind == TOKENIZER_SPM_BPE) rc = build_merges(t, &m, err, errlen);
    free(m.pieces);
    free(buf);
    return rc;
}
