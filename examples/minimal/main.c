/* minimal: the smallest apiary app: one synchronous JSON route beside the built-ins (/healthz,
 * /readyz, /metrics), with all of apiary's flags, config file, signals, drain and reload. */
#include <apiary/apiary.h>

static void hello(http_request *req)
{
    const char *name = http_request_query(req, "name");
    http_respond_json(req, 200, json_pack("{s:s}", "hello", name ? name : "world"));
}

int main(int argc, char **argv)
{
    apiary_app *app = apiary_app_new("minimal");
    apiary_app_route(app, HTTP_METHOD_GET, "/hello", hello, 0);
    return apiary_app_main(app, argc, argv);
}
