/*
 * One websocket client connection on libwebsockets, on the shared libuv loop: connect, whole
 * text messages in (reassembled, capped), text frames out (queued), pings and the close frame.
 * It is the client side of the lws boundary: lws types, callbacks and buffer rules stay in
 * wsconn.c. Its owner (slack_socket.c) decides everything else (liveness, when to close or
 * drop, reconnecting) from the events below.
 *
 * Ownership: the owner frees a connection with wsconn_free(), never from inside one of its
 * events. After ended(), lws holds no reference to it and no event follows.
 */
#ifndef YTB_WSCONN_H
#define YTB_WSCONN_H

#include <stddef.h>
#include <uv.h>

#include "strbuf.h"

struct lws_context;
struct wsconn;

struct wsconn_events {
    void (*established)(void *userdata); /* the upgrade succeeded */
    void (*activity)(void *userdata);    /* a frame (or a piece of one) or a pong arrived */
    void (*message)(void *userdata, const char *text, size_t len); /* one whole text message */
    void (*ping_sent)(void *userdata);
    void (*close_sent)(void *userdata);  /* our close frame goes now: nothing may follow it */
    void (*peer_closed)(void *userdata); /* the peer's close frame, not an answer to ours */
    void (*ended)(void *userdata, const char *why); /* lws is done with it; once, last */
};

struct wsconn_target {
    const char *address; /* numeric: resolved already */
    int port;
    const char *host; /* for Host: and Origin: */
    const char *path; /* with the query */
    int tls;
};

/*
 * The process's client context for connections on loop (lwsctx_client()), made on first use;
 * tls: wss:// is needed. Returns it (borrowed), with *has_tls, or NULL.
 */
struct lws_context *wsconn_context(uv_loop_t *loop, int tls, int *has_tls);

/*
 * Starts connecting to t through ctx (made by wsconn_context() for loop); id names the socket
 * in log lines of module. Messages
 * over max_message bytes, and binary ones, are logged and dropped. Returns 0 with *out (which
 * ended() may already have been called for, inside the call), -ENOMEM, or -EIO when lws
 * refused to start (then *out is set too, not live and without events; free it).
 */
int wsconn_open(struct wsconn **out, uv_loop_t *loop, struct lws_context *ctx,
                const struct wsconn_target *t, const char *module, unsigned id, size_t max_message,
                const struct wsconn_events *events, void *userdata);

/* 1 while lws holds the socket (from wsconn_open() until ended()). */
int wsconn_live(const struct wsconn *w);

/*
 * Text frames are built in a strbuf that starts with the room lws needs before a frame's text
 * (its header goes there): wsconn_frame_start() appends that room to an empty b, the caller
 * appends the text, and wsconn_send_frame() queues it and takes b's buffer, so the text (a
 * whole command answer) is not copied again. b is empty afterwards, whatever the result: 0,
 * -EPIPE after the close frame was sent, or -ENOMEM (also when b ran out of memory).
 */
void wsconn_frame_start(struct strbuf *b);
int wsconn_send_frame(struct wsconn *w, struct strbuf *b);

/* Sends a ping when the socket is next writable (after queued frames). */
void wsconn_ping(struct wsconn *w);

/* Sends a close frame (1000) after what is queued; close_sent() says when. */
void wsconn_close(struct wsconn *w);

/*
 * Drops the socket now, without a close frame. Synchronous: ended() is called before this
 * returns, so never call it from inside an event.
 */
void wsconn_kill(struct wsconn *w);

/*
 * Frees w. A socket still live is dropped without any further event. NULL is fine; never from
 * inside an event.
 */
void wsconn_free(struct wsconn *w);

#endif
