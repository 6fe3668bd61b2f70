/*
 * Unit tests for the URL module: parsing as libcurl does plus our rules (hostile forms
 * included), loopback decided by address and never by a prefix, same-origin, building request
 * URLs, and making a URL safe to embed.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "test.h"
#include "url.h"

/* url_is_loopback() of url (absolute, any scheme); 0 also when it does not parse. */
static int loopback(const char *url)
{
    struct url u;
    int r = url_parse(url, URL_ANY_SCHEME, &u) == URL_OK && url_is_loopback(&u);
    url_fini(&u);
    return r;
}

static void test_loopback_by_address(void)
{
    CHECK_INT(loopback("http://127.0.0.1:8080/x"), 1);
    CHECK_INT(loopback("ws://127.1.2.3/link/?ticket=1"), 1);
    CHECK_INT(loopback("http://127.255.255.254"), 1);
    CHECK_INT(loopback("http://[::1]:9464/metrics"), 1);
    CHECK_INT(loopback("ws://[::1]/"), 1);
    /* An IPv4-mapped loopback address is 127.0.0.1 on a dual-stack socket. */
    CHECK_INT(loopback("http://[::ffff:127.0.0.1]:80/"), 1);
    /* The forms libcurl itself connects to as 127.0.0.1. */
    CHECK_INT(loopback("http://127.1/"), 1);
    CHECK_INT(loopback("http://0x7f.0.0.1/"), 1);
}

static void test_names(void)
{
    /* A name that starts like an address is a name: DNS decides where it goes. */
    CHECK_INT(loopback("ws://127.example.net:8080/link"), 0);
    CHECK_INT(loopback("http://127.0.0.1.example.net/"), 0);
    CHECK_INT(loopback("http://localhost:8080/"), 1);
    CHECK_INT(loopback("http://LocalHost/"), 1);
    /* Fully qualified, it goes to the resolver, which may ask DNS. */
    CHECK_INT(loopback("http://localhost./"), 0);
    CHECK_INT(loopback("http://localhost.example.com/"), 0);
    CHECK_INT(loopback("http://example.com/"), 0);
    CHECK_INT(loopback("https://hooks.slack.com/commands/T1/2/x"), 0);
}

static void test_not_loopback(void)
{
    CHECK_INT(loopback("http://128.0.0.1/"), 0);
    CHECK_INT(loopback("http://10.0.0.1/"), 0);
    CHECK_INT(loopback("http://0.0.0.0/"), 0);
    CHECK_INT(loopback("http://[::]/"), 0);
    CHECK_INT(loopback("http://[::ffff:10.0.0.1]/"), 0);
    CHECK_INT(loopback("http://[2001:db8::1]/"), 0);
    /* The userinfo is not the host: this goes to evil.example. */
    CHECK_INT(loopback("http://127.0.0.1:80@evil.example/"), 0);
    CHECK_INT(loopback("http://127.0.0.1:x@evil.example/"), 0);
    /* Not a URL at all. */
    CHECK_INT(loopback("127.0.0.1"), 0);
    CHECK_INT(loopback(""), 0);
    CHECK_INT(loopback("http://"), 0);
}

/*
 * One parse: text with the schemes asked for gives error; when it parses, host and port are
 * as given (host NULL, port -1: not checked).
 */
struct parse_case {
    const char *text;
    unsigned schemes;
    enum url_error error;
    const char *host;
    int port;
};

