/* Frame decoding: sizes, the exact decode against darknet's own loader + letterbox, DCT-scaled
 * (fast) decode of large frames, letterbox geometry against darknet's own letterbox_image, and
 * every kind of bad input. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <darknet.h>
#include <jpeglib.h>
#include <spng.h>
#include <turbojpeg.h>

#include "err.h"
#include "image.h"

static uint8_t *read_file_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static be_image_t *make(void)
{
    be_image_t *im;
    be_image_limits_t lim = {.max_pixels = 64000000, .max_side = 16384};
    assert_int_equal(be_image_create(&im, lim), 0);
    return im;
}

static void test_probe_and_errors(void **state)
{
    (void)state;
    be_image_t *im = make();
    size_t len;
    uint8_t *dog = read_file_all(FG_DARKNET_DATA "/dog.jpg", &len);
    int w, h;
    assert_int_equal(be_image_probe(im, dog, len, &w, &h), 0);
    assert_int_equal(w, 768);
    assert_int_equal(h, 576);
    assert_int_equal(be_image_probe(im, dog, 0, &w, &h), PROTO_EEMPTY);
    /* A PNG signature with a broken header is a bad image; anything that is neither JPEG
     * nor PNG is an unsupported format. */
    const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0};
    assert_int_equal(be_image_probe(im, png, sizeof png, &w, &h), PROTO_EIMAGE);
    const uint8_t junk[] = "definitely not an image";
    assert_int_equal(be_image_probe(im, junk, sizeof junk, &w, &h), PROTO_EFORMAT);
    const uint8_t gif[] = "GIF89a\x01\x00\x01\x00";
    assert_int_equal(be_image_probe(im, gif, sizeof gif, &w, &h), PROTO_EFORMAT);

    float *input = malloc(sizeof(float) * 3 * 416 * 416);
    char err[256];
    /* Truncated anywhere: an error, never a crash; a heap copy of exactly `cut` bytes lets
     * ASan see any over-read. */
    size_t cuts[] = {2, 3, 10, 100, 600, 2000, len / 2, len - 10, len - 2};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        uint8_t *p = malloc(cuts[i]);
        memcpy(p, dog, cuts[i]);
        /* Garbage in the outputs first: a cut header must not leave them as they were. */
        w = h = 0x7fffffff;
        assert_true(be_image_probe(im, p, cuts[i], &w, &h) != 0 || cuts[i] > 600);
        w = h = 0x7fffffff;
        int rv = be_image_letterbox(im, p, cuts[i], BE_PREP_DARKNET, BE_DECODE_EXACT, 416, 416,
                                    input, &w, &h, NULL, NULL, err, sizeof err);
        assert_int_equal(rv, PROTO_EIMAGE);
        free(p);
    }
    /* Random bytes after a JPEG marker. */
    srand(7);
    for (int i = 0; i < 200; i++) {
        size_t n = 4 + (size_t)(rand() % 3000);
        uint8_t *p = malloc(n);
        for (size_t j = 0; j < n; j++)
            p[j] = (uint8_t)rand();
        p[0] = 0xff;
        p[1] = 0xd8;
        int rv = be_image_letterbox(im, p, n, BE_PREP_DARKNET, BE_DECODE_EXACT, 416, 416, input, &w,
                                    &h, NULL, NULL, err, sizeof err);
        assert_true(rv == PROTO_EIMAGE || rv == PROTO_EIMGSIZE);
        /* Without the SOI marker it is not even looked at. */
        p[0] = 0x12;
        assert_int_equal(be_image_probe(im, p, n, &w, &h), PROTO_EFORMAT);
        free(p);
    }
    /* Limits are checked from the header, before decoding. */
    be_image_t *small;
    be_image_limits_t lim = {.max_pixels = 1000, .max_side = 16384};
    assert_int_equal(be_image_create(&small, lim), 0);
    assert_int_equal(be_image_probe(small, dog, len, &w, &h), PROTO_EIMGSIZE);
    assert_int_equal(be_image_letterbox(small, dog, len, BE_PREP_DARKNET, BE_DECODE_EXACT, 416, 416,
                                        input, &w, &h, NULL, NULL, err, sizeof err),
                     PROTO_EIMGSIZE);
    be_image_destroy(small);
    lim = (be_image_limits_t){.max_pixels = 64000000, .max_side = 767};
    assert_int_equal(be_image_create(&small, lim), 0);
    assert_int_equal(be_image_probe(small, dog, len, &w, &h), PROTO_EIMGSIZE);
    be_image_destroy(small);
    assert_int_equal(be_image_letterbox(im, NULL, 0, BE_PREP_DARKNET, BE_DECODE_EXACT, 416, 416,
                                        input, &w, &h, NULL, NULL, err, sizeof err),
                     PROTO_EEMPTY);
    free(input);
    free(dog);
    be_image_destroy(im);
}

/* The fused letterbox matches darknet's letterbox_image on the same pixels. */
static void test_letterbox_matches_darknet(void **state)
{
    (void)state;
    be_image_t *im = make();
    size_t len;
    uint8_t *dog = read_file_all(FG_DARKNET_DATA "/dog.jpg", &len);
    uint8_t *rgb;
    int w, h;
    assert_int_equal(be_image_decode_rgb(im, dog, len, &rgb, &w, &h), 0);
    assert_int_equal(w, 768);

    image src = make_image(w, h, 3);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                src.data[c * w * h + y * w + x] = rgb[(y * w + x) * 3 + c] / 255.0f;
    image ref = letterbox_image(src, 416, 416);
    float *mine = malloc(sizeof(float) * 3 * 416 * 416);
    be_image_letterbox_rgb(rgb, w, h, 416, 416, mine, 1);
    double sum = 0, maxd = 0;
    int grey = 0, grey_ref = 0;
    for (int i = 0; i < 3 * 416 * 416; i++) {
        double d = mine[i] > ref.data[i] ? mine[i] - ref.data[i] : ref.data[i] - mine[i];
        sum += d;
        if (d > maxd)
            maxd = d;
        grey += mine[i] == 0.5f;
        grey_ref += ref.data[i] == 0.5f;
    }
    double mean = sum / (3 * 416 * 416);
    print_message("letterbox vs darknet: mean |diff| %.7f, max %.7f\n", mean, maxd);
    /* Same geometry (the grey bands match exactly) and the same sampling as darknet's
     * two-pass resize_image: only float rounding differs. */
    assert_int_equal(grey, grey_ref);
    assert_true(grey == 3 * 416 * (416 - 312));
    assert_true(maxd < 1e-4);

    /* The fast decode path gives nearly the same input as the exact full-size one. */
    float *direct = malloc(sizeof(float) * 3 * 416 * 416);
    char err[128];
    int ow, oh;
    int dw, dh;
    assert_int_equal(be_image_letterbox(im, dog, len, BE_PREP_DARKNET, BE_DECODE_FAST, 416, 416,
                                        direct, &ow, &oh, &dw, &dh, err, sizeof err),
                     0);
    assert_int_equal(ow, 768);
    assert_int_equal(oh, 576);
    /* 768x576 -> 416x312 inside the network: 1/2 (384x288) would be upscaled, and 5/8
     * (480x360) decodes no faster than full size: full size, with the fast IDCT. */
    assert_int_equal(dw, 768);
    assert_int_equal(dh, 576);
    sum = 0;
    for (int i = 0; i < 3 * 416 * 416; i++)
        sum += direct[i] > mine[i] ? direct[i] - mine[i] : mine[i] - direct[i];
    print_message("fast decode vs exact decode: mean |diff| %.5f\n", sum / (3 * 416 * 416));
    assert_true(sum / (3 * 416 * 416) < 0.01);
    free(direct);
    free(mine);
    free_image(src);
    free_image(ref);
    free(rgb);
    free(dog);
    be_image_destroy(im);
}

