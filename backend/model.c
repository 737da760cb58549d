#include "model.h"

#include <darknet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"

#define LABEL_MAX 63 /* bytes kept of one label (the wire allows 255) */

struct be_model {
    network *net;
    int classes;
    char **labels; /* classes entries; "class<N>" when the names file is short */
    char *label_store;
    float threshold, nms;
    proto_det_t *all; /* every candidate of the last frame, kept to avoid a malloc per frame */
    size_t all_cap;
};

/* free_network() of Debian's darknet leaves the scratch workspace (~25 MB for yolov3-tiny),
 * the training counters, the learning-rate steps and each yolo layer's anchor mask behind.
 * They were all allocated by darknet's parser for this network alone, so we free them after
 * it: a backend that is stopped and restarted in one test process then leaks nothing. */
static void free_net(network *net)
{
    void *rest[8 + 64];
    size_t n = 0;
    rest[n++] = net->workspace;
    rest[n++] = net->seen;
    rest[n++] = net->t;
    rest[n++] = net->cost;
    rest[n++] = net->steps;
    rest[n++] = net->scales;
    for (int i = 0; i < net->n && n < sizeof rest / sizeof rest[0]; i++)
        if (net->layers[i].type == YOLO)
            rest[n++] = net->layers[i].mask;
    free_network(net);
    for (size_t i = 0; i < n; i++)
        free(rest[i]);
}

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

/* darknet's parser assert()s or exit()s on a cfg whose first section is not [net]: look
 * before handing it over, so a wrong file is an error message and exit code 2, not a crash. */
static int check_cfg(const char *path, char *err, size_t errcap)
{
    FILE *f = fopen(path, "r");
    char line[256];
    int ok = 0;
    if (f == NULL) {
        snprintf(err, errcap, "cannot read cfg file %s", path);
        return PROTO_EMODEL;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        char *p = line + strspn(line, " \t\r\n");
        if (*p == '\0' || *p == '#' || *p == ';')
            continue;
        ok = strncmp(p, "[net]", 5) == 0 || strncmp(p, "[network]", 9) == 0;
        break;
    }
    fclose(f);
    if (!ok) {
        snprintf(err, errcap, "%s is not a darknet cfg (its first section must be [net])", path);
        return PROTO_EMODEL;
    }
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
    m->label_store = calloc((size_t)m->classes, LABEL_MAX + 1);
    if (m->labels == NULL || m->label_store == NULL) {
        fclose(f);
        return PROTO_ENOMEM;
    }
    char line[256];
    int i = 0;
    while (i < m->classes && fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        m->labels[i] = m->label_store + (size_t)i * (LABEL_MAX + 1);
        snprintf(m->labels[i], LABEL_MAX + 1, "%.63s", line);
        i++;
    }
    for (; i < m->classes; i++) {
        m->labels[i] = m->label_store + (size_t)i * (LABEL_MAX + 1);
        snprintf(m->labels[i], LABEL_MAX + 1, "class%d", i);
    }
    fclose(f);
    return 0;
}

int be_model_load(be_model_t **out, const be_model_opts_t *opts, char *err, size_t errcap)
{
    int rv;
    if ((rv = check_readable("cfg", opts->cfg, err, errcap)) != 0 ||
        (rv = check_readable("weights", opts->weights, err, errcap)) != 0 ||
        (rv = check_readable("names", opts->names, err, errcap)) != 0 ||
        (rv = check_cfg(opts->cfg, err, errcap)) != 0)
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
        free_net(m->net);
    free(m->labels);
    free(m->label_store);
    free(m->all);
    free(m);
}

int be_model_width(const be_model_t *m)
{
    return m->net->w;
}
int be_model_height(const be_model_t *m)
{
    return m->net->h;
}
int be_model_classes(const be_model_t *m)
{
    return m->classes;
}
float *be_model_input(be_model_t *m)
{
    return m->net->input;
}

static int by_confidence(const void *a, const void *b)
{
    const proto_det_t *p = a, *q = b;
    /* Confidence descending; ties broken on the rest so the order is fully defined. */
    if (p->confidence != q->confidence)
        return p->confidence < q->confidence ? 1 : -1;
    if (p->class_id != q->class_id)
        return p->class_id < q->class_id ? -1 : 1;
    if (p->y != q->y)
        return p->y < q->y ? -1 : 1;
    return (p->x > q->x) - (p->x < q->x);
}

