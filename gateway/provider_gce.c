/* The GCE provider: one Compute Engine instance per backend, through the Compute API
 * (instances.insert / get / delete, zone operations polled until DONE) over HTTPS with libcurl
 * on the loop (fetch.h). The instance runs the same script as an EC2 instance's user data
 * (gw_ec2_user_data) as its startup-script metadata; its backend joins the gateway as the
 * instance's name, which gives the address to dial (provider.h: on_address). Labels:
 * framegate-cluster, framegate-model, framegate-backend. Nothing is leaked: a sweep at start
 * and every cloud_reap_interval_ms lists the cluster's instances and deletes those no live
 * instance here owns; stop() deletes. Calls are bounded and retried with jittered backoff on
 * 429, 5xx and transport errors.
 *
 * Auth: a service-account key file (gce_key_file, else GOOGLE_APPLICATION_CREDENTIALS) ->
 * a JWT signed RS256 with mbedTLS (gw_gce_jwt) -> an access token from its token_uri, cached
 * until a minute before it expires; without a key file, the metadata server's token (on GCE).
 * Loop thread only, except the pure functions. */
#include <ctype.h>
#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
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
#include "provider_ec2.h"
#include "provider_gce.h"

#define MAX_ATTEMPTS 6
#define BACKOFF_BASE_MS 200
#define BACKOFF_MAX_MS 10000
#define SCOPE "https://www.googleapis.com/auth/compute"
#define AUD "https://oauth2.googleapis.com/token"

/* ---- pure: base64url and the RS256 JWT ---- */

int gw_gce_b64url(const void *in, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    if (mbedtls_base64_encode((unsigned char *)out, cap, &n, in, len) != 0)
        return -1;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (out[i] == '=')
            break;
        out[j++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    out[j] = '\0';
    return (int)j;
}

int gw_gce_rs256(const char *key_pem, const char *input, char *out, size_t cap)
{
    mbedtls_pk_context pk;
    mbedtls_entropy_context ent;
    mbedtls_ctr_drbg_context drbg;
    unsigned char hash[32], sig[1024];
    size_t siglen = 0;
    int rv = PROTO_EINVAL;
    mbedtls_pk_init(&pk);
    mbedtls_entropy_init(&ent);
    mbedtls_ctr_drbg_init(&drbg);
    /* the RNG only blinds the RSA operation: PKCS#1 v1.5 signatures are deterministic */
    if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, NULL, 0) == 0 &&
        mbedtls_pk_parse_key(&pk, (const unsigned char *)key_pem, strlen(key_pem) + 1, NULL, 0) ==
            0 &&
        mbedtls_pk_can_do(&pk, MBEDTLS_PK_RSA) && mbedtls_pk_get_len(&pk) <= sizeof sig &&
        mbedtls_sha256_ret((const unsigned char *)input, strlen(input), hash, 0) == 0 &&
        mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, hash, sizeof hash, sig, &siglen,
                        mbedtls_ctr_drbg_random, &drbg) == 0)
        rv = gw_gce_b64url(sig, siglen, out, cap) < 0 ? PROTO_ENOSPC : 0;
    mbedtls_pk_free(&pk);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&ent);
    return rv;
}

