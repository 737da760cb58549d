/* The HTTP/1.1 front. One gw_conn (conn_t) per client connection embeds its uv_tcp_t,
 * llhttp_t and timer. Requests are kept in a per-connection pipeline in arrival order; each
 * becomes ready when its answer is built (at once for errors and GETs, when its jobs finish
 * for detect), and answers leave strictly from the head of the pipeline.
 *
 * Lifetime: a connection holds one reference for itself and one per job out at the
 * dispatcher; it is freed when the handles are closed and the last job has come back, so a
 * client that hangs up never leaves a dangling job. */
#include "server.h"

#include <ctype.h>
#include <errno.h>
#include <llhttp.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "body.h"
#include "err.h"
#include "log.h"
#include "status.h"

#define MAX_PATH 1024
#define MAX_IMAGES 16 /* image parts in one multipart upload */
#define LINGER_MS 1000

typedef struct conn conn_t;
typedef struct req req_t;

struct req {
    conn_t *conn;
    req_t *next;
    int method;
    char url[MAX_PATH];
    size_t url_len;
    char path[MAX_PATH];
    char query[MAX_PATH];
    char content_type[256];
    int expect_continue;
    int keep_alive;
    uint8_t *body;
    size_t body_len, body_cap;
    uint8_t *decoded; /* base64-decoded image (JSON uploads) */
    gw_job_t *jobs;   /* &one, or a malloc'd array for multipart */
    gw_job_t one;
    int njobs, jobs_cap, pending;
    int model_from_path;
    int continued; /* "100 Continue" sent */
    int multipart;
    int submit_error;
    const char *route;
    uint64_t start_ns;
    int ready;
    int close_after;
    char resp_head[512]; /* status line and headers */
    size_t resp_head_len;
    char *resp; /* body, malloc'd; handed to the write request */
    size_t resp_len;
    gw_req_opts_t opts; /* query/JSON/multipart options, copied into each job */
};

enum { PH_IDLE, PH_HEADERS, PH_BODY };

struct conn {
    uv_tcp_t tcp; /* first: a handle pointer is a conn pointer */
    uv_timer_t timer;
    llhttp_t parser;
    gw_server_t *srv;
    int refs;
    int closing;
    int handles_open;
    int fatal;     /* stop parsing: the last queued answer closes the connection */
    int rejecting; /* over max_connections: one canned 503 then close */
    int lingering;
    int phase;
    req_t *head, *tail, *cur;
    int nreqs;
    size_t header_bytes;
    char field[64];
    size_t field_len;
    int field_overflow;
    int capture;      /* 0 none, 1 content-type, 2 expect */
    uint8_t *pending; /* input left unparsed while the pipeline was full */
    size_t pending_len;
    int paused;
    int parsing;  /* inside process_input: flush must not re-enter the parser */
    int eof;      /* the client half-closed: answer what was asked, then close */
    req_t *spare; /* one recycled request: keep-alive traffic allocates none */
    struct write *spare_wr;
    conn_t *next, *prev;
};

struct gw_server {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    const gw_server_ops_t *ops;
    void *ctx;
    uv_tcp_t listener;
    int listening;
    int stopping;
    int drained_sent;
    int nconns;
    conn_t *conns;
    llhttp_settings_t settings;
    uint64_t next_req;
    int destroying;
    char rbuf[64 << 10];
};

static void conn_close(conn_t *c);
static void flush(conn_t *c);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void process_input(conn_t *c, const char *data, size_t len);

/* ---- responses ---- */

/* The metrics route of a request answered before routing (timeouts, limits, bad HTTP). */
static const char *route_of_url(const char *url)
{
    size_t n = strcspn(url, "?");
    static const struct {
        const char *path, *route;
    } fixed[] = {{"/v1/detect", "detect"}, {"/healthz", "healthz"},      {"/readyz", "readyz"},
                 {"/metrics", "metrics"},  {"/v1/backends", "backends"}, {"/v1/models", "models"}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (strlen(fixed[i].path) == n && strncmp(url, fixed[i].path, n) == 0)
            return fixed[i].route;
    }
    if (n > 18 && strncmp(url, "/v1/models/", 11) == 0 && strncmp(url + n - 7, "/detect", 7) == 0)
        return "detect";
    return "other";
}

/* Builds the whole response of `r` (head + body) and marks it ready; takes `body` (malloc'd)
 * or copies nothing when body is NULL. extra: additional header lines ending in CRLF. */
