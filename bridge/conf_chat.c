/*
 * Chat: chat.slack (/youtrack over Socket Mode) and chat.matrix (!youtrack in rooms), their ids,
 * allow lists and rate limits, the Slack bot token and the managers of subscriptions
 * (subscription.h), and the internal reply sinks of chat.matrix.
 *
 * Invariant: every manage_users entry may use the command, i.e. is in allowed_users whenever
 * that list is not empty.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_loader.h"

/* Slack ids: "C0123ABCD", "U024BE7LH", "W..." (names change; ids do not). */
static int slack_id_ok(const char *v)
{
    size_t n = strlen(v);
    if (n < 2 || n > 32)
        return 0;
    for (; *v; v++) {
        if (!((*v >= 'A' && *v <= 'Z') || (*v >= '0' && *v <= '9')))
            return 0;
    }
    return 1;
}

/* Matrix ids with a sigil: "!room:server" (ids need no server from room version 12), "@u:s". */
static int matrix_room_id_ok(const char *v)
{
    return v[0] == '!' && v[1] && strlen(v) <= MATRIX_ROOM_MAX && token_ok(v);
}

static int matrix_user_id_ok(const char *v)
{
    const char *colon = strchr(v, ':');
    return v[0] == '@' && colon && colon > v + 1 && colon[1] && strlen(v) <= 255 && token_ok(v);
}

/* Whether v is one of the n strings of list. */
static int id_in(const char *v, char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], v) == 0)
            return 1;
    }
    return 0;
}

/*
 * A list of ids under key (absent or empty: *n stays 0). Each element must pass ok; hint says
 * what a valid one looks like. With n_allowed > 0 (manage_users) each must also be one of the
 * allowed_users: a manager who cannot use the command cannot manage anything.
 */
static void load_id_list(struct loader *ld, const config_setting_t *g, const char *gpath,
                         const char *key, int (*ok)(const char *), const char *hint,
                         char *const *allowed, size_t n_allowed, char ***out, size_t *n_out)
{
    const config_setting_t *s = member(ld, g, gpath, key, CONFIG_TYPE_ARRAY);
    char path[160], shown[80];
    int n = s ? config_setting_length(s) : 0;

    if (n <= 0)
        return;
    key_path(path, sizeof(path), gpath, key);
    *out = strv_alloc(ld, n);
    if (!*out)
        return;
    for (int i = 0; i < n; i++) {
        int line;
        const char *v = elem_string(s, i, &line);

        if (!v)
            diag_add(ld, line, "%s[%d]: expected a string, got %s", path, i,
                     type_name(config_setting_type(config_setting_get_elem(s, (unsigned)i))));
        else if (!ok(v))
            diag_add(ld, line, "%s[%d]: \"%s\" is not %s", path, i,
                     printable(ld, v, shown, sizeof(shown)), hint);
        else if (n_allowed > 0 && !id_in(v, allowed, n_allowed))
            diag_add(ld, line,
                     "%s[%d]: \"%s\" is not in allowed_users, so it cannot use the command at all",
                     path, i, printable(ld, v, shown, sizeof(shown)));
        else if (((*out)[(*n_out)++] = str_dup(ld, v)) == NULL)
            return;
    }
}

