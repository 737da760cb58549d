/* dir: a local directory tree, one file per key. Every file operation runs on libuv's
 * threadpool (uv_queue_work), so a slow disk never holds the loop. Writes are a temporary file
 * and a rename: a reader never sees half an object. The key layout sorts by time, so the
 * directory tree is its own index: a listing walks it in order and prunes whole hours and
 * days that sort before start_after. */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"

typedef struct {
    gw_store_t super;
    uv_loop_t *loop;
    char root[GW_CONFIG_STR_MAX];
    int inflight;
    int destroyed;
    struct op *ops; /* in flight */
} dir_t;

enum { OP_PUT, OP_GET, OP_LIST, OP_DEL };

typedef struct op {
    uv_work_t work;
    dir_t *d;
    int kind;
    int orphan; /* destroy already called back: free only */
    char path[GW_CONFIG_STR_MAX + 600];
    char key[600];
    /* put: a copy, so that a put cancelled by destroy never leaves a worker reading
     * memory its caller has freed */
    uint8_t *data;
    size_t len;
    /* get */
    size_t max_bytes;
    uint8_t *out;
    size_t out_len;
    /* list */
    char prefix[600], start_after[600];
    int max;
    char **keys;
    int nkeys;
    /* result */
    int err;
    char msg[200];
    void *cb, *arg;
    struct op *next, *prev;
} op_t;

/* ---- worker thread ---- */

static int mkdirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rv = mkdir(path, 0755);
        *p = '/';
        if (rv != 0 && errno != EEXIST)
            return -errno;
    }
    return 0;
}

static void do_put(op_t *o)
{
    char tmp[sizeof o->path + 32];
    int rv = mkdirs(o->path);
    if (rv != 0) {
        snprintf(o->msg, sizeof o->msg, "mkdir: %s", strerror(-rv));
        o->err = PROTO_ESTORE;
        return;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", o->path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT && mkdirs(o->path) == 0) /* a delete removed an empty parent */
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(o->msg, sizeof o->msg, "open: %s", strerror(errno));
        o->err = PROTO_ESTORE;
        return;
    }
    size_t off = 0;
    while (off < o->len) {
        ssize_t n = write(fd, o->data + off, o->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(o->msg, sizeof o->msg, "write: %s", strerror(errno));
            close(fd);
            unlink(tmp);
            o->err = PROTO_ESTORE;
            return;
        }
        off += (size_t)n;
    }
    if (close(fd) != 0 || rename(tmp, o->path) != 0) {
        snprintf(o->msg, sizeof o->msg, "close/rename: %s", strerror(errno));
        unlink(tmp);
        o->err = PROTO_ESTORE;
    }
}

