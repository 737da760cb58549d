/* The load engine end to end against a tiny libuv HTTP responder running on its own thread
 * in this process (127.0.0.1, an ephemeral port): the bench's counts equal what the server
 * saw, bodies are well formed in every mode, failures land in the right kind, the backends
 * poll reaches the CSV, runs are bounded, and the open loop measures from intended times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <llhttp.h>
#include <uv.h>

#include "load.h"

#define JPEG FG_DARKNET_DATA "/dog.jpg"

/* ---- the responder ---- */

enum { SRV_OK, SRV_FAIL_EVERY_3, SRV_CLOSE_EACH, SRV_SILENT, SRV_DELAY_50MS };

typedef struct {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t stop;
    uv_thread_t thread;
    llhttp_settings_t settings;
    int port, mode;
    bench_body_mode_t body_mode;
    size_t file_len;
    /* Written by the server thread, read by the test after the join. */
    int requests, ok_sent, fail_sent, backends_gets, connections, detect_conns, bad;
    uint64_t cameras; /* bit n: cam-n was seen */
} server_t;

typedef struct {
    uv_tcp_t tcp;
    uv_timer_t delay;
    llhttp_t p;
    server_t *s;
    char url[256], field[64], value[256], ctype[256];
    size_t url_len, field_len, value_len;
    char *body;
    size_t blen, bcap;
    int carried_detect, handles;
} sconn_t;

