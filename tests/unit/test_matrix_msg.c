/*
 * Unit tests for the pure Matrix messages (matrix_msg.h): the /sync parser, error and whoami
 * answers, the filter and the reply helpers, on real bodies from tests/data/matrix/
 * (matrix-nio, go-neb) and hand-made events for each rule of doc/matrix.md §4-7.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "matrix_msg.h"
#include "test.h"

static char *rooms[] = {"!room1:localhost", "!room2:localhost"};
static char *allowed[] = {"@alice:localhost"};

static const struct matrix_msg_rules rules = {
    .user_id = "@bot:localhost",
    .rooms = rooms,
    .n_rooms = 2,
    .prefix = "!youtrack",
};

static char *read_data(const char *name, size_t *len)
{
    return test_data("matrix", name, len);
}

static int parse(const char *body, const struct matrix_msg_rules *r, struct matrix_msg_seen *seen,
                 struct matrix_msg_batch *out)
{
    return matrix_msg_parse_sync(body, strlen(body), r, seen, out);
}

/* A sync body with the given timeline events in room (JSON array elements, comma-separated). */
static char *room_body(const char *room, const char *events)
{
    char *s = NULL;
    if (asprintf(
            &s,
            "{\"next_batch\":\"s2\",\"rooms\":{\"join\":{\"%s\":{\"timeline\":{\"events\":[%s],"
            "\"limited\":false}}}}}",
            room, events) < 0)
        exit(1);
    return s;
}

/* One m.room.message event with content (a JSON object). */
static char *message(const char *id, const char *sender, const char *content)
{
    char *s = NULL;
    if (asprintf(&s,
                 "{\"type\":\"m.room.message\",\"event_id\":\"%s\",\"sender\":\"%s\","
                 "\"origin_server_ts\":1700000000000,\"unsigned\":{\"age\":12},\"content\":%s}",
                 id, sender, content) < 0)
        exit(1);
    return s;
}

/* Parses one message in !room1 and returns the number of items (0 or 1) with the first one. */
static size_t one(const char *sender, const char *content, struct matrix_msg_batch *b)
{
    char *ev = message("$e1", sender, content);
    char *body = room_body("!room1:localhost", ev);
    int r = parse(body, &rules, NULL, b);
    free(ev);
    free(body);
    CHECK_INT(r, 0);
    return b->n;
}

static void test_fixture_nio_sync(void)
{
    static char *nio_rooms[] = {"!SVkFJHzfwvuaIEawgC:localhost"};
    struct matrix_msg_rules r = rules;
    struct matrix_msg_batch b;
    size_t len;
    char *body = read_data("nio-sync.json", &len);

    r.rooms = nio_rooms;
    r.n_rooms = 1;
    CHECK_INT(matrix_msg_parse_sync(body, len, &r, NULL, &b), 0);
    CHECK_STR(b.next_batch, "s526_47314_0_7_1_1_1_11444_1");
    CHECK_INT(b.n, 0);       /* "baba" is no command */
    CHECK_INT(b.gaps, 1);    /* "limited": true */
    CHECK_INT(b.ignored, 1); /* the one message */
    matrix_msg_batch_fini(&b);

    /* The same body with "baba" as the prefix: it is a command now. */
    r.prefix = "baba";
    CHECK_INT(matrix_msg_parse_sync(body, len, &r, NULL, &b), 0);
    CHECK_INT(b.n, 1);
    if (b.n == 1) {
        CHECK_INT(b.v[0].kind, MATRIX_MSG_COMMAND);
        CHECK_STR(b.v[0].event_id, "$152037280074GZeOm:localhost");
        CHECK_STR(b.v[0].sender, "@example:localhost");
        CHECK_STR(b.v[0].text, "");
    }
    matrix_msg_batch_fini(&b);

    /* Not a configured room: nothing, whatever it says. */
    CHECK_INT(matrix_msg_parse_sync(body, len, &rules, NULL, &b), 0);
    CHECK_INT(b.n + b.gaps + b.ignored, 0);
    matrix_msg_batch_fini(&b);
    free(body);
}

static void test_fixture_goneb(void)
{
    static char *tree[] = {"!greatdekutree:hyrule"};
    static char *navi[] = {"@navi:hyrule"};
    struct matrix_msg_rules r = {.user_id = "@link:hyrule", .prefix = "!echo"};
    struct matrix_msg_batch b;
    size_t len;
    char *body;

    body = read_data("goneb-initial-sync-no-since.json", &len);
    CHECK_INT(matrix_msg_parse_sync(body, len, &r, NULL, &b), 0);
    CHECK_STR(b.next_batch, "11_22_33_44");
    CHECK_INT(b.n, 0);
    matrix_msg_batch_fini(&b);
    free(body);

    /* The invite: refused while the room is not configured, joined when it is, or when the
     * inviter is allowed. */
    body = read_data("goneb-sync-invite.json", &len);
    CHECK_INT(matrix_msg_parse_sync(body, len, &r, NULL, &b), 0);
    CHECK_INT(b.n, 1);
    if (b.n == 1) {
        CHECK_INT(b.v[0].kind, MATRIX_MSG_REJECT);
        CHECK_STR(b.v[0].room_id, "!greatdekutree:hyrule");
        CHECK_STR(b.v[0].sender, "@navi:hyrule");
        CHECK(b.v[0].event_id == NULL);
    }
    matrix_msg_batch_fini(&b);
    r.rooms = tree;
    r.n_rooms = 1;
    CHECK_INT(matrix_msg_parse_sync(body, len, &r, NULL, &b), 0);
    CHECK(b.n == 1 && b.v[0].kind == MATRIX_MSG_JOIN);
    matrix_msg_batch_fini(&b);
    r.rooms = NULL;
    r.n_rooms = 0;
    r.allowed_users = navi;
    r.n_allowed_users = 1;
    CHECK_INT(matrix_msg_parse_sync(body, len, &r, NULL, &b), 0);
    CHECK(b.n == 1 && b.v[0].kind == MATRIX_MSG_JOIN);
    matrix_msg_batch_fini(&b);
    r.allowed_users = allowed; /* someone else */
    CHECK_INT(matrix_msg_parse_sync(body, len, &r, NULL, &b), 0);
    CHECK(b.n == 1 && b.v[0].kind == MATRIX_MSG_REJECT);
    matrix_msg_batch_fini(&b);
    /* An invite for somebody else's user id still comes to us: no inviter known. */
    r.user_id = "@zelda:hyrule";
    CHECK_INT(matrix_msg_parse_sync(body, len, &r, NULL, &b), 0);
    CHECK(b.n == 1 && b.v[0].kind == MATRIX_MSG_REJECT && b.v[0].sender == NULL);
    matrix_msg_batch_fini(&b);
    free(body);

    r = (struct matrix_msg_rules){
        .user_id = "@link:hyrule", .rooms = tree, .n_rooms = 1, .prefix = "!echo"};
    body = read_data("goneb-sync-join-command-echo.json", &len);
    CHECK_INT(matrix_msg_parse_sync(body, len, &r, NULL, &b), 0);
    CHECK_INT(b.n, 1);
    if (b.n == 1) {
        CHECK_INT(b.v[0].kind, MATRIX_MSG_COMMAND);
        CHECK_STR(b.v[0].room_id, "!greatdekutree:hyrule");
        CHECK_STR(b.v[0].event_id, "evt124");
        CHECK_STR(b.v[0].sender, "@navi:hyrule");
        CHECK_STR(b.v[0].text, "save zelda");
        CHECK_INT(b.v[0].text_len, 10);
        CHECK(b.v[0].thread_root == NULL);
    }
    matrix_msg_batch_fini(&b);
    free(body);

    body = read_data("goneb-sync-join-encryption-state.json", &len);
    CHECK_INT(matrix_msg_parse_sync(body, len, &r, NULL, &b), 0);
    CHECK(b.n == 1 && b.v[0].kind == MATRIX_MSG_ENCRYPTED);
    matrix_msg_batch_fini(&b);
    free(body);
}

