/*
 * URLs: the one place that decides what a URL's parts mean (libcurl's URL API). For now it owns
 * the loopback rule only: which URLs may go out as plain http:// or ws:// without
 * allow_insecure.
 */
#ifndef YTB_URL_H
#define YTB_URL_H

/*
 * 1 when url (absolute, any scheme) names a loopback host, else 0, also when it does not parse:
 * an address in 127.0.0.0/8 (in any form libcurl normalises, "127.1" included), ::1, an
 * IPv4-mapped ::ffff:127.x.y.z, or the name "localhost" (any case, no trailing dot). Decided
 * by address, never by a prefix of the text: "127.example.net" is a name, not loopback.
 */
int url_host_is_loopback(const char *url);

#endif
