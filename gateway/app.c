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
#include "pull.h"
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

typedef struct app app_t;

/* One served model: its pool, and the context its pool hooks get back. */
typedef struct {
    app_t *app;
    const gw_model_t *model;
    gw_pool_t *pool;
    gw_provider_t *provider; /* the pool's (it owns it); registered models add to it */
    gw_storage_t *storage; /* where its frames are kept (shared by models with one store) */
    int is_default;
} model_t;

struct app {
    uv_loop_t loop;
    const gw_config_t *cfg;
    gw_server_t *server;
    gw_detect_t detect; /* ctx of the detect routes */
    gw_cameras_t *cams; /* live cameras: registry, stats, streams (camera.h) */
    gw_stream_ctx_t streams; /* ctx of the camera stream routes */
    gw_route_t routes[24];
    gw_server_ops_t server_ops;
    gw_join_t *join; /* NULL unless join_listen is set */
    model_t models[GW_MODELS_MAX];
    int nmodels;
    model_t *def; /* the default model */
    gw_metrics_t *metrics;
    gw_fetch_t *fetch;       /* the loop's HTTP client: the S3 store and frames by URL */
    gw_urlframe_t urlframe;  /* frames by URL */
    gw_storage_t *storages[GW_MODELS_MAX]; /* one per distinct store of the models */
    int nstorages;
    gw_results_t results;    /* ctx of /v1/results, /v1/objects, /v1/storage */
    gw_jobs_t *jobs;         /* batch jobs (jobs.h) */
    gw_pull_t *pull;         /* cameras whose frames we fetch (pull.h) */
    struct {
        int requests, duration, queue_wait, scale, backends, desired, min, max, inflight, queued,
            be_inflight, be_served, infer, be_failures, retried, crashes, failed_starts, connections,
            ejections, suspected, recovered, tls_failures, cam_in, cam_served, cam_skipped, cam_late, cam_age,
            stream_dropped, cloud_errors;
        int store_writes, store_dropped, store_spool_bytes, store_spool_objects, store_queued,
            store_up;
    } fam;
    uv_signal_t sigterm, sigint;
    uv_timer_t exit_timer;
    int stopping;
    int pools_done, pool_done, server_drained;
    int exit_code;
};

static model_t *find_model(app_t *app, const char *name)
{
    if (name == NULL || name[0] == '\0')
        return app->def;
    for (int i = 0; i < app->nmodels; i++)
        if (strcmp(app->models[i].model->name, name) == 0)
            return &app->models[i];
    return NULL;
}

/* ---- server ops ---- */

/* ---- live cameras ---- */

/* A camera's weight and max age: its [camera NAME] section, else the camera_* keys. */
static void camera_settings(const app_t *app, const char *name, int *weight, uint64_t *max_age)
{
    const gw_camera_cfg_t *cc = gw_config_camera(app->cfg, name);
    *weight = cc != NULL && cc->weight > 0 ? cc->weight : app->cfg->camera_weight;
    *max_age = cc != NULL && cc->max_age_ms >= 0 ? (uint64_t)cc->max_age_ms
                                                  : app->cfg->camera_max_age_ms;
}

/* A camera's first frame (or a pull camera's declaration): its [camera NAME] settings go to
 * every pool's queue. */
static void camera_created(app_t *app, int slot, const char *name)
{
    int weight;
    uint64_t max_age;
    camera_settings(app, name, &weight, &max_age);
    for (int i = 0; i < app->nmodels; i++)
        gw_pool_set_camera(app->models[i].pool, slot, weight, max_age);
}

/* Pull cameras are listed (and streamable) from the start, before their first frame. */
static void declare_pull_cameras(app_t *app)
{
    for (int i = 0; i < app->cfg->ncameras; i++) {
        const gw_camera_cfg_t *cc = &app->cfg->cameras[i];
        int created;
        if (cc->url[0] == '\0')
            continue;
        int slot = gw_cameras_declare(app->cams, cc->name, cc->model, &created);
        if (created)
            camera_created(app, slot, cc->name);
    }
}

static int app_submit(void *ctx, gw_job_t *job)
{
    app_t *app = ctx;
    model_t *m = find_model(app, job->opts.model);
    if (m == NULL)
        return PROTO_ENOMODEL;
    int created;
    /* Sequence numbers are given at arrival, before the queue can reorder anything. */
    int slot = gw_cameras_arrive(app->cams, job, uv_now(&app->loop), &created);
    if (created)
        camera_created(app, slot, job->opts.camera);
    return gw_pool_submit(m->pool, job);
}

static int app_fetch(void *ctx, const char *url, gw_detect_fetch_cb cb, void *arg)
{
    app_t *app = ctx;
    return gw_urlframe_get(&app->urlframe, url, cb, arg);
}

static void app_keep(void *ctx, const gw_job_t *job, cJSON *result)
{
    model_t *m = find_model(ctx, job->model_name);
    if (m != NULL)
        gw_storage_keep(m->storage, job, result);
}

static int app_storage_of(void *ctx, const char *model, gw_storage_t **out)
{
    model_t *m = find_model(ctx, model);
    *out = m != NULL ? m->storage : NULL;
    return m != NULL ? 0 : PROTO_ENOMODEL;
}

static int app_storages(void *ctx, gw_storage_t **out, int cap)
{
    app_t *app = ctx;
    int n = 0;
    for (int i = 0; i < app->nstorages && n < cap; i++)
        out[n++] = app->storages[i];
    return n;
}

