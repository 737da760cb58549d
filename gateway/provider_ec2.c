/* The EC2 provider: one instance per backend, through the EC2 Query API (RunInstances,
 * DescribeInstances, TerminateInstances) over HTTPS with libcurl on the loop (fetch.h), each
 * request signed with SigV4 (sigv4.h).
 *
 * An instance boots framegate-backend from its user data (gw_ec2_user_data), which joins the
 * gateway's join listener as the instance's token; the join gives the address the pool
 * dials (provider.h: on_address). Every instance is tagged Name = MODEL-instanceN and
 * framegate-cluster = cfg->cloud_cluster. Nothing is leaked: a sweep at start and every
 * cloud_reap_interval_ms lists the cluster's instances and terminates those no live instance
 * here owns (a crashed gateway's); stop() terminates; a termination that fails is retried
 * by the sweep. API calls are bounded (cloud_api_timeout_ms) and retried with jittered
 * exponential backoff on throttling, capacity and server errors; the last error is kept for
 * /v1/backends. Loop thread only. */
#include <ctype.h>
#include <mbedtls/base64.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "fetch.h"
#include "log.h"
#include "provider.h"
#include "provider_cloud.h"
#include "provider_ec2.h"
#include "sigv4.h"

#define API_VERSION "2016-11-15"
#define CLUSTER_TAG "framegate-cluster"
#define MAX_BODY (64 << 10)
#define MAX_INSTANCES 256

/* ---- pure parts ---- */

static void copy_trim(char *dst, size_t cap, const char *s, size_t n)
{
    while (n > 0 && isspace((unsigned char)*s))
        s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    snprintf(dst, cap, "%.*s", (int)n, s);
}

/* Copies v whole or not at all: a truncated key would only fail later, less clearly. */
static void put(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n < cap)
        memcpy(dst, v, n + 1);
}

int gw_ec2_creds_parse(gw_ec2_creds_t *c, const char *text, const char *profile)
{
    int in = 0;
    memset(c, 0, sizeof *c);
    for (const char *line = text; line != NULL && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char l[2200];
        copy_trim(l, sizeof l, line, n);
        if (l[0] == '[') {
            char name[128];
            char *close = strchr(l, ']');
            copy_trim(name, sizeof name, l + 1, close ? (size_t)(close - l - 1) : 0);
            in = strcmp(name, profile) == 0;
        } else if (in && l[0] != '#' && l[0] != ';') {
            char *eq = strchr(l, '=');
            if (eq != NULL) {
                char key[64], val[2100];
                copy_trim(key, sizeof key, l, (size_t)(eq - l));
                copy_trim(val, sizeof val, eq + 1, strlen(eq + 1));
                if (strcmp(key, "aws_access_key_id") == 0)
                    put(c->access_key, sizeof c->access_key, val);
                else if (strcmp(key, "aws_secret_access_key") == 0)
                    put(c->secret_key, sizeof c->secret_key, val);
                else if (strcmp(key, "aws_session_token") == 0)
                    put(c->token, sizeof c->token, val);
            }
        }
        line = end ? end + 1 : NULL;
    }
    return c->access_key[0] && c->secret_key[0] ? 0 : PROTO_ENOTFOUND;
}

int gw_ec2_creds_load(gw_ec2_creds_t *c)
{
    const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
    const char *tok = getenv("AWS_SESSION_TOKEN");
    memset(c, 0, sizeof *c);
    if (ak && sk && *ak && *sk) {
        snprintf(c->access_key, sizeof c->access_key, "%s", ak);
        snprintf(c->secret_key, sizeof c->secret_key, "%s", sk);
        snprintf(c->token, sizeof c->token, "%s", tok ? tok : "");
        return 0;
    }
    char path[1024];
    const char *file = getenv("AWS_SHARED_CREDENTIALS_FILE"), *home = getenv("HOME");
    const char *profile = getenv("AWS_PROFILE");
    if (file != NULL && *file)
        snprintf(path, sizeof path, "%s", file);
    else if (home != NULL)
        snprintf(path, sizeof path, "%s/.aws/credentials", home);
    else
        return PROTO_ENOTFOUND;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return PROTO_ENOTFOUND;
    char text[16384];
    size_t n = fread(text, 1, sizeof text - 1, f); /* a credentials file is small */
    fclose(f);
    text[n] = '\0';
    return gw_ec2_creds_parse(c, text, profile && *profile ? profile : "default");
}

