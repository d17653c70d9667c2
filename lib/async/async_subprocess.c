/* async_subprocess: run another program without blocking the loop (asyncio.create_subprocess_exec).
 *
 * Spawning: posix_spawnp (glibc spawns with CLONE_VFORK, so a server with gigabytes mapped does not copy
 * its page tables per child, and an exec failure comes back as the return value instead of as a child
 * that exits 127). The child gets its own process group, descriptors 0-2 only, the default signal
 * mask and dispositions (the server blocks SIGTERM/SIGINT/SIGHUP in every thread and ignores SIGPIPE;
 * a child inheriting that could not be stopped with SIGTERM), and a minimal environment (PATH, LANG
 * and what the caller adds: ours holds secrets such as APIARY_SQL_URL) unless it asks to inherit.
 * Signals go to the child's pidfd and to its group, so a child that leaves the group still gets them.
 *
 * Reaping: a pidfd (pidfd_open, Linux 5.3+) watched as a readable descriptor on the scope's own loop.
 * A SIGCHLD handler through libevent's evsignal was the alternative and is worse here on every count:
 * libevent delivers a signal to one event_base per process while apiary runs a loop per core, SIGCHLD
 * says "some child changed" so the handler must waitpid(-1) and would reap children that belong to
 * someone else (the app's own, a library's), and signals coalesce. A pidfd names exactly our child,
 * wakes exactly the loop that started it, and waitpid(pid, WNOHANG) after it is readable never blocks.
 *
 * Ownership: the operation, its events and the pipe ends live in the scope; output grows in malloc'd
 * buffers (bounded by max_output_bytes) copied into scope memory at completion. A cancelled child is
 * SIGKILLed and, if not dead yet, reaped later by a one-shot event on the loop that holds only the pid
 * and the pidfd, so nothing of the (possibly freed) scope is touched afterwards. */
#include "async_op_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "xalloc_internal.h"

extern char **environ;

#define ASYNC_SUBPROCESS_OUTPUT_DEFAULT (1024u * 1024u)
#define ASYNC_SUBPROCESS_GRACE_DEFAULT 2000u
#define ASYNC_SUBPROCESS_READ_CHUNK 65536u

typedef struct async_proc_stream {
    struct event ev;
    int fd;          /* our read end, -1 once closed */
    char *buf;       /* malloc'd, at most max bytes kept */
    size_t len, cap, max;
    bool truncated;
} async_proc_stream;

typedef struct async_proc_op {
    async_op op;
    pid_t pid;
    int pidfd;
    struct event pid_ev;
    struct event timer_ev;
    bool killing;       /* SIGTERM sent: the next timer fire sends SIGKILL */
    bool timed_out;
    unsigned grace_ms;
    int in_fd;          /* our end of the child's stdin, -1 once closed */
    struct event in_ev;
    const char *in_data; /* scope memory */
    size_t in_len, in_off;
    async_proc_stream out, err;
} async_proc_op;

