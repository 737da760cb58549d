/* The static provider: backends started by someone else (by hand, systemd, another
 * orchestrator) at the addresses a model lists in backends_static, like an nginx upstream.
 * start() hands out the next address that no instance holds, without starting anything;
 * stop() only forgets it, so the pool can take it back later. Whether an address answers is
 * the pool's business (its readiness PING, its liveness checks): a dead address is a start
 * that does not become ready, and when the pool gives up on it and asks again, the address
 * is handed out again once it is the next free one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "provider.h"

struct gw_instance {
    uv_timer_t exit_timer; /* first: on_exit is reported from its close callback */
    gw_provider_t *provider;
    void *owner;
    int slot;      /* index into static_t.addrs */
    int stopping;
};

typedef struct {
    gw_provider_t super;
    uv_loop_t *loop;
    int naddrs;
    int next;                       /* where the search for a free address starts */
    int live;
    char (*addrs)[256];             /* the parsed list */
    gw_instance_t **holder;         /* per address: the instance holding it, or NULL */
} static_t;

static void on_forgotten(uv_handle_t *h)
{
    gw_instance_t *inst = (gw_instance_t *)h;
    static_t *sp = (static_t *)inst->provider;
    sp->holder[inst->slot] = NULL;
    sp->live--;
    sp->super.on_exit(inst->owner, inst, 0, 0, "forgotten (a static backend keeps running)");
    free(inst);
}

/* on_exit must not run inside the caller's stop(): report it from the loop, at once. */
static void on_exit_timer(uv_timer_t *t) { uv_close((uv_handle_t *)t, on_forgotten); }

static int static_start(gw_provider_t *p, const char *name, void *owner, gw_instance_t **out,
                        char *addr, size_t addr_cap)
{
    static_t *sp = (static_t *)p;
    int slot = -1;
    for (int i = 0; i < sp->naddrs && slot < 0; i++) {
        int k = (sp->next + i) % sp->naddrs;
        if (sp->holder[k] == NULL)
            slot = k;
    }
    if (slot < 0)
        return PROTO_ENOBACKEND; /* every address is held: the pool asked for too many */
    if (strlen(sp->addrs[slot]) >= addr_cap)
        return PROTO_ETOOBIG;
    gw_instance_t *inst = calloc(1, sizeof *inst);
    if (inst == NULL)
        return PROTO_ENOMEM;
    uv_timer_init(sp->loop, &inst->exit_timer);
    inst->provider = p;
    inst->owner = owner;
    inst->slot = slot;
    sp->holder[slot] = inst;
    sp->next = (slot + 1) % sp->naddrs;
    sp->live++;
    snprintf(addr, addr_cap, "%s", sp->addrs[slot]);
    GW_LOG_D("backend_assigned", "backend=%s addr=%s", name, addr);
    *out = inst;
    return 0;
}

static void static_stop(gw_provider_t *p, gw_instance_t *inst, int force)
{
    (void)p;
    (void)force; /* nothing to signal: the backend is not ours */
    if (inst->stopping)
        return;
    inst->stopping = 1;
    uv_timer_start(&inst->exit_timer, on_exit_timer, 0, 0);
}

static void static_instance_id(gw_provider_t *p, gw_instance_t *inst, char *buf, size_t cap)
{
    (void)p;
    snprintf(buf, cap, "static-%d", inst->slot + 1);
}

static int static_live(gw_provider_t *p) { return ((static_t *)p)->live; }

static void static_destroy(gw_provider_t *p)
{
    static_t *sp = (static_t *)p;
    free(sp->addrs);
    free(sp->holder);
    free(sp);
}

static const gw_provider_ops_t static_ops = {
    .kind = "static",
    .start = static_start,
    .stop = static_stop,
    .instance_id = static_instance_id,
    .live = static_live,
    .destroy = static_destroy,
};

int gw_provider_static_create(gw_provider_t **out, uv_loop_t *loop, const gw_model_t *model,
                              gw_provider_exit_cb on_exit)
{
    char list[GW_STATIC_LIST_MAX];
    static_t *sp = calloc(1, sizeof *sp);
    if (sp == NULL)
        return PROTO_ENOMEM;
    sp->super.ops = &static_ops;
    sp->super.on_exit = on_exit;
    sp->loop = loop;
    /* gw_config_validate checked every address and counted them (nstatic) */
    int cap = model->nstatic > 0 ? model->nstatic : 1;
    sp->addrs = calloc((size_t)cap, sizeof *sp->addrs);
    sp->holder = calloc((size_t)cap, sizeof *sp->holder);
    if (sp->addrs == NULL || sp->holder == NULL) {
        static_destroy(&sp->super);
        return PROTO_ENOMEM;
    }
    snprintf(list, sizeof list, "%s", model->backends_static);
    for (char *save = NULL, *w = strtok_r(list, ", \t", &save); w != NULL && sp->naddrs < cap;
         w = strtok_r(NULL, ", \t", &save)) {
        if (strlen(w) >= sizeof sp->addrs[0]) {
            static_destroy(&sp->super);
            return PROTO_ETOOBIG;
        }
        snprintf(sp->addrs[sp->naddrs++], sizeof sp->addrs[0], "%s", w);
    }
    if (sp->naddrs == 0) {
        static_destroy(&sp->super);
        return PROTO_EINVAL;
    }
    *out = &sp->super;
    return 0;
}
