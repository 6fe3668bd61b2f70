/*
 * --doctor: a fixed sequence of checks, each one request on the shared loop; a check's answer
 * starts the next. Lines go to stdout. No message is ever posted: Slack webhooks are probed
 * with an empty body (a valid URL answers no_text), Matrix with whoami and the room's member
 * list; generic webhooks and hookshot cannot be probed without posting and are skipped. With
 * the cluster block, etcd comes first: each endpoint's status, then the credentials and the
 * group's leader through all of them (blocking calls: nothing else runs yet).
 * No secret is printed: sinks are named by their configured names.
 */
#include "doctor.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "command.h"
#include "etcd.h"
#include "http.h"
#include "log.h"
#include "sink.h"
#include "slack_api.h"
#include "state.h"
#include "subscription.h"
#include "url.h"
#include "youtrack.h"

enum step {
    STEP_IDENTITY = 0,
    STEP_ADMIN,
    STEP_PROJECTS,
    STEP_SINKS,
    STEP_CHAT_SLACK,
    STEP_CHAT_SLACK_BOT,
    STEP_CHAT_MATRIX,
    STEP_DONE,
};

struct doctor {
    uv_loop_t *loop;
    const struct conf *conf;
    struct http *http;
    struct youtrack *yt;
    enum step step;
    size_t sink;    /* current sink during STEP_SINKS */
    int sink_stage; /* Matrix: 0 whoami, 1 alias, 2 members */
    char *room_id;  /* Matrix: resolved */
    char *user_id;  /* Matrix: who the token is */
    int failed;
    char *auth; /* "Authorization: Bearer ..." for the current target */
};

