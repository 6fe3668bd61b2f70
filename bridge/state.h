/*
 * The state directory: an exclusive lock (on the directory), and snapshot.json (the project list as
 * last seen, with the removal guards' counters and the bounded history of announced changes),
 * written atomically.
 */
#ifndef YTB_STATE_H
#define YTB_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "project.h"
#include "youtrack.h"

#define STATE_FORMAT 1

#define STATE_HISTORY_MAX 200 /* changes kept for `changes [N]`; older ones are dropped */

struct snapshot {
    struct project_list projects; /* finished */
    char *youtrack;               /* the service URL it was taken from */
    enum youtrack_flavour flavour;
    int64_t saved_at;    /* unix seconds */
    char epoch[17];      /* random hex naming this state's lineage ("" before the first save) */
    uint64_t generation; /* commits so far: outbox entries carry the one that committed them */
    struct history_entry *history; /* oldest first, at most STATE_HISTORY_MAX; owned */
    size_t n_history;
};

/* Frees the projects, strings and history; a zeroed snapshot is fine. */
void snapshot_fini(struct snapshot *s);

/*
 * Appends the n changes (as project_diff() reports them: renames keep the names from before,
 * removals the names the project had) to s's history with time now, dropping the oldest entries
 * beyond STATE_HISTORY_MAX. Returns 0, or -ENOMEM with s unchanged. The strings are copied: the
 * changes' projects need not outlive the call.
 */
int snapshot_history_add(struct snapshot *s, const struct change *changes, size_t n, int64_t now);

/*
 * Replaces dst's history with a deep copy of src's (a commit builds the next snapshot's history
 * from the current one, which must survive a failed save). Returns 0, or -ENOMEM with dst
 * unchanged.
 */
int snapshot_history_copy(struct snapshot *dst, const struct snapshot *src);

struct state;

/*
 * Creates dir if needed (mode 0700) and takes its lock: a flock() on the directory itself, so
 * deleting the "lock" file (which names the holder's pid) lets no second process in. Returns 0,
 * -EBUSY when another process holds the lock (err names the holder's pid when known), or another
 * -errno (err says what).
 */
int state_open(struct state **out, const char *dir, char *err, size_t errlen);
void state_close(struct state *st);

/*
 * Whether the directory opened by state_open() is still the state directory: -ENOENT when it
 * was deleted or its path no longer exists, -ESTALE when the path names another directory now
 * (err says which, for the operator), 0 when all is well. Nothing written after such a change
 * would ever be read again: the caller should stop.
 */
int state_check(struct state *st, char *err, size_t errlen);

enum state_load_result {
    STATE_LOADED = 0,
    STATE_NONE,    /* no snapshot: a first run */
    STATE_CORRUPT, /* unreadable: moved aside (when st is writable), treat as a first run */
};

/*
 * Loads dir/snapshot.json. st may be NULL for a read-only look (--dry-run): then a corrupt file
 * stays where it is. Returns an enum state_load_result (>= 0; err explains STATE_CORRUPT), or
 * -errno for a problem that must stop the bridge (I/O error, a format from a newer version).
 */
int state_load(struct state *st, const char *dir, struct snapshot *out, char *err, size_t errlen);

/*
 * Writes the snapshot atomically: temp file, fsync, rename, fsync of the directory. 0 or -errno,
 * err naming the file and the reason (ENOSPC, EIO, ...).
 */
int state_save(struct state *st, const struct snapshot *s, int64_t now, char *err, size_t errlen);

/*
 * The outbox journal (outbox.jsonl): "add" lines for queued messages and "done" lines for
 * delivered or dead-lettered ones, appended and fdatasync'ed. A commit writes its "add" lines
 * first and then the snapshot with their generation: the snapshot's rename is the commit point,
 * so at start-up "add" lines of a generation newer than the snapshot's are a batch whose commit
 * never happened, and are dropped (the next poll recomputes the same changes). A commit that
 * fails takes its lines back at once (state_commit()); see state.c for the invariant.
 */
struct outbox_entry;

/*
 * Reads the journal: returns the pending entries (committed, not done) as a list in journal
 * order in *head (caller frees each with outbox_entry_free()), and rewrites the journal to
 * hold just them. Damaged lines are skipped with a warning. 0 or -errno (err filled).
 */
int state_journal_load(struct state *st, uint64_t committed_gen, struct outbox_entry **head,
                       char *err, size_t errlen);

/*
 * Commits a poll: appends the n entries' "add" lines, then saves s, whose generation must be the
 * entries' (the snapshot's rename is the commit point). When either step fails, the journal is
 * cut back to its length before the call (ftruncate needs no free space), so a batch that did not
 * commit leaves no line; if even the cut fails it is retried before every later append, which
 * fails until it works. Either way s->generation is spent: the caller's next attempt must use a
 * higher one. 0 or -errno (err says what failed and why).
 */
int state_commit(struct state *st, const struct snapshot *s, struct outbox_entry *const *v,
                 size_t n, int64_t now, char *err, size_t errlen);

/* Appends "add" lines for n entries (alerts: already committed), durably. 0 or -errno. */
int state_journal_add(struct state *st, struct outbox_entry *const *v, size_t n, char *err,
                      size_t errlen);

/* Appends a "done" line (result "delivered" or "dead"), durably. 0 or -errno. */
int state_journal_done(struct state *st, const char *id, const char *result);

/* Empties the journal once nothing is pending (every line is then history). 0 or -errno. */
int state_journal_clear(struct state *st);

/* Rewrites the journal to hold exactly the n pending entries (atomically). 0 or -errno. */
int state_journal_compact(struct state *st, struct outbox_entry *const *v, size_t n);

/* Appends the entry and why it failed to deadletter.jsonl (for the operator). 0 or -errno. */
int state_deadletter(struct state *st, const struct outbox_entry *e, const char *reason);

/*
 * Parses a snapshot file's content (pure; for state_load() and the fuzz harness). The "history"
 * member is auxiliary, read as leniently as the header's members: when it is not an array it is
 * ignored, an element that is not a valid entry (not an object, no or an over-long id, an
 * unknown kind, no numeric "at", a string field of another type) is dropped, and only the newest
 * STATE_HISTORY_MAX entries are kept. Text that is not JSON, or an "at" that is a number but not
 * an int64 (as for "saved_at"), fails the whole parse, as anywhere in the file.
 */
int state_parse_snapshot(const char *buf, size_t len, struct snapshot *out, char *err,
                         size_t errlen);

#endif
