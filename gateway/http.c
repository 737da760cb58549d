/* The HTTP/1.1 connection core. One gw_conn per client connection embeds its uv_tcp_t,
 * llhttp_t and timer. Requests are kept in a per-connection pipeline in arrival order; each
 * becomes ready when its answer is built (at once for errors and GETs, later for handlers
 * that wait on jobs), and answers leave strictly from the head of the pipeline.
 *
 * This file knows no paths: a complete request goes to gw_router_dispatch. Read top to
 * bottom it follows a connection: accept, read, parse (llhttp callbacks), hand over, write,
 * close. */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "response.h"
#include "router.h"

#define LINGER_MS 1000

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_timer(uv_timer_t *t);
static void process_input(gw_conn_t *c, const char *data, size_t len);
static void flush(gw_conn_t *c);
static void arm_idle(gw_conn_t *c);
static void conn_release(gw_conn_t *c);
static void req_put(gw_conn_t *c, gw_req_t *r);

/* One read buffer for the whole server: libuv calls alloc then read for one read at a time
 * on the loop thread, and nothing keeps a pointer into it after on_read (bodies, headers
 * and the unparsed remainder are copied), so no read allocates. */
static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    gw_conn_t *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->srv->rbuf, sizeof c->srv->rbuf);
}

/* ---- accepting ---- */

static void on_handle_closed(uv_handle_t *h)
{
    gw_conn_t *c = h->data;
    if (--c->handles_open == 0)
        conn_release(c);
}

void gw__http_accept(gw_server_t *srv)
{
    gw_conn_t *c = calloc(1, sizeof *c);
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
    if (uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&c->tcp) != 0) {
        gw__http_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &srv->settings);
    c->parser.data = c;
    if (srv->nconns > srv->cfg->max_connections || srv->stopping) {
        /* Over the limit: one short answer instead of a silent drop. */
        gw_req_t *r = gw__http_req_begin(c);
        if (r == NULL) {
            gw__http_close(c);
            return;
        }
        r->route = "other";
        c->cur = NULL;
        gw__reject(r, 503, "overloaded", "too many connections (%d)", srv->cfg->max_connections);
        flush(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, alloc_buf, on_read);
    arm_idle(c);
}

/* ---- requests ---- */

gw_req_t *gw__http_req_begin(gw_conn_t *c)
{
    gw_req_t *r = c->spare;
    if (r != NULL) {
        c->spare = NULL;
        memset(r, 0, sizeof *r);
    } else if ((r = calloc(1, sizeof *r)) == NULL) {
        return NULL;
    }
    r->conn = c;
    r->start_ns = uv_hrtime();
    /* Appended now so that answers keep arrival order, whatever finishes first. */
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->nreqs++;
    c->cur = r;
    return r;
}

/* Frees what r owns and keeps r itself for the next request (or frees it). */
static void req_put(gw_conn_t *c, gw_req_t *r)
{
    if (r->state_free != NULL)
        r->state_free(r->state);
    free(r->body);
    free(r->resp);
    if (c->spare == NULL) {
        c->spare = r;
    } else {
        free(r);
    }
}

void gw_req_hold(gw_req_t *r)
{
    r->conn->refs++;
}

void gw_req_release(gw_req_t *r)
{
    gw_conn_t *c = r->conn;
    /* Inside the parser the caller flushes when the callback returns. */
    if (!c->closing && !c->parsing)
        flush(c);
    conn_release(c);
}

uv_loop_t *gw_req_loop(const gw_req_t *r)
{
    return r->conn->srv->loop;
}

const gw_config_t *gw_req_config(const gw_req_t *r)
{
    return r->conn->srv->cfg;
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t)
{
    gw_conn_t *c = t->data;
    if (c->closing || c->lingering)
        return;
    if (c->cur != NULL && c->phase != GW_PH_IDLE) {
        /* A request that is not arriving fast enough: answer 408 and cut the client. */
        const gw_config_t *cfg = c->srv->cfg;
        unsigned long long ms =
            c->phase == GW_PH_HEADERS ? cfg->header_timeout_ms : cfg->body_timeout_ms;
        gw__reject(c->cur, 408, "timeout", "the request was not received within %llu ms", ms);
        uv_read_stop((uv_stream_t *)&c->tcp);
        flush(c);
        return;
    }
    if (c->head == NULL)
        gw__http_close_idle(c); /* idle keep-alive connection */
}

static void arm_idle(gw_conn_t *c)
{
    if (c->closing || c->lingering || c->streaming)
        return;
    if (c->cur == NULL && c->head == NULL)
        uv_timer_start(&c->timer, on_timer, c->srv->cfg->idle_timeout_ms, 0);
    else if (c->cur == NULL)
        uv_timer_stop(&c->timer); /* waiting for handlers: their own deadlines apply */
}

