/*
 * Subscriptions made from chat (README.md, "Subscriptions"): which Slack channel or Matrix room
 * hears which project changes, chosen by its users with `subscribe`, `unsubscribe` and
 * `subscriptions`. Pure data and pure functions: parsing a command, applying it to a channel's
 * subscription, and the sink a subscription delivers through. No I/O, no clock. The state
 * (state.h) stores these records; bridge.c decides who may change them and writes them.
 */
#ifndef YTB_SUBSCRIPTION_H
#define YTB_SUBSCRIPTION_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"

enum sub_platform {
    SUB_SLACK = 0,
    SUB_MATRIX,
};
#define SUB_PLATFORMS 2

#define SUB_MAX_PATTERNS 50  /* patterns per channel */
#define SUB_MAX_CHANNELS 500 /* subscribed channels per platform */
#define SUB_PATTERN_MAX  64  /* bytes of one pattern, its "!" included */
#define SUB_CHANNEL_MAX  255 /* bytes of a channel id or room id */
#define SUB_USER_MAX     255 /* bytes of a user id */
#define SUB_REASON_MAX   200 /* bytes of a suspension's reason */

/* One channel's subscription. Strings owned (subscription_fini()). */
struct subscription {
    enum sub_platform platform;
    char *channel;   /* Slack channel id ("C0123ABCD"), Matrix room id ("!x:server") */
    char **patterns; /* short-name globs as a sink's `projects` ("!" excludes), in the order
                        added, no two the same (ASCII case-insensitively); at least one */
    size_t n_patterns;
    unsigned events; /* CONF_EVENTS_ALL bits (1u << enum change_kind); never 0 */
    char *by;        /* the user id that changed it last */
    int64_t created; /* unix seconds: first subscribed */
    int64_t changed; /* unix seconds: last changed (subscribe, unsubscribe, suspend) */
    char *suspended; /* NULL while active; else why deliveries stopped (written by the bridge:
                        trusted text, at most SUB_REASON_MAX bytes) */
};

/* Every subscription, sorted by platform, then channel (strcmp). */
struct subscription_list {
    struct subscription *v;
    size_t n;
};

void subscription_fini(struct subscription *s);
/* A deep copy of src into *dst. 0 or -ENOMEM (dst then zeroed). */
int subscription_copy(struct subscription *dst, const struct subscription *src);
void subscription_list_fini(struct subscription_list *l);

/* "slack" / "matrix". */
const char *sub_platform_name(enum sub_platform p);

/*
 * Whether channel is usable as a subscription's channel: a Slack channel id (C or G then
 * upper-case letters and digits, at most 32 bytes; direct messages cannot subscribe) or a
 * Matrix room id as chat.matrix.rooms accepts one ("!" and more, no space or control byte, at
 * most SUB_CHANNEL_MAX bytes) that is valid UTF-8. The state's readers check it too.
 */
int sub_channel_ok(enum sub_platform p, const char *channel);

/*
 * Whether pattern is usable: 1..SUB_PATTERN_MAX bytes of valid UTF-8 without a control
 * character or a space, and not "!" alone. Matched as a sink's `projects` are (fnmatch,
 * case-insensitive, "!" excludes).
 */
int sub_pattern_ok(const char *pattern);

/* The order of a subscription_list (platform, then channel), for qsort(). */
int subscription_cmp(const void *a, const void *b);

/* Where (p, channel) is or would go in l, kept in order: the first index not before it. */
size_t subscription_place(const struct subscription_list *l, enum sub_platform p,
                          const char *channel);

/* Finds the subscription of (p, channel) in l: its index, or -1. */
long subscription_find(const struct subscription_list *l, enum sub_platform p, const char *channel);

/* Subscriptions of platform p in l (active and suspended). */
size_t subscription_count(const struct subscription_list *l, enum sub_platform p);

/* ---- commands ---- */

