/*
 * The state's records as bytes (see state_format.h): the snapshot document and its change
 * history, journal lines, dead letters, sync positions, subscriptions. Pure: the backends do the
 * I/O.
 *
 * One reading decision for the whole file: every document is read with the pull reader
 * (jscan.h). The snapshot has to be: through a jansson DOM a 100,000-project snapshot loads
 * 3-10x slower and needs ten times the memory (the figures are in jscan.h). The journal and the
 * sync positions then use the same reader rather than a second one: they are small and read
 * once at start-up, so either would do, and one reader means one set of rules for what a
 * damaged record is (strings validated as UTF-8, integers exactly int64, nothing after the
 * value; a line jansson refused is refused here too, tests/unit/test_state.c). Writing is
 * jansson's throughout.
 */
#include "state_format.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "hmac.h"
#include "jscan.h"
#include "utf8.h"

/* ---- the change history ---- */

static void history_entry_fini(struct history_entry *e)
{
    free(e->id);
    free(e->short_name);
    free(e->name);
    free(e->old_short_name);
    free(e->old_name);
    memset(e, 0, sizeof(*e));
}

static void history_free(struct history_entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        history_entry_fini(&v[i]);
    free(v);
}

/*
 * Copies s (len bytes, or up to its NUL) into *out, cut at an embedded NUL and to max bytes on a
 * UTF-8 boundary, as project_read_string() bounds a project's strings. NULL stays NULL. 0 or
 * -ENOMEM.
 */
static int dup_bounded(char **out, const char *s, size_t len, size_t max)
{
    *out = NULL;
    if (!s)
        return 0;
    len = utf8_cut(s, strnlen(s, len), max);
    *out = strndup(s, len);
    return *out ? 0 : -ENOMEM;
}

static int dup_name(char **out, const char *s)
{
    return dup_bounded(out, s, SIZE_MAX, PROJECT_MAX_NAME_LEN);
}

void snapshot_fini(struct snapshot *s)
{
    project_list_fini(&s->projects);
    free(s->youtrack);
    history_free(s->history, s->n_history);
    memset(s, 0, sizeof(*s));
}

int snapshot_history_add(struct snapshot *s, const struct change *changes, size_t n, int64_t now)
{
    /* Of a poll with more changes than the bound, only the newest can be kept. */
    size_t first = n > STATE_HISTORY_MAX ? n - STATE_HISTORY_MAX : 0, n_add = 0;
    struct history_entry *add = NULL, *v = NULL;

    if (n == 0)
        return 0;
    add = calloc(n - first, sizeof(*add));
    if (!add)
        return -ENOMEM;
    for (size_t i = first; i < n; i++) {
        const struct change *c = &changes[i];
        /* The project as it is now, or as it was for a removal (which has no "after"). */
        const struct project *p = c->after ? c->after : c->before;
        if (!p || !p->id)
            continue; /* not a change project_diff() makes */
        struct history_entry *e = &add[n_add++];
        e->at = now;
        e->kind = c->kind;
        if (dup_bounded(&e->id, p->id, SIZE_MAX, PROJECT_MAX_ID_LEN) ||
            dup_name(&e->short_name, p->short_name) || dup_name(&e->name, p->name))
            goto fail;
        if (c->kind == CHANGE_RENAMED && c->before &&
            (dup_name(&e->old_short_name, c->before->short_name) ||
             dup_name(&e->old_name, c->before->name)))
            goto fail;
    }
    if (n_add == 0) {
        free(add);
        return 0;
    }
    size_t keep =
        s->n_history < STATE_HISTORY_MAX - n_add ? s->n_history : STATE_HISTORY_MAX - n_add;
    v = malloc((keep + n_add) * sizeof(*v));
    if (!v)
        goto fail;
    /* Nothing can fail from here on: s changes only now. */
    size_t drop = s->n_history - keep;
    for (size_t i = 0; i < drop; i++)
        history_entry_fini(&s->history[i]);
    if (keep)
        memcpy(v, s->history + drop, keep * sizeof(*v));
    memcpy(v + keep, add, n_add * sizeof(*v));
    free(s->history);
    free(add);
    s->history = v;
    s->n_history = keep + n_add;
    return 0;
fail:
    history_free(add, n_add);
    return -ENOMEM;
}

int snapshot_history_copy(struct snapshot *dst, const struct snapshot *src)
{
    struct history_entry *v = NULL;
    size_t n = src->n_history;

    if (n) {
        v = calloc(n, sizeof(*v));
        if (!v)
            return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const struct history_entry *e = &src->history[i];
        v[i].at = e->at;
        v[i].kind = e->kind;
        /* Already bounded: these copy as they are. */
        if (dup_name(&v[i].id, e->id) || dup_name(&v[i].short_name, e->short_name) ||
            dup_name(&v[i].name, e->name) || dup_name(&v[i].old_short_name, e->old_short_name) ||
            dup_name(&v[i].old_name, e->old_name)) {
            history_free(v, i + 1);
            return -ENOMEM;
        }
    }
    history_free(dst->history, dst->n_history);
    dst->history = v;
    dst->n_history = n;
    return 0;
}

