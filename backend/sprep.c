#include "sprep.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "sp.h"

#define IN_CHUNK (64u << 10) /* the first input buffer: several small requests per read */
#define IN_KEEP (1u << 20)   /* a buffer grown past this for a big frame is freed once empty */
/* A connection with this much reply output unwritten gets no further request delivered
 * (nor read) until its peer reads: the output stays under this plus one reply. */
#define OUT_SOFT (1u << 20)

typedef struct {
    int fd;
    int ready;         /* its greeting arrived and was right */
    int dead;          /* cut: closed by the next be_sprep_recv, never read or written again */
    uint64_t since_ms; /* accepted at (the greeting's deadline runs from here) */
    uint8_t *in;       /* what was read and not yet consumed: [in_off, in_len) */
    size_t in_off, in_len, in_cap;
    uint8_t *out; /* what is to be written: [out_off, out_len) */
    size_t out_off, out_len, out_cap;
    uint64_t out_ms; /* when output last went out or became pending (the stall clock) */
} conn_t;

struct be_sprep {
    int lfd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    const char *name;
    conn_t *conns[BE_SPREP_CONNS_MAX]; /* slots; NULL when free */
    int nconns;
    int rr; /* the slot to look at first for the next request (round-robin) */
    /* The request in hand: its connection, the bytes it occupies at in_off (consumed by the
     * next recv, which is what keeps the body valid until then), and its backtrace. */
    conn_t *cur;
    size_t cur_size;
    const uint8_t *bt;
    size_t bt_len;
    int refused_logged;
    struct pollfd pfd[1 + BE_SPREP_CONNS_MAX];
    int pslot[1 + BE_SPREP_CONNS_MAX];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Marks c to be closed by the next recv (never freed here: a body handed out may point into
 * it). `why` NULL is an ordinary hang-up, not logged. */
static void cut(be_sprep_t *t, conn_t *c, const char *why)
{
    if (c->dead)
        return;
    c->dead = 1;
    if (why != NULL)
        fprintf(stderr, "framegate-backend[%s]: ipc peer (fd %d) disconnected: %s\n", t->name,
                c->fd, why);
}

static void conn_free(conn_t *c)
{
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* Writes what is pending in c's output; cuts c on a write error. */
static void flush(be_sprep_t *t, conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            cut(t, c, NULL); /* the peer went away; its replies go with it */
            return;
        }
        c->out_off += (size_t)n;
        c->out_ms = now_ms();
    }
    c->out_off = c->out_len = 0;
    if (c->out_cap > IN_KEEP) { /* a big reply went out: do not keep its buffer */
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
}

/* Queues n bytes after c's pending output (written by flush). */
static int out_append(conn_t *c, const uint8_t *p, size_t n)
{
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_cap - c->out_len < n) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_cap - c->out_len < n) {
            size_t cap = c->out_len + n < 4096 ? 4096 : c->out_len + n;
            uint8_t *q = realloc(c->out, cap);
            if (q == NULL)
                return PROTO_ENOMEM;
            c->out = q;
            c->out_cap = cap;
        }
    }
    if (c->out_off == c->out_len)
        c->out_ms = now_ms();
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

/* Looks at what c has buffered: 1 when a whole message sits at in_off (*size its bytes, frame
 * included), 0 when more must be read, -1 when c broke the protocol (then cut). Checks the
 * greeting and every frame's type and length before anything is allocated for it. */
static int parse(be_sprep_t *t, conn_t *c, size_t *size)
{
    size_t avail = c->in_len - c->in_off;
    uint64_t len;
    int rv;
    if (!c->ready) {
        if (avail < PROTO_SP_HELLO_LEN)
            return 0;
        if ((rv = proto_sp_hello_check(c->in + c->in_off, PROTO_SP_REQ0)) != 0) {
            cut(t, c,
                rv == PROTO_ETYPE ? "greeting of another protocol than req0"
                                  : "not an SP greeting");
            return -1;
        }
        c->ready = 1;
        c->in_off += PROTO_SP_HELLO_LEN;
        avail -= PROTO_SP_HELLO_LEN;
    }
    if (avail < PROTO_SP_IPC_HDR)
        return 0;
    if ((rv = proto_sp_ipc_unframe(c->in + c->in_off, PROTO_SP_MSG_MAX, &len)) != 0) {
        cut(t, c, rv == PROTO_ETYPE ? "unknown message type" : "message over the size limit");
        return -1;
    }
    if (avail - PROTO_SP_IPC_HDR < len)
        return 0;
    *size = PROTO_SP_IPC_HDR + (size_t)len;
    return 1;
}

