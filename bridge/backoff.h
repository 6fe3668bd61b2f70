/*
 * Retry delays: the one back-off policy of the daemon (the poll cycle, the outbox, the Slack and
 * Matrix chat clients). Jittered exponential: the base delay starts at first_ms and doubles with
 * each failure in a row up to cap_ms, the delay is drawn from a range around the base, and a
 * server's Retry-After wins over it. Pure: no I/O, no clock, no state.
 */
#ifndef YTB_BACKOFF_H
#define YTB_BACKOFF_H

#include <stdint.h>

/*
 * A policy; callers keep one as a static const (the poll cycle builds its own, its cap being
 * the configured poll interval). For failure n (1 for the first in a row) the delay is
 *
 *   base  = min(first_ms * 2^(n-1), cap_ms)
 *   delay = a uniform draw from [base * jitter_min_pct / 100, base * jitter_max_pct / 100]
 *   delay = max(delay, floor_ms, min(retry_after, retry_after_max_s) seconds)
 *
 * so jitter_min_pct = jitter_max_pct = 100 is no jitter, 80..120 is +-20%, 50..100 is "equal
 * jitter". The jitter is drawn around the capped base, so it never collapses at the cap.
 */
struct backoff {
    uint64_t first_ms;
    uint64_t cap_ms;
    unsigned jitter_min_pct, jitter_max_pct;
    uint64_t floor_ms;
    long retry_after_max_s; /* a longer Retry-After is cut to this */
    /* Uniform over all 32 bits; NULL: rand() (main.c seeds it). Tests inject their own. */
    uint32_t (*random)(void);
};

/*
 * The delay in milliseconds before retrying after `failures` failures in a row (0 counts as 1).
 * retry_after_s is what the server asked for in seconds (Retry-After), or negative if it said
 * nothing; it wins over the computed delay, also beyond cap_ms. Never overflows: any failure
 * count and any Retry-After give a delay within the bounds above.
 */
uint64_t backoff_delay(const struct backoff *b, unsigned failures, long retry_after_s);

#endif
