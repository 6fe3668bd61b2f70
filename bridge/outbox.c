/*
 * Outbox: per-sink FIFO delivery (see outbox.h).
 *
 * Invariants: a queue has at most one request in flight, and only its head is ever sent, so
 * order per sink is the journal's order; an entry leaves its queue only after its "done" line
 * is durable (the one duplicate window: a crash between the target's answer and that fsync);
 * queues never wait on one another, except the members of a broken group, which wait on the
 * group's one prober; every queue is its own allocation that never moves, because its timer is
 * the loop's, and it is freed only from that timer's close callback (when it is removed or the
 * outbox goes away), so a callback that removes a queue never frees it under its caller.
 *
 * Groups (conf_sink.group): the members share a credential. While the group is broken every
 * member is held (Q_HELD, no timer) but one, the prober, which waits an hour in Q_BROKEN and
 * sends its head; a delivery by any member means the credential works again.
 */
#include "outbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backoff.h"
#include "log.h"
#include "metrics.h"
#include "sink.h"
#include "state.h"

#define BACKOFF_FIRST_MS   1000u
#define BACKOFF_MAX_MS     (5u * 60u * 1000u)
#define RETRY_AFTER_MAX_S  86400L
#define BROKEN_PROBE_MS    (60u * 60u * 1000u)
#define REQUEST_TIMEOUT_MS 30000L
#define ANSWER_MAX         (64u * 1024u)
#define COMPACT_EVERY      256u
#define HOLD_MS            1000u /* a look again at a state that is not ours (state_check) */
#define REPLY_MAX_AGE_S    600   /* a chat reply later than this answers nobody: dropped */

enum qstate {
    Q_IDLE = 0,
    Q_INFLIGHT,
    Q_PACING,  /* waiting out the sink's minimum interval: due soon */
    Q_BACKOFF, /* waiting to retry the head */
    Q_BROKEN,  /* waiting for the hourly probe */
    Q_HELD,    /* a member of a broken group that is not its prober: waiting for the group */
};

/* The sinks that share one credential; kept until outbox_free() (there are few names). */
struct group {
    struct group *next;
    char *name;
    int broken;             /* the alert was raised: the members are held */
    struct queue *prober;   /* the one member that probes, while broken; may be NULL */
    uint64_t next_probe_ms; /* loop time of the group's next probe */
    char reason[256];
};

struct queue {
    struct outbox *ob;
    struct group *grp; /* NULL: not in a group */
    int removed;       /* out of ob->q; the memory goes in its timer's close callback */
    struct sink sink;
    struct outbox_entry *head, *tail;
    size_t depth;
    enum qstate state;
    uv_timer_t timer;
    uint64_t last_done_ms; /* when the last answer arrived: pacing counts from there */
    unsigned failures;
    struct http_xfer *xfer;
    struct sink_request req;
    char reason[256];
    int broken_announced;
    uint64_t delivered, retried, dead;
};

struct outbox {
    uv_loop_t *loop;
    struct http *http;
    struct state *st;
    const struct conf *conf;
    struct queue **q; /* pointers: a queue never moves (its timer is the loop's) */
    size_t n, cap;
    struct group *groups;
    size_t open_handles;
    int stopping, freeing;
    unsigned done_since_compact;
    outbox_alert_cb alert_cb;
    void *alert_ud;
    outbox_gone_cb gone_cb;
    void *gone_ud;
    outbox_settled_cb settled_cb;
    void *settled_ud;
    uv_timer_t grace;
    int grace_live;
    outbox_settled_cb shutdown_cb;
    void *shutdown_ud;
};

static struct journal_record record_of(const struct outbox_entry *e)
{
    return (struct journal_record){
        .id = e->id,
        .sink = e->sink,
        .event = e->event,
        .body = e->body,
        .created = e->created,
        .gen = e->gen,
    };
}

