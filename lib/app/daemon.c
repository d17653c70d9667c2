/* daemon: see daemon_internal.h. */
#include "daemon_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char daemon_pidfile_path[4096];
static int daemon_pidfile_fd = -1;

int daemon_start(char *err, size_t err_len)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        snprintf(err, err_len, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, err_len, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid > 0) { /* the original process: wait for "ready" or for the pipe to close */
        close(pipefd[1]);
        char byte;
        ssize_t n;
        do
            n = read(pipefd[0], &byte, 1);
        while (n < 0 && errno == EINTR);
        waitpid(pid, NULL, 0); /* the intermediate child exits at once */
        _exit(n == 1 ? 0 : 1);
    }
    close(pipefd[0]);
    setsid(); /* no controlling terminal: a hangup of the shell does not reach us */
    pid = fork();
    if (pid < 0)
        _exit(1);
    if (pid > 0)
        _exit(0); /* the session leader goes; its child can never reacquire a terminal */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        close(devnull);
    }
    umask(027);
    return pipefd[1];
}

void daemon_ready(int fd)
{
    if (fd < 0)
        return;
    ssize_t rc = write(fd, "r", 1);
    (void)rc;
    close(fd);
}

int daemon_pidfile_acquire(const char *path, char *err, size_t err_len)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, err_len, "cannot open pid file %s: %s", path, strerror(errno));
        return -1;
    }
    /* The lock, not the file's content, says whether an instance is alive: it dies with its process. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char other[32] = "";
        ssize_t n = pread(fd, other, sizeof(other) - 1, 0);
        other[n > 0 ? n : 0] = '\0';
        other[strcspn(other, "\n")] = '\0';
        snprintf(err, err_len, "another apiary (pid %s) holds %s", other[0] ? other : "?", path);
        close(fd);
        return -1;
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        snprintf(err, err_len, "cannot write pid file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    daemon_pidfile_fd = fd;
    snprintf(daemon_pidfile_path, sizeof(daemon_pidfile_path), "%s", path);
    return 0;
}

void daemon_pidfile_release(void)
{
    if (daemon_pidfile_fd < 0)
        return;
    unlink(daemon_pidfile_path);
    close(daemon_pidfile_fd);
    daemon_pidfile_fd = -1;
}

int daemon_log_open(const char *path, char *err, size_t err_len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, err_len, "cannot open log file %s: %s", path, strerror(errno));
        return -1;
    }
    /* dup2 replaces the descriptors in place, so a thread logging right now writes whole lines to one
     * file or the other, never to a closed descriptor. */
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    return 0;
}

int daemon_drop_privileges(const char *user, char *err, size_t err_len)
{
    struct passwd pw, *found = NULL;
    char buf[4096];
    if (getpwnam_r(user, &pw, buf, sizeof(buf), &found) != 0 || !found) {
        snprintf(err, err_len, "user '%s' does not exist", user);
        return -1;
    }
    if (geteuid() != 0) {
        if (found->pw_uid == geteuid())
            return 0;
        snprintf(err, err_len, "cannot switch to user '%s': not running as root", user);
        return -1;
    }
    /* Groups first, then the gid, then the uid: after setuid nothing else could be changed. */
    if (initgroups(found->pw_name, found->pw_gid) != 0 || setgid(found->pw_gid) != 0 || setuid(found->pw_uid) != 0) {
        snprintf(err, err_len, "cannot switch to user '%s': %s", user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) { /* must be impossible now */
        snprintf(err, err_len, "privileges could not be dropped for good");
        return -1;
    }
    return 0;
}
