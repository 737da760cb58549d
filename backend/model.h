/* One darknet network, loaded once: cfg + weights + class names. Owns darknet's network
 * (including the input buffer the image module letterboxes into) and turns one forward pass
 * into detections in original-image pixels. Not thread-safe: one thread (the serving loop)
 * uses a be_model_t. The forward pass is a single static function in model.c, so a faster
 * implementation can replace it without touching the callers. */
#ifndef BE_MODEL_H
#define BE_MODEL_H

#include <stddef.h>

#include "msg.h"

typedef struct be_model be_model_t;

typedef struct {
    const char *cfg, *weights, *names; /* borrowed for the call only */
    float threshold, nms;              /* defaults for requests that do not set a threshold */
} be_model_opts_t;

/* Loads the network. Checks that every file is readable and the cfg starts with [net] first
 * (darknet exit()s the process on a missing file). On failure returns PROTO_EINVAL (no path),
 * PROTO_EMODEL or PROTO_ENOMEM with a message naming the file in err. The caller owns *out
 * and frees it with be_model_free(). Blocks for the whole load (seconds). */
int be_model_load(be_model_t **out, const be_model_opts_t *opts, char *err, size_t errcap);
void be_model_free(be_model_t *m);

int be_model_width(const be_model_t *m);
int be_model_height(const be_model_t *m);
int be_model_classes(const be_model_t *m);

/* The network's input buffer (3 x h x w floats, CHW), owned by the model. */
float *be_model_input(be_model_t *m);

/* Runs the network on the input buffer and fills dets (at most cap, sorted by confidence
 * descending; labels point into the model and live as long as it) for an original image of
 * img_w x img_h. threshold 0 = the default. Returns the number of detections (>= 0) or a
 * negative code. Blocks for the inference. */
int be_model_detect(be_model_t *m, int img_w, int img_h, float threshold, proto_det_t *dets,
                    int cap);

/* Writes deterministic weights for `cfg` to `out`: darknet's own initialisation after
 * srand(seed), with batch-norm statistics set to mean 0 / variance 1 so activations stay
 * finite. Same (cfg, seed) -> byte-identical file. Returns 0 or PROTO_EMODEL with err set. */
int be_model_gen_weights(const char *cfg, const char *out, unsigned seed, char *err, size_t errcap);

#endif
