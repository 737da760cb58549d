/* Wire format: round trips, truncation at every byte, corruption, wrong versions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msg.h"

static const uint8_t image[] = {0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5, 0xff, 0xd9};

static proto_req_t sample_req(void)
{
    proto_req_t req = {
        .type = PROTO_T_DETECT,
        .id = 0x0102030405060708ull,
        .client_ts_ms = 1700000000123,
        .deadline_ms = -5,
        .threshold = 0.35f,
        .output = PROTO_OUT_TEXT,
        .top_k = 5,
        .camera = "cam-7",
        .camera_len = 5,
        .payload = image,
        .payload_len = sizeof image,
    };
    return req;
}

static size_t encode_req(const proto_req_t *req, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    assert_int_equal(proto_req_encode(req, buf, cap, &len), 0);
    assert_int_equal((int64_t)len, proto_req_size(req));
    return len;
}

static void test_req_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[256];
    proto_req_t in = sample_req(), out;
    size_t len = encode_req(&in, buf, sizeof buf);

    assert_int_equal(proto_req_decode(&out, buf, len), 0);
    assert_int_equal(out.type, PROTO_T_DETECT);
    assert_true(out.id == in.id);
    assert_true(out.client_ts_ms == in.client_ts_ms);
    assert_true(out.deadline_ms == in.deadline_ms);
    assert_true(out.threshold == in.threshold);
    assert_int_equal(out.output, PROTO_OUT_TEXT);
    assert_int_equal(out.top_k, 5);
    assert_int_equal(out.camera_len, 5);
    assert_memory_equal(out.camera, "cam-7", 5);
    assert_int_equal(out.payload_len, sizeof image);
    assert_memory_equal(out.payload, image, sizeof image);
    /* Views point into the buffer, not at copies. */
    assert_true(out.payload >= buf && out.payload + out.payload_len <= buf + len);
    assert_int_equal(proto_peek_type(buf, len), PROTO_T_DETECT);
}

/* The head (every field but the payload's bytes) followed by the payload is the encoding. */
static void test_req_head(void **state)
{
    (void)state;
    uint8_t whole[256], head[PROTO_REQ_HEAD_MAX + sizeof image];
    proto_req_t in = sample_req();
    in.camera = "cam-7-with-a-longer-name-0123456789";
    in.camera_len = (uint16_t)strlen(in.camera);
    size_t len = encode_req(&in, whole, sizeof whole), hlen = 0;
    assert_int_equal(proto_req_encode_head(&in, head, 10, &hlen), PROTO_ENOSPC);
    assert_int_equal(proto_req_encode_head(&in, head, PROTO_REQ_HEAD_MAX, &hlen), 0);
    assert_int_equal(hlen + sizeof image, len);
    memcpy(head + hlen, image, sizeof image);
    assert_memory_equal(head, whole, len);
    in.payload_len = PROTO_PAYLOAD_MAX + 1;
    assert_int_equal(proto_req_encode_head(&in, head, sizeof head, &hlen), PROTO_ETOOBIG);
}

static void test_req_truncated_everywhere(void **state)
{
    (void)state;
    uint8_t buf[256];
    proto_req_t in = sample_req(), out;
    size_t len = encode_req(&in, buf, sizeof buf);

    for (size_t cut = 0; cut < len; cut++) {
        /* A fresh heap copy of exactly `cut` bytes lets ASan catch any over-read. */
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, buf, cut);
        int rv = proto_req_decode(&out, p, cut);
        assert_true(rv < 0);
        free(p);
    }
    /* One byte too many is corruption, not a valid message. */
    buf[len] = 0;
    assert_int_equal(proto_req_decode(&out, buf, len + 1), PROTO_ECORRUPT);
}

