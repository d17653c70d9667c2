/* generation: one loaded config and everything the running server derives from it (the engine's
 * settings, the rate limiter, the app's parsed sections and what its hooks allocated). It is the
 * apiary_context of the public API (apiary.h). A reload builds a new generation and switches the
 * loops and handlers to it; older ones are kept, untouched, until exit, so no thread can be left
 * reading settings that were freed under it. */
#ifndef APIARY_GENERATION_H
#define APIARY_GENERATION_H

#include <stdbool.h>

#include "config_internal.h"
#include "apiary.h"
#include "http_settings_internal.h"
#include "pool.h"
#include "ratelimit_internal.h"

typedef struct generation_alloc generation_alloc;

typedef struct apiary_context {
    struct apiary_context *prev;    /* older generations, freed at exit */
    unsigned number;                /* 1 at start, +1 per successful reload */
    apiary_config cfg;
    http_settings http;             /* per loop: max_connections is the loop's share */
    pool *pool;                     /* the worker pool (one for the process) */
    const http_client_upstream *upstreams; /* cfg's, or an older generation's when unchanged (pools) */
    unsigned upstream_count;
    http_client_allowlist allowlist; /* http_client.allowed_origins (cfg's, or an older one's: pools) */
    const redis_settings *redis;    /* the first generation's (Redis needs a restart); NULL: no Redis */
    void *sections[CONFIG_MAX_APP_SECTIONS]; /* what the app's section parsers built */
    generation_alloc *allocs;       /* apiary_context_alloc memory */
    ratelimit *limiter;             /* NULL when rate limiting is off */
    bool owns_limiter;              /* a reload with the same rate settings keeps the old buckets */
} server_generation;

/* The start-up generation; it owns cfg's app_json and `sections` (parsed by app_parse_sections) from
 * now on. `loops` is the number of event loops; `workers` the pool. */
server_generation *generation_first(const apiary_config *cfg, void *const *sections, unsigned loops,
                                    pool *workers);

/* Loads the current generation's config file again (and the app's sections). Returns the new
 * generation, linked to `current`, or NULL when the file is bad (the reason is logged and nothing
 * changes). Keys that need a restart
 * keep their running values, each named in the log. */
server_generation *generation_reload(server_generation *current, unsigned loops);

/* The same from a JSON text instead of the file (the in-process test client, testing.h). */
server_generation *generation_reload_text(server_generation *current, unsigned loops, const char *json_text);

/* Frees `newest` and every older generation. */
void generation_free_all(server_generation *newest);

#endif
