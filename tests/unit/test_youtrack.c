/*
 * Unit tests for the YouTrack body parsers, fed the recorded fixtures and hostile variants, and
 * for the poller itself against a canned loopback server (one scripted answer per connection)
 * with http.c's start hook for the faults a server cannot cause.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "canned.h"
#include "conf.h"
#include "http.h"
#include "log.h"
#include "project.h"
#include "test.h"
#include "youtrack.h"

static char *slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/youtrack/%s", TEST_DATA_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    char *buf = malloc(1 << 16);
    *len = fread(buf, 1, (1 << 16) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static long parse(const char *body, struct project_list *l, char *err)
{
    project_list_init(l);
    long n = youtrack_parse_projects(body, strlen(body), l, err, 256);
    if (n >= 0)
        project_list_finish(l);
    return n;
}

static void test_recorded_id_only_list(void)
{
    size_t len;
    char *body = slurp("api-admin-projects_fields-id_top-minus1_from-hakastein-ytrack.json", &len);
    struct project_list l;
    char err[256];
    project_list_init(&l);
    CHECK_INT(youtrack_parse_projects(body, len, &l, err, sizeof(err)), 3);
    project_list_finish(&l);
    CHECK_INT(l.n, 3);
    CHECK_STR(l.v[0].id, "0-0");
    CHECK_STR(l.v[2].id, "0-2");
    CHECK(l.v[0].name == NULL);              /* not requested: unknown, not empty */
    CHECK_INT(l.v[0].archived, TRI_UNKNOWN); /* not sent: unknown, never false */
    project_list_fini(&l);
    free(body);
}

static void test_recorded_list_without_ids_is_refused(void)
{
    size_t len;
    char *body =
        slurp("api-admin-projects_fields-shortName-name_top-50_from-hakastein-ytrack.json", &len);
    struct project_list l;
    char err[256];
    project_list_init(&l);
    CHECK_INT(youtrack_parse_projects(body, len, &l, err, sizeof(err)), -EPROTO);
    CHECK(strstr(err, "\"id\"") != NULL);
    project_list_fini(&l);
    free(body);
}

static void test_full_modern_shape(void)
{
    struct project_list l;
    char err[256];
    const char *body =
        "[{\"shortName\":\"DEV\",\"name\":\"Демопроект \\ud83d\\ude80\",\"archived\":true,"
        "\"leader\":{\"login\":\"root\",\"name\":\"Root\",\"$type\":\"User\"},"
        "\"description\":null,\"id\":\"0-10\",\"$type\":\"jetbrains.charisma.persistent.Project\"},"
        "{\"id\":\"0-2\",\"leader\":null,\"archived\":false,\"$type\":\"Project\"}]";
    CHECK_INT(parse(body, &l, err), 2);
    CHECK_STR(l.v[0].id, "0-2");
    CHECK_INT(l.v[0].archived, TRI_NO);
    CHECK(l.v[0].leader_login == NULL);
    CHECK_STR(l.v[1].id, "0-10");
    CHECK_STR(l.v[1].name, "Демопроект \xf0\x9f\x9a\x80");
    CHECK_INT(l.v[1].archived, TRI_YES);
    CHECK_STR(l.v[1].leader_login, "root");
    CHECK(l.v[1].description == NULL);
    project_list_fini(&l);
}

static void test_malformed_bodies_fail(void)
{
    static const char *const bad[] = {
        "",
        "[",
        "[{\"id\":\"0-1\"},",
        "[{\"id\":\"0-1\"}",
        "[{\"id\":\"0-1\"}] trailing",
        "{\"projects\":[]}",
        "[{\"id\":5}]",
        "[{\"id\":\"\"}]",
        "[\"0-1\"]",
        "[{\"id\":\"0-1\",\"archived\":\"yes\"}]",
        "[{\"id\":\"0-1\",\"name\":7}]",
        "[{\"id\":\"0-1\",\"leader\":\"root\"}]",
        "<!DOCTYPE html><html><body>Sign in</body></html>",
        "[{\"id\":\"0-1\"} {\"id\":\"0-2\"}]",
        "[{\"id\":\"0-1\",\"name\":\"\xff\xfe\"}]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct project_list l;
        char err[256] = "";
        long n = parse(bad[i], &l, err);
        if (n >= 0)
            fprintf(stderr, "accepted bad body %zu: %s\n", i, bad[i]);
        CHECK(n == -EPROTO);
        CHECK(err[0] != '\0');
        project_list_fini(&l);
    }
}

