#include "pool.h"

#include <math.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "autoscale.h"
#include "bridge.h"
#include "err.h"
#include "log.h"
#include "msg.h"

#define MAX_NAMES 1024 /* instance numbers in use at once (max_backends <= 256 + stopping) */

enum { J_NEW, J_QUEUED, J_INFLIGHT, J_DONE };
enum { PH_IDLE, PH_SEND, PH_RECV, PH_DONE };
typedef enum { BE_STARTING, BE_READY, BE_DRAINING, BE_STOPPING } be_state_t;
static const char *const state_names[] = {"starting", "ready", "draining", "stopping"};

typedef struct backend backend_t;

/* One NNG request context. The node is first so a bridge node is a slot. */
typedef struct {
    gw_bridge_node_t node;
    backend_t *be;
    nng_ctx ctx;
    nng_aio *aio;
    gw_job_t *job; /* NULL for the readiness ping and when idle */
    int phase;     /* PH_*; written by the loop before an operation, by nng after */
    int cancelled; /* guarded by pool->cancel_mu */
    int rv;
    nng_msg *msg;
    int is_ping;
} slot_t;

struct backend {
    gw_pool_t *pool;
    char name[GW_MODEL_NAME_MAX + 32];
    int index;
    be_state_t state;
    gw_instance_t *inst; /* NULL once the provider reported the exit */
    char addr[256];
    char ident[32];
    nng_socket sock;
    int sock_open;
    slot_t *slots;
    int nslots;
    slot_t ping;
    int busy; /* slots (and the ping) with an NNG operation outstanding */
    int inflight;
    uint64_t served, failures, last_used;
    uint64_t started_unix_ms, ready_unix_ms, started_mono;
    uv_timer_t timer; /* start timeout, then stop grace */
    int timer_closing;
    char model[GW_MODEL_NAME_MAX]; /* as the backend reported it at readiness */
    backend_t *next, *prev;
};

struct gw_pool {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    const gw_model_t *model; /* NULL: one anonymous pool on the top-level keys */
    char name[GW_MODEL_NAME_MAX]; /* the model's name, "app" for the anonymous pool */
    int min, max;
    char kind[32]; /* from the last PONG: "detector", "classifier"; "" until one came */
    gw_provider_t *provider;
    gw_pool_hooks_t hooks;
    void *hooks_ctx;
    gw_bridge_t bridge;
    pthread_mutex_t cancel_mu;
    gw_autoscale_t *scaler;

    backend_t *backends;
    unsigned char names_used[MAX_NAMES + 1];
    int count[4]; /* backends by state */

    gw_job_t *qhead, *qtail;
    int queued;
    int inflight;
    double peak_load; /* since the last tick */
    uint64_t next_id, use_seq;

    uv_timer_t deadline_timer;
    uv_timer_t tick_timer;

    /* start failures: exponential backoff */
    int consecutive_failures;
    uint64_t backoff_until; /* monotonic ms */
    char last_error[256];

    gw_pool_stats_t st;

    int shutting_down;
    uv_timer_t shutdown_timer;
    gw_pool_done_cb done_cb;
    void *done_arg;
    int closing_handles;
};

static void try_dispatch(gw_pool_t *pool);
static void reconcile(gw_pool_t *pool, int desired, const char *reason);
static void backend_stop(backend_t *be, const char *reason);
static void maybe_free_backend(backend_t *be);
static void check_shutdown(gw_pool_t *pool);
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

static void set_state(backend_t *be, be_state_t st)
{
    be->pool->count[be->state]--;
    be->state = st;
    be->pool->count[st]++;
}

/* ---- the queue ---- */

static void queue_push(gw_pool_t *pool, gw_job_t *job, int front)
{
    job->state = J_QUEUED;
    job->next = job->prev = NULL;
    if (pool->qhead == NULL) {
        pool->qhead = pool->qtail = job;
    } else if (front) {
        job->next = pool->qhead;
        pool->qhead->prev = job;
        pool->qhead = job;
    } else {
        job->prev = pool->qtail;
        pool->qtail->next = job;
        pool->qtail = job;
    }
    pool->queued++;
    note_load(pool);
}

static void queue_remove(gw_pool_t *pool, gw_job_t *job)
{
    if (job->prev)
        job->prev->next = job->next;
    else
        pool->qhead = job->next;
    if (job->next)
        job->next->prev = job->prev;
    else
        pool->qtail = job->prev;
    job->next = job->prev = NULL;
    pool->queued--;
}

/* Ends a job with err (0 or a code from proto/err.h; the HTTP layer picks the status) and
 * a human message. */
