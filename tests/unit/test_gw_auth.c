/* auth.c: the token file's syntax, and every role against every kind of route (a table:
 * role x route mask -> 0, 401 or 403), including a camera token bound to its cameras; and
 * that a wrong token costs what a right one does (the bytes compared, counted: no timing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "err.h"

static const char *file_text = "# tokens for the test\n"
                               "cam-secret-1234 camera door1\n"
                               "\n"
                               "view-secret-1234 viewer\n"
                               "  admin-secret-123 admin ops   # trailing comment\n"
                               "yard-secret-1234 camera yard cameras=door1,yard-*  # two\n"
                               "any-cam-secret-1 camera cameras=*\n";

static char path[64];

static gw_auth_t *open_tokens(const char *text)
{
    snprintf(path, sizeof path, "/tmp/fgauthXXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    gw_auth_t *a = NULL;
    char err[256];
    if (gw_auth_create(&a, path, err, sizeof err) != 0)
        fail_msg("%s", err);
    return a;
}

static void test_parse(void **state)
{
    (void)state;
    gw_token_t t[5];
    char err[256];
    assert_int_equal(gw_auth_parse(file_text, t, 5, err, sizeof err), 5);
    assert_int_equal(t[0].role, GW_ROLE_CAMERA);
    assert_string_equal(t[0].name, "door1");
    assert_string_equal(t[0].cameras, "door1"); /* NAME is its camera */
    assert_int_equal(t[1].role, GW_ROLE_VIEWER);
    assert_string_equal(t[1].name, "viewer-4"); /* ROLE-LINE when unnamed */
    assert_string_equal(t[1].cameras, "");
    assert_int_equal(t[2].role, GW_ROLE_ADMIN);
    assert_string_equal(t[2].name, "ops");
    assert_string_equal(t[2].cameras, "");
    assert_string_equal(t[3].name, "yard");
    assert_string_equal(t[3].cameras, "door1,yard-*");
    assert_string_equal(t[4].name, "camera-7");
    assert_string_equal(t[4].cameras, "*");
    /* refusals name the line */
    static const struct {
        const char *text;
        const char *why;
    } bad[] = {
        {"abcdefgh12345 root\n", "1: the role"},
        {"\nabcdefgh12345\n", "2: the role"},
        {"short admin\n", "1: a token has"},
        {"abcdefgh12345 admin a b\n", "1: more than"},
        {"abcdefgh12345 camera a cameras=b c\n", "1: more than"},
        {"abcdefgh12345 camera cameras=b a\n", "1: more than"},
        {"abcdefgh12345 admin bad/name\n", "1: a name"},
        /* a camera token is bound to cameras: NAME or cameras= */
        {"abcdefgh12345 camera\n", "1: a camera token names"},
        {"abcdefgh12345 camera # door1\n", "1: a camera token names"},
        {"abcdefgh12345 viewer v cameras=a\n", "1: cameras= binds camera tokens only"},
        {"abcdefgh12345 camera c cameras=\n", "1: cameras are"},
        {"abcdefgh12345 camera c cameras=a,,b\n", "1: cameras are"},
        {"abcdefgh12345 camera c cameras=a,\n", "1: cameras are"},
        {"abcdefgh12345 camera c cameras=a*b\n", "1: cameras are"},
        {"abcdefgh12345 camera c cameras=**\n", "1: cameras are"},
        {"abcdefgh12345 camera c cameras=a/b\n", "1: cameras are"},
        {"abcdefgh12345 camera c cameras=.hidden\n", "1: cameras are"},
        {"abcdefgh12345 camera .hidden\n", "1: cameras are"},
        {"abcdefgh12345 admin a\nabcdefgh12345 viewer b\n", "2: the same token"},
        {"a1234567 admin\nb1234567 admin\nc1234567 admin\nd1234567 admin\ne1234567 admin\n"
         "f1234567 admin\n",
         "6: more than 5"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(gw_auth_parse(bad[i].text, t, 5, err, sizeof err), PROTO_ECONFIG);
        if (strncmp(err, bad[i].why, strlen(bad[i].why)) != 0)
            fail_msg("case %zu: '%s' does not start with '%s'", i, err, bad[i].why);
    }
}

