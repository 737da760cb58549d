#include "dnnl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"

#ifdef FG_HAVE_DNNL
#include "dnnl_internal.h"
#include "reshape.h"

/* libgomp's, loaded with libdnnl (its OpenMP runtime); the threads of the calling thread. */
void omp_set_num_threads(int n) __attribute__((weak));

/* A oneDNN call that failed during set-up: the reason, once. */
int be_dnnl_failed(be_dnnl_t *d, const char *what, int layer)
{
    if (d->why != NULL && d->whycap > 0)
        snprintf(d->why, d->whycap, "oneDNN refused %s (layer %d)", what, layer);
    return PROTO_EINVAL;
}

int be_dnnl_keep_mem(be_dnnl_t *d, dnnl_memory_t m)
{
    d->mems[d->nmems++] = m;
    return 0;
}

step_t *be_dnnl_new_step(be_dnnl_t *d)
{
    step_t *s = &d->steps[d->nsteps++];
    memset(s, 0, sizeof *s);
    return s;
}

/* darknet's NCHW tensor of c x h x w floats at `data` (not owned) as a oneDNN memory. */
static int user_mem(be_dnnl_t *d, int i, int c, int h, int w, float *data, dnnl_memory_t *out,
                    dnnl_memory_desc_t *md)
{
    dnnl_dims_t dims = {1, c, h, w};
    BE_DNNL_TRY(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, dnnl_nchw), "an NCHW tensor");
    BE_DNNL_TRY(dnnl_memory_create(out, md, d->eng, data != NULL ? (void *)data : DNNL_MEMORY_NONE),
                "an NCHW tensor");
    return be_dnnl_keep_mem(d, *out);
}

