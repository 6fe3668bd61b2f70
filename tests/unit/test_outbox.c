/*
 * Unit tests for the outbox's run-time queues (issue 13): sinks added and removed, a
 * subscription suspended by its target's answer, and a group of sinks that breaks and recovers
 * as one. Against a canned server on loopback; no state directory (dry run: no journal).
 */
#include <string.h>
#include <uv.h>

#include "canned.h"
#include "conf.h"
#include "http.h"
#include "metrics.h"
#include "outbox.h"
#include "outbox_entry.h"
#include "test.h"

struct run {
    uv_loop_t loop;
    uv_timer_t deadline;
    struct http *http;
    struct outbox *ob;
    struct conf conf;
    char url[64];
    char alerts[4][64]; /* "+name" broken, "-name" works again */
    size_t n_alerts;
    char gone[64], gone_reason[128];
    int settled;
};

static void on_alert(void *ud, const char *sink, int broken, const char *reason)
{
    struct run *r = ud;
    (void)reason;
    if (r->n_alerts < 4)
        snprintf(r->alerts[r->n_alerts++], sizeof(r->alerts[0]), "%c%s", broken ? '+' : '-', sink);
}

static void on_gone(void *ud, const char *sink, const char *reason)
{
    struct run *r = ud;
    snprintf(r->gone, sizeof(r->gone), "%s", sink);
    snprintf(r->gone_reason, sizeof(r->gone_reason), "%s", reason);
}

static void on_settled(void *ud)
{
    struct run *r = ud;
    r->settled = 1;
    uv_stop(&r->loop);
}

static void on_deadline(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void run_start(struct run *r, int port)
{
    memset(r, 0, sizeof(*r));
    r->conf.notify.max_age = 86400;
    snprintf(r->url, sizeof(r->url), "http://127.0.0.1:%d", port);
    CHECK_INT(uv_loop_init(&r->loop), 0);
    CHECK_INT(http_new(&r->http, &r->loop), 0);
    CHECK_INT(outbox_new(&r->ob, &r->loop, r->http, NULL, &r->conf), 0);
    outbox_set_alert_cb(r->ob, on_alert, r);
    outbox_set_gone_cb(r->ob, on_gone, r);
    uv_timer_init(&r->loop, &r->deadline);
}

/* Runs the loop until the outbox is settled (or 10 s went by). */
static void run_until_settled(struct run *r)
{
    r->settled = 0;
    uv_timer_start(&r->deadline, on_deadline, 10000, 0);
    outbox_when_settled(r->ob, on_settled, r);
    if (!r->settled)
        uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&r->deadline);
    CHECK(r->settled);
}

static void run_finish(struct run *r)
{
    outbox_free(r->ob);
    http_free(r->http);
    uv_close((uv_handle_t *)&r->deadline, NULL);
    /* A uv_stop() from a settled callback that ran outside the loop ends the first run early. */
    while (uv_run(&r->loop, UV_RUN_DEFAULT) != 0)
        ;
    CHECK_INT(uv_loop_close(&r->loop), 0);
}

static void push(struct run *r, const char *id, const char *sink)
{
    struct outbox_entry *e =
        outbox_entry_new(id, sink, "project.created", "{\"text\":\"x\"}", (int64_t)time(NULL), 1);
    outbox_push(r->ob, &e, 1);
}

static size_t status(struct run *r, struct outbox_sink_status *v)
{
    return outbox_status(r->ob, v, 8);
}

/* not_in_channel: the queue goes, its messages are dead-lettered, the bridge is told. */
static void test_suspend_removes_the_queue(void)
{
    struct canned c;
    struct run r;
    struct outbox_sink_status st[8];
    struct conf_sink s = {.name = "sub-slack-C1",
                          .type = CONF_SINK_SLACK_BOT,
                          .room = "C1",
                          .access_token = "xoxb-test-only-not-a-real-token",
                          .subscription = 1,
                          .group = "slack"};

    metrics_reset();
    canned_listen(&c);
    canned_answer(&c, "200 OK", "Content-Type: application/json\r\n",
                  "{\"ok\":false,\"error\":\"not_in_channel\"}");
    canned_start(&c);
    run_start(&r, c.port);
    s.url = r.url;
    CHECK_INT(outbox_add_sink(r.ob, &s), 0);
    CHECK_INT(outbox_add_sink(r.ob, &s), -EEXIST);
    CHECK_INT(status(&r, st), 1);
    CHECK(st[0].conf == &s);
    push(&r, "e1", s.name);
    push(&r, "e2", s.name);
    run_until_settled(&r);
    CHECK_STR(r.gone, "sub-slack-C1");
    CHECK(strstr(r.gone_reason, "not_in_channel") != NULL);
    CHECK(strstr(r.gone_reason, "xoxb") == NULL);
    CHECK_INT(status(&r, st), 0);
    CHECK_INT(r.n_alerts, 0);
    CHECK_INT(outbox_remove_sink(r.ob, s.name, "gone"), -ENOENT);
    char *text = metrics_render(NULL, 0, 0, NULL);
    CHECK(text && strstr(text, "ytbridge_subscription_deliveries_total{platform=\"slack\","
                               "result=\"dead\"} 2\n"));
    CHECK(text && strstr(text, "ytbridge_subscriptions{platform=\"matrix\",state=\"active\"} 0\n"));
    CHECK(text && !strstr(text, "sub-slack-C1"));
    free(text);
    run_finish(&r);
    canned_stop(&c);
}