static void respond(req_t *r, int status, const char *ctype, char *body, size_t len,
                    const char *extra)
{
    conn_t *c = r->conn;
    gw_server_t *srv = c->srv;
    if (r->ready) {
        free(body);
        return;
    }
    /* While stopping, the connection closes after the last answer it owes. */
    int last = r->next == NULL && c->cur == NULL && c->pending == NULL;
    if (body == NULL)
        len = 0;
    int close = r->close_after || !r->keep_alive || (srv->stopping && last);
    int n = snprintf(r->resp_head, sizeof r->resp_head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: %s\r\n%s\r\n",
                     status, gw_status_reason(status), ctype, len, close ? "close" : "keep-alive",
                     extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof r->resp_head) {
        /* Only a getter's absurd content type can get here; the answer would be cut. */
        free(body);
        body = NULL;
        len = 0;
        n = snprintf(r->resp_head, sizeof r->resp_head,
                     "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                     "Content-Length: 0\r\nConnection: close\r\n\r\n");
        close = 1;
    }
    r->resp_head_len = (size_t)n;
    r->resp = body; /* the body is sent as a second buffer, not copied */
    r->resp_len = body != NULL ? len : 0;
    r->close_after = close;
    r->ready = 1;
    if (srv->ops->on_response) {
        double secs = (double)(uv_hrtime() - r->start_ns) / 1e9;
        srv->ops->on_response(srv->ctx, r->route ? r->route : route_of_url(r->url), status, secs);
    }
}

static char *error_json(const char *code, const char *msg, size_t *len)
{
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    *len = s ? strlen(s) : 0;
    return s;
}

static void respond_error(req_t *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void respond_error(req_t *r, int status, const char *code, const char *fmt, ...)
{
    char msg[600], extra[128] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len;
    char *body = error_json(code, msg, &len);
    if (status == 503)
        snprintf(extra, sizeof extra, "Retry-After: %d\r\n", r->conn->srv->cfg->retry_after_s);
    else if (status == 405)
        snprintf(extra, sizeof extra, "Allow: %s\r\n", strstr(r->path, "/detect") ? "POST" : "GET");
    respond(r, status, "application/json", body, len, extra);
}

/* Answers r with the error `err` (proto/err.h), its status and code from gw_status_of. */
static void respond_err(req_t *r, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void respond_err(req_t *r, int err, const char *fmt, ...)
{
    char msg[PROTO_ERROR_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gw_status_t st = gw_status_of(err);
    size_t len;
    char *body = error_json(st.code, msg, &len);
    char extra[64] = "";
    if (st.retry_after)
        snprintf(extra, sizeof extra, "Retry-After: %d\r\n", r->conn->srv->cfg->retry_after_s);
    respond(r, st.status, "application/json", body, len, extra);
}

/* ---- connection lifetime ---- */

static void free_jobs(req_t *r)
{
    for (int i = 0; i < r->njobs; i++)
        gw_job_fini(&r->jobs[i]);
    if (r->jobs != &r->one)
        free(r->jobs);
    r->jobs = NULL;
    r->njobs = 0;
}

/* A zeroed request for c, the recycled one if there is one. */
static req_t *req_get(conn_t *c)
{
    req_t *r = c->spare;
    if (r != NULL) {
        c->spare = NULL;
        memset(r, 0, sizeof *r);
    } else if ((r = calloc(1, sizeof *r)) == NULL) {
        return NULL;
    }
    r->conn = c;
    r->start_ns = uv_hrtime();
    return r;
}

/* Frees what r owns and keeps r itself for the next request (or frees it). */
static void req_put(conn_t *c, req_t *r)
{
    free_jobs(r);
    free(r->body);
    free(r->decoded);
    free(r->resp);
    if (c->spare == NULL) {
        c->spare = r;
    } else {
        free(r);
    }
}

static void conn_release(conn_t *c)
{
    if (--c->refs > 0)
        return;
    gw_server_t *srv = c->srv;
    req_t *r = c->head;
    while (r != NULL) {
        req_t *next = r->next;
        req_put(c, r);
        r = next;
    }
    free(c->spare);
    free(c->spare_wr);
    free(c->pending);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    free(c);
    if (srv->stopping && srv->nconns == 0 && !srv->drained_sent && !srv->destroying) {
        srv->drained_sent = 1;
        if (srv->ops->on_drained)
            srv->ops->on_drained(srv->ctx);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->handles_open == 0)
        conn_release(c);
}

static void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_timer_stop(&c->timer);
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void close_gracefully(conn_t *c);

/* Closes a connection that owes nothing; an answer still in the socket's write queue would
 * be cancelled by uv_close, so then it shuts down after the write instead. */
static void close_idle(conn_t *c)
{
    if (c->tcp.write_queue_size > 0)
        close_gracefully(c);
    else
        conn_close(c);
}

static void on_linger_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_linger_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread < 0)
        conn_close((conn_t *)s);
}

/* One read buffer for the whole server: libuv calls alloc then read for one read at a time
 * on the loop thread, and nothing keeps a pointer into it after on_read (bodies, headers
 * and the unparsed remainder are copied), so no read allocates. */
static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->srv->rbuf, sizeof c->srv->rbuf);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;
    (void)status;
    free(req);
    if (c->closing)
        return;
    /* Keep reading (and dropping) what the client still sends for a moment, so that it
     * receives our answer instead of a reset caused by unread data. */
    c->lingering = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_buf, on_linger_read) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_linger_timeout, LINGER_MS, 0);
}

static void close_gracefully(conn_t *c)
{
    if (c->closing || c->lingering)
        return;
    uv_shutdown_t *sd = malloc(sizeof *sd);
    c->lingering = 1;
    uv_timer_stop(&c->timer);
    if (sd == NULL) {
        conn_close(c);
        return;
    }
    sd->data = c;
    if (uv_shutdown(sd, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(sd);
        conn_close(c);
    }
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->closing || c->lingering)
        return;
    if (c->cur != NULL && c->phase != PH_IDLE) {
        /* A request that is not arriving fast enough: answer 408 and cut the client. */
        req_t *r = c->cur;
        c->cur = NULL;
        c->fatal = 1;
        r->close_after = 1;
        respond_error(r, 408, "timeout", "the request was not received within %llu ms",
                      (unsigned long long)(c->phase == PH_HEADERS ? c->srv->cfg->header_timeout_ms
                                                                  : c->srv->cfg->body_timeout_ms));
        c->phase = PH_IDLE;
        uv_read_stop((uv_stream_t *)&c->tcp);
        flush(c);
        return;
    }
    if (c->head == NULL)
        close_idle(c); /* idle keep-alive connection */
}

static void arm_idle(conn_t *c)
{
    if (c->closing || c->lingering)
        return;
    if (c->cur == NULL && c->head == NULL)
        uv_timer_start(&c->timer, on_timer, c->srv->cfg->idle_timeout_ms, 0);
    else if (c->cur == NULL)
        uv_timer_stop(&c->timer); /* waiting for backends: their deadline applies */
}

/* ---- writing ---- */

/* One answer on its way out: the head is copied in (the request is recycled at once), the
 * body is handed over. */
typedef struct write {
    uv_write_t w;
    conn_t *c;
    char *body;
    char head[512];
} write_t;

static write_t *write_get(conn_t *c)
{
    write_t *wr = c->spare_wr;
    if (wr != NULL)
        c->spare_wr = NULL;
    else if ((wr = malloc(sizeof *wr)) == NULL)
        return NULL;
    wr->c = c;
    wr->body = NULL;
    return wr;
}

