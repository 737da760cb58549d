/* Structured logging: one line per event on stderr, "ts=... level=... event=... k=v ...".
 * Loop thread only (not locked). The level is set once at start. */
#ifndef GW_LOG_H
#define GW_LOG_H

enum { GW_LOG_ERROR = 0, GW_LOG_WARN = 1, GW_LOG_INFO = 2, GW_LOG_DEBUG = 3 };

void gw_log_set_level(int level);
int gw_log_enabled(int level);

/* `event` is a short snake_case name; fmt/... add "key=value" pairs (caller formats them). */
void gw_log(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define GW_LOG_E(ev, ...) gw_log(GW_LOG_ERROR, ev, __VA_ARGS__)
#define GW_LOG_W(ev, ...) gw_log(GW_LOG_WARN, ev, __VA_ARGS__)
#define GW_LOG_I(ev, ...) gw_log(GW_LOG_INFO, ev, __VA_ARGS__)
#define GW_LOG_D(ev, ...)                                                    \
    do {                                                                     \
        if (gw_log_enabled(GW_LOG_DEBUG))                                    \
            gw_log(GW_LOG_DEBUG, ev, __VA_ARGS__);                           \
    } while (0)

#endif
