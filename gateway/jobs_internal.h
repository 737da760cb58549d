/* What jobs.c (the registry: its files, restart, dispatch to the pools) and jobs_http.c (the
 * routes: uploads, JSON answers, cancel, reset) share. Not a public interface: loop thread
 * only. jobs_http.c never touches a file; every change to a job's state goes through a
 * gw__jobs_* function here, which keeps the files and the counters in step. */
#ifndef GW_JOBS_INTERNAL_H
#define GW_JOBS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "jobs.h"

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
    char *ref;    /* the URL or key, malloc'd; NULL for uploaded bytes */
    char *result; /* the result's JSON (done or failed), malloc'd */
} gw__img_t;

typedef struct gw__batch gw__batch_t;
struct gw__batch {
    gw__batch_t *next;
    char id[32];
    char model[GW_MODEL_NAME_MAX];
    int state;
    int n, ndone, nfailed, nout;
    int cap;                          /* imgs allocated (while uploading) */
    int cursor;                       /* no pending image before it */
    int dead;                         /* reset: freed when its last frame is back */
    uint64_t created_ms, finished_ms; /* loop clock */
    uint64_t created_unix_ms;         /* for the meta */
    gw__img_t *imgs;
};

struct gw_jobs {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    gw_jobs_io_t io;
    char dir[GW_CONFIG_STR_MAX + 16];
    gw__batch_t *head; /* in creation order (ids sort the same way) */
    int njobs;
    int out;      /* frames in the pools */
    int window;   /* at most this many out: the pools' queues stay free for live frames */
    size_t bytes; /* bytes of images not yet done */
    int started, stopping;
    unsigned counter;
    uv_timer_t retry;
};

/* ---- jobs.c ---- */

/* Frees a job's memory (not its files). */
void gw__batch_free(gw__batch_t *j);

/* Takes a job read back at start-up into the registry (jobs_files.c calls it). */
void gw__jobs_adopt(gw_jobs_t *js, gw__batch_t *j);

/* The job with this id, or NULL. */
gw__batch_t *gw__jobs_find(gw_jobs_t *js, const char *id, size_t len);

/* Makes room for one more job under max_jobs by dropping the oldest finished one (done or
 * cancelled, nothing out). 0, or -1 when every job is still running. */
int gw__jobs_evict(gw_jobs_t *js);

/* A new, empty job for `model` ("" = default) with its directory made; not yet in the
 * registry. NULL with *err set (PROTO_ENOMEM, PROTO_ESTORE with msg) on failure. */
gw__batch_t *gw__jobs_begin(gw_jobs_t *js, const char *model, char *msg, size_t cap, int *err);

/* Appends one image to a job being uploaded: checks max_job_images and max_job_bytes (with
 * `uploading` bytes already taken by this upload), keeps the bytes. 0, or a code with msg. */
int gw__jobs_add(gw_jobs_t *js, gw__batch_t *j, size_t uploading, const char *name,
                 const uint8_t *data, size_t len, char *msg, size_t cap);

/* Appends one image given as a URL or a key (src GW__SRC_URL / GW__SRC_KEY): checks
 * max_job_images and the reference's form (http(s) URL of at most 2 KB without controls or
 * spaces; gw_store_key_valid). Fetched when dispatched. 0, or a code with msg. */
int gw__jobs_add_ref(gw_jobs_t *js, gw__batch_t *j, const char *name, int src, const char *ref,
                     char *msg, size_t cap);

/* Ends an upload: writes the job's meta (what makes it a job after a restart), puts it in the
 * registry with `bytes` pending and starts dispatching. 0, or PROTO_ESTORE / PROTO_ENOMEM with
 * msg; on error the job is still the caller's (gw__jobs_abort). */
int gw__jobs_commit(gw_jobs_t *js, gw__batch_t *j, size_t bytes, char *msg, size_t cap);

/* Drops a job that was never committed, and its files. */
void gw__jobs_abort(gw_jobs_t *js, gw__batch_t *j);

/* ---- jobs_files.c: DIR/ID/{meta, in/N, results, out/N.jpg, cancelled} ---- */

/* DIR/ID/rel ("" = the job's directory) into out. */
void gw__jobs_path(const gw_jobs_t *js, const gw__batch_t *j, const char *rel, char *out,
                   size_t cap);
/* Makes the jobs directory (and its parents), or a job's in/ and out/. 0 or -1 (errno). */
int gw__jobs_mkroot(const char *dir);
int gw__jobs_mkdir(const gw_jobs_t *js, const gw__batch_t *j);
/* Writes DIR/ID/rel whole (temporary name, then rename). 0 or -1 (errno). */
int gw__jobs_write(const gw_jobs_t *js, const gw__batch_t *j, const char *rel, const void *data,
                   size_t len);
/* DIR/ID/rel if it exists and holds at most max bytes (malloc'd, NUL-terminated), or NULL. */
uint8_t *gw__jobs_read(const gw_jobs_t *js, const gw__batch_t *j, const char *rel, size_t max,
                       size_t *len);
/* Removes a job's directory and everything in it. */
void gw__jobs_remove(const gw_jobs_t *js, const gw__batch_t *j);
/* Appends image idx's result line (its state, label and JSON are set). */
void gw__jobs_append_result(const gw_jobs_t *js, const gw__batch_t *j, int idx);
/* Writes the meta (what makes a directory a job). 0 or -1 (errno). */
int gw__jobs_write_meta(const gw_jobs_t *js, const gw__batch_t *j);
/* Reads every job under DIR back (start-up), handing each to gw__jobs_adopt. */
void gw__jobs_load_all(gw_jobs_t *js);

/* The annotated image `idx` of a done job, or the image as uploaded when no drawing came back
 * (malloc'd, *len set), or NULL. */
uint8_t *gw__jobs_output(gw_jobs_t *js, const gw__batch_t *j, int idx, size_t *len);

/* Cancels a queued or running job: nothing more is dispatched, also after a restart. */
void gw__jobs_cancel(gw_jobs_t *js, gw__batch_t *j);

/* Drops every job and its files (frames still out are let go when they come back). Returns
 * how many jobs there were. */
int gw__jobs_reset(gw_jobs_t *js);

#endif
