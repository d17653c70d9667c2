/* http_method: see http_method.h. */
#include "http_method.h"

#include <llhttp.h>
#include <string.h>

static const char *const http_method_names[HTTP_METHOD_COUNT] = {
    [HTTP_METHOD_GET] = "GET",     [HTTP_METHOD_HEAD] = "HEAD",       [HTTP_METHOD_POST] = "POST",
    [HTTP_METHOD_PUT] = "PUT",     [HTTP_METHOD_DELETE] = "DELETE",   [HTTP_METHOD_PATCH] = "PATCH",
    [HTTP_METHOD_OPTIONS] = "OPTIONS",
};

const char *http_method_name(http_method method)
{
    return (unsigned)method < HTTP_METHOD_COUNT ? http_method_names[method] : NULL;
}

http_method http_method_from_llhttp(int m)
{
    switch (m) {
    case HTTP_GET: return HTTP_METHOD_GET;
    case HTTP_HEAD: return HTTP_METHOD_HEAD;
    case HTTP_POST: return HTTP_METHOD_POST;
    case HTTP_PUT: return HTTP_METHOD_PUT;
    case HTTP_DELETE: return HTTP_METHOD_DELETE;
    case HTTP_PATCH: return HTTP_METHOD_PATCH;
    case HTTP_OPTIONS: return HTTP_METHOD_OPTIONS;
    default: return HTTP_METHOD_UNSUPPORTED;
    }
}

http_method http_method_parse(const char *name)
{
    for (int i = 0; i < HTTP_METHOD_COUNT; i++)
        if (strcmp(name, http_method_names[i]) == 0)
            return (http_method)i;
    return HTTP_METHOD_UNSUPPORTED;
}
