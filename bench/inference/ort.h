/* ONNX Runtime as a peer of framegate-bench-inference: the network converted to ONNX
 * (darknet2onnx.py, Debian's python3-onnx) and run by onnxruntime-node (bench/inference/ort,
 * pinned by its package-lock.json, installed by scripts/setup.sh --bench) in a worker process
 * (ort/ort_worker.mjs) that the bench drives one line at a time, so its runs interleave with
 * framegate's frame by frame. All calls block the caller's thread; one caller per peer. */
#ifndef FG_BENCH_ORT_H
#define FG_BENCH_ORT_H

#include <stddef.h>

typedef struct ort_peer ort_peer_t;

/* Converts cfg + weights to `onnx` with /usr/bin/python3 <dir>/darknet2onnx.py. Returns 0, or
 * -1 with err filled (the converter's exit status; its own message went to stderr). */
int ort_convert(const char *dir, const char *cfg, const char *weights, const char *onnx, char *err,
                size_t errcap);

/* Starts `node <dir>/ort/ort_worker.mjs onnx threads` and waits for it to be ready (session
 * created). Returns NULL with err filled when node, the package or the model fails. The caller
 * owns the result (ort_peer_stop). `version` (may be NULL) gets ONNX Runtime's version. */
ort_peer_t *ort_peer_start(const char *dir, const char *onnx, int threads, char *version,
                           size_t vcap, char *err, size_t errcap);

/* Hands the worker a frame: `n` floats (the network's CHW input) written to `tmpdir`. Returns
 * the frame's index for ort_peer_run, or -1 with err filled. */
int ort_peer_load(ort_peer_t *p, const float *input, size_t n, const char *tmpdir, char *err,
                  size_t errcap);

/* One session.run on frame k; *ms is the run alone as the worker timed it (no pipe, no
 * process switch). Returns 0 or -1 with err filled. */
int ort_peer_run(ort_peer_t *p, int k, double *ms, char *err, size_t errcap);

/* Every output of frame k, in the model's order, into out (cap floats). Returns the number of
 * floats (may exceed cap: then only cap were written), or -1 with err filled. */
long ort_peer_outputs(ort_peer_t *p, int k, float *out, size_t cap, const char *tmpdir, char *err,
                      size_t errcap);

/* Waits (up to max_ms) until the worker's threads stop using CPU: ONNX Runtime's idle pool
 * threads spin 2^20 pauses after a run (its default allow_spinning), 70+ ms on the AMD EPYC of
 * bench/results/inference, during which whatever runs next has one core fewer (framegate's
 * 2-thread pass measured at its 1-thread time). "Stopped": under 0.2 ms of CPU in a 2 ms
 * window, summed over /proc/<pid>/task/<tid>/schedstat. Returns the ms waited. NULL: 0.
 * Not enough alone: a pool thread seen idle here still woke and spun through the next turn;
 * the worker therefore sets force_spinning_stop (ort/ort_worker.mjs). */
double ort_peer_settle(ort_peer_t *p, int max_ms);

/* ns on CPU of every thread of the worker so far (schedstat), or -1 when /proc cannot tell
 * (or p is NULL): the bench reads it around framegate's turns, where it must not grow. */
long long ort_peer_cpu_ns(ort_peer_t *p);

/* Closes the worker's stdin and waits for it to exit. NULL is a no-op. */
void ort_peer_stop(ort_peer_t *p);

#endif
