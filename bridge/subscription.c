/*
 * Subscriptions made from chat (see subscription.h; README.md, "Subscriptions").
 */
#include "subscription.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "command.h"
#include "project.h"
#include "utf8.h"

void subscription_fini(struct subscription *s)
{
    if (!s)
        return;
    free(s->channel);
    for (size_t i = 0; i < s->n_patterns; i++)
        free(s->patterns[i]);
    free(s->patterns);
    free(s->by);
    free(s->suspended);
    memset(s, 0, sizeof(*s));
}

int subscription_copy(struct subscription *dst, const struct subscription *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->platform = src->platform;
    dst->events = src->events;
    dst->created = src->created;
    dst->changed = src->changed;
    dst->channel = src->channel ? strdup(src->channel) : NULL;
    dst->by = src->by ? strdup(src->by) : NULL;
    dst->suspended = src->suspended ? strdup(src->suspended) : NULL;
    dst->patterns = calloc(src->n_patterns ? src->n_patterns : 1, sizeof(*dst->patterns));
    if ((src->channel && !dst->channel) || (src->by && !dst->by) ||
        (src->suspended && !dst->suspended) || !dst->patterns)
        goto fail;
    for (size_t i = 0; i < src->n_patterns; i++) {
        dst->patterns[i] = strdup(src->patterns[i]);
        if (!dst->patterns[i])
            goto fail;
        dst->n_patterns++;
    }
    return 0;
fail:
    subscription_fini(dst);
    return -ENOMEM;
}

void subscription_list_fini(struct subscription_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        subscription_fini(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

const char *sub_platform_name(enum sub_platform p)
{
    return p == SUB_MATRIX ? "matrix" : "slack";
}

int sub_channel_ok(enum sub_platform p, const char *channel)
{
    size_t n;

    if (!channel)
        return 0;
    n = strlen(channel);
    if (p == SUB_SLACK) {
        /* Public (C) and private (G, and C on newer workspaces) channels; not direct messages. */
        if (n < 2 || n > 32 || (channel[0] != 'C' && channel[0] != 'G'))
            return 0;
        for (size_t i = 1; i < n; i++) {
            char c = channel[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
                return 0;
        }
        return 1;
    }
    /* As chat.matrix.rooms accepts (conf_chat.c), the only rooms commands come from; valid
     * UTF-8 too, since it is written in JSON. Wherever it goes it is escaped: a path segment
     * (url_build()), an alert or an answer (render.c). */
    if (p != SUB_MATRIX || n < 2 || n > SUB_CHANNEL_MAX || channel[0] != '!')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)channel[i];
        if (c <= 0x20 || c == 0x7f)
            return 0;
    }
    return utf8_valid(channel, n);
}

int sub_pattern_ok(const char *pattern)
{
    size_t n = pattern ? strlen(pattern) : 0;

    if (n == 0 || n > SUB_PATTERN_MAX || strcmp(pattern, "!") == 0 || !utf8_valid(pattern, n))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)pattern[i];
        if (c <= 0x20 || c == 0x7f)
            return 0;
    }
    /* C1 controls and the other spaces a chat client may type (U+00A0) are no pattern either. */
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned char a = (unsigned char)pattern[i], b = (unsigned char)pattern[i + 1];
        if (a == 0xc2 && b <= 0xa0)
            return 0;
    }
    return 1;
}

/* The order of subscription_list: platform, then channel. */
static int order(const struct subscription *s, enum sub_platform p, const char *channel)
{
    return s->platform != p ? (s->platform < p ? -1 : 1) : strcmp(s->channel, channel);
}

int subscription_cmp(const void *a, const void *b)
{
    const struct subscription *y = b;
    return order(a, y->platform, y->channel);
}

size_t subscription_place(const struct subscription_list *l, enum sub_platform p,
                          const char *channel)
{
    size_t lo = 0, hi = l->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (order(&l->v[mid], p, channel) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

long subscription_find(const struct subscription_list *l, enum sub_platform p, const char *channel)
{
    size_t at = subscription_place(l, p, channel);
    return at < l->n && order(&l->v[at], p, channel) == 0 ? (long)at : -1;
}

size_t subscription_count(const struct subscription_list *l, enum sub_platform p)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        n += l->v[i].platform == p;
    return n;
}

/* ---- commands ---- */

void sub_request_fini(struct sub_request *r)
{
    for (size_t i = 0; i < r->n_patterns; i++)
        free(r->patterns[i]);
    free(r->patterns);
    r->patterns = NULL;
    r->n_patterns = 0;
}

static int has_pattern(char *const *v, size_t n, const char *p)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(v[i], p) == 0)
            return 1;
    return 0;
}

static void set_bad(char *bad, size_t badlen, const char *word, size_t n)
{
    size_t cut = utf8_cut(word, n, badlen - 1);
    memcpy(bad, word, cut);
    bad[cut] = '\0';
}

