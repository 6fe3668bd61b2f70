/*
 * Configuration: a libconfig file turned into a validated struct conf.
 *
 * conf_load() never stops at the first problem: it collects every one as "FILE:LINE: message"
 * (struct conf_diag) so --check-config can print them all. Secrets may be inline, in a file
 * (KEY_file, trailing newline trimmed) or in the environment (KEY_env = "NAME"); they are
 * registered with log_add_secret() as soon as they are read. YTBRIDGE_YOUTRACK_URL and
 * YTBRIDGE_YOUTRACK_TOKEN override the file. libconfig is included by the conf*.c files only.
 */
#ifndef YTB_CONF_H
#define YTB_CONF_H

#include <stddef.h>

#include "log.h"

#define CONF_DEFAULT_PATH "/etc/ytbridge/ytbridge.conf"

enum conf_api {
    CONF_API_AUTO = 0,
    CONF_API_MODERN, /* /api, YouTrack 2018.3+ */
    CONF_API_LEGACY, /* /rest, YouTrack 2017.x */
};

enum conf_first_run {
    CONF_FIRST_RUN_BASELINE = 0,
    CONF_FIRST_RUN_ANNOUNCE,
};

enum conf_sink_type {
    CONF_SINK_STDOUT = 0,
    CONF_SINK_SLACK,    /* Slack incoming webhook */
    CONF_SINK_MATRIX,   /* Matrix room, client-server API */
    CONF_SINK_WEBHOOK,  /* generic signed webhook */
    CONF_SINK_HOOKSHOT, /* matrix-hookshot generic webhook */
};

/* "stdout", "slack", ... */
const char *conf_sink_type_name(enum conf_sink_type t);

/* Bits of conf_sink.events: 1u << enum change_kind (project.h), in that enum's order. */
#define CONF_EVENTS_ALL 0x1fu

struct conf_sink {
    char *name;
    enum conf_sink_type type;
    int line; /* where the sink was defined, for later messages */
    /* Routing (every type). */
    unsigned events;   /* bit (1u << CHANGE_x); default CONF_EVENTS_ALL */
    char **projects;   /* shortName glob patterns (fnmatch, case-insensitive); "!P" excludes; */
    size_t n_projects; /* default one pattern "*" */
    int alerts;        /* receives alerts (mass-removal hold, auth, broken sinks); default 1 */
    /* stdout */
    enum log_format format; /* one text line or one JSON object per message */
    /* slack: webhook_url; webhook, hookshot: url. A secret (registered with the logger). */
    char *url;
    /* webhook: the HMAC-SHA256 key for X-Ytbridge-Signature-256; NULL: unsigned. A secret. */
    char *secret;
    /* matrix */
    char *homeserver;   /* base URL, no trailing '/' */
    char *room;         /* "!id:server" or "#alias:server" */
    char *access_token; /* a secret */
    int allow_insecure; /* plain http:// to a non-loopback host */
    int chat_reply;     /* a chat.matrix reply sink (not configured under sinks) */
};

/* The chat commands' rate limits (ratelimit.h), per platform. */
struct conf_chat_rate {
    unsigned per_user;   /* commands one user may send per minute, all at once if they like */
    unsigned per_second; /* commands answered per second across all users (twice that at once) */
};

#define CONF_CHAT_PER_USER_DEFAULT   10
#define CONF_CHAT_PER_SECOND_DEFAULT 10

/* chat.slack: /youtrack over Socket Mode. */
struct conf_chat_slack {
    int enabled;
    char *app_token;         /* xapp-...; a secret */
    char *command;           /* "/youtrack" */
    char **allowed_channels; /* channel ids; none: every channel */
    size_t n_allowed_channels;
    char **allowed_users; /* user ids; none: everyone in the workspace */
    size_t n_allowed_users;
    char *api_url;      /* Web API base, default "https://slack.com/api"; no trailing '/' */
    int allow_insecure; /* plain http:// / ws:// to a non-loopback host */
    struct conf_chat_rate rate;
};

