/* handlers: apiary's endpoints. Each area has its own file; handlers_register puts every route into
 * the router from the one table in routes.c, so the API surface is readable in one place. */
#ifndef APIARY_HANDLERS_H
#define APIARY_HANDLERS_H

#include "http_request.h"
#include "router.h"

/* Registers every route. Returns 0, or -1 if the table is inconsistent (a bug, reported in the log). */
int handlers_register(router *r);

/* health.c */
void health_live(http_request *req);
void health_ready(http_request *req);
/* hello.c */
void hello_get(http_request *req);
/* echo.c */
void echo_post(http_request *req);

#endif
