/*
 * What every libwebsockets context of ours shares: its log lines go to our logger, and it is
 * retired in two steps. Retiring libwebsockets contexts that run on our libuv loop
 * (LWS_SERVER_OPTION_LIBUV with a foreign loop). lws destroys such a context in two steps: the
 * first call closes its handles, and only a call after the loop has run them down frees the rest.
 * Also the one websocket client context of the process, which the Slack clients share.
 */
#ifndef YTB_LWSCTX_H
#define YTB_LWSCTX_H

#include <uv.h>

struct lws_context;
struct lws_protocols;
struct lws_retry_bo;

/*
 * First step now (NULL *pctx is fine); the second, and free(owner), in lwsctx_reap(). pctx is
 * the creation info's pcontext: it lives inside owner, and lws clears it once the context is
 * gone.
 */
void lwsctx_retire(struct lws_context **pctx, void *owner);

/* After the loop has run dry: finishes every retired context and frees its owner. */
void lwsctx_reap(void);

/*
 * Routes libwebsockets' own log lines (errors, warnings; notices at debug level) into ours,
 * module "lws". Call before creating a context (the setting is process-wide).
 */
void lwsctx_logging(void);

/*
 * The process's websocket client context on loop, made on first use and kept across reloads
 * (see lwsctx.c for why). tls: the caller needs wss://; a context made for ws:// only is
 * retired and replaced then (no socket may use it any more). Returns the context (borrowed,
 * with *has_tls saying whether it does TLS), or NULL when it cannot be made.
 */
struct lws_context *lwsctx_client(uv_loop_t *loop, int tls, const struct lws_protocols *protocols,
                                  const struct lws_retry_bo *policy, int *has_tls);

/* Retires the client context (lwsctx_retire()); the next lwsctx_client() makes a new one. */
void lwsctx_client_retire(void);

#endif
