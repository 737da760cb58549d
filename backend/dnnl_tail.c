/* The oneDNN engine's shortcut for an input padded above and below with a constant.
 *
 * Both pre-processings pad a landscape frame to the network's square: face-api's with zeros
 * below it (a 16:9 camera frame leaves the bottom 44% of the face model's 416 x 416 input
 * zero, a 4:3 one 25%), darknet's letterbox with 0.5 above and below (22% each for 16:9). A
 * layer's output row depends on a few rows of its input only; when those are the rows an input
 * filled with the padding's value gives there, so is the output row. So when the network
 * starts with a chain of layers that each read only the one before (convolutions, and
 * max-pools run by framegate's loop), this runs each of them over the band of rows that can
 * differ from that constant input's (plus the rows the next one reads), in dense buffers of
 * that height, and copies the rest of the chain's last output (a max-pool's) from its output
 * for the constant input, computed once per padding value (REFS of them kept). The other
 * layers run as before. In bf16 the chain is the first layer's f32 pass and its pool at most
 * (dnnl_own.c; the next layer's step starts with a reorder, which ends the chain): on the face
 * model (in-process, in turns over the 7 photos, AMD Zen 4) bf16's network took 0.93-0.98 of its
 * time without the shortcut. The output is the same, bit for bit, as the whole layers'
 * (test_be_dnnl): every row computed is computed from the same inputs by the same kernels.
 *
 * The band is set by layer 1's, widened to multiples of STEP rows, so there are at most
 * (out_h / STEP + 1) * (out_h / STEP + 2) shapes: each gets its convolution primitives the first
 * time a pass needs it (~0.3 ms each, jit), kept until the engine is destroyed. A shape oneDNN
 * refuses or would run on its reference kernel is marked and runs whole. One thread at a time per
 * engine (dnnl.h); the work runs on the engine's OpenMP team. */
#include "dnnl.h"

#ifdef FG_HAVE_DNNL
#include <stdlib.h>
#include <string.h>

#include "dnnl_internal.h"
#include "err.h"

#define STEP 16        /* layer 1's band starts and ends at multiples of this */
#define SKIP_MIN 16    /* fewer rows of layer 1's output outside the band: run whole */
#define CHAIN_MAX 12   /* layers */
#define CHAIN_MIN_H 16 /* the chain ends at the deepest max-pool with this many rows out */
#define COPY_PARTS 8   /* pieces per channel for the input's copy */
#define REFS 2         /* padding values whose constant input's output is kept */

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
    step_t *st; /* the layer's one step */
    int pool;   /* 1: framegate's max-pool loop; 0: a oneDNN convolution */
    int fused;  /* 1: this link and the next one or two (up to its pool) are one
                 * be_convpool step (st->cp), run as this link; or (pool 1) that pool, or
                 * (mid 1) the 1x1 between a depthwise link and its pool */
    int mid;
    int pad;        /* the layer's pad (a pool's window starts at -(pad / 2)) */
    int k, s, o;    /* window rows, stride, first window's offset (-pad, or -(pad / 2)) */
    int c, h, w;    /* input */
    int oc, oh, ow; /* output */
    void *out;      /* its output buffer: the whole pass's, and the shortcut's */
    int extra;      /* steps after its own (run after it as in a whole pass) */
    dnnl_format_tag_t src_tag, dst_tag; /* a convolution's layouts */
} link_t;

typedef struct {
    int tried, ok;
    int lo[CHAIN_MAX], hi[CHAIN_MAX]; /* output rows [lo, hi) each link computes */
    int in_lo, in_hi;                 /* input rows link 0 reads */
    dnnl_primitive_t prim[CHAIN_MAX];
    dnnl_memory_t src[CHAIN_MAX], dst[CHAIN_MAX];
} shape_t;

typedef struct {
    int used;
    float v;    /* the padding value */
    float *out; /* the last link's output for an input of v everywhere */
    unsigned age;
} ref_t;

struct be_dnnl_tail {
    int n; /* links: layers 0 .. n - 1 */
    link_t links[CHAIN_MAX];
    float *in;  /* the input's band, dense, for link 0 (and the constant input) */
    float *row; /* an input row of the padding value */
    ref_t refs[REFS];
    unsigned clock;
    int nsteps; /* band starts (in STEPs): layer 1's out_h / STEP + 1; ends: one more */
    shape_t shapes[];
};

