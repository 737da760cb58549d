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
#include "provider_cloud.h"

typedef struct {
    gw_cloud_t c; /* first */
    char server[512];
    char ns[128];
    cJSON *tmpl;
} k8s_t;

static int k8s_send(gw_cloud_t *c, gw_cloud_call_t *call)
{
    k8s_t *p = (k8s_t *)c;
    char token[4096] = "", auth[4200], url[1600];
    /* re-read at every call: projected service-account tokens rotate */
    FILE *f = fopen(c->cfg->k8s_token_file, "r");
    size_t n = f ? fread(token, 1, sizeof token - 1, f) : 0;
    if (f)
        fclose(f);
    token[n] = '\0';
    token[strcspn(token, "\r\n")] = '\0';
    if (token[0] == '\0') {
        snprintf(c->last_error, sizeof c->last_error, "%s: no token in k8s_token_file",
                 call->action);
        return PROTO_ENOTFOUND;
    }
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    snprintf(url, sizeof url, "%s%s", p->server, call->path);
    const char *headers[] = {auth, "Content-Type: application/json", "Accept: application/json"};
    gw_fetch_opts_t o = {
        .url = url, .headers = headers, .nheaders = 3, .ca_file = c->cfg->k8s_ca_file};
    return gw_cloud_fetch(c, call, &o);
}

static void k8s_error_text(long status, const char *body, size_t len, char *out, size_t cap)
{
    cJSON *doc = gw_cloud_json(body, len);
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(doc, "reason");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(doc, "message");
    snprintf(out, cap, "HTTP %ld %s: %s", status, cJSON_IsString(reason) ? reason->valuestring : "",
             cJSON_IsString(msg) ? msg->valuestring : "");
    cJSON_Delete(doc);
}

static void on_deleted(gw_cloud_t *c, gw_cloud_call_t *call, int ok, long status, const char *body,
                       size_t len, const char *err)
{
    (void)body, (void)len;
    gw_cloud_terminated(c, call->inst, ok || status == 404, err);
}

static int k8s_terminate(gw_cloud_t *c, const char *pod, gw_instance_t *inst)
{
    k8s_t *p = (k8s_t *)c;
    char path[400];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods/%s", p->ns, pod);
    char *body = strdup("{\"propagationPolicy\":\"Background\"}");
    if (body == NULL)
        return PROTO_ENOMEM;
    return gw_cloud_call(c, "DELETE", path, body, strlen(body), "DeletePod", inst, on_deleted, 0);
}