static void write_put(conn_t *c, write_t *wr)
{
    free(wr->body);
    if (c->spare_wr == NULL)
        c->spare_wr = wr;
    else
        free(wr);
}

static void on_write(uv_write_t *w, int status)
{
    write_t *wr = (write_t *)w;
    conn_t *c = wr->c;
    write_put(c, wr);
    if (status < 0 && !c->closing)
        conn_close(c);
    conn_release(c);
}

/* Queues head + body; the write holds a reference on the connection until on_write. */
static void write_bufs(conn_t *c, write_t *wr, size_t head_len, size_t body_len)
{
    uv_buf_t b[2] = {uv_buf_init(wr->head, (unsigned)head_len),
                     uv_buf_init(wr->body, (unsigned)body_len)};
    c->refs++;
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, b, body_len > 0 ? 2 : 1, on_write) != 0) {
        c->refs--;
        write_put(c, wr);
        conn_close(c);
    }
}

/* Interim answer to "Expect: 100-continue". Queued like any answer, so it can only follow
 * the final answers of the requests before r; hence sent once r is the pipeline's head. */
static void send_continue(conn_t *c, req_t *r)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (r->continued || c->closing || c->lingering)
        return;
    r->continued = 1;
    /* The body clock starts now: until the 100 goes out the client is waiting on us. */
    uv_timer_start(&c->timer, on_timer, c->srv->cfg->body_timeout_ms, 0);
    write_t *wr = write_get(c);
    if (wr == NULL)
        return; /* the client sends the body after its own timeout anyway */
    memcpy(wr->head, cont, sizeof cont - 1);
    write_bufs(c, wr, sizeof cont - 1, 0);
}

static void try_resume(conn_t *c);

/* Writes every ready answer at the head of the pipeline, in order. */
static void flush(conn_t *c)
{
    while (c->head != NULL && c->head->ready && c->head != c->cur) {
        req_t *r = c->head;
        int close_after = r->close_after;
        c->head = r->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->nreqs--;
        if (!c->closing && !c->lingering) {
            write_t *wr = write_get(c);
            if (wr != NULL) {
                memcpy(wr->head, r->resp_head, r->resp_head_len);
                wr->body = r->resp;
                r->resp = NULL;
                write_bufs(c, wr, r->resp_head_len, r->resp_len);
            } else {
                close_after = 1; /* an answer is missing: the stream is out of step */
            }
        }
        req_put(c, r);
        if (close_after) {
            /* Whatever follows on this connection is not answered. */
            close_gracefully(c);
            return;
        }
    }
    if (c->cur != NULL && c->cur == c->head && c->cur->expect_continue && c->phase == PH_BODY)
        send_continue(c, c->cur);
    if ((c->srv->stopping || c->eof) && c->head == NULL && c->cur == NULL && c->pending == NULL) {
        close_gracefully(c);
        return;
    }
    try_resume(c);
    arm_idle(c);
}

/* ---- detect: jobs in, JSON out ---- */

static cJSON *job_json(const gw_job_t *job)
{
    cJSON *o = cJSON_CreateObject();
    if (job->err != 0) {
        gw_status_t st = gw_status_of(job->err);
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", st.code);
        cJSON_AddStringToObject(e, "message",
                                job->error_msg[0] ? job->error_msg : proto_strerror(job->err));
        cJSON_AddNumberToObject(o, "status", st.status);
        return o;
    }
    char id[32];
    snprintf(id, sizeof id, "%llu", (unsigned long long)job->id);
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "camera", job->opts.camera);
    if (job->opts.ts_ms != 0)
        cJSON_AddNumberToObject(o, "ts", (double)job->opts.ts_ms);
    cJSON_AddStringToObject(o, "backend", job->backend);
    cJSON_AddStringToObject(o, "model", job->model_name);
    cJSON_AddNumberToObject(o, "width", job->rep.width);
    cJSON_AddNumberToObject(o, "height", job->rep.height);
    /* A classifier's records are its top-k classes (most confident first, no boxes). */
    int classes = job->rep.kind == PROTO_KIND_CLASSES;
    cJSON *arr = cJSON_AddArrayToObject(o, classes ? "classes" : "detections");
    size_t cursor = 0;
    proto_det_t d;
    while (proto_rep_det_next(&job->rep, &cursor, &d)) {
        char label[PROTO_LABEL_MAX + 1];
        memcpy(label, d.label, d.label_len);
        label[d.label_len] = '\0';
        cJSON *x = cJSON_CreateObject();
        if (classes) {
            cJSON_AddNumberToObject(x, "class_id", d.class_id);
            cJSON_AddStringToObject(x, "label", label);
            cJSON_AddNumberToObject(x, "confidence", round(d.confidence * 1e4) / 1e4);
            cJSON_AddItemToArray(arr, x);
            continue;
        }
        cJSON_AddStringToObject(x, "label", label);
        cJSON_AddNumberToObject(x, "class_id", d.class_id);
        cJSON_AddNumberToObject(x, "confidence", round(d.confidence * 1e4) / 1e4);
        cJSON *b = cJSON_AddObjectToObject(x, "box");
        cJSON_AddNumberToObject(b, "x", round(d.x * 10) / 10);
        cJSON_AddNumberToObject(b, "y", round(d.y * 10) / 10);
        cJSON_AddNumberToObject(b, "w", round(d.w * 10) / 10);
        cJSON_AddNumberToObject(b, "h", round(d.h * 10) / 10);
        cJSON_AddItemToArray(arr, x);
    }
    cJSON *t = cJSON_AddObjectToObject(o, "timing");
    cJSON_AddNumberToObject(t, "queue_ms", round(job->queue_ms * 100) / 100);
    cJSON_AddNumberToObject(t, "infer_ms", round(job->infer_ms * 100) / 100);
    cJSON_AddNumberToObject(t, "total_ms", round(job->total_ms * 100) / 100);
    return o;
}

