/* framegate-dnnl-probe: how fast oneDNN (Debian's libdnnl 2.6: JIT kernels chosen for the CPU at
 * run time, AVX-512 here) runs a darknet network's convolutions and max-pools in its own blocked
 * layout, next to framegate's fast path (backend/fast.c) on the same network, in one process,
 * the two taking turns. A measurement for issue 15's Part 2, not an engine: the weights are
 * zeros (a kernel's speed does not depend on them), route/upsample/[yolo]/[region] are not run
 * (a few % of the FLOPs), and yolov3-tiny's branch convolutions start from an NCHW input (one
 * reorder each). Times are CPU time of the calling thread (OMP_NUM_THREADS=1 for one core), so
 * other processes on the machine inflate neither side.
 *
 *   framegate-dnnl-probe CFG WEIGHTS
 *
 * Prints the median of 41 runs of each. Built with -DFG_BENCH_INFERENCE=ON when libdnnl-dev
 * is installed (scripts/setup.sh --bench). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <darknet.h>
#include "fast.h"
#define CK(x)                                                                                      \
    do {                                                                                           \
        dnnl_status_t s_ = (x);                                                                    \
        if (s_ != dnnl_success) {                                                                  \
            fprintf(stderr, "%s:%d %s -> %d\n", __FILE__, __LINE__, #x, s_);                       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}
static double wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}
static dnnl_engine_t eng;
static dnnl_stream_t st;
typedef struct {
    dnnl_primitive_t p;
    int nargs;
    dnnl_exec_arg_t args[4];
} step_t;
static step_t steps[128];
static int nsteps;
static int reorders;
/* Build a chain over darknet's network: conv (any groups) and maxpool in oneDNN; other layers: stop
 * (return index). */
