/*
 * Unit tests for the renderers (bridge/render.c): golden files for a set of messages x every
 * target (tests/data/render/<case>.txt; YTBRIDGE_UPDATE_GOLDEN=1 rewrites them, to be read and
 * checked by eye before committing), then properties every output must have whatever the input:
 * hostile names ping and link nobody, limits hold, JSON parses, UTF-8 stays valid.
 * YTBRIDGE_RENDER_FUZZ_SECONDS=N runs the random-name loop for N seconds instead of a few
 * thousand rounds.
 */
#include "render.h"
#include "slack_check.h"
#include "test.h"

#include <jansson.h>
#include <stdint.h>
#include <time.h>

#define URL "https://yt.example.com"

static const char hostile[] = "<!channel> @here @everyone @room <b>x</b> <https://evil|click> & "
                              "*bold* _it_ ~s~ `code` \n\x1b[31m";

static const char *const target_names[] = {"text",   "json",    "slack",
                                           "matrix", "webhook", "hookshot"};
#define N_TARGETS 6

/* ---- checks on any output ---- */

static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n;
        uint32_t v;
        if (*p < 0x80) {
            p++;
            continue;
        } else if (*p >= 0xc2 && *p <= 0xdf) {
            n = 2, v = *p & 0x1f;
        } else if (*p >= 0xe0 && *p <= 0xef) {
            n = 3, v = *p & 0x0f;
        } else if (*p >= 0xf0 && *p <= 0xf4) {
            n = 4, v = *p & 0x07;
        } else {
            return 0;
        }
        for (size_t i = 1; i < n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            v = v << 6 | (p[i] & 0x3f);
        }
        if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10ffff ||
            (v >= 0xd800 && v <= 0xdfff))
            return 0;
        p += n;
    }
    return 1;
}

static size_t cps(const char *s)
{
    size_t k = 0;
    for (; *s; s++)
        k += ((unsigned char)*s & 0xc0) != 0x80;
    return k;
}

