/* A job: one image on its way to a backend and back. The HTTP front creates one per image
 * (a multipart upload makes several), the pool runs it, and calls job->on_done exactly
 * once, on the loop thread, never before gw_pool_submit() has returned.
 *
 * Ownership: the HTTP front owns the job struct and the image bytes; both must stay valid
 * until on_done has run (the connection holds a reference while any job is out). Once
 * on_done has run, the job's result fields belong to the front; gw_job_fini() frees them. */
#ifndef GW_JOB_H
#define GW_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "msg.h"

typedef struct gw_job gw_job_t;
typedef void (*gw_job_cb)(gw_job_t *job);

/* What a client asked for with a frame: parsed once by the HTTP layer (query string, JSON
 * fields, multipart parts), then carried unchanged by the job to the wire (proto_req_t).
 * A new option is one field here, one line in the parser and one in the encoder. */
typedef struct {
    char camera[PROTO_CAMERA_MAX + 1]; /* "" = none */
    int64_t ts_ms;                     /* the client's timestamp; 0 = none */
    float threshold;                   /* 0 = the model's */
    uint8_t output;                    /* proto_output_t */
    uint16_t top_k;                    /* 0 = the model's */
    char model[GW_MODEL_NAME_MAX];     /* "" = the default model */
} gw_req_opts_t;

struct gw_job {
    /* ---- input, set by the front before submit ---- */
    const uint8_t *image;
    size_t image_len;
    gw_req_opts_t opts;
    gw_job_cb on_done;
    void *data; /* the front's own pointer */
    /* Live cameras (camera.h), set by the app before submit: the camera's slot (1..max_cameras;
     * 0 = none or beyond max_cameras: the plain FIFO), its sequence number at arrival (0 =
     * none), whether it is part of a batch, and whether the backend should also draw the boxes (output JPEG) for the
     * camera's watchers. */
    int cam;
    uint64_t seq;
    int annotate;
    int batch; /* one of several images of one request: FIFO, never superseded or skipped */
    int bulk;  /* a batch job's frame (jobs.h): waits behind every live frame (fair.h) */

    /* ---- result, valid in on_done ---- */
    int err;       /* 0, or a negative code from proto/err.h (the HTTP layer maps it) */
    char error_msg[PROTO_ERROR_MAX + 64]; /* human text for err, "" on success */
    char backend[80];                     /* name of the backend that answered, "" if none */
    char model_name[GW_MODEL_NAME_MAX];
    uint64_t id; /* request id sent to the backend */
    uint64_t superseded_by; /* err PROTO_ESUPERSEDED: the seq of the newer frame */
    double queue_ms, infer_ms, total_ms;
    int attempts;
    proto_rep_t rep;  /* decoded reply; views into rep_buf */
    uint8_t *rep_buf; /* owned by the job after on_done; freed by gw_job_fini */
    size_t rep_len;

    /* ---- pool-private ---- */
    uint64_t arrival_ms, dispatch_ms, deadline_ms;
    int state;
    void *priv;
    gw_job_t *next, *prev;
};

/* Zeroes a job before use. */
void gw_job_init(gw_job_t *job);

/* Frees what the pool attached to a finished job (the reply buffer). */
void gw_job_fini(gw_job_t *job);

#endif