static dnnl_memory_t build(network *net, int from, int to, dnnl_memory_t cur,
                           const dnnl_memory_desc_t *curmd_in)
{
    dnnl_memory_desc_t curmd = *curmd_in;
    for (int i = from; i < to; i++) {
        layer *l = &net->layers[i];
        dnnl_dims_t sd = {1, l->c, l->h, l->w}, dd = {1, l->out_c, l->out_h, l->out_w};
        dnnl_memory_desc_t smd, dmd;
        CK(dnnl_memory_desc_init_by_tag(&smd, 4, sd, dnnl_f32, dnnl_format_tag_any));
        CK(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dnnl_f32, dnnl_format_tag_any));
        dnnl_primitive_desc_t pd;
        dnnl_primitive_attr_t attr;
        CK(dnnl_primitive_attr_create(&attr));
        if (l->type == CONVOLUTIONAL) {
            int g = l->groups > 0 ? l->groups : 1;
            dnnl_memory_desc_t wmd, bmd;
            dnnl_dims_t bd = {l->n};
            if (g == 1) {
                dnnl_dims_t wd = {l->n, l->c, l->size, l->size};
                CK(dnnl_memory_desc_init_by_tag(&wmd, 4, wd, dnnl_f32, dnnl_format_tag_any));
            } else {
                dnnl_dims_t wd = {g, l->n / g, l->c / g, l->size, l->size};
                CK(dnnl_memory_desc_init_by_tag(&wmd, 5, wd, dnnl_f32, dnnl_format_tag_any));
            }
            CK(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x));
            dnnl_dims_t str = {l->stride, l->stride}, pl = {l->pad, l->pad};
            int ph = (l->out_h - 1) * l->stride + l->size - l->h - l->pad,
                pw = (l->out_w - 1) * l->stride + l->size - l->w - l->pad;
            dnnl_dims_t pr = {ph, pw};
            dnnl_convolution_desc_t cd;
            CK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                                                  dnnl_convolution_direct, &smd, &wmd, &bmd, &dmd,
                                                  str, pl, pr));
            if (l->activation == LEAKY) {
                dnnl_post_ops_t po;
                CK(dnnl_post_ops_create(&po));
                CK(dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu, 0.1f, 0.f));
                CK(dnnl_primitive_attr_set_post_ops(attr, po));
            }
            CK(dnnl_primitive_desc_create(&pd, &cd, attr, eng, NULL));
        } else if (l->type == MAXPOOL) {
            dnnl_dims_t str = {l->stride, l->stride}, k = {l->size, l->size}, dil = {0, 0},
                        pl = {0, 0};
            int ph = (l->out_h - 1) * l->stride + l->size - l->h,
                pw = (l->out_w - 1) * l->stride + l->size - l->w;
            dnnl_dims_t pr = {ph > 0 ? ph : 0, pw > 0 ? pw : 0};
            CK(dnnl_memory_desc_init_by_tag(&smd, 4, sd, dnnl_f32, dnnl_format_tag_any));
            smd = curmd;
            dnnl_pooling_v2_desc_t pdsc;
            CK(dnnl_pooling_v2_forward_desc_init(&pdsc, dnnl_forward_inference, dnnl_pooling_max,
                                                 &smd, &dmd, str, k, dil, pl, pr));
            CK(dnnl_primitive_desc_create(&pd, &pdsc, attr, eng, NULL));
        } else {
            fprintf(stderr, "layer %d type %d unsupported in spike\n", i, l->type);
            exit(1);
        }
        const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
        if (!dnnl_memory_desc_equal(want, &curmd)) {
            dnnl_primitive_desc_t rpd;
            dnnl_memory_t nm;
            CK(dnnl_memory_create(&nm, want, eng, DNNL_MEMORY_ALLOCATE));
            CK(dnnl_reorder_primitive_desc_create(&rpd, &curmd, eng, want, eng, NULL));
            step_t *s = &steps[nsteps++];
            CK(dnnl_primitive_create(&s->p, rpd));
            s->nargs = 2;
            s->args[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, cur};
            s->args[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, nm};
            cur = nm;
            curmd = *want;
            reorders++;
        }
        const dnnl_memory_desc_t *dst = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
        dnnl_memory_t out;
        CK(dnnl_memory_create(&out, dst, eng, DNNL_MEMORY_ALLOCATE));
        step_t *s = &steps[nsteps++];
        CK(dnnl_primitive_create(&s->p, pd));
        s->args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, cur};
        s->args[1] = (dnnl_exec_arg_t){DNNL_ARG_DST, out};
        s->nargs = 2;
        if (l->type == CONVOLUTIONAL) {
            const dnnl_memory_desc_t *w =
                dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
            const dnnl_memory_desc_t *b =
                dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
            dnnl_memory_t wm, bm;
            CK(dnnl_memory_create(&wm, w, eng, DNNL_MEMORY_ALLOCATE));
            CK(dnnl_memory_create(&bm, b, eng, DNNL_MEMORY_ALLOCATE));
            void *h;
            dnnl_memory_get_data_handle(wm, &h);
            memset(h, 0, dnnl_memory_desc_get_size(w));
            dnnl_memory_get_data_handle(bm, &h);
            memset(h, 0, dnnl_memory_desc_get_size(b));
            s->args[2] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, wm};
            s->args[3] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, bm};
            s->nargs = 4;
        }
        cur = out;
        curmd = *dst;
    }
    return cur;
}
static void run(void)
{
    for (int i = 0; i < nsteps; i++)
        CK(dnnl_primitive_execute(steps[i].p, st, steps[i].nargs, steps[i].args));
    CK(dnnl_stream_wait(st));
}
static int cmp(const void *a, const void *b)
{
    double x = *(double *)a, y = *(double *)b;
    return (x > y) - (x < y);
}
int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: framegate-dnnl-probe CFG WEIGHTS\n");
        return 2;
    }
    network *net = load_network(argv[1], argv[2], 0);
    set_batch_network(net, 1);
    CK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CK(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
    layer *l0 = &net->layers[0];
    dnnl_dims_t id = {1, l0->c, l0->h, l0->w};
    dnnl_memory_desc_t imd;
    CK(dnnl_memory_desc_init_by_tag(&imd, 4, id, dnnl_f32, dnnl_nchw));
    dnnl_memory_t in;
    CK(dnnl_memory_create(&in, &imd, eng, DNNL_MEMORY_ALLOCATE));
    int yolo = net->layers[net->n - 1].type == YOLO;
    if (yolo) {
        build(net, 0, 16, in, &imd);
        int br[][2] = {{18, 19}, {21, 23}};
        for (int b = 0; b < 2; b++) {
            layer *l = &net->layers[br[b][0]];
            dnnl_dims_t d = {1, l->c, l->h, l->w};
            dnnl_memory_desc_t md;
            dnnl_memory_t m;
            CK(dnnl_memory_desc_init_by_tag(&md, 4, d, dnnl_f32, dnnl_nchw));
            CK(dnnl_memory_create(&m, &md, eng, DNNL_MEMORY_ALLOCATE));
            build(net, br[b][0], br[b][1], m, &md);
        }
    } else
        build(net, 0, net->n - 1, in, &imd);
    printf("%d oneDNN steps (%d reorders)\n", nsteps, reorders);
    be_fast_t *f;
    be_fast_create(&f, net, 1);
    double tf[41], td[41], wf[41], wd[41];
    for (int r = -3; r < 41; r++) {
        double t0 = now(), w0 = wall();
        be_fast_predict(f, net->input);
        double t1 = now(), w1 = wall();
        run();
        double t2 = now(), w2 = wall();
        if (r >= 0) {
            tf[r] = t1 - t0;
            td[r] = t2 - t1;
            wf[r] = w1 - w0;
            wd[r] = w2 - w1;
        }
    }
    qsort(tf, 41, 8, cmp);
    qsort(td, 41, 8, cmp);
    qsort(wf, 41, 8, cmp);
    qsort(wd, 41, 8, cmp);
    printf("%s: framegate fast path %.2f ms CPU (wall %.2f), oneDNN chain %.2f ms CPU (wall %.2f); "
           "median of 41, 1 thread\n",
           argv[1], tf[20], wf[20], td[20], wd[20]);
    return 0;
}
