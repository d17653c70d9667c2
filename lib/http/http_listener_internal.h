/* http_listener: opens the listening sockets. Each loop gets its own socket on the same address
 * with SO_REUSEPORT, so the kernel spreads new connections across loops with no shared accept lock
 * and no hand-off between threads (see docs/architecture.md). */
#ifndef APIARY_HTTP_LISTENER_H
#define APIARY_HTTP_LISTENER_H

#include <stddef.h>

/* Opens a non-blocking TCP listener on host:port with SO_REUSEADDR and SO_REUSEPORT. host is an IP
 * literal or a name (resolved with getaddrinfo, first address wins). Returns the fd, or -1 with a
 * message in err. With port 0 the kernel picks one; read it back with http_listener_port. */
int http_listener_open(const char *host, unsigned port, unsigned backlog, char *err, size_t err_len);
/* Refuses an address another process already listens on (0: free, -1 with a message in err). Our own
 * listeners use SO_REUSEPORT, which would let a second instance of the same user bind beside the first
 * and get half its connections; a probe bound without SO_REUSEPORT fails on any listener there. Call
 * it once before opening a group of listeners (not for port 0, which the kernel picks afresh). */
int http_listener_check_free(const char *host, unsigned port, char *err, size_t err_len);
/* Opens a non-blocking Unix-domain listener at `path` with permissions `mode` (e.g. 0660). A stale socket
 * file left by a crashed server is replaced; a path where another server still accepts is refused.
 * Returns the fd, or -1 with a message in err. The caller unlinks the path at exit. */
int http_listener_open_unix(const char *path, unsigned mode, unsigned backlog, char *err, size_t err_len);

/* The local port a socket is bound to, or 0. */
unsigned http_listener_port(int fd);

#endif
