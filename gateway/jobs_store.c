/* A job's objects in the jobs store (see jobs.h): jobs/ID/meta, in/N, res/N, out/N.jpg,
 * cancelled. Every operation goes through the store's ops table (store.h): a local directory
 * by default (dir:JOBS_DIR, file calls on the threadpool), or s3:// / gs://. A put of the whole
 * object is atomic in every kind (dir: a temporary file and a rename), so a kill leaves the
 * old object or the new one, and one result object per image makes a result idempotent by its
 * key. The start-up load that reads them back is jobs_load.c. Loop thread only. */
#include "jobs.h"
#include "jobs_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"

#define KEY_MAX GW__JOBS_KEY_MAX
#define PUT_PAR 8   /* writes out at once: an upload of 2000 images is not 2000 connections */
#define PURGE_PAR 8 /* deletes out at once per purge */

static void key_of(const gw__batch_t *j, const char *rel, char *out, size_t cap)
{
    (void)!snprintf(out, cap, "jobs/%s/%s", j->id, rel);
}

/* True for "jobs/ID/..." with ID a job's (15 lowercase hex digits, gw__jobs_begin): a camera named
 * "jobs" keeps its frames under jobs/YYYY/..., and those are never a job's. */
int gw__jobs_is_job_key(const char *key)
{
    if (strncmp(key, "jobs/", 5) != 0)
        return 0;
    for (int i = 0; i < 15; i++)
        if (!((key[5 + i] >= '0' && key[5 + i] <= '9') || (key[5 + i] >= 'a' && key[5 + i] <= 'f')))
            return 0;
    return key[20] == '/';
}

int gw__jobs_open_store(gw_jobs_t *js, gw_fetch_t *http, char *err, size_t cap)
{
    const char *url = js->cfg->jobs_store;
    if (url[0] == '\0') {
        snprintf(js->store_url, sizeof js->store_url, "dir:%s", js->dir);
    } else {
        if (strncmp(url, "dir:", 4) != 0 && http == NULL) {
            snprintf(err, cap, "key 'jobs_store': %s needs the HTTP client", url);
            return PROTO_ECONFIG;
        }
        snprintf(js->store_url, sizeof js->store_url, "%s", url);
    }
    gw_store_env_t env = {js->loop, js->cfg, http};
    char why[256] = "";
    int rv = gw_store_open(&js->store, &env, js->store_url, why, sizeof why);
    if (rv != 0) {
        snprintf(err, cap, "key '%s': %s", url[0] ? "jobs_store" : "jobs_dir", why);
        return PROTO_ECONFIG;
    }
    return 0;
}

/* ---- operations on one job: j->nio counts them, so a dead job lives until they end ---- */

typedef struct {
    gw_jobs_t *js;
    gw__batch_t *j;
    int what, idx;
    void *cb, *arg;
    int second; /* output: in/N after out/N.jpg was missing */
} io_t;

static io_t *io_new(gw_jobs_t *js, gw__batch_t *j, int what, int idx)
{
    io_t *io = calloc(1, sizeof *io);
    if (io == NULL)
        return NULL;
    io->js = js;
    io->j = j;
    io->what = what;
    io->idx = idx;
    j->nio++;
    if (j->dead)
        js->nio_dead++;
    return io;
}

/* The end of an operation on a job: frees a dead job once nothing is out. */
static void io_end(io_t *io)
{
    gw_jobs_t *js = io->js;
    gw__batch_t *j = io->j;
    free(io);
    j->nio--;
    if (j->dead) {
        js->nio_dead--;
        gw__batch_release(js, j);
        gw__jobs_dead_io_done(js);
    }
}

/* An operation the store refused at once: never called back. */
static void io_drop(io_t *io)
{
    if (io->j->dead)
        io->js->nio_dead--;
    io->j->nio--;
    free(io);
}

/* A write waiting for a slot, with its own copy of the bytes. */
typedef struct gw__put {
    io_t *io;
    char key[KEY_MAX];
    uint8_t *data;
    size_t len;
    int borrowed; /* data is the caller's (j->borrow): never freed here, never read once the
                   * job is dead */
    struct gw__put *next;
} put_t;

static void put_next(gw_jobs_t *js);

