/*
 * Durable state behind one interface (README.md, "Development"): the snapshot with its change
 * history, the outbox journal, dead letters and the chat clients' sync positions. Nothing above
 * this interface opens a file of the state directory or knows which backend runs. The records
 * themselves and their JSON are state_format.h's (pure), the directory backend lives in state.c,
 * and a backend is a table of operations (state_backend.h).
 *
 * What every backend guarantees:
 *   - One writer. state_open() takes exclusive ownership (the directory: a flock(); etcd: a
 *     leader key under a lease) or fails with -EBUSY; every write is done by that owner only.
 *     state_check() says whether the ownership still holds (the directory deleted or replaced;
 *     the lease lost): when it does not, nothing written any more would be read again, and the
 *     caller stops. A backend that can lose ownership fences its writes (each one is refused
 *     once it is lost).
 *   - One atomic commit point. state_commit() makes a snapshot and the journal records of the
 *     batch it produced current together, or neither: a reader (the next start) sees the
 *     previous snapshot without the batch or the new one with it, never half a snapshot and
 *     never a record of a batch that did not commit. A failed commit spends its generation: the
 *     caller's next attempt uses a higher one, so no id ever names two different messages.
 *   - Journal semantics. A record added is pending until a "done" (delivered or dead) is
 *     recorded for its id; state_journal_load() returns the pending records of committed
 *     generations in the order they were added, and nothing else. Each add, done, clear and
 *     compaction is durable when it returns 0 (the one duplicate window of a delivery is a crash
 *     between the target's answer and state_journal_done()).
 *   - Sync positions are durable and atomic: state_sync_position_get() returns the last value
 *     put whole, or none, never a mix of two.
 *   - Dead letters are an append-only record for the operator; nothing reads them back.
 * Calls block briefly (small writes and fsync): the one exception to a loop that never blocks,
 * because a commit must be durable before anything it queued is delivered.
 */
#ifndef YTB_STATE_H
#define YTB_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "state_format.h"

struct state;

#define STATE_OPEN_READONLY 1u /* look only: take no lock, create and move nothing */

/*
 * Opens the directory backend on dir: creates it if needed (mode 0700) and takes its lock, a
 * flock() on the directory itself, so deleting the "lock" file (which names the holder's pid)
 * lets no second process in. Returns 0, -EBUSY when another process holds the lock (err names
 * the holder's pid when known), or another -errno (err says what).
 */
int state_open(struct state **out, const char *dir, char *err, size_t errlen);

struct etcd;

/*
 * What fences the etcd backend's writes; cluster.c fills it for the replica that leads. Every
 * write is one etcd transaction that compares leader_key's lease with lease, so a replica that
 * lost leadership can change nothing; valid() is asked before every write and by state_check()
 * and answers from the monotonic clock alone (0 while the lease cannot have expired, else
 * -ENOLCK with err saying why), so a paused leader notices before it sends anything.
 */
struct state_lease {
    const char *leader_key; /* "<prefix>/leader" */
    int64_t lease;          /* the lease leader_key is attached to */
    int (*valid)(void *userdata, char *err, size_t errlen);
    /*
     * Optional: called before every request of the backend (a long load or commit makes many);
     * renews the lease with a blocking keep-alive when one is due, so an operation that blocks
     * the loop for longer than the keep-alive interval does not outlive the lease.
     */
    void (*renew)(void *userdata);
    void *userdata;
};

/*
 * Opens the etcd backend (state_etcd.c) on the keys under prefix, through e, fenced by l
 * (copied; l->userdata must outlive the state). With STATE_OPEN_READONLY (l may be NULL) only
 * state_load() may be called. Returns 0 or -errno (err says what).
 */
int state_open_etcd(struct state **out, struct etcd *e, const char *prefix,
                    const struct state_lease *l, unsigned flags, char *err, size_t errlen);
void state_close(struct state *st);

/*
 * Opens the directory backend on dir only to look (--doctor, --dry-run): no lock taken, nothing
 * created or moved. Only state_load() and state_subscriptions_load() may be called on it.
 * Returns 0, -ENOENT when there is no state directory there, or another -errno (err says what).
 */
int state_open_readonly(struct state **out, const char *dir, char *err, size_t errlen);

/*
 * Whether the state opened by state_open() is still ours: -ENOENT when the directory was
 * deleted or its path no longer exists, -ESTALE when the path names another directory now (err
 * says which, for the operator), 0 when all is well. Nothing written after such a change would
 * ever be read again: the caller should stop.
 */
int state_check(struct state *st, char *err, size_t errlen);