int gw_gce_jwt(const char *key_pem, const char *kid, const char *iss, const char *scope,
               const char *aud, long long iat, char *out, size_t cap)
{
    char header[256], claims[1024], h64[400], c64[1400], input[1900], sig[700];
    if (kid != NULL && kid[0])
        snprintf(header, sizeof header, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", kid);
    else
        snprintf(header, sizeof header, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
    int n = snprintf(claims, sizeof claims,
                     "{\"iss\":\"%s\",\"scope\":\"%s\",\"aud\":\"%s\",\"exp\":%lld,\"iat\":%lld}",
                     iss, scope, aud, iat + 3600, iat);
    if (n < 0 || (size_t)n >= sizeof claims ||
        gw_gce_b64url(header, strlen(header), h64, sizeof h64) < 0 ||
        gw_gce_b64url(claims, strlen(claims), c64, sizeof c64) < 0)
        return PROTO_ENOSPC;
    snprintf(input, sizeof input, "%s.%s", h64, c64);
    int rv = gw_gce_rs256(key_pem, input, sig, sizeof sig);
    if (rv != 0)
        return rv;
    n = snprintf(out, cap, "%s.%s", input, sig);
    return n < 0 || (size_t)n >= cap ? PROTO_ENOSPC : 0;
}

/* ---- the provider ---- */

typedef struct gce gce_t;

struct gw_instance {
    gce_t *p;
    void *owner;
    char name[GW_MODEL_NAME_MAX + 32];
    char vm[64]; /* the instance's name: how its backend joins */
    int created, joined, stop_wanted, reported;
    gw_instance_t *next;
};

typedef struct call call_t;
typedef void (*call_cb)(gce_t *p, call_t *c, int ok, long status, cJSON *doc, const char *err);
struct call {
    gce_t *p;
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

struct gce {
    gw_provider_t super;
    uv_loop_t *loop;
    gw_fetch_t *fetch;
    const gw_config_t *cfg;
    const gw_model_t *model;
    char endpoint[1024]; /* .../compute/v1/projects/P/zones/Z */
    char join_url[1024];
    char *ca, *cert, *key; /* PEM texts for the startup script */
    /* auth: a service-account key (JWT -> token) or the metadata server */
    char *sa_key; /* PEM private key; NULL = metadata server */
    char sa_email[256], sa_kid[128], token_url[512], metadata_url[256];
    char access_token[2048];
    time_t token_expire;
    int token_busy;
    gw_fetch_req_t *token_req;
    char token_body[2600]; /* the token request's body: fetch borrows it until done */
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

static void set_error(gce_t *p, const char *action, const char *err)
{
    p->errors++;
    snprintf(p->last_error, sizeof p->last_error, "%s: %s", action, err);
    GW_LOG_W("cloud_api_error", "provider=gce model=%s action=%s error=\"%s\"", p->model->name,
             action, err);
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
    gce_t *p = c->p;
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
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
        const cJSON *reason = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "errors"), 0), "reason");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
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

static void token_refresh(gce_t *p);

static void call_send(call_t *c)
{
    gce_t *p = c->p;
    char auth[2200], url[1600];
    token_refresh(p);
    if (p->access_token[0] == '\0' || (p->token_expire != 0 && p->token_expire <= time(NULL))) {
        if (++c->attempts > 50) { /* no token within ~10 s */
            char why[600];
            snprintf(why, sizeof why, "no access token (%s)",
                     p->last_error[0] ? p->last_error : "the token endpoint did not answer");
            c->cb(p, c, 0, 0, NULL, why);
            call_done(c);
            return;
        }
        uv_timer_start(&c->timer, on_backoff, 200, 0);
        return;
    }
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", p->access_token);
    snprintf(url, sizeof url, "%s%s", p->endpoint, c->path);
    const char *headers[] = {auth, "Content-Type: application/json"};
    gw_fetch_opts_t o = {.method = c->method,
                         .url = url,
                         .headers = headers,
                         .nheaders = 2,
                         .body = (const uint8_t *)c->body,
                         .body_len = c->body ? strlen(c->body) : 0,
                         .max_bytes = 8 << 20,
                         .connect_timeout_ms = p->cfg->cloud_api_timeout_ms,
                         .timeout_ms = p->cfg->cloud_api_timeout_ms,
                         .ca_file = p->cfg->gce_ca_file};
    int rv = gw_fetch_start(p->fetch, &o, on_fetched, c, &c->req);
    if (rv != 0) {
        set_error(p, c->action, proto_strerror(rv));
        c->cb(p, c, 0, 0, NULL, proto_strerror(rv));
        call_done(c);
    }
}

/* Starts a call (takes body); its callback always runs later, on the loop. */
static int call_start(gce_t *p, const char *method, const char *path, char *body,
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

static gw_instance_t *find_vm(gce_t *p, const char *vm)
{
    for (gw_instance_t *i = p->insts; i; i = i->next)
        if (strcmp(i->vm, vm) == 0)
            return i;
    return NULL;
}

static void report_exit(gce_t *p, gw_instance_t *inst, const char *why)
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

/* ---- access token ---- */

static void on_token(void *arg, gw_fetch_result_t *res)
{
    gce_t *p = arg;
    p->token_req = NULL;
    p->token_busy = 0;
    if (res->err == UV_ECANCELED)
        return;
    cJSON *doc = res->body ? cJSON_ParseWithLength((const char *)res->body, res->len) : NULL;
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(doc, "access_token");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(doc, "expires_in");
    if (res->err == 0 && res->status == 200 && cJSON_IsString(tok) &&
        strlen(tok->valuestring) < sizeof p->access_token) {
        snprintf(p->access_token, sizeof p->access_token, "%s", tok->valuestring);
        p->token_expire = time(NULL) + (cJSON_IsNumber(exp) ? (time_t)exp->valuedouble : 3600);
        GW_LOG_I("cloud_credentials", "provider=gce source=%s expires_in=%d",
                 p->sa_key ? "service_account" : "metadata",
                 cJSON_IsNumber(exp) ? exp->valueint : -1);
    } else {
        char e[400];
        const cJSON *ed = cJSON_GetObjectItemCaseSensitive(doc, "error_description");
        const cJSON *er = cJSON_GetObjectItemCaseSensitive(doc, "error");
        if (res->err != 0)
            snprintf(e, sizeof e, "%s", res->error[0] ? res->error : proto_strerror(res->err));
        else
            snprintf(e, sizeof e, "HTTP %ld %s: %s", res->status,
                     cJSON_IsString(er) ? er->valuestring : "",
                     cJSON_IsString(ed) ? ed->valuestring : "");
        set_error(p, "token", e);
    }
    cJSON_Delete(doc);
}

/* Gets a token when there is none or it expires within a minute (the old one serves until
 * the new one comes). */
static void token_refresh(gce_t *p)
{
    if (p->token_busy || p->destroying)
        return;
    if (p->access_token[0] && p->token_expire - time(NULL) > 60)
        return;
    p->token_busy = 1;
    int rv;
    if (p->sa_key != NULL) {
        char jwt[2400], *body = p->token_body;
        rv = gw_gce_jwt(p->sa_key, p->sa_kid, p->sa_email, SCOPE, AUD, (long long)time(NULL), jwt,
                        sizeof jwt);
        if (rv != 0) {
            set_error(p, "token", "the JWT could not be signed (private_key)");
            p->token_busy = 0;
            return;
        }
        snprintf(body, sizeof p->token_body,
                 "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-bearer&"
                 "assertion=%s",
                 jwt);
        const char *headers[] = {"Content-Type: application/x-www-form-urlencoded"};
        gw_fetch_opts_t o = {.method = "POST",
                             .url = p->token_url,
                             .headers = headers,
                             .nheaders = 1,
                             .body = (const uint8_t *)body,
                             .body_len = strlen(body),
                             .max_bytes = 65536,
                             .connect_timeout_ms = p->cfg->cloud_api_timeout_ms,
                             .timeout_ms = p->cfg->cloud_api_timeout_ms,
                             .ca_file = p->cfg->gce_ca_file};
        rv = gw_fetch_start(p->fetch, &o, on_token, p, &p->token_req);
    } else {
        char url[400];
        snprintf(url, sizeof url, "%s/computeMetadata/v1/instance/service-accounts/default/token",
                 p->metadata_url);
        const char *headers[] = {"Metadata-Flavor: Google"};
        gw_fetch_opts_t o = {.url = url,
                             .headers = headers,
                             .nheaders = 1,
                             .max_bytes = 65536,
                             .connect_timeout_ms = 2000,
                             .timeout_ms = p->cfg->cloud_api_timeout_ms};
        rv = gw_fetch_start(p->fetch, &o, on_token, p, &p->token_req);
    }
    if (rv != 0) {
        set_error(p, "token", proto_strerror(rv));
        p->token_busy = 0;
    }
}

/* ---- operations ---- */

static void poll_op(gce_t *p, const char *op, gw_instance_t *inst, call_cb cb);

/* An Operation answer: done (with its error, if any) or polled again in a second. Returns 1
 * when done; err gets the operation's error text ("" if none). */
static int op_done(const cJSON *doc, char *err, size_t cap)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(doc, "status");
    err[0] = '\0';
    if (!cJSON_IsString(st) || strcmp(st->valuestring, "DONE") != 0)
        return 0;
    const cJSON *e = cJSON_GetArrayItem(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "error"), "errors"),
        0);
    if (e != NULL) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
        snprintf(err, cap, "%s: %s", cJSON_IsString(code) ? code->valuestring : "ERROR",
                 cJSON_IsString(msg) ? msg->valuestring : "");
    }
    return 1;
}

