/*
 * The configuration's second step and the entry points that run both: conf_resolve() reads the
 * secret files and variables conf_load_buffer() recorded, applies YTBRIDGE_YOUTRACK_URL and
 * YTBRIDGE_YOUTRACK_TOKEN, checks the files settings name (youtrack.ca_file, the cluster's TLS
 * files), names this replica (cluster.member) and registers every secret with the logger;
 * conf_load() and conf_load_text() walk a text and resolve it in one pass, so every problem of
 * both is reported in file order and an override makes the text's own url or token moot.
 *
 * The only conf*.c file that reads a file or the environment or calls the logger. Its messages
 * are the ones the walk would have made at the same place: each secret it reads reserved a
 * place among the text's diagnostics (secret_use.slot).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf_loader.h"

#define TOKEN_FILE_MAX (64 * 1024)

static const char *env_get(const struct conf_env *env, const char *name)
{
    return env ? env->get(env->ctx, name) : getenv(name);
}

/* Renders a message against every secret the logger knows (registered first). */
static void redact_logged(char *dst, size_t dstlen, const char *src, void *ctx)
{
    (void)ctx;
    log_redact(dst, dstlen, src);
}

/* Registers every secret noted so far with the logger, so that no later line shows one. */
static void secrets_register(struct loader *ld)
{
    for (size_t i = 0; i < ld->n_noted; i++) {
        if (log_add_secret(ld->noted[i]) < 0)
            ld->nomem = 1;
    }
}

/*
 * Reads fd to its end into buf (room for cap + 1 bytes), stopping after cap + 1: *n > cap means
 * the file is too large. *n counts what was read even on failure. 0 or -errno.
 */