/* ---- reading the snapshot ---- */

/* One "history" element being read; bad: a member of the wrong type (the element is dropped). */
struct entry_ctx {
    struct history_entry e;
    int bad, have_at, have_kind;
};

static int read_entry_string(struct jscan *js, char **out, size_t max, int *bad)
{
    const char *str;
    size_t n;
    int r;

    if (jscan_peek(js) == JSCAN_NULL) {
        free(*out);
        *out = NULL;
        return jscan_null(js);
    }
    if (jscan_peek(js) != JSCAN_STRING) {
        *bad = 1;
        return jscan_skip(js);
    }
    r = jscan_string(js, &str, &n);
    if (r)
        return r;
    free(*out);
    return dup_bounded(out, str, n, max);
}

static int on_entry_member(struct jscan *js, const char *k, size_t kl, void *ctx)
{
    struct entry_ctx *c = ctx;
    struct history_entry *e = &c->e;
    const char *str;
    size_t n;
    int r;

    if (jscan_key_is(k, kl, "at")) {
        if (jscan_peek(js) != JSCAN_NUMBER) {
            c->bad = 1;
            return jscan_skip(js);
        }
        r = jscan_int(js, &e->at);
        c->have_at = !r;
        return r;
    }
    if (jscan_key_is(k, kl, "kind")) {
        if (jscan_peek(js) != JSCAN_STRING) {
            c->bad = 1;
            return jscan_skip(js);
        }
        r = jscan_string(js, &str, &n);
        if (r)
            return r;
        c->have_kind = change_kind_parse(str, n, 0, &e->kind) == 0;
        return 0;
    }
    /* One byte over the bound, so that a longer id is refused below, as a project's is. */
    if (jscan_key_is(k, kl, "id"))
        return read_entry_string(js, &e->id, PROJECT_MAX_ID_LEN + 1, &c->bad);
    if (jscan_key_is(k, kl, "shortName"))
        return read_entry_string(js, &e->short_name, PROJECT_MAX_NAME_LEN, &c->bad);
    if (jscan_key_is(k, kl, "name"))
        return read_entry_string(js, &e->name, PROJECT_MAX_NAME_LEN, &c->bad);
    if (jscan_key_is(k, kl, "oldShortName"))
        return read_entry_string(js, &e->old_short_name, PROJECT_MAX_NAME_LEN, &c->bad);
    if (jscan_key_is(k, kl, "oldName"))
        return read_entry_string(js, &e->old_name, PROJECT_MAX_NAME_LEN, &c->bad);
    return jscan_skip(js);
}

/*
 * Reads the "history" array into s, replacing what an earlier "history" member gave. Only the
 * newest STATE_HISTORY_MAX entries are kept: the array grows to twice that and then drops its
 * oldest half, so a long history costs neither memory nor quadratic time.
 */
static int read_history(struct jscan *js, struct snapshot *s)
{
    size_t cap = 0;
    int r;

    history_free(s->history, s->n_history);
    s->history = NULL;
    s->n_history = 0;
    r = jscan_array_begin(js);
    while (!r) {
        r = jscan_array_next(js);
        if (r <= 0)
            break;
        if (jscan_peek(js) != JSCAN_OBJECT) {
            r = jscan_skip(js);
            continue;
        }
        struct entry_ctx c = {0};
        r = jscan_object_each(js, on_entry_member, &c);
        if (r || c.bad || !c.have_at || !c.have_kind || !c.e.id || !c.e.id[0] ||
            strlen(c.e.id) > PROJECT_MAX_ID_LEN) {
            history_entry_fini(&c.e);
            continue;
        }
        if (c.e.kind != CHANGE_RENAMED) {
            free(c.e.old_short_name);
            free(c.e.old_name);
            c.e.old_short_name = c.e.old_name = NULL;
        }
        if (s->n_history == 2 * STATE_HISTORY_MAX) {
            for (size_t i = 0; i < STATE_HISTORY_MAX; i++)
                history_entry_fini(&s->history[i]);
            memmove(s->history, s->history + STATE_HISTORY_MAX,
                    STATE_HISTORY_MAX * sizeof(*s->history));
            s->n_history = STATE_HISTORY_MAX;
        }
        if (s->n_history == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            struct history_entry *v = realloc(s->history, ncap * sizeof(*v));
            if (!v) {
                history_entry_fini(&c.e);
                return -ENOMEM;
            }
            s->history = v;
            cap = ncap;
        }
        s->history[s->n_history++] = c.e;
    }
    if (!r && s->n_history > STATE_HISTORY_MAX) {
        size_t drop = s->n_history - STATE_HISTORY_MAX;
        for (size_t i = 0; i < drop; i++)
            history_entry_fini(&s->history[i]);
        memmove(s->history, s->history + drop, STATE_HISTORY_MAX * sizeof(*s->history));
        s->n_history = STATE_HISTORY_MAX;
    }
    return r;
}