int outbox_records(struct outbox_entry *const *v, size_t n, struct journal_record **out)
{
    struct journal_record *r = calloc(n ? n : 1, sizeof(*r));

    if (!r)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        r[i] = record_of(v[i]);
    *out = r;
    return 0;
}

int outbox_journal_load(struct state *st, uint64_t committed_gen, struct outbox_entry **head,
                        char *err, size_t errlen)
{
    struct journal_record *v = NULL;
    struct outbox_entry *list = NULL, **tail = &list;
    size_t n = 0;
    int r = state_journal_load(st, committed_gen, &v, &n, err, errlen);

    *head = NULL;
    if (r)
        return r;
    for (size_t i = 0; i < n; i++) {
        struct outbox_entry *e = calloc(1, sizeof(*e));
        if (!e) {
            snprintf(err, errlen, "out of memory");
            r = -ENOMEM;
            break;
        }
        /* The record's strings become the entry's. */
        e->id = v[i].id;
        e->sink = v[i].sink;
        e->event = v[i].event;
        e->body = v[i].body;
        e->created = v[i].created;
        e->gen = v[i].gen;
        memset(&v[i], 0, sizeof(v[i]));
        *tail = e;
        tail = &e->next;
    }
    state_journal_records_free(v, n);
    if (r) {
        while (list) {
            struct outbox_entry *e = list;
            list = e->next;
            outbox_entry_free(e);
        }
        return r;
    }
    *head = list;
    return 0;
}

static void kick(struct queue *q);

static void release(struct outbox *ob)
{
    while (ob->groups) {
        struct group *g = ob->groups;
        ob->groups = g->next;
        free(g->name);
        free(g);
    }
    free(ob->q);
    free(ob);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct outbox *ob = h->data;
    if (--ob->open_handles == 0 && ob->freeing)
        release(ob);
}

static void on_queue_closed(uv_handle_t *h)
{
    struct queue *q = h->data;
    struct outbox *ob = q->ob;
    free(q);
    if (--ob->open_handles == 0 && ob->freeing)
        release(ob);
}

/* The group named name, created when new; NULL on ENOMEM. */
static struct group *group_get(struct outbox *ob, const char *name)
{
    struct group *g;
    for (g = ob->groups; g; g = g->next) {
        if (strcmp(g->name, name) == 0)
            return g;
    }
    g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->name = strdup(name);
    if (!g->name) {
        free(g);
        return NULL;
    }
    g->next = ob->groups;
    ob->groups = g;
    return g;
}

/* Holds q for its broken group: no timer, no sending until the group works again. */
static void hold(struct queue *q)
{
    uv_timer_stop(&q->timer);
    q->state = Q_HELD;
    snprintf(q->reason, sizeof(q->reason), "%s", q->grp->reason);
}

/*
 * A queue for cs, appended to ob->q with its timer started on the loop. 0, -EEXIST or -ENOMEM
 * (then nothing of it is left).
 */
static struct queue *find_queue(struct outbox *ob, const char *name);

