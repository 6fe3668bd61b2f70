/*
 * The configuration loader's inside, shared by the conf*.c files and by nothing else (conf.h is
 * the module's interface). The helpers keep the short names they had when they were the
 * statics of one file.
 *
 * The files, by concern:
 * - conf.c: diagnostics, typed getters, url_check(), the youtrack/notify/log/http groups, the
 *   walk of the text, conf_load(), conf_load_buffer(), conf_free();
 * - conf_lex.c: the pre-scan of the text before libconfig sees it;
 * - conf_secret.c: secret settings (inline, KEY_file, KEY_env): finding, reading, checking;
 * - conf_sink.c: sinks; conf_chat.c: chat.slack and chat.matrix.
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
#define TOKEN_FILE_MAX  (64 * 1024)
#define MATRIX_ROOM_MAX 255

struct loader {
    const char *file; /* name used in diagnostics */
    const char *dir;  /* base of relative paths; NULL: the current directory */
    struct conf_diags *diags;
    size_t first; /* index of our first diagnostic in diags */
    size_t n_added;
    int nomem;
};

/* conf.c: diagnostics and strings. */
void diag_add(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
char *str_dup(struct loader *ld, const char *s);
void note_secret(struct loader *ld, const char *s);
const char *printable(const char *s, char *buf, size_t len);
void strv_free(char **v, size_t n);

/* conf.c: typed getters; each reports what it refuses. */
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

/* conf.c: URLs. */
enum {
    URL_ENDPOINT = 1,    /* posted to as given: a query is allowed, a trailing '/' kept */
    URL_INSECURE_OK = 2, /* allow_insecure: plain http:// to any host */
};
void url_check(struct loader *ld, int line, const char *label, const char *url, unsigned flags,
               const char *cred, char **out);

/* conf_lex.c: refuses what libconfig would mishandle. 0 or -1 (reported). */
int prescan(struct loader *ld, const char *s, size_t len);

/* conf_secret.c */
enum secret_kind {
    SECRET_TOKEN, /* sent in an HTTP header: token_ok() */
    SECRET_URL,   /* url_check() by the caller */
    SECRET_KEY,   /* any bytes but NUL (an HMAC key) */
};

/*
 * One secret setting KEY of a group, given inline (KEY), in a file (KEY_file) or in the
 * environment (KEY_env). Filled by secret_find(); read by secret_fetch().
 */
struct secret_src {
    const char *gpath; /* "youtrack", "sinks[2]" */
    const char *key;   /* "token", "webhook_url" */
    const char *noun;  /* "token", "URL": "the token in FILE contains ..." */
    enum secret_kind kind;
    const config_setting_t *given; /* the one of the three that is set */
    int which;                     /* 0: inline, 1: _file, 2: _env */
    int line;
    char label[160]; /* the setting given, "sinks[2].webhook_url_file", for messages */
};

int token_ok(const char *t);
int looks_like_secret(const char *v);
void secret_free(char *s);
int secret_find(struct loader *ld, const config_setting_t *grp, struct secret_src *src);
void secret_missing(struct loader *ld, int line, const struct secret_src *src);
int secret_fetch(struct loader *ld, const struct secret_src *src, char **out);
void load_token(struct loader *ld, const config_setting_t *yt, struct conf *c);
void note_secrets_early(struct loader *ld, const config_setting_t *root);

/* conf_sink.c */
void load_sinks(struct loader *ld, const config_setting_t *root, struct conf *c);
void sinks_free(struct conf_sink *sinks, size_t n);

/* conf_chat.c */
void load_chat(struct loader *ld, const config_setting_t *root, struct conf *c);
void chat_free(struct conf *conf);

#endif
