/* The MJPEG part parser, fed byte by byte and in every split: frames come out whole and in
 * order whatever the reads, and every bad length or shape is refused with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "mjpeg.h"

#define MAXF 16

typedef struct {
    int n;
    size_t len[MAXF];
    uint8_t first_tag[MAXF]; /* the byte after FF D8 FF: which frame it was */
} got_t;

static void on_frame(void *arg, const uint8_t *jpeg, size_t len)
{
    got_t *g = arg;
    assert_true(len >= 4 && jpeg[0] == 0xFF && jpeg[1] == 0xD8 && jpeg[2] == 0xFF);
    assert_true(g->n < MAXF);
    g->len[g->n] = len;
    g->first_tag[g->n] = jpeg[3];
    g->n++;
}

/* A fake JPEG of `len` bytes tagged `tag` (FF D8 FF tag ... FF D9). */
static size_t fake_jpeg(uint8_t *out, size_t len, uint8_t tag)
{
    memset(out, 0x11, len);
    out[0] = 0xFF, out[1] = 0xD8, out[2] = 0xFF, out[3] = tag;
    out[len - 2] = 0xFF, out[len - 1] = 0xD9;
    return len;
}

/* Appends one part; with_len: a Content-Length header. */
static size_t part(uint8_t *out, const char *bnd, const uint8_t *body, size_t n, int with_len)
{
    size_t k = 0;
    if (with_len)
        k = (size_t)sprintf((char *)out,
                            "--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %zu"
                            "\r\n\r\n",
                            bnd, n);
    else
        k = (size_t)sprintf((char *)out, "--%s\r\nContent-Type: image/jpeg\r\n\r\n", bnd);
    memcpy(out + k, body, n);
    k += n;
    memcpy(out + k, "\r\n", 2);
    return k + 2;
}

static size_t stream(uint8_t *buf, int with_len)
{
    uint8_t img[600];
    size_t k = 0;
    for (int i = 0; i < 3; i++) {
        size_t n = fake_jpeg(img, 300 + (size_t)i * 100, (uint8_t)(0xE0 + i));
        k += part(buf + k, "fgframe", img, n, with_len);
    }
    return k;
}

static void feed_all(const uint8_t *buf, size_t len, size_t split, int expect_rv, got_t *g,
                     gw_mjpeg_t *p)
{
    int rv = 0;
    for (size_t off = 0; off < len && rv == 0; off += split) {
        size_t n = len - off < split ? len - off : split;
        rv = gw_mjpeg_feed(p, buf + off, n, on_frame, g);
    }
    assert_int_equal(rv, expect_rv);
}

static void test_frames_whole_in_every_split(void **state)
{
    (void)state;
    uint8_t buf[4096];
    for (int with_len = 0; with_len < 2; with_len++) {
        size_t len = stream(buf, with_len);
        for (size_t split = 1; split <= len; split += split < 64 ? 1 : 97) {
            gw_mjpeg_t p;
            got_t g = {0};
            assert_int_equal(gw_mjpeg_init(&p, "multipart/x-mixed-replace; boundary=fgframe", 1000),
                             0);
            feed_all(buf, len, split, 0, &g, &p);
            /* without a length, a part ends at the next delimiter: the last waits for it */
            assert_int_equal(g.n, with_len ? 3 : 2);
            for (int i = 0; i < g.n; i++) {
                assert_int_equal(g.len[i], 300 + (size_t)i * 100);
                assert_int_equal(g.first_tag[i], 0xE0 + i);
            }
            gw_mjpeg_fini(&p);
        }
    }
}

static void test_boundary_forms(void **state)
{
    (void)state;
    gw_mjpeg_t p;
    assert_int_equal(gw_mjpeg_init(&p, "multipart/x-mixed-replace;boundary=\"fgframe\"", 1000), 0);
    assert_string_equal(p.delim, "--fgframe");
    assert_int_equal(gw_mjpeg_init(&p, "multipart/x-mixed-replace; boundary=--fgframe", 1000), 0);
    assert_string_equal(p.delim, "--fgframe");
    assert_int_equal(gw_mjpeg_init(&p, "Multipart/X-Mixed-Replace; charset=x; BOUNDARY=ab", 1000),
                     0);
    assert_string_equal(p.delim, "--ab");
    assert_int_equal(gw_mjpeg_init(&p, "image/jpeg", 1000), PROTO_EFORMAT);
    assert_non_null(strstr(p.error, "not multipart"));
    assert_int_equal(gw_mjpeg_init(&p, "multipart/x-mixed-replace", 1000), PROTO_EFORMAT);
    assert_non_null(strstr(p.error, "no boundary"));
    assert_int_equal(gw_mjpeg_init(&p, "multipart/x-mixed-replace; boundary=", 1000),
                     PROTO_EFORMAT);
    char ct[200];
    snprintf(ct, sizeof ct, "multipart/x-mixed-replace; boundary=%071d", 0);
    assert_int_equal(gw_mjpeg_init(&p, ct, 1000), PROTO_EFORMAT);
    assert_int_equal(gw_mjpeg_init(&p, NULL, 1000), PROTO_EFORMAT);
}

