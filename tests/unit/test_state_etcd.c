/*
 * The etcd state backend (bridge/state_etcd.c) against a real single-member etcd started here
 * (tests/etcd_server.h; skipped, exit 77, without an etcd binary): the state contract every
 * backend passes (state_contract.h), then what only a shared store has: fencing by the leader
 * key's lease (revoked, deposed, a lease the clock no longer trusts), -EBUSY at open, a
 * read-only look, damaged chunks, the dead letters' bound, subscriptions fenced and skipped.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd.h"
#include "etcd_server.h"
#include "http.h"
#include "state.h"
#include "state_contract.h"
#include "test.h"

#define PREFIX "/ytb/test"
#define LEADER PREFIX "/leader"

static struct etcd_server srv;
static struct etcd *admin; /* unfenced: plays the other replicas and the operator */
static int64_t lease;      /* the lease "this replica" leads with */
static int lease_ok = 1;   /* what valid() says */

static int valid(void *userdata, char *err, size_t errlen)
{
    (void)userdata;
    if (lease_ok)
        return 0;
    snprintf(err, errlen, "the lease may have expired (test)");
    return -ENOLCK;
}

static json_t *ops1(json_t *op)
{
    json_t *a = json_array();
    json_array_append_new(a, op);
    return a;
}

static int txn(json_t *ops)
{
    struct etcd_reply r;
    int rc = etcd_call_sync(admin, "/v3/kv/txn", etcd_txn(NULL, ops, NULL), &r);
    etcd_reply_fini(&r);
    return rc;
}

static int64_t grant(void)
{
    struct etcd_reply r;
    int64_t id = 0;
    if (etcd_call_sync(admin, "/v3/lease/grant", json_pack("{s:i}", "TTL", 60), &r) == 0)
        id = etcd_int(r.body, "ID");
    etcd_reply_fini(&r);
    return id;
}

static void revoke_lease(int64_t id)
{
    struct etcd_reply r;
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)id);
    CHECK_INT(etcd_call_sync(admin, "/v3/lease/revoke", json_pack("{s:s}", "ID", buf), &r), 0);
    etcd_reply_fini(&r);
}

/* What cluster.c does when this replica wins: the leader key, under its lease. */
static void lead(const char *member, int64_t id)
{
    CHECK_INT(txn(ops1(etcd_op_put(LEADER, member, strlen(member), id))), 0);
}

static int open_as(struct state **out, int64_t id, unsigned flags, char *err, size_t errlen)
{
    struct state_lease l = {.leader_key = LEADER, .lease = id, .valid = valid};
    return state_open_etcd(out, admin, PREFIX, &l, flags, err, errlen);
}

static int reopen(struct state **out)
{
    char err[512];
    int r = open_as(out, lease, 0, err, sizeof(err));
    if (r)
        fprintf(stderr, "open: %s\n", err);
    return r;
}

static int fresh(struct state **out)
{
    char *end = etcd_prefix_end(PREFIX "/");
    CHECK_INT(txn(ops1(etcd_op_delete(PREFIX "/", end))), 0);
    free(end);
    lease_ok = 1;
    lead("me", lease);
    return reopen(out);
}

/* The raw value of key (NULL when absent; caller frees). */
static char *get(const char *key, size_t *len)
{
    json_t *op = etcd_op_range(key, NULL);
    struct etcd_reply r;
    struct etcd_kv *kv = NULL;
    size_t n = 0;
    char *v = NULL;

    if (etcd_call_sync(admin, "/v3/kv/range", json_incref(json_object_get(op, "request_range")),
                       &r) == 0 &&
        etcd_kvs(r.body, &kv, &n) == 0 && n == 1) {
        v = kv[0].value;
        kv[0].value = NULL;
        if (len)
            *len = kv[0].value_len;
    }
    etcd_kvs_free(kv, n);
    etcd_reply_fini(&r);
    json_decref(op);
    return v;
}

static int has(const char *key)
{
    char *v = get(key, NULL);
    free(v);
    return v != NULL;
}

