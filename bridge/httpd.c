/*
 * HTTP server for /healthz, /readyz and /metrics: GET/HEAD only, one small dynamic answer per
 * request, no request bodies, no upgrades, a hard cap on connections, idle connections dropped.
 * libmicrohttpd (MHD) does the HTTP; it runs without a thread of its own (MHD_USE_EPOLL without
 * MHD_USE_INTERNAL_POLLING_THREAD): a uv_poll_t watches MHD's epoll descriptor and a uv_timer_t
 * its next connection timeout, and both call MHD_run(). doc/httpd.md says why MHD replaced
 * libwebsockets here.
 *
 * Invariants: the listening socket is ours (bound to exactly the configured address, so a busy
 * port is a clear error, not a log line) and MHD owns it from MHD_start_daemon() on; MHD's log
 * lines reach ours through a rate limit, so a client flood can never become a log flood.
 * httpd_free() closes the uv handles first and stops MHD in their close callback, so libuv never
 * watches a descriptor MHD has closed.
 */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

/*
 * Concurrent connections. Probes and a scraper need a handful; the cap keeps a connection flood
 * far below the process's descriptor limit (the state directory, libcurl and the chat sockets
 * need descriptors too). At the cap MHD stops accepting and new connections wait in the
 * kernel's listen queue, costing us no descriptor; issue 9: 2,000 held connections starved
 * everything else of descriptors under libwebsockets.
 */
#define HTTPD_MAX_CONNECTIONS 64
/* Seconds a connection may stay silent (idle keep-alive, unfinished request) before MHD drops it:
 * probes and scrapers send their whole request at once. */
#define HTTPD_IDLE_TIMEOUT_S 5
/* MHD's per-connection memory pool (request line, headers, answer headers): small requests only. */
#define HTTPD_CONN_MEMORY (8 * 1024)
/* Request line + headers we serve at all (the pool above is the hard limit, this the policy). */
#define HTTPD_MAX_HEADER_BYTES 2048
/* MHD log lines: at most LOG_BURST per LOG_WINDOW_MS, the rest counted and reported as a number. */
#define LOG_BURST     5
#define LOG_WINDOW_MS 60000

struct httpd {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;   /* MHD's epoll descriptor */
    uv_timer_t timer; /* MHD's next timeout */
    int handles;      /* uv handles initialised; httpd_free() frees s when they are all closed */
    httpd_handler handler;
    void *userdata;
    int port;
    unsigned conns;   /* open connections after the last MHD_run() */
    uint64_t full_at; /* when the cap was last reported (ms, uv_hrtime), 0: never */
    unsigned full_times;
    int full_said;       /* the cap's last reaching was logged: its end is logged once too */
    uint64_t log_window; /* rate limit of MHD's log lines */
    unsigned log_lines, log_dropped;
    char addr[64]; /* "127.0.0.1:9464", "[::1]:9464": names this server in log lines */
};

/* The first call of a request sees *con_cls NULL; the second, once it is accepted, this. */
static int accepted;

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static void log_flush_dropped(struct httpd *s)
{
    if (s->log_dropped)
        log_warn("httpd", "%s: %u more libmicrohttpd messages suppressed", s->addr, s->log_dropped);
    s->log_dropped = 0;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct httpd *s = cls;
    char line[512];
    uint64_t now = now_ms();

    if (s->log_window == 0 || now - s->log_window >= LOG_WINDOW_MS) {
        log_flush_dropped(s);
        s->log_window = now;
        s->log_lines = 0;
    }
    if (++s->log_lines > LOG_BURST) {
        s->log_dropped++;
        return;
    }
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\r\n")] = '\0';
    log_warn("httpd", "%s: libmicrohttpd: %s", s->addr, line);
}

static enum MHD_Result add_header_bytes(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    size_t *n = cls;
    (void)kind;
    *n += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " and CRLF, or "?", "=", "&" */
    return MHD_YES;
}

static int has_body(struct MHD_Connection *c)
{
    const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding"))
        return 1;
    return len && strspn(len, "0") != strlen(len);
}