static void finish_job(gw_pool_t *pool, gw_job_t *job, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void finish_job(gw_pool_t *pool, gw_job_t *job, int err, const char *fmt, ...)
{
    job->state = J_DONE;
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
    if (pool->hooks.on_job_done)
        pool->hooks.on_job_done(pool->hooks_ctx, job);
    job->on_done(job);
}

static void arm_deadline_timer(gw_pool_t *pool)
{
    uint64_t earliest = UINT64_MAX;
    for (gw_job_t *j = pool->qhead; j != NULL; j = j->next)
        if (j->deadline_ms < earliest)
            earliest = j->deadline_ms;
    if (earliest == UINT64_MAX) {
        uv_timer_stop(&pool->deadline_timer);
        return;
    }
    uint64_t now = uv_now(pool->loop);
    uv_timer_start(&pool->deadline_timer, on_deadline, earliest > now ? earliest - now : 0, 0);
}

static void on_deadline(uv_timer_t *t)
{
    gw_pool_t *pool = t->data;
    uint64_t now = uv_now(pool->loop);
    gw_job_t *j = pool->qhead;
    while (j != NULL) {
        gw_job_t *next = j->next;
        if (j->deadline_ms <= now) {
            queue_remove(pool, j);
            finish_job(pool, j, PROTO_EDEADLINE,
                       "no backend answered within %llu ms (waited in the queue)",
                       (unsigned long long)pool->cfg->deadline_ms);
        }
        j = next;
    }
    arm_deadline_timer(pool);
    check_shutdown(pool);
}

/* ---- NNG side: runs on NNG's threads ---- */

static void on_slot_aio(void *arg)
{
    slot_t *s = arg;
    gw_pool_t *pool = s->be->pool;
    int rv = nng_aio_result(s->aio);

    if (s->phase == PH_SEND) {
        if (rv == 0) {
            /* Chain the receive here; the lock pairs with cancel_slot() so a cancel that
             * lands between the two operations is not lost. */
            pthread_mutex_lock(&pool->cancel_mu);
            if (!s->cancelled) {
                s->phase = PH_RECV;
                nng_ctx_recv(s->ctx, s->aio);
                pthread_mutex_unlock(&pool->cancel_mu);
                return;
            }
            pthread_mutex_unlock(&pool->cancel_mu);
            rv = NNG_ECANCELED;
        } else {
            nng_msg_free(nng_aio_get_msg(s->aio)); /* a failed send leaves it with us */
            nng_aio_set_msg(s->aio, NULL);
        }
    } else if (rv == 0) {
        s->msg = nng_aio_get_msg(s->aio);
        nng_aio_set_msg(s->aio, NULL);
    }
    s->rv = rv;
    s->phase = PH_DONE;
    gw_bridge_post(&pool->bridge, &s->node);
}

static void cancel_slot(slot_t *s)
{
    gw_pool_t *pool = s->be->pool;
    pthread_mutex_lock(&pool->cancel_mu);
    s->cancelled = 1;
    if (s->phase == PH_SEND || s->phase == PH_RECV)
        nng_aio_cancel(s->aio);
    pthread_mutex_unlock(&pool->cancel_mu);
}

/* Encodes and sends one request on slot `s` (loop thread). */
static int slot_send(slot_t *s, const proto_req_t *req, uint64_t timeout_ms)
{
    nng_msg *msg;
    size_t len;
    int64_t size = proto_req_size(req);
    int rv;

    if (size < 0)
        return (int)size;
    if ((rv = nng_msg_alloc(&msg, (size_t)size)) != 0)
        return PROTO_ENOMEM;
    if ((rv = proto_req_encode(req, nng_msg_body(msg), (size_t)size, &len)) != 0) {
        nng_msg_free(msg);
        return rv;
    }
    s->cancelled = 0;
    s->msg = NULL;
    s->phase = PH_SEND;
    s->be->busy++;
    nng_aio_set_msg(s->aio, msg);
    nng_aio_set_timeout(s->aio, timeout_ms > 0 ? (nng_duration)timeout_ms : NNG_DURATION_INFINITE);
    nng_ctx_send(s->ctx, s->aio);
    return 0;
}

/* ---- backends ---- */

static int take_name(gw_pool_t *pool)
{
    for (int i = 1; i <= MAX_NAMES; i++)
        if (!pool->names_used[i]) {
            pool->names_used[i] = 1;
            return i;
        }
    return -1;
}

static void on_slot_done(gw_bridge_node_t *node);

static int backend_open_socket(backend_t *be)
{
    int rv;
    if ((rv = nng_req0_open(&be->sock)) != 0)
        return rv;
    be->sock_open = 1;
    /* We detect dead backends ourselves and retry elsewhere; nng must not resend on its own
     * timer (a slow inference would run twice). Reconnect fast while the model loads. */
    nng_socket_set_ms(be->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(be->sock, NNG_OPT_RECONNMINT, 20);
    nng_socket_set_ms(be->sock, NNG_OPT_RECONNMAXT, 250);
    nng_socket_set_size(be->sock, NNG_OPT_RECVMAXSZ, (size_t)PROTO_PAYLOAD_MAX + (1u << 20));
    if ((rv = nng_dial(be->sock, be->addr, NULL, NNG_FLAG_NONBLOCK)) != 0)
        return rv;
    slot_t *all[1 + 256];
    int n = 0;
    all[n++] = &be->ping;
    for (int i = 0; i < be->nslots; i++)
        all[n++] = &be->slots[i];
    for (int i = 0; i < n; i++) {
        slot_t *s = all[i];
        s->be = be;
        s->node.cb = on_slot_done;
        if ((rv = nng_ctx_open(&s->ctx, be->sock)) != 0)
            return rv;
        if ((rv = nng_aio_alloc(&s->aio, on_slot_aio, s)) != 0)
            return rv;
    }
    return 0;
}

static void backend_close_nng(backend_t *be)
{
    if (be->sock_open) {
        nng_close(be->sock); /* closes the contexts too; every aio is idle by now */
        be->sock_open = 0;
    }
    if (be->ping.aio)
        nng_aio_free(be->ping.aio);
    be->ping.aio = NULL;
    for (int i = 0; i < be->nslots; i++) {
        if (be->slots[i].aio)
            nng_aio_free(be->slots[i].aio);
        be->slots[i].aio = NULL;
    }
}

static void on_backend_timer_closed(uv_handle_t *h)
{
    backend_t *be = h->data;
    gw_pool_t *pool = be->pool;
    free(be->slots);
    free(be);
    pool->closing_handles--;
    check_shutdown(pool);
}

static void on_start_timeout(uv_timer_t *t);

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
    GW_LOG_W("scale", "direction=none reason=backoff backend=%s failures=%d retry_in_ms=%.0f "
                      "why=\"%s\"",
             name, pool->consecutive_failures, delay, why);
    if (pool->hooks.on_scale)
        pool->hooks.on_scale(pool->hooks_ctx, "none", "backoff");
}

/* A ready backend is lost: it exited, or its connection broke. No new work goes to it, its
 * in-flight requests are cancelled (their completions requeue them for another backend)
 * and, if the process is still there, it is killed; its exit then frees it. */
static void backend_crashed(backend_t *be, const char *why)
{
    gw_pool_t *pool = be->pool;
    pool->st.crashes++;
    GW_LOG_W("scale", "direction=down reason=crash backend=%s inflight=%d why=\"%s\"", be->name,
             be->inflight, why);
    if (pool->hooks.on_scale)
        pool->hooks.on_scale(pool->hooks_ctx, "down", "crash");
    set_state(be, BE_STOPPING);
    cancel_slot(&be->ping);
    for (int i = 0; i < be->nslots; i++)
        cancel_slot(&be->slots[i]);
    if (be->inst != NULL)
        pool->provider->ops->stop(pool->provider, be->inst, 1);
}

static void on_provider_exit(void *owner, gw_instance_t *inst, int64_t status, int sig,
                             const char *why)
{
    backend_t *be = owner;
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

    if (be->state == BE_STARTING) {
        record_start_failure(pool, be->name, why);
    } else if (be->state == BE_READY || be->state == BE_DRAINING) {
        backend_crashed(be, why);
    } else {
        GW_LOG_I("backend_stopped", "backend=%s why=\"%s\"", be->name, why);
    }
    if (be->state != BE_STOPPING)
        set_state(be, BE_STOPPING);
    /* Whatever it was doing is lost: cancel, and the completions requeue the jobs. */
    cancel_slot(&be->ping);
    for (int i = 0; i < be->nslots; i++)
        cancel_slot(&be->slots[i]);
    maybe_free_backend(be);
    /* A replacement (or the backed-off retry) is the autoscaler's call, made now rather than
     * at the next tick so that queued jobs wait as little as possible. */
    if (!pool->shutting_down)
        reconcile(pool, gw_autoscale_desired(pool->scaler), "crash");
    try_dispatch(pool);
}

static void maybe_free_backend(backend_t *be)
{
    gw_pool_t *pool = be->pool;
    if (be->inst != NULL || be->busy > 0 || be->timer_closing)
        return;
    backend_close_nng(be);
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
    uv_close((uv_handle_t *)&be->timer, on_backend_timer_closed);
}

static backend_t *backend_start(gw_pool_t *pool)
{
    const gw_config_t *cfg = pool->cfg;
    backend_t *be = calloc(1, sizeof *be);
    int rv;
    if (be == NULL)
        return NULL;
    be->pool = pool;
    be->nslots = cfg->backend_concurrency;
    be->slots = calloc((size_t)be->nslots, sizeof *be->slots);
    be->index = take_name(pool);
    if (be->slots == NULL || be->index < 0) {
        if (be->index > 0)
            pool->names_used[be->index] = 0;
        free(be->slots);
        free(be);
        return NULL;
    }
    snprintf(be->name, sizeof be->name, "%s-instance%d", pool->name, be->index);
    snprintf(be->model, sizeof be->model, "%s", pool->model != NULL ? pool->name : "");
    be->ping.is_ping = 1;
    be->state = BE_STARTING;
    be->started_unix_ms = unix_ms();
    be->started_mono = uv_now(pool->loop);
    uv_timer_init(pool->loop, &be->timer);
    be->timer.data = be;

    rv = pool->provider->ops->start(pool->provider, be->name, be, &be->inst, be->addr,
                                    sizeof be->addr);
    if (rv != 0) {
        char why[200];
        snprintf(why, sizeof why, "could not be started (%s)", proto_strerror(rv));
        record_start_failure(pool, be->name, why);
        pool->names_used[be->index] = 0;
        be->timer_closing = 1;
        pool->closing_handles++;
        uv_close((uv_handle_t *)&be->timer, on_backend_timer_closed);
        return NULL;
    }
    pool->provider->ops->describe(pool->provider, be->inst, be->ident, sizeof be->ident);
    be->next = pool->backends;
    if (pool->backends)
        pool->backends->prev = be;
    pool->backends = be;
    pool->count[BE_STARTING]++;

    if ((rv = backend_open_socket(be)) != 0) {
        GW_LOG_E("backend_socket", "backend=%s addr=%s error=\"%s\"", be->name, be->addr,
                 nng_strerror(rv));
        backend_stop(be, "socket");
        return be;
    }
    /* Readiness: the backend answers PING only once its model is loaded and warmed up (it
     * listens only then; our dialer keeps retrying until it does). */
    proto_req_t ping = {.type = PROTO_T_PING, .id = ++pool->next_id};
    if ((rv = slot_send(&be->ping, &ping, 0)) != 0) {
        backend_stop(be, "ping");
        return be;
    }
    uv_timer_start(&be->timer, on_start_timeout, cfg->start_timeout_ms, 0);
    GW_LOG_I("backend_starting", "backend=%s id=%s addr=%s", be->name, be->ident, be->addr);
    return be;
}

static void on_stop_grace(uv_timer_t *t)
{
    backend_t *be = t->data;
    if (be->inst != NULL) {
        GW_LOG_W("backend_kill", "backend=%s reason=stop_grace_expired", be->name);
        be->pool->provider->ops->stop(be->pool->provider, be->inst, 1);
    }
}

static void on_start_timeout(uv_timer_t *t)
{
    backend_t *be = t->data;
    gw_pool_t *pool = be->pool;
    if (be->state != BE_STARTING)
        return;
    char why[128];
    snprintf(why, sizeof why, "was not ready within %llu ms",
             (unsigned long long)pool->cfg->start_timeout_ms);
    record_start_failure(pool, be->name, why);
    set_state(be, BE_STOPPING);
    cancel_slot(&be->ping);
    if (be->inst != NULL)
        pool->provider->ops->stop(pool->provider, be->inst, 1);
}

/* Stops a backend that has nothing in flight (or must go anyway): SIGTERM, then SIGKILL
 * after stop_grace_ms. Its exit frees it. */
static void backend_stop(backend_t *be, const char *reason)
{
    gw_pool_t *pool = be->pool;
    if (be->state != BE_STOPPING)
        set_state(be, BE_STOPPING);
    GW_LOG_I("backend_stopping", "backend=%s reason=%s", be->name, reason);
    cancel_slot(&be->ping);
    if (be->inst != NULL) {
        pool->provider->ops->stop(pool->provider, be->inst, 0);
        uv_timer_start(&be->timer, on_stop_grace, pool->cfg->stop_grace_ms, 0);
    }
    maybe_free_backend(be);
}

/* ---- completions (loop thread) ---- */

static void retry_or_fail(gw_pool_t *pool, gw_job_t *job, backend_t *be, const char *why)
{
    if (pool->shutting_down && pool->count[BE_READY] == 0) {
        finish_job(pool, job, PROTO_ESHUTDOWN, "the gateway is shutting down");
        return;
    }
    if (job->attempts <= pool->cfg->retries) {
        pool->st.retried++;
        GW_LOG_I("job_retry", "id=%llu backend=%s attempt=%d why=\"%s\"",
                 (unsigned long long)job->id, be->name, job->attempts, why);
        queue_push(pool, job, 1);
        arm_deadline_timer(pool);
        return;
    }
    finish_job(pool, job, PROTO_EBACKEND, "%s failed after %d attempts: %s", be->name,
               job->attempts, why);
}

static void handle_reply(gw_pool_t *pool, backend_t *be, gw_job_t *job, nng_msg *msg)
{
    size_t len = nng_msg_len(msg);
    uint8_t *buf = malloc(len > 0 ? len : 1);
    int rv;
    if (buf == NULL) {
        finish_job(pool, job, PROTO_ENOMEM, "out of memory");
        return;
    }
    memcpy(buf, nng_msg_body(msg), len);
    job->rep_buf = buf;
    job->rep_len = len;
    if ((rv = proto_rep_decode(&job->rep, buf, len)) != 0 || job->rep.type != PROTO_T_RESULT ||
        job->rep.id != job->id) {
        be->failures++;
        gw_job_fini(job);
        finish_job(pool, job, PROTO_ECORRUPT, "%s sent a corrupt reply: %s", be->name,
                   rv != 0 ? proto_strerror(rv) : "wrong type or id");
        return;
    }
    job->infer_ms = job->rep.infer_us / 1000.0;
    if (job->rep.status != 0) {
        /* The client's frame was at fault (it is answered 4xx): the backend served it. Any
         * other code is the backend failing. A code we do not know (a newer backend) is
         * reported as a backend error, never passed through. */
        int err = job->rep.status;
        int client_fault = err == PROTO_EIMAGE || err == PROTO_EEMPTY || err == PROTO_EFORMAT ||
                           err == PROTO_EIMGSIZE || err == PROTO_EINVAL || err == PROTO_ETOOBIG;
        if (client_fault) {
            be->served++;
        } else {
            be->failures++;
            if (err != PROTO_EDEADLINE)
                err = PROTO_EMODEL;
        }
        finish_job(pool, job, err, "%.*s", (int)job->rep.error_len, job->rep.error);
        return;
    }
    be->served++;
    finish_job(pool, job, 0, NULL);
}

static void handle_pong(gw_pool_t *pool, backend_t *be, nng_msg *msg)
{
    proto_rep_t rep;
    if (proto_rep_decode(&rep, nng_msg_body(msg), nng_msg_len(msg)) != 0 ||
        rep.type != PROTO_T_PONG || rep.status != 0) {
        GW_LOG_W("backend_bad_pong", "backend=%s", be->name);
        record_start_failure(pool, be->name, "answered the readiness ping with garbage");
        backend_stop(be, "bad_pong");
        return;
    }
    /* The PONG payload is JSON describing the backend; keep the model name. */
    cJSON *info = cJSON_ParseWithLength((const char *)rep.payload, rep.payload_len);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(info, "model");
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(info, "kind");
    if (cJSON_IsString(model))
        snprintf(be->model, sizeof be->model, "%s", model->valuestring);
    if (cJSON_IsString(kind))
        snprintf(pool->kind, sizeof pool->kind, "%s", kind->valuestring);
    cJSON_Delete(info);

    uv_timer_stop(&be->timer);
    set_state(be, BE_READY);
    be->ready_unix_ms = unix_ms();
    pool->consecutive_failures = 0;
    pool->last_error[0] = '\0';
    GW_LOG_I("backend_ready", "backend=%s id=%s model=%s start_ms=%llu", be->name, be->ident,
             be->model, (unsigned long long)(uv_now(pool->loop) - be->started_mono));
}

static void on_slot_done(gw_bridge_node_t *node)
{
    slot_t *s = (slot_t *)node;
    backend_t *be = s->be;
    gw_pool_t *pool = be->pool;
    nng_msg *msg = s->msg;
    int rv = s->rv;

    s->msg = NULL;
    s->phase = PH_IDLE;
    be->busy--;

    if (s->is_ping) {
        if (rv == 0 && be->state == BE_STARTING)
            handle_pong(pool, be, msg);
    } else {
        gw_job_t *job = s->job;
        s->job = NULL;
        be->inflight--;
        pool->inflight--;
        if (rv == 0) {
            handle_reply(pool, be, job, msg);
        } else if (rv == NNG_ETIMEDOUT) {
            be->failures++;
            finish_job(pool, job, PROTO_EDEADLINE, "%s did not answer within the deadline",
                       be->name);
        } else {
            be->failures++;
            /* Anything but a cancel means the connection broke: the backend is lost even
             * if its exit has not been reported yet, so nothing more may go to it. */
            if (rv != NNG_ECANCELED && (be->state == BE_READY || be->state == BE_DRAINING))
                backend_crashed(be, nng_strerror(rv));
            retry_or_fail(pool, job, be, rv == NNG_ECANCELED ? "backend exited" : nng_strerror(rv));
        }
        if (be->state == BE_DRAINING && be->inflight == 0)
            backend_stop(be, "drained");
    }
    if (msg != NULL)
        nng_msg_free(msg);
    maybe_free_backend(be);
    try_dispatch(pool);
    check_shutdown(pool);
}

/* ---- dispatch ---- */

static slot_t *free_slot(backend_t *be)
{
    for (int i = 0; i < be->nslots; i++)
        if (be->slots[i].job == NULL && be->slots[i].phase == PH_IDLE)
            return &be->slots[i];
    return NULL;
}

static backend_t *pick_backend(gw_pool_t *pool)
{
    backend_t *best = NULL;
    for (backend_t *be = pool->backends; be != NULL; be = be->next) {
        if (be->state != BE_READY || be->inflight >= be->nslots)
            continue;
        if (best == NULL || be->inflight < best->inflight ||
            (be->inflight == best->inflight && be->last_used < best->last_used))
            best = be;
    }
    return best;
}

static void try_dispatch(gw_pool_t *pool)
{
    backend_t *be;
    while (pool->qhead != NULL && (be = pick_backend(pool)) != NULL) {
        gw_job_t *job = pool->qhead;
        slot_t *s = free_slot(be);
        if (s == NULL)
            break; /* cannot happen: inflight < nslots */
        queue_remove(pool, job);
        uint64_t now = uv_now(pool->loop);
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
            .output = o->output,
            .top_k = o->top_k,
            .camera = o->camera,
            .camera_len = (uint16_t)cam_len,
            .payload = job->image,
            .payload_len = (uint32_t)job->image_len,
        };
        s->job = job;
        job->state = J_INFLIGHT;
        be->inflight++;
        pool->inflight++;
        be->last_used = ++pool->use_seq;
        int rv = slot_send(s, &req, remaining);
        if (rv != 0) {
            s->job = NULL;
            be->inflight--;
            pool->inflight--;
            finish_job(pool, job, rv == PROTO_ETOOBIG ? rv : PROTO_ENOMEM, "%s",
                       proto_strerror(rv));
        }
    }
    if (pool->qhead == NULL)
        uv_timer_stop(&pool->deadline_timer);
}