static int read_capped(int fd, char *buf, size_t cap, size_t *n)
{
    while (*n <= cap) {
        ssize_t k = read(fd, buf + *n, cap + 1 - *n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            break;
        *n += (size_t)k;
    }
    return 0;
}

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

/*
 * Reads the secret file at path (src->value as written) into *out (malloc'ed); 0 or -1
 * (reported).
 */
static int secret_file_read(struct loader *ld, const struct secret_src *src, const char *path,
                            char **out)
{
    const char *label = src->label, *setting = src->value;
    char shown[300], *buf = NULL;
    int line = src->line, fd = -1, r = -1, err;
    size_t n = 0;
    struct stat st;

    if (!path) /* out of memory when it was recorded */
        return -1;
    printable(ld, path, shown, sizeof(shown));
    /* stat before open: opening a device node (a FIFO, /dev/watchdog) can block or act. */
    if (stat(path, &st) != 0) {
        err = errno;
        if (looks_like_secret(setting)) {
            char fix[96];
            snprintf(fix, sizeof(fix), "put the %s in a file and name the file here", src->noun);
            secret_misplaced(ld, src, setting, "path", fix);
        } else if (src->kind == SECRET_PASSWORD) {
            note_secret(ld, setting);
            diag_add(ld, line,
                     "%s: cannot read the file named there: %s (not shown: it may be "
                     "the %s itself)",
                     label, strerror(err), src->noun);
        } else {
            diag_add(ld, line, "%s: cannot read %s: %s", label, shown, strerror(err));
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
    err = read_capped(fd, buf, TOKEN_FILE_MAX, &n);
    if (err < 0) {
        diag_add(ld, line, "%s: cannot read %s: %s", label, shown, strerror(-err));
        goto out;
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
    if (exposed(&st)) {
        char now[300];
        secrets_register(ld);
        printable_now(path, now, sizeof(now), redact_logged, NULL);
        log_warn("conf", "%s:%d: %s: %s file %s is readable by group or others (chmod 600)",
                 ld->file, line, label, src->noun, now);
    }
    r = 0;
out:
    if (fd >= 0)
        close(fd);
    if (buf) {
        memset(buf, 0, n); /* not NUL-terminated on every path: not secret_free() */
        free(buf);
    }
    return r;
}

/*
 * Reads what use says of a secret into *out (malloc'ed; noted): a file, or a variable of env.
 * 0 or -1 (reported).
 */
static int secret_fetch(struct loader *ld, const struct secret_src *src,
                        const struct secret_use *use, const struct conf_env *env, char **out)
{
    const char *v = src->value, *t;
    char shown[80];

    if (src->which == CONF_SECRET_FILE)
        return secret_file_read(ld, src, use->path, out);
    printable(ld, v, shown, sizeof(shown));
    t = env_get(env, v);
    if (!t || !*t) {
        char fix[96];
        snprintf(fix, sizeof(fix), "put the %s in a variable and name the variable here",
                 src->noun);
        if (looks_like_secret(v)) {
            secret_misplaced(ld, src, v, "variable name", fix);
        } else if (src->kind == SECRET_PASSWORD) {
            note_secret(ld, v);
            diag_add(ld, src->line,
                     "%s: the environment variable named there is not set or "
                     "empty (not shown: it may be the %s itself)",
                     src->label, src->noun);
        } else {
            diag_add(ld, src->line, "%s: environment variable %s is not set or empty", src->label,
                     shown);
        }
        return -1;
    }
    note_secret(ld, t);
    return secret_accept(ld, src, t, shown, out);
}

/* Reads one secret recorded by secret_take() and hands it to its taker. */
static void secret_resolve(struct loader *ld, struct conf *c, const struct secret_use *use,
                           const struct conf_env *env)
{
    const struct conf_secret *s = &c->secrets[use->secret];
    struct secret_src src = {.noun = use->noun,
                             .kind = use->kind,
                             .which = s->from,
                             .value = s->source,
                             .line = s->line};
    char *value = NULL;

    snprintf(src.label, sizeof(src.label), "%s", s->setting);
    ld->at = use->slot;
    if (secret_fetch(ld, &src, use, env, &value) == 0)
        use->take(ld, src, value, use->dest);
}

/*
 * YTBRIDGE_YOUTRACK_URL, when set, instead of youtrack.url: the text's url and what was said of
 * it are dropped, the variable is checked in its place.
 */
static void resolve_url(struct loader *ld, struct conf *c, const struct conf_env *env)
{
    const char *env_url = env_get(env, "YTBRIDGE_YOUTRACK_URL");
    unsigned insecure = c->youtrack.allow_insecure ? URL_INSECURE_OK : 0;

    if (env_url && *env_url) {
        ld->at = c->pending->url_slot;
        ld->withdrawn |= DIAG_TAG_URL;
        free(c->youtrack.url);
        c->youtrack.url = NULL;
        url_check(ld, 0, "youtrack.url (from YTBRIDGE_YOUTRACK_URL)", env_url, insecure, "token",
                  &c->youtrack.url);
    }
}

/*
 * YTBRIDGE_YOUTRACK_TOKEN, when set, instead of youtrack.token (whose source is then not read).
 * 1 when it is set.
 */
static int resolve_token(struct loader *ld, struct conf *c, const struct conf_env *env)
{
    const char *tok = env_get(env, "YTBRIDGE_YOUTRACK_TOKEN");

    if (!tok || !*tok)
        return 0;
    ld->at = c->pending->token_slot;
    ld->withdrawn |= DIAG_TAG_TOKEN;
    secret_free(c->youtrack.token);
    c->youtrack.token = NULL;
    note_secret(ld, tok);
    if (!token_ok(tok))
        diag_add(ld, 0, "YTBRIDGE_YOUTRACK_TOKEN: contains whitespace or control characters");
    else
        c->youtrack.token = str_dup(ld, tok);
    return 1;
}

/*
 * A file a setting names (a CA bundle, a certificate, a key): it must be a regular file this
 * process can read. A value that is no file and looks like a token or PEM text pasted there is
 * not printed.
 */
static void check_file(struct loader *ld, const struct file_use *f)
{
    const char *pasted = strstr(f->written, "-----BEGIN") ? "PEM text"
                         : looks_like_secret(f->written)  ? "a token"
                                                          : NULL;
    char shown[300];
    struct stat st;

    ld->at = f->slot;
    printable(ld, f->path, shown, sizeof(shown));
    int missing = stat(f->path, &st) != 0, err = errno;
    if (missing && pasted) {
        /* The secret pasted one line too low: do not print it. */
        note_secret(ld, f->written);
        diag_add(ld, f->line, "%s: the value looks like %s, not a path; name %s file here",
                 f->label, pasted, f->what);
    } else if (missing || access(f->path, R_OK) != 0) {
        diag_add(ld, f->line, "%s: cannot read %s: %s", f->label, shown,
                 strerror(missing ? err : errno));
    } else if (!S_ISREG(st.st_mode)) {
        diag_add(ld, f->line, "%s: %s is not a regular file", f->label, shown);
    } else if (f->secret && exposed(&st)) {
        char now[300];
        secrets_register(ld);
        printable_now(f->path, now, sizeof(now), redact_logged, NULL);
        log_warn("conf", "%s:%d: %s: key file %s is readable by group or others (chmod 600)",
                 ld->file, f->line, f->label, now);
    }
}

/* cluster.member when the text left it open: YTBRIDGE_MEMBER, else the host name. */
static void resolve_member(struct loader *ld, struct conf *c, const struct conf_env *env)
{
    const char *v = env_get(env, "YTBRIDGE_MEMBER"), *from = "YTBRIDGE_MEMBER";
    int line = c->pending->member_line;
    char host[256], shown[80];

    ld->at = c->pending->member_slot;
    if (!v || !*v) {
        if (gethostname(host, sizeof(host)) != 0) {
            diag_add(ld, line,
                     "cluster.member: unset, and the host name cannot be read (%s); set member "
                     "or YTBRIDGE_MEMBER",
                     strerror(errno));
            return;
        }
        host[sizeof(host) - 1] = '\0'; /* gethostname() need not terminate a cut name */
        v = host;
        from = "the host name";
    }
    if (!cluster_member_ok(v)) {
        diag_add(ld, line,
                 "cluster.member (from %s): must be 1 to %d of A-Z a-z 0-9 . _ - (got \"%s\"); "
                 "set member or YTBRIDGE_MEMBER",
                 from, CONF_CLUSTER_MEMBER_MAX, printable(ld, v, shown, sizeof(shown)));
        return;
    }
    c->cluster.member = str_dup(ld, v);
}

/* Everything c->pending asks for; c->pending is gone afterwards. */
static void resolve(struct loader *ld, struct conf *c, const struct conf_env *env)
{
    struct conf_pending *p = c->pending;
    int token_overridden;

    if (!p)
        return;
    ld->resolving = 1;
    /* The text's secrets, then every variable named for one: redacted wherever they show. */
    for (size_t i = 0; i < p->n_noted; i++)
        note_secret(ld, p->noted[i]);
    for (size_t i = 0; i < p->n_env_names; i++) {
        const char *v = env_get(env, p->env_names[i]);
        if (v && *v)
            note_secret(ld, v);
    }
    resolve_url(ld, c, env);
    token_overridden = resolve_token(ld, c, env);
    for (size_t i = 0; i < p->n_files; i++)
        check_file(ld, &p->files[i]);
    if (p->member_open)
        resolve_member(ld, c, env);
    for (size_t i = 0; i < p->n_uses; i++) {
        if (!(token_overridden && p->uses[i].dest == &c->youtrack.token))
            secret_resolve(ld, c, &p->uses[i], env);
    }
    chat_reply_sinks(ld, c);
    ld->resolving = 0;
    conf_pending_free(p);
    c->pending = NULL;
}

/* Registers what ld noted, then publishes its diagnostics (see loader_finish()). */
static int finish(struct loader *ld)
{
    secrets_register(ld);
    return loader_finish(ld, redact_logged, NULL);
}

int conf_resolve(struct conf *conf, const struct conf_env *env, struct conf_diags *diags)
{
    struct loader ld = {.file = conf->path, .diags = diags, .conf = conf};
    int r;

    resolve(&ld, conf, env);
    r = finish(&ld);
    loader_fini(&ld);
    return r;
}

/* Walks text (NUL-terminated at len) and resolves what it built with env: both steps. */
static int load_resolved(struct loader *ld, const char *text, size_t len,
                         const struct conf_env *env, struct conf **out)
{
    struct conf *c = load_text(ld, text, len);
    int r;

    if (c)
        resolve(ld, c, env);
    r = finish(ld);
    if (r == 0) {
        *out = c;
        c = NULL;
    }
    conf_free(c);
    return r;
}

int conf_load_text(const char *text, size_t len, const char *name, const struct conf_env *env,
                   struct conf **out, struct conf_diags *diags)
{
    struct loader ld = {.file = name ? name : "(config)", .diags = diags};
    char *copy = NULL;
    int r;

    *out = NULL;
    if (len > CONF_MAX_SIZE) {
        diag_add(&ld, 0, "larger than %d KiB", CONF_MAX_SIZE / 1024);
        r = finish(&ld);
        goto out;
    }
    /* config_read_string() wants a C string; the caller's bytes may not end in a NUL. */
    copy = malloc(len + 1);
    if (!copy) {
        r = -ENOMEM;
        goto out;
    }
    if (len > 0)
        memcpy(copy, text, len);
    copy[len] = '\0';
    r = load_resolved(&ld, copy, len, env, out);
out:
    free(copy);
    loader_fini(&ld);
    return r;
}

int conf_load(const char *path, struct conf **out, struct conf_diags *diags)
{
    struct loader ld = {.file = path, .diags = diags};
    char *buf = NULL, *dir = NULL, *slash;
    size_t n = 0;
    int fd = -1, r;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        diag_add(&ld, 0, "cannot open: %s", strerror(errno));
        goto fail;
    }
    buf = malloc(CONF_MAX_SIZE + 2);
    dir = strdup(path);
    if (!buf || !dir) {
        ld.nomem = 1;
        goto fail;
    }
    r = read_capped(fd, buf, CONF_MAX_SIZE, &n);
    if (r < 0) {
        diag_add(&ld, 0, "cannot read: %s", strerror(-r));
        goto fail;
    }
    if (n > CONF_MAX_SIZE) {
        diag_add(&ld, 0, "larger than %d KiB", CONF_MAX_SIZE / 1024);
        goto fail;
    }
    buf[n] = '\0';
    slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    ld.dir = slash ? dir : NULL;
    r = load_resolved(&ld, buf, n, NULL, out);
    goto out;
fail:
    r = finish(&ld);
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    free(dir);
    loader_fini(&ld);
    return r;
}
