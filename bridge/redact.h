/*
 * Secret redaction: a set of secrets, and texts made safe against it.
 *
 * log.c keeps the process's set behind log_add_secret() and log_redact(). A caller that must
 * not touch the logger's state keeps a set of its own: the configuration loader's pure step
 * (conf_load_buffer()) redacts its messages with the secrets of the text it was given.
 */
#ifndef YTB_REDACT_H
#define YTB_REDACT_H

#include <stddef.h>

struct redact_pattern;

/* A set of secrets; zero-initialised is empty. */
struct redact {
    struct redact_pattern *v;
    size_t n;
};

/*
 * Adds a secret to set. The string is copied; empty strings and strings shorter than 4 bytes
 * are ignored (they would redact ordinary words), and so is a secret already in the set.
 * Besides the secret itself, redaction finds it percent-encoded (any mix of encoded and plain
 * bytes, %XX in either case, a space as '+') and inside base64 or base64url text at any
 * alignment, the encoded forms being precomputed here. Returns 0 or -ENOMEM.
 */
int redact_add(struct redact *set, const char *secret);

/*
 * Copies src into dst (size dstlen, always NUL-terminated) with every secret of set, in any of
 * the forms above, replaced by "[REDACTED]"; when src does not fit, a tail that begins a
 * secret is blanked too (redact_blank_tail()).
 */
void redact_apply(const struct redact *set, char *dst, size_t dstlen, const char *src);

/* Blanks with '*' a tail of buf that is the first 4 or more bytes of a secret of set. */
void redact_blank_tail(const struct redact *set, char *buf);

/* Forgets every secret of set (their copies are zeroed first); set is empty afterwards. */
void redact_fini(struct redact *set);

#endif
