/* The HTTP front over real loopback sockets. The server runs on its own libuv loop in a
 * second thread with fake ops: submit parses a tiny "script" out of the image bytes
 * ("delay=30 status=503 qfull") and completes the job on a uv_timer with a reply built by
 * proto_rep_encode, so no backend is involved. The test thread is a blocking-socket client
 * with receive timeouts, so a server that hangs fails the test instead of hanging it. */
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
    atomic_int conns; /* gw_server_connections(), copied on the loop thread */
    atomic_int submitted, done, responses, drained;
    atomic_int healthz_responses, detect_responses, other_responses;
    atomic_int last_image_len;
    atomic_int last_status;
    char last_model[128]; /* written on the loop thread before the answer goes out */
    char last_camera[PROTO_CAMERA_MAX + 1];
} S;

/* Every client socket is registered so that a failed test's teardown can close them all
 * (a half-sent request would otherwise keep the server from draining). */
static int open_fds[64];

static void on_fake_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_fake_timer(uv_timer_t *t)
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

static int fake_submit(void *ctx, gw_job_t *job)
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

static int fake_get(void *ctx, const char *path, const char *query, gw_reply_t *out)
{
    (void)ctx;
    (void)query;
    if (strcmp(path, "/metrics") != 0)
        return -1;
    out->status = 200;
    out->content_type = "text/plain; version=0.0.4";
    out->body = strdup("fake_metric 1\n");
    out->body_len = strlen(out->body);
    return 0;
}

static void fake_on_response(void *ctx, const char *route, int status, double seconds)
{
    (void)ctx;
    assert_true(seconds >= 0);
    atomic_fetch_add(&S.responses, 1);
    atomic_store(&S.last_status, status);
    if (strcmp(route, "healthz") == 0)
        atomic_fetch_add(&S.healthz_responses, 1);
    else if (strcmp(route, "detect") == 0)
        atomic_fetch_add(&S.detect_responses, 1);
    else if (strcmp(route, "other") == 0)
        atomic_fetch_add(&S.other_responses, 1);
}

static void fake_on_drained(void *ctx)
{
    (void)ctx;
    atomic_store(&S.drained, 1);
}

static const gw_server_ops_t fake_ops = {
    .submit = fake_submit,
    .get = fake_get,
    .on_response = fake_on_response,
    .on_drained = fake_on_drained,
};

static void on_poll(uv_timer_t *t)
{
    (void)t;
    atomic_store(&S.conns, gw_server_connections(S.srv));
}

static void on_stop(uv_async_t *a)
{
    (void)a;
    gw_server_stop(S.srv);
    uv_close((uv_handle_t *)&S.stop_async, NULL);
    uv_close((uv_handle_t *)&S.poll, NULL);
}

static void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&S.loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Default test configuration: short timeouts so the timeout tests stay fast. */
static void cfg_defaults(gw_config_t *cfg)
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

