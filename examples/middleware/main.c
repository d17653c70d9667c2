/* middleware: the server. Everything is in app.c, which test.c drives in-process. */
#include "app.h"

int main(int argc, char **argv) { return apiary_app_main(middleware_app(), argc, argv); }
