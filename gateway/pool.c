/* The pool's policy: the queue, dispatch, answers and retries, scaling, readiness and
 * shutdown. A frame's path reads top to bottom: submit -> queue -> dispatch -> answer ->
 * finish (or retry). Backends' lives are in backend.c, the wire in link.c. Loop thread. */
#include "pool.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "log.h"
#include "msg.h"
#include "pool_internal.h"

#define WATCH_INTERVAL_MS 100 /* how often in-flight frames are checked for silence */

static void on_deadline(uv_timer_t *t);

static uint64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void note_load(gw_pool_t *pool)
{
    double load = pool->inflight + pool->queued;
    if (load > pool->peak_load)
        pool->peak_load = load;
}

int gw__pool_capacity(const gw_pool_t *pool)
{
    return pool->count[GW__BE_STARTING] + pool->count[GW__BE_READY] + pool->count[GW__BE_SUSPECT];
}

/* Nothing runs and starts keep failing: a frame now would wait for a 504. */
static int hopeless(const gw_pool_t *pool)
{
    /* max 0: a model of registered backends before any registered */
    return gw__pool_capacity(pool) == 0 && pool->count[GW__BE_DRAINING] == 0 &&
           (pool->consecutive_failures > 0 || pool->max == 0);
}

/* ---- the queue ---- */

/* Returns the waiting frame a camera frame took the place of (fair.h), or NULL. */
static gw_job_t *queue_push(gw_pool_t *pool, gw_job_t *job, int front)
{
    job->state = GW__J_QUEUED;
    gw_job_t *old = gw_fair_push(pool->fair, job, front);
    pool->queued = gw_fair_count(pool->fair);
    note_load(pool);
    return old;
}

static void queue_remove(gw_pool_t *pool, gw_job_t *job)
{
    gw_fair_remove(pool->fair, job);
    pool->queued = gw_fair_count(pool->fair);
}

/* Ends a job with err (0 or a code from proto/err.h; the HTTP layer picks the status) and
 * a human message. */
static void finish_job(gw_pool_t *pool, gw_job_t *job, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void finish_job(gw_pool_t *pool, gw_job_t *job, int err, const char *fmt, ...)
{
    job->state = GW__J_DONE;
    job->err = err;
    job->error_msg[0] = '\0';
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(job->error_msg, sizeof job->error_msg, fmt, ap);
        va_end(ap);
    }
    job->total_ms = (double)(uv_now(pool->loop) - job->arrival_ms);
    pool->st.completed++;
    if (err == PROTO_ESHUTDOWN)
        pool->st.abandoned++;
    if (pool->hooks.on_job_done)
        pool->hooks.on_job_done(pool->hooks_ctx, job);
    job->on_done(job);
}

static void arm_deadline_timer(gw_pool_t *pool)
{
    uint64_t earliest = UINT64_MAX;
    for (gw_job_t *j = gw_fair_next(pool->fair, NULL); j != NULL; j = gw_fair_next(pool->fair, j))
        if (j->deadline_ms < earliest)
            earliest = j->deadline_ms;
    if (earliest == UINT64_MAX) {
        uv_timer_stop(&pool->deadline_timer);
        return;
    }
    uint64_t now = uv_now(pool->loop);
    uv_timer_start(&pool->deadline_timer, on_deadline, earliest > now ? earliest - now : 0, 0);
}