/* Reads what c's peer sent, until the socket is empty, a whole message is buffered, or the
 * buffer (sized to the message being read) is full: at most one message is read ahead. */
static void conn_read(be_sprep_t *t, conn_t *c)
{
    size_t size;
    for (;;) {
        int p = parse(t, c, &size);
        if (p != 0)
            return;
        size_t avail = c->in_len - c->in_off;
        /* The room wanted: the rest of the message whose length is known, else a chunk. */
        size_t need = IN_CHUNK / 4;
        if (c->ready && avail >= PROTO_SP_IPC_HDR) {
            uint64_t len = 0;
            proto_sp_ipc_unframe(c->in + c->in_off, PROTO_SP_MSG_MAX, &len); /* checked */
            need = PROTO_SP_IPC_HDR + (size_t)len - avail;
        }
        if (c->in_cap - c->in_len < need && c->in_off > 0) {
            memmove(c->in, c->in + c->in_off, avail);
            c->in_len = avail;
            c->in_off = 0;
        }
        if (c->in_cap - c->in_len < need) {
            size_t cap = c->in_len + need < IN_CHUNK ? IN_CHUNK : c->in_len + need;
            uint8_t *q = realloc(c->in, cap);
            if (q == NULL) {
                cut(t, c, "out of memory for its request");
                return;
            }
            c->in = q;
            c->in_cap = cap;
        }
        ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            cut(t, c, NULL);
            return;
        }
        c->in_len += (size_t)n;
    }
}

static void accept_all(be_sprep_t *t)
{
    for (;;) {
        int fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
                fprintf(stderr, "framegate-backend[%s]: ipc accept: %s\n", t->name,
                        strerror(errno));
            return;
        }
        int slot = -1;
        for (int i = 0; i < BE_SPREP_CONNS_MAX && slot < 0; i++)
            if (t->conns[i] == NULL)
                slot = i;
        conn_t *c = slot < 0 ? NULL : calloc(1, sizeof *c);
        if (c == NULL) {
            if (!t->refused_logged)
                fprintf(stderr, "framegate-backend[%s]: ipc: refusing connections beyond %d\n",
                        t->name, BE_SPREP_CONNS_MAX);
            t->refused_logged = 1;
            close(fd);
            continue;
        }
        c->fd = fd;
        c->since_ms = now_ms();
        uint8_t hello[PROTO_SP_HELLO_LEN];
        proto_sp_hello(hello, PROTO_SP_REP0);
        t->conns[slot] = c;
        t->nconns++;
        if (out_append(c, hello, sizeof hello) != 0)
            cut(t, c, "out of memory");
        else
            flush(t, c);
    }
}

/* Closes the connections cut since the last call. Only between requests: see `cut`. */
static void reap(be_sprep_t *t)
{
    for (int i = 0; i < BE_SPREP_CONNS_MAX; i++) {
        conn_t *c = t->conns[i];
        if (c != NULL && c->dead) {
            conn_free(c);
            t->conns[i] = NULL;
            t->nconns--;
        }
    }
}

/* Cuts the peers that did not greet or do not read in time; returns the ms until the next
 * such deadline (or `cap`). */
static int check_timers(be_sprep_t *t, uint64_t now, int cap)
{
    int wait = cap;
    for (int i = 0; i < BE_SPREP_CONNS_MAX; i++) {
        conn_t *c = t->conns[i];
        uint64_t due;
        if (c == NULL || c->dead)
            continue;
        if (!c->ready) {
            due = c->since_ms + BE_SPREP_HELLO_MS;
            if (now >= due) {
                cut(t, c, "no greeting in time");
                continue;
            }
            if (due - now < (uint64_t)wait)
                wait = (int)(due - now);
        }
        if (c->out_off < c->out_len) {
            due = c->out_ms + BE_SPREP_STALL_MS;
            if (now >= due) {
                cut(t, c, "did not read its replies in time");
                continue;
            }
            if (due - now < (uint64_t)wait)
                wait = (int)(due - now);
        }
    }
    return wait;
}

