/* The oneDNN engine's shortcut for an input that ends in rows of zeros.
 *
 * face-api's pre-processing pads a frame to a square below (and right of) the image with
 * zeros, so a 16:9 camera frame leaves the bottom 44% of the face model's 416 x 416 input zero,
 * a 4:3 one 25%. A layer's output row depends on a few rows of its input only; when those are
 * the rows an all-zero input would give there, so is the output row. So when the network
 * starts with a chain of layers that each read only the one before (convolutions, and
 * max-pools run by framegate's loop), this runs each of them over the rows that can differ
 * from an all-zero input's (plus the rows the next one reads), in dense buffers of that
 * height, and fills the rest of the chain's last output (a max-pool's) from its output for an
 * all-zero input, computed once when the engine is made. The other layers run as before. The
 * output is the same, bit for bit, as the whole layers' (test_be_dnnl): every row computed is
 * computed from the same inputs by the same kernels.
 *
 * The rows computed are set by layer 1's, rounded up to TAIL_STEP, so there are at most
 * out_h / TAIL_STEP + 1 shapes: each gets its convolution primitives the first time a pass
 * needs it (~0.3 ms each, jit), kept until the engine is destroyed. A shape oneDNN refuses
 * or would run on its reference kernel is marked and runs whole. One thread at a time per
 * engine (dnnl.h); the work runs on the engine's OpenMP team. */
#include "dnnl.h"

#ifdef FG_HAVE_DNNL
#include <stdlib.h>
#include <string.h>

#include "dnnl_internal.h"
#include "err.h"

#define TAIL_STEP 16   /* layer 1's output rows per shape */
#define TAIL_MIN 16    /* fewer zero-tail rows than this in layer 1's output: run whole */
#define CHAIN_MAX 12   /* layers */
#define CHAIN_MIN_H 16 /* the chain ends at the deepest max-pool with this many rows out */
#define COPY_PARTS 8   /* pieces per channel for the input's copy */

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
    step_t *st;     /* the layer's one step */
    int pool;       /* 1: framegate's max-pool loop; 0: a oneDNN convolution */
    int k, s, o;    /* window rows, stride, first window's offset (-pad, or -(pad / 2)) */
    int c, h, w;    /* input */
    int oc, oh, ow; /* output */
    void *out;      /* its output buffer: the whole pass's, and the shortcut's */
    dnnl_format_tag_t src_tag, dst_tag; /* a convolution's layouts */
} link_t;

typedef struct {
    int tried, ok;
    int rows[CHAIN_MAX]; /* output rows each link computes */
    int rows_in;         /* input rows link 0 reads */
    dnnl_primitive_t prim[CHAIN_MAX];
    dnnl_memory_t src[CHAIN_MAX], dst[CHAIN_MAX];
} shape_t;

struct be_dnnl_tail {
    int n; /* links: layers 0 .. n - 1 */
    link_t links[CHAIN_MAX];
    float *in;       /* the input's rows, dense, for link 0 */
    float *zero;     /* an input row of +0 */
    float *zero_out; /* the last link's output for an all-zero input */
    int nshapes;
    shape_t shapes[];
};

/* The tag among those the engine uses that lays out dims as md does; 0 if none. */
static dnnl_format_tag_t tag_of(const dnnl_memory_desc_t *md)
{
    static const dnnl_format_tag_t tags[] = {dnnl_nchw, dnnl_aBcd8b, dnnl_aBcd16b, dnnl_nhwc};
    dnnl_memory_desc_t t;
    if (md->ndims != 4 || md->data_type != dnnl_f32)
        return dnnl_format_tag_undef;
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
        if (dnnl_memory_desc_init_by_tag(&t, 4, md->dims, dnnl_f32, tags[i]) == dnnl_success &&
            dnnl_memory_desc_equal(&t, md))
            return tags[i];
    return dnnl_format_tag_undef;
}

static int pool_tag_ok(const link_t *k)
{
    return k->st->pool.blk == 1 || k->st->pool.blk == 8 || k->st->pool.blk == 16;
}

