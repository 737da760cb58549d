#include "remote.h"

#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "err.h"
#include "log.h"
#include "tls.h"

static proto_tls_files_t files(const gw_config_t *cfg)
{
    proto_tls_files_t f = {cfg->tls_cert, cfg->tls_key, cfg->tls_ca};
    return f;
}

int gw_remote_check(const gw_config_t *cfg, char *err, size_t errcap)
{
    if (cfg->tls_ca[0] != '\0') {
        proto_tls_files_t f = files(cfg);
        proto_tls_cert_info_t ci;
        nng_tls_config *tls;
        char why[512];
        /* One throw-away configuration: a bad file stops the start here, named, instead of
         * failing every backend's start later. */
        if (proto_tls_config(&tls, 0, &f, "check", why, sizeof why) != 0) {
            snprintf(err, errcap, "keys 'tls_ca', 'tls_cert', 'tls_key': %s", why);
            return PROTO_ECONFIG;
        }
        nng_tls_config_free(tls);
        if (proto_tls_cert_info(cfg->tls_cert, &ci, why, sizeof why) != 0) {
            snprintf(err, errcap, "key 'tls_cert': %s", why);
            return PROTO_ECONFIG;
        }
        if (ci.expired || ci.not_yet_valid)
            GW_LOG_W("tls", "cert=%s name=\"%s\" not_after=%s why=\"%s: every backend will "
                            "refuse it\"",
                     cfg->tls_cert, ci.cn, ci.not_after,
                     ci.expired ? "the gateway certificate has expired"
                                : "the gateway certificate is not valid yet");
        else
            GW_LOG_I("tls", "cert=%s name=\"%s\" not_after=%s ca=%s", cfg->tls_cert, ci.cn,
                     ci.not_after, cfg->tls_ca);
    }
    for (int i = 0; i < cfg->nmodels; i++) {
        const gw_model_t *m = &cfg->models[i];
        char list[GW_STATIC_LIST_MAX];
        snprintf(list, sizeof list, "%s", m->backends_static);
        for (char *save = NULL, *w = strtok_r(list, ", \t", &save); w != NULL;
             w = strtok_r(NULL, ", \t", &save)) {
            proto_addr_t a;
            if (proto_addr_parse(&a, w) == 0 && a.kind == PROTO_ADDR_TCP &&
                !proto_addr_is_local(&a))
                GW_LOG_W("insecure_backend", "model=%s addr=%s why=\"plain tcp to another host: "
                                             "no authentication, no encryption "
                                             "(allow_insecure_backends = true)\"",
                         m->name, w);
        }
    }
    return 0;
}

int gw_remote_allowed(const gw_config_t *cfg, const char *addr, char *err, size_t errcap)
{
    proto_addr_t a;
    if (proto_addr_parse(&a, addr) != 0) {
        snprintf(err, errcap, "not an address to dial (tls+tcp://HOST:PORT)");
        return PROTO_EINVAL;
    }
    if (a.kind == PROTO_ADDR_TCP && !proto_addr_is_local(&a) && !cfg->allow_insecure_backends) {
        snprintf(err, errcap, "plain tcp to another host: dial tls+tcp://, or set "
                              "allow_insecure_backends = true");
        return PROTO_EINVAL;
    }
    if (a.kind == PROTO_ADDR_TLS && cfg->tls_ca[0] == '\0') {
        snprintf(err, errcap, "tls+tcp needs the gateway's certificate: set tls_ca, tls_cert "
                              "and tls_key");
        return PROTO_EINVAL;
    }
    if ((a.kind == PROTO_ADDR_TCP || a.kind == PROTO_ADDR_TLS) &&
        (a.host[0] == '\0' || strcmp(a.host, "0.0.0.0") == 0 || strcmp(a.host, "::") == 0)) {
        snprintf(err, errcap, "a wildcard host cannot be dialled");
        return PROTO_EINVAL;
    }
    return 0;
}

int gw_remote_prepare(const gw_config_t *cfg, gw_link_t *l, const char *addr, char *peer,
                      size_t peer_cap, char *err, size_t errcap)
{
    proto_addr_t a;
    int rv;
    peer[0] = '\0';
    if ((rv = gw_remote_allowed(cfg, addr, err, errcap)) != 0)
        return rv;
    if (proto_addr_parse(&a, addr) != 0 || a.kind != PROTO_ADDR_TLS)
        return 0;
    /* The name checked is the host as dialled: a backend certificate names its host
     * (certs.sh issue --ip / --dns). */
    proto_tls_files_t f = files(cfg);
    nng_tls_config *tls;
    rv = proto_tls_config(&tls, 0, &f, a.host, err, errcap);
    if (rv != 0)
        return rv;
    rv = gw_link_set_tls(l, tls);
    nng_tls_config_free(tls); /* the dialer holds its own reference */
    if (rv != 0) {
        snprintf(err, errcap, "could not set the TLS configuration on the dialer");
        return rv;
    }
    snprintf(peer, peer_cap, "%s", a.host);
    return 0;
}

const char *gw_remote_dial_verdict(const char *addr, const gw_link_dials_t *now,
                                   const gw_link_dials_t *seen, int *tls_refused)
{
    proto_addr_t a;
    *tls_refused = 0;
    if (proto_addr_parse(&a, addr) != 0 || a.kind == PROTO_ADDR_IPC || now->connect > 0)
        return NULL;
    int tls = a.kind == PROTO_ADDR_TLS;
    if (now->auth > seen->auth) {
        *tls_refused = 1;
        return tls ? "TLS handshake failed: a certificate did not verify (the backend's here, "
                     "or ours there: another CA, expired, no name matching the address, wrong "
                     "key usage), or the backend does not speak TLS (a plain tcp:// listener?)"
                   : "TLS handshake failed";
    }
    if (now->other > seen->other || now->proto > seen->proto) {
        *tls_refused = 1;
        return tls ? "the backend closed the connection during the TLS handshake: it refused "
                     "our certificate (another CA, expired)"
                   : "the backend closed the connection during the handshake: does it listen "
                     "on tls+tcp:// (then dial tls+tcp://)?";
    }
    return NULL;
}