static int queue_add(struct outbox *ob, const struct conf_sink *cs)
{
    struct queue *q;

    if (find_queue(ob, cs->name))
        return -EEXIST;
    if (ob->n == ob->cap) {
        size_t cap = ob->cap ? 2 * ob->cap : 8;
        struct queue **v = realloc(ob->q, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        ob->q = v;
        ob->cap = cap;
    }
    q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->ob = ob;
    if (cs->group) {
        q->grp = group_get(ob, cs->group);
        if (!q->grp) {
            free(q);
            return -ENOMEM;
        }
    }
    if (sink_init(&q->sink, cs) != 0) {
        free(q);
        return -ENOMEM;
    }
    uv_timer_init(ob->loop, &q->timer);
    q->timer.data = q;
    ob->open_handles++;
    ob->q[ob->n++] = q;
    /* A credential already refused is refused for this sink too: it waits with the others. */
    if (q->grp && q->grp->broken)
        hold(q);
    return 0;
}

int outbox_new(struct outbox **out, uv_loop_t *loop, struct http *http, struct state *st,
               const struct conf *conf)
{
    struct outbox *ob = calloc(1, sizeof(*ob));
    if (!ob)
        return -ENOMEM;
    ob->loop = loop;
    ob->http = http;
    ob->st = st;
    ob->conf = conf;
    size_t n_all = conf->n_sinks + conf->chat.matrix.n_reply_sinks;
    for (size_t i = 0; i < n_all; i++) {
        const struct conf_sink *cs =
            i < conf->n_sinks ? &conf->sinks[i] : &conf->chat.matrix.reply_sinks[i - conf->n_sinks];
        int r = queue_add(ob, cs);
        if (r == -EEXIST)
            continue; /* conf.c refuses repeated names: not reached */
        if (r) {
            /* The timers of the queues added are the loop's until closed: outbox_free() closes
             * them and frees ob from their close callbacks. */
            outbox_free(ob);
            return r;
        }
    }
    *out = ob;
    return 0;
}

/* Releases what q holds but its timer, which is closed: q is freed by on_queue_closed(). */
static void queue_close(struct queue *q)
{
    if (q->xfer)
        http_cancel(q->xfer);
    q->xfer = NULL;
    sink_request_fini(&q->req);
    sink_fini(&q->sink);
    while (q->head) {
        struct outbox_entry *e = q->head;
        q->head = e->next;
        outbox_entry_free(e);
    }
    q->removed = 1;
    uv_timer_stop(&q->timer);
    uv_close((uv_handle_t *)&q->timer, on_queue_closed);
}

void outbox_free(struct outbox *ob)
{
    if (!ob)
        return;
    for (size_t i = 0; i < ob->n; i++)
        queue_close(ob->q[i]);
    ob->n = 0;
    if (ob->grace_live) {
        uv_timer_stop(&ob->grace);
        ob->grace.data = ob;
        uv_close((uv_handle_t *)&ob->grace, on_handle_closed);
        ob->grace_live = 0;
    }
    ob->freeing = 1;
    if (ob->open_handles == 0)
        release(ob);
}

void outbox_set_alert_cb(struct outbox *ob, outbox_alert_cb cb, void *userdata)
{
    ob->alert_cb = cb;
    ob->alert_ud = userdata;
}

void outbox_set_gone_cb(struct outbox *ob, outbox_gone_cb cb, void *userdata)
{
    ob->gone_cb = cb;
    ob->gone_ud = userdata;
}

static struct queue *find_queue(struct outbox *ob, const char *name)
{
    for (size_t i = 0; i < ob->n; i++) {
        if (strcmp(ob->q[i]->sink.conf->name, name) == 0)
            return ob->q[i];
    }
    return NULL;
}

static int settled(const struct outbox *ob)
{
    for (size_t i = 0; i < ob->n; i++) {
        const struct queue *q = ob->q[i];
        if (q->state == Q_INFLIGHT || q->state == Q_PACING)
            return 0;
        if (q->state == Q_IDLE && q->head && !ob->stopping)
            return 0;
    }
    return 1;
}

static void check_settled(struct outbox *ob)
{
    if (ob->settled_cb && settled(ob)) {
        outbox_settled_cb cb = ob->settled_cb;
        ob->settled_cb = NULL;
        cb(ob->settled_ud);
    }
    if (ob->stopping && ob->shutdown_cb) {
        for (size_t i = 0; i < ob->n; i++) {
            if (ob->q[i]->state == Q_INFLIGHT)
                return;
        }
        outbox_settled_cb cb = ob->shutdown_cb;
        ob->shutdown_cb = NULL;
        if (ob->grace_live)
            uv_timer_stop(&ob->grace);
        cb(ob->shutdown_ud);
    }
}

void outbox_when_settled(struct outbox *ob, outbox_settled_cb cb, void *userdata)
{
    ob->settled_cb = cb;
    ob->settled_ud = userdata;
    check_settled(ob);
}

/* Removes the head after its fate is durable. */
static void pop(struct queue *q, const char *result)
{
    struct outbox *ob = q->ob;
    struct outbox_entry *e = q->head;

    if (ob->st && !e->transient) {
        int r = state_journal_done(ob->st, e->id, result);
        if (r)
            log_err("outbox",
                    "sink %s: cannot record message %s as %s: %s (it may be sent "
                    "again after a restart)",
                    q->sink.conf->name, e->id, result, strerror(-r));
    }
    q->head = e->next;
    if (!q->head)
        q->tail = NULL;
    q->depth--;
    int transient = e->transient;
    outbox_entry_free(e);
    if (!ob->st || transient)
        return;
    size_t pending = 0;
    for (size_t i = 0; i < ob->n; i++) {
        for (struct outbox_entry *x = ob->q[i]->head; x; x = x->next)
            pending += !x->transient;
    }
    if (pending == 0) {
        if (state_journal_clear(ob->st) == 0)
            ob->done_since_compact = 0;
        return;
    }
    if (++ob->done_since_compact >= COMPACT_EVERY) {
        /* Keep the journal short: rewrite it with just what is still queued. */
        size_t k = 0;
        struct journal_record *v = calloc(pending, sizeof(*v));
        if (v) {
            for (size_t i = 0; i < ob->n; i++) {
                for (struct outbox_entry *x = ob->q[i]->head; x; x = x->next) {
                    if (!x->transient)
                        v[k++] = record_of(x);
                }
            }
            if (state_journal_compact(ob->st, v, k) == 0)
                ob->done_since_compact = 0;
            free(v);
        }
    }
}

/*
 * Counts one delivery attempt's result: a subscription's under its platform (a bounded
 * family, since subscriptions come and go at run time), any other sink's under its name.
 */
static void count(struct queue *q, const char *result)
{
    const struct conf_sink *cs = q->sink.conf;

    if (strcmp(result, "delivered") == 0)
        q->delivered++;
    else if (strcmp(result, "retried") == 0)
        q->retried++;
    else
        q->dead++;
    if (cs->subscription)
        metrics_subscription_delivery(cs->type == CONF_SINK_SLACK_BOT ? "slack" : "matrix", result);
    else
        metrics_delivery(cs->name, result);
}

static void dead_letter(struct queue *q, const char *why)
{
    struct outbox_entry *e = q->head;
    log_err("outbox", "sink %s: message %s (%s) dead-lettered: %s", q->sink.conf->name, e->id,
            e->event, why);
    if (q->ob->st && !e->transient) {
        struct journal_record rec = record_of(e);
        int r = state_deadletter(q->ob->st, &rec, why);
        if (r)
            log_err("outbox", "cannot write the dead-letter file: %s", strerror(-r));
    }
    count(q, "dead");
    pop(q, "dead");
}

static void on_timer(uv_timer_t *t)
{
    struct queue *q = t->data;
    q->state = Q_IDLE;
    kick(q);
    check_settled(q->ob);
}

static void wait_for(struct queue *q, enum qstate state, uint64_t ms)
{
    q->state = state;
    uv_timer_start(&q->timer, on_timer, ms, 0);
}

/* 1 s, 2 s, ... 5 min, +-20%; a server-given delay wins over our guess, even past our cap. */
static const struct backoff delivery_backoff = {
    .first_ms = BACKOFF_FIRST_MS,
    .cap_ms = BACKOFF_MAX_MS,
    .jitter_min_pct = 80,
    .jitter_max_pct = 120,
    .retry_after_max_s = RETRY_AFTER_MAX_S,
};

static uint64_t backoff_ms(unsigned failures, long retry_after)
{
    return backoff_delay(&delivery_backoff, failures, retry_after);
}

/*
 * Takes q out of ob->q for good: a request in flight is cancelled, what is queued is
 * dead-lettered with reason, and its timer is closed (the memory goes in on_queue_closed()).
 * Its conf_sink is not used once this returns. A group it probed for gets another prober.
 */
static void remove_queue(struct outbox *ob, struct queue *q, const char *reason)
{
    struct group *g = q->grp;
    size_t i = 0;

    if (q->xfer)
        http_cancel(q->xfer);
    q->xfer = NULL;
    sink_request_fini(&q->req);
    while (q->head)
        dead_letter(q, reason);
    while (i < ob->n && ob->q[i] != q)
        i++;
    memmove(&ob->q[i], &ob->q[i + 1], (ob->n - i - 1) * sizeof(ob->q[0]));
    ob->n--;
    queue_close(q);
    if (g && g->prober == q) {
        /* Another member with something queued takes over, on the same schedule. */
        g->prober = NULL;
        for (size_t k = 0; k < ob->n && !g->prober; k++) {
            if (ob->q[k]->grp == g)
                kick(ob->q[k]);
        }
    }
}

/* q's credential is refused: hold the whole group, q probing for it unless one already does. */
static void group_break(struct outbox *ob, struct queue *q, const char *why)
{
    struct group *g = q->grp;
    int first = !g->broken;
    size_t held = 0;

    snprintf(g->reason, sizeof(g->reason), "%s", why);
    g->broken = 1;
    if (!g->prober || g->prober == q) {
        g->prober = q;
        g->next_probe_ms = uv_now(ob->loop) + BROKEN_PROBE_MS;
        snprintf(q->reason, sizeof(q->reason), "%s", why);
        if (!ob->stopping)
            wait_for(q, Q_BROKEN, BROKEN_PROBE_MS);
        else
            q->state = Q_BROKEN;
    } else {
        hold(q);
    }
    for (size_t i = 0; i < ob->n; i++) {
        struct queue *m = ob->q[i];
        if (m->grp != g)
            continue;
        held += m->depth;
        /* A member in flight is held by kick() once its answer is in. */
        if (m != g->prober && m->state != Q_INFLIGHT)
            hold(m);
    }
    if (!first)
        return;
    log_err("outbox",
            "sink group %s is broken (%s): holding its %zu queued message%s, next try in an "
            "hour",
            g->name, why, held, held == 1 ? "" : "s");
    if (ob->alert_cb)
        ob->alert_cb(ob->alert_ud, g->name, 1, why);
}

/* A member of the broken group g delivered: the credential works, every member resumes. */
static void group_recover(struct outbox *ob, struct group *g)
{
    g->broken = 0;
    g->prober = NULL;
    for (size_t i = 0; i < ob->n; i++) {
        struct queue *m = ob->q[i];
        if (m->grp == g && (m->state == Q_HELD || m->state == Q_BROKEN)) {
            uv_timer_stop(&m->timer);
            m->state = Q_IDLE;
            m->reason[0] = '\0';
        }
    }
    log_info("outbox", "sink group %s: works again", g->name);
    if (ob->alert_cb)
        ob->alert_cb(ob->alert_ud, g->name, 0, "");
    /* The alert may have added or removed queues: ob->q is read again. */
    for (size_t i = 0; i < ob->n; i++) {
        if (ob->q[i]->grp == g)
            kick(ob->q[i]);
    }
}

static void on_answer(void *userdata, const struct http_response *res)
{
    struct queue *q = userdata;
    struct outbox *ob = q->ob;
    char why[256];
    long retry_after;
    enum sink_verdict v;

    q->xfer = NULL;
    q->state = Q_IDLE;
    /* Counting from the answer, not the request, keeps arrivals a full interval apart even
     * when a request is slow to connect; from the time it really is, not the loop's cached
     * time, which lags behind on a busy loop and would let two posts come closer. */
    uv_update_time(ob->loop);
    q->last_done_ms = uv_now(ob->loop);
    sink_request_fini(&q->req);
    v = sink_classify(&q->sink, res, &retry_after, why, sizeof(why));
    /* Only subscriptions are suspended; anything else that says so is broken (sink.h). */
    if (v == SINK_SUSPEND && !q->sink.conf->subscription)
        v = SINK_BROKEN;
    switch (v) {
    case SINK_DELIVERED:
        log_debug("outbox", "sink %s: delivered %s (%s)", q->sink.conf->name, q->head->id,
                  q->head->event);
        count(q, "delivered");
        q->failures = 0;
        q->reason[0] = '\0';
        pop(q, "delivered");
        if (q->grp && q->grp->broken) {
            group_recover(ob, q->grp);
        } else if (q->broken_announced) {
            q->broken_announced = 0;
            log_info("outbox", "sink %s: works again", q->sink.conf->name);
            if (ob->alert_cb)
                ob->alert_cb(ob->alert_ud, q->sink.conf->name, 0, "");
        }
        break;
    case SINK_AGAIN:
        break;
    case SINK_RETRY: {
        uint64_t d = backoff_ms(++q->failures, retry_after);
        count(q, "retried");
        snprintf(q->reason, sizeof(q->reason), "%s", why);
        if (q->failures == 1)
            log_warn("outbox", "sink %s: %s; retrying in %.1f s", q->sink.conf->name, why,
                     (double)d / 1000.0);
        else
            log_debug("outbox", "sink %s: %s (attempt %u); retrying in %.1f s", q->sink.conf->name,
                      why, q->failures, (double)d / 1000.0);
        if (!ob->stopping)
            wait_for(q, Q_BACKOFF, d);
        else
            q->state = Q_BACKOFF;
        break;
    }
    case SINK_DEAD:
        dead_letter(q, why);
        break;
    case SINK_SUSPEND: {
        const struct conf_sink *cs = q->sink.conf;
        log_warn("outbox",
                 "sink %s: its target is gone (%s): removed, %zu queued message%s "
                 "dead-lettered",
                 cs->name, why, q->depth, q->depth == 1 ? "" : "s");
        remove_queue(ob, q, why);
        /* q is gone; cs is the caller's until its callback frees it. */
        if (ob->gone_cb)
            ob->gone_cb(ob->gone_ud, cs->name, why);
        check_settled(ob);
        return;
    }
    case SINK_BROKEN:
        if (q->grp) {
            group_break(ob, q, why);
            break;
        }
        snprintf(q->reason, sizeof(q->reason), "%s", why);
        log_err("outbox",
                "sink %s is broken (%s): holding its %zu queued message%s, next try "
                "in an hour",
                q->sink.conf->name, why, q->depth, q->depth == 1 ? "" : "s");
        /* The state first: the alert queues messages, which kicks every queue. */
        if (!ob->stopping)
            wait_for(q, Q_BROKEN, BROKEN_PROBE_MS);
        else
            q->state = Q_BROKEN;
        if (!q->broken_announced) {
            q->broken_announced = 1;
            if (ob->alert_cb)
                ob->alert_cb(ob->alert_ud, q->sink.conf->name, 1, why);
        }
        break;
    }
    /* An alert callback may have removed q (its memory lasts until the loop closes it). */
    if (!q->removed)
        kick(q);
    check_settled(ob);
}

static void send_head(struct queue *q)
{
    struct outbox *ob = q->ob;
    const char *headers[7];
    struct http_request hr = {0};
    int r = sink_request(&q->sink, q->head, &q->req);

    if (r) {
        log_err("outbox", "sink %s: cannot build a request: %s", q->sink.conf->name, strerror(-r));
        wait_for(q, Q_BACKOFF, backoff_ms(++q->failures, -1));
        return;
    }
    size_t i = 0;
    for (; q->req.headers[i]; i++)
        headers[i] = q->req.headers[i];
    headers[i] = NULL;
    hr.method = q->req.method;
    hr.url = q->req.url;
    hr.headers = headers;
    hr.body = q->req.body;
    hr.body_len = q->req.body_len;
    hr.timeout_ms = REQUEST_TIMEOUT_MS;
    hr.max_body = ANSWER_MAX;
    hr.truncate = 1; /* a delivered message must not be resent because the answer was long */
    r = http_start(ob->http, &hr, on_answer, q, &q->xfer);
    if (r) {
        sink_request_fini(&q->req);
        log_err("outbox", "sink %s: cannot start a request: %s", q->sink.conf->name, strerror(-r));
        wait_for(q, Q_BACKOFF, backoff_ms(++q->failures, -1));
        return;
    }
    q->state = Q_INFLIGHT;
}

/*
 * Takes q's head out when it is too old to be sent: a chat reply after REPLY_MAX_AGE_S (dropped),
 * anything else after notify.max_age (dead-lettered). Returns 1 when it did.
 */
static int expire_head(struct queue *q)
{
    struct outbox_entry *e = q->head;
    int64_t age = (int64_t)time(NULL) - e->created;

    if (e->transient && age > REPLY_MAX_AGE_S) {
        log_warn("outbox", "sink %s: reply %s dropped: still undelivered after %lld s",
                 q->sink.conf->name, e->id, (long long)age);
        pop(q, "dead");
        return 1;
    }
    if (age > q->ob->conf->notify.max_age) {
        char why[96];
        snprintf(why, sizeof(why), "older than notify.max_age (%lld s)", (long long)age);
        dead_letter(q, why);
        return 1;
    }
    return 0;
}

/*
 * A member of a broken group that is not its prober: held, or the prober when there is none
 * and it has something to send (on the group's schedule: a probe at most hourly).
 */
static void kick_held(struct queue *q)
{
    struct outbox *ob = q->ob;
    struct group *g = q->grp;

    if (q->state == Q_INFLIGHT)
        return; /* its answer decides */
    /* Held is no reason to keep what is too old to be sent anyway (the journal would grow). */
    while (q->head && !ob->stopping && expire_head(q))
        ;
    if (!g->prober && q->head && !ob->stopping) {
        uint64_t now = uv_now(ob->loop);
        g->prober = q;
        snprintf(q->reason, sizeof(q->reason), "%s", g->reason);
        wait_for(q, Q_BROKEN, g->next_probe_ms > now ? g->next_probe_ms - now : 0);
        return;
    }
    if (q->state != Q_HELD)
        hold(q);
}

static void kick(struct queue *q)
{
    struct outbox *ob = q->ob;
    struct group *g = q->grp;

    if (g && g->broken && g->prober != q) {
        kick_held(q);
        return;
    }
    while (q->state == Q_IDLE && q->head && !ob->stopping) {
        struct outbox_entry *e = q->head;
        char held[600];
        /* Nothing is sent that could not be recorded as done: a leader whose lease may have
         * run out (a paused process) must not post what the new leader posts too (state.h). */
        if (ob->st && state_check(ob->st, held, sizeof(held)) != 0) {
            log_debug("outbox", "sink %s: holding %s: %s", q->sink.conf->name, e->id, held);
            wait_for(q, Q_BACKOFF, HOLD_MS);
            return;
        }
        if (expire_head(q))
            continue;
        if (q->sink.conf->type == CONF_SINK_STDOUT) {
            fputs(e->body, stdout);
            fputc('\n', stdout);
            fflush(stdout);
            count(q, "delivered");
            pop(q, "delivered");
            continue;
        }
        uint64_t now = uv_now(ob->loop), pace = sink_pace_ms(&q->sink);
        if (q->last_done_ms && pace && now < q->last_done_ms + pace) {
            wait_for(q, Q_PACING, q->last_done_ms + pace - now);
            return;
        }
        send_head(q);
    }
    if (g && g->broken && g->prober == q && !q->head) {
        /* The prober ran out of messages before an answer said anything about the credential:
         * it waits with the others, and a member with something queued probes instead. */
        g->prober = NULL;
        hold(q);
        for (size_t i = 0; i < ob->n && !g->prober; i++) {
            if (ob->q[i]->grp == g && ob->q[i] != q)
                kick(ob->q[i]);
        }
    }
}

void outbox_push(struct outbox *ob, struct outbox_entry *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct outbox_entry *e = v[i];
        struct queue *q = find_queue(ob, e->sink);
        e->next = NULL;
        if (!q) {
            /* A sink removed from the configuration: its messages have nowhere to go. */
            log_err("outbox",
                    "message %s is for sink \"%s\", which is not configured: "
                    "dead-lettered",
                    e->id, e->sink);
            if (ob->st && !e->transient) {
                struct journal_record rec = record_of(e);
                state_deadletter(ob->st, &rec, "sink not configured");
                state_journal_done(ob->st, e->id, "dead");
            }
            outbox_entry_free(e);
            continue;
        }
        if (q->tail)
            q->tail->next = e;
        else
            q->head = e;
        q->tail = e;
        q->depth++;
    }
    for (size_t i = 0; i < ob->n; i++)
        kick(ob->q[i]);
    check_settled(ob);
}

