/*
 * Benchmark: parse a 100,000-project /api/admin/projects body and diff it against a saved
 * snapshot, through the real parser and diff. Prints times and peak memory; it is not a test
 * (timings depend on the machine), run it by hand: build/tests/bench/bench_diff [N]
 *
 * build/tests/bench/bench_diff N jansson loads the same snapshot through a jansson DOM instead
 * (into the same project list) and stops there: the figures behind reading the snapshot with
 * the pull reader (jscan.h).
 *
 * The body is one JSON array (the `$top=-1` shape, the worst case: the poller normally holds
 * one page of page_size projects at a time). The saved snapshot differs by ~1% renames, ~1%
 * archive flips, ~0.5% removals and ~0.5% new projects.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <jansson.h>

#include "project.h"
#include "state_format.h"
#include "youtrack.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long rss_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, strlen(field)) == 0)
            v = strtol(line + strlen(field), NULL, 10);
    }
    if (f)
        fclose(f);
    return v;
}

struct buf {
    char *p;
    size_t n, cap;
};

static void put(struct buf *b, const char *s)
{
    size_t l = strlen(s);
    if (b->n + l + 1 > b->cap) {
        b->cap = (b->cap + l + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            exit(1);
    }
    memcpy(b->p + b->n, s, l + 1);
    b->n += l;
}

static const char *const words[] = {"Platform", "Mobile", "Billing", "Search", "Data",    "Infra",
                                    "Design",   "Docs",   "Support", "Growth", "Payments"};

/* Project i as the server would send it; variant tweaks it for the "fetched" side. */
static void project_json(struct buf *b, int i, int variant, int snapshot)
{
    char s[512];
    int renamed = variant && i % 100 == 7, flipped = variant && (i % 100 == 42 || i % 100 == 43);
    snprintf(s, sizeof(s),
             "%s{\"id\":\"0-%d\",\"shortName\":\"P%d%s\",\"name\":\"%s %s team project %d%s\","
             "\"archived\":%s,\"leader\":{\"login\":\"user%d\",\"name\":\"User Number %d\"%s},"
             "\"description\":\"Work tracking for the %s %s initiative, number %d.\"%s%s}",
             i ? ",\n" : "", i, i, renamed ? "X" : "", words[i % 11], words[(i / 11) % 11], i,
             renamed ? " (renamed)" : "", (i % 10 == 3) != flipped ? "true" : "false", i % 997,
             i % 997, snapshot ? "" : ",\"$type\":\"User\"", words[(i / 7) % 11],
             words[(i / 3) % 11], i, snapshot ? ",\"first_seen\":1700000000" : "",
             snapshot ? "" : ",\"$type\":\"Project\"");
    put(b, s);
}

static const char *member_string(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* The snapshot's projects as a jansson DOM would give them: for comparison only. */
static int load_with_jansson(const struct buf *saved, struct project_list *l)
{
    json_t *root = json_loadb(saved->p, saved->n, 0, NULL);
    json_t *a = json_object_get(root, "projects");

    if (!json_is_array(a))
        return -1;
    project_list_init(l);
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *o = json_array_get(a, i), *leader = json_object_get(o, "leader");
        json_t *archived = json_object_get(o, "archived");
        struct project p = {
            .id = member_string(o, "id"),
            .short_name = member_string(o, "shortName"),
            .name = member_string(o, "name"),
            .description = member_string(o, "description"),
            .leader_login = member_string(leader, "login"),
            .leader_name = member_string(leader, "name"),
            .first_seen = json_integer_value(json_object_get(o, "first_seen")),
            .archived = json_is_boolean(archived) ? json_is_true(archived) : TRI_UNKNOWN,
        };
        if (!p.id || project_list_add(l, &p) != 0)
            return -1;
    }
    project_list_finish(l);
    json_decref(root);
    return 0;
}

