/*
 * Chat commands: parses the words a user typed after "/youtrack" or "!youtrack" and answers from
 * the in-memory snapshot, for Slack (an ephemeral Socket Mode ack payload), Matrix (m.notice
 * content) or plain text.
 *
 * Invariants: every piece of YouTrack text and every echo of the user's words goes through
 * render_escape() for its target, exactly like notifications (render.c owns escaping, links and
 * the Slack/Matrix size limits); trusted literals here contain no character any target escapes.
 * Slack text is written with render.h's rich text marks (RENDER_RT_*), which render.c turns into
 * Block Kit rich_text elements, so untrusted text is shown literally there.
 * Every answer is one document (a head, a list of items, "N more") laid out per platform, so
 * the limits are enforced in one place: Slack <= 50 blocks of <= 3000 visible code points,
 * Matrix content <= 61440 bytes. Input is bounded (COMMAND_MAX_INPUT) and must be valid UTF-8.
 *
 * Case-insensitive matching and the name order use utf8_fold(): Unicode full case folding with
 * NFKC normalization, in every script ("Über" = "ÜBER", "Straße" contains "SS"). Names sort by
 * their folded code points (so "ёж" after "Яблоко": no locale collation). Both come from the
 * snapshot's index (command_index.h), built once per snapshot: a command neither sorts nor folds
 * the snapshot (a context without one gets one built for the command).
 */
#include "command.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "command_index.h"
#include "project.h"
#include "render.h"
#include "strbuf.h"
#include "subscription.h"
#include "utf8.h"

#define PROJECTS_LIST_MAX 100 /* projects listed in one answer; the rest is "N more" */
#define CHANGES_DEFAULT   10
#define CHANGES_MAX       50
#define DESCRIPTION_MAX   300 /* code points of a description in `project KEY` */
#define ECHO_MAX          40  /* code points of the user's words echoed back */
#define ERROR_MAX         300 /* code points of the last poll error in `status` */
#define MATRIX_TARGET     (RENDER_MATRIX_CONTENT_MAX / 10 * 9) /* estimate, see matrix_layout() */

#define ELLIPSIS "\xe2\x80\xa6" /* U+2026 */
#define LQUOTE   "\xe2\x80\x9c" /* U+201C */
#define RQUOTE   "\xe2\x80\x9d" /* U+201D */
#define MDASH    "\xe2\x80\x94" /* U+2014 */
#define ARROW    "\xe2\x86\x92" /* U+2192 */
#define BULLET   "\xe2\x80\xa2" /* U+2022 */

/* ---- formats: the markup of each part of an answer ---- */

enum fmt {
    F_TEXT,     /* COMMAND_TEXT */
    F_PLAIN,    /* Matrix body */
    F_SLACK,    /* Slack blocks: rich text marks (render.h RENDER_RT_*) */
    F_SLACK_FB, /* Slack top-level "text": escaped, no markup */
    F_HTML,     /* Matrix formatted_body */
};

static enum render_esc fmt_esc(enum fmt f)
{
    switch (f) {
    case F_TEXT:
        return RENDER_ESC_TEXT;
    case F_PLAIN:
        return RENDER_ESC_PLAIN;
    case F_SLACK:
        return RENDER_ESC_SLACK_RICH;
    case F_SLACK_FB:
        return RENDER_ESC_SLACK;
    case F_HTML:
        return RENDER_ESC_HTML;
    }
    return RENDER_ESC_TEXT;
}

/* Untrusted text (YouTrack's, the user's), escaped for f; max code points as render_escape(). */
static void put_esc(struct strbuf *b, enum fmt f, const char *s, size_t max)
{
    render_escape_put(b, fmt_esc(f), s, max);
}

/* Trusted text in bold. */
static void put_bold(struct strbuf *b, enum fmt f, const char *s)
{
    strbuf_puts(b, f == F_SLACK ? RENDER_RT_BOLD : f == F_HTML ? "<b>" : "");
    strbuf_puts(b, s);
    strbuf_puts(b, f == F_SLACK ? RENDER_RT_BOLD : f == F_HTML ? "</b>" : "");
}

/* Untrusted text as code (short names, times). */
static void put_code(struct strbuf *b, enum fmt f, const char *s, size_t max)
{
    strbuf_puts(b, f == F_SLACK ? RENDER_RT_CODE : f == F_HTML ? "<code>" : "");
    put_esc(b, f, s, max);
    strbuf_puts(b, f == F_SLACK ? RENDER_RT_CODE : f == F_HTML ? "</code>" : "");
}