static size_t count(const char *prefix)
{
    char *end = etcd_prefix_end(prefix);
    json_t *op = etcd_op_range(prefix, end);
    json_t *body = json_incref(json_object_get(op, "request_range"));
    struct etcd_reply r;
    size_t n = 0;

    json_object_set_new(body, "count_only", json_true());
    if (etcd_call_sync(admin, "/v3/kv/range", body, &r) == 0)
        n = (size_t)etcd_int(r.body, "count");
    etcd_reply_fini(&r);
    json_decref(op);
    free(end);
    return n;
}

static void commit_gen(struct state *st, uint64_t gen, int n_projects, int expect)
{
    struct snapshot s;
    struct journal_record rec = contract_rec("x", "team", "project.created", "{}", 1, gen);
    char err[512], id[32];

    snprintf(id, sizeof(id), "f-%llu-0", (unsigned long long)gen);
    rec.id = id;
    contract_snapshot(&s, n_projects, gen);
    CHECK_INT(state_commit(st, &s, &rec, 1, 100, err, sizeof(err)), expect);
    if (expect == -ENOLCK)
        CHECK(strstr(err, "leadership lost: " LEADER " is no longer held") ||
              strstr(err, "may have expired"));
    snapshot_fini(&s);
}

static uint64_t loaded_gen(struct state *st)
{
    struct snapshot back;
    char err[512];
    uint64_t g = 0;
    if (state_load(st, "", &back, err, sizeof(err)) == STATE_LOADED)
        g = back.generation;
    snapshot_fini(&back);
    return g;
}

/* The lease revoked under a running leader: the commit fails and changes nothing. */
static void test_revoked_lease_changes_nothing(void)
{
    struct state *st = NULL;
    char err[512];

    CHECK_INT(fresh(&st), 0);
    commit_gen(st, 1, 3, 0);
    size_t keys = count(PREFIX "/");
    revoke_lease(lease);
    commit_gen(st, 2, 3, -ENOLCK);
    CHECK_INT(count(PREFIX "/"), keys - 1); /* only the leader key went, with its lease */
    CHECK_INT(state_check(st, err, sizeof(err)), -ENOLCK);
    CHECK(strstr(err, "leadership lost") != NULL);
    /* Lost for good: no further write even tries. */
    CHECK_INT(state_journal_clear(st), -ENOLCK);
    state_close(st);
    lease = grant();
    CHECK_INT(fresh(&st), 0);
    state_close(st);
}

/* Another replica leads now: the old one can write nothing, the new one's state stays. */
static void test_deposed_writer_cannot_overwrite(void)
{
    struct state *a = NULL, *b = NULL;
    int64_t other = grant();
    char err[512];
    struct state_sync_position p = {"h", "u", "s1"};

    CHECK_INT(fresh(&a), 0);
    commit_gen(a, 1, 3, 0);
    lead("replica-b", other);
    CHECK_INT(open_as(&b, lease, 0, err, sizeof(err)), -EBUSY);
    CHECK(strstr(err, "replica-b") != NULL);
    CHECK_INT(open_as(&b, other, 0, err, sizeof(err)), 0);
    commit_gen(b, 2, 4, 0);
    commit_gen(a, 3, 5, -ENOLCK);
    CHECK_INT(state_sync_position_put(a, "matrix", &p, err, sizeof(err)), -ENOLCK);
    CHECK_INT(state_check(a, err, sizeof(err)), -ENOLCK);
    CHECK_INT(state_check(b, err, sizeof(err)), 0);
    CHECK_INT(loaded_gen(b), 2);
    struct journal_record *got = NULL;
    size_t n = 0;
    CHECK_INT(state_journal_load(b, 2, &got, &n, err, sizeof(err)), 0);
    CHECK_INT(n, 2); /* f-1-0 and f-2-0; nothing of generation 3 */
    state_journal_records_free(got, n);
    state_close(a);
    state_close(b);
    revoke_lease(other);
}

/* A lease the monotonic clock no longer trusts: refused before any request. */
static void test_untrusted_lease_refuses_writes(void)
{
    struct state *st = NULL;
    char err[512];
    struct etcd_counts before, after;

    CHECK_INT(fresh(&st), 0);
    lease_ok = 0;
    etcd_counts(admin, &before);
    commit_gen(st, 1, 3, -ENOLCK);
    CHECK_INT(state_check(st, err, sizeof(err)), -ENOLCK);
    CHECK(strstr(err, "may have expired") != NULL);
    etcd_counts(admin, &after);
    CHECK_INT(after.ok + after.error + after.unreachable,
              before.ok + before.error + before.unreachable);
    lease_ok = 1;
    CHECK_INT(state_check(st, err, sizeof(err)), 0);
    commit_gen(st, 2, 3, 0);
    state_close(st);
}