static void test_encrypted(void)
{
    struct matrix_msg_batch b;
    size_t len;
    char *ev = read_data("nio-event-megolm.json", &len);
    char *body = room_body("!room2:localhost", ev);

    CHECK_INT(parse(body, &rules, NULL, &b), 0);
    CHECK(b.n == 1 && b.v[0].kind == MATRIX_MSG_ENCRYPTED);
    if (b.n == 1)
        CHECK_STR(b.v[0].room_id, "!room2:localhost");
    matrix_msg_batch_fini(&b);
    free(body);
    /* In a room that is not ours: not our business. */
    body = room_body("!other:localhost", ev);
    CHECK_INT(parse(body, &rules, NULL, &b), 0);
    CHECK_INT(b.n, 0);
    matrix_msg_batch_fini(&b);
    free(body);
    free(ev);
    /* The room's state says so, without any event. */
    CHECK_INT(parse("{\"next_batch\":\"x\",\"rooms\":{\"join\":{\"!room1:localhost\":{\"state\":"
                    "{\"events\":[{\"type\":\"m.room.encryption\",\"state_key\":\"\",\"content\":"
                    "{\"algorithm\":\"m.megolm.v1.aes-sha2\"}}]}}}}}",
                    &rules, NULL, &b),
              0);
    CHECK(b.n == 1 && b.v[0].kind == MATRIX_MSG_ENCRYPTED);
    matrix_msg_batch_fini(&b);
}

