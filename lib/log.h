/* Levelled, timestamped log lines on stderr: one line per event. */
#ifndef SIDECAR_LOG_H
#define SIDECAR_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* The level is the process's one piece of shared mutable state: every
 * loop logs through it and a reload sets it. */
void log_set_level(enum log_level lv);
int log_enabled(enum log_level lv);
int log_level_parse(const char *s, enum log_level *out);
void log_write(enum log_level lv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_write(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
    do { if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
