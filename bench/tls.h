/* HTTPS for framegate-bench: mbedTLS client sessions over memory buffers, driven by the
 * load engine's loop (the same shape as gateway/tls_conn.c on the server side). The
 * certificate is not verified: the bench measures the server's cost of TLS, on loopback.
 * Loop thread only. */
#ifndef BENCH_TLS_H
#define BENCH_TLS_H

#include <stddef.h>
#include <uv.h>

typedef struct bench_tls bench_tls_t;
typedef struct bench_tls_conn bench_tls_conn_t;

/* 0, or a negative code. */
int bench_tls_create(bench_tls_t **out);
void bench_tls_destroy(bench_tls_t *t);

/* A new session (it resumes the last one this engine completed: a reconnect costs what a
 * returning camera's would), or NULL. */
bench_tls_conn_t *bench_tls_conn_create(bench_tls_t *t);
void bench_tls_conn_destroy(bench_tls_conn_t *tc);

/* Feeds received bytes (borrowed during the call), advances the handshake, and decrypts into
 * buf: > 0 plaintext bytes (call again with len 0 for more), 0 nothing yet, < 0 failure. */
int bench_tls_conn_read(bench_tls_conn_t *tc, const void *in, size_t len, void *buf, size_t cap);

/* Starts or advances the handshake without input (the ClientHello). */
int bench_tls_conn_handshake(bench_tls_conn_t *tc);

/* 1 once the handshake is over. */
int bench_tls_conn_ready(const bench_tls_conn_t *tc);

/* Encrypts bufs[0..n). 0 or < 0. */
int bench_tls_conn_write(bench_tls_conn_t *tc, const uv_buf_t *bufs, int n);

/* The ciphertext to send (malloc'd, the caller frees it), NULL if none. */
char *bench_tls_conn_output(bench_tls_conn_t *tc, size_t *len);

#endif
