/* framegate-convert: face-api's Tiny Face Detector (tfjs weights: a JSON manifest + a .bin of
 * uint8-quantised tensors) -> a darknet cfg, weights and names file that stock libdarknet and
 * framegate's fast path run unchanged.
 *
 * The network, as face-api's src/tinyYolov2/TinyYolov2Base.ts (runMobilenet) builds it for
 * the TinyFaceDetector config (withSeparableConvs, isFirstLayerConv2d, 1 class, 5 anchors):
 *   conv0: 3x3 conv, 'valid' (no padding), bias, leaky 0.1        -> darknet pad=0
 *   maxpool 2x2 stride 2 'same' after conv0..conv4                  -> darknet [maxpool]
 *   conv1..conv7 (those present): pad 1, 3x3 depthwise, then 1x1 pointwise + bias, leaky
 *                                  -> [convolutional] groups=C (bias 0, linear) + 1x1 (leaky)
 *   maxpool 2x2 stride 1 'same' after conv5                         -> same padding rule
 *   conv8: 1x1, bias, linear: 5 anchors x (x, y, w, h, score)
 * and its input is (pixel - meanRgb) / 255. darknet feeds pixel / 255, so the mean is folded
 * into conv0's bias: exact, because conv0 has no padding (every tap is a real pixel).
 * darknet's [region] wants coords + 1 + classes channels per anchor, so conv8 gets a sixth
 * channel per anchor with zero weights and bias: the one class's softmax is then exactly 1
 * and darknet's score (objectness x class) is face-api's sigmoid(score). Boxes decode the same
 * way in both: ((col + sigmoid(tx)) / cells, exp(tw) * anchor / cells).
 *
 * Every size read from the manifest is checked against the tensor shapes this network needs
 * and against the .bin's length before a byte is used. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TENSORS 64
#define BIN_MAX (64u << 20) /* the real file is 190 KB */
#define MANIFEST_MAX (1u << 20)

static const float MEAN_RGB[3] = {117.001f, 114.697f, 97.404f};
static const float ANCHORS[10] = {1.603231f, 2.094468f, 6.041143f, 7.080126f, 2.882459f,
                                  3.518061f, 4.266906f, 5.178857f, 9.041765f, 10.66308f};
#define NUM_ANCHORS 5

typedef struct {
    char name[64];
    int shape[4], rank;
    size_t count;
    float *v; /* dequantised */
} tensor_t;

static tensor_t tensors[MAX_TENSORS];
static int ntensors;

static void die(const char *fmt, const char *a)
{
    fprintf(stderr, "framegate-convert: ");
    fprintf(stderr, fmt, a);
    fputc('\n', stderr);
    exit(1);
}

static uint8_t *slurp(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        die("cannot read %s", path);
    uint8_t *buf = malloc(max + 1);
    if (buf == NULL)
        die("out of memory reading %s", path);
    *len = fread(buf, 1, max + 1, f);
    fclose(f);
    if (*len > max)
        die("%s is larger than expected", path);
    buf[*len] = 0;
    return buf;
}

