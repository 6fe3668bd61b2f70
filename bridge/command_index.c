/*
 * The chat commands' index of a snapshot (see command_index.h).
 *
 * Layout: entries in listing order; one buffer with, per entry, the fold key of its name and
 * that of its short name, each NUL-terminated (a missing field is ""), in the same order, so a
 * filter is one forward scan of one buffer that yields matches already in listing order; the
 * fold keys of the ids in a second buffer; and a lookup table of (fold key, short name or id,
 * project) sorted by fold key then by the project's place in the list, for `project KEY`.
 *
 * Invariants: built in full and published at the end, never changed afterwards; every pointer
 * points into the index's own buffers or into the list it was built from. Its size is linear
 * in the list's: per listed project an entry (a pointer and an offset), at most two table rows
 * of three pointers, and the fold keys of three strings: as long as the strings for most text
 * (about 90 bytes per project in all for "Project 1234"-like names), at most 18 characters for
 * one under NFKC (U+FDFA), so hostile names could grow by that much.
 */
#include "command_index.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "utf8.h"

struct entry {
    const struct project *p;
    size_t key; /* in keys: the name's fold key, NUL, the short name's, NUL */
};

struct lookup {
    const char *fkey; /* the fold key of a short name or an id */
    const char *raw;  /* the short name or id itself */
    const struct project *p;
};

struct command_index {
    const struct project_list *list; /* built from: list, its array v and count n_list */
    const struct project *v;
    size_t n_list;
    size_t n; /* entries */
    struct entry *e;
    char *keys;
    size_t keys_len;
    char *ids;
    size_t ids_len;
    struct lookup *look;
    size_t n_look;
};

/* ---- building ---- */

/* A project while the index is built: its three fold keys (offsets in one scratch buffer). */
struct pending {
    const struct project *p;
    size_t name, short_name, id;
    const char *shown; /* the fold key of the shown name, once the scratch buffer stays put */
};

static int pending_order(const void *pa, const void *pb)
{
    const struct pending *a = pa, *b = pb;
    int c = strcmp(a->shown, b->shown);
    if (c)
        return c;
    /* Then the shown name as it is, then the id. */
    c = strcmp(project_shown_name(a->p), project_shown_name(b->p));
    return c ? c : project_id_cmp(a->p->id, b->p->id);
}

static int lookup_order(const void *pa, const void *pb)
{
    const struct lookup *a = pa, *b = pb;
    int c = strcmp(a->fkey, b->fkey);
    if (c)
        return c;
    return a->p < b->p ? -1 : a->p > b->p; /* the list's order: by id */
}

/* Appends the fold key of s (NULL: "") and its NUL; returns where it starts. */
static size_t put_key(struct strbuf *b, const char *s)
{
    size_t at = b->n;
    if (s)
        utf8_fold(b, s, strlen(s));
    strbuf_putn(b, "", 1);
    return at;
}

/* Folds every listed project of l into scratch; *out gets them (caller frees), *n their number. */
static int fold_all(const struct project_list *l, struct strbuf *scratch, struct pending **out,
                    size_t *n)
{
    size_t m = 0, total = l ? l->n : 0;
    struct pending *v = calloc(total ? total : 1, sizeof(*v));

    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < total; i++) {
        const struct project *p = &l->v[i];
        if (p->held) /* presumed gone: its removal is only held back */
            continue;
        v[m].p = p;
        v[m].name = put_key(scratch, p->name);
        v[m].short_name = put_key(scratch, p->short_name);
        v[m].id = put_key(scratch, p->id);
        m++;
    }
    if (scratch->oom) {
        free(v);
        return -ENOMEM;
    }
    for (size_t i = 0; i < m; i++) {
        const struct project *p = v[i].p;
        const char *shown = project_shown_name(p); /* the fold key of the same string */
        v[i].shown = scratch->p + (shown == p->name         ? v[i].name
                                   : shown == p->short_name ? v[i].short_name
                                                            : v[i].id);
    }
    *out = v;
    *n = m;
    return 0;
}

