/*
 * UTF-8 helpers (RFC 3629). The one place that decides what a valid sequence is for text we
 * send out; the cut never splits a sequence and never produces invalid output, whatever the
 * input bytes were.
 */
#include "utf8.h"

#include <string.h>

size_t utf8_seq_len(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */

    if (n == 0)
        return 0;
    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        if (p[0] == 0xe0)
            lo = 0xa0; /* overlong */
        else if (p[0] == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        if (p[0] == 0xf0)
            lo = 0x90; /* overlong */
        else if (p[0] == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0; /* a continuation byte, 0xc0/0xc1, 0xf5.. */
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    }
    return len;
}

/* Whether s[0..n) is the start of a multi-byte sequence that was cut off by the end at n. */
static int cut_sequence(const unsigned char *s, size_t n)
{
    size_t need = s[0] >= 0xf0 && s[0] <= 0xf4   ? 4
                  : s[0] >= 0xe0 && s[0] <= 0xef ? 3
                  : s[0] >= 0xc2 && s[0] <= 0xdf ? 2
                                                 : 0;
    if (n >= need)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    }
    return 1;
}

size_t utf8_clean(char *dst, size_t dstlen, const char *src, size_t n, size_t max)
{
    size_t i = 0, o = 0;

    if (dstlen == 0)
        return 0;
    if (max > dstlen - 1)
        max = dstlen - 1;
    n = strnlen(src, n);
    while (i < n) {
        size_t l = utf8_seq_len(src + i, n - i);
        unsigned char c = (unsigned char)src[i];
        /* Text cut by an earlier, byte-counting step: drop the piece, it is no character. */
        if (l == 0 && cut_sequence((const unsigned char *)src + i, n - i))
            break;
        if (l == 0 || l == 1) {
            if (o + 1 > max)
                break;
            dst[o++] = l == 0 ? '?' : (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
            i++;
            continue;
        }
        if (o + l > max)
            break; /* the whole character or nothing */
        for (size_t k = 0; k < l; k++)
            dst[o++] = src[i + k];
        i += l;
    }
    dst[o] = '\0';
    return o;
}
