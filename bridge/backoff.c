/*
 * Retry delays (backoff.h). Every product below is bounded: the policy's times are cut to
 * LIMIT_MS and its percentages to PCT_MAX before anything is multiplied, the doubling stops at
 * the cap, and the random draw is scaled without a 64-bit product overflowing. So a failure
 * count in the billions, a hostile Retry-After or a careless policy give a long delay, never a
 * wrapped-around short one (a hot loop).
 */
#include "backoff.h"

#include <stdlib.h>

#define LIMIT_MS ((uint64_t)1 << 40) /* about 35 years */
#define PCT_MAX  1000u

static uint64_t at_most(uint64_t v, uint64_t max)
{
    return v < max ? v : max;
}

static uint32_t default_random(void)
{
    /* rand() gives 31 bits (glibc's RAND_MAX); two calls fill 32. */
    return (uint32_t)rand() ^ ((uint32_t)rand() << 16);
}

/* A draw from [0, span] for a uniform r: (span + 1) * r / 2^32, split so nothing overflows. */
static uint64_t scale(uint64_t span, uint32_t r)
{
    uint64_t n = span + 1;
    return (n >> 32) * r + (((n & 0xffffffffu) * r) >> 32);
}

uint64_t backoff_delay(const struct backoff *b, unsigned failures, long retry_after_s)
{
    uint64_t cap = at_most(b->cap_ms, LIMIT_MS);
    uint64_t base = at_most(b->first_ms, cap);
    uint64_t floor = at_most(b->floor_ms, LIMIT_MS);
    unsigned lo_pct = b->jitter_min_pct < PCT_MAX ? b->jitter_min_pct : PCT_MAX;
    unsigned hi_pct = b->jitter_max_pct < PCT_MAX ? b->jitter_max_pct : PCT_MAX;
    uint64_t lo, hi, d;

    /* At most about 40 rounds: the base reaches the cap (<= 2^40) by then. */
    for (unsigned i = 1; i < failures && base < cap; i++)
        base = at_most(base * 2, cap);
    if (hi_pct < lo_pct)
        hi_pct = lo_pct;
    lo = base * lo_pct / 100u;
    hi = base * hi_pct / 100u;
    d = lo;
    if (hi > lo)
        d += scale(hi - lo, b->random ? b->random() : default_random());
    if (d < floor)
        d = floor;
    if (retry_after_s >= 0) {
        /* The server knows its own load better than our guess: its delay wins, cut to the
         * policy's maximum (a hostile or broken server must not park us for days). */
        long max_s = b->retry_after_max_s > 0 ? b->retry_after_max_s : 0;
        uint64_t ra = (uint64_t)(retry_after_s < max_s ? retry_after_s : max_s);
        ra = at_most(ra, LIMIT_MS / 1000u) * 1000u;
        if (ra > d)
            d = ra;
    }
    return d;
}
