/*
 * What a Slack body from the bridge must be (doc/slack.md), checked strictly by the unit tests
 * and, through fuzz/answer_check.h, by the command fuzzers:
 *
 * - a notification is exactly {"text","mrkdwn":false,"blocks","unfurl_links":false,
 *   "unfurl_media":false}; a command answer exactly {"response_type":"ephemeral","text",
 *   "mrkdwn":false,"blocks"} (so never link_names);
 * - "text" (the fallback) has 1..4000 code points, every '&' starts &amp; &lt; or &gt;, no '<' or
 *   '>' and no unsafe character but '\n';
 * - 1..50 blocks, each exactly {"type":"rich_text","elements":[{"type":"rich_text_section",
 *   "elements":[...]}]} with at least one element, and only the elements the bridge writes:
 *   text (non-empty; a style only of bold and/or code, true), link (an http(s) URL of printable
 *   ASCII without | < > " ' \ ^ ` { }, no style, an optional non-empty one-line label), emoji (a
 *   name of [a-z0-9_+-]); never a user, channel, usergroup or broadcast element;
 * - visible text (texts, link labels or the URL of an unlabelled link, ":name:" per emoji)
 *   of 1..3000 code points per block, with no unsafe character (C0 and C1 controls, DEL, U+2028,
 *   U+2029, bidi embeddings, overrides and isolates) but '\n'.
 *
 * slack_check() returns NULL for a good body, else the first problem found (a static string).
 * slack_view() renders the blocks as text for matching in tests; slack_count_literal() counts
 * the elements that show a given text unstyled.
 */
#ifndef YTB_TEST_SLACK_CHECK_H
#define YTB_TEST_SLACK_CHECK_H

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum slack_body {
    SLACK_NOTIFICATION, /* an incoming-webhook body (render(RENDER_SLACK, ...)) */
    SLACK_ANSWER,       /* a slash-command answer (render_slack_answer()) */
};

#define SLACK_CHECK_TEXT_MAX     3000
#define SLACK_CHECK_FALLBACK_MAX 4000
#define SLACK_CHECK_BLOCKS_MAX   50

/* Code points of s (valid UTF-8: jansson checked it). */
static inline size_t slack_check_cps(const char *s)
{
    size_t k = 0;
    for (; *s; s++)
        k += ((unsigned char)*s & 0xc0) != 0x80;
    return k;
}

/* 1 when s (valid UTF-8) holds an unsafe character; '\n' is allowed when nl is set. */
static inline int slack_check_unsafe(const char *s, int nl)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t cp = *p;
        size_t n = 1;
        if (*p >= 0xf0)
            n = 4, cp = *p & 0x07;
        else if (*p >= 0xe0)
            n = 3, cp = *p & 0x0f;
        else if (*p >= 0xc0)
            n = 2, cp = *p & 0x1f;
        for (size_t i = 1; i < n && p[i]; i++)
            cp = cp << 6 | (p[i] & 0x3f);
        if ((cp < 0x20 && !(nl && cp == '\n')) || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 ||
            cp == 0x2029 || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
            return 1;
        p += n;
    }
    return 0;
}

/* 1 when o is an object that has every key of need and no key outside need and allow. */
static inline int slack_check_keys(json_t *o, const char *const *need, const char *const *allow)
{
    const char *k;
    json_t *v;
    if (!json_is_object(o))
        return 0;
    for (size_t i = 0; need[i]; i++)
        if (!json_object_get(o, need[i]))
            return 0;
    json_object_foreach(o, k, v)
    {
        int known = 0;
        for (size_t i = 0; need[i] && !known; i++)
            known = !strcmp(k, need[i]);
        for (size_t i = 0; allow && allow[i] && !known; i++)
            known = !strcmp(k, allow[i]);
        if (!known)
            return 0;
    }
    return 1;
}

/* o[key] as a string, "" when it is missing or not a string. */
static inline const char *slack_check_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* A link URL as the bridge makes them (render_safe_url()). */
static inline int slack_check_url(const char *u)
{
    if (!u || (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0))
        return 0;
    for (const unsigned char *p = (const unsigned char *)u; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || strchr("|<>\"'\\^`{}", *p))
            return 0;
    return 1;
}

