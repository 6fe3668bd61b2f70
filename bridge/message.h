/*
 * A message: what the bridge has to say (a change, a digest of changes, the first run's
 * baseline, an alert), before render.c turns it into each target's bytes. Pure data, in a header
 * of its own so that the renderers of each target share it without depending on each other.
 */
#ifndef YTB_MESSAGE_H
#define YTB_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "project.h"

enum message_kind {
    MESSAGE_CHANGE = 0, /* one change */
    MESSAGE_DIGEST,     /* several changes of one poll in one message */
    MESSAGE_BASELINE,   /* first run: "now tracking N projects" */
    MESSAGE_ALERT,      /* something the operator must know: held removals, auth, broken sink */
};

struct message {
    enum message_kind kind;
    const struct change *change;        /* MESSAGE_CHANGE */
    const struct change *const *digest; /* MESSAGE_DIGEST: n_changes, in announcement order */
    size_t n_changes;
    size_t count;      /* MESSAGE_BASELINE: projects tracked; MESSAGE_ALERT: how many (or 0) */
    const char *alert; /* MESSAGE_ALERT: machine-readable kind, e.g. "removals_held" */
    const char *text;  /* MESSAGE_ALERT: the human sentence (trusted: written by the bridge) */
    const char *service_url; /* for links and the webhook's "youtrack" */
    enum youtrack_flavour flavour;
    const char *id;      /* delivery id (webhook "id"); may be NULL for stdout */
    int64_t occurred_at; /* unix seconds (webhook "occurred_at", RFC 3339 UTC) */
};

/* The event name of a message for webhooks and the outbox: "project.created", ...,
 * "digest", "baseline", "alert". */
const char *message_event_name(const struct message *m);

#endif
