/* The oneDNN engine's shortcut for an input that ends in rows of zeros.
 *
 * face-api's pre-processing pads a frame to a square below (and right of) the image with
 * zeros, so a 16:9 camera frame leaves the bottom 44% of the face model's 416 x 416 input zero,
 * a 4:3 one 25%. A convolution reading only zeros (its own zero padding included) gives its
 * bias, activated, at every position; a max-pool over those rows gives the same. So when the
 * network starts with a convolution (on the NCHW input) and a max-pool run by framegate's loop,
 * this computes the convolution only over the rows above the zeros (plus the rows their pool
 * windows reach), pools those, and fills the pool's other rows with that constant, which was
 * computed once by the same primitives on an all-zero input. Those two layers were about 40%
 * of the face model's time. Nothing else changes: the output is the same, bit for bit, as the
 * whole two layers' (test_be_dnnl), since sum(w * 0) + b is b in any order.
 *
 * The rows computed are rounded up to TAIL_STEP pool rows, so there are at most
 * pool_h / TAIL_STEP + 1 shapes: each gets its convolution primitive the first time a pass
 * needs it (about 0.3 ms, jit), kept until the engine is destroyed. A shape oneDNN would run
 * with its reference kernel, or refuses, is marked and runs whole. One thread at a time per
 * engine (dnnl.h); the primitives run on the engine's OpenMP team. */
#include "dnnl.h"

#ifdef FG_HAVE_DNNL
#include <stdlib.h>
#include <string.h>

#include "dnnl_internal.h"
#include "err.h"

#define TAIL_STEP 16 /* pool rows per shape */
#define TAIL_MIN 16  /* fewer zero-tail pool rows than this: the layers run whole */
#define COPY_PARTS 8 /* pieces per input channel for the copy */

static int refuse_tail; /* be_dnnl_refuse_tail (tests, bench) */

void be_dnnl_refuse_tail(int on)
{
    refuse_tail = on;
}

int be_dnnl_tail_rows(const be_dnnl_t *d)
{
    return d->tail_rows;
}

typedef struct {
    int tried;             /* 1: prim made, or refused (prim NULL) */
    dnnl_primitive_t prim; /* the convolution of rows [0, rows_conv) */
    dnnl_memory_t src;     /* the input rows [0, rows_in), dense (the tail's in) */
    dnnl_memory_t dst;     /* its output, dense, at the start of the full output's buffer */
    int rows_in, rows_conv;
} shape_t;

struct be_dnnl_tail {
    const layer *conv, *pool;
    step_t *cs, *ps;       /* layer 0's convolution step, layer 1's max-pool step */
    void *conv_out;        /* the full convolution's output buffer (oneDNN's) */
    void *pool_out;        /* the max-pool's output buffer */
    float *in;             /* input rows copied dense for a shape's convolution */
    float *fill;           /* per channel block: a row of the max-pool's output over zeros */
    float *zero;           /* a row of the input's width, +0 */
    int pad_w;             /* the convolution's right padding (as the whole one's) */
    dnnl_format_tag_t tag; /* the convolution's output layout (the max-pool's blocking) */
    int nshapes;
    shape_t shapes[];
};

static dnnl_format_tag_t blk_tag(int blk)
{
    return blk == 1 ? dnnl_nchw : blk == 8 ? dnnl_aBcd8b : dnnl_aBcd16b;
}

/* Rows [0, result) of the planar c x h x w input hold everything that is not +0 (what the
 * padding is; a -0 only ends the tail early). From the bottom: a frame without a tail costs
 * one row. */
static int content_rows(const be_dnnl_tail_t *t, const float *in, int c, int h, int w)
{
    for (int y = h - 1; y >= 0; y--)
        for (int ch = 0; ch < c; ch++)
            if (memcmp(in + ((size_t)ch * h + y) * w, t->zero, (size_t)w * sizeof(float)) != 0)
                return y + 1;
    return 0;
}