static void test_req_header_errors(void **state)
{
    (void)state;
    uint8_t buf[256];
    proto_req_t in = sample_req(), out;
    size_t len = encode_req(&in, buf, sizeof buf);

    buf[0] ^= 0xff;
    assert_int_equal(proto_req_decode(&out, buf, len), PROTO_EMAGIC);
    buf[0] ^= 0xff;
    buf[4] = PROTO_VERSION + 1; /* a version from the future */
    assert_int_equal(proto_req_decode(&out, buf, len), PROTO_EVERSION);
    assert_int_equal(proto_peek_type(buf, len), PROTO_EVERSION);
    buf[4] = PROTO_VERSION;
    buf[6] = 99; /* type */
    assert_int_equal(proto_req_decode(&out, buf, len), PROTO_ETYPE);
    buf[6] = PROTO_T_RESULT; /* a reply type is not a request */
    assert_int_equal(proto_req_decode(&out, buf, len), PROTO_ETYPE);
}

static void test_req_lying_lengths(void **state)
{
    (void)state;
    uint8_t buf[256];
    proto_req_t in = sample_req(), out;
    size_t len = encode_req(&in, buf, sizeof buf);
    size_t cam_len_off = PROTO_HEADER_SIZE + 8 + 8 + 8 + 4 + 1 + 1 + 2;
    size_t payload_len_off = cam_len_off + 2 + in.camera_len;

    /* camera length over its limit */
    buf[cam_len_off] = 0xff;
    buf[cam_len_off + 1] = 0xff;
    assert_int_equal(proto_req_decode(&out, buf, len), PROTO_ETOOBIG);
    buf[cam_len_off] = 5;
    buf[cam_len_off + 1] = 0;
    /* payload length past the end of the buffer */
    buf[payload_len_off] = (uint8_t)(sizeof image + 1);
    assert_int_equal(proto_req_decode(&out, buf, len), PROTO_ETRUNC);
    /* payload length over the absolute limit */
    buf[payload_len_off + 3] = 0x7f;
    assert_int_equal(proto_req_decode(&out, buf, len), PROTO_ETOOBIG);
}

static void test_req_encode_checks(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t len;
    proto_req_t req = sample_req();

    assert_int_equal(proto_req_encode(&req, buf, 10, &len), PROTO_ENOSPC);
    req.threshold = 1.5f;
    assert_int_equal(proto_req_encode(&req, buf, sizeof buf, &len), PROTO_EINVAL);
    req = sample_req();
    req.camera_len = PROTO_CAMERA_MAX + 1;
    assert_int_equal(proto_req_encode(&req, buf, sizeof buf, &len), PROTO_ETOOBIG);
    req = sample_req();
    req.type = PROTO_T_PONG;
    assert_int_equal(proto_req_encode(&req, buf, sizeof buf, &len), PROTO_ETYPE);

    /* A PING with no payload round-trips. */
    proto_req_t ping = {.type = PROTO_T_PING, .id = 9}, out;
    assert_int_equal(proto_req_encode(&ping, buf, sizeof buf, &len), 0);
    assert_int_equal(proto_req_decode(&out, buf, len), 0);
    assert_int_equal(out.type, PROTO_T_PING);
    assert_int_equal(out.payload_len, 0);
}

static const proto_det_t sample_dets[] = {
    {.class_id = 16, .confidence = 0.9f, .x = 10, .y = 20, .w = 30, .h = 40,
     .label = "dog", .label_len = 3},
    {.class_id = 1, .confidence = 0.5f, .x = 1.5f, .y = 2.5f, .w = 3, .h = 4,
     .label = "bicycle", .label_len = 7},
    {.class_id = 7, .confidence = 0.25f, .x = 0, .y = 0, .w = 1, .h = 1,
     .label = NULL, .label_len = 0},
};

