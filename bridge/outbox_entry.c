/* Outbox entries: building and freeing one (see outbox_entry.h). */
#include "outbox_entry.h"

#include <stdlib.h>
#include <string.h>

struct outbox_entry *outbox_entry_new(const char *id, const char *sink, const char *event,
                                      const char *body, int64_t created, uint64_t gen)
{
    struct outbox_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->id = strdup(id);
    e->sink = strdup(sink);
    e->event = strdup(event);
    e->body = strdup(body);
    e->created = created;
    e->gen = gen;
    if (!e->id || !e->sink || !e->event || !e->body) {
        outbox_entry_free(e);
        return NULL;
    }
    return e;
}

void outbox_entry_free(struct outbox_entry *e)
{
    if (!e)
        return;
    free(e->id);
    free(e->sink);
    free(e->event);
    free(e->body);
    free(e);
}