static void on_grace_over(uv_timer_t *t)
{
    struct outbox *ob = t->data;
    for (size_t i = 0; i < ob->n; i++) {
        struct queue *q = ob->q[i];
        if (q->xfer) {
            log_warn("outbox",
                     "sink %s: giving up on a request in flight at shutdown; the "
                     "message stays queued",
                     q->sink.conf->name);
            http_cancel(q->xfer);
            q->xfer = NULL;
            sink_request_fini(&q->req);
            q->state = Q_IDLE;
        }
    }
    check_settled(ob);
}

void outbox_shutdown(struct outbox *ob, uint64_t grace_ms, outbox_settled_cb cb, void *userdata)
{
    ob->stopping = 1;
    ob->shutdown_cb = cb;
    ob->shutdown_ud = userdata;
    for (size_t i = 0; i < ob->n; i++) {
        struct queue *q = ob->q[i];
        if (q->state != Q_INFLIGHT) {
            uv_timer_stop(&q->timer);
            if (q->state == Q_PACING)
                q->state = Q_IDLE;
        }
    }
    uv_timer_init(ob->loop, &ob->grace);
    ob->grace.data = ob;
    ob->grace_live = 1;
    ob->open_handles++;
    uv_timer_start(&ob->grace, on_grace_over, grace_ms, 0);
    check_settled(ob);
}

