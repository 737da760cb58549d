#include "splink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sp.h"

enum { S_IDLE, S_QUEUED, S_SENT, S_DONE };       /* a slot */
enum { C_DOWN, C_CONNECTING, C_HELLO, C_READY }; /* the connection */
enum { P_NONE, P_OPEN, P_CLOSING };              /* the pipe handle */

#define BACKOFF_MIN_MS 20
#define BACKOFF_MAX_MS 250
#define HELLO_TIMEOUT_MS 10000 /* NNG's negotiation timeout */
#define RBUF_MIN (64u << 10)   /* read buffer kept between messages */
#define RBUF_SHRINK (1u << 20) /* a buffer grown past this for a big reply is given back */
#define HEAD_CAP (PROTO_SP_IPC_HDR + 4 + PROTO_REQ_HEAD_MAX)

typedef struct slot slot_t;
struct slot {
    gw_splink_t *l;
    int index;
    int phase;
    uint32_t id;         /* the request id of the operation in S_SENT */
    uv_timer_t timer;    /* the deadline; then, at 0 ms, a completion that must not run inline */
    gw_link_status_t st; /* S_DONE: how it ended */
    const char *why;
    uint8_t *qmsg; /* S_QUEUED: the whole message, copied (the caller's payload is ours only
                    * during gw_splink_send) */
    size_t qlen;
    slot_t *qnext;
};

/* A write libuv could not finish at once: it owns the bytes left to write. */
typedef struct {
    uv_write_t req;
    gw_splink_t *l;
    uint8_t data[];
} wreq_t;

struct gw_splink {
    uv_loop_t *loop;
    char path[108];
    gw_link_done_cb cb;
    void *owner;
    uv_pipe_t pipe;
    uv_connect_t creq;
    uv_timer_t retry; /* the next dial, or the greeting's deadline */
    int pipe_state, conn, closing, handles;
    uint64_t backoff;
    uint32_t seq;
    uint8_t *rbuf;
    size_t rlen, rcap, need; /* need: bytes the message being read needs in rbuf */
    slot_t *qhead, *qtail;   /* sends waiting for the connection, in order */
    gw_link_dials_t dials;
    int busy, nslots;
    slot_t slots[];
};

static void dial(gw_splink_t *l);
static void on_slot_timer(uv_timer_t *t);
static void on_retry(uv_timer_t *t);
static void on_pipe_closed(uv_handle_t *h);

static void release(gw_splink_t *l)
{
    if (--l->handles > 0)
        return;
    for (int i = 0; i < l->nslots; i++)
        free(l->slots[i].qmsg);
    free(l->rbuf);
    free(l);
}

static void on_handle_closed(uv_handle_t *h)
{
    release(h->data);
}

static void on_slot_timer_closed(uv_handle_t *h)
{
    release(((slot_t *)h->data)->l);
}

/* Ends a slot's operation now (a loop callback of ours, never an API call): the owner's
 * callback may send again on any slot or destroy the link. */
static void deliver(slot_t *s, gw_link_status_t st, const char *why, const uint8_t *body,
                    size_t len)
{
    gw_splink_t *l = s->l;
    uv_timer_stop(&s->timer);
    free(s->qmsg);
    s->qmsg = NULL;
    s->phase = S_IDLE;
    l->busy--;
    l->cb(l->owner, s->index, st, why, body, len);
}

/* Ends it from the next loop iteration: API calls and connection drops land here. */
static void finish_later(slot_t *s, gw_link_status_t st, const char *why)
{
    s->phase = S_DONE;
    s->st = st;
    s->why = why;
    uv_timer_start(&s->timer, on_slot_timer, 0, 0);
}

static void unqueue(gw_splink_t *l, slot_t *s)
{
    slot_t **pp = &l->qhead;
    l->qtail = NULL;
    while (*pp != NULL) {
        if (*pp == s)
            *pp = s->qnext;
        else
            l->qtail = *pp, pp = &(*pp)->qnext;
    }
    s->qnext = NULL;
}

/* Closes the connection: its requests end BROKEN (next iteration), the next dial follows
 * the backoff. Queued sends wait for that dial. */
static void drop_conn(gw_splink_t *l, const char *why)
{
    if (l->conn == C_READY)
        l->dials.disconnect++;
    l->conn = C_DOWN;
    l->rlen = 0;
    l->need = 0;
    uv_timer_stop(&l->retry);
    if (l->pipe_state == P_OPEN) {
        l->pipe_state = P_CLOSING;
        uv_close((uv_handle_t *)&l->pipe, on_pipe_closed);
    }
    for (int i = 0; i < l->nslots; i++)
        if (l->slots[i].phase == S_SENT)
            finish_later(&l->slots[i], GW_LINK_BROKEN, why);
}

