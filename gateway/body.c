#include "body.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "err.h"

int gw_body_media_type(const char *ct, char *out, size_t cap)
{
    size_t n = 0;
    if (ct == NULL)
        return PROTO_EINVAL;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    for (; *ct && *ct != ';' && *ct != ' ' && *ct != '\t'; ct++) {
        if (n + 1 >= cap)
            return PROTO_EINVAL;
        out[n++] = (char)tolower((unsigned char)*ct);
    }
    out[n] = '\0';
    return n > 0 ? 0 : PROTO_EINVAL;
}

int gw_body_param(const char *ct, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *p = ct != NULL ? strchr(ct, ';') : NULL;
    while (p != NULL) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, name, nlen) == 0 && p[nlen] == '=') {
            const char *v = p + nlen + 1;
            size_t n = 0;
            if (*v == '"') {
                v++;
                while (v[n] && v[n] != '"')
                    n++;
            } else {
                while (v[n] && v[n] != ';' && v[n] != ' ' && v[n] != '\t')
                    n++;
            }
            if (n == 0 || n >= cap)
                return PROTO_EINVAL;
            memcpy(out, v, n);
            out[n] = '\0';
            return 0;
        }
        /* Next parameter: a ';' inside a quoted value (filename="a;b") is not one. */
        int quoted = 0;
        for (; *p && (quoted || *p != ';'); p++) {
            if (*p == '\\' && quoted && p[1] != '\0')
                p++;
            else if (*p == '"')
                quoted = !quoted;
        }
        p = *p == ';' ? p : NULL;
    }
    return PROTO_EINVAL;
}

size_t gw_body_b64_max(size_t len)
{
    return len / 4 * 3 + 3;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int gw_body_b64_decode(const char *in, size_t len, uint8_t *out, size_t *outlen)
{
    /* An optional data URL prefix: "data:image/jpeg;base64,". */
    if (len > 5 && memcmp(in, "data:", 5) == 0) {
        const char *comma = memchr(in, ',', len);
        if (comma == NULL || (size_t)(comma - in) < 7 || memcmp(comma - 7, ";base64", 7) != 0)
            return PROTO_EINVAL;
        len -= (size_t)(comma + 1 - in);
        in = comma + 1;
    }
    while (len > 0 && (in[len - 1] == '\n' || in[len - 1] == '\r'))
        len--;
    size_t pad = 0;
    while (len > 0 && in[len - 1] == '=' && pad < 2) {
        len--;
        pad++;
    }
    if (pad > 0 && (len + pad) % 4 != 0)
        return PROTO_EINVAL;
    if (len % 4 == 1)
        return PROTO_EINVAL; /* no encoder produces this */
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0)
            return PROTO_EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *outlen = o;
    return 0;
}

/* memmem over a bounded range. */
static const uint8_t *find(const uint8_t *hay, size_t len, const char *needle, size_t nlen)
{
    return nlen <= len ? memmem(hay, len, needle, nlen) : NULL;
}

/* Copies a header value (after "Name:") up to CRLF into out, trimmed. */
static void header_value(const uint8_t *v, const uint8_t *end, char *out, size_t cap)
{
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    size_t n = 0;
    while (v + n < end && v[n] != '\r' && v[n] != '\n')
        n++;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(out, v, n);
    out[n] = '\0';
}

/* Content-Disposition ("form-data; name=\"x\"; filename=\"y\"") has the same
 * "; key=value" shape as Content-Type parameters. */
static void disposition_param(const char *disp, const char *key, char *out, size_t cap)
{
    if (gw_body_param(disp, key, out, cap) != 0)
        out[0] = '\0';
}

int gw_body_multipart(const uint8_t *body, size_t len, const char *boundary, gw_part_cb cb,
                      void *arg)
{
    char delim[80];
    size_t blen = strlen(boundary);
    if (blen == 0 || blen > 70)
        return PROTO_EINVAL;
    if (body == NULL || len == 0) /* an empty body (NULL from the parser): no part, no delimiter */
        return PROTO_EINVAL;
    /* Parts are separated by CRLF "--" boundary; the first may start the body. */
    int dn = snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    const uint8_t *p = body, *end = body + len;
    if (len >= (size_t)dn - 2 && memcmp(body, delim + 2, (size_t)dn - 2) == 0) {
        p = body + dn - 2;
    } else {
        const uint8_t *first = find(body, len, delim, (size_t)dn);
        if (first == NULL)
            return PROTO_EINVAL;
        p = first + dn;
    }
    int count = 0;
    for (;;) {
        /* After a delimiter: "--" closes the body, CRLF starts a part. */
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return count;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return PROTO_EINVAL;
        p += 2;
        const uint8_t *hend = find(p, (size_t)(end - p), "\r\n\r\n", 4);
        const uint8_t *data;
        if (p + 2 <= end && p[0] == '\r' && p[1] == '\n') { /* no headers at all */
            hend = p - 2;
            data = p + 2;
        } else {
            if (hend == NULL || hend - p > 8192)
                return PROTO_EINVAL;
            data = hend + 4;
        }
        gw_part_t part;
        memset(&part, 0, sizeof part);
        for (const uint8_t *h = p; h < hend;) {
            const uint8_t *eol = find(h, (size_t)(hend - h), "\r\n", 2);
            if (eol == NULL)
                eol = hend;
            const uint8_t *colon = memchr(h, ':', (size_t)(eol - h));
            if (colon != NULL) {
                size_t nl = (size_t)(colon - h);
                char disp[512];
                if (nl == 19 && strncasecmp((const char *)h, "content-disposition", 19) == 0) {
                    header_value(colon + 1, eol, disp, sizeof disp);
                    disposition_param(disp, "name", part.name, sizeof part.name);
                    disposition_param(disp, "filename", part.filename, sizeof part.filename);
                } else if (nl == 12 && strncasecmp((const char *)h, "content-type", 12) == 0) {
                    header_value(colon + 1, eol, part.content_type, sizeof part.content_type);
                }
            }
            h = eol + 2;
        }
        const uint8_t *next = find(data, (size_t)(end - data), delim, (size_t)dn);
        if (next == NULL)
            return PROTO_EINVAL; /* no closing delimiter */
        part.data = data;
        part.len = (size_t)(next - data);
        int rv = cb(arg, &part);
        if (rv < 0)
            return rv;
        count++;
        p = next + dn;
    }
}

/* Length of the well-formed UTF-8 sequence at s[0..len), or 0 if there is none (RFC 3629's
 * table: no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    if (c >= 0x01 && c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

int gw_body_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_seq(p + i, len - i);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

void gw_body_utf8_sanitize(char *s, size_t len)
{
    unsigned char *p = (unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_seq(p + i, len - i);
        if (n == 0) {
            p[i] = '?';
            n = 1;
        }
        i += n;
    }
}
