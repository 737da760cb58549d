/* The static and registered providers: backends started by someone else (by hand, systemd,
 * another orchestrator), like an nginx upstream. Static: the addresses a model lists in
 * backends_static. Registered: the addresses backends announced on the join listener
 * (join.h), added and removed at run time. start() hands out the next address that no
 * instance holds, without starting anything; stop() only forgets the instance, so the pool
 * can take the address back later. Whether an address answers is the pool's business (its
 * readiness PING, its liveness checks): a dead address is a start that does not become ready,
 * and when the pool gives up on it and asks again, the address is handed out again once it is
 * the next free one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "provider.h"

#define MAX_ADDRS 256

struct gw_instance {
    uv_timer_t exit_timer; /* first: on_exit is reported from its close callback */
    gw_provider_t *provider;
    void *owner;
    int slot; /* index into static_t.addrs */
    int stopping;
};

typedef struct {
    char addr[256];
    char id[64];            /* instance id: "static-N", or the name a backend registered */
    int used;               /* the slot holds an address */
    int leaving;            /* registered: removed while held; freed once forgotten */
    uint64_t seen_ms;       /* registered: last join (loop clock) */
    gw_instance_t *holder;  /* the instance holding it, or NULL */
} entry_t;

typedef struct {
    gw_provider_t super;
    uv_loop_t *loop;
    int next; /* where the search for a free address starts */
    int live;
    int count; /* entries in use and not leaving: the registered (or listed) backends */
    entry_t e[MAX_ADDRS];
} static_t;

static void on_forgotten(uv_handle_t *h)
{
    gw_instance_t *inst = (gw_instance_t *)h;
    static_t *sp = (static_t *)inst->provider;
    entry_t *e = &sp->e[inst->slot];
    e->holder = NULL;
    if (e->leaving) /* already uncounted */
        e->used = e->leaving = 0;
    sp->live--;
    sp->super.on_exit(inst->owner, inst, 0, 0, "forgotten (the backend is not ours to stop)");
    free(inst);
}

/* on_exit must not run inside the caller's stop(): report it from the loop, at once. */
static void on_exit_timer(uv_timer_t *t) { uv_close((uv_handle_t *)t, on_forgotten); }

static int static_start(gw_provider_t *p, const char *name, void *owner, gw_instance_t **out,
                        char *addr, size_t addr_cap)
{
    static_t *sp = (static_t *)p;
    int slot = -1;
    for (int i = 0; i < MAX_ADDRS && slot < 0; i++) {
        int k = (sp->next + i) % MAX_ADDRS;
        if (sp->e[k].used && !sp->e[k].leaving && sp->e[k].holder == NULL)
            slot = k;
    }
    if (slot < 0)
        return PROTO_ENOBACKEND; /* every address is held: the pool asked for too many */
    if (strlen(sp->e[slot].addr) >= addr_cap)
        return PROTO_ETOOBIG;
    gw_instance_t *inst = calloc(1, sizeof *inst);
    if (inst == NULL)
        return PROTO_ENOMEM;
    uv_timer_init(sp->loop, &inst->exit_timer);
    inst->provider = p;
    inst->owner = owner;
    inst->slot = slot;
    sp->e[slot].holder = inst;
    sp->next = (slot + 1) % MAX_ADDRS;
    sp->live++;
    snprintf(addr, addr_cap, "%s", sp->e[slot].addr);
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
    snprintf(buf, cap, "%s", ((static_t *)p)->e[inst->slot].id);
}

static int static_live(gw_provider_t *p) { return ((static_t *)p)->live; }

static void static_destroy(gw_provider_t *p) { free(p); }

static const gw_provider_ops_t static_ops = {
    .kind = "static",
    .start = static_start,
    .stop = static_stop,
    .instance_id = static_instance_id,
    .live = static_live,
    .destroy = static_destroy,
};

static const gw_provider_ops_t registered_ops = {
    .kind = "registered",
    .start = static_start,
    .stop = static_stop,
    .instance_id = static_instance_id,
    .live = static_live,
    .destroy = static_destroy,
};

