/* The multipart body is parsed from one buffer that only ever holds the current part (and what
 * follows it in the last read): a part is handed out and dropped before the next is looked at,
 * so a camera sending faster than we read costs memory for one part, never a backlog. */
#include "mjpeg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"

enum { S_BOUNDARY, S_HEADERS, S_BODY, S_END, S_FAILED };

/* Room after a delimiter for transport padding and the line end, before the line is judged
 * not to be a delimiter line. */
#define DELIM_LINE_MAX 80

static int fail(gw_mjpeg_t *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(gw_mjpeg_t *p, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof p->error, fmt, ap);
    va_end(ap);
    p->state = S_FAILED;
    return code;
}

int gw_mjpeg_init(gw_mjpeg_t *p, const char *content_type, size_t max_part)
{
    memset(p, 0, sizeof *p);
    p->max_part = max_part;
    p->part_len = -1;
    p->state = S_BOUNDARY;
    const char *ct = content_type != NULL ? content_type : "";
    if (strncasecmp(ct, "multipart/", 10) != 0)
        return fail(p, PROTO_EFORMAT, "Content-Type '%.80s' is not multipart/x-mixed-replace", ct);
    /* the boundary parameter, case-insensitive, after a ';' */
    const char *b = NULL;
    for (const char *s = strchr(ct, ';'); s != NULL; s = strchr(s + 1, ';')) {
        const char *q = s + 1;
        while (*q == ' ' || *q == '\t')
            q++;
        if (strncasecmp(q, "boundary=", 9) == 0) {
            b = q + 9;
            break;
        }
    }
    if (b == NULL)
        return fail(p, PROTO_EFORMAT, "Content-Type '%.80s' has no boundary", ct);
    char bound[GW_MJPEG_BOUNDARY_MAX + 1];
    size_t n;
    if (*b == '"') {
        b++;
        const char *end = strchr(b, '"');
        n = end != NULL ? (size_t)(end - b) : strlen(b) + GW_MJPEG_BOUNDARY_MAX + 1;
    } else {
        n = strcspn(b, "; \t");
    }
    /* Some cameras declare "--frame" and send "--frame" (not "----frame"): the leading dashes
     * are taken as part of the delimiter's own "--". */
    if (n >= 2 && b[0] == '-' && b[1] == '-') {
        b += 2;
        n -= 2;
    }
    if (n == 0 || n > GW_MJPEG_BOUNDARY_MAX)
        return fail(p, PROTO_EFORMAT, "boundary of %zu bytes (1..%d)", n, GW_MJPEG_BOUNDARY_MAX);
    memcpy(bound, b, n);
    bound[n] = '\0';
    p->delim_len = (size_t)snprintf(p->delim, sizeof p->delim, "--%s", bound);
    return 0;
}

void gw_mjpeg_fini(gw_mjpeg_t *p)
{
    free(p->buf);
    p->buf = NULL;
    p->len = p->cap = 0;
}

static void consume(gw_mjpeg_t *p, size_t n)
{
    memmove(p->buf, p->buf + n, p->len - n);
    p->len -= n;
    p->scanned = 0;
}

/* The first delimiter at the start of a line in buf[from..len), or -1. */
static long find_delim(const gw_mjpeg_t *p, size_t from)
{
    const uint8_t *s = p->buf;
    while (from + p->delim_len <= p->len) {
        const uint8_t *hit = memmem(s + from, p->len - from, p->delim, p->delim_len);
        if (hit == NULL)
            return -1;
        size_t at = (size_t)(hit - s);
        if (at == 0 || s[at - 1] == '\n')
            return (long)at;
        from = at + 1;
    }
    return -1;
}

/* Where a search for the delimiter may resume: a delimiter may straddle the end of buf, and it
 * needs the byte before it. */
static size_t rescan_from(const gw_mjpeg_t *p)
{
    return p->len > p->delim_len ? p->len - p->delim_len : 0;
}

/* Looks for the next delimiter line. 1 = found (and consumed, state moved on), 0 = need more,
 * negative = failed. */
