/*
 * The etcd state backend's access layer (state_etcd_kv.h): key names, reads paged at one
 * revision, and the only way it writes: txns fenced on the leader key's lease, gathered into
 * batches that stay within etcd's --max-txn-ops and --max-request-bytes. Plus the id map the
 * journal uses to find a record's key by its id.
 */
#include "state_etcd_kv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* ---- the id map: open addressing, linear probing, deletion by backward shift ---- */

static size_t id_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

struct slot *state_etcd_idmap_find(const struct idmap *m, const char *id)
{
    for (size_t i = m->cap ? id_hash(id) & (m->cap - 1) : 0; m->cap && m->v[i].id;
         i = (i + 1) & (m->cap - 1)) {
        if (strcmp(m->v[i].id, id) == 0)
            return &m->v[i];
    }
    return NULL;
}

void state_etcd_idmap_clear(struct idmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->v[i].id);
    free(m->v);
    memset(m, 0, sizeof(*m));
}

/* Places id (owned now) without growing: there is room. */
static void idmap_place(struct idmap *m, char *id, uint64_t seq)
{
    size_t i = id_hash(id) & (m->cap - 1);

    while (m->v[i].id)
        i = (i + 1) & (m->cap - 1);
    m->v[i].id = id;
    m->v[i].seq = seq;
    m->n++;
}

/* Maps id to seq (replacing an earlier seq). 0 or -ENOMEM. */
int state_etcd_idmap_put(struct idmap *m, const char *id, uint64_t seq)
{
    struct slot *s = state_etcd_idmap_find(m, id);
    char *copy;

    if (s) {
        s->seq = seq;
        return 0;
    }
    if ((m->n + 1) * 2 > m->cap) {
        struct idmap bigger = {calloc(m->cap ? m->cap * 2 : 64, sizeof(struct slot)),
                               m->cap ? m->cap * 2 : 64, 0};
        if (!bigger.v)
            return -ENOMEM;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->v[i].id)
                idmap_place(&bigger, m->v[i].id, m->v[i].seq);
        }
        free(m->v);
        *m = bigger;
    }
    copy = strdup(id);
    if (!copy)
        return -ENOMEM;
    idmap_place(m, copy, seq);
    return 0;
}

void state_etcd_idmap_del(struct idmap *m, const char *id)
{
    struct slot *s = state_etcd_idmap_find(m, id);

    if (!s)
        return;
    free(s->id);
    s->id = NULL;
    m->n--;
    /* Pull back every later entry of the run that its probe would no longer reach. */
    size_t hole = (size_t)(s - m->v);
    for (size_t i = (hole + 1) & (m->cap - 1); m->v[i].id; i = (i + 1) & (m->cap - 1)) {
        size_t home = id_hash(m->v[i].id) & (m->cap - 1);
        if (((i - home) & (m->cap - 1)) >= ((i - hole) & (m->cap - 1))) {
            m->v[hole] = m->v[i];
            m->v[i].id = NULL;
            hole = i;
        }
    }
}

/* ---- keys ---- */

/* P + the formatted rest (caller frees), or NULL on ENOMEM. */
__attribute__((format(printf, 2, 3))) char *state_etcd_key(const struct est *s, const char *fmt,
                                                           ...)
{
    char *rest = NULL, *key = NULL;
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(&rest, fmt, ap) < 0)
        rest = NULL;
    va_end(ap);
    if (rest && asprintf(&key, "%s%s", s->prefix, rest) < 0)
        key = NULL;
    free(rest);
    return key;
}

char *state_etcd_journal_key(const struct est *s, uint64_t seq)
{
    return state_etcd_key(s, "/journal/%020" PRIu64, seq);
}