/* Hands out the next whole request, round-robin over the connections: 1 if there was one. */
static int pick(be_sprep_t *t, const uint8_t **body, size_t *len)
{
    for (int k = 0; k < BE_SPREP_CONNS_MAX; k++) {
        int i = (t->rr + k) % BE_SPREP_CONNS_MAX;
        conn_t *c = t->conns[i];
        size_t size;
        if (c == NULL || c->dead || c->out_len - c->out_off >= OUT_SOFT || parse(t, c, &size) != 1)
            continue;
        const uint8_t *msg = c->in + c->in_off + PROTO_SP_IPC_HDR;
        size_t mlen = size - PROTO_SP_IPC_HDR;
        int64_t bt = proto_sp_backtrace_len(msg, mlen);
        if (bt < 0) {
            cut(t, c, "request without a request id");
            continue;
        }
        t->cur = c;
        t->cur_size = size;
        t->bt = msg;
        t->bt_len = (size_t)bt;
        t->rr = (i + 1) % BE_SPREP_CONNS_MAX;
        *body = msg + bt;
        *len = mlen - (size_t)bt;
        return 1;
    }
    return 0;
}

int be_sprep_recv(be_sprep_t *t, const uint8_t **body, size_t *len, int timeout_ms)
{
    if (t->cur != NULL) { /* the previous request is done with */
        conn_t *c = t->cur;
        c->in_off += t->cur_size;
        if (c->in_off == c->in_len) {
            c->in_off = c->in_len = 0;
            if (c->in_cap > IN_KEEP) {
                free(c->in);
                c->in = NULL;
                c->in_cap = 0;
            }
        }
        t->cur = NULL;
    }
    uint64_t deadline = now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        reap(t);
        if (pick(t, body, len))
            return 0;
        uint64_t now = now_ms();
        int wait = check_timers(t, now, now >= deadline ? 0 : (int)(deadline - now));
        reap(t);
        int n = 0;
        t->pfd[n] = (struct pollfd){.fd = t->lfd, .events = POLLIN}; /* even when full */
        t->pslot[n++] = -1;
        for (int i = 0; i < BE_SPREP_CONNS_MAX; i++) {
            conn_t *c = t->conns[i];
            if (c == NULL)
                continue;
            short ev = 0;
            size_t size;
            /* Back-pressure: nothing more is read from a peer with a whole request waiting
             * or too many replies unread. */
            if (c->out_len - c->out_off < OUT_SOFT && parse(t, c, &size) == 0)
                ev |= POLLIN;
            if (c->out_off < c->out_len)
                ev |= POLLOUT;
            if (c->dead)
                continue; /* parse may have cut it; it is reaped next round */
            t->pfd[n] = (struct pollfd){.fd = c->fd, .events = ev};
            t->pslot[n++] = i;
        }
        int rv = poll(t->pfd, (nfds_t)n, wait);
        if (rv < 0 && errno == EINTR)
            return -EINTR;
        if (rv < 0)
            return -errno;
        for (int k = 0; k < n && rv > 0; k++) {
            short re = t->pfd[k].revents;
            if (re == 0)
                continue;
            if (t->pslot[k] < 0) {
                accept_all(t);
                continue;
            }
            conn_t *c = t->conns[t->pslot[k]];
            if (re & POLLOUT)
                flush(t, c);
            if ((re & POLLIN) && !c->dead)
                conn_read(t, c);
            if ((re & (POLLERR | POLLHUP | POLLNVAL)) && !(re & POLLIN))
                cut(t, c, NULL);
        }
        /* Past the deadline even if a peer keeps the socket busy (a big frame trickling in):
         * the caller must get to look at its stop flag. */
        if (now_ms() >= deadline) {
            reap(t);
            if (pick(t, body, len))
                return 0;
            return -ETIMEDOUT;
        }
    }
}