static proto_rep_t sample_rep(void)
{
    proto_rep_t rep = {
        .type = PROTO_T_RESULT,
        .id = 77,
        .status = 0,
        .width = 768,
        .height = 576,
        .decode_us = 1000,
        .infer_us = 700000,
        .total_us = 702000,
        .error = "",
        .error_len = 0,
        .ndet = 3,
        .dets = sample_dets,
        .payload = (const uint8_t *)"dog",
        .payload_len = 3,
    };
    return rep;
}

static size_t encode_rep(const proto_rep_t *rep, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    assert_int_equal(proto_rep_encode(rep, buf, cap, &len), 0);
    assert_int_equal((int64_t)len, proto_rep_size(rep));
    return len;
}

static void test_rep_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[512];
    proto_rep_t in = sample_rep(), out;
    size_t len = encode_rep(&in, buf, sizeof buf);

    assert_int_equal(proto_rep_decode(&out, buf, len), 0);
    assert_int_equal(out.type, PROTO_T_RESULT);
    assert_true(out.id == 77);
    assert_int_equal(out.width, 768);
    assert_int_equal(out.height, 576);
    assert_int_equal(out.infer_us, 700000);
    assert_int_equal(out.ndet, 3);
    assert_null(out.dets);
    size_t cursor = 0;
    proto_det_t d;
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(proto_rep_det_next(&out, &cursor, &d), 1);
        assert_int_equal(d.class_id, sample_dets[i].class_id);
        assert_true(d.confidence == sample_dets[i].confidence);
        assert_true(d.x == sample_dets[i].x && d.y == sample_dets[i].y);
        assert_true(d.w == sample_dets[i].w && d.h == sample_dets[i].h);
        assert_int_equal(d.label_len, sample_dets[i].label_len);
        if (d.label_len)
            assert_memory_equal(d.label, sample_dets[i].label, d.label_len);
    }
    assert_int_equal(proto_rep_det_next(&out, &cursor, &d), 0);
    assert_int_equal(out.payload_len, 3);
    assert_memory_equal(out.payload, "dog", 3);
    assert_int_equal(out.kind, PROTO_KIND_DETECT);
}

/* The kind byte survives a round trip; an unknown kind is refused both ways. */
static void test_rep_kind(void **state)
{
    (void)state;
    uint8_t buf[512];
    proto_rep_t in = sample_rep(), out;
    in.kind = PROTO_KIND_CLASSES;
    size_t len = encode_rep(&in, buf, sizeof buf);
    assert_int_equal(proto_rep_decode(&out, buf, len), 0);
    assert_int_equal(out.kind, PROTO_KIND_CLASSES);

    /* kind is the byte after the six fixed u32 fields that follow the header and id. */
    size_t at = PROTO_HEADER_SIZE + 8 + 4 * 6;
    assert_int_equal(buf[at], PROTO_KIND_CLASSES);
    buf[at] = 2;
    assert_int_equal(proto_rep_decode(&out, buf, len), PROTO_ECORRUPT);

    in.kind = 7;
    size_t n = 0;
    assert_int_equal(proto_rep_encode(&in, buf, sizeof buf, &n), PROTO_EINVAL);
}

static void test_rep_error_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[512];
    const char *msg = "image could not be decoded: Not a JPEG file";
    proto_rep_t in = {.type = PROTO_T_RESULT, .id = 5, .status = PROTO_EIMAGE,
                      .error = msg, .error_len = (uint16_t)strlen(msg)};
    proto_rep_t out;
    size_t len = encode_rep(&in, buf, sizeof buf);
    assert_int_equal(proto_rep_decode(&out, buf, len), 0);
    assert_int_equal(out.status, PROTO_EIMAGE);
    assert_int_equal(out.error_len, strlen(msg));
    assert_memory_equal(out.error, msg, strlen(msg));
    assert_int_equal(out.ndet, 0);
    size_t cursor = 0;
    proto_det_t d;
    assert_int_equal(proto_rep_det_next(&out, &cursor, &d), 0);
}

