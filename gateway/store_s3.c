/* s3:// and gs://: S3's REST API over the loop's HTTP client (fetch.h), signed with SigV4
 * (sigv4.h). Any S3-compatible store works the same way (MinIO, Ceph RGW, R2): only the
 * endpoint, the region and path-style addressing differ. Google Cloud Storage is used
 * through its S3-compatible XML API (https://storage.googleapis.com) with HMAC keys: the
 * same code, no second signer, no service-account JWT exchange, no token refresh.
 *
 * Objects are PUT with x-amz-content-sha256 (the body's real SHA-256, sent and signed),
 * read with GET, listed with ListObjectsV2, deleted with DELETE. */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "sigv4.h"

typedef struct {
    gw_store_t super;
    uv_loop_t *loop;
    gw_fetch_t *fetch;
    const gw_config_t *cfg;
    char scheme[8]; /* "http" or "https" */
    char host[300]; /* the Host header: "127.0.0.1:9000", "bucket.s3.us-east-1.amazonaws.com" */
    char bucket[64];
    char prefix[256]; /* "" or "a/b/" */
    char region[64];
    char access_key[256], secret_key[256];
    int path_style;
    struct op *ops;
} s3_t;

enum { OP_PUT, OP_GET, OP_LIST, OP_DEL };

typedef struct op {
    s3_t *s;
    int kind;
    gw_fetch_req_t *req;
    void *cb, *arg;
    int max;
    size_t prefix_len; /* of the store's own prefix, stripped from listed keys */
    /* a put: its own copy of the body, hashed on the threadpool before it is signed */
    uv_work_t work;
    int hashing; /* the work is out: no request yet */
    int orphan;  /* destroyed while hashing: the work frees the op */
    char object[1100];
    char ctype[64];
    uint8_t *body;
    size_t len;
    char hash[65];
    struct op *next, *prev;
} op_t;

static void op_link(s3_t *s, op_t *o)
{
    o->s = s;
    o->next = s->ops;
    if (s->ops)
        s->ops->prev = o;
    s->ops = o;
}

static void op_unlink(op_t *o)
{
    s3_t *s = o->s;
    if (o->prev)
        o->prev->next = o->next;
    else
        s->ops = o->next;
    if (o->next)
        o->next->prev = o->prev;
}

/* ---- requests ---- */

/* Signs and starts one request. `object` is the object name (unencoded; "" for the bucket),
 * `query` already encoded. */
static int start(s3_t *s, op_t *o, const char *method, const char *object, const char *query,
                 const uint8_t *body, size_t len, const char *body_hash, const char *ctype,
                 size_t max_bytes, gw_fetch_cb cb)
{
    char path[1200], uri[3700], url[4200], amz[17], hash[65], auth[600];
    char h_host[320], h_date[40], h_hash[100], h_ctype[200], h_auth[640];
    if (s->path_style)
        snprintf(path, sizeof path, "/%s/%s", s->bucket, object);
    else
        snprintf(path, sizeof path, "/%s", object);
    /* S3 encodes the path once and never normalizes it */
    if (gw_sigv4_uri_encode(path, strlen(path), 1, uri, sizeof uri) < 0)
        return PROTO_EINVAL;
    snprintf(url, sizeof url, "%s://%s%s%s%s", s->scheme, s->host, uri, query[0] ? "?" : "", query);
    gw_sigv4_amz_date(time(NULL), amz);
    if (body_hash != NULL)
        snprintf(hash, sizeof hash, "%s", body_hash);
    else
        gw_sigv4_sha256_hex(body, len, hash);
    gw_sigv4_header_t sh[4] = {{"host", s->host},
                               {"x-amz-content-sha256", hash},
                               {"x-amz-date", amz},
                               {"content-type", ctype ? ctype : ""}};
    gw_sigv4_req_t sr = {.method = method,
                         .uri = uri,
                         .query = query,
                         .headers = sh,
                         .nheaders = ctype ? 4 : 3,
                         .payload_sha256 = hash,
                         .region = s->region,
                         .service = "s3",
                         .access_key = s->access_key,
                         .secret_key = s->secret_key,
                         .amz_date = amz};
    int rv = gw_sigv4_authorization(&sr, auth, sizeof auth);
    if (rv != 0)
        return rv;
    snprintf(h_host, sizeof h_host, "Host: %s", s->host);
    snprintf(h_date, sizeof h_date, "x-amz-date: %s", amz);
    snprintf(h_hash, sizeof h_hash, "x-amz-content-sha256: %s", hash);
    snprintf(h_ctype, sizeof h_ctype, "Content-Type: %s", ctype ? ctype : "");
    snprintf(h_auth, sizeof h_auth, "Authorization: %s", auth);
    const char *headers[] = {h_host, h_date, h_hash, h_auth, h_ctype};
    gw_fetch_opts_t fo = {
        .method = method,
        .url = url,
        .headers = headers,
        .nheaders = ctype ? 5 : 4,
        .body = body,
        .body_len = len,
        .max_bytes = max_bytes,
        .connect_timeout_ms = s->cfg->store_timeout_ms,
        .timeout_ms = s->cfg->store_timeout_ms,
        .max_redirects = 0,
        .policy = NULL,
    };
    return gw_fetch_start(s->fetch, &fo, cb, o, &o->req);
}

