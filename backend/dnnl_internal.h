/* The oneDNN engine's insides, shared by dnnl.c (building and running the plan) and
 * dnnl_tail.c (its padding shortcut for the first layers). Not an API:
 * only those two files include it, and only in a build with oneDNN (FG_HAVE_DNNL). Same
 * thread rules as dnnl.h: one thread at a time per engine. */
#ifndef BE_DNNL_INTERNAL_H
#define BE_DNNL_INTERNAL_H

#include <oneapi/dnnl/dnnl.h>

#include "convpool.h"
#include "dnnl.h"
#include "maxpool.h"

/* One step of a pass: a oneDNN primitive, or one of framegate's own loops. */
typedef struct {
    dnnl_primitive_t prim; /* NULL: own, args[0] -> args[1]: */
    be_convpool_t *cp;     /* not NULL: be_convpool (a layer and its pool; owned) */
    int nargs;             /* else be_maxpool_blocked(&pool) */
    dnnl_exec_arg_t args[4];
    be_maxpool_t pool;
} step_t;

typedef struct {
    int onednn;           /* 1: steps[first .. first + count), 0: darknet's l.forward */
    int first, count;     /* its steps */
    int yolo;             /* 1: a [yolo] head whose logistic is a step (yolo_steps) */
    int fused;            /* 1: computed by an earlier layer's step (convpool_step); its own
                           * steps (0 or 1) copy it to darknet's buffer */
    be_fast_wino_t *wino; /* not NULL: fast.c's Winograd on darknet's buffers (fast_wino) */
    int reshape;          /* 1: a [route] or [upsample] run by be_reshape_forward (reshape.h) */
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
    int nconvpool;       /* layer pairs run as be_convpool (be_dnnl_convpool_step) */
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

/* Set-up helpers (dnnl.c), also for dnnl_own.c. be_dnnl_failed puts "oneDNN refused `what`
 * (layer i)" in the caller's why and returns PROTO_EINVAL; BE_DNNL_TRY returns that from the
 * enclosing function (which has `d` and `i`) when a oneDNN call fails. */
int be_dnnl_failed(be_dnnl_t *d, const char *what, int layer);
#define BE_DNNL_TRY(call, what)                                                                    \
    do {                                                                                           \
        if ((call) != dnnl_success)                                                                \
            return be_dnnl_failed(d, what, i);                                                     \
    } while (0)
/* The memory object is the engine's from now on (freed by be_dnnl_destroy). */
int be_dnnl_keep_mem(be_dnnl_t *d, dnnl_memory_t m);
/* The next step of the plan, zeroed. */
step_t *be_dnnl_new_step(be_dnnl_t *d);
/* A step copying `out` (md) to layer l's darknet buffer, NCHW (darknet's code reads it). */
int be_dnnl_to_darknet(be_dnnl_t *d, int i, const layer *l, dnnl_memory_t out,
                       const dnnl_memory_desc_t *md);

/* dnnl_own.c. Max-pool layer l on a tensor described by `in` as framegate's loop: whether it
 * runs so (*mp: its geometry), and its step, output in the same blocking (and to darknet's
 * buffer when to_nchw). *cur / *curmd: the tensor coming in, then going out. */
int be_dnnl_own_pool_fits(const be_dnnl_t *d, const layer *l, const dnnl_memory_desc_t *in,
                          be_maxpool_t *mp);
int be_dnnl_own_pool_step(be_dnnl_t *d, int i, const layer *l, const be_maxpool_t *mp, int to_nchw,
                          dnnl_memory_t *cur, dnnl_memory_desc_t *curmd);
/* Layers i .. i + *layers - 1 (2: a convolution and its pool; 3: a depthwise 3x3, a 1x1 and a
 * pool) as one be_convpool step: whether they run so (the input's channels per block, or 0;
 * nchw[j]: darknet reads layer j's output; curmd: the tensor coming in), and the step, which
 * sets the layers' plans (the pool's steps copy its output to darknet's buffer when to_nchw). */
int be_dnnl_convpool_fits(const be_dnnl_t *d, int i, int all_outputs, const char *nchw,
                          const dnnl_memory_desc_t *curmd, int *layers);
int be_dnnl_convpool_step(be_dnnl_t *d, int i, int in_blk, int layers, int to_nchw,
                          dnnl_memory_t *cur, dnnl_memory_desc_t *curmd);
/* Runs own step s (prim NULL), its input written (the stream waited for). */
void be_dnnl_own_run(be_dnnl_t *d, const step_t *s);

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