static const char *jget_str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* HTML we produce: only our tags, links only http(s), attributes closed, entities only ours. */
static int html_safe(const char *h)
{
    static const char *const tags[] = {"<b>",  "</b>",  "<code>", "</code>", "<p>",  "</p>",
                                       "<ul>", "</ul>", "<li>",   "</li>",   "<br>", "</a>"};
    for (const char *p = h; *p; p++) {
        if (*p == '<') {
            size_t i;
            for (i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
                if (!strncmp(p, tags[i], strlen(tags[i])))
                    break;
            if (i < sizeof(tags) / sizeof(tags[0])) {
                p += strlen(tags[i]) - 1;
                continue;
            }
            if (strncmp(p, "<a href=\"http://", 16) && strncmp(p, "<a href=\"https://", 17))
                return 0;
            const char *q = strchr(p + 9, '"');
            if (!q || q[1] != '>' || memchr(p + 9, '<', (size_t)(q - p - 9)) ||
                memchr(p + 9, '>', (size_t)(q - p - 9)) || memchr(p + 9, '\'', (size_t)(q - p - 9)))
                return 0;
            p = q + 1;
            continue;
        }
        if (*p == '>' || *p == '"' || *p == '\'')
            return 0;
        if (*p == '&' && strncmp(p, "&amp;", 5) && strncmp(p, "&lt;", 4) && strncmp(p, "&gt;", 4) &&
            strncmp(p, "&quot;", 6) && strncmp(p, "&#39;", 5))
            return 0;
        if ((unsigned char)*p < 0x20)
            return 0;
    }
    return 1;
}

/* The elements of every block of a Slack body, in one array (caller decrefs; NULL: not JSON). */
static json_t *slack_elements(const char *out)
{
    json_t *o = out ? json_loads(out, 0, NULL) : NULL, *all = json_array(), *b;
    size_t i;
    json_array_foreach(json_object_get(o, "blocks"), i, b)
    {
        json_t *sec = json_array_get(json_object_get(b, "elements"), 0);
        json_array_extend(all, json_object_get(sec, "elements"));
    }
    if (!o) {
        json_decref(all);
        all = NULL;
    }
    json_decref(o);
    return all;
}

/* The strict shape of tests/slack_check.h: rich_text blocks only, literal text, the limits. */
/*
 * Whether out is byte for byte what jansson writes for the same document (compact, keys in
 * order): Slack's JSON is written without jansson (render_slack.c) and must not differ from it.
 */
static int as_jansson_writes(const char *out)
{
    json_t *o = out ? json_loads(out, 0, NULL) : NULL;
    char *again = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    int same = again && strcmp(again, out) == 0;
    if (!same)
        fprintf(stderr, "not as jansson writes it:\n  %.2000s\n  %.2000s\n", out ? out : "(null)",
                again ? again : "(null)");
    free(again);
    json_decref(o);
    return same;
}

static void check_slack(const char *out)
{
    const char *err = slack_check(out, SLACK_NOTIFICATION);
    if (err)
        fprintf(stderr, "slack: %s in %.3000s\n", err, out);
    CHECK(err == NULL);
    CHECK(as_jansson_writes(out));
}

static void check_matrix(const char *out)
{
    json_error_t e;
    json_t *o = json_loads(out, 0, &e);
    CHECK(strlen(out) <= 61440);
    CHECK(o != NULL);
    if (!o)
        return;
    CHECK_STR(jget_str(o, "msgtype"), "m.notice");
    json_t *mm = json_object_get(o, "m.mentions");
    CHECK(json_is_object(mm) && json_object_size(mm) == 0);
    CHECK(jget_str(o, "body") != NULL);
    const char *html = jget_str(o, "formatted_body");
    if (html) {
        CHECK_STR(jget_str(o, "format"), "org.matrix.custom.html");
        CHECK(html_safe(html));
    } else {
        CHECK(json_object_get(o, "format") == NULL);
    }
    json_decref(o);
}

static void check_hookshot(const char *out)
{
    json_error_t e;
    json_t *o = json_loads(out, 0, &e);
    CHECK(strlen(out) <= 61440);
    CHECK(o != NULL);
    if (!o)
        return;
    CHECK_INT(json_object_size(o), 2);
    CHECK(jget_str(o, "text") != NULL);
    /* Never without "html": hookshot would render the text as Markdown. */
    CHECK(jget_str(o, "html") != NULL && html_safe(jget_str(o, "html")));
    json_decref(o);
}

/* Every property that must hold for output out of target t. */
static void check_output(enum render_target t, const char *out)
{
    CHECK(out != NULL);
    if (!out)
        return;
    CHECK(utf8_valid(out));
    CHECK(strstr(out, "link_names") == NULL);
    if (t == RENDER_TEXT) {
        CHECK(strchr(out, '\n') == NULL && strchr(out, '\x1b') == NULL);
        return;
    }
    CHECK(strchr(out, '\n') == NULL); /* compact JSON */
    json_error_t e;
    json_t *o = json_loads(out, 0, &e);
    CHECK(o != NULL);
    json_decref(o);
    if (t == RENDER_SLACK)
        check_slack(out);
    else if (t == RENDER_MATRIX)
        check_matrix(out);
    else if (t == RENDER_HOOKSHOT)
        check_hookshot(out);
}

/* ---- the cases ---- */

static struct project P(const char *id, const char *key, const char *name, int archived) {
    return (struct project){
        .id = id, .short_name = key, .name = name, .archived = (signed char)archived};
}

static struct message
change_msg(const struct change *c)
{
    return (struct message){.kind = MESSAGE_CHANGE,
                            .change = c,
                            .service_url = URL,
                            .flavour = YOUTRACK_MODERN,
                            .id = "d-0001",
                            .occurred_at = 1700000000};
}

static struct project demo, old_p, new_p, ops_live, ops_arch, gone, evil, evil2, cyr, rocket,
    rocket2, rtl, unknown, unknown_arch0, unknown_arch1, legacy;
static struct change c_created, c_renamed, c_archived, c_unarchived, c_removed, c_hostile,
    c_hostile_renamed, c_cyr, c_emoji, c_rtl, c_unknown, c_unknown_arch, c_legacy;

static void setup(void)
{
    demo = P("0-1", "DEMO", "Demo project", TRI_NO);
    demo.description = "The demo";
    demo.leader_login = "jane";
    demo.leader_name = "Jane Doe";
    old_p = P("0-2", "OLD", "Old name", TRI_NO);
    new_p = P("0-2", "NEW", "New name", TRI_NO);
    ops_live = P("0-3", "OPS", "Operations", TRI_NO);
    ops_arch = P("0-3", "OPS", "Operations", TRI_YES);
    gone = P("0-4", "GONE", "Gone project", TRI_NO);
    evil = P("0-5", "EVIL", hostile, TRI_NO);
    evil2 = P("0-5", "<@U123>", "Safe & sound", TRI_NO);
    cyr = P("0-6", "ДЕМО", "Демопроект", TRI_NO);
    rocket = P("0-7", "LAUNCH", "\xf0\x9f\x9a\x80 Launch", TRI_NO);
    rocket2 = P("0-7", "LAUNCH2", "\xf0\x9f\x9a\x80 Launch 2", TRI_NO);
    rtl = P("0-8", "RTL",
            "مشروع \xe2\x80\xae"
            "txt.exe",
            TRI_NO);
    unknown = P("0-9", NULL, NULL, TRI_UNKNOWN);
    unknown_arch0 = P("0-10", "KEY", NULL, TRI_UNKNOWN);
    unknown_arch1 = P("0-10", "KEY", NULL, TRI_YES);
    legacy = P("LEG", "LEG", "Legacy", TRI_NO);

    c_created = (struct change){CHANGE_CREATED, NULL, &demo};
    c_renamed = (struct change){CHANGE_RENAMED, &old_p, &new_p};
    c_archived = (struct change){CHANGE_ARCHIVED, &ops_live, &ops_arch};
    c_unarchived = (struct change){CHANGE_UNARCHIVED, &ops_arch, &ops_live};
    c_removed = (struct change){CHANGE_REMOVED, &gone, NULL};
    c_hostile = (struct change){CHANGE_CREATED, NULL, &evil};
    c_hostile_renamed = (struct change){CHANGE_RENAMED, &evil, &evil2};
    c_cyr = (struct change){CHANGE_CREATED, NULL, &cyr};
    c_emoji = (struct change){CHANGE_RENAMED, &rocket, &rocket2};
    c_rtl = (struct change){CHANGE_CREATED, NULL, &rtl};
    c_unknown = (struct change){CHANGE_CREATED, NULL, &unknown};
    c_unknown_arch = (struct change){CHANGE_ARCHIVED, &unknown_arch0, &unknown_arch1};
    c_legacy = (struct change){CHANGE_CREATED, NULL, &legacy};
}

static const struct change *const digest7[] = {&c_created, &c_renamed, &c_archived, &c_unarchived,
                                               &c_removed, &c_hostile, &c_cyr};

struct golden_case {
    const char *name;
    struct message m;
};

static size_t golden_cases(struct golden_case *out)
{
    size_t n = 0;
    out[n++] = (struct golden_case){"created", change_msg(&c_created)};
    out[n++] = (struct golden_case){"renamed", change_msg(&c_renamed)};
    out[n++] = (struct golden_case){"archived", change_msg(&c_archived)};
    out[n++] = (struct golden_case){"unarchived", change_msg(&c_unarchived)};
    out[n++] = (struct golden_case){"removed", change_msg(&c_removed)};
    out[n++] = (struct golden_case){"hostile_created", change_msg(&c_hostile)};
    out[n++] = (struct golden_case){"hostile_renamed", change_msg(&c_hostile_renamed)};
    out[n++] = (struct golden_case){"cyrillic", change_msg(&c_cyr)};
    out[n++] = (struct golden_case){"emoji_renamed", change_msg(&c_emoji)};
    out[n++] = (struct golden_case){"rtl_override", change_msg(&c_rtl)};
    out[n++] = (struct golden_case){"unknown_fields", change_msg(&c_unknown)};
    out[n++] = (struct golden_case){"unknown_archived", change_msg(&c_unknown_arch)};
    struct message leg = change_msg(&c_legacy);
    leg.flavour = YOUTRACK_LEGACY;
    out[n++] = (struct golden_case){"legacy", leg};
    struct message dg = change_msg(NULL);
    dg.kind = MESSAGE_DIGEST;
    dg.digest = digest7;
    dg.n_changes = sizeof(digest7) / sizeof(digest7[0]);
    out[n++] = (struct golden_case){"digest", dg};
    struct message bl = change_msg(NULL);
    bl.kind = MESSAGE_BASELINE;
    bl.count = 12;
    out[n++] = (struct golden_case){"baseline", bl};
    bl.count = 1;
    out[n++] = (struct golden_case){"baseline_one", bl};
    struct message al = change_msg(NULL);
    al.kind = MESSAGE_ALERT;
    al.alert = "removals_held";
    al.count = 3;
    al.text = "3 project removals held back (more than mass_removal_limit = 2): check YouTrack, "
              "then run `ytbridge --accept-removals`";
    out[n++] = (struct golden_case){"alert", al};
    return n;
}

/* The golden text of a case: each target's output under a "== target ==" line; JSON documents
 * pretty-printed so a reviewer can read them (the compact form is checked separately). */
static char *golden_text(const struct message *m)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    buf[0] = '\0';
    for (int t = 0; t < N_TARGETS; t++) {
        char *out = render((enum render_target)t, m);
        char *shown = out;
        check_output((enum render_target)t, out);
        if (out && t != RENDER_TEXT) {
            json_error_t e;
            json_t *o = json_loads(out, 0, &e);
            shown = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
            json_decref(o);
        }
        size_t need = strlen(target_names[t]) + (shown ? strlen(shown) : 6) + 16;
        while (n + need >= cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
        n += (size_t)snprintf(buf + n, cap - n, "== %s ==\n%s\n", target_names[t],
                              shown ? shown : "(null)");
        if (shown != out)
            free(shown);
        free(out);
    }
    return buf;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        cap *= 2;
        char *nb = realloc(buf, cap);
        if (!nb) {
            free(buf);
            buf = NULL;
        }
        buf = nb;
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

static void test_golden(void)
{
    struct golden_case cases[32];
    size_t n = golden_cases(cases);
    const char *update = getenv("YTBRIDGE_UPDATE_GOLDEN");
    for (size_t i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/render/%s.txt", TEST_DATA_DIR, cases[i].name);
        char *got = golden_text(&cases[i].m);
        CHECK(got != NULL);
        if (!got)
            continue;
        if (update && *update == '1') {
            FILE *f = fopen(path, "wb");
            CHECK(f != NULL);
            if (f) {
                fputs(got, f);
                fclose(f);
            }
        } else {
            char *want = read_file(path);
            CHECK(want != NULL);
            if (want && strcmp(got, want) != 0) {
                fprintf(stderr, "golden mismatch: %s\n--- got:\n%s", path, got);
                CHECK(!"golden file matches");
            }
            free(want);
        }
        free(got);
    }
}

/* ---- hostile input ---- */

static void test_hostile(void)
{
    const struct change *both[] = {&c_hostile, &c_hostile_renamed};
    /* hostile as chat shows it: "\n" and ESC as U+FFFD, the rest literal */
    char shown[sizeof(hostile) + 8];
    snprintf(shown, sizeof(shown), "%.*s\xef\xbf\xbd\xef\xbf\xbd[31m",
             (int)(strchr(hostile, '\n') - hostile), hostile);
    for (size_t k = 0; k < 2; k++) {
        struct message m = change_msg(both[k]);
        char *slack = render(RENDER_SLACK, &m);
        char *matrix = render(RENDER_MATRIX, &m);
        char *hook = render(RENDER_HOOKSHOT, &m);
        char *text = render(RENDER_TEXT, &m);
        CHECK(slack && matrix && hook && text);
        if (!slack || !matrix || !hook || !text)
            goto next;
        /* Slack blocks: the name is one literal element (a link's label, or within a text run
         * when not linked), controls as U+FFFD; check_slack() allows no mention element and no
         * link but ours. The fallback is entity-escaped. */
        check_slack(slack);
        json_t *els = slack_elements(slack), *so = json_loads(slack, 0, NULL);
        const char *fbt = jget_str(so, "text");
        char *view = slack_view(slack, 0);
        CHECK(k == 0 ? slack_count_literal(slack, "link", shown) == 1
                     : view && strstr(view, shown) &&
                           slack_count_literal(slack, "link", "Safe & sound") == 1);
        CHECK(view && !strstr(view, "\x1b") && !strstr(view, "\n\x1b"));
        CHECK(strstr(slack, "\"url\":\"https://evil") == NULL);
        CHECK(fbt && !strstr(fbt, "<!") && !strstr(fbt, "<@") && !strstr(fbt, "<https://evil"));
        CHECK(fbt && strstr(fbt, "&lt;!channel&gt;") && strstr(fbt, "&lt;https://evil|click&gt;"));
        CHECK(strstr(slack, "\\u001b") == NULL); /* ESC replaced, not passed on */
        free(view);
        json_decref(els);
        json_decref(so);
        json_error_t e;
        json_t *mo = json_loads(matrix, 0, &e), *ho = json_loads(hook, 0, &e);
        const char *fb = jget_str(mo, "formatted_body"), *html = jget_str(ho, "html");
        CHECK(fb && strstr(fb, "<b>x</b>") == NULL);
        CHECK(fb && strstr(fb, "&lt;b&gt;x&lt;/b&gt;") != NULL);
        CHECK(fb && strstr(fb, "&lt;https://evil|click&gt;") != NULL);
        CHECK(html && strstr(html, "<b>x</b>") == NULL);
        CHECK(html && strstr(html, "&lt;b&gt;x&lt;/b&gt;") != NULL);
        json_decref(mo);
        json_decref(ho);
        CHECK(strstr(matrix, "\"m.mentions\":{}") != NULL);
        CHECK(strstr(matrix, "\"msgtype\":\"m.notice\"") != NULL);
        CHECK(strstr(matrix, "<a href=\"https://evil") == NULL);
        CHECK(strstr(text, "\\x1b[31m") != NULL);
        CHECK(strstr(text, "\\x0a") != NULL);
    next:
        free(slack);
        free(matrix);
        free(hook);
        free(text);
    }
}

/* ---- limits ---- */

/* A name of n code points cycling through 1-, 2-, 3- and 4-byte characters and '&' / '"'. */
static char *long_name(size_t n)
{
    static const char *const parts[] = {"a",  "Ж", "\xe2\x82\xac", "\xf0\x9f\x9a\x80", "&",
                                        "\"", "<"};
    char *s = malloc(n * 4 + 1), *p = s;
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *c = parts[i % 7];
        size_t l = strlen(c);
        memcpy(p, c, l);
        p += l;
    }
    *p = '\0';
    return s;
}

static void check_all_targets(const struct message *m)
{
    for (int t = 0; t < N_TARGETS; t++) {
        char *out = render((enum render_target)t, m);
        check_output((enum render_target)t, out);
        free(out);
    }
}

static void test_long_names(void)
{
    char *a = long_name(5000), *b = long_name(4999);
    CHECK(a && b);
    if (!a || !b)
        goto out;
    struct project pa = P("0-100", a, a, TRI_NO), pb = P("0-100", b, b, TRI_NO);
    struct change cr = {CHANGE_CREATED, NULL, &pa}, rn = {CHANGE_RENAMED, &pa, &pb},
                  rm = {CHANGE_REMOVED, &pa, NULL};
    const struct change *all[] = {&cr, &rn, &rm};
    for (size_t i = 0; i < 3; i++) {
        struct message m = change_msg(all[i]);
        check_all_targets(&m);
        char *s = render(RENDER_SLACK, &m);
        CHECK(s && strstr(s, "\xe2\x80\xa6") != NULL); /* visibly cut */
        free(s);
    }
    struct message al = change_msg(NULL);
    al.kind = MESSAGE_ALERT;
    al.alert = "test";
    al.text = a;
    check_all_targets(&al);
out:
    free(a);
    free(b);
}

static void test_digest_500(void)
{
    enum { N = 500 };
    static struct project before[N], after[N];
    static struct change ch[N];
    static const struct change *list[N];
    static char names[N][64];
    for (size_t i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "Проект %zu <@U%zu> & co", i, i);
        before[i] = P("0-1", "K", names[i], TRI_NO);
        after[i] = P("0-1", "K2", names[i], TRI_YES);
        ch[i] = (struct change){(enum change_kind)(i % 5), i % 5 ? &before[i] : NULL,
                                i % 5 == CHANGE_REMOVED ? NULL : &after[i]};
        list[i] = &ch[i];
    }
    struct message m = change_msg(NULL);
    m.kind = MESSAGE_DIGEST;
    m.digest = list;
    m.n_changes = N;
    check_all_targets(&m);

    char *slack = render(RENDER_SLACK, &m), *matrix = render(RENDER_MATRIX, &m),
         *hook = render(RENDER_HOOKSHOT, &m), *text = render(RENDER_TEXT, &m),
         *js = render(RENDER_JSON, &m), *wh = render(RENDER_WEBHOOK, &m);
    char *view = slack_view(slack, 1);
    CHECK(view && strstr(view, "\n\xe2\x80\xa6 and 400 more") &&
          strstr(view, "*500 project changes*: 100 "
                       "created, 100 renamed, 100 "
                       "archived, 100 unarchived, 100 "
                       "removed\n"));
    free(view);
    CHECK(matrix && strstr(matrix, "and 400 more") && strstr(matrix, "formatted_body"));
    CHECK(hook && strstr(hook, "and 400 more"));
    CHECK(text && strlen(text) <= 2000 && strstr(text, " more") &&
          !strncmp(text, "500 changes: 100 created, 100 renamed", 37));
    json_error_t e;
    json_t *o = js ? json_loads(js, 0, &e) : NULL;
    CHECK(json_array_size(json_object_get(o, "changes")) == N);
    CHECK(json_integer_value(json_object_get(o, "count")) == N);
    CHECK(json_integer_value(json_object_get(o, "omitted")) == 0);
    json_decref(o);
    o = wh ? json_loads(wh, 0, &e) : NULL;
    CHECK(json_array_size(json_object_get(o, "changes")) == N);
    CHECK_STR(jget_str(o, "event"), "digest");
    json_decref(o);
    free(slack);
    free(matrix);
    free(hook);
    free(text);
    free(js);
    free(wh);
}

