/*
 * Configuration tests. Most cases are data: tests/data/conf/NAME.conf is loaded from that
 * directory and its diagnostics must equal NAME.expect line by line (an empty .expect means it
 * loads). The code below covers what data cannot: values, environment overrides, file modes,
 * buffers with NULs, and that no secret ever reaches a message.
 */
#include "conf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "project.h"
#include "test.h"

#define FAKE_TOKEN "perm:test-token-not-real"
#define ENV_TOKEN  "perm:test-env-token-not-real"
#define ENV_URL    "https://hooks.slack.example/services/T000/B000/ENV0000"

static void env_reset(void)
{
    unsetenv("YTBRIDGE_YOUTRACK_URL");
    unsetenv("YTBRIDGE_YOUTRACK_TOKEN");
    unsetenv("YTB_TEST_UNSET_VARIABLE");
    setenv("YTB_TEST_TOKEN", ENV_TOKEN, 1);
    setenv("YTB_TEST_URL", ENV_URL, 1);
}

static int load_str(const char *text, struct conf **out, struct conf_diags *d)
{
    return conf_load_text(text, strlen(text), "t.conf", NULL, out, d);
}

static char *file_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = calloc(1, (size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static void file_write(const char *path, const char *text, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, text, len) == (ssize_t)len);
    fchmod(fd, mode);
    close(fd);
}

static int diags_contain(const struct conf_diags *d, const char *needle)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strstr(d->v[i].msg, needle) || strstr(d->v[i].file, needle))
            return 1;
    }
    return 0;
}

static void diags_print(const struct conf_diags *d)
{
    char line[1200];
    for (size_t i = 0; i < d->n; i++) {
        conf_diag_format(&d->v[i], line, sizeof(line));
        fprintf(stderr, "    got: %s\n", line);
    }
}

/* Loads NAME.conf from the current directory and compares with NAME.expect. */
static void case_run(const char *name)
{
    char conf_path[300], expect_path[300], line[1200];
    struct conf_diags d = {0};
    struct conf *c = NULL;
    char *expect, *p;
    size_t i = 0;
    int r, failures = test_failures;

    snprintf(conf_path, sizeof(conf_path), "%s.conf", name);
    snprintf(expect_path, sizeof(expect_path), "%s.expect", name);
    expect = file_slurp(expect_path);
    CHECK(expect != NULL);
    if (!expect)
        return;
    r = conf_load(conf_path, &c, &d);
    if (expect[0] == '\0') {
        CHECK_INT(r, 0);
        CHECK(c != NULL);
        CHECK_INT(d.n, 0);
    } else {
        CHECK_INT(r, -EINVAL);
        CHECK(c == NULL);
        for (p = expect; *p; i++) {
            char *nl = strchr(p, '\n');
            if (nl)
                *nl = '\0';
            CHECK(i < d.n);
            if (i < d.n) {
                conf_diag_format(&d.v[i], line, sizeof(line));
                CHECK_STR(line, p);
            }
            p = nl ? nl + 1 : p + strlen(p);
        }
        CHECK_INT(d.n, i);
    }
    if (test_failures != failures) {
        fprintf(stderr, "  case %s failed\n", name);
        diags_print(&d);
    }
    free(expect);
    conf_free(c);
    conf_diags_fini(&d);
}

static void test_cases(void)
{
    char cwd[PATH_MAX], dir[PATH_MAX];
    struct dirent **names;
    int n, ran = 0;

    env_reset();
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
    snprintf(dir, sizeof(dir), "%s/conf", TEST_DATA_DIR);
    CHECK_INT(chdir(dir), 0);
    /* The data files are committed 0644; token.txt's mode warning is expected noise. */
    chmod("token.txt", 0600);
    chmod("slack-url.txt", 0600);
    chmod("slack-bot-token.txt", 0600);
    chmod("cluster-key.pem", 0600);
    chmod("cluster-password.txt", 0600);
    /* cluster.member left unset: not this machine's host name, which need not be a valid one. */
    setenv("YTBRIDGE_MEMBER", "data-case", 1);
    n = scandir(".", &names, NULL, alphasort);
    CHECK(n > 0);
    for (int i = 0; i < n; i++) {
        size_t l = strlen(names[i]->d_name);
        if (l > 5 && strcmp(names[i]->d_name + l - 5, ".conf") == 0) {
            names[i]->d_name[l - 5] = '\0';
            case_run(names[i]->d_name);
            ran++;
        }
        free(names[i]);
    }
    free(names);
    CHECK(ran >= 30);
    fprintf(stderr, "  %d data cases\n", ran);
    CHECK_INT(chdir(cwd), 0);
}

static void test_defaults(void)
{
    struct conf_diags d = {0};
    struct conf *c = NULL;

    env_reset();
    CHECK_INT(load_str("youtrack: { url = \"https://yt.example.com///\"; token = \"" FAKE_TOKEN
                       "\"; };",
                       &c, &d),
              0);
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK_STR(c->path, "t.conf");
    CHECK_STR(c->youtrack.url, "https://yt.example.com");
    CHECK_STR(c->youtrack.token, FAKE_TOKEN);
    CHECK_INT(c->youtrack.api, CONF_API_AUTO);
    CHECK_INT(c->youtrack.poll_interval, 60);
    CHECK_INT(c->youtrack.page_size, 200);
    CHECK_INT(c->youtrack.timeout, 30);
    CHECK(c->youtrack.ca_file == NULL);
    CHECK_INT(c->youtrack.allow_insecure, 0);
    CHECK_INT(c->youtrack.max_body, 64L * 1024 * 1024);
    CHECK_STR(c->state_dir, "/var/lib/ytbridge");
    CHECK_INT(c->notify.first_run, CONF_FIRST_RUN_BASELINE);
    CHECK_INT(c->notify.removal_confirmations, 2);
    CHECK_INT(c->notify.mass_removal_limit, 10);
    CHECK_INT(c->notify.digest_threshold, 5);
    CHECK_INT(c->notify.max_age, 86400);
    CHECK_INT(c->notify.shutdown_grace, 10);
    CHECK_INT(c->n_sinks, 1);
    CHECK_STR(c->sinks[0].name, "stdout");
    CHECK_INT(c->sinks[0].type, CONF_SINK_STDOUT);
    CHECK_INT(c->sinks[0].format, LOG_FORMAT_TEXT);
    CHECK_INT(c->sinks[0].events, CONF_EVENTS_ALL);
    CHECK_INT(c->sinks[0].n_projects, 1);
    CHECK(c->sinks[0].n_projects == 1 && strcmp(c->sinks[0].projects[0], "*") == 0);
    CHECK_INT(c->sinks[0].alerts, 1);
    CHECK(c->sinks[0].url == NULL && c->sinks[0].secret == NULL);
    CHECK_INT(c->log.level_set, 0);
    CHECK_INT(c->log.format_set, 0);
    CHECK_INT(d.n, 0);
    conf_free(c);
}

static void test_full(void)
{
    char path[PATH_MAX];
    struct conf_diags d = {0};
    struct conf *c = NULL;

    env_reset();
    snprintf(path, sizeof(path), "%s/conf/ok-full.conf", TEST_DATA_DIR);
    CHECK_INT(conf_load(path, &c, &d), 0);
    diags_print(&d);
    if (!c)
        return;
    CHECK_STR(c->youtrack.url, "https://yt.example.com/youtrack");
    CHECK_STR(c->youtrack.token, ENV_TOKEN);
    CHECK_INT(c->youtrack.api, CONF_API_LEGACY);
    CHECK_INT(c->youtrack.poll_interval, 120);
    CHECK_INT(c->youtrack.page_size, 10000);
    CHECK_INT(c->youtrack.timeout, 1);
    /* Relative to the file's directory, not the current one. */
    CHECK(c->youtrack.ca_file && strstr(c->youtrack.ca_file, "/conf/ca.pem"));
    CHECK_INT(c->youtrack.allow_insecure, 1);
    CHECK_INT(c->youtrack.max_body, 1024);
    CHECK_STR(c->state_dir, "/tmp/ytbridge-state");
    CHECK_INT(c->notify.first_run, CONF_FIRST_RUN_ANNOUNCE);
    CHECK_INT(c->notify.removal_confirmations, 100);
    CHECK_INT(c->notify.mass_removal_limit, 0);
    CHECK_INT(c->notify.digest_threshold, 1);
    CHECK_INT(c->notify.max_age, 2592000);
    CHECK_INT(c->notify.shutdown_grace, 300);
    CHECK_INT(c->n_sinks, 2);
    CHECK_STR(c->sinks[0].name, "a.b-c_1");
    CHECK_INT(c->sinks[0].format, LOG_FORMAT_JSON);
    CHECK_INT(c->sinks[0].line, 17);
    CHECK_STR(c->sinks[1].name, "plain");
    CHECK_INT(c->sinks[1].format, LOG_FORMAT_TEXT);
    CHECK_INT(c->log.level_set, 1);
    CHECK_INT(c->log.level, LOGL_DEBUG);
    CHECK_INT(c->log.format_set, 1);
    CHECK_INT(c->log.format, LOG_FORMAT_JSON);
    conf_free(c);
    conf_diags_fini(&d);
}

