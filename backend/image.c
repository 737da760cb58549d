#include "image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "err.h"

/* Column taps up to this width live on the stack: no allocation per frame. */
#define TAPS_STACK 4096

struct be_image {
    tjhandle tj;  /* decompressor */
    tjhandle tjc; /* compressor, created on the first annotated output */
    be_image_limits_t limits;
    uint8_t *rgb; /* decode buffer, grown as needed and kept */
    size_t rgb_cap;
    unsigned char *jpeg; /* last annotated output (tjAlloc'd) */
};

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
    tjDestroy(im->tj);
    if (im->tjc != NULL)
        tjDestroy(im->tjc);
    tjFree(im->jpeg);
    free(im->rgb);
    free(im);
}

int be_image_probe(be_image_t *im, const uint8_t *buf, size_t len, int *w, int *h)
{
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    int subsamp, colorspace;
    if (len == 0 || buf == NULL)
        return PROTO_EEMPTY;
    if (len >= 8 && memcmp(buf, png_magic, 8) == 0)
        return PROTO_EFORMAT;
    /* SOI marker first: anything else is not ours to hand to libjpeg. */
    if (len < 4 || buf[0] != 0xff || buf[1] != 0xd8)
        return PROTO_EIMAGE;
    /* TurboJPEG answers a header cut short before its SOF ("tables only") with success and
     * leaves the size untouched: start from 0 so that is rejected below. */
    *w = 0;
    *h = 0;
    if (len > (size_t)0x7fffffff ||
        tjDecompressHeader3(im->tj, buf, (unsigned long)len, w, h, &subsamp, &colorspace) != 0)
        return PROTO_EIMAGE;
    if (*w <= 0 || *h <= 0)
        return PROTO_EIMAGE;
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

void be_image_letterbox_rgb(const uint8_t *rgb, int w, int h, int net_w, int net_h, float *input)
{
    int nw, nh;
    be_image_letterbox_size(w, h, net_w, net_h, &nw, &nh);
    if (nw > net_w)
        nw = net_w;
    if (nh > net_h)
        nh = net_h;
    size_t plane = (size_t)net_w * net_h;
    for (size_t i = 0; i < plane * 3; i++)
        input[i] = 0.5f;
    int ox = (net_w - nw) / 2, oy = (net_h - nh) / 2;

    int xs_stack[TAPS_STACK];
    float fs_stack[TAPS_STACK];
    int *xs = xs_stack;
    float *fs = fs_stack;
    if (nw > TAPS_STACK) {
        xs = malloc(sizeof(int) * (size_t)nw);
        fs = malloc(sizeof(float) * (size_t)nw);
        if (xs == NULL || fs == NULL) {
            free(xs);
            free(fs);
            return; /* grey frame: detects nothing, never crashes */
        }
    }
    /* darknet's resize_image maps corners to corners: src = dst * (src_n - 1) / (dst_n - 1),
     * the last column/row taking the last source pixel. Taps are clamped so float rounding
     * can never read one pixel past the row. */
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
        xs[x] = ix;
        fs[x] = dx;
    }
    const float k = 1.0f / 255.0f;
    const size_t stride = (size_t)w * 3;
    for (int y = 0; y < nh; y++) {
        float sy = y * hs;
        int iy = (int)sy;
        float dy = sy - iy;
        if (y == nh - 1 || iy >= h - 1) {
            iy = h - 1;
            dy = 0;
        }
        const uint8_t *r0 = rgb + (size_t)iy * stride;
        const uint8_t *r1 = iy + 1 < h ? r0 + stride : r0;
        size_t o = (size_t)(y + oy) * net_w + ox;
        float *outr = input + o, *outg = outr + plane, *outb = outg + plane;
        float wy0 = (1 - dy) * k, wy1 = dy * k;
        for (int x = 0; x < nw; x++) {
            int i0 = xs[x] * 3, i1 = (xs[x] + 1 < w ? xs[x] + 1 : xs[x]) * 3;
            float a = fs[x], b = 1 - a;
            outr[x] = wy0 * (b * r0[i0] + a * r0[i1]) + wy1 * (b * r1[i0] + a * r1[i1]);
            outg[x] =
                wy0 * (b * r0[i0 + 1] + a * r0[i1 + 1]) + wy1 * (b * r1[i0 + 1] + a * r1[i1 + 1]);
            outb[x] =
                wy0 * (b * r0[i0 + 2] + a * r0[i1 + 2]) + wy1 * (b * r1[i0 + 2] + a * r1[i1 + 2]);
        }
    }
    if (xs != xs_stack) {
        free(xs);
        free(fs);
    }
}

