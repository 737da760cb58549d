/* libcurl multi on libuv: curl tells us which sockets to watch (on_socket) and when to wake it
 * (on_timer); we tell it what happened (curl_multi_socket_action) and collect finished
 * transfers (check_done). Redirects are followed here rather than by curl, so that every hop
 * gets the scheme and host checks again and the total timeout spans all hops. */
#include "fetch.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "err.h"
#include "log.h"

struct gw_fetch {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    int handles; /* open uv handles (the timer and every socket's poll) */
    int destroyed;
    int active;
    gw_fetch_req_t *reqs; /* in flight, for destroy */
    struct sock *socks;   /* watched, for destroy */
};

struct gw_fetch_req {
    gw_fetch_t *f;
    CURL *easy;
    struct curl_slist *headers;
    gw_fetch_opts_t o; /* url and headers are not used after a hop starts */
    char *url;         /* the current hop's, malloc'd */
    char host[256];    /* the current hop's host, for the allow list */
    gw_fetch_cb cb;
    void *arg;
    uint64_t deadline; /* uv_now */
    int hops;
    int forbidden; /* the open-socket check refused an address */
    char forbidden_addr[INET6_ADDRSTRLEN];
    int too_big;
    int stopped; /* the on_chunk callback's code, when it stopped the transfer */
    gw_fetch_result_t res;
    size_t cap;
    gw_fetch_req_t *next, *prev;
};

/* One watched socket. */
typedef struct sock {
    uv_poll_t poll;
    gw_fetch_t *f;
    curl_socket_t fd;
    struct sock *next, *prev;
} sock_t;

static void sock_close(sock_t *s);

/* ---- the address policy ---- */

typedef struct {
    int family;
    const char *net;
    int bits;
} range_t;

/* Not reachable from a client's URL unless allow-listed (RFC 6890 special-purpose blocks that
 * are not global, plus multicast). */
static const range_t blocked[] = {
    {AF_INET, "0.0.0.0", 8},      {AF_INET, "10.0.0.0", 8},      {AF_INET, "100.64.0.0", 10},
    {AF_INET, "127.0.0.0", 8},    {AF_INET, "169.254.0.0", 16},  {AF_INET, "172.16.0.0", 12},
    {AF_INET, "192.0.0.0", 24},   {AF_INET, "192.0.2.0", 24},    {AF_INET, "192.168.0.0", 16},
    {AF_INET, "198.18.0.0", 15},  {AF_INET, "198.51.100.0", 24}, {AF_INET, "203.0.113.0", 24},
    {AF_INET, "224.0.0.0", 4},    {AF_INET, "240.0.0.0", 4},     {AF_INET6, "::", 128},
    {AF_INET6, "::1", 128},       {AF_INET6, "64:ff9b::", 96},   {AF_INET6, "100::", 64},
    {AF_INET6, "2001:db8::", 32}, {AF_INET6, "fc00::", 7},       {AF_INET6, "fe80::", 10},
    {AF_INET6, "fec0::", 10},     {AF_INET6, "ff00::", 8},       {AF_INET6, "2002::", 16},
};

