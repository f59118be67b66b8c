/*
 * log.c - the logging back end behind log.h.
 *
 * Lines go to stderr ("bbfs: warning: ...") until log_use_syslog(1) switches
 * them to syslog(3) after daemonizing. Every formatted line is passed through
 * log_sanitize() once more before it is written, so a caller that forgets to
 * sanitise a hostile API string still cannot forge a second line or send a
 * terminal escape. log_once() remembers a bounded set of keys (oldest evicted
 * first) under a mutex. While start-up holds them, finished lines wait in a
 * bounded list.
 */
#include "api/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#define LOG_LINE_MAX 1024
#define LOG_ONCE_MAX 256

static int debug_enabled;
static int syslog_enabled;

static pthread_mutex_t once_lock = PTHREAD_MUTEX_INITIALIZER;
static char *once_keys[LOG_ONCE_MAX]; /* ring buffer, once_next is the oldest slot */
static size_t once_next;

static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static int holding;
static struct held_line {
    enum log_level level;
    char *line;
} held[LOG_HELD_MAX];
static size_t held_count, held_dropped;

void log_set_debug(int enabled)
{
    __atomic_store_n(&debug_enabled, enabled ? 1 : 0, __ATOMIC_RELAXED);
}

int log_debug_enabled(void)
{
    return __atomic_load_n(&debug_enabled, __ATOMIC_RELAXED);
}

void log_use_syslog(int enabled)
{
    int was = __atomic_exchange_n(&syslog_enabled, enabled ? 1 : 0, __ATOMIC_SEQ_CST);

    if (enabled && !was)
        openlog("bbfs", LOG_PID, LOG_DAEMON);
    else if (!enabled && was)
        closelog();
}

/*
 * Decodes one UTF-8 sequence at s. Returns its length and stores the code
 * point, or returns 0 for an invalid, overlong or surrogate sequence.
 */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
    size_t n, i;
    uint32_t c = s[0], min;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xe0) == 0xc0) {
        n = 2, c &= 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, c &= 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4, c &= 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0; /* also stops at the terminating NUL */
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

/* Control characters, and the invisible ones that reorder or break lines. */
static int is_printable(uint32_t cp)
{
    if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))
        return 0;
    if (cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
        (cp >= 0x2066 && cp <= 0x2069))
        return 0;
    return 1;
}

/*
 * Valid UTF-8 of printable characters is kept, so unicode names stay
 * readable; everything else becomes '?'. dst may equal src: the output never
 * grows, and a multi-byte character is never cut in half when truncating.
 */
void log_sanitize(char *dst, size_t dstlen, const char *src)
{
    const unsigned char *s = (const unsigned char *)(src ? src : "(null)");
    size_t out = 0, n;
    uint32_t cp;

    if (!dst || dstlen == 0)
        return;
    while (*s) {
        n = utf8_decode(s, &cp);
        if (n == 0 || !is_printable(cp)) {
            if (out + 1 >= dstlen)
                break;
            dst[out++] = '?';
            s += n ? n : 1;
            continue;
        }
        if (out + n >= dstlen)
            break;
        memmove(dst + out, s, n);
        out += n;
        s += n;
    }
    dst[out] = '\0';
}

static void emit(enum log_level level, const char *line)
{
    static const char *const prefix[] = {"error: ", "warning: ", "", "debug: "};
    static const int priority[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

    if (__atomic_load_n(&syslog_enabled, __ATOMIC_RELAXED))
        syslog(priority[level], "%s%s", prefix[level], line);
    else
        fprintf(stderr, "bbfs: %s%s\n", prefix[level], line); /* one call: one locked write */
}

/* Returns 1 when start-up holds the line (kept or counted as dropped). */
static int hold_line(enum log_level level, const char *line)
{
    int held_it = 0;

    if (level == LOG_LEVEL_DEBUG || !__atomic_load_n(&holding, __ATOMIC_ACQUIRE))
        return 0;
    pthread_mutex_lock(&held_lock);
    if (holding) {
        held_it = 1;
        if (held_count < LOG_HELD_MAX && (held[held_count].line = strdup(line)))
            held[held_count++].level = level;
        else
            held_dropped++;
    }
    pthread_mutex_unlock(&held_lock);
    return held_it;
}

__attribute__((format(printf, 2, 0))) static void log_write(enum log_level level, const char *fmt,
                                                            va_list ap)
{
    char line[LOG_LINE_MAX];

    if ((unsigned)level > LOG_LEVEL_DEBUG)
        level = LOG_LEVEL_ERR;
    if (level == LOG_LEVEL_DEBUG && !log_debug_enabled())
        return;
    vsnprintf(line, sizeof(line), fmt, ap);
    log_sanitize(line, sizeof(line), line);
    if (!hold_line(level, line))
        emit(level, line);
}

void log_hold(void)
{
    __atomic_store_n(&holding, 1, __ATOMIC_RELEASE);
}

void log_release(int write)
{
    struct held_line lines[LOG_HELD_MAX];
    size_t count, dropped;

    pthread_mutex_lock(&held_lock);
    __atomic_store_n(&holding, 0, __ATOMIC_RELEASE);
    count = held_count;
    dropped = held_dropped;
    memcpy(lines, held, count * sizeof(lines[0]));
    held_count = held_dropped = 0;
    pthread_mutex_unlock(&held_lock);
    for (size_t i = 0; i < count; i++) {
        if (write)
            emit(lines[i].level, lines[i].line);
        free(lines[i].line);
    }
    if (write && dropped)
        log_msg(LOG_LEVEL_WARN, "%zu more start-up messages were dropped", dropped);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_write(level, fmt, ap);
    va_end(ap);
}

/* Returns 1 when key was not yet remembered (and remembers it now). */
static int once_claim(const char *key)
{
    size_t i;
    char *copy;
    int fresh = 1;

    pthread_mutex_lock(&once_lock);
    for (i = 0; i < LOG_ONCE_MAX; i++) {
        if (once_keys[i] && strcmp(once_keys[i], key) == 0) {
            fresh = 0;
            goto out;
        }
    }
    copy = strdup(key);
    if (!copy)
        goto out; /* cannot remember: log anyway */
    free(once_keys[once_next]);
    once_keys[once_next] = copy;
    once_next = (once_next + 1) % LOG_ONCE_MAX;
out:
    pthread_mutex_unlock(&once_lock);
    return fresh;
}

void log_once(enum log_level level, const char *key, const char *fmt, ...)
{
    va_list ap;

    if (level == LOG_LEVEL_DEBUG && !log_debug_enabled())
        return;
    if (key && !once_claim(key))
        return;
    va_start(ap, fmt);
    log_write(level, fmt, ap);
    va_end(ap);
}

void log_forget(const char *key)
{
    size_t i;

    if (!key)
        return;
    pthread_mutex_lock(&once_lock);
    for (i = 0; i < LOG_ONCE_MAX; i++) {
        if (once_keys[i] && strcmp(once_keys[i], key) == 0) {
            free(once_keys[i]);
            once_keys[i] = NULL;
        }
    }
    pthread_mutex_unlock(&once_lock);
}

void log_format_line(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (!buf || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    log_sanitize(buf, len, buf);
}
