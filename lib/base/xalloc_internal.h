/* xalloc: allocation that never returns NULL. Like Redis, h2o and Kore, apiary treats out-of-memory
 * as fatal (log and abort) instead of threading NULL checks through every hot path. */
#ifndef APIARY_XALLOC_H
#define APIARY_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);

#endif
