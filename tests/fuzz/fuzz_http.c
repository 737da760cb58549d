/* The HTTP front (gateway/server.h), bytes in through a real socket: one gw_server with fake
 * ops listens on 127.0.0.1:0 on a loop this thread drives. Per input: connect, write the
 * bytes, shutdown(SHUT_WR), and drive uv_run(UV_RUN_NOWAIT) while reading the answer until
 * EOF; then close and wait for the server to drop the connection. Jobs the server submits
 * are completed by the driver between loop steps (never inside submit), with an outcome
 * chosen by the image's first byte. Nothing waits on a timer: the server's timeouts are
 * longer than any input takes, so a run is reproducible.
 *
 * Properties, besides ASan/UBSan/LSan staying quiet:
 *  - the server answers and closes a half-closed connection (no progress for 5 s = a hang);
 *  - the answers are well-formed HTTP/1.1 responses with a known status and a complete
 *    Content-Length body (unless the server reset the connection), nothing after an answer
 *    that says "Connection: close";
 *  - no more final answers than requests begun in the input (counted by a second llhttp
 *    parser), plus one for a malformed tail: every answer belongs to a request.
 *
 * Everything that depends on gateway/server.h and gateway/job.h is in the adapter section
 * below, so a change of the server API touches only that. It uses: gw_server_create, _start,
 * _port, _connections, _stop, _destroy; gw_server_ops_t's routes, nroutes, on_response (and
 * on_drained = NULL); gw_route_t; gw_respond (response.h) for the fake GET routes;
 * gw_detect_t and gw_detect_handle (detect.h), the real detect handler, over a fake submit;
 * of gw_job_t the inputs image, image_len, opts.model, on_done and the results err,
 * error_msg, backend, model_name, id, attempts, queue_ms, infer_ms, total_ms, rep, rep_buf,
 * rep_len; and the gw_config_t HTTP keys; the front door (frontdoor.h: gw_frontdoor_create,
 * _admit, _connect, _disconnect, _destroy; gw_route_t.allow) over a token file in a memfd. The
 * driver below it uses only the socket, the loop and adapter_*(). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "err.h"
#include "fuzz.h"
#include "msg.h"
#include "auth.h"
#include "detect.h"
#include "frontdoor.h"
#include "response.h"
#include "server.h"

#define RESP_KEEP (1u << 20) /* answer bytes kept for the checks */
#define HANG_NS (5ull * 1000 * 1000 * 1000)

static uv_loop_t loop;

/* ======================= adapter: the server API and the fake ops ======================= */

#define PENDING_MAX 256 /* max_pipelined x 16 images, with room */

static gw_config_t cfg;
static gw_server_t *srv;
static gw_job_t *pending[PENDING_MAX];
static int npending;

/* Refuses by the image's first byte or the model's name (the codes a pool returns), else
 * queues the job for adapter_complete_jobs(): on_done never runs inside submit. */
static int fake_submit(void *ctx, gw_job_t *job)
{
    (void)ctx;
    FUZZ_CHECK(job->image != NULL && job->image_len > 0 && job->on_done != NULL);
    if (job->image[0] == 'Q' || npending == PENDING_MAX)
        return PROTO_EQUEUEFULL;
    if (job->image[0] == 'B')
        return PROTO_ENOBACKEND;
    if (strcmp(job->opts.model, "nope") == 0)
        return PROTO_ENOMODEL;
    pending[npending++] = job;
    return 0;
}

/* GET routes besides the built-in /healthz: fixed answers, one with Retry-After. */
static void fake_metrics(void *ctx, gw_req_t *req)
{
    (void)ctx;
    char *body = strdup("fake_metric 1\n");
    FUZZ_CHECK(body != NULL);
    gw_respond(req, 200, "text/plain; version=0.0.4", body, strlen(body), NULL);
}

static void fake_readyz(void *ctx, gw_req_t *req)
{
    (void)ctx;
    char *body = strdup("{\"ready\":false}");
    FUZZ_CHECK(body != NULL);
    gw_respond(req, 503, "application/json", body, strlen(body), "Retry-After: 3\r\n");
}

static void fake_models(void *ctx, gw_req_t *req)
{
    (void)ctx;
    char *body = strdup("{\"models\":[\"face\"]}");
    FUZZ_CHECK(body != NULL);
    gw_respond(req, 200, "application/json", body, strlen(body), NULL);
}

static void fake_on_response(void *ctx, const char *route, int status, double seconds)
{
    (void)ctx;
    FUZZ_CHECK(route != NULL && status >= 100 && status <= 599 && seconds >= 0);
}

/* The real detect handler over the fake submit. */
static const gw_detect_t fake_detect = {.submit = fake_submit, .ctx = NULL};