static void server_start(const gw_config_t *cfg)
{
    memset(&S, 0, sizeof S);
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
static int teardown(void **state)
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

static void start_default(void)
{
    gw_config_t cfg;
    cfg_defaults(&cfg);
    server_start(&cfg);
}

/* ---- the client side (test thread, blocking sockets) ---- */

static double now_s(void)
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

static void client_open(client_t *c)
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

static void client_close(client_t *c)
{
    for (size_t i = 0; i < sizeof open_fds / sizeof open_fds[0]; i++) {
        if (open_fds[i] == c->fd)
            open_fds[i] = 0;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static void send_all(client_t *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void send_str(client_t *c, const char *s)
{
    send_all(c, s, strlen(s));
}

/* Reads more bytes into the buffer; returns what recv returned (0 = EOF, <0 = error). */
static ssize_t fill(client_t *c)
{
    assert_true(c->len < sizeof c->buf);
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

static void consume(client_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Reads one response; returns 0, or -1 if the connection ended first. */
static int read_resp(client_t *c, resp_t *r)
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

static void resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

static int has_header(const resp_t *r, const char *line)
{
    return strcasestr(r->head, line) != NULL;
}

/* True once the server has closed the connection (EOF or reset) within the timeout. */
static int closed_by_server(client_t *c)
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

static void post(client_t *c, const char *target, const char *ctype, const char *body, size_t len)
{
    char head[1024];
    snprintf(head, sizeof head,
             "POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
             target, ctype, len);
    send_str(c, head);
    send_all(c, body, len);
}

static const char *json_error_code(const resp_t *r, char *out, size_t cap)
{
    cJSON *root = cJSON_Parse(r->body);
    const cJSON *e = cJSON_GetObjectItem(root, "error");
    const cJSON *code = cJSON_GetObjectItem(e, "code");
    snprintf(out, cap, "%s", cJSON_IsString(code) ? code->valuestring : "(none)");
    cJSON_Delete(root);
    return out;
}

static void wait_until(atomic_int *v, int want, double secs)
{
    double t0 = now_s();
    while (atomic_load(v) != want && now_s() - t0 < secs)
        usleep(2000);
    assert_int_equal(atomic_load(v), want);
}

/* ---- tests ---- */

static void test_keepalive_and_get_routes(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    resp_t r;
    char code[64];
    for (int i = 0; i < 3; i++) {
        send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "{\"status\":\"ok\"}");
        assert_true(has_header(&r, "Connection: keep-alive"));
        assert_true(has_header(&r, "Content-Type: application/json"));
        resp_free(&r);
    }
    send_str(c, "GET /metrics?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "fake_metric 1\n");
    assert_true(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
    resp_free(&r);
    /* ops->get says -1 -> 404; unknown paths -> 404; wrong methods -> 405 + Allow. */
    send_str(c, "GET /v1/backends HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    send_str(c, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(json_error_code(&r, code, sizeof code), "not_found");
    resp_free(&r);
    send_str(c, "GET /v1/detect HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "Allow: POST"));
    assert_string_equal(json_error_code(&r, code, sizeof code), "method_not_allowed");
    resp_free(&r);
    send_str(c, "DELETE /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "Allow: GET"));
    resp_free(&r);
    /* Connection: close is honoured. */
    send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_true(has_header(&r, "Connection: close"));
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    /* HTTP/1.0 closes by default, keeps alive when asked. */
    client_open(c);
    send_str(c, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_true(has_header(&r, "Connection: keep-alive"));
    resp_free(&r);
    send_str(c, "GET /healthz HTTP/1.0\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_true(has_header(&r, "Connection: close"));
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    free(c);
    wait_until(&S.responses, 11, 2);
    assert_int_equal(atomic_load(&S.healthz_responses), 7); /* DELETE included */
}

static void test_detect_json(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    resp_t r;
    post(c, "/v1/detect?camera=front%20door&ts=1234&threshold=0.5&top_k=3&unknown=1", "image/jpeg",
         "delay=5", 7);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Type: application/json"));
    cJSON *root = cJSON_Parse(r.body);
    assert_non_null(root);
    assert_string_equal(cJSON_GetObjectItem(root, "id")->valuestring, "77");
    assert_string_equal(cJSON_GetObjectItem(root, "camera")->valuestring, "front door");
    assert_string_equal(cJSON_GetObjectItem(root, "backend")->valuestring, "fake-1");
    assert_int_equal(cJSON_GetObjectItem(root, "width")->valueint, 768);
    assert_int_equal(cJSON_GetObjectItem(root, "height")->valueint, 576);
    const cJSON *dets = cJSON_GetObjectItem(root, "detections");
    assert_int_equal(cJSON_GetArraySize(dets), 1);
    const cJSON *d = cJSON_GetArrayItem(dets, 0);
    assert_string_equal(cJSON_GetObjectItem(d, "label")->valuestring, "dog");
    assert_int_equal(cJSON_GetObjectItem(d, "class_id")->valueint, 16);
    assert_true(cJSON_GetObjectItem(d, "confidence")->valuedouble > 0.909);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "box"), "h")->valueint, 40);
    const cJSON *t = cJSON_GetObjectItem(root, "timing");
    assert_true(cJSON_GetObjectItem(t, "total_ms")->valuedouble == 4);
    cJSON_Delete(root);
    resp_free(&r);
    /* Model from the path and from the query; format=text gives the payload. */
    post(c, "/v1/models/yolo/detect?format=text", "image/png; charset=x", "x", 1);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Type: text/plain"));
    assert_string_equal(r.body, "dog");
    assert_string_equal(S.last_model, "yolo");
    resp_free(&r);
    post(c, "/v1/models/yolo/detect?model=other", "image/jpeg", "x", 1);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(S.last_model, "yolo"); /* the path wins over ?model= */
    assert_non_null(strstr(r.body, "\"model\":\"yolo\""));
    resp_free(&r);
    /* A classifier's reply (kind CLASSES) is rendered as "classes", without boxes, in the
     * backend's order; format=text still passes its payload through. */
    post(c, "/v1/models/cls/detect", "image/jpeg", "classes", 7);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    root = cJSON_Parse(r.body);
    assert_non_null(root);
    assert_null(cJSON_GetObjectItem(root, "detections"));
    const cJSON *cls = cJSON_GetObjectItem(root, "classes");
    assert_int_equal(cJSON_GetArraySize(cls), 2);
    d = cJSON_GetArrayItem(cls, 0);
    assert_string_equal(cJSON_GetObjectItem(d, "label")->valuestring, "bathtub");
    assert_int_equal(cJSON_GetObjectItem(d, "class_id")->valueint, 435);
    assert_true(cJSON_GetObjectItem(d, "confidence")->valuedouble > 0.699);
    assert_null(cJSON_GetObjectItem(d, "box"));
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cls, 1), "label")->valuestring,
                        "tub");
    assert_string_equal(cJSON_GetObjectItem(root, "model")->valuestring, "cls");
    cJSON_Delete(root);
    resp_free(&r);
    post(c, "/v1/detect?model=cls&format=text", "image/jpeg", "classes", 7);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "bathtub");
    resp_free(&r);
    /* An unknown parameter is ignored, however long its name. */
    post(c,
         "/v1/detect?a_very_long_unknown_parameter_name_that_is_ignored_by_the_gateway=1&"
         "camera=long",
         "image/jpeg", "x", 1);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(S.last_camera, "long");
    resp_free(&r);
    post(c, "/v1/detect?model=tiny&format=jpeg", "Application/Octet-Stream", "x", 1);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Type: image/jpeg"));
    assert_string_equal(S.last_model, "tiny");
    resp_free(&r);
    client_close(c);
    free(c);
}

static void test_detect_errors(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    resp_t r;
    char code[64];
    static const struct {
        const char *target, *ctype, *body;
        int status;
        const char *code, *mention;
    } cases[] = {
        {"/v1/detect?threshold=2", "image/jpeg", "x", 400, "bad_query", "threshold"},
        {"/v1/detect?top_k=0", "image/jpeg", "x", 400, "bad_query", "top_k"},
        {"/v1/detect?format=gif", "image/jpeg", "x", 400, "bad_query", "format"},
        {"/v1/detect?ts=12x", "image/jpeg", "x", 400, "bad_query", "ts"},
        {"/v1/detect?ts=99999999999999999999", "image/jpeg", "x", 400, "bad_query", "ts"},
        {"/v1/detect?camera=%zz", "image/jpeg", "x", 400, "bad_query", NULL},
        {"/v1/detect?a_very_long_unknown_parameter_name_that_is_ignored_by_the_gateway=1&"
         "camera=%zz",
         "image/jpeg", "x", 400, "bad_query", NULL},
        {"/v1/detect", "application/json", "{\"image\":\"eA==\",\"ts\":1.5}", 400, "bad_json",
         "ts"},
        {"/v1/detect", "application/json", "{\"image\":\"eA==\",\"ts\":1e300}", 400, "bad_json",
         "ts"},
        {"/v1/detect", "text/plain", "x", 415, "unsupported_media_type", NULL},
        {"/v1/detect", "image/jpeg", "", 400, "empty_image", NULL},
        {"/v1/detect", "image/jpeg", "qfull", 503, "queue_full", NULL},
        {"/v1/models/nope/detect", "image/jpeg", "x", 404, "unknown_model", NULL},
        {"/v1/detect", "image/jpeg", "status=504", 504, "deadline", "fake failure 504"},
        {"/v1/detect", "image/jpeg", "status=503", 503, "shutting_down", NULL},
        {"/v1/detect", "image/jpeg", "status=502", 502, "backend_failed", NULL},
        {"/v1/detect", "application/json", "{\"image\":", 400, "bad_json", NULL},
        {"/v1/detect", "application/json", "{\"image\":5}", 400, "bad_json", "image"},
        {"/v1/detect", "application/json", "{\"camera\":\"x\"}", 400, "no_image", "image"},
        {"/v1/detect", "application/json", "[1]", 400, "bad_json", NULL},
        {"/v1/detect", "application/json", "{\"image\":\"ab$d\"}", 400, "bad_base64", NULL},
        {"/v1/detect", "application/json", "{\"image\":\"\"}", 400, "empty_image", NULL},
        {"/v1/detect", "multipart/form-data", "--x--", 400, "bad_multipart", "boundary"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        post(c, cases[i].target, cases[i].ctype, cases[i].body, strlen(cases[i].body));
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, cases[i].status);
        assert_true(has_header(&r, "Content-Type: application/json"));
        assert_true(has_header(&r, "Connection: keep-alive"));
        assert_string_equal(json_error_code(&r, code, sizeof code), cases[i].code);
        if (cases[i].mention != NULL)
            assert_non_null(strstr(r.body, cases[i].mention));
        if (r.status == 503)
            assert_true(has_header(&r, "Retry-After: 7"));
        resp_free(&r);
    }
    client_close(c);
    free(c);
}

static void test_pipelining_in_order(void **state)
{
    (void)state;
    start_default(); /* max_pipelined = 4 */
    client_t *c = malloc(sizeof *c);
    client_open(c);
    /* Six requests in one write; the jobs finish in the reverse order of arrival. */
    char all[4096];
    size_t n = 0;
    static const int delays[] = {120, 90, 60, 30, 1};
    for (int i = 0; i < 5; i++) {
        char body[32];
        int blen = snprintf(body, sizeof body, "delay=%d", delays[i]);
        n += (size_t)snprintf(all + n, sizeof all - n,
                              "POST /v1/detect?camera=c%d HTTP/1.1\r\nHost: t\r\n"
                              "Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s",
                              i, blen, body);
    }
    n += (size_t)snprintf(all + n, sizeof all - n, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    send_all(c, all, n);
    resp_t r;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 200);
        char want[32];
        snprintf(want, sizeof want, "\"camera\":\"c%d\"", i);
        assert_non_null(strstr(r.body, want));
        resp_free(&r);
    }
    assert_int_equal(read_resp(c, &r), 0);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    resp_free(&r);
    /* Many tiny pipelined requests in one write (the parser pauses and resumes often). */
    n = 0;
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(all + n, sizeof all - n, "GET /healthz HTTP/1.1\r\n\r\n");
    send_all(c, all, n);
    for (int i = 0; i < 60; i++) {
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    client_close(c);
    free(c);
}

static void test_chunked(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Transfer-Encoding: chunked\r\n\r\n4\r\ndela\r\n");
    usleep(20000);
    send_str(c, "4\r\ny=10\r\n0\r\n\r\n");
    resp_t r;
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(atomic_load(&S.last_image_len), 8);
    resp_free(&r);
    /* A chunked body that grows past max_body_bytes (1 MiB) -> 413 and close. */
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
    static char chunk[256 << 10];
    memset(chunk, 'a', sizeof chunk);
    char size_line[32];
    snprintf(size_line, sizeof size_line, "%zx\r\n", sizeof chunk);
    for (int i = 0; i < 5; i++) {
        if (send(c->fd, size_line, strlen(size_line), MSG_NOSIGNAL) <= 0 ||
            send(c->fd, chunk, sizeof chunk, MSG_NOSIGNAL) <= 0 ||
            send(c->fd, "\r\n", 2, MSG_NOSIGNAL) <= 0)
            break; /* the server may stop reading once it has answered */
    }
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 413);
    assert_true(has_header(&r, "Connection: close"));
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    free(c);
}

static void test_length_required_and_too_large(void **state)
{
    (void)state;
    start_default();
    resp_t r;
    char code[64];
    client_t *c = malloc(sizeof *c);
    client_open(c);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 411);
    assert_string_equal(json_error_code(&r, code, sizeof code), "length_required");
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    assert_int_equal(atomic_load(&S.detect_responses), 1);

    /* 413 straight from the headers: the 64 MiB body is never sent, the answer comes
     * at once, and the connection closes within about a second. */
    client_open(c);
    double t0 = now_s();
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Content-Length: 67108864\r\n\r\nsome of the body");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 413);
    assert_true(has_header(&r, "Connection: close"));
    assert_string_equal(json_error_code(&r, code, sizeof code), "too_large");
    assert_true(now_s() - t0 < 0.5);
    resp_free(&r);
    assert_true(closed_by_server(c));
    assert_true(now_s() - t0 < 2.5);
    client_close(c);

    /* Expect: 100-continue: 100 if acceptable, then the real answer; 413 if not. */
    client_open(c);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Content-Length: 7\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 100);
    send_str(c, "delay=1");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* Behind a request still waiting for its job, the 100 comes after that answer; the job
     * takes longer than body_timeout_ms (400), and the body clock only starts at the 100. */
    post(c, "/v1/detect?camera=first", "image/jpeg", "delay=600", 9);
    send_str(c, "POST /v1/detect?camera=second HTTP/1.1\r\nHost: t\r\n"
                "Content-Type: image/jpeg\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "first"));
    resp_free(&r);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 100);
    send_str(c, "delay=1");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "second"));
    resp_free(&r);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Content-Length: 2000000\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    free(c);
}

