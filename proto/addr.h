/* NNG addresses as framegate uses them: which transport, which host, and whether the host is
 * this machine. Pure functions, any thread. */
#ifndef PROTO_ADDR_H
#define PROTO_ADDR_H

#include <stddef.h>

typedef enum {
    PROTO_ADDR_IPC = 0, /* ipc:///path: this machine only */
    PROTO_ADDR_TCP,     /* tcp://, tcp4://, tcp6://: plain, unauthenticated */
    PROTO_ADDR_TLS,     /* tls+tcp://, tls+tcp4://, tls+tcp6://: mutual TLS */
    PROTO_ADDR_OTHER,   /* inproc://, ws://, ...: not used between gateway and backend */
} proto_addr_kind_t;

typedef struct {
    proto_addr_kind_t kind;
    char host[256]; /* "10.0.0.5", "::1", "node-3"; "" for ipc or a wildcard listener */
    int port;       /* 0 for ipc */
} proto_addr_t;

/* Parses `url` into *out. Returns 0, or PROTO_EINVAL when it is not an NNG URL, when a
 * tcp/tls address has no port, or the host does not fit. */
int proto_addr_parse(proto_addr_t *out, const char *url);

/* 1 when the address cannot leave this machine: ipc, 127.0.0.0/8, ::1, "localhost". A
 * wildcard host ("" / 0.0.0.0 / ::) is not loopback: a listener on it is reachable from
 * outside. */
int proto_addr_is_local(const proto_addr_t *a);

#endif
