/* Shared by the HTTP front's tests (test_gw_http.c, test_gw_router.c, test_gw_detect.c):
 * the server over real loopback sockets. It runs on its own libuv loop in a second thread
 * with fake routes: GET /metrics answers a fixed text, and the detect routes use the real
 * detect handler with a fake submit that parses a tiny "script" out of the image bytes
 * ("delay=30 status=503 qfull") and completes the job on a uv_timer with a reply built by
 * proto_rep_encode, so no backend is involved. The test thread is a blocking-socket client
 * with receive timeouts, so a server that hangs fails the test instead of hanging it. */
#ifndef GW_HTTP_HARNESS_H
#define GW_HTTP_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "msg.h"
#include "detect.h"
#include "response.h"
#include "server.h"

/* ---- the server side (loop thread) ---- */

typedef struct {
    uv_timer_t timer;
    gw_job_t *job;
    int status;
    int classes; /* answer as a classifier */
} fake_t;

static struct {
    uv_loop_t loop;
    uv_async_t stop_async;
    uv_timer_t poll;
    pthread_t thread;
    gw_config_t cfg;
    gw_server_t *srv;
    int port;
    int running, stop_sent;
    /* fake_on_work: a test sets hold_work to keep the JSON decode on its threadpool thread
     * until it sets work_release (or 5 s pass). */
    pthread_mutex_t work_mu;
    pthread_cond_t work_cv;
    int hold_work, work_release;
    atomic_int work_started;
    pthread_t work_thread;
    atomic_int conns; /* gw_server_connections(), copied on the loop thread */
    atomic_int submitted, done, responses, drained;
    atomic_int healthz_responses, detect_responses, other_responses, metrics_responses;
    atomic_int last_image_len;
    atomic_int last_status;
    char last_model[128]; /* written on the loop thread before the answer goes out */
    char last_camera[PROTO_CAMERA_MAX + 1];
} S;

/* Every client socket is registered so that a failed test's teardown can close them all
 * (a half-sent request would otherwise keep the server from draining). */
static int open_fds[64];

static inline void on_fake_closed(uv_handle_t *h)
{
    free(h->data);
}

static inline void on_fake_timer(uv_timer_t *t)
{
    fake_t *f = t->data;
    gw_job_t *job = f->job;
    /* The fake fails with the code a real pool would use for that status. */
    job->err = f->status == 200   ? 0
               : f->status == 504 ? PROTO_EDEADLINE
               : f->status == 503 ? PROTO_ESHUTDOWN
                                  : PROTO_EBACKEND;
    if (f->status != 200) {
        snprintf(job->error_msg, sizeof job->error_msg, "fake failure %d", f->status);
    } else {
        proto_det_t det = {.class_id = 16,
                           .confidence = 0.91f,
                           .x = 10,
                           .y = 20,
                           .w = 30,
                           .h = 40,
                           .label = "dog",
                           .label_len = 3};
        /* An image that says "classes" gets a classifier's answer: top-2, no boxes. */
        proto_det_t cls[2] = {
            {.class_id = 435, .confidence = 0.7f, .label = "bathtub", .label_len = 7},
            {.class_id = 876, .confidence = 0.2f, .label = "tub", .label_len = 3}};
        proto_rep_t rep = {.type = PROTO_T_RESULT,
                           .id = 77,
                           .width = 768,
                           .height = 576,
                           .ndet = 1,
                           .dets = &det,
                           .payload = (const uint8_t *)"dog",
                           .payload_len = 3};
        if (f->classes) {
            rep.kind = PROTO_KIND_CLASSES;
            rep.ndet = 2;
            rep.dets = cls;
            rep.payload = (const uint8_t *)"bathtub";
            rep.payload_len = 7;
        }
        size_t cap = (size_t)proto_rep_size(&rep), len = 0;
        job->rep_buf = malloc(cap);
        assert_non_null(job->rep_buf);
        assert_int_equal(proto_rep_encode(&rep, job->rep_buf, cap, &len), 0);
        job->rep_len = len;
        assert_int_equal(proto_rep_decode(&job->rep, job->rep_buf, len), 0);
        snprintf(job->backend, sizeof job->backend, "fake-1");
        snprintf(job->model_name, sizeof job->model_name, "%s",
                 job->opts.model[0] ? job->opts.model : "default");
        job->id = 77;
        job->queue_ms = 1.5;
        job->infer_ms = 2.5;
        job->total_ms = 4;
    }
    atomic_fetch_add(&S.done, 1);
    uv_close((uv_handle_t *)t, on_fake_closed);
    job->on_done(job);
}

