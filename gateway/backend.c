/* One backend's life, as the pool sees it: started through the provider, dialled through
 * its link, ready once it answers the readiness ping with its model's name, watched for
 * outlier answers and for silence, stopped (gracefully, or cancel-then-kill), freed when
 * its process is gone and its last operation has come back. Loop thread only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "log.h"
#include "pool_internal.h"
#include "remote.h"

const char *const gw__be_state_names[GW__BE_NSTATES] = {"starting", "ready", "draining", "suspect",
                                                        "stopping"};

static uint64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void gw__backend_set_state(gw__backend_t *be, gw__be_state_t st)
{
    be->pool->count[be->state]--;
    be->state = st;
    be->pool->count[st]++;
}

static int take_name(gw_pool_t *pool)
{
    for (int i = 1; i <= GW__MAX_NAMES; i++)
        if (!pool->names_used[i]) {
            pool->names_used[i] = 1;
            return i;
        }
    return -1;
}

static void on_timer_closed(uv_handle_t *h)
{
    gw__backend_t *be = h->data;
    gw_pool_t *pool = be->pool;
    free(be->jobs);
    free(be->sent_ms);
    free(be);
    pool->closing_handles--;
    gw__pool_check_shutdown(pool);
}

static void record_start_failure(gw_pool_t *pool, const char *name, const char *why)
{
    const gw_config_t *cfg = pool->cfg;
    pool->consecutive_failures++;
    pool->st.failed_starts++;
    double delay = (double)cfg->backoff_initial_ms * pow(2.0, pool->consecutive_failures - 1);
    if (delay > (double)cfg->backoff_max_ms)
        delay = (double)cfg->backoff_max_ms;
    pool->backoff_until = uv_now(pool->loop) + (uint64_t)delay;
    snprintf(pool->last_error, sizeof pool->last_error, "%s %s before it was ready", name, why);
    GW_LOG_W("scale",
             "direction=none reason=backoff backend=%s failures=%d retry_in_ms=%.0f "
             "why=\"%s\"",
             name, pool->consecutive_failures, delay, why);
    if (pool->hooks.on_scale)
        pool->hooks.on_scale(pool->hooks_ctx, "none", "backoff");
}

void gw__backend_abort(gw__backend_t *be)
{
    gw_pool_t *pool = be->pool;
    if (be->state != GW__BE_STOPPING)
        gw__backend_set_state(be, GW__BE_STOPPING);
    if (be->link != NULL)
        gw_link_cancel_all(be->link);
    if (be->inst != NULL)
        pool->provider->ops->stop(pool->provider, be->inst, 1);
}

static void on_stop_grace(uv_timer_t *t)
{
    gw__backend_t *be = t->data;
    if (be->inst != NULL) {
        GW_LOG_W("backend_kill", "backend=%s reason=stop_grace_expired", be->name);
        be->pool->provider->ops->stop(be->pool->provider, be->inst, 1);
    }
}

void gw__backend_stop(gw__backend_t *be, const char *reason)
{
    gw_pool_t *pool = be->pool;
    if (be->state != GW__BE_STOPPING)
        gw__backend_set_state(be, GW__BE_STOPPING);
    GW_LOG_I("backend_stopping", "backend=%s reason=%s", be->name, reason);
    if (be->link != NULL)
        gw_link_cancel(be->link, be->nslots); /* the ping */
    if (be->inst != NULL) {
        pool->provider->ops->stop(pool->provider, be->inst, 0);
        uv_timer_start(&be->timer, on_stop_grace, pool->cfg->stop_grace_ms, 0);
    }
    gw__backend_maybe_free(be);
}

void gw__backend_maybe_free(gw__backend_t *be)
{
    gw_pool_t *pool = be->pool;
    if (be->inst != NULL || (be->link != NULL && gw_link_busy(be->link) > 0) || be->timer_closing)
        return;
    gw_link_destroy(be->link);
    be->link = NULL;
    if (be->prev)
        be->prev->next = be->next;
    else
        pool->backends = be->next;
    if (be->next)
        be->next->prev = be->prev;
    pool->count[be->state]--;
    pool->names_used[be->index] = 0;
    be->timer_closing = 1;
    pool->closing_handles++;
    uv_close((uv_handle_t *)&be->timer, on_timer_closed);
}

