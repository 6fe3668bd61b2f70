/*
 * The state's records and their bytes (pure: no I/O, no clock): the snapshot with its change
 * history, the journal's records and lines, dead letters, sync positions, subscriptions. Every
 * backend stores these same bytes (state.h says where and with which guarantees), so they are
 * defined once, here.
 *
 * Reading: everything is read with the pull reader (jscan.h), because the snapshot must be (see
 * jscan.h); writing: everything is written with jansson, which escapes for us.
 */
#ifndef YTB_STATE_FORMAT_H
#define YTB_STATE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "project.h"
#include "subscription.h"

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

/*
 * One queued message as the journal keeps it: what the outbox needs to deliver it again after
 * a restart. The state module knows records, not outbox entries (outbox.c converts). Records
 * returned by state_journal_load() own their strings (state_journal_records_free()); records
 * passed in are only read during the call.
 */
struct journal_record {
    char *id;        /* deterministic delivery id (Matrix txnId, webhook delivery id) */
    char *sink;      /* the sink's name */
    char *event;     /* "project.created", ..., "digest", "baseline", "alert" */
    char *body;      /* what the sink receives, rendered */
    int64_t created; /* unix seconds */
    uint64_t gen;    /* the snapshot generation that committed it */
};

/* Frees n records returned by state_journal_load() and the array. NULL is fine. */
void state_journal_records_free(struct journal_record *v, size_t n);

/*
 * A chat client's read position, kept under a short key ([a-z0-9_], at most 32 bytes; "matrix"
 * is the Matrix client's /sync position, the directory's matrix-sync.json). The strings are
 * owned (state_sync_position_fini()); none is NULL in a position that was read.
 */
struct state_sync_position {
    char *server;   /* where the position is valid (the homeserver URL) */
    char *user;     /* whose it is (the bot's user id) */
    char *position; /* the opaque token (Matrix: next_batch) */
};

void state_sync_position_fini(struct state_sync_position *p);

/* Receives n bytes of a document being written. 0, or -errno to stop the writer. */
typedef int (*state_put_fn)(void *ctx, const char *p, size_t n);

/*
 * Parses a snapshot file's content (for the backends' load and the fuzz harness). The
 * "history" member is auxiliary, read as leniently as the header's members: when it is not an
 * array it is ignored, an element that is not a valid entry (not an object, no or an over-long
 * id, an unknown kind, no numeric "at", a string field of another type) is dropped, and only
 * the newest STATE_HISTORY_MAX entries are kept. Text that is not JSON, or an "at" that is a
 * number but not an int64 (as for "saved_at"), fails the whole parse, as anywhere in the file.
 * Returns 0 (*out filled; snapshot_fini() it), -EPROTONOSUPPORT for a newer format, -ENOMEM,
 * or -EPROTO; err says why.
 */
int state_parse_snapshot(const char *buf, size_t len, struct snapshot *out, char *err,
                         size_t errlen);

/*
 * Writes s as a snapshot document saved at now: a header, then one project and one history
 * entry per line, through put (in pieces; the caller buffers). Returns 0, put's error, or
 * -ENOMEM.
 */
int state_format_snapshot(const struct snapshot *s, int64_t now, state_put_fn put, void *ctx);

/*
 * One journal line, with its newline (caller frees), or NULL on ENOMEM: an "add" line for r, a
 * "done" line for id (result "delivered" or "dead"). "add" lines are ASCII (\u escapes), so a
 * line never holds a byte that could be taken for a newline.
 */
char *state_format_journal_add(const struct journal_record *r);
char *state_format_journal_done(const char *id, const char *result);

/* A deadletter.jsonl line with its newline: r, why it failed and when (caller frees; NULL). */
char *state_format_deadletter(const struct journal_record *r, const char *reason, int64_t at);

/*
 * What a journal's lines come to: the pending records, and what else the text held (its
 * rewrite drops all of that).
 */
struct state_journal_replay {
    struct journal_record *v; /* pending, in journal order; owned (state_journal_records_free) */
    size_t n;
    size_t bad;         /* damaged whole lines, skipped */
    size_t uncommitted; /* "add" lines above the committed generation, dropped */
    size_t done;        /* "done" lines (each ends a record, or refers to one already gone) */
    int torn;           /* the text ends in a partial line (a crash mid-append): not counted */
};

/*
 * Replays journal text (len bytes): adds in order, each done removing its add, adds above
 * committed_gen dropped. A line that is not a valid add or done is damaged and skipped. 0 or
 * -ENOMEM (*out then empty).
 */
int state_parse_journal(const char *buf, size_t len, uint64_t committed_gen,
                        struct state_journal_replay *out);

