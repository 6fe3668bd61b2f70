/* Two-step destruction of lws contexts on a foreign loop (see lwsctx.h). */
#include "lwsctx.h"

#include <libwebsockets.h>
#include <stdlib.h>

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
