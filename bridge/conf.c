/*
 * Configuration, the loader's core: diagnostics, typed getters, URL checks, the youtrack,
 * notify, log and http groups, the walk of a text and conf_load_buffer(); conf_loader.h lists
 * the other conf*.c files by concern. Only they include <libconfig.h>; nothing of libconfig
 * leaks past them.
 *
 * Invariants: every problem is collected as a FILE:LINE diagnostic (never only the first); no
 * diagnostic ever quotes a secret: they are rendered once the load is over, against every
 * secret it met; the result is built in a local and published only when there was no problem.
 * The text is pre-scanned (conf_lex.c) before libconfig sees it. Nothing here reads a file or
 * the environment or calls the logger: conf_resolve.c does that.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf_loader.h"
#include "redact.h"
#include "url.h"

#define DEFAULT_MAX_BODY (64L * 1024 * 1024)

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

/*
 * Checks url (label names it in messages; the URL itself never appears there, it may be a
 * secret) and stores a copy in *out, without trailing '/' unless URL_ENDPOINT. cred names the
 * setting that carries this host's credential ("token"), or is NULL when the URL is the secret.
 */
void url_check(struct loader *ld, int line, const char *label, const char *url, unsigned flags,
               const char *cred, char **out)
{
    size_t scheme, auth_len, host_len, len;
    const char *auth, *at, *p;
    int secure;

    for (p = url; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            diag_add(ld, line, "%s: contains whitespace or control characters", label);
            return;
        }
    }
    if (strncasecmp(url, "https://", 8) == 0) {
        scheme = 8;
        secure = 1;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        scheme = 7;
        secure = 0;
    } else {
        diag_add(ld, line, "%s: must be an https:// or http:// URL", label);
        return;
    }
    auth = url + scheme;
    auth_len = strcspn(auth, "/?#");
    at = memchr(auth, '@', auth_len);
    if (at) {
        char *userinfo = strndup(auth, (size_t)(at - auth));
        if (!userinfo) {
            ld->nomem = 1;
            return;
        }
        note_secret(ld, userinfo);
        free(userinfo);
        if (cred)
            diag_add(ld, line, "%s: credentials in the URL are not allowed; use %s", label, cred);
        else
            diag_add(ld, line, "%s: credentials in the URL are not allowed", label);
        return;
    }
    if (flags & URL_ENDPOINT ? strchr(auth, '#') != NULL : strpbrk(auth, "?#") != NULL) {
        diag_add(ld, line, "%s: must not contain a %s", label,
                 flags & URL_ENDPOINT ? "fragment" : "query or fragment");
        return;
    }
    if (auth[0] == '[') {
        const char *close = memchr(auth, ']', auth_len);
        host_len = close ? (size_t)(close - auth) + 1 : 0;
        if (!close || host_len < 3) {
            diag_add(ld, line, "%s: invalid IPv6 address", label);
            return;
        }
    } else {
        host_len = strcspn(auth, ":/");
        if (host_len > auth_len)
            host_len = auth_len;
        for (size_t i = 0; i < host_len; i++) {
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_~%",
                        auth[i])) {
                diag_add(ld, line, "%s: invalid character in the host name", label);
                return;
            }
        }
    }
    if (host_len == 0) {
        diag_add(ld, line, "%s: has no host", label);
        return;
    }
    if (host_len < auth_len) {
        const char *port = auth + host_len + 1;
        size_t port_len = auth_len - host_len - 1;
        long v = 0;
        int bad = auth[host_len] != ':' || port_len == 0 || port_len > 5;
        for (size_t i = 0; !bad && i < port_len; i++) {
            if (port[i] < '0' || port[i] > '9')
                bad = 1;
            else
                v = v * 10 + (port[i] - '0');
        }
        if (bad || v < 1 || v > 65535) {
            diag_add(ld, line, "%s: invalid port", label);
            return;
        }
    }
    if (!secure && !(flags & URL_INSECURE_OK) && !url_host_is_loopback(url)) {
        diag_add(ld, line,
                 "%s: plain http:// to a non-loopback host sends the %s in clear text; use "
                 "https:// or set allow_insecure = true",
                 label, cred ? cred : "secret URL");
        return;
    }
    len = strlen(url);
    while (!(flags & URL_ENDPOINT) && len > scheme + auth_len && url[len - 1] == '/')
        len--;
    *out = strndup(url, len);
    if (!*out)
        ld->nomem = 1;
}

/*
 * youtrack.token: KEY, KEY_file or KEY_env. YTBRIDGE_YOUTRACK_TOKEN, when set, replaces it
 * (conf_resolve()), and the problems tagged here go with it.
 */
static void load_token(struct loader *ld, const config_setting_t *yt, struct conf *c)
{
    struct secret_src src = {
        .gpath = "youtrack", .key = "token", .noun = "token", .kind = SECRET_TOKEN};
    int found = secret_find(ld, yt, &src);

    c->pending->token_slot = diag_slot(ld);
    ld->tag = DIAG_TAG_TOKEN;
    if (found == 0)
        diag_add(ld, line_of(yt),
                 "youtrack: missing token (set token, token_file or token_env, or "
                 "YTBRIDGE_YOUTRACK_TOKEN)");
    else if (found == 1)
        secret_take(ld, &src, secret_store, &c->youtrack.token);
    ld->tag = 0;
}

