/* The link to a local backend (ipc://) on the gateway's loop: an SP req0 client on a
 * uv_pipe_t, speaking the framing of proto/sp.h. gw_link_* (link.h) picks it for ipc://
 * addresses and NNG for tls+tcp:// and tcp://; callers see one API and one contract.
 *
 * Why: through NNG, each frame crossed its poller and task threads and our bridge (futex
 * wake-ups, context switches) before the loop saw its answer; here a request is one gather
 * write from the loop and its reply one read callback, with no thread in between.
 *
 * Behaviour, as the NNG link's: one connection, redialled 20 ms → 250 ms until the backend
 * listens (it listens once its model is loaded); a send before that waits for it (within
 * its timeout); several requests may be out at once, matched to their slots by request id;
 * a reply to a cancelled or timed-out request is dropped. Unlike NNG's req0, which would
 * resend a request whose connection broke, a broken connection ends its requests with
 * GW_LINK_BROKEN at once: the pool then sends them elsewhere and stops using the backend.
 *
 * Threads: the loop thread only, every function and callback. */
#ifndef GW_SPLINK_H
#define GW_SPLINK_H

#include <stdint.h>
#include <uv.h>

#include "link.h"

typedef struct gw_splink gw_splink_t;

/* `path` is the socket's file (the address without "ipc://"). nslots ≤ GW_SPLINK_SLOTS_MAX.
 * Returns 0, PROTO_EINVAL (path too long, too many slots) or PROTO_ENOMEM. */
#define GW_SPLINK_SLOTS_MAX 1024
int gw_splink_create(gw_splink_t **out, uv_loop_t *loop, const char *path, int nslots,
                     gw_link_done_cb cb, void *owner);
int gw_splink_start(gw_splink_t *l);
int gw_splink_send(gw_splink_t *l, int slot, const proto_req_t *req, uint64_t timeout_ms);
void gw_splink_cancel(gw_splink_t *l, int slot);
int gw_splink_idle(const gw_splink_t *l, int slot);
int gw_splink_busy(const gw_splink_t *l);
/* The connection attempts so far, counted as NNG's dialer counts them. */
void gw_splink_dials(const gw_splink_t *l, gw_link_dials_t *out);
/* Closes the connection and every handle; the memory goes once libuv has closed them, so
 * this may run from the link's own callback. No callback runs afterwards. */
void gw_splink_destroy(gw_splink_t *l);

#endif
