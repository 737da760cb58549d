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

/* ---- hardening (issue 11, item 10 and item 5's decode) ---- */

/* Invalid UTF-8 in `camera` was echoed into the JSON answer: now 400, from the query, the
 * JSON body and a multipart part alike; %00 does not cut a value short silently. */
static void test_camera_must_be_utf8(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    resp_t r;
    char code[64];
    static const struct {
        const char *target, *ctype, *body, *code;
    } cases[] = {
        {"/v1/detect?camera=%ff%fe", "image/jpeg", "x", "bad_query"},
        {"/v1/detect?camera=%c0%af", "image/jpeg", "x", "bad_query"},    /* overlong '/' */
        {"/v1/detect?camera=%ed%a0%80", "image/jpeg", "x", "bad_query"}, /* a surrogate */
        {"/v1/detect?camera=a%00b", "image/jpeg", "x", "bad_query"},
        {"/v1/detect", "application/json", "{\"image\":\"eA==\",\"camera\":\"\xff\"}", "bad_json"},
        {"/v1/detect", "multipart/form-data; boundary=XyZ",
         "--XyZ\r\nContent-Disposition: form-data; name=\"camera\"\r\n\r\n\xc3\x28\r\n"
         "--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nx\r\n--XyZ--\r\n",
         "bad_multipart"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        post(c, cases[i].target, cases[i].ctype, cases[i].body, strlen(cases[i].body));
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 400);
        assert_string_equal(json_error_code(&r, code, sizeof code), cases[i].code);
        resp_free(&r);
    }
    assert_int_equal(atomic_load(&S.submitted), 0);
    /* Real UTF-8 goes through and comes back as it was sent. */
    post(c, "/v1/detect?camera=caf%C3%A9%20%F0%9F%93%B7", "image/jpeg", "x", 1);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"camera\":\"caf\xc3\xa9 \xf0\x9f\x93\xb7\""));
    resp_free(&r);
    client_close(c);
    free(c);
}

/* ts above 2^53 came back as a float. The query takes any int64 and the answer carries it
 * exactly; a JSON number is a double, so a JSON ts that a double cannot hold is refused. */
static void test_ts_exact(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    resp_t r;
    char code[64];
    static const char *exact[] = {"9007199254740993", "9223372036854775807", "-9223372036854775807",
                                  "1700000000123"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        char target[128], want[64];
        snprintf(target, sizeof target, "/v1/detect?ts=%s", exact[i]);
        snprintf(want, sizeof want, "\"ts\":%s,", exact[i]);
        post(c, target, "image/jpeg", "x", 1);
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, want));
        resp_free(&r);
    }
    const char *ok = "{\"image\":\"eA==\",\"ts\":9007199254740991}";
    post(c, "/v1/detect", "application/json", ok, strlen(ok));
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"ts\":9007199254740991,"));
    resp_free(&r);
    static const char *refused[] = {"{\"image\":\"eA==\",\"ts\":9007199254740993}",
                                    "{\"image\":\"eA==\",\"ts\":-9007199254740992}",
                                    "{\"image\":\"eA==\",\"ts\":1e17}"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        post(c, "/v1/detect", "application/json", refused[i], strlen(refused[i]));
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 400);
        assert_string_equal(json_error_code(&r, code, sizeof code), "bad_json");
        assert_non_null(strstr(r.body, "ts"));
        resp_free(&r);
    }
    client_close(c);
    free(c);
}

/* JSON with trailing garbage was accepted: one value, then only white space. */
static void test_json_trailing(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    resp_t r;
    char code[64];
    static const char *bad[] = {"{\"image\":\"eA==\"}x", "{\"image\":\"eA==\"}{\"image\":\"eA==\"}",
                                "{\"image\":\"eA==\"}\n]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        post(c, "/v1/detect", "application/json", bad[i], strlen(bad[i]));
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 400);
        assert_string_equal(json_error_code(&r, code, sizeof code), "bad_json");
        resp_free(&r);
    }
    static const char nul[] = "{\"image\":\"eA==\"}\0junk";
    post(c, "/v1/detect", "application/json", nul, sizeof nul - 1);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    const char *ws = " {\"image\":\"eA==\"} \r\n\t";
    post(c, "/v1/detect", "application/json", ws, strlen(ws));
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    client_close(c);
    free(c);
}

