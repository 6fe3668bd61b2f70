/*
 * Chat subscriptions at run time (see chat_subs.h; README.md, "Subscriptions").
 *
 * Invariants: subs is sorted (subscription_find() searches it) and sinks[i] is the sink of
 * subs.v[i] while it is active, NULL while suspended; the outbox has a queue exactly for the
 * non-NULL ones. Nothing in memory changes before the state has it.
 */
#include "chat_subs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "slack_api.h"
#include "slack_socket.h"
#include "state.h"
#include "utf8.h"

/* conversations.info must answer before Slack's 3 s for the ack run out (slack_socket.h). */
#define CHECK_TIMEOUT_MS (SLACK_ANSWER_LATER_MS - 500)
#define AUTH_TIMEOUT_MS  30000L

/* A Slack subscribe waiting for conversations.info. */
struct check {
    struct check *next;
    struct chat_subs *cs;
    uint64_t ticket;
    char *channel, *user;
    struct sub_request req;
    struct slack_api_call *call;
};

struct chat_subs {
    const struct conf *conf;
    struct state *st;
    struct outbox *ob;
    struct http *http;
    struct chat_subs_hooks hooks;
    struct subscription_list subs;
    struct conf_sink **sinks;        /* parallel to subs.v */
    const struct conf_sink **active; /* chat_subs_sinks()' answer, rebuilt on every change */
    size_t n_active;
    size_t cap;  /* of subs.v, sinks and active: so that rebuilding never allocates */
    int changed; /* the command being run changed the state (chat_subs_command()) */
    struct check *checks;
    struct slack_api_call *auth_call;
    char bot_name[SLACK_API_NAME_MAX + 1]; /* from auth.test; "" until known */
    int token_alerted;
};

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

static enum command_platform platform_of(enum sub_platform p)
{
    return p == SUB_SLACK ? COMMAND_SLACK : COMMAND_MATRIX;
}

static const char *where(enum sub_platform p)
{
    return p == SUB_SLACK ? "Slack channel" : "Matrix room";
}

/* Room for n subscriptions in subs.v, sinks and active. 0 or -ENOMEM (nothing changed). */
static int reserve(struct chat_subs *cs, size_t n)
{
    size_t cap = cs->cap ? cs->cap : 8;

    if (n <= cs->cap)
        return 0;
    while (cap < n)
        cap *= 2;
    struct subscription *v = realloc(cs->subs.v, cap * sizeof(*v));
    if (!v)
        return -ENOMEM;
    cs->subs.v = v;
    struct conf_sink **k = realloc(cs->sinks, cap * sizeof(*k));
    if (!k)
        return -ENOMEM;
    cs->sinks = k;
    const struct conf_sink **a = realloc(cs->active, cap * sizeof(*a));
    if (!a)
        return -ENOMEM;
    cs->active = a;
    cs->cap = cap;
    return 0;
}

/* The list of active sinks, anew (in place: it has room for every subscription). */
static void rebuild_active(struct chat_subs *cs)
{
    size_t n = 0;

    for (size_t i = 0; i < cs->subs.n; i++)
        if (cs->sinks[i])
            cs->active[n++] = cs->sinks[i];
    cs->n_active = n;
}

/* A sink and its queue for subscription i (active). 0 or -errno. */
static int open_sink(struct chat_subs *cs, size_t i)
{
    struct conf_sink *k = sub_sink_new(&cs->subs.v[i], cs->conf);
    int r;

    if (!k)
        return -ENOMEM;
    r = outbox_add_sink(cs->ob, k);
    if (r) {
        sub_sink_free(k);
        return r;
    }
    cs->sinks[i] = k;
    return 0;
}

/*
 * Removes subscription i's queue (what it held is dead-lettered with why; queue_gone: the
 * outbox has removed it already) and its sink, from the routing first.
 */
