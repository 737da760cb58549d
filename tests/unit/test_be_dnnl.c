/* The oneDNN engine (backend/dnnl.c) against stock libdarknet on the same network, with the
 * same contract as the fast path's (test_be_fast.c): Debian's yolov3-tiny and yolov2-tiny and a
 * network of edge cases (depthwise, strides, odd sizes, logistic/relu/tanh, max-pool geometries)
 * with deterministic generated weights and batch-norm statistics, dog.jpg letterboxed by
 * darknet: every layer's output tensor within rel 1e-4 of stock darknet's (the engine writes
 * every layer back to darknet's buffers for this), and, in serving mode (only what darknet
 * reads is written back), the network's output too; a pass stops between layers when asked.
 * A build without oneDNN must refuse it. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "be_testnet.h"
#include "convpool.h"
#include "dnnl.h"
#include "err.h"

#define DOG FG_DARKNET_DATA "/dog.jpg"
#define TOL 1e-4

static int setup(void **state)
{
    (void)state;
    return bt_dir_make("be-dnnl");
}

static int teardown(void **state)
{
    (void)state;
    bt_dir_remove();
    return 0;
}

/* Stock network_predict's every layer output, then the engine's (every layer written back,
 * buffers poisoned with NaN in between), compared layer by layer; then serving mode's output.
 * Both with the f32 3x3 convolutions as Winograd (at least min_wino of them where oneDNN has
 * it, min_fast as fast.c's elsewhere) and all direct; then, all direct, with the max-pools the
 * other way round from this CPU's default (framegate's loop or oneDNN's kernel), at least min_own
 * of them in the loop; then the default at 2 threads (fast.c's Winograd and the loop share the
 * work over the OpenMP team). */
