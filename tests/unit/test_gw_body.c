/* Body formats: media types, base64 (both alphabets, padding, garbage), multipart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "body.h"
#include "err.h"

static void test_media_type(void **state)
{
    (void)state;
    char mt[64], b[64];
    assert_int_equal(gw_body_media_type("Image/JPEG; charset=x", mt, sizeof mt), 0);
    assert_string_equal(mt, "image/jpeg");
    assert_int_equal(gw_body_media_type("  application/json", mt, sizeof mt), 0);
    assert_string_equal(mt, "application/json");
    assert_int_equal(gw_body_media_type("", mt, sizeof mt), PROTO_EINVAL);
    assert_int_equal(gw_body_media_type(NULL, mt, sizeof mt), PROTO_EINVAL);
    assert_int_equal(gw_body_media_type("a/bbbbbbbbbbbbbbbbbbbbbbbbbb", mt, 8), PROTO_EINVAL);
    assert_int_equal(gw_body_param("multipart/form-data; boundary=abc", "boundary", b, sizeof b),
                     0);
    assert_string_equal(b, "abc");
    assert_int_equal(
        gw_body_param("multipart/form-data; charset=x; BOUNDARY=\"a b\"", "boundary", b, sizeof b),
        0);
    assert_string_equal(b, "a b");
    assert_int_equal(gw_body_param("multipart/form-data", "boundary", b, sizeof b), PROTO_EINVAL);
    /* a ';' or a parameter look-alike inside a quoted value is not a parameter */
    assert_int_equal(
        gw_body_param("form-data; filename=\"a;name=evil\"; name=\"img\"", "name", b, sizeof b), 0);
    assert_string_equal(b, "img");
    assert_int_equal(gw_body_param("form-data; filename=\"x.jpg\"", "name", b, sizeof b),
                     PROTO_EINVAL);
    assert_int_equal(gw_body_param("a/b; boundary=0123456789", "boundary", b, 8), PROTO_EINVAL);
    assert_int_equal(gw_body_param("multipart/form-data; boundary=", "boundary", b, sizeof b),
                     PROTO_EINVAL);
}

static int b64(const char *in, uint8_t *out, size_t *n)
{
    return gw_body_b64_decode(in, strlen(in), out, n);
}

