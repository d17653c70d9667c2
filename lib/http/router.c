/* router: see router.h. Routes whose patterns have the same shape (same literals, parameters in the
 * same places) share one router_path holding a slot per method, so one walk over the paths answers
 * both "which handler" and "which methods does this path allow". A linear scan is the right tool for
 * the few dozen routes with parameters an API has: no tree to build, and every path is a contiguous
 * array entry. Paths without parameters (most of them: "/v1/hello", "/healthz") are found first by
 * their whole text in a small hash table, since such a path, when it matches, beats every other: one
 * hash and one memcmp instead of a memcmp per candidate segment (the scan was ~15 % of a GET
 * /v1/hello's instructions with the apiary binary's routes). */
#include "router.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router_internal.h"
#include "xalloc_internal.h"

_Static_assert(ROUTER_MAX_SEGMENTS <= 32, "param_mask keeps one bit per segment in a uint32_t");
_Static_assert(HTTP_METHOD_COUNT <= 32, "method bitmasks are unsigned");

/* A literal segment's text, or a parameter's name; both point into a NUL-split pattern copy. */
typedef struct router_segment {
    const char *text;
    size_t len;
    bool is_param;
    bool is_tail; /* "{name...}": the rest of the path; only as the last segment */
} router_segment;

/* A pattern as router_compile leaves it; segments point into storage, which the receiver then owns. */
typedef struct router_pattern {
    char *storage;
    size_t segment_count;
    size_t param_count;
    uint32_t param_mask;
    bool tail;
    router_segment segments[ROUTER_MAX_SEGMENTS];
} router_pattern;

/* One method's route on a path; param names are per method because "GET /kv/{key}" and
 * "PUT /kv/{id}" share a path yet name their parameter differently. */
typedef struct router_route {
    http_handler_fn handler; /* NULL when the method is not registered on this path */
    unsigned flags;          /* ROUTE_* */
    const route_schema *schema;
    unsigned id;             /* 0..route_count-1 in registration order: index of per-route counters */
    char *name;
    char *storage;
    const char *param_names[ROUTER_MAX_PARAMS];
} router_route;

typedef struct router_path {
    char *literal;       /* the whole path ("/v1/hello") when it has no parameter, else NULL */
    size_t literal_len;
    size_t segment_count;
    uint32_t param_mask; /* bit i set when segment i is a parameter: ranks paths in O(1) */
    bool tail;           /* the last segment is a tail parameter */
    router_segment *segments;
    char *storage;
    unsigned methods;
    router_route routes[HTTP_METHOD_COUNT];
} router_path;

struct router {
    router_path *paths;
    size_t count;
    size_t cap;
    const char **names;  /* route names by id (pointing into the routes) */
    size_t route_count;
    uint32_t *literal_slots; /* open addressing: index + 1 of a path with `literal`, 0 = empty */
    size_t literal_mask;     /* slots - 1 (a power of two, at most half full) */
    size_t literal_count;
};

/* Where a segment of the path being matched lies, without copying it. */
typedef struct router_span {
    size_t start;
    size_t len;
} router_span;

size_t router_route_count(const router *r) { return r->route_count; }

const char *router_route_name(const router *r, size_t id) { return id < r->route_count ? r->names[id] : NULL; }

router *router_new(void)
{
    return xcalloc(1, sizeof(router));
}

static void router_path_free(router_path *p)
{
    for (int m = 0; m < HTTP_METHOD_COUNT; m++) {
        free(p->routes[m].name);
        free(p->routes[m].storage);
    }
    free(p->segments);
    free(p->storage);
    free(p->literal);
}

void router_free(router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->count; i++)
        router_path_free(&r->paths[i]);
    free(r->paths);
    free(r->names);
    free(r->literal_slots);
    free(r);
}

/* --- pattern compilation (start-up only) --- */

static bool router_is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Braces are reserved for parameters, and bytes a request path can never hold ('?', '#', controls,
 * space) would make a route that silently never matches: both are registration mistakes. */
static bool router_is_literal_char(char c)
{
    unsigned char u = (unsigned char)c;
    return u > ' ' && u != 0x7f && c != '{' && c != '}' && c != '?' && c != '#';
}