/* “s”, escaped and shortened: the user's words echoed back. */
static void put_quoted(struct strbuf *b, enum fmt f, const char *s)
{
    strbuf_puts(b, LQUOTE);
    put_esc(b, f, s, ECHO_MAX);
    strbuf_puts(b, RQUOTE);
}

static void put_nl(struct strbuf *b, enum fmt f)
{
    strbuf_puts(b, f == F_HTML ? "<br>" : "\n");
}

/*
 * label linked to url where the format links (url from render_safe_url(); NULL: not linked);
 * plain and text formats show the label only. label is untrusted, at most max.
 */
static void put_link(struct strbuf *b, enum fmt f, const char *url, const char *label, size_t max)
{
    if (url && f == F_SLACK) {
        strbuf_puts(b, RENDER_RT_LINK);
        strbuf_puts(b, url);
        strbuf_puts(b, RENDER_RT_LABEL);
        put_esc(b, f, label, max);
        strbuf_puts(b, RENDER_RT_END);
    } else if (url && f == F_HTML) {
        strbuf_puts(b, "<a href=\"");
        put_esc(b, f, url, 0);
        strbuf_puts(b, "\">");
        put_esc(b, f, label, max);
        strbuf_puts(b, "</a>");
    } else {
        put_esc(b, f, label, max);
    }
}

/* "YYYY-MM-DD HH:MM" (with_time) or "YYYY-MM-DD", UTC; "unknown" for 0 or an absurd value. */
static void fmt_time(char *out, size_t len, int64_t t, int with_time)
{
    struct tm tm;
    time_t tt = (time_t)t;

    if (t <= 0 || (int64_t)tt != t || !gmtime_r(&tt, &tm) ||
        strftime(out, len, with_time ? "%Y-%m-%d %H:%M" : "%Y-%m-%d", &tm) == 0)
        snprintf(out, len, "unknown");
}

/* "3 min", "2 h 5 min", "4 d 1 h": a duration for people. */
static void put_duration(struct strbuf *b, int64_t secs)
{
    long long s = secs > 0 ? (long long)secs : 0;
    if (s < 60)
        strbuf_printf(b, "%lld s", s);
    else if (s < 3600)
        strbuf_printf(b, "%lld min", s / 60);
    else if (s < 86400)
        strbuf_printf(b, "%lld h %lld min", s / 3600, s % 3600 / 60);
    else
        strbuf_printf(b, "%lld d %lld h", s / 86400, s % 86400 / 3600);
}

/* ---- what to show of a project (as render.c shows it) ---- */

static int nonempty(const char *s)
{
    return s && *s;
}

/* The project's page, safe for links (NULL: not linkable); sets b->oom on ENOMEM. */
static char *project_url(struct strbuf *b, const struct render_links *links,
                         const struct project *p)
{
    char *safe = NULL;
    if (render_link(links, p, &safe) != 0)
        b->oom = 1;
    return safe;
}

/* ---- an answer: a head, items, "N more"; laid out per platform ---- */

struct doc;
typedef void (*doc_writer)(struct strbuf *b, enum fmt f, const struct doc *d, size_t i);

struct doc {
    const struct command_context *ctx;
    doc_writer head; /* i unused; lines separated by put_nl() */
    doc_writer item; /* item i of n_items, one line */
    size_t n_items;  /* offered for listing (already capped) */
    size_t n_total;  /* in all: the ones not listed are "N more" */
    const char *more_hint;
    /* the command's data */
    const char *arg;                        /* the filter, key, word, ... as typed */
    const struct project *const *list;      /* `projects`: sorted matches */
    const struct project *proj;             /* `project` */
    const struct history_entry *history;    /* `changes`: the last n_items, oldest first */
    int unknown;                            /* `help`: arg was not a command */
    const char *quote;                      /* subscription answers: untrusted, after the head */
    const struct subscription *const *subs; /* ... and the subscriptions listed */
    int show_channel;
    struct render_links links; /* `projects`, `project`: the pages, made safe once */
};

static void put_more(struct strbuf *b, enum fmt f, const struct doc *d, size_t listed)
{
    strbuf_puts(b, ELLIPSIS " ");
    strbuf_printf(b, "%zu", d->n_total - listed);
    strbuf_puts(b, " more");
    if (d->more_hint)
        strbuf_puts(b, d->more_hint);
    (void)f;
}

static int layout_text(const struct doc *d, char **out)
{
    struct strbuf b = {0};
    d->head(&b, F_TEXT, d, 0);
    for (size_t i = 0; i < d->n_items; i++) {
        strbuf_puts(&b, "\n- ");
        d->item(&b, F_TEXT, d, i);
    }
    if (d->n_items < d->n_total) {
        strbuf_puts(&b, "\n");
        put_more(&b, F_TEXT, d, d->n_items);
    }
    if (b.oom || !b.p) {
        strbuf_fini(&b);
        return -ENOMEM;
    }
    *out = b.p;
    return 0;
}