/* ---- llhttp callbacks: one request arriving ---- */

static gw_conn_t *conn_of(llhttp_t *p)
{
    return p->data;
}

static int on_message_begin(llhttp_t *p)
{
    gw_conn_t *c = conn_of(p);
    if (gw__http_req_begin(c) == NULL)
        return -1;
    c->phase = GW_PH_HEADERS;
    c->header_bytes = 0;
    c->field_len = 0;
    c->capture = 0;
    uv_timer_start(&c->timer, on_timer, c->srv->cfg->header_timeout_ms, 0);
    return 0;
}

static int header_limit(gw_conn_t *c, size_t len)
{
    c->header_bytes += len;
    if (c->header_bytes <= c->srv->cfg->max_header_bytes)
        return 0;
    gw__reject(c->cur, 431, "headers_too_large", "request line and headers exceed %zu bytes",
               c->srv->cfg->max_header_bytes);
    return -1;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    gw_conn_t *c = conn_of(p);
    gw_req_t *r = c->cur;
    if (header_limit(c, len) != 0)
        return -1;
    if (r->url_len + len >= sizeof r->url) {
        gw__reject(r, 431, "headers_too_large", "the URL is longer than %d bytes",
                   GW_HTTP_MAX_URL - 1);
        return -1;
    }
    memcpy(r->url + r->url_len, at, len);
    r->url_len += len;
    r->url[r->url_len] = '\0';
    /* Kept current so that an early answer is labelled by its path. */
    size_t plen = strcspn(r->url, "?");
    memcpy(r->path, r->url, plen);
    r->path[plen] = '\0';
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    gw_conn_t *c = conn_of(p);
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
    gw_conn_t *c = conn_of(p);
    c->capture = 0;
    if (strcasecmp(c->field, "content-type") == 0) {
        c->capture = 1;
        c->cur->content_type[0] = '\0';
    } else if (strcasecmp(c->field, "expect") == 0) {
        c->capture = 2;
    } else if (strcasecmp(c->field, "last-event-id") == 0) {
        c->capture = 3;
        c->cur->last_event_id[0] = '\0';
    }
    c->field_len = 0;
    c->field[0] = '\0';
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    gw_conn_t *c = conn_of(p);
    gw_req_t *r = c->cur;
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
    } else if (c->capture == 3) {
        size_t have = strlen(r->last_event_id); /* longer than any seq: cut, then ignored */
        if (have + len < sizeof r->last_event_id) {
            memcpy(r->last_event_id + have, at, len);
            r->last_event_id[have + len] = '\0';
        }
    }
    return 0;
}

static void send_continue(gw_conn_t *c, gw_req_t *r);

static int on_headers_complete(llhttp_t *p)
{
    gw_conn_t *c = conn_of(p);
    gw_req_t *r = c->cur;
    const gw_config_t *cfg = c->srv->cfg;
    r->method = p->method;
    /* After gw_server_stop() every request is the connection's last, so busy connections
     * still drain when clients keep pipelining. */
    r->keep_alive = llhttp_should_keep_alive(p) && !c->srv->stopping;
    const char *q = strchr(r->url, '?');
    snprintf(r->query, sizeof r->query, "%s", q ? q + 1 : "");

    int has_len = (p->flags & F_CONTENT_LENGTH) != 0, chunked = (p->flags & F_CHUNKED) != 0;
    if (r->method == HTTP_POST && !has_len && !chunked) {
        gw__reject(r, 411, "length_required",
                   "POST needs Content-Length or Transfer-Encoding: chunked");
        return -1;
    }
    if (has_len && p->content_length > cfg->max_body_bytes) {
        /* Answered from the headers: the body is never read. */
        gw__reject(r, 413, "too_large", "the body (%llu bytes) exceeds %zu bytes",
                   (unsigned long long)p->content_length, cfg->max_body_bytes);
        return -1;
    }
    if (has_len && p->content_length > 0) {
        r->body = malloc((size_t)p->content_length);
        if (r->body == NULL) {
            gw__reject(r, 503, "overloaded", "out of memory");
            return -1;
        }
        r->body_cap = (size_t)p->content_length;
    }
    c->phase = GW_PH_BODY;
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
    gw_conn_t *c = conn_of(p);
    gw_req_t *r = c->cur;
    size_t limit = c->srv->cfg->max_body_bytes;
    if (r->body_len + len > limit) {
        gw__reject(r, 413, "too_large", "the body exceeds %zu bytes", limit);
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
            gw__reject(r, 503, "overloaded", "out of memory");
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
    gw_conn_t *c = conn_of(p);
    gw_req_t *r = c->cur;
    gw_server_t *srv = c->srv;
    c->cur = NULL;
    c->phase = GW_PH_IDLE;
    uv_timer_stop(&c->timer);
    if (!r->keep_alive)
        c->fatal = 1; /* no more requests after this one */
    gw_router_dispatch(srv->routes, srv->nroutes, r);
    /* Enough answers outstanding on this connection: stop parsing until some are sent. */
    if (c->nreqs >= srv->cfg->max_pipelined || c->fatal)
        return HPE_PAUSED;
    return 0;
}

void gw__http_settings(llhttp_settings_t *s)
{
    llhttp_settings_init(s);
    s->on_message_begin = on_message_begin;
    s->on_url = on_url;
    s->on_header_field = on_header_field;
    s->on_header_field_complete = on_header_field_complete;
    s->on_header_value = on_header_value;
    s->on_headers_complete = on_headers_complete;
    s->on_body = on_body;
    s->on_message_complete = on_message_complete;
}

/* ---- reading ---- */

static void try_resume(gw_conn_t *c)
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

static void process_input(gw_conn_t *c, const char *data, size_t len)
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
        gw_req_t *r = c->cur;
        if (r == NULL)
            r = gw__http_req_begin(c);
        if (r != NULL)
            gw__reject(r, 400, "bad_request", "malformed HTTP: %s",
                       llhttp_get_error_reason(&c->parser));
        c->cur = NULL;
        c->phase = GW_PH_IDLE;
        c->fatal = 1;
    }
    if (c->fatal)
        uv_read_stop((uv_stream_t *)&c->tcp);
    if (!c->closing)
        flush(c);
    conn_release(c);
}

