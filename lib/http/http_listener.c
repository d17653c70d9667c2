/* http_listener: see http_listener_internal.h. */
#include "http_listener_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A TCP socket for host:port (first address of getaddrinfo) with SO_REUSEADDR, and the address in
 * *res (the caller frees it); -1 with a message in err. */
static int http_listener_socket(const char *host, unsigned port, struct addrinfo **res, char *err, size_t err_len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    char port_str[8];
    snprintf(port_str, sizeof(port_str), "%u", port);
    int rc = getaddrinfo(host, port_str, &hints, res);
    if (rc != 0) {
        snprintf(err, err_len, "cannot resolve listen address %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket((*res)->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_len, "socket: %s", strerror(errno));
        freeaddrinfo(*res);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); /* past TIME_WAIT of an earlier run */
    return fd;
}

int http_listener_check_free(const char *host, unsigned port, char *err, size_t err_len)
{
    struct addrinfo *res;
    int fd = http_listener_socket(host, port, &res, err, err_len);
    if (fd < 0)
        return -1;
    int rc = 0;
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        if (errno == EADDRINUSE)
            snprintf(err, err_len, "cannot listen on %s:%u: another process is listening there (address in use)",
                     host, port);
        else
            snprintf(err, err_len, "cannot listen on %s:%u: %s", host, port, strerror(errno));
        rc = -1;
    }
    close(fd);
    freeaddrinfo(res);
    return rc;
}

int http_listener_open(const char *host, unsigned port, unsigned backlog, char *err, size_t err_len)
{
    struct addrinfo *res;
    int fd = http_listener_socket(host, port, &res, err, err_len);
    if (fd < 0)
        return -1;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, (int)backlog) != 0) {
        snprintf(err, err_len, "cannot listen on %s:%u: %s", host, port, strerror(errno));
        close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

int http_listener_open_unix(const char *path, unsigned mode, unsigned backlog, char *err, size_t err_len)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, err_len, "unix socket path %s is longer than %zu bytes", path, sizeof(sun.sun_path) - 1);
        return -1;
    }
    strcpy(sun.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, err_len, "%s exists and is not a socket", path);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool alive = probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0;
        if (probe >= 0)
            close(probe);
        if (alive) {
            snprintf(err, err_len, "%s: another server is listening there", path);
            return -1;
        }
        unlink(path); /* stale, from a server that did not exit cleanly */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 || chmod(path, (mode_t)mode) != 0 ||
        listen(fd, (int)backlog) != 0) {
        snprintf(err, err_len, "cannot listen on unix:%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

unsigned http_listener_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}
