/*
 * render.c's Slack blocks (render_slack.c): marked text (render.h RENDER_RT_*) written as Block
 * Kit rich_text JSON, and the cut of Slack's top-level "text". Private to the render module:
 * everything else goes through render.h (render_slack_answer(), render_slack_count()).
 */
#ifndef YTB_RENDER_SLACK_H
#define YTB_RENDER_SLACK_H

#include <stddef.h>

#include "strbuf.h"

/*
 * Appends to out the rich_text block of marked text s[0..n) (valid UTF-8 between the marks),
 * cut first to RENDER_SLACK_TEXT_MAX visible code points, preceded by a comma when *blocks > 0,
 * and counts it in *blocks: {"type":"rich_text","elements":[{"type":"rich_text_section",
 * "elements":[…]}]} with one text element per run of one style, a link element per link and
 * an emoji element per emoji (doc/slack.md). Any marked text gives a valid block: a style left
 * open ends with the text, a link cut in its URL and an emoji cut in its name are dropped, a
 * link cut in its label keeps the label so far, a stray mark is skipped. Text that shows nothing
 * adds nothing (Slack refuses an empty block). Invalid UTF-8 fails out like ENOMEM (out->oom).
 */
void render_slack_block(struct strbuf *out, size_t *blocks, const char *s, size_t n);

/*
 * Cuts the top-level "text" (entity-escaped, no marks) to at most max code points, ending in
 * "…", never inside an entity.
 */
void render_slack_fit(struct strbuf *b, size_t max);

#endif
