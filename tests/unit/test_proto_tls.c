/* Mutual TLS over NNG's tls+tcp (Debian's libnng on mbedTLS 2.28), with real certificates made
 * by scripts/certs.sh: a good pair talks; every bad certificate, a missing one and a peer that
 * does not speak TLS are refused at the dial, and proto_tls_refused() says so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "err.h"
#include "tls.h"

static char dir[256], other[256];

static const char *path(const char *d, const char *file)
{
    /* a ring: a test holds at most a few paths at once */
    static char bufs[16][512];
    static int i;
    char *b = bufs[i++ % 16];
    snprintf(b, 512, "%s/%s", d, file);
    return b;
}

static void sh(const char *cmd)
{
    int rv = system(cmd);
    if (rv != 0)
        fail_msg("'%s' exited %d", cmd, rv);
}

/* Two CAs in temporary directories: `dir` with the gateway, a good backend, an expired one
 * and one without the dialled name; `other` with its own gateway and backend. */
static int setup(void **state)
{
    (void)state;
    static char cmd[8192];
    snprintf(dir, sizeof dir, "/tmp/fg-tls-%d", (int)getpid());
    snprintf(other, sizeof other, "/tmp/fg-tls-other-%d", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "set -e; rm -rf %s %s; C=%s/scripts/certs.sh; $C init %s >/dev/null; "
             "$C issue %s be --ip 127.0.0.1 >/dev/null; "
             "$C issue %s old --ip 127.0.0.1 --start 20200101000000Z --end 20200201000000Z "
             ">/dev/null; $C issue %s noname --dns elsewhere >/dev/null; "
             "$C init %s >/dev/null; $C issue %s be --ip 127.0.0.1 >/dev/null",
             dir, other, FG_SOURCE_DIR, dir, dir, dir, dir, other, other);
    sh(cmd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, other);
    return system(cmd) == 0 ? 0 : -1;
}

typedef struct {
    nng_socket rep;
    int port;
} server_t;

/* A rep socket listening on tls+tcp://127.0.0.1:<free port> with the backend certificate
 * NAME of CA directory d (or plain tcp when name is NULL). */
static void server_start(server_t *s, const char *d, const char *name)
{
    nng_listener l;
    nng_tls_config *cfg = NULL;
    char err[512];
    assert_int_equal(nng_rep0_open(&s->rep), 0);
    nng_socket_set_ms(s->rep, NNG_OPT_RECVTIMEO, 3000);
    if (name != NULL) {
        char crt[64], key[64];
        snprintf(crt, sizeof crt, "%s.crt", name);
        snprintf(key, sizeof key, "%s.key", name);
        proto_tls_files_t f = {path(d, crt), path(d, key), path(d, "ca.crt")};
        if (proto_tls_config(&cfg, 1, &f, NULL, err, sizeof err) != 0)
            fail_msg("%s", err);
    }
    assert_int_equal(
        nng_listener_create(&l, s->rep, name != NULL ? "tls+tcp://127.0.0.1:0" : "tcp://127.0.0.1:0"),
        0);
    if (cfg != NULL) {
        assert_int_equal(nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg), 0);
        nng_tls_config_free(cfg);
    }
    assert_int_equal(nng_listener_start(l, 0), 0);
    assert_int_equal(nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &s->port), 0);
}

/* Dials the server from a req socket with the gateway certificate of CA directory d (no
 * certificate when d is NULL; plain tcp when tls is 0) and checking `sname`; returns nng's
 * result. On success, one request/reply round trip is checked. */
