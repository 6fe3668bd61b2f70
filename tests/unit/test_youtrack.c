/* Unit tests for the YouTrack body parsers, fed the recorded fixtures and hostile variants. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void test_project_urls(void)
{
    struct project p = {.id = "0-7", .short_name = "GRP"};
    char *u = youtrack_project_url("https://yt.example/youtrack", YOUTRACK_MODERN, &p);
    CHECK_STR(u, "https://yt.example/youtrack/projects/0-7");
    free(u);
    struct project q = {.id = "My Project", .short_name = "My Project"};
    u = youtrack_project_url("https://yt.example", YOUTRACK_LEGACY, &q);
    CHECK_STR(u, "https://yt.example/issues/My%20Project");
    free(u);
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
    RUN(test_project_urls);
    return test_done();
}