int be_dnnl_tail_create(be_dnnl_t *d)
{
    network *net = d->net;
    if (refuse_tail || d->bf16 || net->n < 2 || !d->plan[0].onednn || !d->plan[1].onednn ||
        d->plan[0].count != 1 || d->plan[1].count != 1)
        return 0;
    const layer *c = &net->layers[0], *p = &net->layers[1];
    step_t *cs = &d->steps[d->plan[0].first], *ps = &d->steps[d->plan[1].first];
    int g = c->groups > 0 ? c->groups : 1;
    /* the convolution reads the caller's input as it is, the pool (framegate's loop) reads
     * the convolution's output, and nothing else reads either (count 1: no copy to darknet) */
    if (c->type != CONVOLUTIONAL || p->type != MAXPOOL || g != 1 || cs->prim == NULL ||
        cs->nargs != 4 || cs->args[0].memory != d->input || ps->prim != NULL ||
        ps->args[0].memory != cs->args[1].memory || ps->pool.rows != 0)
        return 0;
    int nshapes = p->out_h / TAIL_STEP + 1;
    be_dnnl_tail_t *t = calloc(1, sizeof *t + (size_t)nshapes * sizeof(shape_t));
    size_t in_n = (size_t)c->c * c->h * c->w;
    if (t == NULL || (t->in = calloc(in_n, sizeof(float))) == NULL ||
        (t->fill = malloc((size_t)p->out_c * p->out_w * sizeof(float))) == NULL ||
        (t->zero = calloc((size_t)c->w, sizeof(float))) == NULL) {
        be_dnnl_tail_destroy(t);
        return PROTO_ENOMEM;
    }
    t->conv = c;
    t->pool = p;
    t->cs = cs;
    t->ps = ps;
    t->nshapes = nshapes;
    t->tag = blk_tag(ps->pool.blk);
    t->pad_w = (c->out_w - 1) * c->stride + c->size - c->w - c->pad;
    dnnl_memory_get_data_handle(cs->args[1].memory, &t->conv_out);
    dnnl_memory_get_data_handle(ps->args[1].memory, &t->pool_out);
    /* The constant: both layers, whole, on zeros (every position gets it; read at 0,0). */
    dnnl_memory_set_data_handle(d->input, t->in);
    if (dnnl_primitive_execute(cs->prim, d->st, cs->nargs, cs->args) != dnnl_success ||
        dnnl_stream_wait(d->st) != dnnl_success) {
        be_dnnl_tail_destroy(t);
        return PROTO_EINVAL;
    }
    be_maxpool_blocked(&ps->pool, t->conv_out, t->pool_out, d->threads);
    size_t row = (size_t)p->out_w * ps->pool.blk; /* floats in a block's row */
    for (int cb = 0; cb < p->out_c / ps->pool.blk; cb++)
        memcpy(t->fill + cb * row, (const float *)t->pool_out + cb * p->out_h * row,
               row * sizeof(float));
    d->tail = t;
    return 0;
}

/* The convolution of rows [0, rows_conv) on the input's rows [0, rows_in), made once. 0 when
 * it runs on a jit kernel, -1 when oneDNN refuses it or would run it on its reference one. */
static int shape_make(be_dnnl_t *d, be_dnnl_tail_t *t, shape_t *s)
{
    const layer *c = t->conv;
    const_dnnl_primitive_desc_t cpd = NULL;
    const_dnnl_primitive_attr_t attr = NULL;
    dnnl_memory_desc_t smd, bmd, dmd;
    dnnl_convolution_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    const char *impl = NULL;
    dnnl_dims_t sd = {1, c->c, s->rows_in, c->w}, dd = {1, c->out_c, s->rows_conv, c->out_w};
    dnnl_dims_t bd = {c->n}, str = {c->stride, c->stride}, pad_l = {c->pad, c->pad};
    dnnl_dims_t pad_r = {(s->rows_conv - 1) * c->stride + c->size - c->pad - s->rows_in, t->pad_w};
    s->tried = 1;
    if (pad_r[0] < 0 || dnnl_primitive_get_primitive_desc(t->cs->prim, &cpd) != dnnl_success ||
        dnnl_primitive_desc_get_attr(cpd, &attr) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&smd, 4, sd, dnnl_f32, dnnl_nchw) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dnnl_f32, t->tag) != dnnl_success ||
        dnnl_convolution_forward_desc_init(
            &desc, dnnl_forward_inference, dnnl_convolution_direct, &smd,
            dnnl_primitive_desc_query_md(cpd, dnnl_query_weights_md, 0), &bmd, &dmd, str, pad_l,
            pad_r) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &desc, attr, d->eng, NULL) != dnnl_success)
        return -1;
    int ok = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
             impl != NULL && strncmp(impl, "ref", 3) != 0 &&
             dnnl_primitive_create(&s->prim, pd) == dnnl_success;
    dnnl_primitive_desc_destroy(pd);
    if (ok && dnnl_memory_create(&s->src, &smd, d->eng, t->in) == dnnl_success &&
        dnnl_memory_create(&s->dst, &dmd, d->eng, t->conv_out) == dnnl_success)
        return 0;
    dnnl_primitive_destroy(s->prim);
    dnnl_memory_destroy(s->src);
    dnnl_memory_destroy(s->dst);
    s->prim = NULL;
    s->src = s->dst = NULL;
    return -1;
}