static int projects_are(const struct conf_sink *s, const char *a, const char *b)
{
    return s->n_projects == (b ? 2u : 1u) && strcmp(s->projects[0], a) == 0 &&
           (!b || strcmp(s->projects[1], b) == 0);
}

static void test_sinks(void)
{
    char path[PATH_MAX], line[256];
    struct conf_diags d = {0};
    struct conf *c = NULL;
    const struct conf_sink *s;

    env_reset();
    log_clear_secrets();
    snprintf(path, sizeof(path), "%s/conf/ok-sinks.conf", TEST_DATA_DIR);
    chmod(TEST_DATA_DIR "/conf/slack-url.txt", 0600);
    chmod(TEST_DATA_DIR "/conf/token.txt", 0600);
    CHECK_INT(conf_load(path, &c, &d), 0);
    diags_print(&d);
    if (!c)
        return;
    CHECK_INT(c->notify.digest_threshold, 1000);
    CHECK_INT(c->notify.max_age, 60);
    CHECK_INT(c->notify.shutdown_grace, 0);
    CHECK_INT(c->n_sinks, 10);
    if (c->n_sinks != 10)
        goto out;

    s = &c->sinks[0];
    CHECK_STR(s->name, "console");
    CHECK_INT(s->type, CONF_SINK_STDOUT);
    CHECK_INT(s->format, LOG_FORMAT_JSON);
    CHECK_INT(s->events, 1u << CHANGE_CREATED);
    CHECK(projects_are(s, "*", "!TMP*"));
    CHECK_INT(s->alerts, 0);
    CHECK_INT(s->line, 4);

    s = &c->sinks[1];
    CHECK_INT(s->type, CONF_SINK_SLACK);
    CHECK_STR(s->url, "https://hooks.slack.example/services/T000/B000/INLINE0000");
    CHECK_INT(s->events, (1u << CHANGE_REMOVED) | (1u << CHANGE_ARCHIVED));
    CHECK(projects_are(s, "*", NULL));
    CHECK_INT(s->alerts, 1);
    CHECK_INT(s->allow_insecure, 0);
    CHECK_INT(s->format, LOG_FORMAT_TEXT);
    /* From a file (trailing newline trimmed) and from the environment. */
    CHECK_STR(c->sinks[2].url, "https://hooks.slack.example/services/T000/B000/FILE0000");
    CHECK_STR(c->sinks[3].url, ENV_URL);

    s = &c->sinks[4];
    CHECK_INT(s->type, CONF_SINK_MATRIX);
    CHECK_STR(s->homeserver, "https://matrix.example.org");
    CHECK_STR(s->room, "!abc:example.org");
    CHECK_STR(s->access_token, "syt_test_not_real");
    CHECK(s->url == NULL && s->secret == NULL);
    s = &c->sinks[5];
    CHECK_STR(s->homeserver, "http://matrix.internal:8008");
    CHECK_INT(s->allow_insecure, 1);
    CHECK_STR(s->room, "#team:example.org");
    CHECK_STR(s->access_token, ENV_TOKEN);
    s = &c->sinks[6];
    CHECK_STR(s->homeserver, "http://127.0.0.1:8008");
    CHECK_STR(s->room, "!opaqueid");
    CHECK_STR(s->access_token, "perm:test-token-not-real");

    s = &c->sinks[7];
    CHECK_INT(s->type, CONF_SINK_WEBHOOK);
    /* An endpoint is used as given: query and trailing '/' kept. */
    CHECK_STR(s->url, "https://example.com/hooks/ytbridge/?key=abc");
    CHECK_STR(s->secret, "s3cret-not-real");
    CHECK(projects_are(s, "ABC", "DEF-*"));
    s = &c->sinks[8];
    CHECK_STR(s->url, "http://localhost:9000/");
    CHECK(s->secret == NULL);

    s = &c->sinks[9];
    CHECK_INT(s->type, CONF_SINK_HOOKSHOT);
    CHECK_STR(s->url, "https://hookshot.example.org/webhook/abcdef");
    CHECK_INT(s->events, CONF_EVENTS_ALL);

    /* Every secret was registered with the logger as it was read. */
    log_redact(line, sizeof(line),
               "a https://hooks.slack.example/services/T000/B000/FILE0000 b " ENV_URL
               " c syt_test_not_real d s3cret-not-real e "
               "https://example.com/hooks/ytbridge/?key=abc f");
    CHECK_STR(line, "a [REDACTED] b [REDACTED] c [REDACTED] d [REDACTED] e [REDACTED] f");
    /* The homeserver is not a secret. */
    log_redact(line, sizeof(line), "https://matrix.example.org");
    CHECK_STR(line, "https://matrix.example.org");
out:
    conf_free(c);
    conf_diags_fini(&d);
    log_clear_secrets();
}

static int registered(const char *secret);

static void test_chat(void)
{
    struct conf *c = NULL;
    struct conf_diags d = {0};
    char cwd[PATH_MAX], dir[PATH_MAX];

    env_reset();
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
    snprintf(dir, sizeof(dir), "%s/conf", TEST_DATA_DIR);
    CHECK_INT(chdir(dir), 0);
    CHECK_INT(conf_load("chat-ok.conf", &c, &d), 0);
    if (!c) {
        CHECK_INT(chdir(cwd), 0);
        return;
    }
    const struct conf_chat_slack *sl = &c->chat.slack;
    CHECK_INT(sl->enabled, 1);
    CHECK_STR(sl->app_token, "xapp-1-A111-222-abc");
    CHECK_STR(sl->command, "/yt-bridge_2");
    CHECK_STR(sl->api_url, "https://slack.com/api");
    CHECK_INT((int)sl->n_allowed_channels, 1);
    CHECK_STR(sl->allowed_channels[0], "C0123ABCD");
    CHECK_INT((int)sl->n_allowed_users, 0); /* [] is everyone */
    CHECK_INT(sl->rate.per_user, 30);
    CHECK_INT(sl->rate.per_second, 2);
    /* No bot token: no subscriptions in Slack; no managers: everyone who may use the command. */
    CHECK(sl->bot_token == NULL);
    CHECK_INT((int)sl->n_manage_users, 0);
    CHECK_INT((int)c->chat.matrix.n_manage_users, 0);
    const struct conf_chat_matrix *mx = &c->chat.matrix;
    CHECK_INT(mx->rate.per_user, CONF_CHAT_PER_USER_DEFAULT);
    CHECK_INT(mx->rate.per_second, CONF_CHAT_PER_SECOND_DEFAULT);
    CHECK_INT(mx->enabled, 1);
    CHECK_STR(mx->homeserver, "https://matrix.example.org");
    CHECK_STR(mx->prefix, "!youtrack");
    CHECK_INT((int)mx->n_rooms, 2);
    CHECK_STR(mx->allowed_users[0], "@alice:example.org");
    /* One reply sink per room, found by name, never among the configured sinks. */
    CHECK_INT((int)mx->n_reply_sinks, 2);
    const struct conf_sink *r = conf_find_sink(c, "chat:!v12roomwithoutserver");
    CHECK(r == &mx->reply_sinks[1]);
    if (r) {
        CHECK_INT(r->type, CONF_SINK_MATRIX);
        CHECK_STR(r->room, "!v12roomwithoutserver");
        CHECK_STR(r->access_token, "syt_bot_token");
        CHECK_INT((int)r->events, 0);
        CHECK_INT(r->alerts, 0);
        CHECK_INT(r->chat_reply, 1);
    }
    CHECK_INT(c->sinks[0].chat_reply, 0);
    CHECK(conf_find_sink(c, "stdout") == &c->sinks[0]);
    CHECK(conf_find_sink(c, "chat:!nope:example.org") == NULL);
    conf_free(c);
    conf_diags_fini(&d);

    /* The bot token from a file (newline trimmed), and the managers of subscriptions. */
    chmod("slack-bot-token.txt", 0600);
    CHECK_INT(conf_load("chat-bot-ok.conf", &c, &d), 0);
    diags_print(&d);
    if (c) {
        sl = &c->chat.slack;
        CHECK_STR(sl->app_token, "xapp-1-A111-222-abc");
        CHECK_STR(sl->bot_token, "xoxb-0000-not-a-real-bot-token");
        CHECK_INT((int)sl->n_allowed_users, 3);
        CHECK_INT((int)sl->n_manage_users, 2);
        if (sl->n_manage_users == 2) {
            CHECK_STR(sl->manage_users[0], "W0456EFGH");
            CHECK_STR(sl->manage_users[1], "U0123ABCD");
        }
        /* allowed_users empty: any user id may manage. */
        CHECK_INT((int)c->chat.matrix.n_allowed_users, 0);
        CHECK_INT((int)c->chat.matrix.n_manage_users, 1);
        if (c->chat.matrix.n_manage_users == 1)
            CHECK_STR(c->chat.matrix.manage_users[0], "@alice:example.org");
        CHECK(registered("xoxb-0000-not-a-real-bot-token"));
        CHECK_INT((int)c->n_secrets, 4);
        if (c->n_secrets == 4)
            CHECK_STR(c->secrets[2].setting, "chat.slack.bot_token_file");
    }
    conf_free(c);
    conf_diags_fini(&d);
    log_clear_secrets();

    /* Without a chat group nothing listens. */
    CHECK_INT(conf_load("ok-minimal.conf", &c, &d), 0);
    if (c) {
        CHECK_INT(c->chat.slack.enabled, 0);
        CHECK_INT(c->chat.matrix.enabled, 0);
        CHECK_INT((int)c->chat.matrix.n_reply_sinks, 0);
    }
    conf_free(c);
    conf_diags_fini(&d);
    CHECK_INT(chdir(cwd), 0);
}

