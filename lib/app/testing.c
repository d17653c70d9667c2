/* testing: the in-process test client of testing.h. It does what apiary_app_main and server_run do
 * short of threads, listeners and signals (as the fuzz harness tests/fuzz/fuzz_request.c does), and
 * drives one loop on the caller's thread: a request is written into one end of a socketpair whose
 * other end the loop serves as an accepted connection, and the loop runs until the answer's bytes are
 * complete (Content-Length framed, or chunked for a streamed answer, which the test gets de-chunked). */
#include "testing.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "app_internal.h"
#include "coro_internal.h"
#include "generation_internal.h"
#include "http_loop_internal.h"
#include "http_metrics_internal.h"
#include "json_arena_internal.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "sql.h"
#include "xalloc_internal.h"

#define TEST_DEFAULT_TIMEOUT_MS 10000

struct apiary_test {
    apiary_app *app;
    server_generation *gen;
    pool *workers;
    router *routes;
    http_loop *loop;
    bool sql_started;
    bool pubsub_started;
};

typedef struct test_response {
    apiary_test_response pub;
    char *raw; /* head + "\0" + body + "\0": pub.head and pub.body point into it */
    char *header_copies; /* apiary_test_header's answers, a list of allocations */
} test_response;

/* Starts SQL only when the test asks for it: the defaults would open ./apiary.db. */
static bool test_wants_sql(const apiary_config *cfg)
{
    sql_settings defaults;
    sql_settings_defaults(&defaults);
    return memcmp(&defaults, &cfg->sql, sizeof(defaults)) != 0;
}

apiary_test *apiary_test_new(apiary_app *app, const char *config_json)
{
    apiary_test *t = xcalloc(1, sizeof(*t));
    t->app = app;
    app_set_running(app);
    if (app_check_refusals(app, "apiary_test_new: ") != 0) /* as apiary_app_main: exit status 2 */
        goto fail_app;
    if (http_loop_global_init() != 0) {
        fprintf(stderr, "apiary_test_new: libevent has no pthreads support\n");
        goto fail_app;
    }
    apiary_config cfg;
    char err[CONFIG_ERROR_MAX];
    config_defaults(&cfg);
    if (config_json && config_load_string(&cfg, config_json, "test config", err) != 0) {
        fprintf(stderr, "apiary_test_new: %s\n", err);
        goto fail_app;
    }
    cfg.threads = 1;
    cfg.threads_overridden = true; /* a reload's file cannot change it quietly either */
    snprintf(cfg.source_path, sizeof(cfg.source_path), "test config");
    log_set_level(cfg.log_level);
    async_coro_configure(cfg.coro_stack_kib, cfg.coro_idle_stacks);
    void *sections[CONFIG_MAX_APP_SECTIONS] = {0};
    if (app_parse_sections(&cfg, sections, err) != 0) {
        fprintf(stderr, "apiary_test_new: %s\n", err);
        config_release(&cfg);
        goto fail_app;
    }
    t->workers = cfg.pool_run_inline ? pool_new_inline() : pool_new(cfg.pool_threads, cfg.pool_queue_size);
    t->gen = generation_first(&cfg, sections, 1, t->workers);
    app_set_current(t->gen);
    if (test_wants_sql(&t->gen->cfg)) {
        if (sql_start(&t->gen->cfg.sql) != 0) {
            fprintf(stderr, "apiary_test_new: SQL did not start\n");
            goto fail_gen;
        }
        t->sql_started = true;
    }
    t->routes = router_new();
    /* As a real start: the start hook, the routes, then the startup hook (the app's migrations). */
    if (app_run_start_hook(t->gen) != 0 || app_register_routes(t->routes) != 0 ||
        app_run_startup(t->gen, &t->gen->http, t->routes, t->workers) != 0) {
        fprintf(stderr, "apiary_test_new: the app's start hook, routes or startup hook failed\n");
        goto fail_gen;
    }
    http_loop_options opts = {
        .id = 0, .listen_fd = -1, .settings = &t->gen->http, .router = t->routes, .middleware = app_middleware()};
    t->loop = http_loop_new(&opts);
    if (!t->loop)
        goto fail_gen;
    static http_loop *metrics_loops[1];
    metrics_loops[0] = t->loop;
    http_metrics_register(metrics_loops, 1, t->routes);
    metrics_add_source(pool_metrics_source, t->workers);
    if (!pubsub_running()) { /* one test client of a process serves pub/sub (its loop is the only one) */
        pubsub_settings ps = t->gen->cfg.pubsub;
        ps.redis = &t->gen->cfg.redis;
        pubsub_start(&ps, &t->loop, 1);
        t->pubsub_started = true;
    }
    return t;

fail_gen:
    router_free(t->routes);
    if (t->sql_started)
        sql_shutdown();
    pool_shutdown(t->workers);
    pool_free(t->workers);
    if (t->sql_started)
        sql_stop();
    app_set_current(NULL);
    generation_free_all(t->gen);
fail_app:
    app_set_running(NULL);
    app_free(app);
    free(t);
    return NULL;
}

