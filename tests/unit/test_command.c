/* Chat commands: every command on every platform, parsed back and checked against the limits. */
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>

#include "command.h"
#include "command_index.h"
#include "render.h"
#include "slack_check.h"
#include "test.h"
#include "utf8.h"

#define NOW 1717243200 /* 2024-06-01 12:00:00 UTC */

static struct project_list plist;
static struct history_entry hist[60];
static size_t n_hist;
static char *last_html;     /* the formatted_body of the last Matrix answer() */
static char *last_fallback; /* the top-level "text" of the last Slack answer() */

static void add(const char *id, const char *shortn, const char *name, signed char archived)
{
    struct project p = {.id = id, .short_name = shortn, .name = name, .archived = archived};
    CHECK_INT(project_list_add(&plist, &p), 0);
}

static void add_full(const struct project *p)
{
    CHECK_INT(project_list_add(&plist, p), 0);
}

static void reset(void)
{
    project_list_fini(&plist);
    project_list_init(&plist);
    n_hist = 0;
}

static const struct command_sink sinks[] = {
    {.name = "team-slack", .type = "slack", .depth = 0, .broken = 0, .reason = ""},
    {.name = "ops-room",
     .type = "matrix",
     .depth = 7,
     .broken = 1,
     .reason = "M_FORBIDDEN <b>x</b>"},
};

static struct command_context ctx(void)
{
    return (struct command_context){
        .projects = &plist,
        .history = hist,
        .n_history = n_hist,
        .service_url = "https://yt.example.com",
        .flavour = YOUTRACK_MODERN,
        .now = NOW,
        .version = "1.2.3",
        .started_at = NOW - 2 * 3600 - 5 * 60,
        .last_poll_ok = NOW - 3 * 60,
        .last_error = "",
        .sinks = sinks,
        .n_sinks = 2,
    };
}

/* Runs text; returns the answer (caller frees). */
static char *run_ctx(const struct command_context *c, const char *text, enum command_platform pf)
{
    char *out = NULL;
    CHECK_INT(command_run(text, strlen(text), c, pf, &out), 0);
    CHECK(out != NULL);
    return out;
}

/*
 * The answer's visible text for checks: Slack: its blocks in slack_view()'s mrkdwn-like notation
 * (*bold*, `code`, <url|label>, one line per block; the fallback goes to last_fallback); Matrix:
 * body + "\n" + formatted_body; text: as is. Validates the platform's shape and limits on the
 * way (Slack: strictly, tests/slack_check.h).
 */
static char *answer(const char *text, enum command_platform pf)
{
    struct command_context c = ctx();
    char *out = run_ctx(&c, text, pf), *res = NULL;
    json_error_t err;
    json_t *o;

    if (!out || pf == COMMAND_TEXT)
        return out;
    CHECK(strlen(out) > 0);
    o = json_loads(out, 0, &err);
    CHECK(o != NULL);
    if (!o) {
        fprintf(stderr, "bad JSON: %s: %.200s\n", err.text, out);
        free(out);
        return strdup("");
    }
    if (pf == COMMAND_SLACK) {
        const char *bad = slack_check(out, SLACK_ANSWER);
        if (bad)
            fprintf(stderr, "slack: %s in %.2000s\n", bad, out);
        CHECK(bad == NULL);
        free(last_fallback);
        last_fallback = strdup(slack_check_str(o, "text"));
        res = slack_view(out, 1);
    } else {
        const char *body = json_string_value(json_object_get(o, "body"));
        const char *html = json_string_value(json_object_get(o, "formatted_body"));
        json_t *mentions = json_object_get(o, "m.mentions");
        CHECK(strlen(out) <= RENDER_MATRIX_CONTENT_MAX);
        CHECK_STR(json_string_value(json_object_get(o, "msgtype")), "m.notice");
        CHECK(json_is_object(mentions) && json_object_size(mentions) == 0);
        CHECK(body != NULL);
        if (html)
            CHECK_STR(json_string_value(json_object_get(o, "format")), "org.matrix.custom.html");
        free(last_html);
        last_html = strdup(html ? html : "");
        res = calloc(1, strlen(body ? body : "") + strlen(html ? html : "") + 2);
        strcat(res, body ? body : "");
        strcat(res, "\n");
        strcat(res, html ? html : "");
    }
    json_decref(o);
    free(out);
    return res;
}

static int contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

#define CHECK_HAS(hay, needle)                                                                  \
    do {                                                                                        \
        test_checks++;                                                                          \
        if (!contains((hay), (needle))) {                                                       \
            fprintf(stderr, "%s:%d: missing \"%s\" in:\n%.2000s\n", __FILE__, __LINE__, needle, \
                    (hay) ? (hay) : "(null)");                                                  \
            test_failures++;                                                                    \
        }                                                                                       \
    } while (0)
#define CHECK_NOT(hay, needle) CHECK(!contains((hay), (needle)))

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static const enum command_platform all_pf[] = {COMMAND_SLACK, COMMAND_MATRIX, COMMAND_TEXT};

static void demo_projects(void)
{
    reset();
    add("0-1", "DEMO", "Демопроект", TRI_NO);
    add("0-2", "BETA", "beta", TRI_YES);
    add("0-3", "ALPHA", "Alpha", TRI_UNKNOWN);
    add("0-4", "YOLKA", "Ёлка", TRI_NO);
    add("0-5", "EZH", "ёж", TRI_NO);
    add("0-10", "APF", "ÄPFEL", TRI_NO);
    add("0-11", "RND", "R&D Lab", TRI_NO);
    struct project held = {.id = "0-6", .short_name = "GONE", .name = "Gone project", .held = 1};
    struct project missing = {
        .id = "0-7", .short_name = "MISS", .name = "Missing one", .missing = 2};
    add_full(&held);
    add_full(&missing);
    project_list_finish(&plist);
}

/* ---- help and unknown ---- */

