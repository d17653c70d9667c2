/* config_sections: the structured parts of the config file that a flat table row cannot describe:
 * the map of named upstreams, and the strings with their own grammar (kv.backend, redis.url, sql.url). Called
 * by config.c on its scratch copy, so a failure here leaves the caller's config untouched. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "config_internal.h"

static int config_sections_fail(char err[CONFIG_ERROR_MAX], const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int config_sections_fail(char err[CONFIG_ERROR_MAX], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, CONFIG_ERROR_MAX, fmt, ap);
    va_end(ap);
    return -1;
}

typedef struct config_upstream_key {
    const char *name;
    size_t offset;
    unsigned min, max;
} config_upstream_key;

/* The defaults come from http_client_upstream_defaults, so an app that builds an upstream in code gets
 * the same ones as the config file. */
#define UPSTREAM_KEY(name, min, max) {#name, offsetof(http_client_upstream, name), min, max}

static const config_upstream_key config_upstream_keys[] = {
    UPSTREAM_KEY(max_connections, 1, 10000),
    UPSTREAM_KEY(max_idle, 0, 10000),
    UPSTREAM_KEY(idle_timeout_ms, 1, 3600000),
    UPSTREAM_KEY(connect_timeout_ms, 1, 60000),
    UPSTREAM_KEY(timeout_ms, 1, 600000),
    UPSTREAM_KEY(retries, 0, 5),
    UPSTREAM_KEY(max_response_bytes, 1, 67108864),
};

static bool config_upstream_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > CONFIG_UPSTREAM_NAME_MAX)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '-'))
            return false;
    return true;
}

/* "http[s]://HOST[:PORT]" with nothing after it: apiary adds the path, so a URL cannot smuggle one in.
 * The port defaults to the scheme's (80, 443). */
static int config_parse_upstream_url(http_client_upstream *u, const char *url, char err[CONFIG_ERROR_MAX])
{
    const char *host;
    if (strncmp(url, "http://", 7) == 0) {
        u->tls = false;
        host = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        u->tls = true;
        host = url + 8;
    } else {
        return config_sections_fail(err, "url: must start with http:// or https://");
    }
    const char *hend, *colon;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (!close || (close[1] != ':' && close[1] != '\0'))
            return config_sections_fail(err, "url: an IPv6 host needs brackets: http://[::1]:9001");
        hend = close;
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strrchr(host, ':');
        hend = colon ? colon : host + strlen(host);
    }
    const char *hstart = host[0] == '[' ? host + 1 : host;
    size_t hlen = (size_t)(hend - hstart);
    if (hlen == 0 || hlen >= sizeof(u->host))
        return config_sections_fail(err, "url: the host must be 1..255 characters");
    long port = u->tls ? 443 : 80;
    if (colon) {
        char *end;
        port = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535)
            return config_sections_fail(err, "url: needs a port 1..65535 (or none) and nothing after it (no path)");
    }
    memcpy(u->host, hstart, hlen);
    u->host[hlen] = '\0';
    if (strpbrk(u->host, "/?#@ ") || (host[0] != '[' && strchr(u->host, ']')))
        return config_sections_fail(err, "url: the host has characters a host cannot have (no path either)");
    u->port = (unsigned)port;
    return 0;
}

/* ca_file: a PEM file of CAs for an https:// upstream, read by each loop when it first calls; checked
 * here so a typo is a config error, not a failing call much later. */
static int config_parse_ca_file(http_client_upstream *u, json_t *v, char err[CONFIG_ERROR_MAX])
{
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= sizeof(u->ca_file))
        return config_sections_fail(err, "ca_file: must be a path of 1..%zu characters", sizeof(u->ca_file) - 1);
    const char *path = json_string_value(v);
    FILE *f = fopen(path, "r");
    if (!f)
        return config_sections_fail(err, "ca_file: cannot read '%s': %s", path, strerror(errno));
    fclose(f);
    snprintf(u->ca_file, sizeof(u->ca_file), "%s", path);
    return 0;
}

