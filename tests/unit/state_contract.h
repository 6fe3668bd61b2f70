/*
 * The state interface's contract (bridge/state.h), as tests every backend must pass: the
 * directory (test_state.c) and etcd (test_state_etcd.c) run this same set. A backend hands in
 * how to open a writable state on empty storage (contract_fresh) and on what is there
 * (contract_reopen); then state_contract_run().
 */
#ifndef YTB_TEST_STATE_CONTRACT_H
#define YTB_TEST_STATE_CONTRACT_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"
#include "state_format.h"
#include "subscription.h"
#include "test.h"

struct contract_backend {
    const char *name;
    /* A writable state on storage emptied first; 0 or -errno. */
    int (*fresh)(struct state **out);
    /* A writable state on the storage as it is (a restart); 0 or -errno. */
    int (*reopen)(struct state **out);
};

static const struct contract_backend *contract;

static struct journal_record contract_rec(const char *id, const char *sink, const char *event,
                                          const char *body, int64_t created, uint64_t gen)
{
    return (struct journal_record){(char *)id,   (char *)sink, (char *)event,
                                   (char *)body, created,      gen};
}

static struct state *contract_open(int fresh)
{
    struct state *st = NULL;
    int r = fresh ? contract->fresh(&st) : contract->reopen(&st);

    CHECK_INT(r, 0);
    if (r) {
        fprintf(stderr, "%s: cannot open the state\n", contract->name);
        exit(1);
    }
    return st;
}

/* A snapshot of n projects with names long enough to matter, at generation gen. */
static void contract_snapshot(struct snapshot *s, int n, uint64_t gen)
{
    memset(s, 0, sizeof(*s));
    s->flavour = YOUTRACK_MODERN;
    s->youtrack = strdup("https://yt.example");
    s->generation = gen;
    memcpy(s->epoch, "0123456789abcdef", 17);
    for (int i = 0; i < n; i++) {
        char id[32], name[160];
        snprintf(id, sizeof(id), "0-%d", i);
        snprintf(name, sizeof(name), "Project %d \"quoted\" \xc3\xa9 with a name long enough %s", i,
                 "to make a big snapshot out of a few thousand of them");
        struct project p = {.id = id, .short_name = id, .name = name, .archived = TRI_NO};
        CHECK_INT(project_list_add(&s->projects, &p), 0);
    }
    project_list_finish(&s->projects);
}

static void contract_check_records(struct state *st, uint64_t committed, const char *const *ids,
                                   size_t n)
{
    struct journal_record *got = NULL;
    size_t k = 0;
    char err[512];

    CHECK_INT(state_journal_load(st, committed, &got, &k, err, sizeof(err)), 0);
    CHECK_INT(k, n);
    for (size_t i = 0; i < n && i < k; i++)
        CHECK_STR(got[i].id, ids[i]);
    state_journal_records_free(got, k);
}

static void contract_first_run_and_round_trip(void)
{
    struct state *st = contract_open(1);
    struct snapshot s, back;
    char err[512];

    CHECK_INT(state_load(st, "", &back, err, sizeof(err)), STATE_NONE);
    contract_check_records(st, 0, NULL, 0);
    CHECK_INT(state_check(st, err, sizeof(err)), 0);
    contract_snapshot(&s, 3, 0);
    CHECK_INT(state_save(st, &s, 1000, err, sizeof(err)), 0);
    CHECK_INT(state_load(st, "", &back, err, sizeof(err)), STATE_LOADED);
    CHECK_INT(back.projects.n, 3);
    CHECK_STR(back.youtrack, "https://yt.example");
    CHECK_STR(back.epoch, "0123456789abcdef");
    CHECK_INT(back.saved_at, 1000);
    CHECK_STR(back.projects.v[0].id, s.projects.v[0].id);
    CHECK_STR(back.projects.v[2].name, s.projects.v[2].name);
    snapshot_fini(&back);
    /* Saved again over itself: the newer one wins. */
    CHECK_INT(state_save(st, &s, 2000, err, sizeof(err)), 0);
    CHECK_INT(state_load(st, "", &back, err, sizeof(err)), STATE_LOADED);
    CHECK_INT(back.saved_at, 2000);
    snapshot_fini(&back);
    snapshot_fini(&s);
    state_close(st);
}

