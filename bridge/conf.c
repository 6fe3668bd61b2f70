/*
 * Configuration, the loader's ground floor: diagnostics (kept back, then rendered against every
 * secret the load met), the typed getters every group uses, and url_check(). conf_loader.h
 * lists the other conf*.c files by concern; they call down to this one, never the other way.
 * Only they include <libconfig.h>; nothing of libconfig leaks past them.
 *
 * Invariants: every problem is collected as a FILE:LINE diagnostic (never only the first); no
 * diagnostic ever quotes a secret: they are rendered once the load is over. Nothing here reads
 * a file or the environment or calls the logger.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_loader.h"
#include "url.h"

/* Bracket a printable() placeholder: control characters, which no rendered quote holds. */
#define QUOTE_OPEN  '\x01'
#define QUOTE_CLOSE '\x02'

void diag_add(struct loader *ld, int line, const char *fmt, ...)
{
    struct pending_diag *v;
    char *msg = NULL;
    va_list ap;

    if (ld->n_added > CONF_MAX_DIAGS)
        return;
    if (ld->n_added == CONF_MAX_DIAGS) {
        msg = strdup("too many problems; the rest are not shown");
        line = INT_MAX; /* sorts last */
    } else {
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
            msg = NULL;
        va_end(ap);
    }
    v = msg ? realloc(ld->pending, (ld->n_pending + 1) * sizeof(*v)) : NULL;
    if (!v) {
        free(msg);
        ld->nomem = 1;
        return;
    }
    ld->pending = v;
    v[ld->n_pending++] = (struct pending_diag){
        .line = line, .seq = ld->resolving ? ld->at : ld->seq++, .tag = ld->tag, .msg = msg};
    ld->n_added++;
}

unsigned diag_slot(struct loader *ld)
{
    return ld->seq++;
}

/* strdup() that records running out of memory. */
char *str_dup(struct loader *ld, const char *s)
{
    char *d = strdup(s);

    if (!d)
        ld->nomem = 1;
    return d;
}

void note_secret(struct loader *ld, const char *s)
{
    char **v = realloc(ld->noted, (ld->n_noted + 1) * sizeof(*v));

    if (!v) {
        ld->nomem = 1;
        return;
    }
    ld->noted = v;
    v[ld->n_noted] = str_dup(ld, s);
    if (v[ld->n_noted])
        ld->n_noted++;
}

const char *printable(struct loader *ld, const char *s, char *buf, size_t len)
{
    struct quote *v = realloc(ld->quotes, (ld->n_quotes + 1) * sizeof(*v));
    char *text = strdup(s);

    if (!v || !text) {
        free(text);
        if (v)
            ld->quotes = v;
        ld->nomem = 1;
        buf[0] = '\0';
        return buf;
    }
    ld->quotes = v;
    v[ld->n_quotes] = (struct quote){.text = text, .len = len};
    snprintf(buf, len, "%c%zu%c", QUOTE_OPEN, ld->n_quotes++, QUOTE_CLOSE);
    return buf;
}

/*
 * What printable()'s placeholder becomes, rendered at once with redact. Known secrets are
 * redacted before the cut: a secret pasted into the wrong setting would otherwise be cut short
 * here and no longer match when the whole message is redacted.
 */
const char *printable_now(const char *s, char *buf, size_t len, redact_fn *redact, void *ctx)
{
    char redacted[1024];
    size_t o = 0;

    redact(redacted, sizeof(redacted), s, ctx);
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

/* One message as diag_add() would have made it with every secret known: quotes filled in. */
static void diag_render(const struct loader *ld, const char *in, char *msg, size_t len,
                        redact_fn *redact, void *ctx)
{
    char raw[1024], shown[1024];
    size_t o = 0;

    while (*in && o + 1 < sizeof(raw)) {
        char *end = NULL;
        unsigned long i = *in == QUOTE_OPEN ? strtoul(in + 1, &end, 10) : ULONG_MAX;

        if (i < ld->n_quotes && *end == QUOTE_CLOSE) {
            const struct quote *q = &ld->quotes[i];
            printable_now(q->text, shown, q->len < sizeof(shown) ? q->len : sizeof(shown), redact,
                          ctx);
            for (const char *c = shown; *c && o + 1 < sizeof(raw); c++)
                raw[o++] = *c;
            in = end + 1;
        } else {
            raw[o++] = *in++;
        }
    }
    raw[o] = '\0';
    /* Messages never format a secret; redaction is the second fence, not the first. */
    redact(msg, len, raw, ctx);
}

/* Stable: diagnostics of one line keep the order in which the walk met them. */
static void diags_sort(struct pending_diag *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct pending_diag d = v[i];
        size_t j = i;
        while (j > 0 &&
               (v[j - 1].line > d.line || (v[j - 1].line == d.line && v[j - 1].seq > d.seq))) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = d;
    }
}