int gw_pool_submit(gw_pool_t *pool, gw_job_t *job)
{
    const gw_config_t *cfg = pool->cfg;
    if (pool->shutting_down)
        return PROTO_ESHUTDOWN;
    if (job->opts.model[0] != '\0' &&
        (pool->model == NULL || strcmp(job->opts.model, pool->name) != 0))
        return PROTO_ENOMODEL;
    /* A camera frame that takes a waiting frame's place does not lengthen the queue. */
    if (pool->queued >= cfg->queue_size && !gw_fair_would_replace(pool->fair, job->cam))
        return PROTO_EQUEUEFULL;
    if (hopeless(pool))
        return PROTO_ENOBACKEND;

    job->arrival_ms = uv_now(pool->loop);
    job->deadline_ms = job->arrival_ms + cfg->deadline_ms;
    job->attempts = 0;
    job->err = 0;
    pool->st.submitted++;
    gw_job_t *old = queue_push(pool, job, 0);
    if (old != NULL) {
        /* Freshness over completeness: the older frame is answered now, not after a wait
         * that would only make its answer staler. */
        old->superseded_by = job->seq;
        pool->st.superseded++;
        finish_job(pool, old, PROTO_ESUPERSEDED, "frame %llu of camera '%s' took its place",
                   (unsigned long long)job->seq, job->opts.camera);
    }
    gw__pool_dispatch(pool);
    if (job->state == GW__J_QUEUED) {
        if (!uv_is_active((uv_handle_t *)&pool->deadline_timer))
            arm_deadline_timer(pool);
        /* Scale from zero (or past a full pool) without waiting for the next tick. */
        if (gw__pool_capacity(pool) == 0)
            gw__pool_reconcile(pool, 1, "queue");
    }
    return 0;
}

static void on_deadline(uv_timer_t *t)
{
    gw_pool_t *pool = t->data;
    uint64_t now = uv_now(pool->loop);
    gw_job_t *j = gw_fair_next(pool->fair, NULL);
    while (j != NULL) {
        gw_job_t *next = gw_fair_next(pool->fair, j);
        if (j->deadline_ms <= now) {
            queue_remove(pool, j);
            finish_job(pool, j, PROTO_EDEADLINE,
                       "no backend answered within %llu ms (waited in the queue)",
                       (unsigned long long)pool->cfg->deadline_ms);
        }
        j = next;
    }
    arm_deadline_timer(pool);
    gw__pool_check_shutdown(pool);
}

/* ---- dispatch ---- */

/* The ready backend with the fewest frames in flight, least recently used among equals. */
static gw__backend_t *pick_backend(gw_pool_t *pool)
{
    gw__backend_t *best = NULL;
    for (gw__backend_t *be = pool->backends; be != NULL; be = be->next) {
        if (be->state != GW__BE_READY || be->inflight >= be->nslots)
            continue;
        if (best == NULL || be->inflight < best->inflight ||
            (be->inflight == best->inflight && be->last_used < best->last_used))
            best = be;
    }
    return best;
}

static int free_slot(const gw__backend_t *be)
{
    for (int i = 0; i < be->nslots; i++)
        if (be->jobs[i] == NULL && gw_link_idle(be->link, i))
            return i;
    return -1;
}

