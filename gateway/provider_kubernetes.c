/* The Kubernetes provider: one Pod per backend, built from a pod template file the user
 * writes (JSON), through the API server's REST API (create, list, delete) over HTTPS with
 * libcurl on the loop (fetch.h).
 *
 * Pods rather than a Deployment's replica count: the autoscaler drains *a chosen* backend
 * before removing it; scaling a Deployment down would let Kubernetes pick an arbitrary pod,
 * maybe one busy with frames.
 *
 * The pod's first container gets the backend's arguments (its model, its name, the join URL,
 * the certificate files under k8s_tls_dir, which the template mounts from a Secret) and the
 * env POD_IP (downward API) and FG_PORT; its backend joins the gateway as the pod's name,
 * which gives the address to dial (provider.h: on_address). Labels: framegate-cluster,
 * framegate-model, framegate-backend (MODEL-instanceN). Nothing is leaked: a sweep at start
 * and every cloud_reap_interval_ms lists the cluster's pods and deletes those no live
 * instance here owns; stop() deletes. Calls are bounded (cloud_api_timeout_ms) and retried
 * with jittered backoff on 429, 5xx and transport errors. Auth: the bearer token file,
 * re-read at every call (projected tokens rotate), and the CA file. Loop thread only. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "fetch.h"
#include "log.h"
#include "provider.h"

#define MAX_ATTEMPTS 6
#define BACKOFF_BASE_MS 200
#define BACKOFF_MAX_MS 10000

typedef struct k8s k8s_t;

struct gw_instance {
    k8s_t *p;
    void *owner;
    char name[GW_MODEL_NAME_MAX + 32];
    char pod[64]; /* the pod's name: how its backend joins */
    int created, joined, stop_wanted, deleting, reported;
    gw_instance_t *next;
};

typedef struct call call_t;
typedef void (*call_cb)(k8s_t *p, call_t *c, int ok, long status, cJSON *doc, const char *err);
struct call {
    k8s_t *p;
    char method[8];
    char path[512];
    char *body;
    char action[32];
    int attempts;
    call_cb cb;
    gw_instance_t *inst;
    gw_fetch_req_t *req;
    uv_timer_t timer;
    call_t *next;
};

struct k8s {
    gw_provider_t super;
    uv_loop_t *loop;
    gw_fetch_t *fetch;
    const gw_config_t *cfg;
    const gw_model_t *model;
    char server[512];
    char ns[128];
    char join_url[1024];
    cJSON *tmpl;
    gw_instance_t *insts;
    int live;
    call_t *calls;
    uv_timer_t sweep;
    int sweeping, destroying;
    char last_error[512];
    uint64_t errors;
    uint64_t starts[1024]; /* ring of launch times (loop clock): cloud_max_starts_per_hour */
    int nstarts;
};

static void set_error(k8s_t *p, const char *action, const char *err)
{
    p->errors++;
    snprintf(p->last_error, sizeof p->last_error, "%s: %s", action, err);
    GW_LOG_W("cloud_api_error", "provider=kubernetes model=%s action=%s error=\"%s\"",
             p->model->name, action, err);
}

static void on_call_closed(uv_handle_t *h)
{
    call_t *c = h->data;
    free(c->body);
    free(c);
}

