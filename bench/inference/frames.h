#ifndef FG_BENCH_FRAMES_H
#define FG_BENCH_FRAMES_H
/* framegate-bench-inference's frames: the JPEG files it times, and the network inputs made from
 * them by the backend's own pre-processing (backend/image.h). Bench thread only. */
#include <stddef.h>

#include "image.h"

#define MAX_FRAMES 12

typedef struct {
    int n;
    unsigned char *jpeg[MAX_FRAMES]; /* the files' bytes (malloc'd) */
    size_t len[MAX_FRAMES];
    float *input[MAX_FRAMES]; /* 3 x h x w each (frames_letterbox; malloc'd) */
} frames_t;

/* A whole file, malloc'd (*len bytes), or NULL. */
unsigned char *frames_slurp(const char *path, size_t *len);

/* darknet's sample photos from dir, dog.jpg first (the pre-processing and accuracy reference):
 * 0, or -1 without it. */
int frames_load(frames_t *fr, const char *dir);

/* Every frame's network input at w x h, as a backend with this prep and decode makes it: 0, or
 * the first frame's error (printed). */
int frames_letterbox(frames_t *fr, be_image_t *im, be_prep_t prep, be_decode_t decode, int w,
                     int h);

/* Median ms of frame 0's decode + pre-processing into buf (3 x h x w), over reps (<= 64). */
double frames_preprocess_ms(be_image_t *im, const frames_t *fr, be_prep_t prep, be_decode_t decode,
                            int w, int h, float *buf, int reps);

#endif
