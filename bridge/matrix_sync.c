/*
 * Matrix chat commands over /sync (see matrix_sync.h; doc/matrix.md §1, §4-8).
 *
 * One request of each kind at a time: first whoami (the bot's user id feeds the filter and the
 * own-event check), then /sync in a loop, plus a FIFO of joins and leaves for invites. A batch
 * is handled completely (replies handed to the outbox, invites queued) before its next_batch is
 * saved (the state's sync position MATRIX_SYNC_STATE_KEY), so a restart resumes after the last
 * batch that was acted
 * on: a crash in between repeats that batch's commands (same txnIds: the homeserver drops the
 * duplicates it still remembers), it never skips one. Replies are not journaled: a reply still
 * queued when the process ends is lost, and its command is not replayed either (README); but
 * the reply to a command that changed the state (a subscription) is journaled before the
 * position moves on, so it is sent after a crash too.
 *
 * The first sync of a new bot (no saved token) reads history, not commands: it answers nothing.
 * Nor is history answered when the bot joins a room later: Synapse then sends the room's recent
 * timeline, from before the join too ("shared" history visibility), so commands before the
 * bot's own join event in a timeline are skipped (the filter asks for m.room.member for that).
 *
 * Failures are logged when they change, retried with a random 5-15 s back-off that doubles up
 * to 5 minutes, and honour Retry-After; a refused token stops the client until reconfigured.
 * A failure that the same `since` will always get (an answer over the size cap, a 4xx such as
 * Synapse's 400 "Invalid stream token" after a database restore) is retried twice, 2 s apart
 * (waiting longer cannot help), then the position is dropped for a fresh first sync: commands
 * sent meanwhile may go unanswered, which beats never answering again.
 */
#include "matrix_sync.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "backoff.h"
#include "command.h"
#include "http.h"
#include "log.h"
#include "matrix_msg.h"
#include "metrics.h"
#include "ratelimit.h"
#include "state.h"
#include "url.h"

#define POLL_TIMEOUT_MS       30000 /* the server holds an empty /sync this long */
#define SYNC_HTTP_TIMEOUT_MS  45000L
#define FIRST_HTTP_TIMEOUT_MS 180000L /* the first sync is a full one: it can be slow */
#define WHOAMI_TIMEOUT_MS     30000L
#define MEMBER_TIMEOUT_MS     30000L
#define BACKOFF_BASE_MS       10000u /* +-50%: matrix-bot-sdk's random 5-15 s */
#define BACKOFF_MAX_MS        (5u * 60u * 1000u)
#define RETRY_AFTER_MAX_MS    (3600u * 1000u)
#define SPIN_GUARD_MS         1000u /* an empty answer faster than this: wait before the next */
#define READY_WINDOW_MS       (2u * 60u * 1000u)
#define FIRST_SYNC_GRACE_MS   60000u
#define MEMBER_ATTEMPTS       5u
#define MEMBER_RETRY_MS       5000u
#define NEXT_BATCH_MAX        MATRIX_MSG_BATCH_MAX
#define REJECTED_TRIES        3u    /* /sync failures of one position before it is dropped */
#define REJECTED_RETRY_MS     2000u /* between those: they are answers, not an overload */
#define MATRIX_STALE_MS       (5 * 60 * 1000) /* a command older than this is not answered */

/* ---- the client ---- */

struct member_op {
    struct member_op *next;
    int join; /* 0: leave (refuse an invite) */
    char *room;
    unsigned attempts;
};

struct matrix_sync {
    uv_loop_t *loop;
    const struct conf_chat_matrix *conf;
    struct matrix_sync_hooks hooks;
    struct http *http;
    char *auth;                     /* "Authorization: Bearer ..." */
    struct state *st;               /* where next_batch is kept; NULL: nowhere */
    char *saved_user, *saved_since; /* the saved position (same homeserver) */
    char *user_id;                  /* from whoami */
    char *filter;                   /* the inline filter (JSON); url_build() escapes it */
    char *since;                    /* NULL: the first sync is still to come */
    struct http_xfer *xfer;         /* whoami or /sync */
    struct http_xfer *member_xfer;  /* the head of ops */
    struct member_op *ops, *ops_tail;
    uv_timer_t timer, member_timer;
    int timers; /* initialised and not yet closed */
    int started, stopping, fatal;
    int save_failed; /* the last save_position() failed (logged once) */
    unsigned failures;
    unsigned rejected; /* /sync failures in a row that this since will always get */
    uint64_t started_ms, last_ok_ms;
    uint64_t request_ms; /* when the current /sync started */
    struct matrix_msg_seen seen;
    struct ratelimit limits; /* per sender and overall; a flood gets "slow down", not a backlog */
    char last_error[256];
};

