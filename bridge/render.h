/*
 * Messages -> the bytes each target receives. All escaping lives here (README.md, "What it
 * announces"): project names are hostile input and are shown literally everywhere, ping nobody,
 * and never break the target's size limits (long text is cut visibly, on a character boundary).
 */
#ifndef YTB_RENDER_H
#define YTB_RENDER_H

#include <stddef.h>
#include <stdint.h>

#include "message.h"
#include "project.h"
#include "strbuf.h"

enum render_target {
    RENDER_TEXT = 0, /* stdout, text: one line */
    RENDER_JSON,     /* stdout, json: one line */
    RENDER_SLACK,    /* incoming-webhook body: fallback text + Block Kit rich_text blocks */
    RENDER_MATRIX,   /* m.room.message content: m.notice, body + HTML, m.mentions {} */
    RENDER_WEBHOOK,  /* generic webhook body (documented in the README) */
    RENDER_HOOKSHOT, /* matrix-hookshot generic webhook: {"text", "html"} */
};

/*
 * Renders m for target t. Returns a NUL-terminated string the caller frees (a JSON document
 * for every target but RENDER_TEXT), or NULL on ENOMEM.
 */
char *render(enum render_target t, const struct message *m);

/*
 * Helpers for other chat answers (command.c): the same escaping, links and limits as the
 * notifications above, so there is one mechanism for each.
 */
#define RENDER_SLACK_TEXT_MAX     3000  /* visible code points per Slack block (doc/slack.md) */
#define RENDER_SLACK_FALLBACK_MAX 4000  /* code points of the top-level "text" */
#define RENDER_SLACK_BLOCKS_MAX   50    /* blocks per message */
#define RENDER_MATRIX_CONTENT_MAX 61440 /* bytes of content JSON (doc/matrix.md §3) */
#define RENDER_CHAT_NAME_MAX      250   /* code points of a name in chat */
#define RENDER_CHAT_KEY_MAX       50    /* code points of a short name in chat */

/*
 * Slack blocks are Block Kit rich_text (doc/slack.md): their text is shown literally, so the
 * bridge's own styling, links and emoji are written as marks in the text and turned into
 * elements by render_slack_answer(). A mark is a C0 byte, which render_escape() text never
 * contains (RENDER_ESC_SLACK_RICH turns every control character into U+FFFD); '\n' is a line
 * break. Write each mark as its own string literal: "\x01" "abc" is not "\x01abc".
 */
#define RENDER_RT_BOLD  "\x01" /* toggles bold */
#define RENDER_RT_CODE  "\x02" /* toggles inline code */
#define RENDER_RT_LINK  "\x03" /* LINK url LABEL label END: url from render_safe_url() */
#define RENDER_RT_LABEL "\x04"
#define RENDER_RT_END   "\x05"
#define RENDER_RT_EMOJI "\x06" /* EMOJI name EMOJI: the emoji :name: (a trusted name) */

enum render_esc {
    RENDER_ESC_TEXT = 0,   /* stdout text: unsafe characters and invalid bytes as \xNN / \uNNNN */
    RENDER_ESC_PLAIN,      /* chat plain text (Matrix body): unsafe characters as U+FFFD */
    RENDER_ESC_SLACK,      /* Slack top-level "text": & < > as entities, unsafe as U+FFFD */
    RENDER_ESC_HTML,       /* HTML text and attributes: & < > " ' as entities, unsafe as U+FFFD */
    RENDER_ESC_SLACK_RICH, /* Slack rich_text: unsafe as U+FFFD, nothing else (shown as is) */
};

/*
 * s (untrusted; NULL gives "") escaped for e. With max > 0 at most max code points, counted after
 * escaping for Slack and before otherwise; longer text is cut between characters and ends in
 * "…". Returns a string the caller frees, or NULL on ENOMEM.
 */
char *render_escape(enum render_esc e, const char *s, size_t max);

/* render_escape() appended to b (ENOMEM sets b->oom): for text built of many pieces. */
void render_escape_put(struct strbuf *b, enum render_esc e, const char *s, size_t max);

/*
 * url made safe for a Slack link element, Slack's <url|text> and an HTML attribute (http(s) only,
 * unsafe bytes percent-encoded, at most 1000 bytes). Returns 0 and *out (caller frees; NULL when
 * url is not linkable), or -ENOMEM.
 */
int render_safe_url(const char *url, char **out);

/*
 * The links of many projects at one service (a command's answer): render_safe_url() of each
 * one's page, with the part the pages share (project_page_base()) made safe once. After
 * render_links_init() (0, or -ENOMEM), render_link() gives p's link: 0 and *out (caller frees;
 * NULL when it does not link), or -ENOMEM. render_links_fini() on a zeroed one is fine.
 */
struct render_links {
    char *base; /* the shared part, made safe; NULL: no page links */
    size_t n;
};
int render_links_init(struct render_links *l, const char *service_url, enum youtrack_flavour f);
int render_link(const struct render_links *l, const struct project *p, char **out);
void render_links_fini(struct render_links *l);

/* Visible code points of marked Slack text s[0..n) (valid UTF-8): what one block shows. */
size_t render_slack_count(const char *s, size_t n);

/*
 * A Slack slash-command answer: {"response_type":"ephemeral","text":fallback,"mrkdwn":false,
 * "blocks":[one rich_text block per section with visible text]}. sections are marked text
 * (RENDER_RT_* marks around render_escape(RENDER_ESC_SLACK_RICH) text); each is cut to
 * RENDER_SLACK_TEXT_MAX visible code points, never inside a link or an emoji, and at most
 * RENDER_SLACK_BLOCKS_MAX blocks are used; an unterminated mark (after a cut) is tolerated.
 * fallback is render_escape(RENDER_ESC_SLACK) text without marks, cut to
 * RENDER_SLACK_FALLBACK_MAX without splitting an entity. Never link_names. Returns the JSON
 * (caller frees) or NULL on ENOMEM.
 */
char *render_slack_answer(const char *fallback, const char *const *sections, size_t n);

/*
 * Matrix m.notice content {"msgtype","body","format","formatted_body","m.mentions":{}} within
 * RENDER_MATRIX_CONTENT_MAX bytes: if it does not fit, the HTML goes, then body is cut, as for
 * notifications; *cut is set to 1 then, else 0. body is valid UTF-8 without control characters
 * but '\n' (render_escape() text). Returns the JSON (caller frees) or NULL on ENOMEM.
 */
char *render_matrix_answer(const char *body, const char *html, int *cut);

#endif
