/*
 * The small HTTP server for probes and metrics: libwebsockets on the shared libuv loop. The
 * only module that includes <libwebsockets.h>.
 */
#ifndef YTB_HTTPD_H
#define YTB_HTTPD_H

#include <stddef.h>
#include <uv.h>

/*
 * Answers one GET (or HEAD) of path: fills *status (200, 404, 503...), *content_type (static)
 * and *body (malloc'ed, the server frees it). Returns 0, or -ENOMEM (the server answers 500).
 */
typedef int (*httpd_handler)(void *userdata, const char *path, int *status,
                             const char **content_type, char **body);

struct httpd;

/*
 * Listens on listen ("HOST:PORT", "[V6]:PORT"; PORT 0 picks a free one, logged). Returns 0,
 * -EINVAL (bad address) or -EIO (cannot listen), with err filled.
 */
int httpd_new(struct httpd **out, uv_loop_t *loop, const char *listen, httpd_handler h,
              void *userdata, char *err, size_t errlen);

/* The port actually listened on. */
int httpd_port(const struct httpd *s);

/*
 * Stops listening and closes every connection; the loop finishes the job, and lwsctx_reap()
 * releases the rest once the loop has stopped. NULL is fine.
 */
void httpd_free(struct httpd *s);

#endif
