/*
 * Unit tests for the JSON writer: every string it writes is byte for byte what jansson writes
 * for the same value (json_dumps(), compact), and it refuses what jansson refuses.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwrite.h"
#include "test.h"

/* jansson's text for the string s[0..n), or NULL when jansson refuses it. */
static char *jansson_text(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    char *out = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(j);
    return out;
}

/* Ours for the same string: NULL when the buffer failed. */
static char *jwrite_text(const char *s, size_t n)
{
    struct strbuf b = {0};
    jwrite_string(&b, s, n);
    return strbuf_take(&b);
}

static int same_as_jansson(const char *s, size_t n)
{
    char *want = jansson_text(s, n), *got = jwrite_text(s, n);
    int ok = want && got ? strcmp(want, got) == 0 : !want && !got;
    if (!ok)
        fprintf(stderr, "  jansson %s, jwrite %s\n", want ? want : "(refused)",
                got ? got : "(refused)");
    free(want);
    free(got);
    return ok;
}

static void test_examples(void)
{
    static const char in[] = "a\"b\\c\n\t\x01\x1f\x7f/\xc3\xa9";
    char *s = jwrite_text(in, sizeof(in) - 1);
    CHECK_STR(s, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001F\x7f/\xc3\xa9\"");
    free(s);
    s = jwrite_text("", 0);
    CHECK_STR(s, "\"\"");
    free(s);
    s = jwrite_text("x\0y", 3); /* a NUL inside the text */
    CHECK_STR(s, "\"x\\u0000y\"");
    free(s);
}

/* Each byte on its own, and every ASCII byte in one string. */
static void test_every_byte(void)
{
    char all[128];
    for (int c = 0; c < 256; c++) {
        char one = (char)c;
        CHECK(same_as_jansson(&one, 1));
        if (c < 128)
            all[c] = one;
    }
    CHECK(same_as_jansson(all, sizeof(all)));
}

/* Invalid UTF-8 fails the buffer as jansson refuses the string; the buffer stays failed. */
static void test_invalid(void)
{
    static const char *const bad[] = {
        "\xc3",         "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "ok \xff then", "\x80",     "\xe2\x82x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct strbuf b = {0};
        jwrite_string(&b, bad[i], strlen(bad[i]));
        CHECK(b.oom);
        jwrite_string(&b, "fine", 4);
        CHECK(strbuf_take(&b) == NULL);
        CHECK(same_as_jansson(bad[i], strlen(bad[i])));
    }
}

/* Random strings of pieces both writers treat specially, valid and not, whole and in pieces. */
static void test_random(void)
{
    static const char *const pieces[] = {"a",
                                         "Z",
                                         " ",
                                         "\"",
                                         "\\",
                                         "/",
                                         "\n",
                                         "\r",
                                         "\t",
                                         "\b",
                                         "\f",
                                         "\x01",
                                         "\x1b",
                                         "\x7f",
                                         "\xc3\xa9",
                                         "\xd0\x96",
                                         "\xe2\x80\xae",
                                         "\xef\xbf\xbd",
                                         "\xf0\x9f\x9a\x80",
                                         "\xe2\x80\xa8",
                                         "\xc3",
                                         "\xff",
                                         "\xed\xa0\x80",
                                         "\xc0\x80",
                                         "&lt;",
                                         "\x03",
                                         "\x05"};
    const size_t np = sizeof(pieces) / sizeof(pieces[0]);
    unsigned seed = 12345;

    for (int round = 0; round < 3000; round++) {
        char s[256];
        size_t n = 0;
        seed = seed * 1103515245u + 12345u;
        size_t k = (seed >> 16) % 24;
        for (size_t i = 0; i < k; i++) {
            seed = seed * 1103515245u + 12345u;
            const char *p = pieces[(seed >> 16) % np];
            memcpy(s + n, p, strlen(p));
            n += strlen(p);
        }
        CHECK(same_as_jansson(s, n));

        /* In two pieces cut on a character boundary: the same text. */
        struct strbuf whole = {0}, parts = {0};
        size_t cut = n / 2;
        while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
            cut--;
        jwrite_chars(&whole, s, n);
        jwrite_chars(&parts, s, cut);
        jwrite_chars(&parts, s + cut, n - cut);
        CHECK(whole.oom == parts.oom);
        CHECK(whole.oom || (whole.n == parts.n &&
                            memcmp(whole.p ? whole.p : "", parts.p ? parts.p : "", whole.n) == 0));
        strbuf_fini(&whole);
        strbuf_fini(&parts);
    }
}

int main(void)
{
    RUN(test_examples);
    RUN(test_every_byte);
    RUN(test_invalid);
    RUN(test_random);
    return test_done();
}
