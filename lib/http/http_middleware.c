/* http_middleware: prefix coverage, what a request's route declared, and the request's named values
 * (middleware.h). The hooks themselves are run by dispatch and by the answer's head (http_conn.c). */
#include "http_middleware_internal.h"

#include <string.h>

#include "http_internal.h"

struct http_request_value {
    struct http_request_value *next;
    const char *name;
    void *value;
};

bool http_middleware_covers(const char *prefix, size_t prefix_len, const char *path)
{
    if (prefix_len == 0)
        return true;
    if (strncmp(path, prefix, prefix_len) != 0)
        return false;
    return path[prefix_len] == '\0' || path[prefix_len] == '/';
}

bool http_request_route(const http_request *req, http_route_info *out)
{
    const http_req_slot *slot = (const http_req_slot *)req; /* the request is the slot's first member */
    if (slot->route_status != ROUTER_FOUND || !slot->match.name)
        return false;
    /* The route's name is "METHOD PATTERN" (router.c), so both come from it without a second table. */
    const char *space = strchr(slot->match.name, ' ');
    if (!space)
        return false;
    char method[16];
    size_t len = (size_t)(space - slot->match.name);
    if (len >= sizeof(method))
        return false;
    memcpy(method, slot->match.name, len);
    method[len] = '\0';
    out->method = http_method_parse(method);
    out->pattern = space + 1;
    out->flags = slot->match.flags;
    return true;
}

void http_request_set_value(http_request *req, const char *name, void *value)
{
    http_req_slot *slot = (http_req_slot *)req;
    for (struct http_request_value *v = slot->values; v; v = v->next)
        if (strcmp(v->name, name) == 0) {
            v->value = value;
            return;
        }
    struct http_request_value *v = arena_alloc(&req->arena, sizeof(*v));
    v->name = arena_strndup(&req->arena, name, strlen(name));
    v->value = value;
    v->next = slot->values;
    slot->values = v;
}

void *http_request_value(const http_request *req, const char *name)
{
    const http_req_slot *slot = (const http_req_slot *)req;
    for (const struct http_request_value *v = slot->values; v; v = v->next)
        if (strcmp(v->name, name) == 0)
            return v->value;
    return NULL;
}
