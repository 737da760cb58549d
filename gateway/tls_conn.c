/* mbedTLS over memory buffers (see tls_conn.h). The BIO callbacks never block: recv gives
 * what http.c fed in (else WANT_READ), send appends to an output buffer that the caller
 * takes and writes with libuv. */
#include "tls_conn.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define SESSION_CACHE 4096 /* sessions kept for clients without tickets */
#define TICKET_LIFETIME_S (12 * 3600)
#define INPUT_MAX (256u << 10) /* input held unread: a parser that waits need not hold more */

/* ECDHE + AEAD only: forward secrecy and no CBC. ChaCha20-Poly1305 first, by the server's
 * preference (mbedTLS's default): mbedTLS 2.28 runs AES-GCM one 16-byte block per call
 * (AES-NI, then a PCLMUL multiply), 246 MB/s on one core here against 421 for its
 * ChaCha20-Poly1305 (16 KiB records), and frames are big: a 160 KiB body cost ~0.7 ms of the
 * loop in AES-GCM alone. Clients without ChaCha20 (rare) still get AES-GCM. */
static const int suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    0,
};

/* One certificate generation: the configuration sessions point at. */
typedef struct gen {
    int refs; /* gw_tls's (while current) + one per session */
    mbedtls_ssl_config conf;
    mbedtls_x509_crt cert, ca;
    mbedtls_pk_context key;
} gen_t;

struct gw_tls {
    char cert_path[1024], key_path[1024], ca_path[1024];
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_ssl_ticket_context ticket; /* outlives generations: tickets survive a reload */
    mbedtls_ssl_cache_context cache;
    gen_t *cur;
};

struct gw_tls_conn {
    mbedtls_ssl_context ssl;
    gen_t *gen;
    const uint8_t *in; /* borrowed input (gw_tls_conn_feed) */
    size_t in_len;
    uint8_t *own; /* kept input (gw_tls_conn_keep), read before `in` */
    size_t own_off, own_len;
    char *out; /* ciphertext to send */
    size_t out_len, out_cap;
    int failed; /* output could not be buffered: the session is unusable */
};

static void gen_release(gen_t *g)
{
    if (g == NULL || --g->refs > 0)
        return;
    mbedtls_ssl_config_free(&g->conf);
    mbedtls_x509_crt_free(&g->cert);
    mbedtls_x509_crt_free(&g->ca);
    mbedtls_pk_free(&g->key);
    free(g);
}

static int fail(char *err, size_t cap, const char *what, const char *path, int mbed)
{
    char buf[160];
    mbedtls_strerror(mbed, buf, sizeof buf);
    snprintf(err, cap, "%s %s: %s", what, path, buf);
    return PROTO_ECONFIG;
}

