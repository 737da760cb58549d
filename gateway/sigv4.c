/* SigV4: canonical request -> string to sign -> signing key (four HMACs) -> signature.
 * Everything is written into caller-sized buffers; nothing is allocated. */
#include "sigv4.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/md.h>
#include <mbedtls/sha256.h>

#include "err.h"

#define MAX_QUERY_PARAMS 64

/* A bounded string builder: once over cap it stays failed, so callers check once. */
typedef struct {
    char *p;
    size_t len, cap;
    int over;
} sb_t;

static void sb_put(sb_t *b, const char *s, size_t n)
{
    if (b->over || b->len + n + 1 > b->cap) {
        b->over = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sb_t *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_ch(sb_t *b, char c)
{
    sb_put(b, &c, 1);
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void gw_sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char d[32];
    mbedtls_sha256_ret(data, len, d, 0);
    hex(d, 32, out);
}

void gw_sigv4_amz_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

int gw_sigv4_uri_encode(const char *in, size_t len, int keep_slash, char *out, size_t cap)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        int plain =
            isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/');
        if (o + (plain ? 1 : 3) + 1 > cap)
            return -1;
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = digits[c >> 4];
            out[o++] = digits[c & 15];
        }
    }
    if (o + 1 > cap)
        return -1;
    out[o] = '\0';
    return (int)o;
}

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 && *s != '\t')
            return 1;
    return 0;
}

/* ---- canonical query: name=value pairs sorted by name, then value ---- */

typedef struct {
    const char *s;
    size_t len;     /* the whole "name=value" or "name" */
    size_t namelen; /* up to '=' */
} qparam_t;

static int qparam_cmp(const qparam_t *a, const qparam_t *b)
{
    size_t n = a->namelen < b->namelen ? a->namelen : b->namelen;
    int c = memcmp(a->s, b->s, n);
    if (c != 0)
        return c;
    if (a->namelen != b->namelen)
        return a->namelen < b->namelen ? -1 : 1;
    const char *av = a->s + a->namelen, *bv = b->s + b->namelen;
    size_t al = a->len - a->namelen, bl = b->len - b->namelen; /* "=value" or "" */
    n = al < bl ? al : bl;
    c = memcmp(av, bv, n);
    if (c != 0)
        return c;
    return al < bl ? -1 : al > bl;
}

static int canonical_query(sb_t *b, const char *q)
{
    qparam_t ps[MAX_QUERY_PARAMS];
    int n = 0;
    while (q != NULL && *q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > 0) {
            if (n == MAX_QUERY_PARAMS)
                return PROTO_ETOOBIG;
            const char *eq = memchr(q, '=', len);
            ps[n++] = (qparam_t){q, len, eq ? (size_t)(eq - q) : len};
        }
        q += len;
        if (*q == '&')
            q++;
    }
    for (int i = 1; i < n; i++) { /* insertion sort: a handful of parameters */
        qparam_t x = ps[i];
        int j = i - 1;
        for (; j >= 0 && qparam_cmp(&ps[j], &x) > 0; j--)
            ps[j + 1] = ps[j];
        ps[j + 1] = x;
    }
    for (int i = 0; i < n; i++) {
        if (i > 0)
            sb_ch(b, '&');
        sb_put(b, ps[i].s, ps[i].len);
        if (ps[i].namelen == ps[i].len) /* "lifecycle" signs as "lifecycle=" */
            sb_ch(b, '=');
    }
    return 0;
}

/* ---- canonical headers ---- */

/* Header indices sorted by lower-cased name; equal names keep their order (their values are
 * joined with ',' in arrival order). */
static int sort_headers(const gw_sigv4_req_t *r, size_t *idx)
{
    if (r->nheaders > GW_SIGV4_MAX_HEADERS)
        return PROTO_ETOOBIG;
    for (size_t i = 0; i < r->nheaders; i++) {
        if (r->headers[i].name == NULL || r->headers[i].value == NULL ||
            r->headers[i].name[0] == '\0' || has_ctl(r->headers[i].name) ||
            has_ctl(r->headers[i].value))
            return PROTO_EINVAL;
        size_t x = i;
        size_t j = i;
        for (; j > 0 && strcasecmp(r->headers[idx[j - 1]].name, r->headers[x].name) > 0; j--)
            idx[j] = idx[j - 1];
        idx[j] = x;
    }
    return 0;
}

static void lower(sb_t *b, const char *s)
{
    for (; *s; s++)
        sb_ch(b, (char)tolower((unsigned char)*s));
}

/* The value trimmed, inner runs of spaces collapsed to one. */
static void trimmed(sb_t *b, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    int space = 0;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = 1;
            continue;
        }
        if (space)
            sb_ch(b, ' ');
        space = 0;
        sb_ch(b, *v);
    }
}

static void signed_headers(sb_t *b, const gw_sigv4_req_t *r, const size_t *idx)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        if (i > 0 && strcasecmp(r->headers[idx[i]].name, r->headers[idx[i - 1]].name) == 0)
            continue;
        if (i > 0)
            sb_ch(b, ';');
        lower(b, r->headers[idx[i]].name);
    }
}