static void call_done(call_t *c)
{
    for (call_t **pp = &c->p->calls; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    uv_close((uv_handle_t *)&c->timer, on_call_closed);
}

static void call_send(call_t *c);
static void on_backoff(uv_timer_t *t)
{
    call_send(t->data);
}

static void on_fetched(void *arg, gw_fetch_result_t *res)
{
    call_t *c = arg;
    k8s_t *p = c->p;
    char err[600] = "";
    c->req = NULL;
    if (res->err == UV_ECANCELED || p->destroying) {
        c->cb(p, c, 0, 0, NULL, "cancelled");
        call_done(c);
        return;
    }
    cJSON *doc = res->body ? cJSON_ParseWithLength((const char *)res->body, res->len) : NULL;
    if (res->err == 0 && res->status >= 200 && res->status < 300) {
        c->cb(p, c, 1, res->status, doc, NULL);
        cJSON_Delete(doc);
        call_done(c);
        return;
    }
    if (res->err != 0) {
        snprintf(err, sizeof err, "%s", res->error[0] ? res->error : proto_strerror(res->err));
    } else {
        const cJSON *reason = cJSON_GetObjectItemCaseSensitive(doc, "reason");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(doc, "message");
        snprintf(err, sizeof err, "HTTP %ld %s: %s", res->status,
                 cJSON_IsString(reason) ? reason->valuestring : "",
                 cJSON_IsString(msg) ? msg->valuestring : "");
    }
    long status = res->err != 0 ? 0 : res->status;
    if (status != 404) /* a delete of a pod already gone is no error */
        set_error(p, c->action, err);
    if ((status == 0 || status == 429 || status >= 500) && ++c->attempts < MAX_ATTEMPTS) {
        uint64_t cap = (uint64_t)BACKOFF_BASE_MS << c->attempts;
        if (cap > BACKOFF_MAX_MS)
            cap = BACKOFF_MAX_MS;
        cJSON_Delete(doc);
        uv_timer_start(&c->timer, on_backoff, cap / 2 + (uint64_t)rand() % (cap / 2 + 1), 0);
        return;
    }
    c->cb(p, c, 0, status, doc, err);
    cJSON_Delete(doc);
    call_done(c);
}

static void call_send(call_t *c)
{
    k8s_t *p = c->p;
    char token[4096] = "", auth[4200], url[1200];
    /* re-read at every call: projected service-account tokens rotate */
    FILE *f = fopen(p->cfg->k8s_token_file, "r");
    size_t n = f ? fread(token, 1, sizeof token - 1, f) : 0;
    if (f)
        fclose(f);
    token[n] = '\0';
    token[strcspn(token, "\r\n")] = '\0';
    if (token[0] == '\0') {
        set_error(p, c->action, "no token in k8s_token_file");
        c->cb(p, c, 0, 0, NULL, "no token in k8s_token_file");
        call_done(c);
        return;
    }
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    snprintf(url, sizeof url, "%s%s", p->server, c->path);
    const char *headers[] = {auth, "Content-Type: application/json", "Accept: application/json"};
    gw_fetch_opts_t o = {.method = c->method,
                         .url = url,
                         .headers = headers,
                         .nheaders = 3,
                         .body = (const uint8_t *)c->body,
                         .body_len = c->body ? strlen(c->body) : 0,
                         .max_bytes = 8 << 20,
                         .connect_timeout_ms = p->cfg->cloud_api_timeout_ms,
                         .timeout_ms = p->cfg->cloud_api_timeout_ms,
                         .ca_file = p->cfg->k8s_ca_file};
    int rv = gw_fetch_start(p->fetch, &o, on_fetched, c, &c->req);
    if (rv != 0) {
        set_error(p, c->action, proto_strerror(rv));
        c->cb(p, c, 0, 0, NULL, proto_strerror(rv));
        call_done(c);
    }
}

/* Starts a call (takes body); its callback always runs later, on the loop. */
static int call_start(k8s_t *p, const char *method, const char *path, char *body,
                      const char *action, gw_instance_t *inst, call_cb cb)
{
    call_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        free(body);
        return PROTO_ENOMEM;
    }
    c->p = p;
    snprintf(c->method, sizeof c->method, "%s", method);
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(c->action, sizeof c->action, "%s", action);
    c->body = body;
    c->cb = cb;
    c->inst = inst;
    c->next = p->calls;
    p->calls = c;
    uv_timer_init(p->loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_backoff, 0, 0);
    return 0;
}

static gw_instance_t *find_pod(k8s_t *p, const char *pod)
{
    for (gw_instance_t *i = p->insts; i; i = i->next)
        if (strcmp(i->pod, pod) == 0)
            return i;
    return NULL;
}