static int step_boundary(gw_mjpeg_t *p)
{
    for (;;) {
        long at = find_delim(p, p->scanned);
        if (at < 0) {
            p->scanned = rescan_from(p);
            /* preamble or junk between parts: bounded like a part */
            if (p->len > p->max_part + DELIM_LINE_MAX)
                return fail(p, PROTO_EFORMAT, "no boundary '%s' within %zu bytes", p->delim,
                            p->max_part);
            return 0;
        }
        size_t i = (size_t)at + p->delim_len;
        if ((p->len == i + 1 && p->buf[i] == '-') || p->len == i) {
            /* "--b" or "--b-" at the end of what came: the close delimiter, maybe */
            p->scanned = (size_t)at;
            return 0;
        }
        if (p->buf[i] == '-' && p->buf[i + 1] == '-') {
            p->state = S_END; /* the close delimiter: the camera ended the stream */
            p->len = 0;
            return 1;
        }
        /* transport padding, bounded the same way whatever the reads were */
        size_t end = (size_t)at + DELIM_LINE_MAX;
        while (i < p->len && i < end && (p->buf[i] == ' ' || p->buf[i] == '\t'))
            i++;
        if (i < p->len && i < end && p->buf[i] == '\r')
            i++;
        if (i < p->len && i < end && p->buf[i] == '\n') {
            consume(p, i + 1);
            p->state = S_HEADERS;
            p->part_len = -1;
            return 1;
        }
        if (i >= p->len && i < end) {
            /* the line is not complete yet: keep it, look again with more */
            p->scanned = (size_t)at;
            return 0;
        }
        /* "--frameX...": a longer word, not our delimiter */
        p->scanned = (size_t)at + 1;
    }
}

/* One header line's value if its name is `name`, else NULL. */
static const char *header_value(const char *line, const char *name)
{
    size_t n = strlen(name);
    if (strncasecmp(line, name, n) != 0 || line[n] != ':')
        return NULL;
    const char *v = line + n + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    return v;
}

static int step_headers(gw_mjpeg_t *p, int *is_image)
{
    /* the blank line ending the headers: CRLF CRLF, or bare LFs from sloppy servers */
    size_t end = 0, body = 0;
    for (size_t i = 0; i < p->len; i++) {
        if (p->buf[i] != '\n')
            continue;
        if (i == 0 || (i == 1 && p->buf[0] == '\r')) { /* no headers at all */
            end = 0;
            body = i + 1;
            break;
        }
        if (i >= 1 && p->buf[i - 1] == '\n') {
            end = i;
            body = i + 1;
            break;
        }
        if (i >= 2 && p->buf[i - 1] == '\r' && p->buf[i - 2] == '\n') {
            end = i - 1;
            body = i + 1;
            break;
        }
    }
    if (body == 0) {
        if (p->len > GW_MJPEG_HEADERS_MAX)
            return fail(p, PROTO_EFORMAT, "part headers over %d bytes", GW_MJPEG_HEADERS_MAX);
        return 0;
    }
    if (end > GW_MJPEG_HEADERS_MAX)
        return fail(p, PROTO_EFORMAT, "part headers over %d bytes", GW_MJPEG_HEADERS_MAX);
    char block[GW_MJPEG_HEADERS_MAX + 1];
    memcpy(block, p->buf, end);
    block[end] = '\0';
    *is_image = 1;
    for (char *line = strtok(block, "\r\n"); line != NULL; line = strtok(NULL, "\r\n")) {
        const char *v;
        if ((v = header_value(line, "Content-Length")) != NULL) {
            /* digits only: no sign, no spaces inside, no overflow */
            size_t k = strspn(v, "0123456789");
            if (k == 0 || k > 12 || v[k + strspn(v + k, " \t")] != '\0')
                return fail(p, PROTO_EFORMAT, "part Content-Length '%.30s' is not a length", v);
            unsigned long long n = strtoull(v, NULL, 10);
            if (n > p->max_part)
                return fail(p, PROTO_ETOOBIG, "part of %llu bytes, over the limit of %zu", n,
                            p->max_part);
            p->part_len = (int64_t)n;
        } else if ((v = header_value(line, "Content-Type")) != NULL) {
            *is_image = strncasecmp(v, "image/", 6) == 0;
        }
    }
    consume(p, body);
    p->state = S_BODY;
    return 1;
}

