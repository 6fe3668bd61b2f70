/*
 * Sinks: the "sinks" list, each one's type, routing (events, projects, alerts) and target
 * (webhook URL, Matrix homeserver, room and token, signed webhook URL and key). A sink's keys are
 * checked against its type: a key of another type is named as such.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_loader.h"
#include "project.h"

#define SINK_NAME_MAX       64
#define PROJECT_PATTERN_MAX 256

/* Indexed by enum conf_sink_type. */
static const char *const sink_types[] = {"stdout", "slack", "matrix", "webhook", "hookshot"};

const char *conf_sink_type_name(enum conf_sink_type t)
{
    if (t == CONF_SINK_SLACK_BOT)
        return "slack_bot"; /* a subscription's sink: no configuration file names it */
    if ((unsigned)t >= sizeof(sink_types) / sizeof(sink_types[0]))
        return "unknown";
    return sink_types[t];
}

#define SINK_T(t)   (1u << (t))
#define SINK_ANY    0x1fu
#define SINK_REMOTE (SINK_ANY & ~SINK_T(CONF_SINK_STDOUT))

/* Every key of a sink group and the types that accept it. */
static const struct {
    const char *key;
    unsigned types; /* SINK_T(enum conf_sink_type) bits */
} sink_keys[] = {
    {"name", SINK_ANY},
    {"type", SINK_ANY},
    {"events", SINK_ANY},
    {"projects", SINK_ANY},
    {"alerts", SINK_ANY},
    {"format", SINK_T(CONF_SINK_STDOUT)},
    {"webhook_url", SINK_T(CONF_SINK_SLACK)},
    {"webhook_url_file", SINK_T(CONF_SINK_SLACK)},
    {"webhook_url_env", SINK_T(CONF_SINK_SLACK)},
    {"homeserver", SINK_T(CONF_SINK_MATRIX)},
    {"room", SINK_T(CONF_SINK_MATRIX)},
    {"access_token", SINK_T(CONF_SINK_MATRIX)},
    {"access_token_file", SINK_T(CONF_SINK_MATRIX)},
    {"access_token_env", SINK_T(CONF_SINK_MATRIX)},
    {"url", SINK_T(CONF_SINK_WEBHOOK) | SINK_T(CONF_SINK_HOOKSHOT)},
    {"url_file", SINK_T(CONF_SINK_WEBHOOK) | SINK_T(CONF_SINK_HOOKSHOT)},
    {"url_env", SINK_T(CONF_SINK_WEBHOOK) | SINK_T(CONF_SINK_HOOKSHOT)},
    {"secret", SINK_T(CONF_SINK_WEBHOOK)},
    {"secret_file", SINK_T(CONF_SINK_WEBHOOK)},
    {"secret_env", SINK_T(CONF_SINK_WEBHOOK)},
    {"allow_insecure", SINK_REMOTE},
};

#define SINK_N_TYPES (sizeof(sink_types) / sizeof(sink_types[0]))
#define SINK_N_KEYS  (sizeof(sink_keys) / sizeof(sink_keys[0]))

_Static_assert(sizeof(sink_types) / sizeof(sink_types[0]) == CONF_SINK_HOOKSHOT + 1,
               "sink_types follows enum conf_sink_type");
_Static_assert(CONF_EVENTS_ALL == (1u << (CHANGE_REMOVED + 1)) - 1,
               "CONF_EVENTS_ALL has one bit per enum change_kind");

/* Unknown keys and keys of another type; type < 0 (missing or invalid): any sink key is fine. */
static void check_sink_keys(struct loader *ld, const config_setting_t *g, const char *path,
                            int type)
{
    const char *valid[SINK_N_KEYS], *foreign[SINK_N_KEYS];
    size_t n_valid = 0, n_foreign = 0;
    char owner[32];

    for (size_t i = 0; i < SINK_N_KEYS; i++) {
        if (type < 0 || (sink_keys[i].types & SINK_T(type)))
            valid[n_valid++] = sink_keys[i].key;
        else
            foreign[n_foreign++] = sink_keys[i].key;
    }
    snprintf(owner, sizeof(owner), "a %s sink", type < 0 ? "" : sink_types[type]);
    check_keys_of(ld, g, path, valid, n_valid, foreign, n_foreign, type < 0 ? NULL : owner);
}

