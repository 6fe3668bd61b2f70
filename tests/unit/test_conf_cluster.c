/*
 * The cluster block's tests that data cannot express (tests/data/conf/cluster-*.conf hold the
 * diagnostics): the values a valid block gives, the defaults, cluster.member from
 * YTBRIDGE_MEMBER or the host name, the key prefix rules, conf_cluster_same(), and that no
 * password ever reaches a message.
 */
#include "conf.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

#define YT_OK              "youtrack: { url = \"https://yt.example.com\"; token = \"perm:fake\"; };\n"
#define ETCD_OK            "etcd = [\"https://etcd.example.com:2379\"];"
#define FAKE_PASSWORD      "not-a-real-etcd-password"
#define FAKE_PASSWORD_FILE "cluster-password.txt"

/* An environment for conf_resolve() with at most two variables. */
struct fake_env {
    const char *names[2], *values[2];
};

static const char *fake_get(void *ctx, const char *name)
{
    struct fake_env *e = ctx;

    for (size_t i = 0; i < 2 && e->names[i]; i++) {
        if (strcmp(e->names[i], name) == 0)
            return e->values[i];
    }
    return NULL;
}

/* YT_OK plus "cluster: { BLOCK };" loaded and resolved with env (NULL: none set). */
static int load_block(const char *block, struct fake_env *fake, struct conf **c,
                      struct conf_diags *d)
{
    struct fake_env none = {{NULL}, {NULL}};
    struct conf_env env = {.get = fake_get, .ctx = fake ? fake : &none};
    char text[2048];

    snprintf(text, sizeof(text), YT_OK "cluster: { %s };\n", block);
    return conf_load_text(text, strlen(text), "t.conf", &env, c, d);
}

static void diags_print(const struct conf_diags *d)
{
    char line[1200];

    for (size_t i = 0; i < d->n; i++) {
        conf_diag_format(&d->v[i], line, sizeof(line));
        fprintf(stderr, "    got: %s\n", line);
    }
}

/* The first diagnostic, formatted, or "" when there is none. */
static const char *first_diag(const struct conf_diags *d, char *buf, size_t len)
{
    buf[0] = '\0';
    if (d->n > 0)
        conf_diag_format(&d->v[0], buf, len);
    return buf;
}

/* tests/data/conf/cluster-ok.conf: every key set. */
static void test_full(void)
{
    char cwd[PATH_MAX], dir[PATH_MAX];
    struct conf_diags d = {0};
    struct conf *c = NULL;

    CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
    snprintf(dir, sizeof(dir), "%s/conf", TEST_DATA_DIR);
    CHECK_INT(chdir(dir), 0);
    chmod("cluster-key.pem", 0600);
    chmod(FAKE_PASSWORD_FILE, 0600);
    CHECK_INT(conf_load("cluster-ok.conf", &c, &d), 0);
    diags_print(&d);
    if (c) {
        const struct conf_cluster *cl = &c->cluster;
        CHECK_INT(cl->enabled, 1);
        CHECK_INT((int)cl->n_etcd, 5);
        if (cl->n_etcd == 5) {
            /* Origins: the port filled in, a trailing '/' gone, the host as written. */
            CHECK_STR(cl->etcd[0], "https://etcd-0.example.com:2379");
            CHECK_STR(cl->etcd[1], "https://ETCD-1.example.com:2379");
            CHECK_STR(cl->etcd[2], "http://127.0.0.1:23790");
            CHECK_STR(cl->etcd[3], "https://[::1]:2379");
            CHECK_STR(cl->etcd[4], "https://etcd-2.example.com:443");
        }
        CHECK_STR(cl->prefix, "/ytbridge/acme-1_x.y");
        CHECK_INT(cl->lease_ttl, 60);
        CHECK_STR(cl->member, "bridge-0.a_b");
        CHECK_STR(cl->ca_file, "ca.pem");
        CHECK_STR(cl->cert_file, "cluster-cert.pem");
        CHECK_STR(cl->key_file, "cluster-key.pem");
        CHECK_STR(cl->user, "ytbridge");
        CHECK_STR(cl->password, FAKE_PASSWORD);
        CHECK_INT(cl->allow_insecure, 0);
        CHECK_STR(c->secrets[c->n_secrets - 1].setting, "cluster.password_file");
    }
    conf_free(c);
    conf_diags_fini(&d);
    CHECK_INT(chdir(cwd), 0);
    log_clear_secrets();
}

