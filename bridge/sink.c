/*
 * Sink requests and verdicts (doc/slack.md, "Incoming webhooks: answers and pacing" and "Web API
 * with the bot token"; doc/matrix.md §1-3).
 *
 * Slack webhooks answer bare strings: classify by body first, status second. Slack's Web API
 * (slack_bot) answers {"ok": ..., "error": ...}: classify by error first, status second. Matrix
 * answers
 * {"errcode": ...}: classify by errcode first, status second. Generic webhooks and hookshot
 * have only the status. URLs of Slack, webhooks and hookshot are secrets: they are never put in
 * a reason string; Matrix's homeserver is not.
 */
#include "sink.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmac.h"
#include "jwrite.h"
#include "log.h"
#include "outbox_entry.h"
#include "slack_api.h"
#include "strbuf.h"
#include "url.h"
#include "utf8.h"

const char *sink_verdict_name(enum sink_verdict v)
{
    static const char *const names[] = {"delivered", "again", "retry", "dead", "broken", "suspend"};
    return (unsigned)v < sizeof(names) / sizeof(names[0]) ? names[v] : "unknown";
}

int sink_init(struct sink *s, const struct conf_sink *conf)
{
    memset(s, 0, sizeof(*s));
    s->conf = conf;
    if (conf->type == CONF_SINK_MATRIX && conf->room && conf->room[0] == '!') {
        s->room_id = strdup(conf->room);
        if (!s->room_id)
            return -ENOMEM;
    }
    return 0;
}

void sink_fini(struct sink *s)
{
    free(s->room_id);
    s->room_id = NULL;
}

unsigned sink_pace_ms(const struct sink *s)
{
    /* Slack: one message per second per webhook (doc/slack.md, "Incoming webhooks"); hookshot posts
     * into a Matrix room, whose default rate limit is a burst of 10 then one per 5 s: Matrix pacing
     * comes from its 429 answers, which name the delay. chat.postMessage: one message per second
     * per channel (doc/slack.md, "Web API with the bot token"), and a slack_bot sink is one
     * channel. */
    return s->conf->type == CONF_SINK_SLACK || s->conf->type == CONF_SINK_SLACK_BOT ? 1000u : 0u;
}

void sink_request_fini(struct sink_request *req)
{
    free(req->method);
    free(req->url);
    for (size_t i = 0; req->headers[i]; i++)
        free(req->headers[i]);
    free(req->body);
    memset(req, 0, sizeof(*req));
}

static int add_header(struct sink_request *req, const char *name, const char *value)
{
    size_t i = 0;
    while (req->headers[i])
        i++;
    if (i + 1 >= sizeof(req->headers) / sizeof(req->headers[0]))
        return -EINVAL;
    return asprintf(&req->headers[i], "%s: %s", name, value) < 0 ? -ENOMEM : 0;
}

static int add_header_bearer(struct sink_request *req, const char *token)
{
    char *v = NULL;
    if (asprintf(&v, "Bearer %s", token) < 0)
        return -ENOMEM;
    int r = add_header(req, "Authorization", v);
    free(v);
    return r;
}

static int set_body(struct sink_request *req, const char *method, const char *body)
{
    req->method = strdup(method);
    req->body = strdup(body);
    req->body_len = strlen(body);
    return req->method && req->body ? 0 : -ENOMEM;
}

static int matrix_request(struct sink *s, const struct outbox_entry *e, struct sink_request *req)
{
    const struct conf_sink *c = s->conf;

    if (add_header_bearer(req, c->access_token))
        return -ENOMEM;
    if (!s->room_id) {
        /* Aliases do not work with /send: resolve once (doc/matrix.md §2). */
        req->url = url_build(c->homeserver, "/_matrix/client/v3/directory/room/%s", c->room);
        req->method = strdup("GET");
        return !req->url || !req->method ? -ENOMEM : 0;
    }
    /* Every path segment percent-encoded; the txnId is the entry's id, reused on retries. */
    req->url = url_build(c->homeserver, "/_matrix/client/v3/rooms/%s/send/m.room.message/%s",
                         s->room_id, e->id);
    if (!req->url || add_header(req, "Content-Type", "application/json"))
        return -ENOMEM;
    return set_body(req, "PUT", e->body);
}