static void test_open_needs_the_leader_key(void)
{
    struct state *st = NULL;
    char err[512];
    char *end = etcd_prefix_end(PREFIX "/");

    CHECK_INT(txn(ops1(etcd_op_delete(PREFIX "/", end))), 0);
    free(end);
    CHECK_INT(open_as(&st, lease, 0, err, sizeof(err)), -EBUSY);
    CHECK(strstr(err, LEADER) != NULL);
    CHECK_INT(state_open_etcd(&st, admin, PREFIX, NULL, 0, err, sizeof(err)), -EINVAL);
}

/* --doctor and --dry-run: a look without a lease; writes refused. */
static void test_read_only(void)
{
    struct state *st = NULL, *ro = NULL;
    struct snapshot back;
    char err[512];

    CHECK_INT(fresh(&st), 0);
    commit_gen(st, 7, 3, 0);
    state_close(st);
    CHECK_INT(state_open_etcd(&ro, admin, PREFIX, NULL, STATE_OPEN_READONLY, err, sizeof(err)), 0);
    CHECK_INT(state_load(ro, PREFIX, &back, err, sizeof(err)), STATE_LOADED);
    CHECK_INT(back.generation, 7);
    snapshot_fini(&back);
    CHECK_INT(state_check(ro, err, sizeof(err)), 0);
    struct snapshot none = {0};
    CHECK_INT(state_save(ro, &none, 1, err, sizeof(err)), -EROFS);
    state_close(ro);
}

/* A damaged or missing chunk: STATE_CORRUPT with the key named, then moved aside. */
static void test_corrupt_chunks(void)
{
    struct state *st = NULL;
    struct snapshot back;
    char err[512], key[128];

    CHECK_INT(fresh(&st), 0);
    commit_gen(st, 3, 9000, 0);
    snprintf(key, sizeof(key), PREFIX "/snapshot/%020d/%06d", 3, 1);
    CHECK(has(key));
    CHECK_INT(txn(ops1(etcd_op_put(key, "garbage", 7, 0))), 0);
    CHECK_INT(state_load(st, "", &back, err, sizeof(err)), STATE_CORRUPT);
    CHECK(strstr(err, PREFIX "/snapshot") != NULL);
    CHECK(strstr(err, "corrupt") != NULL);
    CHECK(has(PREFIX "/snapshot.corrupt"));
    CHECK_INT(state_load(st, "", &back, err, sizeof(err)), STATE_NONE);
    /* A chunk missing altogether, and a pointer that is not one. */
    commit_gen(st, 4, 9000, 0);
    snprintf(key, sizeof(key), PREFIX "/snapshot/%020d/%06d", 4, 2);
    CHECK_INT(txn(ops1(etcd_op_delete(key, NULL))), 0);
    CHECK_INT(state_load(st, "", &back, err, sizeof(err)), STATE_CORRUPT);
    CHECK(strstr(err, "chunk 2 is missing") != NULL);
    CHECK_INT(txn(ops1(etcd_op_put(PREFIX "/snapshot", "{\"generation\":1}", 16, 0))), 0);
    CHECK_INT(state_load(st, "", &back, err, sizeof(err)), STATE_CORRUPT);
    /* A commit after all that is whole again, and older chunks are gone. */
    commit_gen(st, 5, 9000, 0);
    CHECK_INT(loaded_gen(st), 5);
    CHECK_INT(count(PREFIX "/snapshot/"), count(PREFIX "/snapshot/00000000000000000005/"));
    state_close(st);
}