static const struct parse_case parse_cases[] = {
    /* Case is libcurl's: the scheme lower-cased, the host as written; defaults filled in. */
    {"HTTPS://YT.Example.COM/youtrack/", URL_HTTP, URL_OK, "YT.Example.COM", 443},
    {"http://h:8080", URL_HTTP, URL_OK, "h", 8080},
    {"http://h:000080/", URL_HTTP, URL_OK, "h", 80}, /* a decimal port like any other */
    {"https://h:/", URL_HTTP, URL_OK, "h", 443},     /* an empty port: the default */
    {"https://h:65535/", URL_HTTP, URL_OK, "h", 65535},
    /* ws/wss: libcurl parses them (without knowing them); the default ports are ours. */
    {"ws://127.0.0.1/x", URL_WS, URL_OK, "127.0.0.1", 80},
    {"wss://h/", URL_WS, URL_OK, "h", 443},
    {"ws://h/", URL_HTTP | URL_WS, URL_OK, "h", 80},
    {"ftp://h/", URL_ANY_SCHEME, URL_OK, "h", 0},
    /* Numeric IPv4 forms as libcurl connects to them. */
    {"http://0x7f.1/", URL_HTTP, URL_OK, "127.0.0.1", 80},
    {"http://0177.0.0.1/", URL_HTTP, URL_OK, "127.0.0.1", 80},
    {"http://2130706433/", URL_HTTP, URL_OK, "127.0.0.1", 80},
    /* IPv6 in brackets; the zone id is not part of the host. */
    {"https://[::1]:8443/x", URL_HTTP, URL_OK, "[::1]", 8443},
    {"https://[fe80::1%25eth0]/", URL_HTTP, URL_OK, "[fe80::1]", 443},
    {"https://[::1/x", URL_HTTP, URL_ERR_IPV6, NULL, -1},
    {"https://[]/", URL_HTTP, URL_ERR_IPV6, NULL, -1},
    {"https://[1.2.3.4]/", URL_HTTP, URL_ERR_IPV6, NULL, -1},
    {"https://[v1.x]/", URL_HTTP, URL_ERR_IPV6, NULL, -1},
    /* The userinfo is not the host. */
    {"https://bot:hunter2@yt.example.com/", URL_HTTP, URL_OK, "yt.example.com", 443},
    {"http://127.0.0.1:80@evil.example/", URL_HTTP, URL_OK, "evil.example", 80},
    /* A percent-encoded host is decoded, then held to the rules for names. */
    {"https://yt%2Eexample%2ecom/", URL_HTTP, URL_OK, "yt.example.com", 443},
    {"https://h_x~y.example/", URL_HTTP, URL_OK, "h_x~y.example", 443},
    {"https://h%7Cx/", URL_HTTP, URL_ERR_HOST, NULL, -1},
    {"https://h%2Fx/", URL_HTTP, URL_ERR_HOST, NULL, -1},
    {"https://h%00x/", URL_HTTP, URL_ERR_HOST, NULL, -1},
    {"https://h%C3%A9/", URL_HTTP, URL_ERR_HOST, NULL, -1},
    {"https://h\xc3\xa9.example/", URL_HTTP, URL_ERR_HOST, NULL, -1},
    {"https://h|x/", URL_HTTP, URL_ERR_HOST, NULL, -1},
    {"https://h!x/", URL_HTTP, URL_ERR_HOST, NULL, -1},
    /* No scheme, another scheme, or not followed by exactly "//". */
    {"yt.example.com", URL_HTTP, URL_ERR_SCHEME, NULL, -1},
    {"/relative/path", URL_HTTP, URL_ERR_SCHEME, NULL, -1},
    {"", URL_HTTP, URL_ERR_SCHEME, NULL, -1},
    {"ftp://yt.example.com", URL_HTTP, URL_ERR_SCHEME, NULL, -1},
    {"javascript:alert(1)", URL_HTTP, URL_ERR_SCHEME, NULL, -1},
    {"https:yt.example.com", URL_HTTP, URL_ERR_SCHEME, NULL, -1},
    {"https:/yt.example.com", URL_HTTP, URL_ERR_SCHEME, NULL, -1},
    {"wss://h/", URL_HTTP, URL_ERR_SCHEME, NULL, -1},
    {"https://h/", URL_WS, URL_ERR_SCHEME, NULL, -1},
    /* libcurl would read a host after a third slash: "https:///path" has none. */
    {"https:///path", URL_HTTP, URL_ERR_NO_HOST, NULL, -1},
    {"https://", URL_HTTP, URL_ERR_NO_HOST, NULL, -1},
    {"https://:443/", URL_HTTP, URL_ERR_NO_HOST, NULL, -1},
    {"https://u:p@/", URL_HTTP, URL_ERR_NO_HOST, NULL, -1},
    {"https://?x", URL_HTTP, URL_ERR_NO_HOST, NULL, -1},
    /* Ports. */
    {"https://h:0/", URL_HTTP, URL_ERR_PORT, NULL, -1},
    {"https://h:65536/", URL_HTTP, URL_ERR_PORT, NULL, -1},
    {"https://h:99999/", URL_HTTP, URL_ERR_PORT, NULL, -1},
    {"https://h:-1/", URL_HTTP, URL_ERR_PORT, NULL, -1},
    {"https://h:+80/", URL_HTTP, URL_ERR_PORT, NULL, -1},
    {"https://h:80:90/", URL_HTTP, URL_ERR_PORT, NULL, -1},
    {"https://h:x/", URL_HTTP, URL_ERR_PORT, NULL, -1},
    {"https://[::1]x/", URL_HTTP, URL_ERR_PORT, NULL, -1},
    /* Whitespace and control bytes anywhere. */
    {"https://h/a b", URL_HTTP, URL_ERR_SPACE, NULL, -1},
    {" https://h/", URL_HTTP, URL_ERR_SPACE, NULL, -1},
    {"https://h/\r\nX-Injected: 1", URL_HTTP, URL_ERR_SPACE, NULL, -1},
    {"https://h\t/", URL_HTTP, URL_ERR_SPACE, NULL, -1},
    {"https://h/\x7f", URL_HTTP, URL_ERR_SPACE, NULL, -1},
};

