/* SHA-256 and HMAC-SHA256 against FIPS 180-4 and RFC 4231 test vectors. */
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

static void test_sha256_vectors(void)
{
    uint8_t d[SHA256_LEN];
    char h[65];
    sha256("abc", 3, d);
    hex(d, sizeof(d), h);
    CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256("", 0, d);
    hex(d, sizeof(d), h);
    CHECK_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256(two, strlen(two), d);
    hex(d, sizeof(d), h);
    CHECK_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    static char million[1000000];
    memset(million, 'a', sizeof(million));
    sha256(million, sizeof(million), d);
    hex(d, sizeof(d), h);
    CHECK_STR(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_hmac_rfc4231(void)
{
    uint8_t key[131], mac[SHA256_LEN];
    char h[65];

    memset(key, 0x0b, 20);
    hmac_sha256(key, 20, "Hi There", 8, mac);
    hex(mac, sizeof(mac), h);
    CHECK_STR(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    hmac_sha256_hex("Jefe", "what do ya want for nothing?", 28, h);
    CHECK_STR(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    /* Test case 6: a key longer than the block size is hashed first. */
    memset(key, 0xaa, sizeof(key));
    const char *msg = "Test Using Larger Than Block-Size Key - Hash Key First";
    hmac_sha256(key, sizeof(key), msg, strlen(msg), mac);
    hex(mac, sizeof(mac), h);
    CHECK_STR(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

int main(void)
{
    RUN(test_sha256_vectors);
    RUN(test_hmac_rfc4231);
    return test_done();
}
