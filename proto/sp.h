/* The SP wire format ("scalability protocols", what NNG speaks) on the ipc transport, for the
 * two ends framegate runs on its own event loop instead of NNG's threads: the gateway's link
 * to a local backend (gateway/splink.c) and the backend's listener (backend/sprep.c).
 *
 * Why not NNG there: every NNG message crosses two or three of its threads (poller → task →
 * caller), and on the small VMs framegate targets each such hand-off is a futex wake-up and a
 * context switch; a frame paid ~100 µs of them on each side, more than the rest of its path.
 * tls+tcp:// and tcp:// stay on NNG: these are the only bytes we frame ourselves.
 *
 * The format (NNG's ipc transport and its req0/rep0 protocols; RFC sp-tcp-mapping-01 plus
 * the ipc type byte; both ends of every test here are checked against libnng itself):
 * - each side first sends 8 bytes: 0x00 'S' 'P' 0x00, its protocol (16-bit big-endian),
 *   0x00 0x00; each checks that the other's protocol is its peer's;
 * - then each message is 0x01, its length (64-bit big-endian), and its bytes: the protocol
 *   header, then the body. req0's header is one 32-bit big-endian request id with the top
 *   bit set; rep0 answers with the same header (a device in between would add more 32-bit
 *   words before it, each with the top bit clear).
 * Pure functions; any thread. */
#ifndef PROTO_SP_H
#define PROTO_SP_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

#define PROTO_SP_REQ0 0x30u
#define PROTO_SP_REP0 0x31u
#define PROTO_SP_HELLO_LEN 8
#define PROTO_SP_IPC_HDR 9  /* the type byte and the 64-bit length */
#define PROTO_SP_HOPS_MAX 8 /* header words a rep accepts before the request id (NNG's ttl) */
/* The largest message either end accepts: the biggest request (a PROTO_PAYLOAD_MAX image)
 * with room for its fields, as the NNG sockets' NNG_OPT_RECVMAXSZ. */
#define PROTO_SP_MSG_MAX ((uint64_t)PROTO_PAYLOAD_MAX + (1u << 20))

/* Writes the 8-byte greeting of a socket speaking `proto`. */
void proto_sp_hello(uint8_t out[PROTO_SP_HELLO_LEN], unsigned proto);

/* Checks the peer's greeting: 0 if it is well formed and speaks `peer`; PROTO_EMAGIC if it is
 * not an SP greeting; PROTO_ETYPE if it speaks another protocol. */
int proto_sp_hello_check(const uint8_t in[PROTO_SP_HELLO_LEN], unsigned peer);

/* Writes the ipc framing of a message of `len` bytes (protocol header included). */
void proto_sp_ipc_frame(uint8_t out[PROTO_SP_IPC_HDR], uint64_t len);

/* Reads a message's ipc framing: 0 and *len, PROTO_ETYPE for an unknown message type, or
 * PROTO_ETOOBIG for a length over `max` (check before allocating anything). */
int proto_sp_ipc_unframe(const uint8_t in[PROTO_SP_IPC_HDR], uint64_t max, uint64_t *len);

/* The length of a rep0-received message's backtrace: the header words up to and including
 * the first with its top bit set (the request id). PROTO_ECORRUPT if there is none within
 * PROTO_SP_HOPS_MAX words or `len` bytes. */
int64_t proto_sp_backtrace_len(const uint8_t *msg, size_t len);

static inline void proto_sp_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t proto_sp_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#endif
