/* The HTTP/1.1 front: listens, parses with llhttp, answers the HTTP API.
 *
 * It knows nothing of backends: images become gw_job_t's handed to ops->submit, and every
 * other GET is handed to ops->get. That keeps it testable on its own with fake ops. All
 * calls and callbacks run on the loop thread. */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <uv.h>

#include "config.h"
#include "job.h"

typedef struct gw_server gw_server_t;

/* A complete non-detect answer produced by ops->get. body is malloc'd; the server frees it. */
typedef struct {
    int status;
    const char *content_type;
    char *body;
    size_t body_len;
    int retry_after_s; /* > 0: add a Retry-After header */
} gw_reply_t;

typedef struct {
    /* Starts a job. Returns 0 (on_done will run later, never before submit returns) or a
     * negative code from proto/err.h, in which case on_done never runs. A finished job
     * reports its own code in job->err. The server maps codes to HTTP (status.h). */
    int (*submit)(void *ctx, gw_job_t *job);
    /* Answers GET `path` (no query string) into *out. Returns 0, or -1 for 404. */
    int (*get)(void *ctx, const char *path, const char *query, gw_reply_t *out);
    /* Called once per answered HTTP request (for metrics); may be NULL. */
    void (*on_response)(void *ctx, const char *route, int status, double seconds);
    /* Called when the server has no more connections after gw_server_stop(); may be NULL. */
    void (*on_drained)(void *ctx);
} gw_server_ops_t;

/* Creates a server on `loop`; cfg and ops must outlive it. Returns 0 or a negative code. */
int gw_server_create(gw_server_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                     const gw_server_ops_t *ops, void *ctx);

/* Binds and listens on cfg->listen_host:listen_port. Returns 0 or a libuv code. */
int gw_server_start(gw_server_t *srv);

/* The port actually bound (useful when the configured port was 0). */
int gw_server_port(const gw_server_t *srv);

/* Stops accepting; idle keep-alive connections are closed, busy ones are closed after
 * their in-flight requests are answered. ops->on_drained fires when none are left. */
void gw_server_stop(gw_server_t *srv);

/* Number of open client connections. */
int gw_server_connections(const gw_server_t *srv);

/* Closes everything and frees the server once its handles are closed (runs the loop's close
 * callbacks; call before uv_loop_close). */
void gw_server_destroy(gw_server_t *srv);

#endif