/*
 * Slack: the head in one block, the items packed into blocks of at most 3000 visible code points,
 * "N more" in the last; at most 50 blocks. Items beyond that count as "more".
 */
static int layout_slack(const struct doc *d, char **out)
{
    struct strbuf sec[RENDER_SLACK_BLOCKS_MAX] = {{0}}, line = {0}, fb = {0};
    const char *texts[RENDER_SLACK_BLOCKS_MAX];
    size_t ns = 1, listed = 0, cps = 0;
    int err = 0;

    d->head(&sec[0], F_SLACK, d, 0);
    d->head(&fb, F_SLACK_FB, d, 0);
    for (; listed < d->n_items; listed++) {
        strbuf_cut(&line, 0);
        strbuf_puts(&line, BULLET " ");
        d->item(&line, F_SLACK, d, listed);
        if (line.oom)
            break;
        size_t lc = render_slack_count(line.p, line.n);
        struct strbuf *cur = &sec[ns - 1];
        if (ns == 1 || cps + 1 + lc > RENDER_SLACK_TEXT_MAX) {
            if (ns + 1 > RENDER_SLACK_BLOCKS_MAX - 1) /* one block is kept for "N more" */
                break;
            cur = &sec[ns++];
            cps = 0;
        }
        if (cur->n) {
            strbuf_puts(cur, "\n");
            cps++;
        }
        strbuf_putn(cur, line.p, line.n);
        cps += lc;
    }
    if (listed < d->n_total)
        put_more(&sec[ns++], F_SLACK, d, listed);
    for (size_t i = 0; i < ns; i++) {
        err |= sec[i].oom;
        texts[i] = sec[i].p ? sec[i].p : "";
    }
    err |= line.oom || fb.oom;
    if (!err) {
        *out = render_slack_answer(fb.p ? fb.p : "", texts, ns);
        err = !*out;
    }
    for (size_t i = 0; i < ns; i++)
        strbuf_fini(&sec[i]);
    strbuf_fini(&line);
    strbuf_fini(&fb);
    return err ? -ENOMEM : 0;
}

static void matrix_build(const struct doc *d, size_t listed, struct strbuf *body,
                         struct strbuf *html)
{
    strbuf_cut(body, 0);
    strbuf_cut(html, 0);
    d->head(body, F_PLAIN, d, 0);
    strbuf_puts(html, "<p>");
    d->head(html, F_HTML, d, 0);
    strbuf_puts(html, "</p>");
    if (listed)
        strbuf_puts(html, "<ul>");
    for (size_t i = 0; i < listed; i++) {
        strbuf_puts(body, "\n" BULLET " ");
        d->item(body, F_PLAIN, d, i);
        strbuf_puts(html, "<li>");
        d->item(html, F_HTML, d, i);
        strbuf_puts(html, "</li>");
    }
    if (listed)
        strbuf_puts(html, "</ul>");
    if (listed < d->n_total) {
        strbuf_puts(body, "\n");
        put_more(body, F_PLAIN, d, listed);
        strbuf_puts(html, "<p>");
        put_more(html, F_HTML, d, listed);
        strbuf_puts(html, "</p>");
    }
}

/*
 * Matrix: body and HTML with as many items as fit in the content budget. When render.c has to
 * cut, fewer items are listed (scaled down by the estimated size, at least one fewer) so the
 * answer ends in "N more" instead of a cut; with none left, render.c's cut is the safety net.
 */
static int layout_matrix(const struct doc *d, char **out)
{
    struct strbuf body = {0}, html = {0};
    size_t listed = d->n_items;
    char *res = NULL;
    int cut = 0;

    for (;;) {
        matrix_build(d, listed, &body, &html);
        if (body.oom || html.oom)
            break;
        res = render_matrix_answer(body.p ? body.p : "", html.p ? html.p : "", &cut);
        if (!res || !cut || listed == 0)
            break;
        free(res);
        res = NULL;
        /* The JSON is a little bigger than body + html (quotes, \n): hence MATRIX_TARGET. */
        size_t est = body.n + html.n;
        size_t fit = (size_t)((double)listed * MATRIX_TARGET / (double)(est ? est : 1));
        listed = fit < listed ? fit : listed - 1;
    }
    strbuf_fini(&body);
    strbuf_fini(&html);
    if (!res)
        return -ENOMEM;
    *out = res;
    return 0;
}

static int layout(const struct doc *d, enum command_platform pf, char **out)
{
    switch (pf) {
    case COMMAND_SLACK:
        return layout_slack(d, out);
    case COMMAND_MATRIX:
        return layout_matrix(d, out);
    case COMMAND_TEXT:
        break;
    }
    return layout_text(d, out);
}

