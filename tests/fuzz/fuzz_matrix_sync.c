/*
 * Fuzz harness: any bytes as a /sync answer for matrix_msg_parse_sync(), with rooms and users that
 * the corpus uses (matrix-nio, go-neb and hand-made bodies), with and without allowed_users,
 * through one dedup ring. Every item must obey the parser's contract (a configured room for
 * commands, ids within bounds and without control characters, text within
 * COMMAND_MAX_INPUT + 1 bytes); a reply built for a command must be valid JSON. The same bytes
 * go through the readers of error and whoami answers, whose results must be ids fit for a log
 * line. Anything else aborts.
 */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "matrix_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *rooms[] = {"!room1:localhost", "!SVkFJHzfwvuaIEawgC:localhost",
                        "!greatdekutree:hyrule", "!726s6s6q:example.com"};
static char *allowed[] = {"@alice:localhost", "@navi:hyrule", "@example:example.org"};

static struct matrix_msg_seen seen;

static void check_id(const char *s)
{
    if (!s || !*s || strlen(s) > MATRIX_MSG_ID_MAX)
        abort();
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            abort();
    }
}

static int configured(const char *room)
{
    for (size_t i = 0; i < sizeof(rooms) / sizeof(rooms[0]); i++) {
        if (strcmp(rooms[i], room) == 0)
            return 1;
    }
    return 0;
}

static void check(const struct matrix_msg_batch *b, const struct matrix_msg_rules *r)
{
    check_id(b->next_batch);
    for (size_t i = 0; i < b->n; i++) {
        const struct matrix_msg_item *it = &b->v[i];
        check_id(it->room_id);
        switch (it->kind) {
        case MATRIX_MSG_COMMAND:
            /* NUL-terminated; a NUL inside is command_run()'s to refuse */
            if (!it->text || it->text_len > COMMAND_MAX_INPUT + 1 || it->text[it->text_len])
                abort();
            /* fall through */
        case MATRIX_MSG_REFUSE: {
            check_id(it->event_id);
            check_id(it->sender);
            if (!configured(it->room_id) || strcmp(it->sender, r->user_id) == 0)
                abort();
            if (it->thread_root)
                check_id(it->thread_root);
            char *out = NULL;
            if (matrix_msg_reply("{\"msgtype\":\"m.notice\",\"body\":\"x\"}", it->event_id,
                                 it->thread_root, &out) != 0)
                break; /* ENOMEM only */
            json_t *o = json_loads(out, 0, NULL);
            if (!o)
                abort();
            json_decref(o);
            free(out);
            break;
        }
        case MATRIX_MSG_JOIN:
        case MATRIX_MSG_REJECT:
            if (it->event_id || it->text)
                abort();
            if (it->sender)
                check_id(it->sender);
            break;
        case MATRIX_MSG_ENCRYPTED:
            if (!configured(it->room_id))
                abort();
            break;
        case MATRIX_MSG_LEFT:
            if (!configured(it->room_id) || it->event_id || it->text)
                abort();
            if (it->sender)
                check_id(it->sender);
            break;
        default:
            abort();
        }
    }
}

static void check_answers(const uint8_t *data, size_t size)
{
    struct matrix_msg_error e;
    char *user = NULL;
    int r;

    matrix_msg_parse_error((const char *)data, size, &e);
    if (e.errcode[0])
        check_id(e.errcode);
    if (e.retry_after_ms < -1)
        abort();
    r = matrix_msg_parse_whoami((const char *)data, size, &user);
    if (r == 0) {
        check_id(user);
        if (user[0] != '@')
            abort();
    } else if ((r != -EINVAL && r != -ENOMEM) || user) {
        abort();
    }
    free(user);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct matrix_msg_rules r = {
        .user_id = "@link:hyrule",
        .rooms = rooms,
        .n_rooms = sizeof(rooms) / sizeof(rooms[0]),
        .prefix = "!youtrack",
    };
    struct matrix_msg_batch b;

    for (int pass = 0; pass < 3; pass++) {
        if (pass == 1) {
            r.allowed_users = allowed;
            r.n_allowed_users = sizeof(allowed) / sizeof(allowed[0]);
            r.prefix = "!echo";
        } else if (pass == 2) {
            r.user_id = "@example:localhost";
            r.prefix = "baba";
        }
        int rc = matrix_msg_parse_sync((const char *)data, size, &r, pass == 2 ? &seen : NULL, &b);
        if (rc == 0)
            check(&b, &r);
        else if (rc != -EINVAL && rc != -ENOMEM)
            abort();
        else if (b.n || b.v || b.next_batch)
            abort();
        matrix_msg_batch_fini(&b);
    }
    check_answers(data, size);
    return 0;
}
