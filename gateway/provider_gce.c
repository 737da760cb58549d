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
#include "provider_cloud.h"
#include "provider_ec2.h"
#include "provider_gce.h"

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

/* ---- the provider: the Compute API side of provider_cloud.h ---- */

typedef struct {
    gw_cloud_t c;        /* first */
    char endpoint[1024]; /* .../compute/v1/projects/P/zones/Z */
    /* auth: a service-account key (JWT -> token) or the metadata server */
    char *sa_key; /* PEM private key; NULL = metadata server */
    char sa_email[256], sa_kid[128], token_url[512], metadata_url[256];
    char access_token[2048];
    time_t token_expire;
    int token_busy;
    gw_fetch_req_t *token_req;
    char token_body[2600]; /* the token request's body: fetch borrows it until done */
} gce_t;

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
        gw_cloud_error(&p->c, "token", e);
    }
    cJSON_Delete(doc);
}

/* Gets a token when there is none or it expires within a minute (the old one serves until
 * the new one comes). */
static void token_refresh(gce_t *p)
{
    if (p->token_busy || p->c.destroying)
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
            gw_cloud_error(&p->c, "token", "the JWT could not be signed (private_key)");
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
                             .connect_timeout_ms = p->c.cfg->cloud_api_timeout_ms,
                             .timeout_ms = p->c.cfg->cloud_api_timeout_ms,
                             .ca_file = p->c.cfg->gce_ca_file};
        rv = gw_fetch_start(p->c.fetch, &o, on_token, p, &p->token_req);
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
                             .timeout_ms = p->c.cfg->cloud_api_timeout_ms};
        rv = gw_fetch_start(p->c.fetch, &o, on_token, p, &p->token_req);
    }
    if (rv != 0) {
        gw_cloud_error(&p->c, "token", proto_strerror(rv));
        p->token_busy = 0;
    }
}

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

static char *build_instance(gce_t *p, const gw_instance_t *inst)
{
    char *script = malloc(65536);
    if (script == NULL || gw_ec2_user_data(p->c.cfg, p->c.model, inst->key, p->c.join_url, p->c.ca,
                                           p->c.cert, p->c.key, script, 65536) < 0) {
        free(script);
        return NULL;
    }
    const gw_config_t *cfg = p->c.cfg;
    char mt[400];
    snprintf(mt, sizeof mt, "zones/%s/machineTypes/%s", cfg->gce_zone, cfg->gce_machine_type);
    cJSON *vm = cJSON_CreateObject();
    cJSON_AddStringToObject(vm, "name", inst->key);
    cJSON_AddStringToObject(vm, "machineType", mt);
    cJSON *labels = cJSON_AddObjectToObject(vm, "labels");
    cJSON_AddStringToObject(labels, "framegate-cluster", cfg->cloud_cluster);
    cJSON_AddStringToObject(labels, "framegate-model", p->c.model->name);
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

static int gce_send(gw_cloud_t *c, gw_cloud_call_t *call)
{
    gce_t *p = (gce_t *)c;
    char auth[2200], url[2100];
    token_refresh(p);
    if (p->access_token[0] == '\0' || (p->token_expire != 0 && p->token_expire <= time(NULL)))
        return 1;
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", p->access_token);
    snprintf(url, sizeof url, "%s%s", p->endpoint, call->path);
    const char *headers[] = {auth, "Content-Type: application/json"};
    gw_fetch_opts_t o = {
        .url = url, .headers = headers, .nheaders = 2, .ca_file = c->cfg->gce_ca_file};
    return gw_cloud_fetch(c, call, &o);
}

static void gce_error_text(long status, const char *body, size_t len, char *out, size_t cap)
{
    cJSON *doc = gw_cloud_json(body, len);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "errors"), 0), "reason");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    snprintf(out, cap, "HTTP %ld %s: %s", status, cJSON_IsString(reason) ? reason->valuestring : "",
             cJSON_IsString(msg) ? msg->valuestring : "");
    cJSON_Delete(doc);
}

static void poll_op(gw_cloud_t *c, const char *op, gw_instance_t *inst, gw_cloud_call_cb cb)
{
    char path[400];
    snprintf(path, sizeof path, "/operations/%s", op);
    /* polled once a second */
    if (gw_cloud_call(c, "GET", path, NULL, 0, "operations.get", inst, cb, 1000) != 0 &&
        inst != NULL)
        gw_cloud_exit(c, inst, "operation poll could not be sent");
}

static void on_deleted(gw_cloud_t *c, gw_cloud_call_t *call, int ok, long status, const char *body,
                       size_t len, const char *err)
{
    char oerr[400] = "";
    cJSON *doc = ok ? gw_cloud_json(body, len) : NULL;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, "name");
    if (ok && !op_done(doc, oerr, sizeof oerr) && cJSON_IsString(name))
        poll_op(c, name->valuestring, call->inst, on_deleted);
    else if (ok && oerr[0] != '\0')
        gw_cloud_terminated(c, call->inst, 0, oerr);
    else
        gw_cloud_terminated(c, call->inst, ok || status == 404, err);
    cJSON_Delete(doc);
}

static int gce_terminate(gw_cloud_t *c, const char *vm, gw_instance_t *inst)
{
    char path[300];
    snprintf(path, sizeof path, "/instances/%s", vm);
    return gw_cloud_call(c, "DELETE", path, NULL, 0, "instances.delete", inst, on_deleted, 0);
}

