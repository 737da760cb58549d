/* Read top to bottom, this is a write's life: keys and copies (keep), the memory queue or the
 * spool (admit), the sender (pump/send), the store's verdict (on_put: written, or spooled and
 * the store marked down), the backoff that probes the store with one spooled write until it
 * takes it again, and shutdown. Spool files are written, read and deleted on libuv's
 * threadpool; only their bookkeeping is on the loop. */
#include "storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "storage_internal.h"

static const char *const class_name[GW_STORE_NCLASS] = {"input", "annotated", "result"};

/* ---- lists ---- */

void gw__storage_push_back(list_t *l, item_t *it)
{
    it->next = NULL;
    it->prev = l->tail;
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    l->n++;
}

static void push_front(list_t *l, item_t *it)
{
    it->prev = NULL;
    it->next = l->head;
    if (l->head)
        l->head->prev = it;
    else
        l->tail = it;
    l->head = it;
    l->n++;
}

/* The spool list is kept in arrival order: writes fail and spool out of order (a batch in
 * flight fails after newer writes were queued), and "oldest first" must mean arrival. */
static void insert_by_seq(list_t *l, item_t *it)
{
    item_t *after = l->tail;
    while (after != NULL && after->seq > it->seq)
        after = after->prev;
    if (after == NULL) {
        push_front(l, it);
        return;
    }
    it->prev = after;
    it->next = after->next;
    if (after->next)
        after->next->prev = it;
    else
        l->tail = it;
    after->next = it;
    l->n++;
}

void gw__storage_unlink(list_t *l, item_t *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        l->head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        l->tail = it->prev;
    it->next = it->prev = NULL;
    l->n--;
}

static void free_data(gw_storage_t *st, item_t *it)
{
    if (it->data != NULL) {
        st->mem_bytes -= it->len;
        free(it->data);
        it->data = NULL;
    }
}

void gw__storage_item_free(gw_storage_t *st, item_t *it)
{
    free_data(st, it);
    free(it);
}

void gw__storage_maybe_free(gw_storage_t *st)
{
    if (st->closing && st->works == 0 && st->timer_closed)
        free(st);
}

/* ---- drops ---- */

static void drop(gw_storage_t *st, item_t *it, const char *why)
{
    st->dropped[it->cls]++;
    GW_LOG_W("store_drop", "class=%s key=%s bytes=%zu reason=\"%s\"", class_name[it->cls],
             it->key[0] ? it->key : "(spooled)", it->len ? it->len : it->file_bytes, why);
}

/* Frees spool room for `need` bytes by dropping the oldest spooled writes of a class at most
 * `cls` (inputs first, answers last). 0, or -1 if it cannot. */
static int make_room(gw_storage_t *st, int cls, size_t need)
{
    size_t max = st->cfg->spool_max_bytes;
    while (st->spool_bytes + need > max) {
        item_t *victim = NULL;
        for (int c = 0; c <= cls && victim == NULL; c++)
            for (item_t *it = st->disk.head; it != NULL; it = it->next)
                if (it->cls == c && (it->where == I_DISK || it->where == I_SPOOLING)) {
                    victim = it;
                    break;
                }
        if (victim == NULL)
            return -1;
        drop(st, victim, "spool full: oldest of its class dropped");
        if (victim->where == I_DISK) {
            gw__spool_forget(st, victim);
        } else { /* its write is on a worker: on_spooled deletes the file */
            gw__storage_unlink(&st->disk, victim);
            st->spool_bytes -= victim->file_bytes;
            victim->evicted = 1;
        }
    }
    return 0;
}

/* ---- admit: memory queue or spool ---- */

static void pump(gw_storage_t *st);