static void report_exit(k8s_t *p, gw_instance_t *inst, const char *why)
{
    if (inst->reported)
        return;
    inst->reported = 1;
    for (gw_instance_t **pp = &p->insts; *pp; pp = &(*pp)->next)
        if (*pp == inst) {
            *pp = inst->next;
            break;
        }
    for (call_t *c = p->calls; c; c = c->next)
        if (c->inst == inst)
            c->inst = NULL;
    p->live--;
    p->super.on_exit(inst->owner, inst, 0, 0, why);
    free(inst);
}

static void on_deleted(k8s_t *p, call_t *c, int ok, long status, cJSON *doc, const char *err)
{
    (void)doc;
    gw_instance_t *inst = c->inst;
    if (inst == NULL)
        return;
    if (ok || status == 404) {
        GW_LOG_I("cloud_terminated", "provider=kubernetes backend=%s pod=%s", inst->name,
                 inst->pod);
        report_exit(p, inst, "pod deleted");
    } else {
        char why[700];
        snprintf(why, sizeof why, "pod delete failed (%s); the orphan sweep retries",
                 err ? err : "?");
        report_exit(p, inst, why);
    }
}

static void delete_pod(k8s_t *p, const char *pod, gw_instance_t *inst)
{
    char path[400];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods/%s", p->ns, pod);
    char *body = strdup("{\"propagationPolicy\":\"Background\"}");
    if (body == NULL || call_start(p, "DELETE", path, body, "DeletePod", inst, on_deleted) != 0)
        if (inst != NULL)
            report_exit(p, inst, "pod delete could not be sent; the orphan sweep retries");
}

static void on_created(k8s_t *p, call_t *c, int ok, long status, cJSON *doc, const char *err)
{
    (void)status;
    (void)doc;
    gw_instance_t *inst = c->inst;
    if (inst == NULL)
        return;
    if (!ok) {
        char why[700];
        snprintf(why, sizeof why, "pod create failed: %s", err ? err : "?");
        report_exit(p, inst, why);
        return;
    }
    inst->created = 1;
    GW_LOG_I("cloud_launched", "provider=kubernetes backend=%s pod=%s", inst->name, inst->pod);
    if (inst->stop_wanted) {
        inst->deleting = 1;
        delete_pod(p, inst->pod, inst);
    }
}

static cJSON *env_var(const char *name, const char *value)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", name);
    if (value != NULL) {
        cJSON_AddStringToObject(e, "value", value);
    } else { /* the pod's own address, from the downward API */
        cJSON *from = cJSON_AddObjectToObject(e, "valueFrom");
        cJSON *ref = cJSON_AddObjectToObject(from, "fieldRef");
        cJSON_AddStringToObject(ref, "fieldPath", "status.podIP");
    }
    return e;
}