static void put_landed(io_t *io, int err, const char *msg)
{
    gw__batch_t *j = io->j;
    if (err != 0 && err != UV_ECANCELED)
        GW_LOG_W("job_write", "job=%s index=%d error=\"%s\"", j->id, io->idx,
                 msg ? msg : proto_strerror(err));
    if (!j->dead) {
        if (io->what == GW__PUT_KEPT && err == 0)
            j->imgs[io->idx].kept = 1;
        else if (io->what == GW__PUT_INPUT || io->what == GW__PUT_META)
            gw__jobs_stored(io->js, j, io->what, err, msg);
    }
    io_end(io);
}

static void on_put(void *arg, int err, const char *msg)
{
    io_t *io = arg;
    gw_jobs_t *js = io->js;
    js->puts_out--;
    put_landed(io, err, msg);
    put_next(js);
}

/* Starts queued writes while a slot is free. */
static void put_next(gw_jobs_t *js)
{
    while (js->store != NULL && js->puts_out < PUT_PAR && js->putq != NULL) {
        put_t *p = js->putq;
        js->putq = p->next;
        if (js->putq == NULL)
            js->putq_tail = NULL;
        if (p->borrowed && p->io->j->dead) {
            /* an upload dropped: its bytes may be gone with its request */
            put_landed(p->io, UV_ECANCELED, "job dropped");
            free(p);
            continue;
        }
        js->puts_out++;
        /* the store copies the bytes before put returns */
        int rv = js->store->ops->put(js->store, p->key, p->data, p->len, NULL, on_put, p->io);
        if (rv != 0) {
            js->puts_out--;
            put_landed(p->io, rv, proto_strerror(rv));
        }
        if (!p->borrowed)
            free(p->data);
        free(p);
    }
}

int gw__jobs_put(gw_jobs_t *js, gw__batch_t *j, int what, int idx, const char *rel,
                 const void *data, size_t len)
{
    if (js->store == NULL)
        return PROTO_ESHUTDOWN;
    put_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return PROTO_ENOMEM;
    p->borrowed = what == GW__PUT_INPUT && j->borrow;
    if (p->borrowed)
        p->data = (uint8_t *)data;
    else if ((p->data = malloc(len ? len : 1)) != NULL)
        memcpy(p->data, data, len);
    if (p->data == NULL || (p->io = io_new(js, j, what, idx)) == NULL) {
        if (!p->borrowed)
            free(p->data);
        free(p);
        return PROTO_ENOMEM;
    }
    key_of(j, rel, p->key, sizeof p->key);
    p->len = len;
    if (js->putq_tail != NULL)
        js->putq_tail->next = p;
    else
        js->putq = p;
    js->putq_tail = p;
    put_next(js);
    return 0;
}

/* res/N: "STATUS\tLABEL\tJSON" (a label has no tab: top_label and "error"). */
void gw__jobs_put_result(gw_jobs_t *js, gw__batch_t *j, int idx)
{
    const gw__img_t *im = &j->imgs[idx];
    char *text = NULL, rel[32];
    int n = asprintf(&text, "%d\t%s\t%s", im->st, im->label, im->result ? im->result : "{}");
    if (n < 0)
        return;
    snprintf(rel, sizeof rel, "res/%d", idx);
    int rv = gw__jobs_put(js, j, GW__PUT_PLAIN, idx, rel, text, (size_t)n);
    if (rv != 0 && rv != PROTO_ESHUTDOWN)
        GW_LOG_W("job_write", "job=%s index=%d error=\"%s\"", j->id, idx, proto_strerror(rv));
    free(text); /* the store copied it */
}

/* meta: "framegate-job 2\nMODEL\nN\nCREATED_UNIX_MS\nOWNER\n" then N lines "LEN\tNAME"
 * (uploaded bytes) or "0\tNAME\tu\tURL" / "0\tNAME\tk\tKEY". OWNER is "-" for none; version 1
 * (before owners) has no OWNER line and is still read. */
int gw__jobs_put_meta(gw_jobs_t *js, gw__batch_t *j)
{
    char *meta = NULL;
    size_t mlen = 0;
    FILE *m = open_memstream(&meta, &mlen);
    if (m == NULL)
        return PROTO_ENOMEM;
    fprintf(m, "framegate-job 2\n%s\n%d\n%llu\n%s\n", j->model[0] ? j->model : "-", j->n,
            (unsigned long long)j->created_unix_ms, j->owner[0] ? j->owner : "-");
    for (int i = 0; i < j->n; i++) {
        const gw__img_t *im = &j->imgs[i];
        if (im->src == GW__SRC_BYTES)
            fprintf(m, "%zu\t%s\n", im->len, im->name);
        else
            fprintf(m, "0\t%s\t%c\t%s\n", im->name, im->src == GW__SRC_URL ? 'u' : 'k', im->ref);
    }
    fclose(m);
    int rv = gw__jobs_put(js, j, GW__PUT_META, -1, "meta", meta, mlen);
    free(meta);
    return rv;
}

