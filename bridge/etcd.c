/*
 * The etcd v3 JSON client (etcd.h): requests go through http.c (the one libcurl module), answers
 * are read with jansson, keys and values are base64 through libcrypto (the library hmac.c links
 * already). What etcd sends and when is written down in doc/etcd.md.
 *
 * Invariants:
 *   - one request path for both ways of calling: a struct call is started by attempt() on the
 *     client's http (the daemon's loop) or on its private http (the sync loop), and ends exactly
 *     once in finish(), which counts it and runs its callback;
 *   - a call tries each endpoint at most once, starting at the one that answered last; only a
 *     failure that says "this member cannot serve now" moves on (no connection, a timeout, a 5xx,
 *     "no leader"); an answer etcd gave on purpose (a refused txn size, a full database, bad
 *     credentials) ends the call at once, because every other member would say the same;
 *   - the password and the token are only ever in the request bodies and headers handed to
 *     http_start() and in this struct (wiped before it is freed); messages quote etcd's words,
 *     which never contain them.
 */
#define OPENSSL_API_COMPAT 30000
#define OPENSSL_NO_DEPRECATED

#include "etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "http.h"
#include "log.h"

#define DEFAULT_TIMEOUT_MS 2000L

struct call;

struct etcd {
    uv_loop_t *loop;
    struct http *http;      /* on loop: etcd_call() */
    uv_loop_t sync_loop;    /* private: etcd_call_sync() */
    struct http *sync_http; /* on sync_loop */
    int sync_loop_ok;       /* sync_loop was initialised */
    char **endpoints;
    size_t n_endpoints;
    size_t current; /* the endpoint that answered last */
    char *ca_file, *cert_file, *key_file;
    char *user;      /* for messages */
    char *auth_body; /* secret: the login's body; NULL without a user (or auth off in etcd) */
    char *token;     /* secret; NULL until logged in */
    long timeout_ms;
    struct call *calls; /* asynchronous calls in flight */
    struct etcd_counts counts;
};

struct call {
    struct etcd *e;
    struct http *h;
    struct call *prev, *next; /* on e->calls (asynchronous calls only) */
    char *path;
    char *body;
    size_t body_len;
    size_t ep;    /* the endpoint being tried */
    size_t tries; /* endpoints that failed so far */
    int authing;  /* the request in flight is the authentication */
    int reauthed; /* the token was renewed once for this call */
    struct http_xfer *xfer;
    etcd_cb cb;
    void *userdata;
    char last[200]; /* the last endpoint's failure, for "no endpoint answered" */
};

/* ---- base64 ---- */

char *etcd_base64(const void *p, size_t n)
{
    char *out;

    if (n > (size_t)INT_MAX / 4 * 3 - 3)
        return NULL;
    out = malloc((n + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, n ? p : (const void *)"", (int)n);
    return out;
}

static int b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int etcd_unbase64(const char *s, size_t len, char **out, size_t *outlen)
{
    size_t pad = 0;
    char *buf;
    int n;

    *out = NULL;
    *outlen = 0;
    /* EVP_DecodeBlock skips blanks and counts padding as zero bytes: check the text first. */
    if (len % 4 || len > (size_t)INT_MAX)
        return -EPROTO;
    while (pad < 2 && pad < len && s[len - 1 - pad] == '=')
        pad++;
    for (size_t i = 0; i < len - pad; i++) {
        if (!b64_char((unsigned char)s[i]))
            return -EPROTO;
    }
    buf = malloc(len / 4 * 3 + 1);
    if (!buf)
        return -ENOMEM;
    n = len ? EVP_DecodeBlock((unsigned char *)buf, (const unsigned char *)s, (int)len) : 0;
    if (n < 0 || (size_t)n < pad) {
        free(buf);
        return -EPROTO;
    }
    n -= (int)pad;
    buf[n] = '\0';
    *out = buf;
    *outlen = (size_t)n;
    return 0;
}

/* ---- request pieces ---- */

char *etcd_prefix_end(const char *prefix)
{
    size_t n = strlen(prefix);
    char *end = strdup(prefix);

    if (!end)
        return NULL;
    /* The smallest key greater than every key that starts with prefix: the last byte below
     * 0xff plus one, cut there. A prefix of only 0xff bytes (or none) ends nowhere: "". */
    while (n > 0) {
        if ((unsigned char)end[n - 1] != 0xff) {
            end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
            end[n] = '\0';
            return end;
        }
        n--;
    }
    end[0] = '\0';
    return end;
}

/* Sets o[field] to the base64 of p (n bytes). 0 or -ENOMEM. */
static int set_b64(json_t *o, const char *field, const void *p, size_t n)
{
    char *b = etcd_base64(p, n);
    int r = b && json_object_set_new(o, field, json_string(b)) == 0 ? 0 : -ENOMEM;

    free(b);
    return r;
}

/* o[field] = v as etcd writes 64-bit numbers: a string. 0 or -ENOMEM. */
static int set_int(json_t *o, const char *field, int64_t v)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return json_object_set_new(o, field, json_string(buf)) == 0 ? 0 : -ENOMEM;
}

