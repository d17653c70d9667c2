/* fuzz_body_stream: libFuzzer target for streamed request bodies (ROUTE_BODY_STREAM, issue 24 part 3).
 * Each input is a small program that builds one upload to POST /v1/upload (the binary's own route: it
 * reads the body with http_body_read a piece at a time and answers {"bytes":N,"sha256":"hex"}): a
 * chunked body with odd chunk sizes (1..63 bytes from the input, or up to 64 KiB of a pattern), size
 * lines in upper or lower case with leading zeros, chunk extensions (tokens, quoted strings with
 * escapes), trailers, optionally Expect: 100-continue, a Content-Length body instead, and a pipelined
 * request after it; then fed to a real connection of a real loop in-process (a socketpair) in reads
 * of a size the input picks, so size lines, extensions, CRLFs and trailers are cut anywhere.
 *
 * Invariants beyond the sanitizers. A well-formed upload (the generator's own output) is answered
 * 200 with exactly the byte count and SHA-256 of the data the generator put in its chunks, and the
 * pipelined request after it is answered too. In "raw" mode the input's own bytes are spliced into
 * the framing (size lines, extensions, trailers): then anything may be refused (or, a body the FIN
 * cuts short, not answered at all: a client gone mid-body), but the connection closes by itself after
 * the client half-closes.
 * Replaying a reproducer with FUZZ_BODY_DUMP=1 prints the upload it builds. */
#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>
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
    cfg.http.half_close_answer = true;
    if (sodium_init() < 0)
        abort();
    fuzz_app_start("fuzz_body_stream", &cfg);
    return 0;
}

/* ---- building the upload ------------------------------------------------------------------------ */

typedef struct out {
    char *p;
    size_t len, cap;
} out;

