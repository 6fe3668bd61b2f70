/*
 * State directory.
 *
 * Invariants: snapshot.json is always either the previous or the next complete snapshot (the
 * new one is written beside it and renamed over it, with fsyncs so a power cut cannot leave an
 * empty file); only the lock holder writes, and the lock is a flock() on the directory itself,
 * which no one can unlink from under us (the "lock" file only names the holder's pid, for
 * people and for older versions that lock it); a corrupt snapshot is moved aside, never
 * overwritten, so an operator can look at it.
 *
 * The journal and generations (issue "Hostile input and faults"): an "add" line whose generation
 * is at most the snapshot's belongs to a commit that happened. That holds because
 *   - a commit appends its lines, then renames the snapshot carrying their generation;
 *   - a commit that fails cuts the journal back to its length before the batch (ftruncate needs
 *     no free space, so ENOSPC cannot stop it); until that cut has happened every later append
 *     retries it first and fails with it, so nothing lands behind a batch that did not commit;
 *   - the caller never reuses the generation of an attempt, failed or not: the next attempt takes
 *     a higher one. So even a line the cut missed can never be mistaken for a later commit's
 *     line, and no id (sink + generation + index) ever names two different messages;
 *   - at start-up state_journal_load() drops every line above the snapshot's generation and
 *     rewrites the journal before anything is appended (it fails otherwise). That is why the
 *     next generation needs no durable counter: a new process may reuse numbers above the
 *     committed one because no line of theirs is left by then, and none was ever delivered
 *     (only committed batches reach the outbox).
 */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jscan.h"
#include "outbox.h"
#include "log.h"
#include "utf8.h"

#define SNAPSHOT_NAME "snapshot.json"
#define SNAPSHOT_MAX  (1024L * 1024 * 1024)

struct state {
    char *dir;
    int dir_fd;    /* flock()ed: the lock */
    int lock_fd;   /* "lock": the holder's pid (and the lock of earlier versions) */
    dev_t dir_dev; /* what dir named when we opened it (state_check()) */
    ino_t dir_ino;
    int journal_fd;    /* outbox.jsonl, O_APPEND; -1 until first needed */
    off_t journal_cut; /* >= 0: a failed commit's lines start here and must go first */
};

#define JOURNAL_NAME    "outbox.jsonl"
#define DEADLETTER_NAME "deadletter.jsonl"

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

/* The holder's pid from dir/lock, for the "already in use" message ("" when unknown). */
static void read_holder(const char *path, char *pid, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? pread(fd, pid, len - 1, 0) : -1;

    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    if (fd >= 0)
        close(fd);
}

