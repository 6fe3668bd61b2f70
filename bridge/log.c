/*
 * Logging: one line per call on stderr, text ("2026-11-28T01:02:03Z warn youtrack: ...") or JSON
 * lines ({"time":...,"level":...,"module":...,"message":...}).
 *
 * Invariant: no byte of a registered secret reaches stderr, neither as itself nor percent-encoded
 * nor inside base64 text. The message is formatted into a bounded buffer, redacted, then escaped
 * for the chosen format; control characters are escaped
 * in both formats so a hostile project name cannot forge log lines or drive a terminal.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum log_level log_threshold = LOGL_INFO;
static enum log_format log_fmt = LOG_FORMAT_TEXT;

/*
 * What redaction looks for: each registered secret, and the base64 forms it can take inside
 * other text (see add_base64_cores()). Every pattern is matched percent-decoding as it goes.
 */
struct pattern {
    char *s;
    size_t len;
};

static struct pattern *patterns;
static size_t n_patterns;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_setup(enum log_level level, enum log_format format)
{
    log_threshold = level;
    log_fmt = format;
}

int log_level_parse(const char *s, enum log_level *out)
{
    static const struct {
        const char *name;
        enum log_level level;
    } names[] = {
        {"error", LOGL_ERR},    {"err", LOGL_ERR},   {"warn", LOGL_WARN},
        {"warning", LOGL_WARN}, {"info", LOGL_INFO}, {"debug", LOGL_DEBUG},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    }
    return -EINVAL;
}

int log_format_parse(const char *s, enum log_format *out)
{
    if (strcmp(s, "text") == 0)
        *out = LOG_FORMAT_TEXT;
    else if (strcmp(s, "json") == 0)
        *out = LOG_FORMAT_JSON;
    else
        return -EINVAL;
    return 0;
}

/* Base64 cores shorter than this are skipped: they would match ordinary words. */
#define MIN_CORE_CHARS 8

static int add_pattern(const char *s, size_t len)
{
    for (size_t i = 0; i < n_patterns; i++) {
        if (patterns[i].len == len && memcmp(patterns[i].s, s, len) == 0)
            return 0;
    }
    char *copy = strndup(s, len);
    if (!copy)
        return -ENOMEM;
    struct pattern *v = realloc(patterns, (n_patterns + 1) * sizeof(*v));
    if (!v) {
        free(copy);
        return -ENOMEM;
    }
    patterns = v;
    patterns[n_patterns++] = (struct pattern){.s = copy, .len = len};
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
static int add_base64_cores(const char *secret, size_t len)
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
        r = add_pattern(core, o);
        for (size_t k = 0; k < o; k++)
            core[k] = core[k] == '+' ? '-' : core[k] == '/' ? '_' : core[k];
        if (!r)
            r = add_pattern(core, o); /* base64url (RFC 4648 §5): a no-op without + or / */
    }
    free(core);
    return r;
}

int log_add_secret(const char *secret)
{
    int r;

    if (!secret || strlen(secret) < 4)
        return 0;
    /* add_pattern() ignores a repeat, so registering a secret again adds nothing. */
    r = add_pattern(secret, strlen(secret));
    if (!r)
        r = add_base64_cores(secret, strlen(secret));
    return r;
}

void log_clear_secrets(void)
{
    for (size_t i = 0; i < n_patterns; i++) {
        memset(patterns[i].s, 0, patterns[i].len);
        free(patterns[i].s);
    }
    free(patterns);
    patterns = NULL;
    n_patterns = 0;
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
static size_t match(const char *s, const struct pattern *p, size_t *used)
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
 * text, or every line ending in "https://" would be blanked once a secret URL is registered.
 */
static void blank_secret_prefix_tail(char *buf)
{
    size_t o = strlen(buf);
    for (size_t i = 0; i < n_patterns; i++) {
        const struct pattern *p = &patterns[i];
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

void log_redact(char *dst, size_t dstlen, const char *src)
{
    static const char mark[] = "[REDACTED]";
    size_t o = 0;

    if (dstlen == 0)
        return;
    while (*src && o + 1 < dstlen) {
        size_t hit = 0;
        for (size_t i = 0; i < n_patterns; i++) {
            size_t used;
            if (match(src, &patterns[i], &used) == patterns[i].len && used > hit)
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
        blank_secret_prefix_tail(dst);
}

/* Appends s to out (bounded), escaping for the format. */
static size_t put_escaped(char *out, size_t o, size_t cap, const char *s, int json)
{
    for (; *s && o + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (json && (c == '"' || c == '\\')) {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n' && json) {
            memcpy(out + o, "\\n", 2);
            o += 2;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, json ? "\\u%04x" : "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

void log_emit(enum log_level level, const char *module, const char *fmt, ...)
{
    char msg[2048], clean[2048], line[4608], ts[64];
    va_list ap;
    struct timespec now;
    struct tm tm;
    size_t o;
    int json = log_fmt == LOG_FORMAT_JSON;

    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(msg))
        blank_secret_prefix_tail(msg);
    log_redact(clean, sizeof(clean), msg);

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);

    if (json) {
        o = (size_t)snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\",\"module\":\"",
                             ts, level_names[level]);
        o = put_escaped(line, o, sizeof(line), module, 1);
        o += (size_t)snprintf(line + o, sizeof(line) - o, "\",\"message\":\"");
        o = put_escaped(line, o, sizeof(line) - 3, clean, 1);
        memcpy(line + o, "\"}\n", 3);
        o += 3;
    } else {
        o = (size_t)snprintf(line, sizeof(line), "%s %s %s: ", ts, level_names[level], module);
        o = put_escaped(line, o, sizeof(line) - 1, clean, 0);
        line[o++] = '\n';
    }
    fwrite(line, 1, o, stderr);
    fflush(stderr);
}

void log_vchange(enum log_level level, const char *module, char *last, size_t lastlen,
                 const char *fmt, va_list ap)
{
    char line[1024];

    vsnprintf(line, sizeof(line), fmt, ap);
    if (strncmp(line, last, lastlen) != 0) {
        log_at(level, module, "%s", line);
        snprintf(last, lastlen, "%s", line);
    } else {
        log_debug(module, "%s (again)", line);
    }
}
