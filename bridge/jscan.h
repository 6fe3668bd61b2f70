/*
 * A pull reader for big JSON documents (RFC 8259), without a DOM.
 *
 * Why not jansson here: two documents grow with the number of projects, and for them a DOM costs
 * too much. jansson builds a hash table per object and reads through a callback per byte.
 *   - The project list that every poll fetches (youtrack.c; 100,000 projects are ~25 MB): with
 *     jansson, parse + diff was 2-3x slower than the target and held 4x the text in memory (see
 *     README, "Performance").
 *   - The saved snapshot, loaded at start-up (state_format.c; the same projects, 24.1 MiB at
 *     100,000). `bench_diff 100000` against `bench_diff 100000 jansson` (the same project list
 *     filled from a DOM), five pairs on the shared 2-core machine: 252-743 ms against
 *     1.9-3.3 s (3-10x, 6x typical), and at its peak the DOM adds 185 MiB, 7.7x the text, where
 *     this reader adds 18.8 MiB, the project list itself. A bridge that can poll 100,000
 *     projects in 76 MiB could not start in it.
 * The state's small records (journal lines, sync positions) are read with this reader too, so
 * that state_format.c reads one way (see there). Everything else uses jansson, which also
 * writes all JSON but Slack's blocks and Socket Mode acks (jwrite.h: written directly, in
 * jansson's bytes, because they are on the chat commands' hot path).
 *
 * Usage is a cursor: jscan_array_next() / jscan_object_next() walk containers, jscan_string(),
 * jscan_int(), jscan_bool() read scalars, jscan_skip() skips any value. Every function returns
 * a negative errno (-EPROTO) on malformed input with a message in js->err (byte offset
 * included), after which the reader stays failed. Strings are validated UTF-8; escapes,
 * including surrogate pairs, are decoded.
 */
#ifndef YTB_JSCAN_H
#define YTB_JSCAN_H

#include <stddef.h>
#include <stdint.h>

#define JSCAN_MAX_DEPTH 64

enum jscan_type {
    JSCAN_NONE = 0, /* end of input */
    JSCAN_OBJECT,
    JSCAN_ARRAY,
    JSCAN_STRING,
    JSCAN_NUMBER,
    JSCAN_BOOL,
    JSCAN_NULL,
    JSCAN_INVALID,
};

struct jscan {
    const char *buf;
    size_t len, pos;
    int depth;
    unsigned char first[JSCAN_MAX_DEPTH]; /* per open container: no member read yet */
    unsigned char kind[JSCAN_MAX_DEPTH];  /* per open container: JSCAN_ARRAY or JSCAN_OBJECT */
    char *scratch;                        /* decoded strings with escapes */
    size_t scratch_cap;
    int failed;
    char err[160];
};

void jscan_init(struct jscan *js, const char *buf, size_t len);
void jscan_fini(struct jscan *js);

/* The type of the next value (whitespace skipped); JSCAN_INVALID for a byte that starts none. */
enum jscan_type jscan_peek(struct jscan *js);

/* Consumes '[' . Returns 0 or -EPROTO. */
int jscan_array_begin(struct jscan *js);
/* Returns 1 when another element follows (read it next), 0 after the closing ']', or -EPROTO. */
int jscan_array_next(struct jscan *js);

/* Consumes '{'. Returns 0 or -EPROTO. */
int jscan_object_begin(struct jscan *js);
/*
 * Returns 1 with the next member's key (see jscan_string() for its lifetime) and the reader
 * before its value, 0 after the closing '}', or -EPROTO.
 */
int jscan_object_next(struct jscan *js, const char **key, size_t *keylen);

/*
 * Reads a string: *s points into the input or into the reader's scratch space (escapes
 * decoded), is NOT NUL-terminated, may contain NUL bytes (\u0000), and is valid until the next
 * call.
 */
int jscan_string(struct jscan *js, const char **s, size_t *len);
/* Reads an integer number (no fraction or exponent) that fits in int64_t. */
int jscan_int(struct jscan *js, int64_t *v);
/* Reads true or false. */
int jscan_bool(struct jscan *js, int *v);
/* Reads null. */
int jscan_null(struct jscan *js);
/* Skips any value, however nested (up to JSCAN_MAX_DEPTH). */
int jscan_skip(struct jscan *js);
/* Checks that only whitespace is left. */
int jscan_end(struct jscan *js);

/*
 * Walks an object: fn is called per member with the reader before the value, and must consume
 * the value (jscan_skip() for keys it does not want). Returns 0, fn's error, or -EPROTO (also
 * when the next value is not an object).
 */
typedef int (*jscan_member_fn)(struct jscan *js, const char *key, size_t keylen, void *ctx);
int jscan_object_each(struct jscan *js, jscan_member_fn fn, void *ctx);

/* Records a caller's error about the current position ("what" is a short phrase); -EPROTO. */
int jscan_fail(struct jscan *js, const char *what);

/* Helper: key equality for jscan_object_next() results. */
int jscan_key_is(const char *key, size_t keylen, const char *name);

#endif
