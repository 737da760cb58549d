/* be_convpool (backend/convpool.c) against stock libdarknet: a [convolutional] (3x3 on the
 * NCHW input, or 1x1 on 8- and 16-channel blocks) and the [maxpool] 2x2 after it, with
 * generated weights, biases and batch-norm statistics, run by network_predict; the one-pass
 * kernel's output, in 8- and 16-channel blocks, must be within rel 1e-5 of darknet's pool
 * output, for every kernel (the portable C one, AVX2 + FMA, and AVX-512F's Winograd tiles,
 * where the CPU has them), at 1 and 2 threads, on sizes whose edges need the padded path (pad 0, 1
 * and 2; odd widths and heights, where the last pool window holds one column or row; widths under
 * one tile). The same kernel gives the same floats for every blocking and thread count. A band of
 * rows, read from a buffer of only the input rows it needs and written into a band buffer, must
 * equal the same rows of the whole output bit for bit and leave every other float alone.
 * be_convpool_fits and be_convpool_create refuse what the kernel does not do. */
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

#include "be_testnet.h"
#include "convpool.h"
#include "err.h"

#define TOL 1e-5
#define GUARD 64 /* floats after each output buffer that must stay untouched */

static const char *const isa_name[] = {"portable C", "AVX2", "AVX-512"};

static int setup(void **state)
{
    (void)state;
    return bt_dir_make("be-convpool");
}

static int teardown(void **state)
{
    (void)state;
    bt_dir_remove();
    return 0;
}

/* [conv] then [maxpool] as darknet parses them, with deterministic non-trivial weights; with
 * dwact, a depthwise 3x3 with that activation before the conv (dwbn: batch-normalised). */
static network *make_net_dw(int w, int h, int c, int n, int size, int pad, const char *act,
                            const char *pool, unsigned seed, const char *dwact, int dwbn)
{
    char path[128], text[768], dw[256] = "";
    if (dwact != NULL)
        snprintf(dw, sizeof dw,
                 "[convolutional]\nbatch_normalize=%d\nfilters=%d\ngroups=%d\nsize=3\n"
                 "stride=1\npadding=1\nactivation=%s\n",
                 dwbn, c, c, dwact);
    snprintf(text, sizeof text,
             "[net]\nbatch=1\nsubdivisions=1\nwidth=%d\nheight=%d\nchannels=%d\n%s"
             "[convolutional]\nbatch_normalize=1\nfilters=%d\nsize=%d\nstride=1\npadding=%d\n"
             "activation=%s\n[maxpool]\n%s\n",
             w, h, c, dw, n, size, pad, act, pool);
    srand(seed);
    network *net = bt_parse(bt_write_cfg("net.cfg", text, path, sizeof path));
    for (int i = 0; i < net->n; i++) {
        layer *l = &net->layers[i];
        if (l->type != CONVOLUTIONAL)
            continue;
        for (int j = 0; j < l->nweights; j++)
            l->weights[j] = bt_urand(-0.5f, 0.5f);
        for (int j = 0; j < l->n; j++) {
            l->biases[j] = bt_urand(-0.3f, 0.3f);
            if (!l->batch_normalize)
                continue;
            l->scales[j] = bt_urand(0.5f, 1.5f);
            l->rolling_mean[j] = bt_urand(-0.2f, 0.3f);
            l->rolling_variance[j] = bt_urand(0.5f, 2.0f);
        }
    }
    return net;
}

static network *make_net(int w, int h, int c, int n, int size, int pad, const char *act,
                         const char *pool, unsigned seed)
{
    return make_net_dw(w, h, c, n, size, pad, act, pool, seed, NULL, 0);
}

/* NCHW -> blocked (c / blk blocks of h x w cells of blk channels), rows [y0, y1) only */
static void to_blocked(const float *nchw, float *b, int c, int h, int w, int blk, int y0, int y1)
{
    int rows = y1 - y0;
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < rows * w; i++)
            b[((size_t)(ch / blk) * rows * w + i) * blk + ch % blk] =
                nchw[(size_t)ch * h * w + (size_t)y0 * w + i];
}

/* blocked (c / blk blocks of h x w cells of blk channels) -> NCHW */
static void from_blocked(const float *b, float *nchw, int c, int h, int w, int blk)
{
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < h * w; i++)
            nchw[(size_t)ch * h * w + i] = b[((size_t)(ch / blk) * h * w + i) * blk + ch % blk];
}

