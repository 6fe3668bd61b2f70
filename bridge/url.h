/*
 * URLs: the one module that decides what a URL's parts mean (libcurl's URL API), which URLs
 * may go out as plain http:// or ws:// without allow_insecure (loopback), how request URLs are
 * built from a configured base, and how a URL is made safe to embed in a chat link. The only
 * file that calls curl_url*() or curl_easy_escape(). No I/O.
 */
#ifndef YTB_URL_H
#define YTB_URL_H

#include <stddef.h>

struct strbuf;

/* The schemes url_parse() accepts, a set; URL_ANY_SCHEME accepts every scheme. */
#define URL_HTTP       0x1u /* http://, https:// */
#define URL_WS         0x2u /* ws://, wss:// (libwebsockets connects; libcurl only parses) */
#define URL_ANY_SCHEME 0u

enum url_error {
    URL_OK = 0,
    URL_ERR_NOMEM,
    URL_ERR_SPACE,   /* whitespace or a control byte anywhere */
    URL_ERR_SCHEME,  /* not "scheme://...", or a scheme not asked for */
    URL_ERR_NO_HOST, /* nothing, or a '/', after "scheme://" */
    URL_ERR_HOST,    /* a host name with a byte DNS names do not have */
    URL_ERR_IPV6,    /* brackets that hold no IPv6 address */
    URL_ERR_PORT,    /* a port that is not a number from 1 to 65535 */
    URL_ERR_SYNTAX,  /* anything else libcurl refuses (over 8 MB, say) */
};

/* A parsed URL. Every string is owned by it (url_fini()). */
struct url {
    char *scheme;   /* lower case */
    char *userinfo; /* "user[:password]" as written, or NULL: none ("https://@h" gives "") */
    char *host;     /* what libcurl connects to: percent-decoded, a numeric IPv4 address in
                       dotted quads ("127.1" -> "127.0.0.1"), IPv6 in brackets without the zone
                       id ("[::1]"); the case as written */
    int port;       /* the one given, else the scheme's default (0: unknown scheme) */
    char *path;     /* "/" at least; as written (percent-encoding kept), dot segments resolved */
    char *query;    /* after the '?', or NULL when there is no '?' ("" for a bare '?') */
    int fragment;   /* there is a '#', even with nothing after it */
    int tls;        /* https or wss */
};

/*
 * Parses text as an absolute URL of one of the schemes asked for, the way libcurl reads it,
 * with three rules of ours on top: the scheme is followed by exactly "//" (libcurl also reads
 * "https:/h" and "https:///h" as a host h), a host name has only the bytes DNS names have
 * (A-Z a-z 0-9 - . _ ~ once decoded; a non-ASCII name must be written as its xn-- form), and
 * port 0 is refused. Returns URL_OK with *out filled (url_fini() it), or the first problem
 * found with *out zeroed.
 */
enum url_error url_parse(const char *text, unsigned schemes, struct url *out);

/* Frees u's strings and zeroes it; a zeroed url is fine. */
void url_fini(struct url *u);

/*
 * What e means, worded to follow the name of what was checked: "has no host", "invalid port",
 * ... (static text).
 */
const char *url_strerror(enum url_error e);

/*
 * 1 when u's host is loopback, else 0: an address in 127.0.0.0/8 (in any form libcurl
 * normalises, "127.1" included), ::1, an IPv4-mapped ::ffff:127.x.y.z, or the name "localhost"
 * (any case, no trailing dot). Decided by address, never by a prefix of the text:
 * "127.example.net" is a name, not loopback.
 */
int url_is_loopback(const struct url *u);

/*
 * 1 when a and b are http(s) URLs of the same origin (RFC 6454: scheme, host and port, the
 * scheme's default port filled in, the host's case and spelling of an address ignored) and
 * neither carries userinfo; else 0, also when either does not parse.
 */
int url_same_origin(const char *a, const char *b);

/*
 * A request URL: base without its trailing '/'s, then tmpl, in which each "%s" is the next
 * argument percent-encoded (every byte but RFC 3986's unreserved A-Z a-z 0-9 - . _ ~), so one
 * argument is one path segment or one query value whatever it holds, and "%%" is a '%';
 * everything else is copied as it is. base is not parsed again: it is a configured URL that
 * url_parse() checked (without query or fragment). Returns a new string (caller frees), or
 * NULL on ENOMEM, a NULL argument or a directive other than %s and %%.
 */
char *url_build(const char *base, const char *tmpl, ...) __attribute__((format(printf, 2, 3)));

/*
 * Appends s percent-encoded as url_build() encodes a "%s" argument; a NULL s, like ENOMEM, fails
 * b (b->oom).
 */
void url_put_escaped(struct strbuf *b, const char *s);

/*
 * url made safe to embed in a Slack link element, Slack's <url|text> and an HTML attribute:
 * bytes outside printable ASCII and | < > " ' \ ^ ` { } percent-encoded, so it can neither end
 * the markup it sits in nor carry a control byte. *out (caller frees) is NULL when url is NULL,
 * not an http(s) URL, or longer than max bytes once encoded. Returns 0, or -ENOMEM.
 *
 * The http(s) test is a look at the scheme, not a parse: it is asked for every project link of
 * a chat answer, and those are built by url_build() on a base that url_parse() checked.
 */
int url_embed(const char *url, size_t max, char **out);

/* 1 when url[0..n) is an http(s) URL with no byte that url_embed() would have encoded. */
int url_embeddable(const char *url, size_t n);

#endif