static int check_req(const gw_sigv4_req_t *r)
{
    if (r->method == NULL || r->uri == NULL || r->region == NULL || r->service == NULL ||
        r->access_key == NULL || r->secret_key == NULL || r->amz_date == NULL ||
        strlen(r->amz_date) != 16 || r->nheaders == 0)
        return PROTO_EINVAL;
    return 0;
}

int gw_sigv4_canonical_request(const gw_sigv4_req_t *r, char *out, size_t cap)
{
    size_t idx[GW_SIGV4_MAX_HEADERS];
    sb_t b = {out, 0, cap, cap == 0};
    int rv;
    if ((rv = check_req(r)) != 0 || (rv = sort_headers(r, idx)) != 0)
        return rv;
    if (cap > 0)
        out[0] = '\0';
    sb_str(&b, r->method);
    sb_ch(&b, '\n');
    sb_str(&b, r->uri[0] ? r->uri : "/");
    sb_ch(&b, '\n');
    if ((rv = canonical_query(&b, r->query)) != 0)
        return rv;
    sb_ch(&b, '\n');
    for (size_t i = 0; i < r->nheaders; i++) {
        const gw_sigv4_header_t *h = &r->headers[idx[i]];
        int same = i > 0 && strcasecmp(h->name, r->headers[idx[i - 1]].name) == 0;
        if (same) {
            b.len--; /* the previous value's '\n' becomes the ',' joining them */
            sb_ch(&b, ',');
        } else {
            lower(&b, h->name);
            sb_ch(&b, ':');
        }
        trimmed(&b, h->value);
        sb_ch(&b, '\n');
    }
    sb_ch(&b, '\n');
    signed_headers(&b, r, idx);
    sb_ch(&b, '\n');
    sb_str(&b, r->payload_sha256 ? r->payload_sha256 : GW_SIGV4_EMPTY_SHA256);
    return b.over ? PROTO_ENOSPC : 0;
}

/* The scope "YYYYMMDD/region/service/aws4_request" into b. */
static void scope(sb_t *b, const gw_sigv4_req_t *r)
{
    sb_put(b, r->amz_date, 8);
    sb_ch(b, '/');
    sb_str(b, r->region);
    sb_ch(b, '/');
    sb_str(b, r->service);
    sb_str(b, "/aws4_request");
}

/* Canonical requests carry every signed header; 16 KiB covers S3 and EC2 with room. */
#define CREQ_MAX (16 << 10)

int gw_sigv4_string_to_sign(const gw_sigv4_req_t *r, char *out, size_t cap)
{
    char creq[CREQ_MAX], h[65];
    int rv = gw_sigv4_canonical_request(r, creq, sizeof creq);
    if (rv != 0)
        return rv == PROTO_ENOSPC ? PROTO_ETOOBIG : rv;
    gw_sigv4_sha256_hex(creq, strlen(creq), h);
    sb_t b = {out, 0, cap, cap == 0};
    if (cap > 0)
        out[0] = '\0';
    sb_str(&b, "AWS4-HMAC-SHA256\n");
    sb_str(&b, r->amz_date);
    sb_ch(&b, '\n');
    scope(&b, r);
    sb_ch(&b, '\n');
    sb_str(&b, h);
    return b.over ? PROTO_ENOSPC : 0;
}

static void hmac(const unsigned char *key, size_t klen, const char *msg, size_t mlen,
                 unsigned char out[32])
{
    mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), key, klen,
                    (const unsigned char *)msg, mlen, out);
}

int gw_sigv4_authorization(const gw_sigv4_req_t *r, char *out, size_t cap)
{
    char sts[512], kbuf[256];
    unsigned char k[32];
    size_t idx[GW_SIGV4_MAX_HEADERS];
    int rv;
    if ((rv = gw_sigv4_string_to_sign(r, sts, sizeof sts)) != 0)
        return rv == PROTO_ENOSPC ? PROTO_EINVAL : rv; /* region/service absurdly long */
    sort_headers(r, idx);                              /* checked by the call above */
    int n = snprintf(kbuf, sizeof kbuf, "AWS4%s", r->secret_key);
    if (n < 0 || (size_t)n >= sizeof kbuf)
        return PROTO_EINVAL;
    /* The signing key: date, region, service and "aws4_request", each an HMAC step. */
    hmac((const unsigned char *)kbuf, (size_t)n, r->amz_date, 8, k);
    hmac(k, 32, r->region, strlen(r->region), k);
    hmac(k, 32, r->service, strlen(r->service), k);
    hmac(k, 32, "aws4_request", 12, k);
    hmac(k, 32, sts, strlen(sts), k);
    memset(kbuf, 0, sizeof kbuf);
    char sig[65];
    hex(k, 32, sig);
    sb_t b = {out, 0, cap, cap == 0};
    if (cap > 0)
        out[0] = '\0';
    sb_str(&b, "AWS4-HMAC-SHA256 Credential=");
    sb_str(&b, r->access_key);
    sb_ch(&b, '/');
    scope(&b, r);
    sb_str(&b, ", SignedHeaders=");
    signed_headers(&b, r, idx);
    sb_str(&b, ", Signature=");
    sb_str(&b, sig);
    return b.over ? PROTO_ENOSPC : 0;
}