int loader_finish(struct loader *ld, redact_fn *redact, void *ctx)
{
    struct conf_diags *out = ld->diags;
    size_t n = 0;
    char msg[1024];

    for (size_t i = 0; i < ld->n_pending; i++) {
        if (ld->pending[i].tag & ld->withdrawn)
            free(ld->pending[i].msg);
        else
            ld->pending[n++] = ld->pending[i];
    }
    ld->n_pending = n;
    diags_sort(ld->pending, n);
    for (size_t i = 0; i < n && !ld->nomem; i++) {
        struct conf_diag *v = realloc(out->v, (out->n + 1) * sizeof(*v));
        if (!v) {
            ld->nomem = 1;
            break;
        }
        out->v = v;
        v += out->n;
        diag_render(ld, ld->pending[i].msg, msg, sizeof(msg), redact, ctx);
        v->file = strdup(ld->file);
        v->msg = strdup(msg);
        v->line = ld->pending[i].line == INT_MAX ? 0 : ld->pending[i].line;
        if (!v->file || !v->msg) {
            free(v->file);
            free(v->msg);
            ld->nomem = 1;
            break;
        }
        out->n++;
    }
    if (ld->nomem)
        return -ENOMEM;
    return n > 0 ? -EINVAL : 0;
}

void loader_fini(struct loader *ld)
{
    for (size_t i = 0; i < ld->n_pending; i++)
        free(ld->pending[i].msg);
    free(ld->pending);
    for (size_t i = 0; i < ld->n_quotes; i++)
        secret_free(ld->quotes[i].text); /* a secret pasted elsewhere is quoted too */
    free(ld->quotes);
    for (size_t i = 0; i < ld->n_noted; i++)
        secret_free(ld->noted[i]);
    free(ld->noted);
    *ld = (struct loader){0};
}

int line_of(const config_setting_t *s)
{
    return s ? config_setting_source_line(s) : 0;
}

const char *type_name(int type)
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

void key_path(char *buf, size_t len, const char *group, const char *key)
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
void check_keys_of(struct loader *ld, const config_setting_t *grp, const char *gpath,
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

void check_keys(struct loader *ld, const config_setting_t *grp, const char *gpath,
                const char *const *keys, size_t n_keys)
{
    check_keys_of(ld, grp, gpath, keys, n_keys, NULL, 0, NULL);
}

/*
 * Returns the member key of grp when it has the wanted type (CONFIG_TYPE_INT also accepts a
 * 64-bit integer; CONFIG_TYPE_ARRAY also a list); NULL when absent or of another type
 * (reported).
 */
const config_setting_t *member(struct loader *ld, const config_setting_t *grp, const char *gpath,
                               const char *key, int want)
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

void get_int(struct loader *ld, const config_setting_t *grp, const char *gpath, const char *key,
             long long min, long long max, long long *out)
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

const char *get_string(struct loader *ld, const config_setting_t *grp, const char *gpath,
                       const char *key)
{
    const config_setting_t *s = member(ld, grp, gpath, key, CONFIG_TYPE_STRING);

    return s ? config_setting_get_string(s) : NULL;
}

/* Formats names as "a", "b" or "c" into buf. */
const char *choice_list(const char *const *names, size_t n, char *buf, size_t len)
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
void get_choice(struct loader *ld, const config_setting_t *grp, const char *gpath, const char *key,
                const char *const *names, size_t n, int *out)
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
             choice_list(names, n, list, sizeof(list)), printable(ld, v, shown, sizeof(shown)));
}