int gw_ec2_authorization(const gw_ec2_creds_t *c, const char *region, const char *host,
                         const char *body, size_t body_len, const char *amz_date, char *out,
                         size_t cap)
{
    char hash[65];
    gw_sigv4_sha256_hex(body, body_len, hash);
    gw_sigv4_header_t h[4] = {{"content-type", "application/x-www-form-urlencoded; charset=utf-8"},
                              {"host", host},
                              {"x-amz-date", amz_date},
                              {"x-amz-security-token", c->token}};
    gw_sigv4_req_t r = {.method = "POST",
                        .uri = "/",
                        .query = "",
                        .headers = h,
                        .nheaders = c->token[0] ? 4 : 3,
                        .payload_sha256 = hash,
                        .region = region,
                        .service = "ec2",
                        .access_key = c->access_key,
                        .secret_key = c->secret_key,
                        .amz_date = amz_date};
    return gw_sigv4_authorization(&r, out, cap);
}

/* The text of the first <tag> in [p, end), or NULL. */
static const char *xml_find(const char *p, const char *end, const char *tag, char *out, size_t cap)
{
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    size_t ol = strlen(open);
    for (const char *s = p; s + ol <= end; s++) {
        if (memcmp(s, open, ol) != 0)
            continue;
        const char *v = s + ol;
        for (const char *e = v; e + strlen(close) <= end; e++)
            if (memcmp(e, close, strlen(close)) == 0) {
                copy_trim(out, cap, v, (size_t)(e - v));
                return e;
            }
        return NULL;
    }
    return NULL;
}

static const char *mem_find(const char *p, const char *end, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *s = p; s + n <= end; s++)
        if (memcmp(s, needle, n) == 0)
            return s;
    return NULL;
}

int gw_ec2_parse_instances(const char *xml, size_t len, gw_ec2_instance_t *out, int max)
{
    const char *end = xml + len;
    int n = 0;
    const char *p = mem_find(xml, end, "<instanceId>");
    while (p != NULL && n < max) {
        const char *next = mem_find(p + 1, end, "<instanceId>");
        const char *seg_end = next ? next : end;
        gw_ec2_instance_t *i = &out[n];
        memset(i, 0, sizeof *i);
        xml_find(p, seg_end, "instanceId", i->id, sizeof i->id);
        const char *st = mem_find(p, seg_end, "<instanceState>");
        if (st != NULL)
            xml_find(st, seg_end, "name", i->state, sizeof i->state);
        xml_find(p, seg_end, "privateIpAddress", i->private_ip, sizeof i->private_ip);
        xml_find(p, seg_end, "clientToken", i->client_token, sizeof i->client_token);
        if (i->id[0] != '\0')
            n++;
        p = next;
    }
    return n;
}

int gw_ec2_parse_error(const char *xml, size_t len, char *out, size_t cap)
{
    char code[128] = "", msg[512] = "";
    const char *end = xml + len;
    if (xml_find(xml, end, "Code", code, sizeof code) == NULL)
        return 0;
    xml_find(xml, end, "Message", msg, sizeof msg);
    snprintf(out, cap, "%s: %s", code, msg);
    return 1;
}

int gw_ec2_retryable(long status, const char *code_message)
{
    static const char *const codes[] = {
        "RequestLimitExceeded", "Throttling",  "InsufficientInstanceCapacity",
        "InternalError",        "Unavailable", "ServiceUnavailable"};
    if (status == 0 || status == 429 || status >= 500)
        return 1;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strncmp(code_message, codes[i], strlen(codes[i])) == 0)
            return 1;
    return 0;
}

