/*
 * Fuzz harness: any bytes as chat command text, against a small fixed snapshot with hostile
 * names, on every platform; every answer is checked as answer_check.h says. fuzz_command_projects
 * fuzzes the snapshot too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "answer_check.h"
#include "command.h"
#include "command_index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct project_list plist;
static struct command_index *pindex; /* plist's, as the bridge keeps one per snapshot */
static int ready;

static const struct history_entry hist[] = {
    {.at = 1717243000,
     .kind = CHANGE_CREATED,
     .id = "0-1",
     .short_name = "DEMO",
     .name = "Демопроект"},
    {.at = 1717243100,
     .kind = CHANGE_RENAMED,
     .id = "0-2",
     .short_name = "X",
     .name = "<!channel> @room",
     .old_short_name = "Y",
     .old_name = "\xe2\x80\xae old"},
    {.at = -1, .kind = (enum change_kind)99, .id = "0-3"},
};

static const struct command_sink sinks[] = {
    {.name = "s", .type = "slack", .depth = 1, .broken = 1, .reason = "<b>bad</b>"},
};

static void setup(void)
{
    static const struct project ps[] = {
        {.id = "0-1",
         .short_name = "DEMO",
         .name = "Демопроект",
         .archived = TRI_YES,
         .description = "line\nline <script>",
         .leader_name = "<@U1>",
         .leader_login = "x"},
        {.id = "0-2",
         .short_name = "<!here>",
         .name = "<!channel> & \"quoted\" \xe2\x80\xae",
         .archived = TRI_NO,
         .first_seen = 1},
        {.id = "0-3", .name = NULL, .archived = TRI_UNKNOWN},
        {.id = "0-4", .short_name = "GONE", .name = "Gone", .held = 1},
        {.id = "0-5", .short_name = "ÄPF", .name = "äpfel", .missing = 3},
    };
    project_list_init(&plist);
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
        if (project_list_add(&plist, &ps[i]) != 0)
            abort();
    project_list_finish(&plist);
    if (command_index_new(&pindex, &plist) != 0)
        abort();
    ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct command_context ctx = {
        .projects = &plist,
        .history = hist,
        .n_history = sizeof(hist) / sizeof(hist[0]),
        .service_url = "https://yt.example.com/youtrack",
        .flavour = YOUTRACK_MODERN,
        .now = 1717243200,
        .version = "0.0.0",
        .started_at = 1717200000,
        .last_poll_ok = 1717243100,
        .last_error = "HTTP 502",
        .sinks = sinks,
        .n_sinks = 1,
    };
    const char *name = command_name((const char *)data, size);

    if (!ready)
        setup();
    ctx.index = pindex;
    if (strcmp(name, "projects") && strcmp(name, "project") && strcmp(name, "changes") &&
        strcmp(name, "status") && strcmp(name, "help") && strcmp(name, "subscribe") &&
        strcmp(name, "unsubscribe") && strcmp(name, "subscriptions"))
        abort();
    answer_check_all((const char *)data, size, &ctx);
    return 0;
}
