/* The cloud providers' shared core (provider_cloud.h): instances, calls with retries, the
 * sweep that adopts or terminates what an earlier gateway left. Loop thread only.
 *
 * Nothing is leaked: the first sweep after start lists the cluster's instances of this model;
 * those no instance here owns are adoption candidates, kept until their backend re-joins
 * (backends repeat their join every few seconds, so a restarted gateway hears from them) and
 * then offered to the pool, which health-checks them like a starting backend; a candidate
 * that does not join within start_timeout_ms, or that the pool declines, is terminated.
 * Later sweeps terminate whatever nobody owns (a failed termination's leftover). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "log.h"
#include "provider_cloud.h"

#define MAX_ATTEMPTS 6
#define BACKOFF_BASE_MS 200
#define BACKOFF_MAX_MS 10000
#define CREDS_WAIT_MS 200
#define CREDS_WAITS 50 /* ~10 s for the first credentials or token */
#define MAX_INSTANCES 256

void gw_cloud_error(gw_cloud_t *c, const char *action, const char *err)
{
    c->errors++;
    snprintf(c->last_error, sizeof c->last_error, "%s: %s", action, err);
    GW_LOG_W("cloud_api_error", "provider=%s model=%s action=%s error=\"%s\"", c->ops->kind,
             c->model->name, action, err);
}

/* ---- calls ---- */

static void on_call_closed(uv_handle_t *h)
{
    gw_cloud_call_t *call = h->data;
    free(call->body);
    free(call);
}

/* Unlinks the call now (the provider may go right after) and frees it once its timer has
 * closed. */
static void call_done(gw_cloud_call_t *call)
{
    for (gw_cloud_call_t **pp = &call->c->calls; *pp; pp = &(*pp)->next)
        if (*pp == call) {
            *pp = call->next;
            break;
        }
    uv_close((uv_handle_t *)&call->timer, on_call_closed);
}

static void call_fail(gw_cloud_call_t *call, long status, const char *body, size_t len,
                      const char *err)
{
    call->cb(call->c, call, 0, status, body, len, err);
    call_done(call);
}

static void on_send(uv_timer_t *t)
{
    gw_cloud_call_t *call = t->data;
    gw_cloud_t *c = call->c;
    int rv = c->ops->send(c, call);
    if (rv == 1) { /* credentials on their way (IMDS, a token endpoint) */
        if (++call->attempts > CREDS_WAITS) {
            char why[600];
            snprintf(why, sizeof why, "no credentials (%s)",
                     c->last_error[0] ? c->last_error : "none came");
            call_fail(call, 0, NULL, 0, why);
            return;
        }
        uv_timer_start(&call->timer, on_send, CREDS_WAIT_MS, 0);
    } else if (rv < 0) {
        gw_cloud_error(c, call->action, proto_strerror(rv));
        call_fail(call, 0, NULL, 0, proto_strerror(rv));
    }
}

static void on_fetched(void *arg, gw_fetch_result_t *res)
{
    gw_cloud_call_t *call = arg;
    gw_cloud_t *c = call->c;
    char err[600] = "";
    call->req = NULL;
    if (res->err == UV_ECANCELED || c->destroying) {
        call_fail(call, 0, NULL, 0, "cancelled");
        return;
    }
    const char *body = (const char *)res->body;
    size_t len = res->body ? res->len : 0;
    if (res->err == 0 && res->status >= 200 && res->status < 300) {
        call->cb(c, call, 1, res->status, body, len, NULL);
        call_done(call);
        return;
    }
    long status = res->err != 0 ? 0 : res->status;
    if (res->err != 0)
        snprintf(err, sizeof err, "%s", res->error[0] ? res->error : proto_strerror(res->err));
    else
        c->ops->error_text(status, body, len, err, sizeof err);
    if (status != 404) /* a delete of what is already gone is no error */
        gw_cloud_error(c, call->action, err);
    if (c->ops->retryable(status, err) && ++call->attempts < MAX_ATTEMPTS) {
        /* full jitter: a throttled API is not hammered by every gateway in step */
        uint64_t cap = (uint64_t)BACKOFF_BASE_MS << call->attempts;
        if (cap > BACKOFF_MAX_MS)
            cap = BACKOFF_MAX_MS;
        uv_timer_start(&call->timer, on_send, cap / 2 + (uint64_t)rand() % (cap / 2 + 1), 0);
        return;
    }
    call_fail(call, status, body, len, err);
}

