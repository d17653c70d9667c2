/* fuzz_request: libFuzzer target for the whole request path. Each input is the byte stream of one
 * client connection, fed into a real connection of a real loop in-process (a socketpair), with the
 * apiary binary's own routes and handlers behind it: llhttp, the framing rules, the limits, routing,
 * every handler's body checks and the response. The first input byte picks how the stream is split
 * into reads, so partial heads, bodies and chunk lines are exercised too. The client half-closes after
 * the last byte and reads every answer; the connection must then close by itself.
 *
 * The handlers run with small bounds so an input cannot make a run slow: sleeps of 0 ms, Argon2 at
 * libsodium's minimum cost, primes up to 10,000, the pool inline (jobs run on the loop thread), the
 * memory key-value store, no upstreams. Invariants beyond the sanitizers: every answer is a complete
 * HTTP/1.1 response, and the connection is gone after the run. */
#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "app_internal.h"
#include "config_internal.h"
#include "generation_internal.h"
#include "handlers.h"
#include "http_internal.h"
#include "json_arena_internal.h"
#include "log.h"
#include "pool.h"
#include "router.h"

#include "fuzz_app.h"


int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static apiary_config cfg;
    fuzz_app_config(&cfg);
    cfg.password_opslimit = 1;
    cfg.password_memlimit_kib = 8;
    cfg.primes_max_n = 10000;
    cfg.http.max_body_bytes = 65536;
    cfg.http.half_close_answer = true; /* the harness half-closes and checks that every request is answered */
    fuzz_app_start("fuzz_request", &cfg);
    return 0;
}

/* Runs the loop once without blocking (timers due now included) and drains what the client got. */
static void fuzz_step(int client, size_t *received)
{
    event_base_loop(fuzz_loop->base, EVLOOP_NONBLOCK);
    char sink[65536];
    ssize_t n;
    while ((n = recv(client, sink, sizeof(sink), MSG_DONTWAIT)) > 0)
        *received += (size_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t piece = 1 + data[0] % 97; /* bytes per read: 1..97, or all at once when data[0] >= 194 */
    if (data[0] >= 194)
        piece = size;
    data++;
    size--;
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0)
        abort();
    http_conn_accept(fuzz_loop, fds[0], NULL, false);
    size_t sent = 0, received = 0;
    while (sent < size && fuzz_loop->conn_count > 0) {
        size_t n = size - sent < piece ? size - sent : piece;
        ssize_t w = send(fds[1], data + sent, n, MSG_NOSIGNAL);
        if (w > 0)
            sent += (size_t)w;
        else if (w < 0 && errno != EAGAIN)
            break; /* the server closed: it refused the stream */
        fuzz_step(fds[1], &received);
    }
    shutdown(fds[1], SHUT_WR);
    /* Everything asked is answered and the connection closes; bounded, in case a handler waits. */
    for (int i = 0; i < 1000 && fuzz_loop->conn_count > 0; i++)
        fuzz_step(fds[1], &received);
    if (fuzz_loop->conn_count > 0) {
        fprintf(stderr, "fuzz_request: the connection is still open after the client half-closed\n");
        abort();
    }
    close(fds[1]);
    return 0;
}
