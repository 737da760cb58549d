/* The live-camera queue policy, pop by pop, with no pool and no clock: freshness (a newer
 * frame supersedes, old frames are skipped), weighted round-robin across cameras, the FIFO
 * for camera-less frames, retries at the head, iteration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "fair.h"

static gw_job_t *mk(gw_job_t *j, int cam, uint64_t arrival, uint64_t seq)
{
    gw_job_init(j);
    j->cam = cam;
    j->arrival_ms = arrival;
    j->seq = seq;
    return j;
}

static gw_job_t *pop(gw_fair_t *f, uint64_t now)
{
    int stale = -1;
    gw_job_t *j = gw_fair_pop(f, now, 0, &stale);
    assert_int_equal(stale, 0);
    return j;
}

static void test_create_rejects_bad_args(void **state)
{
    (void)state;
    gw_fair_t *f;
    assert_int_equal(gw_fair_create(&f, 4, 0), PROTO_EINVAL);
    assert_int_equal(gw_fair_create(&f, -1, 1), PROTO_EINVAL);
}

static void test_newer_frame_supersedes_waiting_one(void **state)
{
    (void)state;
    gw_fair_t *f;
    gw_job_t a, b, c;
    assert_int_equal(gw_fair_create(&f, 4, 1), 0);
    assert_null(gw_fair_push(f, mk(&a, 1, 0, 1), 0));
    assert_true(gw_fair_would_replace(f, 1));
    assert_false(gw_fair_would_replace(f, 2));
    assert_ptr_equal(gw_fair_push(f, mk(&b, 1, 10, 2), 0), &a);
    assert_ptr_equal(gw_fair_push(f, mk(&c, 1, 20, 3), 0), &b);
    assert_int_equal(gw_fair_count(f), 1);
    assert_int_equal(gw_fair_count_of(f, 1), 1);
    assert_ptr_equal(pop(f, 30), &c);
    assert_null(pop(f, 30));
    assert_int_equal(gw_fair_count(f), 0);
    gw_fair_destroy(f);
}

static void test_batch_frames_wait_in_the_fifo(void **state)
{
    (void)state;
    gw_fair_t *f;
    gw_job_t a, b, c;
    int stale;
    assert_int_equal(gw_fair_create(&f, 1, 1), 0);
    gw_fair_set_camera(f, 1, 1, 100);
    mk(&a, 1, 0, 1)->batch = 1;
    mk(&b, 1, 0, 2)->batch = 1;
    assert_null(gw_fair_push(f, &a, 0));
    assert_null(gw_fair_push(f, &b, 0));
    assert_int_equal(gw_fair_count_of(f, 0), 2);
    assert_false(gw_fair_would_replace(f, 1));
    assert_null(gw_fair_push(f, mk(&c, 1, 0, 3), 0)); /* a live frame: its own queue */
    /* long past the max age: the live frame is skipped, the batch is not */
    assert_ptr_equal(gw_fair_pop(f, 1000, 0, &stale), &c);
    assert_int_equal(stale, 1);
    assert_ptr_equal(gw_fair_pop(f, 1000, 0, &stale), &a);
    assert_int_equal(stale, 0);
    gw_fair_remove(f, &b);
    assert_int_equal(gw_fair_count(f), 0);
    gw_fair_destroy(f);
}

static void test_depth_two_keeps_two_newest(void **state)
{
    (void)state;
    gw_fair_t *f;
    gw_job_t j[4];
    assert_int_equal(gw_fair_create(&f, 1, 2), 0);
    assert_null(gw_fair_push(f, mk(&j[0], 1, 0, 1), 0));
    assert_null(gw_fair_push(f, mk(&j[1], 1, 1, 2), 0));
    assert_ptr_equal(gw_fair_push(f, mk(&j[2], 1, 2, 3), 0), &j[0]);
    assert_ptr_equal(pop(f, 5), &j[1]); /* oldest of the kept ones first: seq order */
    assert_ptr_equal(pop(f, 5), &j[2]);
    gw_fair_destroy(f);
}

static void test_camera_less_frames_keep_fifo_and_are_never_superseded(void **state)
{
    (void)state;
    gw_fair_t *f;
    gw_job_t j[5];
    assert_int_equal(gw_fair_create(&f, 2, 1), 0);
    for (int i = 0; i < 5; i++)
        assert_null(gw_fair_push(f, mk(&j[i], 0, (uint64_t)i, 0), 0));
    /* a camera beyond ncams is pooled into the FIFO too */
    gw_job_t extra;
    assert_null(gw_fair_push(f, mk(&extra, 7, 9, 1), 0));
    assert_int_equal(gw_fair_count_of(f, 0), 6);
    for (int i = 0; i < 5; i++)
        assert_ptr_equal(pop(f, 100), &j[i]);
    assert_ptr_equal(pop(f, 100), &extra);
    gw_fair_destroy(f);
}

