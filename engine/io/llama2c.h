/* llama2c.h — Karpathy's llama2.c checkpoints (the legacy version-0 .bin
 * that run.c reads) as LLaMA-family models.
 *
 * The file: seven little-endian int32 (dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size — negative when the classifier is not shared with
 * the token embedding — and seq_len), then float32 arrays: token embedding
 * [V, dim]; per layer, stacked over layers: attention RMSNorm [dim], wq
 * [dim, dim], wk and wv [kv_dim, dim], wo [dim, dim], FFN RMSNorm [dim], w1
 * [hidden, dim], w2 [dim, hidden], w3 [hidden, dim]; final RMSNorm [dim];
 * two RoPE tables [seq_len, head_dim/2] (unused: the engine computes its
 * own); the classifier [V, dim] when not shared.
 *
 * Mapping: w1 -> gate_proj, w3 -> up_proj, w2 -> down_proj, attention
 * RMSNorm -> input_layernorm, FFN RMSNorm -> post_attention_layernorm.
 * run.c rotates adjacent pairs (2j, 2j+1) of each head where transformers
 * rotates halves (j, j + d/2) at the same frequencies, so the rows of wq
 * and wk are permuted per head, as transformers' conversion script does:
 * HF row s*(d/2) + j <- llama2.c row 2j + s. The config is run.c's:
 * rms_norm_eps 1e-5, rope_theta 10000, head_dim dim / n_heads. */
#ifndef AFLO_LLAMA2C_H
#define AFLO_LLAMA2C_H

#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "model/model.h"

/* The config of the checkpoint at path, from its header (checked against
 * the file's size). 0, or -1 with a message. */
int llama2c_read_config(const char *path, aflo_config *c, char *err, size_t errlen);

/* A causal-LM model with the checkpoint's weights and a fresh adapter of
 * ac (seeded by seed). NULL with a message on error. */
aflo_model *llama2c_load(const char *path, const aflo_adapter_config *ac, uint64_t seed, char *err,
                         size_t errlen);

/* Write the checkpoint at path as a Hugging Face LLaMA folder outdir
 * (config.json with LlamaForCausalLM, model.safetensors under transformers'
 * names; see llama2c_convert.c), atomically: created or replaced whole, or
 * left as it was. An existing outdir is replaced only when it holds nothing
 * but those two files. 0, or -1 with a message. */
int llama2c_convert(const char *path, const char *outdir, char *err, size_t errlen);

#endif
