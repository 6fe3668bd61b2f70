/*
 * Metrics: a few fixed families plus per-sink counters kept by name (so a reload that keeps a
 * sink keeps its counts). Rendering escapes label values as the text format requires.
 */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

#define MAX_SINKS 64

static const char *const poll_results[] = {"ok", "auth", "network", "server", "protocol"};
#define N_RESULTS (sizeof(poll_results) / sizeof(poll_results[0]))

/* Histogram buckets, seconds: poll durations, and commits (a directory's fsync to etcd's
 * chunked transactions of a large snapshot). */
static const double poll_le[] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double commit_le[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30};
#define MAX_BUCKETS 9

struct histogram {
    uint64_t bucket[MAX_BUCKETS];
    uint64_t count;
    double sum;
};

/* Chat counters: one label, a fixed set of values (unknown values count under the last). */
static const char *const cmd_platforms[] = {"slack", "matrix"};
static const char *const cmd_names[] = {"projects",  "project",     "changes",       "status",
                                        "subscribe", "unsubscribe", "subscriptions", "help"};
static const char *const slack_disc[] = {
    "warning", "refresh_requested", "link_disabled", "too_many_websockets", "silent", "lost",
    "other"};
static const char *const slack_env[] = {"answered", "duplicate", "refused", "limited", "ignored"};
static const char *const slack_open[] = {"ok", "error"};
static const char *const matrix_sync[] = {"ok", "error"};
static const char *const delivery_results[] = {"delivered", "retried", "dead"};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

struct sink_counts {
    char name[72];
    uint64_t delivered, retried, dead;
};

static struct {
    uint64_t polls[N_RESULTS];
    struct histogram poll_seconds;
    int64_t last_success;
    size_t projects;
    uint64_t changes[5];
    struct sink_counts sinks[MAX_SINKS];
    size_t n_sinks;
    uint64_t commands[N_OF(cmd_platforms)][N_OF(cmd_names)];
    uint64_t commands_limited[N_OF(cmd_platforms)];
    uint64_t slack_disc[N_OF(slack_disc)], slack_env[N_OF(slack_env)], slack_open[N_OF(slack_open)],
        matrix_sync[N_OF(matrix_sync)];
    int slack_enabled, slack_sockets, slack_connected, matrix_enabled;
    int64_t matrix_last_sync;
    /* Subscriptions, by platform (cmd_platforms). */
    uint64_t sub_deliveries[N_OF(cmd_platforms)][N_OF(delivery_results)];
    size_t sub_active[N_OF(cmd_platforms)], sub_suspended[N_OF(cmd_platforms)],
        sub_queued[N_OF(cmd_platforms)];
    struct histogram commit_seconds;
} m;

/* The index of v in names; unknown values map to the last one. */
static size_t index_of(const char *const *names, size_t n, const char *v)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], v) == 0)
            return i;
    }
    return n - 1;
}

void metrics_command(const char *platform, const char *command)
{
    m.commands[index_of(cmd_platforms, N_OF(cmd_platforms), platform)]
              [index_of(cmd_names, N_OF(cmd_names), command)]++;
}

void metrics_command_limited(const char *platform)
{
    m.commands_limited[index_of(cmd_platforms, N_OF(cmd_platforms), platform)]++;
}

void metrics_subscription_delivery(const char *platform, const char *result)
{
    m.sub_deliveries[index_of(cmd_platforms, N_OF(cmd_platforms), platform)]
                    [index_of(delivery_results, N_OF(delivery_results), result)]++;
}

void metrics_subscriptions(const char *platform, size_t active, size_t suspended, size_t queued)
{
    size_t i = index_of(cmd_platforms, N_OF(cmd_platforms), platform);
    m.sub_active[i] = active;
    m.sub_suspended[i] = suspended;
    m.sub_queued[i] = queued;
}

void metrics_slack_sockets(int open, int connected)
{
    m.slack_enabled = 1;
    m.slack_sockets = open;
    m.slack_connected = connected;
}

void metrics_slack_disconnect(const char *reason)
{
    m.slack_disc[index_of(slack_disc, N_OF(slack_disc), reason)]++;
}

void metrics_slack_envelope(const char *result)
{
    m.slack_env[index_of(slack_env, N_OF(slack_env), result)]++;
}

