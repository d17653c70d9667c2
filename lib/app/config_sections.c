/* config_sections: the converters of config.c's schema for the values a declaration cannot spell: the
 * map of named upstreams (each entry declared by upstream_schema below), the allow-list of origins,
 * the trusted proxies, and the URLs with their own grammar (redis.url, sql.url). Each adds its
 * violations under the key's name, the way the schema's own are, and binds only into config.c's
 * scratch copy, so a failure leaves the caller's config untouched. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "config_internal.h"

/* "http[s]://HOST[:PORT]" with nothing after it: apiary adds the path, so a URL cannot smuggle one in.
 * The port defaults to the scheme's (80, 443). Binds host, port and tls of the upstream. */
static bool config_bind_upstream_url(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    http_client_upstream scratch, *u = out ? out : &scratch;
    const char *url = json_string_value(v), *host;
    bool tls = strncmp(url, "https://", 8) == 0;
    if (!tls && strncmp(url, "http://", 7) != 0)
        return schema_refuse(errs, field, "must start with http:// or https://");
    host = url + (tls ? 8 : 7);
    const char *hend, *colon;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (!close || (close[1] != ':' && close[1] != '\0'))
            return schema_refuse(errs, field, "an IPv6 host needs brackets: http://[::1]:9001");
        hend = close;
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strrchr(host, ':');
        hend = colon ? colon : host + strlen(host);
    }
    const char *hstart = host[0] == '[' ? host + 1 : host;
    size_t hlen = (size_t)(hend - hstart);
    if (hlen == 0 || hlen >= sizeof(u->host))
        return schema_refuse(errs, field, "the host must be 1..255 characters");
    long port = tls ? 443 : 80;
    if (colon) {
        char *end;
        port = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535)
            return schema_refuse(errs, field, "needs a port 1..65535 (or none) and nothing after it (no path)");
    }
    char name[sizeof(u->host)];
    memcpy(name, hstart, hlen);
    name[hlen] = '\0';
    if (strpbrk(name, "/?#@ ") || (host[0] != '[' && strchr(name, ']')))
        return schema_refuse(errs, field, "the host has characters a host cannot have (no path either)");
    memcpy(u->host, name, hlen + 1);
    u->port = (unsigned)port;
    u->tls = tls;
    return true;
}

/* ca_file: a PEM file of CAs for an https:// upstream, read by each loop when it first calls; checked
 * here so a typo is a config error, not a failing call much later. */
static bool config_bind_ca_file(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    const char *path = json_string_value(v);
    FILE *f = fopen(path, "r");
    if (!f)
        return schema_refuse(errs, field, "cannot read '%s': %s", path, strerror(errno));
    fclose(f);
    if (out)
        strcpy(out, path); /* its length is within the declared max_bytes */
    return true;
}

/* The keys of one upstream (an entry of "upstreams" or of http_client.allowed_origins). The defaults
 * come from http_client_upstream_defaults, so an app that builds an upstream in code gets the same. */
#define UPSTREAM_INT(field, lo, hi)                                                                                \
    SCHEMA_OPTIONAL(http_client_upstream, field,                                                                   \
                    SCHEMA_INTEGER(.min = SCHEMA_GE(lo), .max = SCHEMA_LE(hi), .bind_as = SCHEMA_AS_UNSIGNED))
static const schema_member config_upstream_members[] = {
    SCHEMA_MEMBER_WHOLE("url", http_client_upstream, SCHEMA_MEMBER_REQUIRED, /* sets host, port and tls */
                        SCHEMA_STRING(.convert = SCHEMA_CONVERT(http_client_upstream,
                                                                "a string \"http[s]://HOST[:PORT]\"",
                                                                config_bind_upstream_url))),
    SCHEMA_OPTIONAL(http_client_upstream, ca_file,
                    SCHEMA_STRING(.convert = SCHEMA_CONVERT(((http_client_upstream *)0)->ca_file,
                                                            "a path of 1..255 characters", config_bind_ca_file),
                                  .min_length = 1, .max_bytes = sizeof(((http_client_upstream *)0)->ca_file) - 1)),
    UPSTREAM_INT(max_connections, 1, 10000),
    UPSTREAM_INT(max_idle, 0, 10000),
    UPSTREAM_INT(idle_timeout_ms, 1, 3600000),
    UPSTREAM_INT(connect_timeout_ms, 1, 60000),
    UPSTREAM_INT(timeout_ms, 1, 600000),
    UPSTREAM_INT(retries, 0, 5),
    UPSTREAM_INT(max_response_bytes, 1, 67108864),
    SCHEMA_END,
};
static const schema config_upstream_schema = SCHEMA_OBJECT_OF(http_client_upstream, config_upstream_members);

/* One upstream named `name` (what logs call it) from obj, bound over its defaults, checked as a whole:
 * ca_file only with https, max_idle against max_connections (http_client_upstream_finish). */
