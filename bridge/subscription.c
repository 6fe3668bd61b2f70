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
        if (n < 2 || n > 32 || !strchr("CGD", channel[0]))
            return 0;
        for (size_t i = 1; i < n; i++) {
            char c = channel[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
                return 0;
        }
        return 1;
    }
    if (p != SUB_MATRIX || n < 4 || n > SUB_CHANNEL_MAX || channel[0] != '!')
        return 0;
    const char *colon = strchr(channel + 1, ':');
    if (!colon || colon == channel + 1 || !colon[1])
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)channel[i];
        if (c <= 0x20 || c == 0x7f || c == '/')
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

long subscription_find(const struct subscription_list *l, enum sub_platform p, const char *channel)
{
    size_t lo = 0, hi = l->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct subscription *s = &l->v[mid];
        int c = s->platform != p ? (s->platform < p ? -1 : 1) : strcmp(s->channel, channel);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

size_t subscription_count(const struct subscription_list *l, enum sub_platform p)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        n += l->v[i].platform == p;
    return n;
}
