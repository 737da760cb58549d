/* The scaling policy: a pure function of the load history, with no processes or timers in
 * it, so it can be tested tick by tick. The pool samples its load (requests in flight plus
 * queued; the peak since the previous tick) once per scale_interval_ms and acts on the
 * answer.
 *
 *   up:   ceil(peak load over the panic window / target). The newest sample is in the
 *         window, so a burst is answered at the next tick. While the queue is non-empty or
 *         the wanted count exceeds what runs, the policy is "panicking": it never scales
 *         down, like Knative's panic mode.
 *   down: ceil(peak load over the stable window / target), so a short lull does not reap;
 *         load must stay low for the whole stable window, so none in the first stable
 *         window after the first tick (no history: after a restart the pool holds what it
 *         adopted until it has seen a window of its load).
 * The result is clamped to [min_backends, max_backends]; with min 0, any load wants >= 1. */
#ifndef GW_AUTOSCALE_H
#define GW_AUTOSCALE_H

#include <stdint.h>

#include "config.h"

typedef struct gw_autoscale gw_autoscale_t;

typedef struct {
    int desired;
    int panicking;
    const char *reason; /* static: "queue", "load", "idle", "steady" */
} gw_scale_decision_t;

/* The policy for one model's pool: min/max/target from `model` (after gw_config_validate
 * resolved what it inherits), or from cfg's top-level keys when model is NULL. cfg and model
 * must outlive the policy. Returns 0 or PROTO_ENOMEM. */
int gw_autoscale_create(gw_autoscale_t **out, const gw_config_t *cfg, const gw_model_t *model);
void gw_autoscale_destroy(gw_autoscale_t *a);

/* Records the sample for the tick at `now_ms` (monotonic) and decides. `peak_load` is the
 * highest in-flight + queued count since the previous tick, `queued` the queue length now,
 * `current` the backends counted as capacity (starting + ready). */
gw_scale_decision_t gw_autoscale_tick(gw_autoscale_t *a, uint64_t now_ms, double peak_load,
                                      int queued, int current);

/* Changes the bounds (a pool of registered backends follows their number); the desired count
 * is clamped to them at once. */
void gw_autoscale_set_bounds(gw_autoscale_t *a, int min, int max);

/* The last decision's desired count (min_backends before the first tick). */
int gw_autoscale_desired(const gw_autoscale_t *a);

#endif
