/*
 * The configuration loader's inside, shared by the conf*.c files and by nothing else (conf.h is
 * the module's interface). The helpers keep the short names they had when they were the
 * statics of one file.
 *
 * The files, each calling only the ones listed before it:
 * - conf.c: diagnostics, typed getters, url_check();
 * - conf_lex.c: the pre-scan of the text before libconfig sees it;
 * - conf_secret.c: where each secret comes from (inline, KEY_file, KEY_env), and the checks of
 *   a secret's value;
 * - conf_sink.c: sinks; conf_chat.c: chat.slack and chat.matrix; conf_cluster.c: cluster;
 * - conf_walk.c: the walk of a text (load_text()): the root and the youtrack, notify, log and
 *   http groups; conf_load_buffer(), conf_free();
 * - conf_resolve.c: conf_resolve(), conf_load(), conf_load_text(): the only conf*.c file that
 *   reads a file or the environment or calls the logger. Everything the others do is a function
 *   of the text they are given: that is what makes conf_load_buffer() pure and fuzzable.
 *
 * Diagnostics are kept back (struct pending_diag) until the load is finished, then sorted into
 * file order, rendered and published: only then is every secret known, so a value quoted in a
 * message (printable()) is redacted against secrets that were read after the message was made.
 */
#ifndef YTB_CONF_LOADER_H
#define YTB_CONF_LOADER_H

#include <libconfig.h>
#include <stddef.h>

#include "conf.h"

#define CONF_MAX_SIZE   (1024 * 1024)
#define CONF_MAX_DEPTH  32
#define CONF_MAX_DIAGS  50
#define CONF_MAX_SINKS  64
#define MATRIX_ROOM_MAX 255

/*
 * Tags of the diagnostics an environment override makes moot: youtrack.url's (missing or
 * refused) when YTBRIDGE_YOUTRACK_URL replaces it, youtrack.token's when YTBRIDGE_YOUTRACK_TOKEN
 * does. The walk tags them; conf_resolve() withdraws them when the variable is set.
 */
enum {
    DIAG_TAG_URL = 1,
    DIAG_TAG_TOKEN = 2,
};

/* A diagnostic kept back until loader_finish(): msg holds printable() placeholders. */
struct pending_diag {
    int line;
    unsigned seq; /* its place in the walk, for diagnostics of one line */
    unsigned tag; /* DIAG_TAG_* */
    char *msg;
};

/* A value printable() quotes, rendered when the message is published. */
struct quote {
    char *text;
    size_t len; /* the size of the caller's buffer: what the rendered quote must fit */
};

struct loader {
    const char *file;         /* name used in diagnostics */
    const char *dir;          /* base of relative paths; NULL: the current directory */
    struct conf_diags *diags; /* where loader_finish() publishes */
    struct conf *conf;        /* what is being built (load_text()) or resolved */
    struct pending_diag *pending;
    size_t n_pending;
    size_t n_added;
    struct quote *quotes;
    size_t n_quotes;
    char **noted; /* every secret met (note_secret()), to redact messages and register */
    size_t n_noted;
    /*
     * Order: each diagnostic takes the next seq; a secret conf_resolve() will read reserves one
     * (diag_slot()) so that its diagnostics sort where the walk met it. While resolving,
     * diagnostics take the slot in at.
     */
    unsigned seq;
    unsigned at;
    int resolving;
    unsigned tag;       /* DIAG_TAG_* given to diagnostics made now */
    unsigned withdrawn; /* DIAG_TAG_* whose diagnostics an override made moot */
    int nomem;
};

/* Renders one message: copies src into dst (size dstlen) with the secrets redacted. */
typedef void redact_fn(char *dst, size_t dstlen, const char *src, void *ctx);