static void test_help(void)
{
    demo_projects();
    const char *inputs[] = {"", "help", "HELP", "  Help  me "};
    for (size_t i = 0; i < 4; i++) {
        for (size_t k = 0; k < 3; k++) {
            char *a = answer(inputs[i], all_pf[k]);
            CHECK_HAS(a, "projects [filter]");
            CHECK_HAS(a, "project KEY");
            CHECK_HAS(a, "changes [N]");
            CHECK_HAS(a, "status");
            CHECK_NOT(a, "Unknown command");
            free(a);
        }
    }
    char *a = answer("help", COMMAND_SLACK);
    CHECK_HAS(a, "`projects [filter]`");
    free(a);
    a = answer("help", COMMAND_MATRIX);
    CHECK_HAS(a, "<code>projects [filter]</code>");
    CHECK_HAS(a, "<ul><li>");
    free(a);
}

static void test_unknown(void)
{
    demo_projects();
    char *a = answer("frobnicate now", COMMAND_TEXT);
    CHECK_HAS(a, "Unknown command \xe2\x80\x9c"
                 "frobnicate\xe2\x80\x9d");
    CHECK_HAS(a, "projects [filter]");
    free(a);

    /* Slack: literal in the blocks (answer() allows no mention element), entity-escaped in the
     * fallback. */
    a = answer("<!channel>@here", COMMAND_SLACK);
    CHECK_HAS(a, "Unknown command \xe2\x80\x9c<!channel>@here\xe2\x80\x9d");
    CHECK_HAS(last_fallback, "Unknown command \xe2\x80\x9c&lt;!channel&gt;@here\xe2\x80\x9d");
    CHECK_NOT(last_fallback, "<!channel>");
    free(a);
    /* Slack sends & < > as entities: unescaped once, shown as typed, escaped once again in the
     * fallback. */
    a = answer("&lt;!here&gt;", COMMAND_SLACK);
    CHECK_HAS(a, "\xe2\x80\x9c<!here>\xe2\x80\x9d");
    CHECK_NOT(a, "&lt;");
    CHECK_HAS(last_fallback, "&lt;!here&gt;");
    CHECK_NOT(last_fallback, "<!here>");
    CHECK_NOT(last_fallback, "&amp;lt;");
    free(a);

    a = answer("<b>@room</b>", COMMAND_MATRIX);
    CHECK_HAS(a, "&lt;b&gt;@room&lt;/b&gt;");
    CHECK_NOT(last_html, "<b>@room");
    free(a);

    /* A long word is echoed shortened. */
    char word[120];
    memset(word, 'x', sizeof(word) - 1);
    word[sizeof(word) - 1] = '\0';
    a = answer(word, COMMAND_TEXT);
    CHECK_HAS(a, "xxx\xe2\x80\xa6\xe2\x80\x9d");
    CHECK_NOT(a, word);
    free(a);

    /* Control and bidi characters in the echo. */
    a = answer("a\xe2\x80\xae"
               "b",
               COMMAND_MATRIX);
    CHECK_NOT(a, "\xe2\x80\xae");
    free(a);
    a = answer("a\xe2\x80\xae"
               "b",
               COMMAND_TEXT);
    CHECK_HAS(a, "a\\u202eb");
    free(a);
}

/* ---- bad input ---- */

static void test_bad_input(void)
{
    demo_projects();
    char text[COMMAND_MAX_INPUT + 2];
    memset(text, ' ', sizeof(text));
    memcpy(text, "projects", 8);
    text[COMMAND_MAX_INPUT] = '\0'; /* exactly the limit: accepted */
    for (size_t k = 0; k < 3; k++) {
        char *a = answer(text, all_pf[k]);
        CHECK_HAS(a, "Alpha");
        free(a);
    }
    text[COMMAND_MAX_INPUT] = 'x';
    text[COMMAND_MAX_INPUT + 1] = '\0';
    for (size_t k = 0; k < 3; k++) {
        char *a = answer(text, all_pf[k]);
        CHECK_HAS(a, "too long");
        CHECK_NOT(a, "Alpha");
        free(a);
    }
    CHECK_STR(command_name(text, strlen(text)), "help");

    const char *bad[] = {"projects \xff", "\xc0\xaf", "projects \xed\xa0\x80", "\xe2\x82"};
    for (size_t i = 0; i < 4; i++) {
        for (size_t k = 0; k < 3; k++) {
            char *a = answer(bad[i], all_pf[k]);
            CHECK_HAS(a, "not valid UTF-8");
            free(a);
        }
        CHECK_STR(command_name(bad[i], strlen(bad[i])), "help");
    }
    /* An embedded NUL. */
    struct command_context c = ctx();
    char *out = NULL;
    CHECK_INT(command_run("projects\0x", 10, &c, COMMAND_TEXT, &out), 0);
    CHECK_HAS(out, "not valid UTF-8");
    free(out);
    /* NULL text is help. */
    CHECK_INT(command_run(NULL, 0, &c, COMMAND_TEXT, &out), 0);
    CHECK_HAS(out, "commands");
    free(out);
}

