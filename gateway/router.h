/* The route table: one list of {method, path pattern, metrics label, handler} decides who
 * answers a request and which label its metrics carry, also for requests answered before
 * routing (timeouts, limits, malformed HTTP). Pure matching plus one dispatch; loop thread. */
#ifndef GW_ROUTER_H
#define GW_ROUTER_H

#include <stddef.h>

#include "server.h"

/* True if `path` matches `pattern` (see gw_route_t); param and param_len get what the first
 * wildcard matched (NULL and 0 if the pattern has none). */
int gw_router_match(const char *pattern, const char *path, const char **param, size_t *param_len);

/* Hands a complete request to the first route matching its method and path (HEAD takes a GET
 * route; http.c sends no body for it), or answers 404, or 405 with Allow when only the method
 * differs.
 * Sets req->route. */
void gw_router_dispatch(const gw_route_t *routes, size_t n, gw_req_t *req);

/* The label of the first route whose pattern matches `path`, whatever the method; "other". */
const char *gw_router_label(const gw_route_t *routes, size_t n, const char *path);

#endif
