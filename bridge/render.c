/*
 * Rendering: a message -> the bytes one target receives. Every piece of YouTrack text (names,
 * short names, ids, the URLs built from them) is hostile input, and this is the only module that
 * escapes it (README.md, "What it announces"):
 *
 * - stdout text: control characters, invalid UTF-8 and bidi overrides are shown as \xNN / \uNNNN,
 *   so a name can neither drive a terminal nor forge a second line;
 * - chat (Slack, Matrix, hookshot): the same characters become U+FFFD. Slack blocks are Block Kit
 *   rich_text, whose text elements Slack shows literally (no mrkdwn, no <!channel>, no entities;
 *   doc/slack.md): our own bold, code, links and emoji are marks (render.h RENDER_RT_*) that
 *   render_slack.c turns into elements, and untrusted text can never carry a mark. Slack's
 *   top-level "text" fallback is entity-escaped (& first, then < >) and sent with
 *   "mrkdwn": false; never link_names. Matrix HTML escapes & < > " ' and links only http(s)
 *   URLs; Matrix always sends "m.mentions": {} and m.notice. Names are shortened for chat
 *   (CHAT_NAME_MAX) and every target limit is enforced after escaping, cutting visibly on a
 *   character boundary;
 * - JSON (stdout json, webhook; render_json.c): jansson escapes; invalid UTF-8 (which jansson
 *   refuses) becomes U+FFFD, valid text passes through unchanged. Slack's JSON is written
 *   directly (render_slack.c, jwrite.h) in the bytes jansson would write.
 */
#include "render.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwrite.h"
#include "render_json.h"
#include "render_slack.h"
#include "strbuf.h"
#include "url.h"
#include "utf8.h"

/* doc/slack.md, "Limits": counted in code points, after escaping. */
#define SLACK_TEXT_MAX     RENDER_SLACK_TEXT_MAX     /* visible text per block */
#define SLACK_FALLBACK_MAX RENDER_SLACK_FALLBACK_MAX /* top-level "text" */
#define SLACK_BLOCKS_MAX   RENDER_SLACK_BLOCKS_MAX
/* doc/matrix.md §3: hookshot's budget under the 64 KiB event limit, in bytes of JSON. */
#define MATRIX_CONTENT_MAX RENDER_MATRIX_CONTENT_MAX

/* Code points of a name / a short name in chat (Slack fallback: after escaping). */
#define CHAT_NAME_MAX   RENDER_CHAT_NAME_MAX
#define CHAT_KEY_MAX    RENDER_CHAT_KEY_MAX
#define CHAT_URL_MAX    1000 /* bytes; a longer project URL is not linked */
#define DIGEST_LIST_MAX 100  /* changes listed in a chat digest; the rest is "… and N more" */
#define TEXT_DIGEST_MAX 2000 /* bytes of a stdout text digest before "and N more" */

#define ELLIPSIS "\xe2\x80\xa6" /* U+2026 */
#define INVALID  UTF8_INVALID   /* utf8_decode(): not a valid sequence; one byte consumed */

/* ---- a growing string ---- */

/*
 * Characters a name must not carry into a message: C0 controls (a newline would forge a line),
 * DEL, C1, the line/paragraph separators, and the bidi embeddings, overrides and isolates
 * (U+202E would reverse the rest of the line). Plain right-to-left letters are fine.
 */
static int cp_unsafe(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == INVALID;
}

/* ---- escaping untrusted text ---- */

enum esc {
    ESC_TEXT,  /* stdout text: unsafe characters and invalid bytes as \xNN / \uNNNN */
    ESC_PLAIN, /* chat plain text: unsafe characters as U+FFFD */
    ESC_SLACK, /* Slack top-level "text": & < > as entities, unsafe as U+FFFD */
    ESC_HTML,  /* HTML text and attributes: & < > " ' as entities, unsafe as U+FFFD */
    ESC_RICH,  /* Slack rich_text: unsafe as U+FFFD (so never a RENDER_RT_* mark), else as is */
};
_Static_assert((int)ESC_TEXT == RENDER_ESC_TEXT && (int)ESC_PLAIN == RENDER_ESC_PLAIN &&
                   (int)ESC_SLACK == RENDER_ESC_SLACK && (int)ESC_HTML == RENDER_ESC_HTML &&
                   (int)ESC_RICH == RENDER_ESC_SLACK_RICH,
               "enum esc mirrors enum render_esc");