/* {"key": b64(key)} plus "range_end" ("" stands for etcd's "\0": every key from key on). */
static json_t *key_range(const char *key, const char *range_end)
{
    static const char zero[1] = {0};
    json_t *o = json_object();

    if (!o || set_b64(o, "key", key, strlen(key)) != 0)
        goto fail;
    if (range_end && range_end[0] && set_b64(o, "range_end", range_end, strlen(range_end)) != 0)
        goto fail;
    if (range_end && !range_end[0] && set_b64(o, "range_end", zero, 1) != 0)
        goto fail;
    return o;
fail:
    json_decref(o);
    return NULL;
}

/* {name: inner}, stealing inner (jansson's _new setters take the value even when they fail). */
static json_t *wrap(const char *name, json_t *inner)
{
    json_t *o;

    if (!inner)
        return NULL;
    o = json_object();
    if (!o) {
        json_decref(inner);
        return NULL;
    }
    if (json_object_set_new(o, name, inner) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *etcd_op_put(const char *key, const void *value, size_t len, int64_t lease)
{
    json_t *o = key_range(key, NULL);

    if (o && (set_b64(o, "value", value, len) != 0 || (lease && set_int(o, "lease", lease) != 0))) {
        json_decref(o);
        return NULL;
    }
    return wrap("request_put", o);
}

json_t *etcd_op_delete(const char *key, const char *range_end)
{
    return wrap("request_delete_range", key_range(key, range_end));
}

json_t *etcd_op_range(const char *key, const char *range_end)
{
    return wrap("request_range", key_range(key, range_end));
}

json_t *etcd_op_body(json_t *op)
{
    const char *name;
    json_t *value, *body = NULL;

    json_object_foreach(op, name, value)
    {
        body = json_incref(value);
        break;
    }
    json_decref(op);
    return body;
}

/* {"key", "target": target, "result": "EQUAL", field: value}, stealing value. */
static json_t *compare(const char *key, const char *target, const char *field, json_t *value)
{
    json_t *o = key_range(key, NULL);

    if (!o || !value) {
        json_decref(o);
        json_decref(value);
        return NULL;
    }
    if (json_object_set_new(o, field, value) != 0 ||
        json_object_set_new(o, "target", json_string(target)) != 0 ||
        json_object_set_new(o, "result", json_string("EQUAL")) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *int_string(int64_t v)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return json_string(buf);
}

json_t *etcd_cmp_lease(const char *key, int64_t lease)
{
    return compare(key, "LEASE", "lease", int_string(lease));
}

json_t *etcd_cmp_create(const char *key, int64_t revision)
{
    return compare(key, "CREATE", "create_revision", int_string(revision));
}

json_t *etcd_cmp_value(const char *key, const void *value, size_t len)
{
    char *b = etcd_base64(value, len);
    json_t *v = b ? json_string(b) : NULL;

    free(b);
    return compare(key, "VALUE", "value", v);
}

json_t *etcd_txn(json_t *cmp, json_t *success, json_t *failure)
{
    static const char *const names[3] = {"compare", "success", "failure"};
    json_t *parts[3] = {cmp ? cmp : json_array(), success ? success : json_array(),
                        failure ? failure : json_array()};
    json_t *o = json_object();
    int ok = o != NULL;

    for (int i = 0; i < 3; i++) {
        if (!o)
            json_decref(parts[i]);
        else if (!parts[i] || json_object_set_new(o, names[i], parts[i]) != 0)
            ok = 0;
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- answer pieces ---- */

/* A 64-bit number as etcd sends it: a decimal string (or a plain number). 0 or -EPROTO. */
static int read_int(const json_t *v, int64_t *out)
{
    *out = 0;
    if (!v)
        return 0;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return -EPROTO;
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (!s[0] || *end || errno || (s[0] != '-' && (s[0] < '0' || s[0] > '9')))
        return -EPROTO;
    *out = n;
    return 0;
}

int64_t etcd_int(const json_t *obj, const char *field)
{
    int64_t v = 0;

    if (json_is_object(obj))
        read_int(json_object_get(obj, field), &v);
    return v;
}

int etcd_txn_succeeded(const json_t *body)
{
    return json_is_object(body) && json_is_true(json_object_get(body, "succeeded"));
}

void etcd_kvs_free(struct etcd_kv *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].key);
        free(v[i].value);
    }
    free(v);
}

/* Decodes field (base64, absent: empty) of kv. 0, -EPROTO or -ENOMEM. */
static int kv_bytes(const json_t *kv, const char *field, int required, char **out, size_t *len)
{
    const json_t *v = json_object_get(kv, field);

    if (!v && !required)
        return etcd_unbase64("", 0, out, len);
    if (!json_is_string(v))
        return -EPROTO;
    return etcd_unbase64(json_string_value(v), json_string_length(v), out, len);
}

static int read_kv(const json_t *kv, struct etcd_kv *out)
{
    static const char *const nums[4] = {"create_revision", "mod_revision", "version", "lease"};
    int64_t *dst[4] = {&out->create_revision, &out->mod_revision, &out->version, &out->lease};
    int r;

    if (!json_is_object(kv))
        return -EPROTO;
    r = kv_bytes(kv, "key", 1, &out->key, &out->key_len);
    if (!r)
        r = kv_bytes(kv, "value", 0, &out->value, &out->value_len);
    for (int i = 0; i < 4 && !r; i++)
        r = read_int(json_object_get(kv, nums[i]), dst[i]);
    return r;
}

int etcd_kvs(const json_t *range_response, struct etcd_kv **out, size_t *n)
{
    const json_t *kvs = json_object_get(range_response, "kvs");
    struct etcd_kv *v = NULL;
    size_t count = 0;
    int r = 0;

    *out = NULL;
    *n = 0;
    if (!json_is_object(range_response))
        return -EPROTO;
    if (!kvs)
        return 0;
    if (!json_is_array(kvs))
        return -EPROTO;
    count = json_array_size(kvs);
    v = calloc(count ? count : 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < count && !r; i++)
        r = read_kv(json_array_get(kvs, i), &v[i]);
    if (r) {
        etcd_kvs_free(v, count);
        return r;
    }
    *out = v;
    *n = count;
    return 0;
}

/* ---- answers ---- */

/* Whether etcd's words s contain any of the NULL-terminated list. */
static int says(const char *s, const char *const *words)
{
    for (; *words; words++) {
        if (strstr(s, *words))
            return 1;
    }
    return 0;
}

/* The failures of one member, not of the request: another member may serve it. */
static const char *const member_trouble[] = {
    "no leader",   "request timed out", "leader changed",
    "not capable", "too many requests", "server is stopping",
    NULL,
};
/* The token expired or was never sent (etcd 3.4 says both with a 400 or a 401). */
static const char *const token_trouble[] = {"invalid auth token", "user name is empty", NULL};
static const char *const too_big[] = {"request is too large", "too many operations", NULL};

/* gRPC codes etcd's gateway puts in "code" (google.golang.org/grpc/codes). */
#define GRPC_RESOURCE_EXHAUSTED 8
#define GRPC_PERMISSION_DENIED  7
#define GRPC_UNAVAILABLE        14
#define GRPC_UNAUTHENTICATED    16

/* An error answer: {"error", "message", "code"} with an HTTP status other than 200. */
static enum etcd_verdict error_answer(long status, const json_t *root, struct etcd_reply *r)
{
    const char *msg = json_string_value(json_object_get(root, "message"));
    int64_t code = etcd_int(root, "code");

    if (!msg)
        msg = json_string_value(json_object_get(root, "error"));
    if (!json_is_object(root) || !msg) {
        snprintf(r->message, sizeof(r->message), "HTTP %ld, and not etcd's JSON", status);
        r->error = -EPROTO;
        return status >= 500 ? ETCD_VERDICT_NEXT : ETCD_VERDICT_DONE;
    }
    log_redact(r->message, sizeof(r->message), msg);
    if (says(msg, too_big) || status == 413) {
        r->error = -E2BIG;
    } else if (code == GRPC_RESOURCE_EXHAUSTED && strstr(msg, "space exceeded")) {
        r->error = -ENOSPC;
    } else if (code == GRPC_UNAUTHENTICATED || says(msg, token_trouble)) {
        r->error = -EACCES;
        return ETCD_VERDICT_REAUTH;
    } else if (code == GRPC_PERMISSION_DENIED || strstr(msg, "authentication failed")) {
        r->error = -EACCES;
    } else if (code == GRPC_UNAVAILABLE || status >= 500 || says(msg, member_trouble)) {
        r->error = -EIO;
        return ETCD_VERDICT_NEXT;
    } else {
        r->error = -EIO;
    }
    return ETCD_VERDICT_DONE;
}

enum etcd_verdict etcd_answer(long status, const char *body, size_t len, struct etcd_reply *r)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    enum etcd_verdict v;

    memset(r, 0, sizeof(*r));
    if (status == 200 && json_is_object(root)) {
        const json_t *hdr = json_object_get(root, "header");
        if (!hdr) /* /v3/lease/keepalive wraps its answer in "result" */
            hdr = json_object_get(json_object_get(root, "result"), "header");
        r->revision = etcd_int(hdr, "revision");
        r->body = root;
        return ETCD_VERDICT_DONE;
    }
    if (status == 200) {
        snprintf(r->message, sizeof(r->message), "the answer is not etcd's JSON");
        r->error = -EPROTO;
        v = ETCD_VERDICT_DONE;
    } else {
        v = error_answer(status, root, r);
    }
    json_decref(root);
    return v;
}

/* ---- calls ---- */

static void call_free(struct call *c)
{
    if (!c)
        return;
    free(c->path);
    free(c->body);
    free(c);
}

static void on_http(void *userdata, const struct http_response *res);

/* Starts the call's request (or the authentication it needs first) on endpoint c->ep. */
static int attempt(struct call *c)
{
    struct etcd *e = c->e;
    const char *ep = e->endpoints[c->ep];
    const char *path = c->path;
    const char *headers[4] = {"Content-Type: application/json", "Expect:", NULL, NULL};
    char *auth = NULL, *url;
    int r;

    c->authing = e->auth_body && !e->token;
    if (c->authing)
        path = "/v3/auth/authenticate";
    url = malloc(strlen(ep) + strlen(path) + 1);
    if (!url)
        return -ENOMEM;
    strcpy(url, ep);
    strcat(url, path);
    if (!c->authing && e->token) {
        size_t n = strlen(e->token) + sizeof("Authorization: ");
        auth = malloc(n);
        if (!auth) {
            free(url);
            return -ENOMEM;
        }
        snprintf(auth, n, "Authorization: %s", e->token);
        headers[2] = auth;
    }
    struct http_request req = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = c->authing ? e->auth_body : c->body,
        .body_len = c->authing ? strlen(e->auth_body) : c->body_len,
        .timeout_ms = e->timeout_ms,
        .max_body = ETCD_ANSWER_MAX,
        .ca_file = e->ca_file,
        .cert_file = e->cert_file,
        .key_file = e->key_file,
    };
    r = http_start(c->h, &req, on_http, c, &c->xfer);
    if (auth) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    free(url);
    return r;
}

