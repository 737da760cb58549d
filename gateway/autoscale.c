#include "autoscale.h"

#include <math.h>
#include <stdlib.h>

#include "err.h"

typedef struct {
    uint64_t t;
    double load;
} sample_t;

struct gw_autoscale {
    const gw_config_t *cfg;
    int min, max;  /* the model's bounds (or the top-level ones) */
    double target;
    sample_t *ring; /* samples newer than the stable window, oldest first */
    size_t cap, head, len;
    uint64_t panic_until;
    uint64_t first_tick; /* the first tick's time (0: none yet) */
    int desired;
};

int gw_autoscale_create(gw_autoscale_t **out, const gw_config_t *cfg, const gw_model_t *model)
{
    gw_autoscale_t *a = calloc(1, sizeof *a);
    if (a == NULL)
        return PROTO_ENOMEM;
    /* One sample per tick over the stable window, plus slack for late ticks. Ticks that come
     * faster than configured only overwrite the oldest samples sooner: bounded either way. */
    uint64_t interval = cfg->scale_interval_ms > 0 ? cfg->scale_interval_ms : 1;
    a->cap = (size_t)(cfg->stable_window_ms / interval) + 8;
    if (a->cap > 100000)
        a->cap = 100000;
    a->ring = calloc(a->cap, sizeof *a->ring);
    if (a->ring == NULL) {
        free(a);
        return PROTO_ENOMEM;
    }
    a->cfg = cfg;
    a->min = model != NULL ? model->min_backends : cfg->min_backends;
    a->max = model != NULL ? model->max_backends : cfg->max_backends;
    a->target = model != NULL ? model->target_inflight_per_backend
                              : cfg->target_inflight_per_backend;
    a->desired = a->min;
    *out = a;
    return 0;
}

void gw_autoscale_destroy(gw_autoscale_t *a)
{
    if (a == NULL)
        return;
    free(a->ring);
    free(a);
}

int gw_autoscale_desired(const gw_autoscale_t *a) { return a->desired; }

void gw_autoscale_set_bounds(gw_autoscale_t *a, int min, int max)
{
    a->min = min;
    a->max = max;
    if (a->desired < min)
        a->desired = min;
    if (a->desired > max)
        a->desired = max;
}

static double peak_since(const gw_autoscale_t *a, uint64_t since)
{
    double peak = 0;
    for (size_t i = 0; i < a->len; i++) {
        const sample_t *s = &a->ring[(a->head + i) % a->cap];
        if (s->t >= since && s->load > peak)
            peak = s->load;
    }
    return peak;
}

static int clamp_count(const gw_autoscale_t *a, double load)
{
    double want = ceil(load / a->target - 1e-9);
    int n = want > a->max ? a->max : (int)want;
    if (load > 0 && n < 1)
        n = 1;
    if (n < a->min)
        n = a->min;
    if (n > a->max)
        n = a->max;
    return n;
}

gw_scale_decision_t gw_autoscale_tick(gw_autoscale_t *a, uint64_t now_ms, double peak_load,
                                      int queued, int current)
{
    const gw_config_t *cfg = a->cfg;
    gw_scale_decision_t d = {0};

    /* Drop samples older than the stable window, then append (overwriting the oldest if the
     * ring is full). */
    uint64_t stable_since = now_ms > cfg->stable_window_ms ? now_ms - cfg->stable_window_ms : 0;
    while (a->len > 0 && a->ring[a->head].t < stable_since) {
        a->head = (a->head + 1) % a->cap;
        a->len--;
    }
    if (a->len == a->cap) {
        a->head = (a->head + 1) % a->cap;
        a->len--;
    }
    a->ring[(a->head + a->len) % a->cap] = (sample_t){now_ms, peak_load};
    a->len++;
    if (a->first_tick == 0)
        a->first_tick = now_ms > 0 ? now_ms : 1;

    uint64_t panic_since = now_ms > cfg->panic_window_ms ? now_ms - cfg->panic_window_ms : 0;
    int up = clamp_count(a, peak_since(a, panic_since));
    int down = clamp_count(a, peak_since(a, stable_since));

    if (queued > 0 || up > current)
        a->panic_until = now_ms + cfg->panic_window_ms;
    d.panicking = now_ms < a->panic_until;

    if (d.panicking) {
        /* Never shrink while panicking; grow to what the short window asks for. */
        d.desired = up > a->desired ? up : a->desired;
        if (d.desired < current)
            d.desired = current > a->max ? a->max : current;
        d.reason = queued > 0 ? "queue" : "load";
    } else if (down < current && now_ms - a->first_tick < cfg->stable_window_ms) {
        /* A reap needs a whole stable window of low load, and a pool that has just started
         * (a gateway restart adopting an earlier one's backends) has not seen one yet. */
        d.desired = current > a->max ? a->max : current;
        d.reason = "steady";
    } else {
        d.desired = down;
        d.reason = down < current ? "idle" : down > current ? "load" : "steady";
    }
    a->desired = d.desired;
    return d;
}