/*
 * The escaped form of the character at s (avail > 0 bytes left) into out (>= 12 bytes). Returns
 * its length in bytes; *in gets the bytes consumed, *cps the code points written.
 */
static size_t esc_one(enum esc e, const unsigned char *s, size_t avail, char *out, size_t *in,
                      size_t *cps)
{
    uint32_t cp;
    size_t n = utf8_decode((const char *)s, avail, &cp);
    const char *ent = NULL;

    *in = n;
    *cps = 1;
    if (cp_unsafe(cp)) {
        if (e == ESC_TEXT) {
            int len = cp == INVALID || cp < 0x80
                          ? snprintf(out, 12, "\\x%02x", cp == INVALID ? s[0] : (unsigned)cp)
                          : snprintf(out, 12, "\\u%04x", (unsigned)cp);
            *cps = (size_t)len;
            return (size_t)len;
        }
        memcpy(out, "\xef\xbf\xbd", 3); /* U+FFFD */
        return 3;
    }
    if (e == ESC_SLACK || e == ESC_HTML) {
        if (cp == '&')
            ent = "&amp;";
        else if (cp == '<')
            ent = "&lt;";
        else if (cp == '>')
            ent = "&gt;";
        else if (e == ESC_HTML && cp == '"')
            ent = "&quot;";
        else if (e == ESC_HTML && cp == '\'')
            ent = "&#39;";
    }
    if (ent) {
        size_t len = strlen(ent);
        memcpy(out, ent, len);
        *cps = len;
        return len;
    }
    memcpy(out, s, n);
    return n;
}

/* Whether e writes byte c as it is, as one code point: printable ASCII but the entities' bytes. */
static int esc_plain(enum esc e, unsigned char c)
{
    if (c < 0x20 || c >= 0x7f)
        return 0;
    if ((e == ESC_SLACK || e == ESC_HTML) && (c == '&' || c == '<' || c == '>'))
        return 0;
    return e != ESC_HTML || (c != '"' && c != '\'');
}

/*
 * Appends s escaped for e. With max > 0, at most max code points are written, counted after
 * escaping for Slack (its limits are) and before escaping otherwise; a longer text is cut
 * between characters and ends in "…". NULL appends nothing.
 */
static void put_esc(struct strbuf *b, const char *s, enum esc e, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    char out[12];
    size_t in, cps, total = 0, used = 0, n;

    if (!s)
        return;
    n = strlen(s);
    /* A character counts one, or up to five as an entity in Slack's text: a text that cannot
     * reach max is not counted. */
    if (max && n > (e == ESC_SLACK ? max / 5 : max)) {
        for (size_t i = 0; i < n; i += in) {
            esc_one(e, p + i, n - i, out, &in, &cps);
            total += e == ESC_SLACK ? cps : 1;
        }
    }
    for (size_t i = 0; i < n; i += in) {
        if (!max || total <= max) {
            /* Not cut: a run of bytes that stay as they are goes in one piece. */
            size_t k = i;
            while (k < n && esc_plain(e, p[k]))
                k++;
            if (k > i) {
                strbuf_putn(b, s + i, k - i);
                in = k - i;
                continue;
            }
        }
        size_t len = esc_one(e, p + i, n - i, out, &in, &cps);
        size_t w = e == ESC_SLACK ? cps : 1;
        if (max && total > max && used + w > max - 1) {
            strbuf_puts(b, ELLIPSIS);
            return;
        }
        strbuf_putn(b, out, len);
        used += w;
    }
}

/* Like put_esc() (no limit), but each '\n' of s becomes sep: for the bridge's own alert text. */
static void put_esc_lines(struct strbuf *b, const char *s, enum esc e, const char *sep)
{
    for (const char *nl; s && *s; s = nl + 1) {
        nl = strchr(s, '\n');
        char *line = nl ? strndup(s, (size_t)(nl - s)) : strdup(s);
        if (!line) {
            b->oom = 1;
            return;
        }
        put_esc(b, line, e, 0);
        free(line);
        if (!nl)
            return;
        strbuf_puts(b, sep);
    }
}

/* ---- what to show of a project ---- */

static int nonempty(const char *s)
{
    return s && *s;
}

/* The short name to show after the name, or NULL when unknown or already shown as the name. */
static const char *shown_key(const struct project *p)
{
    return nonempty(p->name) && nonempty(p->short_name) ? p->short_name : NULL;
}

