/* See pull.h. Each camera is a small state machine driven by one timer (reconnect backoff, or
 * the next snapshot) and at most one transfer. Frames are copied out of the parser's buffer
 * into a job at once, so a stream that runs ahead of the backends costs superseded jobs in
 * the fair queue (answered at once), never a growing buffer here. */
#include "pull.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "camera.h"
#include "detect.h"
#include "err.h"
#include "log.h"
#include "mjpeg.h"

#define RING_S 8 /* seconds of received-frame counts (> GW_CAMERA_WINDOW_S) */

/* connecting: before the first frame ever; up: frames arrive; down: after an error, until a
 * frame arrives again (a reconnection in progress does not make it look any better). */
enum { ST_CONNECTING, ST_UP, ST_DOWN };
static const char *const state_names[] = {"connecting", "up", "down"};

typedef struct pull_cam pull_cam_t;

struct gw_pull {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    gw_fetch_t *fetch;
    gw_pull_submit_cb submit;
    gw_pull_keep_cb keep;
    void *ctx;
    int stopped;
    int open_timers; /* timers not yet closed: the memory goes with the last */
    int ncams;
    pull_cam_t *cams;
};

struct pull_cam {
    gw_pull_t *p;
    const gw_camera_cfg_t *cfg;
    uv_timer_t timer; /* reconnect, or the next snapshot */
    gw_fetch_req_t *req;
    gw_mjpeg_t parser;
    int parser_ready;
    int state;
    uint64_t backoff_ms;    /* the next reconnection's delay */
    uint64_t retry_ms;      /* the delay of the one scheduled now */
    uint64_t poll_start_ms; /* when the current snapshot was asked for */
    uint64_t last_take_ms;  /* the last frame submitted (the fps cap) */
    int got_frame;          /* this connection delivered a frame */
    char why[256];          /* set by the chunk callback before it stops the transfer */
    char last_error[300];
    uint64_t last_error_unix_ms, up_since_unix_ms;
    uint64_t connects, errors, frames, taken, capped, refused, out;
    struct {
        uint64_t sec;
        uint32_t n;
    } ring[RING_S];
};

/* One frame on its way: the job and the bytes it points at, in one allocation. */
typedef struct {
    gw_job_t job;
    pull_cam_t *cam;
    uint8_t data[];
} frame_t;

static uint64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void connect_cam(pull_cam_t *c);
static void poll_snapshot(pull_cam_t *c);

/* ---- frames ---- */

static void on_frame_done(gw_job_t *job)
{
    frame_t *f = (frame_t *)job; /* job is its first member */
    gw_pull_t *p = f->cam->p;
    /* Kept like a pushed frame's answer. Only a backend's result gets here with err 0, never
     * from inside a curl callback (a frame superseded during submit has an error). */
    if (job->err == 0 && p->keep != NULL) {
        cJSON *o = gw_detect_job_json(job);
        if (o != NULL) {
            p->keep(p->ctx, job, o);
            cJSON_Delete(o);
        }
    }
    f->cam->out--;
    gw_job_fini(job);
    free(f);
}

/* A whole JPEG from the camera: submitted unless the camera's fps cap says it is too soon. */
static void take_frame(pull_cam_t *c, const uint8_t *jpeg, size_t len)
{
    gw_pull_t *p = c->p;
    uint64_t now = uv_now(p->loop);
    c->frames++;
    uint64_t sec = now / 1000;
    if (c->ring[sec % RING_S].sec != sec) {
        c->ring[sec % RING_S].sec = sec;
        c->ring[sec % RING_S].n = 0;
    }
    c->ring[sec % RING_S].n++;
    if (c->state != ST_UP) {
        c->state = ST_UP;
        c->up_since_unix_ms = unix_ms();
        GW_LOG_I("camera", "camera=%s state=up url=%s", c->cfg->name, c->cfg->url);
    }
    c->got_frame = 1;
    c->backoff_ms = GW_PULL_BACKOFF_MIN_MS;
    /* an MJPEG camera faster than wanted: frames between the wanted ones are not taken */
    if (c->cfg->mode == GW_PULL_MJPEG && c->cfg->fps > 0 && c->taken > 0 &&
        (double)(now - c->last_take_ms) < 1000.0 / c->cfg->fps * 0.9) {
        c->capped++;
        return;
    }
    if (p->stopped)
        return;
    frame_t *f = malloc(sizeof *f + len);
    if (f == NULL) {
        c->refused++;
        return;
    }
    gw_job_init(&f->job);
    memcpy(f->data, jpeg, len);
    f->cam = c;
    f->job.image = f->data;
    f->job.image_len = len;
    snprintf(f->job.opts.camera, sizeof f->job.opts.camera, "%s", c->cfg->name);
    snprintf(f->job.opts.model, sizeof f->job.opts.model, "%s", c->cfg->model);
    f->job.opts.threshold = c->cfg->threshold;
    f->job.opts.output = PROTO_OUT_JSON;
    f->job.opts.ts_ms = (int64_t)unix_ms();
    f->job.on_done = on_frame_done;
    f->job.data = c;
    c->out++;
    c->taken++;
    c->last_take_ms = now;
    if (p->submit(p->ctx, &f->job) != 0) { /* not queued: on_done will not run */
        c->out--;
        c->refused++;
        gw_job_fini(&f->job);
        free(f);
    }
}

