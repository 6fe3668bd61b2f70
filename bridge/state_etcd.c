/*
 * The etcd state backend (state.h, state_open_etcd()): the records of state_format.h under a key
 * prefix P in etcd, for replicas that share one state (issue 12). It blocks like the directory
 * backend does (every call is an etcd_call_sync()), and doc/etcd.md has the etcd facts it uses.
 *
 * Keys under P (all values are exactly the bytes state_format.c writes for the directory):
 *   P/leader                     the election's key (cluster.c); its value is the leader's
 *                                member name. Only compared on here, never written.
 *   P/snapshot                   the pointer: {"generation":G,"chunks":N,"bytes":B,"sha256":hex}
 *   P/snapshot/<G:020>/<i:06>    the snapshot document in N chunks of at most 512 KiB
 *   P/snapshot.corrupt           a pointer that failed to load, moved aside for the operator
 *   P/journal/<seq:020>          one pending journal record ("add" line); seq only grows
 *   P/deadletter/<seq:020>       a dead letter (record, reason, time); the newest 1000 kept
 *   P/sync/<key>                 a chat client's sync position
 *   P/subscriptions/<key>        one channel's subscription record; key is the hex SHA-256 of
 *                                "<platform>:<channel>" (state_subscription_key())
 *
 * Invariants:
 *   - Fencing: every write is one txn whose compare is "P/leader is attached to our lease"
 *     (etcd_cmp_lease), after state_lease.valid() said on the monotonic clock that the lease
 *     cannot have expired. A txn whose compare fails means another replica leads: the state is
 *     lost for good (every later write and state_check() say -ENOLCK), never retried.
 *   - The commit point is one small txn, the put of P/snapshot. Before it, the batch's journal
 *     records are put (they carry the batch's generation, above the committed one, so a load
 *     drops them if the pointer never moves) and then the chunks under the new generation (no
 *     reader looks there before the pointer does). That is why a batch or a snapshot bigger than
 *     one txn (etcd's --max-txn-ops, 128, and --max-request-bytes, 1.5 MiB) may be split.
 *   - A reader takes the pointer and the chunks at one revision, so a commit going on at the
 *     same time cannot mix two snapshots; the length and SHA-256 in the pointer catch anything
 *     else (a save that rewrites the chunks of the current generation in place and dies half-way
 *     reads as corrupt, never as a mix: the bridge's commits always take a new generation).
 *   - Every write is idempotent (puts of fixed values, deletes), because etcd.c may repeat a
 *     call on another endpoint after a timeout.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "etcd.h"
#include "hmac.h"
#include "log.h"
#include "state_etcd_kv.h"
#include "state_format.h"

#define CHUNK_MAX         (512 * 1024) /* raw bytes of snapshot per chunk */
#define CHUNK_PAGE        8            /* chunks per range answer: ~5.6 MB of base64 JSON */
#define DEADLETTERS_KEPT  1000
#define POINTER_MAX       4096
#define SYNC_POSITION_MAX (64L * 1024) /* as the directory's: a bigger one is damaged */
#define SNAPSHOT_MAX      (1024L * 1024 * 1024)

static const struct state_backend_ops state_etcd_ops;

static char *chunk_key(const struct est *s, uint64_t gen, size_t i)
{
    return state_etcd_key(s, "/snapshot/%020" PRIu64 "/%06zu", gen, i);
}

/* ---- the snapshot ---- */

struct pointer {
    uint64_t generation;
    size_t chunks;
    size_t bytes;
    char sha256[65];
};

/* The pointer's JSON (caller frees), or NULL on ENOMEM. */
static char *pointer_text(const struct pointer *p)
{
    json_t *o =
        json_pack("{s:I, s:I, s:I, s:s}", "generation", (json_int_t)p->generation, "chunks",
                  (json_int_t)p->chunks, "bytes", (json_int_t)p->bytes, "sha256", p->sha256);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    return s;
}