static void test_commands(void)
{
    struct matrix_msg_batch b;
    static const struct {
        const char *content;
        const char *text; /* NULL: not a command */
    } cases[] = {
        {"{\"msgtype\":\"m.text\",\"body\":\"!youtrack projects\"}", "projects"},
        {"{\"msgtype\":\"m.text\",\"body\":\"!youtrack\"}", ""},
        {"{\"msgtype\":\"m.text\",\"body\":\"!youtrack   project  DEMO \"}", "project  DEMO "},
        {"{\"msgtype\":\"m.text\",\"body\":\"!youtrack\\nstatus\"}", "status"},
        {"{\"msgtype\":\"m.text\",\"body\":\"!youtrack\\u00a0help\"}", "help"},
        {"{\"msgtype\":\"m.text\",\"body\":\"!youtrackfoo\"}", NULL},
        {"{\"msgtype\":\"m.text\",\"body\":\"!youtrack-x\"}", NULL},
        {"{\"msgtype\":\"m.text\",\"body\":\" !youtrack help\"}", NULL},
        {"{\"msgtype\":\"m.text\",\"body\":\"!YouTrack help\"}", NULL},
        {"{\"msgtype\":\"m.text\",\"body\":\"please !youtrack help\"}", NULL},
        {"{\"msgtype\":\"m.text\",\"body\":\"!youtrac\"}", NULL},
        {"{\"msgtype\":\"m.text\",\"body\":\"\"}", NULL},
        /* Every m.notice is dropped (doc/matrix.md §5). */
        {"{\"msgtype\":\"m.notice\",\"body\":\"!youtrack help\"}", NULL},
        {"{\"msgtype\":\"m.emote\",\"body\":\"!youtrack help\"}", NULL},
        {"{\"body\":\"!youtrack help\"}", NULL},
        {"{\"msgtype\":\"m.text\"}", NULL},
        {"{\"msgtype\":\"m.text\",\"body\":42}", NULL},
        {"{\"msgtype\":\"m.text\",\"body\":\"!youtrack "
         "help\",\"format\":\"org.matrix.custom.html\","
         "\"formatted_body\":\"<p>!youtrack help</p>\"}",
         "help"},
        /* Only the body counts, not the HTML. */
        {"{\"msgtype\":\"m.text\",\"body\":\"hi\",\"formatted_body\":\"!youtrack help\"}", NULL},
        /* Edits (m.replace) never run a command again. */
        {"{\"msgtype\":\"m.text\",\"body\":\"* !youtrack status\",\"m.new_content\":{\"msgtype\":"
         "\"m.text\",\"body\":\"!youtrack status\"},\"m.relates_to\":{\"rel_type\":\"m.replace\","
         "\"event_id\":\"$orig\"}}",
         NULL},
        {"{\"msgtype\":\"m.text\",\"body\":\"!youtrack status\",\"m.relates_to\":{\"rel_type\":"
         "\"m.replace\",\"event_id\":\"$orig\"}}",
         NULL},
        {"{\"msgtype\":\"m.text\",\"body\":\"!youtrack status\",\"m.new_content\":{}}", NULL},
        /* A legacy reply fallback is stripped first (rich_replies.md). */
        {"{\"msgtype\":\"m.text\",\"body\":\"> <@alice:localhost> what now?\\n> second line\\n\\n"
         "!youtrack changes 3\",\"m.relates_to\":{\"m.in_reply_to\":{\"event_id\":\"$q\"}}}",
         "changes 3"},
        {"{\"msgtype\":\"m.text\",\"body\":\"> !youtrack help\"}", NULL},
        {"{\"msgtype\":\"m.text\",\"body\":\"> quoted\\nnot a command\"}", NULL},
        {"{\"msgtype\":\"m.text\",\"body\":\"> quoted\\n!youtrack status\"}", "status"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = one("@alice:localhost", cases[i].content, &b);
        int ok = cases[i].text ? n == 1 && b.v[0].kind == MATRIX_MSG_COMMAND &&
                                     strcmp(b.v[0].text, cases[i].text) == 0 &&
                                     b.v[0].text_len == strlen(cases[i].text)
                               : n == 0 && b.ignored == 1;
        if (!ok)
            fprintf(stderr, "case %zu (%s): got %zu items, text \"%s\"\n", i, cases[i].content, n,
                    n ? b.v[0].text : "");
        CHECK(ok);
        matrix_msg_batch_fini(&b);
    }
}

static void test_own_and_rooms(void)
{
    struct matrix_msg_batch b;
    const char *help = "{\"msgtype\":\"m.text\",\"body\":\"!youtrack help\"}";
    char *ev, *body;

    CHECK_INT(one("@bot:localhost", help, &b), 0); /* our own */
    CHECK_INT(b.ignored, 1);
    matrix_msg_batch_fini(&b);
    CHECK_INT(one("@bot:localhost.evil", help, &b), 1);
    matrix_msg_batch_fini(&b);

    ev = message("$e1", "@alice:localhost", help);
    body = room_body("!room3:localhost", ev);
    CHECK_INT(parse(body, &rules, NULL, &b), 0);
    CHECK_INT(b.n + b.ignored, 0);
    CHECK_STR(b.next_batch, "s2");
    matrix_msg_batch_fini(&b);
    free(body);
    /* The same room under "leave" or "invite" is no place for commands either: a room left
     * says only that the bot is out of it. */
    if (asprintf(&body,
                 "{\"next_batch\":\"s\",\"rooms\":{\"leave\":{\"!room1:localhost\":"
                 "{\"timeline\":{\"events\":[%s]}}}}}",
                 ev) < 0)
        exit(1);
    CHECK_INT(parse(body, &rules, NULL, &b), 0);
    CHECK_INT(b.n, 1);
    CHECK_INT(b.v[0].kind, MATRIX_MSG_LEFT);
    CHECK(b.v[0].event_id == NULL && b.v[0].text == NULL && b.v[0].sender == NULL);
    matrix_msg_batch_fini(&b);
    free(body);
    free(ev);

    /* Events without an id or sender, or with unusable ones, are skipped. */
    const char *bad[] = {
        "{\"type\":\"m.room.message\",\"sender\":\"@a:b\",\"content\":{\"msgtype\":\"m.text\","
        "\"body\":\"!youtrack\"}}",
        "{\"type\":\"m.room.message\",\"event_id\":\"$x\",\"content\":{\"msgtype\":\"m.text\","
        "\"body\":\"!youtrack\"}}",
        "{\"type\":\"m.room.message\",\"event_id\":\"$x\\n\",\"sender\":\"@a:b\",\"content\":{"
        "\"msgtype\":\"m.text\",\"body\":\"!youtrack\"}}",
        "{\"type\":\"m.room.message\",\"event_id\":\"$x\\u0000y\",\"sender\":\"@a:b\",\"content\":"
        "{\"msgtype\":\"m.text\",\"body\":\"!youtrack\"}}",
        "{\"type\":\"m.room.message\",\"event_id\":7,\"sender\":\"@a:b\",\"content\":{\"msgtype\":"
        "\"m.text\",\"body\":\"!youtrack\"}}",
        "{\"type\":\"m.room.message\",\"event_id\":\"$x\",\"sender\":\"@a:b\",\"content\":\"no\"}",
        "{\"type\":\"m.room.member\",\"event_id\":\"$x\",\"sender\":\"@a:b\",\"state_key\":\"@a:"
        "b\","
        "\"content\":{\"membership\":\"join\",\"body\":\"!youtrack\"}}",
        "[1,2]",
        "\"!youtrack\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        body = room_body("!room1:localhost", bad[i]);
        CHECK_INT(parse(body, &rules, NULL, &b), 0);
        if (b.n)
            fprintf(stderr, "bad event %zu taken as a command\n", i);
        CHECK_INT(b.n, 0);
        matrix_msg_batch_fini(&b);
        free(body);
    }
}

static void test_allowed_users(void)
{
    struct matrix_msg_rules r = rules;
    struct matrix_msg_batch b;
    char *e1 = message("$1", "@alice:localhost", "{\"msgtype\":\"m.text\",\"body\":\"!youtrack\"}");
    char *e2 = message("$2", "@mallory:localhost",
                       "{\"msgtype\":\"m.text\",\"body\":\"!youtrack status\"}");
    char *e3 = message("$3", "@mallory:localhost", "{\"msgtype\":\"m.text\",\"body\":\"hello\"}");
    char *events = NULL, *body;

    if (asprintf(&events, "%s,%s,%s", e1, e2, e3) < 0)
        exit(1);
    body = room_body("!room2:localhost", events);
    r.allowed_users = allowed;
    r.n_allowed_users = 1;
    CHECK_INT(parse(body, &r, NULL, &b), 0);
    CHECK_INT(b.n, 2);
    if (b.n == 2) {
        CHECK_INT(b.v[0].kind, MATRIX_MSG_COMMAND);
        CHECK_STR(b.v[0].sender, "@alice:localhost");
        CHECK_INT(b.v[1].kind, MATRIX_MSG_REFUSE);
        CHECK_STR(b.v[1].sender, "@mallory:localhost");
        CHECK_STR(b.v[1].event_id, "$2");
        CHECK_STR(b.v[1].room_id, "!room2:localhost");
        CHECK(b.v[1].text == NULL);
    }
    CHECK_INT(b.ignored, 1);
    matrix_msg_batch_fini(&b);
    /* Nobody listed: everyone may ask. */
    CHECK_INT(parse(body, &rules, NULL, &b), 0);
    CHECK(b.n == 2 && b.v[1].kind == MATRIX_MSG_COMMAND);
    matrix_msg_batch_fini(&b);
    free(body);
    free(events);
    free(e1);
    free(e2);
    free(e3);
}

static void test_invites(void)
{
    struct matrix_msg_rules r = rules;
    struct matrix_msg_batch b;
    const char *body =
        "{\"next_batch\":\"s9\",\"rooms\":{\"invite\":{"
        "\"!room1:localhost\":{\"invite_state\":{\"events\":[{\"type\":\"m.room.name\","
        "\"sender\":\"@eve:localhost\",\"state_key\":\"\",\"content\":{\"name\":\"x\"}},"
        "{\"type\":\"m.room.member\",\"sender\":\"@eve:localhost\",\"state_key\":\"@bot:"
        "localhost\","
        "\"content\":{\"membership\":\"invite\"}}]}},"
        "\"!elsewhere:localhost\":{\"invite_state\":{\"events\":[{\"type\":\"m.room.member\","
        "\"sender\":\"@eve:localhost\",\"state_key\":\"@bot:localhost\",\"content\":{"
        "\"membership\":\"invite\"}}]}},"
        "\"!fromalice:localhost\":{\"invite_state\":{\"events\":[{\"type\":\"m.room.member\","
        "\"sender\":\"@carol:localhost\",\"state_key\":\"@carol:localhost\",\"content\":{"
        "\"membership\":\"join\"}},{\"type\":\"m.room.member\",\"sender\":\"@alice:localhost\","
        "\"state_key\":\"@bot:localhost\",\"content\":{\"membership\":\"invite\"}}]}},"
        "\"bad\\nroom\":{\"invite_state\":{\"events\":[]}},"
        "\"!nostate:localhost\":{}"
        "}}}";

    CHECK_INT(parse(body, &r, NULL, &b), 0);
    CHECK_STR(b.next_batch, "s9");
    CHECK_INT(b.n, 4);
    if (b.n == 4) {
        CHECK_INT(b.v[0].kind, MATRIX_MSG_JOIN); /* a configured room */
        CHECK_STR(b.v[0].room_id, "!room1:localhost");
        CHECK_STR(b.v[0].sender, "@eve:localhost");
        CHECK_INT(b.v[1].kind, MATRIX_MSG_REJECT);
        CHECK_STR(b.v[1].room_id, "!elsewhere:localhost");
        CHECK_INT(b.v[2].kind, MATRIX_MSG_REJECT); /* allowed_users is empty */
        CHECK_STR(b.v[2].sender, "@alice:localhost");
        CHECK_INT(b.v[3].kind, MATRIX_MSG_REJECT);
        CHECK(b.v[3].sender == NULL);
    }
    matrix_msg_batch_fini(&b);
    r.allowed_users = allowed;
    r.n_allowed_users = 1;
    CHECK_INT(parse(body, &r, NULL, &b), 0);
    CHECK(b.n == 4 && b.v[2].kind == MATRIX_MSG_JOIN && b.v[1].kind == MATRIX_MSG_REJECT);
    matrix_msg_batch_fini(&b);
}

static void test_dedup(void)
{
    struct matrix_msg_seen seen = {0};
    struct matrix_msg_batch b;
    char *e1 =
        message("$same", "@alice:localhost", "{\"msgtype\":\"m.text\",\"body\":\"!youtrack\"}");
    char *e2 = message("$other", "@alice:localhost",
                       "{\"msgtype\":\"m.text\",\"body\":\"!youtrack help\"}");
    char *events = NULL, *body, *body2;

    if (asprintf(&events, "%s,%s", e1, e1) < 0)
        exit(1);
    body = room_body("!room1:localhost", events);
    body2 = room_body("!room2:localhost", e1);
    CHECK_INT(parse(body, &rules, &seen, &b), 0);
    CHECK_INT(b.n, 1); /* twice in one batch */
    CHECK_INT(b.ignored, 1);
    matrix_msg_batch_fini(&b);
    CHECK_INT(parse(body, &rules, &seen, &b), 0);
    CHECK_INT(b.n, 0); /* again in the next batch */
    matrix_msg_batch_fini(&b);
    CHECK_INT(parse(body2, &rules, &seen, &b), 0);
    CHECK_INT(b.n, 0); /* the same id from another room */
    matrix_msg_batch_fini(&b);
    free(body);
    body = room_body("!room1:localhost", e2);
    CHECK_INT(parse(body, &rules, &seen, &b), 0);
    CHECK_INT(b.n, 1);
    matrix_msg_batch_fini(&b);
    CHECK_INT(seen.n, 2);
    /* A failed parse leaves the ring alone. */
    CHECK_INT(parse("{\"rooms\":{}}", &rules, &seen, &b), -EINVAL);
    CHECK_INT(seen.n, 2);
    /* The ring forgets the oldest ids. */
    for (unsigned i = 0; i < MATRIX_MSG_SEEN; i++) {
        char id[32], *ev, *bd;
        snprintf(id, sizeof(id), "$n%u", i);
        ev = message(id, "@alice:localhost", "{\"msgtype\":\"m.text\",\"body\":\"!youtrack\"}");
        bd = room_body("!room1:localhost", ev);
        CHECK_INT(parse(bd, &rules, &seen, &b), 0);
        matrix_msg_batch_fini(&b);
        free(ev);
        free(bd);
    }
    CHECK_INT(seen.n, MATRIX_MSG_SEEN);
    CHECK_INT(parse(body, &rules, &seen, &b), 0);
    CHECK_INT(b.n, 1);
    matrix_msg_batch_fini(&b);
    free(body);
    free(body2);
    free(events);
    free(e1);
    free(e2);
}

static void test_bounds(void)
{
    struct matrix_msg_batch b;
    char content[COMMAND_MAX_INPUT * 2 + 100];
    char *events, *p, *body;
    size_t n;

    /* Longer text is cut just past the limit, so that command_run() refuses it. */
    n = (size_t)snprintf(content, sizeof(content), "{\"msgtype\":\"m.text\",\"body\":\"!youtrack ");
    memset(content + n, 'x', COMMAND_MAX_INPUT * 2);
    strcpy(content + n + COMMAND_MAX_INPUT * 2, "\"}");
    CHECK_INT(one("@alice:localhost", content, &b), 1);
    if (b.n == 1) {
        CHECK_INT(b.v[0].text_len, COMMAND_MAX_INPUT + 1);
        CHECK_INT(strlen(b.v[0].text), COMMAND_MAX_INPUT + 1);
    }
    matrix_msg_batch_fini(&b);

    /* At most MATRIX_MSG_ROOM_EVENTS events per room are looked at. */
    events = malloc((MATRIX_MSG_ROOM_EVENTS + 20) * 256);
    p = events;
    for (unsigned i = 0; i < MATRIX_MSG_ROOM_EVENTS + 20; i++) {
        char id[32];
        char *ev;
        snprintf(id, sizeof(id), "$b%u", i);
        ev = message(id, "@alice:localhost", "{\"msgtype\":\"m.text\",\"body\":\"!youtrack\"}");
        p += sprintf(p, "%s%s", i ? "," : "", ev);
        free(ev);
    }
    body = room_body("!room1:localhost", events);
    CHECK_INT(parse(body, &rules, NULL, &b), 0);
    CHECK_INT(b.n, MATRIX_MSG_ROOM_EVENTS);
    CHECK_INT(b.dropped, 20);
    matrix_msg_batch_fini(&b);
    free(body);
    free(events);

    /* At most MATRIX_MSG_INVITES invites per batch. */
    events = malloc((MATRIX_MSG_INVITES + 10) * 64 + 64);
    p = events + sprintf(events, "{\"next_batch\":\"n\",\"rooms\":{\"invite\":{");
    for (unsigned i = 0; i < MATRIX_MSG_INVITES + 10; i++)
        p += sprintf(p, "%s\"!i%u:localhost\":{}", i ? "," : "", i);
    strcpy(p, "}}}");
    CHECK_INT(parse(events, &rules, NULL, &b), 0);
    CHECK_INT(b.n, MATRIX_MSG_INVITES);
    CHECK_INT(b.dropped, 10);
    matrix_msg_batch_fini(&b);
    free(events);

    /* A NUL in someone's message: the batch still parses, and the command text keeps its length
     * (command_run() refuses text with a NUL). */
    CHECK_INT(
        one("@alice:localhost", "{\"msgtype\":\"m.text\",\"body\":\"!youtrack he\\u0000lp\"}", &b),
        1);
    if (b.n == 1) {
        CHECK_INT(b.v[0].text_len, 5);
        CHECK(memcmp(b.v[0].text, "he\0lp", 6) == 0);
    }
    matrix_msg_batch_fini(&b);

    /* Tokens are opaque but bounded (1024 bytes). */
    events = malloc(2200);
    memset(events, 's', 2100);
    memcpy(events, "{\"next_batch\":\"", 15);
    strcpy(events + 15 + 1000, "\"}");
    CHECK_INT(parse(events, &rules, NULL, &b), 0);
    CHECK_INT(strlen(b.next_batch), 1000);
    matrix_msg_batch_fini(&b);
    memset(events + 15, 's', 1025);
    strcpy(events + 15 + 1025, "\"}");
    CHECK_INT(parse(events, &rules, NULL, &b), -EINVAL);
    free(events);
}

/*
 * One timeline per case, one event per letter: c a command from alice, m one from mallory (not
 * in allowed_users), t plain text, J the bot's own join, L its leave, I its invite, P its profile
 * change (a join after a join), o alice's join, x a join with no usable membership, e an
 * encrypted message. Event i has the id "$e<i>". A command before the bot's last join in the
 * timeline is history (the room's timeline as it was before the bot came in): not answered.
 */
/* A literal, so the compiler checks the arguments. */
#define FMT_MEMBER                                                                               \
    "{\"type\":\"m.room.member\",\"event_id\":\"$e%zu\",\"sender\":\"%s\",\"state_key\":\"%s\"," \
    "\"origin_server_ts\":1700000000000,\"content\":{\"membership\":\"%s\"},"                    \
    "\"unsigned\":{\"age\":5%s}}"

static char *timeline_event_json(char kind, size_t i)
{
    const char *cmd = "{\"msgtype\":\"m.text\",\"body\":\"!youtrack status\"}";
    char id[32], *s = NULL;
    int r = 0;

    snprintf(id, sizeof(id), "$e%zu", i);
    switch (kind) {
    case 'c':
        return message(id, "@alice:localhost", cmd);
    case 'm':
        return message(id, "@mallory:localhost", cmd);
    case 't':
        return message(id, "@alice:localhost", "{\"msgtype\":\"m.text\",\"body\":\"hi\"}");
    case 'J':
        r = asprintf(&s, FMT_MEMBER, i, "@bot:localhost", "@bot:localhost", "join", "");
        break;
    case 'L':
        r = asprintf(&s, FMT_MEMBER, i, "@alice:localhost", "@bot:localhost", "leave", "");
        break;
    case 'I':
        r = asprintf(&s, FMT_MEMBER, i, "@alice:localhost", "@bot:localhost", "invite", "");
        break;
    case 'P':
        r = asprintf(&s, FMT_MEMBER, i, "@bot:localhost", "@bot:localhost", "join",
                     ",\"prev_content\":{\"membership\":\"join\",\"displayname\":\"old\"}");
        break;
    case 'o':
        r = asprintf(&s, FMT_MEMBER, i, "@alice:localhost", "@alice:localhost", "join", "");
        break;
    case 'x':
        r = asprintf(&s,
                     "{\"type\":\"m.room.member\",\"event_id\":\"$e%zu\",\"sender\":\"@bot:"
                     "localhost\",\"state_key\":\"@bot:localhost\",\"content\":{\"membership\":7}}",
                     i);
        break;
    case 'e':
        r = asprintf(&s,
                     "{\"type\":\"m.room.encrypted\",\"event_id\":\"$e%zu\",\"sender\":\"@alice:"
                     "localhost\",\"content\":{\"algorithm\":\"m.megolm.v1.aes-sha2\"}}",
                     i);
        break;
    default:
        exit(1);
    }
    if (r < 0)
        exit(1);
    return s;
}

/* A /sync body whose one joined room (room) has the events spec describes. */
static char *timeline_body_in(const char *room, const char *spec, int limited)
{
    size_t cap = 64, len = 0;
    char *events = malloc(cap), *body = NULL;

    if (!events)
        exit(1);
    events[0] = '\0';
    for (size_t i = 0; spec[i]; i++) {
        char *ev = timeline_event_json(spec[i], i);
        size_t n = strlen(ev);
        if (len + n + 2 > cap) {
            cap = (len + n + 2) * 2;
            events = realloc(events, cap);
            if (!events)
                exit(1);
        }
        len += (size_t)sprintf(events + len, "%s%s", i ? "," : "", ev);
        free(ev);
    }
    if (asprintf(&body,
                 "{\"next_batch\":\"s3\",\"rooms\":{\"join\":{\"%s\":{\"timeline\":"
                 "{\"events\":[%s],\"limited\":%s}}}}}",
                 room, events, limited ? "true" : "false") < 0)
        exit(1);
    free(events);
    return body;
}

static char *timeline_body(const char *spec, int limited)
{
    return timeline_body_in("!room2:localhost", spec, limited);
}

static void test_own_join(void)
{
    static const struct {
        const char *spec;
        const char *answered; /* event ids of the items, in order ("$e2 $e3"); R: a refusal */
        long joined;          /* -1: no join seen; else the commands before it, not answered */
    } cases[] = {
        {"cJc", "$e2", 1},
        {"ccJcc", "$e3 $e4", 2},
        {"tcmJtc", "$e5", 2}, /* a refusal before the join is history too */
        {"ccJ", "", 2},
        {"Jcc", "$e1 $e2", 0},
        {"cLc", "$e0 $e2", -1},  /* our leave changes nothing */
        {"coc", "$e0 $e2", -1},  /* nor somebody else's join */
        {"cIc", "$e0 $e2", -1},  /* nor an invite */
        {"cPc", "$e0 $e2", -1},  /* nor a new display name (prev_content: join) */
        {"cxc", "$e0 $e2", -1},  /* nor a membership that is no string */
        {"cJcLIJc", "$e6", 2},   /* kicked and back: the last join counts */
        {"cJcPc", "$e2 $e4", 1}, /* a profile change after the join */
        {"ecJc", "$e3 E", 1},    /* encrypted before the join: still said */
        {"cmc", "$e0 R$e1 $e2", -1},
    };
    struct matrix_msg_rules r = rules;
    struct matrix_msg_batch b;

    r.allowed_users = allowed;
    r.n_allowed_users = 1;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *body = timeline_body(cases[i].spec, 1);
        char got[256] = "";
        size_t n = 0;

        CHECK_INT(parse(body, &r, NULL, &b), 0);
        for (size_t k = 0; k < b.n && n < sizeof(got) - 64; k++) {
            const struct matrix_msg_item *it = &b.v[k];
            n += (size_t)snprintf(got + n, sizeof(got) - n, "%s%s%s", k ? " " : "",
                                  it->kind == MATRIX_MSG_REFUSE      ? "R"
                                  : it->kind == MATRIX_MSG_ENCRYPTED ? "E"
                                                                     : "",
                                  it->event_id ? it->event_id : "");
        }
        if (strcmp(got, cases[i].answered) != 0)
            fprintf(stderr, "case %s: got \"%s\", want \"%s\"\n", cases[i].spec, got,
                    cases[i].answered);
        CHECK_STR(got, cases[i].answered);
        CHECK_INT(b.n_joined, cases[i].joined >= 0);
        if (b.n_joined == 1 && cases[i].joined >= 0) {
            CHECK_STR(b.joined[0].room_id, "!room2:localhost");
            CHECK_INT(b.joined[0].skipped, cases[i].joined);
        }
        /* "limited" on the join is the history before it, not a gap in what we read. */
        CHECK_INT(b.gaps, cases[i].joined < 0);
        matrix_msg_batch_fini(&b);
        CHECK(b.joined == NULL && b.n_joined == 0);
        free(body);
    }
}

