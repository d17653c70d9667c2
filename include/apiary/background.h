/* background: work a handler starts that outlives its response (send the e-mail, warm the cache,
 * write the audit record) without making the client wait for it. FastAPI's BackgroundTasks, aiohttp's
 * spawned tasks.
 *
 * A background task is a coroutine in a scope of its own on the request's loop: it may await every
 * toolkit operation (sleep, upstream calls, Redis, SQL, pool jobs) on that scope, and it runs with the
 * request's settings (apiary_current() is the generation the request started on). It does not hold the
 * request: the handler answers when it likes, and the task runs on after.
 *
 * Bounds. Each loop runs at most limits.max_background_per_loop tasks at once; at the cap, and while
 * the server drains, http_background_start refuses at once (false) instead of queueing: the handler
 * decides (answer 503, or do the work inline). /metrics counts tasks running, started, refused, and
 * cancelled.
 *
 * Shutdown. SIGTERM's drain waits for the running tasks as it waits for requests in flight, within
 * drain_timeout_ms; a task still running then is cancelled (its awaits return ASYNC_CANCELLED, its
 * scope cleanups run) and a warning names it in the log. */
#ifndef APIARY_BACKGROUND_H
#define APIARY_BACKGROUND_H

#include <stdbool.h>
#include <stddef.h>

#include "async.h"
#include "http_request.h"

/* The task's body: awaits on `scope` (async_await(async_sleep(scope, 10))...). `arg` is the task's copy
 * of what was given to http_background_start, in the scope's memory. When it returns, the task ends and
 * its scope is freed. */
typedef void (*http_background_fn)(async_scope *scope, void *arg);

/* Starts fn as a background task on the request's loop, with a copy of arg_size bytes at arg (the
 * request's memory dies with its answer: copy what the task needs). `name` (static, for the log and
 * slow-callback warnings) says what it is. It runs at once until its first await, then on after the
 * handler returns. Returns false, having started nothing, when the loop is at
 * limits.max_background_per_loop, the server is draining, or no coroutine stack could be had. */
bool http_background_start(http_request *req, const char *name, http_background_fn fn, const void *arg,
                           size_t arg_size);

#endif