/* A commit makes the snapshot and its records current together; a restart sees both. */
static void contract_commit_then_restart(void)
{
    static const char *const both[] = {"c-1-0", "c-1-1"}, *const second[] = {"c-1-1"};
    struct state *st = contract_open(1);
    struct journal_record v[2] = {
        contract_rec("c-1-0", "team", "project.created", "{\"a\":1}", 10, 1),
        contract_rec("c-1-1", "room", "project.removed", "text", 11, 1),
    };
    struct snapshot s, back;
    char err[512];

    contract_snapshot(&s, 2, 1);
    CHECK_INT(state_commit(st, &s, v, 2, 100, err, sizeof(err)), 0);
    CHECK_INT(state_load(st, "", &back, err, sizeof(err)), STATE_LOADED);
    CHECK_INT(back.generation, 1);
    snapshot_fini(&back);
    contract_check_records(st, 1, both, 2);
    CHECK_INT(state_journal_done(st, "c-1-0", "delivered"), 0);
    state_close(st);

    st = contract_open(0);
    CHECK_INT(state_load(st, "", &back, err, sizeof(err)), STATE_LOADED);
    CHECK_INT(back.generation, 1);
    CHECK_INT(back.projects.n, 2);
    snapshot_fini(&back);
    contract_check_records(st, 1, second, 1);
    /* A later commit's records come after the earlier ones. */
    struct journal_record w = contract_rec("c-2-0", "team", "digest", "{}", 12, 2);
    static const char *const three[] = {"c-1-1", "c-2-0"};
    s.generation = 2;
    CHECK_INT(state_commit(st, &s, &w, 1, 200, err, sizeof(err)), 0);
    contract_check_records(st, 2, three, 2);
    snapshot_fini(&s);
    state_close(st);
}

/* Records of a generation above the committed one were never committed: dropped for good. */
static void contract_uncommitted_records_dropped(void)
{
    static const char *const kept[] = {"u-1-0"};
    struct state *st = contract_open(1);
    struct journal_record v[3] = {
        contract_rec("u-1-0", "team", "project.created", "{}", 10, 1),
        contract_rec("u-2-0", "team", "project.created", "{}", 10, 2),
        contract_rec("u-3-0", "room", "project.created", "{}", 10, 3),
    };
    char err[512];

    CHECK_INT(state_journal_add(st, v, 3, err, sizeof(err)), 0);
    contract_check_records(st, 1, kept, 1);
    /* Gone, not hidden: a higher committed generation does not bring them back. */
    contract_check_records(st, 5, kept, 1);
    state_close(st);
    st = contract_open(0);
    contract_check_records(st, 5, kept, 1);
    state_close(st);
}

/* Every field of a record comes back as it went in, escapes and non-ASCII text included. */
static void contract_records_round_trip(void)
{
    struct state *st = contract_open(1);
    struct journal_record v[2], *got = NULL;
    size_t n = 0;
    char err[512];
    const char *body = "{\"text\":\"<!channel> \\\"q\\\" \\\\ \\u00e9 \xe2\x82\xac\\n\",\"n\":1}";

    v[0] =
        contract_rec("ab12-7-0", "chat:!r\xc3\xa9:hs", "project.renamed", body, 1700000000123, 7);
    v[1] =
        contract_rec("ab12-7-1", "hook", "digest", "line one\nline two\ttab", -1, UINT64_MAX - 1);
    CHECK_INT(state_journal_add(st, v, 2, err, sizeof(err)), 0);
    CHECK_INT(state_journal_load(st, UINT64_MAX, &got, &n, err, sizeof(err)), 0);
    CHECK_INT(n, 2);
    for (size_t i = 0; i < 2 && i < n; i++) {
        CHECK_STR(got[i].id, v[i].id);
        CHECK_STR(got[i].sink, v[i].sink);
        CHECK_STR(got[i].event, v[i].event);
        CHECK_STR(got[i].body, v[i].body);
        CHECK_INT(got[i].created, v[i].created);
        CHECK(got[i].gen == v[i].gen);
    }
    state_journal_records_free(got, n);

    /* Compaction keeps exactly what it is given, in order. */
    CHECK_INT(state_journal_compact(st, v + 1, 1), 0);
    CHECK_INT(state_journal_load(st, UINT64_MAX, &got, &n, err, sizeof(err)), 0);
    CHECK_INT(n, 1);
    CHECK_STR(n ? got[0].body : NULL, v[1].body);
    state_journal_records_free(got, n);
    CHECK_INT(state_journal_clear(st), 0);
    contract_check_records(st, UINT64_MAX, NULL, 0);
    state_close(st);
}

