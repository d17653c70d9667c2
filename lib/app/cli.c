/* cli: parses apiary's command line into cli_options. A plain loop over argv instead of getopt, so
 * there is no global state and tests can call it again and again. */
#include "cli_internal.h"

#include <string.h>

#define CLI_THREADS_MAX 256

typedef enum cli_flag_id {
    CLI_CONFIG,
    CLI_LISTEN,
    CLI_THREADS,
    CLI_CHECK_CONFIG,
    CLI_HEALTHCHECK,
    CLI_VERSION,
    CLI_OPENAPI,
    CLI_HELP,
    CLI_DAEMON,
} cli_flag_id;

typedef struct cli_flag {
    const char *name; /* without the leading "--" */
    cli_flag_id id;
    bool takes_value;
} cli_flag;

static const cli_flag cli_flags[] = {
    {"config", CLI_CONFIG, true},
    {"listen", CLI_LISTEN, true},
    {"threads", CLI_THREADS, true},
    {"check-config", CLI_CHECK_CONFIG, false},
    {"healthcheck", CLI_HEALTHCHECK, false},
    {"daemon", CLI_DAEMON, false},
    {"version", CLI_VERSION, false},
    {"openapi", CLI_OPENAPI, false},
    {"help", CLI_HELP, false},
};

static const cli_flag *cli_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(cli_flags) / sizeof(cli_flags[0]); i++) {
        if (strlen(cli_flags[i].name) == len && strncmp(cli_flags[i].name, name, len) == 0)
            return &cli_flags[i];
    }
    return NULL;
}

static int cli_parse_threads(const char *text, int *out)
{
    int n = 0;
    if (*text == '\0')
        return -1;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (*p - '0');
        if (n > CLI_THREADS_MAX)
            return -1;
    }
    if (n < 1)
        return -1;
    *out = n;
    return 0;
}

static int cli_apply(const cli_flag *f, const char *value, cli_options *out, FILE *err)
{
    switch (f->id) {
    case CLI_CONFIG:
        out->config_path = value;
        out->config_given = true;
        break;
    case CLI_LISTEN:
        /* Only collected: main validates it with config_parse_listen, as for the file's value. */
        out->listen = value;
        break;
    case CLI_THREADS:
        if (cli_parse_threads(value, &out->threads) != 0) {
            fprintf(err, "apiary: --threads: '%s' is not an integer between 1 and %d\n", value,
                    CLI_THREADS_MAX);
            return -1;
        }
        break;
    case CLI_CHECK_CONFIG:
        out->check_config = true;
        break;
    case CLI_HEALTHCHECK:
        out->healthcheck = true;
        break;
    case CLI_DAEMON:
        out->daemon = true;
        break;
    case CLI_VERSION:
        out->version = true;
        break;
    case CLI_OPENAPI:
        out->openapi = true;
        break;
    case CLI_HELP:
        out->help = true;
        break;
    }
    return 0;
}

/* Finds the value of a flag that takes one: after '=' or in the next argument. A next argument that
 * starts with "--" is taken as a forgotten value ("--config --check-config"), not as the value;
 * "--config=--odd-name" still works. */
static const char *cli_value(const cli_flag *f, const char *inline_value, int argc, char **argv, int *i,
                             FILE *err)
{
    const char *value = inline_value;
    if (!value && *i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0)
        value = argv[++*i];
    if (!value || *value == '\0') {
        fprintf(err, "apiary: --%s needs a value\n", f->name);
        return NULL;
    }
    return value;
}

bool cli_is_builtin(const char *name) { return cli_find(name, strlen(name)) != NULL; }

static const cli_extra *cli_find_extra(const char *name, size_t len, const cli_extra *extra, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(extra[i].name) == len && strncmp(extra[i].name, name, len) == 0)
            return &extra[i];
    return NULL;
}