/*
 * chat.postMessage takes what an incoming webhook takes plus "channel" (doc/slack.md, "Web API
 * with the bot token"). The rendered body is an object, so "channel" is spliced in as its first
 * member right after the opening brace: every other member keeps its bytes, and no second
 * serialiser can change how a string or number is written. NULL when body is not an object, or
 * on ENOMEM.
 */
static char *with_channel(const char *body, const char *channel)
{
    struct strbuf b = {0};
    const char *p = body + strspn(body, " \t\r\n");
    const char *rest;

    if (*p != '{')
        return NULL;
    rest = p + 1;
    strbuf_puts(&b, "{\"channel\":");
    jwrite_string(&b, channel, strlen(channel));
    /* "{}" (and "{ }") has no member to separate from. */
    if (rest[strspn(rest, " \t\r\n")] != '}')
        strbuf_puts(&b, ",");
    strbuf_puts(&b, rest);
    return strbuf_take(&b);
}

static int slack_bot_request(const struct conf_sink *c, const struct outbox_entry *e,
                             struct sink_request *req)
{
    const char *p = e->body + strspn(e->body, " \t\r\n");

    if (*p != '{' || !c->room)
        return -EINVAL;
    if (add_header(req, "Content-Type", "application/json; charset=utf-8") ||
        add_header_bearer(req, c->access_token))
        return -ENOMEM;
    req->url = url_build(c->url, "/chat.postMessage");
    req->method = strdup("POST");
    req->body = with_channel(e->body, c->room);
    if (!req->url || !req->method || !req->body)
        return -ENOMEM;
    req->body_len = strlen(req->body);
    return 0;
}

int sink_request(struct sink *s, const struct outbox_entry *e, struct sink_request *req)
{
    const struct conf_sink *c = s->conf;
    int r;

    memset(req, 0, sizeof(*req));
    switch (c->type) {
    case CONF_SINK_MATRIX:
        r = matrix_request(s, e, req);
        break;
    case CONF_SINK_WEBHOOK:
        r = add_header(req, "Content-Type", "application/json");
        if (!r)
            r = add_header(req, "X-Ytbridge-Event", e->event);
        if (!r)
            r = add_header(req, "X-Ytbridge-Delivery", e->id);
        if (!r && c->secret) {
            char sig[2 * SHA256_LEN + 8] = "sha256=";
            r = hmac_sha256_hex(c->secret, e->body, strlen(e->body), sig + 7);
            if (!r)
                r = add_header(req, "X-Ytbridge-Signature-256", sig);
        }
        if (!r)
            r = set_body(req, "POST", e->body);
        if (!r)
            r = (req->url = strdup(c->url)) ? 0 : -ENOMEM;
        break;
    case CONF_SINK_SLACK:
    case CONF_SINK_HOOKSHOT:
        r = add_header(req, "Content-Type", "application/json");
        if (!r)
            r = set_body(req, "POST", e->body);
        if (!r)
            r = (req->url = strdup(c->url)) ? 0 : -ENOMEM;
        break;
    case CONF_SINK_SLACK_BOT:
        r = slack_bot_request(c, e, req);
        break;
    default:
        r = -EINVAL; /* stdout never goes through HTTP */
        break;
    }
    if (r)
        sink_request_fini(req);
    return r;
}

/* A network-level failure: always worth another try. */
static enum sink_verdict transport(const struct http_response *res, char *why, size_t whylen)
{
    if (res->result == HTTP_DONE)
        return SINK_DELIVERED; /* not a transport failure */
    snprintf(why, whylen, "%s", res->error ? res->error : "network error");
    return SINK_RETRY;
}

/* Retry on 429/5xx; the caller decides the rest. Returns 1 when it classified. */
static int retry_status(const struct http_response *res, long *retry_after, enum sink_verdict *v,
                        char *why, size_t whylen)
{
    if (res->status == 429 || res->status == 408 || res->status >= 500) {
        *retry_after = res->retry_after;
        snprintf(why, whylen, "HTTP %ld", res->status);
        *v = SINK_RETRY;
        return 1;
    }
    return 0;
}