/* layout() of an answer that links projects: their pages' shared part is made safe once. */
static int layout_linked(struct doc *d, enum command_platform pf, char **out)
{
    int r = render_links_init(&d->links, d->ctx->service_url, d->ctx->flavour);
    if (!r)
        r = layout(d, pf, out);
    render_links_fini(&d->links);
    return r;
}

/* ---- help, errors ---- */

static const char *const help_lines[][2] = {
    {"projects [filter]", "the projects by name; filter by short name or name"},
    {"project KEY", "one project, by short name or id"},
    {"changes [N]", "the last N changes detected (default 10, at most 50)"},
    {"status", "the bridge's health"},
    {"subscribe [PATTERN ...] [events=KIND,...]",
     "send this channel the changes of the projects matching PATTERN (default every project; "
     "!PATTERN excludes); KIND: created, removed, renamed, archived, unarchived"},
    {"unsubscribe [PATTERN ...]", "stop those patterns, or with none the channel's subscription"},
    {"subscriptions [all]", "this channel's subscription (all: every channel's, for managers)"},
    {"help", "this list"},
};

static void help_head(struct strbuf *b, enum fmt f, const struct doc *d, size_t i)
{
    (void)i;
    if (d->unknown) {
        strbuf_puts(b, "Unknown command ");
        put_quoted(b, f, d->arg);
        strbuf_puts(b, ".");
        put_nl(b, f);
    }
    strbuf_puts(b, "YouTrack bridge commands:");
}

static void help_item(struct strbuf *b, enum fmt f, const struct doc *d, size_t i)
{
    (void)d;
    put_code(b, f, help_lines[i][0], 0);
    strbuf_puts(b, " " MDASH " ");
    strbuf_puts(b, help_lines[i][1]);
}

static int run_help(const struct command_context *ctx, enum command_platform pf, const char *word,
                    char **out)
{
    size_t n = sizeof(help_lines) / sizeof(help_lines[0]);
    struct doc d = {.ctx = ctx, .head = help_head, .item = help_item, .n_items = n, .n_total = n};
    d.arg = word;
    d.unknown = word != NULL;
    return layout(&d, pf, out);
}

/* A one-line answer of trusted text (arg: unused). */
static void line_head(struct strbuf *b, enum fmt f, const struct doc *d, size_t i)
{
    (void)f, (void)i;
    strbuf_puts(b, d->arg);
}

static int run_line(const struct command_context *ctx, enum command_platform pf, const char *text,
                    char **out)
{
    struct doc d = {.ctx = ctx, .head = line_head, .arg = text};
    return layout(&d, pf, out);
}

int command_say(enum command_platform platform, const char *literal, char **out)
{
    static const struct command_context none;
    return run_line(&none, platform, literal, out);
}

/* ---- subscription answers ---- */

static void subs_head(struct strbuf *b, enum fmt f, const struct doc *d, size_t i)
{
    (void)i;
    strbuf_puts(b, d->arg);
    if (d->quote) {
        strbuf_puts(b, " ");
        put_quoted(b, f, d->quote);
    }
}

static void subs_item(struct strbuf *b, enum fmt f, const struct doc *d, size_t i)
{
    const struct subscription *s = d->subs[i];
    const char *sep = "";

    if (d->show_channel) {
        put_code(b, f, s->channel, 0);
        strbuf_puts(b, " " MDASH " ");
    }
    strbuf_puts(b, "events: ");
    for (unsigned k = CHANGE_CREATED; k <= CHANGE_REMOVED; k++) {
        if (s->events & (1u << k)) {
            strbuf_puts(b, sep);
            strbuf_puts(b, change_kind_name((enum change_kind)k));
            sep = ", ";
        }
    }
    strbuf_puts(b, "; projects: ");
    for (size_t k = 0; k < s->n_patterns; k++) {
        if (k)
            strbuf_puts(b, ", ");
        put_code(b, f, s->patterns[k], 0);
    }
    if (s->suspended) {
        strbuf_puts(b, "; suspended: ");
        put_esc(b, f, s->suspended, 0);
    }
}

int command_subscriptions(enum command_platform platform, const char *head, const char *quote,
                          const struct subscription *const *v, size_t n, int show_channel,
                          char **out)
{
    static const struct command_context none;
    struct doc d = {.ctx = &none,
                    .head = subs_head,
                    .item = subs_item,
                    .n_items = n,
                    .n_total = n,
                    .arg = head,
                    .quote = quote,
                    .subs = v,
                    .show_channel = show_channel};
    return layout(&d, platform, out);
}

