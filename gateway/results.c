#include "results.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "frontdoor.h"
#include "http.h"
#include "response.h"
#include "storage.h"

#define LIST_MAX 300

static void respond_json(gw_req_t *req, cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    gw_respond(req, 200, "application/json", s, s ? strlen(s) : 0, NULL);
}

static int query_param(const char *q, const char *name, char *out, size_t cap);

/* The storage ?model= names (default: the default model's); NULL once answered. */
static gw_storage_t *pick(const gw_results_t *r, gw_req_t *req)
{
    char model[GW_MODEL_NAME_MAX + 1] = "";
    gw_storage_t *st = NULL;
    if (query_param(req->query, "model", model, sizeof model) &&
        strlen(model) >= GW_MODEL_NAME_MAX) {
        gw_respond_err(req, PROTO_ENOMODEL, "no model named '%s'", model);
        return NULL;
    }
    if (r->storage_of(r->ctx, model, &st) != 0) {
        gw_respond_err(req, PROTO_ENOMODEL, "no model named '%s'", model);
        return NULL;
    }
    if (st == NULL)
        gw_respond_error(req, 404, "no_store", "nothing is stored for %s (store = none)",
                         model[0] ? model : "the default model");
    return st;
}

/* ---- GET /v1/results ---- */

typedef struct {
    gw_req_t *req;
    char camera[PROTO_CAMERA_MAX + 1];
    int limit;
} list_t;

/* The value of query parameter `name` percent-decoded into out; 1 if present. */
static int query_param(const char *q, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    while (*q) {
        size_t len = strcspn(q, "&");
        if (len > nl && strncmp(q, name, nl) == 0 && q[nl] == '=') {
            size_t o = 0;
            for (size_t i = nl + 1; i < len && o + 1 < cap; i++) {
                char c = q[i];
                if (c == '+')
                    c = ' ';
                else if (c == '%' && i + 2 < len && isxdigit((unsigned char)q[i + 1]) &&
                         isxdigit((unsigned char)q[i + 2])) {
                    char hex[3] = {q[i + 1], q[i + 2], 0};
                    c = (char)strtol(hex, NULL, 16);
                    i += 2;
                }
                out[o++] = c;
            }
            out[o] = '\0';
            return 1;
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return 0;
}

static cJSON *key_or_null(const char *k)
{
    return k != NULL ? cJSON_CreateString(k) : cJSON_CreateNull();
}

/* Keys come sorted; a frame's objects share "STEM-SEQ" and differ in their extension. */
static void on_listed(void *arg, int err, const char *msg, char **keys, int n)
{
    list_t *l = arg;
    gw_req_t *req = l->req;
    if (err != 0) {
        gw_respond_err(req, err == UV_ECANCELED ? PROTO_ESHUTDOWN : err, "%s",
                       msg ? msg : proto_strerror(err));
        gw_req_release(req);
        free(l);
        return;
    }
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "results");
    cJSON_AddStringToObject(root, "camera", l->camera);
    int frames = 0;
    uint64_t last_us = 0;
    for (int i = 0; i < n && frames < l->limit;) {
        const char *base = strrchr(keys[i], '/');
        base = base ? base + 1 : keys[i];
        const char *dot = strchr(base, '.');
        size_t stem = (size_t)((dot ? dot : base + strlen(base)) - keys[i]);
        const char *in = NULL, *res = NULL, *ann = NULL;
        int j = i;
        for (; j < n && strncmp(keys[j], keys[i], stem) == 0 &&
               (keys[j][stem] == '.' || keys[j][stem] == '\0');
             j++) {
            const char *ext = keys[j] + stem;
            if (strcmp(ext, ".json") == 0)
                res = keys[j];
            else if (strcmp(ext, ".boxes.jpg") == 0)
                ann = keys[j];
            else
                in = keys[j];
        }
        /* "CAM-<16 digits>-<6 digits>": the µs are the 16 digits before the last '-' */
        const char *dash = memrchr(keys[i], '-', stem);
        uint64_t us = 0;
        if (dash != NULL && dash - keys[i] >= 16)
            us = strtoull(dash - 16, NULL, 10);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "time_us", (double)us);
        cJSON_AddItemToObject(o, "input", key_or_null(in));
        cJSON_AddItemToObject(o, "result", key_or_null(res));
        cJSON_AddItemToObject(o, "annotated", key_or_null(ann));
        cJSON_AddItemToArray(arr, o);
        frames++;
        last_us = us;
        i = j;
    }
    /* the next page starts after the last frame's millisecond */
    if (frames == l->limit)
        cJSON_AddNumberToObject(root, "next_since", (double)(last_us / 1000 + 1));
    else
        cJSON_AddNullToObject(root, "next_since");
    respond_json(req, root);
    gw_req_release(req);
    free(l);
}

