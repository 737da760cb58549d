/* The pool and dispatcher against in-process fake backends: an NNG rep socket per instance
 * on inproc://, served by a thread, started and stopped by a fake provider. Checks readiness
 * gating, least-loaded dispatch, retries after a backend "dies" with requests in flight,
 * deadlines, queue limits and the drain path, counting callbacks as libuv's tests do. */
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>

#include "pool.h"
#include "provider.h"

/* The ceiling of every wait-until below: generous, as a loaded 2-core machine (or TSan) can
 * be many times slower than the pool's own timers; a passing test never waits it out. */
#define WAIT_MS 20000

/* ---- fake backend: a thread answering PING and DETECT after `delay_ms` ---- */

struct gw_instance {
    gw_provider_t *p;
    void *owner;
    nng_socket sock;
    pthread_t thread;
    int delay_ms;
    int ready_after_ms;
    atomic_int stop; /* set on the loop, read by the serving thread */
    atomic_int hang; /* set by a test: holds the message in hand, answers nothing (SIGSTOP) */
    int served;
    char pong[128]; /* the PONG's JSON payload, "" = none */
    int status;     /* != 0: every frame is answered with it, without delay */
    uv_timer_t exit_timer;
    char name[64];
    int tier; /* fake_tiered_ops: the first instance started is the expensive tier */
};

typedef struct {
    gw_provider_t super;
    uv_loop_t *loop;
    int live, started, seq;
    int delay_ms, ready_after_ms, fail_start;
    const char *model; /* reported in the PONG's JSON ("model"); NULL = no payload */
    int poison_start;  /* the Nth instance started (1-based; -1 = all) answers every frame... */
    int poison_status; /* ...this status (PROTO_EIMAGE: a broken decoder), at once */
    gw_instance_t *last;
} fake_t;

static void *serve(void *arg)
{
    gw_instance_t *in = arg;
    usleep((useconds_t)in->ready_after_ms * 1000);
    while (!atomic_load(&in->stop)) {
        nng_msg *msg;
        if (nng_recvmsg(in->sock, &msg, 0) != 0)
            break;
        proto_req_t req;
        if (proto_req_decode(&req, nng_msg_body(msg), nng_msg_len(msg)) != 0) {
            nng_msg_free(msg);
            continue;
        }
        while (atomic_load(&in->hang) && !atomic_load(&in->stop))
            usleep(1000);
        /* A frame that is not a JPEG is a client's bad image: every backend rejects it. */
        int status = 0;
        if (req.type == PROTO_T_DETECT) {
            status = in->status != 0                                  ? in->status
                     : req.payload_len < 1 || req.payload[0] != 0xff ? PROTO_EIMAGE
                                                                     : 0;
            if (in->status == 0)
                usleep((useconds_t)in->delay_ms * 1000);
        }
        if (atomic_load(&in->stop)) {
            nng_msg_free(msg);
            break;
        }
        proto_det_t det = {.class_id = 1, .confidence = 0.9f, .x = 1, .y = 2, .w = 3, .h = 4,
                           .label = "thing", .label_len = 5};
        proto_rep_t rep = {.type = req.type == PROTO_T_PING ? PROTO_T_PONG : PROTO_T_RESULT,
                           .id = req.id, .width = 10, .height = 20, .infer_us = 1000,
                           .ndet = req.type == PROTO_T_DETECT && status == 0 ? 1 : 0,
                           .dets = &det, .status = status};
        if (status != 0) {
            rep.error = "bad frame";
            rep.error_len = 9;
        }
        if (req.type == PROTO_T_PING) {
            rep.payload = (const uint8_t *)in->pong;
            rep.payload_len = (uint32_t)strlen(in->pong);
        }
        uint8_t buf[512];
        size_t len;
        assert_int_equal(proto_rep_encode(&rep, buf, sizeof buf, &len), 0);
        nng_msg_free(msg);
        in->served += req.type == PROTO_T_DETECT;
        if (nng_send(in->sock, buf, len, 0) != 0)
            break;
    }
    return NULL;
}

static void on_fake_exit_closed(uv_handle_t *h)
{
    gw_instance_t *in = h->data;
    fake_t *f = (fake_t *)in->p;
    f->live--;
    f->super.on_exit(in->owner, in, 0, 15, "stopped");
    free(in);
}