static void test_header_limit_and_bad_http(void **state)
{
    (void)state;
    start_default(); /* max_header_bytes = 4096 */
    resp_t r;
    char code[64];
    client_t *c = malloc(sizeof *c);
    client_open(c);
    send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
    char big[5000];
    memset(big, 'b', sizeof big);
    send_all(c, big, sizeof big);
    send_str(c, "\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 431);
    assert_string_equal(json_error_code(&r, code, sizeof code), "headers_too_large");
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);

    client_open(c);
    send_str(c, "GARBAGE\x01 / HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(json_error_code(&r, code, sizeof code), "bad_request");
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    free(c);
    /* Answers given before routing still count under the route of their path. */
    assert_int_equal(atomic_load(&S.healthz_responses), 1);
    assert_int_equal(atomic_load(&S.other_responses), 1);
}

static void test_timeouts(void **state)
{
    (void)state;
    start_default(); /* header 400 ms, body 400 ms, idle 600 ms */
    resp_t r;
    char code[64];
    client_t *c = malloc(sizeof *c);
    /* Slowloris: a header line every 100 ms never finishes the headers in time. */
    client_open(c);
    double t0 = now_s();
    send_str(c, "GET /healthz HTTP/1.1\r\n");
    int got = -1;
    for (int i = 0; i < 30 && got != 0; i++) {
        usleep(100000);
        if (send(c->fd, "X-Slow: 1\r\n", 11, MSG_NOSIGNAL) <= 0)
            break;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) == 1)
            got = 0;
    }
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 408);
    assert_string_equal(json_error_code(&r, code, sizeof code), "timeout");
    assert_true(has_header(&r, "Connection: close"));
    resp_free(&r);
    assert_true(closed_by_server(c));
    double took = now_s() - t0;
    assert_true(took > 0.35 && took < 2.0);
    client_close(c);

    /* A body that stops arriving. */
    client_open(c);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Content-Length: 100\r\n\r\nabc");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 408);
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);

    /* An idle keep-alive connection is closed; one waiting for a slow job is not. */
    client_open(c);
    t0 = now_s();
    assert_true(closed_by_server(c));
    took = now_s() - t0;
    assert_true(took > 0.5 && took < 2.0);
    client_close(c);
    client_open(c);
    post(c, "/v1/detect", "image/jpeg", "delay=900", 9);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    client_close(c);
    free(c);
}