static enum sink_verdict slack_classify(const struct http_response *res, long *retry_after,
                                        char *why, size_t whylen)
{
    static const char *const dead[] = {"invalid_payload", "invalid_blocks", "no_text",
                                       "too_many_attachments", NULL};
    static const char *const broken[] = {"no_service",
                                         "no_service_id",
                                         "no_team",
                                         "no_active_hooks",
                                         "invalid_token",
                                         "team_disabled",
                                         "channel_is_archived",
                                         "channel_not_found",
                                         "action_prohibited",
                                         "user_not_found",
                                         "posting_to_general_channel_denied",
                                         NULL};
    char body[64];
    enum sink_verdict v;

    snprintf(body, sizeof(body), "%.*s", (int)(res->body_len < 63 ? res->body_len : 63), res->body);
    body[strcspn(body, "\r\n")] = '\0';
    if (res->status == 200 && strcmp(body, "ok") == 0)
        return SINK_DELIVERED;
    for (size_t i = 0; dead[i]; i++) {
        if (strcmp(body, dead[i]) == 0) {
            snprintf(why, whylen, "HTTP %ld %s", res->status, body);
            return SINK_DEAD;
        }
    }
    for (size_t i = 0; broken[i]; i++) {
        if (strcmp(body, broken[i]) == 0) {
            snprintf(why, whylen, "HTTP %ld %s", res->status, body);
            return SINK_BROKEN;
        }
    }
    if (retry_status(res, retry_after, &v, why, whylen))
        return v;
    snprintf(why, whylen, "HTTP %ld", res->status);
    if (res->status == 403 || res->status == 404 || res->status == 410 || res->status == 401)
        return SINK_BROKEN;
    if (res->status >= 300 && res->status < 400)
        return SINK_BROKEN; /* a webhook URL that redirects is not a webhook URL */
    if (res->status >= 200 && res->status < 300)
        return SINK_RETRY; /* 2xx without "ok": unknown answer, try again later */
    return SINK_DEAD;
}

/*
 * chat.postMessage's answers (doc/slack.md, "Web API with the bot token"), read by the Web API's
 * one reader (slack_api_parse()): what it says about the token and the rate limits holds for
 * this method too; only the channel going away is a verdict of its own here.
 */
static enum sink_verdict slack_bot_classify(const struct http_response *res, long *retry_after,
                                            char *why, size_t whylen)
{
    struct slack_api_answer a;

    slack_api_parse(SLACK_API_CHAT_POST_MESSAGE, res, &a);
    /* Slack's error words are short snake_case, cleaned by sink_classify(). */
    snprintf(why, whylen, "chat.postMessage: HTTP %ld %s", res->status, a.error);
    switch (a.result) {
    case SLACK_API_OK:
        return res->status >= 200 && res->status < 300 ? SINK_DELIVERED : SINK_RETRY;
    case SLACK_API_RETRY:
        *retry_after = a.retry_after;
        return SINK_RETRY;
    case SLACK_API_REFUSED:
    case SLACK_API_MISSING_SCOPE: /* no chat:write: no channel can be posted to */
        return SINK_BROKEN;
    case SLACK_API_NOT_FOUND:
        return SINK_SUSPEND;
    case SLACK_API_ERROR:
        break;
    }
    if (strcmp(a.error, "not_in_channel") == 0 || strcmp(a.error, "is_archived") == 0)
        return SINK_SUSPEND;
    return SINK_DEAD; /* msg_too_long, no_text, invalid_blocks, ...: this message only */
}

