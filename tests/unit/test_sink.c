/* Unit tests for sink requests and the classification of every documented answer. */
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "conf.h"
#include "http.h"
#include "log.h"
#include "outbox.h"
#include "sink.h"
#include "test.h"

static struct http_response answer(long status, const char *body, long retry_after)
{
    return (struct http_response){.result = HTTP_DONE,
                                  .status = status,
                                  .body = body,
                                  .body_len = strlen(body),
                                  .retry_after = retry_after};
}

static enum sink_verdict classify(struct sink *s, long status, const char *body, long ra,
                                  long *delay)
{
    char why[256];
    struct http_response res = answer(status, body, ra);
    return sink_classify(s, &res, delay, why, sizeof(why));
}

/* One answer and the verdict it must get. */
struct verdict_case {
    long status;
    const char *body;
    enum sink_verdict want;
};

static void check_verdicts(struct sink *s, const struct verdict_case *cases, size_t n)
{
    long d;
    for (size_t i = 0; i < n; i++) {
        enum sink_verdict v = classify(s, cases[i].status, cases[i].body, -1, &d);
        if (v != cases[i].want)
            fprintf(stderr, "%s %ld %s: got %s\n", s->conf->name, cases[i].status, cases[i].body,
                    sink_verdict_name(v));
        CHECK(v == cases[i].want);
    }
}

static void test_slack_verdicts(void)
{
    struct conf_sink c = {.name = "team", .type = CONF_SINK_SLACK, .url = "http://x/slack"};
    struct sink s;
    long d;
    static const struct verdict_case cases[] = {
        {200, "ok", SINK_DELIVERED},
        {400, "invalid_payload", SINK_DEAD},
        {400, "invalid_blocks", SINK_DEAD},
        {400, "no_text", SINK_DEAD},
        {404, "no_service", SINK_BROKEN},
        {403, "no_active_hooks", SINK_BROKEN},
        {403, "invalid_token", SINK_BROKEN},
        {400, "invalid_token", SINK_BROKEN}, /* classified by body first */
        {410, "channel_is_archived", SINK_BROKEN},
        {404, "channel_not_found", SINK_BROKEN},
        {403, "action_prohibited", SINK_BROKEN},
        {403, "team_disabled", SINK_BROKEN},
        {500, "<html><title>Server Error | Slack</title></html>", SINK_RETRY},
        {503, "", SINK_RETRY},
        {403, "", SINK_BROKEN},
        {410, "", SINK_BROKEN},
        {400, "something_new", SINK_DEAD},
    };
    CHECK_INT(sink_init(&s, &c), 0);
    CHECK_INT(sink_pace_ms(&s), 1000);
    check_verdicts(&s, cases, sizeof(cases) / sizeof(cases[0]));
    CHECK_INT(classify(&s, 429, "rate_limited", 30, &d), SINK_RETRY);
    CHECK_INT(d, 30);
    sink_fini(&s);
}

