#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "err.h"

#define PEM_MAX (256 * 1024)

/* Reads a whole PEM file into a NUL-terminated heap string (nng wants the text, not a path,
 * for a certificate and key kept in two files). */
static char *read_pem(const char *path, const char *what, char *err, size_t errcap)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errcap, "%s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(PEM_MAX + 1);
    size_t n = buf != NULL ? fread(buf, 1, PEM_MAX + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (buf == NULL || bad || n > PEM_MAX || n == 0) {
        snprintf(err, errcap, "%s %s: %s", what, path,
                 buf == NULL ? "out of memory"
                 : bad       ? "read error"
                 : n == 0    ? "empty file"
                             : "larger than 256 KiB");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (strstr(buf, "-----BEGIN ") == NULL) {
        snprintf(err, errcap, "%s %s: not a PEM file", what, path);
        free(buf);
        return NULL;
    }
    return buf;
}

/* 0 when the key is the private half of the certificate's first public key. */
static int check_pair(const char *cert_pem, const char *key_pem)
{
    mbedtls_x509_crt crt;
    mbedtls_pk_context pk;
    int rv;
    mbedtls_x509_crt_init(&crt);
    mbedtls_pk_init(&pk);
    rv = mbedtls_x509_crt_parse(&crt, (const unsigned char *)cert_pem, strlen(cert_pem) + 1);
    if (rv == 0)
        rv = mbedtls_pk_parse_key(&pk, (const unsigned char *)key_pem, strlen(key_pem) + 1, NULL,
                                  0);
    if (rv == 0)
        rv = mbedtls_pk_check_pair(&crt.pk, &pk);
    mbedtls_pk_free(&pk);
    mbedtls_x509_crt_free(&crt);
    return rv;
}

int proto_tls_cert_info(const char *path, proto_tls_cert_info_t *info, char *err, size_t errcap)
{
    mbedtls_x509_crt crt;
    memset(info, 0, sizeof *info);
    mbedtls_x509_crt_init(&crt);
    int rv = mbedtls_x509_crt_parse_file(&crt, path);
    if (rv != 0) {
        char why[128];
        mbedtls_strerror(rv, why, sizeof why);
        snprintf(err, errcap, "certificate %s: %s", path, why);
        mbedtls_x509_crt_free(&crt);
        return PROTO_EINVAL;
    }
    /* The CN is the last attribute of that type in the subject. */
    for (const mbedtls_x509_name *n = &crt.subject; n != NULL; n = n->next)
        if (n->oid.p != NULL && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0)
            snprintf(info->cn, sizeof info->cn, "%.*s", (int)n->val.len,
                     (const char *)n->val.p);
    const mbedtls_x509_time *t = &crt.valid_to;
    snprintf(info->not_after, sizeof info->not_after, "%04d-%02d-%02dT%02d:%02d:%02dZ", t->year,
             t->mon, t->day, t->hour, t->min, t->sec);
    info->expired = mbedtls_x509_time_is_past(&crt.valid_to);
    info->not_yet_valid = mbedtls_x509_time_is_future(&crt.valid_from);
    mbedtls_x509_crt_free(&crt);
    return 0;
}

int proto_tls_config(nng_tls_config **out, int server, const proto_tls_files_t *files,
                     const char *server_name, char *err, size_t errcap)
{
    nng_tls_config *cfg = NULL;
    char *cert = NULL, *key = NULL;
    int rv;
    *out = NULL;
    if (files->cert == NULL || files->key == NULL || files->ca == NULL ||
        files->cert[0] == '\0' || files->key[0] == '\0' || files->ca[0] == '\0') {
        snprintf(err, errcap, "mutual TLS needs a certificate, its key and the CA");
        return PROTO_EINVAL;
    }
    if (!server && (server_name == NULL || server_name[0] == '\0')) {
        snprintf(err, errcap, "no server name to check the backend's certificate against");
        return PROTO_EINVAL;
    }
    if ((cert = read_pem(files->cert, "certificate", err, errcap)) == NULL ||
        (key = read_pem(files->key, "key", err, errcap)) == NULL) {
        free(cert);
        return PROTO_EINVAL;
    }
    /* The CA file is checked here too, so a typo is reported by name and not as a handshake
     * failure later. */
    char *ca = read_pem(files->ca, "CA", err, errcap);
    if (ca == NULL) {
        free(cert);
        free(key);
        return PROTO_EINVAL;
    }
    /* nng loads a key without checking it against the certificate; a mismatch would only
     * show up as failed handshakes on the peer's side. */
    if (check_pair(cert, key) != 0) {
        snprintf(err, errcap, "key %s does not belong to certificate %s (or one of them does "
                 "not parse)", files->key, files->cert);
        explicit_bzero(key, strlen(key));
        free(cert);
        free(key);
        free(ca);
        return PROTO_EINVAL;
    }
    if ((rv = nng_tls_config_alloc(&cfg, server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT)) !=
        0) {
        snprintf(err, errcap, "TLS configuration: %s", nng_strerror(rv));
    } else if ((rv = nng_tls_config_ca_chain(cfg, ca, NULL)) != 0) {
        snprintf(err, errcap, "CA %s: %s", files->ca, nng_strerror(rv));
    } else if ((rv = nng_tls_config_own_cert(cfg, cert, key, NULL)) != 0) {
        snprintf(err, errcap, "certificate %s / key %s: %s (does the key match?)", files->cert,
                 files->key, nng_strerror(rv));
    } else if ((rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) != 0) {
        snprintf(err, errcap, "TLS peer authentication: %s", nng_strerror(rv));
    } else if (!server && (rv = nng_tls_config_server_name(cfg, server_name)) != 0) {
        snprintf(err, errcap, "TLS server name '%s': %s", server_name, nng_strerror(rv));
    }
    /* The PEM text holds a private key: do not leave it in freed heap memory. */
    explicit_bzero(key, strlen(key));
    free(cert);
    free(key);
    free(ca);
    if (rv != 0) {
        if (cfg != NULL)
            nng_tls_config_free(cfg);
        return PROTO_EINVAL;
    }
    *out = cfg;
    return 0;
}

int proto_tls_refused(int nng_rv)
{
    return nng_rv == NNG_ECRYPTO || nng_rv == NNG_EPEERAUTH || nng_rv == NNG_ECONNSHUT ||
           nng_rv == NNG_EPROTO;
}

const char *proto_tls_explain(int nng_rv, int tls)
{
    switch (nng_rv) {
    case NNG_ECRYPTO:
    case NNG_EPEERAUTH:
        /* mbedTLS reports an alert from the peer (our certificate refused there), a peer
         * certificate refused here and a peer answering in plain bytes all the same way */
        return "TLS handshake failed: a certificate did not verify (the backend's here or ours "
               "there: another CA, expired, no name matching the address, wrong key usage) or "
               "the backend does not speak TLS (a plain tcp:// listener?)";
    case NNG_ECONNSHUT:
        return tls ? "TLS handshake refused by the backend: it did not accept our certificate "
                     "(another CA, expired, or none configured)"
                   : "connection closed during the handshake: does the backend listen on "
                     "tls+tcp://?";
    case NNG_EPROTO:
        return "protocol error: the peer is not a framegate backend";
    case NNG_ECONNREFUSED:
        return "connection refused: nothing listens there";
    case NNG_ETIMEDOUT:
        return "timed out: the host does not answer";
    case NNG_EADDRINVAL:
        return "invalid address";
    default:
        return nng_strerror(nng_rv);
    }
}