/* A step reordering `from` (md `fmd`) into `to` (md `tmd`). */
static int reorder_step(be_dnnl_t *d, int i, dnnl_memory_t from, const dnnl_memory_desc_t *fmd,
                        dnnl_memory_t to, const dnnl_memory_desc_t *tmd)
{
    dnnl_primitive_desc_t pd;
    BE_DNNL_TRY(dnnl_reorder_primitive_desc_create(&pd, fmd, d->eng, tmd, d->eng, NULL),
                "a reorder");
    step_t *s = be_dnnl_new_step(d);
    dnnl_status_t rv = dnnl_primitive_create(&s->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    if (rv != dnnl_success) {
        d->nsteps--;
        return be_dnnl_failed(d, "a reorder", i);
    }
    s->nargs = 2;
    s->args[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, from};
    s->args[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, to};
    return 0;
}

typedef struct {
    dnnl_dim_t ext, stride;
} axis_t;

/* Dimension dim of a blocked layout as the axes that walk it, outermost first (its outer
 * part, then its inner blocks in order), with extent-1 axes dropped and an axis that
 * continues the next one merged into it: two dense layouts place every element alike iff
 * these lists match for every dimension. */
static int axes(const dnnl_memory_desc_t *md, int dim, axis_t *out)
{
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    axis_t all[DNNL_MAX_NDIMS + 1];
    dnnl_dim_t blk = 1;
    int n = 0, m = 0;
    for (int k = 0; k < b->inner_nblks; k++)
        if (b->inner_idxs[k] == dim)
            blk *= b->inner_blks[k];
    all[n++] = (axis_t){md->dims[dim] / blk, b->strides[dim]};
    for (int k = 0; k < b->inner_nblks; k++) {
        if (b->inner_idxs[k] != dim)
            continue;
        dnnl_dim_t stride = 1; /* the blocks listed after it are inside it */
        for (int j = k + 1; j < b->inner_nblks; j++)
            stride *= b->inner_blks[j];
        all[n++] = (axis_t){b->inner_blks[k], stride};
    }
    for (int k = 0; k < n; k++) {
        if (all[k].ext == 1)
            continue;
        if (m > 0 && out[m - 1].stride == all[k].ext * all[k].stride) {
            out[m - 1].ext *= all[k].ext;
            out[m - 1].stride = all[k].stride;
        } else {
            out[m++] = all[k];
        }
    }
    return m;
}

/* 1 when two layouts put every element at the same place, so one buffer serves both and no
 * reorder is needed: e.g. 16 channels blocked by 16 (a max-pool keeps its input's layout) are
 * byte for byte the NHWC a depthwise convolution asks for (face model: 16 x 207 x 207, 0.1 ms
 * per frame). Only dense layouts (no padding, no extra flags) are compared. */
static int same_bytes(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b)
{
    if (a->format_kind != dnnl_blocked || b->format_kind != dnnl_blocked || a->ndims != b->ndims ||
        a->data_type != b->data_type || a->offset0 != b->offset0 || a->extra.flags != 0 ||
        b->extra.flags != 0)
        return 0;
    size_t n = dnnl_data_type_size(a->data_type);
    for (int k = 0; k < a->ndims; k++) {
        if (a->dims[k] != b->dims[k])
            return 0;
        n *= (size_t)a->dims[k];
    }
    if (dnnl_memory_desc_get_size(a) != n || dnnl_memory_desc_get_size(b) != n)
        return 0; /* padded (e.g. channels not a multiple of the block) */
    for (int k = 0; k < a->ndims; k++) {
        axis_t xa[DNNL_MAX_NDIMS + 1], xb[DNNL_MAX_NDIMS + 1];
        int na = axes(a, k, xa), nb = axes(b, k, xb);
        if (na != nb)
            return 0;
        for (int j = 0; j < na; j++)
            if (xa[j].ext != xb[j].ext || xa[j].stride != xb[j].stride)
                return 0;
    }
    return 1;
}

/* Runs a reorder once, now (weights into the layout the convolution chose). */
static int reorder_now(be_dnnl_t *d, int i, dnnl_memory_t from, const dnnl_memory_desc_t *fmd,
                       dnnl_memory_t to, const dnnl_memory_desc_t *tmd)
{
    int rv;
    if ((rv = reorder_step(d, i, from, fmd, to, tmd)) != 0)
        return rv;
    step_t *s = &d->steps[--d->nsteps];
    dnnl_status_t e = dnnl_primitive_execute(s->prim, d->st, s->nargs, s->args);
    dnnl_stream_wait(d->st);
    dnnl_primitive_destroy(s->prim);
    return e == dnnl_success ? 0 : be_dnnl_failed(d, "a weight reorder", i);
}

/* Which layers this engine runs: convolutions that fast.c also runs itself (not xnor/binary,
 * groups 1 or depthwise, not darknet's 1x1-with-stride quirk) with an activation oneDNN has
 * as a post-op, and max-pools. */
static int runs(const layer *l)
{
    if (l->type == MAXPOOL)
        return 1;
    if (l->type != CONVOLUTIONAL || l->xnor || l->binary)
        return 0;
    if (l->activation != LEAKY && l->activation != RELU && l->activation != LINEAR &&
        l->activation != LOGISTIC)
        return 0;
    int g = l->groups > 0 ? l->groups : 1;
    if (g == 1)
        return l->size != 1 || (l->stride == 1 && l->pad == 0);
    return g == l->c && l->n == l->c;
}

/* darknet's activation (one fold_ok accepts, not LINEAR) as a oneDNN eltwise. */
static dnnl_alg_kind_t act_alg(const layer *l)
{
    return l->activation == LOGISTIC ? dnnl_eltwise_logistic : dnnl_eltwise_relu;
}

static float act_alpha(const layer *l)
{
    return l->activation == LEAKY ? 0.1f : 0.0f;
}

/* Layer `l`'s activation as a post-op in *attr (created here; the caller destroys it). */
static int act_attr(be_dnnl_t *d, int i, const layer *l, dnnl_primitive_attr_t *attr)
{
    dnnl_post_ops_t po;
    *attr = NULL;
    BE_DNNL_TRY(dnnl_post_ops_create(&po), "a post-op");
    dnnl_status_t e = dnnl_post_ops_append_eltwise(po, 1.0f, act_alg(l), act_alpha(l), 0);
    if (e == dnnl_success && (e = dnnl_primitive_attr_create(attr)) == dnnl_success)
        e = dnnl_primitive_attr_set_post_ops(*attr, po);
    dnnl_post_ops_destroy(po);
    if (e != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
        return be_dnnl_failed(d, "an activation post-op", i);
    }
    return 0;
}

/* The convolution or max-pool of layer i as a primitive descriptor with dst "any" and src
 * "any" (a convolution picks its layout) or `in` (a max-pool takes the layout it is given). */
static int layer_pd(be_dnnl_t *d, int i, const layer *l, const dnnl_memory_desc_t *in,
                    dnnl_primitive_desc_t *pd, int *act_step)
{
    int rv;
    *act_step = 0;
    dnnl_dims_t sd = {1, l->c, l->h, l->w}, dd = {1, l->out_c, l->out_h, l->out_w};
    dnnl_memory_desc_t smd, dmd, nchw;
    /* bf16: activations and weights; biases, accumulation and darknet's tensors stay f32 */
    dnnl_data_type_t dt = d->bf16 ? dnnl_bf16 : dnnl_f32;
    BE_DNNL_TRY(dnnl_memory_desc_init_by_tag(&smd, 4, sd, dt, dnnl_format_tag_any), "a tensor");
    BE_DNNL_TRY(dnnl_memory_desc_init_by_tag(&nchw, 4, sd, dnnl_f32, dnnl_nchw), "a tensor");
    /* A convolution of the planar input image (3 channels) reads it as it is: with src "any"
     * oneDNN 2.6 picks NHWC for its brgconv kernel, which costs a reorder of the whole image
     * and runs badly on a reduction of 3 x 9; on NCHW it takes its "first layer" kernel
     * (blocked output). Face model: 5.1 -> 4.2 ms per frame (CPU time, 1 thread). */
    if (l->type == CONVOLUTIONAL && l->c <= 4 && dnnl_memory_desc_equal(in, &nchw))
        BE_DNNL_TRY(dnnl_memory_desc_init_by_tag(&smd, 4, sd, dt, dnnl_nchw), "a tensor");
    /* a max-pool keeps its input's type (f32 after a layer darknet ran) */
    if (l->type == MAXPOOL)
        dt = in->data_type;
    BE_DNNL_TRY(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dt, dnnl_format_tag_any), "a tensor");
    if (l->type == MAXPOOL) {
        /* darknet's window starts at -pad/2; cells outside never win (as oneDNN's padding). */
        const layer *act = d->deferred;
        int pl = l->pad / 2;
        int ph = (l->out_h - 1) * l->stride + l->size - l->h - pl;
        int pw = (l->out_w - 1) * l->stride + l->size - l->w - pl;
        if (ph < 0 || pw < 0)
            return be_dnnl_failed(d, "this max-pool's geometry", i);
        dnnl_dims_t str = {l->stride, l->stride}, k = {l->size, l->size}, dil = {0, 0};
        dnnl_dims_t pad_l = {pl, pl}, pad_r = {ph, pw};
        dnnl_pooling_v2_desc_t desc;
        BE_DNNL_TRY(dnnl_pooling_v2_forward_desc_init(&desc, dnnl_forward_inference,
                                                      dnnl_pooling_max, in, &dmd, str, k, dil,
                                                      pad_l, pad_r),
                    "a max-pool");
        dnnl_primitive_attr_t attr = NULL;
        if (act != NULL && (rv = act_attr(d, i, act, &attr)) != 0)
            return rv;
        dnnl_status_t e = dnnl_primitive_desc_create(pd, &desc, attr, d->eng, NULL);
        dnnl_primitive_attr_destroy(attr);
        return e == dnnl_success ? 0 : be_dnnl_failed(d, "a max-pool", i);
    }
    int g = l->groups > 0 ? l->groups : 1;
    dnnl_memory_desc_t wmd, bmd;
    dnnl_dims_t bd = {l->n};
    if (g == 1) {
        dnnl_dims_t wd = {l->n, l->c, l->size, l->size};
        BE_DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd, 4, wd, dt, dnnl_format_tag_any), "weights");
    } else {
        dnnl_dims_t wd = {g, 1, 1, l->size, l->size};
        BE_DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd, 5, wd, dt, dnnl_format_tag_any), "weights");
    }
    BE_DNNL_TRY(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x), "biases");
    int ph = (l->out_h - 1) * l->stride + l->size - l->h - l->pad;
    int pw = (l->out_w - 1) * l->stride + l->size - l->w - l->pad;
    if (ph < 0 || pw < 0)
        return be_dnnl_failed(d, "this convolution's geometry", i);
    dnnl_dims_t str = {l->stride, l->stride}, pad_l = {l->pad, l->pad}, pad_r = {ph, pw};
    dnnl_convolution_desc_t desc;
    /* f32 3x3 stride-1 convolutions with 16+ channels in and out: Winograd (oneDNN's
     * F(2x2,3x3) or F(4x4,3x3) by shape). It does 2.25-4x fewer multiplies than the direct
     * kernel: yolov3-tiny's 3x3 layers took 1.4-1.9x less time each (1 and 2 threads, scratch
     * runs). Its kernels take no post-ops: the activation becomes a step of its own. Its error
     * is a few times the direct kernel's, inside test_be_dnnl's 1e-4 of darknet's output. */
    if (!d->bf16 && d->winograd && g == 1 && l->size == 3 && l->stride == 1 && l->c >= 16 &&
        l->n >= 16 &&
        dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_winograd,
                                           &smd, &wmd, &bmd, &dmd, str, pad_l,
                                           pad_r) == dnnl_success &&
        dnnl_primitive_desc_create(pd, &desc, NULL, d->eng, NULL) == dnnl_success) {
        *act_step = l->activation != LINEAR;
        d->nwino++;
        return 0;
    }
    BE_DNNL_TRY(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference,
                                                   dnnl_convolution_direct, &smd, &wmd, &bmd, &dmd,
                                                   str, pad_l, pad_r),
                "a convolution");
    dnnl_primitive_attr_t attr = NULL;
    if (l->activation != LINEAR && (rv = act_attr(d, i, l, &attr)) != 0)
        return rv;
    dnnl_status_t e = dnnl_primitive_desc_create(pd, &desc, attr, d->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    return e == dnnl_success ? 0 : be_dnnl_failed(d, "a convolution", i);
}