/* ---- scaling actions ---- */

static int capacity(const gw_pool_t *pool)
{
    return pool->count[BE_STARTING] + pool->count[BE_READY];
}

static void scale_event(gw_pool_t *pool, const char *direction, const char *reason,
                        const char *name, int desired)
{
    GW_LOG_I("scale", "direction=%s reason=%s backend=%s desired=%d starting=%d ready=%d "
                      "draining=%d inflight=%d queued=%d",
             direction, reason, name, desired, pool->count[BE_STARTING], pool->count[BE_READY],
             pool->count[BE_DRAINING], pool->inflight, pool->queued);
    if (pool->hooks.on_scale)
        pool->hooks.on_scale(pool->hooks_ctx, direction, reason);
}

static void reconcile(gw_pool_t *pool, int desired, const char *reason)
{
    if (pool->shutting_down)
        return;
    /* Up: first take back backends that are draining (they are warm), then start new ones,
     * no more than max_starting at once and not while backing off after failed starts. */
    int started = 0;
    while (capacity(pool) < desired) {
        backend_t *drained = NULL;
        for (backend_t *be = pool->backends; be != NULL; be = be->next)
            if (be->state == BE_DRAINING)
                drained = be;
        if (drained != NULL) {
            set_state(drained, BE_READY);
            scale_event(pool, "up", "drain_cancelled", drained->name, desired);
            continue;
        }
        /* The second bound matters when a start fails at once (the backend goes straight
         * to stopping and capacity does not grow). */
        if (pool->count[BE_STARTING] >= pool->cfg->max_starting ||
            started >= pool->cfg->max_starting)
            break;
        started++;
        if (pool->consecutive_failures > 0 && uv_now(pool->loop) < pool->backoff_until)
            break;
        backend_t *be = backend_start(pool);
        if (be == NULL)
            break;
        scale_event(pool, "up", reason, be->name, desired);
    }
    /* Down: cancel starting backends first (newest first), then drain the ready backend
     * with the fewest requests in flight. */
    while (capacity(pool) > desired) {
        backend_t *victim = NULL;
        for (backend_t *be = pool->backends; be != NULL; be = be->next)
            if (be->state == BE_STARTING) {
                victim = be;
                break; /* the list is newest first */
            }
        if (victim != NULL) {
            scale_event(pool, "down", "start_cancelled", victim->name, desired);
            backend_stop(victim, "start_cancelled");
            continue;
        }
        for (backend_t *be = pool->backends; be != NULL; be = be->next)
            if (be->state == BE_READY && (victim == NULL || be->inflight < victim->inflight))
                victim = be;
        if (victim == NULL)
            break;
        set_state(victim, BE_DRAINING);
        scale_event(pool, "down", reason, victim->name, desired);
        if (victim->inflight == 0)
            backend_stop(victim, "drained");
    }
}