static uint64_t now_ms(const struct matrix_sync *m)
{
    return uv_now(m->loop);
}

/* Records (and logs once, not on every retry) what is wrong. */
__attribute__((format(printf, 2, 3))) static void set_error(struct matrix_sync *m, const char *fmt,
                                                            ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vchange(LOGL_ERR, "matrix", m->last_error, sizeof(m->last_error), fmt, ap);
    va_end(ap);
}

/* ---- the saved next_batch ---- */

static void load_position(struct matrix_sync *m)
{
    struct state_sync_position p;
    char err[512];
    int r = m->st ? state_sync_position_get(m->st, MATRIX_SYNC_STATE_KEY, &p, err, sizeof(err))
                  : -ENOENT;

    if (r == -ENOENT)
        return;
    if (r == -EPROTO || (!r && (!matrix_msg_text_ok(p.user, MATRIX_MSG_ID_MAX) ||
                                !matrix_msg_text_ok(p.position, NEXT_BATCH_MAX)))) {
        log_warn("matrix",
                 "%s; ignoring the saved /sync position (a first sync: commands sent while the "
                 "bridge was down are not answered)",
                 r ? err : "the saved /sync position is damaged");
    } else if (r) {
        log_warn("matrix", "%s; starting with a first sync", err);
    } else if (strcmp(p.server, m->conf->homeserver) != 0) {
        log_info("matrix", "the saved /sync position is for another homeserver; starting with a "
                           "first sync");
    } else {
        m->saved_user = p.user;
        m->saved_since = p.position;
        p.user = p.position = NULL;
    }
    if (!r)
        state_sync_position_fini(&p);
}

static int save_position(struct matrix_sync *m)
{
    struct state_sync_position p = {
        .server = m->conf->homeserver, .user = m->user_id, .position = m->since};
    char err[512];
    int r;

    if (!m->st)
        return 0;
    r = state_sync_position_put(m->st, MATRIX_SYNC_STATE_KEY, &p, err, sizeof(err));
    if (r && !m->save_failed)
        log_err("matrix",
                "cannot save the /sync position: %s; a restart may answer this batch's commands "
                "again",
                err);
    else if (r)
        log_debug("matrix", "cannot save the /sync position: %s (again)", err);
    else if (m->save_failed)
        log_info("matrix", "the /sync position is saved again");
    m->save_failed = r != 0;
    return r;
}

/* ---- requests ---- */

static void do_sync(struct matrix_sync *m);
static void do_whoami(struct matrix_sync *m);
static void member_next(struct matrix_sync *m);

static int start_request(struct matrix_sync *m, const char *method, const char *url,
                         const char *body, long timeout_ms, size_t max_body, http_cb cb,
                         struct http_xfer **xfer)
{
    const char *headers[] = {m->auth, "Accept: application/json",
                             body ? "Content-Type: application/json" : NULL, NULL};
    struct http_request req = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .timeout_ms = timeout_ms,
        .max_body = max_body,
    };
    return http_start(m->http, &req, cb, m, xfer);
}

/*
 * Random 5-15 s (10 s +-50%), doubling with each failure in a row, at most 5 minutes: the base
 * stops at 200 s so that its +-50% still ends at 5 minutes and stays random there.
 */
static const struct backoff sync_backoff = {
    .first_ms = BACKOFF_BASE_MS,
    .cap_ms = BACKOFF_MAX_MS * 2 / 3,
    .jitter_min_pct = 50,
    .jitter_max_pct = 150,
};

static uint64_t backoff_ms(unsigned failures)
{
    return backoff_delay(&sync_backoff, failures, -1);
}

