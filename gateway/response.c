#include "response.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "body.h"
#include "http.h"
#include "router.h"
#include "status.h"

void gw_respond(gw_req_t *r, int status, const char *ctype, char *body, size_t len,
                const char *extra)
{
    gw_conn_t *c = r->conn;
    gw_server_t *srv = c->srv;
    if (r->ready) {
        free(body);
        return;
    }
    /* While stopping, the connection closes after the last answer it owes. */
    int last = r->next == NULL && c->cur == NULL && c->pending == NULL;
    if (body == NULL)
        len = 0;
    int close = r->close_after || !r->keep_alive || (srv->stopping && last);
    int n = snprintf(r->resp_head, sizeof r->resp_head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: %s\r\n%s\r\n",
                     status, gw_status_reason(status), ctype, len, close ? "close" : "keep-alive",
                     extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof r->resp_head) {
        /* Only a handler's absurd content type can get here; the answer would be cut. */
        free(body);
        body = NULL;
        len = 0;
        n = snprintf(r->resp_head, sizeof r->resp_head,
                     "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                     "Content-Length: 0\r\nConnection: close\r\n\r\n");
        close = 1;
    }
    if (r->head_only) {
        /* HEAD: Content-Length says what GET would send; nothing follows the headers. */
        free(body);
        body = NULL;
    }
    r->resp_head_len = (size_t)n;
    r->resp = body; /* the body is sent as a second buffer, not copied */
    r->resp_len = body != NULL ? len : 0;
    r->close_after = close;
    r->ready = 1;
    if (srv->ops->on_response) {
        double secs = (double)(uv_hrtime() - r->start_ns) / 1e9;
        const char *route =
            r->route ? r->route : gw_router_label(srv->routes, srv->nroutes, r->path);
        srv->ops->on_response(srv->ctx, route, status, secs);
    }
}

char *gw_error_json(const char *code, const char *msg, size_t *len)
{
    char clean[2048];
    size_t n = strlen(msg);
    if (n >= sizeof clean)
        n = sizeof clean - 1;
    memcpy(clean, msg, n);
    clean[n] = '\0';
    gw_body_utf8_sanitize(clean, n);
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", clean);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    *len = s ? strlen(s) : 0;
    return s;
}

const char *gw_retry_after(const gw_req_t *r, int retry, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (retry)
        snprintf(buf, cap, "Retry-After: %d\r\n", r->conn->srv->cfg->retry_after_s);
    return buf;
}

static void respond_errorv(gw_req_t *r, int status, const char *code, const char *extra,
                           const char *fmt, va_list ap)
{
    char msg[PROTO_ERROR_MAX + 600], head[256], retry[64];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t len;
    char *body = gw_error_json(code, msg, &len);
    snprintf(head, sizeof head, "%s%s", gw_retry_after(r, status == 503, retry, sizeof retry),
             extra ? extra : "");
    gw_respond(r, status, "application/json", body, len, head);
}

void gw_respond_error(gw_req_t *r, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    respond_errorv(r, status, code, NULL, fmt, ap);
    va_end(ap);
}

void gw_respond_error_extra(gw_req_t *r, int status, const char *code, const char *extra,
                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    respond_errorv(r, status, code, extra, fmt, ap);
    va_end(ap);
}

void gw_respond_err(gw_req_t *r, int err, const char *fmt, ...)
{
    gw_status_t st = gw_status_of(err);
    char msg[PROTO_ERROR_MAX + 128], retry[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len;
    char *body = gw_error_json(st.code, msg, &len);
    gw_respond(r, st.status, "application/json", body, len,
               gw_retry_after(r, st.retry_after, retry, sizeof retry));
}

void gw__reject(gw_req_t *r, int status, const char *code, const char *fmt, ...)
{
    gw_conn_t *c = r->conn;
    if (c->cur == r) {
        c->cur = NULL;
        c->phase = GW_PH_IDLE;
    }
    c->fatal = 1;
    r->close_after = 1;
    uv_read_stop((uv_stream_t *)&c->tcp); /* nothing after this request is read */
    va_list ap;
    va_start(ap, fmt);
    respond_errorv(r, status, code, NULL, fmt, ap);
    va_end(ap);
}
