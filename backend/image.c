/* Images in and out: sniffing and probing JPEG/PNG against the limits, decoding them
 * (TurboJPEG, or libjpeg in bands at once with threads: image_jpeg.c; libspng) into a
 * reused RGB buffer, then the network input (the resize itself is
 * in image_resize.c), and the annotated JPEG (boxes and darknet's label font). A be_image_t
 * belongs to the backend's one serving thread. */
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
    int threads;           /* of the decode and the resize (be_image_set_threads) */
    be_jpeg_split_t split; /* what split JPEG decodes learnt (be_jpeg_decode_split) */
    uint8_t *rgb;          /* decode buffer, grown as needed and kept up to BE_IMAGE_KEEP_MAX */
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
    im->threads = 1;
    *out = im;
    return 0;
}

void be_image_set_threads(be_image_t *im, int threads)
{
    im->threads = threads > 0 ? threads : 1;
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
void be_image_scaled_size(int w, int h, int want_w, int want_h, int *sw, int *sh)
{
    int n;
    *sw = w;
    *sh = h;
    tjscalingfactor *sf = tjGetScalingFactors(&n);
    for (int i = 0; sf != NULL && i < n; i++) {
        /* Only 1/2, 1/4 and 1/8: upscaled decodes cost time and add nothing, and libjpeg-turbo
         * 2.1's other reduced IDCTs (7/8 .. 3/8) have no SIMD code: on dog.jpg 7/8 took 3.05 ms,
         * 3/4 2.50 and 5/8 2.18 against 2.19 at full size (fast IDCT), 1/2 1.66. */
        if (sf[i].num != 1 || sf[i].denom < 2)
            continue;
        int x = TJSCALED(w, sf[i]), y = TJSCALED(h, sf[i]);
        if (x >= want_w && y >= want_h && (uint64_t)x * y < (uint64_t)*sw * *sh) {
            *sw = x;
            *sh = y;
        }
    }
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
    /* Not a split file (or a damaged one): TurboJPEG on this thread, which also gives the
     * error's message. */
    if (im->threads > 1 && be_jpeg_split_worth(sw, sh) &&
        be_jpeg_decode_split(buf, len, im->rgb, sw, sh, flags, im->threads, &im->split) >= 2)
        return 0;
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
        be_image_faceapi_rgb(im->rgb, sw, sh, net_w, net_h, input, im->threads);
    else if (rv == 0)
        be_image_letterbox_rgb(im->rgb, sw, sh, net_w, net_h, input, im->threads);
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

static int draw_text(be_image_t *im, int w, int h, int x, int y, const char *text, const uint8_t *c)
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
                 dets[i].label != NULL ? dets[i].label : "",
                 (int)(dets[i].confidence * 100 + 0.5f));
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
    } else if (tjCompress2(im->tjc, im->rgb, w, 0, h, TJPF_RGB, &im->jpeg, &jlen, TJSAMP_420, 85,
                           TJFLAG_FASTDCT) != 0) {
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
