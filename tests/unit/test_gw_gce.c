/* The GCE provider's RS256 on mbedTLS against deterministic vectors (reference/cloud-apis.md
 * §4): RFC 7515 A.2's signing input and signature with its key (as PKCS#8), and a Google-shaped
 * service-account JWT built by gw_gce_jwt, byte for byte (PyJWT verifies it); base64url. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "provider_gce.h"

static const char key[] = "-----BEGIN PRIVATE KEY-----\n"
                          "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCh+BYK4uPJtGXO\n"
                          "jS1lYmM2K5J9vinh8CR3/BYlzJChNuOL2TSXxbbqY913EeZ8dCn5VrD7io8ImtxL\n"
                          "aYk8wTM/U+3QGbh3hCUv7JFP5IV3aVlL6kKA0ywPVb9ilE8TA5a8bpvfbr3SvaNn\n"
                          "juygxmj3AbONv/s4yDQs4v5tJ/reSlpIdJed1LnPmt7Ex1sFhSwsD174pcF1A5L5\n"
                          "ROjtZMEQxrZHYJqkeDrrnGya11UxMFBji4NmXG9veoKjlnAqH2QbgtPr8jkiGUkf\n"
                          "toaHLFcW9Qr4NY2ai50Xw0Byj3+H2JoY2PyrZ62EWQwuz3WTOTY8BwNNb2BvniHg\n"
                          "VFbK5emhAgMBAAECggEAEq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyW\n"
                          "PEAeP88vLNO97IjlA7/GQ5sLKMgvfTeXZx9SE+7YwVol2NXOoAJe46sui395IW/G\n"
                          "O+pWJ1O0BkTGoVEn2bKVRUCgu+GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzj\n"
                          "kn439X0M/V51gfpRLI9JYanrC4D4qAdGcopV/0ZHHzQlBjudU2QvXt4ehNYTCBr6\n"
                          "XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl/x/jTj3ccPDVZFD9pIuhLhBOneufuBiB\n"
                          "4cS98l2SR/RQyGWSeWjnczT0QU91p1DhOVRuOopznQKBgQDgHMQQ60imZV1URk0K\n"
                          "pLttoLhyt3SmqdEf/kgHePDdtzEafpAu+cS191R2JiuoF2yzWXnwFDcqGigp5BNr\n"
                          "0AHQfD8/Lk8l1Mk09jxxCfui5nYooNyac8YFjm3vItzVCVDnEd3BbVWG8qf6deqE\n"
                          "lMGAg+C2V0L4oNXnP7LZcPAZRwKBgQC5A8R+CZW2MvRTLLHzwZkUXV866cff7tx6\n"
                          "kqa0finGG0KgeqlaZPxgCZnFp7AeAcCMtiynVlJ7vMVgePsLq6XtON4tB5kP9jAP\n"
                          "rq3rbAOal78eUH5OcED6eNuCV8ixEu1eWcPNCS/l1OW1EnXUEoEHKl54Xrrz2uNw\n"
                          "kgMTP1FZ1wKBgAcCn1dwJKufzBWQxWQp1vsM5fggqPN1qGb5y0MAk3g7/Ls5bkUp\n"
                          "5u9SN0Ai3Ya6hNnvWJMb7sXQX6U/zyO2M/hTip7tUeh7CXgwo59dkpN75gJLVds2\n"
                          "9+DAncu3KXU4f2Fa+7bLNrur53k8KwPOq2bbuTG69QtV7Jr5MR0AHWKNAoGBAIf/\n"
                          "evpitUf+4JYbLpvNXWcY052Mpz22aR84mY3nh3F2LF2mjMJDpTg7FmuyPcVw6EcG\n"
                          "yoAe9fa65iNqCq+jdw6PVNGo2hxfjSiZ8IIzHdsPXI89//pMjZcQK9r+CCoRjaZj\n"
                          "OYiIDktVWZzmevJuv6WywUqd57LE3Zar3dLSIkx1AoGAIYd7DHOhrWvxkwPQsRM2\n"
                          "tOgrjbcrfvtQJipd+DlcxyVuuM9sQLdgjVk2oy26F0EmpScGLq2MowX7fhd/QJQ3\n"
                          "ydy5cY7YIBi87w93IKLEdfnbJtoOPLUW0ITrJReOgo1cq9SbsxYawBgfp/gh6A56\n"
                          "03k2+ZQwVK0JKSHuLFkuQ3U=\n"
                          "-----END PRIVATE KEY-----\n";

static void test_rfc7515_a2(void **state)
{
    (void)state;
    char sig[600];
    assert_int_equal(
        gw_gce_rs256(key,
                     "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6"
                     "Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
                     sig, sizeof sig),
        0);
    assert_string_equal(
        sig,
        "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W"
        "2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkS"
        "jtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnv"
        "Wh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw");
    assert_int_equal(gw_gce_rs256(key, "x", sig, 10), PROTO_ENOSPC);
    assert_int_equal(gw_gce_rs256("not a key", "x", sig, sizeof sig), PROTO_EINVAL);
}

static void test_google_jwt(void **state)
{
    (void)state;
    char jwt[2048];
    assert_int_equal(gw_gce_jwt(key, "", "framegate-test@p.iam.gserviceaccount.com",
                                "https://www.googleapis.com/auth/compute",
                                "https://oauth2.googleapis.com/token", 1700000000LL, jwt,
                                sizeof jwt),
                     0);
    assert_string_equal(
        jwt,
        "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJmcmFtZWdhdGUtdGVzdEBwLmlhbS5nc2VydmljZWF"
        "jY291bnQuY29tIiwic2NvcGUiOiJodHRwczovL3d3dy5nb29nbGVhcGlzLmNvbS9hdXRoL2NvbXB1dGUiLCJhdWQ"
        "iOiJodHRwczovL29hdXRoMi5nb29nbGVhcGlzLmNvbS90b2tlbiIsImV4cCI6MTcwMDAwMzYwMCwiaWF0IjoxNzA"
        "wMDAwMDAwfQ.DACJYOOb1ABvXDAOO6my6G-LMiOE7W1g0L29sECeqx_6DRkknSxf44Vfnt2qzaMY-W1jW0GJA5_o"
        "UNYDpXrfRpzXMmrohqPk8af7oxmkK940aQYGbi1ZYYmv6iYrXU5llvjRi5ofZ9jZYjegPmxBxO6JHimkjTSkoUea"
        "x6SvsuA6cJtsk2XMrvwADRLiHgZ56xI6lsizjqd2X6LC5M21gdPDJPu6hlXnz-jGldTWOxdNepigQU8yGM1UgHVJ"
        "p9cghU0AOe5I0mIZ4Ma_z1qzxOGH8M1ZFd5ZyiB2PfaLro0Xd0pcPPYsf2quER0aPb3aCQlKhUFQCXMl8mWSmvSw"
        "hg");
    /* with a key id, the header carries it (and the signature changes) */
    char kid[2048];
    assert_int_equal(gw_gce_jwt(key, "abc123", "i", "s", "a", 1, kid, sizeof kid), 0);
    char h[80];
    gw_gce_b64url("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"abc123\"}", 42, h, sizeof h);
    assert_memory_equal(kid, h, strlen(h));
}

static void test_b64url(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(gw_gce_b64url("\xfb\xff", 2, out, sizeof out), 3);
    assert_string_equal(out, "-_8"); /* '+' '/' replaced, '=' dropped */
    assert_int_equal(gw_gce_b64url("abcdefghijkl", 12, out, 8), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7515_a2),
        cmocka_unit_test(test_google_jwt),
        cmocka_unit_test(test_b64url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
