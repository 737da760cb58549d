/* Configuration: the documented file equals the built-in defaults, errors name the key and
 * line, environment variables and --set override, printing round-trips. */
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

#include "config.h"
#include "err.h"

#define FG_SOURCE_CONFIG FG_SOURCE_DIR "/config/framegate.conf"

static char *write_tmp(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/fgcfgXXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_documented_file_is_the_defaults(void **state)
{
    (void)state;
    gw_config_t def, file;
    char err[512];
    gw_config_defaults(&def);
    gw_config_defaults(&file);
    /* Start the file's load from zeroed values where the file sets them, so a key that the
     * file forgets to document would show up as a difference. */
    int rv = gw_config_load_file(&file, FG_SOURCE_CONFIG, err, sizeof err);
    if (rv != 0)
        fail_msg("%s", err);
    assert_memory_equal(&def, &file, sizeof def);
    assert_int_equal(gw_config_validate(&def, err, sizeof err), 0);
}

static void test_values_and_units(void **state)
{
    (void)state;
    gw_config_t c;
    char err[512];
    gw_config_defaults(&c);
    char *path = write_tmp("# comment\n\nmax_body_bytes = 2M\ndeadline_ms = 1.5s # trailing\n"
                           "listen = 127.0.0.1:9000\nbackend_args = \"a # b\"\n"
                           "log_level = debug\nbackends = 3\n[model face]\nthreshold=0.75\n");
    assert_int_equal(gw_config_load_file(&c, path, err, sizeof err), 0);
    unlink(path);
    assert_int_equal(c.max_body_bytes, 2u << 20);
    assert_int_equal(c.deadline_ms, 1500);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 9000);
    assert_string_equal(c.backend_args, "a # b");
    assert_int_equal(c.log_level, 3);
    assert_int_equal(c.min_backends, 3);
    assert_int_equal(c.max_backends, 3);
    assert_true(c.models[0].threshold == 0.75);
    assert_int_equal(gw_config_set(&c, "listen", "[::1]:8081", "--set", err, sizeof err), 0);
    assert_string_equal(c.listen_host, "::1");
    assert_int_equal(c.listen_port, 8081);
}

