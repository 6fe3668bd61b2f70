/*
 * The poll cycle (README, "How it decides what changed" and "Delivery").
 *
 * Invariants: only a complete poll reaches the diff; a poll's messages are rendered, written
 * to the outbox journal and then committed together with the new snapshot (its rename is the
 * commit point, state.h), and only then handed to the outbox, so a crash anywhere neither
 * loses nor repeats an announcement; failures (of a poll, or of the commit after it) back off
 * exponentially with jitter, capped at the poll interval, and honour the server's Retry-After;
 * an error is logged when the failure changes, not on every retry. Every commit attempt takes a
 * generation of its own (next_gen): one that failed is never reused (state.c says why that
 * matters). A failure that needs a person raises one alert, and its end one more. A state
 * directory deleted or replaced under us stops the bridge: nothing written after that would be
 * read again.
 */
#include "bridge.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/random.h>

#include <jansson.h>

#include "config.h"

#include "announce.h"
#include "backoff.h"
#include "chat_subs.h"
#include "command.h"
#include "command_index.h"
#include "metrics.h"
#include "http.h"
#include "log.h"
#include "matrix_sync.h"
#include "outbox.h"
#include "slack_socket.h"
#include "project.h"
#include "state.h"
#include "youtrack.h"

#define BACKOFF_FIRST_MS  2000u
#define RETRY_AFTER_MAX_S 86400L /* http.c cuts Retry-After there too */

struct bridge {
    uv_loop_t *loop;
    const struct conf *conf;
    struct bridge_opts opts;
    struct http *http;
    struct youtrack *yt;
    struct state *state; /* NULL with dry_run */
    uv_timer_t timer;
    int timer_live;
    int stopping;
    int exit_code;
    struct snapshot snap;
    struct command_index *index; /* snap's, for chat commands (index_snapshot()); NULL: none */
    int have_snapshot;           /* a usable snapshot was loaded or committed */
    int force_baseline; /* the snapshot was corrupt: never flood, whatever first_run says */
    unsigned failures;  /* consecutive failed attempts (poll or commit): the back-off's step */
    uint64_t next_gen;  /* the next commit attempt's generation; only ever grows */
    char last_error[600];
    struct outbox *outbox;
    enum youtrack_error fail_class; /* the last failed poll's class, and how many in a row */
    unsigned fail_run;
    unsigned alerted; /* bit i: poll_alerts[i] went out; the next complete poll resolves it */
    int state_lost;   /* the state directory is gone: stopping, never ready again */
    unsigned alert_seq;
    int64_t started_at;
    int64_t last_poll_ok;       /* unix seconds of the last complete poll; 0: none yet */
    struct slack_socket *slack; /* chat.slack, when configured (not in one-shot runs) */
    struct matrix_sync *matrix; /* chat.matrix, likewise */
    struct chat_subs *subs;     /* the chat subscriptions and their sinks */
    int stop_waits;             /* parts still stopping before the teardown */
    void (*stopped_cb)(void *);
    void *stopped_ud;
};

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

static void on_sink_alert(void *userdata, const char *sink, int broken, const char *reason);
static void on_sink_gone(void *userdata, const char *sink, const char *reason);
static void chat_alert(void *userdata, const char *kind, const char *text);
static void answer_later(void *userdata, uint64_t ticket, const char *payload);

/*
 * Builds the chat commands' index of b->snap anew, whenever b->snap changes (load, commit): it
 * is never patched, so it cannot disagree with the snapshot. Only a daemon that answers chat
 * needs one (about 90 bytes per project). Without one (ENOMEM) each command builds its own:
 * slower, same answer.
 */
static void index_snapshot(struct bridge *b)
{
    uint64_t t0 = uv_hrtime();

    command_index_free(b->index);
    b->index = NULL;
    if (b->opts.once || (!b->conf->chat.slack.enabled && !b->conf->chat.matrix.enabled))
        return; /* as start_chat(): nobody asks */
    if (command_index_new(&b->index, &b->snap.projects) != 0) {
        log_warn("bridge", "out of memory indexing %zu projects for chat commands",
                 b->snap.projects.n);
        return;
    }
    size_t n = command_index_count(b->index);
    log_debug("bridge", "chat command index: %zu project%s, %zu KiB, built in %.1f ms", n,
              n == 1 ? "" : "s", command_index_bytes(b->index) / 1024,
              (double)(uv_hrtime() - t0) / 1e6);
}
static int start_chat(struct bridge *b, char *err, size_t errlen);
static void enqueue(struct bridge *b, struct announce_batch *batch);

/*
 * Opens the state directory (not in a dry run) and loads the last snapshot into b->snap. A
 * corrupt one means a first run that announces nothing. Returns 0 or -errno (err filled).
 */
static int load_snapshot(struct bridge *b, char *err, size_t errlen)
{
    int r;

    if (b->opts.etcd) {
        /* A dry run reads the state the leader committed, without the lead. */
        r = state_open_etcd(&b->state, b->opts.etcd, b->opts.etcd_prefix, b->opts.lease,
                            b->opts.dry_run ? STATE_OPEN_READONLY : 0, err, errlen);
        if (r)
            return r;
    } else if (!b->opts.dry_run) {
        r = state_open(&b->state, b->conf->state_dir, err, errlen);
        if (r)
            return r;
    }
    r = state_load(b->state, b->opts.etcd ? b->opts.etcd_prefix : b->conf->state_dir, &b->snap, err,
                   errlen);
    if (r < 0)
        return r;
    b->force_baseline = r == STATE_CORRUPT;
    if (r == STATE_CORRUPT)
        log_err("state", "%s; starting over as a first run (nothing will be announced as new)",
                err);
    b->have_snapshot = r == STATE_LOADED;
    /* Lines above the committed generation are dropped by state_journal_load() below before
     * anything is appended, so the numbers after it are free again (state.c). */
    b->next_gen = b->snap.generation + 1;
    if (b->have_snapshot)
        log_info("state", "loaded snapshot: %zu project%s from %s", b->snap.projects.n,
                 b->snap.projects.n == 1 ? "" : "s",
                 b->snap.youtrack ? b->snap.youtrack : "(unknown)");
    metrics_projects(b->snap.projects.n);
    index_snapshot(b);
    err[0] = '\0';
    return 0;
}

