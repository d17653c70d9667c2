/* http_compress: see http_compress_internal.h and docs/compression.md. */
#include "http_compress_internal.h"

#include <brotli/encode.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xalloc_internal.h"

/* ---- Accept-Encoding ---------------------------------------------------------------------------- */

static bool http_compress_ows(char c) { return c == ' ' || c == '\t'; }

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) (RFC 9110 12.4.2), as 0..1000; -1 when
 * malformed. */
static int http_compress_qvalue(const char *p, size_t len)
{
    if (len == 0 || (p[0] != '0' && p[0] != '1'))
        return -1;
    int whole = p[0] - '0';
    if (len == 1)
        return whole * 1000;
    if (p[1] != '.' || len > 5)
        return -1;
    int frac = 0, scale = 100;
    for (size_t i = 2; i < len; i++, scale /= 10) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        frac += (p[i] - '0') * scale;
    }
    if (whole == 1 && frac != 0)
        return -1;
    return whole * 1000 + frac;
}

/* One member "coding *( OWS ; OWS param )" of the list; a malformed one changes nothing. */
static void http_compress_member(const char *p, size_t len, int qs[3], int *star)
{
    size_t i = 0;
    while (i < len && http_compress_ows(p[i]))
        i++;
    size_t tok = i;
    while (i < len && p[i] != ';' && !http_compress_ows(p[i]))
        i++;
    size_t tok_len = i - tok;
    if (tok_len == 0)
        return; /* an empty member ("gzip,,br"): allowed by the list syntax */
    int q = 1000;
    while (i < len) {
        while (i < len && http_compress_ows(p[i]))
            i++;
        if (i == len)
            break;
        if (p[i] != ';')
            return; /* "gzip deflate": not one token */
        i++;
        while (i < len && http_compress_ows(p[i]))
            i++;
        size_t name = i;
        while (i < len && p[i] != '=' && p[i] != ';' && !http_compress_ows(p[i]))
            i++;
        size_t name_len = i - name;
        if (i == len || p[i] != '=')
            return; /* a parameter needs a value */
        i++;
        size_t val = i;
        while (i < len && p[i] != ';' && !http_compress_ows(p[i]))
            i++;
        if (name_len == 1 && (p[name] == 'q' || p[name] == 'Q')) {
            q = http_compress_qvalue(p + val, i - val);
            if (q < 0)
                return;
        }
    }
    const char *t = p + tok;
    int *slot = NULL;
    if (tok_len == 4 && strncasecmp(t, "gzip", 4) == 0)
        slot = &qs[HTTP_CODING_GZIP];
    else if (tok_len == 6 && strncasecmp(t, "x-gzip", 6) == 0)
        slot = &qs[HTTP_CODING_GZIP];
    else if (tok_len == 2 && strncasecmp(t, "br", 2) == 0)
        slot = &qs[HTTP_CODING_BR];
    else if (tok_len == 8 && strncasecmp(t, "identity", 8) == 0)
        slot = &qs[HTTP_CODING_IDENTITY];
    else if (tok_len == 1 && t[0] == '*')
        slot = star;
    if (slot && *slot < 0)
        *slot = q; /* the first mention counts */
}

void http_accept_encoding_q(const char *value, size_t len, unsigned q[3])
{
    int qs[3] = {-1, -1, -1}, star = -1;
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && value[end] != ',')
            end++;
        http_compress_member(value + i, end - i, qs, &star);
        i = end + 1;
    }
    for (int c = 0; c < 3; c++) {
        int v = qs[c];
        if (v < 0)
            v = star >= 0 ? star : (c == HTTP_CODING_IDENTITY ? 1 : 0);
        q[c] = (unsigned)v;
    }
}

const unsigned char http_coding_prefer_default[HTTP_SETTINGS_CODINGS] = {HTTP_CODING_GZIP, HTTP_CODING_BR};

http_coding http_coding_pick(const unsigned q[3], unsigned offered, const unsigned char *prefer)
{
    if (!prefer)
        prefer = http_coding_prefer_default;
    http_coding best = HTTP_CODING_NONE;
    unsigned best_q = 0;
    /* In preference order, taking only a strictly higher q: so on a tie the earlier one stays. Identity
     * comes last: a client that names a coding as high as identity gets the coding. */
    for (int i = 0; i <= HTTP_SETTINGS_CODINGS; i++) {
        http_coding c = i < HTTP_SETTINGS_CODINGS ? (http_coding)prefer[i] : HTTP_CODING_IDENTITY;
        if (c < HTTP_CODING_IDENTITY || c > HTTP_CODING_BR)
            continue; /* a settings struct filled by hand with a value that is no coding: never an index */
        if ((offered & HTTP_CODING_BIT(c)) && q[c] > best_q) {
            best = c;
            best_q = q[c];
        }
    }
    return best;
}

