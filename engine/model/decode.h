/* decode.h — incremental decoding of a causal language model: one sequence
 * fed a few tokens at a time, each call returning the next-token logits of
 * the last position, with every layer's keys and values kept (the KV cache)
 * so a new token costs one position's forward instead of the whole prefix.
 *
 * A family that can generate implements aflo_decoder (family.h's `decoder`;
 * llama_decode.c for the LLaMA family); this module is the family-agnostic
 * door to it: it checks ids and the cache's capacity and feeds long inputs
 * (a prompt's prefill) in chunks of DECODE_CHUNK rows, so the family's row
 * buffers stay small whatever the prompt length.
 *
 * The logits equal those of a full forward (model_forward) of the same
 * prefix at the same position up to float rounding: same kernels (RMSNorm,
 * RoPE tables, SwiGLU, the adapted linear layer), the attention written
 * for a cached prefix. Adapters apply as in inference forwards (never
 * merged into the weight). Not thread-safe: one decode per model at a time
 * (it uses the model's FLOP counters and its weights read-only). */
#ifndef AFLO_DECODE_H
#define AFLO_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

/* Rows a family's append receives at once (prefill is chunked). */
#define DECODE_CHUNK 64

/* What a family implements (family.h). open: state for sequences of up to
 * max_tokens positions; append: positions pos..pos+n-1 (1 <= n <=
 * DECODE_CHUNK, pos + n <= max_tokens, ids in range: checked by decode.c)
 * go into the cache, and logits (vocab_size floats) get the last one's
 * next-token logits; close frees the state. */
typedef struct aflo_decoder {
    void *(*open)(aflo_model *m, int max_tokens, char *err, size_t errlen);
    int (*append)(void *state, const int32_t *ids, int n, int pos, float *logits, char *err,
                  size_t errlen);
    void (*close)(void *state);
} aflo_decoder;

typedef struct aflo_decode aflo_decode;

/* A decoder for up to max_tokens positions of m (its family must have one:
 * causal LMs). NULL with a message. */
aflo_decode *decode_open(aflo_model *m, int max_tokens, char *err, size_t errlen);
/* Append n >= 1 tokens after those already fed; logits (vocab_size floats)
 * receive the next-token logits of the last. 0, or -1 with a message (an id
 * outside the vocabulary, more tokens than max_tokens); on error the
 * tokens already in the cache stay as they were. */
int decode_append(aflo_decode *d, const int32_t *ids, int n, float *logits, char *err,
                  size_t errlen);
/* Tokens fed so far. */
int decode_length(const aflo_decode *d);
/* Forget every token (the next append starts at position 0). */
void decode_reset(aflo_decode *d);
void decode_close(aflo_decode *d);

#endif