/* A new lineage: ids must not collide with those of a wiped state directory. 0 or -EIO. */
static int new_epoch(struct bridge *b, char *err, size_t errlen)
{
    uint8_t rnd[8];

    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        snprintf(err, errlen, "cannot read random bytes: %s", strerror(errno));
        return -EIO;
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(b->snap.epoch + 2 * i, 3, "%02x", rnd[i]);
    return 0;
}

/*
 * Hands the messages still queued in the journal from the last run to the outbox. Without a
 * usable snapshot no generation is known to be committed: every queued message is kept and
 * re-filed under generation 0 of the new lineage, and the next poll is a baseline, so none is
 * announced twice. Returns 0 or -errno (err filled).
 */
static int requeue_journal(struct bridge *b, char *err, size_t errlen)
{
    struct outbox_entry *pending = NULL;
    struct announce_batch kept = {0};
    int r;

    /*
     * Without a usable snapshot no generation is known to be committed: every queued message is
     * kept and re-filed under generation 0 of the new lineage, and the next poll is a baseline,
     * so none is announced twice.
     */
    r = outbox_journal_load(b->state, b->have_snapshot ? b->snap.generation : UINT64_MAX, &pending,
                            err, errlen);
    if (r)
        return r;
    for (struct outbox_entry *e = pending; e; e = e->next)
        kept.n++;
    kept.v = calloc(kept.n ? kept.n : 1, sizeof(*kept.v));
    if (!kept.v) {
        snprintf(err, errlen, "out of memory");
        while (pending) {
            struct outbox_entry *e = pending;
            pending = e->next;
            outbox_entry_free(e);
        }
        return -ENOMEM;
    }
    kept.n = 0;
    for (struct outbox_entry *e = pending; e; e = e->next)
        kept.v[kept.n++] = e;
    if (!b->have_snapshot && kept.n) {
        for (size_t i = 0; i < kept.n; i++)
            kept.v[i]->gen = 0;
        /* Not a first run but a lost state: a baseline, whatever first_run says. */
        b->force_baseline = 1;
        log_warn("outbox",
                 "the snapshot is gone but %zu message%s still queued: kept (and the next poll "
                 "is a baseline)",
                 kept.n, kept.n == 1 ? " is" : "s are");
        struct journal_record *recs = NULL;
        r = outbox_records(kept.v, kept.n, &recs);
        if (!r)
            r = state_journal_compact(b->state, recs, kept.n);
        free(recs);
        if (r) {
            snprintf(err, errlen, "cannot rewrite the outbox journal: %s", strerror(-r));
            announce_batch_fini(&kept);
            return r;
        }
    }
    if (kept.n)
        log_info("outbox", "%zu message%s still queued from the last run", kept.n,
                 kept.n == 1 ? "" : "s");
    enqueue(b, &kept);
    announce_batch_fini(&kept);
    return 0;
}

/* The steps: the snapshot, the HTTP client and poller, the outbox and its queue, the chat. */
int bridge_new(struct bridge **out, uv_loop_t *loop, const struct conf *conf,
               const struct bridge_opts *opts, char *err, size_t errlen)
{
    struct bridge *b = calloc(1, sizeof(*b));
    int r;

    if (!b)
        return -ENOMEM;
    b->loop = loop;
    b->conf = conf;
    b->opts = *opts;
    if (b->opts.dry_run)
        b->opts.once = 1;
    b->exit_code = 1;
    /* The process's start, not this bridge's: a reload makes a new bridge. */
    static int64_t process_started;
    if (!process_started)
        process_started = now_s();
    b->started_at = process_started;
    r = load_snapshot(b, err, errlen);
    if (r)
        goto fail;
    r = http_new(&b->http, loop);
    if (r) {
        snprintf(err, errlen, "cannot start the HTTP client");
        goto fail;
    }
    r = youtrack_new(&b->yt, b->http, conf);
    if (r) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (!b->snap.epoch[0]) {
        r = new_epoch(b, err, errlen);
        if (r)
            goto fail;
    }
    r = outbox_new(&b->outbox, loop, b->http, b->state, conf);
    if (r) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    outbox_set_alert_cb(b->outbox, on_sink_alert, b);
    outbox_set_gone_cb(b->outbox, on_sink_gone, b);
    /* Before the journal's entries are queued: those for a subscribed channel need its queue. */
    struct chat_subs_hooks sh = {.alert = chat_alert, .answer_later = answer_later, .userdata = b};
    r = chat_subs_new(&b->subs, conf, b->state, b->outbox, b->http, &sh, err, errlen);
    if (r)
        goto fail;
    if (b->state) {
        r = requeue_journal(b, err, errlen);
        if (r)
            goto fail;
    }
    r = start_chat(b, err, errlen);
    if (r)
        goto fail;
    uv_timer_init(loop, &b->timer);
    b->timer.data = b;
    b->timer_live = 1;
    *out = b;
    return 0;
fail:
    bridge_free(b);
    return r;
}