static void test_errors_name_key_and_line(void **state)
{
    (void)state;
    gw_config_t c;
    char err[512];
    gw_config_defaults(&c);
    char *path = write_tmp("queue_size = 10\n\nqueue_sise = 10\n");
    assert_int_equal(gw_config_load_file(&c, path, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, ":3:"));
    assert_non_null(strstr(err, "queue_sise"));
    unlink(path);
    path = write_tmp("[model face]\nthreshold = 1.5\n");
    assert_int_equal(gw_config_load_file(&c, path, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, ":2:"));
    assert_non_null(strstr(err, "model.face.threshold"));
    unlink(path);
    path = write_tmp("no equals sign here\n");
    assert_int_equal(gw_config_load_file(&c, path, err, sizeof err), PROTO_ECONFIG);
    unlink(path);
    const char *bad[][2] = {{"listen", "nohost"},      {"listen", "h:70000"},
                            {"max_body_bytes", "12X"}, {"retries", "1.5"},
                            {"log_level", "loud"},     {"deadline_ms", "-1"},
                            {"max_backends", "0"},     {"min_backends", "abc"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(gw_config_set(&c, bad[i][0], bad[i][1], "--set", err, sizeof err),
                         PROTO_ECONFIG);
        assert_non_null(strstr(err, bad[i][0]));
    }
    assert_int_equal(gw_config_load_file(&c, "/nonexistent/x.conf", err, sizeof err),
                     PROTO_ECONFIG);
    gw_config_defaults(&c);
    c.min_backends = 5;
    c.max_backends = 2;
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
}

static void test_environment(void **state)
{
    (void)state;
    gw_config_t c;
    char err[512];
    gw_config_defaults(&c);
    char *env[] = {"PATH=/bin", "FRAMEGATE_MAX_BACKENDS=7", "FRAMEGATE_CACHE=/x",
                   "FRAMEGATE_CONFIG=/y", NULL};
    assert_int_equal(gw_config_load_env(&c, env, err, sizeof err), 0);
    assert_int_equal(c.max_backends, 7);
    char *typo[] = {"FRAMEGATE_MAX_BACKEND=7", NULL};
    assert_int_equal(gw_config_load_env(&c, typo, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "FRAMEGATE_MAX_BACKEND"));
}

static void test_print_round_trip(void **state)
{
    (void)state;
    gw_config_t a, b;
    char err[512], path[] = "/tmp/fgcfgpXXXXXX";
    gw_config_defaults(&a);
    assert_int_equal(gw_config_set(&a, "backend_args", "--simulate-ms 5", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&a, "model.face.nms", "0.3", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&a, "model.cls.cfg", "/c", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&a, "model.cls.weights", "/w", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&a, "model.cls.names", "/n", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&a, "model.cls.max_backends", "5", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&a, "camera.gate.2.weight", "4", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&a, err, sizeof err), 0);
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    gw_config_print(&a, f);
    fclose(f);
    memset(&b, 0, sizeof b);
    gw_config_defaults(&b);
    b.max_connections = 1;
    b.models[0].nms = 0;
    int rv = gw_config_load_file(&b, path, err, sizeof err);
    unlink(path);
    if (rv != 0)
        fail_msg("%s", err);
    /* Inherited keys came back as comments: still inherited once validated. */
    assert_int_equal(gw_config_validate(&b, err, sizeof err), 0);
    assert_memory_equal(&a, &b, sizeof a);
}

/* [camera NAME] sections and camera.NAME.KEY: a camera's own weight and max age. */
static void test_cameras(void **state)
{
    (void)state;
    gw_config_t c;
    char err[512];
    gw_config_defaults(&c);
    const char *path = write_tmp("camera_weight = 2\n"
                                 "[camera door]\nweight = 3\nmax_age_ms = 1.5s\n"
                                 "[camera lot-2.east]\nmax_age_ms = 0\n");
    int rv = gw_config_load_file(&c, path, err, sizeof err);
    unlink(path);
    if (rv != 0)
        fail_msg("%s", err);
    assert_int_equal(c.ncameras, 2);
    const gw_camera_cfg_t *d = gw_config_camera(&c, "door");
    assert_non_null(d);
    assert_int_equal(d->weight, 3);
    assert_int_equal(d->max_age_ms, 1500);
    const gw_camera_cfg_t *e = gw_config_camera(&c, "lot-2.east");
    assert_non_null(e);
    assert_int_equal(e->weight, 0); /* unset: camera_weight applies */
    assert_int_equal(e->max_age_ms, 0);
    assert_null(gw_config_camera(&c, "yard"));
    /* flat keys, a dotted name */
    assert_int_equal(gw_config_set(&c, "camera.lot-2.east.weight", "7", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_camera(&c, "lot-2.east")->weight, 7);
    /* errors name the key */
    assert_int_equal(gw_config_set(&c, "camera.door.speed", "5", "--set", err, sizeof err),
                     PROTO_ECONFIG);
    assert_non_null(strstr(err, "camera.door.speed"));
    assert_int_equal(gw_config_set(&c, "camera.door.weight", "0", "--set", err, sizeof err),
                     PROTO_ECONFIG);
    assert_int_equal(gw_config_set(&c, "camera.a b.weight", "1", "--set", err, sizeof err),
                     PROTO_ECONFIG);
    assert_int_equal(gw_config_camera(&c, "door")->weight, 3); /* a bad value changes nothing */
    path = write_tmp("[camera bad]\nweight = 2000\n");
    assert_int_equal(gw_config_load_file(&c, path, err, sizeof err), PROTO_ECONFIG);
    unlink(path);
    assert_non_null(strstr(err, ":2: key 'camera.bad.weight'"));
}

/* Pull cameras: a [camera NAME] with a url, checked key by key and against the models. */
static void test_pull_cameras(void **state)
{
    (void)state;
    gw_config_t c;
    char err[512];
    gw_config_defaults(&c);
    const char *path = write_tmp("[model app]\nweights = /w\ncfg = /c\nnames = /n\n"
                                 "[camera gate]\nurl = http://10.0.0.5/video.mjpg\n"
                                 "[camera yard]\nurl = https://cam.example/snap.jpg\n"
                                 "mode = snapshot\nfps = 2.5\nmodel = app\nthreshold = 0.4\n"
                                 "max_frame_bytes = 512k\n");
    int rv = gw_config_load_file(&c, path, err, sizeof err);
    unlink(path);
    if (rv != 0)
        fail_msg("%s", err);
    const gw_camera_cfg_t *g = gw_config_camera(&c, "gate"), *y = gw_config_camera(&c, "yard");
    assert_string_equal(g->url, "http://10.0.0.5/video.mjpg");
    assert_int_equal(g->mode, GW_PULL_MJPEG);
    assert_true(g->fps == 0);
    assert_int_equal(g->max_frame_bytes, 4u << 20); /* the default */
    assert_int_equal(y->mode, GW_PULL_SNAPSHOT);
    assert_true(y->fps == 2.5);
    assert_string_equal(y->model, "app");
    assert_true(y->threshold > 0.39f && y->threshold < 0.41f);
    assert_int_equal(y->max_frame_bytes, 512 * 1024);
    if (gw_config_validate(&c, err, sizeof err) != 0)
        fail_msg("%s", err);
    /* printed, then loaded again: the same cameras */
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    gw_config_print(&c, out);
    fclose(out);
    assert_non_null(strstr(text, "[camera yard]\nurl = https://cam.example/snap.jpg\nmode = "
                                 "snapshot\nfps = 2.5\nmodel = app\n"));
    gw_config_t d;
    gw_config_defaults(&d);
    path = write_tmp(text);
    free(text);
    rv = gw_config_load_file(&d, path, err, sizeof err);
    unlink(path);
    if (rv != 0)
        fail_msg("%s", err);
    assert_memory_equal(gw_config_camera(&d, "yard"), y, sizeof *y);
    assert_memory_equal(gw_config_camera(&d, "gate"), g, sizeof *g);
    /* bad values name the key and change nothing */
    const char *bad[][2] = {{"camera.gate.url", "ftp://x/y"},   {"camera.gate.url", "/dev/video0"},
                            {"camera.gate.mode", "rtsp"},        {"camera.gate.fps", "-1"},
                            {"camera.gate.fps", "fast"},         {"camera.gate.threshold", "2"},
                            {"camera.gate.max_frame_bytes", "1"}, {"camera.gate.max_frame_bytes", "1G"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(gw_config_set(&c, bad[i][0], bad[i][1], "--set", err, sizeof err),
                         PROTO_ECONFIG);
        assert_non_null(strstr(err, bad[i][0]));
    }
    assert_memory_equal(gw_config_camera(&c, "gate"), g, sizeof *g);
    /* a snapshot camera needs a rate; a model must be served; each needs a slot */
    assert_int_equal(gw_config_set(&c, "camera.yard.fps", "0", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "camera.yard.fps"));
    assert_int_equal(gw_config_set(&c, "camera.yard.fps", "1", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&c, "camera.yard.model", "nope", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "camera.yard.model"));
    assert_int_equal(gw_config_set(&c, "camera.yard.model", "app", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&c, "max_cameras", "1", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "max_cameras"));
}

static void test_strict_values(void **state)
{
    (void)state;
    gw_config_t c;
    char err[512];
    gw_config_defaults(&c);
    /* The error text has the documented shape "ORIGIN: key 'k': why". */
    assert_int_equal(gw_config_set(&c, "queue_sise", "1", "f.conf:4", err, sizeof err),
                     PROTO_ECONFIG);
    assert_non_null(strstr(err, "f.conf:4: key 'queue_sise': "));
    assert_int_equal(gw_config_set(&c, "retries", "7x", "--set", err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "--set: key 'retries': "));
    const char *bad[][2] = {
        {"max_body_bytes", "0x10"},
        {"retries", "inf"},
        {"model.face.threshold", "nan"},
        {"max_body_bytes", "1.5"},
        {"deadline_ms", "1.5"},
        {"deadline_ms", "10h"},
        {"listen", ":8080"},
        {"listen", "h:"},
        {"listen", "h:+80"},
        {"listen", "h: 80"},
        {"listen", "[::1]8080"},
        {"listen", "h:123456"},
        {"listen", "a #b:80"},
        {"listen", "a]:b:80"},
        {"listen", "[a]b]:80"},
        {"listen", "a b:80"},
        {"listen", "\"h:80"},
        {"listen", "h\t:80"},
        {"model.face.nms", "-0.1"},
        {"model.face.preprocess", "letterbox"},
        {"model.face.input_size", "-32"},
        {"model.face.top_k", "1.5"},
        {"model.face.max_backends", "0"},
        {"model.face.colour", "red"},
        {"model.bad name.cfg", "x"},
        {"model.-x.cfg", "x"},
        {"model.new.threshold", "2"},
        {"min_backends", "-1"},
        {"max_backends", "257"},
        {"backends", "0"},
        {"target_inflight_per_backend", "0"},
        {"max_starting", "0"},
        {"backend_concurrency", "0"},
        {"model.face.cfg", "a\nb"},
        {"model_cfg", "/x"},
        {"log_level", "INFO"},
        {"max_connections", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (gw_config_set(&c, bad[i][0], bad[i][1], "--set", err, sizeof err) != PROTO_ECONFIG)
            fail_msg("%s = '%s' was accepted", bad[i][0], bad[i][1]);
        assert_non_null(strstr(err, bad[i][0]));
    }
    /* None of the rejected values changed anything. */
    gw_config_t def;
    gw_config_defaults(&def);
    assert_memory_equal(&c, &def, sizeof c);

    const char *good[][2] = {{"max_header_bytes", "1.5K"}, {"idle_timeout_ms", "2m"},
                             {"body_timeout_ms", "0.5s"},  {"stop_grace_ms", "250ms"},
                             {"listen", "localhost:0"},    {"max_body_bytes", "64M"}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (gw_config_set(&c, good[i][0], good[i][1], "--set", err, sizeof err) != 0)
            fail_msg("%s", err);
    assert_int_equal(c.max_header_bytes, 1536);
    assert_int_equal(c.idle_timeout_ms, 120000);
    assert_int_equal(c.body_timeout_ms, 500);
    assert_int_equal(c.stop_grace_ms, 250);
    assert_string_equal(c.listen_host, "localhost");
    assert_int_equal(c.listen_port, 0);
    assert_int_equal(c.max_body_bytes, (size_t)64 << 20);
    assert_int_equal(gw_config_set(&c, "max_body_bytes", "1G", "--set", err, sizeof err),
                     PROTO_ECONFIG);
    assert_non_null(strstr(err, "out of range 1..67108864"));
}

static void test_validate(void **state)
{
    (void)state;
    gw_config_t c;
    char err[512];
    gw_config_defaults(&c);
    assert_int_equal(gw_config_set(&c, "model.face.cfg", "", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "model.face.cfg"));
    gw_config_defaults(&c);
    assert_int_equal(gw_config_set(&c, "backoff_initial_ms", "1m", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    gw_config_defaults(&c);
    /* backends = 0 is rejected, but min 0 (scale to zero) with max >= 1 is valid. */
    assert_int_equal(gw_config_set(&c, "min_backends", "0", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0);
}

/* Remote backends: TLS keys go together, a static model's addresses are checked one by one
 * and size its pool, and the provider follows backends_static unless set. */
static void test_remote_backends(void **state)
{
    (void)state;
    gw_config_t c;
    char err[512];
#define SET(k, v) assert_int_equal(gw_config_set(&c, k, v, "--set", err, sizeof err), 0)
    gw_config_defaults(&c);
    SET("tls_ca", "/etc/fg/ca.crt");
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "tls_cert"));
    SET("tls_cert", "/etc/fg/gateway.crt");
    SET("tls_key", "/etc/fg/gateway.key");
    SET("model.cam.backends_static", "tls+tcp://10.0.0.5:7000, tls+tcp://10.0.0.6:7000 "
                                     "tcp://127.0.0.1:7001,ipc:///run/fg/b.sock");
    SET("models", "cam");
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0);
    const gw_model_t *m = gw_config_model(&c, "cam");
    assert_string_equal(m->provider, "static");
    assert_int_equal(m->nstatic, 4);
    assert_int_equal(m->min_backends, 4);
    assert_int_equal(m->max_backends, 4);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0); /* idempotent */
    assert_int_equal(m->max_backends, 4);
    /* an explicit bound below the list is kept; above it is an error */
    SET("model.cam.min_backends", "1");
    SET("model.cam.max_backends", "2");
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0);
    assert_int_equal(m->min_backends, 1);
    assert_int_equal(m->max_backends, 2);
    SET("model.cam.max_backends", "5");
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "max_backends"));

    static const struct {
        const char *list, *why;
    } bad[] = {
        {"tcp://10.0.0.5:7000", "allow_insecure_backends"},
        {"tls+tcp://10.0.0.5", "not an address"},
        {"10.0.0.5:7000", "not an address"},
        {"inproc://x", "not an address"},
        {"tls+tcp://a:1, tls+tcp://b:1,tls+tcp://a:1", "listed twice"},
        {" , ", "at least one"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gw_config_defaults(&c);
        SET("tls_ca", "x");
        SET("tls_cert", "y");
        SET("tls_key", "z");
        SET("models", "cam");
        SET("model.cam.provider", "static");
        SET("model.cam.backends_static", bad[i].list);
        assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
        if (strstr(err, bad[i].why) == NULL || strstr(err, "model.cam.backends_static") == NULL)
            fail_msg("'%s': %s", bad[i].list, err);
    }
    /* plain tcp to another host, when allowed; tls without the gateway's certificate, not */
    gw_config_defaults(&c);
    SET("models", "cam");
    SET("model.cam.backends_static", "tcp://10.0.0.5:7000");
    SET("allow_insecure_backends", "true");
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0);
    assert_int_equal(c.allow_insecure_backends, 1);
    SET("model.cam.backends_static", "tls+tcp://10.0.0.5:7000");
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "tls_ca"));
    /* provider and list must agree; bad values are named */
    gw_config_defaults(&c);
    SET("model.face.provider", "local");
    SET("model.face.backends_static", "ipc:///tmp/a");
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "provider"));
    assert_int_equal(gw_config_set(&c, "model.face.provider", "nowhere", "--set", err, sizeof err),
                     PROTO_ECONFIG);
    /* ec2 needs the join listener, the certificates and the image */
    assert_int_equal(gw_config_set(&c, "model.face.provider", "ec2", "--set", err, sizeof err), 0);
    SET("model.face.backends_static", "");
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "join_listen"));
    SET("join_listen", "tls+tcp://10.0.0.1:7700");
    SET("tls_ca", "/ca");
    SET("tls_cert", "/c");
    SET("tls_key", "/k");
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "cloud_backend_cert"));
    SET("cloud_backend_cert", "/bc");
    SET("cloud_backend_key", "/bk");
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "ec2_image"));
    SET("ec2_image", "ami-1");
    SET("ec2_instance_type", "t3.micro");
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0);
    assert_int_equal(gw_config_set(&c, "allow_insecure_backends", "maybe", "--set", err,
                                   sizeof err),
                     PROTO_ECONFIG);
    gw_config_defaults(&c);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0);
    assert_string_equal(c.models[0].provider, "local");
