/* Read top to bottom, this is one detect request: options parsed, images found in the body,
 * jobs submitted, jobs back, one answer. */
#include "detect.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "err.h"
#include "frontdoor.h"
#include "http.h"
#include "response.h"
#include "status.h"

/* What a JSON upload says; filled by json_decode, on the threadpool for a large body. */
typedef struct {
    int status;       /* 0, or the HTTP status of the error */
    const char *code; /* static strings */
    const char *msg;
    int has_camera, has_ts, has_threshold;
    char camera[PROTO_CAMERA_MAX + 1];
    int64_t ts;
    float threshold;
    size_t image_len; /* bytes decoded into dreq_t.decoded */
    int nurls;        /* "url" / "urls" instead of "image": the URLs (malloc'd) */
    char *urls[GW_DETECT_MAX_IMAGES];
    int url_list; /* "urls": one result per URL */
} json_res_t;

/* One detect request's own state (gw_req_t.state). */
typedef struct dreq {
    gw_req_t *req;
    const gw_detect_t *d;
    gw_req_opts_t opts; /* query/JSON/multipart options, copied into each job */
    int model_fixed;    /* the model came from the path: ?model= does not override it */
    uint8_t *decoded;   /* base64-decoded image (JSON uploads) */
    gw_job_t *jobs;     /* &one, or a malloc'd array for multipart */
    gw_job_t one;
    int njobs, jobs_cap, pending;
    int multipart;
    int bad_camera; /* a multipart camera part that is not UTF-8 */
    int submit_error;
    uv_work_t work; /* a large JSON body being decoded off the loop */
    json_res_t json;
    /* frames given by URL ({"url"} / {"urls"}): fetched before any job is made */
    struct url_slot {
        struct dreq *q;
        uint8_t *data;
        size_t len;
    } urls[GW_DETECT_MAX_IMAGES];
    int nurls, urls_pending, url_err;
    char url_msg[300];
} dreq_t;

static void dreq_free(void *arg)
{
    dreq_t *q = arg;
    for (int i = 0; i < q->njobs; i++)
        gw_job_fini(&q->jobs[i]);
    if (q->jobs != &q->one)
        free(q->jobs);
    free(q->decoded);
    for (int i = 0; i < q->nurls; i++)
        free(q->urls[i].data);
    for (int i = 0; i < q->json.nurls; i++)
        free(q->json.urls[i]);
    free(q);
}

static int add_job(dreq_t *q, const uint8_t *img, size_t len);
static int is_image_type(const char *mt);
static int parse_json(dreq_t *q);
static int parse_multipart(dreq_t *q);
static void submit_all(dreq_t *q);
static void answer(dreq_t *q);

/* ---- the request in ---- */

void gw_detect_handle(void *detect, gw_req_t *r)
{
    char err[256], mt[128];
    dreq_t *q = calloc(1, sizeof *q);
    if (q == NULL) {
        gw_respond_error(r, 503, "overloaded", "out of memory");
        return;
    }
    q->req = r;
    q->d = detect;
    r->state = q;
    r->state_free = dreq_free;
    if (r->param != NULL) {
        if (r->param_len >= sizeof q->opts.model) {
            gw_respond_error(r, 404, "not_found", "no such path");
            return;
        }
        memcpy(q->opts.model, r->param, r->param_len);
        q->opts.model[r->param_len] = '\0';
        q->model_fixed = 1;
    }
    if (gw_detect_parse_query(r->query, &q->opts, q->model_fixed, err, sizeof err) != 0) {
        gw_respond_error(r, 400, "bad_query", "%s", err);
        return;
    }
    if (gw_body_media_type(r->content_type, mt, sizeof mt) != 0) {
        gw_respond_error(
            r, 415, "unsupported_media_type",
            "Content-Type must be image/jpeg, application/json or multipart/form-data");
        return;
    }
    if (is_image_type(mt)) {
        if (r->body_len == 0) {
            gw_respond_error(r, 400, "empty_image", "the request body is empty");
            return;
        }
        add_job(q, r->body, r->body_len);
    } else if (strcmp(mt, "application/json") == 0) {
        if (parse_json(q) != 0)
            return; /* answered, or decoding off the loop */
    } else if (strcmp(mt, "multipart/form-data") == 0) {
        if (parse_multipart(q) != 0)
            return;
    } else {
        gw_respond_error(r, 415, "unsupported_media_type",
                         "Content-Type %s is not supported: use image/jpeg, application/json or "
                         "multipart/form-data",
                         mt);
        return;
    }
    submit_all(q);
}

