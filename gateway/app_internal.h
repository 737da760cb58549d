/* Internal to the gateway's application (app.c: lifecycle, signals, wiring; app_json.c: the
 * JSON status routes; app_metrics.c: the metric families and /metrics): the app_t they
 * share and the functions they call across. Everything here runs on the loop thread. */
#ifndef GW_APP_INTERNAL_H
#define GW_APP_INTERNAL_H

#include <stdint.h>
#include <uv.h>

#include "camera.h"
#include "config.h"
#include "detect.h"
#include "fetch.h"
#include "frontdoor.h"
#include "jobs.h"
#include "join.h"
#include "metrics.h"
#include "pool.h"
#include "provider.h"
#include "pull.h"
#include "results.h"
#include "server.h"
#include "storage.h"
#include "stream.h"
#include "urlframe.h"

typedef struct app app_t;

/* One served model: its pool, and the context its pool hooks get back. */
typedef struct {
    app_t *app;
    const gw_model_t *model;
    gw_pool_t *pool;
    gw_provider_t *provider; /* the pool's (it owns it); registered models add to it */
    gw_storage_t *storage;   /* where its frames are kept (shared by models with one store) */
    int is_default;
} app_model_t;

struct app {
    uv_loop_t loop;
    const gw_config_t *cfg;
    gw_server_t *server;
    gw_detect_t detect;      /* ctx of the detect routes */
    gw_cameras_t *cams;      /* live cameras: registry, stats, streams (camera.h) */
    gw_stream_ctx_t streams; /* ctx of the camera stream routes */
    gw_route_t routes[24];
    gw_server_ops_t server_ops;
    gw_join_t *join; /* NULL unless join_listen is set */
    app_model_t models[GW_MODELS_MAX];
    int nmodels;
    app_model_t *def; /* the default model */
    gw_metrics_t *metrics;
    gw_fetch_t *fetch;      /* the loop's HTTP client: the S3 store and frames by URL */
    gw_urlframe_t urlframe; /* frames by URL */
    gw_storage_t *storages[GW_MODELS_MAX]; /* one per distinct store of the models */
    int nstorages;
    gw_results_t results; /* ctx of /v1/results, /v1/objects, /v1/storage */
    gw_jobs_t *jobs;      /* batch jobs (jobs.h) */
    gw_pull_t *pull;      /* cameras whose frames we fetch (pull.h) */
    gw_frontdoor_t *door; /* tokens, rate limits, HTTPS, other listeners (frontdoor.h) */
    struct {
        int requests, duration, queue_wait, scale, backends, desired, min, max, inflight, queued,
            be_inflight, be_served, infer, be_failures, retried, crashes, failed_starts,
            connections, ejections, suspected, recovered, tls_failures, cam_in, cam_served,
            cam_skipped, cam_late, cam_age, stream_dropped, cloud_errors, pull_up, pull_errors;
        int store_writes, store_dropped, store_spool_bytes, store_spool_objects, store_queued,
            store_up;
    } fam;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t exit_timer;
    uv_thread_t watchdog; /* started by the first stop signal (app.c) */
    int stopping;
    int pools_done, pool_done, server_drained;
    int exit_code;
};

/* ---- app.c ---- */

// The served model named `name` (NULL or "" is the default one), or NULL.
app_model_t *gw__app_find_model(app_t *app, const char *name);

// The model a camera's frames go to (NULL if its model is not served).
app_model_t *gw__app_camera_model(app_t *app, const gw_camera_stats_t *cs);

// A camera's weight and max age: its [camera NAME] section, else the camera_* keys.
void gw__app_camera_settings(const app_t *app, const char *name, int *weight, uint64_t *max_age);

// A pool's camera demand in frames in flight, given the model's service time.
double gw__app_model_demand(app_t *app, const app_model_t *m, double svc_ms);

/* ---- app_json.c: route handlers (ctx is the app_t) ---- */

void gw__app_on_readyz(void *ctx, gw_req_t *req);   // GET /readyz
void gw__app_on_backends(void *ctx, gw_req_t *req); // GET /v1/backends
void gw__app_on_cameras(void *ctx, gw_req_t *req);  // GET /v1/cameras
void gw__app_on_models(void *ctx, gw_req_t *req);   // GET /v1/models

/* ---- app_metrics.c ---- */

// Declares every metric family into app->metrics and app->fam; 0 or a negative code.
int gw__app_declare_metrics(app_t *app);

// GET /metrics (ctx is the app_t): refreshes the gauges, then renders every family.
void gw__app_on_metrics(void *ctx, gw_req_t *req);

// The server's on_response hook (ctx is the app_t): requests and their duration by route.
void gw__app_on_response(void *ctx, const char *route, int status, double seconds);

// Pool hooks (ctx is the app_model_t).
void gw__app_on_queue_wait(void *ctx, double seconds);
void gw__app_on_scale(void *ctx, const char *direction, const char *reason);
void gw__app_on_job_done(void *ctx, const gw_job_t *job);

#endif
