/* The jobs registry (jobs.c, jobs_store.c) without a pool or a socket, on its default store
 * (dir:jobs_dir, real files on the threadpool; the loop runs until the store is done): a
 * fake submit keeps the frames it is given, and the test hands them back. A job's objects are
 * read back by a second registry on the same directory: uploaded images, URLs and keys with
 * their names, result objects by index (a malformed one is ignored: that image runs again),
 * the cancel marker; the objects of an upload that never finished are deleted. Dispatch:
 * never more than the window out, bulk frames asking for the annotated image, a frame refused
 * for want of room waits again. Reset deletes jobs/ and nothing else. Counts, never time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "jobs.h"
#include "jobs_internal.h"

#define HELD_MAX 64

static struct {
    gw_job_t *held[HELD_MAX];
    int nheld, refuse, nrefused;
} S;

static int fake_submit(void *ctx, gw_job_t *job)
{
    (void)ctx;
    if (S.refuse) {
        S.nrefused++;
        return PROTO_EQUEUEFULL;
    }
    assert_true(S.nheld < HELD_MAX);
    S.held[S.nheld++] = job;
    return 0;
}

typedef struct {
    uv_loop_t loop;
    gw_config_t cfg;
    char dir[64];
    gw_jobs_t *js;
} fixture_t;

static void open_registry(fixture_t *f)
{
    gw_jobs_io_t io = {.submit = fake_submit};
    char err[256] = "";
    assert_int_equal(gw_jobs_create(&f->js, &f->loop, &f->cfg, &io, err, sizeof err), 0);
    assert_int_equal(f->js->loading, 1); /* read back on the loop */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->js->loading, 0);
}

/* Writes a file under the jobs directory (what a store object is on dir:). */
static void write_at(const fixture_t *f, const char *rel, const char *text)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s/%s')\" && printf '%%s' '%s' > '%s/%s'",
             f->dir, rel, text, f->dir, rel);
    assert_int_equal(system(cmd), 0);
}

static int exists_at(const fixture_t *f, const char *rel)
{
    char path[300];
    snprintf(path, sizeof path, "%s/%s", f->dir, rel);
    return access(path, F_OK) == 0;
}

static struct {
    int calls, err;
} C;

static void on_end(void *arg, int err, const char *msg)
{
    (void)arg, (void)msg;
    C.calls++;
    C.err = err;
}

/* Commits an upload and runs the loop until its objects are stored. */
static void commit(fixture_t *f, gw__batch_t *j, size_t bytes)
{
    C.calls = 0;
    gw__jobs_commit(f->js, j, bytes, on_end, NULL);
    assert_int_equal(gw__jobs_find(f->js, j->id, strlen(j->id)) == NULL, 1); /* not before */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(C.calls, 1);
    assert_int_equal(C.err, 0);
    assert_non_null(gw__jobs_find(f->js, j->id, strlen(j->id)));
}

