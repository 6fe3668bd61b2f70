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
#include "cluster.h"
#include "conf.h"
#include "config.h"
#include "doctor.h"
#include "etcd.h"
#include "http.h"
#include "httpd.h"
#include "lwsctx.h"
#include "metrics.h"
#include "slack_socket.h"
#include "log.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE   2

static const char usage_text[] =
    "Usage: ytbridge [OPTION]...\n"
    "Announce YouTrack project changes (created, removed, renamed, archived, unarchived).\n"
    "\n"
    "  -c, --config FILE     configuration file (default: $YTBRIDGE_CONFIG, else\n"
    "                        " CONF_DEFAULT_PATH "; when that does not exist,\n"
    "                        the defaults and the environment)\n"
    "  -n, --check-config    validate the configuration and every secret it names, print\n"
    "                        \"configuration OK\" or each problem as FILE:LINE: message\n"
    "      --once            poll once, announce what changed, exit (1 if the poll failed)\n"
    "      --dry-run         poll once and print what would be announced; post nothing and\n"
    "                        leave the state (directory or etcd) untouched\n"
    "      --accept-removals confirm removals held back by the mass-removal guard: the next\n"
    "                        complete poll announces them\n"
    "      --log-level LEVEL error, warn, info (default) or debug\n"
    "      --log-format FMT  text (default) or json (one JSON object per line)\n"
    "      --doctor          check the YouTrack URL, the token (whose it is, whether it is an\n"
    "                        administrator's), the visible projects and each sink's\n"
    "                        credentials, and each etcd endpoint and the group's leader\n"
    "                        (cluster block), without posting anything; exit 0 when all pass\n"
    "      --allow-root      run even as root (it refuses otherwise)\n"
    "  -V, --version         print the version and exit\n"
    "  -h, --help            print this help and exit\n"
    "\n"
    "Environment: YTBRIDGE_CONFIG, YTBRIDGE_YOUTRACK_URL, YTBRIDGE_YOUTRACK_TOKEN (the URL and\n"
    "the token override the file's, and are enough to run without one), YTBRIDGE_MEMBER (this\n"
    "replica's name in a cluster).\n"
    "Signals: SIGTERM/SIGINT stop cleanly, SIGHUP re-reads the configuration.\n"
    "Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.\n"
    "See ytbridge(8).\n";

enum {
    OPT_ONCE = 256,
    OPT_DRY_RUN,
    OPT_ACCEPT_REMOVALS,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_ALLOW_ROOT,
    OPT_DOCTOR,
};

struct args {
    const char *config;
    int config_named; /* -c or $YTBRIDGE_CONFIG: the file must exist */
    int check_config;
    struct bridge_opts bridge;
    int log_level_set;
    enum log_level log_level;
    int log_format_set;
    enum log_format log_format;
    int allow_root;
    int doctor;
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
        {"allow-root", no_argument, NULL, OPT_ALLOW_ROOT},
        {"doctor", no_argument, NULL, OPT_DOCTOR},
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
        case OPT_ALLOW_ROOT:
            a->allow_root = 1;
            break;
        case OPT_DOCTOR:
            a->doctor = 1;
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
    a->config_named = a->config && *a->config;
    if (!a->config_named)
        a->config = CONF_DEFAULT_PATH;
    return 0;
}

/* Where the configuration comes from. */
enum conf_source {
    CONF_SOURCE_FILE,    /* the named or the default file */
    CONF_SOURCE_ENV,     /* no file: the defaults + YTBRIDGE_YOUTRACK_URL/TOKEN */
    CONF_SOURCE_MISSING, /* no file named, none at the default path, no URL in the environment */
};

#define CONF_ENV_NAME "(environment)"

/*
 * A container or a quick try needs no file: without -c or $YTBRIDGE_CONFIG and with no file at
 * the default path, the environment's URL and token run the bridge on the defaults. A file that
 * was named, or one that exists, is always read.
 */