int gw_cloud_call(gw_cloud_t *c, const char *method, const char *path, char *body, size_t body_len,
                  const char *action, gw_instance_t *inst, gw_cloud_call_cb cb, uint64_t delay_ms)
{
    gw_cloud_call_t *call = calloc(1, sizeof *call);
    if (call == NULL || strlen(path) >= sizeof call->path) {
        free(body);
        free(call);
        gw_cloud_error(c, action, "request could not be built (memory or size)");
        return PROTO_ENOMEM;
    }
    call->c = c;
    snprintf(call->method, sizeof call->method, "%s", method);
    snprintf(call->path, sizeof call->path, "%s", path);
    snprintf(call->action, sizeof call->action, "%s", action);
    call->body = body;
    call->body_len = body_len;
    call->cb = cb;
    call->inst = inst;
    call->next = c->calls;
    c->calls = call;
    /* always from the loop: a callback never runs inside the caller (start() among them) */
    uv_timer_init(c->loop, &call->timer);
    call->timer.data = call;
    uv_timer_start(&call->timer, on_send, delay_ms, 0);
    return 0;
}

int gw_cloud_fetch(gw_cloud_t *c, gw_cloud_call_t *call, gw_fetch_opts_t *o)
{
    if (o->method == NULL)
        o->method = call->method;
    if (o->body == NULL && call->body != NULL) {
        o->body = (const uint8_t *)call->body;
        o->body_len = call->body_len;
    }
    if (o->max_bytes == 0)
        o->max_bytes = 8 << 20;
    if (o->connect_timeout_ms == 0)
        o->connect_timeout_ms = c->cfg->cloud_api_timeout_ms;
    if (o->timeout_ms == 0)
        o->timeout_ms = c->cfg->cloud_api_timeout_ms;
    return gw_fetch_start(c->fetch, o, on_fetched, call, &call->req);
}

/* ---- instances ---- */

gw_instance_t *gw_cloud_find(gw_cloud_t *c, const char *key)
{
    for (gw_instance_t *i = c->insts; i; i = i->next)
        if (strcmp(i->key, key) == 0)
            return i;
    return NULL;
}

void gw_cloud_exit(gw_cloud_t *c, gw_instance_t *inst, const char *why)
{
    if (inst->reported)
        return;
    inst->reported = 1;
    for (gw_instance_t **pp = &c->insts; *pp; pp = &(*pp)->next)
        if (*pp == inst) {
            *pp = inst->next;
            break;
        }
    c->live--;
    /* calls still about it must not touch it */
    for (gw_cloud_call_t *call = c->calls; call; call = call->next)
        if (call->inst == inst)
            call->inst = NULL;
    if (inst->owner != NULL) /* an adoption candidate was never the pool's */
        c->super.on_exit(inst->owner, inst, 0, 0, why);
    free(inst);
}

static void terminate(gw_cloud_t *c, gw_instance_t *inst)
{
    inst->terminating = 1;
    if (c->ops->terminate(c, inst->id, inst) != 0)
        gw_cloud_exit(c, inst, "the termination could not be sent; the orphan sweep retries");
}

int gw_cloud_created(gw_cloud_t *c, gw_instance_t *inst, const char *id)
{
    if (id != NULL && id[0])
        snprintf(inst->id, sizeof inst->id, "%s", id);
    if (!inst->created)
        GW_LOG_I("cloud_launched", "provider=%s backend=%s instance=%s key=%s", c->ops->kind,
                 inst->name, inst->id, inst->key);
    inst->created = 1;
    if (!inst->stop_wanted || inst->terminating)
        return inst->terminating;
    terminate(c, inst);
    return 1;
}

