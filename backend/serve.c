#include "serve.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "err.h"
#include "msg.h"
#include "sprep.h"

#define MAX_DETS 1000
#define RECV_MS 200 /* the receive timeout: how soon the loop notices SIGTERM */

typedef struct {
    const be_serve_opts_t *o;
    /* The transport: be_sprep on this thread for ipc://, else NNG's rep0 socket. */
    be_sprep_t *sp;
    nng_socket sock;
    nng_msg *msg;   /* NNG: the request in hand, freed by the next recv */
    proto_det_t dets[MAX_DETS];
    uint8_t *out;
    size_t out_cap;
} server_t;

static uint64_t now_us(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int send_rep(server_t *s, const proto_rep_t *rep)
{
    int64_t size = proto_rep_size(rep);
    size_t len;
    int rv;
    if (size < 0)
        return (int)size;
    if ((size_t)size > s->out_cap) {
        uint8_t *p = realloc(s->out, (size_t)size);
        if (p == NULL)
            return PROTO_ENOMEM;
        s->out = p;
        s->out_cap = (size_t)size;
    }
    if ((rv = proto_rep_encode(rep, s->out, s->out_cap, &len)) != 0)
        return rv;
    if (s->sp != NULL)
        rv = be_sprep_send(s->sp, s->out, len);
    else if ((rv = nng_send(s->sock, s->out, len, 0)) != 0)
        fprintf(stderr, "framegate-backend[%s]: send: %s\n", s->o->instance, nng_strerror(rv));
    if (rv != 0 && s->sp != NULL)
        fprintf(stderr, "framegate-backend[%s]: send: %s\n", s->o->instance, proto_strerror(rv));
    return 0;
}

static void send_error(server_t *s, uint64_t id, int status, const char *detail)
{
    char text[PROTO_ERROR_MAX];
    snprintf(text, sizeof text, "%s%s%s", proto_strerror(status), detail && detail[0] ? ": " : "",
             detail ? detail : "");
    proto_rep_t rep = {.type = PROTO_T_RESULT,
                       .id = id,
                       .status = status,
                       .error = text,
                       .error_len = (uint16_t)strlen(text)};
    send_rep(s, &rep);
}

/* Copies s into out as the inside of a JSON string (quotes, backslashes and control
 * characters escaped), truncating to fit. */
static void json_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s != '\0' && o + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

static void handle_ping(server_t *s, const proto_req_t *req)
{
    const be_serve_opts_t *o = s->o;
    char name[256], info[512];
    json_escape(name, sizeof name, o->model_name);
    int n = snprintf(
        info, sizeof info,
        "{\"model\":\"%s\",\"kind\":\"%s\",\"input\":[%d,%d],\"classes\":%d,"
        "\"preprocess\":\"%s\",\"decode\":\"%s\",\"engine\":\"%s\",\"fast\":%s,\"pid\":%d,"
        "\"simulate_ms\":%d}",
        name,
        o->model && be_model_kind(o->model) == BE_MODEL_CLASSIFIER ? "classifier" : "detector",
        o->model ? be_model_width(o->model) : 0, o->model ? be_model_height(o->model) : 0,
        o->model ? be_model_classes(o->model) : 0,
        be_prep_name(o->model ? be_model_prep(o->model) : BE_PREP_DARKNET),
        be_decode_name(o->model ? be_model_decode(o->model) : BE_DECODE_EXACT),
        o->model && be_model_fast(o->model) ? be_engine_name(be_model_engine(o->model)) : "darknet",
        o->model && be_model_fast(o->model) ? "true" : "false", (int)getpid(),
        o->model ? 0 : o->simulate_ms);
    proto_rep_t rep = {.type = PROTO_T_PONG,
                       .id = req->id,
                       .payload = (const uint8_t *)info,
                       .payload_len = (uint32_t)n};
    send_rep(s, &rep);
}

/* Sleeps ms milliseconds even if a signal arrives: SIGTERM finishes the request in hand. */
static void sleep_ms(int ms)
{
    if (ms <= 0) /* a zero nanosleep still parks the thread for the timer slack (~50 us) */
        return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* 1 when the request's deadline (0 = none) has passed: the gateway has already answered the
 * client, so whatever is left of the work is dropped, at every stage. */
static int past_deadline(const proto_req_t *req)
{
    return req->deadline_ms > 0 && (int64_t)(now_us(CLOCK_REALTIME) / 1000) > req->deadline_ms;
}

/* Milliseconds until the request's deadline (>= 0), or `cap` if that is sooner or there is
 * none. */
static int ms_left(const proto_req_t *req, int cap)
{
    if (req->deadline_ms <= 0)
        return cap;
    int64_t left = req->deadline_ms - (int64_t)(now_us(CLOCK_REALTIME) / 1000);
    return left < 0 ? 0 : left < cap ? (int)left : cap;
}

static void handle_detect(server_t *s, const proto_req_t *req)
{
    const be_serve_opts_t *o = s->o;
    uint64_t t0 = now_us(CLOCK_MONOTONIC), t1, t2;
    char err[256] = "";
    int w = 0, h = 0, n = 0, rv;

    if (past_deadline(req)) {
        send_error(s, req->id, PROTO_EDEADLINE, "skipped: the gateway no longer waits for it");
        return;
    }
    if (req->output > PROTO_OUT_TEXT) {
        send_error(s, req->id, PROTO_EINVAL, "unknown output format");
        return;
    }
    if (o->model == NULL) {
        if ((rv = be_image_probe(o->image, req->payload, req->payload_len, &w, &h)) != 0) {
            send_error(s, req->id, rv, NULL);
            return;
        }
        t1 = now_us(CLOCK_MONOTONIC);
        /* The simulated pass stops at the deadline like the real one does between layers. */
        int ms = ms_left(req, o->simulate_ms);
        sleep_ms(ms);
        if (ms < o->simulate_ms || past_deadline(req)) {
            send_error(s, req->id, PROTO_EDEADLINE, "dropped during inference");
            return;
        }
    } else {
        rv = be_image_letterbox(o->image, req->payload, req->payload_len, be_model_prep(o->model),
                                be_model_decode(o->model), be_model_width(o->model),
                                be_model_height(o->model), be_model_input(o->model), &w, &h, NULL,
                                NULL, err, sizeof err);
        if (rv != 0) {
            send_error(s, req->id, rv, err);
            return;
        }
        t1 = now_us(CLOCK_MONOTONIC);
        /* A decode can take long (a large frame): look again before the forward pass. */
        if (past_deadline(req)) {
            send_error(s, req->id, PROTO_EDEADLINE, "dropped after decoding");
            return;
        }
        n = be_model_detect_until(o->model, w, h, req->threshold, req->top_k, req->deadline_ms,
                                  s->dets, MAX_DETS);
        if (n < 0) {
            send_error(s, req->id, n, n == PROTO_EDEADLINE ? "dropped during inference" : NULL);
            return;
        }
    }
    t2 = now_us(CLOCK_MONOTONIC);
    proto_rep_t rep = {
        .type = PROTO_T_RESULT,
        .id = req->id,
        .width = (uint32_t)w,
        .height = (uint32_t)h,
        .decode_us = (uint32_t)(t1 - t0),
        .infer_us = (uint32_t)(t2 - t1),
        .ndet = (uint32_t)n,
        .dets = s->dets,
        .kind = o->model && be_model_kind(o->model) == BE_MODEL_CLASSIFIER ? PROTO_KIND_CLASSES
                                                                          : PROTO_KIND_DETECT,
    };
    if (req->output == PROTO_OUT_TEXT) {
        const char *top = n > 0 ? s->dets[0].label : "none";
        rep.payload = (const uint8_t *)top;
        rep.payload_len = (uint32_t)(n > 0 ? s->dets[0].label_len : strlen(top));
    } else if (req->output == PROTO_OUT_JPEG && n == 0) {
        /* Nothing to draw: the frame itself is the annotated frame. */
        rep.payload = req->payload;
        rep.payload_len = req->payload_len;
    } else if (req->output == PROTO_OUT_JPEG) {
        const uint8_t *jpeg;
        size_t jlen;
        /* The annotated output decodes and encodes the frame at full size: not for nobody. */
        if (past_deadline(req)) {
            send_error(s, req->id, PROTO_EDEADLINE, "dropped before the annotated output");
            return;
        }
        if ((rv = be_image_annotate(o->image, req->payload, req->payload_len, s->dets, n, &jpeg,
                                    &jlen)) != 0 ||
            jlen > PROTO_PAYLOAD_MAX) {
            send_error(s, req->id, rv != 0 ? rv : PROTO_ETOOBIG, "annotated output");
            return;
        }
        rep.payload = jpeg;
        rep.payload_len = (uint32_t)jlen;
    }
    rep.total_us = (uint32_t)(now_us(CLOCK_MONOTONIC) - t0);
    if ((rv = send_rep(s, &rep)) != 0)
        send_error(s, req->id, rv, NULL);
}

/* The id of a request that did not decode, if its header and id field are intact, so the
 * error reply can still be matched in the gateway's logs; else 0. */
static uint64_t peek_id(const uint8_t *buf, size_t len)
{
    uint64_t id = 0;
    if (len < PROTO_HEADER_SIZE + 8 || proto_peek_type(buf, len) < 0)
        return 0;
    for (int i = 7; i >= 0; i--)
        id = id << 8 | buf[PROTO_HEADER_SIZE + i];
    return id;
}

/* nng_listen, with the mutual-TLS configuration set on the listener first for tls+tcp. A
 * gateway whose certificate does not verify never gets a pipe: the handshake fails inside
 * nng, which keeps listening. */
static int nng_listen_on(server_t *s, const proto_addr_t *a, char *err, size_t errcap)
{
    const be_serve_opts_t *o = s->o;
    nng_listener l;
    nng_tls_config *tls = NULL;
    int rv;
    if (a->kind == PROTO_ADDR_TLS) {
        if (o->tls == NULL) {
            snprintf(err, errcap, "tls+tcp needs --tls-cert, --tls-key and --tls-ca");
            return PROTO_EINVAL;
        }
        if ((rv = proto_tls_config(&tls, 1, o->tls, NULL, err, errcap)) != 0)
            return rv;
    }
    if ((rv = nng_listener_create(&l, s->sock, o->listen)) == 0 && tls != NULL)
        rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, tls);
    if (tls != NULL)
        nng_tls_config_free(tls); /* the listener holds its own reference */
    if (rv == 0)
        rv = nng_listener_start(l, 0);
    if (rv != 0) {
        snprintf(err, errcap, "%s", nng_strerror(rv));
        return rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? PROTO_EINVAL : PROTO_ENNG;
    }
    return 0;
}

/* Gateways connected to the rep socket (NNG's pipe events, on its threads). Static, not in
 * server_t: a late pipe event after nng_close must not land in freed memory. */
static int pipes;

static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    (void)p;
    __atomic_add_fetch((int *)arg, ev == NNG_PIPE_EV_ADD_POST ? 1 : -1, __ATOMIC_SEQ_CST);
}