/*
 * url made safe for a Slack link element, Slack's <url|text> and an HTML attribute
 * (url_embed()): only http(s), so it carries no RENDER_RT_* mark either. NULL when it is not
 * linkable (or on ENOMEM, when oom->oom is set).
 */
static char *safe_url(struct strbuf *oom, const char *url)
{
    char *out = NULL;
    if (url_embed(url, CHAT_URL_MAX, &out) != 0)
        oom->oom = 1;
    return out;
}

/* The project's page as safe_url() makes it (render_link()), or NULL. */
static char *project_link(struct strbuf *b, const struct message *m, const struct project *p)
{
    struct render_links l = {0};
    char *url = NULL;

    if (render_links_init(&l, m->service_url, m->flavour) != 0 || render_link(&l, p, &url) != 0)
        b->oom = 1;
    render_links_fini(&l);
    return url;
}

/* ---- one change, in each target's words ---- */

enum style {
    ST_TEXT,           /* stdout: "project created: Name (KEY) URL" */
    ST_PLAIN,          /* Matrix body, hookshot text: "Project created: Name (KEY) URL" */
    ST_SLACK,          /* Slack rich_text marks: ":new: *Project created*: <url|Name> (`KEY`)" */
    ST_SLACK_FALLBACK, /* Slack top-level text: "Project created: Name (KEY)" */
    ST_HTML, /* Matrix HTML: "<b>Project created</b>: <a href=…>Name</a> (<code>KEY</code>)" */
};

static const char *const kind_title[] = {"Project created", "Project renamed", "Project archived",
                                         "Project unarchived", "Project removed"};
static const char *const kind_short[] = {"Created", "Renamed", "Archived", "Unarchived", "Removed"};
static const char *const kind_emoji[] = {"new", "pencil2", "file_cabinet", "outbox_tray",
                                         "wastebasket"};

static enum esc style_esc(enum style st)
{
    switch (st) {
    case ST_TEXT:
        return ESC_TEXT;
    case ST_PLAIN:
        return ESC_PLAIN;
    case ST_SLACK:
        return ESC_RICH;
    case ST_SLACK_FALLBACK:
        return ESC_SLACK;
    case ST_HTML:
        return ESC_HTML;
    }
    return ESC_TEXT;
}

/* The emoji :name: in Slack rich_text marks (name: ours, trusted). */
static void put_emoji(struct strbuf *b, const char *name)
{
    strbuf_puts(b, RENDER_RT_EMOJI);
    strbuf_puts(b, name);
    strbuf_puts(b, RENDER_RT_EMOJI);
}

/* "Name (KEY)", linked where the style links and url is not NULL. */
static void put_project(struct strbuf *b, enum style st, const struct project *p, const char *url)
{
    enum esc e = style_esc(st);
    size_t name_max = st == ST_TEXT ? 0 : CHAT_NAME_MAX;
    size_t key_max = st == ST_TEXT ? 0 : CHAT_KEY_MAX;
    const char *key = shown_key(p);

    if (url && st == ST_SLACK) {
        strbuf_puts(b, RENDER_RT_LINK);
        strbuf_puts(b, url);
        strbuf_puts(b, RENDER_RT_LABEL);
        put_esc(b, project_shown_name(p), e, name_max);
        strbuf_puts(b, RENDER_RT_END);
    } else if (url && st == ST_HTML) {
        strbuf_puts(b, "<a href=\"");
        put_esc(b, url, ESC_HTML, 0);
        strbuf_puts(b, "\">");
        put_esc(b, project_shown_name(p), e, name_max);
        strbuf_puts(b, "</a>");
    } else {
        put_esc(b, project_shown_name(p), e, name_max);
    }
    if (!key)
        return;
    strbuf_puts(b, st == ST_SLACK ? " (" RENDER_RT_CODE : st == ST_HTML ? " (<code>" : " (");
    put_esc(b, key, e, key_max);
    strbuf_puts(b, st == ST_SLACK ? RENDER_RT_CODE ")" : st == ST_HTML ? "</code>)" : ")");
}

/*
 * One change. digest: the shorter form used for a line of a digest. Renames link the new name
 * only (a legacy project's old page is gone); removals link nothing.
 */
static void put_change(struct strbuf *b, const struct message *m, const struct change *c,
                       enum style st, int digest)
{
    const struct project *shown = c->after ? c->after : c->before;
    char *url = NULL;