/* Unlinks the request being received (always the tail) when it can never complete. */
static void drop_partial(gw_conn_t *c)
{
    gw_req_t *r = c->cur, **pp = &c->head, *prev = NULL;
    if (r == NULL)
        return;
    c->cur = NULL;
    c->phase = GW_PH_IDLE;
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
    gw_conn_t *c = (gw_conn_t *)s;
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
            gw__http_close(c);
        else
            flush(c);
    } else if (nread < 0) {
        /* Reset or error. Handlers still holding requests keep the connection (not the
         * socket) alive. */
        drop_partial(c);
        gw__http_close(c);
    }
}

/* ---- writing ---- */

/* One answer on its way out: the head is copied in (the request is recycled at once), the
 * body is handed over. */
typedef struct gw_write {
    uv_write_t w;
    gw_conn_t *c;
    char *body;
    char head[512];
} write_t;

static write_t *write_get(gw_conn_t *c)
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

static void write_put(gw_conn_t *c, write_t *wr)
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
    gw_conn_t *c = wr->c;
    write_put(c, wr);
    if (status < 0 && !c->closing)
        gw__http_close(c);
    conn_release(c);
}

/* Queues head + body; the write holds a reference on the connection until on_write. */
static void write_bufs(gw_conn_t *c, write_t *wr, size_t head_len, size_t body_len)
{
    uv_buf_t b[2] = {uv_buf_init(wr->head, (unsigned)head_len),
                     uv_buf_init(wr->body, (unsigned)body_len)};
    c->refs++;
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, b, body_len > 0 ? 2 : 1, on_write) != 0) {
        c->refs--;
        write_put(c, wr);
        gw__http_close(c);
    }
}

/* Interim answer to "Expect: 100-continue". Queued like any answer, so it can only follow
 * the final answers of the requests before r; hence sent once r is the pipeline's head. */
static void send_continue(gw_conn_t *c, gw_req_t *r)
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

static void close_gracefully(gw_conn_t *c);

/* ---- streaming answers ---- */

/* A streaming connection reads only to notice the client leaving. */
static void on_stream_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread < 0)
        gw__http_close((gw_conn_t *)s);
}

static void start_streaming(gw_conn_t *c)
{
    c->streaming = 1;
    uv_timer_stop(&c->timer);
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_buf, on_stream_read) != 0)
        gw__http_close(c);
}

/* The stream's owner hears of the end once, before the connection can be freed. */
static void stream_gone(gw_conn_t *c)
{
    void (*cb)(void *) = c->stream_close;
    c->stream_close = NULL;
    c->streaming = 0;
    if (cb != NULL)
        cb(c->stream_arg);
}

