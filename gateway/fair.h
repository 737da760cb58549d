/* The live-camera queue policy: a pure data structure over gw_job_t (no timers, no I/O), so
 * it can be tested tick by tick like autoscale.c. The pool keeps its waiting frames here
 * instead of one FIFO.
 *
 *   participants: the plain FIFO (slot 0: frames without a camera, and cameras beyond
 *                 max_cameras) and one queue per camera (slots 1..ncams, job->cam).
 *   freshness:    a camera queue holds at most `depth` frames. A newer frame pushed onto a
 *                 full queue takes the place of the oldest waiting one, which push returns
 *                 so the caller answers it "superseded" at once. A frame that would be
 *                 answered older than its camera's max_age_ms (its age at pop time plus the
 *                 caller's service-time estimate) is handed back as stale instead of being
 *                 dispatched. Frames in flight are not here: they are never cancelled.
 *   fairness:     pop picks among participants with a waiting frame by stride scheduling
 *                 (weighted round-robin: each participant's pass advances by 1/weight when
 *                 it is served, the lowest pass goes next, ties to the oldest waiting frame;
 *                 one that was idle joins at the current pass, so it banks no burst). A
 *                 camera whose waiting frame is superseded keeps its place. The FIFO takes
 *                 part with a weight of the frames waiting in it (each plain request counts
 *                 like a camera of its own), and keeps their order among themselves.
 * Retries go back to the head of their participant (push with front = 1) and never
 * supersede anything. A batch frame (job->batch: one of
 * several images of one request) waits in the FIFO whatever its camera: a batch is answered
 * whole, so none of its frames is superseded or skipped. Loop thread only (not thread-safe); the
 * caller owns every job. */
#ifndef GW_FAIR_H
#define GW_FAIR_H

#include <stdint.h>

#include "job.h"

typedef struct gw_fair gw_fair_t;

/* A policy for cameras 1..ncams, each queue `depth` frames deep (>= 1), weight 1 and no
 * max age until gw_fair_set_camera. Returns 0, PROTO_EINVAL or PROTO_ENOMEM. */
int gw_fair_create(gw_fair_t **out, int ncams, int depth);
void gw_fair_destroy(gw_fair_t *f);

/* Sets camera `cam`'s (1..ncams) weight (>= 1) and max age (0 = none). */
void gw_fair_set_camera(gw_fair_t *f, int cam, int weight, uint64_t max_age_ms);

/* Frames waiting, in all participants / for camera `cam` (0 = the FIFO). */
int gw_fair_count(const gw_fair_t *f);
int gw_fair_count_of(const gw_fair_t *f, int cam);
/* Batch jobs' frames waiting (job->bulk): the lowest class, popped only when no other frame
 * waits; never superseded or skipped. */
int gw_fair_count_bulk(const gw_fair_t *f);

/* 1 if a new frame of camera `cam` would take a waiting frame's place (its queue is full),
 * so it does not make the queue any longer. */
int gw_fair_would_replace(const gw_fair_t *f, int cam);

/* Queues job in participant job->cam (0, > ncams, or a batch frame: the FIFO): appended, or at the
 * head when front (a retry). For an arrival on a full camera queue, returns the oldest waiting
 * frame, already removed (the caller answers it superseded); otherwise NULL. */
gw_job_t *gw_fair_push(gw_fair_t *f, gw_job_t *job, int front);

/* Takes job out wherever it waits (deadline, shutdown). */
void gw_fair_remove(gw_fair_t *f, gw_job_t *job);

/* The next frame for a free backend at `now_ms`, removed from its queue, or NULL if none
 * waits. *stale is set to 1 when the frame returned is one to answer "skipped" (too old to
 * be answered within its camera's max age, given `slack_ms` of expected service time);
 * call again for the next one. */
gw_job_t *gw_fair_pop(gw_fair_t *f, uint64_t now_ms, uint64_t slack_ms, int *stale);

/* Iteration over every waiting frame: gw_fair_next(f, NULL) is the first. To remove frames
 * while iterating, take the successor before removing the current one. */
gw_job_t *gw_fair_next(const gw_fair_t *f, const gw_job_t *job);

#endif
