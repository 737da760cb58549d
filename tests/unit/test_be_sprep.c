/* be_sprep against libnng's own req0 sockets over ipc: many requests, several clients at once,
 * several requests outstanding on one connection (req0 contexts), and peers that break the
 * protocol or hang up, while the good clients keep being served. The server runs the same
 * recv/send loop as the backend, on a thread of its own. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "err.h"
#include "sp.h"
#include "sprep.h"

static char path[108], url[128];

typedef struct {
    be_sprep_t *sp;
    pthread_t th;
    atomic_int stop;
    atomic_int paused;   /* the loop does not call recv while set */
    atomic_int idle;     /* the loop saw `paused` and is waiting */
    atomic_int peers;    /* be_sprep_peers after the last recv */
    atomic_int received; /* requests handed out */
    atomic_int hold;     /* a "hold" request is answered only once this is cleared */
    char order[16][8]; /* the first requests' bodies, in the order they were handed out */
    atomic_int logged; /* entries of `order` written (published after each) */
    atomic_int failed;   /* what went wrong on the server thread (cmocka asserts on the
                          * test's thread only): checked by teardown */
} server_t;

static server_t srv;

static void sleep_ms(int ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* The backend's loop in small: every request is answered with "re:" and its body. */
static void *serve(void *arg)
{
    server_t *s = arg;
    while (!atomic_load(&s->stop)) {
        if (atomic_load(&s->paused)) {
            atomic_store(&s->idle, 1);
            sleep_ms(1);
            continue;
        }
        atomic_store(&s->idle, 0);
        const uint8_t *body;
        size_t len;
        int rv = be_sprep_recv(s->sp, &body, &len, 50);
        atomic_store(&s->peers, be_sprep_peers(s->sp));
        if (rv == -ETIMEDOUT || rv == -EINTR)
            continue;
        if (rv != 0) {
            atomic_store(&s->failed, rv);
            break;
        }
        int k = atomic_fetch_add(&s->received, 1);
        if (k < 16)
            snprintf(s->order[k], sizeof s->order[k], "%.*s", (int)(len < 7 ? len : 7), body);
        atomic_fetch_add(&s->logged, 1);
        if (len == 4 && memcmp(body, "hold", 4) == 0)
            while (atomic_load(&s->hold) && !atomic_load(&s->stop))
                sleep_ms(1);
        uint8_t *rep = malloc(len + 3);
        if (rep == NULL || (memcpy(rep, "re:", 3), memcpy(rep + 3, body, len),
                            (rv = be_sprep_send(s->sp, rep, len + 3)) != 0))
            atomic_store(&s->failed, rep == NULL ? PROTO_ENOMEM : rv);
        free(rep);
    }
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    char err[256];
    snprintf(path, sizeof path, "/tmp/fg-test-sprep-%d.sock", (int)getpid());
    snprintf(url, sizeof url, "ipc://%s", path);
    unlink(path);
    memset(&srv, 0, sizeof srv);
    assert_int_equal(be_sprep_create(&srv.sp, path, "test", err, sizeof err), 0);
    assert_int_equal(pthread_create(&srv.th, NULL, serve, &srv), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    atomic_store(&srv.hold, 0);
    atomic_store(&srv.stop, 1);
    pthread_join(srv.th, NULL);
    be_sprep_destroy(srv.sp);
    assert_int_equal(atomic_load(&srv.failed), 0);
    assert_int_equal(access(path, F_OK), -1); /* destroy removes the socket file */
    return 0;
}

static nng_socket client(void)
{
    nng_socket s;
    assert_int_equal(nng_req0_open(&s), 0);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 10000);
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 10000);
    nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 16u << 20);
    assert_int_equal(nng_dial(s, url, NULL, 0), 0);
    return s;
}

