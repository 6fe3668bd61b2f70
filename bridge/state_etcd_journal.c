/*
 * The etcd state backend's outbox journal (state_etcd_kv.h): one key per pending record,
 * P/journal/<seq:020>, holding the record's "add" line exactly as the directory's journal has it.
 * "done" deletes the key; a load drops (and deletes) records of uncommitted generations, damaged
 * values and repeated ids; a compaction leaves every record that is already right where it is.
 */
#include "state_etcd_kv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "state_format.h"

/* ---- the journal ---- */

/* Puts v[0..n) under new seqs (as state_etcd_fenced txns); *first gets the first seq. */
int state_etcd_put_records(struct est *s, const struct journal_record *v, size_t n, uint64_t *first,
                           char *err, size_t errlen)
{
    char *what = state_etcd_key(s, "/journal/");
    struct batch b = {s, NULL, 0, what ? what : "journal"};
    int r = 0;

    *first = s->journal_next;
    for (size_t i = 0; i < n && !r; i++) {
        char *line = state_format_journal_add(&v[i]);
        char *key = state_etcd_journal_key(s, s->journal_next);
        size_t len = line ? strlen(line) : 0;
        r = state_etcd_batch_add(&b, line && key ? etcd_op_put(key, line, len, 0) : NULL, len, err,
                                 errlen);
        s->journal_next++; /* spent either way: a seq never names two records */
        free(line);
        free(key);
    }
    r = state_etcd_batch_end(&b, r, err, errlen);
    free(what);
    return r;
}

/* Remembers the ids of records put under seqs first, first + 1, ... */
void state_etcd_map_records(struct est *s, const struct journal_record *v, size_t n, uint64_t first)
{
    for (size_t i = 0; i < n; i++) {
        if (state_etcd_idmap_put(&s->ids, v[i].id, first + i) != 0)
            log_warn("state", "out of memory: message %s will be looked up in etcd when done",
                     v[i].id);
    }
}

void state_etcd_journal_take_back(struct est *s, uint64_t first, uint64_t next)
{
    char *key = next > first ? state_etcd_journal_key(s, first) : NULL;
    char *end = key ? state_etcd_journal_key(s, next) : NULL;
    char err[512];

    if (key && end && state_etcd_delete_range(s, key, end, err, sizeof(err)) != 0)
        log_warn("state",
                 "cannot take back a failed commit's journal records (a load drops them): %s", err);
    free(key);
    free(end);
}

int state_etcd_journal_add(struct state *st, const struct journal_record *v, size_t n, char *err,
                           size_t errlen)
{
    struct est *s = est_of(st);
    uint64_t first = 0;
    int r = state_etcd_guard(s, err, errlen);

    if (!r && n)
        r = state_etcd_put_records(s, v, n, &first, err, errlen);
    if (r && s->journal_next > first && first)
        state_etcd_journal_take_back(s, first, s->journal_next);
    if (!r)
        state_etcd_map_records(s, v, n, first);
    return r;
}

/* What a load found under P/journal/. */
struct replay {
    struct est *s;
    uint64_t committed;
    struct journal_record *v; /* pending, in key order */
    size_t n, cap;
    char **drop; /* keys to delete */
    size_t n_drop, cap_drop;
    size_t uncommitted, bad, twice;
};

static int replay_drop(struct replay *p, const char *key)
{
    if (p->n_drop == p->cap_drop) {
        size_t cap = p->cap_drop ? 2 * p->cap_drop : 16;
        char **d = realloc(p->drop, cap * sizeof(*d));
        if (!d)
            return -ENOMEM;
        p->drop = d;
        p->cap_drop = cap;
    }
    p->drop[p->n_drop] = strdup(key);
    return p->drop[p->n_drop++] ? 0 : -ENOMEM;
}

static int replay_keep(struct replay *p, struct journal_record *rec, uint64_t seq)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        struct journal_record *v = realloc(p->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = *rec;
    memset(rec, 0, sizeof(*rec));
    return state_etcd_idmap_put(&p->s->ids, p->v[p->n - 1].id, seq);
}

