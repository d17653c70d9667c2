/* http_compress: content coding of responses (docs/compression.md). The Accept-Encoding parser and
 * chooser (RFC 9110 12.5.3), the table of media types worth compressing, the decision for one answer
 * (coding, Vary, or 406), and gzip (libdeflate) / Brotli one-shot compressors with per-thread state. The
 * parsers touch no connection, so they are unit-tested and fuzzed on plain strings. */
#ifndef APIARY_HTTP_COMPRESS_H
#define APIARY_HTTP_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "http_settings_internal.h"

typedef enum http_coding {
    HTTP_CODING_IDENTITY = 0,
    HTTP_CODING_GZIP = 1,
    HTTP_CODING_BR = 2,
    HTTP_CODING_NONE = -1, /* nothing the client accepts: 406 */
} http_coding;

#define HTTP_CODING_BIT(c) (1u << (c))
#define HTTP_CODINGS_ALL (HTTP_CODING_BIT(HTTP_CODING_IDENTITY) | HTTP_CODING_BIT(HTTP_CODING_GZIP) | \
                          HTTP_CODING_BIT(HTTP_CODING_BR))

/* The qvalue (0..1000) the Accept-Encoding value gives each coding, in q[HTTP_CODING_*]. A coding
 * not named gets the q of "*" when there is one; identity not named (and not excluded by "*;q=0")
 * gets 1, the lowest acceptable: acceptable (RFC 9110 12.5.3), but any coding the client names with
 * q > 0 is preferred, as nginx and every browser-facing server do ("gzip;q=0.8" means gzip); the
 * others 0. "x-gzip" counts as gzip. A member whose qvalue is malformed is ignored.
 * An empty value (the header present with no codings) leaves only identity acceptable. */
void http_accept_encoding_q(const char *value, size_t len, unsigned q[3]);

/* The order codings are preferred in on equal q when the config says nothing (compression.prefer):
 * gzip, then br. */
extern const unsigned char http_coding_prefer_default[HTTP_SETTINGS_CODINGS];

/* The coding to answer with among `offered` (HTTP_CODING_BIT set), given the q-values of
 * http_accept_encoding_q: the highest q above 0; on a tie the codings in `prefer` order
 * (HTTP_SETTINGS_CODINGS of them, each once; NULL: http_coding_prefer_default), then identity.
 * HTTP_CODING_NONE when none of them is acceptable. */
http_coding http_coding_pick(const unsigned q[3], unsigned offered, const unsigned char *prefer);

/* http_coding_pick on an Accept-Encoding value. */
http_coding http_accept_encoding_choose(const char *value, size_t len, unsigned offered, const unsigned char *prefer);

/* The coding named `name` ("gzip", "br": the names compression.prefer takes, compared exactly), or
 * HTTP_CODING_NONE. */
http_coding http_coding_from_name(const char *name);

/* The name sent in Content-Encoding ("gzip", "br"), NULL for identity. */
const char *http_coding_name(http_coding c);

/* True when a body of this media type (a Content-Type value, parameters allowed) is worth compressing:
 * text (never text/event-stream), JSON, XML, JavaScript, SVG, wasm, ... Already-compressed types
 * (images, video, audio, archives, woff2) and unknown ones are not. */
bool http_media_type_compressible(const char *content_type);

/* What one answer gets. */
typedef struct http_compress_plan {
    http_coding coding; /* identity, gzip or br; never NONE */
    bool vary;          /* send Vary: Accept-Encoding: the answer could have been compressed */
    bool not_acceptable; /* answer 406 instead: the client refuses identity and every coding we have */
} http_compress_plan;

/* Decides the coding of an answer of `len` bytes with `content_type` and `status`, for a request
 * with the given Accept-Encoding value (NULL: the header is absent, so identity and no 406).
 * `route_off`: the route opted out (ROUTE_NO_COMPRESS); `streaming`: the answer is streamed. */
void http_compress_plan_for(const http_settings *s, const char *accept_encoding, size_t ae_len, bool route_off,
                            bool streaming, int status, const char *content_type, size_t len,
                            http_compress_plan *out);

/* Compresses in[0..len) with `coding` at `level` into a buffer of the calling thread (valid until its
 * next call). Returns its length, or 0 when compression failed or would not make the body smaller.
 * Thread-safe: the gzip compressor, the Brotli output and the buffer are per thread. */
size_t http_compress(http_coding coding, int level, const void *in, size_t len, const void **out);

/* Compresses into a caller's buffer of `cap` bytes (at least http_compress_bound(len)); 0 on failure
 * or when it would not shrink. For the worker pool, whose job owns its output. */
size_t http_compress_into(http_coding coding, int level, const void *in, size_t len, void *out, size_t cap);
size_t http_compress_bound(size_t len);
/* Frees the calling thread's output buffer when a large body made it grow (after its answer is queued). */
void http_compress_trim(void);

#endif