typedef struct test_reload {
    apiary_test *t;
    const char *json;
    server_generation *next;
} test_reload;

static void test_reload_load(void *arg)
{
    test_reload *r = arg;
    r->next = generation_reload_text(r->t->gen, 1, r->json);
}

int apiary_test_reload(apiary_test *t, const char *config_json)
{
    /* A config is tens of KiB of struct: loaded on the loop's stack, not a coroutine handler's. */
    test_reload r = {t, config_json, NULL};
    async_coro_outside(test_reload_load, &r);
    server_generation *next = r.next;
    if (!next)
        return -1;
    log_set_level(next->cfg.log_level);
    app_run_reload_hook(next);
    app_set_current(next);
    http_loop_update_settings(t->loop, &next->http);
    t->gen = next;
    return 0;
}

static uint64_t test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One turn of the loop, waiting at most `ms` for something to happen. */
static void test_turn(apiary_test *t, unsigned ms)
{
    struct event_base *base = http_loop_base(t->loop);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_loop(base, EVLOOP_ONCE);
}

void apiary_test_run(apiary_test *t, unsigned ms)
{
    uint64_t until = test_now_ms() + ms;
    for (uint64_t now = test_now_ms(); now < until; now = test_now_ms())
        test_turn(t, (unsigned)(until - now < 10 ? until - now : 10));
}

typedef struct test_buf {
    char *data;
    size_t len, cap;
} test_buf;

