#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static int log_level = GW_LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void gw_log_set_level(int level) { log_level = level; }

int gw_log_enabled(int level) { return level <= log_level; }

void gw_log(int level, const char *event, const char *fmt, ...)
{
    if (!gw_log_enabled(level))
        return;
    struct timespec ts;
    struct tm tm;
    char when[32], line[2048];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    int n = snprintf(line, sizeof line, "ts=%s.%03ldZ level=%s event=%s", when,
                     ts.tv_nsec / 1000000, level_names[level < 0 ? 0 : level > 3 ? 3 : level],
                     event);
    if (fmt != NULL && fmt[0] != '\0' && n > 0 && (size_t)n < sizeof line - 1) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
    }
    /* One fputs per line keeps lines whole when several processes share the stream. */
    fprintf(stderr, "%s\n", line);
}
