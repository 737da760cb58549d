/* HTTPS for the front: mbedTLS 2.28 driven from the loop through memory buffers (no socket
 * callbacks, no thread). http.c hands each read's ciphertext in and takes plaintext out;
 * http_write.c hands answers in and takes ciphertext out to uv_write. This module knows no
 * HTTP and no libuv streams.
 *
 * TLS 1.2 with ECDHE and AEAD suites only (AES-GCM, ChaCha20-Poly1305); resumption through
 * session tickets (and a session cache for clients without them). The certificate lives in
 * a generation: gw_tls_reload makes a new one for new connections while open ones keep
 * theirs (each holds a reference), so a reload drops nothing. Loop thread only. */
#ifndef GW_TLS_CONN_H
#define GW_TLS_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct gw_tls gw_tls_t;
typedef struct gw_tls_conn gw_tls_conn_t;

/* Reads the certificate chain and key (PEM), and the CA clients must be signed by (NULL or
 * "": no client certificate asked). 0, or PROTO_ECONFIG with the reason (naming the file) in
 * err, or PROTO_ENOMEM. */
int gw_tls_create(gw_tls_t **out, const char *cert, const char *key, const char *client_ca,
                  char *err, size_t errcap);

/* Reads the same files again into a new generation for new connections. On failure (0 or
 * PROTO_ECONFIG with err) the current one stays. */
int gw_tls_reload(gw_tls_t *t, char *err, size_t errcap);

/* Frees t; every gw_tls_conn_t made from it must be destroyed first. */
void gw_tls_destroy(gw_tls_t *t);

/* A server-side TLS session on the current generation, or NULL (out of memory). */
gw_tls_conn_t *gw_tls_conn_create(gw_tls_t *t);
void gw_tls_conn_destroy(gw_tls_conn_t *tc);

/* Hands data[0..len) received from the client to tc. The bytes are borrowed until
 * gw_tls_conn_keep(): read what you can with gw_tls_conn_read first. */
void gw_tls_conn_feed(gw_tls_conn_t *tc, const void *data, size_t len);

/* Copies the borrowed input that gw_tls_conn_read has not consumed into tc's own buffer (the
 * caller's buffer is about to be reused). 0 or PROTO_ENOMEM. */
int gw_tls_conn_keep(gw_tls_conn_t *tc);

/* Runs the handshake, then decrypts: > 0 plaintext bytes in buf, 0 when more input is needed,
 * PROTO_ESHUTDOWN when the client sent close_notify, or another negative code (handshake
 * refused, a bad record). Output may appear (gw_tls_conn_output) in any case. */
int gw_tls_conn_read(gw_tls_conn_t *tc, void *buf, size_t cap);

/* 1 when input is held that gw_tls_conn_read has not turned into plaintext yet. */
int gw_tls_conn_pending(const gw_tls_conn_t *tc);

/* 1 until the handshake is over. */
int gw_tls_conn_handshaking(const gw_tls_conn_t *tc);

/* Encrypts the buffers in order (after the handshake). 0, or a negative code. */
int gw_tls_conn_write(gw_tls_conn_t *tc, const uv_buf_t *bufs, int n);

/* Queues a close_notify alert. */
void gw_tls_conn_close_notify(gw_tls_conn_t *tc);

/* The ciphertext waiting to be sent (malloc'd, the caller frees it, e.g. after uv_write) and
 * its length; NULL when there is none. */
char *gw_tls_conn_output(gw_tls_conn_t *tc, size_t *len);

#endif
