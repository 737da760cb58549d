/* http.c, the connection core, over real loopback sockets (gw_http_harness.h): keep-alive,
 * pipelining, chunked bodies, limits, timeouts, connection limits, hang-ups and draining. */
#include "gw_http_harness.h"

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

static void test_hangup_with_job_out(void **state)
{
    (void)state;
    gw_config_t cfg;
    cfg_defaults(&cfg);
    /* A long header clock: "EOF without waiting for a 408" below is then told apart from
     * the timeout with seconds of margin, not 120 ms a loaded machine can use up. */
    cfg.header_timeout_ms = 10000;
    server_start(&cfg);
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
    assert_true(now_s() - t0 < 5.0); /* header_timeout_ms is 10000 here */
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

/* ---- hardening (issue 11): each test reproduces a probe ---- */

/* Item 2: bare CRLFs. Every connection the server allows sends "\r\n" every 100 ms, which
 * used to re-arm the idle timer (600 ms) forever and start no header clock: the server was
 * full for good. Now the header clock runs from the first byte: each gets a 408 and is
 * closed, and a new client is served. */
static void test_crlf_flood(void **state)
{
    (void)state;
    start_default(); /* max_connections 8, header 400 ms, idle 600 ms */
    enum { N = 8 };
    client_t *cs = malloc(N * sizeof *cs);
    int open_n = N, saw_408 = 0, closed[N] = {0};
    for (int i = 0; i < N; i++)
        client_open(&cs[i]);
    double t0 = now_s();
    while (open_n > 0 && now_s() - t0 < 20.0) { /* a ceiling: loaded machines are slow */
        for (int i = 0; i < N; i++) {
            if (closed[i])
                continue;
            send(cs[i].fd, "\r\n", 2, MSG_NOSIGNAL | MSG_DONTWAIT);
            struct pollfd pfd = {.fd = cs[i].fd, .events = POLLIN};
            while (poll(&pfd, 1, 0) == 1) {
                ssize_t n = fill(&cs[i]);
                if (n > 0 && memmem(cs[i].buf, cs[i].len, "HTTP/1.1 408", 12) != NULL)
                    saw_408++;
                if (n <= 0) {
                    closed[i] = 1;
                    open_n--;
                    break;
                }
                cs[i].len = 0;
            }
        }
        usleep(100000);
    }
    double took = now_s() - t0;
    assert_int_equal(open_n, 0); /* the old server never closed them */
    assert_true(took < 10.0); /* 400 ms clocks; the bug was never closing them at all */
    assert_int_equal(saw_408, N);
    for (int i = 0; i < N; i++)
        client_close(&cs[i]);
    /* Everyone else is served again. */
    wait_until(&S.conns, 0, 2);
    resp_t r;
    client_open(&cs[0]);
    send_str(&cs[0], "GET /healthz HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(&cs[0], &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    client_close(&cs[0]);
    /* The header clock starts at the first byte, not at the request line: an empty line,
     * then a request whose headers end 600 ms after it -> 408. */
    client_open(&cs[0]);
    send_str(&cs[0], "\r\n");
    usleep(300000);
    send_str(&cs[0], "GET /healthz HTTP/1.1\r\n");
    usleep(300000);
    send(cs[0].fd, "Host: t\r\n\r\n", 11, MSG_NOSIGNAL);
    assert_int_equal(read_resp(&cs[0], &r), 0);
    assert_int_equal(r.status, 408);
    resp_free(&r);
    assert_true(closed_by_server(&cs[0]));
    client_close(&cs[0]);
    /* A trailing empty line after a request in the same packet is harmless. */
    client_open(&cs[0]);
    send_str(&cs[0], "GET /healthz HTTP/1.1\r\n\r\n\r\n");
    assert_int_equal(read_resp(&cs[0], &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    send_str(&cs[0], "GET /healthz HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(&cs[0], &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    client_close(&cs[0]);
    free(cs);
}

/* Item 6: Upgrade and CONNECT used to get two answers (200, then a stray 400 "Pause on
 * CONNECT/Upgrade"). One answer, Connection: close, then EOF with nothing more. */
static void test_upgrade_and_connect(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    resp_t r;
    static const char *reqs[] = {
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        "\x81\x85 some websocket frame",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        "\x16\x03\x01 a TLS hello",
        "POST /v1/detect HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
        "Content-Type: image/jpeg\r\nContent-Length: 7\r\n\r\ndelay=1PRI * HTTP/2.0\r\n\r\n",
    };
    static const int want[] = {200, 404, 200};
    for (int i = 0; i < 3; i++) {
        client_open(c);
        send_str(c, reqs[i]);
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, want[i]);
        assert_true(has_header(&r, "Connection: close"));
        resp_free(&r);
        assert_int_equal(c->len, 0);
        assert_int_equal(fill(c), 0); /* EOF: no second answer */
        assert_int_equal(c->len, 0);
        client_close(c);
    }
    free(c);
}

/* Item 8: chunk extensions were unlimited (16 GB accepted). A few bytes of them are
 * skipped; past GW_HTTP_MAX_CHUNK_EXT (1 KiB) per request: 400 and close. */
static void test_chunk_extensions(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    resp_t r;
    char code[64];
    client_open(c);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Transfer-Encoding: chunked\r\n\r\n4;a=b\r\ndela\r\n4;name=\"v\"\r\ny=10\r\n"
                "0\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(atomic_load(&S.last_image_len), 8);
    resp_free(&r);
    /* The probe: an extension that never ends (here up to 8 MiB, sent while the server
     * still reads). */
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Transfer-Encoding: chunked\r\n\r\n4;x=");
    static char ext[64 << 10];
    memset(ext, 'e', sizeof ext);
    for (int i = 0; i < 128; i++)
        if (send(c->fd, ext, sizeof ext, MSG_NOSIGNAL) <= 0)
            break; /* the server answered and closed */
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(json_error_code(&r, code, sizeof code), "bad_request");
    assert_non_null(strstr(r.body, "chunk extensions"));
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    /* The same without extensions: a chunk size with endless leading zeros. The request's
     * bytes on the wire are bounded (here 4 KiB + 2 x 1 MiB + 128 KiB). */
    client_open(c);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
    static char zeros[64 << 10];
    memset(zeros, '0', sizeof zeros);
    for (int i = 0; i < 128; i++)
        if (send(c->fd, zeros, sizeof zeros, MSG_NOSIGNAL) <= 0)
            break;
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "on the wire"));
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    /* Many small ones add up per request. */
    client_open(c);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 200; i++)
        if (send(c->fd, "1;abcdefghij=0123456789\r\nx\r\n", 27, MSG_NOSIGNAL) <= 0)
            break;
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    client_close(c);
    free(c);
}

/* Item 10: "Transfer-Encoding: gzip, chunked" was accepted and the gzip ignored. Codings we
 * do not decode are refused (501, close); so are content codings (415). */
static void test_unsupported_codings(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    resp_t r;
    char code[64];
    static const struct {
        const char *headers;
        int status;
        const char *code, *mention;
    } cases[] = {
        {"Transfer-Encoding: gzip, chunked\r\n", 501, "unsupported_transfer_encoding", "gzip"},
        {"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", 501,
         "unsupported_transfer_encoding", "gzip"},
        {"Transfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n", 415,
         "unsupported_content_encoding", "gzip"},
        {"Transfer-Encoding: Chunked\r\nContent-Encoding: identity\r\n", 200, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        client_open(c);
        char req[512];
        snprintf(req, sizeof req,
                 "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n%s\r\n"
                 "7\r\ndelay=1\r\n0\r\n\r\n",
                 cases[i].headers);
        send_str(c, req);
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, cases[i].status);
        if (cases[i].code != NULL) {
            assert_string_equal(json_error_code(&r, code, sizeof code), cases[i].code);
            assert_non_null(strstr(r.body, cases[i].mention));
            assert_true(has_header(&r, "Connection: close"));
            resp_free(&r);
            assert_true(closed_by_server(c));
        } else {
            resp_free(&r);
        }
        client_close(c);
    }
    free(c);
}

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%ld %ld", &pages, &resident), 2);
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Item 3: a client that pipelines requests and never reads made the server queue every
 * answer (100k GET /metrics: +1.29 GB). Queued answer bytes are capped per connection, the
 * connection is not read while over the cap, and write_timeout_ms cuts it off. */
static void test_client_that_never_reads(void **state)
{
    (void)state;
    gw_config_t cfg;
    cfg_defaults(&cfg);
    cfg.write_timeout_ms = 500;
    cfg.idle_timeout_ms = 60000;
    server_start(&cfg);
    client_t *c = malloc(sizeof *c);
    client_open(c);
    int rcv = 4096; /* a small window: the server's queue fills sooner */
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    /* The kernel takes the requests before the server accepts: until S.conns counts this
     * connection, the watch below would see none and stop at once. */
    wait_until(&S.conns, 1, 5);
    long before = rss_kib();
    /* 4000 x GET /big would be 128 MiB of answers; send what the server takes. */
    static const char one[] = "GET /big HTTP/1.1\r\nHost: t\r\n\r\n";
    int sent = 0;
    double t0 = now_s();
    while (sent < 4000 && now_s() - t0 < 3.0) {
        ssize_t n = send(c->fd, one, sizeof one - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)(sizeof one - 1))
            sent++;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            usleep(10000);
        else
            break; /* partial send or closed: enough */
    }
    /* The write clock closes it although the client is still there; until then the
     * server's memory is watched. */
    long grown = 0;
    t0 = now_s();
    /* Generous: on a loaded machine the server thread may get little CPU; a server that
     * never cuts the connection still fails. */
    while (atomic_load(&S.conns) != 0 && now_s() - t0 < 20.0) {
        long g = rss_kib() - before;
        grown = g > grown ? g : grown;
        usleep(5000);
    }
    print_message("sent %d requests, gateway grew up to %ld KiB, cut after %.1f s\n", sent, grown,
                  now_s() - t0);
    assert_int_equal(atomic_load(&S.conns), 0);
    assert_true(grown < 48 * 1024);
    ssize_t n;
    while ((n = fill(c)) > 0)
        c->len = 0;
    client_close(c);
    /* A client that reads gets every answer, in order, through the cap. */
    client_open(c);
    char all[300 * (sizeof one - 1) + 1];
    size_t len = 0;
    for (int i = 0; i < 300; i++)
        len += (size_t)snprintf(all + len, sizeof all - len, "%s", one);
    send_all(c, all, len);
    resp_t r;
    for (int i = 0; i < 300; i++) {
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, BIG_LEN);
        resp_free(&r);
    }
    client_close(c);
    free(c);
}

