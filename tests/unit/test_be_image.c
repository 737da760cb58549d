/* Frame decoding: sizes, DCT-scaled decode of large frames, letterbox geometry against
 * darknet's own letterbox_image, and every kind of bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <darknet.h>
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
    const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0};
    assert_int_equal(be_image_probe(im, png, sizeof png, &w, &h), PROTO_EFORMAT);
    const uint8_t junk[] = "definitely not an image";
    assert_int_equal(be_image_probe(im, junk, sizeof junk, &w, &h), PROTO_EIMAGE);

    float *input = malloc(sizeof(float) * 3 * 416 * 416);
    char err[256];
    /* Truncated anywhere: an error, never a crash; a heap copy of exactly `cut` bytes lets
     * ASan see any over-read. */
    size_t cuts[] = {1, 2, 3, 10, 100, 600, 2000, len / 2, len - 10, len - 2};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        uint8_t *p = malloc(cuts[i]);
        memcpy(p, dog, cuts[i]);
        assert_true(be_image_letterbox(im, p, cuts[i], 416, 416, input, &w, &h, err,
                                       sizeof err) < 0);
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
        (void)be_image_letterbox(im, p, n, 416, 416, input, &w, &h, err, sizeof err);
        free(p);
    }
    /* Limits are checked from the header, before decoding. */
    be_image_t *small;
    be_image_limits_t lim = {.max_pixels = 1000, .max_side = 16384};
    assert_int_equal(be_image_create(&small, lim), 0);
    assert_int_equal(be_image_probe(small, dog, len, &w, &h), PROTO_EIMGSIZE);
    be_image_destroy(small);
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
    be_image_letterbox_rgb(rgb, w, h, 416, 416, mine);
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
    print_message("letterbox vs darknet: mean |diff| %.5f, max %.4f\n", mean, maxd);
    /* Same geometry (the grey bands match) and nearly the same pixels: both are bilinear,
     * darknet's in two separable passes. */
    assert_true(abs(grey - grey_ref) < 3 * 416 * 2);
    assert_true(mean < 0.01);

    /* The decode path (with DCT scaling) gives the same input as decoding at full size. */
    float *direct = malloc(sizeof(float) * 3 * 416 * 416);
    char err[128];
    int ow, oh;
    assert_int_equal(be_image_letterbox(im, dog, len, 416, 416, direct, &ow, &oh, err,
                                        sizeof err), 0);
    assert_int_equal(ow, 768);
    assert_int_equal(oh, 576);
    free(direct);
    free(mine);
    free_image(src);
    free_image(ref);
    free(rgb);
    free(dog);
    be_image_destroy(im);
}

/* A large frame is decoded with DCT scaling, and gives the same original size back. */
static void test_big_frame_scaled(void **state)
{
    (void)state;
    int W = 3072, H = 2304;
    uint8_t *rgb = malloc((size_t)W * H * 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = rgb + ((size_t)y * W + x) * 3;
            p[0] = (uint8_t)(x / 12);
            p[1] = (uint8_t)(y / 9);
            p[2] = (uint8_t)((x + y) / 21);
        }
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long jlen = 0;
    assert_int_equal(tjCompress2(tj, rgb, W, 0, H, TJPF_RGB, &jpeg, &jlen, TJSAMP_420, 90, 0), 0);
    be_image_t *im = make();
    float *in = malloc(sizeof(float) * 3 * 416 * 416);
    char err[128];
    int w, h;
    assert_int_equal(be_image_letterbox(im, jpeg, jlen, 416, 416, in, &w, &h, err, sizeof err), 0);
    assert_int_equal(w, W);
    assert_int_equal(h, H);
    /* The gradient survives: top-left dark, bottom-right bright in every channel. */
    int top = (416 - 312) / 2;
    assert_true(in[top * 416 + 1] < 0.1f);
    assert_true(in[(top + 310) * 416 + 414] > 0.7f);
    free(in);
    be_image_destroy(im);
    tjFree(jpeg);
    tjDestroy(tj);
    free(rgb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_and_errors),
        cmocka_unit_test(test_letterbox_matches_darknet),
        cmocka_unit_test(test_big_frame_scaled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