static void test_matrix_requests_and_verdicts(void)
{
    struct conf_sink c = {.name = "room",
                          .type = CONF_SINK_MATRIX,
                          .homeserver = "http://hs",
                          .room = "#yt:hs.example",
                          .access_token = "syt_not_a_real_token"};
    struct outbox_entry *e = outbox_entry_new("ab12-7-3", "room", "project.created", "{}", 1, 7);
    struct sink_request req;
    struct sink s;
    long d;

    CHECK_INT(sink_init(&s, &c), 0);
    /* First the alias is resolved, escaped as a path segment. */
    CHECK_INT(sink_request(&s, e, &req), 0);
    CHECK_STR(req.method, "GET");
    CHECK_STR(req.url, "http://hs/_matrix/client/v3/directory/room/%23yt%3Ahs.example");
    CHECK_STR(req.headers[0], "Authorization: Bearer syt_not_a_real_token");
    sink_request_fini(&req);
    CHECK_INT(classify(&s, 200, "{\"room_id\":\"!abc:hs.example\",\"servers\":[]}", -1, &d),
              SINK_AGAIN);
    /* Then the send, the txnId being the entry's id. */
    CHECK_INT(sink_request(&s, e, &req), 0);
    CHECK_STR(req.method, "PUT");
    CHECK_STR(req.url,
              "http://hs/_matrix/client/v3/rooms/%21abc%3Ahs.example/send/m.room.message/ab12-7-3");
    CHECK_STR(req.body, "{}");
    sink_request_fini(&req);

    CHECK_INT(classify(&s, 200, "{\"event_id\":\"$x\"}", -1, &d), SINK_DELIVERED);
    CHECK_INT(
        classify(&s, 429, "{\"errcode\":\"M_LIMIT_EXCEEDED\",\"retry_after_ms\":2500}", -1, &d),
        SINK_RETRY);
    CHECK_INT(d, 3); /* rounded up */
    CHECK_INT(
        classify(&s, 429, "{\"errcode\":\"M_LIMIT_EXCEEDED\",\"retry_after_ms\":2500}", 7, &d),
        SINK_RETRY);
    CHECK_INT(d, 7); /* the header wins */
    /* Hostile values neither overflow nor go negative: clamped to a day, or zero. */
    CHECK_INT(classify(&s, 429,
                       "{\"errcode\":\"M_LIMIT_EXCEEDED\",\"retry_after_ms\":9223372036854775807}",
                       -1, &d),
              SINK_RETRY);
    CHECK_INT(d, 86400);
    CHECK_INT(
        classify(&s, 429, "{\"errcode\":\"M_LIMIT_EXCEEDED\",\"retry_after_ms\":-5000}", -1, &d),
        SINK_RETRY);
    CHECK_INT(d, 0);
    CHECK_INT(classify(&s, 403, "{\"errcode\":\"M_FORBIDDEN\",\"error\":\"not in room\"}", -1, &d),
              SINK_BROKEN);
    CHECK_INT(classify(&s, 401, "{\"errcode\":\"M_UNKNOWN_TOKEN\",\"soft_logout\":false}", -1, &d),
              SINK_BROKEN);
    CHECK_INT(classify(&s, 413, "{\"errcode\":\"M_TOO_LARGE\"}", -1, &d), SINK_DEAD);
    CHECK_INT(classify(&s, 502, "<html>bad gateway</html>", -1, &d), SINK_RETRY);
    CHECK_INT(classify(&s, 400, "{\"errcode\":\"M_UNRECOGNIZED\"}", -1, &d), SINK_DEAD);
    sink_fini(&s);
    outbox_entry_free(e);
}

/* The server's words in why are redacted and made one line of valid UTF-8. */
static void test_why_is_clean(void)
{
    struct conf_sink c = {.name = "room",
                          .type = CONF_SINK_MATRIX,
                          .homeserver = "http://127.0.0.1:1",
                          .room = "!r:x",
                          .access_token = "syt_test_only_not_a_real_token"};
    struct sink s;
    char why[64];
    long d;
    const char *body =
        "{\"errcode\":\"M_X syt_test_only_not_a_real_token\\n\\u00e9\\u00e9\\u00e9"
        "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"}";
    struct http_response res = answer(400, body, -1);

    CHECK_INT(sink_init(&s, &c), 0);
    CHECK_INT(log_add_secret(c.access_token), 0);
    sink_classify(&s, &res, &d, why, sizeof(why));
    CHECK(strstr(why, "syt_test") == NULL);
    CHECK(strstr(why, "[REDACTED]") != NULL);
    CHECK(strchr(why, '\n') == NULL);
    json_t *j = json_string(why);
    CHECK(j != NULL);
    json_decref(j);
    log_clear_secrets();
    sink_fini(&s);
}

static void test_unknown_alias_breaks_the_sink(void)
{
    struct conf_sink c = {.name = "room",
                          .type = CONF_SINK_MATRIX,
                          .homeserver = "http://hs",
                          .room = "#gone:hs",
                          .access_token = "syt_not_a_real_token"};
    struct sink s;
    long d;
    CHECK_INT(sink_init(&s, &c), 0);
    CHECK_INT(classify(&s, 404, "{\"errcode\":\"M_NOT_FOUND\"}", -1, &d), SINK_BROKEN);
    sink_fini(&s);
}

