/*
 * YouTrack project-list poller: fetches every page of /api/admin/projects (or the 2017.x
 * /rest API), and classifies every failure. A poll either yields the complete list or fails as
 * a whole; a partial list never leaves this module.
 */
#ifndef YTB_YOUTRACK_H
#define YTB_YOUTRACK_H

#include <stddef.h>

#include "conf.h"
#include "http.h"
#include "project.h"

enum youtrack_error {
    YOUTRACK_OK = 0,
    YOUTRACK_ERR_AUTH,     /* 401/403, a guest session */
    YOUTRACK_ERR_NETWORK,  /* connect, timeout, TLS, dropped connection */
    YOUTRACK_ERR_SERVER,   /* 5xx, 429 */
    YOUTRACK_ERR_PROTOCOL, /* HTML, redirects away, bad JSON or shape, over the cap, other 4xx */
};

/* "ok", "auth", "network", "server", "protocol". */
const char *youtrack_error_name(enum youtrack_error e);

struct youtrack_result {
    enum youtrack_error error;
    char message[512]; /* for the log: what failed and where; never a secret */
    long retry_after;  /* seconds the server asked us to wait, -1 if it did not */
    enum youtrack_flavour flavour;
    struct project_list projects; /* complete and finished when error == YOUTRACK_OK */
    size_t pages;                 /* requests made */
    size_t duplicates;            /* ids seen on more than one page */
    double seconds;
};

/* Called once per youtrack_poll(); the callee may move res->projects out (then zero it). */
typedef void (*youtrack_cb)(void *userdata, struct youtrack_result *res);

struct youtrack;

/* conf must outlive the poller. Returns 0 or -ENOMEM. */
int youtrack_new(struct youtrack **out, struct http *http, const struct conf *conf);
void youtrack_free(struct youtrack *yt);

/* Starts a poll; -EBUSY if one is running. */
int youtrack_poll(struct youtrack *yt, youtrack_cb cb, void *userdata);

/* Abandons a running poll (no callback). */
void youtrack_cancel(struct youtrack *yt);

/* The flavour detected so far (api = "auto" starts unknown). */
enum youtrack_flavour youtrack_flavour(const struct youtrack *yt);

/*
 * Parsers of one response body, pure, for the poller, the fuzz harness and the benchmark.
 * Each appends to into and returns the number of array elements read (>= 0), or -EPROTO with a
 * message in err. A body that fails leaves into with whatever was appended: callers discard it.
 */
long youtrack_parse_projects(const char *body, size_t len, struct project_list *into, char *err,
                             size_t errlen);
/* /rest/admin/project: [{"id": "SHORT", "url": "..."}]. */
long youtrack_parse_legacy_list(const char *body, size_t len, struct project_list *into, char *err,
                                size_t errlen);
/* /rest/project/all?verbose=false: [{"name": "...", "shortName": "..."}]; fills names in a
 * finished list keyed by short name. */
long youtrack_parse_legacy_names(const char *body, size_t len, struct project_list *list, char *err,
                                 size_t errlen);

#endif