/* The tag among those the engine uses that lays out dims as md does; undef if none. */
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

/* Whether a step reading `a` reads what `b` holds: the same memory, or another view of its
 * buffer (the engine aliases, without a reorder, a layout that places every element alike, e.g.
 * 16 channels NHWC and in one 16-channel block). */
static int same_data(dnnl_memory_t a, dnnl_memory_t b)
{
    void *pa = NULL, *pb = NULL;
    return a == b ||
           (dnnl_memory_get_data_handle(a, &pa) == dnnl_success &&
            dnnl_memory_get_data_handle(b, &pb) == dnnl_success && pa != NULL && pa == pb);
}

/* Link i of d's plan, if layer i qualifies (see the top). 0 or -1. */
static int link_make(be_dnnl_t *d, int i, const link_t *prev, link_t *k)
{
    const layer *l = &d->net->layers[i];
    const plan_t *p = &d->plan[i];
    memset(k, 0, sizeof *k);
    if (p->fused && prev != NULL && prev->fused && !prev->pool && l->type == CONVOLUTIONAL) {
        /* the 1x1 of a depthwise pass: never written */
        k->st = prev->st;
        k->fused = k->mid = 1;
        k->c = l->c, k->h = l->h, k->w = l->w;
        k->oc = l->out_c, k->oh = l->out_h, k->ow = l->out_w;
        k->k = l->size, k->s = l->stride, k->pad = l->pad, k->o = -l->pad;
        return p->count == 0 && !prev->mid ? 0 : -1;
    }
    if (p->fused && prev != NULL && prev->fused && !prev->pool) {
        /* the pool be_convpool computes: the step's output; its own steps copy it */
        k->st = prev->st;
        k->extra = p->count;
        for (int j = 0; j < p->count; j++)
            if (d->steps[p->first + j].prim == NULL)
                return -1;
        k->pool = k->fused = 1;
        k->c = l->c, k->h = l->h, k->w = l->w;
        k->oc = l->out_c, k->oh = l->out_h, k->ow = l->out_w;
        k->k = l->size, k->s = l->stride, k->pad = l->pad, k->o = -(l->pad / 2);
        dnnl_memory_get_data_handle(k->st->args[1].memory, &k->out);
        return 0;
    }
    if (!p->onednn || p->count < 1)
        return -1;
    if (d->steps[p->first].cp != NULL) {
        /* be_convpool's convolution: its output never written */
        k->st = &d->steps[p->first];
        k->fused = 1;
        k->c = l->c, k->h = l->h, k->w = l->w;
        k->oc = l->out_c, k->oh = l->out_h, k->ow = l->out_w;
        k->k = l->size, k->s = l->stride, k->pad = l->pad, k->o = -l->pad;
        dnnl_memory_t from = prev != NULL ? prev->st->args[1].memory : d->input;
        return p->count == 1 && same_data(k->st->args[0].memory, from) ? 0 : -1;
    }
    k->st = &d->steps[p->first];
    /* steps after its own: only a pool's copy into darknet's buffer (a layer darknet or
     * fast.c runs reads it), which ends the chain */
    k->extra = p->count - 1;
    for (int j = 1; j < p->count; j++)
        if (d->steps[p->first + j].prim == NULL || l->type != MAXPOOL)
            return -1;
    dnnl_memory_t from = prev != NULL ? prev->st->args[1].memory : d->input;
    if (!same_data(k->st->args[0].memory, from))
        return -1;
    k->c = l->c, k->h = l->h, k->w = l->w;
    k->oc = l->out_c, k->oh = l->out_h, k->ow = l->out_w;
    k->k = l->size;
    k->s = l->stride;
    k->pad = l->pad;
    dnnl_memory_get_data_handle(k->st->args[1].memory, &k->out);
    if (l->type == MAXPOOL && k->st->prim == NULL && prev != NULL) {
        k->pool = 1;
        k->o = -(l->pad / 2);
        k->oc = k->st->pool.c; /* as laid out: 8 channels in a 16-channel block are 16 */
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
    /* link 0 reads the caller's NCHW input (its band copied); the others what the previous
     * one wrote */
    if (k->src_tag == dnnl_format_tag_undef || k->dst_tag == dnnl_format_tag_undef ||
        (prev == NULL && k->src_tag != dnnl_nchw))
        return -1;
    return 0;
}

int be_dnnl_tail_create(be_dnnl_t *d)
{
    link_t links[CHAIN_MAX];
    int n = 0, end = 0;
    if (refuse_tail)
        return 0;
    while (n < CHAIN_MAX && n < d->net->n && (n == 0 || links[n - 1].extra == 0) &&
           link_make(d, n, n > 0 ? &links[n - 1] : NULL, &links[n]) == 0) {
        if (links[n].pool && links[n].oh >= CHAIN_MIN_H)
            end = n + 1;
        n++;
    }
    if (end < 2)
        return 0;
    int nsteps = links[1].oh / STEP + 1;
    be_dnnl_tail_t *t = calloc(1, sizeof *t + (size_t)nsteps * (nsteps + 1) * sizeof(shape_t));
    if (t == NULL ||
        (t->in = malloc((size_t)links[0].c * links[0].h * links[0].w * sizeof(float))) == NULL ||
        (t->row = malloc((size_t)links[0].w * sizeof(float))) == NULL) {
        be_dnnl_tail_destroy(t);
        return PROTO_ENOMEM;
    }
    t->n = end;
    memcpy(t->links, links, (size_t)end * sizeof *links);
    t->nsteps = nsteps;
    d->tail = t;
    return 0;
}

/* The reference for padding value v: links 0 .. n-1 run whole on an input of v everywhere
 * (in the engine's own buffers, between passes), the last one's output kept. Replaces the
 * oldest when REFS are kept. NULL when out of memory or oneDNN fails. */
static const ref_t *ref_for(be_dnnl_t *d, be_dnnl_tail_t *t, float v)
{
    ref_t *r = NULL;
    for (int i = 0; i < REFS; i++)
        if (t->refs[i].used && memcmp(&t->refs[i].v, &v, sizeof v) == 0) {
            t->refs[i].age = ++t->clock;
            return &t->refs[i];
        }
    for (int i = 0; i < REFS; i++)
        if (r == NULL || !t->refs[i].used || (r->used && t->refs[i].age < r->age))
            r = &t->refs[i];
    const link_t *last = &t->links[t->n - 1];
    size_t n = (size_t)last->oc * last->oh * last->ow;
    if (r->out == NULL && (r->out = malloc(n * sizeof(float))) == NULL)
        return NULL;
    r->used = 0;
    size_t in = (size_t)t->links[0].c * t->links[0].h * t->links[0].w;
    for (size_t i = 0; i < in; i++)
        t->in[i] = v;
    dnnl_memory_set_data_handle(d->input, t->in); /* the pass sets its own again */
    for (int i = 0; i < t->n; i++) {
        const link_t *k = &t->links[i];
        if (k->fused && !k->pool && !k->mid)
            be_convpool_run_all(k->st->cp, i == 0 ? t->in : t->links[i - 1].out,
                                t->links[i + be_convpool_layers(k->st->cp) - 1].out, d->threads);
        else if (k->fused)
            continue;
        else if (k->pool)
            be_maxpool_blocked(&k->st->pool, t->links[i - 1].out, k->out, d->threads);
        else if (dnnl_primitive_execute(k->st->prim, d->st, k->st->nargs, k->st->args) !=
                     dnnl_success ||
                 dnnl_stream_wait(d->st) != dnnl_success)
            return NULL;
    }
    memcpy(r->out, last->out, n * sizeof(float));
    r->used = 1;
    r->v = v;
    r->age = ++t->clock;
    return r;
}

/* Rows of the planar c x h x w input equal, in every channel and bit for bit, to a row of v:
 * *head from the top, *tail from the bottom. */
static void pad_rows(be_dnnl_tail_t *t, const float *in, int c, int h, int w, float v, int *head,
                     int *tail)
{
    size_t bytes = (size_t)w * sizeof(float);
    for (int x = 0; x < w; x++)
        t->row[x] = v;
    int y, ch;
    for (y = h - 1; y >= 0; y--) {
        for (ch = 0; ch < c && memcmp(in + ((size_t)ch * h + y) * w, t->row, bytes) == 0; ch++)
            ;
        if (ch < c)
            break;
    }
    *tail = h - 1 - y;
    for (y = 0; y < h - *tail; y++) {
        for (ch = 0; ch < c && memcmp(in + ((size_t)ch * h + y) * w, t->row, bytes) == 0; ch++)
            ;
        if (ch < c)
            break;
    }
    *head = y;
}

/* Output rows [*lo, *hi) of link k: those whose window reaches input rows [lo, hi) (the
 * rows that may differ from the constant input's); the others read only rows that do not. */
static void band_out(const link_t *k, int lo, int hi, int *olo, int *ohi)
{
    if (lo >= hi) { /* nothing differs */
        *olo = *ohi = 0;
        return;
    }
    int a = lo - k->o - k->k + 1; /* r * s >= a: the window's last row >= lo */
    int b = hi - k->o;            /* r * s < b: the window's first row < hi */
    *olo = a <= 0 ? 0 : (a + k->s - 1) / k->s;
    *ohi = (b + k->s - 1) / k->s;
    *ohi = *ohi < k->oh ? *ohi : k->oh;
    *olo = *olo < *ohi ? *olo : *ohi;
}

/* Input rows link k reads for its output rows [lo, hi): [*ilo, *ihi). */
static void band_in(const link_t *k, int lo, int hi, int *ilo, int *ihi)
{
    int a = lo * k->s + k->o, b = (hi - 1) * k->s + k->o + k->k;
    *ilo = a > 0 ? a : 0;
    *ihi = b < k->h ? b : k->h;
}

/* A dense tensor of `rows` rows over `data`. */
static int dense(dnnl_memory_t *m, dnnl_memory_desc_t *md, int c, int rows, int w,
                 dnnl_format_tag_t tag, void *data, dnnl_engine_t eng)
{
    dnnl_dims_t dims = {1, c, rows, w};
    return dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag) == dnnl_success &&
                   dnnl_memory_create(m, md, eng, data) == dnnl_success
               ? 0
               : -1;
}