static int config_parse_upstream(http_client_upstream *u, const char *name, json_t *obj, char err[CONFIG_ERROR_MAX])
{
    char why[CONFIG_ERROR_MAX];
    if (!json_is_object(obj))
        return config_sections_fail(err, "%s: must be an object", name);
    memset(u, 0, sizeof(*u));
    snprintf(u->name, sizeof(u->name), "%s", name);
    http_client_upstream_defaults(u);
    json_t *ca = json_object_get(obj, "ca_file");
    bool have_url = false;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (strcmp(key, "url") == 0) {
            if (!json_is_string(v))
                return config_sections_fail(err, "%s.url: must be a string \"http[s]://HOST[:PORT]\"", name);
            if (config_parse_upstream_url(u, json_string_value(v), why) != 0)
                return config_sections_fail(err, "%s.%s", name, why);
            have_url = true;
            continue;
        }
        if (strcmp(key, "ca_file") == 0) {
            if (config_parse_ca_file(u, v, why) != 0)
                return config_sections_fail(err, "%s.%s", name, why);
            continue;
        }
        const config_upstream_key *k = NULL;
        for (size_t i = 0; i < sizeof(config_upstream_keys) / sizeof(config_upstream_keys[0]); i++)
            if (strcmp(key, config_upstream_keys[i].name) == 0)
                k = &config_upstream_keys[i];
        if (!k)
            return config_sections_fail(err, "%s: unknown key '%s'", name, key);
        if (!json_is_integer(v) || json_integer_value(v) < k->min || json_integer_value(v) > k->max)
            return config_sections_fail(err, "%s.%s: must be an integer between %u and %u", name, key, k->min,
                                        k->max);
        *(unsigned *)(void *)((char *)u + k->offset) = (unsigned)json_integer_value(v);
    }
    if (!have_url)
        return config_sections_fail(err, "%s.url: missing", name);
    if (ca && !u->tls)
        return config_sections_fail(err, "%s.ca_file: only for an https:// url", name);
    /* max_idle left out follows max_connections; both given and in conflict is an error naming both. */
    if (http_client_upstream_finish(u, why, sizeof(why)) != 0)
        return config_sections_fail(err, "%s.%s", name, why);
    return 0;
}

int config_parse_upstreams(apiary_config *cfg, const void *json_object, char err[CONFIG_ERROR_MAX])
{
    json_t *obj = (json_t *)json_object;
    if (json_object_size(obj) > CONFIG_MAX_UPSTREAMS)
        return config_sections_fail(err, "at most %d upstreams", CONFIG_MAX_UPSTREAMS);
    unsigned n = 0;
    const char *name;
    json_t *v;
    json_object_foreach(obj, name, v) {
        if (!config_upstream_name_ok(name))
            return config_sections_fail(err, "'%s': an upstream name is 1..%d of [A-Za-z0-9_-]", name,
                                        CONFIG_UPSTREAM_NAME_MAX);
        if (config_parse_upstream(&cfg->upstreams[n], name, v, err) != 0)
            return -1;
        n++;
    }
    cfg->upstream_count = n;
    return 0;
}

/* http_client.allowed_origins: the origins absolute URLs may name (http_client_fetch). Each entry is
 * "http[s]://HOST[:PORT]", or an object with the keys of an upstream (url, ca_file, timeouts, limits). */
int config_parse_allowed_origins(apiary_config *cfg, const void *json_array, char err[CONFIG_ERROR_MAX])
{
    json_t *arr = (json_t *)json_array;
    if (json_array_size(arr) > CONFIG_MAX_ALLOWED_ORIGINS)
        return config_sections_fail(err, ": at most %d entries", CONFIG_MAX_ALLOWED_ORIGINS);
    size_t i;
    json_t *v;
    cfg->allowed_origin_count = 0;
    json_array_foreach(arr, i, v) {
        char label[32];
        snprintf(label, sizeof(label), "[%zu]", i);
        json_t *obj = json_is_string(v) ? json_pack("{sO}", "url", v) : json_incref(v);
        int rc = config_parse_upstream(&cfg->allowed_origins[i], label, obj, err);
        json_decref(obj);
        if (rc != 0)
            return -1;
        http_client_upstream *o = &cfg->allowed_origins[i];
        snprintf(o->name, sizeof(o->name), "allowed_origins[%u]", (unsigned)i); /* what logs call it */
        for (size_t j = 0; j < i; j++) {
            const http_client_upstream *p = &cfg->allowed_origins[j];
            if (p->tls == o->tls && p->port == o->port && strcasecmp(p->host, o->host) == 0)
                return config_sections_fail(err, "[%zu]: the same origin as [%zu]", i, j);
        }
        cfg->allowed_origin_count++;
    }
    return 0;
}

int config_parse_kv_backend(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    if (strcmp(value, "memory") == 0)
        cfg->kv_backend = CONFIG_KV_MEMORY;
    else if (strcmp(value, "redis") == 0)
        cfg->kv_backend = CONFIG_KV_REDIS;
    else
        return config_sections_fail(err, "'%s' is not \"memory\" or \"redis\"", value);
    return 0;
}

