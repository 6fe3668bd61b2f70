/*
 * Chat commands: `projects [filter]`, `project KEY`, `changes [N]`, `status`, `help`. Text in,
 * answer out, for one platform; answers come from the in-memory snapshot, never from YouTrack.
 * Pure: no I/O, no clock (the caller passes "now").
 */
#ifndef YTB_COMMAND_H
#define YTB_COMMAND_H

#include <stddef.h>
#include <stdint.h>

#include "project.h"

/* Bytes of command text considered; longer input is refused. Room for one `subscribe` with
 * SUB_MAX_PATTERNS patterns of a typical length (subscription.h). */
#define COMMAND_MAX_INPUT 1000

enum command_platform {
    COMMAND_SLACK = 0, /* a Socket Mode ack payload: {"response_type","text","blocks"} */
    COMMAND_MATRIX,    /* m.room.message content: m.notice, body, formatted_body, m.mentions */
    COMMAND_TEXT,      /* plain text (tests, the command line) */
};

struct command_sink {
    const char *name;
    const char *type; /* "slack", "matrix", ... */
    size_t depth;     /* queued messages */
    int broken;
    const char *reason; /* "" when fine */
};

struct command_index;

struct command_context {
    const struct project_list *projects; /* the snapshot: finished, may be empty */
    /* The snapshot's index (command_index_new() of projects), or NULL: then each command that
     * needs one builds its own, which costs what the index saves (tests, one-off answers). */
    const struct command_index *index;
    const struct history_entry *history; /* oldest first (the snapshot's) */
    size_t n_history;
    const char *service_url;
    enum youtrack_flavour flavour;
    int64_t now;
    /* status */
    const char *version;
    int64_t started_at;     /* the bridge's start */
    int64_t last_poll_ok;   /* 0: none yet */
    const char *last_error; /* the last poll failure, "" if the last poll succeeded */
    const struct command_sink *sinks;
    size_t n_sinks;
};

/*
 * Runs the command in text (the words after "/youtrack" or "!youtrack"; may be empty: help).
 * Returns 0 and a NUL-terminated answer in *out (caller frees), or -ENOMEM.
 */
int command_run(const char *text, size_t len, const struct command_context *ctx,
                enum command_platform platform, char **out);

/*
 * An answer that is one trusted line (no character any target escapes), e.g. a refusal, laid
 * out for platform like every answer. 0 and *out (caller frees), or -ENOMEM.
 */
int command_say(enum command_platform platform, const char *literal, char **out);

/*
 * Bytes of the whitespace between command words at s (n bytes left): ASCII whitespace, or
 * U+00A0 (some clients type it); 0 when s starts with anything else or n is 0. The chat clients
 * use it too, to find the command after "!youtrack".
 */
size_t command_space_len(const char *s, size_t n);

/*
 * The words of a command as every command reads them: the first word as typed into word, the
 * rest into args with each run of whitespace as one space and none at either end; Slack's
 * &amp; &lt; &gt; undone when slack is set. Both buffers hold COMMAND_MAX_INPUT + 1 bytes.
 * Returns 0, -E2BIG when text is longer than COMMAND_MAX_INPUT, or -EILSEQ when it is not
 * UTF-8 or holds a NUL.
 */
int command_words(const char *text, size_t len, int slack, char *word, char *args);

struct subscription;

/*
 * The answer to a subscription command (subscription.h; bridge.c runs them): head, one line of
 * trusted text, then quote (untrusted: shown escaped and quoted; NULL for none), then one line
 * per subscription of v (n of them; the channel named when show_channel): its event kinds, its
 * patterns (escaped) and, when suspended, why. 0 and *out (caller frees), or -ENOMEM.
 */
int command_subscriptions(enum command_platform platform, const char *head, const char *quote,
                          const struct subscription *const *v, size_t n, int show_channel,
                          char **out);

/* The command's name for metrics ("projects", "project", "changes", "status", "subscribe",
 * "unsubscribe", "subscriptions", "help"). */
const char *command_name(const char *text, size_t len);

#endif
