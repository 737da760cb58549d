/* The load engine's run: clients (connect, write, parse, time out, reconnect), the closed-
 * and open-loop schedules, the per-second and total statistics, and the end of the run.
 * One loop thread. Bodies are built in load_body.c, /v1/backends is polled in load_poll.c. */
#include "load.h"
#include <arpa/inet.h>
#include <errno.h>
#include <cjson/cJSON.h>
#include <llhttp.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "err.h"
#include "load_internal.h"

#define OPEN_RETRY_MS 10 /* open loop: pause before reconnecting after a failed connect */
static void start_request(client_t *c, uint64_t intended);
static void client_connect(client_t *c);
static void dispatch(engine_t *e);

/* ---- addresses ---- */

int bench_resolve(const char *host, int port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) == 0)
        return 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
        return PROTO_EINVAL;
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (out->ss_family == AF_INET)
        ((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
    return 0;
}

int bench_addr_is_loopback(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    if (a->ss_family == AF_INET6) {
        const struct in6_addr *s = &((const struct sockaddr_in6 *)a)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(s))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(s) && s->s6_addr[12] == 127;
    }
    return 0;
}

/* ---- stats ---- */

enum { KIND_HTTP, KIND_CONN, KIND_TIMEOUT };

static void record(engine_t *e, uint64_t since, int status, int kind)
{
    uint64_t now = uv_hrtime();
    uint64_t lat_us = now > since ? (now - since) / 1000 : 0;
    if (kind == KIND_HTTP && status >= 200 && status < 300)
        e->second.ok++;
    else if (kind == KIND_HTTP)
        e->second.http_fail[status > 0 && status < BENCH_MAX_STATUS ? status : 0]++;
    else if (kind == KIND_CONN)
        e->second.conn_errors++;
    else
        e->second.timeouts++;
    bench_hist_record(e->hist_second, lat_us);
}

/* Ends the request in flight, if any, as a failure of `kind`. */
static void fail_inflight(client_t *c, int kind)
{
    if (!c->busy)
        return;
    c->busy = 0;
    c->e->inflight--;
    record(c->e, c->t_intended, 0, kind);
}

/* ---- client ---- */

static int usable(const client_t *c)
{
    return c->connected && !c->busy && !c->closing && !c->writing;
}

/* Open loop: offer a free connection to the schedule. */
static void mark_idle(client_t *c)
{
    engine_t *e = c->e;
    if (e->o->rate <= 0 || c->idle_listed || !usable(c) || e->stopping)
        return;
    c->idle_listed = 1;
    e->idle[e->nidle++] = c;
    dispatch(e);
}

static void on_retry(uv_timer_t *t)
{
    client_connect(t->data);
}

static void on_client_closed(uv_handle_t *h)
{
    client_t *c = h->data;
    if (--c->handles > 0)
        return;
    c->closing = 0;
    if (c->e->stopping)
        return;
    /* Reconnect in place: the handles are embedded, so they are re-initialised only now
     * that both close callbacks have run. */
    uv_tcp_init(&c->e->loop, &c->tcp);
    uv_timer_init(&c->e->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    c->connected = c->writing = c->pending = 0;
    /* A closed-loop user retries at once, as a Locust user without wait time would; an
     * open-loop connection pauses so a refusing server does not spin the loop. */
    if (c->connect_failed && c->e->o->rate > 0)
        uv_timer_start(&c->timer, on_retry, OPEN_RETRY_MS, 0);
    else
        client_connect(c);
}

static void client_drop(client_t *c, int kind)
{
    if (c->closing)
        return;
    fail_inflight(c, kind);
    c->closing = 1;
    c->connected = 0;
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
    uv_close((uv_handle_t *)&c->timer, on_client_closed);
}

static void on_timeout(uv_timer_t *t)
{
    client_drop(t->data, KIND_TIMEOUT);
}

static void client_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    client_t *c = h->data;
    (void)sz;
    *buf = uv_buf_init(c->e->slab, sizeof c->e->slab);
}

static int on_headers_complete(llhttp_t *p)
{
    client_t *c = p->data;
    c->status = p->status_code;
    return 0;
}