typedef struct {
    int w, h, c, n, size, pad;
    const char *act;
    const char *dwact; /* not NULL: a depthwise 3x3 first (be_convpool_create_dw) */
    int dwbn;
} case_t;

static void run_case(const case_t *k, unsigned seed)
{
    network *net = make_net_dw(k->w, k->h, k->c, k->n, k->size, k->pad, k->act, "size=2\nstride=2",
                               seed, k->dwact, k->dwbn);
    int dw = k->dwact != NULL;
    const layer *dl = &net->layers[0], *cv = &net->layers[dw], *pl = &net->layers[dw + 1];
    assert_true(be_convpool_fits(cv, pl));
    if (dw)
        assert_true(be_convpool_fits_dw(dl, cv, pl));
    size_t in_n = (size_t)k->c * k->h * k->w, out_n = (size_t)pl->outputs;
    float *in = malloc(in_n * sizeof(float));
    float *got = malloc((out_n + GUARD) * sizeof(float)), *nchw = malloc(out_n * sizeof(float));
    float *whole = malloc(out_n * sizeof(float)), *band = malloc((out_n + GUARD) * sizeof(float));
    /* what run reads: NCHW for a 3x3, 8- and 16-channel blocks for a 1x1; all of it, or a band */
    float *src = malloc(in_n * sizeof(float)), *src_band = malloc(in_n * sizeof(float));
    assert_non_null(src);
    assert_non_null(src_band);
    assert_non_null(in);
    assert_non_null(got);
    assert_non_null(nchw);
    assert_non_null(whole);
    assert_non_null(band);
    for (size_t i = 0; i < in_n; i++) /* some exact zeros: ties in the max */
        in[i] = i % 7 == 3 ? 0.0f : bt_urand(0.0f, 1.0f);
    const float *ref = network_predict(net, in);
    const float *pool_out = pl->output;
    assert_ptr_equal(ref, pool_out);
    int first = 1;
    for (int ib = k->size == 3 ? 1 : 8; ib <= (k->size == 3 ? 1 : 16); ib += 8) {
        if (k->c % ib != 0) { /* not whole blocks: refused */
            be_convpool_t *cp = (be_convpool_t *)1;
            assert_int_equal(dw ? be_convpool_create_dw(&cp, dl, cv, pl, 8, ib)
                                : be_convpool_create(&cp, cv, pl, 8, ib),
                             PROTO_EINVAL);
            assert_null(cp);
            continue;
        }
        to_blocked(in, src, k->c, k->h, k->w, ib, 0, k->h);
        /* a 3x3: its interior windows by Winograd (the default), and all on the direct kernel */
        for (int wino = 0; wino <= (k->size == 3); wino++, first = 1)
            for (int blk = 8; blk <= 16; blk += 8)
                for (int isa = BE_CONVPOOL_ISA_C; isa <= BE_CONVPOOL_ISA_AVX512; isa++)
                    for (int threads = 1; threads <= 2; threads++) {
                        be_convpool_t *cp = NULL;
                        be_convpool_winograd(wino);
                        assert_int_equal(dw ? be_convpool_create_dw(&cp, dl, cv, pl, blk, ib)
                                            : be_convpool_create(&cp, cv, pl, blk, ib),
                                         0);
                        be_convpool_winograd(1);
                        assert_int_equal(be_convpool_layers(cp), dw ? 3 : 2);
                        assert_int_equal(be_convpool_blk(cp), blk);
                        assert_int_equal(be_convpool_in_blk(cp), ib);
                        be_convpool_isa(isa);
                        for (size_t i = 0; i < out_n + GUARD; i++)
                            got[i] = NAN;
                        be_convpool_run_all(cp, src, got, threads);
                        for (size_t i = out_n; i < out_n + GUARD; i++)
                            assert_true(isnan(got[i]));
                        from_blocked(got, nchw, pl->c, pl->out_h, pl->out_w, blk);
                        double r = bt_rel_diff(nchw, pool_out, out_n);
                        if (!(r <= TOL))
                            fail_msg("%s%dx%dx%d -> %d, pad %d, %s, in %d, out %d, %s kernel%s, %d "
                                     "threads: rel %g",
                                     dw ? "depthwise, " : "", k->w, k->h, k->c, k->n, k->pad,
                                     k->act, ib, blk, isa_name[isa], wino ? " + Winograd" : "",
                                     threads, r);
                        /* the same kernel: the same floats, any blocking, either side, and any
                         * thread count; and the AVX-512 Winograd tiles the AVX2 ones' */
                        if (first && isa != BE_CONVPOOL_ISA_C) {
                            memcpy(whole, nchw, out_n * sizeof(float));
                            first = 0;
                        } else if (isa != BE_CONVPOOL_ISA_C)
                            assert_memory_equal(nchw, whole, out_n * sizeof(float));
                        /* bands: rows [lo, hi) from a buffer of the input rows they read into a
                         * buffer of hi - lo rows, as the padding shortcut runs them (dnnl_tail.c)
                         */
                        int oh = pl->out_h;
                        int bands[][2] = {{0, 1}, {oh / 3, oh - oh / 4}, {oh - 1, oh}, {1, oh}};
                        for (size_t b = 0; b < sizeof bands / sizeof bands[0]; b++) {
                            int lo = bands[b][0], hi = bands[b][1];
                            if (lo >= hi)
                                continue;
                            size_t cell = (size_t)pl->out_w * blk, plane = (size_t)(hi - lo) * cell;
                            size_t used = plane * (size_t)(pl->c / blk);
                            for (size_t i = 0; i < used + GUARD; i++)
                                band[i] = NAN;
                            int ilo = 2 * lo - k->pad - dw,
                                ihi = 2 * hi - k->pad + k->size - 1 + dw;
                            ilo = ilo > 0 ? ilo : 0;
                            ihi = ihi < k->h ? ihi : k->h;
                            to_blocked(in, src_band, k->c, k->h, k->w, ib, ilo, ihi);
                            be_convpool_run(cp, src_band, ihi - ilo, ilo, band, hi - lo, lo, lo, hi,
                                            threads);
                            for (size_t i = used; i < used + GUARD; i++)
                                assert_true(isnan(band[i]));
                            for (int cb = 0; cb < pl->c / blk; cb++)
                                assert_memory_equal(band + cb * plane,
                                                    got + ((size_t)cb * oh + lo) * cell,
                                                    plane * sizeof(float));
                        }
                        print_message(
                            "%s%dx%dx%d -> %d, %dx%d, pad %d, %s, in blocks of %d, out of %d, %s "
                            "kernel%s, %d thread%s: rel %.2g\n",
                            dw ? "depthwise, " : "", k->w, k->h, k->c, k->n, k->size, k->size,
                            k->pad, k->act, ib, blk, isa_name[isa], wino ? " + Winograd" : "",
                            threads, threads > 1 ? "s" : "", r);
                        be_convpool_destroy(cp);
                    }
    }
    be_convpool_isa(BE_CONVPOOL_ISA_AVX512);
    free(in);
    free(src);
    free(src_band);
    free(got);
    free(nchw);
    free(whole);
    free(band);
    free_network(net);
}

