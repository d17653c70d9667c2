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

/* An application's own option (apiary_app_option): `fn` gets its value (NULL for a switch, one
 * without value_name) when it is on the command line, and returns 0, or -1 with a message in why. */
typedef struct cli_extra {
    const char *name;       /* without the leading "--" */
    const char *value_name; /* "N", "PATH"; NULL: a switch */
    const char *help;
    int (*fn)(const char *value, void *arg, char *why, size_t why_cap);
    void *arg;
} cli_extra;

/* cli_parse with the app's options beside apiary's; `program` names it in messages. */
int cli_parse_with(int argc, char **argv, cli_options *out, FILE *err, const char *program, const cli_extra *extra,
                   size_t extra_count);
/* True when `name` is one of apiary's own flags. */
bool cli_is_builtin(const char *name);
/* The app's options under the usage (nothing without any). */
void cli_usage_extra(FILE *out, const char *program, const cli_extra *extra, size_t extra_count);

/* Prints usage to `out`. */
void cli_usage(FILE *out);
/* The same for an application called `program` whose --config defaults to `default_config` (NULL:
 * no file, the built-in defaults). */
void cli_usage_for(FILE *out, const char *program, const char *default_config);

#endif
