#include "load.h"

#include <cjson/cJSON.h>
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct engine engine_t;

/* A shared request body piece, built once per file. */
typedef struct {
    char *data;
    size_t len;
} piece_t;

typedef struct {
    uv_tcp_t tcp; /* first */
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t timer; /* request timeout, reconnect delay, wait time */
    llhttp_t parser;
    engine_t *e;
    int index; /* user / connection number */
    int connected, busy, closing, handles;
    int next_file;
    char head[1024];
    char suffix[128];
    uint64_t t_intended, t_sent; /* ns */
    int status;
} client_t;

struct engine {
    const bench_opts_t *o;
    uv_loop_t loop;
    struct sockaddr_storage addr;
    client_t *clients;
    int nclients, started;
    piece_t *bodies; /* per file: the body (raw bytes, base64 text, or multipart part data) */
    uint64_t t0;     /* ns */
    int stopping;
    int inflight;
    bench_counts_t second, total;
    bench_hist_t *hist_second, *hist_total;
    int sec;
    uv_timer_t tick;     /* 1 s reports */
    uv_timer_t spawn;    /* closed loop: starts users; open loop: the arrival schedule */
    uv_timer_t deadline; /* end of the run + grace */
    uint64_t next_arrival;
    int backends[4];
    /* poller */
    uv_tcp_t ptcp;
    uv_connect_t pconn;
    uv_write_t pwrite;
    llhttp_t pparser;
    char *pbody;
    size_t plen, pcap;
    int polling;
    llhttp_settings_t settings, psettings;
};

static uint64_t now_ns(engine_t *e)
{
    (void)e;
    return uv_hrtime();
}

static void start_request(client_t *c, uint64_t intended);
static void client_connect(client_t *c);

/* ---- bodies ---- */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64(const uint8_t *in, size_t n, size_t *outlen)
{
    char *out = malloc((n + 2) / 3 * 4 + 1), *p = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        *p++ = b64chars[(v >> 18) & 63];
        *p++ = b64chars[(v >> 12) & 63];
        *p++ = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
        *p++ = i + 2 < n ? b64chars[v & 63] : '=';
    }
    *outlen = (size_t)(p - out);
    return out;
}

static int load_bodies(engine_t *e)
{
    const bench_opts_t *o = e->o;
    e->bodies = calloc((size_t)o->nfiles, sizeof *e->bodies);
    for (int i = 0; i < o->nfiles; i++) {
        FILE *f = fopen(o->files[i], "rb");
        if (f == NULL) {
            fprintf(stderr, "framegate-bench: cannot read %s\n", o->files[i]);
            return -1;
        }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *raw = malloc(n > 0 ? (size_t)n : 1);
        if (raw == NULL || fread(raw, 1, (size_t)n, f) != (size_t)n) {
            fclose(f);
            free(raw);
            return -1;
        }
        fclose(f);
        if (o->body_mode == BODY_BASE64) {
            e->bodies[i].data = base64(raw, (size_t)n, &e->bodies[i].len);
            free(raw);
        } else {
            e->bodies[i].data = (char *)raw;
            e->bodies[i].len = (size_t)n;
        }
    }
    return 0;
}

/* Per user: head (request line + headers + body prefix) and suffix around the shared body. */
static void build_request(client_t *c, int file)
{
    engine_t *e = c->e;
    const bench_opts_t *o = e->o;
    size_t blen = e->bodies[file].len;
    char prefix[256] = "", cam[32];
    const char *ctype = "image/jpeg", *sep = strchr(o->path, '?') ? "&" : "?";
    snprintf(cam, sizeof cam, "cam-%d", c->index);
    c->suffix[0] = '\0';
    if (o->body_mode == BODY_BASE64) {
        ctype = "application/json";
        snprintf(prefix, sizeof prefix, "{\"camera\":\"%s\",\"image\":\"", cam);
        snprintf(c->suffix, sizeof c->suffix, "\"}");
    } else if (o->body_mode == BODY_MULTIPART) {
        ctype = "multipart/form-data; boundary=fgbench";
        snprintf(prefix, sizeof prefix,
                 "--fgbench\r\nContent-Disposition: form-data; name=\"image\"; "
                 "filename=\"frame.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n");
        snprintf(c->suffix, sizeof c->suffix, "\r\n--fgbench--\r\n");
    }
    size_t total = strlen(prefix) + blen + strlen(c->suffix);
    int n = snprintf(c->head, sizeof c->head,
                     "POST %s%scamera=%s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     o->path, sep, cam, o->host, o->port, ctype, total);
    snprintf(c->head + n, sizeof c->head - (size_t)n, "%s", prefix);
}

/* ---- stats ---- */

static void record(engine_t *e, client_t *c, int status, int kind)
{
    uint64_t lat_us = (now_ns(e) - c->t_intended) / 1000;
    if (kind == 0 && status >= 200 && status < 300) {
        e->second.ok++;
    } else if (kind == 0) {
        e->second.http_fail[status > 0 && status < BENCH_MAX_STATUS ? status : 0]++;
    } else if (kind == 1) {
        e->second.conn_errors++;
    } else {
        e->second.timeouts++;
    }
    bench_hist_record(e->hist_second, lat_us);
}

/* ---- client ---- */

static void on_client_closed(uv_handle_t *h)
{
    client_t *c = h->data;
    c->handles--;
    if (c->handles > 0)
        return;
    c->closing = 0;
    if (!c->e->stopping) {
        /* Reconnect after a short pause so a refusing server is not hammered. */
        uv_tcp_init(&c->e->loop, &c->tcp);
        uv_timer_init(&c->e->loop, &c->timer);
        c->tcp.data = c->timer.data = c;
        c->handles = 2;
        c->connected = 0;
        client_connect(c);
    }
}

static void client_drop(client_t *c, int kind)
{
    if (c->closing)
        return;
    if (c->busy) {
        c->busy = 0;
        c->e->inflight--;
        record(c->e, c, 0, kind);
    }
    c->closing = 1;
    c->connected = 0;
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
    uv_close((uv_handle_t *)&c->timer, on_client_closed);
}

static void on_timeout(uv_timer_t *t) { client_drop(t->data, 2); }

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    (void)h;
    static char slab[65536]; /* one loop thread: reads are handled before the next alloc */
    (void)sz;
    buf->base = slab;
    buf->len = sizeof slab;
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
    start_request(c, now_ns(c->e));
}