static const gw_route_t fake_routes[] = {
    {"POST", "/v1/detect", "detect", gw_detect_handle, (void *)&fake_detect, 0},
    {"POST", "/v1/models/*/detect", "detect", gw_detect_handle, (void *)&fake_detect, 0},
    {"GET", "/metrics", "metrics", fake_metrics, NULL, 0},
    {"GET", "/readyz", "readyz", fake_readyz, NULL, 0},
    {"GET", "/v1/models", "models", fake_models, NULL, 0},
    /* behind the front door (frontdoor.h): a token of the right role, or 401/403 */
    {"POST", "/p/detect", "detect", gw_detect_handle, (void *)&fake_detect, GW_ROLE_CAMERA},
    {"GET", "/p/cameras/*/x", "cameras", fake_models, NULL, GW_ROLE_VIEWER | GW_ALLOW_OWN_CAMERA},
    {"GET", "/p/admin", "admin", fake_metrics, NULL, GW_ROLE_ADMIN},
};

static const char tokens_text[] = "fuzz-camera-01 camera cam1\n"
                                  "fuzz-viewer-01 viewer\n"
                                  "fuzz-admin-001 admin ops\n";

static gw_frontdoor_t *door;

static gw_server_ops_t fake_ops = {
    .routes = fake_routes,
    .nroutes = sizeof fake_routes / sizeof fake_routes[0],
    .on_response = fake_on_response,
    .on_drained = NULL,
    .admit = gw_frontdoor_admit,
    .connect = gw_frontdoor_connect,
    .disconnect = gw_frontdoor_disconnect,
};

/* A backend's answer, by the image's first byte: detections, classes, or a failure. */
static void complete(gw_job_t *job)
{
    static const proto_det_t dets[2] = {
        {.class_id = 16,
         .confidence = 0.91f,
         .x = 10,
         .y = 20,
         .w = 30,
         .h = 40,
         .label = "dog",
         .label_len = 3},
        {.class_id = 1, .confidence = 0.5f, .label = "\xff\xfe\x01\"\\", .label_len = 5}};
    static const int failures[] = {PROTO_EIMAGE, PROTO_EIMGSIZE, PROTO_EFORMAT, PROTO_ECORRUPT};
    int outcome = job->image[0] & 7;
    if (outcome >= 5) {
        job->err = outcome == 5   ? PROTO_EBACKEND
                   : outcome == 6 ? PROTO_EDEADLINE
                                  : failures[job->image_len % 4];
        /* Raw image bytes in the message: the answer must escape them. */
        size_t n = job->image_len < 40 ? job->image_len : 40;
        memcpy(job->error_msg, job->image, n);
        job->error_msg[n] = '\0';
    } else {
        proto_rep_t rep = {.type = PROTO_T_RESULT,
                           .id = 77,
                           .width = 640,
                           .height = 480,
                           .kind = outcome == 4 ? PROTO_KIND_CLASSES : PROTO_KIND_DETECT,
                           .ndet = outcome == 4 ? 2 : 1,
                           .dets = dets,
                           .payload = (const uint8_t *)"dog",
                           .payload_len = 3};
        size_t cap = (size_t)proto_rep_size(&rep), len = 0;
        job->rep_buf = malloc(cap);
        FUZZ_CHECK(job->rep_buf != NULL);
        FUZZ_CHECK(proto_rep_encode(&rep, job->rep_buf, cap, &len) == 0);
        job->rep_len = len;
        FUZZ_CHECK(proto_rep_decode(&job->rep, job->rep_buf, len) == 0);
        job->err = 0;
        snprintf(job->model_name, sizeof job->model_name, "%s",
                 job->opts.model[0] != '\0' ? job->opts.model : "face");
    }
    snprintf(job->backend, sizeof job->backend, "fake-1");
    job->id = 77;
    job->attempts = 1;
    job->queue_ms = 1.5;
    job->infer_ms = 2.5;
    job->total_ms = 4;
    job->on_done(job);
}

/* Completes every job out; returns how many (progress for the hang check). */
static int adapter_complete_jobs(void)
{
    int n = 0;
    while (npending > 0) {
        gw_job_t *job = pending[--npending];
        complete(job); /* may submit nothing: on_done only answers and flushes */
        n++;
    }
    return n;
}

static int adapter_connections(void)
{
    return gw_server_connections(srv);
}

static void adapter_destroy(void)
{
    gw_server_stop(srv);
    gw_server_destroy(srv);
    srv = NULL;
    gw_frontdoor_destroy(door);
    door = NULL;
}