void gw__pool_dispatch(gw_pool_t *pool)
{
    gw__backend_t *be;
    while (pool->queued > 0 && (be = pick_backend(pool)) != NULL) {
        int slot = free_slot(be);
        if (slot < 0)
            break; /* a cancelled operation has not come back yet */
        uint64_t now = uv_now(pool->loop);
        int stale = 0;
        /* The service time is the slack: a frame is skipped if its answer would come back
         * older than its camera's max age, not just if it is that old now. */
        gw_job_t *job = gw_fair_pop(pool->fair, now, (uint64_t)pool->svctime.ewma_ms, &stale);
        pool->queued = gw_fair_count(pool->fair);
        if (stale) {
            pool->st.stale++;
            finish_job(pool, job, PROTO_ESTALE, "waited %llu ms; camera '%s' wants fresher frames",
                       (unsigned long long)(now - job->arrival_ms), job->opts.camera);
            continue;
        }
        if (job->deadline_ms <= now) {
            finish_job(pool, job, PROTO_EDEADLINE, "the deadline passed in the queue");
            continue;
        }
        if (job->attempts == 0) {
            job->dispatch_ms = now;
            job->queue_ms = (double)(now - job->arrival_ms);
            if (pool->hooks.on_queue_wait)
                pool->hooks.on_queue_wait(pool->hooks_ctx, job->queue_ms / 1000.0);
        }
        job->attempts++;
        job->id = ++pool->next_id;
        snprintf(job->backend, sizeof job->backend, "%s", be->name);
        snprintf(job->model_name, sizeof job->model_name, "%s", be->model);
        uint64_t remaining = job->deadline_ms - now;
        const gw_req_opts_t *o = &job->opts;
        size_t cam_len = strnlen(o->camera, sizeof o->camera - 1);
        proto_req_t req = {
            .type = PROTO_T_DETECT,
            .id = job->id,
            .client_ts_ms = o->ts_ms,
            .deadline_ms = (int64_t)(unix_ms() + remaining),
            .threshold = o->threshold,
            .output = job->annotate && o->output == PROTO_OUT_JSON ? PROTO_OUT_JPEG : o->output,
            .top_k = o->top_k,
            .camera = o->camera,
            .camera_len = (uint16_t)cam_len,
            .payload = job->image,
            .payload_len = (uint32_t)job->image_len,
        };
        int rv = gw_link_send(be->link, slot, &req, remaining);
        if (rv != 0) {
            finish_job(pool, job, rv == PROTO_ETOOBIG ? rv : PROTO_ENOMEM, "%s",
                       proto_strerror(rv));
            continue;
        }
        be->jobs[slot] = job;
        be->sent_ms[slot] = now;
        job->state = GW__J_INFLIGHT;
        be->inflight++;
        pool->inflight++;
        be->last_used = ++pool->use_seq;
    }
    if (pool->queued == 0)
        uv_timer_stop(&pool->deadline_timer);
}

/* ---- answers ---- */

static void retry_or_fail(gw_pool_t *pool, gw_job_t *job, gw__backend_t *be, const char *why)
{
    if (pool->shutting_down && pool->count[GW__BE_READY] == 0) {
        finish_job(pool, job, PROTO_ESHUTDOWN, "the gateway is shutting down");
        return;
    }
    if (job->attempts <= pool->cfg->retries) {
        pool->st.retried++;
        GW_LOG_I("job_retry", "id=%llu backend=%s attempt=%d why=\"%s\"",
                 (unsigned long long)job->id, be->name, job->attempts, why);
        queue_push(pool, job, 1); /* a retry supersedes nothing */
        arm_deadline_timer(pool);
        return;
    }
    finish_job(pool, job, PROTO_EBACKEND, "%s failed after %d attempts: %s", be->name,
               job->attempts, why);
}

/* A reply arrived: decode, check, and finish the job with the backend's verdict. Returns
 * the verdict as outlier detection counts it. */
static gw_health_verdict_t handle_reply(gw_pool_t *pool, gw__backend_t *be, gw_job_t *job,
                                        const uint8_t *body, size_t len)
{
    uint8_t *buf = malloc(len > 0 ? len : 1);
    int rv;
    if (buf == NULL) {
        finish_job(pool, job, PROTO_ENOMEM, "out of memory");
        return GW_HEALTH_SUCCESS; /* ours, not the backend's */
    }
    memcpy(buf, body, len);
    job->rep_buf = buf;
    job->rep_len = len;
    if ((rv = proto_rep_decode(&job->rep, buf, len)) != 0 || job->rep.type != PROTO_T_RESULT ||
        job->rep.id != job->id) {
        be->failures++;
        gw_job_fini(job);
        finish_job(pool, job, PROTO_ECORRUPT, "%s sent a corrupt reply: %s", be->name,
                   rv != 0 ? proto_strerror(rv) : "wrong type or id");
        return GW_HEALTH_FAILED;
    }
    job->infer_ms = job->rep.infer_us / 1000.0;
    if (job->rep.status != 0) {
        /* The client's frame was at fault (it is answered 4xx): the backend served it, and
         * the verdict is final here even if this backend is ejected as an outlier later
         * (nothing tells a bad frame from a broken decoder on one answer). Any other code is
         * the backend failing. A code we do not know (a newer backend) is reported as a
         * backend error, never passed through. */
        int err = job->rep.status;
        int client_fault = err == PROTO_EIMAGE || err == PROTO_EEMPTY || err == PROTO_EFORMAT ||
                           err == PROTO_EIMGSIZE || err == PROTO_EINVAL || err == PROTO_ETOOBIG;
        gw_health_verdict_t v = GW_HEALTH_REJECTED;
        if (client_fault) {
            be->served++;
        } else {
            be->failures++;
            /* A frame that expired in the backend's hands is load, which every backend of
             * an overloaded pool sees: it lowers the rate but does not eject on its own. */
            if (err != PROTO_EDEADLINE) {
                err = PROTO_EMODEL;
                v = GW_HEALTH_FAILED;
            }
        }
        finish_job(pool, job, err, "%.*s", (int)job->rep.error_len, job->rep.error);
        return v;
    }
    be->served++;
    finish_job(pool, job, 0, NULL);
    return GW_HEALTH_SUCCESS;
}