static const char resp_ok[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              "Content-Length: 17\r\n\r\n{\"detections\":[]}";
static const char resp_ok_close[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n"
                                    "Content-Length: 17\r\n\r\n{\"detections\":[]}";
static const char resp_503[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
static const char resp_backends[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
    "Content-Length: 85\r\n\r\n{\"backends\":[{\"state\":\"starting\"},{\"state\":\"ready\"},"
    "{\"state\":\"ready\"},{\"state\":\"x\"}]}";

static void on_sconn_closed(uv_handle_t *h)
{
    sconn_t *c = h->data;
    if (--c->handles == 0) {
        free(c->body);
        free(c);
    }
}

static void sconn_close(sconn_t *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, on_sconn_closed);
        uv_close((uv_handle_t *)&c->delay, on_sconn_closed);
    }
}

typedef struct {
    uv_write_t w;
    sconn_t *c;
    int close_after;
} swrite_t;

static void on_swrite(uv_write_t *w, int status)
{
    swrite_t *sw = (swrite_t *)w;
    if (status == 0 && sw->close_after)
        sconn_close(sw->c);
    free(sw);
}

static void send_str(sconn_t *c, const char *s, int close_after)
{
    swrite_t *sw = malloc(sizeof *sw);
    uv_buf_t b = uv_buf_init((char *)s, (unsigned)strlen(s));
    sw->c = c;
    sw->close_after = close_after;
    if (uv_write(&sw->w, (uv_stream_t *)&c->tcp, &b, 1, on_swrite) != 0)
        free(sw);
}

static int s_on_url(llhttp_t *p, const char *at, size_t n)
{
    sconn_t *c = p->data;
    if (c->url_len + n < sizeof c->url) {
        memcpy(c->url + c->url_len, at, n);
        c->url_len += n;
        c->url[c->url_len] = '\0';
    }
    return 0;
}

static int s_on_field(llhttp_t *p, const char *at, size_t n)
{
    sconn_t *c = p->data;
    if (c->field_len + n < sizeof c->field) {
        memcpy(c->field + c->field_len, at, n);
        c->field_len += n;
        c->field[c->field_len] = '\0';
    }
    return 0;
}

static int s_on_value(llhttp_t *p, const char *at, size_t n)
{
    sconn_t *c = p->data;
    if (c->value_len + n < sizeof c->value) {
        memcpy(c->value + c->value_len, at, n);
        c->value_len += n;
        c->value[c->value_len] = '\0';
    }
    return 0;
}

static int s_on_value_complete(llhttp_t *p)
{
    sconn_t *c = p->data;
    if (strcasecmp(c->field, "content-type") == 0)
        snprintf(c->ctype, sizeof c->ctype, "%s", c->value);
    c->field_len = c->value_len = 0;
    c->field[0] = c->value[0] = '\0';
    return 0;
}

static int s_on_body(llhttp_t *p, const char *at, size_t n)
{
    sconn_t *c = p->data;
    if (c->blen + n > c->bcap) {
        c->bcap = (c->blen + n) * 2;
        c->body = realloc(c->body, c->bcap);
    }
    memcpy(c->body + c->blen, at, n);
    c->blen += n;
    return 0;
}

static const unsigned char *find(const char *hay, size_t n, const char *needle)
{
    return memmem(hay, n, needle, strlen(needle));
}

/* Is this a well-formed frame request for the mode the bench was started with? */
static int valid_detect(sconn_t *c)
{
    server_t *s = c->s;
    const char *cam = strstr(c->url, "camera=cam-");
    if (strncmp(c->url, "/v1/detect?", 11) != 0 || cam == NULL)
        return 0;
    int id = atoi(cam + 11);
    if (id >= 0 && id < 64)
        s->cameras |= 1ull << id;
    if (s->body_mode == BODY_RAW)
        return strcmp(c->ctype, "image/jpeg") == 0 && c->blen == s->file_len &&
               (unsigned char)c->body[0] == 0xff && (unsigned char)c->body[1] == 0xd8;
    if (s->body_mode == BODY_BASE64) {
        cJSON *j = cJSON_ParseWithLength(c->body, c->blen);
        const cJSON *img = cJSON_GetObjectItem(j, "image"),
                    *camj = cJSON_GetObjectItem(j, "camera");
        int ok = strcmp(c->ctype, "application/json") == 0 && cJSON_IsString(img) &&
                 strlen(img->valuestring) == (s->file_len + 2) / 3 * 4 &&
                 strncmp(img->valuestring, "/9j/", 4) == 0 && cJSON_IsString(camj) &&
                 atoi(camj->valuestring + 4) == id;
        cJSON_Delete(j);
        return ok;
    }
    const char *b = strstr(c->ctype, "boundary=");
    if (strncmp(c->ctype, "multipart/form-data", 19) != 0 || b == NULL)
        return 0;
    char open[128], close[128];
    snprintf(open, sizeof open, "--%s\r\n", b + 9);
    snprintf(close, sizeof close, "\r\n--%s--\r\n", b + 9);
    const unsigned char *jpeg = find(c->body, c->blen, "\r\n\r\n\xff\xd8");
    return c->blen > s->file_len && memcmp(c->body, open, strlen(open)) == 0 &&
           find(c->body, c->blen, "name=\"image\"") != NULL && jpeg != NULL &&
           c->blen >= strlen(close) &&
           memcmp(c->body + c->blen - strlen(close), close, strlen(close)) == 0 &&
           (size_t)(c->blen - strlen(close) - ((const char *)jpeg + 4 - c->body)) == s->file_len;
}

static void answer(sconn_t *c)
{
    server_t *s = c->s;
    if (s->mode == SRV_FAIL_EVERY_3 && s->requests % 3 == 0) {
        s->fail_sent++;
        send_str(c, resp_503, 0);
        return;
    }
    s->ok_sent++;
    send_str(c, s->mode == SRV_CLOSE_EACH ? resp_ok_close : resp_ok, s->mode == SRV_CLOSE_EACH);
}

static void on_delay(uv_timer_t *t)
{
    answer(t->data);
}

static int s_on_complete(llhttp_t *p)
{
    sconn_t *c = p->data;
    server_t *s = c->s;
    if (strcmp(c->url, "/v1/backends") == 0) {
        s->backends_gets++;
        send_str(c, resp_backends, 1);
    } else {
        s->requests++;
        if (!c->carried_detect) {
            c->carried_detect = 1;
            s->detect_conns++;
        }
        if (!valid_detect(c))
            s->bad++;
        if (s->mode == SRV_DELAY_50MS)
            uv_timer_start(&c->delay, on_delay, 50, 0);
        else if (s->mode != SRV_SILENT)
            answer(c);
    }
    c->url_len = c->blen = 0;
    c->url[0] = c->ctype[0] = '\0';
    return 0;
}

static void s_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(sz);
    buf->len = sz;
}

static void s_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    sconn_t *c = st->data;
    if (n < 0)
        sconn_close(c);
    else if (n > 0 && llhttp_execute(&c->p, buf->base, (size_t)n) != HPE_OK)
        sconn_close(c);
    free(buf->base);
}

static void on_connection(uv_stream_t *l, int status)
{
    server_t *s = l->data;
    if (status < 0)
        return;
    sconn_t *c = calloc(1, sizeof *c);
    c->s = s;
    uv_tcp_init(&s->loop, &c->tcp);
    uv_timer_init(&s->loop, &c->delay);
    c->tcp.data = c->delay.data = c;
    c->handles = 2;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        sconn_close(c);
        return;
    }
    s->connections++;
    llhttp_init(&c->p, HTTP_REQUEST, &s->settings);
    c->p.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, s_alloc, s_on_read);
}