/* A step applying eltwise `alg` (`alpha`) to `src` (described by `md`) into `dst`, which may
 * be `src` itself. */
static int eltwise_step(be_dnnl_t *d, int i, dnnl_alg_kind_t alg, float alpha,
                        const dnnl_memory_desc_t *md, dnnl_memory_t src, dnnl_memory_t dst,
                        const char *what)
{
    dnnl_eltwise_desc_t desc;
    dnnl_primitive_desc_t pd;
    BE_DNNL_TRY(dnnl_eltwise_forward_desc_init(&desc, dnnl_forward_inference, alg, md, alpha, 0),
                what);
    BE_DNNL_TRY(dnnl_primitive_desc_create(&pd, &desc, NULL, d->eng, NULL), what);
    step_t *s = be_dnnl_new_step(d);
    dnnl_status_t e = dnnl_primitive_create(&s->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    if (e != dnnl_success) {
        d->nsteps--;
        return be_dnnl_failed(d, what, i);
    }
    s->args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, src};
    s->args[1] = (dnnl_exec_arg_t){DNNL_ARG_DST, dst};
    s->nargs = 2;
    return 0;
}

/* The activation of layer i as a step of its own, in place on `m` (described by `md`). */
static int act_in_place(be_dnnl_t *d, int i, const layer *l, dnnl_memory_t m,
                        const dnnl_memory_desc_t *md)
{
    return eltwise_step(d, i, act_alg(l), act_alpha(l), md, m, m, "an activation");
}

