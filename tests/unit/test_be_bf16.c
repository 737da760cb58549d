/* The oneDNN engine's opt-in bf16 precision (backend/dnnl.h, be_model_opts_t.precision) on real
 * models and real JPEGs: face-tiny (scripts/models.sh) on the face frames of faceapi-ref, and
 * yolov3-tiny (~/.cache/framegate/models/yolov3-tiny.weights, generated: its output is held
 * instead, see below) on darknet's photos. bf16's detections must pair with fp32's of the same
 * model (the tolerance of a different JPEG decoder, issue 15):
 *   - every fp32 box scoring at least MARGIN above the threshold has a bf16 box of the same
 *     class at IoU >= MIN_IOU with |score drift| <= MAX_DRIFT, and the other way round;
 *   - a box found by one precision only scores within MARGIN of the threshold (a near-threshold
 *     box may cross it on rounding alone, as with decode = fast).
 * bench/results/inference/README.md has the measured agreement (bench/inference --bf16 1).
 * Where the CPU has no AVX512_BF16 the model runs fp32 (be_model_precision says so) and the
 * comparison still holds trivially. The fallback is forced with be_dnnl_refuse_bf16: fp32's
 * exact answers and one line on stderr. Skipped (passes) when the models are not in the cache. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <darknet.h>

#include "dnnl.h"
#include "err.h"
#include "image.h"
#include "model.h"

#define MIN_IOU 0.97f
#define MAX_DRIFT 0.03f
#define MARGIN 0.03f

static char cache[512];

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static float iou(const proto_det_t *a, const proto_det_t *b)
{
    float x0 = fmaxf(a->x, b->x), y0 = fmaxf(a->y, b->y);
    float x1 = fminf(a->x + a->w, b->x + b->w), y1 = fminf(a->y + a->h, b->y + b->h);
    float inter = fmaxf(0, x1 - x0) * fmaxf(0, y1 - y0);
    float u = a->w * a->h + b->w * b->h - inter;
    return u > 0 ? inter / u : 0;
}

/* The same answer, labels aside (they point into each model). */
static int same_dets(const proto_det_t *a, const proto_det_t *b, int n)
{
    for (int i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], offsetof(proto_det_t, label)) != 0)
            return 0;
    return 1;
}

typedef struct {
    const char *cfg, *weights, *names;
    be_prep_t prep;
    float threshold, nms;
} model_t;