int state_parse_snapshot(const char *buf, size_t len, struct snapshot *out, char *err,
                         size_t errlen)
{
    struct snapshot s = {0};
    struct jscan js;
    const char *k, *str;
    size_t kl, n;
    int64_t v;
    int have_format = 0, r;

    jscan_init(&js, buf, len);
    r = jscan_object_begin(&js);
    while (!r) {
        r = jscan_object_next(&js, &k, &kl);
        if (r <= 0)
            break;
        if (jscan_key_is(k, kl, "format")) {
            r = jscan_int(&js, &v);
            have_format = 1;
            if (!r && v > STATE_FORMAT) {
                snprintf(err, errlen, "snapshot format %lld is newer than this version's (%d)",
                         (long long)v, STATE_FORMAT);
                r = -EPROTONOSUPPORT;
                goto out;
            }
            if (!r && v != STATE_FORMAT)
                r = jscan_fail(&js, "unknown snapshot format");
        } else if (jscan_key_is(k, kl, "projects")) {
            r = jscan_array_begin(&js);
            while (!r) {
                r = jscan_array_next(&js);
                if (r <= 0)
                    break;
                r = project_read_json(&js, &s.projects, 1);
            }
        } else if (jscan_key_is(k, kl, "history") && jscan_peek(&js) == JSCAN_ARRAY) {
            r = read_history(&js, &s);
        } else if (jscan_key_is(k, kl, "youtrack") && jscan_peek(&js) == JSCAN_STRING) {
            r = jscan_string(&js, &str, &n);
            free(s.youtrack);
            s.youtrack = r ? NULL : strndup(str, n);
            if (!r && !s.youtrack)
                r = -ENOMEM;
        } else if (jscan_key_is(k, kl, "flavour") && jscan_peek(&js) == JSCAN_STRING) {
            char name[16];
            r = jscan_string(&js, &str, &n);
            if (!r) {
                snprintf(name, sizeof(name), "%.*s", (int)(n < 15 ? n : 15), str);
                if (youtrack_flavour_parse(name, &s.flavour) != 0)
                    s.flavour = YOUTRACK_UNKNOWN;
            }
        } else if (jscan_key_is(k, kl, "epoch") && jscan_peek(&js) == JSCAN_STRING) {
            r = jscan_string(&js, &str, &n);
            if (!r)
                snprintf(s.epoch, sizeof(s.epoch), "%.*s", (int)(n < 16 ? n : 16), str);
        } else if (jscan_key_is(k, kl, "generation") && jscan_peek(&js) == JSCAN_NUMBER) {
            int64_t g;
            r = jscan_int(&js, &g);
            s.generation = g > 0 ? (uint64_t)g : 0;
        } else if (jscan_key_is(k, kl, "saved_at") && jscan_peek(&js) == JSCAN_NUMBER) {
            r = jscan_int(&js, &s.saved_at);
        } else {
            r = jscan_skip(&js);
        }
    }
    if (!r)
        r = jscan_end(&js);
    if (r) {
        snprintf(err, errlen, "%s", r == -ENOMEM ? "out of memory" : js.err);
        goto out;
    }
    if (!have_format) {
        snprintf(err, errlen, "no \"format\" member");
        r = -EPROTO;
        goto out;
    }
    size_t dups = project_list_finish(&s.projects);
    if (dups) {
        snprintf(err, errlen, "%zu duplicate project ids", dups);
        r = -EPROTO;
    }
out:
    jscan_fini(&js);
    if (r) {
        snapshot_fini(&s);
        return r;
    }
    *out = s;
    return 0;
}

/* ---- writing the snapshot ---- */

static int put_str(json_t *o, const char *key, const char *v)
{
    return json_object_set_new(o, key, v ? json_string(v) : json_null());
}

/* A put target as jansson's dump callback sees it; err keeps what put said. */
struct out {
    state_put_fn put;
    void *ctx;
    int err;
};

static int out_put(struct out *o, const char *p, size_t n)
{
    if (!o->err)
        o->err = o->put(o->ctx, p, n);
    return o->err;
}

static int out_dump_cb(const char *buffer, size_t size, void *data)
{
    return out_put(data, buffer, size) ? -1 : 0;
}

/*
 * jansson reports a failed callback as a bare -1: the put's errno is kept in o->err (ENOSPC,
 * EIO, EFBIG), and without it only an allocation inside jansson can have failed.
 */
static int dump(json_t *j, struct out *o)
{
    if (json_dump_callback(j, out_dump_cb, o, JSON_COMPACT | JSON_PRESERVE_ORDER) == 0)
        return 0;
    return o->err ? o->err : -ENOMEM;
}

