/* See jobs.h and jobs_internal.h: the registry and dispatch. The objects in the jobs store
 * (jobs_store.c) are the truth for what survives a restart; memory holds one small record per
 * image (state, label, the result's JSON) and only the window of frames out, whose bytes are
 * read back from the store when they are dispatched. */
#include "jobs.h"
#include "jobs_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "body.h"
#include "detect.h"
#include "err.h"
#include "log.h"
#include "response.h"
#include "status.h"
#include "storage.h"
#include "store.h"

#define RETRY_MS 200

const char *const gw__job_state_names[] = {"queued", "running", "done", "cancelled"};

/* One frame out: the pool's job and the bytes it points at. */
typedef struct {
    gw_job_t g;
    gw_jobs_t *jobs;
    gw__batch_t *job;
    int idx;
    int from_store; /* its bytes are read from in/N (else fetched from its URL or key) */
    uint8_t *buf;
} frame_t;

static void pump(gw_jobs_t *js);
static void on_retry(uv_timer_t *t);

/* ---- the registry ---- */

void gw__batch_free(gw__batch_t *j)
{
    for (int i = 0; i < j->n; i++) {
        free(j->imgs[i].result);
        free(j->imgs[i].ref);
    }
    free(j->imgs);
    free(j);
}

void gw__batch_release(gw_jobs_t *js, gw__batch_t *j)
{
    (void)js;
    if (j->dead && j->nout == 0 && j->nio == 0)
        gw__batch_free(j);
}

/* Out of the registry for good: freed once nothing is out on it; its writes still out hold a
 * purge back (jobs_store.c). */
static void batch_kill(gw_jobs_t *js, gw__batch_t *j)
{
    j->dead = 1;
    js->nio_dead += j->nio;
}

static void job_settle(gw_jobs_t *js, gw__batch_t *j)
{
    if (j->state != GW__JOB_CANCELLED && j->ndone + j->nfailed == j->n) {
        j->state = GW__JOB_DONE;
        j->finished_ms = uv_now(js->loop);
    }
}

gw__batch_t *gw__jobs_find(gw_jobs_t *js, const char *id, size_t len)
{
    for (gw__batch_t *j = js->head; j != NULL; j = j->next)
        if (strlen(j->id) == len && memcmp(j->id, id, len) == 0)
            return j;
    return NULL;
}

static void append_job(gw_jobs_t *js, gw__batch_t *j)
{
    gw__batch_t **pp = &js->head;
    while (*pp != NULL && strcmp((*pp)->id, j->id) < 0)
        pp = &(*pp)->next;
    j->next = *pp;
    *pp = j;
    js->njobs++;
}

void gw__jobs_adopt(gw_jobs_t *js, gw__batch_t *j)
{
    for (int i = 0; i < j->n && j->state != GW__JOB_CANCELLED; i++)
        if (j->imgs[i].st == GW__IMG_PENDING)
            js->bytes += j->imgs[i].len;
    j->created_ms = uv_now(js->loop);
    job_settle(js, j);
    append_job(js, j);
    GW_LOG_I("job_load", "job=%s images=%d done=%d failed=%d state=%s", j->id, j->n, j->ndone,
             j->nfailed, gw__job_state_names[j->state]);
}

