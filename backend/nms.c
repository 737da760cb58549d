/* darknet's do_nms_sort at a fraction of its cost (nms.h): a stable sort per class of the
 * boxes that have it, and each candidate compared only with the kept boxes that could
 * overlap it. Called by be_model_detect on the serving thread. Built with
 * -fvect-cost-model=dynamic: the scan over the kept boxes is written to be vectorised. */
#include "nms.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

typedef struct {
    float p;  /* the class's probability */
    int rank; /* position in the order the previous class's sort left */
    int idx;  /* detection index */
} nms_key_t;

static int by_prob_then_rank(const void *a, const void *b)
{
    const nms_key_t *x = a, *y = b;
    if (x->p != y->p)
        return x->p < y->p ? 1 : -1;
    return x->rank - y->rank;
}

/* From this many keys on, a class is sorted by radix_keys rather than qsort (which calls the
 * comparator ~n log n times). yolov3-tiny's noise weights, dog.jpg, 0.25: 1886 boxes, ~570
 * keys per class, the sort was a quarter of be_nms's time. */
#define NMS_RADIX_MIN 64

/* keys[0..n) put in by_prob_then_rank's order, given that they come in rank order: a stable
 * LSD radix sort (8 bits a pass, a pass skipped where all keys share the digit) on the
 * probability's bits, complemented, as a positive finite float's bits order as the float
 * does. tmp: room for n keys. Returns 0 (keys untouched) when a probability is not positive
 * and finite (NaN: the comparator's own order, by qsort). No state of its own. */
static int radix_keys(nms_key_t *keys, nms_key_t *tmp, int n)
{
    for (int i = 0; i < n; i++)
        if (!(keys[i].p > 0 && keys[i].p <= FLT_MAX))
            return 0;
    nms_key_t *src = keys, *dst = tmp;
    for (int shift = 0; shift < 32; shift += 8) {
        int count[257] = {0};
        for (int i = 0; i < n; i++) {
            uint32_t b;
            memcpy(&b, &src[i].p, sizeof b);
            count[((~b >> shift) & 255) + 1]++;
        }
        int same = 0;
        for (int d = 1; d <= 256 && !same; d++)
            same = count[d] == n;
        if (same)
            continue;
        for (int d = 0; d < 256; d++)
            count[d + 1] += count[d];
        for (int i = 0; i < n; i++) {
            uint32_t b;
            memcpy(&b, &src[i].p, sizeof b);
            dst[count[(~b >> shift) & 255]++] = src[i];
        }
        nms_key_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != keys)
        memcpy(keys, src, (size_t)n * sizeof *keys);
    return 1;
}

/* The grid that finds a candidate's possible overlaps among the boxes kept so far: NMS_GRID
 * cells a side over the image (relative coordinates 0..1; boxes past the edge go to the edge
 * cells). A kept box is listed in every cell its extent touches, unless that is more than
 * NMS_SPREAD cells (a large box) or its extent is not finite: those go to the size lists. */
#define NMS_GRID 16
#define NMS_SPREAD 16
/* The large boxes are listed by size (width and height each in one of NMS_SIZES doubling
 * ranges): IoU <= min(w) / max(w) and <= min(h) / max(h), so a candidate only looks at the
 * sizes within a factor 1 / thresh of its own. Non-finite sizes go to a last list. */
#define NMS_SIZES 6

/* Which of the NMS_SIZES ranges (< 1/4, < 1/2, < 1, < 2, < 4, the rest) v falls in. */
static int size_bucket(float v)
{
    int b = 0;
    for (float e = 0.25f; b < NMS_SIZES - 1 && !(v < e); e *= 2)
        b++;
    return b;
}

typedef struct {
    int kept; /* index into the kept array */
    int next; /* next node of the same cell, -1 at the end */
} nms_node_t;

/* The cell span [*c0, *c1] of the interval [lo, hi] (darknet's own float arithmetic for the
 * box edges, so an overlap darknet sees is never missed); 0 when the span is not finite. */