static void on_wait_done(uv_timer_t *t)
{
    client_t *c = t->data;
    start_request(c, uv_hrtime());
}

static int on_message_complete(llhttp_t *p)
{
    client_t *c = p->data;
    engine_t *e = c->e;
    if (!c->busy)
        return 0; /* an answer nobody asked for: ignore it */
    uv_timer_stop(&c->timer);
    c->busy = 0;
    e->inflight--;
    record(e, c->t_intended, c->status, KIND_HTTP);
    if (!llhttp_should_keep_alive(p)) {
        client_drop(c, KIND_CONN); /* reconnects; nothing is in flight to count */
        return HPE_PAUSED;
    }
    if (e->stopping)
        return 0;
    if (e->o->rate > 0)
        mark_idle(c);
    else if (e->o->wait_ms > 0)
        uv_timer_start(&c->timer, on_wait_done, (uint64_t)e->o->wait_ms, 0);
    else
        start_request(c, uv_hrtime());
    return 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client_t *c = s->data;
    if (n == UV_EOF) {
        /* A response delimited by the close completes here rather than failing. */
        llhttp_finish(&c->parser);
        client_drop(c, KIND_CONN);
    } else if (n < 0) {
        client_drop(c, KIND_CONN);
    } else if (n > 0) {
        llhttp_errno_t err = llhttp_execute(&c->parser, buf->base, (size_t)n);
        if (err != HPE_OK && err != HPE_PAUSED)
            client_drop(c, KIND_CONN);
    }
}

static void on_write(uv_write_t *w, int status)
{
    client_t *c = w->data;
    c->writing = 0;
    if (status < 0) {
        client_drop(c, KIND_CONN);
        return;
    }
    /* The server may answer before it has read the whole body (an early 413, say). */
    if (c->pending) {
        c->pending = 0;
        start_request(c, uv_hrtime());
    } else {
        mark_idle(c);
    }
}

static void start_request(client_t *c, uint64_t intended)
{
    engine_t *e = c->e;
    if (!c->connected || c->busy || c->closing || e->stopping)
        return;
    if (c->writing) {
        c->pending = 1;
        return;
    }
    int file = c->next_file++ % e->o->nfiles;
    bench__build_request(c, file);
    uv_buf_t bufs[3] = {
        uv_buf_init(c->head, (unsigned)c->head_len),
        uv_buf_init(e->bodies[file].data, (unsigned)e->bodies[file].len),
        uv_buf_init(c->suffix, (unsigned)c->suffix_len),
    };
    c->t_intended = intended;
    c->busy = 1;
    c->writing = 1;
    e->inflight++;
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, bufs, c->suffix_len ? 3 : 2, on_write) != 0) {
        c->writing = 0;
        client_drop(c, KIND_CONN);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, e->o->timeout_ms, 0);
}

static void on_connect(uv_connect_t *req, int status)
{
    client_t *c = req->data;
    engine_t *e = c->e;
    if (status < 0) {
        if (!c->closing && !e->stopping) {
            /* A refused connection is a failed request for a closed-loop user, as Locust
             * counts it; then it retries. */
            record(e, c->t_connect, 0, KIND_CONN);
            c->connect_failed = 1;
            client_drop(c, KIND_CONN);
        }
        return;
    }
    c->connected = 1;
    c->connect_failed = 0;
    /* One response parser per connection: keep-alive responses follow each other. */
    llhttp_init(&c->parser, HTTP_RESPONSE, &e->settings);
    c->parser.data = c;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, client_alloc, on_read);
    if (e->o->rate > 0)
        mark_idle(c);
    else
        start_request(c, uv_hrtime());
}

static void client_connect(client_t *c)
{
    int rv;
    c->connect.data = c;
    c->t_connect = uv_hrtime();
    rv = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&c->e->addr, on_connect);
    if (rv != 0) {
        record(c->e, c->t_connect, 0, KIND_CONN);
        c->connect_failed = 1;
        client_drop(c, KIND_CONN);
    }
}

