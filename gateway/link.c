#include "link.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "splink.h"

enum { PH_IDLE, PH_SEND, PH_RECV, PH_DONE };

/* One req context. The node is first so a bridge node is a slot.
 *
 * Ownership of the fields, by thread:
 * - set once at create, read anywhere: link, index, ctx, aio;
 * - loop thread only: in_use (from gw_link_send until the completion has run);
 * - guarded by link->mu, because the aio callback (an NNG thread) and the loop (send, cancel,
 *   completion) both touch them: phase, cancelled, rv, msg, expire. */
typedef struct {
    gw_bridge_node_t node;
    gw_link_t *link;
    int index;
    nng_ctx ctx;
    nng_aio *aio;  /* with on_aio: the receive, and a send that must wait for a pipe */
    nng_aio *saio; /* without callback: a send that a ready pipe takes at once (try_send) */
    int in_use;
    int phase;
    int cancelled;
    int rv;
    nng_msg *msg;
    nng_time expire; /* when the whole operation times out (nng_clock); 0 = never */
} slot_t;

struct gw_link {
    gw_splink_t *sp; /* ipc://: the loop's own SP client; of the fields below only nslots is used */
    nng_socket sock;
    int sock_open;
    nng_dialer dialer;
    pthread_mutex_t mu;
    gw_bridge_t *bridge;
    gw_link_done_cb cb;
    void *owner;
    int busy; /* loop thread only */
    int nslots;
    slot_t slots[];
};

/* ---- NNG's threads ---- */

static void on_aio(void *arg)
{
    slot_t *s = arg;
    gw_link_t *l = s->link;
    int rv = nng_aio_result(s->aio);

    pthread_mutex_lock(&l->mu);
    if (s->phase == PH_SEND) {
        nng_time now = nng_clock();
        if (rv == 0 && !s->cancelled && (s->expire == 0 || now < s->expire)) {
            /* Chain the receive under the lock: a cancel that lands between the two
             * operations either sees PH_RECV and aborts the receive, or set `cancelled`
             * before we looked. The receive gets what is left of the timeout, so the
             * whole operation ends by its deadline. */
            s->phase = PH_RECV;
            if (s->expire != 0)
                nng_aio_set_timeout(s->aio, (nng_duration)(s->expire - now));
            nng_ctx_recv(s->ctx, s->aio);
            pthread_mutex_unlock(&l->mu);
            return;
        }
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(s->aio)); /* a failed send leaves it with us */
            nng_aio_set_msg(s->aio, NULL);
        } else {
            rv = s->cancelled ? NNG_ECANCELED : NNG_ETIMEDOUT;
        }
    } else if (rv == 0) {
        s->msg = nng_aio_get_msg(s->aio);
        nng_aio_set_msg(s->aio, NULL);
    }
    s->rv = rv;
    s->phase = PH_DONE;
    pthread_mutex_unlock(&l->mu);
    gw_bridge_post(l->bridge, &s->node);
}

/* ---- the loop ---- */

static void on_slot_done(gw_bridge_node_t *node)
{
    slot_t *s = (slot_t *)node;
    gw_link_t *l = s->link;
    nng_msg *msg;
    int rv;

    pthread_mutex_lock(&l->mu);
    msg = s->msg;
    rv = s->rv;
    s->msg = NULL;
    s->phase = PH_IDLE;
    pthread_mutex_unlock(&l->mu);
    s->in_use = 0;
    l->busy--;

    gw_link_status_t st = rv == 0               ? GW_LINK_OK
                          : rv == NNG_ECANCELED ? GW_LINK_CANCELLED
                          : rv == NNG_ETIMEDOUT ? GW_LINK_TIMEDOUT
                                                : GW_LINK_BROKEN;
    /* The callback may destroy the link: touch nothing of it afterwards. */
    l->cb(l->owner, s->index, st, rv == 0 ? "" : nng_strerror(rv),
          msg != NULL ? nng_msg_body(msg) : NULL, msg != NULL ? nng_msg_len(msg) : 0);
    if (msg != NULL)
        nng_msg_free(msg);
}