/* A mass change: every target's digest stays bounded; the JSON ones list the first 1000 and
 * count the rest (the stdout JSON digest once grew to one line of 160 MB for 1M changes). */
static void test_digest_huge(void)
{
    enum { N = 200000 };
    struct project *before = calloc(N, sizeof(*before)), *after = calloc(N, sizeof(*after));
    struct change *ch = calloc(N, sizeof(*ch));
    const struct change **list = calloc(N, sizeof(*list));
    static const size_t bound[] = {
        [RENDER_TEXT] = 2000,          [RENDER_JSON] = 512 * 1024,
        [RENDER_SLACK] = 64 * 1024,    [RENDER_MATRIX] = RENDER_MATRIX_CONTENT_MAX,
        [RENDER_WEBHOOK] = 512 * 1024, [RENDER_HOOKSHOT] = RENDER_MATRIX_CONTENT_MAX};

    if (!before || !after || !ch || !list) {
        CHECK(!"out of memory");
        goto out;
    }
    for (size_t i = 0; i < N; i++) {
        before[i] =
            P("0-1", "OLDKEY", "A project with a reasonably long name, as they are", TRI_NO);
        after[i] = P("0-1", "NEWKEY", "A project with a reasonably long name, renamed", TRI_YES);
        ch[i] = (struct change){CHANGE_RENAMED, &before[i], &after[i]};
        list[i] = &ch[i];
    }
    struct message m = change_msg(NULL);
    m.kind = MESSAGE_DIGEST;
    m.digest = list;
    m.n_changes = N;
    for (int t = RENDER_TEXT; t <= RENDER_HOOKSHOT; t++) {
        char *s = render((enum render_target)t, &m);
        CHECK(s != NULL);
        if (s && strlen(s) > bound[t])
            fprintf(stderr, "target %d: %zu bytes\n", t, strlen(s));
        CHECK(s && strlen(s) <= bound[t]);
        if (s && (t == RENDER_JSON || t == RENDER_WEBHOOK)) {
            json_error_t e;
            json_t *o = json_loads(s, 0, &e);
            CHECK_INT(json_array_size(json_object_get(o, "changes")), 1000);
            CHECK_INT(json_integer_value(json_object_get(o, "count")), N);
            CHECK_INT(json_integer_value(json_object_get(o, "omitted")), N - 1000);
            json_decref(o);
        }
        free(s);
    }
out:
    free(before);
    free(after);
    free(ch);
    free(list);
}