static void test_base64(void **state)
{
    (void)state;
    uint8_t out[64];
    size_t n;
    assert_int_equal(b64("aGVsbG8=", out, &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "hello", 5);
    assert_int_equal(b64("aGVsbG8", out, &n), 0); /* padding optional */
    assert_int_equal(n, 5);
    assert_int_equal(b64("", out, &n), 0);
    assert_int_equal(n, 0);
    /* url-safe and standard alphabets: 0xfb 0xff 0xbf */
    assert_int_equal(b64("+/+/", out, &n), 0);
    assert_int_equal(n, 3);
    uint8_t std[3];
    memcpy(std, out, 3);
    assert_int_equal(b64("-_-_", out, &n), 0);
    assert_memory_equal(out, std, 3);
    assert_int_equal(b64("data:image/jpeg;base64,aGk=", out, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "hi", 2);
    assert_int_equal(b64("aGk=\n", out, &n), 0);
    assert_int_equal(b64("!!!!", out, &n), PROTO_EINVAL);
    assert_int_equal(b64("aG k", out, &n), PROTO_EINVAL);
    assert_int_equal(b64("a", out, &n), PROTO_EINVAL);
    assert_int_equal(b64("aGk==", out, &n), PROTO_EINVAL); /* misplaced padding */
    assert_int_equal(b64("a=Gk", out, &n), PROTO_EINVAL);
    assert_int_equal(b64("data:image/jpeg,aGk=", out, &n), PROTO_EINVAL);
    /* gw_body_b64_max bounds the output for any length */
    for (size_t len = 0; len < 40; len++)
        assert_true(gw_body_b64_max(len) >= len * 3 / 4);
}

typedef struct {
    int n;
    char names[8][32];
    size_t lens[8];
    char first[64];
} parts_t;

static int collect(void *arg, const gw_part_t *p)
{
    parts_t *ps = arg;
    if (ps->n >= 8)
        return -1;
    snprintf(ps->names[ps->n], sizeof ps->names[ps->n], "%.31s", p->name);
    ps->lens[ps->n] = p->len;
    if (ps->n == 0 && p->len < sizeof ps->first) {
        memcpy(ps->first, p->data, p->len);
        ps->first[p->len] = '\0';
    }
    ps->n++;
    return 0;
}

static int mp(const char *body, parts_t *ps)
{
    memset(ps, 0, sizeof *ps);
    /* A heap copy of exactly the body's length lets ASan catch any over-read. */
    size_t len = strlen(body);
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, body, len);
    int rv = gw_body_multipart(copy, len, "XyZ", collect, ps);
    free(copy);
    return rv;
}

static void test_multipart(void **state)
{
    (void)state;
    parts_t ps;
    const char *good = "--XyZ\r\n"
                       "Content-Disposition: form-data; name=\"camera\"\r\n\r\n"
                       "cam-1\r\n"
                       "--XyZ\r\n"
                       "Content-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
                       "Content-Type: image/jpeg\r\n\r\n"
                       "\xff\xd8 binary \r\n data\r\n"
                       "--XyZ--\r\n";
    assert_int_equal(mp(good, &ps), 2);
    assert_string_equal(ps.names[0], "camera");
    assert_string_equal(ps.first, "cam-1");
    assert_string_equal(ps.names[1], "image");
    assert_int_equal(ps.lens[1], strlen("\xff\xd8 binary \r\n data"));

    /* a preamble before the first delimiter is skipped */
    assert_int_equal(mp("preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n"
                        "1\r\n--XyZ--",
                        &ps),
                     1);
    /* truncated: no closing delimiter */
    assert_true(mp("--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n123", &ps) < 0);
    /* no header end */
    assert_true(mp("--XyZ\r\nContent-Disposition: form-data; name=\"a\"", &ps) < 0);
    /* no delimiter at all */
    assert_true(mp("just some bytes", &ps) < 0);
    assert_true(mp("", &ps) < 0);
    /* every prefix of a good body is rejected or parsed, never over-read */
    size_t len = strlen(good);
    for (size_t cut = 0; cut < len; cut++) {
        char *p = malloc(cut + 1);
        memcpy(p, good, cut);
        p[cut] = '\0';
        (void)mp(p, &ps);
        free(p);
    }
    /* the callback can stop the walk */
    char many[2048] = "";
    for (int i = 0; i < 12; i++)
        strcat(many, "--XyZ\r\nContent-Disposition: form-data; name=\"p\"\r\n\r\nx\r\n");
    strcat(many, "--XyZ--\r\n");
    assert_int_equal(mp(many, &ps), -1);
    assert_int_equal(ps.n, 8);
}

static int count_parts(void *arg, const gw_part_t *p)
{
    (void)p;
    ++*(int *)arg;
    return 0;
}

static void test_multipart_more(void **state)
{
    (void)state;
    parts_t ps;
    /* Many parts, each with its own filename and type. */
    size_t cap = 200 * 128, len = 0;
    char *many = malloc(cap);
    for (int i = 0; i < 200; i++)
        len += (size_t)snprintf(many + len, cap - len,
                                "--XyZ\r\nContent-Disposition: form-data; name=\"f%d\"; "
                                "filename=\"%d.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n%d\r\n",
                                i, i, i);
    len += (size_t)snprintf(many + len, cap - len, "--XyZ--");
    int n = 0;
    assert_int_equal(gw_body_multipart((const uint8_t *)many, len, "XyZ", count_parts, &n), 200);
    assert_int_equal(n, 200);
    free(many);
    /* A part without headers, transport padding after a delimiter, names and filenames. */
    assert_int_equal(mp("--XyZ  \r\n\r\nraw\r\n--XyZ\r\nContent-Disposition: form-data; "
                        "filename=\"a;b.jpg\"; name=\"image\"\r\n\r\nimg\r\n--XyZ--",
                        &ps),
                     2);
    assert_string_equal(ps.names[0], "");
    assert_string_equal(ps.first, "raw");
    assert_string_equal(ps.names[1], "image");
    assert_int_equal(ps.lens[1], 3);
    /* An empty part is a part of length 0. */
    assert_int_equal(mp("--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n"
                        "\r\n--XyZ--",
                        &ps),
                     1);
    assert_int_equal(ps.lens[0], 0);
    /* Part headers over 8 KiB; a boundary over 70 characters; garbage after a delimiter. */
    char *big = malloc(10000);
    int bl = snprintf(big, 10000, "--XyZ\r\nX-Pad: ");
    memset(big + bl, 'p', 9000);
    snprintf(big + bl + 9000, 10000 - (size_t)bl - 9000, "\r\n\r\nx\r\n--XyZ--");
    assert_int_equal(mp(big, &ps), PROTO_EINVAL);
    free(big);
    char longb[80];
    memset(longb, 'b', 71);
    longb[71] = '\0';
    assert_int_equal(gw_body_multipart((const uint8_t *)"x", 1, longb, collect, &ps), PROTO_EINVAL);
    assert_int_equal(gw_body_multipart((const uint8_t *)"x", 1, "", collect, &ps), PROTO_EINVAL);
    /* An empty body, as the HTTP parser hands over "Content-Length: 0" (NULL, 0): found by
     * fuzz_http under UBSan (NULL + 0). */
    assert_int_equal(gw_body_multipart(NULL, 0, "XyZ", collect, &ps), PROTO_EINVAL);
    assert_int_equal(mp("--XyZjunk\r\n\r\nx\r\n--XyZ--", &ps), PROTO_EINVAL);
}

static void test_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        int ok;
    } cases[] = {
        {"", 0, 1},
        {"plain", 5, 1},
        {"caf\xc3\xa9", 5, 1},
        {"\xf0\x9f\x93\xb7", 4, 1},
        {"\xef\xbf\xbf", 3, 1},      /* U+FFFF */
        {"\xf4\x8f\xbf\xbf", 4, 1},  /* U+10FFFF */
        {"\xff", 1, 0},
        {"\xc3", 1, 0},              /* cut short */
        {"\xc3\x28", 2, 0},
        {"\xc0\xaf", 2, 0},          /* overlong */
        {"\xe0\x80\xaf", 3, 0},      /* overlong */
        {"\xed\xa0\x80", 3, 0},      /* surrogate */
        {"\xf4\x90\x80\x80", 4, 0},  /* above U+10FFFF */
        {"a\0b", 3, 0},              /* NUL */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(gw_body_utf8_valid(cases[i].s, cases[i].len), cases[i].ok);
    char s[] = "a\xff" "b\xc3\xa9\xc3";
    gw_body_utf8_sanitize(s, strlen(s));
    assert_string_equal(s, "a?b\xc3\xa9?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_media_type),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_multipart),
        cmocka_unit_test(test_multipart_more),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
