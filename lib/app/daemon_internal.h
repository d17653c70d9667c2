/* daemon: running detached (--daemon), the pid file that keeps a second instance out, the log file,
 * and dropping root after the listeners are bound. Foreground is the default and what systemd and
 * containers want; these are for running apiary by hand or from a classic init script. */
#ifndef APIARY_DAEMON_H
#define APIARY_DAEMON_H

#include <stddef.h>

/* Detaches from the terminal (fork, setsid, fork). Returns in the final child with a descriptor for
 * daemon_ready; the original process waits until the child reports ready and exits 0, or exits 1 if the
 * child dies first, so `apiary --daemon` fails visibly when start-up fails. Returns -1 (err set) if it
 * cannot fork. */
int daemon_start(char *err, size_t err_len);
/* Tells the waiting parent that the server is listening. */
void daemon_ready(int fd);

/* Creates and locks the pid file and writes our pid. A pid file locked by a live process means another
 * instance: refused. A stale one (its process is gone, so is its lock) is taken over. The lock lives as
 * long as the process. Returns 0, or -1 with a message. */
int daemon_pidfile_acquire(const char *path, char *err, size_t err_len);
/* Removes the pid file at a clean exit. */
void daemon_pidfile_release(void);

/* Sends stdout and stderr to `path` (appending); again on SIGHUP after log rotation. 0 or -1 (err). */
int daemon_log_open(const char *path, char *err, size_t err_len);

/* Switches to `user` (its uid, gid and groups) if the process runs as root; a non-root process may only
 * name itself. Returns 0, or -1 with a message. */
int daemon_drop_privileges(const char *user, char *err, size_t err_len);

#endif
