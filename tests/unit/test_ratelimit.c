/* Chat command rate limits: bursts, refill, the one-time warning, the global budget, eviction. */
#include <stdio.h>

#include "ratelimit.h"
#include "test.h"

static struct ratelimit rl;

static void test_user_burst_then_refill(void)
{
    uint64_t t = 1000000;
    unsigned retry = 0;

    ratelimit_init(&rl, 15, 50);
    for (unsigned i = 0; i < rl.user_burst; i++)
        CHECK_INT(ratelimit_take(&rl, "U1", t, NULL), RATELIMIT_PASS);
    CHECK_INT(ratelimit_take(&rl, "U1", t, &retry), RATELIMIT_WARN);
    CHECK_INT(retry, rl.user_interval_ms / 1000);
    CHECK_INT(ratelimit_take(&rl, "U1", t + 10, NULL), RATELIMIT_DROP); /* told once only */
    CHECK_INT(ratelimit_take(&rl, "U2", t, NULL), RATELIMIT_PASS);      /* others unaffected */
    /* One interval later exactly one more passes, and the warning is due again after it. */
    t += rl.user_interval_ms;
    CHECK_INT(ratelimit_take(&rl, "U1", t, NULL), RATELIMIT_PASS);
    CHECK_INT(ratelimit_take(&rl, "U1", t, NULL), RATELIMIT_WARN);
    /* A long pause refills the whole burst, no more. */
    t += 3600 * 1000;
    for (unsigned i = 0; i < rl.user_burst; i++)
        CHECK_INT(ratelimit_take(&rl, "U1", t, NULL), RATELIMIT_PASS);
    CHECK_INT(ratelimit_take(&rl, "U1", t, NULL), RATELIMIT_WARN);
}

static void test_global_budget(void)
{
    uint64_t t = 5000000;
    char user[32];
    int passed = 0, warned = 0;
    unsigned retry = 0;

    ratelimit_init(&rl, 15, 5);
    /* Many users, one command each: the global burst passes, then each user is told once. */
    for (int i = 0; i < 100; i++) {
        snprintf(user, sizeof(user), "U%d", i);
        enum ratelimit_verdict v = ratelimit_take(&rl, user, t, &retry);
        passed += v == RATELIMIT_PASS;
        warned += v == RATELIMIT_WARN;
    }
    CHECK_INT(passed, rl.all_burst);
    CHECK_INT(warned, 100 - rl.all_burst);
    CHECK_INT(retry, 1);
    /* The global budget refills at its own pace: 1 s lets 1000/interval more through. */
    t += 1000;
    passed = 0;
    for (int i = 100; i < 200; i++) {
        snprintf(user, sizeof(user), "U%d", i);
        passed += ratelimit_take(&rl, user, t, NULL) == RATELIMIT_PASS;
    }
    CHECK_INT(passed, 1000 / rl.all_interval_ms);
}

static void test_many_users_evicted(void)
{
    uint64_t t = 9000000;
    char user[32];

    /* A full table of users who each asked once, long enough apart for the global budget. */
    ratelimit_init(&rl, 15, 50);
    for (int i = 0; i < RATELIMIT_USERS - 1; i++) {
        snprintf(user, sizeof(user), "idle%d", i);
        t += rl.all_interval_ms;
        CHECK_INT(ratelimit_take(&rl, user, t, NULL), RATELIMIT_PASS);
    }
    t += rl.all_interval_ms * rl.all_burst;
    for (unsigned i = 0; i < rl.user_burst; i++)
        CHECK_INT(ratelimit_take(&rl, "flooder", t, NULL), RATELIMIT_PASS);
    CHECK_INT(ratelimit_take(&rl, "flooder", t, NULL), RATELIMIT_WARN);
    /* Newcomers take the slots of the users whose budgets refilled longest ago, not the
     * flooder's, which is still limited while everybody else may ask. */
    for (int i = 0; i < 10; i++) {
        snprintf(user, sizeof(user), "new%d", i);
        t += rl.all_interval_ms;
        CHECK_INT(ratelimit_take(&rl, user, t, NULL), RATELIMIT_PASS);
        CHECK_INT(ratelimit_take(&rl, "flooder", t, NULL), RATELIMIT_DROP);
    }
    /* Long ids are cut, not overflowed, and still identify their user. */
    char longid[300];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    ratelimit_init(&rl, 15, 50);
    for (unsigned i = 0; i < rl.user_burst; i++)
        CHECK_INT(ratelimit_take(&rl, longid, t, NULL), RATELIMIT_PASS);
    CHECK_INT(ratelimit_take(&rl, longid, t, NULL), RATELIMIT_WARN);
}

static void test_configuration(void)
{
    ratelimit_init(&rl, 10, 10); /* the defaults: 10 a minute per user, 10 a second in all */
    CHECK_INT(rl.user_burst, 10);
    CHECK_INT(rl.user_interval_ms, 6000);
    CHECK_INT(rl.all_burst, 20);
    CHECK_INT(rl.all_interval_ms, 100);
    ratelimit_init(&rl, 0, 5000); /* never a zero interval or an empty bucket */
    CHECK_INT(rl.user_burst, 1);
    CHECK_INT(rl.all_interval_ms, 1);
    CHECK_INT(ratelimit_take(&rl, "U1", 1000, NULL), RATELIMIT_PASS);
    CHECK_INT(ratelimit_take(&rl, "U1", 1000, NULL), RATELIMIT_WARN);
}

static void test_message(void)
{
    char buf[128];
    ratelimit_message(buf, sizeof(buf), 4);
    CHECK_STR(buf, "Slow down: too many commands. Try again in 4 s.");
    ratelimit_message(buf, sizeof(buf), 0);
    CHECK_STR(buf, "Slow down: too many commands. Try again in 1 s.");
}

int main(void)
{
    RUN(test_user_burst_then_refill);
    RUN(test_global_budget);
    RUN(test_many_users_evicted);
    RUN(test_configuration);
    RUN(test_message);
    return test_done();
}