static void test_stale_frames_are_skipped_not_dispatched(void **state)
{
    (void)state;
    gw_fair_t *f;
    gw_job_t a, b, fifo;
    int stale;
    assert_int_equal(gw_fair_create(&f, 2, 1), 0);
    gw_fair_set_camera(f, 1, 1, 500);
    gw_fair_push(f, mk(&a, 1, 1000, 1), 0);
    gw_fair_push(f, mk(&b, 2, 1000, 1), 0);    /* camera 2 has no max age */
    gw_fair_push(f, mk(&fifo, 0, 1000, 0), 0); /* nor has the FIFO */
    /* At 1400 with 50 ms of service expected, a is answered at 1450: still fresh. */
    for (int k = 0; k < 3; k++) {
        assert_non_null(gw_fair_pop(f, 1400, 50, &stale));
        assert_int_equal(stale, 0);
    }
    gw_fair_destroy(f);

    assert_int_equal(gw_fair_create(&f, 2, 1), 0);
    gw_fair_set_camera(f, 1, 1, 500);
    gw_fair_push(f, mk(&a, 1, 1000, 1), 0);
    gw_fair_push(f, mk(&b, 2, 1000, 1), 0);
    /* At 1460 + 50 it would be answered 510 ms old: skipped, handed back first. */
    assert_ptr_equal(gw_fair_pop(f, 1460, 50, &stale), &a);
    assert_int_equal(stale, 1);
    assert_ptr_equal(gw_fair_pop(f, 1460, 50, &stale), &b);
    assert_int_equal(stale, 0);
    assert_null(gw_fair_pop(f, 1460, 50, &stale));
    gw_fair_destroy(f);
}

/* A model slower than the camera's max age (2.5 s vs 2 s): a frame that has not waited is
 * served (the freshest answer there can be), not answered stale on arrival; one that waited
 * past half the budget is. */
static void test_slow_model_still_serves_fresh_frames(void **state)
{
    (void)state;
    gw_fair_t *f;
    gw_job_t a, b;
    int stale;
    assert_int_equal(gw_fair_create(&f, 1, 1), 0);
    gw_fair_set_camera(f, 1, 1, 2000);
    gw_fair_push(f, mk(&a, 1, 1000, 1), 0);
    assert_ptr_equal(gw_fair_pop(f, 1000, 2500, &stale), &a);
    assert_int_equal(stale, 0);
    gw_fair_push(f, mk(&b, 1, 1000, 2), 0);
    assert_ptr_equal(gw_fair_pop(f, 2001, 2500, &stale), &b);
    assert_int_equal(stale, 1);
    gw_fair_destroy(f);
}

/* One camera with a frame always waiting, three that come and go: every camera with a frame
 * waiting is served before the busy one gets a second turn. */
static void test_round_robin_across_cameras(void **state)
{
    (void)state;
    gw_fair_t *f;
    gw_job_t big[8], small[3];
    assert_int_equal(gw_fair_create(&f, 4, 1), 0);
    uint64_t t = 0, seq = 0;
    gw_fair_push(f, mk(&big[0], 1, t, ++seq), 0);
    for (int i = 0; i < 3; i++)
        gw_fair_push(f, mk(&small[i], 2 + i, t + 1, 1), 0);
    int served[5] = {0};
    for (int k = 0; k < 4; k++) {
        gw_job_t *j = pop(f, 10);
        served[j->cam]++;
        /* the busy camera pushes a new frame after every pick */
        if (j->cam == 1 && k < 3)
            gw_fair_push(f, mk(&big[k + 1], 1, 10 + (uint64_t)k, ++seq), 0);
    }
    assert_int_equal(served[1], 1);
    assert_int_equal(served[2] + served[3] + served[4], 3);
    gw_fair_destroy(f);
}

/* Tick by tick: camera 1 pushes 3 frames every tick against a pool serving 3 per tick,
 * cameras 2..5 one frame every other tick. Every small camera gets each of its frames
 * served; the big one takes what is left. */
