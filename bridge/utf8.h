/*
 * UTF-8 for text that leaves the process (logs, /readyz, alerts, chat answers): validation and
 * cuts on a character boundary. Text cut in the middle of a sequence is invalid UTF-8, which
 * jansson's json_string() refuses (NULL), so a /readyz check or an alert would silently vanish.
 * Pure: no I/O, no allocation.
 */
#ifndef YTB_UTF8_H
#define YTB_UTF8_H

#include <stddef.h>

/*
 * Length of the valid UTF-8 sequence at s (at most n bytes): 1..4, or 0 when the bytes there
 * are not one (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF, not cut).
 */
size_t utf8_seq_len(const char *s, size_t n);

/*
 * Copies at most max bytes of src[0..n) into dst (dstlen bytes, always NUL-terminated when
 * dstlen > 0; max is lowered to dstlen - 1), cut on a character boundary so dst is valid
 * UTF-8: each byte that starts no valid sequence becomes '?', control characters (C0, DEL)
 * become ' ' (one-line messages), an embedded NUL ends the copy, and a sequence cut off at the
 * end of src (text an earlier step cut by bytes) is dropped. Returns bytes written.
 */
size_t utf8_clean(char *dst, size_t dstlen, const char *src, size_t n, size_t max);

#endif
