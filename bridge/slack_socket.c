/*
 * Slack Socket Mode client (see slack_socket.h; doc/slack.md, "Socket Mode").
 *
 * One mechanism keeps the link: reconcile() wants exactly one healthy connection (said hello,
 * not asked to go) and opens one when there is none, at most one attempt at a time, never
 * beyond MAX_SOCKETS sockets, and not before the back-off allows. Everything else only changes
 * the facts it looks at: a hello closes every other socket (so a refresh is make before
 * break), a disconnect marks its socket as retiring (it keeps answering until the new one is
 * up), a failure pushes the next attempt back.
 *
 * Ownership: a connection lives in a slot of s->conns from the moment its URL arrives until
 * libwebsockets is done with its socket (wsconn.h, the websocket itself); its events only mark
 * it dead and the sweep timer frees it, so nothing is freed under lws's feet. Answers are
 * computed synchronously from memory and go out in the ack, on the socket the envelope came in
 * on.
 */
#include "slack_socket.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "command.h"
#include "http.h"
#include "log.h"
#include "lwsctx.h"
#include "metrics.h"
#include "ratelimit.h"
#include "recent_ids.h"
#include "slack_msg.h"
#include "url.h"
#include "wsconn.h"

#define MAX_SOCKETS        2
#define OPEN_TIMEOUT_MS    15000L
#define HELLO_TIMEOUT_MS   10000u
#define PING_IDLE_MS       10000u /* send a ping after this long without a frame */
#define SILENT_MS          30000u /* then give the socket up */
#define CLOSE_WAIT_MS      1000u  /* Slack often never answers a close frame */
#define TICK_MIN_MS        50u    /* never sooner, even for a deadline already past */
#define BACKOFF_MIN_MS     1000u
#define BACKOFF_MAX_MS     60000u
#define DISABLED_FIRST_MS  (5u * 60u * 1000u)
#define DISABLED_MAX_MS    (60u * 60u * 1000u)
#define RETRY_AFTER_MAX_S  3600L
#define RECONNECT_GRACE_MS 60000u          /* readiness survives a reconnect this long */
#define STABLE_MS          60000u          /* a socket up this long clears the back-off */
#define MESSAGE_MAX        (1024u * 1024u) /* bigger messages are dropped (logged) */
#define DEDUP_SLOTS        1024u
#define DEDUP_TTL_MS       (60u * 60u * 1000u) /* Slack retries after ~0 s, 1 min and 5 min */

enum cstate {
    C_RESOLVING = 0, /* looking up the host */
    C_CONNECTING,    /* TCP/TLS/upgrade, or waiting for hello */
    C_OPEN,          /* said hello */
    C_CLOSING,       /* a close frame is on its way; dropped after CLOSE_WAIT_MS */
};

struct slack_socket;

/* A command whose answer comes later (SLACK_ANSWER_LATER): what its acknowledgement needs. */
struct later {
    struct later *next;
    uint64_t ticket;
    unsigned conn_id; /* the socket it came by */
    int accepts_response_payload;
    char envelope_id[SLACK_ENVELOPE_ID_MAX + 1];
    char *response_url; /* "" when none */
};

struct conn {
    struct slack_socket *s;
    struct wsconn *ws; /* from the connect on (live until lws is done with it) */
    unsigned id;
    enum cstate state;
    int retiring;    /* Slack asked it to go: answers until a new socket said hello */
    int want_close;  /* a close frame is asked for, not sent yet */
    int dead;        /* lws is done with it (or it never got a socket): the sweep frees it */
    int kill;        /* drop it without a close frame: the sweep does, outside lws callbacks */
    int abandoned;   /* closed while resolving */
    int established; /* the upgrade succeeded */
    int asked;       /* we closed or dropped it (an end we did not ask for is a failure) */
    const char *end_reason;
    uint64_t started_ms, hello_ms, last_rx_ms, last_ping_ms, close_ms;
    uv_getaddrinfo_t gai;
    char host[256], path[2048];
    int port, tls;
};

struct slack_socket {
    uv_loop_t *loop;
    const struct conf_chat_slack *conf;
    struct slack_socket_hooks hooks;
    struct lws_context *ctx; /* the process's websocket context (shared), once needed */
    int ctx_tls;             /* ctx can do wss:// */
    int closing_handles;     /* after slack_socket_free(): uv handles still closing */
    int pending_lookups;     /* uv_getaddrinfo() requests not yet called back */
    struct http *http;
    struct http_xfer *open_xfer;
    uv_timer_t tick, sweep;
    struct conn *conns[MAX_SOCKETS];
    unsigned next_id;
    unsigned failures;
    uint64_t next_attempt_ms;
    unsigned disables;   /* link_disabled in a row (its back-off step); 0 while enabled */
    uint64_t last_up_ms; /* when a socket last said hello, or was last known up */
    int fatal;           /* the token was refused: stop until reconfigured */
    int disabled;        /* link_disabled: Socket Mode is off for the app */
    int started, stopping, freed;
    void (*stopped_cb)(void *);
    void *stopped_ud;
    char last_error[256];
    struct recent_ids *answered; /* slash commands' envelope ids, DEDUP_SLOTS for DEDUP_TTL_MS */
    struct ratelimit limits;     /* per user and overall; a flood gets "slow down", not a backlog */
    struct later *later;         /* commands waiting for their answer, oldest first */
    uint64_t next_ticket;
};