/* A short word without whitespace ("!youtrack"); with lead '/', a Slack command name. */
static void load_word(struct loader *ld, const config_setting_t *g, const char *gpath,
                      const char *key, const char *def, char lead, char **out)
{
    const char *v = get_string(ld, g, gpath, key);
    char path[160], shown[80];

    key_path(path, sizeof(path), gpath, key);
    if (v && lead &&
        (v[0] != lead || !v[1] || strlen(v) > 32 ||
         strspn(v + 1, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(v + 1))) {
        /* Slack command names: lower-case letters, digits, '-' and '_'. */
        diag_add(ld, line_of(config_setting_get_member(g, key)),
                 "%s: must be '%c' and up to 31 lower-case letters, digits, '-' or '_' (got "
                 "\"%s\")",
                 path, lead, printable(ld, v, shown, sizeof(shown)));
        v = NULL;
    } else if (v && (!*v || strlen(v) > 32 || !token_ok(v))) {
        diag_add(ld, line_of(config_setting_get_member(g, key)),
                 "%s: must be 1 to 32 characters without spaces (got \"%s\")", path,
                 printable(ld, v, shown, sizeof(shown)));
        v = NULL;
    }
    *out = str_dup(ld, v ? v : def);
}

/* commands_per_user / commands_per_second of a chat group (struct conf_chat_rate). */
static void load_chat_rate(struct loader *ld, const config_setting_t *g, const char *gpath,
                           struct conf_chat_rate *rate)
{
    long long v = CONF_CHAT_PER_USER_DEFAULT;

    get_int(ld, g, gpath, "commands_per_user", 1, 10000, &v);
    rate->per_user = (unsigned)v;
    v = CONF_CHAT_PER_SECOND_DEFAULT;
    get_int(ld, g, gpath, "commands_per_second", 1, 1000, &v);
    rate->per_second = (unsigned)v;
}

/* chat.slack's token once read: only an app-level token opens Socket Mode. */
static void slack_token_take(struct loader *ld, struct secret_src src, char *token, void *dest)
{
    struct conf_chat_slack *sl = dest;

    sl->app_token = token;
    if (strncmp(sl->app_token, "xapp-", 5) != 0)
        diag_add(ld, src.line,
                 "%s: must be an app-level token (\"xapp-...\", scope connections:write); bot "
                 "and user tokens cannot open Socket Mode connections",
                 src.label);
}

/*
 * chat.slack's bot token once read: only a bot token ("xoxb-") posts as the app's bot user into
 * the channels it was invited to. The two other tokens a Slack app shows are named, so that the
 * operator sees which one went where.
 */
static void slack_bot_token_take(struct loader *ld, struct secret_src src, char *token, void *dest)
{
    struct conf_chat_slack *sl = dest;

    sl->bot_token = token;
    if (strncmp(token, "xoxb-", 5) == 0)
        return;
    if (strncmp(token, "xapp-", 5) == 0)
        diag_add(ld, src.line,
                 "%s: this is an app-level token (\"xapp-...\"), which belongs in app_token; "
                 "bot_token takes the Bot User OAuth Token (\"xoxb-...\", scopes chat:write, "
                 "channels:read, groups:read)",
                 src.label);
    else if (strncmp(token, "xoxp-", 5) == 0)
        diag_add(ld, src.line,
                 "%s: this is a user token (\"xoxp-...\"), which would post as that person; "
                 "bot_token takes the Bot User OAuth Token (\"xoxb-...\", scopes chat:write, "
                 "channels:read, groups:read)",
                 src.label);
    else
        diag_add(ld, src.line,
                 "%s: must be a bot token (\"xoxb-...\", scopes chat:write, channels:read, "
                 "groups:read)",
                 src.label);
}

static void load_chat_slack(struct loader *ld, const config_setting_t *g, struct conf *c)
{
    static const char *const keys[] = {
        "app_token",         "app_token_file",     "app_token_env", "bot_token",
        "bot_token_file",    "bot_token_env",      "command",       "allowed_channels",
        "allowed_users",     "manage_users",       "api_url",       "allow_insecure",
        "commands_per_user", "commands_per_second"};
    struct conf_chat_slack *sl = &c->chat.slack;
    struct secret_src src = {
        .gpath = "chat.slack", .key = "app_token", .noun = "app token", .kind = SECRET_TOKEN};
    struct secret_src bot = {
        .gpath = "chat.slack", .key = "bot_token", .noun = "bot token", .kind = SECRET_TOKEN};
    const config_setting_t *s;
    const char *api;
    int found, found_bot;

    sl->enabled = 1;
    check_keys(ld, g, "chat.slack", keys, sizeof(keys) / sizeof(keys[0]));
    s = member(ld, g, "chat.slack", "allow_insecure", CONFIG_TYPE_BOOL);
    if (s)
        sl->allow_insecure = config_setting_get_bool(s) ? 1 : 0;
    found = secret_find(ld, g, &src);
    if (found == 0)
        secret_missing(ld, line_of(g), &src);
    else if (found == 1)
        secret_take(ld, &src, slack_token_take, sl);
    /* Optional: without it there are no subscriptions in Slack. */
    found_bot = secret_find(ld, g, &bot);
    if (found_bot == 1)
        secret_take(ld, &bot, slack_bot_token_take, sl);
    load_word(ld, g, "chat.slack", "command", "/youtrack", '/', &sl->command);
    load_chat_rate(ld, g, "chat.slack", &sl->rate);
    load_id_list(ld, g, "chat.slack", "allowed_channels", slack_id_ok,
                 "a Slack channel id such as \"C0123ABCD\"", NULL, 0, &sl->allowed_channels,
                 &sl->n_allowed_channels);
    load_id_list(ld, g, "chat.slack", "allowed_users", slack_id_ok,
                 "a Slack user id such as \"U0123ABCD\"", NULL, 0, &sl->allowed_users,
                 &sl->n_allowed_users);
    load_id_list(ld, g, "chat.slack", "manage_users", slack_id_ok,
                 "a Slack user id such as \"U0123ABCD\"", sl->allowed_users, sl->n_allowed_users,
                 &sl->manage_users, &sl->n_manage_users);
    api = get_string(ld, g, "chat.slack", "api_url");
    /* The bot token, when set, goes to the same host. */
    url_check_as(ld, api ? line_of(config_setting_get_member(g, "api_url")) : line_of(g),
                 "chat.slack.api_url", api ? api : "https://slack.com/api",
                 sl->allow_insecure ? URL_INSECURE_OK : 0u, "app_token",
                 found_bot == 1 ? "app_token and bot_token" : "app_token", &sl->api_url);
}

static void load_chat_matrix(struct loader *ld, const config_setting_t *g, struct conf *c)
{
    static const char *const keys[] = {"homeserver",
                                       "access_token",
                                       "access_token_file",
                                       "access_token_env",
                                       "rooms",
                                       "prefix",
                                       "allowed_users",
                                       "manage_users",
                                       "allow_insecure",
                                       "commands_per_user",
                                       "commands_per_second"};
    struct conf_chat_matrix *mx = &c->chat.matrix;
    struct secret_src src = {.gpath = "chat.matrix",
                             .key = "access_token",
                             .noun = "access token",
                             .kind = SECRET_TOKEN};
    const config_setting_t *s;
    const char *hs;
    int found;

    mx->enabled = 1;
    check_keys(ld, g, "chat.matrix", keys, sizeof(keys) / sizeof(keys[0]));
    s = member(ld, g, "chat.matrix", "allow_insecure", CONFIG_TYPE_BOOL);
    if (s)
        mx->allow_insecure = config_setting_get_bool(s) ? 1 : 0;
    hs = get_string(ld, g, "chat.matrix", "homeserver");
    if (!config_setting_get_member(g, "homeserver"))
        diag_add(ld, line_of(g), "chat.matrix: missing homeserver");
    else if (hs)
        url_check(ld, line_of(config_setting_get_member(g, "homeserver")), "chat.matrix.homeserver",
                  hs, mx->allow_insecure ? URL_INSECURE_OK : 0u, "access_token", &mx->homeserver);
    found = secret_find(ld, g, &src);
    if (found == 0)
        secret_missing(ld, line_of(g), &src);
    else if (found == 1)
        secret_take(ld, &src, secret_store, &mx->access_token);
    load_id_list(ld, g, "chat.matrix", "rooms", matrix_room_id_ok,
                 "a room id such as \"!abc:example.org\" (aliases are not accepted here)", NULL, 0,
                 &mx->rooms, &mx->n_rooms);
    s = config_setting_get_member(g, "rooms");
    if (!s)
        diag_add(ld, line_of(g), "chat.matrix: missing rooms (the rooms it answers in)");
    else if (config_setting_length(s) == 0)
        diag_add(ld, line_of(s), "chat.matrix.rooms: must name at least one room");
    load_word(ld, g, "chat.matrix", "prefix", "!youtrack", 0, &mx->prefix);
    load_chat_rate(ld, g, "chat.matrix", &mx->rate);
    load_id_list(ld, g, "chat.matrix", "allowed_users", matrix_user_id_ok,
                 "a user id such as \"@alice:example.org\"", NULL, 0, &mx->allowed_users,
                 &mx->n_allowed_users);
    load_id_list(ld, g, "chat.matrix", "manage_users", matrix_user_id_ok,
                 "a user id such as \"@alice:example.org\"", mx->allowed_users, mx->n_allowed_users,
                 &mx->manage_users, &mx->n_manage_users);
}

/* The replies' sinks (see struct conf_chat_matrix), once the access token is known. */
void chat_reply_sinks(struct loader *ld, struct conf *c)
{
    struct conf_chat_matrix *mx = &c->chat.matrix;

    if (!mx->enabled || !mx->n_rooms || !mx->homeserver || !mx->access_token)
        return;
    mx->reply_sinks = calloc(mx->n_rooms, sizeof(*mx->reply_sinks));
    if (!mx->reply_sinks) {
        ld->nomem = 1;
        return;
    }
    for (size_t i = 0; i < mx->n_rooms; i++) {
        struct conf_sink *s = &mx->reply_sinks[mx->n_reply_sinks++];
        s->type = CONF_SINK_MATRIX;
        s->chat_reply = 1;
        s->allow_insecure = mx->allow_insecure;
        if (asprintf(&s->name, "chat:%s", mx->rooms[i]) < 0) {
            s->name = NULL;
            ld->nomem = 1;
        }
        s->homeserver = str_dup(ld, mx->homeserver);
        s->room = str_dup(ld, mx->rooms[i]);
        s->access_token = str_dup(ld, mx->access_token);
    }
}

void load_chat(struct loader *ld, const config_setting_t *root, struct conf *c)
{
    static const char *const keys[] = {"slack", "matrix"};
    const config_setting_t *g = member(ld, root, "", "chat", CONFIG_TYPE_GROUP);
    const config_setting_t *s;

    if (!g)
        return;
    check_keys(ld, g, "chat", keys, sizeof(keys) / sizeof(keys[0]));
    s = member(ld, g, "chat", "slack", CONFIG_TYPE_GROUP);
    if (s)
        load_chat_slack(ld, s, c);
    s = member(ld, g, "chat", "matrix", CONFIG_TYPE_GROUP);
    if (s)
        load_chat_matrix(ld, s, c);
}

void chat_free(struct conf *conf)
{
    struct conf_chat_slack *sl = &conf->chat.slack;
    struct conf_chat_matrix *mx = &conf->chat.matrix;

    secret_free(sl->app_token);
    free(sl->command);
    strv_free(sl->allowed_channels, sl->n_allowed_channels);
    strv_free(sl->allowed_users, sl->n_allowed_users);
    secret_free(sl->bot_token);
    strv_free(sl->manage_users, sl->n_manage_users);
    free(sl->api_url);
    free(mx->homeserver);
    secret_free(mx->access_token);
    strv_free(mx->rooms, mx->n_rooms);
    free(mx->prefix);
    strv_free(mx->allowed_users, mx->n_allowed_users);
    strv_free(mx->manage_users, mx->n_manage_users);
    for (size_t i = 0; i < mx->n_reply_sinks; i++) {
        free(mx->reply_sinks[i].name);
        free(mx->reply_sinks[i].homeserver);
        free(mx->reply_sinks[i].room);
        secret_free(mx->reply_sinks[i].access_token);
    }
    free(mx->reply_sinks);
}