static void test_empty_list_and_whitespace(void)
{
    struct project_list l;
    char err[256];
    CHECK_INT(parse(" [ ] \n", &l, err), 0);
    CHECK_INT(l.n, 0);
    project_list_fini(&l);
}

static void test_long_description_is_shortened_on_a_character_boundary(void)
{
    struct project_list l;
    char err[256];
    /* 999 ASCII bytes then a 2-byte character straddling the 1000-byte limit. */
    char *body = malloc(2000);
    int o = sprintf(body, "[{\"id\":\"0-1\",\"description\":\"");
    memset(body + o, 'a', 999);
    o += 999;
    o += sprintf(body + o, "\xc3\xa9tail\"}]");
    body[o] = '\0';
    CHECK_INT(parse(body, &l, err), 1);
    CHECK_INT(strlen(l.v[0].description), 999);
    project_list_fini(&l);
    free(body);
}

static void test_legacy_list_and_names(void)
{
    struct project_list l;
    char err[256];
    const char *list = "[{\"id\":\"SP\",\"url\":\"https://yt.example/rest/admin/project/SP\"},"
                       "{\"id\":\"FP\",\"url\":\"\"}]";
    const char *names = "[{\"name\":\"First Project\",\"shortName\":\"FP\"},"
                        "{\"name\":\"Not in the admin list\",\"shortName\":\"XX\"}]";
    project_list_init(&l);
    CHECK_INT(youtrack_parse_legacy_list(list, strlen(list), &l, err, sizeof(err)), 2);
    project_list_finish(&l);
    CHECK_INT(youtrack_parse_legacy_names(names, strlen(names), &l, err, sizeof(err)), 2);
    CHECK_INT(l.n, 2);
    CHECK_STR(l.v[0].id, "FP");
    CHECK_STR(l.v[0].short_name, "FP");
    CHECK_STR(l.v[0].name, "First Project");
    CHECK(l.v[1].name == NULL);
    CHECK_INT(l.v[1].archived, TRI_UNKNOWN);
    project_list_fini(&l);
}

/* ---- the poller against a canned server ---- */

#define TEST_TOKEN "perm:unit-test-token-not-real"

#define JSON_HEADERS "Content-Type: application/json;charset=utf-8\r\nX-Youtrack-User: bot\r\n"

struct poller {
    uv_loop_t loop;
    uv_timer_t deadline;
    struct http *http;
    struct youtrack *yt;
    struct conf conf;
    char url[64];
    int done;
    enum youtrack_error error;
    char message[sizeof(((struct youtrack_result *)0)->message)];
    size_t n_projects;
    int starts, fail_start; /* the start hook fails start number fail_start (1-based) */
};

static int poller_start_hook(void *userdata, const struct http_request *req)
{
    struct poller *p = userdata;
    (void)req;
    return ++p->starts == p->fail_start ? -ENOMEM : 0;
}

static void poller_init(struct poller *p, int port, enum conf_api api)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%d", port);
    p->conf.youtrack.url = p->url;
    p->conf.youtrack.token = (char *)TEST_TOKEN;
    p->conf.youtrack.api = api;
    p->conf.youtrack.page_size = 50;
    p->conf.youtrack.timeout = 10;
    p->conf.youtrack.max_body = 1 << 20;
    log_clear_secrets();
    CHECK_INT(log_add_secret(TEST_TOKEN), 0);
    CHECK_INT(uv_loop_init(&p->loop), 0);
    CHECK_INT(http_new(&p->http, &p->loop), 0);
    http_set_start_hook(p->http, poller_start_hook, p);
    CHECK_INT(youtrack_new(&p->yt, p->http, &p->conf), 0);
}

static void poller_on_result(void *userdata, struct youtrack_result *res)
{
    struct poller *p = userdata;
    p->done = 1;
    p->error = res->error;
    snprintf(p->message, sizeof(p->message), "%s", res->message);
    p->n_projects = res->projects.n;
    uv_stop(&p->loop);
}

