#include "join.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "addr.h"
#include "bridge.h"
#include "err.h"
#include "log.h"
#include "tls.h"

#define JOIN_MSG_MAX 4096

enum { PH_RECV, PH_SEND };

struct gw_join {
    gw_bridge_node_t node; /* a received request, handed to the loop */
    gw_bridge_t bridge;
    uv_timer_t stats_timer;
    const gw_config_t *cfg;
    gw_join_cb cb;
    gw_join_tick_cb tick;
    void *ctx;
    nng_socket sock;
    nng_listener listener;
    nng_ctx nctx;
    nng_aio *aio;
    int phase;     /* written by whoever starts the operation; one at a time */
    nng_msg *msg;  /* the request being handled */
    int closing;
    uint64_t refused_seen; /* the listener's handshake failures already logged */
    int handles;
};

/* NNG's thread: a request arrived (to the loop), or a reply went out (receive the next). */
static void on_aio(void *arg)
{
    gw_join_t *j = arg;
    int rv = nng_aio_result(j->aio);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || j->closing)
        return;
    if (j->phase == PH_RECV && rv == 0) {
        j->msg = nng_aio_get_msg(j->aio);
        gw_bridge_post(&j->bridge, &j->node);
        return;
    }
    if (j->phase == PH_SEND && rv != 0) {
        nng_msg_free(nng_aio_get_msg(j->aio));
        nng_aio_set_msg(j->aio, NULL);
    }
    j->phase = PH_RECV;
    nng_ctx_recv(j->nctx, j->aio);
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The loop: decode, let the owner decide, answer. */
static void on_request(gw_bridge_node_t *node)
{
    gw_join_t *j = (gw_join_t *)node;
    nng_msg *msg = j->msg;
    char out[512] = "", reply[700];
    int rv = PROTO_EINVAL;
    j->msg = NULL;
    cJSON *o = cJSON_ParseWithLength(nng_msg_body(msg), nng_msg_len(msg));
    gw_join_req_t req = {str(o, "op"), str(o, "name"), str(o, "model"), str(o, "address"), 1};
    const cJSON *capacity = cJSON_GetObjectItemCaseSensitive(o, "capacity");
    if (cJSON_IsNumber(capacity))
        req.capacity = capacity->valueint;
    if (o == NULL)
        snprintf(out, sizeof out, "not a JSON object");
    else if (req.op == NULL || (strcmp(req.op, "join") != 0 && strcmp(req.op, "leave") != 0))
        snprintf(out, sizeof out, "op must be \"join\" or \"leave\"");
    else if (req.model == NULL || req.address == NULL)
        snprintf(out, sizeof out, "model and address are required");
    else if (req.capacity < 1 || req.capacity > 256)
        snprintf(out, sizeof out, "capacity must be 1..256");
    else {
        if (req.name == NULL)
            req.name = "";
        rv = j->cb(j->ctx, &req, out, sizeof out);
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", rv == 0);
    cJSON_AddStringToObject(r, rv == 0 ? "state" : "error", out);
    if (!cJSON_PrintPreallocated(r, reply, sizeof reply, 0))
        snprintf(reply, sizeof reply, "{\"ok\":false,\"error\":\"reply too long\"}");
    cJSON_Delete(r);
    if (rv != 0)
        GW_LOG_W("join_refused", "op=%s model=%s name=%s addr=%s why=\"%s\"",
                 req.op ? req.op : "-", req.model ? req.model : "-", req.name ? req.name : "-",
                 req.address ? req.address : "-", out);
    cJSON_Delete(o);
    nng_msg_clear(msg);
    if (nng_msg_append(msg, reply, strlen(reply)) != 0) {
        nng_msg_free(msg);
        j->phase = PH_RECV;
        nng_ctx_recv(j->nctx, j->aio);
        return;
    }
    j->phase = PH_SEND;
    nng_aio_set_msg(j->aio, msg);
    nng_ctx_send(j->nctx, j->aio);
}

/* Handshakes refused on the listener (a backend certificate from another CA, expired, none)
 * never reach us: NNG counts them. Log when the count grows. */
static uint64_t listener_refusals(nng_stat *st, int id)
{
    uint64_t n = 0;
    for (; st != NULL; st = nng_stat_next(st)) {
        if (nng_stat_type(st) != NNG_STAT_SCOPE)
            continue;
        if (strcmp(nng_stat_name(st), "listener") != 0) {
            n += listener_refusals(nng_stat_child(st), id);
            continue;
        }
        int mine = 0;
        uint64_t sum = 0;
        for (nng_stat *c = nng_stat_child(st); c != NULL; c = nng_stat_next(c)) {
            const char *name = nng_stat_name(c);
            if (strcmp(name, "id") == 0)
                mine = nng_stat_value(c) == (uint64_t)id;
            else if (strcmp(name, "auth") == 0 || strcmp(name, "proto") == 0)
                sum += nng_stat_value(c); /* not "other": a peer hanging up counts there */
        }
        if (mine)
            n += sum;
    }
    return n;
}

static void on_stats(uv_timer_t *t)
{
    gw_join_t *j = t->data;
    nng_stat *all;
    if (j->tick != NULL)
        j->tick(j->ctx);
    if (nng_stats_get(&all) != 0)
        return;
    uint64_t n = listener_refusals(all, nng_listener_id(j->listener));
    nng_stats_free(all);
    if (n > j->refused_seen)
        GW_LOG_W("join_tls_refused", "listen=%s count=%llu why=\"a peer's handshake was refused: "
                                     "its certificate did not verify (another CA, expired, "
                                     "wrong key usage), it sent none, or it does not speak "
                                     "TLS\"",
                 j->cfg->join_listen, (unsigned long long)(n - j->refused_seen));
    j->refused_seen = n;
}

int gw_join_create(gw_join_t **out, uv_loop_t *loop, const gw_config_t *cfg, gw_join_cb cb,
                   gw_join_tick_cb tick, void *ctx, char *err, size_t errcap)
{
    proto_addr_t a;
    nng_tls_config *tls = NULL;
    int rv;
    gw_join_t *j = calloc(1, sizeof *j);
    if (j == NULL)
        return PROTO_ENOMEM;
    j->cfg = cfg;
    j->cb = cb;
    j->tick = tick;
    j->ctx = ctx;
    j->node.cb = on_request;
    if (proto_addr_parse(&a, cfg->join_listen) != 0) {
        snprintf(err, errcap, "key 'join_listen': not an address");
        free(j);
        return PROTO_ECONFIG;
    }
    if (a.kind == PROTO_ADDR_TLS) {
        proto_tls_files_t f = {cfg->tls_cert, cfg->tls_key, cfg->tls_ca};
        char why[512];
        if (proto_tls_config(&tls, 1, &f, NULL, why, sizeof why) != 0) {
            snprintf(err, errcap, "key 'join_listen': %s", why);
            free(j);
            return PROTO_ECONFIG;
        }
    }
    if ((rv = nng_rep0_open(&j->sock)) != 0) {
        snprintf(err, errcap, "join listener: %s", nng_strerror(rv));
        if (tls != NULL)
            nng_tls_config_free(tls);
        free(j);
        return PROTO_ENNG;
    }
    nng_socket_set_size(j->sock, NNG_OPT_RECVMAXSZ, JOIN_MSG_MAX);
    if ((rv = nng_listener_create(&j->listener, j->sock, cfg->join_listen)) == 0 && tls != NULL)
        rv = nng_listener_set_ptr(j->listener, NNG_OPT_TLS_CONFIG, tls);
    if (tls != NULL)
        nng_tls_config_free(tls); /* the listener holds its own reference */
    if (rv == 0)
        rv = nng_listener_start(j->listener, 0);
    if (rv == 0)
        rv = nng_ctx_open(&j->nctx, j->sock);
    if (rv == 0)
        rv = nng_aio_alloc(&j->aio, on_aio, j);
    if (rv != 0) {
        snprintf(err, errcap, "key 'join_listen': %s: %s", cfg->join_listen, nng_strerror(rv));
        nng_close(j->sock);
        if (j->aio != NULL)
            nng_aio_free(j->aio);
        free(j);
        return PROTO_ENNG;
    }
    if ((rv = gw_bridge_init(&j->bridge, loop)) != 0) {
        snprintf(err, errcap, "join listener: %s", uv_strerror(rv));
        nng_close(j->sock);
        nng_aio_free(j->aio);
        free(j);
        return rv;
    }
    uv_timer_init(loop, &j->stats_timer);
    j->stats_timer.data = j;
    uv_timer_start(&j->stats_timer, on_stats, 1000, 1000);
    j->phase = PH_RECV;
    nng_ctx_recv(j->nctx, j->aio);
    GW_LOG_I("join_listening", "listen=%s", cfg->join_listen);
    *out = j;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    gw_join_t *j = h->data;
    if (--j->handles == 0)
        free(j);
}

void gw_join_destroy(gw_join_t *j)
{
    if (j == NULL)
        return;
    j->closing = 1;
    nng_close(j->sock);   /* aborts the receive; its callback sees ECLOSED and posts nothing */
    nng_aio_free(j->aio); /* waits for a callback in progress */
    if (j->msg != NULL)
        nng_msg_free(j->msg);
    j->handles = 2;
    j->bridge.async.data = j;
    uv_close((uv_handle_t *)&j->stats_timer, on_closed);
    gw_bridge_close(&j->bridge, on_closed);
}