static void test_names(void)
{
    const struct {
        const char *in, *name;
    } cases[] = {
        {"", "help"},
        {"help", "help"},
        {"projects", "projects"},
        {"PROJECTS x", "projects"},
        {" project KEY", "project"},
        {"Changes 5", "changes"},
        {"status", "status"},
        {"statuses", "help"},
        {"projectsx", "help"},
        {"\t\nstatus\n", "status"},
        {"\xc2\xa0status", "status"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK_STR(command_name(cases[i].in, strlen(cases[i].in)), cases[i].name);
}

/* ---- projects ---- */

/* Each of order[0..n) is in a, one after the other. */
static void check_in_order(const char *a, const char *const *order, size_t n)
{
    const char *prev = a;
    for (size_t i = 0; i < n; i++) {
        const char *at = strstr(a, order[i]);
        CHECK_HAS(a, order[i]);
        CHECK(at && at > prev);
        prev = at ? at : prev;
    }
}

static void test_projects_sorted(void)
{
    demo_projects();
    char *a = answer("projects", COMMAND_TEXT);
    const char *order[] = {"Alpha", "beta",       "Missing one", "R&D Lab",
                           "ÄPFEL", "Демопроект", "ёж",          "Ёлка"};
    const char *prev = a;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        const char *at = strstr(a, order[i]);
        CHECK(at != NULL);
        if (at) {
            CHECK(at > prev);
            prev = at;
        }
    }
    CHECK_HAS(a, "8 projects");
    CHECK_NOT(a, "Gone project"); /* held */
    CHECK_HAS(a, "BETA: beta (archived) https://yt.example.com/projects/0-2");
    CHECK_HAS(a, "ALPHA: Alpha https://yt.example.com/projects/0-3\n");
    free(a);

    a = answer("projects", COMMAND_SLACK);
    CHECK_HAS(a, "*8 projects*\n");
    CHECK_HAS(a, "\xe2\x80\xa2 `BETA` <https://yt.example.com/projects/0-2|beta> (archived)\n");
    CHECK_HAS(a, "<https://yt.example.com/projects/0-11|R&D Lab>");
    CHECK_STR(last_fallback, "8 projects");
    free(a);

    a = answer("projects", COMMAND_MATRIX);
    CHECK_HAS(a, "<code>BETA</code> <a href=\"https://yt.example.com/projects/0-2\">beta</a> "
                 "<i>(archived)</i>");
    CHECK_HAS(a, "R&amp;D Lab</a>");
    CHECK_HAS(a, "\xe2\x80\xa2 BETA: beta (archived) https://yt.example.com/projects/0-2");
    free(a);
}

/* Shared prefixes in different case, and invalid bytes: still one consistent order. */
static void test_projects_order_prefix(void)
{
    reset();
    add("0-1", "C", "PROJECT c", TRI_NO);
    add("0-2", "A", "project A", TRI_NO);
    add("0-3", "B", "Project b", TRI_NO);
    add("0-4", "D", "Project \xff", TRI_NO);
    add("0-5", "E", "Проект б", TRI_NO);
    add("0-6", "F", "ПРОЕКТ А", TRI_NO);
    add("0-7", "G", "project a", TRI_NO);
    project_list_finish(&plist);
    char *a = answer("projects", COMMAND_TEXT);
    const char *order[] = {"A: project A",     "G: project a", "B: Project b", "C: PROJECT c",
                           "D: Project \\xff", "F: ПРОЕКТ А",  "E: Проект б"};
    check_in_order(a, order, sizeof(order) / sizeof(order[0]));
    free(a);
}

static void test_projects_filter(void)
{
    demo_projects();
    for (size_t k = 0; k < 3; k++) {
        char *a = answer("projects демо", all_pf[k]);
        CHECK_HAS(a, "Демопроект");
        CHECK_HAS(a, "1 project");
        CHECK_NOT(a, "Alpha");
        free(a);

        a = answer("projects ДЕМОПРОЕКТ", all_pf[k]);
        CHECK_HAS(a, "Демопроект");
        free(a);

        a = answer("projects alp", all_pf[k]); /* by name, case-insensitively */
        CHECK_HAS(a, "Alpha");
        CHECK_NOT(a, "beta");
        free(a);

        a = answer("projects yolk", all_pf[k]); /* by short name */
        CHECK_HAS(a, "Ёлка");
        CHECK_NOT(a, "ёж");
        free(a);

        a = answer("projects ЁЛ", all_pf[k]);
        CHECK_HAS(a, "Ёлка");
        CHECK_NOT(a, "Демо");
        free(a);

        a = answer("projects äpf", all_pf[k]); /* Latin-1 */
        CHECK_HAS(a, "ÄPFEL");
        free(a);

        a = answer("projects gone", all_pf[k]); /* held projects are not listed */
        CHECK_HAS(a, "No project matches \xe2\x80\x9cgone\xe2\x80\x9d.");
        free(a);

        a = answer("projects zzz", all_pf[k]);
        CHECK_HAS(a, "No project matches \xe2\x80\x9czzz\xe2\x80\x9d.");
        free(a);
    }
    /* Slack sends "&" as "&amp;". */
    char *a = answer("projects r&amp;d", COMMAND_SLACK);
    CHECK_HAS(a, "|R&D Lab>");
    CHECK_HAS(a, "*1 project* matches \xe2\x80\x9cr&d\xe2\x80\x9d");
    CHECK_STR(last_fallback, "1 project matches \xe2\x80\x9cr&amp;d\xe2\x80\x9d");
    free(a);
    a = answer("projects r&d", COMMAND_MATRIX);
    CHECK_HAS(a, "R&amp;D Lab");
    free(a);

    /* A hostile filter, echoed. */
    a = answer("projects <!channel> @here", COMMAND_SLACK);
    CHECK_HAS(a, "No project matches \xe2\x80\x9c<!channel> @here\xe2\x80\x9d.");
    CHECK_STR(last_fallback, "No project matches \xe2\x80\x9c&lt;!channel&gt; @here\xe2\x80\x9d.");
    free(a);
    a = answer("projects <b>x</b>", COMMAND_MATRIX);
    CHECK_HAS(a, "&lt;b&gt;x&lt;/b&gt;");
    CHECK_NOT(last_html, "<b>x");
    free(a);
    /* Spaces in a filter: runs collapse. */
    a = answer("projects   r&d    lab ", COMMAND_TEXT);
    CHECK_HAS(a, "1 project matches \xe2\x80\x9cr&d lab\xe2\x80\x9d");
    free(a);

    /* An empty list. */
    reset();
    project_list_finish(&plist);
    a = answer("projects", COMMAND_MATRIX);
    CHECK_HAS(a, "No projects known yet.");
    free(a);
}

/* The filter matches in every cased script, with Unicode's full case folding and NFKC. */
static void test_projects_filter_unicode(void)
{
    reset();
    add("0-1", "UEB", "Über Project", TRI_NO);
    add("0-2", "UEB2", "ÜBERBLICK", TRI_NO);
    add("0-3", "UBR", "Uber rides", TRI_NO);
    add("0-4", "SIS", "ΣΊΣΥΦΟΣ", TRI_NO); /* Greek, with tonos and final sigma */
    add("0-5", "ARM", "ԱՐԵՎ", TRI_NO);    /* Armenian */
    add("0-6", "GEO", "ᲡᲐᲥᲐᲠᲗᲕᲔᲚᲝ", TRI_NO);   /* Georgian Mtavruli */
    add("0-7", "DES", "\xf0\x90\x90\x80\xf0\x90\x90\x81", TRI_NO); /* Deseret 𐐀𐐁 */
    add("0-8", "STR", "Straße", TRI_NO);
    add("0-9", "CHR", "ᏣᎳᎩ", TRI_NO); /* Cherokee */
    add("0-10", "IST2", "İstanbul", TRI_NO);
    add("0-11", "IST", "ISTANBUL", TRI_NO);
    add("0-12", "LIG", "ﬁle store", TRI_NO); /* the fi ligature */
    add("0-13", "ЇЖАК", "Hedgehog", TRI_NO); /* by short name: Ukrainian Ї */
    project_list_finish(&plist);
    const struct {
        const char *cmd, *hit, *miss;
    } cases[] = {
        {"projects über", "Über Project", "Uber rides"},
        {"projects ÜBER", "ÜBERBLICK", "Uber rides"},
        {"projects Über", "Über Project", "Uber rides"},
        {"projects U\xcc\x88"
         "ber",
         "ÜBERBLICK", "Uber rides"},             /* decomposed ü */
        {"projects uber", "Uber rides", "Über"}, /* accents still count */
        {"projects σίσυφος", "ΣΊΣΥΦΟΣ", "Über"},
        {"projects արեվ", "ԱՐԵՎ", "Über"},
        {"projects საქართველო", "ᲡᲐᲥᲐᲠᲗᲕᲔᲚᲝ", "Über"},
        {"projects \xf0\x90\x90\xa8", "\xf0\x90\x90\x80", "Über"}, /* 𐐨 */
        {"projects STRASSE", "Straße", "Über"},
        {"projects straße", "Straße", "Über"},
        {"projects ꮳꮃꭹ", "ᏣᎳᎩ", "Über"},
        {"projects İSTANBUL", "İstanbul", "ISTANBUL"},
        {"projects i\xcc\x87stanbul", "İstanbul", "ISTANBUL"}, /* i + U+0307 is İ folded */
        {"projects istanbul", "ISTANBUL", "İstanbul"},
        {"projects FILE", "ﬁle store", "Über"},
        {"projects ＦＩＬＥ", "ﬁle store", "Über"}, /* full-width letters */
        {"projects їжак", "Hedgehog", "Über"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (size_t k = 0; k < 3; k++) {
            char *a = answer(cases[i].cmd, all_pf[k]);
            CHECK_HAS(a, cases[i].hit);
            CHECK_NOT(a, cases[i].miss);
            free(a);
        }
    }
    /* Unicode's default folding is not Turkish: dotless ı is not i, İ is i + U+0307. */
    char *a = answer("projects ıstanbul", COMMAND_TEXT);
    CHECK_HAS(a, "No project matches");
    free(a);
    a = answer("projects über", COMMAND_TEXT);
    CHECK_HAS(a, "2 projects match");
    free(a);
}

/* The listing order is by folded name in every script, and ß sorts as "ss". */
static void test_projects_order_unicode(void)
{
    reset();
    add("0-1", "B", "Բարև", TRI_NO); /* Armenian capital ben: after lower-case ayb */
    add("0-2", "A", "ապրիլ", TRI_NO);
    add("0-3", "S2", "STRASSE B", TRI_NO);
    add("0-4", "S1", "straße a", TRI_NO);
    add("0-5", "S3", "Strasse C", TRI_NO);
    add("0-6", "G2", "Ბათუმი", TRI_NO); /* Georgian Mtavruli ban, after Mkhedruli an */
    add("0-7", "G1", "ანა", TRI_NO);
    project_list_finish(&plist);
    char *a = answer("projects", COMMAND_TEXT);
    const char *order[] = {"S1: straße a", "S2: STRASSE B", "S3: Strasse C",         "A: ապրիլ",
                           "B: Բարև",      "G1: ანა",       "G2: Ბათუმი"};
    check_in_order(a, order, sizeof(order) / sizeof(order[0]));
    free(a);
}

/*
 * A short name longer than every name before it, right after a name that set a new maximum:
 * the filter's scratch buffer must fit it (it once did not: a heap overflow from chat).
 */
static void test_projects_filter_long_short_name(void)
{
    reset();
    add("0-1", "A", "qrstuv", TRI_NO);
    add("0-2", "SHORT_NAME_LONGER_THAN_EVERY_NAME_BEFORE_IT_SO_THE_BUFFER_MUST_FIT", "abcdefgh",
        TRI_NO);
    add("0-3", "B", "x", TRI_NO);
    project_list_finish(&plist);
    for (size_t k = 0; k < 3; k++) {
        char *a = answer("projects buffer_must", all_pf[k]);
        CHECK_HAS(a, "abcdefgh");
        CHECK_HAS(a, "1 project");
        CHECK_NOT(a, "abcdef\n");
        free(a);
    }
}

static void test_projects_many(void)
{
    char ids[500][16], names[500][32];
    reset();
    for (int i = 0; i < 500; i++) {
        snprintf(ids[i], sizeof(ids[i]), "0-%d", i);
        snprintf(names[i], sizeof(names[i]), "Project %03d", i);
        add(ids[i], ids[i], names[i], i % 2 ? TRI_YES : TRI_NO);
    }
    project_list_finish(&plist);
    for (size_t k = 0; k < 3; k++) {
        char *a = answer("projects", all_pf[k]);
        CHECK_HAS(a, "500 projects");
        CHECK_HAS(a, "400 more \xe2\x80\x94 narrow it with a filter");
        CHECK_HAS(a, "Project 099");
        CHECK_NOT(a, "Project 100");
        free(a);
    }
    char *a = answer("projects 4", COMMAND_TEXT); /* "0-4", "Project 4xx", ... */
    CHECK_HAS(a, "more \xe2\x80\x94 narrow it with a filter");
    free(a);
    a = answer("projects project 12", COMMAND_TEXT);
    CHECK_HAS(a, "10 projects match"); /* 120-129 */
    CHECK_NOT(a, "more");
    free(a);
}

/* Names that blow up under escaping: every platform still within its limits, cut with "more". */
static void test_projects_huge(void)
{
    static char names[120][1001], ids[120][16];
    const char *unit[] = {"\"", "<", "&", "\xe2\x80\xae", "\xf0\x9f\x98\x80"};
    reset();
    for (int i = 0; i < 120; i++) {
        const char *u = unit[i % 5];
        size_t ul = strlen(u), n = 0;
        while (n + ul < 1000) {
            memcpy(names[i] + n, u, ul);
            n += ul;
        }
        names[i][n] = '\0';
        snprintf(ids[i], sizeof(ids[i]), "0-%d", i);
        add(ids[i], ids[i], names[i], TRI_YES);
    }
    project_list_finish(&plist);
    for (size_t k = 0; k < 2; k++) {
        char *a = answer("projects", all_pf[k]); /* answer() checks the limits */
        CHECK_HAS(a, "120 projects");
        CHECK_HAS(a, " more \xe2\x80\x94 narrow it with a filter");
        CHECK_NOT(a, "\xe2\x80\xae");
        free(a);
    }
}

static void test_hostile_names(void)
{
    reset();
    struct project p = {
        .id = "0-1",
        .short_name = "<!here>",
        .name = "<!channel> @here @room <b>bold</b> <a href=\"x\">l</a> & \xe2\x80\xae"
                "evil\n<@U123>",
        .description = "<!everyone> <script>x</script>",
        .leader_name = "<@U999>",
        .leader_login = "@room",
        .archived = TRI_YES,
    };
    add_full(&p);
    project_list_finish(&plist);
    const char *cmds[] = {"projects", "projects here", "project <!here>", "project 0-1"};
    for (size_t i = 0; i < 4; i++) {
        /* Slack: the name is a link's literal label (answer() allows no mention element and no
         * style on links), controls as U+FFFD; the fallback (the head) is entity-escaped. */
        char *a = answer(cmds[i], COMMAND_SLACK);
        CHECK_HAS(a, "`<!here>` <https://yt.example.com/projects/0-1|<!channel> @here @room "
                     "<b>bold</b> <a href=\"x\">l</a> & \xef\xbf\xbd"
                     "evil\xef\xbf\xbd<@U123>> (archived)");
        CHECK_NOT(a, "\xe2\x80\xae");
        CHECK_NOT(a, "evil\n");
        if (i >= 2) {
            CHECK_HAS(a, "*Leader*: <@U999> (@room)");
            CHECK_HAS(a, "*Description*: <!everyone> <script>x</script>");
            CHECK_HAS(last_fallback, "&lt;!channel&gt; @here");
            CHECK_HAS(last_fallback, "Description: &lt;!everyone&gt;");
        }
        CHECK_NOT(last_fallback, "<!");
        CHECK_NOT(last_fallback, "<@");
        CHECK_NOT(last_fallback, "\xe2\x80\xae");
        free(a);

        a = answer(cmds[i], COMMAND_MATRIX);
        CHECK_HAS(a, "&lt;b&gt;bold&lt;/b&gt;");
        CHECK_NOT(last_html, "<b>bold");
        CHECK_NOT(last_html, "<a href=\"x\"");
        CHECK_NOT(last_html, "<script>");
        CHECK_NOT(a, "\xe2\x80\xae");
        free(a);

        a = answer(cmds[i], COMMAND_TEXT);
        CHECK_HAS(a, "\\u202eevil\\x0a");
        free(a);
    }
}

/*
 * Issue 10: Slack mrkdwn has no escape for * _ ~ `, so a project named like this once showed
 * bold, italic, struck and as code. Now its link's label is the name exactly, unstyled.
 */
static void test_slack_literal_names(void)
{
    static const char name[] = "*bold* _it_ ~s~ `c`";
    const char *cmds[] = {"projects", "projects bold", "project MD"};
    struct command_context c;

    reset();
    add("0-1", "MD", name, TRI_NO);
    project_list_finish(&plist);
    c = ctx();
    for (size_t i = 0; i < 3; i++) {
        char *out = run_ctx(&c, cmds[i], COMMAND_SLACK);
        const char *bad = slack_check(out, SLACK_ANSWER);
        if (bad)
            fprintf(stderr, "slack: %s in %.2000s\n", bad, out);
        CHECK(bad == NULL);
        CHECK_INT(slack_count_literal(out, "link", name), 1);
        free(out);
    }
}

/* ---- project KEY ---- */

static void test_project(void)
{
    char desc[2000];
    reset();
    for (size_t i = 0; i < sizeof(desc) - 1; i++)
        desc[i] = i % 10 == 9 ? '\n' : 'd';
    desc[sizeof(desc) - 1] = '\0';
    struct project p = {.id = "0-42",
                        .short_name = "DEMO",
                        .name = "Demo project",
                        .description = desc,
                        .leader_name = "Jane Doe",
                        .leader_login = "jdoe",
                        .first_seen = NOW - 86400,
                        .archived = TRI_NO};
    struct project q = {
        .id = "0-43", .short_name = "ЁЖ", .name = "Hedgehog", .archived = TRI_UNKNOWN};
    struct project h = {.id = "0-44", .short_name = "OLD", .name = "Held", .held = 1};
    add_full(&p);
    add_full(&q);
    add_full(&h);
    project_list_finish(&plist);

    const char *keys[] = {"project DEMO", "project demo", "PROJECT DeMo", "project 0-42"};
    for (size_t i = 0; i < 4; i++) {
        for (size_t k = 0; k < 3; k++) {
            char *a = answer(keys[i], all_pf[k]);
            CHECK_HAS(a, "Demo project");
            CHECK_HAS(a, "Jane Doe (jdoe)");
            CHECK_HAS(a, "2024-05-31");
            CHECK_HAS(a, "https://yt.example.com/projects/0-42");
            CHECK_HAS(a, "dddd dddd");
            CHECK_HAS(a, "d\xe2\x80\xa6");
            CHECK_NOT(a, "ddd\nddd");
            CHECK(count(a, "d") < 400 * (all_pf[k] == COMMAND_TEXT ? 1 : 3));
            free(a);
        }
    }
    char *a = answer("project DEMO", COMMAND_TEXT);
    CHECK_HAS(a, "Archived: no");
    CHECK_HAS(a, "Short name: DEMO");
    free(a);
    a = answer("project DEMO", COMMAND_SLACK);
    CHECK_HAS(a, "*Archived*: no");
    CHECK_HAS(a, "*Leader*: Jane Doe (jdoe)");
    free(a);
    a = answer("project DEMO", COMMAND_MATRIX);
    CHECK_HAS(a, "<br><b>Archived</b>: no");
    free(a);

    a = answer("project ёж", COMMAND_TEXT); /* Cyrillic short name, case-insensitively */
    CHECK_HAS(a, "Hedgehog");
    CHECK_HAS(a, "Archived: unknown");
    CHECK_HAS(a, "First seen: unknown");
    CHECK_HAS(a, "Leader: unknown");
    CHECK_HAS(a, "Description: unknown");
    free(a);

    for (size_t k = 0; k < 3; k++) {
        a = answer("project NOPE", all_pf[k]);
        CHECK_HAS(a, "No project with the short name or id \xe2\x80\x9cNOPE\xe2\x80\x9d");
        CHECK_HAS(a, "projects ");
        free(a);
        a = answer("project OLD", all_pf[k]); /* held: presumed gone */
        CHECK_HAS(a, "No project");
        free(a);
        a = answer("project", all_pf[k]);
        CHECK_HAS(a, "Usage: project KEY");
        free(a);
    }
    a = answer("project <!here>", COMMAND_SLACK);
    CHECK_HAS(a, "\xe2\x80\x9c<!here>\xe2\x80\x9d");
    CHECK_HAS(a, "`projects <filter>`");
    CHECK_HAS(last_fallback, "\xe2\x80\x9c&lt;!here&gt;\xe2\x80\x9d");
    CHECK_HAS(last_fallback, "Try projects &lt;filter&gt; to search");
    free(a);
}

/* `project KEY` finds a short name case-insensitively in any script, exact matches first. */
static void test_project_unicode(void)
{
    reset();
    add("0-1", "STRASSE", "Street", TRI_NO);
    add("0-2", "ԱՐԵՎ", "Sun", TRI_NO);
    add("0-3", "straße", "Exact", TRI_NO);
    project_list_finish(&plist);
    char *a = answer("project արեվ", COMMAND_TEXT);
    CHECK_HAS(a, "Sun");
    free(a);
    a = answer("project straße", COMMAND_TEXT); /* the exact match wins */
    CHECK_HAS(a, "Exact");
    free(a);
    a = answer("project Strasse", COMMAND_TEXT); /* else the first in the list (by id) */
    CHECK_HAS(a, "Street");
    free(a);
    a = answer("project STRAẞE", COMMAND_TEXT);
    CHECK_HAS(a, "Street");
    free(a);
}

/* ---- changes [N] ---- */

static char hnames[60][32];

static void fill_history(size_t n)
{
    n_hist = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(hnames[i], sizeof(hnames[i]), "Change%02zu", i);
        hist[i] = (struct history_entry){
            .at = NOW - (int64_t)(n - i) * 60,
            .kind = (enum change_kind)(i % 5),
            .id = "0-1",
            .short_name = "KEY",
            .name = hnames[i],
        };
        if (hist[i].kind == CHANGE_RENAMED) {
            hist[i].old_name = "Old <!channel>";
            hist[i].old_short_name = "OLDKEY";
        }
    }
}

static void test_changes(void)
{
    demo_projects();
    fill_history(0);
    for (size_t k = 0; k < 3; k++) {
        char *a = answer("changes", all_pf[k]);
        CHECK_HAS(a, "No changes detected yet.");
        free(a);
    }
    fill_history(60);
    char *a = answer("changes", COMMAND_TEXT);
    CHECK_HAS(a, "The last 10 changes");
    CHECK_INT(count(a, "\n- "), 10);
    CHECK(strstr(a, "Change59") && strstr(a, "Change50") && !strstr(a, "Change49"));
    CHECK(strstr(a, "Change59") < strstr(a, "Change58")); /* newest first */
    CHECK_HAS(a, "2024-06-01 11:55 Created: Change55 (KEY)");
    CHECK_HAS(a, "Renamed: Old <!channel> (OLDKEY) \xe2\x86\x92 Change56 (KEY)");
    free(a);

    const struct {
        const char *in;
        int n;
    } bounds[] = {{"changes 3", 3},    {"changes 1", 1},   {"changes 0", 1},
                  {"changes 50", 50},  {"changes 51", 50}, {"changes 99999999999999999999999", 50},
                  {"CHANGES   007", 7}};
    for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
        a = answer(bounds[i].in, COMMAND_TEXT);
        CHECK_INT(count(a, "\n- "), bounds[i].n);
        free(a);
    }
    for (size_t k = 0; k < 3; k++) {
        a = answer("changes -1", all_pf[k]);
        CHECK_HAS(a, "Usage: changes [N]");
        free(a);
        a = answer("changes many", all_pf[k]);
        CHECK_HAS(a, "Usage: changes [N]");
        free(a);
    }
    fill_history(2);
    a = answer("changes 50", COMMAND_TEXT);
    CHECK_INT(count(a, "\n- "), 2);
    free(a);

    fill_history(60);
    a = answer("changes 50", COMMAND_SLACK);
    CHECK_HAS(a, "`2024-06-01 11:55` Created: Change55 (`KEY`)");
    CHECK_HAS(a, "Old <!channel> (`OLDKEY`) \xe2\x86\x92 Change56");
    CHECK_STR(last_fallback, "The last 50 changes (newest first, UTC)");
    free(a);
    a = answer("changes 50", COMMAND_MATRIX);
    CHECK_HAS(a, "<li><code>2024-06-01 11:55</code> Created: Change55 (<code>KEY</code>)</li>");
    CHECK_INT(count(a, "<li>"), 50);
    free(a);
}

