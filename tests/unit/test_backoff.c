/*
 * The back-off policy: the doubling and its cap, the jitter's range, Retry-After, the floor, and
 * no overflow for any failure count, Retry-After or policy. The random source is injected, so
 * every check is exact.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "backoff.h"
#include "test.h"

static uint32_t fixed_r;

static uint32_t fixed(void)
{
    return fixed_r;
}

static uint32_t lcg_state;

static uint32_t lcg(void)
{
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return lcg_state;
}

/* The shapes of the daemon's callers (bridge.c, outbox.c, slack_socket.c, matrix_sync.c). */
static const struct backoff poll_like = {.first_ms = 2000,
                                         .cap_ms = 60000,
                                         .jitter_min_pct = 80,
                                         .jitter_max_pct = 120,
                                         .retry_after_max_s = 86400};
static const struct backoff outbox_like = {.first_ms = 1000,
                                           .cap_ms = 300000,
                                           .jitter_min_pct = 80,
                                           .jitter_max_pct = 120,
                                           .retry_after_max_s = 86400};
static const struct backoff slack_like = {.first_ms = 1000,
                                          .cap_ms = 60000,
                                          .jitter_min_pct = 50,
                                          .jitter_max_pct = 100,
                                          .floor_ms = 1000,
                                          .retry_after_max_s = 3600};
static const struct backoff matrix_like = {
    .first_ms = 10000, .cap_ms = 200000, .jitter_min_pct = 50, .jitter_max_pct = 150};

/* The delay with the lowest and the highest random draw. */
static uint64_t lowest(struct backoff p, unsigned n, long ra)
{
    p.random = fixed;
    fixed_r = 0;
    return backoff_delay(&p, n, ra);
}

static uint64_t highest(struct backoff p, unsigned n, long ra)
{
    p.random = fixed;
    fixed_r = UINT32_MAX;
    return backoff_delay(&p, n, ra);
}

static void test_doubling_to_the_cap(void)
{
    struct backoff p = {.first_ms = 1000,
                        .cap_ms = 60000,
                        .jitter_min_pct = 100,
                        .jitter_max_pct = 100,
                        .random = fixed};
    static const uint64_t want[] = {1000, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};

    for (unsigned n = 0; n < sizeof(want) / sizeof(want[0]); n++)
        CHECK_INT(backoff_delay(&p, n, -1), want[n]);
    CHECK_INT(backoff_delay(&p, 1000, -1), 60000);
    CHECK_INT(backoff_delay(&p, UINT_MAX, -1), 60000);
    /* A cap below the first step is the cap (a 1 s poll interval with a 2 s first step). */
    p.first_ms = 2000;
    p.cap_ms = 1000;
    CHECK_INT(backoff_delay(&p, 1, -1), 1000);
    CHECK_INT(backoff_delay(&p, UINT_MAX, -1), 1000);
}

/* Every failure count: inside [base * min%, base * max%], the ends reached by the ends of r. */
static void check_bounds(const struct backoff *p)
{
    static const unsigned big[] = {64, 65, 1000, 1u << 20, UINT_MAX - 1, UINT_MAX};
    uint64_t base = p->first_ms;

    for (unsigned n = 1; n <= 80; n++) {
        uint64_t lo = base * p->jitter_min_pct / 100, hi = base * p->jitter_max_pct / 100;
        if (lo < p->floor_ms)
            lo = p->floor_ms;
        CHECK_INT(lowest(*p, n, -1), lo);
        CHECK_INT(highest(*p, n, -1), hi < lo ? lo : hi);
        base = base * 2 < p->cap_ms ? base * 2 : p->cap_ms;
    }
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        CHECK_INT(lowest(*p, big[i], -1), p->cap_ms * p->jitter_min_pct / 100);
        CHECK_INT(highest(*p, big[i], -1), p->cap_ms * p->jitter_max_pct / 100);
    }
}

static void test_bounds_of_each_caller(void)
{
    check_bounds(&poll_like);
    check_bounds(&outbox_like);
    check_bounds(&slack_like);
    check_bounds(&matrix_like);
    /* The callers' documented figures. */
    CHECK_INT(lowest(matrix_like, 1, -1), 5000); /* random 5-15 s */
    CHECK_INT(highest(matrix_like, 1, -1), 15000);
    CHECK_INT(lowest(matrix_like, 30, -1), 100000); /* still jittered at the cap */
    CHECK_INT(highest(matrix_like, 30, -1), 300000);
    CHECK_INT(lowest(slack_like, 1, -1), 1000); /* 1 s floor */
    CHECK_INT(highest(slack_like, 1, -1), 1000);
    CHECK_INT(lowest(slack_like, 2, -1), 1000);
    CHECK_INT(highest(slack_like, 2, -1), 2000);
    CHECK_INT(lowest(outbox_like, 40, -1), 240000);
    CHECK_INT(highest(outbox_like, 40, -1), 360000);
}