/* ---- options ---- */

/* Percent-decodes in[0..len) into out: its length, -1 for a bad escape, -2 if over cap. */
static int url_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            if (i + 2 >= len)
                return -1;
            if (!isxdigit((unsigned char)in[i + 1]) || !isxdigit((unsigned char)in[i + 2]))
                return -1;
            char hex[3] = {in[i + 1], in[i + 2], 0};
            ch = (char)strtol(hex, NULL, 16);
            i += 2;
        }
        if (o + 1 >= cap)
            return -2;
        out[o++] = ch;
    }
    out[o] = '\0';
    return (int)o;
}

/* Applies one query parameter; 0, or -1 with the message in err. */
static int apply_param(gw_req_opts_t *opts, int model_fixed, const char *k, const char *v,
                       char *err, size_t cap)
{
    char *end;
    if (strcmp(k, "camera") == 0) {
        if (strlen(v) > PROTO_CAMERA_MAX) {
            snprintf(err, cap, "camera is longer than %d bytes", PROTO_CAMERA_MAX);
            return -1;
        }
        if (!gw_body_utf8_valid(v, strlen(v))) {
            snprintf(err, cap, "camera must be UTF-8 text");
            return -1;
        }
        snprintf(opts->camera, sizeof opts->camera, "%s", v);
    } else if (strcmp(k, "ts") == 0) {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (*v == '\0' || *end != '\0' || errno == ERANGE) {
            snprintf(err, cap, "ts must be an integer (milliseconds)");
            return -1;
        }
        opts->ts_ms = x;
    } else if (strcmp(k, "threshold") == 0) {
        double x = strtod(v, &end);
        if (*v == '\0' || *end != '\0' || !(x >= 0 && x <= 1)) {
            snprintf(err, cap, "threshold must be a number in [0, 1]");
            return -1;
        }
        opts->threshold = (float)x;
    } else if (strcmp(k, "format") == 0) {
        if (strcmp(v, "json") == 0)
            opts->output = PROTO_OUT_JSON;
        else if (strcmp(v, "jpeg") == 0)
            opts->output = PROTO_OUT_JPEG;
        else if (strcmp(v, "text") == 0)
            opts->output = PROTO_OUT_TEXT;
        else {
            snprintf(err, cap, "format must be json, jpeg or text");
            return -1;
        }
    } else if (strcmp(k, "top_k") == 0) {
        long x = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || x < 1 || x > 100) {
            snprintf(err, cap, "top_k must be an integer in [1, 100]");
            return -1;
        }
        opts->top_k = (uint16_t)x;
    } else if (strcmp(k, "model") == 0 && !model_fixed) {
        if (strlen(v) >= sizeof opts->model) {
            snprintf(err, cap, "model name too long");
            return -1;
        }
        snprintf(opts->model, sizeof opts->model, "%s", v);
    }
    return 0;
}

int gw_detect_parse_query(const char *q, gw_req_opts_t *opts, int model_fixed, char *err,
                          size_t cap)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        char k[64], v[GW_HTTP_MAX_URL];
        size_t klen = eq ? (size_t)(eq - q) : len;
        int kn = url_decode(q, klen, k, sizeof k);
        /* A key too long for k is none we know: ignored like any unknown parameter. */
        if (kn != -2) {
            int vn = kn < 0
                         ? -1
                         : url_decode(eq ? eq + 1 : q + len, eq ? len - klen - 1 : 0, v, sizeof v);
            /* %00 would cut a value short without anyone noticing. */
            if (vn < 0 || strlen(v) != (size_t)vn || strlen(k) != (size_t)kn) {
                snprintf(err, cap, "malformed query string");
                return -1;
            }
            if (apply_param(opts, model_fixed, k, v, err, cap) != 0)
                return -1;
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return 0;
}

/* ---- images into jobs ---- */

static void on_job_done(gw_job_t *job);

