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

/* Per-sink gauges, refreshed by the caller before each render. */
struct metrics_sink {
    const char *name;
    const char *type;
    size_t depth;
    int broken;
};

/* Appends the exposition to a fresh string (caller frees); NULL on ENOMEM. */
char *metrics_render(const struct metrics_sink *sinks, size_t n_sinks, int64_t started_at);

/* Forget everything (tests). */
void metrics_reset(void);

#endif
