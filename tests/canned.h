/*
 * A canned HTTP server for unit tests (curl's test servers, cut down): a loopback listener on a
 * random port whose thread answers connection i with answers[i], whatever it asked, then
 * closes it. Connections are served one at a time, in the order they arrive.
 */
#ifndef YTB_TEST_CANNED_H
#define YTB_TEST_CANNED_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A loopback server in a thread: connection i gets answers[i] whatever it asked, then EOF. */
struct canned {
    int fd, port;
    char *answers[8];
    size_t n;
    pthread_t th;
};

static void canned_listen(struct canned *c)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);

    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(c->fd, 8) != 0 ||
        getsockname(c->fd, (struct sockaddr *)&a, &al) != 0) {
        perror("canned server");
        exit(1);
    }
    c->port = ntohs(a.sin_port);
}

/* Appends an answer; each "@PORT@" in text becomes the server's port (same-origin Locations). */
static void canned_add(struct canned *c, const char *text)
{
    char port[16], *s, *o;
    const char *hit;
    int pl = snprintf(port, sizeof(port), "%d", c->port);

    if (c->n >= sizeof(c->answers) / sizeof(c->answers[0]))
        exit(1);
    s = o = malloc(strlen(text) * 2 + 16);
    if (!s)
        exit(1);
    for (hit = strstr(text, "@PORT@"); hit; hit = strstr(text, "@PORT@")) {
        memcpy(o, text, (size_t)(hit - text));
        o += hit - text;
        memcpy(o, port, (size_t)pl);
        o += pl;
        text = hit + 6;
    }
    strcpy(o, text);
    c->answers[c->n++] = s;
}

/* Appends an answer with status line status, extra header lines (each ending \r\n) and body. */
static void canned_answer(struct canned *c, const char *status, const char *headers,
                          const char *body)
{
    char *text = NULL;
    if (asprintf(&text, "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                 status, headers, strlen(body), body) < 0)
        exit(1);
    canned_add(c, text);
    free(text);
}

static void *canned_run(void *arg)
{
    struct canned *c = arg;
    for (size_t i = 0; i < c->n; i++) {
        char req[8192];
        size_t got = 0;
        int fd = accept(c->fd, NULL, NULL);
        if (fd < 0)
            break; /* canned_stop() shut the listener down */
        while (got + 1 < sizeof(req)) {
            ssize_t k = read(fd, req + got, sizeof(req) - 1 - got);
            if (k <= 0)
                break;
            got += (size_t)k;
            req[got] = '\0';
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        size_t len = strlen(c->answers[i]), off = 0;
        while (off < len) {
            ssize_t k = write(fd, c->answers[i] + off, len - off);
            if (k <= 0)
                break;
            off += (size_t)k;
        }
        close(fd);
    }
    return NULL;
}

static void canned_start(struct canned *c)
{
    if (pthread_create(&c->th, NULL, canned_run, c) != 0)
        exit(1);
}

static void canned_stop(struct canned *c)
{
    shutdown(c->fd, SHUT_RDWR); /* wakes an accept() waiting for a connection that never came */
    pthread_join(c->th, NULL);
    close(c->fd);
    for (size_t i = 0; i < c->n; i++)
        free(c->answers[i]);
}

#endif
