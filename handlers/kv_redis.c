/* kv_redis: the /v1/kv backend on Redis (kv.backend "redis"), through this loop's Redis client
 * (include/apiary/redis.h). Keys are stored under the prefix "apiary:kv:" so the API shares a database with
 * other users safely; values are the compact JSON text, as a Redis string.
 *
 *   get:    MULTI, GET k, TTL k, EXEC   one round trip, and the value and its TTL from one instant
 *   put:    SET k v [EX ttl] GET        atomic, and the old value (or nil) says replaced or created
 *   delete: DEL k                       1 or 0
 *
 * SET ... GET needs Redis 6.2 or later. Each call maps the Redis operation's outcome onto a kv_result
 * in a future of its own, so kv.c never sees a Redis reply. */
#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "kv_store.h"

const char KV_ERROR_CORRUPT[] = "corrupt";

#define KV_REDIS_PREFIX "apiary:kv:"
#define KV_REDIS_WRONGTYPE "redis: WRONGTYPE"

/* One call in flight: the Redis operation and the future kv.c awaits. Scope memory. */
typedef struct kv_redis_call {
    async_scope *scope;
    async_op *future;
    async_op *redis;
} kv_redis_call;

static const char *kv_redis_key(async_scope *scope, const char *key, size_t key_len, size_t *out_len)
{
    size_t prefix = sizeof(KV_REDIS_PREFIX) - 1;
    char *k = async_scope_alloc(scope, prefix + key_len);
    memcpy(k, KV_REDIS_PREFIX, prefix);
    memcpy(k + prefix, key, key_len);
    *out_len = prefix + key_len;
    return k;
}

/* Someone gave up on the kv call (e.g. a wait_for around it): the Redis operation goes too, and its
 * reply, when it comes, is dropped by the client. */
static void kv_redis_call_cancel(async_op *future, void *arg)
{
    (void)future;
    kv_redis_call *call = arg;
    async_op_cancel(call->redis);
}

static kv_redis_call *kv_redis_call_start(async_scope *scope, async_op *redis, async_cb done)
{
    kv_redis_call *call = async_scope_alloc(scope, sizeof(*call));
    call->scope = scope;
    call->future = async_future(scope);
    call->redis = redis;
    async_future_on_cancel(call->future, kv_redis_call_cancel, call);
    async_op_then(redis, done, call);
    return call;
}

/* A failed Redis operation: its error is already one kv.c maps (timeout, unavailable, ...), except a
 * WRONGTYPE reply, which means the key holds something apiary did not store. */
static void kv_redis_fail(kv_redis_call *call, const async_op *redis)
{
    const char *error = redis->error ? redis->error : REDIS_ERROR_UNAVAILABLE;
    if (strncmp(error, KV_REDIS_WRONGTYPE, sizeof(KV_REDIS_WRONGTYPE) - 1) == 0)
        error = KV_ERROR_CORRUPT;
    async_fail(call->future, error);
}

/* ---- get --------------------------------------------------------------------------------------- */

static void kv_redis_get_done(async_op *redis, void *arg)
{
    kv_redis_call *call = arg;
    if (redis->status != ASYNC_OK) {
        kv_redis_fail(call, redis);
        return;
    }
    /* [+OK, +QUEUED, +QUEUED, EXEC's [value, ttl]]; an EXEC that failed is an error element. */
    const redis_reply *all = redis->value;
    const redis_reply *exec = all->count == 4 ? &all->elements[3] : NULL;
    if (exec && exec->kind == REDIS_KIND_ERROR) {
        async_fail(call->future, redis_reply_error_text(call->scope, exec->str, exec->len));
        return;
    }
    if (!exec || exec->kind != REDIS_KIND_ARRAY || exec->count != 2) {
        async_fail(call->future, "redis: unexpected reply to MULTI/GET/TTL/EXEC");
        return;
    }
    const redis_reply *value = &exec->elements[0];
    const redis_reply *ttl = &exec->elements[1];
    kv_result *res = async_scope_alloc(call->scope, sizeof(*res));
    if (value->kind == REDIS_KIND_ERROR) {
        async_fail(call->future, KV_ERROR_CORRUPT);
        return;
    }
    if (value->kind == REDIS_KIND_STRING) {
        res->existed = true;
        res->value = value->str;
        res->value_len = value->len;
        /* -1: no expiry. (-2, "no such key", cannot follow a GET that found it in one transaction.) */
        res->ttl_s = ttl->kind == REDIS_KIND_INTEGER && ttl->integer >= 0 ? ttl->integer : KV_TTL_NONE;
    }
    async_resolve(call->future, res);
}

