/* framegate-bench-inference's frames (frames.h). */
#include "frames.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "peak.h"

unsigned char *frames_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int frames_load(frames_t *fr, const char *dir)
{
    static const char *names[] = {"dog.jpg",    "person.jpg", "eagle.jpg", "giraffe.jpg",
                                  "horses.jpg", "kite.jpg",   "scream.jpg"};
    char path[512];
    memset(fr, 0, sizeof *fr);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if ((fr->jpeg[fr->n] = frames_slurp(path, &fr->len[fr->n])) != NULL)
            fr->n++;
        else if (i == 0)
            return -1; /* dog.jpg is frame 0: the pre-processing and accuracy reference */
    }
    return 0;
}

int frames_letterbox(frames_t *fr, be_image_t *im, be_prep_t prep, be_decode_t decode, int w, int h)
{
    char err[256];
    for (int i = 0; i < fr->n; i++) {
        int ow, oh, rv;
        free(fr->input[i]);
        if ((fr->input[i] = malloc((size_t)3 * w * h * sizeof(float))) == NULL)
            return PROTO_ENOMEM;
        if ((rv = be_image_letterbox(im, fr->jpeg[i], fr->len[i], prep, decode, w, h, fr->input[i],
                                     &ow, &oh, NULL, NULL, err, sizeof err)) != 0) {
            fprintf(stderr, "frame %d: %s\n", i, err);
            return rv;
        }
    }
    return 0;
}

double frames_preprocess_ms(be_image_t *im, const frames_t *fr, be_prep_t prep, be_decode_t decode,
                            int w, int h, float *buf, int reps)
{
    double t[64];
    char err[128];
    int ow, oh;
    reps = reps > 64 ? 64 : reps;
    for (int r = -3; r < reps; r++) {
        double t0 = now_ms();
        be_image_letterbox(im, fr->jpeg[0], fr->len[0], prep, decode, w, h, buf, &ow, &oh, NULL,
                           NULL, err, sizeof err);
        if (r >= 0)
            t[r] = now_ms() - t0;
    }
    return median(t, reps);
}
