/*
 * HTTP server: GET/HEAD only, one small dynamic answer per request, bounded header size and
 * timeouts (lws drops a client that does not finish its request in time), no files, no
 * websockets. lws logs go through our logger.
 *
 * Ownership: the lws context lives on the shared loop (LWS_SERVER_OPTION_LIBUV with a foreign
 * loop); httpd_free() retires it (lwsctx.h): lws closes its handles as the loop goes on.
 */
#include "httpd.h"

#include <errno.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "lwsctx.h"

#define MAX_HEADER_DATA 2048 /* request line + headers: probes and scrapers are small */
#define TIMEOUT_SECS    10

struct httpd {
    struct lws_context *ctx; /* lws writes NULL here once the context is fully gone */
    httpd_handler handler;
    void *userdata;
    int port;
};

struct session {
    char *body;
    size_t len, sent;
};

static int send_headers(struct lws *wsi, unsigned status, const char *type, size_t len)
{
    unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start,
                                      *end = buf + sizeof(buf) - 1;
    if (lws_add_http_common_headers(wsi, status, type, (lws_filepos_t)len, &p, end))
        return -1;
    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p, end))
        return -1;
    return lws_finalize_write_http_header(wsi, start, &p, end) ? -1 : 0;
}

static int on_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
    struct session *ss = user;
    struct httpd *s = lws_context_user(lws_get_context(wsi));

    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        int is_get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
        int is_head = lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0;
        const char *type = "text/plain; charset=utf-8";
        int status = 500;
        char *body = NULL;

        memset(ss, 0, sizeof(*ss));
        if (!is_get && !is_head) {
            /* No body: the answer is complete at once, whatever request body is still on its
             * way (lws never asks to write the body of such a request). */
            body = strdup("");
            status = 405;
        } else if (s->handler(s->userdata, (const char *)in, &status, &type, &body) != 0 || !body) {
            free(body);
            body = strdup("internal error\n");
            status = 500;
        }
        if (!body)
            return -1;
        ss->body = body;
        ss->len = strlen(body);
        log_debug("httpd", "%s %s -> %d",
                  is_head  ? "HEAD"
                  : is_get ? "GET"
                           : "other",
                  (const char *)in, status);
        if (send_headers(wsi, (unsigned)status, type, ss->len))
            return -1;
        if (is_head || ss->len == 0) {
            free(ss->body);
            ss->body = NULL;
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        unsigned char buf[LWS_PRE + 4096];
        if (!ss->body)
            return 0;
        size_t n = ss->len - ss->sent;
        if (n > sizeof(buf) - LWS_PRE)
            n = sizeof(buf) - LWS_PRE;
        memcpy(buf + LWS_PRE, ss->body + ss->sent, n);
        int last = ss->sent + n == ss->len;
        if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) !=
            (int)n)
            return -1;
        ss->sent += n;
        if (!last) {
            lws_callback_on_writable(wsi);
            return 0;
        }
        free(ss->body);
        ss->body = NULL;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    case LWS_CALLBACK_HTTP_BODY:
        return 0; /* a request body is read and ignored (it only gets a 405) */

    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (ss) {
            free(ss->body);
            ss->body = NULL;
        }
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    {"http", on_http, sizeof(struct session), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* "host:port" / "[v6]:port" -> host (no brackets) and port. */
static int parse_listen(const char *listen, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(listen, ':');
    char *end;
    long p;

    if (!colon)
        return -EINVAL;
    p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || p < 0 || p > 65535)
        return -EINVAL;
    size_t l = (size_t)(colon - listen);
    if (l >= 2 && listen[0] == '[' && listen[l - 1] == ']') {
        listen++;
        l -= 2;
    }
    if (l == 0 || l >= hostlen)
        return -EINVAL;
    memcpy(host, listen, l);
    host[l] = '\0';
    *port = (int)p;
    return 0;
}

int httpd_new(struct httpd **out, uv_loop_t *loop, const char *listen, httpd_handler h,
              void *userdata, char *err, size_t errlen)
{
    struct lws_context_creation_info info;
    void *loops[1] = {loop};
    char host[128];
    int port;
    struct httpd *s;

    if (parse_listen(listen, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "http.listen: \"%s\" is not HOST:PORT", listen);
        return -EINVAL;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->handler = h;
    s->userdata = userdata;
    lwsctx_logging();
    memset(&info, 0, sizeof(info));
    info.options =
        LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
    info.foreign_loops = loops;
    info.port = port; /* 0: the kernel picks one, read back below */
    info.iface = host;
    info.protocols = protocols;
    info.user = s;
    info.max_http_header_data = MAX_HEADER_DATA;
    info.timeout_secs = TIMEOUT_SECS;
    info.server_string = "ytbridge";
    info.pcontext = &s->ctx;
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        snprintf(err, errlen, "cannot listen on %s", listen);
        free(s);
        return -EIO;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(s->ctx, "default");
    s->port = vh ? lws_get_vhost_listen_port(vh) : port;
    log_info("httpd", "listening on %s%s%s:%d (/healthz, /readyz, /metrics)",
             strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", s->port);
    *out = s;
    return 0;
}

int httpd_port(const struct httpd *s)
{
    return s->port;
}

void httpd_free(struct httpd *s)
{
    if (s)
        lwsctx_retire(&s->ctx, s);
}