static void test_max_connections(void **state)
{
    (void)state;
    gw_config_t cfg;
    cfg_defaults(&cfg);
    cfg.max_connections = 3;
    server_start(&cfg);
    client_t *cs = malloc(4 * sizeof *cs);
    resp_t r;
    char code[64];
    for (int i = 0; i < 3; i++) {
        client_open(&cs[i]);
        send_str(&cs[i], "GET /healthz HTTP/1.1\r\n\r\n");
        assert_int_equal(read_resp(&cs[i], &r), 0);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    client_open(&cs[3]);
    assert_int_equal(read_resp(&cs[3], &r), 0);
    assert_int_equal(r.status, 503);
    assert_true(has_header(&r, "Retry-After: 7"));
    assert_string_equal(json_error_code(&r, code, sizeof code), "overloaded");
    resp_free(&r);
    assert_true(closed_by_server(&cs[3]));
    client_close(&cs[3]);
    wait_until(&S.conns, 3, 2);
    /* Once one closes, a new connection is served again. */
    client_close(&cs[0]);
    wait_until(&S.conns, 2, 2);
    client_open(&cs[0]);
    send_str(&cs[0], "GET /healthz HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(&cs[0], &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    for (int i = 0; i < 3; i++)
        client_close(&cs[i]);
    free(cs);
}

static void test_json_base64(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    resp_t r;
    /* "delay=3 ?>" in standard base64 has a '+'; url-safe has '-'; and a data URL. */
    static const char *bodies[] = {
        "{\"image\":\"ZGVsYXk9MyA/Pg==\",\"camera\":\"jc\",\"ts\":99,\"threshold\":0.25}",
        "{\"image\":\"ZGVsYXk9MyA_Pg\",\"camera\":\"jc\"}",
        "{\"image\":\"data:image/jpeg;base64,ZGVsYXk9MyA/Pg==\",\"camera\":\"jc\"}",
    };
    for (int i = 0; i < 3; i++) {
        post(c, "/v1/detect?camera=q", "application/json; charset=utf-8", bodies[i],
             strlen(bodies[i]));
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "\"camera\":\"jc\""));
        assert_int_equal(atomic_load(&S.last_image_len), 10);
        resp_free(&r);
    }
    /* Camera from the query when the JSON has none. */
    post(c, "/v1/detect?camera=q", "application/json", "{\"image\":\"eA==\"}", 16);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"camera\":\"q\""));
    resp_free(&r);
    client_close(c);
    free(c);
}