static void on_timer(uv_timer_t *t)
{
    struct matrix_sync *m = t->data;

    if (m->stopping || m->fatal)
        return;
    if (m->user_id)
        do_sync(m);
    else
        do_whoami(m);
}

static void retry_in(struct matrix_sync *m, uint64_t ms)
{
    log_debug("matrix", "next attempt in %.1f s", (double)ms / 1000.0);
    /* From now, not from the loop's cached time at the start of this iteration: a slow
     * iteration (a big batch, a loaded machine) must not eat into a server's Retry-After. */
    uv_update_time(m->loop);
    uv_timer_start(&m->timer, on_timer, ms, 0);
}

/*
 * The homeserver refused the token (why: "HTTP 401 M_UNKNOWN_TOKEN"): no retry can help
 * (doc/matrix.md §1).
 */
static void token_refused(struct matrix_sync *m, const char *why)
{
    char text[512];

    if (m->fatal)
        return;
    m->fatal = 1;
    uv_timer_stop(&m->timer);
    uv_timer_stop(&m->member_timer);
    if (m->xfer) {
        http_cancel(m->xfer);
        m->xfer = NULL;
    }
    if (m->member_xfer) {
        http_cancel(m->member_xfer);
        m->member_xfer = NULL;
    }
    set_error(m,
              "%s refuses the access token (%s); !youtrack commands are not answered until "
              "chat.matrix is given a valid token",
              m->conf->homeserver, why);
    snprintf(text, sizeof(text),
             "The Matrix homeserver %s refuses the chat.matrix access token (%s); %s commands "
             "are not answered until the configuration is fixed",
             m->conf->homeserver, why, m->conf->prefix);
    if (m->hooks.alert)
        m->hooks.alert(m->hooks.userdata, "matrix_auth", text);
}

enum verdict {
    V_RETRY = 0, /* back off */
    V_WAIT,      /* rate limited: *delay_ms */
    V_FATAL,     /* the token is refused */
};

/*
 * Classifies a failed answer (not 200) by errcode first, status second (doc/matrix.md §1),
 * with what went wrong in why ("HTTP 401 M_UNKNOWN_TOKEN", or the transport error).
 */
static enum verdict classify(const struct http_response *res, uint64_t *delay_ms, char *why,
                             size_t whylen)
{
    struct matrix_msg_error e;
    const char *errcode;
    enum verdict v = V_RETRY;

    if (res->result != HTTP_DONE) {
        snprintf(why, whylen, "%s", res->error ? res->error : "request failed");
        return V_RETRY;
    }
    matrix_msg_parse_error(res->body, res->body_len, &e);
    errcode = e.errcode[0] ? e.errcode : NULL;
    /* Any 401 (M_UNKNOWN_TOKEN, M_MISSING_TOKEN, M_USER_LOCKED...): no retry can help. */
    if (res->status == 401 || (errcode && (strcmp(errcode, "M_UNKNOWN_TOKEN") == 0 ||
                                           strcmp(errcode, "M_MISSING_TOKEN") == 0))) {
        v = V_FATAL;
    } else if ((errcode && strcmp(errcode, "M_LIMIT_EXCEEDED") == 0) || res->status == 429) {
        if (res->retry_after >= 0)
            *delay_ms = (uint64_t)res->retry_after * 1000u;
        else if (e.retry_after_ms >= 0)
            *delay_ms = (uint64_t)e.retry_after_ms;
        else
            *delay_ms = 0;
        if (*delay_ms > RETRY_AFTER_MAX_MS)
            *delay_ms = RETRY_AFTER_MAX_MS;
        v = V_WAIT;
    }
    if (errcode) /* cut for the log line: only garbage is that long */
        snprintf(why, whylen, "HTTP %ld %.120s", res->status, errcode);
    else
        snprintf(why, whylen, "HTTP %ld", res->status);
    return v;
}

