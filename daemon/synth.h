/* synth.h — the built-in demo: a tiny BERT config and a synthetic
 * classification task whose labels follow from token content, so a small
 * random model can learn it in seconds. Used by tests, benchmarks, and the
 * offline quickstart. */
#ifndef AFLO_SYNTH_H
#define AFLO_SYNTH_H

#include <stdint.h>

#include "model/config.h"
#include "train/dataset.h"
#include "model/model.h"

/* Vocabulary layout of the synthetic task: [PAD]=0, [UNK]=1, [CLS]=2,
 * [SEP]=3, [MASK]=4, then SYNTH_POS_WORDS positive words, SYNTH_NEG_WORDS
 * negative words, and neutral filler words up to the vocabulary size. */
#define SYNTH_PAD 0
#define SYNTH_CLS 2
#define SYNTH_SEP 3
#define SYNTH_FIRST_WORD 5
#define SYNTH_POS_WORDS 8
#define SYNTH_NEG_WORDS 8

/* Tiny BERT: vocab 96, hidden 32, 2 layers, 4 heads, intermediate 64. The
 * one description of the demo model: GET /models reports these sizes. */
void synth_demo_config(aflo_config *c);

/* The demo's dataset: training and evaluation sentences, as `aflorad demo`
 * generates them in memory and synth_write_demo writes them for the daemon
 * (with SYNTH_DEMO_SEED, the paper's seed 42). */
#define SYNTH_DEMO_TRAIN_ROWS 2000
#define SYNTH_DEMO_EVAL_ROWS 400
#define SYNTH_DEMO_SEED 42

/* n examples of [CLS] w1 .. wk [SEP]: filler words plus 2-3 words of the
 * label's kind (positive: label 1) and at most 1 of the other kind. */
int synth_sentiment(aflo_dataset *d, int n, int vocab_size, uint64_t seed);

/* The word of each vocabulary id (lower-case, one WordPiece token each):
 * a sentence's words tokenise back to exactly its ids. */
const char *synth_word(int id);

/* Write the built-in demo into dir (created if missing): a Hugging Face
 * folder — config.json, vocab.txt, tokenizer_config.json, model.safetensors
 * with the seeded random encoder — plus train.tsv (n_train rows) and dev.tsv
 * (n_eval rows) of "sentence<TAB>label" with labels "negative"/"positive".
 * Deterministic for a seed. Every file is written atomically (atomicfile.h). */
int synth_write_demo(const char *dir, int n_train, int n_eval, uint64_t seed, char *err,
                     size_t errlen);

/* Rescale a freshly created demo model's base weights so a frozen random
 * encoder carries the words to [CLS] (see synth.c). */
void synth_demo_weights(aflo_model *m);

#endif