static void on_deleted(gce_t *p, call_t *c, int ok, long status, cJSON *doc, const char *err)
{
    gw_instance_t *inst = c->inst;
    char oerr[400];
    if (ok && !op_done(doc, oerr, sizeof oerr)) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, "name");
        if (cJSON_IsString(name)) {
            poll_op(p, name->valuestring, inst, on_deleted);
            return;
        }
    }
    if (inst == NULL)
        return;
    if ((ok && oerr[0] == '\0') || status == 404) {
        GW_LOG_I("cloud_terminated", "provider=gce backend=%s instance=%s", inst->name, inst->vm);
        report_exit(p, inst, "instance deleted");
    } else {
        char why[800];
        snprintf(why, sizeof why, "instance delete failed (%s); the orphan sweep retries",
                 ok    ? oerr
                 : err ? err
                       : "?");
        report_exit(p, inst, why);
    }
}

static void delete_vm(gce_t *p, const char *vm, gw_instance_t *inst)
{
    char path[300];
    snprintf(path, sizeof path, "/instances/%s", vm);
    if (call_start(p, "DELETE", path, NULL, "instances.delete", inst, on_deleted) != 0 &&
        inst != NULL)
        report_exit(p, inst, "instance delete could not be sent; the orphan sweep retries");
}

static void on_inserted(gce_t *p, call_t *c, int ok, long status, cJSON *doc, const char *err)
{
    (void)status;
    gw_instance_t *inst = c->inst;
    char oerr[400] = "";
    if (inst == NULL)
        return;
    if (ok && !op_done(doc, oerr, sizeof oerr)) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, "name");
        if (cJSON_IsString(name)) {
            if (!inst->created)
                GW_LOG_I("cloud_launched", "provider=gce backend=%s instance=%s operation=%s",
                         inst->name, inst->vm, name->valuestring);
            inst->created = 1; /* it exists (or will): a stop from now on deletes it */
            if (inst->stop_wanted) {
                delete_vm(p, inst->vm, inst);
                return;
            }
            poll_op(p, name->valuestring, inst, on_inserted);
            return;
        }
    }
    if (!ok || oerr[0] != '\0') {
        char why[800];
        snprintf(why, sizeof why, "instances.insert failed: %s", ok ? oerr : err ? err : "?");
        if (ok)
            set_error(p, "instances.insert", oerr);
        if (inst->created) { /* the operation failed: delete what may exist */
            inst->stop_wanted = 1;
            delete_vm(p, inst->vm, inst);
            return;
        }
        report_exit(p, inst, why);
        return;
    }
    inst->created = 1;
    if (inst->stop_wanted)
        delete_vm(p, inst->vm, inst);
}

