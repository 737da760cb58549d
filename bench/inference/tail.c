/* What the oneDNN engine's padding shortcut and first-pair pass save (tail.h). */
#include "tail.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "dnnl.h"
#include "peak.h"

#define MAX_SET 16

typedef struct {
    double on, off; /* median ms per frame, with / without */
    int same;       /* outputs the same bit for bit */
    double rel;     /* else max|with - without| / max|without| */
    int filled;     /* rows the shortcut copied, over the frames */
} turns_t;

/* One set of inputs, both engines in turn, `reps` rounds. */
static turns_t measure(be_dnnl_t *with, be_dnnl_t *without, network *net, float *const *in, int n,
                       int reps)
{
    double t[2][256];
    turns_t r = {.same = 1};
    int k = 0;
    size_t bytes = (size_t)net->outputs * sizeof(float);
    float *ref = malloc(bytes);
    if (ref == NULL || n <= 0) {
        free(ref);
        return r;
    }
    reps = reps * n > 256 ? 256 / n : reps;
    for (int i = 0; i < n; i++) { /* a warm-up, and the check (both write net->output) */
        memcpy(ref, be_dnnl_predict_stop(without, in[i], NULL, NULL), bytes);
        const float *o = be_dnnl_predict_stop(with, in[i], NULL, NULL);
        r.same &= memcmp(ref, o, bytes) == 0;
        double num = 0, den = 0;
        for (int j = 0; j < net->outputs; j++) {
            double dd = fabs((double)o[j] - ref[j]);
            num = dd > num ? dd : num;
            den = fabs(ref[j]) > den ? fabs(ref[j]) : den;
        }
        r.rel = den > 0 && num / den > r.rel ? num / den : r.rel;
        r.filled += be_dnnl_tail_rows(with);
    }
    for (int q = 0; q < reps; q++)
        for (int i = 0; i < n; i++, k++)
            for (int s = 0; s < 2; s++) {
                int which = (s + i + q) & 1; /* 1: with; who goes first alternates */
                double t0 = now_ms();
                be_dnnl_predict_stop(which ? with : without, in[i], NULL, NULL);
                t[which][k] = now_ms() - t0;
            }
    r.on = median(t[1], k);
    r.off = median(t[0], k);
    free(ref);
    return r;
}

static void shortcut(be_dnnl_t *with, be_dnnl_t *without, network *net, float *const *in, int n,
                     int reps, const char *what, int threads, cJSON *arr)
{
    if (n <= 0)
        return;
    turns_t r = measure(with, without, net, in, n, reps);
    int last = be_dnnl_tail_layers(with) - 1;
    int rows = last > 0 ? net->layers[last].out_h * n : 1;
    say("padding shortcut, %d thread%s, %d %s: network %.2f vs %.2f ms with / without the shortcut "
        "(%.3f), layers 0-%d, %.0f%% of layer %d's rows copied, output %s\n",
        threads, threads > 1 ? "s" : "", n, what, r.on, r.off, r.on / r.off, last,
        100.0 * r.filled / rows, last, r.same ? "the same bit for bit" : "DIFFERENT");
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "frames", what);
    cJSON_AddNumberToObject(j, "threads", threads);
    cJSON_AddNumberToObject(j, "with_ms", r.on);
    cJSON_AddNumberToObject(j, "without_ms", r.off);
    cJSON_AddNumberToObject(j, "last_layer", last);
    cJSON_AddNumberToObject(j, "rows_copied_fraction", (double)r.filled / rows);
    cJSON_AddBoolToObject(j, "same_output", r.same);
    cJSON_AddItemToArray(arr, j);
}

void convpool_report(network *net, int threads, float *const *photos, int n, int reps, cJSON *m)
{
    char err[256];
    be_dnnl_t *with = NULL, *without = NULL;
    be_dnnl_convpool(1);
    int rv = be_dnnl_create(&with, net, threads, 0, err, sizeof err);
    be_dnnl_convpool(0);
    if (rv == 0)
        rv = be_dnnl_create(&without, net, threads, 0, err, sizeof err);
    be_dnnl_convpool(-1);
    if (rv == 0 && be_dnnl_convpool_layers(with) && n > 0) {
        turns_t r = measure(with, without, net, photos, n, reps);
        say("convolution (+ depthwise before it) + max-pool as one pass (be_convpool, %d pass%s), "
            "%d thread%s, %d photos: network %.2f vs %.2f ms with / without (%.3f); output vs "
            "separate steps: rel %.2g\n",
            be_dnnl_convpool_layers(with), be_dnnl_convpool_layers(with) > 1 ? "es" : "", threads,
            threads > 1 ? "s" : "", n, r.on, r.off, r.on / r.off, r.rel);
        cJSON *arr = cJSON_GetObjectItem(m, "convpool");
        if (arr == NULL)
            arr = cJSON_AddArrayToObject(m, "convpool");
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "threads", threads);
        cJSON_AddNumberToObject(j, "pairs", be_dnnl_convpool_layers(with));
        cJSON_AddNumberToObject(j, "with_ms", r.on);
        cJSON_AddNumberToObject(j, "without_ms", r.off);
        cJSON_AddNumberToObject(j, "output_rel", r.rel);
        cJSON_AddItemToArray(arr, j);
    }
    be_dnnl_destroy(with);
    be_dnnl_destroy(without);
}

void tail_report(network *net, int threads, float *const *photos, int n_photos, be_image_t *im,
                 be_prep_t prep, unsigned char *const *jpeg, const size_t *len, int n,
                 const char *what, int reps, cJSON *m)
{
    char err[256];
    be_dnnl_t *with = NULL, *without = NULL;
    float *in[MAX_SET] = {0};
    int nin = 0, in_w[MAX_SET], in_h[MAX_SET];
    cJSON *arr = cJSON_GetObjectItem(m, "padding_shortcut");
    if (arr == NULL)
        arr = cJSON_AddArrayToObject(m, "padding_shortcut");
    if (be_dnnl_create(&with, net, threads, 0, err, sizeof err) != 0)
        goto out;
    be_dnnl_refuse_tail(1);
    int rv = be_dnnl_create(&without, net, threads, 0, err, sizeof err);
    be_dnnl_refuse_tail(0);
    if (rv != 0)
        goto out;
    shortcut(with, without, net, photos, n_photos, reps, "photos", threads, arr);
    for (int i = 0; i < n && nin < MAX_SET; i++) {
        int ow, oh;
        if ((in[nin] = malloc((size_t)3 * net->w * net->h * sizeof(float))) == NULL)
            break;
        if (be_image_letterbox(im, jpeg[i], len[i], prep, BE_DECODE_EXACT, net->w, net->h, in[nin],
                               &ow, &oh, NULL, NULL, err, sizeof err) == 0) {
            in_w[nin] = ow;
            in_h[nin] = oh;
            nin++;
        } else
            free(in[nin]), in[nin] = NULL;
    }
    shortcut(with, without, net, in, nin, reps, what, threads, arr);
    /* and those of them that are 16:9, as most cameras send */
    float *wide[MAX_SET];
    int nwide = 0;
    for (int i = 0; i < nin; i++)
        if (in_w[i] * 9 == in_h[i] * 16)
            wide[nwide++] = in[i];
    if (nwide < nin)
        shortcut(with, without, net, wide, nwide, reps, "of them 16:9", threads, arr);
out:
    for (int i = 0; i < nin; i++)
        free(in[i]);
    be_dnnl_destroy(with);
    be_dnnl_destroy(without);
}