http_coding http_accept_encoding_choose(const char *value, size_t len, unsigned offered, const unsigned char *prefer)
{
    unsigned q[3];
    http_accept_encoding_q(value, len, q);
    return http_coding_pick(q, offered, prefer);
}

http_coding http_coding_from_name(const char *name)
{
    if (strcmp(name, "gzip") == 0)
        return HTTP_CODING_GZIP;
    if (strcmp(name, "br") == 0)
        return HTTP_CODING_BR;
    return HTTP_CODING_NONE;
}

const char *http_coding_name(http_coding c)
{
    switch (c) {
    case HTTP_CODING_GZIP: return "gzip";
    case HTTP_CODING_BR: return "br";
    default: return NULL;
    }
}

/* ---- media types -------------------------------------------------------------------------------- */

bool http_media_type_compressible(const char *content_type)
{
    if (!content_type)
        return false;
    /* What the engine and most handlers send (http_respond_json, text answers): decided without the
     * scan below, which this runs for every answer. */
    if (strcmp(content_type, "application/json") == 0 || strcmp(content_type, "text/plain") == 0)
        return true;
    const char *p = content_type;
    while (http_compress_ows(*p))
        p++;
    size_t n = 0;
    while (p[n] && p[n] != ';' && !http_compress_ows(p[n]))
        n++;
    /* An allowlist: whatever is not known to be text-like is assumed compressed already (images,
     * video, audio, archives, fonts in woff/woff2) or not worth the CPU. */
    /* Asked for every answer: lengths are stored, not measured, and a name is compared only when its
     * length matches. */
#define HTTP_MEDIA_TYPE(s) {s, sizeof(s) - 1}
    static const struct {
        const char *name;
        size_t len;
    } exact[] = {
        HTTP_MEDIA_TYPE("application/json"),         HTTP_MEDIA_TYPE("application/javascript"),
        HTTP_MEDIA_TYPE("application/x-javascript"), HTTP_MEDIA_TYPE("application/xml"),
        HTTP_MEDIA_TYPE("application/wasm"),         HTTP_MEDIA_TYPE("application/x-ndjson"),
        HTTP_MEDIA_TYPE("application/yaml"),         HTTP_MEDIA_TYPE("application/x-yaml"),
        HTTP_MEDIA_TYPE("application/toml"),         HTTP_MEDIA_TYPE("application/rtf"),
        HTTP_MEDIA_TYPE("application/x-sh"),         HTTP_MEDIA_TYPE("font/ttf"),
        HTTP_MEDIA_TYPE("font/otf"),                 HTTP_MEDIA_TYPE("application/vnd.ms-fontobject"),
        HTTP_MEDIA_TYPE("image/x-icon"),             HTTP_MEDIA_TYPE("image/vnd.microsoft.icon"),
        HTTP_MEDIA_TYPE("image/bmp"),                HTTP_MEDIA_TYPE("application/graphql"),
    };
#undef HTTP_MEDIA_TYPE
    if (n == 17 && strncasecmp(p, "text/event-stream", 17) == 0)
        return false; /* server-sent events: flushed event by event, never buffered into a coder */
    if (n > 5 && strncasecmp(p, "text/", 5) == 0)
        return true;
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (exact[i].len == n && strncasecmp(p, exact[i].name, n) == 0)
            return true;
    /* Structured syntax suffixes (RFC 6839): problem+json, ld+json, svg+xml, atom+xml, ... */
    return (n > 5 && strncasecmp(p + n - 5, "+json", 5) == 0) || (n > 4 && strncasecmp(p + n - 4, "+xml", 4) == 0);
}

/* ---- the decision ------------------------------------------------------------------------------- */

void http_compress_plan_for(const http_settings *s, const char *accept_encoding, size_t ae_len, bool route_off,
                            bool streaming, int status, const char *content_type, size_t len,
                            http_compress_plan *out)
{
    *out = (http_compress_plan){.coding = HTTP_CODING_IDENTITY};
    /* A streamed answer (its bytes leave as they are produced, SSE among them) is never coded here:
     * this is the one place that says so, for every answer of the engine. */
    if (!s->compress_enabled || route_off || streaming)
        return;
    if (status < 200 || status == 204 || status == 206 || status == 304)
        return; /* no body, or a range of one representation: its coding is decided by its 200 */
    if (!http_media_type_compressible(content_type))
        return;
    out->vary = true; /* from here the answer depends on Accept-Encoding: caches must know */
    if (!accept_encoding)
        return; /* no Accept-Encoding: identity, always (clients that sent none get plain bytes) */
    unsigned offered = HTTP_CODING_BIT(HTTP_CODING_IDENTITY) | HTTP_CODING_BIT(HTTP_CODING_GZIP);
    if (s->compress_brotli)
        offered |= HTTP_CODING_BIT(HTTP_CODING_BR);
    unsigned q[3];
    http_accept_encoding_q(accept_encoding, ae_len, q);
    http_coding c = http_coding_pick(q, offered, s->compress_prefer);
    if (c == HTTP_CODING_NONE) {
        /* Errors still go out (as identity): a 406 in place of a 500 would hide the real answer. */
        if (status < 400 && len > 0)
            out->not_acceptable = true;
        return;
    }
    if (c != HTTP_CODING_IDENTITY && len < s->compress_min_bytes && q[HTTP_CODING_IDENTITY] > 0)
        c = HTTP_CODING_IDENTITY; /* a few hundred bytes gain little and cost a coder's setup */
    out->coding = c;
}

