/*
 * A client of etcd's v3 JSON API (the gRPC gateway every etcd since 3.4 serves at /v3/...),
 * over http.c, so libcurl stays behind its one boundary. The facts it relies on (paths, the
 * base64 keys and values, 64-bit numbers as strings, fields left out when zero) are in
 * doc/etcd.md with their public sources.
 *
 * One client talks to every endpoint of a cluster: a call goes to the endpoint that answered
 * last, and on a connection failure, a timeout or an answer that is not etcd's (5xx, "no
 * leader") moves on to the next one, until each was tried once. Only then does the call fail,
 * so a dead member is skipped, not fatal. With a user, the client gets a token from
 * /v3/auth/authenticate before its first call and again when etcd says it is no longer valid;
 * the password and the token never reach a log or an error message.
 *
 * Two ways to call, one request path:
 *   - etcd_call(): asynchronous, on the daemon's loop (elections, keep-alives, watching);
 *   - etcd_call_sync(): blocks until the answer (the state backend, state_etcd.c: the state
 *     interface blocks by contract, like an fsync). It runs the same code on a private loop,
 *     bounded by the timeouts below.
 */
#ifndef YTB_ETCD_H
#define YTB_ETCD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct etcd;

struct etcd_opts {
    const char *const *endpoints; /* "http(s)://host:port", no path */
    size_t n_endpoints;
    const char *ca_file;   /* NULL: the system's CAs */
    const char *cert_file; /* client certificate and key, or NULL */
    const char *key_file;
    const char *user;     /* NULL: no authentication */
    const char *password; /* secret */
    long timeout_ms;      /* per endpoint and attempt; 0: 2000 */
};

/*
 * Creates a client on loop (asynchronous calls; NULL: etcd_call_sync() only) plus its private
 * loop. 0 or -errno (err).
 */
int etcd_new(struct etcd **out, uv_loop_t *loop, const struct etcd_opts *o, char *err,
             size_t errlen);

/* Cancels every call (no callbacks) and frees the client. NULL is fine. */
void etcd_free(struct etcd *e);

/* The outcome of one call. */
struct etcd_reply {
    /*
     * 0, or: -EHOSTUNREACH (no endpoint answered), -EACCES (authentication refused),
     * -E2BIG (request over etcd's limit), -ENOSPC (etcd's space quota is exhausted),
     * -EPROTO (an answer that is not etcd's JSON), -EIO (any other error etcd reported).
     */
    int error;
    char message[256];    /* what went wrong, for a log line; no secrets */
    json_t *body;         /* the answer's JSON on success (borrowed: lives as long as the reply) */
    int64_t revision;     /* header.revision, 0 when absent */
    const char *endpoint; /* the endpoint that answered, or NULL */
};

typedef void (*etcd_cb)(void *userdata, const struct etcd_reply *r);

/*
 * Posts body (a JSON object; the call takes the reference) to path ("/v3/kv/txn") on the loop;
 * cb runs once with the reply, which lives until it returns. Returns 0, or -errno and no
 * callback. The call may take up to n_endpoints * timeout_ms.
 *
 * A request that timed out on one endpoint may still have been applied there before it is
 * repeated on the next: every call is at least once, so writes should be idempotent (a put of
 * the same value, a delete) or guarded by a compare that a second application fails.
 */
int etcd_call(struct etcd *e, const char *path, json_t *body, etcd_cb cb, void *userdata);

/*
 * The same call, blocking until it is done. *out is filled (release with etcd_reply_fini())
 * and its error returned. Never call it from inside an etcd_cb.
 */
int etcd_call_sync(struct etcd *e, const char *path, json_t *body, struct etcd_reply *out);
void etcd_reply_fini(struct etcd_reply *r);

/* Cancels every asynchronous call in flight (no callbacks). */
void etcd_cancel_all(struct etcd *e);