void gw__pool_on_answer(gw_pool_t *pool, gw__backend_t *be, int slot, gw_link_status_t st,
                        const char *why, const uint8_t *body, size_t len)
{
    gw_job_t *job = be->jobs[slot];
    uint64_t elapsed = uv_now(pool->loop) - be->sent_ms[slot];
    int serving =
        be->state == GW__BE_READY || be->state == GW__BE_DRAINING || be->state == GW__BE_SUSPECT;

    be->jobs[slot] = NULL;
    be->inflight--;
    pool->inflight--;
    if (st == GW_LINK_OK) {
        gw_health_verdict_t v = handle_reply(pool, be, job, body, len);
        if (v == GW_HEALTH_SUCCESS)
            gw_svctime_add(&pool->svctime, (double)elapsed);
        gw__backend_verdict(be, v);
    } else if (st == GW_LINK_TIMEDOUT) {
        be->failures++;
        finish_job(pool, job, PROTO_EDEADLINE, "%s did not answer within the deadline", be->name);
        gw__backend_verdict(be, gw_health_timeout_verdict(&pool->svctime, pool->cfg, elapsed));
    } else {
        be->failures++;
        /* A broken connection means the backend is lost even if its exit has not been
         * reported yet, so nothing more may go to it. */
        if (st == GW_LINK_BROKEN && serving)
            gw__backend_lost(be, why);
        retry_or_fail(pool, job, be,
                      st == GW_LINK_CANCELLED ? "backend exited or stopped answering" : why);
    }
    if (be->state == GW__BE_DRAINING && be->inflight == 0)
        gw__backend_stop(be, "drained");
}

/* ---- scaling ---- */

void gw__pool_scale_event(gw_pool_t *pool, const char *direction, const char *reason,
                          const char *name)
{
    GW_LOG_I("scale",
             "direction=%s reason=%s backend=%s desired=%d starting=%d ready=%d "
             "draining=%d inflight=%d queued=%d",
             direction, reason, name, gw_autoscale_desired(pool->scaler),
             pool->count[GW__BE_STARTING], pool->count[GW__BE_READY], pool->count[GW__BE_DRAINING],
             pool->inflight, pool->queued);
    if (pool->hooks.on_scale)
        pool->hooks.on_scale(pool->hooks_ctx, direction, reason);
}

/* A backend's provider tier (0 without tiers, or once its instance is gone). */
static int tier(const gw_pool_t *pool, const gw__backend_t *be)
{
    if (pool->provider->ops->tier == NULL || be->inst == NULL)
        return 0;
    return pool->provider->ops->tier(pool->provider, be->inst);
}