static void test_sink_type_names(void)
{
    CHECK_STR(conf_sink_type_name(CONF_SINK_STDOUT), "stdout");
    CHECK_STR(conf_sink_type_name(CONF_SINK_SLACK), "slack");
    CHECK_STR(conf_sink_type_name(CONF_SINK_MATRIX), "matrix");
    CHECK_STR(conf_sink_type_name(CONF_SINK_WEBHOOK), "webhook");
    CHECK_STR(conf_sink_type_name(CONF_SINK_HOOKSHOT), "hookshot");
    CHECK_STR(conf_sink_type_name((enum conf_sink_type)99), "unknown");
}

/* Loads the example with its commented-out sinks enabled ("  # , {" blocks). */
static void test_example_sinks(const char *path)
{
    struct conf_diags d = {0};
    struct conf *c = NULL;
    char *text = file_slurp(path), *out, *o;
    const char *p;
    int in_sinks = 0;

    CHECK(text != NULL);
    if (!text)
        return;
    out = calloc(1, strlen(text) + 1);
    o = out;
    for (p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) + 1 : strlen(p);
        if (strncmp(p, "sinks = (", 9) == 0)
            in_sinks = 1;
        else if (strncmp(p, ");", 2) == 0)
            in_sinks = 0;
        if (in_sinks && strncmp(p, "  # ", 4) == 0) {
            memcpy(o, "  ", 2);
            o += 2;
            p += 4;
            len -= 4;
        }
        memcpy(o, p, len);
        o += len;
        p += len;
    }
    setenv("YTBRIDGE_YOUTRACK_TOKEN", ENV_TOKEN, 1);
    setenv("YTBRIDGE_MATRIX_TOKEN", "syt_example_not_real", 1);
    setenv("YTBRIDGE_HOOKSHOT_URL", "https://hookshot.example.org/webhook/x", 1);
    CHECK_INT(conf_load_text(out, strlen(out), "example", NULL, &c, &d), -EINVAL);
    CHECK_INT(d.n, 3);
    for (size_t i = 0; i < d.n; i++)
        CHECK(strstr(d.v[i].msg, "cannot read /run/secrets/") != NULL);
    if (d.n != 3)
        diags_print(&d);
    conf_diags_fini(&d);
    unsetenv("YTBRIDGE_MATRIX_TOKEN");
    unsetenv("YTBRIDGE_HOOKSHOT_URL");
    free(out);
    free(text);
    env_reset();
}

static void test_example(void)
{
    const char *path = TEST_DATA_DIR "/../../config/ytbridge.conf.example";
    struct conf_diags d = {0};
    struct conf *c = NULL;

    env_reset();
    setenv("YTBRIDGE_YOUTRACK_TOKEN", ENV_TOKEN, 1);
    CHECK_INT(conf_load(path, &c, &d), 0);
    diags_print(&d);
    if (c) {
        CHECK_STR(c->youtrack.url, "https://example.youtrack.cloud");
        CHECK_STR(c->sinks[0].name, "console");
    }
    conf_free(c);

    /* The commented sink examples are valid too: only their secret files are missing here. */
    test_example_sinks(path);

    /* Without the variable the token is the only thing missing. */
    env_reset();
    c = NULL;
    CHECK_INT(conf_load(path, &c, &d), -EINVAL);
    CHECK_INT(d.n, 1);
    CHECK(d.n == 1 && strstr(d.v[0].msg, "missing token"));
    conf_diags_fini(&d);
}

static void test_env_override(void)
{
    struct conf_diags d = {0};
    struct conf *c = NULL;

    env_reset();
    setenv("YTBRIDGE_YOUTRACK_URL", "https://env.example.com/", 1);
    setenv("YTBRIDGE_YOUTRACK_TOKEN", ENV_TOKEN, 1);
    CHECK_INT(load_str("", &c, &d), 0);
    if (c) {
        CHECK_STR(c->youtrack.url, "https://env.example.com");
        CHECK_STR(c->youtrack.token, ENV_TOKEN);
    }
    conf_free(c);

    /* The variables win over the file, and the file's token source is not read. */
    c = NULL;
    CHECK_INT(load_str("youtrack: { url = \"https://file.example.com\";"
                       " token_file = \"/nonexistent/token\"; };",
                       &c, &d),
              0);
    if (c) {
        CHECK_STR(c->youtrack.url, "https://env.example.com");
        CHECK_STR(c->youtrack.token, ENV_TOKEN);
    }
    conf_free(c);

    /* The overriding URL is validated too, and named as coming from the environment. */
    setenv("YTBRIDGE_YOUTRACK_URL", "http://env.example.com", 1);
    c = NULL;
    CHECK_INT(load_str("youtrack: { url = \"https://file.example.com\"; };", &c, &d), -EINVAL);
    CHECK_INT(d.n, 1);
    CHECK(d.n == 1 && d.v[0].line == 0 &&
          strstr(d.v[0].msg, "youtrack.url (from YTBRIDGE_YOUTRACK_URL): plain http://"));
    conf_diags_fini(&d);

    /* ... but allow_insecure from the file still applies to it. */
    c = NULL;
    CHECK_INT(load_str("youtrack: { allow_insecure = true; };", &c, &d), 0);
    conf_free(c);

    setenv("YTBRIDGE_YOUTRACK_TOKEN", "perm:bad token", 1);
    c = NULL;
    CHECK_INT(load_str("youtrack: { allow_insecure = true; };", &c, &d), -EINVAL);
    CHECK(d.n == 1 && strstr(d.v[0].msg, "YTBRIDGE_YOUTRACK_TOKEN: contains whitespace"));
    conf_diags_fini(&d);

    /* Empty variables do not override. */
    setenv("YTBRIDGE_YOUTRACK_URL", "", 1);
    setenv("YTBRIDGE_YOUTRACK_TOKEN", "", 1);
    c = NULL;
    CHECK_INT(load_str("", &c, &d), -EINVAL);
    CHECK_INT(d.n, 2);
    conf_diags_fini(&d);
    env_reset();
}