static int cell_span(float lo, float hi, int *c0, int *c1)
{
    if (!isfinite(lo) || !isfinite(hi))
        return 0;
    float a = lo * NMS_GRID, b = hi * NMS_GRID;
    *c0 = a < 0 ? 0 : a >= NMS_GRID - 1 ? NMS_GRID - 1 : (int)a;
    *c1 = b < 0 ? 0 : b >= NMS_GRID - 1 ? NMS_GRID - 1 : (int)b;
    return 1;
}

/* A box's edges and area, for the cheap test before darknet's box_iou. */
typedef struct {
    float l, r, t, b, area;
} nms_geom_t;

/* The kept boxes' edges and areas, one array each (n floats), so that a candidate is tested
 * against all of them in one vectorised pass. */
typedef struct {
    float *l, *r, *t, *b, *area;
} nms_kept_t;

/* Up to this many kept boxes a candidate is tested against every one of them (a vectorised
 * pass over nms_kept_t, then box_iou for those the test leaves); beyond, only against the
 * grid's (quadratic otherwise). yolov3-tiny's noise weights, dog.jpg: at 0.5 (500 boxes, 80
 * classes, ~20 kept per class) NMS 1.53 -> 0.78 ms, at 0.25 (1900 boxes, ~300 kept per class,
 * so both ways run) 27 -> 17 ms; 64..512 made no difference beyond noise. */
#define NMS_LINEAR_MAX 128

/* 1 when box_iou(k, c) > thresh cannot hold, from the edges alone: no overlap (darknet's
 * box_intersection is then 0), or an intersection below thresh * the larger area (IoU = I /
 * (A + B - I) <= I / max(A, B)), with a 1e-4 margin for float rounding. Tiny areas (where
 * float rounding is not relative any more) are left to box_iou. Pure function. */
static inline int cannot_suppress(const nms_geom_t *k, const nms_geom_t *c, float thresh)
{
    float ix = (k->r < c->r ? k->r : c->r) - (k->l > c->l ? k->l : c->l);
    float iy = (k->b < c->b ? k->b : c->b) - (k->t > c->t ? k->t : c->t);
    if (!(ix > 0 && iy > 0))
        return ix == ix && iy == iy; /* NaN: box_iou decides */
    float big = k->area > c->area ? k->area : c->area;
    return big > 1e-30f && ix * iy < thresh * big * (1 - 1e-4f);
}

/* Sets need[q] for q < nkept: 1 unless cannot_suppress(kept q, c) (the same expression,
 * written branch-free so that it is vectorised). Pure function. */
static void scan_kept(const nms_kept_t *k, int nkept, const nms_geom_t *c, float thresh,
                      unsigned char *restrict need)
{
    const float *restrict kl = k->l, *restrict kr = k->r, *restrict kt = k->t;
    const float *restrict kb = k->b, *restrict ka = k->area;
    float cl = c->l, cr = c->r, ct = c->t, cb = c->b, car = c->area;
    for (int q = 0; q < nkept; q++) {
        float ix = (kr[q] < cr ? kr[q] : cr) - (kl[q] > cl ? kl[q] : cl);
        float iy = (kb[q] < cb ? kb[q] : cb) - (kt[q] > ct ? kt[q] : ct);
        float big = ka[q] > car ? ka[q] : car;
        /* bitwise, not short-circuit: no branch, so the loop is vectorised */
        int pos = (ix > 0) & (iy > 0), num = (ix == ix) & (iy == iy);
        int small = (big > 1e-30f) & (ix * iy < thresh * big * (1 - 1e-4f));
        need[q] = (unsigned char)(((pos ^ 1) & num) | (pos & small)) ^ 1;
    }
}

/* darknet's box edges, as its overlap() computes them. */
static void box_edges(box b, float *l, float *r, float *t, float *btm)
{
    *l = b.x - b.w / 2;
    *r = b.x + b.w / 2;
    *t = b.y - b.h / 2;
    *btm = b.y + b.h / 2;
}

