/* See jobs.h. The files are the truth for what survives a restart; memory holds one small
 * record per image (state, label, the result's JSON) and only the window of frames out. */
#include "jobs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "body.h"
#include "detect.h"
#include "err.h"
#include "log.h"
#include "response.h"
#include "status.h"

#define NAME_MAX_LEN 120
#define LABEL_MAX_LEN 64
#define RETRY_MS 200
#define PAGE_MAX 1000
/* a file under jobs_dir: DIR/ID/out/N.jpg */
#define FPATH (GW_CONFIG_STR_MAX + 128)

enum { IMG_PENDING, IMG_OUT, IMG_DONE, IMG_FAILED };
enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_CANCELLED };
static const char *const state_names[] = {"queued", "running", "done", "cancelled"};

typedef struct {
    char name[NAME_MAX_LEN + 1];
    char label[LABEL_MAX_LEN + 1];
    size_t len;
    uint8_t st;
    char *result; /* the result's JSON (done or failed), malloc'd */
} img_t;

typedef struct job {
    struct job *next;
    char id[32];
    char model[GW_MODEL_NAME_MAX];
    int state;
    int n, ndone, nfailed, nout;
    int cursor; /* no pending image before it */
    int dead;   /* reset: freed when its last frame is back */
    uint64_t created_ms, finished_ms;
    img_t *imgs;
} job_t;

typedef struct {
    gw_job_t g;
    gw_jobs_t *jobs;
    job_t *job;
    int idx;
    uint8_t *buf;
} frame_t;

struct gw_jobs {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    int (*submit)(void *ctx, gw_job_t *job);
    void *ctx;
    char dir[GW_CONFIG_STR_MAX + 16];
    job_t *head; /* in creation order (ids sort the same way) */
    int njobs;
    int out;      /* frames in the pools */
    int window;   /* at most this many out: the pools' queues stay free for live frames */
    size_t bytes; /* bytes of images not yet done */
    int started, stopping;
    unsigned counter;
    uv_timer_t retry;
};

static void pump(gw_jobs_t *js);

/* ---- files ---- */