static void test_busy_camera_does_not_starve_small_ones(void **state)
{
    (void)state;
    enum { TICKS = 100, CAMS = 5, CAP = 3 };
    static gw_job_t pool[TICKS * CAMS];
    int used = 0, served[CAMS + 1] = {0}, offered[CAMS + 1] = {0}, superseded[CAMS + 1] = {0};
    uint64_t seq[CAMS + 1] = {0};
    gw_fair_t *f;
    assert_int_equal(gw_fair_create(&f, CAMS, 1), 0);
    for (int t = 0; t < TICKS; t++) {
        for (int c = 1; c <= CAMS; c++) {
            int n = c == 1 ? 3 : (t % 2 == 0); /* the big camera sends 3 per tick */
            for (int k = 0; k < n; k++) {
                gw_job_t *old = gw_fair_push(f, mk(&pool[used++], c, (uint64_t)t, ++seq[c]), 0);
                offered[c]++;
                if (old != NULL)
                    superseded[old->cam]++;
            }
        }
        for (int k = 0; k < CAP; k++) {
            gw_job_t *j = pop(f, (uint64_t)t);
            if (j == NULL)
                break;
            served[j->cam]++;
        }
    }
    for (int c = 2; c <= CAMS; c++) {
        assert_int_equal(superseded[c], 0);
        assert_int_equal(served[c], offered[c]);
    }
    /* The big camera has one frame waiting at a time (depth 1): it gets a turn at least
     * every other tick, when the small ones have been served. */
    assert_true(served[1] >= TICKS / 2);
    assert_int_equal(superseded[1], offered[1] - served[1] - gw_fair_count_of(f, 1));
    gw_fair_destroy(f);
}

/* Weights 3:1 with both always waiting: 3 of every 4 picks go to camera 1, interleaved. */
/* Two cameras always waiting; camera 1's frame is replaced by a newer one right before every
 * pick (its frames arrive just before the backend frees up). It keeps its place: the picks
 * alternate. */
static void test_superseded_camera_keeps_its_turn(void **state)
{
    (void)state;
    gw_fair_t *f;
    static gw_job_t j[200];
    int used = 0, served[3] = {0};
    assert_int_equal(gw_fair_create(&f, 2, 1), 0);
    gw_fair_push(f, mk(&j[used++], 1, 0, 1), 0);
    gw_fair_push(f, mk(&j[used++], 2, 0, 1), 0);
    for (int k = 0; k < 40; k++) {
        uint64_t t = 10 + (uint64_t)k;
        if (gw_fair_count_of(f, 1) == 1)
            assert_non_null(gw_fair_push(f, mk(&j[used++], 1, t, 2), 0));
        else
            gw_fair_push(f, mk(&j[used++], 1, t, 2), 0);
        if (gw_fair_count_of(f, 2) == 0)
            gw_fair_push(f, mk(&j[used++], 2, t, 2), 0);
        served[pop(f, t)->cam]++;
    }
    assert_int_equal(served[1], 20);
    assert_int_equal(served[2], 20);
    gw_fair_destroy(f);
}

static void test_weights_share_in_proportion(void **state)
{
    (void)state;
    gw_fair_t *f;
    static gw_job_t j[200];
    int used = 0, served[3] = {0};
    assert_int_equal(gw_fair_create(&f, 2, 1), 0);
    gw_fair_set_camera(f, 1, 3, 0);
    gw_fair_push(f, mk(&j[used++], 1, 0, 1), 0);
    gw_fair_push(f, mk(&j[used++], 2, 0, 1), 0);
    for (int k = 0; k < 80; k++) {
        gw_job_t *x = pop(f, 1);
        served[x->cam]++;
        gw_fair_push(f, mk(&j[used++], x->cam, 1, 2), 0);
    }
    assert_int_equal(served[1], 60);
    assert_int_equal(served[2], 20);
    gw_fair_destroy(f);
}

static void test_retry_goes_to_the_head_and_supersedes_nothing(void **state)
{
    (void)state;
    gw_fair_t *f;
    gw_job_t a, r, fa, fr;
    assert_int_equal(gw_fair_create(&f, 1, 1), 0);
    gw_fair_push(f, mk(&a, 1, 10, 2), 0);
    assert_null(gw_fair_push(f, mk(&r, 1, 5, 1), 1)); /* over depth, but a retry */
    assert_int_equal(gw_fair_count_of(f, 1), 2);
    gw_fair_push(f, mk(&fa, 0, 1, 0), 0);
    assert_null(gw_fair_push(f, mk(&fr, 0, 0, 0), 1));
    assert_ptr_equal(gw_fair_next(f, NULL), &fr); /* the FIFO first, retry at its head */
    gw_job_t *x = pop(f, 20), *y = pop(f, 20);
    assert_true((x == &fr && y == &r) || (x == &r && y == &fr));
    gw_fair_destroy(f);
}

