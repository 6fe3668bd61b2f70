/*
 * Projects, sorted project lists and the diff between a saved snapshot and a fresh poll.
 * Pure: no I/O, no clock (the caller passes "now").
 *
 * A project is keyed on its database id ("0-12"); on the legacy API, which has none, the short
 * name is the key (so a legacy rename shows as removed + created). Strings are owned by the
 * list's string pool; a NULL field means "the server did not say" (unknown), never "empty".
 */
#ifndef YTB_PROJECT_H
#define YTB_PROJECT_H

#include <stddef.h>
#include <stdint.h>

#include "jscan.h"

/* Caps on what a server may make the bridge store per project (longer text is shortened). */
#define PROJECT_MAX_ID_LEN          256
#define PROJECT_MAX_NAME_LEN        1024
#define PROJECT_MAX_DESCRIPTION_LEN 1000 /* enough for `project KEY` */

enum tri {
    TRI_UNKNOWN = -1,
    TRI_NO = 0,
    TRI_YES = 1,
};

/* The YouTrack API a list came from: it decides the key (above) and a project's link. */
enum youtrack_flavour {
    YOUTRACK_UNKNOWN = 0,
    YOUTRACK_MODERN, /* /api: keyed on the database id */
    YOUTRACK_LEGACY, /* /rest: keyed on the short name */
};

/* "api" / "legacy" / "unknown"; youtrack_flavour_parse() is the inverse (0 or -EINVAL). */
const char *youtrack_flavour_name(enum youtrack_flavour f);
int youtrack_flavour_parse(const char *s, enum youtrack_flavour *out);

struct project {
    const char *id;         /* the key; never NULL in a list */
    const char *short_name; /* NULL: unknown */
    const char *name;
    const char *description;
    const char *leader_login;
    const char *leader_name;
    int64_t first_seen;   /* unix seconds when the bridge first saw it; 0: unknown */
    uint32_t seq;         /* insertion order, to keep the first of duplicate ids */
    uint16_t missing;     /* snapshot only: consecutive complete polls it was missing from */
    signed char archived; /* enum tri */
    unsigned char held;   /* snapshot only: removal held back by the mass-removal guard */
};

struct pool_chunk;

struct project_list {
    struct project *v; /* sorted by id (project_id_cmp) after project_list_finish() */
    size_t n, cap;
    struct pool_chunk *chunks; /* string storage */
};

/* A zeroed struct project_list is a valid empty list, as is one after project_list_init(). */
void project_list_init(struct project_list *l);
void project_list_fini(struct project_list *l);

/* Copies len bytes of s into the list's pool, NUL-terminated. Returns NULL on ENOMEM. */
const char *project_list_strdup(struct project_list *l, const char *s, size_t len);

/* Appends a copy of p, its strings copied into l's pool. Returns 0, -EINVAL (no id) or -ENOMEM. */
int project_list_add(struct project_list *l, const struct project *p);

/*
 * Appends p as it is: its strings must already live in l's pool (project_list_strdup()) or be
 * NULL. The parsers use it to avoid a second copy. Returns 0 or -ENOMEM.
 */
int project_list_push(struct project_list *l, const struct project *p);

/*
 * Sorts by id and removes duplicate ids, keeping the first added. Returns how many duplicates
 * were dropped (YouTrack pages can overlap when projects are added between pages).
 */
size_t project_list_finish(struct project_list *l);

/*
 * 1 when two finished lists hold the same projects with the same fields and guard counters
 * (insertion order aside): a snapshot that would not change need not be written.
 */
int project_list_same(const struct project_list *a, const struct project_list *b);

/*
 * One of ids[0..n) that occurs more than once (byte-equal), or NULL. Sorts ids in place. For
 * answers that must not repeat a key: which of two entries with one key is the project would
 * otherwise depend on their order, and a server that alternates it fakes a rename every poll.
 */
const char *project_ids_duplicate(const char **ids, size_t n);

/* Binary search in a finished list. Returns NULL when absent. */
const struct project *project_list_find(const struct project_list *l, const char *id);

/*
 * Orders ids naturally: runs of digits compare by value, so "0-2" < "0-10". Ties between
 * equal-valued digit runs ("0-02" vs "0-2") fall back to strcmp, so the order is total.
 */
int project_id_cmp(const char *a, const char *b);