/* Lays the sorted pending projects out into ix's buffers and lookup table. */
static int lay_out(struct command_index *ix, const struct pending *v, size_t m, const char *s)
{
    size_t kl = 0, il = 0, k = 0, o = 0;

    for (size_t i = 0; i < m; i++) {
        kl += strlen(s + v[i].name) + 1 + strlen(s + v[i].short_name) + 1;
        il += strlen(s + v[i].id) + 1;
    }
    ix->e = calloc(m ? m : 1, sizeof(*ix->e));
    ix->keys = malloc(kl ? kl : 1);
    ix->ids = malloc(il ? il : 1);
    ix->look = calloc(2 * m + 1, sizeof(*ix->look));
    if (!ix->e || !ix->keys || !ix->ids || !ix->look)
        return -ENOMEM;
    for (size_t i = 0; i < m; i++) {
        const struct project *p = v[i].p;
        size_t nl = strlen(s + v[i].name) + 1, sl = strlen(s + v[i].short_name) + 1;
        size_t dl = strlen(s + v[i].id) + 1;
        ix->e[i] = (struct entry){.p = p, .key = k};
        memcpy(ix->keys + k, s + v[i].name, nl);
        memcpy(ix->keys + k + nl, s + v[i].short_name, sl);
        memcpy(ix->ids + o, s + v[i].id, dl);
        if (p->short_name)
            ix->look[ix->n_look++] = (struct lookup){ix->keys + k + nl, p->short_name, p};
        ix->look[ix->n_look++] = (struct lookup){ix->ids + o, p->id, p};
        k += nl + sl;
        o += dl;
    }
    ix->n = m;
    ix->keys_len = kl;
    ix->ids_len = il;
    qsort(ix->look, ix->n_look, sizeof(*ix->look), lookup_order);
    return 0;
}

int command_index_new(struct command_index **out, const struct project_list *l)
{
    struct command_index *ix = calloc(1, sizeof(*ix));
    struct strbuf scratch = {0};
    struct pending *v = NULL;
    size_t m = 0;
    int r = -ENOMEM;

    if (!ix)
        return -ENOMEM;
    ix->list = l;
    ix->v = l ? l->v : NULL;
    ix->n_list = l ? l->n : 0;
    r = fold_all(l, &scratch, &v, &m);
    if (r)
        goto fail;
    qsort(v, m, sizeof(*v), pending_order);
    r = lay_out(ix, v, m, scratch.p ? scratch.p : "");
    if (r)
        goto fail;
    free(v);
    strbuf_fini(&scratch);
    *out = ix;
    return 0;
fail:
    free(v);
    strbuf_fini(&scratch);
    command_index_free(ix);
    return r;
}

void command_index_free(struct command_index *ix)
{
    if (!ix)
        return;
    free(ix->e);
    free(ix->keys);
    free(ix->ids);
    free(ix->look);
    free(ix);
}

/* ---- answering ---- */

int command_index_of(const struct command_index *ix, const struct project_list *l)
{
    return ix->list == l && ix->v == (l ? l->v : NULL) && ix->n_list == (l ? l->n : 0);
}

size_t command_index_count(const struct command_index *ix)
{
    return ix->n;
}

const struct project *command_index_at(const struct command_index *ix, size_t i)
{
    return ix->e[i].p;
}

/* Where in keys entry i's text ends (the next entry's starts). */
static size_t entry_end(const struct command_index *ix, size_t i)
{
    return i + 1 < ix->n ? ix->e[i + 1].key : ix->keys_len;
}

/*
 * The search below is SWAR (portable C, a 64-bit word at a time, no vector extensions): for 8
 * positions at once, whether the needle's first and its last byte are there; only those
 * candidates are compared in full.
 */
#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static uint64_t load8(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* 0x80 in each byte of x that is 0, exactly (no false positives from borrows). */
static uint64_t zero_bytes(uint64_t x)
{
    return ~(((x & ~HIGHS) + ~HIGHS) | x | ~HIGHS);
}

/* The memory offset (0..7) of the first byte flagged in m (non-zero, from zero_bytes()). */
static unsigned first_flagged(uint64_t m)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (unsigned)__builtin_clzll(m) / 8;
#else
    return (unsigned)__builtin_ctzll(m) / 8;
#endif
}

