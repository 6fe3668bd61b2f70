/*
 * Matrix chat commands over /sync (see matrix_sync.h; ../shared/reference/matrix.md §8-13, 17).
 *
 * One request of each kind at a time: first whoami (the bot's user id feeds the filter and the
 * own-event check), then /sync in a loop, plus a FIFO of joins and leaves for invites. A batch
 * is handled completely (replies handed to the outbox, invites queued) before its next_batch is
 * written to MATRIX_SYNC_STATE_FILE, so a restart resumes after the last batch that was acted
 * on: a crash in between repeats that batch's commands (same txnIds: the homeserver drops the
 * duplicates it still remembers), it never skips one. Replies are not journaled: a reply still
 * queued when the process ends is lost, and its command is not replayed either (README).
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
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "command.h"
#include "hmac.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"

#define POLL_TIMEOUT_MS       30000 /* the server holds an empty /sync this long */
#define SYNC_HTTP_TIMEOUT_MS  45000L
#define FIRST_HTTP_TIMEOUT_MS 180000L /* the first sync is a full one: it can be slow */
#define WHOAMI_TIMEOUT_MS     30000L
#define MEMBER_TIMEOUT_MS     30000L
#define BACKOFF_MIN_MS        5000u /* matrix-bot-sdk: random 5-15 s */
#define BACKOFF_SPAN_MS       10000u
#define BACKOFF_MAX_MS        (5u * 60u * 1000u)
#define RETRY_AFTER_MAX_MS    (3600u * 1000u)
#define SPIN_GUARD_MS         1000u /* an empty answer faster than this: wait before the next */
#define READY_WINDOW_MS       (2u * 60u * 1000u)
#define FIRST_SYNC_GRACE_MS   60000u
#define MEMBER_ATTEMPTS       5u
#define MEMBER_RETRY_MS       5000u
#define STATE_FILE_MAX        (64u * 1024u)
#define NEXT_BATCH_MAX        1024u
#define REJECTED_TRIES        3u    /* /sync failures of one position before it is dropped */
#define REJECTED_RETRY_MS     2000u /* between those: they are answers, not an overload */
#define MATRIX_STALE_MS       (5 * 60 * 1000) /* a command older than this is not answered */

/* ---- the parser (pure) ---- */

/* A string we are willing to use and log: 1..max bytes, no control character. */
static int text_ok(const char *s, size_t max)
{
    size_t n = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++) {
        if (*p < 0x20 || *p == 0x7f || n == max)
            return 0;
    }
    return n > 0;
}

static int id_ok(const char *s)
{
    return text_ok(s, MATRIX_SYNC_ID_MAX);
}

/* v as such a string (see text_ok(); no embedded NUL), or NULL. */
static const char *text_value(const json_t *v, size_t max)
{
    const char *s = json_string_value(v);

    return s && strlen(s) == json_string_length(v) && text_ok(s, max) ? s : NULL;
}

/* An event, room or user id (opaque, matrix.md §5), or NULL. */
static const char *id_value(const json_t *v)
{
    return text_value(v, MATRIX_SYNC_ID_MAX);
}

static int in_list(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0)
            return 1;
    }
    return 0;
}

/* FNV-1a: the dedup ring keeps hashes, not strings. */
static uint64_t id_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static int seen_has(const struct matrix_sync_seen *seen, uint64_t h)
{
    for (size_t i = 0; seen && i < seen->n; i++) {
        if (seen->h[i] == h)
            return 1;
    }
    return 0;
}

static void seen_add(struct matrix_sync_seen *seen, uint64_t h)
{
    seen->h[seen->next] = h;
    seen->next = (seen->next + 1) % MATRIX_SYNC_SEEN;
    if (seen->n < MATRIX_SYNC_SEEN)
        seen->n++;
}

static void item_fini(struct matrix_sync_item *it)
{
    free(it->room_id);
    free(it->event_id);
    free(it->sender);
    free(it->thread_root);
    free(it->text);
}

void matrix_sync_batch_fini(struct matrix_sync_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        item_fini(&b->v[i]);
    free(b->v);
    for (size_t i = 0; i < b->n_joined; i++)
        free(b->joined[i].room_id);
    free(b->joined);
    free(b->next_batch);
    memset(b, 0, sizeof(*b));
}

struct builder {
    struct matrix_sync_batch *b;
    size_t cap;
    const struct matrix_sync_rules *rules;
    const struct matrix_sync_seen *seen;
};

