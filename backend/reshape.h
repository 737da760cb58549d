/* reshape: darknet's layers that only move data, [route] (channels of earlier layers' outputs
 * one after the other) and [upsample] (each value repeated stride x stride times, times its
 * scale), on the OpenMP team the oneDNN engine runs on. darknet's own forward runs them on
 * one thread with a strided copy loop: on yolov3-tiny (AMD Zen 3) its route and upsample into
 * the second head took 0.44 ms at 2 threads, as at 1 (scratch lt3.c). The output is darknet's,
 * bit for bit: the same copies, and the same scale * x products (tests/unit/test_be_reshape.c).
 * Functions on the caller's layers; calling thread (and team). */
#ifndef BE_RESHAPE_H
#define BE_RESHAPE_H

#include <darknet.h>

/* 1 when layer l runs here: a [route] of batch 1 whose parts fill its output exactly, or an
 * [upsample] of batch 1 (not reversed) with stride >= 1. Pure. */
int be_reshape_fits(const network *net, const layer *l);

/* l's forward pass into l->output: a route reads its input layers' outputs (net->layers[k]
 * .output), an upsample `input`. threads > 1: the calling thread's OpenMP team shares it. */
void be_reshape_forward(const network *net, const layer *l, const float *input, int threads);

#endif