int outbox_add_sink(struct outbox *ob, const struct conf_sink *s)
{
    int r = queue_add(ob, s);
    if (r)
        return r;
    kick(ob->q[ob->n - 1]);
    return 0;
}

int outbox_remove_sink(struct outbox *ob, const char *name, const char *reason)
{
    struct queue *q = find_queue(ob, name);
    if (!q)
        return -ENOENT;
    log_info("outbox", "sink %s: removed (%s), %zu queued message%s dead-lettered", name, reason,
             q->depth, q->depth == 1 ? "" : "s");
    remove_queue(ob, q, reason);
    check_settled(ob);
    return 0;
}

size_t outbox_status(const struct outbox *ob, struct outbox_sink_status *v, size_t max)
{
    for (size_t i = 0; i < ob->n && i < max; i++) {
        const struct queue *q = ob->q[i];
        v[i] = (struct outbox_sink_status){
            .name = q->sink.conf->name,
            .conf = q->sink.conf,
            .depth = q->depth,
            .broken = q->state == Q_BROKEN || q->state == Q_HELD || q->broken_announced ||
                      (q->grp && q->grp->broken),
            .reason = q->reason,
            .delivered = q->delivered,
            .retried = q->retried,
            .dead = q->dead,
        };
    }
    return ob->n;
}
