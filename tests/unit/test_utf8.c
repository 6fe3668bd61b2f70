/* Unit tests for the UTF-8 helpers: validation and cuts on a character boundary. */
#include <string.h>

#include "test.h"
#include "utf8.h"

static void test_seq_len(void)
{
    CHECK_INT(utf8_seq_len("a", 1), 1);
    CHECK_INT(utf8_seq_len("\xc3\xa9", 2), 2);
    CHECK_INT(utf8_seq_len("\xe2\x82\xac", 3), 3);
    CHECK_INT(utf8_seq_len("\xf0\x9f\x9a\x80", 4), 4);
    CHECK_INT(utf8_seq_len("\xc3\xa9", 1), 0);         /* cut */
    CHECK_INT(utf8_seq_len("\xc0\xaf", 2), 0);         /* overlong '/' */
    CHECK_INT(utf8_seq_len("\xe0\x80\xaf", 3), 0);     /* overlong */
    CHECK_INT(utf8_seq_len("\xed\xa0\x80", 3), 0);     /* surrogate */
    CHECK_INT(utf8_seq_len("\xf4\x90\x80\x80", 4), 0); /* above U+10FFFF */
    CHECK_INT(utf8_seq_len("\x80", 1), 0);
    CHECK_INT(utf8_seq_len("", 0), 0);
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
    /* ...but a lead byte followed by something else is just invalid. */
    utf8_clean(out, sizeof(out), "\xe2x", 2, 31);
    CHECK_STR(out, "?x");
    CHECK_INT(utf8_clean(out, 0, "x", 1, 5), 0);
}

int main(void)
{
    RUN(test_seq_len);
    RUN(test_clean_cuts_on_a_boundary);
    RUN(test_clean_repairs);
    return test_done();
}
