/*
 * The state directory: an exclusive lock, and snapshot.json (the project list as last seen,
 * with the removal guards' counters), written atomically.
 */
#ifndef YTB_STATE_H
#define YTB_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "project.h"
#include "youtrack.h"

#define STATE_FORMAT 1

struct snapshot {
    struct project_list projects; /* finished */
    char *youtrack;               /* the service URL it was taken from */
    enum youtrack_flavour flavour;
    int64_t saved_at;    /* unix seconds */
    char epoch[17];      /* random hex naming this state's lineage ("" before the first save) */
    uint64_t generation; /* commits so far: outbox entries carry the one that committed them */
};

void snapshot_fini(struct snapshot *s);

struct state;

/*
 * Creates dir if needed (mode 0700) and takes its lock. Returns 0, -EBUSY when another process
 * holds the lock (err names the holder's pid when known), or another -errno (err says what).
 */
int state_open(struct state **out, const char *dir, char *err, size_t errlen);
void state_close(struct state *st);

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

/* Writes the snapshot atomically: temp file, fsync, rename, fsync of the directory. */
int state_save(struct state *st, const struct snapshot *s, int64_t now, char *err, size_t errlen);

/*
 * The outbox journal (outbox.jsonl): "add" lines for queued messages and "done" lines for
 * delivered or dead-lettered ones, appended and fdatasync'ed. A commit writes its "add" lines
 * first and then the snapshot with their generation: the snapshot's rename is the commit point,
 * so at start-up "add" lines of a generation newer than the snapshot's are a batch whose commit
 * never happened, and are dropped (the next poll recomputes the same changes).
 */
struct outbox_entry;

/*
 * Reads the journal: returns the pending entries (committed, not done) as a list in journal
 * order in *head (caller frees each with outbox_entry_free()), and rewrites the journal to
 * hold just them. Damaged lines are skipped with a warning. 0 or -errno (err filled).
 */
int state_journal_load(struct state *st, uint64_t committed_gen, struct outbox_entry **head,
                       char *err, size_t errlen);

/* Appends "add" lines for n entries, durably. 0 or -errno (err filled). */
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

/* Parses a snapshot file's content (pure; for state_load() and the fuzz harness). */
int state_parse_snapshot(const char *buf, size_t len, struct snapshot *out, char *err,
                         size_t errlen);

#endif