static void on_tick(uv_timer_t *t)
{
    gw_pool_t *pool = t->data;
    note_load(pool);
    gw_scale_decision_t d = gw_autoscale_tick(pool->scaler, uv_now(pool->loop), pool->peak_load,
                                              pool->queued, capacity(pool));
    pool->peak_load = pool->inflight + pool->queued;
    reconcile(pool, d.desired, d.reason);
    try_dispatch(pool);
}

/* ---- public ---- */

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
    provider->on_exit = on_provider_exit;
    if (hooks != NULL)
        pool->hooks = *hooks;
    pool->hooks_ctx = hooks_ctx;
    pthread_mutex_init(&pool->cancel_mu, NULL);
    if ((rv = gw_autoscale_create(&pool->scaler, cfg, model)) != 0) {
        free(pool);
        return rv;
    }
    if ((rv = gw_bridge_init(&pool->bridge, loop)) != 0) {
        gw_autoscale_destroy(pool->scaler);
        free(pool);
        return rv;
    }
    uv_timer_init(loop, &pool->deadline_timer);
    uv_timer_init(loop, &pool->tick_timer);
    uv_timer_init(loop, &pool->shutdown_timer);
    pool->deadline_timer.data = pool->tick_timer.data = pool->shutdown_timer.data = pool;
    *out = pool;
    return 0;
}