static void test_iteration_and_remove(void **state)
{
    (void)state;
    gw_fair_t *f;
    gw_job_t j[6];
    assert_int_equal(gw_fair_create(&f, 3, 2), 0);
    gw_fair_push(f, mk(&j[0], 0, 0, 0), 0);
    gw_fair_push(f, mk(&j[1], 0, 0, 0), 0);
    gw_fair_push(f, mk(&j[2], 2, 0, 1), 0);
    gw_fair_push(f, mk(&j[3], 2, 0, 2), 0);
    gw_fair_push(f, mk(&j[4], 3, 0, 1), 0);
    int n = 0;
    for (gw_job_t *x = gw_fair_next(f, NULL); x != NULL; x = gw_fair_next(f, x))
        n++;
    assert_int_equal(n, 5);
    /* remove every other while iterating, successor first */
    gw_job_t *x = gw_fair_next(f, NULL);
    int k = 0;
    while (x != NULL) {
        gw_job_t *next = gw_fair_next(f, x);
        if (k++ % 2 == 0)
            gw_fair_remove(f, x);
        x = next;
    }
    assert_int_equal(gw_fair_count(f), 2);
    assert_int_equal(gw_fair_count_of(f, 0), 1);
    assert_int_equal(gw_fair_count_of(f, 2), 1);
    assert_int_equal(gw_fair_count_of(f, 3), 0);
    gw_fair_destroy(f);
}

/* Batch jobs' frames (job->bulk) are the lowest class: older ones wait while any live frame
 * (camera or camera-less) waits, never supersede or count as a camera's, and come out in
 * order when nothing else waits; iteration and remove see them. */
static void test_bulk_frames_wait_behind_live_ones(void **state)
{
    (void)state;
    gw_fair_t *f;
    gw_job_t b[3], cam, plain;
    assert_int_equal(gw_fair_create(&f, 4, 1), 0);
    for (int i = 0; i < 3; i++) {
        mk(&b[i], 1, (uint64_t)i, 0);
        b[i].bulk = 1;
        assert_null(gw_fair_push(f, &b[i], 0));
    }
    assert_int_equal(gw_fair_count_bulk(f), 3);
    assert_int_equal(gw_fair_count_of(f, 1), 0); /* not the camera's */
    assert_false(gw_fair_would_replace(f, 1));
    assert_null(gw_fair_push(f, mk(&cam, 1, 50, 1), 0));
    assert_null(gw_fair_push(f, mk(&plain, 0, 60, 0), 0));
    assert_int_equal(gw_fair_count(f), 5);
    gw_job_t *first = pop(f, 70), *second = pop(f, 70);
    assert_true((first == &cam && second == &plain) || (first == &plain && second == &cam));
    assert_ptr_equal(pop(f, 70), &b[0]);
    assert_null(gw_fair_push(f, mk(&cam, 1, 80, 2), 0)); /* a live frame arrives: it goes next */
    assert_ptr_equal(pop(f, 80), &cam);
    assert_ptr_equal(gw_fair_next(f, NULL), &b[1]);
    assert_ptr_equal(gw_fair_next(f, &b[1]), &b[2]);
    assert_null(gw_fair_next(f, &b[2]));
    gw_fair_remove(f, &b[1]);
    assert_ptr_equal(pop(f, 90), &b[2]);
    assert_null(pop(f, 90));
    assert_int_equal(gw_fair_count(f), 0);
    gw_fair_destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_rejects_bad_args),
        cmocka_unit_test(test_newer_frame_supersedes_waiting_one),
        cmocka_unit_test(test_batch_frames_wait_in_the_fifo),
        cmocka_unit_test(test_depth_two_keeps_two_newest),
        cmocka_unit_test(test_camera_less_frames_keep_fifo_and_are_never_superseded),
        cmocka_unit_test(test_stale_frames_are_skipped_not_dispatched),
        cmocka_unit_test(test_slow_model_still_serves_fresh_frames),
        cmocka_unit_test(test_round_robin_across_cameras),
        cmocka_unit_test(test_busy_camera_does_not_starve_small_ones),
        cmocka_unit_test(test_superseded_camera_keeps_its_turn),
        cmocka_unit_test(test_weights_share_in_proportion),
        cmocka_unit_test(test_retry_goes_to_the_head_and_supersedes_nothing),
        cmocka_unit_test(test_iteration_and_remove),
        cmocka_unit_test(test_bulk_frames_wait_behind_live_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