static int write_project(struct out *w, const struct project *p)
{
    json_t *o = json_object();
    int r = -ENOMEM;
    if (!o)
        return r;
    if (put_str(o, "id", p->id) || put_str(o, "shortName", p->short_name) ||
        put_str(o, "name", p->name) || put_str(o, "description", p->description) ||
        json_object_set_new(o, "archived",
                            p->archived == TRI_UNKNOWN ? json_null() : json_boolean(p->archived)))
        goto out;
    if (p->leader_login || p->leader_name) {
        json_t *l = json_object();
        if (!l || json_object_set_new(o, "leader", l) || put_str(l, "login", p->leader_login) ||
            put_str(l, "name", p->leader_name))
            goto out;
    }
    if (json_object_set_new(o, "first_seen", json_integer(p->first_seen)))
        goto out;
    if (p->missing && json_object_set_new(o, "missing", json_integer(p->missing)))
        goto out;
    if (p->held && json_object_set_new(o, "held", json_true()))
        goto out;
    r = dump(o, w);
out:
    json_decref(o);
    return r;
}

static int write_history_entry(struct out *w, const struct history_entry *e)
{
    json_t *o = json_pack("{s:I, s:s}", "at", (json_int_t)e->at, "kind", change_kind_name(e->kind));
    int r = -ENOMEM;
    if (!o)
        return r;
    if (put_str(o, "id", e->id) || put_str(o, "shortName", e->short_name) ||
        put_str(o, "name", e->name))
        goto out;
    if (e->kind == CHANGE_RENAMED &&
        (put_str(o, "oldShortName", e->old_short_name) || put_str(o, "oldName", e->old_name)))
        goto out;
    r = dump(o, w);
out:
    json_decref(o);
    return r;
}

