/*
 * YouTrack poller (doc/youtrack.md).
 *
 * A poll walks a small state machine: modern pages ($top/$skip until a short page), or, for the
 * 2017.x API, the legacy list then the legacy names. Any failure ends the whole poll with one
 * classified error and the partial list is dropped: no project may ever look removed because a
 * fetch failed. The token goes into one header line built here and is never logged.
 *
 * Every text a server sent that reaches res.message (an error description, a Location, a
 * Content-Type, a repeated key) is redacted before it is cut, then cut as valid UTF-8
 * (upstream_text()), and failf() redacts the whole message once more: /readyz, alerts and the
 * chat status answer are all made from res.message, so they show nothing that was not cleaned
 * here. A server that echoes our Authorization header cannot publish the token through us.
 */
#include "youtrack.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "jscan.h"
#include "log.h"
#include "url.h"
#include "utf8.h"

/* Fields the account may not see are left out: any key may be missing (doc/youtrack.md §3). */
#define MODERN_FIELDS "id,shortName,name,archived,leader(login,name),description"

#define MAX_PROJECTS  2000000
#define MAX_REDIRECTS 3

enum step {
    STEP_IDLE = 0,
    STEP_MODERN,
    STEP_LEGACY_LIST,
    STEP_LEGACY_NAMES,
};

struct youtrack {
    struct http *http;
    const struct conf *conf;
    enum youtrack_flavour flavour; /* detected or configured */
    char *auth_header;
    enum step step;
    struct http_xfer *xfer;
    char *url; /* of the request in flight */
    int redirects;
    size_t skip;
    uint64_t started_ns;
    youtrack_cb cb;
    void *userdata;
    struct youtrack_result res;
};

const char *youtrack_error_name(enum youtrack_error e)
{
    static const char *const names[] = {"ok", "auth", "network", "server", "protocol"};
    return (unsigned)e < sizeof(names) / sizeof(names[0]) ? names[e] : "unknown";
}

enum youtrack_flavour youtrack_flavour(const struct youtrack *yt)
{
    return yt->flavour;
}

/*
 * A short excerpt of text a server sent, for res.message: redacted while still whole (a secret
 * straddling the cut is blanked by log_redact()), then cut to max bytes on a character boundary
 * as valid UTF-8 with control characters blanked, so jansson never refuses the message.
 */
static void upstream_text(char *out, size_t outlen, const char *s, size_t max)
{
    char red[1024];

    if (max + 1 > sizeof(red))
        max = sizeof(red) - 1;
    log_redact(red, max + 1, s);
    utf8_clean(out, outlen, red, strlen(red), max);
}

/* ---- parsers ---- */

/* A ceiling far above any real server, so a hostile one cannot exhaust memory page by page. */
static int check_count(struct jscan *js, const struct project_list *l)
{
    return l->n >= MAX_PROJECTS ? jscan_fail(js, "more than 2,000,000 projects") : 0;
}

static int read_modern_project(struct jscan *js, void *ctx)
{
    struct project_list *l = ctx;
    return check_count(js, l) ? -EPROTO : project_read_json(js, l, 0);
}

/* Walks a top-level array, calling read() per element; checks nothing follows it. */
static long read_array(const char *body, size_t len, void *ctx, int (*read)(struct jscan *, void *),
                       char *err, size_t errlen)
{
    struct jscan js;
    long n = 0;
    int r;

    jscan_init(&js, body, len);
    if (jscan_peek(&js) != JSCAN_ARRAY) {
        r = jscan_fail(&js, jscan_peek(&js) == JSCAN_NONE ? "empty body, expected a JSON array"
                                                          : "expected a JSON array");
        goto out;
    }
    r = jscan_array_begin(&js);
    while (!r) {
        r = jscan_array_next(&js);
        if (r <= 0)
            break;
        r = read(&js, ctx);
        n++;
    }
    if (!r)
        r = jscan_end(&js);
out:
    if (r)
        snprintf(err, errlen, "%s", r == -ENOMEM ? "out of memory" : js.err);
    jscan_fini(&js);
    return r ? r : n;
}

/*
 * Fails (-EPROTO, why in err) when two of keys[0..n) are equal: one answer naming two projects
 * with one key contradicts itself (README, "How it decides what changed"). Returns
 * n (the parse result) when all differ. Sorts keys.
 */
static long check_unique(const char **keys, size_t n_keys, long n, const char *what, char *err,
                         size_t errlen)
{
    char shown[80];
    const char *dup = project_ids_duplicate(keys, n_keys);

    if (!dup)
        return n;
    upstream_text(shown, sizeof(shown), dup, 64);
    snprintf(err, errlen, "two projects with the %s \"%s\" in one answer", what, shown);
    return -EPROTO;
}

