/* What jobs.c (the registry and dispatch to the pools), jobs_store.c (a job's objects in the
 * jobs store: writes, reads, deletes), jobs_load.c (the start-up load) and jobs_http.c (the routes:
 * uploads, JSON answers, cancel, reset) share. Not a public interface: loop thread only.
 * jobs_http.c never touches the store; every change to a job's state goes through a gw__jobs_*
 * function here, which keeps the objects and the counters in step. */
#ifndef GW_JOBS_INTERNAL_H
#define GW_JOBS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "jobs.h"
#include "store.h"

#define GW__JOB_NAME_MAX 120
#define GW__JOB_LABEL_MAX 64

enum { GW__IMG_PENDING, GW__IMG_OUT, GW__IMG_DONE, GW__IMG_FAILED };
/* Where an image's bytes come from: uploaded (kept in the job's files), or fetched when it
 * is dispatched, from a URL (fetch policy) or a key of the job's model's store. */
enum { GW__SRC_BYTES, GW__SRC_URL, GW__SRC_KEY };
enum { GW__JOB_QUEUED, GW__JOB_RUNNING, GW__JOB_DONE, GW__JOB_CANCELLED };
extern const char *const gw__job_state_names[];

/* One image of a job: a small record, the bytes stay in the job's files. */
typedef struct {
    char name[GW__JOB_NAME_MAX + 1];
    char label[GW__JOB_LABEL_MAX + 1];
    size_t len; /* of the uploaded bytes; 0 for a URL or key */
    uint8_t st;
    uint8_t src;  /* GW__SRC_* */
    uint8_t kept; /* a URL's or key's bytes are kept as in/N already (fetched once) */
    char *ref;    /* the URL or key, malloc'd; NULL for uploaded bytes */
    char *result; /* the result's JSON (done or failed), malloc'd */
} gw__img_t;

typedef struct gw__batch gw__batch_t;
/* An upload's end: 0 once its inputs and meta are in the store, or a code with msg. */
typedef void (*gw__jobs_commit_cb)(void *arg, int err, const char *msg);
/* An image's bytes for GET /v1/jobs/ID/images/N (malloc'd, taken), or NULL. */
typedef void (*gw__jobs_output_cb)(void *arg, uint8_t *data, size_t len);
/* A reset's end: 0 once the jobs' objects are deleted, or a code with msg. */
typedef void (*gw__jobs_reset_cb)(void *arg, int err, const char *msg);

struct gw__batch {
    gw__batch_t *next;
    char id[32];
    char model[GW_MODEL_NAME_MAX];
    /* the cameras list of the camera token that uploaded it (http.h's gw_req_t.cameras);
     * "" = a viewer, admin or open upload. A bound camera token sees only its own jobs. */
    char owner[256];
    int state;
    int n, ndone, nfailed, nout;
    int cap;    /* imgs allocated (while uploading) */
    int cursor; /* no pending image before it */
    int dead;   /* reset, evicted or aborted: freed when nothing is out */
    int nio;    /* store operations out on it */
    /* while uploading: input puts still out, the first failure, and who waits for the end */
    int upl_wait, upl_err;
    int borrow; /* gw__jobs_add's bytes stay valid until the commit ends or the job is dropped
                 * (a multipart body, held with its request): queued without a copy */
    char upl_msg[120];
    size_t upl_bytes;
    gw__jobs_commit_cb commit_cb;
    void *commit_arg;
    uint64_t created_ms, finished_ms; /* loop clock */
    uint64_t created_unix_ms;         /* for the meta */
    gw__img_t *imgs;
};

