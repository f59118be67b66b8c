/*
 * log.h - the one logging interface of bbfs, shared by api/ and fs/.
 *
 * Messages go to stderr (foreground) or syslog (background). Debug messages
 * appear only after log_set_debug(1) (-d / -o debug). Nothing logged may
 * contain the token: callers log URLs and API messages, never headers.
 * log_once() suppresses repeats of the same key, so a listing with many bad
 * entries or a dead network yields one line, not a storm.
 */
#ifndef BBFS_LOG_H
#define BBFS_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_ERR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_set_debug(int enabled);
int log_debug_enabled(void);
/* Switch from stderr to syslog (after daemonizing). */
void log_use_syslog(int enabled);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs only the first message for a given key (until log_forget(key)). */
void log_once(enum log_level level, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_forget(const char *key);

/*
 * Start-up: from log_hold() until log_release(), messages other than debug
 * ones are kept (the first LOG_HELD_MAX) instead of written, so that a fatal
 * start-up error is the only line a user sees and a warning such as "the
 * rate limit is nearly used up" comes after the start-up succeeded.
 * log_release(1) writes what was kept, log_release(0) drops it.
 */
#define LOG_HELD_MAX 32
void log_hold(void);
void log_release(int write);

/*
 * Copies src into dst (size dstlen, always terminated), replacing control
 * characters and bytes that are not printable by '?', so that hostile API
 * strings cannot forge log lines or terminal escapes.
 */
void log_sanitize(char *dst, size_t dstlen, const char *src);

/*
 * Formats one message into buf (size len; nothing when buf is NULL) and
 * sanitises it, for error messages that quote strings from the API.
 */
void log_format_line(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_err(...) log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_debug_enabled())                                                                   \
            log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                                 \
    } while (0)

#endif
