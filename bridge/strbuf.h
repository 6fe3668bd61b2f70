/*
 * A growing NUL-terminated string for building answers and messages. Appending never fails
 * loudly: on ENOMEM the buffer remembers it (oom) and strbuf_take() returns NULL, so callers
 * check once at the end.
 */
#ifndef YTB_STRBUF_H
#define YTB_STRBUF_H

#include <stddef.h>
#include <string.h>

struct strbuf {
    char *p; /* NUL-terminated once anything was appended; NULL before */
    size_t n, cap;
    int oom;
};

/* Appends s[0..n) when it fits (the slow path grows the buffer): inline, because answers are
 * built of many short pieces, most of them literals whose length the compiler knows. */
void strbuf_grow_put(struct strbuf *b, const char *s, size_t n);

static inline void strbuf_putn(struct strbuf *b, const char *s, size_t n)
{
    if (!b->oom && n < b->cap - b->n) {
        memcpy(b->p + b->n, s, n);
        b->n += n;
        b->p[b->n] = '\0';
    } else {
        strbuf_grow_put(b, s, n);
    }
}

static inline void strbuf_puts(struct strbuf *b, const char *s)
{
    strbuf_putn(b, s, strlen(s));
}
/* Formatted output of up to 127 bytes (numbers, short fields); longer output is cut. */
void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Shortens to n bytes (n <= b->n; 0 empties it). */
void strbuf_cut(struct strbuf *b, size_t n);

/* The string (caller frees; "" when nothing was appended), or NULL after ENOMEM. Empties b. */
char *strbuf_take(struct strbuf *b);

void strbuf_fini(struct strbuf *b);

#endif