static void poll_op(gce_t *p, const char *op, gw_instance_t *inst, call_cb cb)
{
    char path[400];
    snprintf(path, sizeof path, "/operations/%s", op);
    if (call_start(p, "GET", path, NULL, "operations.get", inst, cb) != 0 && inst != NULL)
        report_exit(p, inst, "operation poll could not be sent");
    else if (p->calls != NULL)
        uv_timer_start(&p->calls->timer, on_backoff, 1000, 0); /* poll once a second */
}

static char *build_instance(gce_t *p, const gw_instance_t *inst)
{
    char *script = malloc(65536);
    if (script == NULL || gw_ec2_user_data(p->cfg, p->model, inst->vm, p->join_url, p->ca, p->cert,
                                           p->key, script, 65536) < 0) {
        free(script);
        return NULL;
    }
    const gw_config_t *cfg = p->cfg;
    char mt[400];
    snprintf(mt, sizeof mt, "zones/%s/machineTypes/%s", cfg->gce_zone, cfg->gce_machine_type);
    cJSON *vm = cJSON_CreateObject();
    cJSON_AddStringToObject(vm, "name", inst->vm);
    cJSON_AddStringToObject(vm, "machineType", mt);
    cJSON *labels = cJSON_AddObjectToObject(vm, "labels");
    cJSON_AddStringToObject(labels, "framegate-cluster", cfg->cloud_cluster);
    cJSON_AddStringToObject(labels, "framegate-model", p->model->name);
    cJSON_AddStringToObject(labels, "framegate-backend", inst->name);
    cJSON *disk = cJSON_CreateObject();
    cJSON_AddBoolToObject(disk, "boot", 1);
    cJSON_AddBoolToObject(disk, "autoDelete", 1); /* no disk left behind either */
    cJSON_AddStringToObject(cJSON_AddObjectToObject(disk, "initializeParams"), "sourceImage",
                            cfg->gce_image);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(vm, "disks"), disk);
    cJSON *nic = cJSON_CreateObject();
    cJSON_AddStringToObject(nic, "network", cfg->gce_network);
    if (cfg->gce_subnetwork[0])
        cJSON_AddStringToObject(nic, "subnetwork", cfg->gce_subnetwork);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(vm, "networkInterfaces"), nic);
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "key", "startup-script");
    cJSON_AddStringToObject(item, "value", script);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(cJSON_AddObjectToObject(vm, "metadata"), "items"),
                         item);
    if (cfg->gce_service_account[0]) {
        cJSON *sa = cJSON_CreateObject();
        cJSON_AddStringToObject(sa, "email", cfg->gce_service_account);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(sa, "scopes"),
                             cJSON_CreateString("https://www.googleapis.com/auth/cloud-platform"));
        cJSON_AddItemToArray(cJSON_AddArrayToObject(vm, "serviceAccounts"), sa);
    }
    free(script);
    char *text = cJSON_PrintUnformatted(vm);
    cJSON_Delete(vm);
    return text;
}

