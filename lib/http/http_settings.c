/* http_settings: the engine's built-in limits and timeouts. They must match config/apiary.json and
 * docs/config.md; tests/unit/app/config_test.c checks the shipped file against them. */
#include "http_settings_internal.h"

#include "http_compress_internal.h"

#include <string.h>

void http_settings_defaults(http_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->max_url_bytes = 8192;
    s->max_header_bytes = 16384;
    s->max_headers = 64;
    s->max_body_bytes = 1048576;
    s->json_max_depth = 128;
    s->json_max_values = 20000;
    /* Whole-server figure; the server divides it across loops once the thread count is known. */
    s->max_connections = 10000;
    s->output_buffer_bytes = 65536;
    s->max_async_per_loop = 10000;
    s->max_background_per_loop = 1024;
    s->header_timeout_ms = 10000;
    s->body_timeout_ms = 30000;
    s->keepalive_timeout_ms = 60000;
    s->write_timeout_ms = 30000;
    s->linger_timeout_ms = 2000;
    s->ws_max_message_bytes = 1048576;
    s->ws_send_queue_bytes = 1048576;
    s->ws_ping_interval_ms = 30000;
    s->ws_ping_timeout_ms = 10000;
    s->ws_close_timeout_ms = 5000;
    s->request_timeout_ms = 30000;
    s->sse_heartbeat_ms = 15000;
    s->slow_callback_ms = 100;
    /* Levels measured in bench/compress.sh (docs/compression.md): the lowest levels give most of the
     * ratio at a fraction of the CPU. */
    s->compress_enabled = true;
    s->compress_brotli = true;
    s->compress_gzip_level = 1;
    s->compress_brotli_level = 1;
    s->compress_min_bytes = 1024;
    s->compress_pool_bytes = 1048576;
    /* gzip first on equal q: at the default levels it is the cheaper and the smaller of the two on API
     * bodies (bench/compress_micro.c --defaults, docs/compression.md "Equal q: gzip first"). */
    memcpy(s->compress_prefer, http_coding_prefer_default, sizeof(s->compress_prefer));
}
