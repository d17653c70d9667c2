/* ws_internal: the pure parts of the WebSocket handshake (ws_handshake.c), apart from the connection
 * code (ws.c) so they are unit-tested on plain strings: the accept key, Sec-WebSocket-Key's form,
 * token lists, subprotocol selection, and the verdict on a request's headers. */
#ifndef APIARY_WS_INTERNAL_H
#define APIARY_WS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 */

/* Sec-WebSocket-Accept for `key` (RFC 6455 4.2.2: base64(SHA-1(key + GUID))), NUL-terminated. */
void ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1]);

/* True when `key` is the base64 of 16 bytes (24 characters, "==" padding), as RFC 6455 4.1 requires. */
bool ws_key_valid(const char *key);

/* True when the comma-separated list `value` holds `token` (case-insensitive, whitespace trimmed). */
bool ws_has_token(const char *value, const char *token);

/* The first of `ours` (NULL-terminated, in our order of preference) that the client's comma-separated
 * list `offered` names (exactly, as subprotocols are case-sensitive); NULL when none or either is NULL. */
const char *ws_select_subprotocol(const char *offered, const char *const *ours);

/* The handshake's verdict on a request's headers (NULL when absent). */
typedef enum ws_handshake_verdict {
    WS_HS_OK,
    WS_HS_NOT_UPGRADE, /* 426: not a WebSocket upgrade (no Upgrade: websocket / Connection: upgrade) */
    WS_HS_VERSION,     /* 426 + Sec-WebSocket-Version: 13: another version, or none */
    WS_HS_KEY,         /* 400: Sec-WebSocket-Key missing or not 16 bytes of base64 */
    WS_HS_METHOD,      /* 426: not a GET over HTTP/1.1 */
} ws_handshake_verdict;

/* Checks method (`is_get`), HTTP minor version and the four headers; `detail` gets a sentence for the
 * problem answer. */
ws_handshake_verdict ws_handshake_check(bool is_get, unsigned http_minor, const char *upgrade,
                                        const char *connection, const char *version, const char *key,
                                        const char **detail);

#endif