/* One storage per distinct `store` of the served models, the default model's first. A store
 * other than the top-level one spools into its own subdirectory of spool_dir (named after
 * the first model that uses it): two writers never share a spool. */
static int open_storages(app_t *app, char *err, size_t cap)
{
    const gw_config_t *cfg = app->cfg;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < app->nmodels; i++) {
            model_t *m = &app->models[i];
            if (m->is_default != (pass == 0) || strcmp(m->model->store, "none") == 0)
                continue;
            for (int j = 0; j < app->nstorages && m->storage == NULL; j++)
                if (strcmp(gw_storage_url(app->storages[j]), m->model->store) == 0)
                    m->storage = app->storages[j];
            if (m->storage != NULL)
                continue;
            char spool[GW_CONFIG_STR_MAX + GW_MODEL_NAME_MAX + 2] = "";
            if (cfg->spool_dir[0] != '\0' && strcmp(m->model->store, cfg->store) == 0)
                snprintf(spool, sizeof spool, "%s", cfg->spool_dir);
            else if (cfg->spool_dir[0] != '\0')
                snprintf(spool, sizeof spool, "%s/%s", cfg->spool_dir, m->model->name);
            int rv = gw_storage_create(&m->storage, &app->loop, cfg, app->fetch, m->model->store,
                                       spool, err, cap);
            if (rv != 0)
                return rv;
            app->storages[app->nstorages++] = m->storage;
            GW_LOG_I("store", "store=%s spool_dir=%s models_from=%s", m->model->store,
                     spool[0] ? spool : "(none)", m->model->name);
        }
    return 0;
}

/* ---- live cameras ---- */

static uint64_t unix_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The model a camera's frames go to. */
static model_t *camera_model(app_t *app, const gw_camera_stats_t *cs)
{
    return find_model(app, cs->model);
}

/* A pool's camera demand in frames in flight: what its cameras offer (fps) times the
 * model's service time. */
static double model_demand(app_t *app, const model_t *m, double svc_ms)
{
    uint64_t now = uv_now(&app->loop);
    double d = 0;
    for (int i = 0; i <= gw_cameras_count(app->cams); i++) {
        gw_camera_stats_t cs;
        gw_cameras_stats(app->cams, i, now, &cs);
        if (camera_model(app, &cs) == m)
            d += cs.fps_in * svc_ms / 1000.0;
    }
    return d;
}

static double on_demand(void *ctx)
{
    model_t *m = ctx;
    gw_pool_stats_t st;
    gw_pool_stats(m->pool, &st);
    double cams = st.svc_ms > 0 ? model_demand(m->app, m, st.svc_ms) : 0;
    /* A batch's frames not yet done are demand too: a big upload scales the pool out. */
    return cams + gw_jobs_pending(m->app->jobs, m->model->name, m->is_default);
}

static cJSON *camera_json(app_t *app, int slot, uint64_t now)
{
    gw_camera_stats_t cs;
    gw_cameras_stats(app->cams, slot, now, &cs);
    model_t *m = camera_model(app, &cs);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", cs.name);
    cJSON_AddStringToObject(o, "source", "push");
    cJSON_AddStringToObject(o, "state", cs.live ? "live" : "idle");
    cJSON_AddStringToObject(o, "model", m != NULL ? m->model->name : cs.model);
    int weight;
    uint64_t max_age;
    camera_settings(app, cs.name, &weight, &max_age);
    cJSON_AddNumberToObject(o, "weight", weight);
    cJSON_AddNumberToObject(o, "max_age_ms", (double)max_age);
    cJSON_AddNumberToObject(o, "seq", (double)cs.last_seq);
    cJSON *fps = cJSON_AddObjectToObject(o, "fps");
    /* A push camera's target is what it offers; the shortfall is what is not served. */
    cJSON_AddNumberToObject(fps, "target", round(cs.fps_in * 100) / 100);
    cJSON_AddNumberToObject(fps, "offered", round(cs.fps_in * 100) / 100);
    cJSON_AddNumberToObject(fps, "served", round(cs.fps_served * 100) / 100);
    cJSON_AddNumberToObject(fps, "skipped", round(cs.fps_skipped * 100) / 100);
    double short_fps = cs.fps_in - cs.fps_served;
    cJSON_AddNumberToObject(fps, "shortfall", short_fps > 0 ? round(short_fps * 100) / 100 : 0);
    cJSON *fr = cJSON_AddObjectToObject(o, "frames");
    cJSON_AddNumberToObject(fr, "in", (double)cs.in);
    cJSON_AddNumberToObject(fr, "served", (double)cs.served);
    cJSON_AddNumberToObject(fr, "superseded", (double)cs.superseded);
    cJSON_AddNumberToObject(fr, "skipped", (double)cs.stale);
    cJSON_AddNumberToObject(fr, "failed", (double)cs.failed);
    cJSON_AddNumberToObject(fr, "late", (double)cs.late);
    cJSON *age = cJSON_AddObjectToObject(o, "age_ms");
    cJSON_AddNumberToObject(age, "p50", round(cs.age_p50_ms * 10) / 10);
    cJSON_AddNumberToObject(age, "p95", round(cs.age_p95_ms * 10) / 10);
    cJSON_AddNumberToObject(o, "watchers", cs.watchers);
    const char *last = slot > 0 ? gw_cameras_last_event(app->cams, slot) : NULL;
    cJSON *ev = last != NULL ? cJSON_Parse(last) : NULL;
    cJSON_AddItemToObject(o, "last", ev != NULL ? ev : cJSON_CreateNull());
    if (slot > 0)
        gw_pull_describe(app->pull, cs.name, now, o);
    return o;
}