/* A bare block: the defaults; without one, nothing. */
static void test_defaults(void)
{
    struct fake_env member = {{"YTBRIDGE_MEMBER"}, {"pod-7"}};
    struct conf_diags d = {0};
    struct conf *c = NULL;

    CHECK_INT(load_block(ETCD_OK, &member, &c, &d), 0);
    diags_print(&d);
    if (c) {
        CHECK_INT(c->cluster.enabled, 1);
        CHECK_STR(c->cluster.prefix, "/ytbridge");
        CHECK_INT(c->cluster.lease_ttl, 10);
        CHECK_STR(c->cluster.member, "pod-7");
        CHECK(!c->cluster.ca_file && !c->cluster.cert_file && !c->cluster.key_file);
        CHECK(!c->cluster.user && !c->cluster.password);
        /* state_dir keeps its default: with cluster it is not used for the state. */
        CHECK_STR(c->state_dir, "/var/lib/ytbridge");
    }
    conf_free(c);

    CHECK_INT(conf_load_text(YT_OK, strlen(YT_OK), "t.conf", NULL, &c, &d), 0);
    if (c) {
        CHECK_INT(c->cluster.enabled, 0);
        CHECK(c->cluster.etcd == NULL && c->cluster.prefix == NULL && c->cluster.member == NULL);
    }
    conf_free(c);
    conf_diags_fini(&d);
}

/* cluster.member: configured, else YTBRIDGE_MEMBER, else the host name; pure step: open. */
static void test_member(void)
{
    struct fake_env member = {{"YTBRIDGE_MEMBER"}, {"pod-7"}};
    struct fake_env bad = {{"YTBRIDGE_MEMBER"}, {"pod 7/x"}};
    struct fake_env empty = {{"YTBRIDGE_MEMBER"}, {""}};
    struct conf_diags d = {0};
    struct conf *c = NULL;
    char host[256], line[1200];

    CHECK_INT(load_block(ETCD_OK " member = \"fixed\";", &member, &c, &d), 0);
    CHECK(c && strcmp(c->cluster.member, "fixed") == 0);
    conf_free(c);

    CHECK_INT(load_block(ETCD_OK " member = \"\";", &member, &c, &d), 0);
    CHECK(c && strcmp(c->cluster.member, "pod-7") == 0);
    conf_free(c);

    /* Neither: the host name, when it is a valid member name (else a message says so). */
    CHECK_INT(gethostname(host, sizeof(host)), 0);
    host[sizeof(host) - 1] = '\0';
    int host_ok = strlen(host) <= 63 &&
                  strspn(host, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "abcdefghijklmnopqrstuvwxyz0123456789._-") == strlen(host);
    CHECK_INT(load_block(ETCD_OK, &empty, &c, &d), host_ok ? 0 : -EINVAL);
    if (host_ok)
        CHECK(c && strcmp(c->cluster.member, host) == 0);
    else
        CHECK(strstr(first_diag(&d, line, sizeof(line)), "(from the host name)") != NULL);
    conf_free(c);
    conf_diags_fini(&d);

    CHECK_INT(load_block(ETCD_OK "\n member = \"\";", &bad, &c, &d), -EINVAL);
    CHECK(c == NULL);
    CHECK_STR(first_diag(&d, line, sizeof(line)),
              "t.conf:3: cluster.member (from YTBRIDGE_MEMBER): must be 1 to 63 of A-Z a-z 0-9 . "
              "_ - (got \"pod 7/x\"); set member or YTBRIDGE_MEMBER");
    CHECK_INT(d.n, 1);
    conf_diags_fini(&d);

    /* The pure step leaves it to conf_resolve(). */
    const char *text = YT_OK "cluster: { " ETCD_OK " };";
    CHECK_INT(conf_load_buffer(text, strlen(text), "t.conf", &c, &d), 0);
    CHECK(c && c->cluster.member == NULL);
    if (c) {
        struct conf_env env = {.get = fake_get, .ctx = &member};
        CHECK_INT(conf_resolve(c, &env, &d), 0);
        CHECK(c->cluster.member && strcmp(c->cluster.member, "pod-7") == 0);
    }
    conf_free(c);
    conf_diags_fini(&d);
}