static int add_job(dreq_t *q, const uint8_t *img, size_t len)
{
    if (q->njobs >= GW_DETECT_MAX_IMAGES)
        return PROTO_ETOOBIG;
    if (q->njobs == q->jobs_cap) {
        /* Nothing points into the array before the jobs are submitted, so it may move. */
        if (q->jobs == NULL) {
            q->jobs = &q->one;
            q->jobs_cap = 1;
        } else {
            int cap =
                q->jobs_cap * 2 > GW_DETECT_MAX_IMAGES ? GW_DETECT_MAX_IMAGES : q->jobs_cap * 2;
            gw_job_t *nj = malloc((size_t)cap * sizeof *nj);
            if (nj == NULL)
                return PROTO_ENOMEM;
            memcpy(nj, q->jobs, (size_t)q->njobs * sizeof *nj);
            if (q->jobs != &q->one)
                free(q->jobs);
            q->jobs = nj;
            q->jobs_cap = cap;
        }
    }
    gw_job_t *job = &q->jobs[q->njobs++];
    gw_job_init(job);
    job->image = img;
    job->image_len = len;
    job->opts = q->opts;
    job->on_done = on_job_done;
    job->data = q;
    return 0;
}

static int is_image_type(const char *mt)
{
    return strncmp(mt, "image/", 6) == 0 || strcmp(mt, "application/octet-stream") == 0;
}

static int on_part(void *arg, const gw_part_t *part)
{
    dreq_t *q = arg;
    char mt[128] = "";
    gw_body_media_type(part->content_type, mt, sizeof mt);
    if (strcmp(part->name, "camera") == 0 && !is_image_type(mt)) {
        if (part->len > PROTO_CAMERA_MAX)
            return PROTO_ETOOBIG;
        if (!gw_body_utf8_valid((const char *)part->data, part->len)) {
            q->bad_camera = 1;
            return PROTO_EINVAL;
        }
        memcpy(q->opts.camera, part->data, part->len);
        q->opts.camera[part->len] = '\0';
        for (int i = 0; i < q->njobs; i++)
            memcpy(q->jobs[i].opts.camera, q->opts.camera, sizeof q->opts.camera);
        return 0;
    }
    if (is_image_type(mt) || strcmp(part->name, "image") == 0 || strcmp(part->name, "file") == 0 ||
        strcmp(part->name, "image[]") == 0) {
        if (part->len == 0)
            return PROTO_EEMPTY;
        return add_job(q, part->data, part->len);
    }
    return 0;
}

/* A JSON upload: {"image": base64, "camera", "ts", "threshold"}. Pure: reads body, writes
 * the image into out (gw_body_b64_max(len) bytes) and the rest into *res. Any thread. */