static void close_sink(struct chat_subs *cs, size_t i, const char *why, int queue_gone)
{
    struct conf_sink *k = cs->sinks[i];

    if (!k)
        return;
    cs->sinks[i] = NULL;
    rebuild_active(cs);
    if (!queue_gone)
        outbox_remove_sink(cs->ob, k->name, why);
    sub_sink_free(k);
}

int chat_subs_new(struct chat_subs **out, const struct conf *conf, struct state *st,
                  struct outbox *ob, struct http *http, const struct chat_subs_hooks *hooks,
                  char *err, size_t errlen)
{
    struct chat_subs *cs = calloc(1, sizeof(*cs));
    int r = 0;

    if (!cs) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    cs->conf = conf;
    cs->st = st;
    cs->ob = ob;
    cs->http = http;
    cs->hooks = *hooks;
    if (st)
        r = state_subscriptions_load(st, &cs->subs, err, errlen);
    if (r) {
        free(cs);
        return r;
    }
    /* The list came sized to its n: make it ours, with the sinks' arrays beside it. */
    struct subscription_list loaded = cs->subs;
    cs->subs = (struct subscription_list){0};
    if (reserve(cs, loaded.n ? loaded.n : 1) != 0) {
        snprintf(err, errlen, "out of memory");
        cs->subs = loaded;
        chat_subs_free(cs);
        return -ENOMEM;
    }
    if (loaded.n)
        memcpy(cs->subs.v, loaded.v, loaded.n * sizeof(*loaded.v));
    cs->subs.n = loaded.n;
    free(loaded.v);
    memset(cs->sinks, 0, cs->cap * sizeof(*cs->sinks));
    for (size_t i = 0; i < cs->subs.n; i++) {
        const struct subscription *s = &cs->subs.v[i];
        if (s->suspended)
            continue;
        if (!(s->platform == SUB_SLACK ? conf->chat.slack.enabled && conf->chat.slack.bot_token
                                       : conf->chat.matrix.enabled)) {
            /* Kept for when the platform is configured again; nothing is routed to it. */
            log_warn("subscriptions",
                     "%s %s is subscribed, but chat.%s%s is not configured: it gets nothing",
                     where(s->platform), s->channel, sub_platform_name(s->platform),
                     s->platform == SUB_SLACK ? ".bot_token" : "");
            continue;
        }
        if (ob && (r = open_sink(cs, i)) != 0) {
            snprintf(err, errlen, "cannot queue for subscription %s: %s", s->channel, strerror(-r));
            chat_subs_free(cs);
            return r;
        }
    }
    rebuild_active(cs);
    if (cs->subs.n)
        log_info("subscriptions", "%zu channel%s subscribed (%zu active)", cs->subs.n,
                 cs->subs.n == 1 ? "" : "s", cs->n_active);
    *out = cs;
    return 0;
}

static void check_free(struct check *c)
{
    sub_request_fini(&c->req);
    free(c->channel);
    free(c->user);
    free(c);
}

void chat_subs_free(struct chat_subs *cs)
{
    if (!cs)
        return;
    while (cs->checks) {
        struct check *c = cs->checks;
        cs->checks = c->next;
        slack_api_cancel(c->call);
        check_free(c);
    }
    slack_api_cancel(cs->auth_call);
    /* The queues are the outbox's; it goes with the bridge. */
    for (size_t i = 0; i < cs->subs.n && cs->sinks; i++)
        sub_sink_free(cs->sinks[i]);
    free(cs->sinks);
    free(cs->active);
    subscription_list_fini(&cs->subs);
    free(cs);
}

const struct conf_sink *const *chat_subs_sinks(const struct chat_subs *cs, size_t *n)
{
    *n = cs ? cs->n_active : 0;
    return cs ? cs->active : NULL;
}

struct chat_subs_count chat_subs_count(const struct chat_subs *cs, enum sub_platform p)
{
    struct chat_subs_count c = {0};
    for (size_t i = 0; cs && i < cs->subs.n; i++) {
        if (cs->subs.v[i].platform != p)
            continue;
        if (cs->subs.v[i].suspended)
            c.suspended++;
        else
            c.active++;
    }
    return c;
}