/* Queues status with body (malloc'ed, or static when is_static); takes body in every case. */
static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *type,
                              char *body, int is_static)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(body), body, is_static ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_FREE);
    enum MHD_Result ok;

    if (!r) {
        if (!is_static)
            free(body);
        return MHD_NO; /* MHD closes the connection */
    }
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES ||
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
        (status == MHD_HTTP_METHOD_NOT_ALLOWED &&
         MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") != MHD_YES)) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r); /* MHD keeps its own reference while it sends */
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    static const char text[] = "text/plain; charset=utf-8";
    struct httpd *s = cls;
    int is_get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    int is_head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    size_t header_bytes = strlen(method) + strlen(url) + strlen(version) + 4;
    const char *type = text;
    int status = 500;
    char *body = NULL;
    (void)upload_data;

    if (!*con_cls) {
        /*
         * First call, the headers are in. A refusal is queued now: MHD then reads no body and
         * closes the connection after the answer (MHD_queue_response() in the
         * HEADERS_PROCESSED state), so a body is never buffered nor parsed as a next request.
         * An accepted request is answered on the second call, which keeps the connection alive.
         */
        if (!is_get && !is_head) {
            log_debug("httpd", "%s: %.16s %s -> 405", s->addr, method, url);
            return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, text, (char *)"method not allowed\n", 1);
        }
        if (has_body(c)) {
            log_debug("httpd", "%s: %s %s with a body -> 413", s->addr, method, url);
            return answer(c, MHD_HTTP_CONTENT_TOO_LARGE, text, (char *)"no request body here\n", 1);
        }
        MHD_get_connection_values(c, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, add_header_bytes,
                                  &header_bytes);
        if (header_bytes > HTTPD_MAX_HEADER_BYTES) {
            log_debug("httpd", "%s: %s with %zu header bytes -> 431", s->addr, method,
                      header_bytes);
            return answer(c, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, text,
                          (char *)"request too large\n", 1);
        }
        *con_cls = &accepted;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* cannot happen: a request with a body was refused above */
        return MHD_YES;
    }
    if (s->handler(s->userdata, url, &status, &type, &body) != 0 || !body) {
        free(body);
        log_err("httpd", "%s: %s: out of memory", s->addr, url);
        return answer(c, MHD_HTTP_INTERNAL_SERVER_ERROR, text, (char *)"internal error\n", 1);
    }
    log_debug("httpd", "%s: %s %s -> %d", s->addr, method, url, status);
    return answer(c, (unsigned)status, type, body, 0);
}

static void on_timer(uv_timer_t *t);

/* Logs reaching the cap at most once per LOG_WINDOW_MS (a flood keeps hitting it). */
static void note_connections(struct httpd *s, unsigned n)
{
    if (n >= HTTPD_MAX_CONNECTIONS && s->conns < HTTPD_MAX_CONNECTIONS) {
        uint64_t now = now_ms();
        s->full_times++;
        if (s->full_at == 0 || now - s->full_at >= LOG_WINDOW_MS) {
            char times[64] = "";
            if (s->full_times > 1)
                snprintf(times, sizeof(times), " (reached %u times since the last report)",
                         s->full_times);
            log_warn("httpd",
                     "%s: %d connections open, the limit%s: new ones wait until one closes or "
                     "times out",
                     s->addr, HTTPD_MAX_CONNECTIONS, times);
            s->full_at = now;
            s->full_times = 0;
            s->full_said = 1;
        }
    } else if (n < HTTPD_MAX_CONNECTIONS && s->conns >= HTTPD_MAX_CONNECTIONS && s->full_said) {
        /* Once per report: a flood goes over and under the cap with every connection. */
        log_debug("httpd", "%s: below the connection limit again", s->addr);
        s->full_said = 0;
    }
    s->conns = n;
}

static void run_mhd(struct httpd *s)
{
    const union MHD_DaemonInfo *info;
    MHD_UNSIGNED_LONG_LONG ms = 0;
    unsigned before = s->conns, n;

    MHD_run(s->mhd);
    info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    n = info ? info->num_connections : 0;
    note_connections(s, n);
    /* MHD puts its listening socket back into its epoll set (after the cap, or after running
     * out of descriptors) only at the start of a run, and nothing would wake us for that: when
     * connections went away, run once more right after this one. */
    if (n < before)
        ms = 0;
    else if (MHD_get_timeout(s->mhd, &ms) != MHD_YES) {
        uv_timer_stop(&s->timer);
        return;
    }
    uv_timer_start(&s->timer, on_timer, (uint64_t)ms, 0);
}

static void on_timer(uv_timer_t *t)
{
    run_mhd(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status; /* an error on the epoll descriptor: MHD_run() sees it too */
    (void)events;
    run_mhd(p->data);
}

/* "IPV4:PORT" / "[IPV6]:PORT" -> a socket address; host names are refused (bind exactly one). */
static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len)
{
    const char *colon = strrchr(listen, ':');
    char host[INET6_ADDRSTRLEN + 1], *end;
    long port;
    size_t l;

    if (!colon)
        return -EINVAL;
    port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 0 || port > 65535)
        return -EINVAL;
    l = (size_t)(colon - listen);
    memset(ss, 0, sizeof(*ss));
    if (l >= 2 && listen[0] == '[' && listen[l - 1] == ']') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        if (l - 2 >= sizeof(host))
            return -EINVAL;
        memcpy(host, listen + 1, l - 2);
        host[l - 2] = '\0';
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            return -EINVAL;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
        if (l >= sizeof(host))
            return -EINVAL;
        memcpy(host, listen, l);
        host[l] = '\0';
        if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
            return -EINVAL;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof(*a4);
    }
    return 0;
}