/* Ends the call: counts it, runs the callback with r, frees the call and r's body. */
static void finish(struct call *c, struct etcd_reply *r)
{
    struct etcd *e = c->e;

    if (r->error == 0)
        e->counts.ok++;
    else if (r->error == -EHOSTUNREACH)
        e->counts.unreachable++;
    else
        e->counts.error++;
    if (c->h == e->http) {
        if (c->prev)
            c->prev->next = c->next;
        else
            e->calls = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    c->cb(c->userdata, r);
    json_decref(r->body);
    r->body = NULL;
    call_free(c);
}

/* Fails the call with error and a message. */
__attribute__((format(printf, 3, 4))) static void fail(struct call *c, int error, const char *fmt,
                                                       ...)
{
    struct etcd_reply r = {.error = error};
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r.message, sizeof(r.message), fmt, ap);
    va_end(ap);
    finish(c, &r);
}

/* This endpoint could not serve the call: on to the next one, or fail when each was tried. */
static void next_endpoint(struct call *c, const char *why)
{
    struct etcd *e = c->e;
    int r;

    snprintf(c->last, sizeof(c->last), "%s: %s", e->endpoints[c->ep], why);
    log_debug("etcd", "%s%s: %s", e->endpoints[c->ep], c->path, why);
    c->tries++;
    if (c->tries >= e->n_endpoints) {
        fail(c, -EHOSTUNREACH, "no etcd endpoint could serve %s (last: %s)", c->path, c->last);
        return;
    }
    c->ep = (c->ep + 1) % e->n_endpoints;
    r = attempt(c);
    if (r)
        fail(c, r, "cannot start a request to %s: %s", e->endpoints[c->ep], strerror(-r));
}

