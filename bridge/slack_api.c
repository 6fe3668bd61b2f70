/*
 * Slack Web API calls with the bot token (see slack_api.h; doc/slack.md, "Web API with the bot
 * token"). Both methods are POSTed as forms with the token in the Authorization header only, so
 * it is never part of a URL, a body or a log line. The reader trusts nothing in the answer:
 * every string copied out is printable ASCII cut to its field, and an answer that is not
 * Slack's JSON is a retry (a proxy's error page) or an error, never OK.
 */
#include "slack_api.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "url.h"

#define ANSWER_MAX (64u * 1024u)

/* src (may be NULL: "") into dst[size], each byte outside printable ASCII as '?', cut. */
static void copy_printable(char *dst, size_t size, const char *src)
{
    size_t i = 0;

    for (; src && src[i] && i + 1 < size; i++)
        dst[i] = src[i] >= 0x20 && src[i] <= 0x7e ? src[i] : '?';
    dst[i] = '\0';
}

static int word_in(const char *w, const char *const *list)
{
    for (size_t i = 0; list[i]; i++) {
        if (strcmp(w, list[i]) == 0)
            return 1;
    }
    return 0;
}

int slack_api_token_refused(const char *error)
{
    static const char *const refused[] = {
        "invalid_auth",  "not_authed", "token_revoked", "token_expired", "account_inactive",
        "team_disabled", NULL};
    return error && word_in(error, refused);
}

/* An "ok": false answer: its error word decides. */
static void parse_error(json_t *j, const struct http_response *res, struct slack_api_answer *out)
{
    const char *error = json_string_value(json_object_get(j, "error"));

    if (!error)
        error = "";
    copy_printable(out->error, sizeof(out->error), error[0] ? error : "unknown_error");
    if (strcmp(error, "ratelimited") == 0 || res->status == 429) {
        out->result = SLACK_API_RETRY;
        out->retry_after = res->retry_after;
    } else if (slack_api_token_refused(error)) {
        out->result = SLACK_API_REFUSED;
    } else if (strcmp(error, "channel_not_found") == 0) {
        out->result = SLACK_API_NOT_FOUND;
    } else if (strcmp(error, "missing_scope") == 0) {
        /* Slack names the scope it wants in "needed": the operator's fix. */
        const char *needed = json_string_value(json_object_get(j, "needed"));
        char scope[40]; /* with the words around it, fits error[64] */
        copy_printable(scope, sizeof(scope), needed);
        if (scope[0])
            snprintf(out->error, sizeof(out->error), "missing_scope (needed: %s)", scope);
        out->result = SLACK_API_MISSING_SCOPE;
    } else if (res->status == 408 || res->status >= 500) {
        out->result = SLACK_API_RETRY;
        out->retry_after = res->retry_after;
    } else if (res->status == 401 || res->status == 403) {
        out->result = SLACK_API_REFUSED;
    } else {
        out->result = SLACK_API_ERROR;
    }
}

void slack_api_parse(enum slack_api_method method, const struct http_response *res,
                     struct slack_api_answer *out)
{
    json_t *j = NULL, *ok;

    memset(out, 0, sizeof(*out));
    out->retry_after = -1;
    if (res->result != HTTP_DONE) {
        out->result = SLACK_API_RETRY;
        copy_printable(out->error, sizeof(out->error), res->error ? res->error : "network error");
        return;
    }
    j = json_loadb(res->body, res->body_len, 0, NULL);
    ok = json_object_get(j, "ok");
    if (json_is_true(ok)) {
        out->result = SLACK_API_OK;
        if (method == SLACK_API_CONVERSATIONS_INFO) {
            json_t *ch = json_object_get(j, "channel");
            out->is_member = json_is_true(json_object_get(ch, "is_member"));
            out->is_archived = json_is_true(json_object_get(ch, "is_archived"));
        } else if (method == SLACK_API_AUTH_TEST) {
            copy_printable(out->user_id, sizeof(out->user_id),
                           json_string_value(json_object_get(j, "user_id")));
            copy_printable(out->user, sizeof(out->user),
                           json_string_value(json_object_get(j, "user")));
            copy_printable(out->team, sizeof(out->team),
                           json_string_value(json_object_get(j, "team")));
        }
    } else if (json_is_false(ok)) {
        parse_error(j, res, out);
    } else {
        /* Not Slack's JSON: a proxy's page, a truncated answer. */
        snprintf(out->error, sizeof(out->error), "HTTP %ld, not Slack's answer", res->status);
        if (res->status == 429 || res->status == 408 || res->status >= 500) {
            out->result = SLACK_API_RETRY;
            out->retry_after = res->retry_after;
        } else if (res->status == 401 || res->status == 403) {
            out->result = SLACK_API_REFUSED;
        } else if (res->status >= 200 && res->status < 300) {
            out->result = SLACK_API_RETRY;
        } else {
            out->result = SLACK_API_ERROR;
        }
    }
    json_decref(j);
}

struct slack_api_call {
    enum slack_api_method method;
    slack_api_cb cb;
    void *userdata;
    struct http_xfer *xfer;
};

static void on_answer(void *userdata, const struct http_response *res)
{
    struct slack_api_call *c = userdata;
    struct slack_api_answer a;

    slack_api_parse(c->method, res, &a);
    c->cb(c->userdata, &a);
    free(c);
}

int slack_api_call(struct http *h, enum slack_api_method method, const char *api_url,
                   const char *token, const char *channel, long timeout_ms, slack_api_cb cb,
                   void *userdata, struct slack_api_call **out)
{
    struct strbuf body = {0}, auth = {0};
    struct slack_api_call *c = NULL;
    char *url = NULL, *form = NULL, *bearer = NULL;
    const char *headers[] = {"Content-Type: application/x-www-form-urlencoded", NULL, NULL};
    struct http_request req = {0};
    int r = -ENOMEM;

    if ((method == SLACK_API_CONVERSATIONS_INFO && !channel) ||
        method == SLACK_API_CHAT_POST_MESSAGE)
        return -EINVAL;
    url = url_build(api_url, method == SLACK_API_AUTH_TEST ? "/auth.test" : "/conversations.info");
    if (method == SLACK_API_CONVERSATIONS_INFO) {
        strbuf_puts(&body, "channel=");
        url_put_escaped(&body, channel);
    }
    form = strbuf_take(&body);
    strbuf_printf(&auth, "Authorization: Bearer %s", token);
    bearer = strbuf_take(&auth);
    c = calloc(1, sizeof(*c));
    if (!url || !form || !bearer || !c)
        goto out;
    c->method = method;
    c->cb = cb;
    c->userdata = userdata;
    headers[1] = bearer;
    req.method = "POST";
    req.url = url;
    req.headers = headers;
    req.body = form;
    req.body_len = strlen(form);
    req.timeout_ms = timeout_ms;
    req.max_body = ANSWER_MAX;
    req.truncate = 1; /* an answer cut short fails as JSON: a retry, not a failed transfer */
    r = http_start(h, &req, on_answer, c, &c->xfer);
    if (r == 0) {
        if (out)
            *out = c;
        c = NULL; /* on_answer() or slack_api_cancel() frees it */
    }
out:
    free(c);
    free(url);
    free(form);
    if (bearer) {
        /* The token does not linger in freed memory longer than it must. */
        memset(bearer, 0, strlen(bearer));
        free(bearer);
    }
    strbuf_fini(&body);
    strbuf_fini(&auth);
    return r;
}

void slack_api_cancel(struct slack_api_call *c)
{
    if (!c)
        return;
    http_cancel(c->xfer);
    free(c);
}