static int prefix_match(const uint8_t *a, const uint8_t *net, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, net, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

static int in_range(int family, const uint8_t *a, const range_t *r)
{
    uint8_t net[16];
    if (r->family != family || inet_pton(family, r->net, net) != 1)
        return 0;
    return prefix_match(a, net, r->bits);
}

int gw_fetch_addr_allowed(const gw_fetch_policy_t *p, const struct sockaddr *sa, const char *host)
{
    uint8_t a[16];
    int family = sa->sa_family;
    if (family == AF_INET) {
        memcpy(a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (family == AF_INET6) {
        memcpy(a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        /* ::ffff:a.b.c.d is a.b.c.d on the wire: judge it as IPv4 */
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0) {
            memmove(a, a + 12, 4);
            family = AF_INET;
        }
    } else {
        return 0;
    }
    if (p != NULL) {
        for (int i = 0; i < p->nhosts; i++)
            if (host != NULL && strcasecmp(p->hosts[i], host) == 0)
                return 1;
        for (int i = 0; i < p->nnets; i++)
            if (p->nets[i].family == family && prefix_match(a, p->nets[i].addr, p->nets[i].bits))
                return 1;
    }
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++)
        if (in_range(family, a, &blocked[i]))
            return 0;
    return 1;
}

int gw_fetch_policy_parse(gw_fetch_policy_t *p, const char *allow, char *err, size_t cap)
{
    memset(p, 0, sizeof *p);
    const char *s = allow;
    while (s != NULL && *s) {
        while (*s == ' ' || *s == ',')
            s++;
        size_t n = strcspn(s, ", ");
        if (n == 0)
            break;
        char item[sizeof p->hosts[0]];
        if (n >= sizeof item) {
            snprintf(err, cap, "fetch_allow: entry too long");
            return PROTO_ECONFIG;
        }
        memcpy(item, s, n);
        item[n] = '\0';
        s += n;
        char *slash = strchr(item, '/');
        int bits = -1;
        if (slash != NULL) {
            *slash = '\0';
            char *end;
            long b = strtol(slash + 1, &end, 10);
            if (slash[1] == '\0' || *end != '\0' || b < 0 || b > 128) {
                snprintf(err, cap, "fetch_allow: bad prefix length in '%s/%s'", item, slash + 1);
                return PROTO_ECONFIG;
            }
            bits = (int)b;
        }
        uint8_t a[16];
        int family = inet_pton(AF_INET, item, a) == 1    ? AF_INET
                     : inet_pton(AF_INET6, item, a) == 1 ? AF_INET6
                                                         : 0;
        if (family != 0) {
            int maxbits = family == AF_INET ? 32 : 128;
            if (bits > maxbits) {
                snprintf(err, cap, "fetch_allow: prefix length over %d in '%s'", maxbits, item);
                return PROTO_ECONFIG;
            }
            if (p->nnets == GW_FETCH_ALLOW_MAX) {
                snprintf(err, cap, "fetch_allow: more than %d networks", GW_FETCH_ALLOW_MAX);
                return PROTO_ECONFIG;
            }
            p->nets[p->nnets].family = family;
            memcpy(p->nets[p->nnets].addr, a, 16);
            p->nets[p->nnets].bits = bits < 0 ? maxbits : bits;
            p->nnets++;
            continue;
        }
        if (bits >= 0) {
            snprintf(err, cap, "fetch_allow: '%s' is not an address", item);
            return PROTO_ECONFIG;
        }
        for (const char *c = item; *c; c++)
            if (!isalnum((unsigned char)*c) && *c != '-' && *c != '.') {
                snprintf(err, cap, "fetch_allow: '%s' is neither a network nor a host name", item);
                return PROTO_ECONFIG;
            }
        if (p->nhosts == GW_FETCH_ALLOW_MAX) {
            snprintf(err, cap, "fetch_allow: more than %d host names", GW_FETCH_ALLOW_MAX);
            return PROTO_ECONFIG;
        }
        snprintf(p->hosts[p->nhosts++], sizeof p->hosts[0], "%s", item);
    }
    return 0;
}

/* ---- libuv <-> curl ---- */

static void on_handle_closed(uv_handle_t *h)
{
    gw_fetch_t *f = h->data;
    if (h != (uv_handle_t *)&f->timer)
        free((sock_t *)h); /* poll is its first member */
    if (--f->handles == 0 && f->destroyed)
        free(f);
}

static void check_done(gw_fetch_t *f);

static void sock_close(sock_t *s)
{
    gw_fetch_t *f = s->f;
    if (s->prev)
        s->prev->next = s->next;
    else
        f->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_t *s = (sock_t *)h;
    gw_fetch_t *f = s->f;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(f->multi, s->fd, flags, &running);
    check_done(f);
}

static void on_uv_timer(uv_timer_t *t)
{
    gw_fetch_t *f = t->data;
    int running;
    curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(f);
}

/* CURLMOPT_SOCKETFUNCTION: watch, change or forget one socket. */
static int on_socket(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
    (void)easy;
    gw_fetch_t *f = userp;
    sock_t *s = socketp;
    if (action == CURL_POLL_REMOVE) {
        if (s != NULL) {
            sock_close(s);
            curl_multi_assign(f->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL)
            return -1;
        if (uv_poll_init_socket(f->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->f = f;
        s->fd = fd;
        s->poll.data = f;
        f->handles++;
        s->next = f->socks;
        if (f->socks)
            f->socks->prev = s;
        f->socks = s;
        curl_multi_assign(f->multi, fd, s);
    }
    int events = 0;
    if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: one timer for the whole multi. */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    gw_fetch_t *f = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&f->timer);
    else /* 0: "act now", but never from inside curl's call: next loop iteration */
        uv_timer_start(&f->timer, on_uv_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- one request ---- */

/* A streamed body: handed on as it comes, never kept. A redirect's own body (one we are
 * about to follow) is not the answer, so the receiver does not see it. */
static size_t on_write_stream(gw_fetch_req_t *r, const char *data, size_t len)
{
    long status = 0;
    char *ct = NULL;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if (r->o.max_redirects > 0 && status >= 300 && status <= 399)
        return len;
    curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ct);
    int rv =
        r->o.on_chunk(r->o.chunk_arg, status, ct != NULL ? ct : "", (const uint8_t *)data, len);
    if (rv != 0) {
        r->stopped = rv;
        return 0; /* curl stops the transfer: CURLE_WRITE_ERROR */
    }
    return len;
}

static size_t on_write(char *data, size_t size, size_t n, void *arg)
{
    gw_fetch_req_t *r = arg;
    size_t len = size * n;
    if (r->o.on_chunk != NULL)
        return on_write_stream(r, data, len);
    if (len > r->o.max_bytes || r->res.len > r->o.max_bytes - len) {
        r->too_big = 1;
        return 0; /* curl stops the transfer: CURLE_WRITE_ERROR */
    }
    if (r->res.len + len > r->cap) {
        size_t cap = r->cap ? r->cap : 16384;
        while (cap < r->res.len + len)
            cap *= 2;
        if (cap > r->o.max_bytes)
            cap = r->o.max_bytes;
        uint8_t *nb = realloc(r->res.body, cap);
        if (nb == NULL)
            return 0;
        r->res.body = nb;
        r->cap = cap;
    }
    memcpy(r->res.body + r->res.len, data, len);
    r->res.len += len;
    return len;
}

/* CURLOPT_OPENSOCKETFUNCTION: the address curl resolved, checked before connect(). */
static curl_socket_t on_opensocket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    gw_fetch_req_t *r = arg;
    if (purpose == CURLSOCKTYPE_IPCXN && r->o.policy != NULL &&
        !gw_fetch_addr_allowed(r->o.policy, &a->addr, r->host)) {
        r->forbidden = 1;
        const void *ip = a->family == AF_INET6
                             ? (const void *)&((struct sockaddr_in6 *)&a->addr)->sin6_addr
                             : (const void *)&((struct sockaddr_in *)&a->addr)->sin_addr;
        inet_ntop(a->family, ip, r->forbidden_addr, sizeof r->forbidden_addr);
        return CURL_SOCKET_BAD;
    }
    /* CLOEXEC: backends spawned meanwhile must not inherit our connections. */
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* Checks a hop's URL (scheme, host) and records its host. 0 or a code with res.error set. */
static int check_url(gw_fetch_req_t *r, const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rv = 0;
    if (u == NULL)
        return PROTO_ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        snprintf(r->res.error, sizeof r->res.error, "malformed URL");
        rv = PROTO_EINVAL;
    } else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
               (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        snprintf(r->res.error, sizeof r->res.error, "only http and https URLs are fetched");
        rv = PROTO_EURLFORBIDDEN;
    } else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0' ||
               strlen(host) >= sizeof r->host) {
        snprintf(r->res.error, sizeof r->res.error, "URL without a usable host");
        rv = PROTO_EINVAL;
    } else {
        /* "[::1]" -> "::1" for the allow list */
        const char *h = host;
        size_t n = strlen(h);
        if (h[0] == '[' && n > 2 && h[n - 1] == ']') {
            h++;
            n -= 2;
        }
        memcpy(r->host, h, n);
        r->host[n] = '\0';
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rv;
}

/* Starts (or restarts, for a redirect) the transfer of r->url. */
static int start_hop(gw_fetch_req_t *r)
{
    gw_fetch_t *f = r->f;
    int rv;
    if (r->o.policy != NULL && (rv = check_url(r, r->url)) != 0)
        return rv;
    uint64_t now = uv_now(f->loop);
    if (now >= r->deadline)
        return PROTO_EURLTIMEOUT;
    r->stopped = 0;
    CURL *e = r->easy;
    if (e == NULL && (e = r->easy = curl_easy_init()) == NULL)
        return PROTO_ENOMEM;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never a proxy from the environment */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)r->o.connect_timeout_ms);
    if (r->o.on_chunk == NULL) {
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(r->deadline - now));
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->o.max_bytes);
    } else {
        /* an endless stream: bounded by its silences, not by its length */
        if (r->o.timeout_ms > 0)
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(r->deadline - now));
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)((r->o.stall_ms + 999) / 1000));
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "framegate/" FG_VERSION);
    if (r->o.ca_file != NULL && r->o.ca_file[0] != '\0')
        curl_easy_setopt(e, CURLOPT_CAINFO, r->o.ca_file);
    const char *m = r->o.method != NULL && r->hops == 0 ? r->o.method : "GET";
    if (strcmp(m, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)r->o.body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->o.body_len);
    }
    free(r->res.body);
    r->res.body = NULL;
    r->res.len = r->cap = 0;
    if (curl_multi_add_handle(f->multi, e) != CURLM_OK)
        return PROTO_ENOMEM;
    return 0;
}