static void drop_token(struct etcd *e)
{
    if (e->token) {
        explicit_bzero(e->token, strlen(e->token));
        free(e->token);
        e->token = NULL;
    }
}

/* The answer to /v3/auth/authenticate: the token, then the call itself. */
static void on_auth(struct call *c, const struct http_response *res)
{
    struct etcd *e = c->e;
    struct etcd_reply r;
    enum etcd_verdict v = etcd_answer(res->status, res->body, res->body_len, &r);
    const char *token = json_string_value(json_object_get(r.body, "token"));
    int rc;

    if (v == ETCD_VERDICT_NEXT) {
        next_endpoint(c, r.message);
        return;
    }
    if (r.error && strstr(r.message, "authentication is not enabled")) {
        /* Nothing to log in to: talk without a token from now on. */
        explicit_bzero(e->auth_body, strlen(e->auth_body));
        free(e->auth_body);
        e->auth_body = NULL;
    } else if (r.error || !token) {
        json_decref(r.body);
        fail(c, -EACCES, "etcd refused the login of user %s: %s", e->user,
             r.error ? r.message : "no token in the answer");
        return;
    } else {
        drop_token(e); /* another call may have logged in meanwhile */
        e->token = strdup(token);
        json_decref(r.body);
        if (!e->token) {
            fail(c, -ENOMEM, "out of memory");
            return;
        }
    }
    rc = attempt(c);
    if (rc)
        fail(c, rc, "cannot start a request to %s: %s", e->endpoints[c->ep], strerror(-rc));
}

