/* Live cameras: the registry of cameras seen (by name, bounded by cfg->max_cameras), each
 * one's sequence numbers, statistics (fps offered / served / skipped, frame age at answer),
 * its results in order for the streams that watch it, and its latest frame. The queueing
 * rules (supersede, skip, fair shares) are fair.h's; this module only counts and delivers.
 *
 * Slots: a camera gets slot 1..max_cameras the first time a frame names it and keeps it for
 * the process's life; frames of cameras beyond that get slot 0 (the plain FIFO) and are
 * counted together under the name "other". Loop thread only. */
#ifndef GW_CAMERA_H
#define GW_CAMERA_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "job.h"

#define GW_CAMERA_EVENTS 64  /* results kept per camera for SSE Last-Event-ID resume */
#define GW_CAMERA_AGES 256   /* frame ages kept per camera for p50/p95 */
#define GW_CAMERA_WINDOW_S 5 /* fps are averaged over the last whole seconds */

typedef struct gw_cameras gw_cameras_t;
typedef struct gw_camera_watch gw_camera_watch_t;

/* A stream's subscription to one camera, owned by the stream (stream.c), linked in with
 * gw_cameras_watch. on_event runs on the loop thread for every result delivered, in seq
 * order: `json` is the event's data (one line), `jpeg` the frame (annotated when
 * `wants_jpeg` was set at watch time, else possibly NULL). */
struct gw_camera_watch {
    void (*on_event)(gw_camera_watch_t *w, uint64_t seq, const char *json, size_t json_len,
                     const uint8_t *jpeg, size_t jpeg_len);
    int wants_jpeg;
    int slot;
    gw_camera_watch_t *next, *prev;
};

/* One camera's figures at `now`, for /v1/cameras, metrics and the autoscaler. */
typedef struct {
    const char *name;
    const char *model;                                    /* "" = the default model */
    uint64_t in, served, superseded, stale, failed, late; /* totals */
    double fps_in, fps_served, fps_skipped;               /* over GW_CAMERA_WINDOW_S */
    double age_p50_ms, age_p95_ms;                        /* of answered frames, recent */
    uint64_t last_seq, last_sent_seq;
    int watchers;
    int live; /* a frame arrived within the window */
} gw_camera_stats_t;

/* cfg must outlive the registry. Returns 0 or PROTO_ENOMEM. */
int gw_cameras_create(gw_cameras_t **out, const gw_config_t *cfg);
/* Frees the registry; every watch must be gone. */
void gw_cameras_destroy(gw_cameras_t *c);

/* A frame arrives (before it is submitted): finds or registers job->opts.camera and sets
 * job->cam (its slot, 0 for none or past max_cameras), job->seq (1, 2, ... per camera) and
 * job->annotate (someone watches the annotated frames). Returns the slot; *created is 1
 * the first time a slot is used (the caller configures the pools' queues for it). */
int gw_cameras_arrive(gw_cameras_t *c, gw_job_t *job, uint64_t now_ms, int *created);

/* A frame of a camera is finished (any outcome; any job: those without a camera are
 * ignored): counts it and, for a result newer than the last one sent, delivers it to the
 * camera's watchers and keeps it for resume and latest.jpg. An older result is dropped
 * from the streams and counted as late. `now_unix_ms` stamps the event. */
void gw_cameras_done(gw_cameras_t *c, const gw_job_t *job, uint64_t now_ms, uint64_t now_unix_ms);

/* Registers camera `name` (frames to `model`, "" = the default) before any frame of it: a
 * pull camera is listed while it is still connecting or down. Returns its slot (0 when
 * max_cameras are taken); *created as for gw_cameras_arrive. */
int gw_cameras_declare(gw_cameras_t *c, const char *name, const char *model, int *created);

/* The slot of a registered camera, or 0. */
int gw_cameras_find(const gw_cameras_t *c, const char *name);
/* The highest slot in use; the name of a slot (0: "other"). */
int gw_cameras_count(const gw_cameras_t *c);
const char *gw_cameras_name(const gw_cameras_t *c, int slot);
void gw_cameras_stats(const gw_cameras_t *c, int slot, uint64_t now_ms, gw_camera_stats_t *out);

/* Links / unlinks a watch of camera `slot` (1..count). */
void gw_cameras_watch(gw_cameras_t *c, int slot, gw_camera_watch_t *w);
void gw_cameras_unwatch(gw_cameras_t *c, gw_camera_watch_t *w);

/* Calls w->on_event for every kept event of w->slot with seq > after, oldest first (SSE
 * resume). Returns how many; *gap is set when events after `after` are no longer kept. */
int gw_cameras_replay(gw_cameras_t *c, gw_camera_watch_t *w, uint64_t after, int *gap);

/* The camera's latest frame (annotated when *annotated is set), valid until the next
 * gw_cameras_done; NULL if none yet. Asking makes the next frames annotated for a while. */
const uint8_t *gw_cameras_latest(gw_cameras_t *c, int slot, uint64_t now_ms, size_t *len,
                                 int *annotated, uint64_t *seq);

/* The camera's latest result event (JSON), or NULL. */
const char *gw_cameras_last_event(const gw_cameras_t *c, int slot);

#endif
