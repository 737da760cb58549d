/* See jobs.h and jobs_internal.h: the routes. Parses uploads and queries, answers in JSON or
 * text; every change to a job goes through jobs.c. */
#include "jobs.h"
#include "jobs_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "body.h"
#include "err.h"
#include "response.h"

#define PAGE_MAX 1000

/* ---- the upload ---- */

typedef struct {
    gw_jobs_t *js;
    gw__batch_t *j;
    size_t bytes;
    int err;
    char msg[160];
} upload_t;

static int add_image(upload_t *u, const char *name, const uint8_t *data, size_t len)
{
    int rv = gw__jobs_add(u->js, u->j, u->bytes, name, data, len, u->msg, sizeof u->msg);
    if (rv != 0)
        return u->err = rv;
    u->bytes += len;
    return 0;
}

static int on_part(void *arg, const gw_part_t *part)
{
    upload_t *u = arg;
    if (part->filename[0] == '\0' && strncmp(part->content_type, "image/", 6) != 0 &&
        strcmp(part->name, "image") != 0 && strcmp(part->name, "images") != 0 &&
        strcmp(part->name, "file") != 0 && strcmp(part->name, "files") != 0)
        return 0; /* a form field */
    int rv = add_image(u, part->filename, part->data, part->len);
    return rv;
}

/* A "key" item needs a store to read it from: the job's model's. */
static int has_store(const upload_t *u)
{
    gw_storage_t *st = NULL;
    const gw_jobs_io_t *io = &u->js->io;
    return io->storage_of != NULL && io->storage_of(io->ctx, u->j->model, &st) == 0 && st != NULL;
}

static int add_ref(upload_t *u, const cJSON *name, int src, const cJSON *ref)
{
    if (!cJSON_IsString(ref)) {
        snprintf(u->msg, sizeof u->msg, "image %d: %s must be a string", u->j->n,
                 src == GW__SRC_URL ? "url" : "key");
        return u->err = PROTO_EINVAL;
    }
    if (src == GW__SRC_URL && u->js->io.fetch == NULL) {
        snprintf(u->msg, sizeof u->msg, "images by URL are not served here");
        return u->err = PROTO_EINVAL;
    }
    if (src == GW__SRC_KEY && !has_store(u)) {
        snprintf(u->msg, sizeof u->msg,
                 "image %d: a key needs a store for the job's model "
                 "(key 'store')",
                 u->j->n);
        return u->err = PROTO_EINVAL;
    }
    int rv = gw__jobs_add_ref(u->js, u->j, cJSON_IsString(name) ? name->valuestring : NULL, src,
                              ref->valuestring, u->msg, sizeof u->msg);
    return rv != 0 ? (u->err = rv) : 0;
}

/* {"images": [base64 | {"name", "image"} | {"url", "name"} | {"key", "name"}], "urls": [URL],
 * "keys": [KEY]}: the images in that order (images, then urls, then keys). */
