/* The default model agrees with face-api itself. scripts/models.sh converted face-api's Tiny
 * Face Detector to darknet (framegate-convert) and ran face-api (pure-JS tfjs, CPU) on
 * astronaut.png and crops/collages of it, writing its answers to faceapi-ref/reference.json.
 * Here framegate's backend path (PNG decode, face-api pre-processing, the converted network
 * through the fast path and through stock darknet, boxes, NMS, mapping back) runs on the
 * same photos at input sizes 416 and 320 and must give the same faces: the same number, each
 * with IoU >= 0.99 and |score difference| <= 0.01. Missing model or reference files fail the
 * test (CI runs models.sh first): they are never a skip. */
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

static void agree(int stock)
{
    char path[700], cfg[700], weights[700], names[700], err[512];
    size_t len;
    snprintf(path, sizeof path, "%s/faceapi-ref/reference.json", cache);
    char *text = (char *)read_file_all(path, &len);
    cJSON *ref = cJSON_Parse(text);
    assert_non_null(ref);
    cJSON *images = cJSON_GetObjectItem(ref, "images");
    assert_true(cJSON_GetArraySize(images) >= 4);
    snprintf(cfg, sizeof cfg, "%s/models/face-tiny.cfg", cache);
    snprintf(weights, sizeof weights, "%s/models/face-tiny.weights", cache);
    snprintf(names, sizeof names, "%s/models/face.names", cache);
    be_image_t *im = NULL;
    assert_int_equal(be_image_create(&im, (be_image_limits_t){64000000, 16384}), 0);
    static const int sizes[] = {416, 320};
    int faces = 0;
    for (size_t s = 0; s < 2; s++) {
        be_model_opts_t o = {.cfg = cfg, .weights = weights, .names = names,
                             .threshold = 0.5f, .nms = 0.4f, .prep = BE_PREP_FACEAPI,
                             .input_w = sizes[s], .input_h = sizes[s], .stock = stock};
        be_model_t *m = NULL;
        if (be_model_load(&m, &o, err, sizeof err) != 0)
            fail_msg("%s", err);
        assert_int_equal(be_model_fast(m), !stock);
        cJSON *img;
        cJSON_ArrayForEach(img, images)
        {
            snprintf(path, sizeof path, "%s/faceapi-ref/%s", cache, img->string);
            uint8_t *png = read_file_all(path, &len);
            int w, h;
            assert_int_equal(be_image_letterbox(im, png, len, BE_PREP_FACEAPI, BE_DECODE_EXACT, sizes[s], sizes[s],
                                                be_model_input(m), &w, &h, NULL, NULL, err,
                                                sizeof err),
                             0);
            free(png);
            proto_det_t dets[32];
            int n = be_model_detect(m, w, h, 0, 0, dets, 32);
            char key[8];
            snprintf(key, sizeof key, "%d", sizes[s]);
            cJSON *want = cJSON_GetObjectItem(img, key);
            int nw = cJSON_GetArraySize(want);
            float min_iou = 1, max_ds = 0;
            char used[32] = {0};
            cJSON *r;
            cJSON_ArrayForEach(r, want)
            {
                float rx = (float)cJSON_GetObjectItem(r, "x")->valuedouble;
                float ry = (float)cJSON_GetObjectItem(r, "y")->valuedouble;
                float rw = (float)cJSON_GetObjectItem(r, "w")->valuedouble;
                float rh = (float)cJSON_GetObjectItem(r, "h")->valuedouble;
                float rs = (float)cJSON_GetObjectItem(r, "score")->valuedouble;
                int best = -1;
                float bi = 0;
                for (int i = 0; i < n; i++) {
                    float v = iou(rx, ry, rw, rh, dets[i].x, dets[i].y, dets[i].w, dets[i].h);
                    if (!used[i] && v > bi) {
                        bi = v;
                        best = i;
                    }
                }
                if (best < 0)
                    fail_msg("%s @%d: face-api's face at %.0f,%.0f has no match", img->string,
                             sizes[s], rx, ry);
                used[best] = 1;
                min_iou = fminf(min_iou, bi);
                max_ds = fmaxf(max_ds, fabsf(dets[best].confidence - rs));
            }
            print_message("%s %-26s @%d: faces framegate %d, face-api %d; min IoU %.6f, max "
                          "|score diff| %.6f\n",
                          stock ? "stock" : "fast ", img->string, sizes[s], n, nw, min_iou,
                          max_ds);
            assert_int_equal(n, nw);
            assert_true(min_iou >= 0.99f);
            assert_true(max_ds <= 0.01f);
            faces += n;
        }
        be_model_free(m);
    }
    /* The photos were chosen to have faces: an empty agreement would prove nothing. */
    assert_true(faces >= 8);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