static void on_fake_exit(uv_timer_t *t)
{
    gw_instance_t *in = t->data;
    atomic_store(&in->stop, 1);
    nng_close(in->sock); /* unblocks the thread */
    pthread_join(in->thread, NULL);
    uv_close((uv_handle_t *)&in->exit_timer, on_fake_exit_closed);
}

static int fake_start(gw_provider_t *p, const char *name, void *owner, gw_instance_t **out,
                      char *addr, size_t cap)
{
    fake_t *f = (fake_t *)p;
    if (f->fail_start)
        return PROTO_EBACKEND;
    gw_instance_t *in = calloc(1, sizeof *in);
    in->p = p;
    in->owner = owner;
    in->delay_ms = f->delay_ms;
    in->ready_after_ms = f->ready_after_ms;
    snprintf(in->name, sizeof in->name, "%s", name);
    if (f->model != NULL)
        snprintf(in->pong, sizeof in->pong, "{\"model\":\"%s\",\"kind\":\"detector\"}",
                 f->model);
    static int seq; /* unique across tests: inproc names outlive a failed test */
    snprintf(addr, cap, "inproc://fake-%d-%d", (int)getpid(), ++seq);
    f->seq++;
    if (f->poison_start == f->seq || f->poison_start < 0)
        in->status = f->poison_status;
    assert_int_equal(nng_rep0_open(&in->sock), 0);
    assert_int_equal(nng_listen(in->sock, addr, NULL, 0), 0);
    uv_timer_init(f->loop, &in->exit_timer);
    in->exit_timer.data = in;
    pthread_create(&in->thread, NULL, serve, in);
    in->tier = f->seq == 1;
    f->live++;
    f->started++;
    f->last = in;
    *out = in;
    return 0;
}

static void fake_stop(gw_provider_t *p, gw_instance_t *in, int force)
{
    (void)p;
    (void)force;
    if (!uv_is_active((uv_handle_t *)&in->exit_timer))
        uv_timer_start(&in->exit_timer, on_fake_exit, 1, 0);
}

static void fake_instance_id(gw_provider_t *p, gw_instance_t *in, char *buf, size_t cap)
{
    (void)p;
    snprintf(buf, cap, "fake:%s", in->name);
}

static int fake_live(gw_provider_t *p) { return ((fake_t *)p)->live; }
static void fake_destroy(gw_provider_t *p) { (void)p; }

static const gw_provider_ops_t fake_ops = {
    .kind = "fake", .start = fake_start, .stop = fake_stop, .instance_id = fake_instance_id,
    .live = fake_live, .destroy = fake_destroy,
};

static int fake_tier(gw_provider_t *p, gw_instance_t *in)
{
    (void)p;
    return in->tier;
}

static const gw_provider_ops_t fake_tiered_ops = {
    .kind = "fake", .start = fake_start, .stop = fake_stop, .instance_id = fake_instance_id,
    .live = fake_live, .destroy = fake_destroy, .tier = fake_tier,
};

/* ---- harness ---- */

typedef struct {
    uv_loop_t loop;
    gw_config_t cfg;
    fake_t fake;
    gw_pool_t *pool;
    int done, status_200, status_other, last_status;
    char backends_seen[8][32];
} env_t;

static env_t E;

static void base_config(gw_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->queue_size = 100;
    cfg->deadline_ms = 5000;
    cfg->retries = 2;
    cfg->backend_concurrency = 1;
    cfg->min_backends = 2;
    cfg->max_backends = 2;
    cfg->target_inflight_per_backend = 1;
    cfg->scale_interval_ms = 100;
    cfg->stable_window_ms = 1000;
    cfg->panic_window_ms = 500;
    cfg->max_starting = 4;
    cfg->start_timeout_ms = 5000;
    cfg->stop_grace_ms = 1000;
    cfg->backoff_initial_ms = 100;
    cfg->backoff_max_ms = 1000;
    cfg->shutdown_grace_ms = 2000;
}

static void setup_env(void)
{
    memset(&E, 0, sizeof E);
    base_config(&E.cfg);
    uv_loop_init(&E.loop);
    E.fake.super.ops = &fake_ops;
    E.fake.loop = &E.loop;
    E.fake.delay_ms = 20;
}

static void start_pool(void)
{
    assert_int_equal(gw_pool_create(&E.pool, &E.loop, &E.cfg, NULL, &E.fake.super, NULL, NULL), 0);
    assert_int_equal(gw_pool_start(E.pool), 0);
}