static void parse_json_images(upload_t *u, const gw_req_t *r)
{
    cJSON *root = cJSON_ParseWithLength((const char *)r->body, r->body_len);
    const cJSON *imgs = root ? cJSON_GetObjectItemCaseSensitive(root, "images") : NULL;
    const cJSON *urls = root ? cJSON_GetObjectItemCaseSensitive(root, "urls") : NULL;
    const cJSON *keys = root ? cJSON_GetObjectItemCaseSensitive(root, "keys") : NULL;
    if (!cJSON_IsArray(imgs) && !cJSON_IsArray(urls) && !cJSON_IsArray(keys)) {
        snprintf(u->msg, sizeof u->msg,
                 "the body must be {\"images\": [base64, {\"name\", \"image\"}, {\"url\"} or "
                 "{\"key\"}]}, {\"urls\": [...]} or {\"keys\": [...]}");
        u->err = PROTO_EINVAL;
        cJSON_Delete(root);
        return;
    }
    const cJSON *it, *list = cJSON_IsArray(imgs) ? imgs : NULL;
    cJSON_ArrayForEach(it, list)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
        const cJSON *url = cJSON_GetObjectItemCaseSensitive(it, "url");
        const cJSON *key = cJSON_GetObjectItemCaseSensitive(it, "key");
        if (url != NULL || key != NULL) {
            if (add_ref(u, name, url != NULL ? GW__SRC_URL : GW__SRC_KEY,
                        url != NULL ? url : key) != 0)
                break;
            continue;
        }
        const cJSON *data = cJSON_IsString(it) ? it : cJSON_GetObjectItemCaseSensitive(it, "image");
        if (!cJSON_IsString(data)) {
            snprintf(u->msg, sizeof u->msg, "image %d is not a base64 string", u->j->n);
            u->err = PROTO_EINVAL;
            break;
        }
        size_t in = strlen(data->valuestring), len = 0;
        uint8_t *buf = malloc(gw_body_b64_max(in) + 1);
        if (buf == NULL || gw_body_b64_decode(data->valuestring, in, buf, &len) != 0) {
            free(buf);
            snprintf(u->msg, sizeof u->msg, "image %d is not valid base64", u->j->n);
            u->err = PROTO_EINVAL;
            break;
        }
        int rv = add_image(u, cJSON_IsString(name) ? name->valuestring : NULL, buf, len);
        free(buf);
        if (rv != 0)
            break;
    }
    list = u->err == 0 && cJSON_IsArray(urls) ? urls : NULL;
    cJSON_ArrayForEach(it, list)
    {
        if (add_ref(u, NULL, GW__SRC_URL, it) != 0)
            break;
    }
    list = u->err == 0 && cJSON_IsArray(keys) ? keys : NULL;
    cJSON_ArrayForEach(it, list)
    {
        if (add_ref(u, NULL, GW__SRC_KEY, it) != 0)
            break;
    }
    cJSON_Delete(root);
}