static void json_decode(const uint8_t *body, size_t len, uint8_t *out, json_res_t *res)
{
    const char *end = NULL;
    memset(res, 0, sizeof *res);
    res->status = 400;
    res->code = "bad_json";
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)body, len, &end, 0);
    if (root != NULL) {
        /* One JSON value and nothing after it but white space. */
        size_t used = (size_t)(end - (const char *)body);
        while (used < len && strchr(" \t\r\n", body[used]) != NULL && body[used] != '\0')
            used++;
        if (used != len) {
            cJSON_Delete(root);
            res->msg = "the body has more than one JSON value";
            return;
        }
    }
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        res->msg = "the body is not a JSON object";
        return;
    }
    const cJSON *image = cJSON_GetObjectItemCaseSensitive(root, "image");
    const cJSON *camera = cJSON_GetObjectItemCaseSensitive(root, "camera");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(root, "ts");
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(root, "threshold");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(root, "url");
    const cJSON *urls = cJSON_GetObjectItemCaseSensitive(root, "urls");
    if (image == NULL && url == NULL && urls == NULL) {
        cJSON_Delete(root);
        res->code = "no_image";
        res->msg = "the JSON object has no \"image\" (nor \"url\" / \"urls\")";
        return;
    }
    if (image != NULL && (url != NULL || urls != NULL))
        res->msg = "give \"image\", \"url\" or \"urls\", not several";
    else if (url != NULL && urls != NULL)
        res->msg = "give \"url\" or \"urls\", not both";
    else if (url != NULL && !cJSON_IsString(url))
        res->msg = "\"url\" must be a string";
    else if (urls != NULL && (!cJSON_IsArray(urls) || cJSON_GetArraySize(urls) < 1 ||
                              cJSON_GetArraySize(urls) > GW_DETECT_MAX_IMAGES))
        res->msg = "\"urls\" must be an array of 1 to 16 strings";
    else if (image != NULL && !cJSON_IsString(image))
        res->msg = "\"image\" must be a base64 string";
    else if (camera != NULL &&
             (!cJSON_IsString(camera) || strlen(camera->valuestring) > PROTO_CAMERA_MAX ||
              !gw_body_utf8_valid(camera->valuestring, strlen(camera->valuestring))))
        res->msg = "\"camera\" must be a UTF-8 string of at most 128 bytes";
    else if (ts != NULL && (!cJSON_IsNumber(ts) || !(fabs(ts->valuedouble) < 9007199254740992.0) ||
                            ts->valuedouble != floor(ts->valuedouble)))
        /* A JSON number is a double here: beyond 2^53 it is not the client's integer any
         * more (the query string takes any int64). */
        res->msg = "\"ts\" must be an integer (milliseconds) below 2^53 in magnitude; use "
                   "?ts= for larger values";
    else if (th != NULL &&
             (!cJSON_IsNumber(th) || !(th->valuedouble >= 0) || !(th->valuedouble <= 1)))
        res->msg = "\"threshold\" must be a number in [0, 1]";
    if (res->msg != NULL) {
        cJSON_Delete(root);
        return;
    }
    if (camera != NULL) {
        res->has_camera = 1;
        snprintf(res->camera, sizeof res->camera, "%s", camera->valuestring);
    }
    if (ts != NULL) {
        res->has_ts = 1;
        res->ts = (int64_t)ts->valuedouble;
    }
    if (th != NULL) {
        res->has_threshold = 1;
        res->threshold = (float)th->valuedouble;
    }
    if (image == NULL) { /* frames given by URL: fetched on the loop (json_apply) */
        const cJSON *u;
        res->url_list = urls != NULL;
        if (url != NULL) {
            res->urls[res->nurls++] = strdup(url->valuestring);
        } else {
            cJSON_ArrayForEach(u, urls)
            {
                if (!cJSON_IsString(u)) {
                    res->msg = "\"urls\" must hold strings";
                    break;
                }
                res->urls[res->nurls++] = strdup(u->valuestring);
            }
        }
        for (int i = 0; res->msg == NULL && i < res->nurls; i++)
            if (res->urls[i] == NULL) {
                res->status = 503;
                res->code = "overloaded";
                res->msg = "out of memory";
            }
        cJSON_Delete(root);
        if (res->msg == NULL)
            res->status = 0;
        return;
    }
    size_t in_len = strlen(image->valuestring);
    int rv = gw_body_b64_decode(image->valuestring, in_len, out, &res->image_len);
    cJSON_Delete(root);
    if (rv != 0) {
        res->code = "bad_base64";
        res->msg = "\"image\" is not valid base64";
    } else if (res->image_len == 0) {
        res->code = "empty_image";
        res->msg = "\"image\" is empty";
    } else {
        res->status = 0;
    }
}

static int start_urls(dreq_t *q);

/* Takes what json_decode found into the request: 0, 1 while its URLs are being fetched (the
 * last fetch submits), or -1 once answered. */
static int json_apply(dreq_t *q)
{
    const json_res_t *res = &q->json;
    if (res->status != 0) {
        gw_respond_error(q->req, res->status, res->code, "%s", res->msg);
        return -1;
    }
    if (res->has_camera)
        memcpy(q->opts.camera, res->camera, sizeof q->opts.camera);
    if (res->has_ts)
        q->opts.ts_ms = res->ts;
    if (res->has_threshold)
        q->opts.threshold = res->threshold;
    if (res->nurls > 0)
        return start_urls(q);
    int rv = add_job(q, q->decoded, res->image_len);
    if (rv != 0)
        gw_respond_err(q->req, rv, "%s", proto_strerror(rv));
    return rv == 0 ? 0 : -1;
}

/* On a threadpool thread: only the body (unchanged while the request is held), the decode
 * buffer and q->json are touched. */
static void on_json_work(uv_work_t *w)
{
    dreq_t *q = w->data;
    if (q->d->on_work != NULL)
        q->d->on_work(q->d->ctx);
    json_decode(q->req->body, q->req->body_len, q->decoded, &q->json);
}

