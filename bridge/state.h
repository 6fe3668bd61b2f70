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
    int64_t saved_at; /* unix seconds */
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

/* Parses a snapshot file's content (pure; for state_load() and the fuzz harness). */
int state_parse_snapshot(const char *buf, size_t len, struct snapshot *out, char *err,
                         size_t errlen);

#endif
