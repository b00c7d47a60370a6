/* normalize.h — NFD, NFC and str.lower() on code points (see normalize.c). Not part of
 * the engine's API. */
#ifndef AFLO_TOK_NORMALIZE_H
#define AFLO_TOK_NORMALIZE_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokutil.h"

/* Append the canonical decomposition of in[0..n) to out, each run of
 * combining marks in canonical order. 0, or -1 on OOM. */
int tok_nfd_append(const uint32_t *in, size_t n, tok_u32vec *out);
/* out = NFC(in[0..n)) (replaced); tmp is scratch. 0, or -1 on OOM. */
int tok_nfc(const uint32_t *in, size_t n, tok_u32vec *out, tok_u32vec *tmp);

/* out = Python's str.lower() of in[0..n) (replaced): full mapping, with
 * U+0130 -> i + U+0307 and the final-sigma rule over the whole of in.
 * 0, or -1 on OOM. */
int tok_lower(const uint32_t *in, size_t n, tok_u32vec *out);

#endif
