/* Unit tests for the set of recently seen ids: what it remembers, for how long, how many. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recent_ids.h"
#include "test.h"

static void test_basics(void)
{
    struct recent_ids *r = NULL;
    CHECK(recent_ids_new(&r, 4, 1000) == 0);
    CHECK(!recent_ids_has(r, "a", 0));
    CHECK(recent_ids_add(r, "a", 10) == 0);
    CHECK(recent_ids_has(r, "a", 10));
    CHECK(recent_ids_has(r, "a", 1009));
    CHECK(!recent_ids_has(r, "a", 1010)); /* ttl_ms after it was added */
    CHECK(!recent_ids_has(r, "b", 10));
    CHECK(!recent_ids_has(r, "", 10));
    recent_ids_free(r);
    recent_ids_free(NULL);
    CHECK(recent_ids_new(&r, 0, 1000) == -ENOMEM);
}

/* Only the last `slots` ids are remembered; the oldest goes first. */
static void test_ring(void)
{
    struct recent_ids *r = NULL;
    char id[32];
    CHECK(recent_ids_new(&r, 3, 1000) == 0);
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "env-%d", i);
        CHECK(recent_ids_add(r, id, 5) == 0);
    }
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "env-%d", i);
        CHECK(recent_ids_has(r, id, 6) == (i >= 97));
    }
    recent_ids_free(r);
}

/* An id added again is remembered from its newest time, while an older copy is still there. */
static void test_again(void)
{
    struct recent_ids *r = NULL;
    CHECK(recent_ids_new(&r, 8, 100) == 0);
    CHECK(recent_ids_add(r, "x", 0) == 0);
    CHECK(recent_ids_add(r, "x", 90) == 0);
    CHECK(recent_ids_has(r, "x", 150));
    CHECK(!recent_ids_has(r, "x", 190));
    recent_ids_free(r);
}

/* Against a plain list of (id, time): many ids, few buckets, any order of adds and lookups. */
static void test_model(void)
{
    enum { SLOTS = 16, IDS = 40, ROUNDS = 20000 };
    struct {
        int id;
        uint64_t at;
    } model[SLOTS];
    size_t n = 0, next = 0;
    struct recent_ids *r = NULL;
    uint64_t now = 0;
    unsigned seed = 1;
    char id[32];

    CHECK(recent_ids_new(&r, SLOTS, 50) == 0);
    for (int round = 0; round < ROUNDS; round++) {
        seed = seed * 1103515245u + 12345u;
        int which = (int)((seed >> 16) % IDS);
        now += (seed >> 8) % 4;
        snprintf(id, sizeof(id), "%08x-%d", (unsigned)which * 2654435761u, which);
        int want = 0;
        for (size_t i = 0; i < n; i++)
            want |= model[i].id == which && now - model[i].at < 50;
        CHECK(recent_ids_has(r, id, now) == want);
        if ((seed >> 4) % 2) {
            CHECK(recent_ids_add(r, id, now) == 0);
            model[next].id = which;
            model[next].at = now;
            next = (next + 1) % SLOTS;
            n += n < SLOTS;
        }
    }
    recent_ids_free(r);
}

int main(void)
{
    RUN(test_basics);
    RUN(test_ring);
    RUN(test_again);
    RUN(test_model);
    return test_done();
}