    switch (st) {
    case ST_TEXT:
        if (!digest)
            strbuf_puts(b, "project ");
        strbuf_puts(b, change_kind_name(c->kind));
        strbuf_puts(b, ": ");
        break;
    case ST_SLACK:
        put_emoji(b, kind_emoji[c->kind]);
        strbuf_puts(b, digest ? " " : " " RENDER_RT_BOLD);
        strbuf_puts(b, digest ? kind_short[c->kind] : kind_title[c->kind]);
        strbuf_puts(b, digest ? ": " : RENDER_RT_BOLD ": ");
        break;
    case ST_HTML:
        strbuf_puts(b, digest ? "" : "<b>");
        strbuf_puts(b, digest ? kind_short[c->kind] : kind_title[c->kind]);
        strbuf_puts(b, digest ? ": " : "</b>: ");
        break;
    case ST_PLAIN:
    case ST_SLACK_FALLBACK:
        strbuf_puts(b, digest ? kind_short[c->kind] : kind_title[c->kind]);
        strbuf_puts(b, ": ");
        break;
    }

    if (c->kind != CHANGE_REMOVED && c->after && st != ST_TEXT && st != ST_SLACK_FALLBACK)
        url = project_link(b, m, c->after);

    if (c->kind == CHANGE_RENAMED && c->before && c->after) {
        put_project(b, st, c->before, NULL);
        strbuf_puts(b, st == ST_TEXT ? " -> " : " \xe2\x86\x92 "); /* U+2192 */
        put_project(b, st, c->after, url);
    } else {
        put_project(b, st, shown, url);
    }

    if (st == ST_TEXT && c->after) {
        /* Today's stdout format: the raw link, escaped like the rest of the line. */
        char *raw = project_page_url(m->service_url, m->flavour, c->after);
        if (!raw) {
            b->oom = 1;
        } else {
            strbuf_puts(b, " ");
            put_esc(b, raw, ESC_TEXT, 0);
            free(raw);
        }
    } else if (st == ST_PLAIN && url) {
        strbuf_puts(b, " ");
        strbuf_puts(b, url);
    }
    free(url);
}

/* "2 created, 1 renamed, 4 removed" (kinds with no change are left out). */
static void put_counts(struct strbuf *b, const struct message *m)
{
    size_t n[5] = {0};
    int first = 1;
    for (size_t i = 0; i < m->n_changes; i++)
        if ((unsigned)m->digest[i]->kind < 5)
            n[m->digest[i]->kind]++;
    for (int k = 0; k < 5; k++) {
        if (!n[k])
            continue;
        strbuf_puts(b, first ? "" : ", ");
        strbuf_printf(b, "%zu", n[k]);
        strbuf_puts(b, " ");
        strbuf_puts(b, change_kind_name((enum change_kind)k));
        first = 0;
    }
}

/* "7 project changes" */
static void put_digest_title(struct strbuf *b, const struct message *m)
{
    strbuf_printf(b, "%zu", m->n_changes);
    strbuf_puts(b, m->n_changes == 1 ? " project change" : " project changes");
}

/* "Now tracking 12 projects on " (now: "Now" or "now"; pre/post around the number). */
static void put_tracking(struct strbuf *b, const struct message *m, const char *now,
                         const char *pre, const char *post)
{
    strbuf_puts(b, now);
    strbuf_puts(b, " tracking ");
    strbuf_puts(b, pre);
    strbuf_printf(b, "%zu", m->count);
    strbuf_puts(b, post);
    strbuf_puts(b, m->count == 1 ? " project on " : " projects on ");
}

/* How many digest lines a chat target lists. */
static size_t digest_listed(const struct message *m)
{
    return m->n_changes < DIGEST_LIST_MAX ? m->n_changes : DIGEST_LIST_MAX;
}

/* ---- RENDER_TEXT ---- */