static void on_json_done(uv_work_t *w, int status)
{
    dreq_t *q = w->data;
    gw_req_t *r = q->req;
    (void)status; /* never cancelled */
    if (gw_req_orphaned(r))
        gw_respond_error(r, 503, "shutting_down", "the client is gone"); /* never sent */
    else if (json_apply(q) == 0)
        submit_all(q); /* 1: the URL fetches go on */
    gw_req_release(r);
}

/* 0: decoded, the job is added; 1: decoding on the threadpool (on_json_done goes on);
 * -1: answered. */
static int parse_json(dreq_t *q)
{
    gw_req_t *r = q->req;
    size_t cap = gw_body_b64_max(r->body_len) + 1;
    /* The decoded image is held as long as the body: it counts in the same budget. */
    if (gw_req_reserve(r, cap) != 0 || (q->decoded = malloc(cap)) == NULL) {
        gw_respond_error(r, 503, "overloaded",
                         "too many request bytes held (max_buffered_bytes); retry later");
        return -1;
    }
    if (r->body_len >= GW_DETECT_JSON_INLINE_MAX) {
        q->work.data = q;
        gw_req_hold(r);
        if (uv_queue_work(gw_req_loop(r), &q->work, on_json_work, on_json_done) == 0)
            return 1;
        gw_req_release(r);
    }
    json_decode(r->body, r->body_len, q->decoded, &q->json);
    return json_apply(q);
}

/* A multipart/form-data upload: every image part a job. 0, or -1 once answered. */
static int parse_multipart(dreq_t *q)
{
    gw_req_t *r = q->req;
    char boundary[128];
    if (gw_body_param(r->content_type, "boundary", boundary, sizeof boundary) != 0) {
        gw_respond_error(r, 400, "bad_multipart", "multipart/form-data without a boundary");
        return -1;
    }
    q->multipart = 1;
    int rv = gw_body_multipart(r->body, r->body_len, boundary, on_part, q);
    if (q->bad_camera) {
        gw_respond_error(r, 400, "bad_multipart", "the camera part must be UTF-8 text");
        return -1;
    }
    if (rv == PROTO_EEMPTY) {
        gw_respond_error(r, 400, "empty_image", "an image part is empty");
        return -1;
    }
    if (rv == PROTO_ENOMEM) {
        gw_respond_error(r, 503, "overloaded", "out of memory");
        return -1;
    }
    if (rv == PROTO_ETOOBIG) {
        gw_respond_error(r, 400, "bad_multipart",
                         "more than %d image parts, or a camera part over 128 bytes",
                         GW_DETECT_MAX_IMAGES);
        return -1;
    }
    if (rv < 0) {
        gw_respond_error(r, 400, "bad_multipart", "malformed multipart/form-data body");
        return -1;
    }
    if (q->njobs == 0) {
        gw_respond_error(r, 400, "no_image", "no image part in the multipart body");
        return -1;
    }
    return 0;
}

static void answer(dreq_t *q);
static void submit_all(dreq_t *q);

/* ---- frames given by URL ---- */

/* One fetch back (or the up-front count): the last one submits the jobs or answers. */
static void url_settled(dreq_t *q)
{
    if (--q->urls_pending > 0)
        return;
    if (q->url_err != 0) {
        gw_respond_err(q->req, q->url_err, "%s", q->url_msg);
        return;
    }
    for (int i = 0; i < q->nurls; i++)
        add_job(q, q->urls[i].data, q->urls[i].len);
    submit_all(q);
}

static void on_url_fetched(void *arg, int err, const char *msg, uint8_t *data, size_t len)
{
    struct url_slot *slot = arg;
    dreq_t *q = slot->q;
    gw_req_t *r = q->req;
    if (err != 0 && q->url_err == 0) { /* the first failure answers for all */
        q->url_err = err;
        snprintf(q->url_msg, sizeof q->url_msg, "%s", msg ? msg : proto_strerror(err));
    }
    slot->data = data;
    slot->len = len;
    url_settled(q);
    gw_req_release(r);
}