/* Connections close through sconn_close (which frees them); the rest directly. */
static void close_any(uv_handle_t *h, void *arg)
{
    server_t *s = arg;
    if (uv_is_closing(h))
        return;
    if (h == (uv_handle_t *)&s->listener || h == (uv_handle_t *)&s->stop)
        uv_close(h, NULL);
    else
        sconn_close(h->data);
}

static void on_stop(uv_async_t *a)
{
    server_t *s = a->data;
    uv_walk(&s->loop, close_any, s);
}

static void server_thread(void *arg)
{
    server_t *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

static server_t *server_start(int mode, bench_body_mode_t body_mode)
{
    server_t *s = calloc(1, sizeof *s);
    struct sockaddr_in a;
    struct sockaddr_storage name;
    int len = sizeof name;
    s->mode = mode;
    s->body_mode = body_mode;
    FILE *f = fopen(JPEG, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    s->file_len = (size_t)ftell(f);
    fclose(f);
    llhttp_settings_init(&s->settings);
    s->settings.on_url = s_on_url;
    s->settings.on_header_field = s_on_field;
    s->settings.on_header_value = s_on_value;
    s->settings.on_header_value_complete = s_on_value_complete;
    s->settings.on_body = s_on_body;
    s->settings.on_message_complete = s_on_complete;
    assert_int_equal(uv_loop_init(&s->loop), 0);
    uv_tcp_init(&s->loop, &s->listener);
    s->listener.data = s;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&s->listener, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 512, on_connection), 0);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&name, &len);
    s->port = ntohs(((struct sockaddr_in *)&name)->sin_port);
    uv_async_init(&s->loop, &s->stop, on_stop);
    s->stop.data = s;
    assert_int_equal(uv_thread_create(&s->thread, server_thread, s), 0);
    return s;
}

static void server_stop(server_t *s)
{
    uv_async_send(&s->stop);
    uv_thread_join(&s->thread);
    assert_int_equal(uv_loop_close(&s->loop), 0);
}

/* ---- helpers ---- */

static const char *files[] = {JPEG};

static bench_opts_t opts_for(int port, bench_body_mode_t mode)
{
    bench_opts_t o;
    memset(&o, 0, sizeof o);
    snprintf(o.host, sizeof o.host, "127.0.0.1");
    o.port = port;
    snprintf(o.path, sizeof o.path, "/v1/detect");
    o.users = 4;
    o.spawn_rate = 1000;
    o.duration_s = 0.6;
    o.timeout_ms = 5000;
    o.body_mode = mode;
    o.files = files;
    o.nfiles = 1;
    o.quiet = 1;
    return o;
}

static uint64_t failed_http(const bench_counts_t *c)
{
    return bench_counts_failed(c) - c->conn_errors - c->timeouts;
}

/* ---- tests ---- */