static void on_http(void *userdata, const struct http_response *res)
{
    struct call *c = userdata;
    struct etcd *e = c->e;
    struct etcd_reply r;
    enum etcd_verdict v;

    c->xfer = NULL;
    if (res->result == HTTP_ERR_TOO_BIG) {
        fail(c, -EPROTO, "%s%s: answer over the cap (etcd.h ETCD_ANSWER_MAX)", e->endpoints[c->ep],
             c->path);
        return;
    }
    if (res->result != HTTP_DONE) {
        next_endpoint(c, res->error ? res->error : "no answer");
        return;
    }
    if (c->authing) {
        on_auth(c, res);
        return;
    }
    v = etcd_answer(res->status, res->body, res->body_len, &r);
    if (v == ETCD_VERDICT_NEXT) {
        next_endpoint(c, r.message);
        return;
    }
    if (v == ETCD_VERDICT_REAUTH && e->auth_body && !c->reauthed) {
        /* The token expired (or the member restarted): log in again once, then repeat. */
        c->reauthed = 1;
        drop_token(e);
        int rc = attempt(c);
        if (rc)
            fail(c, rc, "cannot start a request to %s: %s", e->endpoints[c->ep], strerror(-rc));
        return;
    }
    r.endpoint = e->endpoints[c->ep];
    if (!r.error)
        e->current = c->ep;
    finish(c, &r);
}