static uint64_t now_ms(const struct slack_socket *s)
{
    return uv_now(s->loop);
}

static void reconcile(struct slack_socket *s);
static void rearm(struct slack_socket *s);
static void on_tick(uv_timer_t *t);
static void schedule_sweep(struct slack_socket *s);
static void free_conn(struct conn *c);
static int ensure_context(struct slack_socket *s, int tls);
static void release(struct slack_socket *s);

/* Records (and logs once, not on every retry) why the link is down. */
__attribute__((format(printf, 2, 3))) static void set_error(struct slack_socket *s, const char *fmt,
                                                            ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vchange(LOGL_WARN, "slack", s->last_error, sizeof(s->last_error), fmt, ap);
    va_end(ap);
}

static size_t n_conns(const struct slack_socket *s)
{
    size_t n = 0;
    for (size_t i = 0; i < MAX_SOCKETS; i++)
        n += s->conns[i] != NULL;
    return n;
}

static void update_gauges(const struct slack_socket *s)
{
    int open = 0, up = 0;
    for (size_t i = 0; i < MAX_SOCKETS; i++) {
        const struct conn *c = s->conns[i];
        if (!c || c->dead)
            continue;
        open += wsconn_live(c->ws);
        up |= c->state == C_OPEN;
    }
    metrics_slack_sockets(open, up);
}

/* Jittered exponential back-off: 1 s, 2 s, 4 s ... 60 s, each between 50% and 100%, >= 1 s. */
static const struct backoff open_backoff = {
    .first_ms = BACKOFF_MIN_MS,
    .cap_ms = BACKOFF_MAX_MS,
    .jitter_min_pct = 50,
    .jitter_max_pct = 100,
    .floor_ms = BACKOFF_MIN_MS,
    .retry_after_max_s = RETRY_AFTER_MAX_S,
};

/* link_disabled: 5 min, doubling to an hour; no jitter (a person has to act anyway). */
static const struct backoff disabled_backoff = {
    .first_ms = DISABLED_FIRST_MS,
    .cap_ms = DISABLED_MAX_MS,
    .jitter_min_pct = 100,
    .jitter_max_pct = 100,
};

/* An attempt failed: the next one waits longer, and at least retry_after_s (if >= 0). */
static void attempt_failed_after(struct slack_socket *s, long retry_after_s)
{
    s->failures++;
    uint64_t at = now_ms(s) + backoff_delay(&open_backoff, s->failures, retry_after_s);
    if (at > s->next_attempt_ms)
        s->next_attempt_ms = at;
}

static void attempt_failed(struct slack_socket *s)
{
    attempt_failed_after(s, -1);
}

/* ---- writing ---- */

/* Queues the text frame in b (wsconn_frame_start()); b is empty afterwards. */
static int queue_frame(struct conn *c, struct strbuf *b)
{
    if (c->state == C_CLOSING || c->dead || !c->ws) {
        strbuf_fini(b);
        return -EPIPE; /* nothing may follow our close frame */
    }
    return wsconn_send_frame(c->ws, b);
}

/* Asks the socket to go: a close frame (after what is queued), or at once when not up yet. */
static void request_close(struct conn *c, const char *why)
{
    if (c->dead || c->state == C_CLOSING || c->want_close)
        return;
    c->asked = 1;
    if (!c->end_reason)
        c->end_reason = why;
    if (c->state == C_RESOLVING) {
        c->abandoned = 1;
        return;
    }
    if (!c->established) {
        c->kill = 1;
        schedule_sweep(c->s);
        return;
    }
    c->want_close = 1;
    if (c->ws)
        wsconn_close(c->ws);
}

/* Drops the socket without a close frame (it is silent, or it did not answer ours). */
static void drop(struct conn *c, const char *why)
{
    c->asked = 1;
    if (!c->end_reason)
        c->end_reason = why;
    c->kill = 1;
    schedule_sweep(c->s);
}

/* ---- envelopes ---- */

/* {"envelope_id": id} or {"envelope_id": id, "payload": payload}, queued on c. */
static void ack(struct conn *c, const char *id, const char *payload)
{
    struct strbuf b = {0};

    wsconn_frame_start(&b);
    slack_msg_ack_put(&b, id, payload);
    if (queue_frame(c, &b) != 0)
        log_err("slack", "out of memory acknowledging an envelope");
}

static int listed(char *const *v, size_t n, const char *id)
{
    if (n == 0)
        return 1;
    for (size_t i = 0; id && i < n; i++) {
        if (strcmp(v[i], id) == 0)
            return 1;
    }
    return 0;
}

static void on_response_url_answer(void *userdata, const struct http_response *res)
{
    (void)userdata;
    if (res->result != HTTP_DONE || res->status != 200)
        log_warn("slack", "posting an answer to the command's response_url failed (%s)",
                 res->result != HTTP_DONE ? res->error : "HTTP error");
}

/* Slack said it cannot take the answer in the ack: send it to response_url (no secrets logged). */
static void post_response_url(struct slack_socket *s, const char *url, const char *payload)
{
    static const char *const headers[] = {"Content-Type: application/json", NULL};
    struct url u;
    int ok = url_parse(url, URL_HTTP, &u) == URL_OK && (u.tls || url_is_loopback(&u));

    url_fini(&u);
    if (!ok) {
        log_warn(
            "slack",
            "the command's response_url is neither https:// nor a loopback http:// URL; answer "
            "dropped");
        return;
    }
    struct http_request req = {.method = "POST",
                               .url = url,
                               .headers = headers,
                               .body = payload,
                               .body_len = strlen(payload),
                               .timeout_ms = 10000,
                               .max_body = 4096,
                               .truncate = 1};
    if (http_start(s->http, &req, on_response_url_answer, s, NULL) != 0)
        log_err("slack", "cannot post an answer to response_url");
}

