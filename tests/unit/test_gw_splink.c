/* The loop's SP client (gw_link_* on an ipc:// address) against real peers: libnng's rep0
 * (the backend's NNG side) and a scripted raw peer on a thread that answers out of order,
 * stalls, hangs up, or sends what no SP peer should. Counts callbacks as libuv's tests do. */
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
#include <pthread.h>

#include "err.h"
#include "link.h"
#include "sp.h"

#define NSLOTS 4

static struct {
    uv_loop_t loop;
    gw_bridge_t bridge;
    char path[108], url[128];
    int done[NSLOTS];
    gw_link_status_t st[NSLOTS];
    uint64_t got_id[NSLOTS];
    size_t got_len[NSLOTS];
    int calls;
    gw_link_t *destroy_in_cb; /* the callback destroys this link */
    gw_link_t *link;          /* the test's link: teardown destroys it if a test failed */
    pthread_t *peer;          /* and joins its peer thread (after the link hung up) */
} E;

static void on_done(void *owner, int slot, gw_link_status_t st, const char *why,
                    const uint8_t *body, size_t len)
{
    (void)owner;
    (void)why;
    E.done[slot]++;
    E.st[slot] = st;
    E.calls++;
    E.got_len[slot] = len;
    proto_rep_t rep;
    if (st == GW_LINK_OK && proto_rep_decode(&rep, body, len) == 0 && rep.status == 0)
        E.got_id[slot] = rep.id;
    if (E.destroy_in_cb != NULL) {
        gw_link_destroy(E.destroy_in_cb);
        E.destroy_in_cb = E.link = NULL;
    }
}

static int setup(void **state)
{
    (void)state;
    memset(&E, 0, sizeof E);
    snprintf(E.path, sizeof E.path, "/tmp/fg-test-splink-%d.sock", (int)getpid());
    snprintf(E.url, sizeof E.url, "ipc://%s", E.path);
    unlink(E.path);
    assert_int_equal(uv_loop_init(&E.loop), 0);
    assert_int_equal(gw_bridge_init(&E.bridge, &E.loop), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (E.link != NULL)
        gw_link_destroy(E.link);
    gw_bridge_close(&E.bridge, NULL);
    uv_run(&E.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&E.loop), 0); /* every handle of the link closed */
    unlink(E.path);
    return 0;
}

