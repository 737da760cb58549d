/* A second forward-pass engine for a darknet network: oneDNN (Debian's libdnnl 2.6), whose JIT
 * kernels are chosen for the CPU at run time (AVX-512 where present, AVX2 otherwise). The
 * convolutions (groups 1 and depthwise, batch-norm folded, bias + leaky/relu/logistic as a
 * post-op; f32 3x3 stride-1 ones with 16+ channels as Winograd where oneDNN has it, AVX-512,
 * their activation a step of its own; without AVX-512 those with 64+ input channels as
 * fast.c's Winograd on its own packed kernel, on the engine's OpenMP team) and max-pools
 * (oneDNN's, or framegate's loop where oneDNN has no AVX-512 or splits it in halves:
 * be_dnnl_own_pool, be_dnnl_own_loops_default; there a first
 * 3x3 or a small 1x1 and the pool after it also run as one pass of framegate's:
 * be_dnnl_convpool) run in oneDNN's own blocked layout from one layer to the next; a tensor is
 * reordered to darknet's NCHW only where darknet's own code reads it (the layers this engine
 * leaves to darknet: route, upsample, [yolo], [region], ...; their inputs; the network's
 * output). A [yolo] head's logistic is a oneDNN eltwise over
 * darknet's buffers (its w/h entries copied back raw), not darknet's single-threaded loop. Every
 * layer darknet runs sees what stock darknet would give it, within float rounding
 * (tests/unit/test_be_dnnl.c holds every layer's output to stock darknet's within 1e-4). Batch 1,
 * like backend/fast.h. Not thread-safe: one caller at a time per engine. */
#ifndef BE_DNNL_H
#define BE_DNNL_H

#include <stddef.h>

#include <darknet.h>

#include "fast.h"

typedef struct be_dnnl be_dnnl_t;

/* 1 when this build has oneDNN. Pure function. */
int be_dnnl_available(void);

/* Prepares the engine for `net` (batch 1; the caller keeps owning `net`, which must outlive
 * *out). threads <= 0 means 1 (oneDNN's OpenMP threads of the calling thread). `all_outputs`
 * (tests) also writes every layer's output to its darknet buffer, so each can be compared.
 * Returns 0, PROTO_EINVAL (no oneDNN in this build, batch != 1, or a primitive oneDNN refuses;
 * `why` says which, may be NULL) or PROTO_ENOMEM. Blocks for the set-up (JIT, weight
 * reorders): tens of ms. */
int be_dnnl_create(be_dnnl_t **out, network *net, int threads, int all_outputs, char *why,
                   size_t whycap);

/* One forward pass over `input` (net->inputs floats, CHW; read only), like be_fast_predict_stop:
 * `stop` (may be NULL) is asked before every layer and a nonzero answer ends the pass (NULL is
 * returned). Returns net->output (owned by the network). Calling thread. */
float *be_dnnl_predict_stop(be_dnnl_t *d, const float *input, be_fast_stop_cb stop, void *arg);

/* How many of the network's layers this engine runs: oneDNN's, and fast.c's Winograd ones
 * (be_dnnl_winograd_layers); the rest are darknet's. Pure function. */
int be_dnnl_layers(const be_dnnl_t *d);

/* The numbers the convolutions and max-pools compute in. fp32 (the default) agrees with stock
 * darknet layer by layer (1e-4). bf16 (opt-in per model: backend --precision, gateway
 * `precision`) keeps activations and weights in bfloat16 (8-bit mantissa) between oneDNN's
 * layers, with f32 accumulation and f32 biases; the input image is converted once (where
 * framegate's own passes run, as on AMD Zen 4, the first convolution and its pool run on it in
 * f32 and their output is converted), every tensor darknet's code reads ([yolo] heads, route,
 * upsample) comes back as f32. Its
 * answers differ a little from fp32's: tests/unit/test_be_bf16.c holds the tolerance,
 * bench/results/inference/README.md the measured agreement. */
typedef enum { BE_PRECISION_FP32 = 0, BE_PRECISION_BF16 = 1 } be_precision_t;

/* "fp32" / "bf16" -> precision; -1 for anything else. Pure functions. */
int be_precision_parse(const char *s);
const char *be_precision_name(be_precision_t p);

/* be_dnnl_create at `precision`. bf16 where the CPU lacks AVX512_BF16 (oneDNN would emulate
 * it, slower than f32), or where oneDNN refuses a bf16 primitive, builds the f32 network
 * instead and says so in one line on stderr: it never fails for want of bf16.
 * be_dnnl_precision() says what runs. Same returns and blocking as be_dnnl_create. */
int be_dnnl_create_precision(be_dnnl_t **out, network *net, int threads, int all_outputs,
                             be_precision_t precision, char *why, size_t whycap);
be_precision_t be_dnnl_precision(const be_dnnl_t *d);

/* 1 when bf16 would run here (oneDNN's effective ISA has AVX512_BF16, and no refusal).
 * DNNL_MAX_CPU_ISA=AVX512_CORE in the environment makes it 0 on any CPU (test_gw_precision). */
int be_dnnl_bf16_supported(void);

/* Test hook: nonzero makes be_dnnl_bf16_supported() answer 0, as on a CPU without bf16, so
 * the fallback can be tested. Process-wide; call it with no engine being created. */
void be_dnnl_refuse_bf16(int on);

