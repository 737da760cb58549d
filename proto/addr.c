#include "addr.h"

#include <arpa/inet.h>
#include <nng/nng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

int proto_addr_parse(proto_addr_t *out, const char *url)
{
    nng_url *u;
    memset(out, 0, sizeof *out);
    if (url == NULL || nng_url_parse(&u, url) != 0)
        return PROTO_EINVAL;
    const char *s = u->u_scheme;
    int rv = 0;
    if (strcmp(s, "ipc") == 0)
        out->kind = PROTO_ADDR_IPC;
    else if (strncmp(s, "tcp", 3) == 0)
        out->kind = PROTO_ADDR_TCP;
    else if (strncmp(s, "tls+tcp", 7) == 0)
        out->kind = PROTO_ADDR_TLS;
    else
        out->kind = PROTO_ADDR_OTHER;
    if (out->kind == PROTO_ADDR_TCP || out->kind == PROTO_ADDR_TLS) {
        const char *h = u->u_hostname != NULL ? u->u_hostname : "";
        char *end;
        long port = u->u_port != NULL ? strtol(u->u_port, &end, 10) : -1;
        if (u->u_port == NULL || u->u_port[0] == '\0' || *end != '\0' || port < 0 ||
            port > 65535 || strlen(h) >= sizeof out->host)
            rv = PROTO_EINVAL;
        else {
            snprintf(out->host, sizeof out->host, "%s", h);
            out->port = (int)port;
        }
    }
    nng_url_free(u);
    return rv;
}

int proto_addr_is_local(const proto_addr_t *a)
{
    if (a->kind == PROTO_ADDR_IPC)
        return 1;
    if (a->kind != PROTO_ADDR_TCP && a->kind != PROTO_ADDR_TLS)
        return 0;
    if (strcmp(a->host, "localhost") == 0)
        return 1;
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, a->host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, a->host, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6);
    return 0;
}