/* Reads the manifest's tensors out of the .bin (quantised uint8 or float32). */
static void load(const char *manifest_path)
{
    size_t mlen, blen, off = 0;
    char *text = (char *)slurp(manifest_path, MANIFEST_MAX, &mlen);
    cJSON *root = cJSON_Parse(text);
    if (!cJSON_IsArray(root) || cJSON_GetArraySize(root) != 1)
        die("%s: expected a JSON array with one weights group", manifest_path);
    cJSON *group = cJSON_GetArrayItem(root, 0);
    cJSON *paths = cJSON_GetObjectItem(group, "paths");
    cJSON *weights = cJSON_GetObjectItem(group, "weights");
    if (!cJSON_IsArray(paths) || cJSON_GetArraySize(paths) != 1 ||
        !cJSON_IsString(cJSON_GetArrayItem(paths, 0)) || !cJSON_IsArray(weights))
        die("%s: a group needs one path and a weights list", manifest_path);
    const char *bin_name = cJSON_GetArrayItem(paths, 0)->valuestring;
    if (strchr(bin_name, '/') != NULL || strlen(bin_name) > 200)
        die("%s: the .bin path must be a plain file name next to it", manifest_path);
    char bin_path[4096];
    const char *slash = strrchr(manifest_path, '/');
    snprintf(bin_path, sizeof bin_path, "%.*s%s", slash ? (int)(slash - manifest_path + 1) : 0,
             manifest_path, bin_name);
    uint8_t *bin = slurp(bin_path, BIN_MAX, &blen);

    cJSON *w;
    cJSON_ArrayForEach(w, weights)
    {
        if (ntensors == MAX_TENSORS)
            die("%s: too many tensors", manifest_path);
        tensor_t *t = &tensors[ntensors++];
        cJSON *name = cJSON_GetObjectItem(w, "name"), *shape = cJSON_GetObjectItem(w, "shape");
        cJSON *dtype = cJSON_GetObjectItem(w, "dtype"), *q = cJSON_GetObjectItem(w, "quantization");
        if (!cJSON_IsString(name) || strlen(name->valuestring) >= sizeof t->name ||
            !cJSON_IsArray(shape) || cJSON_GetArraySize(shape) < 1 ||
            cJSON_GetArraySize(shape) > 4 || !cJSON_IsString(dtype) ||
            strcmp(dtype->valuestring, "float32") != 0)
            die("%s: a weights entry needs a name, a shape of rank 1..4 and dtype float32",
                manifest_path);
        snprintf(t->name, sizeof t->name, "%s", name->valuestring);
        t->rank = cJSON_GetArraySize(shape);
        t->count = 1;
        for (int i = 0; i < t->rank; i++) {
            cJSON *d = cJSON_GetArrayItem(shape, i);
            if (!cJSON_IsNumber(d) || d->valuedouble < 1 || d->valuedouble > 4096)
                die("%s: bad dimension in tensor %s", t->name);
            t->shape[i] = d->valueint;
            t->count *= (size_t)t->shape[i];
        }
        if (t->count > BIN_MAX)
            die("tensor %s is too large", t->name);
        size_t esize = 4;
        double scale = 1, min = 0;
        if (q != NULL) {
            cJSON *qd = cJSON_GetObjectItem(q, "dtype"), *qs = cJSON_GetObjectItem(q, "scale");
            cJSON *qm = cJSON_GetObjectItem(q, "min");
            if (!cJSON_IsString(qd) || strcmp(qd->valuestring, "uint8") != 0 ||
                !cJSON_IsNumber(qs) || !cJSON_IsNumber(qm))
                die("tensor %s: only uint8 quantisation with scale and min is known", t->name);
            esize = 1;
            scale = qs->valuedouble;
            min = qm->valuedouble;
        }
        if (t->count * esize > blen - off)
            die("%s is shorter than its manifest says", bin_path);
        t->v = malloc(t->count * sizeof(float));
        if (t->v == NULL)
            die("out of memory for %s", t->name);
        for (size_t i = 0; i < t->count; i++) {
            if (esize == 1) {
                t->v[i] = (float)(bin[off + i] * scale + min);
            } else {
                uint32_t u = (uint32_t)bin[off + 4 * i] | (uint32_t)bin[off + 4 * i + 1] << 8 |
                             (uint32_t)bin[off + 4 * i + 2] << 16 |
                             (uint32_t)bin[off + 4 * i + 3] << 24;
                memcpy(&t->v[i], &u, 4);
            }
        }
        off += t->count * esize;
    }
    if (off != blen)
        die("%s is longer than its manifest says", bin_path);
    free(bin);
    free(text);
    cJSON_Delete(root);
}

/* The tensor `name` with exactly this shape; NULL if absent (when optional), else exits. */
static const tensor_t *get(const char *name, int rank, const int *shape, int optional)
{
    for (int i = 0; i < ntensors; i++) {
        const tensor_t *t = &tensors[i];
        if (strcmp(t->name, name) != 0)
            continue;
        int ok = t->rank == rank;
        for (int d = 0; ok && d < rank; d++)
            ok = shape[d] <= 0 || t->shape[d] == shape[d];
        if (!ok)
            die("tensor %s does not have the shape the Tiny Face Detector has", name);
        return t;
    }
    if (!optional)
        die("tensor %s is missing: not a Tiny Face Detector manifest", name);
    return NULL;
}

static FILE *wf, *cf;

