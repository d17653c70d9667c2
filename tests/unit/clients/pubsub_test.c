/* pubsub_test: the pub/sub core on two real loops (each on its own thread, no listener): delivery to
 * the subscribers of a topic on both loops and to no one else, once per message; a delivery callback
 * that unsubscribes itself and its neighbour in the middle of a walk (the neighbour is not called, and
 * under ASan nothing freed is touched); subscriptions that end with their scope; publishing from many
 * threads at once; and the refusals (bad topic, too large, not running). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "async.h"
#include "http_loop_internal.h"
#include "http_settings_internal.h"
#include "pubsub_internal.h"
#include "router.h"

#define WAIT_MS 10000

typedef struct fixture {
    http_settings settings;
    router *routes;
    http_loop *loops[2];
    pthread_t threads[2];
} fixture;

static fixture fx;

static void *loop_main(void *arg)
{
    http_loop_run(arg);
    return NULL;
}

static void setup(void)
{
    cr_assert_eq(http_loop_global_init(), 0);
    http_settings_defaults(&fx.settings);
    fx.routes = router_new();
    for (int i = 0; i < 2; i++) {
        http_loop_options o = {.id = (unsigned)i, .listen_fd = -1, .settings = &fx.settings, .router = fx.routes};
        fx.loops[i] = http_loop_new(&o);
        cr_assert_not_null(fx.loops[i]);
    }
    pubsub_settings ps = {.backend = PUBSUB_BACKEND_LOCAL, .max_message_bytes = 1024};
    pubsub_start(&ps, fx.loops, 2);
    for (int i = 0; i < 2; i++)
        pthread_create(&fx.threads[i], NULL, loop_main, fx.loops[i]);
}

static void teardown(void)
{
    for (int i = 0; i < 2; i++)
        http_loop_stop(fx.loops[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(fx.threads[i], NULL);
    pubsub_stop();
    for (int i = 0; i < 2; i++)
        http_loop_free(fx.loops[i]);
    router_free(fx.routes);
}

/* Runs fn(arg) on loop i and waits until it has run. */
typedef struct on_loop {
    void (*fn)(void *arg);
    void *arg;
    atomic_bool done;
} on_loop;