int be_dnnl_tail_run(be_dnnl_t *d, const float *input)
{
    be_dnnl_tail_t *t = d->tail;
    const layer *c = t->conv, *p = t->pool;
    int a = content_rows(t, input, c->c, c->h, c->w);
    /* r0: the first convolution row reading only zeros; p0: the first pool row over such rows
     * alone (its window clipped to the rows that exist, as the loop does) */
    int poff = -(p->pad / 2);
    int r0 = a == 0 ? 0 : (a + c->pad + c->stride - 1) / c->stride;
    int p0 = r0 == 0 ? 0 : (r0 - poff + p->stride - 1) / p->stride;
    int rows = (p0 + TAIL_STEP - 1) / TAIL_STEP * TAIL_STEP;
    if (p0 < 0 || rows > p->out_h - TAIL_MIN)
        return 0;
    be_maxpool_t mp = t->ps->pool;
    if (rows > 0) {
        shape_t *s = &t->shapes[rows / TAIL_STEP];
        if (!s->tried) {
            int last =
                (rows - 1) * p->stride + poff + p->size; /* conv rows pool row rows-1 reads */
            s->rows_conv = last < c->out_h ? last : c->out_h;
            last = (s->rows_conv - 1) * c->stride - c->pad + c->size; /* input rows those read */
            s->rows_in = last < c->h ? last : c->h;
            mp.h = s->rows_conv;
            mp.rows = rows;
            if (!be_maxpool_fits(&mp) || shape_make(d, t, s) != 0)
                s->prim = NULL;
        }
        if (s->prim == NULL)
            return 0;
        /* the input's rows, dense (oneDNN runs a strided view on its reference kernel), in
         * COPY_PARTS pieces a channel over the team: serial, it took what the skip saved */
        size_t n = (size_t)s->rows_in * c->w, part = (n + COPY_PARTS - 1) / COPY_PARTS;
#pragma omp parallel for num_threads(d->threads) schedule(static) if (d->threads > 1)
        for (int k = 0; k < c->c * COPY_PARTS; k++) {
            size_t ch = (size_t)(k / COPY_PARTS), lo = (size_t)(k % COPY_PARTS) * part;
            size_t len = lo >= n ? 0 : n - lo < part ? n - lo : part;
            memcpy(t->in + ch * n + lo, input + ch * c->h * c->w + lo, len * sizeof(float));
        }
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, s->src},
                                   {DNNL_ARG_WEIGHTS, t->cs->args[2].memory},
                                   {DNNL_ARG_BIAS, t->cs->args[3].memory},
                                   {DNNL_ARG_DST, s->dst}};
        if (dnnl_primitive_execute(s->prim, d->st, 4, args) != dnnl_success ||
            dnnl_stream_wait(d->st) != dnnl_success)
            return 0; /* nothing written that the whole layers will not write again */
        mp.h = s->rows_conv;
        mp.rows = rows;
        be_maxpool_blocked(&mp, t->conv_out, t->pool_out, d->threads);
    }
    /* the zero tail's rows of every channel block, over the team */
    size_t row = (size_t)p->out_w * mp.blk;
    int tail = p->out_h - rows, items = p->out_c / mp.blk * tail;
    float *out = t->pool_out;
#pragma omp parallel for num_threads(d->threads) schedule(static) if (d->threads > 1)
    for (int k = 0; k < items; k++) {
        int cb = k / tail, y = rows + k % tail;
        memcpy(out + ((size_t)cb * p->out_h + y) * row, t->fill + cb * row, row * sizeof(float));
    }
    d->tail_rows = tail;
    return 1;
}

void be_dnnl_tail_destroy(be_dnnl_tail_t *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < t->nshapes; i++) {
        dnnl_primitive_destroy(t->shapes[i].prim);
        dnnl_memory_destroy(t->shapes[i].src);
        dnnl_memory_destroy(t->shapes[i].dst);
    }
    free(t->in);
    free(t->fill);
    free(t->zero);
    free(t);
}

#endif /* FG_HAVE_DNNL; without it, dnnl_none.c */
