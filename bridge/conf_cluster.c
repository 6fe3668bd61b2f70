/*
 * cluster: replicas that keep their state in etcd (issue 12). The endpoints (url_check_as()
 * with URL_ORIGIN: scheme://host:port, no path, plain http:// only to loopback or with
 * allow_insecure), the key prefix, the lease TTL, this replica's name, TLS files and etcd
 * authentication; conf_cluster_same() for reloads.
 *
 * Pure, like every walk: the TLS files are recorded for conf_resolve() to check, and a member
 * left unset is named there (YTBRIDGE_MEMBER or the host name). The password is a secret like
 * the others (password, password_file or password_env); no message quotes it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_loader.h"
#include "url.h"

#define LEASE_TTL_DEFAULT 10
#define PREFIX_DEFAULT    "/ytbridge"

int cluster_member_ok(const char *v)
{
    size_t n = strlen(v);

    return n >= 1 && n <= CONF_CLUSTER_MEMBER_MAX &&
           strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* What is wrong with a key prefix, or NULL when it is fine. */
static const char *prefix_problem(const char *v)
{
    size_t n = strlen(v);

    if (v[0] != '/')
        return "must start with '/'";
    if (n > CONF_CLUSTER_PREFIX_MAX)
        return "must be at most 200 bytes";
    for (const char *p = v; *p; p++) {
        if (*p <= ' ' || *p > '~')
            return "must be printable ASCII without spaces";
    }
    if (strstr(v, "//"))
        return "must not contain \"//\"";
    if (v[n - 1] == '/')
        return "must not end with '/' (\"/\" alone is refused too)";
    return NULL;
}

/* A string setting where "" means unset: the value, or NULL. */
static const char *get_optional(struct loader *ld, const config_setting_t *g, const char *key)
{
    const char *v = get_string(ld, g, "cluster", key);

    return v && *v ? v : NULL;
}

/*
 * cluster.etcd: 1..16 endpoints, each an origin, no two the same. exposed: what plain http://
 * would send in clear text.
 */
static void load_endpoints(struct loader *ld, const config_setting_t *g, struct conf_cluster *cl,
                           const char *exposed)
{
    const config_setting_t *s = get_strings(ld, g, "cluster", "etcd", "endpoint");
    unsigned flags = URL_ORIGIN | (cl->allow_insecure ? URL_INSECURE_OK : 0u);
    int n = s ? config_setting_length(s) : 0, at[CONF_CLUSTER_MAX_ENDPOINTS];

    if (!config_setting_get_member(g, "etcd"))
        diag_add(ld, line_of(g), "cluster: missing etcd (the endpoints of the etcd cluster)");
    if (n > CONF_CLUSTER_MAX_ENDPOINTS) {
        diag_add(ld, line_of(s), "cluster.etcd: at most %d endpoints (got %d)",
                 CONF_CLUSTER_MAX_ENDPOINTS, n);
        return;
    }
    if (n <= 0)
        return;
    cl->etcd = strv_alloc(ld, n);
    if (!cl->etcd)
        return;
    for (int i = 0; i < n; i++) {
        int line;
        const char *v = elem_string(s, i, &line);
        char label[64], *url = NULL;
        size_t k;

        if (!v) /* reported by get_strings() */
            continue;
        snprintf(label, sizeof(label), "cluster.etcd[%d]", i);
        url_check_as(ld, line, label, v, flags, "user and password_file", exposed, &url);
        if (!url)
            continue;
        for (k = 0; k < cl->n_etcd && !url_same_origin(cl->etcd[k], url); k++)
            ;
        if (k < cl->n_etcd) {
            diag_add(ld, line, "%s: the same endpoint as cluster.etcd[%d]", label, at[k]);
            free(url);
            continue;
        }
        at[cl->n_etcd] = i;
        cl->etcd[cl->n_etcd++] = url;
    }
}

static void load_prefix(struct loader *ld, const config_setting_t *g, struct conf_cluster *cl)
{
    const char *v = get_string(ld, g, "cluster", "prefix");
    const char *problem = v ? prefix_problem(v) : NULL;
    char shown[80];

    if (problem) {
        diag_add(ld, line_of(config_setting_get_member(g, "prefix")),
                 "cluster.prefix: %s (got \"%s\")", problem,
                 printable(ld, v, shown, sizeof(shown)));
        v = NULL;
    }
    cl->prefix = str_dup(ld, v ? v : PREFIX_DEFAULT);
}

/* cluster.member: a name given, or left (unset or "") for conf_resolve() to find. */
static void load_member(struct loader *ld, const config_setting_t *g, struct conf *c)
{
    const config_setting_t *s = config_setting_get_member(g, "member");
    const char *v = get_string(ld, g, "cluster", "member");
    char shown[80];

    if (v && *v) {
        if (cluster_member_ok(v))
            c->cluster.member = str_dup(ld, v);
        else
            diag_add(ld, line_of(s),
                     "cluster.member: must be 1 to %d of A-Z a-z 0-9 . _ - (got \"%s\")",
                     CONF_CLUSTER_MEMBER_MAX, printable(ld, v, shown, sizeof(shown)));
        return;
    }
    if (s && !v) /* of another type: reported */
        return;
    c->pending->member_open = 1;
    c->pending->member_line = s ? line_of(s) : line_of(g);
    c->pending->member_slot = diag_slot(ld);
}

