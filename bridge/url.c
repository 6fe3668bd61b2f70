/*
 * URL checks on libcurl's URL API (curl_url), so a URL means here what it means to the
 * transfer that uses it: the host is what curl would connect to, after userinfo, IPv6 brackets
 * and numeric IPv4 forms ("127.1", "0x7f.0.0.1") are resolved by the same parser.
 *
 * The loopback rule: plain http:// and ws:// are allowed without allow_insecure only when the
 * bytes cannot leave the machine, which an address decides and a name's spelling does not.
 * "localhost" is the one name accepted: libcurl (7.78 and later) answers it with 127.0.0.1 / ::1
 * itself without asking DNS, libwebsockets asks getaddrinfo(), whose /etc/hosts maps it to
 * loopback, and RFC 6761 section 6.3 reserves it for loopback. "localhost." (fully qualified) is
 * not accepted: libcurl hands it to the resolver, which may ask DNS.
 */
#include "url.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

static int addr_is_loopback(const char *host)
{
    char buf[INET6_ADDRSTRLEN + 2];
    struct in_addr a4;
    struct in6_addr a6;
    size_t n = strlen(host);

    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    /* curl gives IPv6 hosts in brackets, without the zone id ("[::1]"). */
    if (n < 3 || n >= sizeof(buf) + 2 || host[0] != '[' || host[n - 1] != ']')
        return 0;
    memcpy(buf, host + 1, n - 2);
    buf[n - 2] = '\0';
    if (inet_pton(AF_INET6, buf, &a6) != 1)
        return 0;
    if (IN6_IS_ADDR_LOOPBACK(&a6))
        return 1;
    /* ::ffff:127.0.0.1 on a dual-stack socket is a connection to 127.0.0.1. */
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

int url_host_is_loopback(const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL;
    int loopback = 0;

    if (!u)
        return 0;
    /* ws:// and wss:// are not schemes every libcurl build knows. */
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        goto out;
    loopback = strcasecmp(host, "localhost") == 0 || addr_is_loopback(host);
out:
    curl_free(host);
    curl_url_cleanup(u);
    return loopback;
}
