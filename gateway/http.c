/* The HTTP/1.1 connection core, the way in (http_write.c is the way out). One gw_conn per
 * client connection embeds its uv_tcp_t, llhttp_t and timers. Requests are kept in a
 * per-connection pipeline in arrival order; each becomes ready when its answer is built (at
 * once for errors and GETs, later for handlers that wait on jobs), and answers leave
 * strictly from the head of the pipeline.
 *
 * This file knows no paths: a complete request goes to gw_router_dispatch. Read top to
 * bottom it follows a connection: accept, requests, clocks, read, parse (llhttp callbacks),
 * hand over. */
#include "http.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "response.h"
#include "router.h"

enum { CAP_NONE, CAP_CTYPE, CAP_EXPECT, CAP_TE, CAP_CE, CAP_LEID, CAP_AUTH };

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void process_input(gw_conn_t *c, const char *data, size_t len);
static void tls_pump(gw_conn_t *c);

/* One read buffer for the whole server: libuv calls alloc then read for one read at a time
 * on the loop thread, and nothing keeps a pointer into it after on_read (bodies, headers
 * and the unparsed remainder are copied), so no read allocates.
 *
 * Except the rest of a plain request's sized body: the socket reads it straight into the
 * body (at most what is left of it, so no next request lands there), and on_body, handed
 * bytes already in place, copies nothing. The parser still sees every byte. */
#define DIRECT_MIN (16u << 10) /* smaller rests go through rbuf: one copy is cheaper there */
void gw__http_alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    gw_conn_t *c = h->data;
    gw_req_t *r = c->cur;
    (void)suggested;
    if (c->tls == NULL && r != NULL && c->phase == GW_PH_BODY && r->body_sized && r->body != NULL &&
        r->body_cap - r->body_len >= DIRECT_MIN && !c->paused && c->pending == NULL && !c->fatal &&
        !c->closing && !c->lingering) {
        size_t rest = r->body_cap - r->body_len;
        *buf =
            uv_buf_init((char *)r->body + r->body_len, rest > UINT_MAX ? UINT_MAX : (unsigned)rest);
        return;
    }
    *buf = uv_buf_init(c->srv->rbuf, sizeof c->srv->rbuf);
}

/* ---- accepting ---- */

static void peer_key(gw_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    memset(c->peer, 0, sizeof c->peer);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET6) {
        memcpy(c->peer, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    } else if (ss.ss_family == AF_INET) {
        c->peer[10] = c->peer[11] = 0xff; /* ::ffff:a.b.c.d, as a dual-stack socket sees it */
        memcpy(c->peer + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    }
}

const uint8_t *gw_req_peer(const gw_req_t *r)
{
    return r->conn->peer;
}

void gw__http_accept(gw_listener_t *l)
{
    gw_server_t *srv = l->srv;
    gw_conn_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->srv = srv;
    c->refs = 1;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    uv_timer_init(srv->loop, &c->wtimer);
    c->tcp.data = c->timer.data = c->wtimer.data = c;
    c->handles_open = 3;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tcp) != 0) {
        gw__http_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &srv->settings);
    c->parser.data = c;
    peer_key(c);
    if (srv->ops->connect != NULL) {
        if (srv->ops->connect(srv->ops->door, c->peer) != 0) {
            /* At its per-address cap: closed at once, so it costs the others nothing. */
            gw__http_close(c);
            return;
        }
        c->counted = 1;
    }
    if (l->tls != NULL && (srv->nconns > srv->cfg->max_connections || srv->stopping ||
                           (c->tls = gw_tls_conn_create(l->tls)) == NULL)) {
        gw__http_close(c); /* no answer can be read before a handshake */
        return;
    }
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
        gw__http_flush(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, gw__http_alloc_buf, on_read);
    if (c->tls != NULL) /* the handshake runs on the header clock */
        uv_timer_start(&c->timer, gw__http_on_timer, srv->cfg->header_timeout_ms, 0);
    else
        gw__http_arm_idle(c);
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
void gw__http_req_put(gw_conn_t *c, gw_req_t *r)
{
    if (r->state_free != NULL)
        r->state_free(r->state);
    c->srv->buffered -= r->reserved;
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
        gw__http_flush(c);
    gw__http_release(c);
}