void metrics_slack_open(int ok)
{
    m.slack_open[ok ? 0 : 1]++;
}

void metrics_matrix_sync(int ok, int64_t now)
{
    m.matrix_enabled = 1;
    m.matrix_sync[ok ? 0 : 1]++;
    if (ok)
        m.matrix_last_sync = now;
}

void metrics_reset(void)
{
    memset(&m, 0, sizeof(m));
}

static void observe(struct histogram *h, const double *le, size_t n, double v)
{
    for (size_t i = 0; i < n; i++) {
        if (v <= le[i])
            h->bucket[i]++;
    }
    h->count++;
    h->sum += v;
}

void metrics_poll(const char *result, double seconds, int64_t now)
{
    for (size_t i = 0; i < N_RESULTS; i++) {
        if (strcmp(result, poll_results[i]) == 0)
            m.polls[i]++;
    }
    observe(&m.poll_seconds, poll_le, N_OF(poll_le), seconds);
    if (strcmp(result, "ok") == 0)
        m.last_success = now;
}

void metrics_projects(size_t n)
{
    m.projects = n;
}

void metrics_change(enum change_kind kind)
{
    if ((unsigned)kind < 5)
        m.changes[kind]++;
}

static struct sink_counts *sink_counts(const char *name)
{
    for (size_t i = 0; i < m.n_sinks; i++) {
        if (strcmp(m.sinks[i].name, name) == 0)
            return &m.sinks[i];
    }
    if (m.n_sinks == MAX_SINKS)
        return NULL;
    struct sink_counts *s = &m.sinks[m.n_sinks++];
    snprintf(s->name, sizeof(s->name), "%s", name);
    return s;
}

void metrics_delivery(const char *sink, const char *result)
{
    struct sink_counts *s = sink_counts(sink);
    if (!s)
        return;
    if (strcmp(result, "delivered") == 0)
        s->delivered++;
    else if (strcmp(result, "retried") == 0)
        s->retried++;
    else if (strcmp(result, "dead") == 0)
        s->dead++;
}

/*
 * Label values: redacted like every outward text (today they are sink names and fixed words,
 * but a label is the kind of place a URL ends up), then backslash, double quote and newline are
 * escaped (exposition format).
 */
