/*
 * Project lists and the diff with its guards.
 *
 * Lists keep their strings in a chunked pool so a 100,000-project list costs a handful of
 * allocations, not half a million. The diff is a merge join over two id-sorted lists: O(n).
 *
 * Guards (README, "How it decides what changed"): a project is reported removed only after it was
 * missing from removal_confirmations consecutive complete polls, and a burst of confirmed
 * removals (over mass_removal_limit, or over half the tracked list: the signature of a
 * permission change on the service account) is held back until the projects reappear or the
 * operator accepts the removals.
 */
#include "project.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "strbuf.h"
#include "url.h"
#include "utf8.h"

#define POOL_CHUNK_MIN (64 * 1024)

struct pool_chunk {
    struct pool_chunk *next;
    size_t used, size;
    char data[];
};

void project_list_init(struct project_list *l)
{
    memset(l, 0, sizeof(*l));
}

void project_list_fini(struct project_list *l)
{
    struct pool_chunk *c = l->chunks;
    while (c) {
        struct pool_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

const char *project_list_strdup(struct project_list *l, const char *s, size_t len)
{
    struct pool_chunk *c = l->chunks;
    if (!c || c->size - c->used < len + 1) {
        size_t size = len + 1 > POOL_CHUNK_MIN ? len + 1 : POOL_CHUNK_MIN;
        c = malloc(sizeof(*c) + size);
        if (!c)
            return NULL;
        c->used = 0;
        c->size = size;
        /* A big string gets a chunk of its own behind the current one, which stays usable. */
        if (l->chunks && size > POOL_CHUNK_MIN) {
            c->next = l->chunks->next;
            l->chunks->next = c;
        } else {
            c->next = l->chunks;
            l->chunks = c;
        }
    }
    char *p = c->data + c->used;
    memcpy(p, s, len);
    p[len] = '\0';
    c->used += len + 1;
    return p;
}

static int list_grow(struct project_list *l)
{
    if (l->n < l->cap)
        return 0;
    size_t cap = l->cap ? l->cap * 2 : 64;
    struct project *v = realloc(l->v, cap * sizeof(*v));
    if (!v)
        return -ENOMEM;
    l->v = v;
    l->cap = cap;
    return 0;
}

static int list_reserve(struct project_list *l, size_t cap)
{
    if (cap <= l->cap)
        return 0;
    struct project *v = realloc(l->v, cap * sizeof(*v));
    if (!v)
        return -ENOMEM;
    l->v = v;
    l->cap = cap;
    return 0;
}

int project_list_push(struct project_list *l, const struct project *p)
{
    if (list_grow(l))
        return -ENOMEM;
    l->v[l->n] = *p;
    l->v[l->n].seq = (uint32_t)l->n;
    l->n++;
    return 0;
}

/* Copies *s into l's pool; NULL stays NULL. */
static int copy_str(struct project_list *l, const char **s)
{
    if (!*s)
        return 0;
    const char *copy = project_list_strdup(l, *s, strlen(*s));
    if (!copy)
        return -ENOMEM;
    *s = copy;
    return 0;
}

int project_list_add(struct project_list *l, const struct project *p)
{
    struct project q = *p;

    if (!q.id)
        return -EINVAL;
    if (copy_str(l, &q.id) || copy_str(l, &q.short_name) || copy_str(l, &q.name) ||
        copy_str(l, &q.description) || copy_str(l, &q.leader_login) || copy_str(l, &q.leader_name))
        return -ENOMEM;
    return project_list_push(l, &q);
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int project_id_cmp(const char *a, const char *b)
{
    const char *a0 = a, *b0 = b;

    while (*a && *b) {
        if (is_digit(*a) && is_digit(*b)) {
            /* Compare digit runs by value: skip leading zeros, then length, then digits. */
            while (*a == '0' && is_digit(a[1]))
                a++;
            while (*b == '0' && is_digit(b[1]))
                b++;
            size_t la = 0, lb = 0;
            while (is_digit(a[la]))
                la++;
            while (is_digit(b[lb]))
                lb++;
            if (la != lb)
                return la < lb ? -1 : 1;
            int c = memcmp(a, b, la);
            if (c)
                return c < 0 ? -1 : 1;
            a += la;
            b += lb;
            continue;
        }
        if (*a != *b)
            return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
        a++;
        b++;
    }
    if (*a || *b)
        return *a ? 1 : -1;
    int c = strcmp(a0, b0);
    return c < 0 ? -1 : c > 0;
}

static int is_sorted(const struct project_list *l)
{
    for (size_t i = 1; i < l->n; i++) {
        if (project_id_cmp(l->v[i - 1].id, l->v[i].id) >= 0)
            return 0;
    }
    return 1;
}

static int cmp_project(const void *pa, const void *pb)
{
    const struct project *a = pa, *b = pb;
    int c = project_id_cmp(a->id, b->id);
    if (c)
        return c;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

size_t project_list_finish(struct project_list *l)
{
    size_t w = 0, dropped = 0;

    if (l->n == 0)
        return 0;
    /* Snapshots and merged lists arrive sorted: skip the n log n sort. */
    if (!is_sorted(l))
        qsort(l->v, l->n, sizeof(*l->v), cmp_project);
    for (size_t r = 1; r < l->n; r++) {
        if (strcmp(l->v[w].id, l->v[r].id) == 0) {
            dropped++;
            continue;
        }
        l->v[++w] = l->v[r];
    }
    l->n = w + 1;
    for (size_t i = 0; i < l->n; i++)
        l->v[i].seq = (uint32_t)i;
    /* Finished lists live long (the snapshot): give back the doubling slack. */
    if (l->cap > l->n + l->n / 16) {
        struct project *v = realloc(l->v, l->n * sizeof(*v));
        if (v) {
            l->v = v;
            l->cap = l->n;
        }
    }
    return dropped;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char *project_ids_duplicate(const char **ids, size_t n)
{
    if (n < 2)
        return NULL;
    qsort(ids, n, sizeof(*ids), cmp_str_ptr);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(ids[i - 1], ids[i]) == 0)
            return ids[i];
    }
    return NULL;
}

const struct project *project_list_find(const struct project_list *l, const char *id)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = project_id_cmp(l->v[mid].id, id);
        if (c == 0)
            return &l->v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int project_read_string(struct jscan *js, struct project_list *l, size_t max, const char **out,
                        const char *what)
{
    const char *s;
    size_t n;
    char msg[64];

    if (jscan_peek(js) == JSCAN_NULL) {
        *out = NULL;
        return jscan_null(js);
    }
    if (jscan_peek(js) != JSCAN_STRING) {
        snprintf(msg, sizeof(msg), "\"%s\" is not a string", what);
        return jscan_fail(js, msg);
    }
    if (jscan_string(js, &s, &n))
        return -EPROTO;
    n = utf8_cut(s, strnlen(s, n), max);
    *out = project_list_strdup(l, s, n);
    return *out ? 0 : -ENOMEM;
}

struct read_ctx {
    struct project_list *l;
    struct project p;
    int with_state;
};

static int on_leader_member(struct jscan *js, const char *k, size_t kl, void *ctx)
{
    struct read_ctx *c = ctx;
    if (jscan_key_is(k, kl, "login"))
        return project_read_string(js, c->l, PROJECT_MAX_NAME_LEN, &c->p.leader_login,
                                   "leader.login");
    if (jscan_key_is(k, kl, "name"))
        return project_read_string(js, c->l, PROJECT_MAX_NAME_LEN, &c->p.leader_name,
                                   "leader.name");
    return jscan_skip(js);
}

static int read_state_member(struct jscan *js, const char *k, size_t kl, struct project *p)
{
    int64_t v;
    int b, r;

    if (jscan_key_is(k, kl, "first_seen"))
        return jscan_int(js, &p->first_seen);
    if (jscan_key_is(k, kl, "missing")) {
        r = jscan_int(js, &v);
        if (!r && (v < 0 || v > UINT16_MAX))
            return jscan_fail(js, "\"missing\" out of range");
        p->missing = (uint16_t)v;
        return r;
    }
    if (jscan_key_is(k, kl, "held")) {
        r = jscan_bool(js, &b);
        p->held = (unsigned char)b;
        return r;
    }
    return jscan_skip(js);
}

static int on_project_member(struct jscan *js, const char *k, size_t kl, void *ctx)
{
    struct read_ctx *c = ctx;
    struct project *p = &c->p;
    int b, r;

    if (jscan_key_is(k, kl, "id"))
        return project_read_string(js, c->l, PROJECT_MAX_ID_LEN + 1, &p->id, "id");
    if (jscan_key_is(k, kl, "shortName"))
        return project_read_string(js, c->l, PROJECT_MAX_NAME_LEN, &p->short_name, "shortName");
    if (jscan_key_is(k, kl, "name"))
        return project_read_string(js, c->l, PROJECT_MAX_NAME_LEN, &p->name, "name");
    if (jscan_key_is(k, kl, "description"))
        return project_read_string(js, c->l, PROJECT_MAX_DESCRIPTION_LEN, &p->description,
                                   "description");
    if (jscan_key_is(k, kl, "leader")) {
        if (jscan_peek(js) == JSCAN_NULL)
            return jscan_null(js);
        if (jscan_peek(js) != JSCAN_OBJECT)
            return jscan_fail(js, "\"leader\" is not an object");
        return jscan_object_each(js, on_leader_member, c);
    }
    if (jscan_key_is(k, kl, "archived")) {
        /* Absent or null: the caller's rights may hide it, so it is unknown, never false
         * (doc/youtrack.md §3). */
        if (jscan_peek(js) == JSCAN_NULL) {
            p->archived = TRI_UNKNOWN;
            return jscan_null(js);
        }
        if (jscan_peek(js) != JSCAN_BOOL)
            return jscan_fail(js, "\"archived\" is not a boolean");
        r = jscan_bool(js, &b);
        p->archived = b ? TRI_YES : TRI_NO;
        return r;
    }
    if (c->with_state)
        return read_state_member(js, k, kl, p);
    return jscan_skip(js);
}

int project_read_json(struct jscan *js, struct project_list *l, int with_state)
{
    struct read_ctx c = {.l = l, .p = {.archived = TRI_UNKNOWN}, .with_state = with_state};

    if (jscan_peek(js) != JSCAN_OBJECT)
        return jscan_fail(js, "a project is not an object");
    int r = jscan_object_each(js, on_project_member, &c);
    if (r)
        return r;
    if (!c.p.id || !c.p.id[0] || strlen(c.p.id) > PROJECT_MAX_ID_LEN)
        return jscan_fail(js, "a project without a valid \"id\"");
    /* The strings already live in l's pool: push, do not copy again. */
    return project_list_push(l, &c.p);
}

static int same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

int project_list_same(const struct project_list *a, const struct project_list *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const struct project *x = &a->v[i], *y = &b->v[i];
        if (!same_str(x->id, y->id) || !same_str(x->short_name, y->short_name) ||
            !same_str(x->name, y->name) || !same_str(x->description, y->description) ||
            !same_str(x->leader_login, y->leader_login) ||
            !same_str(x->leader_name, y->leader_name) || x->first_seen != y->first_seen ||
            x->missing != y->missing || x->archived != y->archived || x->held != y->held)
            return 0;
    }
    return 1;
}

const char *change_kind_name(enum change_kind k)
{
    static const char *const names[] = {"created", "renamed", "archived", "unarchived", "removed"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}

int change_kind_parse(const char *s, size_t n, int casefold, enum change_kind *kind)
{
    for (int k = CHANGE_CREATED; k <= CHANGE_REMOVED; k++) {
        const char *name = change_kind_name((enum change_kind)k);
        if (n == strlen(name) && (casefold ? strncasecmp(s, name, n) : memcmp(s, name, n)) == 0) {
            *kind = (enum change_kind)k;
            return 0;
        }
    }
    return -1;
}

static int str_changed(const char *before, const char *after)
{
    /* Unknown is not a change: a field the server stopped sending keeps its last value. */
    return before && after && strcmp(before, after) != 0;
}

/* A change whose "after" is named by id: diff.next still grows (and moves) while changes pile up.
 */
struct pending_change {
    enum change_kind kind;
    const struct project *before;
    const char *after_id; /* in diff.next's pool, which never moves; NULL for removals */
};

struct change_vec {
    struct pending_change *v;
    size_t n, cap;
};

static int push_change(struct change_vec *cv, enum change_kind kind, const struct project *before,
                       const char *after_id)
{
    if (cv->n == cv->cap) {
        size_t cap = cv->cap ? cv->cap * 2 : 16;
        struct pending_change *v = realloc(cv->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        cv->v = v;
        cv->cap = cap;
    }
    cv->v[cv->n++] = (struct pending_change){kind, before, after_id};
    return 0;
}

static int cmp_change(const void *pa, const void *pb)
{
    const struct change *a = pa, *b = pb;
    const char *ia = a->after ? a->after->id : a->before->id;
    const char *ib = b->after ? b->after->id : b->before->id;
    int c = project_id_cmp(ia, ib);
    if (c)
        return c;
    return a->kind < b->kind ? -1 : a->kind > b->kind;
}

const char *youtrack_flavour_name(enum youtrack_flavour f)
{
    switch (f) {
    case YOUTRACK_MODERN:
        return "api";
    case YOUTRACK_LEGACY:
        return "legacy";
    default:
        return "unknown";
    }
}

int youtrack_flavour_parse(const char *s, enum youtrack_flavour *out)
{
    if (strcmp(s, "api") == 0)
        *out = YOUTRACK_MODERN;
    else if (strcmp(s, "legacy") == 0)
        *out = YOUTRACK_LEGACY;
    else
        return -EINVAL;
    return 0;
}

/*
 * The fetched project (its strings already in next's pool), with the fields the server left out
 * copied from the saved one: an absent key is unknown, so the last known value stands.
 */
static int merge(struct project_list *next, const struct project *saved,
                 const struct project *fetched, struct project *m)
{
    *m = *fetched;
#define KEEP(f)                    \
    if (!m->f) {                   \
        m->f = saved->f;           \
        if (copy_str(next, &m->f)) \
            return -ENOMEM;        \
    }
    KEEP(short_name);
    KEEP(name);
    KEEP(description);
    KEEP(leader_login);
    KEEP(leader_name);
#undef KEEP
    if (m->archived == TRI_UNKNOWN)
        m->archived = saved->archived;
    m->first_seen = saved->first_seen;
    m->missing = 0;
    m->held = 0;
    return 0;
}

/* A diff under way. */
struct differ {
    struct diff d;
    struct change_vec cv;
    const struct project **cand; /* saved projects missing long enough to go: removed or held */
    size_t n_cand;
    const struct diff_opts *opts;
};

/* A fetched project the snapshot does not know: created. */
static int diff_new(struct differ *x, const struct project *fetched)
{
    struct project p = *fetched;

    p.first_seen = x->opts->now;
    p.missing = 0;
    p.held = 0;
    if (project_list_push(&x->d.next, &p))
        return -ENOMEM;
    return push_change(&x->cv, CHANGE_CREATED, NULL, x->d.next.v[x->d.next.n - 1].id);
}

/* A project in both lists: renamed, archived or unarchived, or the same. */
static int diff_both(struct differ *x, const struct project *s, const struct project *fetched)
{
    struct project m;
    const char *at;

    if (s->held || s->missing)
        x->d.n_reappeared++;
    if (merge(&x->d.next, s, fetched, &m) || project_list_push(&x->d.next, &m))
        return -ENOMEM;
    at = x->d.next.v[x->d.next.n - 1].id;
    if (str_changed(s->name, m.name) || str_changed(s->short_name, m.short_name)) {
        if (push_change(&x->cv, CHANGE_RENAMED, s, at))
            return -ENOMEM;
    }
    if (s->archived != TRI_UNKNOWN && m.archived != TRI_UNKNOWN && s->archived != m.archived) {
        enum change_kind k = m.archived == TRI_YES ? CHANGE_ARCHIVED : CHANGE_UNARCHIVED;
        if (push_change(&x->cv, k, s, at))
            return -ENOMEM;
    }
    return 0;
}

/*
 * A saved project the poll did not return: kept while held (unless removals are accepted),
 * a candidate for removal once missing from enough polls, else kept with its count raised.
 */
static int diff_missing(struct differ *x, const struct project *s)
{
    const struct diff_opts *opts = x->opts;
    unsigned missing = (unsigned)s->missing + 1u;
    struct project p;

    if (s->held && !opts->accept_removals)
        return project_list_add(&x->d.next, s) ? -ENOMEM : 0;
    if (missing >= (unsigned)opts->removal_confirmations || opts->accept_removals) {
        x->cand[x->n_cand++] = s;
        return 0;
    }
    p = *s;
    p.missing = (uint16_t)missing;
    return project_list_add(&x->d.next, &p) ? -ENOMEM : 0;
}

/*
 * The candidates are removed, or all held when there are too many at once (more than the
 * limit, or most of the tracked projects): the signature of a permission change, not of
 * deletions. Held projects must stay in the snapshot, so this runs before the list closes.
 */
static int diff_removals(struct differ *x, size_t tracked)
{
    const struct diff_opts *opts = x->opts;
    size_t n = x->n_cand;
    int hold = !opts->accept_removals && n > 0 &&
               (n > (size_t)opts->mass_removal_limit || n * 2 > tracked);

    for (size_t k = 0; k < n; k++) {
        if (hold) {
            struct project p = *x->cand[k];
            p.held = 1;
            p.missing = p.missing < UINT16_MAX ? (uint16_t)(p.missing + 1) : UINT16_MAX;
            if (project_list_add(&x->d.next, &p))
                return -ENOMEM;
        } else if (push_change(&x->cv, CHANGE_REMOVED, x->cand[k], NULL)) {
            return -ENOMEM;
        }
    }
    x->d.n_held_new = hold ? n : 0;
    return 0;
}

/* The changes found, pointing into the finished list, sorted. 0 or -ENOMEM. */
static int diff_changes(struct differ *x)
{
    struct diff *d = &x->d;

    if (x->cv.n) {
        d->changes = calloc(x->cv.n, sizeof(*d->changes));
        if (!d->changes)
            return -ENOMEM;
    }
    for (size_t k = 0; k < x->cv.n; k++) {
        struct change *ch = &d->changes[d->n_changes++];
        ch->kind = x->cv.v[k].kind;
        ch->before = x->cv.v[k].before;
        ch->after = x->cv.v[k].after_id ? project_list_find(&d->next, x->cv.v[k].after_id) : NULL;
    }
    /* By project id, then kind: several changes to one project stay together, in enum order. */
    if (d->n_changes > 1)
        qsort(d->changes, d->n_changes, sizeof(*d->changes), cmp_change);
    return 0;
}

const char *project_shown_name(const struct project *p)
{
    return p->name && *p->name ? p->name : p->short_name && *p->short_name ? p->short_name : p->id;
}

/* The steps: walk both sorted lists by id, decide the removals, close the list, the changes. */
int project_diff(const struct project_list *saved, struct project_list *fetched,
                 const struct diff_opts *opts, struct diff *out)
{
    struct differ x = {.opts = opts};
    size_t tracked = 0, i = 0, j = 0;
    int r = -ENOMEM;

    project_list_init(&x.d.next);
    /* Fetched strings move, not copy: the diff must not triple the memory of a big list. */
    x.d.next.chunks = fetched->chunks;
    fetched->chunks = NULL;
    x.cand = calloc(saved->n ? saved->n : 1, sizeof(*x.cand));
    /* next holds at most every fetched and every saved project: no doubling slack. */
    if (!x.cand || list_reserve(&x.d.next, fetched->n + saved->n))
        goto out;

    for (size_t k = 0; k < saved->n; k++)
        tracked += !saved->v[k].held;

    while (i < saved->n || j < fetched->n) {
        int c;
        if (i == saved->n)
            c = 1;
        else if (j == fetched->n)
            c = -1;
        else
            c = project_id_cmp(saved->v[i].id, fetched->v[j].id);

        if (c > 0)
            r = diff_new(&x, &fetched->v[j++]);
        else if (c == 0)
            r = diff_both(&x, &saved->v[i++], &fetched->v[j++]);
        else
            r = diff_missing(&x, &saved->v[i++]);
        if (r)
            goto out;
    }
    r = diff_removals(&x, tracked);
    if (r)
        goto out;
    project_list_finish(&x.d.next);
    for (size_t k = 0; k < x.d.next.n; k++) {
        if (x.d.next.v[k].held)
            x.d.n_held++;
        else if (x.d.next.v[k].missing)
            x.d.n_pending++;
    }
    r = diff_changes(&x);
out:
    free(x.cand);
    free(x.cv.v);
    if (r) {
        diff_fini(&x.d);
        return r;
    }
    *out = x.d;
    return 0;
}

void diff_fini(struct diff *d)
{
    free(d->changes);
    project_list_fini(&d->next);
    memset(d, 0, sizeof(*d));
}

char *project_page_base(const char *service_url, enum youtrack_flavour f)
{
    /* The legacy UI has no project page by id; its issue list filtered by project is stable. */
    return url_build(service_url ? service_url : "",
                     f == YOUTRACK_LEGACY ? "/issues/" : "/projects/");
}

char *project_page_url(const char *service_url, enum youtrack_flavour f, const struct project *p)
{
    struct strbuf b = {0};
    char *base = project_page_base(service_url, f);

    if (!base)
        return NULL;
    strbuf_puts(&b, base);
    url_put_escaped(&b, p->id);
    free(base);
    return strbuf_take(&b);
}