int state_format_snapshot(const struct snapshot *s, int64_t now, state_put_fn put, void *ctx)
{
    struct out w = {.put = put, .ctx = ctx};
    json_t *head = json_pack("{s:i, s:I, s:s?, s:s, s:s, s:I}", "format", STATE_FORMAT, "saved_at",
                             (json_int_t)now, "youtrack", s->youtrack, "flavour",
                             youtrack_flavour_name(s->flavour), "epoch", s->epoch, "generation",
                             (json_int_t)s->generation);
    char *head_text = head ? json_dumps(head, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    int r = -ENOMEM;

    json_decref(head);
    if (!head_text)
        return r;
    /* The header's closing brace is replaced by the projects array, one project per line. */
    out_put(&w, head_text, strlen(head_text) - 1);
    free(head_text);
    out_put(&w, ",\"projects\":[", 13);
    for (size_t i = 0; i < s->projects.n; i++) {
        out_put(&w, i ? ",\n" : "\n", i ? 2 : 1);
        r = write_project(&w, &s->projects.v[i]);
        if (r)
            return r;
    }
    /* Then the change history, oldest first, one entry per line. */
    out_put(&w, "\n],\"history\":[", 14);
    for (size_t i = 0; i < s->n_history; i++) {
        out_put(&w, i ? ",\n" : "\n", i ? 2 : 1);
        r = write_history_entry(&w, &s->history[i]);
        if (r)
            return r;
    }
    return out_put(&w, "\n]}\n", 4);
}

/* ---- journal lines, dead letters ---- */

static void record_fini(struct journal_record *r)
{
    free(r->id);
    free(r->sink);
    free(r->event);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

void state_journal_records_free(struct journal_record *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        record_fini(&v[i]);
    free(v);
}

/* o's text and a newline (caller frees), or NULL on ENOMEM; o is released. */
static char *line_of(json_t *o, size_t flags)
{
    char *text = o ? json_dumps(o, flags) : NULL;
    char *line = NULL;

    json_decref(o);
    if (text && asprintf(&line, "%s\n", text) < 0)
        line = NULL;
    free(text);
    return line;
}

char *state_format_journal_add(const struct journal_record *r)
{
    return line_of(json_pack("{s:s, s:I, s:s, s:s, s:s, s:I, s:s}", "op", "add", "gen",
                             (json_int_t)r->gen, "id", r->id, "sink", r->sink, "event", r->event,
                             "created", (json_int_t)r->created, "body", r->body),
                   JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
}

char *state_format_journal_done(const char *id, const char *result)
{
    return line_of(json_pack("{s:s, s:s, s:s}", "op", "done", "id", id, "result", result),
                   JSON_COMPACT | JSON_PRESERVE_ORDER);
}

char *state_format_deadletter(const struct journal_record *r, const char *reason, int64_t at)
{
    return line_of(json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:s}", "at", (json_int_t)at, "reason",
                             reason, "id", r->id, "sink", r->sink, "event", r->event, "created",
                             (json_int_t)r->created, "body", r->body),
                   JSON_COMPACT | JSON_PRESERVE_ORDER);
}

/* ---- reading journal lines ---- */

/*
 * A string member into *out (replacing what an earlier member of that name gave, as the last of
 * duplicate keys wins): NULL when it is not a string or holds a NUL byte, so a record that needs
 * it is damaged. 0, or -EPROTO/-ENOMEM from the reader.
 */
static int read_text(struct jscan *js, char **out)
{
    const char *str;
    size_t n;
    int r;

    free(*out);
    *out = NULL;
    if (jscan_peek(js) != JSCAN_STRING)
        return jscan_skip(js);
    r = jscan_string(js, &str, &n);
    if (r || memchr(str, '\0', n))
        return r;
    *out = strndup(str, n);
    return *out ? 0 : -ENOMEM;
}

/* An integer member: *have says whether it is one (a number that is not ends the line). */
static int read_integer(struct jscan *js, int64_t *v, int *have)
{
    *have = jscan_peek(js) == JSCAN_NUMBER;
    return *have ? jscan_int(js, v) : jscan_skip(js);
}

/*
 * Reads buf (len bytes) as one JSON object and nothing after it, fn taking each member (as
 * jscan_object_each()). 0, or fn's or the reader's error with err saying why (when errlen).
 */
static int read_document(const char *buf, size_t len, jscan_member_fn fn, void *ctx, char *err,
                         size_t errlen)
{
    struct jscan js;
    int r;

    jscan_init(&js, buf, len);
    r = jscan_object_each(&js, fn, ctx);
    if (!r)
        r = jscan_end(&js);
    if (r && errlen)
        snprintf(err, errlen, "%s", r == -ENOMEM ? "out of memory" : js.err);
    jscan_fini(&js);
    return r;
}

/* One journal line being read. */
struct jline {
    char *op;
    struct journal_record rec; /* "id" is the done line's id too */
    int64_t gen, created;
    int have_gen, have_created;
};

static int on_line_member(struct jscan *js, const char *k, size_t kl, void *ctx)
{
    struct jline *l = ctx;

    if (jscan_key_is(k, kl, "op"))
        return read_text(js, &l->op);
    if (jscan_key_is(k, kl, "id"))
        return read_text(js, &l->rec.id);
    if (jscan_key_is(k, kl, "sink"))
        return read_text(js, &l->rec.sink);
    if (jscan_key_is(k, kl, "event"))
        return read_text(js, &l->rec.event);
    if (jscan_key_is(k, kl, "body"))
        return read_text(js, &l->rec.body);
    if (jscan_key_is(k, kl, "gen"))
        return read_integer(js, &l->gen, &l->have_gen);
    if (jscan_key_is(k, kl, "created"))
        return read_integer(js, &l->created, &l->have_created);
    return jscan_skip(js);
}

static void jline_fini(struct jline *l)
{
    free(l->op);
    record_fini(&l->rec);
}

enum line_kind { LINE_BAD, LINE_ADD, LINE_DONE };

/*
 * Reads one line: an "add" (every member there, gen and created integers) or a "done" (an id).
 * Returns the kind (>= 0, *l filled; the caller finis it) or -ENOMEM.
 */
static int parse_line(const char *line, size_t len, struct jline *l)
{
    int r, kind = LINE_BAD;

    memset(l, 0, sizeof(*l));
    r = read_document(line, len, on_line_member, l, NULL, 0);
    if (r == -ENOMEM)
        return r;
    if (r || !l->op || !l->rec.id)
        return LINE_BAD;
    if (strcmp(l->op, "done") == 0)
        kind = LINE_DONE;
    else if (strcmp(l->op, "add") == 0 && l->rec.sink && l->rec.event && l->rec.body &&
             l->have_gen && l->have_created)
        kind = LINE_ADD;
    l->rec.gen = (uint64_t)l->gen;
    l->rec.created = l->created;
    return kind;
}

int state_parse_journal(const char *buf, size_t len, uint64_t committed_gen,
                        struct state_journal_replay *out)
{
    struct state_journal_replay j = {0};
    size_t cap = 0;
    int r = 0;

    j.torn = len && buf[len - 1] != '\n';
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (buf + pos)) : len - pos;
        struct jline jl;
        int kind = parse_line(buf + pos, l, &jl);
        pos += l + (nl ? 1 : 0);
        if (kind == -ENOMEM) {
            r = kind;
            break;
        }
        if (kind == LINE_BAD) {
            /* A torn last line is a crash mid-append: that add or done never completed. */
            if (nl)
                j.bad++;
        } else if (kind == LINE_ADD && jl.rec.gen > committed_gen) {
            j.uncommitted++;
        } else if (kind == LINE_ADD) {
            if (j.n == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                struct journal_record *nv = realloc(j.v, ncap * sizeof(*nv));
                if (!nv) {
                    jline_fini(&jl);
                    r = -ENOMEM;
                    break;
                }
                j.v = nv;
                cap = ncap;
            }
            j.v[j.n++] = jl.rec; /* the strings move to the list */
            memset(&jl.rec, 0, sizeof(jl.rec));
        } else {
            /* done: drop the matching add (linear: journals are compacted and short). */
            j.done++;
            for (size_t i = j.n; i-- > 0;) {
                if (j.v[i].id && strcmp(j.v[i].id, jl.rec.id) == 0) {
                    record_fini(&j.v[i]); /* its NULL id marks the gap */
                    break;
                }
            }
        }
        jline_fini(&jl);
    }
    /* Close the gaps the done lines left. */
    size_t w = 0;
    for (size_t i = 0; i < j.n; i++) {
        if (j.v[i].id)
            j.v[w++] = j.v[i];
    }
    j.n = w;
    if (r) {
        state_journal_records_free(j.v, j.n);
        memset(out, 0, sizeof(*out));
        return r;
    }
    *out = j;
    return 0;
}