static void on_done(gw_job_t *job)
{
    E.done++;
    E.last_status = job->err;
    if (job->err == 0) {
        E.status_200++;
        assert_int_equal(job->rep.width, 10);
        assert_int_equal(job->rep.ndet, 1);
    } else {
        E.status_other++;
    }
}

static void run_for(uint64_t ms)
{
    uint64_t end = uv_now(&E.loop) + ms;
    while (uv_now(&E.loop) < end) {
        uv_run(&E.loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(&E.loop);
    }
}

static void run_until(int *counter, int want, uint64_t max_ms)
{
    uint64_t end = uv_now(&E.loop) + max_ms;
    while (*counter < want && uv_now(&E.loop) < end) {
        uv_run(&E.loop, UV_RUN_NOWAIT);
        usleep(500);
        uv_update_time(&E.loop);
    }
}

static void pool_done_cb(void *arg) { *(int *)arg = 1; }

static void teardown_env(void)
{
    int done = 0;
    gw_pool_shutdown(E.pool, pool_done_cb, &done);
    run_until(&done, 1, WAIT_MS);
    assert_int_equal(done, 1);
    assert_int_equal(E.fake.live, 0);
    gw_pool_destroy(E.pool);
    uv_run(&E.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&E.loop), 0);
}

static uint8_t img[] = {0xff, 0xd8, 0xff, 0xd9};

static gw_job_t *make_jobs(int n)
{
    gw_job_t *jobs = calloc((size_t)n, sizeof *jobs);
    for (int i = 0; i < n; i++) {
        gw_job_init(&jobs[i]);
        jobs[i].image = img;
        jobs[i].image_len = sizeof img;
        jobs[i].on_done = on_done;
        snprintf(jobs[i].opts.camera, sizeof jobs[i].opts.camera, "c%d", i);
    }
    return jobs;
}

static void free_jobs(gw_job_t *jobs, int n)
{
    for (int i = 0; i < n; i++)
        gw_job_fini(&jobs[i]);
    free(jobs);
}

static void wait_ready(int n)
{
    gw_pool_stats_t st;
    uint64_t end = uv_now(&E.loop) + WAIT_MS;
    do {
        uv_run(&E.loop, UV_RUN_NOWAIT);
        usleep(500);
        uv_update_time(&E.loop);
        gw_pool_stats(E.pool, &st);
    } while (st.ready < n && uv_now(&E.loop) < end);
    assert_int_equal(st.ready, n);
}

/* ---- tests ---- */

static void test_dispatch_spreads_and_answers(void **state)
{
    (void)state;
    setup_env();
    start_pool();
    wait_ready(2);
    gw_job_t *jobs = make_jobs(20);
    for (int i = 0; i < 20; i++)
        assert_int_equal(gw_pool_submit(E.pool, &jobs[i]), 0);
    run_until(&E.done, 20, WAIT_MS);
    assert_int_equal(E.status_200, 20);
    /* Two equal backends share the work (least loaded, then least recently used). */
    int on1 = 0;
    for (int i = 0; i < 20; i++)
        on1 += strcmp(jobs[i].backend, "app-instance1") == 0;
    assert_true(on1 >= 8 && on1 <= 12);
    free_jobs(jobs, 20);
    teardown_env();
}

/* Provider tiers: scale-in drains the highest tier first, whatever the age. Without tiers the
 * newest would go first and app-instance1 (here the expensive one) would stay. */
static void test_scale_in_reaps_highest_tier_first(void **state)
{
    (void)state;
    setup_env();
    E.fake.super.ops = &fake_tiered_ops;
    E.cfg.min_backends = 3;
    E.cfg.max_backends = 3;
    start_pool();
    wait_ready(3);
    gw_pool_set_bounds(E.pool, 1, 1);
    /* Until the two drained backends are gone (not a fixed 500 ms: a loaded machine is slower). */
    gw_pool_stats_t st;
    uint64_t end = uv_now(&E.loop) + WAIT_MS;
    do {
        run_for(10);
        gw_pool_stats(E.pool, &st);
    } while ((st.ready != 1 || st.starting + st.draining + st.stopping != 0) &&
             uv_now(&E.loop) < end);
    char *json = gw_pool_backends_json(E.pool);
    assert_non_null(json);
    assert_null(strstr(json, "app-instance1\""));
    assert_true(strstr(json, "app-instance2\"") != NULL || strstr(json, "app-instance3\"") != NULL);
    free(json);
    gw_pool_stats(E.pool, &st);
    assert_int_equal(st.ready, 1);
    teardown_env();
}

