/* What pool.c (the pool's policy: queue, dispatch, retries, scaling, shutdown) and
 * backend.c (one backend's life: start, readiness, health, stop) share. Not a public
 * interface: everything here runs on the loop thread; the NNG side lives in link.c. */
#ifndef GW_POOL_INTERNAL_H
#define GW_POOL_INTERNAL_H

#include <stdint.h>
#include <uv.h>

#include "autoscale.h"
#include "bridge.h"
#include "fair.h"
#include "health.h"
#include "link.h"
#include "pool.h"

#define GW__MAX_NAMES 1024 /* instance numbers in use at once (max_backends <= 256 + stopping) */

enum { GW__J_NEW, GW__J_QUEUED, GW__J_INFLIGHT, GW__J_DONE };

/* A backend's states. Suspect: it stopped answering (health.h); no new frames, counted as
 * capacity while it is pinged, then back to ready or killed. */
typedef enum {
    GW__BE_STARTING,
    GW__BE_READY,
    GW__BE_DRAINING,
    GW__BE_SUSPECT,
    GW__BE_STOPPING,
    GW__BE_NSTATES
} gw__be_state_t;

typedef struct gw__backend gw__backend_t;

struct gw__backend {
    gw_pool_t *pool;
    char name[GW_MODEL_NAME_MAX + 32];
    int adopted; /* an earlier gateway's instance: warm, never cancelled as a start */
    int index; /* the N of "<model>-instanceN"; 0 once the number is given back */
    gw__be_state_t state;
    gw_instance_t *inst; /* NULL once the provider reported the exit */
    char addr[256];
    char instance_id[64]; /* the provider's id of the instance (a pid for local) */
    gw_link_t *link;      /* NULL if it could not be opened */
    int nslots;           /* request slots; slot nslots of the link is the ping */
    gw_job_t **jobs;      /* jobs[slot]: the frame in flight there, or NULL */
    uint64_t *sent_ms;    /* sent_ms[slot]: when it was sent (loop clock) */
    int ping_out;         /* a ping is outstanding */
    int heartbeat_out;    /* ... and it is an idle-link heartbeat */
    int inflight;
    uint64_t served, failures, last_used;
    uint64_t started_unix_ms, ready_unix_ms, started_mono, suspect_since;
    gw_health_t health;
    uv_timer_t timer; /* start timeout, then stop grace */
    int timer_closing;
    char model[GW_MODEL_NAME_MAX]; /* as the backend reported it at readiness */
    char tls_peer[256];            /* tls+tcp: the name its certificate was checked for */
    gw_link_dials_t dials_seen;    /* dial counters at the last look while starting */
    uint64_t last_seen_unix_ms;    /* its last answer (a frame or a ping), 0 = none yet */
    gw__backend_t *next, *prev;
};

struct gw_pool {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    const gw_model_t *model;      /* NULL: one anonymous pool on the top-level keys */
    char name[GW_MODEL_NAME_MAX]; /* the model's name, "app" for the anonymous pool */
    int min, max;
    char kind[32]; /* from the last PONG: "detector", "classifier"; "" until one came */
    gw_provider_t *provider;
    gw_pool_hooks_t hooks;
    void *hooks_ctx;
    gw_bridge_t bridge;
    gw_autoscale_t *scaler;
    gw_svctime_t svctime; /* the model's observed service time (health.h) */

    gw__backend_t *backends; /* newest first */
    unsigned char names_used[GW__MAX_NAMES + 1];
    int count[GW__BE_NSTATES]; /* backends by state */

    gw_fair_t *fair; /* the waiting frames: per-camera queues and the FIFO (fair.h) */
    int queued;
    int inflight;
    double peak_load; /* since the last tick */
    uint64_t next_id, use_seq;

