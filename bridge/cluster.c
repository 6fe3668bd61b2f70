/*
 * Leader election through etcd (cluster.h; the protocol and its sources in doc/etcd.md).
 *
 * One timer drives the election: in a standby it reads the leader key, in a leader it sends the
 * keep-alive. A second timer fires when the leader's trust in its lease runs out, so a leader
 * cut off from etcd steps down on time even while a keep-alive hangs. At most one call is in
 * flight at a time (busy), except the revocation of a lease given up, which needs no answer.
 */
#include "cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcd.h"
#include "log.h"
#include "metrics.h"

struct cluster {
    uv_loop_t *loop;
    const struct conf *conf;
    const struct conf_cluster *cc;
    struct etcd *etcd;
    cluster_role_cb cb;
    void *userdata;

    enum cluster_role role;
    char *leader_key;     /* <prefix>/leader */
    char *leader;         /* the member the leader key names, NULL when none */
    int64_t lease;        /* while campaigning or leading */
    uint64_t sent_ms;     /* CLOCK_BOOTTIME: when the last renewal that etcd answered was sent */
    uint64_t pending_ms;  /* when the renewal in flight was sent */
    uint64_t deadline_ms; /* the leadership is trusted until then */
    struct state_lease fence;

    uv_timer_t tick, expiry;
    uv_timer_t notify; /* the role callback runs from here, never inside an etcd callback */
    int busy;          /* a call is in flight */
    int stopping;      /* cluster_stop() was called */
    int handles;       /* open timers, for the close callbacks */
    void (*done)(void *userdata);
    void *done_userdata;

    uint64_t etcd_ok_ms; /* the last answer from etcd, CLOCK_BOOTTIME */
    char etcd_error[256];
    int etcd_failing; /* logged once per outage */
    uint64_t leader_changes;
};

/*
 * CLOCK_BOOTTIME in ms: like CLOCK_MONOTONIC, but it keeps counting while the machine is
 * suspended, so a leader resumed from a suspend sees that its lease is over (clock_gettime(2)).
 */
static uint64_t boot_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t ttl_ms(const struct cluster *c)
{
    return (uint64_t)c->cc->lease_ttl * 1000u;
}

/*
 * How much earlier than etcd the leader gives up: a tenth of the TTL, at least half a second.
 * The deadline already counts from the sending of the keep-alive (etcd renews no earlier than
 * it receives it), so the margin covers only the difference between our clock's rate and the
 * etcd leader's over one TTL, and a delivery that is started just before the deadline.
 */
static uint64_t margin_ms(const struct cluster *c)
{
    uint64_t m = ttl_ms(c) / 10;
    return m < 500 ? 500 : m;
}

/* A standby reads the leader key this often; a leader keeps its lease alive this often. */
static uint64_t observe_ms(const struct cluster *c)
{
    uint64_t t = ttl_ms(c) / 3;
    return t < 1000 ? t : 1000;
}

int cluster_etcd_new(struct etcd **out, uv_loop_t *loop, const struct conf_cluster *cc, char *err,
                     size_t errlen)
{
    struct etcd_opts o = {
        .endpoints = (const char *const *)cc->etcd,
        .n_endpoints = cc->n_etcd,
        .ca_file = cc->ca_file,
        .cert_file = cc->cert_file,
        .key_file = cc->key_file,
        .user = cc->user,
        .password = cc->password,
        .timeout_ms = 2000,
    };
    return etcd_new(out, loop, &o, err, errlen);
}

/* {"ID": "<id>"}: etcd's 64-bit numbers travel as strings (doc/etcd.md). */
static json_t *id_body(int64_t id)
{
    char text[24];
    snprintf(text, sizeof(text), "%lld", (long long)id);
    return json_pack("{s:s}", "ID", text);
}

static int lease_valid(void *userdata, char *err, size_t errlen)
{
    struct cluster *c = userdata;
    uint64_t now = boot_ms();

    if (c->role == CLUSTER_LEADER && now < c->deadline_ms)
        return 0;
    if (c->role != CLUSTER_LEADER)
        snprintf(err, errlen, "this replica no longer leads");
    else
        snprintf(err, errlen,
                 "the etcd lease was last renewed %.1f s ago and may have expired (TTL %d s): "
                 "another replica may lead now",
                 (double)(now - c->sent_ms) / 1000.0, c->cc->lease_ttl);
    return -ENOLCK;
}