static bool config_bind_upstream(http_client_upstream *u, const char *name, const json_t *obj, const char *field,
                                 schema_errors *errs)
{
    memset(u, 0, sizeof(*u));
    snprintf(u->name, sizeof(u->name), "%s", name);
    http_client_upstream_defaults(u);
    if (!schema_bind(&config_upstream_schema, obj, u, field, errs))
        return false;
    char why[CONFIG_ERROR_MAX];
    if (u->ca_file[0] && !u->tls) {
        snprintf(why, sizeof(why), "%s.ca_file", field);
        schema_errors_add(errs, why, "only for an https:// url");
        return false;
    }
    /* max_idle left out follows max_connections; both given and in conflict is an error naming both. */
    if (http_client_upstream_finish(u, why, sizeof(why)) != 0)
        return schema_refuse(errs, "", "%s.%s", field, why);
    return true;
}

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

bool config_bind_upstreams(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    apiary_config *cfg = out;
    if (json_object_size(v) > CONFIG_MAX_UPSTREAMS)
        return schema_refuse(errs, field, "must have at most %d upstreams", CONFIG_MAX_UPSTREAMS);
    bool ok = true;
    unsigned n = 0;
    const char *name;
    json_t *entry;
    json_object_foreach((json_t *)v, name, entry) {
        if (!config_upstream_name_ok(name)) {
            schema_errors_add(errs, field, "'%s': an upstream name is 1..%d of [A-Za-z0-9_-]", name,
                              CONFIG_UPSTREAM_NAME_MAX);
            ok = false;
            continue;
        }
        char at[128];
        snprintf(at, sizeof(at), "%s.%s", field, name);
        http_client_upstream scratch;
        ok = config_bind_upstream(cfg ? &cfg->upstreams[n] : &scratch, name, entry, at, errs) && ok;
        n++;
    }
    if (cfg)
        cfg->upstream_count = n;
    return ok;
}

/* http_client.allowed_origins: the origins absolute URLs may name (http_client_fetch). Each entry is
 * "http[s]://HOST[:PORT]", or an object with the keys of an upstream (url, ca_file, timeouts, limits). */
bool config_bind_allowed_origins(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    apiary_config *cfg = out;
    http_client_upstream list[CONFIG_MAX_ALLOWED_ORIGINS]; /* the schema bounds the count */
    bool ok = true;
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        char at[128], name[48];
        snprintf(at, sizeof(at), "%s[%zu]", field, i);
        snprintf(name, sizeof(name), "allowed_origins[%u]", (unsigned)i); /* what logs call it */
        json_t *obj = json_is_string(item) ? json_pack("{sO}", "url", item) : json_incref(item);
        bool one = config_bind_upstream(&list[i], name, obj, at, errs);
        json_decref(obj);
        for (size_t j = 0; one && j < i; j++) {
            const http_client_upstream *p = &list[j], *o = &list[i];
            if (p->tls == o->tls && p->port == o->port && strcasecmp(p->host, o->host) == 0) {
                schema_errors_add(errs, at, "the same origin as [%zu]", j);
                one = false;
            }
        }
        ok = one && ok;
    }
    if (ok && cfg) {
        memcpy(cfg->allowed_origins, list, json_array_size(v) * sizeof(list[0]));
        cfg->allowed_origin_count = (unsigned)json_array_size(v);
    }
    return ok;
}

bool config_bind_trusted_proxies(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    apiary_config *cfg = out;
    bool ok = true;
    unsigned n = 0;
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        const char *text = json_string_value(item); /* the schema's items are strings */
        if (strcmp(text, "unix") == 0) {
            if (cfg)
                cfg->http.trust_unix_socket = true; /* whoever may connect to the socket is a proxy */
            continue;
        }
        http_cidr scratch;
        if (http_cidr_parse(text, cfg ? &cfg->trusted_proxies[n] : &scratch) != 0) {
            char at[128];
            snprintf(at, sizeof(at), "%s[%zu]", field, i);
            schema_errors_add(errs, at, "must be an address or CIDR such as \"10.0.0.0/8\" or \"::1\", "
                              "or \"unix\" for the Unix socket");
            ok = false;
            continue;
        }
        n++;
    }
    if (cfg)
        cfg->trusted_proxy_count = n;
    return ok;
}