static int replay_kv(void *ctx, const struct etcd_kv *kv)
{
    struct replay *p = ctx;
    uint64_t seq = state_etcd_seq(p->s, "/journal/", kv->key, kv->key_len);
    struct state_journal_replay j = {0};
    int r = seq ? state_parse_journal(kv->value, kv->value_len, p->committed, &j) : 0;

    if (r)
        return r;
    if (j.n == 1 && !state_etcd_idmap_find(&p->s->ids, j.v[0].id))
        r = replay_keep(p, &j.v[0], seq);
    else {
        /* Above the committed generation, damaged, or an id already pending (a compaction that
         * was cut short wrote it twice: the first stays). */
        p->uncommitted += j.uncommitted;
        p->twice += j.n;
        p->bad += !j.uncommitted && !j.n;
        r = replay_drop(p, kv->key);
    }
    state_journal_records_free(j.v, j.n);
    return r;
}

/* Deletes the keys a load dropped; it must work before anything new is written. */
static int drop_keys(struct est *s, char **keys, size_t n, char *err, size_t errlen)
{
    struct batch b = {s, NULL, 0, "journal"};
    int r = 0;

    for (size_t i = 0; i < n && !r; i++) {
        b.what = keys[i];
        r = state_etcd_batch_add(&b, etcd_op_delete(keys[i], NULL), 0, err, errlen);
    }
    r = state_etcd_batch_end(&b, r, err, errlen);
    return r;
}

int state_etcd_journal_load(struct state *st, uint64_t committed_gen, struct journal_record **out,
                            size_t *n, char *err, size_t errlen)
{
    struct est *s = est_of(st);
    char *key = state_etcd_key(s, "/journal/"), *end = key ? etcd_prefix_end(key) : NULL;
    struct replay p = {.s = s, .committed = committed_gen};
    struct range q = {.key = key, .end = end, .page = RECORD_PAGE};
    int r = state_etcd_guard(s, err, errlen);

    *out = NULL;
    *n = 0;
    state_etcd_idmap_clear(&s->ids);
    if (!r && (!key || !end))
        r = state_etcd_say(err, errlen, -ENOMEM, s->prefix, "out of memory");
    if (!r)
        r = state_etcd_range(s, &q, replay_kv, &p, err, errlen);
    if (r == -ENOMEM && !strstr(err, "memory"))
        state_etcd_say(err, errlen, r, key, "out of memory");
    if (!r && p.n_drop)
        r = drop_keys(s, p.drop, p.n_drop, err, errlen);
    if (!r && p.bad + p.twice)
        log_warn("state", "%s: dropped %zu damaged and %zu repeated record%s", key, p.bad, p.twice,
                 p.bad + p.twice == 1 ? "" : "s");
    if (!r && p.uncommitted)
        log_info("state",
                 "dropped %zu queued message%s of a commit that did not finish (the next poll "
                 "finds the same changes again)",
                 p.uncommitted, p.uncommitted == 1 ? "" : "s");
    for (size_t i = 0; i < p.n_drop; i++)
        free(p.drop[i]);
    free(p.drop);
    if (r) {
        state_etcd_idmap_clear(&s->ids);
        state_journal_records_free(p.v, p.n);
    } else {
        *out = p.v;
        *n = p.n;
    }
    free(key);
    free(end);
    return r;
}

/* Finds the seq of a pending record by its id in etcd (the id map does not know it). */
struct find_id {
    struct est *s;
    const char *id;
    uint64_t seq;
};

static int match_id(void *ctx, const struct etcd_kv *kv)
{
    struct find_id *f = ctx;
    struct state_journal_replay j = {0};
    uint64_t seq = state_etcd_seq(f->s, "/journal/", kv->key, kv->key_len);

    if (seq && state_parse_journal(kv->value, kv->value_len, UINT64_MAX, &j) == 0 && j.n == 1 &&
        strcmp(j.v[0].id, f->id) == 0)
        f->seq = seq;
    state_journal_records_free(j.v, j.n);
    return 0;
}

