/*
 * Fuzz harness: any bytes as chat command text, against a small fixed snapshot with hostile
 * names, on every platform. Slack and Matrix answers must be valid JSON within their limits and
 * the text answer must carry no control character but '\n'; anything else aborts.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "render.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct project_list plist;
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
    ready = 1;
}

static void check_slack(const char *out)
{
    json_t *o = json_loads(out, 0, NULL);
    json_t *blocks = json_object_get(o, "blocks");
    if (!o || !json_is_string(json_object_get(o, "text")) || !json_is_array(blocks) ||
        json_array_size(blocks) < 1 || json_array_size(blocks) > RENDER_SLACK_BLOCKS_MAX)
        abort();
    for (size_t i = 0; i < json_array_size(blocks); i++) {
        const char *t = json_string_value(
            json_object_get(json_object_get(json_array_get(blocks, i), "text"), "text"));
        if (!t || !*t || render_utf8_count(t, strlen(t)) > RENDER_SLACK_TEXT_MAX ||
            strstr(t, "<!") || strstr(t, "<@"))
            abort();
    }
    json_decref(o);
}

static void check_matrix(const char *out)
{
    json_t *o = json_loads(out, 0, NULL);
    json_t *m = json_object_get(o, "m.mentions");
    const char *html = json_string_value(json_object_get(o, "formatted_body"));
    if (!o || strlen(out) > RENDER_MATRIX_CONTENT_MAX || !json_is_object(m) ||
        json_object_size(m) != 0 || !json_is_string(json_object_get(o, "body")) ||
        (html && (strstr(html, "<script") || strstr(html, "<@"))))
        abort();
    json_decref(o);
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
    if (strcmp(name, "projects") && strcmp(name, "project") && strcmp(name, "changes") &&
        strcmp(name, "status") && strcmp(name, "help"))
        abort();
    for (int pf = COMMAND_SLACK; pf <= COMMAND_TEXT; pf++) {
        char *out = NULL;
        if (command_run((const char *)data, size, &ctx, (enum command_platform)pf, &out) != 0)
            continue; /* ENOMEM only */
        if (!out)
            abort();
        if (pf == COMMAND_SLACK)
            check_slack(out);
        else if (pf == COMMAND_MATRIX)
            check_matrix(out);
        else
            for (const unsigned char *p = (const unsigned char *)out; *p; p++)
                if ((*p < 0x20 && *p != '\n') || *p == 0x7f)
                    abort();
        free(out);
    }
    return 0;
}
