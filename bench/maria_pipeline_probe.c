/* bench/maria_pipeline_probe.c: what MariaDB itself spends per statement when a client pipelines
 * (issue 23), to decide whether apiary's MariaDB backend should write COM_STMT_EXECUTE packets back to
 * back on one connection before reading their answers, as its PostgreSQL backend does with libpq's
 * pipeline mode. Not part of the build (a measurement of the database, not of apiary):
 *
 *   gcc -O2 -Wall -Wextra -D_GNU_SOURCE bench/maria_pipeline_probe.c $(mariadb_config --cflags --libs) \
 *       -o /tmp/maria_pipeline_probe
 *   taskset -c 0 /tmp/maria_pipeline_probe PORT MARIADBD_PID N [--perf] SHAPE...
 *
 * Connector/C connects and prepares `SELECT id, randomNumber FROM world WHERE id = ?` (database
 * apiary, user root, any password: the private servers run without grant tables); then the probe
 * writes COM_STMT_EXECUTE packets itself on the connection's socket (binary protocol, one random id
 * 1..10000 each, every one its own command) and reads the answers itself. Shapes:
 *   serial     one connection, one statement in flight at a time
 *   conc:C     C connections with one statement in flight on each (apiary's MariaDB shape today: 16)
 *   pipe:K     one connection: K executes written with one send, then their K answers read; again
 *   pipe:KxC   C connections each doing pipe:K at once
 * For each it prints mariadbd's CPU per statement, two ways: utime+stime of the process
 * (/proc/PID/stat, 10 ms ticks) and the sum of its threads' on-CPU time (/proc/PID/task/ * /schedstat,
 * ns; the connection threads live through the whole window, so none is missed), and the wall time.
 * With --perf, mariadbd's system calls per statement (perf stat on syscalls:sys_enter_*, -p PID).
 * Pin mariadbd and the probe to different CPUs and run every shape at least twice. */
#include <dirent.h>
#include <errno.h>
#include <mysql.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAXC 64
#define BUFSZ (1 << 18)

typedef struct {
    MYSQL *my;
    MYSQL_STMT *st;
    int fd;
    uint32_t stmt_id;
    unsigned char buf[BUFSZ];
    size_t len, pos;
    int state, cols_left, pending, left;
} probe_conn;

static unsigned rnd_state = 23;
static int rnd_id(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (int)((rnd_state >> 8) % 10000) + 1;
}

static void die(const char *what)
{
    fprintf(stderr, "maria_pipeline_probe: %s\n", what);
    exit(1);
}

static void conn_open(probe_conn *c, int port)
{
    static const char sql[] = "SELECT id, randomNumber FROM world WHERE id = ?";
    c->my = mysql_init(NULL);
    if (!mysql_real_connect(c->my, "127.0.0.1", "root", "", "apiary", (unsigned)port, NULL, 0))
        die(mysql_error(c->my));
    c->st = mysql_stmt_init(c->my);
    if (mysql_stmt_prepare(c->st, sql, sizeof sql - 1))
        die(mysql_stmt_error(c->st));
    c->stmt_id = (uint32_t)c->st->stmt_id;
    c->fd = mysql_get_socket(c->my);
    c->len = c->pos = 0;
}

/* one COM_STMT_EXECUTE: stmt id, no cursor, iteration count 1, NULL bitmap, types bound, LONG, value */
static size_t put_execute(unsigned char *p, uint32_t stmt_id, int id)
{
    unsigned char *q = p + 4;
    *q++ = 0x17;
    memcpy(q, &stmt_id, 4), q += 4;
    *q++ = 0;
    *q++ = 1, *q++ = 0, *q++ = 0, *q++ = 0;
    *q++ = 0;                 /* NULL bitmap */
    *q++ = 1;                 /* new params bound */
    *q++ = 3, *q++ = 0;       /* MYSQL_TYPE_LONG, signed */
    memcpy(q, &id, 4), q += 4;
    size_t n = (size_t)(q - p - 4);
    p[0] = (unsigned char)n, p[1] = (unsigned char)(n >> 8), p[2] = (unsigned char)(n >> 16), p[3] = 0;
    return n + 4;
}

static void send_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            usleep(10);
            continue;
        }
        if (w <= 0)
            die("send failed");
        p += w, n -= (size_t)w;
    }
}

