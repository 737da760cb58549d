/* The gateway application: start-up (models, pools, stores, cameras, jobs, the server and
 * the join listener), the route table, the hooks that tie the pools to the rest, signals and
 * the orderly shutdown. Loop thread. The JSON status routes are in app_json.c, the metrics in
 * app_metrics.c; app_internal.h holds the app_t they share. */
#include "app.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cjson/cJSON.h>

#include "addr.h"
#include "err.h"
#include "join.h"
#include "auth.h"
#include "fetch.h"
#include "frontdoor.h"
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

app_model_t *gw__app_find_model(app_t *app, const char *name)
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
void gw__app_camera_settings(const app_t *app, const char *name, int *weight, uint64_t *max_age)
{
    const gw_camera_cfg_t *cc = gw_config_camera(app->cfg, name);
    *weight = cc != NULL && cc->weight > 0 ? cc->weight : app->cfg->camera_weight;
    *max_age =
        cc != NULL && cc->max_age_ms >= 0 ? (uint64_t)cc->max_age_ms : app->cfg->camera_max_age_ms;
}

/* A camera's first frame (or a pull camera's declaration): its [camera NAME] settings go to
 * every pool's queue. */
static void camera_created(app_t *app, int slot, const char *name)
{
    int weight;
    uint64_t max_age;
    gw__app_camera_settings(app, name, &weight, &max_age);
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
    app_model_t *m = gw__app_find_model(app, job->opts.model);
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
    app_model_t *m = gw__app_find_model(ctx, job->model_name);
    if (m != NULL)
        gw_storage_keep(m->storage, job, result);
}