/* The default (exact) decode gives the network what stock darknet's own pipeline gives it:
 * load_image_color (OpenCV's imread: libjpeg's accurate IDCT and smooth upsampling) then
 * letterbox_image, on darknet's photos of several sizes; only decoder rounding may differ.
 * The fast decode (DCT-scaled) is measurably further away on the frames it scales. */
static void test_exact_is_darknets_pipeline(void **state)
{
    (void)state;
    static const char *const photos[] = {"dog.jpg", "person.jpg", "kite.jpg", "scream.jpg",
                                         "eagle.jpg"};
    be_image_t *im = make();
    float *in = malloc(sizeof(float) * 3 * 416 * 416);
    assert_non_null(in);
    char path[512], err[256];
    for (size_t p = 0; p < sizeof photos / sizeof photos[0]; p++) {
        snprintf(path, sizeof path, "%s/%s", FG_DARKNET_DATA, photos[p]);
        size_t len;
        uint8_t *jpg = read_file_all(path, &len);
        image src = load_image_color(path, 0, 0);
        image ref = letterbox_image(src, 416, 416);
        double mean[2], maxd[2];
        int dw[2], dh[2], w, h;
        for (int d = 0; d < 2; d++) {
            assert_int_equal(be_image_letterbox(im, jpg, len, BE_PREP_DARKNET,
                                                d ? BE_DECODE_FAST : BE_DECODE_EXACT, 416, 416, in,
                                                &w, &h, &dw[d], &dh[d], err, sizeof err),
                             0);
            assert_int_equal(w, src.w);
            assert_int_equal(h, src.h);
            double sum = 0, mx = 0;
            for (int i = 0; i < 3 * 416 * 416; i++) {
                double v = fabs((double)in[i] - ref.data[i]);
                sum += v;
                mx = v > mx ? v : mx;
            }
            mean[d] = sum / (3 * 416 * 416);
            maxd[d] = mx;
        }
        print_message("%-10s %dx%d: exact (decoded %dx%d) vs darknet mean |diff| %.6f max %.4f; "
                      "fast (decoded %dx%d) mean %.6f max %.4f\n",
                      photos[p], w, h, dw[0], dh[0], mean[0], maxd[0], dw[1], dh[1], mean[1],
                      maxd[1]);
        assert_int_equal(dw[0], w); /* exact: always the full size */
        assert_int_equal(dh[0], h);
        /* darknet's imread is OpenCV's, on the same libjpeg-turbo: the same pixels, and the
         * same resize up to float rounding (darknet's last-row quirk included). */
        assert_true(maxd[0] < 1e-4);
        assert_true(mean[0] < 1e-6);
        if (dw[1] < w) /* a scaled decode sees other pixels */
            assert_true(mean[1] > 2 * mean[0]);
        free_image(ref);
        free_image(src);
        free(jpg);
    }
    assert_int_equal(be_decode_parse("exact"), BE_DECODE_EXACT);
    assert_int_equal(be_decode_parse("fast"), BE_DECODE_FAST);
    assert_int_equal(be_decode_parse("Fast"), -1);
    assert_int_equal(be_decode_parse(NULL), -1);
    assert_string_equal(be_decode_name(BE_DECODE_FAST), "fast");
    assert_string_equal(be_decode_name(BE_DECODE_EXACT), "exact");
    free(in);
    be_image_destroy(im);
}

/* A large frame (dog.jpg upscaled 4x and re-encoded) is decoded (fast) with DCT scaling at 1/4,
 * gives the original size back, and the network sees nearly what it sees for dog.jpg. */
