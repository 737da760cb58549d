/* The one place where framegate's error codes become HTTP answers. Every layer below the
 * HTTP front (pool, backends, body parsers) reports a negative code from proto/err.h; only
 * the front turns it into a status, a stable machine-readable "code" string for the JSON
 * error body, and whether Retry-After applies. Pure functions, any thread. */
#ifndef GW_STATUS_H
#define GW_STATUS_H

typedef struct {
    int status;        /* HTTP status: 200, 4xx, 5xx */
    const char *code;  /* static, e.g. "queue_full"; NULL for 0 */
    int retry_after;   /* 1: the answer carries Retry-After (the client may try again) */
} gw_status_t;

/* Maps 0 or a negative code (ours, or a libuv/errno code) to its HTTP answer. Codes that
 * should never reach a client map to 500 "internal". */
gw_status_t gw_status_of(int err);

/* The reason phrase of an HTTP status ("Not Found"), "Unknown" for others. */
const char *gw_status_reason(int status);

#endif