/* check_unique() over the keys of l->v[from..]. */
static long check_unique_since(const struct project_list *l, size_t from, long n, const char *what,
                               char *err, size_t errlen)
{
    const char **keys;
    size_t k = l->n - from;

    if (n < 0 || k < 2)
        return n;
    keys = malloc(k * sizeof(*keys));
    if (!keys) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < k; i++)
        keys[i] = l->v[from + i].id;
    n = check_unique(keys, k, n, what, err, errlen);
    free(keys);
    return n;
}

long youtrack_parse_projects(const char *body, size_t len, struct project_list *into, char *err,
                             size_t errlen)
{
    size_t from = into->n;
    long n = read_array(body, len, into, read_modern_project, err, errlen);
    /* Pages may overlap (projects added meanwhile); one page never repeats an id. */
    return check_unique_since(into, from, n, "id", err, errlen);
}

/* A legacy entry's fields, as read by the member callbacks below. */
struct legacy {
    struct project_list *l;
    const char *id, *short_name, *name;
};

static int on_legacy_member(struct jscan *js, const char *k, size_t kl, void *ctx)
{
    struct legacy *e = ctx;
    if (jscan_key_is(k, kl, "id"))
        return project_read_string(js, e->l, PROJECT_MAX_ID_LEN + 1, &e->id, "id");
    if (jscan_key_is(k, kl, "shortName"))
        return project_read_string(js, e->l, PROJECT_MAX_ID_LEN + 1, &e->short_name, "shortName");
    if (jscan_key_is(k, kl, "name"))
        return project_read_string(js, e->l, PROJECT_MAX_NAME_LEN, &e->name, "name");
    return jscan_skip(js);
}

static int read_legacy(struct jscan *js, struct legacy *e)
{
    if (jscan_peek(js) != JSCAN_OBJECT)
        return jscan_fail(js, "a project is not an object");
    return jscan_object_each(js, on_legacy_member, e);
}

static int valid_key(const char *key)
{
    return key && key[0] && strlen(key) <= PROJECT_MAX_ID_LEN;
}

/* One element of /rest/admin/project: {"id": "SHORT", "url": "..."}. */
static int read_legacy_ref(struct jscan *js, void *ctx)
{
    struct project_list *l = ctx;
    struct legacy e = {.l = l};
    int r = check_count(js, l) ? -EPROTO : read_legacy(js, &e);
    if (r)
        return r;
    if (!valid_key(e.id))
        return jscan_fail(js, "a project without a valid \"id\"");
    /* The legacy id is the short name; the name comes from /rest/project/all. */
    struct project p = {.id = e.id, .short_name = e.id, .archived = TRI_UNKNOWN};
    return project_list_push(l, &p);
}

long youtrack_parse_legacy_list(const char *body, size_t len, struct project_list *into, char *err,
                                size_t errlen)
{
    size_t from = into->n;
    long n = read_array(body, len, into, read_legacy_ref, err, errlen);
    /* The short name is the legacy key: the list is one answer, so no repeat is benign. */
    return check_unique_since(into, from, n, "short name", err, errlen);
}

/* The names answer as it is read: the list to fill and every short name seen, for repeats. */
struct legacy_names {
    struct project_list *l;
    const char **keys;
    size_t n, cap;
};

