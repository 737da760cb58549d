/* An incremental parser of an MJPEG camera's body (multipart/x-mixed-replace): bytes go in as
 * the network gives them, whole JPEG frames come out. Pure (no I/O, no timers), so it is unit
 * tested and fuzzed on its own.
 *
 *   --BOUNDARY\r\n
 *   Content-Type: image/jpeg\r\n
 *   Content-Length: N\r\n          (optional: without it the part ends at the next boundary)
 *   \r\n
 *   N bytes of JPEG\r\n
 *   --BOUNDARY\r\n ...
 *
 * Every length is checked before anything is kept: a part over max_part bytes (declared or
 * found), a header block over GW_MJPEG_HEADERS_MAX, a Content-Length that is not a number, a
 * part that is not a JPEG (no FF D8 FF start), or more than max_part bytes without a boundary
 * all make gw_mjpeg_feed fail with a reason; the parser is then spent (gw_mjpeg_reset, and a
 * new connection, start again). Memory: one buffer of at most max_part + GW_MJPEG_HEADERS_MAX
 * bytes. Not thread-safe; the caller owns the struct. */
#ifndef GW_MJPEG_H
#define GW_MJPEG_H

#include <stddef.h>
#include <stdint.h>

#define GW_MJPEG_BOUNDARY_MAX 70 /* RFC 2046's limit */
#define GW_MJPEG_HEADERS_MAX 8192

typedef struct {
    /* set by gw_mjpeg_init */
    char delim[GW_MJPEG_BOUNDARY_MAX + 3]; /* "--" + boundary */
    size_t delim_len;
    size_t max_part;
    /* state */
    int state;        /* where in a part we are (mjpeg.c) */
    uint8_t *buf;     /* bytes received and not consumed yet */
    size_t len, cap;  /* in buf / allocated (never over max_part + GW_MJPEG_HEADERS_MAX) */
    size_t scanned;   /* bytes of buf already searched for the delimiter */
    int64_t part_len; /* the part's Content-Length; -1 = none given */
    int image_part;   /* the part's Content-Type is an image's (or absent) */
    uint64_t frames;  /* frames given out */
    uint64_t skipped; /* parts that were not images (a text part): skipped, not errors */
    char error[200];  /* why the last gw_mjpeg_feed failed */
} gw_mjpeg_t;

/* One whole frame: `jpeg` is borrowed for the call. */
typedef void (*gw_mjpeg_frame_cb)(void *arg, const uint8_t *jpeg, size_t len);

/* Reads the boundary from a Content-Type ("multipart/x-mixed-replace; boundary=frame"; quoted
 * or with a leading "--" as some cameras send it) and gets ready for parts of at most
 * max_part bytes. 0, or PROTO_EFORMAT (not multipart, no usable boundary) with p->error set.
 * Nothing is allocated until data comes. */
int gw_mjpeg_init(gw_mjpeg_t *p, const char *content_type, size_t max_part);

/* Parses more of the body; on_frame runs for every frame completed, in order, before this
 * returns. 0, PROTO_EFORMAT (malformed), PROTO_ETOOBIG (a part over max_part) or PROTO_ENOMEM,
 * with p->error set; after an error the parser takes nothing more. */
int gw_mjpeg_feed(gw_mjpeg_t *p, const uint8_t *data, size_t len, gw_mjpeg_frame_cb on_frame,
                  void *arg);

/* Frees the buffer; the struct may be initialised again. */
void gw_mjpeg_fini(gw_mjpeg_t *p);

#endif