static void do_get(op_t *o)
{
    int fd = open(o->path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        o->err = errno == ENOENT ? PROTO_ENOTFOUND : PROTO_ESTORE;
        snprintf(o->msg, sizeof o->msg, "%s", strerror(errno));
        return;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > o->max_bytes) {
        o->err = S_ISREG(st.st_mode) ? PROTO_ESTORE : PROTO_ENOTFOUND;
        snprintf(o->msg, sizeof o->msg, "not a readable object of at most %zu bytes", o->max_bytes);
        close(fd);
        return;
    }
    o->out = malloc((size_t)st.st_size + 1);
    size_t off = 0;
    while (o->out != NULL && off < (size_t)st.st_size) {
        ssize_t n = read(fd, o->out + off, (size_t)st.st_size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    if (o->out == NULL || off != (size_t)st.st_size) {
        free(o->out);
        o->out = NULL;
        o->err = PROTO_ESTORE;
        snprintf(o->msg, sizeof o->msg, "short read");
        return;
    }
    o->out_len = off;
}

/* Unlinks the file, then its parent directories that became empty, up to (not including) the
 * root: a store of many deleted keys leaves no empty tree behind. */
static void do_del(op_t *o)
{
    if (unlink(o->path) != 0 && errno != ENOENT) {
        o->err = PROTO_ESTORE;
        snprintf(o->msg, sizeof o->msg, "unlink: %s", strerror(errno));
        return;
    }
    size_t rl = strlen(o->d->root);
    for (char *slash = strrchr(o->path, '/'); slash != NULL && (size_t)(slash - o->path) > rl;
         slash = strrchr(o->path, '/')) {
        *slash = '\0';
        if (rmdir(o->path) != 0)
            break; /* not empty (or gone): stop */
    }
}

static int cmp_names(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int add_key(op_t *o, const char *key)
{
    char **nk = realloc(o->keys, (size_t)(o->nkeys + 1) * sizeof *nk);
    if (nk == NULL)
        return -1;
    o->keys = nk;
    if ((o->keys[o->nkeys] = strdup(key)) == NULL)
        return -1;
    o->nkeys++;
    return 0;
}

/* Walks dir (the path of key prefix `rel`, "" or ending in '/') in key order. */
static void walk(op_t *o, const char *dir, const char *rel)
{
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, cmp_names);
    if (n < 0)
        return;
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        char key[600], path[sizeof o->path + 600];
        if (o->nkeys >= o->max || name[0] == '.' || strstr(name, ".tmp-") != NULL)
            continue;
        snprintf(key, sizeof key, "%s%s", rel, name);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            size_t kl = strlen(key);
            if (kl + 2 > sizeof key)
                continue;
            key[kl] = '/';
            key[kl + 1] = '\0';
            /* a subtree wholly before start_after, or outside the prefix, is skipped */
            if (strcmp(key, o->start_after) < 0 && strncmp(o->start_after, key, kl + 1) != 0)
                continue;
            size_t pl = strlen(o->prefix);
            if (strncmp(key, o->prefix, pl < kl + 1 ? pl : kl + 1) != 0)
                continue;
            walk(o, path, key);
        } else if (S_ISREG(st.st_mode) && strncmp(key, o->prefix, strlen(o->prefix)) == 0 &&
                   strcmp(key, o->start_after) > 0) {
            if (add_key(o, key) != 0) {
                o->err = PROTO_ENOMEM;
                break;
            }
        }
    }
    for (int i = 0; i < n; i++)
        free(ents[i]);
    free(ents);
}

static void on_work(uv_work_t *w)
{
    op_t *o = w->data;
    if (o->kind == OP_PUT)
        do_put(o);
    else if (o->kind == OP_GET)
        do_get(o);
    else if (o->kind == OP_DEL)
        do_del(o);
    else
        walk(o, o->d->root, "");
}

/* ---- loop thread ---- */

static void op_unlink(op_t *o)
{
    dir_t *d = o->d;
    if (o->prev)
        o->prev->next = o->next;
    else
        d->ops = o->next;
    if (o->next)
        o->next->prev = o->prev;
    o->next = o->prev = NULL;
}

static void op_free(op_t *o)
{
    for (int i = 0; i < o->nkeys; i++)
        free(o->keys[i]);
    free(o->keys);
    free(o->out);
    free(o->data);
    free(o);
}

/* Cancelled ops are called back while their work may still run: then only `err` and `msg`
 * (not the op's own fields) are read. */
static void call_back(op_t *o, int err, const char *msg)
{
    if (o->kind == OP_PUT || o->kind == OP_DEL) {
        ((gw_store_done_cb)o->cb)(o->arg, err, msg);
    } else if (o->kind == OP_GET) {
        uint8_t *data = err == 0 ? o->out : NULL;
        if (err == 0)
            o->out = NULL;
        ((gw_store_get_cb)o->cb)(o->arg, err, msg, data, err == 0 ? o->out_len : 0);
    } else {
        ((gw_store_list_cb)o->cb)(o->arg, err, msg, err == 0 ? o->keys : NULL,
                                  err == 0 ? o->nkeys : 0);
    }
}

static void on_after_work(uv_work_t *w, int status)
{
    op_t *o = w->data;
    dir_t *d = o->d;
    d->inflight--;
    if (!o->orphan) {
        op_unlink(o);
        call_back(o, status != 0 ? PROTO_ESTORE : o->err, o->msg[0] ? o->msg : NULL);
    }
    op_free(o);
    if (d->destroyed && d->inflight == 0)
        free(d);
}