/* The pod: the template with our name, labels, arguments and env. NULL on a bad template. */
static char *build_pod(k8s_t *p, const gw_instance_t *inst)
{
    cJSON *pod = cJSON_Duplicate(p->tmpl, 1);
    if (pod == NULL)
        return NULL;
    cJSON_DeleteItemFromObject(pod, "apiVersion");
    cJSON_DeleteItemFromObject(pod, "kind");
    cJSON_AddStringToObject(pod, "apiVersion", "v1");
    cJSON_AddStringToObject(pod, "kind", "Pod");
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(pod, "metadata");
    if (!cJSON_IsObject(meta))
        meta = cJSON_AddObjectToObject(pod, "metadata");
    cJSON_DeleteItemFromObject(meta, "name");
    cJSON_DeleteItemFromObject(meta, "generateName");
    cJSON_DeleteItemFromObject(meta, "namespace");
    cJSON_AddStringToObject(meta, "name", inst->pod);
    cJSON_AddStringToObject(meta, "namespace", p->ns);
    cJSON *labels = cJSON_GetObjectItemCaseSensitive(meta, "labels");
    if (!cJSON_IsObject(labels))
        labels = cJSON_AddObjectToObject(meta, "labels");
    cJSON_DeleteItemFromObject(labels, "framegate-cluster");
    cJSON_DeleteItemFromObject(labels, "framegate-model");
    cJSON_DeleteItemFromObject(labels, "framegate-backend");
    cJSON_AddStringToObject(labels, "framegate-cluster", p->cfg->cloud_cluster);
    cJSON_AddStringToObject(labels, "framegate-model", p->model->name);
    cJSON_AddStringToObject(labels, "framegate-backend", inst->name);
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(pod, "spec");
    cJSON *ctrs = cJSON_GetObjectItemCaseSensitive(spec, "containers");
    cJSON *ctr = cJSON_GetArrayItem(ctrs, 0);
    if (!cJSON_IsObject(ctr)) {
        cJSON_Delete(pod);
        return NULL;
    }
    cJSON_DeleteItemFromObject(spec, "restartPolicy");
    cJSON_AddStringToObject(spec, "restartPolicy", "Never"); /* a dead backend is replaced */
    cJSON *env = cJSON_GetObjectItemCaseSensitive(ctr, "env");
    if (!cJSON_IsArray(env))
        env = cJSON_AddArrayToObject(ctr, "env");
    char port[16], listen[64], advertise[64], f[3][GW_CONFIG_STR_MAX + 16];
    snprintf(port, sizeof port, "%d", p->cfg->cloud_backend_port);
    cJSON_AddItemToArray(env, env_var("POD_IP", NULL));
    cJSON_AddItemToArray(env, env_var("FG_PORT", port));
    snprintf(listen, sizeof listen, "tls+tcp://0.0.0.0:$(FG_PORT)");
    snprintf(advertise, sizeof advertise, "tls+tcp://$(POD_IP):$(FG_PORT)");
    snprintf(f[0], sizeof f[0], "%s/ca.crt", p->cfg->k8s_tls_dir);
    snprintf(f[1], sizeof f[1], "%s/tls.crt", p->cfg->k8s_tls_dir);
    snprintf(f[2], sizeof f[2], "%s/tls.key", p->cfg->k8s_tls_dir);
    const char *args[] = {"--model-name", p->model->name, "--instance",  inst->pod,
                          "--listen",     listen,         "--advertise", advertise,
                          "--join",       p->join_url,    "--tls-ca",    f[0],
                          "--tls-cert",   f[1],           "--tls-key",   f[2]};
    cJSON_DeleteItemFromObject(ctr, "args");
    cJSON *a = cJSON_AddArrayToObject(ctr, "args");
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(args[i]));
    char extra[GW_CONFIG_STR_MAX];
    snprintf(extra, sizeof extra, "%s", p->model->backend_args);
    for (char *save = NULL, *w = strtok_r(extra, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
        cJSON_AddItemToArray(a, cJSON_CreateString(w));
    char *text = cJSON_PrintUnformatted(pod);
    cJSON_Delete(pod);
    return text;
}

static int k8s_start(gw_provider_t *gp, const char *name, void *owner, gw_instance_t **out,
                     char *addr, size_t addr_cap)
{
    k8s_t *p = (k8s_t *)gp;
    (void)addr_cap;
    uint64_t now = uv_now(p->loop);
    int recent = 0;
    for (int i = 0; i < p->nstarts && i < 1024; i++)
        recent += now - p->starts[i] < 3600000;
    if (recent >= p->cfg->cloud_max_starts_per_hour) { /* a runaway-bill guard */
        snprintf(p->last_error, sizeof p->last_error,
                 "cloud_max_starts_per_hour (%d) reached: no new instance for now",
                 p->cfg->cloud_max_starts_per_hour);
        return PROTO_ENOBACKEND;
    }
    p->starts[p->nstarts++ % 1024] = now;
    if (p->nstarts >= 2048)
        p->nstarts -= 1024;
    gw_instance_t *inst = calloc(1, sizeof *inst);
    if (inst == NULL)
        return PROTO_ENOMEM;
    inst->p = p;
    inst->owner = owner;
    snprintf(inst->name, sizeof inst->name, "%s", name);
    /* a DNS-1123 label: lower case, digits and '-', at most 63 */
    char base[48];
    size_t j = 0;
    for (const char *s = name; *s && j < sizeof base - 1; s++)
        base[j++] = isalnum((unsigned char)*s) ? (char)tolower((unsigned char)*s) : '-';
    base[j] = '\0';
    snprintf(inst->pod, sizeof inst->pod, "%s-%08x", base, (unsigned)rand());
    char path[300];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods", p->ns);
    char *body = build_pod(p, inst);
    if (body == NULL) {
        free(inst);
        return PROTO_EINVAL;
    }
    inst->next = p->insts;
    p->insts = inst;
    p->live++;
    if (call_start(p, "POST", path, body, "CreatePod", inst, on_created) != 0) {
        p->insts = inst->next;
        p->live--;
        free(inst);
        return PROTO_ENOMEM;
    }
    addr[0] = '\0'; /* known when its backend joins */
    *out = inst;
    GW_LOG_I("cloud_launch", "provider=kubernetes backend=%s pod=%s namespace=%s", name, inst->pod,
             p->ns);
    return 0;
}

static void k8s_stop(gw_provider_t *gp, gw_instance_t *inst, int force)
{
    k8s_t *p = (k8s_t *)gp;
    (void)force;
    if (inst->stop_wanted)
        return;
    inst->stop_wanted = 1;
    if (!inst->created)
        return; /* the create is in flight: deleted when it answers */
    inst->deleting = 1;
    delete_pod(p, inst->pod, inst);
}

static void k8s_instance_id(gw_provider_t *gp, gw_instance_t *inst, char *buf, size_t cap)
{
    (void)gp;
    snprintf(buf, cap, "%s", inst->pod);
}

static int k8s_live(gw_provider_t *gp)
{
    return ((k8s_t *)gp)->live;
}

static int k8s_joined(gw_provider_t *gp, const char *name, const char *addr)
{
    k8s_t *p = (k8s_t *)gp;
    gw_instance_t *inst = find_pod(p, name);
    if (inst == NULL)
        return PROTO_EINVAL;
    if (!inst->joined && !inst->stop_wanted) {
        inst->joined = 1;
        GW_LOG_I("cloud_joined", "provider=kubernetes backend=%s pod=%s addr=%s", inst->name,
                 inst->pod, addr);
        p->super.on_address(inst->owner, inst, addr);
    }
    return 0;
}

static const char *k8s_api_error(gw_provider_t *gp, uint64_t *errors)
{
    k8s_t *p = (k8s_t *)gp;
    if (errors)
        *errors = p->errors;
    return p->last_error;
}

static void on_listed(k8s_t *p, call_t *c, int ok, long status, cJSON *doc, const char *err)
{
    (void)c;
    (void)status;
    (void)err;
    p->sweeping = 0;
    if (!ok || p->destroying)
        return;
    const cJSON *item;
    int n = 0, orphans = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(doc, "items"))
    {
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(item, "metadata");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(meta, "name");
        n++;
        if (!cJSON_IsString(name) || find_pod(p, name->valuestring) != NULL ||
            cJSON_GetObjectItemCaseSensitive(meta, "deletionTimestamp") != NULL)
            continue;
        GW_LOG_W("cloud_orphan", "provider=kubernetes model=%s pod=%s action=delete",
                 p->model->name, name->valuestring);
        delete_pod(p, name->valuestring, NULL);
        orphans++;
    }
    if (orphans > 0)
        GW_LOG_I("cloud_sweep", "provider=kubernetes model=%s pods=%d orphans=%d", p->model->name,
                 n, orphans);
}