void gw_results_on_list(void *results, gw_req_t *req)
{
    gw_storage_t *storage = pick(results, req);
    if (storage == NULL)
        return;
    char camera[PROTO_CAMERA_MAX + 2], since[32] = "0", limit[16] = "100";
    if (!query_param(req->query, "camera", camera, sizeof camera) || camera[0] == '\0' ||
        strlen(camera) > PROTO_CAMERA_MAX) {
        gw_respond_error(req, 400, "bad_query", "camera=NAME is required (at most %d bytes)",
                         PROTO_CAMERA_MAX);
        return;
    }
    if (gw_frontdoor_camera(req, camera) != 0)
        return; /* a camera token reads its own cameras' results only */
    query_param(req->query, "since", since, sizeof since);
    query_param(req->query, "limit", limit, sizeof limit);
    char *end;
    errno = 0;
    unsigned long long since_ms = strtoull(since, &end, 10);
    if (since[0] == '\0' || since[0] == '-' || *end != '\0' || errno != 0 ||
        since_ms > 9000000000000ULL) {
        gw_respond_error(req, 400, "bad_query", "since must be milliseconds since the epoch");
        return;
    }
    long lim = strtol(limit, &end, 10);
    if (limit[0] == '\0' || *end != '\0' || lim < 1 || lim > LIST_MAX) {
        gw_respond_error(req, 400, "bad_query", "limit must be an integer in [1, %d]", LIST_MAX);
        return;
    }
    list_t *l = calloc(1, sizeof *l);
    if (l == NULL) {
        gw_respond_err(req, PROTO_ENOMEM, "out of memory");
        return;
    }
    l->req = req;
    l->limit = (int)lim;
    snprintf(l->camera, sizeof l->camera, "%.*s", PROTO_CAMERA_MAX, camera);
    /* start after the stem of the first µs of `since`: every key of that µs sorts after it */
    char stem[700], prefix[PROTO_CAMERA_MAX + 8];
    gw_storage_key_stem(camera, since_ms * 1000, stem, sizeof stem);
    size_t cl = strcspn(stem, "/");
    snprintf(prefix, sizeof prefix, "%.*s/", (int)cl, stem);
    gw_store_t *s = gw_storage_store(storage);
    gw_req_hold(req);
    int rv = s->ops->list(s, prefix, since_ms > 0 ? stem : "", (int)lim * 3, on_listed, l);
    if (rv != 0) {
        gw_respond_err(req, rv, "%s", proto_strerror(rv));
        gw_req_release(req);
        free(l);
    }
}

/* ---- GET /v1/objects/KEY ---- */

static const char *ctype_of(const char *key)
{
    const char *dot = strrchr(key, '.');
    if (dot == NULL)
        return "application/octet-stream";
    if (strcmp(dot, ".jpg") == 0)
        return "image/jpeg";
    if (strcmp(dot, ".png") == 0)
        return "image/png";
    if (strcmp(dot, ".json") == 0)
        return "application/json";
    return "application/octet-stream";
}

static void on_object(void *arg, int err, const char *msg, uint8_t *data, size_t len)
{
    gw_req_t *req = arg;
    if (err != 0) {
        gw_respond_err(req, err == UV_ECANCELED ? PROTO_ESHUTDOWN : err, "%s",
                       err == PROTO_ENOTFOUND ? "no such object"
                       : msg                  ? msg
                                              : proto_strerror(err));
    } else {
        gw_respond(req, 200, ctype_of(req->param), (char *)data, len, NULL);
    }
    gw_req_release(req);
}