static void compare(network *net, const char *name, int min_onednn, int min_wino, int min_fast,
                    int min_own, int pairs, int reshapes)
{
    image im = load_image_color(DOG, 0, 0);
    image sized = letterbox_image(im, net->w, net->h);
    network_predict(net, sized.data);
    float **ref = calloc((size_t)net->n, sizeof *ref);
    assert_non_null(ref);
    for (int i = 0; i < net->n; i++) {
        layer *l = &net->layers[i];
        ref[i] = malloc((size_t)l->outputs * sizeof(float));
        assert_non_null(ref[i]);
        memcpy(ref[i], l->output, (size_t)l->outputs * sizeof(float));
        memset(l->output, 0xff, (size_t)l->outputs * sizeof(float));
    }
    char why[200] = "";
    int own_default = -1;
    for (int k = 0; k < 8; k++) {
        int all = !(k & 1), wino = k < 2 || k >= 6, swap = k == 4 || k == 5;
        int threads = k >= 6 ? 2 : 1;
        be_dnnl_refuse_winograd(!wino);
        if (swap)
            be_dnnl_own_pool(!own_default);
        be_dnnl_t *d = NULL;
        if (be_dnnl_create(&d, net, threads, all, why, sizeof why) != 0)
            fail_msg("%s: %s", name, why);
        be_dnnl_refuse_winograd(0);
        be_dnnl_own_pool(-1);
        if (k == 0)
            own_default = be_dnnl_own_pool_layers(d) > 0;
        /* in serving mode where the loops are the default (be_dnnl_own_loops_default), a first
         * 3x3 convolution (or a 1x1) and its 2x2 pool are one be_convpool pass (`pairs`) */
        assert_int_equal(be_dnnl_convpool_layers(d), !all && own_default ? pairs : 0);
        if (swap && own_default)
            assert_int_equal(be_dnnl_own_pool_layers(d), 0);
        else if (swap || (k >= 2 && own_default && !be_dnnl_winograd_supported()))
            /* (with AVX-512, oneDNN's convolutions write channels last, or leave their
             * activation to a step of its own (Winograd): those pools stay oneDNN's by
             * default) */
            assert_true(be_dnnl_own_pool_layers(d) + be_dnnl_convpool_layers(d) >= min_own);
        /* The layers were really oneDNN's (a fallback to darknet everywhere would pass), and
         * the Winograd ones were (a refused Winograd falls back to direct silently). */
        assert_true(be_dnnl_layers(d) >= min_onednn);
        /* [route] and [upsample] on the team (reshape.h): their outputs are checked below */
        assert_int_equal(be_dnnl_reshape_layers(d), reshapes);
        if (!wino)
            assert_int_equal(be_dnnl_winograd_layers(d), 0);
        else if (be_dnnl_winograd_supported())
            assert_true(be_dnnl_winograd_layers(d) >= min_wino);
        else /* fast.c's Winograd on the layers with 64+ input channels */
            assert_true(be_dnnl_winograd_layers(d) >= min_fast);
        float *out = be_dnnl_predict_stop(d, sized.data, NULL, NULL);
        assert_ptr_equal(out, net->output);
        double worst = 0;
        for (int i = 0; i < net->n; i++) {
            layer *l = &net->layers[i];
            if (!all && i != net->n - 1)
                continue;
            double r = bt_rel_diff(l->output, ref[i], l->outputs);
            worst = r > worst ? r : worst;
            if (!(r <= TOL))
                fail_msg("%s layer %d (type %d, %dx%dx%d -> %dx%dx%d): rel %g > %g", name, i,
                         l->type, l->w, l->h, l->c, l->out_w, l->out_h, l->out_c, r, TOL);
        }
        print_message("%s (%s, %d thread%s): %d layers, %d run by the engine, %d as Winograd, %d "
                      "max-pools by framegate's loop, %d pairs by be_convpool, worst rel %.2g\n",
                      name, all ? "every layer" : "serving", threads, threads > 1 ? "s" : "",
                      net->n, be_dnnl_layers(d), be_dnnl_winograd_layers(d),
                      be_dnnl_own_pool_layers(d), be_dnnl_convpool_layers(d), worst);
        be_dnnl_destroy(d);
        for (int i = 0; i < net->n; i++)
            memset(net->layers[i].output, 0xff, (size_t)net->layers[i].outputs * sizeof(float));
    }
    for (int i = 0; i < net->n; i++)
        free(ref[i]);
    free(ref);
    free_image(sized);
    free_image(im);
}

static void test_yolov3_tiny(void **state)
{
    (void)state;
    char cfg[160];
    network *net = bt_make_net(bt_batch1_cfg("yolov3-tiny.cfg", cfg, sizeof cfg), 1);
    /* 13 convolutions (8 3x3 from 16 channels), 6 pools; 2 routes and an upsample */
    compare(net, "yolov3-tiny", 19, 8, 6, 6, 1, 3);
    free_network(net);
}

static void test_yolov2_tiny(void **state)
{
    (void)state;
    char cfg[160];
    network *net = bt_make_net(bt_batch1_cfg("yolov2-tiny.cfg", cfg, sizeof cfg), 2);
    compare(net, "yolov2-tiny", 15, 7, 5, 6, 1,
            0); /* 9 convolutions (7 3x3 from 16 channels), 6 pools */
    free_network(net);
}

