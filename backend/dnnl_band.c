/* A convolution and its 2x2 max-pool band by band (dnnl_band.h). Each band copies the input
 * rows it needs (its rows plus the kernel's halo; zero rows where the convolution pads above
 * or below the image) into a small buffer of the same layout, runs a convolution primitive
 * built for that height (the same weights, bias, post-ops and kernel; padding left and right
 * only), and pools its output into the pool's whole output. A band's window rows never cross
 * into the next band: bands start at even rows and the window is 2 rows from an even row.
 * Exact: every output value is computed by the same kernel from the same inputs as the
 * unbanded convolution (tests/unit/test_be_dnnl.c holds the output to darknet's). */
#ifdef FG_HAVE_DNNL
#include "dnnl_band.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "err.h"

typedef struct {
    dnnl_stream_t st;
    float *src, *dst;      /* one band's input rows, its convolution output */
    void *scratch;         /* the primitive's scratchpad (user mode: one per thread) */
    dnnl_memory_t m[2][3]; /* per primitive (full band, last band): src, dst, scratchpad */
} lane_t;

struct be_band {
    int threads, rows, nbands; /* output rows per band (even); bands per pass */
    int last_out;              /* pooled rows of the last band */
    int ih, kh, pad_t;         /* convolution input rows, kernel rows, padding above */
    int in_outer, out_outer;   /* channel blocks of the input, of the output */
    size_t in_row, out_row;    /* floats per row of one block */
    dnnl_format_tag_t in_tag, out_tag; /* the whole convolution's layouts */
    be_maxpool_t pool;         /* the pool of the whole output */
    dnnl_primitive_t prim[2];  /* full band; last band when it is shorter (else NULL) */
    int prim_rows[2];
    lane_t *lane;
};

int be_band_rows(size_t row_bytes)
{
    size_t r = row_bytes > 0 ? BE_BAND_BYTES / row_bytes : 2;
    r &= ~(size_t)1;
    return r < 2 ? 2 : r > 1 << 20 ? 1 << 20 : (int)r;
}

/* The layout of a 4-d f32 tensor: its tag and channels per block (1: NCHW, 8 or 16: oneDNN's
 * channel blocks, C: NHWC); 0 for any other layout. */
static int block_of(const dnnl_memory_desc_t *md, dnnl_format_tag_t *tag)
{
    static const struct {
        dnnl_format_tag_t tag;
        int blk;
    } tags[] = {{dnnl_nchw, 1}, {dnnl_aBcd8b, 8}, {dnnl_aBcd16b, 16}, {dnnl_nhwc, -1}};
    if (md->ndims != 4 || md->data_type != dnnl_f32)
        return 0;
    for (size_t k = 0; k < sizeof tags / sizeof tags[0]; k++) {
        dnnl_memory_desc_t t;
        if (dnnl_memory_desc_init_by_tag(&t, 4, md->dims, dnnl_f32, tags[k].tag) == dnnl_success &&
            dnnl_memory_desc_equal(&t, md)) {
            *tag = tags[k].tag;
            return tags[k].blk > 0 ? tags[k].blk : (int)md->dims[1];
        }
    }
    return 0;
}

/* The convolution of a band of `n` output rows: the whole one's descriptors with the height
 * changed and no padding above or below (the band's rows carry it). */
static int band_prim(be_band_t *b, lane_t *lanes, int v, dnnl_engine_t eng,
                     const_dnnl_primitive_desc_t whole, const dnnl_convolution_desc_t *cd, int n,
                     size_t *scratch)
{
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(whole, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(whole, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *bmd = dnnl_primitive_desc_query_md(whole, dnnl_query_weights_md, 1);
    const dnnl_memory_desc_t *dmd = dnnl_primitive_desc_query_md(whole, dnnl_query_dst_md, 0);
    dnnl_dims_t sd = {1, smd->dims[1], n + b->kh - 1, smd->dims[3]};
    dnnl_dims_t dd = {1, dmd->dims[1], n, dmd->dims[3]};
    dnnl_dims_t str = {1, 1}, pl = {0, cd->padding[0][1]}, pr = {0, cd->padding[1][1]};
    dnnl_memory_desc_t s, d;
    dnnl_convolution_desc_t desc;
    const_dnnl_primitive_attr_t wa = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int rv = PROTO_EINVAL;
    if (dnnl_memory_desc_init_by_tag(&s, 4, sd, dnnl_f32, b->in_tag) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&d, 4, dd, dnnl_f32, b->out_tag) != dnnl_success ||
        dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct,
                                           &s, wmd, bmd, &d, str, pl, pr) != dnnl_success ||
        dnnl_primitive_desc_get_attr(whole, &wa) != dnnl_success ||
        dnnl_primitive_attr_clone(&attr, wa) != dnnl_success ||
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) !=
            dnnl_success ||
        dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL) != dnnl_success)
        goto out;
    /* the layouts asked for, not others oneDNN would reorder to */
    if (!dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), &s) ||
        !dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), &d) ||
        !dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), wmd))
        goto out;
    const dnnl_memory_desc_t *spmd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t sp = spmd != NULL ? dnnl_memory_desc_get_size(spmd) : 0;
    if (sp > *scratch)
        *scratch = sp;
    if (dnnl_primitive_create(&b->prim[v], pd) != dnnl_success)
        goto out;
    b->prim_rows[v] = n;
    /* the lanes' memories over buffers allocated later (their handles are set then) */
    for (int t = 0; t < b->threads; t++) {
        if (dnnl_memory_create(&lanes[t].m[v][0], &s, eng, DNNL_MEMORY_NONE) != dnnl_success ||
            dnnl_memory_create(&lanes[t].m[v][1], &d, eng, DNNL_MEMORY_NONE) != dnnl_success ||
            (sp > 0 &&
             dnnl_memory_create(&lanes[t].m[v][2], spmd, eng, DNNL_MEMORY_NONE) != dnnl_success)) {
            rv = PROTO_ENOMEM;
            goto out;
        }
    }
    rv = 0;