/* cluster.prefix: each rule, and values at its edges. */
static void test_prefix(void)
{
    static const struct {
        const char *prefix, *problem; /* NULL: accepted */
    } cases[] = {
        {"/a", NULL},
        {"/ytbridge/acme", NULL},
        {"/~!$%&()*+,-.:;<=>?@[]^_`{|}", NULL},
        {"", "must start with '/'"},
        {"a/b", "must start with '/'"},
        {"/", "must not end with '/'"},
        {"/a/", "must not end with '/'"},
        {"//a", "must not contain \"//\""},
        {"/a//b", "must not contain \"//\""},
        {"/a b", "must be printable ASCII without spaces"},
        {"/a\\tb", "must be printable ASCII without spaces"},
        {"/caf\xc3\xa9", "must be printable ASCII without spaces"},
    };
    char block[600], want[300], line[1200];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct conf_diags d = {0};
        struct conf *c = NULL;

        snprintf(block, sizeof(block), ETCD_OK " prefix = \"%s\";", cases[i].prefix);
        int r = load_block(block, NULL, &c, &d);
        if (!cases[i].problem) {
            CHECK_INT(r, 0);
            diags_print(&d);
        } else {
            snprintf(want, sizeof(want), "cluster.prefix: %s", cases[i].problem);
            CHECK_INT(r, -EINVAL);
            CHECK_INT(d.n, 1);
            /* The quoted value is unescaped libconfig text: compare the start only. */
            CHECK(strstr(first_diag(&d, line, sizeof(line)), want) != NULL);
            if (!strstr(line, want))
                fprintf(stderr, "  prefix case %zu: %s\n", i, line);
        }
        conf_free(c);
        conf_diags_fini(&d);
    }

    /* 200 bytes are fine, 201 are not. */
    char longest[202];
    memset(longest, 'p', sizeof(longest));
    longest[0] = '/';
    for (size_t n = 200; n <= 201; n++) {
        struct conf_diags d = {0};
        struct conf *c = NULL;

        snprintf(block, sizeof(block), ETCD_OK " prefix = \"%.*s\";", (int)n, longest);
        CHECK_INT(load_block(block, NULL, &c, &d), n == 200 ? 0 : -EINVAL);
        CHECK(n == 200 ? c && strlen(c->cluster.prefix) == 200
                       : strstr(first_diag(&d, line, sizeof(line)), "at most 200 bytes") != NULL);
        conf_free(c);
        conf_diags_fini(&d);
    }
}

/* conf_cluster_same(): every setting counts. */
static void test_same(void)
{
    static const char *const variants[] = {
        "etcd = [\"https://etcd.example.com:2379\", \"https://etcd-2.example.com:2379\"];",
        "etcd = [\"https://etcd-2.example.com:2379\", \"https://etcd.example.com:2379\"];",
        "etcd = [\"https://etcd.example.com:2379\"]; prefix = \"/other\";",
        "etcd = [\"https://etcd.example.com:2379\"]; lease_ttl = 11;",
        "etcd = [\"https://etcd.example.com:2379\"]; member = \"other\";",
        "etcd = [\"https://etcd.example.com:2379\"]; user = \"u\"; password = \"p-fake-1\";",
        "etcd = [\"https://etcd.example.com:2379\"]; user = \"u\"; password = \"p-fake-2\";",
        "etcd = [\"https://etcd.example.com:2379\"]; allow_insecure = true;",
        "etcd = [\"https://etcd.example.com:2379\"]; ca_file = \"/dev/null\";",
    };
    struct fake_env member = {{"YTBRIDGE_MEMBER"}, {"pod-7"}};
    struct conf_diags d = {0};
    struct conf *base = NULL, *none = NULL, *c = NULL;

    /* /dev/null is no regular file: load the CA variant purely (files are not checked). */
    CHECK_INT(load_block(ETCD_OK, &member, &base, &d), 0);
    CHECK_INT(conf_load_text(YT_OK, strlen(YT_OK), "t.conf", NULL, &none, &d), 0);
    if (!base || !none)
        goto out;
    CHECK_INT(conf_cluster_same(base, base), 1);
    CHECK_INT(conf_cluster_same(none, none), 1);
    CHECK_INT(conf_cluster_same(base, none), 0);
    CHECK_INT(conf_cluster_same(none, base), 0);
    CHECK_INT(load_block("etcd = [\"https://etcd.example.com:2379/\"]; prefix = \"/ytbridge\"; "
                         "lease_ttl = 10; member = \"pod-7\";",
                         NULL, &c, &d),
              0);
    CHECK(c && conf_cluster_same(base, c) == 1); /* the same settings, written otherwise */
    conf_free(c);
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
        char text[1024];

        snprintf(text, sizeof(text), YT_OK "cluster: { %s };", variants[i]);
        CHECK_INT(conf_load_buffer(text, strlen(text), "t.conf", &c, &d), 0);
        if (c && !c->cluster.member)
            c->cluster.member = strdup("pod-7");
        CHECK(c && conf_cluster_same(base, c) == 0);
        if (c && conf_cluster_same(base, c))
            fprintf(stderr, "  variant %zu counts as the same\n", i);
        conf_free(c);
    }
out:
    conf_free(base);
    conf_free(none);
    conf_diags_fini(&d);
    log_clear_secrets();
}

/* Whether any 8 bytes of secret appear in a diagnostic of d. */
static int diags_leak(const struct conf_diags *d, const char *secret)
{
    char line[1200];

    for (size_t i = 0; i < d->n; i++) {
        conf_diag_format(&d->v[i], line, sizeof(line));
        for (size_t o = 0; o + 8 <= strlen(secret); o++) {
            if (memmem(line, strlen(line), secret + o, 8)) {
                fprintf(stderr, "  leaks: %s\n", line);
                return 1;
            }
        }
    }
    return 0;
}

