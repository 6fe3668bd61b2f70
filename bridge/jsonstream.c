/*
 * Member-at-a-time JSON reading on top of jansson (see jsonstream.h for why).
 *
 * Invariant: *pos only moves forward and never past len; every error names the byte offset.
 */
#include "jsonstream.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define DECODE_FLAGS (JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY | JSON_ALLOW_NUL)

static size_t skip_ws(const char *buf, size_t len, size_t pos)
{
    while (pos < len && (buf[pos] == ' ' || buf[pos] == '\t' || buf[pos] == '\n' ||
                         buf[pos] == '\r'))
        pos++;
    return pos;
}

static int fail(char *err, size_t errlen, size_t pos, const char *what)
{
    snprintf(err, errlen, "byte %zu: %s", pos, what);
    return -EPROTO;
}

json_t *jsonstream_value(const char *buf, size_t len, size_t *pos, char *err, size_t errlen)
{
    json_error_t je;
    size_t p = skip_ws(buf, len, *pos);

    if (p >= len) {
        fail(err, errlen, p, "unexpected end of input");
        return NULL;
    }
    json_t *v = json_loadb(buf + p, len - p, DECODE_FLAGS, &je);
    if (!v) {
        snprintf(err, errlen, "byte %zu: %s", p + (size_t)(je.position > 0 ? je.position : 0),
                 je.text);
        return NULL;
    }
    *pos = p + (size_t)je.position;
    return v;
}

long jsonstream_array(const char *buf, size_t len, size_t *pos, jsonstream_elem_cb cb, void *ctx,
                      char *err, size_t errlen)
{
    size_t p = skip_ws(buf, len, *pos);
    long n = 0;

    if (p >= len || buf[p] != '[')
        return fail(err, errlen, p, p >= len ? "empty body, expected an array" : "expected an array");
    p = skip_ws(buf, len, p + 1);
    if (p < len && buf[p] == ']') {
        *pos = p + 1;
        return 0;
    }
    for (;;) {
        json_t *v = jsonstream_value(buf, len, &p, err, errlen);
        if (!v)
            return -EPROTO;
        int r = cb(ctx, v, err, errlen);
        json_decref(v);
        if (r < 0)
            return r;
        n++;
        p = skip_ws(buf, len, p);
        if (p >= len)
            return fail(err, errlen, p, "array not terminated (truncated body?)");
        if (buf[p] == ']')
            break;
        if (buf[p] != ',')
            return fail(err, errlen, p, "expected ',' or ']' in array");
        p++;
    }
    *pos = p + 1;
    return n;
}

int jsonstream_object(const char *buf, size_t len, size_t *pos, jsonstream_member_cb cb,
                      void *ctx, char *err, size_t errlen)
{
    size_t p = skip_ws(buf, len, *pos);

    if (p >= len || buf[p] != '{')
        return fail(err, errlen, p, "expected an object");
    p = skip_ws(buf, len, p + 1);
    if (p < len && buf[p] == '}') {
        *pos = p + 1;
        return 0;
    }
    for (;;) {
        p = skip_ws(buf, len, p);
        if (p >= len || buf[p] != '"')
            return fail(err, errlen, p, "expected a member name");
        json_t *k = jsonstream_value(buf, len, &p, err, errlen);
        if (!k)
            return -EPROTO;
        p = skip_ws(buf, len, p);
        if (p >= len || buf[p] != ':') {
            json_decref(k);
            return fail(err, errlen, p, "expected ':'");
        }
        p++;
        int r = cb(ctx, json_string_value(k), buf, len, &p, err, errlen);
        json_decref(k);
        if (r < 0)
            return r;
        p = skip_ws(buf, len, p);
        if (p >= len)
            return fail(err, errlen, p, "object not terminated (truncated?)");
        if (buf[p] == '}')
            break;
        if (buf[p] != ',')
            return fail(err, errlen, p, "expected ',' or '}' in object");
        p++;
    }
    *pos = p + 1;
    return 0;
}

int jsonstream_end(const char *buf, size_t len, size_t pos, char *err, size_t errlen)
{
    pos = skip_ws(buf, len, pos);
    return pos == len ? 0 : fail(err, errlen, pos, "trailing data after the JSON value");
}
