/*
 * The etcd client (bridge/etcd.c): the request and answer pieces on their own, then calls
 * against a real single-member etcd started here (tests/etcd_server.h; skipped, exit 77, when
 * there is no etcd binary): both ways of calling, base64 with NUL bytes, failover past a dead
 * endpoint, every endpoint dead, a failing compare, leases, etcd's limits and authentication.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "etcd.h"
#include "etcd_server.h"
#include "http.h"
#include "test.h"

static struct etcd_server srv;
static int dead_port; /* nobody listens there */

static struct etcd *client(const char *const *eps, size_t n, const char *user, const char *pw)
{
    struct etcd_opts o = {.endpoints = eps, .n_endpoints = n, .user = user, .password = pw};
    struct etcd *e = NULL;
    char err[256];

    CHECK_INT(etcd_new(&e, NULL, &o, err, sizeof(err)), 0);
    return e;
}

static struct etcd *client1(void)
{
    const char *eps[] = {srv.url};
    return client(eps, 1, NULL, NULL);
}

/* ---- pieces, no server ---- */

static void test_base64(void)
{
    static const char raw[] = "a\0b\0\0\xff\x01z";
    char *out = NULL;
    size_t n = 0;

    for (size_t len = 0; len < sizeof(raw); len++) {
        char *b = etcd_base64(raw, len);
        CHECK(b != NULL);
        CHECK_INT(strlen(b) % 4, 0);
        CHECK_INT(etcd_unbase64(b, strlen(b), &out, &n), 0);
        CHECK_INT(n, len);
        CHECK(memcmp(out, raw, len) == 0);
        CHECK_INT(out[n], 0);
        free(out);
        free(b);
    }
    static const char *const bad[] = {"abc", "ab=c", "a===", " YQ==", "YQ== ", "Y Q=", "@@@@"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_INT(etcd_unbase64(bad[i], strlen(bad[i]), &out, &n), -EPROTO);
        CHECK(out == NULL);
    }
    CHECK_INT(etcd_unbase64("YQ==", 4, &out, &n), 0);
    CHECK_INT(n, 1);
    CHECK_STR(out, "a");
    free(out);
}

static void test_prefix_end(void)
{
    char *p = etcd_prefix_end("/ytb/a/");
    CHECK_STR(p, "/ytb/a0");
    free(p);
    p = etcd_prefix_end("ab\xff\xff");
    CHECK_STR(p, "ac");
    free(p);
    p = etcd_prefix_end("\xff");
    CHECK_STR(p, "");
    free(p);
}