static int dup_or_null(const char *s, char **out)
{
    *out = NULL;
    if (!s)
        return 0;
    *out = strdup(s);
    return *out ? 0 : -ENOMEM;
}

/* Appends an item with copies of the strings (each may be NULL). 0 or -ENOMEM. */
static int add_item(struct builder *bd, enum matrix_sync_kind kind, const char *room,
                    const char *event_id, const char *sender, const char *thread_root,
                    const char *text, size_t text_len)
{
    struct matrix_sync_batch *b = bd->b;
    struct matrix_sync_item *it;

    if (b->n == bd->cap) {
        size_t cap = bd->cap ? bd->cap * 2 : 8;
        struct matrix_sync_item *v = realloc(b->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        b->v = v;
        bd->cap = cap;
    }
    it = &b->v[b->n];
    memset(it, 0, sizeof(*it));
    it->kind = kind;
    if (dup_or_null(room, &it->room_id) || dup_or_null(event_id, &it->event_id) ||
        dup_or_null(sender, &it->sender) || dup_or_null(thread_root, &it->thread_root))
        goto fail;
    if (text) {
        it->text = malloc(text_len + 1);
        if (!it->text)
            goto fail;
        memcpy(it->text, text, text_len);
        it->text[text_len] = '\0';
        it->text_len = text_len;
    }
    b->n++;
    return 0;
fail:
    item_fini(it);
    return -ENOMEM;
}

/* A duplicate: answered in an earlier batch or already taken from this one. */
static int duplicate(const struct builder *bd, const char *event_id)
{
    if (seen_has(bd->seen, id_hash(event_id)))
        return 1;
    for (size_t i = 0; i < bd->b->n; i++) {
        if (bd->b->v[i].event_id && strcmp(bd->b->v[i].event_id, event_id) == 0)
            return 1;
    }
    return 0;
}

/*
 * The body after a legacy reply fallback: leading lines starting with "> " (or a bare ">"),
 * then one blank line (spec modules/rich_replies.md; clients stopped sending it in v1.13).
 */
static const char *strip_fallback(const char *p, const char *end)
{
    int quoted = 0;

    while (p < end && *p == '>' && (p + 1 == end || p[1] == ' ' || p[1] == '\n')) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        quoted = 1;
        if (!nl)
            return end;
        p = nl + 1;
    }
    if (quoted && p < end && *p == '\n')
        p++;
    return p;
}

/* Bytes of whitespace at p, as between command words (command_space_len()). */
static size_t space_at(const char *p, const char *end)
{
    return command_space_len(p, (size_t)(end - p));
}

/*
 * The command text in body, or NULL when body is not a command: the prefix as a whole word at
 * the start (after a reply fallback), then the rest without its leading whitespace.
 */
static const char *command_text(const char *body, size_t len, const char *prefix, size_t *n)
{
    const char *end = body + len, *p = strip_fallback(body, end);
    size_t pl = strlen(prefix), sp;

    if ((size_t)(end - p) < pl || memcmp(p, prefix, pl) != 0)
        return NULL;
    p += pl;
    if (p < end && !space_at(p, end))
        return NULL; /* "!youtrackfoo" */
    while ((sp = space_at(p, end)) != 0)
        p += sp;
    *n = (size_t)(end - p);
    if (*n > COMMAND_MAX_INPUT)
        *n = COMMAND_MAX_INPUT + 1; /* command_run() refuses it as too long */
    return p;
}

static int is_type(const json_t *ev, const char *type)
{
    const char *t = json_string_value(json_object_get(ev, "type"));
    return t && strcmp(t, type) == 0;
}

/*
 * The command in a timeline event (type m.room.message), or NULL: the text after the prefix in
 * *n, the sender, event id and thread root (or NULL) in the out parameters.
 */
