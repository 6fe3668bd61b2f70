/*
 * Fuzz harness: any bytes as the text of a subscription command (both the Slack and the Matrix
 * reading), applied to no subscription and to an existing one, then what meets it in
 * production: the answer on every platform (answer_check.h), the sink built from the result,
 * and the routing of hostile changes through that sink's patterns.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "announce.h"
#include "answer_check.h"
#include "subscription.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *cur_patterns[] = {"WEB*", "!WEB-OLD", "ÄPF"};
static const struct subscription cur = {
    .platform = SUB_SLACK,
    .channel = "C0123ABCD",
    .patterns = cur_patterns,
    .n_patterns = 3,
    .events = 0x3u,
    .by = "U1",
    .created = 1700000000,
    .changed = 1700000001,
};

static void check_sub(const struct subscription *s)
{
    if (!s->channel || !s->n_patterns || s->n_patterns > SUB_MAX_PATTERNS || !s->events ||
        (s->events & ~(unsigned)CONF_EVENTS_ALL) || s->suspended)
        abort();
    for (size_t i = 0; i < s->n_patterns; i++) {
        if (!sub_pattern_ok(s->patterns[i]))
            abort();
        for (size_t j = 0; j < i; j++)
            if (strcasecmp(s->patterns[i], s->patterns[j]) == 0)
                abort();
    }
}

/* The answer a channel gets, on every platform. */
static void check_answers(const struct subscription *s, const char *quote)
{
    const struct subscription *v[1] = {s};
    for (int pf = COMMAND_SLACK; pf <= COMMAND_TEXT; pf++) {
        char *out = NULL;
        if (command_subscriptions((enum command_platform)pf, "Subscribed:", quote, v, s ? 1 : 0,
                                  pf == COMMAND_MATRIX, &out) != 0)
            continue; /* ENOMEM only */
        answer_check((enum command_platform)pf, out);
        free(out);
    }
}

/* Routing hostile changes through the sink made of s must not crash or read out of bounds. */
static void check_routing(const struct subscription *s)
{
    static char api[] = "https://slack.example.com/api", token[] = "xoxb-fuzz";
    static const struct project a = {.id = "0-1", .short_name = "WEB-1", .name = "<!here>"};
    static const struct project b = {.id = "0-1", .short_name = "ÄPFEL", .name = "x"};
    static const struct project c = {.id = "0-9", .short_name = NULL, .name = NULL};
    const struct change ch[] = {
        {.kind = CHANGE_CREATED, .after = &a},
        {.kind = CHANGE_RENAMED, .before = &a, .after = &b},
        {.kind = CHANGE_REMOVED, .before = &c},
    };
    struct conf conf = {0};
    conf.chat.slack.enabled = 1;
    conf.chat.slack.api_url = api;
    conf.chat.slack.bot_token = token;
    struct conf_sink *k = sub_sink_new(s, &conf);
    if (!k)
        return; /* ENOMEM only */
    if (!k->subscription || k->alerts || k->type != CONF_SINK_SLACK_BOT)
        abort();
    for (size_t i = 0; i < sizeof(ch) / sizeof(ch[0]); i++)
        (void)announce_wants(k, &ch[i]);
    sub_sink_free(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int slack = 0; slack <= 1; slack++) {
        struct sub_request req;
        char err[300], bad[SUB_PATTERN_MAX + 1];
        int r = sub_parse((const char *)data, size, slack, &req, err, sizeof(err));

        if (r == -ENOMEM)
            continue;
        if (r < 0) {
            if (!err[0] || req.patterns || strlen(req.bad) > SUB_PATTERN_MAX)
                abort();
            answer_check_text(err);
            check_answers(NULL, req.bad);
            continue;
        }
        if (req.verb == SUB_SUBSCRIBE || req.verb == SUB_UNSUBSCRIBE) {
            if (req.n_patterns > SUB_MAX_PATTERNS)
                abort();
            for (int k = 0; k < 2; k++) {
                struct subscription next;
                r = sub_apply(k ? &cur : NULL, SUB_SLACK, "C0NEW", &req, "U2", 1700000100, &next,
                              err, sizeof(err), bad, sizeof(bad));
                if (r == 1) {
                    check_sub(&next);
                    check_answers(&next, NULL);
                    check_routing(&next);
                    subscription_fini(&next);
                } else if (r == -EINVAL) {
                    if (!err[0])
                        abort();
                    check_answers(NULL, bad[0] ? bad : NULL);
                } else if (r != 0 && r != -ENOMEM) {
                    abort();
                }
            }
        }
        sub_request_fini(&req);
    }
    return 0;
}
