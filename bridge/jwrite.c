/*
 * JSON text written into a strbuf (see jwrite.h). Runs of bytes that need nothing are appended
 * with one strbuf_putn(); only the bytes around them are looked at one by one.
 */
#include "jwrite.h"

#include <stdint.h>
#include <string.h>

#include "utf8.h"

enum { PLAIN = 0, ESCAPE, MULTI };

/* What each byte needs: nothing, an escape (control characters, '"', '\'), or a check that a
 * valid UTF-8 sequence starts there. */
static unsigned char byte_class(unsigned char c)
{
    if (c < 0x20 || c == '"' || c == '\\')
        return ESCAPE;
    return c >= 0x80 ? MULTI : PLAIN;
}

/* The escape of c (a control character, '"' or '\'): a short one where JSON has it. */
static void put_escape(struct strbuf *b, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF", from[] = "\"\\\b\f\n\r\t", to[] = "\"\\bfnrt";
    const char *k = c ? memchr(from, c, sizeof(from) - 1) : NULL;

    if (k) {
        char two[2] = {'\\', to[k - from]};
        strbuf_putn(b, two, sizeof(two));
    } else {
        char seq[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        strbuf_putn(b, seq, sizeof(seq));
    }
}

/*
 * The length of the run at s (at most n bytes) that needs nothing: no control character, '"',
 * '\\' or non-ASCII byte. Eight bytes at a time (SWAR, portable C; exact, no false hits): most
 * of an answer is such runs.
 */
static size_t plain_run(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t x, q, bs;
        memcpy(&x, s + i, sizeof(x));
        q = x ^ ('"' * ones);
        bs = x ^ ('\\' * ones);
        /* x | ...: a byte >= 0x80 counts too; the others are "a byte below 0x20" and "a zero
         * byte" of q and bs. */
        if ((x | ((x - 0x20 * ones) & ~x) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & highs)
            break;
    }
    while (i < n && byte_class((unsigned char)s[i]) == PLAIN)
        i++;
    return i;
}

void jwrite_chars(struct strbuf *b, const char *s, size_t n)
{
    size_t i = 0, start = 0;

    while (i < n && !b->oom) {
        i += plain_run(s + i, n - i);
        if (i == n)
            break;
        unsigned char c = (unsigned char)s[i];
        if (byte_class(c) == MULTI) {
            /* Non-ASCII text is written as it is, once it is known to be valid. */
            size_t l = utf8_seq_len(s + i, n - i);
            if (!l) {
                b->oom = 1;
                return;
            }
            i += l;
            continue;
        }
        strbuf_putn(b, s + start, i - start);
        put_escape(b, c);
        start = ++i;
    }
    if (i > start)
        strbuf_putn(b, s + start, i - start);
}

void jwrite_string(struct strbuf *b, const char *s, size_t n)
{
    strbuf_putn(b, "\"", 1);
    jwrite_chars(b, s, n);
    strbuf_putn(b, "\"", 1);
}