/* A dry run shows what each sink would receive, and sends nothing. */
static void print_dry_run(const struct bridge *b, const struct announce_batch *batch)
{
    for (size_t i = 0; i < batch->n; i++) {
        const struct outbox_entry *e = batch->v[i];
        const struct conf_sink *s = conf_find_sink(b->conf, e->sink);
        if (s && s->type == CONF_SINK_STDOUT)
            printf("%s\n", e->body);
        else
            printf("[dry run] %s (%s): %s\n", e->sink, s ? conf_sink_type_name(s->type) : "?",
                   e->body);
    }
    fflush(stdout);
}

/* Hands a durable batch to the outbox (it takes the entries). */
static void enqueue(struct bridge *b, struct announce_batch *batch)
{
    outbox_push(b->outbox, batch->v, batch->n);
    batch->n = 0;
}

/*
 * Queues an alert outside a poll's commit: written to the journal under the generation that is
 * already committed, so it survives a restart as it is.
 */
static void raise_alert(struct bridge *b, const char *kind, const char *text, const char *skip)
{
    struct announce_batch batch = {0};
    struct journal_record *recs = NULL;
    char tag[48], err[256];
    int r;
    struct announce a = {
        .conf = b->conf,
        .flavour = youtrack_flavour(b->yt),
        .now = now_s(),
        .epoch = b->snap.epoch,
        .gen = b->snap.generation,
        .tag = tag,
    };

    snprintf(tag, sizeof(tag), "a%lld.%u.", (long long)now_s(), ++b->alert_seq);
    if (announce_alert(&a, kind, 0, text, skip, &batch) != 0) {
        log_err("bridge", "out of memory queueing an alert");
        goto out;
    }
    if (b->opts.dry_run) {
        print_dry_run(b, &batch);
        goto out;
    }
    r = outbox_records(batch.v, batch.n, &recs);
    if (r)
        snprintf(err, sizeof(err), "out of memory");
    else
        r = state_journal_add(b->state, recs, batch.n, err, sizeof(err));
    free(recs);
    if (r) {
        log_err("bridge", "%s; alert not queued: %s", err, text);
        goto out;
    }
    enqueue(b, &batch);
out:
    announce_batch_fini(&batch);
}

static void on_sink_alert(void *userdata, const char *sink, int broken, const char *reason)
{
    struct bridge *b = userdata;
    char text[512];

    if (chat_subs_is_group(sink)) {
        /* Every subscribed channel of a platform at once: its credential is refused. */
        if (broken)
            snprintf(text, sizeof(text),
                     "the %s is refused (%s): every subscribed channel it posts to is held, its "
                     "messages are kept and it is retried hourly",
                     sink, reason);
        else
            snprintf(text, sizeof(text), "the %s works again: subscribed channels get messages",
                     sink);
        raise_alert(b, broken ? "subscriptions_broken" : "subscriptions_recovered", text, NULL);
        return;
    }
    if (broken)
        snprintf(text, sizeof(text),
                 "sink %s stopped accepting messages (%s); its messages are kept and it is "
                 "retried hourly",
                 sink, reason);
    else
        snprintf(text, sizeof(text), "sink %s accepts messages again", sink);
    raise_alert(b, broken ? "sink_broken" : "sink_recovered", text, sink);
}

static void on_sink_gone(void *userdata, const char *sink, const char *reason)
{
    struct bridge *b = userdata;
    chat_subs_gone(b->subs, sink, reason);
}

static void schedule(struct bridge *b, uint64_t delay_ms);
static void settle_then_stop(struct bridge *b);

static void on_timer(uv_timer_t *t);

/*
 * Exponential back-off with +-20% jitter, capped at the poll interval (a failing YouTrack is
 * tried at least as often as a working one); the server's Retry-After beats the cap.
 */
static uint64_t backoff_ms(const struct bridge *b, long retry_after)
{
    const struct backoff poll_backoff = {
        .first_ms = BACKOFF_FIRST_MS,
        .cap_ms = (uint64_t)b->conf->youtrack.poll_interval * 1000u,
        .jitter_min_pct = 80,
        .jitter_max_pct = 120,
        .retry_after_max_s = RETRY_AFTER_MAX_S,
    };
    return backoff_delay(&poll_backoff, b->failures, retry_after);
}

/*
 * Failures that do not go away by themselves: after `after` failed polls in a row of that class
 * the operator is told once (kind), and once more (ok_kind) by the next complete poll.
 */
static const struct poll_alert {
    enum youtrack_error error;
    unsigned after;
    const char *kind, *ok_kind;
    const char *what, *ok_text;
} poll_alerts[] = {
    {YOUTRACK_ERR_AUTH, 1, "youtrack_auth", "youtrack_auth_ok",
     "YouTrack refuses the bridge's service account",
     "YouTrack accepts the bridge's service account again"},
    /* Invalid UTF-8 in a project, HTML from a proxy, a changed API: every poll fails alike. A few
     * in a row rule out a one-off (a proxy restarting). */
    {YOUTRACK_ERR_PROTOCOL, 3, "youtrack_protocol", "youtrack_protocol_ok",
     "YouTrack's answers cannot be used", "YouTrack's answers can be used again"},
};

#define N_POLL_ALERTS (sizeof(poll_alerts) / sizeof(poll_alerts[0]))