void gw__pool_reconcile(gw_pool_t *pool, int desired, const char *reason)
{
    if (pool->shutting_down)
        return;
    if (desired > pool->max) /* scale-from-zero asks for 1 whatever the bounds */
        desired = pool->max;
    /* Up: first take back backends that are draining (they are warm), then start new ones,
     * no more than max_starting at once and not while backing off after failed starts. */
    int started = 0;
    while (gw__pool_capacity(pool) < desired) {
        gw__backend_t *drained = NULL;
        for (gw__backend_t *be = pool->backends; be != NULL; be = be->next)
            if (be->state == GW__BE_DRAINING)
                drained = be;
        if (drained != NULL) {
            gw__backend_set_state(drained, GW__BE_READY);
            gw__pool_scale_event(pool, "up", "drain_cancelled", drained->name);
            continue;
        }
        /* The second bound matters when a start fails at once (the backend goes straight
         * to stopping and capacity does not grow). */
        if (pool->count[GW__BE_STARTING] >= pool->cfg->max_starting ||
            started >= pool->cfg->max_starting)
            break;
        started++;
        if (pool->consecutive_failures > 0 && uv_now(pool->loop) < pool->backoff_until)
            break;
        gw__backend_t *be = gw__backend_start(pool);
        if (be == NULL)
            break;
        gw__pool_scale_event(pool, "up", reason, be->name);
    }
    /* Down: cancel starting backends first (newest first), then drain the ready backend
     * with the fewest requests in flight; with provider tiers, the most expensive tier
     * first. */
    int adopting = 0; /* adopted backends still starting: not to be made up for elsewhere */
    for (gw__backend_t *be = pool->backends; be != NULL; be = be->next)
        adopting += be->state == GW__BE_STARTING && be->adopted;
    while (gw__pool_capacity(pool) - adopting > desired) {
        gw__backend_t *victim = NULL;
        for (gw__backend_t *be = pool->backends; be != NULL; be = be->next)
            if (be->state == GW__BE_STARTING && !be->adopted &&
                (victim == NULL || tier(pool, be) > tier(pool, victim)))
                victim = be; /* the list is newest first; an adopted one is up already */
        if (victim != NULL) {
            gw__pool_scale_event(pool, "down", "start_cancelled", victim->name);
            gw__backend_stop(victim, "start_cancelled");
            continue;
        }
        for (gw__backend_t *be = pool->backends; be != NULL; be = be->next)
            if (be->state == GW__BE_READY &&
                (victim == NULL || tier(pool, be) > tier(pool, victim) ||
                 (tier(pool, be) == tier(pool, victim) && be->inflight < victim->inflight)))
                victim = be;
        if (victim == NULL)
            break;
        gw__backend_set_state(victim, GW__BE_DRAINING);
        gw__pool_scale_event(pool, "down", reason, victim->name);
        if (victim->inflight == 0)
            gw__backend_stop(victim, "drained");
    }
}

void gw_pool_set_bounds(gw_pool_t *pool, int min, int max)
{
    pool->min = min;
    pool->max = max;
    gw_autoscale_set_bounds(pool->scaler, min, max);
    gw__pool_reconcile(pool, gw_autoscale_desired(pool->scaler), "bounds");
    gw__pool_dispatch(pool);
}

int gw_pool_release(gw_pool_t *pool, const char *addr)
{
    for (gw__backend_t *be = pool->backends; be != NULL; be = be->next) {
        if (strcmp(be->addr, addr) != 0 || be->state == GW__BE_STOPPING)
            continue;
        if (be->state == GW__BE_STARTING || be->inflight == 0) {
            gw__backend_stop(be, "released");
        } else {
            gw__backend_set_state(be, GW__BE_DRAINING);
            gw__pool_scale_event(pool, "down", "released", be->name);
        }
        return 0;
    }
    return PROTO_EINVAL;
}

static void on_tick(uv_timer_t *t)
{
    gw_pool_t *pool = t->data;
    gw__backend_check_dials(pool);
    gw__backend_heartbeat(pool);
    note_load(pool);
    double load = pool->peak_load;
    if (pool->hooks.demand != NULL) {
        /* Live cameras: a pool that supersedes and skips frames keeps a short queue however
         * far behind it is, so the queue alone understates what the cameras offer. */
        double demand = pool->hooks.demand(pool->hooks_ctx);
        if (demand > load)
            load = demand;
    }
    gw_scale_decision_t d = gw_autoscale_tick(pool->scaler, uv_now(pool->loop), load,
                                              pool->queued, gw__pool_capacity(pool));
    pool->peak_load = pool->inflight + pool->queued;
    gw__pool_reconcile(pool, d.desired, d.reason);
    gw__pool_dispatch(pool);
}