static int sink_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > SINK_NAME_MAX)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

static void load_sink_name(struct loader *ld, const config_setting_t *g, const char *path,
                           struct conf *c, int i)
{
    const config_setting_t *s = config_setting_get_member(g, "name");
    const char *name = get_string(ld, g, path, "name");
    char shown[80];

    if (!s) {
        diag_add(ld, line_of(g), "%s: missing name", path);
        return;
    }
    if (!name)
        return;
    if (!sink_name_ok(name)) {
        diag_add(ld, line_of(s), "%s.name: \"%s\" must be 1 to %d of A-Z a-z 0-9 _ . -", path,
                 printable(ld, name, shown, sizeof(shown)), SINK_NAME_MAX);
        return;
    }
    for (int j = 0; j < i; j++) {
        if (c->sinks[j].name && strcmp(c->sinks[j].name, name) == 0) {
            diag_add(ld, line_of(s), "%s.name: \"%s\" is already used by sinks[%d]", path, name, j);
            break;
        }
    }
    c->sinks[i].name = str_dup(ld, name);
}

static void load_sink_events(struct loader *ld, const config_setting_t *g, const char *path,
                             struct conf_sink *sink)
{
    /* In the order the documentation lists them. */
    static const char *const names[] = {"created", "removed", "renamed", "archived", "unarchived"};
    static const enum change_kind kinds[] = {CHANGE_CREATED, CHANGE_REMOVED, CHANGE_RENAMED,
                                             CHANGE_ARCHIVED, CHANGE_UNARCHIVED};
    const config_setting_t *s = get_strings(ld, g, path, "events", "event");
    char list[160], shown[80];
    unsigned events = 0;
    int n = s ? config_setting_length(s) : 0;

    if (!s)
        return;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *v = config_setting_get_string(e);
        size_t k = 0;

        if (!v)
            continue;
        while (k < 5 && strcmp(v, names[k]) != 0)
            k++;
        if (k < 5)
            events |= 1u << kinds[k];
        else
            diag_add(ld, line_of(e) > 0 ? line_of(e) : line_of(s),
                     "%s.events[%d]: must be %s (got \"%s\")", path, i,
                     choice_list(names, 5, list, sizeof(list)),
                     printable(ld, v, shown, sizeof(shown)));
    }
    sink->events = events;
}

/* sink->projects has room for it. 0 or -1 (out of memory). */
static int sink_add_project(struct loader *ld, struct conf_sink *sink, const char *pattern)
{
    char *p = str_dup(ld, pattern);

    if (!p)
        return -1;
    sink->projects[sink->n_projects++] = p;
    return 0;
}

/* The default of projects: every project. */
static void sink_all_projects(struct loader *ld, struct conf_sink *sink)
{
    sink->projects = calloc(1, sizeof(*sink->projects));
    if (!sink->projects)
        ld->nomem = 1;
    else
        sink_add_project(ld, sink, "*");
}

static void load_sink_projects(struct loader *ld, const config_setting_t *g, const char *path,
                               struct conf_sink *sink)
{
    const config_setting_t *s;
    int n;

    if (!config_setting_get_member(g, "projects")) {
        sink_all_projects(ld, sink);
        return;
    }
    s = get_strings(ld, g, path, "projects", "pattern");
    n = s ? config_setting_length(s) : 0;
    if (!s)
        return;
    sink->projects = strv_alloc(ld, n);
    if (!sink->projects)
        return;
    for (int i = 0; i < n; i++) {
        int line;
        const char *v = elem_string(s, i, &line);

        if (!v)
            continue;
        if (!*v)
            diag_add(ld, line, "%s.projects[%d]: must not be empty", path, i);
        else if (strlen(v) > PROJECT_PATTERN_MAX)
            diag_add(ld, line, "%s.projects[%d]: longer than %d bytes", path, i,
                     PROJECT_PATTERN_MAX);
        else if (strcmp(v, "!") == 0)
            diag_add(ld, line, "%s.projects[%d]: \"!\" must be followed by a pattern", path, i);
        else if (sink_add_project(ld, sink, v) < 0)
            return;
    }
}