static int submit(dir_t *d, op_t *o, const char *key, void *cb, void *arg)
{
    if (d->destroyed) {
        op_free(o);
        return PROTO_ESHUTDOWN;
    }
    if (key != NULL) {
        if (!gw_store_key_valid(key)) {
            op_free(o);
            return PROTO_EINVAL;
        }
        snprintf(o->key, sizeof o->key, "%s", key);
        snprintf(o->path, sizeof o->path, "%s/%s", d->root, key);
    }
    o->d = d;
    o->cb = cb;
    o->arg = arg;
    o->work.data = o;
    int rv = uv_queue_work(d->loop, &o->work, on_work, on_after_work);
    if (rv != 0) {
        op_free(o);
        return rv;
    }
    d->inflight++;
    o->next = d->ops;
    if (d->ops)
        d->ops->prev = o;
    d->ops = o;
    return 0;
}

static int dir_put(gw_store_t *s, const char *key, const uint8_t *data, size_t len,
                   const char *content_type, gw_store_done_cb cb, void *arg)
{
    (void)content_type; /* the extension says it */
    op_t *o = calloc(1, sizeof *o);
    if (o == NULL)
        return PROTO_ENOMEM;
    o->kind = OP_PUT;
    if ((o->data = malloc(len ? len : 1)) == NULL) {
        free(o);
        return PROTO_ENOMEM;
    }
    memcpy(o->data, data, len);
    o->len = len;
    return submit((dir_t *)s, o, key, (void *)cb, arg);
}

static int dir_get(gw_store_t *s, const char *key, size_t max_bytes, gw_store_get_cb cb, void *arg)
{
    op_t *o = calloc(1, sizeof *o);
    if (o == NULL)
        return PROTO_ENOMEM;
    o->kind = OP_GET;
    o->max_bytes = max_bytes;
    return submit((dir_t *)s, o, key, (void *)cb, arg);
}

static int dir_list(gw_store_t *s, const char *prefix, const char *start_after, int max,
                    gw_store_list_cb cb, void *arg)
{
    if (strlen(prefix) >= sizeof((op_t *)0)->prefix ||
        strlen(start_after) >= sizeof((op_t *)0)->start_after || max < 1)
        return PROTO_EINVAL;
    op_t *o = calloc(1, sizeof *o);
    if (o == NULL)
        return PROTO_ENOMEM;
    o->kind = OP_LIST;
    snprintf(o->prefix, sizeof o->prefix, "%s", prefix);
    snprintf(o->start_after, sizeof o->start_after, "%s", start_after);
    o->max = max;
    return submit((dir_t *)s, o, NULL, (void *)cb, arg);
}

static int dir_del(gw_store_t *s, const char *key, gw_store_done_cb cb, void *arg)
{
    op_t *o = calloc(1, sizeof *o);
    if (o == NULL)
        return PROTO_ENOMEM;
    o->kind = OP_DEL;
    return submit((dir_t *)s, o, key, (void *)cb, arg);
}

static int dir_create(gw_store_t **out, const gw_store_env_t *env, const char *url, char *err,
                      size_t cap)
{
    const char *path = url + strlen("dir:");
    if (path[0] != '/') {
        snprintf(err, cap, "store: dir: needs an absolute path (dir:/var/lib/framegate)");
        return PROTO_ECONFIG;
    }
    dir_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return PROTO_ENOMEM;
    d->super.ops = &gw_store_dir_ops;
    d->loop = env->loop;
    snprintf(d->root, sizeof d->root, "%s", path);
    size_t n = strlen(d->root);
    while (n > 1 && d->root[n - 1] == '/')
        d->root[--n] = '\0';
    /* start-up, before the loop runs: a blocking mkdir is fine here */
    char probe[sizeof d->root + 2];
    snprintf(probe, sizeof probe, "%s/", d->root);
    if (mkdirs(probe) != 0 || access(d->root, W_OK) != 0) {
        snprintf(err, cap, "store: %s is not a writable directory", d->root);
        free(d);
        return PROTO_ECONFIG;
    }
    *out = &d->super;
    return 0;
}

static void dir_destroy(gw_store_t *s)
{
    dir_t *d = (dir_t *)s;
    d->destroyed = 1;
    while (d->ops != NULL) {
        op_t *o = d->ops;
        op_unlink(o);
        o->orphan = 1;
        call_back(o, UV_ECANCELED, "store closed");
    }
    if (d->inflight == 0)
        free(d);
}

const gw_store_ops_t gw_store_dir_ops = {
    .kind = "dir",
    .create = dir_create,
    .destroy = dir_destroy,
    .put = dir_put,
    .get = dir_get,
    .list = dir_list,
    .del = dir_del,
};
