/* synth.c — demo config and synthetic sentiment-like task (see synth.h). */
#include "synth.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/atomicfile.h"
#include "base/errmsg.h"
#include "base/rng.h"
#include "io/safetensors.h"

void synth_demo_config(aflo_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->model_type, "bert");
    c->vocab_size = 96;
    c->hidden_size = 32;
    c->num_hidden_layers = 2;
    c->num_attention_heads = 4;
    c->intermediate_size = 64;
    c->max_position_embeddings = 64;
    c->type_vocab_size = 2;
    c->pad_token_id = SYNTH_PAD;
    c->layer_norm_eps = 1e-12f;
    c->hidden_dropout_prob = 0.1f;
    c->attention_probs_dropout_prob = 0.1f;
}

#define SYNTH_MIN_FILLER 3
#define SYNTH_MAX_FILLER 12
#define SYNTH_MAX_LEN (2 + SYNTH_MAX_FILLER + 5)

int synth_sentiment(aflo_dataset *d, int n, int vocab_size, uint64_t seed) {
    int first_filler = SYNTH_FIRST_WORD + SYNTH_POS_WORDS + SYNTH_NEG_WORDS;
    if (vocab_size <= first_filler) return -1;
    aflo_rng rng;
    rng_seed(&rng, seed);
    int32_t ids[SYNTH_MAX_LEN];
    for (int e = 0; e < n; e++) {
        int label = (int)rng_below(&rng, 2);
        /* 2 or 3 words of the label's kind, at most 1 of the other kind. */
        int major = 2 + (int)rng_below(&rng, 2);
        int minor = (int)rng_below(&rng, 2);
        int filler =
            SYNTH_MIN_FILLER + (int)rng_below(&rng, SYNTH_MAX_FILLER - SYNTH_MIN_FILLER + 1);
        int words = filler + major + minor;
        int32_t body[SYNTH_MAX_LEN];
        int k = 0;
        for (int i = 0; i < filler; i++)
            body[k++] = first_filler + (int)rng_below(&rng, (uint64_t)(vocab_size - first_filler));
        int pos_base = SYNTH_FIRST_WORD, neg_base = SYNTH_FIRST_WORD + SYNTH_POS_WORDS;
        for (int i = 0; i < major; i++)
            body[k++] = (label ? pos_base : neg_base) + (int)rng_below(&rng, SYNTH_POS_WORDS);
        for (int i = 0; i < minor; i++)
            body[k++] = (label ? neg_base : pos_base) + (int)rng_below(&rng, SYNTH_NEG_WORDS);
        for (int i = words - 1; i > 0; i--) { /* shuffle word order */
            int j = (int)rng_below(&rng, (uint64_t)i + 1);
            int32_t t = body[i];
            body[i] = body[j];
            body[j] = t;
        }
        int len = 0;
        ids[len++] = SYNTH_CLS;
        for (int i = 0; i < words; i++) ids[len++] = body[i];
        ids[len++] = SYNTH_SEP;
        if (dataset_add(d, ids, NULL, len, label, (float)label) != 0) return -1;
    }
    return 0;
}

/* BERT's N(0, 0.02) describes a network about to be pretrained; frozen at
 * that scale, a random encoder passes almost nothing from the words to
 * [CLS], so no adapter can learn from it. N(0, 0.1) gives a random encoder
 * that behaves like a (poor) pretrained one. */
#define SYNTH_BASE_SCALE 5.0f

void synth_demo_weights(aflo_model *m) {
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->group != PGROUP_BASE) continue;
        if (p->role != PROLE_WEIGHT && p->role != PROLE_EMBEDDING) continue;
        for (size_t j = 0; j < p->size; j++) p->data[j] *= SYNTH_BASE_SCALE;
    }
}

/* ---------------------------------------------------------------- words */

static const char *const special_words[SYNTH_FIRST_WORD] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                            "[MASK]"};
static const char *const positive_words[SYNTH_POS_WORDS] = {
    "good", "great", "happy", "excellent", "wonderful", "lovely", "superb", "brilliant"};
static const char *const negative_words[SYNTH_NEG_WORDS] = {
    "bad", "awful", "sad", "terrible", "horrible", "poor", "dreadful", "boring"};
static const char *const filler_words[] = {
    "the",     "a",         "an",      "cat",     "dog",    "house", "tree",   "river",  "movie",
    "book",    "film",      "story",   "plot",    "actor",  "music", "song",   "city",   "road",
    "car",     "day",       "night",   "was",     "is",     "and",   "or",     "but",    "with",
    "without", "about",     "this",    "that",    "it",     "very",  "quite",  "rather", "some",
    "many",    "few",       "old",     "new",     "long",   "short", "red",    "blue",   "green",
    "small",   "large",     "we",      "they",    "she",    "he",    "saw",    "read",   "heard",
    "made",    "found",     "after",   "before",  "during", "under", "over",   "near",   "far",
    "today",   "yesterday", "morning", "evening", "table",  "chair", "window", "door",   "garden",
    "street",  "train",     "ship"};
