/* test_loop: a minimal loop with a poster for unit tests of code that hands results back to a loop
 * from other threads (what http_loop gives a request scope): the worker pool's and SQL's tests. Header
 * only, included by one test file each. */
#ifndef APIARY_TEST_LOOP_H
#define APIARY_TEST_LOOP_H

#include <criterion/criterion.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "async.h"

/* Every wait is bounded by this; on a healthy machine each one takes milliseconds. */
#define TEST_LOOP_TIMEOUT_MS 10000u

static uint64_t test_loop_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

typedef struct post_item {
    struct post_item *next;
    void (*fn)(void *arg);
    void *arg;
} post_item;

typedef struct test_loop {
    struct event_base *base;
    struct event *post_ev;
    struct event *tick_ev; /* keeps EVLOOP_ONCE returning while we wait on other threads */
    pthread_mutex_t lock;
    post_item *head, *tail; /* under lock */
    atomic_int posted;      /* items handed to the poster (any thread) */
    atomic_int delivered;   /* items run on the loop */
    async_scope *scope;
} test_loop;

/* The poster: callable from any thread, runs fn(arg) on the loop's thread, in order. */
static void test_loop_post(void *target, void (*fn)(void *arg), void *arg)
{
    test_loop *l = target;
    post_item *item = malloc(sizeof(*item));
    if (!item)
        abort(); /* any thread: no criterion asserts here */
    item->next = NULL;
    item->fn = fn;
    item->arg = arg;
    pthread_mutex_lock(&l->lock);
    if (l->tail)
        l->tail->next = item;
    else
        l->head = item;
    l->tail = item;
    pthread_mutex_unlock(&l->lock);
    atomic_fetch_add(&l->posted, 1);
    event_active(l->post_ev, EV_READ, 0); /* thread-safe after evthread_use_pthreads() */
}

/* Runs what was posted. Also called directly by tests (on the loop thread) to hand results over
 * without giving the scope's runner a chance to run continuations, and by teardown, like
 * http_loop_free, so late results are freed. */
static void test_loop_drain(test_loop *l)
{
    pthread_mutex_lock(&l->lock);
    post_item *item = l->head;
    l->head = l->tail = NULL;
    pthread_mutex_unlock(&l->lock);
    while (item) {
        post_item *next = item->next;
        item->fn(item->arg);
        free(item);
        atomic_fetch_add(&l->delivered, 1);
        item = next;
    }
}

static void test_loop_on_post(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    test_loop_drain(arg);
}

static void test_loop_on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Once per process (criterion runs each test in its own), before any base exists: posting from worker
 * threads needs libevent's locks and notify fd. */
static void test_use_pthreads(void)
{
    if (evthread_use_pthreads() != 0)
        abort();
}

static void test_loop_init(test_loop *l)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, test_use_pthreads);
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    l->base = event_base_new();
    l->post_ev = event_new(l->base, -1, 0, test_loop_on_post, l);
    l->tick_ev = event_new(l->base, -1, EV_PERSIST, test_loop_on_tick, NULL);
    struct timeval tick = {0, 5000};
    event_add(l->tick_ev, &tick);
    l->scope = async_scope_new(l->base);
    async_scope_set_poster(l->scope, test_loop_post, l);
}

static void test_loop_free_scope(test_loop *l)
{
    async_scope_free(l->scope);
    l->scope = NULL;
}

static void test_loop_fini(test_loop *l)
{
    if (l->scope)
        test_loop_free_scope(l);
    test_loop_drain(l);
    event_free(l->tick_ev);
    event_free(l->post_ev);
    event_base_free(l->base);
    pthread_mutex_destroy(&l->lock);
}

/* Runs the loop until *counter reaches want; false on timeout. Safe on any loop thread (no asserts). */
static bool test_loop_run_until(test_loop *l, const atomic_int *counter, int want)
{
    uint64_t deadline = test_loop_now_ms() + TEST_LOOP_TIMEOUT_MS;
    while (atomic_load(counter) < want) {
        if (test_loop_now_ms() > deadline)
            return false;
        event_base_loop(l->base, EVLOOP_ONCE);
    }
    return true;
}

#endif