void gw_results_on_object(void *results, gw_req_t *req)
{
    gw_storage_t *storage = pick(results, req);
    if (storage == NULL)
        return;
    char key[600];
    if (req->param == NULL || req->param_len == 0 || req->param_len >= sizeof key) {
        gw_respond_error(req, 404, "not_found", "no such object");
        return;
    }
    memcpy(key, req->param, req->param_len);
    key[req->param_len] = '\0';
    if (!gw_store_key_valid(key)) {
        gw_respond_error(req, 400, "bad_key", "a key is [A-Za-z0-9._-] segments joined by '/'");
        return;
    }
    gw_store_t *s = gw_storage_store(storage);
    gw_req_hold(req);
    /* nothing larger than a frame and its answer is ever stored */
    int rv = s->ops->get(s, key, gw_req_config(req)->max_body_bytes + (1u << 20), on_object, req);
    if (rv != 0) {
        gw_respond_err(req, rv, "%s", proto_strerror(rv));
        gw_req_release(req);
    }
}

/* ---- GET /v1/storage ---- */

static cJSON *storage_json(gw_storage_t *storage, const gw_config_t *cfg)
{
    gw_storage_stats_t st;
    gw_storage_stats(storage, &st);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "store", gw_storage_url(storage));
    cJSON_AddStringToObject(o, "kind", st.kind);
    if (storage == NULL)
        return o;
    cJSON_AddBoolToObject(o, "up", st.up);
    /* why writes are not reaching the store, or null */
    if (!st.up)
        cJSON_AddStringToObject(o, "reason", st.last_error[0] ? st.last_error : "store failing");
    else if (st.dropped[0] + st.dropped[1] + st.dropped[2] > 0)
        cJSON_AddStringToObject(o, "reason", "writes were dropped (see dropped)");
    else
        cJSON_AddNullToObject(o, "reason");
    cJSON_AddStringToObject(o, "last_error", st.last_error);
    cJSON_AddNumberToObject(o, "written", (double)st.written);
    cJSON_AddNumberToObject(o, "failed", (double)st.failed);
    cJSON_AddNumberToObject(o, "spooled", (double)st.spooled);
    cJSON *d = cJSON_AddObjectToObject(o, "dropped");
    cJSON_AddNumberToObject(d, "input", (double)st.dropped[GW_STORE_INPUT]);
    cJSON_AddNumberToObject(d, "annotated", (double)st.dropped[GW_STORE_ANNOTATED]);
    cJSON_AddNumberToObject(d, "result", (double)st.dropped[GW_STORE_RESULT]);
    cJSON_AddNumberToObject(o, "queued", st.queued);
    cJSON_AddNumberToObject(o, "queued_bytes", (double)st.queued_bytes);
    cJSON_AddNumberToObject(o, "inflight", st.inflight);
    cJSON *sp = cJSON_AddObjectToObject(o, "spool");
    cJSON_AddStringToObject(sp, "dir", gw_storage_spool_dir(storage));
    cJSON_AddNumberToObject(sp, "objects", st.spool_objects);
    cJSON_AddNumberToObject(sp, "bytes", (double)st.spool_bytes);
    cJSON_AddNumberToObject(sp, "max_bytes",
                            (double)(st.spool_max_bytes ? cfg->spool_max_bytes : 0));
    return o;
}

/* The default model's storage at the top level (what most deployments have), every
 * storage under "stores". */
void gw_results_on_status(void *results, gw_req_t *req)
{
    const gw_results_t *r = results;
    const gw_config_t *cfg = gw_req_config(req);
    gw_storage_t *def = NULL, *all[GW_MODELS_MAX];
    r->storage_of(r->ctx, "", &def);
    cJSON *o = storage_json(def, cfg);
    cJSON *arr = cJSON_AddArrayToObject(o, "stores");
    int n = r->storages(r->ctx, all, GW_MODELS_MAX);
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, storage_json(all[i], cfg));
    respond_json(req, o);
}
