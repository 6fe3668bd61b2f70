/* Unit tests for the reader of Slack Web API answers (auth.test, conversations.info). */
#include <string.h>

#include "http.h"
#include "slack_api.h"
#include "test.h"

static struct slack_api_answer parse(enum slack_api_method m, long status, const char *body,
                                     long retry_after)
{
    struct http_response res = {.result = HTTP_DONE,
                                .status = status,
                                .body = body,
                                .body_len = strlen(body),
                                .retry_after = retry_after};
    struct slack_api_answer a;
    slack_api_parse(m, &res, &a);
    return a;
}

static void test_auth_test_ok(void)
{
    struct slack_api_answer a =
        parse(SLACK_API_AUTH_TEST, 200,
              "{\"ok\":true,\"url\":\"https://acme.slack.com/\",\"team\":\"Acme\",\"user\":"
              "\"ytbridge\",\"team_id\":\"T0123\",\"user_id\":\"U0123\",\"bot_id\":\"B0123\"}",
              -1);
    CHECK_INT(a.result, SLACK_API_OK);
    CHECK_STR(a.error, "");
    CHECK_STR(a.user_id, "U0123");
    CHECK_STR(a.user, "ytbridge");
    CHECK_STR(a.team, "Acme");
    CHECK_INT(a.retry_after, -1);
    CHECK_INT(a.is_member, 0);
}

/* Strings from the answer: printable ASCII only, cut to their fields. */
static void test_strings_are_printable_and_cut(void)
{
    char body[1024];
    char longname[400];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    snprintf(body, sizeof(body),
             "{\"ok\":true,\"team\":\"\\u00c9quipe\\n\",\"user\":\"%s\",\"user_id\":\"U\\u0007\"}",
             longname);
    struct slack_api_answer a = parse(SLACK_API_AUTH_TEST, 200, body, -1);
    CHECK_INT(a.result, SLACK_API_OK);
    CHECK_STR(a.team, "??quipe?"); /* two UTF-8 bytes, then the newline */
    CHECK_STR(a.user_id, "U?");
    CHECK_INT(strlen(a.user), SLACK_API_NAME_MAX);

    a = parse(SLACK_API_AUTH_TEST, 200, "{\"ok\":true}", -1);
    CHECK_INT(a.result, SLACK_API_OK);
    CHECK_STR(a.user, "");
}

static void test_conversations_info(void)
{
    struct slack_api_answer a = parse(
        SLACK_API_CONVERSATIONS_INFO, 200,
        "{\"ok\":true,\"channel\":{\"id\":\"C0123\",\"is_member\":true,\"is_archived\":false}}",
        -1);
    CHECK_INT(a.result, SLACK_API_OK);
    CHECK_INT(a.is_member, 1);
    CHECK_INT(a.is_archived, 0);
    CHECK_STR(a.user_id, "");

    a = parse(
        SLACK_API_CONVERSATIONS_INFO, 200,
        "{\"ok\":true,\"channel\":{\"id\":\"C0123\",\"is_member\":false,\"is_archived\":true}}",
        -1);
    CHECK_INT(a.result, SLACK_API_OK);
    CHECK_INT(a.is_member, 0);
    CHECK_INT(a.is_archived, 1);

    /* Anything but JSON true is not a member. */
    a = parse(SLACK_API_CONVERSATIONS_INFO, 200,
              "{\"ok\":true,\"channel\":{\"is_member\":\"true\"}}", -1);
    CHECK_INT(a.result, SLACK_API_OK);
    CHECK_INT(a.is_member, 0);
}

