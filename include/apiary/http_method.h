/* http_method: the request methods apiary routes. Anything else that llhttp parses (WebDAV, CONNECT,
 * TRACE, ...) or that it does not know is answered 501 by the engine before routing. The names
 * returned are static strings: never freed. */
#ifndef APIARY_HTTP_METHOD_H
#define APIARY_HTTP_METHOD_H

typedef enum http_method {
    HTTP_METHOD_GET,
    HTTP_METHOD_HEAD,
    HTTP_METHOD_POST,
    HTTP_METHOD_PUT,
    HTTP_METHOD_DELETE,
    HTTP_METHOD_PATCH,
    HTTP_METHOD_OPTIONS,
    HTTP_METHOD_COUNT,
    HTTP_METHOD_UNSUPPORTED = HTTP_METHOD_COUNT,
} http_method;

/* "GET", "HEAD", ...; NULL for HTTP_METHOD_UNSUPPORTED. */
const char *http_method_name(http_method method);
/* Maps an llhttp_method_t value to ours, or HTTP_METHOD_UNSUPPORTED. */
http_method http_method_from_llhttp(int llhttp_method);
/* Parses an upper-case method name ("GET"); HTTP_METHOD_UNSUPPORTED if unknown. */
http_method http_method_parse(const char *name);

#endif
