/*
 * Subscriptions from chat (subscription.h): the command grammar and its refusals, what subscribe
 * and unsubscribe make of a channel's subscription, the limits, the sink a subscription delivers
 * through, and the answers' escaping (command_subscriptions()).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../slack_check.h"
#include "announce.h"
#include "command.h"
#include "subscription.h"
#include "test.h"

static int parse(const char *text, struct sub_request *r, char *err, size_t errlen)
{
    return sub_parse(text, strlen(text), 1, r, err, errlen);
}

static void test_parse(void)
{
    struct sub_request r;
    char err[300];

    CHECK_INT(parse("projects WEB", &r, err, sizeof(err)), 0);
    CHECK_INT(r.verb, SUB_NONE);
    CHECK_INT(parse("", &r, err, sizeof(err)), 0);
    CHECK_INT(r.verb, SUB_NONE);

    CHECK_INT(parse("  Subscribe   WEB*  !web-old events=created,Renamed", &r, err, sizeof(err)),
              0);
    CHECK_INT(r.verb, SUB_SUBSCRIBE);
    CHECK_INT(r.n_patterns, 2);
    CHECK_STR(r.patterns[0], "WEB*");
    CHECK_STR(r.patterns[1], "!web-old");
    CHECK_INT(r.events, (1u << CHANGE_CREATED) | (1u << CHANGE_RENAMED));
    sub_request_fini(&r);

    /* Duplicates (ASCII case-insensitively) are one pattern; Slack's entities are undone. */
    CHECK_INT(parse("subscribe web* WEB* &lt;x&gt;", &r, err, sizeof(err)), 0);
    CHECK_INT(r.n_patterns, 2);
    CHECK_STR(r.patterns[1], "<x>");
    CHECK_INT(r.events, 0);
    sub_request_fini(&r);

    CHECK_INT(parse("subscriptions", &r, err, sizeof(err)), 0);
    CHECK_INT(r.verb, SUB_LIST);
    CHECK_INT(parse("SUBSCRIPTIONS All", &r, err, sizeof(err)), 0);
    CHECK_INT(r.verb, SUB_LIST_ALL);
    CHECK_INT(parse("unsubscribe", &r, err, sizeof(err)), 0);
    CHECK_INT(r.verb, SUB_UNSUBSCRIBE);
    CHECK_INT(r.n_patterns, 0);
    sub_request_fini(&r);
}

