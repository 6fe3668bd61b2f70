/*
 * URLs on libcurl's URL API (curl_url), so a URL means here what it means to the transfer that
 * uses it: the host is what curl would connect to, after userinfo, IPv6 brackets, percent-
 * encoding and numeric IPv4 forms ("127.1", "0x7f.0.0.1") are resolved by the same parser.
 * libcurl is given CURLU_NON_SUPPORT_SCHEME always: Debian 12's libcurl 7.88 is built without
 * websockets, so it knows neither ws:// nor wss:// (nor their default ports, which are ours).
 *
 * The loopback rule: plain http:// and ws:// are allowed without allow_insecure only when the
 * bytes cannot leave the machine, which an address decides and a name's spelling does not.
 * "localhost" is the one name accepted: libcurl (7.78 and later) answers it with 127.0.0.1 / ::1
 * itself without asking DNS, libwebsockets asks getaddrinfo(), whose /etc/hosts maps it to
 * loopback, and RFC 6761 section 6.3 reserves it for loopback. "localhost." (fully qualified) is
 * not accepted: libcurl hands it to the resolver, which may ask DNS.
 *
 * Building is text: a request URL is a configured base (parsed once, when the configuration was
 * checked) followed by a path whose variable pieces are percent-encoded here, so a project id,
 * a room id or a transaction id can never add a segment, a query or a fragment.
 */
#include "url.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "strbuf.h"

static const struct {
    const char *name;
    unsigned set;
    int port, tls;
} schemes_known[] = {
    {"http", URL_HTTP, 80, 0},
    {"https", URL_HTTP, 443, 1},
    {"ws", URL_WS, 80, 0},
    {"wss", URL_WS, 443, 1},
};
#define N_KNOWN (sizeof(schemes_known) / sizeof(schemes_known[0]))

static enum url_error from_curl(CURLUcode rc)
{
    switch (rc) {
    case CURLUE_OK:
        return URL_OK;
    case CURLUE_OUT_OF_MEMORY:
        return URL_ERR_NOMEM;
    case CURLUE_BAD_SCHEME:
    case CURLUE_BAD_SLASHES:
        return URL_ERR_SCHEME;
    case CURLUE_NO_HOST:
        return URL_ERR_NO_HOST;
    case CURLUE_BAD_HOSTNAME:
        return URL_ERR_HOST;
    case CURLUE_BAD_IPV6:
        return URL_ERR_IPV6;
    case CURLUE_BAD_PORT_NUMBER:
        return URL_ERR_PORT;
    default:
        return URL_ERR_SYNTAX;
    }
}

/* A malloc'ed copy of u's part what in *out, NULL when u has none. URL_OK or URL_ERR_NOMEM. */
static enum url_error copy_part(CURLU *u, CURLUPart what, char **out)
{
    char *v = NULL;
    CURLUcode rc = curl_url_get(u, what, &v, 0);

    *out = NULL;
    if (rc == CURLUE_OUT_OF_MEMORY)
        return URL_ERR_NOMEM;
    if (rc != CURLUE_OK)
        return URL_OK;
    *out = strdup(v);
    curl_free(v);
    return *out ? URL_OK : URL_ERR_NOMEM;
}

static int host_name_ok(const char *h)
{
    for (; *h; h++) {
        if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9') ||
              *h == '-' || *h == '.' || *h == '_' || *h == '~'))
            return 0;
    }
    return 1;
}

/*
 * The scheme libcurl found at the start of text is followed by "//" and a non-'/', and is one
 * of those asked for; *known is its index in schemes_known (or the table's size).
 */
static enum url_error check_scheme(const char *text, const char *scheme, unsigned schemes,
                                   size_t *known)
{
    size_t n = strlen(scheme), k;

    if (strncasecmp(text, scheme, n) != 0 || strncmp(text + n, "://", 3) != 0)
        return URL_ERR_SCHEME;
    if (text[n + 3] == '/')
        return URL_ERR_NO_HOST;
    for (k = 0; k < N_KNOWN && strcmp(scheme, schemes_known[k].name) != 0; k++)
        ;
    *known = k;
    if (schemes != URL_ANY_SCHEME && (k == N_KNOWN || !(schemes_known[k].set & schemes)))
        return URL_ERR_SCHEME;
    return URL_OK;
}

/* "user[:password]" as libcurl split it, or NULL: no userinfo. */
static enum url_error copy_userinfo(CURLU *u, char **out)
{
    char *user = NULL, *password = NULL;
    enum url_error e = copy_part(u, CURLUPART_USER, &user);

