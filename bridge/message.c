/* Messages (message.h). */
#include "message.h"

const char *message_event_name(const struct message *m)
{
    static const char *const changes[] = {"project.created", "project.renamed", "project.archived",
                                          "project.unarchived", "project.removed"};
    switch (m->kind) {
    case MESSAGE_CHANGE:
        return changes[m->change->kind];
    case MESSAGE_DIGEST:
        return "digest";
    case MESSAGE_BASELINE:
        return "baseline";
    case MESSAGE_ALERT:
        return "alert";
    }
    return "unknown";
}