static void test_own_join_bounds(void)
{
    char spec[MATRIX_MSG_ROOM_EVENTS + 3];
    struct matrix_msg_batch b;
    struct matrix_msg_seen seen = {0};
    char *body;

    /* The join past the events looked at: every command looked at is history. */
    memset(spec, 'c', MATRIX_MSG_ROOM_EVENTS + 1);
    strcpy(spec + MATRIX_MSG_ROOM_EVENTS + 1, "J");
    body = timeline_body(spec, 1);
    CHECK_INT(parse(body, &rules, &seen, &b), 0);
    CHECK_INT(b.n, 0);
    CHECK_INT(b.dropped, 2);
    CHECK_INT(b.n_joined, 1);
    if (b.n_joined == 1)
        CHECK_INT(b.joined[0].skipped, MATRIX_MSG_ROOM_EVENTS);
    CHECK_INT(seen.n, 0); /* history is not remembered as answered */
    matrix_msg_batch_fini(&b);
    free(body);

    /* A join in a room that is not configured: nothing. */
    body = timeline_body_in("!room9:localhost", "cJc", 0);
    CHECK_INT(parse(body, &rules, NULL, &b), 0);
    CHECK_INT(b.n + b.n_joined, 0);
    matrix_msg_batch_fini(&b);
    free(body);

    /* Two configured rooms joined in one batch: one entry each, in body order. */
    if (asprintf(&body,
                 "{\"next_batch\":\"s\",\"rooms\":{\"join\":{\"!room1:localhost\":{\"timeline\":"
                 "{\"events\":[%s]}},\"!room2:localhost\":{\"timeline\":{\"events\":[%s]}}}}}",
                 "{\"type\":\"m.room.member\",\"sender\":\"@bot:localhost\",\"state_key\":\"@bot:"
                 "localhost\",\"content\":{\"membership\":\"join\"}}",
                 "{\"type\":\"m.room.member\",\"state_key\":\"@bot:localhost\",\"content\":{"
                 "\"membership\":\"join\"}}") < 0)
        exit(1);
    CHECK_INT(parse(body, &rules, NULL, &b), 0);
    CHECK_INT(b.n_joined, 2);
    if (b.n_joined == 2) {
        CHECK_STR(b.joined[0].room_id, "!room1:localhost");
        CHECK_STR(b.joined[1].room_id, "!room2:localhost");
        CHECK_INT(b.joined[0].skipped + b.joined[1].skipped, 0);
    }
    matrix_msg_batch_fini(&b);
    free(body);
}

