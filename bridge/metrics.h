/*
 * Counters and gauges, exposed in the Prometheus text format (version 0.0.4). Process-wide:
 * they survive a configuration reload. Names follow Prometheus conventions (ytbridge_ prefix,
 * _total for counters, _seconds for durations).
 */
#ifndef YTB_METRICS_H
#define YTB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "project.h"

/* A poll ended: result is "ok" or an error class ("auth", "network", "server", "protocol"). */
void metrics_poll(const char *result, double seconds, int64_t now);

void metrics_projects(size_t n);
void metrics_change(enum change_kind kind);

/* A delivery attempt ended: result "delivered", "retried", "dead". */
void metrics_delivery(const char *sink, const char *result);

/*
 * A delivery attempt to a chat subscription's sink ended (outbox.c counts those here, not per
 * sink: subscriptions come and go at run time): platform "slack"/"matrix", result as
 * metrics_delivery()'s.
 */
void metrics_subscription_delivery(const char *platform, const char *result);

/*
 * The subscriptions of platform ("slack"/"matrix") right now, set by the bridge: active,
 * suspended, and the messages queued for them.
 */
void metrics_subscriptions(const char *platform, size_t active, size_t suspended, size_t queued);

/* A chat command was answered: platform "slack"/"matrix", command as command_name(). */
void metrics_command(const char *platform, const char *command);
/* A chat command refused by the rate limits (ratelimit.h). */
void metrics_command_limited(const char *platform);

/* Slack Socket Mode: sockets held and whether one has said hello; why one ended ("warning",
 * "refresh_requested", "link_disabled", "too_many_websockets", "silent", "lost", "other");
 * what became of an envelope ("answered", "duplicate", "refused", "ignored"); an
 * apps.connections.open result. */
void metrics_slack_sockets(int open, int connected);
void metrics_slack_disconnect(const char *reason);
void metrics_slack_envelope(const char *result);
void metrics_slack_open(int ok);

/* A Matrix /sync ended. */
void metrics_matrix_sync(int ok, int64_t now);

/* Per-sink gauges, refreshed by the caller before each render. */
struct metrics_sink {
    const char *name;
    const char *type;
    size_t depth;
    int broken;
};

/* Appends the exposition to a fresh string (caller frees); NULL on ENOMEM. */
/* The cluster's figures (cluster.c fills them), when the cluster block is set. */
struct metrics_cluster {
    int leader;              /* this replica leads */
    uint64_t leader_changes; /* leaders this replica has seen take over (itself included) */
    uint64_t etcd_ok, etcd_error, etcd_unreachable; /* etcd calls by result */
};

/* How long a commit of the state took (any backend), for ytbridge_state_commit_seconds. */
void metrics_commit(double seconds);

/* cluster is NULL without the cluster block. */
char *metrics_render(const struct metrics_sink *sinks, size_t n_sinks, int64_t started_at,
                     const struct metrics_cluster *cluster);

/* Forget everything (tests). */
void metrics_reset(void);

#endif