/* ---- projects [filter] ---- */

static void projects_head(struct strbuf *b, enum fmt f, const struct doc *d, size_t i)
{
    (void)i;
    if (!d->n_total) {
        if (d->arg) {
            strbuf_puts(b, "No project matches ");
            put_quoted(b, f, d->arg);
            strbuf_puts(b, ".");
        } else {
            strbuf_puts(b, "No projects known yet.");
        }
        return;
    }
    char num[64];
    snprintf(num, sizeof(num), "%zu %s", d->n_total, d->n_total == 1 ? "project" : "projects");
    put_bold(b, f, num);
    if (d->arg) {
        strbuf_puts(b, d->n_total == 1 ? " matches " : " match ");
        put_quoted(b, f, d->arg);
    }
}

/* "`KEY` <url|Name> (archived)": the short name, the linked name, the archived mark; plain and
 * text formats end with the URL instead. Slack shows the mark unstyled: rich text styles are
 * kept to bold and code. */
static void project_line(struct strbuf *b, enum fmt f, const struct doc *d, const struct project *p)
{
    char *url = project_url(b, &d->links, p);
    int named = nonempty(p->name);

    if (named && nonempty(p->short_name)) {
        put_code(b, f, p->short_name, RENDER_CHAT_KEY_MAX);
        strbuf_puts(b, f == F_SLACK || f == F_HTML ? " " : ": ");
    }
    put_link(b, f, url, project_shown_name(p), named ? RENDER_CHAT_NAME_MAX : RENDER_CHAT_KEY_MAX);
    if (p->archived == TRI_YES)
        strbuf_puts(b, f == F_HTML ? " <i>(archived)</i>" : " (archived)");
    if (url && (f == F_TEXT || f == F_PLAIN)) {
        strbuf_puts(b, " ");
        put_esc(b, f, url, 0);
    }
    free(url);
}

static void projects_item(struct strbuf *b, enum fmt f, const struct doc *d, size_t i)
{
    project_line(b, f, d, d->list[i]);
}

static int run_projects(const struct command_context *ctx, enum command_platform pf,
                        const char *filter, char **out)
{
    const struct command_index *ix = ctx->index;
    const struct project *list[PROJECTS_LIST_MAX];
    struct doc d = {.ctx = ctx, .head = projects_head, .item = projects_item};

    if (filter) {
        if (command_index_match(ix, filter, list, PROJECTS_LIST_MAX, &d.n_total) != 0)
            return -ENOMEM;
    } else {
        d.n_total = command_index_count(ix);
        for (size_t i = 0; i < d.n_total && i < PROJECTS_LIST_MAX; i++)
            list[i] = command_index_at(ix, i);
    }
    d.n_items = d.n_total < PROJECTS_LIST_MAX ? d.n_total : PROJECTS_LIST_MAX;
    d.more_hint = " " MDASH " narrow it with a filter";
    d.arg = filter;
    d.list = list;
    return layout_linked(&d, pf, out);
}

/* ---- project KEY ---- */

static void put_field(struct strbuf *b, enum fmt f, const char *label)
{
    put_nl(b, f);
    put_bold(b, f, label);
    strbuf_puts(b, ": ");
}

/* Whitespace runs (newlines, tabs) as one space: a description on one line. */
static char *flatten(const char *s)
{
    char *out = strdup(s), *o = out;
    if (!out)
        return NULL;
    for (const char *p = s; *p; p++) {
        if (strchr(" \t\r\n\v\f", *p)) {
            if (o > out && o[-1] != ' ')
                *o++ = ' ';
        } else {
            *o++ = *p;
        }
    }
    while (o > out && o[-1] == ' ')
        o--;
    *o = '\0';
    return out;
}