static void test_webhook_signature_and_verdicts(void)
{
    struct conf_sink c = {.name = "ci",
                          .type = CONF_SINK_WEBHOOK,
                          .url = "http://x/hook",
                          .secret = "It's a Secret to Everybody"};
    struct outbox_entry *e =
        outbox_entry_new("id-1", "ci", "project.created", "Hello, World!", 1, 1);
    struct sink_request req;
    struct sink s;
    long d;

    CHECK_INT(sink_init(&s, &c), 0);
    CHECK_INT(sink_request(&s, e, &req), 0);
    CHECK_STR(req.method, "POST");
    CHECK_STR(req.headers[0], "Content-Type: application/json");
    CHECK_STR(req.headers[1], "X-Ytbridge-Event: project.created");
    CHECK_STR(req.headers[2], "X-Ytbridge-Delivery: id-1");
    /* GitHub's documented example of the same scheme (key and body above). */
    CHECK_STR(req.headers[3],
              "X-Ytbridge-Signature-256: "
              "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
    CHECK(req.headers[4] == NULL);
    sink_request_fini(&req);
    CHECK_INT(classify(&s, 204, "", -1, &d), SINK_DELIVERED);
    CHECK_INT(classify(&s, 429, "", 9, &d), SINK_RETRY);
    CHECK_INT(d, 9);
    CHECK_INT(classify(&s, 500, "", -1, &d), SINK_RETRY);
    CHECK_INT(classify(&s, 400, "", -1, &d), SINK_DEAD);
    CHECK_INT(classify(&s, 410, "", -1, &d), SINK_DEAD);
    sink_fini(&s);
    outbox_entry_free(e);
}

static void test_network_errors_are_retried(void)
{
    struct conf_sink c = {.name = "hs", .type = CONF_SINK_HOOKSHOT, .url = "http://x/h"};
    struct http_response res = {.result = HTTP_ERR_CONNECT, .body = "", .error = "refused"};
    struct sink s;
    char why[64];
    long d;
    CHECK_INT(sink_init(&s, &c), 0);
    CHECK_INT(sink_classify(&s, &res, &d, why, sizeof(why)), SINK_RETRY);
    CHECK_STR(why, "refused");
    CHECK_INT(classify(&s, 404, "", -1, &d), SINK_BROKEN);
    sink_fini(&s);
}

/* chat.postMessage: the webhook's body with "channel" first, the bot token, the API URL. */
static void test_slack_bot_request(void)
{
    struct conf_sink c = {.name = "sub-slack-C0123",
                          .type = CONF_SINK_SLACK_BOT,
                          .url = "http://127.0.0.1:1/api",
                          .room = "C0123\"x",
                          .access_token = "xoxb-test-only-not-a-real-token",
                          .subscription = 1};
    const char *body = "{\"text\":\"Project \\\"A\\u00e9\\\" created\",\"blocks\":[{\"type\":"
                       "\"rich_text\",\"elements\":[]}],\"unfurl_links\":false,\"n\":1.50}";
    struct outbox_entry *e = outbox_entry_new("id-1", c.name, "project.created", body, 1, 1);
    struct outbox_entry *empty = outbox_entry_new("id-2", c.name, "project.created", " { } ", 1, 1);
    struct outbox_entry *bad = outbox_entry_new("id-3", c.name, "project.created", "[1]", 1, 1);
    struct sink_request req;
    struct sink s;

    CHECK_INT(sink_init(&s, &c), 0);
    CHECK_INT(sink_pace_ms(&s), 1000);
    CHECK_INT(sink_request(&s, e, &req), 0);
    CHECK_STR(req.method, "POST");
    CHECK_STR(req.url, "http://127.0.0.1:1/api/chat.postMessage");
    CHECK_STR(req.headers[0], "Content-Type: application/json; charset=utf-8");
    CHECK_STR(req.headers[1], "Authorization: Bearer xoxb-test-only-not-a-real-token");
    CHECK(req.headers[2] == NULL);
    /* The channel first, escaped; every other member byte for byte (1.50 stays 1.50). */
    char want[512];
    snprintf(want, sizeof(want), "{\"channel\":\"C0123\\\"x\",%s", body + 1);
    CHECK_STR(req.body, want);
    CHECK_INT(req.body_len, strlen(req.body));
    json_t *j = json_loadb(req.body, req.body_len, 0, NULL);
    CHECK(json_is_object(j));
    CHECK_STR(json_string_value(json_object_get(j, "channel")), "C0123\"x");
    CHECK_INT(json_object_size(j), 5);
    json_decref(j);
    sink_request_fini(&req);

    CHECK_INT(sink_request(&s, empty, &req), 0);
    CHECK_STR(req.body, "{\"channel\":\"C0123\\\"x\" } ");
    j = json_loadb(req.body, req.body_len, 0, NULL);
    CHECK(json_is_object(j));
    json_decref(j);
    sink_request_fini(&req);

    CHECK_INT(sink_request(&s, bad, &req), -EINVAL);
    CHECK(req.url == NULL);
    sink_fini(&s);
    outbox_entry_free(e);
    outbox_entry_free(empty);
    outbox_entry_free(bad);
}

static void test_slack_bot_verdicts(void)
{
    struct conf_sink c = {.name = "sub-slack-C0123",
                          .type = CONF_SINK_SLACK_BOT,
                          .url = "http://127.0.0.1:1/api",
                          .room = "C0123",
                          .access_token = "xoxb-test-only-not-a-real-token",
                          .subscription = 1};
    struct sink s;
    char why[128];
    long d;
    static const struct verdict_case cases[] = {
        {200, "{\"ok\":true,\"channel\":\"C0123\",\"ts\":\"1.2\",\"message\":{}}", SINK_DELIVERED},
        {200, "{\"ok\":true,\"warning\":\"missing_charset\"}", SINK_DELIVERED},
        {200, "{\"ok\":false,\"error\":\"not_in_channel\"}", SINK_SUSPEND},
        {200, "{\"ok\":false,\"error\":\"channel_not_found\"}", SINK_SUSPEND},
        {200, "{\"ok\":false,\"error\":\"is_archived\"}", SINK_SUSPEND},
        {200, "{\"ok\":false,\"error\":\"invalid_auth\"}", SINK_BROKEN},
        {200, "{\"ok\":false,\"error\":\"not_authed\"}", SINK_BROKEN},
        {200, "{\"ok\":false,\"error\":\"token_revoked\"}", SINK_BROKEN},
        {200, "{\"ok\":false,\"error\":\"token_expired\"}", SINK_BROKEN},
        {200, "{\"ok\":false,\"error\":\"account_inactive\"}", SINK_BROKEN},
        {200, "{\"ok\":false,\"error\":\"team_disabled\"}", SINK_BROKEN},
        {200, "{\"ok\":false,\"error\":\"missing_scope\",\"needed\":\"chat:write\"}", SINK_BROKEN},
        {401, "", SINK_BROKEN},
        {403, "<html>forbidden</html>", SINK_BROKEN},
        {200, "{\"ok\":false,\"error\":\"msg_too_long\"}", SINK_DEAD},
        {200, "{\"ok\":false,\"error\":\"no_text\"}", SINK_DEAD},
        {200, "{\"ok\":false,\"error\":\"invalid_blocks\"}", SINK_DEAD},
        {200, "{\"ok\":false,\"error\":\"invalid_arguments\"}", SINK_DEAD},
        {200, "{\"ok\":false,\"error\":\"too_many_attachments\"}", SINK_DEAD},
        {200, "{\"ok\":false,\"error\":\"something_new\"}", SINK_DEAD},
        {200, "{\"ok\":false}", SINK_DEAD},
        {500, "", SINK_RETRY},
        {503, "<html>unavailable</html>", SINK_RETRY},
        {408, "", SINK_RETRY},
        {200, "<html>ok?</html>", SINK_RETRY},
        {200, "ok", SINK_RETRY},
        {404, "", SINK_DEAD},
    };
    CHECK_INT(sink_init(&s, &c), 0);
    check_verdicts(&s, cases, sizeof(cases) / sizeof(cases[0]));
    CHECK_INT(classify(&s, 429, "{\"ok\":false,\"error\":\"ratelimited\"}", 30, &d), SINK_RETRY);
    CHECK_INT(d, 30);
    CHECK_INT(classify(&s, 429, "", 12, &d), SINK_RETRY);
    CHECK_INT(d, 12);
    CHECK_INT(classify(&s, 200, "{\"ok\":false,\"error\":\"ratelimited\"}", 5, &d), SINK_RETRY);
    CHECK_INT(d, 5);
    /* why names Slack's error word, never the token or the URL. */
    struct http_response res = answer(200, "{\"ok\":false,\"error\":\"not_in_channel\"}", -1);
    CHECK_INT(sink_classify(&s, &res, &d, why, sizeof(why)), SINK_SUSPEND);
    CHECK(strstr(why, "not_in_channel") != NULL);
    CHECK(strstr(why, "xoxb") == NULL);
    CHECK(strstr(why, "127.0.0.1") == NULL);
    sink_fini(&s);
}

/* M_FORBIDDEN suspends a subscription's room; a configured room still breaks. */
static void test_matrix_subscription_forbidden(void)
{
    struct conf_sink c = {.name = "sub-matrix-r",
                          .type = CONF_SINK_MATRIX,
                          .homeserver = "http://hs",
                          .room = "!r:hs",
                          .access_token = "syt_not_a_real_token",
                          .subscription = 1};
    struct sink s;
    long d;
    const char *forbidden = "{\"errcode\":\"M_FORBIDDEN\",\"error\":\"not in room\"}";

    CHECK_INT(sink_init(&s, &c), 0);
    CHECK_INT(classify(&s, 403, forbidden, -1, &d), SINK_SUSPEND);
    CHECK_INT(classify(&s, 401, "{\"errcode\":\"M_UNKNOWN_TOKEN\"}", -1, &d), SINK_BROKEN);
    CHECK_INT(classify(&s, 401, "{\"errcode\":\"M_MISSING_TOKEN\"}", -1, &d), SINK_BROKEN);
    CHECK_INT(classify(&s, 200, "{\"event_id\":\"$x\"}", -1, &d), SINK_DELIVERED);
    sink_fini(&s);
    c.subscription = 0;
    CHECK_INT(sink_init(&s, &c), 0);
    CHECK_INT(classify(&s, 403, forbidden, -1, &d), SINK_BROKEN);
    sink_fini(&s);
}

/* A configured Slack webhook is untouched by the bot sink: same URL, headers and body. */
static void test_slack_webhook_request_unchanged(void)
{
    struct conf_sink c = {.name = "team", .type = CONF_SINK_SLACK, .url = "http://x/slack"};
    struct outbox_entry *e =
        outbox_entry_new("id-1", "team", "project.created", "{\"text\":\"a\"}", 1, 1);
    struct sink_request req;
    struct sink s;

    CHECK_INT(sink_init(&s, &c), 0);
    CHECK_INT(sink_request(&s, e, &req), 0);
    CHECK_STR(req.method, "POST");
    CHECK_STR(req.url, "http://x/slack");
    CHECK_STR(req.headers[0], "Content-Type: application/json");
    CHECK(req.headers[1] == NULL);
    CHECK_STR(req.body, "{\"text\":\"a\"}");
    sink_request_fini(&req);
    sink_fini(&s);
    outbox_entry_free(e);
}

int main(void)
{
    RUN(test_slack_verdicts);
    RUN(test_matrix_requests_and_verdicts);
    RUN(test_why_is_clean);
    RUN(test_unknown_alias_breaks_the_sink);
    RUN(test_webhook_signature_and_verdicts);
    RUN(test_network_errors_are_retried);
    RUN(test_slack_bot_request);
    RUN(test_slack_bot_verdicts);
    RUN(test_matrix_subscription_forbidden);
    RUN(test_slack_webhook_request_unchanged);
    return test_done();
}
