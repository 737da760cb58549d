/* HTTP client on the loop: libcurl's multi interface driven by libuv (curl_multi_socket_action
 * with one uv_poll_t per socket and one uv_timer_t), shared by the S3 store and by frames
 * given as a URL. Nothing here blocks the loop: curl resolves names on its own thread and
 * every socket is non-blocking. Loop thread only.
 *
 * Safety for URLs a client gives (gw_fetch_opts_t.policy): only http and https; redirects
 * followed here, one hop at a time, each hop's scheme and address checked again; the address
 * curl is about to connect to is checked in its open-socket callback, before connect(), so
 * what is checked is what is connected to (no second lookup, no DNS rebinding window);
 * loopback, link-local, private, CGNAT, multicast and their IPv6 equivalents are refused
 * unless allow-listed; the body is capped while it downloads; proxies from the environment
 * are ignored. */
#ifndef GW_FETCH_H
#define GW_FETCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct gw_fetch gw_fetch_t;
typedef struct gw_fetch_req gw_fetch_req_t;

/* A streamed answer's body, one piece at a time, as it arrives (an MJPEG camera's endless
 * multipart body): runs on the loop thread from inside curl, with the answer's status and
 * Content-Type; `data` is borrowed for the call. Return 0 to go on, or a negative code to stop
 * the transfer: the request then finishes with that code (the callback keeps its own reason).
 * Never call gw_fetch_cancel from here. Not called for the body of a redirect being
 * followed. */
typedef int (*gw_fetch_chunk_cb)(void *arg, long status, const char *content_type,
                                 const uint8_t *data, size_t len);

#define GW_FETCH_ALLOW_MAX 16

/* Which private addresses a client's URL may reach: a plain value built by
 * gw_fetch_policy_parse from "10.0.0.0/8, cam.local, 127.0.0.1". */
typedef struct {
    struct {
        int family; /* AF_INET or AF_INET6 */
        uint8_t addr[16];
        int bits;
    } nets[GW_FETCH_ALLOW_MAX];
    int nnets;
    char hosts[GW_FETCH_ALLOW_MAX][256]; /* exact names (case-insensitive): any address */
    int nhosts;
} gw_fetch_policy_t;

/* Parses a comma-separated allow list of CIDRs, addresses and host names. 0, or PROTO_ECONFIG
 * with the reason in err. */
int gw_fetch_policy_parse(gw_fetch_policy_t *p, const char *allow, char *err, size_t cap);

/* True if a URL whose host is `host` may connect to `sa`: a public unicast address, or one
 * the policy allows (by network, or because `host` is an allowed name). Pure. */
int gw_fetch_addr_allowed(const gw_fetch_policy_t *p, const struct sockaddr *sa, const char *host);

/* One request. Every pointer is borrowed until the callback has run (headers only until
 * gw_fetch_start returns). */
typedef struct {
    const char *method; /* NULL = GET */
    const char *url;
    const char *const *headers; /* "Name: value" lines */
    size_t nheaders;
    const uint8_t *body; /* request body (PUT/POST), body_len bytes */
    size_t body_len;
    size_t max_bytes;                /* answer bodies over this fail with PROTO_EURLTOOBIG */
    uint64_t connect_timeout_ms;     /* per connection */
    uint64_t timeout_ms;             /* the whole request, every redirect included */
    int max_redirects;               /* 0: a 3xx answer is returned as it is */
    const gw_fetch_policy_t *policy; /* NULL: any address (endpoints the operator configured) */
    const char *ca_file;             /* PEM CAs for https (a private endpoint); NULL = system's */
    /* Streaming (NULL: the body is collected into gw_fetch_result_t.body, max_bytes at most).
     * With on_chunk, the body goes to on_chunk and is never kept here; max_bytes is not used
     * (the receiver bounds what it keeps), timeout_ms may be 0 (no bound on the whole
     * answer), and stall_ms (> 0, rounded up to seconds) ends a transfer that delivers
     * nothing for that long with PROTO_EURLTIMEOUT. */
    gw_fetch_chunk_cb on_chunk;
    void *chunk_arg;
    uint64_t stall_ms;
} gw_fetch_opts_t;

/* What came back. body is malloc'd and owned by the fetch; a callback may take it by setting
 * body to NULL (it is freed after the callback otherwise). */
typedef struct {
    int err;     /* 0 (any HTTP status), PROTO_EURLFORBIDDEN, PROTO_EURLTOOBIG,
                  * PROTO_EURLTIMEOUT, PROTO_EURLSTATUS (too many redirects), PROTO_EURLFETCH,
                  * PROTO_EINVAL (bad URL), PROTO_ENOMEM, UV_ECANCELED, or the code an
                  * on_chunk callback stopped the transfer with */
    long status; /* HTTP status of the last answer; 0 if none */
    uint8_t *body;
    size_t len;
    char content_type[128]; /* "" if none */
    char error[256];        /* human text when err != 0 */
} gw_fetch_result_t;

/* Runs on the loop thread once per started request, never before gw_fetch_start returns. */
typedef void (*gw_fetch_cb)(void *arg, gw_fetch_result_t *res);

int gw_fetch_create(gw_fetch_t **out, uv_loop_t *loop);

/* Starts a request. Returns 0 (cb will run), or a negative code (it will not). *out (may be
 * NULL) gets a handle for gw_fetch_cancel, valid until cb runs. */
int gw_fetch_start(gw_fetch_t *f, const gw_fetch_opts_t *o, gw_fetch_cb cb, void *arg,
                   gw_fetch_req_t **out);

/* Stops a request at once; its callback runs before this returns, with UV_ECANCELED. */
void gw_fetch_cancel(gw_fetch_req_t *r);

/* Requests in flight. */
int gw_fetch_active(const gw_fetch_t *f);

/* Cancels every request (each callback runs with UV_ECANCELED before this returns), then
 * closes the handles; the memory goes with their close callbacks. */
void gw_fetch_destroy(gw_fetch_t *f);

#endif
