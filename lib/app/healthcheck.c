/* healthcheck: see healthcheck_internal.h. The socket is non-blocking only so that one poll() deadline can bound
 * connect, send and read together; the process does nothing else while it waits. */
#include "healthcheck_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEALTHCHECK_PATH "/healthz"
/* /healthz answers about 150 bytes; anything whose head does not fit here is not apiary. */
#define HEALTHCHECK_ANSWER_MAX 4096
#define HEALTHCHECK_WHY_MAX 256

/* What the probe is talking to, for messages and the Host header. */
typedef struct healthcheck_target {
    char host[256];    /* the address dialled: the listen host with wildcards mapped to loopback */
    char display[300]; /* "127.0.0.1:8080", "[::1]:8080" */
    unsigned port;
} healthcheck_target;

/* An answer being read; `head_len` is set once the blank line after the headers is in. */
typedef struct healthcheck_answer {
    char buf[HEALTHCHECK_ANSWER_MAX + 1];
    size_t len;
    size_t head_len;       /* bytes up to and including CRLFCRLF, 0 while incomplete */
    long long body_len;    /* Content-Length, or -1 when absent (then the body ends at EOF) */
    bool eof;
} healthcheck_answer;

static long long healthcheck_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for `events` until the deadline. Returns 1 ready, 0 deadline passed, -1 poll failed (errno). */
static int healthcheck_wait(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - healthcheck_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, (int)left);
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

/* A server bound to a wildcard address is reachable on loopback, and the probe runs on the same host
 * (or in the same container), so loopback is what it dials. Other spellings of the wildcard
 * ("0:0::0") are caught by parsing rather than comparing strings. */
static void healthcheck_target_init(healthcheck_target *t, const char *listen_host, unsigned port)
{
    struct in_addr v4;
    struct in6_addr v6;
    const char *host = listen_host;
    if (inet_pton(AF_INET, listen_host, &v4) == 1 && v4.s_addr == htonl(INADDR_ANY))
        host = "127.0.0.1";
    else if (inet_pton(AF_INET6, listen_host, &v6) == 1 && IN6_IS_ADDR_UNSPECIFIED(&v6))
        host = "::1";
    snprintf(t->host, sizeof(t->host), "%s", host);
    t->port = port;
    int v6_literal = strchr(host, ':') != NULL;
    snprintf(t->display, sizeof(t->display), "%s%s%s:%u", v6_literal ? "[" : "", host, v6_literal ? "]" : "",
             port);
}

/* Connects to one resolved address before the deadline. Returns the socket, or -1 with the reason. */
static int healthcheck_connect(const struct addrinfo *ai, long long deadline, int timeout_ms,
                               char why[HEALTHCHECK_WHY_MAX])
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, HEALTHCHECK_WHY_MAX, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return fd;
    if (errno != EINPROGRESS) {
        snprintf(why, HEALTHCHECK_WHY_MAX, "cannot connect: %s", strerror(errno));
        close(fd);
        return -1;
    }
    int ready = healthcheck_wait(fd, POLLOUT, deadline);
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (ready == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
        return fd;
    if (ready == 0)
        snprintf(why, HEALTHCHECK_WHY_MAX, "no connection within %d ms", timeout_ms);
    else
        snprintf(why, HEALTHCHECK_WHY_MAX, "cannot connect: %s", strerror(ready == 1 ? soerr : errno));
    close(fd);
    return -1;
}

static int healthcheck_send(int fd, const char *data, size_t len, long long deadline, int timeout_ms,
                            char why[HEALTHCHECK_WHY_MAX])
{
    while (len > 0) {
        /* MSG_NOSIGNAL: a peer that already closed must give EPIPE here, not kill the probe. */
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            snprintf(why, HEALTHCHECK_WHY_MAX, "cannot send the request: %s", strerror(errno));
            return -1;
        }
        if (healthcheck_wait(fd, POLLOUT, deadline) != 1) {
            snprintf(why, HEALTHCHECK_WHY_MAX, "cannot send the request within %d ms", timeout_ms);
            return -1;
        }
    }
    return 0;
}