static int gce_start(gw_provider_t *gp, const char *name, void *owner, gw_instance_t **out,
                     char *addr, size_t addr_cap)
{
    gce_t *p = (gce_t *)gp;
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
    /* [a-z]([-a-z0-9]*[a-z0-9])?, at most 63 */
    char base[48] = "fg-";
    size_t j = 3;
    for (const char *s = name; *s && j < sizeof base - 1; s++)
        base[j++] = isalnum((unsigned char)*s) ? (char)tolower((unsigned char)*s) : '-';
    base[j] = '\0';
    snprintf(inst->vm, sizeof inst->vm, "%s-%08x", base, (unsigned)rand());
    char *body = build_instance(p, inst);
    if (body == NULL) {
        free(inst);
        return PROTO_ETOOBIG;
    }
    inst->next = p->insts;
    p->insts = inst;
    p->live++;
    char path[128];
    snprintf(path, sizeof path, "/instances?requestId=%08x-%04x-4%03x-8%03x-%04x%08x",
             (unsigned)rand(), (unsigned)rand() & 0xffff, (unsigned)rand() & 0xfff,
             (unsigned)rand() & 0xfff, (unsigned)rand() & 0xffff, (unsigned)rand());
    if (call_start(p, "POST", path, body, "instances.insert", inst, on_inserted) != 0) {
        p->insts = inst->next;
        p->live--;
        free(inst);
        return PROTO_ENOMEM;
    }
    addr[0] = '\0';
    *out = inst;
    GW_LOG_I("cloud_launch", "provider=gce backend=%s instance=%s machine_type=%s", name, inst->vm,
             p->cfg->gce_machine_type);
    return 0;
}

