/*
 * Slack Socket Mode client (see slack_socket.h; ../shared/reference/slack.md §6-13, 15).
 *
 * One mechanism keeps the link: reconcile() wants exactly one healthy connection (said hello,
 * not asked to go) and opens one when there is none, at most one attempt at a time, never
 * beyond MAX_SOCKETS sockets, and not before the back-off allows. Everything else only changes
 * the facts it looks at: a hello closes every other socket (so a refresh is make before
 * break), a disconnect marks its socket as retiring (it keeps answering until the new one is
 * up), a failure pushes the next attempt back.
 *
 * Ownership: a connection lives in a slot of s->conns from the moment its URL arrives until
 * libwebsockets has destroyed its wsi; callbacks only mark it dead and the sweep timer frees it,
 * so nothing is freed under lws's feet. Answers are computed synchronously from memory and go
 * out in the ack, on the socket the envelope came in on.
 */
#include "slack_socket.h"

#include <errno.h>
#include <stdarg.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "command.h"
#include "http.h"
#include "log.h"
#include "lwsctx.h"
#include "metrics.h"
#include "ratelimit.h"
#include "url.h"
#include "utf8.h"

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
#define CA_BUNDLE          "/etc/ssl/certs/ca-certificates.crt"

enum cstate {
    C_RESOLVING = 0, /* looking up the host */
    C_CONNECTING,    /* TCP/TLS/upgrade, or waiting for hello */
    C_OPEN,          /* said hello */
    C_CLOSING,       /* a close frame is on its way; dropped after CLOSE_WAIT_MS */
};

struct frame {
    struct frame *next;
    size_t len;
    unsigned char data[]; /* LWS_PRE bytes, then the text */
};

struct slack_socket;

struct conn {
    struct slack_socket *s;
    struct lws *wsi; /* NULL before the connect and after lws destroyed it */
    unsigned id;
    enum cstate state;
    int retiring;   /* Slack asked it to go: answers until a new socket said hello */
    int want_close; /* send a close frame when writable */
    int want_ping;
    int dead;        /* lws is done with it (or it never got a wsi): the sweep frees it */
    int kill;        /* drop it without a close frame: the sweep does, outside lws callbacks */
    int abandoned;   /* closed while resolving */
    int established; /* the upgrade succeeded */
    int asked;       /* we closed or dropped it (an end we did not ask for is a failure) */
    const char *end_reason;
    uint64_t started_ms, hello_ms, last_rx_ms, last_ping_ms, close_ms;
    char *rx;
    size_t rx_len, rx_cap;
    int rx_skip;       /* the message being received is binary or too big */
    int rx_in_message; /* pieces of a message have arrived, its end has not */
    struct frame *txh, *txt;
    uv_getaddrinfo_t gai;
    char host[256], path[2048];
    int port, tls;
};

struct dedup {
    char *id;
    uint64_t at_ms;
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
    uint64_t disabled_ms; /* current link_disabled back-off; 0 while enabled */
    uint64_t last_up_ms;  /* when a socket last said hello, or was last known up */
    int fatal;            /* the token was refused: stop until reconfigured */
    int disabled;         /* link_disabled: Socket Mode is off for the app */
    int started, stopping, freed;
    void (*stopped_cb)(void *);
    void *stopped_ud;
    char last_error[256];
    struct dedup dedup[DEDUP_SLOTS];
    unsigned dedup_next;
    struct ratelimit limits; /* per user and overall; a flood gets "slow down", not a backlog */
};

static const lws_retry_bo_t idle_policy = {
    /* Liveness is ours (tick()); keep lws's own validity checks out of the way. */
    .secs_since_valid_ping = 65535,
    .secs_since_valid_hangup = 65535,
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
        open += c->wsi != NULL;
        up |= c->state == C_OPEN;
    }
    metrics_slack_sockets(open, up);
}

