/* Unit tests for logging: levels, formats, and redaction of every registered secret. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "test.h"

/* Runs fn with stderr captured into buf. */
static void capture(void (*fn)(void), char *buf, size_t len)
{
    fflush(stderr);
    int saved = dup(2);
    FILE *tmp = tmpfile();
    dup2(fileno(tmp), 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(buf, 1, len - 1, tmp);
    buf[n] = '\0';
    fclose(tmp);
}

static void emit_secret(void)
{
    log_err("youtrack", "GET with Authorization: Bearer %s failed", "perm:abc.def.ghijklmnop");
    log_debug("youtrack", "invisible %s", "line");
}

static void test_redaction_and_levels(void)
{
    char out[4096];
    log_setup(LOGL_INFO, LOG_FORMAT_TEXT);
    CHECK_INT(log_add_secret("perm:abc.def.ghijklmnop"), 0);
    capture(emit_secret, out, sizeof(out));
    CHECK(strstr(out, "ghijklmnop") == NULL);
    CHECK(strstr(out, "Bearer [REDACTED] failed") != NULL);
    CHECK(strstr(out, " error youtrack: ") != NULL);
    CHECK(strstr(out, "invisible") == NULL);
    log_clear_secrets();
}

static void emit_hostile(void)
{
    log_warn("bridge", "name \"%s\"", "evil\nforged line\x1b[2J");
}

static void test_json_lines_escape(void)
{
    char out[4096];
    log_setup(LOGL_DEBUG, LOG_FORMAT_JSON);
    capture(emit_hostile, out, sizeof(out));
    CHECK(strncmp(out, "{\"time\":\"", 9) == 0);
    CHECK(strstr(out, "\"level\":\"warn\",\"module\":\"bridge\"") != NULL);
    CHECK(strstr(out, "name \\\"evil\\nforged line\\u001b[2J\\\"") != NULL);
    CHECK(strchr(out, '\n') == out + strlen(out) - 1); /* exactly one line */
    log_setup(LOGL_INFO, LOG_FORMAT_TEXT);
}

static char last_error[64];

static void change(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void change(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vchange(LOGL_WARN, "slack", last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
}

static void emit_repeats(void)
{
    change("connect failed (%s)", "refused");
    change("connect failed (%s)", "refused");
    change("connect failed (%s)", "refused");
    change("connect failed (%s)", "timeout");
}

/* A condition repeated on every retry is logged once, and again when it changes. */
static void test_change_logged_once(void)
{
    char out[4096];
    log_setup(LOGL_INFO, LOG_FORMAT_TEXT);
    capture(emit_repeats, out, sizeof(out));
    static const char line[] = "warn slack: connect failed (refused)\n";
    const char *first = strstr(out, line);
    CHECK(first != NULL);
    CHECK(first && strstr(first + sizeof(line) - 1, "connect failed (refused)") == NULL);
    CHECK(strstr(out, "warn slack: connect failed (timeout)\n") != NULL);
    CHECK_STR(last_error, "connect failed (timeout)");
}

static void test_redact_truncated_tail(void)
{
    char out[24];
    CHECK_INT(log_add_secret("SECRETVALUE123"), 0);
    /* The buffer cuts the secret short: its visible prefix must not survive. */
    log_redact(out, sizeof(out), "0123456789012345SECRETVALUE123");
    CHECK(strstr(out, "SECRET") == NULL);
    log_redact(out, sizeof(out), "abc SECRETVALUE123 x");
    CHECK_STR(out, "abc [REDACTED] x");
    log_clear_secrets();

    /* A whole message that merely ends like a secret begins is left alone. */
    char line[128];
    CHECK_INT(log_add_secret("https://hooks.example/services/T0/B0/x"), 0);
    log_redact(line, sizeof(line), "url: must start with https://");
    CHECK_STR(line, "url: must start with https://");
    log_clear_secrets();
}

/* Fake secrets: a YouTrack-shaped token (':' '.' '=' need escaping) and a Slack-shaped URL. */
#define TOK  "perm:dGVzdA==.NDQtMA==.unitTestNotReal0"
#define HOOK "https://hooks.example/services/T0/B0/notreal x+y"

static void check_clean(const char *text, const char *what)
{
    char out[1024];
    log_redact(out, sizeof(out), text);
    if (strstr(out, "[REDACTED]") == NULL || strstr(out, "unitTest") || strstr(out, "notreal") ||
        strstr(out, "NDQtMA") || strstr(out, "bm90cmVhbC") || strstr(out, "dW5pdFRlc3") ||
        strstr(out, "VuaXRUZXN0") || strstr(out, "1bml0VGVzd")) {
        fprintf(stderr, "%s: not redacted: %s\n", what, out);
        CHECK(0);
    }
}

static void test_redact_percent_encoded(void)
{
    CHECK_INT(log_add_secret(TOK), 0);
    CHECK_INT(log_add_secret(HOOK), 0);
    check_clean("Location: https://sso.example/login?t=perm%3AdGVzdA%3D%3D.NDQtMA%3D%3D."
                "unitTestNotReal0&x=1",
                "upper-case %XX");
    check_clean("t=perm%3adGVzdA%3d%3d.NDQtMA%3d%3d.unitTestNotReal0", "lower-case %xx");
    check_clean("t=perm%3AdGVzdA%3d=.NDQtMA==.unitTestNotReal0", "partly encoded, mixed case");
    check_clean("t=%70%65%72%6d%3A%64GVzdA==.NDQtMA==%2EunitTestNotReal0", "needlessly encoded");
    check_clean("u=https%3A%2F%2Fhooks.example%2Fservices%2FT0%2FB0%2Fnotreal+x%2By",
                "form-encoded URL, space as +");
    check_clean("u=https%3A%2F%2Fhooks.example%2Fservices%2FT0%2FB0%2Fnotreal%20x%2By",
                "space as %20");
    /* A cut in the middle of an encoded secret: the visible part is blanked. */
    char out[48];
    log_redact(out, sizeof(out), "redirect to /login?token=perm%3AdGVzdA%3D%3D.NDQtMA%3D%3D.unit");
    CHECK(strstr(out, "dGVzdA") == NULL);
    CHECK(strstr(out, "redirect to /login?token=") == out);
    log_clear_secrets();
}

static void test_redact_base64(void)
{
    CHECK_INT(log_add_secret(TOK), 0);
    CHECK_INT(log_add_secret(HOOK), 0);
    /* base64(TOK) */
    check_clean("echo: cGVybTpkR1Z6ZEE9PS5ORFF0TUE9PS51bml0VGVzdE5vdFJlYWww", "base64 alone");
    /* Basic base64("bot:" TOK): the secret at offset 4 (alignment 1) */
    check_clean("Authorization: Basic Ym90OnBlcm06ZEdWemRBPT0uTkRRdE1BPT0udW5pdFRlc3ROb3RSZWFsMA==",
                "HTTP Basic user:token");
    /* base64("Bearer " TOK): offset 7 (alignment 1); base64("x:" TOK): offset 2 */
    check_clean("QmVhcmVyIHBlcm06ZEdWemRBPT0uTkRRdE1BPT0udW5pdFRlc3ROb3RSZWFsMA==", "Bearer");
    check_clean("eDpwZXJtOmRHVnpkQT09Lk5EUXRNQT09LnVuaXRUZXN0Tm90UmVhbDA=", "alignment 2");
    /* base64url("??" HOOK): '/' and '+' spelled '_' and '-', inside a URL */
    check_clean(
        "https://x.example/cb?state=Pz9odHRwczovL2hvb2tzLmV4YW1wbGUvc2VydmljZXMvVDAvQjAvbm90"
        "cmVhbCB4K3k",
        "base64 of a URL");
    /* Ordinary text that shares a few characters is left alone. */
    char out[128];
    log_redact(out, sizeof(out), "page 3: HTTP 502 cGVy dGVzdA NDQt");
    CHECK_STR(out, "page 3: HTTP 502 cGVy dGVzdA NDQt");
    log_clear_secrets();
}

static void test_parsers(void)
{
    enum log_level l;
    enum log_format f;
    CHECK_INT(log_level_parse("debug", &l), 0);
    CHECK_INT(l, LOGL_DEBUG);
    CHECK_INT(log_level_parse("warning", &l), 0);
    CHECK_INT(l, LOGL_WARN);
    CHECK_INT(log_level_parse("verbose", &l), -EINVAL);
    CHECK_INT(log_format_parse("json", &f), 0);
    CHECK_INT(f, LOG_FORMAT_JSON);
    CHECK_INT(log_format_parse("xml", &f), -EINVAL);
}

int main(void)
{
    RUN(test_redaction_and_levels);
    RUN(test_json_lines_escape);
    RUN(test_change_logged_once);
    RUN(test_redact_truncated_tail);
    RUN(test_redact_percent_encoded);
    RUN(test_redact_base64);
    RUN(test_parsers);
    return test_done();
}