static int mkdirs(const char *path)
{
    char tmp[FPATH];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

/* Written to a temporary name, then renamed: a kill leaves the old file or the new one. */
static int write_file(const char *path, const void *data, size_t len)
{
    char tmp[FPATH + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    close(fd);
    return rename(tmp, path);
}

static uint8_t *read_file(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 0 || (size_t)st.st_size > max) {
        close(fd);
        return NULL;
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(n + 1);
    while (buf != NULL && got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (buf == NULL || got != n) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void job_path(const gw_jobs_t *js, const job_t *j, const char *rel, char *out, size_t cap)
{
    (void)!snprintf(out, cap, "%s/%s%s%s", js->dir, j->id, rel[0] ? "/" : "", rel);
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char sub[FPATH + 260];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            if (e->d_type == DT_DIR)
                rm_tree(sub);
            else
                unlink(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

/* One line per finished image: "INDEX\tSTATUS\tLABEL\tJSON\n". A line cut by a kill has no
 * newline and is ignored on load (that image runs again). */
static void append_result(gw_jobs_t *js, job_t *j, int idx)
{
    char path[FPATH];
    job_path(js, j, "results", path, sizeof path);
    img_t *im = &j->imgs[idx];
    char *line = NULL;
    int n =
        asprintf(&line, "%d\t%d\t%s\t%s\n", idx, im->st, im->label, im->result ? im->result : "{}");
    if (n < 0)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (write(fd, line, (size_t)n) != n)
            GW_LOG_W("job_write", "job=%s index=%d error=%s", j->id, idx, strerror(errno));
        close(fd);
    }
    free(line);
}

/* ---- the registry ---- */

static void job_free(job_t *j)
{
    for (int i = 0; i < j->n; i++)
        free(j->imgs[i].result);
    free(j->imgs);
    free(j);
}

static void job_settle(gw_jobs_t *js, job_t *j)
{
    if (j->state != JOB_CANCELLED && j->ndone + j->nfailed == j->n) {
        j->state = JOB_DONE;
        j->finished_ms = uv_now(js->loop);
    }
}

static job_t *find_job(gw_jobs_t *js, const char *id, size_t len)
{
    for (job_t *j = js->head; j != NULL; j = j->next)
        if (strlen(j->id) == len && memcmp(j->id, id, len) == 0)
            return j;
    return NULL;
}

static void append_job(gw_jobs_t *js, job_t *j)
{
    job_t **pp = &js->head;
    while (*pp != NULL && strcmp((*pp)->id, j->id) < 0)
        pp = &(*pp)->next;
    j->next = *pp;
    *pp = j;
    js->njobs++;
}

/* meta: "framegate-job 1\nMODEL\nN\nCREATED_UNIX_MS\n" then N lines "LEN\tNAME". */
static int load_job(gw_jobs_t *js, const char *id)
{
    char path[FPATH];
    snprintf(path, sizeof path, "%s/%s/meta", js->dir, id);
    size_t len;
    char *meta = (char *)read_file(path, (size_t)64 << 20, &len);
    if (meta == NULL)
        return -1;
    job_t *j = calloc(1, sizeof *j);
    char *save = NULL, *line = strtok_r(meta, "\n", &save);
    int ok = j != NULL && line != NULL && strcmp(line, "framegate-job 1") == 0;
    if (ok) {
        snprintf(j->id, sizeof j->id, "%s", id);
        line = strtok_r(NULL, "\n", &save);
        ok = line != NULL;
        if (ok)
            snprintf(j->model, sizeof j->model, "%s", strcmp(line, "-") == 0 ? "" : line);
        line = ok ? strtok_r(NULL, "\n", &save) : NULL;
        j->n = line ? atoi(line) : 0;
        ok = j->n > 0 && j->n <= js->cfg->max_job_images;
        line = ok ? strtok_r(NULL, "\n", &save) : NULL;
        ok = ok && line != NULL;
        j->imgs = ok ? calloc((size_t)j->n, sizeof *j->imgs) : NULL;
        ok = ok && j->imgs != NULL;
        for (int i = 0; ok && i < j->n; i++) {
            line = strtok_r(NULL, "\n", &save);
            char *tab = line ? strchr(line, '\t') : NULL;
            ok = tab != NULL;
            if (ok) {
                j->imgs[i].len = strtoull(line, NULL, 10);
                snprintf(j->imgs[i].name, sizeof j->imgs[i].name, "%s", tab + 1);
            }
        }
    }
    free(meta);
    if (!ok) {
        if (j != NULL)
            job_free(j);
        GW_LOG_W("job_load", "job=%s error=bad_meta", id);
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s/results", js->dir, id);
    char *res = (char *)read_file(path, (size_t)1 << 30, &len);
    for (char *p = res; p != NULL && *p;) {
        char *nl = strchr(p, '\n');
        if (nl == NULL)
            break; /* cut by a kill */
        *nl = '\0';
        char *t1 = strchr(p, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL,
             *t3 = t2 ? strchr(t2 + 1, '\t') : NULL;
        int idx = atoi(p);
        if (t3 != NULL && idx >= 0 && idx < j->n && j->imgs[idx].st == IMG_PENDING) {
            img_t *im = &j->imgs[idx];
            im->st = atoi(t1 + 1) == IMG_DONE ? IMG_DONE : IMG_FAILED;
            *t3 = '\0';
            snprintf(im->label, sizeof im->label, "%s", t2 + 1);
            im->result = strdup(t3 + 1);
            if (im->st == IMG_DONE)
                j->ndone++;
            else
                j->nfailed++;
        }
        p = nl + 1;
    }
    free(res);
    snprintf(path, sizeof path, "%s/%s/cancelled", js->dir, id);
    j->state = access(path, F_OK) == 0 ? JOB_CANCELLED : JOB_QUEUED;
    for (int i = 0; i < j->n && j->state != JOB_CANCELLED; i++)
        if (j->imgs[i].st == IMG_PENDING)
            js->bytes += j->imgs[i].len;
    j->created_ms = uv_now(js->loop);
    job_settle(js, j);
    append_job(js, j);
    GW_LOG_I("job_load", "job=%s images=%d done=%d failed=%d state=%s", j->id, j->n, j->ndone,
             j->nfailed, state_names[j->state]);
    return 0;
}

int gw_jobs_create(gw_jobs_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                   int (*submit)(void *ctx, gw_job_t *job), void *ctx, char *err, size_t cap)
{
    gw_jobs_t *js = calloc(1, sizeof *js);
    if (js == NULL)
        return PROTO_ENOMEM;
    js->loop = loop;
    js->cfg = cfg;
    js->submit = submit;
    js->ctx = ctx;
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
    if (mkdirs(js->dir) != 0) {
        snprintf(err, cap, "key 'jobs_dir': %s: %s", js->dir, strerror(errno));
        free(js);
        return PROTO_ECONFIG;
    }
    uv_timer_init(loop, &js->retry);
    js->retry.data = js;
    DIR *d = opendir(js->dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && strlen(e->d_name) < sizeof((job_t *)0)->id)
            load_job(js, e->d_name);
    if (d != NULL)
        closedir(d);
    *out = js;
    return 0;
}

void gw_jobs_start(gw_jobs_t *js)
{
    js->started = 1;
    pump(js);
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
    job_t *j = js->head;
    while (j != NULL) {
        job_t *next = j->next;
        job_free(j);
        j = next;
    }
    /* The registry is the timer's memory: freed by the close callback, on the loop run
     * that follows (the app runs the loop once more to close every handle). */
    uv_close((uv_handle_t *)&js->retry, on_retry_closed);
}

int gw_jobs_pending(const gw_jobs_t *js, const char *model, int is_default)
{
    int n = 0;
    for (const job_t *j = js->head; j != NULL; j = j->next)
        if ((j->state == JOB_QUEUED || j->state == JOB_RUNNING) && !j->dead &&
            (strcmp(j->model, model) == 0 || (j->model[0] == '\0' && is_default)))
            n += j->n - j->ndone - j->nfailed;
    return n;
}

/* ---- dispatch ---- */

static void on_retry(uv_timer_t *t)
{
    pump(t->data);
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

static void on_frame_done(gw_job_t *g)
{
    frame_t *f = (frame_t *)g;
    gw_jobs_t *js = f->jobs;
    job_t *j = f->job;
    img_t *im = &j->imgs[f->idx];
    js->out--;
    j->nout--;
    if (j->dead) {
        /* reset while it was out */
    } else if (transient(g->err)) {
        im->st = IMG_PENDING;
        if (j->state == JOB_CANCELLED)
            js->bytes -= im->len; /* never sent again */
        if (f->idx < j->cursor)
            j->cursor = f->idx;
    } else {
        im->st = g->err == 0 ? IMG_DONE : IMG_FAILED;
        cJSON *o = gw_detect_job_json(g);
        cJSON_AddStringToObject(o, "name", im->name);
        im->result = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (g->err == 0) {
            top_label(g, im->label, sizeof im->label);
            if (g->rep.payload_len > 0) {
                char path[FPATH], rel[48];
                snprintf(rel, sizeof rel, "out/%d.jpg", f->idx);
                job_path(js, j, rel, path, sizeof path);
                write_file(path, g->rep.payload, g->rep.payload_len);
            }
            j->ndone++;
        } else {
            snprintf(im->label, sizeof im->label, "error");
            j->nfailed++;
        }
        append_result(js, j, f->idx);
        js->bytes -= im->len;
        job_settle(js, j);
    }
    gw_job_fini(g);
    free(f->buf);
    free(f);
    if (j->dead && j->nout == 0)
        job_free(j);
    pump(js);
}

/* Sends pending frames, oldest job first, until the window is full. */
static void pump(gw_jobs_t *js)
{
    if (!js->started || js->stopping)
        return;
    for (job_t *j = js->head; j != NULL && js->out < js->window; j = j->next) {
        if (j->state != JOB_QUEUED && j->state != JOB_RUNNING)
            continue;
        while (j->cursor < j->n && js->out < js->window) {
            int i = j->cursor;
            img_t *im = &j->imgs[i];
            if (im->st != IMG_PENDING) {
                j->cursor++;
                continue;
            }
            char path[FPATH], rel[32];
            snprintf(rel, sizeof rel, "in/%d", i);
            job_path(js, j, rel, path, sizeof path);
            frame_t *f = calloc(1, sizeof *f);
            size_t len = 0;
            uint8_t *buf = f ? read_file(path, js->cfg->max_body_bytes, &len) : NULL;
            if (buf == NULL) {
                free(f);
                if (f == NULL)
                    return;
                /* the input is gone: a failed image, not a lost one */
                im->st = IMG_FAILED;
                snprintf(im->label, sizeof im->label, "error");
                im->result = strdup("{\"error\":{\"code\":\"input_missing\"}}");
                j->nfailed++;
                js->bytes -= im->len;
                append_result(js, j, i);
                job_settle(js, j);
                j->cursor++;
                continue;
            }
            gw_job_init(&f->g);
            f->jobs = js;
            f->job = j;
            f->idx = i;
            f->buf = buf;
            f->g.image = buf;
            f->g.image_len = len;
            f->g.bulk = 1;
            f->g.on_done = on_frame_done;
            f->g.opts.output = PROTO_OUT_JPEG; /* the boxes and the annotated image */
            snprintf(f->g.opts.model, sizeof f->g.opts.model, "%s", j->model);
            im->st = IMG_OUT;
            js->out++;
            j->nout++;
            j->cursor++;
            if (j->state == JOB_QUEUED)
                j->state = JOB_RUNNING;
            int rv = js->submit(js->ctx, &f->g);
            if (rv != 0) {
                js->out--;
                j->nout--;
                gw_job_fini(&f->g);
                free(buf);
                free(f);
                if (transient(rv)) {
                    im->st = IMG_PENDING;
                    j->cursor = i;
                    uv_timer_start(&js->retry, on_retry, RETRY_MS, 0);
                    return;
                }
                im->st = IMG_FAILED;
                snprintf(im->label, sizeof im->label, "error");
                char *s = gw_error_json(gw_status_of(rv).code, proto_strerror(rv), &len);
                im->result = s;
                j->nfailed++;
                js->bytes -= im->len;
                append_result(js, j, i);
                job_settle(js, j);
            }
        }
    }
}

/* ---- the upload ---- */

typedef struct {
    gw_jobs_t *js;
    job_t *j;
    int cap;
    size_t bytes;
    int err;
    char msg[160];
} upload_t;

static int add_image(upload_t *u, const char *name, const uint8_t *data, size_t len)
{
    gw_jobs_t *js = u->js;
    job_t *j = u->j;
    if (len == 0) {
        snprintf(u->msg, sizeof u->msg, "image %d is empty", j->n);
        return u->err = PROTO_EEMPTY;
    }
    if (j->n >= js->cfg->max_job_images) {
        snprintf(u->msg, sizeof u->msg, "more than max_job_images (%d) images",
                 js->cfg->max_job_images);
        return u->err = PROTO_ETOOBIG;
    }
    if (js->bytes + u->bytes + len > js->cfg->max_job_bytes) {
        snprintf(u->msg, sizeof u->msg, "pending images over max_job_bytes; retry later");
        return u->err = PROTO_EQUEUEFULL;
    }
    if (j->n == u->cap) {
        int nc = u->cap ? u->cap * 2 : 64;
        img_t *n = realloc(j->imgs, (size_t)nc * sizeof *n);
        if (n == NULL)
            return u->err = PROTO_ENOMEM;
        j->imgs = n;
        u->cap = nc;
    }
    img_t *im = &j->imgs[j->n];
    memset(im, 0, sizeof *im);
    if (name != NULL && name[0] != '\0')
        snprintf(im->name, sizeof im->name, "%s", name);
    else
        snprintf(im->name, sizeof im->name, "image_%d", j->n);
    for (char *p = im->name; *p; p++) /* one line of meta, one field of name,label */
        if (*p == '\n' || *p == '\r' || *p == '\t' || *p == ',')
            *p = '_';
    gw_body_utf8_sanitize(im->name, strlen(im->name));
    im->len = len;
    char path[FPATH], rel[32];
    snprintf(rel, sizeof rel, "in/%d", j->n);
    job_path(js, j, rel, path, sizeof path);
    if (write_file(path, data, len) != 0) {
        snprintf(u->msg, sizeof u->msg, "cannot keep the image: %s", strerror(errno));
        return u->err = PROTO_ESTORE;
    }
    j->n++;
    u->bytes += len;
    return 0;
}

static int on_part(void *arg, const gw_part_t *part)
{
    upload_t *u = arg;
    if (part->filename[0] == '\0' && strncmp(part->content_type, "image/", 6) != 0 &&
        strcmp(part->name, "image") != 0 && strcmp(part->name, "images") != 0 &&
        strcmp(part->name, "file") != 0 && strcmp(part->name, "files") != 0)
        return 0; /* a form field */
    int rv = add_image(u, part->filename, part->data, part->len);
    return rv;
}

static void parse_json_images(upload_t *u, const gw_req_t *r)
{
    cJSON *root = cJSON_ParseWithLength((const char *)r->body, r->body_len);
    const cJSON *imgs = root ? cJSON_GetObjectItemCaseSensitive(root, "images") : NULL;
    if (!cJSON_IsArray(imgs)) {
        snprintf(u->msg, sizeof u->msg,
                 "the body must be {\"images\": [base64 or {\"name\", "
                 "\"image\"}]}");
        u->err = PROTO_EINVAL;
        cJSON_Delete(root);
        return;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, imgs)
    {
        const cJSON *data = cJSON_IsString(it) ? it : cJSON_GetObjectItemCaseSensitive(it, "image");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (!cJSON_IsString(data)) {
            snprintf(u->msg, sizeof u->msg, "image %d is not a base64 string", u->j->n);
            u->err = PROTO_EINVAL;
            break;
        }
        size_t in = strlen(data->valuestring), len = 0;
        uint8_t *buf = malloc(gw_body_b64_max(in) + 1);
        if (buf == NULL || gw_body_b64_decode(data->valuestring, in, buf, &len) != 0) {
            free(buf);
            snprintf(u->msg, sizeof u->msg, "image %d is not valid base64", u->j->n);
            u->err = PROTO_EINVAL;
            break;
        }
        int rv = add_image(u, cJSON_IsString(name) ? name->valuestring : NULL, buf, len);
        free(buf);
        if (rv != 0)
            break;
    }
    cJSON_Delete(root);
}

static int query_get(const char *query, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t l = amp ? (size_t)(amp - p) : strlen(p);
        if (l > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t vl = l - kl - 1 < cap - 1 ? l - kl - 1 : cap - 1;
            memcpy(out, p + kl + 1, vl);
            out[vl] = '\0';
            return 1;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

static void respond_json(gw_req_t *r, int status, cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    gw_respond(r, status, "application/json", s, s ? strlen(s) : 0, NULL);
}

void gw_jobs_on_create(void *arg, gw_req_t *r)
{
    gw_jobs_t *js = arg;
    const gw_config_t *cfg = js->cfg;
    int live = 0;
    for (job_t *j = js->head; j != NULL; j = j->next)
        live++;
    if (cfg->max_jobs == 0) {
        gw_respond_error(r, 404, "not_found", "the jobs API is off (max_jobs = 0)");
        return;
    }
    if (live >= cfg->max_jobs) {
        /* Finished jobs make room: the oldest done or cancelled one goes. */
        job_t **pp = &js->head;
        while (*pp != NULL &&
               !(((*pp)->state == JOB_DONE || (*pp)->state == JOB_CANCELLED) && (*pp)->nout == 0))
            pp = &(*pp)->next;
        if (*pp == NULL) {
            gw_respond_error(r, 503, "too_many_jobs", "max_jobs (%d) jobs are running; retry later",
                             cfg->max_jobs);
            return;
        }
        job_t *old = *pp;
        *pp = old->next;
        js->njobs--;
        char path[FPATH];
        job_path(js, old, "", path, sizeof path);
        rm_tree(path);
        job_free(old);
    }
    char model[GW_MODEL_NAME_MAX] = "";
    if (query_get(r->query, "model", model, sizeof model) &&
        !gw_body_utf8_valid(model, strlen(model))) {
        gw_respond_error(r, 400, "bad_query", "model must be UTF-8");
        return;
    }
    char mt[128] = "";
    gw_body_media_type(r->content_type, mt, sizeof mt);
    int multipart = strcmp(mt, "multipart/form-data") == 0;
    if (!multipart && strcmp(mt, "application/json") != 0) {
        gw_respond_error(r, 415, "unsupported_media_type",
                         "Content-Type must be multipart/form-data or application/json");
        return;
    }
    job_t *j = calloc(1, sizeof *j);
    if (j == NULL) {
        gw_respond_err(r, PROTO_ENOMEM, "out of memory");
        return;
    }
    uint64_t now = uv_now(js->loop);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t unix_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    snprintf(j->id, sizeof j->id, "%011llx%04x", (unsigned long long)unix_ms,
             (js->counter++) & 0xffffu);
    snprintf(j->model, sizeof j->model, "%s", model);
    j->created_ms = now;
    upload_t u = {.js = js, .j = j};
    char path[FPATH];
    job_path(js, j, "in", path, sizeof path);
    if (mkdirs(path) != 0) {
        gw_respond_err(r, PROTO_ESTORE, "jobs_dir: %s", strerror(errno));
        free(j);
        return;
    }
    job_path(js, j, "out", path, sizeof path);
    mkdirs(path);
    if (multipart) {
        char boundary[128];
        if (gw_body_param(r->content_type, "boundary", boundary, sizeof boundary) != 0) {
            u.err = PROTO_EINVAL;
            snprintf(u.msg, sizeof u.msg, "multipart without a boundary");
        } else {
            int rv = gw_body_multipart(r->body, r->body_len, boundary, on_part, &u);
            if (rv < 0 && u.err == 0) {
                u.err = rv;
                snprintf(u.msg, sizeof u.msg, "malformed multipart body");
            }
        }
    } else {
        parse_json_images(&u, r);
    }
    if (u.err == 0 && j->n == 0) {
        u.err = PROTO_EEMPTY;
        snprintf(u.msg, sizeof u.msg, "no images in the upload");
    }
    /* meta last: a job directory without it is an upload that never finished */
    char *meta = NULL;
    size_t mlen = 0;
    FILE *m = u.err == 0 ? open_memstream(&meta, &mlen) : NULL;
    if (m != NULL) {
        fprintf(m, "framegate-job 1\n%s\n%d\n%llu\n", j->model[0] ? j->model : "-", j->n,
                (unsigned long long)unix_ms);
        for (int i = 0; i < j->n; i++)
            fprintf(m, "%zu\t%s\n", j->imgs[i].len, j->imgs[i].name);
        fclose(m);
        job_path(js, j, "meta", path, sizeof path);
        if (write_file(path, meta, mlen) != 0) {
            u.err = PROTO_ESTORE;
            snprintf(u.msg, sizeof u.msg, "cannot keep the job: %s", strerror(errno));
        }
    } else if (u.err == 0) {
        u.err = PROTO_ENOMEM;
    }
    free(meta);
    if (u.err != 0) {
        job_path(js, j, "", path, sizeof path);
        rm_tree(path);
        job_free(j);
        if (u.err == PROTO_EINVAL)
            gw_respond_error(r, 400, "bad_request", "%s", u.msg);
        else
            gw_respond_err(r, u.err, "%s", u.msg[0] ? u.msg : proto_strerror(u.err));
        return;
    }
    js->bytes += u.bytes;
    append_job(js, j);
    GW_LOG_I("job_create", "job=%s images=%d bytes=%zu model=%s", j->id, j->n, u.bytes,
             j->model[0] ? j->model : "(default)");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddNumberToObject(o, "images", j->n);
    respond_json(r, 202, o);
    pump(js);
}

/* ---- reading jobs ---- */

static cJSON *summary(const gw_jobs_t *js, const job_t *j)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "state", state_names[j->state]);
    cJSON_AddStringToObject(o, "model", j->model);
    cJSON_AddNumberToObject(o, "images", j->n);
    cJSON *c = cJSON_AddObjectToObject(o, "counts");
    cJSON_AddNumberToObject(c, "done", j->ndone);
    cJSON_AddNumberToObject(c, "failed", j->nfailed);
    cJSON_AddNumberToObject(c, "pending", j->n - j->ndone - j->nfailed);
    uint64_t end = j->state == JOB_DONE ? j->finished_ms : uv_now(js->loop);
    cJSON_AddNumberToObject(o, "elapsed_s", (double)(end - j->created_ms) / 1000.0);
    return o;
}

void gw_jobs_on_list(void *arg, gw_req_t *r)
{
    gw_jobs_t *js = arg;
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "jobs");
    for (job_t *j = js->head; j != NULL; j = j->next)
        cJSON_AddItemToArray(arr, summary(js, j));
    respond_json(r, 200, o);
}

static const char *img_status(const img_t *im)
{
    return im->st == IMG_DONE ? "done" : im->st == IMG_FAILED ? "failed" : "pending";
}

void gw_jobs_on_get(void *arg, gw_req_t *r)
{
    gw_jobs_t *js = arg;
    const char *rest = r->param ? r->param : "";
    size_t rl = r->param ? r->param_len : 0;
    const char *slash = memchr(rest, '/', rl);
    size_t idl = slash ? (size_t)(slash - rest) : rl;
    job_t *j = find_job(js, rest, idl);
    if (j == NULL) {
        gw_respond_error(r, 404, "not_found", "no such job");
        return;
    }
    if (slash != NULL) { /* ID/images/N */
        char tail[64];
        size_t tl = rl - idl;
        if (tl >= sizeof tail || tl < 9 || strncmp(slash, "/images/", 8) != 0) {
            gw_respond_error(r, 404, "not_found", "no such resource");
            return;
        }
        memcpy(tail, slash + 8, tl - 8);
        tail[tl - 8] = '\0';
        char *end;
        long idx = strtol(tail, &end, 10);
        if (*end != '\0' || idx < 0 || idx >= j->n || j->imgs[idx].st != IMG_DONE) {
            gw_respond_error(r, 404, "not_found", "no annotated image %s", tail);
            return;
        }
        char path[FPATH], rel[48];
        snprintf(rel, sizeof rel, "out/%ld.jpg", idx);
        job_path(js, j, rel, path, sizeof path);
        size_t len;
        uint8_t *img = read_file(path, js->cfg->max_body_bytes * 4, &len);
        if (img == NULL) {
            /* No drawing came back (a backend that does not draw): the image as uploaded. */
            snprintf(rel, sizeof rel, "in/%ld", idx);
            job_path(js, j, rel, path, sizeof path);
            img = read_file(path, js->cfg->max_body_bytes, &len);
        }
        if (img == NULL) {
            gw_respond_error(r, 404, "not_found", "no annotated image %s", tail);
            return;
        }
        gw_respond(r, 200, len > 4 && memcmp(img, "\x89PNG", 4) == 0 ? "image/png" : "image/jpeg",
                   (char *)img, len, "Cache-Control: max-age=3600\r\n");
        return;
    }
    char v[32];
    long offset = query_get(r->query, "offset", v, sizeof v) ? atol(v) : 0;
    int text = query_get(r->query, "format", v, sizeof v) && strcmp(v, "text") == 0;
    long limit = query_get(r->query, "limit", v, sizeof v) ? atol(v) : text ? j->n : 100;
    if (offset < 0)
        offset = 0;
    if (limit < 0)
        limit = 0;
    if (!text && limit > PAGE_MAX)
        limit = PAGE_MAX;
    long end = offset + limit < j->n ? offset + limit : j->n;
    if (text) {
        /* name,label for every finished image, in upload order */
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        for (long i = offset; m != NULL && i < end; i++)
            if (j->imgs[i].st == IMG_DONE || j->imgs[i].st == IMG_FAILED)
                fprintf(m, "%s,%s\n", j->imgs[i].name, j->imgs[i].label);
        if (m != NULL)
            fclose(m);
        gw_respond(r, 200, "text/plain; charset=utf-8", buf, buf ? len : 0, NULL);
        return;
    }
    cJSON *o = summary(js, j);
    cJSON_AddNumberToObject(o, "offset", (double)offset);
    cJSON_AddNumberToObject(o, "limit", (double)limit);
    if (end < j->n)
        cJSON_AddNumberToObject(o, "next_offset", (double)end);
    cJSON *arr = cJSON_AddArrayToObject(o, "results");
    for (long i = offset; i < end; i++) {
        img_t *im = &j->imgs[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "index", (double)i);
        cJSON_AddStringToObject(x, "name", im->name);
        cJSON_AddStringToObject(x, "status", img_status(im));
        if (im->st == IMG_DONE || im->st == IMG_FAILED)
            cJSON_AddStringToObject(x, "label", im->label);
        cJSON *res = im->result ? cJSON_Parse(im->result) : NULL;
        if (res != NULL)
            cJSON_AddItemToObject(x, "result", res);
        cJSON_AddItemToArray(arr, x);
    }
    respond_json(r, 200, o);
}

void gw_jobs_on_delete(void *arg, gw_req_t *r)
{
    gw_jobs_t *js = arg;
    job_t *j = find_job(js, r->param ? r->param : "", r->param ? r->param_len : 0);
    if (j == NULL) {
        gw_respond_error(r, 404, "not_found", "no such job");
        return;
    }
    if (j->state == JOB_QUEUED || j->state == JOB_RUNNING) {
        char path[FPATH];
        job_path(js, j, "cancelled", path, sizeof path);
        write_file(path, "", 0);
        j->state = JOB_CANCELLED;
        for (int i = 0; i < j->n; i++)
            if (j->imgs[i].st == IMG_PENDING)
                js->bytes -= j->imgs[i].len;
        GW_LOG_I("job_cancel", "job=%s done=%d out=%d", j->id, j->ndone, j->nout);
    }
    respond_json(r, 200, summary(js, j));
}

/* Compares in time independent of where the first difference is. */
static int token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned diff = (unsigned)(la ^ lb);
    for (size_t i = 0; i < la; i++)
        diff |= (unsigned char)a[i] ^ (unsigned char)b[i % (lb ? lb : 1)];
    return diff == 0;
}

void gw_jobs_on_reset(void *arg, gw_req_t *r)
{
    gw_jobs_t *js = arg;
    if (js->cfg->admin_token[0] != '\0') {
        /* The token comes in the body ({"token": ...} or the bare token): a query string
         * ends up in logs. */
        char tok[GW_CONFIG_STR_MAX] = "";
        cJSON *root = cJSON_ParseWithLength((const char *)r->body, r->body_len);
        const cJSON *t = root ? cJSON_GetObjectItemCaseSensitive(root, "token") : NULL;
        if (cJSON_IsString(t))
            snprintf(tok, sizeof tok, "%s", t->valuestring);
        else if (root == NULL && r->body_len < sizeof tok) {
            memcpy(tok, r->body, r->body_len);
            tok[r->body_len] = '\0';
        }
        cJSON_Delete(root);
        if (!token_equal(tok, js->cfg->admin_token)) {
            gw_respond_error(r, 403, "forbidden", "POST /v1/reset needs the admin_token");
            return;
        }
    }
    int n = 0;
    job_t *j = js->head;
    while (j != NULL) {
        job_t *next = j->next;
        char path[FPATH];
        job_path(js, j, "", path, sizeof path);
        rm_tree(path);
        if (j->nout > 0)
            j->dead = 1; /* freed when its frames are back */
        else
            job_free(j);
        n++;
        j = next;
    }
    js->head = NULL;
    js->njobs = 0;
    js->bytes = 0;
    GW_LOG_I("jobs_reset", "jobs=%d", n);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "reset", 1);
    cJSON_AddNumberToObject(o, "jobs", n);
    respond_json(r, 200, o);
}
