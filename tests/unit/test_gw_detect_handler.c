/* detect.c, the detect handler, through the real server with a fake submit
 * (gw_http_harness.h): options, JSON, base64, multipart, errors and how jobs are answered. */
#include "gw_http_harness.h"

static void test_detect_json(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    resp_t r;
    post(c, "/v1/detect?camera=front%20door&ts=1234&threshold=0.5&top_k=3&unknown=1", "image/jpeg",
         "delay=5", 7);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Type: application/json"));
    cJSON *root = cJSON_Parse(r.body);
    assert_non_null(root);
    assert_string_equal(cJSON_GetObjectItem(root, "id")->valuestring, "77");
    assert_string_equal(cJSON_GetObjectItem(root, "camera")->valuestring, "front door");
    assert_string_equal(cJSON_GetObjectItem(root, "backend")->valuestring, "fake-1");
    assert_int_equal(cJSON_GetObjectItem(root, "width")->valueint, 768);
    assert_int_equal(cJSON_GetObjectItem(root, "height")->valueint, 576);
    const cJSON *dets = cJSON_GetObjectItem(root, "detections");
    assert_int_equal(cJSON_GetArraySize(dets), 1);
    const cJSON *d = cJSON_GetArrayItem(dets, 0);
    assert_string_equal(cJSON_GetObjectItem(d, "label")->valuestring, "dog");
    assert_int_equal(cJSON_GetObjectItem(d, "class_id")->valueint, 16);
    assert_true(cJSON_GetObjectItem(d, "confidence")->valuedouble > 0.909);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "box"), "h")->valueint, 40);
    const cJSON *t = cJSON_GetObjectItem(root, "timing");
    assert_true(cJSON_GetObjectItem(t, "total_ms")->valuedouble == 4);
    cJSON_Delete(root);
    resp_free(&r);
    /* Model from the path and from the query; format=text gives the payload. */
    post(c, "/v1/models/yolo/detect?format=text", "image/png; charset=x", "x", 1);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Type: text/plain"));
    assert_string_equal(r.body, "dog");
    assert_string_equal(S.last_model, "yolo");
    resp_free(&r);
    post(c, "/v1/models/yolo/detect?model=other", "image/jpeg", "x", 1);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(S.last_model, "yolo"); /* the path wins over ?model= */
    assert_non_null(strstr(r.body, "\"model\":\"yolo\""));
    resp_free(&r);
    /* A classifier's reply (kind CLASSES) is rendered as "classes", without boxes, in the
     * backend's order; format=text still passes its payload through. */
    post(c, "/v1/models/cls/detect", "image/jpeg", "classes", 7);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    root = cJSON_Parse(r.body);
    assert_non_null(root);
    assert_null(cJSON_GetObjectItem(root, "detections"));
    const cJSON *cls = cJSON_GetObjectItem(root, "classes");
    assert_int_equal(cJSON_GetArraySize(cls), 2);
    d = cJSON_GetArrayItem(cls, 0);
    assert_string_equal(cJSON_GetObjectItem(d, "label")->valuestring, "bathtub");
    assert_int_equal(cJSON_GetObjectItem(d, "class_id")->valueint, 435);
    assert_true(cJSON_GetObjectItem(d, "confidence")->valuedouble > 0.699);
    assert_null(cJSON_GetObjectItem(d, "box"));
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cls, 1), "label")->valuestring,
                        "tub");
    assert_string_equal(cJSON_GetObjectItem(root, "model")->valuestring, "cls");
    cJSON_Delete(root);
    resp_free(&r);
    post(c, "/v1/detect?model=cls&format=text", "image/jpeg", "classes", 7);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "bathtub");
    resp_free(&r);
    /* An unknown parameter is ignored, however long its name. */
    post(c,
         "/v1/detect?a_very_long_unknown_parameter_name_that_is_ignored_by_the_gateway=1&"
         "camera=long",
         "image/jpeg", "x", 1);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(S.last_camera, "long");
    resp_free(&r);
    post(c, "/v1/detect?model=tiny&format=jpeg", "Application/Octet-Stream", "x", 1);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Type: image/jpeg"));
    assert_string_equal(S.last_model, "tiny");
    resp_free(&r);
    client_close(c);
    free(c);
}