/* A listening socket on exactly sa; *port gets the port (the kernel's pick for 0). -errno. */
static int open_listener(const struct sockaddr_storage *sa, socklen_t len, int *fd_out, int *port)
{
    struct sockaddr_storage got;
    socklen_t gotlen = sizeof(got);
    int one = 1, r;
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    if (fd < 0)
        return -errno;
    /* REUSEADDR: a restart must not wait for the old process's TIME_WAIT connections; it does
     * not let two live listeners share the port. V6ONLY: "[::]" means IPv6 only, not also every
     * IPv4 address (issue 10: the listener must be exactly what is configured). */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (sa->ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
        bind(fd, (const struct sockaddr *)sa, len) != 0 || listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&got, &gotlen) != 0) {
        r = -errno;
        close(fd);
        return r;
    }
    *port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                            : ((struct sockaddr_in *)&got)->sin_port);
    *fd_out = fd;
    return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct httpd *s = h->data;
    if (--s->handles > 0)
        return;
    /* libuv no longer watches MHD's epoll descriptor: MHD may close it now. */
    MHD_stop_daemon(s->mhd);
    log_flush_dropped(s);
    free(s);
}

int httpd_new(struct httpd **out, uv_loop_t *loop, const char *listen, httpd_handler h,
              void *userdata, char *err, size_t errlen)
{
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    const union MHD_DaemonInfo *info;
    struct httpd *s;
    int fd = -1, r;

    if (parse_listen(listen, &sa, &salen) != 0) {
        snprintf(err, errlen,
                 "http.listen: \"%s\" is not IPV4:PORT or [IPV6]:PORT (an address, not a name)",
                 listen);
        return -EINVAL;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->handler = h;
    s->userdata = userdata;
    r = open_listener(&sa, salen, &fd, &s->port);
    if (r) {
        snprintf(err, errlen, "http.listen: %s: %s", listen,
                 r == -EADDRINUSE ? "address in use" : strerror(-r));
        goto fail;
    }
    snprintf(s->addr, sizeof(s->addr), "%.*s:%d", (int)(strrchr(listen, ':') - listen), listen,
             s->port);
    /* The logger comes first: MHD reports a bad option before it on stderr by itself. */
    s->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, s,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, MHD_OPTION_LISTEN_SOCKET,
                              fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTPD_MAX_CONNECTIONS,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTPD_IDLE_TIMEOUT_S,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTPD_CONN_MEMORY,
                              MHD_OPTION_END);
    if (!s->mhd) {
        /* MHD 0.9.75 closes the socket it was given on some failure paths and not on others
         * (daemon.c, MHD_start_daemon_va): close it only if it is still open. Nothing else runs
         * between its failure and this check on this thread. */
        if (fcntl(fd, F_GETFD) != -1)
            close(fd);
        r = -EIO;
        snprintf(err, errlen, "http.listen: %s: libmicrohttpd cannot start", listen);
        goto fail;
    }
    info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    r = info ? uv_poll_init(loop, &s->poll, info->epoll_fd) : UV_EINVAL;
    if (r) {
        snprintf(err, errlen, "http.listen: %s: cannot watch libmicrohttpd: %s", listen,
                 uv_strerror(r));
        r = -EIO;
        goto fail_mhd;
    }
    s->poll.data = s;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->handles = 2;
    uv_poll_start(&s->poll, UV_READABLE, on_poll);
    run_mhd(s); /* arms the timer; MHD adds the listening socket to its epoll set on a run */
    log_info("httpd", "listening on %s (/healthz, /readyz, /metrics)", s->addr);
    *out = s;
    return 0;

fail_mhd:
    MHD_stop_daemon(s->mhd);
fail:
    free(s);
    return r;
}

int httpd_port(const struct httpd *s)
{
    return s->port;
}

void httpd_free(struct httpd *s)
{
    int fd;

    if (!s)
        return;
    /* Let go of the port now (a reload may bind it again at once); MHD closes the
     * connections when the handles are closed. */
    fd = MHD_quiesce_daemon(s->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
}
