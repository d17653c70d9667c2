/* server: start-up and shutdown of the whole process: listeners, the router, one loop thread per
 * configured thread, and the signal handling that drains them (SIGTERM/SIGINT). */
#ifndef APIARY_SERVER_H
#define APIARY_SERVER_H

#include "config.h"

/* Runs the server until SIGTERM or SIGINT has drained it. ready_fd (or -1) is the daemon's readiness
 * pipe, told once the server listens. Returns the process exit status: 0 after a
 * clean (or drain-timed-out) shutdown, 1 if start-up failed (the reason is logged). */
int server_run(const apiary_config *cfg, int ready_fd);

#endif