/* ---- status ---- */

static void test_status(void)
{
    demo_projects();
    for (size_t k = 0; k < 3; k++) {
        char *a = answer("status", all_pf[k]);
        CHECK_HAS(a, "ytbridge 1.2.3");
        CHECK_HAS(a, "https://yt.example.com");
        CHECK_HAS(a, "(API: /api)");
        CHECK_HAS(a, "2024-06-01 11:57 UTC, 3 min ago");
        CHECK_HAS(a, "Projects");
        CHECK_HAS(a, "8"); /* the held project is not counted */
        CHECK_HAS(a, "2 h 5 min");
        CHECK_HAS(a, "team-slack");
        CHECK_HAS(a, "(slack): queue 0, ok");
        CHECK_HAS(a, "(matrix): queue 7, broken: M_FORBIDDEN");
        CHECK_NOT(a, "Last error");
        free(a);
    }
    char *a = answer("status", COMMAND_TEXT);
    CHECK_HAS(a, "Projects: 8\n");
    CHECK_HAS(a, "broken: M_FORBIDDEN <b>x</b>");
    free(a);
    a = answer("status", COMMAND_MATRIX);
    CHECK_HAS(a, "broken: M_FORBIDDEN &lt;b&gt;x&lt;/b&gt;");
    CHECK_NOT(last_html, "<b>x</b>");
    free(a);
    a = answer("status", COMMAND_SLACK);
    CHECK_HAS(a, "<https://yt.example.com|https://yt.example.com>");
    free(a);

    struct command_context c = ctx();
    c.last_poll_ok = 0;
    c.last_error = "HTTP 502 from <!channel>";
    c.n_sinks = 0;
    c.flavour = YOUTRACK_LEGACY;
    char *out = run_ctx(&c, "status", COMMAND_SLACK), *view = slack_view(out, 1);
    CHECK(slack_check(out, SLACK_ANSWER) == NULL);
    CHECK_HAS(view, "*Last successful poll*: never\n");
    CHECK_HAS(view, "*Last error*: HTTP 502 from <!channel>\n");
    CHECK_HAS(view, "(API: legacy /rest)");
    CHECK_HAS(view, "*Sinks*: none");
    CHECK_HAS(out, "\"text\":\"ytbridge 1.2.3\\n"); /* the fallback: no marks, escaped */
    CHECK_HAS(out, "Last error: HTTP 502 from &lt;!channel&gt;\\n");
    free(view);
    free(out);
    out = run_ctx(&c, "status", COMMAND_TEXT);
    CHECK_HAS(out, "Last successful poll: never");
    CHECK_HAS(out, "Last error: HTTP 502 from <!channel>");
    free(out);
}