/* Reads a pointer. 0, or -EPROTO with why filled. */
static int pointer_parse(const char *text, size_t len, struct pointer *p, char *why, size_t whylen)
{
    json_error_t jerr;
    json_t *o = len <= POINTER_MAX ? json_loadb(text, len, 0, &jerr) : NULL;
    json_t *g = json_object_get(o, "generation"), *c = json_object_get(o, "chunks");
    json_t *b = json_object_get(o, "bytes");
    const char *h = json_string_value(json_object_get(o, "sha256"));
    int r = -EPROTO;

    memset(p, 0, sizeof(*p));
    if (!json_is_object(o))
        snprintf(why, whylen, "the pointer is not a JSON object");
    else if (!json_is_integer(g) || !json_is_integer(c) || !json_is_integer(b) || !h)
        snprintf(why, whylen, "the pointer lacks generation, chunks, bytes or sha256");
    else if (json_integer_value(c) < 1 || json_integer_value(c) > 999999 ||
             json_integer_value(b) < 0 || json_integer_value(b) > SNAPSHOT_MAX ||
             json_integer_value(c) > json_integer_value(b) + 1 || strlen(h) != 64)
        snprintf(why, whylen, "the pointer's chunks, bytes or sha256 are out of range");
    else {
        p->generation = (uint64_t)json_integer_value(g);
        p->chunks = (size_t)json_integer_value(c);
        p->bytes = (size_t)json_integer_value(b);
        memcpy(p->sha256, h, 65);
        r = 0;
    }
    json_decref(o);
    return r;
}

/* A memory stream, and the state whose lease a long write must keep alive. */
struct mem {
    FILE *f;
    struct est *s; /* NULL: nothing to renew */
    size_t since;  /* bytes since the last look at the lease */
};

/* Collects what put gets; every MiB or so lets the lease be renewed (state.h): writing a large
 * snapshot out holds the loop for longer than a short lease's keep-alive interval. */
static int mem_put(void *ctx, const char *p, size_t n)
{
    struct mem *m = ctx;

    m->since += n;
    if (m->s && m->s->renew && m->since >= (1u << 20)) {
        m->since = 0;
        m->s->renew(m->s->userdata);
    }
    return fwrite(p, 1, n, m->f) == n ? 0 : -ENOMEM;
}

/* s's document as state_format writes it (caller frees). 0 or -ENOMEM. */
static int snapshot_text(struct est *s, const struct snapshot *snap, int64_t now, char **out,
                         size_t *len)
{
    struct mem m = {open_memstream(out, len), s, 0};
    int r = m.f ? state_format_snapshot(snap, now, mem_put, &m) : -ENOMEM;

    if (m.f && fclose(m.f) != 0 && !r)
        r = -ENOMEM;
    if (r) {
        free(m.f ? *out : NULL);
        *out = NULL;
    }
    return r;
}

/* Puts the chunks of text under generation gen (step 2 of a commit). */
static int put_chunks(struct est *s, uint64_t gen, const char *text, size_t len, size_t *chunks,
                      char *err, size_t errlen)
{
    char *what = state_etcd_key(s, "/snapshot/%020" PRIu64 "/", gen);
    struct batch b = {s, NULL, 0, what ? what : "snapshot chunks"};
    size_t n = len ? (len + CHUNK_MAX - 1) / CHUNK_MAX : 1;
    int r = 0;

    for (size_t i = 0; i < n && !r; i++) {
        size_t off = i * CHUNK_MAX, k = len - off < CHUNK_MAX ? len - off : CHUNK_MAX;
        char *key = chunk_key(s, gen, i);
        r = state_etcd_batch_add(&b, key ? etcd_op_put(key, text + off, k, 0) : NULL, k, err,
                                 errlen);
        free(key);
    }
    r = state_etcd_batch_end(&b, r, err, errlen);
    free(what);
    *chunks = n;
    return r;
}

/* The chunk range of gen: [P/snapshot/<gen>/, P/snapshot/<gen>0) (caller frees both). */
static int chunk_range(const struct est *s, uint64_t gen, char **key, char **end)
{
    *key = state_etcd_key(s, "/snapshot/%020" PRIu64 "/", gen);
    *end = state_etcd_key(s, "/snapshot/%020" PRIu64 "0", gen); /* '0' is '/' + 1 */
    return *key && *end ? 0 : -ENOMEM;
}