/* redis://HOST[:PORT][/DB]; no password or TLS (the Redis is expected on loopback or a private net). */
int config_parse_redis_url(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    const char *prefix = "redis://";
    if (strncmp(value, prefix, strlen(prefix)) != 0)
        return config_sections_fail(err, "'%s' must start with redis://", value);
    const char *host = value + strlen(prefix);
    const char *slash = strchr(host, '/');
    const char *end = slash ? slash : host + strlen(host);
    const char *colon = memchr(host, ':', (size_t)(end - host));
    const char *host_end = colon ? colon : end;
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= sizeof(cfg->redis.host) || memchr(host, '@', hlen))
        return config_sections_fail(err, "'%s': needs a host (credentials in the URL are not supported)", value);
    unsigned port = 6379, db = 0;
    if (colon) {
        char *e;
        long p = strtol(colon + 1, &e, 10);
        if (e != end || p < 1 || p > 65535)
            return config_sections_fail(err, "'%s': the port must be 1..65535", value);
        port = (unsigned)p;
    }
    if (slash && slash[1]) {
        char *e;
        long d = strtol(slash + 1, &e, 10);
        if (*e != '\0' || d < 0 || d > 15)
            return config_sections_fail(err, "'%s': the database must be 0..15", value);
        db = (unsigned)d;
    }
    memcpy(cfg->redis.host, host, hlen);
    cfg->redis.host[hlen] = '\0';
    cfg->redis.port = port;
    cfg->redis.db = db;
    return 0;
}

int config_parse_sql_url(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    return sql_url_parse(&cfg->sql, value, err, CONFIG_ERROR_MAX);
}

int config_parse_trusted_proxies(apiary_config *cfg, const void *json_array, char err[CONFIG_ERROR_MAX])
{
    json_t *arr = (json_t *)json_array;
    if (json_array_size(arr) > CONFIG_MAX_TRUSTED_PROXIES)
        return config_sections_fail(err, ": at most %d entries", CONFIG_MAX_TRUSTED_PROXIES);
    size_t i;
    json_t *v;
    cfg->trusted_proxy_count = 0;
    json_array_foreach(arr, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), "unix") == 0) {
            cfg->http.trust_unix_socket = true; /* whoever may connect to the socket is a proxy */
            continue;
        }
        if (!json_is_string(v) ||
            http_cidr_parse(json_string_value(v), &cfg->trusted_proxies[cfg->trusted_proxy_count]) != 0)
            return config_sections_fail(err, "[%zu]: must be an address or CIDR such as \"10.0.0.0/8\" or \"::1\", "
                                        "or \"unix\" for the Unix socket", i);
        cfg->trusted_proxy_count++;
    }
    return 0;
}

/* static: [{"prefix": "/static", "dir": "/data/static"}, ...] (docs/static.md). The directory is
 * checked here, so --check-config and a start agree; app_static.c opens it at start. */
int config_parse_static(apiary_config *cfg, const void *json_array, char err[CONFIG_ERROR_MAX])
{
    json_t *arr = (json_t *)json_array;
    if (json_array_size(arr) > CONFIG_MAX_STATIC_MOUNTS)
        return config_sections_fail(err, ": at most %d mounts", CONFIG_MAX_STATIC_MOUNTS);
    size_t i;
    json_t *v;
    cfg->static_mount_count = 0;
    json_array_foreach(arr, i, v) {
        if (!json_is_object(v))
            return config_sections_fail(err, "[%zu]: must be an object {\"prefix\": \"/static\", \"dir\": \"...\"}", i);
        const char *key;
        json_t *member;
        json_object_foreach(v, key, member) {
            if (strcmp(key, "prefix") != 0 && strcmp(key, "dir") != 0)
                return config_sections_fail(err, "[%zu]: unknown key '%s'", i, key);
        }
        json_t *prefix = json_object_get(v, "prefix"), *dir = json_object_get(v, "dir");
        config_static_mount *m = &cfg->static_mounts[cfg->static_mount_count];
        const char *p = json_is_string(prefix) ? json_string_value(prefix) : NULL;
        size_t n = p ? strlen(p) : 0;
        if (!p || n < 2 || p[0] != '/' || p[n - 1] == '/' || strpbrk(p, "{}?# ") || n >= sizeof(m->prefix))
            return config_sections_fail(err, "[%zu].prefix: must be a path such as \"/static\" (starting with '/', "
                                        "not ending with one, shorter than %zu bytes)", i, sizeof(m->prefix));
        for (unsigned k = 0; k < cfg->static_mount_count; k++)
            if (strcmp(cfg->static_mounts[k].prefix, p) == 0)
                return config_sections_fail(err, "[%zu].prefix: %s is mounted twice", i, p);
        const char *d = json_is_string(dir) ? json_string_value(dir) : NULL;
        struct stat st;
        if (!d || !d[0] || strlen(d) >= sizeof(m->dir))
            return config_sections_fail(err, "[%zu].dir: must be the path of a directory", i);
        if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
            return config_sections_fail(err, "[%zu].dir: %s is not a directory", i, d);
        strcpy(m->prefix, p);
        strcpy(m->dir, d);
        cfg->static_mount_count++;
    }
    return 0;
}