static void test_threads(void)
{
    struct matrix_msg_batch b;

    CHECK_INT(one("@alice:localhost",
                  "{\"msgtype\":\"m.text\",\"body\":\"!youtrack status\",\"m.relates_to\":{"
                  "\"rel_type\":\"m.thread\",\"event_id\":\"$root\",\"is_falling_back\":true,"
                  "\"m.in_reply_to\":{\"event_id\":\"$last\"}}}",
                  &b),
              1);
    if (b.n == 1)
        CHECK_STR(b.v[0].thread_root, "$root");
    matrix_msg_batch_fini(&b);
}

static void test_malformed(void)
{
    static const char *const bad[] = {
        "",
        "null",
        "[]",
        "{}",
        "\"s1\"",
        "{\"next_batch\":5}",
        "{\"next_batch\":\"\"}",
        "{\"next_batch\":null,\"rooms\":{}}",
        "{\"next_batch\":\"s\\u0001\"}",
        "{\"next_batch\":\"s1\",\"rooms\":{\"join\":{",
        "{\"next_batch\":\"s1\"} trailing",
        "\xff\xfe{}",
    };
    struct matrix_msg_batch b;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = parse(bad[i], &rules, NULL, &b);
        if (r != -EINVAL)
            fprintf(stderr, "malformed %zu: %d\n", i, r);
        CHECK_INT(r, -EINVAL);
        CHECK(b.next_batch == NULL && b.v == NULL && b.n == 0);
        matrix_msg_batch_fini(&b); /* harmless on an empty batch */
    }
    /* Wrong shapes below the top level are tolerated. */
    static const char *const odd[] = {
        "{\"next_batch\":\"s1\",\"rooms\":[]}",
        "{\"next_batch\":\"s1\",\"rooms\":{\"join\":[],\"invite\":7}}",
        "{\"next_batch\":\"s1\",\"rooms\":{\"join\":{\"!room1:localhost\":[]}}}",
        "{\"next_batch\":\"s1\",\"rooms\":{\"join\":{\"!room1:localhost\":{\"timeline\":7}}}}",
        "{\"next_batch\":\"s1\",\"rooms\":{\"join\":{\"!room1:localhost\":{\"timeline\":{"
        "\"events\":{}}}}}}",
        "{\"next_batch\":\"s1\",\"rooms\":{\"invite\":{\"!x:y\":{\"invite_state\":{\"events\":"
        "[1,null,{\"type\":\"m.room.member\",\"state_key\":\"@bot:localhost\",\"sender\":5}]}}}}}",
    };
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        CHECK_INT(parse(odd[i], &rules, NULL, &b), 0);
        CHECK_STR(b.next_batch, "s1");
        matrix_msg_batch_fini(&b);
    }
    /* The length is respected: no reading past it. */
    CHECK_INT(matrix_msg_parse_sync("{\"next_batch\":\"s1\"}xxxx", 19, &rules, NULL, &b), 0);
    matrix_msg_batch_fini(&b);
}

