/* What the JPEG decode's bands (backend/image_jpeg.c) save, measured on the bench's photos:
 * each one re-encoded twice by libjpeg with the same settings, without and with restart
 * markers, so that the only difference between the two files is the markers. */
#ifndef BENCH_BANDS_H
#define BENCH_BANDS_H

#include <stddef.h>

#include <cjson/cJSON.h>

typedef struct {
    int frames;        /* photos measured */
    int threads;       /* the bands' thread count */
    double tj_ms;      /* TurboJPEG, 1 thread, the file without markers (median per frame) */
    double tj_rst_ms;  /* TurboJPEG, 1 thread, the file with markers */
    double skip_ms;    /* be_jpeg_decode_split, no markers: two bands, the second skipping */
    double rst_ms;     /* be_jpeg_decode_split, markers: one band per thread */
    int rst_bands;     /* bands the last marked file was decoded in */
} bands_t;

/* Re-encodes jpeg[0..n) (quality 90, 4:2:0; restart markers every row of MCUs in the second
 * copy) and times the four decodes taking turns, `reps` rounds, checking that the bands give
 * TurboJPEG's pixels. Returns 0, or -1 (a photo that does not decode, or different pixels:
 * `out` then holds what was measured so far). Caller's thread; allocates and frees its own
 * buffers. */
int bands_measure(unsigned char *const *jpeg, const size_t *len, int n, int threads, int reps,
                  bands_t *out);

/* bands_measure at `threads`, 5 rounds, printed as one line (say) and added to root as
 * "jpeg_bands". */
void bands_report(unsigned char *const *jpeg, const size_t *len, int n, int threads,
                  cJSON *root);

#endif