/* Long names full of characters HTML escaping grows: a digest lists fewer changes and keeps its
 * HTML; a single text too long even alone loses the HTML (Matrix) or gets an escaped copy of the
 * shortened text as HTML (hookshot). */
static void test_matrix_shrink(void)
{
    enum { N = 120 };
    static struct project p[N];
    static struct change ch[N];
    static const struct change *list[N];
    char *name = malloc(1001);
    if (!name)
        return;
    memset(name, '\'', 1000);
    name[1000] = '\0';
    for (size_t i = 0; i < N; i++) {
        p[i] = P("0-1", name, name, TRI_NO);
        ch[i] = (struct change){CHANGE_CREATED, NULL, &p[i]};
        list[i] = &ch[i];
    }
    struct message m = change_msg(NULL);
    m.kind = MESSAGE_DIGEST;
    m.digest = list;
    m.n_changes = N;
    char *matrix = render(RENDER_MATRIX, &m), *hook = render(RENDER_HOOKSHOT, &m);
    check_output(RENDER_MATRIX, matrix);
    check_output(RENDER_HOOKSHOT, hook);
    CHECK(matrix && strstr(matrix, "formatted_body") && strstr(matrix, " more</p>"));
    CHECK(hook && strstr(hook, "&#39;") && strstr(hook, " more</p>"));
    /* The same count in the text and the HTML. */
    for (char *s = matrix; s; s = NULL) {
        json_error_t e;
        json_t *o = json_loads(s, 0, &e);
        const char *body = jget_str(o, "body"), *fb = jget_str(o, "formatted_body");
        const char *a = body ? strstr(body, "\xe2\x80\xa6 and ") : NULL;
        const char *b = fb ? strstr(fb, "\xe2\x80\xa6 and ") : NULL;
        CHECK(a && b && atoi(a + 8) > 20 && atoi(a + 8) == atoi(b + 8));
        json_decref(o);
    }
    free(matrix);
    free(hook);

    /* Text alone too long: cut with a mark. */
    size_t big = 200000;
    char *text = malloc(big + 1);
    if (text) {
        for (size_t i = 0; i < big; i++)
            text[i] = i % 50 == 49 ? '\n' : "\"\\\x01x"[i % 4];
        text[big] = '\0';
        struct message al = change_msg(NULL);
        al.kind = MESSAGE_ALERT;
        al.alert = "big";
        al.text = text;
        check_all_targets(&al);
        matrix = render(RENDER_MATRIX, &al);
        hook = render(RENDER_HOOKSHOT, &al);
        CHECK(matrix && strstr(matrix, "\xe2\x80\xa6 (truncated)\"") && strlen(matrix) > 50000);
        CHECK(matrix && !strstr(matrix, "formatted_body"));
        CHECK(hook && strstr(hook, "\xe2\x80\xa6 (truncated)\"") && strlen(hook) > 50000);
        free(matrix);
        free(hook);
        free(text);
    }
    free(name);
}