/* The transport seam: the serving loop below is the same over both. */

/* Opens the transport and listens on o->listen: be_sprep for ipc:// (no NNG thread between
 * the socket and this loop), NNG's rep0 for tcp and tls+tcp. */
static int xport_open(server_t *s, char *err, size_t errcap)
{
    const be_serve_opts_t *o = s->o;
    proto_addr_t a;
    int rv;
    if (proto_addr_parse(&a, o->listen) != 0) {
        snprintf(err, errcap, "not an NNG address");
        return PROTO_EINVAL;
    }
    if (a.kind == PROTO_ADDR_IPC) {
        rv = be_sprep_create(&s->sp, o->listen + strlen("ipc://"), o->instance, err, errcap);
        return rv == 0 || rv == PROTO_EINVAL ? rv : PROTO_ENNG;
    }
    if ((rv = nng_rep0_open(&s->sock)) != 0) {
        snprintf(err, errcap, "nng_rep0_open: %s", nng_strerror(rv));
        return PROTO_ENNG;
    }
    nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, on_pipe, &pipes);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, on_pipe, &pipes);
    /* A short receive timeout lets the loop notice SIGTERM between requests. */
    nng_socket_set_ms(s->sock, NNG_OPT_RECVTIMEO, RECV_MS);
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, (size_t)PROTO_PAYLOAD_MAX + (1u << 20));
    if ((rv = nng_listen_on(s, &a, err, errcap)) != 0) {
        nng_close(s->sock);
        return rv;
    }
    return 0;
}