/* Reads the Content-Length header from a complete head; -1 when absent, -2 when malformed. */
static long long healthcheck_content_length(const char *head, size_t head_len)
{
    static const char name[] = "content-length:";
    long long found = -1;
    const char *end = head + head_len;
    for (const char *line = memchr(head, '\n', head_len); line && line + 1 < end;
         line = memchr(line + 1, '\n', (size_t)(end - line - 1))) {
        const char *p = line + 1;
        if ((size_t)(end - p) <= sizeof(name) - 1 || strncasecmp(p, name, sizeof(name) - 1) != 0)
            continue;
        p += sizeof(name) - 1;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        long long n = 0;
        const char *digits = p;
        while (p < end && *p >= '0' && *p <= '9' && n <= HEALTHCHECK_ANSWER_MAX)
            n = n * 10 + (*p++ - '0');
        if (p == digits || (found >= 0 && found != n))
            return -2;
        found = n;
    }
    return found;
}

/* Whether the answer is complete: the whole head, then Content-Length bytes or everything up to EOF
 * (the request asked for Connection: close). */
static bool healthcheck_answer_done(healthcheck_answer *a)
{
    if (a->head_len == 0) {
        /* memmem, not strstr: a stray NUL byte in the answer must not hide what follows it. */
        const char *blank = memmem(a->buf, a->len, "\r\n\r\n", 4);
        if (!blank)
            return false;
        a->head_len = (size_t)(blank - a->buf) + 4;
        a->body_len = healthcheck_content_length(a->buf, a->head_len);
    }
    if (a->body_len == -2)
        return false; /* healthcheck_read reports it */
    if (a->body_len >= 0) {
        /* A body too large for the buffer is not needed: the status line is already in. */
        size_t want = a->head_len + (size_t)a->body_len;
        return a->len >= (want < HEALTHCHECK_ANSWER_MAX ? want : HEALTHCHECK_ANSWER_MAX);
    }
    return a->eof || a->len == HEALTHCHECK_ANSWER_MAX;
}

/* Reads until the answer is complete. Returns 0, or -1 with the reason. */
static int healthcheck_read(int fd, healthcheck_answer *a, long long deadline, int timeout_ms,
                            char why[HEALTHCHECK_WHY_MAX])
{
    static const char prefix[] = "HTTP/";
    for (;;) {
        if (healthcheck_answer_done(a))
            return 0;
        if (a->body_len == -2) {
            snprintf(why, HEALTHCHECK_WHY_MAX, "the answer has a malformed Content-Length");
            return -1;
        }
        if (a->eof || a->len == HEALTHCHECK_ANSWER_MAX) {
            snprintf(why, HEALTHCHECK_WHY_MAX, "%s",
                     a->len == 0 ? "the connection was closed without an answer"
                     : a->eof    ? "the connection was closed in the middle of the answer"
                                 : "the answer's head is larger than 4096 bytes");
            return -1;
        }
        int ready = healthcheck_wait(fd, POLLIN, deadline);
        if (ready < 0) {
            snprintf(why, HEALTHCHECK_WHY_MAX, "poll: %s", strerror(errno));
            return -1;
        }
        if (ready == 0) {
            snprintf(why, HEALTHCHECK_WHY_MAX, "%s within %d ms", a->len ? "incomplete answer" : "no answer",
                     timeout_ms);
            return -1;
        }
        ssize_t n = recv(fd, a->buf + a->len, HEALTHCHECK_ANSWER_MAX - a->len, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n < 0) {
            snprintf(why, HEALTHCHECK_WHY_MAX, "cannot read the answer: %s", strerror(errno));
            return -1;
        }
        a->eof = n == 0;
        a->len += (size_t)n;
        a->buf[a->len] = '\0';
        /* Something that is not HTTP (another protocol on the port) fails at once, not at the timeout. */
        size_t cmp = a->len < sizeof(prefix) - 1 ? a->len : sizeof(prefix) - 1;
        if (memcmp(a->buf, prefix, cmp) != 0) {
            snprintf(why, HEALTHCHECK_WHY_MAX, "the answer is not HTTP");
            return -1;
        }
    }
}

/* Parses "HTTP/1.1 200 OK" into the status and the reason (up to the line end). Returns the status, or
 * -1 when the status line is malformed. */
