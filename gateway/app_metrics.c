/* The gateway's metrics: the families declared at start, the pool hooks and the server's
 * response hook that count into them, and GET /metrics, which refreshes the gauges from the
 * pools, cameras and stores before rendering. Loop thread. */
#include "app.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include <cjson/cJSON.h>

#include "addr.h"
#include "err.h"
#include "join.h"
#include "fetch.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "provider.h"
#include "camera.h"
#include "detect.h"
#include "jobs.h"
#include "web.h"
#include "stream.h"
#include "response.h"
#include "remote.h"
#include "results.h"
#include "server.h"
#include "storage.h"
#include "urlframe.h"
#include "app_internal.h"

/* ---- live cameras ---- */

static uint64_t unix_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static char *render_metrics(app_t *app, size_t *len);

void gw__app_on_metrics(void *ctx, gw_req_t *req)
{
    size_t len = 0;
    char *text = render_metrics(ctx, &len);
    gw_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
}

void gw__app_on_response(void *ctx, const char *route, int status, double seconds)
{
    app_t *app = ctx;
    char code[16];
    snprintf(code, sizeof code, "%d", status);
    gw_metrics_add(app->metrics, app->fam.requests, route, code, 1);
    gw_metrics_observe(app->metrics, app->fam.duration, route, NULL, seconds);
}

static const double latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                         1,     2.5,  5,     10,   30,  60};

void gw__app_on_queue_wait(void *ctx, double seconds)
{
    app_model_t *m = ctx;
    gw_metrics_observe(m->app->metrics, m->app->fam.queue_wait, m->model->name, NULL, seconds);
}

void gw__app_on_scale(void *ctx, const char *direction, const char *reason)
{
    app_model_t *m = ctx;
    gw_metrics_add3(m->app->metrics, m->app->fam.scale, m->model->name, direction, reason, 1);
}

void gw__app_on_job_done(void *ctx, const gw_job_t *job)
{
    app_model_t *m = ctx;
    gw_cameras_done(m->app->cams, job, uv_now(&m->app->loop), unix_now_ms());
    if (job->err == 0)
        gw_metrics_observe(m->app->metrics, m->app->fam.infer, m->model->name, NULL,
                           job->infer_ms / 1000.0);
}