static void test_retry_after_wins_and_is_clamped(void)
{
    /* Longer than our delay, even beyond the cap: it wins. */
    CHECK_INT(highest(outbox_like, 1, 3), 3000);
    CHECK_INT(lowest(outbox_like, 1, 600), 600000);
    CHECK_INT(highest(poll_like, 50, 3600), 3600000);
    /* Shorter than our delay: ours stands. */
    CHECK_INT(lowest(outbox_like, 5, 1), 12800);
    CHECK_INT(lowest(outbox_like, 1, 0), 800);
    /* Cut to the policy's maximum, however big. */
    CHECK_INT(lowest(outbox_like, 1, 86401), 86400000);
    CHECK_INT(lowest(slack_like, 1, 7200), 3600000);
    CHECK_INT(lowest(slack_like, 1, LONG_MAX), 3600000);
    /* A policy without a maximum ignores Retry-After; a negative one is no Retry-After. */
    CHECK_INT(lowest(matrix_like, 1, 60), 5000);
    CHECK_INT(lowest(outbox_like, 1, LONG_MIN), 800);
    CHECK_INT(lowest(outbox_like, 1, -1), 800);
}

static void test_jitter_range_and_spread(void)
{
    struct backoff p = outbox_like;
    uint64_t min = UINT64_MAX, max = 0;

    p.random = lcg;
    lcg_state = 1;
    for (int i = 0; i < 10000; i++) {
        uint64_t d = backoff_delay(&p, 3, -1);
        CHECK(d >= 3200 && d <= 4800);
        min = d < min ? d : min;
        max = d > max ? d : max;
    }
    /* Spread over the whole range, not stuck at one end. */
    CHECK(min < 3250);
    CHECK(max > 4750);
    /* The default source (rand()) stays in range too, and repeats under the same seed. */
    p.random = NULL;
    srand(42);
    uint64_t first = backoff_delay(&p, 3, -1);
    for (int i = 0; i < 1000; i++) {
        uint64_t d = backoff_delay(&p, 3, -1);
        CHECK(d >= 3200 && d <= 4800);
    }
    srand(42);
    CHECK_INT(backoff_delay(&p, 3, -1), first);
}

static void test_no_overflow_with_huge_policies(void)
{
    struct backoff p = {.first_ms = UINT64_MAX,
                        .cap_ms = UINT64_MAX,
                        .jitter_min_pct = UINT_MAX,
                        .jitter_max_pct = UINT_MAX,
                        .floor_ms = UINT64_MAX,
                        .retry_after_max_s = LONG_MAX,
                        .random = fixed};
    uint64_t limit = (uint64_t)1 << 40;

    /* Everything is cut to about 35 years (times 10 for the percentages): long, not wrapped. */
    fixed_r = UINT32_MAX;
    CHECK_INT(backoff_delay(&p, UINT_MAX, LONG_MAX), limit * 10);
    fixed_r = 0;
    CHECK_INT(backoff_delay(&p, 1, -1), limit * 10);
    p.jitter_min_pct = 0;
    p.floor_ms = 0;
    fixed_r = UINT32_MAX;
    /* Over a span this wide 32 random bits reach the top within span / 2^32 ms. */
    uint64_t d = backoff_delay(&p, 1, -1);
    CHECK(d <= limit * 10 && d >= limit * 10 - (limit * 10 >> 32) - 1);
    fixed_r = 0;
    CHECK_INT(backoff_delay(&p, 1, -1), 0);
    CHECK_INT(backoff_delay(&p, 1, LONG_MAX), limit / 1000 * 1000);
    /* A first step of 1 ms doubles up to the limit and no further. */
    p = (struct backoff){.first_ms = 1,
                         .cap_ms = UINT64_MAX,
                         .jitter_min_pct = 100,
                         .jitter_max_pct = 100,
                         .random = fixed};
    CHECK_INT(backoff_delay(&p, 41, -1), limit);
    CHECK_INT(backoff_delay(&p, UINT_MAX, -1), limit);
    /* A range given upside down is its lower end; a zero policy retries at once. */
    p = (struct backoff){.first_ms = 1000,
                         .cap_ms = 1000,
                         .jitter_min_pct = 120,
                         .jitter_max_pct = 80,
                         .random = fixed};
    CHECK_INT(backoff_delay(&p, 1, -1), 1200);
    p = (struct backoff){.random = fixed};
    CHECK_INT(backoff_delay(&p, UINT_MAX, -1), 0);
}

int main(void)
{
    RUN(test_doubling_to_the_cap);
    RUN(test_bounds_of_each_caller);
    RUN(test_retry_after_wins_and_is_clamped);
    RUN(test_jitter_range_and_spread);
    RUN(test_no_overflow_with_huge_policies);
    return test_done();
}