int gw_jobs_create(gw_jobs_t **out, uv_loop_t *loop, const gw_config_t *cfg, const gw_jobs_io_t *io,
                   char *err, size_t cap)
{
    gw_jobs_t *js = calloc(1, sizeof *js);
    if (js == NULL)
        return PROTO_ENOMEM;
    js->loop = loop;
    js->cfg = cfg;
    js->io = *io;
    /* A small window: twice what the largest pool can run at once keeps every backend busy
     * between two completions; no more, so the pools' queues never fill with batch frames
     * and a cancel leaves little to finish. */
    int most = cfg->max_backends;
    for (int i = 0; i < cfg->nmodels; i++)
        if (cfg->models[i].max_backends > most)
            most = cfg->models[i].max_backends;
    js->window = 2 * most * cfg->backend_concurrency;
    if (js->window > cfg->queue_size / 4)
        js->window = cfg->queue_size / 4;
    if (js->window > 256)
        js->window = 256;
    if (js->window < 2)
        js->window = 2;
    if (cfg->jobs_dir[0] != '\0') {
        snprintf(js->dir, sizeof js->dir, "%s", cfg->jobs_dir);
    } else {
        const char *state = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
        if (state != NULL && state[0] == '/')
            snprintf(js->dir, sizeof js->dir, "%s/framegate/jobs", state);
        else
            snprintf(js->dir, sizeof js->dir, "%s/.local/state/framegate/jobs",
                     home != NULL ? home : "/tmp");
    }
    int rv = gw__jobs_open_store(js, io->http, err, cap);
    if (rv != 0) {
        free(js);
        return rv;
    }
    uv_timer_init(loop, &js->retry);
    js->retry.data = js;
    gw__jobs_load_all(js);
    *out = js;
    return 0;
}

void gw_jobs_start(gw_jobs_t *js)
{
    js->started = 1;
    pump(js);
}

void gw__jobs_load_failed(gw_jobs_t *js)
{
    js->load_backoff_ms = js->load_backoff_ms ? js->load_backoff_ms * 2 : 1000;
    if (js->load_backoff_ms > 30000)
        js->load_backoff_ms = 30000;
    GW_LOG_W("jobs_load_retry", "store=%s jobs=%d retry_ms=%u", js->store_url, js->njobs,
             js->load_backoff_ms);
    if (js->stopping)
        return;
    js->load_again = 1;
    uv_timer_start(&js->retry, on_retry, js->load_backoff_ms, 0);
}

void gw__jobs_loaded(gw_jobs_t *js)
{
    js->loading = 0;
    GW_LOG_I("jobs_loaded", "store=%s jobs=%d", js->store_url, js->njobs);
    pump(js);
}

void gw_jobs_close(gw_jobs_t *js)
{
    if (js != NULL)
        gw__jobs_close_store(js);
}

void gw_jobs_stop(gw_jobs_t *js)
{
    js->stopping = 1;
    uv_timer_stop(&js->retry);
}

static void on_retry_closed(uv_handle_t *h)
{
    free(h->data); /* the registry */
}

void gw_jobs_destroy(gw_jobs_t *js)
{
    if (js == NULL)
        return;
    gw__jobs_close_store(js); /* every operation out is called back */
    gw__batch_t *j = js->head;
    while (j != NULL) {
        gw__batch_t *next = j->next;
        gw__batch_free(j);
        j = next;
    }
    /* The registry is the timer's memory: freed by the close callback, on the loop run
     * that follows (the app runs the loop once more to close every handle). */
    uv_close((uv_handle_t *)&js->retry, on_retry_closed);
}

int gw_jobs_pending(const gw_jobs_t *js, const char *model, int is_default)
{
    int n = 0;
    for (const gw__batch_t *j = js->head; j != NULL; j = j->next)
        if ((j->state == GW__JOB_QUEUED || j->state == GW__JOB_RUNNING) && !j->dead &&
            (strcmp(j->model, model) == 0 || (j->model[0] == '\0' && is_default)))
            n += j->n - j->ndone - j->nfailed;
    return n;
}

/* ---- dispatch ---- */

static void on_retry(uv_timer_t *t)
{
    gw_jobs_t *js = t->data;
    if (js->load_again) {
        js->load_again = 0;
        gw__jobs_load_all(js);
        return;
    }
    pump(js);
}

/* Refusals and expiries for want of capacity are not the image's fault: it waits again. */
static int transient(int err)
{
    return err == PROTO_EQUEUEFULL || err == PROTO_ENOBACKEND || err == PROTO_EDEADLINE ||
           err == PROTO_ESHUTDOWN;
}