/* Deletes every chunk of a generation but keep's (step 4 of a commit): only warns. */
static void delete_other_chunks(struct est *s, uint64_t keep)
{
    char *all = state_etcd_key(s, "/snapshot/"), *allend = all ? etcd_prefix_end(all) : NULL;
    char *key = NULL, *end = NULL, err[512];
    json_t *ops = json_array();
    int r = chunk_range(s, keep, &key, &end);

    if (!r &&
        (!all || !allend || !ops || json_array_append_new(ops, etcd_op_delete(all, key)) != 0 ||
         json_array_append_new(ops, etcd_op_delete(end, allend)) != 0))
        r = -ENOMEM;
    if (!r) {
        r = state_etcd_fenced(s, ops, all, err, sizeof(err));
        ops = NULL;
    } else {
        snprintf(err, sizeof(err), "out of memory");
    }
    if (r)
        log_warn("state", "cannot delete older snapshot chunks: %s", err);
    json_decref(ops);
    free(all);
    free(allend);
    free(key);
    free(end);
}

static int pointer_names(struct est *s, uint64_t gen);

/* Takes back a failed commit's chunks of gen and journal seqs [first, next): best effort. */
void state_etcd_take_back(struct est *s, uint64_t gen, int chunks, uint64_t first, uint64_t next)
{
    char *key = NULL, *end = NULL, err[512];

    if (s->lost)
        return; /* nothing can be written any more; the next leader's load drops it all */
    /* Never the chunks the pointer names (a save of the current generation), nor when unsure. */
    if (chunks && pointer_names(s, gen) == 0 && chunk_range(s, gen, &key, &end) == 0 &&
        state_etcd_delete_range(s, key, end, err, sizeof(err)) != 0)
        log_warn("state", "cannot take back a failed commit's chunks: %s", err);
    free(key);
    free(end);
    state_etcd_journal_take_back(s, first, next);
}

/* Whether P/snapshot names gen now: 1, 0, or -errno when that cannot be read. */
static int pointer_names(struct est *s, uint64_t gen)
{
    char *key = state_etcd_key(s, "/snapshot"), why[256];
    struct one o;
    struct pointer p;
    int r = key ? state_etcd_get(s, key, &o, NULL, why, sizeof(why)) : -ENOMEM;

    if (!r) {
        r = o.found && pointer_parse(o.kv.value, o.kv.value_len, &p, why, sizeof(why)) == 0 &&
            p.generation == gen;
        state_etcd_one_fini(&o);
    }
    free(key);
    return r;
}

/*
 * Steps 2 to 4 of a commit (state_etcd.c's header): the chunks of snap, the pointer, the older
 * chunks gone. *written tells the caller what to take back on failure: 0 nothing of the
 * snapshot, 1 its chunks, -1 nothing at all (the commit may have happened: etcd did not say).
 */
static int write_snapshot(struct est *s, const struct snapshot *snap, int64_t now, int *written,
                          char *err, size_t errlen)
{
    struct pointer p = {.generation = snap->generation};
    char *text = NULL, *ptext = NULL, *key = state_etcd_key(s, "/snapshot");
    int r = key ? snapshot_text(s, snap, now, &text, &p.bytes) : -ENOMEM;

    *written = 0;
    if (!r)
        r = hmac_sha256_digest_hex(text, p.bytes, p.sha256);
    if (r) {
        state_etcd_say(err, errlen, r, key ? key : s->prefix, "out of memory");
        goto out;
    }
    r = put_chunks(s, p.generation, text, p.bytes, &p.chunks, err, errlen);
    *written = 1;
    if (r)
        goto out;
    ptext = pointer_text(&p);
    r = ptext ? state_etcd_fenced_op(s, etcd_op_put(key, ptext, strlen(ptext), 0), key, err, errlen)
              : state_etcd_say(err, errlen, -ENOMEM, key, "out of memory");
    if (r == -EHOSTUNREACH || r == -EPROTO) {
        /* The answer was lost, not necessarily the write: look before taking anything back. */
        int named = pointer_names(s, p.generation);
        if (named == 1) {
            log_info("state", "%s: the commit of generation %" PRIu64 " went through after all",
                     key, p.generation);
            r = 0;
        } else if (named < 0) {
            /*
             * Leave it all: a load reads whichever is current. Until then this replica must
             * not go on from a snapshot that may be stale (a next commit would announce the
             * same changes again under new ids): it stops as if it had lost the lease.
             */
            *written = -1;
            s->lost = STATE_ETCD_UNSURE;
        }
    }
    if (!r)
        delete_other_chunks(s, p.generation);
out:
    free(text);
    free(ptext);
    free(key);
    return r;
}