int gw_pool_start(gw_pool_t *pool)
{
    reconcile(pool, pool->min, "min");
    uv_timer_start(&pool->tick_timer, on_tick, pool->cfg->scale_interval_ms,
                   pool->cfg->scale_interval_ms);
    return 0;
}

int gw_pool_submit(gw_pool_t *pool, gw_job_t *job)
{
    const gw_config_t *cfg = pool->cfg;
    if (pool->shutting_down)
        return PROTO_ESHUTDOWN;
    if (job->opts.model[0] != '\0' &&
        (pool->model == NULL || strcmp(job->opts.model, pool->name) != 0))
        return PROTO_ENOMODEL;
    if (pool->queued >= cfg->queue_size)
        return PROTO_EQUEUEFULL;
    /* Nothing runs and starts keep failing: say so now instead of queueing into a 504. */
    if (capacity(pool) == 0 && pool->count[BE_DRAINING] == 0 && pool->consecutive_failures > 0)
        return PROTO_ENOBACKEND;

    job->arrival_ms = uv_now(pool->loop);
    job->deadline_ms = job->arrival_ms + cfg->deadline_ms;
    job->attempts = 0;
    job->err = 0;
    pool->st.submitted++;
    queue_push(pool, job, 0);
    try_dispatch(pool);
    if (job->state == J_QUEUED) {
        if (!uv_is_active((uv_handle_t *)&pool->deadline_timer))
            arm_deadline_timer(pool);
        /* Scale from zero (or past a full pool) without waiting for the next tick. */
        if (capacity(pool) == 0)
            reconcile(pool, 1, "queue");
    }
    return 0;
}

