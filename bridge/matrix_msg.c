/*
 * The Matrix messages of the chat client, pure (see matrix_msg.h; doc/matrix.md §4-7).
 *
 * Everything here reads untrusted JSON from the homeserver, which relays what anybody in a room
 * sent: every key may be missing or of another type, and reads as absent then; ids and tokens
 * we keep or log are bounded and free of control characters (matrix_msg_text_value()). The
 * parser never fails on odd content, only on a body that is no /sync answer at all.
 */
#include "matrix_msg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "command.h"
#include "hash.h"
#include "hmac.h"

int matrix_msg_text_ok(const char *s, size_t max)
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
    return matrix_msg_text_ok(s, MATRIX_MSG_ID_MAX);
}

const char *matrix_msg_text_value(const json_t *v, size_t max)
{
    const char *s = json_string_value(v);

    return s && strlen(s) == json_string_length(v) && matrix_msg_text_ok(s, max) ? s : NULL;
}

/* An event, room or user id (opaque, doc/matrix.md §2), or NULL. */
static const char *id_value(const json_t *v)
{
    return matrix_msg_text_value(v, MATRIX_MSG_ID_MAX);
}

static int in_list(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0)
            return 1;
    }
    return 0;
}

/* The dedup ring keeps hashes (hash_str()), not strings. */
static int seen_has(const struct matrix_msg_seen *seen, uint64_t h)
{
    for (size_t i = 0; seen && i < seen->n; i++) {
        if (seen->h[i] == h)
            return 1;
    }
    return 0;
}

static void seen_add(struct matrix_msg_seen *seen, uint64_t h)
{
    seen->h[seen->next] = h;
    seen->next = (seen->next + 1) % MATRIX_MSG_SEEN;
    if (seen->n < MATRIX_MSG_SEEN)
        seen->n++;
}

static void item_fini(struct matrix_msg_item *it)
{
    free(it->room_id);
    free(it->event_id);
    free(it->sender);
    free(it->thread_root);
    free(it->text);
}

