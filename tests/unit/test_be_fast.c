/* The fast forward pass against stock libdarknet on the same network (Debian's cfgs with
 * deterministic generated weights and randomised batch-norm statistics, dog.jpg letterboxed by
 * darknet's own letterbox_image):
 * - every layer's output tensor matches: rel(a, b) = max|a - b| / max(max|b|, 1e-6) <= 1e-4,
 *   per tensor (max over the tensor, so tiny values next to large ones are not over-weighted);
 * - the detections after get_network_boxes + do_nms_sort are the same boxes and scores;
 * - depthwise, strided 1x1 (darknet fallback), logistic/relu and max-pool edge cases;
 * - unsupported configurations are refused, FLOPs are counted. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "be_testnet.h"
#include "err.h"
#include "fast.h"

#define DOG FG_DARKNET_DATA "/dog.jpg"
#define TOL 1e-4

static int setup(void **state)
{
    (void)state;
    return bt_dir_make("be-fast");
}

static int teardown(void **state)
{
    (void)state;
    bt_dir_remove();
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

typedef struct {
    int n;
    float **out; /* per layer copies of the stock outputs */
    double stock_ms, fast_ms;
} reference_t;

/* Runs stock network_predict, keeps every layer's output, poisons the buffers with NaN, runs
 * the fast path and compares each layer. */
static void compare_layers(network *net, const float *input, int threads, reference_t *ref)
{
    be_fast_t *f = NULL;
    assert_int_equal(be_fast_create(&f, net, threads), 0);

    double t0 = now_ms();
    network_predict(net, (float *)input);
    ref->stock_ms = now_ms() - t0;
    ref->n = net->n;
    ref->out = calloc((size_t)net->n, sizeof(float *));
    assert_non_null(ref->out);
    for (int i = 0; i < net->n; i++) {
        layer *l = &net->layers[i];
        ref->out[i] = malloc((size_t)l->outputs * sizeof(float));
        assert_non_null(ref->out[i]);
        memcpy(ref->out[i], l->output, (size_t)l->outputs * sizeof(float));
        memset(l->output, 0xff, (size_t)l->outputs * sizeof(float)); /* NaN */
    }

    t0 = now_ms();
    float *out = be_fast_predict(f, input);
    ref->fast_ms = now_ms() - t0;
    assert_ptr_equal(out, net->output);
    double worst = 0;
    for (int i = 0; i < net->n; i++) {
        layer *l = &net->layers[i];
        double r = bt_rel_diff(l->output, ref->out[i], l->outputs);
        worst = r > worst ? r : worst;
        if (!(r <= TOL))
            fail_msg("layer %d (type %d, %dx%dx%d -> %dx%dx%d): rel %g > %g", i, l->type, l->w,
                     l->h, l->c, l->out_w, l->out_h, l->out_c, r, TOL);
    }
    print_message("%d layers, worst rel %.2g\n", net->n, worst);
    be_fast_destroy(f);
}

static void free_reference(reference_t *ref)
{
    for (int i = 0; i < ref->n; i++)
        free(ref->out[i]);
    free(ref->out);
}

/* The detections left after NMS (any class with a non-zero probability). */
static int kept(detection *d, int n, int classes, detection **out)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < classes; j++) {
            if (d[i].prob[j] > 0) {
                out[k++] = &d[i];
                break;
            }
        }
    }
    return k;
}

static int same_box(const detection *a, const detection *b, int classes)
{
    const float *pa = &a->bbox.x, *pb = &b->bbox.x;
    for (int i = 0; i < 4; i++)
        if (fabsf(pa[i] - pb[i]) > 1e-3f * (1.0f + fabsf(pb[i])))
            return 0;
    if (fabsf(a->objectness - b->objectness) > 1e-4f)
        return 0;
    for (int j = 0; j < classes; j++)
        if (fabsf(a->prob[j] - b->prob[j]) > 1e-4f)
            return 0;
    return 1;
}

/* Detections from the current layer outputs, as the backend computes them. */
static detection *boxes(network *net, int w, int h, float thresh, int *n)
{
    detection *d = get_network_boxes(net, w, h, thresh, 0.5f, 0, 1, n);
    layer l = net->layers[net->n - 1];
    do_nms_sort(d, *n, l.classes, 0.45f);
    return d;
}