int gw_ec2_user_data(const gw_config_t *cfg, const gw_model_t *model, const char *token,
                     const char *join_url, const char *ca, const char *cert, const char *key,
                     char *out, size_t cap)
{
    const char *cmd =
        cfg->cloud_backend_command[0] ? cfg->cloud_backend_command : "framegate-backend";
    /* FG_* variables let a test host (or an image with several backends) override the
     * defaults; on EC2 none is set: the first address of the host, port cloud_backend_port. */
    int n = snprintf(
        out, cap,
        "#!/bin/sh\n"
        "# framegate backend %s of model %s (gateway cluster %s)\n"
        "set -e\n"
        "D=${FG_ETC:-/etc/framegate}\n"
        "umask 077\n"
        "mkdir -p \"$D\"\n"
        "cat > \"$D/ca.crt\" <<'FG_PEM'\n%sFG_PEM\n"
        "cat > \"$D/backend.crt\" <<'FG_PEM'\n%sFG_PEM\n"
        "cat > \"$D/backend.key\" <<'FG_PEM'\n%sFG_PEM\n"
        "IP=${FG_ADDR:-$(hostname -I | cut -d' ' -f1)}\n"
        "PORT=${FG_PORT:-%d}\n"
        "exec ${FG_BACKEND:-%s} --model-name '%s' --instance '%s' \\\n"
        "  --listen \"tls+tcp://${FG_LISTEN_HOST:-0.0.0.0}:$PORT\" \\\n"
        "  --advertise \"tls+tcp://$IP:$PORT\" --join '%s' \\\n"
        "  --tls-ca \"$D/ca.crt\" --tls-cert \"$D/backend.crt\" --tls-key \"$D/backend.key\" %s\n",
        token, model->name, cfg->cloud_cluster, ca, cert, key, cfg->cloud_backend_port, cmd,
        model->name, token, join_url, model->backend_args);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* ---- the provider: the EC2 side of provider_cloud.h ---- */

typedef struct {
    gw_cloud_t c; /* first */
    gw_ec2_creds_t creds;
    int imds;            /* credentials come from the instance metadata service (IMDSv2) */
    int imds_busy;       /* a refresh is under way */
    time_t creds_expire; /* IMDS credentials: their Expiration (0 = unknown) */
    char imds_url[256];
    char imds_token[256];
    char imds_role[256];
    gw_fetch_req_t *imds_req; /* the IMDS request in flight, or NULL */
    char endpoint[1024];
    char host[256];
} ec2_t;

/* ---- IMDSv2: a session token (PUT), the role's name, then its credentials ---- */

static void imds_get(ec2_t *p, const char *path, gw_fetch_cb cb);

static time_t parse_iso8601(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

static int imds_failed(ec2_t *p, gw_fetch_result_t *res, const char *what)
{
    p->imds_req = NULL;
    if (res->err == 0 && res->status == 200 && res->body != NULL)
        return 0;
    char e[300];
    if (res->err != 0)
        snprintf(e, sizeof e, "%s", res->error[0] ? res->error : proto_strerror(res->err));
    else
        snprintf(e, sizeof e, "HTTP %ld", res->status);
    if (res->err != UV_ECANCELED)
        gw_cloud_error(&p->c, what, e);
    p->imds_busy = 0;
    return 1;
}

/* The JSON string value of "key" in a flat JSON object, into out; 0 or -1. */
static int json_str(const char *json, const char *key, char *out, size_t cap)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\"", key);
    const char *at = strstr(json, k);
    if (at == NULL || (at = strchr(at + strlen(k), '"')) == NULL)
        return -1;
    const char *end = strchr(at + 1, '"');
    if (end == NULL || (size_t)(end - at - 1) >= cap)
        return -1;
    snprintf(out, cap, "%.*s", (int)(end - at - 1), at + 1);
    return 0;
}

