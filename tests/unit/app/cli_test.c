/* cli_test: unit tests for lib/app/cli.c — both flag forms, defaults, repeated calls, and every error
 * (unknown flag, missing value, bad number) naming the argument at fault. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_internal.h"

/* Holds what cli_parse wrote to its error stream, so tests can check the message. */
typedef struct cli_test_run {
    int rc;
    cli_options opts;
    char err[512];
} cli_test_run;

static void cli_test_parse(cli_test_run *run, int argc, char **argv)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&buf, &len);
    cr_assert(err != NULL);
    run->rc = cli_parse(argc, argv, &run->opts, err);
    fclose(err);
    snprintf(run->err, sizeof(run->err), "%s", buf ? buf : "");
    free(buf);
}

/* argv arrays are built from string literals; cli_parse never writes through them. */
#define CLI_TEST_PARSE(run, ...)                                                         \
    do {                                                                                 \
        char *cli_test_argv[] = {"apiary", __VA_ARGS__, NULL};                           \
        int cli_test_argc = (int)(sizeof(cli_test_argv) / sizeof(cli_test_argv[0])) - 1; \
        cli_test_parse((run), cli_test_argc, cli_test_argv);                             \
    } while (0)

#define cli_test_assert_err(run, needle)                                                                    \
    cr_assert(strstr((run)->err, (needle)) != NULL, "expected \"%s\" in the message, got \"%s\"", (needle), \
              (run)->err)

static void cli_test_assert_fails(cli_test_run *run, const char *needle)
{
    cr_assert_eq(run->rc, -1, "expected failure mentioning %s", needle);
    cli_test_assert_err(run, needle);
    cr_assert(strchr(run->err, '\n') == strrchr(run->err, '\n'), "more than one line: %s", run->err);
}

Test(cli, defaults_without_arguments)
{
    cli_test_run run;
    char *argv[] = {"apiary", NULL};
    cli_test_parse(&run, 1, argv);
    cr_assert_eq(run.rc, 0);
    cr_assert_str_eq(run.opts.config_path, "config/apiary.json");
    cr_assert_null(run.opts.listen);
    cr_assert_eq(run.opts.threads, -1);
    cr_assert(!run.opts.check_config && !run.opts.version && !run.opts.help);
    cr_assert_str_eq(run.err, "");
}

Test(cli, no_argv_at_all)
{
    cli_test_run run;
    char *argv[] = {NULL};
    cli_test_parse(&run, 0, argv);
    cr_assert_eq(run.rc, 0);
    cr_assert_eq(run.opts.threads, -1);
}

Test(cli, separate_values)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--config", "/etc/apiary.json", "--listen", "[::1]:9000", "--threads", "4");
    cr_assert_eq(run.rc, 0, "%s", run.err);
    cr_assert_str_eq(run.opts.config_path, "/etc/apiary.json");
    cr_assert_str_eq(run.opts.listen, "[::1]:9000");
    cr_assert_eq(run.opts.threads, 4);
}

Test(cli, equals_values)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--config=/etc/apiary.json", "--listen=0.0.0.0:0", "--threads=256");
    cr_assert_eq(run.rc, 0, "%s", run.err);
    cr_assert_str_eq(run.opts.config_path, "/etc/apiary.json");
    cr_assert_str_eq(run.opts.listen, "0.0.0.0:0");
    cr_assert_eq(run.opts.threads, 256);
}

Test(cli, value_may_contain_equals_and_start_with_dashes_after_equals)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--config=a=b.json");
    cr_assert_eq(run.rc, 0, "%s", run.err);
    cr_assert_str_eq(run.opts.config_path, "a=b.json");
    CLI_TEST_PARSE(&run, "--config=--odd.json");
    cr_assert_eq(run.rc, 0, "%s", run.err);
    cr_assert_str_eq(run.opts.config_path, "--odd.json");
}

Test(cli, boolean_flags)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--check-config", "--version", "--help");
    cr_assert_eq(run.rc, 0, "%s", run.err);
    cr_assert(run.opts.check_config);
    cr_assert(run.opts.version);
    cr_assert(run.opts.help);
    cr_assert_eq(run.opts.threads, -1);
}

Test(cli, last_value_wins)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--threads", "2", "--threads=3");
    cr_assert_eq(run.rc, 0, "%s", run.err);
    cr_assert_eq(run.opts.threads, 3);
}

Test(cli, callable_repeatedly)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--threads", "8", "--check-config");
    cr_assert_eq(run.rc, 0);
    CLI_TEST_PARSE(&run, "--bogus");
    cr_assert_eq(run.rc, -1);
    /* A fresh parse starts from the defaults: nothing from the first call survives. */
    CLI_TEST_PARSE(&run, "--version");
    cr_assert_eq(run.rc, 0, "%s", run.err);
    cr_assert_eq(run.opts.threads, -1);
    cr_assert(!run.opts.check_config);
    cr_assert(run.opts.version);
}

Test(cli, unknown_flag)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--thread", "4");
    cli_test_assert_fails(&run, "unknown option '--thread'");
    CLI_TEST_PARSE(&run, "--bogus=1");
    cli_test_assert_fails(&run, "unknown option '--bogus'");
    CLI_TEST_PARSE(&run, "--Help");
    cli_test_assert_fails(&run, "'--Help'");
}

