/* A log-linear latency histogram (HDR-style): values in microseconds from 1 us to ~71 min.
 * Values below 128 have a bucket each; above, every power of two is split into 64 linear
 * buckets (the exponent and the next 6 mantissa bits pick the bucket), and a bucket reports
 * its midpoint, so any value comes back within 1/128 (< 0.8%) of itself. Fixed size, no
 * allocation after create. Not thread-safe: one thread owns a histogram at a time. */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define BENCH_HIST_SUB_BITS 7
#define BENCH_HIST_MAX_US (1ull << 32) /* ~71 minutes; larger values are clamped */

typedef struct bench_hist bench_hist_t;

/* Heap-allocated and zeroed; NULL on ENOMEM. The caller frees it with bench_hist_destroy. */
bench_hist_t *bench_hist_create(void);
void bench_hist_destroy(bench_hist_t *h);
void bench_hist_reset(bench_hist_t *h);
/* Values at or above BENCH_HIST_MAX_US are clamped just below it (and count as such). */
void bench_hist_record(bench_hist_t *h, uint64_t us);
/* Adds every count of `from` into `into`. */
void bench_hist_merge(bench_hist_t *into, const bench_hist_t *from);
uint64_t bench_hist_count(const bench_hist_t *h);
/* The value at percentile p (0..100), within the histogram's relative error; 0 if empty. */
double bench_hist_percentile(const bench_hist_t *h, double p);
double bench_hist_mean(const bench_hist_t *h);
uint64_t bench_hist_max(const bench_hist_t *h);

#endif