/* A step copying layer i's output `out` (described by `md`) into darknet's buffer. */
int be_dnnl_to_darknet(be_dnnl_t *d, int i, const layer *l, dnnl_memory_t out,
                       const dnnl_memory_desc_t *md)
{
    dnnl_memory_t nm;
    dnnl_memory_desc_t nmd;
    int rv = user_mem(d, i, l->out_c, l->out_h, l->out_w, l->output, &nm, &nmd);
    return rv != 0 ? rv : reorder_step(d, i, out, md, nm, &nmd);
}

/* Layer i's steps: src reorder if the layout differs, the primitive, its output to darknet's
 * buffer if darknet reads it. *cur / *curmd: the tensor coming in, then going out.
 * may_defer: a Winograd convolution's activation may be left to the max-pool that follows
 * (d->deferred). */
static int add_layer(be_dnnl_t *d, int i, const layer *l, int to_nchw, int may_defer,
                     dnnl_memory_t *cur, dnnl_memory_desc_t *curmd)
{
    dnnl_primitive_desc_t pd;
    be_maxpool_t mp;
    int rv, act_step;
    if (be_dnnl_own_pool_fits(d, l, curmd, &mp))
        return be_dnnl_own_pool_step(d, i, l, &mp, to_nchw, cur, curmd);
    if ((rv = layer_pd(d, i, l, curmd, &pd, &act_step)) != 0)
        return rv;
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *dst = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    dnnl_memory_t src = *cur, out = NULL, wm = NULL, bm = NULL;
    void *same = NULL;
    if (!dnnl_memory_desc_equal(want, curmd) && *cur != d->input && same_bytes(want, curmd))
        dnnl_memory_get_data_handle(*cur, &same); /* the input's handle changes per pass */
    if (same != NULL) {
        if (dnnl_memory_create(&src, want, d->eng, same) != dnnl_success) {
            dnnl_primitive_desc_destroy(pd);
            return be_dnnl_failed(d, "a tensor", i);
        }
        be_dnnl_keep_mem(d, src);
    } else if (!dnnl_memory_desc_equal(want, curmd)) {
        if (dnnl_memory_create(&src, want, d->eng, DNNL_MEMORY_ALLOCATE) != dnnl_success ||
            be_dnnl_keep_mem(d, src) != 0 ||
            (rv = reorder_step(d, i, *cur, curmd, src, want)) != 0) {
            dnnl_primitive_desc_destroy(pd);
            return rv != 0 ? rv : be_dnnl_failed(d, "a tensor", i);
        }
    }
    if (dnnl_memory_create(&out, dst, d->eng, DNNL_MEMORY_ALLOCATE) != dnnl_success) {
        dnnl_primitive_desc_destroy(pd);
        return be_dnnl_failed(d, "a tensor", i);
    }
    be_dnnl_keep_mem(d, out);
    if (l->type == CONVOLUTIONAL) {
        float *w = NULL, *b = NULL;
        dnnl_memory_t uw = NULL;
        dnnl_memory_desc_t uwmd, bmd;
        const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        int g = l->groups > 0 ? l->groups : 1;
        dnnl_dims_t wd4 = {l->n, l->c, l->size, l->size}, wd5 = {g, 1, 1, l->size, l->size};
        dnnl_dims_t bd = {l->n};
        rv = be_fast_fold(l, &w, &b);
        if (rv == 0 &&
            (dnnl_memory_desc_init_by_tag(&uwmd, g == 1 ? 4 : 5, g == 1 ? wd4 : wd5, dnnl_f32,
                                          g == 1 ? dnnl_oihw : dnnl_goihw) != dnnl_success ||
             dnnl_memory_create(&uw, &uwmd, d->eng, w) != dnnl_success ||
             dnnl_memory_create(&wm, wmd, d->eng, DNNL_MEMORY_ALLOCATE) != dnnl_success ||
             dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x) != dnnl_success ||
             dnnl_memory_create(&bm, &bmd, d->eng, DNNL_MEMORY_ALLOCATE) != dnnl_success))
            rv = be_dnnl_failed(d, "weights", i);
        if (rv == 0)
            rv = reorder_now(d, i, uw, &uwmd, wm, wmd);
        if (rv == 0) {
            void *p = NULL;
            dnnl_memory_get_data_handle(bm, &p);
            memcpy(p, b, (size_t)l->n * sizeof(float));
        }
        if (uw != NULL)
            dnnl_memory_destroy(uw);
        free(w);
        free(b);
        if (wm != NULL)
            be_dnnl_keep_mem(d, wm);
        if (bm != NULL)
            be_dnnl_keep_mem(d, bm);
        if (rv != 0) {
            dnnl_primitive_desc_destroy(pd);
            return rv;
        }
    }
    step_t *s = be_dnnl_new_step(d);
    dnnl_status_t e = dnnl_primitive_create(&s->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    if (e != dnnl_success) {
        d->nsteps--;
        return be_dnnl_failed(d, "a primitive", i);
    }
    s->args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, src};
    s->args[1] = (dnnl_exec_arg_t){DNNL_ARG_DST, out};
    s->nargs = 2;
    if (l->type == CONVOLUTIONAL) {
        s->args[2] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, wm};
        s->args[3] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, bm};
        s->nargs = 4;
    }
    const dnnl_memory_desc_t *omd = NULL;
    dnnl_memory_get_memory_desc(out, &omd);
    *cur = out;
    *curmd = *omd;
    if (act_step && !may_defer && (rv = act_in_place(d, i, l, out, omd)) != 0)
        return rv;
    if (to_nchw && (rv = be_dnnl_to_darknet(d, i, l, out, curmd)) != 0)
        return rv;
    d->deferred = act_step && may_defer ? l : NULL;
    return 0;
}