gw_conn_t *gw_respond_stream(gw_req_t *r, const char *ctype, const char *extra, char *body,
                             size_t len, void (*on_close)(void *arg), void *arg)
{
    gw_conn_t *c = r->conn;
    if (r->ready) {
        free(body);
        return NULL;
    }
    if (r->head_only || c->closing || c->lingering || c->stream_close != NULL) {
        free(body);
        gw_respond(r, 200, ctype, NULL, 0, extra);
        return NULL;
    }
    int n = snprintf(r->resp_head, sizeof r->resp_head,
                     "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nCache-Control: no-cache, no-store\r\n"
                     "Connection: close\r\n%s\r\n",
                     ctype, extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof r->resp_head) {
        free(body);
        gw_respond_error(r, 500, "internal", "stream headers too long");
        return NULL;
    }
    r->resp_head_len = (size_t)n;
    r->resp = body;
    r->resp_len = body != NULL ? len : 0;
    r->stream = 1;
    r->keep_alive = 0;
    r->ready = 1;
    c->fatal = 1; /* nothing after a stream on this connection */
    c->stream_close = on_close;
    c->stream_arg = arg;
    gw_server_t *srv = c->srv;
    if (srv->ops->on_response) {
        double secs = (double)(uv_hrtime() - r->start_ns) / 1e9;
        srv->ops->on_response(srv->ctx, r->route ? r->route : "other", 200, secs);
    }
    /* No flush here: the head leaves when the handler returns (process_input flushes), so
     * on_close cannot run before the caller has the connection. */
    return c;
}

int gw_stream_write(gw_conn_t *c, const void *data, size_t len, size_t max_queued)
{
    if (!c->streaming || c->closing || c->lingering)
        return PROTO_ESHUTDOWN;
    if (c->tcp.write_queue_size > max_queued)
        return PROTO_EQUEUEFULL;
    write_t *wr = write_get(c);
    if (wr == NULL)
        return PROTO_ENOMEM;
    if ((wr->body = malloc(len > 0 ? len : 1)) == NULL) {
        write_put(c, wr);
        return PROTO_ENOMEM;
    }
    memcpy(wr->body, data, len);
    uv_buf_t b = uv_buf_init(wr->body, (unsigned)len);
    c->refs++;
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        c->refs--;
        write_put(c, wr);
        gw__http_close(c);
        return PROTO_ESHUTDOWN;
    }
    return 0;
}

/* Writes every ready answer at the head of the pipeline, in order. */
static void flush(gw_conn_t *c)
{
    while (c->head != NULL && c->head->ready && c->head != c->cur) {
        gw_req_t *r = c->head;
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
        if (r->stream && !c->closing && !c->lingering) {
            /* The head of a streaming answer is out: from now on the handler writes. */
            req_put(c, r);
            start_streaming(c);
            return;
        }
        req_put(c, r);
        if (close_after) {
            /* Whatever follows on this connection is not answered. */
            close_gracefully(c);
            return;
        }
    }
    if (c->cur != NULL && c->cur == c->head && c->cur->expect_continue &&
        c->phase == GW_PH_BODY)
        send_continue(c, c->cur);
    if ((c->srv->stopping || c->eof) && c->head == NULL && c->cur == NULL && c->pending == NULL) {
        close_gracefully(c);
        return;
    }
    try_resume(c);
    arm_idle(c);
}

/* ---- closing ---- */

static void conn_release(gw_conn_t *c)
{
    if (--c->refs > 0)
        return;
    gw_server_t *srv = c->srv;
    gw_req_t *r = c->head;
    while (r != NULL) {
        gw_req_t *next = r->next;
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
    gw__server_check_drained(srv);
}

void gw__http_close(gw_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    stream_gone(c);
    uv_timer_stop(&c->timer);
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* Closes a connection that owes nothing; an answer still in the socket's write queue would
 * be cancelled by uv_close, so then it shuts down after the write instead. */
void gw__http_close_idle(gw_conn_t *c)
{
    if (c->tcp.write_queue_size > 0)
        close_gracefully(c);
    else
        gw__http_close(c);
}

static void on_linger_timeout(uv_timer_t *t)
{
    gw__http_close(t->data);
}

static void on_linger_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread < 0)
        gw__http_close((gw_conn_t *)s);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    gw_conn_t *c = req->data;
    (void)status;
    free(req);
    if (c->closing)
        return;
    /* Keep reading (and dropping) what the client still sends for a moment, so that it
     * receives our answer instead of a reset caused by unread data. */
    c->lingering = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_buf, on_linger_read) != 0) {
        gw__http_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_linger_timeout, LINGER_MS, 0);
}

static void close_gracefully(gw_conn_t *c)
{
    if (c->closing || c->lingering)
        return;
    stream_gone(c);
    uv_shutdown_t *sd = malloc(sizeof *sd);
    c->lingering = 1;
    uv_timer_stop(&c->timer);
    if (sd == NULL) {
        gw__http_close(c);
        return;
    }
    sd->data = c;
    if (uv_shutdown(sd, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(sd);
        gw__http_close(c);
    }
}