static float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The hot path: one forward pass over net->input. Everything model-specific that a faster
 * implementation replaces is in here; the box extraction below only needs the output layers
 * filled the way darknet fills them. */
static void forward(be_model_t *m)
{
    /* network_predict copies its argument into net->input: here it is the same buffer. */
    network_predict(m->net, m->net->input);
}

int be_model_detect(be_model_t *m, int img_w, int img_h, float threshold, proto_det_t *dets,
                    int cap)
{
    float thresh = threshold > 0 ? threshold : m->threshold;
    int nboxes = 0;
    size_t n = 0;
    forward(m);
    /* relative=1: darknet undoes the letterbox and returns boxes relative to the image. */
    detection *d = get_network_boxes(m->net, img_w, img_h, thresh, 0.5f, NULL, 1, &nboxes);
    if (d == NULL)
        return 0;
    if (m->nms > 0)
        do_nms_sort(d, nboxes, m->classes, m->nms);
    for (int i = 0; i < nboxes; i++) {
        box b = d[i].bbox;
        if (!isfinite(b.x) || !isfinite(b.y) || !isfinite(b.w) || !isfinite(b.h))
            continue;
        for (int c = 0; c < m->classes; c++) {
            float p = d[i].prob[c];
            if (!(p > thresh))
                continue;
            /* All candidates are kept and sorted before the cap is applied, so a reply cut
             * at `cap` holds the most confident boxes, not the first ones found. */
            if (n == m->all_cap) {
                size_t nc = m->all_cap ? m->all_cap * 2 : 256;
                proto_det_t *p2 = realloc(m->all, nc * sizeof *p2);
                if (p2 == NULL) {
                    free_detections(d, nboxes);
                    return PROTO_ENOMEM;
                }
                m->all = p2;
                m->all_cap = nc;
            }
            /* Relative centre/size -> pixels, top-left origin, clamped inside the image. */
            float x0 = clampf((b.x - b.w / 2) * img_w, 0, (float)img_w);
            float y0 = clampf((b.y - b.h / 2) * img_h, 0, (float)img_h);
            float x1 = clampf((b.x + b.w / 2) * img_w, 0, (float)img_w);
            float y1 = clampf((b.y + b.h / 2) * img_h, 0, (float)img_h);
            proto_det_t *o = &m->all[n++];
            o->class_id = c;
            o->confidence = clampf(p, 0, 1);
            o->x = x0;
            o->y = y0;
            o->w = x1 - x0;
            o->h = y1 - y0;
            o->label = m->labels[c];
            o->label_len = (uint8_t)strnlen(m->labels[c], LABEL_MAX);
        }
    }
    free_detections(d, nboxes);
    if (n == 0)
        return 0;
    qsort(m->all, n, sizeof *m->all, by_confidence);
    if (n > (size_t)(cap > 0 ? cap : 0))
        n = (size_t)(cap > 0 ? cap : 0);
    if (n > 0)
        memcpy(dets, m->all, n * sizeof *dets);
    return (int)n;
}

int be_model_gen_weights(const char *cfg, const char *out, unsigned seed, char *err, size_t errcap)
{
    int rv;
    if ((rv = check_readable("cfg", cfg, err, errcap)) != 0 ||
        (rv = check_cfg(cfg, err, errcap)) != 0)
        return rv;
    /* darknet initialises every weight with rand(): seeding it makes the file a pure
     * function of (cfg, seed). */
    srand(seed);
    network *net = parse_network_cfg((char *)cfg);
    if (net == NULL) {
        snprintf(err, errcap, "darknet could not parse %s", cfg);
        return PROTO_EMODEL;
    }
    /* darknet leaves the batch-norm running variance at 0, which in inference divides every
     * activation by sqrt(1e-6): after a dozen layers the outputs are inf/NaN. Mean 0 /
     * variance 1 keeps random weights numerically sane. */
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
        free_net(net);
        return PROTO_EMODEL;
    }
    fclose(f);
    save_weights(net, (char *)out);
    free_net(net);
    return 0;
}