static void test_depthwise_and_edges(void **state)
{
    (void)state;
    static const char cfg_text[] =
        "[net]\nbatch=1\nsubdivisions=1\nwidth=67\nheight=45\nchannels=3\n"
        "[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=1\npad=1\n"
        "activation=leaky\n"
        /* The face model's separable 3x3 stride 1 (its own one-pass kernel), on an odd size. */
        "[convolutional]\nbatch_normalize=1\nfilters=16\ngroups=16\nsize=3\nstride=1\npad=1\n"
        "activation=leaky\n"
        "[convolutional]\nbatch_normalize=1\nfilters=16\ngroups=16\nsize=3\nstride=2\npad=1\n"
        "activation=relu\n"
        "[convolutional]\nfilters=64\nsize=1\nstride=1\npad=1\nactivation=linear\n"
        /* Winograd (c >= 64) on 34x23: 'same' padding, then none (-> 32x21). */
        "[convolutional]\nbatch_normalize=1\nfilters=72\nsize=3\nstride=1\npad=1\n"
        "activation=leaky\n"
        "[convolutional]\nbatch_normalize=1\nfilters=24\nsize=3\nstride=1\npad=0\n"
        "activation=leaky\n"
        "[maxpool]\nsize=2\nstride=1\n"
        "[convolutional]\nbatch_normalize=1\nfilters=24\ngroups=24\nsize=5\nstride=1\npad=1\n"
        "activation=logistic\n"
        "[maxpool]\nsize=3\nstride=2\n"
        "[convolutional]\nfilters=8\nsize=1\nstride=2\npad=0\nactivation=leaky\n"
        "[convolutional]\nfilters=12\nsize=3\nstride=2\npad=1\nactivation=logistic\n"
        "[convolutional]\nfilters=12\ngroups=12\nsize=3\nstride=1\npad=0\nactivation=tanh\n"
        /* ... and on a 2x1 input (one row: both padding rows missing). */
        "[convolutional]\nfilters=12\ngroups=12\nsize=3\nstride=1\npad=1\nactivation=leaky\n";
    char cfg[160];
    network *net = bt_make_net(bt_write_cfg("dw.cfg", cfg_text, cfg, sizeof cfg), 4);
    compare(net, "edge cases", 11, 2, 2, 0, 0, 0); /* all but the strided 1x1 and tanh; Winograd:
                                           the 64 -> 72 'same' and 72 -> 24 'valid' 3x3 */
    free_network(net);
}

/* The padding shortcut (dnnl_tail.c): dog.jpg resized to the whole input, then rows [0, head)
 * and [cut, h) set to v (face-api pads below with 0, darknet's letterbox above and below with
 * 0.5), through the engine with the shortcut and with it refused: the outputs must be the same
 * bit for bit (and within TOL of stock darknet), and the shortcut must have run whenever half
 * the rows or more are padding. The cases go up and down on one engine, so a pass after a
 * larger or smaller band, another value, or a whole pass must not see another pass's rows. */
typedef struct {
    int head, cut;
    float v;
} pad_case_t;

