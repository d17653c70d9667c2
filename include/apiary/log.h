/* log: leveled, thread-safe logging to stderr (or a file later), one write(2) per line so lines
 * from different loop threads never interleave. Not for access logs: those get their own sink.
 * Nothing here returns memory to free; a call formats and writes before it returns. */
#ifndef APIARY_LOG_H
#define APIARY_LOG_H

typedef enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Sets the minimum level written; safe to call from any thread at any time. */
void log_set_level(log_level level);
log_level log_get_level(void);
/* Parses "debug", "info", "warn" or "error"; returns -1 for anything else. */
int log_level_parse(const char *name, log_level *out);

void log_write(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) do { if (log_get_level() <= LOG_DEBUG) log_write(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

#endif