static void project_head(struct strbuf *b, enum fmt f, const struct doc *d, size_t i)
{
    const struct project *p = d->proj;
    char when[32];
    (void)i;

    if (!p) {
        strbuf_puts(b, "No project with the short name or id ");
        put_quoted(b, f, d->arg);
        strbuf_puts(b, ". Try ");
        put_code(b, f, "projects <filter>", 0);
        strbuf_puts(b, " to search by name.");
        return;
    }
    project_line(b, f, d, p);
    put_field(b, f, "Short name");
    if (p->short_name)
        put_code(b, f, p->short_name, RENDER_CHAT_KEY_MAX);
    else
        strbuf_puts(b, "unknown");
    put_field(b, f, "ID");
    put_code(b, f, p->id, RENDER_CHAT_KEY_MAX);
    put_field(b, f, "Leader");
    if (nonempty(p->leader_name)) {
        put_esc(b, f, p->leader_name, RENDER_CHAT_NAME_MAX);
        if (nonempty(p->leader_login)) {
            strbuf_puts(b, " (");
            put_esc(b, f, p->leader_login, RENDER_CHAT_NAME_MAX);
            strbuf_puts(b, ")");
        }
    } else if (nonempty(p->leader_login)) {
        put_esc(b, f, p->leader_login, RENDER_CHAT_NAME_MAX);
    } else {
        strbuf_puts(b, p->leader_name || p->leader_login ? "none" : "unknown");
    }
    put_field(b, f, "Archived");
    strbuf_puts(b, p->archived == TRI_YES ? "yes" : p->archived == TRI_NO ? "no" : "unknown");
    put_field(b, f, "First seen");
    fmt_time(when, sizeof(when), p->first_seen, 0);
    strbuf_puts(b, when);
    put_field(b, f, "Description");
    if (!p->description) {
        strbuf_puts(b, "unknown");
    } else if (!*p->description) {
        strbuf_puts(b, "none");
    } else {
        char *flat = flatten(p->description);
        if (!flat)
            b->oom = 1;
        put_esc(b, f, flat, DESCRIPTION_MAX);
        free(flat);
    }
}

static int run_project(const struct command_context *ctx, enum command_platform pf, const char *key,
                       char **out)
{
    struct doc d = {.ctx = ctx, .head = project_head, .arg = key};
    if (command_index_find(ctx->index, key, &d.proj) != 0)
        return -ENOMEM;
    return layout_linked(&d, pf, out);
}

/* ---- changes [N] ---- */

static const char *const kind_word[] = {"Created", "Renamed", "Archived", "Unarchived", "Removed"};

/* "Name (`KEY`)" of a history entry's strings, as render.c shows a project. */
static void put_named(struct strbuf *b, enum fmt f, const char *name, const char *key,
                      const char *id)
{
    if (nonempty(name)) {
        put_esc(b, f, name, RENDER_CHAT_NAME_MAX);
        if (nonempty(key)) {
            strbuf_puts(b, " (");
            put_code(b, f, key, RENDER_CHAT_KEY_MAX);
            strbuf_puts(b, ")");
        }
    } else {
        put_esc(b, f, nonempty(key) ? key : id, RENDER_CHAT_KEY_MAX);
    }
}

static void changes_head(struct strbuf *b, enum fmt f, const struct doc *d, size_t i)
{
    (void)i;
    if (!d->n_items) {
        strbuf_puts(b, "No changes detected yet.");
        return;
    }
    char title[64];
    if (d->n_items == 1)
        snprintf(title, sizeof(title), "The last change");
    else
        snprintf(title, sizeof(title), "The last %zu changes", d->n_items);
    put_bold(b, f, title);
    strbuf_puts(b, " (newest first, UTC)");
}

static void changes_item(struct strbuf *b, enum fmt f, const struct doc *d, size_t i)
{
    const struct history_entry *h = &d->history[d->n_items - 1 - i]; /* newest first */
    char when[32];

    fmt_time(when, sizeof(when), h->at, 1);
    put_code(b, f, when, 0);
    strbuf_puts(b, " ");
    strbuf_puts(b, (unsigned)h->kind < sizeof(kind_word) / sizeof(kind_word[0]) ? kind_word[h->kind]
                                                                                : "Changed");
    strbuf_puts(b, ": ");
    if (h->kind == CHANGE_RENAMED) {
        put_named(b, f, h->old_name ? h->old_name : h->name,
                  h->old_short_name ? h->old_short_name : h->short_name, h->id);
        strbuf_puts(b, " " ARROW " ");
    }
    put_named(b, f, h->name, h->short_name, h->id);
}

static int run_changes(const struct command_context *ctx, enum command_platform pf, const char *arg,
                       char **out)
{
    size_t n = CHANGES_DEFAULT;

    if (arg) {
        if (strspn(arg, "0123456789") != strlen(arg))
            return run_line(ctx, pf, "Usage: changes [N], N from 1 to 50.", out);
        /* Clamp without overflow: any long run of digits is "many". */
        n = strlen(arg) > 3 ? CHANGES_MAX : (size_t)strtoul(arg, NULL, 10);
        n = n < 1 ? 1 : n > CHANGES_MAX ? CHANGES_MAX : n;
    }
    if (!ctx->history || n > ctx->n_history)
        n = ctx->history ? ctx->n_history : 0;

    struct doc d = {.ctx = ctx, .head = changes_head, .item = changes_item};
    d.n_items = d.n_total = n;
    d.history = n ? ctx->history + (ctx->n_history - n) : NULL;
    return layout(&d, pf, out);
}

/* ---- status ---- */

