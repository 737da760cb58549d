/* Results of a bench run: per-second rows and the final summary, written as CSV, JSON and
 * text. Plain data, filled by the load engine. */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "hist.h"

#define BENCH_MAX_STATUS 600

typedef struct {
    uint64_t ok;
    uint64_t http_fail[BENCH_MAX_STATUS]; /* non-2xx by status code */
    uint64_t conn_errors, timeouts;
} bench_counts_t;

typedef struct {
    int second;
    int users;
    bench_counts_t c;
    double p50_ms, p95_ms, p99_ms;
    int backends[4]; /* starting, ready, draining, stopping; -1 = unknown */
} bench_row_t;

/* Pure functions on caller-owned values; any thread. Failed = every non-2xx, connection
 * error and timeout. */
uint64_t bench_counts_failed(const bench_counts_t *c);
void bench_counts_add(bench_counts_t *into, const bench_counts_t *from);

/* Write one line each to the caller's stream (not flushed, not closed). The header never
 * depends on the run, so CSVs of different runs line up; unknown backend counts are empty. */
void bench_report_csv_header(FILE *f);
void bench_report_csv_row(FILE *f, const bench_row_t *row);

typedef struct {
    const char *mode;      /* "closed" or "open" */
    const char *body_mode; /* raw, base64, multipart */
    const char *url;
    int users;
    double spawn_rate, rate, duration_s;
    bench_counts_t total;
    const bench_hist_t *hist; /* every successful and failed response's latency */
} bench_summary_t;

/* The JSON summary as a string the caller frees with free() (NULL on ENOMEM); `s` and its
 * histogram are only read. Any thread. */
char *bench_report_json(const bench_summary_t *s);
/* The same summary as four lines of text on the caller's stream. */
void bench_report_text(FILE *f, const bench_summary_t *s);

#endif