static void reset_peak(void)
{
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    if (cr) {
        fputs("5", cr);
        fclose(cr);
    }
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    struct buf fetched = {0}, saved = {0};
    char err[256];

    /* The saved side: all but the last 0.5%; the fetched side drops every 200th project. */
    put(&saved, "{\"format\":1,\"saved_at\":1700000000,\"youtrack\":\"https://yt.example\","
                "\"flavour\":\"api\",\"projects\":[");
    for (int i = 0; i < n - n / 200; i++)
        project_json(&saved, i, 0, 1);
    put(&saved, "]}");
    put(&fetched, "[");
    for (int i = 0, first = 1; i < n; i++) {
        if (i % 200 == 199)
            continue;
        struct buf one = {0};
        project_json(&one, i, 1, 0);
        put(&fetched, first && one.p[0] == ',' ? one.p + 2 : one.p);
        first = 0;
        free(one.p);
    }
    put(&fetched, "]");

    struct snapshot snap;
    size_t saved_len = saved.n;
    reset_peak();
    long rss_load = rss_kib("VmRSS:");
    double t0 = now_ms();
    if (argc > 2 && strcmp(argv[2], "jansson") == 0) {
        struct project_list l;
        if (load_with_jansson(&saved, &l) != 0)
            return 1;
        double t1 = now_ms();
        printf("load snapshot:   %.1f ms through a jansson DOM, %zu projects; peak %.1f MiB "
               "over the text (%.1f MiB)\n",
               t1 - t0, l.n, (double)(rss_kib("VmHWM:") - rss_load) / 1024.0,
               (double)saved.n / 1048576.0);
        project_list_fini(&l);
        free(saved.p);
        free(fetched.p);
        return 0;
    }
    if (state_parse_snapshot(saved.p, saved.n, &snap, err, sizeof(err)) != 0) {
        fprintf(stderr, "snapshot: %s\n", err);
        return 1;
    }
    double t1 = now_ms();
    long load_peak = rss_kib("VmHWM:");
    free(saved.p);
    saved.p = NULL;
    /* Reset the peak-RSS mark so it covers parse + diff only, not building the inputs. */
    reset_peak();
    long rss_before = rss_kib("VmRSS:");

    /* Measured: the fetched body in memory, parsed, diffed; peak RSS over this part. */
    struct project_list list;
    project_list_init(&list);
    double t2 = now_ms();
    long got = youtrack_parse_projects(fetched.p, fetched.n, &list, err, sizeof(err));
    if (got < 0) {
        fprintf(stderr, "parse: %s\n", err);
        return 1;
    }
    project_list_finish(&list);
    double t3 = now_ms();
    struct diff d;
    struct diff_opts o = {
        .removal_confirmations = 1, .mass_removal_limit = 1000000, .now = 1800000000};
    if (project_diff(&snap.projects, &list, &o, &d) != 0)
        return 1;
    double t4 = now_ms();
    long rss_peak = rss_kib("VmHWM:");

    size_t kinds[5] = {0};
    for (size_t i = 0; i < d.n_changes; i++)
        kinds[d.changes[i].kind]++;
    printf("projects:        %d in the body, %zu in the saved snapshot\n", (int)got,
           snap.projects.n);
    printf("body size:       %.1f MiB\n", (double)fetched.n / 1048576.0);
    printf("load snapshot:   %.1f ms (start-up only); peak %.1f MiB over the text (%.1f MiB)\n",
           t1 - t0, (double)(load_peak - rss_load) / 1024.0, (double)saved_len / 1048576.0);
    printf("parse body:      %.1f ms\n", t3 - t2);
    printf("diff:            %.1f ms\n", t4 - t3);
    printf("parse + diff:    %.1f ms\n", t4 - t2);
    printf("changes:         %zu created, %zu renamed, %zu archived, %zu unarchived, %zu removed\n",
           kinds[CHANGE_CREATED], kinds[CHANGE_RENAMED], kinds[CHANGE_ARCHIVED],
           kinds[CHANGE_UNARCHIVED], kinds[CHANGE_REMOVED]);
    printf("peak RSS:        %.1f MiB (%.1f MiB before parsing: the body, the saved list, "
           "the program)\n",
           (double)rss_peak / 1024.0, (double)rss_before / 1024.0);
    printf("peak / body:     %.2fx (whole process)\n",
           (double)rss_peak * 1024.0 / (double)fetched.n);
    printf("parse + diff:    %.2fx the body (memory they added on top of the body)\n",
           (double)(rss_peak - rss_before) * 1024.0 / (double)fetched.n + 1.0);
    diff_fini(&d);
    project_list_fini(&list);
    snapshot_fini(&snap);
    free(fetched.p);
    return 0;
}