/*
 * Acknowledges envelope id on c (NULL: its socket is gone) with the answer payload when Slack
 * takes one there, else bare, with payload posted to response_url ("" or payload NULL: none).
 */
static void deliver(struct slack_socket *s, struct conn *c, const char *id, int accepts_payload,
                    const char *response_url, const char *payload)
{
    if (c && accepts_payload && payload) {
        ack(c, id, payload);
        return;
    }
    if (c)
        ack(c, id, NULL);
    if (payload && *response_url)
        post_response_url(s, response_url, payload);
}

/* Keeps what the acknowledgement of m needs until slack_socket_answer() brings the answer. */
static void wait_for_answer(struct conn *c, const struct slack_msg *m, uint64_t ticket)
{
    struct slack_socket *s = c->s;
    struct later *l = calloc(1, sizeof(*l)), **tail = &s->later;

    if (!l || !(l->response_url = strdup(m->response_url))) {
        free(l);
        log_err("slack", "out of memory: envelope %s acknowledged without its answer",
                m->envelope_id);
        ack(c, m->envelope_id, NULL);
        return;
    }
    l->ticket = ticket;
    l->conn_id = c->id;
    l->accepts_response_payload = m->accepts_response_payload;
    snprintf(l->envelope_id, sizeof(l->envelope_id), "%s", m->envelope_id);
    while (*tail)
        tail = &(*tail)->next;
    *tail = l;
}

static struct conn *conn_by_id(struct slack_socket *s, unsigned id)
{
    for (size_t i = 0; i < MAX_SOCKETS; i++) {
        struct conn *c = s->conns[i];
        if (c && c->id == id && !c->dead && !c->kill && c->state != C_CLOSING)
            return c;
    }
    return NULL;
}

void slack_socket_answer(struct slack_socket *s, uint64_t ticket, const char *payload)
{
    struct later **pp = &s->later, *l;

    while (*pp && (*pp)->ticket != ticket)
        pp = &(*pp)->next;
    if (!(l = *pp))
        return;
    *pp = l->next;
    /* Its socket gone meanwhile: Slack redelivers the envelope on another one, and the
     * de-duplication acknowledges it there; the answer goes by response_url. */
    deliver(s, conn_by_id(s, l->conn_id), l->envelope_id, l->accepts_response_payload,
            l->response_url, payload);
    free(l->response_url);
    free(l);
}

static void later_free_all(struct slack_socket *s)
{
    while (s->later) {
        struct later *l = s->later;
        s->later = l->next;
        free(l->response_url);
        free(l);
    }
}

static void on_slash_command(struct conn *c, const struct slack_msg *m)
{
    struct slack_socket *s = c->s;
    const char *id = m->envelope_id;
    char *answer = NULL, line[128];
    enum ratelimit_verdict verdict;
    unsigned retry_s = 0;
    int r;

    if (strcmp(m->command, s->conf->command) != 0) {
        log_info("slack", "envelope %s: a command this bridge does not own; answered with help",
                 id);
        r = command_say(COMMAND_SLACK, "Sorry, this bridge answers only its own command.", &answer);
        metrics_slack_envelope("refused");
    } else if (!listed(s->conf->allowed_users, s->conf->n_allowed_users, m->user_id) ||
               !listed(s->conf->allowed_channels, s->conf->n_allowed_channels, m->channel_id)) {
        log_info("slack", "envelope %s: user %.32s in channel %.32s is not allowed", id, m->user_id,
                 m->channel_id);
        r = command_say(COMMAND_SLACK, "Sorry, you cannot use this command here.", &answer);
        metrics_slack_envelope("refused");
    } else if ((verdict = ratelimit_take(&s->limits, m->user_id, now_ms(s), &retry_s)) !=
               RATELIMIT_PASS) {
        /* Every envelope is acked (Slack retries an unacked one); the user hears "slow down"
         * once per stretch of refusals, and the rest get an empty ack: no work queued. */
        metrics_slack_envelope("limited");
        metrics_command_limited("slack");
        if (verdict == RATELIMIT_DROP) {
            log_debug("slack", "envelope %s: user %.32s still over the rate limit; acked only", id,
                      m->user_id);
            ack(c, id, NULL);
            return;
        }
        log_info("slack",
                 "envelope %s: user %.32s is over the command rate limit; told to slow down", id,
                 m->user_id);
        ratelimit_message(line, sizeof(line), retry_s);
        r = command_say(COMMAND_SLACK, line, &answer);
    } else {
        struct slack_command cmd = {.text = m->text,
                                    .len = strlen(m->text),
                                    .user_id = m->user_id,
                                    .channel_id = m->channel_id,
                                    .ticket = ++s->next_ticket};
        r = s->hooks.answer(s->hooks.userdata, &cmd, &answer);
        metrics_slack_envelope("answered");
        if (r == SLACK_ANSWER_LATER) {
            wait_for_answer(c, m, cmd.ticket);
            return;
        }
    }
    if (r != 0 || !answer) {
        log_err("slack", "out of memory answering envelope %s", id);
        ack(c, id, NULL);
        return;
    }
    deliver(s, c, id, m->accepts_response_payload, m->response_url, answer);
    free(answer);
}

