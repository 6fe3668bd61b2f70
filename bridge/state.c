/*
 * The state interface (state.h) and its default backend, the state directory: the only code
 * that opens, writes, renames or locks anything in it.
 *
 * The interface passes each call to the backend's table of operations (state_backend.h); the
 * records' bytes come from state_format.c, so the directory backend below is file handling. The
 * subscriptions' calls also format, check, parse and sort the records here (state_format.h), so
 * a backend only stores and finds bytes under a key, and every backend skips and sorts alike.
 *
 * Invariants: snapshot.json is always either the previous or the next complete snapshot (the
 * new one is written beside it and renamed over it, with fsyncs so a power cut cannot leave an
 * empty file); so is every other file replaced whole (a compacted outbox.jsonl,
 * matrix-sync.json, subscriptions/<key>.json); only the lock holder writes, and the lock is a
 * flock() on the directory itself, which no one can unlink from under us (the "lock" file only
 * names the holder's pid, for people and for older versions that lock it); a corrupt snapshot is
 * moved aside, never overwritten, so an operator can look at it.
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
 *   - at start-up dir_journal_load() drops every line above the snapshot's generation and
 *     rewrites the journal before anything is appended (it fails otherwise). That is why the
 *     next generation needs no durable counter: a new process may reuse numbers above the
 *     committed one because no line of theirs is left by then, and none was ever delivered
 *     (only committed batches reach the outbox).
 */
#include "state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "state_backend.h"
#include "state_format.h"

/* ---- the interface ---- */

static const struct state_backend_ops state_dir_ops;

int state_open(struct state **out, const char *dir, char *err, size_t errlen)
{
    return state_dir_ops.open(out, dir, 0, err, errlen);
}

void state_close(struct state *st)
{
    if (st)
        st->ops->close(st);
}

int state_check(struct state *st, char *err, size_t errlen)
{
    return st->ops->check(st, err, errlen);
}

int state_load(struct state *st, const char *dir, struct snapshot *out, char *err, size_t errlen)
{
    struct state *look = NULL;
    int r;

    if (st)
        return st->ops->load(st, out, err, errlen);
    r = state_dir_ops.open(&look, dir, STATE_OPEN_READONLY, err, errlen);
    if (r == -ENOENT)
        return STATE_NONE;
    if (r)
        return r;
    r = look->ops->load(look, out, err, errlen);
    look->ops->close(look);
    return r;
}

int state_save(struct state *st, const struct snapshot *s, int64_t now, char *err, size_t errlen)
{
    return st->ops->save(st, s, now, err, errlen);
}

int state_commit(struct state *st, const struct snapshot *s, const struct journal_record *v,
                 size_t n, int64_t now, char *err, size_t errlen)
{
    return st->ops->commit(st, s, v, n, now, err, errlen);
}

int state_journal_load(struct state *st, uint64_t committed_gen, struct journal_record **out,
                       size_t *n, char *err, size_t errlen)
{
    return st->ops->journal_load(st, committed_gen, out, n, err, errlen);
}

int state_journal_add(struct state *st, const struct journal_record *v, size_t n, char *err,
                      size_t errlen)
{
    return st->ops->journal_add(st, v, n, err, errlen);
}

int state_journal_done(struct state *st, const char *id, const char *result)
{
    return st->ops->journal_done(st, id, result);
}

int state_journal_clear(struct state *st)
{
    return st->ops->journal_clear(st);
}

int state_journal_compact(struct state *st, const struct journal_record *v, size_t n)
{
    return st->ops->journal_compact(st, v, n);
}

int state_deadletter(struct state *st, const struct journal_record *r, const char *reason)
{
    return st->ops->deadletter(st, r, reason);
}

/* A key names a file (or a key in another store): short, and nothing to escape. */
static int key_ok(const char *key)
{
    size_t n = strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789_");

    return n > 0 && n <= 32 && key[n] == '\0';
}

int state_sync_position_get(struct state *st, const char *key, struct state_sync_position *out,
                            char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!key_ok(key)) {
        snprintf(err, errlen, "invalid sync position key");
        return -EINVAL;
    }
    return st->ops->sync_position_get(st, key, out, err, errlen);
}