/* ---- webhook ---- */

static void test_webhook(void)
{
    const struct {
        const struct change *c;
        const char *event, *project_name;
        int previous;
    } want[] = {
        {&c_created, "project.created", "Demo project", 0},
        {&c_renamed, "project.renamed", "New name", 1},
        {&c_archived, "project.archived", "Operations", 1},
        {&c_unarchived, "project.unarchived", "Operations", 1},
        {&c_removed, "project.removed", "Gone project", 0},
    };
    json_error_t e;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        struct message m = change_msg(want[i].c);
        char *out = render(RENDER_WEBHOOK, &m);
        json_t *o = out ? json_loads(out, 0, &e) : NULL;
        CHECK(o != NULL);
        CHECK_STR(jget_str(o, "id"), "d-0001");
        CHECK_STR(jget_str(o, "event"), want[i].event);
        CHECK_STR(jget_str(o, "occurred_at"), "2023-11-14T22:13:20Z");
        CHECK_STR(jget_str(o, "youtrack"), URL);
        CHECK_STR(jget_str(json_object_get(o, "project"), "name"), want[i].project_name);
        CHECK_INT(json_object_get(o, "previous") != NULL, want[i].previous);
        free(out);
        json_decref(o);
    }
    struct message m = change_msg(&c_renamed);
    m.occurred_at = 0;
    m.id = NULL;
    char *out = render(RENDER_WEBHOOK, &m);
    json_t *o = out ? json_loads(out, 0, &e) : NULL;
    CHECK_STR(jget_str(o, "occurred_at"), "1970-01-01T00:00:00Z");
    CHECK(json_is_null(json_object_get(o, "id")));
    CHECK_STR(jget_str(json_object_get(o, "previous"), "shortName"), "OLD");
    CHECK(json_is_null(json_object_get(json_object_get(o, "project"), "leader")));
    CHECK(json_is_null(json_object_get(json_object_get(o, "project"), "description")));
    free(out);
    json_decref(o);
}

/* ---- stdout ---- */

static void test_stdout_shapes(void)
{
    struct message m = change_msg(&c_renamed);
    char *s = render(RENDER_JSON, &m);
    CHECK_STR(s, "{\"event\":\"project.renamed\",\"project\":{\"id\":\"0-2\",\"shortName\":\"NEW\","
                 "\"name\":\"New name\",\"archived\":false,\"url\":\"" URL "/projects/0-2\"},"
                 "\"previous\":{\"id\":\"0-2\",\"shortName\":\"OLD\",\"name\":\"Old name\","
                 "\"archived\":false,\"url\":\"" URL "/projects/0-2\"}}");
    free(s);
    m = change_msg(&c_unknown);
    s = render(RENDER_JSON, &m);
    CHECK_STR(s, "{\"event\":\"project.created\",\"project\":{\"id\":\"0-9\",\"shortName\":null,"
                 "\"name\":null,\"archived\":null,\"url\":\"" URL "/projects/0-9\"}}");
    free(s);
    m = change_msg(&c_removed);
    s = render(RENDER_TEXT, &m);
    CHECK_STR(s, "project removed: Gone project (GONE)");
    free(s);
    m = change_msg(&c_renamed);
    s = render(RENDER_TEXT, &m);
    CHECK_STR(s, "project renamed: Old name (OLD) -> New name (NEW) " URL "/projects/0-2");
    free(s);
}

/* Removals link nothing in any chat target. */
static void test_removal_no_link(void)
{
    struct message m = change_msg(&c_removed);
    char *slack = render(RENDER_SLACK, &m), *matrix = render(RENDER_MATRIX, &m),
         *hook = render(RENDER_HOOKSHOT, &m);
    CHECK(slack && !strstr(slack, "\"type\":\"link\"") && !strstr(slack, "http"));
    CHECK(matrix && !strstr(matrix, "<a ") && !strstr(matrix, "http"));
    CHECK(hook && !strstr(hook, "<a ") && !strstr(hook, "http"));
    free(slack);
    free(matrix);
    free(hook);
}