static void on_envelope(struct conn *c, const struct slack_msg *m)
{
    struct slack_socket *s = c->s;
    const char *id = m->envelope_id;

    if (c->state == C_CLOSING) {
        /* Our close frame is out: no ack can follow it. Slack redelivers on another socket. */
        log_info("slack", "envelope %s arrived on closing socket %u; left for redelivery", id,
                 c->id);
        return;
    }
    if (recent_ids_has(s->answered, id, now_ms(s))) {
        /* Slack did not see our ack, or retries anyway: ack again, never answer twice. */
        log_info("slack", "envelope %s delivered again (retry_attempt %lld); acknowledged only", id,
                 m->retry_attempt);
        ack(c, id, NULL);
        metrics_slack_envelope("duplicate");
        return;
    }
    if (m->is_slash_command) {
        /* Only answers need remembering; other envelopes are just acked. Out of memory, a
         * retry may be answered twice, which is better than not at all. */
        if (recent_ids_add(s->answered, id, now_ms(s)) != 0)
            log_err("slack", "out of memory remembering envelope %s", id);
        on_slash_command(c, m);
        return;
    }
    log_debug("slack", "envelope %s of type %s acknowledged and ignored", id, m->type);
    ack(c, id, NULL);
    metrics_slack_envelope("ignored");
}

/* ---- control messages ---- */

static void on_hello(struct conn *c, long long n)
{
    struct slack_socket *s = c->s;
    int was_down = !s->last_up_ms || s->last_error[0];

    if (c->state != C_CONNECTING)
        return;
    c->state = C_OPEN;
    c->hello_ms = now_ms(s);
    s->last_up_ms = c->hello_ms; /* the back-off is cleared only once it proves stable (tick) */
    if (s->disabled) {
        s->disabled = 0;
        s->disables = 0;
        if (s->hooks.alert)
            s->hooks.alert(s->hooks.userdata, "slack_enabled",
                           "Slack Socket Mode works again: /youtrack commands are answered");
    }
    if (was_down)
        log_info("slack", "connected to Socket Mode (socket %u, %lld open for the app)", c->id, n);
    else
        log_debug("slack", "socket %u said hello (%lld open for the app)", c->id, n);
    s->last_error[0] = '\0';
    /* Make before break: the new socket is up, every other one goes now. */
    for (size_t i = 0; i < MAX_SOCKETS; i++) {
        struct conn *o = s->conns[i];
        if (o && o != c)
            request_close(o, o->retiring ? NULL : "other");
    }
    update_gauges(s);
}

static void on_disconnect(struct conn *c, const char *reason)
{
    struct slack_socket *s = c->s;

    metrics_slack_disconnect(reason);
    if (strcmp(reason, "link_disabled") == 0) {
        uint64_t wait_ms = backoff_delay(&disabled_backoff, ++s->disables, -1);
        s->next_attempt_ms = now_ms(s) + wait_ms;
        log_err("slack",
                "Slack disabled the Socket Mode link (link_disabled: Socket Mode was turned off "
                "for the app); trying again in %llu min",
                (unsigned long long)(wait_ms / 60000));
        if (!s->disabled && s->hooks.alert)
            s->hooks.alert(s->hooks.userdata, "slack_disabled",
                           "Slack turned Socket Mode off for the app (link_disabled): /youtrack "
                           "commands get no answer; the bridge retries every few minutes");
        s->disabled = 1;
        snprintf(s->last_error, sizeof(s->last_error), "Socket Mode is disabled (link_disabled)");
        for (size_t i = 0; i < MAX_SOCKETS; i++) {
            if (s->conns[i])
                request_close(s->conns[i], NULL);
        }
        return;
    }
    if (strcmp(reason, "warning") != 0 && strcmp(reason, "refresh_requested") != 0) {
        /* too_many_websockets, or a reason we do not know: keep only this socket, renew it. */
        log_warn("slack", "Slack asked to disconnect (%.40s); renewing the connection", reason);
        attempt_failed(s); /* a renewal that keeps failing this way backs off */
        for (size_t i = 0; i < MAX_SOCKETS; i++) {
            if (s->conns[i] && s->conns[i] != c)
                request_close(s->conns[i], NULL);
        }
    } else {
        log_info("slack", "Slack asked to disconnect (%s); opening a new connection first", reason);
    }
    c->retiring = 1;
}

static void on_message(struct conn *c, const char *text, size_t len)
{
    struct slack_msg m;
    int r = slack_msg_parse(text, len, &m);

    if (r == -ENOMEM) {
        log_err("slack", "out of memory reading a message; ignored");
        return;
    }
    if (r) {
        log_warn("slack",
                 "socket %u: a message that is not a JSON object or has a bad "
                 "envelope id; ignored",
                 c->id);
        return;
    }
    switch (m.kind) {
    case SLACK_MSG_HELLO:
        on_hello(c, m.num_connections);
        break;
    case SLACK_MSG_DISCONNECT:
        on_disconnect(c, m.reason);
        break;
    case SLACK_MSG_ENVELOPE:
        on_envelope(c, &m);
        break;
    case SLACK_MSG_OTHER:
        log_debug("slack", "socket %u: message of type %s ignored", c->id, m.type);
        break;
    }
    slack_msg_fini(&m);
    schedule_sweep(c->s); /* hello and disconnect change what reconcile() sees */
}

