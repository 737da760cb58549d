/* Internal to the load engine (load.c: clients, schedule, stats and the run; load_body.c:
 * the request bodies; load_poll.c: the /v1/backends poller): the structs they share and the
 * functions they call across. Everything runs on the engine's one loop thread. */
#ifndef BENCH_LOAD_INTERNAL_H
#define BENCH_LOAD_INTERNAL_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "hist.h"
#include "load.h"

typedef struct engine engine_t;

/* A request body, built once per file for the chosen mode and shared by every client. */
typedef struct {
    char *data;
    size_t len;
} piece_t;

/* One simulated camera (closed loop) or one connection (open loop). Preallocated for the
 * whole run; handles are re-initialised in place after a close, never freed. */
typedef struct {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t timer; /* request timeout, wait time, open-loop reconnect delay */
    llhttp_t parser;
    engine_t *e;
    int index; /* user / connection number: cam-<index> */
    int connected, busy, closing, writing, handles, idle_listed, connect_failed;
    int pending; /* closed loop: the next request waits for the previous write to finish */
    int next_file, built_file;
    size_t head_len, suffix_len;
    char head[1024];                /* request line, headers and the per-camera body prefix */
    char suffix[64];                /* the body's end after the shared JPEG bytes */
    uint64_t t_intended, t_connect; /* ns */
    int status;
} client_t;

struct engine {
    const bench_opts_t *o;
    uv_loop_t loop;
    struct sockaddr_storage addr;
    client_t *clients;
    client_t **idle; /* open loop: a stack of connections free for the next arrival */
    int nidle;
    int nclients, started;
    piece_t *bodies;
    uint64_t t0, t_stop; /* ns */
    int stopping, interrupted;
    int inflight;
    bench_counts_t second, total;
    bench_hist_t *hist_second, *hist_total;
    int sec;
    uv_timer_t tick;     /* 1 s reports */
    uv_timer_t spawn;    /* closed loop: starts users; open loop: the arrival schedule */
    uv_timer_t deadline; /* end of the run, then the grace period */
    uv_signal_t sigint;
    uint64_t next_arrival;
    int backends[4];
    /* The /v1/backends poller: its own short-lived connection, one per second. */
    uv_tcp_t ptcp;
    uv_connect_t pconn;
    uv_write_t pwrite;
    llhttp_t pparser;
    char pget[400];
    char *pbody;
    size_t plen, pcap;
    int polling;
    llhttp_settings_t settings, psettings;
    char slab[65536]; /* read buffer: one loop thread, each read is parsed before the next */
};

/* ---- load_body.c ---- */

// Reads every --file (bounded) into e->bodies, base64-encoded in base64 mode; 0 or a
// negative code (a file that cannot be read is named on stderr). At start, before the loop.
int bench__load_bodies(engine_t *e);

// The per-camera head and suffix around the shared body of `file`, into the client's buffers.
void bench__build_request(client_t *c, int file);

/* ---- load_poll.c ---- */

// Once a second, after the row is written: starts a GET /v1/backends on its own connection
// into e->backends (-1 until answered); a poll still in flight from the last second is given up.
void bench__poll_backends(engine_t *e);

// The poller's llhttp callbacks (p->data is the engine).
int bench__on_poll_body(llhttp_t *p, const char *at, size_t len);
int bench__on_poll_complete(llhttp_t *p);

#endif