static int dial(server_t *s, int tls, const char *d, const char *ca_dir, const char *sname)
{
    nng_socket req;
    nng_dialer dl;
    char url[128], err[512];
    int rv;
    snprintf(url, sizeof url, "%s://127.0.0.1:%d", tls ? "tls+tcp" : "tcp", s->port);
    assert_int_equal(nng_req0_open(&req), 0);
    nng_socket_set_ms(req, NNG_OPT_RECVTIMEO, 3000);
    assert_int_equal(nng_dialer_create(&dl, req, url), 0);
    if (tls) {
        nng_tls_config *cfg;
        if (d != NULL) {
            proto_tls_files_t f = {path(d, "gateway.crt"), path(d, "gateway.key"),
                                   path(ca_dir, "ca.crt")};
            if (proto_tls_config(&cfg, 0, &f, sname, err, sizeof err) != 0)
                fail_msg("%s", err);
        } else { /* a client that trusts the CA but presents nothing */
            assert_int_equal(nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT), 0);
            assert_int_equal(nng_tls_config_ca_file(cfg, path(ca_dir, "ca.crt")), 0);
            assert_int_equal(nng_tls_config_server_name(cfg, sname), 0);
        }
        assert_int_equal(nng_dialer_set_ptr(dl, NNG_OPT_TLS_CONFIG, cfg), 0);
        nng_tls_config_free(cfg);
    }
    rv = nng_dialer_start(dl, 0);
    if (rv == 0) {
        char *buf = NULL;
        size_t len;
        assert_int_equal(nng_send(req, "ping", 5, 0), 0);
        int r = nng_recv(s->rep, &buf, &len, NNG_FLAG_ALLOC);
        if (r == 0) {
            assert_string_equal(buf, "ping");
            assert_int_equal(nng_send(s->rep, buf, len, NNG_FLAG_ALLOC), 0);
            assert_int_equal(nng_recv(req, &buf, &len, NNG_FLAG_ALLOC), 0);
            assert_string_equal(buf, "ping");
            nng_free(buf, len);
        } else {
            rv = r; /* connected, but no frame can cross */
        }
    }
    nng_close(req);
    return rv;
}

static void test_good_pair(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, dir, "be");
    assert_int_equal(dial(&s, 1, dir, dir, "127.0.0.1"), 0);
    /* the name dialled must be one of the certificate's names */
    int rv = dial(&s, 1, dir, dir, "localhost");
    assert_int_not_equal(rv, 0);
    assert_true(proto_tls_refused(rv));
    nng_close(s.rep);
}

static void test_backend_from_other_ca(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, other, "be");
    int rv = dial(&s, 1, dir, dir, "127.0.0.1");
    print_message("other CA: %s\n", proto_tls_explain(rv, 1));
    assert_int_not_equal(rv, 0);
    assert_true(proto_tls_refused(rv));
    nng_close(s.rep);
}

static void test_gateway_from_other_ca(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, dir, "be");
    /* the gateway trusts the backend's CA but its own certificate is from another CA */
    int rv = dial(&s, 1, other, dir, "127.0.0.1");
    print_message("gateway from other CA: %s\n", proto_tls_explain(rv, 1));
    assert_int_not_equal(rv, 0);
    assert_true(proto_tls_refused(rv));
    nng_close(s.rep);
}

static void test_expired_backend(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, dir, "old");
    int rv = dial(&s, 1, dir, dir, "127.0.0.1");
    print_message("expired: %s\n", proto_tls_explain(rv, 1));
    assert_int_not_equal(rv, 0);
    assert_true(proto_tls_refused(rv));
    nng_close(s.rep);
}

static void test_backend_without_the_name(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, dir, "noname");
    int rv = dial(&s, 1, dir, dir, "127.0.0.1");
    assert_int_not_equal(rv, 0);
    assert_true(proto_tls_refused(rv));
    nng_close(s.rep);
}

static void test_gateway_without_certificate(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, dir, "be");
    int rv = dial(&s, 1, NULL, dir, "127.0.0.1");
    print_message("no client certificate: %s\n", proto_tls_explain(rv, 1));
    assert_int_not_equal(rv, 0);
    assert_true(proto_tls_refused(rv));
    nng_close(s.rep);
}

static void test_plain_peer_to_tls(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, dir, "be");
    int rv = dial(&s, 0, NULL, NULL, NULL);
    print_message("plain tcp to tls: %s\n", proto_tls_explain(rv, 0));
    assert_int_not_equal(rv, 0);
    nng_close(s.rep);
}