int chat_subs_is_group(const char *name)
{
    return strcmp(name, SUB_GROUP_SLACK) == 0 || strcmp(name, SUB_GROUP_MATRIX) == 0;
}

/* ---- the bot token ---- */

static void token_refused(struct chat_subs *cs, const char *why)
{
    char text[300];

    if (cs->token_alerted)
        return;
    cs->token_alerted = 1;
    snprintf(text, sizeof(text),
             "Slack refuses chat.slack.bot_token (%s): subscribed Slack channels get nothing and "
             "`subscribe` cannot check channels until the token is replaced",
             why);
    log_err("subscriptions", "%s", text);
    cs->hooks.alert(cs->hooks.userdata, "slack_bot_token", text);
}

static void on_auth(void *userdata, const struct slack_api_answer *a)
{
    struct chat_subs *cs = userdata;

    cs->auth_call = NULL;
    if (a->result == SLACK_API_OK) {
        snprintf(cs->bot_name, sizeof(cs->bot_name), "%s", a->user);
        log_info("subscriptions", "Slack bot token works: bot user %s (%s) in %s", a->user,
                 a->user_id, a->team);
    } else if (a->result == SLACK_API_REFUSED) {
        token_refused(cs, a->error);
    } else {
        log_warn("subscriptions", "Slack's auth.test failed (%s); the bot's name stays unknown",
                 a->error);
    }
}

void chat_subs_start(struct chat_subs *cs)
{
    const struct conf_chat_slack *sl = &cs->conf->chat.slack;

    if (!sl->enabled || !sl->bot_token || cs->auth_call)
        return;
    if (slack_api_call(cs->http, SLACK_API_AUTH_TEST, sl->api_url, sl->bot_token, NULL,
                       AUTH_TIMEOUT_MS, on_auth, cs, &cs->auth_call) != 0)
        log_warn("subscriptions", "cannot start Slack's auth.test");
}

/* ---- answers ---- */

static int say(enum sub_platform p, const char *head, const char *quote, char **out)
{
    return command_subscriptions(platform_of(p), head, quote, NULL, 0, 0, out);
}

static int show(enum sub_platform p, const char *head, const struct subscription *s, char **out)
{
    const struct subscription *v[1] = {s};
    return command_subscriptions(platform_of(p), head, NULL, v, s ? 1 : 0, 0, out);
}

static int manager(const struct chat_subs *cs, enum sub_platform p, const char *user)
{
    char *const *v =
        p == SUB_SLACK ? cs->conf->chat.slack.manage_users : cs->conf->chat.matrix.manage_users;
    size_t n =
        p == SUB_SLACK ? cs->conf->chat.slack.n_manage_users : cs->conf->chat.matrix.n_manage_users;

    if (n == 0)
        return 1;
    for (size_t i = 0; user && i < n; i++)
        if (strcmp(v[i], user) == 0)
            return 1;
    return 0;
}

static int list_all(struct chat_subs *cs, enum sub_platform p, char **out)
{
    size_t n = subscription_count(&cs->subs, p), k = 0;
    const struct subscription **v = calloc(n ? n : 1, sizeof(*v));
    char head[96];
    int r;

    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < cs->subs.n; i++)
        if (cs->subs.v[i].platform == p)
            v[k++] = &cs->subs.v[i];
    if (n)
        snprintf(head, sizeof(head), "%zu %s%s subscribed:", n, where(p), n == 1 ? "" : "s");
    else
        snprintf(head, sizeof(head), "No %s is subscribed.", where(p));
    r = command_subscriptions(platform_of(p), head, NULL, v, n, 1, out);
    free(v);
    return r;
}

/*
 * Makes next (NULL: none) the subscription of (p, channel), durably first. Returns 0, or
 * -errno with err saying why (nothing changed then).
 */