/* Starts the server on `loop`; returns the port. */
static int adapter_start(uv_loop_t *lp)
{
    gw_config_defaults(&cfg);
    snprintf(cfg.listen_host, sizeof cfg.listen_host, "127.0.0.1");
    cfg.listen_port = 0;
    cfg.max_connections = 8;
    cfg.max_header_bytes = 4096;
    cfg.max_body_bytes = 256 << 10;
    cfg.max_pipelined = 4;
    /* Longer than any input runs: no answer depends on timing. */
    cfg.header_timeout_ms = cfg.body_timeout_ms = cfg.idle_timeout_ms = 600000;
    cfg.retry_after_s = 7;
    /* Tokens from a memfd; no rate limits (they depend on time, runs must not). */
    int tfd = memfd_create("fuzz_http_tokens", 0);
    FUZZ_CHECK(tfd >= 0 && write(tfd, tokens_text, sizeof tokens_text - 1) ==
                               (ssize_t)(sizeof tokens_text - 1));
    snprintf(cfg.tokens_file, sizeof cfg.tokens_file, "/proc/self/fd/%d", tfd);
    char err[256];
    FUZZ_CHECK(gw_frontdoor_create(&door, lp, &cfg, NULL, err, sizeof err) == 0);
    fake_ops.door = door;
    FUZZ_CHECK(gw_server_create(&srv, lp, &cfg, &fake_ops, NULL) == 0);
    FUZZ_CHECK(gw_server_start(srv) == 0);
    int port = gw_server_port(srv);
    FUZZ_CHECK(port > 0);
    return port;
}

/* ============================ the driver (no server API) ============================ */

static int port;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void teardown(void)
{
    adapter_destroy();
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    FUZZ_CHECK(uv_loop_init(&loop) == 0);
    port = adapter_start(&loop);
    atexit(teardown);
    return 0;
}

/* Waits a little for the client socket or the loop when nothing moved; not at all while
 * the loop has work that needs no I/O (close callbacks, pending writes' callbacks). */
static void idle_wait(int fd, int want_write)
{
    if (uv_backend_timeout(&loop) == 0)
        return;
    struct pollfd p[2] = {{.fd = fd, .events = (short)(POLLIN | (want_write ? POLLOUT : 0))},
                          {.fd = uv_backend_fd(&loop), .events = POLLIN}};
    poll(p, 2, 1); /* a negative fd is ignored */
}

/* ---- counting the requests in the input, as llhttp sees them ---- */

#define METHODS_MAX 256

static int begun;
static int methods[METHODS_MAX]; /* of the requests in order, -1 until their headers end */

static int count_begin(llhttp_t *p)
{
    (void)p;
    if (begun < METHODS_MAX)
        methods[begun] = -1;
    begun++;
    return 0;
}

static int note_method(llhttp_t *p)
{
    if (begun > 0 && begun <= METHODS_MAX)
        methods[begun - 1] = llhttp_get_method(p);
    return 0;
}

/* Requests begun, and whether the input ends in a parse error (which gets one answer more);
 * an upgrade ends the HTTP part of the stream without an error. */
static int requests_in(const uint8_t *data, size_t size, int *malformed)
{
    llhttp_settings_t s;
    llhttp_t p;
    llhttp_settings_init(&s);
    s.on_message_begin = count_begin;
    s.on_headers_complete = note_method;
    llhttp_init(&p, HTTP_REQUEST, &s);
    begun = 0;
    llhttp_errno_t e = llhttp_execute(&p, (const char *)data, size);
    *malformed = e != HPE_OK && e != HPE_PAUSED_UPGRADE;
    return begun;
}

/* ---- checking the answers ---- */

static int known_status(int s)
{
    static const int ok[] = {100, 200, 400, 401, 403, 404, 405, 408, 411,
                             413, 415, 429, 431, 501, 502, 503, 504};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (s == ok[i])
            return 1;
    return 0;
}

/* Value of header `name` in head[0..len) (CRLF lines), or NULL. */
static const char *header(const char *head, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *p = memchr(head, '\n', len), *end = head + len;
    while (p != NULL && p + 1 < end) {
        p++;
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (v < eol && *v == ' ')
                v++;
            *vlen = (size_t)(eol - v);
            return v;
        }
        p = memchr(p, '\n', (size_t)(end - p));
    }
    return NULL;
}

