#include "bridge.h"

static void on_async(uv_async_t *async)
{
    gw_bridge_t *b = (gw_bridge_t *)async;
    gw_bridge_node_t *list;

    /* Take the whole list at once, then run it unlocked: callbacks may post again (the node
     * is already un-queued) or start new NNG operations without deadlocking on our mutex. */
    pthread_mutex_lock(&b->mu);
    list = b->head;
    b->head = b->tail = NULL;
    for (gw_bridge_node_t *n = list; n != NULL; n = n->next)
        n->queued = 0;
    pthread_mutex_unlock(&b->mu);

    while (list != NULL) {
        gw_bridge_node_t *n = list;
        list = n->next;
        n->next = NULL;
        n->cb(n);
    }
}

int gw_bridge_init(gw_bridge_t *b, uv_loop_t *loop)
{
    int rv;
    b->head = b->tail = NULL;
    if ((rv = pthread_mutex_init(&b->mu, NULL)) != 0)
        return -rv;
    if ((rv = uv_async_init(loop, &b->async, on_async)) != 0) {
        pthread_mutex_destroy(&b->mu);
        return rv;
    }
    return 0;
}

void gw_bridge_post(gw_bridge_t *b, gw_bridge_node_t *node)
{
    int wake = 0;
    pthread_mutex_lock(&b->mu);
    if (!node->queued) {
        node->queued = 1;
        node->next = NULL;
        if (b->tail != NULL)
            b->tail->next = node;
        else
            b->head = node;
        b->tail = node;
        wake = 1;
    }
    pthread_mutex_unlock(&b->mu);
    /* uv_async_send coalesces wake-ups and is safe from any thread. */
    if (wake)
        uv_async_send(&b->async);
}

void gw_bridge_close(gw_bridge_t *b, uv_close_cb cb)
{
    uv_close((uv_handle_t *)&b->async, cb);
}