static inline int fake_submit(void *ctx, gw_job_t *job)
{
    (void)ctx;
    char script[64] = "";
    size_t n = job->image_len < sizeof script - 1 ? job->image_len : sizeof script - 1;
    memcpy(script, job->image, n);
    atomic_store(&S.last_image_len, (int)job->image_len);
    snprintf(S.last_model, sizeof S.last_model, "%s", job->opts.model);
    snprintf(S.last_camera, sizeof S.last_camera, "%s", job->opts.camera);
    if (strstr(script, "qfull") != NULL)
        return PROTO_EQUEUEFULL;
    if (strcmp(job->opts.model, "nope") == 0)
        return PROTO_ENOMODEL;
    int delay = 1, status = 200;
    const char *d = strstr(script, "delay="), *s = strstr(script, "status=");
    if (d != NULL)
        delay = atoi(d + 6);
    if (s != NULL)
        status = atoi(s + 7);
    fake_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->job = job;
    f->status = status;
    f->classes = strstr(script, "classes") != NULL;
    uv_timer_init(&S.loop, &f->timer);
    f->timer.data = f;
    uv_timer_start(&f->timer, on_fake_timer, (uint64_t)delay, 0);
    atomic_fetch_add(&S.submitted, 1);
    return 0;
}

static inline void fake_metrics(void *ctx, gw_req_t *req)
{
    (void)ctx;
    char *body = strdup("fake_metric 1\n");
    gw_respond(req, 200, "text/plain; version=0.0.4", body, strlen(body), NULL);
}

static inline void fake_on_response(void *ctx, const char *route, int status, double seconds)
{
    (void)ctx;
    assert_true(seconds >= 0);
    atomic_fetch_add(&S.responses, 1);
    atomic_store(&S.last_status, status);
    if (strcmp(route, "healthz") == 0)
        atomic_fetch_add(&S.healthz_responses, 1);
    else if (strcmp(route, "detect") == 0)
        atomic_fetch_add(&S.detect_responses, 1);
    else if (strcmp(route, "metrics") == 0)
        atomic_fetch_add(&S.metrics_responses, 1);
    else if (strcmp(route, "other") == 0)
        atomic_fetch_add(&S.other_responses, 1);
}

static inline void fake_on_drained(void *ctx)
{
    (void)ctx;
    atomic_store(&S.drained, 1);
}

/* GET /big: 32 KiB, so that a client that does not read fills its socket quickly. */
#define BIG_LEN (32 << 10)
static inline void fake_big(void *ctx, gw_req_t *req)
{
    (void)ctx;
    char *body = malloc(BIG_LEN);
    assert_non_null(body);
    memset(body, 'b', BIG_LEN);
    gw_respond(req, 200, "application/octet-stream", body, BIG_LEN, NULL);
}

static inline void fake_on_work(void *ctx)
{
    (void)ctx;
    S.work_thread = pthread_self();
    atomic_fetch_add(&S.work_started, 1);
    pthread_mutex_lock(&S.work_mu);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    while (S.hold_work && !S.work_release &&
           pthread_cond_timedwait(&S.work_cv, &S.work_mu, &until) == 0)
        ;
    pthread_mutex_unlock(&S.work_mu);
}

static inline void work_release(void)
{
    pthread_mutex_lock(&S.work_mu);
    S.work_release = 1;
    pthread_cond_broadcast(&S.work_cv);
    pthread_mutex_unlock(&S.work_mu);
}

static const gw_detect_t fake_detect = {
    .submit = fake_submit, .ctx = NULL, .on_work = fake_on_work};

static const gw_route_t fake_routes[] = {
    {"POST", "/v1/detect", "detect", gw_detect_handle, (void *)&fake_detect, 0},
    {"POST", "/v1/models/*/detect", "detect", gw_detect_handle, (void *)&fake_detect, 0},
    {"GET", "/metrics", "metrics", fake_metrics, NULL, 0},
    {"GET", "/big", "big", fake_big, NULL, 0},
};

static const gw_server_ops_t fake_ops = {
    .routes = fake_routes,
    .nroutes = sizeof fake_routes / sizeof fake_routes[0],
    .on_response = fake_on_response,
    .on_drained = fake_on_drained,
};

static inline void on_poll(uv_timer_t *t)
{
    (void)t;
    atomic_store(&S.conns, gw_server_connections(S.srv));
}

static inline void on_stop(uv_async_t *a)
{
    (void)a;
    gw_server_stop(S.srv);
    uv_close((uv_handle_t *)&S.stop_async, NULL);
    uv_close((uv_handle_t *)&S.poll, NULL);
}