static void poller_on_deadline(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* One poll to its end (or a 10 s deadline). Returns youtrack_poll()'s result. */
static int poller_poll(struct poller *p)
{
    p->done = 0;
    p->message[0] = '\0';
    int r = youtrack_poll(p->yt, poller_on_result, p);
    if (r)
        return r;
    uv_timer_init(&p->loop, &p->deadline);
    uv_timer_start(&p->deadline, poller_on_deadline, 10000, 0);
    if (!p->done)
        uv_run(&p->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&p->deadline, NULL);
    uv_run(&p->loop, UV_RUN_NOWAIT);
    CHECK(p->done);
    return 0;
}

static void poller_fini(struct poller *p)
{
    youtrack_free(p->yt);
    http_free(p->http);
    uv_run(&p->loop, UV_RUN_DEFAULT); /* the close callbacks */
    CHECK_INT(uv_loop_close(&p->loop), 0);
    log_clear_secrets();
}

/*
 * A same-origin redirect whose follow-up request cannot start: the poll fails as a protocol
 * error, and the redirect target is freed once (it was freed by request(), then by the failure
 * path, then by the next poll). ASan reports the double free; glibc usually aborts too.
 */
static void test_redirect_whose_request_cannot_start(void)
{
    struct canned srv;
    struct poller p;

    canned_listen(&srv);
    canned_add(&srv, "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:@PORT@/api/admin/"
                     "projects?moved=1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    canned_add(&srv, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Youtrack-User: "
                     "bot\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]");
    canned_start(&srv);
    poller_init(&p, srv.port, CONF_API_MODERN);
    p.fail_start = 2; /* the redirect's follow-up */
    CHECK_INT(poller_poll(&p), 0);
    CHECK_INT(p.error, YOUTRACK_ERR_PROTOCOL);
    CHECK(strstr(p.message, "redirect") != NULL);
    /* The next poll starts clean and succeeds. */
    CHECK_INT(poller_poll(&p), 0);
    CHECK_INT(p.error, YOUTRACK_OK);
    CHECK_INT(p.n_projects, 0);
    CHECK_INT(p.starts, 3);
    poller_fini(&p);
    canned_stop(&srv);
}

/*
 * The redirect check asks url_same_origin(): a Location spelled differently but naming the
 * service's origin (scheme case, "127.1", a port with a leading zero) is followed; one that
 * carries credentials, or names another port, is not.
 */
static void test_redirect_same_origin_spellings(void)
{
    static const char *const refused[] = {
        "http://bot@127.0.0.1:@PORT@/api/admin/projects",
        "http://127.0.0.1:1@PORT@/api/admin/projects",
    };
    struct canned srv;
    struct poller p;

    canned_listen(&srv);
    canned_add(&srv, "HTTP/1.1 302 Found\r\nLocation: HTTP://127.1:0@PORT@/api/admin/"
                     "projects?moved=1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    canned_answer(&srv, "200 OK", JSON_HEADERS, "[]");
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char headers[160];
        snprintf(headers, sizeof(headers), "Location: %s\r\n", refused[i]);
        canned_answer(&srv, "302 Found", headers, "");
    }
    canned_start(&srv);
    poller_init(&p, srv.port, CONF_API_MODERN);
    CHECK_INT(poller_poll(&p), 0);
    CHECK_INT(p.error, YOUTRACK_OK);
    CHECK_INT(p.starts, 2);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        CHECK_INT(poller_poll(&p), 0);
        CHECK_INT(p.error, YOUTRACK_ERR_PROTOCOL);
        CHECK(strstr(p.message, "redirects to other hosts are not followed") != NULL);
    }
    CHECK_INT(p.starts, 4);
    poller_fini(&p);
    canned_stop(&srv);
}

static void test_duplicate_ids_in_one_answer_fail(void)
{
    /* The same id twice, with different names, in either order: no order may decide. */
    static const char *const bodies[] = {
        "[{\"id\":\"0-1\",\"name\":\"A\"},{\"id\":\"0-2\"},{\"id\":\"0-1\",\"name\":\"B\"}]",
        "[{\"id\":\"0-1\",\"name\":\"B\"},{\"id\":\"0-2\"},{\"id\":\"0-1\",\"name\":\"A\"}]",
        "[{\"id\":\"0-1\"},{\"id\":\"0-1\"}]",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct project_list l;
        char err[256] = "";
        CHECK_INT(parse(bodies[i], &l, err), -EPROTO);
        CHECK(strstr(err, "two projects with the id \"0-1\"") != NULL);
        project_list_fini(&l);
    }
    /* Pages may overlap: an id already read from an earlier page is not a repeat. */
    struct project_list l;
    char err[256];
    const char *page1 = "[{\"id\":\"0-1\"},{\"id\":\"0-2\"}]", *page2 = "[{\"id\":\"0-2\"}]";
    project_list_init(&l);
    CHECK_INT(youtrack_parse_projects(page1, strlen(page1), &l, err, sizeof(err)), 2);
    CHECK_INT(youtrack_parse_projects(page2, strlen(page2), &l, err, sizeof(err)), 1);
    CHECK_INT(project_list_finish(&l), 1);
    project_list_fini(&l);
}