/* Link i's input band: [ilo, ihi) of its input rows. */
static void link_in(const shape_t *s, int i, int *ilo, int *ihi)
{
    *ilo = i == 0 ? s->in_lo : s->lo[i - 1];
    *ihi = i == 0 ? s->in_hi : s->hi[i - 1];
}

/* Link i's convolution over its shape's band; 0, or -1 (refused, or a reference kernel). */
static int conv_make(be_dnnl_t *d, be_dnnl_tail_t *t, shape_t *s, int i)
{
    const link_t *k = &t->links[i];
    int ilo, ihi;
    link_in(s, i, &ilo, &ihi);
    void *in = i == 0 ? (void *)t->in : t->links[i - 1].out;
    const_dnnl_primitive_desc_t cpd = NULL;
    const_dnnl_primitive_attr_t attr = NULL;
    dnnl_memory_desc_t smd, dmd, bmd;
    dnnl_convolution_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    const char *impl = NULL;
    /* the band's first window starts pad_t rows above its first input row (real padding) */
    int pad_t = ilo - (s->lo[i] * k->s + k->o);
    int pad_b = (s->hi[i] - 1) * k->s + k->o + k->k - ihi;
    dnnl_dims_t bd = {k->oc}, str = {k->s, k->s}, pad_l = {pad_t, k->pad};
    dnnl_dims_t pad_r = {pad_b, (k->ow - 1) * k->s + k->k - k->w - k->pad};
    if (pad_t < 0 || pad_b < 0 ||
        dense(&s->src[i], &smd, k->c, ihi - ilo, k->w, k->src_tag, in, d->eng) ||
        dense(&s->dst[i], &dmd, k->oc, s->hi[i] - s->lo[i], k->ow, k->dst_tag, k->out, d->eng) ||
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

/* Link i's max-pool over shape s's band: its input the band of the link before (dense), its
 * output dense too, or, for the last link, rows [lo, hi) of its whole output (*at: the
 * floats to skip to row lo). */
static be_maxpool_t pool_geometry(const be_dnnl_tail_t *t, const shape_t *s, int i, size_t *at)
{
    const link_t *k = &t->links[i];
    be_maxpool_t mp = k->st->pool;
    int ilo, ihi;
    link_in(s, i, &ilo, &ihi);
    mp.h = ihi - ilo;
    mp.shift = s->lo[i] * k->s - ilo; /* row lo's window starts at lo * s + o, row ilo is 0 */
    *at = 0;
    if (i < t->n - 1) {
        mp.out_h = s->hi[i] - s->lo[i];
    } else {
        mp.rows = s->hi[i] - s->lo[i];
        *at = (size_t)s->lo[i] * k->ow * mp.blk;
    }
    return mp;
}

/* Every link's band for the shape whose layer 1 computes [lo1, hi1): forward, the rows that
 * may differ; back from the chain's end, what each link must compute for the next. */
static int shape_make(be_dnnl_t *d, be_dnnl_tail_t *t, shape_t *s, int lo1, int hi1)
{
    int lo = lo1, hi = hi1;
    s->tried = 1;
    for (int i = 2; i < t->n; i++)
        band_out(&t->links[i], lo, hi, &lo, &hi);
    if (lo >= hi) /* layer 1's band had rows: keep one row to compute at the end */
        hi = lo + 1;
    s->lo[t->n - 1] = lo;
    s->hi[t->n - 1] = hi;
    for (int i = t->n - 1; i > 0; i--)
        band_in(&t->links[i], s->lo[i], s->hi[i], &s->lo[i - 1], &s->hi[i - 1]);
    band_in(&t->links[0], s->lo[0], s->hi[0], &s->in_lo, &s->in_hi);
    for (int i = 0; i < t->n; i++) {
        if (s->lo[i] >= s->hi[i])
            return -1;
        size_t at;
        be_maxpool_t mp = pool_geometry(t, s, i, &at);
        if (t->links[i].fused) /* be_convpool takes any band */
            continue;
        if (t->links[i].pool ? !be_maxpool_fits(&mp) : conv_make(d, t, s, i) != 0)
            return -1;
    }
    s->ok = 1;
    return 0;
}

/* Shape for the input's padding: head and tail rows of v. NULL: run whole; *all set (and
 * NULL) when the input is all padding. */
static shape_t *shape_for(be_dnnl_t *d, be_dnnl_tail_t *t, const float *input, float *v, int *all)
{
    const link_t *k0 = &t->links[0], *k1 = &t->links[1];
    int head, tail, lo, hi;
    /* the padding's value: the bottom-left pixel's, else the top-left one's */
    *v = input[(size_t)(k0->h - 1) * k0->w];
    pad_rows(t, input, k0->c, k0->h, k0->w, *v, &head, &tail);
    if (tail == 0) {
        *v = input[0];
        pad_rows(t, input, k0->c, k0->h, k0->w, *v, &head, &tail);
    }
    band_out(k0, head, k0->h - tail, &lo, &hi);
    band_out(k1, lo, hi, &lo, &hi);
    if ((*all = lo >= hi) != 0) /* a black frame, say: the reference is the output */
        return NULL;
    lo = lo / STEP;
    hi = (hi + STEP - 1) / STEP;
    int rows = hi * STEP < k1->oh ? hi * STEP - lo * STEP : k1->oh - lo * STEP;
    if (k1->oh - rows < SKIP_MIN)
        return NULL;
    shape_t *s = &t->shapes[lo * (t->nsteps + 1) + hi];
    if (!s->tried && shape_make(d, t, s, lo * STEP, hi * STEP < k1->oh ? hi * STEP : k1->oh) != 0)
        s->ok = 0;
    return s->ok ? s : NULL;
}

/* The last link's steps after its own, on its whole output (as dnnl.c's run_steps). */
static int run_extra(be_dnnl_t *d, const link_t *last)
{
    for (int j = 1; j <= last->extra; j++) {
        step_t *st = &last->st[j];
        if (dnnl_primitive_execute(st->prim, d->st, st->nargs, st->args) != dnnl_success)
            return 0;
    }
    return dnnl_stream_wait(d->st) == dnnl_success;
}

int be_dnnl_tail_run(be_dnnl_t *d, const float *input)
{
    be_dnnl_tail_t *t = d->tail;
    const link_t *k0 = &t->links[0], *last = &t->links[t->n - 1];
    float v;
    int all = 0;
    shape_t *s = shape_for(d, t, input, &v, &all);
    const ref_t *ref = s != NULL || all ? ref_for(d, t, v) : NULL;
    dnnl_memory_set_data_handle(d->input, (void *)input); /* ref_for may have moved it */
    if (ref == NULL)
        return 0;
    if (all) {
        memcpy(last->out, ref->out, (size_t)last->oc * last->oh * last->ow * sizeof(float));
        d->tail_rows = last->oh;
        return run_extra(d, last);
    }
    /* the input's band, dense (oneDNN runs a strided view on its reference kernel), in
     * COPY_PARTS pieces a channel over the team: serial, it took much of what the skip saved */
    size_t n = (size_t)(s->in_hi - s->in_lo) * k0->w, part = (n + COPY_PARTS - 1) / COPY_PARTS;
    const float *from = input + (size_t)s->in_lo * k0->w;
    int copies = k0->fused ? 0 : k0->c * COPY_PARTS; /* be_convpool reads the input itself */
#pragma omp parallel for num_threads(d->threads) schedule(static) if (d->threads > 1)
    for (int j = 0; j < copies; j++) {
        size_t ch = (size_t)(j / COPY_PARTS), lo = (size_t)(j % COPY_PARTS) * part;
        size_t len = lo >= n ? 0 : n - lo < part ? n - lo : part;
        memcpy(t->in + ch * n + lo, from + ch * k0->h * k0->w + lo, len * sizeof(float));
    }
    for (int i = 0; i < t->n; i++) {
        const link_t *k = &t->links[i];
        if (k->fused && !k->pool && !k->mid) {
            /* the pool's band from the input's (the caller's, whole) or the band of the link
             * before, into the pool's band buffer, or its output if it ends the chain */
            int j = i + be_convpool_layers(k->st->cp) - 1; /* the pool */
            const link_t *kp = &t->links[j];
            int last = j + 1 == t->n, lo = s->lo[j], hi = s->hi[j];
            if (i == 0)
                be_convpool_run(k->st->cp, input, k->h, 0, kp->out, last ? kp->oh : hi - lo,
                                last ? 0 : lo, lo, hi, d->threads);
            else
                be_convpool_run(k->st->cp, t->links[i - 1].out, s->hi[i - 1] - s->lo[i - 1],
                                s->lo[i - 1], kp->out, last ? kp->oh : hi - lo, last ? 0 : lo, lo,
                                hi, d->threads);
            continue;
        }
        if (k->fused)
            continue;
        if (k->pool) {
            size_t at;
            be_maxpool_t mp = pool_geometry(t, s, i, &at);
            be_maxpool_blocked(&mp, t->links[i - 1].out, (float *)k->out + at, d->threads);
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
    /* the last output's rows outside the band, every channel block, from the reference */
    int blk = last->st->cp != NULL ? be_convpool_blk(last->st->cp) : last->st->pool.blk;
    int lo = s->lo[t->n - 1], hi = s->hi[t->n - 1];
    size_t row = (size_t)last->ow * blk;
    int other = last->oh - (hi - lo), items = (last->oc + blk - 1) / blk * other;
    float *out = last->out;
#pragma omp parallel for num_threads(d->threads) schedule(static) if (d->threads > 1)
    for (int j = 0; j < items; j++) {
        int y = j % other;
        size_t at = ((size_t)(j / other) * last->oh + (y < lo ? y : y - lo + hi)) * row;
        memcpy(out + at, ref->out + at, row * sizeof(float));
    }
    d->tail_rows = other;
    return run_extra(d, last);
}

int be_dnnl_tail_layers(const be_dnnl_t *d)
{
    return d->tail != NULL ? d->tail->n : 0;
}

void be_dnnl_tail_destroy(be_dnnl_tail_t *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < t->nsteps * (t->nsteps + 1); i++)
        for (int j = 0; j < CHAIN_MAX; j++) {
            dnnl_primitive_destroy(t->shapes[i].prim[j]);
            dnnl_memory_destroy(t->shapes[i].src[j]);
            dnnl_memory_destroy(t->shapes[i].dst[j]);
        }
    for (int i = 0; i < REFS; i++)
        free(t->refs[i].out);
    free(t->in);
    free(t->row);
    free(t);
}

#endif /* FG_HAVE_DNNL; without it, dnnl_none.c */
