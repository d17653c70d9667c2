/* healthcheck: `apiary --healthcheck`, the probe a container HEALTHCHECK or a supervisor runs. It sends one
 * GET /healthz to the configured listen address and turns the answer into an exit status, so images need
 * no curl. It runs in its own short-lived process: no event loop, just sockets and one deadline. */
#ifndef APIARY_HEALTHCHECK_H
#define APIARY_HEALTHCHECK_H

#include <stdio.h>

#include "config_internal.h"

/* Whole probe, from connect to the last byte of the answer. */
#define HEALTHCHECK_TIMEOUT_MS 2000

/* Probes cfg's listen address; a wildcard host (0.0.0.0, ::) is probed on its loopback (127.0.0.1, ::1).
 * Returns the exit status: 0 when /healthz answered 200 within HEALTHCHECK_TIMEOUT_MS (one line on
 * stdout), 1 otherwise (one line on stderr saying why). */
int healthcheck_run(const apiary_config *cfg);

/* The same probe against host:port with any timeout, writing its line to `out` or `err`. */
int healthcheck_probe(const char *host, unsigned port, int timeout_ms, FILE *out, FILE *err);

#endif