static void on_spooled(uv_work_t *w, int status)
{
    work_t *wk = w->data;
    gw_storage_t *st = wk->st;
    item_t *it = wk->it;
    st->works--;
    if (it->evicted) { /* dropped (and counted) by make_room meanwhile */
        if (status == 0 && wk->err == 0 &&
            gw__spool_queue_work(st, it, gw__spool_on_unlink_work, gw__spool_on_unlink_done) != 0)
            unlink(wk->path);
        gw__storage_item_free(st, it);
    } else if (status != 0 || wk->err != 0) {
        gw__storage_unlink(&st->disk, it);
        st->spool_bytes -= it->file_bytes;
        drop(st, it, wk->err ? wk->msg : "cancelled");
        gw__storage_item_free(st, it);
        if (!st->closing)
            pump(st); /* a probe may have been waiting for this write */
    } else {
        st->spooled++;
        it->where = I_DISK;
        free_data(st, it); /* the disk holds it now: memory stays bounded */
        if (st->closing) {
            gw__storage_unlink(&st->disk, it);
            gw__storage_item_free(st, it);
        } else {
            pump(st);
        }
    }
    free(wk);
    gw__storage_maybe_free(st);
}

/* Writes an item to the spool (in the background), or drops it. */
static void spool_put(gw_storage_t *st, item_t *it)
{
    if (st->spool_dir[0] == '\0') {
        drop(st, it, "store unavailable and no spool_dir");
        gw__storage_item_free(st, it);
        return;
    }
    it->file_bytes = gw__spool_file_size(it);
    if (make_room(st, it->cls, it->file_bytes) != 0) {
        drop(st, it, "spool full of writes kept longer");
        gw__storage_item_free(st, it);
        return;
    }
    it->where = I_SPOOLING;
    it->has_file = 1;
    insert_by_seq(&st->disk, it);
    st->spool_bytes += it->file_bytes;
    if (gw__spool_queue_work(st, it, gw__spool_on_write_work, on_spooled) != 0) {
        gw__storage_unlink(&st->disk, it);
        st->spool_bytes -= it->file_bytes;
        drop(st, it, "cannot queue the spool write");
        gw__storage_item_free(st, it);
    }
}

static void admit(gw_storage_t *st, item_t *it)
{
    const gw_config_t *cfg = st->cfg;
    if (st->state == S_UP && st->queue.n < cfg->store_queue &&
        st->queue_bytes + it->len <= cfg->store_queue_bytes) {
        it->where = I_QUEUED;
        gw__storage_push_back(&st->queue, it);
        st->queue_bytes += it->len;
        pump(st);
        return;
    }
    spool_put(st, it);
}

/* ---- sending ---- */

static void on_put(void *arg, int err, const char *msg);
static void send_item(gw_storage_t *st, item_t *it);

static void on_loaded(uv_work_t *w, int status)
{
    work_t *wk = w->data;
    gw_storage_t *st = wk->st;
    item_t *it = wk->it;
    st->works--;
    if (status != 0 || wk->err != 0) {
        st->inflight--;
        drop(st, it, status != 0 ? "cancelled" : wk->msg);
        gw__spool_forget(st, it);
    } else if (st->closing) { /* it stays in the spool for the next run */
        st->inflight--;
        free(it->data);
        it->data = NULL;
        gw__storage_unlink(&st->disk, it);
        free(it);
    } else {
        st->mem_bytes += it->len;
        send_item(st, it);
    }
    free(wk);
    gw__storage_maybe_free(st);
}

static void send_item(gw_storage_t *st, item_t *it)
{
    if (it->data == NULL) { /* spooled: read it back first */
        it->where = I_LOADING;
        if (gw__spool_queue_work(st, it, gw__spool_on_read_work, on_loaded) != 0) {
            it->where = I_DISK;
            st->inflight--;
        }
        return;
    }
    it->where = I_SENDING;
    int rv = st->store->ops->put(st->store, it->key, it->data, it->len, it->ctype, on_put, it);
    if (rv != 0)
        on_put(it, rv == PROTO_EINVAL ? PROTO_EINVAL : PROTO_ESTORE, proto_strerror(rv));
}

/* Writes in flight: the store's concurrency when up, one probe after a backoff, none while
 * down. Spooled writes go first: they are the oldest. */
static void pump(gw_storage_t *st)
{
    int limit = st->state == S_UP ? st->cfg->store_concurrency : st->state == S_PROBING ? 1 : 0;
    while (!st->closing && st->inflight < limit) {
        item_t *it = NULL;
        for (item_t *d = st->disk.head; d != NULL; d = d->next)
            if (d->where == I_DISK) {
                it = d;
                break;
            }
        if (it == NULL && (it = st->queue.head) != NULL) {
            gw__storage_unlink(&st->queue, it);
            st->queue_bytes -= it->len;
        }
        if (it == NULL) {
            /* A probe with nothing to send: the store is assumed back only when nothing at
             * all waits. A spool write still under way becomes the probe when it lands
             * (on_spooled pumps); assuming "up" then flipped the state while the store was
             * still gone (seen under ASan, where spool writes are slow). */
            if (st->state == S_PROBING && st->inflight == 0 && st->disk.head == NULL)
                st->state = S_UP;
            return;
        }
        st->inflight++;
        send_item(st, it);
    }
}

