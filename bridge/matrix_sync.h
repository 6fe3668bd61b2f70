/*
 * Matrix chat commands: `!youtrack ...` in the configured rooms, read by long-polling /sync
 * (../shared/reference/matrix.md §8-13, 17) and answered with m.notice replies that go through
 * the outbox like notifications. See the README ("Chat commands", "Matrix").
 *
 * Two halves: matrix_sync_parse() turns one /sync body into a list of things to do (pure, no
 * I/O, fuzzed), and struct matrix_sync does the I/O on the loop (whoami, /sync, join/leave,
 * the persisted next_batch).
 */
#ifndef YTB_MATRIX_SYNC_H
#define YTB_MATRIX_SYNC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "conf.h"

struct state;

#define MATRIX_SYNC_ID_MAX      255u /* bytes of an event, room or user id (spec: 255) */
#define MATRIX_SYNC_ROOM_EVENTS 100u /* timeline events looked at per room and batch */
#define MATRIX_SYNC_INVITES     50u  /* invites handled per batch; more are dropped (counted) */
#define MATRIX_SYNC_SEEN        256u /* recent command event ids remembered (dedup) */
#define MATRIX_SYNC_BODY_MAX    (16u * 1024u * 1024u) /* bytes of a /sync answer */
#define MATRIX_SYNC_STATE_KEY   "matrix" /* its sync position in the state (matrix-sync.json) */
#define MATRIX_SYNC_REFUSAL     "Sorry, you cannot use this command here."
#define MATRIX_SYNC_TXN_ID_SIZE 35u /* "r-" + 32 hex digits + NUL */

/* What the parser looks for. Every pointer is borrowed for the call. */
struct matrix_sync_rules {
    const char *user_id; /* the bot (from whoami): its own events are ignored */
    char *const *rooms;  /* the rooms it answers in */
    size_t n_rooms;
    const char *prefix;         /* "!youtrack" */
    char *const *allowed_users; /* none: everyone in the rooms */
    size_t n_allowed_users;
};

enum matrix_sync_kind {
    MATRIX_SYNC_COMMAND = 0, /* answer text in room_id, as a reply to event_id */
    MATRIX_SYNC_REFUSE,      /* a command from a user not in allowed_users: say no */
    MATRIX_SYNC_JOIN,        /* an invite to accept (sender: the inviter) */
    MATRIX_SYNC_REJECT,      /* an invite to refuse (leave the room) */
    MATRIX_SYNC_ENCRYPTED,   /* a configured room is encrypted: commands there are unreadable */
};

struct matrix_sync_item {
    enum matrix_sync_kind kind;
    char *room_id;
    char *event_id;    /* COMMAND, REFUSE: the event answered; NULL otherwise */
    char *sender;      /* COMMAND, REFUSE: who asked; JOIN, REJECT: the inviter (may be NULL) */
    char *thread_root; /* COMMAND, REFUSE: the thread the command was posted in, or NULL */
    char *text;        /* COMMAND: the words after the prefix (NUL-terminated) */
    size_t text_len;   /* at most COMMAND_MAX_INPUT + 1: longer text is cut there, so that
                          command_run() still refuses it as too long */
    int64_t age_ms;    /* COMMAND, REFUSE: how old the event was when /sync returned it: the
                          homeserver's unsigned.age (no clock skew), else now minus
                          origin_server_ts; -1 when neither is there */
};

/*
 * A configured room whose timeline holds the bot's own join (m.room.member, state_key the bot,
 * membership "join", not a profile change): what came before it is the room's history from
 * before the bot was there (Synapse sends it after a join, history visibility "shared"), so
 * its commands are not items.
 */
struct matrix_sync_joined {
    char *room_id;
    size_t skipped; /* commands before the (last) join among the events looked at */
};