void gw_cloud_terminated(gw_cloud_t *c, gw_instance_t *inst, int ok, const char *err)
{
    if (inst == NULL)
        return;
    if (ok) {
        GW_LOG_I("cloud_terminated", "provider=%s backend=%s instance=%s", c->ops->kind, inst->name,
                 inst->id);
        gw_cloud_exit(c, inst, "instance terminated");
        return;
    }
    /* The sweep terminates it later (it carries our cluster tag and nobody owns it once it is
     * forgotten here); the pool must not wait for it forever. */
    char why[700];
    snprintf(why, sizeof why, "the termination failed (%s); the orphan sweep retries",
             err ? err : "?");
    GW_LOG_E("cloud_terminate_failed", "provider=%s backend=%s instance=%s error=\"%s\"",
             c->ops->kind, inst->name, inst->id, err ? err : "?");
    gw_cloud_exit(c, inst, why);
}

static int claim_or_launch(gw_cloud_t *c, gw_instance_t *inst);

int gw_cloud_start(gw_provider_t *p, const char *name, void *owner, gw_instance_t **out, char *addr,
                   size_t addr_cap)
{
    gw_cloud_t *c = (gw_cloud_t *)p;
    (void)addr_cap;
    uint64_t now = uv_now(c->loop);
    int recent = 0;
    for (int i = 0; i < c->nstarts && i < 1024; i++)
        recent += now - c->starts[i] < 3600000;
    if (recent >= c->cfg->cloud_max_starts_per_hour) { /* a runaway-bill guard */
        snprintf(c->last_error, sizeof c->last_error,
                 "cloud_max_starts_per_hour (%d) reached: no new instance for now",
                 c->cfg->cloud_max_starts_per_hour);
        return PROTO_ENOBACKEND;
    }
    if (c->live >= MAX_INSTANCES)
        return PROTO_ENOBACKEND;
    gw_instance_t *inst = calloc(1, sizeof *inst);
    if (inst == NULL)
        return PROTO_ENOMEM;
    inst->c = c;
    inst->owner = owner;
    snprintf(inst->name, sizeof inst->name, "%s", name);
    /* linked first: the create call's callback may find it (never before we return) */
    inst->next = c->insts;
    c->insts = inst;
    c->live++;
    /* Before the first sweep, a leftover of an earlier gateway may be waiting to be adopted:
     * that one serves this start, and nothing is launched (gw_cloud_listed). */
    int rv = 0;
    if (c->super.on_adopt == NULL)
        rv = c->ops->launch(c, inst);
    else if (!c->swept)
        inst->deferred = 1;
    else
        rv = claim_or_launch(c, inst);
    if (rv != 0) {
        c->insts = inst->next;
        c->live--;
        free(inst);
        return rv;
    }
    c->starts[c->nstarts++ % 1024] = now;
    if (c->nstarts >= 2048)
        c->nstarts -= 1024;
    addr[0] = '\0'; /* known when its backend joins */
    *out = inst;
    GW_LOG_I("cloud_launch", "provider=%s backend=%s key=%s", c->ops->kind, name, inst->key);
    return 0;
}

void gw_cloud_stop(gw_provider_t *p, gw_instance_t *inst, int force)
{
    gw_cloud_t *c = (gw_cloud_t *)p;
    (void)force; /* termination is the only way; the backend drains on its SIGTERM */
    if (inst->stop_wanted)
        return;
    inst->stop_wanted = 1;
    if (inst->deferred) {
        gw_cloud_exit(c, inst, "stopped before it was launched");
        return;
    }
    if (c->shutdown && c->cfg->keep_instances_on_exit) {
        /* left running, tagged, for the next gateway to adopt */
        GW_LOG_I("cloud_kept", "provider=%s backend=%s instance=%s key=%s", c->ops->kind,
                 inst->name, inst->id, inst->key);
        gw_cloud_exit(c, inst, "kept running (keep_instances_on_exit)");
        return;
    }
    if (inst->created)
        terminate(c, inst);
    /* else: the create is in flight; terminated when it answers (gw_cloud_created) */
}