/* events=KIND,KIND... into *events. 0, or -EINVAL with err and bad. */
static int parse_events(const char *list, unsigned *events, char *err, size_t errlen, char *bad,
                        size_t badlen)
{
    const char *p = list;

    if (!*p) {
        snprintf(err, errlen,
                 "events= needs at least one kind: created, removed, renamed, "
                 "archived or unarchived");
        return -EINVAL;
    }
    while (*p) {
        size_t n = strcspn(p, ",");
        enum change_kind k;
        if (change_kind_parse(p, n, 1, &k) != 0) {
            snprintf(err, errlen,
                     "unknown event kind; the kinds are created, removed, renamed, "
                     "archived and unarchived:");
            set_bad(bad, badlen, p, n);
            return -EINVAL;
        }
        *events |= 1u << (unsigned)k;
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

int sub_parse(const char *text, size_t len, int slack, struct sub_request *out, char *err,
              size_t errlen)
{
    char word[COMMAND_MAX_INPUT + 1], args[COMMAND_MAX_INPUT + 1];
    char *p, *save = NULL;

    memset(out, 0, sizeof(*out));
    err[0] = '\0';
    /* Too long or not text: not recognisably ours; command_run() explains that. */
    if (command_words(text, len, slack, word, args) != 0)
        return 0;
    if (strcasecmp(word, "subscribe") == 0)
        out->verb = SUB_SUBSCRIBE;
    else if (strcasecmp(word, "unsubscribe") == 0)
        out->verb = SUB_UNSUBSCRIBE;
    else if (strcasecmp(word, "subscriptions") == 0)
        out->verb = args[0] && strcasecmp(args, "all") == 0 ? SUB_LIST_ALL : SUB_LIST;
    else
        return 0;
    if (out->verb == SUB_LIST && args[0]) {
        snprintf(err, errlen, "subscriptions takes nothing, or all; not");
        set_bad(out->bad, sizeof(out->bad), args, strlen(args));
        return -EINVAL;
    }
    if (out->verb == SUB_LIST || out->verb == SUB_LIST_ALL)
        return 0;
    out->patterns = calloc(SUB_MAX_PATTERNS, sizeof(*out->patterns));
    if (!out->patterns)
        return -ENOMEM;
    for (p = strtok_r(args, " ", &save); p; p = strtok_r(NULL, " ", &save)) {
        if (strncasecmp(p, "events=", 7) == 0) {
            if (out->verb != SUB_SUBSCRIBE) {
                snprintf(err, errlen,
                         "unsubscribe takes patterns only; to change the event "
                         "kinds, subscribe with events=");
                set_bad(out->bad, sizeof(out->bad), p, strlen(p));
                goto invalid;
            }
            if (parse_events(p + 7, &out->events, err, errlen, out->bad, sizeof(out->bad)))
                goto invalid;
            continue;
        }
        if (!sub_pattern_ok(p)) {
            snprintf(err, errlen,
                     "not a usable pattern (1 to %d bytes, \"!\" followed by a "
                     "pattern to exclude):",
                     SUB_PATTERN_MAX);
            set_bad(out->bad, sizeof(out->bad), p, strlen(p));
            goto invalid;
        }
        if (has_pattern(out->patterns, out->n_patterns, p))
            continue;
        if (out->n_patterns == SUB_MAX_PATTERNS) {
            snprintf(err, errlen, "a channel can have at most %d patterns", SUB_MAX_PATTERNS);
            goto invalid;
        }
        out->patterns[out->n_patterns] = strdup(p);
        if (!out->patterns[out->n_patterns]) {
            sub_request_fini(out);
            return -ENOMEM;
        }
        out->n_patterns++;
    }
    return 0;
invalid:
    sub_request_fini(out);
    return -EINVAL;
}

/* Appends a copy of p to next's patterns (room for SUB_MAX_PATTERNS + 1). 0 or -ENOMEM. */
static int add_pattern(struct subscription *next, const char *p)
{
    char *c = strdup(p);
    if (!c)
        return -ENOMEM;
    next->patterns[next->n_patterns++] = c;
    return 0;
}

/* Whether v holds a pattern that includes (one not starting with "!"). */
static int has_include(char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i][0] != '!')
            return 1;
    return 0;
}

