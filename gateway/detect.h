/* The detect handler: POST /v1/detect and POST /v1/models/NAME/detect. Parses the request's
 * options (query string, JSON fields, multipart parts) once into gw_req_opts_t, turns each
 * image into a gw_job_t, submits the jobs and answers when the last one is back (JSON, or
 * the backend's text/JPEG payload). A jobs API, stored results or a camera stream reuse the
 * parsers and gw_detect_job_json. Loop thread only. */
#ifndef GW_DETECT_H
#define GW_DETECT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "job.h"
#include "server.h"

#define GW_DETECT_MAX_IMAGES 16 /* image parts in one multipart upload */

/* A frame fetched from a URL: the bytes (malloc'd, now the callee's) or err (proto/err.h)
 * with a message. Loop thread. */
typedef void (*gw_detect_fetch_cb)(void *arg, int err, const char *msg, uint8_t *data,
                                   size_t len);

/* What the detect routes need: a plain value, the ctx of their gw_route_t. */
typedef struct {
    /* Starts a job. Returns 0 (job->on_done will run later, never before submit returns) or a
     * negative code from proto/err.h, in which case on_done never runs. A finished job
     * reports its own code in job->err; status.h maps codes to HTTP. */
    int (*submit)(void *ctx, gw_job_t *job);
    void *ctx;
    /* Tests only (NULL otherwise): runs on the libuv threadpool thread that is about to parse
     * and decode a large JSON body, so a test can hold it there and see the loop go on. */
    void (*on_work)(void *ctx);
    /* Optional (NULL: JSON "url"/"urls" are refused). Fetches a frame given by URL; cb runs
     * later, never before fetch returns. 0, or a code (cb never runs). */
    int (*fetch)(void *ctx, const char *url, gw_detect_fetch_cb cb, void *arg);
    /* Optional (NULL: nothing kept). Hands a successful job to the store once its JSON
     * answer object is built; may add a "stored" member to `result`. Returns at once. */
    void (*keep)(void *ctx, const gw_job_t *job, cJSON *result);
} gw_detect_t;

/* JSON bodies from this size on are parsed and decoded on the libuv threadpool, not on the
 * loop (a 16 MB base64 image would stall every connection for a fraction of a second). */
#define GW_DETECT_JSON_INLINE_MAX (64u << 10)

/* The route handler; `detect` is a gw_detect_t that outlives the server. A route whose
 * pattern has a '*' takes the model name from what it matched. */
void gw_detect_handle(void *detect, gw_req_t *req);

/* Applies a query string ("camera=x&ts=1", not yet decoded) to *opts; unknown keys are
 * ignored, `model` too when model_fixed. 0, or -1 with a message in err. */
int gw_detect_parse_query(const char *query, gw_req_opts_t *opts, int model_fixed, char *err,
                          size_t cap);

/* One finished job as the JSON object of an answer (its result, or its error). */
cJSON *gw_detect_job_json(const gw_job_t *job);

#endif
