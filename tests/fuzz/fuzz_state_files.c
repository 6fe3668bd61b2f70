/*
 * Fuzz harness: the state's small files read back from disk (bridge/state_format.h), on any
 * bytes: the outbox journal (outbox.jsonl), a chat client's sync position (matrix-sync.json) and
 * a subscription record (subscriptions/<key>.json). Every input goes to all three parsers; the
 * first byte picks the committed generation the journal is replayed against. Whatever the
 * parsers accept must survive its own writer: a pending record written as an "add" line and
 * replayed gives the same record, a sync position written and read again is the same, and so is
 * a subscription, which the set every backend's load uses also takes under its own key.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "state_format.h"
#include "subscription.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static void journal(const char *buf, size_t len, uint64_t committed)
{
    struct state_journal_replay out;

    if (state_parse_journal(buf, len, committed, &out) != 0)
        return;
    for (size_t i = 0; i < out.n; i++) {
        const struct journal_record *r = &out.v[i];
        if (!r->id || !r->sink || !r->event || !r->body || r->gen > committed)
            abort();
        char *line = state_format_journal_add(r);
        if (!line)
            continue;
        struct state_journal_replay again;
        if (state_parse_journal(line, strlen(line), committed, &again) == 0) {
            if (again.n != 1 || again.bad || again.torn || !same(again.v[0].id, r->id) ||
                !same(again.v[0].sink, r->sink) || !same(again.v[0].event, r->event) ||
                !same(again.v[0].body, r->body) || again.v[0].created != r->created ||
                again.v[0].gen != r->gen)
                abort();
            state_journal_records_free(again.v, again.n);
        }
        free(line);
    }
    state_journal_records_free(out.v, out.n);
}

static void sync_position(const char *buf, size_t len)
{
    struct state_sync_position p, again;
    char err[256];

    if (state_parse_sync_position(buf, len, &p, err, sizeof(err)) != 0)
        return;
    if (!p.server || !p.user || !p.position)
        abort();
    char *text = state_format_sync_position(&p);
    if (text && state_parse_sync_position(text, strlen(text), &again, err, sizeof(err)) == 0) {
        if (!same(again.server, p.server) || !same(again.user, p.user) ||
            !same(again.position, p.position))
            abort();
        state_sync_position_fini(&again);
    } else if (text) {
        abort(); /* what was read must be writable and readable again */
    }
    free(text);
    state_sync_position_fini(&p);
}

static void same_subscription(const struct subscription *a, const struct subscription *b)
{
    if (a->platform != b->platform || !same(a->channel, b->channel) ||
        a->n_patterns != b->n_patterns || a->events != b->events || !same(a->by, b->by) ||
        a->created != b->created || a->changed != b->changed ||
        (a->suspended || b->suspended ? !same(a->suspended, b->suspended) : 0))
        abort();
    for (size_t i = 0; i < a->n_patterns; i++) {
        if (!same(a->patterns[i], b->patterns[i]))
            abort();
    }
}

static void subscription(const char *buf, size_t len)
{
    struct subscription s, again;
    struct state_subscription_set set = {0};
    struct subscription_list l;
    char why[256], key[STATE_SUBSCRIPTION_KEY];

    if (state_parse_subscription(buf, len, &s, why, sizeof(why)) != 0)
        return;
    /* Accepted means usable: what the writer and the checks of a put take. */
    if (state_subscription_check(&s, why, sizeof(why)) != 0 || s.n_patterns == 0 ||
        s.n_patterns > SUB_MAX_PATTERNS || s.events == 0 || (s.events & ~CONF_EVENTS_ALL))
        abort();
    char *text = state_format_subscription(&s);
    if (text) {
        if (state_parse_subscription(text, strlen(text), &again, why, sizeof(why)) != 0)
            abort(); /* what was read must be writable and readable again */
        same_subscription(&s, &again);
        subscription_fini(&again);
    }
    /* Under its own key the set keeps it (unless it is too big for a record). */
    if (state_subscription_key(s.platform, s.channel, key) == 0 && len <= STATE_SUBSCRIPTION_MAX) {
        if (state_subscription_set_add(&set, key, buf, len, why, sizeof(why)) == 0) {
            state_subscription_set_finish(&set, &l);
            if (l.n != 1)
                abort();
            same_subscription(&s, &l.v[0]);
            subscription_list_fini(&l);
        }
        state_subscription_set_fini(&set);
    }
    free(text);
    subscription_fini(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t committed[] = {0, 1, 7, UINT64_MAX};

    if (size == 0)
        return 0;
    journal((const char *)data + 1, size - 1, committed[data[0] % 4]);
    sync_position((const char *)data + 1, size - 1);
    subscription((const char *)data + 1, size - 1);
    return 0;
}
