#include "router.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "response.h"

int gw_router_match(const char *pattern, const char *path, const char **param, size_t *param_len)
{
    *param = NULL;
    *param_len = 0;
    while (*pattern != '\0') {
        if (pattern[0] == '*' && pattern[1] == '*') {
            if (*param == NULL) {
                *param = path;
                *param_len = strlen(path);
            }
            return 1;
        }
        if (*pattern == '*') {
            size_t n = strcspn(path, "/");
            if (n == 0)
                return 0;
            if (*param == NULL) {
                *param = path;
                *param_len = n;
            }
            path += n;
            pattern++;
            continue;
        }
        if (*pattern != *path)
            return 0;
        pattern++;
        path++;
    }
    return *path == '\0';
}

static int method_is(const char *name, int method)
{
    return strcasecmp(name, llhttp_method_name((llhttp_method_t)method)) == 0;
}

void gw_router_dispatch(const gw_route_t *routes, size_t n, gw_req_t *req)
{
    char allow[128] = "";
    size_t allow_len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *param;
        size_t param_len;
        if (!gw_router_match(routes[i].pattern, req->path, &param, &param_len))
            continue;
        if (req->route == NULL)
            req->route = routes[i].label; /* a 405 counts under the path's route */
        int head = req->method == HTTP_HEAD && strcmp(routes[i].method, "GET") == 0;
        if (!head && !method_is(routes[i].method, req->method)) {
            const char *m = routes[i].method;
            int get = strcmp(m, "GET") == 0;
            if (strstr(allow, m) == NULL && allow_len + strlen(m) + 8 < sizeof allow)
                allow_len += (size_t)snprintf(allow + allow_len, sizeof allow - allow_len, "%s%s%s",
                                              allow_len ? ", " : "", m, get ? ", HEAD" : "");
            continue;
        }
        req->route = routes[i].label;
        req->param = param;
        req->param_len = param_len;
        req->cameras[0] = '\0'; /* unbound unless the front door says otherwise */
        const gw_server_ops_t *ops = req->conn->srv->ops;
        if (ops->admit != NULL && ops->admit(ops->door, req, &routes[i]) != 0)
            return; /* refused: answered by the front door */
        routes[i].handler(routes[i].ctx, req);
        return;
    }
    if (allow_len > 0) {
        char extra[160];
        snprintf(extra, sizeof extra, "Allow: %s\r\n", allow);
        gw_respond_error_extra(req, 405, "method_not_allowed", extra, "use %s", allow);
        return;
    }
    req->route = "other";
    gw_respond_error(req, 404, "not_found", "no such path: %s", req->path);
}

const char *gw_router_label(const gw_route_t *routes, size_t n, const char *path)
{
    for (size_t i = 0; i < n; i++) {
        const char *param;
        size_t param_len;
        if (gw_router_match(routes[i].pattern, path, &param, &param_len))
            return routes[i].label;
    }
    return "other";
}