/* A sink's URL once read: it is itself a secret, checked here (raw is freed). */
static void sink_url_take(struct loader *ld, struct secret_src src, char *raw, void *dest)
{
    struct conf_sink *sink = dest;

    url_check(ld, src.line, src.label, raw,
              URL_ENDPOINT | (sink->allow_insecure ? URL_INSECURE_OK : 0u), NULL, &sink->url);
    secret_free(raw);
}

/* A URL that is itself a secret (Slack, webhook, hookshot): KEY, KEY_file or KEY_env. */
static void load_sink_url(struct loader *ld, const config_setting_t *g, const char *path,
                          const char *key, struct conf_sink *sink)
{
    struct secret_src src = {.gpath = path, .key = key, .noun = "URL", .kind = SECRET_URL};
    int found = secret_find(ld, g, &src);

    if (found == 0)
        secret_missing(ld, line_of(g), &src);
    else if (found == 1)
        secret_take(ld, &src, sink_url_take, sink);
}

static void load_sink_matrix(struct loader *ld, const config_setting_t *g, const char *path,
                             struct conf_sink *sink)
{
    struct secret_src src = {
        .gpath = path, .key = "access_token", .noun = "access token", .kind = SECRET_TOKEN};
    const char *hs = get_string(ld, g, path, "homeserver");
    const char *room = get_string(ld, g, path, "room");
    int line = line_of(config_setting_get_member(g, "room"));
    char label[160], shown[80];
    int found;

    if (!config_setting_get_member(g, "homeserver")) {
        diag_add(ld, line_of(g), "%s: missing homeserver", path);
    } else if (hs) {
        key_path(label, sizeof(label), path, "homeserver");
        url_check(ld, line_of(config_setting_get_member(g, "homeserver")), label, hs,
                  sink->allow_insecure ? URL_INSECURE_OK : 0u, "access_token", &sink->homeserver);
    }

    if (!config_setting_get_member(g, "room")) {
        diag_add(ld, line_of(g), "%s: missing room", path);
    } else if (room) {
        const char *colon = strchr(room, ':');
        if ((room[0] != '!' && room[0] != '#') || room[1] == '\0')
            diag_add(ld, line,
                     "%s.room: must be a room id \"!id:server\" or an alias \"#alias:server\" "
                     "(got \"%s\")",
                     path, printable(ld, room, shown, sizeof(shown)));
        else if (strlen(room) > MATRIX_ROOM_MAX)
            diag_add(ld, line, "%s.room: longer than %d bytes", path, MATRIX_ROOM_MAX);
        else if (!token_ok(room))
            diag_add(ld, line, "%s.room: contains whitespace or control characters", path);
        else if (room[0] == '#' && (!colon || colon == room + 1 || colon[1] == '\0'))
            /* Room ids need not name a server (room version 12); aliases always do. */
            diag_add(ld, line, "%s.room: an alias must be \"#alias:server\" (got \"%s\")", path,
                     printable(ld, room, shown, sizeof(shown)));
        else
            sink->room = str_dup(ld, room);
    }

    found = secret_find(ld, g, &src);
    if (found == 0)
        secret_missing(ld, line_of(g), &src);
    else if (found == 1)
        secret_take(ld, &src, secret_store, &sink->access_token);
}

static void load_sink(struct loader *ld, const config_setting_t *g, const char *path,
                      struct conf *c, int i)
{
    static const char *const formats[] = {"text", "json"};
    struct conf_sink *sink = &c->sinks[i];
    const config_setting_t *s;
    int type = -1, format = LOG_FORMAT_TEXT;