static void expect_error(const char *body, size_t len, size_t max_part, int code, const char *words,
                         int frames_before)
{
    gw_mjpeg_t p;
    got_t g = {0};
    assert_int_equal(gw_mjpeg_init(&p, "multipart/x-mixed-replace; boundary=b", max_part), 0);
    feed_all((const uint8_t *)body, len, 7, code, &g, &p);
    assert_int_equal(g.n, frames_before);
    if (strstr(p.error, words) == NULL)
        fail_msg("error '%s' lacks '%s'", p.error, words);
    /* spent: nothing more is taken */
    assert_int_equal(gw_mjpeg_feed(&p, (const uint8_t *)"--b\r\n", 5, on_frame, &g), PROTO_EINVAL);
    gw_mjpeg_fini(&p);
}

static void test_bad_parts_refused(void **state)
{
    (void)state;
    char big[400];
    /* a declared length over max_part: refused before a byte of it is kept */
    snprintf(big, sizeof big, "--b\r\nContent-Length: 5000\r\n\r\n");
    expect_error(big, strlen(big), 1000, PROTO_ETOOBIG, "part of 5000 bytes, over the limit", 0);
    /* lengths that are not numbers */
    const char *bad_len[] = {"-1", "1e3", "0x10", "12 34", "", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_len / sizeof bad_len[0]; i++) {
        snprintf(big, sizeof big, "--b\r\nContent-Length: %s\r\n\r\n", bad_len[i]);
        expect_error(big, strlen(big), 1000, PROTO_EFORMAT, "is not a length", 0);
    }
    /* a part declared an image that is not a JPEG, after a good one */
    snprintf(big, sizeof big,
             "--b\r\nContent-Length: 4\r\n\r\n\xff\xd8\xff\xe0\r\n"
             "--b\r\nContent-Type: image/jpeg\r\nContent-Length: 5\r\n\r\nhello\r\n");
    expect_error(big, strlen(big), 1000, PROTO_EFORMAT, "part 2 (5 bytes) is not a JPEG", 1);
}

static void test_unbounded_input_refused(void **state)
{
    (void)state;
    size_t n = 6000;
    char *s = malloc(n + 100);
    /* no delimiter at all */
    memset(s, 'x', n);
    expect_error(s, n, 1000, PROTO_EFORMAT, "no boundary", 0);
    /* a part without a length that never ends */
    int k = sprintf(s, "--b\r\n\r\n\xff\xd8\xff");
    memset(s + k, 'y', n - (size_t)k);
    expect_error(s, n, 1000, PROTO_ETOOBIG, "no end found", 0);
    /* headers that never end */
    char *h = malloc(GW_MJPEG_HEADERS_MAX + 200);
    k = sprintf(h, "--b\r\n");
    memset(h + k, 'h', GW_MJPEG_HEADERS_MAX + 100);
    expect_error(h, (size_t)k + GW_MJPEG_HEADERS_MAX + 100, 100000, PROTO_EFORMAT, "headers over",
                 0);
    free(h);
    free(s);
}

static void test_preamble_text_parts_and_close(void **state)
{
    (void)state;
    const char body[] = "some preamble\r\n--bx not ours\r\n"
                        "--b  \r\nContent-Type: text/plain\r\n\r\nhello\r\n"
                        "--b\n\n\xff\xd8\xff\xe1zz\n"
                        "--b--\r\nepilogue --b\r\n\r\n\xff\xd8\xff\xe2";
    for (size_t split = 1; split < sizeof body; split++) {
        gw_mjpeg_t p;
        got_t g = {0};
        assert_int_equal(gw_mjpeg_init(&p, "multipart/x-mixed-replace; boundary=b", 1000), 0);
        feed_all((const uint8_t *)body, sizeof body - 1, split, 0, &g, &p);
        assert_int_equal(g.n, 1); /* the text part skipped, nothing after the close */
        assert_int_equal(g.len[0], 6);
        assert_int_equal(g.first_tag[0], 0xE1);
        assert_int_equal(p.skipped, 1);
        gw_mjpeg_fini(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_whole_in_every_split),
        cmocka_unit_test(test_boundary_forms),
        cmocka_unit_test(test_bad_parts_refused),
        cmocka_unit_test(test_unbounded_input_refused),
        cmocka_unit_test(test_preamble_text_parts_and_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