static enum conf_source conf_source_of(const struct args *a)
{
    const char *url = getenv("YTBRIDGE_YOUTRACK_URL");

    if (a->config_named || access(a->config, F_OK) == 0 || errno != ENOENT)
        return CONF_SOURCE_FILE;
    return url && *url ? CONF_SOURCE_ENV : CONF_SOURCE_MISSING;
}

/* conf_load() from wherever conf_source_of() says; *source tells which. */
static int load_config(const struct args *a, struct conf **out, struct conf_diags *diags,
                       enum conf_source *source)
{
    *source = conf_source_of(a);
    if (*source == CONF_SOURCE_ENV)
        return conf_load_text("", 0, CONF_ENV_NAME, NULL, out, diags);
    return conf_load(a->config, out, diags);
}

struct run {
    uv_loop_t *loop;
    const char *config_path;
    struct args *args;
    struct conf *conf;    /* the running configuration */
    struct conf *pending; /* a validated configuration waiting for the bridge to stop */
    struct bridge *bridge;
    /* With the cluster block: the election; the bridge exists only while this replica leads. */
    struct cluster *cluster;
    struct cluster *old_cluster; /* being stopped by a reload that changed the cluster block */
    struct conf *old_conf;       /* what old_cluster points into, freed with it */
    struct httpd *httpd;
    struct httpd *next_httpd; /* bound for the pending configuration, swapped in with it */
    int rebind; /* the pending http.listen needs the port the running listener holds */
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t swap;
    int signals;
    int stopping;
    int failed;
    int lead_lost;      /* the election took the lead away: the bridge is stopping for it */
    int64_t started_at; /* for /metrics while no bridge runs */
    struct etcd *etcd;  /* a dry run's read-only client, with the cluster block */
};

static void apply_log_settings(const struct args *a, const struct conf *conf)
{
    /* The command line beats the file. */
    log_setup(a->log_level_set      ? a->log_level
              : conf->log.level_set ? conf->log.level
                                    : LOGL_INFO,
              a->log_format_set      ? a->log_format
              : conf->log.format_set ? conf->log.format
                                     : LOG_FORMAT_TEXT);
}

/*
 * /readyz: the bridge's checks; with the cluster block also the election's ("cluster"), and a
 * standby (no bridge) is ready while it sees a live leader. Returns 1 when ready.
 */
static int readiness(const struct run *run, char **body)
{
    json_t *doc = NULL, *cl = NULL;
    int ready = 0;

    if (run->bridge)
        ready = bridge_readiness(run->bridge, (int64_t)time(NULL), &doc);
    else if (!run->cluster)
        doc = json_pack("{s:b, s:{s:s}}", "ready", 0, "checks", "bridge", "reloading");
    if (run->cluster) {
        int standby_ready = cluster_readiness(run->cluster, &cl);
        if (!run->bridge) {
            /* A standby's own checks: leading needs YouTrack, standing by needs etcd. */
            ready = standby_ready && cluster_role(run->cluster) != CLUSTER_LEADER;
            doc = json_pack("{s:b, s:{}}", "ready", ready, "checks");
        }
        if (doc && cl) {
            json_object_set_new(doc, "ready", json_boolean(ready));
            json_object_set_new(doc, "cluster", cl);
        } else {
            json_decref(cl);
        }
    }
    *body = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    return ready;
}

static int on_http_request(void *userdata, const char *path, int *status, const char **content_type,
                           char **body)
{
    struct run *run = userdata;

    if (strcmp(path, "/healthz") == 0) {
        *status = 200;
        *body = strdup("ok\n");
    } else if (strcmp(path, "/readyz") == 0) {
        *content_type = "application/json";
        *status = readiness(run, body) ? 200 : 503;
    } else if (strcmp(path, "/metrics") == 0 && (run->bridge || run->cluster)) {
        struct metrics_cluster mc = {0};
        if (run->cluster)
            cluster_metrics(run->cluster, &mc);
        *status = 200;
        *content_type = "text/plain; version=0.0.4; charset=utf-8";
        *body = run->bridge ? bridge_metrics(run->bridge, run->cluster ? &mc : NULL)
                            : metrics_render(NULL, 0, run->started_at, &mc);
    } else {
        *status = 404;
        *body = strdup("not found\n");
    }
    return *body ? 0 : -ENOMEM;
}

