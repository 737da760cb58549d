#include "msg.h"

#include <math.h>
#include <string.h>

/* A bounds-checked cursor. Every read first checks that `need` bytes remain, so a
 * truncated or lying message fails with PROTO_ETRUNC instead of over-reading. */
typedef struct {
    const uint8_t *p;
    size_t left;
} rd_t;

typedef struct {
    uint8_t *p;
    size_t left;
} wr_t;

static int rd_need(const rd_t *r, size_t n) { return r->left >= n ? 0 : PROTO_ETRUNC; }

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static int rd_uint(rd_t *r, int n, uint64_t *v)
{
    int rv;
    if ((rv = rd_need(r, (size_t)n)) != 0)
        return rv;
    *v = get_le(r->p, n);
    r->p += n;
    r->left -= (size_t)n;
    return 0;
}

static int rd_u8(rd_t *r, uint8_t *v)
{
    uint64_t x = 0;
    int rv = rd_uint(r, 1, &x);
    *v = (uint8_t)x;
    return rv;
}

static int rd_u16(rd_t *r, uint16_t *v)
{
    uint64_t x = 0;
    int rv = rd_uint(r, 2, &x);
    *v = (uint16_t)x;
    return rv;
}

static int rd_u32(rd_t *r, uint32_t *v)
{
    uint64_t x = 0;
    int rv = rd_uint(r, 4, &x);
    *v = (uint32_t)x;
    return rv;
}

static int rd_u64(rd_t *r, uint64_t *v) { return rd_uint(r, 8, v); }

static int rd_f32(rd_t *r, float *v)
{
    uint32_t bits;
    int rv;
    if ((rv = rd_u32(r, &bits)) != 0)
        return rv;
    memcpy(v, &bits, sizeof bits);
    return 0;
}

/* Takes `n` raw bytes as a view. */
static int rd_bytes(rd_t *r, size_t n, const uint8_t **out)
{
    int rv;
    if ((rv = rd_need(r, n)) != 0)
        return rv;
    *out = r->p;
    r->p += n;
    r->left -= n;
    return 0;
}

static void wr_uint(wr_t *w, uint64_t v, int n)
{
    put_le(w->p, v, n);
    w->p += n;
    w->left -= (size_t)n;
}

static void wr_f32(wr_t *w, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    wr_uint(w, bits, 4);
}

static void wr_bytes(wr_t *w, const void *src, size_t n)
{
    if (n > 0)
        memcpy(w->p, src, n);
    w->p += n;
    w->left -= n;
}

static int rd_header(rd_t *r, uint16_t *type)
{
    uint32_t magic;
    uint16_t version;
    int rv;
    if ((rv = rd_u32(r, &magic)) != 0)
        return rv;
    if (magic != PROTO_MAGIC)
        return PROTO_EMAGIC;
    if ((rv = rd_u16(r, &version)) != 0)
        return rv;
    if (version != PROTO_VERSION)
        return PROTO_EVERSION;
    return rd_u16(r, type);
}

static void wr_header(wr_t *w, uint16_t type)
{
    wr_uint(w, PROTO_MAGIC, 4);
    wr_uint(w, PROTO_VERSION, 2);
    wr_uint(w, type, 2);
}

int proto_peek_type(const uint8_t *buf, size_t len)
{
    rd_t r = {buf, len};
    uint16_t type;
    int rv = rd_header(&r, &type);
    return rv != 0 ? rv : (int)type;
}

/* ---- request ---- */

#define REQ_FIXED (PROTO_HEADER_SIZE + 8 + 8 + 8 + 4 + 1 + 1 + 2 + 2 + 4)

static int req_check(const proto_req_t *req)
{
    if (req->type != PROTO_T_DETECT && req->type != PROTO_T_PING)
        return PROTO_ETYPE;
    if (req->camera_len > PROTO_CAMERA_MAX || req->payload_len > PROTO_PAYLOAD_MAX)
        return PROTO_ETOOBIG;
    if ((req->camera_len > 0 && req->camera == NULL) ||
        (req->payload_len > 0 && req->payload == NULL))
        return PROTO_EINVAL;
    if (!(req->threshold >= 0.0f && req->threshold <= 1.0f)) /* also rejects NaN */
        return PROTO_EINVAL;
    if (req->output > PROTO_OUT_TEXT)
        return PROTO_EINVAL;
    return 0;
}

int64_t proto_req_size(const proto_req_t *req)
{
    int rv = req_check(req);
    if (rv != 0)
        return rv;
    return (int64_t)REQ_FIXED + req->camera_len + req->payload_len;
}