/* redis://HOST[:PORT][/DB]; no password or TLS (the Redis is expected on loopback or a private net). */
bool config_bind_redis_url(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    redis_settings scratch, *r = out ? out : &scratch;
    const char *value = json_string_value(v);
    const char *prefix = "redis://";
    if (strncmp(value, prefix, strlen(prefix)) != 0)
        return schema_refuse(errs, field, "'%s' must start with redis://", value);
    const char *host = value + strlen(prefix);
    const char *slash = strchr(host, '/');
    const char *end = slash ? slash : host + strlen(host);
    const char *colon = memchr(host, ':', (size_t)(end - host));
    const char *host_end = colon ? colon : end;
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= sizeof(r->host) || memchr(host, '@', hlen))
        return schema_refuse(errs, field, "'%s': needs a host (credentials in the URL are not supported)", value);
    unsigned port = 6379, db = 0;
    if (colon) {
        char *e;
        long p = strtol(colon + 1, &e, 10);
        if (e != end || p < 1 || p > 65535)
            return schema_refuse(errs, field, "'%s': the port must be 1..65535", value);
        port = (unsigned)p;
    }
    if (slash && slash[1]) {
        char *e;
        long d = strtol(slash + 1, &e, 10);
        if (*e != '\0' || d < 0 || d > 15)
            return schema_refuse(errs, field, "'%s': the database must be 0..15", value);
        db = (unsigned)d;
    }
    memcpy(r->host, host, hlen);
    r->host[hlen] = '\0';
    r->port = port;
    r->db = db;
    return true;
}

int config_parse_sql_url(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    return sql_url_parse(&cfg->sql, value, err, CONFIG_ERROR_MAX);
}

/* sql.url: the message never contains the URL, which holds the password (sql_url_parse's promise). */
bool config_bind_sql_url(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    sql_settings *scratch = out ? NULL : malloc(sizeof(*scratch)); /* 9 KiB: not on the stack for a dry run */
    sql_settings *s = out ? out : scratch;
    if (!s)
        return false;
    if (!out)
        sql_settings_defaults(s);
    char why[CONFIG_ERROR_MAX];
    bool ok = sql_url_parse(s, json_string_value(v), why, sizeof(why)) == 0;
    if (!ok)
        schema_errors_add(errs, field, "%s", why);
    free(scratch);
    return ok;
}

/* static: [{"prefix": "/static", "dir": "/data/static", "open_file_cache": 0}, ...] (docs/static.md);
 * the schema bounds the count. The directory is checked here, so --check-config and a start agree;
 * app_static.c opens it at start. */
bool config_bind_static(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    apiary_config *cfg = out;
    /* Zeroed: a mount whose prefix was refused leaves it empty, so the duplicate check below compares
     * only prefixes that were valid, whatever else was wrong with the earlier mounts. */
    config_static_mount list[CONFIG_MAX_STATIC_MOUNTS] = {0};
    bool ok = true;
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        char at[128], at_prefix[160], at_dir[160];
        snprintf(at, sizeof(at), "%s[%zu]", field, i);
        snprintf(at_prefix, sizeof(at_prefix), "%s.prefix", at);
        snprintf(at_dir, sizeof(at_dir), "%s.dir", at);
        if (!json_is_object(item)) {
            schema_errors_add(errs, at, "must be an object {\"prefix\": \"/static\", \"dir\": \"...\"}");
            ok = false;
            continue;
        }
        const char *key;
        json_t *member;
        bool known = true;
        json_object_foreach(item, key, member) {
            if (strcmp(key, "prefix") != 0 && strcmp(key, "dir") != 0 && strcmp(key, "open_file_cache") != 0) {
                schema_errors_add(errs, at, "unknown key '%s'", key);
                known = false;
            }
        }
        config_static_mount *m = &list[i];
        const char *p = json_string_value(json_object_get(item, "prefix"));
        size_t n = p ? strlen(p) : 0;
        bool one = known;
        if (!p || n < 2 || p[0] != '/' || p[n - 1] == '/' || strpbrk(p, "{}?# ") || n >= sizeof(m->prefix)) {
            schema_errors_add(errs, at_prefix, "must be a path such as \"/static\" (starting with '/', not "
                              "ending with one, shorter than %zu bytes)", sizeof(m->prefix));
            one = false;
        } else {
            for (size_t k = 0; k < i; k++)
                if (strcmp(list[k].prefix, p) == 0) {
                    schema_errors_add(errs, at_prefix, "%s is mounted twice", p);
                    one = false;
                    break;
                }
            strcpy(m->prefix, p);
        }
        const char *d = json_string_value(json_object_get(item, "dir"));
        struct stat st;
        if (!d || !d[0] || strlen(d) >= sizeof(m->dir)) {
            schema_errors_add(errs, at_dir, "must be the path of a directory");
            one = false;
        } else if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) {
            schema_errors_add(errs, at_dir, "%s is not a directory", d);
            one = false;
        }
        json_t *ofc = json_object_get(item, "open_file_cache");
        if (ofc && (!json_is_integer(ofc) || json_integer_value(ofc) < 0 || json_integer_value(ofc) > 65536)) {
            schema_errors_add(errs, at, "open_file_cache must be an integer from 0 to 65536 (descriptors per loop)");
            one = false;
        }
        if (one) {
            strcpy(m->dir, d);
            m->open_file_cache = ofc ? (unsigned)json_integer_value(ofc) : 0;
        }
        ok = one && ok;
    }
    if (ok && cfg) {
        memcpy(cfg->static_mounts, list, json_array_size(v) * sizeof(list[0]));
        cfg->static_mount_count = (unsigned)json_array_size(v);
    }
    return ok;
}
