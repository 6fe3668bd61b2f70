/*
 * Messages -> the bytes each target receives. All escaping lives here (DESIGN.md, "Safety"):
 * project names are hostile input and are shown literally everywhere, ping nobody, and never
 * break the target's size limits (long text is cut visibly, on a character boundary).
 */
#ifndef YTB_RENDER_H
#define YTB_RENDER_H

#include <stddef.h>
#include <stdint.h>

#include "project.h"
#include "youtrack.h"

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

enum render_target {
    RENDER_TEXT = 0, /* stdout, text: one line */
    RENDER_JSON,     /* stdout, json: one line */
    RENDER_SLACK,    /* incoming-webhook body: text + Block Kit blocks */
    RENDER_MATRIX,   /* m.room.message content: m.notice, body + HTML, m.mentions {} */
    RENDER_WEBHOOK,  /* generic webhook body (documented in the README) */
    RENDER_HOOKSHOT, /* matrix-hookshot generic webhook: {"text", "html"} */
};

/* The event name of a message for webhooks: "project.created", ..., "digest", "baseline",
 * "alert". */
const char *render_event_name(const struct message *m);

/*
 * Renders m for target t. Returns a NUL-terminated string the caller frees (a JSON document
 * for every target but RENDER_TEXT), or NULL on ENOMEM.
 */
char *render(enum render_target t, const struct message *m);

#endif
