/* Unit tests for the UTF-8 module: validation, decoding, cuts, repair and case folding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "utf8.h"

static void test_seq_len(void)
{
    CHECK_INT(utf8_seq_len("a", 1), 1);
    CHECK_INT(utf8_seq_len("\xc3\xa9", 2), 2);
    CHECK_INT(utf8_seq_len("\xe2\x82\xac", 3), 3);
    CHECK_INT(utf8_seq_len("\xf0\x9f\x9a\x80", 4), 4);
    CHECK_INT(utf8_seq_len("\xf4\x8f\xbf\xbf", 4), 4); /* U+10FFFF */
    CHECK_INT(utf8_seq_len("\xed\x9f\xbf", 3), 3);     /* U+D7FF, just below the surrogates */
    CHECK_INT(utf8_seq_len("\xc3\xa9", 1), 0);         /* cut */
    CHECK_INT(utf8_seq_len("\xc0\xaf", 2), 0);         /* overlong '/' */
    CHECK_INT(utf8_seq_len("\xc1\xbf", 2), 0);         /* overlong */
    CHECK_INT(utf8_seq_len("\xe0\x80\xaf", 3), 0);     /* overlong */
    CHECK_INT(utf8_seq_len("\xf0\x80\x80\xaf", 4), 0); /* overlong */
    CHECK_INT(utf8_seq_len("\xed\xa0\x80", 3), 0);     /* surrogate U+D800 */
    CHECK_INT(utf8_seq_len("\xed\xbf\xbf", 3), 0);     /* surrogate U+DFFF */
    CHECK_INT(utf8_seq_len("\xf4\x90\x80\x80", 4), 0); /* above U+10FFFF */
    CHECK_INT(utf8_seq_len("\xf5\x80\x80\x80", 4), 0); /* no such lead byte */
    CHECK_INT(utf8_seq_len("\xff", 1), 0);
    CHECK_INT(utf8_seq_len("\x80", 1), 0);
    CHECK_INT(utf8_seq_len("\xe2\x82x", 3), 0);
    CHECK_INT(utf8_seq_len("", 0), 0);
}

static void test_decode(void)
{
    uint32_t cp;
    CHECK_INT(utf8_decode("A", 1, &cp), 1);
    CHECK_INT(cp, 'A');
    CHECK_INT(utf8_decode("", 1, &cp), 1); /* a NUL is U+0000 */
    CHECK_INT(cp, 0);
    CHECK_INT(utf8_decode("\xd0\x96x", 3, &cp), 2);
    CHECK_INT(cp, 0x416);
    CHECK_INT(utf8_decode("\xf0\x90\x90\x80", 4, &cp), 4);
    CHECK_INT(cp, 0x10400);
    /* Invalid: one byte consumed, so the next byte is read again. */
    const char *bad[] = {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x80", "\xe2\x82"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cp = 0;
        CHECK_INT(utf8_decode(bad[i], strlen(bad[i]), &cp), 1);
        CHECK_INT(cp, UTF8_INVALID);
    }
    /* A cut sequence stops at the end given, even if more bytes follow in memory. */
    CHECK_INT(utf8_decode("\xc3\xa9", 1, &cp), 1);
    CHECK_INT(cp, UTF8_INVALID);
}

