/* openapi: the OpenAPI 3.1 document of an app (GET /openapi.json, apiary --openapi), generated from its
 * routes and their schemas. Not installed. */
#ifndef APIARY_OPENAPI_H
#define APIARY_OPENAPI_H

#include <jansson.h>
#include <stddef.h>

#include "router.h"

typedef struct openapi_route {
    http_method method;
    const char *pattern;
    unsigned flags;               /* ROUTE_* */
    const route_schema *schema;   /* or NULL */
    const char *tag;              /* groups operations in the document ("built-in"), or NULL */
    const char *builtin_response;  /* a built-in endpoint: its 200 in words (no 429/504) */
} openapi_route;

/* The document for `routes`; new reference. */
json_t *openapi_document(const char *title, const char *version, const openapi_route *routes, size_t n);

#endif