static void on_watch(uv_timer_t *t)
{
    gw_pool_t *pool = t->data;
    gw__backend_watch(pool);
    gw__pool_dispatch(pool);
}

/* ---- readiness and reports ---- */

int gw_pool_readyz(gw_pool_t *pool, char *why, size_t cap)
{
    if (pool->shutting_down) {
        snprintf(why, cap, "shutting down");
        return 0;
    }
    if (pool->count[GW__BE_READY] > 0) {
        snprintf(why, cap, "%d backend(s) ready", pool->count[GW__BE_READY]);
        return 1;
    }
    /* Nothing runs and starts keep failing: a frame sent now gets 503 (gw_pool_submit). */
    if (hopeless(pool)) {
        uint64_t now = uv_now(pool->loop);
        snprintf(why, cap,
                 "no backend can start: %s; %d failed start(s) in a row, next try in %llu ms",
                 pool->last_error, pool->consecutive_failures,
                 (unsigned long long)(pool->backoff_until > now ? pool->backoff_until - now : 0));
        return 0;
    }
    /* Ready in the sense that matters to a load balancer: a frame sent now is served (it
     * waits for the backend that is starting, or starts one). Answering 503 here would
     * deadlock a pool scaled to zero: nothing would ever send the frame that wakes it. */
    if (pool->count[GW__BE_STARTING] > 0)
        snprintf(why, cap, "no backend is ready yet: %d starting", pool->count[GW__BE_STARTING]);
    else if (pool->count[GW__BE_SUSPECT] > 0)
        snprintf(why, cap, "no backend is ready: %d suspected of hanging",
                 pool->count[GW__BE_SUSPECT]);
    else
        snprintf(why, cap, "scaled to zero: the next frame starts a backend");
    return 1;
}