/* Removal dead-letters what is queued; a message for the removed sink has nowhere to go. */
static void test_remove_sink(void)
{
    struct canned c;
    struct run r;
    struct outbox_sink_status st[8];
    struct conf_sink s = {.name = "sub-matrix-r",
                          .type = CONF_SINK_MATRIX,
                          .homeserver = NULL,
                          .room = "!r:hs",
                          .access_token = "syt_not_a_real_token",
                          .subscription = 1};

    canned_listen(&c);
    canned_answer(&c, "401 Unauthorized", "", "{\"errcode\":\"M_UNKNOWN_TOKEN\"}");
    canned_start(&c);
    run_start(&r, c.port);
    s.homeserver = r.url;
    CHECK_INT(outbox_add_sink(r.ob, &s), 0);
    push(&r, "e1", s.name);
    push(&r, "e2", s.name);
    run_until_settled(&r);
    CHECK_INT(r.n_alerts, 1); /* ungrouped: its own alert, as a configured sink */
    CHECK_STR(r.alerts[0], "+sub-matrix-r");
    CHECK_INT(status(&r, st), 1);
    CHECK_INT(st[0].depth, 2);
    CHECK(st[0].broken);
    CHECK_INT(outbox_remove_sink(r.ob, s.name, "unsubscribed"), 0);
    CHECK_INT(status(&r, st), 0);
    memset(&s, 0xa5, sizeof(s)); /* not used again */
    run_until_settled(&r);
    run_finish(&r);
    canned_stop(&c);
}

/*
 * Two sinks of one group: the credential refused for one holds both with one alert named
 * after the group; a sink added meanwhile starts held; a delivery by a member brings all back.
 */
static void test_group_breaks_and_recovers_as_one(void)
{
    struct canned c;
    struct run r;
    struct outbox_sink_status st[8];
    struct conf_sink a = {.name = "sub-a",
                          .type = CONF_SINK_MATRIX,
                          .room = "!a:hs",
                          .access_token = "syt_not_a_real_token",
                          .subscription = 1,
                          .group = "matrix"};
    struct conf_sink b = a, d = a;
    b.name = "sub-b";
    b.room = "!b:hs";
    d.name = "sub-d";
    d.room = "!d:hs";

    canned_listen(&c);
    /* Served one connection at a time: the refusal is answered before the delivery. */
    canned_answer(&c, "401 Unauthorized", "", "{\"errcode\":\"M_UNKNOWN_TOKEN\"}");
    canned_answer(&c, "200 OK", "", "{\"event_id\":\"$1\"}");
    canned_answer(&c, "200 OK", "", "{\"event_id\":\"$2\"}");
    canned_answer(&c, "200 OK", "", "{\"event_id\":\"$3\"}");
    canned_start(&c);
    run_start(&r, c.port);
    a.homeserver = b.homeserver = d.homeserver = r.url;
    CHECK_INT(outbox_add_sink(r.ob, &a), 0);
    CHECK_INT(outbox_add_sink(r.ob, &b), 0);
    struct outbox_entry *v[2] = {
        outbox_entry_new("ea", a.name, "project.created", "{}", (int64_t)time(NULL), 1),
        outbox_entry_new("eb", b.name, "project.created", "{}", (int64_t)time(NULL), 1)};
    outbox_push(r.ob, v, 2);
    run_until_settled(&r);
    CHECK_INT(r.n_alerts, 2);
    CHECK_STR(r.alerts[0], "+matrix");
    CHECK_STR(r.alerts[1], "-matrix");
    CHECK_INT(status(&r, st), 2);
    CHECK_INT(st[0].depth + st[1].depth, 0);
    CHECK(!st[0].broken && !st[1].broken);
    run_finish(&r);
    canned_stop(&c);

    /* Broken, and nothing delivers: every member held, one alert; a new member held too. */
    canned_listen(&c);
    canned_answer(&c, "401 Unauthorized", "", "{\"errcode\":\"M_UNKNOWN_TOKEN\"}");
    canned_start(&c);
    run_start(&r, c.port);
    a.homeserver = b.homeserver = d.homeserver = r.url;
    CHECK_INT(outbox_add_sink(r.ob, &a), 0);
    CHECK_INT(outbox_add_sink(r.ob, &b), 0);
    push(&r, "ea", a.name);
    run_until_settled(&r);
    push(&r, "eb", b.name); /* held: the group's prober is sub-a */
    CHECK_INT(outbox_add_sink(r.ob, &d), 0);
    push(&r, "ed", d.name);
    run_until_settled(&r);
    CHECK_INT(r.n_alerts, 1);
    CHECK_STR(r.alerts[0], "+matrix");
    CHECK_INT(status(&r, st), 3);
    for (size_t i = 0; i < 3; i++) {
        CHECK(st[i].broken);
        CHECK_INT(st[i].depth, 1);
        CHECK(strstr(st[i].reason, "M_UNKNOWN_TOKEN") != NULL);
    }
    /* The prober goes: another member takes over, nothing is sent before its hour. */
    CHECK_INT(outbox_remove_sink(r.ob, a.name, "unsubscribed"), 0);
    run_until_settled(&r);
    CHECK_INT(status(&r, st), 2);
    CHECK(st[0].broken && st[1].broken);
    CHECK_INT(r.n_alerts, 1);
    run_finish(&r);
    canned_stop(&c);
}

int main(void)
{
    RUN(test_suspend_removes_the_queue);
    RUN(test_remove_sink);
    RUN(test_group_breaks_and_recovers_as_one);
    return test_done();
}