/* Every command on every platform with an empty context (no list, no history, no sinks). */
static void test_empty_context(void)
{
    struct command_context c = {0};
    const char *cmds[] = {"projects", "projects x", "project x", "changes", "status", "help", "x"};
    for (size_t i = 0; i < 7; i++) {
        for (size_t k = 0; k < 3; k++) {
            char *out = run_ctx(&c, cmds[i], all_pf[k]);
            if (all_pf[k] != COMMAND_TEXT) {
                json_t *o = json_loads(out, 0, NULL);
                CHECK(o != NULL);
                json_decref(o);
            }
            free(out);
        }
    }
}

/* ---- the index (command_index.h) against a model ---- */

static uint32_t rnd_state;

static uint32_t rnd(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return rnd_state >> 8;
}

/* Pieces of names: cases, scripts, folding that changes lengths, invalid bytes. */
static const char *const pieces[] = {"a",
                                     "A",
                                     "b",
                                     "B",
                                     "z",
                                     " ",
                                     "-",
                                     "1",
                                     "2",
                                     "ä",
                                     "Ä",
                                     "ß",
                                     "SS",
                                     "ẞ",
                                     "ё",
                                     "Ё",
                                     "σ",
                                     "Σ",
                                     "ς",
                                     "Ί",
                                     "İ",
                                     "ı",
                                     "i",
                                     "I",
                                     "ﬁ",
                                     "ＡＢ",
                                     "e\xcc\x81",
                                     "é",
                                     "ա",
                                     "Ա",
                                     "Ა",
                                     "ა",
                                     "\xf0\x90\x90\x80",
                                     "\xf0\x90\x90\xa8",
                                     "\xff",
                                     "\xc3",
                                     "\xe2\x82",
                                     "\x80",
                                     "<",
                                     "&",
                                     "日",
                                     "\xcc\x88",
                                     "u",
                                     "U",
                                     "abcdefghijklmnopqrstu",
                                     "ABCDEFGHIJKLMNOPQRSTU"};