#define CAM GW_ROLE_CAMERA
#define VIEW GW_ROLE_VIEWER
#define ADM GW_ROLE_ADMIN
#define OWN GW_ALLOW_OWN_CAMERA
#define KEY GW_OWN_CAMERA_KEY

static void test_roles(void **state)
{
    (void)state;
    gw_auth_t *a = open_tokens(file_text);
    static const struct {
        const char *token; /* NULL: none */
        unsigned allow;
        const char *param;
        int want;
    } cases[] = {
        /* public routes need nothing */
        {NULL, 0, NULL, 0},
        {"wrong-token-000", 0, NULL, 0},
        /* no or unknown token: 401 */
        {NULL, CAM, NULL, PROTO_EUNAUTHORIZED},
        {"", VIEW, NULL, PROTO_EUNAUTHORIZED},
        {"wrong-token-000", CAM, NULL, PROTO_EUNAUTHORIZED},
        {"cam-secret-123", CAM, NULL, PROTO_EUNAUTHORIZED},   /* a prefix */
        {"cam-secret-12345", CAM, NULL, PROTO_EUNAUTHORIZED}, /* longer */
        /* camera */
        {"cam-secret-1234", CAM, NULL, 0},
        {"cam-secret-1234", VIEW, NULL, PROTO_EFORBIDDEN},
        {"cam-secret-1234", ADM, NULL, PROTO_EFORBIDDEN},
        {"cam-secret-1234", VIEW | CAM, NULL, 0},
        {"cam-secret-1234", VIEW | OWN, "door1", 0},
        {"cam-secret-1234", VIEW | OWN, "door2", PROTO_EFORBIDDEN},
        {"cam-secret-1234", VIEW | OWN, "door", PROTO_EFORBIDDEN},
        {"cam-secret-1234", VIEW | OWN, NULL, PROTO_EFORBIDDEN},
        {"cam-secret-1234", VIEW | OWN, "", PROTO_EFORBIDDEN},
        {"cam-secret-1234", VIEW | OWN, "door10", PROTO_EFORBIDDEN},
        /* ... a stored object: its key's first segment is the camera */
        {"cam-secret-1234", VIEW | OWN | KEY, "door1/2026/11/27/22/door1-1.json", 0},
        {"cam-secret-1234", VIEW | OWN | KEY, "door2/2026/11/27/22/door2-1.json", PROTO_EFORBIDDEN},
        {"cam-secret-1234", VIEW | OWN | KEY, "door10/2026/x.json", PROTO_EFORBIDDEN},
        {"cam-secret-1234", VIEW | OWN | KEY, "door1", PROTO_EFORBIDDEN}, /* no segment */
        {"cam-secret-1234", VIEW | OWN | KEY, "/door1/x", PROTO_EFORBIDDEN},
        {"cam-secret-1234", VIEW | KEY, "door1/x", PROTO_EFORBIDDEN}, /* KEY alone allows none */
        /* a camera bound to a list with a prefix */
        {"yard-secret-1234", CAM, NULL, 0}, /* the handler checks the camera */
        {"yard-secret-1234", VIEW | OWN, "door1", 0},
        {"yard-secret-1234", VIEW | OWN, "yard-3", 0},
        {"yard-secret-1234", VIEW | OWN, "yard-", 0},
        {"yard-secret-1234", VIEW | OWN, "yard", PROTO_EFORBIDDEN}, /* its NAME is no camera */
        {"yard-secret-1234", VIEW | OWN, "yar", PROTO_EFORBIDDEN},
        {"yard-secret-1234", VIEW | OWN, "door2", PROTO_EFORBIDDEN},
        {"yard-secret-1234", VIEW | OWN | KEY, "yard-7/2026/x.jpg", 0},
        {"yard-secret-1234", VIEW | OWN | KEY, "yard/2026/x.jpg", PROTO_EFORBIDDEN},
        {"yard-secret-1234", VIEW, NULL, PROTO_EFORBIDDEN},
        {"yard-secret-1234", ADM, NULL, PROTO_EFORBIDDEN},
        /* cameras=*: any camera, still no viewer or admin route */
        {"any-cam-secret-1", VIEW | OWN, "door2", 0},
        {"any-cam-secret-1", VIEW | OWN | KEY, "x/y", 0},
        {"any-cam-secret-1", VIEW, NULL, PROTO_EFORBIDDEN},
        {"any-cam-secret-1", ADM, NULL, PROTO_EFORBIDDEN},
        /* viewer */
        {"view-secret-1234", CAM, NULL, PROTO_EFORBIDDEN},
        {"view-secret-1234", VIEW, NULL, 0},
        {"view-secret-1234", VIEW | OWN, "door2", 0},
        {"view-secret-1234", VIEW | OWN | KEY, "door2/x", 0},
        {"view-secret-1234", ADM, NULL, PROTO_EFORBIDDEN},
        /* admin: everything */
        {"admin-secret-123", CAM, NULL, 0},
        {"admin-secret-123", VIEW | OWN, "x", 0},
        {"admin-secret-123", ADM, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const gw_token_t *who;
        const char *tok = cases[i].token;
        const char *p = cases[i].param;
        int rv = gw_auth_check(a, tok, tok ? strlen(tok) : 0, cases[i].allow, p, p ? strlen(p) : 0,
                               &who);
        if (rv != cases[i].want)
            fail_msg("case %zu (%s, allow %u): %d, want %d", i, tok ? tok : "(none)",
                     cases[i].allow, rv, cases[i].want);
        if (rv == 0 && cases[i].allow != 0)
            assert_non_null(who);
    }
    gw_auth_destroy(a);
    unlink(path);
}

/* A camera list against the camera a request names (gw_frontdoor_camera's question). */
static void test_camera_ok(void **state)
{
    (void)state;
    static const struct {
        const char *list, *camera;
        int want;
    } cases[] = {
        {"", "", 1}, /* not bound: anything, or nothing */
        {"", "x", 1},
        {"*", "", 1},
        {"*", "any-camera", 1},
        {"door1", "door1", 1},
        {"door1", "", 0}, /* bound: the request must name one */
        {"door1", "door", 0},
        {"door1", "door12", 0},
        {"door1", "Door1", 0},
        {"door1,door2", "door2", 1},
        {"door1,door2", "door3", 0},
        {"door1,door2", "door1,door2", 0},
        {"yard-*", "yard-", 1},
        {"yard-*", "yard-north", 1},
        {"yard-*", "yard", 0},
        {"yard-*", "", 0},
        {"a,yard-*,b", "b", 1},
        {"a,yard-*,b", "yard-1", 1},
        {"a,yard-*,b", "c", 0},
        {"door1", "door1\xc3\xa9", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rv = gw_auth_camera_ok(cases[i].list, cases[i].camera, strlen(cases[i].camera));
        if (rv != cases[i].want)
            fail_msg("case %zu ('%s' vs '%s'): %d, want %d", i, cases[i].list, cases[i].camera, rv,
                     cases[i].want);
    }
}

/* A wrong token costs what a right one does: whatever is presented -- the first entry's
 * token, the last's, a wrong one of the same length, shorter, longer than any token may be,
 * empty, none -- the whole table's digests are compared, byte for byte, with no early exit.
 * Counted, not timed (auth.c counts each byte it compares). */
static void test_same_work(void **state)
{
    (void)state;
    enum { N = 200 };
    static char text[N * 40];
    size_t o = 0;
    for (int i = 0; i < N; i++)
        o += (size_t)snprintf(text + o, sizeof text - o, "token-%08d %s\n", i,
                              i % 3 == 0   ? "admin"
                              : i % 3 == 1 ? "viewer"
                                           : "camera c1");
    gw_auth_t *a = open_tokens(text);
    assert_int_equal(gw_auth_count(a), N);
    char longer[GW_AUTH_TOKEN_MAX + 2];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    static const unsigned routes[] = {VIEW, ADM, CAM, VIEW | OWN};
    const struct {
        const char *token;
        int right;
    } cases[] = {
        {"token-00000000", 1},  /* the first entry */
        {"token-00000199", 1},  /* the last */
        {"token-00000100", 1},  /* the middle */
        {"token-00000200", 0},  /* wrong, the same length */
        {"token-0000019", 0},   /* a prefix of a right one */
        {"token-000001999", 0}, /* a right one and more */
        {"x", 0},
        {longer, 0},
        {"", 0},
        {NULL, 0},
    };
    uint64_t per_call = (uint64_t)N * 32;
    for (size_t r = 0; r < sizeof routes / sizeof routes[0]; r++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const gw_token_t *who;
            const char *tok = cases[i].token;
            uint64_t before = gw_auth_compared(a);
            int rv = gw_auth_check(a, tok, tok ? strlen(tok) : 0, routes[r], "c1", 2, &who);
            uint64_t cost = gw_auth_compared(a) - before;
            if (cost != per_call)
                fail_msg("route %u, token '%.20s': %llu bytes compared, want %llu", routes[r],
                         tok ? tok : "(none)", (unsigned long long)cost,
                         (unsigned long long)per_call);
            /* and the answer is still right: the work is the same, the outcome is not */
            if (cases[i].right)
                assert_true(rv == 0 || rv == PROTO_EFORBIDDEN);
            else
                assert_int_equal(rv, PROTO_EUNAUTHORIZED);
        }
    /* a public route asks for nothing: no work at all */
    const gw_token_t *who;
    uint64_t before = gw_auth_compared(a);
    assert_int_equal(gw_auth_check(a, "token-00000000", 14, 0, NULL, 0, &who), 0);
    assert_true(gw_auth_compared(a) == before);
    gw_auth_destroy(a);
    unlink(path);
}

/* gw_auth_create_text: the same table without a file. */
static void test_text(void **state)
{
    (void)state;
    gw_auth_t *a = NULL;
    char err[256];
    assert_int_equal(gw_auth_create_text(&a, file_text, err, sizeof err), 0);
    assert_false(gw_auth_open(a));
    assert_int_equal(gw_auth_count(a), 5);
    const gw_token_t *who;
    assert_int_equal(gw_auth_check(a, "yard-secret-1234", 16, VIEW | OWN, "yard-1", 6, &who), 0);
    assert_string_equal(who->cameras, "door1,yard-*");
    assert_int_equal(gw_auth_reload(a, 0, err, sizeof err), 0);
    gw_auth_destroy(a);
    assert_int_equal(gw_auth_create_text(&a, "x camera\n", err, sizeof err), PROTO_ECONFIG);
}

/* No file: everything open, whatever the token. */
static void test_open(void **state)
{
    (void)state;
    gw_auth_t *a = NULL;
    char err[128];
    assert_int_equal(gw_auth_create(&a, "", err, sizeof err), 0);
    assert_true(gw_auth_open(a));
    const gw_token_t *who;
    assert_int_equal(gw_auth_check(a, NULL, 0, ADM, NULL, 0, &who), 0);
    assert_int_equal(gw_auth_reload(a, 1, err, sizeof err), 0);
    gw_auth_destroy(a);
    assert_int_equal(gw_auth_create(&a, "/nonexistent/tokens", err, sizeof err), PROTO_ECONFIG);
}

/* A changed file replaces the table; a broken one keeps the previous table. */
static void test_reload(void **state)
{
    (void)state;
    gw_auth_t *a = open_tokens("first-token-1 admin\n");
    const gw_token_t *who;
    char err[256];
    assert_int_equal(gw_auth_reload(a, 0, err, sizeof err), 0); /* unchanged */
    FILE *f = fopen(path, "w");
    fputs("second-token-2 viewer\nthird-token-33 camera c3\n", f);
    fclose(f);
    assert_int_equal(gw_auth_reload(a, 0, err, sizeof err), 1); /* the size changed */
    assert_int_equal(gw_auth_count(a), 2);
    assert_int_equal(gw_auth_check(a, "first-token-1", 13, VIEW, NULL, 0, &who),
                     PROTO_EUNAUTHORIZED);
    assert_int_equal(gw_auth_check(a, "second-token-2", 14, VIEW, NULL, 0, &who), 0);
    f = fopen(path, "w");
    fputs("broken\n", f);
    fclose(f);
    assert_int_equal(gw_auth_reload(a, 1, err, sizeof err), PROTO_ECONFIG);
    assert_non_null(strstr(err, ":1: the role"));
    assert_int_equal(gw_auth_check(a, "second-token-2", 14, VIEW, NULL, 0, &who), 0);
    gw_auth_destroy(a);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),     cmocka_unit_test(test_roles),
        cmocka_unit_test(test_camera_ok), cmocka_unit_test(test_same_work),
        cmocka_unit_test(test_text),      cmocka_unit_test(test_open),
        cmocka_unit_test(test_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