static void test_big_frame_scaled(void **state)
{
    (void)state;
    be_image_t *im = make();
    size_t len;
    uint8_t *dog = read_file_all(FG_DARKNET_DATA "/dog.jpg", &len);
    uint8_t *rgb;
    int w, h;
    assert_int_equal(be_image_decode_rgb(im, dog, len, &rgb, &w, &h), 0);
    int W = w * 4, H = h * 4;
    uint8_t *big = malloc((size_t)W * H * 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            memcpy(big + ((size_t)y * W + x) * 3, rgb + ((size_t)(y / 4) * w + x / 4) * 3, 3);
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long jlen = 0;
    assert_int_equal(tjCompress2(tj, big, W, 0, H, TJPF_RGB, &jpeg, &jlen, TJSAMP_420, 90, 0), 0);

    int sw, sh;
    be_image_scaled_size(W, H, 416, 312, &sw, &sh);
    assert_int_equal(sw, 768); /* 1/4; 1/8 = 384 would be too small */
    assert_int_equal(sh, 576);
    /* 5/8 (480 x 360) would cover 416 x 312, but decodes no faster than full size */
    be_image_scaled_size(768, 576, 416, 312, &sw, &sh);
    assert_int_equal(sw, 768);
    assert_int_equal(sh, 576);
    be_image_scaled_size(1920, 1080, 416, 234, &sw, &sh); /* 1080p: 1/4 */
    assert_int_equal(sw, 480);
    assert_int_equal(sh, 270);
    be_image_scaled_size(100, 80, 416, 312, &sw, &sh); /* small frames: never upscaled */
    assert_int_equal(sw, 100);
    assert_int_equal(sh, 80);

    float *in = malloc(sizeof(float) * 3 * 416 * 416);
    float *ref = malloc(sizeof(float) * 3 * 416 * 416);
    char err[128];
    int dw, dh;
    assert_int_equal(be_image_letterbox(im, jpeg, jlen, BE_PREP_DARKNET, BE_DECODE_FAST, 416, 416,
                                        in, &w, &h, &dw, &dh, err, sizeof err),
                     0);
    assert_int_equal(w, W);
    assert_int_equal(h, H);
    assert_int_equal(dw, 768);
    assert_int_equal(dh, 576);
    assert_int_equal(be_image_letterbox(im, dog, len, BE_PREP_DARKNET, BE_DECODE_FAST, 416, 416,
                                        ref, &w, &h, NULL, NULL, err, sizeof err),
                     0);
    double sum = 0;
    for (int i = 0; i < 3 * 416 * 416; i++)
        sum += in[i] > ref[i] ? in[i] - ref[i] : ref[i] - in[i];
    print_message("3072x2304 at 1/4 vs 768x576: mean |diff| %.5f\n", sum / (3 * 416 * 416));
    assert_true(sum / (3 * 416 * 416) < 0.02);
    free(in);
    free(ref);
    be_image_destroy(im);
    tjFree(jpeg);
    tjDestroy(tj);
    free(big);
    free(rgb);
    free(dog);
}

/* The annotated output is a JPEG of the original size with the boxes drawn in. */
static void test_annotate(void **state)
{
    (void)state;
    be_image_t *im = make();
    size_t len;
    uint8_t *dog = read_file_all(FG_DARKNET_DATA "/dog.jpg", &len);
    proto_det_t dets[2] = {
        {.class_id = 0, .confidence = 0.9f, .x = 100, .y = 100, .w = 200, .h = 150},
        {.class_id = 1, .confidence = 0.5f, .x = 700, .y = 500, .w = 68, .h = 76},
    };
    const uint8_t *out;
    size_t olen;
    assert_int_equal(be_image_annotate(im, dog, len, dets, 2, &out, &olen), 0);
    assert_true(olen > 1000);
    uint8_t *copy = malloc(olen);
    memcpy(copy, out, olen);
    uint8_t *rgb;
    int w, h;
    assert_int_equal(be_image_decode_rgb(im, copy, olen, &rgb, &w, &h), 0);
    assert_int_equal(w, 768);
    assert_int_equal(h, 576);
    /* Box 0's top edge is class 0's colour (255, 56, 56), give or take JPEG. */
    const uint8_t *p = rgb + ((size_t)101 * w + 200) * 3;
    assert_true(p[0] > 200 && p[1] < 110 && p[2] < 110);
    /* Box 1's right edge, on the image border, is class 1's colour (56, 255, 56). */
    p = rgb + ((size_t)540 * w + 766) * 3;
    assert_true(p[1] > 200 && p[0] < 110 && p[2] < 110);
    assert_int_equal(be_image_annotate(im, dog, 0, dets, 2, &out, &olen), PROTO_EEMPTY);
    free(rgb);
    free(copy);
    free(dog);
    be_image_destroy(im);
}

/* Encodes packed pixels (channels 1, 3 or 4, 8-bit) as a PNG with libspng. The caller frees. */
static uint8_t *encode_png(const uint8_t *px, int w, int h, int channels, size_t *len)
{
    static const uint8_t color[5] = {0, SPNG_COLOR_TYPE_GRAYSCALE, 0, SPNG_COLOR_TYPE_TRUECOLOR,
                                     SPNG_COLOR_TYPE_TRUECOLOR_ALPHA};
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    assert_non_null(ctx);
    spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    struct spng_ihdr ihdr = {
        .width = (uint32_t)w, .height = (uint32_t)h, .bit_depth = 8, .color_type = color[channels]};
    assert_int_equal(spng_set_ihdr(ctx, &ihdr), 0);
    assert_int_equal(
        spng_encode_image(ctx, px, (size_t)w * h * channels, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE),
        0);
    int err = 0;
    uint8_t *out = spng_get_png_buffer(ctx, len, &err);
    assert_int_equal(err, 0);
    spng_ctx_free(ctx);
    return out;
}

/* PNG input: the lossless copy of a decoded JPEG decodes to exactly the same pixels; grey
 * and RGBA become RGB; letterboxing it gives exactly the JPEG's input (the exact decode is
 * the same pixels); a header over the limits is refused before the pixels are touched; a truncated
 * or corrupted file is a bad image, never a crash. */
static void test_png(void **state)
{
    (void)state;
    be_image_t *im = make();
    size_t len, plen;
    uint8_t *dog = read_file_all(FG_DARKNET_DATA "/dog.jpg", &len);
    uint8_t *rgb, *back;
    int w, h, pw, ph;
    assert_int_equal(be_image_decode_rgb(im, dog, len, &rgb, &w, &h), 0);
    uint8_t *png = encode_png(rgb, w, h, 3, &plen);
    assert_int_equal(be_image_probe(im, png, plen, &pw, &ph), 0);
    assert_int_equal(pw, 768);
    assert_int_equal(ph, 576);
    assert_int_equal(be_image_decode_rgb(im, png, plen, &back, &pw, &ph), 0);
    assert_memory_equal(back, rgb, (size_t)w * h * 3);
    free(back);

    float *a = malloc(sizeof(float) * 3 * 416 * 416), *b = malloc(sizeof(float) * 3 * 416 * 416);
    char err[256];
    assert_int_equal(be_image_letterbox(im, png, plen, BE_PREP_DARKNET, BE_DECODE_EXACT, 416, 416,
                                        a, &pw, &ph, NULL, NULL, err, sizeof err),
                     0);
    assert_int_equal(be_image_letterbox(im, dog, len, BE_PREP_DARKNET, BE_DECODE_EXACT, 416, 416, b,
                                        &w, &h, NULL, NULL, err, sizeof err),
                     0);
    assert_int_equal(pw, w);
    assert_int_equal(ph, h);
    double sum = 0;
    for (size_t i = 0; i < 3 * 416 * 416; i++)
        sum += fabs((double)a[i] - b[i]);
    printf("PNG vs JPEG letterbox (exact decode): mean |diff| %.5f\n", sum / (3 * 416 * 416));
    assert_true(sum / (3 * 416 * 416) < 1e-6);

    /* Grey and RGBA sources: grey is replicated, alpha dropped. */
    uint8_t *grey = malloc((size_t)w * h), *rgba = malloc((size_t)w * h * 4);
    for (size_t i = 0; i < (size_t)w * h; i++) {
        grey[i] = rgb[i * 3 + 1];
        memcpy(rgba + i * 4, rgb + i * 3, 3);
        rgba[i * 4 + 3] = (uint8_t)i;
    }
    size_t glen, alen;
    uint8_t *gpng = encode_png(grey, w, h, 1, &glen), *apng = encode_png(rgba, w, h, 4, &alen);
    assert_int_equal(be_image_decode_rgb(im, gpng, glen, &back, &pw, &ph), 0);
    for (size_t i = 0; i < (size_t)w * h; i++)
        assert_true(back[i * 3] == grey[i] && back[i * 3 + 2] == grey[i]);
    free(back);
    assert_int_equal(be_image_decode_rgb(im, apng, alen, &back, &pw, &ph), 0);
    assert_memory_equal(back, rgb, (size_t)w * h * 3);
    free(back);

    /* Limits from the IHDR alone: a 100000 x 100000 header with no pixel data at all. */
    uint8_t bomb[64];
    memcpy(bomb, png, 33); /* signature + IHDR chunk */
    bomb[16] = bomb[20] = 0;
    bomb[17] = bomb[21] = 0x01;
    bomb[18] = bomb[22] = 0x86;
    bomb[19] = bomb[23] = 0xa0; /* 100000 */
    /* The IHDR CRC must be right for libspng to read the size: recompute it. */
    uint32_t crc = 0xffffffffu;
    for (int i = 12; i < 29; i++) {
        crc ^= bomb[i];
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? (crc >> 1) ^ 0xedb88320u : crc >> 1;
    }
    crc ^= 0xffffffffu;
    bomb[29] = (uint8_t)(crc >> 24);
    bomb[30] = (uint8_t)(crc >> 16);
    bomb[31] = (uint8_t)(crc >> 8);
    bomb[32] = (uint8_t)crc;
    assert_int_equal(be_image_probe(im, bomb, 33, &pw, &ph), PROTO_EIMGSIZE);
    be_image_t *small;
    assert_int_equal(
        be_image_create(&small, (be_image_limits_t){.max_pixels = 1000, .max_side = 16384}), 0);
    assert_int_equal(be_image_probe(small, png, plen, &pw, &ph), PROTO_EIMGSIZE);
    be_image_destroy(small);

    /* Truncated anywhere in the header or pixel data, or flipped bytes: an error, never a
     * crash (heap copies for ASan). (Losing only the trailing CRC/IEND leaves every pixel
     * there: libspng then decodes it, which is fine.) */
    size_t cuts[] = {8, 9, 20, 33, 40, 100, plen / 2, plen - 40};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        uint8_t *p = malloc(cuts[i]);
        memcpy(p, png, cuts[i]);
        int rv = be_image_letterbox(im, p, cuts[i], BE_PREP_DARKNET, BE_DECODE_EXACT, 416, 416, a,
                                    &pw, &ph, NULL, NULL, err, sizeof err);
        assert_int_equal(rv, PROTO_EIMAGE);
        free(p);
    }
    uint8_t *p = malloc(plen);
    memcpy(p, png, plen);
    p[plen / 2] ^= 0x55; /* a corrupt deflate stream or CRC */
    assert_int_equal(be_image_letterbox(im, p, plen, BE_PREP_DARKNET, BE_DECODE_EXACT, 416, 416, a,
                                        &pw, &ph, NULL, NULL, err, sizeof err),
                     PROTO_EIMAGE);
    assert_non_null(strstr(err, "PNG"));
    free(p);

    free(gpng);
    free(apng);
    free(grey);
    free(rgba);
    free(a);
    free(b);
    free(png);
    free(rgb);
    free(dog);
    be_image_destroy(im);
}

