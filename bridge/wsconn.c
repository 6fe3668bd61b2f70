/*
 * A websocket client connection on libwebsockets (see wsconn.h).
 *
 * lws calls on_lws() with the connection as the wsi's opaque user data. The first callback that
 * says lws is done with the socket clears that pointer and reports ended() once; callbacks after
 * it find no connection and do nothing, and wsconn_free() clears it too before it kills a live
 * socket, so no callback ever reaches freed memory. Frames are written only from the writable
 * callback, one per call, in order: queued text, then a ping, then the close frame.
 */
#include "wsconn.h"

#include <errno.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "lwsctx.h"

struct frame {
    struct frame *next;
    size_t len;          /* of the text */
    unsigned char *data; /* LWS_PRE bytes, then the text (a strbuf's buffer, taken over) */
};

struct wsconn {
    struct lws *wsi; /* NULL before the connect and after lws is done with it */
    struct wsconn_events ev;
    void *ud;
    const char *module;
    unsigned id;
    size_t max_message;
    int ended;      /* ended() was called */
    int want_ping;  /* send a ping when writable */
    int want_close; /* send the close frame when writable */
    int close_sent;
    char *rx;
    size_t rx_len, rx_cap;
    int rx_skip;       /* the message being received is binary or too big */
    int rx_in_message; /* pieces of a message have arrived, its end has not */
    struct frame *txh, *txt;
    uv_loop_t *loop;
};

static const lws_retry_bo_t idle_policy = {
    /* Liveness is the owner's (its own pings and deadlines): keep lws's checks out of the way. */
    .secs_since_valid_ping = 65535,
    .secs_since_valid_hangup = 65535,
};

static int on_lws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len);