/* chat.matrix: !youtrack in rooms, read with /sync. */
struct conf_chat_matrix {
    int enabled;
    char *homeserver;   /* base URL, no trailing '/' */
    char *access_token; /* a secret */
    char **rooms;       /* "!id:server": the rooms it answers in */
    size_t n_rooms;
    char *prefix; /* "!youtrack" */
    char **allowed_users;
    size_t n_allowed_users;
    int allow_insecure;
    struct conf_chat_rate rate;
    /*
     * One internal matrix sink per room, for the replies: they go through the outbox like
     * notifications (paced, Retry-After honoured) but are never journaled. Named
     * "chat:<room id>"; not in struct conf's sinks, so nothing is ever routed to them.
     */
    struct conf_sink *reply_sinks;
    size_t n_reply_sinks;
};

struct conf {
    char *path; /* the file it came from */
    struct {
        char *url;   /* service URL, no trailing '/'; "/api" or "/rest" is appended */
        char *token; /* secret */
        enum conf_api api;
        int poll_interval;  /* seconds, 10..86400, default 60 */
        int page_size;      /* 1..10000, default 200 */
        int timeout;        /* seconds per request, 1..600, default 30 */
        char *ca_file;      /* NULL when unset or "" */
        int allow_insecure; /* plain http:// to a non-loopback host */
        long max_body;      /* bytes per response, default 64 MiB */
    } youtrack;
    char *state_dir; /* default /var/lib/ytbridge */
    struct {
        enum conf_first_run first_run;
        int removal_confirmations; /* 1..100, default 2 */
        int mass_removal_limit;    /* 0..1000000, default 10; 0 holds every removal */
        int digest_threshold;      /* 1..1000, default 5: more changes per sink and poll -> one
                                      summary message */
        int max_age;               /* seconds, 60..2592000, default 86400: older undelivered
                                      messages are dead-lettered */
        int shutdown_grace;        /* seconds, 0..300, default 10: in-flight deliveries on
                                      SIGTERM */
    } notify;
    struct conf_sink *sinks; /* never empty after conf_load(): no "sinks" -> one stdout sink */
    size_t n_sinks;
    struct {
        char *listen; /* "IPV4:PORT" / "[IPV6]:PORT" for /healthz, /readyz, /metrics; "" disables it
                       */
    } http;
    struct {
        struct conf_chat_slack slack;
        struct conf_chat_matrix matrix;
    } chat;
    struct {
        int level_set; /* the file named a level (the command line still wins) */
        enum log_level level;
        int format_set;
        enum log_format format;
    } log;
};

/*
 * The sink called name: a configured one or a chat reply sink. NULL when there is none.
 */
const struct conf_sink *conf_find_sink(const struct conf *conf, const char *name);

/* One problem found in a configuration. */
struct conf_diag {
    char *file;
    int line; /* 0 when no line applies (e.g. the file cannot be opened) */
    char *msg;
};

struct conf_diags {
    struct conf_diag *v;
    size_t n;
};

/*
 * Reads and validates the file at path (environment overrides applied, every secret read).
 * Returns 0 and *out (caller frees with conf_free()), or -EINVAL with at least one entry added
 * to diags (caller frees with conf_diags_fini()), or -ENOMEM. No secret appears in a message.
 */
int conf_load(const char *path, struct conf **out, struct conf_diags *diags);

/*
 * As conf_load(), but from a buffer; name is used in messages and relative *_file paths are
 * resolved against the current directory. For tests and the fuzz harness.
 */
int conf_load_buffer(const char *text, size_t len, const char *name, struct conf **out,
                     struct conf_diags *diags);

void conf_free(struct conf *conf);

/* Formats one diagnostic as "FILE:LINE: message" (or "FILE: message") into buf. */
void conf_diag_format(const struct conf_diag *d, char *buf, size_t len);

void conf_diags_fini(struct conf_diags *diags);

#endif