static int query_get(const char *query, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t l = amp ? (size_t)(amp - p) : strlen(p);
        if (l > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t vl = l - kl - 1 < cap - 1 ? l - kl - 1 : cap - 1;
            memcpy(out, p + kl + 1, vl);
            out[vl] = '\0';
            return 1;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

static void respond_json(gw_req_t *r, int status, cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    gw_respond(r, status, "application/json", s, s ? strlen(s) : 0, NULL);
}

/* A request waiting for the store: an upload's commit, an image read, a reset. */
typedef struct {
    gw_req_t *r;
    gw_jobs_t *js;
    gw__batch_t *j;
    int n; /* a reset: how many jobs it dropped */
} wait_t;

static wait_t *wait_new(gw_req_t *r, gw_jobs_t *js, gw__batch_t *j)
{
    wait_t *w = malloc(sizeof *w);
    if (w == NULL)
        return NULL;
    w->r = r;
    w->js = js;
    w->j = j;
    w->n = 0;
    gw_req_hold(r);
    return w;
}

/* The upload's end (gw__jobs_commit): 202 once stored, or the store's error (the job is
 * dropped with what was written of it). */
static void on_committed(void *arg, int err, const char *msg)
{
    wait_t *w = arg;
    gw_req_t *r = w->r;
    if (err != 0) {
        gw__jobs_abort(w->js, w->j);
        gw_respond_err(r, err, "%s", msg ? msg : proto_strerror(err));
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", w->j->id);
        cJSON_AddNumberToObject(o, "images", w->j->n);
        respond_json(r, 202, o);
    }
    free(w);
    gw_req_release(r);
}

void gw_jobs_on_create(void *arg, gw_req_t *r)
{
    gw_jobs_t *js = arg;
    const gw_config_t *cfg = js->cfg;
    if (cfg->max_jobs == 0) {
        gw_respond_error(r, 404, "not_found", "the jobs API is off (max_jobs = 0)");
        return;
    }
    /* Finished jobs make room: the oldest done or cancelled one goes. */
    if (js->njobs + js->nuploads >= cfg->max_jobs && gw__jobs_evict(js) != 0) {
        gw_respond_error(r, 503, "too_many_jobs", "max_jobs (%d) jobs are running; retry later",
                         cfg->max_jobs);
        return;
    }
    char model[GW_MODEL_NAME_MAX] = "";
    if (query_get(r->query, "model", model, sizeof model) &&
        !gw_body_utf8_valid(model, strlen(model))) {
        gw_respond_error(r, 400, "bad_query", "model must be UTF-8");
        return;
    }
    char mt[128] = "";
    gw_body_media_type(r->content_type, mt, sizeof mt);
    int multipart = strcmp(mt, "multipart/form-data") == 0;
    if (!multipart && strcmp(mt, "application/json") != 0) {
        gw_respond_error(r, 415, "unsupported_media_type",
                         "Content-Type must be multipart/form-data or application/json");
        return;
    }
    upload_t u = {.js = js};
    u.j = gw__jobs_begin(js, model, u.msg, sizeof u.msg, &u.err);
    if (u.j == NULL) {
        gw_respond_err(r, u.err, "%s", u.msg);
        return;
    }
    gw__batch_t *j = u.j;
    _Static_assert(sizeof j->owner >= sizeof r->cameras, "gw__batch_t.owner is too small");
    snprintf(j->owner, sizeof j->owner, "%s", r->cameras);
    /* a part's bytes are the request's body, held until the answer (on_committed) or freed
     * after a refusal, when gw__jobs_abort has dropped the job first */
    j->borrow = multipart;
    if (multipart) {
        char boundary[128];
        if (gw_body_param(r->content_type, "boundary", boundary, sizeof boundary) != 0) {
            u.err = PROTO_EINVAL;
            snprintf(u.msg, sizeof u.msg, "multipart without a boundary");
        } else {
            int rv = gw_body_multipart(r->body, r->body_len, boundary, on_part, &u);
            if (rv < 0 && u.err == 0) {
                u.err = rv;
                snprintf(u.msg, sizeof u.msg, "malformed multipart body");
            }
        }
    } else {
        parse_json_images(&u, r);
    }
    if (u.err == 0 && j->n == 0) {
        u.err = PROTO_EEMPTY;
        snprintf(u.msg, sizeof u.msg, "no images in the upload");
    }
    wait_t *w = u.err == 0 ? wait_new(r, js, j) : NULL;
    if (u.err == 0 && w == NULL) {
        u.err = PROTO_ENOMEM;
        snprintf(u.msg, sizeof u.msg, "out of memory");
    }
    if (u.err == 0) {
        /* answered once the images and the meta are stored (on_committed) */
        gw__jobs_commit(js, j, u.bytes, on_committed, w);
        return;
    }
    if (u.err != 0) {
        gw__jobs_abort(js, j);
        if (u.err == PROTO_EINVAL)
            gw_respond_error(r, 400, "bad_request", "%s", u.msg);
        else
            gw_respond_err(r, u.err, "%s", u.msg[0] ? u.msg : proto_strerror(u.err));
        return;
    }
}

/* ---- reading jobs ---- */

static cJSON *summary(const gw_jobs_t *js, const gw__batch_t *j)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "state", gw__job_state_names[j->state]);
    cJSON_AddStringToObject(o, "model", j->model);
    cJSON_AddNumberToObject(o, "images", j->n);
    cJSON *c = cJSON_AddObjectToObject(o, "counts");
    cJSON_AddNumberToObject(c, "done", j->ndone);
    cJSON_AddNumberToObject(c, "failed", j->nfailed);
    cJSON_AddNumberToObject(c, "pending", j->n - j->ndone - j->nfailed);
    uint64_t end = j->state == GW__JOB_DONE ? j->finished_ms : uv_now(js->loop);
    cJSON_AddNumberToObject(o, "elapsed_s", (double)(end - j->created_ms) / 1000.0);
    return o;
}

