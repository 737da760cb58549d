/* sigv4.c against AWS's published vectors (reference/cloud-apis.md §1): the 2015 suite
 * (get-vanilla, query order, post-vanilla, header trim), aws-c-auth's signed-body and
 * session-token cases, the four S3 examples of the S3 API docs, and path-style S3 PUT/GET with
 * an encoded key. Each checks the canonical request or the string to sign where the vector
 * gives it, and always the whole Authorization value (or its signature). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "sigv4.h"

#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define S3DOC_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define SUITE_DATE "20150830T123600Z"

static gw_sigv4_req_t suite(const char *method, const char *query, const gw_sigv4_header_t *h,
                            size_t n)
{
    return (gw_sigv4_req_t){.method = method,
                            .uri = "/",
                            .query = query,
                            .headers = h,
                            .nheaders = n,
                            .region = "us-east-1",
                            .service = "service",
                            .access_key = "AKIDEXAMPLE",
                            .secret_key = SUITE_SECRET,
                            .amz_date = SUITE_DATE};
}

static void check_authz(const gw_sigv4_req_t *r, const char *want)
{
    char out[1024];
    assert_int_equal(gw_sigv4_authorization(r, out, sizeof out), 0);
    assert_string_equal(out, want);
}

static void check_sig(const gw_sigv4_req_t *r, const char *sig)
{
    char out[1024];
    assert_int_equal(gw_sigv4_authorization(r, out, sizeof out), 0);
    const char *p = strstr(out, "Signature=");
    assert_non_null(p);
    assert_string_equal(p + 10, sig);
}

static void test_get_vanilla(void **state)
{
    (void)state;
    const gw_sigv4_header_t h[] = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", SUITE_DATE}};
    gw_sigv4_req_t r = suite("GET", "", h, 2);
    char out[1024];
    assert_int_equal(gw_sigv4_canonical_request(&r, out, sizeof out), 0);
    assert_string_equal(out, "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                             "host;x-amz-date\n" GW_SIGV4_EMPTY_SHA256);
    assert_int_equal(gw_sigv4_string_to_sign(&r, out, sizeof out), 0);
    assert_string_equal(out, "AWS4-HMAC-SHA256\n20150830T123600Z\n"
                             "20150830/us-east-1/service/aws4_request\n"
                             "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
    check_authz(&r, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                    "aws4_request, SignedHeaders=host;x-amz-date, "
                    "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    /* the same request as post-vanilla */
    r.method = "POST";
    check_sig(&r, "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

static void test_query_order(void **state)
{
    (void)state;
    const gw_sigv4_header_t h[] = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", SUITE_DATE}};
    gw_sigv4_req_t r = suite("GET", "Param2=value2&Param1=value1", h, 2);
    char out[1024];
    assert_int_equal(gw_sigv4_canonical_request(&r, out, sizeof out), 0);
    assert_non_null(strstr(out, "\nParam1=value1&Param2=value2\n"));
    check_sig(&r, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

static void test_header_trim(void **state)
{
    (void)state;
    const gw_sigv4_header_t h[] = {{"Host", "example.amazonaws.com"},
                                   {"My-Header1", " value1"},
                                   {"My-Header2", " \"a   b   c\""},
                                   {"X-Amz-Date", SUITE_DATE}};
    gw_sigv4_req_t r = suite("GET", NULL, h, 4);
    char out[1024];
    assert_int_equal(gw_sigv4_string_to_sign(&r, out, sizeof out), 0);
    assert_non_null(
        strstr(out, "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7"));
    check_authz(&r, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                    "aws4_request, SignedHeaders=host;my-header1;my-header2;x-amz-date, "
                    "Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736");
}

/* aws-c-auth post-x-www-form-urlencoded: the signer's caller adds x-amz-content-sha256. */
static void test_signed_body(void **state)
{
    (void)state;
    char body_hash[65];
    gw_sigv4_sha256_hex("Param1=value1", 13, body_hash);
    assert_string_equal(body_hash,
                        "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
    /* arrival order differs from sorted order on purpose */
    const gw_sigv4_header_t h[] = {{"Content-Type", "application/x-www-form-urlencoded"},
                                   {"Host", "example.amazonaws.com"},
                                   {"Content-Length", "13"},
                                   {"X-Amz-Date", SUITE_DATE},
                                   {"x-amz-content-sha256", body_hash}};
    gw_sigv4_req_t r = suite("POST", "", h, 5);
    r.payload_sha256 = body_hash;
    char out[1024];
    assert_int_equal(gw_sigv4_string_to_sign(&r, out, sizeof out), 0);
    assert_non_null(
        strstr(out, "b1edd1d03544c25390e32085d55b57acc9a3961bb59415ff86c45c3d89d16cfb"));
    check_sig(&r, "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b");
}

static void test_session_token(void **state)
{
    (void)state;
    const gw_sigv4_header_t h[] = {
        {"Host", "example.amazonaws.com"},
        {"X-Amz-Date", SUITE_DATE},
        {"X-Amz-Security-Token",
         "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"}};
    gw_sigv4_req_t r = suite("GET", "", h, 3);
    check_sig(&r, "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8");
}

static gw_sigv4_req_t s3doc(const char *method, const char *uri, const char *query,
                            const gw_sigv4_header_t *h, size_t n, const char *payload)
{
    return (gw_sigv4_req_t){.method = method,
                            .uri = uri,
                            .query = query,
                            .headers = h,
                            .nheaders = n,
                            .payload_sha256 = payload,
                            .region = "us-east-1",
                            .service = "s3",
                            .access_key = "AKIAIOSFODNN7EXAMPLE",
                            .secret_key = S3DOC_SECRET,
                            .amz_date = "20130524T000000Z"};
}

static void test_s3_docs(void **state)
{
    (void)state;
    char out[1024];
    const gw_sigv4_header_t get[] = {{"Host", "examplebucket.s3.amazonaws.com"},
                                     {"Range", "bytes=0-9"},
                                     {"x-amz-content-sha256", GW_SIGV4_EMPTY_SHA256},
                                     {"x-amz-date", "20130524T000000Z"}};
    gw_sigv4_req_t r = s3doc("GET", "/test.txt", "", get, 4, GW_SIGV4_EMPTY_SHA256);
    assert_int_equal(gw_sigv4_string_to_sign(&r, out, sizeof out), 0);
    assert_non_null(
        strstr(out, "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"));
    check_sig(&r, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");

    /* PUT /test$file.text: the key is encoded by the caller with gw_sigv4_uri_encode */
    char body_hash[65], uri[64];
    gw_sigv4_sha256_hex("Welcome to Amazon S3.", 21, body_hash);
    assert_int_equal(gw_sigv4_uri_encode("/test$file.text", 15, 1, uri, sizeof uri), 17);
    assert_string_equal(uri, "/test%24file.text");
    const gw_sigv4_header_t put[] = {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                                     {"Host", "examplebucket.s3.amazonaws.com"},
                                     {"x-amz-content-sha256", body_hash},
                                     {"x-amz-date", "20130524T000000Z"},
                                     {"x-amz-storage-class", "REDUCED_REDUNDANCY"}};
    r = s3doc("PUT", uri, NULL, put, 5, body_hash);
    assert_int_equal(gw_sigv4_string_to_sign(&r, out, sizeof out), 0);
    assert_non_null(
        strstr(out, "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d"));
    check_sig(&r, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");

    /* GET /?lifecycle: a parameter without '=' signs as "lifecycle=" */
    const gw_sigv4_header_t bucket[] = {{"Host", "examplebucket.s3.amazonaws.com"},
                                        {"x-amz-content-sha256", GW_SIGV4_EMPTY_SHA256},
                                        {"x-amz-date", "20130524T000000Z"}};
    r = s3doc("GET", "/", "lifecycle", bucket, 3, GW_SIGV4_EMPTY_SHA256);
    assert_int_equal(gw_sigv4_canonical_request(&r, out, sizeof out), 0);
    assert_non_null(strstr(out, "\nlifecycle=\n"));
    check_sig(&r, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");

    r = s3doc("GET", "/", "prefix=J&max-keys=2", bucket, 3, GW_SIGV4_EMPTY_SHA256);
    check_sig(&r, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void test_s3_path_style(void **state)
{
    (void)state;
    char uri[128], body_hash[65];
    int n = gw_sigv4_uri_encode("/framegate-bucket/models/a b.bin", 32, 1, uri, sizeof uri);
    assert_int_equal(n, 34);
    assert_string_equal(uri, "/framegate-bucket/models/a%20b.bin");
    gw_sigv4_sha256_hex("hello world", 11, body_hash);
    const gw_sigv4_header_t h[] = {{"host", "127.0.0.1:9000"},
                                   {"x-amz-content-sha256", body_hash},
                                   {"x-amz-date", SUITE_DATE}};
    gw_sigv4_req_t r = {.method = "PUT",
                        .uri = uri,
                        .headers = h,
                        .nheaders = 3,
                        .payload_sha256 = body_hash,
                        .region = "us-east-1",
                        .service = "s3",
                        .access_key = "AKIDEXAMPLE",
                        .secret_key = SUITE_SECRET,
                        .amz_date = SUITE_DATE};
    char out[1024];
    assert_int_equal(gw_sigv4_string_to_sign(&r, out, sizeof out), 0);
    assert_non_null(
        strstr(out, "879a90881a7abc959cddeeb0db95ec5d118b5804bd4102a544e8ba1f3283f2c4"));
    check_authz(&r, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/"
                    "aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                    "Signature=735b59798c4e766858a3d5df03b4e3e20166934a190f929dd7c7acdd6a6556da");
    const gw_sigv4_header_t g[] = {{"host", "127.0.0.1:9000"},
                                   {"x-amz-content-sha256", GW_SIGV4_EMPTY_SHA256},
                                   {"x-amz-date", SUITE_DATE}};
    r.method = "GET";
    r.headers = g;
    r.payload_sha256 = NULL;
    check_sig(&r, "07d5b02553ee4364aa8f1effee894e39bb7b19d5638281ed8540d256426b49fd");
}

static void test_limits(void **state)
{
    (void)state;
    char out[1024], tiny[40];
    const gw_sigv4_header_t h[] = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", SUITE_DATE}};
    gw_sigv4_req_t r = suite("GET", "", h, 2);
    assert_int_equal(gw_sigv4_authorization(&r, tiny, sizeof tiny), PROTO_ENOSPC);
    r.amz_date = "2015";
    assert_int_equal(gw_sigv4_authorization(&r, out, sizeof out), PROTO_EINVAL);
    r.amz_date = SUITE_DATE;
    const gw_sigv4_header_t bad[] = {{"Host", "example.amazonaws.com\r\nX-Evil: 1"},
                                     {"X-Amz-Date", SUITE_DATE}};
    r.headers = bad;
    assert_int_equal(gw_sigv4_authorization(&r, out, sizeof out), PROTO_EINVAL);
    char amz[17];
    gw_sigv4_amz_date(1440938160, amz);
    assert_string_equal(amz, SUITE_DATE);
    assert_int_equal(gw_sigv4_uri_encode("\xe1\x88\xb4", 3, 0, out, sizeof out), 9);
    assert_string_equal(out, "%E1%88%B4");
    assert_int_equal(gw_sigv4_uri_encode("a/b", 3, 0, out, sizeof out), 5);
    assert_string_equal(out, "a%2Fb");
    assert_int_equal(gw_sigv4_uri_encode("abc", 3, 0, out, 3), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_vanilla),   cmocka_unit_test(test_query_order),
        cmocka_unit_test(test_header_trim),   cmocka_unit_test(test_signed_body),
        cmocka_unit_test(test_session_token), cmocka_unit_test(test_s3_docs),
        cmocka_unit_test(test_s3_path_style), cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
