/*
 * The poll cycle (DESIGN.md, "How data flows").
 *
 * Invariants: only a complete poll reaches the diff; the new snapshot is committed before any
 * message about it goes out, so a failing disk cannot turn one change into an announcement per
 * poll (the window this leaves, a crash between commit and print, is closed by the outbox);
 * failures back off exponentially with jitter, capped at the poll interval, and honour the
 * server's Retry-After; an error is logged when the failure changes, not on every retry.
 */
#include "bridge.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "log.h"
#include "project.h"
#include "render.h"
#include "state.h"
#include "youtrack.h"

#define BACKOFF_FIRST_MS 2000u

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
    int have_snapshot;  /* a usable snapshot was loaded or committed */
    int force_baseline; /* the snapshot was corrupt: never flood, whatever first_run says */
    unsigned failures;  /* consecutive failed polls */
    char last_error[600];
};

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

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
    if (!opts->dry_run) {
        r = state_open(&b->state, conf->state_dir, err, errlen);
        if (r)
            goto fail;
    }
    r = state_load(b->state, conf->state_dir, &b->snap, err, errlen);
    if (r < 0)
        goto fail;
    b->force_baseline = r == STATE_CORRUPT;
    if (r == STATE_CORRUPT)
        log_err("state", "%s; starting over as a first run (nothing will be announced as new)",
                err);
    b->have_snapshot = r == STATE_LOADED;
    if (b->have_snapshot)
        log_info("state", "loaded snapshot: %zu projects from %s", b->snap.projects.n,
                 b->snap.youtrack ? b->snap.youtrack : "(unknown)");
    err[0] = '\0';
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
    uv_timer_init(loop, &b->timer);
    b->timer.data = b;
    b->timer_live = 1;
    *out = b;
    return 0;
fail:
    bridge_free(b);
    return r;
}

static void deliver(struct bridge *b, const struct message *m)
{
    for (size_t i = 0; i < b->conf->n_sinks; i++) {
        const struct conf_sink *s = &b->conf->sinks[i];
        char *line = s->format == LOG_FORMAT_JSON ? render_json(m) : render_text(m);
        if (!line) {
            log_err("sink", "%s: out of memory rendering a message", s->name);
            continue;
        }
        /* stdout is the one sink type so far; the outbox will sit in front of the others. */
        fputs(line, stdout);
        fputc('\n', stdout);
        free(line);
    }
    fflush(stdout);
}

static void schedule(struct bridge *b, uint64_t delay_ms);

static void on_timer(uv_timer_t *t);

