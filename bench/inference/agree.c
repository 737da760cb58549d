#include "agree.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static FILE *txt;

void say_to(FILE *f)
{
    txt = f;
}

void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (txt != NULL) {
        va_start(ap, fmt);
        vfprintf(txt, fmt, ap);
        va_end(ap);
    }
    fflush(stdout);
}

static float box_iou_xywh(const proto_det_t *a, const proto_det_t *b)
{
    float x0 = fmaxf(a->x, b->x), y0 = fmaxf(a->y, b->y);
    float x1 = fminf(a->x + a->w, b->x + b->w), y1 = fminf(a->y + a->h, b->y + b->h);
    float inter = fmaxf(0, x1 - x0) * fmaxf(0, y1 - y0);
    float u = a->w * a->h + b->w * b->h - inter;
    return u > 0 ? inter / u : 0;
}

void agree_init(agree_t *a)
{
    memset(a, 0, sizeof *a);
    a->min_iou = 1;
}

void agree_add(agree_t *a, const proto_det_t *ref, int nref, const proto_det_t *b, int nb)
{
    char used[256] = {0};
    nb = nb > 256 ? 256 : nb;
    for (int i = 0; i < nref; i++) {
        int best = -1;
        float bi = 0;
        for (int j = 0; j < nb; j++) {
            float v = box_iou_xywh(&ref[i], &b[j]);
            if (!used[j] && b[j].class_id == ref[i].class_id && v > bi) {
                bi = v;
                best = j;
            }
        }
        if (best < 0) {
            a->only++;
            continue;
        }
        used[best] = 1;
        a->pairs++;
        a->min_iou = fminf(a->min_iou, bi);
        a->max_drift = fmaxf(a->max_drift, fabsf(ref[i].confidence - b[best].confidence));
    }
    for (int j = 0; j < nb; j++)
        a->only += !used[j];
    a->boxes += nref;
}

void agree_json(cJSON *j, const agree_t *a)
{
    cJSON_AddNumberToObject(j, "paired", a->pairs);
    cJSON_AddNumberToObject(j, "min_iou", a->min_iou);
    cJSON_AddNumberToObject(j, "max_score_drift", a->max_drift);
}

void agree_precision(const be_model_opts_t *mo, be_image_t *im, unsigned char *const *jpeg,
                     const size_t *len, int n, const char *what, cJSON *m)
{
    char err[512];
    be_model_t *bm[2] = {NULL, NULL};
    for (int p = 0; p < 2; p++) {
        be_model_opts_t o = *mo;
        o.threads = 1;
        o.engine = BE_ENGINE_DNNL;
        o.precision = p ? BE_PRECISION_BF16 : BE_PRECISION_FP32;
        if (be_model_load(&bm[p], &o, err, sizeof err) != 0) {
            say("precision = bf16 vs fp32: %s\n", err);
            be_model_free(bm[0]);
            return;
        }
    }
    agree_t a;
    agree_init(&a);
    for (int i = 0; i < n; i++) {
        proto_det_t d[2][256];
        int nd[2];
        for (int p = 0; p < 2; p++) {
            int ow = 0, oh = 0;
            be_image_letterbox(im, jpeg[i], len[i], mo->prep, BE_DECODE_EXACT,
                               be_model_width(bm[p]), be_model_height(bm[p]), be_model_input(bm[p]),
                               &ow, &oh, NULL, NULL, err, sizeof err);
            nd[p] = be_model_detect(bm[p], ow, oh, 0, 0, d[p], 256);
            nd[p] = nd[p] < 0 ? 0 : nd[p];
        }
        agree_add(&a, d[0], nd[0], d[1], nd[1]);
    }
    const char *ran = be_precision_name(be_model_precision(bm[1]));
    say("precision = bf16 vs fp32 on %d %s (bf16 ran as %s): answers: %d boxes (fp32), %d "
        "paired, min IoU %.3f, max |score drift| %.3f, %d found by one precision only\n",
        n, what, ran, a.boxes, a.pairs, a.min_iou, a.max_drift, a.only);
    cJSON *j = cJSON_AddObjectToObject(m, "bf16_vs_fp32");
    cJSON_AddStringToObject(j, "frames", what);
    cJSON_AddStringToObject(j, "bf16_ran_as", ran);
    cJSON_AddNumberToObject(j, "boxes_fp32", a.boxes);
    agree_json(j, &a);
    cJSON_AddNumberToObject(j, "one_precision_only", a.only);
    be_model_free(bm[0]);
    be_model_free(bm[1]);
}