int gw_pool_readyz(gw_pool_t *pool, char *why, size_t cap)
{
    if (pool->shutting_down) {
        snprintf(why, cap, "shutting down");
        return 0;
    }
    if (pool->count[BE_READY] > 0) {
        snprintf(why, cap, "%d backend(s) ready", pool->count[BE_READY]);
        return 1;
    }
    /* Nothing runs and starts keep failing: a frame sent now gets 503 (gw_pool_submit). */
    if (capacity(pool) == 0 && pool->count[BE_DRAINING] == 0 && pool->consecutive_failures > 0) {
        uint64_t now = uv_now(pool->loop);
        snprintf(why, cap,
                     "no backend can start: %s; %d failed start(s) in a row, next try in %llu ms",
                     pool->last_error, pool->consecutive_failures,
                     (unsigned long long)(pool->backoff_until > now ? pool->backoff_until - now
                                                                    : 0));
        return 0;
    }
    /* Ready in the sense that matters to a load balancer: a frame sent now is served (it
     * waits for the backend that is starting, or starts one). Answering 503 here would
     * deadlock a pool scaled to zero: nothing would ever send the frame that wakes it. */
    if (pool->count[BE_STARTING] > 0)
        snprintf(why, cap, "no backend is ready yet: %d starting", pool->count[BE_STARTING]);
    else
        snprintf(why, cap, "scaled to zero: the next frame starts a backend");
    return 1;
}