static void random_text(char *out, size_t cap, unsigned max_pieces)
{
    size_t o = 0;
    for (unsigned i = 0, n = rnd() % (max_pieces + 1); i < n; i++) {
        const char *p = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
        size_t l = strlen(p);
        if (o + l >= cap)
            break;
        memcpy(out + o, p, l);
        o += l;
    }
    out[o] = '\0';
}

static char *key_of(const char *s)
{
    struct strbuf b = {0};
    if (s)
        utf8_fold(&b, s, strlen(s));
    return strbuf_take(&b);
}

struct model {
    const struct project *p;
    char *key; /* of the shown name */
};

static const char *shown(const struct project *p)
{
    return p->name && *p->name ? p->name : p->short_name && *p->short_name ? p->short_name : p->id;
}

static int model_order(const void *pa, const void *pb)
{
    const struct model *a = pa, *b = pb;
    int c = strcmp(a->key, b->key);
    if (!c)
        c = strcmp(shown(a->p), shown(b->p));
    return c ? c : project_id_cmp(a->p->id, b->p->id);
}

/* Whether field's fold key (NULL: none) contains the key fk. */
static int model_contains(const char *field, const char *fk)
{
    char *k = field ? key_of(field) : NULL;
    int hit = k && strstr(k, fk) != NULL;
    free(k);
    return hit;
}

