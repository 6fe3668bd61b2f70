/*
 * Routing and rendering of announcements into outbox entries.
 */
#include "announce.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"

void announce_batch_fini(struct announce_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        outbox_entry_free(b->v[i]);
    free(b->v);
    memset(b, 0, sizeof(*b));
}

static int key_wanted(const struct conf_sink *s, const char *key)
{
    int include = 0, any_include = 0;

    if (!key)
        return 0;
    for (size_t i = 0; i < s->n_projects; i++) {
        const char *p = s->projects[i];
        if (p[0] == '!') {
            if (fnmatch(p + 1, key, FNM_CASEFOLD) == 0)
                return 0;
        } else {
            any_include = 1;
            if (fnmatch(p, key, FNM_CASEFOLD) == 0)
                include = 1;
        }
    }
    return any_include ? include : 1; /* only exclusions: everything else is in */
}

static const char *key_of(const struct project *p)
{
    if (!p)
        return NULL;
    return p->short_name ? p->short_name : p->id;
}

int announce_wants(const struct conf_sink *s, const struct change *c)
{
    if (!(s->events & (1u << c->kind)))
        return 0;
    /* A project renamed out of (or into) a team's patterns is still that team's news. */
    return key_wanted(s, key_of(c->after)) || key_wanted(s, key_of(c->before));
}

static enum render_target target_of(const struct conf_sink *s)
{
    switch (s->type) {
    case CONF_SINK_SLACK:
    case CONF_SINK_SLACK_BOT: /* chat.postMessage takes the webhook's body, plus "channel" */
        return RENDER_SLACK;
    case CONF_SINK_MATRIX:
        return RENDER_MATRIX;
    case CONF_SINK_WEBHOOK:
        return RENDER_WEBHOOK;
    case CONF_SINK_HOOKSHOT:
        return RENDER_HOOKSHOT;
    case CONF_SINK_STDOUT:
    default:
        return s->format == LOG_FORMAT_JSON ? RENDER_JSON : RENDER_TEXT;
    }
}

/* Renders m for sink s and appends the entry. */
static int add(struct announce *a, const struct conf_sink *s, struct message *m,
               struct announce_batch *out)
{
    char id[96];
    int r = -ENOMEM;

    snprintf(id, sizeof(id), "%s-%llu-%s%u", a->epoch, (unsigned long long)a->gen, a->tag, a->k++);
    m->id = id;
    m->occurred_at = a->now;
    m->service_url = a->conf->youtrack.url;
    m->flavour = a->flavour;
    char *body = render(target_of(s), m);
    if (!body)
        return r;
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 16;
        struct outbox_entry **v = realloc(out->v, cap * sizeof(*v));
        if (!v)
            goto out;
        out->v = v;
        out->cap = cap;
    }
    out->v[out->n] = outbox_entry_new(id, s->name, message_event_name(m), body, a->now, a->gen);
    if (out->v[out->n]) {
        out->n++;
        r = 0;
    }
out:
    free(body);
    return r;
}

int announce_changes(struct announce *a, const struct change *v, size_t n,
                     struct announce_batch *out)
{
    const struct change **routed = calloc(n ? n : 1, sizeof(*routed));
    int r = 0;

    if (!routed)
        return -ENOMEM;
    for (size_t i = 0; i < a->conf->n_sinks + a->n_extra && !r; i++) {
        const struct conf_sink *s =
            i < a->conf->n_sinks ? &a->conf->sinks[i] : a->extra[i - a->conf->n_sinks];
        size_t k = 0;
        for (size_t j = 0; j < n; j++) {
            if (announce_wants(s, &v[j]))
                routed[k++] = &v[j];
        }
        /* Machines want every event as its own delivery; people want a summary. */
        if (k > (size_t)a->conf->notify.digest_threshold && s->type != CONF_SINK_WEBHOOK) {
            struct message m = {.kind = MESSAGE_DIGEST, .digest = routed, .n_changes = k};
            r = add(a, s, &m, out);
            continue;
        }
        for (size_t j = 0; j < k && !r; j++) {
            struct message m = {.kind = MESSAGE_CHANGE, .change = routed[j]};
            r = add(a, s, &m, out);
        }
    }
    free(routed);
    return r;
}

int announce_baseline(struct announce *a, size_t count, struct announce_batch *out)
{
    int r = 0;
    for (size_t i = 0; i < a->conf->n_sinks && !r; i++) {
        struct message m = {.kind = MESSAGE_BASELINE, .count = count};
        r = add(a, &a->conf->sinks[i], &m, out);
    }
    return r;
}

int announce_alert(struct announce *a, const char *kind, size_t count, const char *text,
                   const char *skip, struct announce_batch *out)
{
    int r = 0;
    for (size_t i = 0; i < a->conf->n_sinks && !r; i++) {
        const struct conf_sink *s = &a->conf->sinks[i];
        if (!s->alerts || (skip && strcmp(skip, s->name) == 0))
            continue;
        struct message m = {.kind = MESSAGE_ALERT, .alert = kind, .count = count, .text = text};
        r = add(a, s, &m, out);
    }
    return r;
}