/* Dead letters: the newest 1000 are kept (the trim rides in the same txn). */
static void test_deadletter_bound(void)
{
    struct state *st = NULL;
    struct journal_record rec = contract_rec("d-1-0", "team", "project.created", "{}", 1, 1);

    CHECK_INT(fresh(&st), 0);
    state_close(st);
    CHECK_INT(txn(ops1(etcd_op_put(PREFIX "/deadletter/00000000000000000005", "old", 3, 0))), 0);
    CHECK_INT(txn(ops1(etcd_op_put(PREFIX "/deadletter/00000000000000001500", "x", 1, 0))), 0);
    CHECK_INT(reopen(&st), 0);
    CHECK_INT(state_deadletter(st, &rec, "HTTP 410"), 0);
    CHECK(!has(PREFIX "/deadletter/00000000000000000005"));
    CHECK(has(PREFIX "/deadletter/00000000000000001500"));
    size_t len = 0;
    char *v = get(PREFIX "/deadletter/00000000000000001501", &len);
    CHECK(v && strstr(v, "HTTP 410") != NULL);
    free(v);
    state_close(st);
}

/* Journal keys keep counting up across a restart; a record is one key. */
static void test_journal_keys(void)
{
    struct state *st = NULL;
    struct journal_record v[2] = {
        contract_rec("j-1-0", "team", "project.created", "{}", 1, 1),
        contract_rec("j-1-1", "team", "project.created", "{}", 1, 1),
    };
    char err[512];

    CHECK_INT(fresh(&st), 0);
    CHECK_INT(state_journal_add(st, v, 1, err, sizeof(err)), 0);
    state_close(st);
    CHECK_INT(reopen(&st), 0);
    CHECK_INT(state_journal_add(st, v + 1, 1, err, sizeof(err)), 0);
    char *a = get(PREFIX "/journal/00000000000000000001", NULL);
    char *b = get(PREFIX "/journal/00000000000000000002", NULL);
    CHECK(a && strstr(a, "j-1-0"));
    CHECK(b && strstr(b, "j-1-1"));
    free(a);
    free(b);
    /* A record put there by hand that is not one: dropped at load. */
    CHECK_INT(txn(ops1(etcd_op_put(PREFIX "/journal/00000000000000000009", "{bad", 4, 0))), 0);
    contract_check_records(st, 1, (const char *const[]){"j-1-0", "j-1-1"}, 2);
    CHECK_INT(count(PREFIX "/journal/"), 2);
    state_close(st);
}

/* etcd stops answering in the middle: the commit fails in time, and nothing of it counts. */
static void test_etcd_unreachable_mid_commit(void)
{
    const char *eps[] = {srv.url};
    struct etcd_opts o = {.endpoints = eps, .n_endpoints = 1, .timeout_ms = 300};
    struct state_lease l = {.leader_key = LEADER, .lease = lease, .valid = valid};
    struct etcd *quick = NULL;
    struct state *st = NULL;
    struct snapshot s;
    struct journal_record rec = contract_rec("g-2-0", "team", "project.created", "{}", 1, 2);
    char err[512];

    CHECK_INT(fresh(&st), 0);
    commit_gen(st, 1, 3, 0);
    state_close(st);
    CHECK_INT(etcd_new(&quick, NULL, &o, err, sizeof(err)), 0);
    CHECK_INT(state_open_etcd(&st, quick, PREFIX, &l, 0, err, sizeof(err)), 0);
    contract_snapshot(&s, 3, 2);
    kill(srv.pid, SIGSTOP);
    double t0 = etcd_server_now();
    CHECK_INT(state_commit(st, &s, &rec, 1, 100, err, sizeof(err)), -EHOSTUNREACH);
    CHECK(etcd_server_now() - t0 < 5);
    CHECK(strstr(err, PREFIX "/journal/") != NULL);
    kill(srv.pid, SIGCONT);
    snapshot_fini(&s);
    state_close(st);
    etcd_free(quick);
    /* What etcd applied once it woke up is above the committed generation: dropped. */
    CHECK_INT(reopen(&st), 0);
    CHECK_INT(loaded_gen(st), 1);
    contract_check_records(st, 1, (const char *const[]){"f-1-0"}, 1);
    state_close(st);
}