static void top_label(const gw_job_t *g, char *out, size_t cap)
{
    size_t cursor = 0;
    proto_det_t d;
    float best = -1;
    snprintf(out, cap, "none");
    while (proto_rep_det_next(&g->rep, &cursor, &d))
        if (d.confidence > best) {
            best = d.confidence;
            size_t l = d.label_len < cap - 1 ? d.label_len : cap - 1;
            memcpy(out, d.label, l);
            out[l] = '\0';
        }
    for (char *p = out; *p; p++)
        if (*p == '\t' || *p == '\n' || *p == ',')
            *p = ' ';
}

/* An image's end: its result kept in memory and appended to the job's results file. */
static void finish_image(gw_jobs_t *js, gw__batch_t *j, int idx, int failed)
{
    gw__img_t *im = &j->imgs[idx];
    im->st = failed ? GW__IMG_FAILED : GW__IMG_DONE;
    if (failed) {
        snprintf(im->label, sizeof im->label, "error");
        j->nfailed++;
    } else {
        j->ndone++;
    }
    gw__jobs_put_result(js, j, idx);
    js->bytes -= im->len;
    job_settle(js, j);
}

static void fail_image(gw_jobs_t *js, gw__batch_t *j, int idx, int err, const char *msg)
{
    size_t len;
    j->imgs[idx].result = gw_error_json(gw_status_of(err).code, msg, &len);
    finish_image(js, j, idx, 1);
}

/* A frame comes back without a verdict (refused, expired, cancelled): the image waits again. */
static void requeue(gw_jobs_t *js, gw__batch_t *j, int idx)
{
    gw__img_t *im = &j->imgs[idx];
    im->st = GW__IMG_PENDING;
    if (j->state == GW__JOB_CANCELLED)
        js->bytes -= im->len; /* never sent again */
    if (idx < j->cursor)
        j->cursor = idx;
}

/* Frees a frame once it is back; the last frame of a job reset meanwhile frees the job. */
static void frame_free(gw_jobs_t *js, frame_t *f)
{
    gw__batch_t *j = f->job;
    js->out--;
    j->nout--;
    gw_job_fini(&f->g);
    free(f->buf);
    free(f);
    gw__batch_release(js, j);
}

static void on_frame_done(gw_job_t *g)
{
    frame_t *f = (frame_t *)g;
    gw_jobs_t *js = f->jobs;
    gw__batch_t *j = f->job;
    gw__img_t *im = &j->imgs[f->idx];
    if (j->dead) {
        /* reset while it was out */
    } else if (transient(g->err)) {
        requeue(js, j, f->idx);
    } else {
        cJSON *o = gw_detect_job_json(g);
        cJSON_AddStringToObject(o, "name", im->name);
        im->result = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (g->err == 0) {
            top_label(g, im->label, sizeof im->label);
            if (g->rep.payload_len > 0) {
                char rel[48];
                snprintf(rel, sizeof rel, "out/%d.jpg", f->idx);
                gw__jobs_put(js, j, GW__PUT_PLAIN, f->idx, rel, g->rep.payload, g->rep.payload_len);
            }
        }
        finish_image(js, j, f->idx, g->err != 0);
    }
    frame_free(js, f);
    pump(js);
}

/* Hands a frame whose bytes are in f->buf to the pool. 0, or -1 when the pools refused it
 * for want of room (the image waits again and the retry timer runs: stop pumping). */
static int send_frame(gw_jobs_t *js, frame_t *f, size_t len)
{
    gw__batch_t *j = f->job;
    f->g.image = f->buf;
    f->g.image_len = len;
    f->g.bulk = 1;
    f->g.on_done = on_frame_done;
    f->g.opts.output = PROTO_OUT_JPEG; /* the boxes and the annotated image */
    snprintf(f->g.opts.model, sizeof f->g.opts.model, "%s", j->model);
    int rv = js->io.submit(js->io.ctx, &f->g);
    if (rv == 0)
        return 0;
    int idx = f->idx;
    frame_free(js, f);
    if (transient(rv)) {
        requeue(js, j, idx);
        uv_timer_start(&js->retry, on_retry, RETRY_MS, 0);
        return -1;
    }
    fail_image(js, j, idx, rv, proto_strerror(rv));
    return 0;
}