int sub_apply(const struct subscription *cur, enum sub_platform p, const char *channel,
              const struct sub_request *req, const char *by, int64_t now, struct subscription *next,
              char *err, size_t errlen, char *bad, size_t badlen)
{
    int r = -ENOMEM;

    memset(next, 0, sizeof(*next));
    err[0] = bad[0] = '\0';
    if (req->verb == SUB_UNSUBSCRIBE) {
        if (!cur) {
            snprintf(err, errlen, "this channel is not subscribed");
            return -EINVAL;
        }
        for (size_t i = 0; i < req->n_patterns; i++) {
            if (!has_pattern(cur->patterns, cur->n_patterns, req->patterns[i])) {
                snprintf(err, errlen, "this channel's subscription has no pattern");
                set_bad(bad, badlen, req->patterns[i], strlen(req->patterns[i]));
                return -EINVAL;
            }
        }
        if (!req->n_patterns)
            return 0;
    } else if (req->verb != SUB_SUBSCRIBE) {
        return -EINVAL;
    }
    next->patterns = calloc(SUB_MAX_PATTERNS + 1, sizeof(*next->patterns));
    next->channel = strdup(cur ? cur->channel : channel);
    next->by = strdup(by ? by : "");
    if (!next->patterns || !next->channel || !next->by)
        goto fail;
    next->platform = cur ? cur->platform : p;
    next->created = cur ? cur->created : now;
    next->changed = now;
    next->events = cur ? cur->events : CONF_EVENTS_ALL;
    for (size_t i = 0; cur && i < cur->n_patterns; i++) {
        if (req->verb == SUB_UNSUBSCRIBE &&
            has_pattern(req->patterns, req->n_patterns, cur->patterns[i]))
            continue;
        if (add_pattern(next, cur->patterns[i]))
            goto fail;
    }
    if (req->verb == SUB_UNSUBSCRIBE) {
        /* Exclusions alone would mean every other project (as in a sink's projects): what is
         * left without an including pattern is no subscription any more. */
        if (!has_include(next->patterns, next->n_patterns)) {
            subscription_fini(next);
            return 0;
        }
        next->suspended = cur->suspended ? strdup(cur->suspended) : NULL;
        if (cur->suspended && !next->suspended)
            goto fail;
        return 1;
    }
    for (size_t i = 0; i < req->n_patterns; i++) {
        if (has_pattern(next->patterns, next->n_patterns, req->patterns[i]))
            continue;
        if (next->n_patterns == SUB_MAX_PATTERNS)
            goto too_many;
        if (add_pattern(next, req->patterns[i]))
            goto fail;
    }
    /* Without an including pattern (a new subscription, or exclusions alone), "*" is the one:
     * the list always says what it includes. An existing subscription keeps its patterns when
     * none is given (subscribe events=..., or a resume). */
    if (!has_include(next->patterns, next->n_patterns)) {
        if (next->n_patterns == SUB_MAX_PATTERNS)
            goto too_many;
        memmove(next->patterns + 1, next->patterns, next->n_patterns * sizeof(*next->patterns));
        next->patterns[0] = NULL;
        next->n_patterns++;
        if (!(next->patterns[0] = strdup("*")))
            goto fail;
    }
    if (req->events)
        next->events = req->events;
    return 1; /* subscribing resumes a suspended subscription: suspended stays NULL */
too_many:
    snprintf(err, errlen, "a channel can have at most %d patterns; unsubscribe some first",
             SUB_MAX_PATTERNS);
    r = -EINVAL;
fail:
    subscription_fini(next);
    return r;
}

/* ---- delivery ---- */

void sub_sink_name(enum sub_platform p, const char *channel, char *buf, size_t len)
{
    snprintf(buf, len, "%s:%s", sub_platform_name(p), channel);
}

struct conf_sink *sub_sink_new(const struct subscription *s, const struct conf *conf)
{
    const struct conf_chat_slack *sl = &conf->chat.slack;
    const struct conf_chat_matrix *mx = &conf->chat.matrix;
    struct conf_sink *k;
    char name[SUB_CHANNEL_MAX + 16];

    if (s->platform == SUB_SLACK ? !sl->enabled || !sl->bot_token : !mx->enabled)
        return NULL;
    k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    sub_sink_name(s->platform, s->channel, name, sizeof(name));
    k->name = strdup(name);
    k->room = strdup(s->channel);
    k->projects = calloc(s->n_patterns ? s->n_patterns : 1, sizeof(*k->projects));
    if (!k->name || !k->room || !k->projects)
        goto fail;
    for (size_t i = 0; i < s->n_patterns; i++) {
        k->projects[i] = strdup(s->patterns[i]);
        if (!k->projects[i])
            goto fail;
        k->n_projects++;
    }
    k->events = s->events;
    k->alerts = 0;
    k->subscription = 1;
    if (s->platform == SUB_SLACK) {
        k->type = CONF_SINK_SLACK_BOT;
        k->url = sl->api_url;
        k->access_token = sl->bot_token;
        k->allow_insecure = sl->allow_insecure;
        k->group = SUB_GROUP_SLACK;
    } else {
        k->type = CONF_SINK_MATRIX;
        k->homeserver = mx->homeserver;
        k->access_token = mx->access_token;
        k->allow_insecure = mx->allow_insecure;
        k->group = SUB_GROUP_MATRIX;
    }
    return k;
fail:
    sub_sink_free(k);
    return NULL;
}

void sub_sink_free(struct conf_sink *k)
{
    if (!k)
        return;
    /* url, homeserver and access_token are the configuration's, not ours. */
    free(k->name);
    free(k->room);
    for (size_t i = 0; i < k->n_projects; i++)
        free(k->projects[i]);
    free(k->projects);
    free(k);
}
