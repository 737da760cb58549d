/* The storage routes, answered from the store (store.h) behind gw_storage_t:
 *   GET /v1/results?camera=C&since=MS&limit=N  frames kept for camera C from time MS (ms since
 *       the epoch) on, oldest first: {"camera", "results": [{"time_us", "input", "result",
 *       "annotated"}], "next_since"}; at most N (default 100, at most 300) frames;
 *   GET /v1/objects/KEY  one stored object, its Content-Type from its extension;
 *   GET /v1/storage      the writer's state: store kind, up or down, queue, spool, drops.
 * Each model may keep its frames in its own store (model.NAME.store): ?model=NAME picks
 * it for /v1/results and /v1/objects (default: the default model's). The route ctx is a
 * gw_results_t. Loop thread only. */
#ifndef GW_RESULTS_H
#define GW_RESULTS_H

#include "server.h"
#include "storage.h"

typedef struct {
    /* The storage keeping model `model`'s frames ("" = the default model's; NULL when that
     * model keeps nothing). Returns 0, or PROTO_ENOMODEL for a model that is not served. */
    int (*storage_of)(void *ctx, const char *model, gw_storage_t **out);
    /* Every distinct storage, the default model's first; their number. */
    int (*storages)(void *ctx, gw_storage_t **out, int cap);
    void *ctx;
} gw_results_t;

void gw_results_on_list(void *results, gw_req_t *req);
void gw_results_on_object(void *results, gw_req_t *req);
void gw_results_on_status(void *results, gw_req_t *req);

#endif
