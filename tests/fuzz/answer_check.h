/*
 * What every chat answer must be, whatever the command and the snapshot: checked by the command
 * fuzz harnesses (a failed check aborts, so libFuzzer and the corpus replay report it). Slack:
 * exactly the body tests/slack_check.h describes (rich_text blocks of literal text within Block
 * Kit's limits, only our element types and styles, an entity-escaped fallback with
 * "mrkdwn": false); Matrix: valid JSON within the event size, empty m.mentions, no live markup;
 * text: no control character but '\n'.
 */
#ifndef YTB_FUZZ_ANSWER_CHECK_H
#define YTB_FUZZ_ANSWER_CHECK_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../slack_check.h"
#include "command.h"
#include "render.h"

static inline void answer_check_slack(const char *out)
{
    const char *err = slack_check(out, SLACK_ANSWER);
    if (err) {
        fprintf(stderr, "slack answer: %s: %.2000s\n", err, out);
        abort();
    }
}

static inline void answer_check_matrix(const char *out)
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

static inline void answer_check_text(const char *out)
{
    for (const unsigned char *p = (const unsigned char *)out; *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p == 0x7f)
            abort();
}

/* out, an answer for pf, checked as that platform's. */
static inline void answer_check(enum command_platform pf, const char *out)
{
    if (!out)
        abort();
    if (pf == COMMAND_SLACK)
        answer_check_slack(out);
    else if (pf == COMMAND_MATRIX)
        answer_check_matrix(out);
    else
        answer_check_text(out);
}

/* Runs text on every platform against ctx and checks each answer. */
static inline void answer_check_all(const char *text, size_t len, const struct command_context *ctx)
{
    for (int pf = COMMAND_SLACK; pf <= COMMAND_TEXT; pf++) {
        char *out = NULL;
        if (command_run(text, len, ctx, (enum command_platform)pf, &out) != 0)
            continue; /* ENOMEM only */
        answer_check((enum command_platform)pf, out);
        free(out);
    }
}

#endif