/* ---- sync positions ---- */

char *state_format_sync_position(const struct state_sync_position *p)
{
    return line_of(json_pack("{s:s, s:s, s:s}", "homeserver", p->server, "user_id", p->user,
                             "next_batch", p->position),
                   JSON_COMPACT);
}

void state_sync_position_fini(struct state_sync_position *p)
{
    free(p->server);
    free(p->user);
    free(p->position);
    memset(p, 0, sizeof(*p));
}

static int on_position_member(struct jscan *js, const char *k, size_t kl, void *ctx)
{
    struct state_sync_position *p = ctx;

    if (jscan_key_is(k, kl, "homeserver"))
        return read_text(js, &p->server);
    if (jscan_key_is(k, kl, "user_id"))
        return read_text(js, &p->user);
    if (jscan_key_is(k, kl, "next_batch"))
        return read_text(js, &p->position);
    return jscan_skip(js);
}

int state_parse_sync_position(const char *buf, size_t len, struct state_sync_position *out,
                              char *err, size_t errlen)
{
    struct state_sync_position p = {0};
    int r = read_document(buf, len, on_position_member, &p, err, errlen);

    if (!r && (!p.server || !p.user || !p.position)) {
        snprintf(err, errlen, "\"%s\" is missing or not a string",
                 !p.server ? "homeserver"
                 : !p.user ? "user_id"
                           : "next_batch");
        r = -EPROTO;
    }
    if (r) {
        state_sync_position_fini(&p);
        return r;
    }
    *out = p;
    return 0;
}

/* ---- subscriptions ---- */

int state_subscription_key(enum sub_platform p, const char *channel,
                           char out[STATE_SUBSCRIPTION_KEY])
{
    char *name = NULL;
    int r;

    out[0] = '\0';
    if (asprintf(&name, "%s:%s", sub_platform_name(p), channel) < 0)
        return -ENOMEM;
    r = hmac_sha256_digest_hex(name, strlen(name), out);
    free(name);
    return r;
}

/* Whether text is NULL or at most max bytes of valid UTF-8. */
static int text_ok(const char *text, size_t max)
{
    size_t n = text ? strlen(text) : 0;

    return !text || (n <= max && utf8_valid(text, n));
}

int state_subscription_check(const struct subscription *s, char *why, size_t whylen)
{
    if (s->platform != SUB_SLACK && s->platform != SUB_MATRIX) {
        snprintf(why, whylen, "an unknown platform");
    } else if (!sub_channel_ok(s->platform, s->channel)) {
        snprintf(why, whylen, "a channel that is not a %s",
                 s->platform == SUB_SLACK ? "Slack channel id" : "Matrix room id");
    } else if (s->n_patterns == 0 || s->n_patterns > SUB_MAX_PATTERNS) {
        snprintf(why, whylen, "%zu patterns (1 to %d are allowed)", s->n_patterns,
                 SUB_MAX_PATTERNS);
    } else if (s->events == 0 || (s->events & ~CONF_EVENTS_ALL)) {
        snprintf(why, whylen, "%s", s->events == 0 ? "no event kind" : "an unknown event kind");
    } else if (!s->by || !text_ok(s->by, SUB_USER_MAX)) {
        snprintf(why, whylen, "a \"by\" missing, over %d bytes or not UTF-8", SUB_USER_MAX);
    } else if (!text_ok(s->suspended, SUB_REASON_MAX)) {
        snprintf(why, whylen, "a suspension reason over %d bytes or not UTF-8", SUB_REASON_MAX);
    } else {
        for (size_t i = 0; i < s->n_patterns; i++) {
            if (!sub_pattern_ok(s->patterns[i])) {
                snprintf(why, whylen, "pattern %zu is not a usable pattern", i + 1);
                return -EINVAL;
            }
            /* Quadratic, but over at most SUB_MAX_PATTERNS short strings; strcasecmp() folds
             * ASCII only, as the daemon never sets a locale (main.c). */
            for (size_t j = 0; j < i; j++) {
                if (strcasecmp(s->patterns[i], s->patterns[j]) == 0) {
                    snprintf(why, whylen, "patterns %zu and %zu are the same", j + 1, i + 1);
                    return -EINVAL;
                }
            }
        }
        return 0;
    }
    return -EINVAL;
}

