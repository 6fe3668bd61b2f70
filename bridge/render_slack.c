/*
 * Slack's Block Kit rich_text, written as JSON text (render_slack.h; doc/slack.md). The render
 * module's own: render.c marks up notifications and command.c answers with render.h's rich
 * text marks, and this file turns marked text into blocks. Untrusted text only ever lands in
 * the "text" of a text element or a link's label, which Slack shows literally; our own bold,
 * code, links and emoji are the marks, which untrusted text cannot carry (render_escape() turns
 * every control character into U+FFFD).
 *
 * Written straight into a strbuf with jwrite.h rather than built as a jansson tree and
 * serialised: a 100-project answer is about 20 KB of JSON, and the tree, its serialisation and
 * its teardown cost most of a `projects` command (README, "Performance"). The bytes are the ones
 * jansson wrote before (compact, keys in the order below).
 *
 * Limits (doc/slack.md, "Limits"): a block shows at most RENDER_SLACK_TEXT_MAX code points, a
 * message has at most RENDER_SLACK_BLOCKS_MAX blocks, and the top-level "text" at most
 * RENDER_SLACK_FALLBACK_MAX code points after escaping.
 */
#include "render_slack.h"

#include <stdint.h>
#include <string.h>

#include "jwrite.h"
#include "render.h"
#include "url.h"
#include "utf8.h"

#define ELLIPSIS "\xe2\x80\xa6" /* U+2026 */

/* The marks of render.h as bytes. */
#define RT_BOLD  RENDER_RT_BOLD[0]
#define RT_CODE  RENDER_RT_CODE[0]
#define RT_LINK  RENDER_RT_LINK[0]
#define RT_LABEL RENDER_RT_LABEL[0]
#define RT_END   RENDER_RT_END[0]
#define RT_EMOJI RENDER_RT_EMOJI[0]

/*
 * The cut never falls inside an entity (&amp;): in our text every '&' starts one, because
 * YouTrack's own are escaped.
 */
void render_slack_fit(struct strbuf *b, size_t max)
{
    size_t cps = 0, safe = 0;
    int in_ent = 0;

    if (!b->p || utf8_count(b->p, b->n) <= max)
        return;
    for (size_t i = 0; i < b->n; i++) {
        unsigned char c = (unsigned char)b->p[i];
        if (utf8_is_cont(c))
            continue;
        if (!in_ent) {
            if (cps + 1 > max) /* room for the "…" */
                break;
            safe = i;
        }
        cps++;
        if (c == '&')
            in_ent = 1;
        else if (c == ';')
            in_ent = 0;
    }
    strbuf_cut(b, safe);
    strbuf_puts(b, ELLIPSIS);
}

/*
 * The length of the run of bytes >= 0x20 at p (at most n), and in *vis its bytes that start a
 * character. Eight bytes at a time (SWAR, portable C): a run of text is most of every line a
 * command answer counts (render_slack_count()).
 */
static size_t text_run(const char *p, size_t n, size_t *vis)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0, v = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, sizeof(x));
        if ((x - 0x20 * ones) & ~x & highs) /* a byte below 0x20: exact, no false hit */
            break;
        /* The bytes 10xxxxxx continue a character: one bit each, summed into the top byte. */
        v += 8 - (size_t)((((x & ~(x << 1) & highs) >> 7) * ones) >> 56);
    }
    for (; i < n && (unsigned char)p[i] >= 0x20; i++)
        v += !utf8_is_cont((unsigned char)p[i]);
    *vis = v;
    return i;
}

/*
 * Where to cut a run of text p[0..n) that starts with cps code points shown before it: the
 * offset of its last character whose own code point still fits in max, in *cut (unchanged when
 * none does). rich_scan() counts the run as a whole; only here is it walked character by
 * character, and only up to where max is reached.
 */
static void run_cut(const char *p, size_t n, size_t vis, size_t cps, size_t max, size_t at,
                    size_t *cut)
{
    size_t i = n - 1, k = 0;

    if (!vis || cps + 1 > max)
        return;
    if (cps + vis <= max) { /* every character fits: the last one's start */
        while (i > 0 && utf8_is_cont((unsigned char)p[i]))
            i--;
        *cut = at + i;
        return;
    }
    for (i = 0; i < n; i++) {
        if (utf8_is_cont((unsigned char)p[i]))
            continue;
        if (cps + k + 1 > max)
            return;
        *cut = at + i;
        k++;
    }
}

/*
 * Walks marked text p[0..n) as render_slack_block() shows it and returns its visible code
 * points: text, link labels (a link without a label shows its URL), an emoji as ":name:"; marks
 * show nothing. With max > 0, *cut gets the last offset outside a link and an emoji where the
 * text before it plus "…" fits in max (meaningful when the result is over max). Runs of text
 * between marks are counted by text_run().
 */
