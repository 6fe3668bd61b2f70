/*
 * Configuration: a libconfig file turned into a validated struct conf, in two steps.
 *
 * conf_load_buffer() judges a text alone and is pure: it reads no file and no environment
 * variable and leaves the logger alone, so the fuzzer and the tests can call it on anything.
 * Secrets may be inline, in a file (KEY_file, trailing newline trimmed) or in the environment
 * (KEY_env = "NAME"); it records where each one comes from (struct conf_secret). conf_resolve()
 * then reads the files and variables, applies YTBRIDGE_YOUTRACK_URL and YTBRIDGE_YOUTRACK_TOKEN
 * (they override the file), checks youtrack.ca_file and the cluster's TLS files, names this
 * replica (cluster.member: YTBRIDGE_MEMBER or the host name) and registers every secret with
 * log_add_secret(). conf_load() (a file) and conf_load_text() do both in one pass, which is what
 * the daemon runs.
 *
 * Loading never stops at the first problem: it collects every one as "FILE:LINE: message"
 * (struct conf_diag) so --check-config can print them all. libconfig is included by the conf*.c
 * files only.
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
    CONF_SINK_SLACK,     /* Slack incoming webhook */
    CONF_SINK_MATRIX,    /* Matrix room, client-server API */
    CONF_SINK_WEBHOOK,   /* generic signed webhook */
    CONF_SINK_HOOKSHOT,  /* matrix-hookshot generic webhook */
    CONF_SINK_SLACK_BOT, /* a subscribed Slack channel: chat.postMessage with the bot token
                            (subscription.h; never in a configuration file) */
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
    /*
     * A chat subscription's sink (subscription.h: sub_sink_new()), never configured: its
     * target going away (channel archived, bot removed, room left) is SINK_SUSPEND, not
     * SINK_BROKEN. slack_bot: url is chat.slack.api_url, access_token the bot token, room the
     * channel id.
     */
    int subscription;
    /*
     * Sinks that share one credential (the Slack bot token, the Matrix chat account), or NULL:
     * when the credential is refused, every sink of the group is held with one alert named after
     * the group, and one of them probes hourly for all (outbox.c).
     */
    const char *group;
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
    char *api_url; /* Web API base, default "https://slack.com/api"; no trailing '/' */
    /* xoxb-...: posts to subscribed channels (chat.postMessage, conversations.info, auth.test);
     * a secret (bot_token, bot_token_file, bot_token_env); NULL: no subscriptions in Slack */
    char *bot_token;
    char **manage_users;   /* user ids who may subscribe and unsubscribe; none: everyone who may */
    size_t n_manage_users; /* use the command (allowed_users) */
    int allow_insecure;    /* plain http:// / ws:// to a non-loopback host */
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
    char **manage_users;   /* "@user:server" ids who may subscribe and unsubscribe; none: */
    size_t n_manage_users; /* everyone who may use the command */
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

/* Where a secret comes from. */
enum conf_secret_from {
    CONF_SECRET_INLINE = 0, /* KEY: in the text itself */
    CONF_SECRET_FILE,       /* KEY_file: a file, read by conf_resolve() */
    CONF_SECRET_ENV,        /* KEY_env: an environment variable, read by conf_resolve() */
};

/* One secret setting of a configuration, as conf_load_buffer() found it. */
struct conf_secret {
    char *setting; /* the setting that gives it, as messages name it: "sinks[1].url_file" */
    int line;
    enum conf_secret_from from;
    char *source; /* FILE: the path as written; ENV: the variable's name; INLINE: NULL */
};

/*
 * cluster: replicas sharing their state in etcd (one leads, the others stand by). enabled is 0
 * when the configuration has no cluster block; then nothing below is set.
 */
#define CONF_CLUSTER_MAX_ENDPOINTS 16
#define CONF_CLUSTER_PREFIX_MAX    200
#define CONF_CLUSTER_MEMBER_MAX    63