static void tail_case(const char *cfg_text, const char *file, const pad_case_t *cases, int ncases,
                      int layers, int layers_nodw, int pairs, int pairs_nodw, int layers_bf16)
{
    char cfg[160], why[200];
    network *net = bt_make_net(bt_write_cfg(file, cfg_text, cfg, sizeof cfg), 5);
    image im = load_image_color(DOG, 0, 0);
    image sized = resize_image(im, net->w, net->h);
    size_t plane = (size_t)net->w * net->h;
    float *in = malloc(plane * 3 * sizeof(float)), *ref = malloc(net->outputs * sizeof(float));
    assert_non_null(in);
    assert_non_null(ref);
    for (int run = 0; run < 8; run++) {
        /* the chain's pools are framegate's loop (on AVX-512 too); `pairs` convolutions and
         * their pools one be_convpool pass each, with a depthwise 3x3 before a 1x1 in the same
         * pass (runs 0, 1) or not (2, 3), then (runs 4, 5) separate steps; then (6, 7) bf16,
         * where the chain is the first layer's f32 pass alone (layers_bf16: 2, or 0) */
        int bf16 = run >= 6;
        if (bf16 && !be_dnnl_bf16_supported())
            continue;
        int threads = 1 + run % 2, convpool = run < 2 || bf16 ? 1 : run < 4 ? 2 : 0;
        int chain = bf16 ? layers_bf16 : convpool == 2 ? layers_nodw : layers;
        int last_h = chain > 0 ? net->layers[chain - 1].out_h : 0;
        be_precision_t prec = bf16 ? BE_PRECISION_BF16 : BE_PRECISION_FP32;
        be_dnnl_t *d = NULL, *whole = NULL;
        be_dnnl_own_pool(1);
        be_dnnl_convpool(convpool);
        assert_int_equal(be_dnnl_create_precision(&d, net, threads, 0, prec, why, sizeof why), 0);
        be_dnnl_refuse_tail(1);
        assert_int_equal(be_dnnl_create_precision(&whole, net, threads, 0, prec, why, sizeof why),
                         0);
        be_dnnl_refuse_tail(0);
        be_dnnl_own_pool(-1);
        be_dnnl_convpool(-1);
        assert_int_equal(be_dnnl_precision(d), prec);
        assert_int_equal(be_dnnl_tail_layers(d), chain);
        assert_int_equal(be_dnnl_tail_layers(whole), 0);
        int want = bf16 ? layers_bf16 > 0 : convpool == 1 ? pairs : convpool == 2 ? pairs_nodw : 0;
        assert_int_equal(be_dnnl_convpool_layers(d), want);
        assert_int_equal(be_dnnl_convpool_layers(whole), want);
        for (int k = 0; k < ncases; k++) {
            const pad_case_t *pc = &cases[k];
            memcpy(in, sized.data, plane * 3 * sizeof(float));
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < net->h; y++)
                    for (int x = 0; y < pc->head || y >= pc->cut ? x < net->w : 0; x++)
                        in[c * plane + (size_t)y * net->w + x] = pc->v;
            memcpy(ref, be_dnnl_predict_stop(whole, in, NULL, NULL), net->outputs * sizeof(float));
            assert_int_equal(be_dnnl_tail_rows(whole), 0);
            const float *out = be_dnnl_predict_stop(d, in, NULL, NULL);
            int rows = be_dnnl_tail_rows(d), padding = pc->head + net->h - pc->cut;
            print_message("%s, %d thread%s%s, rows [0, %d) and [%d, %d) = %g: %d rows of layer "
                          "%d copied\n",
                          file, threads, threads > 1 ? "s" : "",
                          bf16            ? ", bf16"
                          : convpool == 1 ? ", be_convpool"
                          : convpool == 2 ? ", be_convpool without depthwise"
                                          : "",
                          pc->head, pc->cut, net->h, pc->v, rows, chain > 0 ? chain - 1 : 0);
            if (memcmp(out, ref, net->outputs * sizeof(float)) != 0)
                fail_msg("%s: case %d: the shortcut's output differs (rel %g)", file, k,
                         bt_rel_diff(out, ref, net->outputs));
            if (chain == 0)
                assert_int_equal(rows, 0);
            else if (padding >= net->h)
                assert_int_equal(rows, last_h); /* all padding: nothing computed */
            else if (padding == 0)
                assert_int_equal(rows, 0);
            else if (padding >= net->h / 2)
                assert_true(rows > 0);
            if (bf16) /* its distance from fp32: test_be_bf16 */
                continue;
            float *stock = network_predict(net, in);
            double r = bt_rel_diff(out, stock, net->outputs);
            if (!(r <= TOL))
                fail_msg("%s: case %d: rel %g of stock darknet", file, k, r);
        }
        be_dnnl_destroy(d);
        be_dnnl_destroy(whole);
    }
    free(in);
    free(ref);
    free_image(sized);
    free_image(im);
    free_network(net);
}