static void lease_renew(void *userdata);

int cluster_new(struct cluster **out, uv_loop_t *loop, const struct conf *conf, cluster_role_cb cb,
                void *userdata, char *err, size_t errlen)
{
    struct cluster *c = calloc(1, sizeof(*c));
    size_t n;
    int r;

    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->conf = conf;
    c->cc = &conf->cluster;
    c->cb = cb;
    c->userdata = userdata;
    c->role = CLUSTER_CANDIDATE;
    n = strlen(c->cc->prefix) + sizeof("/leader");
    c->leader_key = malloc(n);
    if (!c->leader_key) {
        free(c);
        return -ENOMEM;
    }
    snprintf(c->leader_key, n, "%s/leader", c->cc->prefix);
    r = cluster_etcd_new(&c->etcd, loop, c->cc, err, errlen);
    if (r) {
        free(c->leader_key);
        free(c);
        return r;
    }
    c->fence.leader_key = c->leader_key;
    c->fence.valid = lease_valid;
    c->fence.renew = lease_renew;
    c->fence.userdata = c;
    uv_timer_init(loop, &c->tick);
    uv_timer_init(loop, &c->expiry);
    uv_timer_init(loop, &c->notify);
    c->tick.data = c->expiry.data = c->notify.data = c;
    c->handles = 3;
    *out = c;
    return 0;
}

static void on_tick(uv_timer_t *t);

static void schedule(struct cluster *c, uint64_t ms)
{
    if (!c->stopping)
        uv_timer_start(&c->tick, on_tick, ms, 0);
}

/* An answer came (or none did): the etcd check of /readyz, and one log line per outage. */
static int note_reply(struct cluster *c, const struct etcd_reply *r)
{
    if (r->error == 0) {
        c->etcd_ok_ms = boot_ms();
        if (c->etcd_failing)
            log_info("cluster", "etcd answers again");
        c->etcd_failing = 0;
        c->etcd_error[0] = '\0';
        return 0;
    }
    snprintf(c->etcd_error, sizeof(c->etcd_error), "%s", r->message);
    if (!c->etcd_failing)
        log_err("cluster", "etcd: %s", r->message);
    else
        log_debug("cluster", "etcd: %s", r->message);
    c->etcd_failing = 1;
    return -1;
}

/* The leader key names who (NULL: nobody); log each change once. */
static void set_leader(struct cluster *c, const char *who)
{
    if ((!who && !c->leader) || (who && c->leader && strcmp(who, c->leader) == 0))
        return;
    free(c->leader);
    c->leader = who ? strdup(who) : NULL;
    if (!who) {
        log_info("cluster", "no replica leads; campaigning");
        return;
    }
    c->leader_changes++;
    if (strcmp(who, c->cc->member) == 0 && c->role == CLUSTER_LEADER)
        log_info("cluster", "this replica (\"%s\") leads now", who);
    else
        log_info("cluster", "\"%s\" leads now", who);
}

static void on_notify(uv_timer_t *t)
{
    struct cluster *c = t->data;

    if (!c->stopping && c->cb)
        c->cb(c->userdata, c->role == CLUSTER_LEADER);
}

/*
 * Tells the owner about the role, from the loop: the owner starts or stops a whole bridge, whose
 * state makes blocking etcd calls, and that must not happen inside an etcd callback (etcd.h).
 */
static void notify(struct cluster *c)
{
    uv_timer_start(&c->notify, on_notify, 0, 0);
}

/* Gives a lease back without waiting for the answer (a lease nobody holds any more). */
static void on_revoked(void *userdata, const struct etcd_reply *r)
{
    (void)userdata;
    if (r->error)
        log_debug("cluster", "revoking a lease: %s (it expires by itself)", r->message);
}

static void give_back(struct cluster *c)
{
    json_t *body;

    if (!c->lease)
        return;
    body = id_body(c->lease);
    if (body)
        etcd_call(c->etcd, "/v3/lease/revoke", body, on_revoked, c);
    c->lease = 0;
}

/* Leadership is over (why says how); the bridge is told, and the replica campaigns again. */
static void lose(struct cluster *c, const char *why, uint64_t pause_ms)
{
    int was_leader = c->role == CLUSTER_LEADER;

    uv_timer_stop(&c->expiry);
    etcd_cancel_all(c->etcd); /* a keep-alive in flight, answered now, would mean nothing */
    c->busy = 0;
    c->role = CLUSTER_CANDIDATE;
    c->deadline_ms = 0;
    if (was_leader)
        log_warn("cluster", "leadership lost: %s; standing by", why);
    free(c->leader);
    c->leader = NULL;
    give_back(c);
    if (was_leader)
        notify(c);
    schedule(c, pause_ms);
}

