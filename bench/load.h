/* The load engine: simulated cameras on keep-alive HTTP/1.1 connections (libuv), closed
 * loop like Locust (--users, --spawn-rate, one request in flight per user) or open loop like
 * wrk2 (--rate with a fixed schedule; latency measured from the intended send time).
 * Single-threaded; runs on its own loop until the duration has passed and the requests in
 * flight are answered or timed out. */
#ifndef BENCH_LOAD_H
#define BENCH_LOAD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "report.h"

typedef enum { BODY_RAW, BODY_BASE64, BODY_MULTIPART } bench_body_mode_t;

typedef struct {
    char host[256];
    int port;
    char path[512];    /* e.g. /v1/detect */
    int users;         /* closed loop: users; open loop: connections */
    double spawn_rate; /* users per second */
    double rate;       /* > 0: open loop, requests per second */
    double duration_s;
    int wait_ms;
    uint64_t timeout_ms;
    bench_body_mode_t body_mode;
    const char **files; /* JPEG files, used round-robin */
    int nfiles;
    int poll_backends;  /* read /v1/backends once a second */
    FILE *csv;          /* per-second rows, or NULL */
    int quiet;
} bench_opts_t;

typedef struct {
    bench_counts_t total;
    bench_hist_t *hist; /* owned by the result; free with bench_result_fini */
    double elapsed_s;
} bench_result_t;

/* Runs the whole benchmark. Returns 0, or a negative code (bad files, cannot resolve). */
int bench_run(const bench_opts_t *opts, bench_result_t *out);
void bench_result_fini(bench_result_t *r);

/* Counts backends by state in a /v1/backends JSON document: out = starting, ready,
 * draining, stopping. Returns 0, or -1 if it is not such a document. */
int bench_count_backends(const char *json, size_t len, int out[4]);

#endif