static void on_write(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    gw_splink_t *l = w->l;
    free(w);
    if (status < 0 && status != UV_ECANCELED && !l->closing && l->conn != C_DOWN)
        drop_conn(l, "writing to the backend failed");
}

/* Writes one message: at once when the socket takes it (the common case: no copy, no
 * callback), else the rest is copied and queued behind libuv's earlier writes. */
static int write_msg(gw_splink_t *l, const uv_buf_t *bufs, unsigned n)
{
    size_t total = 0, done = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    int w = uv_try_write((uv_stream_t *)&l->pipe, bufs, n);
    if (w >= 0 && (size_t)w == total)
        return 0;
    if (w < 0 && w != UV_EAGAIN)
        return w;
    if (w > 0)
        done = (size_t)w;
    wreq_t *r = malloc(sizeof *r + (total - done));
    if (r == NULL)
        return PROTO_ENOMEM;
    r->l = l;
    size_t at = 0, skip = done;
    for (unsigned i = 0; i < n; i++) {
        size_t from = skip < bufs[i].len ? skip : bufs[i].len;
        memcpy(r->data + at, bufs[i].base + from, bufs[i].len - from);
        at += bufs[i].len - from;
        skip -= from;
    }
    uv_buf_t rest = uv_buf_init((char *)r->data, (unsigned)at);
    int rv = uv_write(&r->req, (uv_stream_t *)&l->pipe, &rest, 1, on_write);
    if (rv < 0)
        free(r);
    return rv;
}

static void flush_queue(gw_splink_t *l)
{
    while (l->qhead != NULL && l->conn == C_READY) {
        slot_t *s = l->qhead;
        l->qhead = s->qnext;
        if (l->qhead == NULL)
            l->qtail = NULL;
        s->qnext = NULL;
        uv_buf_t b = uv_buf_init((char *)s->qmsg, (unsigned)s->qlen);
        s->phase = S_SENT;
        int rv = write_msg(l, &b, 1);
        free(s->qmsg);
        s->qmsg = NULL;
        if (rv < 0)
            drop_conn(l, "writing to the backend failed");
    }
}

/* One reply: its slot by the id's low bits, if that slot still waits for this id. */
static void on_message(gw_splink_t *l, const uint8_t *msg, size_t len)
{
    if (len < 4) {
        drop_conn(l, "a reply without a request id");
        return;
    }
    uint32_t id = proto_sp_get32(msg);
    uint32_t idx = id & (GW_SPLINK_SLOTS_MAX - 1);
    if (!(id & 0x80000000u) || idx >= (uint32_t)l->nslots)
        return; /* not ours: dropped, as NNG's req0 drops it */
    slot_t *s = &l->slots[idx];
    if (s->phase != S_SENT || s->id != id)
        return; /* the answer to a cancelled or timed-out request */
    deliver(s, GW_LINK_OK, "", msg + 4, len - 4);
}