#undef SET
}

static void test_weights_default_follows_cache(void **state)
{
    (void)state;
    gw_config_t c;
    char *old = getenv("FRAMEGATE_CACHE") ? strdup(getenv("FRAMEGATE_CACHE")) : NULL;
    setenv("FRAMEGATE_CACHE", "/var/cache/fg", 1);
    gw_config_defaults(&c);
    assert_string_equal(c.models[1].weights, "/var/cache/fg/models/yolov3-tiny.weights");
    assert_string_equal(c.models[0].cfg, "/var/cache/fg/models/face-tiny.cfg");
    unsetenv("FRAMEGATE_CACHE");
    setenv("HOME", "/home/cam", 1);
    gw_config_defaults(&c);
    assert_string_equal(c.models[1].weights,
                        "/home/cam/.cache/framegate/models/yolov3-tiny.weights");
    assert_string_equal(c.models[0].names, "/home/cam/.cache/framegate/models/face.names");
    if (old != NULL) {
        setenv("FRAMEGATE_CACHE", old, 1);
        free(old);
    }
}

/* Every key --print-config shows can be set through its FRAMEGATE_<KEY> variable, model keys
 * through FRAMEGATE_MODEL_<NAME>_<KEY>. */
static void test_every_key_from_env(void **state)
{
    (void)state;
    gw_config_t a, b;
    char err[512], line[2048], section[64] = "", path[] = "/tmp/fgcfgeXXXXXX";
    gw_config_defaults(&a);
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w+");
    gw_config_print(&a, f);
    rewind(f);
    static char vars[256][2200];
    char *env[257];
    int n = 0;
    while (n < 256 && fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#')
            continue; /* inherited pool keys are comments: they stay inherited */
        if (sscanf(line, "[model %63[^]]]", section) == 1)
            continue;
        char *eq = strstr(line, " = ");
        assert_non_null(eq);
        *eq = '\0';
        char *v = eq + 3;
        if (v[0] == '"') { /* env values are not quoted */
            v++;
            v[strlen(v) - 1] = '\0';
        }
        int o = snprintf(vars[n], sizeof vars[n], "FRAMEGATE_");
        if (section[0] != '\0') {
            o += snprintf(vars[n] + o, sizeof vars[n] - (size_t)o, "MODEL_");
            for (char *p = section; *p; p++)
                vars[n][o++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
            vars[n][o++] = '_';
        }
        for (char *p = line; *p; p++)
            vars[n][o++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        snprintf(vars[n] + o, sizeof vars[n] - (size_t)o, "=%s", v);
        env[n] = vars[n];
        n++;
    }
    env[n] = NULL;
    fclose(f);
    unlink(path);
    /* every top-level key but the alias "backends" (123, the secrets among them printed as
     * comments); 13 keys per model and yolov3-tiny's own min_backends (the store_* switches
     * a model inherits are comments) */
    assert_int_equal(n, 123 + 13 + 14);
    /* The models exist, empty: the environment fills them ("YOLOV3_TINY" finds
     * "yolov3-tiny"). */
    memset(&b, 0, sizeof b);
    b.nmodels = 2;
    strcpy(b.models[0].name, "face");
    strcpy(b.models[1].name, "yolov3-tiny");
    if (gw_config_load_env(&b, env, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(gw_config_validate(&a, err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&b, err, sizeof err), 0);
    assert_memory_equal(&a, &b, sizeof a);
}

/* Models: sections and flat keys, what they inherit, --set over the file, `models` and
 * default_model, errors with their line. */
static void test_models(void **state)
{
    (void)state;
    gw_config_t c;
    char err[512];
    gw_config_defaults(&c);
    /* The embedded models. */
    assert_int_equal(c.nmodels, 2);
    assert_string_equal(c.models[0].name, "face");
    assert_int_equal(c.models[0].preprocess, GW_PRE_FACEAPI);
    assert_int_equal(c.models[0].input_size, 416);
    assert_int_equal(c.models[0].decode, GW_DECODE_EXACT);
    assert_string_equal(c.models[1].name, "yolov3-tiny");
    assert_true(c.models[1].threshold == 0.25);

    char *path = write_tmp("max_backends = 6\nbackend_args = --simulate-ms 5\n"
                           "[model face]\nmax_backends = 3\n"
                           "[model cls]   # a classifier\ncfg = /usr/share/darknet/cfg/tiny.cfg\n"
                           "weights = /w\nnames = /usr/share/darknet/data/imagenet.shortnames.list\n"
                           "top_k = 5\ntarget_inflight_per_backend = 2\n");
    assert_int_equal(gw_config_load_file(&c, path, err, sizeof err), 0);
    unlink(path);
    char *env[] = {"FRAMEGATE_MODEL_YOLOV3_TINY_BACKEND_ARGS=--simulate-ms 7",
                   "FRAMEGATE_MODEL_CLS_MAX_BACKENDS=4", "FRAMEGATE_MODEL_YOLOV3_TINY_DECODE=fast",
                   "FRAMEGATE_MODEL_FACE_PRECISION=bf16", NULL};
    assert_int_equal(gw_config_load_env(&c, env, err, sizeof err), 0);
    /* --set after the file: a top-level key reaches the models that did not set it. */
    assert_int_equal(gw_config_set(&c, "min_backends", "2", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&c, "model.face.preprocess", "darknet", "--set", err,
                                   sizeof err), 0);
    assert_int_equal(gw_config_set(&c, "default_model", "cls", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0);
    assert_int_equal(c.nmodels, 3);
    const gw_model_t *face = gw_config_model(&c, "face"), *yolo = gw_config_model(&c, "yolov3-tiny");
    const gw_model_t *cls = gw_config_model(&c, "cls");
    assert_non_null(cls);
    assert_int_equal(face->min_backends, 2);
    assert_int_equal(face->max_backends, 3);
    assert_int_equal(face->preprocess, GW_PRE_DARKNET);
    assert_string_equal(face->backend_args, "--simulate-ms 5");
    assert_int_equal(yolo->min_backends, 0); /* its own */
    assert_int_equal(yolo->max_backends, 6);
    assert_string_equal(yolo->backend_args, "--simulate-ms 7");
    assert_int_equal(yolo->decode, GW_DECODE_FAST);
    assert_int_equal(face->decode, GW_DECODE_EXACT);
    assert_int_equal(face->precision, GW_PRECISION_BF16);
    assert_int_equal(yolo->precision, GW_PRECISION_FP32);
    assert_int_equal(cls->min_backends, 2);
    assert_int_equal(cls->max_backends, 4);
    assert_int_equal(cls->top_k, 5);
    assert_true(cls->target_inflight_per_backend == 2);
    assert_true(cls->threshold == 0.25); /* a new model starts from darknet's defaults */
    assert_string_equal(c.default_model, "cls");

    /* `models` keeps some, in its order; default_model "" is the first of them. */
    gw_config_defaults(&c);
    assert_int_equal(gw_config_set(&c, "models", "yolov3-tiny", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0);
    assert_int_equal(c.nmodels, 1);
    assert_string_equal(c.default_model, "yolov3-tiny");
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0); /* idempotent */
    gw_config_defaults(&c);
    assert_int_equal(gw_config_set(&c, "models", "face, nope", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "'nope'"));
    gw_config_defaults(&c);
    assert_int_equal(gw_config_set(&c, "default_model", "nope", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "default_model"));
    /* A model's min above what it inherits as max. */
    gw_config_defaults(&c);
    assert_int_equal(gw_config_set(&c, "model.face.min_backends", "3", "--set", err, sizeof err),
                     0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "face"));
    assert_non_null(strstr(err, "inherited"));
    /* A new model without its files. */
    gw_config_defaults(&c);
    assert_int_equal(gw_config_set(&c, "model.x.cfg", "/c", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "model.x.weights"));

    /* File errors name the line. */
    const char *bad[][3] = {
        {"[model face]\ncfg = /a\nbogus = 1\n", ":3:", "model.face.bogus"},
        {"listen = 127.0.0.1:1\n[modle face]\n", ":2:", "[model NAME]"},
        {"[model a b]\n", ":1:", "a b"},
        {"[model face\n", ":1:", "[model NAME]"},
        {"[model face]\nmax_connections = 5\n", ":2:", "model.face.max_connections"},
        {"\n[model face]\npreprocess = yolo\n", ":3:", "model.face.preprocess"},
        {"[model face]\ndecode = scaled\n", ":2:", "model.face.decode"},
        {"[model face]\nprecision = int8\n", ":2:", "model.face.precision"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gw_config_defaults(&c);
        path = write_tmp(bad[i][0]);
        assert_int_equal(gw_config_load_file(&c, path, err, sizeof err), PROTO_ECONFIG);
        unlink(path);
        if (strstr(err, bad[i][1]) == NULL || strstr(err, bad[i][2]) == NULL)
            fail_msg("case %zu: %s", i, err);
    }
    char *typo[] = {"FRAMEGATE_MODEL_FACE_MAX_BACKEND=2", NULL};
    gw_config_defaults(&c);
    assert_int_equal(gw_config_load_env(&c, typo, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "FRAMEGATE_MODEL_FACE_MAX_BACKEND"));

    /* More than GW_MODELS_MAX models. */
    gw_config_defaults(&c);
    int rv = 0;
    for (int i = 0; i < GW_MODELS_MAX && rv == 0; i++) {
        char key[64];
        snprintf(key, sizeof key, "model.m%d.cfg", i);
        rv = gw_config_set(&c, key, "/c", "--set", err, sizeof err);
    }
    assert_int_equal(rv, PROTO_ECONFIG);
    assert_non_null(strstr(err, "more than"));
}

/* Hardening item 9: a runtime_dir another local user can write to (or owns) is refused at
 * start-up with the key named; a private one, or one still to be created, is accepted. */
static void test_runtime_dir_must_be_private(void **state)
{
    (void)state;
    char dir[] = "/tmp/fgrundirXXXXXX", file[64], err[512];
    gw_config_t c;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(gw_config_check_runtime_dir(dir, err, sizeof err), 0);
    assert_int_equal(chmod(dir, 0750), 0);
    assert_int_equal(gw_config_check_runtime_dir(dir, err, sizeof err), 0);

    const mode_t planted[] = {0777, 01777, 0770, 0702};
    for (size_t i = 0; i < sizeof planted / sizeof planted[0]; i++) {
        assert_int_equal(chmod(dir, planted[i]), 0);
        err[0] = '\0';
        assert_int_equal(gw_config_check_runtime_dir(dir, err, sizeof err), PROTO_ECONFIG);
        assert_non_null(strstr(err, "runtime_dir"));
        assert_non_null(strstr(err, "writable by group or others"));
    }
    /* The same through validate: a start-up error, before any backend is started. */
    gw_config_defaults(&c);
    snprintf(c.runtime_dir, sizeof c.runtime_dir, "%s", dir);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "key 'runtime_dir'"));
    assert_int_equal(chmod(dir, 0700), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0);

    /* Owned by someone else: as root, give it to nobody; otherwise "/" is root's. */
    const char *foreign = "/";
    if (geteuid() == 0) {
        assert_int_equal(chown(dir, 65534, 65534), 0);
        foreign = dir;
    }
    assert_int_equal(gw_config_check_runtime_dir(foreign, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "runtime_dir"));
    assert_non_null(strstr(err, "owned by uid"));

    snprintf(file, sizeof file, "%s/file", dir);
    if (geteuid() == 0)
        assert_int_equal(chown(dir, 0, 0), 0);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(gw_config_check_runtime_dir(file, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "not a directory"));
    unlink(file);
    /* Missing: accepted here; the provider creates it 0700 and checks it again. */
    snprintf(file, sizeof file, "%s/new", dir);
    assert_int_equal(gw_config_check_runtime_dir(file, err, sizeof err), 0);
    assert_int_equal(rmdir(dir), 0);
}

static void test_print_quotes(void **state)
{
    (void)state;
    gw_config_t a, b;
    char err[512], path[] = "/tmp/fgcfgqXXXXXX";
    gw_config_defaults(&a);
    assert_int_equal(gw_config_set(&a, "backend_args", "--label a\"b #c", "t", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&a, "model.face.cfg", "x#y", "t", err, sizeof err), 0);
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    gw_config_print(&a, f);
    fclose(f);
    gw_config_defaults(&b);
    int rv = gw_config_load_file(&b, path, err, sizeof err);
    unlink(path);
    if (rv != 0)
        fail_msg("%s", err);
    /* The unrepresentable value became a comment; everything else came back. */
    assert_string_equal(b.backend_args, "");
    assert_string_equal(b.models[0].cfg, "x#y");
}

/* Every listen address that is accepted prints back as the same address (fuzz_config found
 * hosts with " #" or "]:" that printed as text that no longer loaded). */
static void test_listen_prints_back(void **state)
{
    (void)state;
    const char *ok[][3] = {{"127.0.0.1:9", "127.0.0.1", "9"},
                           {"[::1]:0", "::1", "0"},
                           {"::1:80", "::1", "80"},
                           {"[fe80::1%eth0]:8080", "fe80::1%eth0", "8080"},
                           {"gw-1.example_host:65535", "gw-1.example_host", "65535"}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        gw_config_t a, b;
        char err[512], path[] = "/tmp/fgcfglXXXXXX";
        gw_config_defaults(&a);
        if (gw_config_set(&a, "listen", ok[i][0], "--set", err, sizeof err) != 0)
            fail_msg("%s", err);
        assert_string_equal(a.listen_host, ok[i][1]);
        assert_int_equal(a.listen_port, atoi(ok[i][2]));
        int fd = mkstemp(path);
        FILE *f = fdopen(fd, "w");
        gw_config_print(&a, f);
        fclose(f);
        gw_config_defaults(&b);
        int rv = gw_config_load_file(&b, path, err, sizeof err);
        unlink(path);
        if (rv != 0)
            fail_msg("%s: %s", ok[i][0], err);
        assert_string_equal(b.listen_host, ok[i][1]);
        assert_int_equal(b.listen_port, atoi(ok[i][2]));
    }
}

/* Storage and fetch keys: on/off switches, a secret never printed, the store URL and the
 * allow-list checked by validate, per-model switches inherited unless set. */
static void test_storage_keys(void **state)
{
    (void)state;
    gw_config_t c;
    char err[512];
    gw_config_defaults(&c);
    assert_string_equal(c.store, "none");
    assert_int_equal(gw_config_set(&c, "store_annotated", "on", "--set", err, sizeof err), 0);
    assert_int_equal(c.store_annotated, 1);
    assert_int_equal(gw_config_set(&c, "store_inputs", "false", "--set", err, sizeof err), 0);
    assert_int_equal(c.store_inputs, 0);
    assert_int_equal(gw_config_set(&c, "store_inputs", "maybe", "--set", err, sizeof err),
                     PROTO_ECONFIG);
    assert_non_null(strstr(err, "store_inputs"));
    assert_int_equal(gw_config_set(&c, "spool_max_bytes", "2G", "--set", err, sizeof err), 0);
    assert_true(c.spool_max_bytes == (size_t)2 << 30);
    assert_int_equal(gw_config_set(&c, "s3_secret_key", "hunter2", "--set", err, sizeof err), 0);
    assert_int_equal(
        gw_config_set(&c, "model.yolov3-tiny.store_inputs", "on", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0);
    const gw_model_t *y = gw_config_model(&c, "yolov3-tiny"), *f = gw_config_model(&c, "face");
    assert_int_equal(y->store_inputs, 1); /* its own */
    assert_int_equal(f->store_inputs, 0); /* inherited */
    assert_int_equal(f->store_annotated, 1);
    char buf[16384];
    FILE *m = fmemopen(buf, sizeof buf, "w");
    gw_config_print(&c, m);
    fclose(m);
    assert_null(strstr(buf, "hunter2"));
    assert_non_null(strstr(buf, "# s3_secret_key = (set, not printed)"));
    assert_non_null(strstr(buf, "store_annotated = on"));

    gw_config_defaults(&c);
    assert_int_equal(gw_config_set(&c, "store", "dir:/srv/fg", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_set(&c, "model.face.store", "s3://faces/x", "--set", err, sizeof err),
                     0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0);
    assert_string_equal(gw_config_model(&c, "face")->store, "s3://faces/x");
    assert_string_equal(gw_config_model(&c, "yolov3-tiny")->store, "dir:/srv/fg"); /* inherited */
    assert_int_equal(gw_config_set(&c, "model.face.store", "nfs:/x", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "model.face.store"));
    gw_config_defaults(&c);
    assert_int_equal(gw_config_set(&c, "store", "ftp://x", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "'store'"));
    gw_config_defaults(&c);
    assert_int_equal(gw_config_set(&c, "fetch_allow", "10.0.0.0/8, 127.0.0.1, cam.local",
                                   "--set", err, sizeof err),
                     0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), 0);
    assert_int_equal(gw_config_set(&c, "fetch_allow", "10.0.0.0/33", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "fetch_allow"));
    gw_config_defaults(&c);
    assert_int_equal(gw_config_set(&c, "spool_dir", "relative/dir", "--set", err, sizeof err), 0);
    assert_int_equal(gw_config_validate(&c, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, "spool_dir"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_documented_file_is_the_defaults),
        cmocka_unit_test(test_values_and_units),
        cmocka_unit_test(test_errors_name_key_and_line),
        cmocka_unit_test(test_environment),
        cmocka_unit_test(test_print_round_trip),
        cmocka_unit_test(test_strict_values),
        cmocka_unit_test(test_cameras),
        cmocka_unit_test(test_pull_cameras),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_remote_backends),
        cmocka_unit_test(test_weights_default_follows_cache),
        cmocka_unit_test(test_every_key_from_env),
        cmocka_unit_test(test_print_quotes),
        cmocka_unit_test(test_runtime_dir_must_be_private),
        cmocka_unit_test(test_listen_prints_back),
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_storage_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