char *state_format_subscription(const struct subscription *s)
{
    char why[128];
    json_t *o, *patterns, *events;

    if (state_subscription_check(s, why, sizeof(why)) != 0)
        return NULL;
    patterns = json_array();
    events = json_array();
    for (size_t i = 0; patterns && i < s->n_patterns; i++) {
        if (json_array_append_new(patterns, json_string(s->patterns[i])) != 0) {
            json_decref(patterns);
            patterns = NULL;
        }
    }
    for (int k = CHANGE_CREATED; events && k <= CHANGE_REMOVED; k++) {
        if ((s->events & (1u << k)) &&
            json_array_append_new(events, json_string(change_kind_name((enum change_kind)k))) !=
                0) {
            json_decref(events);
            events = NULL;
        }
    }
    /* "o" steals the arrays, also when the pack fails (jansson's json_pack, "o"). */
    o = json_pack("{s:i, s:s, s:s, s:o, s:o, s:s, s:I, s:I}", "format", STATE_FORMAT, "platform",
                  sub_platform_name(s->platform), "channel", s->channel, "patterns", patterns,
                  "events", events, "by", s->by, "created", (json_int_t)s->created, "changed",
                  (json_int_t)s->changed);
    if (o && s->suspended && json_object_set_new(o, "suspended", json_string(s->suspended))) {
        json_decref(o);
        o = NULL;
    }
    return line_of(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

/* A subscription record being read; the members are checked once it is whole. */
struct sub_doc {
    struct subscription s;
    size_t cap; /* of s.patterns */
    int64_t format;
    int have_format, have_platform, have_patterns, have_created, have_changed;
};

/*
 * A string member into *out, replacing an earlier one (the last of duplicate keys wins, as in
 * read_text()); unlike read_text(), a member of another type or with a NUL byte fails the
 * record: each of these members is required. null is NULL where null_ok.
 */
static int read_required_text(struct jscan *js, char **out, int null_ok, const char *what)
{
    const char *str;
    size_t n;
    int r;

    free(*out);
    *out = NULL;
    if (null_ok && jscan_peek(js) == JSCAN_NULL)
        return jscan_null(js);
    if (jscan_peek(js) != JSCAN_STRING)
        return jscan_fail(js, what);
    r = jscan_string(js, &str, &n);
    if (r)
        return r;
    if (memchr(str, '\0', n))
        return jscan_fail(js, what);
    *out = strndup(str, n);
    return *out ? 0 : -ENOMEM;
}

static int read_patterns(struct jscan *js, struct sub_doc *d)
{
    struct subscription *s = &d->s;
    int r;

    for (size_t i = 0; i < s->n_patterns; i++)
        free(s->patterns[i]);
    s->n_patterns = 0;
    d->have_patterns = 1;
    r = jscan_array_begin(js);
    while (!r) {
        r = jscan_array_next(js);
        if (r <= 0)
            break;
        /* One past the bound is enough to know it is too many: a long array costs nothing. */
        if (s->n_patterns > SUB_MAX_PATTERNS)
            return jscan_fail(js, "too many patterns");
        if (s->n_patterns == d->cap) {
            size_t ncap = d->cap ? d->cap * 2 : 4;
            char **nv = realloc(s->patterns, ncap * sizeof(*nv));
            if (!nv)
                return -ENOMEM;
            s->patterns = nv;
            d->cap = ncap;
        }
        s->patterns[s->n_patterns] = NULL;
        r = read_required_text(js, &s->patterns[s->n_patterns], 0, "a pattern that is not text");
        if (s->patterns[s->n_patterns])
            s->n_patterns++;
    }
    return r < 0 ? r : 0;
}

static int read_events(struct jscan *js, unsigned *events)
{
    const char *str;
    size_t n;
    int r;

    *events = 0;
    r = jscan_array_begin(js);
    while (!r) {
        enum change_kind k;
        r = jscan_array_next(js);
        if (r <= 0)
            break;
        if (jscan_peek(js) != JSCAN_STRING)
            return jscan_fail(js, "an event kind that is not text");
        r = jscan_string(js, &str, &n);
        if (r)
            return r;
        if (change_kind_parse(str, n, 0, &k) != 0)
            return jscan_fail(js, "an unknown event kind");
        *events |= 1u << k;
    }
    return r < 0 ? r : 0;
}

static int read_number(struct jscan *js, int64_t *v, int *have, const char *what)
{
    if (jscan_peek(js) != JSCAN_NUMBER)
        return jscan_fail(js, what);
    *have = 1;
    return jscan_int(js, v);
}

static int on_subscription_member(struct jscan *js, const char *k, size_t kl, void *ctx)
{
    struct sub_doc *d = ctx;
    const char *str;
    size_t n;
    int r;

    if (jscan_key_is(k, kl, "format"))
        return read_number(js, &d->format, &d->have_format, "a format that is not a number");
    if (jscan_key_is(k, kl, "platform")) {
        if (jscan_peek(js) != JSCAN_STRING)
            return jscan_fail(js, "a platform that is not text");
        r = jscan_string(js, &str, &n);
        if (r)
            return r;
        d->have_platform = 0;
        for (int p = 0; p < SUB_PLATFORMS; p++) {
            const char *name = sub_platform_name((enum sub_platform)p);
            if (n == strlen(name) && memcmp(str, name, n) == 0) {
                d->s.platform = (enum sub_platform)p;
                d->have_platform = 1;
            }
        }
        return d->have_platform ? 0 : jscan_fail(js, "an unknown platform");
    }
    if (jscan_key_is(k, kl, "channel"))
        return read_required_text(js, &d->s.channel, 0, "a channel that is not text");
    if (jscan_key_is(k, kl, "patterns")) {
        if (jscan_peek(js) != JSCAN_ARRAY)
            return jscan_fail(js, "patterns that are not an array");
        return read_patterns(js, d);
    }
    if (jscan_key_is(k, kl, "events")) {
        if (jscan_peek(js) != JSCAN_ARRAY)
            return jscan_fail(js, "events that are not an array");
        return read_events(js, &d->s.events);
    }
    if (jscan_key_is(k, kl, "by"))
        return read_required_text(js, &d->s.by, 0, "a \"by\" that is not text");
    if (jscan_key_is(k, kl, "suspended"))
        return read_required_text(js, &d->s.suspended, 1, "a suspension that is not text");
    if (jscan_key_is(k, kl, "created"))
        return read_number(js, &d->s.created, &d->have_created,
                           "a \"created\" that is not a number");
    if (jscan_key_is(k, kl, "changed"))
        return read_number(js, &d->s.changed, &d->have_changed,
                           "a \"changed\" that is not a number");
    return jscan_skip(js);
}

int state_parse_subscription(const char *buf, size_t len, struct subscription *out, char *why,
                             size_t whylen)
{
    struct sub_doc d = {0};
    int r;

    memset(out, 0, sizeof(*out));
    r = read_document(buf, len, on_subscription_member, &d, why, whylen);
    if (!r) {
        const char *missing = !d.have_format     ? "format"
                              : !d.have_platform ? "platform"
                              : !d.s.channel     ? "channel"
                              : !d.have_patterns ? "patterns"
                              : !d.s.by          ? "by"
                              : !d.have_created  ? "created"
                              : !d.have_changed  ? "changed"
                                                 : NULL;
        r = -EPROTO;
        if (missing)
            snprintf(why, whylen, "no \"%s\" member", missing);
        else if (d.format > STATE_FORMAT)
            snprintf(why, whylen, "format %lld is newer than this version's (%d)",
                     (long long)d.format, STATE_FORMAT);
        else if (d.format != STATE_FORMAT)
            snprintf(why, whylen, "unknown format %lld", (long long)d.format);
        else if (state_subscription_check(&d.s, why, whylen) == 0)
            r = 0;
    }
    if (r) {
        subscription_fini(&d.s);
        return r;
    }
    *out = d.s;
    return 0;
}

/* Sorts set's records and lets go of those past keep. */
static void set_trim(struct state_subscription_set *set, size_t keep)
{
    if (set->n > 1) /* qsort() of NULL, even for none, is undefined */
        qsort(set->v, set->n, sizeof(*set->v), subscription_cmp);
    while (set->n > keep) {
        subscription_fini(&set->v[--set->n]);
        set->dropped++;
    }
}

int state_subscription_set_add(struct state_subscription_set *set, const char *key, const char *buf,
                               size_t len, char *why, size_t whylen)
{
    struct subscription s;
    char want[STATE_SUBSCRIPTION_KEY];
    int r;

    if (len > STATE_SUBSCRIPTION_MAX) {
        snprintf(why, whylen, "over %ld bytes", STATE_SUBSCRIPTION_MAX);
        return -EPROTO;
    }
    r = state_parse_subscription(buf, len, &s, why, whylen);
    if (r)
        return r;
    r = state_subscription_key(s.platform, s.channel, want);
    if (!r && strcmp(want, key) != 0) {
        snprintf(why, whylen, "it holds the subscription of a channel stored under another key");
        r = -EPROTO;
    }
    if (!r && set->n == set->cap) {
        if (set->cap == 2 * STATE_SUBSCRIPTIONS_MAX)
            set_trim(set, STATE_SUBSCRIPTIONS_MAX);
        else {
            size_t ncap = set->cap ? set->cap * 2 : 16;
            struct subscription *nv;
            if (ncap > 2 * STATE_SUBSCRIPTIONS_MAX)
                ncap = 2 * STATE_SUBSCRIPTIONS_MAX;
            nv = realloc(set->v, ncap * sizeof(*nv));
            if (!nv)
                r = -ENOMEM;
            else {
                set->v = nv;
                set->cap = ncap;
            }
        }
    }
    if (r) {
        if (r == -ENOMEM)
            snprintf(why, whylen, "out of memory");
        subscription_fini(&s);
        return r;
    }
    set->v[set->n++] = s;
    return 0;
}

void state_subscription_set_finish(struct state_subscription_set *set,
                                   struct subscription_list *out)
{
    set_trim(set, STATE_SUBSCRIPTIONS_MAX);
    out->v = set->v;
    out->n = set->n;
    set->v = NULL;
    set->n = set->cap = 0;
}

void state_subscription_set_fini(struct state_subscription_set *set)
{
    struct subscription_list l = {set->v, set->n};

    subscription_list_fini(&l);
    set->v = NULL;
    set->n = set->cap = 0;
}