static int busy(const char *dir, const char *path, char *err, size_t errlen)
{
    char pid[32];

    read_holder(path, pid, sizeof(pid));
    snprintf(err, errlen, "state directory %s is already in use by another ytbridge%s%s%s", dir,
             pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
    return -EBUSY;
}

int state_open(struct state **out, const char *dir, char *err, size_t errlen)
{
    struct state *st = calloc(1, sizeof(*st));
    struct stat sb;
    char path[4096];
    int r;

    if (!st)
        return -ENOMEM;
    st->dir_fd = st->lock_fd = st->journal_fd = -1;
    st->journal_cut = -1;
    st->dir = strdup(dir);
    if (!st->dir) {
        r = -ENOMEM;
        goto fail;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        r = -errno;
        snprintf(err, errlen, "cannot create state directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    st->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dir_fd < 0 || fstat(st->dir_fd, &sb) != 0) {
        r = -errno;
        snprintf(err, errlen, "cannot open state directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    st->dir_dev = sb.st_dev;
    st->dir_ino = sb.st_ino;
    snprintf(path, sizeof(path), "%s/lock", dir);
    /*
     * The directory is the lock: a lock file can be deleted while its holder runs, and the next
     * process then locks a new file of the same name (issue "Hostile input and faults"). Where
     * directories cannot be flock()ed (some network file systems) the lock file has to do.
     */
    if (flock(st->dir_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            r = busy(dir, path, err, errlen);
            goto fail;
        }
        log_warn("state",
                 "cannot lock the directory %s (%s): relying on %s, which must not be "
                 "deleted while ytbridge runs",
                 dir, strerror(errno), path);
    }
    st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->lock_fd < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    /* Older versions lock only this file: taking it too keeps them out during an upgrade. */
    if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        r = errno == EWOULDBLOCK ? -EBUSY : -errno;
        if (r == -EBUSY)
            busy(dir, path, err, errlen);
        else
            snprintf(err, errlen, "cannot lock %s: %s", path, strerror(-r));
        goto fail;
    }
    /* The holder's pid, for the message above and for operators. */
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(st->lock_fd, 0) == 0 && pwrite(st->lock_fd, buf, (size_t)n, 0) != n)
        log_debug("state", "cannot write pid to %s", path);
    *out = st;
    return 0;
fail:
    state_close(st);
    return r;
}

int state_check(struct state *st, char *err, size_t errlen)
{
    struct stat held, named;

    if (fstat(st->dir_fd, &held) != 0) {
        int e = errno;
        snprintf(err, errlen, "state directory %s: %s", st->dir, strerror(e));
        return -e;
    }
    if (held.st_nlink == 0) {
        snprintf(err, errlen, "state directory %s was deleted", st->dir);
        return -ENOENT;
    }
    if (stat(st->dir, &named) != 0) {
        int e = errno;
        snprintf(err, errlen, "state directory %s was moved away or deleted (%s)", st->dir,
                 strerror(e));
        return e == ENOENT ? -ENOENT : -e;
    }
    if (named.st_dev != st->dir_dev || named.st_ino != st->dir_ino) {
        snprintf(err, errlen,
                 "state directory %s was replaced: the path names another directory now", st->dir);
        return -ESTALE;
    }
    return 0;
}

void state_close(struct state *st)
{
    if (!st)
        return;
    if (st->journal_fd >= 0)
        close(st->journal_fd);
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    if (st->dir_fd >= 0)
        close(st->dir_fd);
    free(st->dir);
    free(st);
}

/* ---- reading ---- */

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
        c->have_kind = 0;
        for (int i = CHANGE_CREATED; i <= CHANGE_REMOVED; i++) {
            const char *name = change_kind_name((enum change_kind)i);
            if (n == strlen(name) && memcmp(str, name, n) == 0) {
                e->kind = (enum change_kind)i;
                c->have_kind = 1;
            }
        }
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

static int read_file(int dir_fd, const char *name, char **out, size_t *outlen)
{
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf = NULL;
    size_t n = 0;
    int r;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        r = -errno;
        goto out;
    }
    if (st.st_size > SNAPSHOT_MAX) {
        r = -EFBIG;
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    while (n < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + n, (size_t)st.st_size - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r = -errno;
            goto out;
        }
        if (k == 0)
            break;
        n += (size_t)k;
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    buf = NULL;
    r = 0;
out:
    free(buf);
    close(fd);
    return r;
}

int state_load(struct state *st, const char *dir, struct snapshot *out, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    int dir_fd = st ? st->dir_fd : open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r;

    if (dir_fd < 0) {
        if (errno == ENOENT)
            return STATE_NONE;
        snprintf(err, errlen, "cannot open state directory %s: %s", dir, strerror(errno));
        return -errno;
    }
    r = read_file(dir_fd, SNAPSHOT_NAME, &buf, &len);
    if (r == -ENOENT) {
        r = STATE_NONE;
        goto out;
    }
    if (r == -EFBIG) {
        snprintf(err, errlen, "%s/%s is over %ld bytes", dir, SNAPSHOT_NAME, SNAPSHOT_MAX);
    } else if (r < 0) {
        snprintf(err, errlen, "cannot read %s/%s: %s", dir, SNAPSHOT_NAME, strerror(-r));
        goto out;
    } else {
        char why[256];
        r = state_parse_snapshot(buf, len, out, why, sizeof(why));
        if (r == 0) {
            r = STATE_LOADED;
            goto out;
        }
        if (r == -EPROTONOSUPPORT || r == -ENOMEM) {
            snprintf(err, errlen, "%s/%s: %s", dir, SNAPSHOT_NAME, why);
            goto out;
        }
        snprintf(err, errlen, "%s/%s is corrupt: %s", dir, SNAPSHOT_NAME, why);
    }
    /* Corrupt (or absurdly big): keep it for the operator, start over as a first run. */
    r = STATE_CORRUPT;
    if (st) {
        char aside[128];
        size_t l = strlen(err);
        snprintf(aside, sizeof(aside), "%s.corrupt-%lld", SNAPSHOT_NAME, (long long)time(NULL));
        if (renameat(dir_fd, SNAPSHOT_NAME, dir_fd, aside) != 0) {
            snprintf(err + l, errlen - l, "; cannot move it aside: %s", strerror(errno));
            r = -EIO;
        } else {
            snprintf(err + l, errlen - l, "; moved to %s/%s", dir, aside);
            fsync(dir_fd);
        }
    }
out:
    free(buf);
    if (!st)
        close(dir_fd);
    return r;
}

/* ---- writing ---- */

static int put_str(json_t *o, const char *key, const char *v)
{
    return json_object_set_new(o, key, v ? json_string(v) : json_null());
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Buffered writer: one write() per 64 KiB, not per project. */
struct wbuf {
    int fd;
    int err;
    size_t n;
    char b[65536];
};

static void wb_put(struct wbuf *w, const char *p, size_t n)
{
    if (w->err)
        return;
    if (w->n + n > sizeof(w->b)) {
        w->err = write_all(w->fd, w->b, w->n);
        w->n = 0;
        if (w->err)
            return;
        if (n > sizeof(w->b)) {
            w->err = write_all(w->fd, p, n);
            return;
        }
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static int wb_dump(const char *buffer, size_t size, void *data)
{
    wb_put(data, buffer, size);
    return ((struct wbuf *)data)->err ? -1 : 0;
}

/*
 * jansson reports a failed callback as a bare -1: the write's errno is kept in w->err (ENOSPC,
 * EIO, EFBIG), and without it only an allocation inside jansson can have failed.
 */
static int dump(json_t *o, struct wbuf *w)
{
    if (json_dump_callback(o, wb_dump, w, JSON_COMPACT | JSON_PRESERVE_ORDER) == 0)
        return 0;
    return w->err ? w->err : -ENOMEM;
}

static int write_project(struct wbuf *w, const struct project *p)
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

static int write_history_entry(struct wbuf *w, const struct history_entry *e)
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

int state_save(struct state *st, const struct snapshot *s, int64_t now, char *err, size_t errlen)
{
    static const char tmp[] = SNAPSHOT_NAME ".tmp";
    struct wbuf *w = malloc(sizeof(*w));

    if (errlen)
        err[0] = '\0';
    json_t *head = NULL;
    char *head_text = NULL;
    int r = -ENOMEM;

    if (!w)
        goto out;
    w->fd = openat(st->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    w->err = 0;
    w->n = 0;
    if (w->fd < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot create %s/%s: %s", st->dir, tmp, strerror(errno));
        goto out;
    }
    head = json_pack("{s:i, s:I, s:s?, s:s, s:s, s:I}", "format", STATE_FORMAT, "saved_at",
                     (json_int_t)now, "youtrack", s->youtrack, "flavour",
                     youtrack_flavour_name(s->flavour), "epoch", s->epoch, "generation",
                     (json_int_t)s->generation);
    head_text = head ? json_dumps(head, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (!head_text)
        goto fail_unlink;
    /* The header's closing brace is replaced by the projects array, one project per line. */
    wb_put(w, head_text, strlen(head_text) - 1);
    wb_put(w, ",\"projects\":[", 13);
    for (size_t i = 0; i < s->projects.n; i++) {
        wb_put(w, i ? ",\n" : "\n", i ? 2 : 1);
        r = write_project(w, &s->projects.v[i]);
        if (r)
            goto fail_unlink;
    }
    /* Then the change history, oldest first, one entry per line. */
    wb_put(w, "\n],\"history\":[", 14);
    for (size_t i = 0; i < s->n_history; i++) {
        wb_put(w, i ? ",\n" : "\n", i ? 2 : 1);
        r = write_history_entry(w, &s->history[i]);
        if (r)
            goto fail_unlink;
    }
    wb_put(w, "\n]}\n", 4);
    if (!w->err && w->n)
        w->err = write_all(w->fd, w->b, w->n);
    r = w->err;
    if (!r && fsync(w->fd) != 0)
        r = -errno;
    if (r) {
        snprintf(err, errlen, "cannot write %s/%s: %s", st->dir, tmp, strerror(-r));
        goto fail_unlink;
    }
    close(w->fd);
    w->fd = -1;
    if (renameat(st->dir_fd, tmp, st->dir_fd, SNAPSHOT_NAME) != 0) {
        r = -errno;
        snprintf(err, errlen, "cannot rename %s/%s: %s", st->dir, tmp, strerror(errno));
        goto fail_unlink;
    }
    /* The rename is the commit: it happened, whatever the directory fsync says next. */
    if (fsync(st->dir_fd) != 0)
        log_warn("state", "cannot fsync %s: %s", st->dir, strerror(errno));
    r = 0;
    goto out;
fail_unlink:
    if (r == -ENOMEM && !err[0])
        snprintf(err, errlen, "out of memory");
    else if (!err[0])
        snprintf(err, errlen, "cannot write %s/%s: %s", st->dir, tmp, strerror(-r));
    unlinkat(st->dir_fd, tmp, 0);
out:
    if (w && w->fd >= 0)
        close(w->fd);
    free(w);
    free(head_text);
    json_decref(head);
    return r;
}

/* ---- the outbox journal ---- */

/* Opens the journal for appending, creating it on first use (a bridge that never queued has none).
 */
static int journal_open(struct state *st)
{
    if (st->journal_fd >= 0)
        return 0;
    st->journal_fd =
        openat(st->dir_fd, JOURNAL_NAME, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (st->journal_fd < 0)
        return -errno;
    if (fsync(st->dir_fd) != 0)
        return -errno;
    return 0;
}

/*
 * Cuts the journal back to len bytes, durably when it can. A cut that fails is remembered and
 * retried before every later append (the header's invariant). 0 or -errno.
 */
static int journal_cut(struct state *st, off_t len)
{
    if (ftruncate(st->journal_fd, len) != 0) {
        int r = -errno;
        st->journal_cut = len;
        return r;
    }
    st->journal_cut = -1;
    /* Not durable yet is fine: the lines left by a power cut are above the committed
     * generation, dropped at start-up; the next append's fdatasync makes the cut durable. */
    if (fdatasync(st->journal_fd) != 0)
        log_warn("state", "cannot sync %s/%s after cutting it back: %s", st->dir, JOURNAL_NAME,
                 strerror(errno));
    return 0;
}

static int append_durably(struct state *st, const char *buf, size_t len)
{
    int r = journal_open(st);

    if (r)
        return r;
    if (st->journal_cut >= 0) {
        r = journal_cut(st, st->journal_cut);
        if (r)
            return r;
        log_info("state", "%s/%s: the lines of a commit that failed are gone now", st->dir,
                 JOURNAL_NAME);
    }
    /* A write cut short (ENOSPC) is taken back, so the next line starts on a line of its own. */
    off_t end = lseek(st->journal_fd, 0, SEEK_END);
    r = write_all(st->journal_fd, buf, len);
    if (r && end >= 0 && ftruncate(st->journal_fd, end) != 0)
        log_warn("state", "cannot take back a partial journal write: %s", strerror(errno));
    if (!r && fdatasync(st->journal_fd) != 0)
        r = -errno;
    return r;
}

/* One "add" line (with its newline) for e; NULL on ENOMEM. */
static char *add_line(const struct outbox_entry *e)
{
    json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:s, s:I, s:s}", "op", "add", "gen",
                          (json_int_t)e->gen, "id", e->id, "sink", e->sink, "event", e->event,
                          "created", (json_int_t)e->created, "body", e->body);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII) : NULL;
    json_decref(o);
    char *line = NULL;
    if (text && asprintf(&line, "%s\n", text) < 0)
        line = NULL;
    free(text);
    return line;
}

/* Writes n entries as "add" lines into the already open fd. */
static int write_adds(int fd, struct outbox_entry *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *line = add_line(v[i]);
        if (!line)
            return -ENOMEM;
        int r = write_all(fd, line, strlen(line));
        free(line);
        if (r)
            return r;
    }
    return 0;
}

int state_journal_clear(struct state *st)
{
    /* Safe without a rename: cut short or not, the file holds no pending entry. */
    if (st->journal_fd < 0)
        return 0;
    if (ftruncate(st->journal_fd, 0) != 0 || fdatasync(st->journal_fd) != 0)
        return -errno;
    st->journal_cut = -1;
    return 0;
}

int state_journal_compact(struct state *st, struct outbox_entry *const *v, size_t n)
{
    static const char tmp[] = JOURNAL_NAME ".tmp";
    int fd = openat(st->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int r;

    if (fd < 0)
        return -errno;
    r = write_adds(fd, v, n);
    if (!r && fsync(fd) != 0)
        r = -errno;
    close(fd);
    if (!r && renameat(st->dir_fd, tmp, st->dir_fd, JOURNAL_NAME) != 0)
        r = -errno;
    if (!r && fsync(st->dir_fd) != 0)
        r = -errno;
    if (r) {
        unlinkat(st->dir_fd, tmp, 0);
        return r;
    }
    if (st->journal_fd >= 0)
        close(st->journal_fd);
    st->journal_cut = -1; /* the new file holds just the pending entries */
    st->journal_fd = openat(st->dir_fd, JOURNAL_NAME, O_WRONLY | O_APPEND | O_CLOEXEC);
    return st->journal_fd < 0 ? -errno : 0;
}

/* A parsed journal line. */
struct jline {
    int add; /* 1: add, 0: done */
    struct outbox_entry *e;
    char *done_id;
};

static int parse_line(const char *line, size_t len, struct jline *out)
{
    json_t *o = json_loadb(line, len, 0, NULL);
    const char *op = json_string_value(json_object_get(o, "op"));
    const char *id = json_string_value(json_object_get(o, "id"));
    int r = -EPROTO;

    memset(out, 0, sizeof(*out));
    if (!op || !id)
        goto out;
    if (strcmp(op, "done") == 0) {
        out->done_id = strdup(id);
        r = out->done_id ? 0 : -ENOMEM;
    } else if (strcmp(op, "add") == 0) {
        const char *sink = json_string_value(json_object_get(o, "sink"));
        const char *event = json_string_value(json_object_get(o, "event"));
        const char *body = json_string_value(json_object_get(o, "body"));
        json_t *gen = json_object_get(o, "gen"), *created = json_object_get(o, "created");
        if (!sink || !event || !body || !json_is_integer(gen) || !json_is_integer(created))
            goto out;
        out->add = 1;
        out->e = outbox_entry_new(id, sink, event, body, json_integer_value(created),
                                  (uint64_t)json_integer_value(gen));
        r = out->e ? 0 : -ENOMEM;
    }
out:
    json_decref(o);
    return r;
}

int state_journal_load(struct state *st, uint64_t committed_gen, struct outbox_entry **head,
                       char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0, n = 0, cap = 0, bad = 0, uncommitted = 0, done = 0;
    struct outbox_entry **v = NULL;
    int r = read_file(st->dir_fd, JOURNAL_NAME, &buf, &len);

    *head = NULL;
    if (r == -ENOENT) {
        len = 0;
        r = 0;
    } else if (r) {
        snprintf(err, errlen, "cannot read %s/%s: %s", st->dir, JOURNAL_NAME, strerror(-r));
        return r;
    }
    int buf_had_tail = len && buf[len - 1] != '\n'; /* a torn last line */
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (buf + pos)) : len - pos;
        struct jline jl;
        int pr = parse_line(buf + pos, l, &jl);
        pos += l + (nl ? 1 : 0);
        if (pr == -ENOMEM) {
            r = -ENOMEM;
            break;
        }
        if (pr) {
            /* A torn last line is a crash mid-append: that add or done never completed. */
            if (nl)
                bad++;
            continue;
        }
        if (jl.add) {
            if (jl.e->gen > committed_gen) {
                uncommitted++;
                outbox_entry_free(jl.e);
                continue;
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                struct outbox_entry **nv = realloc(v, cap * sizeof(*v));
                if (!nv) {
                    outbox_entry_free(jl.e);
                    r = -ENOMEM;
                    break;
                }
                v = nv;
            }
            v[n++] = jl.e;
            continue;
        }
        /* done: drop the matching add (linear: journals are compacted and short). */
        done++;
        for (size_t i = n; i-- > 0;) {
            if (v[i] && strcmp(v[i]->id, jl.done_id) == 0) {
                outbox_entry_free(v[i]);
                v[i] = NULL;
                break;
            }
        }
        free(jl.done_id);
    }
    free(buf);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i])
            v[w++] = v[i];
    }
    n = w;
    if (bad)
        log_warn("state", "%s/%s: skipped %zu damaged line%s", st->dir, JOURNAL_NAME, bad,
                 bad == 1 ? "" : "s");
    if (uncommitted)
        log_info("state",
                 "dropped %zu queued message%s of a commit that did not finish (the "
                 "next poll finds the same changes again)",
                 uncommitted, uncommitted == 1 ? "" : "s");
    /* Rewrite only when there is something to drop: a run that changes nothing leaves the
     * state directory as it was. */
    if (!r && (done || bad || uncommitted || (len && buf_had_tail))) {
        r = state_journal_compact(st, v, n);
        if (r)
            snprintf(err, errlen, "cannot rewrite %s/%s: %s", st->dir, JOURNAL_NAME, strerror(-r));
    }
    if (r) {
        for (size_t i = 0; i < n; i++)
            outbox_entry_free(v[i]);
        free(v);
        return r;
    }
    for (size_t i = n; i-- > 0;) {
        v[i]->next = *head;
        *head = v[i];
    }
    free(v);
    return 0;
}

