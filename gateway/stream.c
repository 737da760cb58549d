/* See stream.h. One sub_t per open stream: its camera watch, its connection, and what it
 * dropped; freed when the connection goes (on_conn_close). */
#include "stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "err.h"
#include "http.h"
#include "response.h"

#define BOUNDARY "framegate"

typedef struct {
    gw_camera_watch_t w; /* first: a watch pointer is a sub pointer */
    gw_stream_ctx_t *ctx;
    gw_conn_t *conn;
    /* SSE replay, before the head is out: events appended to one initial body */
    char *buf;
    size_t len, cap;
    int overflow;
} sub_t;

/* The camera the route's '*' names (raw, not percent-decoded), or 0 after a 404. */
static int camera_of(gw_stream_ctx_t *ctx, gw_req_t *r)
{
    char name[PROTO_CAMERA_MAX + 1];
    int slot = 0;
    if (r->param != NULL && r->param_len < sizeof name) {
        memcpy(name, r->param, r->param_len);
        name[r->param_len] = '\0';
        slot = gw_cameras_find(ctx->cams, name);
    }
    if (slot == 0)
        gw_respond_error(r, 404, "unknown_camera", "no camera by that name has sent a frame");
    return slot;
}

static void on_conn_close(void *arg)
{
    sub_t *s = arg;
    gw_cameras_unwatch(s->ctx->cams, &s->w);
    free(s->buf);
    free(s);
}

/* ---- Server-Sent Events ---- */

static int sse_format(char *out, size_t cap, uint64_t seq, const char *json, size_t len)
{
    return snprintf(out, cap, "id: %" PRIu64 "\nevent: result\ndata: %.*s\n\n", seq, (int)len,
                    json);
}

/* Replay: appended to the initial body, bounded like the socket queue. */
static void on_replay(gw_camera_watch_t *w, uint64_t seq, const char *json, size_t len,
                      const uint8_t *jpeg, size_t jpeg_len)
{
    sub_t *s = (sub_t *)w;
    (void)jpeg;
    (void)jpeg_len;
    size_t need = len + 64;
    if (s->overflow || s->len + need > GW_STREAM_MAX_QUEUED) {
        s->overflow = 1;
        return;
    }
    if (s->len + need > s->cap) {
        size_t cap = (s->len + need) * 2;
        char *nb = realloc(s->buf, cap);
        if (nb == NULL) {
            s->overflow = 1;
            return;
        }
        s->buf = nb;
        s->cap = cap;
    }
    s->len += (size_t)sse_format(s->buf + s->len, s->cap - s->len, seq, json, len);
}

static void on_sse_event(gw_camera_watch_t *w, uint64_t seq, const char *json, size_t len,
                         const uint8_t *jpeg, size_t jpeg_len)
{
    sub_t *s = (sub_t *)w;
    (void)jpeg;
    (void)jpeg_len;
    char *msg = malloc(len + 64);
    if (msg == NULL) {
        s->ctx->dropped++;
        return;
    }
    int n = sse_format(msg, len + 64, seq, json, len);
    if (gw_stream_write(s->conn, msg, (size_t)n, GW_STREAM_MAX_QUEUED) != 0)
        s->ctx->dropped++; /* a slow reader: it misses this event, the seq says so */
    free(msg);
}

void gw_stream_events(void *arg, gw_req_t *r)
{
    gw_stream_ctx_t *ctx = arg;
    int slot = camera_of(ctx, r);
    if (slot == 0)
        return;
    /* Resume after Last-Event-ID (or ?last_event_id= for clients that cannot set it). */
    uint64_t after = 0;
    int resume = 0;
    const char *q = strstr(r->query, "last_event_id=");
    const char *id = r->last_event_id[0] ? r->last_event_id : q ? q + 14 : NULL;
    if (id != NULL) {
        char *end;
        unsigned long long v = strtoull(id, &end, 10);
        if (end != id) {
            after = v;
            resume = 1;
        }
    }
    sub_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        gw_respond_error(r, 503, "overloaded", "out of memory");
        return;
    }
    s->ctx = ctx;
    s->w.slot = slot;
    s->w.on_event = on_replay;
    s->cap = 4096;
    if ((s->buf = malloc(s->cap)) == NULL) {
        free(s);
        gw_respond_error(r, 503, "overloaded", "out of memory");
        return;
    }
    s->len = (size_t)snprintf(s->buf, s->cap, "retry: 1000\n\n");
    if (resume) {
        int gap = 0;
        gw_cameras_replay(ctx->cams, &s->w, after, &gap);
        if (gap || s->overflow)
            ctx->dropped++;
    }
    s->w.on_event = on_sse_event;
    char *body = s->buf;
    size_t len = s->len;
    s->buf = NULL;
    s->len = s->cap = 0;
    gw_cameras_watch(ctx->cams, slot, &s->w);
    s->conn = gw_respond_stream(r, "text/event-stream", "X-Accel-Buffering: no\r\n", body, len,
                                on_conn_close, s);
    if (s->conn == NULL) {
        gw_cameras_unwatch(ctx->cams, &s->w);
        free(s);
    }
}

