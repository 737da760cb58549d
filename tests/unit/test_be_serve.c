/* The real framegate-backend process over a real NNG socket: readiness ping, a frame, a
 * garbage message (an error reply, and it keeps serving), a past deadline, SIGTERM. And
 * be_serve_run in this process: a --join backend's drain on stop over ipc (be_sprep). */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "err.h"
#include "msg.h"
#include "serve.h"

static pid_t child = -1;
static char dir[64];
static char sock_path[128];
static char weights[128];

static uint8_t *read_file_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void spawn(const char *extra1, const char *extra2)
{
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char ppid[16];
        snprintf(ppid, sizeof ppid, "%d", (int)getppid());
        execl(FG_BIN_DIR "/framegate-backend", "framegate-backend", "--listen", sock_path,
              "--parent-pid", ppid, "--instance", "test", "--cfg",
              FG_DARKNET_CFG "/yolov3-tiny.cfg", "--names", FG_DARKNET_DATA "/coco.names", extra1,
              extra2, (char *)NULL);
        _exit(127);
    }
}

/* Runs the backend with argv and waits for its exit status (bounded: SIGKILL after 20 s). */
static int run_wait(char *const argv[])
{
    pid_t pid = fork();
    int status = -1;
    assert_true(pid >= 0);
    if (pid == 0) {
        execv(FG_BIN_DIR "/framegate-backend", argv);
        _exit(127);
    }
    for (int i = 0; i < 400; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/fg-be-serve-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(sock_path, sizeof sock_path, "ipc://%s/be.sock", dir);
    snprintf(weights, sizeof weights, "%s/yolov3-tiny.weights", dir);
    return 0;
}

/* Whatever a failed assertion left running is killed by PID, and the temp dir removed. */
static int teardown(void **state)
{
    (void)state;
    char path[160];
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        child = -1;
    }
    unlink(weights);
    snprintf(path, sizeof path, "%s/be.sock", dir);
    unlink(path);
    rmdir(dir);
    return 0;
}

/* SIGTERM, then the exit status (bounded wait; SIGKILL and -1 if it does not stop). */
static int stop_child(void)
{
    int status = -1;
    kill(child, SIGTERM);
    for (int i = 0; i < 200; i++) {
        if (waitpid(child, &status, WNOHANG) == child) {
            child = -1;
            return status;
        }
        usleep(50000);
    }
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    child = -1;
    return -1;
}

/* Sends raw bytes, waits for the reply (up to 30 s) and decodes it into *rep (views into
 * *msg, which the caller frees). */