static void test_error_classes(void)
{
    static const struct {
        enum slack_api_method m;
        long status;
        const char *body;
        enum slack_api_result want;
        const char *error;
    } cases[] = {
        {SLACK_API_AUTH_TEST, 200, "{\"ok\":false,\"error\":\"invalid_auth\"}", SLACK_API_REFUSED,
         "invalid_auth"},
        {SLACK_API_AUTH_TEST, 200, "{\"ok\":false,\"error\":\"not_authed\"}", SLACK_API_REFUSED,
         "not_authed"},
        {SLACK_API_AUTH_TEST, 200, "{\"ok\":false,\"error\":\"token_revoked\"}", SLACK_API_REFUSED,
         "token_revoked"},
        {SLACK_API_AUTH_TEST, 200, "{\"ok\":false,\"error\":\"token_expired\"}", SLACK_API_REFUSED,
         "token_expired"},
        {SLACK_API_AUTH_TEST, 200, "{\"ok\":false,\"error\":\"account_inactive\"}",
         SLACK_API_REFUSED, "account_inactive"},
        {SLACK_API_AUTH_TEST, 200, "{\"ok\":false,\"error\":\"team_disabled\"}", SLACK_API_REFUSED,
         "team_disabled"},
        {SLACK_API_AUTH_TEST, 401, "", SLACK_API_REFUSED, "HTTP 401, not Slack's answer"},
        {SLACK_API_AUTH_TEST, 403, "<html>no</html>", SLACK_API_REFUSED,
         "HTTP 403, not Slack's answer"},
        {SLACK_API_CONVERSATIONS_INFO, 200, "{\"ok\":false,\"error\":\"channel_not_found\"}",
         SLACK_API_NOT_FOUND, "channel_not_found"},
        {SLACK_API_CONVERSATIONS_INFO, 200,
         "{\"ok\":false,\"error\":\"missing_scope\",\"needed\":\"groups:read\"}",
         SLACK_API_MISSING_SCOPE, "missing_scope (needed: groups:read)"},
        {SLACK_API_CONVERSATIONS_INFO, 200, "{\"ok\":false,\"error\":\"missing_scope\"}",
         SLACK_API_MISSING_SCOPE, "missing_scope"},
        {SLACK_API_CONVERSATIONS_INFO, 500, "<html>oops</html>", SLACK_API_RETRY,
         "HTTP 500, not Slack's answer"},
        {SLACK_API_CONVERSATIONS_INFO, 503, "{\"ok\":false,\"error\":\"service_unavailable\"}",
         SLACK_API_RETRY, "service_unavailable"},
        {SLACK_API_CONVERSATIONS_INFO, 200, "not json", SLACK_API_RETRY,
         "HTTP 200, not Slack's answer"},
        {SLACK_API_CONVERSATIONS_INFO, 200, "{\"ok\":false,\"error\":\"invalid_arguments\"}",
         SLACK_API_ERROR, "invalid_arguments"},
        {SLACK_API_CONVERSATIONS_INFO, 200, "{\"ok\":false}", SLACK_API_ERROR, "unknown_error"},
        {SLACK_API_CONVERSATIONS_INFO, 404, "Not Found", SLACK_API_ERROR,
         "HTTP 404, not Slack's answer"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct slack_api_answer a = parse(cases[i].m, cases[i].status, cases[i].body, -1);
        if (a.result != cases[i].want)
            fprintf(stderr, "%ld %s: got %d\n", cases[i].status, cases[i].body, (int)a.result);
        CHECK_INT(a.result, cases[i].want);
        CHECK_STR(a.error, cases[i].error);
        CHECK_INT(a.retry_after, -1);
    }
}

static void test_retries(void)
{
    struct slack_api_answer a =
        parse(SLACK_API_CONVERSATIONS_INFO, 429, "{\"ok\":false,\"error\":\"ratelimited\"}", 20);
    CHECK_INT(a.result, SLACK_API_RETRY);
    CHECK_INT(a.retry_after, 20);
    CHECK_STR(a.error, "ratelimited");

    a = parse(SLACK_API_AUTH_TEST, 429, "", 7);
    CHECK_INT(a.result, SLACK_API_RETRY);
    CHECK_INT(a.retry_after, 7);

    a = parse(SLACK_API_AUTH_TEST, 200, "{\"ok\":false,\"error\":\"ratelimited\"}", -1);
    CHECK_INT(a.result, SLACK_API_RETRY);
    CHECK_INT(a.retry_after, -1);

    struct http_response res = {.result = HTTP_ERR_CONNECT, .body = "", .error = "refused"};
    slack_api_parse(SLACK_API_AUTH_TEST, &res, &a);
    CHECK_INT(a.result, SLACK_API_RETRY);
    CHECK_STR(a.error, "refused");
}

int main(void)
{
    RUN(test_auth_test_ok);
    RUN(test_strings_are_printable_and_cut);
    RUN(test_conversations_info);
    RUN(test_error_classes);
    RUN(test_retries);
    return test_done();
}