/* Subscriptions: fenced like every write, readable without a lease, damaged ones skipped. */
static void test_subscriptions_fenced(void)
{
    char *all[] = {"*"};
    struct subscription a = contract_sub(SUB_SLACK, "C0A", all, 1, NULL);
    struct subscription b = contract_sub(SUB_SLACK, "C0B", all, 1, NULL);
    struct state *st = NULL, *ro = NULL, *other_st = NULL;
    int64_t other = grant();
    char err[512], key[STATE_SUBSCRIPTION_KEY], path[256];

    CHECK_INT(fresh(&st), 0);
    CHECK_INT(state_subscription_put(st, &a, err, sizeof(err)), 0);
    CHECK_INT(state_subscription_key(SUB_SLACK, "C0A", key), 0);
    snprintf(path, sizeof(path), PREFIX "/subscriptions/%s", key);
    char *v = get(path, NULL);
    CHECK(v && strstr(v, "\"channel\":\"C0A\""));
    free(v);

    /* Damaged, or under another channel's key or a name that is no key: skipped, left there. */
    CHECK_INT(txn(ops1(etcd_op_put(PREFIX "/subscriptions/junk", "{", 1, 0))), 0);
    CHECK_INT(state_subscription_key(SUB_SLACK, "C0B", key), 0);
    snprintf(path, sizeof(path), PREFIX "/subscriptions/%s", key);
    char *text = state_format_subscription(&a);
    CHECK_INT(txn(ops1(etcd_op_put(path, text, strlen(text), 0))), 0);
    CHECK_INT(txn(ops1(etcd_op_put(PREFIX "/subscriptions/a", text, strlen(text), 0))), 0);
    free(text);
    contract_check_subs(st, (const struct subscription *const[]){&a}, 1);
    CHECK(has(PREFIX "/subscriptions/junk"));
    CHECK_INT(count(PREFIX "/subscriptions/"), 4);

    /* A read-only look loads them too, and cannot write. */
    CHECK_INT(state_open_etcd(&ro, admin, PREFIX, NULL, STATE_OPEN_READONLY, err, sizeof(err)), 0);
    contract_check_subs(ro, (const struct subscription *const[]){&a}, 1);
    CHECK_INT(state_subscription_put(ro, &b, err, sizeof(err)), -EROFS);
    CHECK_INT(state_subscription_delete(ro, SUB_SLACK, "C0A", err, sizeof(err)), -EROFS);

    /* Another replica leads: this one's put and delete are refused and change nothing. */
    lead("replica-b", other);
    CHECK_INT(open_as(&other_st, other, 0, err, sizeof(err)), 0);
    CHECK_INT(state_subscription_put(st, &b, err, sizeof(err)), -ENOLCK);
    CHECK(strstr(err, "leadership lost") != NULL);
    CHECK_INT(state_subscription_delete(st, SUB_SLACK, "C0A", err, sizeof(err)), -ENOLCK);
    CHECK_INT(state_check(st, err, sizeof(err)), -ENOLCK);
    contract_check_subs(ro, (const struct subscription *const[]){&a}, 1);
    /* The new leader can. */
    CHECK_INT(state_subscription_put(other_st, &b, err, sizeof(err)), 0);
    CHECK_INT(state_subscription_delete(other_st, SUB_SLACK, "C0A", err, sizeof(err)), 0);
    contract_check_subs(ro, (const struct subscription *const[]){&b}, 1);
    state_close(ro);
    state_close(other_st);
    state_close(st);
    revoke_lease(other);
}

int main(void)
{
    char err[256];
    static const struct contract_backend etcd_backend = {"etcd", fresh, reopen};

    if (http_global_init() != 0)
        return 1;
    etcd_server_start(&srv, NULL);
    const char *eps[] = {srv.url};
    struct etcd_opts o = {.endpoints = eps, .n_endpoints = 1, .timeout_ms = 10000};
    if (etcd_new(&admin, NULL, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    lease = grant();
    CHECK(lease != 0);
    state_contract_run(&etcd_backend);
    RUN(test_revoked_lease_changes_nothing);
    RUN(test_deposed_writer_cannot_overwrite);
    RUN(test_untrusted_lease_refuses_writes);
    RUN(test_open_needs_the_leader_key);
    RUN(test_read_only);
    RUN(test_subscriptions_fenced);
    RUN(test_corrupt_chunks);
    RUN(test_deadletter_bound);
    RUN(test_journal_keys);
    RUN(test_etcd_unreachable_mid_commit);
    etcd_free(admin);
    etcd_server_stop(&srv);
    http_global_cleanup();
    return test_done();
}