/* ca_file, cert_file and key_file: recorded for conf_resolve(); cert and key go together. */
static void load_tls(struct loader *ld, const config_setting_t *g, struct conf_cluster *cl)
{
    static const struct {
        const char *key, *what;
        int secret;
    } files[] = {
        {"ca_file", "a CA bundle", 0},
        {"cert_file", "a certificate", 0},
        {"key_file", "a private key", 1},
    };
    char **outs[] = {&cl->ca_file, &cl->cert_file, &cl->key_file};
    const char *given[3];
    char label[64];

    for (size_t i = 0; i < 3; i++) {
        given[i] = get_optional(ld, g, files[i].key);
        key_path(label, sizeof(label), "cluster", files[i].key);
        if (given[i])
            file_take(ld, label, line_of(config_setting_get_member(g, files[i].key)), given[i],
                      files[i].what, files[i].secret, outs[i]);
    }
    if (!given[1] != !given[2])
        diag_add(ld, line_of(config_setting_get_member(g, given[1] ? "cert_file" : "key_file")),
                 "cluster.%s: needs %s (a client certificate goes with its key: set both or "
                 "neither)",
                 given[1] ? "cert_file" : "key_file", given[1] ? "key_file" : "cert_file");
}

/* user and its password (password, password_file or password_env): both or neither. */
static void load_auth(struct loader *ld, const config_setting_t *g, struct conf_cluster *cl)
{
    struct secret_src src = {
        .gpath = "cluster", .key = "password", .noun = "password", .kind = SECRET_PASSWORD};
    const char *user = get_optional(ld, g, "user");
    int found = secret_find(ld, g, &src);
    char shown[80];

    /* "" is unset, as for user (the template writes password_file = ""). */
    if (found == 1 && !*src.value)
        found = 0;
    if (user && !token_ok(user))
        diag_add(ld, line_of(config_setting_get_member(g, "user")),
                 "cluster.user: must not contain whitespace or control characters (got \"%s\")",
                 printable(ld, user, shown, sizeof(shown)));
    else if (user)
        cl->user = str_dup(ld, user);
    if (user && found == 0)
        diag_add(ld, line_of(config_setting_get_member(g, "user")),
                 "cluster.user: needs a password (set password, password_file or password_env)");
    else if (!user && found == 1)
        diag_add(ld, src.line, "%s: needs user (set user, or remove the password)", src.label);
    else if (found == 1)
        secret_take(ld, &src, secret_store, &cl->password);
}

void load_cluster(struct loader *ld, const config_setting_t *root, struct conf *c)
{
    static const char *const keys[] = {
        "etcd",     "prefix", "lease_ttl", "member",        "ca_file",      "cert_file",
        "key_file", "user",   "password",  "password_file", "password_env", "allow_insecure"};
    const config_setting_t *g = member(ld, root, "", "cluster", CONFIG_TYPE_GROUP);
    struct conf_cluster *cl = &c->cluster;
    const config_setting_t *s;
    const char *user;
    long long ttl = LEASE_TTL_DEFAULT;

    if (!g)
        return;
    cl->enabled = 1;
    check_keys(ld, g, "cluster", keys, sizeof(keys) / sizeof(keys[0]));
    s = member(ld, g, "cluster", "allow_insecure", CONFIG_TYPE_BOOL);
    if (s)
        cl->allow_insecure = config_setting_get_bool(s) ? 1 : 0;
    /* Read without a word: load_auth() reports what is wrong with user. */
    s = config_setting_get_member(g, "user");
    user = s ? config_setting_get_string(s) : NULL;
    load_endpoints(ld, g, cl, user && *user ? "password and the bridge's state" : "bridge's state");
    load_prefix(ld, g, cl);
    get_int(ld, g, "cluster", "lease_ttl", 2, 60, &ttl);
    cl->lease_ttl = (int)ttl;
    load_member(ld, g, c);
    load_tls(ld, g, cl);
    load_auth(ld, g, cl);
}

void conf_cluster_fini(struct conf_cluster *cl)
{
    strv_free(cl->etcd, cl->n_etcd);
    free(cl->prefix);
    free(cl->member);
    free(cl->ca_file);
    free(cl->cert_file);
    free(cl->key_file);
    free(cl->user);
    secret_free(cl->password);
}

/* strcmp() that takes NULL (equal only to NULL). */
static int same_str(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

int conf_cluster_same(const struct conf *a, const struct conf *b)
{
    const struct conf_cluster *x = &a->cluster, *y = &b->cluster;

    if (x->enabled != y->enabled)
        return 0;
    if (!x->enabled)
        return 1;
    if (x->n_etcd != y->n_etcd)
        return 0;
    for (size_t i = 0; i < x->n_etcd; i++) {
        if (!same_str(x->etcd[i], y->etcd[i]))
            return 0;
    }
    return same_str(x->prefix, y->prefix) && x->lease_ttl == y->lease_ttl &&
           same_str(x->member, y->member) && same_str(x->ca_file, y->ca_file) &&
           same_str(x->cert_file, y->cert_file) && same_str(x->key_file, y->key_file) &&
           same_str(x->user, y->user) && same_str(x->password, y->password) &&
           x->allow_insecure == y->allow_insecure;
}