static void test_multipart(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    resp_t r;
    char code[64];
    const char *ct = "multipart/form-data; boundary=XyZ";
    const char *two = "--XyZ\r\nContent-Disposition: form-data; name=\"camera\"\r\n\r\nyard\r\n"
                      "--XyZ\r\nContent-Disposition: form-data; name=\"a\"; filename=\"a.jpg\"\r\n"
                      "Content-Type: image/jpeg\r\n\r\ndelay=20\r\n"
                      "--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\ndelay=1\r\n"
                      "--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n"
                      "--XyZ--\r\n";
    post(c, "/v1/detect", ct, two, strlen(two));
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *root = cJSON_Parse(r.body);
    const cJSON *res = cJSON_GetObjectItem(root, "results");
    assert_int_equal(cJSON_GetArraySize(res), 2);
    for (int i = 0; i < 2; i++) {
        const cJSON *o = cJSON_GetArrayItem(res, i);
        assert_string_equal(cJSON_GetObjectItem(o, "camera")->valuestring, "yard");
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "detections")), 1);
    }
    cJSON_Delete(root);
    resp_free(&r);
    /* One part fails: the status is the first failure's, each result says its own. */
    const char *mixed = "--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nok\r\n"
                        "--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n"
                        "status=503\r\n--XyZ--\r\n";
    post(c, "/v1/detect", ct, mixed, strlen(mixed));
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 503);
    assert_true(has_header(&r, "Retry-After: 7"));
    root = cJSON_Parse(r.body);
    res = cJSON_GetObjectItem(root, "results");
    assert_int_equal(cJSON_GetArraySize(res), 2);
    assert_non_null(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 0), "detections"));
    assert_non_null(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 1), "error"));
    cJSON_Delete(root);
    resp_free(&r);
    /* The second submit is refused: the answer waits for the first job, then says why. */
    const char *refused = "--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n"
                          "delay=50\r\n--XyZ\r\nContent-Disposition: form-data; "
                          "name=\"image\"\r\n\r\nqfull\r\n--XyZ--\r\n";
    int done0 = atomic_load(&S.done);
    post(c, "/v1/detect", ct, refused, strlen(refused));
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 503);
    assert_string_equal(json_error_code(&r, code, sizeof code), "queue_full");
    assert_int_equal(atomic_load(&S.done), done0 + 1);
    resp_free(&r);
    /* No image part; truncated body. */
    const char *noimg = "--XyZ\r\nContent-Disposition: form-data; name=\"camera\"\r\n\r\n"
                        "x\r\n--XyZ--\r\n";
    post(c, "/v1/detect", ct, noimg, strlen(noimg));
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(json_error_code(&r, code, sizeof code), "no_image");
    resp_free(&r);
    const char *trunc = "--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc";
    post(c, "/v1/detect", ct, trunc, strlen(trunc));
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(json_error_code(&r, code, sizeof code), "bad_multipart");
    resp_free(&r);
    client_close(c);
    free(c);
}

