/*
 * HMAC-SHA256 (libcrypto behind hmac.h) against the RFC 4231 test vectors, plus the edges our
 * callers can reach: an empty key or body, a key of exactly one block, a long body.
 */
#include <string.h>

#include "hmac.h"
#include "test.h"

static void hex(const uint8_t *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* HMAC-SHA256(key, data) as hex, or "" when it fails. */
static const char *mac_hex(const void *key, size_t keylen, const void *data, size_t len)
{
    static char h[2 * SHA256_LEN + 1];
    uint8_t mac[SHA256_LEN];

    if (hmac_sha256(key, keylen, data, len, mac) != 0)
        return "";
    hex(mac, sizeof(mac), h);
    return h;
}

static void test_hmac_rfc4231(void)
{
    uint8_t key[131], data[50];
    char h[2 * SHA256_LEN + 1];

    /* Test case 1. */
    memset(key, 0x0b, 20);
    CHECK_STR(mac_hex(key, 20, "Hi There", 8),
              "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    /* Test case 2: a key shorter than the output, through the hex form sink.c uses. */
    CHECK_INT(hmac_sha256_hex("Jefe", "what do ya want for nothing?", 28, h), 0);
    CHECK_STR(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* Test case 3: 50 bytes of 0xdd under 20 bytes of 0xaa. */
    memset(key, 0xaa, 20);
    memset(data, 0xdd, sizeof(data));
    CHECK_STR(mac_hex(key, 20, data, sizeof(data)),
              "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    /* Test case 4: key 0x01..0x19. */
    for (int i = 0; i < 25; i++)
        key[i] = (uint8_t)(i + 1);
    memset(data, 0xcd, sizeof(data));
    CHECK_STR(mac_hex(key, 25, data, sizeof(data)),
              "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    /* Test case 5: the RFC gives the first 128 bits only. */
    memset(key, 0x0c, 20);
    CHECK(strncmp(mac_hex(key, 20, "Test With Truncation", 20), "a3b6167473100ee06e0c796c2955552b",
                  32) == 0);
    /* Test cases 6 and 7: a key longer than the block size is hashed first. */
    memset(key, 0xaa, sizeof(key));
    const char *msg = "Test Using Larger Than Block-Size Key - Hash Key First";
    CHECK_STR(mac_hex(key, sizeof(key), msg, strlen(msg)),
              "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    msg = "This is a test using a larger than block-size key and a larger than block-size data. "
          "The key needs to be hashed before being used by the HMAC algorithm.";
    CHECK_STR(mac_hex(key, sizeof(key), msg, strlen(msg)),
              "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

/* Values from Python's hmac module. */
static void test_edges(void)
{
    static char million[1000000];
    char key[64];
    char h[2 * SHA256_LEN + 1];

    CHECK_STR(mac_hex("", 0, "", 0),
              "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    CHECK_STR(mac_hex(NULL, 0, "x", 1),
              "4cbc96099a6467ce002461f10549b4898265ebe6188b45efacc44293516e62c4");
    CHECK_STR(mac_hex("key", 3, NULL, 0),
              "5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0");
    /* A key of exactly one block is used as it is, not hashed. */
    memset(key, 'k', sizeof(key));
    CHECK_STR(mac_hex(key, sizeof(key), "abc", 3),
              "ae0c0e4a2340cf50185eb46aaa8723f4769153661612e212fb0d1fa3170c6202");
    memset(million, 'a', sizeof(million));
    CHECK_STR(mac_hex(key, sizeof(key), million, sizeof(million)),
              "140f007c7b58490dfcf6b2e65fbec2651dfa9dbe2403d47b6f996287f6fe60eb");
    CHECK_INT(hmac_sha256_hex("", "", 0, h), 0);
    CHECK_STR(h, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

/* Plain SHA-256 (FIPS 180-2, appendix B.1, and the empty message). */
static void test_digest(void)
{
    char h[2 * SHA256_LEN + 1];

    CHECK_INT(hmac_sha256_digest_hex("abc", 3, h), 0);
    CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_INT(hmac_sha256_digest_hex(NULL, 0, h), 0);
    CHECK_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

int main(void)
{
    RUN(test_hmac_rfc4231);
    RUN(test_edges);
    RUN(test_digest);
    return test_done();
}