    if (!e)
        e = copy_part(u, CURLUPART_PASSWORD, &password);
    *out = NULL;
    if (!e && user && password) {
        if (asprintf(out, "%s:%s", user, password) < 0) {
            *out = NULL;
            e = URL_ERR_NOMEM;
        }
    } else if (!e) {
        *out = user;
        user = NULL;
    }
    free(user);
    free(password);
    return e;
}

/* Everything after libcurl accepted the text: our rules, and the parts copied into out. */
static enum url_error take_parts(CURLU *u, const char *text, unsigned schemes, struct url *out)
{
    char *port = NULL;
    size_t k = N_KNOWN;
    enum url_error e;

    e = copy_part(u, CURLUPART_SCHEME, &out->scheme);
    if (!e && !out->scheme)
        e = URL_ERR_SCHEME;
    if (!e)
        e = check_scheme(text, out->scheme, schemes, &k);
    if (!e)
        e = copy_part(u, CURLUPART_HOST, &out->host);
    if (!e && (!out->host || !*out->host))
        e = URL_ERR_NO_HOST;
    /* libcurl checked a bracketed address; it lets a name have bytes no DNS name has. */
    if (!e && out->host[0] != '[' && !host_name_ok(out->host))
        e = URL_ERR_HOST;
    if (!e)
        e = copy_part(u, CURLUPART_PORT, &port);
    if (!e && port) {
        out->port = atoi(port); /* libcurl checked: digits, at most 65535 */
        if (out->port == 0)
            e = URL_ERR_PORT;
    } else if (!e && k < N_KNOWN) {
        out->port = schemes_known[k].port;
    }
    free(port);
    if (!e)
        e = copy_userinfo(u, &out->userinfo);
    if (!e)
        e = copy_part(u, CURLUPART_PATH, &out->path);
    if (!e && !out->path)
        out->path = strdup("/");
    if (!e && !out->path)
        e = URL_ERR_NOMEM;
    if (!e)
        e = copy_part(u, CURLUPART_QUERY, &out->query);
    out->tls = k < N_KNOWN && schemes_known[k].tls;
    out->fragment = strchr(text, '#') != NULL; /* libcurl forgets an empty one; the text keeps it */
    return e;
}

enum url_error url_parse(const char *text, unsigned schemes, struct url *out)
{
    struct url v = {0};
    enum url_error e;
    CURLU *u;

    memset(out, 0, sizeof(*out));
    if (!text)
        return URL_ERR_SYNTAX;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p <= 0x20 || *p == 0x7f)
            return URL_ERR_SPACE;
    }
    u = curl_url();
    if (!u)
        return URL_ERR_NOMEM;
    e = from_curl(curl_url_set(u, CURLUPART_URL, text, CURLU_NON_SUPPORT_SCHEME));
    if (!e)
        e = take_parts(u, text, schemes, &v);
    curl_url_cleanup(u);
    if (e) {
        url_fini(&v);
        return e;
    }
    *out = v;
    return URL_OK;
}

void url_fini(struct url *u)
{
    free(u->scheme);
    free(u->userinfo);
    free(u->host);
    free(u->path);
    free(u->query);
    memset(u, 0, sizeof(*u));
}

const char *url_strerror(enum url_error e)
{
    /* Worded to follow a setting's name: "youtrack.url: invalid port" (conf.c's diagnostics). */
    static const char *const text[] = {
        [URL_OK] = "is a valid URL",
        [URL_ERR_NOMEM] = "out of memory",
        [URL_ERR_SPACE] = "contains whitespace or control characters",
        [URL_ERR_SCHEME] = "has a scheme not accepted here",
        [URL_ERR_NO_HOST] = "has no host",
        [URL_ERR_HOST] = "invalid character in the host name",
        [URL_ERR_IPV6] = "invalid IPv6 address",
        [URL_ERR_PORT] = "invalid port",
        [URL_ERR_SYNTAX] = "is not a valid URL",
    };
    return (size_t)e < sizeof(text) / sizeof(text[0]) ? text[e] : "is not a valid URL";
}

/* "[...]" holding an IPv6 address into a6; 0, or -1 when host is not one. */
static int bracketed_v6(const char *host, struct in6_addr *a6)
{
    char buf[INET6_ADDRSTRLEN];
    size_t n = strlen(host);

    if (n < 3 || n - 2 >= sizeof(buf) || host[0] != '[' || host[n - 1] != ']')
        return -1;
    memcpy(buf, host + 1, n - 2);
    buf[n - 2] = '\0';
    return inet_pton(AF_INET6, buf, a6) == 1 ? 0 : -1;
}

