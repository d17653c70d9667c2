/* testing: an in-process test client for apps. A test builds its app as main() does (routes, sections,
 * middleware, hooks), hands it to apiary_test_new instead of apiary_app_main, and sends it requests:
 * each goes through the whole engine (parsing, limits, routing, middleware, the handler, coroutines and
 * their awaits, the worker pool, the answer's bytes) and comes back as status, headers and body. No
 * listener, no port, no second process and no thread of its own: the app's event loop runs on the
 * calling thread while a request is in flight, and the request travels over a socketpair, exactly as in
 * the engine's fuzz harness.
 *
 *     Test(hello, greets)
 *     {
 *         apiary_test *t = apiary_test_new(hello_app(), "{\"limits\": {\"max_body_bytes\": 1024}}");
 *         apiary_test_response *r = apiary_test_get(t, "/hello?name=bee");
 *         cr_assert_eq(r->status, 200);
 *         cr_assert_str_eq(r->body, "{\"hello\":\"bee\"}");
 *         apiary_test_response_free(r);
 *         apiary_test_free(t);
 *     }
 *
 * What runs: the config (a JSON text, the file's format; NULL for the built-in defaults) is loaded and
 * checked as a file would be, the app's sections parsed, the worker pool started, the start hook and
 * then the startup hook run (apiary_app_on_startup: an app's sql_migrate creates its tables in the
 * test's database too), the built-in /healthz, /readyz, /metrics served beside the app's routes. SQL is
 * started only when the config has an "sql" section (no apiary.db appears in a test's directory): give
 * an app that uses SQL {"sql": {"url": "sqlite:/tmp/NAME.db"}}, a file of its own per test. Not run: the listeners,
 * signals, daemon mode, the access log file.
 *
 * Ownership: apiary_test_new takes the app (apiary_test_free frees both); each response is the
 * test's, freed with apiary_test_response_free (header and body pointers die with it).
 *
 * Threads: one test client at a time per process, used from one thread (a criterion test runs in a
 * process of its own). Upstream calls, Redis and timers work as on a server, since the loop is real. */
#ifndef APIARY_TESTING_H
#define APIARY_TESTING_H

#include <jansson.h>
#include <stddef.h>

typedef struct apiary_app apiary_app;
typedef struct apiary_test apiary_test;

typedef struct apiary_test_response {
    int status;       /* 0 when no complete answer came within the time limit (see head) */
    const char *head; /* status line and header lines as received, NUL-terminated */
    const char *body; /* the body, NUL-terminated for convenience (body_len counts the bytes) */
    size_t body_len;
} apiary_test_response;

/* Starts `app` (taken: apiary_test_free frees it) on config_json. Returns NULL after printing why to
 * stderr when one of the app's registrations was refused (apiary.h), the config or a section is
 * refused, or the start hook fails, as apiary_app_main would exit with 2 or 1. */
apiary_test *apiary_test_new(apiary_app *app, const char *config_json);

/* Loads config_json as a SIGHUP reload of a file would (app sections parsed again, the reload hook run,
 * requests dispatched from now on see it). Returns 0, or -1 (the reason logged) keeping the running
 * config. May be called from inside a handler of the test's app (on the loop's thread). */
int apiary_test_reload(apiary_test *t, const char *config_json);

/* Sends one request on a fresh connection and runs the loop until its answer is complete (a streamed
 * answer, stream.h: at its last chunk, the body given de-chunked) or `timeout_ms` passed (0: 10 s). `headers` are extra header lines ("Authorization: Bearer x\r\n...",
 * or NULL); Host and, with a body, Content-Length are added. Never NULL; free with
 * apiary_test_response_free. */
apiary_test_response *apiary_test_request(apiary_test *t, const char *method, const char *target, const char *headers,
                                          const void *body, size_t body_len, unsigned timeout_ms);

/* Shorthands: GET, and a JSON body (with Content-Type: application/json). */
apiary_test_response *apiary_test_get(apiary_test *t, const char *target);
apiary_test_response *apiary_test_send_json(apiary_test *t, const char *method, const char *target, const char *json);

/* The value of the first header called `name` (case-insensitive) of the answer, NUL-terminated and
 * owned by the response, or NULL. */
const char *apiary_test_header(const apiary_test_response *r, const char *name);
/* The body parsed as JSON (a new reference: json_decref it), or NULL when it is not JSON. */
json_t *apiary_test_json(const apiary_test_response *r);
void apiary_test_response_free(apiary_test_response *r);

/* Runs the loop for about `ms` (timers, background work, posted results) with no request in flight. */
void apiary_test_run(apiary_test *t, unsigned ms);

/* Stops the app: background work is cancelled, the start hook's resources and the app are freed. */
void apiary_test_free(apiary_test *t);

#endif