static void on_sweep(uv_timer_t *t)
{
    k8s_t *p = t->data;
    if (p->sweeping || p->destroying)
        return;
    char path[600];
    snprintf(path, sizeof path,
             "/api/v1/namespaces/%s/pods?labelSelector=framegate-cluster%%3D%s%%2C"
             "framegate-model%%3D%s",
             p->ns, p->cfg->cloud_cluster, p->model->name);
    p->sweeping = call_start(p, "GET", path, NULL, "ListPods", NULL, on_listed) == 0;
}

static void on_sweep_closed(uv_handle_t *h)
{
    k8s_t *p = h->data;
    cJSON_Delete(p->tmpl);
    free(p);
}

static void k8s_destroy(gw_provider_t *gp)
{
    k8s_t *p = (k8s_t *)gp;
    p->destroying = 1;
    uv_timer_stop(&p->sweep);
    while (p->calls != NULL) {
        call_t *c = p->calls;
        if (c->req != NULL) {
            gw_fetch_cancel(c->req);
        } else {
            uv_timer_stop(&c->timer);
            c->cb(p, c, 0, 0, NULL, "cancelled");
            call_done(c);
        }
    }
    uv_close((uv_handle_t *)&p->sweep, on_sweep_closed);
}

static const gw_provider_ops_t k8s_ops = {
    .kind = "kubernetes",
    .start = k8s_start,
    .stop = k8s_stop,
    .instance_id = k8s_instance_id,
    .live = k8s_live,
    .destroy = k8s_destroy,
    .joined = k8s_joined,
    .api_error = k8s_api_error,
};