static void test_reply_content(void)
{
    char *answer = NULL, *out = NULL;
    json_t *o;

    CHECK_INT(command_say(COMMAND_MATRIX, "Sorry, you cannot use this command here.", &answer), 0);
    CHECK_INT(matrix_msg_reply(answer, "$cmd:localhost", NULL, &out), 0);
    o = json_loads(out, 0, NULL);
    CHECK(o != NULL);
    CHECK_STR(json_string_value(json_object_get(o, "msgtype")), "m.notice");
    CHECK(strstr(json_string_value(json_object_get(o, "body")), "cannot use this command"));
    CHECK(json_is_string(json_object_get(o, "formatted_body")));
    CHECK_STR(json_string_value(json_object_get(o, "format")), "org.matrix.custom.html");
    CHECK(json_is_object(json_object_get(o, "m.mentions")) &&
          json_object_size(json_object_get(o, "m.mentions")) == 0);
    CHECK_STR(
        json_string_value(json_object_get(
            json_object_get(json_object_get(o, "m.relates_to"), "m.in_reply_to"), "event_id")),
        "$cmd:localhost");
    CHECK_INT(json_object_size(json_object_get(o, "m.relates_to")), 1);
    json_decref(o);
    free(out);

    CHECK_INT(matrix_msg_reply(answer, "$cmd", "$root", &out), 0);
    o = json_loads(out, 0, NULL);
    json_t *rel = json_object_get(o, "m.relates_to");
    CHECK_STR(json_string_value(json_object_get(rel, "rel_type")), "m.thread");
    CHECK_STR(json_string_value(json_object_get(rel, "event_id")), "$root");
    /* A real reply inside the thread: is_falling_back false (or absent), never true. */
    CHECK(json_is_false(json_object_get(rel, "is_falling_back")));
    CHECK_STR(json_string_value(json_object_get(json_object_get(rel, "m.in_reply_to"), "event_id")),
              "$cmd");
    json_decref(o);
    free(out);
    free(answer);

    CHECK_INT(matrix_msg_reply("[1]", "$cmd", NULL, &out), -EINVAL);
    CHECK(out == NULL);
    CHECK_INT(matrix_msg_reply("nope", "$cmd", NULL, &out), -EINVAL);
}

