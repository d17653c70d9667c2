/* main: the apiary binary. Parses the command line, loads and checks the config (flags override the
 * file), then hands over to server_run. Exit status: 0 clean, 1 start-up failure, 2 bad usage or
 * config. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "config.h"
#include "daemon.h"
#include "healthcheck.h"
#include "json_arena.h"
#include "log.h"
#include "server.h"

int main(int argc, char **argv)
{
    /* Before anything uses jansson (the config loader does): see json_arena.h. */
    json_arena_install();
    cli_options opts;
    if (cli_parse(argc, argv, &opts, stderr) != 0) {
        fprintf(stderr, "try 'apiary --help'\n");
        return 2;
    }
    if (opts.help) {
        cli_usage(stdout);
        return 0;
    }
    if (opts.version) {
        printf("apiary %s\n", APIARY_VERSION);
        return 0;
    }
    apiary_config cfg;
    char err[CONFIG_ERROR_MAX];
    config_defaults(&cfg);
    if (config_load_file(&cfg, opts.config_path, err) != 0) {
        fprintf(stderr, "apiary: %s\n", err);
        return 2;
    }
    /* Containers set the address in the environment (0.0.0.0 inside, a config file baked for loopback);
     * it sits between the file and the flags. Empty counts as unset, since an image's ENV cannot be
     * removed at run time, only emptied. */
    const char *env_listen = getenv("APIARY_LISTEN");
    if (env_listen && *env_listen && config_parse_listen(&cfg, env_listen, err) != 0) {
        fprintf(stderr, "apiary: APIARY_LISTEN: %s\n", err);
        return 2;
    }
    if (opts.listen && config_parse_listen(&cfg, opts.listen, err) != 0) {
        fprintf(stderr, "apiary: --listen: %s\n", err);
        return 2;
    }
    cfg.listen_overridden = (env_listen && *env_listen) || opts.listen;
    if (opts.threads > 0) {
        cfg.threads = (unsigned)opts.threads;
        cfg.threads_overridden = true;
    }
    if (opts.healthcheck)
        return healthcheck_run(&cfg);
    if (opts.check_config) {
        printf("config OK: %s\n", opts.config_path);
        return 0;
    }
    log_set_level(cfg.log_level);
    int ready_fd = -1;
    if (opts.daemon) {
        if (!cfg.log_file[0]) {
            fprintf(stderr, "apiary: --daemon needs daemon.log_file in the config (a daemon has no terminal)\n");
            return 2;
        }
        ready_fd = daemon_start(err, sizeof(err));
        if (ready_fd < 0) {
            fprintf(stderr, "apiary: %s\n", err);
            return 1;
        }
        cfg.daemonize = true;
    }
    return server_run(&cfg, ready_fd);
}
