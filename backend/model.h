/* One darknet network, loaded once: cfg + weights + class names. Owns its input buffer and
 * turns a letterboxed input into detections in original-image pixels. Not thread-safe. */
#ifndef BE_MODEL_H
#define BE_MODEL_H

#include <stddef.h>

#include "msg.h"

typedef struct be_model be_model_t;

typedef struct {
    const char *cfg, *weights, *names;
    float threshold, nms; /* defaults for requests that do not set a threshold */
} be_model_opts_t;

/* Loads the network. Checks the files first (darknet exits the process on a missing file).
 * On failure returns a negative code and a message naming the file in err. */
int be_model_load(be_model_t **out, const be_model_opts_t *opts, char *err, size_t errcap);
void be_model_free(be_model_t *m);

int be_model_width(const be_model_t *m);
int be_model_height(const be_model_t *m);
int be_model_classes(const be_model_t *m);

/* The network's input buffer (3 x h x w floats) to letterbox into. */
float *be_model_input(be_model_t *m);

/* Runs the network on the input buffer and fills dets (at most cap, sorted by confidence,
 * labels point into the model's storage) for an original image of img_w x img_h.
 * threshold 0 = the default. Returns the number of detections (>= 0) or a negative code. */
int be_model_detect(be_model_t *m, int img_w, int img_h, float threshold, proto_det_t *dets,
                    int cap);

/* Writes deterministic weights for `cfg`: darknet's own initialisation after srand(seed),
 * with batch-norm statistics set to mean 0 / variance 1 so activations stay finite. */
int be_model_gen_weights(const char *cfg, const char *out, unsigned seed, char *err,
                         size_t errcap);

#endif