/* One request and its reply, checked. */
static void round_trip(nng_socket s, const void *body, size_t len)
{
    char *got;
    size_t n;
    assert_int_equal(nng_send(s, (void *)body, len, 0), 0);
    assert_int_equal(nng_recv(s, &got, &n, NNG_FLAG_ALLOC), 0);
    assert_int_equal(n, len + 3);
    assert_memory_equal(got, "re:", 3);
    assert_memory_equal(got + 3, body, len);
    nng_free(got, n);
}

static void wait_peers(int n)
{
    for (int i = 0; i < 500 && atomic_load(&srv.peers) != n; i++)
        sleep_ms(10);
    assert_int_equal(atomic_load(&srv.peers), n);
}

/* A raw connection with our own bytes; `hello` sends a req0 greeting first. */
static int raw_client(int hello)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {10, 0}; /* a broken server fails the test, never hangs it */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (hello) {
        uint8_t h[PROTO_SP_HELLO_LEN];
        proto_sp_hello(h, PROTO_SP_REQ0);
        assert_int_equal(write(fd, h, sizeof h), (ssize_t)sizeof h);
    }
    return fd;
}

/* Reads until the server closes the connection: asserts it does (EOF, not the timeout), and
 * that what came first is the rep0 greeting and nothing else. */
static void expect_closed(int fd)
{
    uint8_t buf[64];
    size_t got = 0;
    ssize_t n;
    while ((n = read(fd, buf + got, sizeof buf - got)) > 0)
        got += (size_t)n;
    assert_int_equal(n, 0);
    assert_int_equal(got, PROTO_SP_HELLO_LEN);
    assert_int_equal(proto_sp_hello_check(buf, PROTO_SP_REP0), 0);
    close(fd);
}

static void test_many_requests(void **state)
{
    (void)state;
    nng_socket s = client();
    char body[64];
    for (int i = 0; i < 500; i++) {
        int n = snprintf(body, sizeof body, "frame %d", i);
        round_trip(s, body, (size_t)n);
    }
    round_trip(s, "", 0); /* an empty body */
    /* Big ones: the input buffer grows to the message, the reply outgrows the socket's
     * buffer and is finished from poll. */
    size_t big = 6u << 20;
    uint8_t *p = malloc(big);
    assert_non_null(p);
    for (size_t i = 0; i < big; i++)
        p[i] = (uint8_t)(i * 7 + 3);
    round_trip(s, p, big);
    round_trip(s, p, 100000);
    round_trip(s, "after", 5);
    free(p);
    wait_peers(1);
    nng_close(s);
    wait_peers(0); /* the drain on stop waits for this count */
}

static void test_two_clients_interleaved(void **state)
{
    (void)state;
    nng_socket a = client(), b = client();
    char body[64];
    for (int i = 0; i < 200; i++) {
        int n = snprintf(body, sizeof body, "a%d", i);
        assert_int_equal(nng_send(a, body, (size_t)n, 0), 0);
        n = snprintf(body, sizeof body, "b%d", i);
        assert_int_equal(nng_send(b, body, (size_t)n, 0), 0);
        for (int k = 0; k < 2; k++) {
            char *got;
            size_t len;
            assert_int_equal(nng_recv(k ? b : a, &got, &len, NNG_FLAG_ALLOC), 0);
            char want[64];
            int wn = snprintf(want, sizeof want, "re:%c%d", k ? 'b' : 'a', i);
            assert_int_equal(len, (size_t)wn);
            assert_memory_equal(got, want, len);
            nng_free(got, len);
        }
    }
    wait_peers(2);
    nng_close(a);
    nng_close(b);
    wait_peers(0);
}

/* Four requests queued on one connection before the server reads any (req0 contexts), then
 * answered: each context gets its own reply. */
