/*
 * Rendering. Text output escapes control characters (a project name must not be able to move a
 * terminal's cursor or forge a second line); JSON output is built with jansson, which escapes.
 */
#include "render.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
};

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

/* Untrusted text: C0 controls, DEL and the C1 range (as UTF-8, U+0080..U+009F) are escaped. */
static void sb_put_untrusted(struct sbuf *b, const char *s)
{
    char esc[8];
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", *p);
            sb_puts(b, esc);
        } else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            snprintf(esc, sizeof(esc), "\\u%04x", p[1]);
            sb_puts(b, esc);
            p++;
        } else {
            sb_putn(b, (const char *)p, 1);
        }
    }
}

static char *sb_take(struct sbuf *b)
{
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    return b->p ? b->p : strdup("");
}

/* "Name (KEY)", with unknown parts left out. */
static void put_project(struct sbuf *b, const struct project *p)
{
    const char *name = p->name ? p->name : p->short_name ? p->short_name : p->id;
    sb_put_untrusted(b, name);
    if (p->short_name && p->name) {
        sb_puts(b, " (");
        sb_put_untrusted(b, p->short_name);
        sb_puts(b, ")");
    }
}

static void put_link(struct sbuf *b, const struct message *m, const struct project *p)
{
    char *url = youtrack_project_url(m->service_url, m->flavour, p);
    if (!url) {
        b->oom = 1;
        return;
    }
    sb_puts(b, " ");
    sb_put_untrusted(b, url);
    free(url);
}

char *render_text(const struct message *m)
{
    struct sbuf b = {0};
    char num[32];

    switch (m->kind) {
    case MESSAGE_BASELINE:
        snprintf(num, sizeof(num), "%zu", m->count);
        sb_puts(&b, "now tracking ");
        sb_puts(&b, num);
        sb_puts(&b, m->count == 1 ? " project on " : " projects on ");
        sb_put_untrusted(&b, m->service_url);
        break;
    case MESSAGE_ALERT:
        sb_puts(&b, "alert: ");
        sb_put_untrusted(&b, m->text);
        break;
    case MESSAGE_CHANGE: {
        const struct change *c = m->change;
        sb_puts(&b, "project ");
        sb_puts(&b, change_kind_name(c->kind));
        sb_puts(&b, ": ");
        if (c->kind == CHANGE_RENAMED) {
            put_project(&b, c->before);
            sb_puts(&b, " -> ");
            put_project(&b, c->after);
        } else {
            put_project(&b, c->after ? c->after : c->before);
        }
        if (c->after)
            put_link(&b, m, c->after);
        break;
    }
    }
    return sb_take(&b);
}

static json_t *project_json(const struct message *m, const struct project *p)
{
    char *url = youtrack_project_url(m->service_url, m->flavour, p);
    json_t *o =
        json_pack("{s:s, s:s?, s:s?, s:o, s:s?}", "id", p->id, "shortName", p->short_name, "name",
                  p->name, "archived",
                  p->archived == TRI_UNKNOWN ? json_null() : json_boolean(p->archived), "url", url);
    free(url);
    return o;
}

char *render_json(const struct message *m)
{
    json_t *o = NULL;
    char event[32];

    switch (m->kind) {
    case MESSAGE_BASELINE:
        o = json_pack("{s:s, s:I, s:s}", "event", "baseline", "count", (json_int_t)m->count,
                      "youtrack", m->service_url);
        break;
    case MESSAGE_ALERT:
        o = json_pack("{s:s, s:s, s:I, s:s}", "event", "alert", "kind", m->alert, "count",
                      (json_int_t)m->count, "message", m->text);
        break;
    case MESSAGE_CHANGE: {
        const struct change *c = m->change;
        snprintf(event, sizeof(event), "project.%s", change_kind_name(c->kind));
        o = json_pack("{s:s, s:o}", "event", event, "project",
                      project_json(m, c->after ? c->after : c->before));
        if (o && c->before)
            json_object_set_new(o, "previous", project_json(m, c->before));
        break;
    }
    }
    if (!o)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}