/* The error text of a failed answer: S3's <Code>, else the status. */
static void why(const gw_fetch_result_t *res, char *msg, size_t cap)
{
    if (res->err != 0) {
        snprintf(msg, cap, "%.190s", res->error);
        return;
    }
    const char *b = (const char *)res->body, *c = NULL, *e = NULL;
    if (b != NULL && (c = memmem(b, res->len, "<Code>", 6)) != NULL)
        e = memmem(c, res->len - (size_t)(c - b), "</Code>", 7);
    if (e != NULL)
        snprintf(msg, cap, "HTTP %ld %.*s", res->status, (int)(e - c - 6), c + 6);
    else
        snprintf(msg, cap, "HTTP %ld", res->status);
}

static void on_put_done(void *arg, gw_fetch_result_t *res)
{
    op_t *o = arg;
    char msg[200] = "";
    int err = res->err == UV_ECANCELED              ? UV_ECANCELED
              : res->err == 0 && res->status == 200 ? 0
                                                    : PROTO_ESTORE;
    if (err != 0)
        why(res, msg, sizeof msg);
    op_unlink(o);
    ((gw_store_done_cb)o->cb)(o->arg, err, err ? msg : NULL);
    free(o->body);
    free(o);
}

static void on_get_done(void *arg, gw_fetch_result_t *res)
{
    op_t *o = arg;
    char msg[200] = "";
    int err = res->err == UV_ECANCELED              ? UV_ECANCELED
              : res->err == 0 && res->status == 200 ? 0
              : res->err == 0 && res->status == 404 ? PROTO_ENOTFOUND
                                                    : PROTO_ESTORE;
    uint8_t *data = NULL;
    size_t len = 0;
    if (err != 0) {
        why(res, msg, sizeof msg);
    } else {
        data = res->body;
        len = res->len;
        res->body = NULL;
        if (data == NULL) /* an empty object */
            data = malloc(1);
    }
    op_unlink(o);
    ((gw_store_get_cb)o->cb)(o->arg, err, err ? msg : NULL, data, len);
    free(o);
}

/* DELETE answers 204 (S3, MinIO) or 200; 404 (a store that says so) is a key already gone. */
static void on_del_done(void *arg, gw_fetch_result_t *res)
{
    op_t *o = arg;
    char msg[200] = "";
    int err = res->err == UV_ECANCELED ? UV_ECANCELED
              : res->err == 0 && (res->status == 204 || res->status == 200 || res->status == 404)
                  ? 0
                  : PROTO_ESTORE;
    if (err != 0)
        why(res, msg, sizeof msg);
    op_unlink(o);
    ((gw_store_done_cb)o->cb)(o->arg, err, err ? msg : NULL);
    free(o);
}