static void test_parse_cases(void)
{
    for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const struct parse_case *c = &parse_cases[i];
        struct url u;
        int failures = test_failures;

        CHECK_INT(url_parse(c->text, c->schemes, &u), c->error);
        if (c->error == URL_OK) {
            if (c->host)
                CHECK_STR(u.host, c->host);
            if (c->port >= 0)
                CHECK_INT(u.port, c->port);
            CHECK(u.path && u.path[0] == '/');
        } else {
            CHECK(!u.scheme && !u.host && !u.path); /* zeroed on failure */
        }
        url_fini(&u);
        if (test_failures != failures)
            fprintf(stderr, "  case %zu: \"%s\"\n", i, c->text);
    }
}

static void test_parse_parts(void)
{
    struct url u;

    CHECK_INT(url_parse("HTTPS://YT.Example.COM/youtrack/", URL_HTTP, &u), URL_OK);
    CHECK_STR(u.scheme, "https");
    CHECK_INT(u.tls, 1);
    CHECK_STR(u.path, "/youtrack/");
    CHECK(u.query == NULL && u.userinfo == NULL && !u.fragment);
    url_fini(&u);
    CHECK(u.host == NULL);
    url_fini(&u); /* twice, and on a zeroed url: fine */

    CHECK_INT(url_parse("wss://wss-primary.slack.com/link/?ticket=x&app_id=y", URL_WS, &u), URL_OK);
    CHECK_INT(u.tls, 1);
    CHECK_STR(u.path, "/link/");
    CHECK_STR(u.query, "ticket=x&app_id=y");
    url_fini(&u);

    /* A bare '?' is a query, an empty '#' is still a fragment (the text keeps it). */
    CHECK_INT(url_parse("http://h/x?", URL_HTTP, &u), URL_OK);
    CHECK_STR(u.query, "");
    CHECK_INT(u.tls, 0);
    url_fini(&u);
    CHECK_INT(url_parse("https://h/x#", URL_HTTP, &u), URL_OK);
    CHECK_INT(u.fragment, 1);
    url_fini(&u);

    /* Dot segments are resolved as libcurl sends them; percent-encoding is kept. */
    CHECK_INT(url_parse("https://h/a/../b/%2F", URL_HTTP, &u), URL_OK);
    CHECK_STR(u.path, "/b/%2F");
    url_fini(&u);
}