static static_t *alloc_provider(uv_loop_t *loop, const gw_provider_ops_t *ops,
                                gw_provider_exit_cb on_exit)
{
    static_t *sp = calloc(1, sizeof *sp);
    if (sp == NULL)
        return NULL;
    sp->super.ops = ops;
    sp->super.on_exit = on_exit;
    sp->loop = loop;
    return sp;
}

int gw_provider_static_create(gw_provider_t **out, uv_loop_t *loop, const gw_model_t *model,
                              gw_provider_exit_cb on_exit)
{
    char list[GW_STATIC_LIST_MAX];
    static_t *sp = alloc_provider(loop, &static_ops, on_exit);
    if (sp == NULL)
        return PROTO_ENOMEM;
    snprintf(list, sizeof list, "%s", model->backends_static);
    for (char *save = NULL, *w = strtok_r(list, ", \t", &save); w != NULL;
         w = strtok_r(NULL, ", \t", &save)) {
        if (sp->count >= MAX_ADDRS || strlen(w) >= sizeof sp->e[0].addr) {
            free(sp);
            return PROTO_ETOOBIG;
        }
        entry_t *e = &sp->e[sp->count++];
        snprintf(e->addr, sizeof e->addr, "%s", w);
        snprintf(e->id, sizeof e->id, "static-%d", sp->count);
        e->used = 1;
    }
    if (sp->count == 0) { /* gw_config_validate makes sure of it */
        free(sp);
        return PROTO_EINVAL;
    }
    *out = &sp->super;
    return 0;
}

int gw_provider_registered_create(gw_provider_t **out, uv_loop_t *loop,
                                  gw_provider_exit_cb on_exit)
{
    static_t *sp = alloc_provider(loop, &registered_ops, on_exit);
    if (sp == NULL)
        return PROTO_ENOMEM;
    *out = &sp->super;
    return 0;
}

int gw_provider_registered_add(gw_provider_t *p, const char *name, const char *addr, int *count)
{
    static_t *sp = (static_t *)p;
    int free_slot = -1, rv = 0;
    if (p->ops != &registered_ops || strlen(addr) >= sizeof sp->e[0].addr)
        return PROTO_EINVAL;
    for (int i = 0; i < MAX_ADDRS && rv == 0; i++) {
        entry_t *e = &sp->e[i];
        if (e->used && strcmp(e->addr, addr) == 0) {
            if (e->leaving) { /* back before it was forgotten: keep it */
                e->leaving = 0;
                sp->count++;
                rv = 2;
            } else {
                rv = 1; /* known: a periodic re-join */
            }
            e->seen_ms = uv_now(sp->loop);
        } else if (!e->used && free_slot < 0) {
            free_slot = i;
        }
    }
    if (rv == 0) {
        if (free_slot < 0)
            return PROTO_ETOOBIG;
        entry_t *e = &sp->e[free_slot];
        snprintf(e->addr, sizeof e->addr, "%s", addr);
        snprintf(e->id, sizeof e->id, "%s", name);
        e->used = 1;
        e->seen_ms = uv_now(sp->loop);
        sp->count++;
    }
    *count = sp->count;
    return rv == 1 ? 1 : 0;
}

int gw_provider_registered_remove(gw_provider_t *p, const char *addr, int *count)
{
    static_t *sp = (static_t *)p;
    if (p->ops != &registered_ops)
        return PROTO_EINVAL;
    for (int i = 0; i < MAX_ADDRS; i++) {
        entry_t *e = &sp->e[i];
        if (!e->used || e->leaving || strcmp(e->addr, addr) != 0)
            continue;
        if (e->holder != NULL)
            e->leaving = 1; /* the pool drains it; the slot is freed once forgotten */
        else
            e->used = 0;
        sp->count--;
        *count = sp->count;
        return 0;
    }
    return PROTO_EINVAL;
}

int gw_provider_registered_stale(gw_provider_t *p, uint64_t ttl_ms, char *addr, size_t cap)
{
    static_t *sp = (static_t *)p;
    uint64_t now = uv_now(sp->loop);
    if (p->ops != &registered_ops)
        return 0;
    for (int i = 0; i < MAX_ADDRS; i++) {
        entry_t *e = &sp->e[i];
        if (e->used && !e->leaving && now - e->seen_ms > ttl_ms) {
            snprintf(addr, cap, "%s", e->addr);
            return 1;
        }
    }
    return 0;
}