/* conf.c: diagnostics. */
void diag_add(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
unsigned diag_slot(struct loader *ld);
/*
 * A bounded, printable quote of a user-supplied (non-secret) string s for a diagnostic. Writes
 * a placeholder into buf (size len); when the message is rendered it becomes s with every
 * secret of the load redacted, control characters as '?', cut with "..." to fit len.
 */
const char *printable(struct loader *ld, const char *s, char *buf, size_t len);
/* The same, rendered at once with redact (for a log line). */
const char *printable_now(const char *s, char *buf, size_t len, redact_fn *redact, void *ctx);
/*
 * Publishes the diagnostics made so far into ld->diags: the withdrawn ones dropped, the rest in
 * file order, rendered with redact. 0, -EINVAL when there was one, or -ENOMEM.
 */
int loader_finish(struct loader *ld, redact_fn *redact, void *ctx);
/* Frees what ld holds (the secrets in noted zeroed first). */
void loader_fini(struct loader *ld);
/* Remembers a secret: messages are redacted against it, conf_resolve() registers it. */
void note_secret(struct loader *ld, const char *s);
char *str_dup(struct loader *ld, const char *s);
void strv_free(char **v, size_t n);
/* free() of a string that held a secret, zeroed first. */
void secret_free(char *s);

/* conf.c: typed getters. Each reports what it refuses. */
int line_of(const config_setting_t *s);
const char *type_name(int type);
void key_path(char *buf, size_t len, const char *group, const char *key);
void check_keys_of(struct loader *ld, const config_setting_t *grp, const char *gpath,
                   const char *const *keys, size_t n_keys, const char *const *foreign,
                   size_t n_foreign, const char *owner);
void check_keys(struct loader *ld, const config_setting_t *grp, const char *gpath,
                const char *const *keys, size_t n_keys);
const config_setting_t *member(struct loader *ld, const config_setting_t *grp, const char *gpath,
                               const char *key, int want);
void get_int(struct loader *ld, const config_setting_t *grp, const char *gpath, const char *key,
             long long min, long long max, long long *out);
const char *get_string(struct loader *ld, const config_setting_t *grp, const char *gpath,
                       const char *key);
const char *choice_list(const char *const *names, size_t n, char *buf, size_t len);
void get_choice(struct loader *ld, const config_setting_t *grp, const char *gpath, const char *key,
                const char *const *names, size_t n, int *out);
const config_setting_t *get_strings(struct loader *ld, const config_setting_t *grp,
                                    const char *gpath, const char *key, const char *what);
char *path_resolve(struct loader *ld, const char *p);
/* A zeroed array for the n (> 0) strings of a list; NULL when out of memory (recorded). */
char **strv_alloc(struct loader *ld, int n);
/*
 * Element i of the list s: its string, or NULL when it is not one (get_strings() reports that),
 * and in *line where it is (the list's line when libconfig has none for the element).
 */
const char *elem_string(const config_setting_t *s, int i, int *line);
/*
 * A file named by the setting label (line) with the value written: *out gets its path (against
 * the configuration's directory) and conf_resolve() checks that it can be read. what names the
 * kind of file ("a CA bundle"); secret: a private key (a warning when others can read it).
 */
void file_take(struct loader *ld, const char *label, int line, const char *written,
               const char *what, int secret, char **out);

/* conf.c: URLs. */
enum {
    URL_ENDPOINT = 1,    /* posted to as given: a query is allowed, a trailing '/' kept */
    URL_INSECURE_OK = 2, /* allow_insecure: plain http:// to any host */
    URL_ORIGIN = 4,      /* scheme://host[:port] alone: no path but "/"; stored as
                            "scheme://host:port", the port filled in */
};
void url_check(struct loader *ld, int line, const char *label, const char *url, unsigned flags,
               const char *cred, char **out);
/*
 * url_check() with the two things its messages name given apart: use, the setting to use
 * instead of credentials in the URL (NULL: none), and exposed, what plain http:// would send
 * in clear text.
 */
void url_check_as(struct loader *ld, int line, const char *label, const char *url, unsigned flags,
                  const char *use, const char *exposed, char **out);

/*
 * conf_walk.c: the walk of a text. Returns the configuration built from it, diagnostics or not
 * (NULL when the text cannot be read as a configuration or memory ran out); its pending part
 * says what conf_resolve() still has to do.
 */
struct conf *load_text(struct loader *ld, const char *text, size_t len);

/* conf_lex.c: refuses what libconfig would mishandle. 0 or -1 (reported). */
int prescan(struct loader *ld, const char *s, size_t len);

/* conf_secret.c: secrets. */
enum secret_kind {
    SECRET_TOKEN,    /* sent in an HTTP header: token_ok() */
    SECRET_URL,      /* url_check() by the caller */
    SECRET_KEY,      /* any bytes but NUL (an HMAC key) */
    SECRET_PASSWORD, /* any bytes but NUL; chosen by a person, so a *_file or *_env value that
                        names nothing is never quoted: it may be the password itself */
};

/*
 * One secret setting KEY of a group, given inline (KEY), in a file (KEY_file) or in the
 * environment (KEY_env). The caller fills the first four; secret_find() the rest.
 */
struct secret_src {
    const char *gpath; /* "youtrack", "sinks[2]" */
    const char *key;   /* "token", "webhook_url" */
    const char *noun;  /* "token", "URL": "the token in FILE contains ..." */
    enum secret_kind kind;
    enum conf_secret_from which; /* the one of the three that is set */
    const char *value;           /* its string */
    int line;
    char label[160]; /* the setting given, "sinks[2].webhook_url_file", for messages */
};

/*
 * Stores a secret's value once read (checking it first where the setting asks more of it);
 * takes value (malloc'ed). dest is what secret_take() was given.
 */
typedef void secret_take_fn(struct loader *ld, struct secret_src src, char *value, void *dest);

/* What conf_resolve() still has to read for one secret (see struct conf_pending). */
struct secret_use {
    size_t secret; /* index into conf->secrets */
    char *path;    /* CONF_SECRET_FILE: the file, against the configuration's directory */
    const char *noun;
    enum secret_kind kind;
    unsigned slot;
    secret_take_fn *take;
    void *dest; /* inside the configuration, which never moves (its sinks are allocated once) */
};

/* A file a setting names, for conf_resolve() to check (file_take()). */
struct file_use {
    char *label;      /* the setting: "youtrack.ca_file" */
    char *written;    /* its value as written */
    char *path;       /* against the configuration's directory */
    const char *what; /* "a CA bundle": "name a CA bundle file here" */
    int line;
    unsigned slot;
    int secret; /* a private key: a warning when group or others can read it */
};

/* The part of a configuration that conf_resolve() still has to act on. */
struct conf_pending {
    struct secret_use *uses; /* the secrets in files and variables, in file order */
    size_t n_uses;
    char **noted; /* the text's own secrets (inline values, URL credentials) */
    size_t n_noted;
    char **env_names; /* every KEY_env variable named: its value is a secret wherever it shows */
    size_t n_env_names;
    unsigned url_slot, token_slot; /* where YTBRIDGE_YOUTRACK_URL/TOKEN's messages sort */
    struct file_use *files;        /* the files settings name, in file order */
    size_t n_files;
    /* cluster.member left to YTBRIDGE_MEMBER or the host name: where, for messages. */
    int member_open;
    int member_line;
    unsigned member_slot;
};

int token_ok(const char *t);
int looks_like_secret(const char *v);
int secret_find(struct loader *ld, const config_setting_t *grp, struct secret_src *src);
void secret_missing(struct loader *ld, int line, const struct secret_src *src);
/*
 * What secret_find() found goes to take(dest): an inline value at once (checked by its kind),
 * a file or variable once conf_resolve() has read it. Either way it is recorded in
 * conf->secrets.
 */
void secret_take(struct loader *ld, const struct secret_src *src, secret_take_fn *take, void *dest);
secret_take_fn secret_store; /* *(char **)dest = value */
int secret_accept(struct loader *ld, const struct secret_src *src, const char *v, const char *where,
                  char **out);
void secret_misplaced(struct loader *ld, const struct secret_src *src, const char *value,
                      const char *what, const char *fix);
void note_secrets_early(struct loader *ld, const config_setting_t *root);
void conf_pending_free(struct conf_pending *p);

/* conf_sink.c */
void load_sinks(struct loader *ld, const config_setting_t *root, struct conf *c);
void sinks_free(struct conf_sink *sinks, size_t n);

/* conf_chat.c */
void load_chat(struct loader *ld, const config_setting_t *root, struct conf *c);
/* The chat.matrix reply sinks, once its access token is known (conf_resolve()). */
void chat_reply_sinks(struct loader *ld, struct conf *c);
void chat_free(struct conf *c);

/* conf_cluster.c */
void load_cluster(struct loader *ld, const config_setting_t *root, struct conf *c);
/* Whether v is a valid cluster.member: 1..63 of A-Z a-z 0-9 . _ - */
int cluster_member_ok(const char *v);
void conf_cluster_fini(struct conf_cluster *cl);

#endif