/* The seq of a key named "<dir>/<20 digits>" under P, or 0 when it is not such a key. */
uint64_t state_etcd_seq(const struct est *s, const char *dir, const char *key, size_t len)
{
    size_t p = strlen(s->prefix), d = strlen(dir);
    uint64_t v = 0;

    if (len != p + d + 20 || strncmp(key, s->prefix, p) != 0 || strncmp(key + p, dir, d) != 0)
        return 0;
    for (const char *c = key + p + d; c < key + len; c++) {
        if (*c < '0' || *c > '9' || v > (UINT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (uint64_t)(*c - '0');
    }
    return v;
}

/* ---- reading ---- */

static json_t *range_request(const struct range *q, const char *from)
{
    json_t *body = etcd_op_body(etcd_op_range(from, q->end));
    int bad = !body;

    if (!bad && q->page)
        bad |= json_object_set_new(body, "limit", json_integer(q->page));
    if (!bad && q->revision)
        bad |= json_object_set_new(body, "revision", json_integer(q->revision));
    if (!bad && q->keys_only)
        bad |= json_object_set_new(body, "keys_only", json_true());
    if (!bad && q->sort) {
        bad |= json_object_set_new(body, "sort_order", json_string(q->sort));
        bad |= json_object_set_new(body, "sort_target", json_string("KEY"));
    }
    if (bad) {
        json_decref(body);
        return NULL;
    }
    return body;
}

/* "etcd key K: what" into err; returns r. */
int state_etcd_say(char *err, size_t errlen, int r, const char *key, const char *what)
{
    snprintf(err, errlen, "etcd key %s: %s", key, what);
    return r;
}

/* One page of q from key from: calls fn for each kv but skip (the last of the page before). */
static int range_page(struct est *s, struct range *q, const char *from, kv_fn fn, void *ctx,
                      char **last, int *more, char *err, size_t errlen)
{
    struct etcd_reply rep;
    struct etcd_kv *kv = NULL;
    size_t n = 0;
    int r;

    if (s->renew)
        s->renew(s->userdata);
    r = etcd_call_sync(s->e, "/v3/kv/range", range_request(q, from), &rep);
    if (r) {
        state_etcd_say(err, errlen, r, q->key, rep.message);
        goto out;
    }
    if (!q->revision)
        q->revision = rep.revision;
    r = etcd_kvs(rep.body, &kv, &n);
    if (r) {
        state_etcd_say(err, errlen, r, q->key, "etcd's answer has damaged keys or values");
        goto out;
    }
    *more = json_is_true(json_object_get(rep.body, "more")) && n > 0;
    for (size_t i = 0; i < n && !r; i++) {
        /* Pages overlap by one key (each starts at the last one of the page before). */
        if (*last && strcmp(kv[i].key, *last) == 0)
            continue;
        r = fn(ctx, &kv[i]);
    }
    if (!r && n) {
        free(*last);
        *last = strdup(kv[n - 1].key);
        r = *last ? 0 : state_etcd_say(err, errlen, -ENOMEM, q->key, "out of memory");
    }
out:
    etcd_kvs_free(kv, n);
    etcd_reply_fini(&rep);
    return r;
}

/* Every key of q, in key order (or q->sort's), at one revision. 0 or -errno (err). */
int state_etcd_range(struct est *s, struct range *q, kv_fn fn, void *ctx, char *err, size_t errlen)
{
    char *last = NULL;
    int more = 1, r = 0;

    if (q->page == 1 || q->sort)
        more = 0; /* one page is all that is wanted */
    r = range_page(s, q, q->key, fn, ctx, &last, &more, err, errlen);
    while (!r && more && !q->sort)
        r = range_page(s, q, last, fn, ctx, &last, &more, err, errlen);
    free(last);
    return r;
}

int state_etcd_take_one(void *ctx, const struct etcd_kv *kv)
{
    struct one *o = ctx;

    o->kv = *kv;
    o->kv.key = strdup(kv->key);
    o->kv.value = malloc(kv->value_len + 1);
    if (!o->kv.key || !o->kv.value) {
        free(o->kv.key);
        free(o->kv.value);
        return -ENOMEM;
    }
    memcpy(o->kv.value, kv->value, kv->value_len + 1);
    o->found = 1;
    return 0;
}

void state_etcd_one_fini(struct one *o)
{
    if (o->found) {
        free(o->kv.key);
        free(o->kv.value);
    }
    memset(o, 0, sizeof(*o));
}

/* Reads key into *o (o->found 0 when absent); *revision gets the answer's. 0 or -errno. */
int state_etcd_get(struct est *s, const char *key, struct one *o, int64_t *revision, char *err,
                   size_t errlen)
{
    struct range q = {.key = key, .page = 1};
    int r;

    memset(o, 0, sizeof(*o));
    r = state_etcd_range(s, &q, state_etcd_take_one, o, err, errlen);
    if (r == -ENOMEM)
        state_etcd_say(err, errlen, r, key, "out of memory");
    if (revision)
        *revision = q.revision;
    return r;
}

/* ---- writing: state_etcd_fenced txns ---- */

static int lost(struct est *s, char *err, size_t errlen)
{
    if (s->lost == STATE_ETCD_UNSURE)
        snprintf(err, errlen,
                 "etcd never said whether the last commit under %s happened: the state must be "
                 "loaded again before anything else is written",
                 s->prefix);
    else
        snprintf(err, errlen, "leadership lost: %s is no longer held by this replica's lease",
                 s->leader_key);
    return -ENOLCK;
}

/* Whether writing is allowed at all: read-only, lost, or a lease that may have expired. */
int state_etcd_guard(struct est *s, char *err, size_t errlen)
{
    if (s->readonly) {
        snprintf(err, errlen, "the etcd state under %s was opened read-only", s->prefix);
        return -EROFS;
    }
    if (s->lost)
        return lost(s, err, errlen);
    if (s->renew)
        s->renew(s->userdata);
    if (s->valid(s->userdata, err, errlen) != 0)
        return -ENOLCK;
    return 0;
}

/* Runs ops (an array; stolen) as one txn state_etcd_fenced on our lease. what names the key(s)
 * written. */
int state_etcd_fenced(struct est *s, json_t *ops, const char *what, char *err, size_t errlen)
{
    struct etcd_reply rep;
    json_t *cmp;
    int r = state_etcd_guard(s, err, errlen);

    if (r) {
        json_decref(ops);
        return r;
    }
    cmp = json_array();
    if (!cmp || json_array_append_new(cmp, etcd_cmp_lease(s->leader_key, s->lease)) != 0) {
        json_decref(cmp);
        json_decref(ops);
        return state_etcd_say(err, errlen, -ENOMEM, what, "out of memory");
    }
    r = etcd_call_sync(s->e, "/v3/kv/txn", etcd_txn(cmp, ops, NULL), &rep);
    if (r) {
        state_etcd_say(err, errlen, r, what, rep.message);
    } else if (!etcd_txn_succeeded(rep.body)) {
        if (!s->lost)
            log_warn("state", "leadership lost: %s is no longer held by this replica's lease",
                     s->leader_key);
        s->lost = STATE_ETCD_LOST;
        r = lost(s, err, errlen);
    }
    etcd_reply_fini(&rep);
    return r;
}

int state_etcd_batch_flush(struct batch *b, char *err, size_t errlen)
{
    json_t *ops = b->ops;

    if (!ops || json_array_size(ops) == 0)
        return 0;
    b->ops = NULL;
    b->bytes = 0;
    return state_etcd_fenced(b->s, ops, b->what, err, errlen);
}

/* Adds op (stolen; NULL is ENOMEM) of bytes value bytes, flushing first when it would not fit. */
int state_etcd_batch_add(struct batch *b, json_t *op, size_t bytes, char *err, size_t errlen)
{
    int r = 0;

    if (!op)
        return state_etcd_say(err, errlen, -ENOMEM, b->what, "out of memory");
    if (b->ops && (json_array_size(b->ops) >= TXN_OPS_MAX || b->bytes + bytes > TXN_BYTES_MAX))
        r = state_etcd_batch_flush(b, err, errlen);
    if (!r && !b->ops)
        b->ops = json_array();
    if (r || !b->ops || json_array_append_new(b->ops, op) != 0) {
        if (r || !b->ops)
            json_decref(op);
        return r ? r : state_etcd_say(err, errlen, -ENOMEM, b->what, "out of memory");
    }
    b->bytes += bytes;
    return 0;
}

int state_etcd_batch_end(struct batch *b, int r, char *err, size_t errlen)
{
    if (!r)
        r = state_etcd_batch_flush(b, err, errlen);
    state_etcd_batch_fini(b);
    return r;
}

void state_etcd_batch_fini(struct batch *b)
{
    json_decref(b->ops);
    b->ops = NULL;
}

/* One state_etcd_fenced txn of one op (stolen). */
int state_etcd_fenced_op(struct est *s, json_t *op, const char *what, char *err, size_t errlen)
{
    json_t *ops = op ? json_array() : NULL;

    if (!ops || json_array_append_new(ops, op) != 0) {
        json_decref(ops);
        if (!ops)
            json_decref(op);
        return state_etcd_say(err, errlen, -ENOMEM, what, "out of memory");
    }
    return state_etcd_fenced(s, ops, what, err, errlen);
}

/* Deletes [key, end) state_etcd_fenced; the end of the prefix key when end is NULL. */
int state_etcd_delete_range(struct est *s, const char *key, const char *end, char *err,
                            size_t errlen)
{
    char *pend = end ? NULL : etcd_prefix_end(key);

    if (!end && !pend)
        return state_etcd_say(err, errlen, -ENOMEM, key, "out of memory");
    int r = state_etcd_fenced_op(s, etcd_op_delete(key, end ? end : pend), key, err, errlen);
    free(pend);
    return r;
}
