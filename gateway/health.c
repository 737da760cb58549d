#include "health.h"

#include <math.h>
#include <stdio.h>

static const char *const reason_names[GW_HEALTH_NREASONS] = {"none", "consecutive_failures",
                                                             "success_rate", "hung"};

const char *gw_health_reason_name(gw_health_reason_t r)
{
    return r >= 0 && r < GW_HEALTH_NREASONS ? reason_names[r] : "unknown";
}

void gw_health_record(gw_health_t *h, const gw_config_t *cfg, gw_health_verdict_t v)
{
    int window = cfg->outlier_window;
    int ok = v == GW_HEALTH_SUCCESS;

    if (window < 1 || window > GW_HEALTH_WINDOW_MAX)
        window = GW_HEALTH_WINDOW_MAX;
    h->consecutive = v == GW_HEALTH_FAILED ? h->consecutive + 1 : 0;
    if (h->pos >= window) /* the window shrank (never in practice: cfg is read-only) */
        h->pos = 0;
    uint8_t bit = (uint8_t)(1u << (h->pos & 7));
    if (h->n == window) {
        if (h->ring[h->pos >> 3] & bit)
            h->ok--;
    } else {
        h->n++;
    }
    if (ok)
        h->ring[h->pos >> 3] |= bit;
    else
        h->ring[h->pos >> 3] &= (uint8_t)~bit;
    h->ok += ok;
    h->pos = (h->pos + 1) % window;
}

gw_health_reason_t gw_health_check(const gw_health_t *self, const gw_health_t *const *peers,
                                   int npeers, const gw_config_t *cfg, char *detail, size_t cap)
{
    if (cfg->outlier_consecutive_failures > 0 &&
        self->consecutive >= cfg->outlier_consecutive_failures) {
        snprintf(detail, cap, "%d failures in a row", self->consecutive);
        return GW_HEALTH_CONSECUTIVE;
    }
    int m = cfg->outlier_min_requests;
    if (cfg->outlier_stdev_factor <= 0 || self->n < m || m < 1)
        return GW_HEALTH_NONE;
    double sum = 0, sq = 0;
    int k = 0, pok = 0, pn = 0;
    for (int i = 0; i < npeers; i++) {
        if (peers[i]->n < m)
            continue;
        double r = (double)peers[i]->ok / peers[i]->n;
        sum += r;
        sq += r * r;
        pok += peers[i]->ok;
        pn += peers[i]->n;
        k++;
    }
    if (k == 0)
        return GW_HEALTH_NONE;
    double mean = sum / k;
    double var = sq / k - mean * mean;
    double sd = sqrt(var > 0 ? var : 0);
    double spread = sd > GW_HEALTH_MIN_SPREAD ? sd : GW_HEALTH_MIN_SPREAD;
    double gap = cfg->outlier_stdev_factor * spread;
    /* Both windows are samples: a client's bad frames land unevenly, so a peer that drew
     * none reads 1.000. The two-proportion standard error (pooled rate, self's and the
     * peers' counts) says how far apart two windows of the same traffic fall. The test
     * runs on every answer, so a 2-sigma dip is met sooner or later: GW_HEALTH_SAMPLE_Z.
     * And whatever the statistics say, a gap under GW_HEALTH_MIN_GAP is not worth a
     * restart: a broken decoder fails nearly every frame. */
    double pool = (double)(self->ok + pok) / (self->n + pn);
    double se = sqrt(pool * (1 - pool) * (1.0 / self->n + 1.0 / pn));
    if (gap < GW_HEALTH_SAMPLE_Z * se)
        gap = GW_HEALTH_SAMPLE_Z * se;
    if (gap < GW_HEALTH_MIN_GAP)
        gap = GW_HEALTH_MIN_GAP;
    double rate = (double)self->ok / self->n;
    if (rate < mean - gap) {
        snprintf(detail, cap,
                 "success rate %.3f over %d answers, peers' %.3f (sd %.3f, %d peer(s))", rate,
                 self->n, mean, sd, k);
        return GW_HEALTH_SUCCESS_RATE;
    }
    return GW_HEALTH_NONE;
}

void gw_svctime_add(gw_svctime_t *s, double ms)
{
    /* alpha 0.1: follows a model that got slower within tens of frames, yet one slow frame
     * moves it little. The first sample seeds it. */
    s->ewma_ms = s->n == 0 ? ms : s->ewma_ms + 0.1 * (ms - s->ewma_ms);
    s->n++;
}

uint64_t gw_svctime_bound(const gw_svctime_t *s, const gw_config_t *cfg)
{
    if (s->n == 0 || cfg->hung_factor <= 0)
        return UINT64_MAX;
    double b = cfg->hung_factor * s->ewma_ms;
    if (b < (double)cfg->hung_min_ms)
        b = (double)cfg->hung_min_ms;
    return (uint64_t)b;
}

gw_health_verdict_t gw_health_timeout_verdict(const gw_svctime_t *s, const gw_config_t *cfg,
                                              uint64_t given_ms)
{
    uint64_t bound = gw_svctime_bound(s, cfg);
    if (bound == UINT64_MAX)
        bound = cfg->hung_min_ms;
    return given_ms >= bound ? GW_HEALTH_FAILED : GW_HEALTH_REJECTED;
}