/* A camera token bound to cameras sees the jobs it uploaded only (another's: 404, as if
 * there were none); viewer, admin and open requests see every job. */
static int visible(const gw_req_t *r, const gw__batch_t *j)
{
    return r->cameras[0] == '\0' || strcmp(r->cameras, j->owner) == 0;
}

void gw_jobs_on_list(void *arg, gw_req_t *r)
{
    gw_jobs_t *js = arg;
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "jobs");
    for (gw__batch_t *j = js->head; j != NULL; j = j->next)
        if (visible(r, j))
            cJSON_AddItemToArray(arr, summary(js, j));
    respond_json(r, 200, o);
}

static const char *img_status(const gw__img_t *im)
{
    return im->st == GW__IMG_DONE ? "done" : im->st == GW__IMG_FAILED ? "failed" : "pending";
}

/* An annotated image read from the store (gw__jobs_output). */
static void on_output(void *arg, uint8_t *img, size_t len)
{
    wait_t *w = arg;
    gw_req_t *r = w->r;
    if (img == NULL)
        gw_respond_error(r, 404, "not_found", "no annotated image");
    else
        gw_respond(r, 200, len > 4 && memcmp(img, "\x89PNG", 4) == 0 ? "image/png" : "image/jpeg",
                   (char *)img, len, "Cache-Control: max-age=3600\r\n");
    free(w);
    gw_req_release(r);
}

void gw_jobs_on_get(void *arg, gw_req_t *r)
{
    gw_jobs_t *js = arg;
    const char *rest = r->param ? r->param : "";
    size_t rl = r->param ? r->param_len : 0;
    const char *slash = memchr(rest, '/', rl);
    size_t idl = slash ? (size_t)(slash - rest) : rl;
    gw__batch_t *j = gw__jobs_find(js, rest, idl);
    if (j == NULL || !visible(r, j)) {
        gw_respond_error(r, 404, "not_found", "no such job");
        return;
    }
    if (slash != NULL) { /* ID/images/N */
        char tail[64];
        size_t tl = rl - idl;
        if (tl >= sizeof tail || tl < 9 || strncmp(slash, "/images/", 8) != 0) {
            gw_respond_error(r, 404, "not_found", "no such resource");
            return;
        }
        memcpy(tail, slash + 8, tl - 8);
        tail[tl - 8] = '\0';
        char *end;
        long idx = strtol(tail, &end, 10);
        if (*end != '\0' || idx < 0 || idx >= j->n || j->imgs[idx].st != GW__IMG_DONE) {
            gw_respond_error(r, 404, "not_found", "no annotated image %s", tail);
            return;
        }
        wait_t *w = wait_new(r, js, j);
        int rv = w != NULL ? gw__jobs_output(js, j, (int)idx, on_output, w) : PROTO_ENOMEM;
        if (rv != 0) {
            gw_respond_err(r, rv, "%s", proto_strerror(rv));
            if (w != NULL) {
                free(w);
                gw_req_release(r);
            }
        }
        return;
    }
    char v[32];
    long offset = query_get(r->query, "offset", v, sizeof v) ? atol(v) : 0;
    int text = query_get(r->query, "format", v, sizeof v) && strcmp(v, "text") == 0;
    long limit = query_get(r->query, "limit", v, sizeof v) ? atol(v) : text ? j->n : 100;
    if (offset < 0)
        offset = 0;
    if (limit < 0)
        limit = 0;
    if (!text && limit > PAGE_MAX)
        limit = PAGE_MAX;
    long end = offset + limit < j->n ? offset + limit : j->n;
    if (text) {
        /* name,label for every finished image, in upload order */
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        for (long i = offset; m != NULL && i < end; i++)
            if (j->imgs[i].st == GW__IMG_DONE || j->imgs[i].st == GW__IMG_FAILED)
                fprintf(m, "%s,%s\n", j->imgs[i].name, j->imgs[i].label);
        if (m != NULL)
            fclose(m);
        gw_respond(r, 200, "text/plain; charset=utf-8", buf, buf ? len : 0, NULL);
        return;
    }
    cJSON *o = summary(js, j);
    cJSON_AddNumberToObject(o, "offset", (double)offset);
    cJSON_AddNumberToObject(o, "limit", (double)limit);
    if (end < j->n)
        cJSON_AddNumberToObject(o, "next_offset", (double)end);
    cJSON *arr = cJSON_AddArrayToObject(o, "results");
    for (long i = offset; i < end; i++) {
        gw__img_t *im = &j->imgs[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "index", (double)i);
        cJSON_AddStringToObject(x, "name", im->name);
        cJSON_AddStringToObject(x, "status", img_status(im));
        if (im->st == GW__IMG_DONE || im->st == GW__IMG_FAILED)
            cJSON_AddStringToObject(x, "label", im->label);
        cJSON *res = im->result ? cJSON_Parse(im->result) : NULL;
        if (res != NULL)
            cJSON_AddItemToObject(x, "result", res);
        cJSON_AddItemToArray(arr, x);
    }
    respond_json(r, 200, o);
}

