/* The default model agrees with face-api itself. scripts/models.sh converted face-api's Tiny
 * Face Detector to darknet (framegate-convert) and ran face-api (pure-JS tfjs, CPU; JPEGs read
 * by jpeg-js, as face-api does in node) on astronaut.png, crops/collages of it, and JPEG
 * frames made from it and darknet's photos (720p and 1080p scenes with small faces, grayscale,
 * dark, faces cut by the edges), writing its answers to faceapi-ref/reference.json. Here
 * framegate's backend path (decode, face-api pre-processing, the converted network through
 * the fast path and through stock darknet, boxes, NMS, mapping back) runs on the same files
 * at input sizes 416 and 320 and must give the same faces (agree() says how close). Missing
 * model or reference files fail the test (CI runs models.sh first): they are never a skip. */
#include <cjson/cJSON.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "image.h"
#include "model.h"

static char cache[512];

static uint8_t *read_file_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("%s is missing: run scripts/models.sh", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static float iou(float ax, float ay, float aw, float ah, float bx, float by, float bw, float bh)
{
    float x0 = fmaxf(ax, bx), y0 = fmaxf(ay, by);
    float x1 = fminf(ax + aw, bx + bw), y1 = fminf(ay + ah, by + bh);
    float inter = fmaxf(0, x1 - x0) * fmaxf(0, y1 - y0);
    return inter / (aw * ah + bw * bh - inter);
}

/* How one photo's answers compare with face-api's. */
typedef struct {
    int n, nref;       /* faces found by framegate, by face-api */
    int matched;       /* pairs (greedy on IoU) */
    int missed, extra; /* face-api's faces without a twin, framegate's without one */
    int edge_only;     /* 1 when every missed/extra face is within `near` of the threshold */
    float min_iou, max_ds;
} cmp_t;

/* Pairs framegate's faces with face-api's (each face-api face takes its best unused IoU) and
 * measures them. A face without a twin counts as "near the threshold" when its score is
 * within `near` of it: decoders that differ by a level may move such a face across. */
static cmp_t compare(const proto_det_t *dets, int n, cJSON *want, int img_w, int img_h,
                     float thresh, float near)
{
    cmp_t c = {.n = n, .nref = cJSON_GetArraySize(want), .edge_only = 1, .min_iou = 1};
    char used[32] = {0};
    cJSON *r;
    cJSON_ArrayForEach(r, want)
    {
        float rx = (float)cJSON_GetObjectItem(r, "x")->valuedouble;
        float ry = (float)cJSON_GetObjectItem(r, "y")->valuedouble;
        float rw = (float)cJSON_GetObjectItem(r, "w")->valuedouble;
        float rh = (float)cJSON_GetObjectItem(r, "h")->valuedouble;
        float rs = (float)cJSON_GetObjectItem(r, "score")->valuedouble;
        /* face-api leaves a face cut by the image's edge reaching outside the image;
         * framegate answers in the image's pixels (clamped), so the same box is clamped here. */
        float x1 = fminf(rx + rw, (float)img_w), y1 = fminf(ry + rh, (float)img_h);
        rx = fmaxf(rx, 0);
        ry = fmaxf(ry, 0);
        rw = x1 - rx;
        rh = y1 - ry;
        int best = -1;
        float bi = 0;
        for (int i = 0; i < n && i < 32; i++) {
            float v = iou(rx, ry, rw, rh, dets[i].x, dets[i].y, dets[i].w, dets[i].h);
            if (!used[i] && v > bi) {
                bi = v;
                best = i;
            }
        }
        if (best < 0) {
            c.missed++;
            if (rs >= thresh + near)
                c.edge_only = 0;
            continue;
        }
        used[best] = 1;
        c.matched++;
        c.min_iou = fminf(c.min_iou, bi);
        c.max_ds = fmaxf(c.max_ds, fabsf(dets[best].confidence - rs));
    }
    for (int i = 0; i < n && i < 32; i++)
        if (!used[i]) {
            c.extra++;
            if (dets[i].confidence >= thresh + near)
                c.edge_only = 0;
        }
    return c;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Runs framegate on every photo of reference.json at input sizes 416 and 320 and holds it to
 * face-api's answers: PNGs (the same pixels on both sides) to IoU >= 0.99 and scores within
 * 0.01, the same number of faces; JPEGs decoded the default (exact) way to IoU >= 0.97 and
 * scores within 0.03, the decoders' tolerance (libjpeg-turbo vs jpeg-js: the IDCT and colour
 * conversion round differently by a level), where only a face scoring within 0.03 of the
 * threshold may be found on one side alone. The DCT-scaled (fast) decode is measured on the
 * JPEGs and printed, not held to anything: bench/inference reports what it costs. */
/* engine: 0 the default forward pass (oneDNN), 1 stock darknet, 2 the BLAS engine. */
static void agree(int engine)
{
    int stock = engine == 1;
    char path[700], cfg[700], weights[700], names[700], err[512];
    size_t len;
    snprintf(path, sizeof path, "%s/faceapi-ref/reference.json", cache);
    char *text = (char *)read_file_all(path, &len);
    cJSON *ref = cJSON_Parse(text);
    assert_non_null(ref);
    cJSON *images = cJSON_GetObjectItem(ref, "images");
    assert_true(cJSON_GetArraySize(images) >= 4);
    const float thresh = 0.5f;
    snprintf(cfg, sizeof cfg, "%s/models/face-tiny.cfg", cache);
    snprintf(weights, sizeof weights, "%s/models/face-tiny.weights", cache);
    snprintf(names, sizeof names, "%s/models/face.names", cache);
    be_image_t *im = NULL;
    assert_int_equal(be_image_create(&im, (be_image_limits_t){64000000, 16384}), 0);
    static const int sizes[] = {416, 320};
    int faces = 0, jpeg_faces = 0, jpegs = 0, fast_off = 0;
    float fast_iou = 1, fast_ds = 0;
    for (size_t s = 0; s < 2; s++) {
        be_model_opts_t o = {.cfg = cfg,
                             .weights = weights,
                             .names = names,
                             .threshold = thresh,
                             .nms = 0.4f,
                             .prep = BE_PREP_FACEAPI,
                             .input_w = sizes[s],
                             .input_h = sizes[s],
                             .stock = stock,
                             .engine = engine == 2 ? BE_ENGINE_BLAS : BE_ENGINE_DNNL};
        be_model_t *m = NULL;
        if (be_model_load(&m, &o, err, sizeof err) != 0)
            fail_msg("%s", err);
        assert_int_equal(be_model_fast(m), !stock);
        if (!stock)
            assert_int_equal(be_model_engine(m), engine == 2 ? BE_ENGINE_BLAS : BE_ENGINE_DNNL);
        cJSON *img;
        cJSON_ArrayForEach(img, images)
        {
            int is_jpeg = ends_with(img->string, ".jpg");
            snprintf(path, sizeof path, "%s/faceapi-ref/%s", cache, img->string);
            uint8_t *bytes = read_file_all(path, &len);
            char key[8];
            snprintf(key, sizeof key, "%d", sizes[s]);
            cJSON *want = cJSON_GetObjectItem(img, key);
            assert_non_null(want);
            for (int d = 0; d < (is_jpeg ? 2 : 1); d++) {
                be_decode_t dec = d ? BE_DECODE_FAST : BE_DECODE_EXACT;
                int w, h;
                assert_int_equal(be_image_letterbox(im, bytes, len, BE_PREP_FACEAPI, dec, sizes[s],
                                                    sizes[s], be_model_input(m), &w, &h, NULL, NULL,
                                                    err, sizeof err),
                                 0);
                assert_int_equal(w, cJSON_GetObjectItem(img, "width")->valueint);
                assert_int_equal(h, cJSON_GetObjectItem(img, "height")->valueint);
                proto_det_t dets[32];
                int n = be_model_detect(m, w, h, 0, 0, dets, 32);
                assert_true(n >= 0);
                cmp_t c = compare(dets, n, want, w, h, thresh, 0.03f);
                print_message("%s %-5s %-32s @%d: faces framegate %d, face-api %d (%d missed, "
                              "%d extra); min IoU %.6f, max |score diff| %.6f\n",
                              stock         ? "stock"
                              : engine == 2 ? "blas "
                                            : "dnnl ",
                              be_decode_name(dec), img->string, sizes[s], n, c.nref, c.missed,
                              c.extra, c.min_iou, c.max_ds);
                if (dec == BE_DECODE_FAST) {
                    fast_off += c.missed + c.extra + (c.min_iou < 0.97f || c.max_ds > 0.03f);
                    fast_iou = fminf(fast_iou, c.min_iou);
                    fast_ds = fmaxf(fast_ds, c.max_ds);
                    continue;
                }
                if (!is_jpeg) {
                    assert_int_equal(n, c.nref);
                    assert_int_equal(c.matched, c.nref);
                    assert_true(c.min_iou >= 0.99f);
                    assert_true(c.max_ds <= 0.01f);
                } else {
                    if (!c.edge_only)
                        fail_msg("%s @%d: a face scoring >= %.2f found on one side only",
                                 img->string, sizes[s], thresh + 0.03f);
                    assert_true(c.min_iou >= 0.97f);
                    assert_true(c.max_ds <= 0.03f);
                    jpeg_faces += c.matched;
                }
                faces += c.matched;
            }
            jpegs += is_jpeg;
            free(bytes);
        }
        be_model_free(m);
    }
    print_message("%s path: %d faces matched (%d on JPEG frames); the fast decode: %d "
                  "disagreements beyond IoU 0.97 / score 0.03, min IoU %.4f, max |score diff| "
                  "%.4f\n",
                  stock         ? "stock"
                  : engine == 2 ? "blas"
                                : "dnnl",
                  faces, jpeg_faces, fast_off, fast_iou, fast_ds);
    /* The photos were chosen to have faces: an empty agreement would prove nothing. */
    assert_true(faces >= 8);
    assert_true(jpegs >= 2 * 8);
    assert_true(jpeg_faces >= 10);
    be_image_destroy(im);
    cJSON_Delete(ref);
    free(text);
}

static void test_fast_agrees_with_faceapi(void **state)
{
    (void)state;
    agree(0);
}

static void test_stock_darknet_agrees_with_faceapi(void **state)
{
    (void)state;
    agree(1);
}

static void test_blas_engine_agrees_with_faceapi(void **state)
{
    (void)state;
    agree(2);
}

int main(void)
{
    const char *c = getenv("FRAMEGATE_CACHE"), *home = getenv("HOME");
    if (c != NULL && c[0] != '\0')
        snprintf(cache, sizeof cache, "%s", c);
    else
        snprintf(cache, sizeof cache, "%s/.cache/framegate", home ? home : "/root");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_agrees_with_faceapi),
        cmocka_unit_test(test_stock_darknet_agrees_with_faceapi),
        cmocka_unit_test(test_blas_engine_agrees_with_faceapi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