/* A call of path with body (stolen) on h, not started yet. NULL on ENOMEM or a NULL body. */
static struct call *call_new(struct etcd *e, struct http *h, const char *path, json_t *body,
                             etcd_cb cb, void *userdata)
{
    struct call *c = body ? calloc(1, sizeof(*c)) : NULL;

    if (c) {
        c->e = e;
        c->h = h;
        c->ep = e->current;
        c->cb = cb;
        c->userdata = userdata;
        c->path = strdup(path);
        c->body = json_dumps(body, JSON_COMPACT);
        if (!c->path || !c->body) {
            call_free(c);
            c = NULL;
        } else {
            c->body_len = strlen(c->body);
        }
    }
    json_decref(body);
    return c;
}

int etcd_call(struct etcd *e, const char *path, json_t *body, etcd_cb cb, void *userdata)
{
    struct call *c;
    int r;

    if (!e->http || !cb) {
        json_decref(body);
        return -EINVAL;
    }
    c = call_new(e, e->http, path, body, cb, userdata);
    if (!c)
        return -ENOMEM;
    r = attempt(c);
    if (r) {
        call_free(c);
        return r;
    }
    c->next = e->calls;
    if (e->calls)
        e->calls->prev = c;
    e->calls = c;
    return 0;
}

struct sync_wait {
    struct etcd_reply *out;
    int done;
};

static void on_sync_reply(void *userdata, const struct etcd_reply *r)
{
    struct sync_wait *w = userdata;

    *w->out = *r;
    json_incref(r->body);
    w->done = 1;
}

int etcd_call_sync(struct etcd *e, const char *path, json_t *body, struct etcd_reply *out)
{
    struct sync_wait w = {out, 0};
    struct call *c = call_new(e, e->sync_http, path, body, on_sync_reply, &w);
    int r;

    memset(out, 0, sizeof(*out));
    if (!c) {
        snprintf(out->message, sizeof(out->message), "out of memory");
        out->error = -ENOMEM;
        return out->error;
    }
    r = attempt(c);
    if (r) {
        call_free(c);
        snprintf(out->message, sizeof(out->message), "cannot start a request: %s", strerror(-r));
        out->error = r;
        e->counts.error++;
        return r;
    }
    /* Every request has a timeout, so the private loop always comes back to us. */
    while (!w.done && uv_run(&e->sync_loop, UV_RUN_ONCE))
        ;
    if (!w.done) {
        /* Cannot happen while a transfer is active; do not leave one behind if it does. */
        http_cancel(c->xfer);
        call_free(c);
        snprintf(out->message, sizeof(out->message), "the request stalled");
        out->error = -EIO;
    }
    return out->error;
}