/* Starts one fetch per URL; the request is held while any is out. 1, or -1 once answered. */
static int start_urls(dreq_t *q)
{
    gw_req_t *r = q->req;
    const json_res_t *res = &q->json;
    if (gw_frontdoor_camera(r, q->opts.camera) != 0)
        return -1; /* before any fetch: a refused camera costs nothing (submit_all checks too) */
    if (q->d->fetch == NULL) {
        gw_respond_error(r, 400, "bad_json", "frames by URL are not enabled");
        return -1;
    }
    int n = res->nurls;
    if (res->url_list)
        q->multipart = 1; /* one result per URL */
    /* One count more than the fetches, dropped at the end: a fetch that fails at once must
     * not answer while the others are still being started. */
    q->nurls = n;
    q->urls_pending = n + 1;
    gw_req_hold(r);
    for (int i = 0; i < n; i++) {
        q->urls[i].q = q;
        gw_req_hold(r);
        int rv = q->d->fetch(q->d->ctx, res->urls[i], on_url_fetched, &q->urls[i]);
        if (rv != 0)
            on_url_fetched(&q->urls[i], rv, NULL, NULL, 0);
    }
    url_settled(q);
    gw_req_release(r);
    return 1;
}

/* Submits every job; each one out holds the request. If one is refused, the answer waits for
 * those already out. The guard count keeps the answer from going out inside the loop: a
 * camera frame can supersede an earlier job of this same request during a later submit. */
static void submit_all(dreq_t *q)
{
    /* a camera token naming a camera not its own, or none: answered 403 */
    if (gw_frontdoor_camera(q->req, q->opts.camera) != 0)
        return;
    q->pending = 1; /* the guard */
    for (int i = 0; i < q->njobs; i++) {
        q->jobs[i].batch = q->njobs > 1; /* answered whole: not live frames (fair.h) */
        int rv = q->d->submit(q->d->ctx, &q->jobs[i]);
        if (rv != 0) {
            q->submit_error = rv;
            break;
        }
        q->pending++;
        gw_req_hold(q->req);
    }
    if (--q->pending == 0)
        answer(q);
}

/* ---- jobs back, one answer ---- */

static void on_job_done(gw_job_t *job)
{
    dreq_t *q = job->data;
    gw_req_t *r = q->req;
    if (--q->pending == 0)
        answer(q);
    gw_req_release(r);
}

static void answer(dreq_t *q)
{
    gw_req_t *r = q->req;
    if (q->submit_error != 0) {
        int e = q->submit_error;
        if (e == PROTO_EQUEUEFULL)
            gw_respond_err(r, e, "the queue is full; retry later");
        else if (e == PROTO_ENOMODEL)
            gw_respond_err(r, e, "no model named '%s'", q->opts.model);
        else if (e == PROTO_ENOBACKEND)
            gw_respond_err(r, e, "no backend can start right now; see /readyz for why");
        else
            gw_respond_err(r, e, "%s", proto_strerror(e));
        return;
    }
    if (!q->multipart) {
        gw_job_t *job = &q->jobs[0];
        int verdict = job->err == PROTO_ESUPERSEDED || job->err == PROTO_ESTALE;
        if (job->err != 0 && !verdict) {
            gw_respond_err(r, job->err, "%s",
                           job->error_msg[0] ? job->error_msg : proto_strerror(job->err));
            return;
        }
        if (!verdict && (q->opts.output == PROTO_OUT_TEXT || q->opts.output == PROTO_OUT_JPEG)) {
            if (q->d->keep != NULL) { /* the answer is not JSON: the stored one still is */
                cJSON *o = gw_detect_job_json(job);
                q->d->keep(q->d->ctx, job, o);
                cJSON_Delete(o);
            }
            size_t len = job->rep.payload_len;
            char *body = malloc(len + 1);
            if (body != NULL && len)
                memcpy(body, job->rep.payload, len);
            gw_respond(r, 200,
                       q->opts.output == PROTO_OUT_TEXT ? "text/plain; charset=utf-8"
                                                        : "image/jpeg",
                       body, body ? len : 0, NULL);
            return;
        }
        cJSON *o = gw_detect_job_json(job);
        if (q->d->keep != NULL && job->err == 0)
            q->d->keep(q->d->ctx, job, o); /* adds "stored": the keys it is kept under */
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        gw_respond(r, 200, "application/json", s, s ? strlen(s) : 0, NULL);
        return;
    }
    /* multipart: the status is the first failure's */
    int first_err = 0;
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "results");
    for (int i = 0; i < q->njobs; i++) {
        if (first_err == 0 && gw_status_of(q->jobs[i].err).status != 200)
            first_err = q->jobs[i].err; /* superseded/skipped frames are answers, not failures */
        cJSON *o = gw_detect_job_json(&q->jobs[i]);
        if (q->d->keep != NULL && q->jobs[i].err == 0)
            q->d->keep(q->d->ctx, &q->jobs[i], o);
        cJSON_AddItemToArray(arr, o);
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    gw_status_t st = gw_status_of(first_err);
    char retry[64];
    gw_respond(r, st.status, "application/json", s, s ? strlen(s) : 0,
               gw_retry_after(r, st.retry_after, retry, sizeof retry));
}