/* Counts of calls by result ("ok", "error", "unreachable"), for /metrics. */
struct etcd_counts {
    uint64_t ok, error, unreachable;
};
void etcd_counts(const struct etcd *e, struct etcd_counts *out);

/*
 * Request pieces (the caller assembles them into the body of a call; every function returns a
 * new reference, NULL on ENOMEM; keys and values are raw bytes, encoded here). The etcd_op_*
 * are a txn's RequestOps ({"request_put": {...}}); the one member's value is also the body of
 * the matching single call (/v3/kv/put, /v3/kv/deleterange, /v3/kv/range), where the caller may
 * add the request's other fields ("limit", "revision", "keys_only", ...).
 */
/*
 * A range_end for every key that starts with prefix (etcd's "prefix + 1" rule); caller frees.
 * "" when no key is greater (a prefix of 0xff bytes): as a range_end below, "" means etcd's
 * "\0", every key from key on.
 */
char *etcd_prefix_end(const char *prefix);
json_t *etcd_op_put(const char *key, const void *value, size_t len, int64_t lease);
json_t *etcd_op_delete(const char *key, const char *range_end); /* range_end NULL: one key */
json_t *etcd_op_range(const char *key, const char *range_end);
/* The body of the single call for op: the value of its one member (steals op; NULL on NULL). */
json_t *etcd_op_body(json_t *op);
json_t *etcd_cmp_lease(const char *key, int64_t lease);     /* key's lease == lease */
json_t *etcd_cmp_create(const char *key, int64_t revision); /* create_revision == (0: absent) */
json_t *etcd_cmp_value(const char *key, const void *value, size_t len); /* value == */
/* {"compare": compare, "success": success, "failure": failure}; steals all three (NULL: []). */
json_t *etcd_txn(json_t *compare, json_t *success, json_t *failure);

/* Answer pieces. */
struct etcd_kv {
    char *key; /* decoded, NUL-terminated (keys and values may hold NULs: use the lengths) */
    size_t key_len;
    char *value;
    size_t value_len;
    int64_t create_revision, mod_revision, version, lease;
};
/*
 * Decodes the "kvs" of a range answer (or of a txn's response_range: pass that object) into
 * *out (free with etcd_kvs_free()). An absent "kvs" is no keys. 0, -EPROTO or -ENOMEM.
 */
int etcd_kvs(const json_t *range_response, struct etcd_kv **out, size_t *n);
void etcd_kvs_free(struct etcd_kv *v, size_t n);
/* A 64-bit number of an answer (a string or a number; absent: 0). */
int64_t etcd_int(const json_t *obj, const char *field);
/* Whether a txn answer says "succeeded" (absent means false). */
int etcd_txn_succeeded(const json_t *body);

/* The largest answer a call accepts (ranges of big values must page with "limit"). */
#define ETCD_ANSWER_MAX (8u * 1024 * 1024)

/* Base64 as etcd writes keys and values: a new NUL-terminated string, or NULL on ENOMEM. */
char *etcd_base64(const void *p, size_t n);
/*
 * Decodes len bytes of base64 (padded, no blanks) into *out (NUL-terminated, caller frees) and
 * *outlen. 0, -EPROTO (not base64) or -ENOMEM.
 */
int etcd_unbase64(const char *s, size_t len, char **out, size_t *outlen);

/* What the client does with an answer (etcd_answer()). */
enum etcd_verdict {
    ETCD_VERDICT_DONE,   /* the call's outcome: r->error 0 (r->body set) or an error */
    ETCD_VERDICT_NEXT,   /* this member cannot serve now (no leader, 5xx): try another */
    ETCD_VERDICT_REAUTH, /* the token is missing or expired: log in again and repeat */
};
/*
 * Reads one HTTP answer (status, body of len bytes) the way every call does, into *r
 * (etcd_reply_fini() it): for the fuzz harness and the tests; the client uses it itself.
 */
enum etcd_verdict etcd_answer(long status, const char *body, size_t len, struct etcd_reply *r);

#endif
