#ifndef FG_BENCH_AGREE_H
#define FG_BENCH_AGREE_H
/* How far two sets of answers for the same frames are apart (decode = fast vs exact, bf16 vs
 * fp32), and the bench's text output. Main thread only. */

#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "model.h"

/* Output text goes to stdout and to `f` (may be NULL) alike. */
void say_to(FILE *f);
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

typedef struct {
    int boxes;       /* the reference side's */
    int pairs;       /* same class, paired greedily by IoU */
    int only;        /* boxes found by one side only */
    float min_iou;   /* the smallest IoU of a pair */
    float max_drift; /* the largest |score drift| of a pair */
} agree_t;

void agree_init(agree_t *a);
/* Pairs one frame's answers: `ref` (the reference side) with `b`. */
void agree_add(agree_t *a, const proto_det_t *ref, int nref, const proto_det_t *b, int nb);
void agree_json(cJSON *j, const agree_t *a); /* paired, min_iou, max_score_drift */

/* precision = bf16 against fp32 on n JPEG frames: the model `mo` (threads 1, oneDNN) loaded
 * in each precision, every frame's detections paired (agree_add); says one line and adds
 * "bf16_vs_fp32" to m. A CPU without bf16 says so (the bf16 model runs fp32). */
void agree_precision(const be_model_opts_t *mo, be_image_t *im, unsigned char *const *jpeg,
                     const size_t *len, int n, const char *what, cJSON *m);

#endif