static const char *as_command(const struct matrix_sync_rules *rules, json_t *ev, size_t *n,
                              const char **sender, const char **event_id, const char **root)
{
    json_t *content = json_object_get(ev, "content"), *rel, *body;
    const char *msgtype, *rel_type;

    *sender = id_value(json_object_get(ev, "sender"));
    *event_id = id_value(json_object_get(ev, "event_id"));
    *root = NULL;
    msgtype = json_string_value(json_object_get(content, "msgtype"));
    body = json_object_get(content, "body");
    /* Never answer a notice (another bot), nor ourselves (matrix.md §6, §10). */
    if (!*sender || !*event_id || !msgtype || strcmp(msgtype, "m.text") != 0 ||
        strcmp(*sender, rules->user_id) == 0 || !json_is_string(body))
        return NULL;
    /* An edit would run the command a second time. */
    rel = json_object_get(content, "m.relates_to");
    rel_type = json_string_value(json_object_get(rel, "rel_type"));
    if ((rel_type && strcmp(rel_type, "m.replace") == 0) ||
        json_object_get(content, "m.new_content"))
        return NULL;
    if (rel_type && strcmp(rel_type, "m.thread") == 0)
        *root = id_value(json_object_get(rel, "event_id"));
    return command_text(json_string_value(body), json_string_length(body), rules->prefix, n);
}

/* An event's age in ms (matrix_sync_item.age_ms), or -1. */
static int64_t event_age(json_t *ev)
{
    json_t *age = json_object_get(json_object_get(ev, "unsigned"), "age");
    json_t *ts = json_object_get(ev, "origin_server_ts");

    if (json_is_integer(age) && json_integer_value(age) >= 0)
        return json_integer_value(age);
    if (json_is_integer(ts) && json_integer_value(ts) > 0)
        return (int64_t)time(NULL) * 1000 - json_integer_value(ts);
    return -1;
}

/*
 * One timeline event of a configured room. history: not NULL for an event from before the bot's
 * own join, whose command is only counted there. 0 or -ENOMEM.
 */
static int timeline_event(struct builder *bd, const char *room, json_t *ev, int *encrypted,
                          size_t *history)
{
    const struct matrix_sync_rules *rules = bd->rules;
    const char *text, *sender, *event_id, *root;
    size_t n = 0;
    int r;

    if (is_type(ev, "m.room.encrypted") || is_type(ev, "m.room.encryption")) {
        *encrypted = 1;
        return 0;
    }
    if (!is_type(ev, "m.room.message"))
        return 0;
    text = as_command(rules, ev, &n, &sender, &event_id, &root);
    if (!text || duplicate(bd, event_id)) {
        bd->b->ignored++;
        return 0;
    }
    if (history) {
        (*history)++;
        return 0;
    }
    if (rules->n_allowed_users && !in_list(rules->allowed_users, rules->n_allowed_users, sender))
        r = add_item(bd, MATRIX_SYNC_REFUSE, room, event_id, sender, root, NULL, 0);
    else
        r = add_item(bd, MATRIX_SYNC_COMMAND, room, event_id, sender, root, text, n);
    if (r == 0)
        bd->b->v[bd->b->n - 1].age_ms = event_age(ev);
    return r;
}

/*
 * The bot's own join: m.room.member, state_key the bot, membership "join" (whoever sent it), but
 * not a display name or avatar change, which is a join following a join (Synapse puts the
 * previous content in unsigned.prev_content).
 */
static int own_join(const struct matrix_sync_rules *rules, const json_t *ev)
{
    const char *key = json_string_value(json_object_get(ev, "state_key"));
    const char *ms =
        json_string_value(json_object_get(json_object_get(ev, "content"), "membership"));
    const char *prev = json_string_value(json_object_get(
        json_object_get(json_object_get(ev, "unsigned"), "prev_content"), "membership"));

    return is_type(ev, "m.room.member") && key && ms && strcmp(key, rules->user_id) == 0 &&
           strcmp(ms, "join") == 0 && !(prev && strcmp(prev, "join") == 0);
}

static int add_joined(struct builder *bd, const char *room, size_t skipped)
{
    struct matrix_sync_batch *b = bd->b;
    struct matrix_sync_joined *v = realloc(b->joined, (b->n_joined + 1) * sizeof(*v));

    if (!v)
        return -ENOMEM;
    b->joined = v;
    v[b->n_joined].room_id = strdup(room);
    if (!v[b->n_joined].room_id)
        return -ENOMEM;
    v[b->n_joined++].skipped = skipped;
    return 0;
}

