/* The network input from decoded pixels: darknet's letterbox (and its size) and face-api's
 * padded square resize, both into planar floats, and face-api's box mapping back to the
 * image. Functions on caller-owned buffers (a small scratch malloc per call); they run on the
 * backend's one serving thread, and with threads > 1 spread their output rows over that
 * thread's OpenMP team (the one oneDNN's kernels use, so the threads are already there and
 * are awake when the network starts). Each output row is computed by the same arithmetic
 * whichever thread runs it: the pixels do not depend on the thread count. Decoding and
 * annotating are in image.c. Built with -fvect-cost-model=dynamic and -fopenmp
 * (backend/CMakeLists.txt): the row blends are written to be vectorised. */
#include "image.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* The thread count a pass uses: 1 without OpenMP, never more than there are rows. */
static int team_size(int threads, int rows)
{
#ifdef _OPENMP
    int nt = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    return nt < rows ? nt : rows > 0 ? rows : 1;
#else
    (void)threads, (void)rows;
    return 1;
#endif
}

static int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Column taps up to this width live on the stack: no allocation per frame. */
#define TAPS_STACK 4096
void be_image_letterbox_size(int w, int h, int net_w, int net_h, int *nw, int *nh)
{
    /* The same integer arithmetic as darknet's letterbox_image and correct_yolo_boxes, so
     * the boxes darknet un-letterboxes land where the pixels were put. */
    if ((float)net_w / w < (float)net_h / h) {
        *nw = net_w;
        *nh = (h * net_w) / w;
    } else {
        *nh = net_h;
        *nw = (w * net_h) / h;
    }
    if (*nw < 1)
        *nw = 1;
    if (*nh < 1)
        *nh = 1;
}

/* Fills the parts of the network input the resized image does not cover with `v`. */
static void fill_border(float *input, int net_w, int net_h, int ox, int oy, int nw, int nh, float v)
{
    size_t plane = (size_t)net_w * net_h;
    for (int c = 0; c < 3; c++) {
        float *p = input + c * plane;
        for (int y = 0; y < net_h; y++) {
            float *row = p + (size_t)y * net_w;
            if (y < oy || y >= oy + nh) {
                for (int x = 0; x < net_w; x++)
                    row[x] = v;
                continue;
            }
            for (int x = 0; x < ox; x++)
                row[x] = v;
            for (int x = ox + nw; x < net_w; x++)
                row[x] = v;
        }
    }
}

/* Blends two source rows (packed RGB bytes, n values) into one float row: contiguous, so
 * the compiler vectorises it. */
static void vblend(const uint8_t *restrict p, const uint8_t *restrict q, float w0, float w1,
                   size_t n, float *restrict out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = w0 * p[i] + w1 * q[i];
}

void be_image_letterbox_rgb(const uint8_t *rgb, int w, int h, int net_w, int net_h, float *input,
                            int threads)
{
    int nw, nh;
    be_image_letterbox_size(w, h, net_w, net_h, &nw, &nh);
    if (nw > net_w)
        nw = net_w;
    if (nh > net_h)
        nh = net_h;
    int ox = (net_w - nw) / 2, oy = (net_h - nh) / 2;
    fill_border(input, net_w, net_h, ox, oy, nw, nh, 0.5f);

    /* Scratch: two tap tables, the fractions, and one blended source row per thread. */
    size_t n = (size_t)nw, row = (size_t)w * 3;
    int nt = team_size(threads, nh);
    void *mem = malloc(n * (2 * sizeof(int) + sizeof(float)) + (size_t)nt * row * sizeof(float));
    if (mem == NULL) {
        fill_border(input, net_w, net_h, 0, 0, 0, 0, 0.5f);
        return; /* grey frame: detects nothing, never crashes */
    }
    int *x0 = mem, *x1 = x0 + n;
    float *fx = (float *)(x1 + n), *vs = fx + n;
    /* darknet's resize_image is bilinear and maps corners to corners: src = dst * (w - 1) /
     * (nw - 1), the last column/row taking the last source pixel. Bilinear is separable:
     * blending the two source rows first (contiguous bytes, vectorised) and then sampling
     * that row horizontally gives the same values up to float rounding (~1e-7), and the
     * gather, which does not vectorise, runs once per output pixel only. */
    float ws = nw > 1 ? (float)(w - 1) / (nw - 1) : 0;
    float hs = nh > 1 ? (float)(h - 1) / (nh - 1) : 0;
    for (int x = 0; x < nw; x++) {
        float sx = x * ws;
        int ix = (int)sx;
        float dx = sx - ix;
        if (x == nw - 1 || ix >= w - 1) {
            ix = w - 1;
            dx = 0;
        }
        x0[x] = ix * 3;
        x1[x] = (ix + 1 < w ? ix + 1 : ix) * 3;
        fx[x] = dx;
    }
    const float k = 1.0f / 255.0f;
    const size_t plane = (size_t)net_w * net_h;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        float *v = vs + (size_t)thread_id() * row;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int y = 0; y < nh; y++) {
            float sy = y * hs;
            int iy = (int)sy;
            float dy = sy - iy;
            float w1 = dy;
            if (iy >= h - 1) {
                iy = h - 1;
                dy = w1 = 0;
            }
            /* darknet's last row takes (1 - dy) of row iy and nothing of the next: when
             * (nh - 1) * hs rounds to just below h - 1 (scream.jpg: 447.99997), that row comes out
             * almost black. The network was fed that by stock darknet, so it is kept. */
            if (y == nh - 1)
                w1 = 0;
            const uint8_t *r0 = rgb + (size_t)iy * row;
            const uint8_t *r1 = iy + 1 < h ? r0 + row : r0;
            vblend(r0, r1, (1 - dy) * k, w1 * k, row, v);
            float *outr = input + (size_t)(y + oy) * net_w + ox;
            float *outg = outr + plane, *outb = outg + plane;
            for (int x = 0; x < nw; x++) {
                const float *p = v + x0[x], *q = v + x1[x];
                float a = fx[x], na = 1 - a;
                outr[x] = na * p[0] + a * q[0];
                outg[x] = na * p[1] + a * q[1];
                outb[x] = na * p[2] + a * q[2];
            }
        }
    }
    free(mem);
}