/* GET /v1/cameras: every camera, "other" (cameras beyond max_cameras) if it saw frames,
 * and per model the demand against what the pool may grow to. */
static char *cameras_json(app_t *app)
{
    uint64_t now = uv_now(&app->loop);
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "cameras");
    for (int i = 1; i <= gw_cameras_count(app->cams); i++)
        cJSON_AddItemToArray(arr, camera_json(app, i, now));
    gw_camera_stats_t other;
    gw_cameras_stats(app->cams, 0, now, &other);
    cJSON_AddItemToObject(root, "other", other.in > 0 ? camera_json(app, 0, now)
                                                      : cJSON_CreateNull());
    cJSON *pools = cJSON_AddArrayToObject(root, "models");
    for (int i = 0; i < app->nmodels; i++) {
        model_t *m = &app->models[i];
        gw_pool_stats_t st;
        gw_pool_stats(m->pool, &st);
        double demand = st.svc_ms > 0 ? model_demand(app, m, st.svc_ms) : 0;
        double per_backend = m->model->target_inflight_per_backend;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", m->model->name);
        cJSON_AddNumberToObject(o, "service_ms", round(st.svc_ms * 10) / 10);
        cJSON_AddNumberToObject(o, "demand_backends", round(demand / per_backend * 100) / 100);
        cJSON_AddNumberToObject(o, "backends_ready", st.ready);
        cJSON_AddNumberToObject(o, "max", st.max);
        /* The cameras want more than max_backends can give: the shortfall stays. */
        cJSON_AddBoolToObject(o, "limited_by_max_backends", demand / per_backend > st.max);
        cJSON_AddNumberToObject(o, "superseded", (double)st.superseded);
        cJSON_AddNumberToObject(o, "skipped", (double)st.stale);
        cJSON_AddItemToArray(pools, o);
    }
    cJSON_AddNumberToObject(root, "stream_dropped", (double)app->streams.dropped);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

static char *dup_printf(size_t *len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *dup_printf(size_t *len, const char *fmt, ...)
{
    va_list ap;
    char *out = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    *len = (size_t)n;
    return out;
}

static char *json_escape_dup(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n * 6 + 1), *p = out;
    if (out == NULL)
        return NULL;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            p += sprintf(p, "\\%c", c);
        else if (c < 0x20)
            p += sprintf(p, "\\u%04x", c);
        else
            *p++ = (char)c;
    }
    *p = '\0';
    return out;
}

static char *render_metrics(app_t *app, size_t *len);

static int app_readyz(app_t *app, char *why, size_t cap);