static void on_created(gw_cloud_t *c, gw_cloud_call_t *call, int ok, long status, const char *body,
                       size_t len, const char *err)
{
    (void)status, (void)body, (void)len;
    char why[700];
    if (call->inst == NULL)
        return;
    if (ok) {
        gw_cloud_created(c, call->inst, NULL);
    } else {
        snprintf(why, sizeof why, "pod create failed: %s", err ? err : "?");
        gw_cloud_exit(c, call->inst, why);
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
    cJSON_AddStringToObject(meta, "name", inst->key);
    cJSON_AddStringToObject(meta, "namespace", p->ns);
    cJSON *labels = cJSON_GetObjectItemCaseSensitive(meta, "labels");
    if (!cJSON_IsObject(labels))
        labels = cJSON_AddObjectToObject(meta, "labels");
    cJSON_DeleteItemFromObject(labels, "framegate-cluster");
    cJSON_DeleteItemFromObject(labels, "framegate-model");
    cJSON_DeleteItemFromObject(labels, "framegate-backend");
    cJSON_AddStringToObject(labels, "framegate-cluster", p->c.cfg->cloud_cluster);
    cJSON_AddStringToObject(labels, "framegate-model", p->c.model->name);
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
    snprintf(port, sizeof port, "%d", p->c.cfg->cloud_backend_port);
    cJSON_AddItemToArray(env, env_var("POD_IP", NULL));
    cJSON_AddItemToArray(env, env_var("FG_PORT", port));
    snprintf(listen, sizeof listen, "tls+tcp://0.0.0.0:$(FG_PORT)");
    snprintf(advertise, sizeof advertise, "tls+tcp://$(POD_IP):$(FG_PORT)");
    snprintf(f[0], sizeof f[0], "%s/ca.crt", p->c.cfg->k8s_tls_dir);
    snprintf(f[1], sizeof f[1], "%s/tls.crt", p->c.cfg->k8s_tls_dir);
    snprintf(f[2], sizeof f[2], "%s/tls.key", p->c.cfg->k8s_tls_dir);
    const char *args[] = {"--model-name", p->c.model->name,
                          "--instance",   inst->key,
                          "--listen",     listen,
                          "--advertise",  advertise,
                          "--join",       p->c.join_url,
                          "--tls-ca",     f[0],
                          "--tls-cert",   f[1],
                          "--tls-key",    f[2]};
    cJSON_DeleteItemFromObject(ctr, "args");
    cJSON *a = cJSON_AddArrayToObject(ctr, "args");
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(args[i]));
    char extra[GW_CONFIG_STR_MAX];
    snprintf(extra, sizeof extra, "%s", p->c.model->backend_args);
    for (char *save = NULL, *w = strtok_r(extra, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
        cJSON_AddItemToArray(a, cJSON_CreateString(w));
    char *text = cJSON_PrintUnformatted(pod);
    cJSON_Delete(pod);
    return text;
}

static int k8s_launch(gw_cloud_t *c, gw_instance_t *inst)
{
    k8s_t *p = (k8s_t *)c;
    /* a DNS-1123 label: lower case, digits and '-', at most 63 */
    gw_cloud_dns_name("", inst->name, inst->key, sizeof inst->key);
    snprintf(inst->id, sizeof inst->id, "%s", inst->key);
    char path[300];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods", p->ns);
    char *body = build_pod(p, inst);
    if (body == NULL)
        return PROTO_EINVAL;
    GW_LOG_I("cloud_launch_kubernetes", "backend=%s pod=%s namespace=%s", inst->name, inst->key,
             p->ns);
    return gw_cloud_call(c, "POST", path, body, strlen(body), "CreatePod", inst, on_created, 0);
}

static void on_listed(gw_cloud_t *c, gw_cloud_call_t *call, int ok, long status, const char *body,
                      size_t len, const char *err)
{
    (void)call, (void)status;
    cJSON *doc = ok ? gw_cloud_json(body, len) : NULL;
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(doc, "items");
    int n = 0;
    gw_cloud_found_t *found = calloc((size_t)cJSON_GetArraySize(items) + 1, sizeof *found);
    const cJSON *item;
    cJSON_ArrayForEach(item, items)
    {
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(item, "metadata");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(meta, "name");
        if (found == NULL || !cJSON_IsString(name) ||
            cJSON_GetObjectItemCaseSensitive(meta, "deletionTimestamp") != NULL)
            continue;
        snprintf(found[n].id, sizeof found[n].id, "%s", name->valuestring);
        snprintf(found[n].key, sizeof found[n].key, "%s", name->valuestring);
        n++;
    }
    gw_cloud_listed(c, ok && found != NULL, found, n, err);
    free(found);
    cJSON_Delete(doc);
}

static int k8s_list(gw_cloud_t *c)
{
    k8s_t *p = (k8s_t *)c;
    char path[600];
    snprintf(path, sizeof path,
             "/api/v1/namespaces/%s/pods?labelSelector=framegate-cluster%%3D%s%%2C"
             "framegate-model%%3D%s",
             p->ns, c->cfg->cloud_cluster, c->model->name);
    return gw_cloud_call(c, "GET", path, NULL, 0, "ListPods", NULL, on_listed, 0);
}

static void k8s_free(gw_cloud_t *c)
{
    k8s_t *p = (k8s_t *)c;
    cJSON_Delete(p->tmpl);
    free(p);
}

static const gw_cloud_ops_t k8s_cloud_ops = {
    .kind = "kubernetes",
    .send = k8s_send,
    .error_text = k8s_error_text,
    .retryable = gw_cloud_http_retryable,
    .launch = k8s_launch,
    .terminate = k8s_terminate,
    .list = k8s_list,
    .free = k8s_free,
};

static const gw_provider_ops_t k8s_ops = GW_CLOUD_PROVIDER_OPS("kubernetes");

int gw_provider_kubernetes_create(gw_provider_t **out, uv_loop_t *loop, gw_fetch_t *fetch,
                                  const gw_config_t *cfg, const gw_model_t *model,
                                  gw_provider_exit_cb on_exit, char *err, size_t errcap)
{
    k8s_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return PROTO_ENOMEM;
    p->c.super.ops = &k8s_ops;
    gw_cloud_init(&p->c, &k8s_cloud_ops, loop, fetch, cfg, model, on_exit, 0, err, errcap);
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
    char *text = gw_cloud_read_file(cfg->k8s_pod_template, 65535);
    p->tmpl = text != NULL ? cJSON_Parse(text) : NULL;
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
    gw_cloud_run(&p->c);
    GW_LOG_I("cloud_provider", "provider=kubernetes model=%s server=%s namespace=%s cluster=%s",
             model->name, p->server, p->ns, cfg->cloud_cluster);
    *out = &p->c.super;
    return 0;
}