static void test_closed_loop_counts_and_csv(void **state)
{
    (void)state;
    server_t *s = server_start(SRV_OK, BODY_RAW);
    char *csv = NULL;
    size_t csvlen = 0;
    bench_opts_t o = opts_for(s->port, BODY_RAW);
    o.duration_s = 2.2;
    o.poll_backends = 1;
    o.csv = open_memstream(&csv, &csvlen);
    bench_result_t r;
    uint64_t t0 = uv_hrtime();
    assert_int_equal(bench_run(&o, &r), 0);
    double took = (double)(uv_hrtime() - t0) / 1e9;
    fclose(o.csv);
    server_stop(s);

    assert_true(took >= 2.2 && took < 4);
    assert_true(r.total.ok > 20);
    assert_int_equal(bench_counts_failed(&r.total), 0);
    assert_int_equal(r.total.ok, s->requests);
    assert_int_equal(s->bad, 0);
    assert_int_equal(s->cameras, 0xf);    /* cam-0 .. cam-3, one per user */
    assert_int_equal(s->detect_conns, 4); /* keep-alive: one connection per user */
    assert_true(s->backends_gets >= 2);
    assert_int_equal(bench_hist_count(r.hist), r.total.ok);
    assert_true(bench_hist_percentile(r.hist, 50) > 0);

    /* Rows add up to the summary; a row after a poll has 1 starting, 2 ready. */
    uint64_t ok_sum = 0;
    int rows = 0, polled = 0;
    char *save = NULL;
    for (char *line = strtok_r(csv, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (rows++ == 0) {
            assert_true(strncmp(line, "second,users,ok,", 16) == 0);
            continue;
        }
        unsigned long long ok;
        int sec, users;
        assert_int_equal(sscanf(line, "%d,%d,%llu", &sec, &users, &ok), 3);
        assert_int_equal(sec, rows - 1);
        ok_sum += ok;
        if (strstr(line, ",1,2,0,0,") != NULL)
            polled++;
    }
    assert_true(rows - 1 >= 3);
    assert_int_equal(ok_sum, r.total.ok);
    assert_true(polled >= 1);
    free(csv);
    bench_result_fini(&r);
    free(s);
}

static void run_mode(bench_body_mode_t mode)
{
    server_t *s = server_start(SRV_OK, mode);
    bench_opts_t o = opts_for(s->port, mode);
    bench_result_t r;
    assert_int_equal(bench_run(&o, &r), 0);
    server_stop(s);
    assert_true(r.total.ok > 5);
    assert_int_equal(r.total.ok, s->requests);
    assert_int_equal(bench_counts_failed(&r.total), 0);
    assert_int_equal(s->bad, 0);
    bench_result_fini(&r);
    free(s);
}

static void test_body_base64(void **state)
{
    (void)state;
    run_mode(BODY_BASE64);
}

static void test_body_multipart(void **state)
{
    (void)state;
    run_mode(BODY_MULTIPART);
}

static void test_http_failures_by_status(void **state)
{
    (void)state;
    server_t *s = server_start(SRV_FAIL_EVERY_3, BODY_RAW);
    bench_opts_t o = opts_for(s->port, BODY_RAW);
    bench_result_t r;
    assert_int_equal(bench_run(&o, &r), 0);
    server_stop(s);
    assert_true(s->fail_sent > 3);
    assert_int_equal(r.total.http_fail[503], s->fail_sent);
    assert_int_equal(failed_http(&r.total), s->fail_sent);
    assert_int_equal(r.total.ok, s->ok_sent);
    assert_int_equal(r.total.conn_errors + r.total.timeouts, 0);
    bench_result_fini(&r);
    free(s);
}

static void test_reconnects_after_close(void **state)
{
    (void)state;
    server_t *s = server_start(SRV_CLOSE_EACH, BODY_RAW);
    bench_opts_t o = opts_for(s->port, BODY_RAW);
    bench_result_t r;
    assert_int_equal(bench_run(&o, &r), 0);
    server_stop(s);
    assert_true(r.total.ok > 10);
    assert_int_equal(r.total.ok, s->requests);
    assert_int_equal(bench_counts_failed(&r.total), 0);
    assert_true(s->connections >= (int)r.total.ok); /* a new connection for every request */
    bench_result_fini(&r);
    free(s);
}

static void test_timeouts_are_bounded(void **state)
{
    (void)state;
    server_t *s = server_start(SRV_SILENT, BODY_RAW);
    bench_opts_t o = opts_for(s->port, BODY_RAW);
    o.users = 3;
    o.duration_s = 0.3;
    o.timeout_ms = 200;
    bench_result_t r;
    uint64_t t0 = uv_hrtime();
    assert_int_equal(bench_run(&o, &r), 0);
    double took = (double)(uv_hrtime() - t0) / 1e9;
    server_stop(s);
    /* Each user times out at 0.2 s, reconnects, sends again; that one is still unanswered
     * 0.2 s after the end and counts as a timeout too. */
    /* Seconds of slack for a loaded or TSan run; the bug (no bound) would wait for ever. */
    assert_true(took < 0.3 + 0.2 + 2.5);
    assert_int_equal(r.total.ok, 0);
    assert_true(r.total.timeouts >= 3);
    assert_int_equal(r.total.timeouts, s->requests);
    assert_int_equal(bench_counts_failed(&r.total), r.total.timeouts);
    bench_result_fini(&r);
    free(s);
}

static void test_connection_refused(void **state)
{
    (void)state;
    /* A port nobody listens on: bind one, then close it. */
    uv_loop_t loop;
    uv_tcp_t t;
    struct sockaddr_in a;
    struct sockaddr_storage name;
    int len = sizeof name;
    uv_loop_init(&loop);
    uv_tcp_init(&loop, &t);
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&t, (const struct sockaddr *)&a, 0), 0);
    uv_tcp_getsockname(&t, (struct sockaddr *)&name, &len);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);

    bench_opts_t o = opts_for(ntohs(((struct sockaddr_in *)&name)->sin_port), BODY_RAW);
    o.users = 2;
    o.duration_s = 0.2;
    o.poll_backends = 1; /* unreachable: must not hang or crash */
    bench_result_t r;
    assert_int_equal(bench_run(&o, &r), 0);
    assert_true(r.total.conn_errors > 2);
    assert_int_equal(r.total.ok + r.total.timeouts + failed_http(&r.total), 0);
    bench_result_fini(&r);
}