static void answer_detect(req_t *r)
{
    if (r->submit_error != 0) {
        int e = r->submit_error;
        if (e == PROTO_EQUEUEFULL)
            respond_err(r, e, "the queue is full; retry later");
        else if (e == PROTO_ENOMODEL)
            respond_err(r, e, "no model named '%s'", r->opts.model);
        else if (e == PROTO_ENOBACKEND)
            respond_err(r, e, "no backend can start right now; see /readyz for why");
        else
            respond_err(r, e, "%s", proto_strerror(e));
        return;
    }
    if (!r->multipart) {
        gw_job_t *job = &r->jobs[0];
        if (job->err != 0) {
            respond_err(r, job->err, "%s",
                        job->error_msg[0] ? job->error_msg : proto_strerror(job->err));
            return;
        }
        if (r->opts.output == PROTO_OUT_TEXT || r->opts.output == PROTO_OUT_JPEG) {
            size_t len = job->rep.payload_len;
            char *body = malloc(len + 1);
            if (body != NULL && len)
                memcpy(body, job->rep.payload, len);
            respond(r, 200,
                    r->opts.output == PROTO_OUT_TEXT ? "text/plain; charset=utf-8" : "image/jpeg", body,
                    body ? len : 0, NULL);
            return;
        }
        cJSON *o = job_json(job);
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        respond(r, 200, "application/json", s, s ? strlen(s) : 0, NULL);
        return;
    }
    /* multipart: the status is the first failure's */
    int first_err = 0;
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "results");
    for (int i = 0; i < r->njobs; i++) {
        if (first_err == 0)
            first_err = r->jobs[i].err;
        cJSON_AddItemToArray(arr, job_json(&r->jobs[i]));
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    gw_status_t st = gw_status_of(first_err);
    int status = st.status;
    char extra[64] = "";
    if (st.retry_after)
        snprintf(extra, sizeof extra, "Retry-After: %d\r\n", r->conn->srv->cfg->retry_after_s);
    respond(r, status, "application/json", s, s ? strlen(s) : 0, extra);
}

static void on_job_done(gw_job_t *job)
{
    req_t *r = job->data;
    conn_t *c = r->conn;
    if (--r->pending == 0)
        answer_detect(r);
    if (!c->closing)
        flush(c);
    conn_release(c);
}

static int add_job(req_t *r, const uint8_t *img, size_t len)
{
    if (r->njobs >= MAX_IMAGES)
        return PROTO_ETOOBIG;
    if (r->njobs == r->jobs_cap) {
        /* Nothing points into the array before the jobs are submitted, so it may move. */
        if (r->jobs == NULL) {
            r->jobs = &r->one;
            r->jobs_cap = 1;
        } else {
            int cap = r->jobs_cap * 2 > MAX_IMAGES ? MAX_IMAGES : r->jobs_cap * 2;
            gw_job_t *nj = malloc((size_t)cap * sizeof *nj);
            if (nj == NULL)
                return PROTO_ENOMEM;
            memcpy(nj, r->jobs, (size_t)r->njobs * sizeof *nj);
            if (r->jobs != &r->one)
                free(r->jobs);
            r->jobs = nj;
            r->jobs_cap = cap;
        }
    }
    gw_job_t *job = &r->jobs[r->njobs++];
    gw_job_init(job);
    job->image = img;
    job->image_len = len;
    job->opts = r->opts;
    job->on_done = on_job_done;
    job->data = r;
    return 0;
}

static int is_image_type(const char *mt)
{
    return strncmp(mt, "image/", 6) == 0 || strcmp(mt, "application/octet-stream") == 0;
}

static int on_part(void *arg, const gw_part_t *part)
{
    req_t *r = arg;
    char mt[128] = "";
    gw_body_media_type(part->content_type, mt, sizeof mt);
    if (strcmp(part->name, "camera") == 0 && !is_image_type(mt)) {
        if (part->len > PROTO_CAMERA_MAX)
            return PROTO_ETOOBIG;
        memcpy(r->opts.camera, part->data, part->len);
        r->opts.camera[part->len] = '\0';
        for (int i = 0; i < r->njobs; i++)
            memcpy(r->jobs[i].opts.camera, r->opts.camera, sizeof r->opts.camera);
        return 0;
    }
    if (is_image_type(mt) || strcmp(part->name, "image") == 0 || strcmp(part->name, "file") == 0 ||
        strcmp(part->name, "image[]") == 0) {
        if (part->len == 0)
            return PROTO_EEMPTY;
        return add_job(r, part->data, part->len);
    }
    return 0;
}

/* Percent-decodes in[0..len) into out: its length, -1 for a bad escape, -2 if over cap. */
static int url_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            if (i + 2 >= len)
                return -1;
            if (!isxdigit((unsigned char)in[i + 1]) || !isxdigit((unsigned char)in[i + 2]))
                return -1;
            char hex[3] = {in[i + 1], in[i + 2], 0};
            ch = (char)strtol(hex, NULL, 16);
            i += 2;
        }
        if (o + 1 >= cap)
            return -2;
        out[o++] = ch;
    }
    out[o] = '\0';
    return (int)o;
}