/* Offset of the first marker segment `marker` (0xFF marker) before the first scan of a JPEG,
 * walking the segments by their lengths; -1 if there is none. */
static long find_segment(const uint8_t *b, size_t len, uint8_t marker)
{
    size_t i = 2;
    while (i + 4 <= len && b[i] == 0xff) {
        if (b[i + 1] == marker)
            return (long)i;
        if (b[i + 1] == 0xda)
            return -1;
        i += 2 + ((size_t)b[i + 2] << 8 | b[i + 3]);
    }
    return -1;
}

/* End of the entropy-coded data that starts at i: the next 0xFF that is neither a stuffed
 * byte (FF 00) nor a restart marker. */
static size_t scan_end(const uint8_t *b, size_t len, size_t i)
{
    while (i + 1 < len) {
        if (b[i] == 0xff && b[i + 1] != 0x00 && !(b[i + 1] >= 0xd0 && b[i + 1] <= 0xd7))
            return i;
        i++;
    }
    return len;
}

/* A progressive JPEG "scan bomb", built by hand: a 64x64 progressive JPEG (TurboJPEG's
 * TJFLAG_PROGRESSIVE: libjpeg's standard script, whose first scan is the interleaved DC
 * scan, Ss = Se = 0, Ah = 0, Al = 1), then its headers followed by that first scan `n` times
 * and EOI. With `al0` the scan's Al is patched to 0: every copy then is a legal first DC scan
 * (libjpeg sets the DC coefficients again, no warning at all), so only counting scans stops it;
 * without, each copy after the first is an "inconsistent progression" warning. The caller
 * frees the result. */
static uint8_t *scan_bomb(int n, int al0, size_t *len)
{
    enum { S = 64 };
    uint8_t px[S * S * 3];
    for (int i = 0; i < S * S * 3; i++)
        px[i] = (uint8_t)(i * 7 % 251);
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long jlen = 0;
    assert_int_equal(
        tjCompress2(tj, px, S, 0, S, TJPF_RGB, &jpeg, &jlen, TJSAMP_420, 90, TJFLAG_PROGRESSIVE),
        0);
    tjDestroy(tj);
    long sos = find_segment(jpeg, jlen, 0xda);
    assert_true(sos > 0);
    size_t hdr = 2 + ((size_t)jpeg[sos + 2] << 8 | jpeg[sos + 3]);
    assert_int_equal(jpeg[sos + hdr - 3], 0);    /* Ss */
    assert_int_equal(jpeg[sos + hdr - 2], 0);    /* Se */
    assert_int_equal(jpeg[sos + hdr - 1], 0x01); /* Ah = 0, Al = 1 */
    if (al0)
        jpeg[sos + hdr - 1] = 0x00;
    size_t end = scan_end(jpeg, jlen, (size_t)sos + hdr);
    size_t one = end - (size_t)sos;
    *len = (size_t)sos + (size_t)n * one + 2;
    uint8_t *out = malloc(*len);
    assert_non_null(out);
    memcpy(out, jpeg, (size_t)sos);
    for (int i = 0; i < n; i++)
        memcpy(out + sos + (size_t)i * one, jpeg + sos, one);
    out[*len - 2] = 0xff;
    out[*len - 1] = 0xd9;
    tjFree(jpeg);
    return out;
}

/* One be_image_t must stay good after ANY bad frame (issue 11, item 1): libjpeg-turbo 2.1
 * leaves a decompressor that failed inside tjDecompressHeader3 half-way through the broken
 * header, and every later JPEG then failed with "Bogus marker length". Each poison frame is
 * followed by dog.jpg through the same be_image_t: probe, letterbox, annotate. The poison
 * frames are dog.jpg with bytes patched: its SOF0 segment (FF C0, length, precision, height,
 * width, ...) gets height = width = 0, precision 12, or the marker C3 (lossless). */
