/*
 * Fuzz harness: the URL module on any bytes, as Slack's Socket Mode URL, a response_url or a
 * redirect's Location would bring them. Checks what callers rely on: a parsed URL has a host
 * and a path, a known scheme's port, and no userinfo in the host; url_embed() output has no
 * byte that could end a link; url_build() keeps any argument inside one segment.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_parsed(const struct url *u)
{
    if (!u->scheme || !u->host || !u->host[0] || !u->path || u->path[0] != '/')
        abort();
    if (u->port < 0 || u->port > 65535 || strchr(u->host, '@'))
        abort();
    if ((!strcmp(u->scheme, "https") || !strcmp(u->scheme, "wss")) != u->tls)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned sets[] = {URL_HTTP, URL_WS, URL_HTTP | URL_WS, URL_ANY_SCHEME};
    char *text = malloc(size + 1), *s;
    struct url u;

    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
        if (url_parse(text, sets[i], &u) == URL_OK) {
            check_parsed(&u);
            if (sets[i] != URL_ANY_SCHEME && u.port == 0)
                abort();
            (void)url_is_loopback(&u);
        }
        url_fini(&u);
    }
    /* Same origin is symmetric, and a URL is its own origin whenever it is an http(s) one. */
    if (url_same_origin(text, "https://yt.example.com") !=
        url_same_origin("https://yt.example.com", text))
        abort();
    if (url_parse(text, URL_HTTP, &u) == URL_OK && !u.userinfo && !url_same_origin(text, text))
        abort();
    url_fini(&u);
    if (url_embed(text, 4096, &s) == 0 && s) {
        if (!url_embeddable(s, strlen(s)))
            abort();
        free(s);
    }
    s = url_build("https://h/", "/a/%s/b", text);
    if (s) {
        const char *seg = s + strlen("https://h/a/");
        if (strncmp(s, "https://h/a/", 12) != 0 || strcspn(seg, "/?#") != strlen(seg) - 2)
            abort();
        free(s);
    }
    free(text);
    return 0;
}
