/* http_conn_limit: what a loop does when a new client arrives and the loop already holds its share of
 * max_connections. Leaving the client in the kernel's backlog would let anyone who can open that many
 * sockets shut every later client out (a health check included), so instead:
 *   1. close the connections that cost nothing to lose — idle keep-alive connections and connections
 *      that have sent nothing yet — oldest idle first and several at once (as nginx does with its
 *      reusable connections), and serve the new client;
 *   2. when every connection is mid-request, accept the client anyway, over the limit, and answer its
 *      request 503 with Retry-After and Connection: close — at most HTTP_CONN_LIMIT_OVERFLOW such
 *      clients at a time per loop; past that, new clients wait in the backlog again.
 * The same reclaim runs when accept(2) fails for want of descriptors (EMFILE/ENFILE). Both events are
 * counted on /metrics and logged at most once a second per loop. */
#include <errno.h>
#include <sys/ioctl.h>
#include <string.h>

#include "http_internal.h"
#include "log.h"

/* Idle connections closed at once: room for a burst of new clients without a scan per client, but
 * never more than an eighth of a small limit. */
#define HTTP_CONN_LIMIT_RECLAIM_BATCH 16
#define HTTP_CONN_LIMIT_FRESH_GRACE_MS 1000

/* Once a second at most: what happened at the limit since the last line. */
static void http_conn_limit_log(http_loop *loop)
{
    uint64_t now = http_conn_now_ms();
    if (now < loop->limit_logged_ms + 1000)
        return;
    loop->limit_logged_ms = now;
    log_warn("loop %u: at max_connections (%zu on this loop): closed %llu idle connections to serve new "
             "clients, answered %llu new clients 503 (all connections busy) since the last report",
             loop->id, loop->settings->max_connections, (unsigned long long)loop->limit_reclaimed_unlogged,
             (unsigned long long)loop->limit_refused_unlogged);
    loop->limit_reclaimed_unlogged = loop->limit_refused_unlogged = 0;
}

/* Nothing is lost by closing it: between requests (or before the first), nothing unsent, nothing
 * unparsed, nothing waiting in the socket that the loop has not read yet. Clients retry a keep-alive
 * connection closed while idle (RFC 9112 9.3.1). A connection that has sent nothing yet counts only
 * after HTTP_CONN_LIMIT_FRESH_GRACE_MS: a client that just connected is about to send its request. */
static bool http_conn_limit_reclaimable(const http_conn *conn, uint64_t now_ms)
{
    if (conn->state != HTTP_CONN_IDLE || conn->over_limit || conn->writing || buf_pending(&conn->out) > 0 ||
        conn->parse_pos != conn->in.len)
        return false;
    if (conn->fresh && now_ms < conn->accepted_ms + HTTP_CONN_LIMIT_FRESH_GRACE_MS)
        return false;
    int unread = 0;
    return ioctl(conn->fd, FIONREAD, &unread) == 0 && unread == 0;
}

size_t http_conn_limit_reclaim(http_loop *loop)
{
    size_t closed = 0, batch = 1 + loop->settings->max_connections / 8;
    if (batch > HTTP_CONN_LIMIT_RECLAIM_BATCH)
        batch = HTTP_CONN_LIMIT_RECLAIM_BATCH;
    /* The list's tail holds the connections that went idle longest ago (http_loop_conn_idle moves a
     * connection to the head when it goes idle); busy ones in between are skipped. */
    http_conn *conn = loop->conns_tail;
    uint64_t now = http_conn_now_ms();
    while (conn && closed < batch) {
        http_conn *prev = conn->prev; /* force_close unlinks conn */
        if (http_conn_limit_reclaimable(conn, now)) {
            http_conn_force_close(conn);
            closed++;
        }
        conn = prev;
    }
    if (closed) {
        HTTP_STAT_ADD(loop, connections_reclaimed, closed);
        loop->limit_reclaimed_unlogged += closed;
        http_conn_limit_log(loop);
    }
    return closed;
}

/* Over-limit connections hold the excess over max: the others are the loop's share. */
static bool http_conn_limit_share_full(const http_loop *loop)
{
    return loop->conn_count - loop->over_limit_count >= loop->settings->max_connections;
}

bool http_conn_limit_saturated(const http_loop *loop)
{
    return http_conn_limit_share_full(loop) && loop->over_limit_count >= HTTP_CONN_LIMIT_OVERFLOW;
}

bool http_conn_limit_admit(http_loop *loop)
{
    if (!http_conn_limit_share_full(loop) || http_conn_limit_reclaim(loop) > 0)
        return false;
    return true;
}

void http_conn_limit_refused(http_loop *loop)
{
    HTTP_STAT_ADD(loop, connections_refused, 1);
    loop->limit_refused_unlogged++;
    http_conn_limit_log(loop);
}
