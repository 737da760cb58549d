/* mbedTLS client sessions over memory buffers (see tls.h). */
#include "tls.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

struct bench_tls {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_ssl_config conf;
    mbedtls_ssl_session last; /* the last session a handshake completed, for resumption */
    int have_last;
};

struct bench_tls_conn {
    bench_tls_t *t;
    mbedtls_ssl_context ssl;
    const unsigned char *in;
    size_t in_len;
    unsigned char *own; /* input mbedTLS has not read yet (a record split across reads) */
    size_t own_len;
    char *out;
    size_t out_len, out_cap;
    int saved;
};

int bench_tls_create(bench_tls_t **out)
{
    bench_tls_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return PROTO_ENOMEM;
    mbedtls_entropy_init(&t->entropy);
    mbedtls_ctr_drbg_init(&t->drbg);
    mbedtls_ssl_config_init(&t->conf);
    mbedtls_ssl_session_init(&t->last);
    static const unsigned char pers[] = "framegate-bench";
    if (mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func, &t->entropy, pers, sizeof pers - 1) !=
            0 ||
        mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0) {
        bench_tls_destroy(t);
        return PROTO_EINVAL;
    }
    mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &t->drbg);
    mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_session_tickets(&t->conf, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
    *out = t;
    return 0;
}

void bench_tls_destroy(bench_tls_t *t)
{
    if (t == NULL)
        return;
    mbedtls_ssl_session_free(&t->last);
    mbedtls_ssl_config_free(&t->conf);
    mbedtls_ctr_drbg_free(&t->drbg);
    mbedtls_entropy_free(&t->entropy);
    free(t);
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    bench_tls_conn_t *tc = ctx;
    if (tc->out_len + len > tc->out_cap) {
        size_t cap = tc->out_cap ? tc->out_cap : 4096;
        while (cap < tc->out_len + len)
            cap *= 2;
        char *nb = realloc(tc->out, cap);
        if (nb == NULL)
            return MBEDTLS_ERR_SSL_ALLOC_FAILED;
        tc->out = nb;
        tc->out_cap = cap;
    }
    memcpy(tc->out + tc->out_len, buf, len);
    tc->out_len += len;
    return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    bench_tls_conn_t *tc = ctx;
    if (tc->in_len == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    size_t n = tc->in_len < len ? tc->in_len : len;
    memcpy(buf, tc->in, n);
    tc->in += n;
    tc->in_len -= n;
    return (int)n;
}

bench_tls_conn_t *bench_tls_conn_create(bench_tls_t *t)
{
    bench_tls_conn_t *tc = calloc(1, sizeof *tc);
    if (tc == NULL)
        return NULL;
    tc->t = t;
    mbedtls_ssl_init(&tc->ssl);
    if (mbedtls_ssl_setup(&tc->ssl, &t->conf) != 0) {
        bench_tls_conn_destroy(tc);
        return NULL;
    }
    if (t->have_last)
        mbedtls_ssl_set_session(&tc->ssl, &t->last);
    mbedtls_ssl_set_bio(&tc->ssl, tc, bio_send, bio_recv, NULL);
    return tc;
}

void bench_tls_conn_destroy(bench_tls_conn_t *tc)
{
    if (tc == NULL)
        return;
    mbedtls_ssl_free(&tc->ssl);
    free(tc->own);
    free(tc->out);
    free(tc);
}

int bench_tls_conn_ready(const bench_tls_conn_t *tc)
{
    return tc->ssl.state == MBEDTLS_SSL_HANDSHAKE_OVER;
}

int bench_tls_conn_handshake(bench_tls_conn_t *tc)
{
    int rv = mbedtls_ssl_handshake(&tc->ssl);
    if (rv == 0 && !tc->saved) {
        tc->saved = 1;
        mbedtls_ssl_session_free(&tc->t->last);
        mbedtls_ssl_session_init(&tc->t->last);
        tc->t->have_last = mbedtls_ssl_get_session(&tc->ssl, &tc->t->last) == 0;
    }
    return rv == 0 || rv == MBEDTLS_ERR_SSL_WANT_READ || rv == MBEDTLS_ERR_SSL_WANT_WRITE ? 0 : -1;
}

int bench_tls_conn_read(bench_tls_conn_t *tc, const void *in, size_t len, void *buf, size_t cap)
{
    /* Input is taken whole into `own` first when something is left from before, else read
     * from the caller's buffer, with the rest kept. */
    unsigned char *joined = NULL;
    if (len > 0 && tc->own_len > 0) {
        joined = malloc(tc->own_len + len);
        if (joined == NULL)
            return -1;
        memcpy(joined, tc->own, tc->own_len);
        memcpy(joined + tc->own_len, in, len);
        free(tc->own);
        tc->own = NULL;
        tc->in = joined;
        tc->in_len = tc->own_len + len;
        tc->own_len = 0;
    } else if (len > 0) {
        tc->in = in;
        tc->in_len = len;
    } else if (tc->own_len > 0) {
        joined = tc->own;
        tc->own = NULL;
        tc->in = joined;
        tc->in_len = tc->own_len;
        tc->own_len = 0;
    }
    int rv = 0;
    if (!bench_tls_conn_ready(tc))
        rv = bench_tls_conn_handshake(tc);
    if (rv == 0 && bench_tls_conn_ready(tc)) {
        int n = mbedtls_ssl_read(&tc->ssl, buf, cap);
        if (n > 0)
            rv = n;
        else if (n != MBEDTLS_ERR_SSL_WANT_READ && n != MBEDTLS_ERR_SSL_WANT_WRITE)
            rv = -1;
    }
    if (tc->in_len > 0) { /* keep what was not read */
        unsigned char *keep = malloc(tc->in_len);
        if (keep == NULL) {
            free(joined);
            return -1;
        }
        memcpy(keep, tc->in, tc->in_len);
        tc->own = keep;
        tc->own_len = tc->in_len;
    }
    tc->in = NULL;
    tc->in_len = 0;
    free(joined);
    return rv;
}

int bench_tls_conn_write(bench_tls_conn_t *tc, const uv_buf_t *bufs, int n)
{
    for (int i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)bufs[i].base;
        size_t left = bufs[i].len;
        while (left > 0) {
            int w = mbedtls_ssl_write(&tc->ssl, p, left);
            if (w <= 0)
                return -1;
            p += w;
            left -= (size_t)w;
        }
    }
    return 0;
}

char *bench_tls_conn_output(bench_tls_conn_t *tc, size_t *len)
{
    if (tc->out_len == 0)
        return NULL;
    char *out = tc->out;
    *len = tc->out_len;
    tc->out = NULL;
    tc->out_len = tc->out_cap = 0;
    return out;
}