int gw_req_reserve(gw_req_t *r, size_t n)
{
    gw_server_t *srv = r->conn->srv;
    if (n > srv->cfg->max_buffered_bytes - srv->buffered)
        return PROTO_ENOMEM;
    srv->buffered += n;
    r->reserved += n;
    return 0;
}

int gw_req_orphaned(const gw_req_t *r)
{
    return r->conn->closing;
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

void gw__http_on_timer(uv_timer_t *t)
{
    gw_conn_t *c = t->data;
    if (c->closing || c->lingering)
        return;
    if (c->tls != NULL && gw_tls_conn_handshaking(c->tls)) {
        gw__http_close(c); /* a TLS handshake that stalls: nothing can be answered */
        return;
    }
    if (c->cur == NULL && c->phase == GW_PH_START) {
        /* Only empty lines (or nothing llhttp could start a request with) since the first
         * byte: a request that never began is as late as one that never ends. */
        gw_req_t *r = gw__http_req_begin(c);
        if (r == NULL) {
            gw__http_close(c);
            return;
        }
        gw__reject(r, 408, "timeout", "no request within %llu ms of the first byte",
                   (unsigned long long)c->srv->cfg->header_timeout_ms);
        gw__http_flush(c);
        return;
    }
    if (c->cur != NULL && c->phase != GW_PH_IDLE) {
        /* A request that is not arriving fast enough: answer 408 and cut the client. */
        const gw_config_t *cfg = c->srv->cfg;
        unsigned long long ms =
            c->phase == GW_PH_HEADERS ? cfg->header_timeout_ms : cfg->body_timeout_ms;
        gw__reject(c->cur, 408, "timeout", "the request was not received within %llu ms", ms);
        gw__http_flush(c);
        return;
    }
    if (c->head == NULL)
        gw__http_close_idle(c); /* idle keep-alive connection */
}

void gw__http_arm_idle(gw_conn_t *c)
{
    /* A request on its way (or bytes that may start one) has its own clock. */
    if (c->closing || c->lingering || c->streaming || c->phase != GW_PH_IDLE)
        return;
    /* A handshake keeps the header clock started at accept: the write of the server's own
     * flight must not turn it into the (longer) idle one, or a client that stalls after its
     * ClientHello would hold the connection for idle_timeout_ms. */
    if (c->tls != NULL && gw_tls_conn_handshaking(c->tls))
        return;
    if (c->cur == NULL && c->head == NULL)
        uv_timer_start(&c->timer, gw__http_on_timer, c->srv->cfg->idle_timeout_ms, 0);
    else if (c->cur == NULL)
        uv_timer_stop(&c->timer); /* waiting for handlers: their own deadlines apply */
}

/* ---- reading ---- */

void gw__http_try_resume(gw_conn_t *c)
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
    if (c->tls != NULL && !c->paused && gw_tls_conn_pending(c->tls))
        tls_pump(c); /* records read while the pipeline was full */
    if (!c->paused && !c->closing && !c->lingering && !c->fatal && !c->eof)
        uv_read_start((uv_stream_t *)&c->tcp, gw__http_alloc_buf, on_read);
}

