/* OpenCV DNN behind a C interface, so that C++ stays in ocv.cpp (a bench-only dependency). */
#ifndef FG_BENCH_OCV_H
#define FG_BENCH_OCV_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ocv_net ocv_net_t;

/* Loads cfg + weights with cv::dnn::readNetFromDarknet on the CPU target. Returns NULL and
 * fills err on failure. The caller owns the result (ocv_destroy). Caller's thread. */
ocv_net_t *ocv_create(const char *cfg, const char *weights, char *err, size_t errcap);

/* cv::setNumThreads(n): process-wide, for every later ocv_predict. */
void ocv_set_threads(int n);

/* One forward pass over input (3 x h x w floats, CHW, the same buffer darknet gets), all
 * unconnected outputs computed. Returns the number of output floats, or -1 on an exception
 * (err filled). Blocks the calling thread. */
long ocv_predict(ocv_net_t *n, const float *input, int w, int h, char *err, size_t errcap);

void ocv_destroy(ocv_net_t *n);

#ifdef __cplusplus
}
#endif

#endif
