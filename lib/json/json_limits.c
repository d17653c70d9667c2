/* json_limits: see json_limits_internal.h. */
#include "json_limits_internal.h"

#include <string.h>

/* Values are counted by their separators: a document has one value, and each ',' outside a string
 * adds one more (an element or a member), as does each container's first entry — unless the container
 * is empty, which a look past its whitespace tells. For valid text the count is exact; for any text it
 * costs a comparison per byte outside strings. */
json_limits_result json_limits_scan(const char *text, size_t len, size_t max_depth, size_t max_values)
{
    const char *p = text, *end = text + len;
    size_t depth = 0, values = 1;
    while (p < end) {
        char c = *p++;
        switch (c) {
        case '"':
            /* Skip the string in runs: memchr finds the next quote, and a quote preceded by an odd
             * number of backslashes is escaped. */
            for (;;) {
                const char *q = memchr(p, '"', (size_t)(end - p));
                if (!q)
                    return JSON_LIMITS_OK; /* unterminated: the parser says where */
                size_t slashes = 0;
                while (q - slashes > p && q[-1 - (ptrdiff_t)slashes] == '\\')
                    slashes++;
                p = q + 1;
                if (slashes % 2 == 0)
                    break;
            }
            break;
        case '[':
        case '{':
            if (++depth > max_depth)
                return JSON_LIMITS_TOO_DEEP;
            {
                const char *q = p;
                while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
                    q++;
                if (q < end && (*q == ']' || *q == '}'))
                    break; /* empty: no first entry */
            }
            if (++values > max_values) /* the container's first entry */
                return JSON_LIMITS_TOO_MANY;
            break;
        case ',':
            if (++values > max_values)
                return JSON_LIMITS_TOO_MANY;
            break;
        case ']':
        case '}':
            if (depth)
                depth--;
            break;
        default:
            break;
        }
    }
    return JSON_LIMITS_OK;
}