static void gce_stop(gw_provider_t *gp, gw_instance_t *inst, int force)
{
    (void)force;
    if (inst->stop_wanted)
        return;
    inst->stop_wanted = 1;
    if (inst->created)
        delete_vm((gce_t *)gp, inst->vm, inst);
    /* else: the insert is in flight; deleted when it answers */
}

static void gce_instance_id(gw_provider_t *gp, gw_instance_t *inst, char *buf, size_t cap)
{
    (void)gp;
    snprintf(buf, cap, "%s", inst->vm);
}

static int gce_live(gw_provider_t *gp)
{
    return ((gce_t *)gp)->live;
}

static int gce_joined(gw_provider_t *gp, const char *name, const char *addr)
{
    gce_t *p = (gce_t *)gp;
    gw_instance_t *inst = find_vm(p, name);
    if (inst == NULL)
        return PROTO_EINVAL;
    if (!inst->joined && !inst->stop_wanted) {
        inst->joined = 1;
        GW_LOG_I("cloud_joined", "provider=gce backend=%s instance=%s addr=%s", inst->name,
                 inst->vm, addr);
        p->super.on_address(inst->owner, inst, addr);
    }
    return 0;
}

static const char *gce_api_error(gw_provider_t *gp, uint64_t *errors)
{
    gce_t *p = (gce_t *)gp;
    if (errors)
        *errors = p->errors;
    return p->last_error;
}

static void on_listed(gce_t *p, call_t *c, int ok, long status, cJSON *doc, const char *err)
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
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(item, "status");
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(item, "labels"), "framegate-model");
        n++;
        if (!cJSON_IsString(name) || find_vm(p, name->valuestring) != NULL ||
            !cJSON_IsString(model) || strcmp(model->valuestring, p->model->name) != 0 ||
            (cJSON_IsString(st) && strcmp(st->valuestring, "STOPPING") == 0))
            continue;
        GW_LOG_W("cloud_orphan", "provider=gce model=%s instance=%s action=delete", p->model->name,
                 name->valuestring);
        delete_vm(p, name->valuestring, NULL);
        orphans++;
    }
    if (orphans > 0)
        GW_LOG_I("cloud_sweep", "provider=gce model=%s instances=%d orphans=%d", p->model->name, n,
                 orphans);
}

static void on_sweep(uv_timer_t *t)
{
    gce_t *p = t->data;
    if (p->sweeping || p->destroying)
        return;
    char path[300];
    snprintf(path, sizeof path, "/instances?filter=labels.framegate-cluster%%3D%s",
             p->cfg->cloud_cluster);
    p->sweeping = call_start(p, "GET", path, NULL, "instances.list", NULL, on_listed) == 0;
}

static void on_sweep_closed(uv_handle_t *h)
{
    gce_t *p = h->data;
    free(p->ca);
    free(p->cert);
    free(p->key);
    free(p->sa_key);
    free(p);
}