static void roundtrip(nng_socket s, const void *buf, size_t len, nng_msg **msg, proto_rep_t *rep)
{
    assert_int_equal(nng_send(s, (void *)buf, len, 0), 0);
    assert_int_equal(nng_recvmsg(s, msg, 0), 0);
    assert_int_equal(proto_rep_decode(rep, nng_msg_body(*msg), nng_msg_len(*msg)), 0);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void run_session(int simulate)
{
    nng_socket s;
    nng_msg *msg;
    proto_rep_t rep;
    uint8_t buf[1 << 20];
    size_t len;
    assert_int_equal(nng_req0_open(&s), 0);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 60000);
    nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 20);
    assert_int_equal(nng_dial(s, sock_path, NULL, NNG_FLAG_NONBLOCK), 0);

    proto_req_t ping = {.type = PROTO_T_PING, .id = 1};
    uint8_t ping_buf[128];
    size_t ping_len;
    assert_int_equal(proto_req_encode(&ping, ping_buf, sizeof ping_buf, &ping_len), 0);
    roundtrip(s, ping_buf, ping_len, &msg, &rep);
    assert_int_equal(rep.type, PROTO_T_PONG);
    assert_true(rep.id == 1);
    assert_non_null(memmem(rep.payload, rep.payload_len, "\"model\":\"yolov3-tiny\"", 21));
    assert_non_null(memmem(rep.payload, rep.payload_len, "\"kind\":\"detector\"", 17));
    const char *input = simulate ? "\"input\":[0,0]" : "\"input\":[416,416]";
    assert_non_null(memmem(rep.payload, rep.payload_len, input, strlen(input)));
    nng_msg_free(msg);

    size_t dlen;
    uint8_t *dog = read_file_all(FG_DARKNET_DATA "/dog.jpg", &dlen);
    proto_req_t det = {.type = PROTO_T_DETECT,
                       .id = 2,
                       .payload = dog,
                       .payload_len = (uint32_t)dlen,
                       .output = PROTO_OUT_TEXT};
    assert_int_equal(proto_req_encode(&det, buf, sizeof buf, &len), 0);
    roundtrip(s, buf, len, &msg, &rep);
    assert_int_equal(rep.type, PROTO_T_RESULT);
    assert_true(rep.id == 2);
    assert_int_equal(rep.status, 0);
    assert_int_equal(rep.width, 768);
    assert_int_equal(rep.height, 576);
    if (simulate)
        assert_int_equal(rep.ndet, 0);
    size_t cursor = 0;
    proto_det_t d;
    while (proto_rep_det_next(&rep, &cursor, &d)) {
        assert_true(d.x >= 0 && d.x + d.w <= 768.5f && d.y >= 0 && d.y + d.h <= 576.5f);
        assert_true(d.confidence > 0 && d.confidence <= 1);
    }
    assert_true(rep.payload_len > 0); /* the top-1 label or "none" */
    if (simulate)
        assert_memory_equal(rep.payload, "none", 4);
    assert_true(rep.total_us >= rep.decode_us);
    if (simulate)
        assert_true(rep.infer_us >= 5000); /* --simulate-ms 5 */
    nng_msg_free(msg);

    /* The annotated frame: a JPEG of the same size. */
    det.id = 5;
    det.output = PROTO_OUT_JPEG;
    assert_int_equal(proto_req_encode(&det, buf, sizeof buf, &len), 0);
    roundtrip(s, buf, len, &msg, &rep);
    assert_int_equal(rep.status, 0);
    assert_true(rep.id == 5);
    assert_true(rep.payload_len > 1000);
    assert_true(rep.payload[0] == 0xff && rep.payload[1] == 0xd8);
    if (simulate)
        assert_int_equal(rep.payload_len, dlen);
    nng_msg_free(msg);
    det.output = PROTO_OUT_TEXT;

    /* Garbage: an error reply, then it still serves. */
    roundtrip(s, "garbage!", 8, &msg, &rep);
    assert_int_equal(rep.status, PROTO_EMAGIC);
    assert_true(rep.id == 0);
    assert_true(rep.error_len > 0);
    nng_msg_free(msg);

    /* A frame that is neither JPEG nor PNG. */
    proto_req_t bad = {
        .type = PROTO_T_DETECT, .id = 3, .payload = (const uint8_t *)"xyz", .payload_len = 3};
    assert_int_equal(proto_req_encode(&bad, buf, sizeof buf, &len), 0);
    roundtrip(s, buf, len, &msg, &rep);
    assert_int_equal(rep.status, PROTO_EFORMAT);
    assert_true(rep.id == 3);
    nng_msg_free(msg);

    /* A valid header with a broken body: the id is still echoed. */
    assert_int_equal(proto_req_encode(&bad, buf, sizeof buf, &len), 0);
    roundtrip(s, buf, len - 1, &msg, &rep);
    assert_true(rep.status < 0);
    assert_true(rep.id == 3);
    nng_msg_free(msg);

    /* A deadline already past: skipped. */
    det.id = 4;
    det.deadline_ms = now_ms() - 1000;
    assert_int_equal(proto_req_encode(&det, buf, sizeof buf, &len), 0);
    roundtrip(s, buf, len, &msg, &rep);
    assert_int_equal(rep.status, PROTO_EDEADLINE);
    assert_int_equal(rep.ndet, 0);
    nng_msg_free(msg);

    /* A deadline that passes while the frame is being worked on (2 ms: less than the 5 ms
     * simulated pass, far less than a real forward pass): dropped, not answered with results,
     * whichever stage notices it first. */
    det.id = 6;
    det.deadline_ms = now_ms() + 2;
    assert_int_equal(proto_req_encode(&det, buf, sizeof buf, &len), 0);
    roundtrip(s, buf, len, &msg, &rep);
    assert_true(rep.id == 6);
    assert_int_equal(rep.status, PROTO_EDEADLINE);
    assert_int_equal(rep.ndet, 0);
    assert_true(rep.error_len > 0);
    print_message("deadline in 2 ms: %.*s\n", (int)rep.error_len, rep.error);
    nng_msg_free(msg);
    det.deadline_ms = 0;

    /* issue 11, item 1: a 4-byte JPEG header (FF D8 FF C0, base64 "/9j/wA==") broke the backend's decoder for
     * every later frame. It is a bad image, and the next frame is served. */
    static const uint8_t four[] = {0xff, 0xd8, 0xff, 0xc0, 0x00}; /* base64 "/9j/wA==" + 00 */
    for (int round = 0; round < 4; round++) {
        bad.id = 7;
        bad.payload = four;
        bad.payload_len = round % 2 == 0 ? 4 : 5;
        assert_int_equal(proto_req_encode(&bad, buf, sizeof buf, &len), 0);
        roundtrip(s, buf, len, &msg, &rep);
        assert_int_equal(rep.status, PROTO_EIMAGE);
        nng_msg_free(msg);
        det.id = 8;
        assert_int_equal(proto_req_encode(&det, buf, sizeof buf, &len), 0);
        roundtrip(s, buf, len, &msg, &rep);
        assert_int_equal(rep.status, 0);
        assert_int_equal(rep.width, 768);
        nng_msg_free(msg);
    }

    /* It still serves after all that. */
    roundtrip(s, ping_buf, ping_len, &msg, &rep);
    assert_int_equal(rep.type, PROTO_T_PONG);
    nng_msg_free(msg);

    free(dog);
    nng_close(s);
}