/* Decodes buf (already probed) at sw x sh into im->rgb. */
static int decode_into(be_image_t *im, const uint8_t *buf, size_t len, int sw, int sh, char *err,
                       size_t errcap)
{
    size_t need = (size_t)sw * sh * 3;
    if (need > im->rgb_cap) {
        uint8_t *p = realloc(im->rgb, need);
        if (p == NULL)
            return PROTO_ENOMEM;
        im->rgb = p;
        im->rgb_cap = need;
    }
    if (tjDecompress2(im->tj, buf, (unsigned long)len, im->rgb, sw, 0, sh, TJPF_RGB,
                      TJFLAG_FASTDCT) != 0) {
        /* TurboJPEG reports truncated or corrupt scan data too (as a warning it would
         * otherwise paper over with grey): a half-missing frame is rejected, not detected. */
        if (err != NULL)
            snprintf(err, errcap, "%s", tjGetErrorStr2(im->tj));
        return PROTO_EIMAGE;
    }
    return 0;
}

static void probe_error(be_image_t *im, int rv, char *err, size_t errcap)
{
    if (err != NULL)
        snprintf(err, errcap, "%s", rv == PROTO_EIMAGE ? tjGetErrorStr2(im->tj) : "");
}

int be_image_letterbox(be_image_t *im, const uint8_t *buf, size_t len, int net_w, int net_h,
                       float *input, int *w, int *h, int *dw, int *dh, char *err, size_t errcap)
{
    int ow, oh, nw, nh, sw, sh, rv;
    if ((rv = be_image_probe(im, buf, len, &ow, &oh)) != 0) {
        probe_error(im, rv, err, errcap);
        return rv;
    }
    /* DCT scaling: a 4K frame for a 416x416 network is decoded at 1/4 of its size, which
     * is most of the decode time saved; the bilinear pass then only shrinks a little. */
    be_image_letterbox_size(ow, oh, net_w, net_h, &nw, &nh);
    be_image_scaled_size(ow, oh, nw, nh, &sw, &sh);
    if ((rv = decode_into(im, buf, len, sw, sh, err, errcap)) != 0)
        return rv;
    be_image_letterbox_rgb(im->rgb, sw, sh, net_w, net_h, input);
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
    if ((rv = be_image_probe(im, buf, len, &ow, &oh)) != 0)
        return rv;
    if ((rv = decode_into(im, buf, len, ow, oh, NULL, 0)) != 0)
        return rv;
    size_t n = (size_t)ow * oh * 3;
    *rgb = malloc(n);
    if (*rgb == NULL)
        return PROTO_ENOMEM;
    memcpy(*rgb, im->rgb, n);
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

int be_image_annotate(be_image_t *im, const uint8_t *buf, size_t len, const proto_det_t *dets,
                      int n, const uint8_t **out, size_t *outlen)
{
    static const uint8_t palette[6][3] = {{255, 56, 56}, {56, 255, 56}, {56, 56, 255},
                                          {255, 255, 0}, {255, 0, 255}, {0, 255, 255}};
    int w, h, rv;
    if ((rv = be_image_probe(im, buf, len, &w, &h)) != 0)
        return rv;
    if ((rv = decode_into(im, buf, len, w, h, NULL, 0)) != 0)
        return rv;
    int t = (w < h ? w : h) / 250;
    if (t < 2)
        t = 2;
    for (int i = 0; i < n; i++) {
        const uint8_t *c = palette[(unsigned)dets[i].class_id % 6];
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
    }
    if (im->tjc == NULL && (im->tjc = tjInitCompress()) == NULL)
        return PROTO_ENOMEM;
    tjFree(im->jpeg);
    im->jpeg = NULL;
    unsigned long jlen = 0;
    if (tjCompress2(im->tjc, im->rgb, w, 0, h, TJPF_RGB, &im->jpeg, &jlen, TJSAMP_420, 85,
                    TJFLAG_FASTDCT) != 0)
        return PROTO_ENOMEM;
    *out = im->jpeg;
    *outlen = jlen;
    return 0;
}