enum state_load_result {
    STATE_LOADED = 0,
    STATE_NONE,    /* no snapshot: a first run */
    STATE_CORRUPT, /* unreadable: moved aside (when st is writable), treat as a first run */
};

/*
 * Loads the snapshot. st may be NULL for a read-only look at dir (--dry-run: nothing is locked
 * or created, and a corrupt file stays where it is); with st, dir is only used in messages.
 * Returns an enum state_load_result (>= 0; err explains STATE_CORRUPT), or -errno for a
 * problem that must stop the bridge (I/O error, a format from a newer version).
 */
int state_load(struct state *st, const char *dir, struct snapshot *out, char *err, size_t errlen);

/*
 * Makes s the current snapshot atomically (the directory: temp file, fsync, rename, fsync of
 * the directory). 0 or -errno, err naming the file and the reason (ENOSPC, EIO, ...).
 */
int state_save(struct state *st, const struct snapshot *s, int64_t now, char *err, size_t errlen);

/*
 * Commits a poll: the n records, then s, whose generation must be the records' (the
 * directory: "add" lines appended to outbox.jsonl, then the snapshot's rename, which is the
 * commit point). When either step fails the batch is taken back (the journal is cut back to
 * its length before the call; ftruncate needs no free space); if even that fails it is retried
 * before every later write to the journal, which fails until it works. Either way
 * s->generation is spent. 0 or -errno (err says what failed and why).
 */
int state_commit(struct state *st, const struct snapshot *s, const struct journal_record *v,
                 size_t n, int64_t now, char *err, size_t errlen);

/*
 * The pending records (committed, not done) in journal order: *out (caller frees with
 * state_journal_records_free()) and *n. Records of a generation above committed_gen are a
 * batch whose commit never happened: dropped. The directory backend also rewrites the journal
 * to hold just the pending records when it held anything else, and skips damaged lines with a
 * warning. 0 or -errno (err filled).
 */
int state_journal_load(struct state *st, uint64_t committed_gen, struct journal_record **out,
                       size_t *n, char *err, size_t errlen);

/* Adds n records (alerts: under the generation already committed), durably. 0 or -errno. */
int state_journal_add(struct state *st, const struct journal_record *v, size_t n, char *err,
                      size_t errlen);

/* Records that id is done (result "delivered" or "dead"), durably. 0 or -errno. */
int state_journal_done(struct state *st, const char *id, const char *result);

/* Empties the journal once nothing is pending (every record is then history). 0 or -errno. */
int state_journal_clear(struct state *st);

/* Replaces the journal by exactly the n pending records, atomically. 0 or -errno. */
int state_journal_compact(struct state *st, const struct journal_record *v, size_t n);

/* Keeps r and why it failed as a dead letter (deadletter.jsonl), for the operator. 0/-errno. */
int state_deadletter(struct state *st, const struct journal_record *r, const char *reason);

/*
 * Reads the position saved under key into *out. Returns 0, -ENOENT when none is saved,
 * -EPROTO when what is saved is damaged, or another -errno when it cannot be read; err says
 * what and where on every failure but -ENOENT.
 */
int state_sync_position_get(struct state *st, const char *key, struct state_sync_position *out,
                            char *err, size_t errlen);

/*
 * Saves p under key, replacing the last one atomically and durably (the directory: temp file,
 * fsync, rename, mode 0600). 0 or -errno (err says what failed).
 */
int state_sync_position_put(struct state *st, const char *key, const struct state_sync_position *p,
                            char *err, size_t errlen);

struct subscription;
struct subscription_list;

/*
 * Every subscription saved (subscription.h), sorted by platform then channel, into *out
 * (subscription_list_fini() it); none saved is an empty list. A record that cannot be read
 * (damaged, an unusable channel or pattern) is skipped with a warning on the log and left where
 * it is. With STATE_OPEN_READONLY too (--doctor, --dry-run). 0 or -errno (err says what).
 */
int state_subscriptions_load(struct state *st, struct subscription_list *out, char *err,
                             size_t errlen);

/*
 * Saves s as its channel's subscription, replacing the one saved before, atomically and
 * durably (the directory: one file per channel under subscriptions/, temp file, fsync, rename,
 * fsync of the directory, mode 0600; etcd: one key per channel, a fenced put). Returns 0 only
 * once it would survive a crash. 0 or -errno (err says what failed).
 */
int state_subscription_put(struct state *st, const struct subscription *s, char *err,
                           size_t errlen);

/* Deletes the subscription of (platform, channel), durably; none saved is fine. 0 or -errno. */
int state_subscription_delete(struct state *st, int platform, const char *channel, char *err,
                              size_t errlen);

#endif