/* Runs fn with stderr captured into buf (the mode warning goes through log_warn). */
static void capture_stderr(char *buf, size_t len, void (*fn)(void *), void *arg)
{
    char tmpl[TEST_PATH_MAX];
    int fd = mkstemp(test_tmp_template(tmpl, sizeof(tmpl), "ytb-stderr")), saved = dup(2);
    ssize_t n;

    fflush(stderr);
    dup2(fd, 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    n = pread(fd, buf, len - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(tmpl);
}

struct load_args {
    const char *path;
    struct conf *c;
    struct conf_diags d;
    int r;
};

static void load_path(void *arg)
{
    struct load_args *a = arg;
    a->r = conf_load(a->path, &a->c, &a->d);
}

static void test_token_file(void)
{
    char dir[TEST_PATH_MAX], conf_path[TEST_PATH_MAX + 32], tok[TEST_PATH_MAX + 32], err[4096];
    const char *text = "youtrack: { url = \"https://yt.example.com\"; token_file = \"tok\"; };\n";
    struct load_args a = {0};
    char *big;

    env_reset();
    test_tmpdir(dir, sizeof(dir), "ytb-conf");
    snprintf(conf_path, sizeof(conf_path), "%s/y.conf", dir);
    snprintf(tok, sizeof(tok), "%s/tok", dir);
    file_write(conf_path, text, strlen(text), 0600);

    /* Relative to the config file's directory; one CRLF and trailing blanks trimmed. */
    file_write(tok, FAKE_TOKEN " \r\n", strlen(FAKE_TOKEN) + 3, 0600);
    a.path = conf_path;
    capture_stderr(err, sizeof(err), load_path, &a);
    CHECK_INT(a.r, 0);
    CHECK(a.c && strcmp(a.c->youtrack.token, FAKE_TOKEN) == 0);
    CHECK(strstr(err, "chmod 600") == NULL);
    conf_free(a.c);
    a.c = NULL;

    /* Readable by others: a warning naming the file, not an error. */
    file_write(tok, FAKE_TOKEN "\n", strlen(FAKE_TOKEN) + 1, 0644);
    capture_stderr(err, sizeof(err), load_path, &a);
    CHECK_INT(a.r, 0);
    CHECK(strstr(err, "readable by group or others (chmod 600)") != NULL);
    CHECK(strstr(err, "/tok") != NULL);
    CHECK(strstr(err, FAKE_TOKEN) == NULL);
    conf_free(a.c);
    a.c = NULL;

    /* Group-readable by our own group only (Kubernetes' fsGroup mounts): no warning. */
    file_write(tok, FAKE_TOKEN "\n", strlen(FAKE_TOKEN) + 1, 0640);
    if (chown(tok, (uid_t)-1, getegid()) == 0) {
        capture_stderr(err, sizeof(err), load_path, &a);
        CHECK_INT(a.r, 0);
        CHECK(strstr(err, "chmod 600") == NULL);
        conf_free(a.c);
        a.c = NULL;
    }

    /* Group-readable by a group we are not in: a warning. */
    if (geteuid() == 0 && chown(tok, (uid_t)-1, 65533) == 0 && getegid() != 65533) {
        capture_stderr(err, sizeof(err), load_path, &a);
        CHECK_INT(a.r, 0);
        CHECK(strstr(err, "readable by group or others (chmod 600)") != NULL);
        conf_free(a.c);
        a.c = NULL;
    }

    /* Whitespace inside: an error that names the file but never the content. */
    file_write(tok, "perm:file-secret-xyzzy\nsecond-line\n", 35, 0600);
    CHECK_INT(conf_load(conf_path, &a.c, &a.d), -EINVAL);
    CHECK_INT(a.d.n, 1);
    CHECK(diags_contain(&a.d, "contains whitespace or control characters"));
    CHECK(!diags_contain(&a.d, "xyzzy"));
    conf_diags_fini(&a.d);

    /* An embedded NUL counts as a control character. */
    file_write(tok, "perm:abc\0def", 12, 0600);
    CHECK_INT(conf_load(conf_path, &a.c, &a.d), -EINVAL);
    CHECK(diags_contain(&a.d, "contains whitespace or control characters"));
    conf_diags_fini(&a.d);

    /* Over 64 KiB. */
    big = malloc(64 * 1024 + 1);
    memset(big, 'a', 64 * 1024 + 1);
    file_write(tok, big, 64 * 1024 + 1, 0600);
    CHECK_INT(conf_load(conf_path, &a.c, &a.d), -EINVAL);
    CHECK(diags_contain(&a.d, "larger than 64 KiB"));
    conf_diags_fini(&a.d);
    /* Exactly 64 KiB is fine. */
    file_write(tok, big, 64 * 1024, 0600);
    CHECK_INT(conf_load(conf_path, &a.c, &a.d), 0);
    conf_free(a.c);
    a.c = NULL;
    free(big);

    /* Unreadable (skip as root, who reads anything). */
    if (geteuid() != 0) {
        file_write(tok, FAKE_TOKEN, strlen(FAKE_TOKEN), 0000);
        CHECK_INT(conf_load(conf_path, &a.c, &a.d), -EINVAL);
        CHECK(diags_contain(&a.d, "Permission denied"));
        conf_diags_fini(&a.d);
    }

    unlink(tok);
    unlink(conf_path);
    rmdir(dir);
}

#define YT_OK        "youtrack: { url = \"https://yt.example.com\"; token = \"" FAKE_TOKEN "\"; };"
#define SLACK_SECRET "https://hooks.slack.example/services/T000/B000/NOTAREALSECRET0000"

static void test_no_secret_in_messages(void)
{
    /* Each text fails; secret is what must never appear and must be registered. */
    static const struct {
        const char *text, *secret;
    } cases[] = {
        {"youtrack: { url = \"https://yt.example.com\"; token = \"perm:distinct-SECRET-42\";"
         " poll_interval = 5; colour = 1; };",
         "perm:distinct-SECRET-42"},
        {"youtrack: { url = \"https://yt.example.com\"; token = \"perm:distinct-SECRET-42 x\"; };",
         "perm:distinct-SECRET-42 x"},
        {"youtrack: { url = \"https://yt.example.com\"; token = \"perm:distinct-SECRET-42\";"
         " token_file = \"/nonexistent\"; };",
         "perm:distinct-SECRET-42"},
        {"youtrack: { url = \"https://bot:distinct-SECRET-42@yt.example.com\"; token = \"t\"; };",
         "bot:distinct-SECRET-42"},
        {"youtrack: { url = \"https://yt.example.com\"; token = \"perm:distinct-SECRET-42\"; };"
         " sinks = ( { name = \"perm:distinct-SECRET-42\"; type = \"x\"; } );",
         "perm:distinct-SECRET-42"},
        /* Slack: a valid URL next to another error, and refused URLs of every kind. */
        {YT_OK " sinks = ( { name = \"s\"; type = \"slack\"; webhook_url = \"" SLACK_SECRET "\";"
               " colour = 1; } );",
         SLACK_SECRET},
        {YT_OK " sinks = ( { name = \"s\"; type = \"slack\"; webhook_url ="
               " \"http://hooks.slack.example/services/T000/B000/NOTAREALSECRET0000\"; } );",
         "http://hooks.slack.example/services/T000/B000/NOTAREALSECRET0000"},
        {YT_OK " sinks = ( { name = \"s\"; type = \"slack\"; webhook_url = \"" SLACK_SECRET " x\";"
               " } );",
         SLACK_SECRET " x"},
        {YT_OK " sinks = ( { name = \"s\"; type = \"slack\"; webhook_url = \"" SLACK_SECRET "\";"
               " webhook_url_env = \"YTB_TEST_URL\"; } );",
         SLACK_SECRET},
        {YT_OK " sinks = ( { name = \"s\"; type = \"slack\"; webhook_url = \"" SLACK_SECRET
               "#f\"; } );",
         SLACK_SECRET "#f"},
        {YT_OK " sinks = ( { name = \"s\"; type = \"slack\"; webhook_url = \"" SLACK_SECRET "\";"
               " events = [\"" SLACK_SECRET "\"]; } );",
         SLACK_SECRET},
        /* Chat tokens: a bot token where an app token belongs, a token pasted elsewhere. */
        {YT_OK " chat = { slack = { app_token = \"xoxb-distinct-SECRET-42\"; }; };",
         "xoxb-distinct-SECRET-42"},
        {YT_OK " chat = { slack = { app_token = \"xapp-distinct-SECRET-42\";"
               " allowed_users = [\"xapp-distinct-SECRET-42\"]; }; };",
         "xapp-distinct-SECRET-42"},
        {YT_OK " chat = { matrix = { homeserver = \"https://m.example\"; access_token ="
               " \"syt-distinct-SECRET-42\"; rooms = [\"syt-distinct-SECRET-42\"]; }; };",
         "syt-distinct-SECRET-42"},
        /* The bot token: the wrong kind of token, inline or from a variable, and quoted. */
        {YT_OK " chat = { slack = { app_token = \"xapp-1-x\"; bot_token ="
               " \"xapp-distinct-SECRET-42\"; }; };",
         "xapp-distinct-SECRET-42"},
        {YT_OK " chat = { slack = { app_token = \"xapp-1-x\"; bot_token ="
               " \"xoxp-distinct-SECRET-42\"; }; };",
         "xoxp-distinct-SECRET-42"},
        {YT_OK " chat = { slack = { app_token = \"xapp-1-x\"; bot_token ="
               " \"xoxb-distinct-SECRET-42 x\"; }; };",
         "xoxb-distinct-SECRET-42 x"},
        {YT_OK " chat = { slack = { app_token = \"xapp-1-x\"; bot_token_env ="
               " \"YTB_TEST_USER_TOKEN\"; }; };",
         "xoxp-distinct-SECRET-42"},
        {YT_OK
         " chat = { slack = { app_token = \"xapp-1-x\"; bot_token = \"xoxb-distinct-SECRET-42\";"
         " bot_token_file = \"/nonexistent\"; }; };",
         "xoxb-distinct-SECRET-42"},
        {YT_OK
         " chat = { slack = { app_token = \"xapp-1-x\"; bot_token = \"xoxb-distinct-SECRET-42\";"
         " allowed_users = [\"U1\"]; manage_users = [\"xoxb-distinct-SECRET-42\"]; }; };",
         "xoxb-distinct-SECRET-42"},
        /* Quoted before the walk reaches the token. */
        {YT_OK " chat = { slack = { manage_users = [\"xoxb-distinct-SECRET-42\"];"
               " app_token = \"xapp-1-x\"; bot_token = \"xoxb-distinct-SECRET-42\"; }; };",
         "xoxb-distinct-SECRET-42"},
        /* A secret pasted into a setting that is quoted (and cut short) in messages. */
        {YT_OK " sinks = ( { name = \"" SLACK_SECRET
               "\"; type = \"slack\"; webhook_url = \"" SLACK_SECRET "\"; } );",
         SLACK_SECRET},
        /* Webhook: the URL from the environment and from a file, the signing secret. */
        {YT_OK " sinks = ( { name = \"w\"; type = \"webhook\"; url_env = \"YTB_TEST_SECRET_URL\";"
               " } );",
         "ftp://x.example/NOTAREALSECRET0000"},
        {YT_OK " sinks = ( { name = \"w\"; type = \"webhook\";"
               " url_file = \"/tmp/ytb-test-secret-url\"; } );",
         "user:NOTAREALSECRET0000"},
        {YT_OK " sinks = ( { name = \"w\"; type = \"webhook\"; url = \"" SLACK_SECRET "\";"
               " secret = \"NOTAREALSECRET0000\"; secret_file = \"/nonexistent\"; } );",
         "NOTAREALSECRET0000"},
        {YT_OK " sinks = ( { name = \"w\"; type = \"webhook\"; secret = \"NOTAREALSECRET0000\";"
               " } );",
         "NOTAREALSECRET0000"},
        {YT_OK " sinks = ( { name = \"w\"; type = \"webhook\"; url = \"" SLACK_SECRET "\";"
               " secret_env = \"YTB_TEST_SECRET_URL\"; alerts = 1; } );",
         "ftp://x.example/NOTAREALSECRET0000"},
        /* Matrix: the access token inline, refused, and from the environment. */
        {YT_OK " sinks = ( { name = \"m\"; type = \"matrix\"; homeserver = \"https://m.example\";"
               " room = \"bad\"; access_token = \"syt_not_a_real_secret\"; } );",
         "syt_not_a_real_secret"},
        {YT_OK " sinks = ( { name = \"m\"; type = \"matrix\"; homeserver = \"https://m.example\";"
               " room = \"!r:m\"; access_token = \"syt_not_a_real_secret x\"; } );",
         "syt_not_a_real_secret x"},
        {YT_OK " sinks = ( { name = \"m\"; type = \"matrix\"; homeserver = \"https://m.example\";"
               " room = \"!r:m\"; access_token_env = \"YTB_TEST_BAD_TOKEN\"; } );",
         "syt_not_a_real_secret x"},
        /* Hookshot. */
        {YT_OK " sinks = ( { name = \"h h\"; type = \"hookshot\"; url = \"" SLACK_SECRET "\";"
               " } );",
         SLACK_SECRET},
    };
    const char *url_file = "/tmp/ytb-test-secret-url";
    const char *url_text = "https://user:NOTAREALSECRET0000@x.example/h\n";
    char raw[300], line[300];

    env_reset();
    setenv("YTB_TEST_SECRET_URL", "ftp://x.example/NOTAREALSECRET0000", 1);
    setenv("YTB_TEST_BAD_TOKEN", "syt_not_a_real_secret x", 1);
    setenv("YTB_TEST_USER_TOKEN", "xoxp-distinct-SECRET-42", 1);
    file_write(url_file, url_text, strlen(url_text), 0600);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct conf_diags d = {0};
        struct conf *c = NULL;
        int failures = test_failures;

        log_clear_secrets();
        CHECK_INT(load_str(cases[i].text, &c, &d), -EINVAL);
        CHECK(d.n >= 1);
        CHECK(!diags_contain(&d, "distinct-SECRET"));
        CHECK(!diags_contain(&d, "NOTAREALSECRET"));
        /* The secret was registered, so any later log line is redacted as well. */
        snprintf(raw, sizeof(raw), "x %s x", cases[i].secret);
        log_redact(line, sizeof(line), raw);
        CHECK_STR(line, "x [REDACTED] x");
        if (test_failures != failures) {
            fprintf(stderr, "  case %zu failed\n", i);
            diags_print(&d);
        }
        conf_diags_fini(&d);
    }
    unlink(url_file);
    unsetenv("YTB_TEST_SECRET_URL");
    unsetenv("YTB_TEST_BAD_TOKEN");
    unsetenv("YTB_TEST_USER_TOKEN");
    log_clear_secrets();
}

static void test_buffer_edges(void)
{
    static const char with_nul[] = "state_dir = \"/x\";\n\0junk";
    const char *text = "youtrack: { url = \"https://yt.example.com\"; token = \"" FAKE_TOKEN
                       "\"; }; state_dir = \"/a\";GARBAGE";
    struct conf_diags d = {0};
    struct conf *c = NULL;
    char *huge;

    env_reset();
    CHECK_INT(conf_load_buffer(with_nul, sizeof(with_nul) - 1, "n.conf", &c, &d), -EINVAL);
    CHECK(d.n == 1 && d.v[0].line == 2 && strstr(d.v[0].msg, "NUL byte"));
    conf_diags_fini(&d);

    /* Not NUL-terminated at len: only len bytes are read. */
    CHECK_INT(conf_load_buffer(text, strstr(text, "GARBAGE") - text, "b.conf", &c, &d), 0);
    CHECK(c && strcmp(c->state_dir, "/a") == 0);
    conf_free(c);
    c = NULL;

    huge = malloc(2 * 1024 * 1024);
    memset(huge, '#', 2 * 1024 * 1024);
    CHECK_INT(conf_load_buffer(huge, 2 * 1024 * 1024, "h.conf", &c, &d), -EINVAL);
    CHECK(d.n == 1 && strstr(d.v[0].msg, "larger than"));
    conf_diags_fini(&d);
    free(huge);

    CHECK_INT(conf_load_buffer(NULL, 0, "e.conf", &c, &d), -EINVAL);
    CHECK_INT(d.n, 2);
    conf_diags_fini(&d);
}

static void test_missing_file(void)
{
    struct conf_diags d = {0};
    struct conf *c = (struct conf *)&d; /* must be reset to NULL */
    char line[512];

    CHECK_INT(conf_load("/nonexistent/ytbridge.conf", &c, &d), -EINVAL);
    CHECK(c == NULL);
    CHECK_INT(d.n, 1);
    conf_diag_format(&d.v[0], line, sizeof(line));
    CHECK_STR(line, "/nonexistent/ytbridge.conf: cannot open: No such file or directory");
    conf_diags_fini(&d);

    CHECK_INT(conf_load("/", &c, &d), -EINVAL);
    CHECK(d.n == 1 && strstr(d.v[0].msg, "Is a directory"));
    conf_diags_fini(&d);
}

static void test_diags(void)
{
    struct conf_diag one = {.file = "a.conf", .line = 7, .msg = "boom"};
    struct conf_diags d = {0};
    struct conf *c = NULL;
    char line[64], small[8], *text;
    size_t o = 0;

    conf_diag_format(&one, line, sizeof(line));
    CHECK_STR(line, "a.conf:7: boom");
    one.line = 0;
    conf_diag_format(&one, line, sizeof(line));
    CHECK_STR(line, "a.conf: boom");
    conf_diag_format(&one, small, sizeof(small));
    CHECK_STR(small, "a.conf:");

    conf_free(NULL);
    conf_diags_fini(&d);
    conf_diags_fini(NULL);

    /* Diagnostics are appended to what the caller already holds, and capped. */
    env_reset();
    CHECK_INT(load_str("youtrack: { url = \"https://yt.example.com\"; token = \"" FAKE_TOKEN
                       "\"; };\na = 1;",
                       &c, &d),
              -EINVAL);
    CHECK_INT(d.n, 1);
    CHECK_INT(d.v[0].line, 2);
    CHECK_STR(d.v[0].msg, "a: unknown key");
    text = malloc(200 * 16);
    for (int i = 0; i < 200; i++)
        o += (size_t)sprintf(text + o, "k%d = 1;\n", i);
    CHECK_INT(load_str(text, &c, &d), -EINVAL);
    CHECK_INT(d.n, 1 + 51);
    CHECK_STR(d.v[0].msg, "a: unknown key");
    CHECK_STR(d.v[d.n - 1].msg, "too many problems; the rest are not shown");
    CHECK_INT(d.v[d.n - 1].line, 0);
    free(text);
    conf_diags_fini(&d);
}

/*
 * A secret pasted into a *_file (or *_env) setting instead of a path: the message names the
 * setting and never the value, in any diagnostic. Plain wrong paths are still shown.
 */
static void test_secret_pasted_as_a_path(void)
{
    static const struct {
        const char *conf, *value, *label;
    } cases[] = {
        {"youtrack: { url = \"https://yt.example.com\"; token_file = \"%s\"; };",
         "perm:ZmFrZQ==.Tk9UUkVBTA==.not-a-real-token", "youtrack.token_file"},
        {"youtrack: { url = \"https://yt.example.com\"; token_file = \"%s\"; };",
         "Zm4KeD9aQ2FrZVRva2VuMDAwMTIzNDU2Nzg5", "youtrack.token_file"},
        {"youtrack: { url = \"https://yt.example.com\"; token_env = \"%s\"; };",
         "perm:ZmFrZQ==.Tk9UUkVBTA==.not-a-real-token", "youtrack.token_env"},
        {"youtrack: { url = \"https://yt.example.com\"; token = \"" FAKE_TOKEN "\"; "
         "ca_file = \"%s\"; };",
         "perm-ZmFrZQ==.Tk9UUkVBTA==.not-a-real-token", "youtrack.ca_file"},
        {"youtrack: { url = \"https://yt.example.com\"; token = \"" FAKE_TOKEN "\"; };\n"
         "sinks = ( { name = \"s\"; type = \"slack\"; webhook_url_file = \"%s\"; } );",
         "https://hooks.slack.com/services/T000/B000/notarealhooksecret", "webhook_url_file"},
        {"youtrack: { url = \"https://yt.example.com\"; token = \"" FAKE_TOKEN "\"; };\n"
         "sinks = ( { name = \"m\"; type = \"matrix\"; homeserver = \"https://m.example\"; "
         "room = \"!r:m.example\"; access_token_file = \"%s\"; } );",
         "syt_test_only_not_a_real_matrix_token", "access_token_file"},
        {YT_OK "\nchat = { slack = { app_token = \"xapp-1-x\"; bot_token_file = \"%s\"; }; };",
         "xoxb-0000-0000-test-only-not-a-real-bot-token", "chat.slack.bot_token_file"},
        {YT_OK "\nchat = { slack = { app_token = \"xapp-1-x\"; bot_token_env = \"%s\"; }; };",
         "xoxb-0000-0000-test-only-not-a-real-bot-token", "chat.slack.bot_token_env"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct conf_diags d = {0};
        struct conf *c = NULL;
        char text[1024], line[1200];
        int named = 0;

        env_reset();
        log_clear_secrets();
        const char *hole = strstr(cases[i].conf, "%s");
        snprintf(text, sizeof(text), "%.*s%s%s", (int)(hole - cases[i].conf), cases[i].conf,
                 cases[i].value, hole + 2);
        CHECK_INT(load_str(text, &c, &d), -EINVAL);
        CHECK(c == NULL);
        for (size_t k = 0; k < d.n; k++) {
            conf_diag_format(&d.v[k], line, sizeof(line));
            /* Any 12 bytes of the value would do to leak it. */
            for (size_t o = 0; o + 12 <= strlen(cases[i].value); o++) {
                if (memmem(line, strlen(line), cases[i].value + o, 12)) {
                    fprintf(stderr, "case %zu: diagnostic %zu repeats the value\n", i, k);
                    CHECK(0);
                    break;
                }
            }
            named |= strstr(line, cases[i].label) && strstr(line, "looks like a");
        }
        if (!named)
            fprintf(stderr, "case %zu: no \"looks like\" diagnostic for %s\n", i, cases[i].label);
        CHECK(named);
        conf_diags_fini(&d);
    }
    log_clear_secrets();

    /* A wrong path is shown as it is: that is how the operator sees the typo. */
    struct conf_diags d = {0};
    struct conf *c = NULL;
    char line[1200];
    env_reset();
    CHECK_INT(load_str("youtrack: { url = \"https://yt.example.com\"; token_file = "
                       "\"/run/secrets/youtrack-token-production.txt\"; };",
                       &c, &d),
              -EINVAL);
    CHECK_INT(d.n, 1);
    conf_diag_format(&d.v[0], line, sizeof(line));
    CHECK(strstr(line, "cannot read /run/secrets/youtrack-token-production.txt") != NULL);
    conf_diags_fini(&d);
}

/* An environment for conf_resolve(): up to four variables, and how often it was asked. */
struct fake_env {
    const char *names[4], *values[4];
    int calls;
};

static const char *fake_get(void *ctx, const char *name)
{
    struct fake_env *e = ctx;

    e->calls++;
    for (size_t i = 0; i < 4 && e->names[i]; i++) {
        if (strcmp(e->names[i], name) == 0)
            return e->values[i];
    }
    return NULL;
}

static int secret_is(const struct conf_secret *s, const char *setting, int line,
                     enum conf_secret_from from, const char *source)
{
    return strcmp(s->setting, setting) == 0 && s->line == line && s->from == from &&
           (source ? s->source && strcmp(s->source, source) == 0 : s->source == NULL);
}

/* Whether secret is registered with the logger (redacted from every later line). */
static int registered(const char *secret)
{
    char raw[300], line[300];

    snprintf(raw, sizeof(raw), "x %s x", secret);
    log_redact(line, sizeof(line), raw);
    return strcmp(line, "x [REDACTED] x") == 0;
}

/*
 * conf_load_buffer() judges the text alone: the environment's overrides are not applied, files
 * are not opened (the token "file" is a directory, which reading would refuse loudly), variables
 * are not read, nothing is registered with the logger; where each secret comes from is recorded.
 */
static void test_buffer_is_pure(void)
{
    char text[1024];
    struct conf_diags d = {0};
    struct conf *c = NULL;

    env_reset();
    log_clear_secrets();
    setenv("YTBRIDGE_YOUTRACK_URL", "http://refused.example.com", 1);
    setenv("YTBRIDGE_YOUTRACK_TOKEN", "perm:refused token", 1);
    snprintf(text, sizeof(text),
             "youtrack: { url = \"https://yt.example.com\"; token_file = \"%s\";\n"
             "  ca_file = \"/nonexistent/ca.pem\"; };\n"
             "sinks = ( { name = \"s\"; type = \"slack\";\n"
             "  webhook_url_env = \"YTB_TEST_UNSET_VARIABLE\"; },\n"
             "  { name = \"w\"; type = \"webhook\"; url = \"https://hooks.example.com/w\";\n"
             "    secret = \"pure-inline-key-0123\"; } );\n",
             TEST_DATA_DIR);
    CHECK_INT(conf_load_buffer(text, strlen(text), "t.conf", &c, &d), 0);
    diags_print(&d);
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->youtrack.url, "https://yt.example.com");
        CHECK(c->youtrack.token == NULL);
        CHECK(c->sinks[0].url == NULL);
        CHECK_STR(c->sinks[1].secret, "pure-inline-key-0123");
        CHECK_INT(c->n_secrets, 4);
        if (c->n_secrets == 4) {
            CHECK(secret_is(&c->secrets[0], "youtrack.token_file", 1, CONF_SECRET_FILE,
                            TEST_DATA_DIR));
            CHECK(secret_is(&c->secrets[1], "sinks[0].webhook_url_env", 4, CONF_SECRET_ENV,
                            "YTB_TEST_UNSET_VARIABLE"));
            CHECK(secret_is(&c->secrets[2], "sinks[1].url", 5, CONF_SECRET_INLINE, NULL));
            CHECK(secret_is(&c->secrets[3], "sinks[1].secret", 6, CONF_SECRET_INLINE, NULL));
        }
    }
    CHECK(!registered("pure-inline-key-0123"));

    /* The same configuration resolved: now the directory, the variable and the CA file fail. */
    struct fake_env none = {{NULL}, {NULL}, 0};
    struct conf_env env = {.get = fake_get, .ctx = &none};
    if (c) {
        char line[1200];
        CHECK_INT(conf_resolve(c, &env, &d), -EINVAL);
        CHECK_INT(d.n, 3);
        if (d.n == 3) {
            conf_diag_format(&d.v[0], line, sizeof(line));
            CHECK(strstr(line, "t.conf:1: youtrack.token_file: ") &&
                  strstr(line, "is not a regular"));
            conf_diag_format(&d.v[1], line, sizeof(line));
            CHECK_STR(line, "t.conf:2: youtrack.ca_file: cannot read /nonexistent/ca.pem: No such "
                            "file or directory");
            conf_diag_format(&d.v[2], line, sizeof(line));
            CHECK_STR(line, "t.conf:4: sinks[0].webhook_url_env: environment variable "
                            "YTB_TEST_UNSET_VARIABLE is not set or empty");
        }
        CHECK(none.calls > 0);
        /* Resolving registers the text's own secrets too. */
        CHECK(registered("pure-inline-key-0123"));
    }
    conf_free(c);
    conf_diags_fini(&d);

    /* Messages of the pure step are still redacted, against the text's own secrets. */
    c = NULL;
    log_clear_secrets();
    CHECK_INT(conf_load_buffer(YT_OK " log = { level = \"" FAKE_TOKEN "\"; };",
                               strlen(YT_OK " log = { level = \"" FAKE_TOKEN "\"; };"), "t.conf",
                               &c, &d),
              -EINVAL);
    CHECK(d.n == 1 && strstr(d.v[0].msg, "(got \"[REDACTED]\")"));
    CHECK(!diags_contain(&d, "test-token-not-real"));
    CHECK(!registered(FAKE_TOKEN));
    conf_diags_fini(&d);

    /* A text that relies on the environment for url and token is refused here, alone. */
    CHECK_INT(conf_load_buffer("", 0, "t.conf", &c, &d), -EINVAL);
    CHECK(d.n == 2 && strstr(d.v[0].msg, "missing url") && strstr(d.v[1].msg, "missing token"));
    conf_diags_fini(&d);
    env_reset();
}