/* An app's option at argv[*i]; 1 when it was not one, 0 when taken, -1 after a message. */
static int cli_apply_extra(const char *program, const char *name, int name_len, const char *eq, int argc,
                           char **argv, int *i, FILE *err, const cli_extra *extra, size_t n)
{
    const cli_extra *x = cli_find_extra(name, (size_t)name_len, extra, n);
    if (!x)
        return 1;
    const char *value = NULL;
    if (!x->value_name && eq) {
        fprintf(err, "%s: --%s does not take a value\n", program, x->name);
        return -1;
    }
    if (x->value_name) {
        value = eq ? eq + 1 : NULL;
        if (!value && *i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0)
            value = argv[++*i];
        if (!value || *value == '\0') {
            fprintf(err, "%s: --%s needs a value (%s)\n", program, x->name, x->value_name);
            return -1;
        }
    }
    char why[256] = "";
    if (x->fn && x->fn(value, x->arg, why, sizeof(why)) != 0) {
        fprintf(err, "%s: --%s: %s\n", program, x->name, why[0] ? why : "refused");
        return -1;
    }
    return 0;
}

int cli_parse(int argc, char **argv, cli_options *out, FILE *err)
{
    return cli_parse_with(argc, argv, out, err, "apiary", NULL, 0);
}

int cli_parse_with(int argc, char **argv, cli_options *out, FILE *err, const char *program, const cli_extra *extra,
                   size_t extra_count)
{
    *out = (cli_options){.config_path = "config/apiary.json", .listen = NULL, .threads = -1};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            fprintf(err, "apiary: unexpected argument '%s' (see --help)\n", arg);
            return -1;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        int name_len = (int)(eq ? (size_t)(eq - name) : strlen(name));
        const cli_flag *f = cli_find(name, (size_t)name_len);
        if (!f && extra_count) {
            int rc = cli_apply_extra(program, name, name_len, eq, argc, argv, &i, err, extra, extra_count);
            if (rc <= 0) {
                if (rc < 0)
                    return -1;
                continue;
            }
        }
        if (!f) {
            fprintf(err, "apiary: unknown option '--%.*s' (see --help)\n", name_len, name);
            return -1;
        }
        if (!f->takes_value && eq) {
            fprintf(err, "apiary: --%s does not take a value\n", f->name);
            return -1;
        }
        const char *value = NULL;
        if (f->takes_value && !(value = cli_value(f, eq ? eq + 1 : NULL, argc, argv, &i, err)))
            return -1;
        if (cli_apply(f, value, out, err) != 0)
            return -1;
    }
    return 0;
}

void cli_usage(FILE *out) { cli_usage_for(out, "apiary", "config/apiary.json"); }

void cli_usage_extra(FILE *out, const char *program, const cli_extra *extra, size_t extra_count)
{
    if (!extra_count)
        return;
    fprintf(out, "\nOptions of %s:\n", program);
    for (size_t i = 0; i < extra_count; i++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s%s%s", extra[i].name, extra[i].value_name ? " " : "",
                 extra[i].value_name ? extra[i].value_name : "");
        fprintf(out, "  %-20s %s\n", left, extra[i].help ? extra[i].help : "");
    }
}

void cli_usage_for(FILE *out, const char *program, const char *default_config)
{
    fprintf(out,
            "usage: %s [--config PATH] [--listen HOST:PORT] [--threads N] [--check-config]\n"
            "%*s [--daemon] [--healthcheck] [--openapi] [--version] [--help]\n\n",
            program, (int)strlen(program) + 7, "");
    if (default_config)
        fprintf(out, "  --config PATH        JSON config file (default %s)\n", default_config);
    else
        fputs("  --config PATH        JSON config file (default: none, built-in defaults)\n", out);
    fputs("  --listen HOST:PORT   address to listen on, [IPv6]:PORT for IPv6; overrides \"listen\"\n"
          "  --threads N          event loops, 1..256; overrides \"threads\"\n"
          "  --check-config       validate the config, print \"config OK\" and exit\n"
          "  --daemon             detach into the background (needs daemon.log_file; see docs/deploy.md)\n"
          "  --healthcheck        GET /healthz on the listen address (2 s timeout); exit 0 on 200, else 1\n"
          "  --openapi            print the OpenAPI 3.1 document of the routes (GET /openapi.json) and exit\n"
          "  --version            print the version and exit\n"
          "  --help               print this help and exit\n"
          "\n"
          "Flags override the config file. Both \"--flag value\" and \"--flag=value\" work.\n"
          "APIARY_LISTEN=HOST:PORT in the environment overrides \"listen\" too; --listen wins over it.\n"
          "Exit status 2 on a bad command line or config.\n",
          out);
}