out:
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    return rv;
}

/* The band geometry from the whole convolution and pool; PROTO_EINVAL for any shape this does
 * not take. */
static int plan(be_band_t *b, const_dnnl_primitive_desc_t whole, const dnnl_convolution_desc_t *cd,
                const be_maxpool_t *pool, int rows)
{
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(whole, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(whole, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *dmd = dnnl_primitive_desc_query_md(whole, dnnl_query_dst_md, 0);
    if (cd->prop_kind != dnnl_forward_inference || cd->alg_kind != dnnl_convolution_direct ||
        smd == NULL || wmd == NULL || dmd == NULL || smd->ndims != 4 || dmd->ndims != 4 ||
        wmd->ndims < 4 || cd->strides[0] != 1 || cd->strides[1] != 1 || cd->dilates[0] != 0 ||
        cd->dilates[1] != 0 || wmd->data_type != dnnl_f32)
        return PROTO_EINVAL;
    int in_blk = block_of(smd, &b->in_tag), out_blk = block_of(dmd, &b->out_tag);
    dnnl_dim_t c = smd->dims[1], k = dmd->dims[1], oh = dmd->dims[2], ow = dmd->dims[3];
    b->ih = (int)smd->dims[2];
    b->kh = (int)wmd->dims[wmd->ndims - 2];
    b->pad_t = (int)cd->padding[0][0];
    if (in_blk == 0 || out_blk != pool->blk || pool->c != k ||
        pool->h != oh || pool->w != ow || pool->size != 2 || pool->stride != 2 ||
        pool->pad / 2 != 0 || b->kh < 1 || b->pad_t < 0 ||
        oh != b->ih + b->pad_t + cd->padding[1][0] - b->kh + 1 || oh > 1 << 20)
        return PROTO_EINVAL;
    b->in_outer = (int)((c + in_blk - 1) / in_blk);
    b->in_row = (size_t)smd->dims[3] * in_blk;
    b->out_outer = (int)((k + out_blk - 1) / out_blk);
    b->out_row = (size_t)ow * out_blk;
    b->rows = rows > 0 ? rows + (rows & 1) : be_band_rows((size_t)ow * k * sizeof(float));
    if (b->rows >= oh)
        return PROTO_EINVAL; /* one band: nothing to gain */
    b->nbands = (int)((oh + b->rows - 1) / b->rows);
    b->last_out = pool->out_h - (b->nbands - 1) * (b->rows / 2);
    b->pool = *pool;
    /* each band's pool must fit on its own rows */
    be_maxpool_t full = *pool, last = *pool;
    full.c = last.c = out_blk;
    full.h = b->rows;
    full.out_h = b->rows / 2;
    last.h = (int)oh - (b->nbands - 1) * b->rows;
    last.out_h = b->last_out;
    return be_maxpool_fits(&full) && be_maxpool_fits(&last) ? 0 : PROTO_EINVAL;
}

int be_band_create(be_band_t **out, dnnl_engine_t eng, dnnl_primitive_t conv,
                   const be_maxpool_t *pool, int threads, int rows)
{
    const_dnnl_primitive_desc_t whole = NULL;
    const dnnl_convolution_desc_t *cd = NULL;
    if (dnnl_primitive_get_primitive_desc(conv, &whole) != dnnl_success ||
        dnnl_primitive_desc_query(whole, dnnl_query_convolution_d, 0, &cd) != dnnl_success ||
        cd == NULL)
        return PROTO_EINVAL;
    be_band_t *b = calloc(1, sizeof *b);
    if (b == NULL)
        return PROTO_ENOMEM;
    b->threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    int rv = plan(b, whole, cd, pool, rows);
    if (rv == 0 && (b->lane = calloc((size_t)b->threads, sizeof *b->lane)) == NULL)
        rv = PROTO_ENOMEM;
    int oh = b->nbands > 0 ? (b->nbands - 1) * b->rows : 0;
    int last = pool->h - oh;
    size_t scratch = 0;
    if (rv == 0)
        rv = band_prim(b, b->lane, 0, eng, whole, cd, b->rows, &scratch);
    if (rv == 0 && last != b->rows)
        rv = band_prim(b, b->lane, 1, eng, whole, cd, last, &scratch);
    size_t in_bytes = (size_t)b->in_outer * (b->rows + b->kh - 1) * b->in_row * sizeof(float);
    size_t out_bytes = (size_t)b->out_outer * b->rows * b->out_row * sizeof(float);
    for (int t = 0; rv == 0 && t < b->threads; t++) {
        lane_t *l = &b->lane[t];
        if ((l->src = malloc(in_bytes)) == NULL || (l->dst = malloc(out_bytes)) == NULL ||
            (scratch > 0 && (l->scratch = malloc(scratch)) == NULL)) {
            rv = PROTO_ENOMEM;
            break;
        }
        if (dnnl_stream_create(&l->st, eng, dnnl_stream_default_flags) != dnnl_success) {
            rv = PROTO_EINVAL;
            break;
        }
        for (int v = 0; v < 2; v++)
            for (int m = 0; m < 3; m++)
                if (l->m[v][m] != NULL)
                    dnnl_memory_set_data_handle(l->m[v][m], m == 0   ? (void *)l->src
                                                            : m == 1 ? (void *)l->dst
                                                                     : l->scratch);
    }
    if (rv != 0) {
        be_band_destroy(b);
        return rv;
    }
    *out = b;
    return 0;
}

/* The band's input rows [y0, y0 + n) of every channel block, zeros outside the image. */
static void fill_rows(const be_band_t *b, const float *src, float *dst, int y0, int n)
{
    size_t row = b->in_row;
    int lo = y0 < 0 ? -y0 : 0, hi = y0 + n > b->ih ? b->ih - y0 : n;
    if (lo > n)
        lo = n;
    if (hi < lo)
        hi = lo;
    for (int o = 0; o < b->in_outer; o++) {
        float *d = dst + (size_t)o * n * row;
        memset(d, 0, (size_t)lo * row * sizeof(float));
        memcpy(d + (size_t)lo * row, src + ((size_t)o * b->ih + y0 + lo) * row,
               (size_t)(hi - lo) * row * sizeof(float));
        memset(d + (size_t)hi * row, 0, (size_t)(n - hi) * row * sizeof(float));
    }
}

static int band_one(const be_band_t *b, int t, int j, const float *in, dnnl_memory_t wei,
                    dnnl_memory_t bias, float *out)
{
    const lane_t *l = &b->lane[t];
    int last = j == b->nbands - 1, v = last && b->prim[1] != NULL;
    int n = b->prim_rows[v], r0 = j * b->rows;
    fill_rows(b, in, l->src, r0 - b->pad_t, n + b->kh - 1);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, l->m[v][0]},
                               {DNNL_ARG_WEIGHTS, wei},
                               {DNNL_ARG_BIAS, bias},
                               {DNNL_ARG_DST, l->m[v][1]},
                               {DNNL_ARG_SCRATCHPAD, l->m[v][2]}};
    if (dnnl_primitive_execute(b->prim[v], l->st, l->m[v][2] != NULL ? 5 : 4, args) !=
        dnnl_success)
        return 1;
    dnnl_stream_wait(l->st);
    be_maxpool_t p = b->pool;
    int blk = p.blk;
    p.c = blk;
    p.h = n;
    p.out_h = last ? b->last_out : n / 2;
    for (int cb = 0; cb < b->out_outer; cb++)
        be_maxpool_blocked(&p, l->dst + (size_t)cb * n * b->out_row,
                           out + ((size_t)cb * b->pool.out_h + r0 / 2) * b->pool.out_w * blk, 1);
    return 0;
}

