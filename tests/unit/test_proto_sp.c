/* The SP framing against libnng itself: a raw socket speaking proto/sp.h to NNG's rep0 and
 * req0 over ipc, both ways, and the checks on what a peer sends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "err.h"
#include "sp.h"

static char path[108];

static void make_path(void)
{
    snprintf(path, sizeof path, "/tmp/fg-test-sp-%d.sock", (int)getpid());
    unlink(path);
}

static void read_all(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        assert_true(r > 0);
        p += r;
        n -= (size_t)r;
    }
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    assert_int_equal(write(fd, p, n), (ssize_t)n);
}

static struct sockaddr_un sun_of(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    return sa;
}

/* Our request (raw socket) to NNG's rep0, and its reply back with our request id. */
static void test_raw_req_to_nng_rep(void **state)
{
    (void)state;
    char url[128];
    nng_socket rep;
    make_path();
    snprintf(url, sizeof url, "ipc://%s", path);
    assert_int_equal(nng_rep0_open(&rep), 0);
    assert_int_equal(nng_listen(rep, url, NULL, 0), 0);
    nng_socket_set_ms(rep, NNG_OPT_RECVTIMEO, 5000);

    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = sun_of();
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    uint8_t hello[8], peer[8];
    proto_sp_hello(hello, PROTO_SP_REQ0);
    write_all(fd, hello, 8);
    read_all(fd, peer, 8);
    assert_int_equal(proto_sp_hello_check(peer, PROTO_SP_REP0), 0);
    assert_int_equal(proto_sp_hello_check(peer, PROTO_SP_REQ0), PROTO_ETYPE);

    uint8_t msg[PROTO_SP_IPC_HDR + 4 + 5];
    proto_sp_ipc_frame(msg, 4 + 5);
    proto_sp_put32(msg + PROTO_SP_IPC_HDR, 0x80000007u);
    memcpy(msg + PROTO_SP_IPC_HDR + 4, "hello", 5);
    write_all(fd, msg, sizeof msg);

    char *got;
    size_t n;
    assert_int_equal(nng_recv(rep, &got, &n, NNG_FLAG_ALLOC), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(got, "hello", 5);
    nng_free(got, n);
    assert_int_equal(nng_send(rep, "world!", 6, 0), 0);

    uint8_t head[PROTO_SP_IPC_HDR], body[16];
    uint64_t len;
    read_all(fd, head, sizeof head);
    assert_int_equal(proto_sp_ipc_unframe(head, 4, &len), PROTO_ETOOBIG);
    assert_int_equal(proto_sp_ipc_unframe(head, 1024, &len), 0);
    assert_int_equal(len, 4 + 6);
    read_all(fd, body, (size_t)len);
    assert_int_equal(proto_sp_get32(body), 0x80000007u);
    assert_memory_equal(body + 4, "world!", 6);
    close(fd);
    nng_close(rep);
    unlink(path);
}

/* NNG's req0 to our rep side (raw listener): the greeting, the backtrace, the reply. */
static void test_nng_req_to_raw_rep(void **state)
{
    (void)state;
    char url[128];
    make_path();
    snprintf(url, sizeof url, "ipc://%s", path);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = sun_of();
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 4), 0);

    nng_socket req;
    assert_int_equal(nng_req0_open(&req), 0);
    nng_socket_set_ms(req, NNG_OPT_RECVTIMEO, 5000);
    assert_int_equal(nng_dial(req, url, NULL, NNG_FLAG_NONBLOCK), 0);
    int fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    uint8_t hello[8], peer[8];
    proto_sp_hello(hello, PROTO_SP_REP0);
    write_all(fd, hello, 8);
    read_all(fd, peer, 8);
    assert_int_equal(proto_sp_hello_check(peer, PROTO_SP_REQ0), 0);

    assert_int_equal(nng_send(req, "abc", 3, 0), 0);
    uint8_t head[PROTO_SP_IPC_HDR], body[64];
    uint64_t len;
    read_all(fd, head, sizeof head);
    assert_int_equal(proto_sp_ipc_unframe(head, sizeof body, &len), 0);
    read_all(fd, body, (size_t)len);
    int64_t bt = proto_sp_backtrace_len(body, (size_t)len);
    assert_int_equal(bt, 4);
    assert_int_equal(len - (uint64_t)bt, 3);
    assert_memory_equal(body + bt, "abc", 3);

    uint8_t reply[PROTO_SP_IPC_HDR + 4 + 2];
    proto_sp_ipc_frame(reply, 4 + 2);
    memcpy(reply + PROTO_SP_IPC_HDR, body, 4);
    memcpy(reply + PROTO_SP_IPC_HDR + 4, "ok", 2);
    write_all(fd, reply, sizeof reply);
    char *got;
    size_t n;
    assert_int_equal(nng_recv(req, &got, &n, NNG_FLAG_ALLOC), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(got, "ok", 2);
    nng_free(got, n);
    nng_close(req);
    close(fd);
    close(lfd);
    unlink(path);
}

static void test_checks(void **state)
{
    (void)state;
    uint8_t h[8];
    proto_sp_hello(h, PROTO_SP_REP0);
    assert_int_equal(proto_sp_hello_check(h, PROTO_SP_REP0), 0);
    h[1] = 'X';
    assert_int_equal(proto_sp_hello_check(h, PROTO_SP_REP0), PROTO_EMAGIC);
    memcpy(h, "GET / HT", 8);
    assert_int_equal(proto_sp_hello_check(h, PROTO_SP_REP0), PROTO_EMAGIC);

    uint8_t f[PROTO_SP_IPC_HDR];
    uint64_t len = 0;
    proto_sp_ipc_frame(f, PROTO_SP_MSG_MAX);
    assert_int_equal(proto_sp_ipc_unframe(f, PROTO_SP_MSG_MAX, &len), 0);
    assert_int_equal(len, PROTO_SP_MSG_MAX);
    proto_sp_ipc_frame(f, PROTO_SP_MSG_MAX + 1);
    assert_int_equal(proto_sp_ipc_unframe(f, PROTO_SP_MSG_MAX, &len), PROTO_ETOOBIG);
    memset(f, 0xff, sizeof f); /* a length that would wrap any addition */
    f[0] = 1;
    assert_int_equal(proto_sp_ipc_unframe(f, PROTO_SP_MSG_MAX, &len), PROTO_ETOOBIG);
    f[0] = 2;
    assert_int_equal(proto_sp_ipc_unframe(f, PROTO_SP_MSG_MAX, &len), PROTO_ETYPE);

    uint8_t bt[40] = {0};
    assert_int_equal(proto_sp_backtrace_len(bt, 3), PROTO_ECORRUPT);
    assert_int_equal(proto_sp_backtrace_len(bt, sizeof bt), PROTO_ECORRUPT); /* no id */
    bt[8] = 0x80; /* two hops, then the id */
    assert_int_equal(proto_sp_backtrace_len(bt, sizeof bt), 12);
    assert_int_equal(proto_sp_backtrace_len(bt, 11), PROTO_ECORRUPT);
    memset(bt, 0, sizeof bt);
    bt[32] = 0x80; /* past PROTO_SP_HOPS_MAX words */
    assert_int_equal(proto_sp_backtrace_len(bt, sizeof bt), PROTO_ECORRUPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_req_to_nng_rep),
        cmocka_unit_test(test_nng_req_to_raw_rep),
        cmocka_unit_test(test_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