int be_sprep_send(be_sprep_t *t, const uint8_t *body, size_t len)
{
    conn_t *c = t->cur;
    if (c == NULL || c->dead)
        return 0;
    if ((uint64_t)len + t->bt_len > PROTO_SP_MSG_MAX) {
        cut(t, c, "reply over the size limit");
        return PROTO_ETOOBIG;
    }
    uint8_t hdr[PROTO_SP_IPC_HDR];
    proto_sp_ipc_frame(hdr, (uint64_t)(t->bt_len + len));
    struct iovec iov[3] = {{hdr, sizeof hdr}, {(void *)t->bt, t->bt_len}, {(void *)body, len}};
    size_t total = sizeof hdr + t->bt_len + len, done = 0;
    if (c->out_off == c->out_len) {
        /* Nothing queued before it: straight to the socket, one system call for the lot. */
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 3};
        ssize_t n;
        do
            n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            cut(t, c, NULL);
            return 0;
        }
        done = n < 0 ? 0 : (size_t)n;
    }
    if (done == total)
        return 0;
    /* The rest waits in the connection's output (the backtrace too: it lives in the input
     * buffer, which the next recv reuses). */
    for (int i = 0; i < 3; i++) {
        size_t skip = done < iov[i].iov_len ? done : iov[i].iov_len;
        done -= skip;
        if (out_append(c, (const uint8_t *)iov[i].iov_base + skip, iov[i].iov_len - skip) != 0) {
            cut(t, c, "out of memory for its reply");
            return PROTO_ENOMEM;
        }
    }
    return 0;
}

int be_sprep_peers(const be_sprep_t *t)
{
    int n = 0;
    for (int i = 0; i < BE_SPREP_CONNS_MAX; i++)
        if (t->conns[i] != NULL && t->conns[i]->ready && !t->conns[i]->dead)
            n++;
    return n;
}

/* bind(2), removing a stale socket file first as NNG does: one nobody accepts on. */
static int bind_path(int fd, const struct sockaddr_un *sa)
{
    if (bind(fd, (const struct sockaddr *)sa, sizeof *sa) == 0)
        return 0;
    if (errno != EADDRINUSE)
        return -errno;
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return -EADDRINUSE;
    int stale =
        connect(probe, (const struct sockaddr *)sa, sizeof *sa) != 0 && errno == ECONNREFUSED;
    close(probe);
    struct stat st;
    if (!stale || lstat(sa->sun_path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return -EADDRINUSE;
    unlink(sa->sun_path);
    return bind(fd, (const struct sockaddr *)sa, sizeof *sa) == 0 ? 0 : -errno;
}

int be_sprep_create(be_sprep_t **out, const char *path, const char *name, char *err, size_t errcap)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    be_sprep_t *t;
    int rv;
    if (path[0] == '\0' || strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errcap, "the socket path is empty or longer than %zu bytes",
                 sizeof sa.sun_path - 1);
        return PROTO_EINVAL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if ((t = calloc(1, sizeof *t)) == NULL) {
        snprintf(err, errcap, "out of memory");
        return PROTO_ENOMEM;
    }
    t->name = name;
    memcpy(t->path, sa.sun_path, sizeof t->path);
    t->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (t->lfd < 0) {
        rv = -errno;
        free(t);
        snprintf(err, errcap, "socket: %s", strerror(-rv));
        return rv;
    }
    if ((rv = bind_path(t->lfd, &sa)) != 0) {
        close(t->lfd);
        free(t);
        snprintf(err, errcap, "%s", strerror(-rv));
        return rv;
    }
    if (listen(t->lfd, 128) != 0) {
        rv = -errno;
        unlink(t->path);
        close(t->lfd);
        free(t);
        snprintf(err, errcap, "listen: %s", strerror(-rv));
        return rv;
    }
    *out = t;
    return 0;
}

void be_sprep_destroy(be_sprep_t *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < BE_SPREP_CONNS_MAX; i++)
        if (t->conns[i] != NULL)
            conn_free(t->conns[i]);
    close(t->lfd);
    unlink(t->path);
    free(t);
}
