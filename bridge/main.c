/*
 * ytbridge: command line, start-up order, signals and exit codes. The only place that exits.
 *
 * Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bridge.h"
#include "conf.h"
#include "config.h"
#include "http.h"
#include "log.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE   2

static const char usage_text[] =
    "Usage: ytbridge [OPTION]...\n"
    "Announce YouTrack project changes (created, removed, renamed, archived, unarchived).\n"
    "\n"
    "  -c, --config FILE     configuration file (default: $YTBRIDGE_CONFIG, else\n"
    "                        " CONF_DEFAULT_PATH ")\n"
    "  -n, --check-config    validate the configuration and every secret it names, print\n"
    "                        \"configuration OK\" or each problem as FILE:LINE: message\n"
    "      --once            poll once, announce what changed, exit (1 if the poll failed)\n"
    "      --dry-run         poll once and print what would be announced; post nothing and\n"
    "                        leave the state directory untouched\n"
    "      --accept-removals confirm removals held back by the mass-removal guard: the next\n"
    "                        complete poll announces them\n"
    "      --log-level LEVEL error, warn, info (default) or debug\n"
    "      --log-format FMT  text (default) or json (one JSON object per line)\n"
    "  -V, --version         print the version and exit\n"
    "  -h, --help            print this help and exit\n"
    "\n"
    "Environment: YTBRIDGE_CONFIG, YTBRIDGE_YOUTRACK_URL, YTBRIDGE_YOUTRACK_TOKEN.\n"
    "Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.\n"
    "See ytbridge(8).\n";

enum {
    OPT_ONCE = 256,
    OPT_DRY_RUN,
    OPT_ACCEPT_REMOVALS,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
};

struct args {
    const char *config;
    int check_config;
    struct bridge_opts bridge;
    int log_level_set;
    enum log_level log_level;
    int log_format_set;
    enum log_format log_format;
};

static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'n'},
        {"once", no_argument, NULL, OPT_ONCE},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"accept-removals", no_argument, NULL, OPT_ACCEPT_REMOVALS},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };

    for (;;) {
        int c = getopt_long(argc, argv, "c:nVh", longopts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case 'c':
            a->config = optarg;
            break;
        case 'n':
            a->check_config = 1;
            break;
        case OPT_ONCE:
            a->bridge.once = 1;
            break;
        case OPT_DRY_RUN:
            a->bridge.dry_run = 1;
            break;
        case OPT_ACCEPT_REMOVALS:
            a->bridge.accept_removals = 1;
            break;
        case OPT_LOG_LEVEL:
            if (log_level_parse(optarg, &a->log_level) != 0) {
                fprintf(stderr,
                        "ytbridge: --log-level: unknown level \"%s\" (error, warn, info, "
                        "debug)\n",
                        optarg);
                return -EINVAL;
            }
            a->log_level_set = 1;
            break;
        case OPT_LOG_FORMAT:
            if (log_format_parse(optarg, &a->log_format) != 0) {
                fprintf(stderr, "ytbridge: --log-format: unknown format \"%s\" (text, json)\n",
                        optarg);
                return -EINVAL;
            }
            a->log_format_set = 1;
            break;
        case 'V':
            printf("ytbridge %s\n", YTB_VERSION);
            exit(0);
        case 'h':
            fputs(usage_text, stdout);
            exit(0);
        default:
            fputs("Try 'ytbridge --help'.\n", stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ytbridge: unexpected argument \"%s\"\nTry 'ytbridge --help'.\n",
                argv[optind]);
        return -EINVAL;
    }
    if (!a->config)
        a->config = getenv("YTBRIDGE_CONFIG");
    if (!a->config || !*a->config)
        a->config = CONF_DEFAULT_PATH;
    return 0;
}

struct run {
    uv_loop_t *loop;
    struct bridge *bridge;
    uv_signal_t sigint, sigterm;
    int signals;
};

static void on_signal(uv_signal_t *h, int signum)
{
    struct run *run = h->data;
    if (++run->signals > 1 && signum == SIGINT) {
        /* A second Ctrl-C means now; the state directory is consistent at every instant. */
        log_warn("main", "second SIGINT: exiting at once");
        exit(EXIT_RUNTIME);
    }
    log_info("main", "%s: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    bridge_stop(run->bridge);
    uv_close((uv_handle_t *)&run->sigint, NULL);
    uv_close((uv_handle_t *)&run->sigterm, NULL);
}

int main(int argc, char **argv)
{
    struct args a = {0};
    struct conf *conf = NULL;
    struct conf_diags diags = {0};
    struct run run = {0};
    char err[1024] = "";
    int rc = EXIT_RUNTIME, r;

    if (parse_args(argc, argv, &a) != 0)
        return EXIT_USAGE;
    log_setup(a.log_level_set ? a.log_level : LOGL_INFO,
              a.log_format_set ? a.log_format : LOG_FORMAT_TEXT);

    r = conf_load(a.config, &conf, &diags);
    if (r) {
        for (size_t i = 0; i < diags.n; i++) {
            char line[1024];
            conf_diag_format(&diags.v[i], line, sizeof(line));
            fprintf(stderr, "%s\n", line);
        }
        if (r == -ENOMEM)
            fprintf(stderr, "ytbridge: out of memory\n");
        conf_diags_fini(&diags);
        return r == -ENOMEM ? EXIT_RUNTIME : EXIT_USAGE;
    }
    conf_diags_fini(&diags);
    if (a.check_config) {
        printf("configuration OK\n");
        rc = 0;
        goto out;
    }
    /* The command line beats the file. */
    log_setup(a.log_level_set       ? a.log_level
              : conf->log.level_set ? conf->log.level
                                    : LOGL_INFO,
              a.log_format_set       ? a.log_format
              : conf->log.format_set ? conf->log.format
                                     : LOG_FORMAT_TEXT);

    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    if (http_global_init() != 0) {
        log_err("main", "cannot initialise libcurl");
        goto out;
    }
    run.loop = uv_default_loop();
    r = bridge_new(&run.bridge, run.loop, conf, &a.bridge, err, sizeof(err));
    if (r) {
        log_err("main", "%s", err);
        goto out_curl;
    }
    uv_signal_init(run.loop, &run.sigint);
    uv_signal_init(run.loop, &run.sigterm);
    run.sigint.data = run.sigterm.data = &run;
    uv_signal_start(&run.sigint, on_signal, SIGINT);
    uv_signal_start(&run.sigterm, on_signal, SIGTERM);
    if (a.bridge.once || a.bridge.dry_run) {
        /* One-shot runs end when the bridge stops, not on a signal. */
        uv_unref((uv_handle_t *)&run.sigint);
        uv_unref((uv_handle_t *)&run.sigterm);
    }
    log_info("main", "ytbridge %s polling %s every %d s", YTB_VERSION, conf->youtrack.url,
             conf->youtrack.poll_interval);
    bridge_start(run.bridge);
    uv_run(run.loop, UV_RUN_DEFAULT);

    rc = (a.bridge.once || a.bridge.dry_run) ? bridge_exit_code(run.bridge) : 0;
    if (!uv_is_closing((uv_handle_t *)&run.sigint)) {
        uv_close((uv_handle_t *)&run.sigint, NULL);
        uv_close((uv_handle_t *)&run.sigterm, NULL);
    }
    uv_run(run.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(run.loop) != 0)
        log_warn("main", "event loop closed with handles still open");
    bridge_free(run.bridge);
out_curl:
    http_global_cleanup();
out:
    conf_free(conf);
    log_clear_secrets();
    return rc;
}