static void on_imds_creds(void *arg, gw_fetch_result_t *res)
{
    ec2_t *p = arg;
    if (imds_failed(p, res, "IMDS credentials"))
        return;
    char *json = malloc(res->len + 1), exp[64] = "";
    gw_ec2_creds_t c;
    memset(&c, 0, sizeof c);
    if (json == NULL)
        return (void)(p->imds_busy = 0);
    memcpy(json, res->body, res->len);
    json[res->len] = '\0';
    if (json_str(json, "AccessKeyId", c.access_key, sizeof c.access_key) != 0 ||
        json_str(json, "SecretAccessKey", c.secret_key, sizeof c.secret_key) != 0 ||
        json_str(json, "Token", c.token, sizeof c.token) != 0) {
        gw_cloud_error(&p->c, "IMDS credentials",
                       "answer without AccessKeyId/SecretAccessKey/Token");
    } else {
        json_str(json, "Expiration", exp, sizeof exp);
        p->creds = c;
        p->creds_expire = parse_iso8601(exp);
        GW_LOG_I("cloud_credentials", "provider=ec2 source=imds role=%s expires=%s", p->imds_role,
                 exp[0] ? exp : "?");
    }
    free(json);
    p->imds_busy = 0;
}

static void on_imds_role(void *arg, gw_fetch_result_t *res)
{
    ec2_t *p = arg;
    if (imds_failed(p, res, "IMDS role"))
        return;
    size_t n = strcspn((const char *)res->body, "\r\n");
    if (n > res->len)
        n = res->len;
    if (n == 0 || n >= sizeof p->imds_role) {
        gw_cloud_error(&p->c, "IMDS role", "no instance profile attached");
        p->imds_busy = 0;
        return;
    }
    snprintf(p->imds_role, sizeof p->imds_role, "%.*s", (int)n, (const char *)res->body);
    char path[400];
    snprintf(path, sizeof path, "/latest/meta-data/iam/security-credentials/%s", p->imds_role);
    imds_get(p, path, on_imds_creds);
}

static void on_imds_token(void *arg, gw_fetch_result_t *res)
{
    ec2_t *p = arg;
    if (imds_failed(p, res, "IMDS token"))
        return;
    if (res->len == 0 || res->len >= sizeof p->imds_token) {
        gw_cloud_error(&p->c, "IMDS token", "empty or oversized token");
        p->imds_busy = 0;
        return;
    }
    snprintf(p->imds_token, sizeof p->imds_token, "%.*s", (int)res->len, (const char *)res->body);
    imds_get(p, "/latest/meta-data/iam/security-credentials/", on_imds_role);
}

static void imds_get(ec2_t *p, const char *path, gw_fetch_cb cb)
{
    char url[700], hdr[300];
    snprintf(url, sizeof url, "%s%s", p->imds_url, path);
    snprintf(hdr, sizeof hdr, "X-aws-ec2-metadata-token: %s", p->imds_token);
    const char *headers[] = {hdr};
    gw_fetch_opts_t o = {.url = url,
                         .headers = headers,
                         .nheaders = 1,
                         .max_bytes = 16384,
                         .connect_timeout_ms = 2000,
                         .timeout_ms = p->c.cfg->cloud_api_timeout_ms};
    if (gw_fetch_start(p->c.fetch, &o, cb, p, &p->imds_req) != 0) {
        gw_cloud_error(&p->c, "IMDS", "request could not be started");
        p->imds_busy = 0;
    }
}

/* Starts a refresh when there are no credentials yet or they expire within 5 minutes. */
static void imds_refresh(ec2_t *p)
{
    if (!p->imds || p->imds_busy || p->c.destroying)
        return;
    if (p->creds.access_key[0] && (p->creds_expire == 0 || p->creds_expire - time(NULL) > 300))
        return;
    p->imds_busy = 1;
    char url[400];
    const char *hdrs[] = {"X-aws-ec2-metadata-token-ttl-seconds: 21600"};
    snprintf(url, sizeof url, "%s/latest/api/token", p->imds_url);
    gw_fetch_opts_t o = {.method = "PUT",
                         .url = url,
                         .headers = hdrs,
                         .nheaders = 1,
                         .body = (const uint8_t *)"",
                         .body_len = 0,
                         .max_bytes = 4096,
                         .connect_timeout_ms = 2000,
                         .timeout_ms = p->c.cfg->cloud_api_timeout_ms};
    if (gw_fetch_start(p->c.fetch, &o, on_imds_token, p, &p->imds_req) != 0) {
        gw_cloud_error(&p->c, "IMDS token", "request could not be started");
        p->imds_busy = 0;
    }
}
/* Appends "&name=value" (value form-encoded) to a growing body. */
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} form_t;

