/* The HTTP/1.1 connection core (http.c) and the request as handlers see it.
 *
 * http.c accepts, reads, parses with llhttp, keeps each connection's pipeline in arrival
 * order, runs its timers and writes its answers. It knows no paths: a complete request goes
 * to the router (router.h), and a handler answers it with response.h, at once or later.
 * Everything here runs on the loop thread.
 *
 * Lifetime: a connection holds one reference for itself, one per write in flight and one per
 * gw_req_hold(); it is freed when its handles are closed and the last reference is gone, so
 * a client that hangs up never leaves a handler with a dangling request. */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "server.h"
#include "tls_conn.h"

#define GW_HTTP_MAX_URL 1024
#define GW_HTTP_MAX_AUTH 300    /* "Bearer " and a token of auth.h's GW_AUTH_TOKEN_MAX */
#define GW_HTTP_MAX_CAMERAS 256 /* auth.h's GW_AUTH_CAMERAS_MAX */

typedef struct gw_conn gw_conn_t;

struct gw_req {
    /* ---- the request, for handlers (read-only); valid until its answer is written ---- */
    gw_conn_t *conn;
    int method;                           /* llhttp_method_t */
    char path[GW_HTTP_MAX_URL];           /* the URL up to '?' */
    char query[GW_HTTP_MAX_URL];          /* after '?', not decoded; "" if none */
    char content_type[256];               /* "" if none */
    char last_event_id[24];               /* the Last-Event-ID header (SSE resume), "" if none */
    char authorization[GW_HTTP_MAX_AUTH]; /* the Authorization header, "" if none */
    int authorization_over;               /* ... it did not fit: no token we know */
    uint8_t *body;                        /* body_len bytes, owned by the request */
    size_t body_len;
    const char *param; /* what a route's '*' matched (points into path), or NULL */
    size_t param_len;
    const char *route; /* metrics label, set by the router */
    /* Set by the front door for a camera token: the cameras it speaks for (auth.h's list,
     * copied: it outlives a token reload); "" = not bound (a public route, a viewer or admin
     * token, no tokens_file). Handlers that take a camera from the query or body check it
     * with frontdoor.h's gw_frontdoor_camera. */
    char cameras[GW_HTTP_MAX_CAMERAS];
    /* A handler's per-request state: state_free(state) runs when the request is freed. */
    void *state;
    void (*state_free)(void *state);

    /* ---- private to http.c and response.c ---- */
    gw_req_t *next;
    char url[GW_HTTP_MAX_URL];
    size_t url_len;
    size_t body_cap;
    int body_sized;   /* body_cap is the Content-Length: reads may land in body directly */
    size_t reserved;  /* bytes of the server's max_buffered_bytes this request holds */
    size_t ext_bytes; /* chunk extensions received */
    size_t wire;      /* bytes read while this request was being received */
    char te[64];      /* Transfer-Encoding, all its header lines joined by ',' */
    char ce[64];      /* Content-Encoding, likewise */
    int te_over;      /* te or ce did not fit: not a coding we know */
    int expect_continue;
    int keep_alive;
    int continued; /* "100 Continue" sent */
    int head_only; /* HEAD: the answer's headers without its body */
    uint64_t start_ns;
    int ready;       /* the answer is built */
    int close_after; /* the connection closes after this answer */
    int stream;      /* the answer is a stream's head (gw_respond_stream) */
    char resp_head[512];
    size_t resp_head_len;
    char *resp; /* body, malloc'd; handed to the write */
    size_t resp_len;
};

/* ---- for handlers ---- */

/* Keeps req (and its connection's memory) valid until gw_req_release, e.g. while a job or a
 * threadpool work item is out. The socket may close meanwhile; answering is still safe. */
void gw_req_hold(gw_req_t *req);

/* Drops one gw_req_hold and writes the answers that became ready. May free req. */
void gw_req_release(gw_req_t *req);

/* Takes n bytes of the server's budget for buffered request bytes (max_buffered_bytes), given
 * back when req is freed. 0, or PROTO_ENOMEM when the budget cannot cover them. */
int gw_req_reserve(gw_req_t *req, size_t n);