void gw__backend_lost(gw__backend_t *be, const char *why)
{
    gw_pool_t *pool = be->pool;
    pool->st.crashes++;
    GW_LOG_W("scale", "direction=down reason=crash backend=%s inflight=%d why=\"%s\"", be->name,
             be->inflight, why);
    if (pool->hooks.on_scale)
        pool->hooks.on_scale(pool->hooks_ctx, "down", "crash");
    gw__backend_abort(be);
}

void gw__backend_on_exit(void *owner, gw_instance_t *inst, int64_t status, int sig, const char *why)
{
    gw__backend_t *be = owner;
    gw_pool_t *pool = be->pool;
    (void)inst;
    (void)status;
    (void)sig;
    be->inst = NULL;
    uv_timer_stop(&be->timer);
    /* The process is gone: its number is free for the replacement even while the
     * cancelled requests are still coming back. */
    pool->names_used[be->index] = 0;
    be->index = 0;

    if (be->state == GW__BE_STARTING)
        record_start_failure(pool, be->name, why);
    else if (be->state != GW__BE_STOPPING)
        gw__backend_lost(be, why);
    else
        GW_LOG_I("backend_stopped", "backend=%s why=\"%s\"", be->name, why);
    /* Whatever it was doing is lost: cancel, and the completions requeue the jobs. */
    gw__backend_abort(be);
    gw__backend_maybe_free(be);
    /* A replacement (or the backed-off retry) is the autoscaler's call, made now rather than
     * at the next tick so that queued jobs wait as little as possible. */
    if (!pool->shutting_down)
        gw__pool_reconcile(pool, gw_autoscale_desired(pool->scaler), "crash");
    gw__pool_dispatch(pool);
}

static void failed_start(gw__backend_t *be, const char *why)
{
    record_start_failure(be->pool, be->name, why);
    gw__backend_abort(be);
}

static void on_start_timeout(uv_timer_t *t)
{
    gw__backend_t *be = t->data;
    if (be->state != GW__BE_STARTING)
        return;
    char why[128];
    snprintf(why, sizeof why, "was not ready within %llu ms",
             (unsigned long long)be->pool->cfg->start_timeout_ms);
    failed_start(be, why);
}

/* The PONG payload is JSON describing the backend. A backend of a named model must report
 * that model: one loaded with another model's files would answer its frames wrongly. */
static void handle_pong(gw__backend_t *be, const uint8_t *body, size_t len)
{
    gw_pool_t *pool = be->pool;
    proto_rep_t rep;
    if (proto_rep_decode(&rep, body, len) != 0 || rep.type != PROTO_T_PONG || rep.status != 0) {
        GW_LOG_W("backend_bad_pong", "backend=%s", be->name);
        failed_start(be, "answered the readiness ping with garbage");
        return;
    }
    if (be->state == GW__BE_SUSPECT) {
        pool->st.recovered++;
        GW_LOG_I("backend_recovered", "backend=%s silent_ms=%llu", be->name,
                 (unsigned long long)(uv_now(pool->loop) - be->suspect_since));
        gw__backend_set_state(be, GW__BE_READY);
        return;
    }
    cJSON *info = cJSON_ParseWithLength((const char *)rep.payload, rep.payload_len);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(info, "model");
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(info, "kind");
    char why[GW_MODEL_NAME_MAX * 2 + 64] = "";
    if (pool->model != NULL && !cJSON_IsString(model))
        snprintf(why, sizeof why, "did not report its model at readiness (want '%s')", pool->name);
    else if (pool->model != NULL && strcmp(model->valuestring, pool->name) != 0)
        snprintf(why, sizeof why, "reported model '%.*s', not '%s'", GW_MODEL_NAME_MAX,
                 model->valuestring, pool->name);
    if (cJSON_IsString(model))
        snprintf(be->model, sizeof be->model, "%s", model->valuestring);
    if (why[0] == '\0' && cJSON_IsString(kind))
        snprintf(pool->kind, sizeof pool->kind, "%s", kind->valuestring);
    cJSON_Delete(info);
    if (why[0] != '\0') {
        failed_start(be, why);
        return;
    }

    uv_timer_stop(&be->timer);
    gw__backend_set_state(be, GW__BE_READY);
    be->ready_unix_ms = unix_ms();
    pool->consecutive_failures = 0;
    pool->last_error[0] = '\0';
    GW_LOG_I("backend_ready", "backend=%s instance=%s model=%s start_ms=%llu", be->name,
             be->instance_id, be->model,
             (unsigned long long)(uv_now(pool->loop) - be->started_mono));
}

