#ifndef FG_BENCH_PEAK_H
#define FG_BENCH_PEAK_H
/* Clock, median, machine peaks and the machine's description for framegate-bench-inference.
 * Main thread only. */

#include <stddef.h>

#include <cjson/cJSON.h>

double now_ms(void);                       /* CLOCK_MONOTONIC, in ms */
double median(double *v, int n);           /* sorts v in place; 0 for n <= 0 */
double sgemm_gflops(int n, int threads);   /* OpenBLAS's n x n x n sgemm, GFLOP/s */
double core_peak_gflops(const char **isa); /* one core's fp32 FMA peak; *isa names it */
/* Adds "machine" (CPU model, cores, OpenBLAS core and config) and "date" to root, and writes
 * the one-line description to desc. */
void machine_describe(cJSON *root, char *desc, size_t cap);

#endif
