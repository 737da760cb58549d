/* Mutual TLS between the gateway and its backends, over NNG's tls+tcp transport (Debian's
 * libnng: mbedTLS 2.28, TLS 1.2). Both ends present a certificate and require the peer's,
 * signed by the same CA (scripts/certs.sh makes them). Any thread; no global state. */
#ifndef PROTO_TLS_H
#define PROTO_TLS_H

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <stddef.h>

typedef struct {
    const char *cert; /* PEM: our certificate (then any intermediates) */
    const char *key;  /* PEM: its private key, unencrypted */
    const char *ca;   /* PEM: the CA a peer's certificate must chain to */
} proto_tls_files_t;

/* Builds a TLS configuration from the three files: server = 1 for a listener (the peer must
 * present a certificate signed by the CA), 0 for a dialer (the server's certificate must be
 * signed by the CA and name `server_name`, which must not be NULL then). On success *out
 * holds one reference (nng_tls_config_free it once it is set on the listener or dialer, which
 * take their own). On failure returns PROTO_EINVAL (a file missing, unreadable, over 256 KiB
 * or not PEM; a key that does not belong to its certificate) with the reason, naming the file,
 * in err, and *out is NULL. */
int proto_tls_config(nng_tls_config **out, int server, const proto_tls_files_t *files,
                     const char *server_name, char *err, size_t errcap);

typedef struct {
    char cn[128];        /* the subject's common name */
    char not_after[24];  /* "2029-03-01T15:59:55Z" */
    int expired;         /* not_after is past */
    int not_yet_valid;   /* not_before is in the future */
} proto_tls_cert_info_t;

/* Reads the first certificate of the PEM file `path` into *info, for a start-up log line
 * (name, expiry) and a warning when it is expired or not yet valid: a peer refuses such a
 * certificate, and the log of the side that holds it is where a user looks first. Returns 0,
 * or PROTO_EINVAL with the reason in err. */
int proto_tls_cert_info(const char *path, proto_tls_cert_info_t *info, char *err,
                        size_t errcap);

/* 1 when an NNG error from a tls+tcp dial or listen means the TLS handshake was refused (a
 * certificate from another CA, expired, without the right name or key usage, no certificate,
 * or a peer that does not speak TLS), as opposed to an unreachable address. */
int proto_tls_refused(int nng_rv);

/* A sentence for a log line about the NNG error `nng_rv` of a dial to a tls+tcp:// address
 * (tls = 1) or a plain tcp:// one (tls = 0). Static text. */
const char *proto_tls_explain(int nng_rv, int tls);

#endif