static int start_httpd(struct run *run)
{
    char err[256];
    if (!run->conf->http.listen[0])
        return 0;
    int r = httpd_new(&run->httpd, run->loop, run->conf->http.listen, on_http_request, run, err,
                      sizeof(err));
    if (r)
        log_err("main", "%s", err);
    return r;
}

/* The port of a validated "IPV4:PORT" / "[IPV6]:PORT". */
static int listen_port(const char *listen)
{
    return atoi(strrchr(listen, ':') + 1);
}

/*
 * Binds the address a reload asks for before anything else changes, so that a busy port refuses
 * the reload as a whole and the running listener stays. Returns 0 (run->next_httpd set, or
 * run->rebind, or nothing to do) or -errno with the problem logged.
 */
static int reload_listen(struct run *run, const struct conf *next)
{
    const char *want = next->http.listen;
    char err[256];
    int r;

    run->rebind = 0;
    if (strcmp(want, run->conf->http.listen) == 0 || !want[0])
        return 0;
    r = httpd_new(&run->next_httpd, run->loop, want, on_http_request, run, err, sizeof(err));
    if (r == -EADDRINUSE && run->httpd && listen_port(want) == httpd_port(run->httpd)) {
        /* Our own listener holds the port (127.0.0.1:9464 -> 0.0.0.0:9464): it hands the port
         * over in on_swap(). */
        run->rebind = 1;
        return 0;
    }
    if (r)
        log_err("main", "reload: %s; keeping the running configuration", err);
    return r;
}

/* The new configuration is in: its listener replaces the old one (if the address changed). */
static void swap_listener(struct run *run, const char *old_listen)
{
    char err[256];

    if (run->stopping || strcmp(old_listen, run->conf->http.listen) == 0)
        return;
    httpd_free(run->httpd);
    run->httpd = run->next_httpd;
    run->next_httpd = NULL;
    if (!run->rebind)
        return;
    run->rebind = 0;
    if (httpd_new(&run->httpd, run->loop, run->conf->http.listen, on_http_request, run, err,
                  sizeof(err)) == 0)
        return;
    log_err("main", "reload: %s; listening on %s again", err, old_listen);
    if (httpd_new(&run->httpd, run->loop, old_listen, on_http_request, run, err, sizeof(err)))
        log_err("main", "reload: %s; /healthz, /readyz and /metrics are off", err);
}

static void close_signals(struct run *run)
{
    uv_handle_t *h[] = {(uv_handle_t *)&run->sigint, (uv_handle_t *)&run->sigterm,
                        (uv_handle_t *)&run->sighup, (uv_handle_t *)&run->swap};
    for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++) {
        if (!uv_is_closing(h[i]))
            uv_close(h[i], NULL);
    }
}

/*
 * The signal handles stay installed until the loop has ended (a second SIGTERM during the
 * shutdown grace must not kill the process with the default action); they just stop keeping
 * the loop alive.
 */
static void unref_signals(struct run *run)
{
    uv_handle_t *h[] = {(uv_handle_t *)&run->sigint, (uv_handle_t *)&run->sigterm,
                        (uv_handle_t *)&run->sighup, (uv_handle_t *)&run->swap};
    for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++)
        uv_unref(h[i]);
}

/* The election stops after the bridge: the lease is given back once nothing more is sent. */
static void stop_cluster(struct run *run)
{
    if (run->cluster)
        cluster_stop(run->cluster, NULL, NULL);
}

