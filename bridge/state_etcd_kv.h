/*
 * The etcd state backend's own pieces, shared by its three files (private to them; state.h is
 * the interface): state_etcd.c (opening, the snapshot, commits, dead letters, sync positions),
 * state_etcd_journal.c (the outbox journal) and state_etcd_kv.c (keys, paged reads, fenced
 * txns). The key layout and the invariants are at the top of state_etcd.c.
 */
#ifndef YTB_STATE_ETCD_KV_H
#define YTB_STATE_ETCD_KV_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "etcd.h"
#include "state.h"
#include "state_backend.h"

#define TXN_OPS_MAX   100           /* etcd's --max-txn-ops default is 128 */
#define TXN_BYTES_MAX (1024 * 1024) /* raw value bytes per txn: etcd counts 1.5 MiB of protobuf */
#define RECORD_PAGE   64            /* journal records per range answer */

/* Pending records' ids -> journal seq (state_journal_done() gets an id). */
struct slot {
    char *id; /* NULL: free */
    uint64_t seq;
};

struct idmap {
    struct slot *v;
    size_t cap, n; /* cap: 0 or a power of two */
};

#define STATE_ETCD_LOST   1 /* a fenced txn failed: another replica leads */
#define STATE_ETCD_UNSURE 2 /* a commit's outcome is unknown: what we hold may be stale */

struct est {
    struct state base; /* first: the interface's pointer is ours */
    struct etcd *e;
    char *prefix; /* without a trailing '/' */
    char *leader_key;
    int64_t lease;
    int (*valid)(void *userdata, char *err, size_t errlen);
    void (*renew)(void *userdata); /* NULL: nothing to renew (read-only) */
    void *userdata;
    int readonly;
    int lost; /* STATE_ETCD_LOST or _UNSURE: every write and state_check() say -ENOLCK */
    uint64_t journal_next; /* the next record's seq */
    uint64_t dead_next;    /* the next dead letter's seq */
    struct idmap ids;
};

static inline struct est *est_of(struct state *st)
{
    return (struct est *)st;
}

/* The id map (open addressing): find (NULL when absent), put (0 or -ENOMEM), del, clear. */
struct slot *state_etcd_idmap_find(const struct idmap *m, const char *id);
int state_etcd_idmap_put(struct idmap *m, const char *id, uint64_t seq);
void state_etcd_idmap_del(struct idmap *m, const char *id);
void state_etcd_idmap_clear(struct idmap *m);

/* P + the formatted rest (caller frees), or NULL on ENOMEM. */
__attribute__((format(printf, 2, 3))) char *state_etcd_key(const struct est *s, const char *fmt,
                                                           ...);
char *state_etcd_journal_key(const struct est *s, uint64_t seq); /* P/journal/<seq:020> */
/* The seq of a key named "P<dir><20 digits>", or 0 when it is not such a key. */
uint64_t state_etcd_seq(const struct est *s, const char *dir, const char *key, size_t len);
/* "etcd key K: what" into err; returns r. */
int state_etcd_say(char *err, size_t errlen, int r, const char *key, const char *what);

/* Called per key of a range; 0 to go on, or -errno to stop with it. */
typedef int (*kv_fn)(void *ctx, const struct etcd_kv *kv);

struct range {
    const char *key, *end; /* [key, end); end NULL: key alone */
    int64_t revision;      /* 0: the newest, then that of the first page */
    long page;             /* keys per answer */
    int keys_only;
    const char *sort; /* "DESCEND" or NULL */
};

/* Takes a copy of the one kv a range gives. */
struct one {
    struct etcd_kv kv;
    int found;
};

/* Ops gathered into txns of at most TXN_OPS_MAX ops and TXN_BYTES_MAX value bytes. */
struct batch {
    struct est *s;
    json_t *ops;
    size_t bytes;
    const char *what; /* for messages */
};

/* Every key of q, in key order (or q->sort's), at one revision, paged. 0 or -errno (err). */
int state_etcd_range(struct est *s, struct range *q, kv_fn fn, void *ctx, char *err, size_t errlen);
/* kv_fn taking a copy of the kv into a struct one (ctx). */
int state_etcd_take_one(void *ctx, const struct etcd_kv *kv);
void state_etcd_one_fini(struct one *o);
/* Reads key into *o (o->found 0 when absent); *revision gets the answer's. 0 or -errno. */
int state_etcd_get(struct est *s, const char *key, struct one *o, int64_t *revision, char *err,
                   size_t errlen);

/* 0 when writing is allowed: -EROFS (read-only), -ENOLCK (lost, or valid() said no). */
int state_etcd_guard(struct est *s, char *err, size_t errlen);
/* Runs ops (an array; stolen) as one txn fenced on the lease. what names the key(s) written. */
int state_etcd_fenced(struct est *s, json_t *ops, const char *what, char *err, size_t errlen);
int state_etcd_fenced_op(struct est *s, json_t *op, const char *what, char *err, size_t errlen);
/* Deletes [key, end) fenced; everything under the prefix key when end is NULL. */
int state_etcd_delete_range(struct est *s, const char *key, const char *end, char *err,
                            size_t errlen);
/* Adds op (stolen; NULL is ENOMEM) of bytes value bytes, flushing first when it would not fit. */
int state_etcd_batch_add(struct batch *b, json_t *op, size_t bytes, char *err, size_t errlen);
int state_etcd_batch_flush(struct batch *b, char *err, size_t errlen);
void state_etcd_batch_fini(struct batch *b);
/* Ends a batch begun with r (0 so far): flushes it unless r says otherwise, then frees it. */
int state_etcd_batch_end(struct batch *b, int r, char *err, size_t errlen);

/* Takes back a failed commit's chunks of gen and journal seqs [first, next): best effort. */
void state_etcd_take_back(struct est *s, uint64_t gen, int chunks, uint64_t first, uint64_t next);

/* The journal (state_etcd_journal.c): step 1 of a commit, then the ids once it succeeded. */
int state_etcd_put_records(struct est *s, const struct journal_record *v, size_t n, uint64_t *first,
                           char *err, size_t errlen);
void state_etcd_map_records(struct est *s, const struct journal_record *v, size_t n,
                            uint64_t first);
/* Deletes the journal records of seqs [first, next) a failed write left: best effort, logged. */
void state_etcd_journal_take_back(struct est *s, uint64_t first, uint64_t next);
int state_etcd_journal_load(struct state *st, uint64_t committed_gen, struct journal_record **out,
                            size_t *n, char *err, size_t errlen);
int state_etcd_journal_add(struct state *st, const struct journal_record *v, size_t n, char *err,
                           size_t errlen);
int state_etcd_journal_done(struct state *st, const char *id, const char *result);
int state_etcd_journal_clear(struct state *st);
int state_etcd_journal_compact(struct state *st, const struct journal_record *v, size_t n);

#endif
