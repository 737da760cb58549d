/* The MJPEG part parser (gateway/mjpeg.h). The input is a split size byte, a Content-Type
 * line, then the body:
 *
 *   \x07multipart/x-mixed-replace; boundary=b\n--b\r\nContent-Length: 4\r\n\r\n...
 *
 * The body is fed in pieces of (first byte % 64) + 1 bytes, as reads would come. Properties:
 * every frame given out is a view of at most max_part bytes starting FF D8 FF, the parser's
 * buffer never holds more than max_part + GW_MJPEG_HEADERS_MAX and a bit, an error leaves a
 * reason and the parser refuses anything after it, and the same body fed whole gives the same
 * frames (the split never changes the result). */
#include <string.h>

#include "err.h"
#include "fuzz.h"
#include "mjpeg.h"

#define MAX_PART 4096

typedef struct {
    int n;
    uint64_t sum; /* of lengths and first bytes after the magic */
} seen_t;

static void on_frame(void *arg, const uint8_t *jpeg, size_t len)
{
    seen_t *s = arg;
    FUZZ_CHECK(len >= 3 && len <= MAX_PART);
    FUZZ_CHECK(jpeg[0] == 0xFF && jpeg[1] == 0xD8 && jpeg[2] == 0xFF);
    volatile uint8_t x = jpeg[len - 1]; /* the whole view is readable */
    (void)x;
    s->n++;
    s->sum += len * 31 + (len > 3 ? jpeg[3] : 0);
}

static int run(const char *ct, const uint8_t *body, size_t len, size_t split, seen_t *s)
{
    gw_mjpeg_t p;
    if (gw_mjpeg_init(&p, ct, MAX_PART) != 0) {
        FUZZ_CHECK(p.error[0] != '\0');
        return 1;
    }
    int rv = 0;
    for (size_t off = 0; off < len && rv == 0; off += split) {
        size_t n = len - off < split ? len - off : split;
        rv = gw_mjpeg_feed(&p, body + off, n, on_frame, s);
        FUZZ_CHECK(p.len <= MAX_PART + GW_MJPEG_HEADERS_MAX + 100);
    }
    if (rv != 0) {
        FUZZ_CHECK(rv == PROTO_EFORMAT || rv == PROTO_ETOOBIG || rv == PROTO_ENOMEM);
        FUZZ_CHECK(p.error[0] != '\0');
        FUZZ_CHECK(gw_mjpeg_feed(&p, (const uint8_t *)"x", 1, on_frame, s) == PROTO_EINVAL);
    }
    gw_mjpeg_fini(&p);
    return rv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t split = (size_t)(data[0] % 64) + 1;
    const uint8_t *nl = memchr(data + 1, '\n', size - 1);
    if (nl == NULL || (size_t)(nl - data) > 300)
        return 0;
    char ct[301];
    memcpy(ct, data + 1, (size_t)(nl - data - 1));
    ct[nl - data - 1] = '\0';
    const uint8_t *body = nl + 1;
    size_t len = size - (size_t)(body - data);
    seen_t a = {0}, b = {0};
    int ra = run(ct, body, len, split, &a);
    int rb = run(ct, body, len, len > 0 ? len : 1, &b);
    /* the same frames whatever the reads; an error may show up after different frames only
     * when it is one the whole-body read saw too */
    FUZZ_CHECK((ra != 0) == (rb != 0));
    if (ra == 0)
        FUZZ_CHECK(a.n == b.n && a.sum == b.sum);
    return 0;
}
