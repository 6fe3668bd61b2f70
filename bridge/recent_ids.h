/*
 * A bounded set of recently seen ids (the Socket Mode client's answered envelope ids, so that
 * a redelivered slash command is acknowledged again but never answered twice): at most `slots`
 * ids, the oldest pushed out first, and each one forgotten ttl_ms after it was added. Adding
 * and looking up cost the same however full it is: a ring in arrival order, indexed by a hash
 * table. Pure: the caller passes the time.
 */
#ifndef YTB_RECENT_IDS_H
#define YTB_RECENT_IDS_H

#include <stddef.h>
#include <stdint.h>

struct recent_ids;

/* A set of up to slots (> 0) ids that lives ttl_ms each. 0 and *out, or -ENOMEM. */
int recent_ids_new(struct recent_ids **out, size_t slots, uint64_t ttl_ms);

/* Frees r and its ids; NULL is fine. */
void recent_ids_free(struct recent_ids *r);

/* 1 when id was added less than ttl_ms before now_ms and not pushed out since, else 0. */
int recent_ids_has(const struct recent_ids *r, const char *id, uint64_t now_ms);

/* Adds a copy of id, seen at now_ms, pushing the oldest out when full. 0 or -ENOMEM. */
int recent_ids_add(struct recent_ids *r, const char *id, uint64_t now_ms);

#endif