static void test_hangup_with_job_out(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    /* The client leaves while its jobs (one plain, two pipelined) are out. */
    client_open(c);
    post(c, "/v1/detect", "image/jpeg", "delay=150", 9);
    post(c, "/v1/detect", "image/jpeg", "delay=100", 9);
    wait_until(&S.submitted, 2, 2);
    client_close(c);
    wait_until(&S.done, 2, 2);
    wait_until(&S.conns, 0, 2);
    /* The client half-closes after its request: it still gets its answer. */
    client_open(c);
    post(c, "/v1/detect", "image/jpeg", "delay=50", 8);
    shutdown(c->fd, SHUT_WR);
    resp_t r;
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    /* More pipelined requests than max_pipelined (4), then a half-close: all answered. */
    client_open(c);
    char all[1024];
    size_t n = 0;
    for (int i = 0; i < 9; i++)
        n += (size_t)snprintf(all + n, sizeof all - n, "GET /healthz HTTP/1.1\r\n\r\n");
    send_all(c, all, n);
    shutdown(c->fd, SHUT_WR);
    for (int i = 0; i < 9; i++) {
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    assert_true(closed_by_server(c));
    client_close(c);
    /* Slow jobs keep the parser paused with input left over, which ends in a partial
     * request: the answers, then EOF without waiting for a 408. */
    client_open(c);
    n = 0;
    for (int i = 0; i < 6; i++)
        n += (size_t)snprintf(all + n, sizeof all - n,
                              "POST /v1/detect HTTP/1.1\r\nContent-Type: image/jpeg\r\n"
                              "Content-Length: 8\r\n\r\ndelay=30");
    send_all(c, all, n);
    send_str(c, "GET /healthz HTTP/1.1\r\nHost:");
    double t0 = now_s();
    shutdown(c->fd, SHUT_WR);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    assert_int_equal(c->len, 0);
    assert_int_equal(fill(c), 0);    /* EOF, and no 408 for the partial request */
    assert_true(now_s() - t0 < 0.3); /* header_timeout_ms is 400 */
    client_close(c);
    /* A half-close in the middle of a request: nothing to answer, the server closes. */
    client_open(c);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    shutdown(c->fd, SHUT_WR);
    assert_true(closed_by_server(c));
    client_close(c);
    free(c);
}

static void test_stop_drains(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(2 * sizeof *c);
    client_open(&c[0]);
    client_open(&c[1]); /* idle: closed at stop */
    post(&c[0], "/v1/detect", "image/jpeg", "delay=200", 9);
    wait_until(&S.submitted, 1, 2);
    S.stop_sent = 1;
    uv_async_send(&S.stop_async);
    assert_true(closed_by_server(&c[1]));
    /* Requests pipelined after the stop: the first is answered as the last one, the
     * rest are not read. */
    send_str(&c[0], "GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n");
    resp_t r;
    assert_int_equal(read_resp(&c[0], &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"id\""));
    assert_true(has_header(&r, "Connection: keep-alive"));
    resp_free(&r);
    assert_int_equal(read_resp(&c[0], &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    assert_true(has_header(&r, "Connection: close"));
    resp_free(&r);
    assert_int_equal(c[0].len, 0);
    assert_int_equal(fill(&c[0]), 0); /* EOF with nothing more: the third is not answered */
    client_close(&c[0]);
    client_close(&c[1]);
    free(c);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the gateway does: a write to a gone client is EPIPE */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_keepalive_and_get_routes, teardown),
        cmocka_unit_test_teardown(test_detect_json, teardown),
        cmocka_unit_test_teardown(test_detect_errors, teardown),
        cmocka_unit_test_teardown(test_pipelining_in_order, teardown),
        cmocka_unit_test_teardown(test_chunked, teardown),
        cmocka_unit_test_teardown(test_length_required_and_too_large, teardown),
        cmocka_unit_test_teardown(test_header_limit_and_bad_http, teardown),
        cmocka_unit_test_teardown(test_timeouts, teardown),
        cmocka_unit_test_teardown(test_max_connections, teardown),
        cmocka_unit_test_teardown(test_json_base64, teardown),
        cmocka_unit_test_teardown(test_multipart, teardown),
        cmocka_unit_test_teardown(test_hangup_with_job_out, teardown),
        cmocka_unit_test_teardown(test_stop_drains, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
