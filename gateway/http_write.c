/* The way out of a connection (see http.h): answers written strictly in pipeline order, at
 * most GW_HTTP_MAX_QUEUED unsent bytes at a time, the write clock, and closing (graceful
 * shutdown with a short linger, or at once). */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "err.h"
#include "response.h"

#define LINGER_MS 1000

static void on_write_timeout(uv_timer_t *t);
static void close_gracefully(gw_conn_t *c);

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
    c->writes--;
    if (status < 0 && !c->closing) {
        gw__http_close(c);
    } else if (!c->closing) {
        /* Progress: the write clock restarts for what is still queued, and answers held
         * back by GW_HTTP_MAX_QUEUED may go now. */
        if (c->writes > 0)
            uv_timer_start(&c->wtimer, on_write_timeout, c->srv->cfg->write_timeout_ms, 0);
        else
            uv_timer_stop(&c->wtimer);
        if (!c->lingering)
            gw__http_flush(c);
    }
    gw__http_release(c);
}

/* Answers queued and none written for write_timeout_ms: the client does not read. Closing
 * cancels the queued writes and frees them. */
static void on_write_timeout(uv_timer_t *t)
{
    gw_conn_t *c = t->data;
    GW_LOG_I("http_write_timeout", "queued_bytes=%zu", c->tcp.write_queue_size);
    gw__http_close(c);
}

/* HTTPS: replaces b[0..*n) by their ciphertext, which wr->body then owns. 0, or the
 * connection is closed. */
static int seal(gw_conn_t *c, write_t *wr, uv_buf_t *b, int *n)
{
    size_t len = 0;
    char *out;
    if (gw_tls_conn_write(c->tls, b, *n) != 0 || (out = gw_tls_conn_output(c->tls, &len)) == NULL) {
        write_put(c, wr);
        gw__http_close(c);
        return -1;
    }
    free(wr->body);
    wr->body = out;
    b[0] = uv_buf_init(out, (unsigned)len);
    *n = 1;
    return 0;
}

/* Queues b[0..n) as they are; the write holds a reference on the connection until
 * on_write. */
static void queue(gw_conn_t *c, write_t *wr, uv_buf_t *b, int n)
{
    /* Nothing queued before it: try the socket now. An answer the socket takes whole is done
     * here, with no write request, no callback and no epoll_ctl (libuv re-arms the watcher
     * after every uv_write it completes: one more syscall per answer). */
    if (c->writes == 0 && c->tcp.write_queue_size == 0) {
        /* On an error, uv_write below meets it again and reports it from its callback: a
         * close here would free what our caller (a stream's event) is still using. */
        int w = uv_try_write((uv_stream_t *)&c->tcp, b, (unsigned)n);
        for (int i = 0; w > 0 && i < n; i++) { /* skip what went out */
            size_t k = (size_t)w < b[i].len ? (size_t)w : b[i].len;
            b[i].base += k;
            b[i].len -= k;
            w -= (int)k;
        }
        size_t left = 0;
        for (int i = 0; i < n; i++)
            left += b[i].len;
        if (left == 0) {
            write_put(c, wr);
            return;
        }
    }
    c->refs++;
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, b, (unsigned)n, on_write) != 0) {
        c->refs--;
        write_put(c, wr);
        gw__http_close(c);
        return;
    }
    if (c->writes++ == 0)
        uv_timer_start(&c->wtimer, on_write_timeout, c->srv->cfg->write_timeout_ms, 0);
}

/* Queues b[0..n), under HTTPS encrypted first. */
static void submit(gw_conn_t *c, write_t *wr, uv_buf_t *b, int n)
{
    if (c->tls == NULL || seal(c, wr, b, &n) == 0)
        queue(c, wr, b, n);
}

/* Queues head + body. */
static void write_bufs(gw_conn_t *c, write_t *wr, size_t head_len, size_t body_len)
{
    uv_buf_t b[2] = {uv_buf_init(wr->head, (unsigned)head_len),
                     uv_buf_init(wr->body, (unsigned)body_len)};
    submit(c, wr, b, body_len > 0 ? 2 : 1);
}