int gw__app_declare_metrics(app_t *app)
{
    gw_metrics_t *m = app->metrics;
    const int nb = (int)(sizeof latency_buckets / sizeof latency_buckets[0]);
#define D(field, type, name, help, labels, b, n)                                                   \
    if ((app->fam.field = gw_metrics_declare(m, type, name, help, labels, b, n)) < 0)              \
        return app->fam.field;
    D(requests, GW_COUNTER, "framegate_requests_total",
      "HTTP requests answered, by route and status code.", "route,code", NULL, 0)
    D(duration, GW_HISTOGRAM, "framegate_request_duration_seconds",
      "Time from the end of a request to its answer.", "route", latency_buckets, nb)
    D(queue_wait, GW_HISTOGRAM, "framegate_queue_wait_seconds",
      "Time frames waited in the queue for a backend.", "model", latency_buckets, nb)
    D(infer, GW_HISTOGRAM, "framegate_inference_seconds",
      "Network time reported by the backends (forward pass + boxes + NMS).", "model",
      latency_buckets, nb)
    D(scale, GW_COUNTER, "framegate_scale_events_total",
      "Autoscaler actions, by model, direction and reason.", "model,direction,reason", NULL, 0)
    D(backends, GW_GAUGE, "framegate_backends", "Backends by model and state.", "model,state", NULL,
      0)
    D(desired, GW_GAUGE, "framegate_backends_desired", "Backends the autoscaler wants.", "model",
      NULL, 0)
    D(min, GW_GAUGE, "framegate_backends_min", "Configured minimum backends.", "model", NULL, 0)
    D(max, GW_GAUGE, "framegate_backends_max", "Configured maximum backends.", "model", NULL, 0)
    D(inflight, GW_GAUGE, "framegate_inflight", "Frames being processed by a backend.", "model",
      NULL, 0)
    D(queued, GW_GAUGE, "framegate_queue_depth", "Frames waiting for a backend.", "model", NULL, 0)
    D(be_inflight, GW_GAUGE, "framegate_backend_inflight", "Frames in flight per backend.",
      "model,backend,state", NULL, 0)
    D(be_served, GW_GAUGE, "framegate_backend_served", "Frames answered by each running backend.",
      "model,backend", NULL, 0)
    D(be_failures, GW_GAUGE, "framegate_backend_failures", "Frames each running backend failed.",
      "model,backend", NULL, 0)
    D(retried, GW_COUNTER, "framegate_retries_total",
      "Frames re-dispatched after a backend failure.", "model", NULL, 0)
    D(crashes, GW_COUNTER, "framegate_backend_crashes_total",
      "Ready backends lost (exit or broken connection).", "model", NULL, 0)
    D(failed_starts, GW_COUNTER, "framegate_backend_failed_starts_total",
      "Backends that failed before becoming ready.", "model", NULL, 0)
    D(ejections, GW_COUNTER, "framegate_backend_ejections_total",
      "Backends ejected and replaced: answers departing from their peers' (consecutive_failures, "
      "success_rate) or silence (hung).",
      "model,reason", NULL, 0)
    D(suspected, GW_COUNTER, "framegate_backend_suspected_total",
      "Backends suspected of hanging (a frame unanswered past the model's bound): then back to "
      "ready or ejected.",
      "model", NULL, 0)
    D(recovered, GW_COUNTER, "framegate_backend_recovered_total",
      "Suspected backends that answered again and went back to ready.", "model", NULL, 0)
    D(cloud_errors, GW_COUNTER, "framegate_cloud_api_errors_total",
      "Cloud provider API calls that failed (each retry counts; the last error is provider_error "
      "in /v1/backends).",
      "model", NULL, 0)
    D(tls_failures, GW_COUNTER, "framegate_tls_handshake_failures_total",
      "Backend starts that failed on a refused TLS handshake (a certificate that did not verify on "
      "either side, or TLS against plain tcp).",
      "model", NULL, 0)
    D(cam_in, GW_COUNTER, "framegate_camera_frames_total",
      "Frames that named a camera, by camera (cameras beyond max_cameras: \"other\").", "camera",
      NULL, 0)
    D(cam_served, GW_COUNTER, "framegate_camera_frames_served_total",
      "Camera frames answered with a result.", "camera", NULL, 0)
    D(cam_skipped, GW_COUNTER, "framegate_camera_frames_skipped_total",
      "Camera frames answered without a backend: superseded by a newer frame, or stale (older than "
      "camera_max_age_ms).",
      "camera,reason", NULL, 0)
    D(cam_late, GW_COUNTER, "framegate_camera_results_late_total",
      "Results dropped from a camera's streams because a newer one was already sent.", "camera",
      NULL, 0)
    D(cam_age, GW_GAUGE, "framegate_camera_frame_age_seconds",
      "Age of a camera's answered frames (arrival to answer): the 50th and 95th percentile of the "
      "last 256.",
      "camera,percentile", NULL, 0)
    D(stream_dropped, GW_COUNTER, "framegate_stream_dropped_total",
      "Events and frames not sent to slow stream readers.", NULL, NULL, 0)
    D(connections, GW_GAUGE, "framegate_http_connections", "Open client connections.", NULL, NULL,
      0)
    D(store_writes, GW_COUNTER, "framegate_store_writes_total",
      "Store writes, by store and result (ok, failed: each failure is retried from the spool).",
      "store,result", NULL, 0)
    D(store_dropped, GW_COUNTER, "framegate_store_dropped_total",
      "Writes dropped (spool full or absent), by store and class (input, annotated, result).",
      "store,class", NULL, 0)
    D(store_spool_bytes, GW_GAUGE, "framegate_store_spool_bytes",
      "Bytes in the spool directory, by store.", "store", NULL, 0)
    D(store_spool_objects, GW_GAUGE, "framegate_store_spool_objects",
      "Writes waiting in the spool directory, by store.", "store", NULL, 0)
    D(store_queued, GW_GAUGE, "framegate_store_queue_depth", "Writes waiting in memory, by store.",
      "store", NULL, 0)
    D(store_up, GW_GAUGE, "framegate_store_up",
      "1 while the store takes writes, 0 while they spool.", "store", NULL, 0)
#undef D
    return 0;
}

typedef struct {
    app_t *app;
    const char *model;
} per_backend_t;

static void per_backend(void *arg, const char *name, const char *state, int inflight,
                        uint64_t served, uint64_t failures)
{
    per_backend_t *pb = arg;
    gw_metrics_t *m = pb->app->metrics;
    gw_metrics_set3(m, pb->app->fam.be_inflight, pb->model, name, state, inflight);
    gw_metrics_set(m, pb->app->fam.be_served, pb->model, name, (double)served);
    gw_metrics_set(m, pb->app->fam.be_failures, pb->model, name, (double)failures);
}

