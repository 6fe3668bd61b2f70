/*
 * Sinks: how one queued message becomes an HTTP request for its target, and how the target's
 * answer is classified. No queueing here (outbox.c); no rendering (render.c).
 */
#ifndef YTB_SINK_H
#define YTB_SINK_H

#include <stddef.h>

#include "conf.h"
#include "http.h"

struct outbox_entry;

enum sink_verdict {
    SINK_DELIVERED = 0,
    SINK_AGAIN,   /* a preparatory step succeeded (Matrix alias resolved): send now */
    SINK_RETRY,   /* transient: try the same entry again later */
    SINK_DEAD,    /* this entry can never be delivered: dead-letter it, go on */
    SINK_BROKEN,  /* the sink itself is unusable (credentials, target gone): stop sending */
    SINK_SUSPEND, /* a subscription's target is gone (Slack: is_archived, not_in_channel,
                     channel_not_found; Matrix: M_FORBIDDEN, the bot is not in the room): its
                     subscription is suspended, nothing more is sent to it */
};

/* "delivered", "again", "retry", "dead", "broken", "suspend". */
const char *sink_verdict_name(enum sink_verdict v);

struct sink {
    const struct conf_sink *conf;
    char *room_id; /* Matrix: the resolved room id (conf->room when it is already one) */
};

int sink_init(struct sink *s, const struct conf_sink *conf);
void sink_fini(struct sink *s);

/* Minimum milliseconds between two messages to this sink (Slack: 1 per second per webhook). */
unsigned sink_pace_ms(const struct sink *s);

/* An HTTP request for one entry; every string is owned. */
struct sink_request {
    char *method;
    char *url;
    char *headers[6]; /* NULL-terminated */
    char *body;
    size_t body_len;
};

/* Builds the request for e (or the preparatory request). 0 or -ENOMEM. */
int sink_request(struct sink *s, const struct outbox_entry *e, struct sink_request *req);
void sink_request_fini(struct sink_request *req);

/*
 * Classifies the answer to sink_request(). *retry_after is set to the server's delay in
 * seconds when it named one (else -1); why gets a short reason without secrets.
 */
enum sink_verdict sink_classify(struct sink *s, const struct http_response *res, long *retry_after,
                                char *why, size_t whylen);

#endif
