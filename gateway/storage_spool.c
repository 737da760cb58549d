/* The spool's files: the file format ("FGSPOOL1\n", key, content type, then the bytes),
 * writing, reading back and deleting them on libuv's threadpool (the work functions), and the
 * scan at start-up that takes the files the last run left. Bookkeeping (lists, counters) stays
 * on the loop thread: the threadpool functions write only their work_t and its item. */
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

#define SPOOL_MAGIC "FGSPOOL1\n"

static const char class_char[GW_STORE_NCLASS] = {'i', 'a', 'r'};

/* ---- the spool's files (threadpool) ---- */

void gw__spool_path(const gw_storage_t *st, const item_t *it, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%020" PRIu64 "-%c.obj", st->spool_dir, it->seq, class_char[it->cls]);
}

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
int gw__spool_write_file(const char *tmp, const char *path, const item_t *it, char *msg, size_t cap)
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

size_t gw__spool_file_size(const item_t *it)
{
    return strlen(SPOOL_MAGIC) + strlen(it->key) + strlen(it->ctype) + 2 + it->len;
}

void gw__spool_on_write_work(uv_work_t *w)
{
    work_t *wk = w->data;
    if (gw__spool_write_file(wk->tmp, wk->path, wk->it, wk->msg, sizeof wk->msg) != 0)
        wk->err = -1;
}

/* Reads a spool file back: key, content type and bytes into the item. */
void gw__spool_on_read_work(uv_work_t *w)
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

void gw__spool_on_unlink_work(uv_work_t *w)
{
    work_t *wk = w->data;
    unlink(wk->path);
}

void gw__spool_on_unlink_done(uv_work_t *w, int status)
{
    (void)status;
    work_t *wk = w->data;
    gw_storage_t *st = wk->st;
    st->works--;
    free(wk);
    gw__storage_maybe_free(st);
}

int gw__spool_queue_work(gw_storage_t *st, item_t *it, uv_work_cb fn, uv_after_work_cb done)
{
    work_t *wk = calloc(1, sizeof *wk);
    if (wk == NULL)
        return PROTO_ENOMEM;
    wk->st = st;
    wk->it = it;
    wk->work.data = wk;
    gw__spool_path(st, it, wk->path, sizeof wk->path);
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
void gw__spool_forget(gw_storage_t *st, item_t *it)
{
    gw__storage_unlink(&st->disk, it);
    st->spool_bytes -= it->file_bytes;
    if (gw__spool_queue_work(st, it, gw__spool_on_unlink_work, gw__spool_on_unlink_done) != 0) {
        char path[GW_CONFIG_STR_MAX + 64];
        gw__spool_path(st, it, path, sizeof path);
        unlink(path);
    }
    gw__storage_item_free(st, it);
}

/* ---- start-up: the spool left by the last run ---- */

static int cmp_seq(const void *a, const void *b)
{
    const item_t *x = *(item_t *const *)a, *y = *(item_t *const *)b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int gw__spool_scan(gw_storage_t *st, char *err, size_t cap)
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
        gw__storage_push_back(&st->disk, found[i]);
        st->spool_bytes += found[i]->file_bytes;
        if (found[i]->seq >= st->next_seq)
            st->next_seq = found[i]->seq + 1;
    }
    free(found);
    if (n > 0)
        GW_LOG_I("spool_found", "dir=%s objects=%zu bytes=%zu", dir, n, st->spool_bytes);
    return 0;
}