static void shut_down(struct run *run)
{
    run->stopping = 1;
    httpd_free(run->httpd);
    run->httpd = NULL;
    httpd_free(run->next_httpd);
    run->next_httpd = NULL;
    slack_socket_cleanup();
    if (run->bridge)
        bridge_stop(run->bridge);
    else
        stop_cluster(run);
    unref_signals(run);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct run *run = h->data;
    if (++run->signals > 1 && signum == SIGINT) {
        /* A second Ctrl-C means now; the state directory is consistent at every instant. */
        log_warn("main", "second SIGINT: exiting at once");
        exit(EXIT_RUNTIME);
    }
    if (run->stopping) {
        log_info("main", "%s: already shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
    log_info("main", "%s: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    shut_down(run);
}

/*
 * The bridge stopped without being asked: a one-shot run is done, a daemon cannot go on (its
 * state directory is gone, and the bridge said so). Exit non-zero for the supervisor.
 */
static void on_drop_bridge(uv_timer_t *t);

static void on_bridge_stopped(void *userdata)
{
    struct run *run = userdata;

    if (run->stopping) {
        stop_cluster(run);
        return;
    }
    if (run->cluster) {
        /* A replica goes on: back to the election (on_drop_bridge). */
        uv_timer_start(&run->swap, on_drop_bridge, 0, 0);
        return;
    }
    if (!(run->args->bridge.once || run->args->bridge.dry_run)) {
        log_err("main", "the bridge stopped; exiting with status %d", EXIT_RUNTIME);
        run->failed = 1;
    }
    shut_down(run);
}

/* This replica leads: a bridge on the etcd state, fenced by the lease (cluster.h). */
static void start_leading(struct run *run)
{
    char err[1024] = "";
    struct bridge_opts o = run->args->bridge;

    o.etcd = cluster_etcd(run->cluster);
    o.etcd_prefix = cluster_prefix(run->cluster);
    o.lease = cluster_lease(run->cluster);
    if (bridge_new(&run->bridge, run->loop, run->conf, &o, err, sizeof(err))) {
        run->bridge = NULL;
        log_err("main", "cannot lead: %s", err);
        cluster_step_down(run->cluster, "the bridge could not start");
        return;
    }
    /* The confirmation covers the first poll this process leads, not later ones. */
    run->args->bridge.accept_removals = 0;
    bridge_on_stopped(run->bridge, on_bridge_stopped, run);
    bridge_start(run->bridge);
}

/* The election's verdict. While a reload is under way, on_swap() looks at the role itself. */
static void on_role(void *userdata, int leading)
{
    struct run *run = userdata;

    if (run->stopping || run->pending)
        return;
    if (leading && !run->bridge) {
        start_leading(run);
    } else if (!leading && run->bridge) {
        run->lead_lost = 1;
        bridge_stop(run->bridge); /* then on_drop_bridge() */
    }
}

/*
 * The bridge of a replica has stopped: because the lead was lost (it may be back by now), or by
 * itself (its state refused a write: the lease is gone or going), which gives the lead up.
 */
static void on_drop_bridge(uv_timer_t *t)
{
    struct run *run = t->data;
    int asked = run->lead_lost;

    bridge_free(run->bridge);
    run->bridge = NULL;
    run->lead_lost = 0;
    if (run->stopping || cluster_role(run->cluster) != CLUSTER_LEADER)
        return;
    if (asked)
        start_leading(run); /* lost and won again while the bridge was stopping */
    else
        cluster_step_down(run->cluster, "the bridge stopped (see above)");
}

static int start_cluster(struct run *run)
{
    char err[1024] = "";

    if (cluster_new(&run->cluster, run->loop, run->conf, on_role, run, err, sizeof(err))) {
        run->cluster = NULL;
        log_err("main", "cluster: %s", err);
        return -1;
    }
    log_info("main",
             "ytbridge %s: replica \"%s\" of the group %s; it polls %s every %d s while "
             "it leads",
             YTB_VERSION, run->conf->cluster.member, run->conf->cluster.prefix,
             run->conf->youtrack.url, run->conf->youtrack.poll_interval);
    cluster_start(run->cluster);
    return 0;
}

/* The election under the old cluster settings has ended: join the group under the new ones. */
static void on_old_cluster_stopped(void *userdata)
{
    struct run *run = userdata;

    cluster_free(run->old_cluster);
    run->old_cluster = NULL;
    conf_free(run->old_conf);
    run->old_conf = NULL;
    if (run->stopping)
        return;
    if (start_cluster(run) != 0) {
        run->failed = 1;
        shut_down(run);
    }
}

/*
 * A reload with the cluster block, after the bridge (if any) has stopped: the same cluster
 * settings keep the election and its lease (a leader starts its new bridge at once); changed
 * ones leave the election, giving the lead back, and join it again under the new settings.
 */
static void swap_cluster(struct run *run, struct conf *old)
{
    if (run->stopping) { /* a SIGTERM came during the reload: the election stops too */
        run->pending = run->conf;
        run->conf = old;
        stop_cluster(run);
        return;
    }
    swap_listener(run, old->http.listen);
    if (conf_cluster_same(old, run->conf)) {
        cluster_set_conf(run->cluster, run->conf);
        conf_free(old);
        log_info("main", "reload: new configuration in effect");
        if (cluster_role(run->cluster) == CLUSTER_LEADER)
            start_leading(run);
        return;
    }
    log_info("main", "reload: new configuration in effect; the cluster settings changed: leaving "
                     "the election and joining it again");
    run->old_cluster = run->cluster;
    run->old_conf = old;
    run->cluster = NULL;
    cluster_stop(run->old_cluster, on_old_cluster_stopped, run);
}

/* Runs on the loop after the old bridge's handles are closed: swap in the new one. */
static void on_swap(uv_timer_t *t)
{
    struct run *run = t->data;
    char err[1024] = "";
    struct conf *old = run->conf;

    bridge_free(run->bridge);
    run->bridge = NULL;
    run->conf = run->pending;
    run->pending = NULL;
    apply_log_settings(run->args, run->conf);
    run->lead_lost = 0;
    if (run->cluster) {
        swap_cluster(run, old);
        return;
    }
    if (bridge_new(&run->bridge, run->loop, run->conf, &run->args->bridge, err, sizeof(err))) {
        log_err("main", "reload: %s; going back to the previous configuration", err);
        conf_free(run->conf);
        run->conf = old;
        old = NULL;
        httpd_free(run->next_httpd);
        run->next_httpd = NULL;
        run->rebind = 0;
        apply_log_settings(run->args, run->conf);
        if (bridge_new(&run->bridge, run->loop, run->conf, &run->args->bridge, err, sizeof(err))) {
            log_err("main", "%s; exiting", err);
            run->bridge = NULL;
            run->failed = 1;
            shut_down(run);
            return;
        }
    } else {
        swap_listener(run, old->http.listen);
        log_info("main", "reload: new configuration in effect");
    }
    conf_free(old);
    bridge_on_stopped(run->bridge, on_bridge_stopped, run);
    bridge_start(run->bridge);
}

static void on_bridge_stopped_for_reload(void *userdata)
{
    struct run *run = userdata;
    uv_timer_start(&run->swap, on_swap, 0, 0);
}

static void on_sighup(uv_signal_t *h, int signum)
{
    struct run *run = h->data;
    struct conf_diags diags = {0};
    struct conf *next = NULL;
    enum conf_source source;
    (void)signum;

    if (run->stopping || run->pending) {
        log_warn("main", "SIGHUP: a reload or shutdown is already under way");
        return;
    }
    log_info("main", "SIGHUP: reading %s", run->config_path);
    int r = load_config(run->args, &next, &diags, &source);
    if (source == CONF_SOURCE_ENV)
        log_info("main", "reload: %s does not exist: the defaults and the environment",
                 run->config_path);
    if (r) {
        log_err("main", "reload: %s has %zu problem%s; keeping the running configuration",
                source == CONF_SOURCE_ENV ? CONF_ENV_NAME : run->config_path, diags.n,
                diags.n == 1 ? "" : "s");
        for (size_t i = 0; i < diags.n; i++) {
            char line[1024];
            conf_diag_format(&diags.v[i], line, sizeof(line));
            log_err("main", "reload: %s", line);
        }
        conf_diags_fini(&diags);
        return;
    }
    conf_diags_fini(&diags);
    if (!next->cluster.enabled != !run->conf->cluster.enabled) {
        log_err("main",
                "reload: the cluster block was %s: that takes a restart; keeping the "
                "running configuration",
                next->cluster.enabled ? "added" : "removed");
        conf_free(next);
        return;
    }
    if (reload_listen(run, next) != 0) {
        conf_free(next);
        return;
    }
    /* Stop the bridge (deliveries in flight get their grace period), then swap. */
    run->pending = next;
    if (!run->bridge) { /* a standby */
        uv_timer_start(&run->swap, on_swap, 0, 0);
        return;
    }
    bridge_on_stopped(run->bridge, on_bridge_stopped_for_reload, run);
    bridge_stop(run->bridge);
}

/* --doctor: the live checks, on a loop of their own. Returns the exit code. */
static int run_doctor(const struct args *a, const struct conf *conf)
{
    int rc;

    apply_log_settings(a, conf);
    if (http_global_init() != 0) {
        fprintf(stderr, "ytbridge: cannot initialise libcurl\n");
        return EXIT_RUNTIME;
    }
    rc = doctor_run(uv_default_loop(), conf);
    uv_loop_close(uv_default_loop());
    http_global_cleanup();
    return rc;
}

/*
 * The bridge, its signals and (unless one-shot) the probe server on the default loop until the
 * bridge stops; then the loop is run dry and closed. Returns the exit code.
 */
static int run_bridge(struct run *run, struct args *a)
{
    char err[1024] = "";
    int oneshot = a->bridge.once || a->bridge.dry_run;
    int clustered = run->conf->cluster.enabled && !oneshot;
    int rc = EXIT_RUNTIME;

    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    if (http_global_init() != 0) {
        log_err("main", "cannot initialise libcurl");
        return EXIT_RUNTIME;
    }
    run->loop = uv_default_loop();
    run->started_at = (int64_t)time(NULL);
    if (a->bridge.dry_run && run->conf->cluster.enabled) {
        /* A dry run looks at what the group's leader committed, and takes no part. */
        if (cluster_etcd_new(&run->etcd, run->loop, &run->conf->cluster, err, sizeof(err))) {
            log_err("main", "cluster: %s", err);
            goto out;
        }
        a->bridge.etcd = run->etcd;
        a->bridge.etcd_prefix = run->conf->cluster.prefix;
    }
    if (!clustered) {
        if (bridge_new(&run->bridge, run->loop, run->conf, &a->bridge, err, sizeof(err))) {
            log_err("main", "%s", err);
            goto out;
        }
        /* The confirmation covers the first poll only, not the first poll after each reload. */
        a->bridge.accept_removals = 0;
    }
    uv_signal_init(run->loop, &run->sigint);
    uv_signal_init(run->loop, &run->sigterm);
    uv_signal_init(run->loop, &run->sighup);
    uv_timer_init(run->loop, &run->swap);
    run->sigint.data = run->sigterm.data = run->sighup.data = run->swap.data = run;
    uv_signal_start(&run->sigint, on_signal, SIGINT);
    uv_signal_start(&run->sigterm, on_signal, SIGTERM);
    if (oneshot) {
        /* One-shot runs end when the bridge stops, not on a signal. */
        unref_signals(run);
    } else {
        uv_signal_start(&run->sighup, on_sighup, SIGHUP);
        if (start_httpd(run) != 0) {
            bridge_stop(run->bridge);
            close_signals(run);
            uv_run(run->loop, UV_RUN_DEFAULT);
            uv_loop_close(run->loop);
            bridge_free(run->bridge);
            goto out;
        }
    }
    if (a->bridge.dry_run)
        log_info("main", "ytbridge %s: one poll of %s, a dry run (nothing is posted or saved)",
                 YTB_VERSION, run->conf->youtrack.url);
    else if (a->bridge.once)
        log_info("main", "ytbridge %s: one poll of %s", YTB_VERSION, run->conf->youtrack.url);
    else if (!clustered)
        log_info("main", "ytbridge %s polling %s every %d s", YTB_VERSION, run->conf->youtrack.url,
                 run->conf->youtrack.poll_interval);
    if (clustered) {
        if (start_cluster(run) != 0) {
            run->failed = 1;
            shut_down(run);
        }
    } else {
        bridge_on_stopped(run->bridge, on_bridge_stopped, run);
        bridge_start(run->bridge);
    }
    uv_run(run->loop, UV_RUN_DEFAULT);
    /* The election's and the dry run's etcd clients close their handles on this loop. */
    cluster_free(run->cluster);
    run->cluster = NULL;
    etcd_free(run->etcd);
    run->etcd = NULL;

    rc = oneshot && run->bridge ? bridge_exit_code(run->bridge) : run->failed ? EXIT_RUNTIME : 0;
    httpd_free(run->httpd);
    run->httpd = NULL;
    slack_socket_cleanup();
    close_signals(run);
    uv_run(run->loop, UV_RUN_DEFAULT);
    lwsctx_reap();
    uv_run(run->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(run->loop) != 0)
        log_warn("main", "event loop closed with handles still open");
    bridge_free(run->bridge);
out:
    http_global_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    struct args a = {0};
    struct conf_diags diags = {0};
    struct run run = {0};
    int rc = EXIT_RUNTIME, r;
    enum conf_source source;

    if (parse_args(argc, argv, &a) != 0)
        return EXIT_USAGE;
    log_setup(a.log_level_set ? a.log_level : LOGL_INFO,
              a.log_format_set ? a.log_format : LOG_FORMAT_TEXT);
    run.args = &a;
    run.config_path = a.config;

    r = load_config(&a, &run.conf, &diags, &source);
    if (r) {
        for (size_t i = 0; i < diags.n; i++) {
            char line[1024];
            conf_diag_format(&diags.v[i], line, sizeof(line));
            fprintf(stderr, "%s\n", line);
        }
        if (r == -ENOMEM)
            fprintf(stderr, "ytbridge: out of memory\n");
        else if (source == CONF_SOURCE_MISSING)
            fprintf(stderr, "ytbridge: name a configuration file with -c, or set "
                            "YTBRIDGE_YOUTRACK_URL and YTBRIDGE_YOUTRACK_TOKEN\n");
        conf_diags_fini(&diags);
        return r == -ENOMEM ? EXIT_RUNTIME : EXIT_USAGE;
    }
    conf_diags_fini(&diags);
    if (source == CONF_SOURCE_ENV)
        log_info("main", "%s does not exist: using the defaults and the environment", a.config);
    if (a.check_config) {
        printf("configuration OK\n");
        rc = 0;
        goto out;
    }
    if (a.doctor) {
        rc = run_doctor(&a, run.conf);
        goto out;
    }
    if (a.bridge.once && !a.bridge.dry_run && run.conf->cluster.enabled) {
        /* A one-shot poll would have to win the lead first and give it back after. */
        fprintf(stderr, "ytbridge: --once cannot run with the cluster block: only the group's "
                        "leader polls; use --dry-run to see what a poll would announce\n");
        rc = EXIT_USAGE;
        goto out;
    }
    if (geteuid() == 0 && !a.allow_root) {
        /* Nothing here needs root; a compromised parser must not get it. */
        fprintf(stderr, "ytbridge: refusing to run as root: run it as an unprivileged user (see "
                        "contrib/), or pass --allow-root\n");
        rc = EXIT_USAGE;
        goto out;
    }
    apply_log_settings(&a, run.conf);
    rc = run_bridge(&run, &a);
out:
    conf_free(run.pending);
    conf_free(run.conf);
    log_clear_secrets();
    return rc;
}