static void test_poison_then_valid(void **state)
{
    (void)state;
    be_image_t *im = make();
    size_t len;
    uint8_t *dog = read_file_all(FG_DARKNET_DATA "/dog.jpg", &len);
    long sof = find_segment(dog, len, 0xc0);
    assert_true(sof > 0);

    enum { NPOISON = 10 };
    uint8_t *poison[NPOISON];
    size_t plen[NPOISON];
    const char *what[NPOISON];
    /* The probe's base64 "/9j/wA==" is FF D8 FF C0; the brief's FF D8 FF C0 00 is one more. */
    static const uint8_t four[] = {0xff, 0xd8, 0xff, 0xc0, 0x00};
    poison[0] = malloc(sizeof four);
    memcpy(poison[0], four, sizeof four);
    plen[0] = sizeof four;
    what[0] = "FF D8 FF C0 00";
    poison[1] = malloc(160);
    memcpy(poison[1], dog, 160);
    plen[1] = 160;
    what[1] = "cut at 160 bytes";
    for (int i = 2; i < 5; i++) {
        poison[i] = malloc(len);
        memcpy(poison[i], dog, len);
        plen[i] = len;
    }
    memset(poison[2] + sof + 5, 0, 4);
    what[2] = "SOF says 0x0";
    poison[3][sof + 4] = 12;
    what[3] = "12-bit precision";
    poison[4][sof + 1] = 0xc3;
    what[4] = "lossless (SOF3)";
    poison[5] = malloc(len / 2);
    memcpy(poison[5], dog, len / 2);
    plen[5] = len / 2;
    what[5] = "cut inside the scan";
    poison[6] = malloc(len);
    memcpy(poison[6], dog, len);
    memset(poison[6] + len / 2, 0xff, 64); /* corrupt entropy-coded data */
    plen[6] = len;
    what[6] = "corrupt scan data";
    poison[7] = scan_bomb(10000, 1, &plen[7]);
    what[7] = "scan bomb (10000 scans, no warnings)";
    poison[8] = scan_bomb(50, 0, &plen[8]);
    what[8] = "50 inconsistent scans";
    poison[9] = malloc(4);
    memcpy(poison[9], four, 4);
    plen[9] = 4;
    what[9] = "FF D8 FF C0 (base64 /9j/wA==)";

    float *input = malloc(sizeof(float) * 3 * 416 * 416);
    char err[256];
    proto_det_t det = {.class_id = 0, .confidence = 0.9f, .x = 10, .y = 10, .w = 50, .h = 50};
    for (int i = 0; i < NPOISON; i++) {
        int w, h;
        err[0] = '\0';
        int rv = be_image_letterbox(im, poison[i], plen[i], BE_PREP_DARKNET, BE_DECODE_EXACT, 416,
                                    416, input, &w, &h, NULL, NULL, err, sizeof err);
        print_message("%-40s -> %s: %s\n", what[i], proto_errname(rv), err);
        assert_true(rv == PROTO_EIMAGE);
        assert_true(err[0] != '\0');
        const uint8_t *out;
        size_t olen;
        assert_int_equal(be_image_annotate(im, poison[i], plen[i], &det, 1, &out, &olen),
                         PROTO_EIMAGE);
        /* The probe of the poison may pass (a header that is fine, data that is not). */
        (void)be_image_probe(im, poison[i], plen[i], &w, &h);

        /* And the very next valid frame decodes, every way. */
        w = h = 0;
        assert_int_equal(be_image_probe(im, dog, len, &w, &h), 0);
        assert_int_equal(w, 768);
        rv = be_image_letterbox(im, dog, len, BE_PREP_DARKNET, BE_DECODE_EXACT, 416, 416, input, &w,
                                &h, NULL, NULL, err, sizeof err);
        if (rv != 0)
            print_message("after %s: dog.jpg -> %s: %s\n", what[i], proto_errname(rv), err);
        assert_int_equal(rv, 0);
        assert_int_equal(h, 576);
        assert_int_equal(be_image_annotate(im, dog, len, &det, 1, &out, &olen), 0);
        assert_true(olen > 1000);
        /* The poison again, this time through the probe first. */
        (void)be_image_probe(im, poison[i], plen[i], &w, &h);
        assert_int_equal(be_image_probe(im, dog, len, &w, &h), 0);
        uint8_t *rgb;
        assert_int_equal(be_image_decode_rgb(im, dog, len, &rgb, &w, &h), 0);
        free(rgb);
    }
    /* Specific messages for the causes an operator has to recognise. */
    int w, h;
    assert_int_equal(be_image_letterbox(im, poison[7], plen[7], BE_PREP_DARKNET, BE_DECODE_EXACT,
                                        416, 416, input, &w, &h, NULL, NULL, err, sizeof err),
                     PROTO_EIMAGE);
    assert_non_null(strstr(err, "scans"));
    assert_int_equal(be_image_letterbox(im, poison[3], plen[3], BE_PREP_DARKNET, BE_DECODE_EXACT,
                                        416, 416, input, &w, &h, NULL, NULL, err, sizeof err),
                     PROTO_EIMAGE);
    assert_non_null(strstr(err, "precision"));
    for (int i = 0; i < NPOISON; i++)
        free(poison[i]);
    free(input);
    free(dog);
    be_image_destroy(im);
}

/* The scan limit counts exactly: the crafted bomb is a valid JPEG with up to 100 scans (it
 * decodes), and is refused from 101 on, with libjpeg-turbo never asked to decode it. */
static void test_scan_limit(void **state)
{
    (void)state;
    be_image_t *im = make();
    float *input = malloc(sizeof(float) * 3 * 416 * 416);
    char err[256];
    int w, h;
    static const int n[] = {1, 5, 100, 101, 501, 20000};
    for (size_t i = 0; i < sizeof n / sizeof n[0]; i++) {
        size_t len;
        uint8_t *b = scan_bomb(n[i], 1, &len);
        err[0] = '\0';
        int rv = be_image_letterbox(im, b, len, BE_PREP_DARKNET, BE_DECODE_EXACT, 416, 416, input,
                                    &w, &h, NULL, NULL, err, sizeof err);
        print_message("%5d scans, %7zu bytes -> %s %s\n", n[i], len,
                      rv == 0 ? "ok" : proto_errname(rv), err);
        if (n[i] <= 100) {
            assert_int_equal(rv, 0);
            assert_int_equal(w, 64);
        } else {
            assert_int_equal(rv, PROTO_EIMAGE);
            assert_non_null(strstr(err, "more than 100 progressive scans"));
        }
        free(b);
    }
    free(input);
    be_image_destroy(im);
}

/* A large frame inside the limits (a 4000 x 3000 PNG: 36 MB of pixels) does not leave its
 * buffers behind (issue 11: a PNG bomb left the backend 184 MB larger); a normal frame's
 * buffer is kept for the next one. */
static void test_large_frame_released(void **state)
{
    (void)state;
    be_image_t *im = make();
    size_t len;
    uint8_t *dog = read_file_all(FG_DARKNET_DATA "/dog.jpg", &len);
    float *input = malloc(sizeof(float) * 3 * 416 * 416);
    char err[256];
    int w, h;
    assert_int_equal(be_image_retained(im), 0);
    assert_int_equal(be_image_letterbox(im, dog, len, BE_PREP_DARKNET, BE_DECODE_EXACT, 416, 416,
                                        input, &w, &h, NULL, NULL, err, sizeof err),
                     0);
    size_t normal = be_image_retained(im);
    assert_true(normal >= (size_t)480 * 360 * 3 && normal <= BE_IMAGE_KEEP_MAX);

    enum { W = 4000, H = 3000 };
    uint8_t *px = calloc((size_t)W * H, 3);
    for (int y = 0; y < H; y++)
        px[((size_t)y * W + y) * 3] = 255; /* a diagonal line: not all zeros */
    size_t plen;
    uint8_t *png = encode_png(px, W, H, 3, &plen);
    free(px);
    assert_int_equal(be_image_letterbox(im, png, plen, BE_PREP_DARKNET, BE_DECODE_EXACT, 416, 416,
                                        input, &w, &h, NULL, NULL, err, sizeof err),
                     0);
    assert_int_equal(w, W);
    assert_true(be_image_retained(im) <= BE_IMAGE_KEEP_MAX);
    uint8_t *rgb;
    assert_int_equal(be_image_decode_rgb(im, png, plen, &rgb, &w, &h), 0);
    assert_int_equal(rgb[0], 255); /* the pixels came out, from a buffer no longer held */
    free(rgb);
    assert_true(be_image_retained(im) <= BE_IMAGE_KEEP_MAX);
    proto_det_t det = {.class_id = 0, .confidence = 0.9f, .x = 10, .y = 10, .w = 50, .h = 50};
    const uint8_t *out;
    size_t olen;
    assert_int_equal(be_image_annotate(im, png, plen, &det, 1, &out, &olen), 0);
    assert_true(be_image_retained(im) <= BE_IMAGE_KEEP_MAX);
    /* A truncated large PNG: the error path releases too. */
    assert_int_equal(be_image_letterbox(im, png, plen - 100, BE_PREP_DARKNET, BE_DECODE_EXACT, 416,
                                        416, input, &w, &h, NULL, NULL, err, sizeof err),
                     PROTO_EIMAGE);
    assert_true(be_image_retained(im) <= BE_IMAGE_KEEP_MAX);
    /* And normal frames go on reusing their buffer. */
    assert_int_equal(be_image_letterbox(im, dog, len, BE_PREP_DARKNET, BE_DECODE_EXACT, 416, 416,
                                        input, &w, &h, NULL, NULL, err, sizeof err),
                     0);
    assert_true(be_image_retained(im) >= (size_t)480 * 360 * 3);
    free(png);
    free(input);
    free(dog);
    be_image_destroy(im);
}

