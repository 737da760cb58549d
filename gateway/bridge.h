/* Hands work from NNG's threads to the libuv loop.
 *
 * NNG runs aio callbacks on its own threads; gateway state may only be touched on the loop
 * thread. A callback posts an intrusive node (embedded in the object it concerns, so posting
 * never allocates and the queue is bounded by the number of such objects); the loop drains
 * the queue from a uv_async_t and runs each node's function. */
#ifndef GW_BRIDGE_H
#define GW_BRIDGE_H

#include <pthread.h>
#include <uv.h>

typedef struct gw_bridge_node gw_bridge_node_t;
typedef void (*gw_bridge_cb)(gw_bridge_node_t *node);

struct gw_bridge_node {
    gw_bridge_node_t *next;
    gw_bridge_cb cb; /* runs on the loop thread */
    int queued;      /* guarded by the bridge's mutex */
};

typedef struct {
    uv_async_t async;
    pthread_mutex_t mu;
    gw_bridge_node_t *head, *tail;
} gw_bridge_t;

/* Embedded in its owner; `loop` must outlive it. Returns 0 or a libuv code. */
int gw_bridge_init(gw_bridge_t *b, uv_loop_t *loop);

/* Any thread. Queues `node` unless it is already queued (then this is a no-op: the pending
 * run will see the latest state). node->cb must be set. */
void gw_bridge_post(gw_bridge_t *b, gw_bridge_node_t *node);

/* Loop thread. Closes the async handle; `cb` (may be NULL) runs from its close callback.
 * Posts after this are dropped, so stop every NNG aio first. */
void gw_bridge_close(gw_bridge_t *b, uv_close_cb cb);

#endif