int state_sync_position_put(struct state *st, const char *key, const struct state_sync_position *p,
                            char *err, size_t errlen)
{
    if (!key_ok(key) || !p->server || !p->user || !p->position) {
        snprintf(err, errlen, "invalid sync position");
        return -EINVAL;
    }
    return st->ops->sync_position_put(st, key, p, err, errlen);
}

int state_open_readonly(struct state **out, const char *dir, char *err, size_t errlen)
{
    return state_dir_ops.open(out, dir, STATE_OPEN_READONLY, err, errlen);
}

/* One record a backend found: kept, or skipped with a warning naming it (state.h). */
static int on_subscription_record(void *ctx, const char *where, const char *key, const char *buf,
                                  size_t len, int error)
{
    char why[256];
    int r = error;

    if (!r)
        r = state_subscription_set_add(ctx, key, buf, len, why, sizeof(why));
    else
        snprintf(why, sizeof(why), "cannot be read: %s", strerror(-error));
    if (r == -ENOMEM)
        return r;
    if (r)
        log_warn("state", "%s: subscription record skipped: %s", where, why);
    return 0;
}

int state_subscriptions_load(struct state *st, struct subscription_list *out, char *err,
                             size_t errlen)
{
    struct state_subscription_set set = {0};
    int r = st->ops->subscriptions_scan(st, on_subscription_record, &set, err, errlen);

    memset(out, 0, sizeof(*out));
    if (r) {
        if (r == -ENOMEM)
            snprintf(err, errlen, "out of memory loading the subscriptions");
        state_subscription_set_fini(&set);
        return r;
    }
    state_subscription_set_finish(&set, out);
    if (set.dropped)
        log_warn("state",
                 "%s state: %zu more subscriptions than the %d a state may hold; kept the first "
                 "%d by platform and channel",
                 st->ops->name, set.dropped, STATE_SUBSCRIPTIONS_MAX, STATE_SUBSCRIPTIONS_MAX);
    return 0;
}

int state_subscription_put(struct state *st, const struct subscription *s, char *err, size_t errlen)
{
    char key[STATE_SUBSCRIPTION_KEY], why[128], *text = NULL;
    int r;

    /* Refused here what a load would skip (the formatter checks): the record must come back as
     * it went in. */
    text = state_format_subscription(s);
    if (!text && state_subscription_check(s, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "not a subscription that can be saved: %s", why);
        return -EINVAL;
    }
    r = text ? state_subscription_key(s->platform, s->channel, key) : -ENOMEM;
    if (r)
        snprintf(err, errlen, "out of memory");
    else
        r = st->ops->subscription_put(st, key, text, err, errlen);
    free(text);
    return r;
}

int state_subscription_delete(struct state *st, int platform, const char *channel, char *err,
                              size_t errlen)
{
    char key[STATE_SUBSCRIPTION_KEY];

    if (platform < 0 || platform >= SUB_PLATFORMS || !sub_channel_ok(platform, channel)) {
        snprintf(err, errlen, "not a channel a subscription can have");
        return -EINVAL;
    }
    if (state_subscription_key(platform, channel, key) != 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return st->ops->subscription_delete(st, key, err, errlen);
}

/* ---- the directory backend ---- */

#define SNAPSHOT_NAME     "snapshot.json"
#define SNAPSHOT_MAX      (1024L * 1024 * 1024)
#define JOURNAL_NAME      "outbox.jsonl"
#define DEADLETTER_NAME   "deadletter.jsonl"
#define SYNC_SUFFIX       "-sync.json"    /* "matrix" -> matrix-sync.json */
#define SYNC_POSITION_MAX (64L * 1024)    /* a bigger one is damaged */
#define SUBS_DIR          "subscriptions" /* one <key>.json per subscribed channel */
#define SUBS_SUFFIX       ".json"

struct dir {
    struct state base; /* first: the interface's pointer is ours */
    char *dir;
    int dir_fd;    /* flock()ed: the lock (read-only: just open) */
    int lock_fd;   /* "lock": the holder's pid (and the lock of earlier versions) */
    dev_t dir_dev; /* what dir named when we opened it (dir_check()) */
    ino_t dir_ino;
    int journal_fd;    /* outbox.jsonl, O_APPEND; -1 until first needed */
    off_t journal_cut; /* >= 0: a failed commit's lines start here and must go first */
    int readonly;
};

static struct dir *dir_of(struct state *st)
{
    return (struct dir *)st;
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

static void dir_close(struct state *st)
{
    struct dir *d = dir_of(st);

    if (d->journal_fd >= 0)
        close(d->journal_fd);
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    if (d->dir_fd >= 0)
        close(d->dir_fd);
    free(d->dir);
    free(d);
}

/* Takes the lock of the open directory d and writes our pid into "lock". */
static int dir_lock(struct dir *d, char *err, size_t errlen)
{
    char path[4096];
    int r;

    snprintf(path, sizeof(path), "%s/lock", d->dir);
    /*
     * The directory is the lock: a lock file can be deleted while its holder runs, and the next
     * process then locks a new file of the same name (issue "Hostile input and faults"). Where
     * directories cannot be flock()ed (some network file systems) the lock file has to do.
     */
    if (flock(d->dir_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            return busy(d->dir, path, err, errlen);
        log_warn("state",
                 "cannot lock the directory %s (%s): relying on %s, which must not be "
                 "deleted while ytbridge runs",
                 d->dir, strerror(errno), path);
    }
    d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->lock_fd < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return r;
    }
    /* Older versions lock only this file: taking it too keeps them out during an upgrade. */
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        r = errno == EWOULDBLOCK ? -EBUSY : -errno;
        if (r == -EBUSY)
            busy(d->dir, path, err, errlen);
        else
            snprintf(err, errlen, "cannot lock %s: %s", path, strerror(-r));
        return r;
    }
    /* The holder's pid, for the message above and for operators. */
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(d->lock_fd, 0) == 0 && pwrite(d->lock_fd, buf, (size_t)n, 0) != n)
        log_debug("state", "cannot write pid to %s", path);
    return 0;
}

