/*
 * Slack Socket Mode: `/youtrack` slash commands over websockets (libwebsockets on the shared
 * libuv loop), answered in the envelope's ack. See doc/slack.md ("Socket Mode") and the README
 * ("Chat commands").
 */
#ifndef YTB_SLACK_SOCKET_H
#define YTB_SLACK_SOCKET_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "conf.h"

struct slack_socket;

/* One slash command to answer (strings borrowed for the call). */
struct slack_command {
    const char *text; /* the words after the command */
    size_t len;
    const char *user_id, *channel_id; /* who asked, where ("" when Slack left them out) */
    uint64_t ticket;                  /* names it to slack_socket_answer() */
};

#define SLACK_ANSWER_LATER    1    /* answer(): the answer comes through slack_socket_answer() */
#define SLACK_ANSWER_LATER_MS 2500 /* ... within this long (Slack wants the ack within 3 s) */

struct slack_socket_hooks {
    /*
     * Answers a command: 0 and *payload {"response_type","text","blocks"} to acknowledge with
     * now; or SLACK_ANSWER_LATER (*payload untouched) when the answer needs a call first (a
     * subscription's membership check): the hook then calls slack_socket_answer() with
     * cmd->ticket exactly once, within SLACK_ANSWER_LATER_MS, and before slack_socket_free();
     * or -ENOMEM.
     */
    int (*answer)(void *userdata, const struct slack_command *cmd, char **payload);
    /* Something an operator must hear about (kind: "slack_auth", "slack_disabled", ...). */
    void (*alert)(void *userdata, const char *kind, const char *text);
    void *userdata;
};

/* conf must outlive the client. Returns 0, or -ENOMEM/-EIO (err filled). */
int slack_socket_new(struct slack_socket **out, uv_loop_t *loop, const struct conf_chat_slack *conf,
                     const struct slack_socket_hooks *hooks, char *err, size_t errlen);

/*
 * The answer to the command of ticket (SLACK_ANSWER_LATER): acknowledges its envelope with
 * payload on the socket it came by, or, when that socket is gone or Slack takes no payload in
 * the ack, acknowledges it bare and posts payload to the command's response_url. An unknown
 * ticket is ignored.
 */
void slack_socket_answer(struct slack_socket *s, uint64_t ticket, const char *payload);

/* Connects, and keeps a connection from then on. */
void slack_socket_start(struct slack_socket *s);

/*
 * Closes every socket (a close frame, then at most ~1 s for the answer) and calls cb once none
 * is left. The client must then be freed with slack_socket_free().
 */
void slack_socket_stop(struct slack_socket *s, void (*cb)(void *userdata), void *userdata);

/* Releases the client (the last memory goes as the loop closes its handles). NULL is fine. */
void slack_socket_free(struct slack_socket *s);

/*
 * The process is exiting (not reloading): the process's websocket context (one for all
 * clients, kept across reloads) is retired as soon as no client is left, so the loop can run
 * dry; lwsctx_reap() finishes it.
 */
void slack_socket_cleanup(void);

/*
 * Readiness: 1 when a connection is up (said hello), or was up less than a minute ago and is
 * being replaced; 0 otherwise, with why (no secrets) in why.
 */
int slack_socket_ready(const struct slack_socket *s, char *why, size_t whylen);

#endif
