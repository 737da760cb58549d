/* The server: its listeners, its route table (the built-in /healthz first) and its
 * lifecycle. Connections live in http.c. */
#include "server.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "http.h"
#include "response.h"

/* GET /healthz: the HTTP front itself is alive (backends have /readyz). */
static void on_healthz(void *ctx, gw_req_t *req)
{
    (void)ctx;
    char *body = strdup("{\"status\":\"ok\"}");
    gw_respond(req, 200, "application/json", body, body ? strlen(body) : 0, NULL);
}

static const gw_route_t builtin_routes[] = {
    {"GET", "/healthz", "healthz", on_healthz, NULL, 0},
};

static void on_connection(uv_stream_t *listener, int status)
{
    if (status < 0)
        return;
    gw__http_accept((gw_listener_t *)listener);
}

int gw_server_create(gw_server_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                     const gw_server_ops_t *ops, void *ctx)
{
    gw_server_t *srv = calloc(1, sizeof *srv);
    size_t nb = sizeof builtin_routes / sizeof builtin_routes[0];
    if (srv == NULL || (srv->routes = calloc(nb + ops->nroutes, sizeof *srv->routes)) == NULL) {
        free(srv);
        return PROTO_ENOMEM;
    }
    memcpy(srv->routes, builtin_routes, sizeof builtin_routes);
    if (ops->nroutes > 0)
        memcpy(srv->routes + nb, ops->routes, ops->nroutes * sizeof *ops->routes);
    srv->nroutes = nb + ops->nroutes;
    srv->loop = loop;
    srv->cfg = cfg;
    srv->ops = ops;
    srv->ctx = ctx;
    gw__http_settings(&srv->settings);
    *out = srv;
    return 0;
}

int gw_hostport_parse(const char *text, char *host, size_t hostcap, int *port)
{
    const char *colon;
    size_t hl;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return PROTO_EINVAL;
        hl = (size_t)(close - text - 1);
        text++;
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL)
            return PROTO_EINVAL;
        hl = (size_t)(colon - text);
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (hl == 0 || hl >= hostcap || colon[1] == '\0' || *end != '\0' || p < 0 || p > 65535)
        return PROTO_EINVAL;
    memcpy(host, text, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

int gw_server_listen(gw_server_t *srv, const char *host, int port, gw_tls_t *tls)
{
    struct sockaddr_storage addr;
    int rv;
    if (srv->nlisteners == GW_SERVER_MAX_LISTENERS)
        return PROTO_ETOOBIG;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        (rv = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)) != 0)
        return rv;
    gw_listener_t *l = &srv->listeners[srv->nlisteners];
    memset(l, 0, sizeof *l);
    l->srv = srv;
    l->tls = tls;
    uv_tcp_init(srv->loop, &l->tcp);
    l->tcp.data = l;
    l->open = 1;
    srv->nlisteners++; /* closed by stop/destroy whatever happens next */
    if ((rv = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&addr, 0)) != 0)
        return rv;
    if ((rv = uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection)) != 0)
        return rv;
    return 0;
}

int gw_server_start(gw_server_t *srv)
{
    return gw_server_listen(srv, srv->cfg->listen_host, srv->cfg->listen_port, NULL);
}

int gw_server_port_of(const gw_server_t *srv, int i)
{
    struct sockaddr_storage addr;
    int len = sizeof addr;
    if (i < 0 || i >= srv->nlisteners ||
        uv_tcp_getsockname(&srv->listeners[i].tcp, (struct sockaddr *)&addr, &len) != 0)
        return -1;
    if (addr.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
    return ntohs(((struct sockaddr_in *)&addr)->sin_port);
}

int gw_server_port(const gw_server_t *srv)
{
    return gw_server_port_of(srv, 0);
}

static void close_listeners(gw_server_t *srv)
{
    for (int i = 0; i < srv->nlisteners; i++) {
        gw_listener_t *l = &srv->listeners[i];
        if (l->open && !uv_is_closing((uv_handle_t *)&l->tcp))
            uv_close((uv_handle_t *)&l->tcp, NULL);
        l->open = 0;
    }
}

int gw_server_connections(const gw_server_t *srv)
{
    return srv->nconns;
}

void gw__server_check_drained(gw_server_t *srv)
{
    if (srv->stopping && srv->nconns == 0 && !srv->drained_sent && !srv->destroying) {
        srv->drained_sent = 1;
        if (srv->ops->on_drained)
            srv->ops->on_drained(srv->ctx);
    }
}

void gw_server_stop(gw_server_t *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = 1;
    close_listeners(srv);
    gw_conn_t *c = srv->conns;
    while (c != NULL) {
        gw_conn_t *next = c->next;
        if (c->head == NULL && c->cur == NULL)
            gw__http_close_idle(c);
        c = next;
    }
    gw__server_check_drained(srv);
}

void gw_server_destroy(gw_server_t *srv)
{
    if (srv == NULL)
        return;
    srv->destroying = 1;
    srv->stopping = 1;
    close_listeners(srv);
    for (gw_conn_t *c = srv->conns; c != NULL; c = c->next)
        gw__http_close(c);
    /* Connections free themselves from their close callbacks; they point at srv, so run
     * the loop until they are gone before freeing it. */
    while (srv->nconns > 0 && uv_run(srv->loop, UV_RUN_ONCE) != 0)
        ;
    uv_run(srv->loop, UV_RUN_NOWAIT);
    free(srv->routes);
    free(srv);
}