static void test_outstanding_on_one_connection(void **state)
{
    (void)state;
    enum { N = 4 };
    nng_socket s = client();
    round_trip(s, "warm", 4); /* the pipe is up before the server pauses */
    atomic_store(&srv.paused, 1);
    while (!atomic_load(&srv.idle))
        sleep_ms(1);
    nng_ctx ctx[N];
    nng_aio *aio[N];
    for (int i = 0; i < N; i++) {
        char body[16];
        int n = snprintf(body, sizeof body, "ctx%d", i);
        nng_msg *m;
        assert_int_equal(nng_ctx_open(&ctx[i], s), 0);
        assert_int_equal(nng_aio_alloc(&aio[i], NULL, NULL), 0);
        nng_aio_set_timeout(aio[i], 10000);
        assert_int_equal(nng_msg_alloc(&m, 0), 0);
        assert_int_equal(nng_msg_append(m, body, (size_t)n), 0);
        nng_aio_set_msg(aio[i], m);
        nng_ctx_send(ctx[i], aio[i]);
        nng_aio_wait(aio[i]);
        assert_int_equal(nng_aio_result(aio[i]), 0);
    }
    int before = atomic_load(&srv.received);
    atomic_store(&srv.paused, 0);
    for (int i = 0; i < N; i++)
        nng_ctx_recv(ctx[i], aio[i]);
    for (int i = 0; i < N; i++) {
        char want[16];
        int wn = snprintf(want, sizeof want, "re:ctx%d", i);
        nng_aio_wait(aio[i]);
        assert_int_equal(nng_aio_result(aio[i]), 0);
        nng_msg *m = nng_aio_get_msg(aio[i]);
        assert_int_equal(nng_msg_len(m), (size_t)wn);
        assert_memory_equal(nng_msg_body(m), want, (size_t)wn);
        nng_msg_free(m);
        nng_ctx_close(ctx[i]);
        nng_aio_free(aio[i]);
    }
    assert_int_equal(atomic_load(&srv.received) - before, N); /* no resends were needed */
    nng_close(s);
}

/* Peers that break the protocol are cut; the good client beside them is served throughout. */
static void test_bad_peers(void **state)
{
    (void)state;
    nng_socket good = client();
    round_trip(good, "one", 3);

    int fd = raw_client(0); /* not SP at all */
    assert_int_equal(write(fd, "GET / HTTP/1.1\r\n\r\n", 18), 18);
    expect_closed(fd);
    round_trip(good, "two", 3);

    fd = raw_client(0); /* SP, but rep0 talking to rep0 */
    uint8_t h[PROTO_SP_HELLO_LEN];
    proto_sp_hello(h, PROTO_SP_REP0);
    assert_int_equal(write(fd, h, sizeof h), (ssize_t)sizeof h);
    expect_closed(fd);

    uint8_t f[PROTO_SP_IPC_HDR + 4];
    fd = raw_client(1); /* a length over the limit: cut before anything is allocated */
    proto_sp_ipc_frame(f, PROTO_SP_MSG_MAX + 1);
    assert_int_equal(write(fd, f, PROTO_SP_IPC_HDR), PROTO_SP_IPC_HDR);
    expect_closed(fd);

    fd = raw_client(1); /* a length that would wrap */
    memset(f, 0xff, PROTO_SP_IPC_HDR);
    f[0] = 1;
    assert_int_equal(write(fd, f, PROTO_SP_IPC_HDR), PROTO_SP_IPC_HDR);
    expect_closed(fd);
    round_trip(good, "three", 5);

    fd = raw_client(1); /* garbage after a good greeting: an unknown message type */
    assert_int_equal(write(fd, "\x7fgarbage-garbage", 16), 16);
    expect_closed(fd);

    fd = raw_client(1); /* a request whose header has no request id (top bit clear) */
    proto_sp_ipc_frame(f, 4);
    proto_sp_put32(f + PROTO_SP_IPC_HDR, 0x00000001u);
    assert_int_equal(write(fd, f, sizeof f), (ssize_t)sizeof f);
    expect_closed(fd);

    fd = raw_client(1); /* a frame cut short, then the peer stops writing: nothing yet */
    proto_sp_ipc_frame(f, 100);
    assert_int_equal(write(fd, f, PROTO_SP_IPC_HDR), PROTO_SP_IPC_HDR);
    round_trip(good, "four", 4);
    close(fd);

    for (int i = 0; i < 50; i++)
        round_trip(good, "more", 4);
    nng_close(good);
    wait_peers(0);
}