static int app_storage_of(void *ctx, const char *model, gw_storage_t **out)
{
    app_model_t *m = gw__app_find_model(ctx, model);
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
            app_model_t *m = &app->models[i];
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

/* The model a camera's frames go to. */
app_model_t *gw__app_camera_model(app_t *app, const gw_camera_stats_t *cs)
{
    return gw__app_find_model(app, cs->model);
}

/* A pool's camera demand in frames in flight: what its cameras offer (fps) times the
 * model's service time. Only cameras that lose frames (superseded, stale) count: one whose
 * every frame is served is already in the pool's in-flight count, and counting it again
 * (its fps x service time is its in-flight frames, by Little's law) would keep a pool from
 * ever scaling in under closed-loop clients. */
double gw__app_model_demand(app_t *app, const app_model_t *m, double svc_ms)
{
    uint64_t now = uv_now(&app->loop);
    double d = 0;
    for (int i = 0; i <= gw_cameras_count(app->cams); i++) {
        gw_camera_stats_t cs;
        gw_cameras_stats(app->cams, i, now, &cs);
        if (gw__app_camera_model(app, &cs) == m && cs.fps_skipped > 0)
            d += cs.fps_in * svc_ms / 1000.0;
    }
    return d;
}

static double on_demand(void *ctx)
{
    app_model_t *m = ctx;
    gw_pool_stats_t st;
    gw_pool_stats(m->pool, &st);
    double cams = st.svc_ms > 0 ? gw__app_model_demand(m->app, m, st.svc_ms) : 0;
    /* A batch's frames not yet done are demand too: a big upload scales the pool out. */
    return cams + gw_jobs_pending(m->app->jobs, m->model->name, m->is_default);
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
    /* Who may use each route (auth.h). A camera token is bound to its cameras: the routes
     * whose '*' is a camera say GW_ALLOW_OWN_CAMERA (the front door checks it); those that
     * take a camera from the query or body (detect, results) allow GW_ROLE_CAMERA and their
     * handler checks it with gw_frontdoor_camera. */
    const gw_route_t routes[] = {
        {"POST", "/v1/detect", "detect", gw_detect_handle, &app->detect, GW_ROLE_CAMERA},
        {"POST", "/v1/models/*/detect", "detect", gw_detect_handle, &app->detect, GW_ROLE_CAMERA},
        {"GET", "/readyz", "readyz", gw__app_on_readyz, app, 0},
        {"GET", "/metrics", "metrics", gw__app_on_metrics, app, GW_ROLE_ADMIN},
        {"GET", "/v1/backends", "backends", gw__app_on_backends, app, GW_ROLE_ADMIN},
        {"GET", "/v1/models", "models", gw__app_on_models, app, GW_ROLE_ADMIN},
        /* a camera token: its own cameras' (results.c checks ?camera=) */
        {"GET", "/v1/results", "results", gw_results_on_list, &app->results,
         GW_ROLE_VIEWER | GW_ROLE_CAMERA},
        {"GET", "/v1/objects/**", "objects", gw_results_on_object, &app->results,
         GW_ROLE_VIEWER | GW_ALLOW_OWN_CAMERA | GW_OWN_CAMERA_KEY},
        {"GET", "/v1/storage", "storage", gw_results_on_status, &app->results, GW_ROLE_VIEWER},
        {"GET", "/v1/cameras", "cameras", gw__app_on_cameras, app, GW_ROLE_VIEWER},
        {"GET", "/v1/cameras/*/events", "camera_events", gw_stream_events, &app->streams,
         GW_ROLE_VIEWER | GW_ALLOW_OWN_CAMERA},
        {"GET", "/v1/cameras/*/latest.jpg", "camera_latest", gw_stream_latest, &app->streams,
         GW_ROLE_VIEWER | GW_ALLOW_OWN_CAMERA},
        {"GET", "/v1/cameras/*/stream.mjpeg", "camera_mjpeg", gw_stream_mjpeg, &app->streams,
         GW_ROLE_VIEWER | GW_ALLOW_OWN_CAMERA},
        {"POST", "/v1/jobs", "jobs", gw_jobs_on_create, app->jobs, GW_ROLE_CAMERA},
        {"GET", "/v1/jobs", "jobs", gw_jobs_on_list, app->jobs, GW_ROLE_VIEWER | GW_ROLE_CAMERA},
        {"GET", "/v1/jobs/**", "job", gw_jobs_on_get, app->jobs, GW_ROLE_VIEWER | GW_ROLE_CAMERA},
        {"DELETE", "/v1/jobs/*", "job", gw_jobs_on_delete, app->jobs, GW_ROLE_ADMIN},
        {"POST", "/v1/reset", "reset", gw_jobs_on_reset, app->jobs, GW_ROLE_ADMIN},
        {"GET", "/", "web", gw_web_on_file, NULL, GW_ROLE_VIEWER},
        {"GET", "/static/*", "web", gw_web_on_file, NULL, 0},
    };
    _Static_assert(sizeof routes <= sizeof app->routes, "app_t.routes is too small");
    app->detect = (gw_detect_t){.submit = app_submit,
                                .ctx = app,
                                .fetch = app_fetch,
                                .keep = app->nstorages > 0 ? app_keep : NULL};
    app->streams = (gw_stream_ctx_t){.cams = app->cams};
    app->results =
        (gw_results_t){.storage_of = app_storage_of, .storages = app_storages, .ctx = app};
    memcpy(app->routes, routes, sizeof routes);
    app->server_ops = (gw_server_ops_t){
        .routes = app->routes,
        .nroutes = sizeof routes / sizeof routes[0],
        .on_response = gw__app_on_response,
        .on_drained = app_on_drained,
        .admit = gw_frontdoor_admit,
        .connect = gw_frontdoor_connect,
        .disconnect = gw_frontdoor_disconnect,
        .door = app->door,
    };
    return &app->server_ops;
}

/* ---- lifecycle ---- */

static void on_exit_timer(uv_timer_t *t)
{
    app_t *app = t->data;
    uv_stop(&app->loop);
}

static void on_pool_done(void *arg)
{
    app_t *app = ((app_model_t *)arg)->app;
    if (++app->pools_done < app->nmodels)
        return;
    app->pool_done = 1;
    GW_LOG_I("backends_stopped", "%s", "");
    maybe_exit(app);
    /* Clients that keep idle connections open must not hold the exit hostage. */
    if (!app->server_drained)
        uv_timer_start(&app->exit_timer, on_exit_timer, 2000, 0);
}

/* Every wait of the shutdown is bounded (the frames' grace, then each backend's stop grace,
 * then 2 s for idle clients); one that outlives them all is a bug, and must not hold a
 * service manager's restart hostage. Its own thread: the loop may be what is stuck. The
 * process normally exits long before the thread wakes. */
static uint64_t watchdog_ms; /* set before the thread starts, read by it only */

static void exit_watchdog(void *arg)
{
    (void)arg;
    uint64_t ms = watchdog_ms;
    uv_sleep((unsigned)(ms > 0xffffffffu ? 0xffffffffu : ms));
    GW_LOG_E("exit_forced", "after_ms=%llu why=\"the shutdown did not finish within its graces\"",
             (unsigned long long)ms);
    _exit(2);
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
    watchdog_ms = app->cfg->shutdown_grace_ms + app->cfg->stop_grace_ms + 15000;
    if (uv_thread_create(&app->watchdog, exit_watchdog, NULL) != 0)
        GW_LOG_W("shutdown", "note=\"no exit watchdog (thread)\"");
    gw_server_stop(app->server);
    gw_pull_stop(app->pull);    /* no more pulled frames; those out come back */
    gw_join_destroy(app->join); /* no more joins; leaves are not needed any more */
    app->join = NULL;
    for (int i = 0; i < app->nmodels; i++)
        gw_pool_shutdown(app->models[i].pool, on_pool_done, &app->models[i]);
}

/* A backend joins or leaves a registered model (join.h), on the loop. */
static int on_join(void *ctx, const gw_join_req_t *req, char *out, size_t cap)
{
    app_t *app = ctx;
    app_model_t *m = req->model[0] != '\0' ? gw__app_find_model(app, req->model) : NULL;
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
        GW_LOG_I("backend_left", "model=%s name=%s addr=%s registered=%d", req->model, req->name,
                 req->address, count);
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
        snprintf(out, cap, "%s",
                 rv == PROTO_ETOOBIG ? "256 backends are registered already" : proto_strerror(rv));
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
    GW_LOG_I("backend_joined", "model=%s name=%s addr=%s capacity=%d registered=%d", req->model,
             req->name, req->address, req->capacity, count);
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
        app_model_t *m = &app->models[i];
        int count;
        while (gw_provider_registered_stale(m->provider, JOIN_TTL_MS, addr, sizeof addr) &&
               gw_provider_registered_remove(m->provider, addr, &count) == 0) {
            gw_pool_release(m->pool, addr);
            gw_pool_set_bounds(m->pool, count, count);
            GW_LOG_W("backend_expired",
                     "model=%s addr=%s registered=%d why=\"no join for "
                     "%d ms\"",
                     m->model->name, addr, count, JOIN_TTL_MS);
        }
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    app_t *app = h->data;
    gw_jobs_stop(app->jobs); /* what is not done stays pending in the jobs store */
    begin_shutdown(h->data, signum);
}

/* SIGHUP: the token file and the HTTPS certificate again, without dropping anything. */
static void on_sighup(uv_signal_t *h, int signum)
{
    app_t *app = h->data;
    (void)signum;
    gw_frontdoor_reload(app->door);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static const gw_pool_hooks_t pool_hooks = {
    .on_queue_wait = gw__app_on_queue_wait,
    .on_scale = gw__app_on_scale,
    .on_job_done = gw__app_on_job_done,
    .demand = on_demand,
};

/* One provider of `kind` for `model` (PROTO_ECONFIG: the reason in err). Loop thread. */
static int create_provider(app_t *app, const char *kind, const gw_model_t *model, const char *argv0,
                           gw_provider_t **out, char *err, size_t cap)
{
    if (strcmp(kind, "static") == 0)
        return gw_provider_static_create(out, &app->loop, model, NULL);
    if (strcmp(kind, "registered") == 0)
        return gw_provider_registered_create(out, &app->loop, NULL);
    if (strcmp(kind, "ec2") == 0)
        return gw_provider_ec2_create(out, &app->loop, app->fetch, app->cfg, model, NULL, err, cap);
    if (strcmp(kind, "gce") == 0)
        return gw_provider_gce_create(out, &app->loop, app->fetch, app->cfg, model, NULL, err, cap);
    if (strcmp(kind, "kubernetes") == 0)
        return gw_provider_kubernetes_create(out, &app->loop, app->fetch, app->cfg, model, NULL,
                                             err, cap);
    return gw_provider_local_create(out, &app->loop, app->cfg, model, argv0, NULL);
}

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
    if ((rv = gw_metrics_create(&app.metrics)) != 0 || (rv = gw__app_declare_metrics(&app)) != 0 ||
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
        app_model_t *m = &app.models[i];
        gw_provider_t *provider = NULL;
        m->app = &app;
        m->model = &cfg->models[i];
        m->is_default = strcmp(m->model->name, cfg->default_model) == 0;
        if (m->is_default)
            app.def = m;
        if (m->model->ntiers > 0) { /* providers = local:2, ec2:18 */
            gw_provider_t *tiers[GW_TIERS_MAX] = {NULL};
            int t = 0;
            for (rv = 0; t < m->model->ntiers && rv == 0; t++)
                rv = create_provider(&app, m->model->tier_kind[t], m->model, argv0, &tiers[t], err,
                                     sizeof err);
            if (rv == 0)
                rv = gw_provider_tiers_create(&provider, tiers, m->model->tier_max, t, NULL);
            if (rv != 0)
                for (int k = 0; k < t; k++)
                    if (tiers[k] != NULL)
                        tiers[k]->ops->destroy(tiers[k]);
        } else {
            rv = create_provider(&app, m->model->provider, m->model, argv0, &provider, err,
                                 sizeof err);
        }
        if (rv == PROTO_ECONFIG) {
            GW_LOG_E("start", "model=%s error=\"%s\"", m->model->name, err);
            return 1;
        }
        if (rv != 0 || (rv = gw_pool_create(&m->pool, &app.loop, cfg, m->model, provider,
                                            &pool_hooks, m)) != 0) {
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
    gw_jobs_io_t jobs_io = {.submit = app_submit,
                            .fetch = app_fetch,
                            .storage_of = app_storage_of,
                            .ctx = &app,
                            .http = app.fetch};
    if ((rv = gw_jobs_create(&app.jobs, &app.loop, cfg, &jobs_io, err, sizeof err)) != 0) {
        GW_LOG_E("start", "error=\"%s\"", rv == PROTO_ECONFIG ? err : proto_strerror(rv));
        return 1;
    }
    if ((rv = gw_frontdoor_create(&app.door, &app.loop, cfg, app.metrics, err, sizeof err)) != 0) {
        GW_LOG_E("start", "error=\"%s\"", rv == PROTO_ECONFIG ? err : proto_strerror(rv));
        return 1;
    }
    if ((rv = gw_pull_create(&app.pull, &app.loop, cfg, app.fetch, app_submit,
                             app.nstorages > 0 ? app_keep : NULL, &app)) != 0) {
        GW_LOG_E("start", "error=\"%s\"", proto_strerror(rv));
        return 1;
    }
    declare_pull_cameras(&app);
    if ((rv = gw_server_create(&app.server, &app.loop, cfg, app_server_ops(&app), &app)) != 0) {
        GW_LOG_E("start", "error=\"%s\"", proto_strerror(rv));
        return 1;
    }
    if ((rv = gw_frontdoor_listen(app.door, app.server, err, sizeof err)) != 0 ||
        (rv = gw_frontdoor_metrics(app.door, gw__app_on_metrics, &app, err, sizeof err)) != 0) {
        GW_LOG_E("listen", "error=\"%s\"", err);
        return 1;
    }
    if (cfg->join_listen[0] != '\0' && gw_join_create(&app.join, &app.loop, cfg, on_join,
                                                      on_join_tick, &app, err, sizeof err) != 0) {
        GW_LOG_E("start", "error=\"%s\"", err);
        return 1;
    }
    uv_signal_init(&app.loop, &app.sigterm);
    uv_signal_init(&app.loop, &app.sigint);
    app.sigterm.data = app.sigint.data = &app;
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_signal_init(&app.loop, &app.sighup);
    app.sighup.data = &app;
    uv_signal_start(&app.sighup, on_sighup, SIGHUP);
    uv_unref((uv_handle_t *)&app.sighup);
    uv_timer_init(&app.loop, &app.exit_timer);
    app.exit_timer.data = &app;

    GW_LOG_I("started", "host=%s port=%d models=%d default_model=%s", cfg->listen_host,
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
    gw_pull_stop(app.pull);  /* its transfers go before the HTTP client */
    gw_jobs_close(app.jobs); /* so does the jobs store (s3://: the same client) */
    gw_fetch_destroy(app.fetch);
    gw_server_destroy(app.server); /* closes the streams, which leave the cameras' watches */
    gw_frontdoor_destroy(app.door);
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
