/* What the backend's network tests share (tests/unit/test_be_*.c include it; header-only, so
 * each test stays one file and one binary): a scratch directory for the cfg files darknet
 * parses, cfg files written into it, networks with generated weights, and the relative
 * distance the tests hold outputs to. Test thread only: bt_dir is one per binary. */
#ifndef BE_TESTNET_H
#define BE_TESTNET_H

#include <dirent.h>
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

static char bt_dir[64];

/* A fresh scratch directory, /tmp/fg-<name>-XXXXXX: 0, or -1 (a cmocka setup's answer). */
static inline int bt_dir_make(const char *name)
{
    snprintf(bt_dir, sizeof bt_dir, "/tmp/fg-%s-XXXXXX", name);
    return mkdtemp(bt_dir) == NULL ? -1 : 0;
}

/* Removes the scratch directory and every file the test wrote into it. */
static inline void bt_dir_remove(void)
{
    DIR *d = opendir(bt_dir);
    char path[sizeof bt_dir + 256];
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", bt_dir, e->d_name);
            unlink(path);
        }
    if (d != NULL)
        closedir(d);
    rmdir(bt_dir);
}

/* Writes `text` to the scratch directory's file `name`. Returns its path (in path[cap]). */
static inline const char *bt_write_cfg(const char *name, const char *text, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", bt_dir, name);
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    fputs(text, out);
    fclose(out);
    return path;
}

/* Copies a Debian cfg with batch and subdivisions forced to 1 (tiny.cfg says batch=128, which
 * would make darknet allocate every layer 128 times over). Returns the copy's path. */
static inline const char *bt_batch1_cfg(const char *name, char *path, size_t cap)
{
    char src[256], line[512];
    snprintf(src, sizeof src, "%s/%s", FG_DARKNET_CFG, name);
    snprintf(path, cap, "%s/%s", bt_dir, name);
    FILE *in = fopen(src, "r"), *out = fopen(path, "w");
    assert_non_null(in);
    assert_non_null(out);
    while (fgets(line, sizeof line, in) != NULL) {
        if (strncmp(line, "batch=", 6) == 0)
            fputs("batch=1\n", out);
        else if (strncmp(line, "subdivisions=", 13) == 0)
            fputs("subdivisions=1\n", out);
        else
            fputs(line, out);
    }
    fclose(in);
    fclose(out);
    return path;
}

static inline float bt_urand(float lo, float hi)
{
    return lo + (hi - lo) * (float)rand() / (float)RAND_MAX;
}

/* darknet's network for the cfg at `path`, batch 1 (darknet's own initial weights). */
static inline network *bt_parse(const char *path)
{
    network *net = parse_network_cfg((char *)path);
    assert_non_null(net);
    set_batch_network(net, 1);
    return net;
}

/* Deterministic weights: darknet's own random init from srand(seed), scaled up so that the
 * activations neither vanish nor explode over a dozen layers (darknet's uniform init shrinks
 * them), plus non-trivial biases and batch-norm statistics so the folding is exercised. */
static inline network *bt_make_net(const char *cfg, unsigned seed)
{
    srand(seed);
    network *net = bt_parse(cfg);
    for (int i = 0; i < net->n; i++) {
        layer *l = &net->layers[i];
        if (l->type != CONVOLUTIONAL)
            continue;
        /* Found by printing each layer's rms on dog.jpg: it stays within 0.5..3 for yolov3-tiny
         * and yolov2-tiny, so the yolo/region logits (exp'd for box sizes) stay finite. */
        float gain = l->activation == LINEAR ? 0.3f : 1.3f;
        for (int j = 0; j < l->nweights; j++)
            l->weights[j] *= gain;
        for (int j = 0; j < l->n; j++) {
            l->biases[j] = bt_urand(-0.2f, 0.2f);
            if (l->batch_normalize) {
                l->scales[j] = bt_urand(0.5f, 1.5f);
                l->rolling_mean[j] = bt_urand(0.0f, 0.3f);
                l->rolling_variance[j] = bt_urand(0.5f, 2.0f);
            }
        }
    }
    return net;
}

/* max |a - b| / max |b| (b's floor 1e-6); a NaN in a makes it infinite. */
static inline double bt_rel_diff(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > num || isnan(d))
            num = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > den)
            den = fabs(b[i]);
    }
    return num / (den > 1e-6 ? den : 1e-6);
}

#endif
