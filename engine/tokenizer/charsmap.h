/* charsmap.h — SentencePiece's precompiled_charsmap normalizer (see
 * charsmap.c). Not part of the engine's API. */
#ifndef AFLO_TOK_CHARSMAP_H
#define AFLO_TOK_CHARSMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokutil.h"

typedef struct tok_charsmap tok_charsmap;

/* Copy and check the blob. NULL with a message in err when malformed. */
tok_charsmap *charsmap_new(const unsigned char *blob, size_t len, char *err, size_t errlen);
void charsmap_free(tok_charsmap *cm);
/* Append the normalized s[0..n) (valid UTF-8) to out. The result is not
 * checked: a corrupt map can produce invalid UTF-8 (the caller checks). 0,
 * or -1 on OOM. */
int charsmap_apply(const tok_charsmap *cm, const char *s, size_t n, tok_bytes *out);

#endif