static int joined_room(struct builder *bd, const char *room, json_t *r)
{
    json_t *timeline = json_object_get(r, "timeline");
    json_t *events = json_object_get(timeline, "events");
    json_t *state = json_object_get(json_object_get(r, "state"), "events");
    size_t n = json_array_size(events), after = 0, skipped = 0;
    int encrypted = 0, joined = 0, rc;

    for (size_t i = 0; i < json_array_size(state); i++) {
        if (is_type(json_array_get(state, i), "m.room.encryption"))
            encrypted = 1;
    }
    /* The last join counts (kicked and invited back within one batch); it may lie past the
     * events looked at, which are then all history. */
    for (size_t i = n; i-- > 0;) {
        if (own_join(bd->rules, json_array_get(events, i))) {
            after = i + 1;
            joined = 1;
            break;
        }
    }
    /* After a join, "limited" means the history before it was cut: no gap in what we read. */
    if (json_is_true(json_object_get(timeline, "limited")) && !joined)
        bd->b->gaps++;
    if (n > MATRIX_SYNC_ROOM_EVENTS)
        bd->b->dropped += n - MATRIX_SYNC_ROOM_EVENTS;
    for (size_t i = 0; i < n && i < MATRIX_SYNC_ROOM_EVENTS; i++) {
        json_t *ev = json_array_get(events, i);
        if (!json_is_object(ev))
            continue;
        rc = timeline_event(bd, room, ev, &encrypted, i < after ? &skipped : NULL);
        if (rc)
            return rc;
    }
    if (joined) {
        rc = add_joined(bd, room, skipped);
        if (rc)
            return rc;
    }
    if (encrypted)
        return add_item(bd, MATRIX_SYNC_ENCRYPTED, room, NULL, NULL, NULL, NULL, 0);
    return 0;
}

/*
 * An invite (matrix.md §11): the inviter is the sender of our m.room.member invite event in the
 * stripped state. Accepted for a configured room or from an allowed user; refused otherwise.
 */
static int invited_room(struct builder *bd, const char *room, json_t *r)
{
    const struct matrix_sync_rules *rules = bd->rules;
    json_t *events = json_object_get(json_object_get(r, "invite_state"), "events");
    const char *inviter = NULL;
    int join;

    for (size_t i = 0; i < json_array_size(events); i++) {
        json_t *ev = json_array_get(events, i);
        const char *key = json_string_value(json_object_get(ev, "state_key"));
        const char *ms =
            json_string_value(json_object_get(json_object_get(ev, "content"), "membership"));
        if (is_type(ev, "m.room.member") && key && strcmp(key, rules->user_id) == 0 && ms &&
            strcmp(ms, "invite") == 0) {
            inviter = id_value(json_object_get(ev, "sender"));
            break;
        }
    }
    join = in_list(rules->rooms, rules->n_rooms, room) ||
           (inviter && rules->n_allowed_users &&
            in_list(rules->allowed_users, rules->n_allowed_users, inviter));
    return add_item(bd, join ? MATRIX_SYNC_JOIN : MATRIX_SYNC_REJECT, room, NULL, inviter, NULL,
                    NULL, 0);
}

static int walk(struct builder *bd, json_t *rooms)
{
    const struct matrix_sync_rules *rules = bd->rules;
    json_t *join = json_object_get(rooms, "join"), *invite = json_object_get(rooms, "invite");
    const char *key;
    json_t *r;
    size_t invites = 0;
    int rc;

    json_object_foreach(join, key, r)
    {
        if (!json_is_object(r) || !in_list(rules->rooms, rules->n_rooms, key))
            continue;
        rc = joined_room(bd, key, r);
        if (rc)
            return rc;
    }
    json_object_foreach(invite, key, r)
    {
        if (!json_is_object(r) || !id_ok(key))
            continue;
        if (invites++ >= MATRIX_SYNC_INVITES) {
            bd->b->dropped++;
            continue;
        }
        rc = invited_room(bd, key, r);
        if (rc)
            return rc;
    }
    return 0;
}

int matrix_sync_parse(const char *body, size_t len, const struct matrix_sync_rules *rules,
                      struct matrix_sync_seen *seen, struct matrix_sync_batch *out)
{
    struct builder bd = {.b = out, .rules = rules, .seen = seen};
    json_t *root;
    const char *next;
    int r;

    memset(out, 0, sizeof(*out));
    /* A NUL escape in anybody's message must not make the whole batch unreadable. */
    root = json_loadb(body, len, JSON_ALLOW_NUL, NULL);
    next = text_value(json_object_get(root, "next_batch"), NEXT_BATCH_MAX);
    if (!json_is_object(root) || !next) {
        json_decref(root);
        return -EINVAL;
    }
    out->next_batch = strdup(next);
    r = out->next_batch ? walk(&bd, json_object_get(root, "rooms")) : -ENOMEM;
    json_decref(root);
    if (r) {
        matrix_sync_batch_fini(out);
        return r;
    }
    for (size_t i = 0; seen && i < out->n; i++) {
        if (out->v[i].event_id)
            seen_add(seen, id_hash(out->v[i].event_id));
    }
    return 0;
}