int gw_link_create(gw_link_t **out, const char *addr, int nslots, gw_bridge_t *bridge,
                   gw_link_done_cb cb, void *owner)
{
    gw_link_t *l;
    int rv;

    if (strncmp(addr, "ipc://", 6) == 0) {
        if ((l = calloc(1, sizeof *l)) == NULL)
            return PROTO_ENOMEM;
        if ((rv = gw_splink_create(&l->sp, bridge->async.loop, addr + 6, nslots, cb, owner)) != 0) {
            free(l);
            return rv;
        }
        l->nslots = nslots;
        *out = l;
        return 0;
    }
    if ((l = calloc(1, sizeof *l + (size_t)nslots * sizeof(slot_t))) == NULL)
        return PROTO_ENOMEM;
    l->bridge = bridge;
    l->cb = cb;
    l->owner = owner;
    l->nslots = nslots;
    pthread_mutex_init(&l->mu, NULL);
    if ((rv = nng_req0_open(&l->sock)) != 0) {
        gw_link_destroy(l);
        return PROTO_ENNG;
    }
    l->sock_open = 1;
    /* We detect dead backends ourselves and retry elsewhere; nng must not resend on its own
     * timer (a slow inference would run twice). */
    nng_socket_set_ms(l->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_size(l->sock, NNG_OPT_RECVMAXSZ, (size_t)PROTO_PAYLOAD_MAX + (1u << 20));
    if ((rv = nng_dialer_create(&l->dialer, l->sock, addr)) != 0) {
        gw_link_destroy(l);
        return PROTO_ENNG;
    }
    /* Reconnect fast while the model loads. */
    nng_dialer_set_ms(l->dialer, NNG_OPT_RECONNMINT, 20);
    nng_dialer_set_ms(l->dialer, NNG_OPT_RECONNMAXT, 250);
    for (int i = 0; i < nslots; i++) {
        slot_t *s = &l->slots[i];
        s->link = l;
        s->index = i;
        s->node.cb = on_slot_done;
        if (nng_ctx_open(&s->ctx, l->sock) != 0 || nng_aio_alloc(&s->aio, on_aio, s) != 0 ||
            nng_aio_alloc(&s->saio, NULL, NULL) != 0) {
            gw_link_destroy(l);
            return PROTO_ENNG;
        }
    }
    *out = l;
    return 0;
}

int gw_link_set_tls(gw_link_t *l, nng_tls_config *tls)
{
    if (l->sp != NULL)
        return PROTO_EINVAL;
    return nng_dialer_set_ptr(l->dialer, NNG_OPT_TLS_CONFIG, tls) == 0 ? 0 : PROTO_ENNG;
}

typedef struct {
    gw_link_t *const *links;
    int n;
    gw_link_dials_t *out;
} dials_walk_t;

/* Fills the counters of one dialer scope if it belongs to one of the links. */
static void read_dialer(nng_stat *scope, const dials_walk_t *w)
{
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
        {"connect", offsetof(gw_link_dials_t, connect)},
        {"refused", offsetof(gw_link_dials_t, refused)},
        {"timeout", offsetof(gw_link_dials_t, timeout)},
        {"auth", offsetof(gw_link_dials_t, auth)},
        {"proto", offsetof(gw_link_dials_t, proto)},
        {"other", offsetof(gw_link_dials_t, other)},
        {"disconnect", offsetof(gw_link_dials_t, disconnect)},
    };
    int which = -1;
    for (nng_stat *c = nng_stat_child(scope); c != NULL && which < 0; c = nng_stat_next(c))
        if (strcmp(nng_stat_name(c), "id") == 0)
            for (int i = 0; i < w->n; i++)
                if (w->links[i]->sp == NULL &&
                    (uint64_t)nng_dialer_id(w->links[i]->dialer) == nng_stat_value(c))
                    which = i;
    if (which < 0)
        return;
    for (nng_stat *c = nng_stat_child(scope); c != NULL; c = nng_stat_next(c))
        for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
            if (strcmp(nng_stat_name(c), fields[f].name) == 0)
                *(uint64_t *)((char *)&w->out[which] + fields[f].off) = nng_stat_value(c);
}

/* One walk of the snapshot, matching each dialer scope by its "id" child: NNG 1.5.2's
 * nng_stat_find_dialer() returned the same (first) dialer's scope for every dialer here. */
static void walk(nng_stat *st, const dials_walk_t *w)
{
    for (; st != NULL; st = nng_stat_next(st)) {
        if (nng_stat_type(st) != NNG_STAT_SCOPE)
            continue;
        if (strcmp(nng_stat_name(st), "dialer") == 0)
            read_dialer(st, w);
        else
            walk(nng_stat_child(st), w);
    }
}

int gw_link_dials(gw_link_t *const *links, int n, gw_link_dials_t *out)
{
    nng_stat *all;
    memset(out, 0, (size_t)n * sizeof *out);
    int nng_links = 0;
    for (int i = 0; i < n; i++) {
        if (links[i]->sp != NULL)
            gw_splink_dials(links[i]->sp, &out[i]);
        else
            nng_links++;
    }
    if (nng_links == 0)
        return 0;
    if (nng_stats_get(&all) != 0)
        return PROTO_ENNG;
    dials_walk_t w = {links, n, out};
    walk(all, &w);
    nng_stats_free(all);
    return 0;
}

int gw_link_start(gw_link_t *l)
{
    if (l->sp != NULL)
        return gw_splink_start(l->sp);
    return nng_dialer_start(l->dialer, NNG_FLAG_NONBLOCK) == 0 ? 0 : PROTO_ENNG;
}

