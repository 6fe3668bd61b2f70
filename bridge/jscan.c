/*
 * Pull JSON reader (see jscan.h for why it exists).
 *
 * Invariants: pos only moves forward and never past len; depth counts open containers and
 * first[depth - 1] says whether the next member of the innermost one is its first; once an
 * error is recorded every call fails, so a caller that misses one check cannot read garbage.
 */
#include "jscan.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

void jscan_init(struct jscan *js, const char *buf, size_t len)
{
    memset(js, 0, sizeof(*js));
    js->buf = buf;
    js->len = len;
}

void jscan_fini(struct jscan *js)
{
    free(js->scratch);
    js->scratch = NULL;
}

static int fail(struct jscan *js, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct jscan *js, const char *fmt, ...)
{
    if (!js->failed) {
        char what[128];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        snprintf(js->err, sizeof(js->err), "byte %zu: %s", js->pos, what);
        js->failed = 1;
    }
    return -EPROTO;
}

static void skip_ws(struct jscan *js)
{
    while (js->pos < js->len) {
        char c = js->buf[js->pos];
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t')
            break;
        js->pos++;
    }
}

enum jscan_type jscan_peek(struct jscan *js)
{
    if (js->failed)
        return JSCAN_INVALID;
    skip_ws(js);
    if (js->pos >= js->len)
        return JSCAN_NONE;
    switch (js->buf[js->pos]) {
    case '{':
        return JSCAN_OBJECT;
    case '[':
        return JSCAN_ARRAY;
    case '"':
        return JSCAN_STRING;
    case 't':
    case 'f':
        return JSCAN_BOOL;
    case 'n':
        return JSCAN_NULL;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        return JSCAN_NUMBER;
    default:
        return JSCAN_INVALID;
    }
}

static int expect_value(struct jscan *js, enum jscan_type t, const char *what)
{
    enum jscan_type got = jscan_peek(js);
    if (js->failed)
        return -EPROTO;
    if (got == JSCAN_NONE)
        return fail(js, "unexpected end of input, expected %s (truncated?)", what);
    if (got != t)
        return fail(js, "expected %s", what);
    return 0;
}

static int open_container(struct jscan *js, enum jscan_type t)
{
    if (expect_value(js, t, t == JSCAN_ARRAY ? "an array" : "an object"))
        return -EPROTO;
    if (js->depth >= JSCAN_MAX_DEPTH)
        return fail(js, "nested deeper than %d levels", JSCAN_MAX_DEPTH);
    js->pos++;
    js->kind[js->depth] = (unsigned char)t;
    js->first[js->depth++] = 1;
    return 0;
}

int jscan_array_begin(struct jscan *js)
{
    return open_container(js, JSCAN_ARRAY);
}

int jscan_object_begin(struct jscan *js)
{
    return open_container(js, JSCAN_OBJECT);
}

/* Before a member: the closing bracket (returns 0), or a ',' unless it is the first (1). */
static int next_member(struct jscan *js, char close)
{
    if (js->failed)
        return -EPROTO;
    skip_ws(js);
    if (js->pos >= js->len)
        return fail(js, "unexpected end of input inside %s (truncated?)",
                    close == ']' ? "an array" : "an object");
    int first = js->first[js->depth - 1];
    if (js->buf[js->pos] == close) {
        js->pos++;
        js->depth--;
        return 0;
    }
    if (!first) {
        if (js->buf[js->pos] != ',')
            return fail(js, "expected ',' or '%c'", close);
        js->pos++;
        skip_ws(js);
        if (js->pos < js->len && js->buf[js->pos] == close)
            return fail(js, "trailing ',' before '%c'", close);
    }
    js->first[js->depth - 1] = 0;
    return 1;
}

int jscan_array_next(struct jscan *js)
{
    return next_member(js, ']');
}