static void check_answers(const char *r, size_t len, int complete, int requests, int malformed)
{
    size_t off = 0;
    int finals = 0, closed = 0;
    while (off < len) {
        FUZZ_CHECK(!closed); /* nothing after "Connection: close" */
        const char *head = r + off;
        size_t left = len - off;
        const char *hend = memmem(head, left, "\r\n\r\n", 4);
        if (hend == NULL) {
            FUZZ_CHECK(!complete); /* cut only by a reset */
            break;
        }
        size_t hlen = (size_t)(hend - head) + 4;
        FUZZ_CHECK(hlen > 13 && memcmp(head, "HTTP/1.1 ", 9) == 0 && head[12] == ' ');
        int status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
        FUZZ_CHECK(known_status(status));
        off += hlen;
        if (status == 100)
            continue;
        finals++;
        size_t vlen;
        const char *cl = header(head, hlen, "Content-Length", &vlen);
        FUZZ_CHECK(cl != NULL && vlen > 0 && vlen < 10);
        size_t body = 0;
        for (size_t i = 0; i < vlen; i++) {
            FUZZ_CHECK(cl[i] >= '0' && cl[i] <= '9');
            body = body * 10 + (size_t)(cl[i] - '0');
        }
        const char *conn = header(head, hlen, "Connection", &vlen);
        FUZZ_CHECK(conn != NULL);
        closed = vlen == 5 && memcmp(conn, "close", 5) == 0;
        /* The answer to HEAD has the length of the body it does not send. */
        if (finals <= METHODS_MAX && finals <= begun && methods[finals - 1] == HTTP_HEAD)
            body = 0;
        if (body > len - off) {
            FUZZ_CHECK(!complete);
            break;
        }
        off += body;
    }
    if (finals > requests + malformed)
        fprintf(stderr, "%d answers to %d requests (%s):\n%.*s\n", finals, requests,
                malformed ? "malformed" : "well-formed", (int)(len < 4096 ? len : 4096), r);
    FUZZ_CHECK(finals <= requests + malformed);
}

/* ---- one input ---- */

static int connect_client(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    FUZZ_CHECK(fd >= 0);
    /* A new source address per input (127.1.0.1 .. 127.1.255.254, all loopback): the client
     * closes last, so each input leaves a socket in TIME_WAIT, and one source address has
     * only ~28k ports for them. */
    static uint32_t n;
    struct sockaddr_in src = {.sin_family = AF_INET};
    n = n % (255u * 254u) + 1;
    src.sin_addr.s_addr = htonl(0x7f010000u | (n / 254) << 8 | (n % 254 + 1));
    FUZZ_CHECK(bind(fd, (struct sockaddr *)&src, sizeof src) == 0);
    /* Blocking connect: on loopback the kernel completes it from the listen backlog. */
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        /* A signal (libFuzzer's timers) can interrupt it; the connection still completes in
         * the background: wait for it and read its result. */
        int err = errno;
        if (err == EINTR) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            socklen_t elen = sizeof err;
            while (poll(&pf, 1, 5000) < 0 && errno == EINTR)
                ;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
                err = errno;
        }
        if (err != 0) {
            fprintf(stderr, "connect to 127.0.0.1:%d: %s\n", port, strerror(err));
            FUZZ_CHECK(!"connect");
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    FUZZ_CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char resp[RESP_KEEP];
    size_t rlen = 0, sent = 0;
    int fd = connect_client(), shut = 0, eof = 0, reset = 0;
    uint64_t last = now_ns();

    while (!eof) {
        uv_run(&loop, UV_RUN_NOWAIT);
        int progress = adapter_complete_jobs();
        if (sent < size) {
            ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                sent += (size_t)n;
                progress++;
            } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                sent = size; /* the server closed: the rest cannot be sent */
            }
        }
        if (sent == size && !shut) {
            shutdown(fd, SHUT_WR);
            shut = 1;
            progress++;
        }
        for (;;) {
            char buf[16384];
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) {
                size_t keep = (size_t)n < RESP_KEEP - rlen ? (size_t)n : RESP_KEEP - rlen;
                memcpy(resp + rlen, buf, keep);
                rlen += keep;
                progress++;
                continue;
            }
            if (n == 0)
                eof = 1;
            else if (errno == ECONNRESET || errno == EPIPE)
                eof = reset = 1;
            break;
        }
        if (progress > 0) {
            last = now_ns();
        } else {
            if (now_ns() - last > HANG_NS) {
                fprintf(stderr,
                        "hang: no answer or close for 5 s (sent %zu of %zu bytes, "
                        "%zu answer bytes)\n",
                        sent, size, rlen);
                FUZZ_CHECK(!"the server neither answers nor closes a half-closed connection");
            }
            idle_wait(fd, sent < size);
        }
    }
    close(fd);

    /* The server sees the close and drops the connection. */
    last = now_ns();
    while (adapter_connections() > 0) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (adapter_complete_jobs() > 0)
            last = now_ns();
        if (now_ns() - last > HANG_NS)
            FUZZ_CHECK(!"the server keeps a closed connection");
        idle_wait(-1, 0);
    }
    FUZZ_CHECK(npending == 0);

    int malformed;
    int requests = requests_in(data, size, &malformed);
    if (getenv("FUZZ_HTTP_DUMP") != NULL) /* for triage: what came back */
        fprintf(stderr, "%d request(s)%s, %zu answer bytes%s:\n%.*s\n", requests,
                malformed ? " + malformed tail" : "", rlen, reset ? " (reset)" : "", (int)rlen,
                resp);
    check_answers(resp, rlen, !reset && rlen < RESP_KEEP, requests, malformed);
    return 0;
}