/* The next request: 0 and its bytes (valid until the next call or xport_close), -ETIMEDOUT
 * when none came within RECV_MS (or a signal came), or another error (logged). */
static int xport_recv(server_t *s, const uint8_t **buf, size_t *len)
{
    int rv;
    if (s->sp != NULL) {
        rv = be_sprep_recv(s->sp, buf, len, RECV_MS);
        if (rv == -EINTR)
            return -ETIMEDOUT;
        if (rv != 0 && rv != -ETIMEDOUT)
            fprintf(stderr, "framegate-backend[%s]: recv: %s\n", s->o->instance,
                    proto_strerror(rv));
        return rv;
    }
    if (s->msg != NULL)
        nng_msg_free(s->msg);
    s->msg = NULL;
    rv = nng_recvmsg(s->sock, &s->msg, 0);
    if (rv == NNG_ETIMEDOUT || rv == NNG_EINTR)
        return -ETIMEDOUT;
    if (rv != 0) {
        fprintf(stderr, "framegate-backend[%s]: recv: %s\n", s->o->instance, nng_strerror(rv));
        return PROTO_ENNG;
    }
    *buf = nng_msg_body(s->msg);
    *len = nng_msg_len(s->msg);
    return 0;
}

/* Gateways connected now (the drain on stop waits for them to go). */
static int xport_peers(server_t *s)
{
    return s->sp != NULL ? be_sprep_peers(s->sp) : __atomic_load_n(&pipes, __ATOMIC_SEQ_CST);
}

