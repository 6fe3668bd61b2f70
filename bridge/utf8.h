/*
 * UTF-8: the one module that knows the encoding (RFC 3629) and the one boundary of libunistring.
 * It decides what a valid sequence is (no overlong forms, no surrogates, nothing above U+10FFFF,
 * nothing cut off), decodes and encodes code points, counts them, cuts text on a character
 * boundary, repairs invalid bytes, and folds case for caseless matching. Everything else calls
 * these instead of looking at bit patterns.
 *
 * Text cut in the middle of a sequence is invalid UTF-8, which jansson's json_string() refuses
 * (NULL), so a /readyz check or an alert would silently vanish: every cut goes through here.
 * Pure: no I/O; only utf8_repair() and utf8_fold() allocate.
 */
#ifndef YTB_UTF8_H
#define YTB_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"

/* utf8_decode(): no valid sequence starts here (one byte consumed). Above every code point. */
#define UTF8_INVALID 0x110000u

/* The longest sequence, in bytes. */
#define UTF8_SEQ_MAX 4

/* Whether byte c continues a sequence (10xxxxxx) rather than starting a character. */
static inline int utf8_is_cont(unsigned char c)
{
    return (c & 0xc0) == 0x80;
}

/*
 * Length of the valid UTF-8 sequence at s (at most n bytes): 1..4, or 0 when the bytes there
 * are not one (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF, not cut).
 */
size_t utf8_seq_len(const char *s, size_t n);

size_t utf8_decode_multi(const char *s, size_t n, uint32_t *cp);

/*
 * Decodes the character at s (n > 0 bytes available): *cp gets its code point and the return
 * value its length; where no valid sequence starts (as utf8_seq_len() says), *cp gets
 * UTF8_INVALID and one byte is consumed, so a loop resynchronises on the next byte. A NUL
 * decodes as U+0000.
 */
static inline size_t utf8_decode(const char *s, size_t n, uint32_t *cp)
{
    if ((unsigned char)s[0] < 0x80) {
        *cp = (unsigned char)s[0];
        return 1;
    }
    return utf8_decode_multi(s, n, cp);
}

/* Writes the code point cp (a Unicode scalar value) as UTF-8 to out; returns its length. */
size_t utf8_encode(uint32_t cp, char out[UTF8_SEQ_MAX]);

/* 1 when s[0..n) is valid UTF-8 (NULs included: they are valid U+0000), else 0. */
int utf8_valid(const char *s, size_t n);

/* Code points in s[0..n): valid UTF-8 (text this process built or checked), n on a boundary. */
size_t utf8_count(const char *s, size_t n);

/*
 * The longest prefix of s[0..n) of at most max bytes that ends on a character boundary: max
 * (or n, when shorter) moved back over continuation bytes. For text that was valid, the prefix
 * is valid too.
 */
size_t utf8_cut(const char *s, size_t n, size_t max);

/*
 * A copy of s[0..n) (cut at an embedded NUL) that is valid UTF-8: each byte that starts no
 * valid sequence becomes U+FFFD. Returns the NUL-terminated copy (caller frees) or NULL on
 * ENOMEM.
 */
char *utf8_repair(const char *s, size_t n);

/*
 * Copies at most max bytes of src[0..n) into dst (dstlen bytes, always NUL-terminated when
 * dstlen > 0; max is lowered to dstlen - 1), cut on a character boundary so dst is valid
 * UTF-8: each byte that starts no valid sequence becomes '?', control characters (C0, DEL)
 * become ' ' (one-line messages), an embedded NUL ends the copy, and a sequence cut off at the
 * end of src (text an earlier step cut by bytes) is dropped. Returns bytes written.
 */
size_t utf8_clean(char *dst, size_t dstlen, const char *src, size_t n, size_t max);

/*
 * Appends to b the caseless-matching key of s[0..n): Unicode full case folding with the default
 * (not Turkic) mappings, normalized to NFKC: "ÜBER", "über" and "u" + U+0308 + "ber" give
 * "über", "Straße" gives "strasse", "ΣΊΣΥΦΟΣ" and "σίσυφος" give the same key, "ﬁ" gives "fi".
 * Keys compare with strcmp() in code point order; `projects <filter>` looks for the filter's
 * key inside a name's. Each byte of s that starts no valid sequence becomes the byte 0xff (never
 * in valid UTF-8, above every lead byte): invalid bytes compare equal to each other, after every
 * character, and never match inside a valid key. An embedded NUL ends s. On ENOMEM b->oom is
 * set (strbuf.h).
 */
void utf8_fold(struct strbuf *b, const char *s, size_t n);

#endif