/*
 * A password never reaches a message: pasted into password_file or password_env (long and
 * random, or a short word), given inline beside other mistakes, quoted by another setting, or
 * in an endpoint's userinfo.
 */
static void test_no_password_in_messages(void)
{
    static const struct {
        const char *block, *password;
    } cases[] = {
        {"user = \"u\"; password_file = \"Zm4KeD9aQ2FrZVBhc3N3b3JkMDAwMTIzNDU2\";",
         "Zm4KeD9aQ2FrZVBhc3N3b3JkMDAwMTIzNDU2"},
        {"user = \"u\"; password_file = \"hunter2-fake\";", "hunter2-fake"},
        {"user = \"u\"; password_env = \"hunter2-fake\";", "hunter2-fake"},
        {"user = \"u\"; password = \"fake-pw-inline\"; member = \"x fake-pw-inline\";",
         "fake-pw-inline"},
        {"user = \"u\"; password = \"fake-pw-inline\"; prefix = \"fake-pw-inline\";",
         "fake-pw-inline"},
        {"password = \"fake-pw-without-user\";", "fake-pw-without-user"},
        {"user = \"u\"; password = \"fake-pw-1\"; password_env = \"fake-pw-2\";", "fake-pw-1"},
    };
    char block[600];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct conf_diags d = {0};
        struct conf *c = NULL;

        log_clear_secrets();
        snprintf(block, sizeof(block), ETCD_OK " %s", cases[i].block);
        CHECK_INT(load_block(block, NULL, &c, &d), -EINVAL);
        CHECK(d.n > 0);
        CHECK(!diags_leak(&d, cases[i].password));
        conf_free(c);
        conf_diags_fini(&d);
    }

    /* userinfo in an endpoint. */
    struct conf_diags d = {0};
    struct conf *c = NULL;
    char line[1200];
    CHECK_INT(
        load_block("etcd = [\"https://root:Zq8FakeUrl7pw@etcd.example.com:2379\"];", NULL, &c, &d),
        -EINVAL);
    CHECK(!diags_leak(&d, "root:Zq8FakeUrl7pw"));
    CHECK_STR(first_diag(&d, line, sizeof(line)),
              "t.conf:2: cluster.etcd[0]: credentials in the URL are not allowed; use user and "
              "password_file");
    conf_diags_fini(&d);

    /* A password read from a variable is registered: no later log line shows it. */
    struct fake_env pw = {{"YTB_FAKE_ETCD_PASSWORD"}, {"fake-env-etcd-password"}};
    CHECK_INT(load_block(ETCD_OK " user = \"u\"; password_env = \"YTB_FAKE_ETCD_PASSWORD\";", &pw,
                         &c, &d),
              0);
    CHECK(c && c->cluster.password && strcmp(c->cluster.password, "fake-env-etcd-password") == 0);
    char raw[100], out[100];
    snprintf(raw, sizeof(raw), "x %s x", "fake-env-etcd-password");
    log_redact(out, sizeof(out), raw);
    CHECK_STR(out, "x [REDACTED] x");
    conf_free(c);
    conf_diags_fini(&d);
    log_clear_secrets();
}

/* The example configuration's commented cluster block, uncommented, is valid (files aside). */
static void test_example(void)
{
    FILE *f = fopen(TEST_DATA_DIR "/../../config/ytbridge.conf.example", "r");
    char line[512], text[4096] = YT_OK;
    struct conf_diags d = {0};
    struct conf *c = NULL;
    int inside = 0;

    CHECK(f != NULL);
    while (f && fgets(line, sizeof(line), f)) {
        inside |= strcmp(line, "# cluster: {\n") == 0;
        if (inside && strncmp(line, "# ", 2) == 0)
            strncat(text, line + 2, sizeof(text) - strlen(text) - 1);
        if (inside && strcmp(line, "# };\n") == 0)
            break;
    }
    if (f)
        fclose(f);
    CHECK(strstr(text, "cluster: {") && strstr(text, "password_file"));
    /* Pure: the example's CA and password files do not exist here. */
    CHECK_INT(conf_load_buffer(text, strlen(text), "example", &c, &d), 0);
    diags_print(&d);
    CHECK(c && c->cluster.enabled && c->cluster.n_etcd == 3);
    conf_free(c);
    conf_diags_fini(&d);
}

int main(void)
{
    log_setup(LOGL_INFO, LOG_FORMAT_TEXT);
    RUN(test_full);
    RUN(test_defaults);
    RUN(test_member);
    RUN(test_prefix);
    RUN(test_same);
    RUN(test_no_password_in_messages);
    RUN(test_example);
    return test_done();
}
