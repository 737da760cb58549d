/* NNG addresses: transport kinds, hosts and ports, and which hosts never leave the machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "addr.h"
#include "err.h"

static void test_kinds(void **state)
{
    (void)state;
    proto_addr_t a;
    assert_int_equal(proto_addr_parse(&a, "ipc:///tmp/fg/b1.sock"), 0);
    assert_int_equal(a.kind, PROTO_ADDR_IPC);
    assert_string_equal(a.host, "");
    assert_int_equal(proto_addr_parse(&a, "tls+tcp://10.0.0.5:7000"), 0);
    assert_int_equal(a.kind, PROTO_ADDR_TLS);
    assert_string_equal(a.host, "10.0.0.5");
    assert_int_equal(a.port, 7000);
    assert_int_equal(proto_addr_parse(&a, "tcp://[::1]:80"), 0);
    assert_int_equal(a.kind, PROTO_ADDR_TCP);
    assert_string_equal(a.host, "::1");
    assert_int_equal(proto_addr_parse(&a, "tcp4://node-3:9"), 0);
    assert_int_equal(a.kind, PROTO_ADDR_TCP);
    assert_string_equal(a.host, "node-3");
    assert_int_equal(proto_addr_parse(&a, "tls+tcp6://[fe80::1]:1"), 0);
    assert_int_equal(a.kind, PROTO_ADDR_TLS);
    assert_int_equal(proto_addr_parse(&a, "inproc://x"), 0);
    assert_int_equal(a.kind, PROTO_ADDR_OTHER);
}

static void test_bad(void **state)
{
    (void)state;
    proto_addr_t a;
    assert_int_equal(proto_addr_parse(&a, NULL), PROTO_EINVAL);
    assert_int_equal(proto_addr_parse(&a, "10.0.0.5:7000"), PROTO_EINVAL);
    assert_int_equal(proto_addr_parse(&a, "tls+tcp://10.0.0.5"), PROTO_EINVAL); /* no port */
    assert_int_equal(proto_addr_parse(&a, "tcp://10.0.0.5:70000"), PROTO_EINVAL);
    assert_int_equal(proto_addr_parse(&a, "tcp://10.0.0.5:7x"), PROTO_EINVAL);
}

static int local(const char *url)
{
    proto_addr_t a;
    assert_int_equal(proto_addr_parse(&a, url), 0);
    return proto_addr_is_local(&a);
}

static void test_local(void **state)
{
    (void)state;
    assert_true(local("ipc:///tmp/x"));
    assert_true(local("tcp://127.0.0.1:1"));
    assert_true(local("tcp://127.9.8.7:1"));
    assert_true(local("tcp://[::1]:1"));
    assert_true(local("tls+tcp://localhost:1"));
    assert_false(local("tcp://10.77.0.2:1"));
    assert_false(local("tcp://0.0.0.0:1")); /* a wildcard listener is reachable */
    assert_false(local("tcp://:7000"));
    assert_false(local("tcp://[::]:1"));
    assert_false(local("tcp://128.0.0.1:1"));
    assert_false(local("tcp://localhost.example.com:1"));
    assert_false(local("inproc://x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_local),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