static void poll_alerts_on_failure(struct bridge *b, const struct youtrack_result *res)
{
    if (res->error == b->fail_class) {
        b->fail_run++;
    } else {
        b->fail_class = res->error;
        b->fail_run = 1;
    }
    for (size_t i = 0; i < N_POLL_ALERTS; i++) {
        const struct poll_alert *pa = &poll_alerts[i];
        char text[800], times[48] = "";
        if (pa->error != res->error || b->fail_run < pa->after || (b->alerted & (1u << i)))
            continue;
        if (pa->after > 1)
            snprintf(times, sizeof(times), ", %u polls in a row", b->fail_run);
        snprintf(text, sizeof(text), "%s (%s)%s; nothing can be announced until that is fixed",
                 pa->what, res->message, times);
        b->alerted |= 1u << i;
        raise_alert(b, pa->kind, text, NULL);
    }
}

static void poll_alerts_on_success(struct bridge *b)
{
    b->fail_class = YOUTRACK_OK;
    b->fail_run = 0;
    for (size_t i = 0; i < N_POLL_ALERTS; i++) {
        if (!(b->alerted & (1u << i)))
            continue;
        b->alerted &= ~(1u << i);
        raise_alert(b, poll_alerts[i].ok_kind, poll_alerts[i].ok_text, NULL);
    }
}

static void poll_failed(struct bridge *b, struct youtrack_result *res)
{
    char line[600];

    b->failures++;
    metrics_poll(youtrack_error_name(res->error), res->seconds, now_s());
    snprintf(line, sizeof(line), "%s: %s", youtrack_error_name(res->error), res->message);
    if (strcmp(line, b->last_error) != 0) {
        log_err("youtrack", "poll failed (%s); nothing announced, snapshot unchanged", line);
        snprintf(b->last_error, sizeof(b->last_error), "%s", line);
    } else {
        log_debug("youtrack", "poll failed again (%s)", line);
    }
    poll_alerts_on_failure(b, res);
    if (b->opts.once) {
        settle_then_stop(b);
        return;
    }
    uint64_t d = backoff_ms(b, res->retry_after);
    log_debug("youtrack", "next attempt in %.1f s", (double)d / 1000.0);
    schedule(b, d);
}

/*
 * Commits a poll under generation gen: the batch's journal lines and the snapshot (next) with
 * the announced changes added to its history, in one state_commit() (the snapshot's rename is
 * the commit point for both). Hands the previous snapshot to *old: the diff's changes point into
 * it until they are rendered. Returns 0 or -errno with err filled (the caller logs it).
 */
static int commit(struct bridge *b, uint64_t gen, struct project_list *next,
                  enum youtrack_flavour flavour, const struct change *changes, size_t n_changes,
                  struct announce_batch *batch, struct snapshot *old, char *err, size_t errlen)
{
    struct snapshot s = {.projects = *next, .flavour = flavour};
    struct journal_record *recs = NULL;
    int64_t now = now_s();
    int r;

    memcpy(s.epoch, b->snap.epoch, sizeof(s.epoch));
    s.generation = gen;
    s.youtrack = strdup(b->conf->youtrack.url);
    if (!s.youtrack) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* A copy: the current history must stay as it is if this commit fails. */
    if (snapshot_history_copy(&s, &b->snap) != 0 ||
        snapshot_history_add(&s, changes, n_changes, now) != 0) {
        snprintf(err, errlen, "out of memory recording the change history");
        r = -ENOMEM;
        goto fail;
    }
    r = outbox_records(batch->v, batch->n, &recs);
    if (r)
        snprintf(err, errlen, "out of memory");
    else {
        uint64_t t0 = uv_hrtime();
        r = state_commit(b->state, &s, recs, batch->n, now, err, errlen);
        if (!r)
            metrics_commit((double)(uv_hrtime() - t0) / 1e9);
    }
    free(recs);
    if (r)
        goto fail;
    *old = b->snap;
    b->snap = s;
    project_list_init(next);
    b->have_snapshot = 1;
    index_snapshot(b); /* before *old, which the previous index points into, is freed */
    return 0;
fail:
    project_list_init(&s.projects); /* next's, not ours to free */
    snapshot_fini(&s);
    return r;
}

/* A snapshot taken from another server or API flavour cannot be diffed: ids mean other things. */
static int snapshot_matches(const struct bridge *b, enum youtrack_flavour flavour)
{
    if (!b->have_snapshot)
        return 0;
    if (b->snap.youtrack && strcmp(b->snap.youtrack, b->conf->youtrack.url) != 0) {
        log_warn("state",
                 "the snapshot was taken from %s, not %s: starting over with a new baseline",
                 b->snap.youtrack, b->conf->youtrack.url);
        return 0;
    }
    if (b->snap.flavour != YOUTRACK_UNKNOWN && b->snap.flavour != flavour) {
        log_warn("state",
                 "the snapshot was taken with the %s API, this poll used %s (projects are keyed "
                 "differently): starting over with a new baseline",
                 youtrack_flavour_name(b->snap.flavour), youtrack_flavour_name(flavour));
        return 0;
    }
    return 1;
}

/* What the diff found besides changes: projects back, and removals still being confirmed. */
static void log_diff(const struct diff *d, int confirmations)
{
    if (d->n_reappeared)
        log_info("bridge", "%zu missing project%s came back; nothing announced", d->n_reappeared,
                 d->n_reappeared == 1 ? "" : "s");
    if (d->n_pending)
        log_info("bridge", "%zu project%s missing, waiting for %d consecutive polls to confirm",
                 d->n_pending, d->n_pending == 1 ? "" : "s", confirmations);
}

/*
 * Renders a poll's messages into batch, before the commit (the batch is committed with the
 * snapshot): its changes, or nothing for a baseline, and an alert for removals held back by
 * this poll. Returns 0 or -ENOMEM.
 */
static int render_poll(struct announce *a, const struct diff *d, int baseline,
                       struct announce_batch *batch)
{
    char text[256];
    int r;