static void test_against_darknet(void **state)
{
    (void)state;
    static const case_t cases[] = {
        {416, 40, 3, 16, 3, 0, "leaky", NULL,
         0}, /* the face model's first layers, a band of them */
        {67, 45, 3, 16, 3, 1, "leaky", NULL,
         0}, /* yolov3-tiny's ('same'), odd: last windows hold one */
        {64, 48, 3, 32, 3, 1, "relu", NULL, 0},  /* two blocks of 16 filters */
        {13, 9, 1, 16, 3, 0, "linear", NULL, 0}, /* grey; 11 x 7: odd output, one tile and a part */
        {8, 5, 4, 16, 3, 0, "leaky", NULL, 0},   /* under one tile wide, one output row */
        {31, 8, 5, 32, 3, 1, "leaky", NULL, 0},  /* 5 channels: 15 tiles, 3 x 4 and 3 more */
        {9, 6, 3, 16, 3, 2, "leaky", NULL, 0},   /* padding 2: every tile on an edge */
        {3, 3, 8, 16, 3, 1, "relu", NULL, 0},    /* the most channels, 3 x 3 */
        /* 1x1 on 8-channel blocks: the face model's 16 -> 32 (a band of it) and 128 -> 256 */
        {207, 30, 16, 32, 1, 0, "leaky", NULL, 0},
        {26, 26, 128, 256, 1, 0, "leaky", NULL, 0},
        {13, 9, 8, 16, 1, 0, "relu", NULL, 0},    /* odd: last windows hold one column, one row */
        {14, 10, 24, 16, 1, 0, "leaky", NULL, 0}, /* 24 channels: 8-channel blocks only */
        {5, 3, 64, 16, 1, 0, "linear", NULL, 0},  /* under one tile wide */
        /* a depthwise 3x3 first: the face model's layers 2-4 (a band) and 11-13, as it has them
         * (linear, no batch-norm), and others */
        {207, 20, 16, 32, 1, 0, "leaky", "linear", 0},
        {26, 26, 128, 256, 1, 0, "leaky", "linear", 0},
        {13, 9, 8, 16, 1, 0, "relu", "leaky", 1},   /* odd, one 8-channel block */
        {1, 1, 16, 16, 1, 0, "leaky", "relu", 1},   /* one pixel: every tap but one outside */
        {7, 2, 48, 32, 1, 0, "linear", "leaky", 1}, /* 48: 8-channel blocks only */
        {2, 5, 32, 16, 1, 0, "leaky", "linear", 1}, /* two columns: no middle column */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], 7 + (unsigned)i);
}

