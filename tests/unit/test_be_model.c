/* The darknet model: yolov3-tiny with generated weights (no pretrained weights exist on these
 * machines) runs on dog.jpg, every box lies inside the image, runs are repeatable, weights
 * generation is deterministic, and bad files are errors, not exits. The fast forward pass
 * gives stock darknet's boxes; the network runs at another input size on request; a darknet
 * classifier (Debian's darknet.cfg with the ImageNet names) answers its top-k classes. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <darknet.h>

#include "err.h"
#include "image.h"
#include "model.h"
#include "nms.h"

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
    const char *files[] = {"yolov3-tiny.weights", "again.weights", "seed2.weights",
                           "darknet.weights"};
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
    assert_int_equal(be_image_letterbox(im, dog, len, BE_PREP_DARKNET, BE_DECODE_EXACT,
                                        be_model_width(m), be_model_height(m), be_model_input(m),
                                        &w, &h, NULL, NULL, err, sizeof err),
                     0);
    free(dog);
    assert_int_equal(w, 768);
    assert_int_equal(h, 576);
    return be_model_detect(m, w, h, thresh, 0, dets, cap);
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

    /* A deadline (issue 11) already past when the forward pass would start: PROTO_EDEADLINE,
     * nothing written; one far away: the same answer as without. (Stops between layers:
     * test_be_fast's test_stop_between_layers; end to end: test_be_serve.) */
    assert_int_equal(be_model_fast(m), 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    memset(b, 0x5a, CAP * sizeof *b);
    assert_int_equal(be_model_detect_until(m, 768, 576, 0.01f, 0, now - 1, b, CAP),
                     PROTO_EDEADLINE);
    for (size_t i = 0; i < CAP * sizeof *b; i++)
        assert_int_equal(((const uint8_t *)b)[i], 0x5a); /* untouched */
    /* The input buffer still holds the letterboxed dog.jpg: the same boxes as before. */
    assert_int_equal(be_model_detect_until(m, 768, 576, 0.01f, 0, now + 600000, b, CAP), na);
    for (int i = 0; i < na; i++)
        assert_true(a[i].confidence == b[i].confidence && a[i].x == b[i].x);
    free(a);
    free(b);
    be_image_destroy(im);
    be_model_free(m);
}

/* The fast path (the default) and stock darknet (--stock-darknet) give the same boxes. */
static void test_fast_equals_stock(void **state)
{
    (void)state;
    be_model_t *fast = NULL, *stock = NULL;
    be_image_t *im = NULL;
    char err[256] = "";
    be_model_opts_t o = {
        .cfg = CFG, .weights = weights, .names = NAMES, .threshold = 0.25f, .nms = 0.45f};
    assert_int_equal(be_model_load(&fast, &o, err, sizeof err), 0);
    o.stock = 1;
    assert_int_equal(be_model_load(&stock, &o, err, sizeof err), 0);
    assert_int_equal(be_model_fast(fast), 1);
    assert_int_equal(be_model_fast(stock), 0);
    assert_int_equal(be_image_create(&im, (be_image_limits_t){64000000, 16384}), 0);
    /* No cap (the wire's maximum), so both sides hold every box over the threshold: random
     * weights give many near-equal scores, whose order may differ by float rounding. */
    enum { CAP = PROTO_DETS_MAX };
    proto_det_t *a = calloc(CAP, sizeof *a), *b = calloc(CAP, sizeof *b);
    /* The generated weights score most boxes high: the lowest threshold that leaves fewer
     * than CAP boxes is used. */
    static const float ths[] = {0.3f, 0.5f, 0.7f, 0.9f, 0.95f, 0.99f, 0.999f};
    int na = CAP, nb = 0;
    float th = 0;
    for (size_t t = 0; t < sizeof ths / sizeof ths[0] && na >= CAP; t++) {
        th = ths[t];
        na = run_dog(fast, im, th, a, CAP);
    }
    nb = run_dog(stock, im, th, b, CAP);
    print_message("dog.jpg over %.3f: fast %d, stock %d boxes\n", th, na, nb);
    assert_true(na > 0 && na < CAP);
    assert_int_equal(na, nb);
    char *used = calloc((size_t)nb, 1);
    for (int i = 0; i < na; i++) {
        int found = 0;
        for (int j = 0; j < nb && !found; j++)
            if (!used[j] && a[i].class_id == b[j].class_id &&
                fabsf(a[i].confidence - b[j].confidence) <= 1e-4f &&
                fabsf(a[i].x - b[j].x) <= 0.05f && fabsf(a[i].y - b[j].y) <= 0.05f &&
                fabsf(a[i].w - b[j].w) <= 0.05f && fabsf(a[i].h - b[j].h) <= 0.05f)
                used[j] = 1, found = 1;
        assert_true(found);
    }
    free(used);
    free(a);
    free(b);
    be_image_destroy(im);
    be_model_free(fast);
    be_model_free(stock);
}

