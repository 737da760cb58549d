/* The /v1/backends poller: once a second, a GET on its own short-lived connection (apart
 * from the measured clients), its body bounded and counted into the engine's backends column.
 * Loop thread. */
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
#include "load_internal.h"

#define MAX_POLL_BODY (1u << 20)

/* ---- backends poller ---- */

int bench__on_poll_body(llhttp_t *p, const char *at, size_t len)
{
    engine_t *e = p->data;
    if (e->plen + len > MAX_POLL_BODY)
        return -1;
    if (e->plen + len > e->pcap) {
        size_t cap = (e->plen + len) * 2;
        char *nb = realloc(e->pbody, cap);
        if (nb == NULL)
            return -1;
        e->pbody = nb;
        e->pcap = cap;
    }
    memcpy(e->pbody + e->plen, at, len);
    e->plen += len;
    return 0;
}

int bench_count_backends(const char *json, size_t len, int out[4])
{
    static const char *const states[4] = {"starting", "ready", "draining", "stopping"};
    cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "backends");
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(root);
        return PROTO_EINVAL;
    }
    for (int i = 0; i < 4; i++)
        out[i] = 0;
    const cJSON *b;
    cJSON_ArrayForEach(b, arr)
    {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(b, "state");
        for (int i = 0; cJSON_IsString(st) && i < 4; i++)
            if (strcmp(st->valuestring, states[i]) == 0)
                out[i]++;
    }
    cJSON_Delete(root);
    return 0;
}

int bench__on_poll_complete(llhttp_t *p)
{
    engine_t *e = p->data;
    int counts[4];
    if (p->status_code == 200 && bench_count_backends(e->pbody, e->plen, counts) == 0)
        memcpy(e->backends, counts, sizeof counts);
    return HPE_PAUSED; /* one answer is all we want from this connection */
}

static void on_poll_closed(uv_handle_t *h)
{
    engine_t *e = h->data;
    e->polling = 0;
}

static void poll_close(engine_t *e)
{
    if (!uv_is_closing((uv_handle_t *)&e->ptcp))
        uv_close((uv_handle_t *)&e->ptcp, on_poll_closed);
}

static void poll_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    engine_t *e = h->data;
    (void)sz;
    *buf = uv_buf_init(e->slab, sizeof e->slab);
}

static void on_poll_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    engine_t *e = s->data;
    if (n == 0)
        return;
    if (n > 0 && llhttp_execute(&e->pparser, buf->base, (size_t)n) == HPE_OK)
        return;
    if (n == UV_EOF)
        llhttp_finish(&e->pparser); /* a body delimited by the close */
    poll_close(e);
}

static void on_poll_write(uv_write_t *w, int status)
{
    engine_t *e = w->data;
    if (status < 0)
        poll_close(e);
}

static void on_poll_connect(uv_connect_t *req, int status)
{
    engine_t *e = req->data;
    if (status < 0) {
        poll_close(e);
        return;
    }
    uv_buf_t b = uv_buf_init(e->pget, (unsigned)strlen(e->pget));
    e->pwrite.data = e;
    if (uv_write(&e->pwrite, (uv_stream_t *)&e->ptcp, &b, 1, on_poll_write) != 0 ||
        uv_read_start((uv_stream_t *)&e->ptcp, poll_alloc, on_poll_read) != 0)
        poll_close(e);
}

/* Once a second, after the row is written: the next row shows this poll's answer, or empty
 * fields if the gateway did not answer in time or not with a backends document. */
void bench__poll_backends(engine_t *e)
{
    if (!e->o->poll_backends || e->stopping)
        return;
    memset(e->backends, 0xff, sizeof e->backends); /* -1: unknown */
    if (e->polling) {
        poll_close(e); /* the previous poll is a second old: give up on it */
        return;
    }
    e->polling = 1;
    e->plen = 0;
    uv_tcp_init(&e->loop, &e->ptcp);
    e->ptcp.data = e;
    llhttp_init(&e->pparser, HTTP_RESPONSE, &e->psettings);
    e->pparser.data = e;
    e->pconn.data = e;
    if (uv_tcp_connect(&e->pconn, &e->ptcp, (const struct sockaddr *)&e->addr, on_poll_connect) !=
        0)
        poll_close(e);
}
