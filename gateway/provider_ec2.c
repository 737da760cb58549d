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
#include "provider_ec2.h"
#include "sigv4.h"

#define API_VERSION "2016-11-15"
#define CLUSTER_TAG "framegate-cluster"
#define MAX_ATTEMPTS 6
#define BACKOFF_BASE_MS 200
#define BACKOFF_MAX_MS 10000
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

/* ---- the provider ---- */

typedef struct ec2 ec2_t;

typedef enum { I_LAUNCHING, I_PENDING, I_JOINED, I_TERMINATING } inst_state_t;

struct gw_instance {
    ec2_t *p;
    void *owner;
    char name[GW_MODEL_NAME_MAX + 32];
    char token[96]; /* ClientToken and the backend's --instance: how it is recognised */
    char id[32];    /* i-...; "" until RunInstances answered */
    inst_state_t state;
    int stop_wanted;
    int reported; /* on_exit was called */
    gw_instance_t *next;
};

/* One API call with its retries. */
typedef struct call call_t;
typedef void (*call_cb)(ec2_t *p, call_t *c, int ok, const char *xml, size_t len, const char *err);
struct call {
    ec2_t *p;
    char *body;
    size_t body_len;
    char action[32];
    int attempts;
    call_cb cb;
    gw_instance_t *inst; /* the instance it is about, or NULL */
    gw_fetch_req_t *req;
    uv_timer_t timer; /* backoff */
    int timer_used;
    call_t *next;
};

struct ec2 {
    gw_provider_t super;
    uv_loop_t *loop;
    gw_fetch_t *fetch;
    const gw_config_t *cfg;
    const gw_model_t *model;
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
    char join_url[1024];
    char *ca, *cert, *key; /* PEM texts for the user data */
    gw_instance_t *insts;
    int live;
    call_t *calls;
    uv_timer_t sweep;
    int sweeping;
    int destroying;
    uint64_t starts[1024]; /* ring of start times (loop clock) for the per-hour cap */
    int nstarts;
    char last_error[512];
    uint64_t errors;
};

static void set_error(ec2_t *p, const char *action, const char *err)
{
    p->errors++;
    snprintf(p->last_error, sizeof p->last_error, "%s: %s", action, err);
    GW_LOG_W("cloud_api_error", "provider=ec2 model=%s action=%s error=\"%s\"", p->model->name,
             action, err);
}

static void on_call_timer_closed(uv_handle_t *h)
{
    call_t *c = h->data;
    free(c->body);
    free(c);
}

/* Unlinks the call now (the provider may go right after) and frees it, once its timer has
 * closed if it has one. */
static void call_done(call_t *c)
{
    ec2_t *p = c->p;
    for (call_t **pp = &p->calls; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    if (c->timer_used) {
        uv_close((uv_handle_t *)&c->timer, on_call_timer_closed);
    } else {
        free(c->body);
        free(c);
    }
}

static void call_send(call_t *c);

static void on_backoff(uv_timer_t *t)
{
    call_send(t->data);
}

static void on_fetched(void *arg, gw_fetch_result_t *res)
{
    call_t *c = arg;
    ec2_t *p = c->p;
    char err[600] = "";
    c->req = NULL;
    if (res->err == UV_ECANCELED || p->destroying) {
        c->cb(p, c, 0, NULL, 0, "cancelled");
        call_done(c);
        return;
    }
    const char *xml = (const char *)res->body;
    size_t len = res->body ? res->len : 0;
    if (res->err == 0 && res->status == 200) {
        c->cb(p, c, 1, xml, len, NULL);
        call_done(c);
        return;
    }
    if (res->err != 0)
        snprintf(err, sizeof err, "%s", res->error[0] ? res->error : proto_strerror(res->err));
    else if (!gw_ec2_parse_error(xml ? xml : "", len, err, sizeof err))
        snprintf(err, sizeof err, "HTTP %ld", res->status);
    set_error(p, c->action, err);
    if (gw_ec2_retryable(res->err != 0 ? 0 : res->status, err) && ++c->attempts < MAX_ATTEMPTS) {
        /* full jitter: a throttled API is not hammered by every gateway in step */
        uint64_t cap = (uint64_t)BACKOFF_BASE_MS << c->attempts;
        if (cap > BACKOFF_MAX_MS)
            cap = BACKOFF_MAX_MS;
        uint64_t delay = cap / 2 + (uint64_t)rand() % (cap / 2 + 1);
        if (!c->timer_used) {
            uv_timer_init(p->loop, &c->timer);
            c->timer.data = c;
            c->timer_used = 1;
        }
        uv_timer_start(&c->timer, on_backoff, delay, 0);
        return;
    }
    c->cb(p, c, 0, xml, len, err);
    call_done(c);
}

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
        set_error(p, what, e);
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
        set_error(p, "IMDS credentials", "answer without AccessKeyId/SecretAccessKey/Token");
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
        set_error(p, "IMDS role", "no instance profile attached");
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
        set_error(p, "IMDS token", "empty or oversized token");
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
                         .timeout_ms = p->cfg->cloud_api_timeout_ms};
    if (gw_fetch_start(p->fetch, &o, cb, p, &p->imds_req) != 0) {
        set_error(p, "IMDS", "request could not be started");
        p->imds_busy = 0;
    }
}

