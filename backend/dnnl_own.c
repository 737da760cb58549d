/* framegate's own steps in the oneDNN engine's plan (dnnl_internal.h), where they beat
 * oneDNN 2.6's kernels: its max-pool loop (backend/maxpool.h) and the first 3x3 convolution
 * with its 2x2 max-pool as one pass (backend/convpool.h). Each step reads args[0] and writes
 * args[1], in oneDNN's blocked layouts, on the engine's OpenMP team; a layer after it sees its
 * output as it would a primitive's. Same thread rules as dnnl.h. */
#include "dnnl.h"

#ifdef FG_HAVE_DNNL
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "dnnl_internal.h"
#include "err.h"

static int own_pool_mode = -1; /* be_dnnl_own_pool */

/* The layout of be_maxpool_t's blk: darknet's NCHW (after a layer darknet's buffers hold,
 * e.g. fast_wino's), oneDNN's channel blocks, or channels last (blk = c > 16; with 8 or 16
 * channels that is the same layout as one block). */
static dnnl_format_tag_t pool_tag(int blk)
{
    return blk == 1 ? dnnl_nchw : blk == 8 ? dnnl_aBcd8b : blk == 16 ? dnnl_aBcd16b : dnnl_nhwc;
}

/* AMD family 19h: Zen 3 (no AVX-512) and Zen 4, whose AVX-512 runs each 512-bit operation
 * as two 256-bit halves. */
static int amd_family_19h(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d) || b != 0x68747541u || d != 0x69746e65u ||
        c != 0x444d4163u) /* "AuthenticAMD" */
        return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    unsigned family = (a >> 8) & 0xfu;
    if (family == 0xfu)
        family += (a >> 20) & 0xffu;
    return family == 0x19u;
#else
    return 0;
#endif
}

int be_dnnl_own_loops_default(void)
{
    if (!be_dnnl_winograd_supported()) /* oneDNN without AVX-512 */
        return 1;
    return amd_family_19h();
}

/* 1 when max-pool layer l, on a tensor described by `in`, runs as be_maxpool_blocked (its
 * geometry then in *mp): by default where be_dnnl_own_loops_default (its AVX2 max-pool took
 * 2.6-4x the loop's time on AMD Zen 3; its AVX-512 one was faster than the loop on Cooper Lake),
 * f32 in 8- or 16-channel blocks, NCHW or (mode 1) channels last (oneDNN's brgemm
 * convolutions' NHWC on AVX-512), no activation left to it (d->deferred). */
int be_dnnl_own_pool_fits(const be_dnnl_t *d, const layer *l, const dnnl_memory_desc_t *in,
                          be_maxpool_t *mp)
{
    int on = own_pool_mode;
    if (on < 0)
        on = be_dnnl_own_loops_default();
    if (!on || l->type != MAXPOOL || d->deferred != NULL || in->data_type != dnnl_f32 ||
        l->out_c != l->c)
        return 0;
    *mp = be_fast_pool(l, 0); /* blk: the layout's, below */
    dnnl_dims_t dims = {1, l->c, l->h, l->w};
    dnnl_memory_desc_t md;
    /* Channels last only when asked for (mode 1): by default oneDNN's AVX-512 pool runs those
     * (in-process on the face model, AMD Zen 4, the network took 0.89-1.01x of its time with
     * it instead of the loop). */
    static const dnnl_format_tag_t tags[] = {dnnl_nchw, dnnl_aBcd8b, dnnl_aBcd16b, dnnl_nhwc};
    static const int blks[] = {1, 8, 16, 0}; /* 0: c */
    for (size_t k = 0; k < (own_pool_mode == 1 ? 4u : 3u); k++)
        if (dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, tags[k]) == dnnl_success &&
            dnnl_memory_desc_equal(&md, in)) {
            mp->blk = blks[k] > 0 ? blks[k] : l->c;
            /* fewer channels than a block (oneDNN pads them with zeros): the loop runs the
             * whole block, its padding's max 0 as oneDNN keeps it */
            mp->c = (l->c + mp->blk - 1) / mp->blk * mp->blk;
            return be_maxpool_fits(mp);
        }
    return 0;
}

/* Max-pool layer i as an own step (be_dnnl_own_pool_fits said yes), its output in the same
 * blocking. */