/* Writes every field but the payload's bytes (the last field). */
static int req_encode(const proto_req_t *req, uint8_t *buf, size_t cap, size_t *len, int payload)
{
    int64_t size = proto_req_size(req);
    if (size < 0)
        return (int)size;
    if (!payload)
        size -= req->payload_len;
    if ((uint64_t)size > cap)
        return PROTO_ENOSPC;
    wr_t w = {buf, cap};
    wr_header(&w, req->type);
    wr_uint(&w, req->id, 8);
    wr_uint(&w, (uint64_t)req->client_ts_ms, 8);
    wr_uint(&w, (uint64_t)req->deadline_ms, 8);
    wr_f32(&w, req->threshold);
    wr_uint(&w, req->output, 1);
    wr_uint(&w, req->flags, 1);
    wr_uint(&w, req->top_k, 2);
    wr_uint(&w, req->camera_len, 2);
    wr_bytes(&w, req->camera, req->camera_len);
    wr_uint(&w, req->payload_len, 4);
    if (payload)
        wr_bytes(&w, req->payload, req->payload_len);
    *len = (size_t)size;
    return 0;
}

int proto_req_encode(const proto_req_t *req, uint8_t *buf, size_t cap, size_t *len)
{
    return req_encode(req, buf, cap, len, 1);
}

int proto_req_encode_head(const proto_req_t *req, uint8_t *buf, size_t cap, size_t *len)
{
    return req_encode(req, buf, cap, len, 0);
}

int proto_req_decode(proto_req_t *req, const uint8_t *buf, size_t len)
{
    rd_t r = {buf, len};
    uint64_t u64;
    const uint8_t *view;
    int rv;

    memset(req, 0, sizeof *req);
    if ((rv = rd_header(&r, &req->type)) != 0)
        return rv;
    if (req->type != PROTO_T_DETECT && req->type != PROTO_T_PING)
        return PROTO_ETYPE;
    if ((rv = rd_u64(&r, &req->id)) != 0)
        return rv;
    if ((rv = rd_u64(&r, &u64)) != 0)
        return rv;
    req->client_ts_ms = (int64_t)u64;
    if ((rv = rd_u64(&r, &u64)) != 0)
        return rv;
    req->deadline_ms = (int64_t)u64;
    if ((rv = rd_f32(&r, &req->threshold)) != 0 || (rv = rd_u8(&r, &req->output)) != 0 ||
        (rv = rd_u8(&r, &req->flags)) != 0 || (rv = rd_u16(&r, &req->top_k)) != 0 ||
        (rv = rd_u16(&r, &req->camera_len)) != 0)
        return rv;
    if (!(req->threshold >= 0.0f && req->threshold <= 1.0f) || req->output > PROTO_OUT_TEXT)
        return PROTO_ECORRUPT;
    if (req->camera_len > PROTO_CAMERA_MAX)
        return PROTO_ETOOBIG;
    if ((rv = rd_bytes(&r, req->camera_len, &view)) != 0)
        return rv;
    req->camera = (const char *)view;
    if ((rv = rd_u32(&r, &req->payload_len)) != 0)
        return rv;
    if (req->payload_len > PROTO_PAYLOAD_MAX)
        return PROTO_ETOOBIG;
    if ((rv = rd_bytes(&r, req->payload_len, &req->payload)) != 0)
        return rv;
    return r.left == 0 ? 0 : PROTO_ECORRUPT;
}

/* ---- reply ---- */

#define REP_FIXED (PROTO_HEADER_SIZE + 8 + 4 + 4 * 5 + 1 + 2 + 4 + 4)
#define DET_FIXED (4 + 4 * 5 + 1)

int64_t proto_rep_size(const proto_rep_t *rep)
{
    if (rep->type != PROTO_T_RESULT && rep->type != PROTO_T_PONG)
        return PROTO_ETYPE;
    if (rep->error_len > PROTO_ERROR_MAX || rep->ndet > PROTO_DETS_MAX ||
        rep->payload_len > PROTO_PAYLOAD_MAX)
        return PROTO_ETOOBIG;
    if (rep->kind > PROTO_KIND_CLASSES)
        return PROTO_EINVAL;
    if ((rep->error_len > 0 && rep->error == NULL) || (rep->ndet > 0 && rep->dets == NULL) ||
        (rep->payload_len > 0 && rep->payload == NULL))
        return PROTO_EINVAL;
    int64_t size = (int64_t)REP_FIXED + rep->error_len + rep->payload_len;
    for (uint32_t i = 0; i < rep->ndet; i++) {
        const proto_det_t *d = &rep->dets[i];
        if (d->label_len > 0 && d->label == NULL)
            return PROTO_EINVAL;
        size += DET_FIXED + d->label_len;
    }
    return size;
}