/* Starts a refresh when there are no credentials yet or they expire within 5 minutes. */
static void imds_refresh(ec2_t *p)
{
    if (!p->imds || p->imds_busy || p->destroying)
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
                         .timeout_ms = p->cfg->cloud_api_timeout_ms};
    if (gw_fetch_start(p->fetch, &o, on_imds_token, p, &p->imds_req) != 0) {
        set_error(p, "IMDS token", "request could not be started");
        p->imds_busy = 0;
    }
}

static void call_send(call_t *c)
{
    ec2_t *p = c->p;
    char amz[17], auth[512], hdr_auth[600], hdr_date[64], hdr_tok[2100];
    imds_refresh(p);
    if (p->creds.access_key[0] == '\0') { /* IMDS has not answered yet: try again soon */
        if (++c->attempts > 50) {
            c->cb(p, c, 0, NULL, 0, "no credentials from the instance metadata service");
            call_done(c);
            return;
        }
        uv_timer_start(&c->timer, on_backoff, 200, 0);
        return;
    }
    gw_sigv4_amz_date(time(NULL), amz);
    int rv = gw_ec2_authorization(&p->creds, p->cfg->ec2_region, p->host, c->body, c->body_len, amz,
                                  auth, sizeof auth);
    if (rv == 0) {
        snprintf(hdr_auth, sizeof hdr_auth, "Authorization: %s", auth);
        snprintf(hdr_date, sizeof hdr_date, "X-Amz-Date: %s", amz);
        snprintf(hdr_tok, sizeof hdr_tok, "X-Amz-Security-Token: %s", p->creds.token);
        const char *headers[] = {"Content-Type: application/x-www-form-urlencoded; charset=utf-8",
                                 hdr_date, hdr_auth, hdr_tok};
        gw_fetch_opts_t o = {.method = "POST",
                             .url = p->endpoint,
                             .headers = headers,
                             .nheaders = p->creds.token[0] ? 4 : 3,
                             .body = (const uint8_t *)c->body,
                             .body_len = c->body_len,
                             .max_bytes = 4 << 20,
                             .connect_timeout_ms = p->cfg->cloud_api_timeout_ms,
                             .timeout_ms = p->cfg->cloud_api_timeout_ms,
                             .ca_file = p->cfg->ec2_ca_file};
        rv = gw_fetch_start(p->fetch, &o, on_fetched, c, &c->req);
    }
    if (rv != 0) {
        set_error(p, c->action, proto_strerror(rv));
        c->cb(p, c, 0, NULL, 0, proto_strerror(rv));
        call_done(c);
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

/* Starts an API call of form f (it takes f's buffer). Returns 0 (cb will run, on the loop),
 * or a negative code (it will not). */
static int call_start(ec2_t *p, form_t *f, const char *action, gw_instance_t *inst, call_cb cb,
                      uint64_t delay_ms)
{
    call_t *c = calloc(1, sizeof *c);
    form_add(f, "Version", API_VERSION);
    if (c == NULL || f->failed) {
        free(f->s);
        free(c);
        set_error(p, action, "request could not be built (memory or size)");
        return PROTO_ENOMEM;
    }
    c->p = p;
    c->body = f->s;
    c->body_len = f->len;
    c->cb = cb;
    c->inst = inst;
    snprintf(c->action, sizeof c->action, "%s", action);
    c->next = p->calls;
    p->calls = c;
    /* always from the loop: a callback never runs inside the caller (start() among them) */
    uv_timer_init(p->loop, &c->timer);
    c->timer.data = c;
    c->timer_used = 1;
    uv_timer_start(&c->timer, on_backoff, delay_ms, 0);
    return 0;
}

static gw_instance_t *find_token(ec2_t *p, const char *token)
{
    for (gw_instance_t *i = p->insts; i; i = i->next)
        if (strcmp(i->token, token) == 0)
            return i;
    return NULL;
}

static void report_exit(ec2_t *p, gw_instance_t *inst, const char *why)
{
    if (inst->reported)
        return;
    inst->reported = 1;
    for (gw_instance_t **pp = &p->insts; *pp; pp = &(*pp)->next)
        if (*pp == inst) {
            *pp = inst->next;
            break;
        }
    p->live--;
    /* calls still about it must not touch it */
    for (call_t *c = p->calls; c; c = c->next)
        if (c->inst == inst)
            c->inst = NULL;
    p->super.on_exit(inst->owner, inst, 0, 0, why);
    free(inst);
}

static void on_terminated(ec2_t *p, call_t *c, int ok, const char *xml, size_t len, const char *err)
{
    (void)xml;
    (void)len;
    gw_instance_t *inst = c ? c->inst : NULL;
    if (inst == NULL)
        return;
    char why[700];
    if (ok) {
        GW_LOG_I("cloud_terminated", "provider=ec2 backend=%s instance=%s", inst->name, inst->id);
        report_exit(p, inst, "instance terminated");
    } else {
        /* The sweep terminates it later (it carries our cluster tag and nobody owns it
         * once it is forgotten here); the pool must not wait for it forever. */
        snprintf(why, sizeof why, "TerminateInstances failed (%s); the orphan sweep retries",
                 err ? err : "?");
        GW_LOG_E("cloud_terminate_failed", "provider=ec2 backend=%s instance=%s error=\"%s\"",
                 inst->name, inst->id, err ? err : "?");
        report_exit(p, inst, why);
    }
}

static void terminate_id(ec2_t *p, const char *id, gw_instance_t *inst)
{
    form_t f = {0};
    form_add(&f, "Action", "TerminateInstances");
    form_add(&f, "InstanceId.1", id);
    if (call_start(p, &f, "TerminateInstances", inst, on_terminated, 0) != 0 && inst != NULL)
        report_exit(p, inst, "TerminateInstances could not be sent; the orphan sweep retries");
}

static void on_run(ec2_t *p, call_t *c, int ok, const char *xml, size_t len, const char *err)
{
    gw_instance_t *inst = c ? c->inst : NULL;
    if (inst == NULL)
        return;
    if (!ok) {
        char why[700];
        snprintf(why, sizeof why, "RunInstances failed: %s", err ? err : "?");
        report_exit(p, inst, why);
        return;
    }
    gw_ec2_instance_t got[1];
    if (gw_ec2_parse_instances(xml, len, got, 1) != 1) {
        set_error(p, "RunInstances", "answer without an instance");
        report_exit(p, inst, "RunInstances answered without an instance");
        return;
    }
    snprintf(inst->id, sizeof inst->id, "%s", got[0].id);
    GW_LOG_I("cloud_launched", "provider=ec2 backend=%s instance=%s token=%s", inst->name, inst->id,
             inst->token);
    if (inst->state == I_LAUNCHING)
        inst->state = I_PENDING;
    if (inst->stop_wanted) {
        inst->state = I_TERMINATING;
        terminate_id(p, inst->id, inst);
    }
}

static int ec2_start(gw_provider_t *gp, const char *name, void *owner, gw_instance_t **out,
                     char *addr, size_t addr_cap)
{
    ec2_t *p = (ec2_t *)gp;
    uint64_t now = uv_now(p->loop);
    int recent = 0;
    for (int i = 0; i < p->nstarts && i < 1024; i++)
        recent += now - p->starts[i] < 3600000;
    if (recent >= p->cfg->cloud_max_starts_per_hour) {
        snprintf(p->last_error, sizeof p->last_error,
                 "cloud_max_starts_per_hour (%d) reached: no new instance for now",
                 p->cfg->cloud_max_starts_per_hour);
        return PROTO_ENOBACKEND;
    }
    if (p->live >= MAX_INSTANCES)
        return PROTO_ENOBACKEND;
    gw_instance_t *inst = calloc(1, sizeof *inst);
    char *ud = malloc(MAX_BODY / 2), *b64 = malloc(MAX_BODY);
    size_t b64_len = 0;
    if (inst == NULL || ud == NULL || b64 == NULL) {
        free(inst), free(ud), free(b64);
        return PROTO_ENOMEM;
    }
    inst->p = p;
    inst->owner = owner;
    snprintf(inst->name, sizeof inst->name, "%s", name);
    snprintf(inst->token, sizeof inst->token, "%s-%08x%08x", name, (unsigned)rand(),
             (unsigned)rand());
    int n = gw_ec2_user_data(p->cfg, p->model, inst->token, p->join_url, p->ca, p->cert, p->key, ud,
                             MAX_BODY / 2);
    if (n < 0 || mbedtls_base64_encode((unsigned char *)b64, MAX_BODY - 1, &b64_len,
                                       (const unsigned char *)ud, (size_t)n) != 0) {
        free(inst), free(ud), free(b64);
        return PROTO_ETOOBIG;
    }
    b64[b64_len] = '\0';
    form_t f = {0};
    form_add(&f, "Action", "RunInstances");
    form_add(&f, "ClientToken", inst->token);
    form_add(&f, "ImageId", p->cfg->ec2_image);
    form_add(&f, "InstanceType", p->cfg->ec2_instance_type);
    form_add(&f, "MinCount", "1");
    form_add(&f, "MaxCount", "1");
    if (p->cfg->ec2_subnet[0])
        form_add(&f, "SubnetId", p->cfg->ec2_subnet);
    char groups[sizeof p->cfg->ec2_security_groups];
    snprintf(groups, sizeof groups, "%s", p->cfg->ec2_security_groups);
    int g = 0;
    for (char *save = NULL, *w = strtok_r(groups, ", ", &save); w;
         w = strtok_r(NULL, ", ", &save)) {
        char k[32];
        snprintf(k, sizeof k, "SecurityGroupId.%d", ++g);
        form_add(&f, k, w);
    }
    if (p->cfg->ec2_instance_profile[0])
        form_add(&f,
                 strncmp(p->cfg->ec2_instance_profile, "arn:", 4) == 0 ? "IamInstanceProfile.Arn"
                                                                       : "IamInstanceProfile.Name",
                 p->cfg->ec2_instance_profile);
    form_add(&f, "UserData", b64);
    form_add(&f, "TagSpecification.1.ResourceType", "instance");
    form_add(&f, "TagSpecification.1.Tag.1.Key", "Name");
    form_add(&f, "TagSpecification.1.Tag.1.Value", name);
    form_add(&f, "TagSpecification.1.Tag.2.Key", CLUSTER_TAG);
    form_add(&f, "TagSpecification.1.Tag.2.Value", p->cfg->cloud_cluster);
    form_add(&f, "TagSpecification.1.Tag.3.Key", "framegate-model");
    form_add(&f, "TagSpecification.1.Tag.3.Value", p->model->name);
    free(ud);
    free(b64);
    if (f.failed) {
        free(f.s);
        free(inst);
        return PROTO_ETOOBIG;
    }
    (void)addr_cap;
    inst->state = I_LAUNCHING;
    inst->next = p->insts;
    p->insts = inst;
    p->live++;
    p->starts[p->nstarts++ % 1024] = now;
    if (p->nstarts >= 2048)
        p->nstarts -= 1024;
    addr[0] = '\0'; /* known when its backend joins */
    *out = inst;
    if (call_start(p, &f, "RunInstances", inst, on_run, 0) != 0) {
        p->insts = inst->next;
        p->live--;
        free(inst);
        return PROTO_ENOMEM;
    }
    GW_LOG_I("cloud_launch", "provider=ec2 backend=%s token=%s type=%s image=%s", name, inst->token,
             p->cfg->ec2_instance_type, p->cfg->ec2_image);
    return 0;
}

static void ec2_stop(gw_provider_t *gp, gw_instance_t *inst, int force)
{
    ec2_t *p = (ec2_t *)gp;
    (void)force; /* TerminateInstances is the only way; the backend drains on its SIGTERM */
    if (inst->stop_wanted)
        return;
    inst->stop_wanted = 1;
    if (inst->id[0] == '\0')
        return; /* RunInstances in flight: terminated when it answers (on_run) */
    inst->state = I_TERMINATING;
    terminate_id(p, inst->id, inst);
}

static void ec2_instance_id(gw_provider_t *gp, gw_instance_t *inst, char *buf, size_t cap)
{
    (void)gp;
    snprintf(buf, cap, "%s", inst->id[0] ? inst->id : "launching");
}

static int ec2_live(gw_provider_t *gp)
{
    return ((ec2_t *)gp)->live;
}

static int ec2_joined(gw_provider_t *gp, const char *name, const char *addr)
{
    ec2_t *p = (ec2_t *)gp;
    gw_instance_t *inst = find_token(p, name);
    if (inst == NULL)
        return PROTO_EINVAL;
    if (inst->state == I_LAUNCHING || inst->state == I_PENDING) {
        inst->state = I_JOINED;
        GW_LOG_I("cloud_joined", "provider=ec2 backend=%s instance=%s addr=%s", inst->name,
                 inst->id, addr);
        p->super.on_address(inst->owner, inst, addr);
    }
    return 0;
}

static const char *ec2_api_error(gw_provider_t *gp, uint64_t *errors)
{
    ec2_t *p = (ec2_t *)gp;
    if (errors)
        *errors = p->errors;
    return p->last_error;
}

/* ---- the orphan sweep ---- */

static void on_swept(ec2_t *p, call_t *c, int ok, const char *xml, size_t len, const char *err)
{
    (void)c;
    (void)err;
    p->sweeping = 0;
    if (!ok || p->destroying)
        return;
    gw_ec2_instance_t *found = calloc(MAX_INSTANCES * 4, sizeof *found);
    if (found == NULL)
        return;
    int n = gw_ec2_parse_instances(xml, len, found, MAX_INSTANCES * 4);
    int orphans = 0;
    for (int i = 0; i < n; i++) {
        gw_ec2_instance_t *f = &found[i];
        if (strcmp(f->state, "terminated") == 0 || strcmp(f->state, "shutting-down") == 0)
            continue;
        gw_instance_t *mine = find_token(p, f->client_token);
        if (mine != NULL) {
            if (mine->id[0] == '\0') /* RunInstances' answer not back yet */
                snprintf(mine->id, sizeof mine->id, "%s", f->id);
            continue;
        }
        /* Tagged with our cluster, owned by no live instance here: a crashed gateway's, or
         * one whose termination failed. */
        GW_LOG_W("cloud_orphan",
                 "provider=ec2 model=%s instance=%s state=%s token=%s "
                 "action=terminate",
                 p->model->name, f->id, f->state, f->client_token);
        terminate_id(p, f->id, NULL);
        orphans++;
    }
    free(found);
    if (orphans > 0)
        GW_LOG_I("cloud_sweep", "provider=ec2 model=%s instances=%d orphans=%d", p->model->name, n,
                 orphans);
}

static void on_sweep(uv_timer_t *t)
{
    ec2_t *p = t->data;
    if (p->sweeping || p->destroying)
        return;
    p->sweeping = 1;
    form_t f = {0};
    form_add(&f, "Action", "DescribeInstances");
    form_add(&f, "Filter.1.Name", "tag:" CLUSTER_TAG);
    form_add(&f, "Filter.1.Value.1", p->cfg->cloud_cluster);
    form_add(&f, "Filter.2.Name", "tag:framegate-model");
    form_add(&f, "Filter.2.Value.1", p->model->name);
    if (call_start(p, &f, "DescribeInstances", NULL, on_swept, 0) != 0)
        p->sweeping = 0;
}

static void on_sweep_closed(uv_handle_t *h)
{
    ec2_t *p = h->data;
    free(p->ca);
    free(p->cert);
    free(p->key);
    free(p);
}

static void ec2_destroy(gw_provider_t *gp)
{
    ec2_t *p = (ec2_t *)gp;
    p->destroying = 1;
    uv_timer_stop(&p->sweep);
    if (p->imds_req != NULL)
        gw_fetch_cancel(p->imds_req); /* its callback runs now, cancelled */
    /* calls in flight or waiting (a sweep, orphan terminations): cancel; each callback
     * (cancelled) unlinks its call */
    while (p->calls != NULL) {
        call_t *c = p->calls;
        if (c->req != NULL) {
            gw_fetch_cancel(c->req);
        } else {
            uv_timer_stop(&c->timer);
            c->cb(p, c, 0, NULL, 0, "cancelled");
            call_done(c);
        }
    }
    uv_close((uv_handle_t *)&p->sweep, on_sweep_closed);
}

static const gw_provider_ops_t ec2_ops = {
    .kind = "ec2",
    .start = ec2_start,
    .stop = ec2_stop,
    .instance_id = ec2_instance_id,
    .live = ec2_live,
    .destroy = ec2_destroy,
    .joined = ec2_joined,
    .api_error = ec2_api_error,
};

static char *read_text(const char *path, char *err, size_t cap)
{
    FILE *f = fopen(path, "r");
    char *s = f ? malloc(16384) : NULL;
    size_t n = s ? fread(s, 1, 16383, f) : 0;
    if (f)
        fclose(f);
    if (s == NULL || n == 0 || n >= 16383) {
        snprintf(err, cap, "%s: cannot read (or empty, or over 16 KiB)", path);
        free(s);
        return NULL;
    }
    s[n] = '\0';
    if (s[n - 1] != '\n' && n < 16382) {
        s[n] = '\n';
        s[n + 1] = '\0';
    }
    return s;
}

int gw_provider_ec2_create(gw_provider_t **out, uv_loop_t *loop, gw_fetch_t *fetch,
                           const gw_config_t *cfg, const gw_model_t *model,
                           gw_provider_exit_cb on_exit, char *err, size_t errcap)
{
    ec2_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return PROTO_ENOMEM;
    p->super.ops = &ec2_ops;
    p->super.on_exit = on_exit;
    p->loop = loop;
    p->fetch = fetch;
    p->cfg = cfg;
    p->model = model;
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
    snprintf(p->join_url, sizeof p->join_url, "%s",
             cfg->cloud_join_url[0] ? cfg->cloud_join_url : cfg->join_listen);
    if ((p->ca = read_text(cfg->tls_ca, err, errcap)) == NULL ||
        (p->cert = read_text(cfg->cloud_backend_cert, err, errcap)) == NULL ||
        (p->key = read_text(cfg->cloud_backend_key, err, errcap)) == NULL) {
        free(p->ca);
        free(p->cert);
        free(p);
        return PROTO_ECONFIG;
    }
    srand((unsigned)time(NULL) ^ (unsigned)(uintptr_t)p);
    uv_timer_init(loop, &p->sweep);
    p->sweep.data = p;
    /* at once (a crashed predecessor's instances), then periodically */
    uv_timer_start(&p->sweep, on_sweep, 0, cfg->cloud_reap_interval_ms);
    GW_LOG_I("cloud_provider", "provider=ec2 model=%s endpoint=%s region=%s cluster=%s",
             model->name, p->endpoint, cfg->ec2_region, cfg->cloud_cluster);
    *out = &p->super;
    return 0;
}
