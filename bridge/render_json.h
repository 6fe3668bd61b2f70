/*
 * render.c's JSON targets and the JSON serialiser its chat targets share (render_json.c).
 * Private to the render module: everything else goes through render.h.
 */
#ifndef YTB_RENDER_JSON_H
#define YTB_RENDER_JSON_H

#include <jansson.h>

#include "message.h"

/* RENDER_JSON: one stdout line. NULL on ENOMEM. */
char *render_json_stdout(const struct message *m);

/* RENDER_WEBHOOK: the generic webhook's body. NULL on ENOMEM. */
char *render_json_webhook(const struct message *m);

/* Serialises and frees o (compact, in insertion order); NULL on ENOMEM, or when o is NULL or err
 * is set. */
char *render_json_dump(json_t *o, int err);

#endif
