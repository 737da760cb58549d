/* Internal to the storage writer (storage.c: keep, admit, send, the store's verdict,
 * shutdown; storage_spool.c: the spool's files): the item and writer structs and the
 * functions the two call across. Bookkeeping is on the loop thread; only the work callbacks
 * named so run on libuv's threadpool. */
#ifndef GW_STORAGE_INTERNAL_H
#define GW_STORAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "storage.h"

#define KEY_MAX 600

enum { I_QUEUED, I_SPOOLING, I_DISK, I_LOADING, I_SENDING };
enum { S_UP, S_DOWN, S_PROBING };

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

typedef struct {
    uv_work_t work;
    gw_storage_t *st;
    item_t *it; /* NULL for an unlink */
    char path[GW_CONFIG_STR_MAX + 64];
    char tmp[GW_CONFIG_STR_MAX + 64];
    int err;
    char msg[160];
} work_t;

/* ---- storage.c (loop thread) ---- */

// Appends `it` to the list `l`.
void gw__storage_push_back(list_t *l, item_t *it);

// Removes `it` from the list `l` (it must be on it).
void gw__storage_unlink(list_t *l, item_t *it);

// Frees an item and the memory it accounts for; it must be on no list.
void gw__storage_item_free(gw_storage_t *st, item_t *it);

// Frees the writer once it is closing and no work item or timer still uses it.
void gw__storage_maybe_free(gw_storage_t *st);

/* ---- storage_spool.c ---- */

// The spool file of `it`: "<spool_dir>/<seq>-<class>.obj".
void gw__spool_path(const gw_storage_t *st, const item_t *it, char *out, size_t cap);

// Writes `it` to `tmp`, then renames it to `path`; 0, or -1 with a message in msg. Any thread
// (the threadpool, or the loop at shutdown).
int gw__spool_write_file(const char *tmp, const char *path, const item_t *it, char *msg,
                         size_t cap);

// The size of `it`'s spool file (header + bytes).
size_t gw__spool_file_size(const item_t *it);

// Threadpool work: write a spool file, read one back into its item, delete one.
void gw__spool_on_write_work(uv_work_t *w);
void gw__spool_on_read_work(uv_work_t *w);
void gw__spool_on_unlink_work(uv_work_t *w);
// Loop thread: an unlink's completion.
void gw__spool_on_unlink_done(uv_work_t *w, int status);

// Queues `fn` on the threadpool for `it` (done runs on the loop); 0 or a negative code.
int gw__spool_queue_work(gw_storage_t *st, item_t *it, uv_work_cb fn, uv_after_work_cb done);

// Deletes an item's spool file (in the background) and forgets the item. Loop thread.
void gw__spool_forget(gw_storage_t *st, item_t *it);

// Start-up: takes the spool files the last run left into st->disk; 0 or a negative code with
// a message in err. Loop thread, before the loop runs.
int gw__spool_scan(gw_storage_t *st, char *err, size_t cap);

#endif
