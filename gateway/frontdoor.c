/* The front door (see frontdoor.h). Order of the checks: the address's bucket first (it also
 * bounds how fast anyone can guess tokens), then the token and its role, then the token's
 * bucket (a token shared by many addresses still has one rate). */
#include "frontdoor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "msg.h"
#include "response.h"
#include "status.h"
#include "tls_conn.h"

#define CHECK_MS 1000
#define SETS 1024 /* x GW_LIMIT_WAYS entries per table: above max_connections' default */

struct gw_frontdoor {
    uv_timer_t timer; /* first: the close callback frees through it */
    const gw_config_t *cfg;
    gw_auth_t *auth;
    gw_limit_t *by_addr, *by_token;
    gw_rate_t addr_rate, token_rate;
    gw_metrics_t *metrics;
    int fam_limited, fam_refused;
    uv_loop_t *loop;
    gw_tls_t *tls;            /* NULL: plain HTTP */
    gw_server_t *metrics_srv; /* metrics_listen's */
    gw_route_t metrics_route; /* its one route */
    gw_server_ops_t metrics_ops;
};

static void on_check(uv_timer_t *t)
{
    gw_frontdoor_t *fd = t->data;
    char err[1200];
    int rv = gw_auth_reload(fd->auth, 0, err, sizeof err);
    if (rv > 0)
        GW_LOG_I("tokens_reloaded", "tokens=%d", gw_auth_count(fd->auth));
    else if (rv < 0)
        GW_LOG_E("tokens_reload", "error=\"%s\"", err);
}

void gw_frontdoor_reload(gw_frontdoor_t *fd)
{
    char err[1200];
    int rv = gw_auth_reload(fd->auth, 1, err, sizeof err);
    if (rv > 0)
        GW_LOG_I("tokens_reloaded", "tokens=%d", gw_auth_count(fd->auth));
    else if (rv < 0)
        GW_LOG_E("tokens_reload", "error=\"%s\"", err);
    if (fd->tls != NULL) {
        if (gw_tls_reload(fd->tls, err, sizeof err) == 0)
            GW_LOG_I("https_reloaded", "cert=%s", fd->cfg->https_cert);
        else
            GW_LOG_E("https_reload", "error=\"%s\" note=\"the previous certificate stays\"", err);
    }
}

int gw_frontdoor_listen(gw_frontdoor_t *fd, gw_server_t *srv, char *err, size_t errcap)
{
    const gw_config_t *cfg = fd->cfg;
    int rv = gw_server_listen(srv, cfg->listen_host, cfg->listen_port, fd->tls);
    if (rv != 0) {
        snprintf(err, errcap, "listen: %s:%d: %s", cfg->listen_host, cfg->listen_port,
                 proto_strerror(rv));
        return rv;
    }
    GW_LOG_I("listening", "host=%s port=%d scheme=%s", cfg->listen_host, gw_server_port(srv),
             fd->tls != NULL ? "https" : "http");
    if (cfg->listen_plain[0] != '\0') {
        char host[256];
        int port;
        if (gw_hostport_parse(cfg->listen_plain, host, sizeof host, &port) != 0) {
            snprintf(err, errcap, "listen_plain: '%s' is not HOST:PORT", cfg->listen_plain);
            return PROTO_ECONFIG;
        }
        if ((rv = gw_server_listen(srv, host, port, NULL)) != 0) {
            snprintf(err, errcap, "listen_plain: %s: %s", cfg->listen_plain, proto_strerror(rv));
            return rv;
        }
        GW_LOG_I("listening", "host=%s port=%d scheme=http key=listen_plain", host,
                 gw_server_port_of(srv, 1));
    }
    return 0;
}

static int loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

