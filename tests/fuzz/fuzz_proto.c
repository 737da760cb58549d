/* The gateway <-> backend wire format (proto/msg.h): the same bytes are decoded as a request
 * and as a reply. Whatever decodes must (1) hold views that lie inside the input, (2) iterate
 * to exactly ndet detections, and (3) encode back to the very same bytes: the format has one
 * encoding per message, so any difference is a decoder that accepted more than it checked. */
#include <string.h>

#include "fuzz.h"
#include "msg.h"

static int inside(const void *p, size_t n, const uint8_t *buf, size_t len)
{
    const uint8_t *b = p;
    if (n == 0)
        return 1;
    return b != NULL && b >= buf && b <= buf + len && n <= (size_t)(buf + len - b);
}

static void check_req(const uint8_t *data, size_t size)
{
    proto_req_t req;
    if (proto_req_decode(&req, data, size) != 0)
        return;
    FUZZ_CHECK(req.type == PROTO_T_DETECT || req.type == PROTO_T_PING);
    FUZZ_CHECK(req.camera_len <= PROTO_CAMERA_MAX && req.payload_len <= PROTO_PAYLOAD_MAX);
    FUZZ_CHECK(inside(req.camera, req.camera_len, data, size));
    FUZZ_CHECK(inside(req.payload, req.payload_len, data, size));
    FUZZ_CHECK(proto_peek_type(data, size) == req.type);

    int64_t need = proto_req_size(&req);
    FUZZ_CHECK(need >= 0 && (uint64_t)need == size);
    uint8_t *out = malloc(size);
    size_t len = 0;
    FUZZ_CHECK(out != NULL);
    FUZZ_CHECK(proto_req_encode(&req, out, size, &len) == 0);
    FUZZ_CHECK(len == size && memcmp(out, data, size) == 0);
    if (size > 0) /* one byte short is refused, not overrun */
        FUZZ_CHECK(proto_req_encode(&req, out, size - 1, &len) == PROTO_ENOSPC);
    free(out);
}

static void check_rep(const uint8_t *data, size_t size)
{
    proto_rep_t rep;
    if (proto_rep_decode(&rep, data, size) != 0)
        return;
    FUZZ_CHECK(rep.type == PROTO_T_RESULT || rep.type == PROTO_T_PONG);
    FUZZ_CHECK(rep.status <= 0 && rep.kind <= PROTO_KIND_CLASSES);
    FUZZ_CHECK(rep.ndet <= PROTO_DETS_MAX && rep.error_len <= PROTO_ERROR_MAX);
    FUZZ_CHECK(inside(rep.error, rep.error_len, data, size));
    FUZZ_CHECK(inside(rep.payload, rep.payload_len, data, size));

    /* The iterator cannot fail once decode succeeded, and stops after exactly ndet. */
    proto_det_t *dets = calloc(rep.ndet > 0 ? rep.ndet : 1, sizeof *dets);
    FUZZ_CHECK(dets != NULL);
    size_t cursor = 0;
    uint32_t n = 0;
    proto_det_t d;
    while (proto_rep_det_next(&rep, &cursor, &d)) {
        FUZZ_CHECK(n < rep.ndet);
        FUZZ_CHECK(inside(d.label, d.label_len, data, size));
        dets[n++] = d;
    }
    FUZZ_CHECK(n == rep.ndet);
    FUZZ_CHECK(proto_rep_det_next(&rep, &cursor, &d) == 0);

    rep.dets = dets;
    int64_t need = proto_rep_size(&rep);
    FUZZ_CHECK(need >= 0 && (uint64_t)need == size);
    uint8_t *out = malloc(size);
    size_t len = 0;
    FUZZ_CHECK(out != NULL);
    FUZZ_CHECK(proto_rep_encode(&rep, out, size, &len) == 0);
    FUZZ_CHECK(len == size && memcmp(out, data, size) == 0);
    if (size > 0)
        FUZZ_CHECK(proto_rep_encode(&rep, out, size - 1, &len) == PROTO_ENOSPC);
    free(out);
    free(dets);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int type = proto_peek_type(data, size);
    FUZZ_CHECK(type < 0 || type <= 0xffff);
    check_req(data, size);
    check_rep(data, size);
    return 0;
}