cJSON *gw_detect_job_json(const gw_job_t *job)
{
    cJSON *o = cJSON_CreateObject();
    if (job->err == PROTO_ESUPERSEDED || job->err == PROTO_ESTALE) {
        /* Live cameras (fair.h): answered by design, without a backend. "by" is the seq of
         * the newer frame of the same camera that took this one's place. */
        cJSON_AddStringToObject(o, "status", gw_status_of(job->err).code);
        cJSON_AddStringToObject(o, "camera", job->opts.camera);
        cJSON_AddNumberToObject(o, "seq", (double)job->seq);
        if (job->err == PROTO_ESUPERSEDED)
            cJSON_AddNumberToObject(o, "by", (double)job->superseded_by);
        cJSON_AddNumberToObject(o, "age_ms", round(job->total_ms * 100) / 100);
        return o;
    }
    if (job->err != 0) {
        gw_status_t st = gw_status_of(job->err);
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", st.code);
        cJSON_AddStringToObject(e, "message",
                                job->error_msg[0] ? job->error_msg : proto_strerror(job->err));
        cJSON_AddNumberToObject(o, "status", st.status);
        return o;
    }
    char id[32];
    snprintf(id, sizeof id, "%llu", (unsigned long long)job->id);
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "camera", job->opts.camera);
    if (job->seq != 0)
        cJSON_AddNumberToObject(o, "seq", (double)job->seq);
    if (job->opts.ts_ms != 0) {
        /* As an integer, exactly: a double would round ts beyond 2^53. */
        char ts[32];
        snprintf(ts, sizeof ts, "%lld", (long long)job->opts.ts_ms);
        cJSON_AddRawToObject(o, "ts", ts);
    }
    cJSON_AddStringToObject(o, "backend", job->backend);
    cJSON_AddStringToObject(o, "model", job->model_name);
    cJSON_AddNumberToObject(o, "width", job->rep.width);
    cJSON_AddNumberToObject(o, "height", job->rep.height);
    /* A classifier's records are its top-k classes (most confident first, no boxes). */
    int classes = job->rep.kind == PROTO_KIND_CLASSES;
    cJSON *arr = cJSON_AddArrayToObject(o, classes ? "classes" : "detections");
    size_t cursor = 0;
    proto_det_t d;
    while (proto_rep_det_next(&job->rep, &cursor, &d)) {
        char label[PROTO_LABEL_MAX + 1];
        memcpy(label, d.label, d.label_len);
        label[d.label_len] = '\0';
        cJSON *x = cJSON_CreateObject();
        if (classes) {
            cJSON_AddNumberToObject(x, "class_id", d.class_id);
            cJSON_AddStringToObject(x, "label", label);
            cJSON_AddNumberToObject(x, "confidence", round(d.confidence * 1e4) / 1e4);
            cJSON_AddItemToArray(arr, x);
            continue;
        }
        cJSON_AddStringToObject(x, "label", label);
        cJSON_AddNumberToObject(x, "class_id", d.class_id);
        cJSON_AddNumberToObject(x, "confidence", round(d.confidence * 1e4) / 1e4);
        cJSON *b = cJSON_AddObjectToObject(x, "box");
        cJSON_AddNumberToObject(b, "x", round(d.x * 10) / 10);
        cJSON_AddNumberToObject(b, "y", round(d.y * 10) / 10);
        cJSON_AddNumberToObject(b, "w", round(d.w * 10) / 10);
        cJSON_AddNumberToObject(b, "h", round(d.h * 10) / 10);
        cJSON_AddItemToArray(arr, x);
    }
    cJSON *t = cJSON_AddObjectToObject(o, "timing");
    cJSON_AddNumberToObject(t, "queue_ms", round(job->queue_ms * 100) / 100);
    cJSON_AddNumberToObject(t, "infer_ms", round(job->infer_ms * 100) / 100);
    cJSON_AddNumberToObject(t, "total_ms", round(job->total_ms * 100) / 100);
    return o;
}
