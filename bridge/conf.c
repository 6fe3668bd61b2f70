/*
 * Configuration: parses a libconfig file into a validated struct conf. The only module that
 * includes <libconfig.h>; nothing of libconfig leaks past this file.
 *
 * Invariants: every problem is collected as a FILE:LINE diagnostic (never only the first); every
 * secret is passed to log_add_secret() as soon as it is read and no diagnostic ever quotes one;
 * the result is built in a local and published only when there was no problem. The text is
 * pre-scanned before libconfig sees it because libconfig 1.5 silently wraps integers that
 * overflow (4294967356 reads as 60), follows @include to any file (/dev/zero would hang) and
 * recurses on nesting.
 */
#include "conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "project.h"
#include "url.h"

#define CONF_MAX_SIZE       (1024 * 1024)
#define CONF_MAX_DEPTH      32
#define CONF_MAX_DIAGS      50
#define CONF_MAX_SINKS      64
#define TOKEN_FILE_MAX      (64 * 1024)
#define SINK_NAME_MAX       64
#define PROJECT_PATTERN_MAX 256
#define MATRIX_ROOM_MAX     255
#define DEFAULT_MAX_BODY    (64L * 1024 * 1024)

struct loader {
    const char *file; /* name used in diagnostics */
    const char *dir;  /* base of relative paths; NULL: the current directory */
    struct conf_diags *diags;
    size_t first; /* index of our first diagnostic in diags */
    size_t n_added;
    int nomem;
};

static void diag_add(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void diag_add(struct loader *ld, int line, const char *fmt, ...)
{
    char raw[1024], msg[1024];
    struct conf_diag *v;
    va_list ap;

    if (ld->n_added > CONF_MAX_DIAGS)
        return;
    if (ld->n_added == CONF_MAX_DIAGS) {
        snprintf(raw, sizeof(raw), "too many problems; the rest are not shown");
        line = INT_MAX; /* sorts last */
    } else {
        va_start(ap, fmt);
        vsnprintf(raw, sizeof(raw), fmt, ap);
        va_end(ap);
    }
    /* Messages never format a secret; redaction is the second fence, not the first. */
    log_redact(msg, sizeof(msg), raw);

    v = realloc(ld->diags->v, (ld->diags->n + 1) * sizeof(*v));
    if (!v) {
        ld->nomem = 1;
        return;
    }
    ld->diags->v = v;
    v += ld->diags->n;
    v->file = strdup(ld->file);
    v->msg = strdup(msg);
    v->line = line;
    if (!v->file || !v->msg) {
        free(v->file);
        free(v->msg);
        ld->nomem = 1;
        return;
    }
    ld->diags->n++;
    ld->n_added++;
}

/* Keeps the diagnostics of one load in file order (stable: equal lines keep their order). */
static void diags_sort(struct loader *ld)
{
    struct conf_diag *v = ld->diags->v;

    for (size_t i = ld->first + 1; i < ld->diags->n; i++) {
        struct conf_diag d = v[i];
        size_t j = i;
        while (j > ld->first && v[j - 1].line > d.line) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = d;
    }
    for (size_t i = ld->first; i < ld->diags->n; i++) {
        if (v[i].line == INT_MAX)
            v[i].line = 0;
    }
}

/* strdup() that records running out of memory. */
static char *str_dup(struct loader *ld, const char *s)
{
    char *d = strdup(s);

    if (!d)
        ld->nomem = 1;
    return d;
}

static void note_secret(struct loader *ld, const char *s)
{
    if (log_add_secret(s) < 0)
        ld->nomem = 1;
}

/*
 * A bounded, printable copy of a user-supplied (non-secret) string for a message. Known secrets
 * are redacted first: a secret pasted into the wrong setting would otherwise be cut short here
 * and no longer match when diag_add() redacts the whole message.
 */
static const char *printable(const char *s, char *buf, size_t len)
{
    char redacted[1024];
    size_t o = 0;

    log_redact(redacted, sizeof(redacted), s);
    s = redacted;
    for (; *s && o + 4 < len; s++)
        buf[o++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    if (*s) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

static int line_of(const config_setting_t *s)
{
    return s ? config_setting_source_line(s) : 0;
}

static const char *type_name(int type)
{
    switch (type) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a float";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_GROUP:
        return "a group";
    case CONFIG_TYPE_ARRAY:
        return "an array";
    case CONFIG_TYPE_LIST:
        return "a list";
    default:
        return "an unknown type";
    }
}

static size_t min3(size_t a, size_t b, size_t c)
{
    size_t m = a < b ? a : b;
    return m < c ? m : c;
}

/* Levenshtein distance, or SIZE_MAX for names too long to be a typo of ours. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[65];

    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            row[j] = min3(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1]));
            diag = up;
        }
    }
    return row[lb];
}

static void key_path(char *buf, size_t len, const char *group, const char *key)
{
    snprintf(buf, len, "%s%s%.64s", group, *group ? "." : "", key);
}

/* The name in keys nearest to name when it is close enough to be a typo of it, or NULL. */
static const char *key_suggest(const char *name, const char *const *keys, size_t n_keys)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;

    for (size_t k = 0; k < n_keys; k++) {
        size_t d = edit_distance(name, keys[k]);
        if (d < best_d) {
            best_d = d;
            best = keys[k];
        }
    }
    return best && best_d <= 2 && best_d < strlen(best) / 2 ? best : NULL;
}

static int key_in(const char *name, const char *const *keys, size_t n_keys)
{
    for (size_t k = 0; k < n_keys; k++) {
        if (strcmp(name, keys[k]) == 0)
            return 1;
    }
    return 0;
}

/*
 * Reports every member of grp whose name is not in keys: "not a key of OWNER" when it is in
 * foreign (a key of a sibling kind, e.g. another sink type), "unknown key" otherwise; both
 * suggest the nearest of keys when one is close.
 */
static void check_keys_of(struct loader *ld, const config_setting_t *grp, const char *gpath,
                          const char *const *keys, size_t n_keys, const char *const *foreign,
                          size_t n_foreign, const char *owner)
{
    int n = grp ? config_setting_length(grp) : 0;

    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(grp, (unsigned)i);
        const char *name = config_setting_name(s);
        const char *best;
        char path[160], hint[96] = "";

        if (!name || key_in(name, keys, n_keys))
            continue;
        best = key_suggest(name, keys, n_keys);
        if (best)
            snprintf(hint, sizeof(hint), " (did you mean %s?)", best);
        key_path(path, sizeof(path), gpath, name);
        if (owner && key_in(name, foreign, n_foreign))
            diag_add(ld, line_of(s), "%s: not a key of %s%s", path, owner, hint);
        else
            diag_add(ld, line_of(s), "%s: unknown key%s", path, hint);
    }
}

static void check_keys(struct loader *ld, const config_setting_t *grp, const char *gpath,
                       const char *const *keys, size_t n_keys)
{
    check_keys_of(ld, grp, gpath, keys, n_keys, NULL, 0, NULL);
}

/*
 * Returns the member key of grp when it has the wanted type (CONFIG_TYPE_INT also accepts a
 * 64-bit integer; CONFIG_TYPE_ARRAY also a list); NULL when absent or of another type
 * (reported).
 */
static const config_setting_t *member(struct loader *ld, const config_setting_t *grp,
                                      const char *gpath, const char *key, int want)
{
    const config_setting_t *s;
    char path[160];
    int type;

    if (!grp)
        return NULL;
    s = config_setting_get_member(grp, key);
    if (!s)
        return NULL;
    type = config_setting_type(s);
    if (type == want || (want == CONFIG_TYPE_INT && type == CONFIG_TYPE_INT64))
        return s;
    if (want == CONFIG_TYPE_LIST && type == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0)
        return s; /* "[]" is how many people write an empty list */
    if (want == CONFIG_TYPE_ARRAY && type == CONFIG_TYPE_LIST)
        return s; /* ("a", "b") for ["a", "b"]: libconfig's two spellings of a list of strings */
    key_path(path, sizeof(path), gpath, key);
    diag_add(ld, line_of(s), "%s: expected %s, got %s", path, type_name(want), type_name(type));
    return NULL;
}

static void get_int(struct loader *ld, const config_setting_t *grp, const char *gpath,
                    const char *key, long long min, long long max, long long *out)
{
    const config_setting_t *s = member(ld, grp, gpath, key, CONFIG_TYPE_INT);
    long long v;
    char path[160];

    if (!s)
        return;
    if (config_setting_type(s) == CONFIG_TYPE_INT64)
        v = config_setting_get_int64(s);
    else
        v = config_setting_get_int(s);
    if (v < min || v > max) {
        key_path(path, sizeof(path), gpath, key);
        diag_add(ld, line_of(s), "%s: must be between %lld and %lld (got %lld)", path, min, max, v);
        return;
    }
    *out = v;
}

static const char *get_string(struct loader *ld, const config_setting_t *grp, const char *gpath,
                              const char *key)
{
    const config_setting_t *s = member(ld, grp, gpath, key, CONFIG_TYPE_STRING);

    return s ? config_setting_get_string(s) : NULL;
}

/* Formats names as "a", "b" or "c" into buf. */
static const char *choice_list(const char *const *names, size_t n, char *buf, size_t len)
{
    size_t o = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s\"%s\"",
                              i == 0       ? ""
                              : i + 1 == n ? " or "
                                           : ", ",
                              names[i]);
    return buf;
}