static void client_start(engine_t *e, client_t *c, int index)
{
    c->e = e;
    c->index = index;
    c->next_file = index;
    c->built_file = -1;
    uv_tcp_init(&e->loop, &c->tcp);
    uv_timer_init(&e->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    client_connect(c);
}

/* ---- schedule ---- */

static void on_tick(uv_timer_t *t)
{
    engine_t *e = t->data;
    bench_row_t row;
    memset(&row, 0, sizeof row);
    row.second = ++e->sec;
    row.users = e->started;
    row.c = e->second;
    row.p50_ms = bench_hist_percentile(e->hist_second, 50) / 1000;
    row.p95_ms = bench_hist_percentile(e->hist_second, 95) / 1000;
    row.p99_ms = bench_hist_percentile(e->hist_second, 99) / 1000;
    memcpy(row.backends, e->backends, sizeof row.backends);
    if (e->o->csv) {
        bench_report_csv_row(e->o->csv, &row);
        fflush(e->o->csv);
    }
    if (!e->o->quiet) {
        char ready[16] = "-";
        if (row.backends[1] >= 0)
            snprintf(ready, sizeof ready, "%d", row.backends[1]);
        fprintf(stderr, "t=%3ds users=%d ok=%llu failed=%llu p50=%.0fms p99=%.0fms ready=%s\n",
                row.second, row.users, (unsigned long long)row.c.ok,
                (unsigned long long)bench_counts_failed(&row.c), row.p50_ms, row.p99_ms, ready);
    }
    bench_counts_add(&e->total, &e->second);
    bench_hist_merge(e->hist_total, e->hist_second);
    memset(&e->second, 0, sizeof e->second);
    bench_hist_reset(e->hist_second);
    bench__poll_backends(e);
}

/* Open loop: every request has its intended time on the fixed schedule; one that finds no
 * free connection waits, and its latency still counts from the intended time (wrk2). */
static void dispatch(engine_t *e)
{
    double interval_ns = 1e9 / e->o->rate;
    uint64_t now = uv_hrtime();
    while (e->nidle > 0 && !e->stopping) {
        uint64_t intended = e->t0 + (uint64_t)((double)e->next_arrival * interval_ns);
        if (intended > now)
            break;
        client_t *c = e->idle[--e->nidle];
        c->idle_listed = 0;
        if (!usable(c))
            continue; /* it closed while listed; it is listed again once reconnected */
        e->next_arrival++;
        start_request(c, intended);
    }
}

static void on_spawn(uv_timer_t *t)
{
    engine_t *e = t->data;
    if (e->stopping)
        return;
    if (e->o->rate > 0) {
        dispatch(e);
        return;
    }
    uint64_t elapsed = uv_hrtime() - e->t0;
    double want_d = e->o->spawn_rate * (double)elapsed / 1e9 + 1;
    int want = want_d >= e->nclients ? e->nclients : (int)want_d;
    while (e->started < want) {
        client_start(e, &e->clients[e->started], e->started);
        e->started++;
    }
    if (e->started == e->nclients)
        uv_timer_stop(t);
}

static void close_all(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_deadline(uv_timer_t *t)
{
    engine_t *e = t->data;
    if (!e->stopping) {
        /* Stop sending; give what is in flight up to the timeout to come back. */
        e->stopping = 1;
        e->t_stop = uv_hrtime();
        uv_timer_stop(&e->spawn);
    }
    if (e->inflight > 0 && uv_hrtime() - e->t_stop < e->o->timeout_ms * 1000000) {
        uv_timer_start(t, on_deadline, 20, 0);
        return;
    }
    for (int i = 0; i < e->started; i++)
        fail_inflight(&e->clients[i], KIND_TIMEOUT);
    on_tick(&e->tick); /* the last partial second */
    /* Nothing reconnects or records from here on (stopping is set); close every handle,
     * including the clients' and the poller's, so the loop ends. */
    uv_walk(&e->loop, close_all, NULL);
}

static void on_sigint(uv_signal_t *s, int signum)
{
    engine_t *e = s->data;
    (void)signum;
    e->interrupted = 1;
    uv_signal_stop(s);
    if (!e->stopping)
        uv_timer_start(&e->deadline, on_deadline, 0, 0);
}

static void engine_free(engine_t *e)
{
    if (e->bodies)
        for (int i = 0; i < e->o->nfiles; i++)
            free(e->bodies[i].data);
    free(e->bodies);
    free(e->clients);
    free(e->idle);
    free(e->pbody);
    bench_hist_destroy(e->hist_second);
    bench_hist_destroy(e->hist_total);
    free(e);
}

int bench_run(const bench_opts_t *o, bench_result_t *out)
{
    engine_t *e;
    int rv;
    if (o->users < 1 || o->nfiles < 1 || o->duration_s <= 0 || o->timeout_ms < 1)
        return PROTO_EINVAL;
    if ((e = calloc(1, sizeof *e)) == NULL)
        return PROTO_ENOMEM;
    e->o = o;
    memset(e->backends, 0xff, sizeof e->backends); /* -1: unknown */
    if ((rv = bench_resolve(o->host, o->port, &e->addr)) != 0) {
        fprintf(stderr, "framegate-bench: cannot resolve %s\n", o->host);
        free(e);
        return rv;
    }
    e->nclients = o->users;
    e->clients = calloc((size_t)o->users, sizeof *e->clients);
    e->idle = calloc((size_t)o->users, sizeof *e->idle);
    e->hist_second = bench_hist_create();
    e->hist_total = bench_hist_create();
    if (!e->clients || !e->idle || !e->hist_second || !e->hist_total) {
        engine_free(e);
        return PROTO_ENOMEM;
    }
    if ((rv = bench__load_bodies(e)) != 0 || (rv = uv_loop_init(&e->loop)) != 0) {
        engine_free(e);
        return rv;
    }
    snprintf(e->pget, sizeof e->pget,
             strchr(o->host, ':') ? "GET /v1/backends HTTP/1.1\r\nHost: [%s]:%d\r\n"
                                    "Connection: close\r\n\r\n"
                                  : "GET /v1/backends HTTP/1.1\r\nHost: %s:%d\r\n"
                                    "Connection: close\r\n\r\n",
             o->host, o->port);
    llhttp_settings_init(&e->settings);
    e->settings.on_headers_complete = on_headers_complete;
    e->settings.on_message_complete = on_message_complete;
    llhttp_settings_init(&e->psettings);
    e->psettings.on_body = bench__on_poll_body;
    e->psettings.on_message_complete = bench__on_poll_complete;
    if (o->csv)
        bench_report_csv_header(o->csv);

    e->t0 = uv_hrtime();
    uv_timer_init(&e->loop, &e->tick);
    uv_timer_init(&e->loop, &e->spawn);
    uv_timer_init(&e->loop, &e->deadline);
    e->tick.data = e->spawn.data = e->deadline.data = e;
    if (o->handle_sigint) {
        uv_signal_init(&e->loop, &e->sigint);
        e->sigint.data = e;
        uv_signal_start(&e->sigint, on_sigint, SIGINT);
    }
    uv_timer_start(&e->tick, on_tick, 1000, 1000);
    if (o->rate > 0) {
        /* All connections at once; arrivals are dispatched as connections free up, and a
         * 1 ms timer catches the schedule up when they are all idle. */
        e->started = e->nclients;
        for (int i = 0; i < e->nclients; i++)
            client_start(e, &e->clients[i], i);
        uv_timer_start(&e->spawn, on_spawn, 1, 1);
    } else {
        uv_timer_start(&e->spawn, on_spawn, 0, 10);
    }
    uv_timer_start(&e->deadline, on_deadline, (uint64_t)(o->duration_s * 1000), 0);
    bench__poll_backends(e);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    uv_loop_close(&e->loop);

    out->total = e->total;
    out->hist = e->hist_total;
    e->hist_total = NULL;
    out->elapsed_s = (double)(e->t_stop - e->t0) / 1e9; /* rates are over the sending period */
    out->interrupted = e->interrupted;
    engine_free(e);
    return 0;
}

void bench_result_fini(bench_result_t *r)
{
    bench_hist_destroy(r->hist);
    r->hist = NULL;
}