/* How many convolutions run as Winograd (F(2x2,3x3) or F(4x4,3x3), oneDNN's choice by shape):
 * 2.25-4x fewer multiplies than the direct kernel, its transformed weights 1.8-4x larger.
 * Where oneDNN has none (no AVX-512), those with 64+ input channels run fast.c's F(2x2,3x3) on
 * OpenBLAS instead (be_fast_wino), on darknet's NCHW buffers. Pure function. */
int be_dnnl_winograd_layers(const be_dnnl_t *d);

/* 1 when oneDNN's effective ISA here has its f32 Winograd kernels (AVX-512). Pure function. */
int be_dnnl_winograd_supported(void);

/* Nonzero makes the engines created after it run every convolution direct (backend
 * --winograd off; tests, bench). Process-wide; call it with no engine being created. */
void be_dnnl_refuse_winograd(int on);

/* 1 where framegate's own AVX2 loops take the max-pools and the convolution + pool passes
 * from oneDNN by default (be_dnnl_own_pool, be_dnnl_convpool): where oneDNN has no AVX-512
 * kernels, and on AMD family 19h (Zen 4), whose AVX-512 runs each 512-bit operation as two
 * 256-bit halves: there oneDNN's AVX-512 kernels lost to them (the face model's network took
 * 0.69-0.74x of its time with them, in-process, 1 and 2 threads). 0 elsewhere (Intel's AVX-512:
 * oneDNN's max-pool beat the loop on Cooper Lake), and without oneDNN. Pure function. */
int be_dnnl_own_loops_default(void);

/* Which max-pools the engines created after it run with framegate's own loop
 * (backend/maxpool.h) instead of oneDNN's kernel: -1 (the default) where
 * be_dnnl_own_loops_default, 0 none, 1 every one it fits (f32, 8/16-channel blocks). Process-wide,
 * for tests and the bench; call it with no engine being created. */
void be_dnnl_own_pool(int mode);

/* How many of the network's max-pools that loop runs. Pure function. */
int be_dnnl_own_pool_layers(const be_dnnl_t *d);

/* Whether the engines created after it run a convolution and the 2x2 max-pool after it as one
 * pass of framegate's own (backend/convpool.h: a first 3x3 on the input, a 1x1 from up to 16
 * channels, or a depthwise 3x3 + a 1x1 from up to 32 channels + the pool), where it fits and
 * be_dnnl_own_loops_default (mode -1, the default), never (0), wherever it fits (1), or wherever
 * it fits without the depthwise kind (2); never when every layer's output is asked for
 * (all_outputs) or in bf16. Process-wide, for tests and the bench; call it with no engine
 * being created. */
void be_dnnl_convpool(int mode);

/* How many such passes this engine runs. Pure function. */
int be_dnnl_convpool_layers(const be_dnnl_t *d);

/* How many of the network's [route] and [upsample] layers this engine runs on its OpenMP team
 * (backend/reshape.h) instead of darknet's one-thread forward. Pure function. */
int be_dnnl_reshape_layers(const be_dnnl_t *d);

/* When the network starts with a chain of convolutions and max-pools run by that loop, each
 * reading the one before, and a pass's input is padded above and/or below with rows of one
 * value (face-api's zeros below a landscape frame, darknet's letterbox's 0.5 above and below),
 * the chain computes only the band of rows that can differ from an input of that value
 * everywhere, and its last output's other rows are copied from that input's output, computed
 * once per value (backend/dnnl_tail.c; the output is the same, bit for bit). Nonzero makes the
 * engines created after it run those layers whole. Process-wide, for tests and the bench; call
 * it with no engine being created. */
void be_dnnl_refuse_tail(int on);

/* How many layers (0 .. n-1) that chain has: 0 when the engine has none. Pure function. */
int be_dnnl_tail_layers(const be_dnnl_t *d);

/* Rows of the chain's last output the last pass copied instead of computing them (0: the
 * layers ran whole; all of them for an input that is all padding). Pure function. */
int be_dnnl_tail_rows(const be_dnnl_t *d);

/* What GOMP_SPINCOUNT be_dnnl_omp_env picks: an idle OpenMP thread spins this many pause
 * instructions (~0.1-0.2 ms on the AMD EPYC of bench/results/inference; a PAUSE there takes
 * 55-120 ns, not the ~10 ns libgomp's default of 300000 was sized for) and then sleeps. */
#define BE_DNNL_SPINCOUNT "2000"

/* libgomp (oneDNN's OpenMP runtime) reads its wait policy once, when it is loaded, and by
 * default an idle thread spins 300000 pauses, 16-36 ms on this 2-core machine: after every
 * frame the second thread kept a core busy that long, so the gateway, other backends or any
 * other process lost it, and a 2-thread pass on a loaded machine had a p90 of 160 ms (face
 * model, e2e 5.4 ms; bench/results/inference/README.md). With `threads` > 1 and neither
 * OMP_WAIT_POLICY nor GOMP_SPINCOUNT in the environment (an operator's choice wins), this
 * sets GOMP_SPINCOUNT=BE_DNNL_SPINCOUNT and re-executes the program (/proc/self/exe, the same
 * argv and pid). Returns when there is nothing to do, or when the exec failed (the default
 * policy then stays). Call it first thing in main, before any thread, socket or file is
 * opened; a build without oneDNN returns at once. */
void be_dnnl_omp_env(int threads, char **argv);

/* Frees the engine (not the network). NULL is a no-op. */
void be_dnnl_destroy(be_dnnl_t *d);

#endif
