#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* malloc_trim */
#endif
#include "image.h"

#include <darknet.h>
#include <malloc.h>
#include <math.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "err.h"

#ifndef FG_DARKNET_SHARE
#define FG_DARKNET_SHARE "/usr/share/darknet"
#endif

/* Column taps up to this width live on the stack: no allocation per frame. */
#define TAPS_STACK 4096

/* darknet ships its label font as one PNG per printable ASCII character and size. */
#define GLYPH_SIZES 8
#define GLYPH_FIRST 32
#define GLYPH_COUNT 95

/* A PNG's compressed chunks are bounded too, so a hostile file cannot make libspng buffer
 * more than a frame's worth of metadata. */
#define PNG_CHUNK_MAX (8u << 20)

/* A progressive JPEG is decoded scan by scan, each scan a pass over every block of the image:
 * a "scan bomb" (thousands of tiny scans) costs seconds of CPU for a small file. Encoders
 * write about 10 scans (libjpeg's default script) and rarely more than 20, so this many is
 * never a real camera frame; libjpeg-turbo's own TJFLAG_LIMITSCANS (500) stays as a backstop. */
#define JPEG_SCANS_MAX 100

enum { FMT_JPEG = 1, FMT_PNG = 2 };

struct be_image {
    tjhandle tj;  /* decompressor; NULL after a failed reset (recreated on the next call) */
    tjhandle tjc; /* compressor, created on the first annotated output */
    be_image_limits_t limits;
    uint8_t *rgb; /* decode buffer, grown as needed and kept up to BE_IMAGE_KEEP_MAX */
    size_t rgb_cap;
    unsigned char *jpeg; /* last annotated output (tjAlloc'd) */
    size_t jpeg_len;
    char err[200]; /* the last JPEG error, saved before the handle that reported it is reset */
    image glyphs[GLYPH_SIZES][GLYPH_COUNT]; /* darknet's label font, loaded per size on use */
    signed char glyphs_state[GLYPH_SIZES];  /* 0 not tried, 1 loaded, -1 missing */
};

int be_prep_parse(const char *s)
{
    if (s == NULL)
        return -1;
    if (strcmp(s, "darknet") == 0)
        return BE_PREP_DARKNET;
    if (strcmp(s, "faceapi") == 0)
        return BE_PREP_FACEAPI;
    return -1;
}

const char *be_prep_name(be_prep_t mode)
{
    return mode == BE_PREP_FACEAPI ? "faceapi" : "darknet";
}

int be_decode_parse(const char *s)
{
    if (s == NULL)
        return -1;
    if (strcmp(s, "exact") == 0)
        return BE_DECODE_EXACT;
    if (strcmp(s, "fast") == 0)
        return BE_DECODE_FAST;
    return -1;
}

const char *be_decode_name(be_decode_t mode)
{
    return mode == BE_DECODE_FAST ? "fast" : "exact";
}

/* TurboJPEG flags for a decode: the reference decoders' IDCT and upsampling for `exact`
 * (be_decode_t says which), libjpeg-turbo's fastest for `fast`. */
static int jpeg_flags(be_prep_t mode, be_decode_t decode)
{
    if (decode == BE_DECODE_FAST)
        return TJFLAG_FASTDCT;
    return mode == BE_PREP_FACEAPI ? TJFLAG_FASTUPSAMPLE : 0;
}

int be_image_create(be_image_t **out, be_image_limits_t limits)
{
    be_image_t *im = calloc(1, sizeof *im);
    if (im == NULL)
        return PROTO_ENOMEM;
    im->tj = tjInitDecompress();
    if (im->tj == NULL) {
        free(im);
        return PROTO_ENOMEM;
    }
    im->limits = limits;
    *out = im;
    return 0;
}

void be_image_destroy(be_image_t *im)
{
    if (im == NULL)
        return;
    if (im->tj != NULL)
        tjDestroy(im->tj);
    if (im->tjc != NULL)
        tjDestroy(im->tjc);
    tjFree(im->jpeg);
    free(im->rgb);
    for (int z = 0; z < GLYPH_SIZES; z++)
        if (im->glyphs_state[z] == 1)
            for (int i = 0; i < GLYPH_COUNT; i++)
                free_image(im->glyphs[z][i]);
    free(im);
}

/* libjpeg-turbo 2.1's tjDecompressHeader3() returns from its error longjmp without aborting
 * the decompressor, so the next header is read as the continuation of the broken one ("Bogus
 * marker length" for every later frame). Nothing short of a new handle is known to be clean:
 * after ANY error the handle is replaced, keeping its message first. A failed re-creation
 * leaves NULL, which jpeg_handle() retries on the next frame. */