int matrix_sync_reply_content(const char *answer, const char *event_id, const char *thread_root,
                              char **out)
{
    json_t *o = json_loads(answer, 0, NULL), *rel;
    int r = -ENOMEM;

    *out = NULL;
    if (!json_is_object(o)) {
        json_decref(o);
        return -EINVAL;
    }
    /* Rich reply; inside a thread, stay in it. The answer is a real reply to the command, so
     * is_falling_back is false: true would tell thread-aware clients that m.in_reply_to is only
     * the fallback for thread-unaware ones and they would not show the answer as a reply
     * (Matrix client-server spec, Threading, "Replies within threads"). */
    if (thread_root)
        rel = json_pack("{s:s, s:s, s:{s:s}, s:b}", "rel_type", "m.thread", "event_id", thread_root,
                        "m.in_reply_to", "event_id", event_id, "is_falling_back", 0);
    else
        rel = json_pack("{s:{s:s}}", "m.in_reply_to", "event_id", event_id);
    if (rel && json_object_set_new(o, "m.relates_to", rel) == 0) {
        *out = json_dumps(o, JSON_COMPACT);
        if (*out)
            r = 0;
    }
    json_decref(o);
    return r;
}

void matrix_sync_txn_id(const char *event_id, char out[MATRIX_SYNC_TXN_ID_SIZE])
{
    char hex[2 * SHA256_LEN + 1];

    hmac_sha256_hex("ytbridge matrix reply", event_id, strlen(event_id), hex);
    snprintf(out, MATRIX_SYNC_TXN_ID_SIZE, "r-%.32s", hex);
}

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
    char *auth; /* "Authorization: Bearer ..." */
    char *state_dir, *state_path;
    char *saved_user, *saved_since; /* from the state file (same homeserver) */
    char *user_id;                  /* from whoami */
    char *filter;                   /* URL-escaped inline filter */
    char *since;                    /* NULL: the first sync is still to come */
    struct http_xfer *xfer;         /* whoami or /sync */
    struct http_xfer *member_xfer;  /* the head of ops */
    struct member_op *ops, *ops_tail;
    uv_timer_t timer, member_timer;
    int timers; /* initialised and not yet closed */
    int started, stopping, fatal;
    int save_failed; /* the last save_state() failed (logged once) */
    unsigned failures;
    unsigned rejected; /* /sync failures in a row that this since will always get */
    uint64_t started_ms, last_ok_ms;
    uint64_t request_ms; /* when the current /sync started */
    struct matrix_sync_seen seen;
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