static void test_txn_id(void)
{
    char a[MATRIX_MSG_TXN_ID_SIZE], b[MATRIX_MSG_TXN_ID_SIZE], c[MATRIX_MSG_TXN_ID_SIZE];

    CHECK_INT(matrix_msg_txn_id("$143273582443PhrSn:example.org", a), 0);
    CHECK_INT(matrix_msg_txn_id("$143273582443PhrSn:example.org", b), 0);
    CHECK_INT(matrix_msg_txn_id("$143273582443PhrSn:example.orh", c), 0);
    CHECK_STR(a, b);
    /* Pinned: a batch repeated after a crash and an upgrade still gets the same ids. */
    CHECK_STR(a, "r-0672310b086d68ec8057cca195fb5f5f");
    CHECK(strcmp(a, c) != 0);
    CHECK_INT(strlen(a), MATRIX_MSG_TXN_ID_SIZE - 1);
    CHECK(strncmp(a, "r-", 2) == 0);
    CHECK(strspn(a + 2, "0123456789abcdef") == 32);
}

static void test_error(void)
{
    struct matrix_msg_error e;
    size_t len;
    char *buf = read_data("nio-limit-exceeded.json", &len);
    char big[400];

    matrix_msg_parse_error(buf, len, &e);
    CHECK_STR(e.errcode, "M_LIMIT_EXCEEDED");
    CHECK_INT(e.retry_after_ms, 500);
    free(buf);
    const char *soft = "{\"errcode\":\"M_UNKNOWN_TOKEN\",\"soft_logout\":true}";
    matrix_msg_parse_error(soft, strlen(soft), &e);
    CHECK_STR(e.errcode, "M_UNKNOWN_TOKEN");
    CHECK_INT(e.retry_after_ms, -1);
    /* HTML from a proxy, an empty body, wrong types: nothing known. */
    static const char *const none[] = {
        "<html><body>502 Bad Gateway</body></html>", "", "[]", "{\"errcode\":5}",
        "{\"retry_after_ms\":-1}", "{\"retry_after_ms\":1.5}",
        /* not for a log line: control characters, an embedded NUL, empty */
        "{\"errcode\":\"M_\\u001b[31m\"}", "{\"errcode\":\"M_X\\u0000Y\"}", "{\"errcode\":\"\"}"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        matrix_msg_parse_error(none[i], strlen(none[i]), &e);
        CHECK_STR(e.errcode, "");
        CHECK_INT(e.retry_after_ms, -1);
    }
    /* The longest errcode kept is an id's length. */
    snprintf(big, sizeof(big), "{\"errcode\":\"%0*d\"}", (int)MATRIX_MSG_ID_MAX, 0);
    matrix_msg_parse_error(big, strlen(big), &e);
    CHECK_INT(strlen(e.errcode), MATRIX_MSG_ID_MAX);
    snprintf(big, sizeof(big), "{\"errcode\":\"%0*d\"}", (int)MATRIX_MSG_ID_MAX + 1, 0);
    matrix_msg_parse_error(big, strlen(big), &e);
    CHECK_STR(e.errcode, "");
    matrix_msg_parse_error("{\"retry_after_ms\":0}", strlen("{\"retry_after_ms\":0}"), &e);
    CHECK_INT(e.retry_after_ms, 0);
}

