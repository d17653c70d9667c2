/* generation: one loaded config and everything the running server derives from it (the engine's
 * settings, the handlers' settings, the rate limiter). A reload builds a new generation and switches the
 * loops and handlers to it; older ones are kept, untouched, until exit, so no thread can be left
 * reading settings that were freed under it. */
#ifndef APIARY_GENERATION_H
#define APIARY_GENERATION_H

#include <stdbool.h>

#include "config.h"
#include "handlers.h"
#include "http_settings.h"
#include "pool.h"
#include "ratelimit.h"

typedef struct server_generation {
    struct server_generation *prev; /* older generations, freed at exit */
    unsigned number;                /* 1 at start, +1 per successful reload */
    apiary_config cfg;
    http_settings http;             /* per loop: max_connections is the loop's share */
    handlers_settings handlers;
    ratelimit *limiter;             /* NULL when rate limiting is off */
    bool owns_limiter;              /* a reload with the same rate settings keeps the old buckets */
} server_generation;

/* The start-up generation. `loops` is the number of event loops; `workers` the pool. */
server_generation *generation_first(const apiary_config *cfg, unsigned loops, pool *workers);

/* Loads the current generation's config file again. Returns the new generation, linked to `current`,
 * or NULL when the file is bad (the reason is logged and nothing changes). Keys that need a restart
 * keep their running values, each named in the log. */
server_generation *generation_reload(server_generation *current, unsigned loops);

/* Frees `newest` and every older generation. */
void generation_free_all(server_generation *newest);

#endif
