/*
 * The chat commands' index of one snapshot: its listed projects (all but the held ones) in
 * listing order, with the fold keys (utf8_fold()) of their names, short names and ids, so that
 * a command neither sorts nor folds the snapshot. Built once per committed snapshot and never
 * patched: a new snapshot gets a new index (bridge.c), so it cannot disagree with the list it
 * was built from. Pure: no I/O.
 *
 * The listing order is the folded shown name (the name, else the short name, else the id),
 * then the shown name as it is, then the id (project_id_cmp()): a total order.
 */
#ifndef YTB_COMMAND_INDEX_H
#define YTB_COMMAND_INDEX_H

#include <stddef.h>

#include "project.h"

struct command_index;

/*
 * Builds the index of l (finished). The index points into l's projects and strings: l must
 * outlive it, unchanged. 0 and *out (command_index_free()), or -ENOMEM.
 */
int command_index_new(struct command_index **out, const struct project_list *l);

void command_index_free(struct command_index *ix);

/*
 * 1 when ix was built from l as l is now (the same list, array and count): a cheap guard
 * against an index kept past its snapshot, not a proof.
 */
int command_index_of(const struct command_index *ix, const struct project_list *l);

/* Listed projects (the held ones are not). */
size_t command_index_count(const struct command_index *ix);

/* The i-th listed project in listing order (i < command_index_count()). */
const struct project *command_index_at(const struct command_index *ix, size_t i);

/*
 * The listed projects whose name or short name contains filter once both are folded (filter:
 * non-empty text): the first max of them in listing order into first[], their number in all
 * into *total. 0, or -ENOMEM (folding the filter).
 */
int command_index_match(const struct command_index *ix, const char *filter,
                        const struct project **first, size_t max, size_t *total);

/*
 * The listed project whose short name or id is key: an exact match first, else one whose fold
 * key is key's; among several, the first in the list's own order (by id). *found gets it or
 * NULL. 0, or -ENOMEM (folding key).
 */
int command_index_find(const struct command_index *ix, const char *key,
                       const struct project **found);

/* Bytes the index holds (for the benchmark). */
size_t command_index_bytes(const struct command_index *ix);

#endif