/* A [yolo] head as darknet's forward_yolo_layer computes it at inference: its input copied
 * with the logistic applied to every entry but each anchor's w and h (entries 2 and 3), which
 * stay raw. Here: one oneDNN eltwise (vectorised, on the engine's threads) over the whole
 * tensor, NCHW to NCHW, then w and h copied back (yolo_fixup). darknet's single-threaded
 * loop (a double exp per value, plus zeroing l.delta, which inference never reads) took ~2 ms
 * of yolov3-tiny's frame. */
static int yolo_steps(be_dnnl_t *d, int i, const layer *l, const layer *prev)
{
    dnnl_memory_t src, dst;
    dnnl_memory_desc_t smd, dmd;
    int rv;
    if (prev->outputs != l->inputs || l->inputs != l->outputs ||
        l->outputs != l->n * (l->classes + 5) * l->w * l->h)
        return be_dnnl_failed(d, "this [yolo] head's geometry", i);
    if ((rv = user_mem(d, i, l->c, l->h, l->w, prev->output, &src, &smd)) != 0 ||
        (rv = user_mem(d, i, l->c, l->h, l->w, l->output, &dst, &dmd)) != 0)
        return rv;
    return eltwise_step(d, i, dnnl_eltwise_logistic, 0, &smd, src, dst, "a [yolo] logistic");
}

/* The raw w and h of every anchor back from the head's input (see yolo_steps). */
static void yolo_fixup(const layer *l, const float *in)
{
    size_t wh = (size_t)l->w * l->h, per = (size_t)(l->classes + 5) * wh;
    for (int n = 0; n < l->n; n++)
        memcpy(l->output + n * per + 2 * wh, in + n * per + 2 * wh, 2 * wh * sizeof(float));
}