static void on_retry(uv_timer_t *t)
{
    gw_storage_t *st = t->data;
    if (st->state == S_DOWN) {
        st->state = S_PROBING;
        pump(st);
    }
}

static void go_down(gw_storage_t *st, const char *msg)
{
    const gw_config_t *cfg = st->cfg;
    if (st->state == S_UP) {
        st->backoff_ms = cfg->store_retry_initial_ms;
        GW_LOG_W("store_down", "kind=%s error=\"%s\" retry_ms=%llu", st->store->ops->kind, msg,
                 (unsigned long long)st->backoff_ms);
        /* the memory queue would wait for nothing: spool it, freeing memory for new frames */
        item_t *it;
        while ((it = st->queue.head) != NULL) {
            gw__storage_unlink(&st->queue, it);
            st->queue_bytes -= it->len;
            spool_put(st, it);
        }
    } else if (st->state == S_PROBING) {
        st->backoff_ms = st->backoff_ms * 2 > cfg->store_retry_max_ms ? cfg->store_retry_max_ms
                                                                      : st->backoff_ms * 2;
    } else {
        return; /* already down, its timer armed */
    }
    st->state = S_DOWN;
    uv_timer_start(&st->retry, on_retry, st->backoff_ms, 0);
}

static void on_put(void *arg, int err, const char *msg)
{
    item_t *it = arg;
    gw_storage_t *st = it->st;
    st->inflight--;
    int spooled = it->has_file;
    if (err == 0) {
        st->written++;
        if (st->state != S_UP) {
            GW_LOG_I("store_up", "kind=%s spooled=%d", st->store->ops->kind, st->disk.n - 1);
            st->state = S_UP;
            uv_timer_stop(&st->retry);
        }
        if (spooled)
            gw__spool_forget(st, it);
        else
            gw__storage_item_free(st, it);
        pump(st);
        return;
    }
    if (err == UV_ECANCELED) { /* shutdown: destroy spools what is in memory */
        if (spooled) {
            it->where = I_DISK;
            free_data(st, it);
        } else {
            it->where = I_QUEUED;
            push_front(&st->queue, it);
            st->queue_bytes += it->len;
        }
        return;
    }
    st->failed++;
    snprintf(st->last_error, sizeof st->last_error, "%.250s", msg ? msg : "failed");
    GW_LOG_D("store_fail", "key=%s error=\"%s\"", it->key, msg ? msg : "");
    if (err == PROTO_EINVAL) { /* never storable: retrying cannot help */
        drop(st, it, "invalid key");
        if (spooled)
            gw__spool_forget(st, it);
        else
            gw__storage_item_free(st, it);
        return;
    }
    go_down(st, st->last_error);
    if (spooled) {
        it->where = I_DISK;
        free_data(st, it);
    } else {
        spool_put(st, it);
    }
}

/* ---- keep: keys and copies ---- */

static void camera_name(const char *camera, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = camera; *p && o + 1 < cap; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_' || (c == '.' && o > 0);
        out[o++] = ok ? c : '_';
    }
    out[o] = '\0';
    if (o == 0)
        snprintf(out, cap, "unknown");
}

int gw_storage_key_stem(const char *camera, uint64_t us, char *out, size_t cap)
{
    char cam[PROTO_CAMERA_MAX + 1];
    camera_name(camera, cam, sizeof cam);
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    return snprintf(out, cap, "%s/%04d/%02d/%02d/%02d/%s-%016" PRIu64, cam, tm.tm_year + 1900,
                    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, cam, us);
}