static void req_unlink_free(gw_fetch_req_t *r)
{
    gw_fetch_t *f = r->f;
    if (r->prev)
        r->prev->next = r->next;
    else
        f->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    f->active--;
    if (r->easy != NULL) {
        curl_multi_remove_handle(f->multi, r->easy);
        curl_easy_cleanup(r->easy);
    }
    curl_slist_free_all(r->headers);
    free(r->res.body);
    free(r->url);
    free(r);
}

static void finish(gw_fetch_req_t *r, int err)
{
    r->res.err = err;
    if (err != 0 && r->res.error[0] == '\0')
        snprintf(r->res.error, sizeof r->res.error, "%s", proto_strerror(err));
    r->cb(r->arg, &r->res);
    req_unlink_free(r);
}

/* A finished transfer: a redirect to follow, or the answer. */
static void on_done(gw_fetch_req_t *r, CURLcode cc)
{
    long status = 0;
    char *ct = NULL, *loc = NULL;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ct);
    r->res.status = status;
    snprintf(r->res.content_type, sizeof r->res.content_type, "%s", ct ? ct : "");
    curl_multi_remove_handle(r->f->multi, r->easy);
    if (r->forbidden) {
        if (strcmp(r->host, r->forbidden_addr) == 0)
            snprintf(r->res.error, sizeof r->res.error,
                     "%s is a loopback, link-local or private address (see fetch_allow)",
                     r->forbidden_addr);
        else
            snprintf(r->res.error, sizeof r->res.error,
                     "%.120s resolves to %s, a loopback, link-local or private address (see "
                     "fetch_allow)",
                     r->host, r->forbidden_addr);
        finish(r, PROTO_EURLFORBIDDEN);
        return;
    }
    if (r->stopped != 0) {
        snprintf(r->res.error, sizeof r->res.error, "stopped by the receiver: %s",
                 proto_strerror(r->stopped));
        finish(r, r->stopped);
        return;
    }
    if (r->too_big || cc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(r->res.error, sizeof r->res.error, "the content is over %zu bytes",
                 r->o.max_bytes);
        finish(r, PROTO_EURLTOOBIG);
        return;
    }
    if (cc == CURLE_OPERATION_TIMEDOUT && r->o.on_chunk != NULL &&
        uv_now(r->f->loop) < r->deadline) {
        snprintf(r->res.error, sizeof r->res.error, "nothing received for %llu s",
                 (unsigned long long)((r->o.stall_ms + 999) / 1000));
        finish(r, PROTO_EURLTIMEOUT);
        return;
    }
    if (cc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(r->res.error, sizeof r->res.error, "no complete answer within %llu ms",
                 (unsigned long long)r->o.timeout_ms);
        finish(r, PROTO_EURLTIMEOUT);
        return;
    }
    if (cc != CURLE_OK) {
        snprintf(r->res.error, sizeof r->res.error, "%s", curl_easy_strerror(cc));
        finish(r, PROTO_EURLFETCH);
        return;
    }
    int redirect =
        status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
    if (!redirect || r->o.max_redirects == 0) {
        finish(r, 0);
        return;
    }
    if (r->hops >= r->o.max_redirects) {
        snprintf(r->res.error, sizeof r->res.error, "more than %d redirects", r->o.max_redirects);
        finish(r, PROTO_EURLSTATUS);
        return;
    }
    curl_easy_getinfo(r->easy, CURLINFO_REDIRECT_URL, &loc);
    if (loc == NULL) {
        finish(r, 0); /* a 3xx without Location: the caller judges the status */
        return;
    }
    char *next = strdup(loc);
    if (next == NULL) {
        finish(r, PROTO_ENOMEM);
        return;
    }
    free(r->url);
    r->url = next;
    r->hops++;
    int rv = start_hop(r);
    if (rv != 0)
        finish(r, rv);
}