Test(cli, not_a_flag)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "config.json");
    cli_test_assert_fails(&run, "'config.json'");
    CLI_TEST_PARSE(&run, "-h");
    cli_test_assert_fails(&run, "'-h'");
    CLI_TEST_PARSE(&run, "--");
    cli_test_assert_fails(&run, "'--'");
    CLI_TEST_PARSE(&run, "--threads", "2", "extra");
    cli_test_assert_fails(&run, "'extra'");
}

Test(cli, missing_value)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--config");
    cli_test_assert_fails(&run, "--config needs a value");
    CLI_TEST_PARSE(&run, "--listen=");
    cli_test_assert_fails(&run, "--listen needs a value");
    CLI_TEST_PARSE(&run, "--threads", "");
    cli_test_assert_fails(&run, "--threads needs a value");
    /* The next flag is not swallowed as the value. */
    CLI_TEST_PARSE(&run, "--config", "--check-config");
    cli_test_assert_fails(&run, "--config needs a value");
}

Test(cli, bad_thread_counts)
{
    static const char *const cases[] = {"0", "257", "-1", "abc", "4x", " 4", "1.5", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cli_test_run run;
        char *argv[] = {"apiary", "--threads", (char *)cases[i], NULL};
        char want[64];
        cli_test_parse(&run, 3, argv);
        snprintf(want, sizeof(want), "--threads: '%s' is not an integer between 1 and 256", cases[i]);
        cli_test_assert_fails(&run, want);
    }
}

Test(cli, thread_bounds)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--threads=1");
    cr_assert_eq(run.rc, 0, "%s", run.err);
    cr_assert_eq(run.opts.threads, 1);
    CLI_TEST_PARSE(&run, "--threads", "256");
    cr_assert_eq(run.rc, 0, "%s", run.err);
    cr_assert_eq(run.opts.threads, 256);
}

Test(cli, boolean_flag_rejects_a_value)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--check-config=yes");
    cli_test_assert_fails(&run, "--check-config does not take a value");
}

Test(cli, usage_lists_every_flag)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    cli_usage(out);
    fclose(out);
    static const char *const flags[] = {"--config", "--listen", "--threads", "--check-config", "--version",
                                        "--help"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        cr_assert(strstr(buf, flags[i]) != NULL, "usage does not mention %s", flags[i]);
    free(buf);
}

/* --healthcheck (operations): a boolean flag that combines with --config and --listen, which say where
 * to probe. */
Test(cli, healthcheck_defaults_to_off)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--config", "a.json");
    cr_assert_eq(run.rc, 0, "%s", run.err);
    cr_assert(!run.opts.healthcheck);
}

Test(cli, healthcheck_alone)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--healthcheck");
    cr_assert_eq(run.rc, 0, "%s", run.err);
    cr_assert(run.opts.healthcheck);
    cr_assert_str_eq(run.opts.config_path, "config/apiary.json");
    cr_assert_null(run.opts.listen);
    cr_assert(!run.opts.check_config && !run.opts.version && !run.opts.help);
    cr_assert_str_eq(run.err, "");
}

Test(cli, healthcheck_with_listen_and_config)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--healthcheck", "--listen", "0.0.0.0:8080", "--config=/etc/apiary/apiary.json");
    cr_assert_eq(run.rc, 0, "%s", run.err);
    cr_assert(run.opts.healthcheck);
    cr_assert_str_eq(run.opts.listen, "0.0.0.0:8080");
    cr_assert_str_eq(run.opts.config_path, "/etc/apiary/apiary.json");
    /* Order does not matter. */
    CLI_TEST_PARSE(&run, "--listen=[::]:9000", "--healthcheck");
    cr_assert_eq(run.rc, 0, "%s", run.err);
    cr_assert(run.opts.healthcheck);
    cr_assert_str_eq(run.opts.listen, "[::]:9000");
}

Test(cli, healthcheck_rejects_a_value)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--healthcheck=yes");
    cli_test_assert_fails(&run, "--healthcheck does not take a value");
}

Test(cli, healthcheck_is_not_a_value)
{
    cli_test_run run;
    /* "--listen --healthcheck" forgot the address; the flag is not taken as one. */
    CLI_TEST_PARSE(&run, "--listen", "--healthcheck");
    cli_test_assert_fails(&run, "--listen needs a value");
}

Test(cli, healthcheck_misspelt)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--health-check");
    cli_test_assert_fails(&run, "unknown option '--health-check'");
}

Test(cli, healthcheck_does_not_survive_a_new_parse)
{
    cli_test_run run;
    CLI_TEST_PARSE(&run, "--healthcheck");
    cr_assert(run.opts.healthcheck);
    CLI_TEST_PARSE(&run, "--check-config");
    cr_assert_eq(run.rc, 0, "%s", run.err);
    cr_assert(!run.opts.healthcheck);
}

Test(cli, usage_mentions_healthcheck_and_apiary_listen)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    cli_usage(out);
    fclose(out);
    cr_assert(strstr(buf, "--healthcheck") != NULL, "usage does not mention --healthcheck");
    cr_assert(strstr(buf, "APIARY_LISTEN") != NULL, "usage does not mention APIARY_LISTEN");
    free(buf);
}
