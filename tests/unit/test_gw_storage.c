/* storage.c with a fake store (an ops table like the real kinds, calling back on the next
 * loop turn): keys and the "stored" member, the spool when the store fails, the drop order
 * when the spool is full (inputs first, answers last), the drain once the store is back, and
 * a destroy/create cycle that keeps what was still in memory. Also the pure parts of
 * fetch.c (the address policy) and store.c (the key rule). Tests count callbacks and
 * objects, never time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "err.h"
#include "fetch.h"
#include "storage.h"

/* ---- the fake store ---- */

#define FAKE_MAX 256

typedef struct {
    gw_store_t super;
    uv_loop_t *loop;
    uv_timer_t tick; /* completes pending puts on the next loop turn */
    int fail;        /* 1: every put fails with PROTO_ESTORE */
    struct {
        gw_store_done_cb cb;
        void *arg;
        int err;
    } pending[FAKE_MAX];
    int npending;
    char keys[FAKE_MAX][200]; /* accepted, in order */
    size_t lens[FAKE_MAX];
    int nkeys, attempts;
} fake_t;

static fake_t F;

static void on_tick(uv_timer_t *t)
{
    (void)t;
    int n = F.npending;
    F.npending = 0;
    for (int i = 0; i < n; i++)
        F.pending[i].cb(F.pending[i].arg, F.pending[i].err,
                        F.pending[i].err ? "fake failure" : NULL);
}

static int fake_put(gw_store_t *s, const char *key, const uint8_t *data, size_t len,
                    const char *ctype, gw_store_done_cb cb, void *arg)
{
    (void)s, (void)data, (void)ctype;
    assert_true(F.npending < FAKE_MAX);
    F.attempts++;
    int err = F.fail ? PROTO_ESTORE : 0;
    if (!err) {
        assert_true(F.nkeys < FAKE_MAX);
        snprintf(F.keys[F.nkeys], sizeof F.keys[0], "%s", key);
        F.lens[F.nkeys++] = len;
    }
    F.pending[F.npending].cb = cb;
    F.pending[F.npending].arg = arg;
    F.pending[F.npending].err = err;
    F.npending++;
    uv_timer_start(&F.tick, on_tick, 0, 0);
    return 0;
}

static void fake_destroy(gw_store_t *s)
{
    (void)s;
    int n = F.npending;
    F.npending = 0;
    for (int i = 0; i < n; i++)
        F.pending[i].cb(F.pending[i].arg, UV_ECANCELED, "cancelled");
}

static const gw_store_ops_t fake_ops = {
    .kind = "fake",
    .destroy = fake_destroy,
    .put = fake_put,
};

/* ---- helpers ---- */

static uv_loop_t loop;
static gw_config_t cfg;
static char spool[64];
static uint8_t frame[1000];

static void setup_cfg(size_t spool_max)
{
    char err[256];
    gw_config_defaults(&cfg);
    assert_int_equal(gw_config_set(&cfg, "models", "app", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&cfg, "model.app.cfg", "/x", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&cfg, "model.app.weights", "/x", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&cfg, "model.app.names", "/x", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&cfg, err, sizeof err), 0);
    strcpy(spool, "/tmp/fgspoolXXXXXX");
    assert_non_null(mkdtemp(spool));
    snprintf(cfg.spool_dir, sizeof cfg.spool_dir, "%s", spool);
    cfg.spool_max_bytes = spool_max;
    cfg.store_retry_initial_ms = 1;
    cfg.store_retry_max_ms = 2;
    memcpy(frame, "\xff\xd8\xff", 3);
}

static gw_storage_t *start(void)
{
    gw_storage_t *st = NULL;
    char err[256];
    F.super.ops = &fake_ops;
    assert_int_equal(
        gw__storage_create_with(&st, &loop, &cfg, &F.super, "fake://", spool, err, sizeof err), 0);
    return st;
}

/* One finished job of model "app" for camera `cam`, kept; returns its "stored" keys. */
static void keep(gw_storage_t *st, const char *cam, char *input, char *result)
{
    gw_job_t job;
    gw_job_init(&job);
    job.image = frame;
    job.image_len = sizeof frame;
    snprintf(job.opts.camera, sizeof job.opts.camera, "%s", cam);
    snprintf(job.model_name, sizeof job.model_name, "app");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "camera", cam);
    gw_storage_keep(st, &job, o);
    cJSON *s = cJSON_GetObjectItem(o, "stored");
    assert_non_null(s);
    snprintf(input, 200, "%s", cJSON_GetObjectItem(s, "input")->valuestring);
    snprintf(result, 200, "%s", cJSON_GetObjectItem(s, "result")->valuestring);
    cJSON_Delete(o);
}

