/* framegate error codes shared by gateway, backend and wire format.
 *
 * Every function in framegate returns 0 on success or a negative code. libuv's codes
 * (negative errno) pass through unchanged; our own codes live above them in this list,
 * generated with an X-macro so the enum and proto_strerror() never drift apart. A backend
 * sends its code on the wire (proto_rep_t.status), so codes are only ever appended: the
 * values of the existing ones never change. Each code has one meaning; the gateway's HTTP
 * layer maps codes to statuses in one place (gateway/status.c). */
#ifndef PROTO_ERR_H
#define PROTO_ERR_H

#define PROTO_ERRNO_MAP(XX)                                                  \
    XX(ETRUNC, "message truncated")                                          \
    XX(EMAGIC, "bad message magic")                                          \
    XX(EVERSION, "unsupported protocol version")                             \
    XX(ETYPE, "unknown message type")                                        \
    XX(ETOOBIG, "length or count over its limit")                            \
    XX(ECORRUPT, "corrupt message")                                          \
    XX(ENOSPC, "output buffer too small")                                    \
    XX(EINVAL, "invalid argument")                                           \
    XX(ENOMEM, "out of memory")                                              \
    XX(EIMAGE, "image could not be decoded")                                 \
    XX(EEMPTY, "empty image")                                                \
    XX(EIMGSIZE, "image dimensions over the limit")                          \
    XX(EFORMAT, "unsupported image format")                                  \
    XX(EMODEL, "model failed")                                               \
    XX(EDEADLINE, "deadline passed")                                         \
    XX(ECONFIG, "invalid configuration")                                     \
    XX(EBACKEND, "backend failed")                                           \
    XX(EQUEUEFULL, "queue full")                                             \
    XX(ENNG, "transport error")                                              \
    XX(ESHUTDOWN, "shutting down")                                           \
    XX(ENOMODEL, "no such model")                                            \
    XX(ENOBACKEND, "no backend can take the frame")                          \
    XX(ESUPERSEDED, "a newer frame of the camera took its place")            \
    XX(ESTALE, "skipped: too old for the camera's max_age_ms")               \
    XX(EURLFORBIDDEN, "URL refused: http(s) to public addresses only")      \
    XX(EURLTOOBIG, "URL content over max_body_bytes")                        \
    XX(EURLTIMEOUT, "URL fetch timed out")                                   \
    XX(EURLSTATUS, "URL answered with an error status")                      \
    XX(EURLFETCH, "URL could not be fetched")                                \
    XX(ESTORE, "store request failed")                                       \
    XX(ENOTFOUND, "no such object")                                          \
    XX(EUNAUTHORIZED, "no valid token")                                      \
    XX(EFORBIDDEN, "the token's role may not do this")                       \
    XX(ERATELIMIT, "over the rate limit")

typedef enum {
    PROTO_ERR_BASE_ = -5000,
#define XX(name, msg) PROTO_##name,
    PROTO_ERRNO_MAP(XX)
#undef XX
    PROTO_ERR_END_
} proto_err_t;

/* Returns a static, never-NULL description of `err`: ours, libuv's (negative errno) or
 * "unknown error". Safe from any thread. */
const char *proto_strerror(int err);

/* Returns the symbolic name ("ETRUNC", ...) of one of our codes, or "EUNKNOWN". */
const char *proto_errname(int err);

#endif
