/*
 * Benchmark: the chat commands against a big snapshot, in-process. Prints the command index's
 * build time and size, and the CPU each command takes (command_run() alone: parsing, the
 * answer and its JSON; tests/bench/bench_slack.py measures the whole daemon). Not a test
 * (timings depend on the machine); run it by hand:
 *
 *   build/tests/bench/bench_command [N...]      (default: 10000 100000)
 *
 * Names are "Project N" with short names "PN", as tests/integration/harness.py's many_projects()
 * makes them, and a second set of Cyrillic names ("Проект N", short "ПN"), which take
 * libunistring's path through utf8_fold() rather than the ASCII one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "command.h"
#include "command_index.h"

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void build_list(struct project_list *l, size_t n, int cyrillic)
{
    char id[32], sn[32], nm[64];
    project_list_init(l);
    for (size_t i = 1; i <= n; i++) {
        snprintf(id, sizeof(id), "0-%zu", i);
        snprintf(sn, sizeof(sn), cyrillic ? "\xd0\x9f%zu" : "P%zu", i);
        snprintf(nm, sizeof(nm),
                 cyrillic ? "\xd0\x9f\xd1\x80\xd0\xbe\xd0\xb5\xd0\xba\xd1\x82 %zu" : "Project %zu",
                 i);
        struct project p = {.id = id, .short_name = sn, .name = nm, .archived = TRI_NO};
        if (project_list_add(l, &p) != 0) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
    project_list_finish(l);
}

/* Median CPU ms of one command over rounds of reps runs each. */
static double time_command(const struct command_context *ctx, const char *cmd,
                           enum command_platform pf, int reps)
{
    double v[7];
    for (int r = 0; r < 7; r++) {
        double t0 = cpu_ms();
        for (int i = 0; i < reps; i++) {
            char *out = NULL;
            if (command_run(cmd, strlen(cmd), ctx, pf, &out) != 0 || !out) {
                fprintf(stderr, "%s: failed\n", cmd);
                exit(1);
            }
            free(out);
        }
        v[r] = (cpu_ms() - t0) / reps;
    }
    qsort(v, 7, sizeof(v[0]), cmp_double);
    return v[3];
}

static void bench(size_t n, int cyrillic)
{
    struct project_list l;
    struct command_index *ix = NULL;
    double best = 1e9;

    build_list(&l, n, cyrillic);
    for (int r = 0; r < 5; r++) {
        double t0 = cpu_ms();
        command_index_free(ix);
        ix = NULL;
        if (command_index_new(&ix, &l) != 0) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        double t = cpu_ms() - t0;
        best = t < best ? t : best;
    }
    printf("%zu projects, %s names: index built in %.1f ms (best of 5), %.2f MiB "
           "(%.0f bytes per project)\n",
           n, cyrillic ? "Cyrillic" : "ASCII", best,
           (double)command_index_bytes(ix) / (1024.0 * 1024.0),
           (double)command_index_bytes(ix) / (double)n);

    struct command_context ctx = {
        .projects = &l,
        .index = ix,
        .service_url = "https://yt.example.com/youtrack",
        .flavour = YOUTRACK_MODERN,
        .now = 1717243200,
        .version = "0.0.0",
        .started_at = 1717200000,
        .last_poll_ok = 1717243100,
        .last_error = "",
    };
    char key[64], few[64];
    snprintf(key, sizeof(key), "project %s%zu", cyrillic ? "\xd0\x9f" : "P", n / 2);
    snprintf(few, sizeof(few), "projects %zu", n / 100 + 3); /* "103": about 1% of the names */
    const char *cmds[] = {cyrillic ? "projects \xd0\xbf\xd1\x80\xd0\xbe\xd0\xb5"
                                   : "projects proj", /* every name matches */
                          "projects",
                          few,
                          key,
                          "status",
                          "help"};
    printf("  CPU per command, median of 7 rounds (Slack / Matrix), with the index:\n");
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        int reps = n > 50000 ? 20 : 100;
        printf("    %-24s %.3f / %.3f ms\n", cmds[i],
               time_command(&ctx, cmds[i], COMMAND_SLACK, reps),
               time_command(&ctx, cmds[i], COMMAND_MATRIX, reps));
    }
    printf("  the index alone (command_index_match / _find), median of 7 rounds:\n");
    for (size_t i = 0; i < 4; i++) {
        if (i == 1)
            continue;
        const char *arg = strchr(cmds[i], ' ') + 1;
        double v[7];
        for (int r = 0; r < 7; r++) {
            const struct project *first[100], *found;
            size_t total;
            double t0 = cpu_ms();
            for (int k = 0; k < 100; k++) {
                if (i == 3 ? command_index_find(ix, arg, &found) != 0
                           : command_index_match(ix, arg, first, 100, &total) != 0)
                    exit(1);
            }
            v[r] = (cpu_ms() - t0) / 100;
        }
        qsort(v, 7, sizeof(v[0]), cmp_double);
        printf("    %-24s %.3f ms\n", cmds[i], v[3]);
    }
    ctx.index = NULL;
    printf("  without an index (each command builds one):\n");
    for (size_t i = 0; i < 2; i++)
        printf("    %-24s %.3f ms\n", cmds[i], time_command(&ctx, cmds[i], COMMAND_SLACK, 3));
    command_index_free(ix);
    project_list_fini(&l);
}

int main(int argc, char **argv)
{
    size_t sizes[8] = {10000, 100000};
    int n = 2;

    if (argc > 1) {
        n = 0;
        for (int i = 1; i < argc && n < 8; i++)
            sizes[n++] = strtoul(argv[i], NULL, 10);
    }
    for (int i = 0; i < n; i++) {
        bench(sizes[i], 0);
        bench(sizes[i], 1);
    }
    return 0;
}