static void test_not_ready_gets_nothing(void **state)
{
    (void)state;
    setup_env();
    E.cfg.min_backends = E.cfg.max_backends = 1;
    E.fake.ready_after_ms = 300;
    start_pool();
    gw_job_t *jobs = make_jobs(1);
    assert_int_equal(gw_pool_submit(E.pool, &jobs[0]), 0);
    run_for(150);
    assert_int_equal(E.done, 0); /* queued, not failed, while the model "loads" */
    run_until(&E.done, 1, WAIT_MS);
    assert_int_equal(E.status_200, 1);
    assert_true(jobs[0].queue_ms >= 100);
    free_jobs(jobs, 1);
    teardown_env();
}

static void test_queue_full_and_deadline(void **state)
{
    (void)state;
    setup_env();
    E.cfg.min_backends = E.cfg.max_backends = 1;
    E.cfg.queue_size = 3;
    E.cfg.deadline_ms = 300;
    E.fake.delay_ms = 200;
    start_pool();
    wait_ready(1);
    gw_job_t *jobs = make_jobs(6);
    int full = 0;
    for (int i = 0; i < 6; i++)
        full += gw_pool_submit(E.pool, &jobs[i]) == PROTO_EQUEUEFULL;
    /* one dispatched at once, three queued, two refused */
    assert_int_equal(full, 2);
    run_until(&E.done, 4, WAIT_MS);
    assert_int_equal(E.done, 4);
    int s504 = 0;
    for (int i = 0; i < 4; i++)
        s504 += jobs[i].err == PROTO_EDEADLINE;
    assert_true(s504 >= 2);
    free_jobs(jobs, 6);
    teardown_env();
}

static void test_backend_exit_retries_elsewhere(void **state)
{
    (void)state;
    setup_env();
    E.fake.delay_ms = 300;
    start_pool();
    wait_ready(2);
    gw_job_t *jobs = make_jobs(2);
    assert_int_equal(gw_pool_submit(E.pool, &jobs[0]), 0);
    assert_int_equal(gw_pool_submit(E.pool, &jobs[1]), 0);
    run_for(50);
    /* "Crash" the newest instance while it holds a request. */
    E.fake.super.ops->stop(&E.fake.super, E.fake.last, 1);
    run_until(&E.done, 2, WAIT_MS);
    assert_int_equal(E.status_200, 2);
    assert_true(jobs[0].attempts + jobs[1].attempts == 3);
    gw_pool_stats_t st;
    gw_pool_stats(E.pool, &st);
    assert_int_equal(st.retried, 1);
    assert_int_equal(st.crashes, 1);
    /* The fixed pool is back to two (a replacement started). */
    wait_ready(2);
    assert_int_equal(E.fake.started, 3);
    free_jobs(jobs, 2);
    teardown_env();
}

static void test_failed_starts_back_off(void **state)
{
    (void)state;
    setup_env();
    E.cfg.min_backends = E.cfg.max_backends = 1;
    E.fake.fail_start = 1;
    uint64_t t0 = uv_now(&E.loop);
    start_pool();
    /* Until the third failure, then how long it took (a count in a fixed 1.2 s fell short when
     * the loop was starved): 100 + 200 ms of backoff come first, a fork loop takes no time. */
    gw_pool_stats_t st;
    uint64_t end = t0 + WAIT_MS;
    do {
        run_for(5);
        gw_pool_stats(E.pool, &st);
    } while (st.failed_starts < 3 && uv_now(&E.loop) < end);
    uint64_t took = uv_now(&E.loop) - t0;
    assert_true(st.failed_starts >= 3 && st.failed_starts <= 4);
    assert_true(took >= 300);
    char why[256];
    assert_int_equal(gw_pool_readyz(E.pool, why, sizeof why), 0);
    assert_non_null(strstr(why, "could not be started"));
    gw_job_t *jobs = make_jobs(1);
    assert_int_equal(gw_pool_submit(E.pool, &jobs[0]), PROTO_ENOBACKEND);
    free_jobs(jobs, 1);
    teardown_env();
}