static const struct lws_protocols protocols[] = {
    {"ytbridge-client", on_lws, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

struct lws_context *wsconn_context(uv_loop_t *loop, int tls, int *has_tls)
{
    return lwsctx_client(loop, tls, protocols, &idle_policy, has_tls);
}

int wsconn_live(const struct wsconn *w)
{
    return w && w->wsi;
}

void wsconn_frame_start(struct strbuf *b)
{
    static const char room[LWS_PRE];
    strbuf_putn(b, room, sizeof(room));
}

int wsconn_send_frame(struct wsconn *w, struct strbuf *b)
{
    struct frame *f = NULL;
    int r = -ENOMEM;

    if (w->close_sent || w->ended) {
        r = -EPIPE; /* nothing may follow our close frame */
        goto fail;
    }
    if (b->oom || b->n < LWS_PRE)
        goto fail;
    f = malloc(sizeof(*f));
    if (!f)
        goto fail;
    f->next = NULL;
    f->len = b->n - LWS_PRE;
    f->data = (unsigned char *)strbuf_take(b);
    if (w->txt)
        w->txt->next = f;
    else
        w->txh = f;
    w->txt = f;
    if (w->wsi)
        lws_callback_on_writable(w->wsi);
    return 0;
fail:
    strbuf_fini(b);
    return r;
}

static void frame_free(struct frame *f)
{
    free(f->data);
    free(f);
}

void wsconn_ping(struct wsconn *w)
{
    w->want_ping = 1;
    if (w->wsi)
        lws_callback_on_writable(w->wsi);
}

void wsconn_close(struct wsconn *w)
{
    w->want_close = 1;
    if (w->wsi)
        lws_callback_on_writable(w->wsi);
}

void wsconn_kill(struct wsconn *w)
{
    /*
     * Synchronously: lws 4.1's asynchronous kill (a zero timeout) waits for a timer that a
     * foreign libuv loop may never re-arm. The callbacks report ended().
     */
    if (w->wsi)
        lws_set_timeout(w->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
}

void wsconn_free(struct wsconn *w)
{
    if (!w)
        return;
    if (w->wsi) {
        /* Still open (the context outlives us): it goes now, and its callbacks find no owner. */
        lws_set_opaque_user_data(w->wsi, NULL);
        lws_set_timeout(w->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    }
    while (w->txh) {
        struct frame *f = w->txh;
        w->txh = f->next;
        frame_free(f);
    }
    free(w->rx);
    free(w);
}

/* The one frame due: queued text first, then a ping, then the close frame. */
static int on_writable(struct wsconn *w)
{
    struct frame *f = w->txh;

    if (f) {
        if (lws_write(w->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT) < (int)f->len)
            return -1;
        w->txh = f->next;
        if (!w->txh)
            w->txt = NULL;
        frame_free(f);
        if (w->txh || w->want_ping || w->want_close)
            lws_callback_on_writable(w->wsi);
        return 0;
    }
    if (w->want_ping) {
        unsigned char buf[LWS_PRE + 32];
        int n = snprintf((char *)buf + LWS_PRE, sizeof(buf) - LWS_PRE, "ytbridge %llu",
                         (unsigned long long)uv_now(w->loop));
        w->want_ping = 0;
        w->ev.ping_sent(w->ud);
        if (lws_write(w->wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_PING) < n)
            return -1;
        if (w->want_close)
            lws_callback_on_writable(w->wsi);
        return 0;
    }
    if (w->want_close) {
        /*
         * The close frame (1000), written here: lws 4.1 on libuv kills the connection at once
         * when a callback returns -1 after lws_close_reason(), without sending it. Opcode 4 is
         * lws's close (LWS_WRITE_CLOSE, not exported). The peer's answering close ends the
         * socket (WS_PEER_INITIATED_CLOSE below); without one, the owner drops it.
         */
        unsigned char buf[LWS_PRE + 2];
        buf[LWS_PRE] = (unsigned char)(LWS_CLOSE_STATUS_NORMAL >> 8);
        buf[LWS_PRE + 1] = (unsigned char)(LWS_CLOSE_STATUS_NORMAL & 0xff);
        w->want_close = 0;
        w->close_sent = 1;
        w->ev.close_sent(w->ud);
        return lws_write(w->wsi, buf + LWS_PRE, 2, (enum lws_write_protocol)4) < 2 ? -1 : 0;
    }
    return 0;
}

/* A frame (or part of one) arrived: reassemble, then hand over complete text messages. */
static void on_receive(struct wsconn *w, const void *in, size_t len)
{
    struct lws *wsi = w->wsi;

    if (!w->rx_in_message) {
        /* The first piece of a message (lws hands a frame over in pieces of up to 4 KiB). */
        w->rx_in_message = 1;
        w->rx_skip = lws_frame_is_binary(wsi);
        if (w->rx_skip)
            log_warn(w->module, "socket %u: a binary message; ignored (only text is expected)",
                     w->id);
    }
    if (!w->rx_skip) {
        if (w->rx_len + len > w->max_message) {
            log_warn(w->module, "socket %u: a message over %zu bytes; ignored", w->id,
                     w->max_message);
            w->rx_skip = 1;
            w->rx_len = 0;
        } else {
            if (w->rx_len + len > w->rx_cap) {
                size_t cap = w->rx_cap ? w->rx_cap : 4096;
                while (cap < w->rx_len + len)
                    cap *= 2;
                char *p = realloc(w->rx, cap);
                if (!p) {
                    log_err(w->module, "out of memory receiving a message; ignored");
                    w->rx_skip = 1;
                    w->rx_len = 0;
                } else {
                    w->rx = p;
                    w->rx_cap = cap;
                }
            }
            if (!w->rx_skip) {
                memcpy(w->rx + w->rx_len, in, len);
                w->rx_len += len;
            }
        }
    }
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) != 0)
        return;
    if (!w->rx_skip)
        w->ev.message(w->ud, w->rx, w->rx_len);
    w->rx_len = 0;
    w->rx_skip = 0;
    w->rx_in_message = 0;
    if (w->rx_cap > 64 * 1024) { /* do not keep a big buffer for small messages */
        free(w->rx);
        w->rx = NULL;
        w->rx_cap = 0;
    }
}

/* lws is done with the socket: no callback may reach w from now on. */
static void ended(struct wsconn *w, struct lws *wsi, const char *why)
{
    lws_set_opaque_user_data(wsi, NULL);
    w->wsi = NULL;
    if (w->ended)
        return;
    w->ended = 1;
    w->ev.ended(w->ud, why);
}

static int on_lws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    struct wsconn *w = lws_get_opaque_user_data(wsi);
    (void)user;

    if (!w)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[128];
        snprintf(why, sizeof(why), "%.*s", in ? (int)len : 0, in ? (const char *)in : "");
        if (!in || !len)
            snprintf(why, sizeof(why), "%s", in ? (const char *)in : "connection failed");
        ended(w, wsi, why);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        w->ev.established(w->ud);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        w->ev.activity(w->ud);
        on_receive(w, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        w->ev.activity(w->ud);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return on_writable(w);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (w->close_sent)
            return 1; /* the answer to our close: done, no echo */
        w->ev.peer_closed(w->ud);
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        ended(w, wsi, "closed");
        return 0;
    default:
        return 0;
    }
}

int wsconn_open(struct wsconn **out, uv_loop_t *loop, struct lws_context *ctx,
                const struct wsconn_target *t, const char *module, unsigned id, size_t max_message,
                const struct wsconn_events *events, void *userdata)
{
    struct lws_client_connect_info info;
    struct wsconn *w = calloc(1, sizeof(*w));
    struct lws *wsi;

    *out = NULL;
    if (!w)
        return -ENOMEM;
    w->ev = *events;
    w->ud = userdata;
    w->module = module;
    w->id = id;
    w->max_message = max_message;
    w->loop = loop;
    *out = w;
    memset(&info, 0, sizeof(info));
    info.context = ctx;
    info.address = t->address;
    info.port = t->port;
    info.path = t->path;
    info.host = t->host;
    info.origin = t->host;
    info.ssl_connection = t->tls ? LCCSCF_USE_SSL : 0;
    info.local_protocol_name = protocols[0].name;
    info.opaque_user_data = w;
    info.retry_and_idle_policy = &idle_policy;
    /* A failure may already have been reported (ended()) inside the call. */
    wsi = lws_client_connect_via_info(&info);
    if (!w->ended)
        w->wsi = wsi;
    return wsi || w->ended ? 0 : -EIO;
}