static void test_rep_truncated_everywhere(void **state)
{
    (void)state;
    uint8_t buf[512];
    proto_rep_t in = sample_rep(), out;
    size_t len = encode_rep(&in, buf, sizeof buf);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, buf, cut);
        assert_true(proto_rep_decode(&out, p, cut) < 0);
        free(p);
    }
    assert_int_equal(proto_rep_decode(&out, buf, len + 1), PROTO_ECORRUPT);
}

static void test_rep_lying_counts(void **state)
{
    (void)state;
    uint8_t buf[512];
    proto_rep_t in = sample_rep(), out;
    size_t len = encode_rep(&in, buf, sizeof buf);
    size_t ndet_off = PROTO_HEADER_SIZE + 8 + 4 + 4 * 5 + 1 + 2;

    buf[ndet_off] = 4; /* one detection more than present */
    assert_true(proto_rep_decode(&out, buf, len) < 0);
    buf[ndet_off + 3] = 0x10; /* absurd count */
    assert_int_equal(proto_rep_decode(&out, buf, len), PROTO_ETOOBIG);
    buf[ndet_off] = 3;
    buf[ndet_off + 3] = 0;
    assert_int_equal(proto_rep_decode(&out, buf, len), 0);

    /* A positive status is not a valid code. */
    size_t status_off = PROTO_HEADER_SIZE + 8;
    uint8_t saved[4];
    memcpy(saved, buf + status_off, 4);
    memset(buf + status_off, 0, 4);
    buf[status_off] = 1;
    assert_int_equal(proto_rep_decode(&out, buf, len), PROTO_ECORRUPT);
    memcpy(buf + status_off, saved, 4);

    /* A NaN coordinate is corruption. */
    size_t x_off = ndet_off + 4 + 4 + 4;
    buf[x_off + 2] = 0xc0;
    buf[x_off + 3] = 0x7f;
    assert_int_equal(proto_rep_decode(&out, buf, len), PROTO_ECORRUPT);
}

static void test_random_garbage(void **state)
{
    (void)state;
    uint8_t buf[300];
    proto_req_t req;
    proto_rep_t rep;
    srand(42);
    for (int i = 0; i < 20000; i++) {
        size_t len = (size_t)(rand() % (int)sizeof buf);
        for (size_t j = 0; j < len; j++)
            buf[j] = (uint8_t)rand();
        /* Half the time give it a valid header so the body parsers get exercised. */
        if (len >= PROTO_HEADER_SIZE && (i & 1)) {
            buf[0] = 'F', buf[1] = 'G', buf[2] = 'W', buf[3] = 'M';
            buf[4] = PROTO_VERSION, buf[5] = 0;
            buf[6] = (uint8_t)(1 + (i >> 1) % 4), buf[7] = 0;
        }
        (void)proto_req_decode(&req, buf, len);
        if (proto_rep_decode(&rep, buf, len) == 0) {
            size_t cursor = 0;
            proto_det_t d;
            while (proto_rep_det_next(&rep, &cursor, &d))
                ;
        }
    }
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(proto_strerror(PROTO_ETRUNC), "message truncated");
    assert_string_equal(proto_errname(PROTO_EVERSION), "EVERSION");
    assert_string_equal(proto_strerror(0), "success");
    assert_non_null(proto_strerror(-2)); /* libuv/errno codes pass through */
    assert_string_equal(proto_strerror(-99999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_req_roundtrip),
        cmocka_unit_test(test_req_head),
        cmocka_unit_test(test_req_truncated_everywhere),
        cmocka_unit_test(test_req_header_errors),
        cmocka_unit_test(test_req_lying_lengths),
        cmocka_unit_test(test_req_encode_checks),
        cmocka_unit_test(test_rep_roundtrip),
        cmocka_unit_test(test_rep_kind),
        cmocka_unit_test(test_rep_error_roundtrip),
        cmocka_unit_test(test_rep_truncated_everywhere),
        cmocka_unit_test(test_rep_lying_counts),
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