static void arm_expiry(struct cluster *c);

static void on_expiry(uv_timer_t *t)
{
    struct cluster *c = t->data;
    char why[256];

    /* A renewal during a blocking state call may have moved the deadline since this was set. */
    if (lease_valid(c, why, sizeof(why)) == 0) {
        arm_expiry(c);
        return;
    }
    lose(c, why, 0);
}

/* The expiry timer at the deadline. The loop's clock stood still while a blocking state call
 * ran, so it is read again first, or the timer would fire that much early. */
static void arm_expiry(struct cluster *c)
{
    uint64_t now = boot_ms();

    uv_update_time(c->loop);
    uv_timer_start(&c->expiry, on_expiry, c->deadline_ms > now ? c->deadline_ms - now : 0, 0);
}

/* A renewal (a grant or a keep-alive sent at c->sent_ms) for ttl seconds: the new deadline. */
static void trust_until(struct cluster *c, int64_t ttl_s)
{
    uint64_t ttl = (uint64_t)ttl_s * 1000u;
    uint64_t m = margin_ms(c);

    uint64_t until = c->sent_ms + (ttl > m ? ttl - m : 0);

    /* An answer to an older keep-alive arriving after a newer one's moves nothing back. */
    if (until > c->deadline_ms)
        c->deadline_ms = until;
    arm_expiry(c);
}

/* The TTL a keep-alive's answer grants ({"result": {..., "TTL": "10"}}); 0 when the lease is
 * gone (etcd then leaves the TTL out; doc/etcd.md). */
static int64_t keepalive_ttl(const json_t *body)
{
    const json_t *result = json_object_get(body, "result");

    return etcd_int(result ? result : body, "TTL");
}

static void on_keepalive(void *userdata, const struct etcd_reply *r)
{
    struct cluster *c = userdata;
    int64_t ttl;

    c->busy = 0;
    if (c->stopping || c->role != CLUSTER_LEADER)
        return;
    if (note_reply(c, r) != 0) {
        /* Try again soon; the expiry timer ends it if etcd stays away. */
        schedule(c, observe_ms(c) / 2);
        return;
    }
    ttl = keepalive_ttl(r->body);
    if (ttl <= 0) {
        lose(c, "etcd says the lease has expired", 0);
        return;
    }
    if (c->pending_ms > c->sent_ms) /* not when a blocking renewal came in between */
        c->sent_ms = c->pending_ms;
    trust_until(c, ttl);
    schedule(c, ttl_ms(c) / 3);
}

static void keepalive(struct cluster *c)
{
    json_t *body = id_body(c->lease);

    c->pending_ms = boot_ms();
    if (!body || etcd_call(c->etcd, "/v3/lease/keepalive", body, on_keepalive, c) != 0) {
        schedule(c, observe_ms(c) / 2);
        return;
    }
    /* The deadline counts from the sending of the last keep-alive that was answered: only a
     * successful answer moves it (on_keepalive), and it reads sent_ms then. */
    c->busy = 1;
}

/*
 * state_lease.renew: the state backend is about to block the loop with a request; a keep-alive
 * that is due is sent first, blocking too, so a long load or commit (a large snapshot in many
 * chunks) keeps the lease alive. Nothing happens when none is due or the lease is already over.
 */
static void lease_renew(void *userdata)
{
    struct cluster *c = userdata;
    struct etcd_reply r;
    uint64_t sent = boot_ms();
    int64_t ttl;

    if (c->role != CLUSTER_LEADER || c->stopping || sent >= c->deadline_ms ||
        sent - c->sent_ms < ttl_ms(c) / 3)
        return;
    if (etcd_call_sync(c->etcd, "/v3/lease/keepalive", id_body(c->lease), &r) == 0) {
        ttl = keepalive_ttl(r.body);
        if (ttl > 0) {
            c->sent_ms = sent;
            trust_until(c, ttl);
        } else {
            /* Gone: valid() says no from now on, and the loop hears it first thing. */
            c->deadline_ms = 0;
            uv_timer_start(&c->expiry, on_expiry, 0, 0);
        }
    }
    note_reply(c, &r);
    etcd_reply_fini(&r);
}

