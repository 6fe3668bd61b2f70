/*
 * The Socket Mode client's messages (pure: no I/O, no event loop; doc/slack.md "Socket Mode"):
 * what arrives on a websocket (hello, disconnect, envelopes) and the answer of
 * apps.connections.open, parsed; and the acknowledgement that goes back. slack_socket.c does
 * the I/O; the fuzz harness and the unit tests call these directly.
 */
#ifndef YTB_SLACK_MSG_H
#define YTB_SLACK_MSG_H

#include <stddef.h>

struct strbuf;

/* One Socket Mode message, as slack_msg_parse() understood it. */
enum slack_msg_kind {
    SLACK_MSG_OTHER = 0, /* valid JSON object of no interest (unknown type, no envelope id) */
    SLACK_MSG_HELLO,
    SLACK_MSG_DISCONNECT,
    SLACK_MSG_ENVELOPE,
};

#define SLACK_ENVELOPE_ID_MAX 128

struct slack_msg {
    enum slack_msg_kind kind;
    long long num_connections; /* hello; 0 when absent */
    char reason[64];           /* disconnect: "warning", ...; cut, "" when absent */
    /* envelopes */
    char envelope_id[SLACK_ENVELOPE_ID_MAX + 1];
    char type[48]; /* "slash_commands", "events_api", ...; cut */
    int accepts_response_payload;
    long long retry_attempt;
    int is_slash_command; /* type slash_commands with an object payload: the fields below */
    char *command, *text, *user_id, *channel_id, *response_url; /* never NULL then; "" absent */
};

/*
 * Parses one complete text message (the fuzz harness's entry point). Returns 0 and *out
 * (free with slack_msg_fini()), -EINVAL when it is not a JSON object or an envelope id is
 * empty, too long or not printable ASCII, or -ENOMEM.
 */
int slack_msg_parse(const char *buf, size_t len, struct slack_msg *out);
void slack_msg_fini(struct slack_msg *m);

/*
 * The acknowledgement of envelope id: {"envelope_id": id}, with "payload": payload when
 * payload is not NULL (a JSON object's text, from the answer hook; copied as it is). Returns 0
 * and *out (caller frees) of *len bytes, or -ENOMEM.
 */
int slack_msg_ack(const char *id, const char *payload, char **out, size_t *len);

/* The same acknowledgement appended to b (ENOMEM sets b->oom): for a frame built in place. */
void slack_msg_ack_put(struct strbuf *b, const char *id, const char *payload);

/* What an apps.connections.open answer (HTTP 200) says. */
enum slack_open_kind {
    SLACK_OPEN_URL = 0, /* "ok": true with a string "url": connect there */
    SLACK_OPEN_NO_URL,  /* "ok": true without one */
    SLACK_OPEN_REFUSED, /* "ok": false with an error about the token or the team: no retry helps */
    SLACK_OPEN_ERROR,   /* "ok": false otherwise (error "" when Slack named none): retry later */
};

struct slack_open {
    enum slack_open_kind kind;
    char error[64]; /* SLACK_OPEN_REFUSED, SLACK_OPEN_ERROR: Slack's "error", cut */
    char *url;      /* SLACK_OPEN_URL: the websocket URL (single use); NULL otherwise */
};

/*
 * Parses the body of an apps.connections.open answer. Returns 0 and *out (free with
 * slack_msg_open_fini()), -EINVAL when the body is not a JSON object, or -ENOMEM; *out is empty
 * on failure. The URL is not checked here (slack_socket.c decides what it accepts).
 */
int slack_msg_parse_open(const char *body, size_t len, struct slack_open *out);
void slack_msg_open_fini(struct slack_open *o);

#endif