static struct timeval async_proc_tv(unsigned ms)
{
    return (struct timeval){.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

static void async_proc_close_fd(struct event *ev, int *fd)
{
    if (*fd < 0)
        return;
    event_del(ev);
    close(*fd);
    *fd = -1;
}

/* Reads what is there now (non-blocking); true at end of file or a read error. */
static bool async_proc_stream_drain(async_proc_stream *s)
{
    char scratch[4096];
    for (;;) {
        char *dst = scratch;
        size_t room = sizeof(scratch);
        if (s->len < s->max) {
            if (s->cap - s->len < 1) {
                size_t cap = s->cap ? s->cap * 2 : 4096;
                s->cap = cap > s->max ? s->max : cap;
                s->buf = xrealloc(s->buf, s->cap);
            }
            dst = s->buf + s->len;
            room = s->cap - s->len;
        }
        ssize_t n = read(s->fd, dst, room > ASYNC_SUBPROCESS_READ_CHUNK ? ASYNC_SUBPROCESS_READ_CHUNK : room);
        if (n > 0) {
            if (dst == scratch)
                s->truncated = true; /* read and dropped: the child must never block on a full pipe */
            else
                s->len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
}

static void async_proc_on_output(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    async_proc_stream *s = arg;
    if (async_proc_stream_drain(s))
        async_proc_close_fd(&s->ev, &s->fd);
}

static void async_proc_on_stdin(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    async_proc_op *p = arg;
    while (p->in_off < p->in_len) {
        /* A socket, so a child that exits without reading gives EPIPE here, never SIGPIPE. */
        ssize_t n = send(p->in_fd, p->in_data + p->in_off, p->in_len - p->in_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p->in_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break; /* EPIPE and the like: the child does not want the rest */
    }
    async_proc_close_fd(&p->in_ev, &p->in_fd); /* end of file for the child */
}

/* The stream's bytes in scope memory, NUL-terminated. */
static const char *async_proc_keep(async_scope *scope, async_proc_stream *s, size_t *len, bool *truncated)
{
    char *copy = async_scope_alloc(scope, s->len + 1);
    if (s->len)
        memcpy(copy, s->buf, s->len);
    *len = s->len;
    *truncated = s->truncated;
    free(s->buf);
    s->buf = NULL;
    return copy;
}

static void async_proc_release(async_proc_op *p)
{
    event_del(&p->timer_ev);
    async_proc_close_fd(&p->in_ev, &p->in_fd);
    async_proc_close_fd(&p->out.ev, &p->out.fd);
    async_proc_close_fd(&p->err.ev, &p->err.fd);
    async_proc_close_fd(&p->pid_ev, &p->pidfd);
    free(p->out.buf);
    free(p->err.buf);
    p->out.buf = p->err.buf = NULL;
}

static void async_proc_finish(async_proc_op *p, int wstatus)
{
    /* Whatever the child wrote before it exited is in the pipes now; a grandchild that still holds
     * them open does not keep the call waiting. */
    if (p->out.fd >= 0)
        async_proc_stream_drain(&p->out);
    if (p->err.fd >= 0)
        async_proc_stream_drain(&p->err);
    async_scope *scope = p->op._scope;
    async_subprocess_result *r = async_scope_alloc(scope, sizeof(*r));
    r->pid = (int)p->pid;
    r->exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
    r->term_signal = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
    r->timed_out = p->timed_out;
    r->out = async_proc_keep(scope, &p->out, &r->out_len, &r->out_truncated);
    r->err = async_proc_keep(scope, &p->err, &r->err_len, &r->err_truncated);
    async_proc_release(p);
    if (p->timed_out)
        async__op_complete(&p->op, ASYNC_TIMEOUT, r, "timeout");
    else
        async__op_complete(&p->op, ASYNC_OK, r, NULL);
}

static void async_proc_on_exit(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    async_proc_op *p = arg;
    int wstatus = 0;
    pid_t got;
    do
        got = waitpid(p->pid, &wstatus, WNOHANG);
    while (got < 0 && errno == EINTR);
    if (got == 0)
        return; /* not yet (the pidfd is level-triggered: it will say so again) */
    if (got < 0) {
        /* Someone set SIGCHLD to SIG_IGN or reaped it for us: the status is gone. */
        log_warn("async: subprocess %d: waitpid: %s", (int)p->pid, strerror(errno));
        wstatus = 0;
    }
    async_proc_finish(p, wstatus);
}

/* Signals the child through its pidfd, and its process group. The group alone is not enough: a child
 * that moved itself into another group (setpgid) is no longer in the one we made, kill(-pid) misses it
 * (ESRCH once that group is empty), and the timeout would end only when the child chose to exit. The
 * pidfd names exactly our child and can never hit a recycled pid; the group still reaches the
 * children it started. */
static void async_proc_signal(const async_proc_op *p, int pidfd, int sig)
{
    if (pidfd >= 0)
        pidfd_send_signal(pidfd, sig, NULL, 0);
    kill(-p->pid, sig);
}

static void async_proc_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    async_proc_op *p = arg;
    if (!p->killing) {
        p->killing = true;
        p->timed_out = true;
        async_proc_signal(p, p->pidfd, SIGTERM);
        struct timeval tv = async_proc_tv(p->grace_ms);
        evtimer_add(&p->timer_ev, &tv);
    } else {
        async_proc_signal(p, p->pidfd, SIGKILL);
    }
}

/* The detached reaper of a cancelled child: holds nothing but the pid and the pidfd. libevent frees
 * a one-shot event that never fired with its base; only the zombie would be left then, to init. */
static void async_proc_reap_later(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    pid_t pid = (pid_t)(intptr_t)arg;
    while (waitpid(pid, NULL, WNOHANG) < 0 && errno == EINTR)
        ;
    close(fd);
}

static void async_proc_cancel(async_op *op)
{
    async_proc_op *p = (async_proc_op *)op;
    int pidfd = p->pidfd;
    async_proc_signal(p, pidfd, SIGKILL);
    event_del(&p->pid_ev);
    p->pidfd = -1; /* handed to the reaper (or closed below), not to async_proc_release */
    async_proc_release(p);
    pid_t got;
    do
        got = waitpid(p->pid, NULL, WNOHANG);
    while (got < 0 && errno == EINTR);
    if (got != 0) {
        close(pidfd);
        return;
    }
    if (event_base_once(op->_scope->base, pidfd, EV_READ, async_proc_reap_later, (void *)(intptr_t)p->pid,
                        NULL) != 0) {
        log_warn("async: subprocess %d: cannot watch it to reap it; it stays a zombie", (int)p->pid);
        close(pidfd);
    }
}

static const async_op_vtable async_proc_vt = {.name = "subprocess", .cancel = async_proc_cancel};

static int async_proc_nonblock(int fd) { return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void async_proc_close_pair(int fds[2])
{
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

#define ASYNC_SUBPROCESS_DEFAULT_PATH "PATH=/usr/local/bin:/usr/bin:/bin"

/* Length of an environment entry's name (up to '=', or all of it). */
static size_t async_proc_env_name_len(const char *entry)
{
    const char *eq = strchr(entry, '=');
    return eq ? (size_t)(eq - entry) : strlen(entry);
}

/* Our own entry NAME=..., or NULL. */
static const char *async_proc_env_find(const char *name)
{
    size_t len = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            return *e;
    return NULL;
}

/* The child's environment (malloc'd array of borrowed strings; the caller frees the array only).
 * The base is minimal: PATH and LANG as we have them (PATH defaults to the system directories), so a
 * secret in ours (APIARY_SQL_URL with its password, a token an operator exported) never reaches a
 * program unless the caller asks: inherit_env takes our whole environment instead. The caller's envp
 * entries come last and replace a base entry of the same name. */
static char **async_proc_env_build(const async_subprocess_options *o)
{
    size_t base_n = 0, extra_n = 0;
    if (o->inherit_env)
        for (char **e = environ; e && *e; e++)
            base_n++;
    else
        base_n = 2;
    for (const char *const *e = o->envp; e && *e; e++)
        extra_n++;
    char **env = xcalloc(base_n + extra_n + 1, sizeof(*env));
    size_t n = 0;
    if (o->inherit_env) {
        for (char **e = environ; e && *e; e++)
            env[n++] = *e;
    } else {
        const char *path = async_proc_env_find("PATH"), *lang = async_proc_env_find("LANG");
        env[n++] = (char *)(path ? path : ASYNC_SUBPROCESS_DEFAULT_PATH);
        if (lang)
            env[n++] = (char *)lang;
    }
    for (const char *const *e = o->envp; e && *e; e++) {
        size_t len = async_proc_env_name_len(*e);
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) /* drop what it replaces */
            if (!(async_proc_env_name_len(env[i]) == len && strncmp(env[i], *e, len) == 0))
                env[kept++] = env[i];
        n = kept;
        env[n++] = (char *)*e;
    }
    env[n] = NULL;
    return env;
}

/* Creates the pipes and the child. 0, or an errno value with nothing left open or running. */
static int async_proc_spawn(async_proc_op *p, const async_subprocess_options *o)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    int rc = 0;
    if ((o->stdin_data && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) ||
        pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
        rc = errno;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    bool ready = false;
    if (rc == 0) {
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        ready = true;
        if (o->stdin_data)
            posix_spawn_file_actions_adddup2(&fa, in[1], 0);
        else
            posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawn_file_actions_adddup2(&fa, err[1], 2);
        posix_spawn_file_actions_addclosefrom_np(&fa, 3);
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);
        posix_spawnattr_setpgroup(&attr, 0);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
        char **env = async_proc_env_build(o);
        rc = posix_spawnp(&p->pid, o->argv[0], &fa, &attr, (char *const *)o->argv, env);
        free(env);
    }
    if (ready) {
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
    }
    if (rc == 0) {
        p->pidfd = pidfd_open(p->pid, 0);
        if (p->pidfd < 0) {
            rc = errno;
            /* Without a pidfd we cannot wait for it without blocking; it was just started, so a
             * SIGKILL ends it at once. */
            kill(p->pid, SIGKILL); /* not reaped yet, so the pid is still ours */
            kill(-p->pid, SIGKILL);
            while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
                ;
        }
    }
    if (rc != 0) {
        async_proc_close_pair(in);
        async_proc_close_pair(out);
        async_proc_close_pair(err);
        return rc;
    }
    /* The child's ends are its own now. */
    if (in[1] >= 0)
        close(in[1]);
    close(out[1]);
    close(err[1]);
    p->in_fd = in[0];
    p->out.fd = out[0];
    p->err.fd = err[0];
    return 0;
}

static void async_proc_watch(async_proc_op *p, const async_subprocess_options *o)
{
    struct event_base *base = p->op._scope->base;
    async_proc_stream *streams[2] = {&p->out, &p->err};
    for (int i = 0; i < 2; i++) {
        async_proc_nonblock(streams[i]->fd);
        event_assign(&streams[i]->ev, base, streams[i]->fd, EV_READ | EV_PERSIST, async_proc_on_output, streams[i]);
        event_add(&streams[i]->ev, NULL);
    }
    if (p->in_fd >= 0) {
        async_proc_nonblock(p->in_fd);
        event_assign(&p->in_ev, base, p->in_fd, EV_WRITE | EV_PERSIST, async_proc_on_stdin, p);
        event_add(&p->in_ev, NULL);
    }
    event_assign(&p->pid_ev, base, p->pidfd, EV_READ | EV_PERSIST, async_proc_on_exit, p);
    event_add(&p->pid_ev, NULL);
    evtimer_assign(&p->timer_ev, base, async_proc_on_timer, p);
    if (o->timeout_ms) {
        struct timeval tv = async_proc_tv(o->timeout_ms);
        evtimer_add(&p->timer_ev, &tv);
    }
}

async_op *async_subprocess(async_scope *scope, const async_subprocess_options *opts)
{
    async_proc_op *p = (async_proc_op *)async__op_new(scope, &async_proc_vt, sizeof(*p));
    p->pidfd = p->in_fd = p->out.fd = p->err.fd = -1;
    if (!opts || !opts->argv || !opts->argv[0] || !opts->argv[0][0]) {
        async__op_complete(&p->op, ASYNC_FAILED, NULL, "spawn_failed");
        return async__op_started(&p->op);
    }
    p->grace_ms = opts->kill_grace_ms ? opts->kill_grace_ms : ASYNC_SUBPROCESS_GRACE_DEFAULT;
    p->out.max = p->err.max = opts->max_output_bytes ? opts->max_output_bytes : ASYNC_SUBPROCESS_OUTPUT_DEFAULT;
    if (opts->stdin_data) {
        char *copy = async_scope_alloc(scope, opts->stdin_len ? opts->stdin_len : 1);
        if (opts->stdin_len)
            memcpy(copy, opts->stdin_data, opts->stdin_len);
        p->in_data = copy;
        p->in_len = opts->stdin_len;
    }
    int rc = async_proc_spawn(p, opts);
    if (rc != 0) {
        log_debug("async: cannot run %s: %s", opts->argv[0], strerror(rc));
        async__op_complete(&p->op, ASYNC_FAILED, NULL, "spawn_failed");
        return async__op_started(&p->op);
    }
    async_proc_watch(p, opts);
    return async__op_started(&p->op);
}