/* A client that hangs up while its request is being worked on: the reply is dropped and the
 * server goes on. Also a raw client's request and reply, byte for byte. */
static void test_client_gone_before_reply(void **state)
{
    (void)state;
    nng_socket good = client();
    round_trip(good, "before", 6);

    int fd = raw_client(1);
    uint8_t f[PROTO_SP_IPC_HDR + 4 + 4];
    proto_sp_ipc_frame(f, 8);
    proto_sp_put32(f + PROTO_SP_IPC_HDR, 0x80000005u);
    memcpy(f + PROTO_SP_IPC_HDR + 4, "hold", 4);
    atomic_store(&srv.hold, 1);
    int before = atomic_load(&srv.received);
    assert_int_equal(write(fd, f, sizeof f), (ssize_t)sizeof f);
    for (int i = 0; i < 1000 && atomic_load(&srv.received) == before; i++)
        sleep_ms(10);
    assert_int_equal(atomic_load(&srv.received), before + 1); /* in the server's hands */
    close(fd);
    atomic_store(&srv.hold, 0);
    round_trip(good, "after", 5);
    wait_peers(1);

    /* The same request from a client that stays: the reply carries its request id. */
    fd = raw_client(1);
    assert_int_equal(write(fd, f, sizeof f), (ssize_t)sizeof f);
    uint8_t got[PROTO_SP_HELLO_LEN + PROTO_SP_IPC_HDR + 4 + 7];
    size_t n = 0;
    while (n < sizeof got) {
        ssize_t r = read(fd, got + n, sizeof got - n);
        assert_true(r > 0);
        n += (size_t)r;
    }
    uint64_t len;
    assert_int_equal(proto_sp_hello_check(got, PROTO_SP_REP0), 0);
    assert_int_equal(proto_sp_ipc_unframe(got + 8, PROTO_SP_MSG_MAX, &len), 0);
    assert_int_equal(len, 4 + 7);
    assert_int_equal(proto_sp_get32(got + 8 + PROTO_SP_IPC_HDR), 0x80000005u);
    assert_memory_equal(got + 8 + PROTO_SP_IPC_HDR + 4, "re:hold", 7);
    close(fd);
    nng_close(good);
    wait_peers(0);
}

/* A raw request frame: request id `id`, body `body`. */
static size_t raw_req(uint8_t *f, uint32_t id, const char *body)
{
    size_t n = strlen(body);
    proto_sp_ipc_frame(f, 4 + n);
    proto_sp_put32(f + PROTO_SP_IPC_HDR, id | 0x80000000u);
    memcpy(f + PROTO_SP_IPC_HDR + 4, body, n);
    return PROTO_SP_IPC_HDR + 4 + n;
}

/* Reads one reply and checks its request id and body ("re:" + the request's). */
static void raw_reply(int fd, uint32_t id, const char *body)
{
    uint8_t f[PROTO_SP_IPC_HDR + 4 + 32];
    size_t want = PROTO_SP_IPC_HDR + 4 + 3 + strlen(body), n = 0;
    while (n < want) {
        ssize_t r = read(fd, f + n, want - n);
        assert_true(r > 0);
        n += (size_t)r;
    }
    uint64_t len;
    assert_int_equal(proto_sp_ipc_unframe(f, PROTO_SP_MSG_MAX, &len), 0);
    assert_int_equal(len, want - PROTO_SP_IPC_HDR);
    assert_int_equal(proto_sp_get32(f + PROTO_SP_IPC_HDR), id | 0x80000000u);
    assert_memory_equal(f + PROTO_SP_IPC_HDR + 4, "re:", 3);
    assert_memory_equal(f + PROTO_SP_IPC_HDR + 7, body, strlen(body));
}

/* Round-robin: a connection with four requests waiting does not make another's one wait
 * behind them all; each connection's replies come in its order. */