static int gen_create(gw_tls_t *t, gen_t **out, char *err, size_t cap)
{
    gen_t *g = calloc(1, sizeof *g);
    int rv;
    if (g == NULL)
        return PROTO_ENOMEM;
    g->refs = 1;
    mbedtls_ssl_config_init(&g->conf);
    mbedtls_x509_crt_init(&g->cert);
    mbedtls_x509_crt_init(&g->ca);
    mbedtls_pk_init(&g->key);
    if ((rv = mbedtls_x509_crt_parse_file(&g->cert, t->cert_path)) != 0) {
        rv = fail(err, cap, "https_cert", t->cert_path, rv);
    } else if ((rv = mbedtls_pk_parse_keyfile(&g->key, t->key_path, NULL)) != 0) {
        rv = fail(err, cap, "https_key", t->key_path, rv);
    } else if ((rv = mbedtls_pk_check_pair(&g->cert.pk, &g->key)) != 0) {
        rv = fail(err, cap, "https_key", t->key_path, rv);
    } else if (t->ca_path[0] != '\0' &&
               (rv = mbedtls_x509_crt_parse_file(&g->ca, t->ca_path)) != 0) {
        rv = fail(err, cap, "https_client_ca", t->ca_path, rv);
    } else if ((rv = mbedtls_ssl_config_defaults(&g->conf, MBEDTLS_SSL_IS_SERVER,
                                                 MBEDTLS_SSL_TRANSPORT_STREAM,
                                                 MBEDTLS_SSL_PRESET_DEFAULT)) != 0 ||
               (rv = mbedtls_ssl_conf_own_cert(&g->conf, &g->cert, &g->key)) != 0) {
        rv = fail(err, cap, "https_cert", t->cert_path, rv);
    }
    if (rv != 0) {
        gen_release(g);
        return rv;
    }
    mbedtls_ssl_conf_rng(&g->conf, mbedtls_ctr_drbg_random, &t->drbg);
    mbedtls_ssl_conf_min_version(&g->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&g->conf, suites);
    mbedtls_ssl_conf_session_tickets_cb(&g->conf, mbedtls_ssl_ticket_write,
                                        mbedtls_ssl_ticket_parse, &t->ticket);
    mbedtls_ssl_conf_session_cache(&g->conf, &t->cache, mbedtls_ssl_cache_get,
                                   mbedtls_ssl_cache_set);
    mbedtls_ssl_conf_renegotiation(&g->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    if (t->ca_path[0] != '\0') {
        mbedtls_ssl_conf_ca_chain(&g->conf, &g->ca, NULL);
        mbedtls_ssl_conf_authmode(&g->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    } else {
        mbedtls_ssl_conf_authmode(&g->conf, MBEDTLS_SSL_VERIFY_NONE);
    }
    *out = g;
    return 0;
}

int gw_tls_create(gw_tls_t **out, const char *cert, const char *key, const char *client_ca,
                  char *err, size_t errcap)
{
    gw_tls_t *t = calloc(1, sizeof *t);
    int rv;
    if (t == NULL)
        return PROTO_ENOMEM;
    snprintf(t->cert_path, sizeof t->cert_path, "%s", cert);
    snprintf(t->key_path, sizeof t->key_path, "%s", key);
    snprintf(t->ca_path, sizeof t->ca_path, "%s", client_ca ? client_ca : "");
    mbedtls_entropy_init(&t->entropy);
    mbedtls_ctr_drbg_init(&t->drbg);
    mbedtls_ssl_ticket_init(&t->ticket);
    mbedtls_ssl_cache_init(&t->cache);
    mbedtls_ssl_cache_set_max_entries(&t->cache, SESSION_CACHE);
    static const unsigned char pers[] = "framegate-https";
    if ((rv = mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func, &t->entropy, pers,
                                    sizeof pers - 1)) != 0 ||
        (rv = mbedtls_ssl_ticket_setup(&t->ticket, mbedtls_ctr_drbg_random, &t->drbg,
                                       MBEDTLS_CIPHER_AES_256_GCM, TICKET_LIFETIME_S)) != 0) {
        fail(err, errcap, "TLS", "random generator", rv);
        gw_tls_destroy(t);
        return PROTO_ECONFIG;
    }
    if ((rv = gen_create(t, &t->cur, err, errcap)) != 0) {
        gw_tls_destroy(t);
        return rv;
    }
    *out = t;
    return 0;
}

int gw_tls_reload(gw_tls_t *t, char *err, size_t errcap)
{
    gen_t *g;
    int rv = gen_create(t, &g, err, errcap);
    if (rv != 0)
        return rv;
    gen_release(t->cur);
    t->cur = g;
    return 0;
}

void gw_tls_destroy(gw_tls_t *t)
{
    if (t == NULL)
        return;
    gen_release(t->cur);
    mbedtls_ssl_cache_free(&t->cache);
    mbedtls_ssl_ticket_free(&t->ticket);
    mbedtls_ctr_drbg_free(&t->drbg);
    mbedtls_entropy_free(&t->entropy);
    free(t);
}

/* ---- one session ---- */

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    gw_tls_conn_t *tc = ctx;
    if (tc->out_len + len > tc->out_cap) {
        size_t cap = tc->out_cap ? tc->out_cap : 4096;
        while (cap < tc->out_len + len)
            cap *= 2;
        char *nb = realloc(tc->out, cap);
        if (nb == NULL) {
            tc->failed = 1;
            return MBEDTLS_ERR_SSL_ALLOC_FAILED;
        }
        tc->out = nb;
        tc->out_cap = cap;
    }
    memcpy(tc->out + tc->out_len, buf, len);
    tc->out_len += len;
    return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    gw_tls_conn_t *tc = ctx;
    if (tc->own_off < tc->own_len) {
        size_t n = tc->own_len - tc->own_off;
        if (n > len)
            n = len;
        memcpy(buf, tc->own + tc->own_off, n);
        tc->own_off += n;
        if (tc->own_off == tc->own_len)
            tc->own_off = tc->own_len = 0;
        return (int)n;
    }
    if (tc->in_len == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    size_t n = tc->in_len < len ? tc->in_len : len;
    memcpy(buf, tc->in, n);
    tc->in += n;
    tc->in_len -= n;
    return (int)n;
}

gw_tls_conn_t *gw_tls_conn_create(gw_tls_t *t)
{
    gw_tls_conn_t *tc = calloc(1, sizeof *tc);
    if (tc == NULL)
        return NULL;
    mbedtls_ssl_init(&tc->ssl);
    if (mbedtls_ssl_setup(&tc->ssl, &t->cur->conf) != 0) {
        mbedtls_ssl_free(&tc->ssl);
        free(tc);
        return NULL;
    }
    tc->gen = t->cur;
    tc->gen->refs++;
    mbedtls_ssl_set_bio(&tc->ssl, tc, bio_send, bio_recv, NULL);
    return tc;
}

void gw_tls_conn_destroy(gw_tls_conn_t *tc)
{
    if (tc == NULL)
        return;
    mbedtls_ssl_free(&tc->ssl);
    gen_release(tc->gen);
    free(tc->own);
    free(tc->out);
    free(tc);
}

void gw_tls_conn_feed(gw_tls_conn_t *tc, const void *data, size_t len)
{
    tc->in = data;
    tc->in_len = len;
}

int gw_tls_conn_keep(gw_tls_conn_t *tc)
{
    if (tc->in_len == 0)
        return 0;
    size_t have = tc->own_len - tc->own_off;
    if (have + tc->in_len > INPUT_MAX)
        return PROTO_ENOMEM;
    uint8_t *nb = malloc(have + tc->in_len);
    if (nb == NULL)
        return PROTO_ENOMEM;
    if (have > 0) /* own may be NULL: no arithmetic on it then */
        memcpy(nb, tc->own + tc->own_off, have);
    memcpy(nb + have, tc->in, tc->in_len);
    free(tc->own);
    tc->own = nb;
    tc->own_off = 0;
    tc->own_len = have + tc->in_len;
    tc->in = NULL;
    tc->in_len = 0;
    return 0;
}

int gw_tls_conn_read(gw_tls_conn_t *tc, void *buf, size_t cap)
{
    if (tc->failed)
        return PROTO_ENOMEM;
    int n = mbedtls_ssl_read(&tc->ssl, buf, cap);
    if (n > 0)
        return n;
    switch (n) {
    case 0:
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
        return PROTO_ESHUTDOWN;
    case MBEDTLS_ERR_SSL_WANT_READ:
    case MBEDTLS_ERR_SSL_WANT_WRITE:
        return 0;
    case MBEDTLS_ERR_SSL_CLIENT_RECONNECT:
        return PROTO_ESHUTDOWN;
    default:
        /* A handshake that fails (the client refused our certificate, presented none or a
         * wrong one, spoke no TLS) or a record that does not decrypt. */
        return PROTO_EINVAL;
    }
}

int gw_tls_conn_pending(const gw_tls_conn_t *tc)
{
    return tc->own_len > tc->own_off || tc->in_len > 0 ||
           mbedtls_ssl_get_bytes_avail(&tc->ssl) > 0 || mbedtls_ssl_check_pending(&tc->ssl);
}

int gw_tls_conn_handshaking(const gw_tls_conn_t *tc)
{
    return tc->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER;
}

int gw_tls_conn_write(gw_tls_conn_t *tc, const uv_buf_t *bufs, int n)
{
    /* One allocation for the whole answer: its records' overhead is known in advance
     * (header, explicit nonce and tag: 29 bytes per 16 KiB record with AES-GCM). */
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += bufs[i].len;
    size_t need = tc->out_len + total + (total / 16384 + (size_t)n + 1) * 64;
    if (need > tc->out_cap) {
        char *nb = realloc(tc->out, need);
        if (nb == NULL)
            return PROTO_ENOMEM;
        tc->out = nb;
        tc->out_cap = need;
    }
    for (int i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)bufs[i].base;
        size_t left = bufs[i].len;
        while (left > 0) {
            int w = mbedtls_ssl_write(&tc->ssl, p, left);
            if (w <= 0 || tc->failed)
                return w == 0 || tc->failed ? PROTO_ENOMEM : PROTO_EINVAL;
            p += w;
            left -= (size_t)w;
        }
    }
    return 0;
}

void gw_tls_conn_close_notify(gw_tls_conn_t *tc)
{
    if (!gw_tls_conn_handshaking(tc))
        mbedtls_ssl_close_notify(&tc->ssl);
}

char *gw_tls_conn_output(gw_tls_conn_t *tc, size_t *len)
{
    if (tc->out_len == 0)
        return NULL;
    /* The buffer itself goes: the next output starts a new one, so a write in flight keeps
     * its bytes. */
    char *out = tc->out;
    *len = tc->out_len;
    tc->out = NULL;
    tc->out_len = tc->out_cap = 0;
    return out;
}