static inline void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&S.loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Default test configuration: short timeouts so the timeout tests stay fast. */
static inline void cfg_defaults(gw_config_t *cfg)
{
    gw_config_defaults(cfg);
    snprintf(cfg->listen_host, sizeof cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 0;
    cfg->max_connections = 8;
    cfg->max_header_bytes = 4096;
    cfg->max_body_bytes = 1 << 20;
    cfg->max_pipelined = 4;
    cfg->header_timeout_ms = 400;
    cfg->body_timeout_ms = 400;
    cfg->idle_timeout_ms = 600;
    cfg->retry_after_s = 7;
}

static inline void server_start(const gw_config_t *cfg)
{
    memset(&S, 0, sizeof S);
    pthread_mutex_init(&S.work_mu, NULL);
    pthread_cond_init(&S.work_cv, NULL);
    S.cfg = *cfg;
    assert_int_equal(uv_loop_init(&S.loop), 0);
    assert_int_equal(gw_server_create(&S.srv, &S.loop, &S.cfg, &fake_ops, NULL), 0);
    assert_int_equal(gw_server_start(S.srv), 0);
    S.port = gw_server_port(S.srv);
    assert_true(S.port > 0);
    uv_async_init(&S.loop, &S.stop_async, on_stop);
    uv_timer_init(&S.loop, &S.poll);
    uv_timer_start(&S.poll, on_poll, 5, 5);
    assert_int_equal(pthread_create(&S.thread, NULL, loop_main, NULL), 0);
    S.running = 1;
}

/* Stops the server, waits for the loop to run out of work, checks everything was freed.
 * Runs as every test's teardown, also after a failed assertion. */
static inline int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof open_fds / sizeof open_fds[0]; i++) {
        if (open_fds[i] > 0)
            close(open_fds[i]);
        open_fds[i] = 0;
    }
    if (!S.running)
        return 0;
    S.running = 0;
    work_release(); /* a failed test must not leave a worker waiting */
    if (!S.stop_sent)
        uv_async_send(&S.stop_async);
    pthread_join(S.thread, NULL);
    assert_int_equal(atomic_load(&S.drained), 1);
    assert_int_equal(atomic_load(&S.submitted), atomic_load(&S.done));
    assert_int_equal(gw_server_connections(S.srv), 0);
    gw_server_destroy(S.srv);
    assert_int_equal(uv_loop_close(&S.loop), 0);
    return 0;
}

static inline void start_default(void)
{
    gw_config_t cfg;
    cfg_defaults(&cfg);
    server_start(&cfg);
}

/* ---- the client side (test thread, blocking sockets) ---- */

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    int fd;
    char buf[1 << 16];
    size_t len;
} client_t;

typedef struct {
    int status;
    char head[4096];
    char *body; /* NUL-terminated, malloc'd */
    size_t body_len;
} resp_t;

static inline void client_open(client_t *c)
{
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    for (size_t i = 0; i < sizeof open_fds / sizeof open_fds[0]; i++) {
        if (open_fds[i] <= 0) {
            open_fds[i] = c->fd;
            break;
        }
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static inline void client_close(client_t *c)
{
    for (size_t i = 0; i < sizeof open_fds / sizeof open_fds[0]; i++) {
        if (open_fds[i] == c->fd)
            open_fds[i] = 0;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static inline void send_all(client_t *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static inline void send_str(client_t *c, const char *s)
{
    send_all(c, s, strlen(s));
}

/* Reads more bytes into the buffer; returns what recv returned (0 = EOF, <0 = error). */
static inline ssize_t fill(client_t *c)
{
    assert_true(c->len < sizeof c->buf);
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

static inline void consume(client_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Reads one response (only its head when no_body: the answer to HEAD); returns 0, or -1 if
 * the connection ended first. */
static inline int read_resp_ex(client_t *c, resp_t *r, int no_body)
{
    memset(r, 0, sizeof *r);
    char *end;
    while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL) {
        if (fill(c) <= 0)
            return -1;
    }
    size_t hlen = (size_t)(end - c->buf) + 4;
    assert_true(hlen < sizeof r->head);
    memcpy(r->head, c->buf, hlen);
    r->head[hlen] = '\0';
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
    consume(c, hlen);
    if (r->status == 100)
        return 0;
    const char *cl = strcasestr(r->head, "\r\nContent-Length:");
    assert_non_null(cl);
    r->body_len = strtoul(cl + 17, NULL, 10);
    if (no_body)
        return 0;
    while (c->len < r->body_len) {
        if (fill(c) <= 0)
            return -1;
    }
    r->body = malloc(r->body_len + 1);
    memcpy(r->body, c->buf, r->body_len);
    r->body[r->body_len] = '\0';
    consume(c, r->body_len);
    return 0;
}

static inline int read_resp(client_t *c, resp_t *r)
{
    return read_resp_ex(c, r, 0);
}

static inline void resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

static inline int has_header(const resp_t *r, const char *line)
{
    return strcasestr(r->head, line) != NULL;
}

/* True once the server has closed the connection (EOF or reset) within the timeout. */
static inline int closed_by_server(client_t *c)
{
    for (;;) {
        ssize_t n = fill(c);
        if (n == 0)
            return 1;
        if (n < 0)
            return errno == ECONNRESET;
        c->len = 0;
    }
}

static inline void post(client_t *c, const char *target, const char *ctype, const char *body,
                        size_t len)
{
    char head[1024];
    snprintf(head, sizeof head,
             "POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
             target, ctype, len);
    send_str(c, head);
    send_all(c, body, len);
}

static inline const char *json_error_code(const resp_t *r, char *out, size_t cap)
{
    cJSON *root = cJSON_Parse(r->body);
    const cJSON *e = cJSON_GetObjectItem(root, "error");
    const cJSON *code = cJSON_GetObjectItem(e, "code");
    snprintf(out, cap, "%s", cJSON_IsString(code) ? code->valuestring : "(none)");
    cJSON_Delete(root);
    return out;
}

static inline void wait_until(atomic_int *v, int want, double secs)
{
    double t0 = now_s();
    while (atomic_load(v) != want && now_s() - t0 < secs)
        usleep(2000);
    assert_int_equal(atomic_load(v), want);
}

#endif