int url_is_loopback(const struct url *u)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (!u->host)
        return 0;
    if (strcasecmp(u->host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, u->host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (bracketed_v6(u->host, &a6) != 0)
        return 0;
    if (IN6_IS_ADDR_LOOPBACK(&a6))
        return 1;
    /* ::ffff:127.0.0.1 on a dual-stack socket is a connection to 127.0.0.1. */
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

static int same_host(const char *a, const char *b)
{
    struct in6_addr a6, b6;

    /* libcurl spells an IPv6 address as written ("[::FFFF:7f00:1]"): compare the addresses. */
    if (bracketed_v6(a, &a6) == 0 && bracketed_v6(b, &b6) == 0)
        return memcmp(&a6, &b6, sizeof(a6)) == 0;
    return strcasecmp(a, b) == 0;
}

int url_same_origin(const char *a, const char *b)
{
    struct url ua, ub;
    int same = 0;

    if (url_parse(a, URL_HTTP, &ua) == URL_OK && url_parse(b, URL_HTTP, &ub) == URL_OK) {
        same = !ua.userinfo && !ub.userinfo && strcmp(ua.scheme, ub.scheme) == 0 &&
               same_host(ua.host, ub.host) && ua.port == ub.port;
        url_fini(&ub);
    }
    url_fini(&ua);
    return same;
}

char *url_build(const char *base, const char *tmpl, ...)
{
    struct strbuf b = {0};
    size_t n = strlen(base);
    const char *p, *arg;
    va_list ap;

    while (n > 0 && base[n - 1] == '/')
        n--;
    strbuf_putn(&b, base, n);
    va_start(ap, tmpl);
    for (p = tmpl; *p; p++) {
        if (*p != '%') {
            n = strcspn(p, "%");
            strbuf_putn(&b, p, n);
            p += n - 1;
            continue;
        }
        if (p[1] == '%') {
            strbuf_putn(&b, "%", 1);
            p++;
            continue;
        }
        arg = p[1] == 's' ? va_arg(ap, const char *) : NULL;
        url_put_escaped(&b, arg);
        if (b.oom)
            break;
        p++;
    }
    va_end(ap);
    return strbuf_take(&b);
}

static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

void url_put_escaped(struct strbuf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0, k = 0;
    char *esc;

    /* Most ids and names need no encoding: then libcurl's encoder would copy them as they are. */
    while (k < n && unreserved((unsigned char)s[k]))
        k++;
    if (s && k == n) {
        strbuf_putn(b, s, n);
        return;
    }
    esc = s && n <= INT_MAX ? curl_easy_escape(NULL, s, (int)n) : NULL;
    if (!esc) {
        b->oom = 1;
        return;
    }
    strbuf_puts(b, esc);
    curl_free(esc);
}

/* "http://" or "https://" and something after it: the scheme url_parse() would accept. */
static int is_http(const char *url, size_t n)
{
    return (n > 7 && strncasecmp(url, "http://", 7) == 0) ||
           (n > 8 && strncasecmp(url, "https://", 8) == 0);
}

/*
 * The bytes url_embed() keeps: printable ASCII but | < > " ' \ ^ ` { }, which could end a
 * <url|text>, an element or an attribute. A bitmap of the 128 ASCII bytes (bit c of word c / 64),
 * as it is asked for every byte of every link; test_url checks it against that list.
 */
static int embed_safe(unsigned char c)
{
    static const uint64_t keep[2] = {0xafffff7a00000000ull, 0x47fffffeafffffffull};
    return c < 128 && (keep[c >> 6] >> (c & 63)) & 1;
}

int url_embed(const char *url, size_t max, char **out)
{
    static const char hex[] = "0123456789ABCDEF";
    struct strbuf b = {0};

    *out = NULL;
    if (!url || !is_http(url, strlen(url)))
        return 0;
    for (const unsigned char *p = (const unsigned char *)url; *p;) {
        const unsigned char *q = p;
        while (*q && embed_safe(*q))
            q++;
        strbuf_putn(&b, (const char *)p, (size_t)(q - p));
        if (!*q)
            break;
        char enc[3] = {'%', hex[*q >> 4], hex[*q & 15]};
        strbuf_putn(&b, enc, 3);
        p = q + 1;
    }
    if (!b.oom && b.n > max) {
        strbuf_fini(&b);
        return 0;
    }
    *out = strbuf_take(&b); /* NULL after ENOMEM */
    return *out ? 0 : -ENOMEM;
}

int url_embeddable(const char *url, size_t n)
{
    if (!is_http(url, n))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!embed_safe((unsigned char)url[i]))
            return 0;
    }
    return 1;
}