/*
 * Reads a JSON string-or-null into l's pool: cut at an embedded NUL, shortened to max bytes on a
 * UTF-8 boundary; null gives NULL (unknown). what names the field in the error. 0 or -errno.
 */
int project_read_string(struct jscan *js, struct project_list *l, size_t max, const char **out,
                        const char *what);

/*
 * Reads one project object in the /api/admin/projects shape (id, shortName, name, archived,
 * description, leader{login,name}; other keys skipped) and appends it to l. with_state also
 * reads the snapshot's first_seen, missing and held. Returns 0, -EPROTO (js->err says why: a
 * missing id, a wrong type) or -ENOMEM.
 */
int project_read_json(struct jscan *js, struct project_list *l, int with_state);

enum change_kind {
    CHANGE_CREATED = 0,
    CHANGE_RENAMED, /* name and/or short name */
    CHANGE_ARCHIVED,
    CHANGE_UNARCHIVED,
    CHANGE_REMOVED,
};

/* "created", "renamed", ... */
const char *change_kind_name(enum change_kind k);

/* The kind named by s[0..n) as change_kind_name() writes it (ASCII case-insensitively when
 * casefold is set): 0 and *kind, or -1 for none. */
int change_kind_parse(const char *s, size_t n, int casefold, enum change_kind *kind);

struct change {
    enum change_kind kind;
    const struct project *before; /* in the saved list; NULL for CHANGE_CREATED */
    const struct project *after;  /* in diff.next; NULL for CHANGE_REMOVED */
};

/*
 * One announced change, as kept in the snapshot's bounded history (the state stores it, the
 * `changes` command shows it). The strings are owned (malloc'ed) by the entry and bounded like
 * a project's (PROJECT_MAX_*_LEN).
 */
struct history_entry {
    int64_t at; /* unix seconds */
    enum change_kind kind;
    char *id;             /* never NULL in a snapshot's history */
    char *short_name;     /* after the change (before it, for a removal); NULL: unknown */
    char *name;           /* likewise */
    char *old_short_name; /* renames: before the change; else NULL */
    char *old_name;
};

struct diff_opts {
    int removal_confirmations; /* >= 1: complete polls a project must be missing from */
    int mass_removal_limit;    /* more confirmed removals than this in one poll are held */
    int accept_removals;       /* operator confirmed: report held and pending removals now */
    int64_t now;               /* unix seconds, for first_seen of new projects */
};

struct diff {
    struct change *changes; /* by project id, then kind (enum order) */
    size_t n_changes;
    /*
     * The snapshot to save: every fetched project (fields the server left out keep their last
     * known value), plus missing projects not yet confirmed (missing > 0) or held (held = 1).
     */
    struct project_list next;
    size_t n_held_new;   /* removals this poll held back: announce one alert when > 0 */
    size_t n_held;       /* removals held in total after this poll */
    size_t n_pending;    /* missing projects waiting for more confirmations */
    size_t n_reappeared; /* held or pending projects that came back */
};

/*
 * Compares a finished saved list with a finished fetched list (both from complete polls).
 * Returns 0 and fills *out (free with diff_fini()), or -ENOMEM. saved must outlive *out.
 * The fetched list's string pool moves into out->next (so a big list is not copied): fetched's
 * projects stay readable while *out lives; free fetched with project_list_fini() as usual.
 */
int project_diff(const struct project_list *saved, struct project_list *fetched,
                 const struct diff_opts *opts, struct diff *out);

void diff_fini(struct diff *d);

/*
 * What a list, a message or an answer shows for p: its name, else its short name, else its id
 * (never NULL for a project of a list). The one rule render.c, command.c and the command index
 * share, so an answer lists projects in the order of the names it shows.
 */
const char *project_shown_name(const struct project *p);

/*
 * p's page in the YouTrack UI at service_url (NULL: a relative link): project_page_base(), then
 * the id percent-encoded as one path segment (url_put_escaped()). Caller frees; NULL on ENOMEM.
 */
char *project_page_url(const char *service_url, enum youtrack_flavour f, const struct project *p);

/*
 * The part of project_page_url() that every project at service_url shares, so that a list of
 * links is built on it once. Caller frees; NULL on ENOMEM.
 */
char *project_page_base(const char *service_url, enum youtrack_flavour f);

#endif
