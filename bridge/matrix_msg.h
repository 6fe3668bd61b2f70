/*
 * The Matrix client-server messages the chat client reads and writes, pure (no I/O, no event
 * loop; doc/matrix.md): a /sync answer turned into a list of things to do, the errcode of a
 * failed answer, whoami's user id, the /sync filter, and a reply's content and transaction id.
 * matrix_sync.c does the requests and acts on the results; the fuzz harness and the unit tests
 * call these directly.
 */
#ifndef YTB_MATRIX_MSG_H
#define YTB_MATRIX_MSG_H

#include <stddef.h>
#include <stdint.h>

struct json_t;

#define MATRIX_MSG_ID_MAX      255u  /* bytes of an event, room or user id (doc/matrix.md §2) */
#define MATRIX_MSG_BATCH_MAX   1024u /* bytes of a next_batch token we keep */
#define MATRIX_MSG_ROOM_EVENTS 100u  /* timeline events looked at per room and batch */
#define MATRIX_MSG_INVITES     50u   /* invites handled per batch; more are dropped (counted) */
#define MATRIX_MSG_SEEN        256u  /* recent command event ids remembered (dedup) */
#define MATRIX_MSG_TXN_ID_SIZE 35u   /* "r-" + 32 hex digits + NUL */

/* s is a string we are willing to use and log: 1..max bytes, no control character. */
int matrix_msg_text_ok(const char *s, size_t max);

/*
 * v as a string we are willing to use and log: 1..max bytes, no control character, no NUL
 * inside; NULL otherwise (also when v is not a string). Borrowed from v.
 */
const char *matrix_msg_text_value(const struct json_t *v, size_t max);

/* What the /sync parser looks for. Every pointer is borrowed for the call. */
struct matrix_msg_rules {
    const char *user_id; /* the bot (from whoami): its own events are ignored */
    char *const *rooms;  /* the rooms it answers in */
    size_t n_rooms;
    const char *prefix;         /* "!youtrack" */
    char *const *allowed_users; /* none: everyone in the rooms */
    size_t n_allowed_users;
};

enum matrix_msg_kind {
    MATRIX_MSG_COMMAND = 0, /* answer text in room_id, as a reply to event_id */
    MATRIX_MSG_REFUSE,      /* a command from a user not in allowed_users: say no */
    MATRIX_MSG_JOIN,        /* an invite to accept (sender: the inviter) */
    MATRIX_MSG_REJECT,      /* an invite to refuse (leave the room) */
    MATRIX_MSG_ENCRYPTED,   /* a configured room is encrypted: commands there are unreadable */
    MATRIX_MSG_LEFT,        /* the bot is no longer in a configured room (rooms.leave: it left,
                               was kicked or banned; sender: who removed it, when the batch
                               shows it, else NULL) */
};

struct matrix_msg_item {
    enum matrix_msg_kind kind;
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
struct matrix_msg_joined {
    char *room_id;
    size_t skipped; /* commands before the (last) join among the events looked at */
};

struct matrix_msg_batch {
    char *next_batch;
    struct matrix_msg_item *v; /* in the order found: rooms in body order, events in order */
    size_t n;
    struct matrix_msg_joined *joined; /* rooms joined in this batch, in body order */
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
struct matrix_msg_seen {
    uint64_t h[MATRIX_MSG_SEEN];
    size_t next, n;
};

/*
 * Parses one /sync answer. Returns 0 and fills *out (caller frees with
 * matrix_msg_batch_fini(); *out is zeroed first), -EINVAL when body is not a sync answer (no
 * JSON object, no string next_batch), or -ENOMEM; on failure *out is empty and seen unchanged.
 * seen may be NULL (no dedup); on success the commands' event ids are added to it.
 */
int matrix_msg_parse_sync(const char *body, size_t len, const struct matrix_msg_rules *rules,
                          struct matrix_msg_seen *seen, struct matrix_msg_batch *out);

void matrix_msg_batch_fini(struct matrix_msg_batch *b);

/* What the body of a failed answer says (the standard error object, doc/matrix.md §1). */
struct matrix_msg_error {
    char errcode[MATRIX_MSG_ID_MAX + 1]; /* "M_LIMIT_EXCEEDED", ...; "" when absent or unfit
                                            for a log line (see matrix_msg_text_value()) */
    int64_t retry_after_ms;              /* the body's retry_after_ms; -1 when absent */
};

/* Reads a failed answer's body; anything that is not such an object leaves *out empty. */
void matrix_msg_parse_error(const char *body, size_t len, struct matrix_msg_error *out);

/*
 * Reads whoami's answer. Returns 0 and the bot's user id in *user_id (caller frees), -EINVAL
 * when the answer holds no usable user id (one starting with '@'), or -ENOMEM.
 */
int matrix_msg_parse_whoami(const char *body, size_t len, char **user_id);

/*
 * The bot's /sync filter for rooms (doc/matrix.md §4), as compact JSON (not URL-escaped).
 * Returns 0 and *out (caller frees), or -ENOMEM.
 */
int matrix_msg_filter(char *const *rooms, size_t n_rooms, char **out);

/*
 * The reply's content: answer (m.room.message content JSON from command_run()) with
 * "m.relates_to" pointing at event_id (and at thread_root's thread when not NULL). Returns 0 and
 * *out (caller frees), -EINVAL when answer is not a JSON object, or -ENOMEM.
 */
int matrix_msg_reply(const char *answer, const char *event_id, const char *thread_root, char **out);

/*
 * The reply's transaction id, derived from the command's event id (a retry is idempotent).
 * Returns 0, or -ENOMEM when the HMAC cannot be computed (out is then the empty string).
 */
int matrix_msg_txn_id(const char *event_id, char out[MATRIX_MSG_TXN_ID_SIZE]);

#endif