void gw_cloud_instance_id(gw_provider_t *p, gw_instance_t *inst, char *buf, size_t cap)
{
    (void)p;
    snprintf(buf, cap, "%s", inst->id[0] ? inst->id : "launching");
}

int gw_cloud_live(gw_provider_t *p)
{
    return ((gw_cloud_t *)p)->live;
}

int gw_cloud_joined(gw_provider_t *p, const char *name, const char *addr)
{
    gw_cloud_t *c = (gw_cloud_t *)p;
    gw_instance_t *inst = gw_cloud_find(c, name);
    if (inst == NULL)
        return PROTO_EINVAL;
    if (inst->owner == NULL) { /* a leftover no start has claimed */
        if (inst->terminating)
            return 0;
        void *owner = NULL;
        if (!c->shutdown && c->super.on_adopt != NULL)
            owner = c->super.on_adopt(c->super.adopt_ctx, inst, addr);
        if (owner == NULL) {
            GW_LOG_W("cloud_orphan",
                     "provider=%s model=%s instance=%s action=terminate "
                     "reason=declined",
                     c->ops->kind, c->model->name, inst->id);
            terminate(c, inst);
            return 0;
        }
        inst->adopting = 0;
        inst->joined = 1;
        inst->owner = owner;
        GW_LOG_I("cloud_adopted", "provider=%s model=%s backend=%s instance=%s addr=%s",
                 c->ops->kind, c->model->name, inst->name, inst->id, addr);
        return 0;
    }
    if (!inst->joined && !inst->stop_wanted) {
        inst->joined = 1;
        GW_LOG_I("cloud_joined", "provider=%s backend=%s instance=%s addr=%s", c->ops->kind,
                 inst->name, inst->id, addr);
        c->super.on_address(inst->owner, inst, addr);
    }
    return 0;
}

const char *gw_cloud_api_error(gw_provider_t *p, uint64_t *errors)
{
    gw_cloud_t *c = (gw_cloud_t *)p;
    if (errors)
        *errors = c->errors;
    return c->last_error;
}

void gw_cloud_shutdown(gw_provider_t *p)
{
    gw_cloud_t *c = (gw_cloud_t *)p;
    c->shutdown = 1;
    /* candidates nobody took: kept for the next gateway too, or terminated */
    for (gw_instance_t *i = c->insts, *next; i; i = next) {
        next = i->next;
        if (!i->adopting || i->terminating)
            continue;
        if (c->cfg->keep_instances_on_exit)
            gw_cloud_exit(c, i, "kept");
        else
            terminate(c, i);
    }
}

/* ---- the sweep ---- */

/* Serves a start with a leftover waiting to be adopted (its backend's join then completes
 * the start, nothing is launched), else launches a new instance. 0 or a negative code. */
static int claim_or_launch(gw_cloud_t *c, gw_instance_t *inst)
{
    gw_instance_t *cand = c->insts;
    while (cand != NULL && !(cand->owner == NULL && cand->adopting && !cand->terminating))
        cand = cand->next;
    if (cand == NULL)
        return c->ops->launch(c, inst);
    snprintf(inst->key, sizeof inst->key, "%s", cand->key);
    snprintf(inst->id, sizeof inst->id, "%s", cand->id);
    inst->created = 1;
    GW_LOG_I("cloud_adopted", "provider=%s model=%s backend=%s instance=%s how=start", c->ops->kind,
             c->model->name, inst->name, inst->id);
    for (gw_instance_t **pp = &c->insts; *pp; pp = &(*pp)->next)
        if (*pp == cand) {
            *pp = cand->next;
            break;
        }
    c->live--;
    free(cand);
    return 0;
}

/* After the first list: the starts made before it are served now. */
static void launch_deferred(gw_cloud_t *c)
{
    for (;;) {
        gw_instance_t *i = c->insts;
        while (i != NULL && !i->deferred)
            i = i->next;
        if (i == NULL)
            return;
        i->deferred = 0;
        if (claim_or_launch(c, i) != 0)
            gw_cloud_exit(c, i, "the create could not be sent");
    }
}