static void on_ping_done(gw__backend_t *be, gw_link_status_t st, const char *why,
                         const uint8_t *body, size_t len)
{
    int heartbeat = be->heartbeat_out;
    be->ping_out = be->heartbeat_out = 0;
    if (st == GW_LINK_OK && (be->state == GW__BE_STARTING || be->state == GW__BE_SUSPECT)) {
        handle_pong(be, body, len);
    } else if (heartbeat && st != GW_LINK_OK && st != GW_LINK_CANCELLED &&
               (be->state == GW__BE_READY || be->state == GW__BE_DRAINING)) {
        char detail[160];
        snprintf(detail, sizeof detail, "no answer to a heartbeat ping within %llu ms (%s)",
                 (unsigned long long)be->pool->cfg->hung_grace_ms, why);
        gw__backend_eject(be, GW_HEALTH_HUNG, detail);
    } else if (be->state == GW__BE_SUSPECT) {
        char detail[160];
        snprintf(detail, sizeof detail, "no answer to a ping within %llu ms (%s)",
                 (unsigned long long)be->pool->cfg->hung_grace_ms, why);
        gw__backend_eject(be, GW_HEALTH_HUNG, detail);
    }
}

/* The link's completion (loop thread): the ping is ours, frames are the pool's. */
static void on_link_done(void *owner, int slot, gw_link_status_t st, const char *why,
                         const uint8_t *body, size_t len)
{
    gw__backend_t *be = owner;
    gw_pool_t *pool = be->pool;
    if (st == GW_LINK_OK)
        be->last_seen_unix_ms = unix_ms();
    if (slot == be->nslots)
        on_ping_done(be, st, why, body, len);
    else
        gw__pool_on_answer(pool, be, slot, st, why, body, len);
    gw__backend_maybe_free(be);
    gw__pool_dispatch(pool);
    gw__pool_check_shutdown(pool);
}

static int send_ping(gw__backend_t *be, uint64_t timeout_ms)
{
    proto_req_t ping = {.type = PROTO_T_PING, .id = ++be->pool->next_id};
    int rv = gw_link_send(be->link, be->nslots, &ping, timeout_ms);
    be->ping_out = rv == 0;
    return rv;
}

/* Opens the link to be->addr and sends the readiness ping (the start timer is running). */
static void dial(gw__backend_t *be)
{
    gw_pool_t *pool = be->pool;
    const gw_config_t *cfg = pool->cfg;
    int rv;
    /* Readiness: the backend answers PING only once its model is loaded and warmed up (it
     * listens only then; our dialer keeps retrying until it does). */
    char err[512];
    if ((rv = gw_link_create(&be->link, be->addr, be->nslots + 1, &pool->bridge, on_link_done,
                             be)) == 0 &&
        gw_remote_prepare(cfg, be->link, be->addr, be->tls_peer, sizeof be->tls_peer, err,
                          sizeof err) != 0) {
        GW_LOG_E("backend_refused", "backend=%s addr=%s why=\"%s\"", be->name, be->addr, err);
        failed_start(be, err);
        return;
    }
    if (rv != 0 || (rv = gw_link_start(be->link)) != 0 || (rv = send_ping(be, 0)) != 0) {
        GW_LOG_E("backend_link", "backend=%s addr=%s error=\"%s\"", be->name, be->addr,
                 proto_strerror(rv));
        gw__backend_stop(be, "link");
        return;
    }
    GW_LOG_I("backend_starting", "backend=%s instance=%s addr=%s", be->name, be->instance_id,
             be->addr);
}