static void put(const float *v, size_t n)
{
    if (fwrite(v, sizeof(float), n, wf) != n)
        die("%s", "write failed");
}

/* tfjs conv filters are [kh][kw][in][out]; darknet's are [out][in][kh][kw]. */
static void put_conv(const tensor_t *f, int groups)
{
    int kh = f->shape[0], kw = f->shape[1], in = f->shape[2], out = f->shape[3];
    if (groups > 1) { /* depthwise [kh][kw][C][1] -> darknet [C][1][kh][kw] */
        for (int c = 0; c < in; c++)
            for (int y = 0; y < kh; y++)
                for (int x = 0; x < kw; x++)
                    put(&f->v[((size_t)(y * kw + x) * in + c)], 1);
        return;
    }
    for (int o = 0; o < out; o++)
        for (int c = 0; c < in; c++)
            for (int y = 0; y < kh; y++)
                for (int x = 0; x < kw; x++)
                    put(&f->v[(((size_t)y * kw + x) * in + c) * out + o], 1);
}

int main(int argc, char **argv)
{
    const char *manifest = NULL, *out_dir = NULL;
    int size = 416;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: framegate-convert --manifest tiny_face_detector_model-weights_manifest.json\n"
                   "                         --out-dir DIR [--input-size N]\n"
                   "Writes DIR/face-tiny.cfg, DIR/face-tiny.weights and DIR/face.names: face-api's\n"
                   "Tiny Face Detector as a darknet network (input N x N, default 416, a multiple\n"
                   "of 32; serve it with --preprocess faceapi).\n");
            return 0;
        }
        if (i + 1 >= argc)
            die("%s needs a value (see --help)", argv[i]);
        if (strcmp(argv[i], "--manifest") == 0)
            manifest = argv[++i];
        else if (strcmp(argv[i], "--out-dir") == 0)
            out_dir = argv[++i];
        else if (strcmp(argv[i], "--input-size") == 0)
            size = atoi(argv[++i]);
        else
            die("unknown argument %s (see --help)", argv[i]);
    }
    if (manifest == NULL || out_dir == NULL)
        die("%s", "--manifest and --out-dir are required (see --help)");
    if (size < 64 || size > 4096 || size % 32 != 0)
        die("%s", "--input-size must be a multiple of 32 in 64..4096");
    load(manifest);

    char cfg_path[4096], w_path[4096], n_path[4096], tmp[4200];
    snprintf(cfg_path, sizeof cfg_path, "%s/face-tiny.cfg", out_dir);
    snprintf(w_path, sizeof w_path, "%s/face-tiny.weights", out_dir);
    snprintf(n_path, sizeof n_path, "%s/face.names", out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", w_path);
    if ((wf = fopen(tmp, "wb")) == NULL)
        die("cannot write %s", tmp);
    char ctmp[4200];
    snprintf(ctmp, sizeof ctmp, "%s.tmp", cfg_path);
    if ((cf = fopen(ctmp, "w")) == NULL)
        die("cannot write %s", ctmp);

    /* darknet weights header: major 0, minor 2, revision 0, then `seen` as 64 bits. */
    int32_t hdr[3] = {0, 2, 0};
    uint64_t seen = 0;
    if (fwrite(hdr, sizeof hdr, 1, wf) != 1 || fwrite(&seen, sizeof seen, 1, wf) != 1)
        die("%s", "write failed");
    fprintf(cf,
            "# face-api's Tiny Face Detector (@vladmandic/face-api, MIT), converted by\n"
            "# framegate-convert. Serve with --preprocess faceapi: top-left placement, zero\n"
            "# padding, the mean is folded into the first convolution.\n"
            "[net]\nbatch=1\nsubdivisions=1\nwidth=%d\nheight=%d\nchannels=3\n\n",
            size, size);

    /* conv0 with the mean folded in: b' = b - sum(w * mean / 255). */
    const tensor_t *f0 = get("conv0/filters", 4, (int[]){3, 3, 3, 0}, 0);
    int ch = f0->shape[3];
    const tensor_t *b0 = get("conv0/bias", 1, (int[]){ch}, 0);
    float *bias = malloc(sizeof(float) * (size_t)ch);
    for (int o = 0; o < ch; o++) {
        double b = b0->v[o];
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 3; x++)
                for (int c = 0; c < 3; c++)
                    b -= (double)f0->v[((y * 3 + x) * 3 + c) * ch + o] * MEAN_RGB[c] / 255.0;
        bias[o] = (float)b;
    }
    put(bias, (size_t)ch);
    free(bias);
    put_conv(f0, 1);
    fprintf(cf, "[convolutional]\nfilters=%d\nsize=3\nstride=1\npad=0\nactivation=leaky\n\n", ch);

    for (int k = 1; k <= 7; k++) {
        char dn[64], pn[64], bn[64];
        snprintf(dn, sizeof dn, "conv%d/depthwise_filter", k);
        snprintf(pn, sizeof pn, "conv%d/pointwise_filter", k);
        snprintf(bn, sizeof bn, "conv%d/bias", k);
        const tensor_t *d = get(dn, 4, (int[]){3, 3, ch, 1}, k > 5);
        if (d == NULL)
            continue;
        if (k <= 5) /* a pool after conv0..conv4, before conv1..conv5 */
            fprintf(cf, "[maxpool]\nsize=2\nstride=2\n\n");
        const tensor_t *p = get(pn, 4, (int[]){1, 1, ch, 0}, 0);
        int out = p->shape[3];
        const tensor_t *b = get(bn, 1, (int[]){out}, 0);
        float *zero = calloc((size_t)ch, sizeof(float));
        put(zero, (size_t)ch);
        free(zero);
        put_conv(d, ch);
        fprintf(cf,
                "[convolutional]\nfilters=%d\ngroups=%d\nsize=3\nstride=1\npad=1\n"
                "activation=linear\n\n",
                ch, ch);
        put(b->v, (size_t)out);
        put_conv(p, 1);
        fprintf(cf, "[convolutional]\nfilters=%d\nsize=1\nstride=1\npad=0\nactivation=leaky\n\n",
                out);
        ch = out;
        if (k == 5)
            fprintf(cf, "[maxpool]\nsize=2\nstride=1\n\n");
    }

    /* conv8: 5 x (x, y, w, h, score) -> 5 x (x, y, w, h, score, class = 0). */
    const tensor_t *f8 = get("conv8/filters", 4, (int[]){1, 1, ch, NUM_ANCHORS * 5}, 0);
    const tensor_t *b8 = get("conv8/bias", 1, (int[]){NUM_ANCHORS * 5}, 0);
    int n8 = NUM_ANCHORS * 6;
    float *b = calloc((size_t)n8, sizeof(float));
    float *w = calloc((size_t)n8 * ch, sizeof(float));
    for (int a = 0; a < NUM_ANCHORS; a++)
        for (int e = 0; e < 5; e++) {
            b[a * 6 + e] = b8->v[a * 5 + e];
            for (int c = 0; c < ch; c++)
                w[(size_t)(a * 6 + e) * ch + c] = f8->v[(size_t)c * (NUM_ANCHORS * 5) + a * 5 + e];
        }
    put(b, (size_t)n8);
    put(w, (size_t)n8 * ch);
    free(b);
    free(w);
    fprintf(cf, "[convolutional]\nfilters=%d\nsize=1\nstride=1\npad=0\nactivation=linear\n\n", n8);
    fprintf(cf, "[region]\nanchors=");
    for (int i = 0; i < 2 * NUM_ANCHORS; i++)
        fprintf(cf, "%s%g", i ? "," : "", ANCHORS[i]);
    fprintf(cf, "\nbias_match=1\nclasses=1\ncoords=4\nnum=%d\nsoftmax=1\nthresh=.5\n", NUM_ANCHORS);

    if (fclose(wf) != 0 || fclose(cf) != 0)
        die("%s", "write failed");
    FILE *nf = fopen(n_path, "w");
    if (nf == NULL || fputs("face\n", nf) < 0 || fclose(nf) != 0)
        die("cannot write %s", n_path);
    if (rename(tmp, w_path) != 0 || rename(ctmp, cfg_path) != 0)
        die("cannot rename into %s", out_dir);
    for (int i = 0; i < ntensors; i++)
        free(tensors[i].v);
    printf("framegate-convert: wrote %s, %s, %s\n", cfg_path, w_path, n_path);
    return 0;
}