static void iso_time(uint64_t ms, char *buf, size_t cap)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%03uZ", (unsigned)(ms % 1000));
}

char *gw_pool_backends_json(gw_pool_t *pool)
{
    cJSON *root = cJSON_CreateObject();
    char when[40], why[512]; /* holds last_error (256) and the text around it */
    cJSON_AddNumberToObject(root, "desired", gw_autoscale_desired(pool->scaler));
    cJSON_AddNumberToObject(root, "min", pool->min);
    cJSON_AddNumberToObject(root, "max", pool->max);
    cJSON_AddNumberToObject(root, "queued", pool->queued);
    cJSON_AddNumberToObject(root, "inflight", pool->inflight);
    cJSON_AddStringToObject(root, "provider", pool->provider->ops->kind);
    if (gw_pool_readyz(pool, why, sizeof why) && pool->count[BE_READY] > 0)
        cJSON_AddNullToObject(root, "not_ready_reason");
    else
        cJSON_AddStringToObject(root, "not_ready_reason", why);
    cJSON_AddNumberToObject(root, "consecutive_start_failures", pool->consecutive_failures);
    if (pool->last_error[0] != '\0')
        cJSON_AddStringToObject(root, "last_error", pool->last_error);
    else
        cJSON_AddNullToObject(root, "last_error");
    cJSON *arr = cJSON_AddArrayToObject(root, "backends");
    for (backend_t *be = pool->backends; be != NULL; be = be->next) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", be->name);
        cJSON_AddStringToObject(o, "state", state_names[be->state]);
        cJSON_AddStringToObject(o, "pid", be->ident);
        cJSON_AddStringToObject(o, "address", be->addr);
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
        cJSON_AddItemToArray(arr, o);
    }
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
    out->starting = pool->count[BE_STARTING];
    out->ready = pool->count[BE_READY];
    out->draining = pool->count[BE_DRAINING];
    out->stopping = pool->count[BE_STOPPING];
    out->queued = pool->queued;
    out->inflight = pool->inflight;
}