static item_t *new_item(gw_storage_t *st, int cls, const char *stem, uint32_t seq, const char *ext,
                        const char *ctype, const void *data, size_t len)
{
    item_t *it = calloc(1, sizeof *it);
    if (it == NULL)
        return NULL;
    it->st = st;
    it->seq = st->next_seq++;
    it->cls = cls;
    snprintf(it->key, sizeof it->key, "%s-%06u%s", stem, seq, ext);
    snprintf(it->ctype, sizeof it->ctype, "%s", ctype);
    it->len = len;
    /* copies wait in memory at most twice the queue's bytes (queue + spool writes) */
    if (st->mem_bytes + len > 2 * st->cfg->store_queue_bytes + (1u << 20) ||
        (it->data = malloc(len ? len : 1)) == NULL) {
        drop(st, it, "over store_queue_bytes in memory");
        free(it);
        return NULL;
    }
    memcpy(it->data, data, len);
    st->mem_bytes += len;
    return it;
}

void gw_storage_keep(gw_storage_t *st, const gw_job_t *job, cJSON *result)
{
    if (st == NULL || job->err != 0 || st->closing)
        return;
    const gw_model_t *m = gw_config_model(st->cfg, job->model_name);
    if (m == NULL)
        return;
    if (m->store_only_detections && job->rep.ndet == 0)
        return;
    int annotated =
        m->store_annotated && job->opts.output == PROTO_OUT_JPEG && job->rep.payload_len > 0;
    if (!m->store_inputs && !m->store_results && !annotated)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    char stem[KEY_MAX - 32];
    gw_storage_key_stem(job->opts.camera, us, stem, sizeof stem);
    uint32_t seq = st->key_seq++ % 1000000u;
    int png = job->image_len >= 4 && memcmp(job->image, "\x89PNG", 4) == 0;
    item_t *items[GW_STORE_NCLASS] = {NULL, NULL, NULL};
    if (m->store_inputs)
        items[GW_STORE_INPUT] =
            new_item(st, GW_STORE_INPUT, stem, seq, png ? ".png" : ".jpg",
                     png ? "image/png" : "image/jpeg", job->image, job->image_len);
    if (annotated)
        items[GW_STORE_ANNOTATED] = new_item(st, GW_STORE_ANNOTATED, stem, seq, ".boxes.jpg",
                                             "image/jpeg", job->rep.payload, job->rep.payload_len);
    /* the keys go into the answer before it is stored, so the stored answer has them too */
    cJSON *stored = cJSON_CreateObject();
    char rkey[KEY_MAX];
    if (m->store_results)
        snprintf(rkey, sizeof rkey, "%s-%06u.json", stem, seq);
    for (int c = 0; c < GW_STORE_NCLASS; c++)
        if (items[c] != NULL)
            cJSON_AddStringToObject(stored, class_name[c], items[c]->key);
    if (m->store_results)
        cJSON_AddStringToObject(stored, "result", rkey);
    cJSON_AddItemToObject(result, "stored", stored);
    if (m->store_results) {
        char *text = cJSON_PrintUnformatted(result);
        if (text != NULL) {
            items[GW_STORE_RESULT] = new_item(st, GW_STORE_RESULT, stem, seq, ".json",
                                              "application/json", text, strlen(text));
            free(text);
        }
    }
    for (int c = 0; c < GW_STORE_NCLASS; c++)
        if (items[c] != NULL)
            admit(st, items[c]);
}

int gw__storage_create_with(gw_storage_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                            gw_store_t *store, const char *url, const char *spool_dir, char *err,
                            size_t cap)
{
    *out = NULL;
    gw_storage_t *st = calloc(1, sizeof *st);
    if (st == NULL) {
        store->ops->destroy(store);
        return PROTO_ENOMEM;
    }
    st->loop = loop;
    st->cfg = cfg;
    st->state = S_UP;
    st->next_seq = 1;
    st->store = store;
    snprintf(st->url, sizeof st->url, "%s", url);
    snprintf(st->spool_dir, sizeof st->spool_dir, "%s", spool_dir);
    /* Gateways behind one load balancer share a store: a random start of the per-frame
     * sequence keeps two of them from writing one key in the same microsecond. */
    if (getrandom(&st->key_seq, sizeof st->key_seq, GRND_NONBLOCK) != sizeof st->key_seq)
        st->key_seq = (uint32_t)getpid() * 2654435761u;
    int rv = st->spool_dir[0] != '\0' ? gw__spool_scan(st, err, cap) : 0;
    if (rv != 0) {
        store->ops->destroy(store);
        while (st->disk.head != NULL) {
            item_t *it = st->disk.head;
            gw__storage_unlink(&st->disk, it);
            free(it);
        }
        free(st);
        return rv;
    }
    uv_timer_init(loop, &st->retry);
    st->retry.data = st;
    *out = st;
    pump(st); /* the last run's spool goes first */
    return 0;
}

