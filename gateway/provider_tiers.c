/* The tiered provider (model key `providers = local:2, ec2:18`): one provider per tier, each
 * with its own maximum. A start goes to the first tier with room, cheapest first, and falls
 * through to the next when a tier refuses (its cap, its start limit, API trouble at once); the
 * pool's scale-in asks ops->tier and reaps the last tier first. Instances wrap the tier's own.
 * Loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "provider.h"

typedef struct tiers tiers_t;

typedef struct {
    tiers_t *t;
    gw_provider_t *p; /* owned */
    int max;
    int live; /* wrapped instances of this tier */
} tier_t;

struct gw_instance {
    tier_t *tier;
    gw_instance_t *inner;
    void *owner;
};

struct tiers {
    gw_provider_t super;
    tier_t tiers[GW_TIERS_MAX];
    int n;
    char kind[64];
};

static void on_inner_exit(void *owner, gw_instance_t *inner, int64_t status, int sig,
                          const char *why)
{
    gw_instance_t *w = owner;
    tiers_t *t = w->tier->t;
    (void)inner;
    w->tier->live--;
    t->super.on_exit(w->owner, w, status, sig, why);
    free(w);
}

static void on_inner_address(void *owner, gw_instance_t *inner, const char *addr)
{
    gw_instance_t *w = owner;
    (void)inner;
    w->tier->t->super.on_address(w->owner, w, addr);
}

/* A tier's leftover from an earlier gateway: taken while the tier has room. */
static void *on_inner_adopt(void *ctx, gw_instance_t *inner, const char *addr)
{
    tier_t *tier = ctx;
    tiers_t *t = tier->t;
    if (tier->live >= tier->max || t->super.on_adopt == NULL)
        return NULL;
    gw_instance_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->tier = tier;
    w->inner = inner;
    tier->live++;
    w->owner = t->super.on_adopt(t->super.adopt_ctx, w, addr);
    if (w->owner == NULL) {
        tier->live--;
        free(w);
        return NULL;
    }
    return w;
}

static int tiers_start(gw_provider_t *p, const char *name, void *owner, gw_instance_t **out,
                       char *addr, size_t addr_cap)
{
    tiers_t *t = (tiers_t *)p;
    int rv = PROTO_ENOBACKEND;
    for (int i = 0; i < t->n; i++) {
        tier_t *tier = &t->tiers[i];
        if (tier->live >= tier->max)
            continue;
        gw_instance_t *w = calloc(1, sizeof *w);
        if (w == NULL)
            return PROTO_ENOMEM;
        w->tier = tier;
        w->owner = owner;
        rv = tier->p->ops->start(tier->p, name, w, &w->inner, addr, addr_cap);
        if (rv == 0) {
            tier->live++;
            *out = w;
            if (i > 0)
                GW_LOG_I("tier_burst", "backend=%s tier=%d provider=%s", name, i,
                         tier->p->ops->kind);
            return 0;
        }
        free(w);
        GW_LOG_W("tier_refused", "backend=%s tier=%d provider=%s error=\"%s\"", name, i,
                 tier->p->ops->kind, proto_strerror(rv));
    }
    return rv;
}

static void tiers_stop(gw_provider_t *p, gw_instance_t *w, int force)
{
    (void)p;
    w->tier->p->ops->stop(w->tier->p, w->inner, force);
}

static void tiers_instance_id(gw_provider_t *p, gw_instance_t *w, char *buf, size_t cap)
{
    (void)p;
    w->tier->p->ops->instance_id(w->tier->p, w->inner, buf, cap);
}

static int tiers_live(gw_provider_t *p)
{
    tiers_t *t = (tiers_t *)p;
    int n = 0;
    for (int i = 0; i < t->n; i++)
        n += t->tiers[i].p->ops->live(t->tiers[i].p);
    return n;
}

static void tiers_destroy(gw_provider_t *p)
{
    tiers_t *t = (tiers_t *)p;
    for (int i = 0; i < t->n; i++)
        t->tiers[i].p->ops->destroy(t->tiers[i].p);
    free(t);
}

static int tiers_joined(gw_provider_t *p, const char *name, const char *addr)
{
    tiers_t *t = (tiers_t *)p;
    for (int i = 0; i < t->n; i++) {
        gw_provider_t *in = t->tiers[i].p;
        if (in->ops->joined != NULL && in->ops->joined(in, name, addr) == 0)
            return 0;
    }
    return PROTO_EINVAL;
}

static const char *tiers_api_error(gw_provider_t *p, uint64_t *errors)
{
    tiers_t *t = (tiers_t *)p;
    const char *last = "";
    uint64_t sum = 0;
    for (int i = 0; i < t->n; i++) {
        gw_provider_t *in = t->tiers[i].p;
        uint64_t e = 0;
        const char *s = in->ops->api_error != NULL ? in->ops->api_error(in, &e) : "";
        sum += e;
        if (last[0] == '\0' && s != NULL)
            last = s;
    }
    if (errors)
        *errors = sum;
    return last;
}

static void tiers_shutdown(gw_provider_t *p)
{
    tiers_t *t = (tiers_t *)p;
    for (int i = 0; i < t->n; i++)
        if (t->tiers[i].p->ops->shutdown != NULL)
            t->tiers[i].p->ops->shutdown(t->tiers[i].p);
}

static int tiers_tier(gw_provider_t *p, gw_instance_t *w)
{
    (void)p;
    return (int)(w->tier - w->tier->t->tiers);
}

static const gw_provider_ops_t tiers_ops = {
    .kind = "tiers",
    .start = tiers_start,
    .stop = tiers_stop,
    .instance_id = tiers_instance_id,
    .live = tiers_live,
    .destroy = tiers_destroy,
    .joined = tiers_joined,
    .api_error = tiers_api_error,
    .shutdown = tiers_shutdown,
    .tier = tiers_tier,
};

int gw_provider_tiers_create(gw_provider_t **out, gw_provider_t *const *tiers, const int *max,
                             int n, gw_provider_exit_cb on_exit)
{
    if (n < 1 || n > GW_TIERS_MAX)
        return PROTO_EINVAL;
    tiers_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return PROTO_ENOMEM;
    t->super.ops = &tiers_ops;
    t->super.on_exit = on_exit;
    t->n = n;
    for (int i = 0; i < n; i++) {
        tier_t *tier = &t->tiers[i];
        tier->t = t;
        tier->p = tiers[i];
        tier->max = max[i];
        tier->p->on_exit = on_inner_exit;
        tier->p->on_address = on_inner_address;
        tier->p->on_adopt = on_inner_adopt;
        tier->p->adopt_ctx = tier;
    }
    *out = &t->super;
    return 0;
}