/* Item 5: a large base64 JSON body stalled the loop while it was parsed and decoded. It is
 * decoded on the threadpool: the test holds that thread, and meanwhile another connection
 * is served; released, the frame is answered with the right image. Pipelined answers keep
 * their order around it. */
static void test_large_json_off_loop(void **state)
{
    (void)state;
    start_default();
    S.hold_work = 1;
    enum { IMG = 96 << 10 };
    uint8_t *img = malloc(IMG);
    memset(img, 'p', IMG);
    memcpy(img, "delay=1 ", 8);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t cap = 64 + (IMG + 2) / 3 * 4, n = 0;
    char *body = malloc(cap);
    n += (size_t)snprintf(body, cap, "{\"camera\":\"big\",\"image\":\"");
    for (size_t i = 0; i < IMG; i += 3) {
        uint32_t v = (uint32_t)img[i] << 16 | (uint32_t)(i + 1 < IMG ? img[i + 1] : 0) << 8 |
                     (i + 2 < IMG ? img[i + 2] : 0);
        body[n++] = b64[v >> 18 & 63];
        body[n++] = b64[v >> 12 & 63];
        body[n++] = i + 1 < IMG ? b64[v >> 6 & 63] : '=';
        body[n++] = i + 2 < IMG ? b64[v & 63] : '=';
    }
    n += (size_t)snprintf(body + n, cap - n, "\"}");
    client_t *c = malloc(2 * sizeof *c);
    client_open(&c[0]);
    post(&c[0], "/v1/detect", "application/json", body, n);
    send_str(&c[0], "GET /healthz HTTP/1.1\r\n\r\n"); /* pipelined behind it */
    wait_until(&S.work_started, 1, 3);
    assert_false(pthread_equal(S.work_thread, S.thread)); /* not the loop thread */
    resp_t r;
    client_open(&c[1]);
    send_str(&c[1], "GET /healthz HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(&c[1], &r), 0); /* the loop answers while the decode waits */
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(atomic_load(&S.submitted), 0);
    work_release();
    assert_int_equal(read_resp(&c[0], &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"camera\":\"big\""));
    assert_int_equal(atomic_load(&S.last_image_len), IMG);
    resp_free(&r);
    assert_int_equal(read_resp(&c[0], &r), 0);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    resp_free(&r);
    /* A client that resets while its body is being decoded: nothing is submitted, and the
     * connection goes once the decode is back. */
    S.work_release = 0;
    post(&c[1], "/v1/detect", "application/json", body, n);
    wait_until(&S.work_started, 2, 3);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c[1].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    client_close(&c[1]);                              /* RST */
    send_str(&c[0], "GET /healthz HTTP/1.1\r\n\r\n"); /* the loop has moved on */
    assert_int_equal(read_resp(&c[0], &r), 0);
    resp_free(&r);
    usleep(50000);
    assert_int_equal(atomic_load(&S.conns), 2); /* held by the work */
    work_release();
    wait_until(&S.conns, 1, 3);
    assert_int_equal(atomic_load(&S.submitted), 1);
    client_close(&c[0]);
    free(c);
    free(body);
    free(img);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the gateway does: a write to a gone client is EPIPE */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_detect_json, teardown),
        cmocka_unit_test_teardown(test_detect_errors, teardown),
        cmocka_unit_test_teardown(test_json_base64, teardown),
        cmocka_unit_test_teardown(test_multipart, teardown),
        cmocka_unit_test_teardown(test_camera_must_be_utf8, teardown),
        cmocka_unit_test_teardown(test_ts_exact, teardown),
        cmocka_unit_test_teardown(test_json_trailing, teardown),
        cmocka_unit_test_teardown(test_large_json_off_loop, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
