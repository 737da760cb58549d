/* convpool: a convolution and the 2x2 max-pool after it, as one pass that never writes the
 * convolution's output. Two kinds: a network's first layer, 3x3 on its NCHW input (both models
 * framegate ships start so: yolov3-tiny 3 -> 16 channels on 416 x 416, the face model the same
 * unpadded), and a 1x1 on 8- or 16-channel blocks (the face model's 16 -> 32 ... 128 -> 256 are
 * each followed by a pool), optionally with the depthwise 3x3 before it in the same pass (the
 * face model's separable pairs), whose output is then never written either; the oneDNN engine
 * decides which to take (dnnl_own.c). Run apart, the
 * face model's first convolution wrote 16 x 414 x 414 floats (11 MB, past L2) for the max-pool to
 * read back: on AMD Zen 3 oneDNN's AVX2 kernel took ~2.4 ms and the pool ~0.5-0.9 ms of the frame,
 * this pass ~1.5 ms for both (bench/results/inference/README.md).
 *
 * Exact where it matters: max and a non-decreasing activation commute, as do max and adding
 * the same bias, so the pool is taken over the raw sums and bias + activation applied to the
 * quarter that survive; each sum is one chain over the taps in the weights' order, the same
 * for every thread count and row range. Against stock darknet (which sums in its own order)
 * it agrees within float rounding (tests/unit/test_be_convpool.c).
 *
 * The output is in blocks of `blk` channels (oneDNN's aBcd8b / aBcd16b: c / blk blocks, each
 * rows x columns cells of blk consecutive channels), what the oneDNN engine's next layer
 * reads (backend/dnnl.c). Read-only after create: any number of threads may run one. */
#ifndef BE_CONVPOOL_H
#define BE_CONVPOOL_H

#include <stddef.h>

#include <darknet.h>

#define BE_CONVPOOL_C_MAX 8        /* input channels of a 3x3: a first layer's (RGB, grey) */
#define BE_CONVPOOL_1X1_C_MAX 1024 /* and of a 1x1 */
#define BE_CONVPOOL_DW_MAX                                                                         \
    8192 /* 2 x width (up to a multiple of 6) x channels: a depthwise 3x3                          \
          */

typedef struct be_convpool be_convpool_t;

/* 1 when `conv` followed by `pool` can run here: conv 3x3 with 1 .. BE_CONVPOOL_C_MAX input
 * channels and padding 0 .. 2, or 1x1 unpadded with a multiple of 8 up to
 * BE_CONVPOOL_1X1_C_MAX; stride 1, groups 1, a multiple of 16 filters, LEAKY, RELU or LINEAR,
 * batch 1; pool 2x2, stride 2, windows from (0, 0) (darknet's pad 0 or 1), over conv's output.
 * Pure. */
int be_convpool_fits(const layer *conv, const layer *pool);

/* Folds conv's batch-norm into its weights (be_fast_fold) and packs them, once; blk 8 or 16 is
 * the output's channel blocking, in_blk the input's: 1 (NCHW) for a 3x3, 8 or 16 (dividing its
 * channels) for a 1x1. Both layers are borrowed for the call. 0, PROTO_EINVAL (does
 * not fit, or blk), PROTO_ENOMEM. The caller owns *out (be_convpool_destroy). */
int be_convpool_create(be_convpool_t **out, const layer *conv, const layer *pool, int blk,
                       int in_blk);

/* Whether passes created after it run a 3x3's interior 2x2 windows as Winograd F(2x2,3x3)
 * (nonzero, the default) or all on the direct kernel (0). Process-wide, for tests and the
 * bench; call it with no pass being created. */
void be_convpool_winograd(int on);

/* 1 when depthwise `dw`, then 1x1 `conv`, then `pool` can run as one pass: dw a 3x3 with
 * groups = channels (a multiple of 8), stride 1, padding 1, LEAKY, RELU or LINEAR, batch 1, and
 * 2 x width (rounded up to a multiple of 6) x channels <= BE_CONVPOOL_DW_MAX; conv and pool as
 * be_convpool_fits (a 1x1), over dw's output. The face model's layers 2-4, 5-7, 8-10 and 11-13 are
 * such. Pure. */
int be_convpool_fits_dw(const layer *dw, const layer *conv, const layer *pool);

/* be_convpool_create with dw's folded weights too (in_blk 8 or 16): run then reads dw's input
 * (of conv's size) and computes each depthwise row it needs on the fly, into a 32 KB buffer
 * on the running thread's stack: neither dw's nor conv's output is ever written. */
int be_convpool_create_dw(be_convpool_t **out, const layer *dw, const layer *conv,
                          const layer *pool, int blk, int in_blk);

/* The layers the pass stands for: 2 (a convolution and its pool) or 3 (create_dw). */
int be_convpool_layers(const be_convpool_t *cp);

/* Pooled rows [lo, hi) of the pool's output (0 <= lo < hi <= its out_h) from the input `in`:
 * rows [in_y0, in_y0 + in_rows) of conv's (or dw's) c x h x w input, in blocks of
 * be_convpool_in_blk channels (1: NCHW), each channel (block) in_rows rows tall; they must hold
 * every row those windows read (rows outside 0 .. h - 1 are the padding's zeros). Row y goes to row
 * y - y0 of `out`, a buffer of blocks `rows` rows tall (the whole output: y0 0, rows out_h; a
 * band of it: y0 lo, rows hi - lo). threads > 1: the calling thread's OpenMP team shares the
 * rows; the result does not depend on it. Calling thread (and team). */
void be_convpool_run(const be_convpool_t *cp, const float *in, int in_rows, int in_y0, float *out,
                     int rows, int y0, int lo, int hi, int threads);

/* be_convpool_run over the whole input and output (out_h rows, from 0). */
void be_convpool_run_all(const be_convpool_t *cp, const float *in, float *out, int threads);

/* Channels per block of the input run reads: 1 (NCHW, a 3x3), 8 or 16 (a 1x1). */
int be_convpool_in_blk(const be_convpool_t *cp);

/* Output channels per block (the blk of create). */
int be_convpool_blk(const be_convpool_t *cp);

void be_convpool_destroy(be_convpool_t *cp);

/* What the kernels use: portable C, AVX2 + FMA, and (for the Winograd tiles) AVX-512F. */
enum { BE_CONVPOOL_ISA_C = 0, BE_CONVPOOL_ISA_AVX2 = 1, BE_CONVPOOL_ISA_AVX512 = 2 };

/* Tests, bench: the most the kernels may use from the next run on (default
 * BE_CONVPOOL_ISA_AVX512); each run takes the most of that the CPU has. */
void be_convpool_isa(int max);

#endif