static void status_head(struct strbuf *b, enum fmt f, const struct doc *d, size_t i)
{
    const struct command_context *ctx = d->ctx;
    char when[32], *url = NULL;
    (void)i;

    strbuf_puts(b, f == F_SLACK ? RENDER_RT_BOLD : f == F_HTML ? "<b>" : "");
    strbuf_puts(b, "ytbridge ");
    put_esc(b, f, ctx->version ? ctx->version : "unknown", ECHO_MAX);
    strbuf_puts(b, f == F_SLACK ? RENDER_RT_BOLD : f == F_HTML ? "</b>" : "");

    put_field(b, f, "YouTrack");
    if (render_safe_url(ctx->service_url, &url) != 0)
        b->oom = 1;
    if (url && (f == F_SLACK || f == F_HTML))
        put_link(b, f, url, ctx->service_url, RENDER_CHAT_NAME_MAX);
    else
        put_esc(b, f, ctx->service_url ? ctx->service_url : "unknown", RENDER_CHAT_NAME_MAX);
    free(url);
    strbuf_puts(b, ctx->flavour == YOUTRACK_MODERN   ? " (API: /api)"
                   : ctx->flavour == YOUTRACK_LEGACY ? " (API: legacy /rest)"
                                                     : " (API: not detected yet)");

    put_field(b, f, "Last successful poll");
    if (ctx->last_poll_ok > 0) {
        fmt_time(when, sizeof(when), ctx->last_poll_ok, 1);
        strbuf_puts(b, when);
        strbuf_puts(b, " UTC, ");
        put_duration(b, ctx->now - ctx->last_poll_ok);
        strbuf_puts(b, " ago");
    } else {
        strbuf_puts(b, "never");
    }
    if (nonempty(ctx->last_error)) {
        put_field(b, f, "Last error");
        put_esc(b, f, ctx->last_error, ERROR_MAX);
    }
    put_field(b, f, "Projects");
    strbuf_printf(b, "%zu", command_index_count(ctx->index));
    put_field(b, f, "Uptime");
    if (ctx->started_at > 0)
        put_duration(b, ctx->now - ctx->started_at);
    else
        strbuf_puts(b, "unknown");
    put_field(b, f, "Sinks");
    if (!ctx->n_sinks)
        strbuf_puts(b, "none");
    else
        strbuf_printf(b, "%zu", ctx->n_sinks);
}

static void status_item(struct strbuf *b, enum fmt f, const struct doc *d, size_t i)
{
    const struct command_sink *s = &d->ctx->sinks[i];
    put_code(b, f, s->name ? s->name : "?", RENDER_CHAT_KEY_MAX);
    strbuf_puts(b, " (");
    put_esc(b, f, s->type ? s->type : "?", RENDER_CHAT_KEY_MAX);
    strbuf_printf(b, "): queue %zu, ", s->depth);
    if (!s->broken) {
        strbuf_puts(b, "ok");
    } else if (nonempty(s->reason)) {
        strbuf_puts(b, "broken: ");
        put_esc(b, f, s->reason, ERROR_MAX);
    } else {
        strbuf_puts(b, "broken");
    }
}

static int run_status(const struct command_context *ctx, enum command_platform pf, char **out)
{
    struct doc d = {.ctx = ctx, .head = status_head, .item = status_item};
    d.n_items = d.n_total = ctx->sinks ? ctx->n_sinks : 0;
    return layout(&d, pf, out);
}

/* ---- parsing ---- */

enum cmd {
    CMD_HELP = 0,
    CMD_PROJECTS,
    CMD_PROJECT,
    CMD_CHANGES,
    CMD_STATUS,
    CMD_SUBSCRIBE, /* subscription commands: bridge.c runs them (subscription.h) */
    CMD_UNSUBSCRIBE,
    CMD_SUBSCRIPTIONS,
    CMD_UNKNOWN,
    CMD_TOO_LONG,
    CMD_INVALID,
};

static const char *const cmd_names[] = {"help",   "projects",  "project",     "changes",
                                        "status", "subscribe", "unsubscribe", "subscriptions"};

struct parsed {
    enum cmd cmd;
    char word[COMMAND_MAX_INPUT + 1]; /* the first word as typed */
    char args[COMMAND_MAX_INPUT + 1]; /* the rest, whitespace runs as one space; "" if none */
};

size_t command_space_len(const char *s, size_t n)
{
    uint32_t cp;

    if (n == 0)
        return 0;
    if (*s == ' ' || (*s >= '\t' && *s <= '\r'))
        return 1;
    size_t l = utf8_decode(s, n, &cp);
    return cp == 0xa0 ? l : 0;
}

