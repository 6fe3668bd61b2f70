/*
 * Matrix chat commands: `!youtrack ...` in the configured rooms, read by long-polling /sync
 * (doc/matrix.md §4-8) and answered with m.notice replies that go through the outbox like
 * notifications. See the README ("Chat commands", "Matrix").
 *
 * Two halves: matrix_msg.h reads and writes the messages (pure, no I/O, fuzzed: one /sync body
 * becomes a list of things to do), and struct matrix_sync does the I/O on the loop (whoami,
 * /sync, join/leave, the persisted next_batch).
 */
#ifndef YTB_MATRIX_SYNC_H
#define YTB_MATRIX_SYNC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "conf.h"

struct state;

#define MATRIX_SYNC_BODY_MAX  (16u * 1024u * 1024u) /* bytes of a /sync answer */
#define MATRIX_SYNC_STATE_KEY "matrix" /* its sync position in the state (matrix-sync.json) */
#define MATRIX_SYNC_REFUSAL   "Sorry, you cannot use this command here."

struct matrix_sync;

struct matrix_sync_hooks {
    /* Answers command text that sender typed in room_id, for Matrix: m.room.message content
     * JSON in *content (caller frees); *durable set when the command changed the state (a
     * subscription), so that its reply must survive a crash. */
    int (*answer)(void *userdata, const char *room_id, const char *sender, const char *text,
                  size_t len, char **content, int *durable);
    /* The bot is no longer in room_id (left, kicked or banned; by: who did it, or NULL).
     * Optional. */
    void (*left)(void *userdata, const char *room_id, const char *by);
    /* Queues a reply (content JSON) for room_id under transaction id txn_id. Strings borrowed. */
    void (*reply)(void *userdata, const char *room_id, const char *txn_id, const char *content,
                  int durable);
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