    if (baseline) {
        log_info("bridge", "first run: now tracking %zu project%s (baseline, nothing announced)",
                 d->next.n, d->next.n == 1 ? "" : "s");
        r = announce_baseline(a, d->next.n, batch);
    } else {
        r = announce_changes(a, d->changes, d->n_changes, batch);
    }
    if (r || !d->n_held_new)
        return r;
    snprintf(text, sizeof(text),
             "%zu project%s disappeared from the service account's view at once; holding back",
             d->n_held_new, d->n_held_new == 1 ? "" : "s");
    log_warn("bridge",
             "%s (they stay held until they reappear or you run ytbridge --accept-removals)", text);
    return announce_alert(a, "removals_held", d->n_held_new, text, NULL, batch);
}

/*
 * Commits a rendered poll under gen and hands its messages to the outbox; a dry run prints
 * them instead, and a poll that changes nothing writes nothing. Hands the previous snapshot to
 * *old (see commit()). Returns 0, or -1 when the commit failed (logged once, in last_error).
 */
static int commit_poll(struct bridge *b, uint64_t gen, int first, int baseline, struct diff *d,
                       enum youtrack_flavour flavour, struct announce_batch *batch,
                       struct snapshot *old)
{
    char err[512], line[sizeof(b->last_error)];
    /* A baseline announces no change, and held removals are not in d->changes. */
    size_t n_announced = baseline ? 0 : d->n_changes;

    if (b->opts.dry_run) {
        print_dry_run(b, batch);
        return 0;
    }
    if (!first && batch->n == 0 && project_list_same(&b->snap.projects, &d->next)) {
        /* Nothing to say and nothing to remember: the snapshot on disk stays as it is. */
        log_debug("bridge", "no change; the snapshot is not rewritten");
        return 0;
    }
    b->next_gen = gen + 1; /* spent, committed or not */
    if (commit(b, gen, &d->next, flavour, d->changes, n_announced, batch, old, err, sizeof(err)) !=
        0) {
        snprintf(line, sizeof(line), "state: %s", err);
        if (strcmp(line, b->last_error) != 0) {
            log_err("state", "%s; nothing announced, will retry with back-off", err);
            snprintf(b->last_error, sizeof(b->last_error), "%s", line);
        } else {
            log_debug("state", "commit failed again (%s)", err);
        }
        return -1;
    }
    if (!baseline) {
        for (size_t i = 0; i < d->n_changes; i++)
            metrics_change(d->changes[i].kind);
    }
    metrics_projects(b->snap.projects.n);
    if (!baseline && d->n_changes)
        log_info("bridge", "%zu change%s detected, %zu message%s queued", d->n_changes,
                 d->n_changes == 1 ? "" : "s", batch->n, batch->n == 1 ? "" : "s");
    enqueue(b, batch);
    return 0;
}

/* A poll at now is complete and committed: the failures, and what they set, are over. */
static void poll_committed(struct bridge *b, int64_t now)
{
    if (b->failures)
        log_info("bridge", "poll and commit succeeded again after %u failed attempt%s", b->failures,
                 b->failures == 1 ? "" : "s");
    b->failures = 0;
    b->last_error[0] = '\0';
    b->last_poll_ok = now;       /* complete and committed */
    b->opts.accept_removals = 0; /* the confirmation covered this poll's removals */
    b->force_baseline = 0;
    b->exit_code = 0;
}

/* A complete poll could not be processed (out of memory) or committed: again, with back-off. */
static void poll_retry(struct bridge *b, int commit_failed)
{
    char err[512];

    if (!commit_failed)
        snprintf(b->last_error, sizeof(b->last_error),
                 "the poll's results could not be processed (out of memory); retrying");
    b->failures++;
    if (b->opts.once) {
        settle_then_stop(b);
        return;
    }
    /* A commit that failed because the directory is gone: say so now, not after a back-off. */
    schedule(b, b->state && state_check(b->state, err, sizeof(err)) != 0 ? 0 : backoff_ms(b, -1));
}

/* The steps: diff, render, commit, hand to the outbox; a failed step retries the poll. */
static void poll_succeeded(struct bridge *b, struct youtrack_result *res)
{
    struct diff d = {0};
    struct snapshot old = {0};
    struct project_list empty = {0};
    struct announce_batch batch = {0};
    int first = !snapshot_matches(b, res->flavour);
    /* A mismatched or corrupt snapshot means starting over, and starting over must not flood. */
    int baseline = first && (b->have_snapshot || b->force_baseline ||
                             b->conf->notify.first_run == CONF_FIRST_RUN_BASELINE);
    struct diff_opts o = {
        .removal_confirmations = b->conf->notify.removal_confirmations,
        .mass_removal_limit = b->conf->notify.mass_removal_limit,
        .accept_removals = b->opts.accept_removals,
        .now = now_s(),
    };
    /* This attempt's generation: its ids are rendered with it before the commit. */
    uint64_t gen = b->next_gen;
    struct announce a = {
        .conf = b->conf,
        .flavour = res->flavour,
        .now = o.now,
        .epoch = b->snap.epoch,
        .gen = gen,
        .tag = "",
    };
    int commit_failed = 0;

    a.extra = chat_subs_sinks(b->subs, &a.n_extra);

    metrics_poll("ok", res->seconds, o.now);
    log_debug("youtrack", "poll complete: %zu project%s, %zu request%s, %.2f s%s", res->projects.n,
              res->projects.n == 1 ? "" : "s", res->pages, res->pages == 1 ? "" : "s", res->seconds,
              res->duplicates ? " (overlapping pages de-duplicated)" : "");
    /* YouTrack works again, whatever becomes of the commit. The back-off (failures) continues
     * until the results are committed too: a commit that keeps failing must not retry every
     * BACKOFF_FIRST_MS. */
    poll_alerts_on_success(b);

    if (project_diff(first ? &empty : &b->snap.projects, &res->projects, &o, &d) != 0) {
        log_err("bridge", "out of memory computing the diff");
        goto retry;
    }
    log_diff(&d, o.removal_confirmations);
    if (render_poll(&a, &d, baseline, &batch) != 0) {
        log_err("bridge", "out of memory rendering the announcements");
        goto retry;
    }
    if (commit_poll(b, gen, first, baseline, &d, res->flavour, &batch, &old) != 0) {
        commit_failed = 1;
        goto retry;
    }
    poll_committed(b, o.now);
    announce_batch_fini(&batch);
    diff_fini(&d);
    snapshot_fini(&old);
    if (b->opts.once) {
        settle_then_stop(b);
        return;
    }
    schedule(b, (uint64_t)b->conf->youtrack.poll_interval * 1000u);
    return;
retry:
    announce_batch_fini(&batch);
    diff_fini(&d);
    poll_retry(b, commit_failed);
}

