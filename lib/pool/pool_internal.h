/* pool_internal: what other subsystems use of the pool beyond pool.h. Not installed. */
#ifndef APIARY_POOL_INTERNAL_H
#define APIARY_POOL_INTERNAL_H

#include "pool.h"

/* pool_new_niced with the workers' thread name (at most 15 characters are kept): SQLite's threads are
 * a pool of their own, and ps, top and the tests tell them from the CPU workers by name. */
pool *pool_new_named(unsigned threads, size_t queue_capacity, int nice, const char *name);

#endif