/* Applies one query parameter; 0, or -1 with the message in err. */
static int apply_param(req_t *r, const char *k, const char *v, char *err, size_t cap)
{
    char *end;
    if (strcmp(k, "camera") == 0) {
        if (strlen(v) > PROTO_CAMERA_MAX) {
            snprintf(err, cap, "camera is longer than %d bytes", PROTO_CAMERA_MAX);
            return -1;
        }
        snprintf(r->opts.camera, sizeof r->opts.camera, "%s", v);
    } else if (strcmp(k, "ts") == 0) {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (*v == '\0' || *end != '\0' || errno == ERANGE) {
            snprintf(err, cap, "ts must be an integer (milliseconds)");
            return -1;
        }
        r->opts.ts_ms = x;
    } else if (strcmp(k, "threshold") == 0) {
        double x = strtod(v, &end);
        if (*v == '\0' || *end != '\0' || !(x >= 0 && x <= 1)) {
            snprintf(err, cap, "threshold must be a number in [0, 1]");
            return -1;
        }
        r->opts.threshold = (float)x;
    } else if (strcmp(k, "format") == 0) {
        if (strcmp(v, "json") == 0)
            r->opts.output = PROTO_OUT_JSON;
        else if (strcmp(v, "jpeg") == 0)
            r->opts.output = PROTO_OUT_JPEG;
        else if (strcmp(v, "text") == 0)
            r->opts.output = PROTO_OUT_TEXT;
        else {
            snprintf(err, cap, "format must be json, jpeg or text");
            return -1;
        }
    } else if (strcmp(k, "top_k") == 0) {
        long x = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || x < 1 || x > 100) {
            snprintf(err, cap, "top_k must be an integer in [1, 100]");
            return -1;
        }
        r->opts.top_k = (uint16_t)x;
    } else if (strcmp(k, "model") == 0 && !r->model_from_path) {
        if (strlen(v) >= sizeof r->opts.model) {
            snprintf(err, cap, "model name too long");
            return -1;
        }
        snprintf(r->opts.model, sizeof r->opts.model, "%s", v);
    }
    return 0;
}