static void form_add(form_t *f, const char *name, const char *value)
{
    size_t vl = strlen(value), need = f->len + strlen(name) + 3 * vl + 4;
    if (f->failed)
        return;
    if (need > MAX_BODY) {
        f->failed = 1;
        return;
    }
    if (need > f->cap) {
        size_t cap = need * 2 > MAX_BODY ? MAX_BODY : need * 2;
        char *s = realloc(f->s, cap);
        if (s == NULL) {
            f->failed = 1;
            return;
        }
        f->s = s;
        f->cap = cap;
    }
    f->len += (size_t)sprintf(f->s + f->len, "%s%s=", f->len ? "&" : "", name);
    int n = gw_sigv4_uri_encode(value, vl, 0, f->s + f->len, f->cap - f->len);
    if (n < 0)
        f->failed = 1;
    else
        f->len += (size_t)n;
}

static int ec2_send(gw_cloud_t *gc, gw_cloud_call_t *call)
{
    ec2_t *p = (ec2_t *)gc;
    char amz[17], auth[512], hdr_auth[600], hdr_date[64], hdr_tok[2100];
    imds_refresh(p);
    if (p->creds.access_key[0] == '\0') /* IMDS has not answered yet */
        return 1;
    gw_sigv4_amz_date(time(NULL), amz);
    int rv = gw_ec2_authorization(&p->creds, gc->cfg->ec2_region, p->host, call->body,
                                  call->body_len, amz, auth, sizeof auth);
    if (rv != 0)
        return rv;
    snprintf(hdr_auth, sizeof hdr_auth, "Authorization: %s", auth);
    snprintf(hdr_date, sizeof hdr_date, "X-Amz-Date: %s", amz);
    snprintf(hdr_tok, sizeof hdr_tok, "X-Amz-Security-Token: %s", p->creds.token);
    const char *headers[] = {"Content-Type: application/x-www-form-urlencoded; charset=utf-8",
                             hdr_date, hdr_auth, hdr_tok};
    gw_fetch_opts_t o = {.url = p->endpoint,
                         .headers = headers,
                         .nheaders = p->creds.token[0] ? 4 : 3,
                         .max_bytes = 4 << 20,
                         .ca_file = gc->cfg->ec2_ca_file};
    return gw_cloud_fetch(gc, call, &o);
}

static void ec2_error_text(long status, const char *body, size_t len, char *out, size_t cap)
{
    if (!gw_ec2_parse_error(body ? body : "", body ? len : 0, out, cap))
        snprintf(out, cap, "HTTP %ld", status);
}

/* Starts a Query API call of form f (it takes f's buffer). */
static int ec2_call(gw_cloud_t *c, form_t *f, const char *action, gw_instance_t *inst,
                    gw_cloud_call_cb cb)
{
    form_add(f, "Version", API_VERSION);
    if (f->failed) {
        free(f->s);
        gw_cloud_error(c, action, "request could not be built (memory or size)");
        return PROTO_ETOOBIG;
    }
    return gw_cloud_call(c, "POST", "", f->s, f->len, action, inst, cb, 0);
}

static void on_terminated(gw_cloud_t *c, gw_cloud_call_t *call, int ok, long status,
                          const char *body, size_t len, const char *err)
{
    (void)status, (void)body, (void)len;
    gw_cloud_terminated(c, call->inst, ok, err);
}

static int ec2_terminate(gw_cloud_t *c, const char *id, gw_instance_t *inst)
{
    form_t f = {0};
    form_add(&f, "Action", "TerminateInstances");
    form_add(&f, "InstanceId.1", id);
    return ec2_call(c, &f, "TerminateInstances", inst, on_terminated);
}

