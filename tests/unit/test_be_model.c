/* The darknet model: yolov3-tiny with generated weights (no pretrained weights exist on these
 * machines) runs on dog.jpg, every box lies inside the image, runs are repeatable, weights
 * generation is deterministic, and bad files are errors, not exits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "image.h"
#include "model.h"

#define CFG FG_DARKNET_CFG "/yolov3-tiny.cfg"
#define NAMES FG_DARKNET_DATA "/coco.names"

static char dir[64];
static char weights[128];

static uint8_t *read_file_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int setup(void **state)
{
    (void)state;
    char err[256];
    snprintf(dir, sizeof dir, "/tmp/fg-be-model-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(weights, sizeof weights, "%s/yolov3-tiny.weights", dir);
    return be_model_gen_weights(CFG, weights, 1, err, sizeof err);
}

static int teardown(void **state)
{
    (void)state;
    char path[160];
    const char *files[] = {"yolov3-tiny.weights", "again.weights", "seed2.weights"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    return 0;
}

static void test_gen_weights_deterministic(void **state)
{
    (void)state;
    char err[256], again[160], seed2[160];
    snprintf(again, sizeof again, "%s/again.weights", dir);
    snprintf(seed2, sizeof seed2, "%s/seed2.weights", dir);
    assert_int_equal(be_model_gen_weights(CFG, again, 1, err, sizeof err), 0);
    assert_int_equal(be_model_gen_weights(CFG, seed2, 2, err, sizeof err), 0);
    size_t a, b, c;
    uint8_t *wa = read_file_all(weights, &a), *wb = read_file_all(again, &b);
    uint8_t *wc = read_file_all(seed2, &c);
    /* yolov3-tiny has 8.8 M parameters: the file is ~35 MB of them. */
    assert_true(a > 30u << 20);
    assert_int_equal(a, b);
    assert_memory_equal(wa, wb, a);
    assert_int_equal(a, c);
    assert_true(memcmp(wa, wc, a) != 0);
    free(wa);
    free(wb);
    free(wc);
}

static void test_bad_files(void **state)
{
    (void)state;
    be_model_t *m = NULL;
    char err[256] = "";
    be_model_opts_t o = {.cfg = CFG,
                         .weights = "/nonexistent/w.weights",
                         .names = NAMES,
                         .threshold = 0.25f,
                         .nms = 0.45f};
    assert_int_equal(be_model_load(&m, &o, err, sizeof err), PROTO_EMODEL);
    assert_non_null(strstr(err, "/nonexistent/w.weights"));
    /* A cfg darknet would assert() on: refused before darknet sees it. */
    o.weights = weights;
    o.cfg = NAMES;
    assert_int_equal(be_model_load(&m, &o, err, sizeof err), PROTO_EMODEL);
    assert_non_null(strstr(err, NAMES));
    o.cfg = NULL;
    assert_int_equal(be_model_load(&m, &o, err, sizeof err), PROTO_EINVAL);
    assert_null(m);
    assert_int_equal(be_model_gen_weights("/nonexistent.cfg", "/tmp/x", 1, err, sizeof err),
                     PROTO_EMODEL);
}

static int run_dog(be_model_t *m, be_image_t *im, float thresh, proto_det_t *dets, int cap)
{
    size_t len;
    uint8_t *dog = read_file_all(FG_DARKNET_DATA "/dog.jpg", &len);
    int w, h;
    char err[128];
    assert_int_equal(be_image_letterbox(im, dog, len, be_model_width(m), be_model_height(m),
                                        be_model_input(m), &w, &h, NULL, NULL, err, sizeof err),
                     0);
    free(dog);
    assert_int_equal(w, 768);
    assert_int_equal(h, 576);
    return be_model_detect(m, w, h, thresh, dets, cap);
}

static void test_detect_dog(void **state)
{
    (void)state;
    be_model_t *m = NULL;
    be_image_t *im = NULL;
    char err[256] = "";
    be_model_opts_t o = {
        .cfg = CFG, .weights = weights, .names = NAMES, .threshold = 0.25f, .nms = 0.45f};
    assert_int_equal(be_model_load(&m, &o, err, sizeof err), 0);
    assert_int_equal(be_model_width(m), 416);
    assert_int_equal(be_model_height(m), 416);
    assert_int_equal(be_model_classes(m), 80);
    be_image_limits_t lim = {.max_pixels = 64000000, .max_side = 16384};
    assert_int_equal(be_image_create(&im, lim), 0);

    /* Random weights score near 0.5 per class at best: a low threshold gives many boxes to
     * check, the default one gives a (possibly empty) subset of them. */
    enum { CAP = 1000 };
    proto_det_t *a = calloc(CAP, sizeof *a), *b = calloc(CAP, sizeof *b);
    int na = run_dog(m, im, 0.01f, a, CAP);
    assert_true(na <= CAP);
    int nb = run_dog(m, im, 0.01f, b, CAP);
    print_message("dog.jpg: %d detections over 0.01\n", na);
    assert_true(na > 0);
    assert_int_equal(na, nb);
    for (int i = 0; i < na; i++) {
        assert_int_equal(a[i].class_id, b[i].class_id);
        assert_true(a[i].confidence == b[i].confidence);
        assert_true(a[i].x == b[i].x && a[i].y == b[i].y && a[i].w == b[i].w && a[i].h == b[i].h);
        assert_true(a[i].class_id >= 0 && a[i].class_id < 80);
        assert_true(a[i].confidence > 0.01f && a[i].confidence <= 1.0f);
        assert_true(a[i].x >= 0 && a[i].y >= 0 && a[i].w >= 0 && a[i].h >= 0);
        assert_true(a[i].x + a[i].w <= 768.0f && a[i].y + a[i].h <= 576.0f);
        assert_true(a[i].label_len > 0);
        if (i > 0)
            assert_true(a[i - 1].confidence >= a[i].confidence);
    }
    int nd = run_dog(m, im, 0, b, CAP); /* 0 = the model's default, 0.25 */
    print_message("dog.jpg: %d detections over 0.25\n", nd);
    assert_true(nd >= 0);
    /* A cap keeps the most confident ones. */
    proto_det_t top[5];
    int nt = run_dog(m, im, 0.01f, top, 5);
    assert_int_equal(nt, na < 5 ? na : 5);
    for (int i = 0; i < nt; i++)
        assert_true(top[i].confidence == a[i].confidence);
    for (int i = 0; i < nd; i++)
        assert_true(b[i].confidence > 0.25f);
    free(a);
    free(b);
    be_image_destroy(im);
    be_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gen_weights_deterministic),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_detect_dog),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