/* Detections in a canonical order (class, confidence, x, y), for comparing two lists. */
static int by_class_conf_xy(const void *a, const void *b)
{
    const proto_det_t *p = a, *q = b;
    if (p->class_id != q->class_id)
        return p->class_id < q->class_id ? -1 : 1;
    if (p->confidence != q->confidence)
        return p->confidence < q->confidence ? -1 : 1;
    if (p->x != q->x)
        return p->x < q->x ? -1 : 1;
    return (p->y > q->y) - (p->y < q->y);
}

/* The backend's NMS gives exactly darknet's do_nms_sort boxes: the same frame through darknet's
 * own network_predict + get_network_boxes + do_nms_sort, compared box for box, on three photos
 * at thresholds 0.5 and 0.25. With the generated (noise) weights 0.25 is the crowded case
 * (tens of thousands of boxes over 80 classes after NMS): the grid that makes the backend's
 * NMS cheap must not change a single box. */
static void test_nms_equals_darknet(void **state)
{
    (void)state;
    static const char *const photos[] = {"dog.jpg", "kite.jpg", "person.jpg"};
    static const float ths[] = {0.5f, 0.25f};
    be_model_t *m = NULL;
    be_image_t *im = NULL;
    char err[256] = "";
    be_model_opts_t o = {.cfg = CFG, .weights = weights, .names = NAMES, .threshold = 0.25f,
                         .nms = 0.45f, .stock = 1};
    assert_int_equal(be_model_load(&m, &o, err, sizeof err), 0);
    assert_int_equal(be_image_create(&im, (be_image_limits_t){64000000, 16384}), 0);
    network *net = load_network((char *)CFG, weights, 0);
    set_batch_network(net, 1);
    enum { CAP = 200000 };
    proto_det_t *a = calloc(CAP, sizeof *a), *b = calloc(CAP, sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    int crowded = 0;
    for (size_t p = 0; p < sizeof photos / sizeof photos[0]; p++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", FG_DARKNET_DATA, photos[p]);
        size_t len;
        uint8_t *jpg = read_file_all(path, &len);
        int w, h;
        assert_int_equal(be_image_letterbox(im, jpg, len, BE_PREP_DARKNET, BE_DECODE_EXACT, 416,
                                            416, net->input, &w, &h, NULL, NULL, err, sizeof err),
                         0);
        network_predict(net, net->input);
        memcpy(be_model_input(m), net->input, sizeof(float) * 3 * 416 * 416);
        free(jpg);
        for (size_t t = 0; t < sizeof ths / sizeof ths[0]; t++) {
            const float th = ths[t];
            int na = be_model_detect(m, w, h, th, 0, a, CAP);
            assert_true(na > 0 && na < CAP);
            int nb = 0, count = 0;
            detection *d = get_network_boxes(net, w, h, th, 0.5f, NULL, 1, &nb);
            do_nms_sort(d, nb, 80, 0.45f);
            for (int i = 0; i < nb; i++) {
                box bb = d[i].bbox;
                if (!isfinite(bb.x) || !isfinite(bb.y) || !isfinite(bb.w) || !isfinite(bb.h))
                    continue; /* the backend drops those, as it always has */
                for (int k = 0; k < 80; k++) {
                    if (!(d[i].prob[k] > th))
                        continue;
                    assert_true(count < CAP);
                    /* Boxes are clamped into the image, as the backend answers them. */
                    b[count++] =
                        (proto_det_t){.class_id = k,
                                      .confidence = fminf(d[i].prob[k], 1),
                                      .x = fminf(fmaxf((bb.x - bb.w / 2) * w, 0), (float)w),
                                      .y = fminf(fmaxf((bb.y - bb.h / 2) * h, 0), (float)h)};
                }
            }
            free_detections(d, nb);
            print_message("%-10s over %.2f: %d candidate boxes; darknet's do_nms_sort keeps %d, "
                          "framegate's NMS %d\n",
                          photos[p], th, nb, count, na);
            assert_int_equal(count, na);
            qsort(a, (size_t)na, sizeof *a, by_class_conf_xy);
            qsort(b, (size_t)count, sizeof *b, by_class_conf_xy);
            for (int i = 0; i < na; i++) {
                assert_int_equal(a[i].class_id, b[i].class_id);
                assert_true(a[i].confidence == b[i].confidence);
                assert_true(fabsf(a[i].x - b[i].x) < 1e-3f);
                assert_true(fabsf(a[i].y - b[i].y) < 1e-3f);
            }
            crowded += th < 0.3f && nb > 500;
        }
    }
    assert_true(crowded >= 1); /* the case the grid is for was exercised */
    free(a);
    free(b);
    free_network(net);
    be_image_destroy(im);
    be_model_free(m);
}

/* be_nms against darknet's do_nms_sort on made-up boxes whose probabilities tie a lot (five
 * values) and overlap a lot, some without objectness: darknet keeps tied boxes in the order
 * the previous class's sort left (glibc's qsort is a merge sort), so be_nms's sorts (qsort
 * for a few keys, a radix sort for many) must keep them so too, or another box of a tied
 * pair survives. 400 boxes (over 300 keys a class: the radix sort), 3 classes, 6 rounds. */
static void test_nms_ties_equal_darknet(void **state)
{
    (void)state;
    enum { N = 400, CLASSES = 3 };
    static const float values[] = {0, 0.3f, 0.3f, 0.5f, 0.7f, 0.7f, 0.9f};
    detection *a = calloc(N, sizeof *a), *b = calloc(N, sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    be_nms_t scratch = {0};
    srand(7);
    int differs = 0;
    for (int round = 0; round < 6; round++) {
        float th = round % 2 ? 0.45f : 0.3f;
        for (int i = 0; i < N; i++) {
            /* centres and sizes on a coarse lattice: many boxes overlap, some exactly */
            box bb = {.x = 0.2f + 0.05f * (rand() % 13), .y = 0.2f + 0.05f * (rand() % 13),
                      .w = 0.05f * (1 + rand() % 8), .h = 0.05f * (1 + rand() % 8)};
            a[i] = (detection){.bbox = bb, .classes = CLASSES, .objectness = i % 17 ? 1.0f : 0};
            a[i].prob = malloc(CLASSES * sizeof(float));
            assert_non_null(a[i].prob);
            for (int k = 0; k < CLASSES; k++)
                a[i].prob[k] = values[rand() % (int)(sizeof values / sizeof values[0])];
            b[i] = a[i];
            b[i].prob = malloc(CLASSES * sizeof(float));
            assert_non_null(b[i].prob);
            memcpy(b[i].prob, a[i].prob, CLASSES * sizeof(float));
        }
        float *orig[N]; /* a box's identity: its prob array, which moves with it */
        for (int i = 0; i < N; i++)
            orig[i] = a[i].prob;
        do_nms_sort(a, N, CLASSES, th); /* reorders a */
        assert_int_equal(be_nms(&scratch, b, N, CLASSES, th), 0);
        for (int j = 0; j < N; j++) {
            int i = 0;
            while (i < N && orig[i] != a[j].prob)
                i++;
            assert_true(i < N);
            differs += memcmp(a[j].prob, b[i].prob, CLASSES * sizeof(float)) != 0;
        }
        for (int i = 0; i < N; i++) {
            free(a[i].prob);
            free(b[i].prob);
        }
    }
    be_nms_free(&scratch);
    free(a);
    free(b);
    assert_int_equal(differs, 0);
}

static void test_input_size(void **state)
{
    (void)state;
    be_model_t *m = NULL;
    be_image_t *im = NULL;
    char err[256] = "";
    be_model_opts_t o = {.cfg = CFG, .weights = weights, .names = NAMES, .threshold = 0.25f,
                         .nms = 0.45f, .input_w = 320, .input_h = 256};
    assert_int_equal(be_model_load(&m, &o, err, sizeof err), 0);
    assert_int_equal(be_model_width(m), 320);
    assert_int_equal(be_model_height(m), 256);
    assert_int_equal(be_image_create(&im, (be_image_limits_t){64000000, 16384}), 0);
    proto_det_t dets[64];
    int n = run_dog(m, im, 0.05f, dets, 64);
    assert_true(n > 0);
    for (int i = 0; i < n; i++)
        assert_true(dets[i].x + dets[i].w <= 768.0f && dets[i].y + dets[i].h <= 576.0f);
    be_image_destroy(im);
    be_model_free(m);
    o.input_w = 320;
    o.input_h = 0; /* one side only */
    assert_int_equal(be_model_load(&m, &o, err, sizeof err), PROTO_EINVAL);
}

/* A classifier: k classes, most probable first, probabilities of a softmax (positive, summing
 * to at most 1), ImageNet labels; the fast path and stock darknet agree on them. */
static void test_classifier(void **state)
{
    (void)state;
    char err[256] = "", w[160];
    snprintf(w, sizeof w, "%s/darknet.weights", dir);
    assert_int_equal(be_model_gen_weights(FG_DARKNET_CFG "/darknet.cfg", w, 1, err, sizeof err),
                     0);
    be_model_t *m = NULL, *stock = NULL;
    be_image_t *im = NULL;
    be_model_opts_t o = {.cfg = FG_DARKNET_CFG "/darknet.cfg",
                         .weights = w,
                         .names = FG_DARKNET_DATA "/imagenet.shortnames.list",
                         .top_k = 5};
    assert_int_equal(be_model_load(&m, &o, err, sizeof err), 0);
    o.stock = 1;
    assert_int_equal(be_model_load(&stock, &o, err, sizeof err), 0);
    assert_int_equal(be_model_kind(m), BE_MODEL_CLASSIFIER);
    assert_int_equal(be_model_classes(m), 1000);
    assert_int_equal(be_image_create(&im, (be_image_limits_t){64000000, 16384}), 0);
    proto_det_t a[10], b[10];
    int na = run_dog(m, im, 0, a, 10);
    int nb = run_dog(stock, im, 0, b, 10);
    assert_int_equal(na, 5);
    assert_int_equal(nb, 5);
    double sum = 0;
    for (int i = 0; i < na; i++) {
        print_message("class %d %.*s %.5f\n", a[i].class_id, a[i].label_len, a[i].label,
                      a[i].confidence);
        assert_true(a[i].confidence > 0 && a[i].confidence <= 1);
        assert_true(a[i].w == 0 && a[i].h == 0 && a[i].x == 0 && a[i].y == 0);
        assert_true(a[i].label_len > 0);
        if (i > 0)
            assert_true(a[i - 1].confidence >= a[i].confidence);
        assert_int_equal(a[i].class_id, b[i].class_id);
        assert_float_equal(a[i].confidence, b[i].confidence, 1e-4);
        sum += a[i].confidence;
    }
    assert_true(sum <= 1.0 + 1e-4);
    /* top_k per request, capped by the caller's room. */
    assert_int_equal(be_model_detect(m, 768, 576, 0, 3, a, 10), 3);
    assert_int_equal(be_model_detect(m, 768, 576, 0, 50, a, 10), 10);
    be_image_destroy(im);
    be_model_free(m);
    be_model_free(stock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gen_weights_deterministic),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_detect_dog),
        cmocka_unit_test(test_fast_equals_stock),
        cmocka_unit_test(test_nms_equals_darknet),
        cmocka_unit_test(test_nms_ties_equal_darknet),
        cmocka_unit_test(test_input_size),
        cmocka_unit_test(test_classifier),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