static void test_buf_add(test_buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* A chunked body (a streamed answer, stream.h) from `p`: its length up to the end of the last chunk
 * when all of it is there, else 0; the de-chunked bytes go to `body` when it is not NULL. Trailers are
 * not expected (the engine sends none). */
static size_t test_dechunk(const char *p, size_t len, test_buf *body)
{
    size_t pos = 0;
    for (;;) {
        const char *eol = memmem(p + pos, len - pos, "\r\n", 2);
        if (!eol)
            return 0;
        size_t size = strtoul(p + pos, NULL, 16);
        pos = (size_t)(eol - p) + 2;
        if (len - pos < size + 2)
            return 0;
        if (body && size)
            test_buf_add(body, p + pos, size);
        pos += size + 2;
        if (size == 0)
            return pos;
    }
}

/* The answer's length when `in` holds all of it, else 0. */
static size_t test_answer_complete(const test_buf *in, bool head_only, size_t *head_len)
{
    if (!in->data)
        return 0;
    const char *end = strstr(in->data, "\r\n\r\n");
    if (!end)
        return 0;
    *head_len = (size_t)(end - in->data) + 2; /* keeps the last header line's CRLF */
    size_t body_at = (size_t)(end - in->data) + 4;
    size_t length = 0;
    bool chunked = false;
    for (const char *line = strstr(in->data, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
            length = strtoul(line + 2 + 15, NULL, 10);
        if (strncasecmp(line + 2, "Transfer-Encoding: chunked", 26) == 0)
            chunked = true;
    }
    if (chunked && !head_only) {
        size_t n = in->len > body_at ? test_dechunk(in->data + body_at, in->len - body_at, NULL) : 0;
        return n ? body_at + n : 0;
    }
    if (head_only)
        length = 0;
    return in->len >= body_at + length ? body_at + length : 0;
}

apiary_test_response *apiary_test_request(apiary_test *t, const char *method, const char *target, const char *headers,
                                          const void *body, size_t body_len, unsigned timeout_ms)
{
    test_buf out = {0}, in = {0};
    char line[64];
    test_buf_add(&out, method, strlen(method));
    test_buf_add(&out, " ", 1);
    test_buf_add(&out, target, strlen(target));
    test_buf_add(&out, " HTTP/1.1\r\nHost: apiary-test\r\n", 30);
    if (headers)
        test_buf_add(&out, headers, strlen(headers));
    if (body) {
        int n = snprintf(line, sizeof(line), "Content-Length: %zu\r\n", body_len);
        test_buf_add(&out, line, (size_t)n);
    }
    test_buf_add(&out, "\r\n", 2);
    if (body && body_len)
        test_buf_add(&out, body, body_len);

    test_response *r = xcalloc(1, sizeof(*r));
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
        log_error("apiary_test_request: socketpair: %s", strerror(errno));
        r->raw = xcalloc(2, 1);
        r->pub.head = r->pub.body = r->raw;
        free(out.data);
        return &r->pub;
    }
    http_loop_adopt(t->loop, fds[0]);
    uint64_t deadline = test_now_ms() + (timeout_ms ? timeout_ms : TEST_DEFAULT_TIMEOUT_MS);
    bool head_only = strcmp(method, "HEAD") == 0;
    size_t sent = 0, total = 0, head_len = 0;
    while (test_now_ms() < deadline) {
        while (sent < out.len) {
            ssize_t w = send(fds[1], out.data + sent, out.len - sent, MSG_NOSIGNAL);
            if (w <= 0)
                break; /* full (the loop reads on), or the server closed: its answer says why */
            sent += (size_t)w;
        }
        test_turn(t, 10);
        char chunk[16384];
        ssize_t n;
        while ((n = recv(fds[1], chunk, sizeof(chunk), 0)) > 0)
            test_buf_add(&in, chunk, (size_t)n);
        if ((total = test_answer_complete(&in, head_only, &head_len)) != 0 || n == 0)
            break;
    }
    close(fds[1]);
    test_turn(t, 0); /* the server side sees the close and lets the connection go */
    free(out.data);
    if (!total) {
        log_error("apiary_test_request: %s %s: no complete answer (%zu bytes came)", method, target, in.len);
        r->raw = xcalloc(1, in.len + 2);
        if (in.len)
            memcpy(r->raw, in.data, in.len);
        r->pub.head = r->raw;
        r->pub.body = r->raw + in.len;
        free(in.data);
        return &r->pub;
    }
    size_t body_at = head_len + 2;
    if (total > body_at && strcasestr(in.data, "\r\nTransfer-Encoding: chunked\r\n") &&
        (size_t)(strcasestr(in.data, "\r\nTransfer-Encoding: chunked\r\n") - in.data) < head_len) {
        /* A streamed answer: hand the test its body de-chunked, as a client library would. */
        test_buf body = {0};
        test_dechunk(in.data + body_at, total - body_at, &body);
        in.len = body_at;
        if (body.len)
            test_buf_add(&in, body.data, body.len);
        total = in.len;
        free(body.data);
    }
    r->raw = xmalloc(total + 2);
    memcpy(r->raw, in.data, head_len);
    r->raw[head_len] = '\0';
    memcpy(r->raw + head_len + 1, in.data + body_at, total - body_at);
    r->raw[head_len + 1 + total - body_at] = '\0';
    r->pub.head = r->raw;
    r->pub.body = r->raw + head_len + 1;
    r->pub.body_len = total - body_at;
    r->pub.status = (int)strtol(r->raw + 9, NULL, 10); /* "HTTP/1.1 200 OK" */
    free(in.data);
    return &r->pub;
}

apiary_test_response *apiary_test_get(apiary_test *t, const char *target)
{
    return apiary_test_request(t, "GET", target, NULL, NULL, 0, 0);
}

apiary_test_response *apiary_test_send_json(apiary_test *t, const char *method, const char *target, const char *json)
{
    return apiary_test_request(t, method, target, "Content-Type: application/json\r\n", json, strlen(json), 0);
}

const char *apiary_test_header(const apiary_test_response *pub, const char *name)
{
    test_response *r = (test_response *)pub;
    size_t name_len = strlen(name);
    for (const char *line = strstr(pub->head, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        const char *field = line + 2;
        if (strncasecmp(field, name, name_len) != 0 || field[name_len] != ':')
            continue;
        const char *v = field + name_len + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        const char *end = strstr(v, "\r\n");
        size_t len = end ? (size_t)(end - v) : strlen(v);
        /* Each answer is its own allocation, chained behind a pointer at its start. */
        char *copy = xmalloc(sizeof(char *) + len + 1);
        memcpy(copy, &r->header_copies, sizeof(char *));
        r->header_copies = copy;
        memcpy(copy + sizeof(char *), v, len);
        copy[sizeof(char *) + len] = '\0';
        return copy + sizeof(char *);
    }
    return NULL;
}

json_t *apiary_test_json(const apiary_test_response *r)
{
    if (!r->body_len)
        return NULL;
    return json_loadb(r->body, r->body_len, JSON_DECODE_ANY, NULL);
}

void apiary_test_response_free(apiary_test_response *pub)
{
    if (!pub)
        return;
    test_response *r = (test_response *)pub;
    while (r->header_copies) {
        char *next;
        memcpy(&next, r->header_copies, sizeof(char *));
        free(r->header_copies);
        r->header_copies = next;
    }
    free(r->raw);
    free(r);
}

void apiary_test_free(apiary_test *t)
{
    if (!t)
        return;
    /* As a drain past its timeout: what still runs is cancelled, then the loop is gone. */
    http_loop_stop(t->loop);
    http_loop_run(t->loop);
    if (t->sql_started)
        sql_shutdown(); /* SQLite's threads, as the server does beside the pool */
    pool_shutdown(t->workers);
    metrics_clear_sources();
    if (t->pubsub_started)
        pubsub_stop();
    http_loop_free(t->loop);
    pool_free(t->workers);
    if (t->sql_started)
        sql_stop();
    app_set_current(NULL);
    generation_free_all(t->gen);
    router_free(t->routes);
    app_set_running(NULL);
    app_free(t->app);
    free(t);
}
