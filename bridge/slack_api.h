/*
 * Slack Web API calls made with the bot token (doc/slack.md, "Web API with the bot token"):
 * auth.test (who the bot is; --doctor and the start of subscriptions) and conversations.info
 * (whether the bot is a member of a channel, before `subscribe` subscribes it). chat.postMessage
 * is not here: it is a sink (sink.c), delivered by the outbox. The answers' reader is pure and
 * fuzzed (slack_api_parse()); the calls run on the shared HTTP client and never log the token.
 */
#ifndef YTB_SLACK_API_H
#define YTB_SLACK_API_H

#include <stddef.h>

#include "http.h"

enum slack_api_result {
    SLACK_API_OK = 0,
    SLACK_API_REFUSED,       /* the token is refused: invalid_auth, not_authed, token_revoked,
                                token_expired, account_inactive, team_disabled, HTTP 401/403 */
    SLACK_API_NOT_FOUND,     /* conversations.info: channel_not_found (a private channel the bot
                                is not in answers this too) */
    SLACK_API_MISSING_SCOPE, /* missing_scope: the app lacks a scope (error names it) */
    SLACK_API_RETRY,         /* 429 (retry_after), 5xx, a network failure, ratelimited: try later */
    SLACK_API_ERROR,         /* any other "ok": false, or an answer that is not Slack's JSON */
};

#define SLACK_API_ID_MAX   64
#define SLACK_API_NAME_MAX 128

struct slack_api_answer {
    enum slack_api_result result;
    char error[64];   /* Slack's "error" (printable ASCII, cut), or a short reason; "" when OK */
    long retry_after; /* seconds, SLACK_API_RETRY with a Retry-After; else -1 */
    /* conversations.info, SLACK_API_OK */
    int is_member, is_archived;
    /* auth.test, SLACK_API_OK: printable, cut; "" when absent */
    char user_id[SLACK_API_ID_MAX + 1]; /* the bot user's id, "U0..." */
    char user[SLACK_API_NAME_MAX + 1];  /* its name, for "/invite @name" */
    char team[SLACK_API_NAME_MAX + 1];
};

/*
 * Whether Slack's error word says the token itself is refused (invalid_auth, not_authed,
 * token_revoked, token_expired, account_inactive, team_disabled): the one list, for every
 * method called with the bot token (chat.postMessage's answers too, sink.c). NULL: no.
 */
int slack_api_token_refused(const char *error);

enum slack_api_method {
    SLACK_API_AUTH_TEST = 0,
    SLACK_API_CONVERSATIONS_INFO,
    SLACK_API_CHAT_POST_MESSAGE, /* read only (the outbox posts, sink.c): no fields of its own */
};

/*
 * Reads the answer res to method into *out (pure; the fuzz harness's entry point). Every
 * string copied out is printable ASCII and cut to its field.
 */
void slack_api_parse(enum slack_api_method method, const struct http_response *res,
                     struct slack_api_answer *out);

typedef void (*slack_api_cb)(void *userdata, const struct slack_api_answer *a);

struct slack_api_call;

/*
 * Starts a call against api_url (chat.slack.api_url) with token (Authorization: Bearer): a POST
 * of auth.test (channel NULL) or of conversations.info with the form field channel, at most
 * timeout_ms. cb runs once, from the loop, unless the call is cancelled with slack_api_cancel()
 * first; *out (out may be NULL) names the call until cb runs. Returns 0 or -errno (then cb never
 * runs).
 */
int slack_api_call(struct http *h, enum slack_api_method method, const char *api_url,
                   const char *token, const char *channel, long timeout_ms, slack_api_cb cb,
                   void *userdata, struct slack_api_call **out);

/* Cancels a call whose cb has not run yet (it never will). NULL is fine. */
void slack_api_cancel(struct slack_api_call *c);

#endif
