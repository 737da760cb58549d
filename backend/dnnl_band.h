/* A convolution and the 2x2 max-pool after it, run band by band (backend/dnnl.c's engine):
 * each band of the convolution's output rows is computed into a buffer that stays in the
 * core's L2 cache and pooled from there, so the full-size tensor between the two (the face
 * model's first one: 16 x 414 x 414 floats, 11 MB) is never written to memory or read back.
 * On AMD Zen 3 (1 MB L2, a 32 MB L3 shared with other tenants) the face model's max-pools
 * took a quarter of its network's time, bound by memory (bench/results/inference/README.md).
 * The bands are shared over the engine's OpenMP team, one whole band per thread at a time
 * (oneDNN runs each band's primitive single-threaded inside the team).
 * Only with oneDNN (FG_HAVE_DNNL). Not thread-safe: one caller at a time, like the engine. */
#ifndef BE_DNNL_BAND_H
#define BE_DNNL_BAND_H

#include <oneapi/dnnl/dnnl.h>

#include "maxpool.h"

typedef struct be_band be_band_t;

/* The band rows be_band_create picks for a convolution output row of `row_bytes`: the most
 * that keep a band's output within BE_BAND_BYTES (even, at least 2). Pure function. */
#define BE_BAND_BYTES (384 * 1024)
int be_band_rows(size_t row_bytes);

/* Builds the banded form of `conv` (a created direct-convolution primitive: stride 1, no
 * dilation, f32, src in NCHW, NHWC or 8/16-channel blocks, dst in the layout `pool` reads) and
 * `pool` (the max-pool of its whole output: size 2, stride 2, window at 0, be_maxpool_fits).
 * `rows` > 0: output rows per band (rounded up to even); 0: be_band_rows. At least two bands.
 * The caller keeps `conv` (the band reads its descriptors now, not later). Returns 0,
 * PROTO_EINVAL (a shape or layout this does not take, or a primitive oneDNN refuses: run the
 * two unbanded) or PROTO_ENOMEM. Blocks for the JIT (ms). */
int be_band_create(be_band_t **out, dnnl_engine_t eng, dnnl_primitive_t conv,
                   const be_maxpool_t *pool, int threads, int rows);

/* One pass: out = pool(conv(src)), with the weights and bias memories `conv` ran with (read
 * only, shared by the threads). `src` is the convolution's whole input, `out` the pool's whole
 * output (both caller-owned memories). Calling thread, with its OpenMP team. Returns 0 or the
 * first oneDNN error. */
int be_band_run(be_band_t *b, dnnl_memory_t src, dnnl_memory_t weights, dnnl_memory_t bias,
                dnnl_memory_t out);

/* How many bands a pass runs. Pure function. */
int be_band_count(const be_band_t *b);

void be_band_destroy(be_band_t *b);

#endif
