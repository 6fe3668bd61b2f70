/*
 * Levelled logging to stderr, as text or JSON lines, with secret redaction.
 *
 * Every line names its module ("youtrack: page 3: HTTP 502"). The level is checked before the
 * arguments are evaluated (the macros below), so debug logging costs nothing when it is off.
 * Secrets registered with log_add_secret() are replaced by "[REDACTED]" in every line, whatever
 * code formatted them: redaction is the last step before the write.
 */
#ifndef YTB_LOG_H
#define YTB_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level {
    LOGL_ERR = 0,
    LOGL_WARN = 1,
    LOGL_INFO = 2,
    LOGL_DEBUG = 3,
};

enum log_format {
    LOG_FORMAT_TEXT = 0,
    LOG_FORMAT_JSON = 1,
};

/* The current threshold; read by the macros, written by log_setup(). */
extern enum log_level log_threshold;

/* Sets the threshold and the line format. Safe to call again (e.g. after the config is read). */
void log_setup(enum log_level level, enum log_format format);

/* Parses "error"/"warn"/"info"/"debug" (and "err", "warning"). Returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);

/* Parses "text"/"json". Returns 0 or -EINVAL. */
int log_format_parse(const char *s, enum log_format *out);

/*
 * Registers a secret to redact from every later line and every log_redact(). The string is
 * copied; empty strings and strings shorter than 4 bytes are ignored (they would redact ordinary
 * words). Besides the secret itself, redaction finds it percent-encoded (any mix of encoded and
 * plain bytes, %XX in either case, a space as '+') and inside base64 or base64url text at any
 * alignment (HTTP Basic "user:secret", "Bearer secret"), the encoded forms being precomputed
 * here. Returns 0 or -ENOMEM.
 */
int log_add_secret(const char *secret);

/* Forgets every registered secret (tests, and before a configuration reload). */
void log_clear_secrets(void);

/*
 * Copies src into dst (size dstlen, always NUL-terminated) with every registered secret, in any
 * of the forms above, replaced by "[REDACTED]"; when src does not fit, a tail that begins a
 * secret is blanked too. Every text that leaves the process without passing log_emit() goes
 * through here where it is made: /readyz, alerts and chat answers show error texts made so.
 */
void log_redact(char *dst, size_t dstlen, const char *src);

void log_emit(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * For a condition that repeats on every retry: logs the formatted line at level when it
 * differs from last (a buffer of lastlen bytes, which then holds it), else at debug level only.
 */
void log_vchange(enum log_level level, const char *module, char *last, size_t lastlen,
                 const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

#define log_at(lvl, module, ...)                    \
    do {                                            \
        if ((lvl) <= log_threshold)                 \
            log_emit((lvl), (module), __VA_ARGS__); \
    } while (0)

#define log_err(module, ...)   log_at(LOGL_ERR, module, __VA_ARGS__)
#define log_warn(module, ...)  log_at(LOGL_WARN, module, __VA_ARGS__)
#define log_info(module, ...)  log_at(LOGL_INFO, module, __VA_ARGS__)
#define log_debug(module, ...) log_at(LOGL_DEBUG, module, __VA_ARGS__)

#endif