/* Compaction: exactly the given records, each sink's in the given order; done and clear. */
static void contract_compact_done_clear(void)
{
    static const char *const ac[] = {"k-1-0", "k-1-2"}, *const cab[] = {"k-1-2", "k-1-0", "k-1-1"};
    struct state *st = contract_open(1);
    struct journal_record v[3] = {
        contract_rec("k-1-0", "s1", "project.created", "{\"n\":0}", 10, 1),
        contract_rec("k-1-1", "s2", "project.created", "{\"n\":1}", 10, 1),
        contract_rec("k-1-2", "s3", "project.created", "{\"n\":2}", 10, 1),
    };
    struct journal_record w[3] = {v[2], v[0], v[1]};
    char err[512];

    CHECK_INT(state_journal_add(st, v, 3, err, sizeof(err)), 0);
    struct journal_record keep[2] = {v[0], v[2]};
    CHECK_INT(state_journal_compact(st, keep, 2), 0);
    contract_check_records(st, 1, ac, 2);
    /* The journal order of different sinks is free; k-1-1 comes back after compaction. */
    CHECK_INT(state_journal_compact(st, w, 3), 0);
    struct journal_record *got = NULL;
    size_t n = 0;
    CHECK_INT(state_journal_load(st, 1, &got, &n, err, sizeof(err)), 0);
    CHECK_INT(n, 3);
    for (size_t i = 0; i < n; i++)
        CHECK(strcmp(got[i].id, cab[0]) == 0 || strcmp(got[i].id, cab[1]) == 0 ||
              strcmp(got[i].id, cab[2]) == 0);
    state_journal_records_free(got, n);
    CHECK_INT(state_journal_done(st, "k-1-2", "dead"), 0);
    CHECK_INT(state_journal_done(st, "no-such-id", "dead"), 0);
    CHECK_INT(state_journal_load(st, 1, &got, &n, err, sizeof(err)), 0);
    CHECK_INT(n, 2);
    state_journal_records_free(got, n);
    CHECK_INT(state_deadletter(st, &v[2], "HTTP 404"), 0);
    CHECK_INT(state_journal_clear(st), 0);
    contract_check_records(st, 1, NULL, 0);
    state_close(st);
}

static void contract_sync_positions(void)
{
    struct state *st = contract_open(1);
    struct state_sync_position p = {"https://hs.example", "@bot:hs.example", "s72_\"x\"_\xc3\xa9"};
    struct state_sync_position got;
    char err[512];

    CHECK_INT(state_sync_position_get(st, "matrix", &got, err, sizeof(err)), -ENOENT);
    CHECK(got.server == NULL);
    CHECK_INT(state_sync_position_put(st, "matrix", &p, err, sizeof(err)), 0);
    CHECK_INT(state_sync_position_get(st, "matrix", &got, err, sizeof(err)), 0);
    CHECK_STR(got.server, p.server);
    CHECK_STR(got.user, p.user);
    CHECK_STR(got.position, p.position);
    state_sync_position_fini(&got);
    p.position = "s73";
    CHECK_INT(state_sync_position_put(st, "matrix", &p, err, sizeof(err)), 0);
    CHECK_INT(state_sync_position_get(st, "matrix", &got, err, sizeof(err)), 0);
    CHECK_STR(got.position, "s73");
    state_sync_position_fini(&got);
    CHECK_INT(state_sync_position_get(st, "other", &got, err, sizeof(err)), -ENOENT);
    CHECK_INT(state_sync_position_get(st, "../x", &got, err, sizeof(err)), -EINVAL);
    CHECK_INT(state_sync_position_put(st, "Matrix", &p, err, sizeof(err)), -EINVAL);
    state_close(st);
}

