/*
 * A growing NUL-terminated string for building answers and messages. Appending never fails
 * loudly: on ENOMEM the buffer remembers it (oom) and strbuf_take() returns NULL, so callers
 * check once at the end.
 */
#ifndef YTB_STRBUF_H
#define YTB_STRBUF_H

#include <stddef.h>

struct strbuf {
    char *p; /* NUL-terminated once anything was appended; NULL before */
    size_t n, cap;
    int oom;
};

void strbuf_putn(struct strbuf *b, const char *s, size_t n);
void strbuf_puts(struct strbuf *b, const char *s);
/* Formatted output of up to 127 bytes (numbers, short fields); longer output is cut. */
void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Shortens to n bytes (n <= b->n; 0 empties it). */
void strbuf_cut(struct strbuf *b, size_t n);

/* The string (caller frees; "" when nothing was appended), or NULL after ENOMEM. Empties b. */
char *strbuf_take(struct strbuf *b);

void strbuf_fini(struct strbuf *b);

#endif