static void parse(gw_splink_t *l)
{
    size_t off = 0;
    while (!l->closing && l->conn >= C_HELLO) {
        size_t avail = l->rlen - off;
        const uint8_t *p = l->rbuf + off;
        if (l->conn == C_HELLO) {
            if (avail < PROTO_SP_HELLO_LEN)
                break;
            if (proto_sp_hello_check(p, PROTO_SP_REP0) != 0) {
                l->dials.proto++;
                drop_conn(l, "the backend is not an SP rep0 peer");
                return;
            }
            off += PROTO_SP_HELLO_LEN;
            l->conn = C_READY;
            l->dials.connect++;
            l->backoff = BACKOFF_MIN_MS;
            uv_timer_stop(&l->retry);
            flush_queue(l);
            continue;
        }
        uint64_t len;
        if (avail < PROTO_SP_IPC_HDR)
            break;
        if (proto_sp_ipc_unframe(p, PROTO_SP_MSG_MAX, &len) != 0) {
            drop_conn(l, "the backend sent a bad frame");
            return;
        }
        if (avail - PROTO_SP_IPC_HDR < len) {
            l->need = PROTO_SP_IPC_HDR + (size_t)len;
            break;
        }
        off += PROTO_SP_IPC_HDR + (size_t)len;
        l->need = 0;
        on_message(l, p + PROTO_SP_IPC_HDR, (size_t)len);
    }
    if (l->conn < C_HELLO || l->closing)
        return; /* dropped: rlen is 0 already */
    memmove(l->rbuf, l->rbuf + off, l->rlen - off);
    l->rlen -= off;
    if (l->rcap > RBUF_SHRINK && l->rlen < RBUF_MIN && l->need == 0) {
        uint8_t *p = realloc(l->rbuf, RBUF_MIN);
        if (p != NULL)
            l->rbuf = p, l->rcap = RBUF_MIN;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    gw_splink_t *l = h->data;
    (void)suggested;
    /* Room for the whole message being read (bounded by PROTO_SP_MSG_MAX when its frame was
     * read), or for RBUF_MIN more bytes. */
    size_t want = l->rlen + RBUF_MIN;
    if (l->need > want)
        want = l->need;
    if (want > l->rcap) {
        size_t cap = l->rcap * 2 > want ? l->rcap * 2 : want;
        uint8_t *p = realloc(l->rbuf, cap);
        if (p == NULL) {
            *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
            return;
        }
        l->rbuf = p;
        l->rcap = cap;
    }
    *buf = uv_buf_init((char *)l->rbuf + l->rlen, (unsigned)(l->rcap - l->rlen));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    gw_splink_t *l = stream->data;
    (void)buf;
    if (l->closing || l->conn < C_HELLO)
        return;
    if (nread < 0) {
        drop_conn(l, nread == UV_EOF ? "the backend closed the connection"
                                     : "reading from the backend failed");
        return;
    }
    l->rlen += (size_t)nread;
    parse(l);
}

static void on_pipe_closed(uv_handle_t *h)
{
    gw_splink_t *l = h->data;
    l->pipe_state = P_NONE;
    if (l->closing) {
        release(l);
        return;
    }
    l->handles--; /* never the last: the timers stay open until gw_splink_destroy */
    uv_timer_start(&l->retry, on_retry, l->backoff, 0);
    l->backoff = l->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff * 2;
}

static void on_connect(uv_connect_t *req, int status)
{
    gw_splink_t *l = req->data;
    if (l->closing || l->conn != C_CONNECTING)
        return;
    if (status < 0) {
        if (status == UV_ENOENT || status == UV_ECONNREFUSED)
            l->dials.refused++;
        else if (status == UV_ETIMEDOUT)
            l->dials.timeout++;
        else
            l->dials.other++;
        drop_conn(l, "connect failed");
        return;
    }
    l->conn = C_HELLO;
    uint8_t hello[PROTO_SP_HELLO_LEN];
    proto_sp_hello(hello, PROTO_SP_REQ0);
    uv_buf_t b = uv_buf_init((char *)hello, sizeof hello);
    int rv = write_msg(l, &b, 1);
    if (rv == 0)
        rv = uv_read_start((uv_stream_t *)&l->pipe, on_alloc, on_read);
    if (rv < 0) {
        l->dials.other++;
        drop_conn(l, "starting the connection failed");
        return;
    }
    uv_timer_start(&l->retry, on_retry, HELLO_TIMEOUT_MS, 0);
}

static void dial(gw_splink_t *l)
{
    if (uv_pipe_init(l->loop, &l->pipe, 0) != 0) {
        l->dials.other++;
        uv_timer_start(&l->retry, on_retry, BACKOFF_MAX_MS, 0);
        return;
    }
    l->pipe.data = l;
    l->pipe_state = P_OPEN;
    l->handles++;
    l->conn = C_CONNECTING;
    l->creq.data = l;
    uv_pipe_connect(&l->creq, &l->pipe, l->path, on_connect);
}

/* The retry timer: the next dial, or a peer that never sent its greeting. */
static void on_retry(uv_timer_t *t)
{
    gw_splink_t *l = t->data;
    if (l->closing)
        return;
    if (l->conn == C_HELLO) {
        l->dials.timeout++;
        drop_conn(l, "the backend sent no SP greeting");
    } else if (l->conn == C_DOWN && l->pipe_state == P_NONE) {
        dial(l);
    }
}

static void on_slot_timer(uv_timer_t *t)
{
    slot_t *s = t->data;
    gw_splink_t *l = s->l;
    if (l->closing)
        return;
    switch (s->phase) {
    case S_DONE:
        deliver(s, s->st, s->why, NULL, 0);
        break;
    case S_QUEUED:
        unqueue(l, s);
        deliver(s, GW_LINK_TIMEDOUT, "timed out waiting for the backend's connection", NULL, 0);
        break;
    case S_SENT:
        deliver(s, GW_LINK_TIMEDOUT, "timed out", NULL, 0);
        break;
    default:
        break;
    }
}

int gw_splink_create(gw_splink_t **out, uv_loop_t *loop, const char *path, int nslots,
                     gw_link_done_cb cb, void *owner)
{
    gw_splink_t *l = NULL;
    if (nslots < 1 || nslots > GW_SPLINK_SLOTS_MAX || strlen(path) >= sizeof l->path)
        return PROTO_EINVAL;
    if ((l = calloc(1, sizeof *l + (size_t)nslots * sizeof(slot_t))) == NULL)
        return PROTO_ENOMEM;
    snprintf(l->path, sizeof l->path, "%s", path);
    l->loop = loop;
    l->cb = cb;
    l->owner = owner;
    l->nslots = nslots;
    l->backoff = BACKOFF_MIN_MS;
    uv_timer_init(loop, &l->retry);
    l->retry.data = l;
    l->handles = 1 + nslots;
    for (int i = 0; i < nslots; i++) {
        slot_t *s = &l->slots[i];
        s->l = l;
        s->index = i;
        uv_timer_init(loop, &s->timer);
        s->timer.data = s;
    }
    *out = l;
    return 0;
}

int gw_splink_start(gw_splink_t *l)
{
    dial(l);
    return 0;
}

int gw_splink_send(gw_splink_t *l, int slot, const proto_req_t *req, uint64_t timeout_ms)
{
    slot_t *s = &l->slots[slot];
    uint8_t head[HEAD_CAP];
    size_t hlen;
    int rv = proto_req_encode_head(req, head + PROTO_SP_IPC_HDR + 4,
                                   sizeof head - PROTO_SP_IPC_HDR - 4, &hlen);
    if (rv != 0)
        return rv;
    /* The id's low bits name the slot; the rest tell this request from the slot's earlier
     * ones (whose late answers are dropped). */
    l->seq = (l->seq + 1) & 0x1fffffu;
    s->id = 0x80000000u | l->seq << 10 | (uint32_t)slot;
    uint64_t msglen = 4 + hlen + req->payload_len;
    proto_sp_ipc_frame(head, msglen);
    proto_sp_put32(head + PROTO_SP_IPC_HDR, s->id);
    uv_buf_t bufs[2] = {uv_buf_init((char *)head, (unsigned)(PROTO_SP_IPC_HDR + 4 + hlen)),
                        uv_buf_init((char *)req->payload, req->payload_len)};
    if (l->conn != C_READY) {
        s->qlen = bufs[0].len + bufs[1].len;
        if ((s->qmsg = malloc(s->qlen)) == NULL)
            return PROTO_ENOMEM;
        memcpy(s->qmsg, bufs[0].base, bufs[0].len);
        if (bufs[1].len > 0)
            memcpy(s->qmsg + bufs[0].len, bufs[1].base, bufs[1].len);
        s->phase = S_QUEUED;
        s->qnext = NULL;
        if (l->qtail != NULL)
            l->qtail->qnext = s;
        else
            l->qhead = s;
        l->qtail = s;
    } else {
        s->phase = S_SENT;
        if ((rv = write_msg(l, bufs, req->payload_len > 0 ? 2 : 1)) < 0)
            drop_conn(l, "writing to the backend failed"); /* ends this one too, later */
    }
    l->busy++;
    if (timeout_ms > 0 && s->phase != S_DONE)
        uv_timer_start(&s->timer, on_slot_timer, timeout_ms, 0);
    return 0;
}

void gw_splink_cancel(gw_splink_t *l, int slot)
{
    slot_t *s = &l->slots[slot];
    if (s->phase == S_QUEUED)
        unqueue(l, s);
    if (s->phase == S_QUEUED || s->phase == S_SENT)
        finish_later(s, GW_LINK_CANCELLED, "cancelled");
}

int gw_splink_idle(const gw_splink_t *l, int slot)
{
    return l->slots[slot].phase == S_IDLE;
}

int gw_splink_busy(const gw_splink_t *l)
{
    return l->busy;
}

void gw_splink_dials(const gw_splink_t *l, gw_link_dials_t *out)
{
    *out = l->dials;
}

void gw_splink_destroy(gw_splink_t *l)
{
    if (l == NULL || l->closing)
        return;
    l->closing = 1;
    uv_close((uv_handle_t *)&l->retry, on_handle_closed);
    for (int i = 0; i < l->nslots; i++)
        uv_close((uv_handle_t *)&l->slots[i].timer, on_slot_timer_closed);
    if (l->pipe_state == P_OPEN) {
        l->pipe_state = P_CLOSING;
        uv_close((uv_handle_t *)&l->pipe, on_pipe_closed);
    }
}