static int on_message_complete(llhttp_t *p)
{
    client_t *c = p->data;
    engine_t *e = c->e;
    uv_timer_stop(&c->timer);
    if (c->busy) {
        c->busy = 0;
        e->inflight--;
        record(e, c, c->status, 0);
    }
    if (!llhttp_should_keep_alive(p)) {
        c->closing = 0;
        client_drop(c, 1);
        return HPE_PAUSED;
    }
    if (e->stopping || e->o->rate > 0)
        return 0;
    if (e->o->wait_ms > 0)
        uv_timer_start(&c->timer, on_wait_done, (uint64_t)e->o->wait_ms, 0);
    else
        start_request(c, now_ns(e));
    return 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client_t *c = (client_t *)s;
    if (n < 0) {
        client_drop(c, 1);
        return;
    }
    if (n > 0) {
        llhttp_errno_t err = llhttp_execute(&c->parser, buf->base, (size_t)n);
        if (err != HPE_OK && err != HPE_PAUSED)
            client_drop(c, 1);
    }
}

static void on_write(uv_write_t *w, int status)
{
    client_t *c = w->data;
    if (status < 0)
        client_drop(c, 1);
}

static void start_request(client_t *c, uint64_t intended)
{
    engine_t *e = c->e;
    if (!c->connected || c->busy || c->closing || e->stopping)
        return;
    int file = c->next_file++ % e->o->nfiles;
    build_request(c, file);
    uv_buf_t bufs[3] = {
        uv_buf_init(c->head, (unsigned)strlen(c->head)),
        uv_buf_init(e->bodies[file].data, (unsigned)e->bodies[file].len),
        uv_buf_init(c->suffix, (unsigned)strlen(c->suffix)),
    };
    c->t_intended = intended;
    c->t_sent = now_ns(e);
    c->busy = 1;
    e->inflight++;
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, bufs, c->suffix[0] ? 3 : 2, on_write) != 0) {
        client_drop(c, 1);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, e->o->timeout_ms, 0);
}

static void on_connect(uv_connect_t *req, int status)
{
    client_t *c = req->data;
    engine_t *e = c->e;
    if (status < 0) {
        if (!c->closing) {
            /* A refused connection is a failed request for a closed-loop user (as Locust
             * counts it); then it retries. */
            c->t_intended = now_ns(e);
            e->second.conn_errors++;
            bench_hist_record(e->hist_second, 0);
            client_drop(c, 3);
        }
        return;
    }
    c->connected = 1;
    /* One response parser per connection: keep-alive responses follow each other. */
    llhttp_init(&c->parser, HTTP_RESPONSE, &e->settings);
    c->parser.data = c;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
    if (e->o->rate <= 0)
        start_request(c, now_ns(e));
}

static void client_connect(client_t *c)
{
    c->connect.data = c;
    if (uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&c->e->addr, on_connect) != 0)
        client_drop(c, 3);
}