static void on_run(gw_cloud_t *c, gw_cloud_call_t *call, int ok, long status, const char *xml,
                   size_t len, const char *err)
{
    (void)status;
    gw_instance_t *inst = call->inst;
    gw_ec2_instance_t got[1];
    char why[700];
    if (inst == NULL)
        return;
    if (!ok) {
        snprintf(why, sizeof why, "RunInstances failed: %s", err ? err : "?");
        gw_cloud_exit(c, inst, why);
    } else if (gw_ec2_parse_instances(xml, len, got, 1) != 1) {
        gw_cloud_error(c, "RunInstances", "answer without an instance");
        gw_cloud_exit(c, inst, "RunInstances answered without an instance");
    } else {
        gw_cloud_created(c, inst, got[0].id);
    }
}

static int ec2_launch(gw_cloud_t *c, gw_instance_t *inst)
{
    const gw_config_t *cfg = c->cfg;
    char *ud = malloc(MAX_BODY / 2), *b64 = malloc(MAX_BODY);
    size_t b64_len = 0;
    if (ud == NULL || b64 == NULL) {
        free(ud), free(b64);
        return PROTO_ENOMEM;
    }
    /* ClientToken: at most 64 characters */
    snprintf(inst->key, sizeof inst->key, "%.40s-%08x%08x", inst->name, (unsigned)rand(),
             (unsigned)rand());
    int n = gw_ec2_user_data(cfg, c->model, inst->key, c->join_url, c->ca, c->cert, c->key, ud,
                             MAX_BODY / 2);
    if (n < 0 || mbedtls_base64_encode((unsigned char *)b64, MAX_BODY - 1, &b64_len,
                                       (const unsigned char *)ud, (size_t)n) != 0) {
        free(ud), free(b64);
        return PROTO_ETOOBIG;
    }
    b64[b64_len] = '\0';
    form_t f = {0};
    form_add(&f, "Action", "RunInstances");
    form_add(&f, "ClientToken", inst->key);
    form_add(&f, "ImageId", cfg->ec2_image);
    form_add(&f, "InstanceType", cfg->ec2_instance_type);
    form_add(&f, "MinCount", "1");
    form_add(&f, "MaxCount", "1");
    if (cfg->ec2_subnet[0])
        form_add(&f, "SubnetId", cfg->ec2_subnet);
    char groups[sizeof cfg->ec2_security_groups];
    snprintf(groups, sizeof groups, "%s", cfg->ec2_security_groups);
    int g = 0;
    for (char *save = NULL, *w = strtok_r(groups, ", ", &save); w;
         w = strtok_r(NULL, ", ", &save)) {
        char k[32];
        snprintf(k, sizeof k, "SecurityGroupId.%d", ++g);
        form_add(&f, k, w);
    }
    if (cfg->ec2_instance_profile[0])
        form_add(&f,
                 strncmp(cfg->ec2_instance_profile, "arn:", 4) == 0 ? "IamInstanceProfile.Arn"
                                                                    : "IamInstanceProfile.Name",
                 cfg->ec2_instance_profile);
    form_add(&f, "UserData", b64);
    form_add(&f, "TagSpecification.1.ResourceType", "instance");
    form_add(&f, "TagSpecification.1.Tag.1.Key", "Name");
    form_add(&f, "TagSpecification.1.Tag.1.Value", inst->name);
    form_add(&f, "TagSpecification.1.Tag.2.Key", CLUSTER_TAG);
    form_add(&f, "TagSpecification.1.Tag.2.Value", cfg->cloud_cluster);
    form_add(&f, "TagSpecification.1.Tag.3.Key", "framegate-model");
    form_add(&f, "TagSpecification.1.Tag.3.Value", c->model->name);
    free(ud);
    free(b64);
    GW_LOG_I("cloud_launch_ec2", "backend=%s type=%s image=%s", inst->name, cfg->ec2_instance_type,
             cfg->ec2_image);
    return ec2_call(c, &f, "RunInstances", inst, on_run);
}