static void test_zero_tail(void **state)
{
    (void)state;
    /* The face model's head: a 'valid' 3x3, a 2x2 pool, two separable pairs each with a pool
     * (the second pool the chain's end), on 160 x 128. */
    static const char face[] =
        "[net]\nbatch=1\nsubdivisions=1\nwidth=160\nheight=128\nchannels=3\n"
        "[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=1\npad=0\n"
        "activation=leaky\n"
        "[maxpool]\nsize=2\nstride=2\n"
        "[convolutional]\nbatch_normalize=1\nfilters=16\ngroups=16\nsize=3\nstride=1\npad=1\n"
        "activation=leaky\n"
        "[convolutional]\nbatch_normalize=1\nfilters=32\nsize=1\nstride=1\npad=0\n"
        "activation=leaky\n"
        "[maxpool]\nsize=2\nstride=2\n"
        "[convolutional]\nfilters=32\ngroups=32\nsize=3\nstride=1\npad=1\n"
        "activation=linear\n"
        "[convolutional]\nbatch_normalize=1\nfilters=64\nsize=1\nstride=1\npad=0\n"
        "activation=leaky\n"
        "[maxpool]\nsize=2\nstride=2\n"
        "[convolutional]\nfilters=10\nsize=1\nstride=1\npad=0\nactivation=linear\n";
    static const pad_case_t face_cases[] = {
        {0, 128, 0},  {0, 40, 0},      {0, 0, 0},       {0, 97, 0}, {0, 17, 0},      {0, 128, 0},
        {0, 64, 0},   {0, 1, 0},       {0, 100, 0},     {0, 63, 0}, {20, 108, 0.5f}, {40, 41, 0.5f},
        {0, 0, 0.5f}, {33, 128, 0.5f}, {50, 90, 0.25f}, {0, 40, 0}};
    /* the 3x3 and the 1x1s, each with its pool and its depthwise layer; without the depthwise
     * kind, the 1x1 from 32 channels stays oneDNN's, and with AVX-512 the chain then ends at
     * the second pool: oneDNN's depthwise kernel there reads channels last, so the pass's
     * 16-channel blocks of 32 channels are reordered for it (a step the shortcut does not
     * take) */
    tail_case(face, "tail_face.cfg", face_cases, sizeof face_cases / sizeof face_cases[0], 8,
              be_dnnl_winograd_supported() ? 5 : 8, 3, 2, 2);
    /* 'same' padding and stride 2 into a 3x3 stride-1 pool (window at -1, both ways). */
    static const char strided[] =
        "[net]\nbatch=1\nsubdivisions=1\nwidth=96\nheight=160\nchannels=3\n"
        "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\n"
        "activation=relu\n"
        "[maxpool]\nsize=3\nstride=1\n"
        "[convolutional]\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=logistic\n";
    static const pad_case_t strided_cases[] = {{0, 0, 0},        {0, 33, 0},     {0, 160, 0},
                                               {0, 2, 0},        {0, 80, 0},     {0, 31, 0},
                                               {44, 116, 0.5f},  {1, 159, 0.5f}, {79, 81, 0.5f},
                                               {100, 160, 0.5f}, {0, 0, 0.5f},   {0, 159, 0}};
    tail_case(strided, "tail_strided.cfg", strided_cases,
              sizeof strided_cases / sizeof strided_cases[0], 2, 2, 0, 0, 0);
    /* a pool that darknet's own code reads next (a route): the chain's end, copied to
     * darknet's buffer after the shortcut */
    static const char route[] =
        "[net]\nbatch=1\nsubdivisions=1\nwidth=128\nheight=96\nchannels=3\n"
        "[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=1\npad=1\n"
        "activation=leaky\n"
        "[maxpool]\nsize=2\nstride=2\n"
        "[route]\nlayers=-1\n"
        "[convolutional]\nfilters=8\nsize=1\nstride=1\npad=0\nactivation=linear\n";
    static const pad_case_t route_cases[] = {
        {0, 40, 0}, {20, 76, 0.5f}, {0, 0, 0.5f}, {0, 96, 0}, {30, 96, 0.5f}};
    tail_case(route, "tail_route.cfg", route_cases, sizeof route_cases / sizeof route_cases[0], 2,
              2, 1, 1, 2);
}

static int stop_after(void *arg)
{
    return --*(int *)arg < 0;
}

