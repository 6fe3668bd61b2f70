/*
 * Unit tests for the state directory: lock, atomic snapshot round trip, corrupt files, the
 * bounded change history, the journal's records, the sync positions.
 */
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include <uv.h>

#include "conf.h"
#include "outbox.h"
#include "state.h"
#include "state_contract.h"
#include "state_format.h"
#include "test.h"

static char dir[TEST_PATH_MAX];

/*
 * Allocation failure on demand: the nth strdup() from now on fails (0: none does). The static
 * library's calls bind to this definition, so a _new() error path can be walked for real.
 */
static int strdup_fail_at;

char *strdup(const char *s)
{
    if (strdup_fail_at && --strdup_fail_at == 0) {
        errno = ENOMEM;
        return NULL;
    }
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static void write_file(const char *name, const char *text)
{
    char path[TEST_PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static int count_prefix(const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (;;) {
        struct dirent *e = readdir(d);
        if (!e)
            break;
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    }
    closedir(d);
    return n;
}

static void test_lock_is_exclusive(void)
{
    struct state *a = NULL, *b = NULL;
    char err[256];
    CHECK_INT(state_open(&a, dir, err, sizeof(err)), 0);
    CHECK_INT(state_open(&b, dir, err, sizeof(err)), -EBUSY);
    CHECK(strstr(err, "already in use") != NULL);
    state_close(a);
    CHECK_INT(state_open(&b, dir, err, sizeof(err)), 0);
    state_close(b);
}

static void test_round_trip(void)
{
    struct state *st = NULL;
    struct snapshot s = {.flavour = YOUTRACK_MODERN}, back;
    char err[256];
    struct project p1 = {.id = "0-10",
                         .short_name = "A\"B",
                         .name = "Имя \\ <x>",
                         .archived = TRI_YES,
                         .leader_login = "root",
                         .first_seen = 42,
                         .missing = 1};
    struct project p2 = {.id = "0-2", .archived = TRI_UNKNOWN, .held = 1, .missing = 3};

    s.youtrack = strdup("https://yt.example");
    CHECK_INT(project_list_add(&s.projects, &p1), 0);
    CHECK_INT(project_list_add(&s.projects, &p2), 0);
    project_list_finish(&s.projects);
    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    CHECK_INT(state_load(st, dir, &back, err, sizeof(err)), STATE_NONE);
    CHECK_INT(state_save(st, &s, 1000, err, sizeof(err)), 0);
    CHECK_INT(state_load(st, dir, &back, err, sizeof(err)), STATE_LOADED);
    CHECK_INT(back.projects.n, 2);
    CHECK_STR(back.youtrack, "https://yt.example");
    CHECK_INT(back.flavour, YOUTRACK_MODERN);
    CHECK_INT(back.saved_at, 1000);
    CHECK_STR(back.projects.v[0].id, "0-2");
    CHECK_INT(back.projects.v[0].held, 1);
    CHECK_INT(back.projects.v[0].missing, 3);
    CHECK_INT(back.projects.v[0].archived, TRI_UNKNOWN);
    CHECK(back.projects.v[0].name == NULL);
    CHECK_STR(back.projects.v[1].short_name, "A\"B");
    CHECK_STR(back.projects.v[1].name, "Имя \\ <x>");
    CHECK_STR(back.projects.v[1].leader_login, "root");
    CHECK_INT(back.projects.v[1].archived, TRI_YES);
    CHECK_INT(back.projects.v[1].first_seen, 42);
    CHECK_INT(back.projects.v[1].missing, 1);
    CHECK_INT(count_prefix("snapshot.json.tmp"), 0);
    char path[TEST_PATH_MAX + 64];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/snapshot.json", dir);
    CHECK_INT(stat(path, &sb), 0);
    CHECK_INT(sb.st_mode & 077, 0);
    snapshot_fini(&back);
    snapshot_fini(&s);
    state_close(st);
}

static void test_corrupt_snapshot_is_moved_aside(void)
{
    struct state *st = NULL;
    struct snapshot back;
    char err[512];

    write_file("snapshot.json", "{\"format\":1,\"projects\":[{\"id\":\"0-1\"},");
    /* Read-only (dry run): reported, but left where it is. */
    CHECK_INT(state_load(NULL, dir, &back, err, sizeof(err)), STATE_CORRUPT);
    CHECK_INT(count_prefix("snapshot.json.corrupt-"), 0);
    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    CHECK_INT(state_load(st, dir, &back, err, sizeof(err)), STATE_CORRUPT);
    CHECK(strstr(err, "corrupt") != NULL);
    CHECK_INT(count_prefix("snapshot.json.corrupt-"), 1);
    CHECK_INT(state_load(st, dir, &back, err, sizeof(err)), STATE_NONE);
    state_close(st);
}

static void test_newer_format_stops_the_bridge(void)
{
    struct state *st = NULL;
    struct snapshot back;
    char err[512];
    write_file("snapshot.json", "{\"format\":9,\"projects\":[]}");
    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    CHECK_INT(state_load(st, dir, &back, err, sizeof(err)), -EPROTONOSUPPORT);
    CHECK(strstr(err, "format 9") != NULL);
    state_close(st);
}

/* ---- the change history ---- */

static void test_history_round_trip(void)
{
    struct state *st = NULL;
    struct snapshot s = {.flavour = YOUTRACK_MODERN}, back;
    char err[256];
    struct project made = {.id = "0-1", .short_name = "NEW", .name = "Новый \"проект\""};
    struct project was = {.id = "0-2", .short_name = "OLD\\K", .name = "Ancien \\ nom\t\"q\""};
    struct project is = {
        .id = "0-2", .short_name = "NK", .name = "Nouveau nom \xe2\x86\x92 \xf0\x9f\x9a\x80"};
    struct project arch = {.id = "0-3", .short_name = "AR", .name = "Archive me"};
    struct project gone = {.id = "0-4", .short_name = "GONE", .name = "Gone \"for\" good"};
    struct project bare = {.id = "0-5"}; /* the server never said its names */
    const struct change ch[] = {
        {.kind = CHANGE_CREATED, .after = &made},
        {.kind = CHANGE_RENAMED, .before = &was, .after = &is},
        {.kind = CHANGE_ARCHIVED, .before = &arch, .after = &arch},
        {.kind = CHANGE_UNARCHIVED, .before = &bare, .after = &bare},
        {.kind = CHANGE_REMOVED, .before = &gone},
    };

    s.youtrack = strdup("https://yt.example");
    CHECK_INT(snapshot_history_add(&s, ch, 1, 100), 0);
    CHECK_INT(snapshot_history_add(&s, ch + 1, 4, 200), 0);
    CHECK_INT(snapshot_history_add(&s, ch, 0, 300), 0); /* nothing: no entry */
    CHECK_INT(s.n_history, 5);
    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    CHECK_INT(state_save(st, &s, 1000, err, sizeof(err)), 0);
    CHECK_INT(state_load(st, dir, &back, err, sizeof(err)), STATE_LOADED);
    CHECK_INT(back.n_history, 5);
    if (back.n_history == 5) {
        const struct history_entry *h = back.history;
        CHECK_INT(h[0].at, 100);
        CHECK_INT(h[0].kind, CHANGE_CREATED);
        CHECK_STR(h[0].id, "0-1");
        CHECK_STR(h[0].short_name, "NEW");
        CHECK_STR(h[0].name, "Новый \"проект\"");
        CHECK(!h[0].old_short_name && !h[0].old_name);
        CHECK_INT(h[1].at, 200);
        CHECK_INT(h[1].kind, CHANGE_RENAMED);
        CHECK_STR(h[1].id, "0-2");
        CHECK_STR(h[1].short_name, "NK");
        CHECK_STR(h[1].name, "Nouveau nom \xe2\x86\x92 \xf0\x9f\x9a\x80");
        CHECK_STR(h[1].old_short_name, "OLD\\K");
        CHECK_STR(h[1].old_name, "Ancien \\ nom\t\"q\"");
        CHECK_INT(h[2].kind, CHANGE_ARCHIVED);
        CHECK_STR(h[2].name, "Archive me");
        CHECK(!h[2].old_short_name && !h[2].old_name);
        CHECK_INT(h[3].kind, CHANGE_UNARCHIVED);
        CHECK_STR(h[3].id, "0-5");
        CHECK(!h[3].short_name && !h[3].name);
        /* A removal keeps the names the project had. */
        CHECK_INT(h[4].kind, CHANGE_REMOVED);
        CHECK_STR(h[4].id, "0-4");
        CHECK_STR(h[4].short_name, "GONE");
        CHECK_STR(h[4].name, "Gone \"for\" good");
        CHECK_INT(h[4].at, 200);
    }
    /* The file itself: kinds by name, old names only for the rename. */
    char path[TEST_PATH_MAX + 64], text[8192];
    snprintf(path, sizeof(path), "%s/snapshot.json", dir);
    FILE *f = fopen(path, "r");
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[len] = '\0';
    CHECK(strstr(text, "\"history\":[") != NULL);
    CHECK(strstr(text, "\"kind\":\"unarchived\"") != NULL);
    CHECK(strstr(text, "\"oldShortName\":\"OLD\\\\K\"") != NULL);
    CHECK(strstr(strstr(text, "oldName") + 1, "oldName") == NULL);
    snapshot_fini(&back);

    /* A copy is deep: the original can go. */
    struct snapshot c = {0};
    CHECK_INT(snapshot_history_copy(&c, &s), 0);
    snapshot_fini(&s);
    CHECK_INT(c.n_history, 5);
    CHECK_STR(c.history[1].old_name, "Ancien \\ nom\t\"q\"");
    CHECK_INT(snapshot_history_copy(&c, &s), 0); /* s is empty now */
    CHECK_INT(c.n_history, 0);
    CHECK(c.history == NULL);
    snapshot_fini(&c);
    state_close(st);
}

/* Strings are bounded as a project's are: cut on a UTF-8 boundary, and at an embedded NUL. */
static void test_history_strings_are_bounded(void)
{
    struct snapshot s = {0}, back;
    char name[3 * 700 + 1], err[256];
    for (size_t i = 0; i < 700; i++)
        memcpy(name + 3 * i, "\xe2\x82\xac", 3); /* a euro sign */
    name[sizeof(name) - 1] = '\0';
    struct project p = {.id = "0-1", .name = name};
    struct change c = {.kind = CHANGE_CREATED, .after = &p};

    CHECK_INT(snapshot_history_add(&s, &c, 1, 1), 0);
    CHECK_INT(strlen(s.history[0].name), PROJECT_MAX_NAME_LEN / 3 * 3);
    snapshot_fini(&s);

    const char *doc = "{\"format\":1,\"projects\":[],\"history\":[{\"at\":1,\"kind\":"
                      "\"created\",\"id\":\"0-1\",\"name\":\"cut\\u0000here\"}]}";
    CHECK_INT(state_parse_snapshot(doc, strlen(doc), &back, err, sizeof(err)), 0);
    CHECK_INT(back.n_history, 1);
    CHECK_STR(back.history[0].name, "cut");
    CHECK(back.history[0].short_name == NULL);
    snapshot_fini(&back);
}

static void check_order(const struct snapshot *s, int first)
{
    char want[16];
    CHECK_INT(s->n_history, STATE_HISTORY_MAX);
    for (size_t i = 0; i < s->n_history; i++) {
        snprintf(want, sizeof(want), "P%03d", first + (int)i);
        if (strcmp(s->history[i].name, want) != 0) {
            CHECK_STR(s->history[i].name, want);
            break;
        }
    }
}

static void test_history_bound(void)
{
    static char names[250][8];
    static struct project p[250];
    static struct change c[250];
    struct snapshot one = {0}, many = {0};

    for (int i = 0; i < 250; i++) {
        snprintf(names[i], sizeof(names[i]), "P%03d", i);
        p[i] = (struct project){.id = "0-1", .name = names[i]};
        c[i] = (struct change){.kind = CHANGE_CREATED, .after = &p[i]};
    }
    /* One change per poll: the oldest go first. */
    for (int i = 0; i < 250; i++)
        CHECK_INT(snapshot_history_add(&one, &c[i], 1, i), 0);
    check_order(&one, 50);
    CHECK_INT(one.history[0].at, 50);
    CHECK_INT(one.history[STATE_HISTORY_MAX - 1].at, 249);
    /* One poll with more changes than the bound keeps its newest; a later one pushes on. */
    CHECK_INT(snapshot_history_add(&many, c, 250, 7), 0);
    check_order(&many, 50);
    CHECK_INT(snapshot_history_add(&many, c, 10, 8), 0);
    CHECK_INT(many.n_history, STATE_HISTORY_MAX);
    CHECK_STR(many.history[0].name, "P060");
    CHECK_STR(many.history[STATE_HISTORY_MAX - 11].name, "P249");
    CHECK_STR(many.history[STATE_HISTORY_MAX - 10].name, "P000");
    CHECK_INT(many.history[STATE_HISTORY_MAX - 1].at, 8);
    snapshot_fini(&one);
    snapshot_fini(&many);
}

static void test_history_absent(void)
{
    struct snapshot back;
    char err[256];
    const char *doc = "{\"format\":1,\"projects\":[{\"id\":\"0-1\",\"first_seen\":3}]}";

    CHECK_INT(state_parse_snapshot(doc, strlen(doc), &back, err, sizeof(err)), 0);
    CHECK_INT(back.projects.n, 1);
    CHECK_INT(back.n_history, 0);
    CHECK(back.history == NULL);
    snapshot_fini(&back);
}

/* Builds {"format":1,"projects":[],"history":[<n valid entries>]}; caller frees. */
static char *history_doc(int n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fputs("{\"format\":1,\"projects\":[],\"history\":[", f);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s{\"at\":%d,\"kind\":\"created\",\"id\":\"0-%d\",\"name\":\"P%03d\"}",
                i ? "," : "", i, i, i);
    fputs("]}", f);
    fclose(f);
    return buf;
}

static void test_history_malformed(void)
{
    struct snapshot back;
    char err[256], longid[400];
    char doc[2048];
    /* Auxiliary: a wrong type is ignored, a bad element dropped, the rest kept. */
    static const char *const lenient[] = {
        "\"history\":\"x\"",
        "\"history\":{\"at\":1}",
        "\"history\":null",
        "\"history\":[]",
        "\"history\":[1,null,[],\"s\",{}]",
        "\"history\":[{\"at\":1,\"kind\":\"created\"}]",
        "\"history\":[{\"at\":1,\"kind\":\"created\",\"id\":\"\"}]",
        "\"history\":[{\"at\":1,\"kind\":\"created\",\"id\":null}]",
        "\"history\":[{\"at\":1,\"kind\":\"created\",\"id\":7}]",
        "\"history\":[{\"at\":1,\"kind\":\"exploded\",\"id\":\"0-1\"}]",
        "\"history\":[{\"at\":1,\"kind\":3,\"id\":\"0-1\"}]",
        "\"history\":[{\"kind\":\"created\",\"id\":\"0-1\"}]",
        "\"history\":[{\"at\":\"1\",\"kind\":\"created\",\"id\":\"0-1\"}]",
        "\"history\":[{\"at\":1,\"kind\":\"created\",\"id\":\"0-1\",\"name\":[\"x\"]}]",
        "\"history\":[{\"at\":1,\"kind\":\"renamed\",\"id\":\"0-1\",\"oldName\":{}}]",
    };
    for (size_t i = 0; i < sizeof(lenient) / sizeof(lenient[0]); i++) {
        snprintf(doc, sizeof(doc), "{\"format\":1,\"projects\":[{\"id\":\"0-1\"}],%s}", lenient[i]);
        int r = state_parse_snapshot(doc, strlen(doc), &back, err, sizeof(err));
        CHECK_INT(r, 0);
        if (r) {
            fprintf(stderr, "  in %s: %s\n", lenient[i], err);
            continue;
        }
        CHECK_INT(back.projects.n, 1);
        CHECK_INT(back.n_history, 0);
        snapshot_fini(&back);
    }
    /* Good entries around bad ones survive, in order; old names only for renames. */
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    snprintf(doc, sizeof(doc),
             "{\"format\":1,\"history\":[{\"at\":1,\"kind\":\"archived\",\"id\":\"0-1\","
             "\"oldName\":\"stray\",\"extra\":{\"a\":[1]}},"
             "{\"at\":2,\"kind\":\"created\",\"id\":\"%s\"},7,"
             "{\"at\":-3,\"kind\":\"renamed\",\"id\":\"0-2\",\"name\":null,"
             "\"oldShortName\":\"O\",\"oldName\":null}],\"projects\":[]}",
             longid);
    CHECK_INT(state_parse_snapshot(doc, strlen(doc), &back, err, sizeof(err)), 0);
    CHECK_INT(back.n_history, 2);
    if (back.n_history == 2) {
        CHECK_STR(back.history[0].id, "0-1");
        CHECK(back.history[0].old_name == NULL);
        CHECK_INT(back.history[1].at, -3);
        CHECK_STR(back.history[1].old_short_name, "O");
        CHECK(back.history[1].name == NULL && back.history[1].old_name == NULL);
    }
    snapshot_fini(&back);
    /* A second "history" member replaces the first. */
    const char *twice = "{\"format\":1,\"history\":[{\"at\":1,\"kind\":\"created\",\"id\":"
                        "\"0-1\"}],\"history\":[{\"at\":2,\"kind\":\"removed\",\"id\":\"0-2\"}]}";
    CHECK_INT(state_parse_snapshot(twice, strlen(twice), &back, err, sizeof(err)), 0);
    CHECK_INT(back.n_history, 1);
    if (back.n_history == 1)
        CHECK_STR(back.history[0].id, "0-2");
    snapshot_fini(&back);
    /* Not JSON, or a number "at" cannot hold (as for "saved_at"): the file is corrupt. */
    static const char *const corrupt[] = {
        "{\"format\":1,\"history\":[{\"at\":1,",
        "{\"format\":1,\"history\":[{\"at\":1,\"kind\":\"created\",\"id\":\"0-1\"},]}",
        "{\"format\":1,\"history\":[{\"at\":1.5,\"kind\":\"created\",\"id\":\"0-1\"}]}",
        "{\"format\":1,\"history\":[{\"at\":99999999999999999999,\"kind\":\"created\"}]}",
        "{\"format\":1,\"history\":[{\"at\":1,\"kind\":\"created\",\"id\":\"0-1\"}] x",
        "{\"history\":[{\"at\":1,\"kind\":\"created\",\"id\":\"0-1\"}]}", /* no format */
    };
    for (size_t i = 0; i < sizeof(corrupt) / sizeof(corrupt[0]); i++) {
        int r = state_parse_snapshot(corrupt[i], strlen(corrupt[i]), &back, err, sizeof(err));
        CHECK_INT(r, -EPROTO);
        if (!r)
            snapshot_fini(&back);
    }

    /* Over the bound: loads, keeping the newest, oldest first. */
    char *big = history_doc(1000);
    CHECK_INT(state_parse_snapshot(big, strlen(big), &back, err, sizeof(err)), 0);
    check_order(&back, 800);
    CHECK_INT(back.history[0].at, 800);
    snapshot_fini(&back);
    free(big);
    big = history_doc(250);
    write_file("snapshot.json", big);
    free(big);
    CHECK_INT(state_load(NULL, dir, &back, err, sizeof(err)), STATE_LOADED);
    check_order(&back, 50);
    snapshot_fini(&back);
    big = history_doc(7);
    CHECK_INT(state_parse_snapshot(big, strlen(big), &back, err, sizeof(err)), 0);
    CHECK_INT(back.n_history, 7);
    CHECK_STR(back.history[6].name, "P006");
    snapshot_fini(&back);
    free(big);
}

static struct journal_record rec(const char *id, const char *sink, const char *event,
                                 const char *body, int64_t created, uint64_t gen)
{
    return (struct journal_record){(char *)id,   (char *)sink, (char *)event,
                                   (char *)body, created,      gen};
}

static void test_journal(void)
{
    struct state *st = NULL;
    struct journal_record v[3], *got = NULL;
    size_t n = 0;
    char err[256], path[TEST_PATH_MAX + 64];

    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    v[0] = rec("e-1-0", "team", "project.created", "{\"a\":\"\u00e9\"}", 10, 1);
    v[1] = rec("e-1-1", "room", "project.removed", "{}", 10, 1);
    v[2] = rec("e-2-0", "team", "digest", "{}", 11, 2);
    CHECK_INT(state_journal_add(st, v, 2, err, sizeof(err)), 0);
    CHECK_INT(state_journal_done(st, "e-1-0", "delivered"), 0);
    /* Generation 2 was written but its snapshot never committed (a crash in between). */
    CHECK_INT(state_journal_add(st, v + 2, 1, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/outbox.jsonl", dir);
    FILE *f = fopen(path, "a"); /* and a torn last line */
    fputs("{\"op\":\"done\",\"id\":\"e-1-", f);
    fclose(f);
    CHECK_INT(state_journal_load(st, 1, &got, &n, err, sizeof(err)), 0);
    CHECK_INT(n, 1);
    CHECK_STR(got[0].id, "e-1-1");
    CHECK_STR(got[0].sink, "room");
    CHECK_STR(got[0].event, "project.removed");
    CHECK_STR(got[0].body, "{}");
    CHECK_INT(got[0].gen, 1);
    CHECK_INT(got[0].created, 10);
    state_journal_records_free(got, n);
    /* Loading rewrote the journal to just the pending entry. */
    CHECK_INT(state_journal_load(st, 5, &got, &n, err, sizeof(err)), 0);
    CHECK_INT(n, 1);
    CHECK_STR(got[0].id, "e-1-1");
    state_journal_records_free(got, n);
    CHECK_INT(state_journal_done(st, "e-1-1", "dead"), 0);
    CHECK_INT(state_journal_clear(st), 0);
    CHECK_INT(state_journal_load(st, 5, &got, &n, err, sizeof(err)), 0);
    CHECK_INT(n, 0);
    state_journal_records_free(got, n);
    state_close(st);
}

/* What a damaged line is: the same rules as jansson's reading of it, line by line. */
static void test_journal_damaged_lines(void)
{
    static const char text[] =
        "{\"op\":\"add\",\"gen\":1,\"id\":\"a\",\"sink\":\"s\",\"event\":\"e\",\"created\":1,"
        "\"body\":\"ok\"}\n"
        "{\"op\":\"add\",\"gen\":1.0,\"id\":\"b\",\"sink\":\"s\",\"event\":\"e\",\"created\":1,"
        "\"body\":\"real gen\"}\n"
        "{\"op\":\"add\",\"gen\":1,\"id\":\"c\",\"sink\":\"s\",\"event\":\"e\",\"created\":1,"
        "\"body\":\"nul \\u0000\"}\n"
        "{\"op\":\"add\",\"gen\":1,\"id\":\"d\",\"sink\":\"s\",\"event\":\"e\",\"created\":1}\n"
        "{\"op\":\"add\",\"gen\":1,\"id\":\"e\",\"sink\":\"s\",\"event\":\"e\",\"created\":1,"
        "\"body\":\"x\"} trailing\n"
        "{\"op\":\"add\",\"gen\":99999999999999999999,\"id\":\"f\",\"sink\":\"s\",\"event\":\"e\","
        "\"created\":1,\"body\":\"x\"}\n"
        "[\"op\",\"add\"]\n"
        "\n"
        "{\"op\":\"undo\",\"id\":\"a\"}\n"
        "{\"op\":7,\"id\":\"a\"}\n"
        "{\"op\":\"add\",\"gen\":1,\"id\":\"g\",\"sink\":\"s\",\"event\":\"e\",\"created\":1,"
        "\"body\":\"first\",\"body\":\"last wins\",\"extra\":{\"x\":[1,2]}}\n"
        "{\"op\":\"add\",\"gen\":2,\"id\":\"h\",\"sink\":\"s\",\"event\":\"e\",\"created\":1,"
        "\"body\":\"uncommitted\"}\n"
        "{\"op\":\"done\",\"id\":\"zz\",\"result\":\"dead\"}\n"
        "{\"op\":\"add\",\"gen\":1,\"id\":\"i\",\"sink\":\"s\",\"event\":\"e\",\"created\":1,\"bo";
    struct state_journal_replay j;

    CHECK_INT(state_parse_journal(text, strlen(text), 1, &j), 0);
    CHECK_INT(j.n, 2);
    CHECK_STR(j.n > 0 ? j.v[0].id : NULL, "a");
    CHECK_STR(j.n > 1 ? j.v[1].body : NULL, "last wins");
    CHECK_INT(j.bad, 9);
    CHECK_INT(j.uncommitted, 1);
    CHECK_INT(j.done, 1);
    CHECK_INT(j.torn, 1);
    state_journal_records_free(j.v, j.n);
}

/* The outbox's side of the journal: entries -> records -> the journal -> entries. */
static void test_outbox_entries_through_the_journal(void)
{
    struct state *st = NULL;
    struct outbox_entry *v[2], *head = NULL;
    struct journal_record *recs = NULL;
    char err[256];

    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    CHECK_INT(state_journal_clear(st), 0);
    v[0] = outbox_entry_new("o-3-0", "team", "project.created", "{\"a\":1}", 20, 3);
    v[1] = outbox_entry_new("o-3-1", "room", "project.archived", "text", 21, 3);
    CHECK_INT(outbox_records(v, 2, &recs), 0);
    CHECK(recs[1].body == v[1]->body); /* a view: nothing copied */
    CHECK_INT(state_journal_add(st, recs, 2, err, sizeof(err)), 0);
    free(recs);
    CHECK_INT(outbox_journal_load(st, 3, &head, err, sizeof(err)), 0);
    CHECK(head && head->next && !head->next->next);
    for (int i = 0; i < 2 && head; i++) {
        struct outbox_entry *e = head;
        CHECK_STR(e->id, v[i]->id);
        CHECK_STR(e->sink, v[i]->sink);
        CHECK_STR(e->event, v[i]->event);
        CHECK_STR(e->body, v[i]->body);
        CHECK_INT(e->created, v[i]->created);
        CHECK_INT(e->gen, v[i]->gen);
        CHECK(!e->transient);
        head = e->next;
        outbox_entry_free(e);
    }
    outbox_entry_free(v[0]);
    outbox_entry_free(v[1]);
    CHECK_INT(state_journal_clear(st), 0);
    state_close(st);
}

/* A journal write cut short (here by RLIMIT_FSIZE, as ENOSPC would) leaves no torn line. */
static void test_journal_short_write(void)
{
    struct state *st = NULL;
    struct journal_record v[2], *got = NULL;
    size_t n = 0;
    char err[256], path[TEST_PATH_MAX + 64], big[4096];
    struct rlimit old, lim;
    struct stat sb;

    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    CHECK_INT(state_journal_clear(st), 0);
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    v[0] = rec("s-1-0", "team", "project.created", "{}", 10, 1);
    v[1] = rec("s-1-1", "team", "project.created", big, 10, 1);
    CHECK_INT(state_journal_add(st, v, 1, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/outbox.jsonl", dir);
    CHECK_INT(stat(path, &sb), 0);
    off_t before = sb.st_size;

    signal(SIGXFSZ, SIG_IGN);
    CHECK_INT(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)before + 100; /* room for part of the next line only */
    CHECK_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
    CHECK(state_journal_add(st, v + 1, 1, err, sizeof(err)) < 0);
    CHECK(strstr(err, "outbox.jsonl") != NULL);
    CHECK_INT(setrlimit(RLIMIT_FSIZE, &old), 0);
    CHECK_INT(stat(path, &sb), 0);
    CHECK_INT((long long)sb.st_size, (long long)before);

    /* The journal goes on cleanly once there is room again. */
    CHECK_INT(state_journal_add(st, v + 1, 1, err, sizeof(err)), 0);
    CHECK_INT(state_journal_load(st, 1, &got, &n, err, sizeof(err)), 0);
    CHECK_INT(n, 2);
    CHECK_STR(n > 0 ? got[0].id : NULL, "s-1-0");
    CHECK_STR(n > 1 ? got[1].id : NULL, "s-1-1");
    state_journal_records_free(got, n);
    state_close(st);
}

/* ---- sync positions ---- */

static void test_sync_position_round_trip(void)
{
    struct state *st = NULL;
    struct state_sync_position p = {"https://hs.example", "@bot:hs.example", "s72_\"x\"_\xc3\xa9"};
    struct state_sync_position got;
    char err[256], path[TEST_PATH_MAX + 64];
    struct stat sb;

    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    CHECK_INT(state_sync_position_get(st, "matrix", &got, err, sizeof(err)), -ENOENT);
    CHECK(got.server == NULL);
    CHECK_INT(state_sync_position_put(st, "matrix", &p, err, sizeof(err)), 0);
    /* The file existing deployments have, with the members they have. */
    snprintf(path, sizeof(path), "%s/matrix-sync.json", dir);
    CHECK_INT(stat(path, &sb), 0);
    CHECK_INT(sb.st_mode & 0777, 0600);
    CHECK_INT(count_prefix("matrix-sync.json.tmp"), 0);
    FILE *f = fopen(path, "r");
    char text[256] = "";
    CHECK(f && fgets(text, sizeof(text), f));
    if (f)
        fclose(f);
    CHECK_STR(text, "{\"homeserver\":\"https://hs.example\",\"user_id\":\"@bot:hs.example\","
                    "\"next_batch\":\"s72_\\\"x\\\"_\xc3\xa9\"}\n");
    CHECK_INT(state_sync_position_get(st, "matrix", &got, err, sizeof(err)), 0);
    CHECK_STR(got.server, p.server);
    CHECK_STR(got.user, p.user);
    CHECK_STR(got.position, p.position);
    state_sync_position_fini(&got);

    /* Another key is another position. */
    CHECK_INT(state_sync_position_get(st, "other", &got, err, sizeof(err)), -ENOENT);
    CHECK_INT(state_sync_position_get(st, "../x", &got, err, sizeof(err)), -EINVAL);
    CHECK_INT(state_sync_position_put(st, "Matrix", &p, err, sizeof(err)), -EINVAL);

    /* Written by hand (as the tests and operators do): spaces, other members, any order. */
    write_file("matrix-sync.json", "{ \"next_batch\": \"s9\", \"extra\": [1, {\"a\": null}],\n"
                                   "  \"user_id\": \"@bot:hs\", \"homeserver\": \"http://h\" }\n");
    CHECK_INT(state_sync_position_get(st, "matrix", &got, err, sizeof(err)), 0);
    CHECK_STR(got.position, "s9");
    CHECK_STR(got.server, "http://h");
    state_sync_position_fini(&got);
    state_close(st);
}

static void test_sync_position_damaged(void)
{
    static const char *const damaged[] = {
        "",
        "{\"homeserver\":\"h\",\"user_id\":\"u\",\"next_batch\":\"s",
        "{\"homeserver\":\"h\",\"user_id\":\"u\"}",
        "{\"homeserver\":\"h\",\"user_id\":\"u\",\"next_batch\":5}",
        "{\"homeserver\":\"h\",\"user_id\":\"u\\u0000v\",\"next_batch\":\"s\"}",
        "{\"homeserver\":\"h\",\"user_id\":\"u\",\"next_batch\":\"s\"} {}",
        "[\"h\",\"u\",\"s\"]",
        "not json",
    };
    struct state *st = NULL;
    struct state_sync_position got;
    char err[256];

    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    for (size_t i = 0; i < sizeof(damaged) / sizeof(damaged[0]); i++) {
        write_file("matrix-sync.json", damaged[i]);
        err[0] = '\0';
        CHECK_INT(state_sync_position_get(st, "matrix", &got, err, sizeof(err)), -EPROTO);
        CHECK(strstr(err, "matrix-sync.json is damaged") != NULL);
        CHECK(got.server == NULL && got.user == NULL && got.position == NULL);
    }
    /* Over the 64 KiB bound: damaged, not read. */
    static const char doc[] = "{\"homeserver\":\"h\",\"user_id\":\"u\",\"next_batch\":\"s\"}";
    char *big = malloc(70000);
    memset(big, ' ', 69999);
    big[69999] = '\0';
    memcpy(big, doc, strlen(doc));
    write_file("matrix-sync.json", big);
    free(big);
    CHECK_INT(state_sync_position_get(st, "matrix", &got, err, sizeof(err)), -EPROTO);
    /* A put replaces a damaged one whole. */
    struct state_sync_position p = {"h", "u", "s1"};
    CHECK_INT(state_sync_position_put(st, "matrix", &p, err, sizeof(err)), 0);
    CHECK_INT(state_sync_position_get(st, "matrix", &got, err, sizeof(err)), 0);
    CHECK_STR(got.position, "s1");
    state_sync_position_fini(&got);
    state_close(st);
}

/* A position that cannot be written says so and leaves the last one in place. */
static void test_sync_position_put_failure(void)
{
    struct state *st = NULL;
    struct state_sync_position p = {"h", "u", "s2"}, got;
    struct rlimit old, lim;
    char err[256];

    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    p.position = "s1";
    CHECK_INT(state_sync_position_put(st, "matrix", &p, err, sizeof(err)), 0);
    p.position = "s2";
    signal(SIGXFSZ, SIG_IGN);
    CHECK_INT(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 10; /* shorter than the document */
    CHECK_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
    CHECK_INT(state_sync_position_put(st, "matrix", &p, err, sizeof(err)), -EFBIG);
    CHECK_INT(setrlimit(RLIMIT_FSIZE, &old), 0);
    CHECK(strstr(err, "matrix-sync.json.tmp") != NULL);
    CHECK(strstr(err, strerror(EFBIG)) != NULL);
    CHECK_INT(count_prefix("matrix-sync.json.tmp"), 0);
    CHECK_INT(state_sync_position_get(st, "matrix", &got, err, sizeof(err)), 0);
    CHECK_STR(got.position, "s1");
    state_sync_position_fini(&got);
    state_close(st);
}

/* A snapshot over the 64 KiB write buffer, so the failing write happens inside jansson's dump. */
static void big_snapshot(struct snapshot *s)
{
    memset(s, 0, sizeof(*s));
    s->flavour = YOUTRACK_MODERN;
    s->youtrack = strdup("https://yt.example");
    for (int i = 0; i < 1000; i++) {
        char id[32], name[128];
        snprintf(id, sizeof(id), "0-%d", i);
        snprintf(name, sizeof(name), "Project number %d with a name long enough to matter", i);
        struct project p = {.id = id, .short_name = id, .name = name, .archived = TRI_NO};
        CHECK_INT(project_list_add(&s->projects, &p), 0);
    }
    project_list_finish(&s->projects);
}

/* A failed save says why (issue "Hostile input and faults": the errno was lost in the dump). */
static void test_save_failure_names_the_errno(void)
{
    struct state *st = NULL;
    struct snapshot s;
    struct rlimit old, lim;
    char err[256];

    big_snapshot(&s);
    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    signal(SIGXFSZ, SIG_IGN);
    CHECK_INT(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 70000; /* past the first 64 KiB flush, short of the whole file */
    CHECK_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
    CHECK_INT(state_save(st, &s, 1000, err, sizeof(err)), -EFBIG);
    CHECK_INT(setrlimit(RLIMIT_FSIZE, &old), 0);
    CHECK(strstr(err, strerror(EFBIG)) != NULL);
    CHECK(strstr(err, "snapshot.json") != NULL);
    CHECK_INT(count_prefix("snapshot.json.tmp"), 0);
    snapshot_fini(&s);
    state_close(st);
}

/* outbox_new() failing half-way closes the timers it started (libuv owns them until then). */
static void test_outbox_new_failure_closes_its_timers(void)
{
    struct conf_sink sinks[3] = {
        {.name = "a", .type = CONF_SINK_MATRIX, .homeserver = "http://hs", .room = "!a:hs"},
        {.name = "b", .type = CONF_SINK_MATRIX, .homeserver = "http://hs", .room = "!b:hs"},
        {.name = "c", .type = CONF_SINK_MATRIX, .homeserver = "http://hs", .room = "!c:hs"},
    };
    struct conf conf = {.sinks = sinks, .n_sinks = 3};
    struct outbox *ob = NULL;
    uv_loop_t loop;

    CHECK_INT(uv_loop_init(&loop), 0);
    strdup_fail_at = 3; /* the third sink's room id */
    CHECK_INT(outbox_new(&ob, &loop, NULL, NULL, &conf), -ENOMEM);
    strdup_fail_at = 0;
    CHECK(ob == NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&loop), 0);
}

/* ---- subscription records (state_format.h) ---- */

static void test_subscription_record_round_trip(void)
{
    char *pats[] = {"WEB*", "!WEB-OLD", "\xc3\xa9t\xc3\xa9*"};
    struct subscription s = {.platform = SUB_MATRIX,
                             .channel = "!r\xc3\xa9:hs.example",
                             .patterns = pats,
                             .n_patterns = 3,
                             .events = (1u << CHANGE_CREATED) | (1u << CHANGE_REMOVED),
                             .by = "@ann:hs.example",
                             .created = 1700000000,
                             .changed = 1700000100,
                             .suspended = "HTTP 403: \"not in room\""};
    struct subscription back;
    char why[256], key[STATE_SUBSCRIPTION_KEY];
    char *text = state_format_subscription(&s);

    CHECK_STR(text, "{\"format\":1,\"platform\":\"matrix\",\"channel\":\"!r\xc3\xa9:hs.example\","
                    "\"patterns\":[\"WEB*\",\"!WEB-OLD\",\"\xc3\xa9t\xc3\xa9*\"],"
                    "\"events\":[\"created\",\"removed\"],\"by\":\"@ann:hs.example\","
                    "\"created\":1700000000,\"changed\":1700000100,"
                    "\"suspended\":\"HTTP 403: \\\"not in room\\\"\"}\n");
    CHECK_INT(state_parse_subscription(text, strlen(text), &back, why, sizeof(why)), 0);
    CHECK_INT(back.platform, SUB_MATRIX);
    CHECK_STR(back.channel, s.channel);
    CHECK_INT(back.n_patterns, 3);
    for (size_t i = 0; i < 3 && i < back.n_patterns; i++)
        CHECK_STR(back.patterns[i], pats[i]);
    CHECK_INT(back.events, s.events);
    CHECK_STR(back.by, s.by);
    CHECK_INT(back.created, s.created);
    CHECK_INT(back.changed, s.changed);
    CHECK_STR(back.suspended, s.suspended);
    subscription_fini(&back);
    free(text);

    /* Not suspended: no member; written by hand: any order, other members, null suspension. */
    s.suspended = NULL;
    text = state_format_subscription(&s);
    CHECK(text && strstr(text, "suspended") == NULL);
    free(text);
    static const char by_hand[] =
        "{ \"events\": [\"renamed\", \"renamed\"], \"x\": {\"y\": [1]}, \"suspended\": null,\n"
        "  \"changed\": 2, \"created\": 1, \"by\": \"U1\", \"patterns\": [\"*\"],\n"
        "  \"channel\": \"C0123ABCD\", \"platform\": \"slack\", \"format\": 1 }\n";
    CHECK_INT(state_parse_subscription(by_hand, strlen(by_hand), &back, why, sizeof(why)), 0);
    CHECK_INT(back.platform, SUB_SLACK);
    CHECK_INT(back.events, 1u << CHANGE_RENAMED);
    CHECK(back.suspended == NULL);
    subscription_fini(&back);

    /* The key: SHA-256 of "<platform>:<channel>", in lowercase hex. */
    CHECK_INT(state_subscription_key(SUB_SLACK, "C0123ABCD", key), 0);
    CHECK_STR(key, "f5d75ddf76ca59fbc89aea076367d6526f7da0f5023587d09fc6103985a6f76e");
    CHECK_INT(state_subscription_key(SUB_MATRIX, "!r\xc3\xa9:hs.example", key), 0);
    CHECK_STR(key, "42fd85a9ace15103569475079186ba78b3b38de24e4374ab1bc14a94b1455279");

    /* The writer refuses what the reader would. */
    s.n_patterns = 0;
    CHECK(state_format_subscription(&s) == NULL);
    CHECK_INT(state_subscription_check(&s, why, sizeof(why)), -EINVAL);
    CHECK(strstr(why, "0 patterns") != NULL);
}

/* Each record that is not usable is refused, and the reason says which rule it breaks. */
static void test_subscription_record_rejected(void)
{
#define HEAD "{\"format\":1,\"platform\":\"slack\",\"channel\":\"C0123ABCD\","
#define TAIL "\"by\":\"U1\",\"created\":1,\"changed\":2}"
#define PATS "\"patterns\":[\"WEB*\"],"
#define EVTS "\"events\":[\"created\"],"
    static const struct {
        const char *doc, *why;
    } bad[] = {
        {"not json", "byte 0"},
        {"[" HEAD PATS EVTS TAIL "]", "byte 0"},
        {HEAD PATS EVTS TAIL " {}", "byte"},
        {"{\"format\":1,\"platform\":\"irc\",\"channel\":\"C0123ABCD\"," PATS EVTS TAIL,
         "unknown platform"},
        {"{\"format\":1,\"platform\":7,\"channel\":\"C0123ABCD\"," PATS EVTS TAIL,
         "platform that is not text"},
        {"{\"format\":1,\"platform\":\"slack\",\"channel\":\"c0123abcd\"," PATS EVTS TAIL,
         "not a Slack channel id"},
        {"{\"format\":1,\"platform\":\"matrix\",\"channel\":\"#room:hs\"," PATS EVTS TAIL,
         "not a Matrix room id"},
        {"{\"format\":1,\"platform\":\"slack\",\"channel\":\"C0123\\u0000\"," PATS EVTS TAIL,
         "channel that is not text"},
        {HEAD "\"patterns\":[]," EVTS TAIL, "0 patterns (1 to 50 are allowed)"},
        {HEAD "\"patterns\":\"WEB*\"," EVTS TAIL, "patterns that are not an array"},
        {HEAD "\"patterns\":[\"WEB*\",\"a b\"]," EVTS TAIL, "pattern 2 is not a usable pattern"},
        {HEAD "\"patterns\":[\"!\"]," EVTS TAIL, "pattern 1 is not a usable pattern"},
        {HEAD "\"patterns\":[\"WEB*\",3]," EVTS TAIL, "pattern that is not text"},
        {HEAD "\"patterns\":[\"web*\",\"x\",\"WEB*\"]," EVTS TAIL, "patterns 1 and 3 are the same"},
        {HEAD PATS "\"events\":[\"created\",\"exploded\"]," TAIL, "unknown event kind"},
        {HEAD PATS "\"events\":[]," TAIL, "no event kind"},
        {HEAD PATS "\"events\":[1]," TAIL, "event kind that is not text"},
        {HEAD PATS TAIL, "no event kind"},
        {HEAD PATS EVTS "\"suspended\":5," TAIL, "suspension that is not text"},
        {"{\"format\":2,\"platform\":\"slack\",\"channel\":\"C0123ABCD\"," PATS EVTS TAIL,
         "format 2 is newer than this version's (1)"},
        {"{\"format\":0,\"platform\":\"slack\",\"channel\":\"C0123ABCD\"," PATS EVTS TAIL,
         "unknown format 0"},
        {"{\"format\":\"1\",\"platform\":\"slack\",\"channel\":\"C0123ABCD\"," PATS EVTS TAIL,
         "format that is not a number"},
        {"{\"platform\":\"slack\",\"channel\":\"C0123ABCD\"," PATS EVTS TAIL, "no \"format\""},
        {"{\"format\":1,\"channel\":\"C0123ABCD\"," PATS EVTS TAIL, "no \"platform\""},
        {"{\"format\":1,\"platform\":\"slack\"," PATS EVTS TAIL, "no \"channel\""},
        {HEAD EVTS TAIL, "no \"patterns\""},
        {HEAD PATS EVTS "\"created\":1,\"changed\":2}", "no \"by\""},
        {HEAD PATS EVTS "\"by\":\"U1\",\"changed\":2}", "no \"created\""},
        {HEAD PATS EVTS "\"by\":\"U1\",\"created\":1}", "no \"changed\""},
        {HEAD PATS EVTS "\"by\":\"U1\",\"created\":1.5,\"changed\":2}", "byte"},
    };
    struct subscription out;
    char why[256], doc[4096];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        CHECK_INT(state_parse_subscription(bad[i].doc, strlen(bad[i].doc), &out, why, sizeof(why)),
                  -EPROTO);
        if (!strstr(why, bad[i].why))
            fprintf(stderr, "record %zu: \"%s\", wanted \"%s\"\n", i, why, bad[i].why);
        CHECK(strstr(why, bad[i].why) != NULL);
        CHECK(out.channel == NULL && out.patterns == NULL);
    }

    /* The bounds: 50 patterns, 255 bytes of "by", 200 of a reason; one more is refused. */
    static const struct {
        int n;
        const char *what, *why;
    } bounds[] = {
        {50, "patterns", NULL},
        {51, "patterns", "51 patterns (1 to 50 are allowed)"},
        {80, "patterns", "too many patterns"},
        {255, "by", NULL},
        {256, "by", "\"by\" missing, over 255 bytes"},
        {200, "reason", NULL},
        {201, "reason", "suspension reason over 200 bytes"},
    };
    for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
        int n = bounds[i].n, k;
        char long_text[300];
        memset(long_text, 'x', (size_t)n);
        long_text[n] = '\0';
        if (strcmp(bounds[i].what, "patterns") == 0) {
            k = snprintf(doc, sizeof(doc), HEAD "\"patterns\":[");
            for (int j = 0; j < n; j++)
                k += snprintf(doc + k, sizeof(doc) - (size_t)k, "%s\"P%d\"", j ? "," : "", j);
            snprintf(doc + k, sizeof(doc) - (size_t)k, "]," EVTS TAIL);
        } else if (strcmp(bounds[i].what, "by") == 0) {
            snprintf(doc, sizeof(doc), HEAD PATS EVTS "\"by\":\"%s\",\"created\":1,\"changed\":2}",
                     long_text);
        } else {
            snprintf(doc, sizeof(doc), HEAD PATS EVTS "\"suspended\":\"%s\"," TAIL, long_text);
        }
        why[0] = '\0';
        int r = state_parse_subscription(doc, strlen(doc), &out, why, sizeof(why));
        CHECK_INT(r, bounds[i].why ? -EPROTO : 0);
        if (bounds[i].why)
            CHECK(strstr(why, bounds[i].why) != NULL);
        subscription_fini(&out);
    }
#undef HEAD
#undef TAIL
#undef PATS
#undef EVTS
}

/* The common step of every backend's load: skipped records, the key check, order and bound. */
static void test_subscription_set(void)
{
    struct state_subscription_set set = {0};
    struct subscription_list l;
    char *pats[] = {"*"};
    struct subscription s = {.platform = SUB_SLACK,
                             .patterns = pats,
                             .n_patterns = 1,
                             .events = CONF_EVENTS_ALL,
                             .by = "U1"};
    char why[256], key[STATE_SUBSCRIPTION_KEY], ch[32];

    /* 2 * STATE_SUBSCRIPTIONS_MAX + 500 Slack channels, added from the last one down. */
    for (int i = 2 * STATE_SUBSCRIPTIONS_MAX + 500; i-- > 0;) {
        snprintf(ch, sizeof(ch), "C%05d", i);
        s.channel = ch;
        s.platform = i % 2 ? SUB_MATRIX : SUB_SLACK;
        if (s.platform == SUB_MATRIX)
            snprintf(ch, sizeof(ch), "!%05d:hs", i);
        char *text = state_format_subscription(&s);
        CHECK_INT(state_subscription_key(s.platform, ch, key), 0);
        CHECK_INT(state_subscription_set_add(&set, key, text, strlen(text), why, sizeof(why)), 0);
        free(text);
    }
    /* Damaged, too big, under another channel's key: skipped, each saying why. */
    CHECK_INT(state_subscription_set_add(&set, key, "{", 1, why, sizeof(why)), -EPROTO);
    char *big = calloc(1, STATE_SUBSCRIPTION_MAX + 2);
    memset(big, ' ', STATE_SUBSCRIPTION_MAX + 1);
    CHECK_INT(
        state_subscription_set_add(&set, key, big, STATE_SUBSCRIPTION_MAX + 1, why, sizeof(why)),
        -EPROTO);
    CHECK(strstr(why, "over 65536 bytes") != NULL);
    free(big);
    s.platform = SUB_SLACK;
    s.channel = "CELSEWHERE";
    char *text = state_format_subscription(&s);
    CHECK_INT(state_subscription_set_add(&set, key, text, strlen(text), why, sizeof(why)), -EPROTO);
    CHECK(strstr(why, "another key") != NULL);
    CHECK(strstr(why, "CELSEWHERE") == NULL);
    free(text);

    state_subscription_set_finish(&set, &l);
    CHECK_INT(l.n, STATE_SUBSCRIPTIONS_MAX);
    CHECK_INT(set.dropped, STATE_SUBSCRIPTIONS_MAX + 500);
    /* The first ones by platform, then channel: every Slack channel (even numbers), in order. */
    CHECK_STR(l.v[0].channel, "C00000");
    CHECK_STR(l.v[1].channel, "C00002");
    CHECK_INT(l.v[l.n - 1].platform, SUB_SLACK);
    CHECK_STR(l.v[l.n - 1].channel, "C01998");
    for (size_t i = 1; i < l.n; i++)
        CHECK(strcmp(l.v[i - 1].channel, l.v[i].channel) < 0);
    subscription_list_fini(&l);
    state_subscription_set_fini(&set);
}

/* ---- subscriptions in the directory: subscriptions/<key>.json ---- */

static void remove_subscriptions(void)
{
    char path[TEST_PATH_MAX + 32];

    snprintf(path, sizeof(path), "%s/subscriptions", dir);
    CHECK(test_rmtree(path) == 0 || errno == ENOENT);
}

/* The path of (p, channel)'s record into path. */
static void sub_path(enum sub_platform p, const char *channel, char *path, size_t len)
{
    char key[STATE_SUBSCRIPTION_KEY];

    CHECK_INT(state_subscription_key(p, channel, key), 0);
    snprintf(path, len, "%s/subscriptions/%s.json", dir, key);
}

static size_t load_subs(struct state *st, struct subscription_list *l)
{
    char err[256];

    CHECK_INT(state_subscriptions_load(st, l, err, sizeof(err)), 0);
    return l->n;
}

/* Files 0600 in a 0700 directory; damaged ones, misplaced ones and temp files are skipped and
 * left where they are; a record bigger than the cap is damaged. */
static void test_subscription_files(void)
{
    char *all[] = {"*"};
    struct subscription a = {.platform = SUB_SLACK,
                             .channel = "C0A",
                             .patterns = all,
                             .n_patterns = 1,
                             .events = CONF_EVENTS_ALL,
                             .by = "U1"};
    struct subscription b = a;
    struct subscription_list l;
    struct state *st = NULL;
    struct stat sb;
    char err[256], path[512], other[TEST_PATH_MAX + 512], name[300];

    b.channel = "C0B";
    remove_subscriptions();
    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    CHECK_INT(load_subs(st, &l), 0); /* no subscriptions/ yet */
    subscription_list_fini(&l);
    CHECK_INT(state_subscription_delete(st, SUB_SLACK, "C0A", err, sizeof(err)), 0);
    CHECK_INT(state_subscription_put(st, &a, err, sizeof(err)), 0);
    sub_path(SUB_SLACK, "C0A", path, sizeof(path));
    CHECK_INT(stat(path, &sb), 0);
    CHECK_INT(sb.st_mode & 0777, 0600);
    snprintf(name, sizeof(name), "%s/subscriptions", dir);
    CHECK_INT(stat(name, &sb), 0);
    CHECK_INT(sb.st_mode & 0777, 0700);

    /* C0B's record under C0A's name (and C0A's under C0B's): neither is read. */
    char *text_b = state_format_subscription(&b);
    write_file("subscriptions/not-a-key.json", text_b);
    sub_path(SUB_SLACK, "C0B", other, sizeof(other));
    snprintf(name, sizeof(name), "subscriptions/%s", strrchr(other, '/') + 1);
    char *text_a = state_format_subscription(&a);
    write_file(name, text_a); /* C0B's file holds C0A: misplaced */
    CHECK_INT(load_subs(st, &l), 1);
    CHECK_STR(l.n ? l.v[0].channel : NULL, "C0A");
    subscription_list_fini(&l);
    CHECK_INT(stat(other, &sb), 0); /* left in place */

    /* Damaged, too big, a directory, a temp file of a put that never finished: skipped. */
    write_file(name, "{\"format\":1,");
    write_file("subscriptions/x.json", "");
    char *big = malloc(STATE_SUBSCRIPTION_MAX + 10);
    memset(big, ' ', STATE_SUBSCRIPTION_MAX + 9);
    big[STATE_SUBSCRIPTION_MAX + 9] = '\0';
    memcpy(big, text_b, strlen(text_b));
    write_file(name, big);
    free(big);
    snprintf(other, sizeof(other), "%s/subscriptions/d.json", dir);
    CHECK_INT(mkdir(other, 0700), 0);
    snprintf(other, sizeof(other), "%s.tmp", name);
    write_file(other, text_b);
    snprintf(other, sizeof(other), "%s/%s", dir, name);
    CHECK_INT(load_subs(st, &l), 1);
    subscription_list_fini(&l);
    CHECK_INT(stat(other, &sb), 0);

    /* A put replaces the damaged file; deleting leaves the others. */
    CHECK_INT(state_subscription_put(st, &b, err, sizeof(err)), 0);
    CHECK_INT(load_subs(st, &l), 2);
    CHECK_STR(l.n == 2 ? l.v[1].channel : NULL, "C0B");
    subscription_list_fini(&l);
    CHECK_INT(state_subscription_delete(st, SUB_SLACK, "C0A", err, sizeof(err)), 0);
    CHECK_INT(stat(path, &sb), -1);
    CHECK_INT(load_subs(st, &l), 1);
    subscription_list_fini(&l);
    free(text_a);
    free(text_b);
    state_close(st);
    remove_subscriptions();
}

/* A read-only look (--doctor, --dry-run): no lock taken, nothing created, writes refused. */
static void test_subscriptions_read_only(void)
{
    char *all[] = {"*"};
    struct subscription a = {.platform = SUB_MATRIX,
                             .channel = "!a:hs",
                             .patterns = all,
                             .n_patterns = 1,
                             .events = CONF_EVENTS_ALL,
                             .by = "@u:hs"};
    struct state *st = NULL, *ro = NULL, *ro2 = NULL;
    struct subscription_list l;
    struct snapshot back;
    char err[256], missing[TEST_PATH_MAX + 16];

    snprintf(missing, sizeof(missing), "%s/nowhere", dir);
    CHECK_INT(state_open_readonly(&ro, missing, err, sizeof(err)), -ENOENT);
    CHECK(ro == NULL);
    CHECK_INT(access(missing, F_OK), -1);

    /* An existing state without subscriptions/: an empty list, and none is created. */
    CHECK_INT(state_open_readonly(&ro, dir, err, sizeof(err)), 0);
    CHECK_INT(load_subs(ro, &l), 0);
    CHECK_INT(count_prefix("subscriptions"), 0);
    state_close(ro);

    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    CHECK_INT(state_subscription_put(st, &a, err, sizeof(err)), 0);
    /* Beside the writer, which holds the lock. */
    CHECK_INT(state_open_readonly(&ro, dir, err, sizeof(err)), 0);
    CHECK_INT(load_subs(ro, &l), 1);
    CHECK_STR(l.n ? l.v[0].channel : NULL, "!a:hs");
    subscription_list_fini(&l);
    CHECK(state_load(ro, dir, &back, err, sizeof(err)) >= 0);
    snapshot_fini(&back);
    CHECK_INT(state_subscription_put(ro, &a, err, sizeof(err)), -EROFS);
    CHECK_INT(state_subscription_delete(ro, SUB_MATRIX, "!a:hs", err, sizeof(err)), -EROFS);
    state_close(st);

    /* And it took no lock itself: a writer opens while it looks. */
    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    CHECK_INT(state_open_readonly(&ro2, dir, err, sizeof(err)), 0);
    CHECK_INT(state_subscription_delete(st, SUB_MATRIX, "!a:hs", err, sizeof(err)), 0);
    CHECK_INT(load_subs(ro2, &l), 0);
    state_close(ro2);
    state_close(ro);
    state_close(st);
    remove_subscriptions();
}

/* The contract every backend passes (state_contract.h), on an emptied directory. */
static int dir_reopen(struct state **out)
{
    char err[256];
    int r = state_open(out, dir, err, sizeof(err));
    if (r)
        fprintf(stderr, "%s\n", err);
    return r;
}

static int dir_fresh(struct state **out)
{
    /* Gone whole; the state makes the directory again (0700). */
    if (test_rmtree(dir) != 0)
        return -EIO;
    return dir_reopen(out);
}

int main(void)
{
    static const struct contract_backend dir_backend = {"directory", dir_fresh, dir_reopen};

    test_tmpdir(dir, sizeof(dir), "ytbridge-test-state");
    RUN(test_lock_is_exclusive);
    RUN(test_round_trip);
    RUN(test_corrupt_snapshot_is_moved_aside);
    RUN(test_newer_format_stops_the_bridge);
    RUN(test_history_round_trip);
    RUN(test_history_strings_are_bounded);
    RUN(test_history_bound);
    RUN(test_history_absent);
    RUN(test_history_malformed);
    RUN(test_journal);
    RUN(test_journal_damaged_lines);
    RUN(test_outbox_entries_through_the_journal);
    RUN(test_journal_short_write);
    RUN(test_sync_position_round_trip);
    RUN(test_sync_position_damaged);
    RUN(test_sync_position_put_failure);
    RUN(test_save_failure_names_the_errno);
    RUN(test_outbox_new_failure_closes_its_timers);
    RUN(test_subscription_record_round_trip);
    RUN(test_subscription_record_rejected);
    RUN(test_subscription_set);
    RUN(test_subscription_files);
    RUN(test_subscriptions_read_only);
    state_contract_run(&dir_backend);
    if (test_rmtree(dir) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return test_done();
}