/* Ready means "a frame sent now is served": a pool scaled to zero is ready (the frame
 * starts a backend); a shutting-down one is not. */
static void test_readyz_scaled_to_zero(void **state)
{
    (void)state;
    setup_env();
    E.cfg.min_backends = 0;
    E.cfg.max_backends = 1;
    start_pool();
    run_for(50);
    char why[512];
    assert_int_equal(gw_pool_readyz(E.pool, why, sizeof why), 1);
    assert_non_null(strstr(why, "scaled to zero"));
    gw_job_t *jobs = make_jobs(1);
    assert_int_equal(gw_pool_submit(E.pool, &jobs[0]), 0);
    assert_int_equal(gw_pool_readyz(E.pool, why, sizeof why), 1); /* starting or ready */
    run_until(&E.done, 1, WAIT_MS);
    assert_int_equal(E.status_200, 1);
    int done = 0;
    gw_pool_shutdown(E.pool, pool_done_cb, &done);
    assert_int_equal(gw_pool_readyz(E.pool, why, sizeof why), 0);
    assert_non_null(strstr(why, "shutting down"));
    run_until(&done, 1, WAIT_MS);
    assert_int_equal(done, 1);
    assert_int_equal(E.fake.live, 0);
    gw_pool_destroy(E.pool);
    uv_run(&E.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&E.loop), 0);
    free_jobs(jobs, 1);
}

static void test_shutdown_answers_everything(void **state)
{
    (void)state;
    setup_env();
    E.fake.delay_ms = 50;
    start_pool();
    wait_ready(2);
    gw_job_t *jobs = make_jobs(10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(gw_pool_submit(E.pool, &jobs[i]), 0);
    int done = 0;
    gw_pool_shutdown(E.pool, pool_done_cb, &done);
    assert_int_equal(gw_pool_submit(E.pool, &jobs[0]), PROTO_ESHUTDOWN);
    run_until(&done, 1, WAIT_MS);
    assert_int_equal(done, 1);
    assert_int_equal(E.status_200, 10);
    assert_int_equal(E.fake.live, 0);
    gw_pool_destroy(E.pool);
    uv_run(&E.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&E.loop), 0);
    free_jobs(jobs, 10);
}

/* Live cameras through the pool: one backend busy for 200 ms; camera 1 pushes 5 frames, the
 * FIFO 3. Camera 1's older waiting frames are superseded at once (each by the next seq),
 * the FIFO's all served; every job's on_done runs exactly once. Then a frame that waits past
 * its camera's max age is skipped, not served. */
static int cam_done[16];
static gw_job_t *cam_jobs;

static void on_cam_done(gw_job_t *job)
{
    cam_done[job - cam_jobs]++;
    on_done(job);
}

static void test_camera_frames_supersede_and_skip(void **state)
{
    (void)state;
    setup_env();
    E.cfg.min_backends = E.cfg.max_backends = 1;
    E.cfg.max_cameras = 4;
    E.cfg.camera_queue_depth = 1;
    E.cfg.camera_max_age_ms = 0;
    E.fake.delay_ms = 200;
    start_pool();
    wait_ready(1);
    memset(cam_done, 0, sizeof cam_done);
    gw_job_t *jobs = make_jobs(16);
    cam_jobs = jobs;
    for (int i = 0; i < 16; i++) {
        jobs[i].on_done = on_cam_done;
        jobs[i].data = &cam_done[i]; /* one request per frame */
    }
    /* jobs 0..4: camera 1 (job 0 goes to the backend at once); 5..7: no camera */
    for (int i = 0; i < 8; i++) {
        jobs[i].cam = i < 5 ? 1 : 0;
        jobs[i].seq = i < 5 ? (uint64_t)i + 1 : 0;
        assert_int_equal(gw_pool_submit(E.pool, &jobs[i]), 0);
    }
    /* 1, 2, 3 were superseded inside the submits of 2, 3, 4 */
    assert_int_equal(E.done, 3);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(jobs[i].err, PROTO_ESUPERSEDED);
        assert_int_equal(jobs[i].superseded_by, jobs[i + 1].seq);
    }
    run_until(&E.done, 8, WAIT_MS);
    assert_int_equal(E.done, 8);
    assert_int_equal(jobs[0].err, 0);
    assert_int_equal(jobs[4].err, 0);
    for (int i = 5; i < 8; i++)
        assert_int_equal(jobs[i].err, 0);
    gw_pool_stats_t st;
    gw_pool_stats(E.pool, &st);
    assert_int_equal(st.superseded, 3);

    /* max age 100 ms on camera 2: its frame waits behind 200 ms of work and is skipped */
    gw_pool_set_camera(E.pool, 2, 1, 100);
    jobs[8].cam = 0;
    jobs[9].cam = 2;
    jobs[9].seq = 1;
    assert_int_equal(gw_pool_submit(E.pool, &jobs[8]), 0);
    assert_int_equal(gw_pool_submit(E.pool, &jobs[9]), 0);
    run_until(&E.done, 10, WAIT_MS);
    assert_int_equal(jobs[8].err, 0);
    assert_int_equal(jobs[9].err, PROTO_ESTALE);
    for (int i = 0; i < 10; i++)
        assert_int_equal(cam_done[i], 1);
    free_jobs(jobs, 16);
    teardown_env();
}

