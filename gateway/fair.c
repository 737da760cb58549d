/* See fair.h for the rules; this file is the bookkeeping behind them. */
#include "fair.h"

#include <stdlib.h>

#include "err.h"

#define STRIDE_ONE (1u << 20) /* the stride of weight 1 */

typedef struct {
    gw_job_t *head, *tail;
    int n;
    int weight;
    uint64_t max_age_ms;
    uint64_t pass; /* stride scheduling: the virtual time of this participant's next turn */
} part_t;

struct gw_fair {
    int ncams, depth, count;
    uint64_t vtime; /* the pass of the last participant served */
    part_t bulk;    /* batch jobs' frames (job->bulk): served only when nothing else waits */
    part_t p[];     /* [0] the FIFO, [1..ncams] the cameras */
};

int gw_fair_create(gw_fair_t **out, int ncams, int depth)
{
    if (ncams < 0 || depth < 1)
        return PROTO_EINVAL;
    gw_fair_t *f = calloc(1, sizeof *f + (size_t)(ncams + 1) * sizeof(part_t));
    if (f == NULL)
        return PROTO_ENOMEM;
    f->ncams = ncams;
    f->depth = depth;
    for (int i = 0; i <= ncams; i++)
        f->p[i].weight = 1;
    *out = f;
    return 0;
}

void gw_fair_destroy(gw_fair_t *f)
{
    free(f);
}

static int slot_of(const gw_fair_t *f, int cam)
{
    return cam >= 1 && cam <= f->ncams ? cam : 0;
}

void gw_fair_set_camera(gw_fair_t *f, int cam, int weight, uint64_t max_age_ms)
{
    if (cam < 1 || cam > f->ncams)
        return;
    f->p[cam].weight = weight >= 1 ? weight : 1;
    f->p[cam].max_age_ms = max_age_ms;
}

int gw_fair_count(const gw_fair_t *f)
{
    return f->count;
}

int gw_fair_count_bulk(const gw_fair_t *f)
{
    return f->bulk.n;
}

int gw_fair_count_of(const gw_fair_t *f, int cam)
{
    return f->p[slot_of(f, cam)].n;
}

int gw_fair_would_replace(const gw_fair_t *f, int cam)
{
    int s = slot_of(f, cam);
    return s != 0 && f->p[s].n >= f->depth;
}

static void unlink_job(gw_fair_t *f, part_t *p, gw_job_t *job)
{
    if (job->prev)
        job->prev->next = job->next;
    else
        p->head = job->next;
    if (job->next)
        job->next->prev = job->prev;
    else
        p->tail = job->prev;
    job->next = job->prev = NULL;
    p->n--;
    f->count--;
}

/* A batch frame (several images in one request) is answered with its batch: it waits in
 * the FIFO, where it is neither superseded nor skipped. */
static int part_of(const gw_fair_t *f, const gw_job_t *job)
{
    return job->batch ? 0 : slot_of(f, job->cam);
}

/* A batch job's frame (jobs.h) waits behind every live one, whatever its camera: a batch
 * can never starve a camera or a detect request, and never counts as a camera's. */
static part_t *part_ptr(gw_fair_t *f, const gw_job_t *job)
{
    return job->bulk ? &f->bulk : &f->p[part_of(f, job)];
}

gw_job_t *gw_fair_push(gw_fair_t *f, gw_job_t *job, int front)
{
    part_t *p = part_ptr(f, job);
    gw_job_t *old = NULL;
    /* A participant that had nothing waiting joins at the current virtual time: an idle
     * camera banks no turns to burst with later. One whose frame is being replaced stays
     * active and keeps its place, whatever the phase of its frames against the backends'. */
    if (p->n == 0 && p->pass < f->vtime)
        p->pass = f->vtime;
    if (!front && p != &f->p[0] && p != &f->bulk && p->n >= f->depth) {
        old = p->head;
        unlink_job(f, p, old);
    }
    job->next = job->prev = NULL;
    if (p->head == NULL) {
        p->head = p->tail = job;
    } else if (front) {
        job->next = p->head;
        p->head->prev = job;
        p->head = job;
    } else {
        job->prev = p->tail;
        p->tail->next = job;
        p->tail = job;
    }
    p->n++;
    f->count++;
    return old;
}

void gw_fair_remove(gw_fair_t *f, gw_job_t *job)
{
    unlink_job(f, part_ptr(f, job), job);
}

/* Stale: its answer would come back older than the camera's max age, counting the time it
 * waited plus the model's service time (slack). The service time counts for at most half the
 * budget: a model slower than max_age_ms must still serve a camera's freshest frames, not
 * answer every one of them "stale" on arrival. */
static int is_stale(const part_t *p, const gw_job_t *job, uint64_t now, uint64_t slack)
{
    if (p->max_age_ms == 0)
        return 0;
    if (slack > p->max_age_ms / 2)
        slack = p->max_age_ms / 2;
    return now + slack > job->arrival_ms + p->max_age_ms;
}

gw_job_t *gw_fair_pop(gw_fair_t *f, uint64_t now, uint64_t slack, int *stale)
{
    *stale = 0;
    if (f->count == 0)
        return NULL;
    /* Stale frames first, wherever they wait: they are answered at once and must not count
     * as demand in the round below. */
    for (int i = 1; i <= f->ncams; i++) {
        part_t *p = &f->p[i];
        for (gw_job_t *j = p->head; j != NULL; j = j->next)
            if (is_stale(p, j, now, slack)) {
                unlink_job(f, p, j);
                *stale = 1;
                return j;
            }
    }
    /* Stride scheduling: the active participant with the lowest pass is served and its pass
     * advances by its stride (inversely proportional to its weight); ties go to the oldest
     * waiting frame. */
    part_t *best = NULL;
    for (int i = 0; i <= f->ncams; i++) {
        part_t *p = &f->p[i];
        if (p->n == 0)
            continue;
        if (best == NULL || p->pass < best->pass ||
            (p->pass == best->pass && p->head->arrival_ms < best->head->arrival_ms))
            best = p;
    }
    if (best == NULL) { /* only batch frames wait: they take no turn in the round */
        gw_job_t *job = f->bulk.head;
        unlink_job(f, &f->bulk, job);
        return job;
    }
    f->vtime = best->pass;
    /* The FIFO weighs as much as the frames waiting in it: each camera-less request (or
     * frame of a camera past max_cameras, or of a batch) competes like a camera of its own,
     * so many cameras cannot starve plain requests, nor plain requests the cameras. */
    uint64_t weight = best == &f->p[0] ? (uint64_t)best->n : (uint64_t)best->weight;
    best->pass += STRIDE_ONE / (weight > 0 ? weight : 1);
    gw_job_t *job = best->head;
    unlink_job(f, best, job);
    return job;
}

gw_job_t *gw_fair_next(const gw_fair_t *f, const gw_job_t *job)
{
    int from = 0;
    if (job != NULL) {
        if (job->next != NULL)
            return job->next;
        if (job->bulk)
            return NULL;
        from = part_of(f, job) + 1;
    }
    for (int i = from; i <= f->ncams; i++)
        if (f->p[i].head != NULL)
            return f->p[i].head;
    return f->bulk.head;
}
