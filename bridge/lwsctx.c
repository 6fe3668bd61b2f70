/*
 * libwebsockets contexts: logging, two-step destruction on a foreign loop, and the process's
 * one client context (lwsctx.h).
 */
#include "lwsctx.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

struct retired {
    struct retired *next;
    struct lws_context **pctx;
    void *owner;
};

static struct retired *retired;

void lwsctx_retire(struct lws_context **pctx, void *owner)
{
    struct retired *r = malloc(sizeof(*r));

    if (*pctx)
        lws_context_destroy(*pctx);
    if (!r) {
        log_err("main", "out of memory retiring a websocket context; it is leaked");
        return;
    }
    r->pctx = pctx;
    r->owner = owner;
    r->next = retired;
    retired = r;
}

void lwsctx_reap(void)
{
    while (retired) {
        struct retired *r = retired;
        retired = r->next;
        if (*r->pctx)
            lws_context_destroy(*r->pctx);
        free(r->owner);
        free(r);
    }
}

static void on_lws_log(int level, const char *line)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", line);
    buf[strcspn(buf, "\r\n")] = '\0';
    if (level & LLL_ERR)
        log_err("lws", "%s", buf);
    else if (level & LLL_WARN)
        log_warn("lws", "%s", buf);
    else
        log_debug("lws", "%s", buf);
}

void lwsctx_logging(void)
{
    lws_set_log_level(LLL_ERR | LLL_WARN | (log_threshold >= LOGL_DEBUG ? LLL_NOTICE : 0),
                      on_lws_log);
}

#define CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

/*
 * The client context: one for the process, kept across reloads (lws cannot finish destroying a
 * context on a foreign loop that keeps running, so a context per reload would stay until exit),
 * made when the first URL says whether it needs TLS: a TLS client context (OpenSSL's algorithm
 * caches and the CA store) costs about 3 MiB, which a ws:// test setup does without. Slack's
 * URLs are always wss://.
 */
struct client_ctx {
    struct lws_context *ctx; /* lws writes NULL here once it is gone */
    int tls;
};

static struct client_ctx *client;

struct lws_context *lwsctx_client(uv_loop_t *loop, int tls, const struct lws_protocols *protocols,
                                  const struct lws_retry_bo *policy, int *has_tls)
{
    struct lws_context_creation_info info;
    void *loops[1] = {loop};
    struct client_ctx *h;

    if (client && (client->tls || !tls)) {
        *has_tls = client->tls;
        return client->ctx;
    }
    lwsctx_client_retire(); /* a ws:// one, no longer enough */
    h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    lwsctx_logging();
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_LIBUV | (tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0);
    info.foreign_loops = loops;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.pcontext = &h->ctx;
    info.retry_and_idle_policy = policy;
    info.timeout_secs = 20;        /* connect, TLS and upgrade */
    info.fd_limit_per_thread = 16; /* a client's few sockets (+ lws's own) */
    if (tls && access(CA_BUNDLE, R_OK) == 0)
        info.client_ssl_ca_filepath = CA_BUNDLE;
    h->ctx = lws_create_context(&info);
    if (!h->ctx) {
        free(h);
        return NULL;
    }
    h->tls = tls;
    client = h;
    *has_tls = tls;
    return h->ctx;
}

void lwsctx_client_retire(void)
{
    if (client)
        lwsctx_retire(&client->ctx, client);
    client = NULL;
}