/* The bytes of an image: read back from in/N, or fetched from its URL or stored key. */
static void on_input(void *arg, int err, const char *msg, uint8_t *data, size_t len)
{
    frame_t *f = arg;
    gw_jobs_t *js = f->jobs;
    gw__batch_t *j = f->job;
    if (f->from_store && err != 0 && err != UV_ECANCELED && !j->dead) {
        int idx = f->idx;
        gw__img_t *im = &j->imgs[idx];
        free(data);
        frame_free(js, f);
        if (err == PROTO_ENOTFOUND && im->src == GW__SRC_BYTES) {
            /* the input is gone: a failed image, not a lost one */
            im->result = strdup("{\"error\":{\"code\":\"input_missing\"}}");
            finish_image(js, j, idx, 1);
            pump(js);
            return;
        }
        /* a kept copy gone (fetched again), or the store is failing (tried again later) */
        if (err == PROTO_ENOTFOUND)
            im->kept = 0;
        else
            GW_LOG_W("job_read", "job=%s index=%d error=\"%s\"", j->id, idx,
                     msg ? msg : proto_strerror(err));
        requeue(js, j, idx);
        if (err == PROTO_ENOTFOUND)
            pump(js);
        else if (!js->stopping)
            uv_timer_start(&js->retry, on_retry, RETRY_MS, 0);
        return;
    }
    if (j->dead || err == UV_ECANCELED ||
        (err == 0 && (js->stopping || j->state == GW__JOB_CANCELLED))) {
        /* reset, cancelled (nothing more is dispatched), or the gateway is stopping (fetched
         * again after the restart) */
        free(data);
        if (!j->dead)
            requeue(js, j, f->idx);
        frame_free(js, f);
        return;
    }
    if (err != 0) {
        int idx = f->idx;
        frame_free(js, f);
        fail_image(js, j, idx, err, msg != NULL ? msg : proto_strerror(err));
        pump(js);
        return;
    }
    if (!f->from_store) {
        /* Kept as if uploaded: a restart does not fetch it again, and the thumbnail falls
         * back to it when no drawing comes back. */
        char rel[32];
        snprintf(rel, sizeof rel, "in/%d", f->idx);
        gw__jobs_put(js, j, GW__PUT_KEPT, f->idx, rel, data, len);
    }
    f->buf = data;
    if (send_frame(js, f, len) == 0)
        pump(js);
}

/* Starts fetching the bytes of image idx from where it was given. 0, or a code (no callback). */
static int fetch_input(gw_jobs_t *js, frame_t *f)
{
    const gw__img_t *im = &f->job->imgs[f->idx];
    if (im->src == GW__SRC_URL)
        return js->io.fetch != NULL ? js->io.fetch(js->io.ctx, im->ref, on_input, f) : PROTO_EINVAL;
    gw_storage_t *st = NULL;
    if (js->io.storage_of == NULL || js->io.storage_of(js->io.ctx, f->job->model, &st) != 0 ||
        st == NULL)
        return PROTO_ENOTFOUND;
    gw_store_t *s = gw_storage_store(st);
    return s->ops->get(s, im->ref, js->cfg->max_body_bytes, on_input, f);
}

/* Sends pending frames, oldest job first, until the window is full. An image given by URL
 * or key counts in the window while it is fetched, so at most a window of them is. */
