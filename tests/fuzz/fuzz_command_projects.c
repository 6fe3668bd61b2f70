/*
 * Fuzz harness: a chat command against a fuzzed snapshot, as they meet in production. The input
 * is the command text, a newline, then the project list:
 *   - starting with '{' or '[': a YouTrack answer body, through the real parsers (the modern
 *     /api list, else the legacy /rest list) as a poll would build the snapshot;
 *   - otherwise raw records, one project per line, fields split by '|' (id, short name, name,
 *     description, leader name, flags), so names carry any bytes at all, invalid UTF-8 included
 *     (a snapshot read from a hostile disk).
 * Every answer is checked as answer_check.h says; the command fuzzer alone, on a fixed list,
 * could not reach a short name longer than every name before it. The commands answer from the
 * list's index (command_index.h), built once as the bridge builds it per snapshot.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "answer_check.h"
#include "command.h"
#include "command_index.h"
#include "project.h"
#include "youtrack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RAW_PROJECTS 2000 /* enough for every list limit (PROJECTS_LIST_MAX and beyond) */

/* The next '|'-separated field of [*p, end), NUL-terminated in the list's pool; NULL if empty. */
static const char *field(struct project_list *l, const char **p, const char *end)
{
    const char *s = *p, *bar = memchr(s, '|', (size_t)(end - s));
    const char *e = bar ? bar : end;
    *p = bar ? bar + 1 : end;
    return e > s ? project_list_strdup(l, s, (size_t)(e - s)) : NULL;
}

static void raw_projects(struct project_list *l, const char *s, const char *end)
{
    for (size_t n = 0; s < end && n < MAX_RAW_PROJECTS; n++) {
        const char *nl = memchr(s, '\n', (size_t)(end - s)), *e = nl ? nl : end;
        struct project p = {0};
        const char *flags;

        p.id = field(l, &s, e);
        p.short_name = field(l, &s, e);
        p.name = field(l, &s, e);
        p.description = field(l, &s, e);
        p.leader_name = field(l, &s, e);
        flags = field(l, &s, e);
        if (flags) {
            p.archived =
                (signed char)((unsigned char)flags[0] % 3) - 1; /* TRI_UNKNOWN, TRI_NO, TRI_YES */
            p.held = flags[0] & 4 ? 1 : 0;
            p.missing = (uint16_t)(flags[0] & 0x38);
            p.first_seen = flags[0] & 0x40 ? 1717000000 : 0;
        }
        if (p.id && project_list_add(l, &p) != 0)
            break;
        s = nl ? nl + 1 : end;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data, *end = in + size;
    const char *nl = memchr(in, '\n', size);
    const char *list = nl ? nl + 1 : end;
    size_t cmd_len = (size_t)((nl ? nl : end) - in);
    struct project_list l;
    char err[256];
    static const struct history_entry hist[] = {
        {.at = 1717243000, .kind = CHANGE_CREATED, .id = "0-1", .short_name = "A", .name = "a"},
    };
    struct command_context ctx = {
        .projects = &l,
        .history = hist,
        .n_history = 1,
        .service_url = "https://yt.example.com/youtrack",
        .flavour = YOUTRACK_MODERN,
        .now = 1717243200,
        .version = "0.0.0",
        .started_at = 1717200000,
        .last_poll_ok = 1717243100,
        .last_error = "",
    };

    project_list_init(&l);
    if (list < end && (*list == '{' || *list == '[')) {
        if (youtrack_parse_projects(list, (size_t)(end - list), &l, err, sizeof(err)) < 0) {
            project_list_fini(&l);
            project_list_init(&l);
            ctx.flavour = YOUTRACK_LEGACY;
            if (youtrack_parse_legacy_list(list, (size_t)(end - list), &l, err, sizeof(err)) < 0) {
                project_list_fini(&l);
                project_list_init(&l);
            }
        }
    } else {
        raw_projects(&l, list, end);
    }
    project_list_finish(&l);
    struct command_index *ix = NULL;
    if (command_index_new(&ix, &l) == 0) /* else (ENOMEM) each command builds its own */
        ctx.index = ix;
    answer_check_all(in, cmd_len, &ctx);
    command_index_free(ix);
    project_list_fini(&l);
    return 0;
}