static void put_label(FILE *f, const char *s)
{
    char clean[512];
    const char *v = clean;

    log_redact(clean, sizeof(clean), s);
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(f, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_histogram(FILE *f, const char *name, const char *help, const struct histogram *h,
                             const double *le, size_t n)
{
    family(f, name, "histogram", help);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, le[i], (unsigned long long)h->bucket[i]);
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    fprintf(f, "%s_sum %.6f\n", name, h->sum);
    fprintf(f, "%s_count %llu\n", name, (unsigned long long)h->count);
}

/* The polls, the changes they found, the projects tracked. */
static void render_polls(FILE *f)
{
    family(f, "ytbridge_polls_total", "counter", "YouTrack polls by result.");
    for (size_t i = 0; i < N_RESULTS; i++)
        fprintf(f, "ytbridge_polls_total{result=\"%s\"} %llu\n", poll_results[i],
                (unsigned long long)m.polls[i]);
    render_histogram(f, "ytbridge_poll_duration_seconds", "Duration of YouTrack polls.",
                     &m.poll_seconds, poll_le, N_OF(poll_le));
    family(f, "ytbridge_last_successful_poll_timestamp_seconds", "gauge",
           "Unix time of the last complete poll; 0 before the first.");
    fprintf(f, "ytbridge_last_successful_poll_timestamp_seconds %lld\n", (long long)m.last_success);
    family(f, "ytbridge_projects", "gauge", "Projects tracked in the snapshot.");
    fprintf(f, "ytbridge_projects %zu\n", m.projects);
    static const char *const kinds[] = {"created", "renamed", "archived", "unarchived", "removed"};
    family(f, "ytbridge_changes_total", "counter", "Project changes detected, by kind.");
    for (size_t i = 0; i < 5; i++)
        fprintf(f, "ytbridge_changes_total{kind=\"%s\"} %llu\n", kinds[i],
                (unsigned long long)m.changes[i]);
}

/* Deliveries and queues, by sink. */
static void render_sinks(FILE *f, const struct metrics_sink *sinks, size_t n_sinks)
{
    family(f, "ytbridge_deliveries_total", "counter",
           "Delivery attempts by sink and result (delivered, retried, dead).");
    for (size_t i = 0; i < m.n_sinks; i++) {
        const uint64_t v[] = {m.sinks[i].delivered, m.sinks[i].retried, m.sinks[i].dead};
        for (size_t k = 0; k < N_OF(delivery_results); k++) {
            fputs("ytbridge_deliveries_total{sink=\"", f);
            put_label(f, m.sinks[i].name);
            fprintf(f, "\",result=\"%s\"} %llu\n", delivery_results[k], (unsigned long long)v[k]);
        }
    }
    family(f, "ytbridge_dead_letters_total", "counter", "Messages dead-lettered, by sink.");
    for (size_t i = 0; i < m.n_sinks; i++) {
        fputs("ytbridge_dead_letters_total{sink=\"", f);
        put_label(f, m.sinks[i].name);
        fprintf(f, "\"} %llu\n", (unsigned long long)m.sinks[i].dead);
    }
    family(f, "ytbridge_outbox_depth", "gauge", "Messages queued, by sink.");
    for (size_t i = 0; i < n_sinks; i++) {
        fputs("ytbridge_outbox_depth{sink=\"", f);
        put_label(f, sinks[i].name);
        fputs("\",type=\"", f);
        put_label(f, sinks[i].type);
        fprintf(f, "\"} %zu\n", sinks[i].depth);
    }
    family(f, "ytbridge_sink_broken", "gauge", "1 while a sink refuses messages, by sink.");
    for (size_t i = 0; i < n_sinks; i++) {
        fputs("ytbridge_sink_broken{sink=\"", f);
        put_label(f, sinks[i].name);
        fprintf(f, "\"} %d\n", sinks[i].broken ? 1 : 0);
    }
}

/* A counter family with one series per value of one label: name{label="names[i]"} values[i]. */
static void render_counters(FILE *f, const char *name, const char *help, const char *label,
                            const char *const *names, const uint64_t *values, size_t n)
{
    family(f, name, "counter", help);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s{%s=\"%s\"} %llu\n", name, label, names[i], (unsigned long long)values[i]);
}

/* Chat commands, by platform. */
static void render_commands(FILE *f)
{
    family(f, "ytbridge_commands_total", "counter",
           "Chat commands answered, by platform and command.");
    for (size_t i = 0; i < N_OF(cmd_platforms); i++) {
        for (size_t k = 0; k < N_OF(cmd_names); k++)
            fprintf(f, "ytbridge_commands_total{platform=\"%s\",command=\"%s\"} %llu\n",
                    cmd_platforms[i], cmd_names[k], (unsigned long long)m.commands[i][k]);
    }
    render_counters(
        f, "ytbridge_commands_limited_total",
        "Chat commands refused by the rate limits (answered \"slow down\" or not at all).",
        "platform", cmd_platforms, m.commands_limited, N_OF(cmd_platforms));
}

/* Chat subscriptions, by platform: both platforms always, 0 without subscriptions. */
static void render_subscriptions(FILE *f)
{
    family(f, "ytbridge_subscription_deliveries_total", "counter",
           "Delivery attempts to chat subscriptions, by platform and result.");
    for (size_t i = 0; i < N_OF(cmd_platforms); i++) {
        for (size_t k = 0; k < N_OF(delivery_results); k++)
            fprintf(
                f, "ytbridge_subscription_deliveries_total{platform=\"%s\",result=\"%s\"} %llu\n",
                cmd_platforms[i], delivery_results[k], (unsigned long long)m.sub_deliveries[i][k]);
    }
    family(f, "ytbridge_subscriptions", "gauge",
           "Chat subscriptions, by platform and state (active, suspended).");
    for (size_t i = 0; i < N_OF(cmd_platforms); i++) {
        fprintf(f, "ytbridge_subscriptions{platform=\"%s\",state=\"active\"} %zu\n",
                cmd_platforms[i], m.sub_active[i]);
        fprintf(f, "ytbridge_subscriptions{platform=\"%s\",state=\"suspended\"} %zu\n",
                cmd_platforms[i], m.sub_suspended[i]);
    }
    family(f, "ytbridge_subscription_queue_depth", "gauge",
           "Messages queued for chat subscriptions, by platform.");
    for (size_t i = 0; i < N_OF(cmd_platforms); i++)
        fprintf(f, "ytbridge_subscription_queue_depth{platform=\"%s\"} %zu\n", cmd_platforms[i],
                m.sub_queued[i]);
}

/* The Socket Mode client, when Slack commands are configured. */
static void render_slack(FILE *f)
{
    family(f, "ytbridge_slack_sockets", "gauge", "Socket Mode websockets held open.");
    fprintf(f, "ytbridge_slack_sockets %d\n", m.slack_sockets);
    family(f, "ytbridge_slack_connected", "gauge",
           "1 while a Socket Mode connection has said hello.");
    fprintf(f, "ytbridge_slack_connected %d\n", m.slack_connected);
    render_counters(f, "ytbridge_slack_disconnects_total",
                    "Socket Mode connections ended, by reason.", "reason", slack_disc, m.slack_disc,
                    N_OF(slack_disc));
    render_counters(f, "ytbridge_slack_envelopes_total",
                    "Socket Mode envelopes received, by what became of them.", "result", slack_env,
                    m.slack_env, N_OF(slack_env));
    render_counters(f, "ytbridge_slack_connection_opens_total",
                    "apps.connections.open calls, by result.", "result", slack_open, m.slack_open,
                    N_OF(slack_open));
}

/* The /sync client, when Matrix commands are configured. */
static void render_matrix(FILE *f)
{
    render_counters(f, "ytbridge_matrix_syncs_total", "Matrix /sync requests, by result.", "result",
                    matrix_sync, m.matrix_sync, N_OF(matrix_sync));
    family(f, "ytbridge_matrix_last_sync_timestamp_seconds", "gauge",
           "Unix time of the last successful Matrix /sync; 0 before the first.");
    fprintf(f, "ytbridge_matrix_last_sync_timestamp_seconds %lld\n", (long long)m.matrix_last_sync);
}

void metrics_commit(double seconds)
{
    observe(&m.commit_seconds, commit_le, N_OF(commit_le), seconds);
}

/* The state commits, and the election when the cluster block is set. */
static void render_state(FILE *f, const struct metrics_cluster *c)
{
    render_histogram(f, "ytbridge_state_commit_seconds",
                     "Time spent committing polls to the state (directory or etcd).",
                     &m.commit_seconds, commit_le, N_OF(commit_le));
    if (!c)
        return;
    family(f, "ytbridge_cluster_leader", "gauge", "1 while this replica leads its group.");
    fprintf(f, "ytbridge_cluster_leader %d\n", c->leader ? 1 : 0);
    family(f, "ytbridge_cluster_leader_changes_total", "counter",
           "Leaders this replica has seen take over (itself included).");
    fprintf(f, "ytbridge_cluster_leader_changes_total %llu\n",
            (unsigned long long)c->leader_changes);
    static const char *const etcd_results[] = {"ok", "error", "unreachable"};
    const uint64_t etcd_calls[] = {c->etcd_ok, c->etcd_error, c->etcd_unreachable};
    render_counters(f, "ytbridge_cluster_etcd_requests_total", "Calls to etcd, by result.",
                    "result", etcd_results, etcd_calls, N_OF(etcd_results));
}

char *metrics_render(const struct metrics_sink *sinks, size_t n_sinks, int64_t started_at,
                     const struct metrics_cluster *cluster)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f)
        return NULL;

    family(f, "ytbridge_build_info", "gauge", "Build information; always 1.");
    fprintf(f, "ytbridge_build_info{version=\"%s\"} 1\n", YTB_VERSION);
    family(f, "ytbridge_start_time_seconds", "gauge", "When the process started (unix time).");
    fprintf(f, "ytbridge_start_time_seconds %lld\n", (long long)started_at);

    render_polls(f);
    render_sinks(f, sinks, n_sinks);
    render_commands(f);
    render_subscriptions(f);
    render_state(f, cluster);
    if (m.slack_enabled)
        render_slack(f);
    if (m.matrix_enabled)
        render_matrix(f);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}
