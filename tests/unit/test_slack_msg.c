/*
 * Socket Mode messages and apps.connections.open answers as the client reads them
 * (slack_msg_parse(), slack_msg_parse_open()), from recorded samples (tests/data/slack/, see
 * SOURCES.md) and hostile variations.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slack_msg.h"
#include "test.h"

static char *read_data(const char *name, size_t *len)
{
    return test_data("slack", name, len);
}

static int parse_str(const char *s, struct slack_msg *m)
{
    return slack_msg_parse(s, strlen(s), m);
}

static void test_recorded(void)
{
    struct slack_msg m;
    size_t len;
    char *buf = read_data("envelope_slash_commands.json", &len);

    CHECK_INT(slack_msg_parse(buf, len, &m), 0);
    CHECK_INT(m.kind, SLACK_MSG_ENVELOPE);
    CHECK_STR(m.envelope_id, "dbdd0ef3-1543-4f94-bfb4-133d0e6c1545");
    CHECK_STR(m.type, "slash_commands");
    CHECK_INT(m.accepts_response_payload, 1);
    CHECK_INT(m.is_slash_command, 1);
    CHECK_STR(m.command, "/randorilke");
    CHECK_STR(m.text, "");
    CHECK_STR(m.user_id, "U123ABC456");
    CHECK_STR(m.channel_id, "C123ABC456");
    CHECK(strncmp(m.response_url, "https://rilke.slack.com/commands/", 33) == 0);
    slack_msg_fini(&m);
    free(buf);

    buf = read_data("hello.json", &len);
    CHECK_INT(slack_msg_parse(buf, len, &m), 0);
    CHECK_INT(m.kind, SLACK_MSG_HELLO);
    CHECK_INT(m.num_connections, 4);
    slack_msg_fini(&m);
    free(buf);

    buf = read_data("disconnect_too_many_websockets.json", &len);
    CHECK_INT(slack_msg_parse(buf, len, &m), 0);
    CHECK_INT(m.kind, SLACK_MSG_DISCONNECT);
    CHECK_STR(m.reason, "too_many_websockets");
    slack_msg_fini(&m);
    free(buf);

    /* An events_api envelope is acked, never answered. */
    buf = read_data("envelope_events_api.json", &len);
    CHECK_INT(slack_msg_parse(buf, len, &m), 0);
    CHECK_INT(m.kind, SLACK_MSG_ENVELOPE);
    CHECK_STR(m.type, "events_api");
    CHECK_INT(m.is_slash_command, 0);
    CHECK(m.command == NULL);
    slack_msg_fini(&m);
    free(buf);

    /* Slack's own documentation sample is not JSON. */
    buf = read_data("hello_invalid.txt", &len);
    CHECK_INT(slack_msg_parse(buf, len, &m), -EINVAL);
    free(buf);
}

static void test_hostile(void)
{
    struct slack_msg m;
    char big[400];

    CHECK_INT(parse_str("[1]", &m), -EINVAL);
    CHECK_INT(parse_str("", &m), -EINVAL);
    CHECK_INT(parse_str("{\"type\":\"hello\",\"type\":\"disconnect\"}", &m), -EINVAL);
    /* Envelope ids are acked verbatim: control characters, quotes, empty or long ones are out. */
    CHECK_INT(parse_str("{\"envelope_id\":\"a\\nb\",\"type\":\"events_api\"}", &m), -EINVAL);
    CHECK_INT(parse_str("{\"envelope_id\":\"a\\\"b\",\"type\":\"events_api\"}", &m), -EINVAL);
    CHECK_INT(parse_str("{\"envelope_id\":\"\",\"type\":\"events_api\"}", &m), -EINVAL);
    snprintf(big, sizeof(big), "{\"envelope_id\":\"%0*d\"}", SLACK_ENVELOPE_ID_MAX + 1, 0);
    CHECK_INT(parse_str(big, &m), -EINVAL);
    snprintf(big, sizeof(big), "{\"envelope_id\":\"%0*d\"}", SLACK_ENVELOPE_ID_MAX, 0);
    CHECK_INT(parse_str(big, &m), 0);
    CHECK_INT(m.kind, SLACK_MSG_ENVELOPE);
    slack_msg_fini(&m);
    /* Wrong types read as absent; a non-object payload is not a command. */
    CHECK_INT(parse_str("{\"envelope_id\":\"e1\",\"type\":\"slash_commands\",\"payload\":{\"text\":"
                        "5,\"command\":\"/youtrack\"},\"accepts_response_payload\":\"yes\","
                        "\"retry_attempt\":\"2\"}",
                        &m),
              0);
    CHECK_INT(m.is_slash_command, 1);
    CHECK_STR(m.text, "");
    CHECK_STR(m.command, "/youtrack");
    CHECK_INT(m.accepts_response_payload, 0);
    CHECK_INT(m.retry_attempt, 0);
    slack_msg_fini(&m);
    CHECK_INT(parse_str("{\"envelope_id\":\"e2\",\"type\":\"slash_commands\",\"payload\":[]}", &m),
              0);
    CHECK_INT(m.is_slash_command, 0);
    slack_msg_fini(&m);
    /* Long reasons and types are cut, not overflowed; unknown messages are "other". */
    memset(big, 'r', sizeof(big));
    memcpy(big, "{\"type\":\"disconnect\",\"reason\":\"", 31);
    memcpy(big + sizeof(big) - 3, "\"}", 3);
    CHECK_INT(parse_str(big, &m), 0);
    CHECK_INT(m.kind, SLACK_MSG_DISCONNECT);
    CHECK_INT((int)strlen(m.reason), (int)sizeof(m.reason) - 1);
    slack_msg_fini(&m);
    CHECK_INT(parse_str("{\"type\":\"surprise\",\"x\":1}", &m), 0);
    CHECK_INT(m.kind, SLACK_MSG_OTHER);
    slack_msg_fini(&m);
}