/* ---- the websocket's events (wsconn.h) ---- */

/* lws is done with the socket: the sweep frees it and reconcile() looks again. */
static void on_conn_ended(void *userdata, const char *why)
{
    struct conn *c = userdata;
    struct slack_socket *s = c->s;

    if (c->dead)
        return;
    c->dead = 1;
    if (c->state == C_OPEN && !c->end_reason)
        c->end_reason = "lost";
    if (c->state == C_OPEN && !c->retiring && !c->want_close && !s->stopping) {
        log_warn("slack", "socket %u lost (%s); reconnecting", c->id, why ? why : "closed");
        metrics_slack_disconnect("lost");
        s->last_up_ms = now_ms(s);
        attempt_failed(s);
    } else if (c->state == C_CONNECTING && !c->asked && !s->stopping) {
        /* Refused, reset, or closed by Slack before its hello. */
        set_error(s, "cannot connect to the Socket Mode URL (%s)", why ? why : "closed");
        attempt_failed(s);
    } else if (c->end_reason && strcmp(c->end_reason, "silent") == 0) {
        metrics_slack_disconnect("silent");
    }
    update_gauges(s);
    schedule_sweep(s);
}

static void on_conn_established(void *userdata)
{
    struct conn *c = userdata;

    c->established = 1;
    c->last_rx_ms = now_ms(c->s);
    log_debug("slack", "socket %u upgraded; waiting for hello", c->id);
    if (c->abandoned || c->s->stopping)
        request_close(c, NULL);
}

static void on_conn_activity(void *userdata)
{
    struct conn *c = userdata;
    c->last_rx_ms = now_ms(c->s);
}

static void on_conn_message(void *userdata, const char *text, size_t len)
{
    on_message(userdata, text, len);
}

static void on_conn_ping_sent(void *userdata)
{
    struct conn *c = userdata;
    c->last_ping_ms = now_ms(c->s);
}

static void on_conn_close_sent(void *userdata)
{
    struct conn *c = userdata;

    c->want_close = 0;
    c->state = C_CLOSING;
    c->close_ms = now_ms(c->s);
    schedule_sweep(c->s); /* a new deadline for rearm(): Slack often never answers */
}

static void on_conn_peer_closed(void *userdata)
{
    struct conn *c = userdata;

    log_debug("slack", "socket %u: Slack closed it", c->id);
    if (!c->end_reason)
        c->end_reason = c->retiring ? NULL : "closed";
}

static const struct wsconn_events conn_events = {
    .established = on_conn_established,
    .activity = on_conn_activity,
    .message = on_conn_message,
    .ping_sent = on_conn_ping_sent,
    .close_sent = on_conn_close_sent,
    .peer_closed = on_conn_peer_closed,
    .ended = on_conn_ended,
};

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct conn *c = req->data;
    struct slack_socket *s = c->s;
    char addr[64] = "";

    for (struct addrinfo *a = status == 0 ? res : NULL; a && !addr[0]; a = a->ai_next) {
        if (a->ai_family == AF_INET)
            uv_ip4_name((const struct sockaddr_in *)a->ai_addr, addr, sizeof(addr));
    }
    for (struct addrinfo *a = status == 0 ? res : NULL; a && !addr[0]; a = a->ai_next) {
        if (a->ai_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)a->ai_addr, addr, sizeof(addr));
    }
    uv_freeaddrinfo(res);
    s->pending_lookups--;
    if (s->freed) {
        free_conn(c);
        release(s);
        return;
    }
    if (c->abandoned || s->stopping) {
        c->dead = 1;
        schedule_sweep(s);
        return;
    }
    if (!addr[0]) {
        set_error(s, "cannot resolve the Socket Mode host (%s)",
                  status ? uv_strerror(status) : "no address");
        attempt_failed(s);
        c->dead = 1;
        schedule_sweep(s);
        return;
    }
    c->state = C_CONNECTING;
    c->started_ms = now_ms(s);
    /* A failure may already have been reported (and c marked dead) inside the call. */
    struct wsconn_target t = {
        .address = addr, .port = c->port, .host = c->host, .path = c->path, .tls = c->tls};
    if (wsconn_open(&c->ws, s->loop, s->ctx, &t, "slack", c->id, MESSAGE_MAX, &conn_events, c) !=
            0 &&
        !c->dead) {
        set_error(s, "cannot connect to the Socket Mode URL (%s)", "connect failed");
        attempt_failed(s);
        c->dead = 1;
    }
    schedule_sweep(s); /* the hello deadline, or the failure */
    update_gauges(s);
}

/* Splits a ws(s):// URL into c; 0, or -1 when it is not one we accept (reason in why). */
static int parse_ws_url(struct conn *c, const char *url, int allow_insecure, const char **why)
{
    struct url u;
    enum url_error e = url_parse(url, URL_WS, &u);
    size_t hl = u.host ? strlen(u.host) : 0;
    int r = -1;

    if (e == URL_ERR_SCHEME) {
        *why = "not a ws:// or wss:// URL";
    } else if (e != URL_OK) {
        *why = url_strerror(e);
    } else if (u.userinfo) {
        *why = "credentials in the URL";
    } else if (!u.tls && !allow_insecure && !url_is_loopback(&u)) {
        *why = "plain ws:// to a non-loopback host";
    } else if (hl >= sizeof(c->host)) {
        *why = "an overlong host name";
    } else if ((size_t)snprintf(c->path, sizeof(c->path), "%s%s%s", u.path, u.query ? "?" : "",
                                u.query ? u.query : "") >= sizeof(c->path)) {
        *why = "an overlong path";
    } else {
        /* getaddrinfo() and lws take an IPv6 address without its brackets. */
        if (u.host[0] == '[')
            snprintf(c->host, sizeof(c->host), "%.*s", (int)(hl - 2), u.host + 1);
        else
            snprintf(c->host, sizeof(c->host), "%s", u.host);
        c->port = u.port;
        c->tls = u.tls;
        r = 0;
    }
    url_fini(&u);
    return r;
}