static void test_tls_to_plain_peer(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, NULL, NULL);
    int rv = dial(&s, 1, dir, dir, "127.0.0.1");
    print_message("tls to plain tcp: %s\n", proto_tls_explain(rv, 1));
    assert_int_not_equal(rv, 0);
    assert_true(proto_tls_refused(rv));
    nng_close(s.rep);
}

static void test_config_errors(void **state)
{
    (void)state;
    nng_tls_config *cfg = (nng_tls_config *)1;
    char err[512], crt[512], key[512], ca[512];
    snprintf(crt, sizeof crt, "%s", path(dir, "be.crt"));
    snprintf(key, sizeof key, "%s", path(dir, "be.key"));
    snprintf(ca, sizeof ca, "%s", path(dir, "ca.crt"));
    proto_tls_files_t f = {crt, key, ca};

    /* a key that is not the certificate's */
    f.key = path(dir, "old.key");
    assert_int_equal(proto_tls_config(&cfg, 1, &f, NULL, err, sizeof err), PROTO_EINVAL);
    assert_null(cfg);
    assert_non_null(strstr(err, "old.key"));
    /* a missing file is named */
    f.key = path(dir, "nope.key");
    assert_int_equal(proto_tls_config(&cfg, 1, &f, NULL, err, sizeof err), PROTO_EINVAL);
    assert_non_null(strstr(err, "nope.key"));
    /* not PEM */
    f.key = key;
    f.ca = path(dir, "index.txt");
    assert_int_equal(proto_tls_config(&cfg, 1, &f, NULL, err, sizeof err), PROTO_EINVAL);
    assert_non_null(strstr(err, "index.txt"));
    /* a client must know whom it expects */
    f.ca = ca;
    assert_int_equal(proto_tls_config(&cfg, 0, &f, NULL, err, sizeof err), PROTO_EINVAL);
    /* no files at all */
    proto_tls_files_t none = {0};
    assert_int_equal(proto_tls_config(&cfg, 1, &none, NULL, err, sizeof err), PROTO_EINVAL);
    assert_int_equal(proto_tls_config(&cfg, 1, &f, NULL, err, sizeof err), 0);
    assert_non_null(cfg);
    nng_tls_config_free(cfg);
}

static void test_cert_info(void **state)
{
    (void)state;
    proto_tls_cert_info_t info;
    char err[512];
    assert_int_equal(proto_tls_cert_info(path(dir, "be.crt"), &info, err, sizeof err), 0);
    assert_string_equal(info.cn, "be");
    assert_false(info.expired);
    assert_false(info.not_yet_valid);
    assert_int_equal(proto_tls_cert_info(path(dir, "old.crt"), &info, err, sizeof err), 0);
    assert_string_equal(info.cn, "old");
    assert_true(info.expired);
    assert_string_equal(info.not_after, "2020-02-01T00:00:00Z");
    assert_int_equal(proto_tls_cert_info(path(dir, "index.txt"), &info, err, sizeof err),
                     PROTO_EINVAL);
    assert_non_null(strstr(err, "index.txt"));
}

static void test_refused_classification(void **state)
{
    (void)state;
    assert_true(proto_tls_refused(NNG_ECRYPTO));
    assert_true(proto_tls_refused(NNG_EPEERAUTH));
    assert_false(proto_tls_refused(NNG_ECONNREFUSED));
    assert_false(proto_tls_refused(NNG_ETIMEDOUT));
    assert_false(proto_tls_refused(0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_pair),
        cmocka_unit_test(test_backend_from_other_ca),
        cmocka_unit_test(test_gateway_from_other_ca),
        cmocka_unit_test(test_expired_backend),
        cmocka_unit_test(test_backend_without_the_name),
        cmocka_unit_test(test_gateway_without_certificate),
        cmocka_unit_test(test_plain_peer_to_tls),
        cmocka_unit_test(test_tls_to_plain_peer),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_cert_info),
        cmocka_unit_test(test_refused_classification),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
