/*
 * Redaction: a set of secrets (each with the base64 forms it can take inside other text) and
 * the copy of a text with every one of them replaced by "[REDACTED]".
 *
 * Invariant: no byte of a secret of the set survives redact_apply(), neither as itself nor
 * percent-encoded nor inside base64 text; a text cut short never ends in the first bytes of one.
 */
#include "redact.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * What redaction looks for: each secret, and the base64 forms it can take inside other text
 * (see add_base64_cores()). Every pattern is matched percent-decoding as it goes.
 */
struct redact_pattern {
    char *s;
    size_t len;
};

/* Base64 cores shorter than this are skipped: they would match ordinary words. */
#define MIN_CORE_CHARS 8

static int add_pattern(struct redact *set, const char *s, size_t len)
{
    for (size_t i = 0; i < set->n; i++) {
        if (set->v[i].len == len && memcmp(set->v[i].s, s, len) == 0)
            return 0;
    }
    char *copy = strndup(s, len);
    if (!copy)
        return -ENOMEM;
    struct redact_pattern *v = realloc(set->v, (set->n + 1) * sizeof(*v));
    if (!v) {
        free(copy);
        return -ENOMEM;
    }
    set->v = v;
    set->v[set->n++] = (struct redact_pattern){.s = copy, .len = len};
    return 0;
}

/*
 * A secret inside base64 text (HTTP Basic "user:token", "Bearer token", a JSON blob echoed
 * encoded) sits at one of three byte offsets modulo 3 from the start of the encoded data. For
 * each offset the whole 3-byte groups that hold only secret bytes encode to the same characters
 * wherever the secret is: skip 0, 1 or 2 leading bytes, encode the following whole groups
 * without padding. Those three "cores" (and their URL-safe spellings) are what we look for;
 * the at most two characters at either end that mix in neighbouring bytes leak under 2 bytes.
 */
static int add_base64_cores(struct redact *set, const char *secret, size_t len)
{
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *core = malloc(len / 3 * 4 + 4);
    int r = 0;

    if (!core)
        return -ENOMEM;
    for (size_t skip = 0; skip < 3 && !r; skip++) {
        const unsigned char *p = (const unsigned char *)secret + skip;
        size_t groups = len > skip ? (len - skip) / 3 : 0, o = 0;
        for (size_t g = 0; g < groups; g++, p += 3) {
            unsigned v = (unsigned)p[0] << 16 | (unsigned)p[1] << 8 | p[2];
            core[o++] = std[v >> 18 & 63];
            core[o++] = std[v >> 12 & 63];
            core[o++] = std[v >> 6 & 63];
            core[o++] = std[v & 63];
        }
        if (o < MIN_CORE_CHARS)
            continue;
        r = add_pattern(set, core, o);
        for (size_t k = 0; k < o; k++)
            core[k] = core[k] == '+' ? '-' : core[k] == '/' ? '_' : core[k];
        if (!r)
            r = add_pattern(set, core, o); /* base64url (RFC 4648 §5): a no-op without + or / */
    }
    free(core);
    return r;
}

int redact_add(struct redact *set, const char *secret)
{
    int r;

    if (!secret || strlen(secret) < 4)
        return 0;
    /* add_pattern() ignores a repeat, so adding a secret again adds nothing. */
    r = add_pattern(set, secret, strlen(secret));
    if (!r)
        r = add_base64_cores(set, secret, strlen(secret));
    return r;
}

void redact_fini(struct redact *set)
{
    for (size_t i = 0; i < set->n; i++) {
        memset(set->v[i].s, 0, set->v[i].len);
        free(set->v[i].s);
    }
    free(set->v);
    set->v = NULL;
    set->n = 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Matches pattern p against text s, each pattern byte either as itself or percent-encoded
 * (%3A or %3a, whatever an encoder chose to escape: URLs, form bodies, redirect targets), and
 * a space also as '+' (form encoding). Returns how many pattern bytes matched before a mismatch
 * or the end of s, and the text bytes they took in *used.
 */
static size_t match(const char *s, const struct redact_pattern *p, size_t *used)
{
    size_t i = 0, t = 0;

    for (; i < p->len && s[t]; i++) {
        unsigned char c = (unsigned char)p->s[i];
        if (s[t] == '%' && hex_value(s[t + 1]) >= 0 && hex_value(s[t + 2]) >= 0 &&
            hex_value(s[t + 1]) * 16 + hex_value(s[t + 2]) == c)
            t += 3;
        else if ((unsigned char)s[t] == c || (c == ' ' && s[t] == '+'))
            t++;
        else
            break;
    }
    *used = t;
    return i;
}

/*
 * A text cut short may end in the first bytes of a secret (or of an encoded form), which the
 * full-length match cannot see: blank any such tail of at least 4 pattern bytes. Only for cut
 * text, or every line ending in "https://" would be blanked once a secret URL is in the set.
 */
void redact_blank_tail(const struct redact *set, char *buf)
{
    size_t o = strlen(buf);
    for (size_t i = 0; i < set->n; i++) {
        const struct redact_pattern *p = &set->v[i];
        /* Each pattern byte takes at most 3 text bytes (%XX). */
        size_t from = o > 3 * p->len ? o - 3 * p->len : 0;
        for (size_t k = from; k + 4 <= o; k++) {
            size_t used, m = match(buf + k, p, &used);
            if (m >= 4 && m < p->len && k + used == o) {
                memset(buf + k, '*', o - k);
                o = k;
                break;
            }
        }
    }
}

void redact_apply(const struct redact *set, char *dst, size_t dstlen, const char *src)
{
    static const char mark[] = "[REDACTED]";
    size_t o = 0;

    if (dstlen == 0)
        return;
    while (*src && o + 1 < dstlen) {
        size_t hit = 0;
        for (size_t i = 0; i < set->n; i++) {
            size_t used;
            if (match(src, &set->v[i], &used) == set->v[i].len && used > hit)
                hit = used;
        }
        if (hit) {
            for (size_t k = 0; mark[k] && o + 1 < dstlen; k++)
                dst[o++] = mark[k];
            src += hit;
        } else {
            dst[o++] = *src++;
        }
    }
    dst[o] = '\0';
    if (*src)
        redact_blank_tail(set, dst);
}
