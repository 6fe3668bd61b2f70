/*
 * The walk of a configuration text (load_text()): the pre-scan, libconfig, then the root and its
 * youtrack, notify, log and http groups here, the sinks, chat and cluster groups in their own
 * files; and
 * conf_load_buffer(), the walk alone, and conf_free().
 *
 * Pure: a function of the text. A secret in a file or a variable is recorded, not read; the
 * problems YTBRIDGE_YOUTRACK_URL or _TOKEN would make moot are tagged (conf_resolve.c decides).
 * The result is built in a local and published only when there was no problem.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_loader.h"
#include "redact.h"

#define DEFAULT_MAX_BODY (64L * 1024 * 1024)

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
    if (ca && *ca) /* whether the file can be read is for conf_resolve() to find out */
        file_take(ld, "youtrack.ca_file", line_of(config_setting_get_member(yt, "ca_file")), ca,
                  "a CA bundle", 0, &c->youtrack.ca_file);
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
                                       "http",     "log",       "chat",   "cluster"};
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
    load_cluster(ld, root, c);
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
    conf_cluster_fini(&conf->cluster);
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