static void send_executes(probe_conn *c, int k)
{
    unsigned char out[64 * 32];
    size_t n = 0;
    for (int i = 0; i < k; i++)
        n += put_execute(out + n, c->stmt_id, rnd_id());
    send_all(c->fd, out, n);
}

/* Advances the answer being read with what is buffered: 1 when an answer is complete. Connector/C
 * asks for no CLIENT_DEPRECATE_EOF, so: OK | ERR | column count [cols] EOF rows EOF, where the column
 * definitions are left out when the server says the client's cached metadata holds (a column count
 * packet of two bytes whose second is 0). */
static int step(probe_conn *c)
{
    for (;;) {
        if (c->len - c->pos < 4)
            return 0;
        unsigned char *p = c->buf + c->pos;
        size_t n = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16;
        if (c->len - c->pos < 4 + n)
            return 0;
        c->pos += 4 + n;
        p += 4;
        switch (c->state) {
        case 0:
            if (p[0] == 0x00)
                return 1;
            if (p[0] == 0xff)
                die("a statement failed");
            c->cols_left = (n == 2 && p[1] == 0) ? 0 : p[0];
            c->state = 1;
            break;
        case 1:
            if (c->cols_left)
                c->cols_left--;
            else
                c->state = 2; /* the EOF after the column definitions */
            break;
        default:
            if (p[0] == 0xfe && n < 9) {
                c->state = 0;
                return 1;
            }
            if (p[0] == 0xff)
                die("a statement failed");
        }
    }
}

/* reads once (blocking or not); 0 on EAGAIN */
static int fill(probe_conn *c)
{
    if (c->pos == c->len)
        c->pos = c->len = 0;
    else if (c->pos > BUFSZ / 2) {
        memmove(c->buf, c->buf + c->pos, c->len - c->pos);
        c->len -= c->pos, c->pos = 0;
    }
    ssize_t r = recv(c->fd, c->buf + c->len, BUFSZ - c->len, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (r <= 0)
        die("recv failed or the server closed");
    c->len += (size_t)r;
    return 1;
}

static void read_answers(probe_conn *c, int k)
{
    while (k) {
        while (k && step(c))
            k--;
        if (k)
            fill(c);
    }
}

static void run_serial(probe_conn *c, int n)
{
    for (int i = 0; i < n; i++) {
        send_executes(c, 1);
        read_answers(c, 1);
    }
}

static void run_pipe1(probe_conn *c, int n, int k)
{
    while (n) {
        int m = n < k ? n : k;
        send_executes(c, m);
        read_answers(c, m);
        n -= m;
    }
}

/* C connections at once, each with k executes in flight per round (k = 1: conc:C) */
static void run_many(probe_conn *cs, int nc, int n, int k)
{
    int ep = epoll_create1(0), active = nc;
    for (int i = 0; i < nc; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        cs[i].left = n / nc;
        cs[i].pending = cs[i].left < k ? cs[i].left : k;
        cs[i].left -= cs[i].pending;
        send_executes(&cs[i], cs[i].pending);
    }
    struct epoll_event evs[MAXC];
    while (active) {
        int m = epoll_wait(ep, evs, MAXC, -1);
        for (int e = 0; e < m; e++) {
            probe_conn *c = &cs[evs[e].data.u32];
            if (!c->pending || !fill(c))
                continue;
            while (c->pending && step(c))
                c->pending--;
            if (c->pending)
                continue;
            if (!c->left) {
                active--;
                continue;
            }
            c->pending = c->left < k ? c->left : k;
            c->left -= c->pending;
            send_executes(c, c->pending);
        }
    }
    close(ep);
}

static void cpu_of(int pid, double *ticks_s, double *sched_us)
{
    char path[96], line[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(line, sizeof line, f))
        die("cannot read mariadbd's /proc stat");
    fclose(f);
    char *s = strrchr(line, ')') + 2;
    unsigned long long ut = 0, st = 0;
    for (int field = 3; field <= 15; field++) {
        if (field == 14)
            ut = strtoull(s, NULL, 10);
        if (field == 15)
            st = strtoull(s, NULL, 10);
        s = strchr(s, ' ') + 1;
    }
    *ticks_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    unsigned long long ns = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        char p2[300];
        snprintf(p2, sizeof p2, "/proc/%d/task/%s/schedstat", pid, de->d_name);
        FILE *g = fopen(p2, "r");
        unsigned long long v;
        if (g && fscanf(g, "%llu", &v) == 1)
            ns += v;
        if (g)
            fclose(g);
    }
    if (d)
        closedir(d);
    *sched_us = (double)ns / 1e3;
}

