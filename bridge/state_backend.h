/*
 * The seam between the state interface (state.h) and a backend: a table of operations. A
 * backend's object embeds struct state as its first member, so the interface hands it the same
 * pointer it got from open. Each operation has the contract of the state.h function of the same
 * name (the subscription operations, which only move bytes, say theirs below), and every backend
 * gives the guarantees listed at the top of state.h; the records it stores are the JSON of
 * state_format.h, so a state can move between backends as it is.
 *
 * Two backends: the state directory (state.c, state_dir_ops) and etcd (state_etcd.c,
 * state_etcd_ops, for replicas); only the open functions of state.h choose.
 */
#ifndef YTB_STATE_BACKEND_H
#define YTB_STATE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "state.h"
#include "state_format.h"

/*
 * Called by subscriptions_scan once per record found: where names it for messages (a path, an
 * etcd key; no secret), key is the name it is stored under (the directory's file name without
 * ".json", the last part of the etcd key), and buf holds its len bytes; or error is a -errno
 * saying why that record could not be read at all (buf NULL). Returns 0 to go on, or -errno to
 * stop the scan with it.
 */
typedef int (*state_record_fn)(void *ctx, const char *where, const char *key, const char *buf,
                               size_t len, int error);

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

    /*
     * The subscriptions, as bytes: state.c formats, parses, checks and sorts them
     * (state_format.h), so every backend does the same. subscriptions_scan hands every stored
     * record to fn, in any order (also on a read-only state; none stored is 0 without a call).
     * subscription_put stores text under key (STATE_SUBSCRIPTION_KEY), replacing what was
     * there, atomically and durably; subscription_delete removes it durably, none being fine.
     * Each returns 0 or -errno with err (fn's error as it is).
     */
    int (*subscriptions_scan)(struct state *st, state_record_fn fn, void *ctx, char *err,
                              size_t errlen);
    int (*subscription_put)(struct state *st, const char *key, const char *text, char *err,
                            size_t errlen);
    int (*subscription_delete)(struct state *st, const char *key, char *err, size_t errlen);
};

/* What every backend's object starts with. */
struct state {
    const struct state_backend_ops *ops;
};

#endif