void etcd_reply_fini(struct etcd_reply *r)
{
    if (!r)
        return;
    json_decref(r->body);
    r->body = NULL;
}

void etcd_cancel_all(struct etcd *e)
{
    while (e->calls) {
        struct call *c = e->calls;
        e->calls = c->next;
        http_cancel(c->xfer);
        call_free(c);
    }
}

void etcd_counts(const struct etcd *e, struct etcd_counts *out)
{
    *out = e->counts;
}

/* ---- the client ---- */

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void etcd_free(struct etcd *e)
{
    if (!e)
        return;
    etcd_cancel_all(e);
    http_free(e->http);
    if (e->sync_loop_ok) {
        http_free(e->sync_http);
        uv_run(&e->sync_loop, UV_RUN_DEFAULT); /* the handles' close callbacks */
        if (uv_loop_close(&e->sync_loop) != 0)
            log_warn("etcd", "the private loop still had handles when closed");
    }
    for (size_t i = 0; i < e->n_endpoints; i++)
        free(e->endpoints[i]);
    free(e->endpoints);
    free(e->ca_file);
    free(e->cert_file);
    free(e->key_file);
    free(e->user);
    wipe_free(e->auth_body);
    drop_token(e);
    free(e);
}

/* *dst = a copy of src (NULL stays NULL). 0 or -ENOMEM. */
static int dup_opt(char **dst, const char *src)
{
    *dst = src ? strdup(src) : NULL;
    return src && !*dst ? -ENOMEM : 0;
}

/* The body of /v3/auth/authenticate, made once (secret). NULL on ENOMEM. */
static char *auth_body(const char *user, const char *password)
{
    json_t *o = json_pack("{s:s, s:s}", "name", user, "password", password ? password : "");
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    return s;
}

static int copy_opts(struct etcd *e, const struct etcd_opts *o)
{
    e->endpoints = calloc(o->n_endpoints, sizeof(*e->endpoints));
    if (!e->endpoints)
        return -ENOMEM;
    for (size_t i = 0; i < o->n_endpoints; i++) {
        size_t n = strlen(o->endpoints[i]);
        while (n > 0 && o->endpoints[i][n - 1] == '/') /* the paths bring their own */
            n--;
        e->endpoints[i] = strndup(o->endpoints[i], n);
        if (!e->endpoints[i])
            return -ENOMEM;
        e->n_endpoints++;
    }
    if (dup_opt(&e->ca_file, o->ca_file) || dup_opt(&e->cert_file, o->cert_file) ||
        dup_opt(&e->key_file, o->key_file) || dup_opt(&e->user, o->user))
        return -ENOMEM;
    if (o->user && o->user[0]) {
        e->auth_body = auth_body(o->user, o->password);
        if (!e->auth_body)
            return -ENOMEM;
    }
    e->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    return 0;
}

int etcd_new(struct etcd **out, uv_loop_t *loop, const struct etcd_opts *o, char *err,
             size_t errlen)
{
    struct etcd *e;
    int r;

    *out = NULL;
    if (!o->n_endpoints || !o->endpoints) {
        snprintf(err, errlen, "etcd: no endpoint");
        return -EINVAL;
    }
    e = calloc(1, sizeof(*e));
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    e->loop = loop;
    r = copy_opts(e, o);
    if (r) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    r = uv_loop_init(&e->sync_loop);
    if (r) {
        snprintf(err, errlen, "etcd: cannot create a loop: %s", uv_strerror(r));
        r = -EIO;
        goto fail;
    }
    e->sync_loop_ok = 1;
    r = http_new(&e->sync_http, &e->sync_loop);
    if (!r && loop)
        r = http_new(&e->http, loop);
    if (r) {
        snprintf(err, errlen, "etcd: cannot create an HTTP client: %s", strerror(-r));
        goto fail;
    }
    *out = e;
    return 0;
fail:
    etcd_free(e);
    return r;
}