int gw_frontdoor_metrics(gw_frontdoor_t *fd, gw_handler_cb handler, void *ctx, char *err,
                         size_t errcap)
{
    const char *v = fd->cfg->metrics_listen;
    char host[256];
    int port, rv;
    if (v[0] == '\0')
        return 0;
    if (gw_hostport_parse(v, host, sizeof host, &port) != 0) {
        snprintf(err, errcap, "metrics_listen: '%s' is not HOST:PORT", v);
        return PROTO_ECONFIG;
    }
    if (!loopback(host)) {
        snprintf(err, errcap,
                 "metrics_listen: '%s' is not a loopback address (it serves "
                 "/metrics with no token)",
                 v);
        return PROTO_ECONFIG;
    }
    fd->metrics_route = (gw_route_t){"GET", "/metrics", "metrics", handler, ctx, 0};
    fd->metrics_ops = (gw_server_ops_t){.routes = &fd->metrics_route, .nroutes = 1};
    if ((rv = gw_server_create(&fd->metrics_srv, fd->loop, fd->cfg, &fd->metrics_ops, NULL)) != 0 ||
        (rv = gw_server_listen(fd->metrics_srv, host, port, NULL)) != 0) {
        snprintf(err, errcap, "metrics_listen: %s: %s", v, proto_strerror(rv));
        return rv;
    }
    GW_LOG_I("listening", "host=%s port=%d scheme=http key=metrics_listen", host,
             gw_server_port(fd->metrics_srv));
    return 0;
}

static int parse_rate(const char *key, const char *text, gw_rate_t *out, char *err, size_t cap)
{
    if (gw_rate_parse(text, out) != 0) {
        snprintf(err, cap, "%s: '%s' is not \"N/s burst B\" (or \"off\")", key, text);
        return PROTO_ECONFIG;
    }
    return 0;
}

int gw_frontdoor_create(gw_frontdoor_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                        gw_metrics_t *metrics, char *err, size_t errcap)
{
    gw_frontdoor_t *fd = calloc(1, sizeof *fd);
    int rv;
    if (fd == NULL)
        return PROTO_ENOMEM;
    fd->cfg = cfg;
    fd->metrics = metrics;
    fd->loop = loop;
    uint64_t seed = uv_hrtime() ^ ((uint64_t)(uintptr_t)fd << 16);
    if ((rv = parse_rate("rate_limit", cfg->rate_limit, &fd->token_rate, err, errcap)) != 0 ||
        (rv = parse_rate("rate_limit_address", cfg->rate_limit_address, &fd->addr_rate, err,
                         errcap)) != 0 ||
        (rv = gw_limit_create(&fd->by_addr, SETS, seed)) != 0 ||
        (rv = gw_limit_create(&fd->by_token, SETS, seed * 31 + 7)) != 0) {
        gw_limit_destroy(fd->by_addr);
        free(fd);
        return rv;
    }
    char why[1200];
    if ((cfg->https_cert[0] != '\0') != (cfg->https_key[0] != '\0') ||
        (cfg->https_client_ca[0] != '\0' && cfg->https_cert[0] == '\0')) {
        snprintf(err, errcap,
                 "https_cert, https_key: both or neither (https_client_ca needs "
                 "them)");
        rv = PROTO_ECONFIG;
    } else if (cfg->https_cert[0] != '\0') {
        rv = gw_tls_create(&fd->tls, cfg->https_cert, cfg->https_key, cfg->https_client_ca, err,
                           errcap);
    }
    if (rv != 0) {
        gw_limit_destroy(fd->by_addr);
        gw_limit_destroy(fd->by_token);
        free(fd);
        return rv;
    }
    if ((rv = gw_auth_create(&fd->auth, cfg->tokens_file, why, sizeof why)) != 0) {
        gw_tls_destroy(fd->tls);
        snprintf(err, errcap, "tokens_file: %s", why);
        gw_limit_destroy(fd->by_addr);
        gw_limit_destroy(fd->by_token);
        free(fd);
        return rv;
    }
    if (metrics != NULL) {
        fd->fam_limited = gw_metrics_declare(
            metrics, GW_COUNTER, "framegate_rate_limited_total",
            "Requests refused with 429, by what was over its rate (address or token) and the "
            "token's name (\"\" for an address).",
            "by,token", NULL, 0);
        fd->fam_refused = gw_metrics_declare(
            metrics, GW_COUNTER, "framegate_auth_refused_total",
            "Requests refused for their token: 401 (none or unknown), 403 (role).", "code", NULL,
            0);
        if (fd->fam_limited < 0 || fd->fam_refused < 0) {
            snprintf(err, errcap, "metrics: %s", proto_strerror(PROTO_EINVAL));
            gw_tls_destroy(fd->tls);
            gw_auth_destroy(fd->auth);
            gw_limit_destroy(fd->by_addr);
            gw_limit_destroy(fd->by_token);
            free(fd);
            return PROTO_EINVAL;
        }
    }
    uv_timer_init(loop, &fd->timer);
    fd->timer.data = fd;
    if (!gw_auth_open(fd->auth)) {
        uv_timer_start(&fd->timer, on_check, CHECK_MS, CHECK_MS);
        uv_unref((uv_handle_t *)&fd->timer);
        GW_LOG_I("tokens", "file=%s tokens=%d", cfg->tokens_file, gw_auth_count(fd->auth));
    } else {
        GW_LOG_W("tokens",
                 "file=\"\" note=\"NO TOKENS: every route is open to anyone who can "
                 "reach the gateway; set tokens_file\"%s",
                 "");
    }
    *out = fd;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    gw_frontdoor_t *fd = h->data;
    gw_auth_destroy(fd->auth);
    gw_limit_destroy(fd->by_addr);
    gw_limit_destroy(fd->by_token);
    free(fd);
}