static void test_detect_errors(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    resp_t r;
    char code[64];
    static const struct {
        const char *target, *ctype, *body;
        int status;
        const char *code, *mention;
    } cases[] = {
        {"/v1/detect?threshold=2", "image/jpeg", "x", 400, "bad_query", "threshold"},
        {"/v1/detect?top_k=0", "image/jpeg", "x", 400, "bad_query", "top_k"},
        {"/v1/detect?format=gif", "image/jpeg", "x", 400, "bad_query", "format"},
        {"/v1/detect?ts=12x", "image/jpeg", "x", 400, "bad_query", "ts"},
        {"/v1/detect?ts=99999999999999999999", "image/jpeg", "x", 400, "bad_query", "ts"},
        {"/v1/detect?camera=%zz", "image/jpeg", "x", 400, "bad_query", NULL},
        {"/v1/detect?a_very_long_unknown_parameter_name_that_is_ignored_by_the_gateway=1&"
         "camera=%zz",
         "image/jpeg", "x", 400, "bad_query", NULL},
        {"/v1/detect", "application/json", "{\"image\":\"eA==\",\"ts\":1.5}", 400, "bad_json",
         "ts"},
        {"/v1/detect", "application/json", "{\"image\":\"eA==\",\"ts\":1e300}", 400, "bad_json",
         "ts"},
        {"/v1/detect", "text/plain", "x", 415, "unsupported_media_type", NULL},
        {"/v1/detect", "image/jpeg", "", 400, "empty_image", NULL},
        {"/v1/detect", "image/jpeg", "qfull", 503, "queue_full", NULL},
        {"/v1/models/nope/detect", "image/jpeg", "x", 404, "unknown_model", NULL},
        {"/v1/detect", "image/jpeg", "status=504", 504, "deadline", "fake failure 504"},
        {"/v1/detect", "image/jpeg", "status=503", 503, "shutting_down", NULL},
        {"/v1/detect", "image/jpeg", "status=502", 502, "backend_failed", NULL},
        {"/v1/detect", "application/json", "{\"image\":", 400, "bad_json", NULL},
        {"/v1/detect", "application/json", "{\"image\":5}", 400, "bad_json", "image"},
        {"/v1/detect", "application/json", "{\"camera\":\"x\"}", 400, "no_image", "image"},
        {"/v1/detect", "application/json", "[1]", 400, "bad_json", NULL},
        {"/v1/detect", "application/json", "{\"image\":\"ab$d\"}", 400, "bad_base64", NULL},
        {"/v1/detect", "application/json", "{\"image\":\"\"}", 400, "empty_image", NULL},
        {"/v1/detect", "multipart/form-data", "--x--", 400, "bad_multipart", "boundary"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        post(c, cases[i].target, cases[i].ctype, cases[i].body, strlen(cases[i].body));
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, cases[i].status);
        assert_true(has_header(&r, "Content-Type: application/json"));
        assert_true(has_header(&r, "Connection: keep-alive"));
        assert_string_equal(json_error_code(&r, code, sizeof code), cases[i].code);
        if (cases[i].mention != NULL)
            assert_non_null(strstr(r.body, cases[i].mention));
        if (r.status == 503)
            assert_true(has_header(&r, "Retry-After: 7"));
        resp_free(&r);
    }
    client_close(c);
    free(c);
}