/* The campaign's transaction answered: this replica leads, or the key names who does. */
static void on_campaign(void *userdata, const struct etcd_reply *r)
{
    struct cluster *c = userdata;
    struct etcd_kv *kv = NULL;
    size_t n = 0;

    c->busy = 0;
    if (c->stopping)
        return;
    if (note_reply(c, r) != 0) {
        give_back(c);
        schedule(c, observe_ms(c));
        return;
    }
    if (etcd_txn_succeeded(r->body)) {
        c->role = CLUSTER_LEADER;
        c->fence.lease = c->lease;
        c->sent_ms = c->pending_ms; /* the grant was sent before the key was created */
        trust_until(c, c->cc->lease_ttl);
        set_leader(c, c->cc->member);
        schedule(c, ttl_ms(c) / 3);
        notify(c);
        return;
    }
    /* Someone was faster: the failure branch read the key. */
    give_back(c);
    c->role = CLUSTER_STANDBY;
    const json_t *resp = json_array_get(json_object_get(r->body, "responses"), 0);
    if (etcd_kvs(json_object_get(resp, "response_range"), &kv, &n) == 0 && n)
        set_leader(c, kv[0].value);
    etcd_kvs_free(kv, n);
    schedule(c, observe_ms(c));
}

static void campaign(struct cluster *c)
{
    json_t *cmp = json_pack("[o]", etcd_cmp_create(c->leader_key, 0));
    json_t *ok = json_pack(
        "[o]", etcd_op_put(c->leader_key, c->cc->member, strlen(c->cc->member), c->lease));
    json_t *fail = json_pack("[o]", etcd_op_range(c->leader_key, NULL));
    json_t *body = etcd_txn(cmp, ok, fail);

    if (!body || etcd_call(c->etcd, "/v3/kv/txn", body, on_campaign, c) != 0) {
        give_back(c);
        schedule(c, observe_ms(c));
        return;
    }
    c->busy = 1;
}

/* A lease of lease_ttl seconds, for the campaign; the deadline counts from this request. */
static void on_grant(void *userdata, const struct etcd_reply *r)
{
    struct cluster *c = userdata;

    c->busy = 0;
    if (c->stopping)
        return;
    if (note_reply(c, r) != 0) {
        schedule(c, observe_ms(c));
        return;
    }
    c->lease = etcd_int(r->body, "ID");
    if (c->lease == 0 || etcd_int(r->body, "TTL") <= 0) {
        note_reply(c, &(struct etcd_reply){.error = -EPROTO,
                                           .message = "a lease grant without an ID or TTL"});
        schedule(c, observe_ms(c));
        return;
    }
    campaign(c);
}

static void grant(struct cluster *c)
{
    char ttl[16];
    json_t *body;

    snprintf(ttl, sizeof(ttl), "%d", c->cc->lease_ttl);
    body = json_pack("{s:s}", "TTL", ttl);
    c->pending_ms = boot_ms();
    if (!body || etcd_call(c->etcd, "/v3/lease/grant", body, on_grant, c) != 0) {
        schedule(c, observe_ms(c));
        return;
    }
    c->busy = 1;
}

/* The leader key read: stand by behind its holder, or campaign when there is none. */
static void on_observe(void *userdata, const struct etcd_reply *r)
{
    struct cluster *c = userdata;
    struct etcd_kv *kv = NULL;
    size_t n = 0;

    c->busy = 0;
    if (c->stopping || c->role == CLUSTER_LEADER)
        return;
    if (note_reply(c, r) != 0) {
        schedule(c, observe_ms(c));
        return;
    }
    if (etcd_kvs(r->body, &kv, &n) != 0) {
        note_reply(c, &(struct etcd_reply){.error = -EPROTO,
                                           .message = "an unreadable answer to a range"});
        schedule(c, observe_ms(c));
        return;
    }
    if (n == 0) {
        set_leader(c, NULL);
        c->role = CLUSTER_CANDIDATE;
        grant(c);
    } else {
        c->role = CLUSTER_STANDBY;
        set_leader(c, kv[0].value);
        schedule(c, observe_ms(c));
    }
    etcd_kvs_free(kv, n);
}

