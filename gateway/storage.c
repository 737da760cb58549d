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

#define KEY_MAX 600
#define SPOOL_MAGIC "FGSPOOL1\n"

enum { I_QUEUED, I_SPOOLING, I_DISK, I_LOADING, I_SENDING };
enum { S_UP, S_DOWN, S_PROBING };

static const char class_char[GW_STORE_NCLASS] = {'i', 'a', 'r'};
static const char *const class_name[GW_STORE_NCLASS] = {"input", "annotated", "result"};

typedef struct item {
    struct gw_storage *st;
    char key[KEY_MAX];
    char ctype[48];
    int cls;
    uint8_t *data; /* NULL while only on disk */
    size_t len;
    uint64_t seq;      /* arrival order, also the spool file's number: oldest = smallest */
    int has_file;      /* in the spool (written, being written, or found at start) */
    size_t file_bytes; /* spool file size */
    int where;         /* I_* */
    int evicted;       /* dropped while its spool file was being written: delete it then */
    struct item *next, *prev;
} item_t;

typedef struct {
    item_t *head, *tail;
    int n;
} list_t;

struct gw_storage {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    gw_store_t *store;
    char url[GW_CONFIG_STR_MAX];       /* the `store` value it was opened with */
    char spool_dir[GW_CONFIG_STR_MAX]; /* "" = none */
    list_t queue;                      /* I_QUEUED, oldest first */
    list_t disk; /* every item with a spool file (or one being written), by seq */
    size_t queue_bytes;
    size_t mem_bytes; /* item data held in memory, whatever the state */
    size_t spool_bytes;
    uint64_t next_seq;
    uint32_t key_seq;
    int inflight;
    int state; /* S_* */
    uint64_t backoff_ms;
    uv_timer_t retry;
    int works;
    int closing, timer_closed;
    uint64_t written, failed, spooled, dropped[GW_STORE_NCLASS];
    char last_error[256];
};

/* ---- lists ---- */

static void push_back(list_t *l, item_t *it)
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

static void unlink_item(list_t *l, item_t *it)
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

static void item_free(gw_storage_t *st, item_t *it)
{
    free_data(st, it);
    free(it);
}

static void maybe_free_storage(gw_storage_t *st)
{
    if (st->closing && st->works == 0 && st->timer_closed)
        free(st);
}

/* ---- the spool's files (threadpool) ---- */

static void spool_path(const gw_storage_t *st, const item_t *it, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%020" PRIu64 "-%c.obj", st->spool_dir, it->seq, class_char[it->cls]);
}

typedef struct {
    uv_work_t work;
    gw_storage_t *st;
    item_t *it; /* NULL for an unlink */
    char path[GW_CONFIG_STR_MAX + 64];
    char tmp[GW_CONFIG_STR_MAX + 64];
    int err;
    char msg[160];
} work_t;

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Header "FGSPOOL1\nKEY\nCTYPE\n", then the bytes; temp file + rename, so a crash leaves
 * either the whole file or a temp file that the next start deletes. */