static int model_is(const char *field, const char *fk)
{
    char *k = field ? key_of(field) : NULL;
    int hit = k && strcmp(k, fk) == 0;
    free(k);
    return hit;
}

/* Checks every listing, filter and lookup of an index of plist against the model. */
static void check_index_model(const struct command_index *ix, size_t n_filters)
{
    struct model *m = calloc(plist.n + 1, sizeof(*m));
    const struct project *want[5], *got[5], *found;
    size_t n = 0, total, expect;
    char text[256];

    for (size_t i = 0; i < plist.n; i++) {
        if (!plist.v[i].held) {
            m[n].p = &plist.v[i];
            m[n++].key = key_of(shown(&plist.v[i]));
        }
    }
    qsort(m, n, sizeof(*m), model_order);
    CHECK_INT(command_index_count(ix), n);
    for (size_t i = 0; i < n && i < command_index_count(ix); i++)
        CHECK(command_index_at(ix, i) == m[i].p);

    for (size_t f = 0; f < n_filters; f++) {
        /* A piece of a name now and then, else random text. */
        if (n && rnd() % 2) {
            const char *src = shown(m[rnd() % n].p);
            size_t len = strlen(src), a = len ? rnd() % len : 0;
            size_t b = a + 1 + rnd() % 24 > len ? len : a + 1 + rnd() % 24;
            a = utf8_cut(src, len, a);
            b = utf8_cut(src, len, b);
            memcpy(text, src + a, b - a);
            text[b - a] = '\0';
        } else {
            random_text(text, sizeof(text), 3);
        }
        if (!text[0] || !utf8_valid(text, strlen(text)))
            continue; /* the commands pass valid, non-empty filters only */
        char *fk = key_of(text);
        expect = 0;
        for (size_t i = 0; i < n; i++) {
            if (model_contains(m[i].p->name, fk) || model_contains(m[i].p->short_name, fk)) {
                if (expect < 5)
                    want[expect] = m[i].p;
                expect++;
            }
        }
        CHECK_INT(command_index_match(ix, text, got, 5, &total), 0);
        CHECK_INT(total, expect);
        for (size_t i = 0; i < expect && i < 5 && i < total; i++)
            CHECK(got[i] == want[i]);

        /* `project KEY`: exact first, else folded, the first in the list's order. */
        const struct project *exact = NULL, *folded = NULL;
        for (size_t i = 0; i < plist.n; i++) {
            const struct project *p = &plist.v[i];
            if (p->held)
                continue;
            if (!exact &&
                ((p->short_name && strcmp(p->short_name, text) == 0) || strcmp(p->id, text) == 0))
                exact = p;
            if (!folded && (model_is(p->short_name, fk) || model_is(p->id, fk)))
                folded = p;
        }
        CHECK_INT(command_index_find(ix, text, &found), 0);
        CHECK(found == (exact ? exact : folded));
        free(fk);
    }
    for (size_t i = 0; i < n; i++)
        free(m[i].key);
    free(m);
}