static char *render_text(const struct message *m)
{
    struct strbuf b = {0};

    switch (m->kind) {
    case MESSAGE_BASELINE:
        put_tracking(&b, m, "now", "", "");
        put_esc(&b, m->service_url, ESC_TEXT, 0);
        break;
    case MESSAGE_ALERT:
        strbuf_puts(&b, "alert: ");
        put_esc(&b, m->text, ESC_TEXT, 0);
        break;
    case MESSAGE_CHANGE:
        put_change(&b, m, m->change, ST_TEXT, 0);
        break;
    case MESSAGE_DIGEST: {
        size_t i;
        strbuf_printf(&b, "%zu", m->n_changes);
        strbuf_puts(&b, m->n_changes == 1 ? " change: " : " changes: ");
        put_counts(&b, m);
        strbuf_puts(&b, " \xe2\x80\x94 "); /* U+2014 */
        for (i = 0; i < m->n_changes; i++) {
            size_t mark = b.n;
            if (i)
                strbuf_puts(&b, "; ");
            put_change(&b, m, m->digest[i], ST_TEXT, 1);
            /* Room is kept for "; and N more"; the first change is always shown whole. */
            if (i && b.n + 32 > TEXT_DIGEST_MAX) {
                strbuf_cut(&b, mark);
                break;
            }
        }
        if (i < m->n_changes) {
            strbuf_puts(&b, "; and ");
            strbuf_printf(&b, "%zu", m->n_changes - i);
            strbuf_puts(&b, " more");
        }
        break;
    }
    }
    return strbuf_take(&b);
}

/* ---- RENDER_SLACK ---- */

/* Appends the rich_text block of marked text to blocks (render_slack.h); text's ENOMEM fails it. */
static void put_block(struct strbuf *blocks, size_t *n, const struct strbuf *text)
{
    if (text->oom)
        blocks->oom = 1;
    else
        render_slack_block(blocks, n, text->p ? text->p : "", text->n);
}

static char *render_slack(const struct message *m)
{
    struct strbuf text = {0}, fb = {0}, blocks = {0}, out = {0};
    size_t nb = 0; /* blocks written */

    switch (m->kind) {
    case MESSAGE_CHANGE:
        put_change(&text, m, m->change, ST_SLACK, 0);
        put_block(&blocks, &nb, &text);
        put_change(&fb, m, m->change, ST_SLACK_FALLBACK, 0);
        break;
    case MESSAGE_DIGEST: {
        size_t listed = digest_listed(m), i, nblocks = 1;
        strbuf_puts(&text, RENDER_RT_BOLD);
        put_digest_title(&text, m);
        strbuf_puts(&text, RENDER_RT_BOLD ": ");
        put_counts(&text, m);
        put_block(&blocks, &nb, &text);
        put_digest_title(&fb, m);
        strbuf_puts(&fb, ": ");
        put_counts(&fb, m);

        /* Lines packed into blocks of <= SLACK_TEXT_MAX visible code points; one block is kept
         * for "… and N more". A line itself stays far below the limit (names are capped). */
        strbuf_cut(&text, 0);
        for (i = 0; i < listed && !blocks.oom; i++) {
            struct strbuf line = {0};
            put_change(&line, m, m->digest[i], ST_SLACK, 1);
            if (line.oom) {
                blocks.oom = 1;
            } else if (text.n &&
                       render_slack_count(text.p, text.n) + 1 + render_slack_count(line.p, line.n) >
                           SLACK_TEXT_MAX) {
                if (nblocks + 1 >= SLACK_BLOCKS_MAX - 1) {
                    strbuf_fini(&line);
                    break;
                }
                put_block(&blocks, &nb, &text);
                nblocks++;
                strbuf_cut(&text, 0);
            }
            if (text.n)
                strbuf_puts(&text, "\n");
            strbuf_putn(&text, line.p, line.n);
            strbuf_fini(&line);
        }
        if (text.n) {
            put_block(&blocks, &nb, &text);
            nblocks++;
        }
        if (i < m->n_changes) {
            strbuf_cut(&text, 0);
            strbuf_puts(&text, ELLIPSIS " and ");
            strbuf_printf(&text, "%zu", m->n_changes - i);
            strbuf_puts(&text, " more");
            put_block(&blocks, &nb, &text);
        }
        break;
    }
    case MESSAGE_BASELINE: {
        char *url = safe_url(&text, m->service_url);
        put_emoji(&text, "eyes");
        put_tracking(&text, m, " Now", RENDER_RT_BOLD, RENDER_RT_BOLD);
        if (url) {
            strbuf_puts(&text, RENDER_RT_LINK);
            strbuf_puts(&text, url);
            strbuf_puts(&text, RENDER_RT_LABEL);
        }
        put_esc(&text, m->service_url, ESC_RICH, CHAT_NAME_MAX);
        if (url)
            strbuf_puts(&text, RENDER_RT_END);
        put_block(&blocks, &nb, &text);
        put_tracking(&fb, m, "Now", "", "");
        put_esc(&fb, m->service_url, ESC_SLACK, CHAT_NAME_MAX);
        free(url);
        break;
    }
    case MESSAGE_ALERT:
        put_emoji(&text, "warning");
        strbuf_puts(&text, " ");
        put_esc_lines(&text, m->text, ESC_RICH, "\n");
        put_block(&blocks, &nb, &text);
        strbuf_puts(&fb, "Alert: ");
        put_esc_lines(&fb, m->text, ESC_SLACK, "\n");
        break;
    }

    render_slack_fit(&fb, SLACK_FALLBACK_MAX);
    /* Never link_names, and no markup in the fallback: "@here", "#general" and "*x*" stay text
     * (doc/slack.md). */
    strbuf_puts(&out, "{\"text\":");
    jwrite_string(&out, fb.p ? fb.p : "", fb.n);
    strbuf_puts(&out, ",\"mrkdwn\":false,\"blocks\":[");
    strbuf_putn(&out, blocks.p ? blocks.p : "", blocks.n);
    strbuf_puts(&out, "],\"unfurl_links\":false,\"unfurl_media\":false}");
    if (blocks.oom || fb.oom)
        out.oom = 1;
    strbuf_fini(&blocks);
    strbuf_fini(&text);
    strbuf_fini(&fb);
    return strbuf_take(&out);
}