static void on_loop_run(void *p)
{
    on_loop *o = p;
    o->fn(o->arg);
    atomic_store(&o->done, true);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void run_on(int i, void (*fn)(void *arg), void *arg)
{
    on_loop o = {.fn = fn, .arg = arg};
    http_loop_post(fx.loops[i], on_loop_run, &o);
    uint64_t until = now_ms() + WAIT_MS;
    while (!atomic_load(&o.done) && now_ms() < until) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    cr_assert(atomic_load(&o.done), "loop %d did not run the posted function", i);
}

static bool wait_for(atomic_int *v, int want)
{
    uint64_t until = now_ms() + WAIT_MS;
    while (atomic_load(v) != want && now_ms() < until) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return atomic_load(v) == want;
}

/* A subscriber that counts and remembers the last message. */
typedef struct counter {
    int loop;
    const char *topic;
    atomic_int got;
    char last[64];
    pubsub_sub *sub;
    /* for the walk test: unsubscribe these when called */
    pubsub_sub **kill[2];
} counter;

static void count_deliver(pubsub_sub *sub, const pubsub_message *m, void *arg)
{
    (void)sub;
    counter *c = arg;
    snprintf(c->last, sizeof(c->last), "%.*s", (int)m->len, m->data);
    for (int i = 0; i < 2; i++)
        if (c->kill[i] && *c->kill[i]) {
            pubsub_unsubscribe(*c->kill[i]);
            *c->kill[i] = NULL;
        }
    atomic_fetch_add(&c->got, 1);
}

static void do_subscribe(void *arg)
{
    counter *c = arg;
    c->sub = pubsub_subscribe(fx.loops[c->loop], c->topic, count_deliver, c);
}

static void do_unsubscribe(void *arg)
{
    counter *c = arg;
    pubsub_unsubscribe(c->sub);
    c->sub = NULL;
}

TestSuite(pubsub, .init = setup, .fini = teardown, .timeout = 60);

Test(pubsub, reaches_the_topic_on_both_loops_once)
{
    counter a0 = {.loop = 0, .topic = "room"}, a1 = {.loop = 1, .topic = "room"}, b1 = {.loop = 1, .topic = "other"};
    run_on(0, do_subscribe, &a0);
    run_on(1, do_subscribe, &a1);
    run_on(1, do_subscribe, &b1);
    cr_assert_not_null(a0.sub);
    cr_assert_eq(pubsub_publish("room", "hello", 5), PUBSUB_OK);
    cr_assert(wait_for(&a0.got, 1));
    cr_assert(wait_for(&a1.got, 1));
    cr_assert_str_eq(a0.last, "hello");
    cr_assert_str_eq(a1.last, "hello");
    cr_assert_eq(pubsub_publish("other", "x", 1), PUBSUB_OK);
    cr_assert(wait_for(&b1.got, 1));
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    cr_assert_eq(atomic_load(&a0.got), 1);
    cr_assert_eq(atomic_load(&a1.got), 1);
    run_on(0, do_unsubscribe, &a0);
    run_on(1, do_unsubscribe, &a1);
    run_on(1, do_unsubscribe, &b1);
    pubsub_stats st;
    pubsub_stats_read(&st);
    cr_assert_eq(st.subscribers, 0);
}

Test(pubsub, unsubscribing_during_the_walk)
{
    /* Three subscribers on one loop, in this order: the first unsubscribes itself and the second. */
    counter c[3] = {{.loop = 0, .topic = "walk"}, {.loop = 0, .topic = "walk"}, {.loop = 0, .topic = "walk"}};
    for (int i = 0; i < 3; i++)
        run_on(0, do_subscribe, &c[i]);
    c[0].kill[0] = &c[0].sub;
    c[0].kill[1] = &c[1].sub;
    cr_assert_eq(pubsub_publish("walk", "1", 1), PUBSUB_OK);
    cr_assert(wait_for(&c[0].got, 1));
    cr_assert(wait_for(&c[2].got, 1));
    cr_assert_eq(atomic_load(&c[1].got), 0, "an unsubscribed neighbour was still called");
    /* The topic goes on with the third only. */
    cr_assert_eq(pubsub_publish("walk", "2", 1), PUBSUB_OK);
    cr_assert(wait_for(&c[2].got, 2));
    cr_assert_eq(atomic_load(&c[0].got), 1);
    /* The last one leaving in its own walk frees the topic under the walk's feet: not touched. */
    c[2].kill[0] = &c[2].sub;
    cr_assert_eq(pubsub_publish("walk", "3", 1), PUBSUB_OK);
    cr_assert(wait_for(&c[2].got, 3));
    cr_assert_eq(pubsub_publish("walk", "4", 1), PUBSUB_OK);
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    cr_assert_eq(atomic_load(&c[2].got), 3);
}

typedef struct scoped {
    async_scope *scope;
    counter c;
} scoped;

static void do_scoped_subscribe(void *arg)
{
    scoped *s = arg;
    s->scope = async_scope_new(http_loop_base(fx.loops[1]));
    s->c.sub = pubsub_subscribe_in(s->scope, fx.loops[1], "scoped", count_deliver, &s->c);
}

static void do_scope_free(void *arg)
{
    scoped *s = arg;
    async_scope_free(s->scope);
}

Test(pubsub, a_subscription_ends_with_its_scope)
{
    scoped s = {.c = {.loop = 1, .topic = "scoped"}};
    run_on(1, do_scoped_subscribe, &s);
    cr_assert_not_null(s.c.sub);
    cr_assert_eq(pubsub_publish("scoped", "a", 1), PUBSUB_OK);
    cr_assert(wait_for(&s.c.got, 1));
    run_on(1, do_scope_free, &s);
    pubsub_stats st;
    pubsub_stats_read(&st);
    cr_assert_eq(st.subscribers, 0);
    cr_assert_eq(pubsub_publish("scoped", "b", 1), PUBSUB_OK);
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    cr_assert_eq(atomic_load(&s.c.got), 1);
}

static void *publisher(void *arg)
{
    (void)arg;
    for (int i = 0; i < 250; i++)
        cr_assert_eq(pubsub_publish("many", "m", 1), PUBSUB_OK);
    return NULL;
}

Test(pubsub, many_threads_publishing)
{
    counter a = {.loop = 0, .topic = "many"}, b = {.loop = 1, .topic = "many"};
    run_on(0, do_subscribe, &a);
    run_on(1, do_subscribe, &b);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, publisher, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_assert(wait_for(&a.got, 1000));
    cr_assert(wait_for(&b.got, 1000));
    run_on(0, do_unsubscribe, &a);
    run_on(1, do_unsubscribe, &b);
}

Test(pubsub, refusals)
{
    char big[1025] = {0};
    cr_assert_eq(pubsub_publish("", "x", 1), PUBSUB_INVALID);
    cr_assert_eq(pubsub_publish("has space", "x", 1), PUBSUB_INVALID);
    cr_assert_eq(pubsub_publish("new\nline", "x", 1), PUBSUB_INVALID);
    char long_topic[PUBSUB_TOPIC_MAX + 2];
    memset(long_topic, 't', sizeof(long_topic) - 1);
    long_topic[sizeof(long_topic) - 1] = '\0';
    cr_assert_eq(pubsub_publish(long_topic, "x", 1), PUBSUB_INVALID);
    long_topic[PUBSUB_TOPIC_MAX] = '\0';
    cr_assert_eq(pubsub_publish(long_topic, "x", 1), PUBSUB_OK);
    cr_assert_eq(pubsub_publish("ok", big, sizeof(big)), PUBSUB_INVALID);
    cr_assert_eq(pubsub_publish("ok", big, 1024), PUBSUB_OK);
    cr_assert_null(pubsub_subscribe(fx.loops[0], "bad topic", count_deliver, NULL));
    cr_assert(pubsub_topic_valid("a.b_c:d-E9"));
    cr_assert(!pubsub_topic_valid(NULL));
}

Test(pubsub_stopped, publishing_without_a_server_is_unavailable)
{
    cr_assert_eq(pubsub_publish("t", "x", 1), PUBSUB_UNAVAILABLE);
    cr_assert_null(pubsub_subscribe(NULL, "t", count_deliver, NULL));
}