static void pump(gw_jobs_t *js)
{
    if (!js->started || js->stopping || js->loading)
        return;
    for (gw__batch_t *j = js->head; j != NULL && js->out < js->window; j = j->next) {
        if (j->state != GW__JOB_QUEUED && j->state != GW__JOB_RUNNING)
            continue;
        while (j->cursor < j->n && js->out < js->window) {
            int i = j->cursor;
            gw__img_t *im = &j->imgs[i];
            if (im->st != GW__IMG_PENDING) {
                j->cursor++;
                continue;
            }
            frame_t *f = calloc(1, sizeof *f);
            if (f == NULL)
                return;
            gw_job_init(&f->g);
            f->jobs = js;
            f->job = j;
            f->idx = i;
            im->st = GW__IMG_OUT;
            js->out++;
            j->nout++;
            j->cursor++;
            if (j->state == GW__JOB_QUEUED)
                j->state = GW__JOB_RUNNING;
            f->from_store = im->src == GW__SRC_BYTES || im->kept;
            int rv = f->from_store ? gw__jobs_get_input(js, j, i, on_input, f) : fetch_input(js, f);
            if (rv != 0 && f->from_store) {
                /* the store is closing or out of memory: the image waits */
                frame_free(js, f);
                requeue(js, j, i);
                if (rv != PROTO_ESHUTDOWN && !js->stopping)
                    uv_timer_start(&js->retry, on_retry, RETRY_MS, 0);
                return;
            }
            if (rv != 0) {
                frame_free(js, f);
                fail_image(js, j, i, rv,
                           rv == PROTO_ENOTFOUND ? "no store for the job's model"
                                                 : proto_strerror(rv));
            }
        }
    }
}

/* ---- changes from the routes (jobs_internal.h) ---- */

int gw__jobs_evict(gw_jobs_t *js)
{
    gw__batch_t **pp = &js->head;
    while (*pp != NULL && !(((*pp)->state == GW__JOB_DONE || (*pp)->state == GW__JOB_CANCELLED) &&
                            (*pp)->nout == 0))
        pp = &(*pp)->next;
    if (*pp == NULL)
        return -1;
    gw__batch_t *old = *pp;
    *pp = old->next;
    js->njobs--;
    char prefix[48];
    snprintf(prefix, sizeof prefix, "jobs/%s/", old->id);
    batch_kill(js, old);
    gw__jobs_purge(js, prefix, 0, NULL, NULL);
    gw__batch_release(js, old);
    return 0;
}

