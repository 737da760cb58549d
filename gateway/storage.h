/* Keeping frames and answers: the writer between the detect path and a store (store.h).
 *
 * A kept job becomes up to three writes (the input frame, the JSON answer, the annotated
 * JPEG) under keys that never collide and sort by time:
 *     CAMERA/YYYY/MM/DD/HH/CAMERA-<16-digit µs since the epoch>-<6-digit seq>.{jpg,png,json}
 * (seq: a per-process counter from a random start, so that gateways sharing a store do not
 * collide either)
 * (the annotated frame is ...-<seq>.boxes.jpg). A write never delays an answer: it is queued
 * in memory (bounded: store_queue writes, store_queue_bytes bytes) and sent by up to
 * store_concurrency requests. Beyond the queue, and whenever the store fails, writes go to the
 * spool directory (one file each, temp file + rename, bounded by spool_max_bytes) and are
 * retried with exponential backoff; spooled writes survive a restart and are sent first when
 * the store is back. When the spool is full the oldest inputs go first, then annotated
 * frames, then answers; every dropped write is counted and logged.
 *
 * Loop thread only. */
#ifndef GW_STORAGE_H
#define GW_STORAGE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "fetch.h"
#include "job.h"
#include "store.h"

typedef struct gw_storage gw_storage_t;

/* Write classes, in the order the spool drops them. */
enum { GW_STORE_INPUT = 0, GW_STORE_ANNOTATED = 1, GW_STORE_RESULT = 2, GW_STORE_NCLASS = 3 };

typedef struct {
    const char *kind; /* "none", "dir", "s3" */
    int up;           /* the last write succeeded (or none was tried) */
    uint64_t written; /* objects the store accepted */
    uint64_t failed;  /* store requests that failed (each is retried) */
    uint64_t spooled; /* writes that went to the spool */
    uint64_t dropped[GW_STORE_NCLASS];
    int queued; /* in memory, waiting */
    size_t queued_bytes;
    int inflight;
    int spool_objects;
    size_t spool_bytes;
    size_t spool_max_bytes;
    char last_error[256]; /* "" if none */
} gw_storage_stats_t;

/* A writer to the store `url` (a `store` value) spooling into spool_dir ("" = no spool).
 * With url "none", *out is NULL and 0 is returned: every function below accepts a NULL
 * storage (nothing kept, stats say "none"). Opens the store, scans the spool (start-up:
 * blocking is fine) and starts sending what it holds. 0 or PROTO_ECONFIG with err set.
 * Two storages must not share a spool_dir. */
int gw_storage_create(gw_storage_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                      gw_fetch_t *fetch, const char *url, const char *spool_dir, char *err,
                      size_t cap);

/* The url and spool_dir it was created with ("none" and "" for NULL). */
const char *gw_storage_url(const gw_storage_t *st);
const char *gw_storage_spool_dir(const gw_storage_t *st);

/* Keeps one finished, successful job as its model's store_* keys say: assigns the keys, adds
 * "stored": {"input": KEY, "result": KEY, "annotated": KEY} to `result` (the job's JSON
 * answer object), then queues copies of the bytes. Returns at once. */
void gw_storage_keep(gw_storage_t *st, const gw_job_t *job, cJSON *result);

/* As gw_storage_create, with `store` (taken: destroyed with the storage) in place of the one
 * cfg->store names: for tests, with a fake store (tests/unit/test_gw_storage.c). */
int gw__storage_create_with(gw_storage_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                            gw_store_t *store, const char *url, const char *spool_dir, char *err,
                            size_t cap);

void gw_storage_stats(const gw_storage_t *st, gw_storage_stats_t *out);

/* The store itself (for /v1/results and /v1/objects), or NULL. */
gw_store_t *gw_storage_store(gw_storage_t *st);

/* The key stem for camera `camera` at `us` µs since the epoch (the part before "-<seq>"), as
 * keep() builds it: "cam/2026/11/27/16/cam-0001764259200000000". Returns its length. */
int gw_storage_key_stem(const char *camera, uint64_t us, char *out, size_t cap);

/* Shutdown: cancels the store's requests and writes everything still in memory to the
 * spool (blocking: the loop is exiting), then frees what it can; work items still on the
 * threadpool finish on the next uv_run. */
void gw_storage_destroy(gw_storage_t *st);

#endif
