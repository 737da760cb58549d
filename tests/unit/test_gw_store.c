/* The dir: store kind (store_dir.c) on a real directory, driven through its ops table and a
 * libuv loop: put, get, list and del; a delete of a missing key is no error, a delete removes
 * the parents it left empty (never the root, never a sibling's), a put recreates them. Counts
 * and bytes, never time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "store.h"

static struct {
    int calls, err;
    uint8_t *data;
    size_t len;
    char keys[16][128];
    int nkeys;
} R;

static void on_done(void *arg, int err, const char *msg)
{
    (void)arg, (void)msg;
    R.calls++;
    R.err = err;
}

static void on_get(void *arg, int err, const char *msg, uint8_t *data, size_t len)
{
    (void)arg, (void)msg;
    R.calls++;
    R.err = err;
    free(R.data);
    R.data = data;
    R.len = len;
}

static void on_list(void *arg, int err, const char *msg, char **keys, int n)
{
    (void)arg, (void)msg;
    R.calls++;
    R.err = err;
    R.nkeys = 0;
    for (int i = 0; i < n && i < 16; i++)
        snprintf(R.keys[R.nkeys++], sizeof R.keys[0], "%s", keys[i]);
}

typedef struct {
    uv_loop_t loop;
    gw_config_t cfg;
    char dir[64];
    gw_store_t *s;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    memset(&R, 0, sizeof R);
    uv_loop_init(&f->loop);
    gw_config_defaults(&f->cfg);
    snprintf(f->dir, sizeof f->dir, "/tmp/fgu-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char url[128], err[256] = "";
    snprintf(url, sizeof url, "dir:%s", f->dir);
    gw_store_env_t env = {&f->loop, &f->cfg, NULL};
    assert_int_equal(gw_store_open(&f->s, &env, url, err, sizeof err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    f->s->ops->destroy(f->s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_loop_close(&f->loop);
    free(R.data);
    R.data = NULL;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Runs one op to its callback. */
static void settle(fixture_t *f, int rv)
{
    assert_int_equal(rv, 0);
    int before = R.calls;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(R.calls, before + 1);
}

static void put(fixture_t *f, const char *key, const char *text)
{
    settle(f, f->s->ops->put(f->s, key, (const uint8_t *)text, strlen(text), NULL, on_done, NULL));
    assert_int_equal(R.err, 0);
}

static int exists(const fixture_t *f, const char *rel)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", f->dir, rel);
    struct stat st;
    return stat(path, &st) == 0;
}

static void test_put_get_list_del(void **state)
{
    fixture_t *f = *state;
    gw_store_t *s = f->s;
    put(f, "jobs/a/meta", "m");
    put(f, "jobs/a/in/0", "zero");
    put(f, "jobs/a/res/0.json", "{}");
    put(f, "cam/x.jpg", "frame");
    settle(f, s->ops->get(s, "jobs/a/in/0", 100, on_get, NULL));
    assert_int_equal(R.err, 0);
    assert_int_equal(R.len, 4);
    assert_memory_equal(R.data, "zero", 4);
    settle(f, s->ops->list(s, "jobs/", "", 10, on_list, NULL));
    assert_int_equal(R.nkeys, 3);
    assert_string_equal(R.keys[0], "jobs/a/in/0");
    assert_string_equal(R.keys[1], "jobs/a/meta");
    assert_string_equal(R.keys[2], "jobs/a/res/0.json");

    settle(f, s->ops->del(s, "jobs/a/in/0", on_done, NULL));
    assert_int_equal(R.err, 0);
    settle(f, s->ops->get(s, "jobs/a/in/0", 100, on_get, NULL));
    assert_int_equal(R.err, PROTO_ENOTFOUND);
    assert_false(exists(f, "jobs/a/in"));  /* left empty: removed */
    assert_true(exists(f, "jobs/a/meta")); /* a sibling stays */
    /* a missing key is no error; an invalid one is refused before any work */
    settle(f, s->ops->del(s, "jobs/a/in/0", on_done, NULL));
    assert_int_equal(R.err, 0);
    assert_int_equal(s->ops->del(s, "../x", on_done, NULL), PROTO_EINVAL);

    settle(f, s->ops->del(s, "jobs/a/meta", on_done, NULL));
    settle(f, s->ops->del(s, "jobs/a/res/0.json", on_done, NULL));
    assert_false(exists(f, "jobs"));     /* the whole emptied tree */
    assert_true(exists(f, "cam/x.jpg")); /* another prefix untouched */
    assert_true(exists(f, ""));          /* never the root */
    /* a put after the tree is gone makes it again */
    put(f, "jobs/b/in/1", "one");
    settle(f, s->ops->list(s, "", "", 10, on_list, NULL));
    assert_int_equal(R.nkeys, 2);
    assert_string_equal(R.keys[0], "cam/x.jpg");
    assert_string_equal(R.keys[1], "jobs/b/in/1");
}

static void test_destroy_cancels_del(void **state)
{
    fixture_t *f = *state;
    put(f, "k/v", "v");
    int before = R.calls;
    assert_int_equal(f->s->ops->del(f->s, "k/v", on_done, NULL), 0);
    f->s->ops->destroy(f->s);
    assert_int_equal(R.calls, before + 1); /* called back before destroy returned */
    assert_int_equal(R.err, UV_ECANCELED);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the worker ends; the store frees itself */
    char url[128], err[256] = "";
    snprintf(url, sizeof url, "dir:%s", f->dir);
    gw_store_env_t env = {&f->loop, &f->cfg, NULL};
    assert_int_equal(gw_store_open(&f->s, &env, url, err, sizeof err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_list_del, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_cancels_del, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
