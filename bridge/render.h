/*
 * Messages -> text for each target. All escaping lives here (DESIGN.md, "Safety"): project
 * names are hostile input and are shown literally everywhere.
 */
#ifndef YTB_RENDER_H
#define YTB_RENDER_H

#include <stddef.h>

#include "project.h"
#include "youtrack.h"

enum message_kind {
    MESSAGE_CHANGE = 0,
    MESSAGE_BASELINE, /* first run: "now tracking N projects" */
    MESSAGE_ALERT,
};

struct message {
    enum message_kind kind;
    const struct change *change; /* MESSAGE_CHANGE */
    size_t count;                /* MESSAGE_BASELINE: projects; MESSAGE_ALERT: how many */
    const char *alert;           /* MESSAGE_ALERT: a machine-readable kind, e.g. "removals_held" */
    const char *text;            /* MESSAGE_ALERT: the human sentence */
    const char *service_url;     /* for links */
    enum youtrack_flavour flavour;
};

/* One line of plain text, no newline; control characters escaped. Caller frees; NULL: ENOMEM. */
char *render_text(const struct message *m);

/* One line of JSON, no newline. Caller frees; NULL: ENOMEM. */
char *render_json(const struct message *m);

#endif