/* A new backend in STARTING, named, its timer initialised; not yet in the pool. NULL when out
 * of memory or of names. */
static gw__backend_t *backend_new(gw_pool_t *pool)
{
    const gw_config_t *cfg = pool->cfg;
    gw__backend_t *be = calloc(1, sizeof *be);
    if (be == NULL)
        return NULL;
    be->pool = pool;
    be->nslots = cfg->backend_concurrency;
    be->jobs = calloc((size_t)be->nslots, sizeof *be->jobs);
    be->sent_ms = calloc((size_t)be->nslots, sizeof *be->sent_ms);
    be->index = take_name(pool);
    if (be->jobs == NULL || be->sent_ms == NULL || be->index < 0) {
        if (be->index > 0)
            pool->names_used[be->index] = 0;
        free(be->jobs);
        free(be->sent_ms);
        free(be);
        return NULL;
    }
    snprintf(be->name, sizeof be->name, "%s-instance%d", pool->name, be->index);
    snprintf(be->model, sizeof be->model, "%s", pool->model != NULL ? pool->name : "");
    be->state = GW__BE_STARTING;
    be->started_unix_ms = unix_ms();
    be->started_mono = uv_now(pool->loop);
    uv_timer_init(pool->loop, &be->timer);
    be->timer.data = be;
    return be;
}

/* Links a backend whose instance runs into the pool and arms its start timeout. */
static void backend_link(gw__backend_t *be)
{
    gw_pool_t *pool = be->pool;
    pool->provider->ops->instance_id(pool->provider, be->inst, be->instance_id,
                                     sizeof be->instance_id);
    be->next = pool->backends;
    if (pool->backends)
        pool->backends->prev = be;
    pool->backends = be;
    pool->count[GW__BE_STARTING]++;
    uv_timer_start(&be->timer, on_start_timeout, pool->cfg->start_timeout_ms, 0);
}

gw__backend_t *gw__backend_start(gw_pool_t *pool)
{
    gw__backend_t *be = backend_new(pool);
    if (be == NULL)
        return NULL;
    int rv = pool->provider->ops->start(pool->provider, be->name, be, &be->inst, be->addr,
                                        sizeof be->addr);
    if (rv != 0) {
        char why[200];
        snprintf(why, sizeof why, "could not be started (%s)", proto_strerror(rv));
        record_start_failure(pool, be->name, why);
        pool->names_used[be->index] = 0;
        be->timer_closing = 1;
        pool->closing_handles++;
        uv_close((uv_handle_t *)&be->timer, on_timer_closed);
        return NULL;
    }
    backend_link(be);
    if (be->addr[0] == '\0') { /* a cloud instance: its address comes with on_address */
        GW_LOG_I("backend_starting", "backend=%s instance=%s addr=pending", be->name,
                 be->instance_id);
        return be;
    }
    dial(be);
    return be;
}

void *gw__backend_adopt(void *ctx, gw_instance_t *inst, const char *addr)
{
    gw_pool_t *pool = ctx;
    gw__backend_t *be;
    if (pool->shutting_down || gw__pool_capacity(pool) >= pool->max ||
        strlen(addr) >= sizeof be->addr || (be = backend_new(pool)) == NULL)
        return NULL;
    be->inst = inst;
    be->adopted = 1;
    snprintf(be->addr, sizeof be->addr, "%s", addr);
    backend_link(be);
    GW_LOG_I("backend_adopted", "backend=%s instance=%s addr=%s", be->name, be->instance_id, addr);
    dial(be);
    return be;
}

void gw__backend_on_address(void *owner, gw_instance_t *inst, const char *addr)
{
    gw__backend_t *be = owner;
    gw_pool_t *pool = be->pool;
    if (be->inst != inst || be->state != GW__BE_STARTING || be->link != NULL ||
        strlen(addr) >= sizeof be->addr)
        return;
    snprintf(be->addr, sizeof be->addr, "%s", addr);
    pool->provider->ops->instance_id(pool->provider, be->inst, be->instance_id,
                                     sizeof be->instance_id);
    dial(be);
}