/* The resize spread over an OpenMP team gives the very same input as one thread: every frame,
 * both placements, both decodes, byte for byte (the exact decode stays exact at any thread
 * count); and a 3x1 image (fewer rows than threads) too. */
static void test_threads_same_pixels(void **state)
{
    (void)state;
    static const char *const names[] = {"dog.jpg", "scream.jpg", "person.jpg", "kite.jpg"};
    be_image_t *im = make();
    size_t n = (size_t)3 * 416 * 416;
    float *one = malloc(n * sizeof(float)), *many = malloc(n * sizeof(float));
    char path[512];
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
        size_t len;
        snprintf(path, sizeof path, "%s/%s", FG_DARKNET_DATA, names[f]);
        uint8_t *jpg = read_file_all(path, &len);
        for (int mode = 0; mode < 2; mode++)
            for (int dec = 0; dec < 2; dec++)
                for (int th = 1; th <= 3; th++) {
                    float *out = th == 1 ? one : many;
                    int w, h;
                    memset(out, 0xff, n * sizeof(float)); /* NaN: a row left out shows */
                    be_image_set_threads(im, th);
                    assert_int_equal(be_image_letterbox(im, jpg, len, mode, dec, 416, 416, out, &w,
                                                        &h, NULL, NULL, NULL, 0),
                                     0);
                    if (th > 1)
                        assert_memory_equal(one, many, n * sizeof(float));
                }
        free(jpg);
    }
    const uint8_t tiny[9] = {10, 20, 30, 40, 50, 60, 70, 80, 90};
    be_image_letterbox_rgb(tiny, 3, 1, 416, 416, one, 1);
    be_image_letterbox_rgb(tiny, 3, 1, 416, 416, many, 3);
    assert_memory_equal(one, many, n * sizeof(float));
    be_image_faceapi_rgb(tiny, 3, 1, 416, 416, one, 1);
    be_image_faceapi_rgb(tiny, 3, 1, 416, 416, many, 3);
    assert_memory_equal(one, many, n * sizeof(float));
    free(one);
    free(many);
    be_image_destroy(im);
}

/* The two-band decode gives TurboJPEG's pixels byte for byte: the darknet photos and dog.jpg
 * re-encoded at every subsampling (and grey, and with 16-row-unaligned heights), with each
 * flag set, at full size and DCT-scaled, from several splits; a split file really was split
 * (2 bands, not BE_JPEG_SERIAL). Progressive files and one thread are left to TurboJPEG; a
 * truncated file is an error, and through be_image_letterbox the same error as one thread's. */