#define SYNTH_FILLER_WORDS ((int)(sizeof filler_words / sizeof *filler_words))

const char *synth_word(int id) {
    if (id < 0) return NULL;
    if (id < SYNTH_FIRST_WORD) return special_words[id];
    id -= SYNTH_FIRST_WORD;
    if (id < SYNTH_POS_WORDS) return positive_words[id];
    id -= SYNTH_POS_WORDS;
    if (id < SYNTH_NEG_WORDS) return negative_words[id];
    id -= SYNTH_NEG_WORDS;
    return id < SYNTH_FILLER_WORDS ? filler_words[id] : NULL;
}

/* ---------------------------------------------------------------- demo folder */

/* dir/name, atomically (atomicfile.h). */
static int write_demo_file(const char *dir, const char *name, const char *text, size_t len,
                           char *err, size_t errlen) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return set_err(err, errlen, "%s: path too long", dir);
    return write_file_atomic(path, text, len, err, errlen);
}

/* A growable text buffer for the files below. */
typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} textbuf;

static void tb_add(textbuf *b, const char *s) {
    size_t n = strlen(s);
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

static int write_tsv(const char *dir, const char *name, int n, uint64_t seed, int vocab, char *err,
                     size_t errlen) {
    aflo_dataset d;
    dataset_init(&d);
    textbuf b = {0};
    int rc = -1;
    if (synth_sentiment(&d, n, vocab, seed) != 0) {
        set_err(err, errlen, "out of memory generating the demo dataset");
        goto done;
    }
    tb_add(&b, "sentence\tlabel\n");
    for (int i = 0; i < d.n; i++) {
        int len = dataset_len(&d, i);
        const int32_t *ids = d.ids + d.offsets[i];
        for (int k = 1; k < len - 1; k++) { /* without [CLS] and [SEP] */
            if (k > 1) tb_add(&b, " ");
            tb_add(&b, synth_word(ids[k]));
        }
        tb_add(&b, d.labels[i] ? "\tpositive\n" : "\tnegative\n");
    }
    if (b.oom) {
        set_err(err, errlen, "out of memory writing the demo dataset");
        goto done;
    }
    rc = write_demo_file(dir, name, b.p, b.len, err, errlen);
done:
    free(b.p);
    dataset_free(&d);
    return rc;
}

int synth_write_demo(const char *dir, int n_train, int n_eval, uint64_t seed, char *err,
                     size_t errlen) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return set_err(err, errlen, "%s: %s", dir, strerror(errno));
    aflo_config c;
    synth_demo_config(&c);
    if (SYNTH_FIRST_WORD + SYNTH_POS_WORDS + SYNTH_NEG_WORDS + SYNTH_FILLER_WORDS != c.vocab_size)
        return set_err(err, errlen, "demo vocabulary does not match the demo config");
    textbuf vocab = {0};
    for (int id = 0; id < c.vocab_size; id++) {
        tb_add(&vocab, synth_word(id));
        tb_add(&vocab, "\n");
    }
    char *cfg = config_to_json(&c);
    static const char tok_cfg[] = "{\"do_lower_case\": true, \"model_max_length\": 64}\n";
    int rc = -1;
    aflo_model *m = NULL;
    st_writer *w = NULL;
    if (vocab.oom || !cfg) {
        set_err(err, errlen, "out of memory writing the demo model");
        goto done;
    }
    if (write_demo_file(dir, "config.json", cfg, strlen(cfg), err, errlen) != 0 ||
        write_demo_file(dir, "vocab.txt", vocab.p, vocab.len, err, errlen) != 0 ||
        write_demo_file(dir, "tokenizer_config.json", tok_cfg, sizeof tok_cfg - 1, err, errlen) !=
            0)
        goto done;
    /* The encoder only: a demo "pretrained" model has no task head. */
    aflo_adapter_config full = {.method = METHOD_FULL};
    m = model_create(&c, &full, TASK_CLASSIFICATION, 2, seed, err, errlen);
    if (!m) goto done;
    synth_demo_weights(m);
    w = st_writer_new();
    if (!w) {
        set_err(err, errlen, "out of memory writing the demo model");
        goto done;
    }
    char path[4096];
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->group != PGROUP_BASE) continue;
        int64_t shape[2] = {p->shape[0], p->shape[1]};
        char name[128];
        model_hf_name(m, p, name, sizeof name); /* "bert." + the engine's name */
        if (st_writer_add(w, name, shape, (size_t)p->ndim, p->data, err, errlen) != 0) goto done;
    }
    if (st_writer_set_metadata(w, "format", "pt", err, errlen) != 0) goto done;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (st_writer_write(w, path, err, errlen) != 0) goto done;
    if (write_tsv(dir, "train.tsv", n_train, seed + 1, c.vocab_size, err, errlen) != 0 ||
        write_tsv(dir, "dev.tsv", n_eval, seed + 2, c.vocab_size, err, errlen) != 0)
        goto done;
    rc = 0;
done:
    st_writer_free(w);
    model_free(m);
    free(cfg);
    free(vocab.p);
    return rc;
}
