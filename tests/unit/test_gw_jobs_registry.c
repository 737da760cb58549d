/* The jobs registry (jobs.c, jobs_files.c) without a pool or a socket: a fake submit keeps
 * the frames it is given, and the test hands them back. A job's files are read back by a
 * second registry on the same directory: uploaded images, URLs and keys with their names,
 * result lines (a line cut by a kill is ignored, a repeated index counts once), the cancel
 * marker. Dispatch: never more than the window out, bulk frames asking for the annotated
 * image, a frame refused for want of room waits again. Counts, never time. */
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
    int nheld, refuse;
} S;

static int fake_submit(void *ctx, gw_job_t *job)
{
    (void)ctx;
    if (S.refuse)
        return PROTO_EQUEUEFULL;
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
    assert_int_equal(gw__jobs_commit(f->js, j, 2 * sizeof JPEG, msg, sizeof msg), 0);
    snprintf(id, idcap, "%s", j->id);
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

static void test_results_read_back_by_index(void **state)
{
    fixture_t *f = *state;
    char id[32], path[200];
    make_job(f, id, sizeof id);
    close_registry(f);
    /* index 0 done (twice: counted once), 1 failed, 2 cut by a kill (no newline) */
    snprintf(path, sizeof path, "%s/%s/results", f->dir, id);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "0\t%d\tdog\t{}\n0\t%d\tdog\t{}\n1\t%d\terror\t{}\n2\t%d\tcat\t{", GW__IMG_DONE,
            GW__IMG_DONE, GW__IMG_FAILED, GW__IMG_DONE);
    fclose(fp);
    open_registry(f);
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
    assert_int_equal(S.nheld, 0);
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
    assert_int_equal(gw__jobs_commit(f->js, j, 8 * sizeof JPEG, msg, sizeof msg), 0);
    gw_jobs_start(f->js);
    assert_int_equal(S.nheld, 4); /* the window */
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
    assert_int_equal(S.nheld, 3);
    assert_int_equal(j->nfailed, 0);
    assert_int_equal(j->imgs[0].st, GW__IMG_PENDING);
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
        cmocka_unit_test_setup_teardown(test_results_read_back_by_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_and_refusal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refs_checked_at_upload, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
