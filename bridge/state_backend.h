/*
 * The seam between the state interface (state.h) and a backend: a table of operations. A
 * backend's object embeds struct state as its first member, so the interface hands it the same
 * pointer it got from open. Each operation has the contract of the state.h function of the same
 * name, and every backend gives the guarantees listed at the top of state.h; the records it
 * stores are the JSON of state_format.h, so a state can move between backends as it is.
 *
 * Today there is one backend, the state directory (state.c, state_dir_ops). A second backend
 * (etcd, for replicas) adds a second table; only state_open() chooses.
 */
#ifndef YTB_STATE_BACKEND_H
#define YTB_STATE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "state.h"
#include "state_format.h"

struct state_backend_ops {
    const char *name; /* for messages: "directory" */

    /*
     * Opens the state at where (the directory's path). Without STATE_OPEN_READONLY it takes
     * exclusive ownership (-EBUSY when another process has it). With it: -ENOENT when there is
     * no state there, and only load may be called.
     */
    int (*open)(struct state **out, const char *where, unsigned flags, char *err, size_t errlen);
    void (*close)(struct state *st);
    int (*check)(struct state *st, char *err, size_t errlen);

    int (*load)(struct state *st, struct snapshot *out, char *err, size_t errlen);
    int (*save)(struct state *st, const struct snapshot *s, int64_t now, char *err, size_t errlen);
    int (*commit)(struct state *st, const struct snapshot *s, const struct journal_record *v,
                  size_t n, int64_t now, char *err, size_t errlen);

    int (*journal_load)(struct state *st, uint64_t committed_gen, struct journal_record **out,
                        size_t *n, char *err, size_t errlen);
    int (*journal_add)(struct state *st, const struct journal_record *v, size_t n, char *err,
                       size_t errlen);
    int (*journal_done)(struct state *st, const char *id, const char *result);
    int (*journal_clear)(struct state *st);
    int (*journal_compact)(struct state *st, const struct journal_record *v, size_t n);
    int (*deadletter)(struct state *st, const struct journal_record *r, const char *reason);

    int (*sync_position_get)(struct state *st, const char *key, struct state_sync_position *out,
                             char *err, size_t errlen);
    int (*sync_position_put)(struct state *st, const char *key, const struct state_sync_position *p,
                             char *err, size_t errlen);
};

/* What every backend's object starts with. */
struct state {
    const struct state_backend_ops *ops;
};

#endif
