/* The static provider: addresses handed out in turn and never twice at once, exits reported
 * on the loop after stop() (never inside it), a forgotten address handed out again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "err.h"
#include "provider.h"

static int exits;
static void *last_owner;
static int in_stop;

static void on_exit_cb(void *owner, gw_instance_t *inst, int64_t status, int sig,
                       const char *why)
{
    (void)inst;
    assert_false(in_stop);
    assert_int_equal(status, 0);
    assert_int_equal(sig, 0);
    assert_non_null(strstr(why, "forgotten"));
    last_owner = owner;
    exits++;
}

static gw_provider_t *make(uv_loop_t *loop, gw_model_t *m, const char *list)
{
    gw_config_t c;
    char err[512];
    gw_config_defaults(&c);
    assert_int_equal(gw_config_set(&c, "model.s.backends_static", list, "t", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&c, "models", "s", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0);
    *m = c.models[0];
    gw_provider_t *p = NULL;
    assert_int_equal(gw_provider_static_create(&p, loop, m, on_exit_cb), 0);
    p->on_exit = on_exit_cb;
    return p;
}

static void stop(gw_provider_t *p, gw_instance_t *inst)
{
    in_stop = 1;
    p->ops->stop(p, inst, 0);
    p->ops->stop(p, inst, 1); /* safe to repeat */
    in_stop = 0;
}

static void test_hand_out_and_forget(void **state)
{
    (void)state;
    uv_loop_t loop;
    gw_model_t m;
    char addr[256], id[32];
    gw_instance_t *a, *b, *c, *d;
    int owners[4];
    uv_loop_init(&loop);
    exits = 0;
    gw_provider_t *p = make(&loop, &m, "ipc:///tmp/a, tcp://127.0.0.1:7001 ipc:///tmp/c");
    assert_string_equal(p->ops->kind, "static");

    assert_int_equal(p->ops->start(p, "s-instance1", &owners[0], &a, addr, sizeof addr), 0);
    assert_string_equal(addr, "ipc:///tmp/a");
    p->ops->instance_id(p, a, id, sizeof id);
    assert_string_equal(id, "static-1");
    assert_int_equal(p->ops->start(p, "s-instance2", &owners[1], &b, addr, sizeof addr), 0);
    assert_string_equal(addr, "tcp://127.0.0.1:7001");
    assert_int_equal(p->ops->start(p, "s-instance3", &owners[2], &c, addr, sizeof addr), 0);
    assert_string_equal(addr, "ipc:///tmp/c");
    assert_int_equal(p->ops->live(p), 3);
    /* all held: no fourth */
    assert_int_equal(p->ops->start(p, "s-instance4", &owners[3], &d, addr, sizeof addr),
                     PROTO_ENOBACKEND);

    stop(p, b);
    assert_int_equal(exits, 0);           /* not from inside stop() */
    assert_int_equal(p->ops->live(p), 3); /* until reported */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(exits, 1);
    assert_ptr_equal(last_owner, &owners[1]);
    assert_int_equal(p->ops->live(p), 2);

    /* the forgotten address is the only free one: handed out again (a buffer too small for
     * it is refused, not filled with a truncated address) */
    assert_int_equal(p->ops->start(p, "s-instance4", &owners[3], &d, addr, 8), PROTO_ETOOBIG);
    assert_int_equal(p->ops->start(p, "s-instance4", &owners[3], &d, addr, sizeof addr), 0);
    assert_string_equal(addr, "tcp://127.0.0.1:7001");
    p->ops->instance_id(p, d, id, sizeof id);
    assert_string_equal(id, "static-2");

    stop(p, a);
    stop(p, c);
    stop(p, d);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(exits, 4);
    assert_int_equal(p->ops->live(p), 0);
    p->ops->destroy(p);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* After one is forgotten the search goes on from the next address, so a dead address does
 * not come back before the others had their turn. */
static void test_round_robin(void **state)
{
    (void)state;
    uv_loop_t loop;
    gw_model_t m;
    char addr[256];
    gw_instance_t *a, *b;
    int owner;
    uv_loop_init(&loop);
    exits = 0;
    gw_provider_t *p = make(&loop, &m, "ipc:///tmp/a ipc:///tmp/b ipc:///tmp/c");
    assert_int_equal(p->ops->start(p, "x", &owner, &a, addr, sizeof addr), 0);
    assert_string_equal(addr, "ipc:///tmp/a");
    stop(p, a);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(p->ops->start(p, "x", &owner, &b, addr, sizeof addr), 0);
    assert_string_equal(addr, "ipc:///tmp/b");
    stop(p, b);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(exits, 2);
    p->ops->destroy(p);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Registered: addresses come and go; one removed while held stays with its instance (not
 * handed out again) until forgotten; a re-join is recognised. */
static void test_registered(void **state)
{
    (void)state;
    uv_loop_t loop;
    char addr[256], id[64];
    gw_instance_t *a, *b;
    int owner, count;
    gw_provider_t *p = NULL;
    uv_loop_init(&loop);
    exits = 0;
    assert_int_equal(gw_provider_registered_create(&p, &loop, on_exit_cb), 0);
    assert_string_equal(p->ops->kind, "registered");
    assert_int_equal(p->ops->start(p, "x", &owner, &a, addr, sizeof addr), PROTO_ENOBACKEND);
    assert_int_equal(gw_provider_registered_add(p, "node-a", "tls+tcp://10.0.0.5:7000", &count),
                     0);
    assert_int_equal(count, 1);
    assert_int_equal(gw_provider_registered_add(p, "node-a", "tls+tcp://10.0.0.5:7000", &count),
                     1);
    assert_int_equal(gw_provider_registered_add(p, "node-b", "tls+tcp://10.0.0.6:7000", &count),
                     0);
    assert_int_equal(count, 2);
    assert_int_equal(p->ops->start(p, "x", &owner, &a, addr, sizeof addr), 0);
    assert_string_equal(addr, "tls+tcp://10.0.0.5:7000");
    p->ops->instance_id(p, a, id, sizeof id);
    assert_string_equal(id, "node-a");
    /* node-a leaves while held: counted out now, not handed out, freed once forgotten */
    assert_int_equal(gw_provider_registered_remove(p, "tls+tcp://10.0.0.5:7000", &count), 0);
    assert_int_equal(count, 1);
    assert_int_equal(gw_provider_registered_remove(p, "tls+tcp://10.0.0.5:7000", &count),
                     PROTO_EINVAL);
    assert_int_equal(p->ops->start(p, "y", &owner, &b, addr, sizeof addr), 0);
    assert_string_equal(addr, "tls+tcp://10.0.0.6:7000");
    gw_instance_t *c;
    assert_int_equal(p->ops->start(p, "z", &owner, &c, addr, sizeof addr), PROTO_ENOBACKEND);
    stop(p, a);
    stop(p, b);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(exits, 2);
    /* node-b was not removed: handed out again; node-a is gone */
    assert_int_equal(p->ops->start(p, "y", &owner, &b, addr, sizeof addr), 0);
    assert_string_equal(addr, "tls+tcp://10.0.0.6:7000");
    assert_int_equal(p->ops->start(p, "z", &owner, &c, addr, sizeof addr), PROTO_ENOBACKEND);
    stop(p, b);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(p->ops->live(p), 0);
    p->ops->destroy(p);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_out_and_forget),
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_registered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