/* GET /v1/models: every model with its settings and its pool's state. */
static char *models_json(app_t *app)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "default", app->def->model->name);
    cJSON *arr = cJSON_AddArrayToObject(root, "models");
    for (int i = 0; i < app->nmodels; i++) {
        const model_t *m = &app->models[i];
        gw_pool_stats_t st;
        gw_pool_stats(m->pool, &st);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", m->model->name);
        cJSON_AddBoolToObject(o, "default", m->is_default);
        if (st.kind[0] != '\0')
            cJSON_AddStringToObject(o, "kind", st.kind);
        else
            cJSON_AddNullToObject(o, "kind"); /* known once a backend has answered */
        cJSON_AddStringToObject(o, "preprocess",
                                m->model->preprocess == GW_PRE_FACEAPI ? "faceapi" : "darknet");
        cJSON_AddNumberToObject(o, "input_size", m->model->input_size);
        cJSON_AddNumberToObject(o, "threshold", m->model->threshold);
        cJSON_AddBoolToObject(o, "ready", st.ready > 0);
        cJSON_AddNumberToObject(o, "backends_ready", st.ready);
        cJSON_AddNumberToObject(o, "starting", st.starting);
        cJSON_AddNumberToObject(o, "min", st.min);
        cJSON_AddNumberToObject(o, "max", st.max);
        cJSON_AddNumberToObject(o, "desired", st.desired);
        cJSON_AddNumberToObject(o, "queued", st.queued);
        cJSON_AddNumberToObject(o, "in_flight", st.inflight);
        cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* GET /v1/backends: the totals over every pool (the shape bench/ and the tests read), each
 * model's own pool document under "models", and every backend (each names its model). */
static char *backends_json(app_t *app)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *models = cJSON_CreateArray(), *all = cJSON_CreateArray();
    int desired = 0, min = 0, max = 0, queued = 0, inflight = 0, failures = 0;
    const char *provider = app->def->model->provider; /* the default model's */
    cJSON *last_error = NULL; /* the default model's, else the first model's that has one */
    cJSON *provider_error = NULL; /* a cloud provider's last API error, chosen the same way */
    for (int i = 0; i < app->nmodels; i++) {
        char *doc = gw_pool_backends_json(app->models[i].pool);
        cJSON *p = doc != NULL ? cJSON_Parse(doc) : NULL;
        free(doc);
        if (p == NULL)
            continue;
        desired += cJSON_GetObjectItem(p, "desired")->valueint;
        min += cJSON_GetObjectItem(p, "min")->valueint;
        max += cJSON_GetObjectItem(p, "max")->valueint;
        queued += cJSON_GetObjectItem(p, "queued")->valueint;
        inflight += cJSON_GetObjectItem(p, "inflight")->valueint;
        failures += cJSON_GetObjectItem(p, "consecutive_start_failures")->valueint;
        const cJSON *le = cJSON_GetObjectItem(p, "last_error");
        const cJSON *pe = cJSON_GetObjectItem(p, "provider_error");
        if (cJSON_IsString(pe) && (provider_error == NULL || app->models[i].is_default)) {
            cJSON_Delete(provider_error);
            provider_error = cJSON_CreateString(pe->valuestring);
        }
        if (cJSON_IsString(le) && (last_error == NULL || app->models[i].is_default)) {
            cJSON_Delete(last_error);
            last_error = cJSON_CreateString(le->valuestring);
        }
        cJSON *bes = cJSON_DetachItemFromObject(p, "backends");
        cJSON *be;
        while (bes != NULL && (be = cJSON_DetachItemFromArray(bes, 0)) != NULL)
            cJSON_AddItemToArray(all, be);
        cJSON_Delete(bes);
        cJSON_AddStringToObject(p, "model", app->models[i].model->name);
        cJSON_AddItemToArray(models, p);
    }
    cJSON_AddNumberToObject(root, "desired", desired);
    cJSON_AddNumberToObject(root, "min", min);
    cJSON_AddNumberToObject(root, "max", max);
    cJSON_AddNumberToObject(root, "queued", queued);
    cJSON_AddNumberToObject(root, "inflight", inflight);
    cJSON_AddStringToObject(root, "provider", provider);
    char why[600];
    gw_pool_stats_t def;
    gw_pool_stats(app->def->pool, &def);
    if (app_readyz(app, why, sizeof why) && def.ready > 0)
        cJSON_AddNullToObject(root, "not_ready_reason");
    else
        cJSON_AddStringToObject(root, "not_ready_reason", why);
    cJSON_AddNumberToObject(root, "consecutive_start_failures", failures);
    cJSON_AddItemToObject(root, "last_error", last_error != NULL ? last_error : cJSON_CreateNull());
    cJSON_AddItemToObject(root, "provider_error",
                          provider_error != NULL ? provider_error : cJSON_CreateNull());
    cJSON_AddItemToObject(root, "models", models);
    cJSON_AddItemToObject(root, "backends", all);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* Ready when a frame for the default model sent now will be served (gw_pool_readyz: a
 * backend ready or starting, or scaled to zero and able to start one). Other models never
 * block it: one that fails to start must not take the default model's traffic away behind
 * a load balancer. */
static int app_readyz(app_t *app, char *why, size_t cap)
{
    char inner[512];
    int ok = gw_pool_readyz(app->def->pool, inner, sizeof inner);
    snprintf(why, cap, "default model '%s': %s", app->def->model->name, inner);
    return ok;
}

static void on_readyz(void *ctx, gw_req_t *req)
{
    app_t *app = ctx;
    char why[600], retry[64];
    gw_pool_stats_t st;
    int ok = app_readyz(app, why, sizeof why);
    gw_pool_stats(app->def->pool, &st);
    char *esc = json_escape_dup(why);
    size_t len = 0;
    char *body = dup_printf(&len,
                            "{\"ready\":%s,\"model\":\"%s\",\"backends_ready\":%d,"
                            "\"starting\":%d,\"reason\":\"%s\"}",
                            ok ? "true" : "false", app->def->model->name, st.ready, st.starting,
                            esc != NULL ? esc : "");
    free(esc);
    gw_respond(req, ok ? 200 : 503, "application/json", body, len,
               gw_retry_after(req, !ok, retry, sizeof retry));
}

static void respond_json(gw_req_t *req, char *text)
{
    gw_respond(req, 200, "application/json", text, text != NULL ? strlen(text) : 0, NULL);
}

static void on_backends(void *ctx, gw_req_t *req)
{
    respond_json(req, backends_json(ctx));
}

static void on_cameras(void *ctx, gw_req_t *req)
{
    respond_json(req, cameras_json(ctx));
}

static void on_models(void *ctx, gw_req_t *req)
{
    respond_json(req, models_json(ctx));
}

static void on_metrics(void *ctx, gw_req_t *req)
{
    size_t len = 0;
    char *text = render_metrics(ctx, &len);
    gw_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
}

static void app_on_response(void *ctx, const char *route, int status, double seconds)
{
    app_t *app = ctx;
    char code[16];
    snprintf(code, sizeof code, "%d", status);
    gw_metrics_add(app->metrics, app->fam.requests, route, code, 1);
    gw_metrics_observe(app->metrics, app->fam.duration, route, NULL, seconds);
}

static void maybe_exit(app_t *app)
{
    if (app->pool_done && app->server_drained)
        uv_stop(&app->loop);
}

static void app_on_drained(void *ctx)
{
    app_t *app = ctx;
    app->server_drained = 1;
    GW_LOG_I("server_drained", "%s", "");
    maybe_exit(app);
}


/* The HTTP API: every route but the server's own /healthz. */
static const gw_server_ops_t *app_server_ops(app_t *app)
{
    const gw_route_t routes[] = {
        {"POST", "/v1/detect", "detect", gw_detect_handle, &app->detect},
        {"POST", "/v1/models/*/detect", "detect", gw_detect_handle, &app->detect},
        {"GET", "/readyz", "readyz", on_readyz, app},
        {"GET", "/metrics", "metrics", on_metrics, app},
        {"GET", "/v1/backends", "backends", on_backends, app},
        {"GET", "/v1/models", "models", on_models, app},
        {"GET", "/v1/results", "results", gw_results_on_list, &app->results},
        {"GET", "/v1/objects/**", "objects", gw_results_on_object, &app->results},
        {"GET", "/v1/storage", "storage", gw_results_on_status, &app->results},
        {"GET", "/v1/cameras", "cameras", on_cameras, app},
        {"GET", "/v1/cameras/*/events", "camera_events", gw_stream_events, &app->streams},
        {"GET", "/v1/cameras/*/latest.jpg", "camera_latest", gw_stream_latest, &app->streams},
        {"GET", "/v1/cameras/*/stream.mjpeg", "camera_mjpeg", gw_stream_mjpeg, &app->streams},
        {"POST", "/v1/jobs", "jobs", gw_jobs_on_create, app->jobs},
        {"GET", "/v1/jobs", "jobs", gw_jobs_on_list, app->jobs},
        {"GET", "/v1/jobs/**", "job", gw_jobs_on_get, app->jobs},
        {"DELETE", "/v1/jobs/*", "job", gw_jobs_on_delete, app->jobs},
        {"POST", "/v1/reset", "reset", gw_jobs_on_reset, app->jobs},
        {"GET", "/", "web", gw_web_on_file, NULL},
        {"GET", "/static/*", "web", gw_web_on_file, NULL},
    };
    _Static_assert(sizeof routes <= sizeof app->routes, "app_t.routes is too small");
    app->detect = (gw_detect_t){
        .submit = app_submit,
        .ctx = app,
        .fetch = app_fetch,
        .keep = app->nstorages > 0 ? app_keep : NULL};
    app->streams = (gw_stream_ctx_t){.cams = app->cams};
    app->results = (gw_results_t){
        .storage_of = app_storage_of, .storages = app_storages, .ctx = app};
    memcpy(app->routes, routes, sizeof routes);
    app->server_ops = (gw_server_ops_t){
        .routes = app->routes,
        .nroutes = sizeof routes / sizeof routes[0],
        .on_response = app_on_response,
        .on_drained = app_on_drained,
    };
    return &app->server_ops;
}

/* ---- metrics ---- */

static const double latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                         1,     2.5,  5,     10,   30,  60};

