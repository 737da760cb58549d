/* The oneDNN engine's insides, shared by dnnl.c (building and running the plan) and
 * dnnl_tail.c (its padding shortcut for the first layers). Not an API:
 * only those two files include it, and only in a build with oneDNN (FG_HAVE_DNNL). Same
 * thread rules as dnnl.h: one thread at a time per engine. */
#ifndef BE_DNNL_INTERNAL_H
#define BE_DNNL_INTERNAL_H

#include <oneapi/dnnl/dnnl.h>

#include "dnnl.h"
#include "maxpool.h"

typedef struct {
    dnnl_primitive_t prim; /* NULL: be_maxpool_blocked(&pool, args[0] -> args[1]) instead */
    int nargs;
    dnnl_exec_arg_t args[4];
    be_maxpool_t pool;
} step_t;

typedef struct {
    int onednn;           /* 1: steps[first .. first + count), 0: darknet's l.forward */
    int first, count;     /* its steps */
    int yolo;             /* 1: a [yolo] head whose logistic is a step (yolo_steps) */
    be_fast_wino_t *wino; /* not NULL: fast.c's Winograd on darknet's buffers (fast_wino) */
} plan_t;

typedef struct be_dnnl_tail be_dnnl_tail_t;

struct be_dnnl {
    network *net;
    dnnl_engine_t eng;
    dnnl_stream_t st;
    step_t *steps;
    int nsteps;
    plan_t *plan;
    dnnl_memory_t *mems; /* every memory object, for destroy */
    int nmems;
    dnnl_memory_t input; /* the network input, NCHW over the caller's buffer (set per pass) */
    int threads;
    int bf16;            /* 1: convolutions and max-pools in bf16 (be_dnnl_create_precision) */
    int winograd;        /* 1: f32 3x3 convolutions may run as Winograd (layer_pd) */
    int nwino;           /* how many do */
    int nownpool;        /* max-pools run by be_maxpool_blocked (own_pool_fits) */
    float *wino_scratch; /* for the fast.c Winograd layers, the largest one's */
    /* A Winograd convolution's activation left to the max-pool after it (add_layer's
     * may_defer), as that pool's post-op: max and a non-decreasing activation commute, and
     * the pool's output is a quarter of the convolution's. */
    const layer *deferred;
    be_dnnl_tail_t *tail; /* NULL: the first layers always run whole (dnnl_tail.c) */
    int tail_rows;        /* be_dnnl_tail_rows */
    char *why;
    size_t whycap;
};

/* Sets up the shortcut for d's finished plan when it applies (d->tail stays NULL when not,
 * or when refused by be_dnnl_refuse_tail). 0, or PROTO_ENOMEM (the caller then builds no
 * shortcut and carries on: it is only ever a saving). */
int be_dnnl_tail_create(be_dnnl_t *d);

/* Runs layers 0 .. be_dnnl_tail_layers(d) - 1 for `input` (the pass's input, already set on
 * d->input) with the shortcut, and returns 1; or returns 0 having done nothing that matters
 * (too few rows are padding, or a primitive for them could not be made): the caller runs
 * those layers whole. Sets d->tail_rows. */
int be_dnnl_tail_run(be_dnnl_t *d, const float *input);

void be_dnnl_tail_destroy(be_dnnl_tail_t *t);

#endif