/* Jittered exponential back-off: 1 s, 2 s, 4 s ... 60 s, each between 50% and 100%. */
static uint64_t backoff_ms(unsigned failures)
{
    uint64_t ms = BACKOFF_MIN_MS;
    for (unsigned i = 1; i < failures && ms < BACKOFF_MAX_MS; i++)
        ms *= 2;
    if (ms > BACKOFF_MAX_MS)
        ms = BACKOFF_MAX_MS;
    ms = ms / 2 + (uint64_t)rand() % (ms / 2 + 1);
    return ms < BACKOFF_MIN_MS ? BACKOFF_MIN_MS : ms;
}

/* An attempt failed: the next one waits longer. */
static void attempt_failed(struct slack_socket *s)
{
    s->failures++;
    uint64_t at = now_ms(s) + backoff_ms(s->failures);
    if (at > s->next_attempt_ms)
        s->next_attempt_ms = at;
}

/* ---- writing ---- */

static int queue_text(struct conn *c, const char *text, size_t len)
{
    if (c->state == C_CLOSING || c->dead)
        return -EPIPE; /* nothing may follow our close frame */
    struct frame *f = malloc(sizeof(*f) + LWS_PRE + len);
    if (!f)
        return -ENOMEM;
    f->next = NULL;
    f->len = len;
    memcpy(f->data + LWS_PRE, text, len);
    if (c->txt)
        c->txt->next = f;
    else
        c->txh = f;
    c->txt = f;
    if (c->wsi)
        lws_callback_on_writable(c->wsi);
    return 0;
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
    if (c->wsi)
        lws_callback_on_writable(c->wsi);
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

static int on_writable(struct conn *c)
{
    struct frame *f = c->txh;

    if (f) {
        if (lws_write(c->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT) < (int)f->len)
            return -1;
        c->txh = f->next;
        if (!c->txh)
            c->txt = NULL;
        free(f);
        if (c->txh || c->want_ping || c->want_close)
            lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (c->want_ping) {
        unsigned char buf[LWS_PRE + 32];
        int n = snprintf((char *)buf + LWS_PRE, sizeof(buf) - LWS_PRE, "ytbridge %llu",
                         (unsigned long long)now_ms(c->s));
        c->want_ping = 0;
        c->last_ping_ms = now_ms(c->s);
        if (lws_write(c->wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_PING) < n)
            return -1;
        if (c->want_close)
            lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (c->want_close) {
        /*
         * The close frame (1000), written here: lws 4.1 on libuv kills the connection at once
         * when a callback returns -1 after lws_close_reason(), without sending it. Opcode 4 is
         * lws's close (LWS_WRITE_CLOSE, not exported). Slack's answering close ends the socket
         * (WS_PEER_INITIATED_CLOSE below); without one, tick() drops it after CLOSE_WAIT_MS.
         */
        unsigned char buf[LWS_PRE + 2];
        buf[LWS_PRE] = (unsigned char)(LWS_CLOSE_STATUS_NORMAL >> 8);
        buf[LWS_PRE + 1] = (unsigned char)(LWS_CLOSE_STATUS_NORMAL & 0xff);
        c->want_close = 0;
        c->state = C_CLOSING;
        c->close_ms = now_ms(c->s);
        schedule_sweep(c->s); /* a new deadline for rearm() */
        return lws_write(c->wsi, buf + LWS_PRE, 2, (enum lws_write_protocol)4) < 2 ? -1 : 0;
    }
    return 0;
}

/* ---- parsing (pure) ---- */

static const char *jstr(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

/* Copies v into buf, cut to fit (on a UTF-8 boundary). */
static void copy_cut(char *buf, size_t size, const char *v)
{
    size_t n = utf8_cut(v, strlen(v), size - 1);
    memcpy(buf, v, n);
    buf[n] = '\0';
}

static int envelope_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > SLACK_ENVELOPE_ID_MAX)
        return 0;
    for (; *id; id++) {
        if ((unsigned char)*id <= 0x20 || (unsigned char)*id >= 0x7f || *id == '"' || *id == '\\')
            return 0;
    }
    return 1;
}

int slack_msg_parse(const char *buf, size_t len, struct slack_msg *out)
{
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    const json_t *id, *payload;
    int r = 0;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(root)) {
        json_decref(root);
        return -EINVAL;
    }
    copy_cut(out->type, sizeof(out->type), jstr(root, "type"));
    id = json_object_get(root, "envelope_id");
    if (strcmp(out->type, "hello") == 0) {
        out->kind = SLACK_MSG_HELLO;
        out->num_connections = json_integer_value(json_object_get(root, "num_connections"));
    } else if (strcmp(out->type, "disconnect") == 0) {
        out->kind = SLACK_MSG_DISCONNECT;
        copy_cut(out->reason, sizeof(out->reason), jstr(root, "reason"));
    } else if (json_is_string(id)) {
        if (!envelope_id_ok(json_string_value(id))) {
            r = -EINVAL;
            goto out;
        }
        out->kind = SLACK_MSG_ENVELOPE;
        snprintf(out->envelope_id, sizeof(out->envelope_id), "%s", json_string_value(id));
        out->accepts_response_payload =
            json_is_true(json_object_get(root, "accepts_response_payload"));
        out->retry_attempt = json_integer_value(json_object_get(root, "retry_attempt"));
        payload = json_object_get(root, "payload");
        if (strcmp(out->type, "slash_commands") == 0 && json_is_object(payload)) {
            out->is_slash_command = 1;
            out->command = strdup(jstr(payload, "command"));
            out->text = strdup(jstr(payload, "text"));
            out->user_id = strdup(jstr(payload, "user_id"));
            out->channel_id = strdup(jstr(payload, "channel_id"));
            out->response_url = strdup(jstr(payload, "response_url"));
            if (!out->command || !out->text || !out->user_id || !out->channel_id ||
                !out->response_url)
                r = -ENOMEM;
        }
    }
out:
    json_decref(root);
    if (r)
        slack_msg_fini(out);
    return r;
}

void slack_msg_fini(struct slack_msg *m)
{
    free(m->command);
    free(m->text);
    free(m->user_id);
    free(m->channel_id);
    free(m->response_url);
    m->command = m->text = m->user_id = m->channel_id = m->response_url = NULL;
    m->is_slash_command = 0;
}

/* ---- envelopes ---- */

static struct dedup *dedup_find(struct slack_socket *s, const char *id)
{
    uint64_t now = now_ms(s);
    for (size_t i = 0; i < DEDUP_SLOTS; i++) {
        struct dedup *d = &s->dedup[i];
        if (d->id && now - d->at_ms < DEDUP_TTL_MS && strcmp(d->id, id) == 0)
            return d;
    }
    return NULL;
}

static void dedup_add(struct slack_socket *s, const char *id)
{
    struct dedup *d = &s->dedup[s->dedup_next++ % DEDUP_SLOTS];
    free(d->id);
    d->id = strdup(id);
    d->at_ms = now_ms(s);
}

/* {"envelope_id": id} or {"envelope_id": id, "payload": payload}, queued on c. */
static void ack(struct conn *c, const char *id, const char *payload)
{
    json_t *j = json_string(id);
    char *esc = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    char *text = NULL;
    int n;

    json_decref(j);
    if (!esc) {
        log_err("slack", "out of memory acknowledging an envelope");
        return;
    }
    if (payload)
        n = asprintf(&text, "{\"envelope_id\":%s,\"payload\":%s}", esc, payload);
    else
        n = asprintf(&text, "{\"envelope_id\":%s}", esc);
    free(esc);
    if (n < 0 || queue_text(c, text, (size_t)n) != 0)
        log_err("slack", "out of memory acknowledging an envelope");
    free(text);
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
    int https = strncmp(url, "https://", 8) == 0;
    int loopback = strncmp(url, "http://", 7) == 0 && url_host_is_loopback(url);

    if (!https && !loopback) {
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
        r = s->hooks.answer(s->hooks.userdata, m->text, strlen(m->text), &answer);
        metrics_slack_envelope("answered");
    }
    if (r != 0 || !answer) {
        log_err("slack", "out of memory answering envelope %s", id);
        ack(c, id, NULL);
        return;
    }
    if (m->accepts_response_payload) {
        ack(c, id, answer);
    } else {
        ack(c, id, NULL);
        if (*m->response_url)
            post_response_url(s, m->response_url, answer);
    }
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
    if (dedup_find(s, id)) {
        /* Slack did not see our ack, or retries anyway: ack again, never answer twice. */
        log_info("slack", "envelope %s delivered again (retry_attempt %lld); acknowledged only", id,
                 m->retry_attempt);
        ack(c, id, NULL);
        metrics_slack_envelope("duplicate");
        return;
    }
    if (m->is_slash_command) {
        dedup_add(s, id); /* only answers need remembering; other envelopes are just acked */
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
        s->disabled_ms = 0;
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
        s->disabled_ms = s->disabled_ms ? s->disabled_ms * 2 : DISABLED_FIRST_MS;
        if (s->disabled_ms > DISABLED_MAX_MS)
            s->disabled_ms = DISABLED_MAX_MS;
        s->next_attempt_ms = now_ms(s) + s->disabled_ms;
        log_err("slack",
                "Slack disabled the Socket Mode link (link_disabled: Socket Mode was turned off "
                "for the app); trying again in %llu min",
                (unsigned long long)(s->disabled_ms / 60000));
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

/* A frame (or part of one) arrived: reassemble, then handle complete text messages. */
static void on_receive(struct conn *c, const void *in, size_t len)
{
    struct lws *wsi = c->wsi;

    if (!c->rx_in_message) {
        /* The first piece of a message (lws hands a frame over in pieces of up to 4 KiB). */
        c->rx_in_message = 1;
        c->rx_skip = lws_frame_is_binary(wsi);
        if (c->rx_skip)
            log_warn("slack", "socket %u: a binary message; ignored (Slack sends text)", c->id);
    }
    if (!c->rx_skip) {
        if (c->rx_len + len > MESSAGE_MAX) {
            log_warn("slack", "socket %u: a message over %u bytes; ignored", c->id, MESSAGE_MAX);
            c->rx_skip = 1;
            c->rx_len = 0;
        } else {
            if (c->rx_len + len > c->rx_cap) {
                size_t cap = c->rx_cap ? c->rx_cap : 4096;
                while (cap < c->rx_len + len)
                    cap *= 2;
                char *p = realloc(c->rx, cap);
                if (!p) {
                    log_err("slack", "out of memory receiving a message; ignored");
                    c->rx_skip = 1;
                    c->rx_len = 0;
                } else {
                    c->rx = p;
                    c->rx_cap = cap;
                }
            }
            if (!c->rx_skip) {
                memcpy(c->rx + c->rx_len, in, len);
                c->rx_len += len;
            }
        }
    }
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) != 0)
        return;
    if (!c->rx_skip)
        on_message(c, c->rx, c->rx_len);
    c->rx_len = 0;
    c->rx_skip = 0;
    c->rx_in_message = 0;
    if (c->rx_cap > 64 * 1024) { /* do not keep a big buffer for small messages */
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
}

/* ---- lws ---- */

/* lws is done with the socket: the sweep frees it and reconcile() looks again. */
static void conn_ended(struct conn *c, struct lws *wsi, const char *why)
{
    struct slack_socket *s = c->s;

    lws_set_opaque_user_data(wsi, NULL);
    if (c->dead)
        return;
    c->dead = 1;
    c->wsi = NULL;
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

static int on_lws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    struct conn *c = lws_get_opaque_user_data(wsi);
    (void)user;

    if (!c)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[128];
        snprintf(why, sizeof(why), "%.*s", in ? (int)len : 0, in ? (const char *)in : "");
        if (!in || !len)
            snprintf(why, sizeof(why), "%s", in ? (const char *)in : "connection failed");
        conn_ended(c, wsi, why);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c->established = 1;
        c->last_rx_ms = now_ms(c->s);
        log_debug("slack", "socket %u upgraded; waiting for hello", c->id);
        if (c->abandoned || c->s->stopping)
            request_close(c, NULL);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        c->last_rx_ms = now_ms(c->s);
        on_receive(c, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        c->last_rx_ms = now_ms(c->s);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return on_writable(c);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c->state == C_CLOSING)
            return 1; /* the answer to our close: done, no echo */
        log_debug("slack", "socket %u: Slack closed it", c->id);
        if (!c->end_reason)
            c->end_reason = c->retiring ? NULL : "closed";
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        conn_ended(c, wsi, "closed");
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"slack", on_lws, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct conn *c = req->data;
    struct slack_socket *s = c->s;
    struct lws_client_connect_info info;
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
    memset(&info, 0, sizeof(info));
    info.context = s->ctx;
    info.address = addr;
    info.port = c->port;
    info.path = c->path;
    info.host = c->host;
    info.origin = c->host;
    info.ssl_connection = c->tls ? LCCSCF_USE_SSL : 0;
    info.local_protocol_name = "slack";
    info.opaque_user_data = c;
    info.retry_and_idle_policy = &idle_policy;
    c->state = C_CONNECTING;
    c->started_ms = now_ms(s);
    /* A failure may already have been reported (and c marked dead) inside the call. */
    struct lws *wsi = lws_client_connect_via_info(&info);
    if (!c->dead)
        c->wsi = wsi;
    if (!wsi && !c->dead) {
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
    const char *p, *host, *end;
    size_t hl;

    if (strncasecmp(url, "wss://", 6) == 0) {
        c->tls = 1;
        c->port = 443;
        host = url + 6;
    } else if (strncasecmp(url, "ws://", 5) == 0) {
        c->tls = 0;
        c->port = 80;
        host = url + 5;
    } else {
        *why = "not a ws:// or wss:// URL";
        return -1;
    }
    end = host + strcspn(host, "/?#");
    if (memchr(host, '@', (size_t)(end - host))) {
        *why = "credentials in the URL";
        return -1;
    }
    p = memchr(host, ':', (size_t)(end - host));
    if (host[0] == '[') {
        const char *close = memchr(host, ']', (size_t)(end - host));
        if (!close) {
            *why = "a bad IPv6 address";
            return -1;
        }
        p = close[1] == ':' ? close + 1 : NULL;
        hl = (size_t)(close - host - 1);
        host++;
    } else {
        hl = (size_t)((p ? p : end) - host);
    }
    if (hl == 0 || hl >= sizeof(c->host)) {
        *why = "no host";
        return -1;
    }
    memcpy(c->host, host, hl);
    c->host[hl] = '\0';
    for (const char *q = c->host; *q; q++) {
        if ((unsigned char)*q <= 0x20 || *q == 0x7f) {
            *why = "a bad host";
            return -1;
        }
    }
    if (p) {
        char *e;
        long port = strtol(p + 1, &e, 10);
        if (e != end || port < 1 || port > 65535) {
            *why = "a bad port";
            return -1;
        }
        c->port = (int)port;
    }
    snprintf(c->path, sizeof(c->path), "%s", *end == '/' ? end : "/");
    if (*end && *end != '/') {
        /* "wss://host?ticket=..." */
        snprintf(c->path, sizeof(c->path), "/%s", end);
    }
    if (strlen(end) + 1 >= sizeof(c->path)) {
        *why = "an overlong path";
        return -1;
    }
    for (const char *q = c->path; *q; q++) {
        if ((unsigned char)*q <= 0x20 || *q == 0x7f) {
            *why = "a bad path";
            return -1;
        }
    }
    if (!c->tls && !allow_insecure && !url_host_is_loopback(url)) {
        *why = "plain ws:// to a non-loopback host";
        return -1;
    }
    return 0;
}

/* apps.connections.open answered. */
static void on_open_answer(void *userdata, const struct http_response *res)
{
    struct slack_socket *s = userdata;
    json_t *root = NULL;
    const char *url, *error, *why = NULL;
    struct conn *c;
    size_t slot;

    s->open_xfer = NULL;
    if (res->result != HTTP_DONE) {
        metrics_slack_open(0);
        set_error(s, "apps.connections.open failed: %s", res->error);
        attempt_failed(s);
        goto out;
    }
    if (res->status == 429) {
        long ra = res->retry_after > 0 ? res->retry_after : 30;
        metrics_slack_open(0);
        if (ra > RETRY_AFTER_MAX_S)
            ra = RETRY_AFTER_MAX_S;
        set_error(s, "apps.connections.open is rate limited (%s)", "HTTP 429");
        attempt_failed(s);
        if (s->next_attempt_ms < now_ms(s) + (uint64_t)ra * 1000u)
            s->next_attempt_ms = now_ms(s) + (uint64_t)ra * 1000u;
        goto out;
    }
    root = json_loadb(res->body, res->body_len, 0, NULL);
    if (res->status != 200 || !json_is_object(root)) {
        char st[32];
        snprintf(st, sizeof(st), "HTTP %ld", res->status);
        metrics_slack_open(0);
        set_error(s, "apps.connections.open gave an unexpected answer (%s)", st);
        attempt_failed(s);
        goto out;
    }
    if (!json_is_true(json_object_get(root, "ok"))) {
        static const char *const fatal[] = {
            "invalid_auth",           "not_authed",    "account_inactive",
            "user_removed_from_team", "team_disabled", "missing_args",
            "forbidden_team",         "token_revoked", "not_allowed_token_type"};
        char text[256];
        error = jstr(root, "error");
        metrics_slack_open(0);
        for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++) {
            if (strcmp(error, fatal[i]) == 0) {
                s->fatal = 1;
                snprintf(s->last_error, sizeof(s->last_error), "Slack refused the app token (%s)",
                         fatal[i]);
                log_err("slack",
                        "Slack refused the app token (%s); /youtrack commands stay unanswered "
                        "until chat.slack.app_token is fixed and the configuration reloaded",
                        fatal[i]);
                snprintf(text, sizeof(text),
                         "Slack refused the bridge's app token (%s): /youtrack commands get no "
                         "answer until chat.slack.app_token is fixed",
                         fatal[i]);
                if (s->hooks.alert)
                    s->hooks.alert(s->hooks.userdata, "slack_auth", text);
                goto out;
            }
        }
        set_error(s, "apps.connections.open failed (%.60s)", *error ? error : "no error given");
        attempt_failed(s);
        goto out;
    }
    url = json_string_value(json_object_get(root, "url"));
    for (slot = 0; slot < MAX_SOCKETS && s->conns[slot]; slot++)
        ;
    if (!url || slot == MAX_SOCKETS || s->stopping) {
        if (!url) {
            metrics_slack_open(0);
            set_error(s, "apps.connections.open gave no URL");
            attempt_failed(s);
        }
        goto out;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        log_err("slack", "out of memory opening a connection");
        attempt_failed(s);
        goto out;
    }
    c->s = s;
    c->id = ++s->next_id;
    c->state = C_RESOLVING;
    if (parse_ws_url(c, url, s->conf->allow_insecure, &why) != 0) {
        metrics_slack_open(0);
        set_error(s, "apps.connections.open gave an unusable URL (%s)", why);
        attempt_failed(s);
        free(c);
        goto out;
    }
    if (ensure_context(s, c->tls) != 0) {
        metrics_slack_open(0);
        set_error(s, "cannot set up the websocket client%s",
                  c->tls && s->ctx ? " for wss:// after ws:// URLs" : "");
        attempt_failed(s);
        free(c);
        goto out;
    }
    metrics_slack_open(1);
    c->gai.data = c;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    if (uv_getaddrinfo(s->loop, &c->gai, on_resolved, c->host, NULL, &hints) == 0) {
        s->pending_lookups++;
    } else {
        set_error(s, "cannot resolve the Socket Mode host (%s)", "lookup failed to start");
        attempt_failed(s);
        free(c);
        goto out;
    }
    s->conns[slot] = c;
    log_debug("slack", "socket %u: connecting to %s:%d", c->id, c->host, c->port);
out:
    json_decref(root);
    update_gauges(s);
    schedule_sweep(s);
}

static void start_open(struct slack_socket *s)
{
    char *url = NULL, *auth = NULL;
    const char *headers[3];

    if (asprintf(&url, "%s/apps.connections.open", s->conf->api_url) < 0 ||
        asprintf(&auth, "Authorization: Bearer %s", s->conf->app_token) < 0) {
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

static void free_conn(struct conn *c)
{
    while (c->txh) {
        struct frame *f = c->txh;
        c->txh = f->next;
        free(f);
    }
    free(c->rx);
    free(c);
}

static void sweep(struct slack_socket *s)
{
    for (size_t i = 0; i < MAX_SOCKETS; i++) {
        struct conn *c = s->conns[i];
        if (c && c->kill && c->wsi && !c->dead) {
            /*
             * Synchronously: lws 4.1's asynchronous kill (a zero timeout) waits for a timer
             * that a foreign libuv loop may never re-arm. The callbacks mark c dead.
             */
            c->kill = 0;
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
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
        if (!c || c->dead || !c->wsi)
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
                c->want_ping = 1;
                lws_callback_on_writable(c->wsi);
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

/*
 * The libwebsockets context: one for the process, kept across reloads (lws cannot finish
 * destroying a context on a foreign loop that keeps running, so a context per reload would
 * stay until exit), made when the first URL says whether it needs TLS: a TLS client context
 * (OpenSSL's algorithm caches and the CA store) costs about 3 MiB, which a ws:// test setup
 * does without. Slack's URLs are always wss://.
 */
struct shared_ctx {
    struct lws_context *ctx; /* lws writes NULL here once it is gone (lwsctx.h) */
    int tls;
};

static struct shared_ctx *shared;
static int instances; /* clients not yet freed */
static int exiting;   /* slack_socket_cleanup() was called: retire with the last client */

static void retire_shared(void);

static int ensure_context(struct slack_socket *s, int tls)
{
    struct lws_context_creation_info info;
    void *loops[1] = {s->loop};
    struct shared_ctx *h;

    if (s->ctx)
        return tls && !s->ctx_tls ? -1 : 0;
    if (shared && (shared->tls || !tls)) {
        s->ctx = shared->ctx;
        s->ctx_tls = shared->tls;
        return 0;
    }
    retire_shared(); /* a ws:// one, no longer enough (and no socket of ours uses it) */
    h = calloc(1, sizeof(*h));
    if (!h)
        return -1;
    lwsctx_logging();
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_LIBUV | (tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0);
    info.foreign_loops = loops;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.pcontext = &h->ctx;
    info.retry_and_idle_policy = &idle_policy;
    info.timeout_secs = 20;        /* connect, TLS and upgrade */
    info.fd_limit_per_thread = 16; /* at most MAX_SOCKETS sockets (+ lws's own) */
    if (tls && access(CA_BUNDLE, R_OK) == 0)
        info.client_ssl_ca_filepath = CA_BUNDLE;
    h->ctx = lws_create_context(&info);
    if (!h->ctx) {
        free(h);
        return -1;
    }
    h->tls = tls;
    shared = h;
    s->ctx = h->ctx;
    s->ctx_tls = tls;
    return 0;
}

static void retire_shared(void)
{
    if (shared)
        lwsctx_retire(&shared->ctx, shared);
    shared = NULL;
}

void slack_socket_cleanup(void)
{
    exiting = 1;
    if (instances == 0)
        retire_shared(); /* else the last slack_socket_free() does */
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
    if (http_new(&s->http, loop) != 0) {
        snprintf(err, errlen, "cannot start an HTTP client for Slack");
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
        if (c->wsi && !c->dead) {
            /* The context outlives us: a socket still open goes now (its callbacks see no
             * owner any more). Normally slack_socket_stop() has closed them all. */
            lws_set_opaque_user_data(c->wsi, NULL);
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
        }
        if (c->state == C_RESOLVING && !c->dead) {
            /* on_resolved() frees it (uv_cancel() may come too late). */
            uv_cancel((uv_req_t *)&c->gai);
            continue;
        }
        free_conn(c);
    }
    for (size_t i = 0; i < DEDUP_SLOTS; i++)
        free(s->dedup[i].id);
    s->closing_handles = 2;
    uv_close((uv_handle_t *)&s->tick, on_handle_closed);
    uv_close((uv_handle_t *)&s->sweep, on_handle_closed);
    if (--instances == 0 && exiting)
        retire_shared(); /* its handles would keep the loop running */
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
