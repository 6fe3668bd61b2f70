/*
 * What every libwebsockets context of ours shares: its log lines go to our logger, and it is
 * retired in two steps. Retiring libwebsockets contexts that run on our libuv loop
 * (LWS_SERVER_OPTION_LIBUV with a foreign loop). lws destroys such a context in two steps: the
 * first call closes its handles, and only a call after the loop has run them down frees the rest.
 */
#ifndef YTB_LWSCTX_H
#define YTB_LWSCTX_H

struct lws_context;

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

#endif