enum sub_verb {
    SUB_NONE = 0,    /* not a subscription command: command_run() answers it */
    SUB_SUBSCRIBE,   /* subscribe [PATTERN ...] [events=KIND,...] */
    SUB_UNSUBSCRIBE, /* unsubscribe [PATTERN ...] */
    SUB_LIST,        /* subscriptions */
    SUB_LIST_ALL,    /* subscriptions all */
};

struct sub_request {
    enum sub_verb verb;
    char bad[SUB_PATTERN_MAX + 1]; /* -EINVAL: the word at fault, cut ("" when none); as
                                      typed, untrusted: escape it to show it */
    char **patterns; /* as typed (Slack's &lt; &gt; &amp; undone), duplicates dropped */
    size_t n_patterns;
    unsigned events; /* SUB_SUBSCRIBE with events=: the kinds named; else 0 */
};

void sub_request_fini(struct sub_request *r);

/*
 * Reads the words of a chat command (the text after "/youtrack" or "!youtrack", len bytes,
 * words separated as command_space_len() says; the verb ASCII case-insensitive). Returns 0 with
 * out->verb SUB_NONE when the first word is none of ours (or the text is over
 * COMMAND_MAX_INPUT bytes or not UTF-8: command_run() explains those); 0 and the request;
 * -EINVAL when it is ours but wrong (an unknown event kind, an empty events=, an unusable
 * pattern, more than SUB_MAX_PATTERNS patterns, events= with unsubscribe, an argument to
 * `subscriptions` other than `all`) with err holding one line of trusted text that
 * explains it and out->bad the word at fault; or -ENOMEM. out is always safe to
 * sub_request_fini().
 */
int sub_parse(const char *text, size_t len, int slack, struct sub_request *out, char *err,
              size_t errlen);

/*
 * What req (SUB_SUBSCRIBE or SUB_UNSUBSCRIBE) makes of the channel's subscription cur (NULL:
 * none). subscribe adds its patterns to cur's, keeps cur's events unless it names some (default
 * for a new one: all five), and resumes a suspended one; a list without an including pattern
 * (a new subscription without patterns, or with exclusions only) gets "*" first. unsubscribe
 * removes the patterns named (ASCII case-insensitively), all of them when none is named, and the
 * whole subscription when no including pattern is left (exclusions alone would mean every
 * other project). Returns 1 and
 * *next (subscription_fini() it; by, created, changed filled from by and now; platform and
 * channel copied from cur or given), 0 when the channel is left without a subscription (*next
 * zeroed), -EINVAL with err when the request cannot be applied (more than SUB_MAX_PATTERNS
 * patterns after adding; unsubscribing a pattern the channel does not have; unsubscribing a
 * channel that has no subscription; bad then gets the pattern at fault, untrusted, or ""), or
 * -ENOMEM.
 */
int sub_apply(const struct subscription *cur, enum sub_platform p, const char *channel,
              const struct sub_request *req, const char *by, int64_t now, struct subscription *next,
              char *err, size_t errlen, char *bad, size_t badlen);

/* ---- delivery ---- */

/*
 * The sink that delivers to s, named "slack:<channel>" / "matrix:<room id>" (sub_sink_name()):
 * a CONF_SINK_SLACK_BOT with url = chat.slack.api_url, access_token = chat.slack.bot_token and
 * room = the channel id, or a CONF_SINK_MATRIX on chat.matrix's homeserver and access token with
 * room = the room id; events and projects are s's, alerts 0, subscription 1, group
 * SUB_GROUP_SLACK / SUB_GROUP_MATRIX. The token and URL strings point into conf (which must
 * outlive the sink), the rest is owned. NULL on ENOMEM or when conf has no such chat platform.
 */
#define SUB_GROUP_SLACK  "slack bot token"
#define SUB_GROUP_MATRIX "matrix chat account"
struct conf_sink *sub_sink_new(const struct subscription *s, const struct conf *conf);
void sub_sink_free(struct conf_sink *sink);

/* "slack:<channel>" / "matrix:<room id>" into buf (SUB_CHANNEL_MAX + 8 bytes is enough). */
void sub_sink_name(enum sub_platform p, const char *channel, char *buf, size_t len);

#endif