/* Maps a string member onto the index of one of names; *out keeps its default when absent. */
static void get_choice(struct loader *ld, const config_setting_t *grp, const char *gpath,
                       const char *key, const char *const *names, size_t n, int *out)
{
    const char *v = get_string(ld, grp, gpath, key);
    char path[160], list[160], shown[80];

    if (!v)
        return;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = (int)i;
            return;
        }
    }
    key_path(path, sizeof(path), gpath, key);
    diag_add(ld, line_of(config_setting_get_member(grp, key)), "%s: must be %s (got \"%s\")", path,
             choice_list(names, n, list, sizeof(list)), printable(v, shown, sizeof(shown)));
}

/*
 * Returns the array (or list) member key of grp when it has at least one element; NULL when
 * absent or refused (reported; empty: "must name at least one WHAT"). Elements that are not
 * strings are reported here; callers skip them (config_setting_get_string() gives NULL).
 */
static const config_setting_t *get_strings(struct loader *ld, const config_setting_t *grp,
                                           const char *gpath, const char *key, const char *what)
{
    const config_setting_t *s = member(ld, grp, gpath, key, CONFIG_TYPE_ARRAY);
    char path[160];
    int n;

    if (!s)
        return NULL;
    key_path(path, sizeof(path), gpath, key);
    n = config_setting_length(s);
    if (n == 0) {
        diag_add(ld, line_of(s), "%s: must name at least one %s", path, what);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        int type = config_setting_type(e);
        if (type != CONFIG_TYPE_STRING)
            diag_add(ld, line_of(e) > 0 ? line_of(e) : line_of(s),
                     "%s[%d]: expected a string, got %s", path, i, type_name(type));
    }
    return s;
}

/* A malloc'ed path: absolute paths as given, relative ones against ld->dir. */
static char *path_resolve(struct loader *ld, const char *p)
{
    char *out;

    if (p[0] == '/' || !ld->dir)
        out = strdup(p);
    else if (asprintf(&out, "%s/%s", ld->dir, p) < 0)
        out = NULL;
    if (!out)
        ld->nomem = 1;
    return out;
}

