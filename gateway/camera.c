/* See camera.h. Counting is per whole second in a small ring, ages in a ring of the last
 * answers; nothing here grows with time or traffic. */
#include "camera.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "err.h"

#define RING_S 8              /* seconds of counters kept (> GW_CAMERA_WINDOW_S) */
#define ANNOTATE_FOR_MS 10000 /* latest.jpg asks for annotated frames this long */

typedef struct {
    uint64_t sec; /* which second the counts belong to */
    uint32_t in, served, skipped;
} bucket_t;

typedef struct {
    char name[PROTO_CAMERA_MAX + 1];
    char model[GW_MODEL_NAME_MAX];
    uint64_t first_ms, last_ms;
    uint64_t in, served, superseded, stale, failed, late;
    uint64_t next_seq, last_sent;
    bucket_t ring[RING_S];
    float ages[GW_CAMERA_AGES];
    int nages, agepos;
    /* results kept for resume: events[i % N] holds seq ev_seq[...] */
    char *events[GW_CAMERA_EVENTS];
    uint64_t ev_seq[GW_CAMERA_EVENTS];
    int ev_next; /* next position to write */
    uint8_t *latest;
    size_t latest_len;
    int latest_annotated;
    uint64_t latest_seq;
    uint64_t annotate_until;
    gw_camera_watch_t *watchers;
    int nwatchers, njpeg;
} cam_t;

struct gw_cameras {
    const gw_config_t *cfg;
    int max, count;
    cam_t cams[]; /* [0] "other", [1..max] */
};

int gw_cameras_create(gw_cameras_t **out, const gw_config_t *cfg)
{
    int max = cfg->max_cameras;
    gw_cameras_t *c = calloc(1, sizeof *c + (size_t)(max + 1) * sizeof(cam_t));
    if (c == NULL)
        return PROTO_ENOMEM;
    c->cfg = cfg;
    c->max = max;
    memcpy(c->cams[0].name, "other", 6);
    *out = c;
    return 0;
}

void gw_cameras_destroy(gw_cameras_t *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i <= c->max; i++) {
        for (int k = 0; k < GW_CAMERA_EVENTS; k++)
            free(c->cams[i].events[k]);
        free(c->cams[i].latest);
    }
    free(c);
}

int gw_cameras_find(const gw_cameras_t *c, const char *name)
{
    for (int i = 1; i <= c->count; i++)
        if (strcmp(c->cams[i].name, name) == 0)
            return i;
    return 0;
}

int gw_cameras_count(const gw_cameras_t *c)
{
    return c->count;
}

const char *gw_cameras_name(const gw_cameras_t *c, int slot)
{
    return slot >= 1 && slot <= c->count ? c->cams[slot].name : "other";
}

static bucket_t *bucket(cam_t *k, uint64_t now_ms)
{
    uint64_t sec = now_ms / 1000;
    bucket_t *b = &k->ring[sec % RING_S];
    if (b->sec != sec) {
        memset(b, 0, sizeof *b);
        b->sec = sec;
    }
    return b;
}

int gw_cameras_declare(gw_cameras_t *c, const char *name, const char *model, int *created)
{
    *created = 0;
    int slot = gw_cameras_find(c, name);
    if (slot == 0 && c->count < c->max && strlen(name) < sizeof c->cams[0].name) {
        slot = ++c->count;
        cam_t *k = &c->cams[slot];
        snprintf(k->name, sizeof k->name, "%s", name);
        snprintf(k->model, sizeof k->model, "%s", model);
        *created = 1;
    }
    return slot;
}

int gw_cameras_arrive(gw_cameras_t *c, gw_job_t *job, uint64_t now_ms, int *created)
{
    *created = 0;
    job->cam = 0;
    job->seq = 0;
    if (job->opts.camera[0] == '\0')
        return 0;
    int slot = gw_cameras_declare(c, job->opts.camera, job->opts.model, created);
    /* Beyond max_cameras a camera is pooled under "other": counted, FIFO, no streams. */
    cam_t *k = &c->cams[slot];
    if (k->first_ms == 0)
        k->first_ms = now_ms;
    snprintf(k->model, sizeof k->model, "%s", job->opts.model);
    k->last_ms = now_ms;
    k->in++;
    bucket(k, now_ms)->in++;
    job->cam = slot;
    job->seq = ++k->next_seq;
    job->annotate = slot != 0 && (k->njpeg > 0 || now_ms < k->annotate_until);
    return slot;
}