static char *render_metrics(app_t *app, size_t *len)
{
    gw_metrics_t *m = app->metrics;
    /* Backends come and go: their series are rebuilt at every scrape. */
    gw_metrics_clear(m, app->fam.be_inflight);
    gw_metrics_clear(m, app->fam.be_served);
    gw_metrics_clear(m, app->fam.be_failures);
    for (int i = 0; i < app->nmodels; i++) {
        const char *name = app->models[i].model->name;
        gw_pool_stats_t st;
        gw_pool_stats(app->models[i].pool, &st);
        gw_metrics_set(m, app->fam.backends, name, "starting", st.starting);
        gw_metrics_set(m, app->fam.backends, name, "ready", st.ready);
        gw_metrics_set(m, app->fam.backends, name, "draining", st.draining);
        gw_metrics_set(m, app->fam.backends, name, "suspect", st.suspect);
        gw_metrics_set(m, app->fam.backends, name, "stopping", st.stopping);
        gw_metrics_set(m, app->fam.desired, name, NULL, st.desired);
        gw_metrics_set(m, app->fam.min, name, NULL, st.min);
        gw_metrics_set(m, app->fam.max, name, NULL, st.max);
        gw_metrics_set(m, app->fam.inflight, name, NULL, st.inflight);
        gw_metrics_set(m, app->fam.queued, name, NULL, st.queued);
        gw_metrics_set(m, app->fam.retried, name, NULL, (double)st.retried);
        gw_metrics_set(m, app->fam.crashes, name, NULL, (double)st.crashes);
        gw_metrics_set(m, app->fam.failed_starts, name, NULL, (double)st.failed_starts);
        gw_metrics_set(m, app->fam.suspected, name, NULL, (double)st.suspected);
        gw_metrics_set(m, app->fam.recovered, name, NULL, (double)st.recovered);
        gw_metrics_set(m, app->fam.tls_failures, name, NULL, (double)st.tls_failures);
        if (app->models[i].provider->ops->api_error != NULL) {
            uint64_t errors = 0;
            app->models[i].provider->ops->api_error(app->models[i].provider, &errors);
            gw_metrics_set(m, app->fam.cloud_errors, name, NULL, (double)errors);
        }
        for (int r = GW_HEALTH_NONE + 1; r < GW_HEALTH_NREASONS; r++)
            gw_metrics_set(m, app->fam.ejections, name, gw_health_reason_name(r),
                           (double)st.ejections[r]);
        per_backend_t pb = {app, name};
        gw_pool_foreach(app->models[i].pool, per_backend, &pb);
    }
    uint64_t now = uv_now(&app->loop);
    for (int i = 0; i <= gw_cameras_count(app->cams); i++) {
        gw_camera_stats_t cs;
        gw_cameras_stats(app->cams, i, now, &cs);
        if (i == 0 && cs.in == 0)
            continue;
        gw_metrics_set(m, app->fam.cam_in, cs.name, NULL, (double)cs.in);
        gw_metrics_set(m, app->fam.cam_served, cs.name, NULL, (double)cs.served);
        gw_metrics_set(m, app->fam.cam_skipped, cs.name, "superseded", (double)cs.superseded);
        gw_metrics_set(m, app->fam.cam_skipped, cs.name, "stale", (double)cs.stale);
        gw_metrics_set(m, app->fam.cam_late, cs.name, NULL, (double)cs.late);
        gw_metrics_set(m, app->fam.cam_age, cs.name, "50", cs.age_p50_ms / 1000.0);
        gw_metrics_set(m, app->fam.cam_age, cs.name, "95", cs.age_p95_ms / 1000.0);
    }
    gw_metrics_set(m, app->fam.stream_dropped, NULL, NULL, (double)app->streams.dropped);
    gw_metrics_set(m, app->fam.connections, NULL, NULL, gw_server_connections(app->server));
    for (int i = 0; i < app->nstorages; i++) {
        gw_storage_stats_t ss;
        const char *url = gw_storage_url(app->storages[i]);
        gw_storage_stats(app->storages[i], &ss);
        gw_metrics_set(m, app->fam.store_writes, url, "ok", (double)ss.written);
        gw_metrics_set(m, app->fam.store_writes, url, "failed", (double)ss.failed);
        gw_metrics_set(m, app->fam.store_dropped, url, "input", (double)ss.dropped[GW_STORE_INPUT]);
        gw_metrics_set(m, app->fam.store_dropped, url, "annotated",
                       (double)ss.dropped[GW_STORE_ANNOTATED]);
        gw_metrics_set(m, app->fam.store_dropped, url, "result",
                       (double)ss.dropped[GW_STORE_RESULT]);
        gw_metrics_set(m, app->fam.store_spool_bytes, url, NULL, (double)ss.spool_bytes);
        gw_metrics_set(m, app->fam.store_spool_objects, url, NULL, ss.spool_objects);
        gw_metrics_set(m, app->fam.store_queued, url, NULL, ss.queued);
        gw_metrics_set(m, app->fam.store_up, url, NULL, ss.up);
    }
    return gw_metrics_render(m, len);
}
