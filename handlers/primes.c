/* primes: GET /v1/primes?n=N answers {"n":N,"count":C}, C being how many primes are <= N, counted by
 * a sieve of Eratosthenes on the worker pool. It is the benchmarks' adjustable CPU load: the cost
 * grows a little faster than N and nothing is cached, so it stays a plain, honest sieve — no wheel,
 * no segments, no table of known counts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"

/* How much work happens between two looks at the cancel flag: a millisecond or so either way, so an
 * abandoned job lets its worker go almost at once, while the relaxed load costs nothing measurable. */
#define PRIMES_MARK_POLL 65536u      /* multiples marked */
#define PRIMES_COUNT_POLL_WORDS 4096 /* 64-bit words counted */

static const char primes_cancelled[] = "cancelled";
static const char primes_no_memory[] = "not enough memory for the sieve";
static const char primes_internal[] = "internal error";

/* Counts the primes <= n, or returns why it could not. Only odd numbers are sieved, one bit each: bit
 * i stands for 2i + 3, so n = 50,000,000 takes about 3 MiB. A set bit marks a composite. */
static const char *primes_sieve(const pool_job *job, uint64_t n, uint64_t *count)
{
    if (n < 2) {
        *count = 0;
        return NULL;
    }
    uint64_t bits = (n - 1) / 2; /* the odd numbers 3, 5, ..., up to n */
    size_t words = (size_t)((bits + 63) / 64);
    /* Plain calloc rather than xcalloc: this size is the client's choice (up to primes.max_n), so
     * failing to get it is answered 500 instead of ending the process. */
    uint64_t *composite = calloc(words ? words : 1, sizeof(*composite));
    if (!composite)
        return primes_no_memory;
    for (uint64_t i = 0;; i++) {
        uint64_t p = 2 * i + 3;
        if (p * p > n)
            break;
        if ((composite[i / 64] >> (i % 64)) & 1)
            continue;
        /* p*p is the first multiple no smaller prime has marked; stepping p bits is stepping 2p. The
         * cancel flag is read every PRIMES_MARK_POLL marks, not every few thousand outer iterations:
         * there are only about 3,500 of those for n = 50,000,000, and the first few primes do most of
         * the work (p = 3 alone marks n/6 bits, a quarter of a second at n = 10^9). */
        uint64_t j = (p * p - 3) / 2;
        while (j < bits) {
            if (pool_job_cancelled(job)) {
                free(composite);
                return primes_cancelled;
            }
            uint64_t stop = j + PRIMES_MARK_POLL * p < bits ? j + PRIMES_MARK_POLL * p : bits;
            for (; j < stop; j += p)
                composite[j / 64] |= (uint64_t)1 << (j % 64);
        }
    }
    /* Bits past `bits` in the last word were never set, so every zero bit below it is a prime. */
    uint64_t marked = 0;
    for (size_t w = 0; w < words; w++) {
        if (w % PRIMES_COUNT_POLL_WORDS == 0 && pool_job_cancelled(job)) {
            free(composite);
            return primes_cancelled;
        }
        marked += (uint64_t)__builtin_popcountll(composite[w]);
    }
    free(composite);
    *count = 1 + (bits - marked); /* 2, then the odd primes */
    return NULL;
}

/* Worker: input is n (a uint64_t), output the count (a uint64_t). Byte copies, as the job's buffers
 * promise no alignment. */
static const char *primes_work(pool_job *job, const void *input, size_t input_len, void *output,
                               size_t output_cap, size_t *output_len)
{
    uint64_t n, count;
    if (input_len != sizeof(n) || output_cap < sizeof(count))
        return primes_internal;
    memcpy(&n, input, sizeof(n));
    const char *why = primes_sieve(job, n, &count);
    if (why)
        return why;
    memcpy(output, &count, sizeof(count));
    *output_len = sizeof(count);
    return NULL;
}

typedef struct primes_call {
    http_request *req;
    unsigned n;
} primes_call;

static void primes_done(async_op *op, void *arg)
{
    primes_call *call = arg; /* scope memory: a continuation only runs while its request is alive */
    if (op->status != ASYNC_OK) {
        if (op->error == POOL_ERROR_FULL) {
            /* The queue is bounded on purpose: a quick 503 beats a growing backlog of timeouts. */
            http_response_header(call->req, "Retry-After", "1");
            http_respond_problem(call->req, 503, NULL, "every worker is busy; retry shortly");
        } else {
            http_respond_problem(call->req, 500, NULL, "the primes could not be counted: %s",
                                 op->error ? op->error : "unknown error");
        }
        return;
    }
    const pool_result *result = op->value;
    uint64_t count;
    if (result->len != sizeof(count)) {
        http_respond_problem(call->req, 500, NULL, "the primes could not be counted");
        return;
    }
    memcpy(&count, result->data, sizeof(count));
    http_respond_json(call->req, 200, json_pack("{s:I,s:I}", "n", (json_int_t)call->n, "count",
                                                (json_int_t)count));
}

typedef struct primes_in {
    int64_t n;
} primes_in;

static const schema_member primes_answer[] = {
    SCHEMA_UNBOUND("n", SCHEMA_MEMBER_REQUIRED, SCHEMA_INTEGER(.min = SCHEMA_GE(0))),
    SCHEMA_UNBOUND("count", SCHEMA_MEMBER_REQUIRED, SCHEMA_INTEGER(.min = SCHEMA_GE(0))),
    SCHEMA_END,
};
const route_schema primes_schema = {
    .input_size = sizeof(primes_in),
    .query = (const schema_member[]){SCHEMA_REQUIRED(primes_in, n,
                                                     SCHEMA_INTEGER(.min = SCHEMA_GE(0),
                                                                    .max = SCHEMA_LE_VAR(&handlers_primes_max_n))),
                                     SCHEMA_END},
    .summary = "Count the primes <= n on the worker pool",
    .responses =
        (const route_response[]){{200, "the count", &(const schema){.type = SCHEMA_T_OBJECT, .members = primes_answer}},
                                 {0}},
};

void primes_get(http_request *req)
{
    unsigned n = (unsigned)((const primes_in *)http_request_input(req))->n;
    async_scope *scope = http_request_async(req);
    if (!scope)
        return; /* the loop is at its cap of waiting requests and has already answered 503 */
    primes_call *call = async_scope_alloc(scope, sizeof(*call));
    call->req = req;
    call->n = n;
    uint64_t input = n;
    async_op *op = pool_submit(scope, handlers_get_settings()->pool, primes_work, &input, sizeof(input),
                               sizeof(uint64_t));
    async_op_then(op, primes_done, call);
}