static void test_refuses(void **state)
{
    (void)state;
    struct {
        int c, n, size, pad;
        const char *act, *pool;
    } no[] = {
        {3, 8, 3, 1, "leaky", "size=2\nstride=2"},     /* filters not a multiple of 16 */
        {9, 16, 3, 1, "leaky", "size=2\nstride=2"},    /* too many input channels */
        {3, 16, 3, 1, "logistic", "size=2\nstride=2"}, /* an activation it does not apply */
        {3, 16, 3, 1, "leaky", "size=3\nstride=2"},    /* another pool */
        {3, 16, 3, 1, "leaky", "size=2\nstride=1"},
        {12, 16, 1, 0, "leaky", "size=2\nstride=2"}, /* 1x1: not whole 8-channel blocks */
        {16, 16, 1, 1, "leaky", "size=2\nstride=2"}, /* 1x1, padded */
        {3, 16, 5, 2, "leaky", "size=2\nstride=2"},  /* 5x5 */
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        network *net =
            make_net(32, 24, no[i].c, no[i].n, no[i].size, no[i].pad, no[i].act, no[i].pool, 3);
        assert_false(be_convpool_fits(&net->layers[0], &net->layers[1]));
        be_convpool_t *cp = (be_convpool_t *)1;
        assert_int_equal(be_convpool_create(&cp, &net->layers[0], &net->layers[1], 8, 1),
                         PROTO_EINVAL);
        assert_null(cp);
        free_network(net);
    }
    /* a depthwise 3x3 first: only before a 1x1, and only while two of its rows fit the
     * buffer (2 x 252 x 16 floats do; 253 columns take 258 cells a row: not) */
    static const struct {
        int w, size;
        int ok;
    } dws[] = {{252, 1, 1}, {253, 1, 0}, {32, 3, 0}};
    for (size_t i = 0; i < sizeof dws / sizeof dws[0]; i++) {
        network *net = make_net_dw(dws[i].w, 6, 16, 16, dws[i].size, dws[i].size / 2, "leaky",
                                   "size=2\nstride=2", 3, "linear", 0);
        assert_int_equal(be_convpool_fits_dw(&net->layers[0], &net->layers[1], &net->layers[2]),
                         dws[i].ok);
        be_convpool_t *cp = (be_convpool_t *)1;
        assert_int_equal(
            be_convpool_create_dw(&cp, &net->layers[0], &net->layers[1], &net->layers[2], 8, 8),
            dws[i].ok ? 0 : PROTO_EINVAL);
        assert_true(dws[i].ok ? cp != NULL : cp == NULL);
        be_convpool_destroy(cp);
        free_network(net);
    }
    /* the pool must read this convolution: in the other order, no */
    network *net = make_net(32, 24, 3, 16, 3, 1, "leaky", "size=2\nstride=2", 3);
    assert_false(be_convpool_fits(&net->layers[1], &net->layers[0]));
    be_convpool_t *cp = NULL;
    assert_int_equal(be_convpool_create(&cp, &net->layers[0], &net->layers[1], 4, 1), PROTO_EINVAL);
    /* a 3x3 reads NCHW only */
    assert_int_equal(be_convpool_create(&cp, &net->layers[0], &net->layers[1], 8, 8), PROTO_EINVAL);
    assert_null(cp);
    free_network(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_darknet),
        cmocka_unit_test(test_refuses),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