/* The userinfo is given back as written, for redaction; an '@' alone is still userinfo. */
static void test_parse_userinfo(void)
{
    static const char *const cases[][2] = {
        {"https://bot:hunter2@yt.example.com/", "bot:hunter2"},
        {"https://bot@h/", "bot"},
        {"https://@h/", ""},
        {"https://:p%40ss@h/", ":p%40ss"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct url u;
        CHECK_INT(url_parse(cases[i][0], URL_HTTP, &u), URL_OK);
        CHECK_STR(u.userinfo, cases[i][1]);
        url_fini(&u);
    }
}

/* NULL, and text longer than libcurl takes (8 MB); long text within the limit is fine. */
static void test_parse_sizes(void)
{
    static char long_url[9 * 1024 * 1024];
    struct url u;

    CHECK_INT(url_parse(NULL, URL_HTTP, &u), URL_ERR_SYNTAX);
    memcpy(long_url, "https://h/", 10);
    memset(long_url + 10, 'a', sizeof(long_url) - 11);
    CHECK_INT(url_parse(long_url, URL_HTTP, &u), URL_ERR_SYNTAX);
    CHECK(u.scheme == NULL && u.host == NULL);
    long_url[100000] = '\0';
    CHECK_INT(url_parse(long_url, URL_HTTP, &u), URL_OK);
    CHECK_INT(strlen(u.path), 100000 - 9);
    url_fini(&u);
}

static void test_same_origin(void)
{
    CHECK_INT(url_same_origin("https://yt.example.com/a", "https://yt.example.com"), 1);
    /* Default ports, host case, an address's spelling: the same origin to curl. */
    CHECK_INT(url_same_origin("https://yt.example.com:443/api/x", "https://yt.example.com"), 1);
    CHECK_INT(url_same_origin("http://YT.example.COM/", "HTTP://yt.example.com:80"), 1);
    CHECK_INT(url_same_origin("http://127.1:8080/x", "http://127.0.0.1:8080"), 1);
    CHECK_INT(url_same_origin("http://[0:0::1]:8080/x", "http://[::1]:8080"), 1);
    CHECK_INT(url_same_origin("http://[::FFFF:7f00:1]/", "http://[::ffff:127.0.0.1]/"), 1);
    /* Another scheme, host or port. */
    CHECK_INT(url_same_origin("http://yt.example.com/", "https://yt.example.com"), 0);
    CHECK_INT(url_same_origin("https://yt.example.com:8443/", "https://yt.example.com"), 0);
    CHECK_INT(url_same_origin("https://yt.example.com.evil.example/", "https://yt.example.com"), 0);
    CHECK_INT(url_same_origin("https://sso.example.com/login", "https://yt.example.com"), 0);
    CHECK_INT(url_same_origin("https://yt.example.com./", "https://yt.example.com"), 0);
    /* Userinfo: the host after the '@' counts, and a Location with credentials is never ours. */
    CHECK_INT(url_same_origin("https://yt.example.com@evil.example/", "https://yt.example.com"), 0);
    CHECK_INT(url_same_origin("https://u:p@yt.example.com/", "https://yt.example.com"), 0);
    /* Not http(s), relative, or not a URL. */
    CHECK_INT(url_same_origin("/api/admin/projects", "https://yt.example.com"), 0);
    CHECK_INT(url_same_origin("ftp://yt.example.com/", "ftp://yt.example.com"), 0);
    CHECK_INT(url_same_origin("", ""), 0);
    CHECK_INT(url_same_origin("https:///yt.example.com", "https://yt.example.com"), 0);
}

static void test_build(void)
{
    char *s;

    s = url_build("https://yt.example.com", "/api/admin/projects?fields=%s&%%24top=%s",
                  "id,shortName,leader(login)", "100");
    CHECK_STR(s, "https://yt.example.com/api/admin/projects?fields=id%2CshortName%2Cleader%28login"
                 "%29&%24top=100");
    free(s);
    /* Trailing slashes of the base are dropped; the template's are kept. */
    s = url_build("https://h/youtrack///", "/rest/admin/project/");
    CHECK_STR(s, "https://h/youtrack/rest/admin/project/");
    free(s);
    s = url_build("", "/projects/%s", "0-1");
    CHECK_STR(s, "/projects/0-1");
    free(s);
    s = url_build("https://h/", "%s", "");
    CHECK_STR(s, "https://h");
    free(s);
    /* An argument is one segment or one value, whatever it holds. */
    s = url_build("https://m.example", "/_matrix/client/v3/rooms/%s/send/m.room.message/%s",
                  "!room/../../x:m.example", "a?b#c&d=e %");
    CHECK_STR(s, "https://m.example/_matrix/client/v3/rooms/%21room%2F..%2F..%2Fx%3Am.example/send/"
                 "m.room.message/a%3Fb%23c%26d%3De%20%25");
    free(s);
    s = url_build("https://h", "/%s", "\xc3\xa9\x01-._~AZaz09");
    CHECK_STR(s, "https://h/%C3%A9%01-._~AZaz09");
    free(s);
    s = url_build("https://h", "/x/%s/y", "");
    CHECK_STR(s, "https://h/x//y");
    free(s);
}

/*
 * What the compiler refuses (url_build() has printf's format attribute) fails at run time too:
 * a NULL argument, a directive other than %s and %%.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#pragma GCC diagnostic ignored "-Wformat-security"
static void test_build_refused(void)
{
    const char *volatile none = NULL;
    const char *tmpl = "/%d";

    CHECK(url_build("https://h", "/%s", none) == NULL);
    CHECK(url_build("https://h", tmpl, 1) == NULL);
    tmpl = "/trailing%";
    CHECK(url_build("https://h", tmpl) == NULL);
}
#pragma GCC diagnostic pop

static void test_embed(void)
{
    char *s = NULL;

    CHECK_INT(url_embed("https://yt.example.com/a|b<c>\"d' e&f\\^`{}", 1000, &s), 0);
    CHECK_STR(s, "https://yt.example.com/a%7Cb%3Cc%3E%22d%27%20e&f%5C%5E%60%7B%7D");
    CHECK_INT(url_embeddable(s, strlen(s)), 1);
    free(s);
    /* Control bytes, DEL and non-ASCII bytes; the scheme's case is kept. */
    CHECK_INT(url_embed("HTTP://h/\x01\x7f\xc3\xa9", 1000, &s), 0);
    CHECK_STR(s, "HTTP://h/%01%7F%C3%A9");
    free(s);
    /* Only http(s), and something after the "//". */
    CHECK_INT(url_embed("javascript:alert(1)", 1000, &s), 0);
    CHECK(s == NULL);
    CHECK_INT(url_embed("data:text/html,x", 1000, &s), 0);
    CHECK(s == NULL);
    CHECK_INT(url_embed("https://", 1000, &s), 0);
    CHECK(s == NULL);
    CHECK_INT(url_embed("ftp://h/", 1000, &s), 0);
    CHECK(s == NULL);
    CHECK_INT(url_embed(NULL, 1000, &s), 0);
    CHECK(s == NULL);
    /* The limit counts the encoded bytes. */
    CHECK_INT(url_embed("https://h/ab", 12, &s), 0);
    CHECK_STR(s, "https://h/ab");
    free(s);
    CHECK_INT(url_embed("https://h/a ", 12, &s), 0);
    CHECK(s == NULL);

    CHECK_INT(url_embeddable("https://a.example/", 18), 1);
    CHECK_INT(url_embeddable("https://a.example/<x>", 21), 0);
    CHECK_INT(url_embeddable("https://a.example/<x>", 18), 1); /* only the n bytes count */
    CHECK_INT(url_embeddable("javascript:alert(1)", 19), 0);
    CHECK_INT(url_embeddable("http://", 7), 0);
    CHECK_INT(url_embeddable("https://a.example/", 5), 0);

    /* Every byte: kept exactly when it is printable ASCII and none of | < > " ' \\ ^ ` { }. */
    for (int c = 0; c < 256; c++) {
        char url[16] = "https://h/";
        url[10] = (char)c;
        int keep = c > 0x20 && c < 0x7f && !strchr("|<>\"'\\^`{}", c);
        CHECK_INT(url_embeddable(url, 11), keep);
        if (c == 0)
            continue;
        CHECK_INT(url_embed(url, 1000, &s), 0);
        CHECK_INT(strlen(s), keep ? 11 : 13);
        free(s);
    }
}