void gw__backend_heartbeat(gw_pool_t *pool)
{
    const gw_config_t *cfg = pool->cfg;
    uint64_t now = unix_ms();
    if (cfg->heartbeat_ms == 0)
        return;
    for (gw__backend_t *be = pool->backends; be != NULL; be = be->next) {
        /* Only an idle link: a backend with frames in flight is watched by the per-frame
         * bound, and a ping would queue behind its frames. */
        if (be->state != GW__BE_READY || be->inflight > 0 || be->ping_out)
            continue;
        uint64_t last = be->last_seen_unix_ms ? be->last_seen_unix_ms : be->ready_unix_ms;
        if (now - last < cfg->heartbeat_ms)
            continue;
        if (send_ping(be, cfg->hung_grace_ms) == 0)
            be->heartbeat_out = 1;
    }
}

void gw__backend_check_dials(gw_pool_t *pool)
{
    gw__backend_t *starting[256];
    gw_link_t *links[256];
    gw_link_dials_t now[256];
    int n = 0;
    for (gw__backend_t *be = pool->backends; be != NULL && n < 256; be = be->next)
        if (be->state == GW__BE_STARTING && be->link != NULL &&
            strncmp(be->addr, "ipc://", 6) != 0) {
            starting[n] = be;
            links[n++] = be->link;
        }
    if (n == 0 || gw_link_dials(links, n, now) != 0)
        return;
    for (int i = 0; i < n; i++) {
        gw__backend_t *be = starting[i];
        int tls_refused;
        const char *why = gw_remote_dial_verdict(be->addr, &now[i], &be->dials_seen, &tls_refused);
        be->dials_seen = now[i];
        if (why == NULL || !tls_refused)
            continue;
        pool->st.tls_failures++;
        GW_LOG_W("backend_tls_refused", "backend=%s instance=%s addr=%s peer=%s why=\"%s\"",
                 be->name, be->instance_id, be->addr, be->tls_peer[0] ? be->tls_peer : "-", why);
        failed_start(be, why);
    }
}

/* ---- health ---- */

void gw__backend_eject(gw__backend_t *be, gw_health_reason_t reason, const char *detail)
{
    gw_pool_t *pool = be->pool;
    if (be->state == GW__BE_STOPPING || be->state == GW__BE_STARTING)
        return;
    /* Envoy's max_ejection_percent, in small: when every backend fails alike (a broken model
     * file), ejecting them all would leave nothing serving while the replacements load. The
     * last ready backend stays while a replacement is starting; it is judged again at its
     * next answer. A hung one goes regardless: it serves nothing anyway. */
    if (reason != GW_HEALTH_HUNG && be->state == GW__BE_READY && pool->count[GW__BE_READY] == 1 &&
        pool->count[GW__BE_STARTING] > 0) {
        GW_LOG_D("backend_ejection_deferred", "backend=%s reason=%s why=\"%s\"", be->name,
                 gw_health_reason_name(reason), detail);
        return;
    }
    pool->st.ejections[reason]++;
    GW_LOG_W("backend_ejected",
             "backend=%s reason=%s inflight=%d served=%llu failures=%llu "
             "why=\"%s\"",
             be->name, gw_health_reason_name(reason), be->inflight, (unsigned long long)be->served,
             (unsigned long long)be->failures, detail);
    if (pool->hooks.on_scale)
        pool->hooks.on_scale(pool->hooks_ctx, "down", "ejected");
    /* A hung process answers neither frames nor SIGTERM: kill it. An outlier still answers:
     * let it finish what it holds (what it does not finish is retried). */
    if (reason == GW_HEALTH_HUNG)
        gw__backend_abort(be);
    else
        gw__backend_stop(be, "ejected");
    if (!pool->shutting_down)
        gw__pool_reconcile(pool, gw_autoscale_desired(pool->scaler), "ejected");
}

