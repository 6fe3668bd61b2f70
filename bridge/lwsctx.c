/* libwebsockets contexts: logging and two-step destruction on a foreign loop (lwsctx.h). */
#include "lwsctx.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