/* Link i of d's plan, if layer i qualifies (see the top). 0 or -1. */
static int link_make(be_dnnl_t *d, int i, const link_t *prev, link_t *k)
{
    const layer *l = &d->net->layers[i];
    const plan_t *p = &d->plan[i];
    if (!p->onednn || p->count != 1)
        return -1;
    memset(k, 0, sizeof *k);
    k->st = &d->steps[p->first];
    dnnl_memory_t from = prev != NULL ? prev->st->args[1].memory : d->input;
    if (k->st->args[0].memory != from)
        return -1;
    k->c = l->c, k->h = l->h, k->w = l->w;
    k->oc = l->out_c, k->oh = l->out_h, k->ow = l->out_w;
    k->k = l->size;
    k->s = l->stride;
    dnnl_memory_get_data_handle(k->st->args[1].memory, &k->out);
    if (l->type == MAXPOOL && k->st->prim == NULL && prev != NULL && pool_tag_ok(k)) {
        k->pool = 1;
        k->o = -(l->pad / 2);
        return 0;
    }
    if (l->type != CONVOLUTIONAL || k->st->prim == NULL || k->st->nargs != 4)
        return -1;
    const_dnnl_primitive_desc_t cpd = NULL;
    if (dnnl_primitive_get_primitive_desc(k->st->prim, &cpd) != dnnl_success)
        return -1;
    k->o = -l->pad;
    k->src_tag = tag_of(dnnl_primitive_desc_query_md(cpd, dnnl_query_src_md, 0));
    k->dst_tag = tag_of(dnnl_primitive_desc_query_md(cpd, dnnl_query_dst_md, 0));
    /* link 0 reads the caller's NCHW input (copied); the others what the previous wrote */
    if (k->src_tag == dnnl_format_tag_undef || k->dst_tag == dnnl_format_tag_undef ||
        (prev == NULL && k->src_tag != dnnl_nchw))
        return -1;
    return 0;
}

/* Runs links 0 .. n-1 whole on an all-zero input and keeps the last one's output. */
static int zero_pass(be_dnnl_t *d, be_dnnl_tail_t *t)
{
    dnnl_memory_set_data_handle(d->input, t->in); /* zeros: calloc'd, not written yet */
    for (int i = 0; i < t->n; i++) {
        const link_t *k = &t->links[i];
        if (!k->pool) {
            if (dnnl_primitive_execute(k->st->prim, d->st, k->st->nargs, k->st->args) !=
                    dnnl_success ||
                dnnl_stream_wait(d->st) != dnnl_success)
                return PROTO_EINVAL;
        } else {
            be_maxpool_blocked(&k->st->pool, t->links[i - 1].out, k->out, d->threads);
        }
    }
    const link_t *last = &t->links[t->n - 1];
    memcpy(t->zero_out, last->out, (size_t)last->oc * last->oh * last->ow * sizeof(float));
    return 0;
}

int be_dnnl_tail_create(be_dnnl_t *d)
{
    link_t links[CHAIN_MAX];
    int n = 0, end = 0;
    if (refuse_tail || d->bf16)
        return 0;
    while (n < CHAIN_MAX && n < d->net->n &&
           link_make(d, n, n > 0 ? &links[n - 1] : NULL, &links[n]) == 0) {
        if (links[n].pool && links[n].oh >= CHAIN_MIN_H)
            end = n + 1;
        n++;
    }
    if (end < 2)
        return 0;
    const link_t *last = &links[end - 1];
    int nshapes = links[1].oh / TAIL_STEP + 1;
    be_dnnl_tail_t *t = calloc(1, sizeof *t + (size_t)nshapes * sizeof(shape_t));
    if (t == NULL ||
        (t->in = calloc((size_t)links[0].c * links[0].h * links[0].w, sizeof(float))) == NULL ||
        (t->zero = calloc((size_t)links[0].w, sizeof(float))) == NULL ||
        (t->zero_out = malloc((size_t)last->oc * last->oh * last->ow * sizeof(float))) == NULL) {
        be_dnnl_tail_destroy(t);
        return PROTO_ENOMEM;
    }
    t->n = end;
    memcpy(t->links, links, (size_t)end * sizeof *links);
    t->nshapes = nshapes;
    int rv = zero_pass(d, t);
    if (rv != 0) {
        be_dnnl_tail_destroy(t);
        return rv;
    }
    d->tail = t;
    return 0;
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

/* The first output row of link k whose window lies in rows >= e of its input (the rows an
 * all-zero input would give), the window's part above row 0 being padding either way. */
static int first_equal(const link_t *k, int e)
{
    if (e == 0)
        return 0;
    int r = (e - k->o + k->s - 1) / k->s;
    return r < k->oh ? r : k->oh;
}

/* Input rows link k reads to compute its output rows [0, rows). */
static int rows_read(const link_t *k, int rows)
{
    int last = (rows - 1) * k->s + k->o + k->k;
    return last < k->h ? last : k->h;
}

/* A dense tensor of `rows` rows of link k's input (src) or output (dst) over `data`. */
static int dense(dnnl_memory_t *m, dnnl_memory_desc_t *md, int c, int rows, int w,
                 dnnl_format_tag_t tag, void *data, dnnl_engine_t eng)
{
    dnnl_dims_t dims = {1, c, rows, w};
    return dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag) == dnnl_success &&
                   dnnl_memory_create(m, md, eng, data) == dnnl_success
               ? 0
               : -1;
}

