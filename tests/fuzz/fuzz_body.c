/* Request body formats (gateway/body.h) and the JSON of a detect request. The input is a
 * Content-Type value, a newline, then the body:
 *
 *   multipart/form-data; boundary=xyz\n--xyz\r\nContent-Disposition: ...
 *
 * Every parser runs on every input (each is cheap): media type and parameters of the first
 * line; multipart with the boundary found there; base64 of the whole body; the body as a
 * detect JSON object, validated as the server does, with its "image" base64-decoded. Each
 * input lives in a buffer of exactly its size, so ASan catches any over-read. Properties:
 * results are NUL-terminated within their caps, part views lie inside the body, decoded
 * base64 fits gw_body_b64_max, and base64 we encode ourselves decodes back to the bytes. */
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "body.h"
#include "err.h"
#include "fuzz.h"
#include "msg.h"

/* A NUL-terminated heap copy of n bytes. */
static char *dup_str(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    FUZZ_CHECK(s != NULL);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static void check_terminated(const char *s, size_t cap)
{
    FUZZ_CHECK(memchr(s, '\0', cap) != NULL);
}

typedef struct {
    const uint8_t *body;
    size_t len;
    int parts;
} walk_t;

static int on_part(void *arg, const gw_part_t *part)
{
    walk_t *w = arg;
    check_terminated(part->name, sizeof part->name);
    check_terminated(part->filename, sizeof part->filename);
    check_terminated(part->content_type, sizeof part->content_type);
    FUZZ_CHECK(part->data >= w->body && part->data <= w->body + w->len);
    FUZZ_CHECK(part->len <= (size_t)(w->body + w->len - part->data));
    /* Touch every byte: a view that is wrong but in bounds of something else shows here. */
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < part->len; i++)
        sum ^= part->data[i];
    (void)sum;
    char mt[128];
    if (gw_body_media_type(part->content_type, mt, sizeof mt) == 0)
        check_terminated(mt, sizeof mt);
    /* The server's cap on image parts: a negative answer stops the walk and is returned. */
    if (++w->parts > 16)
        return PROTO_ETOOBIG;
    return 0;
}

static void fuzz_content_type(const char *ct)
{
    static const char *const names[] = {"boundary", "charset", "name", "filename"};
    static const size_t caps[] = {1, 2, 8, 128};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        /* Exact-size heap buffers: writing one byte past cap is an ASan report. */
        char *out = malloc(caps[i]);
        FUZZ_CHECK(out != NULL);
        if (gw_body_media_type(ct, out, caps[i]) == 0) {
            check_terminated(out, caps[i]);
            FUZZ_CHECK(out[0] != '\0');
        }
        for (size_t j = 0; j < sizeof names / sizeof names[0]; j++)
            if (gw_body_param(ct, names[j], out, caps[i]) == 0) {
                check_terminated(out, caps[i]);
                FUZZ_CHECK(out[0] != '\0');
            }
        free(out);
    }
}

static void fuzz_multipart(const char *ct, const uint8_t *body, size_t len)
{
    char boundary[128];
    if (gw_body_param(ct, "boundary", boundary, sizeof boundary) != 0)
        return;
    walk_t w = {body, len, 0};
    int rv = gw_body_multipart(body, len, boundary, on_part, &w);
    FUZZ_CHECK(rv < 0 || rv == w.parts);
    FUZZ_CHECK(rv >= 0 || rv == PROTO_EINVAL || rv == PROTO_ETOOBIG);
}

static size_t b64_encode(const uint8_t *in, size_t n, char *out, int url)
{
    const char *abc = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                          : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        out[o++] = abc[v & 63];
    }
    if (n - i > 0) {
        uint32_t v = (uint32_t)in[i] << 16 | (n - i > 1 ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        if (n - i > 1)
            out[o++] = abc[(v >> 6) & 63];
        if (!url) { /* padded in the standard alphabet, bare in the url-safe one */
            if (n - i == 1)
                out[o++] = '=';
            out[o++] = '=';
        }
    }
    return o;
}