/* ---- failure and reconnection ---- */

static void on_timer(uv_timer_t *t)
{
    pull_cam_t *c = t->data;
    if (c->p->stopped)
        return;
    if (c->cfg->mode == GW_PULL_SNAPSHOT)
        poll_snapshot(c);
    else
        connect_cam(c);
}

/* The connection (or a snapshot) failed: shown as down with why, tried again after the
 * backoff. */
static void went_down(pull_cam_t *c, const char *why)
{
    c->errors++;
    snprintf(c->last_error, sizeof c->last_error, "%s", why);
    c->last_error_unix_ms = unix_ms();
    if (c->state != ST_DOWN)
        GW_LOG_W("camera", "camera=%s state=down url=%s error=\"%s\" retry_ms=%llu", c->cfg->name,
                 c->cfg->url, why, (unsigned long long)c->backoff_ms);
    c->state = ST_DOWN;
    if (c->p->stopped)
        return;
    c->retry_ms = c->backoff_ms;
    uv_timer_start(&c->timer, on_timer, c->backoff_ms, 0);
    c->backoff_ms =
        c->backoff_ms * 2 > GW_PULL_BACKOFF_MAX_MS ? GW_PULL_BACKOFF_MAX_MS : c->backoff_ms * 2;
}

/* Why a finished transfer is over, in words for /v1/cameras. */
static void transfer_error(const pull_cam_t *c, const gw_fetch_result_t *res, char *out, size_t cap)
{
    if (c->why[0] != '\0')
        snprintf(out, cap, "%s", c->why);
    else if (res->err != 0)
        snprintf(out, cap, "%s", res->error);
    else if (res->status != 200)
        snprintf(out, cap, "HTTP %ld from the camera", res->status);
    else
        snprintf(out, cap, "the camera ended the stream");
}

/* ---- MJPEG ---- */

static void on_part(void *arg, const uint8_t *jpeg, size_t len)
{
    take_frame(arg, jpeg, len);
}

static int on_chunk(void *arg, long status, const char *content_type, const uint8_t *data,
                    size_t len)
{
    pull_cam_t *c = arg;
    int rv;
    if (status != 200) {
        snprintf(c->why, sizeof c->why, "HTTP %ld from the camera", status);
        return PROTO_EURLSTATUS;
    }
    if (!c->parser_ready) {
        if ((rv = gw_mjpeg_init(&c->parser, content_type, c->cfg->max_frame_bytes)) != 0) {
            snprintf(c->why, sizeof c->why, "not an MJPEG stream: %s", c->parser.error);
            return rv;
        }
        c->parser_ready = 1;
    }
    if ((rv = gw_mjpeg_feed(&c->parser, data, len, on_part, c)) != 0) {
        snprintf(c->why, sizeof c->why, "bad MJPEG part: %s", c->parser.error);
        return rv;
    }
    return 0;
}

static void on_stream_done(void *arg, gw_fetch_result_t *res)
{
    pull_cam_t *c = arg;
    char why[300];
    c->req = NULL;
    transfer_error(c, res, why, sizeof why);
    if (c->parser_ready)
        gw_mjpeg_fini(&c->parser);
    c->parser_ready = 0;
    if (res->err == UV_ECANCELED && c->p->stopped)
        return;
    went_down(c, why);
}