static void on_queue_wait(void *ctx, double seconds)
{
    model_t *m = ctx;
    gw_metrics_observe(m->app->metrics, m->app->fam.queue_wait, m->model->name, NULL, seconds);
}

static void on_scale(void *ctx, const char *direction, const char *reason)
{
    model_t *m = ctx;
    gw_metrics_add3(m->app->metrics, m->app->fam.scale, m->model->name, direction, reason, 1);
}

static void on_job_done(void *ctx, const gw_job_t *job)
{
    model_t *m = ctx;
    gw_cameras_done(m->app->cams, job, uv_now(&m->app->loop), unix_now_ms());
    if (job->err == 0)
        gw_metrics_observe(m->app->metrics, m->app->fam.infer, m->model->name, NULL,
                           job->infer_ms / 1000.0);
}

static int declare_metrics(app_t *app)
{
    gw_metrics_t *m = app->metrics;
    const int nb = (int)(sizeof latency_buckets / sizeof latency_buckets[0]);
#define D(field, type, name, help, labels, b, n)                                            \
    if ((app->fam.field = gw_metrics_declare(m, type, name, help, labels, b, n)) < 0)         \
        return app->fam.field;
    D(requests, GW_COUNTER, "framegate_requests_total", "HTTP requests answered, by route and status code.", "route,code", NULL, 0)
    D(duration, GW_HISTOGRAM, "framegate_request_duration_seconds", "Time from the end of a request to its answer.", "route", latency_buckets, nb)
    D(queue_wait, GW_HISTOGRAM, "framegate_queue_wait_seconds", "Time frames waited in the queue for a backend.", "model", latency_buckets, nb)
    D(infer, GW_HISTOGRAM, "framegate_inference_seconds", "Network time reported by the backends (forward pass + boxes + NMS).", "model", latency_buckets, nb)
    D(scale, GW_COUNTER, "framegate_scale_events_total", "Autoscaler actions, by model, direction and reason.", "model,direction,reason", NULL, 0)
    D(backends, GW_GAUGE, "framegate_backends", "Backends by model and state.", "model,state", NULL, 0)
    D(desired, GW_GAUGE, "framegate_backends_desired", "Backends the autoscaler wants.", "model", NULL, 0)
    D(min, GW_GAUGE, "framegate_backends_min", "Configured minimum backends.", "model", NULL, 0)
    D(max, GW_GAUGE, "framegate_backends_max", "Configured maximum backends.", "model", NULL, 0)
    D(inflight, GW_GAUGE, "framegate_inflight", "Frames being processed by a backend.", "model", NULL, 0)
    D(queued, GW_GAUGE, "framegate_queue_depth", "Frames waiting for a backend.", "model", NULL, 0)
    D(be_inflight, GW_GAUGE, "framegate_backend_inflight", "Frames in flight per backend.", "model,backend,state", NULL, 0)
    D(be_served, GW_GAUGE, "framegate_backend_served", "Frames answered by each running backend.", "model,backend", NULL, 0)
    D(be_failures, GW_GAUGE, "framegate_backend_failures", "Frames each running backend failed.", "model,backend", NULL, 0)
    D(retried, GW_COUNTER, "framegate_retries_total", "Frames re-dispatched after a backend failure.", "model", NULL, 0)
    D(crashes, GW_COUNTER, "framegate_backend_crashes_total", "Ready backends lost (exit or broken connection).", "model", NULL, 0)
    D(failed_starts, GW_COUNTER, "framegate_backend_failed_starts_total", "Backends that failed before becoming ready.", "model", NULL, 0)
    D(ejections, GW_COUNTER, "framegate_backend_ejections_total", "Backends ejected and replaced: answers departing from their peers' (consecutive_failures, success_rate) or silence (hung).", "model,reason", NULL, 0)
    D(suspected, GW_COUNTER, "framegate_backend_suspected_total", "Backends suspected of hanging (a frame unanswered past the model's bound): then back to ready or ejected.", "model", NULL, 0)
    D(recovered, GW_COUNTER, "framegate_backend_recovered_total", "Suspected backends that answered again and went back to ready.", "model", NULL, 0)
    D(cloud_errors, GW_COUNTER, "framegate_cloud_api_errors_total", "Cloud provider API calls that failed (each retry counts; the last error is provider_error in /v1/backends).", "model", NULL, 0)
    D(tls_failures, GW_COUNTER, "framegate_tls_handshake_failures_total", "Backend starts that failed on a refused TLS handshake (a certificate that did not verify on either side, or TLS against plain tcp).", "model", NULL, 0)
    D(cam_in, GW_COUNTER, "framegate_camera_frames_total", "Frames that named a camera, by camera (cameras beyond max_cameras: \"other\").", "camera", NULL, 0)
    D(cam_served, GW_COUNTER, "framegate_camera_frames_served_total", "Camera frames answered with a result.", "camera", NULL, 0)
    D(cam_skipped, GW_COUNTER, "framegate_camera_frames_skipped_total", "Camera frames answered without a backend: superseded by a newer frame, or stale (older than camera_max_age_ms).", "camera,reason", NULL, 0)
    D(cam_late, GW_COUNTER, "framegate_camera_results_late_total", "Results dropped from a camera's streams because a newer one was already sent.", "camera", NULL, 0)
    D(cam_age, GW_GAUGE, "framegate_camera_frame_age_seconds", "Age of a camera's answered frames (arrival to answer): the 50th and 95th percentile of the last 256.", "camera,percentile", NULL, 0)
    D(stream_dropped, GW_COUNTER, "framegate_stream_dropped_total", "Events and frames not sent to slow stream readers.", NULL, NULL, 0)
    D(connections, GW_GAUGE, "framegate_http_connections", "Open client connections.", NULL, NULL, 0)
    D(store_writes, GW_COUNTER, "framegate_store_writes_total", "Store writes, by store and result (ok, failed: each failure is retried from the spool).", "store,result", NULL, 0)
    D(store_dropped, GW_COUNTER, "framegate_store_dropped_total", "Writes dropped (spool full or absent), by store and class (input, annotated, result).", "store,class", NULL, 0)
    D(store_spool_bytes, GW_GAUGE, "framegate_store_spool_bytes", "Bytes in the spool directory, by store.", "store", NULL, 0)
    D(store_spool_objects, GW_GAUGE, "framegate_store_spool_objects", "Writes waiting in the spool directory, by store.", "store", NULL, 0)
    D(store_queued, GW_GAUGE, "framegate_store_queue_depth", "Writes waiting in memory, by store.", "store", NULL, 0)
    D(store_up, GW_GAUGE, "framegate_store_up", "1 while the store takes writes, 0 while they spool.", "store", NULL, 0)
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

/* ---- lifecycle ---- */

static void on_exit_timer(uv_timer_t *t)
{
    app_t *app = t->data;
    uv_stop(&app->loop);
}

static void on_pool_done(void *arg)
{
    app_t *app = ((model_t *)arg)->app;
    if (++app->pools_done < app->nmodels)
        return;
    app->pool_done = 1;
    GW_LOG_I("backends_stopped", "%s", "");
    maybe_exit(app);
    /* Clients that keep idle connections open must not hold the exit hostage. */
    if (!app->server_drained)
        uv_timer_start(&app->exit_timer, on_exit_timer, 2000, 0);
}

static void begin_shutdown(app_t *app, int signum)
{
    if (app->stopping) {
        GW_LOG_W("shutdown", "signal=%d note=already_stopping", signum);
        return;
    }
    app->stopping = 1;
    GW_LOG_I("shutdown", "signal=%d grace_ms=%llu", signum,
             (unsigned long long)app->cfg->shutdown_grace_ms);
    gw_server_stop(app->server);
    gw_pull_stop(app->pull); /* no more pulled frames; those out come back */
    gw_join_destroy(app->join); /* no more joins; leaves are not needed any more */
    app->join = NULL;
    for (int i = 0; i < app->nmodels; i++)
        gw_pool_shutdown(app->models[i].pool, on_pool_done, &app->models[i]);
}

/* A backend joins or leaves a registered model (join.h), on the loop. */
static int on_join(void *ctx, const gw_join_req_t *req, char *out, size_t cap)
{
    app_t *app = ctx;
    model_t *m = req->model[0] != '\0' ? find_model(app, req->model) : NULL;
    int count, rv;
    if (m == NULL) {
        snprintf(out, cap, "no model named '%s' is served", req->model);
        return PROTO_ENOMODEL;
    }
    if (m->provider->ops->joined != NULL) { /* a cloud instance we started, booted */
        if (strcmp(req->op, "leave") == 0) {
            gw_pool_release(m->pool, req->address); /* drained, then terminated */
            snprintf(out, cap, "left");
            return 0;
        }
        if (gw_remote_allowed(app->cfg, req->address, out, cap) != 0)
            return PROTO_EINVAL;
        if (m->provider->ops->joined(m->provider, req->name, req->address) != 0) {
            snprintf(out, cap, "'%s' is not an instance this gateway started for model '%s'",
                     req->name, req->model);
            return PROTO_EINVAL;
        }
        snprintf(out, cap, "joined");
        return 0;
    }
    if (strcmp(m->model->provider, "registered") != 0) {
        snprintf(out, cap, "model '%s' does not take registered backends (its provider is %s)",
                 req->model, m->model->provider);
        return PROTO_EINVAL;
    }
    if (strcmp(req->op, "leave") == 0) {
        if (gw_provider_registered_remove(m->provider, req->address, &count) != 0) {
            snprintf(out, cap, "not registered");
            return PROTO_EINVAL;
        }
        gw_pool_release(m->pool, req->address);
        gw_pool_set_bounds(m->pool, count, count);
        GW_LOG_I("backend_left", "model=%s name=%s addr=%s registered=%d", req->model,
                 req->name, req->address, count);
        snprintf(out, cap, "left");
        return 0;
    }
    proto_addr_t a;
    if (proto_addr_parse(&a, req->address) != 0 ||
        (a.kind != PROTO_ADDR_TLS && a.kind != PROTO_ADDR_TCP)) {
        snprintf(out, cap, "address must be tls+tcp://HOST:PORT (or tcp://)");
        return PROTO_EINVAL;
    }
    if (gw_remote_allowed(app->cfg, req->address, out, cap) != 0)
        return PROTO_EINVAL;
    rv = gw_provider_registered_add(m->provider, req->name[0] ? req->name : req->address,
                                    req->address, &count);
    if (rv < 0) {
        snprintf(out, cap, "%s", rv == PROTO_ETOOBIG ? "256 backends are registered already"
                                                     : proto_strerror(rv));
        return rv;
    }
    if (count > m->model->max_backends) {
        gw_provider_registered_remove(m->provider, req->address, &count);
        snprintf(out, cap, "model '%s' holds at most %d backends (max_backends)", req->model,
                 m->model->max_backends);
        return PROTO_ETOOBIG;
    }
    if (rv == 1) {
        snprintf(out, cap, "known");
        return 0;
    }
    gw_pool_set_bounds(m->pool, count, count);
    GW_LOG_I("backend_joined", "model=%s name=%s addr=%s capacity=%d registered=%d",
             req->model, req->name, req->address, req->capacity, count);
    snprintf(out, cap, "joined");
    return 0;
}

/* Backends repeat their join every 4-6 s; one silent for 30 s died without leaving (host
 * gone, SIGKILL): its registration goes, like a leave. A busy gateway answers joins late, so
 * the margin is wide. */
#define JOIN_TTL_MS 30000

static void on_join_tick(void *ctx)
{
    app_t *app = ctx;
    char addr[256];
    for (int i = 0; i < app->nmodels; i++) {
        model_t *m = &app->models[i];
        int count;
        while (gw_provider_registered_stale(m->provider, JOIN_TTL_MS, addr, sizeof addr) &&
               gw_provider_registered_remove(m->provider, addr, &count) == 0) {
            gw_pool_release(m->pool, addr);
            gw_pool_set_bounds(m->pool, count, count);
            GW_LOG_W("backend_expired", "model=%s addr=%s registered=%d why=\"no join for "
                                        "%d ms\"",
                     m->model->name, addr, count, JOIN_TTL_MS);
        }
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    app_t *app = h->data;
    gw_jobs_stop(app->jobs); /* what is not done stays pending on disk */
    begin_shutdown(h->data, signum);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static const gw_pool_hooks_t pool_hooks = {
    .on_queue_wait = on_queue_wait,
    .on_scale = on_scale,
    .on_job_done = on_job_done,
    .demand = on_demand,
};

int gw_app_run(const gw_config_t *cfg, const char *argv0)
{
    app_t app;
    int rv;

    memset(&app, 0, sizeof app);
    app.cfg = cfg;
    signal(SIGPIPE, SIG_IGN);
    if ((rv = uv_loop_init(&app.loop)) != 0) {
        GW_LOG_E("start", "error=\"%s\"", uv_strerror(rv));
        return 1;
    }
    if ((rv = gw_metrics_create(&app.metrics)) != 0 || (rv = declare_metrics(&app)) != 0 ||
        (rv = gw_cameras_create(&app.cams, cfg)) != 0) {
        GW_LOG_E("start", "error=\"%s\"", proto_strerror(rv));
        return 1;
    }
    char err[1200];
    if (gw_remote_check(cfg, err, sizeof err) != 0) {
        GW_LOG_E("start", "error=\"%s\"", err);
        return 1;
    }
    /* the loop's HTTP client: cloud providers need it from their creation */
    if ((rv = gw_fetch_create(&app.fetch, &app.loop)) != 0) {
        GW_LOG_E("start", "error=\"%s\"", proto_strerror(rv));
        return 1;
    }
    for (int i = 0; i < cfg->nmodels; i++) {
        model_t *m = &app.models[i];
        gw_provider_t *provider = NULL;
        m->app = &app;
        m->model = &cfg->models[i];
        m->is_default = strcmp(m->model->name, cfg->default_model) == 0;
        if (m->is_default)
            app.def = m;
        if (strcmp(m->model->provider, "static") == 0)
            rv = gw_provider_static_create(&provider, &app.loop, m->model, NULL);
        else if (strcmp(m->model->provider, "registered") == 0)
            rv = gw_provider_registered_create(&provider, &app.loop, NULL);
        else if (strcmp(m->model->provider, "ec2") == 0 || strcmp(m->model->provider, "gce") == 0 ||
                 strcmp(m->model->provider, "kubernetes") == 0) {
            rv = (strcmp(m->model->provider, "ec2") == 0   ? gw_provider_ec2_create
                  : strcmp(m->model->provider, "gce") == 0 ? gw_provider_gce_create
                                                           : gw_provider_kubernetes_create)(
                &provider, &app.loop, app.fetch, cfg, m->model, NULL, err, sizeof err);
            if (rv == PROTO_ECONFIG) {
                GW_LOG_E("start", "model=%s error=\"%s\"", m->model->name, err);
                return 1;
            }
        } else
            rv = gw_provider_local_create(&provider, &app.loop, cfg, m->model, argv0, NULL);
        if (rv != 0 ||
            (rv = gw_pool_create(&m->pool, &app.loop, cfg, m->model, provider, &pool_hooks, m)) !=
                0) {
            GW_LOG_E("start", "model=%s error=\"%s\"", m->model->name, proto_strerror(rv));
            return 1;
        }
        m->provider = provider;
        if (strcmp(m->model->provider, "registered") == 0)
            gw_pool_set_bounds(m->pool, 0, 0); /* until backends join */
        app.nmodels++;
    }
    if (app.def == NULL) { /* gw_config_validate makes sure of it */
        GW_LOG_E("start", "error=\"no default model\"");
        return 1;
    }
    if ((rv = gw_urlframe_init(&app.urlframe, app.fetch, cfg, err, sizeof err)) != 0 ||
        (rv = open_storages(&app, err, sizeof err)) != 0) {
        GW_LOG_E("start", "error=\"%s\"", rv == PROTO_ECONFIG ? err : proto_strerror(rv));
        return 1;
    }
    if ((rv = gw_jobs_create(&app.jobs, &app.loop, cfg, app_submit, &app, err, sizeof err)) != 0) {
        GW_LOG_E("start", "error=\"%s\"", rv == PROTO_ECONFIG ? err : proto_strerror(rv));
        return 1;
    }
    if ((rv = gw_pull_create(&app.pull, &app.loop, cfg, app.fetch, app_submit, &app)) != 0) {
        GW_LOG_E("start", "error=\"%s\"", proto_strerror(rv));
        return 1;
    }
    declare_pull_cameras(&app);
    if ((rv = gw_server_create(&app.server, &app.loop, cfg, app_server_ops(&app), &app)) != 0) {
        GW_LOG_E("start", "error=\"%s\"", proto_strerror(rv));
        return 1;
    }
    if ((rv = gw_server_start(app.server)) != 0) {
        GW_LOG_E("listen", "host=%s port=%d error=\"%s\"", cfg->listen_host, cfg->listen_port,
                 uv_strerror(rv));
        return 1;
    }
    if (cfg->join_listen[0] != '\0' &&
        gw_join_create(&app.join, &app.loop, cfg, on_join, on_join_tick, &app, err,
                       sizeof err) != 0) {
        GW_LOG_E("start", "error=\"%s\"", err);
        return 1;
    }
    uv_signal_init(&app.loop, &app.sigterm);
    uv_signal_init(&app.loop, &app.sigint);
    app.sigterm.data = app.sigint.data = &app;
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_timer_init(&app.loop, &app.exit_timer);
    app.exit_timer.data = &app;

    GW_LOG_I("listening", "host=%s port=%d models=%d default_model=%s", cfg->listen_host,
             gw_server_port(app.server), app.nmodels, cfg->default_model);
    for (int i = 0; i < app.nmodels; i++) {
        const gw_model_t *m = app.models[i].model;
        GW_LOG_I("model", "name=%s min_backends=%d max_backends=%d preprocess=%s input_size=%d",
                 m->name, m->min_backends, m->max_backends,
                 m->preprocess == GW_PRE_FACEAPI ? "faceapi" : "darknet", m->input_size);
        gw_pool_start(app.models[i].pool);
    }
    gw_jobs_start(app.jobs);
    gw_pull_start(app.pull);

    uv_run(&app.loop, UV_RUN_DEFAULT);

    /* Frames answered 503 because the shutdown grace ran out: say so in the exit status. */
    for (int i = 0; i < app.nmodels; i++) {
        gw_pool_stats_t st;
        gw_pool_stats(app.models[i].pool, &st);
        if (st.abandoned > 0) {
            GW_LOG_W("exit", "model=%s abandoned=%llu note=shutdown_grace_expired",
                     app.models[i].model->name, (unsigned long long)st.abandoned);
            app.exit_code = 1;
        }
    }
    /* the writer first (what is still in memory goes to the spool), then the HTTP client,
     * whose cancelled URL fetches still answer their requests on the live server */
    for (int i = 0; i < app.nstorages; i++)
        gw_storage_destroy(app.storages[i]);
    for (int i = 0; i < app.nmodels; i++)
        app.models[i].storage = NULL; /* a late job keeps nothing */
    app.nstorages = 0;
    gw_pull_stop(app.pull); /* its transfers go before the HTTP client */
    gw_fetch_destroy(app.fetch);
    gw_server_destroy(app.server); /* closes the streams, which leave the cameras' watches */
    for (int i = 0; i < app.nmodels; i++)
        gw_pool_destroy(app.models[i].pool);
    gw_jobs_destroy(app.jobs); /* after the pools: every frame is back */
    gw_pull_destroy(app.pull);
    gw_cameras_destroy(app.cams);
    uv_walk(&app.loop, close_walk, NULL);
    uv_run(&app.loop, UV_RUN_DEFAULT);
    uv_loop_close(&app.loop);
    gw_metrics_destroy(app.metrics);
    GW_LOG_I("exit", "code=%d", app.exit_code);
    return app.exit_code;
}