int be_dnnl_own_pool_step(be_dnnl_t *d, int i, const layer *l, const be_maxpool_t *mp, int to_nchw,
                          dnnl_memory_t *cur, dnnl_memory_desc_t *curmd)
{
    dnnl_memory_desc_t md;
    dnnl_memory_t out;
    dnnl_dims_t dims = {1, l->out_c, l->out_h, l->out_w};
    BE_DNNL_TRY(dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, pool_tag(mp->blk)),
                "a tensor");
    BE_DNNL_TRY(dnnl_memory_create(&out, &md, d->eng, DNNL_MEMORY_ALLOCATE), "a tensor");
    be_dnnl_keep_mem(d, out);
    step_t *s = be_dnnl_new_step(d);
    s->pool = *mp;
    d->nownpool++;
    s->args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, *cur};
    s->args[1] = (dnnl_exec_arg_t){DNNL_ARG_DST, out};
    s->nargs = 2;
    *cur = out;
    *curmd = md;
    return to_nchw ? be_dnnl_to_darknet(d, i, l, out, &md) : 0;
}

static int convpool_mode = -1; /* be_dnnl_convpool */

/* A depthwise 3x3 + 1x1 + pool as one pass only up to this many channels into the 1x1: on
 * the face model (in-process, interleaved frame by frame on 7 photos, AMD Zen 3) its 16 and
 * 32-channel passes took the network to 0.996 / 0.967 of its time with pairs only (1 / 2
 * threads), the 16 alone 0.986-0.992 / 0.975-0.977; all four (up to 128) made it slower
 * (1.27 / 1.21 before the depthwise rows ran four columns at once), as oneDNN's 1x1 kernel is the
 * faster one there (convpool.h). */
#define DW_C_MAX 32

/* The layout tag of 1-, 8- or 16-channel blocks. */
static dnnl_format_tag_t blk_tag(int blk)
{
    return blk == 1 ? dnnl_nchw : blk == 8 ? dnnl_aBcd8b : dnnl_aBcd16b;
}

/* The channels per block (1, 8 or 16; NCHW only when nchw_ok) of a c x h x w tensor laid out
 * as curmd, or 0. */
static int in_blocks(const dnnl_memory_desc_t *curmd, int c, int h, int w, int nchw_ok)
{
    static const int blks[] = {1, 8, 16};
    dnnl_dims_t dims = {1, c, h, w};
    dnnl_memory_desc_t md;
    for (int k = nchw_ok ? 0 : 1; k < (nchw_ok ? 1 : 3); k++)
        if (c % blks[k] == 0 &&
            dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, blk_tag(blks[k])) ==
                dnnl_success &&
            dnnl_memory_desc_equal(&md, curmd))
            return blks[k];
    /* 8 or 16 channels last are one block of them (oneDNN's brgemm kernels write NHWC) */
    if (!nchw_ok && (c == 8 || c == 16) &&
        dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, dnnl_nhwc) == dnnl_success &&
        dnnl_memory_desc_equal(&md, curmd))
        return c;
    return 0;
}

/* When layers i .. i + *layers - 1 run as one be_convpool step, the channels per block it reads
 * (1, 8 or 16), else 0: they fit, the mode allows it (by default where be_dnnl_own_loops_default:
 * oneDNN's AVX2 kernel for the face model's first layer ran at ~45 GFLOP/s, and each pool read back
 * what the convolution had just written; convpool.h), f32 (bf16: below), darknet reads none of the
 * outputs the pass skips (nchw[j]), and the tensor coming in (curmd) is laid out as be_convpool
 * reads it: NCHW for a 3x3, 8- or 16-channel blocks for the rest. Three layers (a depthwise 3x3, a
 * 1x1, a pool) are taken before two. */