gw__batch_t *gw__jobs_begin(gw_jobs_t *js, const char *model, char *msg, size_t cap, int *err)
{
    gw__batch_t *j = calloc(1, sizeof *j);
    if (j == NULL) {
        snprintf(msg, cap, "out of memory");
        *err = PROTO_ENOMEM;
        return NULL;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t unix_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    /* ids sort by creation time, so the registry's order survives a restart */
    snprintf(j->id, sizeof j->id, "%011llx%04x", (unsigned long long)unix_ms,
             (js->counter++) & 0xffffu);
    snprintf(j->model, sizeof j->model, "%s", model);
    j->created_ms = uv_now(js->loop);
    j->created_unix_ms = unix_ms;
    if (js->store == NULL) {
        snprintf(msg, cap, "shutting down");
        *err = PROTO_ESHUTDOWN;
        free(j);
        return NULL;
    }
    return j;
}

/* A new record at the end of a job being uploaded, named `name` or image_N. NULL with a
 * code in *err and msg set. */
static gw__img_t *add_slot(gw_jobs_t *js, gw__batch_t *j, const char *name, char *msg, size_t cap,
                           int *err)
{
    if (j->n >= js->cfg->max_job_images) {
        snprintf(msg, cap, "more than max_job_images (%d) images", js->cfg->max_job_images);
        *err = PROTO_ETOOBIG;
        return NULL;
    }
    if (j->n == j->cap) {
        int nc = j->cap ? j->cap * 2 : 64;
        gw__img_t *n = realloc(j->imgs, (size_t)nc * sizeof *n);
        if (n == NULL) {
            *err = PROTO_ENOMEM;
            return NULL;
        }
        j->imgs = n;
        j->cap = nc;
    }
    gw__img_t *im = &j->imgs[j->n];
    memset(im, 0, sizeof *im);
    if (name != NULL && name[0] != '\0')
        snprintf(im->name, sizeof im->name, "%s", name);
    else
        snprintf(im->name, sizeof im->name, "image_%d", j->n);
    for (char *p = im->name; *p; p++) /* one line of meta, one field of name,label */
        if (*p == '\n' || *p == '\r' || *p == '\t' || *p == ',')
            *p = '_';
    gw_body_utf8_sanitize(im->name, strlen(im->name));
    return im;
}

int gw__jobs_add(gw_jobs_t *js, gw__batch_t *j, size_t uploading, const char *name,
                 const uint8_t *data, size_t len, char *msg, size_t cap)
{
    if (len == 0) {
        snprintf(msg, cap, "image %d is empty", j->n);
        return PROTO_EEMPTY;
    }
    if (j->n < js->cfg->max_job_images && js->bytes + uploading + len > js->cfg->max_job_bytes) {
        snprintf(msg, cap, "pending images over max_job_bytes; retry later");
        return PROTO_EQUEUEFULL;
    }
    int err = 0;
    gw__img_t *im = add_slot(js, j, name, msg, cap, &err);
    if (im == NULL)
        return err;
    im->len = len;
    char rel[32];
    snprintf(rel, sizeof rel, "in/%d", j->n);
    int rv = gw__jobs_put(js, j, GW__PUT_INPUT, j->n, rel, data, len);
    if (rv != 0) {
        snprintf(msg, cap, "cannot keep the image: %s", proto_strerror(rv));
        return rv == PROTO_ENOMEM || rv == PROTO_ESHUTDOWN ? rv : PROTO_ESTORE;
    }
    j->upl_wait++;
    j->n++;
    return 0;
}

int gw__jobs_add_ref(gw_jobs_t *js, gw__batch_t *j, const char *name, int src, const char *ref,
                     char *msg, size_t cap)
{
    size_t rl = strlen(ref);
    if (src == GW__SRC_URL) {
        int ok =
            rl <= 2048 && (strncmp(ref, "http://", 7) == 0 || strncmp(ref, "https://", 8) == 0);
        for (size_t i = 0; ok && i < rl; i++)
            ok = (unsigned char)ref[i] > 0x20 && ref[i] != 0x7f; /* one line of meta */
        if (!ok) {
            snprintf(msg, cap,
                     "image %d: url must be an http or https URL of at most 2048 "
                     "bytes, without spaces",
                     j->n);
            return PROTO_EINVAL;
        }
    } else if (!gw_store_key_valid(ref)) {
        snprintf(msg, cap, "image %d: a key is [A-Za-z0-9._-] segments joined by '/'", j->n);
        return PROTO_EINVAL;
    }
    int err = 0;
    /* named after the last segment of its path unless a name is given */
    char base[GW__JOB_NAME_MAX + 1] = "";
    if (name == NULL || name[0] == '\0') {
        size_t end = strcspn(ref, "?#");
        const char *b = ref + end;
        while (b > ref && b[-1] != '/')
            b--;
        size_t bl = (size_t)(ref + end - b);
        snprintf(base, sizeof base, "%.*s", (int)(bl < sizeof base ? bl : sizeof base - 1), b);
        name = base;
    }
    gw__img_t *im = add_slot(js, j, name, msg, cap, &err);
    if (im == NULL)
        return err;
    im->src = (uint8_t)src;
    if ((im->ref = strdup(ref)) == NULL)
        return PROTO_ENOMEM;
    j->n++;
    return 0;
}

static void uploads_remove(gw_jobs_t *js, gw__batch_t *j)
{
    for (gw__batch_t **pp = &js->uploads; *pp != NULL; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            j->next = NULL;
            js->nuploads--;
            js->bytes -= j->upl_bytes;
            return;
        }
}

/* The end of a commit: the job goes to the registry (err 0) or back to its caller. */
static void commit_end(gw_jobs_t *js, gw__batch_t *j, int err, const char *msg)
{
    gw__jobs_commit_cb cb = j->commit_cb;
    void *arg = j->commit_arg;
    j->commit_cb = NULL;
    uploads_remove(js, j);
    if (err == 0) {
        js->bytes += j->upl_bytes;
        append_job(js, j);
        GW_LOG_I("job_create", "job=%s images=%d bytes=%zu model=%s", j->id, j->n, j->upl_bytes,
                 j->model[0] ? j->model : "(default)");
    }
    j->upl_bytes = 0;
    cb(arg, err, msg);
    if (err == 0)
        pump(js);
}

/* Every input stored: the meta last (objects without it are an upload that never finished,
 * deleted at the next start). */
static void commit_step(gw_jobs_t *js, gw__batch_t *j)
{
    if (j->upl_err != 0) {
        commit_end(js, j, j->upl_err, j->upl_msg);
        return;
    }
    int rv = gw__jobs_put_meta(js, j);
    if (rv != 0)
        commit_end(js, j, rv == PROTO_ESHUTDOWN ? rv : PROTO_ESTORE, proto_strerror(rv));
}

void gw__jobs_stored(gw_jobs_t *js, gw__batch_t *j, int what, int err, const char *msg)
{
    if (err != 0 && j->upl_err == 0) {
        j->upl_err = err == UV_ECANCELED ? PROTO_ESHUTDOWN : PROTO_ESTORE;
        snprintf(j->upl_msg, sizeof j->upl_msg, "cannot keep the job: %s",
                 msg ? msg : proto_strerror(err));
    }
    if (what == GW__PUT_INPUT) {
        j->upl_wait--;
        if (j->upl_wait == 0 && j->commit_cb != NULL)
            commit_step(js, j);
    } else if (j->commit_cb != NULL) { /* the meta */
        commit_end(js, j, j->upl_err, j->upl_err ? j->upl_msg : NULL);
    }
}

void gw__jobs_commit(gw_jobs_t *js, gw__batch_t *j, size_t bytes, gw__jobs_commit_cb cb, void *arg)
{
    /* taken now, so that uploads racing this one see them */
    j->upl_bytes = bytes;
    js->bytes += bytes;
    j->commit_cb = cb;
    j->commit_arg = arg;
    j->next = js->uploads;
    js->uploads = j;
    js->nuploads++;
    if (j->upl_wait == 0)
        commit_step(js, j);
}

void gw__jobs_abort(gw_jobs_t *js, gw__batch_t *j)
{
    uploads_remove(js, j);
    char prefix[48];
    snprintf(prefix, sizeof prefix, "jobs/%s/", j->id);
    batch_kill(js, j);
    if (js->store != NULL)
        gw__jobs_purge(js, prefix, 0, NULL, NULL);
    gw__batch_release(js, j);
}

void gw__jobs_cancel(gw_jobs_t *js, gw__batch_t *j)
{
    if (j->state != GW__JOB_QUEUED && j->state != GW__JOB_RUNNING)
        return;
    gw__jobs_put(js, j, GW__PUT_PLAIN, -1, "cancelled", "", 0);
    j->state = GW__JOB_CANCELLED;
    for (int i = 0; i < j->n; i++)
        if (j->imgs[i].st == GW__IMG_PENDING)
            js->bytes -= j->imgs[i].len;
    GW_LOG_I("job_cancel", "job=%s done=%d out=%d", j->id, j->ndone, j->nout);
}

int gw__jobs_reset(gw_jobs_t *js, gw__jobs_reset_cb cb, void *arg)
{
    if (js->loading)
        return -1;
    int n = 0;
    gw__batch_t *j = js->head;
    while (j != NULL) {
        gw__batch_t *next = j->next;
        batch_kill(js, j); /* freed when its frames and writes are back */
        gw__batch_release(js, j);
        n++;
        j = next;
    }
    js->head = NULL;
    js->njobs = 0;
    js->bytes = 0;
    for (j = js->uploads; j != NULL; j = j->next)
        js->bytes += j->upl_bytes; /* still theirs */
    GW_LOG_I("jobs_reset", "jobs=%d", n);
    gw__jobs_purge(js, "jobs/", 1, cb, arg);
    return n;
}