/* Tokens travel in an HTTP header: anything that could split or corrupt it is refused. */
static int token_ok(const char *t)
{
    for (; *t; t++) {
        unsigned char c = (unsigned char)*t;
        if (c <= 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

/*
 * Whether the value of a *_file (or *_env) setting that names nothing looks like the secret
 * itself, pasted there by mistake: then the message must not repeat it. Asked only after the
 * file (variable) was not found, so a real path that happens to match is never refused. Flagged:
 * - the prefixes of the tokens this bridge is given: YouTrack "perm:"/"perm-", Slack "xapp-",
 *   "xoxb-", "xoxp-", Matrix "syt_", and "Bearer ";
 * - anything with "://": a path never holds one, and a webhook URL is itself a secret;
 * - a long (24+) word without '/' or whitespace that mixes upper case, lower case and digits
 *   and does not end like a file name (".txt", ".token"): random, not chosen by a person.
 * A short or word-like typo ("tokn.txt") is still shown: it is a path that is wrong, and
 * seeing it is how the operator finds the mistake.
 */
static int looks_like_secret(const char *v)
{
    static const char *const prefixes[] = {"perm:", "perm-", "xapp-",  "xoxb-",
                                           "xoxp-", "syt_",  "Bearer "};
    size_t n = strlen(v);
    int upper = 0, lower = 0, digit = 0;
    const char *dot = strrchr(v, '.');

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        if (strncmp(v, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    }
    if (strstr(v, "://"))
        return 1;
    if (n < 24 || strchr(v, '/'))
        return 0;
    /* A short alphabetic extension: a file name someone chose. */
    if (dot && strlen(dot + 1) >= 1 && strlen(dot + 1) <= 6) {
        int alpha = 1;
        for (const char *e = dot + 1; *e; e++)
            alpha &= (*e >= 'a' && *e <= 'z') || (*e >= 'A' && *e <= 'Z');
        if (alpha)
            return 0;
    }
    for (const char *c = v; *c; c++) {
        if ((unsigned char)*c <= 0x20)
            return 0;
        upper |= *c >= 'A' && *c <= 'Z';
        lower |= *c >= 'a' && *c <= 'z';
        digit |= *c >= '0' && *c <= '9';
    }
    return upper && lower && digit;
}

/* How a secret's value is checked once read. */
enum secret_kind {
    SECRET_TOKEN, /* sent in an HTTP header: token_ok() */
    SECRET_URL,   /* url_check() by the caller */
    SECRET_KEY,   /* any bytes but NUL (an HMAC key) */
};

/*
 * One secret setting KEY of a group, given inline (KEY), in a file (KEY_file) or in the
 * environment (KEY_env). Filled by secret_find(); read by secret_fetch().
 */
struct secret_src {
    const char *gpath; /* "youtrack", "sinks[2]" */
    const char *key;   /* "token", "webhook_url" */
    const char *noun;  /* "token", "URL": "the token in FILE contains ..." */
    enum secret_kind kind;
    const config_setting_t *given; /* the one of the three that is set */
    int which;                     /* 0: inline, 1: _file, 2: _env */
    int line;
    char label[160]; /* the setting given, "sinks[2].webhook_url_file", for messages */
};

static void secret_free(char *s)
{
    if (!s)
        return;
    /* Not a guarantee (copies live elsewhere), but no stale secret lingers in freed heap. */
    memset(s, 0, strlen(s));
    free(s);
}

/*
 * Finds which of KEY, KEY_file and KEY_env grp sets; an inline value is registered with the
 * logger at once, even when it is refused or unused. Returns 1 (src->given set), 0 when none
 * is set, -1 when more than one is or one is not a string (reported).
 */
static int secret_find(struct loader *ld, const config_setting_t *grp, struct secret_src *src)
{
    char keys[3][64];
    const config_setting_t *given[3];
    const char *names[3];
    int n = 0, typed = 1;

    snprintf(keys[0], sizeof(keys[0]), "%s", src->key);
    snprintf(keys[1], sizeof(keys[1]), "%s_file", src->key);
    snprintf(keys[2], sizeof(keys[2]), "%s_env", src->key);
    src->line = 0;
    for (int i = 0; i < 3; i++) {
        const config_setting_t *s = grp ? config_setting_get_member(grp, keys[i]) : NULL;
        given[i] = s;
        if (!s)
            continue;
        names[n++] = keys[i];
        if (line_of(s) > src->line)
            src->line = line_of(s);
        if (!member(ld, grp, src->gpath, keys[i], CONFIG_TYPE_STRING))
            typed = 0;
        else if (i == 0)
            note_secret(ld, config_setting_get_string(s));
    }
    if (n == 2)
        diag_add(ld, src->line, "%s: %s and %s are mutually exclusive (set only one)", src->gpath,
                 names[0], names[1]);
    else if (n == 3)
        diag_add(ld, src->line, "%s: %s, %s and %s are mutually exclusive (set only one)",
                 src->gpath, keys[0], keys[1], keys[2]);
    if (n == 0)
        return 0;
    if (n > 1 || !typed)
        return -1;
    for (int i = 0; i < 3; i++) {
        if (given[i]) {
            src->given = given[i];
            src->which = i;
            key_path(src->label, sizeof(src->label), src->gpath, keys[i]);
        }
    }
    return 1;
}

/*
 * Reports a *_file/_env value that looks_like_secret() without repeating it (it is registered
 * as a secret, so no later line shows it either). what: "path" or "variable name".
 */
static void secret_misplaced(struct loader *ld, const struct secret_src *src, const char *value,
                             const char *what, const char *fix)
{
    note_secret(ld, value);
    diag_add(ld, src->line, "%s: the value looks like a %s, not a %s; %s", src->label, src->noun,
             what, fix);
}

static void secret_missing(struct loader *ld, int line, const struct secret_src *src)
{
    diag_add(ld, line, "%s: missing %s (set %s, %s_file or %s_env)", src->gpath, src->key, src->key,
             src->key, src->key);
}

/*
 * Checks a secret read from where (a file or variable name for messages; NULL: inline) by its
 * kind and stores a copy in *out. 0 or -1 (reported).
 */
static int secret_accept(struct loader *ld, const struct secret_src *src, const char *v,
                         const char *where, char **out)
{
    if (src->kind == SECRET_TOKEN && !token_ok(v)) {
        if (where)
            diag_add(ld, src->line, "%s: the %s in %s contains whitespace or control characters",
                     src->label, src->noun, where);
        else
            diag_add(ld, src->line, "%s: contains whitespace or control characters", src->label);
        return -1;
    }
    *out = strdup(v);
    if (!*out) {
        ld->nomem = 1;
        return -1;
    }
    return 0;
}

/* Reads the file named by setting into *out (malloc'ed); 0 or -1 (reported). */

/*
 * Whether a secret file is readable by someone else. Group read is fine when the group is one
 * of ours and others cannot read: that is how Kubernetes mounts secrets with fsGroup.
 */
static int exposed(const struct stat *st)
{
    if (st->st_mode & 007)
        return 1;
    if (!(st->st_mode & 070))
        return 0;
    if (st->st_gid == getegid())
        return 0;
    gid_t groups[256];
    int n = getgroups(256, groups);
    for (int i = 0; i < n; i++) {
        if (groups[i] == st->st_gid)
            return 0;
    }
    return 1;
}

static int secret_file_read(struct loader *ld, const struct secret_src *src, const char *setting,
                            char **out)
{
    const char *label = src->label;
    char shown[300], *path = NULL, *buf = NULL;
    int line = src->line, fd = -1, r = -1;
    size_t n = 0;
    struct stat st;

    if (!*setting) {
        diag_add(ld, line, "%s: must not be empty", label);
        return -1;
    }
    path = path_resolve(ld, setting);
    if (!path)
        goto out;
    printable(path, shown, sizeof(shown));
    /* stat before open: opening a device node (a FIFO, /dev/watchdog) can block or act. */
    if (stat(path, &st) != 0) {
        if (looks_like_secret(setting)) {
            char fix[96];
            snprintf(fix, sizeof(fix), "put the %s in a file and name the file here", src->noun);
            secret_misplaced(ld, src, setting, "path", fix);
        } else {
            diag_add(ld, line, "%s: cannot read %s: %s", label, shown, strerror(errno));
        }
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        diag_add(ld, line, "%s: %s is not a regular file", label, shown);
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0) {
        diag_add(ld, line, "%s: cannot read %s: %s", label, shown, strerror(errno));
        goto out;
    }
    buf = malloc(TOKEN_FILE_MAX + 2);
    if (!buf) {
        ld->nomem = 1;
        goto out;
    }
    while (n <= TOKEN_FILE_MAX) {
        ssize_t k = read(fd, buf + n, TOKEN_FILE_MAX + 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            diag_add(ld, line, "%s: cannot read %s: %s", label, shown, strerror(errno));
            goto out;
        }
        if (k == 0)
            break;
        n += (size_t)k;
    }
    if (n > TOKEN_FILE_MAX) {
        diag_add(ld, line, "%s: %s is larger than %d KiB", label, shown, TOKEN_FILE_MAX / 1024);
        goto out;
    }
    buf[n] = '\0';
    while (n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = '\0';
    note_secret(ld, buf);
    if (n == 0) {
        diag_add(ld, line, "%s: %s is empty", label, shown);
        goto out;
    }
    /* A NUL would silently cut the secret short. */
    if (memchr(buf, '\0', n)) {
        diag_add(ld, line, "%s: the %s in %s contains whitespace or control characters", label,
                 src->noun, shown);
        goto out;
    }
    if (secret_accept(ld, src, buf, shown, out) < 0)
        goto out;
    if (exposed(&st))
        log_warn("conf", "%s:%d: %s: %s file %s is readable by group or others (chmod 600)",
                 ld->file, line, label, src->noun, shown);
    r = 0;
out:
    if (fd >= 0)
        close(fd);
    if (buf) {
        memset(buf, 0, n); /* not NUL-terminated on every path: not secret_free() */
        free(buf);
    }
    free(path);
    return r;
}

/*
 * Reads the secret secret_find() found into *out (malloc'ed; registered with the logger).
 * 0 or -1 (reported).
 */
static int secret_fetch(struct loader *ld, const struct secret_src *src, char **out)
{
    const char *v = config_setting_get_string(src->given), *t;
    char shown[80];

    if (src->which == 1)
        return secret_file_read(ld, src, v, out);
    if (!*v) {
        diag_add(ld, src->line, "%s: must not be empty", src->label);
        return -1;
    }
    if (src->which == 0)
        return secret_accept(ld, src, v, NULL, out);
    printable(v, shown, sizeof(shown));
    t = getenv(v);
    if (!t || !*t) {
        char fix[96];
        snprintf(fix, sizeof(fix), "put the %s in a variable and name the variable here",
                 src->noun);
        if (looks_like_secret(v))
            secret_misplaced(ld, src, v, "variable name", fix);
        else
            diag_add(ld, src->line, "%s: environment variable %s is not set or empty", src->label,
                     shown);
        return -1;
    }
    note_secret(ld, t);
    return secret_accept(ld, src, t, shown, out);
}

static void load_token(struct loader *ld, const config_setting_t *yt, struct conf *c)
{
    struct secret_src src = {
        .gpath = "youtrack", .key = "token", .noun = "token", .kind = SECRET_TOKEN};
    const char *env = getenv("YTBRIDGE_YOUTRACK_TOKEN");
    int found = secret_find(ld, yt, &src);

    if (env && *env) {
        note_secret(ld, env);
        if (!token_ok(env)) {
            diag_add(ld, 0, "YTBRIDGE_YOUTRACK_TOKEN: contains whitespace or control characters");
            return;
        }
        c->youtrack.token = strdup(env);
        if (!c->youtrack.token)
            ld->nomem = 1;
        return;
    }
    if (found == 0)
        diag_add(ld, line_of(yt),
                 "youtrack: missing token (set token, token_file or token_env, or "
                 "YTBRIDGE_YOUTRACK_TOKEN)");
    else if (found == 1)
        secret_fetch(ld, &src, &c->youtrack.token);
}

enum {
    URL_ENDPOINT = 1,    /* posted to as given: a query is allowed, a trailing '/' kept */
    URL_INSECURE_OK = 2, /* allow_insecure: plain http:// to any host */
};

/*
 * Checks url (label names it in messages; the URL itself never appears there, it may be a
 * secret) and stores a copy in *out, without trailing '/' unless URL_ENDPOINT. cred names the
 * setting that carries this host's credential ("token"), or is NULL when the URL is the secret.
 * The URL is read by url_parse(), the way the transfers that use it will read it.
 */
static void url_check(struct loader *ld, int line, const char *label, const char *url,
                      unsigned flags, const char *cred, char **out)
{
    struct url u;
    enum url_error e = url_parse(url, URL_HTTP, &u);
    size_t len;

    if (e == URL_ERR_NOMEM) {
        ld->nomem = 1;
        return;
    }
    if (e != URL_OK) {
        diag_add(ld, line, "%s: %s", label,
                 e == URL_ERR_SCHEME ? "must be an https:// or http:// URL" : url_strerror(e));
        return;
    }
    if (u.userinfo) {
        note_secret(ld, u.userinfo);
        if (cred)
            diag_add(ld, line, "%s: credentials in the URL are not allowed; use %s", label, cred);
        else
            diag_add(ld, line, "%s: credentials in the URL are not allowed", label);
    } else if (flags & URL_ENDPOINT ? u.fragment : u.query || u.fragment) {
        diag_add(ld, line, "%s: must not contain a %s", label,
                 flags & URL_ENDPOINT ? "fragment" : "query or fragment");
    } else if (!u.tls && !(flags & URL_INSECURE_OK) && !url_is_loopback(&u)) {
        diag_add(ld, line,
                 "%s: plain http:// to a non-loopback host sends the %s in clear text; use "
                 "https:// or set allow_insecure = true",
                 label, cred ? cred : "secret URL");
    } else {
        /* Only a path can end in '/' here (no query, no fragment). */
        len = strlen(url);
        while (!(flags & URL_ENDPOINT) && url[len - 1] == '/')
            len--;
        *out = strndup(url, len);
        if (!*out)
            ld->nomem = 1;
    }
    url_fini(&u);
}

static void load_youtrack(struct loader *ld, const config_setting_t *root, struct conf *c)
{
    static const char *const keys[] = {"url",     "token",          "token_file", "token_env",
                                       "api",     "poll_interval",  "page_size",  "timeout",
                                       "ca_file", "allow_insecure", "max_body"};
    static const char *const apis[] = {"auto", "api", "legacy"};
    const config_setting_t *yt = member(ld, root, "", "youtrack", CONFIG_TYPE_GROUP);
    const config_setting_t *s;
    const char *env_url = getenv("YTBRIDGE_YOUTRACK_URL");
    const char *url, *ca;
    long long v;
    int api = CONF_API_AUTO;
    unsigned insecure;

    check_keys(ld, yt, "youtrack", keys, sizeof(keys) / sizeof(keys[0]));

    s = member(ld, yt, "youtrack", "allow_insecure", CONFIG_TYPE_BOOL);
    if (s)
        c->youtrack.allow_insecure = config_setting_get_bool(s) ? 1 : 0;

    insecure = c->youtrack.allow_insecure ? URL_INSECURE_OK : 0;
    url = get_string(ld, yt, "youtrack", "url");
    if (env_url && *env_url)
        url_check(ld, 0, "youtrack.url (from YTBRIDGE_YOUTRACK_URL)", env_url, insecure, "token",
                  &c->youtrack.url);
    else if (url)
        url_check(ld, line_of(config_setting_get_member(yt, "url")), "youtrack.url", url, insecure,
                  "token", &c->youtrack.url);
    else if (!yt || !config_setting_get_member(yt, "url"))
        diag_add(ld, line_of(yt), "youtrack: missing url (set url or YTBRIDGE_YOUTRACK_URL)");

    load_token(ld, yt, c);

    get_choice(ld, yt, "youtrack", "api", apis, 3, &api);
    c->youtrack.api = (enum conf_api)api;

    v = c->youtrack.poll_interval;
    get_int(ld, yt, "youtrack", "poll_interval", 10, 86400, &v);
    c->youtrack.poll_interval = (int)v;
    v = c->youtrack.page_size;
    get_int(ld, yt, "youtrack", "page_size", 1, 10000, &v);
    c->youtrack.page_size = (int)v;
    v = c->youtrack.timeout;
    get_int(ld, yt, "youtrack", "timeout", 1, 600, &v);
    c->youtrack.timeout = (int)v;
    v = c->youtrack.max_body;
    get_int(ld, yt, "youtrack", "max_body", 1024, 1073741824, &v);
    c->youtrack.max_body = (long)v;

    ca = get_string(ld, yt, "youtrack", "ca_file");
    if (ca && *ca) {
        int line = line_of(config_setting_get_member(yt, "ca_file"));
        char shown[300];
        struct stat st;

        c->youtrack.ca_file = path_resolve(ld, ca);
        if (!c->youtrack.ca_file)
            return;
        printable(c->youtrack.ca_file, shown, sizeof(shown));
        int missing = stat(c->youtrack.ca_file, &st) != 0, err = errno;
        if (missing && looks_like_secret(ca)) {
            /* The token pasted one line too low: do not print it. */
            note_secret(ld, ca);
            diag_add(ld, line,
                     "youtrack.ca_file: the value looks like a token, not a path; name "
                     "a CA bundle file here");
        } else if (missing || access(c->youtrack.ca_file, R_OK) != 0) {
            diag_add(ld, line, "youtrack.ca_file: cannot read %s: %s", shown,
                     strerror(missing ? err : errno));
        } else if (!S_ISREG(st.st_mode)) {
            diag_add(ld, line, "youtrack.ca_file: %s is not a regular file", shown);
        }
    }
}

static void load_notify(struct loader *ld, const config_setting_t *root, struct conf *c)
{
    static const char *const keys[] = {
        "first_run", "removal_confirmations", "mass_removal_limit", "digest_threshold",
        "max_age",   "shutdown_grace"};
    static const char *const first_runs[] = {"baseline", "announce"};
    const config_setting_t *g = member(ld, root, "", "notify", CONFIG_TYPE_GROUP);
    int first_run = CONF_FIRST_RUN_BASELINE;
    long long v;

    check_keys(ld, g, "notify", keys, sizeof(keys) / sizeof(keys[0]));
    get_choice(ld, g, "notify", "first_run", first_runs, 2, &first_run);
    c->notify.first_run = (enum conf_first_run)first_run;
    v = c->notify.removal_confirmations;
    get_int(ld, g, "notify", "removal_confirmations", 1, 100, &v);
    c->notify.removal_confirmations = (int)v;
    v = c->notify.mass_removal_limit;
    get_int(ld, g, "notify", "mass_removal_limit", 0, 1000000, &v);
    c->notify.mass_removal_limit = (int)v;
    v = c->notify.digest_threshold;
    get_int(ld, g, "notify", "digest_threshold", 1, 1000, &v);
    c->notify.digest_threshold = (int)v;
    v = c->notify.max_age;
    get_int(ld, g, "notify", "max_age", 60, 2592000, &v);
    c->notify.max_age = (int)v;
    v = c->notify.shutdown_grace;
    get_int(ld, g, "notify", "shutdown_grace", 0, 300, &v);
    c->notify.shutdown_grace = (int)v;
}

/* Indexed by enum conf_sink_type. */
static const char *const sink_types[] = {"stdout", "slack", "matrix", "webhook", "hookshot"};

const char *conf_sink_type_name(enum conf_sink_type t)
{
    if ((unsigned)t >= sizeof(sink_types) / sizeof(sink_types[0]))
        return "unknown";
    return sink_types[t];
}

#define SINK_T(t)   (1u << (t))
#define SINK_ANY    0x1fu
#define SINK_REMOTE (SINK_ANY & ~SINK_T(CONF_SINK_STDOUT))

/* Every key of a sink group and the types that accept it. */
static const struct {
    const char *key;
    unsigned types; /* SINK_T(enum conf_sink_type) bits */
} sink_keys[] = {
    {"name", SINK_ANY},
    {"type", SINK_ANY},
    {"events", SINK_ANY},
    {"projects", SINK_ANY},
    {"alerts", SINK_ANY},
    {"format", SINK_T(CONF_SINK_STDOUT)},
    {"webhook_url", SINK_T(CONF_SINK_SLACK)},
    {"webhook_url_file", SINK_T(CONF_SINK_SLACK)},
    {"webhook_url_env", SINK_T(CONF_SINK_SLACK)},
    {"homeserver", SINK_T(CONF_SINK_MATRIX)},
    {"room", SINK_T(CONF_SINK_MATRIX)},
    {"access_token", SINK_T(CONF_SINK_MATRIX)},
    {"access_token_file", SINK_T(CONF_SINK_MATRIX)},
    {"access_token_env", SINK_T(CONF_SINK_MATRIX)},
    {"url", SINK_T(CONF_SINK_WEBHOOK) | SINK_T(CONF_SINK_HOOKSHOT)},
    {"url_file", SINK_T(CONF_SINK_WEBHOOK) | SINK_T(CONF_SINK_HOOKSHOT)},
    {"url_env", SINK_T(CONF_SINK_WEBHOOK) | SINK_T(CONF_SINK_HOOKSHOT)},
    {"secret", SINK_T(CONF_SINK_WEBHOOK)},
    {"secret_file", SINK_T(CONF_SINK_WEBHOOK)},
    {"secret_env", SINK_T(CONF_SINK_WEBHOOK)},
    {"allow_insecure", SINK_REMOTE},
};

#define SINK_N_TYPES (sizeof(sink_types) / sizeof(sink_types[0]))
#define SINK_N_KEYS  (sizeof(sink_keys) / sizeof(sink_keys[0]))

_Static_assert(sizeof(sink_types) / sizeof(sink_types[0]) == CONF_SINK_HOOKSHOT + 1,
               "sink_types follows enum conf_sink_type");
_Static_assert(CONF_EVENTS_ALL == (1u << (CHANGE_REMOVED + 1)) - 1,
               "CONF_EVENTS_ALL has one bit per enum change_kind");

/* Unknown keys and keys of another type; type < 0 (missing or invalid): any sink key is fine. */
static void check_sink_keys(struct loader *ld, const config_setting_t *g, const char *path,
                            int type)
{
    const char *valid[SINK_N_KEYS], *foreign[SINK_N_KEYS];
    size_t n_valid = 0, n_foreign = 0;
    char owner[32];

    for (size_t i = 0; i < SINK_N_KEYS; i++) {
        if (type < 0 || (sink_keys[i].types & SINK_T(type)))
            valid[n_valid++] = sink_keys[i].key;
        else
            foreign[n_foreign++] = sink_keys[i].key;
    }
    snprintf(owner, sizeof(owner), "a %s sink", type < 0 ? "" : sink_types[type]);
    check_keys_of(ld, g, path, valid, n_valid, foreign, n_foreign, type < 0 ? NULL : owner);
}

static int sink_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > SINK_NAME_MAX)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

static void load_sink_name(struct loader *ld, const config_setting_t *g, const char *path,
                           struct conf *c, int i)
{
    const config_setting_t *s = config_setting_get_member(g, "name");
    const char *name = get_string(ld, g, path, "name");
    char shown[80];

    if (!s) {
        diag_add(ld, line_of(g), "%s: missing name", path);
        return;
    }
    if (!name)
        return;
    if (!sink_name_ok(name)) {
        diag_add(ld, line_of(s), "%s.name: \"%s\" must be 1 to %d of A-Z a-z 0-9 _ . -", path,
                 printable(name, shown, sizeof(shown)), SINK_NAME_MAX);
        return;
    }
    for (int j = 0; j < i; j++) {
        if (c->sinks[j].name && strcmp(c->sinks[j].name, name) == 0) {
            diag_add(ld, line_of(s), "%s.name: \"%s\" is already used by sinks[%d]", path, name, j);
            break;
        }
    }
    c->sinks[i].name = str_dup(ld, name);
}

static void load_sink_events(struct loader *ld, const config_setting_t *g, const char *path,
                             struct conf_sink *sink)
{
    /* In the order the documentation lists them. */
    static const char *const names[] = {"created", "removed", "renamed", "archived", "unarchived"};
    static const enum change_kind kinds[] = {CHANGE_CREATED, CHANGE_REMOVED, CHANGE_RENAMED,
                                             CHANGE_ARCHIVED, CHANGE_UNARCHIVED};
    const config_setting_t *s = get_strings(ld, g, path, "events", "event");
    char list[160], shown[80];
    unsigned events = 0;
    int n = s ? config_setting_length(s) : 0;

    if (!s)
        return;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *v = config_setting_get_string(e);
        size_t k = 0;

        if (!v)
            continue;
        while (k < 5 && strcmp(v, names[k]) != 0)
            k++;
        if (k < 5)
            events |= 1u << kinds[k];
        else
            diag_add(ld, line_of(e) > 0 ? line_of(e) : line_of(s),
                     "%s.events[%d]: must be %s (got \"%s\")", path, i,
                     choice_list(names, 5, list, sizeof(list)), printable(v, shown, sizeof(shown)));
    }
    sink->events = events;
}

/* sink->projects has room for it. 0 or -1 (out of memory). */
static int sink_add_project(struct loader *ld, struct conf_sink *sink, const char *pattern)
{
    char *p = str_dup(ld, pattern);

    if (!p)
        return -1;
    sink->projects[sink->n_projects++] = p;
    return 0;
}

/* The default of projects: every project. */
static void sink_all_projects(struct loader *ld, struct conf_sink *sink)
{
    sink->projects = calloc(1, sizeof(*sink->projects));
    if (!sink->projects)
        ld->nomem = 1;
    else
        sink_add_project(ld, sink, "*");
}

static void load_sink_projects(struct loader *ld, const config_setting_t *g, const char *path,
                               struct conf_sink *sink)
{
    const config_setting_t *s;
    int n;

    if (!config_setting_get_member(g, "projects")) {
        sink_all_projects(ld, sink);
        return;
    }
    s = get_strings(ld, g, path, "projects", "pattern");
    n = s ? config_setting_length(s) : 0;
    if (!s)
        return;
    sink->projects = calloc((size_t)n, sizeof(*sink->projects));
    if (!sink->projects) {
        ld->nomem = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *v = config_setting_get_string(e);
        int line = line_of(e) > 0 ? line_of(e) : line_of(s);

        if (!v)
            continue;
        if (!*v)
            diag_add(ld, line, "%s.projects[%d]: must not be empty", path, i);
        else if (strlen(v) > PROJECT_PATTERN_MAX)
            diag_add(ld, line, "%s.projects[%d]: longer than %d bytes", path, i,
                     PROJECT_PATTERN_MAX);
        else if (strcmp(v, "!") == 0)
            diag_add(ld, line, "%s.projects[%d]: \"!\" must be followed by a pattern", path, i);
        else if (sink_add_project(ld, sink, v) < 0)
            return;
    }
}

/* A URL that is itself a secret (Slack, webhook, hookshot): KEY, KEY_file or KEY_env. */
static void load_sink_url(struct loader *ld, const config_setting_t *g, const char *path,
                          const char *key, struct conf_sink *sink)
{
    struct secret_src src = {.gpath = path, .key = key, .noun = "URL", .kind = SECRET_URL};
    char *raw = NULL;
    int found = secret_find(ld, g, &src);

    if (found == 0)
        secret_missing(ld, line_of(g), &src);
    if (found != 1 || secret_fetch(ld, &src, &raw) < 0)
        return;
    url_check(ld, src.line, src.label, raw,
              URL_ENDPOINT | (sink->allow_insecure ? URL_INSECURE_OK : 0u), NULL, &sink->url);
    secret_free(raw);
}

static void load_sink_matrix(struct loader *ld, const config_setting_t *g, const char *path,
                             struct conf_sink *sink)
{
    struct secret_src src = {
        .gpath = path, .key = "access_token", .noun = "access token", .kind = SECRET_TOKEN};
    const char *hs = get_string(ld, g, path, "homeserver");
    const char *room = get_string(ld, g, path, "room");
    int line = line_of(config_setting_get_member(g, "room"));
    char label[160], shown[80];
    int found;

    if (!config_setting_get_member(g, "homeserver")) {
        diag_add(ld, line_of(g), "%s: missing homeserver", path);
    } else if (hs) {
        key_path(label, sizeof(label), path, "homeserver");
        url_check(ld, line_of(config_setting_get_member(g, "homeserver")), label, hs,
                  sink->allow_insecure ? URL_INSECURE_OK : 0u, "access_token", &sink->homeserver);
    }

    if (!config_setting_get_member(g, "room")) {
        diag_add(ld, line_of(g), "%s: missing room", path);
    } else if (room) {
        const char *colon = strchr(room, ':');
        if ((room[0] != '!' && room[0] != '#') || room[1] == '\0')
            diag_add(ld, line,
                     "%s.room: must be a room id \"!id:server\" or an alias \"#alias:server\" "
                     "(got \"%s\")",
                     path, printable(room, shown, sizeof(shown)));
        else if (strlen(room) > MATRIX_ROOM_MAX)
            diag_add(ld, line, "%s.room: longer than %d bytes", path, MATRIX_ROOM_MAX);
        else if (!token_ok(room))
            diag_add(ld, line, "%s.room: contains whitespace or control characters", path);
        else if (room[0] == '#' && (!colon || colon == room + 1 || colon[1] == '\0'))
            /* Room ids need not name a server (room version 12); aliases always do. */
            diag_add(ld, line, "%s.room: an alias must be \"#alias:server\" (got \"%s\")", path,
                     printable(room, shown, sizeof(shown)));
        else
            sink->room = str_dup(ld, room);
    }

    found = secret_find(ld, g, &src);
    if (found == 0)
        secret_missing(ld, line_of(g), &src);
    else if (found == 1)
        secret_fetch(ld, &src, &sink->access_token);
}

static void load_sink(struct loader *ld, const config_setting_t *g, const char *path,
                      struct conf *c, int i)
{
    static const char *const formats[] = {"text", "json"};
    struct conf_sink *sink = &c->sinks[i];
    const config_setting_t *s;
    int type = -1, format = LOG_FORMAT_TEXT;

    if (!config_setting_get_member(g, "type"))
        diag_add(ld, line_of(g), "%s: missing type", path);
    else
        get_choice(ld, g, path, "type", sink_types, SINK_N_TYPES, &type);
    check_sink_keys(ld, g, path, type);
    load_sink_name(ld, g, path, c, i);
    load_sink_events(ld, g, path, sink);
    load_sink_projects(ld, g, path, sink);
    s = member(ld, g, path, "alerts", CONFIG_TYPE_BOOL);
    if (s)
        sink->alerts = config_setting_get_bool(s) ? 1 : 0;
    if (type < 0)
        return; /* reported; its type's keys cannot be checked */
    sink->type = (enum conf_sink_type)type;
    if (type != CONF_SINK_STDOUT) {
        s = member(ld, g, path, "allow_insecure", CONFIG_TYPE_BOOL);
        if (s)
            sink->allow_insecure = config_setting_get_bool(s) ? 1 : 0;
    }

    switch (sink->type) {
    case CONF_SINK_STDOUT:
        get_choice(ld, g, path, "format", formats, 2, &format);
        sink->format = (enum log_format)format;
        break;
    case CONF_SINK_SLACK:
        load_sink_url(ld, g, path, "webhook_url", sink);
        break;
    case CONF_SINK_MATRIX:
        load_sink_matrix(ld, g, path, sink);
        break;
    case CONF_SINK_WEBHOOK: {
        struct secret_src src = {
            .gpath = path, .key = "secret", .noun = "secret", .kind = SECRET_KEY};
        load_sink_url(ld, g, path, "url", sink);
        if (secret_find(ld, g, &src) == 1)
            secret_fetch(ld, &src, &sink->secret);
        break;
    }
    case CONF_SINK_HOOKSHOT:
        load_sink_url(ld, g, path, "url", sink);
        break;
    }
}

/* What every sink starts with (projects is filled by load_sink_projects()). */
static void sink_defaults(struct conf_sink *sink)
{
    sink->events = CONF_EVENTS_ALL;
    sink->alerts = 1;
    sink->format = LOG_FORMAT_TEXT;
}

static void load_sinks(struct loader *ld, const config_setting_t *root, struct conf *c)
{
    const config_setting_t *list = member(ld, root, "", "sinks", CONFIG_TYPE_LIST);
    int n = list ? config_setting_length(list) : 0;
    char path[32];

    if (n > CONF_MAX_SINKS) {
        diag_add(ld, line_of(list), "sinks: at most %d sinks are supported (got %d)",
                 CONF_MAX_SINKS, n);
        return;
    }
    c->sinks = calloc(n > 0 ? (size_t)n : 1, sizeof(*c->sinks));
    if (!c->sinks) {
        ld->nomem = 1;
        return;
    }
    if (n == 0) {
        struct conf_sink *sink = &c->sinks[c->n_sinks++];
        sink_defaults(sink);
        sink->name = str_dup(ld, "stdout");
        sink_all_projects(ld, sink);
        return;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        struct conf_sink *sink = &c->sinks[c->n_sinks++];

        sink_defaults(sink);
        sink->line = line_of(g);
        snprintf(path, sizeof(path), "sinks[%d]", i);
        if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
            diag_add(ld, line_of(g), "%s: expected a group, got %s", path,
                     type_name(config_setting_type(g)));
            continue;
        }
        load_sink(ld, g, path, c, i);
    }
}

static void load_log(struct loader *ld, const config_setting_t *root, struct conf *c)
{
    static const char *const keys[] = {"level", "format"};
    const config_setting_t *g = member(ld, root, "", "log", CONFIG_TYPE_GROUP);
    const char *level = get_string(ld, g, "log", "level");
    const char *format = get_string(ld, g, "log", "format");
    char shown[80];

    check_keys(ld, g, "log", keys, sizeof(keys) / sizeof(keys[0]));
    if (level && log_level_parse(level, &c->log.level) == 0)
        c->log.level_set = 1;
    else if (level)
        diag_add(ld, line_of(config_setting_get_member(g, "level")),
                 "log.level: must be \"error\", \"warn\", \"info\" or \"debug\" (got \"%s\")",
                 printable(level, shown, sizeof(shown)));
    if (format && log_format_parse(format, &c->log.format) == 0)
        c->log.format_set = 1;
    else if (format)
        diag_add(ld, line_of(config_setting_get_member(g, "format")),
                 "log.format: must be \"text\" or \"json\" (got \"%s\")",
                 printable(format, shown, sizeof(shown)));
}

/* Registers the secret given inline or through KEY_env of grp, if any, without checking it. */
static void note_secret_early(struct loader *ld, const config_setting_t *grp, const char *key)
{
    const config_setting_t *s = config_setting_get_member(grp, key);
    const char *v, *env;
    char env_key[64];

    v = s ? config_setting_get_string(s) : NULL;
    if (v)
        note_secret(ld, v);
    snprintf(env_key, sizeof(env_key), "%s_env", key);
    s = config_setting_get_member(grp, env_key);
    v = s ? config_setting_get_string(s) : NULL;
    env = v && *v ? getenv(v) : NULL;
    if (env && *env)
        note_secret(ld, env);
}

/*
 * Registers every inline and environment secret before any message is made: a secret pasted
 * into another setting, or read after the setting that quotes it, is then redacted as well.
 * Secrets in files are registered when read.
 */
static void note_secrets_early(struct loader *ld, const config_setting_t *root)
{
    static const char *const sink_secrets[] = {"webhook_url", "url", "secret", "access_token"};
    const config_setting_t *yt = config_setting_get_member(root, "youtrack");
    const config_setting_t *list = config_setting_get_member(root, "sinks");
    int n = list && config_setting_is_list(list) ? config_setting_length(list) : 0;

    const config_setting_t *chat = config_setting_get_member(root, "chat");
    const config_setting_t *cs;

    if (yt && config_setting_is_group(yt))
        note_secret_early(ld, yt, "token");
    cs = chat && config_setting_is_group(chat) ? config_setting_get_member(chat, "slack") : NULL;
    if (cs && config_setting_is_group(cs))
        note_secret_early(ld, cs, "app_token");
    cs = chat && config_setting_is_group(chat) ? config_setting_get_member(chat, "matrix") : NULL;
    if (cs && config_setting_is_group(cs))
        note_secret_early(ld, cs, "access_token");
    for (int i = 0; i < n && i < CONF_MAX_SINKS; i++) {
        const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        if (!config_setting_is_group(g))
            continue;
        for (size_t k = 0; k < sizeof(sink_secrets) / sizeof(sink_secrets[0]); k++)
            note_secret_early(ld, g, sink_secrets[k]);
    }
}

/*
 * "IPV4:PORT" or "[IPV6]:PORT" with PORT 0..65535; "" disables. An address, never a name: the
 * server binds exactly one address (a name could resolve to several, or to nothing at start).
 */
static int listen_ok(const char *v)
{
    const char *colon = strrchr(v, ':');
    char host[INET6_ADDRSTRLEN + 1];
    unsigned char addr[sizeof(struct in6_addr)];
    char *end;
    if (!colon || colon == v)
        return 0;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 0 || port > 65535)
        return 0;
    size_t l = (size_t)(colon - v);
    if (v[0] == '[') {
        if (colon[-1] != ']' || l < 3 || l - 2 >= sizeof(host))
            return 0;
        memcpy(host, v + 1, l - 2);
        host[l - 2] = '\0';
        return inet_pton(AF_INET6, host, addr) == 1;
    }
    if (l >= sizeof(host))
        return 0;
    memcpy(host, v, l);
    host[l] = '\0';
    return inet_pton(AF_INET, host, addr) == 1; /* a bare IPv6 address needs brackets */
}

static void load_http(struct loader *ld, const config_setting_t *root, struct conf *c)
{
    static const char *const keys[] = {"listen"};
    const config_setting_t *g = member(ld, root, "", "http", CONFIG_TYPE_GROUP);
    const char *listen = get_string(ld, g, "http", "listen");
    char shown[80];

    check_keys(ld, g, "http", keys, sizeof(keys) / sizeof(keys[0]));
    if (listen && *listen && !listen_ok(listen))
        diag_add(
            ld, line_of(config_setting_get_member(g, "listen")),
            "http.listen: must be IPV4:PORT or [IPV6]:PORT (an address, not a name), or \"\" to "
            "disable (got \"%s\")",
            printable(listen, shown, sizeof(shown)));
    c->http.listen = strdup(listen ? listen : "127.0.0.1:9464");
    if (!c->http.listen)
        ld->nomem = 1;
}

/* Slack ids: "C0123ABCD", "U024BE7LH", "W..." (names change; ids do not). */
static int slack_id_ok(const char *v)
{
    size_t n = strlen(v);
    if (n < 2 || n > 32)
        return 0;
    for (; *v; v++) {
        if (!((*v >= 'A' && *v <= 'Z') || (*v >= '0' && *v <= '9')))
            return 0;
    }
    return 1;
}

/* Matrix ids with a sigil: "!room:server" (ids need no server from room version 12), "@u:s". */
static int matrix_room_id_ok(const char *v)
{
    return v[0] == '!' && v[1] && strlen(v) <= MATRIX_ROOM_MAX && token_ok(v);
}

static int matrix_user_id_ok(const char *v)
{
    const char *colon = strchr(v, ':');
    return v[0] == '@' && colon && colon > v + 1 && colon[1] && strlen(v) <= 255 && token_ok(v);
}

/*
 * A list of ids under key (absent or empty: *n stays 0). Each element must pass ok; hint says
 * what a valid one looks like.
 */
static void load_id_list(struct loader *ld, const config_setting_t *g, const char *gpath,
                         const char *key, int (*ok)(const char *), const char *hint, char ***out,
                         size_t *n_out)
{
    const config_setting_t *s = member(ld, g, gpath, key, CONFIG_TYPE_ARRAY);
    char path[160], shown[80];
    int n = s ? config_setting_length(s) : 0;

    if (n <= 0)
        return;
    key_path(path, sizeof(path), gpath, key);
    *out = calloc((size_t)n, sizeof(**out));
    if (!*out) {
        ld->nomem = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *v = config_setting_get_string(e);
        int line = line_of(e) > 0 ? line_of(e) : line_of(s);

        if (!v)
            diag_add(ld, line, "%s[%d]: expected a string, got %s", path, i,
                     type_name(config_setting_type(e)));
        else if (!ok(v))
            diag_add(ld, line, "%s[%d]: \"%s\" is not %s", path, i,
                     printable(v, shown, sizeof(shown)), hint);
        else if (((*out)[(*n_out)++] = str_dup(ld, v)) == NULL)
            return;
    }
}

/* A short word without whitespace ("!youtrack"); with lead '/', a Slack command name. */
static void load_word(struct loader *ld, const config_setting_t *g, const char *gpath,
                      const char *key, const char *def, char lead, char **out)
{
    const char *v = get_string(ld, g, gpath, key);
    char path[160], shown[80];

    key_path(path, sizeof(path), gpath, key);
    if (v && lead &&
        (v[0] != lead || !v[1] || strlen(v) > 32 ||
         strspn(v + 1, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(v + 1))) {
        /* Slack command names: lower-case letters, digits, '-' and '_'. */
        diag_add(ld, line_of(config_setting_get_member(g, key)),
                 "%s: must be '%c' and up to 31 lower-case letters, digits, '-' or '_' (got "
                 "\"%s\")",
                 path, lead, printable(v, shown, sizeof(shown)));
        v = NULL;
    } else if (v && (!*v || strlen(v) > 32 || !token_ok(v))) {
        diag_add(ld, line_of(config_setting_get_member(g, key)),
                 "%s: must be 1 to 32 characters without spaces (got \"%s\")", path,
                 printable(v, shown, sizeof(shown)));
        v = NULL;
    }
    *out = str_dup(ld, v ? v : def);
}

/* commands_per_user / commands_per_second of a chat group (struct conf_chat_rate). */
static void load_chat_rate(struct loader *ld, const config_setting_t *g, const char *gpath,
                           struct conf_chat_rate *rate)
{
    long long v = CONF_CHAT_PER_USER_DEFAULT;

    get_int(ld, g, gpath, "commands_per_user", 1, 10000, &v);
    rate->per_user = (unsigned)v;
    v = CONF_CHAT_PER_SECOND_DEFAULT;
    get_int(ld, g, gpath, "commands_per_second", 1, 1000, &v);
    rate->per_second = (unsigned)v;
}

static void load_chat_slack(struct loader *ld, const config_setting_t *g, struct conf *c)
{
    static const char *const keys[] = {
        "app_token",         "app_token_file",     "app_token_env", "command",
        "allowed_channels",  "allowed_users",      "api_url",       "allow_insecure",
        "commands_per_user", "commands_per_second"};
    struct conf_chat_slack *sl = &c->chat.slack;
    struct secret_src src = {
        .gpath = "chat.slack", .key = "app_token", .noun = "app token", .kind = SECRET_TOKEN};
    const config_setting_t *s;
    const char *api;
    int found;

    sl->enabled = 1;
    check_keys(ld, g, "chat.slack", keys, sizeof(keys) / sizeof(keys[0]));
    s = member(ld, g, "chat.slack", "allow_insecure", CONFIG_TYPE_BOOL);
    if (s)
        sl->allow_insecure = config_setting_get_bool(s) ? 1 : 0;
    found = secret_find(ld, g, &src);
    if (found == 0)
        secret_missing(ld, line_of(g), &src);
    else if (found == 1 && secret_fetch(ld, &src, &sl->app_token) == 0 &&
             strncmp(sl->app_token, "xapp-", 5) != 0)
        diag_add(ld, src.line,
                 "%s: must be an app-level token (\"xapp-...\", scope connections:write); bot "
                 "and user tokens cannot open Socket Mode connections",
                 src.label);
    load_word(ld, g, "chat.slack", "command", "/youtrack", '/', &sl->command);
    load_chat_rate(ld, g, "chat.slack", &sl->rate);
    load_id_list(ld, g, "chat.slack", "allowed_channels", slack_id_ok,
                 "a Slack channel id such as \"C0123ABCD\"", &sl->allowed_channels,
                 &sl->n_allowed_channels);
    load_id_list(ld, g, "chat.slack", "allowed_users", slack_id_ok,
                 "a Slack user id such as \"U0123ABCD\"", &sl->allowed_users, &sl->n_allowed_users);
    api = get_string(ld, g, "chat.slack", "api_url");
    url_check(ld, api ? line_of(config_setting_get_member(g, "api_url")) : line_of(g),
              "chat.slack.api_url", api ? api : "https://slack.com/api",
              sl->allow_insecure ? URL_INSECURE_OK : 0u, "app_token", &sl->api_url);
}

static void load_chat_matrix(struct loader *ld, const config_setting_t *g, struct conf *c)
{
    static const char *const keys[] = {"homeserver",         "access_token",   "access_token_file",
                                       "access_token_env",   "rooms",          "prefix",
                                       "allowed_users",      "allow_insecure", "commands_per_user",
                                       "commands_per_second"};
    struct conf_chat_matrix *mx = &c->chat.matrix;
    struct secret_src src = {.gpath = "chat.matrix",
                             .key = "access_token",
                             .noun = "access token",
                             .kind = SECRET_TOKEN};
    const config_setting_t *s;
    const char *hs;
    int found;

    mx->enabled = 1;
    check_keys(ld, g, "chat.matrix", keys, sizeof(keys) / sizeof(keys[0]));
    s = member(ld, g, "chat.matrix", "allow_insecure", CONFIG_TYPE_BOOL);
    if (s)
        mx->allow_insecure = config_setting_get_bool(s) ? 1 : 0;
    hs = get_string(ld, g, "chat.matrix", "homeserver");
    if (!config_setting_get_member(g, "homeserver"))
        diag_add(ld, line_of(g), "chat.matrix: missing homeserver");
    else if (hs)
        url_check(ld, line_of(config_setting_get_member(g, "homeserver")), "chat.matrix.homeserver",
                  hs, mx->allow_insecure ? URL_INSECURE_OK : 0u, "access_token", &mx->homeserver);
    found = secret_find(ld, g, &src);
    if (found == 0)
        secret_missing(ld, line_of(g), &src);
    else if (found == 1)
        secret_fetch(ld, &src, &mx->access_token);
    load_id_list(ld, g, "chat.matrix", "rooms", matrix_room_id_ok,
                 "a room id such as \"!abc:example.org\" (aliases are not accepted here)",
                 &mx->rooms, &mx->n_rooms);
    s = config_setting_get_member(g, "rooms");
    if (!s)
        diag_add(ld, line_of(g), "chat.matrix: missing rooms (the rooms it answers in)");
    else if (config_setting_length(s) == 0)
        diag_add(ld, line_of(s), "chat.matrix.rooms: must name at least one room");
    load_word(ld, g, "chat.matrix", "prefix", "!youtrack", 0, &mx->prefix);
    load_chat_rate(ld, g, "chat.matrix", &mx->rate);
    load_id_list(ld, g, "chat.matrix", "allowed_users", matrix_user_id_ok,
                 "a user id such as \"@alice:example.org\"", &mx->allowed_users,
                 &mx->n_allowed_users);
}

/* The replies' sinks (see struct conf_chat_matrix), once the rest loaded cleanly. */
static void chat_reply_sinks(struct loader *ld, struct conf *c)
{
    struct conf_chat_matrix *mx = &c->chat.matrix;

    if (!mx->enabled || !mx->n_rooms || !mx->homeserver || !mx->access_token)
        return;
    mx->reply_sinks = calloc(mx->n_rooms, sizeof(*mx->reply_sinks));
    if (!mx->reply_sinks) {
        ld->nomem = 1;
        return;
    }
    for (size_t i = 0; i < mx->n_rooms; i++) {
        struct conf_sink *s = &mx->reply_sinks[mx->n_reply_sinks++];
        s->type = CONF_SINK_MATRIX;
        s->chat_reply = 1;
        s->allow_insecure = mx->allow_insecure;
        if (asprintf(&s->name, "chat:%s", mx->rooms[i]) < 0) {
            s->name = NULL;
            ld->nomem = 1;
        }
        s->homeserver = str_dup(ld, mx->homeserver);
        s->room = str_dup(ld, mx->rooms[i]);
        s->access_token = str_dup(ld, mx->access_token);
    }
}

static void load_chat(struct loader *ld, const config_setting_t *root, struct conf *c)
{
    static const char *const keys[] = {"slack", "matrix"};
    const config_setting_t *g = member(ld, root, "", "chat", CONFIG_TYPE_GROUP);
    const config_setting_t *s;

    if (!g)
        return;
    check_keys(ld, g, "chat", keys, sizeof(keys) / sizeof(keys[0]));
    s = member(ld, g, "chat", "slack", CONFIG_TYPE_GROUP);
    if (s)
        load_chat_slack(ld, s, c);
    s = member(ld, g, "chat", "matrix", CONFIG_TYPE_GROUP);
    if (s)
        load_chat_matrix(ld, s, c);
    chat_reply_sinks(ld, c);
}

const struct conf_sink *conf_find_sink(const struct conf *conf, const char *name)
{
    for (size_t i = 0; i < conf->n_sinks; i++) {
        if (strcmp(conf->sinks[i].name, name) == 0)
            return &conf->sinks[i];
    }
    for (size_t i = 0; i < conf->chat.matrix.n_reply_sinks; i++) {
        if (strcmp(conf->chat.matrix.reply_sinks[i].name, name) == 0)
            return &conf->chat.matrix.reply_sinks[i];
    }
    return NULL;
}

static void load_root(struct loader *ld, const config_setting_t *root, struct conf *c)
{
    static const char *const keys[] = {"youtrack", "state_dir", "notify", "sinks",
                                       "http",     "log",       "chat"};
    const char *state_dir;

    note_secrets_early(ld, root);
    check_keys(ld, root, "", keys, sizeof(keys) / sizeof(keys[0]));
    load_youtrack(ld, root, c);

    state_dir = get_string(ld, root, "", "state_dir");
    if (state_dir && !*state_dir)
        diag_add(ld, line_of(config_setting_get_member(root, "state_dir")),
                 "state_dir: must not be empty");
    c->state_dir = strdup(state_dir && *state_dir ? state_dir : "/var/lib/ytbridge");
    if (!c->state_dir)
        ld->nomem = 1;

    load_notify(ld, root, c);
    load_sinks(ld, root, c);
    load_http(ld, root, c);
    load_log(ld, root, c);
    load_chat(ld, root, c);
}

static int is_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-' || ch == '*';
}

static int is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static int is_xdigit(char ch)
{
    return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/*
 * Lexes one number starting at s (libconfig's integer, integer64, hex, hex64 and float forms)
 * and returns its length; sets *bad when it is an integer libconfig would silently wrap.
 */
static size_t number_scan(const char *s, int *bad)
{
    size_t i = 0, digits, l = 0;
    char buf[32];

    *bad = 0;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && is_xdigit(s[2])) {
        size_t sig = 0;
        unsigned long long v = 0;
        i = 2;
        while (s[i] == '0')
            i++;
        for (; is_xdigit(s[i]); i++) {
            sig++;
            if (sig <= 16)
                v = v * 16 +
                    (unsigned long long)(is_digit(s[i]) ? s[i] - '0' : (s[i] | 0x20) - 'a' + 10);
        }
        while (s[i + l] == 'L' && l < 2)
            l++;
        *bad = sig > 16 || (l == 0 && v > INT_MAX);
        return i + l;
    }
    if (s[i] == '+' || s[i] == '-')
        i++;
    digits = i;
    while (is_digit(s[i]))
        i++;
    digits = i - digits;
    if (s[i] == '.' ||
        ((s[i] == 'e' || s[i] == 'E') &&
         (is_digit(s[i + 1]) || ((s[i + 1] == '+' || s[i + 1] == '-') && is_digit(s[i + 2]))))) {
        if (s[i] == '.')
            for (i++; is_digit(s[i]); i++)
                ;
        if ((s[i] == 'e' || s[i] == 'E') &&
            (is_digit(s[i + 1]) || ((s[i + 1] == '+' || s[i + 1] == '-') && is_digit(s[i + 2])))) {
            i += 2;
            while (is_digit(s[i]))
                i++;
        }
        return i;
    }
    while (s[i + l] == 'L' && l < 2)
        l++;
    if (digits == 0)
        return i + l;
    if (i >= sizeof(buf)) {
        *bad = 1;
    } else {
        long long v;
        memcpy(buf, s, i);
        buf[i] = '\0';
        errno = 0;
        v = strtoll(buf, NULL, 10);
        *bad = errno == ERANGE || (l == 0 && (v < INT_MIN || v > INT_MAX));
    }
    return i + l;
}

/*
 * Refuses what libconfig would mishandle: @include, nesting deeper than CONF_MAX_DEPTH,
 * integers that overflow, and a string where no value may start (libconfig 1.5's parser leaks
 * the string on that syntax error; "" alone is enough). Strings and comments are skipped as
 * libconfig's scanner does. Returns 0 or -1 (reported).
 */
static int prescan(struct loader *ld, const char *s, size_t len)
{
    char open[CONF_MAX_DEPTH + 1];
    size_t i = 0;
    int line = 1, depth = 0, value_ok = 0;

    while (i < len) {
        char ch = s[i];
        if (ch == '\n') {
            line++;
            i++;
            continue;
        }
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v') {
            i++;
            continue;
        }
        if (ch == '"') {
            if (!value_ok) {
                diag_add(ld, line, "syntax error");
                return -1;
            }
            for (i++; i < len && s[i] != '"'; i++) {
                if (s[i] == '\\' && i + 1 < len)
                    i++;
                if (s[i] == '\n')
                    line++;
            }
            i++;
            continue; /* adjacent strings concatenate: a string may follow */
        }
        if (ch == '#' || (ch == '/' && s[i + 1] == '/')) {
            while (i < len && s[i] != '\n')
                i++;
            continue;
        }
        if (ch == '/' && s[i + 1] == '*') {
            for (i += 2; i < len && !(s[i] == '*' && s[i + 1] == '/'); i++) {
                if (s[i] == '\n')
                    line++;
            }
            i += 2;
            continue;
        }
        value_ok = 0;
        if (ch == '=' || ch == ':') {
            value_ok = 1;
            i++;
        } else if (ch == ',') {
            value_ok = depth > 0 && open[depth - 1] != '{';
            i++;
        } else if (ch == '@' && strncmp(s + i + 1, "include", 7) == 0) {
            diag_add(ld, line, "@include is not supported");
            return -1;
        } else if (ch == '{' || ch == '(' || ch == '[') {
            if (depth == CONF_MAX_DEPTH) {
                diag_add(ld, line, "nested deeper than %d levels", CONF_MAX_DEPTH);
                return -1;
            }
            open[depth++] = ch;
            value_ok = ch != '{';
            i++;
        } else if (ch == '}' || ch == ')' || ch == ']') {
            if (depth > 0)
                depth--;
            i++;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '*') {
            while (is_name_char(s[i]))
                i++;
        } else if (is_digit(ch) || ((ch == '-' || ch == '+' || ch == '.') &&
                                    (is_digit(s[i + 1]) || s[i + 1] == '.'))) {
            int bad;
            size_t n = number_scan(s + i, &bad);
            if (bad) {
                char shown[48];
                size_t k = n < 40 ? n : 40;
                memcpy(shown, s + i, k);
                strcpy(shown + k, n > k ? "..." : "");
                diag_add(ld, line, "integer %s is out of range", shown);
                return -1;
            }
            i += n ? n : 1;
        } else {
            i++;
        }
    }
    return 0;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void conf_chat_free(struct conf *conf)
{
    struct conf_chat_slack *sl = &conf->chat.slack;
    struct conf_chat_matrix *mx = &conf->chat.matrix;

    secret_free(sl->app_token);
    free(sl->command);
    strv_free(sl->allowed_channels, sl->n_allowed_channels);
    strv_free(sl->allowed_users, sl->n_allowed_users);
    free(sl->api_url);
    free(mx->homeserver);
    secret_free(mx->access_token);
    strv_free(mx->rooms, mx->n_rooms);
    free(mx->prefix);
    strv_free(mx->allowed_users, mx->n_allowed_users);
    for (size_t i = 0; i < mx->n_reply_sinks; i++) {
        free(mx->reply_sinks[i].name);
        free(mx->reply_sinks[i].homeserver);
        free(mx->reply_sinks[i].room);
        secret_free(mx->reply_sinks[i].access_token);
    }
    free(mx->reply_sinks);
}

void conf_free(struct conf *conf)
{
    if (!conf)
        return;
    free(conf->path);
    free(conf->youtrack.url);
    secret_free(conf->youtrack.token);
    free(conf->youtrack.ca_file);
    free(conf->http.listen);
    free(conf->state_dir);
    for (size_t i = 0; i < conf->n_sinks; i++) {
        struct conf_sink *s = &conf->sinks[i];
        free(s->name);
        for (size_t j = 0; j < s->n_projects; j++)
            free(s->projects[j]);
        free(s->projects);
        secret_free(s->url);
        secret_free(s->secret);
        free(s->homeserver);
        free(s->room);
        secret_free(s->access_token);
    }
    free(conf->sinks);
    conf_chat_free(conf);
    free(conf);
}

/* The shared body of conf_load() and conf_load_buffer(): text is NUL-terminated at len. */
static int load_text(struct loader *ld, const char *text, size_t len, struct conf **out)
{
    struct conf *c = NULL;
    config_t cfg;
    int r, cfg_live = 0;

    if (memchr(text, '\0', len)) {
        size_t nl = 1;
        for (const char *p = text; *p; p++)
            nl += *p == '\n';
        diag_add(ld, (int)(nl > INT_MAX ? 0 : nl), "contains a NUL byte (not a text file?)");
        goto out;
    }
    if (prescan(ld, text, len) < 0)
        goto out;

    config_init(&cfg);
    cfg_live = 1;
    if (config_read_string(&cfg, text) != CONFIG_TRUE) {
        /* @include is refused, so config_error_file() is always our own text: use its name. */
        diag_add(ld, config_error_line(&cfg), "%s", config_error_text(&cfg));
        goto out;
    }

    c = calloc(1, sizeof(*c));
    if (!c) {
        ld->nomem = 1;
        goto out;
    }
    c->path = strdup(ld->file);
    if (!c->path) {
        ld->nomem = 1;
        goto out;
    }
    c->youtrack.api = CONF_API_AUTO;
    c->youtrack.poll_interval = 60;
    c->youtrack.page_size = 200;
    c->youtrack.timeout = 30;
    c->youtrack.max_body = DEFAULT_MAX_BODY;
    c->notify.first_run = CONF_FIRST_RUN_BASELINE;
    c->notify.removal_confirmations = 2;
    c->notify.mass_removal_limit = 10;
    c->notify.digest_threshold = 5;
    c->notify.max_age = 86400;
    c->notify.shutdown_grace = 10;
    c->log.level = LOGL_INFO;
    c->log.format = LOG_FORMAT_TEXT;

    load_root(ld, config_root_setting(&cfg), c);

out:
    if (cfg_live)
        config_destroy(&cfg);
    diags_sort(ld);
    if (ld->nomem) {
        r = -ENOMEM;
    } else if (ld->n_added > 0) {
        r = -EINVAL;
    } else {
        *out = c;
        c = NULL;
        r = 0;
    }
    conf_free(c);
    return r;
}

int conf_load_buffer(const char *text, size_t len, const char *name, struct conf **out,
                     struct conf_diags *diags)
{
    struct loader ld = {.file = name ? name : "(config)", .diags = diags, .first = diags->n};
    char *copy = NULL;
    int r;

    *out = NULL;
    if (len > CONF_MAX_SIZE) {
        diag_add(&ld, 0, "larger than %d KiB", CONF_MAX_SIZE / 1024);
        return ld.nomem ? -ENOMEM : -EINVAL;
    }
    /* config_read_string() wants a C string; the caller's bytes may not end in a NUL. */
    copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    if (len > 0)
        memcpy(copy, text, len);
    copy[len] = '\0';
    r = load_text(&ld, copy, len, out);
    free(copy);
    return r;
}

int conf_load(const char *path, struct conf **out, struct conf_diags *diags)
{
    struct loader ld = {.file = path, .diags = diags, .first = diags->n};
    char *buf = NULL, *dir = NULL, *slash;
    size_t n = 0;
    int fd = -1, r;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        diag_add(&ld, 0, "cannot open: %s", strerror(errno));
        r = -EINVAL;
        goto out;
    }
    buf = malloc(CONF_MAX_SIZE + 2);
    dir = strdup(path);
    if (!buf || !dir) {
        r = -ENOMEM;
        goto out;
    }
    while (n <= CONF_MAX_SIZE) {
        ssize_t k = read(fd, buf + n, CONF_MAX_SIZE + 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            diag_add(&ld, 0, "cannot read: %s", strerror(errno));
            r = -EINVAL;
            goto out;
        }
        if (k == 0)
            break;
        n += (size_t)k;
    }
    if (n > CONF_MAX_SIZE) {
        diag_add(&ld, 0, "larger than %d KiB", CONF_MAX_SIZE / 1024);
        r = -EINVAL;
        goto out;
    }
    buf[n] = '\0';
    slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    ld.dir = slash ? dir : NULL;
    r = load_text(&ld, buf, n, out);
out:
    if (ld.nomem)
        r = -ENOMEM;
    if (fd >= 0)
        close(fd);
    free(buf);
    free(dir);
    return r;
}

void conf_diag_format(const struct conf_diag *d, char *buf, size_t len)
{
    const char *file = d->file ? d->file : "(config)";

    if (len == 0)
        return;
    if (d->line > 0)
        snprintf(buf, len, "%s:%d: %s", file, d->line, d->msg ? d->msg : "");
    else
        snprintf(buf, len, "%s: %s", file, d->msg ? d->msg : "");
}

void conf_diags_fini(struct conf_diags *diags)
{
    if (!diags)
        return;
    for (size_t i = 0; i < diags->n; i++) {
        free(diags->v[i].file);
        free(diags->v[i].msg);
    }
    free(diags->v);
    diags->v = NULL;
    diags->n = 0;
}
