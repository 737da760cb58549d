/* The front door: what every request passes before its handler — the client address's rate,
 * the token and its role (auth.h), the token's rate — and the per-address connection cap at
 * accept. It plugs into the server through gw_server_ops_t's admit/connect/disconnect (the
 * server knows no tokens), answers refusals itself (401, 403, 429 with Retry-After; statuses
 * from status.c), and counts them in metrics. Loop thread. */
#ifndef GW_FRONTDOOR_H
#define GW_FRONTDOOR_H

#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "limit.h"
#include "metrics.h"
#include "server.h"

typedef struct gw_frontdoor gw_frontdoor_t;

/* Reads tokens_file and the rate keys of cfg (which must outlive it), declares its metric
 * families in `metrics` (may be NULL: no metrics), and checks the token file for changes every
 * second. 0, or PROTO_ECONFIG with "key: why" in err, or PROTO_ENOMEM. */
int gw_frontdoor_create(gw_frontdoor_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                        gw_metrics_t *metrics, char *err, size_t errcap);

/* Stops its timer and its metrics listener, frees the HTTPS state (call after the server
 * that uses it is destroyed); the rest goes in the timer's close callback (run the loop
 * after). */
void gw_frontdoor_destroy(gw_frontdoor_t *fd);

/* Re-reads the token file and the HTTPS certificate now (SIGHUP); logs the outcome. Open
 * connections keep their certificate; new ones get the new one. */
void gw_frontdoor_reload(gw_frontdoor_t *fd);

/* Opens srv's listeners: `listen` (HTTPS when https_cert is set) and listen_plain. 0, or a
 * negative code with "key: why" in err. */
int gw_frontdoor_listen(gw_frontdoor_t *fd, gw_server_t *srv, char *err, size_t errcap);

/* With metrics_listen set, a server of its own there answering GET /metrics with `handler`
 * (ctx) and no token: loopback addresses only. 0 (also when unset), or a negative code with
 * "metrics_listen: why" in err. */
int gw_frontdoor_metrics(gw_frontdoor_t *fd, gw_handler_cb handler, void *ctx, char *err,
                         size_t errcap);

/* 1 when no tokens_file is configured: every route is open. */
int gw_frontdoor_open(const gw_frontdoor_t *fd);

/* gw_server_ops_t hooks (door = the gw_frontdoor_t). admit: 0 lets the request through,
 * else it has been answered. connect: 0, or PROTO_ERATELIMIT when peer is at its cap. */
int gw_frontdoor_admit(void *door, gw_req_t *req, const gw_route_t *route);
int gw_frontdoor_connect(void *door, const uint8_t peer[GW_LIMIT_KEY]);
void gw_frontdoor_disconnect(void *door, const uint8_t peer[GW_LIMIT_KEY]);

/* For handlers that take a camera from the query or body (detect, results): 0 when the
 * request's token may act for `camera` (NULL or "" = the request names none; a token bound
 * to cameras may not then, unless its list is '*'), else it answers 403 with the reason,
 * counts it, and returns PROTO_EFORBIDDEN. Routes whose '*' is the camera are checked by
 * admit (auth.h's GW_ALLOW_OWN_CAMERA). Loop thread. */
int gw_frontdoor_camera(gw_req_t *req, const char *camera);

/* The token a request carries: "Authorization: Bearer T", else "?token=T" (percent-decoded
 * into buf). Its length, 0 if none (or over cap). */
size_t gw_frontdoor_token(const gw_req_t *req, char *buf, size_t cap);

#endif
