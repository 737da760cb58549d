/* Request bodies: each --file read once (bounded), kept raw or base64-encoded for the mode and
 * shared by every client; and each client's own head and suffix around them (JSON or
 * multipart framing). Built at start and on the loop thread. */
#include "load.h"

#include <arpa/inet.h>
#include <errno.h>
#include <cjson/cJSON.h>
#include <llhttp.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "err.h"
#include <stdio.h>
#include "load_internal.h"

#define MAX_BODY_FILE (64u << 20) /* a frame larger than this is a mistake, not a test */

/* ---- bodies ---- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64(const uint8_t *in, size_t n, size_t *outlen)
{
    char *out = malloc((n + 2) / 3 * 4 + 1), *p = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        *p++ = b64chars[(v >> 18) & 63];
        *p++ = b64chars[(v >> 12) & 63];
        *p++ = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
        *p++ = i + 2 < n ? b64chars[v & 63] : '=';
    }
    *outlen = (size_t)(p - out);
    return out;
}

static int read_file(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return errno > 0 ? -errno : PROTO_EINVAL; /* libuv's codes are negative errnos */
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    /* Check the size before allocating: a device or a huge file is refused. */
    if (n < 0 || (unsigned long)n > MAX_BODY_FILE || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return PROTO_ETOOBIG;
    }
    *data = malloc(n > 0 ? (size_t)n : 1);
    if (*data == NULL || fread(*data, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(*data);
        return *data ? PROTO_EINVAL : PROTO_ENOMEM;
    }
    fclose(f);
    *len = (size_t)n;
    return 0;
}

int bench__load_bodies(engine_t *e)
{
    const bench_opts_t *o = e->o;
    int rv;
    if ((e->bodies = calloc((size_t)o->nfiles, sizeof *e->bodies)) == NULL)
        return PROTO_ENOMEM;
    for (int i = 0; i < o->nfiles; i++) {
        uint8_t *raw;
        size_t n;
        if ((rv = read_file(o->files[i], &raw, &n)) != 0) {
            fprintf(stderr, "framegate-bench: %s: %s\n", o->files[i], proto_strerror(rv));
            return rv;
        }
        if (o->body_mode == BODY_BASE64) {
            e->bodies[i].data = base64(raw, n, &e->bodies[i].len);
            free(raw);
            if (e->bodies[i].data == NULL)
                return PROTO_ENOMEM;
        } else {
            e->bodies[i].data = (char *)raw;
            e->bodies[i].len = n;
        }
    }
    return 0;
}

/* The per-camera head and suffix around the shared body. Rebuilt only when the client
 * moves to another file (never with one file): a snprintf into the client's own buffers. */
void bench__build_request(client_t *c, int file)
{
    engine_t *e = c->e;
    const bench_opts_t *o = e->o;
    char prefix[128] = "", cam[24], host[280];
    const char *ctype = "image/jpeg", *sep = strchr(o->path, '?') ? "&" : "?";
    if (c->built_file == file)
        return;
    snprintf(cam, sizeof cam, "cam-%d", c->index);
    snprintf(host, sizeof host, strchr(o->host, ':') ? "[%s]:%d" : "%s:%d", o->host, o->port);
    c->suffix[0] = '\0';
    if (o->body_mode == BODY_BASE64) {
        ctype = "application/json";
        snprintf(prefix, sizeof prefix, "{\"camera\":\"%s\",\"image\":\"", cam);
        snprintf(c->suffix, sizeof c->suffix, "\"}");
    } else if (o->body_mode == BODY_MULTIPART) {
        ctype = "multipart/form-data; boundary=fgbench0boundary";
        snprintf(prefix, sizeof prefix,
                 "--fgbench0boundary\r\nContent-Disposition: form-data; name=\"image\"; "
                 "filename=\"frame.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n");
        snprintf(c->suffix, sizeof c->suffix, "\r\n--fgbench0boundary--\r\n");
    }
    size_t total = strlen(prefix) + e->bodies[file].len + strlen(c->suffix);
    /* The camera goes in the query for every mode, so a gateway can route on it alike. */
    int n = snprintf(c->head, sizeof c->head,
                     "POST %s%scamera=%s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     o->path, sep, cam, host, ctype, total, prefix);
    c->head_len = n < (int)sizeof c->head ? (size_t)n : sizeof c->head - 1;
    c->suffix_len = strlen(c->suffix);
    c->built_file = file;
}
