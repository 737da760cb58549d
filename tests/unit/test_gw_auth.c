/* auth.c: the token file's syntax, and every role against every kind of route (a table:
 * role x route mask -> 0, 401 or 403), including a camera's own camera. */
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
                               "  admin-secret-123 admin ops   # trailing comment\n";

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
    gw_token_t t[4];
    char err[256];
    assert_int_equal(gw_auth_parse(file_text, t, 4, err, sizeof err), 3);
    assert_int_equal(t[0].role, GW_ROLE_CAMERA);
    assert_string_equal(t[0].name, "door1");
    assert_int_equal(t[1].role, GW_ROLE_VIEWER);
    assert_string_equal(t[1].name, "viewer-4"); /* ROLE-LINE when unnamed */
    assert_int_equal(t[2].role, GW_ROLE_ADMIN);
    assert_string_equal(t[2].name, "ops");
    /* refusals name the line */
    static const struct {
        const char *text;
        const char *why;
    } bad[] = {
        {"abcdefgh12345 root\n", "1: the role"},
        {"\nabcdefgh12345\n", "2: the role"},
        {"short admin\n", "1: a token has"},
        {"abcdefgh12345 admin a b\n", "1: more than"},
        {"abcdefgh12345 admin bad/name\n", "1: a name"},
        {"abcdefgh12345 admin a\nabcdefgh12345 viewer b\n", "2: the same token"},
        {"a1234567 admin\nb1234567 admin\nc1234567 admin\nd1234567 admin\ne1234567 admin\n",
         "5: more than 4"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(gw_auth_parse(bad[i].text, t, 4, err, sizeof err), PROTO_ECONFIG);
        if (strncmp(err, bad[i].why, strlen(bad[i].why)) != 0)
            fail_msg("case %zu: '%s' does not start with '%s'", i, err, bad[i].why);
    }
}

#define CAM GW_ROLE_CAMERA
#define VIEW GW_ROLE_VIEWER
#define ADM GW_ROLE_ADMIN
#define OWN GW_ALLOW_OWN_CAMERA

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
        /* viewer */
        {"view-secret-1234", CAM, NULL, PROTO_EFORBIDDEN},
        {"view-secret-1234", VIEW, NULL, 0},
        {"view-secret-1234", VIEW | OWN, "door2", 0},
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
    fputs("second-token-2 viewer\nthird-token-33 camera\n", f);
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
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_open),
        cmocka_unit_test(test_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