int be_dnnl_available(void)
{
    return 1;
}

void be_dnnl_omp_env(int threads, char **argv)
{
    if (threads <= 1 || getenv("OMP_WAIT_POLICY") != NULL || getenv("GOMP_SPINCOUNT") != NULL)
        return;
    /* set before the exec, so the new image (which finds it set) does not exec again */
    if (setenv("GOMP_SPINCOUNT", BE_DNNL_SPINCOUNT, 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    unsetenv("GOMP_SPINCOUNT"); /* exec failed: this process keeps libgomp's default */
}

static int refuse_bf16;     /* be_dnnl_refuse_bf16 (tests) */
static int refuse_winograd; /* be_dnnl_refuse_winograd (tests, bench) */

void be_dnnl_refuse_winograd(int on)
{
    refuse_winograd = on;
}

int be_dnnl_winograd_layers(const be_dnnl_t *d)
{
    return d->nwino;
}

int be_dnnl_winograd_supported(void)
{
    return (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
}

void be_dnnl_refuse_bf16(int on)
{
    refuse_bf16 = on;
}

int be_dnnl_bf16_supported(void)
{
    /* without the AVX512_BF16 instructions oneDNN 2.6 emulates bf16: slower than f32 */
    return !refuse_bf16 && (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core_bf16) ==
                               dnnl_cpu_isa_avx512_core_bf16;
}

/* 1 when layer l runs fast.c's Winograd (be_fast_wino) instead of oneDNN: f32, Winograd not
 * refused, and oneDNN without its own (no AVX-512). On AVX2 oneDNN's direct kernel took
 * 1.08-1.45x as long on yolov3-tiny's 3x3 layers with 64+ input channels at 1 thread, and
 * 0.93-1.45x at 2 threads with the work shared over the engine's OpenMP team (AMD Zen 3,
 * bench/results/inference/README.md). */
static int fast_wino(const be_dnnl_t *d, const layer *l)
{
    return !d->bf16 && d->winograd && !be_dnnl_winograd_supported() &&
           be_fast_wino_fits(l, d->threads);
}

static int create(be_dnnl_t **out, network *net, int threads, int all_outputs, int bf16, char *why,
                  size_t whycap);

int be_dnnl_create(be_dnnl_t **out, network *net, int threads, int all_outputs, char *why,
                   size_t whycap)
{
    return create(out, net, threads, all_outputs, 0, why, whycap);
}

int be_dnnl_create_precision(be_dnnl_t **out, network *net, int threads, int all_outputs,
                             be_precision_t precision, char *why, size_t whycap)
{
    if (precision != BE_PRECISION_BF16)
        return create(out, net, threads, all_outputs, 0, why, whycap);
    char bwhy[256];
    snprintf(bwhy, sizeof bwhy, "%s",
             refuse_bf16
                 ? "refused by be_dnnl_refuse_bf16"
                 : "oneDNN's CPU ISA here has no AVX512_BF16 (DNNL_MAX_CPU_ISA or the CPU)");
    if (be_dnnl_bf16_supported()) {
        int rv = create(out, net, threads, all_outputs, 1, bwhy, sizeof bwhy);
        if (rv != PROTO_EINVAL)
            return rv;
    }
    /* Never fail to serve for want of bf16: the f32 network, said once. */
    fprintf(stderr, "framegate-backend: bf16 not available (%s): running fp32\n", bwhy);
    return create(out, net, threads, all_outputs, 0, why, whycap);
}

be_precision_t be_dnnl_precision(const be_dnnl_t *d)
{
    return d->bf16 ? BE_PRECISION_BF16 : BE_PRECISION_FP32;
}

static int create(be_dnnl_t **out, network *net, int threads, int all_outputs, int bf16, char *why,
                  size_t whycap)
{
    int rv, i = -1;
    if (net == NULL || net->n <= 0 || net->batch != 1) {
        if (why != NULL && whycap > 0)
            snprintf(why, whycap, "no network, or batch != 1");
        return PROTO_EINVAL;
    }
    be_dnnl_t *d = calloc(1, sizeof *d);
    int n = net->n;
    char *nchw = calloc((size_t)n, 1);
    if (d == NULL || nchw == NULL ||
        (d->steps = calloc((size_t)n * 4 + 1, sizeof *d->steps)) == NULL ||
        (d->plan = calloc((size_t)n, sizeof *d->plan)) == NULL ||
        (d->mems = calloc((size_t)n * 8 + 2, sizeof *d->mems)) == NULL) {
        free(nchw);
        be_dnnl_destroy(d);
        return PROTO_ENOMEM;
    }
    d->net = net;
    d->threads = threads > 0 ? threads : 1;
    d->bf16 = bf16;
    d->winograd = !refuse_winograd;
    d->why = why;
    d->whycap = whycap;
    /* The tensors darknet's own code reads must be in its buffers: a darknet layer's input,
     * the layers a route or shortcut reads, the network's output. */
    size_t scratch = 0;
    for (int j = 0; j < n; j++) {
        const layer *l = &net->layers[j];
        d->plan[j].onednn = runs(l);
        if (fast_wino(d, l)) {
            if ((rv = be_fast_wino_create(&d->plan[j].wino, l)) != 0) {
                free(nchw);
                be_dnnl_destroy(d);
                return rv;
            }
            d->plan[j].onednn = 0;
            d->nwino++;
            if (be_fast_wino_scratch(l) > scratch)
                scratch = be_fast_wino_scratch(l);
        }
        if (!d->plan[j].onednn && j > 0)
            nchw[j - 1] = 1;
        if (l->type == ROUTE)
            for (int k = 0; k < l->n; k++)
                if (l->input_layers[k] >= 0 && l->input_layers[k] < n)
                    nchw[l->input_layers[k]] = 1;
        if (l->type == SHORTCUT && l->index >= 0 && l->index < n)
            nchw[l->index] = 1;
    }
    nchw[n - 1] = 1;
    if (scratch > 0 && (d->wino_scratch = malloc(scratch * sizeof(float))) == NULL) {
        free(nchw);
        be_dnnl_destroy(d);
        return PROTO_ENOMEM;
    }
    if (dnnl_engine_create(&d->eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&d->st, d->eng, dnnl_stream_default_flags) != dnnl_success) {
        rv = be_dnnl_failed(d, "the CPU engine", 0);
        goto out;
    }
    if (omp_set_num_threads != NULL)
        omp_set_num_threads(d->threads);
    dnnl_memory_t cur;
    dnnl_memory_desc_t curmd;
    const layer *l0 = &net->layers[0];
    if ((rv = user_mem(d, 0, l0->c, l0->h, l0->w, NULL, &d->input, &curmd)) != 0)
        goto out;
    cur = d->input;
    for (i = 0; i < n; i++) {
        int span = 0, in_blk = be_dnnl_convpool_fits(d, i, all_outputs, nchw, &curmd, &span);
        if (in_blk > 0) {
            if ((rv = be_dnnl_convpool_step(d, i, in_blk, span, nchw[i + span - 1], &cur,
                                            &curmd)) != 0)
                goto out;
            i += span - 1; /* and the layers it stands for */
            continue;
        }
        const layer *l = &net->layers[i];
        d->plan[i].first = d->nsteps;
        if (d->plan[i].onednn) {
            int out = all_outputs || nchw[i];
            int may_defer =
                !out && i + 1 < n && d->plan[i + 1].onednn && net->layers[i + 1].type == MAXPOOL;
            rv = add_layer(d, i, l, out, may_defer, &cur, &curmd);
            if (rv == PROTO_EINVAL && d->bf16) /* the caller builds the f32 network instead */
                goto out;
            if (rv == PROTO_EINVAL) { /* a geometry oneDNN does not take: darknet runs it */
                while (d->nsteps > d->plan[i].first)
                    dnnl_primitive_destroy(d->steps[--d->nsteps].prim);
                d->plan[i].onednn = 0;
                if (i > 0 && d->plan[i - 1].onednn && !(all_outputs || nchw[i - 1])) {
                    /* its input must now be in darknet's buffer, activated */
                    const layer *p = &net->layers[i - 1];
                    dnnl_memory_t nm;
                    dnnl_memory_desc_t nmd;
                    if ((d->deferred != NULL &&
                         (rv = act_in_place(d, i - 1, p, cur, &curmd)) != 0) ||
                        (rv = user_mem(d, i, p->out_c, p->out_h, p->out_w, p->output, &nm, &nmd)) !=
                            0 ||
                        (rv = reorder_step(d, i, cur, &curmd, nm, &nmd)) != 0)
                        goto out;
                    d->deferred = NULL;
                    d->plan[i - 1].count = d->nsteps - d->plan[i - 1].first;
                    d->plan[i].first = d->nsteps;
                }
                rv = 0;
            } else if (rv != 0) {
                goto out;
            }
        }
        if (!d->plan[i].onednn && l->type == YOLO && i > 0 && net->layers[i].batch == 1) {
            rv = yolo_steps(d, i, l, &net->layers[i - 1]);
            if (rv == PROTO_EINVAL) { /* darknet's own forward_yolo_layer runs it */
                while (d->nsteps > d->plan[i].first)
                    dnnl_primitive_destroy(d->steps[--d->nsteps].prim);
                rv = 0;
            } else if (rv != 0) {
                goto out;
            } else {
                d->plan[i].yolo = 1;
            }
        }
        if (!d->plan[i].onednn &&
            (rv = user_mem(d, i, l->out_c, l->out_h, l->out_w, l->output, &cur, &curmd)) != 0)
            goto out;
        d->plan[i].count = d->nsteps - d->plan[i].first;
    }
    /* darknet's data-moving layers on the team (its forward runs them on one thread) */
    for (i = 0; i < n; i++)
        d->plan[i].reshape =
            !d->plan[i].onednn && d->plan[i].count == 0 && be_reshape_fits(net, &net->layers[i]);
    /* only ever a saving: without it (no memory, refused) the first layers run whole */
    (void)be_dnnl_tail_create(d);
    rv = 0;
out:
    free(nchw);
    d->why = NULL;
    if (rv != 0) {
        be_dnnl_destroy(d);
        return rv;
    }
    *out = d;
    return 0;
}

/* A layer's steps in order. oneDNN's CPU stream runs a primitive in the calling thread (its
 * OpenMP runtime), so an own max-pool step between two primitives sees its input written. */
static void run_steps(be_dnnl_t *d, const plan_t *p)
{
    for (int k = p->first; k < p->first + p->count; k++) {
        step_t *s = &d->steps[k];
        if (s->prim != NULL) {
            dnnl_primitive_execute(s->prim, d->st, s->nargs, s->args);
            continue;
        }
        dnnl_stream_wait(d->st);
        be_dnnl_own_run(d, s);
    }
    dnnl_stream_wait(d->st);
}

float *be_dnnl_predict_stop(be_dnnl_t *d, const float *input, be_fast_stop_cb stop, void *arg)
{
    network net = *d->net;
    net.input = (float *)input; /* darknet's type; no layer writes its input */
    net.truth = 0;
    net.train = 0;
    net.delta = 0;
    if (omp_set_num_threads != NULL)
        omp_set_num_threads(d->threads);
    dnnl_memory_set_data_handle(d->input, (void *)input);
    d->tail_rows = 0;
    for (int i = 0; i < net.n; i++) {
        if (stop != NULL && stop(arg))
            return NULL;
        net.index = i;
        layer l = net.layers[i];
        const plan_t *p = &d->plan[i];
        if (i == 0 && d->tail != NULL && be_dnnl_tail_run(d, input)) {
            i = be_dnnl_tail_layers(d) - 1; /* layers 0 .. i are done: one step here */
            net.input = net.layers[i].output;
            continue;
        }
        if (p->onednn) {
            run_steps(d, p);
        } else if (p->yolo) {
            run_steps(d, p);
            yolo_fixup(&l, net.input);
        } else if (p->wino != NULL) {
            be_fast_wino_forward(p->wino, &l, net.input, d->wino_scratch, d->threads);
        } else if (p->reshape) {
            be_reshape_forward(d->net, &l, net.input, d->threads);
        } else {
            /* a fallback's input reorder (see be_dnnl_create) was appended to the layer before */
            l.forward(l, net);
        }
        net.input = l.output;
        if (l.truth)
            net.truth = l.output;
    }
    return d->net->output;
}

int be_dnnl_reshape_layers(const be_dnnl_t *d)
{
    int k = 0;
    for (int i = 0; i < d->net->n; i++)
        k += d->plan[i].reshape;
    return k;
}

int be_dnnl_layers(const be_dnnl_t *d)
{
    int k = 0;
    for (int i = 0; i < d->net->n; i++)
        k += d->plan[i].onednn || d->plan[i].wino != NULL;
    return k;
}

void be_dnnl_destroy(be_dnnl_t *d)
{
    if (d == NULL)
        return;
    be_dnnl_tail_destroy(d->tail);
    for (int i = 0; i < d->nsteps; i++) {
        dnnl_primitive_destroy(d->steps[i].prim);
        be_convpool_destroy(d->steps[i].cp);
    }
    for (int i = 0; i < d->nmems; i++)
        dnnl_memory_destroy(d->mems[i]);
    if (d->st != NULL)
        dnnl_stream_destroy(d->st);
    if (d->eng != NULL)
        dnnl_engine_destroy(d->eng);
    for (int i = 0; d->plan != NULL && d->net != NULL && i < d->net->n; i++)
        be_fast_wino_destroy(d->plan[i].wino);
    free(d->wino_scratch);
    free(d->steps);
    free(d->plan);
    free(d->mems);
    free(d);
}

#endif /* FG_HAVE_DNNL; without it, dnnl_none.c */