void gw__backend_verdict(gw__backend_t *be, gw_health_verdict_t v)
{
    gw_pool_t *pool = be->pool;
    const gw_health_t *peers[256];
    int n = 0;
    char detail[160];

    gw_health_record(&be->health, pool->cfg, v);
    if (be->state != GW__BE_READY && be->state != GW__BE_DRAINING)
        return;
    for (gw__backend_t *o = pool->backends; o != NULL && n < 256; o = o->next)
        if (o != be && (o->state == GW__BE_READY || o->state == GW__BE_DRAINING))
            peers[n++] = &o->health;
    gw_health_reason_t r = gw_health_check(&be->health, peers, n, pool->cfg, detail, sizeof detail);
    if (r != GW_HEALTH_NONE)
        gw__backend_eject(be, r, detail);
}

void gw__backend_watch(gw_pool_t *pool)
{
    uint64_t bound = gw_svctime_bound(&pool->svctime, pool->cfg);
    uint64_t now = uv_now(pool->loop);
    if (bound == UINT64_MAX)
        return;
    for (gw__backend_t *be = pool->backends; be != NULL; be = be->next) {
        if ((be->state != GW__BE_READY && be->state != GW__BE_DRAINING) || be->inflight == 0)
            continue;
        uint64_t oldest = now;
        for (int i = 0; i < be->nslots; i++)
            if (be->jobs[i] != NULL && be->sent_ms[i] < oldest)
                oldest = be->sent_ms[i];
        if (now - oldest < bound)
            continue;
        /* Suspect: no new frames; its frames go back to the queue (inference is
         * idempotent; the cancelled replies are dropped if they ever come); a ping tells
         * whether it is slow or gone. */
        GW_LOG_W("backend_suspect", "backend=%s unanswered_ms=%llu bound_ms=%llu inflight=%d",
                 be->name, (unsigned long long)(now - oldest), (unsigned long long)bound,
                 be->inflight);
        pool->st.suspected++;
        gw__backend_set_state(be, GW__BE_SUSPECT);
        be->suspect_since = now;
        gw_link_cancel_all(be->link);
        if (be->ping_out || send_ping(be, pool->cfg->hung_grace_ms) != 0)
            gw__backend_eject(be, GW_HEALTH_HUNG, "could not be pinged");
    }
}

/* ---- reporting ---- */

static void iso_time(uint64_t ms, char *buf, size_t cap)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%03uZ", (unsigned)(ms % 1000));
}

void gw__backend_json(const gw__backend_t *be, void *arr)
{
    char when[40];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", be->name);
    cJSON_AddStringToObject(o, "state", gw__be_state_names[be->state]);
    cJSON_AddStringToObject(o, "provider", be->pool->provider->ops->kind);
    cJSON_AddStringToObject(o, "instance", be->instance_id);
    cJSON_AddStringToObject(o, "address", be->addr);
    /* tls+tcp: the name the backend's certificate was verified for (the dialled host) */
    if (be->tls_peer[0] != '\0')
        cJSON_AddStringToObject(o, "tls_peer", be->tls_peer);
    else
        cJSON_AddNullToObject(o, "tls_peer");
    cJSON_AddStringToObject(o, "model", be->model);
    cJSON_AddNumberToObject(o, "inflight", be->inflight);
    cJSON_AddNumberToObject(o, "served", (double)be->served);
    cJSON_AddNumberToObject(o, "failures", (double)be->failures);
    iso_time(be->started_unix_ms, when, sizeof when);
    cJSON_AddStringToObject(o, "started_at", when);
    if (be->ready_unix_ms) {
        iso_time(be->ready_unix_ms, when, sizeof when);
        cJSON_AddStringToObject(o, "ready_at", when);
    } else {
        cJSON_AddNullToObject(o, "ready_at");
    }
    if (be->last_seen_unix_ms) {
        iso_time(be->last_seen_unix_ms, when, sizeof when);
        cJSON_AddStringToObject(o, "last_seen_at", when);
    } else {
        cJSON_AddNullToObject(o, "last_seen_at");
    }
    cJSON_AddItemToArray(arr, o);
}