/* True once req's connection is closed: nobody will read its answer. */
int gw_req_orphaned(const gw_req_t *req);

/* The client's address as a 16-byte key (IPv6, or IPv4 mapped; zeros if unknown). */
const uint8_t *gw_req_peer(const gw_req_t *req);

/* The loop and the configuration the request's server runs with. */
uv_loop_t *gw_req_loop(const gw_req_t *req);
const gw_config_t *gw_req_config(const gw_req_t *req);

/* ---- streaming answers (stream.c: Server-Sent Events, MJPEG) ----
 * The one exception to "one request, one answer of known length": the answer's body is
 * written piece by piece until the client goes away. Such an answer is its connection's
 * last (nothing more is parsed on it; what the client sends is read and dropped so that
 * its hang-up is seen). */

/* Answers req with status 200, `ctype`, the `extra` header lines (each ending in CRLF, or
 * NULL), no Content-Length, `body` (malloc'd, taken; may be NULL) right after the head, and
 * the rest of the body through gw_stream_write. on_close(arg)
 * runs exactly once, on the loop thread, when the connection goes (the client hung up, a
 * write failed, the server stops); after it the connection must not be used. Returns the
 * connection to write to, or NULL if req got an ordinary answer instead (HEAD: the headers
 * only; then on_close never runs). For route handlers (called while the connection parses):
 * the head leaves when the handler returns, so on_close never runs before this returns.
 * Pieces written before the head has left (earlier answers pipelined on the connection)
 * are refused as for a slow reader. */
gw_conn_t *gw_respond_stream(gw_req_t *req, const char *ctype, const char *extra, char *body,
                             size_t len, void (*on_close)(void *arg), void *arg);

/* Queues data[0..len) (copied) on a streaming connection. Returns 0, or without queueing:
 * PROTO_EQUEUEFULL when more than max_queued bytes wait in the socket already (a slow
 * reader: the caller drops this piece, so memory stays bounded), PROTO_ESHUTDOWN when the
 * stream is not (or no longer) writable, PROTO_ENOMEM. */
int gw_stream_write(gw_conn_t *c, const void *data, size_t len, size_t max_queued);

/* ---- internal to http.c, server.c and response.c ---- */

/* GW_PH_START: bytes arrived that began no request yet (llhttp skips empty lines before a
 * request line); the header clock runs from the first of them. */
enum { GW_PH_IDLE, GW_PH_START, GW_PH_HEADERS, GW_PH_BODY };

/* Unsent answer bytes a connection may have queued in its socket; past it, ready answers
 * wait in the pipeline, the pipeline fills, and the connection stops being read. */
#define GW_HTTP_MAX_QUEUED (1u << 20)
/* Writes in flight per connection: tiny answers cost a write each (~700 bytes with its head),
 * which the byte cap alone would let add up to megabytes. */
#define GW_HTTP_MAX_WRITES 64
/* Chunk extensions of one request (RFC 9112 7.1.1: nobody needs them; they are skipped). */
#define GW_HTTP_MAX_CHUNK_EXT 1024
/* Bytes a request may take on the wire beyond max_header_bytes + 2 x max_body_bytes: chunk
 * framing that carries no data (a chunk size of a million leading zeros) must end somewhere. */
#define GW_HTTP_WIRE_SLACK (2 * GW_HTTP_READ_BUF)
/* One read: a whole 160 KB frame in one or two reads where the socket holds it, instead of
 * three or more reads (and parser passes) at 64 KiB. */
#define GW_HTTP_READ_BUF (256u << 10)

/* One listening socket of a server; tls != NULL makes it HTTPS. */
struct gw_listener {
    uv_tcp_t tcp; /* first: the handle is the listener */
    gw_server_t *srv;
    gw_tls_t *tls;
    int open;
};

struct gw_server {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    const gw_server_ops_t *ops;
    void *ctx;
    gw_route_t *routes; /* the built-in ones, then ops->routes (a copy) */
    size_t nroutes;
    gw_listener_t listeners[GW_SERVER_MAX_LISTENERS]; /* [0]: gw_server_start's */
    int nlisteners;
    int stopping;
    int drained_sent;
    int destroying;
    int nconns;
    gw_conn_t *conns;
    size_t buffered; /* request bytes held by every connection (gw_req_reserve) */
    llhttp_settings_t settings;
    char rbuf[GW_HTTP_READ_BUF]; /* one read buffer for every connection; see alloc_buf() */
    char pbuf[16 << 10];         /* plaintext of one TLS record (a read's rbuf holds ciphertext) */
};

