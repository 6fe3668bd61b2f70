/*
 * One rendered message on its way to a sink: what announce.c makes, the state journal keeps
 * and outbox.c delivers. Pure data, in a header of its own so that announcing needs none of
 * the delivery machinery (outbox.h: libuv, the HTTP client).
 */
#ifndef YTB_OUTBOX_ENTRY_H
#define YTB_OUTBOX_ENTRY_H

#include <stdint.h>

struct outbox_entry {
    struct outbox_entry *next; /* queue link */
    char *id;    /* deterministic delivery id: Matrix txnId, webhook X-Ytbridge-Delivery */
    char *sink;  /* the sink's name */
    char *event; /* "project.created", ..., "digest", "baseline", "alert" */
    char *body;  /* what the sink receives (JSON, or a text line for stdout text) */
    int64_t created;
    uint64_t gen;  /* the snapshot generation that committed it */
    int transient; /* a chat reply: never journaled, lost with the process (see README) */
};

/* Builds an entry (copies every string). Returns NULL on ENOMEM. */
struct outbox_entry *outbox_entry_new(const char *id, const char *sink, const char *event,
                                      const char *body, int64_t created, uint64_t gen);
void outbox_entry_free(struct outbox_entry *e);

#endif