static void load_state(struct matrix_sync *m)
{
    char buf[STATE_FILE_MAX + 1];
    json_t *o;
    ssize_t n = 0;
    int fd = open(m->state_path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        if (errno != ENOENT)
            log_warn("matrix", "cannot read %s: %s; starting with a first sync", m->state_path,
                     strerror(errno));
        return;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - (size_t)n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += r;
        if ((size_t)n == sizeof(buf) - 1)
            break;
    }
    close(fd);
    o = json_loadb(buf, (size_t)n, 0, NULL);
    const char *hs = json_string_value(json_object_get(o, "homeserver"));
    const char *user = id_value(json_object_get(o, "user_id"));
    const char *since = text_value(json_object_get(o, "next_batch"), NEXT_BATCH_MAX);
    if (!hs || !user || !since) {
        log_warn("matrix",
                 "%s is damaged; ignoring it (a first sync: commands sent while the "
                 "bridge was down are not answered)",
                 m->state_path);
    } else if (strcmp(hs, m->conf->homeserver) != 0) {
        log_info("matrix", "%s is for another homeserver; starting with a first sync",
                 m->state_path);
    } else {
        m->saved_user = strdup(user);
        m->saved_since = strdup(since);
        if (!m->saved_user || !m->saved_since) {
            free(m->saved_user);
            m->saved_user = NULL;
        }
    }
    json_decref(o);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Temp file, fsync, rename, fsync of the directory: a power cut leaves the old or the new. */
static int save_state(struct matrix_sync *m)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "homeserver", m->conf->homeserver, "user_id",
                          m->user_id, "next_batch", m->since);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    char *tmp = NULL;
    int fd = -1, dfd = -1, r = 0;

    json_decref(o);
    if (!text || asprintf(&tmp, "%s.tmp", m->state_path) < 0) {
        tmp = NULL;
        r = -ENOMEM;
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    r = write_all(fd, text, strlen(text));
    if (!r)
        r = write_all(fd, "\n", 1);
    if (!r && fsync(fd) != 0)
        r = -errno;
    if (close(fd) != 0 && !r)
        r = -errno;
    fd = -1;
    if (!r && rename(tmp, m->state_path) != 0)
        r = -errno;
    if (r) {
        unlink(tmp);
        goto out;
    }
    dfd = open(m->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
out:
    if (r && !m->save_failed)
        log_err("matrix", "cannot save %s: %s; a restart may answer this batch's commands again",
                m->state_path, strerror(-r));
    else if (r)
        log_debug("matrix", "cannot save %s: %s (again)", m->state_path, strerror(-r));
    else if (m->save_failed)
        log_info("matrix", "%s saved again", m->state_path);
    m->save_failed = r != 0;
    free(tmp);
    free(text);
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

/* Random 5-15 s, doubling with each failure in a row, at most 5 minutes. */
static uint64_t backoff_ms(unsigned failures)
{
    uint64_t ms = BACKOFF_MIN_MS + (uint64_t)rand() % (BACKOFF_SPAN_MS + 1);
    for (unsigned i = 1; i < failures && ms < BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms;
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
 * (matrix.md §17.4).
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
 * Classifies a failed answer (not 200) by errcode first, status second (matrix.md §1, §4),
 * with what went wrong in why ("HTTP 401 M_UNKNOWN_TOKEN", or the transport error).
 */
static enum verdict classify(const struct http_response *res, uint64_t *delay_ms, char *why,
                             size_t whylen)
{
    json_t *j = NULL;
    const char *errcode = NULL;
    enum verdict v = V_RETRY;

    if (res->result != HTTP_DONE) {
        snprintf(why, whylen, "%s", res->error ? res->error : "request failed");
        return V_RETRY;
    }
    j = json_loadb(res->body, res->body_len, 0, NULL);
    errcode = json_string_value(json_object_get(j, "errcode"));
    if (errcode && !id_ok(errcode))
        errcode = NULL; /* not for a log line */
    /* Any 401 (M_UNKNOWN_TOKEN, M_MISSING_TOKEN, M_USER_LOCKED...): no retry can help. */
    if (res->status == 401 || (errcode && (strcmp(errcode, "M_UNKNOWN_TOKEN") == 0 ||
                                           strcmp(errcode, "M_MISSING_TOKEN") == 0))) {
        v = V_FATAL;
    } else if ((errcode && strcmp(errcode, "M_LIMIT_EXCEEDED") == 0) || res->status == 429) {
        json_t *ms = json_object_get(j, "retry_after_ms");
        if (res->retry_after >= 0)
            *delay_ms = (uint64_t)res->retry_after * 1000u;
        else if (json_is_integer(ms) && json_integer_value(ms) >= 0)
            *delay_ms = (uint64_t)json_integer_value(ms);
        else
            *delay_ms = 0;
        if (*delay_ms > RETRY_AFTER_MAX_MS)
            *delay_ms = RETRY_AFTER_MAX_MS;
        v = V_WAIT;
    }
    if (errcode)
        snprintf(why, whylen, "HTTP %ld %s", res->status, errcode);
    else
        snprintf(why, whylen, "HTTP %ld", res->status);
    json_decref(j);
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
    json_t *j = NULL, *f = NULL, *rooms;
    const char *user;
    char *esc = NULL, *text = NULL;

    m->xfer = NULL;
    if (res->result != HTTP_DONE || res->status != 200) {
        request_failed(m, "whoami", res);
        return;
    }
    j = json_loadb(res->body, res->body_len, 0, NULL);
    user = id_value(json_object_get(j, "user_id"));
    if (!user || user[0] != '@') {
        m->failures++;
        set_error(m, "whoami: the answer has no user_id; retrying with back-off");
        retry_in(m, backoff_ms(m->failures));
        goto out;
    }
    /*
     * matrix.md §8's bot filter: messages (and the encryption markers) of the configured rooms,
     * nothing else; and membership events, for the bot's own join (see own_join()). Those are
     * sent by the bot, so no "not_senders": its own messages come back and are ignored.
     * The rooms limit keeps other joined rooms from swelling the answer past
     * MATRIX_SYNC_BODY_MAX; it is set on timeline and state, not on room, so invites still come.
     */
    rooms = json_array();
    for (size_t i = 0; rooms && i < m->conf->n_rooms; i++) {
        if (json_array_append_new(rooms, json_string(m->conf->rooms[i])) != 0) {
            json_decref(rooms);
            rooms = NULL;
        }
    }
    if (rooms)
        f = json_pack("{s:{s:[s]}, s:{s:[s]}, s:{s:{s:i, s:[s,s,s], s:O}, s:{s:[s], s:O}, "
                      "s:{s:[s]}, s:{s:[s]}}}",
                      "presence", "not_types", "*", "account_data", "not_types", "*", "room",
                      "timeline", "limit", 50, "types", "m.room.message", "m.room.encrypted",
                      "m.room.member", "rooms", rooms, "state", "types", "m.room.encryption",
                      "rooms", rooms, "ephemeral", "not_types", "*", "account_data", "not_types",
                      "*");
    json_decref(rooms);
    text = f ? json_dumps(f, JSON_COMPACT) : NULL;
    json_decref(f);
    esc = text ? http_escape(text) : NULL;
    free(m->user_id);
    m->user_id = strdup(user);
    if (!esc || !m->user_id) {
        free(m->user_id);
        m->user_id = NULL;
        m->failures++;
        set_error(m, "out of memory; retrying");
        retry_in(m, backoff_ms(m->failures));
        goto out;
    }
    free(m->filter);
    m->filter = esc;
    esc = NULL;
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
out:
    free(esc);
    free(text);
    json_decref(j);
}

static void do_whoami(struct matrix_sync *m)
{
    char *url = NULL;

    if (asprintf(&url, "%s/_matrix/client/v3/account/whoami", m->conf->homeserver) < 0 ||
        start_request(m, "GET", url, NULL, WHOAMI_TIMEOUT_MS, 64 * 1024, on_whoami, &m->xfer)) {
        m->failures++;
        set_error(m, "cannot start the whoami request (out of memory?)");
        retry_in(m, backoff_ms(m->failures));
    }
    free(url);
}

/* Sends the answer (content JSON) to item's command, through the outbox. */
static void send_reply(struct matrix_sync *m, const struct matrix_sync_item *it, const char *answer)
{
    char txn[MATRIX_SYNC_TXN_ID_SIZE];
    char *content = NULL;

    if (matrix_sync_reply_content(answer, it->event_id, it->thread_root, &content) != 0) {
        log_err("matrix", "%s: cannot build the reply to %s", it->room_id, it->event_id);
        return;
    }
    matrix_sync_txn_id(it->event_id, txn);
    m->hooks.reply(m->hooks.userdata, it->room_id, txn, content);
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

static void handle(struct matrix_sync *m, const struct matrix_sync_item *it, int first)
{
    static int encrypted_said; /* once per process, not per room or batch */
    char *answer = NULL, line[128];
    enum ratelimit_verdict verdict;
    unsigned retry_s = 0;

    switch (it->kind) {
    case MATRIX_SYNC_COMMAND:
    case MATRIX_SYNC_REFUSE:
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
        } else if (it->kind == MATRIX_SYNC_REFUSE) {
            log_info("matrix", "%s: %s may not use %s (allowed_users); refused %s", it->room_id,
                     it->sender, m->conf->prefix, it->event_id);
            if (command_say(COMMAND_MATRIX, MATRIX_SYNC_REFUSAL, &answer) != 0)
                answer = NULL;
        } else {
            log_info("matrix", "%s: %s from %s (%s)", it->room_id,
                     command_name(it->text, it->text_len), it->sender, it->event_id);
            if (m->hooks.answer(m->hooks.userdata, it->text, it->text_len, &answer) != 0)
                answer = NULL;
        }
        if (answer)
            send_reply(m, it, answer);
        else
            log_err("matrix", "%s: out of memory answering %s", it->room_id, it->event_id);
        free(answer);
        return;
    case MATRIX_SYNC_JOIN:
        log_info("matrix", "invited to %s by %s: joining", it->room_id,
                 it->sender ? it->sender : "(unknown)");
        queue_member(m, 1, it->room_id);
        return;
    case MATRIX_SYNC_REJECT:
        log_info("matrix",
                 "invited to %s by %s: refused (not in chat.matrix.rooms, inviter not in "
                 "allowed_users)",
                 it->room_id, it->sender ? it->sender : "(unknown)");
        queue_member(m, 0, it->room_id);
        return;
    case MATRIX_SYNC_ENCRYPTED:
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
    struct matrix_sync_rules rules = {
        .user_id = m->user_id,
        .rooms = m->conf->rooms,
        .n_rooms = m->conf->n_rooms,
        .prefix = m->conf->prefix,
        .allowed_users = m->conf->allowed_users,
        .n_allowed_users = m->conf->n_allowed_users,
    };
    struct matrix_sync_batch batch;
    int first = m->since == NULL, same, r;
    size_t skipped = 0;

    m->xfer = NULL;
    if (res->result != HTTP_DONE || res->status != 200) {
        metrics_matrix_sync(0, (int64_t)time(NULL));
        sync_failed(m, res);
        return;
    }
    m->rejected = 0;
    r = matrix_sync_parse(res->body, res->body_len, &rules, &m->seen, &batch);
    if (r) {
        metrics_matrix_sync(0, (int64_t)time(NULL));
        m->failures++;
        set_error(m, "/sync: %s; retrying with back-off",
                  r == -ENOMEM ? "out of memory" : "the answer is not a sync response");
        retry_in(m, backoff_ms(m->failures));
        return;
    }
    for (size_t i = 0; i < batch.n_joined; i++) {
        const struct matrix_sync_joined *jr = &batch.joined[i];
        if (jr->skipped)
            log_info("matrix", "joined %s: %zu earlier command%s not answered", jr->room_id,
                     jr->skipped, jr->skipped == 1 ? "" : "s");
        else
            log_debug("matrix", "joined %s (its history holds no command)", jr->room_id);
    }
    for (size_t i = 0; i < batch.n; i++) {
        skipped += first && (batch.v[i].kind == MATRIX_SYNC_COMMAND ||
                             batch.v[i].kind == MATRIX_SYNC_REFUSE);
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
        save_state(m);
    }
    matrix_sync_batch_fini(&batch);
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
    char *url = NULL, *since = m->since ? http_escape(m->since) : NULL;
    int r;

    if (m->since && !since)
        r = -1;
    else
        r = asprintf(&url,
                     "%s/_matrix/client/v3/sync?filter=%s&timeout=%d&set_presence=offline%s%s",
                     m->conf->homeserver, m->filter, m->since ? POLL_TIMEOUT_MS : 0,
                     since ? "&since=" : "", since ? since : "");
    free(since);
    if (r < 0) {
        url = NULL;
    } else {
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
    char *room, *url = NULL;
    int r = -1;

    while (!m->stopping && !m->fatal && !m->member_xfer && m->ops &&
           !uv_is_active((uv_handle_t *)&m->member_timer)) {
        op = m->ops;
        room = http_escape(op->room);
        if (room)
            r = op->join ? asprintf(&url, "%s/_matrix/client/v3/join/%s", m->conf->homeserver, room)
                         : asprintf(&url, "%s/_matrix/client/v3/rooms/%s/leave",
                                    m->conf->homeserver, room);
        free(room);
        if (r >= 0)
            r = start_request(m, "POST", url, "{}", MEMBER_TIMEOUT_MS, 64 * 1024, on_member,
                              &m->member_xfer);
        else
            url = NULL;
        free(url);
        url = NULL;
        if (r == 0)
            return;
        log_err("matrix", "out of memory: invite to %s not answered", op->room);
        member_pop(m);
    }
}

/* ---- lifecycle ---- */

int matrix_sync_new(struct matrix_sync **out, uv_loop_t *loop, const struct conf_chat_matrix *conf,
                    const char *state_dir, const struct matrix_sync_hooks *hooks, char *err,
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
    m->state_dir = strdup(state_dir);
    if (!m->state_dir || asprintf(&m->state_path, "%s/%s", state_dir, MATRIX_SYNC_STATE_FILE) < 0) {
        m->state_path = NULL;
        goto fail;
    }
    r = http_new(&m->http, loop);
    if (r) {
        snprintf(err, errlen, "cannot start the Matrix HTTP client");
        goto fail;
    }
    load_state(m);
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
    free(m->state_dir);
    free(m->state_path);
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