static void test_stop_between_layers(void **state)
{
    (void)state;
    char cfg[160], why[200];
    network *net = bt_make_net(bt_batch1_cfg("yolov3-tiny.cfg", cfg, sizeof cfg), 1);
    be_dnnl_t *d = NULL;
    assert_int_equal(be_dnnl_create(&d, net, 1, 0, why, sizeof why), 0);
    int left = 3;
    assert_null(be_dnnl_predict_stop(d, net->input, stop_after, &left));
    assert_int_equal(left, -1); /* asked before layers 0..3, stopped before layer 3 */
    assert_ptr_equal(be_dnnl_predict_stop(d, net->input, NULL, NULL), net->output);
    be_dnnl_destroy(d);
    free_network(net);
}

/* be_dnnl_omp_env: nothing at 1 thread or when the operator chose a policy; at 2 threads the
 * program runs again (same pid) with GOMP_SPINCOUNT set, once. The re-executed test binary
 * answers through its exit status (main's "--omp-env-probe"): 0 when it found the variable,
 * 3 when not. */
static int probe_child(int threads, const char *policy)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        unsetenv("GOMP_SPINCOUNT");
        if (policy != NULL)
            setenv("OMP_WAIT_POLICY", policy, 1);
        else
            unsetenv("OMP_WAIT_POLICY");
        char *argv[] = {"test_be_dnnl", "--omp-env-probe", NULL};
        be_dnnl_omp_env(threads, argv);
        _exit(4); /* returned: no exec */
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void test_omp_env(void **state)
{
    (void)state;
    assert_int_equal(probe_child(1, NULL), 4);
    assert_int_equal(probe_child(2, "active"), 4);
    assert_int_equal(probe_child(2, NULL), 0);
}

/* /proc/cpuinfo's `key` line (the first CPU's) contains `word` as a whole word. */
static int cpuinfo_has(const char *key, const char *word)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    int found = 0;
    size_t klen = strlen(key), wlen = strlen(word);
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, klen) != 0 || (line[klen] != ' ' && line[klen] != '\t'))
            continue;
        for (char *p = strchr(line, ':'); p != NULL && (p = strstr(p, word)) != NULL; p += wlen)
            if ((p[-1] == ' ' || p[-1] == ':') && (p[wlen] == ' ' || p[wlen] == '\n'))
                found = 1;
        break;
    }
    if (f != NULL)
        fclose(f);
    return found;
}

/* The own loops' default is read off the CPU independently of cpuid: no AVX-512 as oneDNN
 * needs it (F, BW, VL, DQ), or AMD family 25 (19h, Zen 4). */
static void test_own_loops_default(void **state)
{
    (void)state;
    if (getenv("DNNL_MAX_CPU_ISA") != NULL || getenv("ONEDNN_MAX_CPU_ISA") != NULL)
        skip(); /* oneDNN was told to use less than the CPU has */
    int avx512 = cpuinfo_has("flags", "avx512f") && cpuinfo_has("flags", "avx512bw") &&
                 cpuinfo_has("flags", "avx512vl") && cpuinfo_has("flags", "avx512dq");
    int zen = cpuinfo_has("vendor_id", "AuthenticAMD") && cpuinfo_has("cpu family", "25");
    assert_int_equal(be_dnnl_own_loops_default(), !avx512 || zen);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--omp-env-probe") == 0) {
        const char *v = getenv("GOMP_SPINCOUNT");
        return v != NULL && strcmp(v, BE_DNNL_SPINCOUNT) == 0 ? 0 : 3;
    }
    if (!be_dnnl_available()) { /* the engine must then refuse, never half-run */
        be_dnnl_t *d = NULL;
        char why[120];
        network net = {.n = 1, .batch = 1};
        return be_dnnl_create(&d, &net, 1, 0, why, sizeof why) == PROTO_EINVAL ? 0 : 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yolov3_tiny),         cmocka_unit_test(test_yolov2_tiny),
        cmocka_unit_test(test_depthwise_and_edges), cmocka_unit_test(test_zero_tail),
        cmocka_unit_test(test_stop_between_layers), cmocka_unit_test(test_omp_env),
        cmocka_unit_test(test_own_loops_default),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
