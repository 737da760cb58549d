/* The JSON status routes: GET /readyz, /v1/backends, /v1/models and /v1/cameras, built
 * from the pools', cameras' and stores' state at each request. Loop thread. */
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

static cJSON *camera_json(app_t *app, int slot, uint64_t now)
{
    gw_camera_stats_t cs;
    gw_cameras_stats(app->cams, slot, now, &cs);
    app_model_t *m = gw__app_camera_model(app, &cs);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", cs.name);
    cJSON_AddStringToObject(o, "source", "push");
    cJSON_AddStringToObject(o, "state", cs.live ? "live" : "idle");
    cJSON_AddStringToObject(o, "model", m != NULL ? m->model->name : cs.model);
    int weight;
    uint64_t max_age;
    gw__app_camera_settings(app, cs.name, &weight, &max_age);
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
    cJSON_AddItemToObject(root, "other",
                          other.in > 0 ? camera_json(app, 0, now) : cJSON_CreateNull());
    cJSON *pools = cJSON_AddArrayToObject(root, "models");
    for (int i = 0; i < app->nmodels; i++) {
        app_model_t *m = &app->models[i];
        gw_pool_stats_t st;
        gw_pool_stats(m->pool, &st);
        double demand = st.svc_ms > 0 ? gw__app_model_demand(app, m, st.svc_ms) : 0;
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

static int app_readyz(app_t *app, char *why, size_t cap);

/* GET /v1/models: every model with its settings and its pool's state. */
static char *models_json(app_t *app)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "default", app->def->model->name);
    cJSON *arr = cJSON_AddArrayToObject(root, "models");
    for (int i = 0; i < app->nmodels; i++) {
        const app_model_t *m = &app->models[i];
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
    cJSON *last_error = NULL;     /* the default model's, else the first model's that has one */
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

void gw__app_on_readyz(void *ctx, gw_req_t *req)
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

void gw__app_on_backends(void *ctx, gw_req_t *req)
{
    respond_json(req, backends_json(ctx));
}

void gw__app_on_cameras(void *ctx, gw_req_t *req)
{
    respond_json(req, cameras_json(ctx));
}

void gw__app_on_models(void *ctx, gw_req_t *req)
{
    respond_json(req, models_json(ctx));
}