/* ---- MJPEG ---- */

/* One part, head and frame in one write: a slow reader loses whole frames, never half. */
static int mjpeg_part(sub_t *s, uint64_t seq, const uint8_t *jpeg, size_t len)
{
    char head[160];
    int n = snprintf(head, sizeof head,
                     "--" BOUNDARY "\r\nContent-Type: image/jpeg\r\nContent-Length: %zu\r\n"
                     "X-Framegate-Seq: %" PRIu64 "\r\n\r\n",
                     len, seq);
    char *msg = malloc((size_t)n + len + 2);
    if (msg == NULL)
        return PROTO_ENOMEM;
    memcpy(msg, head, (size_t)n);
    memcpy(msg + n, jpeg, len);
    memcpy(msg + n + len, "\r\n", 2);
    int rv = gw_stream_write(s->conn, msg, (size_t)n + len + 2, GW_STREAM_MAX_QUEUED);
    free(msg);
    return rv;
}

static void on_mjpeg_event(gw_camera_watch_t *w, uint64_t seq, const char *json, size_t len,
                           const uint8_t *jpeg, size_t jpeg_len)
{
    sub_t *s = (sub_t *)w;
    (void)json;
    (void)len;
    if (jpeg == NULL || jpeg_len == 0)
        return;
    if (mjpeg_part(s, seq, jpeg, jpeg_len) != 0)
        s->ctx->dropped++;
}

void gw_stream_mjpeg(void *arg, gw_req_t *r)
{
    gw_stream_ctx_t *ctx = arg;
    int slot = camera_of(ctx, r);
    if (slot == 0)
        return;
    sub_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        gw_respond_error(r, 503, "overloaded", "out of memory");
        return;
    }
    s->ctx = ctx;
    s->w.on_event = on_mjpeg_event;
    s->w.wants_jpeg = 1;
    /* The latest frame first, so a viewer sees a picture before the next answer. */
    size_t len = 0;
    int annotated;
    uint64_t seq;
    const uint8_t *jpeg =
        gw_cameras_latest(ctx->cams, slot, uv_now(gw_req_loop(r)), &len, &annotated, &seq);
    char *body = NULL, head[160];
    size_t blen = 0;
    if (jpeg != NULL) {
        int n = snprintf(head, sizeof head,
                         "--" BOUNDARY "\r\nContent-Type: image/jpeg\r\nContent-Length: %zu\r\n"
                         "X-Framegate-Seq: %" PRIu64 "\r\n\r\n",
                         len, seq);
        if ((body = malloc((size_t)n + len + 2)) != NULL) {
            memcpy(body, head, (size_t)n);
            memcpy(body + n, jpeg, len);
            memcpy(body + n + len, "\r\n", 2);
            blen = (size_t)n + len + 2;
        }
    }
    gw_cameras_watch(ctx->cams, slot, &s->w);
    s->conn = gw_respond_stream(r, "multipart/x-mixed-replace; boundary=" BOUNDARY, NULL, body,
                                blen, on_conn_close, s);
    if (s->conn == NULL) {
        gw_cameras_unwatch(ctx->cams, &s->w);
        free(s);
    }
}

/* ---- latest.jpg ---- */

void gw_stream_latest(void *arg, gw_req_t *r)
{
    gw_stream_ctx_t *ctx = arg;
    int slot = camera_of(ctx, r);
    if (slot == 0)
        return;
    size_t len = 0;
    int annotated;
    uint64_t seq;
    const uint8_t *jpeg =
        gw_cameras_latest(ctx->cams, slot, uv_now(gw_req_loop(r)), &len, &annotated, &seq);
    if (jpeg == NULL) {
        gw_respond_error(r, 404, "no_frame", "the camera has no answered frame yet");
        return;
    }
    char *body = malloc(len);
    if (body == NULL) {
        gw_respond_error(r, 503, "overloaded", "out of memory");
        return;
    }
    memcpy(body, jpeg, len);
    char extra[128];
    /* Annotated once the backends draw for this camera (asking turns that on for a while). */
    snprintf(extra, sizeof extra,
             "Cache-Control: no-cache\r\nX-Framegate-Seq: %" PRIu64
             "\r\nX-Framegate-Annotated: %s\r\n",
             seq, annotated ? "true" : "false");
    gw_respond(r, 200, "image/jpeg", body, len, extra);
}