static void jpeg_reset(be_image_t *im)
{
    if (im->tj != NULL) {
        snprintf(im->err, sizeof im->err, "%s", tjGetErrorStr2(im->tj));
        tjDestroy(im->tj);
    }
    im->tj = tjInitDecompress();
}

static tjhandle jpeg_handle(be_image_t *im)
{
    if (im->tj == NULL)
        im->tj = tjInitDecompress();
    return im->tj;
}

size_t be_image_retained(const be_image_t *im)
{
    return im->rgb_cap + im->jpeg_len;
}

/* A frame's buffers above BE_IMAGE_KEEP_MAX are not kept for the next frame: one PNG bomb
 * inside the limits would otherwise pin ~190 MB for the life of the backend. `big` says the
 * frame itself was large (libjpeg's and libspng's own working memory was too), so the heap is
 * trimmed even when our buffer stayed small (a DCT-scaled JPEG). */
static void release_large(be_image_t *im, int big)
{
    if (im->rgb_cap > BE_IMAGE_KEEP_MAX) {
        free(im->rgb);
        im->rgb = NULL;
        im->rgb_cap = 0;
        big = 1;
    }
    if (big)
        malloc_trim(0); /* glibc keeps freed heap memory below its mmap threshold otherwise */
}

/* The annotated output of the previous call, if large: its validity ended with this call. */
static void release_output(be_image_t *im)
{
    if (im->jpeg_len > BE_IMAGE_KEEP_MAX) {
        tjFree(im->jpeg);
        im->jpeg = NULL;
        im->jpeg_len = 0;
        malloc_trim(0);
    }
}

static int is_big(int w, int h)
{
    return (uint64_t)w * (uint64_t)h * 3 > BE_IMAGE_KEEP_MAX;
}

static int sniff(const uint8_t *buf, size_t len)
{
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 8 && memcmp(buf, png_magic, 8) == 0)
        return FMT_PNG;
    if (len >= 2 && buf[0] == 0xff && buf[1] == 0xd8) /* SOI */
        return FMT_JPEG;
    return 0;
}