int gw_provider_kubernetes_create(gw_provider_t **out, uv_loop_t *loop, gw_fetch_t *fetch,
                                  const gw_config_t *cfg, const gw_model_t *model,
                                  gw_provider_exit_cb on_exit, char *err, size_t errcap)
{
    k8s_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return PROTO_ENOMEM;
    p->super.ops = &k8s_ops;
    p->super.on_exit = on_exit;
    p->loop = loop;
    p->fetch = fetch;
    p->cfg = cfg;
    p->model = model;
    const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
    if (cfg->k8s_server[0])
        snprintf(p->server, sizeof p->server, "%s", cfg->k8s_server);
    else if (host && *host)
        snprintf(p->server, sizeof p->server,
                 strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
                 port && *port ? port : "443");
    size_t l = strlen(p->server);
    if (l > 0 && p->server[l - 1] == '/')
        p->server[l - 1] = '\0';
    if (cfg->k8s_namespace[0]) {
        snprintf(p->ns, sizeof p->ns, "%s", cfg->k8s_namespace);
    } else {
        FILE *f = fopen("/var/run/secrets/kubernetes.io/serviceaccount/namespace", "r");
        if (f == NULL || fgets(p->ns, sizeof p->ns, f) == NULL)
            snprintf(p->ns, sizeof p->ns, "default");
        if (f)
            fclose(f);
        p->ns[strcspn(p->ns, "\r\n")] = '\0';
    }
    FILE *f = fopen(cfg->k8s_pod_template, "r");
    char *text = f ? calloc(1, 65536) : NULL;
    size_t n = text ? fread(text, 1, 65535, f) : 0;
    if (f)
        fclose(f);
    p->tmpl = n > 0 && n < 65535 ? cJSON_Parse(text) : NULL;
    free(text);
    if (p->server[0] == '\0' || p->tmpl == NULL) {
        snprintf(err, errcap, "provider kubernetes: %s",
                 p->server[0] == '\0'
                     ? "no API server (k8s_server, or KUBERNETES_SERVICE_HOST in a pod)"
                     : "k8s_pod_template: cannot read it as a JSON Pod (at most 64 KiB)");
        cJSON_Delete(p->tmpl);
        free(p);
        return PROTO_ECONFIG;
    }
    snprintf(p->join_url, sizeof p->join_url, "%s",
             cfg->cloud_join_url[0] ? cfg->cloud_join_url : cfg->join_listen);
    srand((unsigned)time(NULL) ^ (unsigned)(uintptr_t)p);
    uv_timer_init(loop, &p->sweep);
    p->sweep.data = p;
    uv_timer_start(&p->sweep, on_sweep, 0, cfg->cloud_reap_interval_ms);
    GW_LOG_I("cloud_provider", "provider=kubernetes model=%s server=%s namespace=%s cluster=%s",
             model->name, p->server, p->ns, cfg->cloud_cluster);
    *out = &p->super;
    return 0;
}
