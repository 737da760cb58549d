/* Batch jobs: many images uploaded at once, run behind live traffic, every result kept.
 *
 *   POST   /v1/jobs[?model=]     multipart images, or JSON {"images": [base64 | {"name",
 *                                "image"} | {"url"[, "name"]} | {"key"[, "name"]}], "urls":
 *                                [URL], "keys": [KEY]}: 202 {"id", "images"} at once
 *   GET    /v1/jobs              every job with its state and counts
 *   GET    /v1/jobs/ID[?offset=&limit=&format=text]
 *                                state (queued, running, done, cancelled), counts (done,
 *                                failed, pending) and results in upload order; format=text
 *                                gives `name,label` lines
 *   GET    /v1/jobs/ID/images/N  the annotated JPEG of image N
 *   DELETE /v1/jobs/ID           cancels: nothing more is dispatched
 *   POST   /v1/reset             drops every job and deletes its objects (admin_token when
 *                                set): answered once they are deleted
 *
 * A URL (under the fetch policy of fetch.h: http/https, private addresses refused unless
 * fetch_allow lists them) or a key of the job's model's store is fetched when its image is
 * dispatched, within the same window, and its bytes kept as the job's in/N from then on;
 * a fetch that fails is that image's result (failed, with the fetch's error).
 *
 * Frames go to the pool as the lowest class (job->bulk, fair.h): at most a small window of
 * them waits there at once, live frames always go first, and a frame refused or expired for
 * want of capacity goes back to pending (only a backend's verdict is a result).
 *
 * Durable: a job's images and its results are objects in the jobs store (store.h; jobs_store,
 * by default the local directory jobs_dir): jobs/ID/meta, in/N, res/N (one object per
 * finished image), out/N.jpg, cancelled. An upload is answered 202 only once its images and
 * its meta are stored. A result is written once per image key and read back by index at
 * start-up, so a gateway killed mid-job resumes where it stopped: an image in flight at the
 * kill (or whose result write had not landed) is sent again, and no index is ever counted
 * twice. POST /v1/reset deletes what is under jobs/ and nothing else.
 * Bounded: max_jobs, max_job_images, max_job_bytes (bytes of uploaded images not yet done;
 * images by URL or key are not counted: at most a window of them is fetched at once).
 * Loop thread only. */
#ifndef GW_JOBS_H
#define GW_JOBS_H

#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "detect.h"
#include "fetch.h"
#include "http.h"
#include "job.h"
#include "storage.h"

typedef struct gw_jobs gw_jobs_t;

/* What the registry needs from the app; every member is called on the loop thread, and
 * everything outlives the registry (copied by gw_jobs_create). */
typedef struct {
    /* Queues one frame (app_submit: same contract as gw_detect_t.submit). */
    int (*submit)(void *ctx, gw_job_t *job);
    /* Fetches an image given by URL under the fetch policy (app_fetch: same contract as
     * gw_detect_t.fetch). NULL: JSON "url" items are refused. */
    int (*fetch)(void *ctx, const char *url, gw_detect_fetch_cb cb, void *arg);
    /* The storage of model `model` ("" = default), NULL when it keeps nothing (app_storage_of:
     * same contract as gw_results_t.storage_of): where a job's "key" items are read from.
     * NULL: "key" items are refused. */
    int (*storage_of)(void *ctx, const char *model, gw_storage_t **out);
    void *ctx;
    /* The loop's HTTP client, for a jobs_store on s3:// or gs:// (NULL: dir: only). */
    gw_fetch_t *http;
} gw_jobs_io_t;

/* Creates the registry on its store (cfg->jobs_store, else dir:JOBS_DIR, created if missing)
 * and starts reading every job found there back (on the loop, once it runs); unfinished ones
 * resume once that is done and gw_jobs_start has run. 0, or PROTO_ECONFIG with a message
 * naming jobs_store or jobs_dir. */
int gw_jobs_create(gw_jobs_t **out, uv_loop_t *loop, const gw_config_t *cfg, const gw_jobs_io_t *io,
                   char *err, size_t cap);

/* Starts dispatching (after the pools are started). */
void gw_jobs_start(gw_jobs_t *jobs);

/* Stops dispatching: frames still out come back (the pools answer them) and stay pending on
 * disk for the next start. Call before the pools are destroyed. */
void gw_jobs_stop(gw_jobs_t *jobs);

/* Closes the jobs store (before the HTTP client goes): operations still out end with
 * UV_ECANCELED (an upload not yet stored is answered 503; a result not yet written makes its
 * image run again after the restart). */
void gw_jobs_close(gw_jobs_t *jobs);

/* Frees everything; every frame must be back (after the pools are destroyed). */
void gw_jobs_destroy(gw_jobs_t *jobs);

/* Frames of unfinished, uncancelled jobs for `model` (pending + in flight); a job naming no
 * model counts for the default one. The autoscaler's demand. */
int gw_jobs_pending(const gw_jobs_t *jobs, const char *model, int is_default);

/* Route handlers; `jobs` is the gw_jobs_t. */
void gw_jobs_on_create(void *jobs, gw_req_t *req);
void gw_jobs_on_list(void *jobs, gw_req_t *req);
void gw_jobs_on_get(void *jobs, gw_req_t *req);    /* GET /v1/jobs/ID[/images/N] */
void gw_jobs_on_delete(void *jobs, gw_req_t *req); /* DELETE /v1/jobs/ID */
void gw_jobs_on_reset(void *jobs, gw_req_t *req);

#endif