/* A service URL with characters that would break Slack's <url|text> or an attribute. */
static void test_odd_service_url(void)
{
    struct message m = change_msg(&c_created);
    m.service_url = "https://yt.example.com/a|b<c>\"d' e&f";
    check_all_targets(&m);
    char *slack = render(RENDER_SLACK, &m), *view = slack_view(slack, 1);
    CHECK(view && strstr(view, "<https://yt.example.com/a%7Cb%3Cc%3E%22d%27%20e&f/projects/"
                               "0-1|Demo project>"));
    free(view);
    free(slack);
    m.service_url = "javascript:alert(1)";
    check_all_targets(&m);
    char *matrix = render(RENDER_MATRIX, &m);
    CHECK(matrix && !strstr(matrix, "href"));
    free(matrix);
}

/* ---- Slack rich_text ---- */

/* Some unstyled text element of els contains text. */
static int has_plain_text(json_t *els, const char *text)
{
    size_t i;
    json_t *el;
    json_array_foreach(els, i, el)
    {
        if (!strcmp(jget_str(el, "type"), "text") && strstr(jget_str(el, "text"), text) &&
            !json_object_get(el, "style"))
            return 1;
    }
    return 0;
}

/*
 * Issue 10: Slack mrkdwn has no escape for * _ ~ `, so a project named like this once showed
 * bold, italic, struck and as code. Now the name is shown exactly as it is: the label of its
 * link, or unstyled text where it is not linked; the short name keeps its own characters inside
 * our code style.
 */
static void test_slack_literal_names(void)
{
    static const char name[] = "*bold* _it_ ~s~ `c`";
    struct project p = P("0-42", "`K`*", name, TRI_NO);
    struct change cr = {CHANGE_CREATED, NULL, &p}, rm = {CHANGE_REMOVED, &p, NULL};
    const struct change *both[] = {&cr, &rm};
    struct message m = change_msg(&cr);

    for (int kind = 0; kind < 3; kind++) {
        if (kind == 1) {
            m.kind = MESSAGE_DIGEST;
            m.digest = both;
            m.n_changes = 2;
        } else if (kind == 2) {
            m = change_msg(&rm);
        }
        char *out = render(RENDER_SLACK, &m);
        check_slack(out);
        json_t *els = slack_elements(out);
        CHECK(els != NULL);
        if (kind < 2)
            CHECK_INT(slack_count_literal(out, "link", name), 1);
        if (kind > 0)
            CHECK(has_plain_text(els, ": *bold* _it_ ~s~ `c` ("));
        size_t i, keys = 0;
        json_t *el;
        json_array_foreach(els, i, el)
        {
            json_t *st = json_object_get(el, "style");
            keys += !strcmp(jget_str(el, "text") ? jget_str(el, "text") : "", "`K`*") &&
                    json_is_true(json_object_get(st, "code")) && json_object_size(st) == 1;
        }
        CHECK_INT(keys, kind == 1 ? 2 : 1);
        json_decref(els);
        free(out);
    }
}

/* render_slack_answer() makes a valid block of any marked text: unterminated or stray marks,
 * a link that is not http(s), an odd emoji name; text that shows nothing makes no block. */
static void test_slack_marks(void)
{
    const char *const sections[] = {
        RENDER_RT_BOLD "open bold",
        "x" RENDER_RT_LINK "https://a.example/",                       /* cut in its URL */
        "y" RENDER_RT_LINK "https://a.example/" RENDER_RT_LABEL "lab", /* cut in its label */
        "z" RENDER_RT_EMOJI "new",                                     /* cut in its name */
        RENDER_RT_END RENDER_RT_LABEL "stray" RENDER_RT_CODE,
        RENDER_RT_LINK "javascript:alert(1)" RENDER_RT_LABEL "js" RENDER_RT_END,
        RENDER_RT_LINK "https://a.example/<x>" RENDER_RT_LABEL "lt" RENDER_RT_END,
        RENDER_RT_BOLD RENDER_RT_BOLD RENDER_RT_CODE RENDER_RT_CODE, /* shows nothing */
        RENDER_RT_EMOJI "Bad Name" RENDER_RT_EMOJI "w",
        RENDER_RT_LINK "https://b.example/" RENDER_RT_LABEL RENDER_RT_END, /* no label */
        "",
        NULL,
        "a" RENDER_RT_BOLD "b" RENDER_RT_BOLD RENDER_RT_BOLD "c" RENDER_RT_BOLD "d",
    };
    char *out = render_slack_answer("fallback", sections, sizeof(sections) / sizeof(*sections));
    const char *err = slack_check(out, SLACK_ANSWER);
    CHECK(err == NULL);
    CHECK(as_jansson_writes(out));
    char *view = slack_view(out, 1);
    CHECK_STR(view, "*open bold*\nx\ny<https://a.example/|lab>\nz\nstray\njs\nlt\nw\n"
                    "<https://b.example/|>\na*bc*d");
    free(view);
    free(out);
}

/* A block's visible text of the answer out (one block), or NULL. */
static char *only_block_text(const char *out)
{
    json_t *o = out ? json_loads(out, 0, NULL) : NULL;
    char *view = json_array_size(json_object_get(o, "blocks")) == 1 ? slack_view(out, 0) : NULL;
    json_decref(o);
    return view;
}

/* Cutting to RENDER_SLACK_TEXT_MAX visible code points: never inside a link or an emoji, "…" at
 * the end; a style left open is fine; at most RENDER_SLACK_BLOCKS_MAX blocks. */