/*
 * Returns the array (or list) member key of grp when it has at least one element; NULL when
 * absent or refused (reported; empty: "must name at least one WHAT"). Elements that are not
 * strings are reported here; callers skip them (config_setting_get_string() gives NULL).
 */
const config_setting_t *get_strings(struct loader *ld, const config_setting_t *grp,
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
char *path_resolve(struct loader *ld, const char *p)
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

char **strv_alloc(struct loader *ld, int n)
{
    char **v = calloc((size_t)n, sizeof(*v));

    if (!v)
        ld->nomem = 1;
    return v;
}

const char *elem_string(const config_setting_t *s, int i, int *line)
{
    const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);

    *line = line_of(e) > 0 ? line_of(e) : line_of(s);
    return config_setting_get_string(e);
}

void file_take(struct loader *ld, const char *label, int line, const char *written,
               const char *what, int secret, char **out)
{
    struct conf_pending *p = ld->conf->pending;
    struct file_use *v = realloc(p->files, (p->n_files + 1) * sizeof(*v));

    if (!v) {
        ld->nomem = 1;
        return;
    }
    p->files = v;
    v += p->n_files;
    *v = (struct file_use){.what = what, .line = line, .slot = diag_slot(ld), .secret = secret};
    v->label = str_dup(ld, label);
    v->written = str_dup(ld, written);
    v->path = path_resolve(ld, written);
    *out = v->path ? str_dup(ld, v->path) : NULL;
    if (!v->label || !v->written || !v->path) {
        free(v->label);
        free(v->written);
        free(v->path);
        return;
    }
    p->n_files++;
}

/*
 * Checks url (label names it in messages; the URL itself never appears there, it may be a
 * secret) and stores a copy in *out, without trailing '/' unless URL_ENDPOINT. cred names the
 * setting that carries this host's credential ("token"), or is NULL when the URL is the secret.
 * The URL is read by url_parse(), the way the transfers that use it will read it.
 */
void url_check(struct loader *ld, int line, const char *label, const char *url, unsigned flags,
               const char *cred, char **out)
{
    url_check_as(ld, line, label, url, flags, cred, cred ? cred : "secret URL", out);
}

/* What url_check_as() stores of u (text as written): see URL_ENDPOINT and URL_ORIGIN. */
static char *url_kept(const struct url *u, const char *text, unsigned flags)
{
    size_t len = strlen(text);
    char *out;

    if (flags & URL_ORIGIN) {
        if (asprintf(&out, "%s://%s:%d", u->scheme, u->host, u->port) < 0)
            out = NULL;
        return out;
    }
    /* Only a path can end in '/' here (no query, no fragment). */
    while (!(flags & URL_ENDPOINT) && text[len - 1] == '/')
        len--;
    return strndup(text, len);
}

void url_check_as(struct loader *ld, int line, const char *label, const char *url, unsigned flags,
                  const char *use, const char *exposed, char **out)
{
    struct url u;
    enum url_error e = url_parse(url, URL_HTTP, &u);

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
        if (use)
            diag_add(ld, line, "%s: credentials in the URL are not allowed; use %s", label, use);
        else
            diag_add(ld, line, "%s: credentials in the URL are not allowed", label);
    } else if (flags & URL_ENDPOINT ? u.fragment : u.query || u.fragment) {
        diag_add(ld, line, "%s: must not contain a %s", label,
                 flags & URL_ENDPOINT ? "fragment" : "query or fragment");
    } else if (flags & URL_ORIGIN && strcmp(u.path, "/") != 0) {
        diag_add(ld, line, "%s: must not have a path (an endpoint is scheme://host:port)", label);
    } else if (!u.tls && !(flags & URL_INSECURE_OK) && !url_is_loopback(&u)) {
        diag_add(ld, line,
                 "%s: plain http:// to a non-loopback host sends the %s in clear text; use "
                 "https:// or set allow_insecure = true",
                 label, exposed);
    } else {
        *out = url_kept(&u, url, flags);
        if (!*out)
            ld->nomem = 1;
    }
    url_fini(&u);
}

void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void secret_free(char *s)
{
    if (!s)
        return;
    /* Not a guarantee (copies live elsewhere), but no stale secret lingers in freed heap. */
    memset(s, 0, strlen(s));
    free(s);
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