void gw_cloud_listed(gw_cloud_t *c, int ok, const gw_cloud_found_t *found, int n, const char *err)
{
    c->sweeping = 0;
    if (c->destroying)
        return;
    if (!ok) {
        /* The API is not usable (credentials, throttling past the retries): the starts
         * waiting on this list fail with its reason; the pool backs off and asks again. */
        char why[700];
        snprintf(why, sizeof why, "the first instance list failed: %s", err ? err : "?");
        for (gw_instance_t *i = c->insts; i; i = i->next)
            if (i->deferred)
                i->deferred = 2; /* these; not those the pool starts again in on_exit */
        for (;;) { /* from the head each time: the pool may start or stop in on_exit */
            gw_instance_t *i = c->insts;
            while (i != NULL && i->deferred != 2)
                i = i->next;
            if (i == NULL)
                return;
            gw_cloud_exit(c, i, why);
        }
    }
    int first = !c->swept, orphans = 0, candidates = 0;
    c->swept = 1;
    for (int i = 0; i < n; i++) {
        const gw_cloud_found_t *f = &found[i];
        gw_instance_t *mine = f->key[0] ? gw_cloud_find(c, f->key) : NULL;
        if (mine != NULL) {
            if (mine->id[0] == '\0') /* its create's answer not back yet */
                snprintf(mine->id, sizeof mine->id, "%s", f->id);
            continue;
        }
        gw_instance_t *cand = NULL;
        if (first && !c->shutdown && c->super.on_adopt != NULL && f->key[0] &&
            (cand = calloc(1, sizeof *cand)) != NULL) {
            /* An earlier gateway's: adopted if its backend joins in time (gw_cloud_joined). */
            cand->c = c;
            cand->adopting = cand->created = 1;
            cand->adopt_deadline = uv_now(c->loop) + c->cfg->start_timeout_ms;
            snprintf(cand->key, sizeof cand->key, "%s", f->key);
            snprintf(cand->id, sizeof cand->id, "%s", f->id);
            snprintf(cand->name, sizeof cand->name, "%.60s", f->key);
            cand->next = c->insts;
            c->insts = cand;
            c->live++;
            candidates++;
            GW_LOG_I("cloud_leftover", "provider=%s model=%s instance=%s key=%s action=adopt",
                     c->ops->kind, c->model->name, f->id, f->key);
            continue;
        }
        /* Tagged with our cluster, owned by no live instance here: a crashed gateway's
         * (when nothing adopts), or one whose termination failed. */
        GW_LOG_W("cloud_orphan", "provider=%s model=%s instance=%s key=%s action=terminate",
                 c->ops->kind, c->model->name, f->id, f->key);
        c->ops->terminate(c, f->id, NULL);
        orphans++;
    }
    launch_deferred(c);
    if (orphans > 0 || candidates > 0)
        GW_LOG_I("cloud_sweep", "provider=%s model=%s instances=%d orphans=%d candidates=%d",
                 c->ops->kind, c->model->name, n, orphans, candidates);
}

static void on_sweep(uv_timer_t *t)
{
    gw_cloud_t *c = t->data;
    if (c->destroying)
        return;
    uint64_t now = uv_now(c->loop);
    for (gw_instance_t *i = c->insts, *next; i; i = next) {
        next = i->next;
        if (i->adopting && !i->terminating && now >= i->adopt_deadline) {
            GW_LOG_W("cloud_orphan",
                     "provider=%s model=%s instance=%s action=terminate "
                     "reason=no_join",
                     c->ops->kind, c->model->name, i->id);
            terminate(c, i);
        }
    }
    if (c->sweeping || (c->swept && now - c->listed_at < c->cfg->cloud_reap_interval_ms))
        return;
    c->listed_at = now;
    c->sweeping = c->ops->list(c) == 0;
}

