/*
 * Secret settings: which of KEY, KEY_file and KEY_env a group sets, the checks of a value, a
 * secret pasted where a path or a variable name belongs, and where each one is recorded. Pure:
 * an inline value is checked and handed over at once; a file or a variable is recorded (struct
 * conf_secret, struct secret_use) for conf_resolve() to read.
 *
 * Invariant: every secret met is noted (note_secret()) and no message formats one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_loader.h"

/* Tokens travel in an HTTP header: anything that could split or corrupt it is refused. */
int token_ok(const char *t)
{
    for (; *t; t++) {
        unsigned char c = (unsigned char)*t;
        if (c <= 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

/*
 * Whether the value of a *_file (or *_env) setting that names nothing looks like the secret
 * itself, pasted there by mistake: then the message must not repeat it. Asked only after the
 * file (variable) was not found, so a real path that happens to match is never refused. Flagged:
 * - the prefixes of the tokens this bridge is given: YouTrack "perm:"/"perm-", Slack "xapp-",
 *   "xoxb-", "xoxp-", Matrix "syt_", and "Bearer ";
 * - anything with "://": a path never holds one, and a webhook URL is itself a secret;
 * - a long (24+) word without '/' or whitespace that mixes upper case, lower case and digits
 *   and does not end like a file name (".txt", ".token"): random, not chosen by a person.
 * A short or word-like typo ("tokn.txt") is still shown: it is a path that is wrong, and
 * seeing it is how the operator finds the mistake.
 */
int looks_like_secret(const char *v)
{
    static const char *const prefixes[] = {"perm:", "perm-", "xapp-",  "xoxb-",
                                           "xoxp-", "syt_",  "Bearer "};
    size_t n = strlen(v);
    int upper = 0, lower = 0, digit = 0;
    const char *dot = strrchr(v, '.');

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        if (strncmp(v, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    }
    if (strstr(v, "://"))
        return 1;
    if (n < 24 || strchr(v, '/'))
        return 0;
    /* A short alphabetic extension: a file name someone chose. */
    if (dot && strlen(dot + 1) >= 1 && strlen(dot + 1) <= 6) {
        int alpha = 1;
        for (const char *e = dot + 1; *e; e++)
            alpha &= (*e >= 'a' && *e <= 'z') || (*e >= 'A' && *e <= 'Z');
        if (alpha)
            return 0;
    }
    for (const char *c = v; *c; c++) {
        if ((unsigned char)*c <= 0x20)
            return 0;
        upper |= *c >= 'A' && *c <= 'Z';
        lower |= *c >= 'a' && *c <= 'z';
        digit |= *c >= '0' && *c <= '9';
    }
    return upper && lower && digit;
}

/*
 * Finds which of KEY, KEY_file and KEY_env grp sets; an inline value is noted as a secret at
 * once, even when it is refused or unused. Returns 1 (src->which, value, line and label set), 0
 * when none is set, -1 when more than one is or one is not a string (reported).
 */
int secret_find(struct loader *ld, const config_setting_t *grp, struct secret_src *src)
{
    char keys[3][64];
    const config_setting_t *given[3];
    const char *names[3];
    int n = 0, typed = 1;

    snprintf(keys[0], sizeof(keys[0]), "%s", src->key);
    snprintf(keys[1], sizeof(keys[1]), "%s_file", src->key);
    snprintf(keys[2], sizeof(keys[2]), "%s_env", src->key);
    src->line = 0;
    for (int i = 0; i < 3; i++) {
        const config_setting_t *s = grp ? config_setting_get_member(grp, keys[i]) : NULL;
        given[i] = s;
        if (!s)
            continue;
        names[n++] = keys[i];
        if (line_of(s) > src->line)
            src->line = line_of(s);
        if (!member(ld, grp, src->gpath, keys[i], CONFIG_TYPE_STRING))
            typed = 0;
        else if (i == 0)
            note_secret(ld, config_setting_get_string(s));
    }
    if (n == 2)
        diag_add(ld, src->line, "%s: %s and %s are mutually exclusive (set only one)", src->gpath,
                 names[0], names[1]);
    else if (n == 3)
        diag_add(ld, src->line, "%s: %s, %s and %s are mutually exclusive (set only one)",
                 src->gpath, keys[0], keys[1], keys[2]);
    if (n == 0)
        return 0;
    if (n > 1 || !typed)
        return -1;
    for (int i = 0; i < 3; i++) {
        if (given[i]) {
            src->value = config_setting_get_string(given[i]);
            src->which = (enum conf_secret_from)i;
            key_path(src->label, sizeof(src->label), src->gpath, keys[i]);
        }
    }
    return 1;
}

/*
 * Reports a *_file/_env value that looks_like_secret() without repeating it (it is registered
 * as a secret, so no later line shows it either). what: "path" or "variable name".
 */
void secret_misplaced(struct loader *ld, const struct secret_src *src, const char *value,
                      const char *what, const char *fix)
{
    note_secret(ld, value);
    diag_add(ld, src->line, "%s: the value looks like a %s, not a %s; %s", src->label, src->noun,
             what, fix);
}

void secret_missing(struct loader *ld, int line, const struct secret_src *src)
{
    diag_add(ld, line, "%s: missing %s (set %s, %s_file or %s_env)", src->gpath, src->key, src->key,
             src->key, src->key);
}

/*
 * Checks a secret read from where (a file or variable name for messages; NULL: inline) by its
 * kind and stores a copy in *out. 0 or -1 (reported).
 */
int secret_accept(struct loader *ld, const struct secret_src *src, const char *v, const char *where,
                  char **out)
{
    if (src->kind == SECRET_TOKEN && !token_ok(v)) {
        if (where)
            diag_add(ld, src->line, "%s: the %s in %s contains whitespace or control characters",
                     src->label, src->noun, where);
        else
            diag_add(ld, src->line, "%s: contains whitespace or control characters", src->label);
        return -1;
    }
    *out = strdup(v);
    if (!*out) {
        ld->nomem = 1;
        return -1;
    }
    return 0;
}

/* Appends a copy of s to *v (*n entries). 0 or -1 (out of memory, recorded). */
static int strv_add(struct loader *ld, char ***v, size_t *n, const char *s)
{
    char **w = realloc(*v, (*n + 1) * sizeof(*w));

    if (!w) {
        ld->nomem = 1;
        return -1;
    }
    *v = w;
    w[*n] = str_dup(ld, s);
    if (!w[*n])
        return -1;
    (*n)++;
    return 0;
}

/*
 * Notes the secret given inline through KEY of grp, if any, without checking it; a variable
 * named by KEY_env is recorded for conf_resolve(), which notes its value.
 */
static void note_secret_early(struct loader *ld, const config_setting_t *grp, const char *key)
{
    struct conf_pending *p = ld->conf->pending;
    const config_setting_t *s = config_setting_get_member(grp, key);
    const char *v;
    char env_key[64];

    v = s ? config_setting_get_string(s) : NULL;
    if (v)
        note_secret(ld, v);
    snprintf(env_key, sizeof(env_key), "%s_env", key);
    s = config_setting_get_member(grp, env_key);
    v = s ? config_setting_get_string(s) : NULL;
    if (v && *v)
        strv_add(ld, &p->env_names, &p->n_env_names, v);
}

void note_secrets_early(struct loader *ld, const config_setting_t *root)
{
    static const char *const sink_secrets[] = {"webhook_url", "url", "secret", "access_token"};
    const config_setting_t *yt = config_setting_get_member(root, "youtrack");
    const config_setting_t *list = config_setting_get_member(root, "sinks");
    int n = list && config_setting_is_list(list) ? config_setting_length(list) : 0;

    const config_setting_t *chat = config_setting_get_member(root, "chat");
    const config_setting_t *cluster = config_setting_get_member(root, "cluster");
    const config_setting_t *cs;

    if (yt && config_setting_is_group(yt))
        note_secret_early(ld, yt, "token");
    cs = chat && config_setting_is_group(chat) ? config_setting_get_member(chat, "slack") : NULL;
    if (cs && config_setting_is_group(cs)) {
        note_secret_early(ld, cs, "app_token");
        note_secret_early(ld, cs, "bot_token");
    }
    cs = chat && config_setting_is_group(chat) ? config_setting_get_member(chat, "matrix") : NULL;
    if (cs && config_setting_is_group(cs))
        note_secret_early(ld, cs, "access_token");
    if (cluster && config_setting_is_group(cluster))
        note_secret_early(ld, cluster, "password");
    for (int i = 0; i < n && i < CONF_MAX_SINKS; i++) {
        const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        if (!config_setting_is_group(g))
            continue;
        for (size_t k = 0; k < sizeof(sink_secrets) / sizeof(sink_secrets[0]); k++)
            note_secret_early(ld, g, sink_secrets[k]);
    }
}

void secret_store(struct loader *ld, struct secret_src src, char *value, void *dest)
{
    (void)ld;
    (void)src;
    *(char **)dest = value;
}

/* Adds src to ld->conf->secrets; its index, or -1 (out of memory, recorded). */
static long secret_record(struct loader *ld, const struct secret_src *src)
{
    struct conf *c = ld->conf;
    struct conf_secret *v = realloc(c->secrets, (c->n_secrets + 1) * sizeof(*v));

    if (!v) {
        ld->nomem = 1;
        return -1;
    }
    c->secrets = v;
    v += c->n_secrets;
    *v = (struct conf_secret){.line = src->line, .from = src->which};
    v->setting = str_dup(ld, src->label);
    if (src->which != CONF_SECRET_INLINE)
        v->source = str_dup(ld, src->value);
    if (!v->setting || (src->which != CONF_SECRET_INLINE && !v->source)) {
        free(v->setting);
        free(v->source);
        return -1;
    }
    return (long)c->n_secrets++;
}

void secret_take(struct loader *ld, const struct secret_src *src, secret_take_fn *take, void *dest)
{
    struct conf_pending *p = ld->conf->pending;
    struct secret_use *v;
    long index = secret_record(ld, src);
    char *value = NULL;

    if (index < 0)
        return;
    if (!*src->value) {
        diag_add(ld, src->line, "%s: must not be empty", src->label);
        return;
    }
    if (src->which == CONF_SECRET_INLINE) {
        if (secret_accept(ld, src, src->value, NULL, &value) == 0)
            take(ld, *src, value, dest);
        return;
    }
    v = realloc(p->uses, (p->n_uses + 1) * sizeof(*v));
    if (!v) {
        ld->nomem = 1;
        return;
    }
    p->uses = v;
    v += p->n_uses++;
    *v = (struct secret_use){.secret = (size_t)index,
                             .noun = src->noun,
                             .kind = src->kind,
                             .slot = diag_slot(ld),
                             .take = take,
                             .dest = dest};
    if (src->which == CONF_SECRET_FILE)
        v->path = path_resolve(ld, src->value);
}

void conf_pending_free(struct conf_pending *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_uses; i++)
        free(p->uses[i].path);
    free(p->uses);
    for (size_t i = 0; i < p->n_noted; i++)
        secret_free(p->noted[i]);
    free(p->noted);
    strv_free(p->env_names, p->n_env_names);
    for (size_t i = 0; i < p->n_files; i++) {
        free(p->files[i].label);
        free(p->files[i].written);
        free(p->files[i].path);
    }
    free(p->files);
    free(p);
}
