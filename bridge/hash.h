/*
 * The one string hash for in-memory sets of ids (FNV-1a, 64 bits): recent_ids.c's table and
 * matrix_msg.c's ring of seen event ids. Not for anything an attacker could aim at collisions
 * of to cost more than a longer chain or a repeated answer skipped.
 */
#ifndef YTB_HASH_H
#define YTB_HASH_H

#include <stdint.h>

static inline uint64_t hash_str(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

#endif