void gw_pool_foreach(gw_pool_t *pool,
                     void (*fn)(void *arg, const char *name, const char *state, int inflight,
                                uint64_t served, uint64_t failures),
                     void *arg)
{
    for (backend_t *be = pool->backends; be != NULL; be = be->next)
        fn(arg, be->name, state_names[be->state], be->inflight, be->served, be->failures);
}

/* ---- shutdown ---- */

static void stop_all_backends(gw_pool_t *pool)
{
    backend_t *be = pool->backends;
    while (be != NULL) {
        backend_t *next = be->next;
        if (be->state != BE_STOPPING)
            backend_stop(be, "shutdown");
        be = next;
    }
}

static void check_shutdown(gw_pool_t *pool)
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
    while (pool->qhead != NULL) {
        gw_job_t *job = pool->qhead;
        queue_remove(pool, job);
        finish_job(pool, job, PROTO_ESHUTDOWN, "the gateway is shutting down");
    }
    /* In-flight jobs: cancelling them brings their completions back; with no backend left
     * ready they are answered 503 instead of being retried. */
    for (backend_t *be = pool->backends; be != NULL; be = be->next) {
        if (be->state != BE_STOPPING)
            set_state(be, BE_STOPPING);
        for (int i = 0; i < be->nslots; i++)
            cancel_slot(&be->slots[i]);
        if (be->inst != NULL)
            pool->provider->ops->stop(pool->provider, be->inst, 1);
    }
    check_shutdown(pool);
}

void gw_pool_shutdown(gw_pool_t *pool, gw_pool_done_cb done, void *arg)
{
    pool->shutting_down = 1;
    pool->done_cb = done;
    pool->done_arg = arg;
    uv_timer_stop(&pool->tick_timer);
    /* Backends still starting can go at once; nothing waits on them... unless jobs are
     * queued and no backend is ready: then let them come up and serve the queue. */
    if (pool->count[BE_READY] > 0 || pool->queued == 0) {
        backend_t *be = pool->backends;
        while (be != NULL) {
            backend_t *next = be->next;
            if (be->state == BE_STARTING)
                backend_stop(be, "shutdown");
            be = next;
        }
    }
    uv_timer_start(&pool->shutdown_timer, on_shutdown_grace, pool->cfg->shutdown_grace_ms, 0);
    check_shutdown(pool);
}

/* The pool's handles are embedded in it: it is freed by the last close callback. */
static void on_pool_handle_closed(uv_handle_t *h)
{
    gw_pool_t *pool = h->data;
    if (--pool->closing_handles == 0) {
        pthread_mutex_destroy(&pool->cancel_mu);
        free(pool);
    }
}

void gw_pool_destroy(gw_pool_t *pool)
{
    if (pool == NULL)
        return;
    gw_autoscale_destroy(pool->scaler);
    pool->provider->ops->destroy(pool->provider);
    pool->bridge.async.data = pool;
    pool->closing_handles = 4;
    uv_close((uv_handle_t *)&pool->deadline_timer, on_pool_handle_closed);
    uv_close((uv_handle_t *)&pool->tick_timer, on_pool_handle_closed);
    uv_close((uv_handle_t *)&pool->shutdown_timer, on_pool_handle_closed);
    gw_bridge_close(&pool->bridge, on_pool_handle_closed);
}