static void test_slack_fit(void)
{
    enum { N = 3200 };
    static char a[N + 1], b[N + 1], sec[3][N + 200];
    memset(a, 'a', N);
    memset(b, 'b', N);
    snprintf(sec[0], sizeof(sec[0]),
             "%.2990s" RENDER_RT_LINK "https://c.example/" RENDER_RT_LABEL
             "0123456789abcdef" RENDER_RT_END "tail",
             a);
    snprintf(sec[1], sizeof(sec[1]), "%.2998s" RENDER_RT_EMOJI "new" RENDER_RT_EMOJI "b", a);
    snprintf(sec[2], sizeof(sec[2]), RENDER_RT_BOLD "%.3100s" RENDER_RT_BOLD, b);
    CHECK_INT(render_slack_count(sec[0], strlen(sec[0])), 2990 + 16 + 4);
    CHECK_INT(render_slack_count(sec[1], strlen(sec[1])), 2998 + 5 + 1);
    CHECK_INT(render_slack_count(sec[2], strlen(sec[2])), 3100);
    const size_t want[] = {2991, 2999, 3000};
    for (int i = 0; i < 3; i++) {
        const char *one[] = {sec[i]};
        char *out = render_slack_answer("fb", one, 1);
        const char *err = slack_check(out, SLACK_ANSWER);
        CHECK(err == NULL);
        char *text = only_block_text(out);
        CHECK(text && cps(text) == want[i]);
        CHECK(text && !strcmp(text + strlen(text) - 3, "\xe2\x80\xa6"));
        CHECK(out && !strstr(out, "\"link\"") && !strstr(out, "\"emoji\""));
        free(text);
        free(out);
    }

    const char *many[60];
    for (size_t i = 0; i < 60; i++)
        many[i] = "line";
    char *out = render_slack_answer("fb", many, 60);
    json_t *o = out ? json_loads(out, 0, NULL) : NULL;
    CHECK_INT(json_array_size(json_object_get(o, "blocks")), RENDER_SLACK_BLOCKS_MAX);
    json_decref(o);
    free(out);
}

/* ---- random names ---- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* Random valid UTF-8, biased towards the characters escaping cares about; raw=1 adds any byte. */
static void random_name(char *buf, size_t cap, int raw)
{
    static const char special[] = "&<>\"'|*_~`@!#\n\r\t\x1b\x7f";
    size_t n = rnd() % (rnd() % 8 == 0 ? cap / 4 : 40), i = 0;
    while (i + 5 < cap && n--) {
        uint32_t r = rnd() % 10, cp;
        if (raw && r == 0) {
            buf[i++] = (char)(rnd() % 255 + 1);
            continue;
        }
        if (r < 4) {
            buf[i++] = special[rnd() % (sizeof(special) - 1)];
            continue;
        }
        cp = r < 6   ? rnd() % 0x80
             : r < 7 ? 0x80 + rnd() % 0x780
             : r < 9 ? 0x800 + rnd() % 0xf800
                     : 0x10000 + rnd() % 0x100000;
        if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff))
            cp = 0x202e;
        if (cp < 0x80) {
            buf[i++] = (char)cp;
        } else if (cp < 0x800) {
            buf[i++] = (char)(0xc0 | cp >> 6);
            buf[i++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            buf[i++] = (char)(0xe0 | cp >> 12);
            buf[i++] = (char)(0x80 | (cp >> 6 & 0x3f));
            buf[i++] = (char)(0x80 | (cp & 0x3f));
        } else {
            buf[i++] = (char)(0xf0 | cp >> 18);
            buf[i++] = (char)(0x80 | (cp >> 12 & 0x3f));
            buf[i++] = (char)(0x80 | (cp >> 6 & 0x3f));
            buf[i++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    buf[i] = '\0';
}

static void test_random_names(void)
{
    enum { CAP = 8192, K = 12 };
    static char names[K][CAP];
    static struct project p[K];
    static struct change ch[K];
    static const struct change *list[K];
    const char *env = getenv("YTBRIDGE_RENDER_FUZZ_SECONDS");
    time_t until = env ? time(NULL) + atoi(env) : 0;
    int failures = test_failures;

    for (long round = 0; env ? time(NULL) < until : round < 300; round++) {
        for (size_t i = 0; i < K; i++) {
            random_name(names[i], CAP, (int)(round & 1));
            p[i] = P("0-1", rnd() % 4 ? names[(i + 1) % K] : NULL, rnd() % 8 ? names[i] : NULL,
                     (int)(rnd() % 3) - 1);
        }
        for (size_t i = 0; i < K; i++) {
            enum change_kind k = (enum change_kind)(rnd() % 5);
            ch[i] = (struct change){k, k == CHANGE_CREATED ? NULL : &p[i],
                                    k == CHANGE_REMOVED ? NULL : &p[(i + 3) % K]};
            list[i] = &ch[i];
        }
        struct message m = change_msg(&ch[0]);
        check_all_targets(&m);
        m.kind = MESSAGE_DIGEST;
        m.digest = list;
        m.n_changes = rnd() % K + 1;
        check_all_targets(&m);
        m.kind = MESSAGE_ALERT;
        m.alert = names[1];
        m.text = names[2];
        check_all_targets(&m);
        if (test_failures != failures) {
            fprintf(stderr, "random round %ld failed\n", round);
            break;
        }
    }
}

/* render_link() is render_safe_url() of project_page_url(), whatever the service URL and the id:
 * odd bytes in either, the legacy flavour, no scheme, and lengths about the 1000-byte limit. */
static void test_links(void)
{
    static char long_url[1100], long_id[1100];
    memcpy(long_url, "https://yt.example.com/", 23);
    memset(long_url + 23, 'u', 960);
    memset(long_id, 'i', 1050);
    const char *const urls[] = {"https://yt.example.com/youtrack",
                                "http://127.0.0.1:8080/",
                                "https://yt.example.com/a|b<c>\"d'e{}^`\\",
                                "ftp://yt.example.com",
                                "yt.example.com",
                                "",
                                NULL,
                                long_url};
    const char *const ids[] = {
        "0-1",  "a b", "\xc3\xbc/|<>%", "", "~._-", long_id + 1050 - 20, long_id + 1050 - 16,
        long_id};
    for (size_t u = 0; u < sizeof(urls) / sizeof(urls[0]); u++) {
        for (int fl = 0; fl < 2; fl++) {
            enum youtrack_flavour f = fl ? YOUTRACK_LEGACY : YOUTRACK_MODERN;
            struct render_links l;
            CHECK(render_links_init(&l, urls[u], f) == 0);
            for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
                struct project p = {.id = ids[i]};
                char *page = project_page_url(urls[u], f, &p), *want = NULL, *got = NULL;
                CHECK(page && render_safe_url(page, &want) == 0);
                CHECK(render_link(&l, &p, &got) == 0);
                CHECK(want ? got && !strcmp(want, got) : !got);
                free(page);
                free(want);
                free(got);
            }
            render_links_fini(&l);
        }
    }
}

/* The exact bytes of an answer: the order of keys, styles, escapes, links with and without a
 * label, an emoji, a link that is not ours (its label stays text), a block that shows nothing. */
static void test_slack_bytes(void)
{
    const char *const sections[] = {
        RENDER_RT_BOLD "5 projects" RENDER_RT_BOLD " match \"a\\b\"",
        "\xe2\x80\xa2 " RENDER_RT_CODE "K" RENDER_RT_BOLD "B" RENDER_RT_CODE "b" RENDER_RT_BOLD
        " " RENDER_RT_LINK "https://y.example/projects/0-1" RENDER_RT_LABEL
        "N\xc3\xa9" RENDER_RT_END "\n" RENDER_RT_LINK
        "https://y.example/p" RENDER_RT_END RENDER_RT_EMOJI "eyes" RENDER_RT_EMOJI RENDER_RT_LINK
        "ftp://y" RENDER_RT_LABEL "L" RENDER_RT_END "x",
        RENDER_RT_BOLD RENDER_RT_BOLD,
    };
    char *out = render_slack_answer("5 projects &amp; \"x\"", sections, 3);
    CHECK_STR(
        out,
        "{\"response_type\":\"ephemeral\",\"text\":\"5 projects &amp; \\\"x\\\"\","
        "\"mrkdwn\":false,\"blocks\":["
        "{\"type\":\"rich_text\",\"elements\":[{\"type\":\"rich_text_section\",\"elements\":["
        "{\"type\":\"text\",\"text\":\"5 projects\",\"style\":{\"bold\":true}},"
        "{\"type\":\"text\",\"text\":\" match \\\"a\\\\b\\\"\"}]}]},"
        "{\"type\":\"rich_text\",\"elements\":[{\"type\":\"rich_text_section\",\"elements\":["
        "{\"type\":\"text\",\"text\":\"\xe2\x80\xa2 \"},"
        "{\"type\":\"text\",\"text\":\"K\",\"style\":{\"code\":true}},"
        "{\"type\":\"text\",\"text\":\"B\",\"style\":{\"bold\":true,\"code\":true}},"
        "{\"type\":\"text\",\"text\":\"b\",\"style\":{\"bold\":true}},"
        "{\"type\":\"text\",\"text\":\" \"},"
        "{\"type\":\"link\",\"url\":\"https://y.example/projects/0-1\",\"text\":\"N\xc3\xa9\"},"
        "{\"type\":\"text\",\"text\":\"\\n\"},"
        "{\"type\":\"link\",\"url\":\"https://y.example/p\"},"
        "{\"type\":\"emoji\",\"name\":\"eyes\"},"
        "{\"type\":\"text\",\"text\":\"Lx\"}]}]}]}");
    CHECK(as_jansson_writes(out));
    free(out);

    /* Invalid UTF-8 makes no answer rather than an invalid document (as with jansson). */
    const char *bad[] = {"ok \xff"};
    CHECK(render_slack_answer("fb", bad, 1) == NULL);
    CHECK(render_slack_answer("\xc3", sections, 1) == NULL);
}

/*
 * What render_slack_count() must say, one byte at a time as render.h documents it: the code
 * points of text and link labels, a link without a label shows its URL (once closed), an emoji
 * counts as ":name:" (an unclosed one to the end), marks show nothing.
 */
static size_t model_count(const char *p, size_t n)
{
    size_t cps = 0, url = 0, label = 0;
    int link = 0, emoji = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c & 0xc0) == 0x80)
            continue;
        if (link) {
            if (c == RENDER_RT_LABEL[0] && link == 1)
                link = 2;
            else if (c == RENDER_RT_END[0])
                cps += label ? 0 : url, link = 0;
            else if (c >= 0x20)
                *(link == 1 ? &url : &label) += 1, cps += link == 2;
        } else if (emoji) {
            emoji = c != RENDER_RT_EMOJI[0];
            cps++;
        } else if (c == RENDER_RT_LINK[0]) {
            link = 1;
            url = label = 0;
        } else {
            emoji = c == RENDER_RT_EMOJI[0];
            cps += c >= 0x20 || c == '\n' || emoji;
        }
    }
    return cps;
}