static int commit(struct chat_subs *cs, enum sub_platform p, const char *channel,
                  struct subscription *next, char *err, size_t errlen)
{
    long i = subscription_find(&cs->subs, p, channel);
    int r;

    if (!cs->st) {
        snprintf(err, errlen, "this run keeps no state");
        return -EROFS;
    }
    /* Room first: once the state has it, nothing may fail before memory has it too. */
    if (i < 0 && reserve(cs, cs->subs.n + 1) != 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r = next ? state_subscription_put(cs->st, next, err, errlen)
             : state_subscription_delete(cs->st, p, channel, err, errlen);
    if (r)
        return r;
    cs->changed = 1;
    if (!next) {
        close_sink(cs, (size_t)i, "the channel unsubscribed", 0);
        subscription_fini(&cs->subs.v[i]);
        memmove(&cs->subs.v[i], &cs->subs.v[i + 1],
                (cs->subs.n - (size_t)i - 1) * sizeof(cs->subs.v[0]));
        memmove(&cs->sinks[i], &cs->sinks[i + 1],
                (cs->subs.n - (size_t)i - 1) * sizeof(cs->sinks[0]));
        cs->subs.n--; /* the routing lost its sink in close_sink() */
        return 0;
    }
    if (i < 0) {
        /* A new one, in its sorted place (reserve() made room). */
        size_t at = subscription_place(&cs->subs, p, channel);
        memmove(&cs->subs.v[at + 1], &cs->subs.v[at], (cs->subs.n - at) * sizeof(cs->subs.v[0]));
        memmove(&cs->sinks[at + 1], &cs->sinks[at], (cs->subs.n - at) * sizeof(cs->sinks[0]));
        cs->subs.n++;
        cs->subs.v[at] = *next;
        cs->sinks[at] = NULL;
        i = (long)at;
    } else {
        subscription_fini(&cs->subs.v[i]);
        cs->subs.v[i] = *next;
    }
    memset(next, 0, sizeof(*next));
    struct subscription *s = &cs->subs.v[i];
    struct conf_sink *k = cs->sinks[i];
    if (s->suspended) {
        close_sink(cs, (size_t)i, s->suspended, 0);
    } else if (k) {
        /* Same queue (what is queued stays in order), new routing. */
        struct conf_sink *fresh = sub_sink_new(s, cs->conf);
        if (fresh) {
            char **old = k->projects;
            size_t n_old = k->n_projects;
            k->projects = fresh->projects;
            k->n_projects = fresh->n_projects;
            k->events = fresh->events;
            fresh->projects = old;
            fresh->n_projects = n_old;
            sub_sink_free(fresh);
        } else {
            log_err("subscriptions", "out of memory: %s %s keeps its old routing until a restart",
                    where(p), channel);
        }
    } else if ((r = open_sink(cs, (size_t)i)) != 0) {
        log_err("subscriptions", "%s %s: cannot queue for it (%s); it gets nothing until a restart",
                where(p), channel, strerror(-r));
    }
    rebuild_active(cs);
    return 0;
}

/* subscribe / unsubscribe, once allowed (and for Slack subscribe: the bot is in the channel). */
static int change(struct chat_subs *cs, enum sub_platform p, const char *channel, const char *user,
                  const struct sub_request *req, char **out)
{
    long i = subscription_find(&cs->subs, p, channel);
    const struct subscription *cur = i >= 0 ? &cs->subs.v[i] : NULL;
    int resumed = cur && cur->suspended && req->verb == SUB_SUBSCRIBE;
    struct subscription next;
    char err[300], bad[SUB_PATTERN_MAX + 1], head[400];
    int r;

    r = sub_apply(cur, p, channel, req, user, now_s(), &next, err, sizeof(err), bad, sizeof(bad));
    if (r == -ENOMEM)
        return r;
    if (r < 0) {
        /* "Sorry, ... has no pattern “X”", or a sentence of its own. */
        snprintf(head, sizeof(head), bad[0] ? "Sorry, %s" : "Sorry, %s.", err);
        return say(p, head, bad[0] ? bad : NULL, out);
    }
    if (!cur && subscription_count(&cs->subs, p) >= SUB_MAX_CHANNELS) {
        subscription_fini(&next);
        snprintf(head, sizeof(head),
                 "Sorry, at most %d channels can subscribe in %s, and they all have; nothing "
                 "changed.",
                 SUB_MAX_CHANNELS, p == SUB_SLACK ? "Slack" : "Matrix");
        return say(p, head, NULL, out);
    }
    if (commit(cs, p, channel, r ? &next : NULL, err, sizeof(err)) != 0) {
        subscription_fini(&next);
        log_err("subscriptions", "%s %s: cannot save the subscription: %s", where(p), channel, err);
        return say(p,
                   "Sorry, the subscription could not be saved; nothing changed. The "
                   "operator can see why in the bridge's log.",
                   NULL, out);
    }
    log_info("subscriptions", "%s %s: %s by %s", where(p), channel,
             req->verb == SUB_SUBSCRIBE ? (resumed ? "resumed" : "subscribed")
                                        : (r ? "patterns unsubscribed" : "unsubscribed"),
             user);
    if (!r)
        return say(p, "Unsubscribed: this channel gets no more project changes.", NULL, out);
    i = subscription_find(&cs->subs, p, channel);
    return show(p,
                req->verb == SUB_UNSUBSCRIBE ? "Unsubscribed those patterns. This channel now gets:"
                : resumed
                    ? "Subscribed again (the subscription was suspended). This channel now gets:"
                    : "Subscribed. This channel now gets:",
                &cs->subs.v[i], out);
}

/* conversations.info answered a Slack subscribe: subscribe, or say why not. */
static void on_check(void *userdata, const struct slack_api_answer *a)
{
    struct check *c = userdata, **pp;
    struct chat_subs *cs = c->cs;
    char *answer = NULL, head[400];
    int r;

    c->call = NULL;
    for (pp = &cs->checks; *pp != c; pp = &(*pp)->next)
        ;
    *pp = c->next;
    if (a->result == SLACK_API_OK && a->is_member && !a->is_archived) {
        r = change(cs, SUB_SLACK, c->channel, c->user, &c->req, &answer);
    } else if (a->result == SLACK_API_OK && a->is_archived) {
        r = say(SUB_SLACK, "Sorry, this channel is archived; nothing changed.", NULL, &answer);
    } else if (a->result == SLACK_API_OK || a->result == SLACK_API_NOT_FOUND) {
        snprintf(head, sizeof(head),
                 "Sorry, I am not in this channel: invite me with /invite @%s first, then "
                 "subscribe again.",
                 cs->bot_name[0] ? cs->bot_name : "(the YouTrack bridge app)");
        r = say(SUB_SLACK, head, NULL, &answer);
    } else if (a->result == SLACK_API_REFUSED) {
        token_refused(cs, a->error);
        r = say(SUB_SLACK,
                "Sorry, Slack refuses the bridge's bot token, so I cannot subscribe channels; "
                "the operator has been told.",
                NULL, &answer);
    } else if (a->result == SLACK_API_MISSING_SCOPE) {
        log_err("subscriptions",
                "conversations.info: missing_scope: the Slack app needs channels:read and "
                "groups:read to check channels before subscribing them");
        r = say(SUB_SLACK,
                "Sorry, the bridge's Slack app may not look at channels (it lacks the "
                "channels:read or groups:read scope); nothing changed.",
                NULL, &answer);
    } else {
        log_warn("subscriptions", "conversations.info for %s failed (%s)", c->channel, a->error);
        r = say(SUB_SLACK,
                "Sorry, Slack did not answer whether I am in this channel; nothing changed. Try "
                "again in a moment.",
                NULL, &answer);
    }
    if (r)
        log_err("subscriptions", "out of memory answering a subscribe in %s", c->channel);
    cs->hooks.answer_later(cs->hooks.userdata, c->ticket, r ? NULL : answer);
    free(answer);
    check_free(c);
}

/* A Slack subscribe asks conversations.info first. SLACK_ANSWER_LATER, or 0 with *out. */
static int check_then_change(struct chat_subs *cs, const char *channel, const char *user,
                             struct sub_request *req, uint64_t ticket, char **out)
{
    const struct conf_chat_slack *sl = &cs->conf->chat.slack;
    struct check *c = calloc(1, sizeof(*c));