static void on_got_input(void *arg, int err, const char *msg, uint8_t *data, size_t len)
{
    io_t *io = arg;
    ((gw_store_get_cb)io->cb)(io->arg, err, msg, data, len);
    io_end(io);
}

/* Reads jobs/ID/REL for image idx; cb and arg ride on the operation (io_t). */
static int get_rel(gw_jobs_t *js, gw__batch_t *j, int idx, const char *rel, size_t max_bytes,
                   gw_store_get_cb done, void *cb, void *arg)
{
    if (js->store == NULL)
        return PROTO_ESHUTDOWN;
    char key[KEY_MAX];
    key_of(j, rel, key, sizeof key);
    io_t *io = io_new(js, j, GW__PUT_PLAIN, idx);
    if (io == NULL)
        return PROTO_ENOMEM;
    io->cb = cb;
    io->arg = arg;
    int rv = js->store->ops->get(js->store, key, max_bytes, done, io);
    if (rv != 0)
        io_drop(io);
    return rv;
}

int gw__jobs_get_input(gw_jobs_t *js, gw__batch_t *j, int idx, gw_store_get_cb cb, void *arg)
{
    char rel[32];
    snprintf(rel, sizeof rel, "in/%d", idx);
    return get_rel(js, j, idx, rel, js->cfg->max_body_bytes, on_got_input, (void *)cb, arg);
}

static void on_got_output(void *arg, int err, const char *msg, uint8_t *data, size_t len)
{
    (void)msg;
    io_t *io = arg;
    gw_jobs_t *js = io->js;
    if (err == PROTO_ENOTFOUND && !io->second && js->store != NULL) {
        /* No drawing came back (a backend that does not draw): the image as uploaded. */
        char key[KEY_MAX], rel[32];
        snprintf(rel, sizeof rel, "in/%d", io->idx);
        key_of(io->j, rel, key, sizeof key);
        io->second = 1;
        if (js->store->ops->get(js->store, key, js->cfg->max_body_bytes, on_got_output, io) == 0)
            return;
    }
    ((gw__jobs_output_cb)io->cb)(io->arg, err == 0 ? data : NULL, err == 0 ? len : 0);
    if (err != 0)
        free(data);
    io_end(io);
}

int gw__jobs_output(gw_jobs_t *js, gw__batch_t *j, int idx, gw__jobs_output_cb cb, void *arg)
{
    char rel[32];
    snprintf(rel, sizeof rel, "out/%d.jpg", idx);
    return get_rel(js, j, idx, rel, js->cfg->max_body_bytes * 4, on_got_output, (void *)cb, arg);
}

/* ---- purge: list a prefix and delete page by page, a few deletes out at once ---- */

typedef struct gw__purge {
    gw_jobs_t *js;
    char prefix[KEY_MAX];
    int live; /* keep the keys of live jobs */
    gw__jobs_reset_cb cb;
    void *arg;
    char after[600];
    char **keys;
    int nkeys, next, out, full, ndel;
    int err;
    char msg[160];
    struct gw__purge *wnext;
} purge_t;

static void purge_list(purge_t *p);

static void purge_finish(purge_t *p)
{
    for (int i = p->next; i < p->nkeys; i++)
        free(p->keys[i]);
    free(p->keys);
    if (p->err == 0)
        GW_LOG_I("jobs_purge", "prefix=%s deleted=%d", p->prefix, p->ndel);
    else
        GW_LOG_W("jobs_purge", "prefix=%s deleted=%d error=\"%s\"", p->prefix, p->ndel, p->msg);
    if (p->cb != NULL)
        p->cb(p->arg, p->err, p->err ? p->msg : NULL);
    free(p);
}

static void purge_fail(purge_t *p, int err, const char *msg)
{
    if (p->err == 0) {
        p->err = err == UV_ECANCELED ? PROTO_ESHUTDOWN : err;
        snprintf(p->msg, sizeof p->msg, "%s", msg ? msg : proto_strerror(err));
    }
}