/* Collects chunks in order into buf, checking names and sizes. */
struct chunks {
    struct est *s;
    const struct pointer *p;
    char *buf;
    size_t len, next;
    char why[200];
};

static int take_chunk(void *ctx, const struct etcd_kv *kv)
{
    struct chunks *c = ctx;
    char *want = chunk_key(c->s, c->p->generation, c->next);

    if (!want)
        return -ENOMEM;
    if (strcmp(kv->key, want) != 0)
        snprintf(c->why, sizeof(c->why), "chunk %zu is missing", c->next);
    else if (kv->value_len > c->p->bytes - c->len)
        snprintf(c->why, sizeof(c->why), "the chunks hold more than %zu bytes", c->p->bytes);
    free(want);
    if (c->why[0])
        return -EPROTO;
    /* Grown as the chunks come, so a damaged pointer's size costs nothing until it is true. */
    char *buf = realloc(c->buf, c->len + kv->value_len + 1);
    if (!buf)
        return -ENOMEM;
    c->buf = buf;
    memcpy(c->buf + c->len, kv->value, kv->value_len);
    c->len += kv->value_len;
    c->next++;
    return 0;
}

/* The snapshot document p names, read at revision (NUL-terminated; caller frees). */
static int read_chunks(struct est *s, const struct pointer *p, int64_t revision, char **out,
                       char *why, size_t whylen, char *err, size_t errlen)
{
    struct chunks c = {.s = s, .p = p, .buf = malloc(1)};
    char *key = chunk_key(s, p->generation, 0), *end = chunk_key(s, p->generation, p->chunks);
    struct range q = {.key = key, .end = end, .revision = revision, .page = CHUNK_PAGE};
    int r = c.buf && key && end ? state_etcd_range(s, &q, take_chunk, &c, err, errlen) : -ENOMEM;

    if (r == -EPROTO && c.why[0]) {
        snprintf(why, whylen, "%s", c.why);
    } else if (!r && (c.next != p->chunks || c.len != p->bytes)) {
        snprintf(why, whylen, "%zu of %zu chunks with %zu of %zu bytes", c.next, p->chunks, c.len,
                 p->bytes);
        r = -EPROTO;
    } else if (r == -ENOMEM) {
        snprintf(err, errlen, "out of memory reading %zu bytes of snapshot", p->bytes);
    }
    if (!r) {
        c.buf[c.len] = '\0';
        *out = c.buf;
        c.buf = NULL;
    }
    free(c.buf);
    free(key);
    free(end);
    return r;
}

/* Checks the document against the pointer and parses it: 0, -EPROTO (why), other -errno. */
static int parse_document(const struct pointer *p, const char *text, struct snapshot *out,
                          char *why, size_t whylen)
{
    char sum[65];
    int r;

    r = hmac_sha256_digest_hex(text, p->bytes, sum);
    if (r) {
        snprintf(why, whylen, "out of memory");
        return r;
    }
    if (strcmp(sum, p->sha256) != 0) {
        snprintf(why, whylen, "the chunks' SHA-256 is %s, the pointer says %s", sum, p->sha256);
        return -EPROTO;
    }
    r = state_parse_snapshot(text, p->bytes, out, why, whylen);
    if (!r && out->generation != p->generation) {
        snprintf(why, whylen, "the snapshot says generation %" PRIu64 ", the pointer %" PRIu64,
                 out->generation, p->generation);
        snapshot_fini(out);
        r = -EPROTO;
    }
    return r;
}

