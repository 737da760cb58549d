/* The camera streams out of the HTTP layer: GET /v1/cameras/ID/events (Server-Sent Events,
 * one event per answered frame in seq order, Last-Event-ID resume),
 * GET /v1/cameras/ID/stream.mjpeg (the annotated frames as multipart/x-mixed-replace) and
 * GET /v1/cameras/ID/latest.jpg. A stream is a camera watch (camera.h) writing to a
 * streaming answer (http.h); a reader that does not keep up loses events or frames (each
 * written whole or not at all), the gateway never buffers more than
 * GW_STREAM_MAX_QUEUED bytes for it. Loop thread only. */
#ifndef GW_STREAM_H
#define GW_STREAM_H

#include "camera.h"
#include "server.h"

#define GW_STREAM_MAX_QUEUED (1u << 20) /* bytes waiting in one stream's socket */

/* The ctx of the camera stream routes: a plain value that outlives the server. */
typedef struct {
    gw_cameras_t *cams;
    uint64_t dropped; /* events or frames not sent to slow readers, all streams */
} gw_stream_ctx_t;

/* Route handlers; `ctx` is a gw_stream_ctx_t, the camera id is what the route's '*' matched
 * (unknown -> 404). */
void gw_stream_events(void *ctx, gw_req_t *req);
void gw_stream_mjpeg(void *ctx, gw_req_t *req);
void gw_stream_latest(void *ctx, gw_req_t *req);

#endif