static void client_start(engine_t *e, client_t *c, int index)
{
    c->e = e;
    c->index = index;
    c->next_file = index;
    uv_tcp_init(&e->loop, &c->tcp);
    uv_timer_init(&e->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    client_connect(c);
}

/* ---- backends poller ---- */

static int on_poll_body(llhttp_t *p, const char *at, size_t len)
{
    engine_t *e = p->data;
    if (e->plen + len > 1 << 20)
        return -1;
    if (e->plen + len > e->pcap) {
        size_t cap = (e->plen + len) * 2;
        char *nb = realloc(e->pbody, cap);
        if (nb == NULL)
            return -1;
        e->pbody = nb;
        e->pcap = cap;
    }
    memcpy(e->pbody + e->plen, at, len);
    e->plen += len;
    return 0;
}

int bench_count_backends(const char *json, size_t len, int out[4])
{
    static const char *const states[4] = {"starting", "ready", "draining", "stopping"};
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "backends");
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(root);
        return -1;
    }
    for (int i = 0; i < 4; i++)
        out[i] = 0;
    const cJSON *b;
    cJSON_ArrayForEach(b, arr)
    {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(b, "state");
        for (int i = 0; cJSON_IsString(st) && i < 4; i++)
            if (strcmp(st->valuestring, states[i]) == 0)
                out[i]++;
    }
    cJSON_Delete(root);
    return 0;
}

static int on_poll_complete(llhttp_t *p)
{
    engine_t *e = p->data;
    int counts[4];
    if (bench_count_backends(e->pbody, e->plen, counts) == 0)
        memcpy(e->backends, counts, sizeof counts);
    return 0;
}

static void on_poll_closed(uv_handle_t *h)
{
    engine_t *e = h->data;
    e->polling = 0;
}

static void poll_close(engine_t *e)
{
    if (!uv_is_closing((uv_handle_t *)&e->ptcp))
        uv_close((uv_handle_t *)&e->ptcp, on_poll_closed);
}

static void on_poll_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    engine_t *e = s->data;
    if (n > 0 && llhttp_execute(&e->pparser, buf->base, (size_t)n) == HPE_OK)
        return;
    if (n == 0)
        return;
    poll_close(e);
}

static void on_poll_write(uv_write_t *w, int status)
{
    (void)w;
    (void)status;
}

static void on_poll_connect(uv_connect_t *req, int status)
{
    engine_t *e = req->data;
    static char get[400];
    if (status < 0) {
        poll_close(e);
        return;
    }
    snprintf(get, sizeof get, "GET /v1/backends HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
             e->o->host);
    uv_buf_t b = uv_buf_init(get, (unsigned)strlen(get));
    uv_write(&e->pwrite, (uv_stream_t *)&e->ptcp, &b, 1, on_poll_write);
    uv_read_start((uv_stream_t *)&e->ptcp, alloc_cb, on_poll_read);
}

static void poll_backends(engine_t *e)
{
    if (e->polling || !e->o->poll_backends)
        return;
    e->polling = 1;
    e->plen = 0;
    uv_tcp_init(&e->loop, &e->ptcp);
    e->ptcp.data = e;
    llhttp_init(&e->pparser, HTTP_RESPONSE, &e->psettings);
    e->pparser.data = e;
    e->pconn.data = e;
    if (uv_tcp_connect(&e->pconn, &e->ptcp, (const struct sockaddr *)&e->addr, on_poll_connect) != 0)
        poll_close(e);
}

/* ---- schedule ---- */

static int active_users(engine_t *e) { return e->started; }

static void on_tick(uv_timer_t *t)
{
    engine_t *e = t->data;
    bench_row_t row;
    memset(&row, 0, sizeof row);
    row.second = ++e->sec;
    row.users = active_users(e);
    row.c = e->second;
    row.p50_ms = bench_hist_percentile(e->hist_second, 50) / 1000;
    row.p95_ms = bench_hist_percentile(e->hist_second, 95) / 1000;
    row.p99_ms = bench_hist_percentile(e->hist_second, 99) / 1000;
    memcpy(row.backends, e->backends, sizeof row.backends);
    if (e->o->csv) {
        bench_report_csv_row(e->o->csv, &row);
        fflush(e->o->csv);
    }
    if (!e->o->quiet)
        fprintf(stderr, "t=%3ds users=%d ok=%llu failed=%llu p50=%.0fms p99=%.0fms ready=%d\n",
                row.second, row.users, (unsigned long long)row.c.ok,
                (unsigned long long)bench_counts_failed(&row.c), row.p50_ms, row.p99_ms,
                row.backends[1]);
    bench_counts_add(&e->total, &e->second);
    bench_hist_merge(e->hist_total, e->hist_second);
    memset(&e->second, 0, sizeof e->second);
    bench_hist_reset(e->hist_second);
    poll_backends(e);
}