static void test_duplicate_short_names_in_legacy_answers_fail(void)
{
    struct project_list l;
    char err[256] = "";
    const char *list = "[{\"id\":\"SP\",\"url\":\"\"},{\"id\":\"FP\"},{\"id\":\"SP\"}]";
    const char *good = "[{\"id\":\"SP\"},{\"id\":\"FP\"}]";
    const char *names = "[{\"name\":\"One\",\"shortName\":\"SP\"},{\"name\":\"Two\",\"shortName\":"
                        "\"SP\"}]";

    project_list_init(&l);
    CHECK_INT(youtrack_parse_legacy_list(list, strlen(list), &l, err, sizeof(err)), -EPROTO);
    CHECK(strstr(err, "two projects with the short name \"SP\"") != NULL);
    project_list_fini(&l);

    project_list_init(&l);
    CHECK_INT(youtrack_parse_legacy_list(good, strlen(good), &l, err, sizeof(err)), 2);
    project_list_finish(&l);
    err[0] = '\0';
    CHECK_INT(youtrack_parse_legacy_names(names, strlen(names), &l, err, sizeof(err)), -EPROTO);
    CHECK(strstr(err, "two projects with the short name \"SP\"") != NULL);
    project_list_fini(&l);
}

static void test_poll_with_duplicate_ids_is_a_protocol_error(void)
{
    struct canned srv;
    struct poller p;

    canned_listen(&srv);
    canned_answer(&srv, "200 OK", JSON_HEADERS,
                  "[{\"id\":\"0-1\",\"name\":\"A\"},{\"id\":\"0-1\",\"name\":\"B\"}]");
    canned_start(&srv);
    poller_init(&p, srv.port, CONF_API_MODERN);
    CHECK_INT(poller_poll(&p), 0);
    CHECK_INT(p.error, YOUTRACK_ERR_PROTOCOL);
    CHECK(strstr(p.message, "two projects with the id") != NULL);
    CHECK_INT(p.n_projects, 0);
    poller_fini(&p);
    canned_stop(&srv);
}

/* Any trace of TEST_TOKEN: itself, percent-encoded, or a base64 run of it at any alignment. */
static int leaks_token(const char *s)
{
    static const char *const marks[] = {
        "unit-test-token", "unit%2Dtest", "dW5pdC10ZXN0", "VuaXQtdGVzd",
        "1bml0LXRlc3Q",    "dG9rZW4t",    "0b2tlbi",      "Rva2VuL",
    };
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
        if (strstr(s, marks[i]))
            return 1;
    }
    return 0;
}