/* Item 5: no global bound (4 connections x 16 pipelined 16 MiB bodies = 1044 MB). Request
 * bytes held across connections are capped by max_buffered_bytes: beyond it 503 +
 * Retry-After, from the headers, and the budget comes back when a request is done. */
static void test_buffered_bytes_budget(void **state)
{
    (void)state;
    gw_config_t cfg;
    cfg_defaults(&cfg);
    cfg.max_body_bytes = 1 << 20;
    cfg.max_buffered_bytes = 2 << 20; /* two 900 KB bodies fit, three do not */
    server_start(&cfg);
    enum { LEN = 900000 };
    char *body = malloc(LEN);
    memset(body, 'x', LEN);
    memcpy(body, "delay=400 ", 10);
    client_t *cs = malloc(3 * sizeof *cs);
    resp_t r;
    char code[64];
    for (int i = 0; i < 2; i++) {
        client_open(&cs[i]);
        post(&cs[i], "/v1/detect", "image/jpeg", body, LEN);
    }
    wait_until(&S.submitted, 2, 3);
    /* The third is refused from its headers alone; its body is never needed. */
    client_open(&cs[2]);
    send_str(&cs[2], "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                     "Content-Length: 900000\r\n\r\n");
    assert_int_equal(read_resp(&cs[2], &r), 0);
    assert_int_equal(r.status, 503);
    assert_true(has_header(&r, "Retry-After: 7"));
    assert_true(has_header(&r, "Connection: close"));
    assert_string_equal(json_error_code(&r, code, sizeof code), "overloaded");
    assert_non_null(strstr(r.body, "max_buffered_bytes"));
    resp_free(&r);
    assert_true(closed_by_server(&cs[2]));
    client_close(&cs[2]);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(read_resp(&cs[i], &r), 0);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    /* Answered: the bytes are released (the recycled requests hold none). */
    client_open(&cs[2]);
    memcpy(body, "delay=1   ", 10);
    post(&cs[2], "/v1/detect", "image/jpeg", body, LEN);
    assert_int_equal(read_resp(&cs[2], &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    client_close(&cs[2]);
    client_close(&cs[1]);
    /* Pipelined on one connection: two held by slow jobs, the third refused, then close. */
    memcpy(body, "delay=300 ", 10);
    for (int i = 0; i < 2; i++)
        post(&cs[0], "/v1/detect", "image/jpeg", body, LEN);
    send_str(&cs[0], "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                     "Content-Length: 900000\r\n\r\n");
    int statuses[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(read_resp(&cs[0], &r), 0);
        statuses[i] = r.status;
        resp_free(&r);
    }
    assert_int_equal(statuses[0], 200);
    assert_int_equal(statuses[1], 200);
    assert_int_equal(statuses[2], 503);
    assert_true(closed_by_server(&cs[0]));
    client_close(&cs[0]);
    /* A chunked body that grows past the budget is refused as it grows. */
    memcpy(body, "delay=400 ", 10);
    for (int i = 0; i < 2; i++) {
        client_open(&cs[i]);
        post(&cs[i], "/v1/detect", "image/jpeg", body, LEN);
    }
    wait_until(&S.submitted, 7, 3);
    client_open(&cs[2]);
    send_str(&cs[2], "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n");
    char line[32];
    snprintf(line, sizeof line, "%x\r\n", 200000);
    for (int i = 0; i < 5; i++) {
        if (send(cs[2].fd, line, strlen(line), MSG_NOSIGNAL) <= 0 ||
            send(cs[2].fd, body, 200000, MSG_NOSIGNAL) <= 0 ||
            send(cs[2].fd, "\r\n", 2, MSG_NOSIGNAL) <= 0)
            break;
    }
    assert_int_equal(read_resp(&cs[2], &r), 0);
    assert_int_equal(r.status, 503);
    resp_free(&r);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(read_resp(&cs[i], &r), 0);
        assert_int_equal(r.status, 200);
        resp_free(&r);
        client_close(&cs[i]);
    }
    client_close(&cs[2]);
    free(cs);
    free(body);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the gateway does: a write to a gone client is EPIPE */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_keepalive_and_get_routes, teardown),
        cmocka_unit_test_teardown(test_pipelining_in_order, teardown),
        cmocka_unit_test_teardown(test_chunked, teardown),
        cmocka_unit_test_teardown(test_length_required_and_too_large, teardown),
        cmocka_unit_test_teardown(test_header_limit_and_bad_http, teardown),
        cmocka_unit_test_teardown(test_timeouts, teardown),
        cmocka_unit_test_teardown(test_max_connections, teardown),
        cmocka_unit_test_teardown(test_hangup_with_job_out, teardown),
        cmocka_unit_test_teardown(test_stop_drains, teardown),
        cmocka_unit_test_teardown(test_crlf_flood, teardown),
        cmocka_unit_test_teardown(test_upgrade_and_connect, teardown),
        cmocka_unit_test_teardown(test_chunk_extensions, teardown),
        cmocka_unit_test_teardown(test_unsupported_codings, teardown),
        cmocka_unit_test_teardown(test_client_that_never_reads, teardown),
        cmocka_unit_test_teardown(test_buffered_bytes_budget, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
