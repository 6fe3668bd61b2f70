/*
 * The durable delivery queue (README.md, "Delivery"): one FIFO per sink, each entry
 * already rendered for its sink and already in the state directory's journal before it gets
 * here. Delivery is in order per sink, paced, retried with capped jittered back-off that
 * honours every server-given delay; permanent failures are dead-lettered; a sink whose
 * credentials or target are gone is marked broken, keeps its queue, and is probed hourly.
 */
#ifndef YTB_OUTBOX_H
#define YTB_OUTBOX_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "conf.h"
#include "http.h"
#include "outbox_entry.h"

struct state;
struct journal_record;

/*
 * The journal's view of n entries (the state stores journal records, not entries): an array in
 * *out (caller frees the array, not the strings) whose strings are the entries'. 0 or -ENOMEM.
 */
int outbox_records(struct outbox_entry *const *v, size_t n, struct journal_record **out);

/*
 * The journal's pending entries (state_journal_load()): a list in journal order in *head (caller
 * frees each with outbox_entry_free()). 0 or -errno (err filled).
 */
int outbox_journal_load(struct state *st, uint64_t committed_gen, struct outbox_entry **head,
                        char *err, size_t errlen);

struct outbox;

/* Called when a sink breaks (broken = 1) or works again (0); reason has no secret. */
typedef void (*outbox_alert_cb)(void *userdata, const char *sink, int broken, const char *reason);

/* Called once when nothing more can be delivered right now (see outbox_when_settled()). */
typedef void (*outbox_settled_cb)(void *userdata);

/* st may be NULL (dry run: nothing is delivered anyway). conf must outlive the outbox. */
int outbox_new(struct outbox **out, uv_loop_t *loop, struct http *http, struct state *st,
               const struct conf *conf);

/* Releases everything; entries still queued stay in the journal for the next start. */
void outbox_free(struct outbox *ob);

void outbox_set_alert_cb(struct outbox *ob, outbox_alert_cb cb, void *userdata);

/*
 * For a sink with a group (conf_sink.group), the alert is raised once for the whole group, with
 * sink = the group's name: when its credential is refused every queue of the group is held
 * (one of them probes hourly for all), and when it works again all of them resume.
 */

/*
 * Called when a subscription's sink answered SINK_SUSPEND (its target is gone): by then its
 * queue is removed and what was queued is dead-lettered with reason; the caller suspends the
 * subscription (and may free the conf_sink).
 */
typedef void (*outbox_gone_cb)(void *userdata, const char *sink, const char *reason);
void outbox_set_gone_cb(struct outbox *ob, outbox_gone_cb cb, void *userdata);

/*
 * Adds a queue for s at run time (a chat subscription's sink); s must stay valid until
 * outbox_remove_sink() of it or outbox_free(). Returns 0, -EEXIST when a queue of that name
 * exists, or -ENOMEM.
 */
int outbox_add_sink(struct outbox *ob, const struct conf_sink *s);

/*
 * Removes the queue named name (a subscription ended or was suspended): a request in flight is
 * cancelled, the queued entries are dead-lettered with reason (their journal records done), and
 * the queue's conf_sink is not used again once this returns. Returns 0 or -ENOENT.
 */
int outbox_remove_sink(struct outbox *ob, const char *name, const char *reason);

/*
 * Queues the n entries (already durable) at the end of their sinks' queues, then starts
 * delivering: all are queued before any is sent, so the journal is never emptied while one of
 * them is still unqueued. Takes ownership of the entries (not of v). An entry for a sink that
 * is not configured is dead-lettered.
 */
void outbox_push(struct outbox *ob, struct outbox_entry *const *v, size_t n);

/*
 * Calls cb once the outbox is settled: no request in flight and every non-empty queue is
 * waiting for a retry (back-off, Retry-After) or belongs to a broken sink. Used by --once.
 */
void outbox_when_settled(struct outbox *ob, outbox_settled_cb cb, void *userdata);

/*
 * Stops starting deliveries, lets requests in flight finish for at most grace_ms, then cancels
 * the rest (their entries stay queued on disk) and calls cb.
 */
void outbox_shutdown(struct outbox *ob, uint64_t grace_ms, outbox_settled_cb cb, void *userdata);

struct outbox_sink_status {
    const char *name;
    const struct conf_sink *conf;
    size_t depth;
    int broken;
    const char *reason; /* why it is broken, or the last failure; "" if none */
    uint64_t delivered, retried, dead;
};

/* Number of sinks (configured, chat reply and subscription sinks); fills up to max statuses. */
size_t outbox_status(const struct outbox *ob, struct outbox_sink_status *v, size_t max);

#endif