static void test_whoami(void)
{
    size_t len;
    char *buf = read_data("nio-whoami.json", &len), *user = NULL;

    CHECK_INT(matrix_msg_parse_whoami(buf, len, &user), 0);
    CHECK_STR(user, "@cheeky_monkey:matrix.org");
    free(user);
    free(buf);
    /* No user id, not a user id (no @), control characters, not JSON. */
    static const char *const bad[] = {"{}",
                                      "{\"user_id\":\"!room:hs\"}",
                                      "{\"user_id\":\"@a\\nb:hs\"}",
                                      "{\"user_id\":7}",
                                      "{\"user_id\":\"\"}",
                                      "<html>",
                                      ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        user = (char *)"x";
        CHECK_INT(matrix_msg_parse_whoami(bad[i], strlen(bad[i]), &user), -EINVAL);
        CHECK(user == NULL);
    }
}

static void test_filter(void)
{
    char *out = NULL;
    json_t *f, *timeline, *state;

    CHECK_INT(matrix_msg_filter(rooms, 2, &out), 0);
    f = json_loads(out, 0, NULL);
    CHECK(f != NULL);
    timeline = json_object_get(json_object_get(f, "room"), "timeline");
    state = json_object_get(json_object_get(f, "room"), "state");
    /* Messages, encryption markers and membership (the bot's own join) of our rooms only. */
    CHECK_INT(json_integer_value(json_object_get(timeline, "limit")), 50);
    CHECK_INT(json_array_size(json_object_get(timeline, "types")), 3);
    CHECK_STR(json_string_value(json_array_get(json_object_get(timeline, "types"), 2)),
              "m.room.member");
    CHECK_INT(json_array_size(json_object_get(timeline, "rooms")), 2);
    CHECK_STR(json_string_value(json_array_get(json_object_get(state, "rooms"), 1)),
              "!room2:localhost");
    CHECK_STR(json_string_value(json_array_get(json_object_get(state, "types"), 0)),
              "m.room.encryption");
    /* Not on room itself: invites to other rooms must still come. */
    CHECK(json_object_get(json_object_get(f, "room"), "rooms") == NULL);
    CHECK(json_object_get(timeline, "not_senders") == NULL);
    CHECK_STR(json_string_value(
                  json_array_get(json_object_get(json_object_get(f, "presence"), "not_types"), 0)),
              "*");
    /* Compact: it goes into a URL. */
    CHECK(strchr(out, ' ') == NULL);
    json_decref(f);
    free(out);
}

static void test_text_value(void)
{
    json_t *v = json_string("!room:localhost");

    CHECK_STR(matrix_msg_text_value(v, MATRIX_MSG_ID_MAX), "!room:localhost");
    CHECK(matrix_msg_text_value(v, 14) == NULL);
    CHECK(matrix_msg_text_value(v, 15) != NULL);
    json_decref(v);
    v = json_stringn("a\0b", 3);
    CHECK(matrix_msg_text_value(v, 10) == NULL);
    json_decref(v);
    v = json_string("tab\there");
    CHECK(matrix_msg_text_value(v, 10) == NULL);
    json_decref(v);
    v = json_integer(3);
    CHECK(matrix_msg_text_value(v, 10) == NULL);
    json_decref(v);
    CHECK(matrix_msg_text_value(NULL, 10) == NULL);
}

/* The bot kicked, banned or gone from rooms: one item per configured room, naming who did it. */
static void test_left(void)
{
    struct matrix_msg_batch b;
    const char *body =
        "{\"next_batch\":\"s9\",\"rooms\":{\"leave\":{"
        "\"!room1:localhost\":{\"timeline\":{\"events\":[{\"type\":\"m.room.member\","
        "\"state_key\":\"@bot:localhost\",\"sender\":\"@mod:localhost\",\"event_id\":\"$k\","
        "\"content\":{\"membership\":\"ban\"}}]}},"
        "\"!room2:localhost\":{},"
        "\"!elsewhere:localhost\":{\"timeline\":{\"events\":[]}}}}}";

    CHECK_INT(parse(body, &rules, NULL, &b), 0);
    CHECK_INT(b.n, 2); /* not the room the bot does not answer in */
    CHECK_INT(b.v[0].kind, MATRIX_MSG_LEFT);
    CHECK_STR(b.v[0].room_id, "!room1:localhost");
    CHECK_STR(b.v[0].sender, "@mod:localhost");
    CHECK_INT(b.v[1].kind, MATRIX_MSG_LEFT);
    CHECK_STR(b.v[1].room_id, "!room2:localhost");
    CHECK(b.v[1].sender == NULL); /* it left, or the batch does not say who removed it */
    matrix_msg_batch_fini(&b);
}

int main(void)
{
    RUN(test_fixture_nio_sync);
    RUN(test_fixture_goneb);
    RUN(test_encrypted);
    RUN(test_commands);
    RUN(test_own_and_rooms);
    RUN(test_allowed_users);
    RUN(test_invites);
    RUN(test_dedup);
    RUN(test_own_join);
    RUN(test_own_join_bounds);
    RUN(test_bounds);
    RUN(test_threads);
    RUN(test_malformed);
    RUN(test_reply_content);
    RUN(test_txn_id);
    RUN(test_error);
    RUN(test_whoami);
    RUN(test_filter);
    RUN(test_text_value);
    RUN(test_left);
    return test_done();
}
