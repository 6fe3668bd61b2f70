/*
 * The small HTTP server for probes and metrics: libmicrohttpd driven from the shared libuv loop
 * (no thread of its own). The only module that includes <microhttpd.h>.
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
 * Listens on exactly listen ("IPV4:PORT", "[IPV6]:PORT"; PORT 0 picks a free one, logged): no
 * other address, no dual-stack. Returns 0, -EINVAL (not an address literal), -EADDRINUSE (the
 * port is taken), or another -errno (cannot listen), with err filled ("http.listen: ADDR: ...").
 */
int httpd_new(struct httpd **out, uv_loop_t *loop, const char *listen, httpd_handler h,
              void *userdata, char *err, size_t errlen);

/* The port actually listened on. */
int httpd_port(const struct httpd *s);

/*
 * Stops listening at once (the port is free when this returns) and closes every connection; the
 * loop finishes the job (handle close callbacks) and frees s. NULL is fine.
 */
void httpd_free(struct httpd *s);

#endif