/* face-api (NetInput.toBatchTensor with isCenterInputs false, then the TinyYolov2 input
 * normalisation) in node: the image is padded with zeros at the bottom/right to a square of
 * side S = max(w, h), and that square is resized to the network's size with tf's
 * resizeBilinear(alignCorners = false, halfPixelCenters = false): src = dst * S / n, taps
 * floor and min(ceil, S - 1). Taps and fractions are computed in double as JavaScript does;
 * the blend is separable (two source rows blended first, vectorised, then one gather per
 * output pixel), equal to tf's across-then-down order up to float rounding (~1e-6).
 * Values are pixel / 255: the converter folded face-api's mean into the first layer. */
void be_image_faceapi_rgb(const uint8_t *rgb, int w, int h, int net_w, int net_h, float *input,
                          int threads)
{
    int side = w > h ? w : h;
    size_t plane = (size_t)net_w * net_h, row = (size_t)w * 3;
    int nt = team_size(threads, net_h);
    /* x taps (byte offsets into a blended row), fractions, and a blended row per thread; a
     * row reaches one pixel past the image, always 0: the padding. */
    void *mem = malloc(sizeof(int) * 2 * (size_t)net_w + sizeof(float) * (size_t)net_w +
                       sizeof(float) * (row + 3) * (size_t)nt);
    if (mem == NULL) {
        for (size_t i = 0; i < plane * 3; i++)
            input[i] = 0;
        return; /* black frame: detects nothing, never crashes */
    }
    int *cx = mem;
    float *fx = (float *)(cx + 2 * net_w), *vs = fx + net_w;
    for (int t = 0; t < nt; t++)
        vs[t * (row + 3) + row] = vs[t * (row + 3) + row + 1] = vs[t * (row + 3) + row + 2] = 0;
    double xs = (double)side / net_w, ys = (double)side / net_h;
    /* the rows from `img` down lie wholly in the bottom padding: zeros, shared out apart from
     * the image's rows (in one loop, a 4:3 frame left the first thread twice the work) */
    int img = 0;
    while (img < net_h && (int)floor(ys * img) < h)
        img++;
    for (int x = 0; x < net_w; x++) {
        double sx = xs * x;
        int x0 = (int)floor(sx), x1 = (int)ceil(sx);
        x0 = x0 < side - 1 ? x0 : side - 1;
        x1 = x1 < side - 1 ? x1 : side - 1;
        cx[2 * x] = (x0 < w ? x0 : w) * 3; /* w: the zero pixel */
        cx[2 * x + 1] = (x1 < w ? x1 : w) * 3;
        fx[x] = (float)(sx - floor(sx));
    }
    const float k = 1.0f / 255.0f;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        float *v = vs + (size_t)thread_id() * (row + 3);
#ifdef _OPENMP
#pragma omp for schedule(static) nowait
#endif
        for (int y = img; y < net_h; y++)
            for (int c = 0; c < 3; c++)
                memset(input + c * plane + (size_t)y * net_w, 0, (size_t)net_w * sizeof(float));
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int y = 0; y < img; y++) {
            double sy = ys * y;
            int y0 = (int)floor(sy), y1 = (int)ceil(sy);
            y0 = y0 < side - 1 ? y0 : side - 1;
            y1 = y1 < side - 1 ? y1 : side - 1;
            float fy = (float)(sy - floor(sy));
            float *outr = input + (size_t)y * net_w, *outg = outr + plane, *outb = outg + plane;
            /* A row below the image is padding: its weight goes to zeros. */
            const uint8_t *r0 = rgb + (size_t)y0 * row;
            const uint8_t *r1 = y1 < h ? rgb + (size_t)y1 * row : r0;
            vblend(r0, r1, (1 - fy) * k, y1 < h ? fy * k : 0, row, v);
            for (int x = 0; x < net_w; x++) {
                const float *p = v + cx[2 * x], *q = v + cx[2 * x + 1];
                float a = fx[x], na = 1 - a;
                outr[x] = na * p[0] + a * q[0];
                outg[x] = na * p[1] + a * q[1];
                outb[x] = na * p[2] + a * q[2];
            }
        }
    }
    free(mem);
}

void be_image_faceapi_unmap(int w, int h, int net_w, int net_h, float *x, float *y, float *bw,
                            float *bh)
{
    /* face-api's computeReshapedDimensions and extractBoxes' correction factors: boxes are
     * relative to the resized image inside the square, then scaled by the image size. */
    double sx = (double)net_w / (w > h ? w : h), sy = (double)net_h / (w > h ? w : h);
    double rw = round(w * sx), rh = round(h * sy);
    double kx = net_w / (rw > 0 ? rw : 1) * w, ky = net_h / (rh > 0 ? rh : 1) * h;
    float cx = *x, cy = *y;
    *x = (float)((cx - *bw / 2) * kx);
    *y = (float)((cy - *bh / 2) * ky);
    *bw = (float)(*bw * kx);
    *bh = (float)(*bh * ky);
}