    if (!c || !(c->channel = strdup(channel)) || !(c->user = strdup(user))) {
        if (c)
            check_free(c);
        return -ENOMEM;
    }
    c->cs = cs;
    c->ticket = ticket;
    c->req = *req;
    memset(req, 0, sizeof(*req));
    if (slack_api_call(cs->http, SLACK_API_CONVERSATIONS_INFO, sl->api_url, sl->bot_token, channel,
                       CHECK_TIMEOUT_MS, on_check, c, &c->call) != 0) {
        check_free(c);
        return say(SUB_SLACK, "Sorry, I cannot reach Slack right now; nothing changed.", NULL, out);
    }
    c->next = cs->checks;
    cs->checks = c;
    return SLACK_ANSWER_LATER;
}

/* chat_subs_command() but for telling whether the state changed. */
static int run_command(struct chat_subs *cs, enum sub_platform p, const char *channel,
                       const char *user, const char *text, size_t len, uint64_t ticket, char **out)
{
    struct sub_request req;
    char err[300], head[400];
    int r = sub_parse(text, len, p == SUB_SLACK, &req, err, sizeof(err));

    if (r == -ENOMEM)
        return r;
    if (r == 0 && req.verb == SUB_NONE)
        return CHAT_SUBS_NOT_OURS;
    metrics_command(sub_platform_name(p), command_name(text, len));
    if (r < 0) {
        snprintf(head, sizeof(head), "Sorry, %s", err);
        r = say(p, head, req.bad[0] ? req.bad : NULL, out);
        goto out;
    }
    if (p == SUB_SLACK && !cs->conf->chat.slack.bot_token) {
        r = say(p,
                "Sorry, subscriptions are not set up on this bridge: its operator has not given "
                "it a Slack bot token (chat.slack.bot_token).",
                NULL, out);
        goto out;
    }
    if (!sub_channel_ok(p, channel)) {
        r = say(p, "Sorry, only channels can subscribe, not this conversation.", NULL, out);
        goto out;
    }
    switch (req.verb) {
    case SUB_LIST: {
        long i = subscription_find(&cs->subs, p, channel);
        r = i < 0 ? say(p, "This channel is not subscribed. Try subscribe.", NULL, out)
                  : show(p, "This channel's subscription:", &cs->subs.v[i], out);
        break;
    }
    case SUB_LIST_ALL:
        r = manager(cs, p, user) ? list_all(cs, p, out)
                                 : say(p,
                                       "Sorry, only the bridge's managers can list every channel's "
                                       "subscription; subscriptions shows this channel's.",
                                       NULL, out);
        break;
    default:
        if (!manager(cs, p, user)) {
            log_info("subscriptions", "%s %s: %s may not change subscriptions (manage_users)",
                     where(p), channel, user);
            r = say(p,
                    "Sorry, only the bridge's managers can change subscriptions; nothing "
                    "changed.",
                    NULL, out);
            break;
        }
        if (p == SUB_SLACK && req.verb == SUB_SUBSCRIBE) {
            /* Checked now too, so a request that cannot be applied is refused at once. */
            long i = subscription_find(&cs->subs, p, channel);
            struct subscription probe;
            char bad[SUB_PATTERN_MAX + 1];
            r = sub_apply(i >= 0 ? &cs->subs.v[i] : NULL, p, channel, &req, user, now_s(), &probe,
                          err, sizeof(err), bad, sizeof(bad));
            subscription_fini(&probe);
            if (r == -ENOMEM)
                break;
            if (r < 0 || (i < 0 && subscription_count(&cs->subs, p) >= SUB_MAX_CHANNELS)) {
                r = change(cs, p, channel, user, &req, out); /* says why */
                break;
            }
            r = check_then_change(cs, channel, user, &req, ticket, out);
            break;
        }
        r = change(cs, p, channel, user, &req, out);
        break;
    }
out:
    sub_request_fini(&req);
    return r;
}

int chat_subs_command(struct chat_subs *cs, enum sub_platform p, const char *channel,
                      const char *user, const char *text, size_t len, uint64_t ticket, char **out,
                      int *changed)
{
    int r;

    cs->changed = 0;
    r = run_command(cs, p, channel, user, text, len, ticket, out);
    if (changed)
        *changed = cs->changed;
    return r;
}

/* ---- suspension ---- */

/*
 * Suspends subscription i: the state first, then the queue (what it held dead-lettered), then
 * the alert. queue_gone: the outbox removed the queue already (SINK_SUSPEND), so a failed
 * write leaves it suspended in memory only, until a restart (logged).
 */
static void suspend(struct chat_subs *cs, size_t i, const char *reason, int queue_gone)
{
    struct subscription *cur = &cs->subs.v[i], next;
    char err[300], text[600];
    enum sub_platform p = cur->platform;
    size_t n = utf8_cut(reason, strlen(reason), SUB_REASON_MAX);
    int saved = 0;

    if (cur->suspended)
        return;
    if (subscription_copy(&next, cur) == 0 && (next.suspended = strndup(reason, n))) {
        next.changed = now_s();
        if (!cs->st)
            snprintf(err, sizeof(err), "this run keeps no state");
        else if (state_subscription_put(cs->st, &next, err, sizeof(err)) == 0)
            saved = 1;
        if (!saved && !queue_gone) {
            /* Still subscribed as far as the state knows: keep delivering, nothing is lost. */
            log_err("subscriptions", "%s %s: cannot save its suspension (%s); it stays active",
                    where(p), cur->channel, err);
            subscription_fini(&next);
            return;
        }
        if (!saved)
            log_err("subscriptions",
                    "%s %s: cannot save its suspension (%s); it is suspended until a restart",
                    where(p), cur->channel, err);
        subscription_fini(cur);
        *cur = next;
    } else {
        subscription_fini(&next);
        log_err("subscriptions", "out of memory suspending %s", cur->channel);
        if (!queue_gone)
            return;
    }
    close_sink(cs, i, cur->suspended ? cur->suspended : reason, queue_gone);
    snprintf(text, sizeof(text),
             "the subscription of %s %s is suspended: %.*s. Its queued messages are "
             "dead-lettered; subscribe in it again to resume",
             where(p), cur->channel, (int)n, reason);
    log_warn("subscriptions", "%s", text);
    cs->hooks.alert(cs->hooks.userdata, "subscription_suspended", text);
}

void chat_subs_gone(struct chat_subs *cs, const char *sink, const char *reason)
{
    for (size_t i = 0; i < cs->subs.n; i++) {
        if (!cs->sinks[i] || strcmp(cs->sinks[i]->name, sink) != 0)
            continue;
        suspend(cs, i,
                cs->subs.v[i].platform == SUB_SLACK
                    ? (*reason ? reason : "the channel is gone")
                    : (*reason ? reason : "the bot is not in the room"),
                1);
        return;
    }
}

void chat_subs_left(struct chat_subs *cs, enum sub_platform p, const char *channel, const char *by)
{
    long i = subscription_find(&cs->subs, p, channel);
    char why[SUB_REASON_MAX + 1];

    if (i < 0)
        return;
    if (by)
        snprintf(why, sizeof(why), "the bot was removed from the room by %.*s",
                 (int)utf8_cut(by, strlen(by), 150), by);
    else
        snprintf(why, sizeof(why), "the bot left the room");
    suspend(cs, (size_t)i, why, 0);
}