static void xport_close(server_t *s)
{
    if (s->sp != NULL) {
        be_sprep_destroy(s->sp);
        return;
    }
    if (s->msg != NULL)
        nng_msg_free(s->msg);
    nng_close(s->sock);
}

int be_serve_run(const be_serve_opts_t *o)
{
    server_t *s = calloc(1, sizeof *s);
    char err[512];
    int rv;
    if (s == NULL)
        return PROTO_ENOMEM;
    s->o = o;
    if ((rv = xport_open(s, err, sizeof err)) != 0) {
        fprintf(stderr, "framegate-backend[%s]: --listen %s: %s\n", o->instance, o->listen, err);
        free(s);
        return rv;
    }
    fprintf(stderr, "framegate-backend[%s]: ready on %s (pid %d)\n", o->instance, o->listen,
            (int)getpid());
    uint64_t drain_until = 0;
    for (;;) {
        if (atomic_load(o->stop) && o->on_stop != NULL && drain_until == 0) {
            o->on_stop(o->on_stop_arg); /* deregistered: no new frames will come */
            drain_until = now_us(CLOCK_MONOTONIC) / 1000 + (uint64_t)o->drain_ms;
        }
        if (atomic_load(o->stop) && (drain_until == 0 || xport_peers(s) <= 0 ||
                                     now_us(CLOCK_MONOTONIC) / 1000 >= drain_until))
            break;
        const uint8_t *buf;
        size_t len;
        rv = xport_recv(s, &buf, &len);
        if (rv == -ETIMEDOUT)
            continue;
        if (rv != 0)
            break;
        proto_req_t req;
        rv = proto_req_decode(&req, buf, len);
        if (rv != 0)
            send_error(s, peek_id(buf, len), rv, "the request could not be decoded");
        else if (req.type == PROTO_T_PING)
            handle_ping(s, &req);
        else
            handle_detect(s, &req);
    }
    xport_close(s);
    free(s->out);
    free(s);
    return 0;
}