/* A sync position file: {"homeserver", "user_id", "next_batch"} and a newline (NULL: ENOMEM). */
char *state_format_sync_position(const struct state_sync_position *p);

/*
 * Parses a sync position file. 0 (*out filled), -EPROTO when it is not such a document (all
 * three members strings without a NUL byte; others are ignored; err says why), or -ENOMEM.
 */
int state_parse_sync_position(const char *buf, size_t len, struct state_sync_position *out,
                              char *err, size_t errlen);

/* ---- subscriptions (subscription.h): one record per channel ---- */

#define STATE_SUBSCRIPTION_MAX  (64L * 1024)           /* bytes of one record: more is damaged */
#define STATE_SUBSCRIPTIONS_MAX (2 * SUB_MAX_CHANNELS) /* records a load keeps, all platforms */
#define STATE_SUBSCRIPTION_KEY  65                     /* a record's key: 64 hex digits, NUL */

/*
 * The key a channel's record is stored under: the lowercase hex SHA-256 of
 * "<sub_platform_name(p)>:<channel>" into out (the directory's subscriptions/<key>.json, etcd's
 * <prefix>/subscriptions/<key>). A hash, so that no channel id ever becomes a path or needs
 * escaping. 0, or -ENOMEM (out is then "").
 */
int state_subscription_key(enum sub_platform p, const char *channel,
                           char out[STATE_SUBSCRIPTION_KEY]);

/*
 * Whether s is a record the reader takes back: a known platform, a channel sub_channel_ok()
 * accepts, 1..SUB_MAX_PATTERNS patterns each sub_pattern_ok() and no two the same (ASCII
 * case-insensitively), events a non-empty subset of CONF_EVENTS_ALL, a by of at most
 * SUB_USER_MAX bytes and a suspension reason of at most SUB_REASON_MAX, both valid UTF-8. 0, or
 * -EINVAL with why saying which rule it breaks (no part of s is quoted).
 */
int state_subscription_check(const struct subscription *s, char *why, size_t whylen);

/*
 * One subscription as its record, a JSON document and a newline:
 * {"format":1,"platform":"slack"|"matrix","channel":...,"patterns":[...],"events":["created",...],
 * "by":...,"created":N,"changed":N} plus "suspended":"reason" when it is suspended; event kinds
 * by change_kind_name(), in enum order. Caller frees; NULL on ENOMEM or for an s that
 * state_subscription_check() refuses.
 */
char *state_format_subscription(const struct subscription *s);

/*
 * Parses a record (len bytes). 0 with *out filled (subscription_fini() it), -ENOMEM, or -EPROTO
 * with why saying why it is not a usable record: not such a JSON document (members of the wrong
 * type, text after it), a format other than STATE_FORMAT (a newer one included), a member
 * missing (all but "suspended", which may also be null), a string holding a NUL byte, or a
 * record state_subscription_check() refuses. Members it does not know are ignored.
 */
int state_parse_subscription(const char *buf, size_t len, struct subscription *out, char *why,
                             size_t whylen);

/*
 * What the backends' records become: every backend hands the records it finds, one at a time
 * and in any order, to state_subscription_set_add(), and state_subscription_set_finish() makes
 * the list state_subscriptions_load() returns. So what is skipped, the order and the bound are
 * the same whatever the backend. Zero it before the first add.
 */
struct state_subscription_set {
    struct subscription *v;
    size_t n, cap;
    size_t dropped; /* usable records beyond STATE_SUBSCRIPTIONS_MAX, let go */
};

/*
 * Adds the record stored under key (a name of STATE_SUBSCRIPTION_KEY - 1 hex digits, as the
 * storage holds it; NUL-terminated) holding len bytes at buf. 0 when it is kept; -EPROTO (why
 * says why; nothing of its content is quoted) when it is skipped: over STATE_SUBSCRIPTION_MAX
 * bytes, unreadable (state_parse_subscription()), or stored under another key than its
 * channel's; -ENOMEM. Holds at most 2 * STATE_SUBSCRIPTIONS_MAX records at a time: past that
 * the last ones in list order are let go (counted in set->dropped), so a hostile store costs
 * time, not memory.
 */
int state_subscription_set_add(struct state_subscription_set *set, const char *key, const char *buf,
                               size_t len, char *why, size_t whylen);

/*
 * Moves the records kept into *out, sorted by platform then channel (strcmp), the first
 * STATE_SUBSCRIPTIONS_MAX of them (the rest counted in set->dropped); set is emptied (but for
 * dropped), *out is the caller's (subscription_list_fini()). Cannot fail.
 */
void state_subscription_set_finish(struct state_subscription_set *set,
                                   struct subscription_list *out);

/* Frees what set holds; a zeroed or finished set is fine. */
void state_subscription_set_fini(struct state_subscription_set *set);

#endif