/* Random marked text, marks in any order and cut anywhere: render_slack_answer() still sends only
 * valid blocks within the limits (tests/slack_check.h). */
static void test_random_marks(void)
{
    static const char *const pieces[] = {RENDER_RT_BOLD,
                                         RENDER_RT_CODE,
                                         RENDER_RT_LINK,
                                         RENDER_RT_LABEL,
                                         RENDER_RT_END,
                                         RENDER_RT_EMOJI,
                                         "https://x.example/p",
                                         "new",
                                         "a",
                                         "\n",
                                         "&<>|",
                                         "\xc3\xa9",
                                         "\xf0\x9f\x9a\x80",
                                         " ",
                                         "javascript:",
                                         "Name"};
    enum { CAP = 12000, K = 4 };
    static char text[K][CAP];
    const char *sections[K];
    int failures = test_failures;

    for (int round = 0; round < 1000 && test_failures == failures; round++) {
        for (size_t k = 0; k < K; k++) {
            size_t n = k == 0, want = rnd() % (rnd() % 4 == 0 ? CAP - 32 : 200);
            text[k][0] = 'h'; /* the head shows something, as every answer's does */
            while (n < want) {
                const char *pc = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
                size_t len = strlen(pc);
                memcpy(text[k] + n, pc, len);
                n += len;
            }
            text[k][n] = '\0';
            sections[k] = text[k];
        }
        for (size_t k = 0; k < K; k++) {
            /* Every start and end, so the counter's 8-byte steps meet every alignment. */
            size_t n = strlen(text[k]), a = rnd() % (n + 1), b = a + rnd() % (n - a + 1);
            CHECK_INT(render_slack_count(text[k] + a, b - a), model_count(text[k] + a, b - a));
        }
        char *out = render_slack_answer("fb", sections, K);
        const char *err = slack_check(out, SLACK_ANSWER);
        if (err)
            fprintf(stderr, "round %d: %s\n", round, err);
        CHECK(err == NULL);
        CHECK(as_jansson_writes(out));
        free(out);
    }
}

int main(void)
{
    setup();
    RUN(test_golden);
    RUN(test_hostile);
    RUN(test_long_names);
    RUN(test_digest_500);
    RUN(test_digest_huge);
    RUN(test_matrix_shrink);
    RUN(test_webhook);
    RUN(test_stdout_shapes);
    RUN(test_removal_no_link);
    RUN(test_odd_service_url);
    RUN(test_slack_literal_names);
    RUN(test_slack_marks);
    RUN(test_slack_fit);
    RUN(test_slack_bytes);
    RUN(test_links);
    RUN(test_random_names);
    RUN(test_random_marks);
    return test_done();
}