static size_t rich_scan(const char *p, size_t n, size_t max, size_t *cut)
{
    size_t cps = 0, url = 0, label = 0, vis;
    int in_link = 0, in_emoji = 0; /* in_link: 1 in the URL, 2 in the label */

    for (size_t i = 0; i < n;) {
        size_t run = text_run(p + i, n - i, &vis);
        if (run) {
            if (max && !in_link && !in_emoji)
                run_cut(p + i, run, vis, cps, max, i, cut);
            if (in_link == 1)
                url += vis;
            else if (in_link == 2)
                label += vis;
            cps += in_link == 1 ? 0 : vis;
            i += run;
            continue;
        }
        char c = p[i]; /* a control byte: a mark, or '\n' */
        if (max && !in_link && !in_emoji && cps + 1 <= max)
            *cut = i;
        i++;
        if (in_link) {
            if (c == RT_LABEL && in_link == 1) {
                in_link = 2;
            } else if (c == RT_END) {
                cps += label ? 0 : url;
                in_link = 0;
            }
        } else if (in_emoji) {
            in_emoji = c != RT_EMOJI;
            cps++;
        } else if (c == RT_LINK) {
            in_link = 1;
            url = label = 0;
        } else if (c == RT_EMOJI) {
            in_emoji = 1;
            cps++;
        } else if (c == '\n') {
            cps++;
        }
    }
    return cps;
}

size_t render_slack_count(const char *s, size_t n)
{
    return rich_scan(s, n, 0, NULL);
}

/* ---- one block's elements ---- */

enum { STYLE_BOLD = 1, STYLE_CODE = 2 };

/* A block's elements as they are written (one text element may be open, its text unfinished). */
struct elements {
    struct strbuf *out;
    size_t n;       /* elements begun */
    int open;       /* a text element's "text" is being written */
    int open_style; /* that element's style */
    size_t cps;     /* visible code points so far, as rich_scan() counts them */
};

/* Begins an element of the given type: `{"type":"TYPE"`, after a comma if one came before. */
static void el_begin(struct elements *w, const char *type)
{
    strbuf_puts(w->out, w->n++ ? ",{\"type\":\"" : "{\"type\":\"");
    strbuf_puts(w->out, type);
    strbuf_puts(w->out, "\"");
}

/* Ends the open text element, if any: its style ({"bold":true}, {"code":true} or both). */
static void text_close(struct elements *w)
{
    static const char *const style_json[] = {"\"}", "\",\"style\":{\"bold\":true}}",
                                             "\",\"style\":{\"code\":true}}",
                                             "\",\"style\":{\"bold\":true,\"code\":true}}"};

    if (!w->open)
        return;
    strbuf_puts(w->out, style_json[w->open_style & 3]);
    w->open = 0;
}

/* Text s[0..n) in style: it joins the open text element when that has the same style. */
static void text_put(struct elements *w, int style, const char *s, size_t n)
{
    if (!n)
        return;
    if (w->open && w->open_style != style)
        text_close(w);
    if (!w->open) {
        el_begin(w, "text");
        strbuf_puts(w->out, ",\"text\":\"");
        w->open = 1;
        w->open_style = style;
    }
    jwrite_chars(w->out, s, n);
}

/* Writes label[0..n) without its control bytes (marks, '\n'): a link's label shows none. */
static void label_put(struct elements *w, int style, const char *label, size_t n, int as_text)
{
    for (size_t i = 0; i < n;) {
        size_t k = i;
        while (k < n && (unsigned char)label[k] >= 0x20)
            k++;
        if (as_text)
            text_put(w, style, label + i, k - i);
        else
            jwrite_chars(w->out, label + i, k - i);
        i = k + 1;
    }
}

/*
 * The link element of url[0..un) labelled label[0..ln) (no label: Slack shows the URL). A URL
 * render_safe_url() would not have made (never ours) links nothing: its label joins the text,
 * in the current style.
 */
static void link_put(struct elements *w, int style, const char *url, size_t un, const char *label,
                     size_t ln)
{
    size_t shown = 0;

    text_close(w);
    if (!url_embeddable(url, un)) {
        label_put(w, style, label, ln, 1);
        return;
    }
    for (size_t i = 0; i < ln; i++)
        shown += (unsigned char)label[i] >= 0x20;
    el_begin(w, "link");
    /* An embeddable URL is printable ASCII without '"' or '\\': JSON as it is. */
    strbuf_puts(w->out, ",\"url\":\"");
    strbuf_putn(w->out, url, un);
    strbuf_puts(w->out, "\"");
    if (shown) {
        strbuf_puts(w->out, ",\"text\":\"");
        label_put(w, style, label, ln, 0);
        strbuf_puts(w->out, "\"");
    }
    strbuf_puts(w->out, "}");
}

/* The emoji element of name[0..n), for a name of [a-z0-9_+-] (ours); else nothing. name[n] is
 * the closing mark, which strspn() stops at. */
