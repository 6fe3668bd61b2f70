/* Unit tests for the state directory: lock, atomic snapshot round trip, corrupt files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "outbox.h"
#include "state.h"
#include "test.h"

static char dir[64];

static void write_file(const char *name, const char *text)
{
    char path[256];
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
    char path[256];
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

static void test_journal(void)
{
    struct state *st = NULL;
    struct outbox_entry *v[3], *head = NULL;
    char err[256], path[256];

    CHECK_INT(state_open(&st, dir, err, sizeof(err)), 0);
    v[0] = outbox_entry_new("e-1-0", "team", "project.created", "{\"a\":\"\u00e9\"}", 10, 1);
    v[1] = outbox_entry_new("e-1-1", "room", "project.removed", "{}", 10, 1);
    v[2] = outbox_entry_new("e-2-0", "team", "digest", "{}", 11, 2);
    CHECK_INT(state_journal_add(st, v, 2, err, sizeof(err)), 0);
    CHECK_INT(state_journal_done(st, "e-1-0", "delivered"), 0);
    /* Generation 2 was written but its snapshot never committed (a crash in between). */
    CHECK_INT(state_journal_add(st, v + 2, 1, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/outbox.jsonl", dir);
    FILE *f = fopen(path, "a"); /* and a torn last line */
    fputs("{\"op\":\"done\",\"id\":\"e-1-", f);
    fclose(f);
    CHECK_INT(state_journal_load(st, 1, &head, err, sizeof(err)), 0);
    CHECK(head != NULL);
    CHECK_STR(head->id, "e-1-1");
    CHECK_STR(head->sink, "room");
    CHECK_STR(head->event, "project.removed");
    CHECK_INT(head->gen, 1);
    CHECK_INT(head->created, 10);
    CHECK(head->next == NULL);
    outbox_entry_free(head);
    /* Loading rewrote the journal to just the pending entry. */
    CHECK_INT(state_journal_load(st, 5, &head, err, sizeof(err)), 0);
    CHECK_STR(head->id, "e-1-1");
    CHECK(head->next == NULL);
    outbox_entry_free(head);
    CHECK_INT(state_journal_done(st, "e-1-1", "dead"), 0);
    CHECK_INT(state_journal_clear(st), 0);
    CHECK_INT(state_journal_load(st, 5, &head, err, sizeof(err)), 0);
    CHECK(head == NULL);
    for (int i = 0; i < 3; i++)
        outbox_entry_free(v[i]);
    state_close(st);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/ytbridge-test-state-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    RUN(test_lock_is_exclusive);
    RUN(test_round_trip);
    RUN(test_corrupt_snapshot_is_moved_aside);
    RUN(test_newer_format_stops_the_bridge);
    RUN(test_journal);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return test_done();
}