static void process_input(gw_conn_t *c, const char *data, size_t len)
{
    if (c->cur == NULL && c->phase == GW_PH_IDLE && len > 0) {
        /* The header clock starts at the first byte of anything: bytes that begin no
         * request (empty lines) are not progress and must not keep the connection. */
        c->phase = GW_PH_START;
        uv_timer_start(&c->timer, gw__http_on_timer, c->srv->cfg->header_timeout_ms, 0);
    }
    if (c->cur != NULL) {
        /* Counted per read, so a read that also holds the next requests counts against this
         * one: the slack covers one read. */
        const gw_config_t *cfg = c->srv->cfg;
        size_t limit = cfg->max_header_bytes + 2 * cfg->max_body_bytes + GW_HTTP_WIRE_SLACK;
        c->cur->wire += len;
        if (c->cur->wire > limit) {
            gw__reject(c->cur, 400, "bad_request",
                       "the request's framing exceeds %zu bytes on the wire", limit);
            gw__http_flush(c);
            return;
        }
    }
    c->refs++; /* callbacks below may flush and close */
    c->parsing = 1;
    llhttp_errno_t err;
    /* A loop, not recursion through gw__http_flush(): a read full of tiny pipelined requests pauses
     * the parser every max_pipelined requests. */
    while ((err = llhttp_execute(&c->parser, data, len)) == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&c->parser);
        size_t used = pos != NULL && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
        data += used;
        len -= used;
        c->paused = 1;
        gw__http_flush(c); /* answers already built (errors, GETs) free pipeline room at once */
        if (c->closing || c->lingering || c->fatal)
            break;
        if (c->nreqs < c->srv->cfg->max_pipelined) {
            c->paused = 0;
            llhttp_resume(&c->parser);
            if (len == 0)
                break;
            continue;
        }
        if (len > 0) { /* kept until answers go out; see gw__http_try_resume() */
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
        gw__http_flush(c);
    gw__http_release(c);
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
    gw__http_req_put(c, r);
}

/* The client half-closed (or sent close_notify): it still expects the answers to what it
 * asked; a request cut in the middle is dropped. */
static void on_eof(gw_conn_t *c)
{
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->eof = 1;
    drop_partial(c);
    uv_timer_stop(&c->timer);
    if (c->head == NULL && c->pending == NULL)
        gw__http_close(c);
    else
        gw__http_flush(c);
}

/* ---- HTTPS: ciphertext in, plaintext to the parser (tls_conn.h) ---- */

/* Decrypts what tc holds while the parser takes input; sends what the session has to say
 * (handshake messages, tickets, alerts). */
static void tls_pump(gw_conn_t *c)
{
    int handshaking = gw_tls_conn_handshaking(c->tls);
    c->refs++;
    while (!c->closing && !c->lingering && !c->fatal && !c->paused && !c->eof) {
        int n = gw_tls_conn_read(c->tls, c->srv->pbuf, sizeof c->srv->pbuf);
        if (n > 0) {
            process_input(c, c->srv->pbuf, (size_t)n);
            continue;
        }
        if (n == PROTO_ESHUTDOWN) {
            on_eof(c);
        } else if (n < 0) {
            gw__http_close(c); /* a refused handshake or a bad record */
        }
        break;
    }
    if (!c->closing) {
        gw__http_tls_flush(c);
        if (handshaking && !gw_tls_conn_handshaking(c->tls) && c->phase == GW_PH_IDLE) {
            uv_timer_stop(&c->timer);
            gw__http_arm_idle(c); /* from the handshake's clock to the idle one */
        }
    }
    gw__http_release(c);
}

static void tls_input(gw_conn_t *c, const char *data, size_t len)
{
    gw_tls_conn_feed(c->tls, data, len);
    tls_pump(c);
    /* what was not consumed outlives the server's read buffer */
    if (!c->closing && gw_tls_conn_keep(c->tls) != 0)
        gw__http_close(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    gw_conn_t *c = (gw_conn_t *)s;
    if (nread > 0 && !c->closing && !c->fatal) {
        if (c->tls != NULL)
            tls_input(c, buf->base, (size_t)nread);
        else
            process_input(c, buf->base, (size_t)nread);
    } else if (nread == UV_EOF && !c->closing && !c->lingering) {
        on_eof(c);
    } else if (nread < 0) {
        /* Reset or error. Handlers still holding requests keep the connection (not the
         * socket) alive. */
        drop_partial(c);
        gw__http_close(c);
    }
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
    /* After leading empty lines the header clock is already running: it is not reset. */
    if (c->phase != GW_PH_START)
        uv_timer_start(&c->timer, gw__http_on_timer, c->srv->cfg->header_timeout_ms, 0);
    c->phase = GW_PH_HEADERS;
    c->header_bytes = 0;
    c->field_len = 0;
    c->capture = CAP_NONE;
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

/* Appends at[0..len) to the string buf; what does not fit marks the request te_over. */
static void append_value(gw_req_t *r, char *buf, size_t cap, const char *at, size_t len)
{
    size_t have = strlen(buf);
    if (have + len >= cap) {
        r->te_over = 1;
        return;
    }
    memcpy(buf + have, at, len);
    buf[have + len] = '\0';
}

static int on_header_field_complete(llhttp_t *p)
{
    gw_conn_t *c = conn_of(p);
    gw_req_t *r = c->cur;
    c->capture = CAP_NONE;
    if (strcasecmp(c->field, "content-type") == 0) {
        c->capture = CAP_CTYPE;
        r->content_type[0] = '\0';
    } else if (strcasecmp(c->field, "expect") == 0) {
        c->capture = CAP_EXPECT;
    } else if (strcasecmp(c->field, "transfer-encoding") == 0) {
        c->capture = CAP_TE;
        append_value(r, r->te, sizeof r->te, ",", 1); /* several lines make one list */
    } else if (strcasecmp(c->field, "content-encoding") == 0) {
        c->capture = CAP_CE;
        append_value(r, r->ce, sizeof r->ce, ",", 1);
    } else if (strcasecmp(c->field, "last-event-id") == 0) {
        c->capture = CAP_LEID;
        r->last_event_id[0] = '\0';
    } else if (strcasecmp(c->field, "authorization") == 0) {
        c->capture = CAP_AUTH;
        if (r->authorization[0] != '\0')
            r->authorization_over = 1; /* two of them: which one counts is ambiguous */
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
    if (c->capture == CAP_CTYPE) {
        size_t have = strlen(r->content_type);
        if (have + len < sizeof r->content_type) {
            memcpy(r->content_type + have, at, len);
            r->content_type[have + len] = '\0';
        }
    } else if (c->capture == CAP_EXPECT) {
        if (len >= 12 && strncasecmp(at, "100-continue", 12) == 0)
            r->expect_continue = 1;
    } else if (c->capture == CAP_TE) {
        append_value(r, r->te, sizeof r->te, at, len);
    } else if (c->capture == CAP_CE) {
        append_value(r, r->ce, sizeof r->ce, at, len);
    } else if (c->capture == CAP_AUTH) {
        size_t have = strlen(r->authorization);
        if (have + len < sizeof r->authorization) {
            memcpy(r->authorization + have, at, len);
            r->authorization[have + len] = '\0';
        } else {
            r->authorization_over = 1;
        }
    } else if (c->capture == CAP_LEID) {
        size_t have = strlen(r->last_event_id); /* longer than any seq: cut, then ignored */
        if (have + len < sizeof r->last_event_id) {
            memcpy(r->last_event_id + have, at, len);
            r->last_event_id[have + len] = '\0';
        }
    }
    return 0;
}

/* True if every token of the comma-separated list is `want` (case-insensitive, spaces
 * around); else *bad is the first other token (in a static buffer). An empty list is fine. */
static int codings_are(const char *list, const char *want, const char **bad)
{
    static char tok[64];
    const char *s = list;
    while (*s != '\0') {
        s += strspn(s, " \t,");
        size_t n = strcspn(s, ",");
        size_t m = n;
        while (m > 0 && (s[m - 1] == ' ' || s[m - 1] == '\t'))
            m--;
        if (m > 0 && !(m == strlen(want) && strncasecmp(s, want, m) == 0)) {
            snprintf(tok, sizeof tok, "%.*s", (int)m, s);
            *bad = tok;
            return 0;
        }
        s += n;
    }
    return 1;
}

static int on_headers_complete(llhttp_t *p)
{
    gw_conn_t *c = conn_of(p);
    gw_req_t *r = c->cur;
    const gw_config_t *cfg = c->srv->cfg;
    r->method = p->method;
    r->head_only = r->method == HTTP_HEAD; /* whatever answers it: headers only */
    /* After gw_server_stop() every request is the connection's last, so busy connections
     * still drain when clients keep pipelining. */
    r->keep_alive = llhttp_should_keep_alive(p) && !c->srv->stopping;
    /* CONNECT and Upgrade: what follows this request is another protocol, which we do not
     * speak. The request gets its one answer, then the connection closes. */
    if (p->upgrade)
        r->keep_alive = 0;
    const char *q = strchr(r->url, '?');
    snprintf(r->query, sizeof r->query, "%s", q ? q + 1 : "");

    int has_len = (p->flags & F_CONTENT_LENGTH) != 0, chunked = (p->flags & F_CHUNKED) != 0;
    if (r->method == HTTP_POST && !has_len && !chunked) {
        gw__reject(r, 411, "length_required",
                   "POST needs Content-Length or Transfer-Encoding: chunked");
        return -1;
    }
    const char *coding = NULL;
    if (r->te_over || !codings_are(r->te, "chunked", &coding)) {
        /* llhttp checks that chunked comes last; anything before it (gzip, ...) we would
         * not decode, so the body would be taken for what it is not. */
        gw__reject(r, 501, "unsupported_transfer_encoding",
                   "Transfer-Encoding '%s' is not supported: send the body as it is, with "
                   "Content-Length or Transfer-Encoding: chunked",
                   r->te_over ? r->te : coding);
        return -1;
    }
    if (!codings_are(r->ce, "identity", &coding)) {
        gw__reject(r, 415, "unsupported_content_encoding",
                   "Content-Encoding '%s' is not supported: send the body as it is", coding);
        return -1;
    }
    if (has_len && p->content_length > cfg->max_body_bytes) {
        /* Answered from the headers: the body is never read. */
        gw__reject(r, 413, "too_large", "the body (%llu bytes) exceeds %zu bytes",
                   (unsigned long long)p->content_length, cfg->max_body_bytes);
        return -1;
    }
    if (has_len && p->content_length > 0 && gw_req_reserve(r, (size_t)p->content_length) != 0) {
        /* Answered from the headers too: the body would not fit the memory budget. */
        gw__reject(r, 503, "overloaded",
                   "too many request bytes held (max_buffered_bytes); retry later");
        return -1;
    }
    if (has_len && p->content_length > 0) {
        r->body = malloc((size_t)p->content_length);
        if (r->body == NULL) {
            gw__reject(r, 503, "overloaded", "out of memory");
            return -1;
        }
        r->body_cap = (size_t)p->content_length;
        r->body_sized = 1;
    }
    c->phase = GW_PH_BODY;
    if (!r->expect_continue)
        uv_timer_start(&c->timer, gw__http_on_timer, cfg->body_timeout_ms, 0);
    else if (c->head == r)
        gw__http_send_continue(c, r); /* starts the body clock */
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
        if (gw_req_reserve(r, cap - r->body_cap) != 0) {
            gw__reject(r, 503, "overloaded",
                       "too many request bytes held (max_buffered_bytes); retry later");
            return -1;
        }
        uint8_t *nb = realloc(r->body, cap);
        if (nb == NULL) {
            gw__reject(r, 503, "overloaded", "out of memory");
            return -1;
        }
        r->body = nb;
        r->body_cap = cap;
    }
    if (at != (const char *)r->body + r->body_len) /* else read in place (alloc_buf) */
        memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    return 0;
}

/* Chunk extensions are skipped, but counted: without a bound a client could send gigabytes
 * of them with no body at all. */
static int on_chunk_extension(llhttp_t *p, const char *at, size_t len)
{
    gw_conn_t *c = conn_of(p);
    gw_req_t *r = c->cur;
    (void)at;
    r->ext_bytes += len;
    if (r->ext_bytes <= GW_HTTP_MAX_CHUNK_EXT)
        return 0;
    gw__reject(r, 400, "bad_request", "chunk extensions exceed %u bytes", GW_HTTP_MAX_CHUNK_EXT);
    return -1;
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
    s->on_chunk_extension_name = on_chunk_extension;
    s->on_chunk_extension_value = on_chunk_extension;
    s->on_message_complete = on_message_complete;
}