static int dir_open(struct state **out, const char *dir, unsigned flags, char *err, size_t errlen)
{
    struct dir *d = calloc(1, sizeof(*d));
    struct stat sb;
    int r = -ENOMEM;

    if (!d) {
        snprintf(err, errlen, "out of memory");
        return r;
    }
    d->base.ops = &state_dir_ops;
    d->dir_fd = d->lock_fd = d->journal_fd = -1;
    d->journal_cut = -1;
    d->readonly = (flags & STATE_OPEN_READONLY) != 0;
    d->dir = strdup(dir);
    if (!d->dir) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (!d->readonly && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        r = -errno;
        snprintf(err, errlen, "cannot create state directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    d->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->dir_fd < 0 || fstat(d->dir_fd, &sb) != 0) {
        r = -errno;
        snprintf(err, errlen, "cannot open state directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    d->dir_dev = sb.st_dev;
    d->dir_ino = sb.st_ino;
    if (!d->readonly) {
        r = dir_lock(d, err, errlen);
        if (r)
            goto fail;
    }
    *out = &d->base;
    return 0;
fail:
    dir_close(&d->base);
    return r;
}

static int dir_check(struct state *st, char *err, size_t errlen)
{
    struct dir *d = dir_of(st);
    struct stat held, named;

    if (fstat(d->dir_fd, &held) != 0) {
        int e = errno;
        snprintf(err, errlen, "state directory %s: %s", d->dir, strerror(e));
        return -e;
    }
    if (held.st_nlink == 0) {
        snprintf(err, errlen, "state directory %s was deleted", d->dir);
        return -ENOENT;
    }
    if (stat(d->dir, &named) != 0) {
        int e = errno;
        snprintf(err, errlen, "state directory %s was moved away or deleted (%s)", d->dir,
                 strerror(e));
        return e == ENOENT ? -ENOENT : -e;
    }
    if (named.st_dev != d->dir_dev || named.st_ino != d->dir_ino) {
        snprintf(err, errlen,
                 "state directory %s was replaced: the path names another directory now", d->dir);
        return -ESTALE;
    }
    return 0;
}

/*
 * Reads all of name in the directory at into *out (NUL-terminated, caller frees): 0, -EFBIG
 * over max, -EISDIR or -EINVAL when it is no regular file, -errno.
 */
static int read_file_at(int at, const char *name, long max, char **out, size_t *outlen)
{
    /* O_NONBLOCK: a FIFO put there must not hang the open; no effect on a regular file. */
    int fd = openat(at, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
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
    if (!S_ISREG(st.st_mode)) {
        r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
        goto out;
    }
    if (st.st_size > max) {
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

static int read_file(struct dir *d, const char *name, long max, char **out, size_t *outlen)
{
    return read_file_at(d->dir_fd, name, max, out, outlen);
}

/* Buffered writer: one write() per 64 KiB, not per project. */
struct wbuf {
    int fd;
    int err;
    size_t n;
    char b[65536];
};

static int wb_put(void *ctx, const char *p, size_t n)
{
    struct wbuf *w = ctx;

    if (w->err)
        return w->err;
    if (w->n + n > sizeof(w->b)) {
        w->err = write_all(w->fd, w->b, w->n);
        w->n = 0;
        if (w->err)
            return w->err;
        if (n > sizeof(w->b)) {
            w->err = write_all(w->fd, p, n);
            return w->err;
        }
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
    return 0;
}

/* What a file replaced whole holds: emit() writes it through put. */
typedef int (*emit_fn)(const void *ctx, state_put_fn put, void *put_ctx);

/*
 * Replaces name in the directory at (path: its path, for messages) atomically: name.tmp (mode
 * 0600), written by emit, fsync, rename over name, fsync of that directory. 0 or -errno, err
 * naming the file and the reason. A failed directory fsync only warns, unless durable: then it
 * is the result (the new file is in place but might not survive a power cut).
 */
static int replace_file_at(int at, const char *path, const char *name, int durable, emit_fn emit,
                           const void *ctx, char *err, size_t errlen)
{
    char tmp[128];
    struct wbuf *w = malloc(sizeof(*w));
    int r;

    if (errlen)
        err[0] = '\0';
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= sizeof(tmp)) {
        free(w);
        snprintf(err, errlen, "file name %s is too long", name);
        return -ENAMETOOLONG;
    }
    w->err = 0;
    w->n = 0;
    w->fd = openat(at, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot create %s/%s: %s", path, tmp, strerror(errno));
        goto out;
    }
    r = emit(ctx, wb_put, w);
    if (!r && w->n)
        r = write_all(w->fd, w->b, w->n);
    if (!r && fsync(w->fd) != 0)
        r = -errno;
    if (close(w->fd) != 0 && !r)
        r = -errno;
    w->fd = -1;
    if (r)
        goto fail_unlink;
    if (renameat(at, tmp, at, name) != 0) {
        r = -errno;
        snprintf(err, errlen, "cannot rename %s/%s: %s", path, tmp, strerror(errno));
        goto fail_unlink;
    }
    /* The rename is the commit: it happened, whatever the directory fsync says next. */
    r = 0;
    if (fsync(at) != 0) {
        if (durable) {
            r = -errno;
            snprintf(err, errlen, "cannot fsync %s after renaming %s into it: %s", path, name,
                     strerror(errno));
        } else {
            log_warn("state", "cannot fsync %s: %s", path, strerror(errno));
        }
    }
    goto out;
fail_unlink:
    if (r == -ENOMEM && !err[0])
        snprintf(err, errlen, "out of memory");
    else if (!err[0])
        snprintf(err, errlen, "cannot write %s/%s: %s", path, tmp, strerror(-r));
    unlinkat(at, tmp, 0);
out:
    free(w);
    return r;
}

static int replace_file(struct dir *d, const char *name, emit_fn emit, const void *ctx, char *err,
                        size_t errlen)
{
    return replace_file_at(d->dir_fd, d->dir, name, 0, emit, ctx, err, errlen);
}

/* ---- the snapshot ---- */

static int dir_load(struct state *st, struct snapshot *out, char *err, size_t errlen)
{
    struct dir *d = dir_of(st);
    char *buf = NULL;
    size_t len = 0;
    int r = read_file(d, SNAPSHOT_NAME, SNAPSHOT_MAX, &buf, &len);

    if (r == -ENOENT) {
        r = STATE_NONE;
        goto out;
    }
    if (r == -EFBIG) {
        snprintf(err, errlen, "%s/%s is over %ld bytes", d->dir, SNAPSHOT_NAME, SNAPSHOT_MAX);
    } else if (r < 0) {
        snprintf(err, errlen, "cannot read %s/%s: %s", d->dir, SNAPSHOT_NAME, strerror(-r));
        goto out;
    } else {
        char why[256];
        r = state_parse_snapshot(buf, len, out, why, sizeof(why));
        if (r == 0) {
            r = STATE_LOADED;
            goto out;
        }
        if (r == -EPROTONOSUPPORT || r == -ENOMEM) {
            snprintf(err, errlen, "%s/%s: %s", d->dir, SNAPSHOT_NAME, why);
            goto out;
        }
        snprintf(err, errlen, "%s/%s is corrupt: %s", d->dir, SNAPSHOT_NAME, why);
    }
    /* Corrupt (or absurdly big): keep it for the operator, start over as a first run. */
    r = STATE_CORRUPT;
    if (!d->readonly) {
        char aside[128];
        size_t l = strlen(err);
        snprintf(aside, sizeof(aside), "%s.corrupt-%lld", SNAPSHOT_NAME, (long long)time(NULL));
        if (renameat(d->dir_fd, SNAPSHOT_NAME, d->dir_fd, aside) != 0) {
            snprintf(err + l, errlen - l, "; cannot move it aside: %s", strerror(errno));
            r = -EIO;
        } else {
            snprintf(err + l, errlen - l, "; moved to %s/%s", d->dir, aside);
            fsync(d->dir_fd);
        }
    }
out:
    free(buf);
    return r;
}

struct snapshot_doc {
    const struct snapshot *s;
    int64_t now;
};

static int emit_snapshot(const void *ctx, state_put_fn put, void *put_ctx)
{
    const struct snapshot_doc *doc = ctx;

    return state_format_snapshot(doc->s, doc->now, put, put_ctx);
}

static int dir_save(struct state *st, const struct snapshot *s, int64_t now, char *err,
                    size_t errlen)
{
    struct snapshot_doc doc = {s, now};

    return replace_file(dir_of(st), SNAPSHOT_NAME, emit_snapshot, &doc, err, errlen);
}

/* ---- the outbox journal ---- */

/* Opens the journal for appending, creating it on first use (a bridge that never queued has none).
 */
static int journal_open(struct dir *d)
{
    if (d->journal_fd >= 0)
        return 0;
    d->journal_fd =
        openat(d->dir_fd, JOURNAL_NAME, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (d->journal_fd < 0)
        return -errno;
    if (fsync(d->dir_fd) != 0)
        return -errno;
    return 0;
}

/*
 * Cuts the journal back to len bytes, durably when it can. A cut that fails is remembered and
 * retried before every later append (the header's invariant). 0 or -errno.
 */
static int journal_cut(struct dir *d, off_t len)
{
    if (ftruncate(d->journal_fd, len) != 0) {
        int r = -errno;
        d->journal_cut = len;
        return r;
    }
    d->journal_cut = -1;
    /* Not durable yet is fine: the lines left by a power cut are above the committed
     * generation, dropped at start-up; the next append's fdatasync makes the cut durable. */
    if (fdatasync(d->journal_fd) != 0)
        log_warn("state", "cannot sync %s/%s after cutting it back: %s", d->dir, JOURNAL_NAME,
                 strerror(errno));
    return 0;
}

static int append_durably(struct dir *d, const char *buf, size_t len)
{
    int r = journal_open(d);

    if (r)
        return r;
    if (d->journal_cut >= 0) {
        r = journal_cut(d, d->journal_cut);
        if (r)
            return r;
        log_info("state", "%s/%s: the lines of a commit that failed are gone now", d->dir,
                 JOURNAL_NAME);
    }
    /* A write cut short (ENOSPC) is taken back, so the next line starts on a line of its own. */
    off_t end = lseek(d->journal_fd, 0, SEEK_END);
    r = write_all(d->journal_fd, buf, len);
    if (r && end >= 0 && ftruncate(d->journal_fd, end) != 0)
        log_warn("state", "cannot take back a partial journal write: %s", strerror(errno));
    if (!r && fdatasync(d->journal_fd) != 0)
        r = -errno;
    return r;
}

/* The records' "add" lines, in order. */
struct adds {
    const struct journal_record *v;
    size_t n;
};

static int emit_adds(const void *ctx, state_put_fn put, void *put_ctx)
{
    const struct adds *a = ctx;
    int r = 0;

    for (size_t i = 0; i < a->n && !r; i++) {
        char *line = state_format_journal_add(&a->v[i]);
        r = line ? put(put_ctx, line, strlen(line)) : -ENOMEM;
        free(line);
    }
    return r;
}

/* Collects what put gets in a memory stream. */
static int mem_put(void *ctx, const char *p, size_t n)
{
    return fwrite(p, 1, n, ctx) == n ? 0 : -ENOMEM;
}

static int dir_journal_add(struct state *st, const struct journal_record *v, size_t n, char *err,
                           size_t errlen)
{
    struct dir *d = dir_of(st);
    struct adds a = {v, n};
    char *all = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&all, &len);
    int r = mem ? emit_adds(&a, mem_put, mem) : -ENOMEM;

    if (mem && fclose(mem) != 0 && !r)
        r = -ENOMEM;
    /* One write for the whole batch, then one fdatasync: the batch lands before the commit. */
    if (!r)
        r = append_durably(d, all, len);
    if (r)
        snprintf(err, errlen, "cannot append to %s/%s: %s", d->dir, JOURNAL_NAME, strerror(-r));
    free(all);
    return r;
}

static int dir_journal_clear(struct state *st)
{
    struct dir *d = dir_of(st);

    /* Safe without a rename: cut short or not, the file holds no pending entry. */
    if (d->journal_fd < 0)
        return 0;
    if (ftruncate(d->journal_fd, 0) != 0 || fdatasync(d->journal_fd) != 0)
        return -errno;
    d->journal_cut = -1;
    return 0;
}

static int journal_rewrite(struct dir *d, const struct journal_record *v, size_t n, char *err,
                           size_t errlen)
{
    struct adds a = {v, n};
    int r = replace_file(d, JOURNAL_NAME, emit_adds, &a, err, errlen);

    if (r)
        return r;
    if (d->journal_fd >= 0)
        close(d->journal_fd);
    d->journal_cut = -1; /* the new file holds just the pending entries */
    d->journal_fd = openat(d->dir_fd, JOURNAL_NAME, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (d->journal_fd < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot open %s/%s: %s", d->dir, JOURNAL_NAME, strerror(errno));
    }
    return r;
}

static int dir_journal_compact(struct state *st, const struct journal_record *v, size_t n)
{
    char err[256];

    return journal_rewrite(dir_of(st), v, n, err, sizeof(err));
}

static int dir_journal_load(struct state *st, uint64_t committed_gen, struct journal_record **out,
                            size_t *n, char *err, size_t errlen)
{
    struct dir *d = dir_of(st);
    struct state_journal_replay j;
    char *buf = NULL;
    size_t len = 0;
    int r = read_file(d, JOURNAL_NAME, SNAPSHOT_MAX, &buf, &len);

    *out = NULL;
    *n = 0;
    if (r == -ENOENT) {
        len = 0;
        r = 0;
    } else if (r) {
        snprintf(err, errlen, "cannot read %s/%s: %s", d->dir, JOURNAL_NAME, strerror(-r));
        return r;
    }
    r = state_parse_journal(buf, len, committed_gen, &j);
    free(buf);
    if (r) {
        snprintf(err, errlen, "out of memory reading %s/%s", d->dir, JOURNAL_NAME);
        return r;
    }
    if (j.bad)
        log_warn("state", "%s/%s: skipped %zu damaged line%s", d->dir, JOURNAL_NAME, j.bad,
                 j.bad == 1 ? "" : "s");
    if (j.uncommitted)
        log_info("state",
                 "dropped %zu queued message%s of a commit that did not finish (the "
                 "next poll finds the same changes again)",
                 j.uncommitted, j.uncommitted == 1 ? "" : "s");
    /* Rewrite only when there is something to drop: a run that changes nothing leaves the
     * state directory as it was. */
    if (j.done || j.bad || j.uncommitted || j.torn) {
        char why[256];
        r = journal_rewrite(d, j.v, j.n, why, sizeof(why));
        if (r) {
            snprintf(err, errlen, "cannot rewrite %s/%s: %s", d->dir, JOURNAL_NAME, strerror(-r));
            state_journal_records_free(j.v, j.n);
            return r;
        }
    }
    *out = j.v;
    *n = j.n;
    return 0;
}

static int dir_commit(struct state *st, const struct snapshot *s, const struct journal_record *v,
                      size_t n, int64_t now, char *err, size_t errlen)
{
    struct dir *d = dir_of(st);
    struct stat sb;
    int r = journal_open(d);

    if (!r && fstat(d->journal_fd, &sb) != 0)
        r = -errno;
    if (r) {
        snprintf(err, errlen, "cannot open %s/%s: %s", d->dir, JOURNAL_NAME, strerror(-r));
        return r;
    }
    /* Where this batch starts (after a pending cut, at the cut). */
    off_t mark = d->journal_cut >= 0 ? d->journal_cut : sb.st_size;
    r = dir_journal_add(st, v, n, err, errlen);
    if (!r)
        r = dir_save(st, s, now, err, errlen);
    if (!r)
        return 0;
    /* Cut the batch back out, whatever failed: its generation never committed. */
    int c = journal_cut(d, mark);
    if (c) {
        size_t l = strlen(err);
        snprintf(err + l, errlen - l,
                 "; cannot cut %s back either (%s): nothing more is queued until that works",
                 JOURNAL_NAME, strerror(-c));
    }
    return r;
}

static int dir_journal_done(struct state *st, const char *id, const char *result)
{
    char *line = state_format_journal_done(id, result);
    int r = line ? append_durably(dir_of(st), line, strlen(line)) : -ENOMEM;

    free(line);
    return r;
}

static int dir_deadletter(struct state *st, const struct journal_record *rec, const char *reason)
{
    struct dir *d = dir_of(st);
    char *line = state_format_deadletter(rec, reason, (int64_t)time(NULL));
    int fd = openat(d->dir_fd, DEADLETTER_NAME, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int r = fd < 0 ? -errno : -ENOMEM;

    if (fd >= 0 && line)
        r = write_all(fd, line, strlen(line));
    if (fd >= 0)
        close(fd);
    free(line);
    return r;
}

/* ---- sync positions ---- */

static int dir_sync_position_get(struct state *st, const char *key, struct state_sync_position *out,
                                 char *err, size_t errlen)
{
    struct dir *d = dir_of(st);
    char name[64], why[200];
    char *buf = NULL;
    size_t len = 0;
    int r;

    snprintf(name, sizeof(name), "%s%s", key, SYNC_SUFFIX);
    r = read_file(d, name, SYNC_POSITION_MAX, &buf, &len);
    if (r == -EFBIG) {
        snprintf(err, errlen, "%s/%s is damaged (over %ld bytes)", d->dir, name, SYNC_POSITION_MAX);
        return -EPROTO;
    }
    if (r == -ENOENT)
        return r;
    if (r) {
        snprintf(err, errlen, "cannot read %s/%s: %s", d->dir, name, strerror(-r));
        return r;
    }
    r = state_parse_sync_position(buf, len, out, why, sizeof(why));
    free(buf);
    if (r == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    else if (r)
        snprintf(err, errlen, "%s/%s is damaged (%s)", d->dir, name, why);
    return r;
}

struct text {
    const char *p;
};

static int emit_text(const void *ctx, state_put_fn put, void *put_ctx)
{
    const struct text *t = ctx;

    return put(put_ctx, t->p, strlen(t->p));
}

static int dir_sync_position_put(struct state *st, const char *key,
                                 const struct state_sync_position *p, char *err, size_t errlen)
{
    char name[64], *text = state_format_sync_position(p);
    struct text t = {text};
    int r;

    if (!text) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    snprintf(name, sizeof(name), "%s%s", key, SYNC_SUFFIX);
    r = replace_file(dir_of(st), name, emit_text, &t, err, errlen);
    free(text);
    return r;
}

/* ---- subscriptions: subscriptions/<key>.json, one per channel ---- */

static int dir_writable(struct dir *d, char *err, size_t errlen)
{
    if (!d->readonly)
        return 0;
    snprintf(err, errlen, "state directory %s was opened read-only", d->dir);
    return -EROFS;
}

/*
 * Opens subscriptions/ into *fd and its path into path. With create, makes it first when it is
 * not there (mode 0700, then an fsync of the state directory, so the new entry is durable
 * before any file in it is); without, -ENOENT says there is none. 0 or -errno (err).
 */
static int subs_open(struct dir *d, int create, int *fd, char *path, size_t pathlen, char *err,
                     size_t errlen)
{
    snprintf(path, pathlen, "%s/%s", d->dir, SUBS_DIR);
    *fd = openat(d->dir_fd, SUBS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0 && errno == ENOENT && create) {
        if (mkdirat(d->dir_fd, SUBS_DIR, 0700) != 0 && errno != EEXIST) {
            int r = -errno;
            snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
            return r;
        }
        if (fsync(d->dir_fd) != 0) {
            int r = -errno;
            snprintf(err, errlen, "cannot fsync %s: %s", d->dir, strerror(errno));
            return r;
        }
        *fd = openat(d->dir_fd, SUBS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (*fd < 0) {
        int r = -errno;
        if (r != -ENOENT || create)
            snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return r;
    }
    return 0;
}

static int dir_subscriptions_scan(struct state *st, state_record_fn fn, void *ctx, char *err,
                                  size_t errlen)
{
    struct dir *d = dir_of(st);
    char path[4096];
    int fd, r = subs_open(d, 0, &fd, path, sizeof(path), err, errlen);
    DIR *dp;

    if (r == -ENOENT)
        return 0; /* never subscribed */
    if (r)
        return r;
    dp = fdopendir(fd);
    if (!dp) {
        r = -errno;
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        close(fd);
        return r;
    }
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(dp);
        if (!e) {
            if (errno) {
                r = -errno;
                snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            }
            break;
        }
        /* Only records: their temporary files (".json.tmp") and anything else are not. */
        size_t n = strlen(e->d_name), sl = strlen(SUBS_SUFFIX);
        if (n <= sl || strcmp(e->d_name + n - sl, SUBS_SUFFIX) != 0)
            continue;
        char where[4096 + 256], key[256], *buf = NULL;
        size_t len = 0;
        snprintf(where, sizeof(where), "%s/%s", path, e->d_name);
        snprintf(key, sizeof(key), "%.*s", (int)(n - sl), e->d_name);
        int rr = read_file_at(dirfd(dp), e->d_name, STATE_SUBSCRIPTION_MAX, &buf, &len);
        if (rr == -ENOMEM) {
            r = rr;
            break;
        }
        r = fn(ctx, where, key, rr ? NULL : buf, rr ? 0 : len, rr);
        free(buf);
        if (r)
            break;
    }
    closedir(dp);
    return r;
}

static int dir_subscription_put(struct state *st, const char *key, const char *text, char *err,
                                size_t errlen)
{
    struct dir *d = dir_of(st);
    struct text t = {text};
    char path[4096], name[128];
    int fd, r = dir_writable(d, err, errlen);

    if (!r)
        r = subs_open(d, 1, &fd, path, sizeof(path), err, errlen);
    if (r)
        return r;
    snprintf(name, sizeof(name), "%s%s", key, SUBS_SUFFIX);
    r = replace_file_at(fd, path, name, 1, emit_text, &t, err, errlen);
    close(fd);
    return r;
}

static int dir_subscription_delete(struct state *st, const char *key, char *err, size_t errlen)
{
    struct dir *d = dir_of(st);
    char path[4096], name[128];
    int fd, r = dir_writable(d, err, errlen);

    if (!r)
        r = subs_open(d, 0, &fd, path, sizeof(path), err, errlen);
    if (r == -ENOENT)
        return 0; /* no subscriptions/: nothing to delete */
    if (r)
        return r;
    snprintf(name, sizeof(name), "%s%s", key, SUBS_SUFFIX);
    if (unlinkat(fd, name, 0) != 0 && errno != ENOENT) {
        r = -errno;
        snprintf(err, errlen, "cannot delete %s/%s: %s", path, name, strerror(errno));
    } else if (fsync(fd) != 0) {
        r = -errno;
        snprintf(err, errlen, "cannot fsync %s: %s", path, strerror(errno));
    }
    close(fd);
    return r;
}

static const struct state_backend_ops state_dir_ops = {
    .name = "directory",
    .open = dir_open,
    .close = dir_close,
    .check = dir_check,
    .load = dir_load,
    .save = dir_save,
    .commit = dir_commit,
    .journal_load = dir_journal_load,
    .journal_add = dir_journal_add,
    .journal_done = dir_journal_done,
    .journal_clear = dir_journal_clear,
    .journal_compact = dir_journal_compact,
    .deadletter = dir_deadletter,
    .sync_position_get = dir_sync_position_get,
    .sync_position_put = dir_sync_position_put,
    .subscriptions_scan = dir_subscriptions_scan,
    .subscription_put = dir_subscription_put,
    .subscription_delete = dir_subscription_delete,
};