static int grow_scratch(struct jscan *js, size_t need)
{
    if (need <= js->scratch_cap)
        return 0;
    size_t cap = js->scratch_cap ? js->scratch_cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(js->scratch, cap);
    if (!p)
        return fail(js, "out of memory"), -ENOMEM;
    js->scratch = p;
    js->scratch_cap = cap;
    return 0;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/*
 * Reads the string at pos (which is '"'). Without escapes the result points into the buffer;
 * with escapes it is decoded into scratch. Either way it is not NUL-terminated.
 */
static int read_string(struct jscan *js, const char **s, size_t *len)
{
    const unsigned char *b = (const unsigned char *)js->buf;
    size_t start = ++js->pos, p = start, o = 0;
    int escaped = 0;

    for (;;) {
        if (p >= js->len) {
            js->pos = p;
            return fail(js, "unterminated string (truncated?)");
        }
        unsigned char c = b[p];
        if (c == '"')
            break;
        if (c < 0x20) {
            js->pos = p;
            return fail(js, "control character in a string");
        }
        if (c == '\\') {
            escaped = 1;
            if (p + 1 >= js->len) {
                js->pos = p;
                return fail(js, "unterminated string (truncated?)");
            }
            p += b[p + 1] == 'u' ? 6 : 2;
            continue;
        }
        /* The common case, ASCII, without a call. */
        size_t l = c < 0x80 ? 1 : utf8_seq_len((const char *)b + p, js->len - p);
        if (!l) {
            js->pos = p;
            return fail(js, "invalid UTF-8 in a string");
        }
        p += l;
    }
    if (!escaped) {
        js->pos = p + 1;
        *s = js->buf + start; /* no copy: most strings have no escapes */
        *len = p - start;
        return 0;
    }
    /* Decoded text is never longer than the escaped text. */
    if (grow_scratch(js, p - start))
        return -ENOMEM;
    for (size_t i = start; i < p;) {
        if (b[i] != '\\') {
            js->scratch[o++] = (char)b[i++];
            continue;
        }
        js->pos = i;
        char e = (char)b[i + 1];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char map[] = "\"\\/\b\f\n\r\t";
            js->scratch[o++] = map[simple - "\"\\/bfnrt"];
            i += 2;
            continue;
        }
        unsigned cp, lo;
        if (e != 'u' || i + 6 > p || hex4((const char *)b + i + 2, &cp))
            return fail(js, "invalid escape in a string");
        i += 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (i + 6 > p || b[i] != '\\' || b[i + 1] != 'u' ||
                hex4((const char *)b + i + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
                return fail(js, "unpaired UTF-16 surrogate in a string");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            i += 6;
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            return fail(js, "unpaired UTF-16 surrogate in a string");
        }
        o += utf8_encode(cp, js->scratch + o); /* a scalar value: surrogates are paired above */
    }
    js->pos = p + 1;
    *s = js->scratch;
    *len = o;
    return 0;
}

int jscan_object_next(struct jscan *js, const char **key, size_t *keylen)
{
    int r = next_member(js, '}');
    if (r <= 0)
        return r;
    skip_ws(js);
    if (js->pos >= js->len || js->buf[js->pos] != '"')
        return fail(js, "expected a member name");
    if (read_string(js, key, keylen))
        return -EPROTO;
    skip_ws(js);
    if (js->pos >= js->len || js->buf[js->pos] != ':')
        return fail(js, "expected ':' after a member name");
    js->pos++;
    return 1;
}

int jscan_string(struct jscan *js, const char **s, size_t *len)
{
    if (expect_value(js, JSCAN_STRING, "a string"))
        return -EPROTO;
    return read_string(js, s, len);
}

static int literal(struct jscan *js, const char *word)
{
    size_t l = strlen(word);
    if (js->len - js->pos < l || memcmp(js->buf + js->pos, word, l) != 0)
        return fail(js, "invalid literal");
    js->pos += l;
    return 0;
}

int jscan_bool(struct jscan *js, int *v)
{
    if (expect_value(js, JSCAN_BOOL, "true or false"))
        return -EPROTO;
    *v = js->buf[js->pos] == 't';
    return literal(js, *v ? "true" : "false");
}

int jscan_null(struct jscan *js)
{
    if (expect_value(js, JSCAN_NULL, "null"))
        return -EPROTO;
    return literal(js, "null");
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Validates a number's grammar; *integral says whether it had no fraction or exponent. */
static int read_number(struct jscan *js, size_t *start, int *integral)
{
    const char *b = js->buf;
    size_t p = js->pos;

    *start = p;
    *integral = 1;
    if (b[p] == '-')
        p++;
    if (p >= js->len || !is_digit(b[p]))
        return fail(js, "invalid number");
    if (b[p] == '0')
        p++;
    else
        while (p < js->len && is_digit(b[p]))
            p++;
    if (p < js->len && b[p] == '.') {
        *integral = 0;
        p++;
        if (p >= js->len || !is_digit(b[p]))
            return fail(js, "invalid number");
        while (p < js->len && is_digit(b[p]))
            p++;
    }
    if (p < js->len && (b[p] == 'e' || b[p] == 'E')) {
        *integral = 0;
        p++;
        if (p < js->len && (b[p] == '+' || b[p] == '-'))
            p++;
        if (p >= js->len || !is_digit(b[p]))
            return fail(js, "invalid number");
        while (p < js->len && is_digit(b[p]))
            p++;
    }
    js->pos = p;
    return 0;
}

int jscan_int(struct jscan *js, int64_t *v)
{
    size_t start;
    int integral;
    if (expect_value(js, JSCAN_NUMBER, "a number") || read_number(js, &start, &integral))
        return -EPROTO;
    if (!integral)
        return fail(js, "expected an integer");
    int neg = js->buf[start] == '-';
    uint64_t acc = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (size_t i = start + (size_t)neg; i < js->pos; i++) {
        unsigned d = (unsigned)(js->buf[i] - '0');
        if (acc > (limit - d) / 10)
            return fail(js, "integer out of range");
        acc = acc * 10 + d;
    }
    *v = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return 0;
}

int jscan_skip(struct jscan *js)
{
    const char *s;
    size_t l, start;
    int b, integral;
    int depth = js->depth;

    switch (jscan_peek(js)) {
    case JSCAN_STRING:
        return jscan_string(js, &s, &l);
    case JSCAN_NUMBER:
        return read_number(js, &start, &integral);
    case JSCAN_BOOL:
        return jscan_bool(js, &b);
    case JSCAN_NULL:
        return jscan_null(js);
    case JSCAN_NONE:
        return fail(js, "unexpected end of input (truncated?)");
    case JSCAN_INVALID:
        return fail(js, "invalid value");
    case JSCAN_ARRAY:
    case JSCAN_OBJECT:
        break;
    }
    /* Iterative, so hostile nesting costs no stack. */
    if (open_container(js, jscan_peek(js)))
        return -EPROTO;
    while (js->depth > depth) {
        const char *k;
        size_t kl;
        int r = js->kind[js->depth - 1] == JSCAN_OBJECT ? jscan_object_next(js, &k, &kl)
                                                        : jscan_array_next(js);
        if (r < 0)
            return r;
        if (r == 0)
            continue; /* that container closed */
        enum jscan_type t = jscan_peek(js);
        if (t == JSCAN_ARRAY || t == JSCAN_OBJECT) {
            if (open_container(js, t))
                return -EPROTO;
        } else if (jscan_skip(js)) {
            return -EPROTO;
        }
    }
    return 0;
}

int jscan_end(struct jscan *js)
{
    if (js->failed)
        return -EPROTO;
    skip_ws(js);
    return js->pos == js->len ? 0 : fail(js, "trailing data after the JSON value");
}

int jscan_object_each(struct jscan *js, jscan_member_fn fn, void *ctx)
{
    const char *k;
    size_t kl;

    if (jscan_object_begin(js))
        return -EPROTO;
    for (;;) {
        int r = jscan_object_next(js, &k, &kl);
        if (r <= 0)
            return r;
        r = fn(js, k, kl, ctx);
        if (r)
            return r;
    }
}

int jscan_fail(struct jscan *js, const char *what)
{
    return fail(js, "%s", what);
}

int jscan_key_is(const char *key, size_t keylen, const char *name)
{
    return strlen(name) == keylen && memcmp(key, name, keylen) == 0;
}