static void test_parse_refusals(void)
{
    static const struct {
        const char *text, *err, *bad;
    } cases[] = {
        {"subscribe events=created,bogus", "unknown event kind", "bogus"},
        {"subscribe events=", "events= needs at least one kind", ""},
        {"subscribe !", "not a usable pattern", "!"},
        {"subscribe AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
         "not a usable pattern",
         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        {"unsubscribe events=created", "unsubscribe takes patterns only", "events=created"},
        {"subscriptions everything", "subscriptions takes nothing, or all", "everything"},
    };
    char err[300];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sub_request r;
        CHECK_INT(parse(cases[i].text, &r, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, cases[i].err) != NULL);
        CHECK_STR(r.bad, cases[i].bad);
        CHECK(r.patterns == NULL);
        sub_request_fini(&r);
    }

    /* 51 patterns (short ones: the whole command is at most COMMAND_MAX_INPUT bytes): refused,
     * nothing kept. */
    static const char alnum[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char text[400] = "subscribe";
    for (int i = 0; i <= SUB_MAX_PATTERNS; i++) {
        if (i < 36)
            snprintf(text + strlen(text), sizeof(text) - strlen(text), " %c", alnum[i]);
        else
            snprintf(text + strlen(text), sizeof(text) - strlen(text), " a%c", alnum[i - 36]);
    }
    CHECK(strlen(text) <= COMMAND_MAX_INPUT);
    struct sub_request r;
    CHECK_INT(sub_parse(text, strlen(text), 0, &r, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "at most 50 patterns") != NULL);
    CHECK(r.patterns == NULL);
}

static void test_apply(void)
{
    struct sub_request r;
    struct subscription a, b, c;
    char err[300], bad[SUB_PATTERN_MAX + 1];

    /* A new subscription: every project, every kind by default. */
    CHECK_INT(parse("subscribe", &r, err, sizeof(err)), 0);
    CHECK_INT(
        sub_apply(NULL, SUB_SLACK, "C1", &r, "U1", 100, &a, err, sizeof(err), bad, sizeof(bad)), 1);
    sub_request_fini(&r);
    CHECK_INT(a.n_patterns, 1);
    CHECK_STR(a.patterns[0], "*");
    CHECK_INT(a.events, CONF_EVENTS_ALL);
    CHECK_STR(a.channel, "C1");
    CHECK_STR(a.by, "U1");
    CHECK_INT(a.created, 100);

    /* Again with other patterns: added; events= replaces the kinds. */
    CHECK_INT(parse("subscribe WEB* * events=archived", &r, err, sizeof(err)), 0);
    CHECK_INT(sub_apply(&a, SUB_SLACK, "C1", &r, "U2", 200, &b, err, sizeof(err), bad, sizeof(bad)),
              1);
    sub_request_fini(&r);
    CHECK_INT(b.n_patterns, 2);
    CHECK_STR(b.patterns[1], "WEB*");
    CHECK_INT(b.events, 1u << CHANGE_ARCHIVED);
    CHECK_INT(b.created, 100);
    CHECK_INT(b.changed, 200);
    CHECK_STR(b.by, "U2");

    /* Unsubscribing a pattern it does not have changes nothing and names it. */
    CHECK_INT(parse("unsubscribe APP*", &r, err, sizeof(err)), 0);
    CHECK_INT(sub_apply(&b, SUB_SLACK, "C1", &r, "U2", 300, &c, err, sizeof(err), bad, sizeof(bad)),
              -EINVAL);
    CHECK_STR(bad, "APP*");
    sub_request_fini(&r);

    /* Removing one pattern keeps the rest; removing the last removes the subscription. */
    CHECK_INT(parse("unsubscribe web*", &r, err, sizeof(err)), 0);
    CHECK_INT(sub_apply(&b, SUB_SLACK, "C1", &r, "U2", 300, &c, err, sizeof(err), bad, sizeof(bad)),
              1);
    sub_request_fini(&r);
    CHECK_INT(c.n_patterns, 1);
    CHECK_STR(c.patterns[0], "*");
    CHECK_INT(c.events, 1u << CHANGE_ARCHIVED);
    subscription_fini(&b);
    CHECK_INT(parse("unsubscribe *", &r, err, sizeof(err)), 0);
    CHECK_INT(sub_apply(&c, SUB_SLACK, "C1", &r, "U2", 300, &b, err, sizeof(err), bad, sizeof(bad)),
              0);
    sub_request_fini(&r);
    CHECK(b.channel == NULL);

    /* unsubscribe with no subscription is refused; without patterns it removes the lot. */
    CHECK_INT(parse("unsubscribe", &r, err, sizeof(err)), 0);
    CHECK_INT(
        sub_apply(NULL, SUB_SLACK, "C1", &r, "U2", 300, &b, err, sizeof(err), bad, sizeof(bad)),
        -EINVAL);
    CHECK(strstr(err, "not subscribed") != NULL);
    CHECK_INT(sub_apply(&c, SUB_SLACK, "C1", &r, "U2", 300, &b, err, sizeof(err), bad, sizeof(bad)),
              0);
    sub_request_fini(&r);
    subscription_fini(&c);

    /* Exclusions never stand alone: a new subscription of exclusions includes "*" first, and
     * unsubscribing the last including pattern removes the subscription. */
    CHECK_INT(parse("subscribe !DEV-OLD", &r, err, sizeof(err)), 0);
    CHECK_INT(
        sub_apply(NULL, SUB_SLACK, "C2", &r, "U1", 100, &b, err, sizeof(err), bad, sizeof(bad)), 1);
    sub_request_fini(&r);
    CHECK_INT(b.n_patterns, 2);
    CHECK_STR(b.patterns[0], "*");
    CHECK_STR(b.patterns[1], "!DEV-OLD");
    subscription_fini(&b);
    CHECK_INT(parse("subscribe DEV* !DEV-OLD", &r, err, sizeof(err)), 0);
    CHECK_INT(
        sub_apply(NULL, SUB_SLACK, "C2", &r, "U1", 100, &b, err, sizeof(err), bad, sizeof(bad)), 1);
    sub_request_fini(&r);
    CHECK_INT(b.n_patterns, 2); /* it includes something: no "*" */
    CHECK_INT(parse("unsubscribe DEV*", &r, err, sizeof(err)), 0);
    CHECK_INT(sub_apply(&b, SUB_SLACK, "C2", &r, "U1", 200, &c, err, sizeof(err), bad, sizeof(bad)),
              0);
    sub_request_fini(&r);
    /* subscribe without patterns in a subscribed channel keeps its patterns: events only. */
    CHECK_INT(parse("subscribe events=removed", &r, err, sizeof(err)), 0);
    CHECK_INT(sub_apply(&b, SUB_SLACK, "C2", &r, "U1", 200, &c, err, sizeof(err), bad, sizeof(bad)),
              1);
    sub_request_fini(&r);
    CHECK_INT(c.n_patterns, 2);
    CHECK_STR(c.patterns[0], "DEV*");
    CHECK_INT(c.events, 1u << CHANGE_REMOVED);
    subscription_fini(&c);
    subscription_fini(&b);

    /* Subscribing resumes a suspended subscription, with its patterns as they were. */
    a.suspended = strdup("is_archived");
    CHECK_INT(parse("subscribe", &r, err, sizeof(err)), 0);
    CHECK_INT(sub_apply(&a, SUB_SLACK, "C1", &r, "U1", 400, &b, err, sizeof(err), bad, sizeof(bad)),
              1);
    sub_request_fini(&r);
    CHECK(b.suspended == NULL);
    CHECK_INT(b.n_patterns, a.n_patterns);
    subscription_fini(&b);
    subscription_fini(&a);
}

static void test_apply_limit(void)
{
    struct sub_request r;
    struct subscription cur = {0}, next;
    char err[300], bad[SUB_PATTERN_MAX + 1], text[400] = "subscribe";

    for (int i = 0; i < SUB_MAX_PATTERNS; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), " P%d", i);
    CHECK_INT(parse(text, &r, err, sizeof(err)), 0);
    CHECK_INT(sub_apply(NULL, SUB_MATRIX, "!r:x", &r, "@u:x", 1, &cur, err, sizeof(err), bad,
                        sizeof(bad)),
              1);
    sub_request_fini(&r);
    CHECK_INT(cur.n_patterns, SUB_MAX_PATTERNS);
    /* One more is refused; one already there is not "more". */
    CHECK_INT(parse("subscribe NEW", &r, err, sizeof(err)), 0);
    CHECK_INT(sub_apply(&cur, SUB_MATRIX, "!r:x", &r, "@u:x", 2, &next, err, sizeof(err), bad,
                        sizeof(bad)),
              -EINVAL);
    CHECK(strstr(err, "at most 50 patterns") != NULL);
    sub_request_fini(&r);
    CHECK_INT(parse("subscribe p7", &r, err, sizeof(err)), 0);
    CHECK_INT(sub_apply(&cur, SUB_MATRIX, "!r:x", &r, "@u:x", 2, &next, err, sizeof(err), bad,
                        sizeof(bad)),
              1);
    CHECK_INT(next.n_patterns, SUB_MAX_PATTERNS);
    sub_request_fini(&r);
    subscription_fini(&next);
    subscription_fini(&cur);
}