static int spool_write_file(const char *tmp, const char *path, const item_t *it, char *msg,
                            size_t cap)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(msg, cap, "open: %s", strerror(errno));
        return -1;
    }
    char head[KEY_MAX + 80];
    int hn = snprintf(head, sizeof head, SPOOL_MAGIC "%s\n%s\n", it->key, it->ctype);
    if (write_all(fd, head, (size_t)hn) != 0 || write_all(fd, it->data, it->len) != 0) {
        snprintf(msg, cap, "write: %s", strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        snprintf(msg, cap, "rename: %s", strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static size_t spool_file_size(const item_t *it)
{
    return strlen(SPOOL_MAGIC) + strlen(it->key) + strlen(it->ctype) + 2 + it->len;
}

static void on_write_work(uv_work_t *w)
{
    work_t *wk = w->data;
    if (spool_write_file(wk->tmp, wk->path, wk->it, wk->msg, sizeof wk->msg) != 0)
        wk->err = -1;
}

/* Reads a spool file back: key, content type and bytes into the item. */
static void on_read_work(uv_work_t *w)
{
    work_t *wk = w->data;
    item_t *it = wk->it;
    int fd = open(wk->path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    wk->err = -1;
    if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size < (off_t)strlen(SPOOL_MAGIC) ||
        (size_t)sb.st_size > wk->st->cfg->spool_max_bytes + KEY_MAX + 100) {
        snprintf(wk->msg, sizeof wk->msg, "unreadable spool file");
        if (fd >= 0)
            close(fd);
        return;
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    size_t off = 0;
    while (buf != NULL && off < (size_t)sb.st_size) {
        ssize_t n = read(fd, buf + off, (size_t)sb.st_size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    buf != NULL ? buf[off] = '\0' : 0;
    char *k = buf ? buf + strlen(SPOOL_MAGIC) : NULL;
    char *k_end = k ? memchr(k, '\n', off - strlen(SPOOL_MAGIC)) : NULL;
    char *c_end = k_end ? memchr(k_end + 1, '\n', off - (size_t)(k_end + 1 - buf)) : NULL;
    if (off != (size_t)sb.st_size || memcmp(buf, SPOOL_MAGIC, strlen(SPOOL_MAGIC)) != 0 ||
        c_end == NULL || (size_t)(k_end - k) >= sizeof it->key ||
        (size_t)(c_end - k_end - 1) >= sizeof it->ctype) {
        snprintf(wk->msg, sizeof wk->msg, "corrupt spool file");
        free(buf);
        return;
    }
    memcpy(it->key, k, (size_t)(k_end - k));
    it->key[k_end - k] = '\0';
    memcpy(it->ctype, k_end + 1, (size_t)(c_end - k_end - 1));
    it->ctype[c_end - k_end - 1] = '\0';
    it->len = off - (size_t)(c_end + 1 - buf);
    memmove(buf, c_end + 1, it->len);
    it->data = (uint8_t *)buf;
    wk->err = gw_store_key_valid(it->key) ? 0 : -1;
    if (wk->err != 0) {
        snprintf(wk->msg, sizeof wk->msg, "bad key in spool file");
        free(buf);
        it->data = NULL;
    }
}

static void on_unlink_work(uv_work_t *w)
{
    work_t *wk = w->data;
    unlink(wk->path);
}

static void on_unlink_done(uv_work_t *w, int status)
{
    (void)status;
    work_t *wk = w->data;
    gw_storage_t *st = wk->st;
    st->works--;
    free(wk);
    maybe_free_storage(st);
}

static int queue_work(gw_storage_t *st, item_t *it, uv_work_cb fn, uv_after_work_cb done)
{
    work_t *wk = calloc(1, sizeof *wk);
    if (wk == NULL)
        return PROTO_ENOMEM;
    wk->st = st;
    wk->it = it;
    wk->work.data = wk;
    spool_path(st, it, wk->path, sizeof wk->path);
    snprintf(wk->tmp, sizeof wk->tmp, "%s/.tmp-%020" PRIu64, st->spool_dir, it->seq);
    int rv = uv_queue_work(st->loop, &wk->work, fn, done);
    if (rv != 0) {
        free(wk);
        return rv;
    }
    st->works++;
    return 0;
}

/* Deletes an item's spool file (in the background) and forgets the item. */
static void spool_forget(gw_storage_t *st, item_t *it)
{
    unlink_item(&st->disk, it);
    st->spool_bytes -= it->file_bytes;
    if (queue_work(st, it, on_unlink_work, on_unlink_done) != 0) {
        char path[GW_CONFIG_STR_MAX + 64];
        spool_path(st, it, path, sizeof path);
        unlink(path);
    }
    item_free(st, it);
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
            spool_forget(st, victim);
        } else { /* its write is on a worker: on_spooled deletes the file */
            unlink_item(&st->disk, victim);
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
        if (status == 0 && wk->err == 0 && queue_work(st, it, on_unlink_work, on_unlink_done) != 0)
            unlink(wk->path);
        item_free(st, it);
    } else if (status != 0 || wk->err != 0) {
        unlink_item(&st->disk, it);
        st->spool_bytes -= it->file_bytes;
        drop(st, it, wk->err ? wk->msg : "cancelled");
        item_free(st, it);
    } else {
        st->spooled++;
        it->where = I_DISK;
        free_data(st, it); /* the disk holds it now: memory stays bounded */
        if (st->closing) {
            unlink_item(&st->disk, it);
            item_free(st, it);
        } else {
            pump(st);
        }
    }
    free(wk);
    maybe_free_storage(st);
}

/* Writes an item to the spool (in the background), or drops it. */
static void spool_put(gw_storage_t *st, item_t *it)
{
    if (st->spool_dir[0] == '\0') {
        drop(st, it, "store unavailable and no spool_dir");
        item_free(st, it);
        return;
    }
    it->file_bytes = spool_file_size(it);
    if (make_room(st, it->cls, it->file_bytes) != 0) {
        drop(st, it, "spool full of writes kept longer");
        item_free(st, it);
        return;
    }
    it->where = I_SPOOLING;
    it->has_file = 1;
    insert_by_seq(&st->disk, it);
    st->spool_bytes += it->file_bytes;
    if (queue_work(st, it, on_write_work, on_spooled) != 0) {
        unlink_item(&st->disk, it);
        st->spool_bytes -= it->file_bytes;
        drop(st, it, "cannot queue the spool write");
        item_free(st, it);
    }
}

static void admit(gw_storage_t *st, item_t *it)
{
    const gw_config_t *cfg = st->cfg;
    if (st->state == S_UP && st->queue.n < cfg->store_queue &&
        st->queue_bytes + it->len <= cfg->store_queue_bytes) {
        it->where = I_QUEUED;
        push_back(&st->queue, it);
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
        spool_forget(st, it);
    } else if (st->closing) { /* it stays in the spool for the next run */
        st->inflight--;
        free(it->data);
        it->data = NULL;
        unlink_item(&st->disk, it);
        free(it);
    } else {
        st->mem_bytes += it->len;
        send_item(st, it);
    }
    free(wk);
    maybe_free_storage(st);
}

static void send_item(gw_storage_t *st, item_t *it)
{
    if (it->data == NULL) { /* spooled: read it back first */
        it->where = I_LOADING;
        if (queue_work(st, it, on_read_work, on_loaded) != 0) {
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
            unlink_item(&st->queue, it);
            st->queue_bytes -= it->len;
        }
        if (it == NULL) {
            /* a probe with nothing to send: assume the store is back */
            if (st->state == S_PROBING && st->inflight == 0)
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
            unlink_item(&st->queue, it);
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
            spool_forget(st, it);
        else
            item_free(st, it);
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
            spool_forget(st, it);
        else
            item_free(st, it);
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

/* ---- start-up: the spool left by the last run ---- */

static int cmp_seq(const void *a, const void *b)
{
    const item_t *x = *(item_t *const *)a, *y = *(item_t *const *)b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int scan_spool(gw_storage_t *st, char *err, size_t cap)
{
    const char *dir = st->spool_dir;
    char path[GW_CONFIG_STR_MAX + 300];
    snprintf(path, sizeof path, "%s/", dir);
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0700);
            *p = '/';
        }
    DIR *d = opendir(dir);
    if (d == NULL || access(dir, W_OK) != 0) {
        snprintf(err, cap, "spool_dir: %s is not a writable directory", dir);
        if (d)
            closedir(d);
        return PROTO_ECONFIG;
    }
    item_t **found = NULL;
    size_t n = 0, capn = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (strncmp(e->d_name, ".tmp-", 5) == 0) { /* a write the last run did not finish */
            unlink(path);
            continue;
        }
        unsigned long long seq;
        char cls, tail[8];
        if (strlen(e->d_name) != 26 || sscanf(e->d_name, "%20llu-%c.%3s", &seq, &cls, tail) != 3 ||
            strcmp(tail, "obj") != 0)
            continue;
        int c = cls == 'i' ? 0 : cls == 'a' ? 1 : cls == 'r' ? 2 : -1;
        struct stat sb;
        if (c < 0 || seq == 0 || stat(path, &sb) != 0)
            continue;
        if (n == capn) {
            capn = capn ? capn * 2 : 256;
            item_t **nf = realloc(found, capn * sizeof *nf);
            if (nf == NULL)
                break;
            found = nf;
        }
        item_t *it = calloc(1, sizeof *it);
        if (it == NULL)
            break;
        it->st = st;
        it->seq = seq;
        it->has_file = 1;
        it->cls = c;
        it->file_bytes = (size_t)sb.st_size;
        it->where = I_DISK;
        found[n++] = it;
    }
    closedir(d);
    if (n > 0)
        qsort(found, n, sizeof *found, cmp_seq);
    st->next_seq = 1;
    for (size_t i = 0; i < n; i++) {
        push_back(&st->disk, found[i]);
        st->spool_bytes += found[i]->file_bytes;
        if (found[i]->seq >= st->next_seq)
            st->next_seq = found[i]->seq + 1;
    }
    free(found);
    if (n > 0)
        GW_LOG_I("spool_found", "dir=%s objects=%zu bytes=%zu", dir, n, st->spool_bytes);
    return 0;
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
    int rv = st->spool_dir[0] != '\0' ? scan_spool(st, err, cap) : 0;
    if (rv != 0) {
        store->ops->destroy(store);
        while (st->disk.head != NULL) {
            item_t *it = st->disk.head;
            unlink_item(&st->disk, it);
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
    maybe_free_storage(st);
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
        unlink_item(&st->queue, it);
        st->queue_bytes -= it->len;
        if (st->spool_dir[0] == '\0') {
            drop(st, it, "shutdown with no spool_dir");
            item_free(st, it);
            continue;
        }
        it->file_bytes = spool_file_size(it);
        if (make_room(st, it->cls, it->file_bytes) != 0) {
            drop(st, it, "spool full at shutdown");
            item_free(st, it);
            continue;
        }
        /* the loop is exiting: write it here and now */
        char path[GW_CONFIG_STR_MAX + 64], tmp[GW_CONFIG_STR_MAX + 64], msg[160];
        spool_path(st, it, path, sizeof path);
        snprintf(tmp, sizeof tmp, "%s/.tmp-%020" PRIu64, st->spool_dir, it->seq);
        if (spool_write_file(tmp, path, it, msg, sizeof msg) != 0)
            drop(st, it, msg);
        else
            flushed++;
        item_free(st, it);
    }
    if (flushed > 0)
        GW_LOG_I("spool_flush", "objects=%d", flushed);
    /* spooled items no work item is using can go; the others go with their work */
    for (item_t *d = st->disk.head, *next; d != NULL; d = next) {
        next = d->next;
        if (d->where == I_DISK) {
            unlink_item(&st->disk, d);
            item_free(st, d);
        }
    }
    uv_close((uv_handle_t *)&st->retry, on_timer_closed);
}
