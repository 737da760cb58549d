/* The gateway <-> backend wire format, carried in NNG req/rep messages.
 *
 * Every message starts with the same 8-byte header: magic "FGWM" (u32), version (u16),
 * type (u16). All integers are little-endian; floats are IEEE-754 binary32 bit patterns.
 * Variable-length fields carry their length first; decoders check every length and count
 * against both its limit and the bytes that remain, and a message must end exactly where
 * its last field ends. A decoded message holds pointers INTO the buffer it was decoded from
 * (views, not copies): the buffer must outlive the decoded struct.
 *
 *   request (PROTO_T_DETECT, PROTO_T_PING):
 *     header | id u64 | client_ts_ms i64 | deadline_ms i64 | threshold f32 | output u8 |
 *     flags u8 | top_k u16 | camera_len u16 | camera | payload_len u32 | payload
 *
 *   reply (PROTO_T_RESULT, PROTO_T_PONG):
 *     header | id u64 | status i32 | width u32 | height u32 | decode_us u32 |
 *     infer_us u32 | total_us u32 | kind u8 | error_len u16 | error | ndet u32 |
 *     ndet x (class_id i32 | confidence f32 | x f32 | y f32 | w f32 | h f32 |
 *             label_len u8 | label) | payload_len u32 | payload
 *
 *   kind says what the records are: PROTO_KIND_DETECT boxes of a detector, or
 *   PROTO_KIND_CLASSES the top-k classes of a classifier (x, y, w, h are 0; most confident
 *   first).
 *
 * A PING is answered with a PONG once the backend is ready (model loaded, warm-up run);
 * its payload is a small JSON object describing the backend and its model. */
#ifndef PROTO_MSG_H
#define PROTO_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define PROTO_MAGIC 0x4d574746u /* "FGWM" read as little-endian u32 */
#define PROTO_VERSION 2
#define PROTO_HEADER_SIZE 8

#define PROTO_CAMERA_MAX 128              /* bytes of camera id */
#define PROTO_ERROR_MAX 512               /* bytes of error text */
#define PROTO_LABEL_MAX 255               /* bytes of one label */
#define PROTO_DETS_MAX 8192               /* detections in one reply */
#define PROTO_PAYLOAD_MAX (64u << 20)     /* bytes of image or output payload */

typedef enum {
    PROTO_T_DETECT = 1, /* gateway -> backend: run the model on payload */
    PROTO_T_RESULT = 2, /* backend -> gateway: answer to DETECT */
    PROTO_T_PING = 3,   /* gateway -> backend: are you ready? */
    PROTO_T_PONG = 4,   /* backend -> gateway: yes; payload = JSON info */
} proto_type_t;

typedef enum {
    PROTO_OUT_JSON = 0, /* detections only */
    PROTO_OUT_JPEG = 1, /* detections + annotated JPEG in payload */
    PROTO_OUT_TEXT = 2, /* detections + top-1 label in payload */
} proto_output_t;

typedef struct {
    uint16_t type; /* PROTO_T_DETECT or PROTO_T_PING */
    uint64_t id;
    int64_t client_ts_ms; /* as the client sent it; 0 if none */
    int64_t deadline_ms;  /* unix epoch ms after which the answer is useless; 0 = none */
    float threshold;      /* 0 = the model's default; else in (0, 1] */
    uint8_t output;       /* proto_output_t */
    uint8_t flags;        /* reserved, 0 */
    uint16_t top_k;       /* classifiers: classes to return; 0 = default */
    const char *camera;   /* not NUL-terminated */
    uint16_t camera_len;
    const uint8_t *payload; /* the encoded image */
    uint32_t payload_len;
} proto_req_t;

typedef enum {
    PROTO_KIND_DETECT = 0,  /* records are boxes */
    PROTO_KIND_CLASSES = 1, /* records are classes, the box fields are 0 */
} proto_kind_t;

typedef struct {
    int32_t class_id;
    float confidence;
    float x, y, w, h; /* pixels of the original image, top-left origin */
    const char *label; /* not NUL-terminated */
    uint8_t label_len;
} proto_det_t;

typedef struct {
    uint16_t type; /* PROTO_T_RESULT or PROTO_T_PONG */
    uint64_t id;
    int32_t status; /* 0 or a negative proto_err_t */
    uint32_t width, height;
    uint32_t decode_us, infer_us, total_us;
    uint8_t kind; /* proto_kind_t */
    const char *error; /* not NUL-terminated */
    uint16_t error_len;
    uint32_t ndet;
    /* Encoding: an array of ndet detections. Decoding: NULL; read them with
     * proto_rep_det_next(), which cannot fail once proto_rep_decode() succeeded. */
    const proto_det_t *dets;
    const uint8_t *dets_raw; /* decoding only: start of the detection records */
    const uint8_t *payload;
    uint32_t payload_len;
} proto_rep_t;

/* Bytes proto_req_encode() will write, or a negative code if a field is over its limit. */
int64_t proto_req_size(const proto_req_t *req);

/* Encodes `req` into buf[0..cap). On success stores the length in *len and returns 0.
 * Returns PROTO_ENOSPC if cap is too small, PROTO_ETOOBIG / PROTO_EINVAL on bad fields. */
int proto_req_encode(const proto_req_t *req, uint8_t *buf, size_t cap, size_t *len);

/* proto_req_encode without the payload's bytes, which come last in the encoding: a writer
 * sends the head then req->payload itself, uncopied (a gather write). At most
 * PROTO_REQ_HEAD_MAX bytes. Same return values. */
#define PROTO_REQ_HEAD_MAX (64 + PROTO_CAMERA_MAX)
int proto_req_encode_head(const proto_req_t *req, uint8_t *buf, size_t cap, size_t *len);

/* Decodes buf[0..len) into *req (views into buf). Returns 0 or PROTO_ETRUNC, PROTO_EMAGIC,
 * PROTO_EVERSION, PROTO_ETYPE, PROTO_ETOOBIG, PROTO_ECORRUPT. Never reads outside buf. */
int proto_req_decode(proto_req_t *req, const uint8_t *buf, size_t len);

int64_t proto_rep_size(const proto_rep_t *rep);
int proto_rep_encode(const proto_rep_t *rep, uint8_t *buf, size_t cap, size_t *len);
int proto_rep_decode(proto_rep_t *rep, const uint8_t *buf, size_t len);

/* Iterates the detections of a decoded reply: *cursor starts at 0; each call fills *det
 * (label is a view into the buffer) and returns 1, or returns 0 after the last one. */
int proto_rep_det_next(const proto_rep_t *rep, size_t *cursor, proto_det_t *det);

/* Reads the message type of buf without decoding the rest: a type, or a negative code. */
int proto_peek_type(const uint8_t *buf, size_t len);

#endif
