/* The backend's SP rep0 listener for ipc:// addresses, on the serving thread itself.
 *
 * Why not NNG's rep0 there: every NNG message crosses its poller and task threads before
 * nng_recvmsg returns, and the reply crosses them again; on the small VMs framegate runs on,
 * those futex wake-ups and context switches cost more CPU per frame than the rest of a
 * simulated frame's path. This module speaks the same bytes (proto/sp.h) with poll(2) on the
 * caller's thread: NNG req0 peers (the gateway's NNG dialer, tests) cannot tell the difference.
 * tls+tcp:// and tcp:// stay on NNG.
 *
 * One request is in hand at a time: be_sprep_recv returns it, be_sprep_send answers it. The
 * requests of one connection are answered in their order; connections are served round-robin.
 * A peer that breaks the protocol (greeting, frame type, length, backtrace), does not greet
 * within BE_SPREP_HELLO_MS, or does not read its replies for BE_SPREP_STALL_MS is disconnected
 * with one line on stderr; the others are served on.
 *
 * Not thread-safe: one thread at a time (the serving thread) calls it all. Nothing blocks
 * longer than the timeout given to be_sprep_recv; be_sprep_send never blocks. */
#ifndef BE_SPREP_H
#define BE_SPREP_H

#include <stddef.h>
#include <stdint.h>

#define BE_SPREP_CONNS_MAX 64   /* connections beyond it are accepted and closed at once */
#define BE_SPREP_HELLO_MS 5000  /* a peer's greeting must arrive within this */
#define BE_SPREP_STALL_MS 10000 /* a peer whose replies wait unread this long is cut */

typedef struct be_sprep be_sprep_t;

/* Listens on `path` (the part of an ipc:// URL after "ipc://"); like NNG, a stale socket file
 * (nobody accepting on it) is removed first, the file gets the process umask's permissions, and
 * destroy removes it. `name` (borrowed for the object's life) prefixes log lines. Returns 0
 * and *out, PROTO_EINVAL for a path that does not fit a UNIX socket address, PROTO_ENOMEM, or
 * a negative errno (address in use, ...) with a message in err. */
int be_sprep_create(be_sprep_t **out, const char *path, const char *name, char *err, size_t errcap);

/* Closes every connection (replies still unsent are dropped), the listener, and removes the
 * socket file. NULL is fine. */
void be_sprep_destroy(be_sprep_t *t);

/* Waits up to timeout_ms (>= 0) for the next request from any connection. Returns 0 with
 * *body / *len the request's body (after the SP header): borrowed, valid until the next
 * be_sprep_recv or be_sprep_destroy. Returns -ETIMEDOUT when none came, -EINTR when a signal
 * interrupted the wait (the caller looks at its stop flag and calls again). Accepts, reads,
 * writes pending replies and cuts misbehaving peers as it waits. */
int be_sprep_recv(be_sprep_t *t, const uint8_t **body, size_t *len, int timeout_ms);

/* Answers the request the last be_sprep_recv returned with `body` (copied if it cannot be
 * written at once; what remains is written by later be_sprep_recv calls). If that request's
 * connection has gone, or there is no such request, the reply is dropped and 0 returned: the
 * same as NNG's rep0. Returns 0, or PROTO_ETOOBIG / PROTO_ENOMEM (the connection is then cut,
 * as its peer would wait for this reply forever). */
int be_sprep_send(be_sprep_t *t, const uint8_t *body, size_t len);

/* Connections that completed the greeting and are still open (as NNG's pipe count). */
int be_sprep_peers(const be_sprep_t *t);

#endif
