/* fuzz_websocket: libFuzzer target for the WebSocket frame path (lib/http/ws.c and wslay behind it).
 * Each input is what a client sends after a valid upgrade to GET /v1/ws/echo, fed into a real
 * connection of a real loop in-process (a socketpair), with the apiary binary's own routes. The first
 * byte picks how the stream is split into reads (partial frame heads, masks and payloads), the second
 * the echo's form (callbacks, or the coroutine with ?mode=await). Bounds are small so the closes are
 * reached: messages above 4 KiB (1009), 8 KiB unsent (1008). Invariants beyond the sanitizers: the
 * upgrade is answered 101, and after the client's end of input the connection closes by itself. */
#include <errno.h>
#include <event2/event.h>
#include <stdbool.h>
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
    cfg.http.ws_max_message_bytes = 4096; /* small, so 1009 is within reach */
    cfg.http.ws_send_queue_bytes = 8192;  /* and the slow-consumer close too */
    cfg.http.ws_ping_interval_ms = 0;     /* no timers: the run is driven by the input alone */
    fuzz_app_start("fuzz_websocket", &cfg);
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

static const char fuzz_upgrade[] = "GET /v1/ws/echo%s HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n"
                                   "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t piece = 1 + data[0] % 97; /* bytes per read: 1..97, or all at once when data[0] >= 194 */
    if (data[0] >= 194)
        piece = size;
    bool await = data[1] & 1; /* the coroutine form (?mode=await) or the callback form */
    data += 2;
    size -= 2;
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0)
        abort();
    http_conn_accept(fuzz_loop, fds[0], NULL, false);
    char head[512];
    int head_len = snprintf(head, sizeof(head), fuzz_upgrade, await ? "?mode=await" : "");
    if (send(fds[1], head, (size_t)head_len, MSG_NOSIGNAL) != head_len)
        abort();
    char first[12];
    ssize_t got = 0;
    for (int i = 0; i < 100 && got < (ssize_t)sizeof(first); i++) {
        event_base_loop(fuzz_loop->base, EVLOOP_NONBLOCK);
        ssize_t n = recv(fds[1], first + got, sizeof(first) - (size_t)got, MSG_DONTWAIT);
        if (n > 0)
            got += n;
    }
    if (got < (ssize_t)sizeof(first) || memcmp(first, "HTTP/1.1 101", 12) != 0) {
        fprintf(stderr, "fuzz_websocket: the upgrade was not answered 101\n");
        abort();
    }
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
        fprintf(stderr, "fuzz_websocket: the WebSocket is still open after the client's end of input\n");
        abort();
    }
    close(fds[1]);
    return 0;
}