static void connect_cam(pull_cam_t *c)
{
    gw_pull_t *p = c->p;
    c->why[0] = '\0';
    c->got_frame = 0;
    c->connects++;
    gw_fetch_opts_t o = {
        .url = c->cfg->url,
        .connect_timeout_ms = p->cfg->fetch_connect_timeout_ms,
        .max_redirects = p->cfg->fetch_max_redirects,
        .on_chunk = on_chunk,
        .chunk_arg = c,
        /* a camera that sends nothing for this long is as good as gone */
        .stall_ms = p->cfg->fetch_timeout_ms,
    };
    int rv = gw_fetch_start(p->fetch, &o, on_stream_done, c, &c->req);
    if (rv != 0) {
        char why[200];
        snprintf(why, sizeof why, "could not start the request: %s", proto_strerror(rv));
        went_down(c, why);
    }
}

/* ---- snapshots ---- */

static void on_snapshot(void *arg, gw_fetch_result_t *res)
{
    pull_cam_t *c = arg;
    gw_pull_t *p = c->p;
    c->req = NULL;
    if (res->err == UV_ECANCELED && p->stopped)
        return;
    char why[300] = "";
    if (res->err != 0 || res->status != 200)
        transfer_error(c, res, why, sizeof why);
    else if (res->len < 3 || memcmp(res->body, "\xff\xd8\xff", 3) != 0)
        snprintf(why, sizeof why, "the snapshot (%zu bytes, Content-Type: %.60s) is not a JPEG",
                 res->len, res->content_type[0] ? res->content_type : "none");
    if (why[0] != '\0') {
        went_down(c, why);
        return;
    }
    take_frame(c, res->body, res->len);
    if (p->stopped)
        return;
    /* the next poll one interval after this one started: a slow camera is polled at once */
    uint64_t interval = (uint64_t)llround(1000.0 / c->cfg->fps), now = uv_now(p->loop);
    uint64_t due = c->poll_start_ms + interval;
    uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

static void poll_snapshot(pull_cam_t *c)
{
    gw_pull_t *p = c->p;
    c->why[0] = '\0';
    c->connects++;
    c->poll_start_ms = uv_now(p->loop);
    gw_fetch_opts_t o = {
        .url = c->cfg->url,
        .max_bytes = c->cfg->max_frame_bytes,
        .connect_timeout_ms = p->cfg->fetch_connect_timeout_ms,
        .timeout_ms = p->cfg->fetch_timeout_ms,
        .max_redirects = p->cfg->fetch_max_redirects,
    };
    int rv = gw_fetch_start(p->fetch, &o, on_snapshot, c, &c->req);
    if (rv != 0) {
        char why[200];
        snprintf(why, sizeof why, "could not start the request: %s", proto_strerror(rv));
        went_down(c, why);
    }
}

/* ---- the API ---- */

int gw_pull_create(gw_pull_t **out, uv_loop_t *loop, const gw_config_t *cfg, gw_fetch_t *fetch,
                   gw_pull_submit_cb submit, gw_pull_keep_cb keep, void *ctx)
{
    gw_pull_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return PROTO_ENOMEM;
    int n = 0;
    for (int i = 0; i < cfg->ncameras; i++)
        n += cfg->cameras[i].url[0] != '\0';
    if (n > 0 && (p->cams = calloc((size_t)n, sizeof *p->cams)) == NULL) {
        free(p);
        return PROTO_ENOMEM;
    }
    p->loop = loop;
    p->cfg = cfg;
    p->fetch = fetch;
    p->submit = submit;
    p->keep = keep;
    p->ctx = ctx;
    for (int i = 0; i < cfg->ncameras; i++) {
        if (cfg->cameras[i].url[0] == '\0')
            continue;
        pull_cam_t *c = &p->cams[p->ncams++];
        c->p = p;
        c->cfg = &cfg->cameras[i];
        c->state = ST_CONNECTING;
        c->backoff_ms = GW_PULL_BACKOFF_MIN_MS;
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        p->open_timers++;
    }
    *out = p;
    return 0;
}

void gw_pull_start(gw_pull_t *p)
{
    for (int i = 0; i < p->ncams; i++) {
        pull_cam_t *c = &p->cams[i];
        GW_LOG_I("camera", "camera=%s pull=%s url=%s", c->cfg->name,
                 c->cfg->mode == GW_PULL_SNAPSHOT ? "snapshot" : "mjpeg", c->cfg->url);
        on_timer(&c->timer);
    }
}

void gw_pull_stop(gw_pull_t *p)
{
    if (p == NULL || p->stopped)
        return;
    p->stopped = 1;
    for (int i = 0; i < p->ncams; i++) {
        pull_cam_t *c = &p->cams[i];
        uv_timer_stop(&c->timer);
        if (c->req != NULL)
            gw_fetch_cancel(c->req); /* its callback runs now and sees p->stopped */
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    pull_cam_t *c = h->data;
    gw_pull_t *p = c->p;
    if (--p->open_timers == 0) {
        free(p->cams);
        free(p);
    }
}

void gw_pull_destroy(gw_pull_t *p)
{
    if (p == NULL)
        return;
    gw_pull_stop(p);
    if (p->ncams == 0) {
        free(p->cams);
        free(p);
        return;
    }
    for (int i = 0; i < p->ncams; i++)
        uv_close((uv_handle_t *)&p->cams[i].timer, on_timer_closed);
}

static const pull_cam_t *find_cam(const gw_pull_t *p, const char *name)
{
    for (int i = 0; p != NULL && i < p->ncams; i++)
        if (strcmp(p->cams[i].cfg->name, name) == 0)
            return &p->cams[i];
    return NULL;
}

int gw_pull_state(const gw_pull_t *p, const char *name, uint64_t *errors)
{
    const pull_cam_t *c = find_cam(p, name);
    if (c == NULL)
        return -1;
    *errors = c->errors;
    return c->state == ST_UP;
}

void gw_pull_describe(const gw_pull_t *p, const char *name, uint64_t now_ms, cJSON *o)
{
    const pull_cam_t *c = find_cam(p, name);
    if (c == NULL)
        return;
    cJSON_ReplaceItemInObject(o, "source", cJSON_CreateString("pull"));
    cJSON_ReplaceItemInObject(o, "state", cJSON_CreateString(state_names[c->state]));
    cJSON *j = cJSON_AddObjectToObject(o, "pull");
    cJSON_AddStringToObject(j, "url", c->cfg->url);
    cJSON_AddStringToObject(j, "mode", c->cfg->mode == GW_PULL_SNAPSHOT ? "snapshot" : "mjpeg");
    cJSON_AddStringToObject(j, "state", state_names[c->state]);
    /* frames from the camera over the last whole seconds, taken or not */
    uint64_t sec = now_ms / 1000, n = 0;
    for (uint64_t s = sec - GW_CAMERA_WINDOW_S; s < sec; s++)
        if (c->ring[s % RING_S].sec == s)
            n += c->ring[s % RING_S].n;
    cJSON_AddNumberToObject(j, "fps", round((double)n / GW_CAMERA_WINDOW_S * 100) / 100);
    cJSON_AddNumberToObject(j, "fps_wanted", c->cfg->fps);
    cJSON_AddNumberToObject(j, "frames", (double)c->frames);
    cJSON_AddNumberToObject(j, "taken", (double)c->taken);
    cJSON_AddNumberToObject(j, "capped", (double)c->capped);
    cJSON_AddNumberToObject(j, "refused", (double)c->refused);
    cJSON_AddNumberToObject(j, "connects", (double)c->connects);
    cJSON_AddNumberToObject(j, "errors", (double)c->errors);
    if (c->last_error[0] != '\0') {
        cJSON_AddStringToObject(j, "last_error", c->last_error);
        cJSON_AddNumberToObject(j, "last_error_at", (double)c->last_error_unix_ms);
    } else {
        cJSON_AddNullToObject(j, "last_error");
        cJSON_AddNullToObject(j, "last_error_at");
    }
    if (c->state == ST_UP)
        cJSON_AddNumberToObject(j, "up_since", (double)c->up_since_unix_ms);
    else
        cJSON_AddNumberToObject(j, "retry_ms", (double)c->retry_ms);
}