static void gce_destroy(gw_provider_t *gp)
{
    gce_t *p = (gce_t *)gp;
    p->destroying = 1;
    uv_timer_stop(&p->sweep);
    if (p->token_req != NULL)
        gw_fetch_cancel(p->token_req);
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

static const gw_provider_ops_t gce_ops = {
    .kind = "gce",
    .start = gce_start,
    .stop = gce_stop,
    .instance_id = gce_instance_id,
    .live = gce_live,
    .destroy = gce_destroy,
    .joined = gce_joined,
    .api_error = gce_api_error,
};

static char *read_file(const char *path, size_t max)
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

int gw_provider_gce_create(gw_provider_t **out, uv_loop_t *loop, gw_fetch_t *fetch,
                           const gw_config_t *cfg, const gw_model_t *model,
                           gw_provider_exit_cb on_exit, char *err, size_t errcap)
{
    gce_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return PROTO_ENOMEM;
    p->super.ops = &gce_ops;
    p->super.on_exit = on_exit;
    p->loop = loop;
    p->fetch = fetch;
    p->cfg = cfg;
    p->model = model;
    const char *why = NULL;
    const char *keyfile =
        cfg->gce_key_file[0] ? cfg->gce_key_file : getenv("GOOGLE_APPLICATION_CREDENTIALS");
    if (keyfile != NULL && keyfile[0]) {
        char *text = read_file(keyfile, 65536);
        cJSON *k = text ? cJSON_Parse(text) : NULL;
        const cJSON *pk = cJSON_GetObjectItemCaseSensitive(k, "private_key");
        const cJSON *em = cJSON_GetObjectItemCaseSensitive(k, "client_email");
        const cJSON *kid = cJSON_GetObjectItemCaseSensitive(k, "private_key_id");
        const cJSON *uri = cJSON_GetObjectItemCaseSensitive(k, "token_uri");
        if (cJSON_IsString(pk) && cJSON_IsString(em) && strlen(em->valuestring) < 256) {
            p->sa_key = strdup(pk->valuestring);
            snprintf(p->sa_email, sizeof p->sa_email, "%s", em->valuestring);
            if (cJSON_IsString(kid) && strlen(kid->valuestring) < sizeof p->sa_kid)
                snprintf(p->sa_kid, sizeof p->sa_kid, "%s", kid->valuestring);
            snprintf(p->token_url, sizeof p->token_url, "%s",
                     cJSON_IsString(uri) && strlen(uri->valuestring) < sizeof p->token_url
                         ? uri->valuestring
                         : AUD);
        } else {
            why = "gce_key_file: not a service-account key (private_key, client_email)";
        }
        cJSON_Delete(k);
        free(text);
    } else {
        const char *h = getenv("GCE_METADATA_HOST");
        snprintf(p->metadata_url, sizeof p->metadata_url, "http://%s",
                 h && *h ? h : "metadata.google.internal");
    }
    snprintf(
        p->endpoint, sizeof p->endpoint, "%s%sprojects/%s/zones/%s",
        cfg->gce_endpoint[0] ? cfg->gce_endpoint : "https://compute.googleapis.com/compute/v1/",
        cfg->gce_endpoint[0] && cfg->gce_endpoint[strlen(cfg->gce_endpoint) - 1] != '/' ? "/" : "",
        cfg->gce_project, cfg->gce_zone);
    snprintf(p->join_url, sizeof p->join_url, "%s",
             cfg->cloud_join_url[0] ? cfg->cloud_join_url : cfg->join_listen);
    if (why == NULL && ((p->ca = read_file(cfg->tls_ca, 16384)) == NULL ||
                        (p->cert = read_file(cfg->cloud_backend_cert, 16384)) == NULL ||
                        (p->key = read_file(cfg->cloud_backend_key, 16384)) == NULL))
        why = "tls_ca, cloud_backend_cert or cloud_backend_key: cannot read (or over 16 KiB)";
    if (why != NULL) {
        snprintf(err, errcap, "provider gce: %s", why);
        free(p->ca);
        free(p->cert);
        free(p->key);
        free(p->sa_key);
        free(p);
        return PROTO_ECONFIG;
    }
    srand((unsigned)time(NULL) ^ (unsigned)(uintptr_t)p);
    uv_timer_init(loop, &p->sweep);
    p->sweep.data = p;
    uv_timer_start(&p->sweep, on_sweep, 0, cfg->cloud_reap_interval_ms);
    GW_LOG_I("cloud_provider", "provider=gce model=%s endpoint=%s auth=%s cluster=%s", model->name,
             p->endpoint, p->sa_key ? "service_account" : "metadata", cfg->cloud_cluster);
    *out = &p->super;
    return 0;
}
