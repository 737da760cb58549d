#include "app.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "err.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "provider.h"
#include "server.h"

typedef struct {
    uv_loop_t loop;
    const gw_config_t *cfg;
    gw_server_t *server;
    gw_pool_t *pool;
    gw_metrics_t *metrics;
    struct {
        int requests, duration, queue_wait, scale, backends, desired, min, max, inflight, queued,
            be_inflight, be_served, infer, be_failures, retried, crashes, failed_starts, connections;
    } fam;
    uv_signal_t sigterm, sigint;
    uv_timer_t exit_timer;
    int stopping;
    int pool_done, server_drained;
    int exit_code;
} app_t;

/* ---- server ops ---- */

static int app_submit(void *ctx, gw_job_t *job)
{
    app_t *app = ctx;
    return gw_pool_submit(app->pool, job);
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

static int app_get(void *ctx, const char *path, const char *query, gw_reply_t *out)
{
    app_t *app = ctx;
    (void)query;
    if (strcmp(path, "/readyz") == 0) {
        char why[512];
        out->content_type = "application/json";
        if (gw_pool_readyz(app->pool, why, sizeof why)) {
            gw_pool_stats_t st;
            gw_pool_stats(app->pool, &st);
            out->status = 200;
            out->body = dup_printf(&out->body_len, "{\"ready\":true,\"backends_ready\":%d}",
                                   st.ready);
        } else {
            char *esc = json_escape_dup(why);
            out->status = 503;
            out->retry_after_s = app->cfg->retry_after_s;
            out->body = dup_printf(&out->body_len, "{\"ready\":false,\"reason\":\"%s\"}",
                                   esc != NULL ? esc : "");
            free(esc);
        }
        return 0;
    }
    if (strcmp(path, "/v1/backends") == 0) {
        out->status = 200;
        out->content_type = "application/json";
        out->body = gw_pool_backends_json(app->pool);
        out->body_len = out->body != NULL ? strlen(out->body) : 0;
        return 0;
    }
    if (strcmp(path, "/v1/models") == 0) {
        gw_pool_stats_t st;
        gw_pool_stats(app->pool, &st);
        char *name = json_escape_dup(app->cfg->model_name);
        out->status = 200;
        out->content_type = "application/json";
        out->body = dup_printf(&out->body_len,
                               "{\"default\":\"%s\",\"models\":[{\"name\":\"%s\",\"ready\":%s,"
                               "\"backends_ready\":%d,\"min\":%d,\"max\":%d}]}",
                               name ? name : "", name ? name : "", st.ready > 0 ? "true" : "false",
                               st.ready, st.min, st.max);
        free(name);
        return 0;
    }
    if (strcmp(path, "/metrics") == 0) {
        out->status = 200;
        out->content_type = "text/plain; version=0.0.4; charset=utf-8";
        out->body = render_metrics(app, &out->body_len);
        return 0;
    }
    return -1;
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

static const gw_server_ops_t server_ops = {
    .submit = app_submit,
    .get = app_get,
    .on_response = app_on_response,
    .on_drained = app_on_drained,
};

/* ---- metrics ---- */

static const double latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                         1,     2.5,  5,     10,   30,  60};

static void on_queue_wait(void *ctx, double seconds)
{
    app_t *app = ctx;
    gw_metrics_observe(app->metrics, app->fam.queue_wait, NULL, NULL, seconds);
}

static void on_scale(void *ctx, const char *direction, const char *reason)
{
    app_t *app = ctx;
    gw_metrics_add(app->metrics, app->fam.scale, direction, reason, 1);
}

static void on_job_done(void *ctx, const gw_job_t *job)
{
    app_t *app = ctx;
    if (job->http_status == 200)
        gw_metrics_observe(app->metrics, app->fam.infer, NULL, NULL, job->infer_ms / 1000.0);
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
    D(queue_wait, GW_HISTOGRAM, "framegate_queue_wait_seconds", "Time frames waited in the queue for a backend.", NULL, latency_buckets, nb)
    D(infer, GW_HISTOGRAM, "framegate_inference_seconds", "Network time reported by the backends (forward pass + boxes + NMS).", NULL, latency_buckets, nb)
    D(scale, GW_COUNTER, "framegate_scale_events_total", "Autoscaler actions, by direction and reason.", "direction,reason", NULL, 0)
    D(backends, GW_GAUGE, "framegate_backends", "Backends by state.", "state", NULL, 0)
    D(desired, GW_GAUGE, "framegate_backends_desired", "Backends the autoscaler wants.", NULL, NULL, 0)
    D(min, GW_GAUGE, "framegate_backends_min", "Configured minimum backends.", NULL, NULL, 0)
    D(max, GW_GAUGE, "framegate_backends_max", "Configured maximum backends.", NULL, NULL, 0)
    D(inflight, GW_GAUGE, "framegate_inflight", "Frames being processed by a backend.", NULL, NULL, 0)
    D(queued, GW_GAUGE, "framegate_queue_depth", "Frames waiting for a backend.", NULL, NULL, 0)
    D(be_inflight, GW_GAUGE, "framegate_backend_inflight", "Frames in flight per backend.", "backend,state", NULL, 0)
    D(be_served, GW_GAUGE, "framegate_backend_served", "Frames answered by each running backend.", "backend", NULL, 0)
    D(be_failures, GW_GAUGE, "framegate_backend_failures", "Frames each running backend failed.", "backend", NULL, 0)
    D(retried, GW_COUNTER, "framegate_retries_total", "Frames re-dispatched after a backend failure.", NULL, NULL, 0)
    D(crashes, GW_COUNTER, "framegate_backend_crashes_total", "Ready backends lost (exit or broken connection).", NULL, NULL, 0)
    D(failed_starts, GW_COUNTER, "framegate_backend_failed_starts_total", "Backends that failed before becoming ready.", NULL, NULL, 0)
    D(connections, GW_GAUGE, "framegate_http_connections", "Open client connections.", NULL, NULL, 0)
#undef D
    return 0;
}

static void per_backend(void *arg, const char *name, const char *state, int inflight,
                        uint64_t served, uint64_t failures)
{
    app_t *app = arg;
    gw_metrics_set(app->metrics, app->fam.be_inflight, name, state, inflight);
    gw_metrics_set(app->metrics, app->fam.be_served, name, NULL, (double)served);
    gw_metrics_set(app->metrics, app->fam.be_failures, name, NULL, (double)failures);
}

static char *render_metrics(app_t *app, size_t *len)
{
    gw_metrics_t *m = app->metrics;
    gw_pool_stats_t st;
    gw_pool_stats(app->pool, &st);
    gw_metrics_set(m, app->fam.backends, "starting", NULL, st.starting);
    gw_metrics_set(m, app->fam.backends, "ready", NULL, st.ready);
    gw_metrics_set(m, app->fam.backends, "draining", NULL, st.draining);
    gw_metrics_set(m, app->fam.backends, "stopping", NULL, st.stopping);
    gw_metrics_set(m, app->fam.desired, NULL, NULL, st.desired);
    gw_metrics_set(m, app->fam.min, NULL, NULL, st.min);
    gw_metrics_set(m, app->fam.max, NULL, NULL, st.max);
    gw_metrics_set(m, app->fam.inflight, NULL, NULL, st.inflight);
    gw_metrics_set(m, app->fam.queued, NULL, NULL, st.queued);
    gw_metrics_set(m, app->fam.retried, NULL, NULL, (double)st.retried);
    gw_metrics_set(m, app->fam.crashes, NULL, NULL, (double)st.crashes);
    gw_metrics_set(m, app->fam.failed_starts, NULL, NULL, (double)st.failed_starts);
    gw_metrics_set(m, app->fam.connections, NULL, NULL, gw_server_connections(app->server));
    /* Backends come and go: their series are rebuilt at every scrape. */
    gw_metrics_clear(m, app->fam.be_inflight);
    gw_metrics_clear(m, app->fam.be_served);
    gw_metrics_clear(m, app->fam.be_failures);
    gw_pool_foreach(app->pool, per_backend, app);
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
    app_t *app = arg;
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
    gw_pool_shutdown(app->pool, on_pool_done, app);
}

static void on_signal(uv_signal_t *h, int signum)
{
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
};

int gw_app_run(const gw_config_t *cfg, const char *argv0)
{
    app_t app;
    gw_provider_t *provider = NULL;
    int rv;

    memset(&app, 0, sizeof app);
    app.cfg = cfg;
    signal(SIGPIPE, SIG_IGN);
    if ((rv = uv_loop_init(&app.loop)) != 0) {
        GW_LOG_E("start", "error=\"%s\"", uv_strerror(rv));
        return 1;
    }
    if ((rv = gw_provider_local_create(&provider, &app.loop, cfg, argv0, NULL)) != 0 ||
        (rv = gw_metrics_create(&app.metrics)) != 0 || (rv = declare_metrics(&app)) != 0 ||
        (rv = gw_pool_create(&app.pool, &app.loop, cfg, provider, &pool_hooks, &app)) != 0 ||
        (rv = gw_server_create(&app.server, &app.loop, cfg, &server_ops, &app)) != 0) {
        GW_LOG_E("start", "error=\"%s\"", proto_strerror(rv));
        return 1;
    }
    if ((rv = gw_server_start(app.server)) != 0) {
        GW_LOG_E("listen", "host=%s port=%d error=\"%s\"", cfg->listen_host, cfg->listen_port,
                 uv_strerror(rv));
        return 1;
    }
    uv_signal_init(&app.loop, &app.sigterm);
    uv_signal_init(&app.loop, &app.sigint);
    app.sigterm.data = app.sigint.data = &app;
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_timer_init(&app.loop, &app.exit_timer);
    app.exit_timer.data = &app;

    GW_LOG_I("listening", "host=%s port=%d min_backends=%d max_backends=%d model=%s",
             cfg->listen_host, gw_server_port(app.server), cfg->min_backends, cfg->max_backends,
             cfg->model_name);
    gw_pool_start(app.pool);

    uv_run(&app.loop, UV_RUN_DEFAULT);

    gw_server_destroy(app.server);
    gw_pool_destroy(app.pool);
    uv_walk(&app.loop, close_walk, NULL);
    uv_run(&app.loop, UV_RUN_DEFAULT);
    uv_loop_close(&app.loop);
    gw_metrics_destroy(app.metrics);
    GW_LOG_I("exit", "code=0");
    return 0;
}