static async_op *kv_redis_get(async_scope *scope, http_loop *loop, const char *key, size_t key_len)
{
    size_t k_len;
    const char *k = kv_redis_key(scope, key, key_len, &k_len);
    const char *multi[] = {"MULTI"}, *get[] = {"GET", k}, *ttl[] = {"TTL", k}, *exec[] = {"EXEC"};
    const size_t multi_len[] = {5}, get_len[] = {3, k_len}, ttl_len[] = {3, k_len}, exec_len[] = {4};
    const redis_cmd cmds[] = {{1, multi, multi_len}, {2, get, get_len}, {2, ttl, ttl_len}, {1, exec, exec_len}};
    async_op *redis = redis_pipeline(scope, loop, handlers_get_settings()->redis, cmds, 4);
    return kv_redis_call_start(scope, redis, kv_redis_get_done)->future;
}

/* ---- put --------------------------------------------------------------------------------------- */

static void kv_redis_put_done(async_op *redis, void *arg)
{
    kv_redis_call *call = arg;
    if (redis->status != ASYNC_OK) {
        kv_redis_fail(call, redis);
        return;
    }
    const redis_reply *old = redis->value;
    kv_result *res = async_scope_alloc(call->scope, sizeof(*res));
    res->existed = old->kind == REDIS_KIND_STRING;
    async_resolve(call->future, res);
}

static async_op *kv_redis_put(async_scope *scope, http_loop *loop, const char *key, size_t key_len, const char *value,
                              size_t value_len, unsigned ttl_s)
{
    size_t k_len;
    const char *k = kv_redis_key(scope, key, key_len, &k_len);
    char ttl[16];
    int ttl_len = snprintf(ttl, sizeof(ttl), "%u", ttl_s);
    const char *argv[6] = {"SET", k, value};
    size_t argvlen[6] = {3, k_len, value_len};
    int argc = 3;
    if (ttl_s > 0) {
        argv[argc] = "EX";
        argvlen[argc++] = 2;
        argv[argc] = ttl;
        argvlen[argc++] = (size_t)ttl_len;
    }
    argv[argc] = "GET";
    argvlen[argc++] = 3;
    async_op *redis = redis_command(scope, loop, handlers_get_settings()->redis, argc, argv, argvlen);
    return kv_redis_call_start(scope, redis, kv_redis_put_done)->future;
}

/* ---- delete ------------------------------------------------------------------------------------ */

static void kv_redis_del_done(async_op *redis, void *arg)
{
    kv_redis_call *call = arg;
    if (redis->status != ASYNC_OK) {
        kv_redis_fail(call, redis);
        return;
    }
    const redis_reply *n = redis->value;
    kv_result *res = async_scope_alloc(call->scope, sizeof(*res));
    res->existed = n->kind == REDIS_KIND_INTEGER && n->integer > 0;
    async_resolve(call->future, res);
}

static async_op *kv_redis_del(async_scope *scope, http_loop *loop, const char *key, size_t key_len)
{
    size_t k_len;
    const char *k = kv_redis_key(scope, key, key_len, &k_len);
    const char *argv[] = {"DEL", k};
    const size_t argvlen[] = {3, k_len};
    async_op *redis = redis_command(scope, loop, handlers_get_settings()->redis, 2, argv, argvlen);
    return kv_redis_call_start(scope, redis, kv_redis_del_done)->future;
}

const kv_store kv_redis_store = {
    .name = "redis",
    .validated = false,
    .get = kv_redis_get,
    .put = kv_redis_put,
    .del = kv_redis_del,
};
