#include "hist.h"

#include <stdlib.h>
#include <string.h>

#define SUB (1u << BENCH_HIST_SUB_BITS)
#define EXPS (33 - BENCH_HIST_SUB_BITS) /* enough exponents to reach 2^32 */
#define NBUCKETS (SUB + (size_t)EXPS * (SUB / 2))

struct bench_hist {
    uint64_t counts[NBUCKETS];
    uint64_t total, max;
    double sum;
};

/* Values below SUB map 1:1; above, the top BENCH_HIST_SUB_BITS bits after the leading one
 * pick the sub-bucket within that power of two (the HdrHistogram layout). */
static size_t index_of(uint64_t v)
{
    if (v < SUB)
        return (size_t)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - (BENCH_HIST_SUB_BITS - 1);
    size_t sub = (size_t)(v >> shift) - SUB / 2; /* 0 .. SUB/2-1 */
    return SUB + (size_t)(shift - 1) * (SUB / 2) + sub;
}

/* Lowest and highest value of a bucket. */
static void bounds_of(size_t i, double *lo, double *hi)
{
    if (i < SUB) {
        *lo = *hi = (double)i;
        return;
    }
    size_t k = i - SUB;
    int shift = (int)(k / (SUB / 2)) + 1;
    uint64_t base = ((uint64_t)(k % (SUB / 2)) + SUB / 2) << shift;
    *lo = (double)base;
    *hi = (double)(base + (1ull << shift) - 1);
}

bench_hist_t *bench_hist_create(void)
{
    return calloc(1, sizeof(bench_hist_t));
}
void bench_hist_destroy(bench_hist_t *h)
{
    free(h);
}
void bench_hist_reset(bench_hist_t *h)
{
    memset(h, 0, sizeof *h);
}

void bench_hist_record(bench_hist_t *h, uint64_t us)
{
    if (us >= BENCH_HIST_MAX_US)
        us = BENCH_HIST_MAX_US - 1;
    size_t i = index_of(us);
    if (i >= NBUCKETS)
        i = NBUCKETS - 1;
    h->counts[i]++;
    h->total++;
    h->sum += (double)us;
    if (us > h->max)
        h->max = us;
}

void bench_hist_merge(bench_hist_t *into, const bench_hist_t *from)
{
    for (size_t i = 0; i < NBUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->total += from->total;
    into->sum += from->sum;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t bench_hist_count(const bench_hist_t *h)
{
    return h->total;
}
uint64_t bench_hist_max(const bench_hist_t *h)
{
    return h->max;
}
double bench_hist_mean(const bench_hist_t *h)
{
    return h->total ? h->sum / h->total : 0;
}

double bench_hist_percentile(const bench_hist_t *h, double p)
{
    if (h->total == 0)
        return 0;
    if (p < 0)
        p = 0;
    if (p > 100)
        p = 100;
    /* The rank of the wanted sample (1-based, nearest-rank definition). */
    uint64_t rank = (uint64_t)(p / 100.0 * (double)h->total + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            double lo, hi;
            bounds_of(i, &lo, &hi);
            double mid = (lo + hi) / 2;
            return mid > (double)h->max ? (double)h->max : mid;
        }
    }
    return (double)h->max;
}