/* whoami or /sync failed: back off (or wait as told, or give up on a refused token). */
static void request_failed(struct matrix_sync *m, const char *what, const struct http_response *res)
{
    uint64_t delay = 0;
    char why[160];
    enum verdict v = classify(res, &delay, why, sizeof(why));

    if (v == V_FATAL) {
        token_refused(m, why);
        return;
    }
    if (v == V_WAIT) {
        /* The server named the delay: not our failure, so the back-off does not grow. */
        if (delay == 0)
            delay = backoff_ms(m->failures + 1);
        log_info("matrix", "%s: rate limited (%s); waiting %.1f s", what, why,
                 (double)delay / 1000.0);
        retry_in(m, delay);
        return;
    }
    m->failures++;
    set_error(m, "%s failed (%s); retrying with back-off", what, why);
    retry_in(m, backoff_ms(m->failures));
}

/*
 * A /sync failure that the same since will get again (retrying it later cannot help): an answer
 * over MATRIX_SYNC_BODY_MAX, or a 4xx other than 401, the token errcodes and 429 (classify()
 * handles those first) and 408 (a timeout). Synapse answers a since it never issued (restored
 * database, copied state directory) with 400 M_UNKNOWN "Invalid stream token".
 */
static int position_failure(const struct http_response *res)
{
    if (res->result == HTTP_ERR_TOO_BIG)
        return 1;
    return res->result == HTTP_DONE && res->status >= 400 && res->status < 500 &&
           res->status != 408 && res->status != 429;
}

/* /sync failed: as request_failed(), except that a position that keeps failing is dropped. */
static void sync_failed(struct matrix_sync *m, const struct http_response *res)
{
    uint64_t delay = 0;
    char why[160];

    if (!m->since || !position_failure(res) || classify(res, &delay, why, sizeof(why)) != V_RETRY) {
        m->rejected = 0;
        request_failed(m, "/sync", res);
        return;
    }
    m->failures++;
    if (++m->rejected < REJECTED_TRIES) {
        set_error(m, "/sync failed (%s); retrying with back-off", why);
        retry_in(m, REJECTED_RETRY_MS);
        return;
    }
    log_err("matrix",
            "/sync: the saved position failed %u times in a row (%s); dropping it for a fresh "
            "first /sync: commands sent since the last answered /sync may go unanswered",
            m->rejected, why);
    snprintf(m->last_error, sizeof(m->last_error),
             "/sync failed (%s); the position was dropped for a fresh /sync", why);
    free(m->since);
    m->since = NULL;
    m->rejected = 0;
    m->failures = 0;
    do_sync(m);
}

static void on_whoami(void *userdata, const struct http_response *res)
{
    struct matrix_sync *m = userdata;
    char *user = NULL, *filter = NULL;
    int r;

    m->xfer = NULL;
    if (res->result != HTTP_DONE || res->status != 200) {
        request_failed(m, "whoami", res);
        return;
    }
    r = matrix_msg_parse_whoami(res->body, res->body_len, &user);
    if (r == -EINVAL) {
        m->failures++;
        set_error(m, "whoami: the answer has no user_id; retrying with back-off");
        retry_in(m, backoff_ms(m->failures));
        return;
    }
    /* The filter names the rooms (doc/matrix.md §4); url_build() encodes it into every /sync. */
    if (r == 0 && matrix_msg_filter(m->conf->rooms, m->conf->n_rooms, &filter) != 0)
        filter = NULL;
    if (!filter) {
        free(user);
        m->failures++;
        set_error(m, "out of memory; retrying");
        retry_in(m, backoff_ms(m->failures));
        return;
    }
    free(m->user_id);
    m->user_id = user;
    free(m->filter);
    m->filter = filter;
    if (!m->since && m->saved_since) {
        if (strcmp(m->saved_user, m->user_id) == 0) {
            m->since = m->saved_since;
            m->saved_since = NULL;
            log_info("matrix", "signed in as %s; resuming /sync where the last run stopped",
                     m->user_id);
        } else {
            log_info("matrix", "signed in as %s; the saved /sync position is %s's: starting over",
                     m->user_id, m->saved_user);
        }
    } else if (!m->since) {
        log_info("matrix", "signed in as %s; first /sync (earlier messages are not answered)",
                 m->user_id);
    }
    do_sync(m);
}

