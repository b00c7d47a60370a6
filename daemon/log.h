/* log.h — the daemon's one logging function: one line per event on stderr,
 * "2026-11-29T01:02:03.456Z level message", filtered by a global level. */
#ifndef AFLO_LOG_H
#define AFLO_LOG_H

typedef enum { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG } log_level;

void log_set_level(log_level level);
/* "error", "warn", "info", "debug"; -1 when unknown. */
int log_level_parse(const char *name, log_level *out);
void log_msg(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
