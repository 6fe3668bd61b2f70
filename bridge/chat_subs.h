/*
 * Chat subscriptions at run time (README.md, "Subscriptions"): the subscription commands run
 * against the state, the sinks of the active subscriptions kept in the outbox, and their
 * suspension when a channel goes away. The records and the command grammar are
 * subscription.h's (pure); the state stores them (state.h); bridge.c owns one of these per
 * bridge and routes each poll's changes to chat_subs_sinks().
 *
 * Every change is durable before it is answered: a command's subscription is written to the
 * state first, and only then changed in memory, in the outbox and in the answer. A write that
 * fails changes nothing and says so.
 */
#ifndef YTB_CHAT_SUBS_H
#define YTB_CHAT_SUBS_H

#include <stddef.h>
#include <stdint.h>

#include "command.h"
#include "conf.h"
#include "subscription.h"

struct chat_subs;
struct state;
struct outbox;
struct http;

struct chat_subs_hooks {
    /* Something the operator must hear about (kind "subscription_suspended", "slack_bot_token",
     * ...): an alert to the operator sinks. text is trusted. */
    void (*alert)(void *userdata, const char *kind, const char *text);
    /* The answer to a Slack command answered later (SLACK_ANSWER_LATER, slack_socket.h). */
    void (*answer_later)(void *userdata, uint64_t ticket, const char *payload);
    void *userdata;
};

/*
 * Loads the subscriptions from st and gives the outbox a queue for each active one (before the
 * journal's entries are pushed, so theirs find their queue). st NULL: none (a dry run without a
 * state). conf, st, ob and http must outlive it. Returns 0 or -errno (err says what).
 */
int chat_subs_new(struct chat_subs **out, const struct conf *conf, struct state *st,
                  struct outbox *ob, struct http *http, const struct chat_subs_hooks *hooks,
                  char *err, size_t errlen);

/*
 * Starts what needs the loop: the bot token's auth.test (the bot's name for "invite me", and an
 * alert when Slack refuses the token).
 */
void chat_subs_start(struct chat_subs *cs);

/* Cancels the calls in flight (their commands get no answer) and frees. NULL is fine. */
void chat_subs_free(struct chat_subs *cs);

/* The active subscriptions' sinks, for routing a poll's changes (announce.h's extra). */
const struct conf_sink *const *chat_subs_sinks(const struct chat_subs *cs, size_t *n);

#define CHAT_SUBS_NOT_OURS 2 /* chat_subs_command(): not a subscription command */

/*
 * Runs text (the words after the command) typed by user in channel on platform p if it is a
 * subscription command: returns CHAT_SUBS_NOT_OURS when it is not one (the caller answers it),
 * 0 and *out (the answer for the platform; caller frees; *changed, when changed is not NULL,
 * set when the command changed the state), SLACK_ANSWER_LATER for a Slack subscribe that waits
 * for the membership check (the answer then comes through hooks.answer_later with ticket), or
 * -ENOMEM.
 */
int chat_subs_command(struct chat_subs *cs, enum sub_platform p, const char *channel,
                      const char *user, const char *text, size_t len, uint64_t ticket, char **out,
                      int *changed);

/* The outbox removed sink's queue: its target is gone (SINK_SUSPEND). */
void chat_subs_gone(struct chat_subs *cs, const char *sink, const char *reason);

/* The bot is no longer in channel (Matrix: left, kicked or banned; by may be NULL). */
void chat_subs_left(struct chat_subs *cs, enum sub_platform p, const char *channel, const char *by);

struct chat_subs_count {
    size_t active, suspended;
};

/* How many subscriptions of platform p are active and suspended. */
struct chat_subs_count chat_subs_count(const struct chat_subs *cs, enum sub_platform p);

/* Whether a sink name is a subscription group's (an alert about the bot token, not a sink). */
int chat_subs_is_group(const char *name);

#endif
