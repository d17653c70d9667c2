/* fuzz_config: libFuzzer target for the config loader (lib/app/config.c, config_sections.c): the input
 * is a config file's text, loaded over the defaults as the server does at start and on SIGHUP. A file
 * that fails must leave the config untouched and say why in one line naming the key; one that loads
 * must hold values inside the documented ranges the engine relies on. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR + 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    static apiary_config cfg, before;
    config_defaults(&cfg);
    before = cfg;
    char err[CONFIG_ERROR_MAX];
    err[0] = '\0';
    if (config_load_string(&cfg, text, "fuzz.json", err) != 0) {
        if (memcmp(&cfg, &before, sizeof(cfg)) != 0 || err[0] == '\0' || strchr(err, '\n')) {
            fprintf(stderr, "fuzz_config: a failed load changed the config or gave no one-line reason\n");
            abort();
        }
    } else if (cfg.http.max_url_bytes >= cfg.http.max_header_bytes || cfg.max_connections == 0 ||
               cfg.http.output_buffer_bytes < 4096 || cfg.http.json_max_depth == 0) {
        fprintf(stderr, "fuzz_config: a loaded config breaks a documented rule\n");
        abort();
    }
    free(text);
    return 0;
}
