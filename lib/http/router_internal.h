/* router_internal: what the app layer asks the router beyond router.h. An app registers its routes
 * long before the router is built (apiary_app_route), and a refusal there must say why in words, which
 * router_add's bare -1 cannot. Not installed. */
#ifndef APIARY_ROUTER_INTERNAL_H
#define APIARY_ROUTER_INTERNAL_H

#include <stddef.h>

/* Whether router_add would accept the form of `pattern`: 0, or -1 with one sentence in why (NUL-
 * terminated, cut to why_cap): "the pattern repeats the parameter {a}". A duplicate is not a matter of
 * form (it depends on the routes already added), so a pattern that passes may still be refused there. */
int router_pattern_check(const char *pattern, char *why, size_t why_cap);

#endif