int be_dnnl_convpool_fits(const be_dnnl_t *d, int i, int all_outputs, const char *nchw,
                          const dnnl_memory_desc_t *curmd, int *layers)
{
    int on = convpool_mode;
    if (on < 0)
        on = be_dnnl_own_loops_default();
    if (!on || all_outputs || i + 1 >= d->net->n || nchw[i] || !d->plan[i].onednn ||
        !d->plan[i + 1].onednn || d->deferred != NULL)
        return 0;
    const layer *l = d->net->layers;
    /* bf16: only a pass from layer 0, on the f32 input image; the bf16 convolution after it
     * reads its output through a reorder. Face model (in-process, in turns over the 7 photos,
     * AMD Zen 4): the network took 0.953-0.959 of bf16's time without it (1 and 2 threads),
     * yolov3-tiny's 0.998-1.003; with the face model's next two passes (f32) as well, 1.15-1.18x
     * the time with the first alone. */
    if (d->bf16 && i != 0)
        return 0;
    if (on != 2 && i + 2 < d->net->n && !nchw[i + 1] && d->plan[i + 2].onednn &&
        be_convpool_fits_dw(&l[i], &l[i + 1], &l[i + 2]) && l[i + 1].c <= DW_C_MAX) {
        *layers = 3;
        return in_blocks(curmd, l[i].c, l[i].h, l[i].w, 0);
    }
    /* A 1x1 alone only from up to 16 channels: on the face model (in-process, interleaved frame
     * by frame on 7 photos, AMD Zen 3) its 16 -> 32 pair took the network from 0.83-0.90 to
     * 0.79-0.87 of its time without pairs, but each pair from 32 channels up made it slower
     * again (all five: 0.88-1.07), where oneDNN's 1x1 kernel is the faster one. */
    if (!be_convpool_fits(&l[i], &l[i + 1]) || (l[i].size == 1 && l[i].c > 16))
        return 0;
    *layers = 2;
    return in_blocks(curmd, l[i].c, l[i].h, l[i].w, l[i].size == 3);
}

/* Layers i .. i + layers - 1 as one step (be_dnnl_convpool_fits said in_blk): the tensor coming
 * in to the pool's output in the channel blocks oneDNN's own kernels use here (8 with AVX2, 16
 * with AVX-512: its depthwise kernel would otherwise reorder it first), then, as the pool's
 * steps, its copy to darknet's buffer when darknet reads it (to_nchw). */
int be_dnnl_convpool_step(be_dnnl_t *d, int i, int in_blk, int layers, int to_nchw,
                          dnnl_memory_t *cur, dnnl_memory_desc_t *curmd)
{
    const int last = i + layers - 1;
    const layer *l = d->net->layers, *pl = &l[last];
    int rv;
    dnnl_memory_desc_t md;
    dnnl_memory_t out;
    dnnl_dims_t dims = {1, pl->out_c, pl->out_h, pl->out_w};
    const int blk = be_dnnl_winograd_supported() ? 16 : 8; /* (that is: oneDNN's AVX-512) */
    BE_DNNL_TRY(dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, blk_tag(blk)), "a tensor");
    BE_DNNL_TRY(dnnl_memory_create(&out, &md, d->eng, DNNL_MEMORY_ALLOCATE), "a tensor");
    be_dnnl_keep_mem(d, out);
    d->plan[i].first = d->nsteps;
    step_t *s = be_dnnl_new_step(d);
    rv = layers == 3 ? be_convpool_create_dw(&s->cp, &l[i], &l[i + 1], pl, blk, in_blk)
                     : be_convpool_create(&s->cp, &l[i], pl, blk, in_blk);
    if (rv != 0) {
        d->nsteps--;
        return rv;
    }
    s->args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, *cur};
    s->args[1] = (dnnl_exec_arg_t){DNNL_ARG_DST, out};
    s->nargs = 2;
    d->nconvpool++;
    d->plan[i].count = 1;
    for (int j = i + 1; j <= last; j++) {
        d->plan[j].first = d->nsteps;
        d->plan[j].fused = 1;
        d->plan[j].count = 0;
    }
    *cur = out;
    *curmd = md;
    rv = to_nchw ? be_dnnl_to_darknet(d, last, pl, out, &md) : 0;
    d->plan[last].count = d->nsteps - d->plan[last].first;
    return rv;
}

void be_dnnl_own_pool(int mode)
{
    own_pool_mode = mode;
}

int be_dnnl_own_pool_layers(const be_dnnl_t *d)
{
    return d->nownpool;
}

void be_dnnl_convpool(int mode)
{
    convpool_mode = mode;
}

int be_dnnl_convpool_layers(const be_dnnl_t *d)
{
    return d->nconvpool;
}

void be_dnnl_own_run(be_dnnl_t *d, const step_t *s)
{
    void *in = NULL, *out = NULL;
    dnnl_memory_get_data_handle(s->args[0].memory, &in);
    dnnl_memory_get_data_handle(s->args[1].memory, &out);
    if (s->cp != NULL) {
        be_convpool_run_all(s->cp, in, out, d->threads);
    } else {
        be_maxpool_blocked(&s->pool, in, out, d->threads);
    }
}

#endif /* FG_HAVE_DNNL; without it, dnnl_none.c */
