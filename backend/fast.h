/* A fast CPU forward pass for a darknet network that is still darknet: the same cfg, the same
 * weights, the same layer semantics, and every layer's `output` buffer left as stock darknet's
 * forward_network would leave it, so get_network_boxes(), do_nms_sort() and classifiers work
 * unchanged afterwards.
 *
 * How it is fast (choices made here, measured by bench/inference):
 * - Convolutions (groups == 1) run on OpenBLAS cblas_sgemm, not darknet's naive gemm:
 *   1x1 stride-1 ones feed the input to sgemm directly (no im2col); 3x3 stride-1 ones with
 *   >= 64 input channels use Winograd F(2x2, 3x3) (2.25x fewer multiplies, 16 products over
 *   the transformed tiles, by pgemm.h rather than OpenBLAS: kernels transformed and packed
 *   once at create time, OpenBLAS would pack them again on every call); the rest use im2col in
 *   blocks of output rows sized to stay in L2 (memcpy of each valid span, no per-pixel bounds
 *   check), with bias + activation applied to each block while it is still in cache.
 * - Batch-norm is folded into private copies of the weights and biases once, at create time
 *   (w' = w * scale / (sqrt(var) + 1e-6), b' = bias - mean * scale / (sqrt(var) + 1e-6): the
 *   same epsilon placement as darknet's normalize_cpu). The network's own arrays are untouched.
 * - Bias + activation run as one vectorised pass (leaky, linear, relu, logistic); other
 *   activations go through darknet's activate_array.
 * - Depthwise convolutions (groups == c == n) run a direct kernel instead of darknet's one tiny
 *   im2col + gemm per channel.
 * - Max-pool runs maxpool.c's loop on NCHW (the oneDNN engine's: darknet's padding rule,
 *   exact, l->indexes not set: only backward reads it), and [yolo] its own inference forward
 *   (copy + vectorised logistic, as forward_yolo_layer).
 * - The hand-written loops are built twice, baseline x86-64 and AVX2+FMA, and the CPU picks
 *   (GCC target_clones); OpenBLAS dispatches its sgemm kernels the same way.
 * - Every other layer type (route, upsample, shortcut, region, softmax, avgpool, ...) and
 *   every convolution this file does not handle (xnor/binary, 1 < groups < c, 1x1 with stride
 *   or padding) runs darknet's own l.forward(l, net), with net.input/net.train set as
 *   forward_network does; those use net->workspace as usual.
 * - No batching: batch must be 1. With one frame the sgemms already run at 75-100% of
 *   OpenBLAS's large-square speed except on the 13x13 layers, so batching would buy little
 *   throughput for a frame of latency (not measured with a batched path: none was built).
 * - Threads: `threads` (default 1: framegate scales out with processes) is handed to
 *   openblas_set_num_threads(), which is process-wide, and the Winograd layers and the
 *   max-pools share their work over an OpenMP team of that size. The other kernels are
 *   single-threaded.
 */
#ifndef BE_FAST_H
#define BE_FAST_H

#include <stddef.h>

#include <darknet.h>

#include "maxpool.h"

typedef struct be_fast be_fast_t;

/* Whether the fast path can run `net`: 0, or PROTO_EINVAL with a reason in `why` (may be
 * NULL; cap bytes, NUL-terminated), e.g. batch != 1. Pure function, any thread. */
int be_fast_check(const network *net, char *why, size_t whycap);

/* Prepares the fast path for `net` (from load_network or parse_network_cfg, batch 1). Copies
 * and folds the weights, so later changes to net's weights need a new be_fast_t. `net` stays
 * owned by the caller and must outlive *out; the caller owns *out (be_fast_destroy).
 * threads <= 0 means 1. Returns 0, PROTO_EINVAL (be_fast_check says why; the caller should
 * fall back to network_predict) or PROTO_ENOMEM. Any thread, but not during a predict. */
int be_fast_create(be_fast_t **out, network *net, int threads);