/* Decodes in[0..len) into an exact-size buffer; the decoded length is checked. */
static int b64_decode(const char *in, size_t len, uint8_t **out, size_t *outlen)
{
    size_t cap = gw_body_b64_max(len);
    *out = malloc(cap > 0 ? cap : 1);
    FUZZ_CHECK(*out != NULL);
    *outlen = (size_t)-1;
    int rv = gw_body_b64_decode(in, len, *out, outlen);
    FUZZ_CHECK(rv == 0 || rv == PROTO_EINVAL);
    if (rv == 0)
        FUZZ_CHECK(*outlen <= cap && *outlen <= len / 4 * 3 + 2);
    return rv;
}

static void fuzz_base64(const uint8_t *body, size_t len)
{
    uint8_t *out;
    size_t outlen;
    b64_decode((const char *)body, len, &out, &outlen);
    free(out);

    /* Round trip, both alphabets, the url-safe one with a data URL prefix. */
    static const char prefix[] = "data:image/jpeg;base64,";
    size_t cap = sizeof prefix + (len + 2) / 3 * 4 + 2;
    char *enc = malloc(cap);
    FUZZ_CHECK(enc != NULL);
    for (int url = 0; url < 2; url++) {
        size_t off = url ? sizeof prefix - 1 : 0;
        memcpy(enc, prefix, off);
        size_t n = off + b64_encode(body, len, enc + off, url);
        if (!url)
            enc[n++] = '\n'; /* a trailing newline is allowed */
        FUZZ_CHECK(b64_decode(enc, n, &out, &outlen) == 0);
        FUZZ_CHECK(outlen == len && (len == 0 || memcmp(out, body, len) == 0));
        free(out);
    }
    free(enc);
}

/* The checks handle_detect (gateway/server.c) makes on a JSON upload, in the same order. */
static void fuzz_json(const uint8_t *body, size_t len)
{
    cJSON *root = cJSON_ParseWithLength((const char *)body, len);
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return;
    }
    const cJSON *image = cJSON_GetObjectItemCaseSensitive(root, "image");
    const cJSON *camera = cJSON_GetObjectItemCaseSensitive(root, "camera");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(root, "ts");
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(root, "threshold");
    int bad =
        image == NULL || !cJSON_IsString(image) ||
        (camera != NULL &&
         (!cJSON_IsString(camera) || strlen(camera->valuestring) > PROTO_CAMERA_MAX)) ||
        (ts != NULL && (!cJSON_IsNumber(ts) || !(fabs(ts->valuedouble) < 9e18) ||
                        ts->valuedouble != floor(ts->valuedouble))) ||
        (th != NULL && (!cJSON_IsNumber(th) || !(th->valuedouble >= 0) || !(th->valuedouble <= 1)));
    if (!bad) {
        uint8_t *out;
        size_t outlen;
        b64_decode(image->valuestring, strlen(image->valuestring), &out, &outlen);
        free(out);
        /* What the answer echoes must print. */
        char *s = cJSON_PrintUnformatted(root);
        FUZZ_CHECK(s != NULL);
        free(s);
    }
    cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t ct_len = nl != NULL ? (size_t)(nl - data) : size;
    char *ct = dup_str(data, ct_len);
    const uint8_t *rest = nl != NULL ? nl + 1 : data + size;
    size_t len = size - (size_t)(rest - data);
    uint8_t *body = malloc(len > 0 ? len : 1);
    FUZZ_CHECK(body != NULL);
    if (len > 0)
        memcpy(body, rest, len);

    fuzz_content_type(ct);
    fuzz_multipart(ct, body, len);
    fuzz_base64(body, len);
    fuzz_json(body, len);

    free(body);
    free(ct);
    return 0;
}