static int healthcheck_status(const healthcheck_answer *a, const char **reason, int *reason_len)
{
    const char *s = a->buf;
    if (a->head_len < 13 || strncmp(s, "HTTP/", 5) != 0 || s[5] < '0' || s[5] > '9' || s[6] != '.' ||
        s[7] < '0' || s[7] > '9' || s[8] != ' ')
        return -1;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        status = status * 10 + (s[i] - '0');
    }
    if (s[12] != ' ' && s[12] != '\r')
        return -1;
    *reason = s[12] == ' ' ? s + 13 : s + 12;
    *reason_len = (int)strcspn(*reason, "\r\n");
    return status;
}

/* Resolves, connects (trying each address in turn), sends the request and reads the answer into *a. */
static int healthcheck_exchange(const healthcheck_target *t, int timeout_ms, healthcheck_answer *a,
                                char why[HEALTHCHECK_WHY_MAX])
{
    long long deadline = healthcheck_now_ms() + timeout_ms;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port_str[8];
    snprintf(port_str, sizeof(port_str), "%u", t->port);
    /* A host name costs a resolver round trip outside the deadline; listen addresses are nearly
     * always literals, which getaddrinfo answers without asking anyone. */
    int rc = getaddrinfo(t->host, port_str, &hints, &res);
    if (rc != 0) {
        snprintf(why, HEALTHCHECK_WHY_MAX, "cannot resolve the host: %s", gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (const struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = healthcheck_connect(ai, deadline, timeout_ms, why);
    freeaddrinfo(res);
    if (fd < 0)
        return -1;

    /* The Host header carries no IPv6 zone: "%eth0" is meaningful only to this machine's routing. */
    char request[512];
    int host_len = (int)strcspn(t->host, "%");
    int v6 = strchr(t->host, ':') != NULL;
    int len = snprintf(request, sizeof(request),
                       "GET " HEALTHCHECK_PATH " HTTP/1.1\r\nHost: %s%.*s%s:%u\r\n"
                       "User-Agent: apiary-healthcheck/" APIARY_VERSION "\r\nConnection: close\r\n\r\n",
                       v6 ? "[" : "", host_len, t->host, v6 ? "]" : "", t->port);
    rc = healthcheck_send(fd, request, (size_t)len, deadline, timeout_ms, why);
    if (rc == 0)
        rc = healthcheck_read(fd, a, deadline, timeout_ms, why);
    close(fd);
    return rc;
}

int healthcheck_probe(const char *host, unsigned port, int timeout_ms, FILE *out, FILE *err)
{
    healthcheck_target t;
    healthcheck_target_init(&t, host, port);
    if (port == 0) {
        fprintf(err, "apiary: healthcheck: the listen port is 0 (chosen by the kernel at start); "
                     "give the real one with --listen HOST:PORT or APIARY_LISTEN\n");
        return 1;
    }
    healthcheck_answer *a = calloc(1, sizeof(*a));
    if (!a) {
        fprintf(err, "apiary: healthcheck: out of memory\n");
        return 1;
    }
    char why[HEALTHCHECK_WHY_MAX] = "";
    int result = 1;
    if (healthcheck_exchange(&t, timeout_ms, a, why) != 0) {
        fprintf(err, "apiary: healthcheck: GET " HEALTHCHECK_PATH " on %s: %s\n", t.display, why);
    } else {
        const char *reason = "";
        int reason_len = 0;
        int status = healthcheck_status(a, &reason, &reason_len);
        if (status == 200) {
            fprintf(out, "apiary: healthcheck: GET " HEALTHCHECK_PATH " on %s answered 200\n", t.display);
            result = 0;
        } else if (status < 0) {
            fprintf(err, "apiary: healthcheck: GET " HEALTHCHECK_PATH " on %s: malformed status line\n", t.display);
        } else {
            fprintf(err, "apiary: healthcheck: GET " HEALTHCHECK_PATH " on %s answered %d %.*s\n", t.display, status,
                    reason_len, reason);
        }
    }
    free(a);
    return result;
}

int healthcheck_run(const apiary_config *cfg)
{
    return healthcheck_probe(cfg->listen_host, cfg->listen_port, HEALTHCHECK_TIMEOUT_MS, stdout, stderr);
}
