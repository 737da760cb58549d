/* The backend pool and dispatcher: backends (started through a provider), the bounded FIFO
 * of jobs waiting for one, deadlines, retries, readiness, draining, crash recovery and the
 * autoscaler's tick. Loop thread only, except where noted.
 *
 * A job goes to the ready backend with the fewest requests in flight (the least recently
 * used among equals), one NNG req context per concurrent request. When a backend dies with
 * requests in flight they go back to the head of the queue (inference is idempotent) up to
 * cfg->retries times, then are answered 502. Nothing is dropped: every submitted job's
 * on_done runs exactly once. */
#ifndef GW_POOL_H
#define GW_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "health.h"
#include "job.h"
#include "provider.h"

typedef struct gw_pool gw_pool_t;

/* Optional observers (for metrics); any may be NULL. Loop thread. */
typedef struct {
    void (*on_queue_wait)(void *ctx, double seconds);
    void (*on_scale)(void *ctx, const char *direction, const char *reason);
    void (*on_job_done)(void *ctx, const gw_job_t *job);
} gw_pool_hooks_t;

typedef struct {
    int desired, min, max;
    int starting, ready, draining, suspect, stopping;
    int queued, inflight;
    uint64_t submitted, completed, retried, failed_starts, crashes;
    uint64_t ejections[GW_HEALTH_NREASONS]; /* by gw_health_reason_t (health.h) */
    uint64_t suspected; /* times a backend was suspected of hanging (then ejected or back) */
    uint64_t recovered;    /* suspected backends that answered again and went back to ready */
    uint64_t tls_failures; /* starts that failed on a refused TLS handshake (remote.h) */
    uint64_t abandoned; /* frames answered PROTO_ESHUTDOWN: the shutdown grace ran out */
    char kind[32]; /* the model's kind as its backends report it ("detector", ...), or "" */
} gw_pool_stats_t;

/* Creates the pool of one model: its backends are named "<model>-instance<N>", it scales
 * between the model's min and max, and it takes only jobs for that model (or for none). With
 * model NULL it is one anonymous pool named "app" on the top-level keys, taking only jobs
 * that name no model. It takes over `provider` (sets its on_exit, destroys it in
 * gw_pool_destroy). cfg and model must outlive the pool. */
int gw_pool_create(gw_pool_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                   const gw_model_t *model, gw_provider_t *provider, const gw_pool_hooks_t *hooks,
                   void *hooks_ctx);

/* Starts min_backends and the autoscaler's timer. */
int gw_pool_start(gw_pool_t *pool);

/* Sets the pool's bounds at run time (a model of registered backends holds exactly the ones
 * registered: min = max = their number) and moves toward them now. Loop thread. */
void gw_pool_set_bounds(gw_pool_t *pool, int min, int max);

/* Drains the backend dialled at `addr` (a registered backend leaving): no new frames, its
 * frames in flight finish, then it is stopped (its provider forgets it). Returns 0, or
 * PROTO_EINVAL when no running backend has that address. Call gw_pool_set_bounds after, so
 * the pool does not take it back. */
int gw_pool_release(gw_pool_t *pool, const char *addr);

/* Queues a job (see job.h). Returns 0 (on_done runs later, never before this returns), or
 * without calling on_done: PROTO_EQUEUEFULL (queue at cfg->queue_size), PROTO_ENOBACKEND (no
 * backend is running and starting them keeps failing; the reason is in gw_pool_readyz),
 * PROTO_ENOMODEL (the job names another model) or PROTO_ESHUTDOWN. A finished job's err is
 * 0 or: PROTO_EDEADLINE, PROTO_EBACKEND (failed cfg->retries + 1 times), PROTO_ESHUTDOWN,
 * PROTO_ENOMEM, PROTO_ETOOBIG, PROTO_ECORRUPT (a corrupt reply), PROTO_EMODEL (the backend
 * failed), or the backend's verdict on the frame (PROTO_EIMAGE, EEMPTY, EFORMAT, EIMGSIZE,
 * EINVAL). Never an HTTP status: the HTTP layer maps codes (status.h). */
int gw_pool_submit(gw_pool_t *pool, gw_job_t *job);

/* 1 if a frame submitted now will be served: a backend is ready or starting, or none is
 * running because the pool scaled to zero and the next frame starts one. 0 while it cannot:
 * shutting down, or backing off after failed starts with nothing running. Either way
 * why[0..cap) gets the state in words (512 bytes hold every message). */
int gw_pool_readyz(gw_pool_t *pool, char *why, size_t cap);

/* GET /v1/backends as a malloc'd NUL-terminated JSON document (NULL on ENOMEM). */
char *gw_pool_backends_json(gw_pool_t *pool);

void gw_pool_stats(gw_pool_t *pool, gw_pool_stats_t *out);

/* Per-backend figures for metrics: calls fn once per backend. */
void gw_pool_foreach(gw_pool_t *pool,
                     void (*fn)(void *arg, const char *name, const char *state, int inflight,
                                uint64_t served, uint64_t failures),
                     void *arg);

typedef void (*gw_pool_done_cb)(void *arg);

/* Graceful stop: refuse new jobs, let queued and in-flight ones finish within
 * cfg->shutdown_grace_ms (then answer the rest 503), stop every backend (SIGTERM, SIGKILL
 * after cfg->stop_grace_ms) and call done once none is left. */
void gw_pool_shutdown(gw_pool_t *pool, gw_pool_done_cb done, void *arg);

/* Frees the pool after gw_pool_shutdown's callback; closes its handles (run the loop once
 * more for their close callbacks). */
void gw_pool_destroy(gw_pool_t *pool);

#endif
