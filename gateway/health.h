/* Backend health as a pure policy (no I/O, no clock: callers pass the time), in the manner of
 * Envoy's outlier detection: which backend's answers depart from its peers', and how long a
 * frame may go unanswered before its backend is suspected of hanging. pool.c/backend.c feed
 * it and carry out the verdicts. Loop thread; plain values embedded in their owner.
 *
 * Keys (config.h): outlier_consecutive_failures, outlier_window, outlier_min_requests,
 * outlier_stdev_factor, hung_factor, hung_min_ms, hung_grace_ms. */
#ifndef GW_HEALTH_H
#define GW_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define GW_HEALTH_WINDOW_MAX 1024 /* outlier_window's upper bound (answers kept) */

/* A backend's verdict on one frame, as outlier detection counts it. */
typedef enum {
    GW_HEALTH_SUCCESS,
    GW_HEALTH_REJECTED, /* a 4xx-class verdict (PROTO_EIMAGE, ...): lowers the success rate
                         * only; a broken decoder rejects good frames, but so does every
                         * backend when a client sends bad ones, hence a relative test */
    GW_HEALTH_FAILED,   /* 5xx-class: PROTO_EMODEL, a corrupt reply, a timeout after ample
                         * time (gw_health_timeout_verdict); also counts toward consecutive
                         * failures */
} gw_health_verdict_t;

/* Why a backend is ejected (also the metric label, see gw_health_reason_name). */
typedef enum {
    GW_HEALTH_NONE,
    GW_HEALTH_CONSECUTIVE,  /* "consecutive_failures" */
    GW_HEALTH_SUCCESS_RATE, /* "success_rate" */
    GW_HEALTH_HUNG,         /* "hung" */
    GW_HEALTH_NREASONS
} gw_health_reason_t;

/* One backend's record: consecutive failures and its last outlier_window verdicts. */
typedef struct {
    int consecutive; /* GW_HEALTH_FAILED in a row (a success or a rejection resets it) */
    int n, ok;       /* verdicts in the window, successes among them */
    int pos;
    uint8_t ring[GW_HEALTH_WINDOW_MAX / 8];
} gw_health_t;

/* A model's observed service time (send to reply, seen from the gateway), an EWMA. */
typedef struct {
    double ewma_ms;
    uint64_t n;
} gw_svctime_t;

const char *gw_health_reason_name(gw_health_reason_t r);

/* Adds one verdict to h (zeroed before the first). */
void gw_health_record(gw_health_t *h, const gw_config_t *cfg, gw_health_verdict_t v);

/* Whether `self` must be ejected, judged against `peers` (the other backends of its pool
 * that are serving; self excluded). GW_HEALTH_CONSECUTIVE once outlier_consecutive_failures
 * failures came in a row; GW_HEALTH_SUCCESS_RATE when self and at least one peer have
 * outlier_min_requests verdicts in their windows and self's success rate is below its peers'
 * mean by outlier_stdev_factor standard deviations of the peers' rates (at least
 * GW_HEALTH_MIN_SPREAD), by GW_HEALTH_SAMPLE_Z standard errors of the two windows' difference
 * (self's against the peers' pooled counts), and by GW_HEALTH_MIN_GAP: the largest of the
 * three. The mean and deviation leave self out: with the two to four
 * backends a model runs, a backend counted in its own mean can never sit more than
 * sqrt(n-1) deviations below it, so Envoy's test with self included could never fire.
 * On a verdict, detail[0..cap) gets the figures in words. */
gw_health_reason_t gw_health_check(const gw_health_t *self, const gw_health_t *const *peers,
                                   int npeers, const gw_config_t *cfg, char *detail, size_t cap);

/* The deviation used at least: next to perfect peers, a rate within 0.05 x
 * outlier_stdev_factor of theirs is tolerated (small windows are noisy: keep outlier_window
 * large). */
#define GW_HEALTH_MIN_SPREAD 0.05

/* How many standard errors of the difference between self's window and its peers' (the
 * binomial noise of both samples) a gap must exceed. The test runs after every answer, so a
 * 2-sigma dip comes sooner or later on a long run; at 3 a false ejection stays rare. */
#define GW_HEALTH_SAMPLE_Z 3.0

/* And the smallest gap below the peers' mean that ejects, whatever the deviations: random
 * bad frames from clients land unevenly on backends (CI once saw 8 of 30 answers rejected on
 * one backend, 0 on its peer, under a 19 % poison mix), a broken backend fails most frames. */
#define GW_HEALTH_MIN_GAP 0.3

/* Adds one observed service time. */
void gw_svctime_add(gw_svctime_t *s, double ms);

/* How long a frame may go unanswered before its backend is suspected:
 * max(hung_min_ms, hung_factor x the EWMA of the service time). UINT64_MAX (never) until a
 * first service time was observed or when hung_factor is 0 (detection off). */
uint64_t gw_svctime_bound(const gw_svctime_t *s, const gw_config_t *cfg);

/* The verdict on a frame whose backend did not answer within the time it was given
 * (`given_ms`, what was left of the frame's deadline): GW_HEALTH_FAILED only if that was
 * at least the hung bound (hung_min_ms while no service time is known). A frame that waited
 * in the queue until little was left is load, not a failure: every backend of an overloaded
 * pool would time out alike, and ejecting them for it would cascade. */
gw_health_verdict_t gw_health_timeout_verdict(const gw_svctime_t *s, const gw_config_t *cfg,
                                              uint64_t given_ms);

#endif