static void on_inserted(gw_cloud_t *c, gw_cloud_call_t *call, int ok, long status, const char *body,
                        size_t len, const char *err)
{
    (void)status;
    gw_instance_t *inst = call->inst;
    char oerr[400] = "", why[800];
    if (inst == NULL)
        return;
    cJSON *doc = ok ? gw_cloud_json(body, len) : NULL;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, "name");
    if (ok && !op_done(doc, oerr, sizeof oerr) && cJSON_IsString(name)) {
        /* it exists (or will): a stop from now on deletes it */
        if (!gw_cloud_created(c, inst, NULL))
            poll_op(c, name->valuestring, inst, on_inserted);
    } else if (!ok || oerr[0] != '\0') {
        snprintf(why, sizeof why, "instances.insert failed: %s", ok ? oerr : err ? err : "?");
        if (ok)
            gw_cloud_error(c, "instances.insert", oerr);
        if (inst->created) { /* the operation failed: delete what may exist */
            inst->stop_wanted = 1;
            inst->terminating = 1;
            if (gce_terminate(c, inst->id, inst) != 0)
                gw_cloud_exit(c, inst, why);
        } else {
            gw_cloud_exit(c, inst, why);
        }
    } else {
        gw_cloud_created(c, inst, NULL);
    }
    cJSON_Delete(doc);
}

static int gce_launch(gw_cloud_t *c, gw_instance_t *inst)
{
    gce_t *p = (gce_t *)c;
    /* [a-z]([-a-z0-9]*[a-z0-9])?, at most 63 */
    gw_cloud_dns_name("fg-", inst->name, inst->key, sizeof inst->key);
    snprintf(inst->id, sizeof inst->id, "%s", inst->key);
    char *body = build_instance(p, inst);
    if (body == NULL)
        return PROTO_ETOOBIG;
    char path[128];
    snprintf(path, sizeof path, "/instances?requestId=%08x-%04x-4%03x-8%03x-%04x%08x",
             (unsigned)rand(), (unsigned)rand() & 0xffff, (unsigned)rand() & 0xfff,
             (unsigned)rand() & 0xfff, (unsigned)rand() & 0xffff, (unsigned)rand());
    return gw_cloud_call(c, "POST", path, body, strlen(body), "instances.insert", inst, on_inserted,
                         0);
}

static void on_listed(gw_cloud_t *c, gw_cloud_call_t *call, int ok, long status, const char *body,
                      size_t len, const char *err)
{
    (void)call, (void)status;
    cJSON *doc = ok ? gw_cloud_json(body, len) : NULL;
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(doc, "items");
    int n = 0, max = cJSON_GetArraySize(items);
    gw_cloud_found_t *found = calloc((size_t)max + 1, sizeof *found);
    const cJSON *item;
    cJSON_ArrayForEach(item, items)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(item, "status");
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(item, "labels"), "framegate-model");
        if (found == NULL || !cJSON_IsString(name) || !cJSON_IsString(model) ||
            strcmp(model->valuestring, c->model->name) != 0 ||
            (cJSON_IsString(st) && (strcmp(st->valuestring, "STOPPING") == 0 ||
                                    strcmp(st->valuestring, "TERMINATED") == 0)))
            continue;
        snprintf(found[n].id, sizeof found[n].id, "%s", name->valuestring);
        snprintf(found[n].key, sizeof found[n].key, "%s", name->valuestring);
        n++;
    }
    gw_cloud_listed(c, ok && found != NULL, found, n, err);
    free(found);
    cJSON_Delete(doc);
}

static int gce_list(gw_cloud_t *c)
{
    char path[300];
    snprintf(path, sizeof path, "/instances?filter=labels.framegate-cluster%%3D%s",
             c->cfg->cloud_cluster);
    return gw_cloud_call(c, "GET", path, NULL, 0, "instances.list", NULL, on_listed, 0);
}

static void gce_free(gw_cloud_t *c)
{
    gce_t *p = (gce_t *)c;
    if (p->token_req != NULL)
        gw_fetch_cancel(p->token_req);
    free(p->sa_key);
    free(p);
}

static const gw_cloud_ops_t gce_cloud_ops = {
    .kind = "gce",
    .send = gce_send,
    .error_text = gce_error_text,
    .retryable = gw_cloud_http_retryable,
    .launch = gce_launch,
    .terminate = gce_terminate,
    .list = gce_list,
    .free = gce_free,
};

static const gw_provider_ops_t gce_ops = GW_CLOUD_PROVIDER_OPS("gce");

/* The service-account key file's fields; NULL or the reason it is not one. */
static const char *load_key(gce_t *p, const char *keyfile)
{
    const char *why = NULL;
    char *text = gw_cloud_read_file(keyfile, 65536);
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
    return why;
}

int gw_provider_gce_create(gw_provider_t **out, uv_loop_t *loop, gw_fetch_t *fetch,
                           const gw_config_t *cfg, const gw_model_t *model,
                           gw_provider_exit_cb on_exit, char *err, size_t errcap)
{
    gce_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return PROTO_ENOMEM;
    p->c.super.ops = &gce_ops;
    int rv = gw_cloud_init(&p->c, &gce_cloud_ops, loop, fetch, cfg, model, on_exit, 1, err, errcap);
    if (rv != 0) {
        free(p);
        return rv;
    }
    const char *keyfile =
        cfg->gce_key_file[0] ? cfg->gce_key_file : getenv("GOOGLE_APPLICATION_CREDENTIALS");
    if (keyfile != NULL && keyfile[0]) {
        const char *why = load_key(p, keyfile);
        if (why != NULL) {
            snprintf(err, errcap, "provider gce: %s", why);
            gw_cloud_fini(&p->c);
            free(p->sa_key);
            free(p);
            return PROTO_ECONFIG;
        }
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
    gw_cloud_run(&p->c);
    GW_LOG_I("cloud_provider", "provider=gce model=%s endpoint=%s auth=%s cluster=%s", model->name,
             p->endpoint, p->sa_key ? "service_account" : "metadata", cfg->cloud_cluster);
    *out = &p->c.super;
    return 0;
}
