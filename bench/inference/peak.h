#ifndef FG_BENCH_PEAK_H
#define FG_BENCH_PEAK_H
/* Clock, median and machine peaks for framegate-bench-inference. Main thread only. */

double now_ms(void);                       /* CLOCK_MONOTONIC, in ms */
double median(double *v, int n);           /* sorts v in place */
double sgemm_gflops(int n, int threads);   /* OpenBLAS's n x n x n sgemm, GFLOP/s */
double core_peak_gflops(const char **isa); /* one core's fp32 FMA peak; *isa names it */

#endif