/* Bigger than one etcd request (1.5 MiB by default): chunks on etcd, one file on disk. */
static void contract_big_snapshot(void)
{
    struct state *st = contract_open(1);
    struct snapshot s, back;
    char err[512];

    contract_snapshot(&s, 20000, 4);
    CHECK_INT(state_commit(st, &s, NULL, 0, 100, err, sizeof(err)), 0);
    CHECK_INT(state_load(st, "", &back, err, sizeof(err)), STATE_LOADED);
    CHECK_INT(back.projects.n, 20000);
    CHECK_INT(back.generation, 4);
    if (back.projects.n == 20000)
        CHECK_STR(back.projects.v[19999].name, s.projects.v[19999].name);
    snapshot_fini(&back);
    /* And a smaller one replaces it whole. */
    snapshot_fini(&s);
    contract_snapshot(&s, 5, 5);
    CHECK_INT(state_commit(st, &s, NULL, 0, 200, err, sizeof(err)), 0);
    CHECK_INT(state_load(st, "", &back, err, sizeof(err)), STATE_LOADED);
    CHECK_INT(back.projects.n, 5);
    snapshot_fini(&back);
    snapshot_fini(&s);
    state_close(st);
}

/* ---- subscriptions ---- */

/* A subscription of static strings (never subscription_fini() it). */
static struct subscription contract_sub(enum sub_platform p, const char *channel, char **patterns,
                                        size_t n, const char *suspended)
{
    return (struct subscription){.platform = p,
                                 .channel = (char *)channel,
                                 .patterns = patterns,
                                 .n_patterns = n,
                                 .events = (1u << CHANGE_CREATED) | (1u << CHANGE_ARCHIVED),
                                 .by = "U0BY",
                                 .created = 1700000000,
                                 .changed = 1700000500,
                                 .suspended = (char *)suspended};
}

static void contract_check_sub(const struct subscription *got, const struct subscription *want)
{
    CHECK_INT(got->platform, want->platform);
    CHECK_STR(got->channel, want->channel);
    CHECK_INT(got->n_patterns, want->n_patterns);
    for (size_t i = 0; i < got->n_patterns && i < want->n_patterns; i++)
        CHECK_STR(got->patterns[i], want->patterns[i]);
    CHECK_INT(got->events, want->events);
    CHECK_STR(got->by, want->by);
    CHECK_INT(got->created, want->created);
    CHECK_INT(got->changed, want->changed);
    if (want->suspended)
        CHECK_STR(got->suspended, want->suspended);
    else
        CHECK(got->suspended == NULL);
}

/* Loads the subscriptions and checks them against want, in order. */
static void contract_check_subs(struct state *st, const struct subscription *const *want, size_t n)
{
    struct subscription_list l;
    char err[512];

    CHECK_INT(state_subscriptions_load(st, &l, err, sizeof(err)), 0);
    CHECK_INT(l.n, n);
    for (size_t i = 0; i < l.n && i < n; i++)
        contract_check_sub(&l.v[i], want[i]);
    subscription_list_fini(&l);
}

/*
 * Put, load, replace, delete, reopen: every backend keeps each channel's subscription whole,
 * returns them sorted by platform then channel, and skips nothing it wrote itself.
 */