int state_etcd_journal_done(struct state *st, const char *id, const char *result)
{
    struct est *s = est_of(st);
    struct slot *slot = state_etcd_idmap_find(&s->ids, id);
    struct find_id f = {s, id, slot ? slot->seq : 0};
    char err[512], *key = NULL, *end = NULL;
    int r = state_etcd_guard(s, err, sizeof(err));

    if (!r && !f.seq) {
        key = state_etcd_key(s, "/journal/");
        end = key ? etcd_prefix_end(key) : NULL;
        struct range q = {.key = key, .end = end, .page = RECORD_PAGE};
        r = key && end ? state_etcd_range(s, &q, match_id, &f, err, sizeof(err)) : -ENOMEM;
        free(key);
        free(end);
    }
    key = !r && f.seq ? state_etcd_journal_key(s, f.seq) : NULL;
    if (key)
        r = state_etcd_fenced_op(s, etcd_op_delete(key, NULL), key, err, sizeof(err));
    else if (!r && f.seq)
        r = -ENOMEM;
    if (!r)
        state_etcd_idmap_del(&s->ids, id);
    else
        log_warn("state", "cannot record message %s as %s: %s", id, result,
                 r == -ENOMEM ? "out of memory" : err);
    free(key);
    return r;
}

int state_etcd_journal_clear(struct state *st)
{
    struct est *s = est_of(st);
    char err[512], *key = state_etcd_key(s, "/journal/");
    int r = key ? state_etcd_delete_range(s, key, NULL, err, sizeof(err)) : -ENOMEM;

    if (!r)
        state_etcd_idmap_clear(&s->ids);
    else
        log_warn("state", "cannot clear the journal: %s", key ? err : "out of memory");
    free(key);
    return r;
}

/* A record as stored: its key's seq, id and line. */
struct stored {
    uint64_t seq;
    char *id;
    char *line;
    int keep;
};

struct stored_all {
    struct est *s;
    struct stored *v;
    size_t n, cap;
};

static int take_stored(void *ctx, const struct etcd_kv *kv)
{
    struct stored_all *a = ctx;
    struct state_journal_replay j = {0};
    uint64_t seq = state_etcd_seq(a->s, "/journal/", kv->key, kv->key_len);
    int r = state_parse_journal(kv->value, kv->value_len, UINT64_MAX, &j);

    if (r)
        return r;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        struct stored *v = realloc(a->v, cap * sizeof(*v));
        if (!v) {
            state_journal_records_free(j.v, j.n);
            return -ENOMEM;
        }
        a->v = v;
        a->cap = cap;
    }
    /* A key that is not a valid record is stored with no id: compaction deletes it. */
    struct stored *x = &a->v[a->n++];
    x->seq = seq;
    x->id = seq && j.n == 1 ? strdup(j.v[0].id) : NULL;
    x->line = x->id ? strdup(kv->value) : NULL;
    x->keep = 0;
    state_journal_records_free(j.v, j.n);
    return x->id && !x->line ? -ENOMEM : 0;
}

static void stored_fini(struct stored_all *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->v[i].id);
        free(a->v[i].line);
    }
    free(a->v);
}

/* Per sink: the seq of its last record kept, and whether one had to be written anew. */
struct sink_order {
    const char *sink;
    uint64_t last;
    int rewrite;
};

/*
 * Decides which stored record stays: one equal to v[i], after the ones its sink kept before it
 * (a record written anew gets a higher seq, so every later record of its sink is written anew
 * too: the order within a sink is what the outbox relies on). Returns the stored index, or -1.
 */
