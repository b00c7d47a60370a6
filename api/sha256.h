/* sha256.h — SHA-256 (FIPS 180-4), incremental, for checksumming uploads as
 * they stream to disk.
 *
 * The upload handler sees a body in chunks of whatever size the network
 * delivers, so the interface is init / update (any length, any number of
 * times) / final. The digest comes out as 32 bytes or as 64 lowercase hex
 * characters, the form the store keeps. No allocation, no failure modes. */
#ifndef AFLO_SHA256_H
#define AFLO_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32
#define SHA256_HEX_SIZE 65 /* 64 hex characters + NUL */

typedef struct {
    uint32_t h[8];
    uint64_t bytes; /* message length so far */
    uint8_t block[64];
    size_t used; /* bytes waiting in block */
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
void sha256_final(sha256_ctx *c, uint8_t out[SHA256_DIGEST_LEN]);
/* sha256_final, written as lowercase hex. */
void sha256_final_hex(sha256_ctx *c, char out[SHA256_HEX_SIZE]);

#endif