static void do_whoami(struct matrix_sync *m)
{
    char *url = url_build(m->conf->homeserver, "/_matrix/client/v3/account/whoami");

    if (!url ||
        start_request(m, "GET", url, NULL, WHOAMI_TIMEOUT_MS, 64 * 1024, on_whoami, &m->xfer)) {
        m->failures++;
        set_error(m, "cannot start the whoami request (out of memory?)");
        retry_in(m, backoff_ms(m->failures));
    }
    free(url);
}

/* Sends the answer (content JSON) to item's command, through the outbox. */
static void send_reply(struct matrix_sync *m, const struct matrix_msg_item *it, const char *answer,
                       int durable)
{
    char txn[MATRIX_MSG_TXN_ID_SIZE];
    char *content = NULL;

    if (matrix_msg_reply(answer, it->event_id, it->thread_root, &content) != 0 ||
        matrix_msg_txn_id(it->event_id, txn) != 0) {
        log_err("matrix", "%s: cannot build the reply to %s", it->room_id, it->event_id);
        free(content);
        return;
    }
    m->hooks.reply(m->hooks.userdata, it->room_id, txn, content, durable);
    free(content);
}

static void queue_member(struct matrix_sync *m, int join, const char *room)
{
    struct member_op *op = calloc(1, sizeof(*op));

    if (!op || !(op->room = strdup(room))) {
        free(op);
        log_err("matrix", "out of memory: invite to %s not answered", room);
        return;
    }
    op->join = join;
    if (m->ops_tail)
        m->ops_tail->next = op;
    else
        m->ops = op;
    m->ops_tail = op;
}

static void handle(struct matrix_sync *m, const struct matrix_msg_item *it, int first)
{
    static int encrypted_said; /* once per process, not per room or batch */
    char *answer = NULL, line[128];
    enum ratelimit_verdict verdict;
    unsigned retry_s = 0;
    int durable = 0;

    switch (it->kind) {
    case MATRIX_MSG_COMMAND:
    case MATRIX_MSG_REFUSE:
        if (first)
            return; /* history, from before the bridge was listening */
        if (it->age_ms > MATRIX_STALE_MS) {
            /* Sent long ago (the bridge or the homeserver was away): an answer now would
             * only confuse the room. */
            log_info("matrix", "%s: %s from %s is %lld s old; not answered", it->room_id,
                     it->event_id, it->sender, (long long)(it->age_ms / 1000));
            return;
        }
        verdict = ratelimit_take(&m->limits, it->sender, now_ms(m), &retry_s);
        if (verdict != RATELIMIT_PASS) {
            /* A reply is a message in the room: "slow down" once per stretch, then silence. */
            metrics_command_limited("matrix");
            if (verdict == RATELIMIT_DROP) {
                log_debug("matrix", "%s: %s still over the rate limit; %s not answered",
                          it->room_id, it->sender, it->event_id);
                return;
            }
            log_info("matrix", "%s: %s is over the command rate limit; told to slow down",
                     it->room_id, it->sender);
            ratelimit_message(line, sizeof(line), retry_s);
            if (command_say(COMMAND_MATRIX, line, &answer) != 0)
                answer = NULL;
        } else if (it->kind == MATRIX_MSG_REFUSE) {
            log_info("matrix", "%s: %s may not use %s (allowed_users); refused %s", it->room_id,
                     it->sender, m->conf->prefix, it->event_id);
            if (command_say(COMMAND_MATRIX, MATRIX_SYNC_REFUSAL, &answer) != 0)
                answer = NULL;
        } else {
            log_info("matrix", "%s: %s from %s (%s)", it->room_id,
                     command_name(it->text, it->text_len), it->sender, it->event_id);
            if (m->hooks.answer(m->hooks.userdata, it->room_id, it->sender, it->text, it->text_len,
                                &answer, &durable) != 0)
                answer = NULL;
        }
        if (answer)
            send_reply(m, it, answer, durable);
        else
            log_err("matrix", "%s: out of memory answering %s", it->room_id, it->event_id);
        free(answer);
        return;
    case MATRIX_MSG_JOIN:
        log_info("matrix", "invited to %s by %s: joining", it->room_id,
                 it->sender ? it->sender : "(unknown)");
        queue_member(m, 1, it->room_id);
        return;
    case MATRIX_MSG_REJECT:
        log_info("matrix",
                 "invited to %s by %s: refused (not in chat.matrix.rooms, inviter not in "
                 "allowed_users)",
                 it->room_id, it->sender ? it->sender : "(unknown)");
        queue_member(m, 0, it->room_id);
        return;
    case MATRIX_MSG_LEFT:
        log_info("matrix", "no longer in %s%s%s", it->room_id, it->sender ? ": removed by " : "",
                 it->sender ? it->sender : "");
        if (m->hooks.left)
            m->hooks.left(m->hooks.userdata, it->room_id, it->sender);
        return;
    case MATRIX_MSG_ENCRYPTED:
        if (!encrypted_said) {
            encrypted_said = 1;
            log_warn("matrix",
                     "room %s is encrypted: encrypted rooms are not supported, commands there "
                     "cannot be read; use an unencrypted room",
                     it->room_id);
        } else {
            log_debug("matrix", "room %s is encrypted (not supported)", it->room_id);
        }
        return;
    }
}

