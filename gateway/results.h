/* The storage routes, answered from the store (store.h) behind gw_storage_t:
 *   GET /v1/results?camera=C&since=MS&limit=N  frames kept for camera C from time MS (ms since
 *       the epoch) on, oldest first: {"camera", "results": [{"time_us", "input", "result",
 *       "annotated"}], "next_since"}; at most N (default 100, at most 300) frames;
 *   GET /v1/objects/KEY  one stored object, its Content-Type from its extension;
 *   GET /v1/storage      the writer's state: store kind, up or down, queue, spool, drops.
 * The route ctx is the gw_storage_t (NULL when store = none). Loop thread only. */
#ifndef GW_RESULTS_H
#define GW_RESULTS_H

#include "server.h"

void gw_results_on_list(void *storage, gw_req_t *req);
void gw_results_on_object(void *storage, gw_req_t *req);
void gw_results_on_status(void *storage, gw_req_t *req);

#endif