static int open_str(const char *s, struct slack_open *o)
{
    return slack_msg_parse_open(s, strlen(s), o);
}

static void test_open(void)
{
    struct slack_open o;
    size_t len;
    char *buf = read_data("apps_connections_open.json", &len);

    /* Slack's sample writes the URL with \/ escapes. */
    CHECK_INT(slack_msg_parse_open(buf, len, &o), 0);
    CHECK_INT(o.kind, SLACK_OPEN_URL);
    CHECK_STR(o.url, "wss://wss.slack.com/link/?ticket=1234-5678");
    slack_msg_open_fini(&o);
    CHECK(o.url == NULL);
    free(buf);

    /* Errors about the token or the team stop the client; the rest are retried. */
    static const char *const refused[] = {
        "invalid_auth",          "not_authed",     "account_inactive", "team_disabled",
        "missing_args",          "forbidden_team", "token_revoked",    "not_allowed_token_type",
        "user_removed_from_team"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"ok\":false,\"error\":\"%s\"}", refused[i]);
        CHECK_INT(open_str(body, &o), 0);
        CHECK_INT(o.kind, SLACK_OPEN_REFUSED);
        CHECK_STR(o.error, refused[i]);
        CHECK(o.url == NULL);
        slack_msg_open_fini(&o);
    }
    CHECK_INT(open_str("{\"ok\":false,\"error\":\"internal_error\"}", &o), 0);
    CHECK_INT(o.kind, SLACK_OPEN_ERROR);
    CHECK_STR(o.error, "internal_error");
    slack_msg_open_fini(&o);
    /* No error named, "ok" not true (a string is not true), a URL beside ok:false: retried. */
    CHECK_INT(open_str("{\"ok\":false}", &o), 0);
    CHECK_INT(o.kind, SLACK_OPEN_ERROR);
    CHECK_STR(o.error, "");
    slack_msg_open_fini(&o);
    CHECK_INT(open_str("{\"ok\":\"true\",\"url\":\"wss://x/\"}", &o), 0);
    CHECK_INT(o.kind, SLACK_OPEN_ERROR);
    CHECK(o.url == NULL);
    slack_msg_open_fini(&o);
    /* A token error with more after it is not that error; a long error is cut. */
    CHECK_INT(open_str("{\"ok\":false,\"error\":\"invalid_auth_and_more\"}", &o), 0);
    CHECK_INT(o.kind, SLACK_OPEN_ERROR);
    slack_msg_open_fini(&o);
    char big[256];
    memset(big, 'e', sizeof(big));
    memcpy(big, "{\"ok\":false,\"error\":\"", 21);
    memcpy(big + sizeof(big) - 3, "\"}", 3);
    CHECK_INT(open_str(big, &o), 0);
    CHECK_INT(o.kind, SLACK_OPEN_ERROR);
    CHECK_INT((int)strlen(o.error), (int)sizeof(o.error) - 1);
    slack_msg_open_fini(&o);
    /* ok without a URL (or with one that is not a string). */
    CHECK_INT(open_str("{\"ok\":true}", &o), 0);
    CHECK_INT(o.kind, SLACK_OPEN_NO_URL);
    slack_msg_open_fini(&o);
    CHECK_INT(open_str("{\"ok\":true,\"url\":7}", &o), 0);
    CHECK_INT(o.kind, SLACK_OPEN_NO_URL);
    slack_msg_open_fini(&o);
    /* Not a JSON object: HTML from a proxy, an array, nothing. */
    CHECK_INT(open_str("<html>502</html>", &o), -EINVAL);
    CHECK(o.url == NULL);
    CHECK_INT(open_str("[{\"ok\":true}]", &o), -EINVAL);
    CHECK_INT(open_str("", &o), -EINVAL);
}

static void test_ack(void)
{
    char *text = NULL;
    size_t len = 0;

    CHECK_INT(slack_msg_ack("dbdd0ef3-1543-4f94-bfb4-133d0e6c1545", NULL, &text, &len), 0);
    CHECK_STR(text, "{\"envelope_id\":\"dbdd0ef3-1543-4f94-bfb4-133d0e6c1545\"}");
    CHECK_INT(len, strlen(text));
    free(text);
    /* The answer goes in as it is: the hook made it JSON already. */
    CHECK_INT(slack_msg_ack("e1", "{\"response_type\":\"ephemeral\",\"text\":\"hi\"}", &text, &len),
              0);
    CHECK_STR(
        text,
        "{\"envelope_id\":\"e1\",\"payload\":{\"response_type\":\"ephemeral\",\"text\":\"hi\"}}");
    CHECK_INT(len, strlen(text));
    free(text);
    /* An id is JSON-escaped (the parser accepts no quote or backslash in one anyway). */
    CHECK_INT(slack_msg_ack("a/b", NULL, &text, &len), 0);
    CHECK_STR(text, "{\"envelope_id\":\"a/b\"}");
    free(text);
}

int main(void)
{
    RUN(test_recorded);
    RUN(test_hostile);
    RUN(test_open);
    RUN(test_ack);
    return test_done();
}