/* Whether a[0..n) equals b[0..n): short needles without a call. */
static int same(const char *a, const char *b, size_t n)
{
    if (n > 16)
        return memcmp(a, b, n) == 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i])
            return 0;
    }
    return 1;
}

/* The first hit of nd (k bytes, no NUL) in [h, end), or NULL. */
static const char *search(const char *h, const char *end, const char *nd, size_t k)
{
    if (k == 1)
        return memchr(h, nd[0], (size_t)(end - h));
    uint64_t first = ONES * (unsigned char)nd[0], last = ONES * (unsigned char)nd[k - 1];
    for (; (size_t)(end - h) >= k - 1 + 8; h += 8) {
        uint64_t m = zero_bytes(load8(h) ^ first) & zero_bytes(load8(h + k - 1) ^ last);
        while (m) {
            unsigned j = first_flagged(m);
            if (same(h + j + 1, nd + 1, k - 2))
                return h + j;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            m &= ~(0x8000000000000000ull >> (8 * j));
#else
            m &= m - 1;
#endif
        }
    }
    for (; (size_t)(end - h) >= k; h++) {
        if (h[0] == nd[0] && same(h + 1, nd + 1, k - 1))
            return h;
    }
    return NULL;
}

/*
 * One pass over keys. A hit can only lie inside one key (the needle has no NUL), and after a hit
 * the rest of its entry is skipped, so each entry counts once and in listing order. Why not
 * memmem(): with 10,000 names and a filter that matches them all ("proj" in "Project N"), one
 * memmem() per hit took 0.41-0.64 ms in all (its set-up per call), memchr() on the needle's
 * rarest byte 0.28 ms, the word-at-a-time search above 0.13-0.18 ms (bench_command, a shared
 * 2-core machine); for a filter that matches 1% of them ("103") 0.11-0.12 ms against 0.07-0.15.
 */
int command_index_match(const struct command_index *ix, const char *filter,
                        const struct project **first, size_t max, size_t *total)
{
    struct strbuf fb = {0};
    size_t count = 0, i = 0;

    utf8_fold(&fb, filter, strlen(filter));
    if (fb.oom)
        return -ENOMEM;
    const char *nd = fb.p ? fb.p : "", *h = ix->keys, *end = ix->keys + ix->keys_len, *s;
    size_t k = fb.n;

    while (k && (s = search(h, end, nd, k)) != NULL) {
        size_t off = (size_t)(s - ix->keys);
        while (entry_end(ix, i) <= off)
            i++;
        if (count < max)
            first[count] = ix->e[i].p;
        count++;
        h = ix->keys + entry_end(ix, i);
    }
    /* An empty filter (not one the commands pass) matches what has a name or a short name. */
    for (size_t j = 0; !k && j < ix->n; j++) {
        if (ix->e[j].p->name || ix->e[j].p->short_name) {
            if (count < max)
                first[count] = ix->e[j].p;
            count++;
        }
    }
    strbuf_fini(&fb);
    *total = count;
    return 0;
}

int command_index_find(const struct command_index *ix, const char *key,
                       const struct project **found)
{
    struct strbuf fb = {0};
    size_t lo = 0, hi = ix->n_look;

    *found = NULL;
    utf8_fold(&fb, key, strlen(key));
    if (fb.oom)
        return -ENOMEM;
    const char *fk = fb.p ? fb.p : "";
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(ix->look[mid].fkey, fk) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* The rows with key's fold key, in the list's order: an exact match among them wins, else
     * the first. Equal text has equal fold keys, so every exact match is among them. */
    for (size_t i = lo; i < ix->n_look && strcmp(ix->look[i].fkey, fk) == 0; i++) {
        if (strcmp(ix->look[i].raw, key) == 0) {
            *found = ix->look[i].p;
            break;
        }
        if (!*found)
            *found = ix->look[i].p;
    }
    strbuf_fini(&fb);
    return 0;
}

size_t command_index_bytes(const struct command_index *ix)
{
    return sizeof(*ix) + ix->n * sizeof(*ix->e) + ix->keys_len + ix->ids_len +
           (2 * ix->n + 1) * sizeof(*ix->look);
}