/* thresh: region (yolov2) spreads a softmax over 80 classes, so with random weights no class
 * reaches the backend's 0.5; a lower threshold still yields boxes to compare. */
static void check_detector(const char *name, unsigned seed, float thresh)
{
    char cfg[160];
    network *net = bt_make_net(bt_batch1_cfg(name, cfg, sizeof cfg), seed);
    image im = load_image_color(DOG, 0, 0);
    image sized = letterbox_image(im, net->w, net->h);
    int classes = net->layers[net->n - 1].classes;

    be_fast_t *f = NULL;
    assert_int_equal(be_fast_create(&f, net, 1), 0);
    int ns = 0, nf = 0;
    network_predict(net, sized.data);
    detection *ds = boxes(net, im.w, im.h, thresh, &ns);
    be_fast_predict(f, sized.data);
    detection *df = boxes(net, im.w, im.h, thresh, &nf);
    assert_int_equal(nf, ns);

    detection **ks = calloc((size_t)ns + 1, sizeof(*ks)),
              **kf = calloc((size_t)nf + 1, sizeof(*kf));
    assert_non_null(ks);
    assert_non_null(kf);
    int nks = kept(ds, ns, classes, ks), nkf = kept(df, nf, classes, kf);
    print_message("%s: %d candidate boxes, %d kept after NMS\n", name, ns, nks);
    assert_true(nks > 0); /* the comparison must compare something */
    assert_int_equal(nkf, nks);
    for (int i = 0; i < nks; i++) {
        int found = 0;
        for (int j = 0; j < nkf && !found; j++)
            found = same_box(kf[j], ks[i], classes);
        if (!found)
            fail_msg("%s: stock box %d (%g,%g %gx%g) has no fast twin", name, i, ks[i]->bbox.x,
                     ks[i]->bbox.y, ks[i]->bbox.w, ks[i]->bbox.h);
    }
    free(ks);
    free(kf);
    free_detections(ds, ns);
    free_detections(df, nf);

    reference_t ref;
    compare_layers(net, sized.data, 1, &ref);
    /* Timings are printed, not asserted (speed is bench/inference's job). */
    print_message("%s: stock %.1f ms, fast %.1f ms\n", name, ref.stock_ms, ref.fast_ms);
    free_reference(&ref);

    be_fast_destroy(f);
    free_image(sized);
    free_image(im);
    free_network(net);
}

static void test_yolov3_tiny(void **state)
{
    (void)state;
    check_detector("yolov3-tiny.cfg", 1, 0.5f);
}

static void test_yolov2_tiny(void **state)
{
    (void)state;
    check_detector("yolov2-tiny.cfg", 2, 0.05f);
}

/* Darknet's tiny classifier: 1x1 convolutions without im2col, avgpool and softmax. The top-5
 * classes must be the same. */
static void test_classifier(void **state)
{
    (void)state;
    char cfg[160];
    network *net = bt_make_net(bt_batch1_cfg("tiny.cfg", cfg, sizeof cfg), 3);
    image im = load_image_color(DOG, 0, 0);
    image sized = letterbox_image(im, net->w, net->h);

    reference_t ref;
    compare_layers(net, sized.data, 1, &ref);
    int top_s[5], top_f[5];
    top_k(ref.out[net->n - 1], net->outputs, 5, top_s);
    top_k(net->output, net->outputs, 5, top_f);
    for (int i = 0; i < 5; i++)
        assert_int_equal(top_f[i], top_s[i]);
    free_reference(&ref);
    free_image(sized);
    free_image(im);
    free_network(net);
}

/* Layers Debian's cfgs do not have: depthwise (stride 1 and 2, odd sizes), a strided 1x1
 * (darknet's own code runs it), logistic and relu, 3x3 and odd-sized max-pools, Winograd on odd
 * sizes with and without padding, at 2 threads. */
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
    image im = load_image_color(DOG, 0, 0);
    image sized = letterbox_image(im, net->w, net->h);
    reference_t ref;
    compare_layers(net, sized.data, 2, &ref);
    free_reference(&ref);
    free_image(sized);
    free_image(im);
    free_network(net);
}

