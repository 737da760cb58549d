/* The JPEG decode's bands against TurboJPEG on files that differ only in restart markers
 * (bands.h). */
#include "bands.h"

#include <stdint.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <turbojpeg.h>

#include "agree.h"
#include "image.h"
#include "peak.h"

#define BANDS_FRAMES 16
#define BANDS_SAMPLES 512

/* px (w x h RGB) as a baseline 4:2:0 JPEG, quality 90, restart markers every row of MCUs when
 * `restart` (libjpeg's restart_in_rows: TurboJPEG 2.1 cannot write them). malloc'd by libjpeg;
 * NULL on failure. */
static unsigned char *encode(const uint8_t *px, int w, int h, int restart, unsigned long *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    unsigned char *out = NULL;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c); /* 2x2 luma: 4:2:0 */
    jpeg_set_quality(&c, 90, TRUE);
    c.restart_in_rows = restart ? 1 : 0;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(px + (size_t)c.next_scanline * (size_t)w * 3);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return out;
}

int bands_measure(unsigned char *const *jpeg, const size_t *len, int n, int threads, int reps,
                  bands_t *out)
{
    memset(out, 0, sizeof *out);
    out->threads = threads;
    n = n > BANDS_FRAMES ? BANDS_FRAMES : n;
    unsigned char *file[BANDS_FRAMES][2] = {{NULL}};
    unsigned long flen[BANDS_FRAMES][2] = {{0}};
    int fw[BANDS_FRAMES] = {0}, fh[BANDS_FRAMES] = {0};
    size_t most = 0;
    int rv = 0;
    tjhandle tj = tjInitDecompress();
    if (tj == NULL)
        return -1;
    for (int i = 0; i < n && rv == 0; i++) {
        int ss, cs;
        if (tjDecompressHeader3(tj, jpeg[i], (unsigned long)len[i], &fw[i], &fh[i], &ss, &cs) !=
            0) {
            rv = -1;
            break;
        }
        size_t sz = (size_t)fw[i] * (size_t)fh[i] * 3;
        uint8_t *px = malloc(sz);
        if (px == NULL || tjDecompress2(tj, jpeg[i], (unsigned long)len[i], px, fw[i], 0, fh[i],
                                        TJPF_RGB, 0) != 0)
            rv = -1;
        for (int r = 0; r < 2 && rv == 0; r++)
            if ((file[i][r] = encode(px, fw[i], fh[i], r, &flen[i][r])) == NULL)
                rv = -1;
        free(px);
        most = sz > most ? sz : most;
    }
    uint8_t *ref = rv == 0 ? malloc(most) : NULL, *got = rv == 0 ? malloc(most) : NULL;
    static double t[4][BANDS_SAMPLES];
    int k = 0;
    /* one caller's memory for all frames, as a backend's be_image keeps it */
    be_jpeg_split_t split = {0.5f, 0.5f};
    if (ref == NULL || got == NULL)
        rv = -1;
    /* One warm-up round; then each frame's four decodes in a rotating order, so that a noisy
     * neighbour slows them alike. */
    for (int r = -1; r < reps && rv == 0; r++)
        for (int i = 0; i < n && rv == 0 && k < BANDS_SAMPLES; i++) {
            size_t sz = (size_t)fw[i] * (size_t)fh[i] * 3;
            for (int j = 0; j < 4 && rv == 0; j++) {
                int which = (j + i + r + 1) % 4, mark = which % 2;
                double t0 = now_ms();
                if (which < 2) {
                    if (tjDecompress2(tj, file[i][mark], flen[i][mark], ref, fw[i], 0, fh[i],
                                      TJPF_RGB, 0) != 0)
                        rv = -1;
                } else {
                    int nb = be_jpeg_decode_split(file[i][mark], flen[i][mark], got, fw[i], fh[i],
                                                  0, threads, &split);
                    if (nb < 2)
                        rv = -1;
                    else if (mark)
                        out->rst_bands = nb;
                }
                if (r >= 0)
                    t[which][k] = now_ms() - t0;
            }
            /* the last two decodes of the marked file: both must be TurboJPEG's pixels */
            if (rv == 0 && (tjDecompress2(tj, file[i][1], flen[i][1], ref, fw[i], 0, fh[i],
                                          TJPF_RGB, 0) != 0 ||
                            be_jpeg_decode_split(file[i][1], flen[i][1], got, fw[i], fh[i], 0,
                                                 threads, &split) < 2 ||
                            memcmp(ref, got, sz) != 0))
                rv = -1;
            k += r >= 0;
        }
    out->frames = n;
    out->tj_ms = median(t[0], k);
    out->tj_rst_ms = median(t[1], k);
    out->skip_ms = median(t[2], k);
    out->rst_ms = median(t[3], k);
    free(ref);
    free(got);
    for (int i = 0; i < n; i++)
        for (int r = 0; r < 2; r++)
            free(file[i][r]);
    tjDestroy(tj);
    return rv;
}

void bands_report(unsigned char *const *jpeg, const size_t *len, int n, int threads, cJSON *root)
{
    bands_t b;
    int rv = bands_measure(jpeg, len, n, threads, 5, &b);
    say("JPEG decode, the %d photos re-encoded (libjpeg q90 4:2:0) without | with restart "
        "markers every MCU row%s:\n  TurboJPEG 1 thread %.2f | %.2f ms/frame; %d threads in "
        "bands %.2f (two, the second skipping) | %.2f (%d, entered at the markers)\n",
        b.frames, rv != 0 ? " (FAILED: a decode failed or differed from TurboJPEG)" : "", b.tj_ms,
        b.tj_rst_ms, b.threads, b.skip_ms, b.rst_ms, b.rst_bands);
    cJSON *j = cJSON_AddObjectToObject(root, "jpeg_bands");
    cJSON_AddBoolToObject(j, "ok", rv == 0);
    cJSON_AddNumberToObject(j, "frames", b.frames);
    cJSON_AddNumberToObject(j, "threads", b.threads);
    cJSON_AddNumberToObject(j, "turbojpeg_ms", b.tj_ms);
    cJSON_AddNumberToObject(j, "turbojpeg_restart_ms", b.tj_rst_ms);
    cJSON_AddNumberToObject(j, "bands_skip_ms", b.skip_ms);
    cJSON_AddNumberToObject(j, "bands_restart_ms", b.rst_ms);
    cJSON_AddNumberToObject(j, "restart_bands", b.rst_bands);
}
