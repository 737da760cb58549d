/* Backends on other machines, the gateway's side: which addresses it dials and how (mutual
 * TLS for tls+tcp://, with the gateway's certificate and the backend's name checked; plain
 * tcp:// only to this machine unless allow_insecure_backends), and what a dial that never
 * connects means. Loop thread; no state of its own beyond the read-only configuration. */
#ifndef GW_REMOTE_H
#define GW_REMOTE_H

#include <stddef.h>

#include "config.h"
#include "link.h"

/* At start: when tls_* are set, checks that they make a usable TLS configuration (files
 * readable, key matching its certificate) and logs the gateway certificate's name and expiry
 * (a warning when it is expired or not yet valid); logs a warning for every static address
 * that is plain tcp to another host. Returns 0 or PROTO_ECONFIG with the reason in err. */
int gw_remote_check(const gw_config_t *cfg, char *err, size_t errcap);

/* Whether the gateway may dial `addr` at all: tls+tcp with tls_* set, plain tcp to this
 * machine (or anywhere with allow_insecure_backends), ipc and NNG's other local transports
 * (inproc: the unit tests' fakes). Returns 0 or PROTO_EINVAL with
 * the reason in err. */
int gw_remote_allowed(const gw_config_t *cfg, const char *addr, char *err, size_t errcap);

/* Before a link to `addr` starts: for tls+tcp://HOST:PORT, sets a client TLS configuration on
 * it (the gateway's certificate; the backend's must chain to tls_ca and name HOST) and
 * copies HOST into peer; for other addresses peer is "". Refuses (PROTO_EINVAL, the reason
 * in err) tls+tcp without tls_*, and plain tcp to another host without
 * allow_insecure_backends (a provider may hand out addresses the configuration never saw). */
int gw_remote_prepare(const gw_config_t *cfg, gw_link_t *l, const char *addr, char *peer,
                      size_t peer_cap, char *err, size_t errcap);

/* What a starting backend's dial counters say, compared with the counters `seen` at the
 * last look: NULL while nothing decisive happened (no attempt yet, nothing listening yet,
 * or connected), else a sentence for the log and /v1/backends, and *tls_refused = 1 when
 * it is a refused TLS (or plain-vs-TLS) handshake, which no amount of waiting fixes. */
const char *gw_remote_dial_verdict(const char *addr, const gw_link_dials_t *now,
                                   const gw_link_dials_t *seen, int *tls_refused);

#endif