static void on_spawn(uv_timer_t *t)
{
    engine_t *e = t->data;
    uint64_t elapsed = now_ns(e) - e->t0;
    if (e->stopping)
        return;
    if (e->o->rate > 0) {
        /* Open loop: every request has its intended time; a request waits for a free
         * connection and its latency still counts from the intended time. */
        double interval_ns = 1e9 / e->o->rate;
        for (;;) {
            uint64_t intended = e->t0 + (uint64_t)(e->next_arrival * interval_ns);
            if (intended > now_ns(e))
                break;
            client_t *free_c = NULL;
            for (int i = 0; i < e->started; i++)
                if (e->clients[i].connected && !e->clients[i].busy && !e->clients[i].closing) {
                    free_c = &e->clients[i];
                    break;
                }
            if (free_c == NULL)
                break;
            start_request(free_c, intended);
            e->next_arrival++;
        }
        return;
    }
    int want = (int)(e->o->spawn_rate * (double)elapsed / 1e9) + 1;
    if (want > e->nclients)
        want = e->nclients;
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
        uv_timer_stop(&e->spawn);
        uv_timer_start(t, on_deadline, e->o->timeout_ms, 0);
        if (e->inflight > 0) {
            uv_timer_start(t, on_deadline, 50, 0);
            return;
        }
    }
    if (e->inflight > 0 && (now_ns(e) - e->t0) / 1000000 <
                               (uint64_t)(e->o->duration_s * 1000) + e->o->timeout_ms) {
        uv_timer_start(t, on_deadline, 50, 0);
        return;
    }
    for (int i = 0; i < e->started; i++)
        if (e->clients[i].busy) {
            e->clients[i].busy = 0;
            record(e, &e->clients[i], 0, 2);
        }
    e->inflight = 0;
    on_tick(&e->tick); /* the last partial second */
    /* From here on nothing reconnects or records: mark every client closing first, so
     * callbacks cancelled by the walk below do not close a handle twice. */
    for (int i = 0; i < e->started; i++)
        e->clients[i].closing = 1;
    uv_walk(&e->loop, close_all, NULL);
}

int bench_run(const bench_opts_t *o, bench_result_t *out)
{
    engine_t *e = calloc(1, sizeof *e);
    int rv;
    if (e == NULL)
        return -1;
    e->o = o;
    memset(e->backends, 0xff, sizeof e->backends); /* -1: unknown */
    if (uv_ip4_addr(o->host, o->port, (struct sockaddr_in *)&e->addr) != 0 &&
        uv_ip6_addr(o->host, o->port, (struct sockaddr_in6 *)&e->addr) != 0) {
        fprintf(stderr, "framegate-bench: %s is not an IP address\n", o->host);
        free(e);
        return -1;
    }
    if (load_bodies(e) != 0) {
        free(e);
        return -1;
    }
    uv_loop_init(&e->loop);
    llhttp_settings_init(&e->settings);
    e->settings.on_headers_complete = on_headers_complete;
    e->settings.on_message_complete = on_message_complete;
    llhttp_settings_init(&e->psettings);
    e->psettings.on_body = on_poll_body;
    e->psettings.on_message_complete = on_poll_complete;
    e->nclients = o->users;
    e->clients = calloc((size_t)o->users, sizeof *e->clients);
    e->hist_second = bench_hist_create();
    e->hist_total = bench_hist_create();
    if (o->csv)
        bench_report_csv_header(o->csv);

    e->t0 = now_ns(e);
    uv_timer_init(&e->loop, &e->tick);
    uv_timer_init(&e->loop, &e->spawn);
    uv_timer_init(&e->loop, &e->deadline);
    e->tick.data = e->spawn.data = e->deadline.data = e;
    uv_timer_start(&e->tick, on_tick, 1000, 1000);
    if (o->rate > 0) {
        /* All connections at once, then the arrival schedule on a 1 ms timer. */
        for (int i = 0; i < e->nclients; i++)
            client_start(e, &e->clients[i], i);
        e->started = e->nclients;
        uv_timer_start(&e->spawn, on_spawn, 1, 1);
    } else {
        uv_timer_start(&e->spawn, on_spawn, 0, 10);
    }
    uv_timer_start(&e->deadline, on_deadline, (uint64_t)(o->duration_s * 1000), 0);
    poll_backends(e);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    rv = uv_loop_close(&e->loop);
    (void)rv;

    out->total = e->total;
    out->hist = e->hist_total;
    out->elapsed_s = (double)(now_ns(e) - e->t0) / 1e9;
    if (out->elapsed_s > o->duration_s)
        out->elapsed_s = o->duration_s; /* rates are over the sending period */
    bench_hist_destroy(e->hist_second);
    for (int i = 0; i < o->nfiles; i++)
        free(e->bodies[i].data);
    free(e->bodies);
    free(e->clients);
    free(e->pbody);
    free(e);
    return 0;
}

void bench_result_fini(bench_result_t *r)
{
    bench_hist_destroy(r->hist);
    r->hist = NULL;
}
