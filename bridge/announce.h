/*
 * What to announce where: routes changes, baselines and alerts to the configured sinks
 * (events, project globs, alert sinks, digests) and renders one outbox entry per message.
 * Pure: no I/O, no clock (the caller passes the time and the ids' parts).
 */
#ifndef YTB_ANNOUNCE_H
#define YTB_ANNOUNCE_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "outbox_entry.h"
#include "project.h"

struct announce {
    const struct conf *conf;
    enum youtrack_flavour flavour;
    int64_t now;
    /* Entry ids are "<epoch>-<gen>-<tag><k>": unique per state lineage and commit, and the same
     * on every retry of that entry (the Matrix txnId, the webhook delivery id). */
    const char *epoch;
    uint64_t gen;
    const char *tag; /* "" for a poll's commit, e.g. "a1795830000123." for runtime alerts */
    unsigned k;      /* next entry number; advanced by each call */
    /* Sinks besides the configured ones that changes are routed to: the chat subscriptions'
     * (subscription.h). Never alerted, no baseline. */
    const struct conf_sink *const *extra;
    size_t n_extra;
};

struct announce_batch {
    struct outbox_entry **v;
    size_t n, cap;
};

/* Frees every entry still in the batch. */
void announce_batch_fini(struct announce_batch *b);

/* Whether sink s wants change c (its events, and its project patterns on the old or new
 * short name). */
int announce_wants(const struct conf_sink *s, const struct change *c);

/*
 * Appends entries for one poll's changes: per sink (the configured ones, then a->extra), the
 * routed changes one message each, or one digest when there are more than
 * notify.digest_threshold (webhooks always get one message per change). 0 or -ENOMEM.
 */
int announce_changes(struct announce *a, const struct change *v, size_t n,
                     struct announce_batch *out);

/* Appends one "now tracking N projects" message per sink. */
int announce_baseline(struct announce *a, size_t count, struct announce_batch *out);

/* Appends one alert per alert sink, except the sink named skip (may be NULL). */
int announce_alert(struct announce *a, const char *kind, size_t count, const char *text,
                   const char *skip, struct announce_batch *out);

#endif