static void load_youtrack(struct loader *ld, const config_setting_t *root, struct conf *c)
{
    static const char *const keys[] = {"url",     "token",          "token_file", "token_env",
                                       "api",     "poll_interval",  "page_size",  "timeout",
                                       "ca_file", "allow_insecure", "max_body"};
    static const char *const apis[] = {"auto", "api", "legacy"};
    const config_setting_t *yt = member(ld, root, "", "youtrack", CONFIG_TYPE_GROUP);
    const config_setting_t *s;
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
    /* YTBRIDGE_YOUTRACK_URL, when set, replaces what follows (conf_resolve()). */
    c->pending->url_slot = diag_slot(ld);
    ld->tag = DIAG_TAG_URL;
    if (url)
        url_check(ld, line_of(config_setting_get_member(yt, "url")), "youtrack.url", url, insecure,
                  "token", &c->youtrack.url);
    else if (!yt || !config_setting_get_member(yt, "url"))
        diag_add(ld, line_of(yt), "youtrack: missing url (set url or YTBRIDGE_YOUTRACK_URL)");
    ld->tag = 0;

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
        /* Whether the file can be read is for conf_resolve() to find out. */
        c->youtrack.ca_file = path_resolve(ld, ca);
        c->pending->ca_file = str_dup(ld, ca);
        c->pending->ca_line = line_of(config_setting_get_member(yt, "ca_file"));
        c->pending->ca_slot = diag_slot(ld);
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

static void load_log(struct loader *ld, const config_setting_t *root, struct conf *c)
{
    static const char *const keys[] = {"level", "format"};
    const config_setting_t *g = member(ld, root, "", "log", CONFIG_TYPE_GROUP);
    const char *level = get_string(ld, g, "log", "level");
    const char *format = get_string(ld, g, "log", "format");
    char shown[80];

    check_keys(ld, g, "log", keys, sizeof(keys) / sizeof(keys[0]));
    /* Pure parsers of log.c's words: they touch no state of the logger. */
    if (level && log_level_parse(level, &c->log.level) == 0)
        c->log.level_set = 1;
    else if (level)
        diag_add(ld, line_of(config_setting_get_member(g, "level")),
                 "log.level: must be \"error\", \"warn\", \"info\" or \"debug\" (got \"%s\")",
                 printable(ld, level, shown, sizeof(shown)));
    if (format && log_format_parse(format, &c->log.format) == 0)
        c->log.format_set = 1;
    else if (format)
        diag_add(ld, line_of(config_setting_get_member(g, "format")),
                 "log.format: must be \"text\" or \"json\" (got \"%s\")",
                 printable(ld, format, shown, sizeof(shown)));
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
            printable(ld, listen, shown, sizeof(shown)));
    c->http.listen = strdup(listen ? listen : "127.0.0.1:9464");
    if (!c->http.listen)
        ld->nomem = 1;
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

void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
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
    sinks_free(conf->sinks, conf->n_sinks);
    chat_free(conf);
    for (size_t i = 0; i < conf->n_secrets; i++) {
        free(conf->secrets[i].setting);
        free(conf->secrets[i].source);
    }
    free(conf->secrets);
    conf_pending_free(conf->pending);
    free(conf);
}

/* A configuration with every default, and nothing pending yet; NULL when out of memory. */
static struct conf *conf_new(struct loader *ld)
{
    struct conf *c = calloc(1, sizeof(*c));

    if (c)
        c->pending = calloc(1, sizeof(*c->pending));
    if (c && c->pending)
        c->path = strdup(ld->file);
    if (!c || !c->path) {
        conf_free(c);
        ld->nomem = 1;
        return NULL;
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
    return c;
}

struct conf *load_text(struct loader *ld, const char *text, size_t len)
{
    struct conf *c = NULL;
    config_t cfg;
    int cfg_live = 0;

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
    c = conf_new(ld);
    if (!c)
        goto out;
    ld->conf = c;
    load_root(ld, config_root_setting(&cfg), c);
out:
    if (cfg_live)
        config_destroy(&cfg);
    return c;
}

/* Redacts with the set of secrets in ctx (struct redact): the loader's own, not the logger's. */
static void redact_with(char *dst, size_t dstlen, const char *src, void *ctx)
{
    redact_apply(ctx, dst, dstlen, src);
}

int conf_load_buffer(const char *text, size_t len, const char *name, struct conf **out,
                     struct conf_diags *diags)
{
    struct loader ld = {.file = name ? name : "(config)", .diags = diags};
    struct redact secrets = {0};
    struct conf *c = NULL;
    char *copy = NULL;
    int r;

    *out = NULL;
    if (len > CONF_MAX_SIZE) {
        diag_add(&ld, 0, "larger than %d KiB", CONF_MAX_SIZE / 1024);
    } else {
        /* config_read_string() wants a C string; the caller's bytes may not end in a NUL. */
        copy = malloc(len + 1);
        if (!copy) {
            ld.nomem = 1;
        } else {
            if (len > 0)
                memcpy(copy, text, len);
            copy[len] = '\0';
            c = load_text(&ld, copy, len);
            free(copy);
        }
    }
    for (size_t i = 0; i < ld.n_noted; i++) {
        if (redact_add(&secrets, ld.noted[i]) < 0)
            ld.nomem = 1;
    }
    r = loader_finish(&ld, redact_with, &secrets);
    redact_fini(&secrets);
    if (r == 0 && c) {
        /* The text's secrets go with it: conf_resolve() registers them with the logger. */
        c->pending->noted = ld.noted;
        c->pending->n_noted = ld.n_noted;
        ld.noted = NULL;
        ld.n_noted = 0;
        *out = c;
        c = NULL;
    }
    conf_free(c);
    loader_fini(&ld);
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