static void on_sync(void *userdata, const struct http_response *res)
{
    struct matrix_sync *m = userdata;
    struct matrix_msg_rules rules = {
        .user_id = m->user_id,
        .rooms = m->conf->rooms,
        .n_rooms = m->conf->n_rooms,
        .prefix = m->conf->prefix,
        .allowed_users = m->conf->allowed_users,
        .n_allowed_users = m->conf->n_allowed_users,
    };
    struct matrix_msg_batch batch;
    int first = m->since == NULL, same, r;
    size_t skipped = 0;

    m->xfer = NULL;
    if (res->result != HTTP_DONE || res->status != 200) {
        metrics_matrix_sync(0, (int64_t)time(NULL));
        sync_failed(m, res);
        return;
    }
    m->rejected = 0;
    r = matrix_msg_parse_sync(res->body, res->body_len, &rules, &m->seen, &batch);
    if (r) {
        metrics_matrix_sync(0, (int64_t)time(NULL));
        m->failures++;
        set_error(m, "/sync: %s; retrying with back-off",
                  r == -ENOMEM ? "out of memory" : "the answer is not a sync response");
        retry_in(m, backoff_ms(m->failures));
        return;
    }
    for (size_t i = 0; i < batch.n_joined; i++) {
        const struct matrix_msg_joined *jr = &batch.joined[i];
        if (jr->skipped)
            log_info("matrix", "joined %s: %zu earlier command%s not answered", jr->room_id,
                     jr->skipped, jr->skipped == 1 ? "" : "s");
        else
            log_debug("matrix", "joined %s (its history holds no command)", jr->room_id);
    }
    for (size_t i = 0; i < batch.n; i++) {
        skipped += first &&
                   (batch.v[i].kind == MATRIX_MSG_COMMAND || batch.v[i].kind == MATRIX_MSG_REFUSE);
        handle(m, &batch.v[i], first);
    }
    if (skipped)
        log_info("matrix", "first /sync: %zu earlier command%s not answered", skipped,
                 skipped == 1 ? "" : "s");
    if (batch.dropped)
        log_warn("matrix", "/sync: %zu %s over the per-batch limits %s not read", batch.dropped,
                 batch.dropped == 1 ? "event or invite" : "events or invites",
                 batch.dropped == 1 ? "was" : "were");
    if (batch.gaps && !first)
        log_warn("matrix",
                 "%zu room%s had more new messages than one /sync returns; the older ones were "
                 "not read",
                 batch.gaps, batch.gaps == 1 ? "" : "s");
    member_next(m);
    /* Only now, with the batch acted on, does the position move (and get saved). */
    same = m->since && strcmp(m->since, batch.next_batch) == 0;
    if (!same) {
        free(m->since);
        m->since = batch.next_batch;
        batch.next_batch = NULL;
        save_position(m);
    }
    matrix_msg_batch_fini(&batch);
    metrics_matrix_sync(1, (int64_t)time(NULL));
    m->last_ok_ms = now_ms(m);
    m->failures = 0;
    if (m->last_error[0]) {
        log_info("matrix", "/sync works again");
        m->last_error[0] = '\0';
    }
    if (same && now_ms(m) - m->request_ms < SPIN_GUARD_MS)
        retry_in(m, SPIN_GUARD_MS); /* a server that does not hold the request */
    else
        do_sync(m);
}

