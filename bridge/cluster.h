/*
 * Leader election among the replicas of one group (the conf's cluster block), through etcd
 * (etcd.h). Exactly one replica leads: it alone polls, commits, delivers and holds the chat
 * connections; the others stand by and watch. The protocol (doc/etcd.md, "Election"):
 *
 *   - A candidate grants itself a lease of lease_ttl seconds and, in one transaction, creates
 *     <prefix>/leader with its member name under that lease, only if the key is absent.
 *   - The leader keeps the lease alive every lease_ttl / 3. It trusts its leadership only until
 *     the time the last successful keep-alive was sent plus lease_ttl minus a safety margin, on
 *     CLOCK_BOOTTIME (it keeps counting while the process is stopped or the machine suspended):
 *     after that it must assume another replica leads, whatever etcd says later.
 *   - Every write of state compares the leader key's lease (state_etcd.c), so a deposed leader
 *     changes nothing even when its own clock is wrong.
 *   - A standby reads the leader key every second (or lease_ttl / 3 when shorter) and campaigns
 *     as soon as it is gone; a leader that stops cleanly revokes its lease, so the next one
 *     takes over at once instead of after lease_ttl.
 */
#ifndef YTB_CLUSTER_H
#define YTB_CLUSTER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "conf.h"
#include "state.h"

struct cluster;
struct etcd;

enum cluster_role {
    CLUSTER_CANDIDATE, /* starting, or campaigning */
    CLUSTER_STANDBY,   /* another replica leads */
    CLUSTER_LEADER,
};

/* Called when this replica starts leading (leading = 1) and when it stops (0). */
typedef void (*cluster_role_cb)(void *userdata, int leading);

/*
 * Creates the election for conf->cluster (conf must outlive it) on loop; nothing is sent
 * before cluster_start(). 0 or -errno (err says what).
 */
int cluster_new(struct cluster **out, uv_loop_t *loop, const struct conf *conf, cluster_role_cb cb,
                void *userdata, char *err, size_t errlen);

/* A reload with the same cluster settings (conf_cluster_same()): conf replaces the old one. */
void cluster_set_conf(struct cluster *c, const struct conf *conf);

/* Begins: campaigns, and stands by while another replica leads. */
void cluster_start(struct cluster *c);

/*
 * Gives up leadership now (the bridge found its writes refused or its state unusable): the
 * lease is revoked, the role callback says 0, and the replica campaigns again after a pause of
 * one lease_ttl, so another replica gets the first chance. why is logged.
 */
void cluster_step_down(struct cluster *c, const char *why);

/*
 * Stops: a leader revokes its lease (bounded by the etcd timeout), so another replica takes
 * over at once; then every handle is closed and done runs. No role callback follows.
 */
void cluster_stop(struct cluster *c, void (*done)(void *userdata), void *userdata);

/* Frees a stopped cluster (after done, or one never started). NULL is fine. */
void cluster_free(struct cluster *c);

/* For the etcd state backend while leading: the client, the prefix and the fence. */
struct etcd *cluster_etcd(const struct cluster *c);
const char *cluster_prefix(const struct cluster *c);
const struct state_lease *cluster_lease(const struct cluster *c);

enum cluster_role cluster_role(const struct cluster *c);

/*
 * The "cluster" object of /readyz (role, member, leader, etcd) into *obj (new reference).
 * Returns 1 when this replica may be in service: a leader (its bridge adds its own checks),
 * or a standby that reached etcd lately and sees a live leader.
 */
int cluster_readiness(const struct cluster *c, json_t **obj);

/* The figures of the cluster metric families (metrics.h). */
struct metrics_cluster;
void cluster_metrics(const struct cluster *c, struct metrics_cluster *out);

/* An etcd client for the cluster block (endpoints, TLS, credentials), for cluster_new() and
 * --doctor. 0 or -errno (err says what). */
int cluster_etcd_new(struct etcd **out, uv_loop_t *loop, const struct conf_cluster *cc, char *err,
                     size_t errlen);

#endif