void matrix_msg_batch_fini(struct matrix_msg_batch *b)
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
    struct matrix_msg_batch *b;
    size_t cap;
    const struct matrix_msg_rules *rules;
    const struct matrix_msg_seen *seen;
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
static int add_item(struct builder *bd, enum matrix_msg_kind kind, const char *room,
                    const char *event_id, const char *sender, const char *thread_root,
                    const char *text, size_t text_len)
{
    struct matrix_msg_batch *b = bd->b;
    struct matrix_msg_item *it;

    if (b->n == bd->cap) {
        size_t cap = bd->cap ? bd->cap * 2 : 8;
        struct matrix_msg_item *v = realloc(b->v, cap * sizeof(*v));
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
    if (seen_has(bd->seen, hash_str(event_id)))
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
static const char *as_command(const struct matrix_msg_rules *rules, json_t *ev, size_t *n,
                              const char **sender, const char **event_id, const char **root)
{
    json_t *content = json_object_get(ev, "content"), *rel, *body;
    const char *msgtype, *rel_type;

    *sender = id_value(json_object_get(ev, "sender"));
    *event_id = id_value(json_object_get(ev, "event_id"));
    *root = NULL;
    msgtype = json_string_value(json_object_get(content, "msgtype"));
    body = json_object_get(content, "body");
    /* Never answer a notice (another bot), nor ourselves (doc/matrix.md §5). */
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
    const struct matrix_msg_rules *rules = bd->rules;
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
        r = add_item(bd, MATRIX_MSG_REFUSE, room, event_id, sender, root, NULL, 0);
    else
        r = add_item(bd, MATRIX_MSG_COMMAND, room, event_id, sender, root, text, n);
    if (r == 0)
        bd->b->v[bd->b->n - 1].age_ms = event_age(ev);
    return r;
}

/*
 * The bot's own join: m.room.member, state_key the bot, membership "join" (whoever sent it), but
 * not a display name or avatar change, which is a join following a join (Synapse puts the
 * previous content in unsigned.prev_content).
 */
static int own_join(const struct matrix_msg_rules *rules, const json_t *ev)
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
    struct matrix_msg_batch *b = bd->b;
    struct matrix_msg_joined *v = realloc(b->joined, (b->n_joined + 1) * sizeof(*v));

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
    if (n > MATRIX_MSG_ROOM_EVENTS)
        bd->b->dropped += n - MATRIX_MSG_ROOM_EVENTS;
    for (size_t i = 0; i < n && i < MATRIX_MSG_ROOM_EVENTS; i++) {
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
        return add_item(bd, MATRIX_MSG_ENCRYPTED, room, NULL, NULL, NULL, NULL, 0);
    return 0;
}

/*
 * An invite (doc/matrix.md §6): the inviter is the sender of our m.room.member invite event in the
 * stripped state. Accepted for a configured room or from an allowed user; refused otherwise.
 */
static int invited_room(struct builder *bd, const char *room, json_t *r)
{
    const struct matrix_msg_rules *rules = bd->rules;
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
    return add_item(bd, join ? MATRIX_MSG_JOIN : MATRIX_MSG_REJECT, room, NULL, inviter, NULL, NULL,
                    0);
}

/*
 * A configured room under rooms.leave (doc/matrix.md, "Leaving a room"): the bot is out of it.
 * Who put it out is the sender of its own m.room.member leave or ban in the timeline, if there.
 */
static int left_room(struct builder *bd, const char *room, json_t *r)
{
    json_t *events = json_object_get(json_object_get(r, "timeline"), "events"), *ev;
    const char *by = NULL;
    size_t i;

    json_array_foreach(events, i, ev)
    {
        const char *key = json_string_value(json_object_get(ev, "state_key"));
        const char *ms =
            json_string_value(json_object_get(json_object_get(ev, "content"), "membership"));
        if (is_type(ev, "m.room.member") && key && ms && strcmp(key, bd->rules->user_id) == 0 &&
            (strcmp(ms, "leave") == 0 || strcmp(ms, "ban") == 0))
            by = id_value(json_object_get(ev, "sender"));
    }
    return add_item(bd, MATRIX_MSG_LEFT, room, NULL, by, NULL, NULL, 0);
}

static int walk(struct builder *bd, json_t *rooms)
{
    const struct matrix_msg_rules *rules = bd->rules;
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
    json_object_foreach(json_object_get(rooms, "leave"), key, r)
    {
        if (!json_is_object(r) || !in_list(rules->rooms, rules->n_rooms, key))
            continue;
        rc = left_room(bd, key, r);
        if (rc)
            return rc;
    }
    json_object_foreach(invite, key, r)
    {
        if (!json_is_object(r) || !id_ok(key))
            continue;
        if (invites++ >= MATRIX_MSG_INVITES) {
            bd->b->dropped++;
            continue;
        }
        rc = invited_room(bd, key, r);
        if (rc)
            return rc;
    }
    return 0;
}

int matrix_msg_parse_sync(const char *body, size_t len, const struct matrix_msg_rules *rules,
                          struct matrix_msg_seen *seen, struct matrix_msg_batch *out)
{
    struct builder bd = {.b = out, .rules = rules, .seen = seen};
    json_t *root;
    const char *next;
    int r;

    memset(out, 0, sizeof(*out));
    /* A NUL escape in anybody's message must not make the whole batch unreadable. */
    root = json_loadb(body, len, JSON_ALLOW_NUL, NULL);
    next = matrix_msg_text_value(json_object_get(root, "next_batch"), MATRIX_MSG_BATCH_MAX);
    if (!json_is_object(root) || !next) {
        json_decref(root);
        return -EINVAL;
    }
    out->next_batch = strdup(next);
    r = out->next_batch ? walk(&bd, json_object_get(root, "rooms")) : -ENOMEM;
    json_decref(root);
    if (r) {
        matrix_msg_batch_fini(out);
        return r;
    }
    for (size_t i = 0; seen && i < out->n; i++) {
        if (out->v[i].event_id)
            seen_add(seen, hash_str(out->v[i].event_id));
    }
    return 0;
}

void matrix_msg_parse_error(const char *body, size_t len, struct matrix_msg_error *out)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *errcode = id_value(json_object_get(j, "errcode"));
    json_t *ms = json_object_get(j, "retry_after_ms");

    out->errcode[0] = '\0';
    out->retry_after_ms = -1;
    /* Not for a log line unless it passes as an id: bounded, no control character. */
    if (errcode)
        snprintf(out->errcode, sizeof(out->errcode), "%s", errcode);
    if (json_is_integer(ms) && json_integer_value(ms) >= 0)
        out->retry_after_ms = json_integer_value(ms);
    json_decref(j);
}

int matrix_msg_parse_whoami(const char *body, size_t len, char **user_id)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *user = id_value(json_object_get(j, "user_id"));
    int r = -EINVAL;

    *user_id = NULL;
    if (user && user[0] == '@') {
        *user_id = strdup(user);
        r = *user_id ? 0 : -ENOMEM;
    }
    json_decref(j);
    return r;
}

int matrix_msg_filter(char *const *rooms, size_t n_rooms, char **out)
{
    json_t *list = json_array(), *f = NULL;

    *out = NULL;
    for (size_t i = 0; list && i < n_rooms; i++) {
        if (json_array_append_new(list, json_string(rooms[i])) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    /*
     * Messages (and the encryption markers) of the configured rooms, nothing else; and
     * membership events, for the bot's own join (see own_join()). Those are sent by the bot,
     * so no "not_senders": its own messages come back and are ignored. The rooms limit keeps
     * other joined rooms from swelling the answer past the client's size cap; it is set on
     * timeline and state, not on room, so invites still come.
     */
    if (list)
        f = json_pack("{s:{s:[s]}, s:{s:[s]}, s:{s:{s:i, s:[s,s,s], s:O}, s:{s:[s], s:O}, "
                      "s:{s:[s]}, s:{s:[s]}}}",
                      "presence", "not_types", "*", "account_data", "not_types", "*", "room",
                      "timeline", "limit", 50, "types", "m.room.message", "m.room.encrypted",
                      "m.room.member", "rooms", list, "state", "types", "m.room.encryption",
                      "rooms", list, "ephemeral", "not_types", "*", "account_data", "not_types",
                      "*");
    json_decref(list);
    *out = f ? json_dumps(f, JSON_COMPACT) : NULL;
    json_decref(f);
    return *out ? 0 : -ENOMEM;
}

int matrix_msg_reply(const char *answer, const char *event_id, const char *thread_root, char **out)
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

int matrix_msg_txn_id(const char *event_id, char out[MATRIX_MSG_TXN_ID_SIZE])
{
    char hex[2 * SHA256_LEN + 1];
    int r = hmac_sha256_hex("ytbridge matrix reply", event_id, strlen(event_id), hex);

    out[0] = '\0';
    if (r)
        return r;
    snprintf(out, MATRIX_MSG_TXN_ID_SIZE, "r-%.32s", hex);
    return 0;
}