/*
 * The state directory was deleted or replaced: nothing written from now on would be read by
 * the next start. Say it once, turn /readyz red and stop; main exits non-zero so the
 * supervisor restarts us onto a fresh directory. In etcd: the lease is lost or may be, and main
 * hands the lead back to the election (cluster.h).
 */
static void state_lost(struct bridge *b, const char *why)
{
    if (b->opts.etcd)
        log_warn("state", "%s; this replica stops leading", why);
    else
        log_err("state", "%s; stopping: nothing written from now on would survive a restart", why);
    snprintf(b->last_error, sizeof(b->last_error), "%s", why);
    b->state_lost = 1;
    b->exit_code = 1;
    bridge_stop(b);
}

static void on_poll_done(void *userdata, struct youtrack_result *res)
{
    struct bridge *b = userdata;
    if (b->stopping)
        return;
    if (res->error == YOUTRACK_OK)
        poll_succeeded(b, res);
    else
        poll_failed(b, res);
}

static void on_timer(uv_timer_t *t)
{
    struct bridge *b = t->data;
    char err[600];

    /* Before every poll: at most one interval (or one back-off step) after the loss. */
    if (b->state && state_check(b->state, err, sizeof(err)) != 0) {
        state_lost(b, err);
        return;
    }
    int r = youtrack_poll(b->yt, on_poll_done, b);
    if (r == -EBUSY)
        return;
    if (r) {
        log_err("youtrack", "cannot start a poll: %s", strerror(-r));
        if (b->opts.once)
            bridge_stop(b);
        else
            schedule(b, backoff_ms(b, -1));
    }
}

static void schedule(struct bridge *b, uint64_t delay_ms)
{
    if (!b->stopping)
        uv_timer_start(&b->timer, on_timer, delay_ms, 0);
}

int bridge_start(struct bridge *b)
{
    schedule(b, 0);
    if (!b->opts.once)
        chat_subs_start(b->subs); /* the bot token's auth.test: for a daemon that answers */
    if (b->slack)
        slack_socket_start(b->slack);
    if (b->matrix)
        matrix_sync_start(b->matrix);
    return 0;
}

/* The last handle of the bridge is closed: only now may its owner free it. */
static void on_timer_closed(uv_handle_t *h)
{
    struct bridge *b = h->data;
    if (b->stopped_cb)
        b->stopped_cb(b->stopped_ud);
}

/* Runs from the loop, outside every HTTP, YouTrack and outbox callback, so it may free them. */
static void on_teardown(uv_timer_t *t)
{
    struct bridge *b = t->data;

    outbox_free(b->outbox);
    b->outbox = NULL;
    chat_subs_free(b->subs); /* its calls cancelled before the HTTP client goes */
    b->subs = NULL;
    slack_socket_free(b->slack);
    b->slack = NULL;
    matrix_sync_free(b->matrix);
    b->matrix = NULL;
    youtrack_free(b->yt);
    b->yt = NULL;
    http_free(b->http);
    b->http = NULL;
    uv_close((uv_handle_t *)&b->timer, on_timer_closed);
    b->timer_live = 0;
}

void bridge_on_stopped(struct bridge *b, void (*cb)(void *userdata), void *userdata)
{
    b->stopped_cb = cb;
    b->stopped_ud = userdata;
}

/*
 * The outbox's sinks (configured, chat reply and subscription ones) in *st (caller frees); their
 * number, 0 with *st NULL when there are none or memory ran out.
 */
static size_t sink_statuses(const struct bridge *b, struct outbox_sink_status **st)
{
    size_t n = b->outbox ? outbox_status(b->outbox, NULL, 0) : 0;

    *st = n ? calloc(n, sizeof(**st)) : NULL;
    if (!*st)
        return 0;
    return outbox_status(b->outbox, *st, n);
}

