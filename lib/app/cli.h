/* cli: command-line parsing for the apiary binary. Flags override the config file; parsing only
 * collects them, main applies them after the file is loaded so the precedence is in one place. */
#ifndef APIARY_CLI_H
#define APIARY_CLI_H

#include <stdbool.h>
#include <stdio.h>

typedef struct cli_options {
    const char *config_path; /* --config PATH (default "config/apiary.json") */
    bool config_given;       /* --config was on the command line (an app may have no default file) */
    const char *listen;      /* --listen HOST:PORT, or NULL */
    int threads;             /* --threads N (1..256), or -1 when not given */
    bool check_config;       /* --check-config: validate, print "config OK", exit 0 (2 on error) */
    bool daemon;             /* --daemon: detach; needs daemon.log_file in the config */
    bool healthcheck;        /* --healthcheck: GET /healthz on the listen address, exit 0 on 200, else 1 */
    bool version;            /* --version */
    bool openapi;            /* --openapi: print the OpenAPI document and exit */
    bool help;               /* --help */
} cli_options;

/* Parses argv (both "--flag value" and "--flag=value"). Returns 0, or -1 after writing a message
 * naming the bad argument to `err`; the caller exits with status 2. */
int cli_parse(int argc, char **argv, cli_options *out, FILE *err);

/* Prints usage to `out`. */
void cli_usage(FILE *out);
/* The same for an application called `program` whose --config defaults to `default_config` (NULL:
 * no file, the built-in defaults). */
void cli_usage_for(FILE *out, const char *program, const char *default_config);

#endif