static int parse_query(req_t *r, char *err, size_t cap)
{
    const char *q = r->query;
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        char k[64], v[MAX_PATH];
        size_t klen = eq ? (size_t)(eq - q) : len;
        int kn = url_decode(q, klen, k, sizeof k);
        /* A key too long for k is none we know: ignored like any unknown parameter. */
        if (kn != -2) {
            if (kn < 0 ||
                url_decode(eq ? eq + 1 : q + len, eq ? len - klen - 1 : 0, v, sizeof v) < 0) {
                snprintf(err, cap, "malformed query string");
                return -1;
            }
            if (apply_param(r, k, v, err, cap) != 0)
                return -1;
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return 0;
}

static void handle_detect(req_t *r)
{
    gw_server_t *srv = r->conn->srv;
    char err[256], mt[128];
    int rv;

    if (parse_query(r, err, sizeof err) != 0) {
        respond_error(r, 400, "bad_query", "%s", err);
        return;
    }
    if (gw_body_media_type(r->content_type, mt, sizeof mt) != 0) {
        respond_error(r, 415, "unsupported_media_type",
                      "Content-Type must be image/jpeg, application/json or multipart/form-data");
        return;
    }
    if (is_image_type(mt)) {
        if (r->body_len == 0) {
            respond_error(r, 400, "empty_image", "the request body is empty");
            return;
        }
        add_job(r, r->body, r->body_len);
    } else if (strcmp(mt, "application/json") == 0) {
        cJSON *root = cJSON_ParseWithLength((const char *)r->body, r->body_len);
        if (root == NULL || !cJSON_IsObject(root)) {
            cJSON_Delete(root);
            respond_error(r, 400, "bad_json", "the body is not a JSON object");
            return;
        }
        const cJSON *image = cJSON_GetObjectItemCaseSensitive(root, "image");
        const cJSON *camera = cJSON_GetObjectItemCaseSensitive(root, "camera");
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(root, "ts");
        const cJSON *th = cJSON_GetObjectItemCaseSensitive(root, "threshold");
        const char *bad = NULL;
        if (image == NULL) {
            cJSON_Delete(root);
            respond_error(r, 400, "no_image", "the JSON object has no \"image\"");
            return;
        }
        if (!cJSON_IsString(image))
            bad = "\"image\" must be a base64 string";
        else if (camera != NULL &&
                 (!cJSON_IsString(camera) || strlen(camera->valuestring) > PROTO_CAMERA_MAX))
            bad = "\"camera\" must be a string of at most 128 bytes";
        else if (ts != NULL && (!cJSON_IsNumber(ts) || !(fabs(ts->valuedouble) < 9e18) ||
                                ts->valuedouble != floor(ts->valuedouble)))
            bad = "\"ts\" must be an integer (milliseconds)"; /* and fit an int64_t */
        else if (th != NULL &&
                 (!cJSON_IsNumber(th) || !(th->valuedouble >= 0) || !(th->valuedouble <= 1)))
            bad = "\"threshold\" must be a number in [0, 1]";
        if (bad != NULL) {
            cJSON_Delete(root);
            respond_error(r, 400, "bad_json", "%s", bad);
            return;
        }
        if (camera != NULL)
            snprintf(r->opts.camera, sizeof r->opts.camera, "%s", camera->valuestring);
        if (ts != NULL)
            r->opts.ts_ms = (int64_t)ts->valuedouble;
        if (th != NULL)
            r->opts.threshold = (float)th->valuedouble;
        size_t in_len = strlen(image->valuestring), out_len = 0;
        r->decoded = malloc(gw_body_b64_max(in_len) + 1);
        rv = r->decoded ? gw_body_b64_decode(image->valuestring, in_len, r->decoded, &out_len)
                        : PROTO_ENOMEM;
        cJSON_Delete(root);
        if (rv != 0) {
            respond_error(r, 400, "bad_base64", "\"image\" is not valid base64");
            return;
        }
        if (out_len == 0) {
            respond_error(r, 400, "empty_image", "\"image\" is empty");
            return;
        }
        add_job(r, r->decoded, out_len);
    } else if (strcmp(mt, "multipart/form-data") == 0) {
        char boundary[128];
        if (gw_body_param(r->content_type, "boundary", boundary, sizeof boundary) != 0) {
            respond_error(r, 400, "bad_multipart", "multipart/form-data without a boundary");
            return;
        }
        r->multipart = 1;
        rv = gw_body_multipart(r->body, r->body_len, boundary, on_part, r);
        if (rv == PROTO_EEMPTY) {
            respond_error(r, 400, "empty_image", "an image part is empty");
            return;
        }
        if (rv == PROTO_ENOMEM) {
            respond_error(r, 503, "overloaded", "out of memory");
            return;
        }
        if (rv == PROTO_ETOOBIG) {
            respond_error(r, 400, "bad_multipart",
                          "more than %d image parts, or a camera part "
                          "over 128 bytes",
                          MAX_IMAGES);
            return;
        }
        if (rv < 0) {
            respond_error(r, 400, "bad_multipart", "malformed multipart/form-data body");
            return;
        }
        if (r->njobs == 0) {
            respond_error(r, 400, "no_image", "no image part in the multipart body");
            return;
        }
    } else {
        respond_error(r, 415, "unsupported_media_type",
                      "Content-Type %s is not supported: use image/jpeg, application/json or "
                      "multipart/form-data",
                      mt);
        return;
    }
    /* Submit every job; each one out holds a reference on the connection. If one is
     * refused, the answer waits for those already out. */
    for (int i = 0; i < r->njobs; i++) {
        rv = srv->ops->submit(srv->ctx, &r->jobs[i]);
        if (rv != 0) {
            r->submit_error = rv;
            break;
        }
        r->pending++;
        r->conn->refs++;
    }
    if (r->pending == 0)
        answer_detect(r);
}

static void handle_request(req_t *r)
{
    gw_server_t *srv = r->conn->srv;
    const char *p = r->path;
    size_t plen = strlen(p);
    int is_detect =
        strcmp(p, "/v1/detect") == 0 ||
        (strncmp(p, "/v1/models/", 11) == 0 && plen > 18 && strcmp(p + plen - 7, "/detect") == 0);
    if (is_detect) {
        r->route = "detect";
        if (r->method != HTTP_POST) {
            respond_error(r, 405, "method_not_allowed", "use POST");
            return;
        }
        if (strncmp(p, "/v1/models/", 11) == 0) {
            size_t n = plen - 11 - 7;
            if (n == 0 || n >= sizeof r->opts.model || memchr(p + 11, '/', n) != NULL) {
                respond_error(r, 404, "not_found", "no such path");
                return;
            }
            memcpy(r->opts.model, p + 11, n);
            r->opts.model[n] = '\0';
            r->model_from_path = 1;
        }
        handle_detect(r);
        return;
    }
    static const struct {
        const char *path, *route;
    } gets[] = {{"/healthz", "healthz"},
                {"/readyz", "readyz"},
                {"/metrics", "metrics"},
                {"/v1/backends", "backends"},
                {"/v1/models", "models"}};
    for (size_t i = 0; i < sizeof gets / sizeof gets[0]; i++) {
        if (strcmp(p, gets[i].path) != 0)
            continue;
        r->route = gets[i].route;
        if (r->method != HTTP_GET) {
            respond_error(r, 405, "method_not_allowed", "use GET");
            return;
        }
        if (strcmp(p, "/healthz") == 0) {
            char *body = strdup("{\"status\":\"ok\"}");
            respond(r, 200, "application/json", body, body ? strlen(body) : 0, NULL);
            return;
        }
        gw_reply_t out = {0};
        if (srv->ops->get(srv->ctx, p, r->query, &out) != 0) {
            free(out.body);
            respond_error(r, 404, "not_found", "no such path");
            return;
        }
        char extra[64] = "";
        if (out.retry_after_s > 0)
            snprintf(extra, sizeof extra, "Retry-After: %d\r\n", out.retry_after_s);
        respond(r, out.status, out.content_type ? out.content_type : "application/json", out.body,
                out.body ? out.body_len : 0, extra);
        return;
    }
    r->route = "other";
    respond_error(r, 404, "not_found", "no such path: %s", p);
}

/* ---- llhttp callbacks ---- */

static conn_t *conn_of(llhttp_t *p)
{
    return p->data;
}

static int on_message_begin(llhttp_t *p)
{
    conn_t *c = conn_of(p);
    req_t *r = req_get(c);
    if (r == NULL)
        return -1;
    /* Appended now so that answers keep arrival order, whatever finishes first. */
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->nreqs++;
    c->cur = r;
    c->phase = PH_HEADERS;
    c->header_bytes = 0;
    c->field_len = 0;
    c->capture = 0;
    uv_timer_start(&c->timer, on_timer, c->srv->cfg->header_timeout_ms, 0);
    return 0;
}

static int header_limit(conn_t *c, size_t len)
{
    c->header_bytes += len;
    if (c->header_bytes <= c->srv->cfg->max_header_bytes)
        return 0;
    req_t *r = c->cur;
    c->fatal = 1;
    r->close_after = 1;
    c->cur = NULL;
    c->phase = PH_IDLE;
    respond_error(r, 431, "headers_too_large", "request line and headers exceed %zu bytes",
                  c->srv->cfg->max_header_bytes);
    return -1;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = conn_of(p);
    req_t *r = c->cur;
    if (header_limit(c, len) != 0)
        return -1;
    if (r->url_len + len >= sizeof r->url) {
        c->fatal = 1;
        r->close_after = 1;
        c->cur = NULL;
        c->phase = PH_IDLE;
        respond_error(r, 431, "headers_too_large", "the URL is longer than %d bytes", MAX_PATH - 1);
        return -1;
    }
    memcpy(r->url + r->url_len, at, len);
    r->url_len += len;
    r->url[r->url_len] = '\0';
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = conn_of(p);
    if (header_limit(c, len) != 0)
        return -1;
    /* Fields can arrive in pieces: accumulate (only short ones matter to us). */
    if (c->field_len + len < sizeof c->field) {
        memcpy(c->field + c->field_len, at, len);
        c->field_len += len;
        c->field[c->field_len] = '\0';
    } else {
        c->field_len = sizeof c->field; /* too long to be one we want */
        c->field[0] = '\0';
    }
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    conn_t *c = conn_of(p);
    c->capture = 0;
    if (strcasecmp(c->field, "content-type") == 0) {
        c->capture = 1;
        c->cur->content_type[0] = '\0';
    } else if (strcasecmp(c->field, "expect") == 0) {
        c->capture = 2;
    }
    c->field_len = 0;
    c->field[0] = '\0';
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = conn_of(p);
    req_t *r = c->cur;
    if (header_limit(c, len) != 0)
        return -1;
    if (c->capture == 1) {
        size_t have = strlen(r->content_type);
        if (have + len < sizeof r->content_type) {
            memcpy(r->content_type + have, at, len);
            r->content_type[have + len] = '\0';
        }
    } else if (c->capture == 2) {
        if (len >= 12 && strncasecmp(at, "100-continue", 12) == 0)
            r->expect_continue = 1;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    conn_t *c = conn_of(p);
    req_t *r = c->cur;
    const gw_config_t *cfg = c->srv->cfg;
    r->method = p->method;
    /* After gw_server_stop() every request is the connection's last, so busy connections
     * still drain when clients keep pipelining. */
    r->keep_alive = llhttp_should_keep_alive(p) && !c->srv->stopping;
    char *q = strchr(r->url, '?');
    size_t plen = q ? (size_t)(q - r->url) : strlen(r->url);
    memcpy(r->path, r->url, plen);
    r->path[plen] = '\0';
    snprintf(r->query, sizeof r->query, "%s", q ? q + 1 : "");

    int has_len = (p->flags & F_CONTENT_LENGTH) != 0, chunked = (p->flags & F_CHUNKED) != 0;
    if (r->method == HTTP_POST && !has_len && !chunked) {
        c->fatal = 1;
        r->close_after = 1;
        c->cur = NULL;
        c->phase = PH_IDLE;
        respond_error(r, 411, "length_required",
                      "POST needs Content-Length or Transfer-Encoding: chunked");
        return -1;
    }
    if (has_len && p->content_length > cfg->max_body_bytes) {
        /* Answered from the headers: the body is never read. */
        c->fatal = 1;
        r->close_after = 1;
        c->cur = NULL;
        c->phase = PH_IDLE;
        respond_error(r, 413, "too_large", "the body (%llu bytes) exceeds %zu bytes",
                      (unsigned long long)p->content_length, cfg->max_body_bytes);
        return -1;
    }
    if (has_len && p->content_length > 0) {
        r->body = malloc((size_t)p->content_length);
        if (r->body == NULL) {
            c->fatal = 1;
            r->close_after = 1;
            c->cur = NULL;
            c->phase = PH_IDLE;
            respond_error(r, 503, "overloaded", "out of memory");
            return -1;
        }
        r->body_cap = (size_t)p->content_length;
    }
    c->phase = PH_BODY;
    if (!r->expect_continue)
        uv_timer_start(&c->timer, on_timer, cfg->body_timeout_ms, 0);
    else if (c->head == r)
        send_continue(c, r); /* starts the body clock */
    else
        uv_timer_stop(&c->timer); /* the 100 waits for earlier answers; so does the clock */
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = conn_of(p);
    req_t *r = c->cur;
    size_t limit = c->srv->cfg->max_body_bytes;
    if (r->body_len + len > limit) {
        c->fatal = 1;
        r->close_after = 1;
        c->cur = NULL;
        c->phase = PH_IDLE;
        respond_error(r, 413, "too_large", "the body exceeds %zu bytes", limit);
        return -1;
    }
    if (r->body_len + len > r->body_cap) {
        /* chunked: grow geometrically, never past the limit */
        size_t cap = r->body_cap ? r->body_cap * 2 : 64 << 10;
        while (cap < r->body_len + len)
            cap *= 2;
        if (cap > limit)
            cap = limit;
        uint8_t *nb = realloc(r->body, cap);
        if (nb == NULL) {
            c->fatal = 1;
            r->close_after = 1;
            c->cur = NULL;
            c->phase = PH_IDLE;
            respond_error(r, 503, "overloaded", "out of memory");
            return -1;
        }
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    conn_t *c = conn_of(p);
    req_t *r = c->cur;
    c->cur = NULL;
    c->phase = PH_IDLE;
    uv_timer_stop(&c->timer);
    if (!r->keep_alive)
        c->fatal = 1; /* no more requests after this one */
    handle_request(r);
    /* Enough answers outstanding on this connection: stop parsing until some are sent. */
    if (c->nreqs >= c->srv->cfg->max_pipelined || c->fatal)
        return HPE_PAUSED;
    return 0;
}

/* ---- reading ---- */

static void try_resume(conn_t *c)
{
    if (!c->paused || c->parsing || c->closing || c->lingering || c->fatal ||
        c->nreqs >= c->srv->cfg->max_pipelined)
        return;
    c->paused = 0;
    llhttp_resume(&c->parser);
    uint8_t *data = c->pending;
    size_t len = c->pending_len;
    c->pending = NULL;
    c->pending_len = 0;
    if (len > 0)
        process_input(c, (const char *)data, len);
    free(data);
    if (!c->paused && !c->closing && !c->lingering && !c->fatal && !c->eof)
        uv_read_start((uv_stream_t *)&c->tcp, alloc_buf, on_read);
}

static void process_input(conn_t *c, const char *data, size_t len)
{
    c->refs++; /* callbacks below may flush and close */
    c->parsing = 1;
    llhttp_errno_t err;
    /* A loop, not recursion through flush(): a read full of tiny pipelined requests pauses
     * the parser every max_pipelined requests. */
    while ((err = llhttp_execute(&c->parser, data, len)) == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&c->parser);
        size_t used = pos != NULL && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
        data += used;
        len -= used;
        c->paused = 1;
        flush(c); /* answers already built (errors, GETs) free pipeline room at once */
        if (c->closing || c->lingering || c->fatal)
            break;
        if (c->nreqs < c->srv->cfg->max_pipelined) {
            c->paused = 0;
            llhttp_resume(&c->parser);
            if (len == 0)
                break;
            continue;
        }
        if (len > 0) { /* kept until answers go out; see try_resume() */
            c->pending = malloc(len);
            if (c->pending == NULL) {
                c->fatal = 1;
                break;
            }
            memcpy(c->pending, data, len);
            c->pending_len = len;
        }
        uv_read_stop((uv_stream_t *)&c->tcp);
        break;
    }
    c->parsing = 0;
    if (err != HPE_OK && err != HPE_PAUSED && !c->fatal) {
        /* A malformed request: answer 400 in its place and stop reading. */
        req_t *r = c->cur;
        if (r == NULL && on_message_begin(&c->parser) == 0)
            r = c->cur;
        c->cur = NULL;
        c->phase = PH_IDLE;
        c->fatal = 1;
        if (r != NULL) {
            r->close_after = 1;
            respond_error(r, 400, "bad_request", "malformed HTTP: %s",
                          llhttp_get_error_reason(&c->parser));
        }
    }
    if (c->fatal)
        uv_read_stop((uv_stream_t *)&c->tcp);
    if (!c->closing)
        flush(c);
    conn_release(c);
}

/* Unlinks the request being received (always the tail) when it can never complete. */
static void drop_partial(conn_t *c)
{
    req_t *r = c->cur, **pp = &c->head, *prev = NULL;
    if (r == NULL)
        return;
    c->cur = NULL;
    c->phase = PH_IDLE;
    while (*pp != NULL && *pp != r) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == r) {
        *pp = r->next;
        if (c->tail == r)
            c->tail = prev;
        c->nreqs--;
    }
    req_put(c, r);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = (conn_t *)s;
    if (nread > 0 && !c->closing && !c->fatal) {
        process_input(c, buf->base, (size_t)nread);
    } else if (nread == UV_EOF && !c->closing && !c->lingering) {
        /* A client that half-closes after its requests still expects the answers; a
         * request cut in the middle is dropped. */
        uv_read_stop(s);
        c->eof = 1;
        drop_partial(c);
        uv_timer_stop(&c->timer);
        if (c->head == NULL && c->pending == NULL)
            conn_close(c);
        else
            flush(c);
    } else if (nread < 0) {
        /* Reset or error. Jobs still out keep the connection (not the socket) alive. */
        drop_partial(c);
        conn_close(c);
    }
}

/* ---- accepting ---- */

static void on_connection(uv_stream_t *listener, int status)
{
    gw_server_t *srv = listener->data;
    if (status < 0)
        return;
    conn_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->srv = srv;
    c->refs = 1;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &srv->settings);
    c->parser.data = c;
    if (srv->nconns > srv->cfg->max_connections || srv->stopping) {
        /* Over the limit: one short answer instead of a silent drop. */
        req_t *r = req_get(c);
        if (r == NULL) {
            conn_close(c);
            return;
        }
        r->route = "other";
        c->head = c->tail = r;
        c->nreqs = 1;
        c->fatal = 1;
        r->close_after = 1;
        respond_error(r, 503, "overloaded", "too many connections (%d)", srv->cfg->max_connections);
        flush(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, alloc_buf, on_read);
    arm_idle(c);
}

int gw_server_create(gw_server_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                     const gw_server_ops_t *ops, void *ctx)
{
    gw_server_t *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return PROTO_ENOMEM;
    srv->loop = loop;
    srv->cfg = cfg;
    srv->ops = ops;
    srv->ctx = ctx;
    llhttp_settings_init(&srv->settings);
    srv->settings.on_message_begin = on_message_begin;
    srv->settings.on_url = on_url;
    srv->settings.on_header_field = on_header_field;
    srv->settings.on_header_field_complete = on_header_field_complete;
    srv->settings.on_header_value = on_header_value;
    srv->settings.on_headers_complete = on_headers_complete;
    srv->settings.on_body = on_body;
    srv->settings.on_message_complete = on_message_complete;
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    *out = srv;
    return 0;
}

int gw_server_start(gw_server_t *srv)
{
    struct sockaddr_storage addr;
    int rv;
    if (uv_ip4_addr(srv->cfg->listen_host, srv->cfg->listen_port, (struct sockaddr_in *)&addr) !=
            0 &&
        (rv = uv_ip6_addr(srv->cfg->listen_host, srv->cfg->listen_port,
                          (struct sockaddr_in6 *)&addr)) != 0)
        return rv;
    if ((rv = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0)) != 0)
        return rv;
    if ((rv = uv_listen((uv_stream_t *)&srv->listener, 1024, on_connection)) != 0)
        return rv;
    srv->listening = 1;
    return 0;
}

