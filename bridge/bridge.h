/*
 * The poll cycle: poll YouTrack, diff against the snapshot, apply the guards, commit the new
 * snapshot, announce. Owns the poll timer and its back-off.
 */
#ifndef YTB_BRIDGE_H
#define YTB_BRIDGE_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "command.h"
#include "conf.h"

struct etcd;
struct state_lease;
struct metrics_cluster;

struct bridge_opts {
    int once;            /* one poll, then stop the loop */
    int dry_run;         /* print, do not commit; implies once */
    int accept_removals; /* the operator confirms held removals (first complete poll) */
    /* With the cluster block: the state lives in etcd under etcd_prefix, fenced by lease (the
     * leader's; NULL in a dry run, which only reads). NULL etcd: the state directory. */
    struct etcd *etcd;
    const char *etcd_prefix;
    const struct state_lease *lease;
};

struct bridge;

/*
 * Opens the state directory (locked; not with dry_run) and loads the snapshot. conf must
 * outlive the bridge. Returns 0, or -EBUSY (another instance holds the state directory) or
 * another -errno, with err filled.
 */
int bridge_new(struct bridge **out, uv_loop_t *loop, const struct conf *conf,
               const struct bridge_opts *opts, char *err, size_t errlen);

/* Starts polling (the first poll right away). Returns 0 or -errno. */
int bridge_start(struct bridge *b);

/* Stops polling and closes every handle; the loop then runs dry. */
void bridge_stop(struct bridge *b);

/* Called once the bridge has stopped and released its handles (bridge_free() is then safe). */
void bridge_on_stopped(struct bridge *b, void (*cb)(void *userdata), void *userdata);

/*
 * The readiness answer for /readyz: returns 1 when ready, and the JSON document naming each
 * check and its state in *doc (a new reference; NULL on ENOMEM). No secrets.
 */
int bridge_readiness(const struct bridge *b, int64_t now, json_t **doc);

/* The metrics exposition (caller frees), with the bridge's per-sink gauges; cluster as in
 * metrics_render(). */
char *bridge_metrics(const struct bridge *b, const struct metrics_cluster *cluster);

/* With once/dry_run: 0 when the poll succeeded and its changes were committed, else 1. */
int bridge_exit_code(const struct bridge *b);

/*
 * Answers a chat command (the text after "/youtrack" or "!youtrack") from the current snapshot
 * for platform. 0 and *out (caller frees), or -ENOMEM. Counted in the metrics.
 */
int bridge_command(const struct bridge *b, const char *text, size_t len,
                   enum command_platform platform, char **out);

/*
 * Sends a chat reply through the outbox (paced, retried like a notification, never journaled).
 * Takes e; e->sink names a reply sink (conf_chat_matrix).
 */
struct outbox_entry;
void bridge_reply(struct bridge *b, struct outbox_entry *e);

/* Frees the bridge after the loop has closed its handles (uv_run returned). NULL is fine. */
void bridge_free(struct bridge *b);

#endif
