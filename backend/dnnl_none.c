/* What needs no oneDNN: the precision names, and, in a build without oneDNN (no
 * libdnnl-dev), the be_dnnl API refusing (be_dnnl_create answers PROTO_EINVAL and says why),
 * so the backend keeps the BLAS engine. The engine itself is dnnl.c. */
#include "dnnl.h"

#include <stdio.h>
#include <string.h>

#include "err.h"

int be_precision_parse(const char *s)
{
    if (s != NULL && strcmp(s, "fp32") == 0)
        return BE_PRECISION_FP32;
    if (s != NULL && strcmp(s, "bf16") == 0)
        return BE_PRECISION_BF16;
    return -1;
}

const char *be_precision_name(be_precision_t p)
{
    return p == BE_PRECISION_BF16 ? "bf16" : "fp32";
}

#ifndef FG_HAVE_DNNL
int be_dnnl_available(void)
{
    return 0;
}

void be_dnnl_omp_env(int threads, char **argv)
{
    (void)threads, (void)argv;
}

int be_dnnl_create(be_dnnl_t **out, network *net, int threads, int all_outputs, char *why,
                   size_t whycap)
{
    (void)out, (void)net, (void)threads, (void)all_outputs;
    if (why != NULL && whycap > 0)
        snprintf(why, whycap, "this build has no oneDNN (libdnnl-dev)");
    return PROTO_EINVAL;
}

int be_dnnl_create_precision(be_dnnl_t **out, network *net, int threads, int all_outputs,
                             be_precision_t precision, char *why, size_t whycap)
{
    (void)precision;
    return be_dnnl_create(out, net, threads, all_outputs, why, whycap);
}

void be_dnnl_refuse_bf16(int on)
{
    (void)on;
}

void be_dnnl_refuse_winograd(int on)
{
    (void)on;
}

int be_dnnl_own_loops_default(void)
{
    return 0;
}

void be_dnnl_own_pool(int mode)
{
    (void)mode;
}

int be_dnnl_own_pool_layers(const be_dnnl_t *d)
{
    (void)d;
    return 0;
}

void be_dnnl_convpool(int mode)
{
    (void)mode;
}

int be_dnnl_convpool_layers(const be_dnnl_t *d)
{
    (void)d;
    return 0;
}

int be_dnnl_reshape_layers(const be_dnnl_t *d)
{
    (void)d;
    return 0;
}

void be_dnnl_refuse_tail(int on)
{
    (void)on;
}

int be_dnnl_tail_rows(const be_dnnl_t *d)
{
    (void)d;
    return 0;
}

int be_dnnl_tail_layers(const be_dnnl_t *d)
{
    (void)d;
    return 0;
}

int be_dnnl_winograd_layers(const be_dnnl_t *d)
{
    (void)d;
    return 0;
}

int be_dnnl_winograd_supported(void)
{
    return 0;
}

int be_dnnl_bf16_supported(void)
{
    return 0;
}

be_precision_t be_dnnl_precision(const be_dnnl_t *d)
{
    (void)d;
    return BE_PRECISION_FP32;
}

float *be_dnnl_predict_stop(be_dnnl_t *d, const float *input, be_fast_stop_cb stop, void *arg)
{
    (void)d, (void)input, (void)stop, (void)arg;
    return NULL;
}

int be_dnnl_layers(const be_dnnl_t *d)
{
    (void)d;
    return 0;
}

void be_dnnl_destroy(be_dnnl_t *d)
{
    (void)d;
}

#endif