    if (!config_setting_get_member(g, "type"))
        diag_add(ld, line_of(g), "%s: missing type", path);
    else
        get_choice(ld, g, path, "type", sink_types, SINK_N_TYPES, &type);
    check_sink_keys(ld, g, path, type);
    load_sink_name(ld, g, path, c, i);
    load_sink_events(ld, g, path, sink);
    load_sink_projects(ld, g, path, sink);
    s = member(ld, g, path, "alerts", CONFIG_TYPE_BOOL);
    if (s)
        sink->alerts = config_setting_get_bool(s) ? 1 : 0;
    if (type < 0)
        return; /* reported; its type's keys cannot be checked */
    sink->type = (enum conf_sink_type)type;
    if (type != CONF_SINK_STDOUT) {
        s = member(ld, g, path, "allow_insecure", CONFIG_TYPE_BOOL);
        if (s)
            sink->allow_insecure = config_setting_get_bool(s) ? 1 : 0;
    }

    switch (sink->type) {
    case CONF_SINK_STDOUT:
        get_choice(ld, g, path, "format", formats, 2, &format);
        sink->format = (enum log_format)format;
        break;
    case CONF_SINK_SLACK:
        load_sink_url(ld, g, path, "webhook_url", sink);
        break;
    case CONF_SINK_MATRIX:
        load_sink_matrix(ld, g, path, sink);
        break;
    case CONF_SINK_WEBHOOK: {
        struct secret_src src = {
            .gpath = path, .key = "secret", .noun = "secret", .kind = SECRET_KEY};
        load_sink_url(ld, g, path, "url", sink);
        if (secret_find(ld, g, &src) == 1)
            secret_take(ld, &src, secret_store, &sink->secret);
        break;
    }
    case CONF_SINK_HOOKSHOT:
        load_sink_url(ld, g, path, "url", sink);
        break;
    case CONF_SINK_SLACK_BOT: /* not a choice of "type" (sink_types ends before it) */
        break;
    }
}

/* What every sink starts with (projects is filled by load_sink_projects()). */
static void sink_defaults(struct conf_sink *sink)
{
    sink->events = CONF_EVENTS_ALL;
    sink->alerts = 1;
    sink->format = LOG_FORMAT_TEXT;
}

void load_sinks(struct loader *ld, const config_setting_t *root, struct conf *c)
{
    const config_setting_t *list = member(ld, root, "", "sinks", CONFIG_TYPE_LIST);
    int n = list ? config_setting_length(list) : 0;
    char path[32];

    if (n > CONF_MAX_SINKS) {
        diag_add(ld, line_of(list), "sinks: at most %d sinks are supported (got %d)",
                 CONF_MAX_SINKS, n);
        return;
    }
    c->sinks = calloc(n > 0 ? (size_t)n : 1, sizeof(*c->sinks));
    if (!c->sinks) {
        ld->nomem = 1;
        return;
    }
    if (n == 0) {
        struct conf_sink *sink = &c->sinks[c->n_sinks++];
        sink_defaults(sink);
        sink->name = str_dup(ld, "stdout");
        sink_all_projects(ld, sink);
        return;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        struct conf_sink *sink = &c->sinks[c->n_sinks++];

        sink_defaults(sink);
        sink->line = line_of(g);
        snprintf(path, sizeof(path), "sinks[%d]", i);
        if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
            diag_add(ld, line_of(g), "%s: expected a group, got %s", path,
                     type_name(config_setting_type(g)));
            continue;
        }
        load_sink(ld, g, path, c, i);
    }
}

const struct conf_sink *conf_find_sink(const struct conf *conf, const char *name)
{
    for (size_t i = 0; i < conf->n_sinks; i++) {
        if (strcmp(conf->sinks[i].name, name) == 0)
            return &conf->sinks[i];
    }
    for (size_t i = 0; i < conf->chat.matrix.n_reply_sinks; i++) {
        if (strcmp(conf->chat.matrix.reply_sinks[i].name, name) == 0)
            return &conf->chat.matrix.reply_sinks[i];
    }
    return NULL;
}

void sinks_free(struct conf_sink *sinks, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct conf_sink *s = &sinks[i];
        free(s->name);
        for (size_t j = 0; j < s->n_projects; j++)
            free(s->projects[j]);
        free(s->projects);
        secret_free(s->url);
        secret_free(s->secret);
        free(s->homeserver);
        free(s->room);
        secret_free(s->access_token);
    }
    free(sinks);
}