/* The "add" lines of n entries as one buffer (caller frees). 0 or -ENOMEM. */
static int add_lines(struct outbox_entry *const *v, size_t n, char **out, size_t *outlen)
{
    char *all = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&all, &len);
    int r = 0;

    if (!mem)
        return -ENOMEM;
    for (size_t i = 0; i < n && !r; i++) {
        char *line = add_line(v[i]);
        if (!line || fputs(line, mem) == EOF)
            r = -ENOMEM;
        free(line);
    }
    if (fclose(mem) != 0 && !r)
        r = -ENOMEM;
    if (r) {
        free(all);
        return r;
    }
    *out = all;
    *outlen = len;
    return 0;
}

int state_journal_add(struct state *st, struct outbox_entry *const *v, size_t n, char *err,
                      size_t errlen)
{
    char *all = NULL;
    size_t len = 0;
    int r = add_lines(v, n, &all, &len);

    /* One write for the whole batch, then one fdatasync: the batch lands before the commit. */
    if (!r)
        r = append_durably(st, all, len);
    if (r)
        snprintf(err, errlen, "cannot append to %s/%s: %s", st->dir, JOURNAL_NAME, strerror(-r));
    free(all);
    return r;
}

int state_commit(struct state *st, const struct snapshot *s, struct outbox_entry *const *v,
                 size_t n, int64_t now, char *err, size_t errlen)
{
    struct stat sb;
    int r = journal_open(st);

    if (!r && fstat(st->journal_fd, &sb) != 0)
        r = -errno;
    if (r) {
        snprintf(err, errlen, "cannot open %s/%s: %s", st->dir, JOURNAL_NAME, strerror(-r));
        return r;
    }
    /* Where this batch starts (after a pending cut, at the cut). */
    off_t mark = st->journal_cut >= 0 ? st->journal_cut : sb.st_size;
    r = state_journal_add(st, v, n, err, errlen);
    if (!r)
        r = state_save(st, s, now, err, errlen);
    if (!r)
        return 0;
    /* Cut the batch back out, whatever failed: its generation never committed. */
    int c = journal_cut(st, mark);
    if (c) {
        size_t l = strlen(err);
        snprintf(err + l, errlen - l,
                 "; cannot cut %s back either (%s): nothing more is queued until that works",
                 JOURNAL_NAME, strerror(-c));
    }
    return r;
}

int state_journal_done(struct state *st, const char *id, const char *result)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "op", "done", "id", id, "result", result);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    char *line = NULL;
    int r = -ENOMEM;

    json_decref(o);
    if (text && asprintf(&line, "%s\n", text) >= 0)
        r = append_durably(st, line, strlen(line));
    free(text);
    free(line);
    return r;
}

int state_deadletter(struct state *st, const struct outbox_entry *e, const char *reason)
{
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:s}", "at", (json_int_t)time(NULL),
                          "reason", reason, "id", e->id, "sink", e->sink, "event", e->event,
                          "created", (json_int_t)e->created, "body", e->body);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    int fd = openat(st->dir_fd, DEADLETTER_NAME, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int r = fd < 0 ? -errno : -ENOMEM;

    json_decref(o);
    if (fd >= 0 && text) {
        r = write_all(fd, text, strlen(text));
        if (!r)
            r = write_all(fd, "\n", 1);
    }
    if (fd >= 0)
        close(fd);
    free(text);
    return r;
}
