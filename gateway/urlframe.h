/* A frame given by URL (POST /v1/detect with {"url": ...}): fetched with the loop's HTTP
 * client under the fetch policy (fetch.h: http/https only, each redirect hop re-checked,
 * private addresses refused unless fetch_allow lists them), capped at max_body_bytes, then
 * checked to be a JPEG or PNG. Loop thread only. */
#ifndef GW_URLFRAME_H
#define GW_URLFRAME_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "detect.h"
#include "fetch.h"

typedef struct {
    gw_fetch_t *fetch;
    const gw_config_t *cfg;
    gw_fetch_policy_t policy; /* from fetch_allow */
} gw_urlframe_t;

/* Fills *u (a plain value; fetch and cfg outlive it). 0, or PROTO_ECONFIG with err set. */
int gw_urlframe_init(gw_urlframe_t *u, gw_fetch_t *fetch, const gw_config_t *cfg, char *err,
                     size_t cap);

/* Fetches `url`; cb gets the bytes, or PROTO_EURLFORBIDDEN / EURLTOOBIG / EURLTIMEOUT /
 * EURLSTATUS (a non-2xx answer, too many redirects) / EURLFETCH / EFORMAT (not JPEG/PNG) /
 * EEMPTY / EINVAL (not a URL). 0 (cb runs later) or a code (it never runs). */
int gw_urlframe_get(gw_urlframe_t *u, const char *url, gw_detect_fetch_cb cb, void *arg);

#endif