struct conf_cluster {
    int enabled; /* the block is present */
    /*
     * The etcd endpoints, 1..16, each "http(s)://host:port" (no path; the port filled in when
     * the URL left it out), no two the same origin, in the order given.
     */
    char **etcd;
    size_t n_etcd;
    char *prefix;  /* every key lives under it: starts with '/', no trailing '/', no "//",
                      printable ASCII without spaces, <= 200 bytes; default "/ytbridge" */
    int lease_ttl; /* seconds 2..60, default 10 */
    char *member;  /* this replica's name, 1..63 of A-Z a-z 0-9 . _ -: as configured, else
                      (unset or "") $YTBRIDGE_MEMBER, else gethostname(); set by
                      conf_resolve(), NULL after conf_load_buffer() alone when it was not
                      configured */
    /*
     * TLS to etcd: a CA bundle, a client certificate and its key; NULL when unset or "". Paths
     * against the configuration file's directory; cert_file and key_file together or neither;
     * conf_resolve() checks that each is a file it can read.
     */
    char *ca_file, *cert_file, *key_file;
    char *user;         /* etcd authentication; NULL when unset or "" */
    char *password;     /* a secret (password, password_file or password_env); set iff user is */
    int allow_insecure; /* plain http:// to a non-loopback endpoint */
};

struct conf_pending;

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
    struct conf_cluster cluster;
    struct conf_secret *secrets; /* every secret setting, in file order */
    size_t n_secrets;
    struct conf_pending *pending; /* what conf_resolve() has left to do; private to conf*.c */
};

/*
 * The sink called name: a configured one or a chat reply sink. NULL when there is none.
 */
const struct conf_sink *conf_find_sink(const struct conf *conf, const char *name);

/*
 * 1 when a and b have the same cluster settings (both without a cluster block counts), else 0:
 * a SIGHUP reload that changes them is more than a reload.
 */
int conf_cluster_same(const struct conf *a, const struct conf *b);

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
 * The environment conf_resolve() reads: get() returns the value of the variable name, or NULL
 * when it is not set (getenv() does that for the process's environment).
 */
struct conf_env {
    const char *(*get)(void *ctx, const char *name);
    void *ctx;
};

/*
 * Reads and validates the file at path with the process's environment: conf_load_text() of the
 * file's contents, relative *_file and ca_file paths taken against the file's directory.
 * Returns 0 and *out (caller frees with conf_free()), or -EINVAL with at least one entry added
 * to diags (caller frees with conf_diags_fini()), or -ENOMEM. No secret appears in a message.
 */
int conf_load(const char *path, struct conf **out, struct conf_diags *diags);

/*
 * conf_load_buffer() and conf_resolve() in one pass, from a buffer of len bytes: every problem
 * of both is reported, in file order, and a text without youtrack.url or youtrack.token is
 * fine when env gives YTBRIDGE_YOUTRACK_URL or _TOKEN. name is used in messages; relative paths
 * are taken against the current directory; env NULL: the process's environment. Returns as
 * conf_load(); the secrets met are registered with the logger even when it fails.
 */
int conf_load_text(const char *text, size_t len, const char *name, const struct conf_env *env,
                   struct conf **out, struct conf_diags *diags);

/*
 * Validates the text of len bytes alone (name is used in messages) and records where each
 * secret comes from; pure: no file is read, no environment variable, no logger state touched
 * (messages are redacted against the secrets of the text itself). A text without youtrack.url
 * or youtrack.token is refused here: only conf_resolve() knows the environment. Returns as
 * conf_load(); *out must go through conf_resolve() before it is used.
 */
int conf_load_buffer(const char *text, size_t len, const char *name, struct conf **out,
                     struct conf_diags *diags);

/*
 * The second step, once, on what conf_load_buffer() returned: reads each *_file (permissions
 * checked: readable by others is a warning on the log) and *_env secret with env (NULL: the
 * process's environment), applies YTBRIDGE_YOUTRACK_URL and _TOKEN, checks youtrack.ca_file and
 * cluster.ca_file, cert_file and key_file, sets cluster.member when the text left it to
 * YTBRIDGE_MEMBER or the host name, builds the chat.matrix reply sinks and registers every secret
 * with log_add_secret(). Returns 0, or -EINVAL with diagnostics added to diags (conf is then unfit
 * for use; free it), or -ENOMEM.
 */
int conf_resolve(struct conf *conf, const struct conf_env *env, struct conf_diags *diags);

void conf_free(struct conf *conf);

/* Formats one diagnostic as "FILE:LINE: message" (or "FILE: message") into buf. */
void conf_diag_format(const struct conf_diag *d, char *buf, size_t len);

void conf_diags_fini(struct conf_diags *diags);

#endif