int be_band_run(be_band_t *b, dnnl_memory_t src, dnnl_memory_t weights, dnnl_memory_t bias,
                dnnl_memory_t out)
{
    void *in = NULL, *o = NULL;
    dnnl_memory_get_data_handle(src, &in);
    dnnl_memory_get_data_handle(out, &o);
    int err = 0;
    /* Inside the team oneDNN runs each primitive on the calling thread alone (nested). */
#pragma omp parallel for num_threads(b->threads) schedule(static) reduction(| : err) \
    if (b->threads > 1)
    for (int j = 0; j < b->nbands; j++) {
#ifdef _OPENMP
        int t = omp_get_thread_num();
#else
        int t = 0;
#endif
        err |= band_one(b, t, j, in, weights, bias, o);
    }
    return err ? PROTO_EINVAL : 0;
}

int be_band_count(const be_band_t *b)
{
    return b->nbands;
}

void be_band_destroy(be_band_t *b)
{
    if (b == NULL)
        return;
    for (int t = 0; b->lane != NULL && t < b->threads; t++) {
        lane_t *l = &b->lane[t];
        for (int v = 0; v < 2; v++)
            for (int m = 0; m < 3; m++)
                if (l->m[v][m] != NULL)
                    dnnl_memory_destroy(l->m[v][m]);
        if (l->st != NULL)
            dnnl_stream_destroy(l->st);
        free(l->src);
        free(l->dst);
        free(l->scratch);
    }
    for (int v = 0; v < 2; v++)
        if (b->prim[v] != NULL)
            dnnl_primitive_destroy(b->prim[v]);
    free(b->lane);
    free(b);
}

#endif /* FG_HAVE_DNNL */