/* A corrupt pointer goes to P/snapshot.corrupt (writable states only); the next load is NONE. */
static int move_aside(struct est *s, const char *key, const struct one *o, char *err, size_t errlen)
{
    char *aside = state_etcd_key(s, "/snapshot.corrupt"), why[512];
    json_t *ops = json_array();
    size_t l = strlen(err);
    int r = -ENOMEM;

    if (aside && ops &&
        json_array_append_new(ops, etcd_op_put(aside, o->kv.value, o->kv.value_len, 0)) == 0 &&
        json_array_append_new(ops, etcd_op_delete(key, NULL)) == 0) {
        r = state_etcd_fenced(s, ops, key, why, sizeof(why));
        ops = NULL;
    } else {
        snprintf(why, sizeof(why), "out of memory");
    }
    if (r)
        snprintf(err + l, errlen - l, "; cannot move it aside: %s", why);
    else
        snprintf(err + l, errlen - l, "; the pointer moved to %s", aside);
    json_decref(ops);
    free(aside);
    return r;
}

/*
 * No pointer: STATE_NONE. Whether a commit ever happened is known here, unlike in a directory
 * whose snapshot file may have been deleted: without a pointer moved aside as corrupt, none did,
 * and the journal's records above generation 0 are a first commit that never completed
 * (state_etcd_journal_load() drops them).
 */
static int nothing_committed(struct est *s, const char *key, char *err, size_t errlen)
{
    char *aside = state_etcd_key(s, "/snapshot.corrupt");
    struct one o;
    int r = aside ? state_etcd_get(s, aside, &o, NULL, err, errlen)
                  : state_etcd_say(err, errlen, -ENOMEM, key, "out of memory");

    free(aside);
    if (!r)
        s->never_committed = !o.found;
    state_etcd_one_fini(&o);
    if (r)
        return r;
    err[0] = '\0';
    return STATE_NONE;
}

/* One attempt at a load; -EAGAIN when etcd compacted the revision away meanwhile. */
static int load_once(struct est *s, const char *key, struct snapshot *out, char *err, size_t errlen)
{
    struct one o;
    struct pointer p;
    int64_t rev = 0;
    char why[256] = "", *text = NULL;
    int r;

    err[0] = '\0';
    r = state_etcd_get(s, key, &o, &rev, err, errlen);

    if (r)
        return r;
    if (!o.found)
        return nothing_committed(s, key, err, errlen);
    r = pointer_parse(o.kv.value, o.kv.value_len, &p, why, sizeof(why));
    if (!r)
        r = read_chunks(s, &p, rev, &text, why, sizeof(why), err, errlen);
    if (r && strstr(err, "compacted")) {
        r = -EAGAIN;
        goto out;
    }
    if (!r)
        r = parse_document(&p, text, out, why, sizeof(why));
    if (r == 0) {
        r = STATE_LOADED;
    } else if (r == -EPROTONOSUPPORT || (r == -ENOMEM && !err[0])) {
        state_etcd_say(err, errlen, r, key, r == -ENOMEM ? "out of memory" : why);
    } else if (r == -EPROTO && why[0]) {
        snprintf(err, errlen, "etcd key %s (generation %" PRIu64 ") is corrupt: %s", key,
                 p.generation, why);
        r = STATE_CORRUPT;
        if (!s->readonly && move_aside(s, key, &o, err, errlen) != 0)
            r = -EIO;
    }
out:
    free(text);
    state_etcd_one_fini(&o);
    return r;
}

static int est_load(struct state *st, struct snapshot *out, char *err, size_t errlen)
{
    struct est *s = est_of(st);
    char *key = state_etcd_key(s, "/snapshot");
    int r = -EAGAIN;

    memset(out, 0, sizeof(*out));
    if (!key)
        return state_etcd_say(err, errlen, -ENOMEM, s->prefix, "out of memory");
    /* A revision compacted between the pointer and the chunks: read both again, newer. */
    for (int i = 0; i < 3 && r == -EAGAIN; i++)
        r = load_once(s, key, out, err, errlen);
    if (r == -EAGAIN)
        state_etcd_say(err, errlen, -EIO, key,
                       "etcd compacted the revision away three times in a row");
    free(key);
    return r == -EAGAIN ? -EIO : r;
}