int gw_storage_create(gw_storage_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                      gw_fetch_t *fetch, const char *url, const char *spool_dir, char *err,
                      size_t cap)
{
    *out = NULL;
    if (strcmp(url, "none") == 0)
        return 0;
    gw_store_t *store = NULL;
    gw_store_env_t env = {loop, cfg, fetch};
    int rv = gw_store_open(&store, &env, url, err, cap);
    if (rv != 0)
        return rv;
    return gw__storage_create_with(out, loop, cfg, store, url, spool_dir, err, cap);
}

const char *gw_storage_url(const gw_storage_t *st)
{
    return st != NULL ? st->url : "none";
}

const char *gw_storage_spool_dir(const gw_storage_t *st)
{
    return st != NULL ? st->spool_dir : "";
}

void gw_storage_stats(const gw_storage_t *st, gw_storage_stats_t *o)
{
    memset(o, 0, sizeof *o);
    if (st == NULL) {
        o->kind = "none";
        return;
    }
    o->kind = st->store->ops->kind;
    o->up = st->state == S_UP;
    o->written = st->written;
    o->failed = st->failed;
    o->spooled = st->spooled;
    memcpy(o->dropped, st->dropped, sizeof o->dropped);
    o->queued = st->queue.n;
    o->queued_bytes = st->queue_bytes;
    o->inflight = st->inflight;
    o->spool_objects = st->disk.n;
    o->spool_bytes = st->spool_bytes;
    o->spool_max_bytes = st->spool_dir[0] ? st->cfg->spool_max_bytes : 0;
    snprintf(o->last_error, sizeof o->last_error, "%s", st->last_error);
}

gw_store_t *gw_storage_store(gw_storage_t *st)
{
    return st != NULL ? st->store : NULL;
}

/* ---- shutdown ---- */

static void on_timer_closed(uv_handle_t *h)
{
    gw_storage_t *st = h->data;
    st->timer_closed = 1;
    gw__storage_maybe_free(st);
}

void gw_storage_destroy(gw_storage_t *st)
{
    if (st == NULL)
        return;
    st->closing = 1;
    st->store->ops->destroy(st->store); /* cancelled puts come back to the queue */
    item_t *it;
    int flushed = 0;
    while ((it = st->queue.head) != NULL) {
        gw__storage_unlink(&st->queue, it);
        st->queue_bytes -= it->len;
        if (st->spool_dir[0] == '\0') {
            drop(st, it, "shutdown with no spool_dir");
            gw__storage_item_free(st, it);
            continue;
        }
        it->file_bytes = gw__spool_file_size(it);
        if (make_room(st, it->cls, it->file_bytes) != 0) {
            drop(st, it, "spool full at shutdown");
            gw__storage_item_free(st, it);
            continue;
        }
        /* the loop is exiting: write it here and now */
        char path[GW_CONFIG_STR_MAX + 64], tmp[GW_CONFIG_STR_MAX + 64], msg[160];
        gw__spool_path(st, it, path, sizeof path);
        snprintf(tmp, sizeof tmp, "%s/.tmp-%020" PRIu64, st->spool_dir, it->seq);
        if (gw__spool_write_file(tmp, path, it, msg, sizeof msg) != 0)
            drop(st, it, msg);
        else
            flushed++;
        gw__storage_item_free(st, it);
    }
    if (flushed > 0)
        GW_LOG_I("spool_flush", "objects=%d", flushed);
    /* spooled items no work item is using can go; the others go with their work */
    for (item_t *d = st->disk.head, *next; d != NULL; d = next) {
        next = d->next;
        if (d->where == I_DISK) {
            gw__storage_unlink(&st->disk, d);
            gw__storage_item_free(st, d);
        }
    }
    uv_close((uv_handle_t *)&st->retry, on_timer_closed);
}