int gw_server_port(const gw_server_t *srv)
{
    struct sockaddr_storage addr;
    int len = sizeof addr;
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&addr, &len) != 0)
        return -1;
    if (addr.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
    return ntohs(((struct sockaddr_in *)&addr)->sin_port);
}

int gw_server_connections(const gw_server_t *srv)
{
    return srv->nconns;
}

void gw_server_stop(gw_server_t *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = 1;
    if (srv->listening) {
        uv_close((uv_handle_t *)&srv->listener, NULL);
        srv->listening = 0;
    }
    conn_t *c = srv->conns;
    while (c != NULL) {
        conn_t *next = c->next;
        if (c->head == NULL && c->cur == NULL)
            close_idle(c);
        c = next;
    }
    if (srv->nconns == 0 && !srv->drained_sent) {
        srv->drained_sent = 1;
        if (srv->ops->on_drained)
            srv->ops->on_drained(srv->ctx);
    }
}

void gw_server_destroy(gw_server_t *srv)
{
    if (srv == NULL)
        return;
    srv->destroying = 1;
    srv->stopping = 1;
    if (srv->listening) {
        uv_close((uv_handle_t *)&srv->listener, NULL);
        srv->listening = 0;
    }
    for (conn_t *c = srv->conns; c != NULL; c = c->next)
        conn_close(c);
    /* Connections free themselves from their close callbacks; they point at srv, so run
     * the loop until they are gone before freeing it. */
    while (srv->nconns > 0 && uv_run(srv->loop, UV_RUN_ONCE) != 0)
        ;
    if (!uv_is_closing((uv_handle_t *)&srv->listener))
        uv_close((uv_handle_t *)&srv->listener, NULL);
    uv_run(srv->loop, UV_RUN_NOWAIT);
    free(srv);
}