static void test_index_model(void)
{
    char names[300][3][128];
    for (uint32_t round = 0; round < 150; round++) {
        rnd_state = round + 1;
        reset();
        size_t n = round % 10 == 0 ? 300 : rnd() % 40;
        for (size_t i = 0; i < n; i++) {
            struct project p = {.id = names[i][2], .archived = TRI_NO};
            random_text(names[i][0], sizeof(names[i][0]), 6);
            random_text(names[i][1], sizeof(names[i][1]), 3);
            /* Some ids fold to others' ("A-1", "a-1"), some short names are ids. */
            snprintf(names[i][2], sizeof(names[i][2]), "%s-%u", rnd() % 2 ? "a" : "A",
                     (unsigned)(rnd() % (n + 1)));
            p.name = rnd() % 8 ? names[i][0] : NULL;
            p.short_name = rnd() % 8 ? rnd() % 10 ? names[i][1] : names[rnd() % (i + 1)][2] : NULL;
            p.held = rnd() % 7 == 0;
            add_full(&p);
        }
        project_list_finish(&plist);
        struct command_index *ix = NULL;
        CHECK_INT(command_index_new(&ix, &plist), 0);
        if (ix)
            check_index_model(ix, 30);
        command_index_free(ix);
    }
}

/* The context's index is used when it is the list's; an index of another list is not. */
static void test_index_in_context(void)
{
    struct project_list other;
    struct command_index *ix = NULL, *stale = NULL;
    struct project p = {.id = "0-9", .short_name = "OLD", .name = "Old list", .archived = TRI_NO};

    project_list_init(&other);
    CHECK_INT(project_list_add(&other, &p), 0);
    project_list_finish(&other);
    demo_projects();
    CHECK_INT(command_index_new(&ix, &plist), 0);
    CHECK_INT(command_index_new(&stale, &other), 0);
    CHECK(command_index_of(ix, &plist));
    CHECK(!command_index_of(stale, &plist));

    struct command_context c = ctx();
    const char *cmds[] = {"projects", "projects ё", "project yolka", "status", "projects old"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        for (size_t k = 0; k < 3; k++) {
            c.index = NULL;
            char *want = run_ctx(&c, cmds[i], all_pf[k]);
            c.index = ix;
            char *got = run_ctx(&c, cmds[i], all_pf[k]);
            CHECK_STR(got, want);
            free(got);
            c.index = stale; /* never answers from another list */
            got = run_ctx(&c, cmds[i], all_pf[k]);
            CHECK_STR(got, want);
            CHECK_NOT(got, "Old list");
            free(got);
            free(want);
        }
    }
    command_index_free(ix);
    command_index_free(stale);
    project_list_fini(&other);

    /* An empty list and no list at all index as empty. */
    CHECK_INT(command_index_new(&ix, NULL), 0);
    CHECK_INT(command_index_count(ix), 0);
    command_index_free(ix);
}

int main(void)
{
    project_list_init(&plist);
    RUN(test_help);
    RUN(test_unknown);
    RUN(test_bad_input);
    RUN(test_names);
    RUN(test_projects_sorted);
    RUN(test_projects_order_prefix);
    RUN(test_projects_filter);
    RUN(test_projects_filter_long_short_name);
    RUN(test_projects_filter_unicode);
    RUN(test_projects_order_unicode);
    RUN(test_project_unicode);
    RUN(test_projects_many);
    RUN(test_projects_huge);
    RUN(test_hostile_names);
    RUN(test_slack_literal_names);
    RUN(test_project);
    RUN(test_changes);
    RUN(test_status);
    RUN(test_empty_context);
    RUN(test_index_model);
    RUN(test_index_in_context);
    project_list_fini(&plist);
    free(last_html);
    free(last_fallback);
    return test_done();
}