static void emoji_put(struct elements *w, const char *name, size_t n)
{
    text_close(w);
    if (!n || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_+-") < n)
        return;
    el_begin(w, "emoji");
    strbuf_puts(w->out, ",\"name\":");
    jwrite_string(w->out, name, n);
    strbuf_puts(w->out, "}");
}

/* Bytes of p[0..n) that start a character and are not control bytes: what a link shows. */
static size_t printable(const char *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += (unsigned char)p[i] >= 0x20 && !utf8_is_cont((unsigned char)p[i]);
    return k;
}

/*
 * The elements of marked text p[0..n), counting in w->cps what they show as rich_scan() does
 * (a closed link without a label shows its URL, an emoji ":name:", an unclosed one the rest).
 */
static void elements_put(struct elements *w, const char *p, size_t n)
{
    const char *end = p + n;
    int style = 0;

    while (p < end && !w->out->oom) {
        char c = *p;
        if (c == RT_BOLD || c == RT_CODE) {
            style ^= c == RT_BOLD ? STYLE_BOLD : STYLE_CODE;
            p++;
        } else if (c == RT_LINK) {
            const char *url = p + 1, *u_end = url, *label, *l_end;
            while (u_end < end && *u_end != RT_LABEL && *u_end != RT_END)
                u_end++;
            if (u_end == end)
                break;
            label = l_end = *u_end == RT_LABEL ? u_end + 1 : u_end;
            while (l_end < end && *l_end != RT_END)
                l_end++;
            size_t shown = printable(label, (size_t)(l_end - label));
            if (!shown && l_end < end)
                shown = printable(url, (size_t)(u_end - url));
            w->cps += shown;
            link_put(w, style, url, (size_t)(u_end - url), label, (size_t)(l_end - label));
            p = l_end < end ? l_end + 1 : end;
        } else if (c == RT_EMOJI) {
            const char *name = p + 1, *n_end = memchr(name, RT_EMOJI, (size_t)(end - name));
            w->cps += 1 + utf8_count(name, (size_t)((n_end ? n_end : end) - name)) + !!n_end;
            if (!n_end)
                break;
            emoji_put(w, name, (size_t)(n_end - name));
            p = n_end + 1;
        } else if ((unsigned char)c < 0x20 && c != '\n') {
            p++; /* a stray mark shows nothing */
        } else {
            /* A run of text up to the next mark, in one go. */
            const char *q = p + 1;
            while (q < end && ((unsigned char)*q >= 0x20 || *q == '\n'))
                q++;
            w->cps += utf8_count(p, (size_t)(q - p));
            text_put(w, style, p, (size_t)(q - p));
            p = q;
        }
    }
    text_close(w);
}

/* Writes the start of a block and the elements of s[0..n) to out; returns what they show. */
static size_t block_begin(struct strbuf *out, int first, const char *s, size_t n, size_t *els)
{
    struct elements w = {.out = out};

    strbuf_puts(out, first ? "{\"type\":\"rich_text\",\"elements\":[{\"type\":"
                             "\"rich_text_section\",\"elements\":["
                           : ",{\"type\":\"rich_text\",\"elements\":[{\"type\":"
                             "\"rich_text_section\",\"elements\":[");
    elements_put(&w, s, n);
    *els = w.n;
    return w.cps;
}

void render_slack_block(struct strbuf *out, size_t *blocks, const char *s, size_t n)
{
    struct strbuf cut = {0};
    size_t at = out->n, els = 0, end = 0;

    /* Written at once, and written again when it shows too much (the text is counted as it is
     * written, not first): cut outside a link and an emoji; a style left open ends with the
     * text. */
    if (block_begin(out, !*blocks, s, n, &els) > RENDER_SLACK_TEXT_MAX && !out->oom) {
        strbuf_cut(out, at);
        rich_scan(s, n, RENDER_SLACK_TEXT_MAX, &end);
        strbuf_putn(&cut, s, end);
        strbuf_puts(&cut, ELLIPSIS);
        if (cut.oom) {
            out->oom = 1;
            return;
        }
        block_begin(out, !*blocks, cut.p, cut.n, &els);
    }
    if (els) {
        strbuf_puts(out, "]}]}");
        (*blocks)++;
    } else {
        strbuf_cut(out, at); /* shows nothing: no block */
    }
    strbuf_fini(&cut);
}

char *render_slack_answer(const char *fallback, const char *const *sections, size_t n)
{
    struct strbuf out = {0}, fb = {0};
    size_t blocks = 0;

    strbuf_puts(&fb, fallback ? fallback : "");
    render_slack_fit(&fb, RENDER_SLACK_FALLBACK_MAX);
    /* Never link_names, and no markup in the fallback (doc/slack.md). */
    strbuf_puts(&out, "{\"response_type\":\"ephemeral\",\"text\":");
    jwrite_string(&out, fb.p ? fb.p : "", fb.n);
    strbuf_puts(&out, ",\"mrkdwn\":false,\"blocks\":[");
    for (size_t i = 0; i < n && blocks < RENDER_SLACK_BLOCKS_MAX && !out.oom; i++) {
        const char *s = sections[i] ? sections[i] : "";
        render_slack_block(&out, &blocks, s, strlen(s)); /* nothing for one that shows nothing */
    }
    strbuf_puts(&out, "]}");
    if (fb.oom)
        out.oom = 1;
    strbuf_fini(&fb);
    return strbuf_take(&out);
}