static void do_sync(struct matrix_sync *m)
{
    char timeout[16], *url;
    int r = -1;

    snprintf(timeout, sizeof(timeout), "%d", m->since ? POLL_TIMEOUT_MS : 0);
    url = m->since ? url_build(m->conf->homeserver,
                               "/_matrix/client/v3/sync?filter=%s&timeout=%s&set_presence=offline"
                               "&since=%s",
                               m->filter, timeout, m->since)
                   : url_build(m->conf->homeserver,
                               "/_matrix/client/v3/sync?filter=%s&timeout=%s&set_presence=offline",
                               m->filter, timeout);
    if (url) {
        log_debug("matrix", "/sync%s", m->since ? "" : " (first)");
        m->request_ms = now_ms(m);
        r = start_request(m, "GET", url, NULL,
                          m->since ? SYNC_HTTP_TIMEOUT_MS : FIRST_HTTP_TIMEOUT_MS,
                          MATRIX_SYNC_BODY_MAX, on_sync, &m->xfer);
    }
    free(url);
    if (r) {
        m->failures++;
        set_error(m, "cannot start a /sync request (out of memory?)");
        retry_in(m, backoff_ms(m->failures));
    }
}

/* ---- joins and leaves ---- */

static void member_pop(struct matrix_sync *m)
{
    struct member_op *op = m->ops;

    m->ops = op->next;
    if (!m->ops)
        m->ops_tail = NULL;
    free(op->room);
    free(op);
}

static void on_member_timer(uv_timer_t *t)
{
    member_next(t->data);
}

static void on_member(void *userdata, const struct http_response *res)
{
    struct matrix_sync *m = userdata;
    struct member_op *op = m->ops;
    const char *verb = op->join ? "join" : "leave";
    uint64_t delay = 0;
    char why[160];

    m->member_xfer = NULL;
    if (res->result == HTTP_DONE && res->status == 200) {
        log_info("matrix", "%s %s", op->join ? "joined" : "left", op->room);
        member_pop(m);
        member_next(m);
        return;
    }
    switch (classify(res, &delay, why, sizeof(why))) {
    case V_FATAL:
        token_refused(m, why);
        return;
    case V_WAIT:
        break;
    case V_RETRY:
        /* Transient (network, 5xx) only; a 4xx such as M_FORBIDDEN will not change. */
        if (res->result == HTTP_DONE && res->status < 500) {
            log_warn("matrix", "cannot %s %s (%s)", verb, op->room, why);
            member_pop(m);
            member_next(m);
            return;
        }
        delay = MEMBER_RETRY_MS * (op->attempts + 1);
        break;
    }
    if (++op->attempts >= MEMBER_ATTEMPTS) {
        log_warn("matrix", "cannot %s %s (%s); giving up", verb, op->room, why);
        member_pop(m);
        member_next(m);
        return;
    }
    log_debug("matrix", "%s %s: %s; again in %.1f s", verb, op->room, why, (double)delay / 1000.0);
    uv_timer_start(&m->member_timer, on_member_timer, delay ? delay : MEMBER_RETRY_MS, 0);
}

static void member_next(struct matrix_sync *m)
{
    struct member_op *op;
    char *url;
    int r;

    while (!m->stopping && !m->fatal && !m->member_xfer && m->ops &&
           !uv_is_active((uv_handle_t *)&m->member_timer)) {
        op = m->ops;
        url = op->join
                  ? url_build(m->conf->homeserver, "/_matrix/client/v3/join/%s", op->room)
                  : url_build(m->conf->homeserver, "/_matrix/client/v3/rooms/%s/leave", op->room);
        r = url ? start_request(m, "POST", url, "{}", MEMBER_TIMEOUT_MS, 64 * 1024, on_member,
                                &m->member_xfer)
                : -1;
        free(url);
        if (r == 0)
            return;
        log_err("matrix", "out of memory: invite to %s not answered", op->room);
        member_pop(m);
    }
}

/* ---- lifecycle ---- */