static void check_done(gw_fetch_t *f)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(f->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        gw_fetch_req_t *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        on_done(r, msg->data.result);
    }
}

/* ---- the API ---- */

int gw_fetch_create(gw_fetch_t **out, uv_loop_t *loop)
{
    static int curl_ready;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return PROTO_ENOMEM;
        curl_ready = 1;
    }
    gw_fetch_t *f = calloc(1, sizeof *f);
    if (f == NULL)
        return PROTO_ENOMEM;
    if ((f->multi = curl_multi_init()) == NULL) {
        free(f);
        return PROTO_ENOMEM;
    }
    f->loop = loop;
    uv_timer_init(loop, &f->timer);
    f->timer.data = f;
    f->handles = 1;
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
    curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, 64L);
    *out = f;
    return 0;
}

int gw_fetch_start(gw_fetch_t *f, const gw_fetch_opts_t *o, gw_fetch_cb cb, void *arg,
                   gw_fetch_req_t **out)
{
    if (f->destroyed)
        return PROTO_ESHUTDOWN;
    if (o->url == NULL ||
        (o->on_chunk == NULL ? o->max_bytes == 0 || o->timeout_ms == 0 : o->stall_ms == 0))
        return PROTO_EINVAL;
    gw_fetch_req_t *r = calloc(1, sizeof *r);
    if (r == NULL || (r->url = strdup(o->url)) == NULL) {
        free(r);
        return PROTO_ENOMEM;
    }
    r->f = f;
    r->o = *o;
    r->o.url = NULL;
    r->o.headers = NULL;
    r->cb = cb;
    r->arg = arg;
    /* a stream without a bound on its whole length: a deadline that never comes */
    r->deadline = o->timeout_ms > 0 ? uv_now(f->loop) + o->timeout_ms : UINT64_MAX;
    /* no "Expect: 100-continue" round trip before a PUT's body */
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    for (size_t i = 0; h != NULL && i < o->nheaders; i++) {
        struct curl_slist *n = curl_slist_append(h, o->headers[i]);
        if (n == NULL) {
            curl_slist_free_all(h);
            h = NULL;
        }
        h = n;
    }
    r->headers = h;
    r->next = f->reqs;
    if (f->reqs)
        f->reqs->prev = r;
    f->reqs = r;
    f->active++;
    int rv = h == NULL ? PROTO_ENOMEM : start_hop(r);
    if (rv != 0) {
        req_unlink_free(r);
        return rv;
    }
    if (out != NULL)
        *out = r;
    return 0;
}

void gw_fetch_cancel(gw_fetch_req_t *r)
{
    snprintf(r->res.error, sizeof r->res.error, "cancelled");
    finish(r, UV_ECANCELED);
}

int gw_fetch_active(const gw_fetch_t *f)
{
    return f->active;
}

void gw_fetch_destroy(gw_fetch_t *f)
{
    if (f == NULL)
        return;
    f->destroyed = 1;
    while (f->reqs != NULL)
        gw_fetch_cancel(f->reqs);
    /* curl closes its cached connections here, through on_socket(REMOVE) */
    curl_multi_cleanup(f->multi);
    while (f->socks != NULL)
        sock_close(f->socks);
    uv_timer_stop(&f->timer);
    uv_close((uv_handle_t *)&f->timer, on_handle_closed);
}