/* Checks one element of a rich_text_section; adds its visible code points to *visible. */
static inline const char *slack_check_element(json_t *el, size_t *visible)
{
    static const char *const text_keys[] = {"type", "text", NULL}, *const text_opt[] = {"style",
                                                                                        NULL};
    static const char *const link_keys[] = {"type", "url", NULL}, *const link_opt[] = {"text",
                                                                                       NULL};
    static const char *const emoji_keys[] = {"type", "name", NULL};
    const char *type = json_string_value(json_object_get(el, "type"));

    if (!type)
        return "an element without a type";
    if (!strcmp(type, "text")) {
        const char *t = json_string_value(json_object_get(el, "text"));
        json_t *st = json_object_get(el, "style"), *v;
        const char *k;
        if (!slack_check_keys(el, text_keys, text_opt) || !t || !*t)
            return "a text element with other keys or without text";
        if (st && (!json_is_object(st) || !json_object_size(st)))
            return "a text element with an empty or odd style";
        json_object_foreach(st, k, v)
        {
            if ((strcmp(k, "bold") != 0 && strcmp(k, "code") != 0) || !json_is_true(v))
                return "a text element with a style other than bold or code";
        }
        if (slack_check_unsafe(t, 1))
            return "a text element with an unsafe character";
        *visible += slack_check_cps(t);
    } else if (!strcmp(type, "link")) {
        const char *url = json_string_value(json_object_get(el, "url"));
        json_t *jt = json_object_get(el, "text");
        const char *t = json_string_value(jt);
        if (!slack_check_keys(el, link_keys, link_opt))
            return "a link element with other keys (a style?)";
        if (!slack_check_url(url))
            return "a link to something other than a safe http(s) URL";
        if (jt && (!t || !*t || slack_check_unsafe(t, 0)))
            return "a link label that is empty, not a string or unsafe";
        *visible += slack_check_cps(t ? t : url);
    } else if (!strcmp(type, "emoji")) {
        const char *name = json_string_value(json_object_get(el, "name"));
        if (!slack_check_keys(el, emoji_keys, NULL) || !name || !*name ||
            strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_+-") != strlen(name))
            return "an emoji element with other keys or an odd name";
        *visible += strlen(name) + 2;
    } else {
        return "an element type the bridge never writes (a mention?)";
    }
    return NULL;
}

static inline const char *slack_check_block(json_t *b)
{
    static const char *const keys[] = {"type", "elements", NULL};
    json_t *secs = json_object_get(b, "elements"), *sec, *els, *el;
    size_t visible = 0, i;

    if (!slack_check_keys(b, keys, NULL) || strcmp(slack_check_str(b, "type"), "rich_text") != 0)
        return "a block that is not exactly a rich_text block";
    if (!json_is_array(secs) || json_array_size(secs) != 1)
        return "a rich_text block without exactly one section";
    sec = json_array_get(secs, 0);
    els = json_object_get(sec, "elements");
    if (!slack_check_keys(sec, keys, NULL) ||
        strcmp(slack_check_str(sec, "type"), "rich_text_section") != 0 || !json_is_array(els) ||
        json_array_size(els) < 1)
        return "a rich_text element that is not a non-empty rich_text_section";
    json_array_foreach(els, i, el)
    {
        const char *e = slack_check_element(el, &visible);
        if (e)
            return e;
    }
    if (visible < 1 || visible > SLACK_CHECK_TEXT_MAX)
        return "a block whose visible text is not 1..3000 code points";
    return NULL;
}

/* The top-level "text": entity-escaped, shown without markup ("mrkdwn": false). */
static inline const char *slack_check_fallback(const char *t)
{
    if (!t || slack_check_cps(t) < 1 || slack_check_cps(t) > SLACK_CHECK_FALLBACK_MAX)
        return "a fallback text that is missing or not 1..4000 code points";
    for (const char *p = t; *p; p++) {
        if (*p == '&' && strncmp(p, "&amp;", 5) && strncmp(p, "&lt;", 4) && strncmp(p, "&gt;", 4))
            return "a fallback text with a bare '&'";
        if (*p == '<' || *p == '>')
            return "a fallback text with a raw '<' or '>'";
    }
    if (slack_check_unsafe(t, 1))
        return "a fallback text with an unsafe character";
    return NULL;
}

static inline const char *slack_check(const char *body, enum slack_body kind)
{
    static const char *const note[] = {"text",         "mrkdwn",       "blocks",
                                       "unfurl_links", "unfurl_media", NULL};
    static const char *const answer[] = {"response_type", "text", "mrkdwn", "blocks", NULL};
    const char *err = NULL;
    json_t *o = body ? json_loads(body, JSON_REJECT_DUPLICATES, NULL) : NULL, *blocks, *b;
    size_t i;

    if (!o)
        return "not JSON";
    blocks = json_object_get(o, "blocks");
    if (!slack_check_keys(o, kind == SLACK_ANSWER ? answer : note, NULL))
        err = "other top-level keys than the bridge sends (link_names?)";
    else if (!json_is_false(json_object_get(o, "mrkdwn")))
        err = "the fallback text is not sent with \"mrkdwn\": false";
    else if (kind == SLACK_NOTIFICATION && (!json_is_false(json_object_get(o, "unfurl_links")) ||
                                            !json_is_false(json_object_get(o, "unfurl_media"))))
        err = "unfurling is not off";
    else if (kind == SLACK_ANSWER && strcmp(slack_check_str(o, "response_type"), "ephemeral") != 0)
        err = "an answer that is not ephemeral";
    else
        err = slack_check_fallback(json_string_value(json_object_get(o, "text")));
    if (!err && (!json_is_array(blocks) || json_array_size(blocks) < 1 ||
                 json_array_size(blocks) > SLACK_CHECK_BLOCKS_MAX))
        err = "not 1..50 blocks";
    json_array_foreach(blocks, i, b)
    {
        if (err)
            break;
        err = slack_check_block(b);
    }
    json_decref(o);
    return err;
}

/* How many elements of type ("text" or "link") in body's blocks show exactly text unstyled. */
static inline size_t slack_count_literal(const char *body, const char *type, const char *text)
{
    json_t *o = body ? json_loads(body, 0, NULL) : NULL, *b, *el;
    size_t n = 0, i, j;
    json_array_foreach(json_object_get(o, "blocks"), i, b)
    {
        json_t *sec = json_array_get(json_object_get(b, "elements"), 0);
        json_array_foreach(json_object_get(sec, "elements"), j, el)
        {
            n += !strcmp(slack_check_str(el, "type"), type) &&
                 !strcmp(slack_check_str(el, "text"), text) && !json_object_get(el, "style");
        }
    }
    json_decref(o);
    return n;
}

/* Appends s to out[*n..cap) while it fits (the view is shorter than the JSON it comes from). */
static inline void slack_view_put(char *out, size_t *n, size_t cap, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (out && len && *n + len < cap) {
        memcpy(out + *n, s, len);
        *n += len;
        out[*n] = '\0';
    }
}

/*
 * The blocks of body as one string, blocks joined by "\n" (caller frees; NULL if body is not
 * JSON). marks = 0: what a reader sees (texts, link labels, ":name:" per emoji); marks = 1: the
 * same with the structure written mrkdwn-like for matching, *bold*, `code`, <url|label> and
 * :name:. The notation is a test's view only: Slack receives elements, never these characters
 * as markup, so a literal "*" in a name looks the same here; literalness is checked on elements.
 */
static inline char *slack_view(const char *body, int marks)
{
    json_t *o = body ? json_loads(body, 0, NULL) : NULL, *b, *el;
    size_t cap, n = 0, i, j;
    char *out;

    if (!o)
        return NULL;
    cap = strlen(body) + 1;
    out = calloc(1, cap);
    json_array_foreach(json_object_get(o, "blocks"), i, b)
    {
        json_t *sec = json_array_get(json_object_get(b, "elements"), 0);
        if (i)
            slack_view_put(out, &n, cap, "\n");
        json_array_foreach(json_object_get(sec, "elements"), j, el)
        {
            const char *type = slack_check_str(el, "type");
            const char *t = json_string_value(json_object_get(el, "text"));
            json_t *st = json_object_get(el, "style");
            const char *bold = marks && json_is_true(json_object_get(st, "bold")) ? "*" : "";
            const char *code = marks && json_is_true(json_object_get(st, "code")) ? "`" : "";
            if (!strcmp(type, "emoji")) {
                slack_view_put(out, &n, cap, ":");
                slack_view_put(out, &n, cap, slack_check_str(el, "name"));
                slack_view_put(out, &n, cap, ":");
            } else if (!strcmp(type, "link") && marks) {
                slack_view_put(out, &n, cap, "<");
                slack_view_put(out, &n, cap, slack_check_str(el, "url"));
                slack_view_put(out, &n, cap, "|");
                slack_view_put(out, &n, cap, t);
                slack_view_put(out, &n, cap, ">");
            } else if (!strcmp(type, "link")) {
                slack_view_put(out, &n, cap, t ? t : slack_check_str(el, "url"));
            } else {
                slack_view_put(out, &n, cap, bold);
                slack_view_put(out, &n, cap, code);
                slack_view_put(out, &n, cap, t);
                slack_view_put(out, &n, cap, code);
                slack_view_put(out, &n, cap, bold);
            }
        }
    }
    json_decref(o);
    return out;
}

#endif
