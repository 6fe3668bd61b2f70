/*
 * Chat command rate limits: one budget per user and one for everybody, so that a flood of
 * commands (one user's script, or many users at once) is answered with a short "slow down"
 * instead of piling up work that would be answered too late (Slack drops an ack after 3 s).
 * Pure: no I/O; the caller passes the monotonic time.
 *
 * Each budget is a token bucket in the GCRA form (one "theoretical arrival time" per bucket,
 * no timer): `burst` commands at once, then one every `interval_ms`. The configuration
 * (chat.*.commands_per_user and commands_per_second, conf.h) gives each user a burst of
 * per_user commands refilled at per_user a minute, and everybody together a burst of
 * 2 * per_second refilled at per_second a second.
 */
#ifndef YTB_RATELIMIT_H
#define YTB_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#define RATELIMIT_USERS    256 /* users remembered; the least recently limited go first */
#define RATELIMIT_USER_MAX 63  /* bytes of a user id kept (Slack U…, Matrix @…:…) */

enum ratelimit_verdict {
    RATELIMIT_PASS = 0, /* answer it */
    RATELIMIT_WARN,     /* over a limit: answer only "slow down" (the first refusal in a row) */
    RATELIMIT_DROP,     /* over a limit and already told: answer nothing (or an empty ack) */
};

struct ratelimit_user {
    char id[RATELIMIT_USER_MAX + 1];
    uint64_t tat; /* the bucket's theoretical arrival time, ms; 0: unused slot */
    int told;     /* refused since the last command that passed, and told so */
};

struct ratelimit {
    unsigned user_burst, all_burst;
    uint64_t user_interval_ms, all_interval_ms;
    uint64_t tat_all;
    struct ratelimit_user users[RATELIMIT_USERS];
};

/* Every budget full: per_user commands a minute per user, per_second a second in all (>= 1). */
void ratelimit_init(struct ratelimit *rl, unsigned per_user, unsigned per_second);

/*
 * Takes one command of user (any string; cut at RATELIMIT_USER_MAX bytes) at now_ms. On a refusal
 * *retry_s (if not NULL) is the whole seconds until that user's next command would pass.
 */
enum ratelimit_verdict ratelimit_take(struct ratelimit *rl, const char *user, uint64_t now_ms,
                                      unsigned *retry_s);

/* The "slow down" line for a refusal, retry_s as ratelimit_take() gave it. */
void ratelimit_message(char *buf, size_t len, unsigned retry_s);

#endif