void gw_cloud_run(gw_cloud_t *c)
{
    srand((unsigned)time(NULL) ^ (unsigned)(uintptr_t)c);
    uv_timer_init(c->loop, &c->sweep);
    c->sweep.data = c;
    uint64_t every = c->cfg->cloud_reap_interval_ms;
    /* candidates are checked against their deadline at least once a second */
    uv_timer_start(&c->sweep, on_sweep, 0, every < 1000 ? every : 1000);
}

static void on_sweep_closed(uv_handle_t *h)
{
    gw_cloud_t *c = h->data;
    gw_cloud_fini(c);
    c->ops->free(c);
}

void gw_cloud_destroy(gw_provider_t *p)
{
    gw_cloud_t *c = (gw_cloud_t *)p;
    c->destroying = 1;
    uv_timer_stop(&c->sweep);
    /* calls in flight or waiting: cancel; each callback (cancelled) unlinks its call */
    while (c->calls != NULL) {
        gw_cloud_call_t *call = c->calls;
        if (call->req != NULL) {
            gw_fetch_cancel(call->req);
        } else {
            uv_timer_stop(&call->timer);
            call_fail(call, 0, NULL, 0, "cancelled");
        }
    }
    while (c->insts != NULL) { /* candidates only: the pool's have all exited */
        gw_instance_t *i = c->insts;
        c->insts = i->next;
        free(i);
    }
    uv_close((uv_handle_t *)&c->sweep, on_sweep_closed);
}

int gw_cloud_http_retryable(long status, const char *err)
{
    (void)err;
    return status == 0 || status == 429 || status >= 500;
}

cJSON *gw_cloud_json(const char *body, size_t len)
{
    return body != NULL ? cJSON_ParseWithLength(body, len) : NULL;
}

/* ---- set-up ---- */

char *gw_cloud_read_file(const char *path, size_t max)
{
    FILE *f = fopen(path, "r");
    char *s = f ? malloc(max + 2) : NULL;
    size_t n = s ? fread(s, 1, max + 1, f) : 0;
    if (f)
        fclose(f);
    if (s == NULL || n == 0 || n > max) {
        free(s);
        return NULL;
    }
    if (s[n - 1] != '\n')
        s[n++] = '\n';
    s[n] = '\0';
    return s;
}

void gw_cloud_dns_name(const char *prefix, const char *name, char *out, size_t cap)
{
    char base[48];
    size_t j = (size_t)snprintf(base, sizeof base, "%s", prefix);
    for (const char *s = name; *s && j < sizeof base - 1; s++)
        base[j++] = isalnum((unsigned char)*s) ? (char)tolower((unsigned char)*s) : '-';
    base[j] = '\0';
    snprintf(out, cap, "%s-%08x", base, (unsigned)rand());
}

int gw_cloud_init(gw_cloud_t *c, const gw_cloud_ops_t *ops, uv_loop_t *loop, gw_fetch_t *fetch,
                  const gw_config_t *cfg, const gw_model_t *model, gw_provider_exit_cb on_exit,
                  int pems, char *err, size_t errcap)
{
    c->ops = ops;
    c->super.on_exit = on_exit;
    c->loop = loop;
    c->fetch = fetch;
    c->cfg = cfg;
    c->model = model;
    snprintf(c->join_url, sizeof c->join_url, "%s",
             cfg->cloud_join_url[0] ? cfg->cloud_join_url : cfg->join_listen);
    if (pems && ((c->ca = gw_cloud_read_file(cfg->tls_ca, 16384)) == NULL ||
                 (c->cert = gw_cloud_read_file(cfg->cloud_backend_cert, 16384)) == NULL ||
                 (c->key = gw_cloud_read_file(cfg->cloud_backend_key, 16384)) == NULL)) {
        snprintf(err, errcap,
                 "provider %s: tls_ca, cloud_backend_cert or cloud_backend_key: cannot read "
                 "(or empty, or over 16 KiB)",
                 ops->kind);
        gw_cloud_fini(c);
        return PROTO_ECONFIG;
    }
    return 0;
}

void gw_cloud_fini(gw_cloud_t *c)
{
    free(c->ca);
    free(c->cert);
    free(c->key);
    c->ca = c->cert = c->key = NULL;
}