/* Runs the loop until cond() holds; a bound on turns, not on time. */
static void run_until(int (*cond)(gw_storage_t *), gw_storage_t *st)
{
    for (int i = 0; i < 100000 && !cond(st); i++) {
        uv_run(&loop, UV_RUN_ONCE);
        if (!cond(st))
            usleep(100); /* threadpool work (spool files) finishes off the loop */
    }
    assert_true(cond(st));
}

static int spool_settled(gw_storage_t *st)
{
    gw_storage_stats_t s;
    gw_storage_stats(st, &s);
    return s.spool_objects > 0 && s.inflight == 0 && s.queued == 0 && !s.up &&
           s.spool_objects + (int)(s.dropped[0] + s.dropped[1] + s.dropped[2]) == 10;
}

static int drained(gw_storage_t *st)
{
    gw_storage_stats_t s;
    gw_storage_stats(st, &s);
    return s.up && s.spool_objects == 0 && s.queued == 0 && s.inflight == 0;
}

static int has_key(const char *k)
{
    for (int i = 0; i < F.nkeys; i++)
        if (strcmp(F.keys[i], k) == 0)
            return 1;
    return 0;
}

static void finish(gw_storage_t *st)
{
    gw_storage_destroy(st);
    uv_close((uv_handle_t *)&F.tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", spool);
    assert_int_equal(system(cmd), 0);
}

static void begin(size_t spool_max)
{
    memset(&F, 0, sizeof F);
    uv_loop_init(&loop);
    uv_timer_init(&loop, &F.tick);
    setup_cfg(spool_max);
}

/* ---- tests ---- */

static void test_keys_and_write(void **state)
{
    (void)state;
    begin(1 << 20);
    gw_storage_t *st = start();
    char in[200], res[200], in2[200], res2[200];
    keep(st, "front door/1", in, res);
    keep(st, "front door/1", in2, res2);
    /* unsafe camera characters become '_'; same stem for a frame's objects; seq differs */
    assert_int_equal(strncmp(in, "front_door_1/", 13), 0);
    assert_int_equal(strlen(in), strlen("front_door_1/2026/11/27/16/front_door_1-") + 16 + 7 + 4);
    assert_int_equal(strncmp(in, res, strlen(in) - 4), 0);
    assert_string_equal(res + strlen(res) - 5, ".json");
    assert_string_not_equal(in, in2);
    assert_true(gw_store_key_valid(in) && gw_store_key_valid(res));
    run_until(drained, st);
    assert_int_equal(F.nkeys, 4);
    assert_true(has_key(in) && has_key(res) && has_key(in2) && has_key(res2));
    gw_storage_stats_t s;
    gw_storage_stats(st, &s);
    assert_int_equal(s.written, 4);
    assert_int_equal(s.failed, 0);
    finish(st);
}

/* The store fails: everything spools; the spool holds ~3 inputs' worth, so inputs are dropped
 * oldest first and no answer is; once the store takes writes, the spool drains. */
static void test_spool_drop_order_and_drain(void **state)
{
    (void)state;
    begin(3300);
    gw_storage_t *st = start();
    F.fail = 1;
    char in[5][200], res[5][200];
    for (int i = 0; i < 5; i++)
        keep(st, "hall", in[i], res[i]);
    run_until(spool_settled, st);
    gw_storage_stats_t s;
    gw_storage_stats(st, &s);
    assert_true(s.dropped[GW_STORE_INPUT] >= 2);
    assert_int_equal(s.dropped[GW_STORE_RESULT], 0);
    assert_true(s.spool_bytes <= 3300);
    assert_int_equal(F.nkeys, 0);
    F.fail = 0;
    run_until(drained, st);
    for (int i = 0; i < 5; i++)
        assert_true(has_key(res[i])); /* every answer survived */
    /* the inputs that survived are the newest ones */
    int kept = 0;
    for (int i = 0; i < 5; i++)
        if (has_key(in[i])) {
            kept++;
            for (int j = i + 1; j < 5; j++)
                assert_true(has_key(in[j]));
        }
    assert_int_equal(kept, 5 - (int)s.dropped[GW_STORE_INPUT]);
    /* spooled writes went first: the first accepted keys are the spooled ones */
    gw_storage_stats(st, &s);
    assert_int_equal(s.written, (uint64_t)F.nkeys);
    assert_int_equal(s.spool_objects, 0);
    finish(st);
}

/* A destroy with writes still in memory puts them in the spool; the next storage on the same
 * spool_dir sends them. */
static void test_destroy_keeps_memory(void **state)
{
    (void)state;
    begin(1 << 20);
    gw_storage_t *st = start();
    char in[200], res[200];
    keep(st, "gate", in, res); /* queued and handed to the fake: not yet called back */
    assert_int_equal(F.npending, 2);
    F.nkeys = 0; /* the fake forgets it accepted them: the cancel says they did not land */
    gw_storage_destroy(st);
    uv_run(&loop, UV_RUN_DEFAULT);
    int files = 0;
    char cmd[160];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c '\\.obj$'", spool);
    FILE *p = popen(cmd, "r");
    assert_int_equal(fscanf(p, "%d", &files), 1);
    pclose(p);
    assert_int_equal(files, 2);
    st = start();
    run_until(drained, st);
    assert_true(has_key(in) && has_key(res));
    finish(st);
}

static int allowed(const gw_fetch_policy_t *p, const char *ip, const char *host)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
    }
    return gw_fetch_addr_allowed(p, (struct sockaddr *)&ss, host);
}