/* Every frame must be back before destroy: held ones come back as a shutdown. */
static void close_registry(fixture_t *f)
{
    gw_jobs_stop(f->js);
    for (int i = 0; i < S.nheld; i++) {
        S.held[i]->err = PROTO_ESHUTDOWN;
        S.held[i]->on_done(S.held[i]);
    }
    S.nheld = 0;
    gw_jobs_destroy(f->js);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the timer's close callback frees the registry */
    f->js = NULL;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    memset(&S, 0, sizeof S);
    uv_loop_init(&f->loop);
    gw_config_defaults(&f->cfg);
    f->cfg.max_backends = 2;
    f->cfg.backend_concurrency = 1; /* window: 2 x 2 x 1 = 4 */
    f->cfg.max_job_images = 8;
    snprintf(f->dir, sizeof f->dir, "/tmp/fgu-jobs-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->cfg.jobs_dir, sizeof f->cfg.jobs_dir, "%s", f->dir);
    open_registry(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f->js != NULL)
        close_registry(f);
    uv_loop_close(&f->loop);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static const uint8_t JPEG[] = {0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F'};

/* Four images: two uploaded, a URL, a key. */
static gw__batch_t *make_job(fixture_t *f, char *id, size_t idcap)
{
    char msg[160];
    int err = 0;
    gw__batch_t *j = gw__jobs_begin(f->js, "", msg, sizeof msg, &err);
    assert_non_null(j);
    assert_int_equal(gw__jobs_add(f->js, j, 0, "a.jpg", JPEG, sizeof JPEG, msg, sizeof msg), 0);
    assert_int_equal(gw__jobs_add(f->js, j, sizeof JPEG, NULL, JPEG, sizeof JPEG, msg, sizeof msg),
                     0);
    assert_int_equal(gw__jobs_add_ref(f->js, j, NULL, GW__SRC_URL,
                                      "https://example.com/p/c.jpg?x=1", msg, sizeof msg),
                     0);
    assert_int_equal(gw__jobs_add_ref(f->js, j, "named", GW__SRC_KEY, "in/d.jpg", msg, sizeof msg),
                     0);
    commit(f, j, 2 * sizeof JPEG);
    snprintf(id, idcap, "%s", j->id);
    char rel[80];
    snprintf(rel, sizeof rel, "jobs/%s/in/1", id);
    assert_true(exists_at(f, rel)); /* stored before the commit ended */
    return j;
}

static void test_refs_survive_a_restart(void **state)
{
    fixture_t *f = *state;
    char id[32];
    make_job(f, id, sizeof id);
    assert_int_equal(gw_jobs_pending(f->js, "face", 1), 4);
    close_registry(f);
    open_registry(f);
    gw__batch_t *j = gw__jobs_find(f->js, id, strlen(id));
    assert_non_null(j);
    assert_int_equal(j->n, 4);
    assert_int_equal(j->state, GW__JOB_QUEUED);
    assert_string_equal(j->imgs[0].name, "a.jpg");
    assert_string_equal(j->imgs[1].name, "image_1");
    assert_int_equal(j->imgs[1].src, GW__SRC_BYTES);
    assert_int_equal(j->imgs[1].len, sizeof JPEG);
    assert_string_equal(j->imgs[2].name, "c.jpg"); /* the path's last segment */
    assert_int_equal(j->imgs[2].src, GW__SRC_URL);
    assert_string_equal(j->imgs[2].ref, "https://example.com/p/c.jpg?x=1");
    assert_string_equal(j->imgs[3].name, "named");
    assert_int_equal(j->imgs[3].src, GW__SRC_KEY);
    assert_string_equal(j->imgs[3].ref, "in/d.jpg");
    assert_int_equal(gw_jobs_pending(f->js, "face", 1), 4);
    assert_int_equal(gw_jobs_pending(f->js, "other", 0), 0);
}

/* The uploading camera token's list is kept (a bound token sees only its own jobs), and a
 * version-1 meta (written before owners) is still read, with no owner. */
static void test_owner_kept_and_v1_meta_read(void **state)
{
    fixture_t *f = *state;
    char msg[160], id[32];
    int err = 0;
    gw__batch_t *j = gw__jobs_begin(f->js, "", msg, sizeof msg, &err);
    assert_non_null(j);
    snprintf(j->owner, sizeof j->owner, "door1,yard-*");
    assert_int_equal(gw__jobs_add(f->js, j, 0, "a.jpg", JPEG, sizeof JPEG, msg, sizeof msg), 0);
    commit(f, j, sizeof JPEG);
    snprintf(id, sizeof id, "%s", j->id);
    close_registry(f);
    write_at(f, "jobs/0000000000000a1/meta", "framegate-job 1\n-\n1\n1700000000000\n10\told.jpg\n");
    write_at(f, "jobs/0000000000000a1/in/0", "0123456789");
    open_registry(f);
    j = gw__jobs_find(f->js, id, strlen(id));
    assert_non_null(j);
    assert_string_equal(j->owner, "door1,yard-*");
    gw__batch_t *old = gw__jobs_find(f->js, "0000000000000a1", 15);
    assert_non_null(old);
    assert_int_equal(old->n, 1);
    assert_string_equal(old->owner, "");
    assert_string_equal(old->imgs[0].name, "old.jpg");
    assert_int_equal(old->imgs[0].len, 10);
}

static void test_results_read_back_by_index(void **state)
{
    fixture_t *f = *state;
    char id[32], rel[120], text[64];
    make_job(f, id, sizeof id);
    close_registry(f);
    /* index 0 done, 1 failed, 2 malformed (runs again), 9 out of range, a stray key; and the
     * inputs of an upload that never wrote its meta */
    snprintf(rel, sizeof rel, "jobs/%s/res/0", id);
    snprintf(text, sizeof text, "%d\tdog\t{}", GW__IMG_DONE);
    write_at(f, rel, text);
    snprintf(rel, sizeof rel, "jobs/%s/res/1", id);
    snprintf(text, sizeof text, "%d\terror\t{}", GW__IMG_FAILED);
    write_at(f, rel, text);
    snprintf(rel, sizeof rel, "jobs/%s/res/2", id);
    write_at(f, rel, "cat");
    snprintf(rel, sizeof rel, "jobs/%s/res/9", id);
    write_at(f, rel, text);
    snprintf(rel, sizeof rel, "jobs/%s/res/x", id);
    write_at(f, rel, text);
    write_at(f, "jobs/00000000001beef/in/0", "abc");
    open_registry(f);
    assert_false(exists_at(f, "jobs/00000000001beef")); /* deleted at the load */
    assert_int_equal(f->js->njobs, 1);
    gw__batch_t *j = gw__jobs_find(f->js, id, strlen(id));
    assert_non_null(j);
    assert_int_equal(j->ndone, 1);
    assert_int_equal(j->nfailed, 1);
    assert_string_equal(j->imgs[0].label, "dog");
    assert_int_equal(j->imgs[2].st, GW__IMG_PENDING);
    assert_int_equal(gw_jobs_pending(f->js, "", 1), 2);
    /* cancelled: nothing pending for the autoscaler, also after a restart */
    gw__jobs_cancel(f->js, j);
    assert_int_equal(gw_jobs_pending(f->js, "", 1), 0);
    close_registry(f);
    open_registry(f);
    j = gw__jobs_find(f->js, id, strlen(id));
    assert_non_null(j);
    assert_int_equal(j->state, GW__JOB_CANCELLED);
    gw_jobs_start(f->js);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(S.nheld, 0);
}

/* A frame done writes res/N (and out/N.jpg); a restart counts it once, sends only the rest. */
static void test_result_written_once_per_image(void **state)
{
    fixture_t *f = *state;
    char id[32], rel[120];
    gw__batch_t *j = make_job(f, id, sizeof id);
    gw_jobs_start(f->js);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(S.nheld, 2); /* the two uploaded images; the URL and key cannot be fetched */
    assert_int_equal(j->nfailed, 2);
    gw_job_t *g = S.held[0];
    S.held[0] = S.held[--S.nheld];
    int idx = g->image_len == sizeof JPEG ? 0 : -1;
    assert_int_equal(idx, 0);
    g->err = 0;
    g->on_done(g);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int done = -1;
    for (int i = 0; i < 2; i++)
        if (j->imgs[i].st == GW__IMG_DONE)
            done = i;
    assert_true(done >= 0);
    snprintf(rel, sizeof rel, "jobs/%s/res/%d", id, done);
    assert_true(exists_at(f, rel));
    close_registry(f);
    open_registry(f);
    j = gw__jobs_find(f->js, id, strlen(id));
    assert_non_null(j);
    assert_int_equal(j->ndone, 1);
    assert_int_equal(j->nfailed, 2);
    gw_jobs_start(f->js);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(S.nheld, 1); /* only the image not done */
    assert_int_equal(j->imgs[1 - done].st, GW__IMG_OUT);
}

/* Reset: every job and every object under jobs/ goes; a sibling prefix of the store stays. */
static void test_reset_deletes_jobs_only(void **state)
{
    fixture_t *f = *state;
    char id[32], rel[120];
    make_job(f, id, sizeof id);
    write_at(f, "cam/frame.jpg", "x");
    write_at(f, "jobs/2026/11/27/jobs-1.jpg", "x"); /* a camera named "jobs" */
    C.calls = 0;
    assert_int_equal(gw__jobs_reset(f->js, on_end, NULL), 1);
    assert_int_equal(f->js->njobs, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(C.calls, 1);
    assert_int_equal(C.err, 0);
    snprintf(rel, sizeof rel, "jobs/%s", id);
    assert_false(exists_at(f, rel));
    assert_true(exists_at(f, "cam/frame.jpg"));
    assert_true(exists_at(f, "jobs/2026/11/27/jobs-1.jpg"));
    /* nothing left to delete: answered all the same */
    C.calls = 0;
    assert_int_equal(gw__jobs_reset(f->js, on_end, NULL), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(C.calls, 1);
    assert_int_equal(C.err, 0);
    assert_true(exists_at(f, "cam/frame.jpg"));
    close_registry(f);
    open_registry(f);
    assert_int_equal(f->js->njobs, 0);
}

static void test_window_and_refusal(void **state)
{
    fixture_t *f = *state;
    char msg[160];
    int err = 0;
    gw__batch_t *j = gw__jobs_begin(f->js, "", msg, sizeof msg, &err);
    assert_non_null(j);
    for (int i = 0; i < 8; i++)
        assert_int_equal(gw__jobs_add(f->js, j, (size_t)i * sizeof JPEG, NULL, JPEG, sizeof JPEG,
                                      msg, sizeof msg),
                         0);
    assert_int_equal(
        gw__jobs_add(f->js, j, 8 * sizeof JPEG, NULL, JPEG, sizeof JPEG, msg, sizeof msg),
        PROTO_ETOOBIG); /* max_job_images */
    commit(f, j, 8 * sizeof JPEG);
    gw_jobs_start(f->js);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the inputs are read back from the store */
    assert_int_equal(S.nheld, 4);     /* the window */
    for (int i = 0; i < S.nheld; i++) {
        assert_int_equal(S.held[i]->bulk, 1);
        assert_int_equal(S.held[i]->opts.output, PROTO_OUT_JPEG);
        assert_int_equal(S.held[i]->image_len, sizeof JPEG);
    }
    assert_int_equal(j->state, GW__JOB_RUNNING);
    /* the pool refuses for want of room: the frame that came back waits again, nothing fails */
    S.refuse = 1;
    gw_job_t *g = S.held[0];
    S.held[0] = S.held[--S.nheld];
    g->err = PROTO_EQUEUEFULL;
    g->on_done(g);
    /* Sent again at once: read back, refused again, then it waits for the retry timer, and
     * no other image is read and offered meanwhile. (Reads complete in any order, so which
     * image g was is not known: it is the one of the first four that waits.) */
    int npending = 0, nout = 0;
    for (int it = 0; it < 100; it++) {
        npending = nout = 0;
        for (int i = 0; i < 4; i++)
            npending += j->imgs[i].st == GW__IMG_PENDING;
        if (npending == 1)
            break;
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_int_equal(npending, 1);
    assert_int_equal(S.nrefused, 1);
    /* the retry timer is 200 ms away: turning the loop meanwhile reads and offers nothing */
    for (int it = 0; it < 20; it++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(S.nrefused, 1);
    for (int i = 0; i < 8; i++)
        nout += j->imgs[i].st == GW__IMG_OUT;
    assert_int_equal(nout, 3); /* 4..7 were not read while the pool refuses */
    assert_int_equal(S.nheld, 3);
    assert_int_equal(j->nfailed, 0);
    assert_int_equal(gw_jobs_pending(f->js, "", 1), 8);
}

static void test_refs_checked_at_upload(void **state)
{
    fixture_t *f = *state;
    char msg[160];
    int err = 0;
    gw__batch_t *j = gw__jobs_begin(f->js, "", msg, sizeof msg, &err);
    assert_non_null(j);
    const char *bad_urls[] = {"ftp://example.com/a.jpg", "file:///etc/passwd",
                              "http://example.com/a b.jpg", "http://example.com/\n.jpg"};
    for (size_t i = 0; i < sizeof bad_urls / sizeof *bad_urls; i++)
        assert_int_equal(
            gw__jobs_add_ref(f->js, j, NULL, GW__SRC_URL, bad_urls[i], msg, sizeof msg),
            PROTO_EINVAL);
    const char *bad_keys[] = {"../x.jpg", "/abs.jpg", "a//b.jpg", "a/b c.jpg"};
    for (size_t i = 0; i < sizeof bad_keys / sizeof *bad_keys; i++)
        assert_int_equal(
            gw__jobs_add_ref(f->js, j, NULL, GW__SRC_KEY, bad_keys[i], msg, sizeof msg),
            PROTO_EINVAL);
    assert_int_equal(j->n, 0);
    gw__jobs_abort(f->js, j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refs_survive_a_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_owner_kept_and_v1_meta_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results_read_back_by_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_written_once_per_image, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_deletes_jobs_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_and_refusal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refs_checked_at_upload, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
