/* The load engine: simulated cameras on keep-alive HTTP/1.1 connections (libuv), closed
 * loop like Locust (--users, --spawn-rate, one request in flight per user) or open loop like
 * wrk2 (--rate with a fixed schedule; latency measured from the intended send time).
 * Single-threaded; runs on its own loop until the duration has passed and the requests in
 * flight are answered or timed out. */
#ifndef BENCH_LOAD_H
#define BENCH_LOAD_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "report.h"

typedef enum { BODY_RAW, BODY_BASE64, BODY_MULTIPART } bench_body_mode_t;

typedef struct {
    char host[256]; /* as written in the URL (Host header); an IP literal or a name */
    int port;
    int https;         /* 1: TLS (https:// URL; the certificate is not verified) */
    char path[512];    /* e.g. /v1/detect */
    int users;         /* closed loop: users; open loop: connections */
    double spawn_rate; /* users per second */
    double rate;       /* > 0: open loop, requests per second */
    double duration_s;
    int wait_ms;
    uint64_t timeout_ms;
    bench_body_mode_t body_mode;
    const char **files; /* JPEG files, used round-robin; borrowed for the run */
    int nfiles;
    int poll_backends; /* read /v1/backends once a second */
    int handle_sigint; /* Ctrl-C ends the run early, with a summary */
    FILE *csv;         /* per-second rows, or NULL; borrowed, not closed */
    int quiet;
} bench_opts_t;

typedef struct {
    bench_counts_t total;
    bench_hist_t *hist; /* owned by the result; free with bench_result_fini */
    double elapsed_s;   /* the sending period, for rates */
    int interrupted;    /* ended by SIGINT before --duration */
} bench_result_t;

/* Runs the whole benchmark on a private loop, blocking the calling thread until it is over.
 * Returns 0 and fills `out`, or a negative PROTO_E* / libuv code (unreadable file, host that
 * does not resolve, out of memory); `out` is untouched then. */
int bench_run(const bench_opts_t *opts, bench_result_t *out);
void bench_result_fini(bench_result_t *r);

/* Resolves host (IP literal, "localhost" or a name through getaddrinfo, which may block)
 * and port into `out`. Returns 0 or PROTO_EINVAL. Any thread. */
int bench_resolve(const char *host, int port, struct sockaddr_storage *out);

/* 1 if the address is 127.0.0.0/8, ::1 or an IPv4-mapped 127.x address. */
int bench_addr_is_loopback(const struct sockaddr_storage *addr);

/* Counts backends by state in a /v1/backends JSON document: out = starting, ready,
 * draining, stopping. Returns 0, or PROTO_EINVAL if it is not such a document. */
int bench_count_backends(const char *json, size_t len, int out[4]);

#endif
