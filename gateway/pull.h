/* Pull cameras: [camera NAME] sections with a url, whose frames the gateway fetches itself
 * over the loop's HTTP client (fetch.h), either as an MJPEG stream (multipart/x-mixed-replace,
 * parsed as it arrives by mjpeg.h) or as a JPEG snapshot polled `fps` times a second. Every
 * frame taken becomes a job submitted like a pushed one (the same fair queue, where a newer
 * frame supersedes the waiting one, and the same ordered result streams), so nothing here
 * queues: this module keeps no frame once it is submitted.
 *
 * A camera is "connecting" until its first frame, "up" while frames come, and "down" from an
 * error (HTTP status, connection refused or dropped, a stall, a malformed or oversized part)
 * until a frame arrives again, reconnection attempts included: it reconnects after a backoff that
 * doubles from GW_PULL_BACKOFF_MIN_MS to GW_PULL_BACKOFF_MAX_MS, and is back to the minimum once a
 * frame arrives. Cameras never wait on each other. URLs are the operator's (the config file), so
 * fetch_allow does not apply. Loop thread only. */
#ifndef GW_PULL_H
#define GW_PULL_H

#include <stdint.h>
#include <uv.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "fetch.h"
#include "job.h"

#define GW_PULL_BACKOFF_MIN_MS 250
#define GW_PULL_BACKOFF_MAX_MS 8000

typedef struct gw_pull gw_pull_t;

/* Queues one frame (app_submit: same contract as gw_detect_t.submit). */
typedef int (*gw_pull_submit_cb)(void *ctx, gw_job_t *job);
/* Keeps a finished frame in its model's store (app_keep: gw_detect_t.keep's contract); NULL =
 * no store. */
typedef void (*gw_pull_keep_cb)(void *ctx, const gw_job_t *job, cJSON *result);

/* One puller per camera section of cfg with a url; cfg, fetch, submit, keep and ctx outlive
 * it. Every frame answered with a result is kept like a pushed one (keep). Nothing starts
 * until gw_pull_start. 0 or PROTO_ENOMEM. */
int gw_pull_create(gw_pull_t **out, uv_loop_t *loop, const gw_config_t *cfg, gw_fetch_t *fetch,
                   gw_pull_submit_cb submit, gw_pull_keep_cb keep, void *ctx);

/* Connects every camera (after the pools are started). */
void gw_pull_start(gw_pull_t *p);

/* Stops pulling: transfers cancelled, timers stopped, nothing more submitted. Frames already
 * submitted still come back through their jobs. Idempotent; call before gw_fetch_destroy. */
void gw_pull_stop(gw_pull_t *p);

/* Frees the pullers once every submitted frame is back (after the pools are destroyed); the
 * memory goes with the timers' close callbacks, on a later loop run. NULL is a no-op. */
void gw_pull_destroy(gw_pull_t *p);

/* For the metrics: 1 if pull camera `name` is up, 0 if connecting or down (with *errors its
 * error count), -1 if it is not a pull camera. */
int gw_pull_state(const gw_pull_t *p, const char *name, uint64_t *errors);

/* If `name` is a pull camera, sets o's "source" to "pull", its "state" to connecting, up or
 * down, and adds "pull": url, mode, fps received, frames, errors, reconnects, last error and
 * when. Otherwise leaves o alone. */
void gw_pull_describe(const gw_pull_t *p, const char *name, uint64_t now_ms, cJSON *o);

#endif