int proto_rep_encode(const proto_rep_t *rep, uint8_t *buf, size_t cap, size_t *len)
{
    int64_t size = proto_rep_size(rep);
    if (size < 0)
        return (int)size;
    if ((uint64_t)size > cap)
        return PROTO_ENOSPC;
    wr_t w = {buf, cap};
    wr_header(&w, rep->type);
    wr_uint(&w, rep->id, 8);
    wr_uint(&w, (uint32_t)rep->status, 4);
    wr_uint(&w, rep->width, 4);
    wr_uint(&w, rep->height, 4);
    wr_uint(&w, rep->decode_us, 4);
    wr_uint(&w, rep->infer_us, 4);
    wr_uint(&w, rep->total_us, 4);
    wr_uint(&w, rep->kind, 1);
    wr_uint(&w, rep->error_len, 2);
    wr_bytes(&w, rep->error, rep->error_len);
    wr_uint(&w, rep->ndet, 4);
    for (uint32_t i = 0; i < rep->ndet; i++) {
        const proto_det_t *d = &rep->dets[i];
        wr_uint(&w, (uint32_t)d->class_id, 4);
        wr_f32(&w, d->confidence);
        wr_f32(&w, d->x);
        wr_f32(&w, d->y);
        wr_f32(&w, d->w);
        wr_f32(&w, d->h);
        wr_uint(&w, d->label_len, 1);
        wr_bytes(&w, d->label, d->label_len);
    }
    wr_uint(&w, rep->payload_len, 4);
    wr_bytes(&w, rep->payload, rep->payload_len);
    *len = (size_t)size;
    return 0;
}

/* Reads one detection record; shared by decode (validation) and the iterator. */
static int rd_det(rd_t *r, proto_det_t *d)
{
    uint32_t cls;
    const uint8_t *view;
    int rv;
    if ((rv = rd_u32(r, &cls)) != 0 || (rv = rd_f32(r, &d->confidence)) != 0 ||
        (rv = rd_f32(r, &d->x)) != 0 || (rv = rd_f32(r, &d->y)) != 0 ||
        (rv = rd_f32(r, &d->w)) != 0 || (rv = rd_f32(r, &d->h)) != 0 ||
        (rv = rd_u8(r, &d->label_len)) != 0)
        return rv;
    d->class_id = (int32_t)cls;
    if ((rv = rd_bytes(r, d->label_len, &view)) != 0)
        return rv;
    d->label = (const char *)view;
    if (!isfinite(d->confidence) || !isfinite(d->x) || !isfinite(d->y) || !isfinite(d->w) ||
        !isfinite(d->h))
        return PROTO_ECORRUPT;
    return 0;
}

int proto_rep_decode(proto_rep_t *rep, const uint8_t *buf, size_t len)
{
    rd_t r = {buf, len};
    uint64_t u64;
    uint32_t status;
    const uint8_t *view;
    int rv;

    memset(rep, 0, sizeof *rep);
    if ((rv = rd_header(&r, &rep->type)) != 0)
        return rv;
    if (rep->type != PROTO_T_RESULT && rep->type != PROTO_T_PONG)
        return PROTO_ETYPE;
    if ((rv = rd_u64(&r, &u64)) != 0)
        return rv;
    rep->id = u64;
    if ((rv = rd_u32(&r, &status)) != 0 || (rv = rd_u32(&r, &rep->width)) != 0 ||
        (rv = rd_u32(&r, &rep->height)) != 0 || (rv = rd_u32(&r, &rep->decode_us)) != 0 ||
        (rv = rd_u32(&r, &rep->infer_us)) != 0 || (rv = rd_u32(&r, &rep->total_us)) != 0 ||
        (rv = rd_u8(&r, &rep->kind)) != 0 || (rv = rd_u16(&r, &rep->error_len)) != 0)
        return rv;
    rep->status = (int32_t)status;
    if (rep->status > 0 || rep->kind > PROTO_KIND_CLASSES)
        return PROTO_ECORRUPT;
    if (rep->error_len > PROTO_ERROR_MAX)
        return PROTO_ETOOBIG;
    if ((rv = rd_bytes(&r, rep->error_len, &view)) != 0)
        return rv;
    rep->error = (const char *)view;
    if ((rv = rd_u32(&r, &rep->ndet)) != 0)
        return rv;
    if (rep->ndet > PROTO_DETS_MAX)
        return PROTO_ETOOBIG;
    /* Cheap bound first, so a lying count cannot make us loop long over a short buffer. */
    if ((uint64_t)rep->ndet * DET_FIXED > r.left)
        return PROTO_ETRUNC;
    rep->dets_raw = r.p;
    for (uint32_t i = 0; i < rep->ndet; i++) {
        proto_det_t d;
        if ((rv = rd_det(&r, &d)) != 0)
            return rv;
    }
    if ((rv = rd_u32(&r, &rep->payload_len)) != 0)
        return rv;
    if (rep->payload_len > PROTO_PAYLOAD_MAX)
        return PROTO_ETOOBIG;
    if ((rv = rd_bytes(&r, rep->payload_len, &rep->payload)) != 0)
        return rv;
    return r.left == 0 ? 0 : PROTO_ECORRUPT;
}

int proto_rep_det_next(const proto_rep_t *rep, size_t *cursor, proto_det_t *det)
{
    /* cursor packs (index << 32 | byte offset); the records were validated by decode. */
    size_t index = *cursor >> 32, off = *cursor & 0xffffffffu;
    if (rep->dets_raw == NULL || index >= rep->ndet)
        return 0;
    rd_t r = {rep->dets_raw + off, (size_t)-1};
    if (rd_det(&r, det) != 0)
        return 0;
    off = (size_t)(r.p - rep->dets_raw);
    *cursor = ((index + 1) << 32) | off;
    return 1;
}