/* One element of /rest/project/all: {"name": "...", "shortName": "..."}; fills the name. */
static int read_legacy_name(struct jscan *js, void *ctx)
{
    struct legacy_names *ln = ctx;
    struct project_list *l = ln->l;
    struct legacy e = {.l = l};
    int r = read_legacy(js, &e);
    if (r)
        return r;
    if (!valid_key(e.short_name))
        return jscan_fail(js, "a project without a \"shortName\"");
    if (ln->n == ln->cap) {
        if (ln->n >= MAX_PROJECTS)
            return jscan_fail(js, "more than 2,000,000 projects");
        size_t cap = ln->cap ? ln->cap * 2 : 64;
        const char **v = realloc(ln->keys, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        ln->keys = v;
        ln->cap = cap;
    }
    ln->keys[ln->n++] = e.short_name;
    /* Visible here but not in the admin list: the admin list rules, the name is dropped. */
    struct project *p = (struct project *)project_list_find(l, e.short_name);
    if (p && e.name)
        p->name = e.name;
    return 0;
}

long youtrack_parse_legacy_names(const char *body, size_t len, struct project_list *list, char *err,
                                 size_t errlen)
{
    struct legacy_names ln = {.l = list};
    long n = read_array(body, len, &ln, read_legacy_name, err, errlen);
    /* Two names for one short name: which one the project has would depend on their order. */
    if (n >= 0)
        n = check_unique(ln.keys, ln.n, n, "short name", err, errlen);
    free(ln.keys);
    return n;
}

/* ---- the poll ---- */

int youtrack_new(struct youtrack **out, struct http *http, const struct conf *conf)
{
    struct youtrack *yt = calloc(1, sizeof(*yt));
    if (!yt)
        return -ENOMEM;
    yt->http = http;
    yt->conf = conf;
    if (conf->youtrack.api == CONF_API_MODERN)
        yt->flavour = YOUTRACK_MODERN;
    else if (conf->youtrack.api == CONF_API_LEGACY)
        yt->flavour = YOUTRACK_LEGACY;
    if (asprintf(&yt->auth_header, "Authorization: Bearer %s", conf->youtrack.token) < 0) {
        free(yt);
        return -ENOMEM;
    }
    *out = yt;
    return 0;
}

void youtrack_cancel(struct youtrack *yt)
{
    if (yt->xfer)
        http_cancel(yt->xfer);
    yt->xfer = NULL;
    free(yt->url);
    yt->url = NULL;
    project_list_fini(&yt->res.projects);
    yt->step = STEP_IDLE;
}

void youtrack_free(struct youtrack *yt)
{
    if (!yt)
        return;
    youtrack_cancel(yt);
    if (yt->auth_header) {
        /* Do not leave the token lying around in freed heap memory. */
        memset(yt->auth_header, 0, strlen(yt->auth_header));
        free(yt->auth_header);
    }
    free(yt);
}

static void on_response(void *userdata, const struct http_response *res);

/*
 * Starts a GET of url, which it takes in every case: on success it is the request in flight
 * (yt->url), on failure it is freed here. Callers never touch url again.
 */
static int request(struct youtrack *yt, char *url)
{
    const char *headers[] = {yt->auth_header, "Accept: application/json", NULL};
    struct http_request req = {
        .url = url,
        .headers = headers,
        .timeout_ms = (long)yt->conf->youtrack.timeout * 1000L,
        .max_body = (size_t)yt->conf->youtrack.max_body,
        .ca_file = yt->conf->youtrack.ca_file,
    };
    int r;

    free(yt->url);
    yt->url = url;
    yt->res.pages++;
    log_debug("youtrack", "GET %s", url);
    r = http_start(yt->http, &req, on_response, yt, &yt->xfer);
    if (r) {
        /* Nothing in flight: drop the URL now, so no later path frees it a second time. */
        yt->url = NULL;
        free(url);
    }
    return r;
}

static int request_modern_page(struct youtrack *yt)
{
    char top[24], skip[24], *url;

    snprintf(top, sizeof(top), "%d", yt->conf->youtrack.page_size);
    snprintf(skip, sizeof(skip), "%zu", yt->skip);
    /* Always $top: without it the server silently stops at 42 projects (doc/youtrack.md §4). */
    url = url_build(yt->conf->youtrack.url, "/api/admin/projects?fields=%s&%%24top=%s&%%24skip=%s",
                    MODERN_FIELDS, top, skip);
    if (!url)
        return -ENOMEM;
    yt->step = STEP_MODERN;
    yt->redirects = 0;
    return request(yt, url);
}

static int request_legacy(struct youtrack *yt, enum step step)
{
    char *url = url_build(yt->conf->youtrack.url, step == STEP_LEGACY_LIST
                                                      ? "/rest/admin/project"
                                                      : "/rest/project/all?verbose=false");
    if (!url)
        return -ENOMEM;
    yt->step = step;
    yt->redirects = 0;
    return request(yt, url);
}

static void complete(struct youtrack *yt)
{
    youtrack_cb cb = yt->cb;
    void *ud = yt->userdata;
    struct youtrack_result *r = &yt->res;

    yt->step = STEP_IDLE;
    yt->xfer = NULL;
    r->seconds = (double)(uv_hrtime() - yt->started_ns) / 1e9;
    if (r->error != YOUTRACK_OK)
        project_list_fini(&r->projects);
    cb(ud, r);
    project_list_fini(&r->projects);
}

static void failf(struct youtrack *yt, enum youtrack_error e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void failf(struct youtrack *yt, enum youtrack_error e, const char *fmt, ...)
{
    va_list ap;
    char msg[1024];

    yt->res.error = e;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* The pieces from the server were cleaned already; this catches anything else (curl's
     * text) and cuts the whole on a character boundary. */
    upstream_text(yt->res.message, sizeof(yt->res.message), msg, sizeof(yt->res.message) - 1);
    complete(yt);
}

/*
 * Copies a short, printable, redacted excerpt of YouTrack's {"error_description": ...} for the
 * message. A proxy or a debugging server may echo our request headers in it.
 */
static void error_description(const struct http_response *res, char *out, size_t outlen)
{
    json_t *j = json_loadb(res->body, res->body_len, 0, NULL);
    const char *d = json_string_value(json_object_get(j, "error_description"));
    const char *e = json_string_value(json_object_get(j, "error"));

    out[0] = '\0';
    if (!d || !*d)
        d = e;
    if (d)
        upstream_text(out, outlen, d, 160);
    json_decref(j);
}

static int is_json(const char *content_type)
{
    return content_type && strncasecmp(content_type, "application/json", 16) == 0;
}

/* Handles everything but a 200 JSON answer. Returns 1 when the poll ended (or moved on). */
static int handle_failure(struct youtrack *yt, const struct http_response *res, const char *what)
{
    char desc[192];

    if (res->result != HTTP_DONE) {
        if (res->result == HTTP_ERR_TOO_BIG)
            failf(yt, YOUTRACK_ERR_PROTOCOL, "%s: %s", what, res->error);
        else
            failf(yt, YOUTRACK_ERR_NETWORK, "%s: %s", what, res->error);
        return 1;
    }
    if (res->status >= 300 && res->status < 400) {
        char loc[204];
        upstream_text(loc, sizeof(loc), res->location ? res->location : "(no Location)", 200);
        if (res->location && url_same_origin(res->location, yt->conf->youtrack.url) &&
            yt->redirects < MAX_REDIRECTS) {
            char *url = strdup(res->location);
            int redirects = yt->redirects + 1;
            /* request() owns url from here, whatever it returns. */
            if (url && request(yt, url) == 0) {
                yt->redirects = redirects;
                return 1;
            }
            failf(yt, YOUTRACK_ERR_PROTOCOL, "%s: cannot follow redirect", what);
            return 1;
        }
        failf(yt, YOUTRACK_ERR_PROTOCOL,
              "%s: HTTP %ld redirect to %s (an SSO proxy or a wrong service URL? redirects to "
              "other hosts are not followed)",
              what, res->status, loc);
        return 1;
    }
    if (res->status == 401 || res->status == 403) {
        error_description(res, desc, sizeof(desc));
        failf(yt, YOUTRACK_ERR_AUTH, "%s: HTTP %ld%s%s", what, res->status, desc[0] ? " " : "",
              desc);
        return 1;
    }
    if (res->status == 429 || res->status >= 500) {
        yt->res.retry_after = res->retry_after;
        error_description(res, desc, sizeof(desc));
        failf(yt, YOUTRACK_ERR_SERVER, "%s: HTTP %ld%s%s", what, res->status, desc[0] ? " " : "",
              desc);
        return 1;
    }
    if (res->status != 200) {
        error_description(res, desc, sizeof(desc));
        failf(yt, YOUTRACK_ERR_PROTOCOL, "%s: HTTP %ld%s%s", what, res->status, desc[0] ? " " : "",
              desc);
        return 1;
    }
    if (!is_json(res->content_type)) {
        char type[84];
        upstream_text(type, sizeof(type), res->content_type ? res->content_type : "no Content-Type",
                      80);
        failf(yt, YOUTRACK_ERR_PROTOCOL,
              "%s: got %s instead of JSON (an SSO login page or a proxy in front of YouTrack?)",
              what, type);
        return 1;
    }
    const char *user = http_response_header(res, "X-Youtrack-User");
    if (user && strcmp(user, "guest") == 0) {
        failf(yt, YOUTRACK_ERR_AUTH,
              "%s: the request ran as the guest account (the token was not accepted)", what);
        return 1;
    }
    return 0;
}

static void on_modern_page(struct youtrack *yt, const struct http_response *res)
{
    char err[256], what[64];
    size_t before = yt->res.projects.n;

    snprintf(what, sizeof(what), "page %zu", yt->res.pages);
    if (res->result == HTTP_DONE && res->status == 404 && yt->skip == 0 &&
        yt->conf->youtrack.api == CONF_API_AUTO) {
        log_info("youtrack", "%s/api answers 404: trying the legacy /rest API (YouTrack 2017.x)",
                 yt->conf->youtrack.url);
        if (request_legacy(yt, STEP_LEGACY_LIST) != 0)
            failf(yt, YOUTRACK_ERR_PROTOCOL, "out of memory");
        return;
    }
    if (handle_failure(yt, res, what))
        return;
    long n = youtrack_parse_projects(res->body, res->body_len, &yt->res.projects, err, sizeof(err));
    if (n < 0) {
        failf(yt, YOUTRACK_ERR_PROTOCOL, "%s: %s", what, n == -ENOMEM ? "out of memory" : err);
        return;
    }
    if (n < yt->conf->youtrack.page_size) {
        if (yt->flavour != YOUTRACK_MODERN)
            log_info("youtrack", "using the /api REST API");
        yt->flavour = YOUTRACK_MODERN;
        yt->res.flavour = YOUTRACK_MODERN;
        yt->res.duplicates = project_list_finish(&yt->res.projects);
        complete(yt);
        return;
    }
    /*
     * A full page: ask for the next. A server that ignores $skip would send the same page
     * forever; a full page of nothing new is that signature (pages may overlap a little when
     * projects are added meanwhile, but never completely).
     */
    project_list_finish(&yt->res.projects);
    if (yt->res.projects.n == before) {
        failf(yt, YOUTRACK_ERR_PROTOCOL,
              "%s: a full page with no new project (the server "
              "ignores $skip?)",
              what);
        return;
    }
    yt->skip += (size_t)n;
    if (request_modern_page(yt) != 0)
        failf(yt, YOUTRACK_ERR_PROTOCOL, "out of memory");
}

static void on_legacy(struct youtrack *yt, const struct http_response *res)
{
    char err[256];
    const char *what = yt->step == STEP_LEGACY_LIST ? "/rest/admin/project" : "/rest/project/all";
    long n;

    if (yt->step == STEP_LEGACY_NAMES && res->result == HTTP_DONE && res->status == 404) {
        /* Names are a bonus; the admin list is complete without them. */
        log_debug("youtrack", "%s: HTTP 404, project names unknown", what);
        goto done;
    }
    if (yt->step == STEP_LEGACY_LIST && res->result == HTTP_DONE && res->status == 404 &&
        yt->conf->youtrack.api == CONF_API_AUTO) {
        /* Upgraded past 2021.3, where /rest is gone: detect again on the next poll. */
        yt->flavour = YOUTRACK_UNKNOWN;
        failf(yt, YOUTRACK_ERR_PROTOCOL,
              "%s: HTTP 404 (neither /api nor /rest answers: is the "
              "service URL right?)",
              what);
        return;
    }
    if (handle_failure(yt, res, what))
        return;
    if (yt->step == STEP_LEGACY_LIST) {
        n = youtrack_parse_legacy_list(res->body, res->body_len, &yt->res.projects, err,
                                       sizeof(err));
        if (n >= 0) {
            yt->res.duplicates = project_list_finish(&yt->res.projects);
            if (request_legacy(yt, STEP_LEGACY_NAMES) != 0)
                failf(yt, YOUTRACK_ERR_PROTOCOL, "out of memory");
            return;
        }
    } else {
        n = youtrack_parse_legacy_names(res->body, res->body_len, &yt->res.projects, err,
                                        sizeof(err));
    }
    if (n < 0) {
        failf(yt, YOUTRACK_ERR_PROTOCOL, "%s: %s", what, n == -ENOMEM ? "out of memory" : err);
        return;
    }
done:
    if (yt->flavour != YOUTRACK_LEGACY)
        log_info("youtrack", "using the legacy /rest API: projects are keyed by short name, so "
                             "a rename shows as removed + created");
    yt->flavour = YOUTRACK_LEGACY;
    yt->res.flavour = YOUTRACK_LEGACY;
    complete(yt);
}

static void on_response(void *userdata, const struct http_response *res)
{
    struct youtrack *yt = userdata;

    yt->xfer = NULL;
    if (yt->step == STEP_MODERN)
        on_modern_page(yt, res);
    else
        on_legacy(yt, res);
}

int youtrack_poll(struct youtrack *yt, youtrack_cb cb, void *userdata)
{
    if (yt->step != STEP_IDLE)
        return -EBUSY;
    memset(&yt->res, 0, sizeof(yt->res));
    yt->res.retry_after = -1;
    yt->cb = cb;
    yt->userdata = userdata;
    yt->skip = 0;
    yt->started_ns = uv_hrtime();
    int r = yt->flavour == YOUTRACK_LEGACY ? request_legacy(yt, STEP_LEGACY_LIST)
                                           : request_modern_page(yt);
    if (r)
        yt->step = STEP_IDLE;
    return r;
}