static int est_save(struct state *st, const struct snapshot *snap, int64_t now, char *err,
                    size_t errlen)
{
    struct est *s = est_of(st);
    int chunks = 0;
    int r = state_etcd_guard(s, err, errlen);

    if (r)
        return r;
    r = write_snapshot(s, snap, now, &chunks, err, errlen);
    if (r && chunks > 0)
        state_etcd_take_back(s, snap->generation, 1, 0, 0);
    return r;
}

static int est_commit(struct state *st, const struct snapshot *snap, const struct journal_record *v,
                      size_t n, int64_t now, char *err, size_t errlen)
{
    struct est *s = est_of(st);
    uint64_t first = s->journal_next;
    int chunks = 0;
    int r = state_etcd_guard(s, err, errlen);

    if (r)
        return r;
    /* Step 1: the records, above the committed generation until the pointer moves. */
    r = state_etcd_put_records(s, v, n, &first, err, errlen);
    if (!r)
        r = write_snapshot(s, snap, now, &chunks, err, errlen);
    if (r) {
        if (chunks >= 0)
            state_etcd_take_back(s, snap->generation, chunks, first, s->journal_next);
        return r;
    }
    state_etcd_map_records(s, v, n, first);
    return 0;
}

/* ---- dead letters ---- */

static int est_deadletter(struct state *st, const struct journal_record *rec, const char *reason)
{
    struct est *s = est_of(st);
    char err[512], *line = state_format_deadletter(rec, reason, (int64_t)time(NULL));
    uint64_t seq = s->dead_next;
    char *key = state_etcd_key(s, "/deadletter/%020" PRIu64, seq);
    char *first = state_etcd_key(s, "/deadletter/");
    char *keep = seq > DEADLETTERS_KEPT
                     ? state_etcd_key(s, "/deadletter/%020" PRIu64, seq - DEADLETTERS_KEPT + 1)
                     : NULL;
    json_t *ops = json_array();
    int r = state_etcd_guard(s, err, sizeof(err));

    /* The put and the trim in one txn: the trimmed range ends below the new key. */
    if (!r && (!line || !key || !first || !ops || (seq > DEADLETTERS_KEPT && !keep) ||
               json_array_append_new(ops, etcd_op_put(key, line, strlen(line), 0)) != 0 ||
               (keep && json_array_append_new(ops, etcd_op_delete(first, keep)) != 0)))
        r = state_etcd_say(err, sizeof(err), -ENOMEM, s->prefix, "out of memory");
    if (!r) {
        r = state_etcd_fenced(s, ops, key, err, sizeof(err));
        ops = NULL;
    }
    if (!r)
        s->dead_next++;
    else
        log_warn("state", "cannot keep a dead letter: %s", err);
    json_decref(ops);
    free(line);
    free(key);
    free(first);
    free(keep);
    return r;
}

/* ---- sync positions ---- */

static int est_sync_position_get(struct state *st, const char *name,
                                 struct state_sync_position *out, char *err, size_t errlen)
{
    struct est *s = est_of(st);
    char *key = state_etcd_key(s, "/sync/%s", name), why[200];
    struct one o;
    int r = key ? state_etcd_get(s, key, &o, NULL, err, errlen) : -ENOMEM;

    if (!key)
        return state_etcd_say(err, errlen, r, s->prefix, "out of memory");
    if (!r && !o.found)
        r = -ENOENT;
    else if (!r && o.kv.value_len > SYNC_POSITION_MAX)
        r = state_etcd_say(err, errlen, -EPROTO, key, "is damaged (over 64 KiB)");
    else if (!r)
        r = state_parse_sync_position(o.kv.value, o.kv.value_len, out, why, sizeof(why));
    if (r == -EPROTO && !o.found)
        ;
    else if (r == -EPROTO && o.kv.value_len <= SYNC_POSITION_MAX)
        snprintf(err, errlen, "etcd key %s is damaged (%s)", key, why);
    else if (r == -ENOMEM)
        state_etcd_say(err, errlen, r, key, "out of memory");
    state_etcd_one_fini(&o);
    free(key);
    return r;
}

