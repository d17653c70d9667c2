/* Unit tests for lib/http/ws_handshake.c: the accept key (RFC 6455's own example), the key's form,
 * token lists, subprotocol selection and the verdict on an upgrade request's headers. */
#include <criterion/criterion.h>
#include <string.h>

#include "ws_internal.h"

Test(ws_handshake, accept_key_of_the_rfc_example)
{
    /* RFC 6455 1.3: "dGhlIHNhbXBsZSBub25jZQ==" -> "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" */
    char out[WS_ACCEPT_LEN + 1];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    ws_accept_key(key, strlen(key), out);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(ws_handshake, key_must_be_sixteen_bytes_of_base64)
{
    cr_assert(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=="));
    cr_assert(ws_key_valid("AAAAAAAAAAAAAAAAAAAAAA=="));
    cr_assert_not(ws_key_valid(NULL));
    cr_assert_not(ws_key_valid(""));
    cr_assert_not(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ"));      /* no padding */
    cr_assert_not(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ="));     /* 23 characters */
    cr_assert_not(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==="));   /* 25 */
    cr_assert_not(ws_key_valid("dGhlIHNhbXBsZSBub25jZR=="));    /* padding bits set: not 16 bytes */
    cr_assert_not(ws_key_valid("dGhlIHNhbXBsZSBub2 jZQ=="));    /* not base64 */
    cr_assert_not(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ%="));
}

Test(ws_handshake, token_lists)
{
    cr_assert(ws_has_token("Upgrade", "upgrade"));
    cr_assert(ws_has_token("keep-alive, Upgrade", "upgrade"));
    cr_assert(ws_has_token("  upgrade ,keep-alive", "upgrade"));
    cr_assert(ws_has_token("WebSocket", "websocket"));
    cr_assert_not(ws_has_token("upgrades", "upgrade"));
    cr_assert_not(ws_has_token("keep-alive", "upgrade"));
    cr_assert_not(ws_has_token("", "upgrade"));
    cr_assert_not(ws_has_token(NULL, "upgrade"));
}

Test(ws_handshake, subprotocol_is_the_routes_first_choice_the_client_offers)
{
    const char *const ours[] = {"v2.chat", "chat", NULL};
    cr_assert_str_eq(ws_select_subprotocol("chat, v2.chat", ours), "v2.chat");
    cr_assert_str_eq(ws_select_subprotocol("chat", ours), "chat");
    cr_assert_null(ws_select_subprotocol("CHAT", ours)); /* case-sensitive */
    cr_assert_null(ws_select_subprotocol("mqtt", ours));
    cr_assert_null(ws_select_subprotocol(NULL, ours));
    cr_assert_null(ws_select_subprotocol("chat", NULL));
}

static ws_handshake_verdict check(bool get, unsigned minor, const char *upgrade, const char *connection,
                                  const char *version, const char *key)
{
    const char *detail = NULL;
    ws_handshake_verdict v = ws_handshake_check(get, minor, upgrade, connection, version, key, &detail);
    cr_assert((v == WS_HS_OK) == (detail == NULL), "a refusal says why");
    return v;
}

Test(ws_handshake, upgrade_validation)
{
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    cr_assert_eq(check(true, 1, "websocket", "Upgrade", "13", key), WS_HS_OK);
    cr_assert_eq(check(true, 1, "WebSocket", "keep-alive, upgrade", "13", key), WS_HS_OK);
    cr_assert_eq(check(true, 1, NULL, NULL, NULL, NULL), WS_HS_NOT_UPGRADE);          /* a plain GET */
    cr_assert_eq(check(true, 1, "h2c", "Upgrade", "13", key), WS_HS_NOT_UPGRADE);
    cr_assert_eq(check(true, 1, "websocket", "keep-alive", "13", key), WS_HS_NOT_UPGRADE);
    cr_assert_eq(check(false, 1, "websocket", "Upgrade", "13", key), WS_HS_METHOD);
    cr_assert_eq(check(true, 0, "websocket", "Upgrade", "13", key), WS_HS_METHOD);
    cr_assert_eq(check(true, 1, "websocket", "Upgrade", "8", key), WS_HS_VERSION);
    cr_assert_eq(check(true, 1, "websocket", "Upgrade", NULL, key), WS_HS_VERSION);
    cr_assert_eq(check(true, 1, "websocket", "Upgrade", "13", NULL), WS_HS_KEY);
    cr_assert_eq(check(true, 1, "websocket", "Upgrade", "13", "abc"), WS_HS_KEY);
}