void gw_frontdoor_destroy(gw_frontdoor_t *fd)
{
    if (fd == NULL)
        return;
    gw_server_destroy(fd->metrics_srv);
    fd->metrics_srv = NULL;
    gw_tls_destroy(fd->tls);
    fd->tls = NULL;
    uv_timer_stop(&fd->timer);
    uv_close((uv_handle_t *)&fd->timer, on_closed);
}

int gw_frontdoor_open(const gw_frontdoor_t *fd)
{
    return gw_auth_open(fd->auth);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t gw_frontdoor_token(const gw_req_t *r, char *buf, size_t cap)
{
    const char *a = r->authorization;
    if (r->authorization_over)
        return 0; /* two of them, or too long: no token, rather than a guess */
    if (a[0] != '\0') {
        while (*a == ' ')
            a++;
        if (strncasecmp(a, "Bearer ", 7) != 0)
            return 0;
        a += 7;
        while (*a == ' ')
            a++;
        size_t n = strlen(a);
        while (n > 0 && (a[n - 1] == ' ' || a[n - 1] == '\t'))
            n--;
        if (n == 0 || n >= cap)
            return 0;
        memcpy(buf, a, n);
        buf[n] = '\0';
        return n;
    }
    /* ?token=: the first one, percent-decoded ('+' is a space in a form) */
    const char *q = r->query;
    while (*q != '\0') {
        size_t seg = strcspn(q, "&");
        if (seg > 6 && strncmp(q, "token=", 6) == 0) {
            size_t n = 0;
            for (size_t i = 6; i < seg; i++) {
                int c = (unsigned char)q[i];
                if (c == '%' && i + 2 < seg && hexval(q[i + 1]) >= 0 && hexval(q[i + 2]) >= 0) {
                    c = hexval(q[i + 1]) * 16 + hexval(q[i + 2]);
                    i += 2;
                } else if (c == '+') {
                    c = ' ';
                }
                if (n + 1 >= cap)
                    return 0;
                buf[n++] = (char)c;
            }
            buf[n] = '\0';
            return n;
        }
        q += seg;
        if (*q == '&')
            q++;
    }
    return 0;
}

static void refuse_rate(gw_frontdoor_t *fd, gw_req_t *req, const char *by, const char *name,
                        uint64_t wait_ms)
{
    gw_status_t st = gw_status_of(PROTO_ERATELIMIT);
    char extra[64];
    unsigned long long secs = (wait_ms + 999) / 1000;
    snprintf(extra, sizeof extra, "Retry-After: %llu\r\n", secs);
    if (fd->metrics != NULL)
        gw_metrics_add(fd->metrics, fd->fam_limited, by, name, 1);
    gw_respond_error_extra(req, st.status, st.code, extra,
                           "over the %s rate limit; retry in %llu s", by, secs);
}

int gw_frontdoor_admit(void *door, gw_req_t *req, const gw_route_t *route)
{
    gw_frontdoor_t *fd = door;
    uint64_t now = uv_now(gw_req_loop(req)), wait;
    if (route->allow == 0)
        return 0; /* public (/healthz, /readyz): a load balancer's checks are never limited */
    if ((wait = gw_limit_take(fd->by_addr, gw_req_peer(req), &fd->addr_rate, now)) != 0) {
        refuse_rate(fd, req, "address", "", wait);
        return PROTO_ERATELIMIT;
    }
    char token[GW_AUTH_TOKEN_MAX + 1];
    size_t len = gw_frontdoor_token(req, token, sizeof token);
    const gw_token_t *who;
    int rv = gw_auth_check(fd->auth, token, len, route->allow, req->param, req->param_len, &who);
    memset(token, 0, sizeof token);
    if (rv != 0) {
        gw_status_t st = gw_status_of(rv);
        if (fd->metrics != NULL)
            gw_metrics_add(fd->metrics, fd->fam_refused, st.status == 401 ? "401" : "403", NULL, 1);
        if (rv == PROTO_EUNAUTHORIZED)
            gw_respond_error_extra(
                req, st.status, st.code, "WWW-Authenticate: Bearer realm=\"framegate\"\r\n",
                "%s needs a token (Authorization: Bearer, or ?token=)", req->path);
        else if (who->role == GW_ROLE_CAMERA && (route->allow & GW_ALLOW_OWN_CAMERA))
            gw_respond_error(req, st.status, st.code,
                             "the camera token '%s' speaks for cameras %s only: not %s", who->name,
                             who->cameras, req->path);
        else
            gw_respond_error(req, st.status, st.code, "the role '%s' (%s) may not use %s",
                             gw_role_name(who->role), who->name, req->path);
        return rv;
    }
    /* copied: a reload may free *who before a handler looks (a JSON body decoded off the
     * loop, frames fetched by URL) */
    _Static_assert(sizeof req->cameras >= GW_AUTH_CAMERAS_MAX, "gw_req_t.cameras is too small");
    if (who != NULL && who->role == GW_ROLE_CAMERA)
        snprintf(req->cameras, sizeof req->cameras, "%s", who->cameras);
    if (who != NULL) {
        uint8_t key[GW_LIMIT_KEY];
        memcpy(key, who->hash, sizeof key); /* stable across reloads, unlike its line */
        if ((wait = gw_limit_take(fd->by_token, key, &fd->token_rate, now)) != 0) {
            refuse_rate(fd, req, "token", who->name, wait);
            return PROTO_ERATELIMIT;
        }
    }
    return 0;
}

int gw_frontdoor_camera(gw_req_t *req, const char *camera)
{
    size_t len = camera != NULL ? strlen(camera) : 0;
    if (gw_auth_camera_ok(req->cameras, camera, len))
        return 0;
    const gw_server_ops_t *ops = req->conn->srv->ops;
    gw_frontdoor_t *fd = ops->admit == gw_frontdoor_admit ? ops->door : NULL;
    if (fd != NULL && fd->metrics != NULL)
        gw_metrics_add(fd->metrics, fd->fam_refused, "403", NULL, 1);
    gw_status_t st = gw_status_of(PROTO_EFORBIDDEN);
    if (len == 0)
        gw_respond_error(req, st.status, st.code,
                         "this camera token speaks for cameras %s only: name one (?camera=, or "
                         "the camera field or part)",
                         req->cameras);
    else
        gw_respond_error(req, st.status, st.code,
                         "this camera token speaks for cameras %s only, not '%.*s'", req->cameras,
                         PROTO_CAMERA_MAX, camera);
    return PROTO_EFORBIDDEN;
}

int gw_frontdoor_connect(void *door, const uint8_t peer[GW_LIMIT_KEY])
{
    gw_frontdoor_t *fd = door;
    return gw_limit_conn_add(fd->by_addr, peer, fd->cfg->max_connections_per_address,
                             uv_now(fd->timer.loop));
}

void gw_frontdoor_disconnect(void *door, const uint8_t peer[GW_LIMIT_KEY])
{
    gw_frontdoor_t *fd = door;
    gw_limit_conn_del(fd->by_addr, peer);
}
