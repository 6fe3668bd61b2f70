/*
 * A real single-member etcd for the tests (issue 12: "real etcd, started by the tests"): free
 * loopback ports, a temporary data directory, /health polled with a deadline, stopped and
 * removed at the end. etcd_server_start() exits 77 (meson's "skipped") when there is no etcd
 * binary ($ETCD_BIN, else "etcd" on the PATH), and 1 when one is there but does not come up.
 *
 *   struct etcd_server srv;
 *   etcd_server_start(&srv, NULL);          // srv.url: "http://127.0.0.1:PORT"
 *   ...
 *   etcd_server_stop(&srv);
 */
#ifndef YTB_TEST_ETCD_SERVER_H
#define YTB_TEST_ETCD_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tmpdir.h"

struct etcd_server {
    pid_t pid;
    const char *tls; /* NULL, or a directory with ca.crt, server.crt and server.key */
    int client_port, peer_port;
    char url[64];            /* the client URL */
    char dir[TEST_PATH_MAX]; /* temporary: the data directory and the log */
};

/* A port nobody listens on right now (bound to 0 and released): 0 on failure. */
static inline int etcd_server_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static inline double etcd_server_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Whether GET /health on port says {"health":"true"}. */
static inline int etcd_server_healthy(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    static const char req[] = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    char buf[2048];
    size_t n = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok = 0;

    if (fd < 0)
        return 0;
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        write(fd, req, sizeof(req) - 1) == (ssize_t)(sizeof(req) - 1)) {
        for (;;) {
            ssize_t k = read(fd, buf + n, sizeof(buf) - 1 - n);
            if (k <= 0)
                break;
            n += (size_t)k;
        }
        buf[n] = '\0';
        ok = strstr(buf, "\"health\":\"true\"") != NULL;
    }
    close(fd);
    return ok;
}

static inline const char *etcd_server_bin(void)
{
    const char *bin = getenv("ETCD_BIN");
    return bin && bin[0] ? bin : "etcd";
}

/* Whether the etcd binary can be run at all. */
static inline int etcd_server_available(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s --version >/dev/null 2>&1", etcd_server_bin());
    return system(cmd) == 0;
}

static inline void etcd_server_exec(struct etcd_server *s, const char *const *extra)
{
    char client[64], peer[64], cluster[96], data[TEST_PATH_MAX + 32], log[TEST_PATH_MAX + 32];
    const char *argv[40];
    int n = 0;

    snprintf(client, sizeof(client), "%s", s->url);
    snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", s->peer_port);
    snprintf(cluster, sizeof(cluster), "t=%s", peer);
    snprintf(data, sizeof(data), "%s/data", s->dir);
    snprintf(log, sizeof(log), "%s/etcd.log", s->dir);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    const char *base[] = {etcd_server_bin(),
                          "--name",
                          "t",
                          "--data-dir",
                          data,
                          "--listen-client-urls",
                          client,
                          "--advertise-client-urls",
                          client,
                          "--listen-peer-urls",
                          peer,
                          "--initial-advertise-peer-urls",
                          peer,
                          "--initial-cluster",
                          cluster,
                          "--log-level",
                          "warn",
                          "--logger",
                          "zap",
                          NULL};
    for (int i = 0; base[i]; i++)
        argv[n++] = base[i];
    for (int i = 0; extra && extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    static char ca[TEST_PATH_MAX + 32], cert[TEST_PATH_MAX + 32], key[TEST_PATH_MAX + 32];
    if (s->tls) {
        /* Clients must show a certificate of the same CA (etcd's --client-cert-auth). */
        snprintf(ca, sizeof(ca), "%s/ca.crt", s->tls);
        snprintf(cert, sizeof(cert), "%s/server.crt", s->tls);
        snprintf(key, sizeof(key), "%s/server.key", s->tls);
        const char *t[] = {"--cert-file",       cert, "--key-file",        key,
                           "--trusted-ca-file", ca,   "--client-cert-auth"};
        for (int i = 0; i < 7; i++)
            argv[n++] = t[i];
    }
    argv[n] = NULL;
    execvp(argv[0], (char *const *)argv);
    _exit(127);
}

/* Whether something accepts connections on port (a TLS member's /health needs a client). */
static inline int etcd_server_listening(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;

    if (fd >= 0)
        close(fd);
    return ok;
}

/*
 * Starts etcd with extra arguments (NULL-terminated, or NULL), serving clients over TLS when
 * tls names a directory of certificates (then only its port is waited for: the caller retries
 * its first call). Exits 77/1 as said above.
 */
static inline void etcd_server_start_tls(struct etcd_server *s, const char *const *extra,
                                         const char *tls)
{
    memset(s, 0, sizeof(*s));
    s->tls = tls;
    if (!etcd_server_available()) {
        fprintf(stderr, "no etcd binary (%s): skipped\n", etcd_server_bin());
        exit(77);
    }
    if (!mkdtemp(test_tmp_template(s->dir, sizeof(s->dir), "ytbridge-etcd"))) {
        perror("mkdtemp");
        exit(1);
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        s->client_port = etcd_server_free_port();
        s->peer_port = etcd_server_free_port();
        snprintf(s->url, sizeof(s->url), "%s://127.0.0.1:%d", tls ? "https" : "http",
                 s->client_port);
        s->pid = fork();
        if (s->pid == 0)
            etcd_server_exec(s, extra);
        double deadline = etcd_server_now() + 20;
        while (etcd_server_now() < deadline) {
            if (tls ? etcd_server_listening(s->client_port) : etcd_server_healthy(s->client_port))
                return;
            if (waitpid(s->pid, NULL, WNOHANG) == s->pid)
                break; /* it died: a port taken in between, most likely; try others */
            usleep(50 * 1000);
        }
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    fprintf(stderr, "etcd did not come up (see %s/etcd.log)\n", s->dir);
    exit(1);
}

static inline void etcd_server_start(struct etcd_server *s, const char *const *extra)
{
    etcd_server_start_tls(s, extra, NULL);
}

/* Stops etcd (SIGTERM, then SIGKILL after 5 s) and removes its directory. */
static inline void etcd_server_stop(struct etcd_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        double deadline = etcd_server_now() + 5;
        while (waitpid(s->pid, NULL, WNOHANG) != s->pid) {
            if (etcd_server_now() > deadline) {
                kill(s->pid, SIGKILL);
                waitpid(s->pid, NULL, 0);
                break;
            }
            usleep(20 * 1000);
        }
        s->pid = 0;
    }
    if (s->dir[0]) {
        if (test_rmtree(s->dir) != 0)
            fprintf(stderr, "cannot remove %s\n", s->dir);
        s->dir[0] = '\0';
    }
}

#endif
