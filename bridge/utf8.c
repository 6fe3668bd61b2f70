/*
 * UTF-8 (RFC 3629) on libunistring: the one place that decides what a valid sequence is, and
 * the only file that includes libunistring's headers (utf8.h says why there is one).
 *
 * libunistring's u8_mbtoucr() is as strict as RFC 3629 (overlong forms, surrogates, values past
 * U+10FFFF and cut sequences are errors) and tells a cut sequence (-2) from an invalid one (-1);
 * u8_check() validates; u8_uctomb() encodes; u8_casefold() folds and normalizes. Where a few
 * lines of our own are used instead, the comment says why, with the figure measured.
 */
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

size_t utf8_seq_len(const char *s, size_t n)
{
    ucs4_t cp;

    if (n == 0)
        return 0;
    int l = u8_mbtoucr(&cp, (const uint8_t *)s, n);
    return l > 0 ? (size_t)l : 0;
}

size_t utf8_decode_multi(const char *s, size_t n, uint32_t *cp)
{
    ucs4_t c;
    int l = n ? u8_mbtoucr(&c, (const uint8_t *)s, n) : -1;

    if (l <= 0) {
        *cp = UTF8_INVALID;
        return 1;
    }
    *cp = c;
    return (size_t)l;
}

size_t utf8_encode(uint32_t cp, char out[UTF8_SEQ_MAX])
{
    int l = u8_uctomb((uint8_t *)out, cp, UTF8_SEQ_MAX);
    return l > 0 ? (size_t)l : 0;
}

int utf8_valid(const char *s, size_t n)
{
    return u8_check((const uint8_t *)s, n) == NULL;
}

/*
 * Counting the bytes that start a character instead of u8_mbsnlen(): the text is valid, so
 * both give the same count, and this loop took 12.8 us per 9 KB of mixed Latin, Cyrillic and
 * emoji text where u8_mbsnlen() took 41 us (-O2, this project's build machine); Slack answers
 * are counted several times each.
 */
size_t utf8_count(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += !utf8_is_cont((unsigned char)s[i]);
    return k;
}

/* libunistring has no "longest prefix of at most max bytes"; it is a step back over at most
 * three continuation bytes. */
size_t utf8_cut(const char *s, size_t n, size_t max)
{
    if (max >= n)
        return n;
    while (max > 0 && utf8_is_cont((unsigned char)s[max]))
        max--;
    return max;
}

char *utf8_repair(const char *s, size_t n)
{
    struct strbuf b = {0};
    uint32_t cp;

    n = strnlen(s, n);
    for (size_t i = 0; i < n;) {
        size_t l = utf8_decode(s + i, n - i, &cp);
        if (cp == UTF8_INVALID)
            strbuf_puts(&b, "\xef\xbf\xbd");
        else
            strbuf_putn(&b, s + i, l);
        i += l;
    }
    return strbuf_take(&b);
}

size_t utf8_clean(char *dst, size_t dstlen, const char *src, size_t n, size_t max)
{
    size_t i = 0, o = 0;
    ucs4_t cp;

    if (dstlen == 0)
        return 0;
    if (max > dstlen - 1)
        max = dstlen - 1;
    n = strnlen(src, n);
    while (i < n) {
        int l = u8_mbtoucr(&cp, (const uint8_t *)src + i, n - i);
        unsigned char c = (unsigned char)src[i];
        /* -2: a sequence cut off by the end, by an earlier byte-counting step. It is no
         * character: drop it rather than show "??". */
        if (l == -2)
            break;
        if (l < 0 || l == 1) {
            if (o + 1 > max)
                break;
            dst[o++] = l < 0 ? '?' : (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
            i++;
            continue;
        }
        if (o + (size_t)l > max)
            break; /* the whole character or nothing */
        memcpy(dst + o, src + i, (size_t)l);
        o += (size_t)l;
        i += (size_t)l;
    }
    dst[o] = '\0';
    return o;
}

/* ---- case folding ---- */

/*
 * ASCII text folds to its lower case under NFKC case folding (no ASCII character has a
 * compatibility mapping or folds outside ASCII), so it skips libunistring: u8_casefold() with
 * UNINORM_NFKC took 1.76 us for "Project 1234" (0.30 us without the normalization). Project
 * names are mostly ASCII, and the command index folds every name, short name and id of a
 * snapshot: its whole build for 10,000 ASCII projects took 8.4 ms with this path and 42.7 ms
 * without.
 */
static void fold_ascii(struct strbuf *b, const char *s, size_t n)
{
    char tmp[256];

    while (n) {
        size_t k = n < sizeof(tmp) ? n : sizeof(tmp);
        for (size_t i = 0; i < k; i++)
            tmp[i] = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] + ('a' - 'A')) : s[i];
        strbuf_putn(b, tmp, k);
        s += k;
        n -= k;
    }
}

/* Folds the valid, NUL-free run s[0..n), which holds at least one non-ASCII character. */
static void fold_unicode(struct strbuf *b, const char *s, size_t n)
{
    uint8_t local[512];
    size_t len = sizeof(local);
    /* iso639_language NULL: the default mappings, not the Turkic or Lithuanian ones. The
     * normalization is applied around the folding, as Unicode's caseless matching defines. */
    uint8_t *r = u8_casefold((const uint8_t *)s, n, NULL, UNINORM_NFKC, local, &len);

    if (!r) { /* ENOMEM: the run was validated, so not EILSEQ */
        b->oom = 1;
        return;
    }
    strbuf_putn(b, (const char *)r, len);
    if (r != local)
        free(r);
}

void utf8_fold(struct strbuf *b, const char *s, size_t n)
{
    size_t i = 0;

    n = strnlen(s, n);
    while (i < n) {
        size_t j = i;
        while (j < n && (unsigned char)s[j] < 0x80)
            j++;
        if (j == n) {
            fold_ascii(b, s + i, n - i);
            return;
        }
        /* The longest valid run from i: folded as a whole, since normalization composes across
         * characters (an ASCII "u" and a following U+0308 become "ü"). */
        const uint8_t *bad = u8_check((const uint8_t *)s + i, n - i);
        j = bad ? (size_t)((const char *)bad - s) : n;
        if (j > i)
            fold_unicode(b, s + i, j - i);
        if (j < n) {
            strbuf_putn(b, "\xff", 1);
            j++;
        }
        i = j;
    }
}
