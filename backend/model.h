/* One darknet network, loaded once: cfg + weights + class names. Owns darknet's network
 * (including the input buffer the image module letterboxes into) and turns one forward pass
 * into detections in original-image pixels. Not thread-safe: one thread (the serving loop)
 * uses a be_model_t. The forward pass is a single static function in model.c, so a faster
 * implementation can replace it without touching the callers. */
#ifndef BE_MODEL_H
#define BE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "dnnl.h"
#include "image.h"
#include "msg.h"

typedef struct be_model be_model_t;

/* Which forward pass runs the network (unless stock darknet is asked for). */
typedef enum {
    BE_ENGINE_DNNL = 0, /* backend/dnnl.c: oneDNN's kernels in its blocked layout (default) */
    BE_ENGINE_BLAS = 1, /* backend/fast.c: framegate's kernels on OpenBLAS */
} be_engine_t;

/* "dnnl" / "blas" -> engine; -1 for anything else. */
int be_engine_parse(const char *s);
const char *be_engine_name(be_engine_t e);

typedef struct {
    const char *cfg, *weights, *names; /* borrowed for the call only */
    float threshold, nms;              /* defaults for requests that do not set a threshold */
    int input_w, input_h;  /* network input size; 0 = the cfg's (multiples of 32 for YOLO) */
    be_prep_t prep;        /* how frames were fitted into the input: boxes are mapped back so */
    be_decode_t decode;    /* how frames are decoded for this model (kept for the caller) */
    int top_k;             /* classifiers: classes per answer when a request says 0; 0 = 5 */
    int threads;           /* OpenBLAS threads of the fast path; <= 0 = 1 */
    int stock;             /* 1: run stock darknet's network_predict (tests, benchmarks) */
    be_engine_t engine;    /* the forward pass when not stock: BE_ENGINE_BLAS or _DNNL */
    be_precision_t precision; /* the oneDNN engine's numbers (dnnl.h); BLAS/stock: fp32 only */
} be_model_opts_t;

typedef enum {
    BE_MODEL_DETECTOR = 0,   /* last layer [yolo], [region] or [detection] */
    BE_MODEL_CLASSIFIER = 1, /* last layer [softmax] (a [cost] after it is ignored) */
} be_model_kind_t;

/* Loads the network, resizes it to input_w x input_h if asked, and prepares the fast forward
 * pass (backend/fast.h; networks it cannot run fall back to darknet's network_predict, and
 * be_model_fast() says which). Checks that every file is readable and the cfg starts with
 * [net] first (darknet exit()s the process on a missing file). On failure returns
 * PROTO_EINVAL (no path, bad size), PROTO_EMODEL or PROTO_ENOMEM with a message naming the
 * file in err. The caller owns *out and frees it with be_model_free(). Blocks for the whole
 * load (seconds). */
int be_model_load(be_model_t **out, const be_model_opts_t *opts, char *err, size_t errcap);
void be_model_free(be_model_t *m);

int be_model_width(const be_model_t *m);
int be_model_height(const be_model_t *m);
int be_model_classes(const be_model_t *m);
be_model_kind_t be_model_kind(const be_model_t *m);
be_prep_t be_model_prep(const be_model_t *m);
be_decode_t be_model_decode(const be_model_t *m);
/* 1 when the fast path runs the network, 0 when stock darknet does. */
int be_model_fast(const be_model_t *m);
/* The engine that runs the network when be_model_fast() (oneDNN falls back to BLAS when this
 * build or the network cannot use it). */
be_engine_t be_model_engine(const be_model_t *m);
/* The precision the network runs in: bf16 only when asked for, on the oneDNN engine, and the
 * CPU takes it (be_dnnl_create_precision); fp32 otherwise. */
be_precision_t be_model_precision(const be_model_t *m);

/* The network's input buffer (3 x h x w floats, CHW), owned by the model. */
float *be_model_input(be_model_t *m);

/* Runs the network on the input buffer and fills dets (at most cap, sorted by confidence
 * descending; labels point into the model and live as long as it) for an original image of
 * img_w x img_h: a detector's boxes above `threshold` (0 = the default) in original-image
 * pixels, or a classifier's `top_k` (0 = the default) most probable classes with the box
 * fields 0. Returns the number of records (>= 0) or a negative code. Blocks for the
 * inference. */
int be_model_detect(be_model_t *m, int img_w, int img_h, float threshold, int top_k,
                    proto_det_t *dets, int cap);

/* be_model_detect with a deadline (unix epoch ms, as the gateway sets it; 0 = none): returns
 * PROTO_EDEADLINE, leaving dets untouched, when it has passed before the forward pass or
 * between two of its layers (the fast path checks before every layer; stock darknet only
 * before the pass). A frame nobody waits for any more then costs at most one layer. */
int be_model_detect_until(be_model_t *m, int img_w, int img_h, float threshold, int top_k,
                          int64_t deadline_ms, proto_det_t *dets, int cap);

/* Writes deterministic weights for `cfg` to `out`: darknet's own initialisation after
 * srand(seed), with batch-norm statistics set to mean 0 / variance 1 so activations stay
 * finite. Same (cfg, seed) -> byte-identical file. Returns 0 or PROTO_EMODEL with err set. */
int be_model_gen_weights(const char *cfg, const char *out, unsigned seed, char *err, size_t errcap);

#endif
