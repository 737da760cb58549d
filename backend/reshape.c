/* darknet's [route] and [upsample] on the OpenMP team (reshape.h). */
#include "reshape.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int be_reshape_fits(const network *net, const layer *l)
{
    if (l->batch != 1 || l->output == NULL)
        return 0;
    if (l->type == UPSAMPLE)
        return !l->reverse && l->stride >= 1 && l->out_w == l->w * l->stride &&
               l->out_h == l->h * l->stride && l->out_c == l->c &&
               l->outputs == l->out_c * l->out_h * l->out_w;
    if (l->type != ROUTE || l->n < 1)
        return 0;
    long sum = 0;
    for (int i = 0; i < l->n; i++) {
        int k = l->input_layers[i];
        if (k < 0 || k >= net->n || net->layers[k].outputs != l->input_sizes[i] ||
            net->layers[k].batch != 1)
            return 0;
        sum += l->input_sizes[i];
    }
    return sum == l->outputs;
}

/* Each part's floats [a, b) of thread id's even share: pieces of about equal size, in order,
 * so the copies go on in long runs. */
static void route(const network *net, const layer *l, int id, int nt)
{
    size_t total = (size_t)l->outputs, lo = total * id / nt, hi = total * (id + 1) / nt;
    size_t at = 0;
    for (int i = 0; i < l->n && at < hi; i++) {
        size_t n = (size_t)l->input_sizes[i], a = lo > at ? lo - at : 0,
               b = hi - at < n ? hi - at : n;
        if (a < b)
            memcpy(l->output + at + a, net->layers[l->input_layers[i]].output + a,
                   (b - a) * sizeof(float));
        at += n;
    }
}

/* darknet's upsample_cpu, forward: out[k][j][i] = scale * in[k][j / s][i / s], row by row. */
static void upsample_row(const layer *l, const float *input, int row)
{
    const int s = l->stride, w = l->w, ow = l->out_w;
    const int k = row / l->out_h, j = row % l->out_h;
    const float *in = input + ((size_t)k * l->h + j / s) * w;
    float *out = l->output + (size_t)row * ow;
    const float scale = l->scale;
    if (s == 2) {
        for (int i = 0; i < w; i++)
            out[2 * i] = out[2 * i + 1] = scale * in[i];
        return;
    }
    for (int i = 0; i < ow; i++)
        out[i] = scale * in[i / s];
}

void be_reshape_forward(const network *net, const layer *l, const float *input, int threads)
{
    if (threads < 1)
        threads = 1;
    if (l->type == ROUTE) {
#pragma omp parallel num_threads(threads) if (threads > 1)
        {
#ifdef _OPENMP
            route(net, l, omp_get_thread_num(), omp_get_num_threads());
#else
            route(net, l, 0, 1);
#endif
        }
        return;
    }
    const int rows = l->out_c * l->out_h;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int r = 0; r < rows; r++)
        upsample_row(l, input, r);
}