static void test_split_decode_is_turbojpeg(void **state)
{
    (void)state;
    static const char *const names[] = {"dog.jpg", "person.jpg", "eagle.jpg", "horses.jpg"};
    static const int samps[] = {TJSAMP_420, TJSAMP_422, TJSAMP_440, TJSAMP_444, TJSAMP_GRAY};
    static const int flagsets[] = {0, TJFLAG_FASTUPSAMPLE, TJFLAG_FASTDCT};
    static const float splits[] = {0.15f, 0.5f, 0.66f, 0.85f, 0.0f};
    tjhandle tj = tjInitDecompress(), tc = tjInitCompress();
    char path[512];
    int files = 0;
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
        size_t len;
        snprintf(path, sizeof path, "%s/%s", FG_DARKNET_DATA, names[f]);
        uint8_t *orig = read_file_all(path, &len);
        int w, h, ss, cs;
        assert_int_equal(tjDecompressHeader3(tj, orig, (unsigned long)len, &w, &h, &ss, &cs), 0);
        uint8_t *px = malloc((size_t)w * h * 3);
        assert_int_equal(tjDecompress2(tj, orig, (unsigned long)len, px, w, 0, h, TJPF_RGB, 0), 0);
        for (int v = -1; v < (f == 0 ? 5 : 0); v++) { /* -1: the file itself */
            unsigned char *jpg = orig;
            unsigned long jlen = (unsigned long)len;
            int eh = v >= 0 && v % 2 ? h - 7 : h; /* a height that is no multiple of 16 */
            if (v >= 0) {
                jpg = NULL;
                assert_int_equal(
                    tjCompress2(tc, px, w, 0, eh, TJPF_RGB, &jpg, &jlen, samps[v], 90, 0), 0);
            }
            for (int sc = 0; sc < 2; sc++) {
                int sw = sc ? (w + 1) / 2 : w, sh = sc ? (eh + 1) / 2 : eh;
                uint8_t *want = malloc((size_t)sw * sh * 3), *got = malloc((size_t)sw * sh * 3);
                for (size_t fl = 0; fl < sizeof flagsets / sizeof flagsets[0]; fl++) {
                    assert_int_equal(
                        tjDecompress2(tj, jpg, jlen, want, sw, 0, sh, TJPF_RGB, flagsets[fl]), 0);
                    for (size_t k = 0; k < sizeof splits / sizeof splits[0]; k++) {
                        be_jpeg_split_t split = {splits[k], splits[k]};
                        memset(got, 0x5a, (size_t)sw * sh * 3);
                        assert_int_equal(
                            be_jpeg_decode_split(jpg, jlen, got, sw, sh, flagsets[fl], 2, &split),
                            2);
                        assert_memory_equal(want, got, (size_t)sw * sh * 3);
                        /* the one this file's bands learnt into stays in range, the other
                         * is left alone */
                        assert_true(split.restart == splits[k] ||
                                    (split.restart >= 0.15f && split.restart <= 0.85f));
                        assert_true(split.skip == splits[k] ||
                                    (split.skip >= 0.15f && split.skip <= 0.85f));
                    }
                }
                free(want);
                free(got);
            }
            if (v >= 0)
                tjFree(jpg);
            files++;
        }
        free(px);
        free(orig);
    }
    assert_int_equal(files, 9);

    /* progressive, one thread, a size TurboJPEG would not decode to, a small image */
    size_t len;
    snprintf(path, sizeof path, "%s/dog.jpg", FG_DARKNET_DATA);
    uint8_t *dog = read_file_all(path, &len);
    int w, h, ss, cs;
    assert_int_equal(tjDecompressHeader3(tj, dog, (unsigned long)len, &w, &h, &ss, &cs), 0);
    uint8_t *px = malloc((size_t)w * h * 3), *got = malloc((size_t)w * h * 3);
    assert_int_equal(tjDecompress2(tj, dog, (unsigned long)len, px, w, 0, h, TJPF_RGB, 0), 0);
    unsigned char *prog = NULL, *small = NULL;
    unsigned long plen = 0, slen = 0;
    assert_int_equal(
        tjCompress2(tc, px, 200, w * 3, 60, TJPF_RGB, &small, &slen, TJSAMP_420, 90, 0), 0);
    /* (in this order: a baseline JPEG made by the same handle after a progressive one
     * decoded with a warning, "extraneous bytes before marker 0xd9") */
    assert_int_equal(
        tjCompress2(tc, px, w, 0, h, TJPF_RGB, &prog, &plen, TJSAMP_420, 90, TJFLAG_PROGRESSIVE),
        0);
    be_jpeg_split_t split = {0, 0};
    assert_int_equal(be_jpeg_decode_split(prog, plen, got, w, h, 0, 2, &split), BE_JPEG_SERIAL);
    assert_int_equal(be_jpeg_decode_split(dog, len, got, w, h, 0, 1, &split), BE_JPEG_SERIAL);
    assert_int_equal(be_jpeg_decode_split(dog, len, got, w - 1, h, 0, 2, &split), BE_JPEG_SERIAL);
    /* a small image is split all the same (be_jpeg_split_worth is the caller's question) */
    uint8_t small_ref[200 * 60 * 3];
    if (tjDecompress2(tj, small, slen, small_ref, 200, 0, 60, TJPF_RGB, 0) != 0)
        fail_msg("%s", tjGetErrorStr2(tj));
    assert_int_equal(be_jpeg_decode_split(small, slen, got, 200, 60, 0, 2, &split), 2);
    assert_memory_equal(small_ref, got, sizeof small_ref);
    assert_int_equal(be_jpeg_decode_split(small, slen, got, 200, 31, 0, 2, &split), BE_JPEG_SERIAL);
    assert_int_equal(be_jpeg_split_worth(200, 60), 0);
    assert_int_equal(be_jpeg_split_worth(w, h), 1);
    /* truncated in its last third: the first band may end before the damage, the second not */
    assert_int_equal(be_jpeg_decode_split(dog, len * 2 / 3, got, w, h, 0, 2, &split), PROTO_EIMAGE);
    char err1[200], err2[200];
    be_image_t *im = make();
    float *input = malloc(sizeof(float) * 3 * 416 * 416);
    int ow, oh;
    be_image_set_threads(im, 1);
    assert_int_equal(be_image_letterbox(im, dog, len * 2 / 3, BE_PREP_DARKNET, BE_DECODE_EXACT, 416,
                                        416, input, &ow, &oh, NULL, NULL, err1, sizeof err1),
                     PROTO_EIMAGE);
    be_image_set_threads(im, 2);
    assert_int_equal(be_image_letterbox(im, dog, len * 2 / 3, BE_PREP_DARKNET, BE_DECODE_EXACT, 416,
                                        416, input, &ow, &oh, NULL, NULL, err2, sizeof err2),
                     PROTO_EIMAGE);
    assert_string_equal(err1, err2);
    assert_true(strlen(err1) > 0);
    /* and a good frame right after */
    assert_int_equal(be_image_letterbox(im, dog, len, BE_PREP_DARKNET, BE_DECODE_EXACT, 416, 416,
                                        input, &ow, &oh, NULL, NULL, err2, sizeof err2),
                     0);
    be_image_destroy(im);
    free(input);
    tjFree(prog);
    tjFree(small);
    free(px);
    free(got);
    free(dog);
    tjDestroy(tj);
    tjDestroy(tc);
}

/* px (w x h RGB) as a baseline JPEG with restart markers every `rows` rows of MCUs, or every
 * `mcus` MCUs, luma sampled hs x vs (grey when hs is 0). TurboJPEG 2.1 cannot write them. */
static unsigned char *encode_restart(const uint8_t *px, int w, int h, int hs, int vs, int rows,
                                     int mcus, unsigned long *len)
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
    jpeg_set_defaults(&c);
    if (hs == 0) {
        jpeg_set_colorspace(&c, JCS_GRAYSCALE);
    } else {
        c.comp_info[0].h_samp_factor = hs;
        c.comp_info[0].v_samp_factor = vs;
    }
    jpeg_set_quality(&c, 90, TRUE);
    c.restart_in_rows = rows;
    c.restart_interval = (unsigned)mcus;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(px + (size_t)c.next_scanline * (size_t)w * 3);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return out;
}

/* Restart bands are cut by the decode's work, not by rows: a frame whose top three quarters are
 * flat and bottom quarter noise has nearly all its entropy-coded bytes at the bottom, so the top
 * band of two (an even share of the work) reaches into the noise; a frame of noise throughout
 * is cut near its middle, and into three near its thirds. */
static void test_restart_bands_by_work(void **state)
{
    (void)state;
    enum { W = 256, H = 256 };
    uint8_t *px = malloc((size_t)W * H * 3);
    assert_non_null(px);
    for (int noisy = 0; noisy < 2; noisy++) {
        srand(7);
        for (int y = 0; y < H; y++)
            for (int i = 0; i < W * 3; i++)
                px[(size_t)y * W * 3 + i] = noisy || y >= H * 3 / 4 ? (uint8_t)rand() : 128;
        unsigned long len = 0;
        unsigned char *jpg = encode_restart(px, W, H, 2, 2, 1, 0, &len);
        for (int fast = 0; fast < 2; fast++) {
            int first[8], flags = fast ? TJFLAG_FASTUPSAMPLE : 0;
            assert_int_equal(be_jpeg_band_rows(jpg, len, W, H, flags, 2, 0.5f, first), 2);
            assert_int_equal(first[0], 0);
            print_message("%s, %s upsampling: two bands from rows 0 and %d\n",
                          noisy ? "noise" : "flat above noise", fast ? "fast" : "smooth", first[1]);
            if (noisy) {
                assert_in_range(first[1], H / 2 - 16, H / 2 + 16);
                assert_int_equal(be_jpeg_band_rows(jpg, len, W, H, flags, 3, 0.5f, first), 3);
                assert_in_range(first[1], H / 3 - 16, H / 3 + 16);
                assert_in_range(first[2], 2 * H / 3 - 16, 2 * H / 3 + 16);
            } else {
                assert_true(first[1] > H * 3 / 4);
            }
        }
        free(jpg);
    }
    /* no restart markers: not cut at them */
    unsigned long len = 0;
    unsigned char *plain = encode_restart(px, W, H, 2, 2, 0, 0, &len);
    int first[8];
    assert_int_equal(be_jpeg_band_rows(plain, len, W, H, 0, 2, 0.5f, first), 0);
    free(plain);
    free(px);
}