static be_model_t *load(const model_t *mm, be_precision_t p)
{
    char err[512];
    be_model_opts_t o = {.cfg = mm->cfg,
                         .weights = mm->weights,
                         .names = mm->names,
                         .threshold = mm->threshold,
                         .nms = mm->nms,
                         .prep = mm->prep,
                         .threads = 1,
                         .engine = BE_ENGINE_DNNL,
                         .precision = p};
    be_model_t *m = NULL;
    if (be_model_load(&m, &o, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(be_model_engine(m), BE_ENGINE_DNNL);
    return m;
}

/* Letterboxes `jpeg` into m's input and detects: the number of boxes (>= 0). */
static int detect(be_model_t *m, be_image_t *im, const model_t *mm, const uint8_t *jpeg, size_t len,
                  proto_det_t *dets, int cap)
{
    char err[256];
    int w, h;
    assert_int_equal(be_image_letterbox(im, jpeg, len, mm->prep, BE_DECODE_EXACT, be_model_width(m),
                                        be_model_height(m), be_model_input(m), &w, &h, NULL, NULL,
                                        err, sizeof err),
                     0);
    int n = be_model_detect(m, w, h, 0, 0, dets, cap);
    assert_true(n >= 0);
    return n;
}

/* Pairs a's boxes with b's (same class, greedy by IoU) and holds them to the tolerance above.
 * Returns the pairs; *min_iou / *max_drift accumulate. */
static int pair_check(const char *what, const proto_det_t *a, int na, const proto_det_t *b, int nb,
                      float thresh, float *min_iou, float *max_drift)
{
    char used[64] = {0};
    int pairs = 0;
    for (int i = 0; i < na; i++) {
        int best = -1;
        float bi = 0;
        for (int j = 0; j < nb; j++) {
            float v = iou(&a[i], &b[j]);
            if (!used[j] && a[i].class_id == b[j].class_id && v > bi) {
                bi = v;
                best = j;
            }
        }
        if (best < 0 || bi < MIN_IOU) {
            if (a[i].confidence >= thresh + MARGIN)
                fail_msg("%s: fp32 box %d (score %.4f) has no bf16 pair (best IoU %.3f)", what, i,
                         a[i].confidence, bi);
            continue;
        }
        used[best] = 1;
        pairs++;
        float ds = fabsf(a[i].confidence - b[best].confidence);
        *min_iou = fminf(*min_iou, bi);
        *max_drift = fmaxf(*max_drift, ds);
        if (ds > MAX_DRIFT)
            fail_msg("%s: box %d score %.4f (fp32) vs %.4f (bf16)", what, i, a[i].confidence,
                     b[best].confidence);
    }
    for (int j = 0; j < nb; j++)
        if (!used[j] && b[j].confidence >= thresh + MARGIN)
            fail_msg("%s: bf16 box %d (score %.4f) has no fp32 pair", what, j, b[j].confidence);
    return pairs;
}

/* bf16 against fp32 on `frames`; asserts at least `min_pairs` pairs in all (the test sees real
 * detections, not two empty lists). */
static void agree(const model_t *mm, const char *const *frames, size_t nframes, int min_pairs)
{
    be_model_t *f = load(mm, BE_PRECISION_FP32), *b = load(mm, BE_PRECISION_BF16);
    assert_int_equal(be_model_precision(f), BE_PRECISION_FP32);
    int bf16 = be_dnnl_bf16_supported();
    assert_int_equal(be_model_precision(b), bf16 ? BE_PRECISION_BF16 : BE_PRECISION_FP32);
    be_image_t *im = NULL;
    assert_int_equal(be_image_create(&im, (be_image_limits_t){64000000, 16384}), 0);
    int pairs = 0, boxes = 0, differ = 0;
    float min_iou = 1, max_drift = 0;
    for (size_t i = 0; i < nframes; i++) {
        size_t len;
        uint8_t *jpeg = read_all(frames[i], &len);
        assert_non_null(jpeg);
        proto_det_t da[64], db[64];
        int na = detect(f, im, mm, jpeg, len, da, 64);
        int nb = detect(b, im, mm, jpeg, len, db, 64);
        /* bf16 really runs: its answers are not fp32's bit for bit */
        differ += na != nb || !same_dets(da, db, na);
        pairs += pair_check(frames[i], da, na, db, nb, mm->threshold, &min_iou, &max_drift);
        boxes += na;
        free(jpeg);
    }
    print_message("%s: %zu frames, %d boxes (fp32), %d paired, min IoU %.4f, max |score drift| "
                  "%.4f (precision %s)\n",
                  mm->cfg, nframes, boxes, pairs, min_iou, max_drift,
                  be_precision_name(be_model_precision(b)));
    assert_true(pairs >= min_pairs);
    if (bf16)
        assert_true(differ > 0);
    be_image_destroy(im);
    be_model_free(f);
    be_model_free(b);
}

static int have(const char *path)
{
    return access(path, R_OK) == 0;
}

static void test_face_bf16_pairs_with_fp32(void **state)
{
    (void)state;
    char cfg[600], weights[600], names[600], fr[8][700];
    snprintf(cfg, sizeof cfg, "%s/models/face-tiny.cfg", cache);
    snprintf(weights, sizeof weights, "%s/models/face-tiny.weights", cache);
    snprintf(names, sizeof names, "%s/models/face.names", cache);
    if (!have(cfg) || !have(weights) || !have(names)) {
        print_message("face-tiny not in %s: skipped\n", cache);
        return;
    }
    static const char *const jpgs[] = {
        "frame-720p-small-face.jpg",   "frame-720p-face.jpg",
        "frame-1080p-faces.jpg",       "frame-720p-dark.jpg",
        "astronaut-gray.jpg",          "astronaut-dark.jpg",
        "astronaut-edge-top-left.jpg", "astronaut-edge-bottom-right.jpg"};
    const char *frames[8];
    size_t n = 0;
    for (size_t i = 0; i < 8; i++) {
        snprintf(fr[n], sizeof fr[n], "%s/faceapi-ref/%s", cache, jpgs[i]);
        if (have(fr[n]))
            frames[n] = fr[n], n++;
    }
    assert_true(n > 0);
    model_t mm = {cfg, weights, names, BE_PREP_FACEAPI, 0.5f, 0.4f};
    agree(&mm, frames, n, (int)n - 2);
}

/* yolov3-tiny's weights here are darknet's random initialisation (scripts/models.sh): hundreds
 * of near-equal boxes whose NMS order flips on any rounding, so boxes cannot pair. What is held
 * instead is the network's output (both [yolo] heads) on darknet's photos: the logistic
 * entries (objectness, classes, x, y) within MAX_DRIFT of fp32's, and the raw w/h entries within
 * WH_REL of fp32's largest. */
#define WH_REL 0.05f
static void test_yolov3_tiny_bf16_output_near_fp32(void **state)
{
    (void)state;
    char weights[600], err[256];
    snprintf(weights, sizeof weights, "%s/models/yolov3-tiny.weights", cache);
    if (!have(weights)) {
        print_message("%s not found: skipped\n", weights);
        return;
    }
    static const char *const frames[] = {"dog.jpg", "person.jpg", "horses.jpg", "kite.jpg"};
    network *net = load_network((char *)FG_DARKNET_CFG "/yolov3-tiny.cfg", weights, 0);
    set_batch_network(net, 1);
    be_dnnl_t *f = NULL, *b = NULL;
    assert_int_equal(be_dnnl_create_precision(&f, net, 1, 0, BE_PRECISION_FP32, err, sizeof err),
                     0);
    assert_int_equal(be_dnnl_create_precision(&b, net, 1, 0, BE_PRECISION_BF16, err, sizeof err),
                     0);
    int bf16 = be_dnnl_bf16_supported();
    assert_int_equal(be_dnnl_precision(b), bf16 ? BE_PRECISION_BF16 : BE_PRECISION_FP32);
    be_image_t *im = NULL;
    assert_int_equal(be_image_create(&im, (be_image_limits_t){64000000, 16384}), 0);
    float *in = malloc((size_t)net->inputs * sizeof(float));
    size_t total = 0; /* both heads' outputs */
    for (int k = 0; k < net->n; k++)
        total += net->layers[k].type == YOLO ? (size_t)net->layers[k].outputs : 0;
    float *ref = malloc(total * 2 * sizeof(float));
    assert_non_null(in);
    assert_non_null(ref);
    float dlog = 0, dwh = 0;
    int differ = 0;
    for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++) {
        char path[300];
        size_t len;
        int w, h;
        snprintf(path, sizeof path, "%s/%s", FG_DARKNET_DATA, frames[i]);
        uint8_t *jpeg = read_all(path, &len);
        assert_non_null(jpeg);
        assert_int_equal(be_image_letterbox(im, jpeg, len, BE_PREP_DARKNET, BE_DECODE_EXACT, net->w,
                                            net->h, in, &w, &h, NULL, NULL, err, sizeof err),
                         0);
        free(jpeg);
        /* both heads: fp32's outputs first, then bf16's */
        for (int pass = 0; pass < 2; pass++) {
            assert_non_null(be_dnnl_predict_stop(pass ? b : f, in, NULL, NULL));
            for (int k = 0, o = 0; k < net->n; k++)
                if (net->layers[k].type == YOLO) {
                    memcpy(ref + (size_t)pass * total + o, net->layers[k].output,
                           (size_t)net->layers[k].outputs * sizeof(float));
                    o += net->layers[k].outputs;
                }
        }
        float wmax = 0;
        for (int k = 0, o = 0; k < net->n; k++) {
            const layer *l = &net->layers[k];
            if (l->type != YOLO)
                continue;
            size_t wh = (size_t)l->w * l->h;
            for (int e = 0; e < l->outputs; e++) {
                size_t entry = ((size_t)e / wh) % (size_t)(l->classes + 5);
                float a = ref[o + e], c = ref[total + o + e], d = fabsf(a - c);
                differ += a != c;
                if (entry == 2 || entry == 3) {
                    dwh = fmaxf(dwh, d);
                    wmax = fmaxf(wmax, fabsf(a));
                } else {
                    dlog = fmaxf(dlog, d);
                }
            }
            o += l->outputs;
        }
        print_message("yolov3-tiny %s: max |drift| %.4f (logistic entries), %.4f (raw w/h, "
                      "largest %.2f)\n",
                      frames[i], dlog, dwh, wmax);
        assert_true(dlog <= MAX_DRIFT);
        assert_true(dwh <= WH_REL * wmax);
    }
    if (bf16)
        assert_true(differ > 0);
    free(in);
    free(ref);
    be_image_destroy(im);
    be_dnnl_destroy(f);
    be_dnnl_destroy(b);
    free_network(net);
}

/* bf16 refused (as on a CPU without AVX512_BF16): the model loads, runs fp32 with fp32's exact
 * answers, and says so in one stderr line. */
static void test_bf16_refused_falls_back_to_fp32(void **state)
{
    (void)state;
    char weights[600], log[] = "/tmp/fg-bf16-stderr-XXXXXX";
    snprintf(weights, sizeof weights, "%s/models/yolov3-tiny.weights", cache);
    if (!have(weights)) {
        print_message("%s not found: skipped\n", weights);
        return;
    }
    model_t mm = {FG_DARKNET_CFG "/yolov3-tiny.cfg",
                  weights,
                  FG_DARKNET_DATA "/coco.names",
                  BE_PREP_DARKNET,
                  0.25f,
                  0.45f};
    int fd = mkstemp(log);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    be_dnnl_refuse_bf16(1);
    assert_int_equal(be_dnnl_bf16_supported(), 0);
    be_model_t *b = load(&mm, BE_PRECISION_BF16);
    be_dnnl_refuse_bf16(0);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    size_t len;
    char *text = (char *)read_all(log, &len);
    close(fd);
    unlink(log);
    assert_non_null(text);
    text[len - 1] = '\0';
    /* darknet prints its layers to stderr too: the lines that speak of bf16 are counted */
    int lines = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n"))
        if (strstr(line, "bf16") != NULL) {
            print_message("stderr: %s\n", line);
            assert_non_null(strstr(line, "bf16 not available"));
            assert_non_null(strstr(line, "running fp32"));
            lines++;
        }
    assert_int_equal(lines, 1);
    free(text);
    assert_int_equal(be_model_precision(b), BE_PRECISION_FP32);

    be_model_t *f = load(&mm, BE_PRECISION_FP32);
    be_image_t *im = NULL;
    assert_int_equal(be_image_create(&im, (be_image_limits_t){64000000, 16384}), 0);
    uint8_t *jpeg = read_all(FG_DARKNET_DATA "/dog.jpg", &len);
    assert_non_null(jpeg);
    proto_det_t da[64], db[64];
    int na = detect(f, im, &mm, jpeg, len, da, 64), nb = detect(b, im, &mm, jpeg, len, db, 64);
    assert_true(na > 0);
    assert_int_equal(na, nb);
    assert_true(same_dets(da, db, na));
    free(jpeg);
    be_image_destroy(im);
    be_model_free(f);
    be_model_free(b);
}

static void test_precision_names(void **state)
{
    (void)state;
    assert_int_equal(be_precision_parse("fp32"), BE_PRECISION_FP32);
    assert_int_equal(be_precision_parse("bf16"), BE_PRECISION_BF16);
    assert_int_equal(be_precision_parse("BF16"), -1);
    assert_int_equal(be_precision_parse("int8"), -1);
    assert_int_equal(be_precision_parse(NULL), -1);
    assert_string_equal(be_precision_name(BE_PRECISION_BF16), "bf16");
    assert_string_equal(be_precision_name(BE_PRECISION_FP32), "fp32");
}

int main(void)
{
    const char *c = getenv("FRAMEGATE_CACHE"), *home = getenv("HOME");
    if (c != NULL && c[0] != '\0')
        snprintf(cache, sizeof cache, "%s", c);
    else
        snprintf(cache, sizeof cache, "%s/.cache/framegate", home ? home : "/root");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precision_names),
        cmocka_unit_test(test_face_bf16_pairs_with_fp32),
        cmocka_unit_test(test_yolov3_tiny_bf16_output_near_fp32),
        cmocka_unit_test(test_bf16_refused_falls_back_to_fp32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