static void observe(struct cluster *c)
{
    json_t *body = etcd_op_body(etcd_op_range(c->leader_key, NULL));

    if (!body || etcd_call(c->etcd, "/v3/kv/range", body, on_observe, c) != 0) {
        schedule(c, observe_ms(c));
        return;
    }
    c->busy = 1;
}

static void on_tick(uv_timer_t *t)
{
    struct cluster *c = t->data;

    if (c->stopping || c->busy)
        return;
    if (c->role == CLUSTER_LEADER)
        keepalive(c);
    else
        observe(c);
}

void cluster_set_conf(struct cluster *c, const struct conf *conf)
{
    c->conf = conf;
    c->cc = &conf->cluster;
}

void cluster_start(struct cluster *c)
{
    schedule(c, 0);
}

void cluster_step_down(struct cluster *c, const char *why)
{
    char expired[256];

    if (c->role != CLUSTER_LEADER)
        return;
    /* A lease already over leaves nothing to give way to: campaign again at once. */
    if (lease_valid(c, expired, sizeof(expired)) != 0) {
        lose(c, why, 0);
        return;
    }
    lose(c, why, ttl_ms(c));
}

static void on_closed(uv_handle_t *h)
{
    struct cluster *c = h->data;
    if (--c->handles == 0 && c->done)
        c->done(c->done_userdata);
}

static void close_all(struct cluster *c)
{
    etcd_cancel_all(c->etcd);
    uv_close((uv_handle_t *)&c->tick, on_closed);
    uv_close((uv_handle_t *)&c->expiry, on_closed);
    uv_close((uv_handle_t *)&c->notify, on_closed);
}

static void on_final_revoke(void *userdata, const struct etcd_reply *r)
{
    struct cluster *c = userdata;
    if (r->error)
        log_warn("cluster",
                 "could not give the lease back (%s): the next leader waits for it "
                 "to expire",
                 r->message);
    else
        log_info("cluster", "leadership given back");
    close_all(c);
}

void cluster_stop(struct cluster *c, void (*done)(void *userdata), void *userdata)
{
    int leading = c->role == CLUSTER_LEADER;
    json_t *body;

    c->stopping = 1;
    c->done = done;
    c->done_userdata = userdata;
    uv_timer_stop(&c->tick);
    uv_timer_stop(&c->expiry);
    uv_timer_stop(&c->notify);
    etcd_cancel_all(c->etcd);
    c->busy = 0;
    c->role = CLUSTER_CANDIDATE;
    if (leading && c->lease) {
        body = id_body(c->lease);
        c->lease = 0;
        if (body && etcd_call(c->etcd, "/v3/lease/revoke", body, on_final_revoke, c) == 0)
            return;
    }
    close_all(c);
}

void cluster_free(struct cluster *c)
{
    if (!c)
        return;
    etcd_free(c->etcd);
    free(c->leader);
    free(c->leader_key);
    free(c);
}

struct etcd *cluster_etcd(const struct cluster *c)
{
    return c->etcd;
}

const char *cluster_prefix(const struct cluster *c)
{
    return c->cc->prefix;
}

const struct state_lease *cluster_lease(const struct cluster *c)
{
    return &c->fence;
}

enum cluster_role cluster_role(const struct cluster *c)
{
    return c->role;
}

int cluster_readiness(const struct cluster *c, json_t **obj)
{
    static const char *const roles[] = {"candidate", "standby", "leader"};
    uint64_t now = boot_ms();
    /* etcd answered within three reads of the leader key (or keep-alives). */
    int reached = c->etcd_ok_ms && now - c->etcd_ok_ms <= 3 * observe_ms(c) + 2000;
    int ready =
        c->role == CLUSTER_LEADER || (c->role == CLUSTER_STANDBY && reached && c->leader != NULL);

    *obj = json_pack("{s:s, s:s, s:s?, s:s}", "role", roles[c->role], "member", c->cc->member,
                     "leader", c->leader, "etcd",
                     reached            ? "ok"
                     : c->etcd_error[0] ? c->etcd_error
                                        : "no answer yet");
    return ready;
}

void cluster_metrics(const struct cluster *c, struct metrics_cluster *out)
{
    struct etcd_counts n;

    etcd_counts(c->etcd, &n);
    out->leader = c->role == CLUSTER_LEADER;
    out->leader_changes = c->leader_changes;
    out->etcd_ok = n.ok;
    out->etcd_error = n.error;
    out->etcd_unreachable = n.unreachable;
}