/* A message jansson accepts (valid UTF-8), as /readyz and alerts need. */
static int json_ok(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

/*
 * A server that echoes our Authorization header in an error answer, raw, percent-encoded or
 * base64'd (as HTTP Basic), or redirects to a URL carrying the token: the error text, which
 * /readyz, the youtrack_auth alert and the chat status answer all show, holds none of it.
 */
static void test_error_text_from_the_server_is_redacted(void)
{
    static const struct {
        const char *status, *headers, *body;
        enum youtrack_error error;
    } cases[] = {
        {"401 Unauthorized", JSON_HEADERS,
         "{\"error\":\"Unauthorized\",\"error_description\":\"Invalid token in Authorization: "
         "Bearer perm:unit-test-token-not-real\"}",
         YOUTRACK_ERR_AUTH},
        {"401 Unauthorized", JSON_HEADERS,
         "{\"error_description\":\"as sent: Bearer%20perm%3aunit-test-token-not-real\"}",
         YOUTRACK_ERR_AUTH},
        {"403 Forbidden", JSON_HEADERS,
         "{\"error_description\":\"Basic Ym90OnBlcm06dW5pdC10ZXN0LXRva2VuLW5vdC1yZWFs\"}",
         YOUTRACK_ERR_AUTH},
        {"500 Server Error", JSON_HEADERS,
         "{\"error\":\"server_error\",\"error_description\":\"header was "
         "QmVhcmVyIHBlcm06dW5pdC10ZXN0LXRva2VuLW5vdC1yZWFs and "
         "perm%3Aunit%2Dtest%2Dtoken%2Dnot%2Dreal\"}",
         YOUTRACK_ERR_SERVER},
        /* The token starts 150 bytes in: the 160-byte excerpt cuts it, its head must not show. */
        {"500 Server Error", JSON_HEADERS,
         "{\"error_description\":\"0123456789012345678901234567890123456789012345678901234567890"
         "1234567890123456789012345678901234567890123456789012345678901234567890123456789 "
         "perm:unit-test-token-not-real\"}",
         YOUTRACK_ERR_SERVER},
        {"302 Found",
         "Location: https://sso.example.invalid/login?token=perm%3Aunit-test-token-not-real\r\n",
         "", YOUTRACK_ERR_PROTOCOL},
        {"302 Found",
         "Location: "
         "https://sso.example.invalid/cb?s=cGVybTp1bml0LXRlc3QtdG9rZW4tbm90LXJlYWw%3D\r\n",
         "", YOUTRACK_ERR_PROTOCOL},
        {"200 OK", "Content-Type: text/html; token=perm:unit-test-token-not-real\r\n", "<html>",
         YOUTRACK_ERR_PROTOCOL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct canned srv;
        struct poller p;

        canned_listen(&srv);
        canned_answer(&srv, cases[i].status, cases[i].headers, cases[i].body);
        canned_start(&srv);
        poller_init(&p, srv.port, CONF_API_MODERN);
        CHECK_INT(poller_poll(&p), 0);
        CHECK_INT(p.error, cases[i].error);
        if (leaks_token(p.message) || !json_ok(p.message)) {
            fprintf(stderr, "case %zu leaks or is not UTF-8 (token masked): ", i);
            for (const char *c = p.message; *c; c++)
                fputc(strncmp(c, "unit", 4) == 0 ? '#' : *c, stderr);
            fputc('\n', stderr);
            CHECK(0);
        }
        CHECK(strstr(p.message, "[REDACTED]") != NULL || strstr(p.message, "****") != NULL);
        poller_fini(&p);
        canned_stop(&srv);
    }
}

/* An error text cut in the middle of a character must still be valid UTF-8 (jansson). */
static void test_error_text_is_cut_on_a_character_boundary(void)
{
    char body[512];
    struct canned srv;
    struct poller p;
    int o = snprintf(body, sizeof(body), "{\"error_description\":\"");

    /* 159 ASCII bytes, then a 3-byte character across the 160-byte excerpt limit. */
    memset(body + o, 'x', 159);
    o += 159;
    snprintf(body + o, sizeof(body) - (size_t)o, "\xe2\x82\xac\xe2\x82\xac tail\"}");
    canned_listen(&srv);
    canned_answer(&srv, "500 Server Error", JSON_HEADERS, body);
    canned_answer(&srv, "302 Found",
                  "Location: https://elsewhere.example/"
                  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
                  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
                  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
                  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
                  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
                  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
                  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
                  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
                  "x\xff\r\n",
                  "");
    canned_start(&srv);
    poller_init(&p, srv.port, CONF_API_MODERN);
    CHECK_INT(poller_poll(&p), 0);
    CHECK_INT(p.error, YOUTRACK_ERR_SERVER);
    CHECK(json_ok(p.message));
    CHECK(strstr(p.message, "xxx") != NULL);
    CHECK_INT(poller_poll(&p), 0);
    CHECK_INT(p.error, YOUTRACK_ERR_PROTOCOL);
    CHECK(json_ok(p.message));
    CHECK(strstr(p.message, "elsewhere.example") != NULL);
    poller_fini(&p);
    canned_stop(&srv);
}

int main(void)
{
    RUN(test_recorded_id_only_list);
    RUN(test_recorded_list_without_ids_is_refused);
    RUN(test_full_modern_shape);
    RUN(test_malformed_bodies_fail);
    RUN(test_empty_list_and_whitespace);
    RUN(test_long_description_is_shortened_on_a_character_boundary);
    RUN(test_legacy_list_and_names);
    RUN(test_redirect_whose_request_cannot_start);
    RUN(test_redirect_same_origin_spellings);
    RUN(test_duplicate_ids_in_one_answer_fail);
    RUN(test_duplicate_short_names_in_legacy_answers_fail);
    RUN(test_poll_with_duplicate_ids_is_a_protocol_error);
    RUN(test_error_text_from_the_server_is_redacted);
    RUN(test_error_text_is_cut_on_a_character_boundary);
    return test_done();
}