/* ---- the coders --------------------------------------------------------------------------------- */

/* Per thread: a libdeflate compressor for the level last used (allocating one costs more than coding
 * a small body: once per thread and level, not once per answer) and the output buffer, which is kept
 * while small. */
typedef struct http_compress_tls {
    struct libdeflate_compressor *gz;
    int gz_level;
    unsigned char *buf;
    size_t cap;
} http_compress_tls;

#define HTTP_COMPRESS_KEEP_BYTES (256 * 1024) /* a larger output buffer is freed after its answer */

static pthread_key_t http_compress_key;
static pthread_once_t http_compress_once = PTHREAD_ONCE_INIT;

static void http_compress_tls_free(void *arg)
{
    http_compress_tls *t = arg;
    libdeflate_free_compressor(t->gz);
    free(t->buf);
    free(t);
}

static void http_compress_key_init(void) { pthread_key_create(&http_compress_key, http_compress_tls_free); }

static http_compress_tls *http_compress_tls_get(void)
{
    pthread_once(&http_compress_once, http_compress_key_init);
    http_compress_tls *t = pthread_getspecific(http_compress_key);
    if (!t) {
        t = xcalloc(1, sizeof(*t));
        pthread_setspecific(http_compress_key, t);
    }
    return t;
}

size_t http_compress_bound(size_t len)
{
    size_t gz = libdeflate_gzip_compress_bound(NULL, len); /* NULL: any level's bound */
    size_t br = BrotliEncoderMaxCompressedSize(len);
    if (br == 0)
        br = len + (len >> 2) + 1024; /* past Brotli's own estimate: a generous one of ours */
    return gz > br ? gz : br;
}

static size_t http_compress_gzip(http_compress_tls *t, int level, const void *in, size_t len, void *out, size_t cap)
{
    if (!t->gz || t->gz_level != level) {
        libdeflate_free_compressor(t->gz);
        t->gz = libdeflate_alloc_compressor(level); /* NULL when out of memory: the body goes as is */
        t->gz_level = level;
        if (!t->gz)
            return 0;
    }
    /* A gzip member (RFC 1952); 0 when the output does not fit `cap`. */
    return libdeflate_gzip_compress(t->gz, in, len, out, cap);
}

static size_t http_compress_br(int level, const void *in, size_t len, void *out, size_t cap)
{
    /* The smallest window that holds the body: less memory for the encoder, same output. */
    int lgwin = BROTLI_MIN_WINDOW_BITS;
    while (lgwin < BROTLI_DEFAULT_WINDOW && ((size_t)1 << lgwin) - 16 < len)
        lgwin++;
    size_t n = cap;
    if (!BrotliEncoderCompress(level, lgwin, BROTLI_MODE_TEXT, len, in, &n, out))
        return 0;
    return n;
}

size_t http_compress_into(http_coding coding, int level, const void *in, size_t len, void *out, size_t cap)
{
    size_t n = 0;
    if (coding == HTTP_CODING_GZIP)
        n = http_compress_gzip(http_compress_tls_get(), level, in, len, out, cap);
    else if (coding == HTTP_CODING_BR)
        n = http_compress_br(level, in, len, out, cap);
    return n > 0 && n < len ? n : 0;
}

size_t http_compress(http_coding coding, int level, const void *in, size_t len, const void **out)
{
    http_compress_tls *t = http_compress_tls_get();
    size_t bound = http_compress_bound(len);
    if (t->cap < bound) {
        free(t->buf);
        t->buf = xmalloc(bound);
        t->cap = bound;
    }
    size_t n = http_compress_into(coding, level, in, len, t->buf, t->cap);
    *out = t->buf;
    return n;
}

void http_compress_trim(void)
{
    http_compress_tls *t = http_compress_tls_get();
    if (t->cap > HTTP_COMPRESS_KEEP_BYTES) {
        free(t->buf);
        t->buf = NULL;
        t->cap = 0;
    }
}