static void test_encode(void)
{
    char out[UTF8_SEQ_MAX];
    const struct {
        uint32_t cp;
        const char *s;
    } cases[] = {{0x41, "A"},
                 {0xe9, "\xc3\xa9"},
                 {0x20ac, "\xe2\x82\xac"},
                 {0x1f680, "\xf0\x9f\x9a\x80"},
                 {0x10ffff, "\xf4\x8f\xbf\xbf"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = utf8_encode(cases[i].cp, out);
        CHECK_INT(n, strlen(cases[i].s));
        CHECK(memcmp(out, cases[i].s, n) == 0);
    }
    CHECK_INT(utf8_encode(0xd800, out), 0);
    CHECK_INT(utf8_encode(0x110000, out), 0);
}

static void test_valid_count_cut(void)
{
    CHECK(utf8_valid("", 0));
    CHECK(utf8_valid("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x9a\x80", 10));
    CHECK(utf8_valid("a\0b", 3)); /* NUL is a character; callers that mind check for it */
    CHECK(!utf8_valid("a\xc3", 2));
    CHECK(!utf8_valid("\xed\xa0\x80", 3));
    CHECK(!utf8_valid("\xc0\x80", 2)); /* overlong NUL */

    CHECK_INT(utf8_count("", 0), 0);
    CHECK_INT(utf8_count("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x9a\x80", 10), 4);

    /* "aé€": a cut at 2 keeps "a", at 3 "aé", never half a character. */
    const char *s = "a\xc3\xa9\xe2\x82\xac";
    CHECK_INT(utf8_cut(s, 6, 0), 0);
    CHECK_INT(utf8_cut(s, 6, 1), 1);
    CHECK_INT(utf8_cut(s, 6, 2), 1);
    CHECK_INT(utf8_cut(s, 6, 3), 3);
    CHECK_INT(utf8_cut(s, 6, 5), 3);
    CHECK_INT(utf8_cut(s, 6, 6), 6);
    CHECK_INT(utf8_cut(s, 6, 100), 6);
}

static void test_repair(void)
{
    char *r = utf8_repair("ok\xff\xc3\xa9\xed\xa0\x80!", 9);
    /* 0xff and each of the three surrogate bytes start no valid sequence. */
    CHECK_STR(r, "ok\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!");
    free(r);
    r = utf8_repair("ab\0cd", 5);
    CHECK_STR(r, "ab");
    free(r);
    r = utf8_repair("", 0);
    CHECK_STR(r, "");
    free(r);
}

static void test_clean_cuts_on_a_boundary(void)
{
    char out[16];
    /* "aé€" is 1 + 2 + 3 bytes: a cut at 4 keeps "aé", never half of the euro sign. */
    CHECK_INT(utf8_clean(out, sizeof(out), "a\xc3\xa9\xe2\x82\xac", 6, 4), 3);
    CHECK_STR(out, "a\xc3\xa9");
    CHECK_INT(utf8_clean(out, sizeof(out), "a\xc3\xa9\xe2\x82\xac", 6, 6), 6);
    /* dstlen is a cap too. */
    char small[3];
    CHECK_INT(utf8_clean(small, sizeof(small), "a\xc3\xa9", 3, 100), 1);
    CHECK_STR(small, "a");
}

static void test_clean_repairs(void)
{
    char out[32];
    /* Invalid bytes become '?', controls ' ', a NUL ends the text. */
    utf8_clean(out, sizeof(out), "x\xff\xfe\ny\x1b[2J\x7f", 10, 31);
    CHECK_STR(out, "x?? y [2J ");
    utf8_clean(out, sizeof(out), "ab\0cd", 5, 31);
    CHECK_STR(out, "ab");
    /* A sequence an earlier byte cut left behind is dropped, not shown as "??". */
    utf8_clean(out, sizeof(out), "ok \xe2\x82", 5, 31);
    CHECK_STR(out, "ok ");
    /* ...but a lead byte followed by something else is just invalid, and so are two bytes
     * that no further byte could complete: an overlong form, a code point past U+10FFFF. */
    utf8_clean(out, sizeof(out), "\xe2x", 2, 31);
    CHECK_STR(out, "?x");
    utf8_clean(out, sizeof(out), "ok \xe0\x80", 5, 31);
    CHECK_STR(out, "ok ??");
    utf8_clean(out, sizeof(out), "ok \xf4\x90", 5, 31);
    CHECK_STR(out, "ok ??");
    CHECK_INT(utf8_clean(out, 0, "x", 1, 5), 0);
}

/* The fold key of s, NUL-terminated (caller frees). */
static char *fold(const char *s)
{
    struct strbuf b = {0};
    utf8_fold(&b, s, strlen(s));
    return strbuf_take(&b);
}

/* a and b have the same key. */
#define CHECK_FOLD_SAME(a, b)                                                                      \
    do {                                                                                           \
        char *fa_ = fold(a), *fb_ = fold(b);                                                       \
        test_checks++;                                                                             \
        if (!fa_ || !fb_ || strcmp(fa_, fb_) != 0) {                                               \
            fprintf(stderr, "%s:%d: fold(%s) \"%s\" != fold(%s) \"%s\"\n", __FILE__, __LINE__, #a, \
                    fa_ ? fa_ : "(null)", #b, fb_ ? fb_ : "(null)");                               \
            test_failures++;                                                                       \
        }                                                                                          \
        free(fa_);                                                                                 \
        free(fb_);                                                                                 \
    } while (0)

static void test_fold_scripts(void)
{
    char *k = fold("ÜBER Über über");
    CHECK_STR(k, "über über über");
    free(k);
    /* Every cased script, not a table of five. */
    CHECK_FOLD_SAME("ÄÖÜ ÀÉÎÕ Ÿ Ł Ő", "äöü àéîõ ÿ ł ő");               /* Latin */
    CHECK_FOLD_SAME("ΣΊΣΥΦΟΣ", "σίσυφος");                             /* Greek, final sigma */
    CHECK_FOLD_SAME("ДЕМОПРОЕКТ Ёлка Ї Ґ Ꙁ", "демопроект ёлка ї ґ ꙁ"); /* Cyrillic + ext. */
    CHECK_FOLD_SAME("ԱՐԵՎ", "արեվ");                                   /* Armenian */
    CHECK_FOLD_SAME("ᲡᲐᲥᲐᲠᲗᲕᲔᲚᲝ", "საქართველო");   /* Georgian Mtavruli */
    CHECK_FOLD_SAME("ႠႡႢ", "ⴀⴁⴂ");                                     /* Georgian Asomtavruli */
    CHECK_FOLD_SAME("\xf0\x90\x90\x80\xf0\x90\x90\x81", "\xf0\x90\x90\xa8\xf0\x90\x90\xa9");
    /* ^ Deseret (outside the BMP): 𐐀𐐁 / 𐐨𐐩 */
    CHECK_FOLD_SAME("ᏣᎳᎩ", "ꮳꮃꭹ");         /* Cherokee: lower case folds to upper */
    CHECK_FOLD_SAME("ⰀⰁ", "ⰰⰱ");                 /* Glagolitic */
    CHECK_FOLD_SAME("Ⓐ", "ⓐ");                   /* circled letters have case */
    CHECK_FOLD_SAME("\xce\x90", "\xe1\xbf\x93"); /* U+0390, U+1FD3: canonically equal */
    /* Full folding: one character can fold to several. */
    CHECK_FOLD_SAME("Straße", "STRASSE");
    CHECK_FOLD_SAME("ẞ", "ss");
    CHECK_FOLD_SAME("ŉ", "ʼn");
    /* Turkish dotted and dotless i, as Unicode folds them by default (not Turkic): "İ" is "i"
     * with U+0307, "ı" stays "ı", "I" is "i". */
    k = fold("İı I");
    CHECK_STR(k, "i\xcc\x87\xc4\xb1 i");
    free(k);
    /* Compatibility forms: ligatures, full-width letters, the Kelvin sign. */
    CHECK_FOLD_SAME("ﬁle", "FILE");
    CHECK_FOLD_SAME("ＡＢＣ", "abc");
    CHECK_FOLD_SAME("\xe2\x84\xaa", "k");
    /* Composed and decomposed forms meet, also across an ASCII letter and a combining mark. */
    CHECK_FOLD_SAME("U\xcc\x88"
                    "ber",
                    "über");
    CHECK_FOLD_SAME("e\xcc\x81", "\xc3\x89");
    /* Caseless scripts and symbols are as they are. */
    CHECK_FOLD_SAME("日本語 عربي 🚀", "日本語 عربي 🚀");
    /* ASCII takes the short way, with the same result. */
    k = fold("Project ABC-12 [x]");
    CHECK_STR(k, "project abc-12 [x]");
    free(k);
}

static void test_fold_invalid_bytes(void)
{
    /* Each invalid byte becomes 0xff; the valid text around it is still folded. */
    char *k = fold("A\xffÜ\xc0\xafZ");
    CHECK_STR(k, "a\xff\xc3\xbc\xff\xff"
                 "z");
    free(k);
    /* 0xff sorts after every character, and never appears in valid text's key. */
    char *a = fold("x\xf4\x8f\xbf\xbf"), *b = fold("x\x80");
    CHECK(strcmp(a, b) < 0);
    free(a);
    free(b);
    /* A NUL ends the text; the empty text has the empty key. */
    struct strbuf sb = {0};
    utf8_fold(&sb, "Ab\0Cd", 5);
    CHECK_STR(sb.p, "ab");
    strbuf_fini(&sb);
    k = fold("");
    CHECK_STR(k, "");
    free(k);
    /* Keys append: the command index builds one buffer of many. */
    utf8_fold(&sb, "Ä", 2);
    utf8_fold(&sb, "B", 1);
    CHECK_STR(sb.p, "\xc3\xa4"
                    "b");
    strbuf_fini(&sb);
}

int main(void)
{
    RUN(test_seq_len);
    RUN(test_decode);
    RUN(test_encode);
    RUN(test_valid_count_cut);
    RUN(test_repair);
    RUN(test_clean_cuts_on_a_boundary);
    RUN(test_clean_repairs);
    RUN(test_fold_scripts);
    RUN(test_fold_invalid_bytes);
    return test_done();
}
