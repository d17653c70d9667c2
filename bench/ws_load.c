/* ws_load: the WebSocket load generator of bench/ws.sh (no stock tool drives WebSocket echo the way
 * wrk drives HTTP). One thread, epoll, CONNS client connections upgraded to WebSocket on PATH, then:
 *   echo: each connection keeps DEPTH text messages of SIZE bytes in flight for SECONDS, checks every
 *         echo's length, and reports messages/s; with --pid, the server's CPU time per message;
 *   idle: holds the connections open and, with --pid, reports the server's RSS before and after
 *         opening them, and per connection.
 * Frames are masked with the zero key (legal, and free for the client), so the client's own cost stays
 * small next to the server's.
 *
 * Usage: ws_load echo|idle HOST PORT PATH CONNS SECONDS [SIZE] [DEPTH] [--pid PID]
 * Prints one line: RESULT key=value ... */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct client {
    int fd;
    int open;          /* 101 received */
    size_t rlen;
    char rbuf[8192];
} client;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static double cpu_s(int pid) /* utime + stime of every thread of the process */
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(buf, sizeof(buf), f)) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* fields after ")": state(3) ... utime is field 14, stime 15 */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue; /* small writes on loopback: rare, and spinning briefly is fine for a load tool */
        } else {
            perror("send");
            exit(2);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: ws_load echo|idle HOST PORT PATH CONNS SECONDS [SIZE] [DEPTH] [--pid PID]\n");
        return 2;
    }
    int echo = strcmp(argv[1], "echo") == 0;
    const char *host = argv[2], *path = argv[4];
    int port = atoi(argv[3]), conns = atoi(argv[5]);
    double seconds = atof(argv[6]);
    size_t size = 64;
    int depth = 1, pid = 0;
    int pos = 0;
    for (int i = 7; i < argc; i++) {
        if (strcmp(argv[i], "--pid") == 0 && i + 1 < argc)
            pid = atoi(argv[++i]);
        else if (pos++ == 0)
            size = (size_t)atol(argv[i]);
        else
            depth = atoi(argv[i]);
    }
    if (size > 125 || size == 0) {
        fprintf(stderr, "ws_load: SIZE is 1..125 (one short frame)\n");
        return 2;
    }
    char req[512];
    int req_len = snprintf(req, sizeof(req),
                           "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                           path, host, port);
    char frame[6 + 125];
    frame[0] = (char)0x81;
    frame[1] = (char)(0x80 | size);
    memset(frame + 2, 0, 4); /* the zero mask key */
    memset(frame + 6, 'x', size);
    size_t frame_len = 6 + size;
    char burst[64 * (6 + 125)];
    if (depth < 1 || depth > 64)
        depth = 1;
    for (int i = 0; i < depth; i++)
        memcpy(burst + (size_t)i * frame_len, frame, frame_len);

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int ep = epoll_create1(0);
    client *cs = calloc((size_t)conns, sizeof(*cs));
    long rss_before = pid ? rss_kib(pid) : -1;
    int opened = 0;
    struct epoll_event evs[256];
    double t0 = now_s();
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
            perror("socket");
            return 2;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            perror("connect");
            return 2;
        }
        fcntl(fd, F_SETFL, O_NONBLOCK);
        send_all(fd, req, (size_t)req_len);
        cs[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        /* Opens at the pace the server answers: at most 256 handshakes outstanding. */
        while (i + 1 - opened > 256 || (i == conns - 1 && opened < conns)) {
            int n = epoll_wait(ep, evs, 256, 5000);
            if (n <= 0) {
                fprintf(stderr, "ws_load: handshakes stalled at %d of %d\n", opened, conns);
                return 1;
            }
            for (int k = 0; k < n; k++) {
                client *c = &cs[evs[k].data.u32];
                ssize_t r = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);
                if (r <= 0)
                    continue;
                c->rlen += (size_t)r;
                char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
                if (!c->open && end) {
                    if (memcmp(c->rbuf, "HTTP/1.1 101", 12) != 0) {
                        fprintf(stderr, "ws_load: not upgraded: %.40s\n", c->rbuf);
                        return 1;
                    }
                    c->open = 1;
                    opened++;
                    size_t head = (size_t)(end + 4 - c->rbuf);
                    memmove(c->rbuf, c->rbuf + head, c->rlen - head);
                    c->rlen -= head;
                }
            }
        }
    }
    double t_open = now_s() - t0;
    if (!echo) {
        sleep(2); /* let the server settle (buffers given back, stacks idle) */
        long rss_after = pid ? rss_kib(pid) : -1;
        printf("RESULT mode=idle conns=%d open_s=%.2f rss_before_kib=%ld rss_after_kib=%ld per_conn_bytes=%.0f\n",
               conns, t_open, rss_before, rss_after,
               pid ? (double)(rss_after - rss_before) * 1024.0 / conns : -1.0);
        if (seconds > 2)
            sleep((unsigned)(seconds - 2));
        return 0;
    }
    for (int i = 0; i < conns; i++)
        send_all(cs[i].fd, burst, frame_len * (size_t)depth);
    double cpu0 = pid ? cpu_s(pid) : 0, start = now_s(), end_t = start + seconds;
    unsigned long long msgs = 0;
    while (now_s() < end_t) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            client *c = &cs[evs[k].data.u32];
            ssize_t r = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);
            if (r == 0) {
                fprintf(stderr, "ws_load: the server closed a connection\n");
                return 1;
            }
            if (r < 0)
                continue;
            c->rlen += (size_t)r;
            size_t p = 0;
            int got = 0;
            while (c->rlen - p >= 2) {
                size_t len = (unsigned char)c->rbuf[p + 1] & 0x7f;
                if (len != size || ((unsigned char)c->rbuf[p] & 0x0f) != 1) {
                    fprintf(stderr, "ws_load: unexpected frame (opcode %d, length %zu)\n", c->rbuf[p] & 0x0f, len);
                    return 1;
                }
                if (c->rlen - p < 2 + len)
                    break;
                p += 2 + len;
                got++;
            }
            memmove(c->rbuf, c->rbuf + p, c->rlen - p);
            c->rlen -= p;
            msgs += (unsigned long long)got;
            if (got)
                send_all(c->fd, burst, frame_len * (size_t)got);
        }
    }
    double took = now_s() - start, cpu = pid ? cpu_s(pid) - cpu0 : -1;
    printf("RESULT mode=echo conns=%d depth=%d size=%zu msgs=%llu secs=%.2f rate=%.0f server_cpu_s=%.2f "
           "cpu_us_per_msg=%.2f\n",
           conns, depth, size, msgs, took, (double)msgs / took, cpu, pid && msgs ? cpu * 1e6 / (double)msgs : -1.0);
    return 0;
}