/* Puts text (NULL: ENOMEM) under key (likewise), one fenced txn. Frees neither. */
static int put_text(struct est *s, const char *key, const char *text, char *err, size_t errlen)
{
    int r = state_etcd_guard(s, err, errlen);

    if (!r && (!key || !text))
        r = state_etcd_say(err, errlen, -ENOMEM, s->prefix, "out of memory");
    if (!r)
        r = state_etcd_fenced_op(s, etcd_op_put(key, text, strlen(text), 0), key, err, errlen);
    return r;
}

static int est_sync_position_put(struct state *st, const char *name,
                                 const struct state_sync_position *p, char *err, size_t errlen)
{
    struct est *s = est_of(st);
    char *key = state_etcd_key(s, "/sync/%s", name), *text = state_format_sync_position(p);
    int r = put_text(s, key, text, err, errlen);

    free(key);
    free(text);
    return r;
}

/* ---- subscriptions ---- */

#define SUBSCRIPTION_PAGE 32 /* records per range answer: at most 2 MiB of values */

struct scan {
    size_t skip; /* bytes of "P/subscriptions/" before a record's key */
    state_record_fn fn;
    void *ctx;
};

static int take_subscription(void *ctx, const struct etcd_kv *kv)
{
    struct scan *c = ctx;

    /* A key with a NUL byte is none of ours: cut short there, it could pass for another. */
    if (strlen(kv->key) != kv->key_len)
        return c->fn(c->ctx, kv->key, "", NULL, 0, -EINVAL);
    return c->fn(c->ctx, kv->key, kv->key + c->skip, kv->value, kv->value_len, 0);
}

static int est_subscriptions_scan(struct state *st, state_record_fn fn, void *ctx, char *err,
                                  size_t errlen)
{
    struct est *s = est_of(st);
    char *key = state_etcd_key(s, "/subscriptions/"), *end = key ? etcd_prefix_end(key) : NULL;
    struct range q = {.key = key, .end = end, .page = SUBSCRIPTION_PAGE};
    struct scan c = {key ? strlen(key) : 0, fn, ctx};
    int r = key && end ? state_etcd_range(s, &q, take_subscription, &c, err, errlen) : -ENOMEM;

    if (r == -ENOMEM)
        state_etcd_say(err, errlen, r, key ? key : s->prefix, "out of memory");
    free(key);
    free(end);
    return r;
}

static int est_subscription_put(struct state *st, const char *name, const char *text, char *err,
                                size_t errlen)
{
    struct est *s = est_of(st);
    char *key = state_etcd_key(s, "/subscriptions/%s", name);
    int r = put_text(s, key, text, err, errlen);

    free(key);
    return r;
}

static int est_subscription_delete(struct state *st, const char *name, char *err, size_t errlen)
{
    struct est *s = est_of(st);
    char *key = state_etcd_key(s, "/subscriptions/%s", name);
    int r = key ? state_etcd_fenced_op(s, etcd_op_delete(key, NULL), key, err, errlen)
                : state_etcd_say(err, errlen, -ENOMEM, s->prefix, "out of memory");

    free(key);
    return r;
}

/* ---- opening ---- */

static void est_close(struct state *st)
{
    struct est *s = est_of(st);

    state_etcd_idmap_clear(&s->ids);
    free(s->prefix);
    free(s->leader_key);
    free(s);
}

static int est_check(struct state *st, char *err, size_t errlen)
{
    struct est *s = est_of(st);

    /* No network: what the last fenced txn said, and the monotonic clock. */
    return s->readonly ? 0 : state_etcd_guard(s, err, errlen);
}

/* Whether the leader key is attached to our lease; -EBUSY naming the holder otherwise. */
static int check_leader(struct est *s, char *err, size_t errlen)
{
    struct one o;
    int r = state_etcd_get(s, s->leader_key, &o, NULL, err, errlen);

    if (r)
        return r;
    if (!o.found) {
        snprintf(err, errlen, "etcd key %s is held by no replica: this one does not lead",
                 s->leader_key);
        r = -EBUSY;
    } else if (o.kv.lease != s->lease) {
        char who[128];
        log_redact(who, sizeof(who), o.kv.value);
        snprintf(err, errlen, "etcd key %s is held by member \"%s\", not by this replica's lease",
                 s->leader_key, who);
        r = -EBUSY;
    }
    state_etcd_one_fini(&o);
    return r;
}