static void test_fetch_policy(void **state)
{
    (void)state;
    gw_fetch_policy_t p;
    char err[200];
    assert_int_equal(gw_fetch_policy_parse(&p, "", err, sizeof err), 0);
    const char *refused[] = {"127.0.0.1",
                             "127.1.2.3",
                             "10.1.2.3",
                             "172.16.0.1",
                             "172.31.255.255",
                             "192.168.1.1",
                             "169.254.169.254",
                             "100.64.0.1",
                             "0.0.0.0",
                             "224.0.0.1",
                             "255.255.255.255",
                             "::1",
                             "::",
                             "fe80::1",
                             "fc00::1",
                             "fd12::1",
                             "ff02::1",
                             "::ffff:127.0.0.1",
                             "::ffff:169.254.169.254",
                             "64:ff9b::a00:1"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (allowed(&p, refused[i], refused[i]))
            fail_msg("%s should be refused", refused[i]);
    const char *ok[] = {"8.8.8.8", "172.32.0.1", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!allowed(&p, ok[i], ok[i]))
            fail_msg("%s should be allowed", ok[i]);
    assert_int_equal(
        gw_fetch_policy_parse(&p, "10.0.0.0/8, 127.0.0.1,cam.local ,fd00::/8", err, sizeof err), 0);
    assert_true(allowed(&p, "10.200.0.1", "x"));
    assert_true(allowed(&p, "127.0.0.1", "x"));
    assert_false(allowed(&p, "127.0.0.2", "x"));
    assert_true(allowed(&p, "192.168.7.7", "CAM.local")); /* the name allows any address */
    assert_false(allowed(&p, "192.168.7.7", "cam.local.evil"));
    assert_true(allowed(&p, "fd00::5", "x"));
    assert_false(allowed(&p, "169.254.169.254", "x"));
    assert_int_equal(gw_fetch_policy_parse(&p, "10.0.0.0/40", err, sizeof err), PROTO_ECONFIG);
    assert_int_equal(gw_fetch_policy_parse(&p, "cam.local/8", err, sizeof err), PROTO_ECONFIG);
    assert_int_equal(gw_fetch_policy_parse(&p, "bad_name!", err, sizeof err), PROTO_ECONFIG);
}

static void test_key_rule(void **state)
{
    (void)state;
    assert_true(gw_store_key_valid("cam/2026/11/27/16/cam-1-000001.jpg"));
    assert_true(gw_store_key_valid("a.b-c_d"));
    const char *bad[] = {"",      "/abs", "trail/", "a//b", "../x", "a/../b",
                         "a/./b", ".",    "a b",    "a\\b", "a%2F", "ü"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (gw_store_key_valid(bad[i]))
            fail_msg("'%s' should be invalid", bad[i]);
    char stem[200];
    gw_storage_key_stem("", 1764259200000000ull, stem, sizeof stem);
    assert_string_equal(stem, "unknown/2025/11/27/16/unknown-1764259200000000");
    gw_storage_key_stem("../etc", 1000000ull, stem, sizeof stem);
    assert_string_equal(stem, "_._etc/1970/01/01/00/_._etc-0000000001000000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_rule),
        cmocka_unit_test(test_fetch_policy),
        cmocka_unit_test(test_keys_and_write),
        cmocka_unit_test(test_spool_drop_order_and_drain),
        cmocka_unit_test(test_destroy_keeps_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
