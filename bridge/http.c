/*
 * HTTP client: curl multi driven by libuv poll handles and one libuv timer.
 *
 * Invariants: every easy handle belongs to exactly one struct http_xfer, which is on the
 * client's list until it completes or is cancelled; a socket's uv_poll_t is closed (never
 * freed directly) when curl says CURL_POLL_REMOVE; callbacks run after the transfer left the
 * multi handle, so a callback may start new transfers.
 */
#include "http.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define DEFAULT_TIMEOUT_MS 30000L
#define DEFAULT_MAX_BODY   (1024 * 1024)

struct http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct http_xfer *xfers;    /* active transfers */
    http_start_hook start_hook; /* tests only: http_set_start_hook() */
    void *start_hook_ud;
};

struct http_xfer {
    struct http *h;
    struct http_xfer *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    size_t len, cap, max;
    int over_cap;
    int truncate;
    http_cb cb;
    void *userdata;
    char errbuf[CURL_ERROR_SIZE];
};

struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct http *h;
};

int http_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void http_global_cleanup(void)
{
    curl_global_cleanup();
}

static void check_done(struct http *h);

static void on_sock_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct sock *s = p->data;
    struct http *h = s->h;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    check_done(h);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http *h = userp;
    struct sock *s = socketp;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_sock_closed);
            curl_multi_assign(h->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        s->fd = fd;
        s->h = h;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        curl_multi_assign(h->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

static void on_timer(uv_timer_t *t)
{
    struct http *h = t->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
    struct http *h = userp;
    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

int http_new(struct http **out, uv_loop_t *loop)
{
    struct http *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->loop = loop;
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h);
        return -EIO;
    }
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    *out = h;
    return 0;
}

static void xfer_free(struct http_xfer *x)
{
    struct http *h = x->h;
    if (x->prev)
        x->prev->next = x->next;
    else
        h->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    curl_multi_remove_handle(h->multi, x->easy);
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x->body);
    free(x);
}

static void on_timer_closed(uv_handle_t *handle)
{
    free(handle->data);
}

void http_free(struct http *h)
{
    if (!h)
        return;
    while (h->xfers)
        xfer_free(h->xfers);
    curl_multi_cleanup(h->multi);
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_xfer *x = userp;
    size_t n = size * nmemb;

    if (n > x->max - x->len) {
        if (x->truncate) {
            /* The status is what matters (a chatty webhook receiver): drop the excess. */
            size_t keep = x->max - x->len;
            if (keep && on_write(data, 1, keep, userp) != keep)
                return 0;
            return n;
        }
        x->over_cap = 1;
        return 0; /* curl aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (x->len + n + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 16384;
        while (cap < x->len + n + 1)
            cap *= 2;
        if (cap > x->max + 1)
            cap = x->max + 1;
        char *b = realloc(x->body, cap);
        if (!b)
            return 0;
        x->body = b;
        x->cap = cap;
    }
    memcpy(x->body + x->len, data, n);
    x->len += n;
    x->body[x->len] = '\0';
    return n;
}

static enum http_result classify(CURLcode rc, const struct http_xfer *x)
{
    if (x->over_cap)
        return HTTP_ERR_TOO_BIG;
    switch (rc) {
    case CURLE_OK:
        return HTTP_DONE;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return HTTP_ERR_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return HTTP_ERR_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return HTTP_ERR_TLS;
    case CURLE_FILESIZE_EXCEEDED:
        return HTTP_ERR_TOO_BIG;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
        return HTTP_ERR_BROKEN;
    default:
        return HTTP_ERR_OTHER;
    }
}

static void finish(struct http_xfer *x, CURLcode rc)
{
    struct http_response res = {0};
    char *ct = NULL, *loc = NULL;
    curl_off_t retry = -1;
    char msg[CURL_ERROR_SIZE + 64];

    res.xfer = x;
    res.result = classify(rc, x);
    res.body = x->body ? x->body : "";
    res.body_len = x->len;
    res.retry_after = -1;
    curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME, &res.seconds);
    if (res.result == HTTP_DONE) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &res.status);
        curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
        curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_URL, &loc);
        if (curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &retry) == CURLE_OK && retry >= 0 &&
            http_response_header(&res, "Retry-After"))
            res.retry_after = retry > 86400 ? 86400 : (long)retry;
        res.content_type = ct;
        res.location = res.status >= 300 && res.status < 400 ? loc : NULL;
    } else if (res.result == HTTP_ERR_TOO_BIG) {
        snprintf(msg, sizeof(msg), "response body over the %zu-byte cap", x->max);
        res.error = msg;
    } else {
        /* curl's messages name hosts and ports, never request headers. */
        snprintf(msg, sizeof(msg), "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
        res.error = msg;
    }
    x->cb(x->userdata, &res);
}

static void check_done(struct http *h)
{
    int pending;
    CURLMsg *m;

    for (;;) {
        m = curl_multi_info_read(h->multi, &pending);
        if (!m)
            break;
        if (m->msg != CURLMSG_DONE)
            continue;
        struct http_xfer *x = NULL;
        CURLcode rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(h->multi, x->easy);
        finish(x, rc);
        xfer_free(x);
    }
}

const char *http_response_header(const struct http_response *res, const char *name)
{
    struct curl_header *hd = NULL;
    if (!res->xfer)
        return NULL;
    if (curl_easy_header(res->xfer->easy, name, 0, CURLH_HEADER, -1, &hd) == CURLHE_OK)
        return hd->value;
    return NULL;
}

int http_start(struct http *h, const struct http_request *req, http_cb cb, void *userdata,
               struct http_xfer **out)
{
    struct http_xfer *x;
    CURL *e;

    if (!req->url || !cb)
        return -EINVAL;
    if (h->start_hook) {
        int r = h->start_hook(h->start_hook_ud, req);
        if (r)
            return r;
    }
    x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->h = h;
    x->cb = cb;
    x->userdata = userdata;
    x->max = req->max_body ? req->max_body : DEFAULT_MAX_BODY;
    x->truncate = req->truncate;
    e = x->easy = curl_easy_init();
    if (!e)
        goto fail;
    for (const char *const *hd = req->headers; hd && *hd; hd++) {
        struct curl_slist *l = curl_slist_append(x->headers, *hd);
        if (!l)
            goto fail;
        x->headers = l;
    }
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_VERBOSE, 0L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* whatever this libcurl can decode */
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ytbridge/" YTB_VERSION);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms ? req->timeout_ms : DEFAULT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     req->timeout_ms ? req->timeout_ms : DEFAULT_TIMEOUT_MS);
    if (!x->truncate)
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (req->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
    if (req->cert_file)
        curl_easy_setopt(e, CURLOPT_SSLCERT, req->cert_file);
    if (req->key_file)
        curl_easy_setopt(e, CURLOPT_SSLKEY, req->key_file);
    if (req->method && strcmp(req->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "");
    }
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK)
        goto fail;
    x->next = h->xfers;
    if (h->xfers)
        h->xfers->prev = x;
    h->xfers = x;
    if (out)
        *out = x;
    return 0;
fail:
    if (x->easy)
        curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x);
    return -ENOMEM;
}

void http_set_start_hook(struct http *h, http_start_hook hook, void *userdata)
{
    h->start_hook = hook;
    h->start_hook_ud = userdata;
}

void http_cancel(struct http_xfer *x)
{
    if (x)
        xfer_free(x);
}