/* A backend must report the model of its pool at readiness: one that loaded another model
 * is a failed start with a clear reason, and gets no frame. */
static void test_model_checked_at_readiness(void **state)
{
    (void)state;
    setup_env();
    gw_model_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "yolo");
    m.min_backends = m.max_backends = 1;
    m.target_inflight_per_backend = 1;
    E.fake.model = "other";
    assert_int_equal(gw_pool_create(&E.pool, &E.loop, &E.cfg, &m, &E.fake.super, NULL, NULL), 0);
    assert_int_equal(gw_pool_start(E.pool), 0);
    gw_pool_stats_t st;
    uint64_t end = uv_now(&E.loop) + WAIT_MS;
    do {
        run_for(10);
        gw_pool_stats(E.pool, &st);
    } while (st.failed_starts == 0 && uv_now(&E.loop) < end);
    assert_true(st.failed_starts >= 1);
    assert_int_equal(st.ready, 0);
    char why[512];
    run_for(20); /* the failed backend's exit is reported */
    gw_pool_readyz(E.pool, why, sizeof why);
    assert_non_null(strstr(why, "reported model 'other', not 'yolo'"));
    char *doc = gw_pool_backends_json(E.pool);
    assert_non_null(strstr(doc, "reported model 'other', not 'yolo'"));
    free(doc);
    /* The right model: ready, and /v1/backends names the provider and the instance. */
    E.fake.model = "yolo";
    wait_ready(1);
    doc = gw_pool_backends_json(E.pool);
    assert_non_null(strstr(doc, "\"provider\":\"fake\""));
    assert_non_null(strstr(doc, "\"instance\":\"fake:yolo-instance"));
    assert_null(strstr(doc, "\"pid\""));
    free(doc);
    teardown_env();
}

/* ---- outlier ejection ---- */

static uint8_t bad_img[] = {0x00, 0x01, 0x02, 0x03}; /* not a JPEG: every backend rejects it */

static void outlier_config(void)
{
    E.cfg.outlier_window = 20;
    E.cfg.outlier_min_requests = 5;
    E.cfg.outlier_stdev_factor = 1.9;
    E.cfg.outlier_consecutive_failures = 5;
}

/* Submits the jobs one at a time, each once the previous one is answered. */
static void submit_paced(gw_job_t *jobs, int n)
{
    for (int i = 0; i < n; i++) {
        int want = E.done + 1;
        assert_int_equal(gw_pool_submit(E.pool, &jobs[i]), 0);
        run_until(&E.done, want, WAIT_MS);
        assert_int_equal(E.done, want);
    }
}

static int count_err(const gw_job_t *jobs, int n, int err)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += jobs[i].err == err;
    return k;
}

/* Issue 11, item 1: a backend whose decoder broke answers 400 to every good frame, at once.
 * Its success rate falls below its peer's: it is ejected (counted) and replaced, and from
 * then on every good frame is answered 200. The frames it rejected before the test had the
 * volume to judge it stay rejected (a 4xx is final), which is why outlier_min_requests is
 * the lever: here 5, so at most a handful. */
