/*
 * HMAC-SHA256 (RFC 2104, RFC 4231), for signing generic webhook bodies and deriving Matrix reply
 * transaction ids, and plain SHA-256 (the etcd state's snapshot checksum, the names of the
 * state's subscription records). With OpenSSL's libcrypto behind it; the only other module that
 * includes libcrypto's headers is etcd.c (base64), under the same defines.
 */
#ifndef YTB_HMAC_H
#define YTB_HMAC_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

/*
 * Writes HMAC-SHA256(key, data) into out. Returns 0, or on failure (out zeroed) -ENOMEM when
 * libcrypto fails (it allocates) or -EINVAL for a key over INT_MAX bytes. The hand-written code
 * this replaced could not fail; callers now check.
 */
__attribute__((warn_unused_result)) int
hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t out[SHA256_LEN]);

/*
 * Writes the 64 lowercase hex digits of HMAC-SHA256(key, data) and a NUL into hex. Returns as
 * hmac_sha256(); on failure hex is the empty string.
 */
__attribute__((warn_unused_result)) int hmac_sha256_hex(const char *key, const void *data,
                                                        size_t len, char hex[2 * SHA256_LEN + 1]);

/*
 * Writes the 64 lowercase hex digits of SHA-256(data) (no key) and a NUL into hex. Returns 0, or
 * -ENOMEM when libcrypto fails (hex is then the empty string).
 */
__attribute__((warn_unused_result)) int hmac_sha256_digest_hex(const void *data, size_t len,
                                                               char hex[2 * SHA256_LEN + 1]);

#endif