static enum sink_verdict matrix_classify(struct sink *s, const struct http_response *res,
                                         long *retry_after, char *why, size_t whylen)
{
    json_t *j = json_loadb(res->body, res->body_len, 0, NULL);
    const char *errcode = json_string_value(json_object_get(j, "errcode"));
    enum sink_verdict v = SINK_DEAD;

    if (res->status == 200 && !s->room_id) {
        const char *room = json_string_value(json_object_get(j, "room_id"));
        if (room && room[0] == '!') {
            s->room_id = strdup(room);
            v = s->room_id ? SINK_AGAIN : SINK_RETRY;
        } else {
            snprintf(why, whylen, "directory answer without a room_id");
            v = SINK_RETRY;
        }
        goto out;
    }
    if (res->status == 200 && json_is_string(json_object_get(j, "event_id"))) {
        v = SINK_DELIVERED;
        goto out;
    }
    snprintf(why, whylen, "HTTP %ld%s%s", res->status, errcode ? " " : "", errcode ? errcode : "");
    if (errcode && strcmp(errcode, "M_LIMIT_EXCEEDED") == 0) {
        json_t *ms = json_object_get(j, "retry_after_ms");
        *retry_after = res->retry_after;
        if (*retry_after < 0 && json_is_integer(ms)) {
            /* Clamped before rounding up: a hostile value must not overflow. */
            json_int_t v_ms = json_integer_value(ms);
            if (v_ms < 0)
                v_ms = 0;
            if (v_ms > (json_int_t)86400 * 1000)
                v_ms = (json_int_t)86400 * 1000;
            *retry_after = (long)((v_ms + 999) / 1000);
        }
        v = SINK_RETRY;
    } else if (errcode && strcmp(errcode, "M_FORBIDDEN") == 0 && s->conf->subscription) {
        /* The bot is not in the room (never joined, left, kicked, banned): doc/matrix.md §3.
         * A subscription ends there; a configured room is an operator's to fix. */
        v = SINK_SUSPEND;
    } else if (errcode &&
               (strcmp(errcode, "M_FORBIDDEN") == 0 || strcmp(errcode, "M_UNKNOWN_TOKEN") == 0 ||
                strcmp(errcode, "M_MISSING_TOKEN") == 0 || strcmp(errcode, "M_USER_LOCKED") == 0 ||
                strcmp(errcode, "M_USER_SUSPENDED") == 0 ||
                (strcmp(errcode, "M_NOT_FOUND") == 0 && !s->room_id))) {
        v = SINK_BROKEN;
    } else if (errcode &&
               (strcmp(errcode, "M_TOO_LARGE") == 0 || strcmp(errcode, "M_BAD_JSON") == 0 ||
                strcmp(errcode, "M_NOT_JSON") == 0)) {
        v = SINK_DEAD;
    } else if (retry_status(res, retry_after, &v, why, whylen)) {
        /* classified by status */
    } else if (res->status == 401 || res->status == 403 || (res->status == 404 && !s->room_id)) {
        v = SINK_BROKEN;
    } else if (res->status == 200) {
        snprintf(why, whylen, "HTTP 200 without an event_id");
        v = SINK_RETRY;
    }
out:
    json_decref(j);
    return v;
}

static enum sink_verdict plain_classify(const struct sink *s, const struct http_response *res,
                                        long *retry_after, char *why, size_t whylen)
{
    enum sink_verdict v;

    if (res->status >= 200 && res->status < 300)
        return SINK_DELIVERED;
    if (retry_status(res, retry_after, &v, why, whylen))
        return v;
    snprintf(why, whylen, "HTTP %ld", res->status);
    if (res->status >= 300 && res->status < 400)
        return SINK_BROKEN;
    /* A hookshot URL that is gone or refused will refuse every message. */
    if (s->conf->type == CONF_SINK_HOOKSHOT &&
        (res->status == 401 || res->status == 403 || res->status == 404 || res->status == 410))
        return SINK_BROKEN;
    return SINK_DEAD;
}

static enum sink_verdict classify(struct sink *s, const struct http_response *res,
                                  long *retry_after, char *why, size_t whylen)
{
    if (res->result != HTTP_DONE)
        return transport(res, why, whylen);
    switch (s->conf->type) {
    case CONF_SINK_SLACK:
        return slack_classify(res, retry_after, why, whylen);
    case CONF_SINK_SLACK_BOT:
        return slack_bot_classify(res, retry_after, why, whylen);
    case CONF_SINK_MATRIX:
        return matrix_classify(s, res, retry_after, why, whylen);
    default:
        return plain_classify(s, res, retry_after, why, whylen);
    }
}

enum sink_verdict sink_classify(struct sink *s, const struct http_response *res, long *retry_after,
                                char *why, size_t whylen)
{
    enum sink_verdict v;
    char raw[512];

    *retry_after = -1;
    why[0] = '\0';
    v = classify(s, res, retry_after, why, whylen);
    /* why carries the server's words (a Matrix errcode) to logs, /readyz and alerts: redacted
     * like every outward text, and valid one-line UTF-8 for JSON (utf8.h). */
    log_redact(raw, sizeof(raw), why);
    utf8_clean(why, whylen, raw, strlen(raw), whylen - 1);
    return v;
}
