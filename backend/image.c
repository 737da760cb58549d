#include "image.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "err.h"

struct be_image {
    tjhandle tj;
    be_image_limits_t limits;
    uint8_t *rgb; /* decode buffer, grown as needed and kept */
    size_t rgb_cap;
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
    free(im->rgb);
    free(im);
}

int be_image_probe(be_image_t *im, const uint8_t *buf, size_t len, int *w, int *h)
{
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    int subsamp, colorspace;
    if (len == 0)
        return PROTO_EEMPTY;
    if (len >= 8 && memcmp(buf, png_magic, 8) == 0)
        return PROTO_EFORMAT;
    if (len < 4 || buf[0] != 0xff || buf[1] != 0xd8)
        return PROTO_EIMAGE;
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

/* darknet's letterbox_image: the scaled size that fits net_w x net_h, aspect kept. */
static void letterbox_size(int w, int h, int net_w, int net_h, int *nw, int *nh)
{
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

void be_image_letterbox_rgb(const uint8_t *rgb, int w, int h, int net_w, int net_h,
                            float *input)
{
    int nw, nh;
    letterbox_size(w, h, net_w, net_h, &nw, &nh);
    size_t plane = (size_t)net_w * net_h;
    for (size_t i = 0; i < plane * 3; i++)
        input[i] = 0.5f;
    int dx = (net_w - nw) / 2, dy = (net_h - nh) / 2;
    float sx = (float)w / nw, sy = (float)h / nh;

    /* Column taps computed once per frame; rows are interpolated as we go. */
    int *x0 = malloc(sizeof(int) * (size_t)nw);
    float *fx = malloc(sizeof(float) * (size_t)nw);
    if (x0 == NULL || fx == NULL) {
        free(x0);
        free(fx);
        return;
    }
    for (int x = 0; x < nw; x++) {
        float src = (x + 0.5f) * sx - 0.5f;
        if (src < 0)
            src = 0;
        int i = (int)src;
        if (i >= w - 1) {
            i = w - 1;
            src = (float)i;
        }
        x0[x] = i;
        fx[x] = src - i;
    }
    const float k = 1.0f / 255.0f;
    for (int y = 0; y < nh; y++) {
        float src = (y + 0.5f) * sy - 0.5f;
        if (src < 0)
            src = 0;
        int j = (int)src;
        if (j >= h - 1) {
            j = h - 1;
            src = (float)j;
        }
        float fy = src - j;
        const uint8_t *r0 = rgb + (size_t)j * w * 3;
        const uint8_t *r1 = j + 1 < h ? r0 + (size_t)w * 3 : r0;
        size_t o = (size_t)(y + dy) * net_w + dx;
        float *outr = input + o, *outg = input + plane + o, *outb = input + 2 * plane + o;
        for (int x = 0; x < nw; x++) {
            int i = x0[x];
            int i1 = i + 1 < w ? i + 1 : i;
            float a = fx[x];
            const uint8_t *p00 = r0 + i * 3, *p01 = r0 + i1 * 3;
            const uint8_t *p10 = r1 + i * 3, *p11 = r1 + i1 * 3;
            float w00 = (1 - a) * (1 - fy), w01 = a * (1 - fy), w10 = (1 - a) * fy, w11 = a * fy;
            outr[x] = (p00[0] * w00 + p01[0] * w01 + p10[0] * w10 + p11[0] * w11) * k;
            outg[x] = (p00[1] * w00 + p01[1] * w01 + p10[1] * w10 + p11[1] * w11) * k;
            outb[x] = (p00[2] * w00 + p01[2] * w01 + p10[2] * w10 + p11[2] * w11) * k;
        }
    }
    free(x0);
    free(fx);
}

static int decode(be_image_t *im, const uint8_t *buf, size_t len, int want_w, int want_h,
                  int *dw, int *dh, char *err, size_t errcap)
{
    int w, h, n, rv;
    if ((rv = be_image_probe(im, buf, len, &w, &h)) != 0) {
        if (err)
            snprintf(err, errcap, "%s", rv == PROTO_EIMAGE ? tjGetErrorStr2(im->tj) : "");
        return rv;
    }
    /* DCT scaling: the smallest libjpeg-turbo scale that still covers the wanted size, so
     * a 4K frame is decoded at 1/4 or 1/8 of its pixels for a 416x416 network. */
    int best_w = w, best_h = h;
    tjscalingfactor *sf = tjGetScalingFactors(&n);
    for (int i = 0; sf != NULL && i < n; i++) {
        int sw = TJSCALED(w, sf[i]), sh = TJSCALED(h, sf[i]);
        if (sw >= want_w && sh >= want_h && (uint64_t)sw * sh < (uint64_t)best_w * best_h) {
            best_w = sw;
            best_h = sh;
        }
    }
    size_t need = (size_t)best_w * best_h * 3;
    if (need > im->rgb_cap) {
        uint8_t *p = realloc(im->rgb, need);
        if (p == NULL)
            return PROTO_ENOMEM;
        im->rgb = p;
        im->rgb_cap = need;
    }
    if (tjDecompress2(im->tj, buf, (unsigned long)len, im->rgb, best_w, 0, best_h, TJPF_RGB,
                      TJFLAG_FASTDCT) != 0) {
        /* Truncated or corrupt scan data: libjpeg would fill grey and warn. A camera frame
         * that is half missing is rejected rather than detected on. */
        if (err)
            snprintf(err, errcap, "%s", tjGetErrorStr2(im->tj));
        return PROTO_EIMAGE;
    }
    *dw = best_w;
    *dh = best_h;
    return 0;
}

int be_image_letterbox(be_image_t *im, const uint8_t *buf, size_t len, int net_w, int net_h,
                       float *input, int *w, int *h, char *err, size_t errcap)
{
    int ow, oh, nw, nh, dw, dh, rv;
    if ((rv = be_image_probe(im, buf, len, &ow, &oh)) != 0) {
        if (err)
            snprintf(err, errcap, "%s", rv == PROTO_EIMAGE ? tjGetErrorStr2(im->tj) : "");
        return rv;
    }
    letterbox_size(ow, oh, net_w, net_h, &nw, &nh);
    if ((rv = decode(im, buf, len, nw, nh, &dw, &dh, err, errcap)) != 0)
        return rv;
    be_image_letterbox_rgb(im->rgb, dw, dh, net_w, net_h, input);
    *w = ow;
    *h = oh;
    return 0;
}

int be_image_decode_rgb(be_image_t *im, const uint8_t *buf, size_t len, uint8_t **rgb, int *w,
                        int *h)
{
    int ow, oh, dw, dh, rv;
    if ((rv = be_image_probe(im, buf, len, &ow, &oh)) != 0)
        return rv;
    if ((rv = decode(im, buf, len, ow, oh, &dw, &dh, NULL, 0)) != 0)
        return rv;
    size_t n = (size_t)dw * dh * 3;
    *rgb = malloc(n);
    if (*rgb == NULL)
        return PROTO_ENOMEM;
    memcpy(*rgb, im->rgb, n);
    *w = dw;
    *h = dh;
    return 0;
}
