/*
 * SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), for signing generic webhook bodies. Written
 * here to avoid a crypto library dependency for one signature; checked against the FIPS and
 * RFC 4231 test vectors (tests/unit/test_hmac.c).
 */
#ifndef YTB_HMAC_H
#define YTB_HMAC_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN]);

void hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                 uint8_t out[SHA256_LEN]);

/* Writes the 64 lowercase hex digits of HMAC-SHA256(key, data) and a NUL into hex. */
void hmac_sha256_hex(const char *key, const void *data, size_t len, char hex[2 * SHA256_LEN + 1]);

#endif