static long keep_for(struct stored_all *a, struct idmap *where, struct sink_order *o,
                     const char *line, const char *id)
{
    struct slot *x = state_etcd_idmap_find(where, id);
    struct stored *st = x ? &a->v[x->seq] : NULL;

    if (o->rewrite || !st || st->keep || st->seq <= o->last || strcmp(st->line, line) != 0) {
        o->rewrite = 1;
        return -1;
    }
    st->keep = 1;
    o->last = st->seq;
    return (long)x->seq;
}

static struct sink_order *order_of(struct sink_order *v, size_t *n, const char *sink)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(v[i].sink, sink) == 0)
            return &v[i];
    }
    v[*n] = (struct sink_order){sink, 0, 0};
    return &v[(*n)++];
}

/* The puts and deletes that make the stored records exactly v; ids map to their seqs. */
static int compact_ops(struct est *s, struct stored_all *a, const struct journal_record *v,
                       size_t n, struct batch *b, struct idmap *ids, char *err, size_t errlen)
{
    struct idmap where = {0}; /* id -> index into a->v */
    struct sink_order *orders = calloc(n ? n : 1, sizeof(*orders));
    size_t n_orders = 0;
    int r = orders ? 0 : -ENOMEM;

    for (size_t i = 0; i < a->n && !r; i++)
        r = a->v[i].id ? state_etcd_idmap_put(&where, a->v[i].id, i) : 0;
    for (size_t i = 0; i < n && !r; i++) {
        char *line = state_format_journal_add(&v[i]), *key = NULL;
        long k =
            line ? keep_for(a, &where, order_of(orders, &n_orders, v[i].sink), line, v[i].id) : -1;
        if (!line) {
            r = -ENOMEM;
        } else if (k >= 0) {
            r = state_etcd_idmap_put(ids, v[i].id, a->v[k].seq);
        } else {
            uint64_t seq = s->journal_next++;
            key = state_etcd_journal_key(s, seq);
            r = state_etcd_batch_add(b, key ? etcd_op_put(key, line, strlen(line), 0) : NULL,
                                     strlen(line), err, errlen);
            if (!r)
                r = state_etcd_idmap_put(ids, v[i].id, seq);
        }
        free(line);
        free(key);
    }
    /* Deletes after the puts: cut short between two txns, a record is there twice (a load
     * keeps the first), never missing. */
    for (size_t i = 0; i < a->n && !r; i++) {
        char *key = a->v[i].keep ? NULL : state_etcd_journal_key(s, a->v[i].seq);
        if (!a->v[i].keep)
            r = state_etcd_batch_add(b, key ? etcd_op_delete(key, NULL) : NULL, 0, err, errlen);
        free(key);
    }
    if (r == -ENOMEM)
        state_etcd_say(err, errlen, r, b->what, "out of memory");
    state_etcd_idmap_clear(&where);
    free(orders);
    return r;
}

int state_etcd_journal_compact(struct state *st, const struct journal_record *v, size_t n)
{
    struct est *s = est_of(st);
    char err[512], *key = state_etcd_key(s, "/journal/"), *end = key ? etcd_prefix_end(key) : NULL;
    struct stored_all a = {.s = s};
    struct range q = {.key = key, .end = end, .page = RECORD_PAGE};
    struct batch b = {s, NULL, 0, key};
    struct idmap ids = {0};
    int r = state_etcd_guard(s, err, sizeof(err));

    if (!r && (!key || !end))
        r = state_etcd_say(err, sizeof(err), -ENOMEM, s->prefix, "out of memory");
    if (!r)
        r = state_etcd_range(s, &q, take_stored, &a, err, sizeof(err));
    if (!r)
        r = compact_ops(s, &a, v, n, &b, &ids, err, sizeof(err));
    if (!r)
        r = state_etcd_batch_flush(&b, err, sizeof(err));
    if (!r) {
        state_etcd_idmap_clear(&s->ids);
        s->ids = ids;
    } else {
        state_etcd_idmap_clear(&ids);
        log_warn("state", "cannot compact the journal: %s", err);
    }
    state_etcd_batch_fini(&b);
    stored_fini(&a);
    free(key);
    free(end);
    return r;
}