static void test_channels_and_patterns(void)
{
    CHECK(sub_channel_ok(SUB_SLACK, "C0123ABCD"));
    CHECK(sub_channel_ok(SUB_SLACK, "G0123"));
    CHECK(!sub_channel_ok(SUB_SLACK, "D0123")); /* a direct message */
    CHECK(!sub_channel_ok(SUB_SLACK, "c0123"));
    CHECK(!sub_channel_ok(SUB_SLACK, ""));
    CHECK(!sub_channel_ok(SUB_SLACK, "C01/../x"));
    CHECK(sub_channel_ok(SUB_MATRIX, "!abc:example.org"));
    CHECK(sub_channel_ok(SUB_MATRIX, "!abc:[::1]:8448"));
    CHECK(sub_channel_ok(SUB_MATRIX, "!rÃ©/<b>:x")); /* escaped wherever it goes */
    CHECK(!sub_channel_ok(SUB_MATRIX, "#alias:example.org"));
    CHECK(!sub_channel_ok(SUB_MATRIX, "!"));
    CHECK(!sub_channel_ok(SUB_MATRIX, "!a b:x"));
    CHECK(!sub_channel_ok(SUB_MATRIX, "!a\x01:x"));
    CHECK(!sub_channel_ok(SUB_MATRIX, "!\xff:x"));

    CHECK(sub_pattern_ok("WEB*"));
    CHECK(sub_pattern_ok("!OLD"));
    CHECK(sub_pattern_ok("ÄPF?"));
    CHECK(!sub_pattern_ok(""));
    CHECK(!sub_pattern_ok("!"));
    CHECK(!sub_pattern_ok("a b"));
    CHECK(!sub_pattern_ok("a\xc2\xa0"
                          "b"));         /* U+00A0 */
    CHECK(!sub_pattern_ok("a\xc2\x85")); /* U+0085, a C1 control */
    CHECK(!sub_pattern_ok("\xff"));
}