/* Copies the text of the next <Key>...</Key> after *pos, XML entities decoded. */
static int next_key(const char *b, size_t len, size_t *pos, char *out, size_t cap)
{
    const char *s = memmem(b + *pos, len - *pos, "<Key>", 5);
    if (s == NULL)
        return 0;
    s += 5;
    const char *e = memmem(s, len - (size_t)(s - b), "</Key>", 6);
    if (e == NULL)
        return 0;
    *pos = (size_t)(e - b) + 6;
    size_t o = 0;
    static const struct {
        const char *ent;
        char ch;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    for (const char *p = s; p < e && o + 1 < cap; p++) {
        char ch = *p;
        if (ch == '&')
            for (size_t i = 0; i < sizeof ents / sizeof ents[0]; i++) {
                size_t n = strlen(ents[i].ent);
                if ((size_t)(e - p) >= n && memcmp(p, ents[i].ent, n) == 0) {
                    ch = ents[i].ch;
                    p += n - 1;
                    break;
                }
            }
        out[o++] = ch;
    }
    out[o] = '\0';
    return 1;
}

static void on_list_done(void *arg, gw_fetch_result_t *res)
{
    op_t *o = arg;
    char msg[200] = "";
    int err = res->err == UV_ECANCELED              ? UV_ECANCELED
              : res->err == 0 && res->status == 200 ? 0
                                                    : PROTO_ESTORE;
    char **keys = NULL;
    int n = 0;
    if (err != 0) {
        why(res, msg, sizeof msg);
    } else if (o->max > 0) {
        keys = calloc((size_t)o->max, sizeof *keys);
        size_t pos = 0;
        char key[1100];
        while (keys != NULL && n < o->max &&
               next_key((const char *)res->body, res->len, &pos, key, sizeof key)) {
            if (strlen(key) <= o->prefix_len || !gw_store_key_valid(key + o->prefix_len))
                continue; /* not one of ours */
            if ((keys[n] = strdup(key + o->prefix_len)) == NULL)
                break;
            n++;
        }
    }
    op_unlink(o);
    ((gw_store_list_cb)o->cb)(o->arg, err, err ? msg : NULL, keys, n);
    for (int i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
    free(o);
}

/* ---- ops ---- */

/* SHA-256 of a frame takes about half a millisecond: on the threadpool, not the loop. */
static void on_hash_work(uv_work_t *w)
{
    op_t *o = w->data;
    gw_sigv4_sha256_hex(o->body, o->len, o->hash);
}

static void on_hashed(uv_work_t *w, int status)
{
    op_t *o = w->data;
    o->hashing = 0;
    if (o->orphan) { /* destroy already called back */
        free(o->body);
        free(o);
        return;
    }
    int rv = status != 0 ? PROTO_ESTORE
                         : start(o->s, o, "PUT", o->object, "", o->body, o->len, o->hash, o->ctype,
                                 64 << 10, on_put_done);
    if (rv != 0) {
        op_unlink(o);
        ((gw_store_done_cb)o->cb)(o->arg, PROTO_ESTORE, proto_strerror(rv));
        free(o->body);
        free(o);
    }
}

static int s3_put(gw_store_t *st, const char *key, const uint8_t *data, size_t len,
                  const char *content_type, gw_store_done_cb cb, void *arg)
{
    s3_t *s = (s3_t *)st;
    if (!gw_store_key_valid(key))
        return PROTO_EINVAL;
    op_t *o = calloc(1, sizeof *o);
    if (o == NULL)
        return PROTO_ENOMEM;
    /* a copy: the caller may free its bytes once destroy has called back, while the hash
     * work may still be reading them */
    if ((o->body = malloc(len ? len : 1)) == NULL) {
        free(o);
        return PROTO_ENOMEM;
    }
    memcpy(o->body, data, len);
    o->len = len;
    o->kind = OP_PUT;
    o->cb = (void *)cb;
    o->arg = arg;
    snprintf(o->object, sizeof o->object, "%s%s", s->prefix, key);
    snprintf(o->ctype, sizeof o->ctype, "%s",
             content_type ? content_type : "application/octet-stream");
    o->work.data = o;
    int rv = uv_queue_work(s->loop, &o->work, on_hash_work, on_hashed);
    if (rv != 0) {
        free(o->body);
        free(o);
        return rv;
    }
    o->hashing = 1;
    op_link(s, o);
    return 0;
}

/* A body-less request on one object (GET, DELETE): its op, linked, then started. */
static int object_op(s3_t *s, int kind, const char *method, const char *key, size_t max_bytes,
                     gw_fetch_cb done, void *cb, void *arg)
{
    char object[1100];
    if (!gw_store_key_valid(key))
        return PROTO_EINVAL;
    snprintf(object, sizeof object, "%s%s", s->prefix, key);
    op_t *o = calloc(1, sizeof *o);
    if (o == NULL)
        return PROTO_ENOMEM;
    o->kind = kind;
    o->cb = cb;
    o->arg = arg;
    op_link(s, o);
    int rv = start(s, o, method, object, "", NULL, 0, GW_SIGV4_EMPTY_SHA256, NULL, max_bytes, done);
    if (rv != 0) {
        op_unlink(o);
        free(o);
    }
    return rv;
}

static int s3_get(gw_store_t *st, const char *key, size_t max_bytes, gw_store_get_cb cb, void *arg)
{
    return object_op((s3_t *)st, OP_GET, "GET", key, max_bytes, on_get_done, (void *)cb, arg);
}

static int s3_del(gw_store_t *st, const char *key, gw_store_done_cb cb, void *arg)
{
    /* the answer's body is an error document at most */
    return object_op((s3_t *)st, OP_DEL, "DELETE", key, 64 << 10, on_del_done, (void *)cb, arg);
}

static int s3_list(gw_store_t *st, const char *prefix, const char *start_after, int max,
                   gw_store_list_cb cb, void *arg)
{
    s3_t *s = (s3_t *)st;
    char full[1100], after[1100], eprefix[3400], eafter[3400], query[7000];
    if (max < 1 || max > 1000)
        return PROTO_EINVAL;
    snprintf(full, sizeof full, "%s%s", s->prefix, prefix);
    snprintf(after, sizeof after, "%s%s", s->prefix, start_after);
    if (gw_sigv4_uri_encode(full, strlen(full), 0, eprefix, sizeof eprefix) < 0 ||
        gw_sigv4_uri_encode(after, strlen(after), 0, eafter, sizeof eafter) < 0)
        return PROTO_EINVAL;
    /* the signer sorts the query; curl sends it as written */
    snprintf(query, sizeof query, "list-type=2&max-keys=%d&prefix=%s%s%s", max, eprefix,
             start_after[0] ? "&start-after=" : "", start_after[0] ? eafter : "");
    op_t *o = calloc(1, sizeof *o);
    if (o == NULL)
        return PROTO_ENOMEM;
    o->kind = OP_LIST;
    o->cb = (void *)cb;
    o->arg = arg;
    o->max = max;
    o->prefix_len = strlen(s->prefix);
    op_link(s, o);
    /* ~300 bytes of XML per key */
    int rv = start(s, o, "GET", "", query, NULL, 0, GW_SIGV4_EMPTY_SHA256, NULL,
                   (size_t)max * 1024 + 65536, on_list_done);
    if (rv != 0) {
        op_unlink(o);
        free(o);
    }
    return rv;
}

static int s3_create(gw_store_t **out, const gw_store_env_t *env, const char *url, char *err,
                     size_t cap)
{
    const gw_config_t *cfg = env->cfg;
    int gcs = strncmp(url, "gs://", 5) == 0;
    const char *b = url + 5, *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    s3_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return PROTO_ENOMEM;
    s->super.ops = &gw_store_s3_ops;
    s->loop = env->loop;
    s->fetch = env->fetch;
    s->cfg = cfg;
    if (blen == 0 || blen >= sizeof s->bucket) {
        snprintf(err, cap, "store: '%s' has no bucket name (s3://BUCKET/PREFIX)", url);
        free(s);
        return PROTO_ECONFIG;
    }
    memcpy(s->bucket, b, blen);
    if (slash != NULL && slash[1] != '\0') {
        const char *p = slash + 1;
        size_t n = strlen(p);
        while (n > 0 && p[n - 1] == '/')
            n--;
        if (n + 2 > sizeof s->prefix) {
            snprintf(err, cap, "store: prefix too long");
            free(s);
            return PROTO_ECONFIG;
        }
        memcpy(s->prefix, p, n);
        s->prefix[n] = '\0';
        if (n > 0 && !gw_store_key_valid(s->prefix)) {
            snprintf(err, cap, "store: prefix '%s' must be [A-Za-z0-9._-] segments", s->prefix);
            free(s);
            return PROTO_ECONFIG;
        }
        if (n > 0)
            s->prefix[n] = '/'; /* the byte after it is still 0 (calloc) */
    }
    snprintf(s->region, sizeof s->region, "%s",
             cfg->s3_region[0] ? cfg->s3_region : (gcs ? "auto" : "us-east-1"));
    const char *ak = cfg->s3_access_key[0] ? cfg->s3_access_key : getenv("AWS_ACCESS_KEY_ID");
    const char *sk = cfg->s3_secret_key[0] ? cfg->s3_secret_key : getenv("AWS_SECRET_ACCESS_KEY");
    if (ak == NULL || sk == NULL || ak[0] == '\0' || sk[0] == '\0' ||
        strlen(ak) >= sizeof s->access_key || strlen(sk) >= sizeof s->secret_key) {
        snprintf(err, cap,
                 "store: %s needs s3_access_key and s3_secret_key (or "
                 "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)",
                 url);
        free(s);
        return PROTO_ECONFIG;
    }
    snprintf(s->access_key, sizeof s->access_key, "%s", ak);
    snprintf(s->secret_key, sizeof s->secret_key, "%s", sk);
    /* endpoint: "https://host[:port]"; default AWS's regional one, or Google's */
    char ep[GW_CONFIG_STR_MAX];
    if (cfg->s3_endpoint[0])
        snprintf(ep, sizeof ep, "%s", cfg->s3_endpoint);
    else if (gcs)
        snprintf(ep, sizeof ep, "https://storage.googleapis.com");
    else
        snprintf(ep, sizeof ep, "https://s3.%s.amazonaws.com", s->region);
    const char *hs = strstr(ep, "://");
    if (hs == NULL || (size_t)(hs - ep) >= sizeof s->scheme || (strncmp(ep, "http", 4) != 0) ||
        strchr(hs + 3, '/') != NULL || hs[3] == '\0' || strlen(hs + 3) + blen + 2 >= 230) {
        snprintf(err, cap, "s3_endpoint: '%s' must be http(s)://HOST[:PORT] with no path", ep);
        free(s);
        return PROTO_ECONFIG;
    }
    memcpy(s->scheme, ep, (size_t)(hs - ep));
    s->path_style = cfg->s3_path_style;
    if (s->path_style)
        snprintf(s->host, sizeof s->host, "%.290s", hs + 3);
    else
        snprintf(s->host, sizeof s->host, "%s.%.230s", s->bucket, hs + 3);
    *out = &s->super;
    return 0;
}

static void s3_destroy(gw_store_t *st)
{
    s3_t *s = (s3_t *)st;
    while (s->ops != NULL) {
        op_t *o = s->ops;
        if (o->hashing) { /* no request yet: call back now, the work frees it */
            op_unlink(o);
            o->orphan = 1;
            ((gw_store_done_cb)o->cb)(o->arg, UV_ECANCELED, "store closed");
        } else {
            gw_fetch_cancel(o->req); /* its callback unlinks and frees it */
        }
    }
    free(s);
}

const gw_store_ops_t gw_store_s3_ops = {
    .kind = "s3",
    .create = s3_create,
    .destroy = s3_destroy,
    .put = s3_put,
    .get = s3_get,
    .list = s3_list,
    .del = s3_del,
};