/* The seq after the highest key under P/<dir> (1 when there is none). */
static int next_seq(struct est *s, const char *dir, uint64_t *out, char *err, size_t errlen)
{
    char *key = state_etcd_key(s, "%s", dir), *end = key ? etcd_prefix_end(key) : NULL;
    struct range q = {.key = key, .end = end, .page = 1, .keys_only = 1, .sort = "DESCEND"};
    struct one o = {0};
    int r = key && end ? state_etcd_range(s, &q, state_etcd_take_one, &o, err, errlen) : -ENOMEM;

    *out = 1;
    if (!r && o.found) {
        uint64_t seq = state_etcd_seq(s, dir, o.kv.key, o.kv.key_len);
        *out = seq && seq < UINT64_MAX ? seq + 1 : 1;
        if (!seq)
            log_warn("state", "%s: unexpected key %s; numbering from 1", key, o.kv.key);
    }
    if (r == -ENOMEM)
        state_etcd_say(err, errlen, r, s->prefix, "out of memory");
    state_etcd_one_fini(&o);
    free(key);
    free(end);
    return r;
}

int state_open_etcd(struct state **out, struct etcd *e, const char *prefix,
                    const struct state_lease *l, unsigned flags, char *err, size_t errlen)
{
    struct est *s = calloc(1, sizeof(*s));
    size_t plen = strlen(prefix);
    int r = 0;

    *out = NULL;
    if (!s)
        return state_etcd_say(err, errlen, -ENOMEM, prefix, "out of memory");
    s->base.ops = &state_etcd_ops;
    s->e = e;
    s->readonly = (flags & STATE_OPEN_READONLY) != 0;
    while (plen > 0 && prefix[plen - 1] == '/')
        plen--;
    s->prefix = strndup(prefix, plen);
    if (!s->readonly && (!l || !l->leader_key || !l->valid)) {
        snprintf(err, errlen, "etcd state under %s: no leadership to fence the writes with",
                 prefix);
        r = -EINVAL;
        goto fail;
    }
    if (l) {
        s->leader_key = l->leader_key ? strdup(l->leader_key) : NULL;
        s->lease = l->lease;
        s->valid = l->valid;
        s->renew = l->renew;
        s->userdata = l->userdata;
    }
    if (!s->prefix || !plen || (l && l->leader_key && !s->leader_key)) {
        r = !plen ? -EINVAL : -ENOMEM;
        snprintf(err, errlen, "%s", !plen ? "etcd state: empty key prefix" : "out of memory");
        goto fail;
    }
    if (!s->readonly) {
        r = check_leader(s, err, errlen);
        if (!r)
            r = next_seq(s, "/journal/", &s->journal_next, err, errlen);
        if (!r)
            r = next_seq(s, "/deadletter/", &s->dead_next, err, errlen);
        if (r)
            goto fail;
    }
    *out = &s->base;
    return 0;
fail:
    est_close(&s->base);
    return r;
}

/* Opened by state_open_etcd() only: the table's open takes a path, not a client. */
static const struct state_backend_ops state_etcd_ops = {
    .name = "etcd",
    .open = NULL,
    .close = est_close,
    .check = est_check,
    .load = est_load,
    .save = est_save,
    .commit = est_commit,
    .journal_load = state_etcd_journal_load,
    .journal_add = state_etcd_journal_add,
    .journal_done = state_etcd_journal_done,
    .journal_clear = state_etcd_journal_clear,
    .journal_compact = state_etcd_journal_compact,
    .deadletter = est_deadletter,
    .sync_position_get = est_sync_position_get,
    .sync_position_put = est_sync_position_put,
    .subscriptions_scan = est_subscriptions_scan,
    .subscription_put = est_subscription_put,
    .subscription_delete = est_subscription_delete,
};