static void test_simulated(void **state)
{
    (void)state;
    spawn("--simulate-ms", "5");
    run_session(1);
    int status = stop_child();
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_real_model(void **state)
{
    (void)state;
    char *gen[] = {"framegate-backend",
                   "--gen-weights",
                   weights,
                   "--cfg",
                   FG_DARKNET_CFG "/yolov3-tiny.cfg",
                   NULL};
    int status = run_wait(gen);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    spawn("--weights", weights);
    run_session(0);
    status = stop_child();
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_bad_model_exits_2(void **state)
{
    (void)state;
    spawn("--weights", "/nonexistent/weights");
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    child = -1;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    char *bad[] = {"framegate-backend", "--listen", sock_path, "--simulate-ms", "x", NULL};
    status = run_wait(bad);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    char *url[] = {"framegate-backend", "--listen", "nope://", "--simulate-ms", "1", NULL};
    status = run_wait(url);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
}

/* --parent-pid that is not our parent: the gateway is already gone, exit at once. */
static void test_orphan_exits(void **state)
{
    (void)state;
    char ppid[16];
    snprintf(ppid, sizeof ppid, "%d", (int)getpid() + 100000);
    char *argv[] = {"framegate-backend", "--listen", sock_path, "--simulate-ms", "1",
                    "--parent-pid",      ppid,       NULL};
    int status = run_wait(argv);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static atomic_int drain_stop, drain_left, drain_returned;

static void on_drain_stop(void *arg)
{
    (void)arg;
    atomic_fetch_add(&drain_left, 1);
}

static void *serve_thread(void *arg)
{
    be_serve_run(arg);
    atomic_store(&drain_returned, 1);
    return NULL;
}

static void ping(nng_socket s, uint64_t id)
{
    proto_req_t req = {.type = PROTO_T_PING, .id = id};
    uint8_t buf[128];
    size_t len;
    nng_msg *msg;
    proto_rep_t rep;
    assert_int_equal(proto_req_encode(&req, buf, sizeof buf, &len), 0);
    roundtrip(s, buf, len, &msg, &rep);
    assert_int_equal(rep.type, PROTO_T_PONG);
    assert_true(rep.id == id);
    nng_msg_free(msg);
}

/* On stop, a registered backend deregisters (on_stop), keeps answering while a gateway is
 * connected, and returns once none is (well before drain_ms). */
static void test_drain_ipc(void **state)
{
    (void)state;
    be_image_t *image;
    be_image_limits_t limits = {.max_pixels = 1u << 24, .max_side = 8192};
    assert_int_equal(be_image_create(&image, limits), 0);
    atomic_store(&drain_stop, 0);
    atomic_store(&drain_left, 0);
    atomic_store(&drain_returned, 0);
    be_serve_opts_t o = {.listen = sock_path,
                         .model_name = "sim",
                         .instance = "drain",
                         .image = image,
                         .simulate_ms = 0,
                         .stop = &drain_stop,
                         .on_stop = on_drain_stop,
                         .drain_ms = 60000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, serve_thread, &o), 0);
    nng_socket s;
    assert_int_equal(nng_req0_open(&s), 0);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 10000);
    int rv = -1;
    for (int i = 0; i < 200 && (rv = nng_dial(s, sock_path, NULL, 0)) != 0; i++)
        usleep(20000); /* until the thread listens */
    assert_int_equal(rv, 0);
    ping(s, 1);
    atomic_store(&drain_stop, 1);
    for (int i = 0; i < 500 && atomic_load(&drain_left) == 0; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&drain_left), 1);
    ping(s, 2); /* stopping, but a gateway is still connected: served */
    ping(s, 3);
    assert_int_equal(atomic_load(&drain_returned), 0);
    nng_close(s);
    for (int i = 0; i < 1500 && !atomic_load(&drain_returned); i++)
        usleep(10000);
    assert_int_equal(atomic_load(&drain_returned), 1); /* on the peer count, not drain_ms */
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&drain_left), 1);
    be_image_destroy(image);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_simulated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_model_exits_2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_orphan_exits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_ipc, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