/* A libspng context over buf with the limits applied; NULL on allocation failure. */
static spng_ctx *png_open(const be_image_t *im, const uint8_t *buf, size_t len)
{
    spng_ctx *ctx = spng_ctx_new(0);
    if (ctx == NULL)
        return NULL;
    uint32_t side = im->limits.max_side > 0 ? (uint32_t)im->limits.max_side : 1;
    if (spng_set_image_limits(ctx, side, side) != 0 ||
        spng_set_chunk_limits(ctx, PNG_CHUNK_MAX, PNG_CHUNK_MAX) != 0 ||
        spng_set_png_buffer(ctx, buf, len) != 0) {
        spng_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

static int png_probe(be_image_t *im, const uint8_t *buf, size_t len, int *w, int *h)
{
    spng_ctx *ctx = png_open(im, buf, len);
    if (ctx == NULL)
        return PROTO_ENOMEM;
    struct spng_ihdr ihdr;
    int e = spng_get_ihdr(ctx, &ihdr);
    spng_ctx_free(ctx);
    if (e == SPNG_EUSER_WIDTH || e == SPNG_EUSER_HEIGHT)
        return PROTO_EIMGSIZE; /* over max_side: refused from the IHDR alone */
    if (e != 0 || ihdr.width == 0 || ihdr.height == 0 || ihdr.width > 0x7fffffff ||
        ihdr.height > 0x7fffffff)
        return PROTO_EIMAGE;
    *w = (int)ihdr.width;
    *h = (int)ihdr.height;
    return 0;
}

int be_image_probe(be_image_t *im, const uint8_t *buf, size_t len, int *w, int *h)
{
    int subsamp, colorspace, rv;
    if (len == 0 || buf == NULL)
        return PROTO_EEMPTY;
    int fmt = sniff(buf, len);
    /* Signature first: anything else is not ours to hand to a decoder. */
    if (fmt == 0)
        return PROTO_EFORMAT;
    *w = 0;
    *h = 0;
    if (fmt == FMT_PNG) {
        if ((rv = png_probe(im, buf, len, w, h)) != 0)
            return rv;
        goto limits;
    }
    if (len < 4 || len > (size_t)0x7fffffff) {
        snprintf(im->err, sizeof im->err, "JPEG: %s", len < 4 ? "too short" : "too long");
        return PROTO_EIMAGE;
    }
    if (jpeg_handle(im) == NULL)
        return PROTO_ENOMEM;
    if (tjDecompressHeader3(im->tj, buf, (unsigned long)len, w, h, &subsamp, &colorspace) != 0) {
        jpeg_reset(im);
        return PROTO_EIMAGE;
    }
    /* TurboJPEG answers a header cut short before its SOF ("tables only") with success and
     * leaves the size untouched: *w, *h start from 0 so that is rejected here. */
    if (*w <= 0 || *h <= 0) {
        jpeg_reset(im);
        snprintf(im->err, sizeof im->err, "JPEG: no frame header (SOF) in the data");
        return PROTO_EIMAGE;
    }
limits:
    if (*w > im->limits.max_side || *h > im->limits.max_side ||
        (uint64_t)*w * (uint64_t)*h > im->limits.max_pixels)
        return PROTO_EIMGSIZE;
    return 0;
}

void be_image_letterbox_size(int w, int h, int net_w, int net_h, int *nw, int *nh)
{
    /* The same integer arithmetic as darknet's letterbox_image and correct_yolo_boxes, so
     * the boxes darknet un-letterboxes land where the pixels were put. */
    if ((float)net_w / w < (float)net_h / h) {
        *nw = net_w;
        *nh = (h * net_w) / w;
    } else {
        *nh = net_h;
        *nw = (w * net_h) / h;
    }
    if (*nw < 1)
        *nw = 1;
    if (*nh < 1)
        *nh = 1;
}

void be_image_scaled_size(int w, int h, int want_w, int want_h, int *sw, int *sh)
{
    int n;
    *sw = w;
    *sh = h;
    tjscalingfactor *sf = tjGetScalingFactors(&n);
    for (int i = 0; sf != NULL && i < n; i++) {
        /* Only downscaling factors: upscaled decodes cost time and add nothing. */
        if (sf[i].num > sf[i].denom)
            continue;
        int x = TJSCALED(w, sf[i]), y = TJSCALED(h, sf[i]);
        if (x >= want_w && y >= want_h && (uint64_t)x * y < (uint64_t)*sw * *sh) {
            *sw = x;
            *sh = y;
        }
    }
}

/* Fills the parts of the network input the resized image does not cover with `v`. */
static void fill_border(float *input, int net_w, int net_h, int ox, int oy, int nw, int nh,
                        float v)
{
    size_t plane = (size_t)net_w * net_h;
    for (int c = 0; c < 3; c++) {
        float *p = input + c * plane;
        for (int y = 0; y < net_h; y++) {
            float *row = p + (size_t)y * net_w;
            if (y < oy || y >= oy + nh) {
                for (int x = 0; x < net_w; x++)
                    row[x] = v;
                continue;
            }
            for (int x = 0; x < ox; x++)
                row[x] = v;
            for (int x = ox + nw; x < net_w; x++)
                row[x] = v;
        }
    }
}

/* Blends two source rows (packed RGB bytes, n values) into one float row: contiguous, so
 * the compiler vectorises it. */
static void vblend(const uint8_t *restrict p, const uint8_t *restrict q, float w0, float w1,
                   size_t n, float *restrict out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = w0 * p[i] + w1 * q[i];
}

void be_image_letterbox_rgb(const uint8_t *rgb, int w, int h, int net_w, int net_h, float *input)
{
    int nw, nh;
    be_image_letterbox_size(w, h, net_w, net_h, &nw, &nh);
    if (nw > net_w)
        nw = net_w;
    if (nh > net_h)
        nh = net_h;
    int ox = (net_w - nw) / 2, oy = (net_h - nh) / 2;
    fill_border(input, net_w, net_h, ox, oy, nw, nh, 0.5f);

    /* Scratch: two tap tables, the fractions, and one blended source row. */
    size_t n = (size_t)nw, row = (size_t)w * 3;
    void *mem = malloc(n * (2 * sizeof(int) + sizeof(float)) + row * sizeof(float));
    if (mem == NULL) {
        fill_border(input, net_w, net_h, 0, 0, 0, 0, 0.5f);
        return; /* grey frame: detects nothing, never crashes */
    }
    int *x0 = mem, *x1 = x0 + n;
    float *fx = (float *)(x1 + n), *v = fx + n;
    /* darknet's resize_image is bilinear and maps corners to corners: src = dst * (w - 1) /
     * (nw - 1), the last column/row taking the last source pixel. Bilinear is separable:
     * blending the two source rows first (contiguous bytes, vectorised) and then sampling
     * that row horizontally gives the same values up to float rounding (~1e-7), and the
     * gather, which does not vectorise, runs once per output pixel only. */
    float ws = nw > 1 ? (float)(w - 1) / (nw - 1) : 0;
    float hs = nh > 1 ? (float)(h - 1) / (nh - 1) : 0;
    for (int x = 0; x < nw; x++) {
        float sx = x * ws;
        int ix = (int)sx;
        float dx = sx - ix;
        if (x == nw - 1 || ix >= w - 1) {
            ix = w - 1;
            dx = 0;
        }
        x0[x] = ix * 3;
        x1[x] = (ix + 1 < w ? ix + 1 : ix) * 3;
        fx[x] = dx;
    }
    const float k = 1.0f / 255.0f;
    const size_t plane = (size_t)net_w * net_h;
    for (int y = 0; y < nh; y++) {
        float sy = y * hs;
        int iy = (int)sy;
        float dy = sy - iy;
        float w1 = dy;
        if (iy >= h - 1) {
            iy = h - 1;
            dy = w1 = 0;
        }
        /* darknet's last row takes (1 - dy) of row iy and nothing of the next: when
         * (nh - 1) * hs rounds to just below h - 1 (scream.jpg: 447.99997), that row comes out
         * almost black. The network was fed that by stock darknet, so it is kept. */
        if (y == nh - 1)
            w1 = 0;
        const uint8_t *r0 = rgb + (size_t)iy * row;
        const uint8_t *r1 = iy + 1 < h ? r0 + row : r0;
        vblend(r0, r1, (1 - dy) * k, w1 * k, row, v);
        float *outr = input + (size_t)(y + oy) * net_w + ox;
        float *outg = outr + plane, *outb = outg + plane;
        for (int x = 0; x < nw; x++) {
            const float *p = v + x0[x], *q = v + x1[x];
            float a = fx[x], na = 1 - a;
            outr[x] = na * p[0] + a * q[0];
            outg[x] = na * p[1] + a * q[1];
            outb[x] = na * p[2] + a * q[2];
        }
    }
    free(mem);
}

static int reserve_rgb(be_image_t *im, size_t need)
{
    if (need > im->rgb_cap) {
        uint8_t *p = realloc(im->rgb, need);
        if (p == NULL)
            return PROTO_ENOMEM;
        im->rgb = p;
        im->rgb_cap = need;
    }
    return 0;
}

/* face-api (NetInput.toBatchTensor with isCenterInputs false, then the TinyYolov2 input
 * normalisation) in node: the image is padded with zeros at the bottom/right to a square of
 * side S = max(w, h), and that square is resized to the network's size with tf's
 * resizeBilinear(alignCorners = false, halfPixelCenters = false): src = dst * S / n, taps
 * floor and min(ceil, S - 1). Taps and fractions are computed in double as JavaScript does;
 * the blend is separable (two source rows blended first, vectorised, then one gather per
 * output pixel), equal to tf's across-then-down order up to float rounding (~1e-6).
 * Values are pixel / 255: the converter folded face-api's mean into the first layer. */
void be_image_faceapi_rgb(const uint8_t *rgb, int w, int h, int net_w, int net_h, float *input)
{
    int side = w > h ? w : h;
    size_t plane = (size_t)net_w * net_h, row = (size_t)w * 3;
    /* x taps (byte offsets into a blended row), fractions, and the blended row; a row
     * reaches one pixel past the image, always 0: the padding. */
    void *mem = malloc(sizeof(int) * 2 * (size_t)net_w + sizeof(float) * (size_t)net_w +
                       sizeof(float) * (row + 3));
    if (mem == NULL) {
        for (size_t i = 0; i < plane * 3; i++)
            input[i] = 0;
        return; /* black frame: detects nothing, never crashes */
    }
    int *cx = mem;
    float *fx = (float *)(cx + 2 * net_w), *v = fx + net_w;
    v[row] = v[row + 1] = v[row + 2] = 0;
    double xs = (double)side / net_w, ys = (double)side / net_h;
    for (int x = 0; x < net_w; x++) {
        double sx = xs * x;
        int x0 = (int)floor(sx), x1 = (int)ceil(sx);
        x0 = x0 < side - 1 ? x0 : side - 1;
        x1 = x1 < side - 1 ? x1 : side - 1;
        cx[2 * x] = (x0 < w ? x0 : w) * 3; /* w: the zero pixel */
        cx[2 * x + 1] = (x1 < w ? x1 : w) * 3;
        fx[x] = (float)(sx - floor(sx));
    }
    const float k = 1.0f / 255.0f;
    for (int y = 0; y < net_h; y++) {
        double sy = ys * y;
        int y0 = (int)floor(sy), y1 = (int)ceil(sy);
        y0 = y0 < side - 1 ? y0 : side - 1;
        y1 = y1 < side - 1 ? y1 : side - 1;
        float fy = (float)(sy - floor(sy));
        float *outr = input + (size_t)y * net_w, *outg = outr + plane, *outb = outg + plane;
        if (y0 >= h) { /* wholly inside the bottom padding */
            for (int x = 0; x < net_w; x++)
                outr[x] = outg[x] = outb[x] = 0;
            continue;
        }
        /* A row below the image is padding: its weight goes to zeros. */
        const uint8_t *r0 = rgb + (size_t)y0 * row;
        const uint8_t *r1 = y1 < h ? rgb + (size_t)y1 * row : r0;
        vblend(r0, r1, (1 - fy) * k, y1 < h ? fy * k : 0, row, v);
        for (int x = 0; x < net_w; x++) {
            const float *p = v + cx[2 * x], *q = v + cx[2 * x + 1];
            float a = fx[x], na = 1 - a;
            outr[x] = na * p[0] + a * q[0];
            outg[x] = na * p[1] + a * q[1];
            outb[x] = na * p[2] + a * q[2];
        }
    }
    free(mem);
}

void be_image_faceapi_unmap(int w, int h, int net_w, int net_h, float *x, float *y, float *bw,
                            float *bh)
{
    /* face-api's computeReshapedDimensions and extractBoxes' correction factors: boxes are
     * relative to the resized image inside the square, then scaled by the image size. */
    double sx = (double)net_w / (w > h ? w : h), sy = (double)net_h / (w > h ? w : h);
    double rw = round(w * sx), rh = round(h * sy);
    double kx = net_w / (rw > 0 ? rw : 1) * w, ky = net_h / (rh > 0 ? rh : 1) * h;
    float cx = *x, cy = *y;
    *x = (float)((cx - *bw / 2) * kx);
    *y = (float)((cy - *bh / 2) * ky);
    *bw = (float)(*bw * kx);
    *bh = (float)(*bh * ky);
}

/* Decodes a probed PNG (w x h) to packed RGB8 in im->rgb; alpha is dropped, palette and
 * 16-bit samples are converted by libspng. */
static int png_decode(be_image_t *im, const uint8_t *buf, size_t len, int w, int h, char *err,
                      size_t errcap)
{
    spng_ctx *ctx = png_open(im, buf, len);
    size_t need = 0;
    int e, rv;
    if (ctx == NULL)
        return PROTO_ENOMEM;
    if ((e = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &need)) != 0 ||
        need != (size_t)w * h * 3) {
        rv = PROTO_EIMAGE;
        goto out;
    }
    if ((rv = reserve_rgb(im, need)) != 0)
        goto out;
    e = spng_decode_image(ctx, im->rgb, need, SPNG_FMT_RGB8, 0);
    rv = e == 0 ? 0 : PROTO_EIMAGE;
out:
    if (rv == PROTO_EIMAGE && err != NULL)
        snprintf(err, errcap, "PNG: %s", e != 0 ? spng_strerror(e) : "unexpected size");
    spng_ctx_free(ctx);
    return rv;
}

/* Counts the scans (SOS markers) of the JPEG in buf, stopping once past `limit`: the marker
 * segments are skipped by their lengths and the entropy-coded data by looking for the next
 * 0xFF that starts a marker (0xFF00 is a stuffed byte, 0xFFD0..D7 a restart marker), so this
 * is one memchr pass over the file. Malformed structure ends the count early; the decoder then
 * rejects the file itself. Pure function. */
static int jpeg_count_scans(const uint8_t *buf, size_t len, int limit)
{
    size_t i = 2; /* after SOI */
    int scans = 0;
    while (i + 4 <= len && scans <= limit) {
        if (buf[i] != 0xff)
            break;
        uint8_t m = buf[i + 1];
        if (m == 0xff) { /* fill byte before a marker */
            i++;
            continue;
        }
        if (m == 0xd9) /* EOI */
            break;
        if (m == 0x01 || (m >= 0xd0 && m <= 0xd7)) { /* markers without a length */
            i += 2;
            continue;
        }
        size_t seg = (size_t)buf[i + 2] << 8 | buf[i + 3];
        if (seg < 2)
            break;
        i += 2 + seg;
        if (m != 0xda)
            continue;
        scans++;
        while (i + 1 < len) {
            const uint8_t *p = memchr(buf + i, 0xff, len - i - 1);
            if (p == NULL)
                return scans;
            i = (size_t)(p - buf);
            uint8_t n = buf[i + 1];
            if (n == 0x00 || (n >= 0xd0 && n <= 0xd7))
                i += 2;
            else if (n == 0xff)
                i++;
            else
                break;
        }
    }
    return scans;
}

/* Decodes buf (already probed) at sw x sh into im->rgb with the TurboJPEG `flags` (IDCT and
 * upsampling choices). A PNG is always decoded at its full size (sw x sh must be that size). */
static int decode_into(be_image_t *im, const uint8_t *buf, size_t len, int sw, int sh, int flags,
                       char *err, size_t errcap)
{
    if (sniff(buf, len) == FMT_PNG)
        return png_decode(im, buf, len, sw, sh, err, errcap);
    /* Counted before any decoding: a scan bomb then costs one pass over its bytes. */
    int scans = jpeg_count_scans(buf, len, JPEG_SCANS_MAX);
    if (scans > JPEG_SCANS_MAX) {
        if (err != NULL)
            snprintf(err, errcap, "JPEG: more than %d progressive scans (a scan bomb?)",
                     JPEG_SCANS_MAX);
        return PROTO_EIMAGE;
    }
    int rv = reserve_rgb(im, (size_t)sw * sh * 3);
    if (rv != 0)
        return rv;
    if (jpeg_handle(im) == NULL)
        return PROTO_ENOMEM;
    /* TurboJPEG reports truncated or corrupt scan data as a warning it would otherwise paper
     * over with grey: stop at the first one (a half-missing frame is rejected, not detected,
     * and a corrupt stream costs no more than the bytes before the damage). LIMITSCANS is
     * libjpeg-turbo's own 500-scan limit, behind ours. */
    if (tjDecompress2(im->tj, buf, (unsigned long)len, im->rgb, sw, 0, sh, TJPF_RGB,
                      flags | TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0) {
        jpeg_reset(im);
        if (err != NULL)
            snprintf(err, errcap, "%s", im->err);
        return PROTO_EIMAGE;
    }
    return 0;
}

static void probe_error(be_image_t *im, const uint8_t *buf, size_t len, int rv, char *err,
                        size_t errcap)
{
    if (err == NULL)
        return;
    if (rv == PROTO_EIMAGE && sniff(buf, len) == FMT_JPEG)
        snprintf(err, errcap, "%s", im->err);
    else if (rv == PROTO_EIMAGE)
        snprintf(err, errcap, "PNG: invalid header");
    else if (rv == PROTO_EFORMAT)
        snprintf(err, errcap, "only JPEG and PNG images are accepted");
    else
        err[0] = '\0';
}

int be_image_letterbox(be_image_t *im, const uint8_t *buf, size_t len, be_prep_t mode,
                       be_decode_t decode, int net_w, int net_h, float *input, int *w, int *h,
                       int *dw, int *dh, char *err, size_t errcap)
{
    int ow, oh, nw, nh, sw = 0, sh = 0, rv;
    release_output(im);
    if ((rv = be_image_probe(im, buf, len, &ow, &oh)) != 0) {
        probe_error(im, buf, len, rv, err, errcap);
        return rv;
    }
    /* The default decodes at full size, as the reference pipelines do: their bilinear resize
     * samples the full-size pixels, and an image shrunk by the IDCT (which averages 2x2..8x8
     * blocks) has other pixels there, enough to move a near-threshold score by 0.06.
     * `fast` takes that trade: a 4K frame for a 416x416 network is decoded at 1/4 of its
     * size, most of the decode time saved; the bilinear pass then only shrinks a little. Both
     * modes shrink to the same size: the longer side to the network's. */
    sw = ow;
    sh = oh;
    if (decode == BE_DECODE_FAST && sniff(buf, len) == FMT_JPEG) {
        be_image_letterbox_size(ow, oh, net_w, net_h, &nw, &nh);
        be_image_scaled_size(ow, oh, nw, nh, &sw, &sh);
    }
    rv = decode_into(im, buf, len, sw, sh, jpeg_flags(mode, decode), err, errcap);
    if (rv == 0 && mode == BE_PREP_FACEAPI)
        be_image_faceapi_rgb(im->rgb, sw, sh, net_w, net_h, input);
    else if (rv == 0)
        be_image_letterbox_rgb(im->rgb, sw, sh, net_w, net_h, input);
    release_large(im, is_big(ow, oh));
    if (rv != 0)
        return rv;
    *w = ow;
    *h = oh;
    if (dw != NULL)
        *dw = sw;
    if (dh != NULL)
        *dh = sh;
    return 0;
}

int be_image_decode_rgb(be_image_t *im, const uint8_t *buf, size_t len, uint8_t **rgb, int *w,
                        int *h)
{
    int ow, oh, rv;
    release_output(im);
    if ((rv = be_image_probe(im, buf, len, &ow, &oh)) != 0)
        return rv;
    if ((rv = decode_into(im, buf, len, ow, oh, jpeg_flags(BE_PREP_DARKNET, BE_DECODE_EXACT), NULL,
                          0)) == 0) {
        size_t n = (size_t)ow * oh * 3;
        if ((*rgb = malloc(n)) != NULL)
            memcpy(*rgb, im->rgb, n);
        else
            rv = PROTO_ENOMEM;
    }
    release_large(im, is_big(ow, oh));
    if (rv != 0)
        return rv;
    *w = ow;
    *h = oh;
    return 0;
}

static void fill_rect(uint8_t *rgb, int w, int x0, int y0, int x1, int y1, const uint8_t *c)
{
    for (int y = y0; y < y1; y++) {
        uint8_t *p = rgb + ((size_t)y * w + x0) * 3;
        for (int x = x0; x < x1; x++, p += 3) {
            p[0] = c[0];
            p[1] = c[1];
            p[2] = c[2];
        }
    }
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Loads darknet's glyphs of one size (0..7) once; 1 if they are there, 0 if not. darknet's
 * loader exit()s on a missing file, so every file is checked before it is handed over. */
static int glyphs_ready(be_image_t *im, int z)
{
    if (im->glyphs_state[z] != 0)
        return im->glyphs_state[z] == 1;
    char path[512];
    im->glyphs_state[z] = -1;
    for (int i = 0; i < GLYPH_COUNT; i++) {
        snprintf(path, sizeof path, "%s/data/labels/%d_%d.png", FG_DARKNET_SHARE, GLYPH_FIRST + i,
                 z);
        if (access(path, R_OK) != 0)
            return 0;
    }
    for (int i = 0; i < GLYPH_COUNT; i++) {
        snprintf(path, sizeof path, "%s/data/labels/%d_%d.png", FG_DARKNET_SHARE, GLYPH_FIRST + i,
                 z);
        im->glyphs[z][i] = load_image_color(path, 0, 0);
    }
    im->glyphs_state[z] = 1;
    return 1;
}

/* Draws `text` at (x, y) (top-left of the label, moved inside the image) the way darknet's
 * draw_label does: the glyphs are black on white, so each pixel is colour * glyph value,
 * which gives black text on a box of the class colour. Returns the label's height. */
static int glyph_size(int h)
{
    /* darknet picks the glyph size from the image height: size = h * 0.03 / 10. */
    int z = (int)(h * .03f) / 10;
    return z < 0 ? 0 : z >= GLYPH_SIZES ? GLYPH_SIZES - 1 : z;
}

/* Height of a label drawn on an image h pixels high; 0 without glyphs. */
static int label_height(be_image_t *im, int h)
{
    int z = glyph_size(h);
    if (!glyphs_ready(im, z))
        return 0;
    int gh = im->glyphs[z][0].h;
    return gh + 2 * (gh / 4);
}

static int draw_text(be_image_t *im, int w, int h, int x, int y, const char *text,
                     const uint8_t *c)
{
    int z = glyph_size(h);
    if (!glyphs_ready(im, z))
        return 0;
    int gh = im->glyphs[z][0].h, pad = gh / 4, tw = 2 * pad;
    for (const char *p = text; *p; p++) {
        int g = (unsigned char)*p - GLYPH_FIRST;
        tw += im->glyphs[z][g >= 0 && g < GLYPH_COUNT ? g : 0].w;
    }
    int th = gh + 2 * pad;
    x = clampi(x, 0, w > tw ? w - tw : 0);
    y = clampi(y, 0, h > th ? h - th : 0);
    fill_rect(im->rgb, w, x, y, clampi(x + tw, x, w), clampi(y + th, y, h), c);
    int cx = x + pad;
    for (const char *p = text; *p; p++) {
        int g = (unsigned char)*p - GLYPH_FIRST;
        const image *gl = &im->glyphs[z][g >= 0 && g < GLYPH_COUNT ? g : 0];
        for (int j = 0; j < gl->h && y + pad + j < h; j++) {
            uint8_t *row = im->rgb + ((size_t)(y + pad + j) * w) * 3;
            for (int i = 0; i < gl->w && cx + i < w; i++)
                for (int k = 0; k < 3; k++) {
                    float v = gl->data[(size_t)k * gl->w * gl->h + (size_t)j * gl->w + i];
                    v = v < 0 ? 0 : v > 1 ? 1 : v;
                    row[(size_t)(cx + i) * 3 + k] = (uint8_t)(c[k] * v + 0.5f);
                }
        }
        cx += gl->w;
    }
    return th;
}

int be_image_annotate(be_image_t *im, const uint8_t *buf, size_t len, const proto_det_t *dets,
                      int n, const uint8_t **out, size_t *outlen)
{
    static const uint8_t palette[6][3] = {{255, 56, 56}, {56, 255, 56}, {56, 56, 255},
                                          {255, 255, 0}, {255, 0, 255}, {0, 255, 255}};
    int w, h, rv;
    release_output(im);
    if ((rv = be_image_probe(im, buf, len, &w, &h)) != 0)
        return rv;
    /* Only drawn on and re-encoded at quality 85: the fast IDCT is good enough. */
    if ((rv = decode_into(im, buf, len, w, h, TJFLAG_FASTDCT, NULL, 0)) != 0) {
        release_large(im, is_big(w, h));
        return rv;
    }
    int t = (w < h ? w : h) / 250;
    if (t < 2)
        t = 2;
    int line_y = 0; /* next free line for classifier labels */
    for (int i = 0; i < n; i++) {
        const uint8_t *c = palette[(unsigned)dets[i].class_id % 6];
        char text[PROTO_LABEL_MAX + 16];
        snprintf(text, sizeof text, "%.*s %d%%", (int)dets[i].label_len,
                 dets[i].label != NULL ? dets[i].label : "", (int)(dets[i].confidence * 100 + 0.5f));
        if (dets[i].w <= 0 && dets[i].h <= 0) {
            line_y += draw_text(im, w, h, 0, line_y, text, c);
            continue;
        }
        /* Boxes are already clamped to the image; clamp again as ints so no rounding can
         * step outside the buffer. */
        int x0 = clampi((int)dets[i].x, 0, w), y0 = clampi((int)dets[i].y, 0, h);
        int x1 = clampi((int)(dets[i].x + dets[i].w + 0.5f), 0, w);
        int y1 = clampi((int)(dets[i].y + dets[i].h + 0.5f), 0, h);
        if (x1 <= x0 || y1 <= y0)
            continue;
        fill_rect(im->rgb, w, x0, y0, x1, clampi(y0 + t, y0, y1), c);
        fill_rect(im->rgb, w, x0, clampi(y1 - t, y0, y1), x1, y1, c);
        fill_rect(im->rgb, w, x0, y0, clampi(x0 + t, x0, x1), y1, c);
        fill_rect(im->rgb, w, clampi(x1 - t, x0, x1), y0, x1, y1, c);
        /* The label sits on the box's top edge, above it when there is room (as darknet). */
        draw_text(im, w, h, x0, y0 - label_height(im, h), text, c);
    }
    tjFree(im->jpeg);
    im->jpeg = NULL;
    im->jpeg_len = 0;
    unsigned long jlen = 0;
    if (im->tjc == NULL)
        im->tjc = tjInitCompress();
    if (im->tjc == NULL) {
        rv = PROTO_ENOMEM;
    } else if (tjCompress2(im->tjc, im->rgb, w, 0, h, TJPF_RGB, &im->jpeg, &jlen, TJSAMP_420,
                           85, TJFLAG_FASTDCT) != 0) {
        /* The same rule as for the decompressor: a handle that failed is not reused. */
        tjDestroy(im->tjc);
        im->tjc = NULL;
        tjFree(im->jpeg);
        im->jpeg = NULL;
        rv = PROTO_ENOMEM;
    }
    release_large(im, is_big(w, h));
    if (rv != 0)
        return rv;
    im->jpeg_len = jlen;
    *out = im->jpeg;
    *outlen = jlen;
    return 0;
}