static void put(out *o, const void *s, size_t n)
{
    if (o->len + n > o->cap) {
        size_t c = o->cap ? o->cap : 4096;
        while (c < o->len + n)
            c *= 2;
        o->p = realloc(o->p, c);
        if (!o->p)
            abort();
        o->cap = c;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(out *o, const char *s) { put(o, s, strlen(s)); }

typedef struct input {
    const uint8_t *p;
    size_t left;
} input;

static uint8_t next(input *in)
{
    if (!in->left)
        return 0;
    in->left--;
    return *in->p++;
}

/* A chunk-size line's number: lower or upper case hex, with 0..3 leading zeros. */
static void put_size(out *o, size_t n, uint8_t style)
{
    char digits[24];
    snprintf(digits, sizeof(digits), (style & 1) ? "%zX" : "%zx", n);
    for (unsigned z = 0; z < ((style >> 1) & 3u); z++)
        put(o, "0", 1);
    puts_(o, digits);
}

/* A chunk extension the grammar allows and Debian's llhttp (8.1) takes: ;name, ;name=token,
 * ;name="quoted text;with=signs", several. llhttp 8.1 refuses two forms RFC 9112 allows, a quoted-pair
 * (";e=\"a\\\"b\"") and another extension after a token value (";a=1;b=2"): 400 "Invalid character
 * in chunk ...", on buffered and streamed bodies alike (found by this target; docs/fuzzing.md). */
static void put_extension(out *o, uint8_t style)
{
    static const char *const ext[] = {";a", ";name=value", ";q=\"x;y=z\"", ";q=\"a b\tc\"", ";a;b=\"2\"", ";sig=\"\""};
    puts_(o, ext[style % (sizeof(ext) / sizeof(ext[0]))]);
}

/* Up to 3 input bytes spliced into the framing, in raw mode only. */
static void put_raw(out *o, input *in)
{
    unsigned n = next(in) % 4;
    for (unsigned i = 0; i < n && in->left; i++) {
        uint8_t b = next(in);
        put(o, &b, 1);
    }
}

/* Data per upload: at most 256 KiB, and about 2,048 reads' worth at the input's read size, so one run
 * stays short (1 MiB two bytes at a time took 15 s: half a million loop passes). Big bodies are
 * test_83_streaming's (20 MiB); this target is about framing. */
#define FUZZ_BODY_MAX (256u << 10)

typedef struct upload {
    out req;
    crypto_hash_sha256_state sha;
    size_t bytes;
    bool raw;       /* framing may be broken on purpose: only the general invariants hold */
    bool pipelined; /* a GET /v1/hello follows the upload */
} upload;

static void build(upload *u, input *in, size_t body_max)
{
    uint8_t flags = next(in);
    u->raw = flags & 1;
    bool trailers = flags & 2;
    u->pipelined = flags & 4;
    bool content_length = flags & 8;
    bool expect = flags & 16;
    crypto_hash_sha256_init(&u->sha);

    /* The chunks first (their data is also what a Content-Length body carries). */
    out body = {0};
    out plain = {0};
    while (in->left > 1 && u->bytes < body_max) {
        uint8_t op = next(in);
        uint8_t style = next(in);
        size_t n;
        char pattern[64];
        const uint8_t *data;
        if (op & 0x80) { /* a big chunk of a pattern */
            n = 1 + (((size_t)next(in) << 8) | next(in));
            if (u->bytes + n > body_max)
                n = body_max - u->bytes;
            data = NULL;
        } else {
            n = 1 + (op & 0x3f);
            if (n > in->left)
                n = in->left ? in->left : 1;
            data = in->left ? in->p : (const uint8_t *)"x";
            if (in->left) {
                in->p += n;
                in->left -= n;
            }
        }
        put_size(&body, n, style);
        if (style & 8)
            put_extension(&body, (uint8_t)(style >> 4));
        if (u->raw && (style & 0x80))
            put_raw(&body, in);
        put(&body, "\r\n", 2);
        for (size_t done = 0; done < n;) {
            size_t k = n - done < sizeof(pattern) ? n - done : sizeof(pattern);
            const void *src = data ? (const void *)(data + done) : pattern;
            if (!data)
                for (size_t i = 0; i < k; i++)
                    pattern[i] = (char)('a' + (done + i) % 26);
            put(&body, src, k);
            put(&plain, src, k);
            crypto_hash_sha256_update(&u->sha, src, k);
            done += k;
        }
        u->bytes += n;
        put(&body, "\r\n", 2);
    }
    put(&body, "0", 1);
    if (trailers && !content_length) {
        put_extension(&body, flags >> 5);
        put(&body, "\r\n", 2);
        puts_(&body, "X-Checksum: abc\r\nX-Trailer-Two:  spaced value \r\n");
        if (u->raw)
            put_raw(&body, in);
    } else {
        put(&body, "\r\n", 2);
    }
    put(&body, "\r\n", 2);

    puts_(&u->req, "POST /v1/upload HTTP/1.1\r\nHost: fuzz\r\n");
    if (expect)
        puts_(&u->req, "Expect: 100-continue\r\n");
    if (content_length) {
        char line[64];
        snprintf(line, sizeof(line), "Content-Length: %zu\r\n\r\n", plain.len);
        puts_(&u->req, line);
        if (plain.len)
            put(&u->req, plain.p, plain.len);
    } else {
        puts_(&u->req, "Transfer-Encoding: chunked\r\n\r\n");
        put(&u->req, body.p, body.len);
    }
    if (u->pipelined)
        puts_(&u->req, "GET /v1/hello HTTP/1.1\r\nHost: fuzz\r\n\r\n");
    free(body.p);
    free(plain.p);
}

/* ---- running it --------------------------------------------------------------------------------- */

static void fuzz_step(int client, out *received)
{
    event_base_loop(fuzz_loop->base, EVLOOP_NONBLOCK);
    char sink[65536];
    ssize_t n;
    while ((n = recv(client, sink, sizeof(sink), MSG_DONTWAIT)) > 0)
        if (received->len < (1u << 20))
            put(received, sink, (size_t)n);
}

/* The next response in r at *pos (1xx skipped): its status and body; false when incomplete. */
static bool next_response(const out *r, size_t *pos, int *status, const char **body, size_t *body_len)
{
    for (;;) {
        if (!r->p)
            return false; /* nothing received */
        const char *start = r->p + *pos;
        size_t avail = r->len - *pos;
        const char *end = memmem(start, avail, "\r\n\r\n", 4);
        if (!end || avail < 12 || memcmp(start, "HTTP/1.1 ", 9) != 0)
            return false;
        *status = atoi(start + 9);
        size_t head = (size_t)(end - start) + 4;
        if (*status >= 100 && *status < 200) {
            *pos += head;
            continue;
        }
        size_t clen = 0;
        const char *cl = memmem(start, head, "\r\nContent-Length: ", 18);
        if (cl)
            clen = (size_t)strtoul(cl + 18, NULL, 10);
        if (avail < head + clen)
            return false;
        *body = start + head;
        *body_len = clen;
        *pos += head + clen;
        return true;
    }
}

static void check_answers(const upload *u, const out *r, crypto_hash_sha256_state *sha)
{
    size_t pos = 0;
    int status;
    const char *body;
    size_t body_len;
    bool answered = next_response(r, &pos, &status, &body, &body_len);
    if (u->raw)
        return; /* broken framing: a 400, or nothing when the FIN cut the body (the client left mid-body) */
    if (!answered) {
        fprintf(stderr, "fuzz_body_stream: no complete answer to the upload\n");
        abort();
    }
    if (status != 200) {
        fprintf(stderr, "fuzz_body_stream: a well-formed upload of %zu bytes was answered %d: %.*s\n", u->bytes,
                status, (int)body_len, body);
        abort();
    }
    unsigned char digest[crypto_hash_sha256_BYTES];
    char hex[2 * crypto_hash_sha256_BYTES + 1];
    crypto_hash_sha256_final(sha, digest);
    sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
    json_t *doc = json_loadb(body, body_len, 0, NULL);
    json_t *bytes = json_object_get(doc, "bytes");
    const char *got = json_string_value(json_object_get(doc, "sha256"));
    if (!json_is_integer(bytes) || (size_t)json_integer_value(bytes) != u->bytes || !got || strcmp(got, hex) != 0) {
        fprintf(stderr, "fuzz_body_stream: upload of %zu bytes (sha256 %s) answered %.*s\n", u->bytes, hex,
                (int)body_len, body);
        abort();
    }
    json_decref(doc);
    if (u->pipelined && (!next_response(r, &pos, &status, &body, &body_len) || status != 200)) {
        fprintf(stderr, "fuzz_body_stream: the request after the upload was not answered 200\n");
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t piece = 1 + data[0] % 97; /* bytes per read: 1..97, or 4 KiB pieces when data[0] >= 194 */
    if (data[0] >= 194)
        piece = 4096;
    input in = {data + 1, size - 1};
    upload u = {0};
    build(&u, &in, piece >= 128 ? FUZZ_BODY_MAX : piece * 2048);
    crypto_hash_sha256_state sha = u.sha;
    if (getenv("FUZZ_BODY_DUMP")) /* replaying a reproducer: show the upload it builds */
        fwrite(u.req.p, 1, u.req.len, stderr);

    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0)
        abort();
    http_conn_accept(fuzz_loop, fds[0], NULL, false);
    size_t sent = 0;
    out received = {0};
    while (sent < u.req.len && fuzz_loop->conn_count > 0) {
        size_t n = u.req.len - sent < piece ? u.req.len - sent : piece;
        ssize_t w = send(fds[1], u.req.p + sent, n, MSG_NOSIGNAL);
        if (w > 0)
            sent += (size_t)w;
        else if (w < 0 && errno != EAGAIN)
            break;
        fuzz_step(fds[1], &received);
    }
    shutdown(fds[1], SHUT_WR);
    for (int i = 0; i < 1000 && fuzz_loop->conn_count > 0; i++)
        fuzz_step(fds[1], &received);
    if (fuzz_loop->conn_count > 0) {
        fprintf(stderr, "fuzz_body_stream: the connection is still open after the client half-closed\n");
        abort();
    }
    if (!u.raw && sent < u.req.len) {
        fprintf(stderr, "fuzz_body_stream: the server stopped reading a well-formed upload at %zu of %zu bytes; "
                "it answered: %.*s\n", sent, u.req.len, (int)(received.len < 400 ? received.len : 400), received.p);
        abort();
    }
    check_answers(&u, &received, &sha);
    close(fds[1]);
    free(u.req.p);
    free(received.p);
    return 0;
}