struct matrix_sync_batch {
    char *next_batch;
    struct matrix_sync_item *v; /* in the order found: rooms in body order, events in order */
    size_t n;
    struct matrix_sync_joined *joined; /* rooms joined in this batch, in body order */
    size_t n_joined;
    size_t gaps;    /* configured rooms whose timeline was "limited" (messages skipped); not
                       counted for a room joined in the batch (its history is no gap) */
    size_t dropped; /* events and invites over the limits above: not read */
    size_t ignored; /* messages in configured rooms that are no command (notices, edits, own,
                       duplicates, other text) */
};

/*
 * Recent command event ids (hashed), so an event seen twice, in one batch or across batches,
 * is answered once. Zero-initialised is empty.
 */
struct matrix_sync_seen {
    uint64_t h[MATRIX_SYNC_SEEN];
    size_t next, n;
};

/*
 * Parses one /sync answer. Returns 0 and fills *out (caller frees with
 * matrix_sync_batch_fini(); *out is zeroed first), -EINVAL when body is not a sync answer (no
 * JSON object, no string next_batch), or -ENOMEM; on failure *out is empty and seen unchanged.
 * seen may be NULL (no dedup); on success the commands' event ids are added to it.
 */
int matrix_sync_parse(const char *body, size_t len, const struct matrix_sync_rules *rules,
                      struct matrix_sync_seen *seen, struct matrix_sync_batch *out);

void matrix_sync_batch_fini(struct matrix_sync_batch *b);

/*
 * The reply's content: answer (m.room.message content JSON from command_run()) with
 * "m.relates_to" pointing at event_id (and at thread_root's thread when not NULL). Returns 0 and
 * *out (caller frees), -EINVAL when answer is not a JSON object, or -ENOMEM.
 */
int matrix_sync_reply_content(const char *answer, const char *event_id, const char *thread_root,
                              char **out);

/*
 * The reply's transaction id, derived from the command's event id (a retry is idempotent).
 * Returns 0, or -ENOMEM when the HMAC cannot be computed (out is then the empty string).
 */
int matrix_sync_txn_id(const char *event_id, char out[MATRIX_SYNC_TXN_ID_SIZE]);

struct matrix_sync;

struct matrix_sync_hooks {
    /* Answers command text for Matrix: m.room.message content JSON in *content (caller frees). */
    int (*answer)(void *userdata, const char *text, size_t len, char **content);
    /* Queues a reply (content JSON) for room_id under transaction id txn_id. Strings borrowed. */
    void (*reply)(void *userdata, const char *room_id, const char *txn_id, const char *content);
    /* Something an operator must hear about (kind "matrix_auth"). */
    void (*alert)(void *userdata, const char *kind, const char *text);
    void *userdata;
};

/*
 * conf must outlive the client, and st (where the /sync position is kept under
 * MATRIX_SYNC_STATE_KEY; NULL: nowhere) too. Reads the saved position (a damaged one is ignored
 * with a warning). Returns 0, or -ENOMEM/-EIO (err filled).
 */
int matrix_sync_new(struct matrix_sync **out, uv_loop_t *loop, const struct conf_chat_matrix *conf,
                    struct state *st, const struct matrix_sync_hooks *hooks, char *err,
                    size_t errlen);

/* Asks the homeserver who the bot is, then long-polls /sync until stopped. */
void matrix_sync_start(struct matrix_sync *m);

/*
 * Cancels every request and timer, then calls cb (before returning). The client must then be
 * freed with matrix_sync_free().
 */
void matrix_sync_stop(struct matrix_sync *m, void (*cb)(void *userdata), void *userdata);

/*
 * Releases the client; the last memory goes when the loop runs the close callbacks. Must not be
 * called from one of its hooks. NULL is fine.
 */
void matrix_sync_free(struct matrix_sync *m);

/*
 * Readiness: 1 when the last /sync succeeded less than two minutes ago, or the first one has
 * been under way for less than a minute; 0 otherwise (always after the token was refused), with
 * why (no secrets) in why.
 */
int matrix_sync_ready(const struct matrix_sync *m, char *why, size_t whylen);

#endif