struct gw_jobs {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    gw_jobs_io_t io;
    char dir[GW_CONFIG_STR_MAX + 16]; /* jobs_dir as resolved (the default store's root) */
    char store_url[GW_CONFIG_STR_MAX + 24];
    gw_store_t *store;    /* NULL once closed */
    gw__batch_t *head;    /* in creation order (ids sort the same way) */
    gw__batch_t *uploads; /* committed, waiting for their objects to be stored (by ->next) */
    int njobs, nuploads;
    int loading;    /* the start-up load runs: no dispatch, no reset yet */
    int load_again; /* the retry timer runs the load again (not the pump) */
    unsigned load_backoff_ms;
    int nio_dead;              /* store operations out on dead jobs: a purge waits for them */
    struct gw__purge *waiting; /* purges waiting for nio_dead == 0 */
    struct gw__put *putq, *putq_tail; /* writes waiting for one of the few slots */
    int puts_out;
    int out;      /* frames in the pools */
    int window;   /* at most this many out: the pools' queues stay free for live frames */
    size_t bytes; /* bytes of images not yet done */
    int started, stopping;
    unsigned counter;
    uv_timer_t retry;
};

/* ---- jobs.c ---- */

/* Frees a job's memory (not its objects). */
void gw__batch_free(gw__batch_t *j);

/* Frees a dead job once no frame and no store operation is out on it. */
void gw__batch_release(gw_jobs_t *js, gw__batch_t *j);

/* Takes a job read back at start-up into the registry (jobs_load.c calls it). */
void gw__jobs_adopt(gw_jobs_t *js, gw__batch_t *j);

/* The start-up load ended: dispatch may begin. */
void gw__jobs_loaded(gw_jobs_t *js);

/* The start-up load failed for the store's sake (jobs read so far are kept): it runs again
 * after a back-off (1 s, doubling to 30 s); until it succeeds nothing is dispatched and a reset
 * is refused, so no job in the store is ever skipped or deleted unseen. */
void gw__jobs_load_failed(gw_jobs_t *js);

/* An upload's input (GW__PUT_INPUT) or meta (GW__PUT_META) landed, err as the store's. */
void gw__jobs_stored(gw_jobs_t *js, gw__batch_t *j, int what, int err, const char *msg);

/* The job with this id, or NULL. */
gw__batch_t *gw__jobs_find(gw_jobs_t *js, const char *id, size_t len);

/* Makes room for one more job under max_jobs by dropping the oldest finished one (done or
 * cancelled, nothing out) and deleting its objects. 0, or -1 when every job is still running. */
int gw__jobs_evict(gw_jobs_t *js);

/* A new, empty job for `model` ("" = default); not yet in the registry. NULL with *err set
 * (PROTO_ENOMEM, PROTO_ESHUTDOWN with msg) on failure. */
gw__batch_t *gw__jobs_begin(gw_jobs_t *js, const char *model, char *msg, size_t cap, int *err);

/* Appends one image to a job being uploaded: checks max_job_images and max_job_bytes (with
 * `uploading` bytes already taken by this upload), starts writing the bytes as in/N (the store
 * copies them). 0, or a code with msg. */
int gw__jobs_add(gw_jobs_t *js, gw__batch_t *j, size_t uploading, const char *name,
                 const uint8_t *data, size_t len, char *msg, size_t cap);

/* Appends one image given as a URL or a key (src GW__SRC_URL / GW__SRC_KEY): checks
 * max_job_images and the reference's form (http(s) URL of at most 2 KB without controls or
 * spaces; gw_store_key_valid). Fetched when dispatched. 0, or a code with msg. */
int gw__jobs_add_ref(gw_jobs_t *js, gw__batch_t *j, const char *name, int src, const char *ref,
                     char *msg, size_t cap);

/* Ends an upload: once every input is stored, writes the job's meta (what makes it a job
 * after a restart), puts it in the registry with `bytes` pending, starts dispatching and calls
 * cb(arg, 0). On a store failure cb gets PROTO_ESTORE (PROTO_ESHUTDOWN when the store is
 * closing) with a message and the job is still the caller's (gw__jobs_abort). cb runs
 * exactly once, normally later (before this returns only when the meta cannot even be queued:
 * out of memory, shutdown). */
void gw__jobs_commit(gw_jobs_t *js, gw__batch_t *j, size_t bytes, gw__jobs_commit_cb cb, void *arg);