/* Runs the loop until `n` callbacks have come in all, or ~10 s pass. */
static void run_until(int n)
{
    for (int i = 0; i < 10000 && E.calls < n; i++) {
        uv_run(&E.loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

static int send_detect(gw_link_t *l, int slot, uint64_t id, const uint8_t *payload, size_t len,
                       uint64_t timeout_ms)
{
    proto_req_t req = {.type = PROTO_T_DETECT,
                       .id = id,
                       .payload = payload,
                       .payload_len = (uint32_t)len,
                       .camera = "cam",
                       .camera_len = 3};
    return gw_link_send(l, slot, &req, timeout_ms);
}

/* ---- libnng's rep0: echoes each request's id and payload length ---- */

typedef struct {
    nng_socket sock;
    int delay_ms, served;
} nngrep_t;

static void *nng_serve(void *arg)
{
    nngrep_t *r = arg;
    nng_msg *msg;
    while (nng_recvmsg(r->sock, &msg, 0) == 0) {
        proto_req_t req;
        assert_int_equal(proto_req_decode(&req, nng_msg_body(msg), nng_msg_len(msg)), 0);
        if (r->delay_ms > 0)
            usleep((useconds_t)r->delay_ms * 1000);
        proto_rep_t rep = {.type = PROTO_T_RESULT, .id = req.id, .width = req.payload_len};
        uint8_t out[256];
        size_t len;
        /* A big payload must arrive whole and in order (its bytes are i * 7). */
        if (req.payload_len > 3)
            for (uint32_t i = 0; i < req.payload_len; i++)
                if (req.payload[i] != (uint8_t)(i * 7))
                    rep.status = PROTO_ECORRUPT;
        assert_int_equal(proto_rep_encode(&rep, out, sizeof out, &len), 0);
        nng_msg_free(msg);
        r->served++;
        if (nng_send(r->sock, out, len, 0) != 0)
            break;
    }
    return NULL;
}

/* Sends go out before the backend listens (they wait for the connection), then a 6 MiB
 * payload (more than a socket takes at once) and several requests at once on one
 * connection, all against libnng itself. */
static void test_nng_rep_peer(void **state)
{
    (void)state;
    gw_link_t *l;
    assert_int_equal(gw_link_create(&l, E.url, NSLOTS, &E.bridge, on_done, NULL), 0);
    E.link = l;
    assert_int_equal(gw_link_start(l), 0);
    assert_int_equal(send_detect(l, 0, 100, (const uint8_t *)"x", 1, 0), 0);
    for (int i = 0; i < 30; i++) { /* the dialer retries while nothing listens */
        uv_run(&E.loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    assert_int_equal(E.calls, 0);
    gw_link_dials_t d;
    assert_int_equal(gw_link_dials(&l, 1, &d), 0);
    assert_true(d.refused >= 2);
    assert_int_equal(d.connect, 0);

    nngrep_t r = {0};
    pthread_t th;
    assert_int_equal(nng_rep0_open(&r.sock), 0);
    nng_socket_set_size(r.sock, NNG_OPT_RECVMAXSZ, 16u << 20);
    assert_int_equal(nng_listen(r.sock, E.url, NULL, 0), 0);
    pthread_create(&th, NULL, nng_serve, &r);
    run_until(1);
    assert_int_equal(E.done[0], 1);
    assert_int_equal(E.st[0], GW_LINK_OK);
    assert_int_equal(E.got_id[0], 100);

    size_t big = 6u << 20;
    uint8_t *p = malloc(big);
    for (size_t i = 0; i < big; i++)
        p[i] = (uint8_t)(i * 7);
    assert_int_equal(send_detect(l, 1, 101, p, big, 10000), 0);
    memset(p, 0, big); /* the link copied what it had not written: ours again at return */
    free(p);
    assert_int_equal(send_detect(l, 2, 102, (const uint8_t *)"abc", 3, 10000), 0);
    assert_int_equal(send_detect(l, 3, 103, NULL, 0, 10000), 0);
    assert_int_equal(gw_link_busy(l), 3);
    assert_false(gw_link_idle(l, 1));
    run_until(4);
    assert_int_equal(E.calls, 4);
    for (int s = 1; s < 4; s++) {
        assert_int_equal(E.st[s], GW_LINK_OK);
        assert_int_equal(E.got_id[s], 100 + (uint64_t)s);
    }
    assert_int_equal(gw_link_busy(l), 0);
    assert_true(gw_link_idle(l, 1));
    assert_int_equal(gw_link_dials(&l, 1, &d), 0);
    assert_int_equal(d.connect, 1);
    gw_link_destroy(l);
    E.link = NULL;
    nng_close(r.sock);
    pthread_join(th, NULL);
    assert_int_equal(r.served, 4);
}

/* ---- a scripted raw peer ---- */

typedef enum {
    PEER_REVERSE,  /* reads 3 requests, answers them in reverse order, plus a stray id */
    PEER_SILENT,   /* greets, reads, never answers; hangs up when told */
    PEER_BADHELLO, /* greets as pub0 */
    PEER_HUGE,     /* answers with a frame over PROTO_SP_MSG_MAX */
} peer_mode_t;

typedef struct {
    peer_mode_t mode;
    int lfd;
    int hangup_fd; /* PEER_SILENT: a read end; any byte or EOF hangs up */
    pthread_t th;
} peer_t;

static int read_full(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Reads one framed request: its 4-byte id into id[], its body length returned. */
static int64_t read_req(int fd, uint8_t id[4])
{
    uint8_t h[PROTO_SP_IPC_HDR];
    uint64_t len;
    if (read_full(fd, h, sizeof h) != 0 || proto_sp_ipc_unframe(h, 1u << 20, &len) != 0)
        return -1;
    uint8_t *b = malloc(len);
    int rv = read_full(fd, b, (size_t)len);
    memcpy(id, b, 4);
    free(b);
    return rv == 0 ? (int64_t)len : -1;
}

static void write_rep(int fd, const uint8_t id[4], uint64_t req_id)
{
    proto_rep_t rep = {.type = PROTO_T_RESULT, .id = req_id};
    uint8_t out[PROTO_SP_IPC_HDR + 4 + 128];
    size_t len;
    assert_int_equal(proto_rep_encode(&rep, out + PROTO_SP_IPC_HDR + 4, 128, &len), 0);
    proto_sp_ipc_frame(out, 4 + len);
    memcpy(out + PROTO_SP_IPC_HDR, id, 4);
    assert_int_equal(write(fd, out, PROTO_SP_IPC_HDR + 4 + len),
                     (ssize_t)(PROTO_SP_IPC_HDR + 4 + len));
}

static void *peer_run(void *arg)
{
    peer_t *p = arg;
    int fd = accept(p->lfd, NULL, NULL);
    uint8_t hello[8], theirs[8], ids[3][4];
    proto_sp_hello(hello, p->mode == PEER_BADHELLO ? 0x20 : PROTO_SP_REP0);
    assert_int_equal(write(fd, hello, 8), 8);
    if (read_full(fd, theirs, 8) == 0 && proto_sp_hello_check(theirs, PROTO_SP_REQ0) == 0) {
        if (p->mode == PEER_REVERSE) {
            for (int i = 0; i < 3; i++)
                assert_true(read_req(fd, ids[i]) > 0);
            uint8_t stray[4] = {0xff, 0xff, 0xfc, 0x00}; /* slot 0 in its low bits, never sent */
            write_rep(fd, stray, 999);
            for (int i = 2; i >= 0; i--)
                write_rep(fd, ids[i], 200 + (uint64_t)i);
        } else if (p->mode == PEER_SILENT) {
            assert_true(read_req(fd, ids[0]) > 0);
            char c;
            (void)!read(p->hangup_fd, &c, 1);
        } else if (p->mode == PEER_HUGE) {
            assert_true(read_req(fd, ids[0]) > 0);
            uint8_t h[PROTO_SP_IPC_HDR];
            proto_sp_ipc_frame(h, PROTO_SP_MSG_MAX + 1);
            assert_int_equal(write(fd, h, sizeof h), (ssize_t)sizeof h);
        }
    }
    if (p->mode == PEER_BADHELLO) /* wait for the client to hang up */
        (void)!read(fd, theirs, 1);
    close(fd);
    return NULL;
}

static void peer_start(peer_t *p, peer_mode_t mode)
{
    p->mode = mode;
    p->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", E.path);
    unlink(E.path);
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(p->lfd, 4), 0);
    pthread_create(&p->th, NULL, peer_run, p);
}

static void peer_join(peer_t *p)
{
    pthread_join(p->th, NULL);
    close(p->lfd);
}

/* Replies in any order reach their own slots; a reply to an id never sent is dropped. */
static void test_out_of_order(void **state)
{
    (void)state;
    peer_t p;
    peer_start(&p, PEER_REVERSE);
    gw_link_t *l;
    assert_int_equal(gw_link_create(&l, E.url, NSLOTS, &E.bridge, on_done, NULL), 0);
    E.link = l;
    assert_int_equal(gw_link_start(l), 0);
    for (int s = 0; s < 3; s++)
        assert_int_equal(send_detect(l, s, 200 + (uint64_t)s, (const uint8_t *)"j", 1, 10000), 0);
    run_until(3);
    for (int s = 0; s < 3; s++) {
        assert_int_equal(E.done[s], 1);
        assert_int_equal(E.st[s], GW_LINK_OK);
        assert_int_equal(E.got_id[s], 200 + (uint64_t)s);
    }
    assert_int_equal(E.done[3], 0);
    peer_join(&p);
    /* The peer hung up: nothing was out, so no callback; the link redials. */
    E.destroy_in_cb = NULL;
    gw_link_destroy(l);
    E.link = NULL;
}

/* A timeout, a cancel (never inline), then a hang-up with a request out: BROKEN at once,
 * not at its deadline; the callback may destroy the link. */
static void test_timeout_cancel_hangup(void **state)
{
    (void)state;
    peer_t p;
    int hang[2];
    assert_int_equal(pipe(hang), 0);
    p.hangup_fd = hang[0];
    peer_start(&p, PEER_SILENT);
    gw_link_t *l;
    assert_int_equal(gw_link_create(&l, E.url, NSLOTS, &E.bridge, on_done, NULL), 0);
    E.link = l;
    assert_int_equal(gw_link_start(l), 0);
    assert_int_equal(send_detect(l, 0, 1, (const uint8_t *)"a", 1, 150), 0);
    run_until(1);
    assert_int_equal(E.st[0], GW_LINK_TIMEDOUT);

    assert_int_equal(send_detect(l, 1, 2, (const uint8_t *)"b", 1, 0), 0);
    gw_link_cancel(l, 1);
    assert_int_equal(E.done[1], 0); /* not inline */
    gw_link_cancel(l, 1);           /* twice: still one callback */
    run_until(2);
    assert_int_equal(E.done[1], 1);
    assert_int_equal(E.st[1], GW_LINK_CANCELLED);
    gw_link_cancel(l, 1); /* idle: a no-op */

    assert_int_equal(send_detect(l, 2, 3, (const uint8_t *)"c", 1, 60000), 0);
    E.destroy_in_cb = l;
    assert_int_equal(write(hang[1], "x", 1), 1);
    run_until(3);
    assert_int_equal(E.done[2], 1);
    assert_int_equal(E.st[2], GW_LINK_BROKEN);
    assert_null(E.destroy_in_cb); /* destroyed from its own callback */
    peer_join(&p);
    close(hang[0]);
    close(hang[1]);
}

/* A peer of another protocol is counted as NNG counts it and never gets a request. */
static void test_bad_greeting(void **state)
{
    (void)state;
    peer_t p;
    peer_start(&p, PEER_BADHELLO);
    gw_link_t *l;
    assert_int_equal(gw_link_create(&l, E.url, NSLOTS, &E.bridge, on_done, NULL), 0);
    E.link = l;
    assert_int_equal(gw_link_start(l), 0);
    assert_int_equal(send_detect(l, 0, 1, (const uint8_t *)"a", 1, 300), 0);
    run_until(1);
    assert_int_equal(E.st[0], GW_LINK_TIMEDOUT); /* it waited for a real peer */
    gw_link_dials_t d;
    assert_int_equal(gw_link_dials(&l, 1, &d), 0);
    assert_true(d.proto >= 1);
    assert_int_equal(d.connect, 0);
    peer_join(&p);
    gw_link_destroy(l);
    E.link = NULL;
}

/* A frame length over the limit is refused before anything is allocated for it. */
static void test_huge_reply(void **state)
{
    (void)state;
    peer_t p;
    peer_start(&p, PEER_HUGE);
    gw_link_t *l;
    assert_int_equal(gw_link_create(&l, E.url, NSLOTS, &E.bridge, on_done, NULL), 0);
    E.link = l;
    assert_int_equal(gw_link_start(l), 0);
    assert_int_equal(send_detect(l, 0, 1, (const uint8_t *)"a", 1, 10000), 0);
    run_until(1);
    assert_int_equal(E.st[0], GW_LINK_BROKEN);
    peer_join(&p);
    gw_link_destroy(l);
    E.link = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nng_rep_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_cancel_hangup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_greeting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_reply, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