/* Where router_compile says why it refused a pattern (router_pattern_check); why is NULL when the
 * caller only needs the verdict (router_add), so the refusal costs nothing at start-up then. */
typedef struct router_why {
    char *text;
    size_t cap;
} router_why;

static int router_refuse(router_why *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int router_refuse(router_why *why, const char *fmt, ...)
{
    if (why && why->text && why->cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why->text, why->cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int router_compile_param(router_segment *seg, char *text, size_t len, router_why *why)
{
    if (len < 3 || text[len - 1] != '}')
        return router_refuse(why, "the segment '%.*s' is not a parameter: a parameter is a whole segment {name}",
                             (int)len, text);
    seg->is_tail = len >= 6 && memcmp(text + len - 4, "...}", 4) == 0;
    size_t end = seg->is_tail ? len - 3 : len;
    for (size_t i = 1; i < end - 1; i++)
        if (!router_is_name_char(text[i]))
            return router_refuse(why, "the parameter '%.*s' has a name that is not [A-Za-z0-9_]", (int)len, text);
    text[end - 1] = '\0';
    seg->text = text + 1;
    seg->len = end - 2;
    seg->is_param = true;
    return 0;
}

static int router_compile_segment(router_segment *seg, char *text, size_t len, router_why *why)
{
    if (len == 0)
        return router_refuse(why, "the pattern has an empty segment ('//', or a '/' at the end)");
    if (text[0] == '{')
        return router_compile_param(seg, text, len, why);
    for (size_t i = 0; i < len; i++)
        if (!router_is_literal_char(text[i]))
            return router_refuse(why,
                                 "the segment '%.*s' holds a character no request path can match there "
                                 "('{', '}', '?', '#', a space or a control character)",
                                 (int)len, text);
    seg->text = text;
    seg->len = len;
    seg->is_param = false;
    seg->is_tail = false;
    return 0;
}

/* Two parameters with one name would leave a handler unable to tell which value it is reading. */
static bool router_param_name_taken(const router_pattern *p, const router_segment *seg)
{
    for (size_t i = 0; i < p->segment_count; i++) {
        const router_segment *s = &p->segments[i];
        if (s->is_param && s->len == seg->len && memcmp(s->text, seg->text, seg->len) == 0)
            return true;
    }
    return false;
}

/* Appends the segment that starts at text (NUL-terminated by the caller). */
static int router_compile_next(router_pattern *p, char *text, router_why *why)
{
    if (p->segment_count == ROUTER_MAX_SEGMENTS)
        return router_refuse(why, "the pattern has more than %d segments", ROUTER_MAX_SEGMENTS);
    router_segment *seg = &p->segments[p->segment_count];
    if (router_compile_segment(seg, text, strlen(text), why) < 0)
        return -1;
    if (seg->is_param) {
        if (p->param_count == ROUTER_MAX_PARAMS)
            return router_refuse(why, "the pattern has more than %d parameters", ROUTER_MAX_PARAMS);
        if (router_param_name_taken(p, seg))
            return router_refuse(why, "the pattern repeats the parameter {%.*s}", (int)seg->len, seg->text);
        p->param_mask |= (uint32_t)1 << p->segment_count;
        p->param_count++;
    }
    p->segment_count++;
    return 0;
}

static int router_compile_segments(router_pattern *p, router_why *why)
{
    char *text = p->storage + 1;
    /* The root is the one pattern with an empty segment, matching the path "/" split the same way. */
    if (*text == '\0') {
        p->segments[0] = (router_segment){.text = text, .len = 0, .is_param = false};
        p->segment_count = 1;
        return 0;
    }
    for (;;) {
        char *slash = strchr(text, '/');
        if (slash)
            *slash = '\0';
        if (router_compile_next(p, text, why) < 0)
            return -1;
        p->tail = p->segments[p->segment_count - 1].is_tail;
        if (!slash)
            return 0;
        if (p->tail) /* a tail takes the rest of the path: nothing may follow it */
            return router_refuse(why, "the tail parameter {%.*s...} is not the last segment",
                                 (int)p->segments[p->segment_count - 1].len, p->segments[p->segment_count - 1].text);
        text = slash + 1;
    }
}

static int router_compile(const char *pattern, router_pattern *p, router_why *why)
{
    if (!pattern || pattern[0] != '/')
        return router_refuse(why, "the pattern does not start with '/'");
    p->storage = xstrdup(pattern);
    p->segment_count = 0;
    p->param_count = 0;
    p->param_mask = 0;
    p->tail = false;
    if (router_compile_segments(p, why) < 0) {
        free(p->storage);
        p->storage = NULL;
        return -1;
    }
    return 0;
}

int router_pattern_check(const char *pattern, char *why, size_t why_cap)
{
    router_pattern p;
    router_why w = {why, why_cap};
    if (why && why_cap)
        why[0] = '\0';
    if (router_compile(pattern, &p, &w) < 0)
        return -1;
    free(p.storage);
    return 0;
}

static bool router_same_shape(const router_path *path, const router_pattern *p)
{
    if (path->segment_count != p->segment_count || path->param_mask != p->param_mask || path->tail != p->tail)
        return false;
    for (size_t i = 0; i < p->segment_count; i++) {
        const router_segment *a = &path->segments[i];
        const router_segment *b = &p->segments[i];
        if (!a->is_param && (a->len != b->len || memcmp(a->text, b->text, a->len) != 0))
            return false;
    }
    return true;
}

static router_path *router_find_shape(router *r, const router_pattern *p)
{
    for (size_t i = 0; i < r->count; i++)
        if (router_same_shape(&r->paths[i], p))
            return &r->paths[i];
    return NULL;
}

/* FNV-1a: the paths are short, and the table is built from the routes, not from clients. */
static uint32_t router_literal_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static void router_literal_insert(router *r, size_t index)
{
    const router_path *p = &r->paths[index];
    size_t i = router_literal_hash(p->literal, p->literal_len) & r->literal_mask;
    while (r->literal_slots[i])
        i = (i + 1) & r->literal_mask;
    r->literal_slots[i] = (uint32_t)index + 1;
}

/* Indexes the path just appended if it has no parameter; the table doubles to stay at most half full. */
static void router_literal_add(router *r, size_t index)
{
    router_path *p = &r->paths[index];
    if (p->param_mask || p->tail)
        return;
    size_t len = 0;
    for (size_t i = 0; i < p->segment_count; i++)
        len += 1 + p->segments[i].len;
    p->literal = xmalloc(len + 1);
    for (size_t i = 0, at = 0; i < p->segment_count; i++) {
        p->literal[at++] = '/';
        memcpy(p->literal + at, p->segments[i].text, p->segments[i].len);
        at += p->segments[i].len;
    }
    p->literal[len] = '\0';
    p->literal_len = len;
    r->literal_count++;
    if (2 * r->literal_count > (r->literal_slots ? r->literal_mask + 1 : 0)) {
        size_t slots = r->literal_slots ? 2 * (r->literal_mask + 1) : 16;
        free(r->literal_slots);
        r->literal_slots = xcalloc(slots, sizeof(*r->literal_slots));
        r->literal_mask = slots - 1;
        for (size_t i = 0; i < r->count; i++)
            if (r->paths[i].literal)
                router_literal_insert(r, i);
        return;
    }
    router_literal_insert(r, index);
}

static const router_path *router_literal_find(const router *r, const char *path, size_t len)
{
    if (!r->literal_slots)
        return NULL;
    size_t i = router_literal_hash(path, len) & r->literal_mask;
    for (uint32_t at; (at = r->literal_slots[i]) != 0; i = (i + 1) & r->literal_mask) {
        const router_path *p = &r->paths[at - 1];
        if (p->literal_len == len && memcmp(p->literal, path, len) == 0)
            return p;
    }
    return NULL;
}

/* Takes ownership of p's storage for the new path's literal texts. */
static router_path *router_append_path(router *r, const router_pattern *p)
{
    if (r->count == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->paths = xrealloc(r->paths, r->cap * sizeof(*r->paths));
    }
    router_path *path = &r->paths[r->count++];
    memset(path, 0, sizeof(*path));
    path->segment_count = p->segment_count;
    path->param_mask = p->param_mask;
    path->tail = p->tail;
    path->segments = xmalloc(p->segment_count * sizeof(*path->segments));
    memcpy(path->segments, p->segments, p->segment_count * sizeof(*path->segments));
    path->storage = p->storage;
    router_literal_add(r, r->count - 1);
    return path;
}

static char *router_format_route_name(http_method method, const char *pattern)
{
    const char *verb = http_method_name(method);
    size_t verb_len = strlen(verb);
    size_t pattern_len = strlen(pattern);
    char *name = xmalloc(verb_len + 1 + pattern_len + 1);
    memcpy(name, verb, verb_len);
    name[verb_len] = ' ';
    memcpy(name + verb_len + 1, pattern, pattern_len + 1);
    return name;
}

/* Takes ownership of p's storage for the route's parameter names. */
static void router_route_init(router_route *route, http_method method, const char *pattern,
                              http_handler_fn handler, const router_pattern *p)
{
    route->handler = handler;
    route->name = router_format_route_name(method, pattern);
    route->storage = p->storage;
    size_t k = 0;
    for (size_t i = 0; i < p->segment_count; i++)
        if (p->segments[i].is_param)
            route->param_names[k++] = p->segments[i].text;
}

int router_add(router *r, http_method method, const char *pattern, http_handler_fn handler)
{
    return router_add_flags(r, method, pattern, handler, 0);
}

int router_add_flags(router *r, http_method method, const char *pattern, http_handler_fn handler, unsigned flags)
{
    return router_add_schema(r, method, pattern, handler, flags, NULL);
}

int router_add_schema(router *r, http_method method, const char *pattern, http_handler_fn handler, unsigned flags,
                      const route_schema *schema)
{
    if (!r || (unsigned)method >= HTTP_METHOD_COUNT || !handler)
        return -1;
    router_pattern p;
    if (router_compile(pattern, &p, NULL) < 0)
        return -1;
    router_path *path = router_find_shape(r, &p);
    if (path && (path->methods & (1u << method))) {
        free(p.storage);
        return -1;
    }
    if (!path) {
        /* The path and the route each own a copy so neither outlives storage it points into; the
         * pattern compiled once already, so compiling it again cannot fail. */
        router_pattern own;
        (void)router_compile(pattern, &own, NULL);
        path = router_append_path(r, &own);
    }
    router_route_init(&path->routes[method], method, pattern, handler, &p);
    path->methods |= 1u << method;
    path->routes[method].flags = flags;
    path->routes[method].schema = schema;
    path->routes[method].id = (unsigned)r->route_count;
    r->names = xrealloc(r->names, (r->route_count + 1) * sizeof(*r->names));
    r->names[r->route_count++] = path->routes[method].name;
    return 0;
}

/* --- matching (per request: no allocation, no writes outside *out) --- */

/* Returns the number of segments, or -1 if the path is not absolute or has more segments than any
 * pattern can. "/" is one empty segment and "/a/" ends with one, so neither matches "/a". */
static int router_split_path(const char *path, size_t len, router_span spans[ROUTER_MAX_SEGMENTS])
{
    if (len == 0 || path[0] != '/')
        return -1;
    int n = 0;
    size_t start = 1;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && path[i] != '/')
            continue;
        if (n == ROUTER_MAX_SEGMENTS)
            return -1;
        spans[n++] = (router_span){.start = start, .len = i - start};
        start = i + 1;
    }
    return n;
}

static bool router_path_matches(const router_path *p, const char *path, const router_span *spans,
                                size_t n)
{
    if (p->tail ? n < p->segment_count : p->segment_count != n)
        return false;
    for (size_t i = 0; i < p->segment_count; i++) {
        const router_segment *seg = &p->segments[i];
        if (seg->is_tail)
            break; /* the rest, whatever it holds ("/static/" gives an empty tail) */
        if (seg->is_param) {
            if (spans[i].len == 0)
                return false;
        } else if (seg->len != spans[i].len || memcmp(seg->text, path + spans[i].start, seg->len) != 0) {
            return false;
        }
    }
    return true;
}

/* Both paths matched the same request path, so wherever both are literal their text is equal: the
 * first segment where exactly one of them is a parameter decides, and the literal side wins. Paths
 * have distinct shapes, so such a segment exists. */
static bool router_path_beats(const router_path *a, const router_path *b)
{
    if (a->tail != b->tail)
        return !a->tail; /* a route of fixed length is more specific than any tail */
    if (a->tail && a->segment_count != b->segment_count)
        return a->segment_count > b->segment_count; /* the longer prefix: "/static/img/{p...}" */
    uint32_t diff = a->param_mask ^ b->param_mask;
    uint32_t first = diff & (~diff + 1);
    return (a->param_mask & first) == 0;
}

static const router_path *router_find_best(const router *r, const char *path, const router_span *spans,
                                           size_t n)
{
    const router_path *best = NULL;
    for (size_t i = 0; i < r->count; i++) {
        const router_path *p = &r->paths[i];
        if (p->literal)
            continue; /* router_literal_find looked for it already */
        if (router_path_matches(p, path, spans, n) && (!best || router_path_beats(p, best)))
            best = p;
    }
    return best;
}

static unsigned router_path_allowed(const router_path *p)
{
    unsigned head = (p->methods & (1u << HTTP_METHOD_GET)) ? 1u << HTTP_METHOD_HEAD : 0;
    return p->methods | head;
}

static const router_route *router_route_for(const router_path *p, http_method method)
{
    if ((unsigned)method >= HTTP_METHOD_COUNT)
        return NULL;
    if (p->routes[method].handler)
        return &p->routes[method];
    if (method == HTTP_METHOD_HEAD && p->routes[HTTP_METHOD_GET].handler)
        return &p->routes[HTTP_METHOD_GET];
    return NULL;
}

static void router_fill_params(const router_path *p, const router_route *route, const char *path,
                               const router_span *spans, size_t n, route_match *out)
{
    size_t k = 0;
    for (size_t i = 0; i < p->segment_count; i++) {
        if (!p->segments[i].is_param)
            continue;
        size_t len = spans[i].len;
        if (p->segments[i].is_tail)
            len = spans[n - 1].start + spans[n - 1].len - spans[i].start; /* to the end of the path */
        out->params[k] = (route_param){
            .name = route->param_names[k],
            .value = path + spans[i].start,
            .value_len = len,
        };
        k++;
    }
    out->param_count = k;
}

router_status router_match(const router *r, http_method method, const char *path, size_t path_len,
                           route_match *out)
{
    out->handler = NULL;
    out->flags = 0;
    out->schema = NULL;
    out->name = NULL;
    out->param_count = 0;
    out->allowed_methods = 0;

    /* A path without parameters that matches wins over every other path that does (those have a
     * parameter or a tail where it has a literal): no split, no scan, and no parameters to fill. */
    router_span spans[ROUTER_MAX_SEGMENTS];
    int n = 0;
    const router_path *p = router_literal_find(r, path, path_len);
    if (!p) {
        n = router_split_path(path, path_len, spans);
        p = n < 0 ? NULL : router_find_best(r, path, spans, (size_t)n);
    }
    if (!p)
        return ROUTER_NOT_FOUND;
    out->allowed_methods = router_path_allowed(p);
    const router_route *route = router_route_for(p, method);
    if (!route)
        return ROUTER_METHOD_NOT_ALLOWED;
    out->handler = route->handler;
    out->flags = route->flags;
    out->schema = route->schema;
    out->name = route->name;
    out->route_id = route->id;
    if (!p->literal)
        router_fill_params(p, route, path, spans, (size_t)n, out);
    return ROUTER_FOUND;
}

size_t router_format_allow(unsigned allowed_methods, char *buf, size_t cap)
{
    if (cap == 0)
        return 0;
    size_t len = 0;
    for (int m = 0; m < HTTP_METHOD_COUNT; m++) {
        if (!(allowed_methods & (1u << m)))
            continue;
        const char *sep = len ? ", " : "";
        const char *verb = http_method_name((http_method)m);
        size_t sep_len = strlen(sep);
        size_t verb_len = strlen(verb);
        /* A name that does not fit is left out whole: a cut "PO" would be a wrong header. */
        if (len + sep_len + verb_len >= cap)
            break;
        memcpy(buf + len, sep, sep_len);
        memcpy(buf + len + sep_len, verb, verb_len);
        len += sep_len + verb_len;
    }
    buf[len] = '\0';
    return len;
}