char *gw_pool_backends_json(gw_pool_t *pool)
{
    cJSON *root = cJSON_CreateObject();
    char why[512]; /* holds last_error (256) and the text around it */
    cJSON_AddNumberToObject(root, "desired", gw_autoscale_desired(pool->scaler));
    cJSON_AddNumberToObject(root, "min", pool->min);
    cJSON_AddNumberToObject(root, "max", pool->max);
    cJSON_AddNumberToObject(root, "queued", pool->queued);
    cJSON_AddNumberToObject(root, "inflight", pool->inflight);
    cJSON_AddStringToObject(root, "provider", pool->provider->ops->kind);
    if (gw_pool_readyz(pool, why, sizeof why) && pool->count[GW__BE_READY] > 0)
        cJSON_AddNullToObject(root, "not_ready_reason");
    else
        cJSON_AddStringToObject(root, "not_ready_reason", why);
    cJSON_AddNumberToObject(root, "consecutive_start_failures", pool->consecutive_failures);
    if (pool->last_error[0] != '\0')
        cJSON_AddStringToObject(root, "last_error", pool->last_error);
    else
        cJSON_AddNullToObject(root, "last_error");
    if (pool->provider->ops->api_error != NULL) { /* a cloud provider's API trouble */
        uint64_t errors = 0;
        const char *e = pool->provider->ops->api_error(pool->provider, &errors);
        if (e[0] != '\0')
            cJSON_AddStringToObject(root, "provider_error", e);
        else
            cJSON_AddNullToObject(root, "provider_error");
        cJSON_AddNumberToObject(root, "provider_errors", (double)errors);
    }
    cJSON *arr = cJSON_AddArrayToObject(root, "backends");
    for (gw__backend_t *be = pool->backends; be != NULL; be = be->next)
        gw__backend_json(be, arr);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

void gw_pool_stats(gw_pool_t *pool, gw_pool_stats_t *out)
{
    *out = pool->st;
    out->desired = gw_autoscale_desired(pool->scaler);
    out->min = pool->min;
    out->max = pool->max;
    snprintf(out->kind, sizeof out->kind, "%s", pool->kind);
    out->starting = pool->count[GW__BE_STARTING];
    out->ready = pool->count[GW__BE_READY];
    out->draining = pool->count[GW__BE_DRAINING];
    out->suspect = pool->count[GW__BE_SUSPECT];
    out->stopping = pool->count[GW__BE_STOPPING];
    out->queued = pool->queued;
    out->inflight = pool->inflight;
    out->svc_ms = pool->svctime.n > 0 ? pool->svctime.ewma_ms : 0;
}

void gw_pool_set_camera(gw_pool_t *pool, int cam, int weight, uint64_t max_age_ms)
{
    gw_fair_set_camera(pool->fair, cam, weight, max_age_ms);
}

void gw_pool_foreach(gw_pool_t *pool,
                     void (*fn)(void *arg, const char *name, const char *state, int inflight,
                                uint64_t served, uint64_t failures),
                     void *arg)
{
    for (gw__backend_t *be = pool->backends; be != NULL; be = be->next)
        fn(arg, be->name, gw__be_state_names[be->state], be->inflight, be->served, be->failures);
}

/* ---- life of the pool ---- */

int gw_pool_create(gw_pool_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                   const gw_model_t *model, gw_provider_t *provider, const gw_pool_hooks_t *hooks,
                   void *hooks_ctx)
{
    gw_pool_t *pool = calloc(1, sizeof *pool);
    int rv;
    if (pool == NULL)
        return PROTO_ENOMEM;
    if (cfg->backend_concurrency < 1 || cfg->backend_concurrency > 256) {
        free(pool);
        return PROTO_EINVAL;
    }
    pool->loop = loop;
    pool->cfg = cfg;
    pool->model = model;
    snprintf(pool->name, sizeof pool->name, "%s", model != NULL ? model->name : "app");
    pool->min = model != NULL ? model->min_backends : cfg->min_backends;
    pool->max = model != NULL ? model->max_backends : cfg->max_backends;
    pool->provider = provider;
    provider->on_exit = gw__backend_on_exit;
    provider->on_address = gw__backend_on_address;
    provider->on_adopt = gw__backend_adopt; /* an earlier gateway's instance that joined */
    provider->adopt_ctx = pool;
    if (hooks != NULL)
        pool->hooks = *hooks;
    pool->hooks_ctx = hooks_ctx;
    if ((rv = gw_autoscale_create(&pool->scaler, cfg, model)) != 0) {
        free(pool);
        return rv;
    }
    if ((rv = gw_fair_create(&pool->fair, cfg->max_cameras,
                             cfg->camera_queue_depth > 0 ? cfg->camera_queue_depth : 1)) != 0) {
        gw_autoscale_destroy(pool->scaler);
        free(pool);
        return rv;
    }
    for (int i = 1; i <= cfg->max_cameras; i++)
        gw_fair_set_camera(pool->fair, i, cfg->camera_weight, cfg->camera_max_age_ms);
    if ((rv = gw_bridge_init(&pool->bridge, loop)) != 0) {
        gw_fair_destroy(pool->fair);
        gw_autoscale_destroy(pool->scaler);
        free(pool);
        return rv;
    }
    uv_timer_init(loop, &pool->deadline_timer);
    uv_timer_init(loop, &pool->tick_timer);
    uv_timer_init(loop, &pool->watch_timer);
    uv_timer_init(loop, &pool->shutdown_timer);
    pool->deadline_timer.data = pool->tick_timer.data = pool;
    pool->watch_timer.data = pool->shutdown_timer.data = pool;
    *out = pool;
    return 0;
}

int gw_pool_start(gw_pool_t *pool)
{
    gw__pool_reconcile(pool, pool->min, "min");
    uv_timer_start(&pool->tick_timer, on_tick, pool->cfg->scale_interval_ms,
                   pool->cfg->scale_interval_ms);
    if (pool->cfg->hung_factor > 0)
        uv_timer_start(&pool->watch_timer, on_watch, WATCH_INTERVAL_MS, WATCH_INTERVAL_MS);
    return 0;
}

static void stop_all_backends(gw_pool_t *pool)
{
    gw__backend_t *be = pool->backends;
    while (be != NULL) {
        gw__backend_t *next = be->next;
        if (be->state != GW__BE_STOPPING)
            gw__backend_stop(be, "shutdown");
        be = next;
    }
}

void gw__pool_check_shutdown(gw_pool_t *pool)
{
    if (!pool->shutting_down)
        return;
    if (pool->queued > 0 || pool->inflight > 0)
        return;
    uv_timer_stop(&pool->shutdown_timer);
    stop_all_backends(pool);
    if (pool->backends == NULL && pool->closing_handles == 0 && pool->done_cb != NULL) {
        gw_pool_done_cb cb = pool->done_cb;
        pool->done_cb = NULL;
        cb(pool->done_arg);
    }
}

static void on_shutdown_grace(uv_timer_t *t)
{
    gw_pool_t *pool = t->data;
    GW_LOG_W("shutdown_grace_expired", "queued=%d inflight=%d", pool->queued, pool->inflight);
    gw_job_t *job;
    while ((job = gw_fair_next(pool->fair, NULL)) != NULL) {
        queue_remove(pool, job);
        finish_job(pool, job, PROTO_ESHUTDOWN, "the gateway is shutting down");
    }
    /* In-flight jobs: cancelling them brings their completions back; with no backend left
     * ready they are answered 503 instead of being retried. */
    gw__backend_t *be = pool->backends;
    while (be != NULL) {
        gw__backend_t *next = be->next;
        gw__backend_abort(be);
        be = next;
    }
    gw__pool_check_shutdown(pool);
}

void gw_pool_shutdown(gw_pool_t *pool, gw_pool_done_cb done, void *arg)
{
    pool->shutting_down = 1;
    if (pool->provider->ops->shutdown != NULL) /* keep_instances_on_exit or terminate */
        pool->provider->ops->shutdown(pool->provider);
    pool->done_cb = done;
    pool->done_arg = arg;
    uv_timer_stop(&pool->tick_timer);
    /* Backends still starting can go at once; nothing waits on them... unless jobs are
     * queued and no backend is ready: then let them come up and serve the queue. */
    if (pool->count[GW__BE_READY] > 0 || pool->queued == 0) {
        gw__backend_t *be = pool->backends;
        while (be != NULL) {
            gw__backend_t *next = be->next;
            if (be->state == GW__BE_STARTING)
                gw__backend_stop(be, "shutdown");
            be = next;
        }
    }
    uv_timer_start(&pool->shutdown_timer, on_shutdown_grace, pool->cfg->shutdown_grace_ms, 0);
    gw__pool_check_shutdown(pool);
}

/* The pool's handles are embedded in it: it is freed by the last close callback. */
static void on_pool_handle_closed(uv_handle_t *h)
{
    gw_pool_t *pool = h->data;
    if (--pool->closing_handles == 0)
        free(pool);
}

void gw_pool_destroy(gw_pool_t *pool)
{
    if (pool == NULL)
        return;
    gw_autoscale_destroy(pool->scaler);
    gw_fair_destroy(pool->fair);
    pool->provider->ops->destroy(pool->provider);
    pool->bridge.async.data = pool;
    pool->closing_handles = 5;
    uv_close((uv_handle_t *)&pool->deadline_timer, on_pool_handle_closed);
    uv_close((uv_handle_t *)&pool->tick_timer, on_pool_handle_closed);
    uv_close((uv_handle_t *)&pool->watch_timer, on_pool_handle_closed);
    uv_close((uv_handle_t *)&pool->shutdown_timer, on_pool_handle_closed);
    gw_bridge_close(&pool->bridge, on_pool_handle_closed);
}