/* Drops a job that was never committed (or whose commit failed), and its objects. */
void gw__jobs_abort(gw_jobs_t *js, gw__batch_t *j);

/* Cancels a queued or running job: nothing more is dispatched, also after a restart. */
void gw__jobs_cancel(gw_jobs_t *js, gw__batch_t *j);

/* Drops every job, then deletes every object under jobs/ that is not a live job's (one being
 * uploaded meanwhile keeps its own) and calls cb(arg, 0, NULL) (or a store error); nothing
 * outside jobs/ID/ (ID a job's id) is ever deleted. Returns how many jobs there were, or -1
 * while the start-up load runs (cb is not called); cb may run before this returns (a store
 * that refuses the listing at once). */
int gw__jobs_reset(gw_jobs_t *js, gw__jobs_reset_cb cb, void *arg);

/* ---- jobs_store.c: jobs/ID/{meta, in/N, res/N, out/N.jpg, cancelled} in the jobs store ---- */

/* Opens the jobs store (jobs_store, else dir:JOBS_DIR). 0 or PROTO_ECONFIG with err. */
int gw__jobs_open_store(gw_jobs_t *js, gw_fetch_t *http, char *err, size_t cap);

/* Writes jobs/ID/rel (data copied). Fire and forget: a failure is logged, the store's
 * state is what a restart sees. What = GW__PUT_* says what to do when it lands. */
enum { GW__PUT_PLAIN, GW__PUT_INPUT, GW__PUT_META, GW__PUT_KEPT };
int gw__jobs_put(gw_jobs_t *js, gw__batch_t *j, int what, int idx, const char *rel,
                 const void *data, size_t len);

/* Writes image idx's result object res/N (its state, label and JSON are set). Idempotent:
 * one object per image, written again with the same key if the image runs again. */
void gw__jobs_put_result(gw_jobs_t *js, gw__batch_t *j, int idx);

/* Writes the meta (what makes a set of objects a job). 0 or a code. */
int gw__jobs_put_meta(gw_jobs_t *js, gw__batch_t *j);

/* Reads in/N of a job: cb(arg, err, msg, data, len) as gw_store_get_cb. 0 or a code. */
int gw__jobs_get_input(gw_jobs_t *js, gw__batch_t *j, int idx, gw_store_get_cb cb, void *arg);

/* The annotated image `idx` of a done job, or the image as uploaded when no drawing came back,
 * to cb later (exactly once); 0, or a code (no callback). */
int gw__jobs_output(gw_jobs_t *js, gw__batch_t *j, int idx, gw__jobs_output_cb cb, void *arg);

/* Deletes every object under `prefix` ("jobs/" or "jobs/ID/"), but for `live` ones the keys of
 * jobs still in the registry or being uploaded, once no operation on a dead job is out; then
 * cb(arg, err, msg) if cb is set. */
void gw__jobs_purge(gw_jobs_t *js, const char *prefix, int live, gw__jobs_reset_cb cb, void *arg);

/* ---- jobs_load.c: the start-up load ---- */

/* Starts reading every job under jobs/ back (start-up), handing each to gw__jobs_adopt, then
 * gw__jobs_loaded. */
void gw__jobs_load_all(gw_jobs_t *js);

/* The longest key of a job's object: "jobs/ID/out/N.jpg" and the like. */
#define GW__JOBS_KEY_MAX 160

/* True for "jobs/ID/..." with ID a job's (never a camera named "jobs"'s frames). */
int gw__jobs_is_job_key(const char *key);

/* True for a key of a job in the registry or being uploaded. */
int gw__jobs_is_live(gw_jobs_t *js, const char *key);

/* A store operation on a dead job ended: purges waiting for them may start. */
void gw__jobs_dead_io_done(gw_jobs_t *js);

/* Closes the store: operations out are called back with UV_ECANCELED; later writes are
 * dropped. */
void gw__jobs_close_store(gw_jobs_t *js);

#endif
