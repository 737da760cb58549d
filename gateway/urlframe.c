#include "urlframe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

typedef struct {
    gw_detect_fetch_cb cb;
    void *arg;
} pending_t;

int gw_urlframe_init(gw_urlframe_t *u, gw_fetch_t *fetch, const gw_config_t *cfg, char *err,
                     size_t cap)
{
    u->fetch = fetch;
    u->cfg = cfg;
    return gw_fetch_policy_parse(&u->policy, cfg->fetch_allow, err, cap);
}

static void on_fetched(void *arg, gw_fetch_result_t *res)
{
    pending_t *p = arg;
    char msg[300];
    int err = res->err;
    if (err != 0) {
        snprintf(msg, sizeof msg, "%s", res->error);
    } else if (res->status < 200 || res->status > 299) {
        err = PROTO_EURLSTATUS;
        snprintf(msg, sizeof msg, "the URL answered HTTP %ld", res->status);
    } else if (res->len == 0) {
        err = PROTO_EEMPTY;
        snprintf(msg, sizeof msg, "the URL's content is empty");
    } else if (!(res->len >= 3 && memcmp(res->body, "\xff\xd8\xff", 3) == 0) &&
               !(res->len >= 8 && memcmp(res->body, "\x89PNG\r\n\x1a\n", 8) == 0)) {
        /* the bytes decide, not the Content-Type the server claims */
        err = PROTO_EFORMAT;
        snprintf(msg, sizeof msg, "the URL's content is not a JPEG or PNG image (Content-Type: %s)",
                 res->content_type[0] ? res->content_type : "none");
    }
    if (err == 0) {
        uint8_t *data = res->body;
        res->body = NULL;
        p->cb(p->arg, 0, NULL, data, res->len);
    } else {
        p->cb(p->arg, err, msg, NULL, 0);
    }
    free(p);
}

int gw_urlframe_get(gw_urlframe_t *u, const char *url, gw_detect_fetch_cb cb, void *arg)
{
    pending_t *p = malloc(sizeof *p);
    if (p == NULL)
        return PROTO_ENOMEM;
    p->cb = cb;
    p->arg = arg;
    gw_fetch_opts_t o = {
        .url = url,
        .max_bytes = u->cfg->max_body_bytes,
        .connect_timeout_ms = u->cfg->fetch_connect_timeout_ms,
        .timeout_ms = u->cfg->fetch_timeout_ms,
        .max_redirects = u->cfg->fetch_max_redirects,
        .policy = &u->policy,
    };
    int rv = gw_fetch_start(u->fetch, &o, on_fetched, p, NULL);
    if (rv != 0)
        free(p);
    return rv;
}