/* ---- RENDER_MATRIX, RENDER_HOOKSHOT ---- */

/* The plain text (Matrix body, hookshot text) and the HTML of a chat message. */
static void render_chat(const struct message *m, size_t listed, struct strbuf *plain,
                        struct strbuf *html)
{
    switch (m->kind) {
    case MESSAGE_CHANGE:
        put_change(plain, m, m->change, ST_PLAIN, 0);
        put_change(html, m, m->change, ST_HTML, 0);
        break;
    case MESSAGE_DIGEST: {
        put_digest_title(plain, m);
        strbuf_puts(plain, ": ");
        put_counts(plain, m);
        strbuf_puts(html, "<p><b>");
        put_digest_title(html, m);
        strbuf_puts(html, "</b>: ");
        put_counts(html, m);
        strbuf_puts(html, "</p><ul>");
        for (size_t i = 0; i < listed; i++) {
            strbuf_puts(plain, "\n\xe2\x80\xa2 "); /* U+2022 */
            put_change(plain, m, m->digest[i], ST_PLAIN, 1);
            strbuf_puts(html, "<li>");
            put_change(html, m, m->digest[i], ST_HTML, 1);
            strbuf_puts(html, "</li>");
        }
        strbuf_puts(html, "</ul>");
        if (listed < m->n_changes) {
            strbuf_puts(plain, "\n" ELLIPSIS " and ");
            strbuf_printf(plain, "%zu", m->n_changes - listed);
            strbuf_puts(plain, " more");
            strbuf_puts(html, "<p>" ELLIPSIS " and ");
            strbuf_printf(html, "%zu", m->n_changes - listed);
            strbuf_puts(html, " more</p>");
        }
        break;
    }
    case MESSAGE_BASELINE: {
        char *url = safe_url(plain, m->service_url);
        put_tracking(plain, m, "Now", "", "");
        put_esc(plain, m->service_url, ESC_PLAIN, 0);
        put_tracking(html, m, "Now", "<b>", "</b>");
        if (url) {
            strbuf_puts(html, "<a href=\"");
            put_esc(html, url, ESC_HTML, 0);
            strbuf_puts(html, "\">");
            put_esc(html, m->service_url, ESC_HTML, 0);
            strbuf_puts(html, "</a>");
        } else {
            put_esc(html, m->service_url, ESC_HTML, 0);
        }
        free(url);
        break;
    }
    case MESSAGE_ALERT:
        /* Trusted, but it may quote names: escaped like the rest; its newlines are kept. */
        strbuf_puts(plain, "Alert: ");
        put_esc_lines(plain, m->text, ESC_PLAIN, "\n");
        strbuf_puts(html, "<b>Alert</b>: ");
        put_esc_lines(html, m->text, ESC_HTML, "<br>");
        break;
    }
}

/* The content object: Matrix (with or without the HTML) or hookshot. */
static json_t *chat_json(int hookshot, const struct strbuf *plain, const struct strbuf *html)
{
    const char *p = plain->p ? plain->p : "", *h = html && html->p ? html->p : "";
    size_t pn = plain->p ? plain->n : 0, hn = html && html->p ? html->n : 0;
    if (hookshot)
        return json_pack("{s:s%, s:s%}", "text", p, pn, "html", h, hn);
    if (html)
        return json_pack("{s:s, s:s%, s:s, s:s%, s:{}}", "msgtype", "m.notice", "body", p, pn,
                         "format", "org.matrix.custom.html", "formatted_body", h, hn, "m.mentions");
    return json_pack("{s:s, s:s%, s:{}}", "msgtype", "m.notice", "body", p, pn, "m.mentions");
}