static void test_fair_across_connections(void **state)
{
    (void)state;
    atomic_store(&srv.paused, 1);
    while (!atomic_load(&srv.idle))
        sleep_ms(1);
    /* Raw clients: once write returns, the bytes wait in the server's socket. */
    int a = raw_client(1), b = raw_client(1);
    uint8_t buf[256];
    size_t n = 0;
    for (uint32_t i = 1; i <= 4; i++) {
        char body[8];
        snprintf(body, sizeof body, "a%u", i);
        n += raw_req(buf + n, i, body);
    }
    assert_int_equal(write(a, buf, n), (ssize_t)n);
    n = raw_req(buf, 9, "b1");
    assert_int_equal(write(b, buf, n), (ssize_t)n);
    atomic_store(&srv.paused, 0);

    uint8_t hello[PROTO_SP_HELLO_LEN];
    for (int k = 0; k < 2; k++) {
        int fd = k ? b : a;
        for (size_t got = 0; got < sizeof hello;) {
            ssize_t r = read(fd, hello + got, sizeof hello - got);
            assert_true(r > 0);
            got += (size_t)r;
        }
        assert_int_equal(proto_sp_hello_check(hello, PROTO_SP_REP0), 0);
    }
    raw_reply(a, 1, "a1");
    raw_reply(a, 2, "a2");
    raw_reply(a, 3, "a3");
    raw_reply(a, 4, "a4");
    raw_reply(b, 9, "b1");
    while (atomic_load(&srv.logged) < 5) /* the replies came: it is on its way */
        sleep_ms(1);
    const char *want[] = {"a1", "b1", "a2", "a3", "a4"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(srv.order[i], want[i]);
    close(a);
    close(b);
}

/* Peers that hold the server up: one that never greets, one that never reads its (big)
 * reply. Each is cut after its bound; the good client is served all along. */
static void test_slow_peers(void **state)
{
    (void)state;
    nng_socket good = client();
    round_trip(good, "one", 3);
    int mute = raw_client(0);

    int deaf = raw_client(1);
    size_t big = 4u << 20; /* its reply outgrows the socket buffer many times */
    uint8_t *f = calloc(1, PROTO_SP_IPC_HDR + 4 + big);
    assert_non_null(f);
    proto_sp_ipc_frame(f, 4 + big);
    proto_sp_put32(f + PROTO_SP_IPC_HDR, 0x80000001u);
    for (size_t off = 0, n = PROTO_SP_IPC_HDR + 4 + big; off < n;) {
        ssize_t w = write(deaf, f + off, n - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
    free(f);
    for (int i = 0; i < 100; i++) /* the server is not stuck on the deaf peer */
        round_trip(good, "meanwhile", 9);
    wait_peers(2);
    expect_closed(mute); /* after BE_SPREP_HELLO_MS */
    for (int i = 0; i < 1500 && atomic_load(&srv.peers) != 1; i++)
        sleep_ms(10); /* BE_SPREP_STALL_MS */
    assert_int_equal(atomic_load(&srv.peers), 1);
    close(deaf);
    round_trip(good, "two", 3);
    nng_close(good);
}

/* The socket file: a stale one (nobody accepting) is replaced, a live one is not taken. */
static void test_socket_file(void **state)
{
    (void)state;
    char err[256];
    be_sprep_t *other;
    assert_int_equal(be_sprep_create(&other, path, "test", err, sizeof err), -EADDRINUSE);
    char stale[108];
    snprintf(stale, sizeof stale, "/tmp/fg-test-sprep-stale-%d.sock", (int)getpid());
    unlink(stale);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", stale);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd); /* the file stays; nobody listens on it */
    assert_int_equal(be_sprep_create(&other, stale, "test", err, sizeof err), 0);
    be_sprep_destroy(other);
    assert_int_equal(access(stale, F_OK), -1);
    char longp[200];
    memset(longp, 'x', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    assert_int_equal(be_sprep_create(&other, longp, "test", err, sizeof err), PROTO_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_many_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_clients_interleaved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outstanding_on_one_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fair_across_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_peers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_before_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_peers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