static void on_listed(gw_cloud_t *c, gw_cloud_call_t *call, int ok, long status, const char *xml,
                      size_t len, const char *err)
{
    (void)call, (void)status;
    gw_ec2_instance_t *got = ok ? calloc(MAX_INSTANCES * 4, sizeof *got) : NULL;
    gw_cloud_found_t *found = ok ? calloc(MAX_INSTANCES * 4, sizeof *found) : NULL;
    int n = got && found ? gw_ec2_parse_instances(xml, len, got, MAX_INSTANCES * 4) : 0, m = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(got[i].state, "terminated") == 0 || strcmp(got[i].state, "shutting-down") == 0)
            continue;
        snprintf(found[m].id, sizeof found[m].id, "%s", got[i].id);
        snprintf(found[m].key, sizeof found[m].key, "%s", got[i].client_token);
        m++;
    }
    gw_cloud_listed(c, ok && got && found, found, m, err);
    free(got);
    free(found);
}

static int ec2_list(gw_cloud_t *c)
{
    form_t f = {0};
    form_add(&f, "Action", "DescribeInstances");
    form_add(&f, "Filter.1.Name", "tag:" CLUSTER_TAG);
    form_add(&f, "Filter.1.Value.1", c->cfg->cloud_cluster);
    form_add(&f, "Filter.2.Name", "tag:framegate-model");
    form_add(&f, "Filter.2.Value.1", c->model->name);
    return ec2_call(c, &f, "DescribeInstances", NULL, on_listed);
}

static void ec2_free(gw_cloud_t *c)
{
    ec2_t *p = (ec2_t *)c;
    if (p->imds_req != NULL) /* its callback runs now, cancelled */
        gw_fetch_cancel(p->imds_req);
    free(p);
}

static int ec2_retryable(long status, const char *err)
{
    return gw_ec2_retryable(status, err);
}

static const gw_cloud_ops_t ec2_cloud_ops = {
    .kind = "ec2",
    .send = ec2_send,
    .error_text = ec2_error_text,
    .retryable = ec2_retryable,
    .launch = ec2_launch,
    .terminate = ec2_terminate,
    .list = ec2_list,
    .free = ec2_free,
};

static const gw_provider_ops_t ec2_ops = GW_CLOUD_PROVIDER_OPS("ec2");

int gw_provider_ec2_create(gw_provider_t **out, uv_loop_t *loop, gw_fetch_t *fetch,
                           const gw_config_t *cfg, const gw_model_t *model,
                           gw_provider_exit_cb on_exit, char *err, size_t errcap)
{
    ec2_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return PROTO_ENOMEM;
    p->c.super.ops = &ec2_ops;
    int rv = gw_cloud_init(&p->c, &ec2_cloud_ops, loop, fetch, cfg, model, on_exit, 1, err, errcap);
    if (rv != 0) {
        free(p);
        return rv;
    }
    if (gw_ec2_creds_load(&p->creds) != 0) {
        /* on an instance: its role's credentials, from IMDSv2 (refreshed before expiry) */
        const char *e = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
        p->imds = 1;
        snprintf(p->imds_url, sizeof p->imds_url, "%s", e && *e ? e : "http://169.254.169.254");
        size_t l = strlen(p->imds_url);
        if (l > 0 && p->imds_url[l - 1] == '/')
            p->imds_url[l - 1] = '\0';
    }
    if (cfg->ec2_endpoint[0])
        snprintf(p->endpoint, sizeof p->endpoint, "%s", cfg->ec2_endpoint);
    else
        snprintf(p->endpoint, sizeof p->endpoint, "https://ec2.%s.amazonaws.com/", cfg->ec2_region);
    const char *h = strstr(p->endpoint, "://");
    h = h ? h + 3 : p->endpoint;
    size_t hl = strcspn(h, "/?");
    snprintf(p->host, sizeof p->host, "%.*s", (int)hl, h);
    gw_cloud_run(&p->c);
    GW_LOG_I("cloud_provider", "provider=ec2 model=%s endpoint=%s region=%s cluster=%s",
             model->name, p->endpoint, cfg->ec2_region, cfg->cloud_cluster);
    *out = &p->c.super;
    return 0;
}