static void on_deleted(void *arg, int err, const char *msg)
{
    purge_t *p = arg;
    p->out--;
    if (err != 0)
        purge_fail(p, err, msg);
    else
        p->ndel++;
    /* more deletes, the next page, or the end */
    gw_jobs_t *js = p->js;
    while (p->err == 0 && js->store != NULL && p->out < PURGE_PAR && p->next < p->nkeys) {
        char *k = p->keys[p->next++];
        int rv = js->store->ops->del(js->store, k, on_deleted, p);
        free(k);
        if (rv != 0)
            purge_fail(p, rv, NULL);
        else
            p->out++;
    }
    if (p->out > 0)
        return;
    if (p->err == 0 && js->store == NULL)
        purge_fail(p, PROTO_ESHUTDOWN, NULL);
    if (p->err == 0 && p->next == p->nkeys && p->full) {
        for (int i = 0; i < p->nkeys; i++)
            p->keys[i] = NULL;
        free(p->keys);
        p->keys = NULL;
        p->nkeys = p->next = 0;
        purge_list(p);
        return;
    }
    purge_finish(p);
}

/* True for a key of a job in the registry or being uploaded (a reset keeps those). */
int gw__jobs_is_live(gw_jobs_t *js, const char *key)
{
    const char *id = key + 5, *slash = strchr(id, '/');
    size_t len = slash ? (size_t)(slash - id) : strlen(id);
    if (gw__jobs_find(js, id, len) != NULL)
        return 1;
    for (gw__batch_t *j = js->uploads; j != NULL; j = j->next)
        if (!j->dead && strlen(j->id) == len && memcmp(j->id, id, len) == 0)
            return 1;
    return 0;
}

static void on_listed(void *arg, int err, const char *msg, char **keys, int n)
{
    purge_t *p = arg;
    if (err != 0) {
        purge_fail(p, err, msg);
        purge_finish(p);
        return;
    }
    p->full = n == 1000;
    if (n > 0)
        snprintf(p->after, sizeof p->after, "%s", keys[n - 1]);
    p->keys = calloc((size_t)(n ? n : 1), sizeof *p->keys);
    for (int i = 0; p->keys != NULL && i < n; i++) {
        if (!gw__jobs_is_job_key(keys[i]) || (p->live && gw__jobs_is_live(p->js, keys[i])))
            continue; /* never anything but a job's object */
        if ((p->keys[p->nkeys] = strdup(keys[i])) != NULL)
            p->nkeys++;
    }
    if (p->keys == NULL) {
        purge_fail(p, PROTO_ENOMEM, NULL);
        purge_finish(p);
        return;
    }
    /* on_deleted's bookkeeping starts the deletes (as if one had ended: not counted); it
     * may end the purge and free p */
    p->ndel--;
    p->out++;
    on_deleted(p, 0, NULL);
}

static void purge_list(purge_t *p)
{
    gw_jobs_t *js = p->js;
    int rv = js->store == NULL
                 ? PROTO_ESHUTDOWN
                 : js->store->ops->list(js->store, p->prefix, p->after, 1000, on_listed, p);
    if (rv != 0) {
        purge_fail(p, rv, NULL);
        purge_finish(p);
    }
}

void gw__jobs_purge(gw_jobs_t *js, const char *prefix, int live, gw__jobs_reset_cb cb, void *arg)
{
    purge_t *p = calloc(1, sizeof *p);
    if (p == NULL) {
        if (cb != NULL)
            cb(arg, PROTO_ENOMEM, "out of memory");
        return;
    }
    p->js = js;
    snprintf(p->prefix, sizeof p->prefix, "%s", prefix);
    p->live = live;
    p->cb = cb;
    p->arg = arg;
    if (js->nio_dead > 0) { /* a write on a dead job could land after the listing */
        p->wnext = js->waiting;
        js->waiting = p;
        return;
    }
    purge_list(p);
}

void gw__jobs_dead_io_done(gw_jobs_t *js)
{
    if (js->nio_dead > 0 || js->waiting == NULL)
        return;
    purge_t *p = js->waiting;
    js->waiting = NULL;
    while (p != NULL) {
        purge_t *next = p->wnext;
        purge_list(p);
        p = next;
    }
}

void gw__jobs_close_store(gw_jobs_t *js)
{
    gw_store_t *s = js->store;
    js->store = NULL; /* callbacks run by destroy start nothing new */
    if (s != NULL)
        s->ops->destroy(s);
    while (js->putq != NULL) { /* writes never started end the same way */
        put_t *p = js->putq;
        js->putq = p->next;
        put_landed(p->io, UV_ECANCELED, "store closed");
        if (!p->borrowed)
            free(p->data);
        free(p);
    }
    js->putq_tail = NULL;
}
