/* The link to one backend: an NNG req socket with its own dialer, one req context (and two aios)
 * per slot, request encoding, send then receive, timeouts and cancellation. The pool decides
 * what goes on which slot; the link only carries it.
 *
 * Threads: every function here runs on the loop thread. The link's aio callbacks run on
 * NNG's threads (the only gateway code that does): they touch nothing but their own slot,
 * under the link's mutex, and hand each completion to the loop through the pool's bridge;
 * the completion callback (gw_link_done_cb) then runs on the loop. */
#ifndef GW_LINK_H
#define GW_LINK_H

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge.h"
#include "msg.h"

typedef struct gw_link gw_link_t;

/* How an operation ended (NNG's codes are converted here, in one place). */
typedef enum {
    GW_LINK_OK = 0,    /* a reply arrived */
    GW_LINK_CANCELLED, /* gw_link_cancel() (or the send raced a cancel) */
    GW_LINK_TIMEDOUT,  /* the operation's timeout passed */
    GW_LINK_BROKEN,    /* any other transport failure: the connection cannot be trusted */
} gw_link_status_t;

/* Runs on the loop thread exactly once per gw_link_send() that returned 0, never before that
 * call returned. `body`/`len` is the reply (GW_LINK_OK only), valid during the call; `why`
 * is a static text for the other outcomes. The callback may destroy the link (once
 * gw_link_busy() is 0). */
typedef void (*gw_link_done_cb)(void *owner, int slot, gw_link_status_t st, const char *why,
                                const uint8_t *body, size_t len);

/* Opens the socket, its dialer (created, not started: a TLS config can be set on it before
 * gw_link_start) and `nslots` contexts. `bridge` must outlive the link. Returns 0 or a
 * negative code (PROTO_ENNG, PROTO_ENOMEM) and no link. */
int gw_link_create(gw_link_t **out, const char *addr, int nslots, gw_bridge_t *bridge,
                   gw_link_done_cb cb, void *owner);

/* Sets the dialer's TLS configuration (a tls+tcp:// address: mutual TLS, proto/tls.h);
 * before gw_link_start. The dialer takes its own reference. Returns 0 or PROTO_ENNG. */
int gw_link_set_tls(gw_link_t *l, nng_tls_config *tls);

/* The outcomes of the dialer's connection attempts so far (NNG's dialer statistics): a TLS
 * handshake refused here or by the peer shows up only there, since the dialer keeps
 * retrying on its own. */
typedef struct {
    uint64_t connect;    /* connections made (SP handshake done) */
    uint64_t refused;    /* nothing listening */
    uint64_t timeout;    /* no answer */
    uint64_t auth;       /* TLS: a certificate did not verify, or the peer is not TLS */
    uint64_t proto;      /* not an SP peer of the right protocol */
    uint64_t other;      /* anything else: e.g. the peer closed during the handshake */
    uint64_t disconnect; /* an established connection broke */
} gw_link_dials_t;

/* Reads the dial counters of n links from one snapshot of NNG's statistics (a snapshot
 * walks every socket of the process: take one per round, not one per link). A link whose
 * dialer is not found reads as zeros. Returns 0, or PROTO_ENNG (out zeroed). */
int gw_link_dials(gw_link_t *const *links, int n, gw_link_dials_t *out);

/* Starts dialing, without waiting: the dialer retries quickly until the backend listens
 * (a backend listens only once its model is loaded). Returns 0 or PROTO_ENNG. */
int gw_link_start(gw_link_t *l);

/* Encodes `req` and sends it on an idle slot, then waits for its reply; the whole
 * operation times out after timeout_ms (0 = never). Returns 0 (the callback follows) or a code
 * from proto_req_encode / PROTO_ENOMEM (no callback). */
int gw_link_send(gw_link_t *l, int slot, const proto_req_t *req, uint64_t timeout_ms);

/* Aborts the slot's operation if one is outstanding (its callback then reports
 * GW_LINK_CANCELLED, or the outcome that beat the cancel). A no-op on an idle slot. */
void gw_link_cancel(gw_link_t *l, int slot);

/* gw_link_cancel on every slot. */
void gw_link_cancel_all(gw_link_t *l);

/* 1 if the slot has no operation outstanding (its last callback has run). */
int gw_link_idle(const gw_link_t *l, int slot);

/* Operations outstanding: sent, callback not yet run. */
int gw_link_busy(const gw_link_t *l);

/* Closes the socket and frees the link; gw_link_busy() must be 0. NULL is a no-op. */
void gw_link_destroy(gw_link_t *l);

#endif