/* apps.connections.open refused the app token: stop until reconfigured, and say so once. */
static void token_refused(struct slack_socket *s, const char *error)
{
    char text[256];

    s->fatal = 1;
    snprintf(s->last_error, sizeof(s->last_error), "Slack refused the app token (%s)", error);
    log_err("slack",
            "Slack refused the app token (%s); /youtrack commands stay unanswered until "
            "chat.slack.app_token is fixed and the configuration reloaded",
            error);
    snprintf(text, sizeof(text),
             "Slack refused the bridge's app token (%s): /youtrack commands get no answer until "
             "chat.slack.app_token is fixed",
             error);
    if (s->hooks.alert)
        s->hooks.alert(s->hooks.userdata, "slack_auth", text);
}

/*
 * Reads an apps.connections.open answer into *o (doc/slack.md, "apps.connections.open").
 * Returns 0 when it holds a URL to connect to; otherwise -1, with the failure handled: counted,
 * recorded, and the next attempt pushed back (or the client stopped, for a refused token).
 */
static int open_answer_url(struct slack_socket *s, const struct http_response *res,
                           struct slack_open *o)
{
    if (res->result != HTTP_DONE) {
        metrics_slack_open(0);
        set_error(s, "apps.connections.open failed: %s", res->error);
        attempt_failed(s);
        return -1;
    }
    if (res->status == 429) {
        metrics_slack_open(0);
        set_error(s, "apps.connections.open is rate limited (%s)", "HTTP 429");
        /* Without a usable Retry-After, 30 s: a 429 says we are too fast, whatever it omits. */
        attempt_failed_after(s, res->retry_after > 0 ? res->retry_after : 30);
        return -1;
    }
    if (res->status != 200 || slack_msg_parse_open(res->body, res->body_len, o) != 0) {
        char st[32];
        snprintf(st, sizeof(st), "HTTP %ld", res->status);
        metrics_slack_open(0);
        set_error(s, "apps.connections.open gave an unexpected answer (%s)", st);
        attempt_failed(s);
        return -1;
    }
    switch (o->kind) {
    case SLACK_OPEN_URL:
        return 0;
    case SLACK_OPEN_REFUSED:
        metrics_slack_open(0);
        token_refused(s, o->error);
        return -1;
    case SLACK_OPEN_ERROR:
        metrics_slack_open(0);
        set_error(s, "apps.connections.open failed (%.60s)",
                  *o->error ? o->error : "no error given");
        attempt_failed(s);
        return -1;
    case SLACK_OPEN_NO_URL:
        break;
    }
    metrics_slack_open(0);
    set_error(s, "apps.connections.open gave no URL");
    attempt_failed(s);
    return -1;
}

/*
 * Starts a connection to url in a free slot: its parts, the websocket context, then the host
 * lookup (on_resolved() goes on from there). Nothing when no slot is free or we are stopping.
 */
static void open_conn(struct slack_socket *s, const char *url)
{
    const char *why = NULL;
    struct conn *c;
    size_t slot;

    for (slot = 0; slot < MAX_SOCKETS && s->conns[slot]; slot++)
        ;
    if (slot == MAX_SOCKETS || s->stopping)
        return;
    c = calloc(1, sizeof(*c));
    if (!c) {
        log_err("slack", "out of memory opening a connection");
        attempt_failed(s);
        return;
    }
    c->s = s;
    c->id = ++s->next_id;
    c->state = C_RESOLVING;
    if (parse_ws_url(c, url, s->conf->allow_insecure, &why) != 0) {
        metrics_slack_open(0);
        set_error(s, "apps.connections.open gave an unusable URL (%s)", why);
        attempt_failed(s);
        goto fail;
    }
    if (ensure_context(s, c->tls) != 0) {
        metrics_slack_open(0);
        set_error(s, "cannot set up the websocket client%s",
                  c->tls && s->ctx ? " for wss:// after ws:// URLs" : "");
        attempt_failed(s);
        goto fail;
    }
    metrics_slack_open(1);
    c->gai.data = c;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    if (uv_getaddrinfo(s->loop, &c->gai, on_resolved, c->host, NULL, &hints) != 0) {
        set_error(s, "cannot resolve the Socket Mode host (%s)", "lookup failed to start");
        attempt_failed(s);
        goto fail;
    }
    s->pending_lookups++;
    s->conns[slot] = c;
    log_debug("slack", "socket %u: connecting to %s:%d", c->id, c->host, c->port);
    return;
fail:
    free(c);
}

/* apps.connections.open answered. */
static void on_open_answer(void *userdata, const struct http_response *res)
{
    struct slack_socket *s = userdata;
    struct slack_open o = {0};

    s->open_xfer = NULL;
    if (open_answer_url(s, res, &o) == 0)
        open_conn(s, o.url);
    slack_msg_open_fini(&o);
    update_gauges(s);
    schedule_sweep(s);
}