/* Exponential back-off with +-20% jitter, capped at the poll interval. */
static uint64_t backoff_ms(const struct bridge *b, long retry_after)
{
    uint64_t cap = (uint64_t)b->conf->youtrack.poll_interval * 1000u;
    uint64_t d = BACKOFF_FIRST_MS;
    for (unsigned i = 1; i < b->failures && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    d = d * (80u + (uint64_t)(rand() % 41)) / 100u;
    if (retry_after >= 0 && (uint64_t)retry_after * 1000u > d)
        d = (uint64_t)retry_after * 1000u; /* the server's word beats our cap */
    return d;
}

static void poll_failed(struct bridge *b, struct youtrack_result *res)
{
    char line[600];

    b->failures++;
    snprintf(line, sizeof(line), "%s: %s", youtrack_error_name(res->error), res->message);
    if (strcmp(line, b->last_error) != 0) {
        log_err("youtrack", "poll failed (%s); nothing announced, snapshot unchanged", line);
        snprintf(b->last_error, sizeof(b->last_error), "%s", line);
    } else {
        log_debug("youtrack", "poll failed again (%s)", line);
    }
    if (b->opts.once) {
        bridge_stop(b);
        return;
    }
    uint64_t d = backoff_ms(b, res->retry_after);
    log_debug("youtrack", "next attempt in %.1f s", (double)d / 1000.0);
    schedule(b, d);
}

/*
 * Commits next as the snapshot (saved to disk unless in a dry run) and hands the previous one
 * to *old: the diff's changes point into it until they are announced. Returns 0 or -errno
 * (logged).
 */
static int commit(struct bridge *b, struct project_list *next, enum youtrack_flavour flavour,
                  struct snapshot *old)
{
    struct snapshot s = {.projects = *next, .flavour = flavour};
    char err[512];

    s.youtrack = strdup(b->conf->youtrack.url);
    if (!s.youtrack)
        return -ENOMEM;
    if (b->state) {
        int r = state_save(b->state, &s, now_s(), err, sizeof(err));
        if (r) {
            log_err("state", "%s; nothing announced, will retry next poll", err);
            free(s.youtrack);
            return r;
        }
    }
    *old = b->snap;
    b->snap = s;
    project_list_init(next);
    b->have_snapshot = 1;
    return 0;
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

static void poll_succeeded(struct bridge *b, struct youtrack_result *res)
{
    struct message m = {.service_url = b->conf->youtrack.url, .flavour = res->flavour};
    struct diff d = {0};
    struct snapshot old = {0};
    struct project_list empty = {0};
    int first = !snapshot_matches(b, res->flavour);
    /* A mismatched or corrupt snapshot means starting over, and starting over must not flood. */
    int baseline = first && (b->have_snapshot || b->force_baseline ||
                             b->conf->notify.first_run == CONF_FIRST_RUN_BASELINE);
    size_t tracked;
    struct diff_opts o = {
        .removal_confirmations = b->conf->notify.removal_confirmations,
        .mass_removal_limit = b->conf->notify.mass_removal_limit,
        .accept_removals = b->opts.accept_removals,
        .now = now_s(),
    };

    if (b->failures)
        log_info("youtrack", "poll succeeded again after %u failed attempt%s", b->failures,
                 b->failures == 1 ? "" : "s");
    b->failures = 0;
    b->last_error[0] = '\0';
    log_debug("youtrack", "poll complete: %zu projects, %zu request%s, %.2f s%s", res->projects.n,
              res->pages, res->pages == 1 ? "" : "s", res->seconds,
              res->duplicates ? " (overlapping pages de-duplicated)" : "");

    if (project_diff(first ? &empty : &b->snap.projects, &res->projects, &o, &d) != 0) {
        log_err("bridge", "out of memory computing the diff");
        goto retry;
    }
    if (d.n_reappeared)
        log_info("bridge", "%zu missing project%s came back; nothing announced", d.n_reappeared,
                 d.n_reappeared == 1 ? "" : "s");
    if (d.n_pending)
        log_info("bridge", "%zu project%s missing, waiting for %d consecutive polls to confirm",
                 d.n_pending, d.n_pending == 1 ? "" : "s", o.removal_confirmations);

    tracked = d.next.n;
    if (!b->opts.dry_run && commit(b, &d.next, res->flavour, &old) != 0)
        goto retry;
    b->opts.accept_removals = 0; /* the confirmation covered this poll's removals */
    b->force_baseline = 0;

    if (baseline) {
        log_info("bridge", "first run: now tracking %zu projects (baseline, nothing announced)",
                 tracked);
        m.kind = MESSAGE_BASELINE;
        m.count = tracked;
        deliver(b, &m);
    } else {
        m.kind = MESSAGE_CHANGE;
        for (size_t i = 0; i < d.n_changes; i++) {
            m.change = &d.changes[i];
            deliver(b, &m);
        }
        if (d.n_changes)
            log_info("bridge", "%zu change%s announced", d.n_changes, d.n_changes == 1 ? "" : "s");
    }
    if (d.n_held_new) {
        char text[256];
        snprintf(text, sizeof(text),
                 "%zu projects disappeared from the service account's view at once; holding back",
                 d.n_held_new);
        log_warn("bridge",
                 "%s (they stay held until they reappear or you run ytbridge "
                 "--accept-removals)",
                 text);
        m.kind = MESSAGE_ALERT;
        m.alert = "removals_held";
        m.text = text;
        m.count = d.n_held_new;
        deliver(b, &m);
    }
    b->exit_code = 0;
    diff_fini(&d);
    snapshot_fini(&old);
    if (b->opts.once) {
        bridge_stop(b);
        return;
    }
    schedule(b, (uint64_t)b->conf->youtrack.poll_interval * 1000u);
    return;
retry:
    diff_fini(&d);
    b->failures++;
    if (b->opts.once) {
        bridge_stop(b);
        return;
    }
    schedule(b, backoff_ms(b, -1));
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
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    (void)h;
}

/* Runs from the loop, outside every HTTP and YouTrack callback, so it may free them. */
static void on_teardown(uv_timer_t *t)
{
    struct bridge *b = t->data;

    youtrack_free(b->yt);
    b->yt = NULL;
    http_free(b->http);
    b->http = NULL;
    uv_close((uv_handle_t *)&b->timer, on_timer_closed);
    b->timer_live = 0;
}

void bridge_stop(struct bridge *b)
{
    if (!b || b->stopping)
        return;
    b->stopping = 1; /* a poll answer arriving before the teardown is dropped */
    if (b->timer_live)
        uv_timer_start(&b->timer, on_teardown, 0, 0);
}

int bridge_exit_code(const struct bridge *b)
{
    return b->exit_code;
}

void bridge_free(struct bridge *b)
{
    if (!b)
        return;
    youtrack_free(b->yt);
    http_free(b->http);
    snapshot_fini(&b->snap);
    state_close(b->state);
    free(b);
}
