/*
 * HMAC-SHA256 and SHA-256 through OpenSSL's libcrypto (hmac.h). HMAC(), the one-shot call, is not
 * deprecated in OpenSSL 3.0 (the HMAC_CTX functions are); the two defines below hide every
 * deprecated declaration, so a build would fail if this file ever used one. libcrypto's
 * failures (it fetches the algorithm and allocates a context per call) become -ENOMEM here.
 */
#define OPENSSL_API_COMPAT 30000
#define OPENSSL_NO_DEPRECATED

#include "hmac.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

int hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                uint8_t out[SHA256_LEN])
{
    unsigned int outlen = 0;

    memset(out, 0, SHA256_LEN);
    if (keylen > INT_MAX)
        return -EINVAL;
    /* Never NULL pointers: an empty key or body is "", which libcrypto reads as such. */
    if (!HMAC(EVP_sha256(), keylen ? key : "", (int)keylen, len ? data : (const void *)"", len, out,
              &outlen) ||
        outlen != SHA256_LEN) {
        memset(out, 0, SHA256_LEN);
        return -ENOMEM;
    }
    return 0;
}

/* The 64 lowercase hex digits of md and a NUL. */
static void to_hex(const uint8_t md[SHA256_LEN], char hex[2 * SHA256_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";

    for (int i = 0; i < SHA256_LEN; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[2 * SHA256_LEN] = '\0';
}

int hmac_sha256_hex(const char *key, const void *data, size_t len, char hex[2 * SHA256_LEN + 1])
{
    uint8_t mac[SHA256_LEN];
    int r = hmac_sha256(key, strlen(key), data, len, mac);

    hex[0] = '\0';
    if (r)
        return r;
    to_hex(mac, hex);
    return 0;
}

int hmac_sha256_digest_hex(const void *data, size_t len, char hex[2 * SHA256_LEN + 1])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    hex[0] = '\0';
    if (!EVP_Digest(len ? data : (const void *)"", len, md, &mdlen, EVP_sha256(), NULL) ||
        mdlen != SHA256_LEN)
        return -ENOMEM;
    to_hex(md, hex);
    return 0;
}
