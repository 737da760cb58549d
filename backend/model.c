#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include "model.h"

#include <darknet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "dnnl.h"
#include "err.h"
#include "fast.h"
#include "nms.h"

#define LABEL_MAX 63        /* bytes kept of one label (the wire allows 255) */
#define CFG_MAX (1u << 20)  /* a darknet cfg is a few KB; refuse anything absurd */
#define TOP_K_DEFAULT 5

struct be_model {
    network *net;
    be_fast_t *fast; /* NULL: stock network_predict (or dnnl runs it) */
    be_dnnl_t *dnnl; /* the oneDNN engine; NULL when not used */
    be_model_kind_t kind;
    be_prep_t prep;
    be_decode_t decode;
    int top_k;
    const layer *out; /* classifiers: the softmax layer */
    int classes;
    char **labels; /* classes entries; "class<N>" when the names file is short */
    char *label_store;
    float threshold, nms;
    proto_det_t *all; /* every candidate of the last frame, kept to avoid a malloc per frame */
    size_t all_cap;
    be_nms_t nms_scratch;
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

/* darknet sizes every buffer by the cfg's [net] batch (tiny.cfg says 128: gigabytes for one
 * frame) and input size, and only has a file-name API. So the cfg is rewritten into a memfd
 * with batch=1, subdivisions=1 and, if asked, width/height, and darknet parses
 * /proc/self/fd/N. Everything else, the layer sections included, is passed through as is.
 * Returns the fd (the caller closes it) or a negative code with err set. */
static int rewrite_cfg(const char *path, int w, int h, char *err, size_t errcap)
{
    FILE *in = fopen(path, "r");
    if (in == NULL) {
        snprintf(err, errcap, "cannot read cfg file %s", path);
        return PROTO_EMODEL;
    }
    int fd = memfd_create("framegate-cfg", MFD_CLOEXEC);
    FILE *out = fd >= 0 ? fdopen(dup(fd), "w") : NULL;
    if (out == NULL) {
        fclose(in);
        if (fd >= 0)
            close(fd);
        snprintf(err, errcap, "memfd for %s: out of resources", path);
        return PROTO_ENOMEM;
    }
    char line[4096];
    size_t total = 0;
    int section = 0; /* 1 while inside [net] */
    int rv = 0;
    while (fgets(line, sizeof line, in) != NULL) {
        total += strlen(line);
        if (total > CFG_MAX) {
            snprintf(err, errcap, "%s: larger than %u bytes, not a darknet cfg", path, CFG_MAX);
            rv = PROTO_EMODEL;
            break;
        }
        const char *p = line + strspn(line, " \t");
        if (*p == '[') {
            section = section == 0 && (strncmp(p, "[net]", 5) == 0 || strncmp(p, "[network]", 9) == 0)
                          ? 1
                          : 2;
            fputs(line, out);
            if (section == 1) {
                fprintf(out, "batch=1\nsubdivisions=1\n");
                if (w > 0 && h > 0)
                    fprintf(out, "width=%d\nheight=%d\n", w, h);
            }
            continue;
        }
        /* The [net] keys written above replace the file's own (a duplicate would be
         * reported by darknet as an unused field). */
        if (section == 1) {
            size_t k = strcspn(p, "= \t");
            if ((k == 5 && strncmp(p, "batch", 5) == 0) ||
                (k == 12 && strncmp(p, "subdivisions", 12) == 0) ||
                (w > 0 && h > 0 &&
                 ((k == 5 && strncmp(p, "width", 5) == 0) ||
                  (k == 6 && strncmp(p, "height", 6) == 0))))
                continue;
        }
        fputs(line, out);
    }
    fclose(in);
    if (fclose(out) != 0 && rv == 0) {
        snprintf(err, errcap, "memfd for %s: write failed", path);
        rv = PROTO_ENOMEM;
    }
    if (rv != 0) {
        close(fd);
        return rv;
    }
    return fd;
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

/* The layer a classifier's answer is read from: the last one, skipping a trailing [cost]
 * (training only). NULL when it is not a softmax. */
static const layer *softmax_layer(const network *net)
{
    int i = net->n - 1;
    while (i > 0 && net->layers[i].type == COST)
        i--;
    return net->layers[i].type == SOFTMAX ? &net->layers[i] : NULL;
}

int be_model_load(be_model_t **out, const be_model_opts_t *opts, char *err, size_t errcap)
{
    int rv;
    if ((rv = check_readable("cfg", opts->cfg, err, errcap)) != 0 ||
        (rv = check_readable("weights", opts->weights, err, errcap)) != 0 ||
        (rv = check_readable("names", opts->names, err, errcap)) != 0 ||
        (rv = check_cfg(opts->cfg, err, errcap)) != 0)
        return rv;
    if (opts->input_w < 0 || opts->input_h < 0 || opts->input_w > 4096 || opts->input_h > 4096 ||
        (opts->input_w > 0) != (opts->input_h > 0)) {
        snprintf(err, errcap, "input size %dx%d: want 0 (the cfg's) or 1..4096 for both",
                 opts->input_w, opts->input_h);
        return PROTO_EINVAL;
    }
    int fd = rewrite_cfg(opts->cfg, opts->input_w, opts->input_h, err, errcap);
    if (fd < 0)
        return fd;
    be_model_t *m = calloc(1, sizeof *m);
    if (m == NULL) {
        close(fd);
        return PROTO_ENOMEM;
    }
    char cfgpath[64];
    snprintf(cfgpath, sizeof cfgpath, "/proc/self/fd/%d", fd);
    m->net = load_network(cfgpath, (char *)opts->weights, 0);
    close(fd);
    if (m->net == NULL || m->net->n < 1) {
        snprintf(err, errcap, "darknet could not load %s", opts->cfg);
        free(m);
        return PROTO_EMODEL;
    }
    set_batch_network(m->net, 1);
    layer last = m->net->layers[m->net->n - 1];
    if ((m->out = softmax_layer(m->net)) != NULL) {
        m->kind = BE_MODEL_CLASSIFIER;
        m->classes = m->out->outputs;
    } else if (last.type == YOLO || last.type == REGION || last.type == DETECTION) {
        m->kind = BE_MODEL_DETECTOR;
        m->classes = last.classes;
    } else {
        snprintf(err, errcap,
                 "%s: the last layer is neither a detection layer ([yolo], [region]) nor a "
                 "classifier's [softmax]",
                 opts->cfg);
        be_model_free(m);
        return PROTO_EMODEL;
    }
    if (m->classes < 1) {
        snprintf(err, errcap, "%s: the output layer has no classes", opts->cfg);
        be_model_free(m);
        return PROTO_EMODEL;
    }
    m->threshold = opts->threshold;
    m->nms = opts->nms;
    m->prep = opts->prep;
    m->decode = opts->decode;
    m->top_k = opts->top_k > 0 ? opts->top_k : TOP_K_DEFAULT;
    if ((rv = load_labels(m, opts->names, err, errcap)) != 0) {
        be_model_free(m);
        return rv;
    }
    if (!opts->stock && opts->engine == BE_ENGINE_DNNL) {
        char why[160];
        rv = be_dnnl_create_precision(&m->dnnl, m->net, opts->threads, 0, opts->precision, why,
                                      sizeof why);
        if (rv == PROTO_ENOMEM) {
            be_model_free(m);
            return rv;
        }
        if (rv != 0) { /* no oneDNN here, or a network it refuses: the BLAS engine runs it */
            fprintf(stderr, "framegate-backend: %s: BLAS engine (%s)\n", opts->cfg, why);
            m->dnnl = NULL;
        }
    }
    if (!opts->stock && m->dnnl == NULL) {
        rv = be_fast_create(&m->fast, m->net, opts->threads);
        if (rv == PROTO_ENOMEM) {
            be_model_free(m);
            return rv;
        }
        if (rv != 0) { /* a network the fast path does not know: darknet runs it */
            char why[160];
            be_fast_check(m->net, why, sizeof why);
            fprintf(stderr, "framegate-backend: %s: stock darknet forward (%s)\n", opts->cfg, why);
            m->fast = NULL;
        }
    }
    *out = m;
    return 0;
}

void be_model_free(be_model_t *m)
{
    if (m == NULL)
        return;
    be_fast_destroy(m->fast);
    be_dnnl_destroy(m->dnnl);
    if (m->net != NULL)
        free_net(m->net);
    free(m->labels);
    free(m->label_store);
    free(m->all);
    be_nms_free(&m->nms_scratch);
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
be_model_kind_t be_model_kind(const be_model_t *m)
{
    return m->kind;
}
be_prep_t be_model_prep(const be_model_t *m)
{
    return m->prep;
}
be_decode_t be_model_decode(const be_model_t *m)
{
    return m->decode;
}
int be_model_fast(const be_model_t *m)
{
    return m->fast != NULL || m->dnnl != NULL;
}
be_precision_t be_model_precision(const be_model_t *m)
{
    return m->dnnl != NULL ? be_dnnl_precision(m->dnnl) : BE_PRECISION_FP32;
}

be_engine_t be_model_engine(const be_model_t *m)
{
    return m->dnnl != NULL ? BE_ENGINE_DNNL : BE_ENGINE_BLAS;
}

int be_engine_parse(const char *s)
{
    if (s != NULL && strcmp(s, "dnnl") == 0)
        return BE_ENGINE_DNNL;
    if (s != NULL && strcmp(s, "blas") == 0)
        return BE_ENGINE_BLAS;
    return -1;
}

const char *be_engine_name(be_engine_t e)
{
    return e == BE_ENGINE_DNNL ? "dnnl" : "blas";
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

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 once `*(int64_t *)arg` (unix epoch ms, as the gateway's deadlines) has passed. */
static int past_deadline(void *arg)
{
    return now_ms() > *(const int64_t *)arg;
}

/* The hot path: one forward pass over net->input. Both leave every layer's output as
 * darknet's forward_network would, so the box extraction below works on either. Returns 0, or
 * PROTO_EDEADLINE when deadline_ms (0 = none) passed before or during the pass (between layers
 * on the fast path; stock darknet's pass cannot be cut short). */
static int forward(be_model_t *m, int64_t deadline_ms)
{
    if (deadline_ms > 0 && past_deadline(&deadline_ms))
        return PROTO_EDEADLINE;
    if (m->dnnl != NULL) {
        if (be_dnnl_predict_stop(m->dnnl, m->net->input, deadline_ms > 0 ? past_deadline : NULL,
                                 &deadline_ms) == NULL)
            return PROTO_EDEADLINE;
    } else if (m->fast != NULL) {
        if (be_fast_predict_stop(m->fast, m->net->input, deadline_ms > 0 ? past_deadline : NULL,
                                 &deadline_ms) == NULL)
            return PROTO_EDEADLINE;
    } else { /* network_predict copies its argument into net->input: here the same buffer. */
        network_predict(m->net, m->net->input);
    }
    return 0;
}

/* A classifier's top_k classes, most probable first, box fields 0. */
static int classify(be_model_t *m, int top_k, proto_det_t *dets, int cap)
{
    const float *p = m->out->output;
    int k = top_k > 0 ? top_k : m->top_k;
    if (k > cap)
        k = cap;
    if (k > m->classes)
        k = m->classes;
    int n = 0;
    /* Insertion into a k-long sorted list: k is small, classes at most a few thousand. */
    for (int c = 0; c < m->classes; c++) {
        float v = isfinite(p[c]) ? p[c] : 0;
        if (n == k && !(v > dets[n - 1].confidence))
            continue;
        int j = n < k ? n++ : k - 1;
        while (j > 0 && dets[j - 1].confidence < v) {
            dets[j] = dets[j - 1];
            j--;
        }
        dets[j] = (proto_det_t){.class_id = c, .confidence = clampf(v, 0, 1),
                                .label = m->labels[c],
                                .label_len = (uint8_t)strnlen(m->labels[c], LABEL_MAX)};
    }
    return n;
}


int be_model_detect(be_model_t *m, int img_w, int img_h, float threshold, int top_k,
                    proto_det_t *dets, int cap)
{
    return be_model_detect_until(m, img_w, img_h, threshold, top_k, 0, dets, cap);
}

int be_model_detect_until(be_model_t *m, int img_w, int img_h, float threshold, int top_k,
                          int64_t deadline_ms, proto_det_t *dets, int cap)
{
    float thresh = threshold > 0 ? threshold : m->threshold;
    int nboxes = 0, rv;
    size_t n = 0;
    if ((rv = forward(m, deadline_ms)) != 0)
        return rv;
    if (m->kind == BE_MODEL_CLASSIFIER)
        return classify(m, top_k, dets, cap);
    /* relative=1: darknet undoes its letterbox and returns boxes relative to the image. For
     * another placement darknet is asked for boxes relative to the network input (w, h = the
     * network's: nothing to undo) and the image module maps them back. */
    int faceapi = m->prep == BE_PREP_FACEAPI;
    detection *d = get_network_boxes(m->net, faceapi ? m->net->w : img_w,
                                     faceapi ? m->net->h : img_h, thresh, 0.5f, NULL, 1, &nboxes);
    if (d == NULL)
        return 0;
    if (m->nms > 0 && be_nms(&m->nms_scratch, d, nboxes, m->classes, m->nms) != 0) {
        free_detections(d, nboxes);
        return PROTO_ENOMEM;
    }
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
            float x0, y0, x1, y1;
            if (faceapi) {
                float bx = b.x, by = b.y, bw = b.w, bh = b.h;
                be_image_faceapi_unmap(img_w, img_h, m->net->w, m->net->h, &bx, &by, &bw, &bh);
                x0 = clampf(bx, 0, (float)img_w);
                y0 = clampf(by, 0, (float)img_h);
                x1 = clampf(bx + bw, 0, (float)img_w);
                y1 = clampf(by + bh, 0, (float)img_h);
            } else {
                x0 = clampf((b.x - b.w / 2) * img_w, 0, (float)img_w);
                y0 = clampf((b.y - b.h / 2) * img_h, 0, (float)img_h);
                x1 = clampf((b.x + b.w / 2) * img_w, 0, (float)img_w);
                y1 = clampf((b.y + b.h / 2) * img_h, 0, (float)img_h);
            }
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