void gw__http_tls_flush(gw_conn_t *c)
{
    size_t len;
    char *out = gw_tls_conn_output(c->tls, &len);
    if (out == NULL || c->closing) {
        free(out);
        return;
    }
    write_t *wr = write_get(c);
    if (wr == NULL) {
        free(out);
        gw__http_close(c);
        return;
    }
    wr->body = out;
    uv_buf_t b = uv_buf_init(out, (unsigned)len);
    queue(c, wr, &b, 1);
}

/* Interim answer to "Expect: 100-continue". Queued like any answer, so it can only follow
 * the final answers of the requests before r; hence sent once r is the pipeline's head. */
void gw__http_send_continue(gw_conn_t *c, gw_req_t *r)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (r->continued || c->closing || c->lingering)
        return;
    r->continued = 1;
    /* The body clock starts now: until the 100 goes out the client is waiting on us. */
    uv_timer_start(&c->timer, gw__http_on_timer, c->srv->cfg->body_timeout_ms, 0);
    write_t *wr = write_get(c);
    if (wr == NULL)
        return; /* the client sends the body after its own timeout anyway */
    memcpy(wr->head, cont, sizeof cont - 1);
    write_bufs(c, wr, sizeof cont - 1, 0);
}

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
    if (uv_read_start((uv_stream_t *)&c->tcp, gw__http_alloc_buf, on_stream_read) != 0)
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
    submit(c, wr, &b, 1); /* starts the write clock: a reader that stops reading is closed */
    return c->closing ? PROTO_ESHUTDOWN : 0;
}

/* Writes every ready answer at the head of the pipeline, in order. */
void gw__http_flush(gw_conn_t *c)
{
    /* Past GW_HTTP_MAX_QUEUED unsent bytes or GW_HTTP_MAX_WRITES writes, ready answers wait
     * here (on_write flushes again): a client that does not read fills its pipeline, and then
     * it is not read either. */
    while (c->head != NULL && c->head->ready && c->head != c->cur &&
           c->tcp.write_queue_size <= GW_HTTP_MAX_QUEUED && c->writes < GW_HTTP_MAX_WRITES) {
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
            gw__http_req_put(c, r);
            start_streaming(c);
            return;
        }
        gw__http_req_put(c, r);
        if (close_after) {
            /* Whatever follows on this connection is not answered. */
            close_gracefully(c);
            return;
        }
    }
    if (c->cur != NULL && c->cur == c->head && c->cur->expect_continue && c->phase == GW_PH_BODY)
        gw__http_send_continue(c, c->cur);
    if ((c->srv->stopping || c->eof) && c->head == NULL && c->cur == NULL && c->pending == NULL) {
        close_gracefully(c);
        return;
    }
    gw__http_try_resume(c);
    gw__http_arm_idle(c);
}

/* ---- closing ---- */

static void on_handle_closed(uv_handle_t *h)
{
    gw_conn_t *c = h->data;
    if (--c->handles_open == 0)
        gw__http_release(c);
}

void gw__http_release(gw_conn_t *c)
{
    if (--c->refs > 0)
        return;
    gw_server_t *srv = c->srv;
    gw_req_t *r = c->head;
    while (r != NULL) {
        gw_req_t *next = r->next;
        gw__http_req_put(c, r);
        r = next;
    }
    free(c->spare);
    free(c->spare_wr);
    free(c->pending);
    gw_tls_conn_destroy(c->tls);
    if (c->counted)
        srv->ops->disconnect(srv->ops->door, c->peer);
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
    uv_timer_stop(&c->wtimer);
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->wtimer, on_handle_closed);
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
    if (uv_read_start((uv_stream_t *)&c->tcp, gw__http_alloc_buf, on_linger_read) != 0) {
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
    if (c->tls != NULL) { /* an orderly end, so that the client knows nothing was cut */
        gw_tls_conn_close_notify(c->tls);
        gw__http_tls_flush(c);
    }
    if (c->closing || uv_shutdown(sd, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(sd);
        gw__http_close(c);
    }
}