static void test_open_loop_rate(void **state)
{
    (void)state;
    server_t *s = server_start(SRV_OK, BODY_RAW);
    bench_opts_t o = opts_for(s->port, BODY_RAW);
    o.rate = 200;
    o.users = 4; /* connections */
    o.duration_s = 1;
    bench_result_t r;
    assert_int_equal(bench_run(&o, &r), 0);
    server_stop(s);
    uint64_t n = r.total.ok + bench_counts_failed(&r.total);
    assert_int_equal(n, s->requests);
    assert_int_equal(bench_counts_failed(&r.total), 0);
#ifdef __SANITIZE_THREAD__
    /* Under ThreadSanitizer this process's own test server falls behind the schedule; the
     * race checking is what that run is for, so only the schedule's cap is checked there. */
    assert_true(n > 0 && n <= 201);
#else
    /* The schedule caps it (201); the lower bound is loose because this process's own test
     * server shares two loaded cores with everything else (ASan runs fell to ~170). */
    assert_true(n >= 100 && n <= 201);
#endif
    bench_result_fini(&r);
    free(s);
}

/* One connection to a server taking 50 ms, asked for 100 requests/s: the closed loop sees
 * ~50 ms, the open loop counts the queueing behind the schedule (no coordinated omission). */
static void test_open_loop_counts_from_intended_time(void **state)
{
    (void)state;
    server_t *s = server_start(SRV_DELAY_50MS, BODY_RAW);
    bench_opts_t o = opts_for(s->port, BODY_RAW);
    o.users = 1;
    o.duration_s = 1;
    bench_result_t closed, open;
    assert_int_equal(bench_run(&o, &closed), 0);
    o.rate = 100;
    assert_int_equal(bench_run(&o, &open), 0);
    server_stop(s);
    assert_true(closed.total.ok >= 10 && closed.total.ok <= 21);
    /* >= 45 ms, not 50: the server's libuv timer counts whole milliseconds from the loop's
     * cached time, so it can fire up to ~1 ms short of 50 ms after the request arrived, and
     * the histogram reports a bucket's middle (CI run 23, under ASan: below 50 000 us). */
    assert_true(bench_hist_percentile(closed.hist, 50) >= 45000);
    /* The median, not the p99 (the max of ~20 samples: one stall on a loaded machine): the
     * closed loop's typical latency is the server's 50 ms, the open loop's is > 200 ms. */
    assert_true(bench_hist_percentile(closed.hist, 50) < 150000);
    assert_true(open.total.ok >= 10 && open.total.ok <= 21); /* capacity, not the rate */
    assert_true(bench_hist_max(open.hist) > 500000);         /* ~1 s behind by the end */
    assert_true(bench_hist_percentile(open.hist, 50) > 200000);
    bench_result_fini(&closed);
    bench_result_fini(&open);
    free(s);
}

static void test_bad_input(void **state)
{
    (void)state;
    bench_opts_t o = opts_for(9, BODY_RAW);
    bench_result_t r;
    const char *missing[] = {"/nonexistent/frame.jpg"};
    o.files = missing;
    assert_true(bench_run(&o, &r) < 0);
    o.files = files;
    o.users = 0;
    assert_true(bench_run(&o, &r) < 0);

    struct sockaddr_storage a;
    assert_int_equal(bench_resolve("localhost", 80, &a), 0);
    assert_true(bench_addr_is_loopback(&a));
    assert_int_equal(bench_resolve("127.9.8.7", 80, &a), 0);
    assert_true(bench_addr_is_loopback(&a));
    assert_int_equal(bench_resolve("::1", 80, &a), 0);
    assert_true(bench_addr_is_loopback(&a));
    assert_int_equal(bench_resolve("10.1.2.3", 80, &a), 0);
    assert_false(bench_addr_is_loopback(&a));
    assert_int_equal(bench_resolve("2001:db8::1", 80, &a), 0);
    assert_false(bench_addr_is_loopback(&a));
    assert_int_equal(bench_resolve("::ffff:127.0.0.1", 80, &a), 0);
    assert_true(bench_addr_is_loopback(&a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_loop_counts_and_csv),
        cmocka_unit_test(test_body_base64),
        cmocka_unit_test(test_body_multipart),
        cmocka_unit_test(test_http_failures_by_status),
        cmocka_unit_test(test_reconnects_after_close),
        cmocka_unit_test(test_timeouts_are_bounded),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_open_loop_rate),
        cmocka_unit_test(test_open_loop_counts_from_intended_time),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
