/* A JPEG decoded in two bands of rows at once, on the calling thread's OpenMP team (the one
 * oneDNN runs the network on, so on a backend with threads > 1 the second core no longer
 * waits through the decode, the one serial step left in front of the network).
 *
 * libjpeg cannot start in the middle of a file without restart markers, so the bottom band
 * is reached with jpeg_skip_scanlines(): it still Huffman-decodes the rows it skips (about half
 * the decode's time on the darknet photos), but does no IDCT, upsampling or colour conversion
 * for them. The calling thread does that, while the team's other thread (which starts later)
 * decodes the top band; *split, the top band's share, is moved towards the one that makes
 * both end together, from when they did.
 *
 * The pixels are TurboJPEG's: same IDCT, upsampling and scaling choices from the same flags,
 * and libjpeg-turbo skips to a row exactly (test_be_image compares every byte with
 * tjDecompress2 for several files, subsamplings, flags, scales and splits). Warnings stop the
 * decode as TJFLAG_STOPONWARNING does. Functions on caller-owned buffers; no state. */
#include "image.h"

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <string.h>
#include <time.h>

#include <jpeglib.h>
#include <turbojpeg.h>

#include "err.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define SPLIT_LO 0.15f
#define SPLIT_HI 0.85f
#define SPLIT_START 0.5f

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
} jerr_t;

static void on_error(j_common_ptr c)
{
    longjmp(((jerr_t *)c->err)->jb, 1);
}

static void on_message(j_common_ptr c, int level)
{
    if (level < 0) /* a warning: corrupt or truncated data (TJFLAG_STOPONWARNING) */
        longjmp(((jerr_t *)c->err)->jb, 1);
}

enum { BAND_OK = 0, BAND_SERIAL = 1, BAND_ERROR = 2 };

typedef struct {
    const uint8_t *buf;
    size_t len;
    uint8_t *rgb;
    int sw, sh, flags;
    int y0, y1; /* output rows [y0, y1) */
    int status;
    double end; /* now_ms() when it ended */
} band_t;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* The header and the choices tjDecompress2 makes for these flags and this size. BAND_OK, or
 * BAND_SERIAL for what only TurboJPEG's own path takes (several scans, CMYK, another size). */
static int band_setup(struct jpeg_decompress_struct *c, const band_t *b)
{
    if (jpeg_read_header(c, TRUE) != JPEG_HEADER_OK || jpeg_has_multiple_scans(c) ||
        c->progressive_mode || c->arith_code)
        return BAND_SERIAL;
    if (c->jpeg_color_space != JCS_YCbCr && c->jpeg_color_space != JCS_GRAYSCALE &&
        c->jpeg_color_space != JCS_RGB)
        return BAND_SERIAL;
    c->out_color_space = JCS_EXT_RGB;
    if (b->flags & TJFLAG_FASTUPSAMPLE)
        c->do_fancy_upsampling = FALSE;
    if (b->flags & TJFLAG_FASTDCT)
        c->dct_method = JDCT_FASTEST;
    int n = 0;
    tjscalingfactor *sf = tjGetScalingFactors(&n);
    int found = 0;
    for (int i = 0; i < n && !found; i++)
        if (TJSCALED((int)c->image_width, sf[i]) == b->sw &&
            TJSCALED((int)c->image_height, sf[i]) == b->sh) {
            c->scale_num = (unsigned)sf[i].num;
            c->scale_denom = (unsigned)sf[i].denom;
            found = 1;
        }
    if (!found)
        return BAND_SERIAL;
    jpeg_calc_output_dimensions(c);
    if ((int)c->output_width != b->sw || (int)c->output_height != b->sh ||
        c->output_components != 3)
        return BAND_SERIAL;
    return BAND_OK;
}