static void test_refuses_batch(void **state)
{
    (void)state;
    static const char cfg_text[] =
        "[net]\nbatch=4\nsubdivisions=1\nwidth=32\nheight=32\nchannels=3\n"
        "[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n";
    char cfg[160], why[128] = "";
    network *net = parse_network_cfg((char *)bt_write_cfg("b4.cfg", cfg_text, cfg, sizeof cfg));
    assert_non_null(net);
    be_fast_t *f = NULL;
    assert_int_equal(be_fast_create(&f, net, 1), PROTO_EINVAL);
    assert_null(f);
    assert_int_equal(be_fast_check(net, why, sizeof why), PROTO_EINVAL);
    assert_non_null(strstr(why, "batch"));
    set_batch_network(net, 1);
    assert_int_equal(be_fast_check(net, why, sizeof why), 0);
    assert_int_equal(be_fast_check(NULL, NULL, 0), PROTO_EINVAL);
    be_fast_destroy(NULL);
    free_network(net);
}

/* yolov3-tiny at 416x416: darknet itself prints 5.571 BFLOPs for it. */
static void test_flops(void **state)
{
    (void)state;
    char cfg[160];
    network *net = parse_network_cfg((char *)bt_batch1_cfg("yolov3-tiny.cfg", cfg, sizeof cfg));
    assert_non_null(net);
    double bflops = be_fast_flops(net) / 1e9;
    assert_true(bflops > 5.55 && bflops < 5.59);
    free_network(net);
}

typedef struct {
    int calls;
    int stop_at; /* answer 1 on this call (1-based); 0 never */
} stopper_t;

static int on_stop(void *arg)
{
    stopper_t *s = arg;
    return ++s->calls == s->stop_at;
}

/* The deadline hook (issue 11: drop work whose deadline passed at every stage): asked before
 * every layer; a stop before layer k leaves layers k.. unrun (their outputs keep a NaN
 * sentinel), returns NULL, and the next full pass gives the same output as before. */
static void test_stop_between_layers(void **state)
{
    (void)state;
    static const char cfg_text[] =
        "[net]\nbatch=1\nsubdivisions=1\nwidth=32\nheight=32\nchannels=3\n"
        "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\n"
        "activation=leaky\n"
        "[maxpool]\nsize=2\nstride=2\n"
        "[convolutional]\nfilters=16\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
        "[convolutional]\nfilters=4\nsize=1\nstride=1\npad=1\nactivation=linear\n";
    char cfg[160];
    network *net = bt_make_net(bt_write_cfg("stop.cfg", cfg_text, cfg, sizeof cfg), 5);
    assert_int_equal(net->n, 4);
    float input[3 * 32 * 32];
    for (int i = 0; i < 3 * 32 * 32; i++)
        input[i] = (float)(i % 97) / 97.0f;
    be_fast_t *f = NULL;
    assert_int_equal(be_fast_create(&f, net, 1), 0);

    float full[4 * 16 * 16];
    assert_int_equal(net->outputs, 4 * 16 * 16);
    stopper_t never = {0, 0};
    assert_ptr_equal(be_fast_predict_stop(f, input, on_stop, &never), net->output);
    assert_int_equal(never.calls, net->n); /* once per layer */
    memcpy(full, net->output, sizeof full);

    for (int k = 0; k < net->n; k++) {
        for (int i = 0; i < net->n; i++)
            memset(net->layers[i].output, 0xff, (size_t)net->layers[i].outputs * sizeof(float));
        stopper_t st = {0, k + 1};
        assert_null(be_fast_predict_stop(f, input, on_stop, &st));
        assert_int_equal(st.calls, k + 1);
        for (int i = 0; i < net->n; i++)
            assert_true(isnan(net->layers[i].output[0]) == (i >= k)); /* ran iff before k */
        /* Nothing of the stopped pass leaks into the next one. */
        assert_ptr_equal(be_fast_predict(f, input), net->output);
        assert_memory_equal(net->output, full, sizeof full);
    }
    be_fast_destroy(f);
    free_network(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yolov3_tiny),         cmocka_unit_test(test_yolov2_tiny),
        cmocka_unit_test(test_classifier),          cmocka_unit_test(test_depthwise_and_edges),
        cmocka_unit_test(test_refuses_batch),       cmocka_unit_test(test_flops),
        cmocka_unit_test(test_stop_between_layers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