/* darknet's do_nms_sort, with the same result, boxes and ties included, at a fraction of the
 * cost. darknet drops the boxes without objectness (by swapping them to the end), then per
 * class stable-sorts every remaining box by that class's probability (glibc's qsort is a merge
 * sort) and lets each box that is still standing remove the later ones that overlap it by
 * IoU > thresh. Boxes whose probability is 0 only move, keeping their order, to the back; so
 * the same order comes out of partitioning those off and sorting only the others by
 * (probability, previous position). And a box is removed exactly when some earlier box that
 * was kept overlaps it, so each candidate is compared only with the kept boxes near it (the
 * grid): box_iou is 0 for boxes that do not overlap, and 0 > thresh never holds (thresh > 0).
 * One sort per class (a radix sort, linear, when the class has many boxes) plus the pairs that
 * are close; darknet's version sorts all boxes (by value: 40+ bytes each) 80 times and
 * compares every pair: 16 ms for 500 boxes of yolov3-tiny, ~0.8 s for 2000 noisy ones. */
int be_nms(be_nms_t *s, detection *d, int n, int classes, float thresh)
{
    if (n <= 0)
        return 0;
    /* perm, zero, kept, stamp: n ints each; keys and the radix sort's room; kept geometry
     * (5 floats each); nodes: n * NMS_SPREAD; the scan's flags (n bytes) */
    size_t need = (size_t)n * (4 * sizeof(int) + 2 * sizeof(nms_key_t) + 5 * sizeof(float) +
                               (size_t)NMS_SPREAD * sizeof(nms_node_t) + 1);
    if (need > s->cap) {
        void *p = realloc(s->buf, need);
        if (p == NULL)
            return PROTO_ENOMEM;
        s->buf = p;
        s->cap = need;
    }
    int *perm = s->buf, *zero = perm + n, *kept = zero + n, *stamp = kept + n;
    nms_key_t *keys = (nms_key_t *)(stamp + n), *room = keys + n;
    float *kf = (float *)(room + n);
    nms_kept_t geom = {kf, kf + n, kf + 2 * (size_t)n, kf + 3 * (size_t)n, kf + 4 * (size_t)n};
    nms_node_t *nodes = (nms_node_t *)(kf + 5 * (size_t)n);
    unsigned char *flag = (unsigned char *)(nodes + (size_t)n * NMS_SPREAD);
    int head[NMS_GRID * NMS_GRID], wide[NMS_SIZES * NMS_SIZES + 1];
    for (int i = 0; i < n; i++)
        perm[i] = i;
    int total = n - 1; /* darknet's partition, swap for swap */
    for (int i = 0; i <= total; i++)
        if (d[perm[i]].objectness == 0) {
            int t = perm[i];
            perm[i] = perm[total];
            perm[total] = t;
            total--;
            i--;
        }
    total++;
    for (int k = 0; k < classes; k++) {
        int c = 0, z = 0;
        for (int i = 0; i < total; i++) {
            float p = d[perm[i]].prob[k];
            if (p != 0)
                keys[c++] = (nms_key_t){p, i, perm[i]};
            else
                zero[z++] = perm[i];
        }
        if (c < NMS_RADIX_MIN || !radix_keys(keys, room, c))
            qsort(keys, (size_t)c, sizeof *keys, by_prob_then_rank);
        for (int i = 0; i < c; i++)
            perm[i] = keys[i].idx;
        memcpy(perm + c, zero, (size_t)z * sizeof *perm);
        if (c < 2)
            continue;
        for (int i = 0; i < NMS_GRID * NMS_GRID; i++)
            head[i] = -1;
        for (int i = 0; i <= NMS_SIZES * NMS_SIZES; i++)
            wide[i] = -1;
        int nkept = 0, nnodes = 0;
        for (int i = 0; i < c; i++) {
            /* darknet skips a box an earlier one removed; here a box is removed only at its
             * own turn (below), so none of these is zero yet */
            detection *b = &d[perm[i]];
            nms_geom_t g;
            int x0 = 0, x1 = 0, y0 = 0, y1 = 0;
            box_edges(b->bbox, &g.l, &g.r, &g.t, &g.b);
            g.area = b->bbox.w * b->bbox.h;
            int boxed = cell_span(g.l, g.r, &x0, &x1) && cell_span(g.t, g.b, &y0, &y1);
            int removed = 0;
            float bw = b->bbox.w, bh = b->bbox.h;
            if (nkept <= NMS_LINEAR_MAX) { /* every kept box, the cheap test vectorised */
                scan_kept(&geom, nkept, &g, thresh, flag);
                for (int q = 0; q < nkept && !removed; q++)
                    removed = flag[q] && box_iou(d[kept[q]].bbox, b->bbox) > thresh;
                goto decided;
            }
#define NMS_TRY(q)                                                                                 \
    do {                                                                                           \
        stamp[q] = i;                                                                              \
        nms_geom_t kq = {geom.l[q], geom.r[q], geom.t[q], geom.b[q], geom.area[q]};                \
        removed = !cannot_suppress(&kq, &g, thresh) && box_iou(d[kept[q]].bbox, b->bbox) > thresh; \
    } while (0)
            /* The large boxes of a size that can matter first, then the cells; a kept box is
             * compared at most once. The size range is widened by 1e-3 for float rounding. */
            int sized = isfinite(bw) && isfinite(bh) && bw > 0 && bh > 0;
            int w0 = sized ? size_bucket(bw * thresh * (1 - 1e-3f)) : 0;
            int w1 = sized ? size_bucket(bw / thresh * (1 + 1e-3f)) : NMS_SIZES - 1;
            int h0 = sized ? size_bucket(bh * thresh * (1 - 1e-3f)) : 0;
            int h1 = sized ? size_bucket(bh / thresh * (1 + 1e-3f)) : NMS_SIZES - 1;
            for (int e = wide[NMS_SIZES * NMS_SIZES]; e >= 0 && !removed; e = nodes[e].next)
                NMS_TRY(nodes[e].kept);
            for (int y = h0; y <= h1 && !removed; y++)
                for (int x = w0; x <= w1 && !removed; x++)
                    for (int e = wide[y * NMS_SIZES + x]; e >= 0 && !removed; e = nodes[e].next)
                        NMS_TRY(nodes[e].kept);
            if (!boxed) { /* an extent that is not finite: compared with every kept box */
                for (int q = 0; q < nkept && !removed; q++)
                    if (stamp[q] != i)
                        NMS_TRY(q);
            } else {
                for (int y = y0; y <= y1 && !removed; y++)
                    for (int x = x0; x <= x1 && !removed; x++)
                        for (int e = head[y * NMS_GRID + x]; e >= 0 && !removed; e = nodes[e].next)
                            if (stamp[nodes[e].kept] != i)
                                NMS_TRY(nodes[e].kept);
            }
#undef NMS_TRY
        decided:
            if (removed) {
                b->prob[k] = 0;
                continue;
            }
            /* Kept: listed where later candidates will look for it. */
            int q = nkept++;
            kept[q] = perm[i];
            geom.l[q] = g.l;
            geom.r[q] = g.r;
            geom.t[q] = g.t;
            geom.b[q] = g.b;
            geom.area[q] = g.area;
            stamp[q] = i;
            if (!boxed || (x1 - x0 + 1) * (y1 - y0 + 1) > NMS_SPREAD) {
                int list = isfinite(bw) && isfinite(bh)
                               ? size_bucket(bh) * NMS_SIZES + size_bucket(bw)
                               : NMS_SIZES * NMS_SIZES;
                nodes[nnodes] = (nms_node_t){q, wide[list]};
                wide[list] = nnodes++;
                continue;
            }
            for (int y = y0; y <= y1; y++)
                for (int x = x0; x <= x1; x++) {
                    nodes[nnodes] = (nms_node_t){q, head[y * NMS_GRID + x]};
                    head[y * NMS_GRID + x] = nnodes++;
                }
        }
    }
    return 0;
}

void be_nms_free(be_nms_t *s)
{
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
}
