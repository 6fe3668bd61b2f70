/*
 * Chat command rate limits (ratelimit.h). GCRA: a bucket of burst B and interval T holds the
 * "theoretical arrival time" tat; a command at now passes when now >= tat - (B - 1) * T, and then
 * tat = max(tat, now) + T. One number per bucket, exact, no refill timer.
 *
 * The user table is a fixed array scanned linearly: 256 short string compares per command cost
 * well under a microsecond, less than the JSON of the ack. When it is full, the slot whose
 * bucket refilled longest ago (the smallest tat) is reused: that user is the one least likely to
 * be limiting anything. Forgetting a user that is still limited only gives it a fresh budget;
 * the global bucket still holds.
 */
#include "ratelimit.h"

#include <stdio.h>
#include <string.h>

void ratelimit_init(struct ratelimit *rl, unsigned per_user, unsigned per_second)
{
    memset(rl, 0, sizeof(*rl));
    per_user = per_user ? per_user : 1;
    per_second = per_second ? per_second : 1;
    rl->user_burst = per_user;
    rl->user_interval_ms = 60000u / per_user ? 60000u / per_user : 1;
    rl->all_burst = 2 * per_second;
    rl->all_interval_ms = 1000u / per_second ? 1000u / per_second : 1;
}

/* 1 if a bucket (tat, burst, interval) lets a command through at now. */
static int allows(uint64_t tat, unsigned burst, uint64_t interval, uint64_t now)
{
    uint64_t tau = (uint64_t)(burst - 1) * interval;
    return tat <= now + tau;
}

static uint64_t charge(uint64_t tat, uint64_t interval, uint64_t now)
{
    return (tat > now ? tat : now) + interval;
}

static struct ratelimit_user *find(struct ratelimit *rl, const char *user)
{
    struct ratelimit_user *oldest = &rl->users[0];

    for (size_t i = 0; i < RATELIMIT_USERS; i++) {
        struct ratelimit_user *u = &rl->users[i];
        if (u->tat && strncmp(u->id, user, RATELIMIT_USER_MAX) == 0)
            return u;
        if (u->tat < oldest->tat)
            oldest = u;
    }
    memset(oldest, 0, sizeof(*oldest));
    snprintf(oldest->id, sizeof(oldest->id), "%s", user);
    return oldest;
}

enum ratelimit_verdict ratelimit_take(struct ratelimit *rl, const char *user, uint64_t now_ms,
                                      unsigned *retry_s)
{
    struct ratelimit_user *u = find(rl, user ? user : "");
    uint64_t until = 0; /* when this user's next command passes */
    int user_ok = allows(u->tat, rl->user_burst, rl->user_interval_ms, now_ms);
    int all_ok = allows(rl->tat_all, rl->all_burst, rl->all_interval_ms, now_ms);

    if (user_ok && all_ok) {
        u->tat = charge(u->tat, rl->user_interval_ms, now_ms);
        rl->tat_all = charge(rl->tat_all, rl->all_interval_ms, now_ms);
        u->told = 0;
        return RATELIMIT_PASS;
    }
    if (!user_ok)
        until = u->tat - (uint64_t)(rl->user_burst - 1) * rl->user_interval_ms;
    if (!all_ok) {
        uint64_t t = rl->tat_all - (uint64_t)(rl->all_burst - 1) * rl->all_interval_ms;
        if (t > until)
            until = t;
    }
    if (!u->tat)
        u->tat = now_ms; /* a slot in use, with a full budget (tat <= now) */
    if (retry_s)
        *retry_s = (unsigned)((until - now_ms + 999) / 1000);
    if (u->told)
        return RATELIMIT_DROP;
    u->told = 1;
    return RATELIMIT_WARN;
}

void ratelimit_message(char *buf, size_t len, unsigned retry_s)
{
    snprintf(buf, len, "Slow down: too many commands. Try again in %u s.", retry_s ? retry_s : 1);
}