/* Loads text purely (it must load) and resolves it with env; conf_resolve()'s result. */
static int resolve_str(const char *text, struct fake_env *fake, struct conf **c,
                       struct conf_diags *d)
{
    struct conf_env env = {.get = fake_get, .ctx = fake};

    *c = NULL;
    CHECK_INT(conf_load_buffer(text, strlen(text), "t.conf", c, d), 0);
    if (!*c) {
        diags_print(d);
        return -1;
    }
    return conf_resolve(*c, &env, d);
}

/*
 * resolve_str() of text must fail with exactly one diagnostic, formatted "FILE:LINE: message",
 * equal to fmt's expansion.
 */
static void resolve_refused(const char *text, struct fake_env *fake, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void resolve_refused(const char *text, struct fake_env *fake, const char *fmt, ...)
{
    char want[600], line[1200];
    struct conf_diags d = {0};
    struct conf *c = NULL;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(want, sizeof(want), fmt, ap);
    va_end(ap);
    CHECK_INT(resolve_str(text, fake, &c, &d), -EINVAL);
    CHECK_INT(d.n, 1);
    if (d.n >= 1) {
        conf_diag_format(&d.v[0], line, sizeof(line));
        CHECK_STR(line, want);
    }
    conf_free(c);
    conf_diags_fini(&d);
}

static void capture_resolve(void *arg);

struct resolve_args {
    const char *text;
    struct fake_env *fake;
    struct conf *c;
    struct conf_diags d;
    int r;
};

static void capture_resolve(void *arg)
{
    struct resolve_args *a = arg;
    a->r = resolve_str(a->text, a->fake, &a->c, &a->d);
}

static void capture_stderr(char *buf, size_t len, void (*fn)(void *), void *arg);

/* conf_resolve() alone, on what conf_load_buffer() recorded, with a fake environment. */
static void test_resolve(void)
{
    char dir[TEST_PATH_MAX], tok[TEST_PATH_MAX + 32], text[1024], err[4096];
    struct fake_env none = {{NULL}, {NULL}, 0};
    struct conf_diags d = {0};
    struct conf *c = NULL;

    env_reset();
    log_clear_secrets();
    test_tmpdir(dir, sizeof(dir), "ytb-resolve");
    snprintf(tok, sizeof(tok), "%s/tok", dir);

    /* A token file readable by others: read, with a warning that names the file. */
    file_write(tok, FAKE_TOKEN "\n", strlen(FAKE_TOKEN) + 1, 0644);
    snprintf(text, sizeof(text),
             "youtrack: { url = \"https://yt.example.com\"; token_file = \"%s\"; };", tok);
    struct resolve_args a = {.text = text, .fake = &none};
    capture_stderr(err, sizeof(err), capture_resolve, &a);
    CHECK_INT(a.r, 0);
    CHECK(a.c && a.c->youtrack.token && strcmp(a.c->youtrack.token, FAKE_TOKEN) == 0);
    CHECK(strstr(err, "t.conf:1: youtrack.token_file: token file") != NULL);
    CHECK(strstr(err, "/tok is readable by group or others (chmod 600)") != NULL);
    CHECK(strstr(err, FAKE_TOKEN) == NULL);
    CHECK(registered(FAKE_TOKEN));
    conf_free(a.c);
    conf_diags_fini(&a.d);

    /* A missing file. */
    unlink(tok);
    resolve_refused(text, &none,
                    "t.conf:1: youtrack.token_file: cannot read %s: No such file or directory",
                    tok);

    /* A token pasted where the file's path belongs: named, never shown, registered. */
    log_clear_secrets();
    resolve_refused("youtrack: { url = \"https://yt.example.com\";\n"
                    "  token_file = \"perm:ZmFrZQ==.Tk9UUkVBTA==.resolve-pasted\"; };",
                    &none,
                    "t.conf:2: youtrack.token_file: the value looks like a token, not a path; put "
                    "the token in a file and name the file here");
    CHECK(registered("perm:ZmFrZQ==.Tk9UUkVBTA==.resolve-pasted"));

    /* A variable, set and unset. */
    struct fake_env set = {{"YTB_FAKE_TOKEN"}, {"perm:from-the-fake-env-1"}, 0};
    const char *by_env = "youtrack: { url = \"https://yt.example.com\"; token_env = "
                         "\"YTB_FAKE_TOKEN\"; };";
    CHECK_INT(resolve_str(by_env, &set, &c, &d), 0);
    CHECK(c && c->youtrack.token && strcmp(c->youtrack.token, "perm:from-the-fake-env-1") == 0);
    CHECK(set.calls > 0);
    CHECK(registered("perm:from-the-fake-env-1"));
    conf_free(c);
    CHECK_INT(resolve_str(by_env, &none, &c, &d), -EINVAL);
    CHECK(d.n == 1 && strcmp(d.v[0].msg, "youtrack.token_env: environment variable "
                                         "YTB_FAKE_TOKEN is not set or empty") == 0);
    conf_free(c);
    conf_diags_fini(&d);

    /* The overrides: YTBRIDGE_YOUTRACK_URL over the file's url, _TOKEN over its token. */
    struct fake_env over = {{"YTBRIDGE_YOUTRACK_URL", "YTBRIDGE_YOUTRACK_TOKEN"},
                            {"https://env.example.com/", ENV_TOKEN},
                            0};
    CHECK_INT(resolve_str("youtrack: { url = \"https://file.example.com\"; token = \"" FAKE_TOKEN
                          "\"; };",
                          &over, &c, &d),
              0);
    CHECK(c && strcmp(c->youtrack.url, "https://env.example.com") == 0);
    CHECK(c && strcmp(c->youtrack.token, ENV_TOKEN) == 0);
    conf_free(c);
    over.values[0] = "http://env.example.com";
    CHECK_INT(resolve_str("youtrack: { url = \"https://file.example.com\"; token = \"" FAKE_TOKEN
                          "\"; };",
                          &over, &c, &d),
              -EINVAL);
    CHECK(d.n == 1 && d.v[0].line == 0 &&
          strstr(d.v[0].msg, "youtrack.url (from YTBRIDGE_YOUTRACK_URL): plain http://"));
    conf_free(c);
    conf_diags_fini(&d);

    /* The chat.matrix reply sinks need the token, so they come with conf_resolve(). */
    struct fake_env mx = {{"YTB_MX"}, {"syt_fake_env_matrix_token"}, 0};
    CHECK_INT(resolve_str(YT_OK
                          " chat = { matrix = { homeserver = \"https://m.example\";"
                          " access_token_env = \"YTB_MX\"; rooms = [\"!a:m\", \"!b:m\"]; }; };",
                          &mx, &c, &d),
              0);
    CHECK(c && c->chat.matrix.n_reply_sinks == 2);
    if (c && c->chat.matrix.n_reply_sinks == 2)
        CHECK_STR(c->chat.matrix.reply_sinks[1].access_token, "syt_fake_env_matrix_token");
    /* Once: a second call has nothing left to do. */
    if (c)
        CHECK_INT(conf_resolve(c, NULL, &d), 0);
    CHECK_INT(d.n, 0);
    conf_free(c);
    conf_diags_fini(&d);

    rmdir(dir);
    log_clear_secrets();
    env_reset();
}

/*
 * chat.slack.bot_token from a file and from the environment, as app_token and the other secrets
 * are: read by conf_resolve(), trimmed, checked for its kind, registered, never shown.
 */
static void test_slack_bot_token(void)
{
    char dir[TEST_PATH_MAX], tok[TEST_PATH_MAX + 32], text[1024], err[4096];
    const char *bot = "xoxb-1111-2222-test-only-not-real";
    struct fake_env none = {{NULL}, {NULL}, 0};
    struct conf_diags d = {0};
    struct conf *c = NULL;

    env_reset();
    log_clear_secrets();
    test_tmpdir(dir, sizeof(dir), "ytb-bot");
    snprintf(tok, sizeof(tok), "%s/bot", dir);

    /* A file: trailing newline trimmed, recorded, registered; readable by others: a warning. */
    file_write(tok, "xoxb-1111-2222-test-only-not-real\r\n", strlen(bot) + 2, 0644);
    snprintf(text, sizeof(text),
             YT_OK "\nchat = { slack = { app_token = \"xapp-1-x\";\n"
                   "  bot_token_file = \"%s\"; }; };",
             tok);
    struct resolve_args a = {.text = text, .fake = &none};
    capture_stderr(err, sizeof(err), capture_resolve, &a);
    CHECK_INT(a.r, 0);
    CHECK(a.c && a.c->chat.slack.bot_token && strcmp(a.c->chat.slack.bot_token, bot) == 0);
    CHECK(strstr(err, "t.conf:3: chat.slack.bot_token_file: bot token file") != NULL);
    CHECK(strstr(err, bot) == NULL);
    CHECK(registered(bot));
    if (a.c && a.c->n_secrets == 3)
        CHECK(secret_is(&a.c->secrets[2], "chat.slack.bot_token_file", 3, CONF_SECRET_FILE, tok));
    else
        CHECK(0);
    conf_free(a.c);
    conf_diags_fini(&a.d);

    /* The app token in the bot token's file: which token goes where, and never the value. */
    log_clear_secrets();
    file_write(tok, "xapp-1-A0000-test-only-not-real\n", 32, 0600);
    resolve_refused(text, &none,
                    "t.conf:3: chat.slack.bot_token_file: this is an app-level token "
                    "(\"xapp-...\"), which belongs in app_token; bot_token takes the Bot User "
                    "OAuth Token (\"xoxb-...\", scopes chat:write, channels:read, groups:read)");
    CHECK(registered("xapp-1-A0000-test-only-not-real"));

    /* A missing file. */
    unlink(tok);
    resolve_refused(
        text, &none,
        "t.conf:3: chat.slack.bot_token_file: cannot read %s: No such file or directory", tok);
    rmdir(dir);

    /* A variable: set, set to a user token, unset. */
    const char *by_env = YT_OK " chat = { slack = { app_token = \"xapp-1-x\";"
                               " bot_token_env = \"YTB_FAKE_BOT\"; }; };";
    struct fake_env set = {{"YTB_FAKE_BOT"}, {"xoxb-from-the-fake-env-1"}, 0};
    log_clear_secrets();
    CHECK_INT(resolve_str(by_env, &set, &c, &d), 0);
    CHECK(c && c->chat.slack.bot_token &&
          strcmp(c->chat.slack.bot_token, "xoxb-from-the-fake-env-1") == 0);
    CHECK(registered("xoxb-from-the-fake-env-1"));
    conf_free(c);
    set.values[0] = "xoxp-from-the-fake-env-2";
    CHECK_INT(resolve_str(by_env, &set, &c, &d), -EINVAL);
    CHECK(d.n == 1 && strcmp(d.v[0].msg, "chat.slack.bot_token_env: this is a user token "
                                         "(\"xoxp-...\"), which would post as that person; "
                                         "bot_token takes the Bot User OAuth Token (\"xoxb-...\", "
                                         "scopes chat:write, channels:read, groups:read)") == 0);
    CHECK(!diags_contain(&d, "from-the-fake-env"));
    CHECK(registered("xoxp-from-the-fake-env-2"));
    conf_free(c);
    conf_diags_fini(&d);
    CHECK_INT(resolve_str(by_env, &none, &c, &d), -EINVAL);
    CHECK(d.n == 1 && strcmp(d.v[0].msg, "chat.slack.bot_token_env: environment variable "
                                         "YTB_FAKE_BOT is not set or empty") == 0);
    conf_free(c);
    conf_diags_fini(&d);

    /* Empty inline, and bot_token without the rest of chat.slack is still chat.slack. */
    CHECK_INT(load_str(YT_OK " chat = { slack = { app_token = \"xapp-1-x\"; bot_token = \"\"; };"
                             " };",
                       &c, &d),
              -EINVAL);
    CHECK(d.n == 1 && strcmp(d.v[0].msg, "chat.slack.bot_token: must not be empty") == 0);
    conf_diags_fini(&d);
    CHECK_INT(load_str(YT_OK " chat = { slack = { bot_token = \"xoxb-1-x\"; }; };", &c, &d),
              -EINVAL);
    CHECK(d.n == 1 && strstr(d.v[0].msg, "chat.slack: missing app_token") != NULL);
    conf_diags_fini(&d);
    log_clear_secrets();
    env_reset();
}

/*
 * A secret read from a file is redacted from every message, also from one about a setting the
 * walk reached before it read the file (quoted and cut short there, it must not show either).
 * Until the loader rendered its messages at the end, sinks[0]'s message showed the URL that
 * sinks[1] reads from its file.
 */
static void test_secret_read_late(void)
{
    const char *secret = "https://hooks.slack.example/services/T000/B000/"
                         "LATEREADSECRET0123456789abcdefghijklmnop";
    const char *path = "/tmp/ytb-test-late-secret";
    char text[1024], line[1200];
    struct conf_diags d = {0};
    struct conf *c = NULL;

    env_reset();
    log_clear_secrets();
    file_write(path, secret, strlen(secret), 0600);
    snprintf(text, sizeof(text),
             YT_OK
             "\nsinks = ( { name = \"%s\"; type = \"stdout\"; },\n"
             "  { name = \"s\"; type = \"slack\"; webhook_url_file = \"%s\"; } );\n"
             "chat = { slack = { app_token = \"xapp-1-late\"; allowed_users = [\"%s\"]; }; };",
             secret, path, secret);
    CHECK_INT(load_str(text, &c, &d), -EINVAL);
    CHECK_INT(d.n, 2);
    for (size_t k = 0; k < d.n; k++) {
        conf_diag_format(&d.v[k], line, sizeof(line));
        CHECK(strstr(line, "[REDACTED]") != NULL);
        /* Any 12 bytes past the scheme would do to leak it. */
        for (size_t o = 8; o + 12 <= strlen(secret); o++) {
            if (memmem(line, strlen(line), secret + o, 12)) {
                fprintf(stderr, "diagnostic %zu repeats the secret: %s\n", k, line);
                CHECK(0);
                break;
            }
        }
    }
    CHECK(registered(secret));
    conf_diags_fini(&d);
    unlink(path);
    log_clear_secrets();
}

int main(void)
{
    log_setup(LOGL_INFO, LOG_FORMAT_TEXT);
    RUN(test_cases);
    RUN(test_defaults);
    RUN(test_full);
    RUN(test_sinks);
    RUN(test_chat);
    RUN(test_sink_type_names);
    RUN(test_example);
    RUN(test_env_override);
    RUN(test_token_file);
    RUN(test_no_secret_in_messages);
    RUN(test_buffer_edges);
    RUN(test_missing_file);
    RUN(test_diags);
    RUN(test_secret_pasted_as_a_path);
    RUN(test_buffer_is_pure);
    RUN(test_resolve);
    RUN(test_slack_bot_token);
    RUN(test_secret_read_late);
    return test_done();
}