static void test_sink(void)
{
    char api[] = "https://slack.example.com/api", token[] = "xoxb-1", hs[] = "https://m.x",
         at[] = "syt_1";
    char *pats[] = {"WEB*", "!WEB-OLD"};
    struct subscription s = {.platform = SUB_SLACK,
                             .channel = "C0123",
                             .patterns = pats,
                             .n_patterns = 2,
                             .events = 1u << CHANGE_CREATED};
    struct conf conf = {0};
    struct conf_sink *k;

    CHECK(sub_sink_new(&s, &conf) == NULL); /* no chat.slack.bot_token: nowhere to post */
    conf.chat.slack.enabled = 1;
    conf.chat.slack.api_url = api;
    conf.chat.slack.bot_token = token;
    k = sub_sink_new(&s, &conf);
    CHECK(k != NULL);
    if (k) {
        CHECK_STR(k->name, "slack:C0123");
        CHECK_INT(k->type, CONF_SINK_SLACK_BOT);
        CHECK(k->url == api && k->access_token == token);
        CHECK_STR(k->room, "C0123");
        CHECK_INT(k->alerts, 0);
        CHECK_INT(k->subscription, 1);
        CHECK_STR(k->group, SUB_GROUP_SLACK);
        /* Routed exactly as a configured sink with these patterns. */
        struct project web = {.id = "0-1", .short_name = "WEB-1"},
                       old = {.id = "0-2", .short_name = "WEB-OLD"},
                       app = {.id = "0-3", .short_name = "APP"};
        struct change c1 = {.kind = CHANGE_CREATED, .after = &web},
                      c2 = {.kind = CHANGE_CREATED, .after = &old},
                      c3 = {.kind = CHANGE_CREATED, .after = &app},
                      c4 = {.kind = CHANGE_REMOVED, .before = &web};
        CHECK(announce_wants(k, &c1));
        CHECK(!announce_wants(k, &c2));
        CHECK(!announce_wants(k, &c3));
        CHECK(!announce_wants(k, &c4)); /* not its event kind */
        sub_sink_free(k);
    }
    s.platform = SUB_MATRIX;
    s.channel = "!r:m.x";
    CHECK(sub_sink_new(&s, &conf) == NULL);
    conf.chat.matrix.enabled = 1;
    conf.chat.matrix.homeserver = hs;
    conf.chat.matrix.access_token = at;
    k = sub_sink_new(&s, &conf);
    CHECK(k != NULL);
    if (k) {
        CHECK_STR(k->name, "matrix:!r:m.x");
        CHECK_INT(k->type, CONF_SINK_MATRIX);
        CHECK(k->homeserver == hs && k->access_token == at);
        CHECK_STR(k->room, "!r:m.x");
        CHECK_STR(k->group, SUB_GROUP_MATRIX);
        sub_sink_free(k);
    }
}