static void test_outlier_poisoned_backend_ejected(void **state)
{
    (void)state;
    setup_env();
    outlier_config();
    E.fake.poison_start = 2;
    E.fake.poison_status = PROTO_EIMAGE;
    start_pool();
    wait_ready(2);
    const int n = 60;
    gw_job_t *jobs = make_jobs(n);
    submit_paced(jobs, n);
    gw_pool_stats_t st;
    gw_pool_stats(E.pool, &st);
    assert_int_equal(st.ejections[GW_HEALTH_SUCCESS_RATE], 1);
    assert_int_equal(st.ejections[GW_HEALTH_CONSECUTIVE], 0);
    int rejected = count_err(jobs, n, PROTO_EIMAGE);
    assert_true(rejected >= 5 && rejected <= 8);
    assert_int_equal(E.status_200, n - rejected);
    /* Every frame after the ejection was served (the rejections are the first ones). */
    for (int i = 20; i < n; i++)
        assert_int_equal(jobs[i].err, 0);
    wait_ready(2); /* replaced */
    assert_int_equal(E.fake.started, 3);
    free_jobs(jobs, n);
    teardown_env();
}

/* A client that sends only bad images is rejected by every backend alike: the test is
 * relative, so nothing is ejected, and a rejection is no failure in a row. */
static void test_outlier_bad_client_ejects_nothing(void **state)
{
    (void)state;
    setup_env();
    outlier_config();
    start_pool();
    wait_ready(2);
    const int n = 40;
    gw_job_t *jobs = make_jobs(n);
    for (int i = 0; i < n; i++) {
        jobs[i].image = bad_img;
        jobs[i].image_len = sizeof bad_img;
    }
    submit_paced(jobs, n);
    assert_int_equal(count_err(jobs, n, PROTO_EIMAGE), n);
    gw_pool_stats_t st;
    gw_pool_stats(E.pool, &st);
    for (int r = 0; r < GW_HEALTH_NREASONS; r++)
        assert_int_equal(st.ejections[r], 0);
    assert_int_equal(st.ready, 2);
    assert_int_equal(E.fake.started, 2);
    free_jobs(jobs, n);
    teardown_env();
}

/* A backend whose model fails (5xx-class) on every frame is ejected after
 * outlier_consecutive_failures in a row, even with the rate test off. */
static void test_outlier_consecutive_failures(void **state)
{
    (void)state;
    setup_env();
    outlier_config();
    E.cfg.outlier_stdev_factor = 0;
    E.cfg.outlier_consecutive_failures = 3;
    E.fake.poison_start = 1;
    E.fake.poison_status = PROTO_EMODEL;
    start_pool();
    wait_ready(2);
    const int n = 30;
    gw_job_t *jobs = make_jobs(n);
    submit_paced(jobs, n);
    gw_pool_stats_t st;
    gw_pool_stats(E.pool, &st);
    assert_int_equal(st.ejections[GW_HEALTH_CONSECUTIVE], 1);
    assert_int_equal(count_err(jobs, n, PROTO_EMODEL), 3);
    assert_int_equal(E.status_200, n - 3);
    wait_ready(2);
    assert_int_equal(E.fake.started, 3);
    free_jobs(jobs, n);
    teardown_env();
}

/* ---- hung backends (issue 11, item 7) ---- */

static void hung_config(uint64_t grace_ms)
{
    E.cfg.hung_factor = 5;
    E.cfg.hung_min_ms = 200;
    E.cfg.hung_grace_ms = grace_ms;
}

static gw_instance_t *hang_newest(void)
{
    gw_instance_t *in = E.fake.last;
    atomic_store(&in->hang, 1);
    return in;
}

/* A backend that stops answering (as under SIGSTOP) is suspected once a frame waits past
 * the bound, its frames are retried elsewhere, it is pinged, and when the ping goes
 * unanswered for the grace it is killed and replaced. Every frame is answered 200. */