static void test_json_base64(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    resp_t r;
    /* "delay=3 ?>" in standard base64 has a '+'; url-safe has '-'; and a data URL. */
    static const char *bodies[] = {
        "{\"image\":\"ZGVsYXk9MyA/Pg==\",\"camera\":\"jc\",\"ts\":99,\"threshold\":0.25}",
        "{\"image\":\"ZGVsYXk9MyA_Pg\",\"camera\":\"jc\"}",
        "{\"image\":\"data:image/jpeg;base64,ZGVsYXk9MyA/Pg==\",\"camera\":\"jc\"}",
    };
    for (int i = 0; i < 3; i++) {
        post(c, "/v1/detect?camera=q", "application/json; charset=utf-8", bodies[i],
             strlen(bodies[i]));
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "\"camera\":\"jc\""));
        assert_int_equal(atomic_load(&S.last_image_len), 10);
        resp_free(&r);
    }
    /* Camera from the query when the JSON has none. */
    post(c, "/v1/detect?camera=q", "application/json", "{\"image\":\"eA==\"}", 16);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"camera\":\"q\""));
    resp_free(&r);
    client_close(c);
    free(c);
}

static void test_multipart(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    resp_t r;
    char code[64];
    const char *ct = "multipart/form-data; boundary=XyZ";
    const char *two = "--XyZ\r\nContent-Disposition: form-data; name=\"camera\"\r\n\r\nyard\r\n"
                      "--XyZ\r\nContent-Disposition: form-data; name=\"a\"; filename=\"a.jpg\"\r\n"
                      "Content-Type: image/jpeg\r\n\r\ndelay=20\r\n"
                      "--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\ndelay=1\r\n"
                      "--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n"
                      "--XyZ--\r\n";
    post(c, "/v1/detect", ct, two, strlen(two));
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *root = cJSON_Parse(r.body);
    const cJSON *res = cJSON_GetObjectItem(root, "results");
    assert_int_equal(cJSON_GetArraySize(res), 2);
    for (int i = 0; i < 2; i++) {
        const cJSON *o = cJSON_GetArrayItem(res, i);
        assert_string_equal(cJSON_GetObjectItem(o, "camera")->valuestring, "yard");
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "detections")), 1);
    }
    cJSON_Delete(root);
    resp_free(&r);
    /* One part fails: the status is the first failure's, each result says its own. */
    const char *mixed = "--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nok\r\n"
                        "--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n"
                        "status=503\r\n--XyZ--\r\n";
    post(c, "/v1/detect", ct, mixed, strlen(mixed));
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 503);
    assert_true(has_header(&r, "Retry-After: 7"));
    root = cJSON_Parse(r.body);
    res = cJSON_GetObjectItem(root, "results");
    assert_int_equal(cJSON_GetArraySize(res), 2);
    assert_non_null(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 0), "detections"));
    assert_non_null(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 1), "error"));
    cJSON_Delete(root);
    resp_free(&r);
    /* The second submit is refused: the answer waits for the first job, then says why. */
    const char *refused = "--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n"
                          "delay=50\r\n--XyZ\r\nContent-Disposition: form-data; "
                          "name=\"image\"\r\n\r\nqfull\r\n--XyZ--\r\n";
    int done0 = atomic_load(&S.done);
    post(c, "/v1/detect", ct, refused, strlen(refused));
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 503);
    assert_string_equal(json_error_code(&r, code, sizeof code), "queue_full");
    assert_int_equal(atomic_load(&S.done), done0 + 1);
    resp_free(&r);
    /* No image part; truncated body. */
    const char *noimg = "--XyZ\r\nContent-Disposition: form-data; name=\"camera\"\r\n\r\n"
                        "x\r\n--XyZ--\r\n";
    post(c, "/v1/detect", ct, noimg, strlen(noimg));
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(json_error_code(&r, code, sizeof code), "no_image");
    resp_free(&r);
    const char *trunc = "--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc";
    post(c, "/v1/detect", ct, trunc, strlen(trunc));
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(json_error_code(&r, code, sizeof code), "bad_multipart");
    resp_free(&r);
    client_close(c);
    free(c);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the gateway does: a write to a gone client is EPIPE */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_detect_json, teardown),
        cmocka_unit_test_teardown(test_detect_errors, teardown),
        cmocka_unit_test_teardown(test_json_base64, teardown),
        cmocka_unit_test_teardown(test_multipart, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