static void test_answers(void)
{
    char *pats[] = {"<!channel>", "*bold*"};
    struct subscription s = {.platform = SUB_SLACK,
                             .channel = "C0123",
                             .patterns = pats,
                             .n_patterns = 2,
                             .events = (1u << CHANGE_CREATED) | (1u << CHANGE_REMOVED),
                             .suspended = "is_archived"};
    const struct subscription *v[1] = {&s};
    char *out = NULL;

    CHECK_INT(command_subscriptions(COMMAND_TEXT, "Subscribed.", NULL, v, 1, 1, &out), 0);
    CHECK_STR(out, "Subscribed.\n- C0123 \xe2\x80\x94 events: created, removed; projects: "
                   "<!channel>, *bold*; suspended: is_archived");
    free(out);

    CHECK_INT(command_subscriptions(COMMAND_SLACK, "Subscribed.", "<@U1>", v, 1, 0, &out), 0);
    CHECK(slack_check(out, SLACK_ANSWER) == NULL);
    /* Rich text shows its text literally: the pattern is code, never a mention; the fallback
     * text (the head and the quote) has entities. */
    CHECK(strstr(out, "{\"type\":\"text\",\"text\":\"<!channel>\",\"style\":{\"code\":true}}") !=
          NULL);
    CHECK(strstr(out, "\"text\":\"Subscribed. \u201c&lt;@U1&gt;\u201d\"") != NULL ||
          strstr(out, "\"text\":\"Subscribed. â&lt;@U1&gt;â\"") != NULL);
    free(out);

    CHECK_INT(command_subscriptions(COMMAND_MATRIX, "Subscribed.", NULL, v, 1, 0, &out), 0);
    CHECK(strstr(out, "<code>&lt;!channel&gt;</code>") != NULL);
    CHECK(strstr(out, "\"m.mentions\":{}") != NULL);
    free(out);
}

/* help lists the subscription commands; command_run() (no channel) points to a channel. */
static void test_help_and_no_channel(void)
{
    static const struct command_context none;
    char *out = NULL;

    CHECK_INT(command_run("help", 4, &none, COMMAND_TEXT, &out), 0);
    CHECK(out && strstr(out, "subscribe [PATTERN ...] [events=KIND,...]") != NULL);
    CHECK(out && strstr(out, "unsubscribe [PATTERN ...]") != NULL);
    CHECK(out && strstr(out, "subscriptions [all]") != NULL);
    free(out);
    CHECK_INT(command_run("subscribe WEB*", 14, &none, COMMAND_TEXT, &out), 0);
    CHECK_STR(out, "Subscriptions are managed in a chat channel or room.");
    free(out);
    CHECK_STR(command_name("SUBSCRIPTIONS all", 17), "subscriptions");
    CHECK_STR(command_name("unsubscribe", 11), "unsubscribe");
}

int main(void)
{
    RUN(test_parse);
    RUN(test_parse_refusals);
    RUN(test_apply);
    RUN(test_apply_limit);
    RUN(test_channels_and_patterns);
    RUN(test_sink);
    RUN(test_answers);
    RUN(test_help_and_no_channel);
    return test_done();
}
