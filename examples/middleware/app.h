/* app: the middleware example's application, built by main() for the server and by test.c for the
 * in-process tests, so both run exactly the same routes, middleware, section and option. */
#ifndef MIDDLEWARE_APP_H
#define MIDDLEWARE_APP_H

#include <apiary/apiary.h>

/* A new app with everything registered. */
apiary_app *middleware_app(void);

#endif