struct gw_write;

struct gw_conn {
    uv_tcp_t tcp;      /* first: a handle pointer is a conn pointer */
    uv_timer_t timer;  /* header, body, idle or linger clock */
    uv_timer_t wtimer; /* write clock: runs while writes are queued */
    llhttp_t parser;
    gw_server_t *srv;
    int refs;
    int writes; /* uv_write requests in flight */
    int closing;
    int handles_open;
    int fatal; /* stop parsing: the last queued answer closes the connection */
    int lingering;
    int phase; /* GW_PH_* of the request being received */
    gw_req_t *head, *tail, *cur;
    int nreqs;
    size_t header_bytes;
    char field[64];
    size_t field_len;
    int capture;      /* header value wanted: CAP_* in http.c */
    uint8_t *pending; /* input left unparsed while the pipeline was full */
    size_t pending_len;
    int paused;
    int parsing;     /* inside process_input: flush must not re-enter the parser */
    int eof;         /* the client half-closed: answer what was asked, then close */
    gw_req_t *spare; /* one recycled request: keep-alive traffic allocates none */
    struct gw_write *spare_wr;
    /* a streaming answer (gw_respond_stream): its head went out once `streaming` is set */
    int streaming;
    void (*stream_close)(void *arg);
    void *stream_arg;
    uint8_t peer[16];   /* the client's address (gw_req_peer) */
    gw_tls_conn_t *tls; /* HTTPS: the session every byte passes through; NULL for plain */
    int counted;        /* ops->connect said yes: ops->disconnect when freed */
    gw_conn_t *next, *prev;
};

/* Accepts one connection from listener l and starts reading it (or answers 503 and
 * closes it when over max_connections or stopping). */
void gw__http_accept(gw_listener_t *l);

/* Closes c if it owes nothing, else lets it finish its answers first (gw_server_stop). */
void gw__http_close_idle(gw_conn_t *c);

/* Closes c's handles now; memory goes when the last reference does. */
void gw__http_close(gw_conn_t *c);

/* A zeroed request for c, appended to its pipeline (answers keep arrival order). NULL when
 * out of memory. */
gw_req_t *gw__http_req_begin(gw_conn_t *c);

/* http.c: the way in. */

/* libuv's alloc callback: the server's one read buffer. */
void gw__http_alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* Frees what r owns (its handler state too) and gives back its budget; keeps r for reuse. */
void gw__http_req_put(gw_conn_t *c, gw_req_t *r);

/* Parses input held back while the pipeline was full, once it has room, and reads again. */
void gw__http_try_resume(gw_conn_t *c);

/* The connection clock's callback: 408 for a request too slow to arrive, closes an idle
 * connection. */
void gw__http_on_timer(uv_timer_t *t);

/* Starts the idle clock of a connection with nothing in progress (stops it while answers
 * are owed: handlers have their own deadlines). */
void gw__http_arm_idle(gw_conn_t *c);

/* http_write.c: the way out. */

/* Writes every ready answer at the head of the pipeline, in order, while under
 * GW_HTTP_MAX_QUEUED; then resumes reading and re-arms the clocks. May close c. */
void gw__http_flush(gw_conn_t *c);

/* Queues "100 Continue" for r (the pipeline's head) and starts its body clock. */
void gw__http_send_continue(gw_conn_t *c, gw_req_t *r);

/* HTTPS: sends the ciphertext c's TLS session has waiting (handshake, alerts). */
void gw__http_tls_flush(gw_conn_t *c);

/* Drops one reference; the last one frees c and its requests. */
void gw__http_release(gw_conn_t *c);

/* Fills the llhttp callbacks of http.c into s (once per server). */
void gw__http_settings(llhttp_settings_t *s);

/* Called by http.c when the server may have no more connections. */
void gw__server_check_drained(gw_server_t *srv);

#endif