/* One forward pass over `input` (net->inputs floats, CHW, as network_predict takes; it is
 * read, never written, and must stay valid until the call returns). Returns net's output
 * (owned by the network, valid until the next pass), like network_predict. Blocks the
 * calling thread for the whole pass; one caller at a time per network. */
float *be_fast_predict(be_fast_t *f, const float *input);

/* Asked before every layer of a pass; nonzero stops the pass. Runs on the predicting thread,
 * inside be_fast_predict_stop(). */
typedef int (*be_fast_stop_cb)(void *arg);

/* be_fast_predict, with `stop` (may be NULL) called before each layer with `arg`: when it
 * answers nonzero the pass ends there and NULL is returned. The layers' outputs are then a mix
 * of this pass and the previous one (do not read them); the next pass is unaffected. */
float *be_fast_predict_stop(be_fast_t *f, const float *input, be_fast_stop_cb stop, void *arg);

/* Frees the private weight copies and buffers; not the network. NULL is a no-op. */
void be_fast_destroy(be_fast_t *f);

/* Multiply-add FLOPs of one forward pass over the convolutional layers of `net`
 * (2 * n * size * size * c / groups * out_h * out_w per layer). Pure function. */
double be_fast_flops(const network *net);

/* Copies convolutional layer l's weights and biases with batch-norm folded in, exactly as
 * darknet applies it: (x - mean) / (sqrt(var) + .000001) * scale + bias. Sets *w (l->nweights
 * floats) and *b (l->n); the caller frees both, also when this fails (PROTO_ENOMEM; the
 * other 0 or NULL). Also the oneDNN engine's (dnnl.c). Pure apart from the allocations. */
int be_fast_fold(const layer *l, float **w, float **b);

/* The geometry of darknet max-pool layer l for maxpool.c's loop, on blocks of blk channels
 * (1: NCHW). Also the oneDNN engine's (dnnl.c). Pure function. */
be_maxpool_t be_fast_pool(const layer *l, int blk);

/* fast.c's Winograd F(2x2, 3x3) convolution for one layer of a network another engine runs:
 * backend/dnnl.c where oneDNN has no Winograd of its own (AVX2: it took 0.69-0.93x of oneDNN's
 * direct kernel's time on yolov3-tiny's 3x3 layers with 64+ input channels at 1 thread, and
 * 0.69-1.08x at 2, AMD Zen 3). Input and output are darknet's NCHW buffers; the output is
 * l->output, with bias and activation, as stock darknet's within float rounding
 * (tests/unit/test_be_fast.c, test_be_dnnl.c). */
typedef struct be_fast_wino be_fast_wino_t;

/* 1 when `l` is such a layer (3x3, stride 1, groups 1, >= 64 input channels, batch 1) and,
 * for threads > 1, this build has OpenMP to share the work (without it one thread would run
 * the layer while oneDNN would use them all). Pure function. */
int be_fast_wino_fits(const layer *l, int threads);

/* Folds batch-norm into a copy of the weights and transforms them, once. `l` is borrowed for
 * the call. Returns 0, PROTO_EINVAL (does not fit) or PROTO_ENOMEM; the caller owns *out. */
int be_fast_wino_create(be_fast_wino_t **out, const layer *l);

/* Floats of scratch be_fast_wino_forward needs for `l`. Pure function. */
size_t be_fast_wino_scratch(const layer *l);

/* l->output = the layer over `in` (l->inputs floats, NCHW). With threads > 1 the calling
 * thread's OpenMP team (the one oneDNN runs on) shares the work; the products are pgemm's
 * (pgemm.h), weights packed at create, so the output is the same for every thread count.
 * `scratch`: at least be_fast_wino_scratch(l) floats, caller-owned. Calling thread (and team). */
void be_fast_wino_forward(const be_fast_wino_t *w, const layer *l, const float *in, float *scratch,
                          int threads);

void be_fast_wino_destroy(be_fast_wino_t *w);

#endif