int bridge_readiness(const struct bridge *b, int64_t now, json_t **doc)
{
    struct outbox_sink_status *st;
    size_t n = sink_statuses(b, &st);
    json_t *checks = json_object();
    int64_t window = 2 * (int64_t)b->conf->youtrack.poll_interval;
    int ready = 1;
    char text[700];

    if (!checks) {
        free(st);
        return *doc = NULL, 0;
    }
    if (b->state_lost) {
        ready = 0;
        json_object_set_new(checks, "state", json_string(b->last_error));
    }
    /* YouTrack: a complete poll within two poll intervals. */
    if (b->last_poll_ok && now - b->last_poll_ok <= window && !b->last_error[0]) {
        snprintf(text, sizeof(text), "ok");
    } else {
        ready = 0;
        if (b->last_error[0])
            snprintf(text, sizeof(text), "%s", b->last_error);
        else if (b->last_poll_ok)
            snprintf(text, sizeof(text), "last complete poll %lld s ago",
                     (long long)(now - b->last_poll_ok));
        else
            snprintf(text, sizeof(text), "no complete poll yet");
    }
    json_object_set_new(checks, "youtrack", json_string(text));
    for (size_t i = 0; i < n; i++) {
        char key[96];
        if (st[i].conf && st[i].conf->subscription)
            continue; /* counted below: a channel gone is its users' news, not the operator's */
        snprintf(key, sizeof(key), "sink:%s", st[i].name);
        if (st[i].broken) {
            /* A chat room that refuses replies is alerted, but announcements still flow. */
            const struct conf_sink *cs = conf_find_sink(b->conf, st[i].name);
            if (!cs || !cs->chat_reply)
                ready = 0;
            snprintf(text, sizeof(text), "broken: %s", st[i].reason);
        } else {
            snprintf(text, sizeof(text), "ok");
        }
        json_object_set_new(checks, key, json_string(text));
    }
    for (int p = SUB_SLACK; p < SUB_PLATFORMS; p++) {
        struct chat_subs_count c = chat_subs_count(b->subs, (enum sub_platform)p);
        size_t held = 0;
        char key[48];
        if (!c.active && !c.suspended)
            continue;
        for (size_t i = 0; i < n; i++)
            held += st[i].conf && st[i].conf->subscription && st[i].broken &&
                    (st[i].conf->type == CONF_SINK_SLACK_BOT) == (p == SUB_SLACK);
        snprintf(key, sizeof(key), "subscriptions:%s", sub_platform_name((enum sub_platform)p));
        snprintf(text, sizeof(text), "%zu active, %zu suspended%s", c.active, c.suspended,
                 held ? ", held: the credential is refused" : "");
        json_object_set_new(checks, key, json_string(text));
    }
    free(st);
    if (b->slack) {
        if (!slack_socket_ready(b->slack, text, sizeof(text)))
            ready = 0;
        json_object_set_new(checks, "slack", json_string(text));
    }
    if (b->matrix) {
        if (!matrix_sync_ready(b->matrix, text, sizeof(text)))
            ready = 0;
        json_object_set_new(checks, "matrix", json_string(text));
    }
    *doc = json_pack("{s:b, s:o}", "ready", ready, "checks", checks);
    return ready;
}

char *bridge_metrics(const struct bridge *b, const struct metrics_cluster *cluster)
{
    struct outbox_sink_status *st;
    size_t n = sink_statuses(b, &st), k = 0, queued[SUB_PLATFORMS] = {0};
    struct metrics_sink *ms = calloc(n ? n : 1, sizeof(*ms));
    char *out = NULL;

    for (size_t i = 0; ms && i < n; i++) {
        const struct conf_sink *cs = st[i].conf;
        if (cs && cs->subscription) {
            /* One series per platform, not per channel: the cardinality stays bounded. */
            queued[cs->type == CONF_SINK_SLACK_BOT ? SUB_SLACK : SUB_MATRIX] += st[i].depth;
            continue;
        }
        ms[k++] = (struct metrics_sink){.name = st[i].name,
                                        .type = cs ? conf_sink_type_name(cs->type) : "unknown",
                                        .depth = st[i].depth,
                                        .broken = st[i].broken};
    }
    for (int p = SUB_SLACK; p < SUB_PLATFORMS; p++) {
        struct chat_subs_count c = chat_subs_count(b->subs, (enum sub_platform)p);
        metrics_subscriptions(sub_platform_name((enum sub_platform)p), c.active, c.suspended,
                              queued[p]);
    }
    if (ms)
        out = metrics_render(ms, k, b->started_at, cluster);
    free(ms);
    free(st);
    return out;
}

/* One part of the bridge has stopped; the last one starts the teardown. */
static void on_outbox_done(void *userdata)
{
    struct bridge *b = userdata;
    if (--b->stop_waits == 0 && b->timer_live)
        uv_timer_start(&b->timer, on_teardown, 0, 0);
}

static void on_settled(void *userdata)
{
    bridge_stop(userdata);
}

/* --once: deliver what is due now, then stop (what waits for a retry stays queued). */
static void settle_then_stop(struct bridge *b)
{
    uv_timer_stop(&b->timer);
    outbox_when_settled(b->outbox, on_settled, b);
}

void bridge_stop(struct bridge *b)
{
    if (!b || b->stopping)
        return;
    b->stopping = 1; /* a poll answer arriving before the teardown is dropped */
    if (!b->timer_live)
        return;
    uv_timer_stop(&b->timer);
    if (b->yt)
        youtrack_cancel(b->yt);
    b->stop_waits = 1;
    if (b->slack) {
        b->stop_waits++;
        slack_socket_stop(b->slack, on_outbox_done, b);
    }
    if (b->matrix) {
        b->stop_waits++;
        matrix_sync_stop(b->matrix, on_outbox_done, b);
    }
    /* In-flight deliveries get a bounded grace period; the rest stays queued on disk. */
    outbox_shutdown(b->outbox, (uint64_t)b->conf->notify.shutdown_grace * 1000u, on_outbox_done, b);
}

int bridge_exit_code(const struct bridge *b)
{
    return b->exit_code;
}

void bridge_free(struct bridge *b)
{
    if (!b)
        return;
    outbox_free(b->outbox);
    chat_subs_free(b->subs);
    slack_socket_free(b->slack);
    matrix_sync_free(b->matrix);
    youtrack_free(b->yt);
    http_free(b->http);
    command_index_free(b->index);
    snapshot_fini(&b->snap);
    state_close(b->state);
    free(b);
}