/* command_space_len() of p, up to end. */
static size_t space_len(const char *p, const char *end)
{
    return command_space_len(p, (size_t)(end - p));
}

/* Slack sends & < > of slash-command text as entities (doc/slack.md, "Envelopes, acks and
 * answers"); undo that. */
static void slack_unescape(char *s)
{
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}};
    char *o = s;
    for (const char *p = s; *p;) {
        size_t i;
        for (i = 0; i < 3; i++)
            if (strncmp(p, ents[i].ent, strlen(ents[i].ent)) == 0)
                break;
        if (i < 3) {
            *o++ = ents[i].c;
            p += strlen(ents[i].ent);
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
}

int command_words(const char *text, size_t len, int slack, char *word, char *args)
{
    char in[COMMAND_MAX_INPUT + 1];
    const char *p, *end;
    size_t n, o = 0;

    word[0] = args[0] = '\0';
    if (len > COMMAND_MAX_INPUT)
        return -E2BIG;
    if (len)
        memcpy(in, text, len);
    in[len] = '\0';
    if (!utf8_valid(in, len) || memchr(in, '\0', len)) /* NUL: the text stops early */
        return -EILSEQ;
    if (slack)
        slack_unescape(in);
    end = in + strlen(in);

    for (p = in; (n = space_len(p, end)) > 0;)
        p += n;
    while (*p && !space_len(p, end))
        word[o++] = *p++;
    word[o] = '\0';
    o = 0;
    while (*p) {
        n = space_len(p, end);
        if (!n) {
            args[o++] = *p++;
            continue;
        }
        while ((n = space_len(p, end)) > 0)
            p += n;
        if (*p && o)
            args[o++] = ' ';
    }
    args[o] = '\0';
    return 0;
}

static void parse(const char *text, size_t len, int slack, struct parsed *out)
{
    int r = command_words(text, len, slack, out->word, out->args);

    if (r) {
        out->cmd = r == -E2BIG ? CMD_TOO_LONG : CMD_INVALID;
        return;
    }
    out->cmd = out->word[0] ? CMD_UNKNOWN : CMD_HELP;
    for (size_t i = 0; i < sizeof(cmd_names) / sizeof(cmd_names[0]); i++)
        if (strcasecmp(out->word, cmd_names[i]) == 0)
            out->cmd = (enum cmd)i;
}

int command_run(const char *text, size_t len, const struct command_context *context,
                enum command_platform platform, char **out)
{
    struct command_context c = *context, *ctx = &c;
    struct command_index *own = NULL;
    struct parsed ps;
    const char *arg;
    int r;

    parse(text ? text : "", text ? len : 0, platform == COMMAND_SLACK, &ps);
    arg = ps.args[0] ? ps.args : NULL;
    if ((ps.cmd == CMD_PROJECTS || ps.cmd == CMD_PROJECT || ps.cmd == CMD_STATUS) &&
        (!c.index || !command_index_of(c.index, c.projects))) {
        r = command_index_new(&own, c.projects);
        if (r)
            return r;
        c.index = own;
    }
    switch (ps.cmd) {
    case CMD_PROJECTS:
        r = run_projects(ctx, platform, arg, out);
        break;
    case CMD_PROJECT:
        r = arg ? run_project(ctx, platform, arg, out)
                : run_line(ctx, platform, "Usage: project KEY (a short name or an id).", out);
        break;
    case CMD_CHANGES:
        r = run_changes(ctx, platform, arg, out);
        break;
    case CMD_STATUS:
        r = run_status(ctx, platform, out);
        break;
    case CMD_SUBSCRIBE:
    case CMD_UNSUBSCRIBE:
    case CMD_SUBSCRIPTIONS:
        /* bridge.c answers these in a channel; here (the command line, tests) there is none. */
        r = run_line(ctx, platform, "Subscriptions are managed in a chat channel or room.", out);
        break;
    case CMD_UNKNOWN:
        r = run_help(ctx, platform, ps.word, out);
        break;
    case CMD_TOO_LONG:
        r = run_line(ctx, platform,
                     "Sorry, that command is too long. Try help for the list of commands.", out);
        break;
    case CMD_INVALID:
        r = run_line(ctx, platform,
                     "Sorry, that command is not valid UTF-8 text. Try help for the list of "
                     "commands.",
                     out);
        break;
    case CMD_HELP:
    default:
        r = run_help(ctx, platform, NULL, out);
        break;
    }
    command_index_free(own);
    return r;
}

const char *command_name(const char *text, size_t len)
{
    struct parsed ps;
    parse(text ? text : "", text ? len : 0, 0, &ps);
    return ps.cmd < CMD_UNKNOWN ? cmd_names[ps.cmd] : "help";
}
