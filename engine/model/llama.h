/* llama.h — the LLaMA family (llama.c): LLaMA, Mistral and Qwen2 decoders
 * for causal language modelling, behind the family interface (family.h).
 * Only the registry and tests name it; everything else reaches it through a
 * model's family. */
#ifndef AFLO_LLAMA_H
#define AFLO_LLAMA_H

#include "model/family.h"

/* aflo_family_variant.flags of this family. */
#define LLAMA_SLIDING_WINDOW 1u /* attends within config sliding_window (Mistral) */
#define LLAMA_QKV_BIAS 2u       /* q, k, v_proj carry biases (Qwen2) */

/* The family's module table, in forward order: aflo_param.module and the
 * bits of aflo_adapter_config.targets of a LLaMA-family model. */
enum { LLAMA_Q, LLAMA_K, LLAMA_V, LLAMA_O, LLAMA_GATE, LLAMA_UP, LLAMA_DOWN, LLAMA_MODULE_COUNT };

/* The AFLoRA authors' GSM8K targets for LLaMA-7B: q, k, v, up, down. */
#define LLAMA_DEFAULT_TARGETS \
    ((1u << LLAMA_Q) | (1u << LLAMA_K) | (1u << LLAMA_V) | (1u << LLAMA_UP) | (1u << LLAMA_DOWN))

extern const aflo_family llama_family;
/* Its incremental decoder (llama_decode.c). */
extern const aflo_decoder llama_decoder;

#endif