static void test_hung_backend_suspected_then_replaced(void **state)
{
    (void)state;
    setup_env();
    hung_config(300);
    start_pool();
    wait_ready(2);
    gw_job_t *warm = make_jobs(6);
    submit_paced(warm, 6); /* the model's service time is observed */
    hang_newest();
    const int n = 10;
    gw_job_t *jobs = make_jobs(n);
    for (int i = 0; i < n; i++)
        assert_int_equal(gw_pool_submit(E.pool, &jobs[i]), 0);
    run_until(&E.done, 6 + n, WAIT_MS);
    assert_int_equal(E.done, 6 + n);
    assert_int_equal(E.status_200, 6 + n);
    int retried = 0;
    for (int i = 0; i < n; i++)
        retried += jobs[i].attempts > 1;
    assert_int_equal(retried, 1); /* the one it held */
    gw_pool_stats_t st;
    uint64_t end = uv_now(&E.loop) + WAIT_MS;
    do {
        run_for(10);
        gw_pool_stats(E.pool, &st);
    } while (st.ejections[GW_HEALTH_HUNG] == 0 && uv_now(&E.loop) < end);
    assert_int_equal(st.suspected, 1);
    assert_int_equal(st.ejections[GW_HEALTH_HUNG], 1);
    wait_ready(2); /* replaced */
    assert_int_equal(E.fake.started, 3);
    free_jobs(warm, 6);
    free_jobs(jobs, n);
    teardown_env();
}

/* A suspect that answers its ping within the grace is only slow: it comes back. */
static void test_hung_backend_recovers(void **state)
{
    (void)state;
    setup_env();
    hung_config(5000);
    start_pool();
    wait_ready(2);
    gw_job_t *warm = make_jobs(6);
    submit_paced(warm, 6);
    gw_instance_t *in = hang_newest();
    const int n = 10;
    gw_job_t *jobs = make_jobs(n);
    for (int i = 0; i < n; i++)
        assert_int_equal(gw_pool_submit(E.pool, &jobs[i]), 0);
    gw_pool_stats_t st;
    uint64_t end = uv_now(&E.loop) + WAIT_MS;
    do {
        run_for(10);
        gw_pool_stats(E.pool, &st);
    } while (st.suspected == 0 && uv_now(&E.loop) < end);
    assert_int_equal(st.suspected, 1);
    assert_int_equal(st.suspect, 1);
    atomic_store(&in->hang, 0);
    wait_ready(2);
    run_until(&E.done, 6 + n, WAIT_MS);
    assert_int_equal(E.status_200, 6 + n);
    gw_pool_stats(E.pool, &st);
    assert_int_equal(st.ejections[GW_HEALTH_HUNG], 0);
    assert_int_equal(E.fake.started, 2);
    free_jobs(warm, 6);
    free_jobs(jobs, n);
    teardown_env();
}

/* Every backend fails alike (a broken model): the first is ejected, but the last one ready
 * stays while its replacement loads, so the pool never stops answering. */
static void test_outlier_never_ejects_the_last_ready(void **state)
{
    (void)state;
    setup_env();
    outlier_config();
    E.cfg.outlier_stdev_factor = 0;
    E.cfg.outlier_consecutive_failures = 2;
    E.fake.poison_start = -1;
    E.fake.poison_status = PROTO_EMODEL;
    start_pool();
    wait_ready(2);
    E.fake.ready_after_ms = 2000; /* replacements load slowly */
    const int n = 12;
    gw_job_t *jobs = make_jobs(n);
    submit_paced(jobs, n);
    gw_pool_stats_t st;
    gw_pool_stats(E.pool, &st);
    assert_int_equal(st.ejections[GW_HEALTH_CONSECUTIVE], 1);
    assert_int_equal(st.ready, 1);
    assert_int_equal(st.starting, 1);
    assert_int_equal(count_err(jobs, n, PROTO_EMODEL), n); /* answered, none waited */
    free_jobs(jobs, n);
    teardown_env();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_spreads_and_answers),
        cmocka_unit_test(test_not_ready_gets_nothing),
        cmocka_unit_test(test_scale_in_reaps_highest_tier_first),
        cmocka_unit_test(test_queue_full_and_deadline),
        cmocka_unit_test(test_readyz_scaled_to_zero),
        cmocka_unit_test(test_backend_exit_retries_elsewhere),
        cmocka_unit_test(test_failed_starts_back_off),
        cmocka_unit_test(test_shutdown_answers_everything),
        cmocka_unit_test(test_camera_frames_supersede_and_skip),
        cmocka_unit_test(test_model_checked_at_readiness),
        cmocka_unit_test(test_outlier_poisoned_backend_ejected),
        cmocka_unit_test(test_outlier_bad_client_ejects_nothing),
        cmocka_unit_test(test_outlier_consecutive_failures),
        cmocka_unit_test(test_outlier_never_ejects_the_last_ready),
        cmocka_unit_test(test_hung_backend_suspected_then_replaced),
        cmocka_unit_test(test_hung_backend_recovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
