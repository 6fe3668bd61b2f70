/*
 * Secret settings: which of KEY, KEY_file and KEY_env a group sets, reading a file or a
 * variable, the checks of a value, and a secret pasted where a path or a variable name belongs.
 *
 * Invariant: every secret is passed to log_add_secret() as soon as it is read and no message
 * formats one; a secret file readable by others is a warning, never an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf_loader.h"

/* Tokens travel in an HTTP header: anything that could split or corrupt it is refused. */
int token_ok(const char *t)
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
int looks_like_secret(const char *v)
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

void secret_free(char *s)
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
int secret_find(struct loader *ld, const config_setting_t *grp, struct secret_src *src)
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

void secret_missing(struct loader *ld, int line, const struct secret_src *src)
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
int secret_fetch(struct loader *ld, const struct secret_src *src, char **out)
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

void load_token(struct loader *ld, const config_setting_t *yt, struct conf *c)
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
void note_secrets_early(struct loader *ld, const config_setting_t *root)
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
