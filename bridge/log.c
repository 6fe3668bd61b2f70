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

#include "redact.h"

enum log_level log_threshold = LOGL_INFO;
static enum log_format log_fmt = LOG_FORMAT_TEXT;

/* The secrets every line is redacted against (redact.h). */
static struct redact secrets;

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

int log_add_secret(const char *secret)
{
    return redact_add(&secrets, secret);
}

void log_clear_secrets(void)
{
    redact_fini(&secrets);
}

void log_redact(char *dst, size_t dstlen, const char *src)
{
    redact_apply(&secrets, dst, dstlen, src);
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
        redact_blank_tail(&secrets, msg);
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
