/* The HTTP/1.1 front: listens, and serves a route table.
 *
 * It knows nothing of backends or of what a path means: the caller registers its routes
 * (router.h: method, path pattern, metrics label, handler) and the server answers GET
 * /healthz itself. That keeps it testable on its own with fake handlers. All calls and
 * callbacks run on the loop thread.
 *
 * Files: server.c (listener, lifecycle), http.c (connections), router.c (the route table),
 * response.c (answers and errors), detect.c (the detect handler). */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "job.h"

typedef struct gw_server gw_server_t;
typedef struct gw_listener gw_listener_t;
typedef struct gw_tls gw_tls_t; /* tls_conn.h */

#define GW_SERVER_MAX_LISTENERS 4
typedef struct gw_req gw_req_t;

/* A route handler: answers req with response.h (gw_respond*), at once or later (then it
 * takes gw_req_hold until it has answered). Runs on the loop thread. */
typedef void (*gw_handler_cb)(void *ctx, gw_req_t *req);

typedef struct {
    const char *method; /* "GET" (which also answers HEAD), "POST", ... */
    /* "/readyz"; a '*' matches one non-empty segment (as in "/v1/models/" "*" "/detect"), a
     * final "**" any rest (a prefix pattern) */
    const char *pattern;
    const char *label; /* the metrics route label */
    gw_handler_cb handler;
    void *ctx; /* handed to handler */
    /* who may use it: a mask of auth.h's GW_ROLE_* (admin may use every route), 0 = public;
     * enforced by ops->admit, so only when the server has a front door */
    unsigned allow;
} gw_route_t;

typedef struct {
    /* Tried in order after the built-in GET /healthz. The array is copied; what the routes
     * point at (strings, ctx) must outlive the server. */
    const gw_route_t *routes;
    size_t nroutes;
    /* Called once per answered HTTP request (for metrics); may be NULL. */
    void (*on_response)(void *ctx, const char *route, int status, double seconds);
    /* Called when the server has no more connections after gw_server_stop(); may be NULL. */
    void (*on_drained)(void *ctx);
    /* The front door (frontdoor.h), all NULL for none. admit runs after routing, before the
     * route's handler: 0 lets the request through, else admit has answered it. connect runs
     * at accept with the client's address (16 bytes: IPv6, or IPv4 mapped): non-zero closes
     * the connection; each 0 is paired with one disconnect when it closes. */
    int (*admit)(void *door, gw_req_t *req, const gw_route_t *route);
    int (*connect)(void *door, const uint8_t peer[16]);
    void (*disconnect)(void *door, const uint8_t peer[16]);
    void *door;
} gw_server_ops_t;

/* Creates a server on `loop`; cfg and ops must outlive it; ctx goes to ops' callbacks.
 * Returns 0 or a negative code. */
int gw_server_create(gw_server_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                     const gw_server_ops_t *ops, void *ctx);

/* Binds and listens on cfg->listen_host:listen_port, plain HTTP. Returns 0 or a libuv code. */
int gw_server_start(gw_server_t *srv);

/* Adds a listener on host:port serving the same routes: HTTPS when tls is not NULL (it must
 * outlive the server). Returns 0, a libuv code, or PROTO_ETOOBIG past
 * GW_SERVER_MAX_LISTENERS. */
int gw_server_listen(gw_server_t *srv, const char *host, int port, gw_tls_t *tls);

/* Splits "HOST:PORT" or "[V6]:PORT". 0 or PROTO_EINVAL. */
int gw_hostport_parse(const char *text, char *host, size_t hostcap, int *port);

/* The port actually bound by the first listener (useful when the configured port was 0),
 * and by listener i. */
int gw_server_port(const gw_server_t *srv);
int gw_server_port_of(const gw_server_t *srv, int i);

/* Stops accepting; idle keep-alive connections are closed, busy ones are closed after
 * their in-flight requests are answered. ops->on_drained fires when none are left. */
void gw_server_stop(gw_server_t *srv);

/* Number of open client connections. */
int gw_server_connections(const gw_server_t *srv);

/* Closes everything and frees the server once its handles are closed (runs the loop's close
 * callbacks; call before uv_loop_close). */
void gw_server_destroy(gw_server_t *srv);

#endif