static void band_run(band_t *b)
{
    struct jpeg_decompress_struct c;
    jerr_t e;
    memset(&c, 0, sizeof c);
    c.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = on_error;
    e.pub.emit_message = on_message;
    if (setjmp(e.jb)) {
        b->status = BAND_ERROR;
        jpeg_destroy_decompress(&c);
        return;
    }
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, b->buf, (unsigned long)b->len);
    b->status = band_setup(&c, b);
    if (b->status == BAND_OK) {
        jpeg_start_decompress(&c);
        if (b->y0 > 0 && jpeg_skip_scanlines(&c, (JDIMENSION)b->y0) != (JDIMENSION)b->y0)
            b->status = BAND_ERROR;
        while (b->status == BAND_OK && (int)c.output_scanline < b->y1) {
            JSAMPROW rows[16];
            int n = b->y1 - (int)c.output_scanline;
            n = n > 16 ? 16 : n;
            for (int i = 0; i < n; i++)
                rows[i] = b->rgb + ((size_t)c.output_scanline + (size_t)i) * (size_t)b->sw * 3;
            if (jpeg_read_scanlines(&c, rows, (JDIMENSION)n) == 0)
                b->status = BAND_ERROR;
        }
        /* The last band reads to the end, so what follows the scan is checked as TurboJPEG
         * checks it; the first stops at its last row. */
        if (b->status == BAND_OK && b->y1 == b->sh)
            jpeg_finish_decompress(&c);
    }
    jpeg_destroy_decompress(&c);
    b->end = now_ms();
}

int be_jpeg_decode_split(const uint8_t *buf, size_t len, uint8_t *rgb, int sw, int sh, int flags,
                         int threads, float *split)
{
    if (threads < 2 || sh < 32) /* two bands of 16 rows at least */
        return BE_JPEG_SERIAL;
    float f = *split < SPLIT_LO || *split > SPLIT_HI ? SPLIT_START : *split;
    /* on a 16-row boundary: an iMCU row at full size for 2x2 subsampling, several at 1/2 .. */
    int mid = ((int)((float)sh * f) + 8) / 16 * 16;
    mid = mid < 16 ? 16 : mid > sh - 16 ? sh - 16 : mid;
    band_t top = {buf, len, rgb, sw, sh, flags, 0, mid, BAND_SERIAL, 0};
    band_t bottom = {buf, len, rgb, sw, sh, flags, mid, sh, BAND_SERIAL, 0};
    int team = 1;
    double t0 = now_ms();
#ifdef _OPENMP
#pragma omp parallel num_threads(2)
    {
        /* The other thread starts late (woken from its futex: 0.1-0.5 ms on this kind of VM),
         * so it takes the top band, the one without the skip; this thread skips to the
         * bottom band meanwhile. */
        int id = omp_get_thread_num(), n = omp_get_num_threads();
        if (n == 1) { /* no second thread after all: the whole image */
            bottom.y0 = 0;
            band_run(&bottom);
            top.status = BAND_OK;
        } else if (id == 0) {
            team = n;
            band_run(&bottom);
        } else if (id == 1) {
            band_run(&top);
        }
    }
#else
    /* Without OpenMP (the clang fuzz build) the bands run one after the other: slower than
     * TurboJPEG alone, but the same code, so the fuzzer checks it against TurboJPEG. */
    band_run(&top);
    band_run(&bottom);
#endif
    if (top.status == BAND_ERROR || bottom.status == BAND_ERROR)
        return PROTO_EIMAGE;
    if (top.status != BAND_OK || bottom.status != BAND_OK)
        return BE_JPEG_SERIAL;
    double t_top = top.end - t0, t_bottom = bottom.end - t0;
    if (team >= 2 && t_top + t_bottom > 0) {
        /* Newton-like step, halved: the top band's time grows with f, the bottom's falls
         * about as fast (it still pays the skip), so (t_bottom - t_top) / (t_top + t_bottom)
         * is near the change of f that makes both end together, start delay included. */
        f += 0.5f * (float)((t_bottom - t_top) / (t_top + t_bottom));
        *split = f < SPLIT_LO ? SPLIT_LO : f > SPLIT_HI ? SPLIT_HI : f;
    }
    return 0;
}

int be_jpeg_split_worth(int sw, int sh)
{
    /* Below this many rows or pixels the second thread's wake-up and header parse are not
     * paid back. */
    if (sh < 64 || (size_t)sw * (size_t)sh < 256 * 256)
        return 0;
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