static void report(struct doctor *d, const char *verdict, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(struct doctor *d, const char *verdict, const char *fmt, ...)
{
    char line[1024], clean[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    log_redact(clean, sizeof(clean), line);
    printf("%-4s %s\n", verdict, clean);
    fflush(stdout);
    if (strcmp(verdict, "FAIL") == 0)
        d->failed = 1;
}

static void next(struct doctor *d);

static void set_auth(struct doctor *d, const char *token)
{
    free(d->auth);
    d->auth = NULL;
    if (token && asprintf(&d->auth, "Authorization: Bearer %s", token) < 0)
        d->auth = NULL;
}

static int get(struct doctor *d, const char *url, const char *method, const char *body, http_cb cb)
{
    const char *headers[] = {d->auth, "Accept: application/json", "Content-Type: application/json",
                             NULL};
    struct http_request req = {
        .method = method,
        .url = url,
        .headers = d->auth ? headers : headers + 1,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .timeout_ms = (long)d->conf->youtrack.timeout * 1000L,
        .max_body = 256 * 1024,
        /* youtrack.ca_file is for YouTrack only: the sinks and chat use the system store, as
         * the daemon does. */
        .ca_file = d->step < STEP_SINKS ? d->conf->youtrack.ca_file : NULL,
    };
    return http_start(d->http, &req, cb, d, NULL);
}

static const char *json_str(const struct http_response *res, const char *key, char *buf, size_t len)
{
    json_t *j = json_loadb(res->body, res->body_len, 0, NULL);
    const char *v = json_string_value(json_object_get(j, key));
    if (!v) {
        json_decref(j);
        return NULL;
    }
    snprintf(buf, len, "%s", v);
    json_decref(j);
    return buf;
}

static int is_json(const struct http_response *res)
{
    return res->content_type && strncmp(res->content_type, "application/json", 16) == 0;
}

/* ---- YouTrack ---- */

static void on_identity(void *userdata, const struct http_response *res)
{
    struct doctor *d = userdata;
    const char *url = d->conf->youtrack.url;
    char login[256], name[256];

    if (res->result != HTTP_DONE) {
        report(d, "FAIL", "youtrack: %s does not answer: %s", url, res->error);
    } else if (res->status >= 300 && res->status < 400) {
        report(d, "FAIL",
               "youtrack: %s redirects (HTTP %ld) to %.200s: an SSO proxy or a wrong "
               "service URL?",
               url, res->status, res->location ? res->location : "?");
    } else if (res->status == 401 || res->status == 403) {
        char why[256];
        report(d, "OK", "youtrack: %s answers", url);
        report(d, "FAIL", "token: refused (HTTP %ld %s)", res->status,
               json_str(res, "error_description", why, sizeof(why)) ? why : "");
    } else if (res->status == 404) {
        report(d, "OK", "youtrack: %s answers", url);
        report(d, "WARN",
               "token: %s/api/users/me answers 404: a 2017.x server (legacy API) "
               "cannot say whom the token belongs to",
               url);
    } else if (res->status != 200 || !is_json(res)) {
        report(d, "FAIL", "youtrack: %s answers HTTP %ld %s instead of JSON", url, res->status,
               res->content_type ? res->content_type : "");
    } else {
        report(d, "OK", "youtrack: %s answers", url);
        if (!json_str(res, "login", login, sizeof(login)))
            report(d, "FAIL", "token: /api/users/me answered without a login");
        else if (strcmp(login, "guest") == 0)
            report(d, "FAIL",
                   "token: the requests run as the guest account (the token was not "
                   "accepted)");
        else
            report(d, "OK", "token: valid, belongs to %s%s%s%s", login,
                   json_str(res, "fullName", name, sizeof(name)) ? " (" : "",
                   json_str(res, "fullName", name, sizeof(name)) ? name : "",
                   json_str(res, "fullName", name, sizeof(name)) ? ")" : "");
    }
    d->step = d->failed ? STEP_SINKS : STEP_ADMIN;
    next(d);
}

static void on_admin(void *userdata, const struct http_response *res)
{
    struct doctor *d = userdata;
    if (res->result == HTTP_DONE && res->status == 200)
        report(d, "WARN",
               "token: the account can read the global settings, so it looks like an "
               "administrator; an account that can only read projects is safer");
    else
        report(d, "OK", "token: the account is not an administrator");
    d->step = STEP_PROJECTS;
    next(d);
}

static void on_projects(void *userdata, struct youtrack_result *res)
{
    struct doctor *d = userdata;
    if (res->error != YOUTRACK_OK)
        report(d, "FAIL", "projects: %s: %s", youtrack_error_name(res->error), res->message);
    else if (res->projects.n == 0)
        report(d, "WARN",
               "projects: the account sees no project (an account without roles? "
               "every project would look removed)");
    else
        report(d, "OK", "projects: %zu visible through the %s in %.2f s", res->projects.n,
               res->flavour == YOUTRACK_LEGACY ? "legacy /rest API" : "/api REST API",
               res->seconds);
    d->step = STEP_SINKS;
    next(d);
}

/* ---- sinks ---- */

static void sink_done(struct doctor *d)
{
    d->sink++;
    d->sink_stage = 0;
    free(d->room_id);
    free(d->user_id);
    d->room_id = d->user_id = NULL;
    next(d);
}

static void on_slack(void *userdata, const struct http_response *res)
{
    struct doctor *d = userdata;
    const struct conf_sink *s = &d->conf->sinks[d->sink];
    char body[64];

    snprintf(body, sizeof(body), "%.*s", (int)(res->body_len < 63 ? res->body_len : 63), res->body);
    body[strcspn(body, "\r\n")] = '\0';
    if (res->result != HTTP_DONE)
        report(d, "FAIL", "sink %s (slack): unreachable: %s", s->name, res->error);
    else if (strcmp(body, "no_text") == 0 || strcmp(body, "invalid_payload") == 0)
        report(d, "OK",
               "sink %s (slack): the webhook URL is valid (probed with an empty message, "
               "nothing posted)",
               s->name);
    else if (res->status == 200)
        report(d, "WARN",
               "sink %s (slack): an empty message was accepted: is this really a Slack "
               "incoming webhook?",
               s->name);
    else
        report(d, "FAIL", "sink %s (slack): HTTP %ld %s", s->name, res->status, body);
    sink_done(d);
}

static void matrix_step(struct doctor *d);

static void on_matrix(void *userdata, const struct http_response *res)
{
    struct doctor *d = userdata;
    const struct conf_sink *s = &d->conf->sinks[d->sink];
    char buf[512], err[64];
    const char *errcode = json_str(res, "errcode", err, sizeof(err));

    if (res->result != HTTP_DONE) {
        report(d, "FAIL", "sink %s (matrix): %s unreachable: %s", s->name, s->homeserver,
               res->error);
        sink_done(d);
        return;
    }
    switch (d->sink_stage) {
    case 0:
        if (res->status != 200 || !json_str(res, "user_id", buf, sizeof(buf))) {
            report(d, "FAIL",
                   "sink %s (matrix): whoami: HTTP %ld %s (is the access token "
                   "valid?)",
                   s->name, res->status, errcode ? errcode : "");
            sink_done(d);
            return;
        }
        d->user_id = strdup(buf);
        d->sink_stage = s->room[0] == '#' ? 1 : 2;
        if (d->sink_stage == 2)
            d->room_id = strdup(s->room);
        break;
    case 1:
        if (res->status != 200 || !json_str(res, "room_id", buf, sizeof(buf))) {
            report(d, "FAIL", "sink %s (matrix): the alias %s does not resolve (HTTP %ld %s)",
                   s->name, s->room, res->status, errcode ? errcode : "");
            sink_done(d);
            return;
        }
        d->room_id = strdup(buf);
        d->sink_stage = 2;
        break;
    default:
        if (res->status == 200)
            report(d, "OK", "sink %s (matrix): %s is in %s%s%s%s", s->name,
                   d->user_id ? d->user_id : "the bot", s->room,
                   strcmp(s->room, d->room_id) ? " (" : "",
                   strcmp(s->room, d->room_id) ? d->room_id : "",
                   strcmp(s->room, d->room_id) ? ")" : "");
        else
            report(d, "FAIL", "sink %s (matrix): %s is not in %s (HTTP %ld %s): invite it", s->name,
                   d->user_id ? d->user_id : "the bot", s->room, res->status,
                   errcode ? errcode : "");
        sink_done(d);
        return;
    }
    matrix_step(d);
}

static void matrix_step(struct doctor *d)
{
    const struct conf_sink *s = &d->conf->sinks[d->sink];
    char *url;

    switch (d->sink_stage) {
    case 0:
        url = url_build(s->homeserver, "/_matrix/client/v3/account/whoami");
        break;
    case 1:
        url = url_build(s->homeserver, "/_matrix/client/v3/directory/room/%s", s->room);
        break;
    default:
        url = d->room_id ? url_build(s->homeserver, "/_matrix/client/v3/rooms/%s/joined_members",
                                     d->room_id)
                         : NULL;
        break;
    }
    if (!url || get(d, url, "GET", NULL, on_matrix) != 0) {
        report(d, "FAIL", "sink %s (matrix): out of memory", s->name);
        free(url);
        sink_done(d);
        return;
    }
    free(url);
}

static void check_sink(struct doctor *d)
{
    const struct conf_sink *s = &d->conf->sinks[d->sink];

    switch (s->type) {
    case CONF_SINK_STDOUT:
        report(d, "OK", "sink %s (stdout): nothing to check", s->name);
        sink_done(d);
        return;
    case CONF_SINK_SLACK:
        set_auth(d, NULL);
        if (get(d, s->url, "POST", "{}", on_slack) != 0) {
            report(d, "FAIL", "sink %s (slack): cannot start a request", s->name);
            sink_done(d);
        }
        return;
    case CONF_SINK_MATRIX:
        set_auth(d, s->access_token);
        matrix_step(d);
        return;
    default:
        report(d, "SKIP", "sink %s (%s): cannot be checked without posting a message", s->name,
               conf_sink_type_name(s->type));
        sink_done(d);
        return;
    }
}

/* chat.slack: apps.connections.open issues a URL (left unused) when the app token works. */
static void on_chat_slack(void *userdata, const struct http_response *res)
{
    struct doctor *d = userdata;
    char err[64];

    if (res->result != HTTP_DONE)
        report(d, "FAIL", "chat.slack: slack.com unreachable: %s", res->error);
    else if (res->status == 429)
        report(d, "WARN", "chat.slack: apps.connections.open is rate limited; try again later");
    else if (!is_json(res) || res->status != 200)
        report(d, "FAIL", "chat.slack: apps.connections.open answered HTTP %ld", res->status);
    else if (json_str(res, "url", err, sizeof(err)))
        report(d, "OK",
               "chat.slack: the app token can open Socket Mode connections (a connection URL "
               "was issued and left unused)");
    else
        report(d, "FAIL", "chat.slack: apps.connections.open refused the app token: %s",
               json_str(res, "error", err, sizeof(err)) ? err : "no reason given");
    d->step = STEP_CHAT_SLACK_BOT;
    next(d);
}

/* chat.slack.bot_token: auth.test says whose it is (subscriptions post with it). */
static void on_chat_slack_bot(void *userdata, const struct slack_api_answer *a)
{
    struct doctor *d = userdata;

    if (a->result == SLACK_API_OK)
        report(d, "OK",
               "chat.slack: auth.test: the bot token is bot user %s (%s) in %s; invite "
               "it into channels before they subscribe",
               a->user, a->user_id, a->team);
    else if (a->result == SLACK_API_RETRY)
        report(d, "WARN", "chat.slack: auth.test of the bot token: %s; try again later", a->error);
    else
        report(d, "FAIL", "chat.slack: auth.test refused the bot token: %s", a->error);
    d->step = STEP_CHAT_MATRIX;
    next(d);
}

/* chat.matrix: whoami with the bot's token. */
static void on_chat_matrix(void *userdata, const struct http_response *res)
{
    struct doctor *d = userdata;
    char who[256], err[64];

    if (res->result != HTTP_DONE)
        report(d, "FAIL", "chat.matrix: homeserver unreachable: %s", res->error);
    else if (res->status == 200 && json_str(res, "user_id", who, sizeof(who)))
        report(d, "OK", "chat.matrix: the access token is %s; answering in %zu room%s", who,
               d->conf->chat.matrix.n_rooms, d->conf->chat.matrix.n_rooms == 1 ? "" : "s");
    else
        report(d, "FAIL", "chat.matrix: whoami answered HTTP %ld %s", res->status,
               json_str(res, "errcode", err, sizeof(err)) ? err : "");
    d->step = STEP_DONE;
    next(d);
}

static void next(struct doctor *d)
{
    char *url = NULL;

    switch (d->step) {
    case STEP_IDENTITY:
        set_auth(d, d->conf->youtrack.token);
        url = url_build(d->conf->youtrack.url, "/api/users/me?fields=%s", "login,fullName");
        if (!url || get(d, url, "GET", NULL, on_identity) != 0) {
            report(d, "FAIL", "youtrack: cannot start a request");
            d->step = STEP_SINKS;
            free(url);
            next(d);
            return;
        }
        break;
    case STEP_ADMIN:
        url =
            url_build(d->conf->youtrack.url, "/api/admin/globalSettings/systemSettings?fields=id");
        if (!url || get(d, url, "GET", NULL, on_admin) != 0) {
            d->step = STEP_PROJECTS;
            free(url);
            next(d);
            return;
        }
        break;
    case STEP_PROJECTS:
        if (youtrack_poll(d->yt, on_projects, d) != 0) {
            report(d, "FAIL", "projects: cannot start a poll");
            d->step = STEP_SINKS;
            next(d);
        }
        return;
    case STEP_SINKS:
        if (d->sink < d->conf->n_sinks) {
            check_sink(d);
            return;
        }
        d->step = STEP_CHAT_SLACK;
        next(d);
        return;
    case STEP_CHAT_SLACK:
        if (!d->conf->chat.slack.enabled) {
            d->step = STEP_CHAT_MATRIX;
            next(d);
            return;
        }
        set_auth(d, d->conf->chat.slack.app_token);
        url = url_build(d->conf->chat.slack.api_url, "/apps.connections.open");
        if (!url || get(d, url, "POST", "", on_chat_slack) != 0) {
            report(d, "FAIL", "chat.slack: cannot start a request");
            d->step = STEP_CHAT_MATRIX;
            free(url);
            next(d);
            return;
        }
        break;
    case STEP_CHAT_SLACK_BOT:
        if (!d->conf->chat.slack.bot_token) {
            d->step = STEP_CHAT_MATRIX;
            next(d);
            return;
        }
        if (slack_api_call(d->http, SLACK_API_AUTH_TEST, d->conf->chat.slack.api_url,
                           d->conf->chat.slack.bot_token, NULL, 30000, on_chat_slack_bot, d,
                           NULL) != 0) {
            report(d, "FAIL", "chat.slack: cannot start auth.test");
            d->step = STEP_CHAT_MATRIX;
            next(d);
        }
        return;
    case STEP_CHAT_MATRIX:
        if (!d->conf->chat.matrix.enabled) {
            d->step = STEP_DONE;
            break;
        }
        set_auth(d, d->conf->chat.matrix.access_token);
        url = url_build(d->conf->chat.matrix.homeserver, "/_matrix/client/v3/account/whoami");
        if (!url || get(d, url, "GET", NULL, on_chat_matrix) != 0) {
            report(d, "FAIL", "chat.matrix: cannot start a request");
            d->step = STEP_DONE;
        }
        break;
    case STEP_DONE:
        break;
    }
    free(url);
}

/*
 * Whether a /v3/maintenance/status answer names a raft leader. The leader is a member id, an
 * unsigned 64-bit number (a string in JSON, absent when zero) that etcd_int() cannot hold when
 * it is above INT64_MAX, so only its presence and its digits are looked at.
 */
static int has_leader(const json_t *status)
{
    const char *id = json_string_value(json_object_get(status, "leader"));

    return id ? strspn(id, "0123456789") == strlen(id) && strspn(id, "0") != strlen(id)
              : json_is_integer(json_object_get(status, "leader")) &&
                    json_integer_value(json_object_get(status, "leader")) != 0;
}

/* One etcd endpoint on its own: does it answer, which version, is the cluster led. */
static void check_etcd_endpoint(struct doctor *d, size_t i)
{
    struct conf_cluster one = d->conf->cluster;
    struct etcd_reply r = {0};
    struct etcd *e = NULL;
    char err[512];
    json_t *body = json_object();

    one.etcd = &d->conf->cluster.etcd[i];
    one.n_etcd = 1;
    if (!body || cluster_etcd_new(&e, d->loop, &one, err, sizeof(err)) != 0) {
        json_decref(body);
        report(d, "FAIL", "cluster: %s: %s", one.etcd[0], body ? err : "out of memory");
        return;
    }
    if (etcd_call_sync(e, "/v3/maintenance/status", body, &r) != 0)
        report(d, "FAIL", "cluster: %s: %s", one.etcd[0], r.message);
    else if (!has_leader(r.body))
        report(d, "FAIL",
               "cluster: %s answers (etcd %s) but its cluster has no leader (quorum "
               "lost?)",
               one.etcd[0], json_string_value(json_object_get(r.body, "version")));
    else
        report(d, "OK", "cluster: %s answers (etcd %s)", one.etcd[0],
               json_string_value(json_object_get(r.body, "version")));
    etcd_reply_fini(&r);
    etcd_free(e);
}

/*
 * The cluster block: every endpoint on its own, then through all of them the credentials (a
 * read of the leader key needs them when etcd's authentication is on) and who leads.
 */
static void check_cluster(struct doctor *d)
{
    const struct conf_cluster *cc = &d->conf->cluster;
    struct etcd_reply r = {0};
    struct etcd_kv *kv = NULL;
    struct etcd *e = NULL;
    size_t n = 0;
    char err[512], key[300];

    for (size_t i = 0; i < cc->n_etcd; i++)
        check_etcd_endpoint(d, i);
    if (cluster_etcd_new(&e, d->loop, cc, err, sizeof(err)) != 0) {
        report(d, "FAIL", "cluster: %s", err);
        return;
    }
    snprintf(key, sizeof(key), "%s/leader", cc->prefix);
    if (etcd_call_sync(e, "/v3/kv/range", etcd_op_body(etcd_op_range(key, NULL)), &r) != 0)
        report(d, "FAIL", "cluster: reading %s: %s", key, r.message);
    else if (etcd_kvs(r.body, &kv, &n) != 0)
        report(d, "FAIL", "cluster: reading %s: an unreadable answer", key);
    else if (n == 0)
        report(d, "WARN", "cluster: no replica of the group %s leads now%s", cc->prefix,
               cc->user ? " (the credentials work)" : "");
    else
        report(d, "OK", "cluster: \"%s\" leads the group %s%s (this replica is \"%s\")",
               kv[0].value, cc->prefix, cc->user ? "; the credentials work" : "", cc->member);
    etcd_kvs_free(kv, n);
    etcd_reply_fini(&r);
    etcd_free(e);
    uv_run(d->loop, UV_RUN_DEFAULT); /* the clients' handles close */
}

/* The chat subscriptions in the state, read without taking it (a running bridge holds it). */
static void list_subscriptions(struct doctor *d, struct state *st)
{
    struct subscription_list l = {0};
    char err[512];

    if (state_subscriptions_load(st, &l, err, sizeof(err)) != 0) {
        report(d, "FAIL", "subscriptions: %s", err);
        return;
    }
    if (l.n == 0)
        report(d, "OK", "subscriptions: no channel is subscribed");
    for (size_t i = 0; i < l.n; i++) {
        const struct subscription *s = &l.v[i];
        const struct subscription *one[1] = {s};
        char head[32], *out = NULL, *item;
        /* Written as the `subscriptions all` answer writes it: "<head>\n- <the item>". */
        snprintf(head, sizeof(head), "subscription %s", sub_platform_name(s->platform));
        if (command_subscriptions(COMMAND_TEXT, head, NULL, one, 1, 1, &out) != 0) {
            report(d, "FAIL", "subscriptions: out of memory");
            break;
        }
        item = strstr(out, "\n- ");
        if (item) {
            item[0] = ' ';
            memmove(item + 1, item + 3, strlen(item + 3) + 1);
        }
        report(d, s->suspended ? "WARN" : "OK", "%s", out);
        free(out);
    }
    subscription_list_fini(&l);
}

static void check_subscriptions(struct doctor *d)
{
    struct state *st = NULL;
    struct etcd *e = NULL;
    char err[512];
    int r;

    if (d->conf->cluster.enabled) {
        r = cluster_etcd_new(&e, d->loop, &d->conf->cluster, err, sizeof(err));
        if (!r)
            r = state_open_etcd(&st, e, d->conf->cluster.prefix, NULL, STATE_OPEN_READONLY, err,
                                sizeof(err));
    } else {
        r = state_open_readonly(&st, d->conf->state_dir, err, sizeof(err));
        if (r == -ENOENT) {
            report(d, "OK", "subscriptions: none (no state directory yet)");
            return;
        }
    }
    if (r)
        report(d, "FAIL", "subscriptions: %s", err);
    else
        list_subscriptions(d, st);
    state_close(st);
    etcd_free(e);
    uv_run(d->loop, UV_RUN_DEFAULT);
}

int doctor_run(uv_loop_t *loop, const struct conf *conf)
{
    struct doctor d = {.loop = loop, .conf = conf};

    if (http_new(&d.http, loop) != 0 || youtrack_new(&d.yt, d.http, conf) != 0) {
        printf("FAIL out of memory\n");
        youtrack_free(d.yt);
        http_free(d.http);
        uv_run(loop, UV_RUN_DEFAULT);
        return 1;
    }
    if (conf->cluster.enabled)
        check_cluster(&d);
    next(&d);
    uv_run(loop, UV_RUN_DEFAULT);
    /* Every check has answered when the loop runs dry. */
    if (conf->chat.matrix.enabled || (conf->chat.slack.enabled && conf->chat.slack.bot_token))
        check_subscriptions(&d);
    youtrack_free(d.yt);
    http_free(d.http);
    uv_run(loop, UV_RUN_DEFAULT);
    set_auth(&d, NULL);
    printf("%s\n", d.failed ? "doctor: some checks failed" : "doctor: all checks passed");
    return d.failed ? 1 : 0;
}
