/*
 * Asynchronous HTTP client: libcurl's multi interface in socket-action mode on the libuv loop
 * (curl's multi-uv.c shape). With url.c, the only module that includes <curl/curl.h>: this one
 * runs transfers, url.c reads and builds URLs (curl_url, curl_easy_escape).
 *
 * Every body has a hard cap; redirects are never followed (the caller sees the 3xx and its
 * Location and decides); only http and https; TLS verification always on; no verbose output,
 * so request headers (and the tokens in them) never reach a log.
 */
#ifndef YTB_HTTP_H
#define YTB_HTTP_H

#include <stddef.h>
#include <uv.h>

struct http;
struct http_xfer;

enum http_result {
    HTTP_DONE = 0,    /* a complete response arrived; look at status */
    HTTP_ERR_CONNECT, /* DNS, refused, unreachable */
    HTTP_ERR_TIMEOUT,
    HTTP_ERR_TLS,
    HTTP_ERR_TOO_BIG, /* body over max_body */
    HTTP_ERR_BROKEN,  /* connection dropped mid-response, bad framing, bad gzip */
    HTTP_ERR_OTHER,
};

struct http_request {
    const char *method; /* NULL: GET */
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
    const char *body;           /* for POST/PUT; copied by libcurl */
    size_t body_len;
    long timeout_ms;       /* whole transfer; 0: 30 s */
    size_t max_body;       /* 0: 1 MiB */
    int truncate;          /* keep the first max_body bytes of a longer body instead of failing */
    const char *ca_file;   /* extra CA bundle, or NULL */
    const char *cert_file; /* TLS client certificate (PEM), or NULL */
    const char *key_file;  /* its private key (PEM), or NULL */
};

struct http_response {
    enum http_result result;
    long status;      /* 0 unless result == HTTP_DONE */
    const char *body; /* NUL-terminated (the NUL is not counted); never NULL */
    size_t body_len;
    const char *content_type; /* NULL when absent */
    const char *location;     /* redirect target for 3xx, NULL otherwise */
    long retry_after;         /* seconds from Retry-After, -1 when absent */
    const char *error;        /* what went wrong when result != HTTP_DONE; no secrets */
    double seconds;           /* total time */
    struct http_xfer *xfer;   /* for http_response_header() */
};

/*
 * Called once per started request (not after http_cancel()). The response and everything it
 * points to lives until the callback returns. The callback may start new requests.
 */
typedef void (*http_cb)(void *userdata, const struct http_response *res);

/* Creates a client on loop. Returns 0 or -ENOMEM/-EIO. */
int http_new(struct http **out, uv_loop_t *loop);

/*
 * Cancels every request (no callbacks) and releases the client; the last memory goes when the
 * loop runs the close callbacks. Must not be called from an http_cb. NULL is fine.
 */
void http_free(struct http *h);

/* Starts a request. Returns 0 (and *out if out is not NULL), or -EINVAL/-ENOMEM. */
int http_start(struct http *h, const struct http_request *req, http_cb cb, void *userdata,
               struct http_xfer **out);

/*
 * Fault injection, for tests only (the daemon never sets it). hook runs first in every
 * http_start() on h, with the request; a non-zero return (a -errno) makes that http_start()
 * fail with it before anything is allocated, exactly as a refused transfer would, and no
 * callback follows. The seam is compiled in always, so tests exercise the same binary code as
 * the daemon, and is per client, so a test's fault cannot leak into another client. It covers
 * the one failure the callers cannot provoke through a fake server: a request refused at start
 * (out of memory, libcurl refusing the handle) in the middle of a poll. NULL clears it.
 */
typedef int (*http_start_hook)(void *userdata, const struct http_request *req);
void http_set_start_hook(struct http *h, http_start_hook hook, void *userdata);

/* Cancels a request that has not completed; its callback will not run. */
void http_cancel(struct http_xfer *x);

/* The value of response header name (case-insensitive; the last one if repeated), or NULL. */
const char *http_response_header(const struct http_response *res, const char *name);

/* Sets up libcurl's global state once per process, before any http_new(). Returns 0 or -EIO. */
int http_global_init(void);
void http_global_cleanup(void);

#endif
