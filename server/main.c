/* main: the apiary binary, an application of the apiary library like any other: its routes are the
 * demonstration handler set (handlers/), everything else — flags, config file, signals, drain, reload,
 * /healthz, /readyz, /metrics — is apiary_app_main's. Exit status: 0 clean, 1 start-up failure, 2 bad
 * usage or config. */
#include <apiary/apiary.h>

#include "handlers.h"

int main(int argc, char **argv)
{
    apiary_app *app = apiary_app_new("apiary");
    apiary_app_default_config(app, "config/apiary.json");
    if (handlers_add_routes(app) != 0)
        return 1;
    return apiary_app_main(app, argc, argv);
}