static pid_t perf_start(int pid, const char *out)
{
    char p[32];
    snprintf(p, sizeof p, "%d", pid);
    char *argv[] = {"perf", "stat", "-x", ",", "-o", (char *)out, "-e", "syscalls:sys_enter_*", "-p", p, NULL};
    pid_t child;
    if (posix_spawnp(&child, "perf", NULL, NULL, argv, environ))
        die("cannot start perf");
    sleep(1); /* perf attaches to every thread */
    return child;
}

static void perf_stop(pid_t child, const char *out, int n)
{
    kill(child, SIGINT);
    waitpid(child, NULL, 0);
    FILE *f = fopen(out, "r");
    char line[512];
    unsigned long long total = 0;
    char top[512] = "";
    while (f && fgets(line, sizeof line, f)) {
        unsigned long long v;
        char name[128];
        if (sscanf(line, "%llu,,syscalls:sys_enter_%127[^,]", &v, name) == 2 && v) {
            total += v;
            if ((double)v / n >= 0.05) {
                size_t l = strlen(top);
                snprintf(top + l, sizeof top - l, " %s %.2f", name, (double)v / n);
            }
        }
    }
    if (f)
        fclose(f);
    unlink(out);
    printf("  syscalls/stmt %.2f:%s", (double)total / n, top);
}

int main(int argc, char **argv)
{
    if (argc < 5)
        die("usage: PORT MARIADBD_PID N [--perf] SHAPE...");
    int port = atoi(argv[1]), pid = atoi(argv[2]), n = atoi(argv[3]), perf = 0;
    static probe_conn cs[MAXC];
    printf("%-10s %7s  %16s  %18s  %12s\n", "shape", "stmts", "db us/stmt ticks", "db us/stmt sched", "wall us/stmt");
    for (int a = 4; a < argc; a++) {
        if (!strcmp(argv[a], "--perf")) {
            perf = 1;
            continue;
        }
        int k = 1, nc = 1;
        const char *s = argv[a];
        if (!strcmp(s, "serial"))
            ;
        else if (!strncmp(s, "conc:", 5))
            nc = atoi(s + 5);
        else if (!strncmp(s, "pipe:", 5)) {
            k = atoi(s + 5);
            const char *x = strchr(s, 'x');
            nc = x ? atoi(x + 1) : 1;
        } else
            die("unknown shape");
        if (nc < 1 || nc > MAXC || k < 1 || k > 32)
            die("1..64 connections, 1..32 in flight");
        for (int i = 0; i < nc; i++) {
            conn_open(&cs[i], port);
            run_serial(&cs[i], 100); /* warm: the statement, the buffer pool, metadata cached */
        }
        char out[64];
        snprintf(out, sizeof out, "/tmp/maria_pipeline_probe.%d.perf", (int)getpid());
        pid_t pp = perf ? perf_start(pid, out) : 0;
        double t0, s0, t1, s1;
        struct timespec w0, w1;
        cpu_of(pid, &t0, &s0);
        clock_gettime(CLOCK_MONOTONIC, &w0);
        if (nc == 1 && k == 1)
            run_serial(&cs[0], n);
        else if (nc == 1)
            run_pipe1(&cs[0], n, k);
        else
            run_many(cs, nc, n, k);
        clock_gettime(CLOCK_MONOTONIC, &w1);
        cpu_of(pid, &t1, &s1);
        double wall = (double)(w1.tv_sec - w0.tv_sec) * 1e6 + (double)(w1.tv_nsec - w0.tv_nsec) / 1e3;
        int done = nc == 1 ? n : n / nc * nc;
        printf("%-10s %7d  %16.2f  %18.2f  %12.2f", s, done, (t1 - t0) * 1e6 / done, (s1 - s0) / done, wall / done);
        if (perf)
            perf_stop(pp, out, done);
        printf("\n");
        fflush(stdout);
        for (int i = 0; i < nc; i++) {
            mysql_stmt_close(cs[i].st);
            mysql_close(cs[i].my);
        }
    }
    return 0;
}