static int give(gw_mjpeg_t *p, size_t len, int is_image, gw_mjpeg_frame_cb cb, void *arg)
{
    if (!is_image) {
        p->skipped++;
    } else if (len < 3 || memcmp(p->buf, "\xff\xd8\xff", 3) != 0) {
        return fail(p, PROTO_EFORMAT, "part %llu (%zu bytes) is not a JPEG",
                    (unsigned long long)(p->frames + p->skipped + 1), len);
    } else {
        p->frames++;
        cb(arg, p->buf, len);
    }
    return 0;
}

static int step_body(gw_mjpeg_t *p, int is_image, gw_mjpeg_frame_cb cb, void *arg)
{
    int rv;
    if (p->part_len >= 0) {
        if (p->len < (size_t)p->part_len)
            return 0;
        if ((rv = give(p, (size_t)p->part_len, is_image, cb, arg)) != 0)
            return rv;
        consume(p, (size_t)p->part_len);
    } else {
        long at = find_delim(p, p->scanned);
        if (at < 0) {
            p->scanned = rescan_from(p);
            if (p->len > p->max_part + 2)
                return fail(p, PROTO_ETOOBIG, "part over the limit of %zu bytes (no end found)",
                            p->max_part);
            return 0;
        }
        size_t n = (size_t)at; /* the line end before the delimiter is not the part's */
        if (n > 0 && p->buf[n - 1] == '\n')
            n--;
        if (n > 0 && p->buf[n - 1] == '\r')
            n--;
        if (n > p->max_part)
            return fail(p, PROTO_ETOOBIG, "part of %zu bytes, over the limit of %zu", n,
                        p->max_part);
        if ((rv = give(p, n, is_image, cb, arg)) != 0)
            return rv;
        consume(p, (size_t)at);
    }
    p->state = S_BOUNDARY;
    return 1;
}

int gw_mjpeg_feed(gw_mjpeg_t *p, const uint8_t *data, size_t len, gw_mjpeg_frame_cb on_frame,
                  void *arg)
{
    if (p->state == S_FAILED)
        return PROTO_EINVAL;
    size_t limit = p->max_part + GW_MJPEG_HEADERS_MAX + DELIM_LINE_MAX + 8;
    for (;;) {
        if (p->state == S_END) /* after the close delimiter: an epilogue, ignored */
            return 0;
        size_t room = limit - p->len, n = len < room ? len : room;
        if (n > 0) {
            if (p->len + n > p->cap) {
                size_t cap = p->cap ? p->cap : 65536;
                while (cap < p->len + n)
                    cap *= 2;
                if (cap > limit)
                    cap = limit;
                uint8_t *nb = realloc(p->buf, cap);
                if (nb == NULL)
                    return fail(p, PROTO_ENOMEM, "out of memory for a %zu-byte buffer", cap);
                p->buf = nb;
                p->cap = cap;
            }
            memcpy(p->buf + p->len, data, n);
            p->len += n;
            data += n;
            len -= n;
        }
        /* parse what is there until a step needs more */
        int rv;
        do {
            switch (p->state) {
            case S_BOUNDARY:
                rv = step_boundary(p);
                break;
            case S_HEADERS:
                rv = step_headers(p, &p->image_part);
                break;
            case S_BODY:
                rv = step_body(p, p->image_part, on_frame, arg);
                break;
            default:
                rv = 0;
            }
            if (rv < 0)
                return rv;
        } while (rv > 0 && p->state != S_END);
        if (len == 0)
            return 0;
        if (p->len >= limit) /* every step bounds itself below limit: cannot happen */
            return fail(p, PROTO_EFORMAT, "parser stuck with %zu bytes", p->len);
    }
}