/* Link i's convolution over its shape's rows; 0, or -1 (refused, or a reference kernel). */
static int conv_make(be_dnnl_t *d, be_dnnl_tail_t *t, shape_t *s, int i)
{
    const link_t *k = &t->links[i];
    const layer *l = &d->net->layers[i];
    int in_rows = i == 0 ? s->rows_in : s->rows[i - 1];
    void *in = i == 0 ? (void *)t->in : t->links[i - 1].out;
    const_dnnl_primitive_desc_t cpd = NULL;
    const_dnnl_primitive_attr_t attr = NULL;
    dnnl_memory_desc_t smd, dmd, bmd;
    dnnl_convolution_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    const char *impl = NULL;
    dnnl_dims_t bd = {l->n}, str = {k->s, k->s}, pad_l = {l->pad, l->pad};
    dnnl_dims_t pad_r = {(s->rows[i] - 1) * k->s + k->k - l->pad - in_rows,
                         (k->ow - 1) * k->s + k->k - k->w - l->pad};
    if (pad_r[0] < 0 || dense(&s->src[i], &smd, k->c, in_rows, k->w, k->src_tag, in, d->eng) ||
        dense(&s->dst[i], &dmd, k->oc, s->rows[i], k->ow, k->dst_tag, k->out, d->eng) ||
        dnnl_primitive_get_primitive_desc(k->st->prim, &cpd) != dnnl_success ||
        dnnl_primitive_desc_get_attr(cpd, &attr) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x) != dnnl_success ||
        dnnl_convolution_forward_desc_init(
            &desc, dnnl_forward_inference, dnnl_convolution_direct, &smd,
            dnnl_primitive_desc_query_md(cpd, dnnl_query_weights_md, 0), &bmd, &dmd, str, pad_l,
            pad_r) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &desc, attr, d->eng, NULL) != dnnl_success)
        return -1;
    int ok = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
             impl != NULL && strncmp(impl, "ref", 3) != 0 &&
             dnnl_primitive_create(&s->prim[i], pd) == dnnl_success;
    dnnl_primitive_desc_destroy(pd);
    return ok ? 0 : -1;
}

/* Link i's max-pool geometry for shape s: its input s's rows of the link before (dense), its
 * output dense too, or, for the last link, the top rows of its whole output. */
static be_maxpool_t pool_geometry(const be_dnnl_tail_t *t, const shape_t *s, int i)
{
    be_maxpool_t mp = t->links[i].st->pool;
    mp.h = s->rows[i - 1];
    if (i < t->n - 1)
        mp.out_h = s->rows[i];
    else
        mp.rows = s->rows[i];
    return mp;
}

/* Every link's rows for the shape whose layer 1 computes `rows1` rows, from the chain's end
 * back (each link computes what the next one reads), and its primitives. 0 or -1. */