static void contract_subscriptions(void)
{
    char *web[] = {"WEB*", "!WEB-OLD"}, *all[] = {"*"};
    char *intl[] = {"\xc3\xa9t\xc3\xa9*", "!\xe6\x97\xa5\xe6\x9c\xac", "ops-?"};
    struct subscription a = contract_sub(SUB_SLACK, "C0B", web, 2, NULL);
    struct subscription b = contract_sub(SUB_SLACK, "C0A", all, 1, "HTTP 404: channel_not_found");
    struct subscription c = contract_sub(SUB_MATRIX, "!r\xc3\xa9:hs.example", intl, 3, NULL);
    struct subscription d = contract_sub(SUB_MATRIX, "!Abc:hs.example", all, 1, NULL);
    struct state *st = contract_open(1);
    char err[512];

    contract_check_subs(st, NULL, 0);
    /* Put out of order: the load sorts (Slack first, then strcmp of the channels). */
    CHECK_INT(state_subscription_put(st, &c, err, sizeof(err)), 0);
    CHECK_INT(state_subscription_put(st, &a, err, sizeof(err)), 0);
    CHECK_INT(state_subscription_put(st, &d, err, sizeof(err)), 0);
    CHECK_INT(state_subscription_put(st, &b, err, sizeof(err)), 0);
    contract_check_subs(st, (const struct subscription *const[]){&b, &a, &d, &c}, 4);

    /* A put replaces the channel's subscription whole. */
    struct subscription a2 = contract_sub(SUB_SLACK, "C0B", intl, 3, "suspended \"by\" the test");
    a2.events = CONF_EVENTS_ALL;
    a2.by = "U0OTHER";
    a2.changed = 1700009999;
    CHECK_INT(state_subscription_put(st, &a2, err, sizeof(err)), 0);
    contract_check_subs(st, (const struct subscription *const[]){&b, &a2, &d, &c}, 4);

    /* Delete; again (none saved is fine); of a channel never subscribed. */
    CHECK_INT(state_subscription_delete(st, SUB_MATRIX, "!Abc:hs.example", err, sizeof(err)), 0);
    CHECK_INT(state_subscription_delete(st, SUB_MATRIX, "!Abc:hs.example", err, sizeof(err)), 0);
    CHECK_INT(state_subscription_delete(st, SUB_SLACK, "C0NEVER", err, sizeof(err)), 0);
    contract_check_subs(st, (const struct subscription *const[]){&b, &a2, &c}, 3);

    /* What a load would skip is refused. */
    struct subscription bad = contract_sub(SUB_SLACK, "#general", all, 1, NULL);
    CHECK_INT(state_subscription_put(st, &bad, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "Slack channel id") != NULL);
    bad = contract_sub(SUB_SLACK, "C0B", all, 0, NULL);
    CHECK_INT(state_subscription_put(st, &bad, err, sizeof(err)), -EINVAL);
    CHECK_INT(state_subscription_delete(st, 7, "C0B", err, sizeof(err)), -EINVAL);
    state_close(st);

    /* Durable: a restart finds the same. */
    st = contract_open(0);
    contract_check_subs(st, (const struct subscription *const[]){&b, &a2, &c}, 3);
    CHECK_INT(state_subscription_delete(st, SUB_SLACK, "C0A", err, sizeof(err)), 0);
    CHECK_INT(state_subscription_delete(st, SUB_SLACK, "C0B", err, sizeof(err)), 0);
    CHECK_INT(state_subscription_delete(st, SUB_MATRIX, c.channel, err, sizeof(err)), 0);
    state_close(st);
    st = contract_open(0);
    contract_check_subs(st, NULL, 0);
    state_close(st);
}

static void state_contract_run(const struct contract_backend *b)
{
    contract = b;
    fprintf(stderr, "-- the state contract on the %s backend\n", b->name);
    RUN(contract_first_run_and_round_trip);
    RUN(contract_commit_then_restart);
    RUN(contract_uncommitted_records_dropped);
    RUN(contract_records_round_trip);
    RUN(contract_compact_done_clear);
    RUN(contract_sync_positions);
    RUN(contract_big_snapshot);
    RUN(contract_subscriptions);
}

#endif