    uv_timer_t deadline_timer;
    uv_timer_t tick_timer;
    uv_timer_t watch_timer; /* looks for backends that stopped answering */

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

extern const char *const gw__be_state_names[GW__BE_NSTATES];

/* ---- pool.c ---- */

/* Sends queued jobs to ready backends while both exist. */
void gw__pool_dispatch(gw_pool_t *pool);
/* Moves the pool toward `desired` backends (starts, takes back, drains, cancels). */
void gw__pool_reconcile(gw_pool_t *pool, int desired, const char *reason);
/* During shutdown: stops the backends once no job is left, and reports the end. */
void gw__pool_check_shutdown(gw_pool_t *pool);
/* A request slot's operation ended (link callback, loop thread): the frame's answer. */
void gw__pool_on_answer(gw_pool_t *pool, gw__backend_t *be, int slot, gw_link_status_t st,
                        const char *why, const uint8_t *body, size_t len);
/* Calls the on_scale hook and logs a scaling event. */
void gw__pool_scale_event(gw_pool_t *pool, const char *direction, const char *reason,
                          const char *name);
/* Starting backends plus ready (and suspect) ones. */
int gw__pool_capacity(const gw_pool_t *pool);

/* ---- backend.c ---- */

/* Starts one backend through the provider and sends its readiness ping. NULL if it could
 * not even start (counted as a failed start). */
gw__backend_t *gw__backend_start(gw_pool_t *pool);
void gw__backend_set_state(gw__backend_t *be, gw__be_state_t st);
/* Stops a backend that has nothing in flight or may finish it: SIGTERM, SIGKILL after
 * stop_grace_ms; what is still in flight when it exits is retried. Its exit frees it. */
void gw__backend_stop(gw__backend_t *be, const char *reason);
/* Cancel then kill: no new work, every outstanding operation cancelled (the completions put
 * the jobs back in the queue), SIGKILL at once. Its exit frees it. */
void gw__backend_abort(gw__backend_t *be);
/* A serving backend is lost (it exited, or its connection broke): counted as a crash,
 * then gw__backend_abort. */
void gw__backend_lost(gw__backend_t *be, const char *why);
/* Ejects a backend whose answers departed from its peers' or that stopped answering
 * (counted, logged), and lets the autoscaler replace it. */
void gw__backend_eject(gw__backend_t *be, gw_health_reason_t reason, const char *detail);
/* Records a frame's verdict for outlier detection; may eject the backend. */
void gw__backend_verdict(gw__backend_t *be, gw_health_verdict_t v);
/* Frees the backend once its process is gone and no operation is outstanding. */
void gw__backend_maybe_free(gw__backend_t *be);
/* Fails the start of backends whose dialer saw a TLS (or plain-vs-TLS) handshake refused:
 * logged with the reason, counted, backed off (the scaling tick). */
void gw__backend_check_dials(gw_pool_t *pool);
/* Pings ready backends that answered nothing for cfg->heartbeat_ms (scaling tick); one that
 * does not answer within hung_grace_ms is ejected (reason hung). */
void gw__backend_heartbeat(gw_pool_t *pool);
/* Suspects backends whose oldest frame is older than the model's bound (watch timer). */
void gw__backend_watch(gw_pool_t *pool);
/* Appends the backend's /v1/backends object to `arr` (a cJSON array). */
void gw__backend_json(const gw__backend_t *be, void *arr);
/* The provider's exit report (loop thread). */
void gw__backend_on_exit(void *owner, gw_instance_t *inst, int64_t status, int sig,
                         const char *why);
/* The provider's on_address (a cloud instance's address, known once it runs). */
void gw__backend_on_address(void *owner, gw_instance_t *inst, const char *addr);
/* The provider's on_adopt (ctx: the pool): takes an instance an earlier gateway left as a
 * starting backend at addr, health-checked like a started one (dial, readiness ping within
 * start_timeout_ms). The backend (its owner) or NULL while shutting down or at max_backends. */
void *gw__backend_adopt(void *ctx, gw_instance_t *inst, const char *addr);

#endif