/*
 * Bytes the character at s (n bytes, from text render_chat() made: valid UTF-8, no control
 * character but '\n') adds to the serialized plain text, plus, with html, to its HTML copy.
 */
static size_t chat_cost(const char *s, size_t n, int html)
{
    size_t c = *s == '"' || *s == '\\' || *s == '\n' ? 2 : (unsigned char)*s < 0x20 ? 6 : n;
    if (html) {
        switch (*s) {
        case '\n':
            return c + 4; /* <br> */
        case '&':
        case '\'':
            return c + 5;
        case '<':
        case '>':
            return c + 4;
        case '"':
            return c + 6;
        default:
            return c + c;
        }
    }
    return c;
}

/*
 * Shortens plain so that the content fits in MATRIX_CONTENT_MAX bytes with "… (truncated)"
 * appended; for hookshot html becomes the escaped copy of the shortened text. budget_cut lowers
 * the budget further (for a retry). Returns 0 or -ENOMEM.
 */
static const char truncated_mark[] = ELLIPSIS " (truncated)";

static int chat_cut(int hookshot, struct strbuf *plain, struct strbuf *html, size_t budget_cut)
{
    const size_t mark_len = sizeof(truncated_mark) - 1;
    struct strbuf empty = {0};
    json_t *o = chat_json(hookshot, &empty, hookshot ? &empty : NULL);
    char *skel = render_json_dump(o, !o);
    if (!skel)
        return -ENOMEM;
    /* The mark has no character either escaping changes. */
    size_t fixed = strlen(skel) + (hookshot ? 2 : 1) * mark_len + budget_cut;
    size_t budget = MATRIX_CONTENT_MAX > fixed ? MATRIX_CONTENT_MAX - fixed : 0, used = 0, i = 0;
    free(skel);

    while (i < plain->n) {
        size_t n = 1;
        while (i + n < plain->n && utf8_is_cont((unsigned char)plain->p[i + n]))
            n++;
        size_t c = chat_cost(plain->p + i, n, hookshot);
        if (used + c > budget)
            break;
        used += c;
        i += n;
    }
    strbuf_cut(plain, i);
    strbuf_puts(plain, truncated_mark);
    if (hookshot) {
        strbuf_fini(html);
        put_esc_lines(html, plain->p, ESC_HTML, "<br>");
    }
    return plain->oom || html->oom ? -ENOMEM : 0;
}

/* The content as JSON; NULL on ENOMEM. */
static char *chat_dump(int hookshot, const struct strbuf *plain, const struct strbuf *html)
{
    json_t *o = chat_json(hookshot, plain, html);
    return render_json_dump(o, !o);
}

/*
 * Takes out (the content as JSON, len bytes) and shrinks it to MATRIX_CONTENT_MAX bytes: for
 * Matrix the HTML goes first, then (for both) the plain text is cut. Returns the content or NULL
 * on ENOMEM (out is freed then).
 */
static char *chat_shrink(int hookshot, struct strbuf *plain, struct strbuf *html, char *out,
                         size_t len)
{
    size_t budget_cut = 0;
    int with_html = 1, cut = 0;

    for (int round = 0; round < 8 && len > MATRIX_CONTENT_MAX; round++) {
        size_t over = len - MATRIX_CONTENT_MAX;
        free(out);
        out = NULL;
        if (!hookshot && with_html) {
            with_html = 0;
        } else {
            /* chat_cost() is exact for text render_chat() made; a retry is a safety net. */
            if (cut) {
                budget_cut += over;
                strbuf_cut(plain, plain->n - (sizeof(truncated_mark) - 1));
            }
            cut = 1;
            if (chat_cut(hookshot, plain, html, budget_cut) != 0)
                return NULL;
        }
        out = chat_dump(hookshot, plain, with_html ? html : NULL);
        if (!out)
            return NULL;
        len = strlen(out);
    }
    if (len > MATRIX_CONTENT_MAX) { /* cannot happen: chat_cut() leaves room */
        free(out);
        out = NULL;
    }
    return out;
}