int matrix_sync_new(struct matrix_sync **out, uv_loop_t *loop, const struct conf_chat_matrix *conf,
                    struct state *st, const struct matrix_sync_hooks *hooks, char *err,
                    size_t errlen)
{
    struct matrix_sync *m = calloc(1, sizeof(*m));
    int r = -ENOMEM;

    if (!m)
        goto fail;
    m->loop = loop;
    m->conf = conf;
    m->hooks = *hooks;
    ratelimit_init(&m->limits, m->conf->rate.per_user, m->conf->rate.per_second);
    if (asprintf(&m->auth, "Authorization: Bearer %s", conf->access_token) < 0) {
        m->auth = NULL;
        goto fail;
    }
    m->st = st;
    r = http_new(&m->http, loop);
    if (r) {
        snprintf(err, errlen, "cannot start the Matrix HTTP client");
        goto fail;
    }
    load_position(m);
    *out = m;
    return 0;
fail:
    if (r == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    matrix_sync_free(m);
    return r;
}

void matrix_sync_start(struct matrix_sync *m)
{
    if (m->started)
        return;
    m->started = 1;
    uv_timer_init(m->loop, &m->timer);
    uv_timer_init(m->loop, &m->member_timer);
    m->timer.data = m->member_timer.data = m;
    m->timers = 2;
    m->started_ms = now_ms(m);
    log_info("matrix", "answering %s in %zu room%s of %s", m->conf->prefix, m->conf->n_rooms,
             m->conf->n_rooms == 1 ? "" : "s", m->conf->homeserver);
    do_whoami(m);
}

void matrix_sync_stop(struct matrix_sync *m, void (*cb)(void *userdata), void *userdata)
{
    m->stopping = 1;
    if (m->xfer) {
        http_cancel(m->xfer);
        m->xfer = NULL;
    }
    if (m->member_xfer) {
        http_cancel(m->member_xfer);
        m->member_xfer = NULL;
    }
    if (m->timers) {
        uv_timer_stop(&m->timer);
        uv_timer_stop(&m->member_timer);
    }
    if (cb)
        cb(userdata);
}

static void release(struct matrix_sync *m)
{
    free(m->saved_user);
    free(m->saved_since);
    free(m->user_id);
    free(m->filter);
    free(m->since);
    free(m);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct matrix_sync *m = h->data;

    if (--m->timers == 0)
        release(m);
}

void matrix_sync_free(struct matrix_sync *m)
{
    if (!m)
        return;
    if (m->xfer)
        http_cancel(m->xfer);
    if (m->member_xfer)
        http_cancel(m->member_xfer);
    m->xfer = m->member_xfer = NULL;
    http_free(m->http);
    m->http = NULL;
    while (m->ops)
        member_pop(m);
    if (m->auth) {
        /* Do not leave the token lying around in freed heap memory. */
        memset(m->auth, 0, strlen(m->auth));
        free(m->auth);
        m->auth = NULL;
    }
    if (!m->timers) {
        release(m);
        return;
    }
    uv_close((uv_handle_t *)&m->timer, on_timer_closed);
    uv_close((uv_handle_t *)&m->member_timer, on_timer_closed);
}

int matrix_sync_ready(const struct matrix_sync *m, char *why, size_t whylen)
{
    uint64_t now = now_ms(m);

    if (m->fatal) {
        snprintf(why, whylen, "%s", m->last_error);
        return 0;
    }
    if (m->last_ok_ms && now - m->last_ok_ms <= READY_WINDOW_MS) {
        snprintf(why, whylen, "ok");
        return 1;
    }
    if (!m->last_ok_ms && m->started && now - m->started_ms < FIRST_SYNC_GRACE_MS) {
        snprintf(why, whylen, "first /sync under way");
        return 1;
    }
    if (m->last_ok_ms)
        snprintf(why, whylen, "no successful /sync for %llu s%s%s",
                 (unsigned long long)((now - m->last_ok_ms) / 1000u), m->last_error[0] ? ": " : "",
                 m->last_error);
    else
        snprintf(why, whylen, "no successful /sync yet%s%s", m->last_error[0] ? ": " : "",
                 m->last_error);
    return 0;
}
