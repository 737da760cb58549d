/* The join listener: backends started elsewhere announce themselves here
 * (framegate-backend --join URL) and the gateway dials them back. One NNG rep socket on
 * join_listen, with mutual TLS for tls+tcp:// (the gateway's certificate; a backend's must be
 * signed by tls_ca). Each request is one JSON object of at most 4 KiB, and so is the answer:
 *
 *   {"op":"join","name":"node-a","model":"face","address":"tls+tcp://10.0.0.5:7000","capacity":1}
 *   {"op":"leave","model":"face","address":"tls+tcp://10.0.0.5:7000"}
 *   -> {"ok":true,"state":"joined"|"known"|"left"}  or  {"ok":false,"error":"..."}
 *
 * A join is idempotent (backends repeat it, so a restarted gateway learns them again).
 * Requests are handled one at a time on the loop (through a bridge); a handshake refused on
 * the listener is invisible to us except in NNG's statistics, which are read every second and
 * logged (join_tls_refused). */
#ifndef GW_JOIN_H
#define GW_JOIN_H

#include <stddef.h>
#include <uv.h>

#include "config.h"

typedef struct gw_join gw_join_t;

typedef struct {
    const char *op;      /* "join" or "leave" */
    const char *name;    /* the backend's name ("" if not given) */
    const char *model;
    const char *address; /* where the gateway dials it */
    int capacity;
} gw_join_req_t;

/* Handles one request on the loop thread: returns 0 with the state ("joined", "known",
 * "left") in out, or a negative code with the reason in out (logged by the caller). */
typedef int (*gw_join_cb)(void *ctx, const gw_join_req_t *req, char *out, size_t cap);

/* Called every second on the loop (to expire registrations that were not repeated). */
typedef void (*gw_join_tick_cb)(void *ctx);

/* Listens on cfg->join_listen. Returns 0, or PROTO_ECONFIG / PROTO_ENNG with the reason in
 * err. cfg and ctx must outlive it. */
int gw_join_create(gw_join_t **out, uv_loop_t *loop, const gw_config_t *cfg, gw_join_cb cb,
                   gw_join_tick_cb tick, void *ctx, char *err, size_t errcap);

/* Stops listening and frees it (its handles close on the next loop run). NULL is a no-op. */
void gw_join_destroy(gw_join_t *j);

#endif