static void start_open(struct slack_socket *s)
{
    char *url = url_build(s->conf->api_url, "/apps.connections.open"), *auth = NULL;
    const char *headers[3];

    if (!url || asprintf(&auth, "Authorization: Bearer %s", s->conf->app_token) < 0) {
        free(url);
        attempt_failed(s);
        return;
    }
    headers[0] = auth;
    headers[1] = "Content-Type: application/x-www-form-urlencoded";
    headers[2] = NULL;
    struct http_request req = {.method = "POST",
                               .url = url,
                               .headers = headers,
                               .body = "",
                               .body_len = 0,
                               .timeout_ms = OPEN_TIMEOUT_MS,
                               .max_body = 64 * 1024};
    if (http_start(s->http, &req, on_open_answer, s, &s->open_xfer) != 0) {
        log_err("slack", "cannot start apps.connections.open");
        attempt_failed(s);
    }
    memset(auth, 0, strlen(auth));
    free(auth);
    free(url);
}

/* ---- the reconciler and its timers ---- */

/* A socket still live (only when the client is freed) is dropped without further events. */
static void free_conn(struct conn *c)
{
    wsconn_free(c->ws);
    free(c);
}

static void sweep(struct slack_socket *s)
{
    for (size_t i = 0; i < MAX_SOCKETS; i++) {
        struct conn *c = s->conns[i];
        if (c && c->kill && wsconn_live(c->ws) && !c->dead) {
            /* Here, not in an event: the kill is synchronous, and its ended() marks c dead. */
            c->kill = 0;
            wsconn_kill(c->ws);
        }
        if (c && c->dead) {
            s->conns[i] = NULL;
            free_conn(c);
        }
    }
    update_gauges(s);
    if (s->stopping) {
        if (n_conns(s) == 0 && s->stopped_cb) {
            void (*cb)(void *) = s->stopped_cb;
            s->stopped_cb = NULL;
            uv_timer_stop(&s->tick);
            cb(s->stopped_ud);
            return;
        }
    } else {
        reconcile(s);
    }
    rearm(s);
}

/*
 * Sets the tick for the nearest deadline (hello, ping, silence, close answer, next attempt):
 * between them the client does not wake up at all.
 */
static void rearm(struct slack_socket *s)
{
    uint64_t now = now_ms(s), next = UINT64_MAX;
    int healthy = 0;

    for (size_t i = 0; i < MAX_SOCKETS; i++) {
        const struct conn *c = s->conns[i];
        uint64_t due = UINT64_MAX;
        if (!c || c->dead)
            continue;
        switch (c->state) {
        case C_RESOLVING:
            healthy = 1;
            break;
        case C_CONNECTING:
            healthy = 1;
            due = c->started_ms + HELLO_TIMEOUT_MS;
            break;
        case C_OPEN: {
            uint64_t last = c->last_ping_ms > c->last_rx_ms ? c->last_ping_ms : c->last_rx_ms;
            due = c->last_rx_ms + SILENT_MS;
            if (last + PING_IDLE_MS < due)
                due = last + PING_IDLE_MS;
            healthy |= !c->retiring && !c->want_close;
            break;
        }
        case C_CLOSING:
            due = c->close_ms + CLOSE_WAIT_MS;
            break;
        }
        if (due < next)
            next = due;
    }
    if (!healthy && s->started && !s->stopping && !s->fatal && !s->open_xfer &&
        s->next_attempt_ms < next)
        next = s->next_attempt_ms;
    if (next == UINT64_MAX) {
        uv_timer_stop(&s->tick);
        return;
    }
    uv_timer_start(&s->tick, on_tick, next > now + TICK_MIN_MS ? next - now : TICK_MIN_MS, 0);
}

static void reconcile(struct slack_socket *s)
{
    uint64_t now = now_ms(s);

    if (!s->started || s->stopping || s->fatal || s->open_xfer)
        return;
    for (size_t i = 0; i < MAX_SOCKETS; i++) {
        const struct conn *c = s->conns[i];
        if (c && !c->dead &&
            (c->state == C_RESOLVING || c->state == C_CONNECTING ||
             (c->state == C_OPEN && !c->retiring && !c->want_close)))
            return; /* healthy, or on its way */
    }
    if (n_conns(s) >= MAX_SOCKETS || now < s->next_attempt_ms)
        return; /* tick() comes back */
    start_open(s);
}

static void on_sweep(uv_timer_t *t)
{
    sweep(t->data);
}

static void schedule_sweep(struct slack_socket *s)
{
    if (!s->freed)
        uv_timer_start(&s->sweep, on_sweep, 0, 0);
}

