/* darknet's do_nms_sort with the same result (boxes, ties and all) at a fraction of its cost,
 * for be_model_detect. The scratch memory is kept between frames by the caller (one per
 * model, so one thread at a time). */
#ifndef BE_NMS_H
#define BE_NMS_H

#include <stddef.h>

#include <darknet.h>

typedef struct {
    void *buf;  /* grown as needed, kept for the next frame */
    size_t cap; /* bytes */
} be_nms_t;

/* Zeroes d[i].prob[k] of every box that darknet's do_nms_sort(d, n, classes, thresh) would
 * zero (thresh > 0), and nothing else. Returns 0 or PROTO_ENOMEM (d untouched then). */
int be_nms(be_nms_t *s, detection *d, int n, int classes, float thresh);

/* Frees the scratch memory; the struct can be used again. */
void be_nms_free(be_nms_t *s);

#endif