int bridge_command(const struct bridge *b, const char *text, size_t len,
                   enum command_platform platform, char **out)
{
    struct outbox_sink_status *st;
    size_t n = sink_statuses(b, &st), k = 0;
    struct command_sink *cs = calloc(n ? n : 1, sizeof(*cs));
    int r;

    if (!cs) {
        free(st);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const struct conf_sink *c = st[i].conf;
        if (c && c->subscription)
            continue; /* `subscriptions all` shows those */
        cs[k++] = (struct command_sink){.name = st[i].name,
                                        .type = c ? conf_sink_type_name(c->type) : "unknown",
                                        .depth = st[i].depth,
                                        .broken = st[i].broken,
                                        .reason = st[i].reason};
    }
    struct command_context ctx = {
        .projects = &b->snap.projects,
        .index = b->index,
        .history = b->snap.history,
        .n_history = b->snap.n_history,
        .service_url = b->conf->youtrack.url,
        .flavour = b->snap.flavour,
        .now = now_s(),
        .version = YTB_VERSION,
        .started_at = b->started_at,
        .last_poll_ok = b->last_poll_ok,
        .last_error = b->last_error,
        .sinks = cs,
        .n_sinks = k,
    };
    metrics_command(platform == COMMAND_MATRIX ? "matrix" : "slack", command_name(text, len));
    r = command_run(text, len, &ctx, platform, out);
    free(cs);
    free(st);
    return r;
}

void bridge_reply(struct bridge *b, struct outbox_entry *e)
{
    e->transient = 1;
    if (b->outbox && !b->stopping)
        outbox_push(b->outbox, &e, 1);
    else
        outbox_entry_free(e);
}

static int slack_answer(void *userdata, const struct slack_command *cmd, char **payload)
{
    struct bridge *b = userdata;
    int r = chat_subs_command(b->subs, SUB_SLACK, cmd->channel_id, cmd->user_id, cmd->text,
                              cmd->len, cmd->ticket, payload, NULL);
    return r == CHAT_SUBS_NOT_OURS ? bridge_command(b, cmd->text, cmd->len, COMMAND_SLACK, payload)
                                   : r;
}

static void answer_later(void *userdata, uint64_t ticket, const char *payload)
{
    struct bridge *b = userdata;
    if (b->slack)
        slack_socket_answer(b->slack, ticket, payload);
}

static void chat_alert(void *userdata, const char *kind, const char *text)
{
    raise_alert(userdata, kind, text, NULL);
}

static int matrix_answer(void *userdata, const char *room_id, const char *sender, const char *text,
                         size_t len, char **content, int *durable)
{
    struct bridge *b = userdata;
    /* The answer to a command that changed the state must outlive a crash (matrix_reply()). */
    int r = chat_subs_command(b->subs, SUB_MATRIX, room_id, sender, text, len, 0, content, durable);
    return r == CHAT_SUBS_NOT_OURS ? bridge_command(b, text, len, COMMAND_MATRIX, content) : r;
}

static void matrix_left(void *userdata, const char *room_id, const char *by)
{
    struct bridge *b = userdata;
    chat_subs_left(b->subs, SUB_MATRIX, room_id, by);
}

/*
 * A Matrix reply goes to the room's reply sink (conf_chat_matrix), not journaled; unless it is
 * durable (the answer to a subscription command that changed the state): then it is journaled like
 * an alert, under the generation already committed, before the /sync position moves past its
 * command, so a crash neither loses it nor, thanks to its txnId, doubles it.
 */
static void matrix_reply(void *userdata, const char *room_id, const char *txn_id,
                         const char *content, int durable)
{
    struct bridge *b = userdata;
    struct outbox_entry *e;
    char sink[300], err[256];

    snprintf(sink, sizeof(sink), "chat:%s", room_id);
    e = outbox_entry_new(txn_id, sink, "reply", content, now_s(), b->snap.generation);
    if (!e) {
        log_err("bridge", "out of memory queueing a reply in %s", room_id);
        return;
    }
    if (durable && b->state && !b->stopping) {
        struct journal_record *rec = NULL;
        int r = outbox_records(&e, 1, &rec);
        if (!r)
            r = state_journal_add(b->state, rec, 1, err, sizeof(err));
        else
            snprintf(err, sizeof(err), "out of memory");
        free(rec);
        if (!r) {
            outbox_push(b->outbox, &e, 1);
            return;
        }
        log_err("bridge",
                "%s: the answer to a subscription command is not journaled (%s); it is "
                "lost if the bridge stops before it is sent",
                room_id, err);
    }
    bridge_reply(b, e);
}

/* The chat listeners, for a daemon (one-shot runs answer nobody). */
static int start_chat(struct bridge *b, char *err, size_t errlen)
{
    if (b->opts.once)
        return 0;
    if (b->conf->chat.slack.enabled) {
        struct slack_socket_hooks h = {.answer = slack_answer, .alert = chat_alert, .userdata = b};
        int r = slack_socket_new(&b->slack, b->loop, &b->conf->chat.slack, &h, err, errlen);
        if (r)
            return r;
    }
    if (b->conf->chat.matrix.enabled) {
        struct matrix_sync_hooks h = {.answer = matrix_answer,
                                      .reply = matrix_reply,
                                      .left = matrix_left,
                                      .alert = chat_alert,
                                      .userdata = b};
        int r =
            matrix_sync_new(&b->matrix, b->loop, &b->conf->chat.matrix, b->state, &h, err, errlen);
        if (r)
            return r;
    }
    return 0;
}
