/* Answers: the one place a request's status line, headers and body are built, errors are
 * rendered as JSON ({"error":{"code","message"}}), and a request that breaks the connection
 * is rejected and the connection closed. Loop thread only.
 *
 * Every gw_respond* takes the request's answer slot once (a second call is ignored and its
 * body freed); the answer leaves when every earlier answer on the connection has. */
#ifndef GW_RESPONSE_H
#define GW_RESPONSE_H

#include <stddef.h>

#include "server.h"

/* Answers req: takes `body` (malloc'd, may be NULL for none); extra: more header lines, each
 * ending in CRLF, or NULL. HEAD requests get the headers and Content-Length only. */
void gw_respond(gw_req_t *req, int status, const char *ctype, char *body, size_t len,
                const char *extra);

/* Answers with a JSON error of HTTP `status` and machine-readable `code`; a 503 carries
 * Retry-After (retry_after_s). */
void gw_respond_error(gw_req_t *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The same with extra header lines (e.g. "Allow: GET\r\n"). */
void gw_respond_error_extra(gw_req_t *req, int status, const char *code, const char *extra,
                            const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Answers with the error `err` (proto/err.h): status, code and Retry-After from
 * gw_status_of (status.h), the one mapping of codes to HTTP. */
void gw_respond_err(gw_req_t *req, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "Retry-After: N\r\n" for a retryable answer into buf (cap >= 32), else "". */
const char *gw_retry_after(const gw_req_t *req, int retry, char *buf, size_t cap);

/* {"error":{"code":code,"message":msg}}, malloc'd; bytes of msg that are not valid UTF-8
 * become '?' so that a client's bytes echoed in a message never break the JSON. */
char *gw_error_json(const char *code, const char *msg, size_t *len);

/* Reject-and-close: the request being received (the connection's current one) cannot go
 * on; it is answered with this error in its place in the pipeline, nothing more is read,
 * and the connection closes after that answer. */
void gw__reject(gw_req_t *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
