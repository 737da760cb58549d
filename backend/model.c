#include "model.h"

#include <darknet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"

struct be_model {
    network *net;
    int classes;
    char **labels; /* classes entries; "class<N>" when the names file is short */
    char *label_store;
    float threshold, nms;
};

static int check_readable(const char *what, const char *path, char *err, size_t errcap)
{
    if (path == NULL || path[0] == '\0') {
        snprintf(err, errcap, "no %s file given", what);
        return PROTO_EINVAL;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errcap, "cannot read %s file %s", what, path);
        return PROTO_EMODEL;
    }
    fclose(f);
    return 0;
}

/* Reads one label per line; missing lines become "class<N>" so a short names file can never
 * make us index past the array. */
static int load_labels(be_model_t *m, const char *path, char *err, size_t errcap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errcap, "cannot read names file %s", path);
        return PROTO_EMODEL;
    }
    m->labels = calloc((size_t)m->classes, sizeof *m->labels);
    m->label_store = calloc((size_t)m->classes, 64);
    if (m->labels == NULL || m->label_store == NULL) {
        fclose(f);
        return PROTO_ENOMEM;
    }
    char line[256];
    int i = 0;
    while (i < m->classes && fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        snprintf(m->label_store + (size_t)i * 64, 64, "%.63s", line);
        m->labels[i] = m->label_store + (size_t)i * 64;
        i++;
    }
    for (; i < m->classes; i++) {
        snprintf(m->label_store + (size_t)i * 64, 64, "class%d", i);
        m->labels[i] = m->label_store + (size_t)i * 64;
    }
    fclose(f);
    return 0;
}

int be_model_load(be_model_t **out, const be_model_opts_t *opts, char *err, size_t errcap)
{
    int rv;
    if ((rv = check_readable("cfg", opts->cfg, err, errcap)) != 0 ||
        (rv = check_readable("weights", opts->weights, err, errcap)) != 0 ||
        (rv = check_readable("names", opts->names, err, errcap)) != 0)
        return rv;
    be_model_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return PROTO_ENOMEM;
    m->net = load_network((char *)opts->cfg, (char *)opts->weights, 0);
    if (m->net == NULL || m->net->n < 1) {
        snprintf(err, errcap, "darknet could not load %s", opts->cfg);
        free(m);
        return PROTO_EMODEL;
    }
    set_batch_network(m->net, 1);
    layer last = m->net->layers[m->net->n - 1];
    if (last.type != YOLO && last.type != REGION && last.type != DETECTION) {
        snprintf(err, errcap, "%s: the last layer is not a detection layer ([yolo] or [region])",
                 opts->cfg);
        be_model_free(m);
        return PROTO_EMODEL;
    }
    m->classes = last.classes;
    m->threshold = opts->threshold;
    m->nms = opts->nms;
    if ((rv = load_labels(m, opts->names, err, errcap)) != 0) {
        be_model_free(m);
        return rv;
    }
    *out = m;
    return 0;
}

void be_model_free(be_model_t *m)
{
    if (m == NULL)
        return;
    if (m->net != NULL)
        free_network(m->net);
    free(m->labels);
    free(m->label_store);
    free(m);
}

int be_model_width(const be_model_t *m) { return m->net->w; }
int be_model_height(const be_model_t *m) { return m->net->h; }
int be_model_classes(const be_model_t *m) { return m->classes; }
float *be_model_input(be_model_t *m) { return m->net->input; }

static int by_confidence(const void *a, const void *b)
{
    float x = ((const proto_det_t *)a)->confidence, y = ((const proto_det_t *)b)->confidence;
    return (x < y) - (x > y);
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

int be_model_detect(be_model_t *m, int img_w, int img_h, float threshold, proto_det_t *dets,
                    int cap)
{
    float thresh = threshold > 0 ? threshold : m->threshold;
    int nboxes = 0, n = 0;
    /* network_predict copies the input into net->input; it is the same buffer here. */
    network_predict(m->net, m->net->input);
    detection *d = get_network_boxes(m->net, img_w, img_h, thresh, 0.5f, NULL, 1, &nboxes);
    if (d == NULL)
        return 0;
    if (m->nms > 0)
        do_nms_sort(d, nboxes, m->classes, m->nms);
    for (int i = 0; i < nboxes && n < cap; i++) {
        for (int c = 0; c < m->classes && n < cap; c++) {
            float p = d[i].prob[c];
            box b = d[i].bbox;
            if (!(p > thresh) || !isfinite(b.x) || !isfinite(b.y) || !isfinite(b.w) ||
                !isfinite(b.h))
                continue;
            /* Relative centre/size -> pixels, top-left origin, clamped inside the image. */
            float x0 = clampf((b.x - b.w / 2) * img_w, 0, (float)img_w);
            float y0 = clampf((b.y - b.h / 2) * img_h, 0, (float)img_h);
            float x1 = clampf((b.x + b.w / 2) * img_w, 0, (float)img_w);
            float y1 = clampf((b.y + b.h / 2) * img_h, 0, (float)img_h);
            proto_det_t *o = &dets[n++];
            o->class_id = c;
            o->confidence = clampf(p, 0, 1);
            o->x = x0;
            o->y = y0;
            o->w = x1 - x0;
            o->h = y1 - y0;
            o->label = m->labels[c];
            o->label_len = (uint8_t)strnlen(m->labels[c], 63);
        }
    }
    free_detections(d, nboxes);
    qsort(dets, (size_t)n, sizeof *dets, by_confidence);
    return n;
}

int be_model_gen_weights(const char *cfg, const char *out, unsigned seed, char *err,
                         size_t errcap)
{
    int rv;
    if ((rv = check_readable("cfg", cfg, err, errcap)) != 0)
        return rv;
    srand(seed);
    network *net = parse_network_cfg((char *)cfg);
    if (net == NULL) {
        snprintf(err, errcap, "darknet could not parse %s", cfg);
        return PROTO_EMODEL;
    }
    for (int i = 0; i < net->n; i++) {
        layer *l = &net->layers[i];
        if (l->type == CONVOLUTIONAL && l->batch_normalize && l->rolling_variance != NULL)
            for (int j = 0; j < l->n; j++) {
                l->rolling_mean[j] = 0;
                l->rolling_variance[j] = 1;
            }
    }
    FILE *f = fopen(out, "wb");
    if (f == NULL) {
        snprintf(err, errcap, "cannot write %s", out);
        free_network(net);
        return PROTO_EMODEL;
    }
    fclose(f);
    save_weights(net, (char *)out);
    free_network(net);
    return 0;
}