/*
 * Builds the content and shrinks it to MATRIX_CONTENT_MAX bytes of JSON (doc/matrix.md §3).
 * A digest first lists fewer changes ("… and N more" grows), keeping the HTML. Then, as hookshot
 * does: the HTML goes, then the plain text is cut. For hookshot, a body without "html" would be
 * rendered as Markdown (a name like [x](https://evil) would become a link), so there the HTML is
 * replaced by the escaped plain text rather than left out.
 */
static char *render_matrix_like(const struct message *m, int hookshot)
{
    struct strbuf plain = {0}, html = {0};
    size_t listed = digest_listed(m), len = 0;
    char *out = NULL;

    for (;;) {
        render_chat(m, listed, &plain, &html);
        if (plain.oom || html.oom)
            goto out;
        out = chat_dump(hookshot, &plain, &html);
        if (!out)
            goto out;
        len = strlen(out);
        if (len <= MATRIX_CONTENT_MAX || m->kind != MESSAGE_DIGEST || listed <= 1)
            break;
        /* Scale the list down to what fits (at least one fewer); a few rounds at most. */
        size_t fit = (size_t)((double)listed * MATRIX_CONTENT_MAX / (double)len);
        listed = fit < listed ? (fit ? fit : 1) : listed - 1;
        free(out);
        out = NULL;
        strbuf_fini(&plain);
        strbuf_fini(&html);
    }
    out = chat_shrink(hookshot, &plain, &html, out, len);
out:
    strbuf_fini(&plain);
    strbuf_fini(&html);
    return out;
}

/* ---- entry points ---- */

char *render(enum render_target t, const struct message *m)
{
    switch (t) {
    case RENDER_TEXT:
        return render_text(m);
    case RENDER_JSON:
        return render_json_stdout(m);
    case RENDER_SLACK:
        return render_slack(m);
    case RENDER_MATRIX:
        return render_matrix_like(m, 0);
    case RENDER_WEBHOOK:
        return render_json_webhook(m);
    case RENDER_HOOKSHOT:
        return render_matrix_like(m, 1);
    }
    return NULL;
}

/* ---- helpers for other chat answers (render.h) ---- */

char *render_escape(enum render_esc e, const char *s, size_t max)
{
    struct strbuf b = {0};
    put_esc(&b, s, (enum esc)e, max);
    return strbuf_take(&b);
}

void render_escape_put(struct strbuf *b, enum render_esc e, const char *s, size_t max)
{
    put_esc(b, s, (enum esc)e, max);
}

int render_safe_url(const char *url, char **out)
{
    struct strbuf oom = {0};
    *out = safe_url(&oom, url);
    return oom.oom ? -ENOMEM : 0;
}

int render_links_init(struct render_links *l, const char *service_url, enum youtrack_flavour f)
{
    char *base = project_page_base(service_url, f);
    int r;

    *l = (struct render_links){0};
    if (!base)
        return -ENOMEM;
    r = url_embed(base, CHAT_URL_MAX, &l->base);
    free(base);
    l->n = l->base ? strlen(l->base) : 0;
    return r;
}

int render_link(const struct render_links *l, const struct project *p, char **out)
{
    struct strbuf b = {0};

    *out = NULL;
    if (!l->base)
        return 0;
    strbuf_putn(&b, l->base, l->n);
    /* The encoded id has only bytes url_embed() keeps, and the scheme is in the base: this is
     * url_embed() of the whole page, the same bytes under the same limit. */
    url_put_escaped(&b, p->id);
    if (!b.oom && b.n > CHAT_URL_MAX) {
        strbuf_fini(&b);
        return 0;
    }
    *out = strbuf_take(&b);
    return *out ? 0 : -ENOMEM;
}

void render_links_fini(struct render_links *l)
{
    free(l->base);
    *l = (struct render_links){0};
}

char *render_matrix_answer(const char *body, const char *html, int *cut)
{
    struct strbuf plain = {0}, h = {0};
    char *out = NULL;
    size_t len;

    *cut = 0;
    strbuf_puts(&plain, body ? body : "");
    strbuf_puts(&h, html ? html : "");
    if (plain.oom || h.oom)
        goto out;
    out = chat_dump(0, &plain, &h);
    if (!out)
        goto out;
    len = strlen(out);
    if (len > MATRIX_CONTENT_MAX) {
        *cut = 1;
        out = chat_shrink(0, &plain, &h, out, len);
    }
out:
    strbuf_fini(&plain);
    strbuf_fini(&h);
    return out;
}
