/* The server: its listener, its route table (the built-in /healthz first) and its
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
    gw__http_accept(listener->data);
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
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    *out = srv;
    return 0;
}

int gw_server_start(gw_server_t *srv)
{
    struct sockaddr_storage addr;
    int rv;
    if (uv_ip4_addr(srv->cfg->listen_host, srv->cfg->listen_port, (struct sockaddr_in *)&addr) !=
            0 &&
        (rv = uv_ip6_addr(srv->cfg->listen_host, srv->cfg->listen_port,
                          (struct sockaddr_in6 *)&addr)) != 0)
        return rv;
    if ((rv = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0)) != 0)
        return rv;
    if ((rv = uv_listen((uv_stream_t *)&srv->listener, 1024, on_connection)) != 0)
        return rv;
    srv->listening = 1;
    return 0;
}

int gw_server_port(const gw_server_t *srv)
{
    struct sockaddr_storage addr;
    int len = sizeof addr;
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&addr, &len) != 0)
        return -1;
    if (addr.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
    return ntohs(((struct sockaddr_in *)&addr)->sin_port);
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
    if (srv->listening) {
        uv_close((uv_handle_t *)&srv->listener, NULL);
        srv->listening = 0;
    }
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
    if (srv->listening) {
        uv_close((uv_handle_t *)&srv->listener, NULL);
        srv->listening = 0;
    }
    for (gw_conn_t *c = srv->conns; c != NULL; c = c->next)
        gw__http_close(c);
    /* Connections free themselves from their close callbacks; they point at srv, so run
     * the loop until they are gone before freeing it. */
    while (srv->nconns > 0 && uv_run(srv->loop, UV_RUN_ONCE) != 0)
        ;
    if (!uv_is_closing((uv_handle_t *)&srv->listener))
        uv_close((uv_handle_t *)&srv->listener, NULL);
    uv_run(srv->loop, UV_RUN_NOWAIT);
    free(srv->routes);
    free(srv);
}