/* url_put_escaped() writes what libcurl's encoder writes, with or without its shortcut. */
static void test_escaped(void)
{
    static const char *const args[] = {"0-1", "", "~._-AZaz09", "a b", "\xc3\xa9/|%", "x?y&z=1#f"};
    for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
        struct strbuf b = {0};
        char *want = curl_easy_escape(NULL, args[i], (int)strlen(args[i]));
        url_put_escaped(&b, args[i]);
        CHECK(!b.oom && want && strcmp(b.p ? b.p : "", want) == 0);
        curl_free(want);
        strbuf_fini(&b);
    }
    struct strbuf b = {0};
    url_put_escaped(&b, NULL);
    CHECK(b.oom);
    strbuf_fini(&b);
}

static void test_strerror(void)
{
    CHECK_STR(url_strerror(URL_ERR_PORT), "invalid port");
    CHECK_STR(url_strerror(URL_ERR_NO_HOST), "has no host");
    for (int e = URL_OK; e <= URL_ERR_SYNTAX + 1; e++)
        CHECK(url_strerror((enum url_error)e) != NULL);
}

int main(void)
{
    RUN(test_loopback_by_address);
    RUN(test_names);
    RUN(test_not_loopback);
    RUN(test_parse_cases);
    RUN(test_parse_parts);
    RUN(test_parse_userinfo);
    RUN(test_parse_sizes);
    RUN(test_same_origin);
    RUN(test_build);
    RUN(test_build_refused);
    RUN(test_embed);
    RUN(test_escaped);
    RUN(test_strerror);
    return test_done();
}