/* Offset of the k'th (1-based) restart marker's second byte, or 0. */
static size_t nth_restart(const unsigned char *jpg, unsigned long len, int k)
{
    size_t sos = 0;
    for (size_t i = 2; i + 1 < len && sos == 0; i++)
        if (jpg[i] == 0xff && jpg[i + 1] == 0xda)
            sos = i;
    for (size_t i = sos + 2; sos > 0 && i + 1 < len; i++)
        if (jpg[i] == 0xff && jpg[i + 1] >= 0xd0 && jpg[i + 1] <= 0xd7 && --k == 0)
            return i + 1;
    return 0;
}

/* Files with restart markers are cut at them into as many bands as threads, each decoding only
 * its rows, and still give TurboJPEG's pixels byte for byte: every subsampling and grey,
 * markers every row of MCUs, every 2 rows and every 7 MCUs (not on a row), heights and widths
 * that are no multiple of the MCU, full size and DCT-scaled, both upsamplings, 2-5 threads and
 * several splits. A marker out of sequence (in the first band's rows or the last's) or a cut
 * file is an error, as it is for TurboJPEG. */
static void test_restart_bands(void **state)
{
    (void)state;
    static const int samps[][2] = {{2, 2}, {2, 1}, {1, 2}, {1, 1}, {0, 0}};
    static const int every[][2] = {{1, 0}, {2, 0}, {0, 7}}; /* rows, MCUs */
    static const int flagsets[] = {0, TJFLAG_FASTUPSAMPLE};
    static const float splits[] = {0.15f, 0.5f, 0.85f};
    char path[512];
    size_t len;
    snprintf(path, sizeof path, "%s/dog.jpg", FG_DARKNET_DATA);
    uint8_t *dog = read_file_all(path, &len);
    tjhandle tj = tjInitDecompress();
    int dw, dh, ss, cs;
    assert_int_equal(tjDecompressHeader3(tj, dog, (unsigned long)len, &dw, &dh, &ss, &cs), 0);
    uint8_t *px = malloc((size_t)dw * dh * 3);
    assert_int_equal(tjDecompress2(tj, dog, (unsigned long)len, px, dw, 0, dh, TJPF_RGB, 0), 0);
    const int w = 393, heights[] = {296, 289}; /* from dog's top-left corner, row stride dw */
    uint8_t *crop = malloc((size_t)w * 296 * 3);
    for (int y = 0; y < 296; y++)
        memcpy(crop + (size_t)y * w * 3, px + (size_t)y * dw * 3, (size_t)w * 3);
    uint8_t *want = malloc((size_t)w * 296 * 3), *got = malloc((size_t)w * 296 * 3);
    int decodes = 0;
    for (size_t sa = 0; sa < sizeof samps / sizeof samps[0]; sa++)
        for (size_t ev = 0; ev < sizeof every / sizeof every[0]; ev++)
            for (int hi = 0; hi < 2; hi++) {
                int h = heights[hi];
                unsigned long jlen = 0;
                unsigned char *jpg = encode_restart(crop, w, h, samps[sa][0], samps[sa][1],
                                                    every[ev][0], every[ev][1], &jlen);
                assert_true(nth_restart(jpg, jlen, 1) > 0);
                for (int sc = 0; sc < 2; sc++) {
                    int sw = sc ? (w + 1) / 2 : w, sh = sc ? (h + 1) / 2 : h;
                    for (size_t fl = 0; fl < sizeof flagsets / sizeof flagsets[0]; fl++) {
                        assert_int_equal(
                            tjDecompress2(tj, jpg, jlen, want, sw, 0, sh, TJPF_RGB, flagsets[fl]),
                            0);
                        for (int th = 2; th <= 5; th++)
                            for (size_t k = 0; k < (th == 2 ? 3u : 1u); k++) {
                                be_jpeg_split_t split = {splits[k], splits[k]};
                                memset(got, 0x5a, (size_t)sw * sh * 3);
                                int n = be_jpeg_decode_split(jpg, jlen, got, sw, sh, flagsets[fl],
                                                             th, &split);
                                /* markers every row: one band per thread; else as many as
                                 * marker rows allow (never fewer than the two of a skip) */
                                if (every[ev][0] == 1)
                                    assert_int_equal(n, th);
                                else
                                    assert_true(n >= 2 && n <= th);
                                assert_memory_equal(want, got, (size_t)sw * sh * 3);
                                decodes++;
                            }
                    }
                }
                free(jpg);
            }
    assert_int_equal(decodes, 5 * 3 * 2 * 2 * 2 * 6);

    /* damage: a marker's number changed near the top and near the bottom, and a cut */
    unsigned long jlen = 0;
    unsigned char *jpg = encode_restart(crop, w, 296, 2, 2, 1, 0, &jlen);
    assert_int_equal(tjDecompress2(tj, jpg, jlen, want, w, 0, 296, TJPF_RGB, 0), 0);
    for (int k = 0; k < 3; k++) {
        unsigned char *bad = malloc(jlen);
        memcpy(bad, jpg, jlen);
        unsigned long blen = jlen;
        if (k < 2) {
            size_t at = nth_restart(bad, blen, k == 0 ? 2 : 16);
            assert_true(at > 0);
            bad[at] = (unsigned char)(0xd0 + ((bad[at] - 0xd0 + 3) & 7));
        } else {
            blen = jlen * 3 / 4;
        }
        assert_int_not_equal(
            tjDecompress2(tj, bad, blen, got, w, 0, 296, TJPF_RGB, TJFLAG_STOPONWARNING), 0);
        for (int th = 2; th <= 4; th++) {
            be_jpeg_split_t split = {0.5f, 0.5f};
            assert_int_equal(be_jpeg_decode_split(bad, blen, got, w, 296, 0, th, &split),
                             PROTO_EIMAGE);
        }
        free(bad);
    }
    /* and the good file right after */
    be_jpeg_split_t split = {0.5f, 0.5f};
    assert_int_equal(be_jpeg_decode_split(jpg, jlen, got, w, 296, 0, 3, &split), 3);
    assert_memory_equal(want, got, (size_t)w * 296 * 3);
    free(jpg);
    free(want);
    free(got);
    free(crop);
    free(px);
    free(dog);
    tjDestroy(tj);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_and_errors),
        cmocka_unit_test(test_letterbox_matches_darknet),
        cmocka_unit_test(test_exact_is_darknets_pipeline),
        cmocka_unit_test(test_big_frame_scaled),
        cmocka_unit_test(test_annotate),
        cmocka_unit_test(test_png),
        cmocka_unit_test(test_poison_then_valid),
        cmocka_unit_test(test_scan_limit),
        cmocka_unit_test(test_large_frame_released),
        cmocka_unit_test(test_threads_same_pixels),
        cmocka_unit_test(test_split_decode_is_turbojpeg),
        cmocka_unit_test(test_restart_bands),
        cmocka_unit_test(test_restart_bands_by_work),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