/* Liveness and time limits, at the nearest deadline (rearm()). */
static void on_tick(uv_timer_t *t)
{
    struct slack_socket *s = t->data;
    uint64_t now = now_ms(s);

    for (size_t i = 0; i < MAX_SOCKETS; i++) {
        struct conn *c = s->conns[i];
        if (!c || c->dead || !wsconn_live(c->ws))
            continue;
        switch (c->state) {
        case C_RESOLVING:
            break;
        case C_CONNECTING:
            if (now - c->started_ms >= HELLO_TIMEOUT_MS && !c->kill) {
                set_error(s, "no hello from Slack within %s; reconnecting", "10 s");
                drop(c, "silent");
                attempt_failed(s);
            }
            break;
        case C_OPEN:
            if (!c->retiring && now - c->hello_ms >= STABLE_MS)
                s->failures = 0; /* up long enough: the next trouble starts over at 1 s */
            if (now - c->last_rx_ms >= SILENT_MS && !c->kill) {
                log_warn("slack", "socket %u silent for %u s; reconnecting", c->id,
                         SILENT_MS / 1000);
                c->retiring = 1;
                drop(c, "silent");
            } else if (now - c->last_rx_ms >= PING_IDLE_MS &&
                       now - c->last_ping_ms >= PING_IDLE_MS) {
                wsconn_ping(c->ws);
            }
            break;
        case C_CLOSING:
            if (now - c->close_ms >= CLOSE_WAIT_MS && !c->kill)
                drop(c, NULL);
            break;
        }
    }
    sweep(s);
}

/* ---- life cycle ---- */

static int instances; /* clients not yet freed */
static int exiting;   /* slack_socket_cleanup() was called: retire with the last client */

/* The process's websocket client context (lwsctx.h), shared by every client. */
static int ensure_context(struct slack_socket *s, int tls)
{
    if (s->ctx)
        return tls && !s->ctx_tls ? -1 : 0;
    s->ctx = wsconn_context(s->loop, tls, &s->ctx_tls);
    return s->ctx ? 0 : -1;
}

void slack_socket_cleanup(void)
{
    exiting = 1;
    if (instances == 0)
        lwsctx_client_retire(); /* else the last slack_socket_free() does */
}

int slack_socket_new(struct slack_socket **out, uv_loop_t *loop, const struct conf_chat_slack *conf,
                     const struct slack_socket_hooks *hooks, char *err, size_t errlen)
{
    struct slack_socket *s = calloc(1, sizeof(*s));

    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->conf = conf;
    s->hooks = *hooks;
    ratelimit_init(&s->limits, s->conf->rate.per_user, s->conf->rate.per_second);
    if (recent_ids_new(&s->answered, DEDUP_SLOTS, DEDUP_TTL_MS) != 0) {
        free(s);
        return -ENOMEM;
    }
    if (http_new(&s->http, loop) != 0) {
        snprintf(err, errlen, "cannot start an HTTP client for Slack");
        recent_ids_free(s->answered);
        free(s);
        return -EIO;
    }
    uv_timer_init(loop, &s->tick);
    uv_timer_init(loop, &s->sweep);
    s->tick.data = s->sweep.data = s;
    instances++;
    metrics_slack_sockets(0, 0);
    *out = s;
    return 0;
}

void slack_socket_start(struct slack_socket *s)
{
    s->started = 1;
    log_info("slack", "answering %s over Socket Mode", s->conf->command);
    sweep(s);
}

void slack_socket_stop(struct slack_socket *s, void (*cb)(void *userdata), void *userdata)
{
    s->stopping = 1;
    s->stopped_cb = cb;
    s->stopped_ud = userdata;
    if (s->open_xfer) {
        http_cancel(s->open_xfer);
        s->open_xfer = NULL;
    }
    for (size_t i = 0; i < MAX_SOCKETS; i++) {
        if (s->conns[i])
            request_close(s->conns[i], NULL);
    }
    schedule_sweep(s);
}

static void on_handle_closed(uv_handle_t *h);

void slack_socket_free(struct slack_socket *s)
{
    if (!s)
        return;
    s->freed = 1;
    if (s->open_xfer)
        http_cancel(s->open_xfer);
    http_free(s->http);
    s->http = NULL;
    for (size_t i = 0; i < MAX_SOCKETS; i++) {
        struct conn *c = s->conns[i];
        if (!c)
            continue;
        /* The context outlives us: a socket still open goes in free_conn(), its callbacks
         * seeing no owner any more. Normally slack_socket_stop() has closed them all. */
        if (c->state == C_RESOLVING && !c->dead) {
            /* on_resolved() frees it (uv_cancel() may come too late). */
            uv_cancel((uv_req_t *)&c->gai);
            continue;
        }
        free_conn(c);
    }
    recent_ids_free(s->answered);
    later_free_all(s);
    s->closing_handles = 2;
    uv_close((uv_handle_t *)&s->tick, on_handle_closed);
    uv_close((uv_handle_t *)&s->sweep, on_handle_closed);
    if (--instances == 0 && exiting)
        lwsctx_client_retire(); /* its handles would keep the loop running */
}

/* After slack_socket_free(): the memory goes once nothing of the loop refers to it. */
static void release(struct slack_socket *s)
{
    if (s->freed && s->closing_handles == 0 && s->pending_lookups == 0)
        free(s);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct slack_socket *s = h->data;
    s->closing_handles--;
    release(s);
}

int slack_socket_ready(const struct slack_socket *s, char *why, size_t whylen)
{
    uint64_t now = now_ms(s);

    for (size_t i = 0; i < MAX_SOCKETS; i++) {
        const struct conn *c = s->conns[i];
        if (c && !c->dead && c->state == C_OPEN) {
            snprintf(why, whylen, "connected");
            return 1;
        }
    }
    if (!s->fatal && !s->disabled && s->last_up_ms && now - s->last_up_ms < RECONNECT_GRACE_MS) {
        snprintf(why, whylen, "reconnecting");
        return 1;
    }
    snprintf(why, whylen, "not connected%s%s", s->last_error[0] ? ": " : "", s->last_error);
    return 0;
}
