/* be_reshape (backend/reshape.c) against stock libdarknet: [route] and [upsample] layers of a
 * small network (two routes, one of two parts; upsamples by 2 and by 3, scales 0.75 and 0.5) are
 * run by network_predict, then again by be_reshape_forward into buffers filled with NaN, at 1, 2
 * and 3 threads: the outputs must be darknet's bit for bit, every float written. be_reshape_fits
 * refuses what it does not do. */
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
#include "reshape.h"

static int setup(void **state)
{
    (void)state;
    return bt_dir_make("be-reshape");
}

static int teardown(void **state)
{
    (void)state;
    bt_dir_remove();
    return 0;
}

static network *make_net(const char *text)
{
    char path[128];
    network *net = bt_parse(bt_write_cfg("net.cfg", text, path, sizeof path));
    srand(11);
    for (int i = 0; i < net->n; i++) {
        layer *l = &net->layers[i];
        for (int j = 0; l->type == CONVOLUTIONAL && j < l->nweights; j++)
            l->weights[j] = (float)rand() / RAND_MAX - 0.5f;
    }
    return net;
}

static void test_against_darknet(void **state)
{
    (void)state;
    network *net = make_net("[net]\nbatch=1\nsubdivisions=1\nwidth=13\nheight=9\nchannels=6\n"
                            "[convolutional]\nfilters=8\nsize=1\nstride=1\nactivation=leaky\n"
                            "[upsample]\nstride=2\nscale=0.75\n"
                            "[convolutional]\nfilters=4\nsize=1\nstride=1\nactivation=linear\n"
                            "[route]\nlayers=-1,-2\n"
                            "[route]\nlayers=0\n"
                            "[upsample]\nstride=3\nscale=0.5\n");
    float *in = malloc((size_t)net->inputs * sizeof(float));
    assert_non_null(in);
    for (int i = 0; i < net->inputs; i++)
        in[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    network_predict(net, in);
    int checked = 0;
    for (int i = 0; i < net->n; i++) {
        layer *l = &net->layers[i];
        int want = l->type == ROUTE || l->type == UPSAMPLE;
        assert_int_equal(be_reshape_fits(net, l), want);
        if (!want)
            continue;
        size_t n = (size_t)l->outputs;
        float *ref = malloc(n * sizeof(float));
        assert_non_null(ref);
        memcpy(ref, l->output, n * sizeof(float));
        const float *input = i > 0 ? net->layers[i - 1].output : in;
        for (int threads = 1; threads <= 3; threads++) {
            for (size_t k = 0; k < n; k++)
                l->output[k] = NAN;
            be_reshape_forward(net, l, input, threads);
            if (memcmp(l->output, ref, n * sizeof(float)) != 0)
                fail_msg("layer %d (%s), %d threads: not darknet's output", i,
                         l->type == ROUTE ? "route" : "upsample", threads);
        }
        print_message("layer %d (%s, %d x %d x %d): darknet's output, bit for bit, at 1-3 "
                      "threads\n",
                      i, l->type == ROUTE ? "route" : "upsample", l->out_c, l->out_h, l->out_w);
        free(ref);
        checked++;
    }
    assert_int_equal(checked, 4);
    free(in);
    free_network(net);
}

static void test_refuses(void **state)
{
    (void)state;
    /* a reversed upsample (darknet's downsampling sum) and any other layer */
    network *net = make_net("[net]\nbatch=1\nsubdivisions=1\nwidth=8\nheight=8\nchannels=2\n"
                            "[upsample]\nstride=-2\n"
                            "[convolutional]\nfilters=2\nsize=1\nstride=1\nactivation=linear\n");
    assert_int_equal(net->layers[0].type, UPSAMPLE);
    assert_false(be_reshape_fits(net, &net->layers[0]));
    assert_false(be_reshape_fits(net, &net->layers[1]));
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
