/* ws_handshake: the opening handshake's checks and the accept key (RFC 6455 4.2), with no connection
 * in sight (ws_internal.h). SHA-1 and base64 come from OpenSSL, which the library links already. */
#include <ctype.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

#include "ws_internal.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned digest_len = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha1(), NULL);
    EVP_DigestUpdate(md, key, key_len);
    EVP_DigestUpdate(md, ws_guid, sizeof(ws_guid) - 1);
    EVP_DigestFinal_ex(md, digest, &digest_len);
    EVP_MD_CTX_free(md);
    EVP_EncodeBlock((unsigned char *)out, digest, (int)digest_len); /* 20 bytes: 28 characters + NUL */
}

static bool ws_b64_char(char c) { return isalnum((unsigned char)c) || c == '+' || c == '/'; }

bool ws_key_valid(const char *key)
{
    if (!key || strlen(key) != 24 || key[22] != '=' || key[23] != '=')
        return false;
    for (int i = 0; i < 22; i++)
        if (!ws_b64_char(key[i]))
            return false;
    /* The 22nd character carries the last 2 bits of byte 16 and 4 padding bits, which must be zero. */
    return strchr("AQgw", key[21]) != NULL;
}

/* True when the comma-separated list holds `want` (elements trimmed of spaces and tabs). */
static bool ws_list_find(const char *list, const char *want, bool case_sensitive)
{
    size_t want_len = strlen(want);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        size_t len = (size_t)(end - start);
        if (len == want_len && len &&
            (case_sensitive ? memcmp(start, want, len) == 0 : strncasecmp(start, want, len) == 0))
            return true;
    }
    return false;
}

bool ws_has_token(const char *value, const char *token) { return value && ws_list_find(value, token, false); }

const char *ws_select_subprotocol(const char *offered, const char *const *ours)
{
    if (!offered || !ours)
        return NULL;
    for (; *ours; ours++)
        if (ws_list_find(offered, *ours, true))
            return *ours;
    return NULL;
}

ws_handshake_verdict ws_handshake_check(bool is_get, unsigned http_minor, const char *upgrade,
                                        const char *connection, const char *version, const char *key,
                                        const char **detail)
{
    if (!ws_has_token(upgrade, "websocket") || !ws_has_token(connection, "upgrade")) {
        *detail = "this route speaks WebSocket only: send Upgrade: websocket and Connection: Upgrade";
        return WS_HS_NOT_UPGRADE;
    }
    if (!is_get || http_minor < 1) {
        *detail = "a WebSocket upgrade is a GET over HTTP/1.1";
        return WS_HS_METHOD;
    }
    if (!version || strcmp(version, "13") != 0) {
        *detail = "only WebSocket version 13 is supported (Sec-WebSocket-Version: 13)";
        return WS_HS_VERSION;
    }
    if (!ws_key_valid(key)) {
        *detail = "Sec-WebSocket-Key must be the base64 of 16 bytes";
        return WS_HS_KEY;
    }
    *detail = NULL;
    return WS_HS_OK;
}