static void keep_latest(cam_t *k, const gw_job_t *job)
{
    const uint8_t *img = job->image;
    size_t len = job->image_len;
    int annotated = 0;
    /* The backend drew the boxes when asked for JPEG output, by us or by the client. */
    int wire_jpeg =
        job->opts.output == PROTO_OUT_JPEG || (job->annotate && job->opts.output == PROTO_OUT_JSON);
    if (wire_jpeg && job->rep.payload_len > 2 && job->rep.payload[0] == 0xFF &&
        job->rep.payload[1] == 0xD8) {
        img = job->rep.payload;
        len = job->rep.payload_len;
        annotated = 1;
    } else if (len < 2 || img[0] != 0xFF || img[1] != 0xD8) {
        return; /* not a JPEG (a PNG upload): nothing an MJPEG stream can carry */
    }
    uint8_t *copy = len <= k->latest_len ? k->latest : malloc(len);
    if (copy == NULL)
        return;
    memcpy(copy, img, len);
    if (copy != k->latest) {
        free(k->latest);
        k->latest = copy;
    }
    k->latest_len = len;
    k->latest_annotated = annotated;
    k->latest_seq = job->seq;
}

void gw_cameras_done(gw_cameras_t *c, const gw_job_t *job, uint64_t now_ms, uint64_t now_unix_ms)
{
    if (job->seq == 0)
        return;
    cam_t *k = &c->cams[job->cam >= 1 && job->cam <= c->count ? job->cam : 0];
    bucket_t *b = bucket(k, now_ms);
    if (job->err == PROTO_ESUPERSEDED || job->err == PROTO_ESTALE) {
        if (job->err == PROTO_ESUPERSEDED)
            k->superseded++;
        else
            k->stale++;
        b->skipped++;
        return;
    }
    if (job->err != 0) {
        k->failed++;
        return;
    }
    k->served++;
    b->served++;
    k->ages[k->agepos] = (float)job->total_ms;
    k->agepos = (k->agepos + 1) % GW_CAMERA_AGES;
    if (k->nages < GW_CAMERA_AGES)
        k->nages++;
    if (k == &c->cams[0])
        return; /* "other" has no streams */
    if (job->seq <= k->last_sent) {
        /* Two backends answered out of order: the stream already moved past this one. */
        k->late++;
        return;
    }
    k->last_sent = job->seq;
    keep_latest(k, job);
    cJSON *o = gw_detect_job_json(job);
    cJSON_AddNumberToObject(o, "ts_answer", (double)now_unix_ms);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (json == NULL)
        return;
    int pos = k->ev_next;
    free(k->events[pos]);
    k->events[pos] = json;
    k->ev_seq[pos] = job->seq;
    k->ev_next = (pos + 1) % GW_CAMERA_EVENTS;
    size_t jlen = strlen(json);
    gw_camera_watch_t *w = k->watchers;
    while (w != NULL) {
        gw_camera_watch_t *next = w->next; /* a watcher may leave from its callback */
        w->on_event(w, job->seq, json, jlen, k->latest_seq == job->seq ? k->latest : NULL,
                    k->latest_seq == job->seq ? k->latest_len : 0);
        w = next;
    }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

void gw_cameras_stats(const gw_cameras_t *c, int slot, uint64_t now_ms, gw_camera_stats_t *out)
{
    const cam_t *k = &c->cams[slot >= 1 && slot <= c->count ? slot : 0];
    memset(out, 0, sizeof *out);
    out->name = k->name;
    out->model = k->model;
    out->in = k->in;
    out->served = k->served;
    out->superseded = k->superseded;
    out->stale = k->stale;
    out->failed = k->failed;
    out->late = k->late;
    out->last_seq = k->next_seq;
    out->last_sent_seq = k->last_sent;
    out->watchers = k->nwatchers;
    /* Whole seconds only (the current one is still filling), and no more of them than the
     * camera has existed, so a camera's first seconds are not diluted. */
    uint64_t sec = now_ms / 1000, first = k->first_ms / 1000;
    uint64_t span = GW_CAMERA_WINDOW_S;
    if (k->in > 0 && sec - first < span)
        span = sec - first > 0 ? sec - first : 1;
    uint64_t in = 0, served = 0, skipped = 0;
    for (int i = 0; i < RING_S; i++) {
        const bucket_t *b = &k->ring[i];
        if (b->sec < sec && b->sec + span >= sec) {
            in += b->in;
            served += b->served;
            skipped += b->skipped;
        }
    }
    out->fps_in = (double)in / (double)span;
    out->fps_served = (double)served / (double)span;
    out->fps_skipped = (double)skipped / (double)span;
    out->live = k->in > 0 && now_ms - k->last_ms < GW_CAMERA_WINDOW_S * 1000;
    if (k->nages > 0) {
        float sorted[GW_CAMERA_AGES];
        memcpy(sorted, k->ages, (size_t)k->nages * sizeof sorted[0]);
        qsort(sorted, (size_t)k->nages, sizeof sorted[0], cmp_float);
        out->age_p50_ms = sorted[(k->nages - 1) / 2];
        out->age_p95_ms = sorted[(int)((k->nages - 1) * 0.95 + 0.5)];
    }
}

void gw_cameras_watch(gw_cameras_t *c, int slot, gw_camera_watch_t *w)
{
    cam_t *k = &c->cams[slot];
    w->slot = slot;
    w->prev = NULL;
    w->next = k->watchers;
    if (k->watchers)
        k->watchers->prev = w;
    k->watchers = w;
    k->nwatchers++;
    if (w->wants_jpeg)
        k->njpeg++;
}

void gw_cameras_unwatch(gw_cameras_t *c, gw_camera_watch_t *w)
{
    cam_t *k = &c->cams[w->slot];
    if (w->prev)
        w->prev->next = w->next;
    else
        k->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
    k->nwatchers--;
    if (w->wants_jpeg)
        k->njpeg--;
}

int gw_cameras_replay(gw_cameras_t *c, gw_camera_watch_t *w, uint64_t after, int *gap)
{
    cam_t *k = &c->cams[w->slot];
    int n = 0;
    uint64_t oldest = UINT64_MAX;
    *gap = 0;
    for (int i = 0; i < GW_CAMERA_EVENTS; i++) {
        int pos = (k->ev_next + i) % GW_CAMERA_EVENTS; /* oldest first */
        if (k->events[pos] == NULL)
            continue;
        if (k->ev_seq[pos] < oldest)
            oldest = k->ev_seq[pos];
        if (k->ev_seq[pos] <= after)
            continue;
        w->on_event(w, k->ev_seq[pos], k->events[pos], strlen(k->events[pos]), NULL, 0);
        n++;
    }
    /* Frames after `after` that were skipped never had events; only a full ring can have
     * lost some, and only if the oldest kept one is past the first wanted. */
    if (k->events[k->ev_next] != NULL && oldest > after + 1 && n > 0)
        *gap = 1;
    return n;
}

const uint8_t *gw_cameras_latest(gw_cameras_t *c, int slot, uint64_t now_ms, size_t *len,
                                 int *annotated, uint64_t *seq)
{
    cam_t *k = &c->cams[slot];
    k->annotate_until = now_ms + ANNOTATE_FOR_MS;
    *len = k->latest_len;
    *annotated = k->latest_annotated;
    *seq = k->latest_seq;
    return k->latest;
}

const char *gw_cameras_last_event(const gw_cameras_t *c, int slot)
{
    const cam_t *k = &c->cams[slot];
    int pos = (k->ev_next + GW_CAMERA_EVENTS - 1) % GW_CAMERA_EVENTS;
    return k->events[pos];
}