/* The send when a pipe is ready, done before this returns; NULL then (the message is NNG's),
 * else the message back for a send that waits (no pipe ready, or any failure: the waiting
 * send reports it through on_aio).
 *
 * Why: a send on `aio` completes on an NNG task thread, woken only to post the receive; that
 * wake-up and hand-off were a sixth of the gateway's CPU per frame. A zero timeout makes NNG
 * 1.5's req0 either give the message to a ready pipe at once or fail at once (never queue
 * it), and an aio without a callback completes inline, so the result is final here. No send
 * of this socket waits in NNG's queue while a pipe is ready, so this one is never queued
 * behind another. */
static nng_msg *try_send(slot_t *s, nng_msg *msg)
{
    nng_aio_set_msg(s->saio, msg);
    nng_aio_set_timeout(s->saio, NNG_DURATION_ZERO);
    nng_ctx_send(s->ctx, s->saio);
    if (nng_aio_result(s->saio) == 0)
        return NULL;
    msg = nng_aio_get_msg(s->saio);
    nng_aio_set_msg(s->saio, NULL);
    return msg;
}

int gw_link_send(gw_link_t *l, int slot, const proto_req_t *req, uint64_t timeout_ms)
{
    if (l->sp != NULL)
        return gw_splink_send(l->sp, slot, req, timeout_ms);
    slot_t *s = &l->slots[slot];
    nng_msg *msg;
    size_t len;
    int64_t size = proto_req_size(req);
    int rv;

    if (size < 0)
        return (int)size;
    if (nng_msg_alloc(&msg, (size_t)size) != 0)
        return PROTO_ENOMEM;
    if ((rv = proto_req_encode(req, nng_msg_body(msg), (size_t)size, &len)) != 0) {
        nng_msg_free(msg);
        return rv;
    }
    s->in_use = 1;
    l->busy++;
    if ((msg = try_send(s, msg)) == NULL) {
        /* Sent: the receive starts from here, with the whole timeout. */
        pthread_mutex_lock(&l->mu);
        s->cancelled = 0;
        s->msg = NULL;
        s->phase = PH_RECV;
        s->expire = 0;
        pthread_mutex_unlock(&l->mu);
        nng_aio_set_timeout(s->aio,
                            timeout_ms > 0 ? (nng_duration)timeout_ms : NNG_DURATION_INFINITE);
        nng_ctx_recv(s->ctx, s->aio);
        return 0;
    }
    pthread_mutex_lock(&l->mu);
    s->cancelled = 0;
    s->msg = NULL;
    s->phase = PH_SEND;
    s->expire = timeout_ms > 0 ? nng_clock() + (nng_time)timeout_ms : 0;
    pthread_mutex_unlock(&l->mu);
    nng_aio_set_msg(s->aio, msg);
    nng_aio_set_timeout(s->aio, timeout_ms > 0 ? (nng_duration)timeout_ms : NNG_DURATION_INFINITE);
    nng_ctx_send(s->ctx, s->aio);
    return 0;
}

void gw_link_cancel(gw_link_t *l, int slot)
{
    if (l->sp != NULL) {
        gw_splink_cancel(l->sp, slot);
        return;
    }
    slot_t *s = &l->slots[slot];
    if (!s->in_use)
        return;
    pthread_mutex_lock(&l->mu);
    s->cancelled = 1;
    if (s->phase == PH_SEND || s->phase == PH_RECV)
        nng_aio_cancel(s->aio); /* completes on an NNG thread, never inline */
    pthread_mutex_unlock(&l->mu);
}

void gw_link_cancel_all(gw_link_t *l)
{
    for (int i = 0; i < l->nslots; i++)
        gw_link_cancel(l, i);
}

int gw_link_idle(const gw_link_t *l, int slot)
{
    if (l->sp != NULL)
        return gw_splink_idle(l->sp, slot);
    return !l->slots[slot].in_use;
}

int gw_link_busy(const gw_link_t *l)
{
    if (l->sp != NULL)
        return gw_splink_busy(l->sp);
    return l->busy;
}

void gw_link_destroy(gw_link_t *l)
{
    if (l == NULL)
        return;
    if (l->sp != NULL) {
        gw_splink_destroy(l->sp);
        free(l);
        return;
    }
    if (l->sock_open)
        nng_close(l->sock); /* closes the dialer and the contexts; every aio is idle */
    for (int i = 0; i < l->nslots; i++) {
        if (l->slots[i].aio != NULL)
            nng_aio_free(l->slots[i].aio);
        if (l->slots[i].saio != NULL)
            nng_aio_free(l->slots[i].saio);
    }
    pthread_mutex_destroy(&l->mu);
    free(l);
}