void gw_jobs_on_delete(void *arg, gw_req_t *r)
{
    gw_jobs_t *js = arg;
    gw__batch_t *j = gw__jobs_find(js, r->param ? r->param : "", r->param ? r->param_len : 0);
    if (j == NULL) {
        gw_respond_error(r, 404, "not_found", "no such job");
        return;
    }
    gw__jobs_cancel(js, j);
    respond_json(r, 200, summary(js, j));
}

/* Compares in time independent of where the first difference is. */
static int token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned diff = (unsigned)(la ^ lb);
    for (size_t i = 0; i < la; i++)
        diff |= (unsigned char)a[i] ^ (unsigned char)b[i % (lb ? lb : 1)];
    return diff == 0;
}

/* The reset's end: every job's objects are deleted (or the store said why not). */
static void on_reset(void *arg, int err, const char *msg)
{
    wait_t *w = arg;
    gw_req_t *r = w->r;
    if (err != 0) {
        gw_respond_err(r, err, "jobs dropped; deleting their objects failed: %s",
                       msg ? msg : proto_strerror(err));
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "reset", 1);
        cJSON_AddNumberToObject(o, "jobs", w->n);
        respond_json(r, 200, o);
    }
    free(w);
    gw_req_release(r);
}

void gw_jobs_on_reset(void *arg, gw_req_t *r)
{
    gw_jobs_t *js = arg;
    if (js->cfg->admin_token[0] != '\0') {
        /* The token comes in the body ({"token": ...} or the bare token): a query string
         * ends up in logs. */
        char tok[GW_CONFIG_STR_MAX] = "";
        cJSON *root = cJSON_ParseWithLength((const char *)r->body, r->body_len);
        const cJSON *t = root ? cJSON_GetObjectItemCaseSensitive(root, "token") : NULL;
        if (cJSON_IsString(t))
            snprintf(tok, sizeof tok, "%s", t->valuestring);
        else if (root == NULL && r->body_len < sizeof tok) {
            memcpy(tok, r->body, r->body_len);
            tok[r->body_len] = '\0';
        }
        cJSON_Delete(root);
        if (!token_equal(tok, js->cfg->admin_token)) {
            gw_respond_error(r, 403, "forbidden", "POST /v1/reset needs the admin_token");
            return;
        }
    }
    wait_t *w = wait_new(r, js, NULL);
    if (w == NULL) {
        gw_respond_err(r, PROTO_ENOMEM, "out of memory");
        return;
    }
    w->n = js->njobs; /* the answer's count: the callback may run before reset returns */
    if (gw__jobs_reset(js, on_reset, w) < 0) {
        gw_respond_error(r, 503, "loading", "the jobs are still being read back; retry");
        free(w);
        gw_req_release(r);
    }
}
