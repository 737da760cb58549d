/* Frame decoding and pre-processing for the network: libjpeg-turbo decode (with DCT scaling
 * straight to near the network size) and one fused letterbox + bilinear resize + normalise
 * pass into the network's CHW float input. Not thread-safe per be_image_t; one per backend. */
#ifndef BE_IMAGE_H
#define BE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct be_image be_image_t;

typedef struct {
    uint64_t max_pixels; /* width * height above this: PROTO_EIMGSIZE */
    int max_side;        /* either side above this: PROTO_EIMGSIZE */
} be_image_limits_t;

int be_image_create(be_image_t **out, be_image_limits_t limits);
void be_image_destroy(be_image_t *im);

/* Reads only the header of buf[0..len): the original size, or PROTO_EEMPTY (len 0),
 * PROTO_EFORMAT (a PNG), PROTO_EIMAGE (not a decodable JPEG), PROTO_EIMGSIZE (over the
 * limits). The pixels are not touched, so a decompression bomb costs nothing. */
int be_image_probe(be_image_t *im, const uint8_t *buf, size_t len, int *w, int *h);

/* Decodes buf and letterboxes it into `input` (3 x net_h x net_w floats in [0,1], CHW, RGB),
 * with darknet's letterbox geometry (aspect kept, centred, 0.5 grey around). Stores the
 * original size. Returns 0 or the errors of be_image_probe (PROTO_EIMAGE also for corrupt
 * scan data). `err` gets libjpeg-turbo's message. */
int be_image_letterbox(be_image_t *im, const uint8_t *buf, size_t len, int net_w, int net_h,
                       float *input, int *w, int *h, char *err, size_t errcap);

/* The same, from packed RGB pixels (used by tests and by the decode path). */
void be_image_letterbox_rgb(const uint8_t *rgb, int w, int h, int net_w, int net_h,
                            float *input);

/* Decodes buf to packed RGB at its full size (malloc'd, caller frees). For tests/outputs. */
int be_image_decode_rgb(be_image_t *im, const uint8_t *buf, size_t len, uint8_t **rgb, int *w,
                        int *h);

#endif