static void test_ops_shape(void)
{
    json_t *op = etcd_op_put("k", "v\0w", 3, 42);
    char *s = json_dumps(op, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(s, "{\"request_put\":{\"key\":\"aw==\",\"lease\":\"42\",\"value\":\"dgB3\"}}");
    free(s);
    json_decref(op);
    op = etcd_op_delete("a", "");
    s = json_dumps(op, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(s, "{\"request_delete_range\":{\"key\":\"YQ==\",\"range_end\":\"AA==\"}}");
    free(s);
    json_decref(op);
    op = etcd_cmp_lease("L", 7);
    s = json_dumps(op, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(s, "{\"key\":\"TA==\",\"lease\":\"7\",\"result\":\"EQUAL\",\"target\":\"LEASE\"}");
    free(s);
    json_decref(op);
    op = etcd_txn(NULL, NULL, NULL);
    s = json_dumps(op, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(s, "{\"compare\":[],\"failure\":[],\"success\":[]}");
    free(s);
    json_decref(op);
}

static enum etcd_verdict answer(long status, const char *body, struct etcd_reply *r)
{
    enum etcd_verdict v = etcd_answer(status, body, strlen(body), r);
    etcd_reply_fini(r);
    return v;
}

/* The answers etcd 3.4.23 gave here (doc/etcd.md), and what the client makes of them. */
static void test_answers(void)
{
    struct etcd_reply r;

    const char *ok = "{\"header\":{\"revision\":\"12\"},\"count\":\"0\"}";
    CHECK_INT(etcd_answer(200, ok, strlen(ok), &r), ETCD_VERDICT_DONE);
    CHECK_INT(r.error, 0);
    CHECK_INT(r.revision, 12);
    CHECK(r.body != NULL);
    etcd_reply_fini(&r);
    CHECK_INT(answer(200, "{\"result\":{\"header\":{\"revision\":\"3\"},\"ID\":\"5\"}}", &r),
              ETCD_VERDICT_DONE);
    CHECK_INT(r.revision, 3);
    CHECK_INT(answer(400,
                     "{\"error\":\"etcdserver: request is too large\",\"message\":\"etcdserver: "
                     "request is too large\",\"code\":3}",
                     &r),
              ETCD_VERDICT_DONE);
    CHECK_INT(r.error, -E2BIG);
    CHECK_STR(r.message, "etcdserver: request is too large");
    CHECK_INT(answer(429,
                     "{\"error\":\"etcdserver: mvcc: database space exceeded\",\"message\":"
                     "\"etcdserver: mvcc: database space exceeded\",\"code\":8}",
                     &r),
              ETCD_VERDICT_DONE);
    CHECK_INT(r.error, -ENOSPC);
    CHECK_INT(answer(503, "{\"error\":\"etcdserver: no leader\",\"code\":14}", &r),
              ETCD_VERDICT_NEXT);
    CHECK_INT(answer(503, "{\"message\":\"etcdserver: request timed out\",\"code\":14}", &r),
              ETCD_VERDICT_NEXT);
    CHECK_INT(answer(502, "<html>bad gateway</html>", &r), ETCD_VERDICT_NEXT);
    CHECK_INT(answer(401, "{\"message\":\"etcdserver: invalid auth token\",\"code\":16}", &r),
              ETCD_VERDICT_REAUTH);
    CHECK_INT(answer(400, "{\"message\":\"etcdserver: user name is empty\",\"code\":3}", &r),
              ETCD_VERDICT_REAUTH);
    CHECK_INT(answer(403, "{\"message\":\"etcdserver: permission denied\",\"code\":7}", &r),
              ETCD_VERDICT_DONE);
    CHECK_INT(r.error, -EACCES);
    CHECK_INT(answer(400, "{\"message\":\"etcdserver: duplicate key given in txn request\"}", &r),
              ETCD_VERDICT_DONE);
    CHECK_INT(r.error, -EIO);
    CHECK_INT(answer(404, "Not Found\n", &r), ETCD_VERDICT_DONE);
    CHECK_INT(r.error, -EPROTO);
    CHECK_INT(answer(200, "[1]", &r), ETCD_VERDICT_DONE);
    CHECK_INT(r.error, -EPROTO);
}

static void test_kvs_decoding(void)
{
    const char *doc =
        "{\"kvs\":[{\"key\":\"YQ==\",\"create_revision\":\"2\",\"mod_revision\":\"3\","
        "\"version\":\"2\",\"value\":\"AGI=\",\"lease\":\"7587861231\"},"
        "{\"key\":\"Yg==\"}],\"count\":\"2\"}";
    json_t *j = json_loads(doc, 0, NULL);
    struct etcd_kv *kv = NULL;
    size_t n = 0;

    CHECK_INT(etcd_kvs(j, &kv, &n), 0);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(kv[0].key, "a");
        CHECK_INT(kv[0].value_len, 2);
        CHECK(memcmp(kv[0].value, "\0b", 2) == 0);
        CHECK_INT(kv[0].create_revision, 2);
        CHECK_INT(kv[0].mod_revision, 3);
        CHECK_INT(kv[0].lease, 7587861231LL);
        CHECK_INT(kv[1].value_len, 0);
        CHECK_INT(kv[1].lease, 0);
    }
    etcd_kvs_free(kv, n);
    json_decref(j);
    j = json_loads("{\"header\":{}}", 0, NULL);
    CHECK_INT(etcd_kvs(j, &kv, &n), 0);
    CHECK_INT(n, 0);
    etcd_kvs_free(kv, n);
    json_decref(j);
    j = json_loads("{\"kvs\":[{\"key\":\"!!\"}]}", 0, NULL);
    CHECK_INT(etcd_kvs(j, &kv, &n), -EPROTO);
    json_decref(j);
    j = json_loads("{\"kvs\":[{\"key\":\"YQ==\",\"version\":\"x1\"}]}", 0, NULL);
    CHECK_INT(etcd_kvs(j, &kv, &n), -EPROTO);
    json_decref(j);
    j = json_loads("{\"ID\":\"-3\",\"TTL\":5,\"x\":\"12y\"}", 0, NULL);
    CHECK_INT(etcd_int(j, "ID"), -3);
    CHECK_INT(etcd_int(j, "TTL"), 5);
    CHECK_INT(etcd_int(j, "x"), 0);
    CHECK_INT(etcd_int(j, "absent"), 0);
    json_decref(j);
}

/* ---- against etcd ---- */

static json_t *range_body(const char *key)
{
    json_t *op = etcd_op_range(key, NULL);
    json_t *body = json_incref(json_object_get(op, "request_range"));
    json_decref(op);
    return body;
}

static int put(struct etcd *e, const char *key, const void *v, size_t len)
{
    json_t *op = etcd_op_put(key, v, len, 0);
    struct etcd_reply r;
    int rc = etcd_call_sync(e, "/v3/kv/put", json_incref(json_object_get(op, "request_put")), &r);
    json_decref(op);
    etcd_reply_fini(&r);
    return rc;
}

static void test_sync_put_range_nul_bytes(void)
{
    struct etcd *e = client1();
    static const char v[] = "\0x\0\xff";
    struct etcd_reply r;
    struct etcd_kv *kv = NULL;
    size_t n = 0;

    CHECK_INT(put(e, "/t/nul", v, 4), 0);
    CHECK_INT(etcd_call_sync(e, "/v3/kv/range", range_body("/t/nul"), &r), 0);
    CHECK(r.revision > 1);
    CHECK_STR(r.endpoint, srv.url);
    CHECK_INT(etcd_kvs(r.body, &kv, &n), 0);
    CHECK_INT(n, 1);
    if (n == 1) {
        CHECK_STR(kv[0].key, "/t/nul");
        CHECK_INT(kv[0].value_len, 4);
        CHECK(memcmp(kv[0].value, v, 4) == 0);
    }
    etcd_kvs_free(kv, n);
    etcd_reply_fini(&r);
    /* No match: no "kvs" at all, which is no keys. */
    CHECK_INT(etcd_call_sync(e, "/v3/kv/range", range_body("/t/absent"), &r), 0);
    CHECK(json_object_get(r.body, "kvs") == NULL);
    CHECK_INT(etcd_kvs(r.body, &kv, &n), 0);
    CHECK_INT(n, 0);
    etcd_kvs_free(kv, n);
    etcd_reply_fini(&r);
    struct etcd_counts c;
    etcd_counts(e, &c);
    CHECK_INT(c.ok, 3);
    CHECK_INT(c.error + c.unreachable, 0);
    etcd_free(e);
}

struct async_result {
    int calls;
    int error;
    int64_t revision;
};

static void on_reply(void *ud, const struct etcd_reply *r)
{
    struct async_result *a = ud;
    a->calls++;
    a->error = r->error;
    a->revision = r->revision;
}

static void test_async_call(void)
{
    const char *eps[] = {srv.url};
    struct etcd_opts o = {.endpoints = eps, .n_endpoints = 1};
    struct etcd *e = NULL;
    struct async_result a = {0}, b = {0};
    uv_loop_t loop;
    char err[256];

    CHECK_INT(uv_loop_init(&loop), 0);
    CHECK_INT(etcd_new(&e, &loop, &o, err, sizeof(err)), 0);
    CHECK_INT(etcd_call(e, "/v3/kv/range", range_body("/t/nul"), on_reply, &a), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(a.calls, 1);
    CHECK_INT(a.error, 0);
    CHECK(a.revision > 1);
    /* Cancelled: no callback, ever. */
    CHECK_INT(etcd_call(e, "/v3/kv/range", range_body("/t/nul"), on_reply, &b), 0);
    etcd_cancel_all(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(b.calls, 0);
    etcd_free(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&loop), 0);
}

static void test_failover(void)
{
    char dead[64];
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", dead_port);
    const char *eps[] = {dead, srv.url};
    struct etcd *e = client(eps, 2, NULL, NULL);
    struct etcd_reply r;
    struct etcd_counts c;

    CHECK_INT(etcd_call_sync(e, "/v3/kv/range", range_body("/t/nul"), &r), 0);
    CHECK_STR(r.endpoint, srv.url);
    etcd_reply_fini(&r);
    /* The next call starts where the last one was answered. */
    CHECK_INT(etcd_call_sync(e, "/v3/kv/range", range_body("/t/nul"), &r), 0);
    CHECK_STR(r.endpoint, srv.url);
    etcd_reply_fini(&r);
    etcd_counts(e, &c);
    CHECK_INT(c.ok, 2);
    etcd_free(e);
}

static void test_all_dead(void)
{
    char d1[64], d2[64];
    snprintf(d1, sizeof(d1), "http://127.0.0.1:%d", dead_port);
    snprintf(d2, sizeof(d2), "http://127.0.0.1:%d/", dead_port);
    const char *eps[] = {d1, d2};
    struct etcd *e = client(eps, 2, NULL, NULL);
    struct etcd_reply r;
    struct etcd_counts c;
    double t0 = etcd_server_now();

    CHECK_INT(etcd_call_sync(e, "/v3/kv/range", range_body("/t/nul"), &r), -EHOSTUNREACH);
    CHECK(etcd_server_now() - t0 < 1.5);
    CHECK(strstr(r.message, "no etcd endpoint") != NULL);
    CHECK(r.body == NULL && r.endpoint == NULL);
    etcd_reply_fini(&r);
    etcd_counts(e, &c);
    CHECK_INT(c.unreachable, 1);
    CHECK_INT(c.ok, 0);
    etcd_free(e);
}

static void test_txn_compare_fails(void)
{
    struct etcd *e = client1();
    struct etcd_reply r;
    json_t *cmp = json_array(), *ops = json_array();

    json_array_append_new(cmp, etcd_cmp_create("/t/nul", 0)); /* it exists */
    json_array_append_new(ops, etcd_op_put("/t/other", "x", 1, 0));
    CHECK_INT(etcd_call_sync(e, "/v3/kv/txn", etcd_txn(cmp, ops, NULL), &r), 0);
    CHECK(!etcd_txn_succeeded(r.body));
    CHECK(json_object_get(r.body, "responses") == NULL);
    etcd_reply_fini(&r);
    /* The failure branch runs instead: here, a range of the key. */
    cmp = json_array();
    json_array_append_new(cmp, etcd_cmp_value("/t/nul", "\0x\0\xff", 4));
    ops = json_array();
    json_array_append_new(ops, etcd_op_range("/t/nul", NULL));
    CHECK_INT(etcd_call_sync(e, "/v3/kv/txn", etcd_txn(cmp, ops, NULL), &r), 0);
    CHECK(etcd_txn_succeeded(r.body));
    etcd_reply_fini(&r);
    CHECK_INT(put(e, "/t/other", "x", 1), 0);
    etcd_free(e);
}

static int64_t grant(struct etcd *e, int ttl)
{
    struct etcd_reply r;
    int64_t id = 0;
    if (etcd_call_sync(e, "/v3/lease/grant", json_pack("{s:i}", "TTL", ttl), &r) == 0) {
        id = etcd_int(r.body, "ID");
        CHECK_INT(etcd_int(r.body, "TTL"), ttl);
    }
    etcd_reply_fini(&r);
    return id;
}

static void test_leases(void)
{
    struct etcd *e = client1();
    struct etcd_reply r;
    char idbuf[32];
    int64_t id = grant(e, 5);
    json_t *cmp, *ops;

    CHECK(id != 0);
    snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
    CHECK_INT(etcd_call_sync(e, "/v3/lease/keepalive", json_pack("{s:s}", "ID", idbuf), &r), 0);
    CHECK_INT(etcd_int(json_object_get(r.body, "result"), "TTL"), 5);
    etcd_reply_fini(&r);
    /* An unknown lease: a 200 without a TTL. */
    CHECK_INT(etcd_call_sync(e, "/v3/lease/keepalive", json_pack("{s:s}", "ID", "12345"), &r), 0);
    CHECK_INT(etcd_int(json_object_get(r.body, "result"), "TTL"), 0);
    etcd_reply_fini(&r);
    /* A key under the lease, and a compare on it. */
    cmp = json_array();
    json_array_append_new(cmp, etcd_cmp_create("/t/leader", 0));
    ops = json_array();
    json_array_append_new(ops, etcd_op_put("/t/leader", "me", 2, id));
    CHECK_INT(etcd_call_sync(e, "/v3/kv/txn", etcd_txn(cmp, ops, NULL), &r), 0);
    CHECK(etcd_txn_succeeded(r.body));
    etcd_reply_fini(&r);
    cmp = json_array();
    json_array_append_new(cmp, etcd_cmp_lease("/t/leader", id));
    CHECK_INT(etcd_call_sync(e, "/v3/kv/txn", etcd_txn(cmp, NULL, NULL), &r), 0);
    CHECK(etcd_txn_succeeded(r.body));
    etcd_reply_fini(&r);
    cmp = json_array();
    json_array_append_new(cmp, etcd_cmp_lease("/t/leader", id + 1));
    CHECK_INT(etcd_call_sync(e, "/v3/kv/txn", etcd_txn(cmp, NULL, NULL), &r), 0);
    CHECK(!etcd_txn_succeeded(r.body));
    etcd_reply_fini(&r);
    /* Revoked: the key goes with it. */
    CHECK_INT(etcd_call_sync(e, "/v3/lease/revoke", json_pack("{s:s}", "ID", idbuf), &r), 0);
    etcd_reply_fini(&r);
    CHECK_INT(etcd_call_sync(e, "/v3/lease/revoke", json_pack("{s:s}", "ID", idbuf), &r), -EIO);
    CHECK(strstr(r.message, "lease not found") != NULL);
    etcd_reply_fini(&r);
    CHECK_INT(etcd_call_sync(e, "/v3/kv/range", range_body("/t/leader"), &r), 0);
    CHECK(json_object_get(r.body, "kvs") == NULL);
    etcd_reply_fini(&r);
    etcd_free(e);
}

static void test_limits(void)
{
    struct etcd *e = client1();
    size_t big = 1700 * 1024;
    char *v = malloc(big);
    struct etcd_reply r;
    json_t *ops = json_array();

    memset(v, 'x', big);
    CHECK_INT(put(e, "/t/big", v, big), -E2BIG);
    free(v);
    for (int i = 0; i < 129; i++) {
        char k[32];
        snprintf(k, sizeof(k), "/t/many/%d", i);
        json_array_append_new(ops, etcd_op_put(k, "x", 1, 0));
    }
    CHECK_INT(etcd_call_sync(e, "/v3/kv/txn", etcd_txn(NULL, ops, NULL), &r), -E2BIG);
    CHECK(strstr(r.message, "too many operations") != NULL);
    etcd_reply_fini(&r);
    struct etcd_counts c;
    etcd_counts(e, &c);
    CHECK_INT(c.error, 2);
    etcd_free(e);
}

static int auth_call(struct etcd *e, const char *path, json_t *body)
{
    struct etcd_reply r;
    int rc = etcd_call_sync(e, path, body, &r);
    etcd_reply_fini(&r);
    return rc;
}

/* Last: it turns authentication on (and off again at the end). */
static void test_auth(void)
{
    struct etcd *admin = client1(), *e, *anon, *wrong;
    const char *eps[] = {srv.url};
    struct etcd_reply r;

    CHECK_INT(auth_call(admin, "/v3/auth/user/add",
                        json_pack("{s:s,s:s}", "name", "root", "password", "s3cret-pw")),
              0);
    CHECK_INT(auth_call(admin, "/v3/auth/user/grant",
                        json_pack("{s:s,s:s}", "user", "root", "role", "root")),
              0);
    CHECK_INT(auth_call(admin, "/v3/auth/enable", json_object()), 0);
    e = client(eps, 1, "root", "s3cret-pw");
    anon = client(eps, 1, NULL, NULL);
    wrong = client(eps, 1, "root", "not-the-pw");

    CHECK_INT(etcd_call_sync(e, "/v3/kv/range", range_body("/t/nul"), &r), 0);
    etcd_reply_fini(&r);
    CHECK_INT(etcd_call_sync(anon, "/v3/kv/range", range_body("/t/nul"), &r), -EACCES);
    CHECK(strstr(r.message, "user name is empty") != NULL);
    etcd_reply_fini(&r);
    CHECK_INT(etcd_call_sync(wrong, "/v3/kv/range", range_body("/t/nul"), &r), -EACCES);
    CHECK(strstr(r.message, "authentication failed") != NULL);
    CHECK(strstr(r.message, "not-the-pw") == NULL);
    etcd_reply_fini(&r);
    /* The token lapses after --auth-token-ttl (1 s here) unused: the client logs in again. */
    usleep(2500 * 1000);
    CHECK_INT(etcd_call_sync(e, "/v3/kv/range", range_body("/t/nul"), &r), 0);
    etcd_reply_fini(&r);
    CHECK_INT(auth_call(e, "/v3/auth/disable", json_object()), 0);
    CHECK_INT(auth_call(anon, "/v3/kv/range", range_body("/t/nul")), 0);
    /* A user against an etcd without authentication just talks. */
    CHECK_INT(auth_call(wrong, "/v3/kv/range", range_body("/t/nul")), 0);
    etcd_free(admin);
    etcd_free(e);
    etcd_free(anon);
    etcd_free(wrong);
}

/* Client certificates and a private CA (openssl makes them; without openssl: not tested). */
static int make_certs(const char *dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "(cd '%s' && K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && "
             "openssl req -x509 $K -keyout ca.key -out ca.crt -days 1 -subj /CN=ca && "
             "openssl req $K -keyout server.key -out server.csr -subj /CN=127.0.0.1 && "
             "printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' "
             "> s.ext && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key "
             "-CAcreateserial -out server.crt -days 1 -extfile s.ext && "
             "openssl req $K -keyout client.key -out client.csr -subj /CN=client && "
             "printf 'extendedKeyUsage=clientAuth\\n' > c.ext && openssl x509 -req -in client.csr "
             "-CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 1 -extfile c.ext) "
             ">/dev/null 2>&1",
             dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int tls_call(const char *url, const char *ca, const char *cert, const char *key, char *msg,
                    size_t msglen)
{
    const char *eps[] = {url};
    struct etcd_opts o = {
        .endpoints = eps, .n_endpoints = 1, .ca_file = ca, .cert_file = cert, .key_file = key};
    struct etcd *e = NULL;
    struct etcd_reply r;
    char err[256];
    int rc = etcd_new(&e, NULL, &o, err, sizeof(err));

    if (rc)
        return rc;
    rc = etcd_call_sync(e, "/v3/kv/range", range_body("/t/x"), &r);
    snprintf(msg, msglen, "%s", r.message);
    etcd_reply_fini(&r);
    etcd_free(e);
    return rc;
}

static void test_tls_client_certificate(void)
{
    char dir[TEST_PATH_MAX], ca[TEST_PATH_MAX + 32], cert[TEST_PATH_MAX + 32],
        key[TEST_PATH_MAX + 32], msg[256] = "";
    struct etcd_server tls;
    int rc = -1;

    /* The shell quotes the path for openssl: one with a quote in it is not tested. */
    if (strchr(test_tmpdir(dir, sizeof(dir), "ytbridge-etcd-tls"), '\'') || make_certs(dir) != 0) {
        fprintf(stderr, "openssl could not make certificates: TLS not tested\n");
        return;
    }
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    snprintf(cert, sizeof(cert), "%s/client.crt", dir);
    snprintf(key, sizeof(key), "%s/client.key", dir);
    etcd_server_start_tls(&tls, NULL, dir);
    for (double end = etcd_server_now() + 15; rc != 0 && etcd_server_now() < end;) {
        rc = tls_call(tls.url, ca, cert, key, msg, sizeof(msg));
        if (rc)
            usleep(100 * 1000);
    }
    CHECK_INT(rc, 0);
    if (rc)
        fprintf(stderr, "  %s\n", msg);
    /* Without the client certificate, or without the CA: refused, and said so. */
    CHECK_INT(tls_call(tls.url, ca, NULL, NULL, msg, sizeof(msg)), -EHOSTUNREACH);
    CHECK_INT(tls_call(tls.url, NULL, cert, key, msg, sizeof(msg)), -EHOSTUNREACH);
    CHECK(strstr(msg, "certificate") != NULL || strstr(msg, "SSL") != NULL);
    fprintf(stderr, "  without the CA: %s\n", msg);
    etcd_server_stop(&tls);
    if (test_rmtree(dir) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

int main(void)
{
    static const char *const extra[] = {"--auth-token-ttl", "1", "--bcrypt-cost", "4", NULL};

    RUN(test_base64);
    RUN(test_prefix_end);
    RUN(test_ops_shape);
    RUN(test_answers);
    RUN(test_kvs_decoding);
    if (http_global_init() != 0)
        return 1;
    etcd_server_start(&srv, extra);
    dead_port = etcd_server_free_port();
    RUN(test_sync_put_range_nul_bytes);
    RUN(test_async_call);
    RUN(test_failover);
    RUN(test_all_dead);
    RUN(test_txn_compare_fails);
    RUN(test_leases);
    RUN(test_limits);
    RUN(test_auth);
    RUN(test_tls_client_certificate);
    etcd_server_stop(&srv);
    http_global_cleanup();
    return test_done();
}
