/* server: start-up and shutdown of the whole process: listeners, the router, one loop thread per
 * configured thread, and the signal handling that drains them (SIGTERM/SIGINT). */
#ifndef APIARY_SERVER_H
#define APIARY_SERVER_H

#include "config_internal.h"

/* Runs the server of the app (app_get(), apiary.h) until SIGTERM or SIGINT has drained it. It takes
 * over cfg's app JSON and `sections` (the app's parsed config sections, CONFIG_MAX_APP_SECTIONS slots)
 * and frees them, whatever happens. ready_fd (or -1) is the daemon's readiness pipe, told once the
 * server listens. Returns the process exit status: 0 after a clean (or drain-timed-out) shutdown, 1 if
 * start-up failed (the reason is logged). */
int server_run(const apiary_config *cfg, void *sections[], int ready_fd);

#endif