static int shape_make(be_dnnl_t *d, be_dnnl_tail_t *t, shape_t *s, int rows1)
{
    int e = rows1;
    for (int i = 2; i < t->n; i++) /* the rows that may differ, forward from layer 1 */
        e = first_equal(&t->links[i], e);
    s->tried = 1;
    s->rows[t->n - 1] = e > 0 ? e : 1;
    for (int i = t->n - 1; i > 0; i--)
        s->rows[i - 1] = rows_read(&t->links[i], s->rows[i]);
    s->rows_in = rows_read(&t->links[0], s->rows[0]);
    for (int i = 0; i < t->n; i++) {
        if (t->links[i].pool) {
            be_maxpool_t mp = pool_geometry(t, s, i);
            if (!be_maxpool_fits(&mp))
                return -1;
        } else if (conv_make(d, t, s, i) != 0) {
            return -1;
        }
    }
    s->ok = 1;
    return 0;
}

int be_dnnl_tail_run(be_dnnl_t *d, const float *input)
{
    be_dnnl_tail_t *t = d->tail;
    const link_t *k0 = &t->links[0], *last = &t->links[t->n - 1];
    int a = content_rows(t, input, k0->c, k0->h, k0->w);
    int e1 = first_equal(&t->links[1], first_equal(k0, a));
    int rows1 = (e1 + TAIL_STEP - 1) / TAIL_STEP * TAIL_STEP;
    if (rows1 > t->links[1].oh - TAIL_MIN)
        return 0;
    shape_t *s = &t->shapes[rows1 / TAIL_STEP];
    if (!s->tried && shape_make(d, t, s, rows1 > 0 ? rows1 : 1) != 0)
        s->ok = 0;
    if (!s->ok)
        return 0;
    /* the input's rows, dense (oneDNN runs a strided view on its reference kernel), in
     * COPY_PARTS pieces a channel over the team: serial, it took much of what the skip saved */
    size_t n = (size_t)s->rows_in * k0->w, part = (n + COPY_PARTS - 1) / COPY_PARTS;
#pragma omp parallel for num_threads(d->threads) schedule(static) if (d->threads > 1)
    for (int j = 0; j < k0->c * COPY_PARTS; j++) {
        size_t ch = (size_t)(j / COPY_PARTS), lo = (size_t)(j % COPY_PARTS) * part;
        size_t len = lo >= n ? 0 : n - lo < part ? n - lo : part;
        memcpy(t->in + ch * n + lo, input + ch * k0->h * k0->w + lo, len * sizeof(float));
    }
    for (int i = 0; i < t->n; i++) {
        const link_t *k = &t->links[i];
        if (k->pool) {
            be_maxpool_t mp = pool_geometry(t, s, i);
            be_maxpool_blocked(&mp, t->links[i - 1].out, k->out, d->threads);
            continue;
        }
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, s->src[i]},
                                   {DNNL_ARG_WEIGHTS, k->st->args[2].memory},
                                   {DNNL_ARG_BIAS, k->st->args[3].memory},
                                   {DNNL_ARG_DST, s->dst[i]}};
        if (dnnl_primitive_execute(s->prim[i], d->st, 4, args) != dnnl_success ||
            dnnl_stream_wait(d->st) != dnnl_success)
            return 0; /* nothing written that the whole layers will not write again */
    }
    /* the last output's other rows, every channel block, from the all-zero input's */
    int blk = last->st->pool.blk, rows = s->rows[t->n - 1];
    size_t row = (size_t)last->ow * blk;
    int tail = last->oh - rows, items = last->oc / blk * tail;
    float *out = last->out;
#pragma omp parallel for num_threads(d->threads) schedule(static) if (d->threads > 1)
    for (int j = 0; j < items; j++) {
        size_t at = ((size_t)(j / tail) * last->oh + rows + j % tail) * row;
        memcpy(out + at, t->zero_out + at, row * sizeof(float));
    }
    d->tail_rows = tail;
    return 1;
}

int be_dnnl_tail_layers(const be_dnnl_t *d)
{
    return d->tail != NULL ? d->tail->n : 0;
}

void be_dnnl_tail_destroy(be_dnnl_tail_t *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < t->nshapes; i++)
        for (int j = 0; j < CHAIN_MAX; j++) {
            dnnl_primitive_destroy(t->shapes[i].prim[j]);
            dnnl_memory_destroy(t->shapes[i].src[j]);
            dnnl_memory_destroy(t->shapes[i].dst[j]);
        }
    free(t->in);
    free(t->zero);
    free(t->zero_out);
    free(t);
}

#endif /* FG_HAVE_DNNL; without it, dnnl_none.c */
