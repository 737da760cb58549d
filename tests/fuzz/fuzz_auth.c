/* The front door's parsers and its token check (gateway/auth.h, limit.h, frontdoor.h). The
 * first byte picks:
 *   0: a token file (gw_auth_parse): a count within bounds, or a refusal that says why; a
 *      camera token is bound to cameras, the others not; in a table made of it
 *      (gw_auth_create_text) every token of the file is found by gw_auth_check with its role,
 *      and the same token with one byte changed is not (unless that is another's);
 *   1: a rate ("50/s burst 100", gw_rate_parse): off, or a positive rate and burst >= 1;
 *   2: a request's token: the rest split at the first NUL into an Authorization header and a
 *      query (gw_frontdoor_token): a length within the buffer, NUL-terminated;
 *   3: a check: the rest split at NULs into a token file, a presented token and a camera, the
 *      byte after the selector the route's mask: the answer is 0, 401 or 403; every call that
 *      reaches the table compares every entry's whole digest (no early exit), whatever the
 *      token; an accepted token's digest is the entry's; a camera token passes a
 *      GW_ALLOW_OWN_CAMERA route only for one of its cameras. */
#include <mbedtls/sha256.h>
#include <string.h>

#include "auth.h"
#include "err.h"
#include "frontdoor.h"
#include "fuzz.h"
#include "http.h"
#include "limit.h"
#include "msg.h"

#define MAXT 16

/* The next token line's first word (gw_auth_parse's splitting), from *s; its length, 0 at
 * the end of the text. */
static size_t next_token(const char **s, const char **w)
{
    while (**s != '\0') {
        const char *p = *s;
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        size_t n = strcspn(p, " \t\r\n");
        const char *eol = p + strcspn(p, "\n");
        *s = *eol == '\n' ? eol + 1 : eol;
        if (n > 0 && p[0] != '#') {
            *w = p;
            return n;
        }
    }
    return 0;
}

static void tokens(const char *text)
{
    static gw_token_t t[MAXT];
    char err[256] = "";
    int n = gw_auth_parse(text, t, MAXT, err, sizeof err);
    FUZZ_CHECK(n == PROTO_ECONFIG || (n >= 0 && n <= MAXT));
    if (n < 0) {
        FUZZ_CHECK(err[0] != '\0');
        return;
    }
    for (int i = 0; i < n; i++) {
        FUZZ_CHECK(t[i].role == GW_ROLE_CAMERA || t[i].role == GW_ROLE_VIEWER ||
                   t[i].role == GW_ROLE_ADMIN);
        FUZZ_CHECK(strlen(t[i].name) > 0 && strlen(t[i].name) < GW_AUTH_NAME_MAX);
        FUZZ_CHECK((t[i].role == GW_ROLE_CAMERA) == (t[i].cameras[0] != '\0'));
        FUZZ_CHECK(strlen(t[i].cameras) < GW_AUTH_CAMERAS_MAX);
    }
    gw_auth_t *a = NULL;
    FUZZ_CHECK(gw_auth_create_text(&a, text, err, sizeof err) == 0);
    FUZZ_CHECK(gw_auth_count(a) == n);
    const char *s = text, *w;
    size_t len;
    int i = 0;
    char other[GW_AUTH_TOKEN_MAX + 1];
    while ((len = next_token(&s, &w)) > 0) {
        FUZZ_CHECK(i < n && len <= GW_AUTH_TOKEN_MAX);
        const gw_token_t *who;
        FUZZ_CHECK(gw_auth_check(a, w, len, GW_ROLE_ADMIN, NULL, 0, &who) != PROTO_EUNAUTHORIZED);
        FUZZ_CHECK(who != NULL && who->role == t[i].role && memcmp(who->hash, t[i].hash, 32) == 0);
        memcpy(other, w, len);
        other[len - 1] ^= 0x01;
        int rv = gw_auth_check(a, other, len, GW_ROLE_ADMIN, NULL, 0, &who);
        if (rv != PROTO_EUNAUTHORIZED) { /* only if it is another line's token */
            uint8_t h[32];
            mbedtls_sha256_ret((const unsigned char *)other, len, h, 0);
            FUZZ_CHECK(who != NULL && memcmp(who->hash, h, 32) == 0);
        }
        i++;
    }
    FUZZ_CHECK(i == n);
    gw_auth_destroy(a);
}

/* Mode 3: a token file, a presented token and a camera, split at NULs; allow from a byte. */
static void check(unsigned allow, const uint8_t *data, size_t size)
{
    static char file[1 << 14], tok[GW_AUTH_TOKEN_MAX + 64], cam[PROTO_CAMERA_MAX + 64];
    char *parts[3] = {file, tok, cam};
    size_t caps[3] = {sizeof file, sizeof tok, sizeof cam}, lens[3] = {0, 0, 0};
    int k = 0;
    for (size_t i = 0; i < size && k < 3; i++) {
        if (data[i] == 0) {
            k++;
            continue;
        }
        if (lens[k] + 1 < caps[k])
            parts[k][lens[k]++] = (char)data[i];
    }
    for (k = 0; k < 3; k++)
        parts[k][lens[k]] = '\0';
    gw_auth_t *a = NULL;
    char err[256];
    if (gw_auth_create_text(&a, file, err, sizeof err) != 0)
        return;
    allow &=
        GW_ROLE_CAMERA | GW_ROLE_VIEWER | GW_ROLE_ADMIN | GW_ALLOW_OWN_CAMERA | GW_OWN_CAMERA_KEY;
    const gw_token_t *who;
    uint64_t before = gw_auth_compared(a);
    int rv =
        gw_auth_check(a, lens[1] ? tok : NULL, lens[1], allow, lens[2] ? cam : NULL, lens[2], &who);
    uint64_t cost = gw_auth_compared(a) - before;
    FUZZ_CHECK(rv == 0 || rv == PROTO_EUNAUTHORIZED || rv == PROTO_EFORBIDDEN);
    /* the same work for any token: the whole table, or nothing on a public route */
    FUZZ_CHECK(cost == (allow != 0 ? (uint64_t)gw_auth_count(a) * 32 : 0));
    if (rv == PROTO_EUNAUTHORIZED)
        FUZZ_CHECK(who == NULL);
    if (rv != PROTO_EUNAUTHORIZED && allow != 0) {
        uint8_t h[32];
        mbedtls_sha256_ret((const unsigned char *)tok, lens[1], h, 0);
        FUZZ_CHECK(who != NULL && lens[1] > 0 && memcmp(who->hash, h, 32) == 0);
    }
    if (rv == 0 && who != NULL && who->role == GW_ROLE_CAMERA && (allow & GW_ROLE_CAMERA) == 0) {
        /* let through by its camera: the route's '*' (or the key's first segment) is its own */
        size_t n = lens[2];
        if (allow & GW_OWN_CAMERA_KEY) {
            const char *slash = memchr(cam, '/', n);
            FUZZ_CHECK(slash != NULL);
            n = (size_t)(slash - cam);
        }
        FUZZ_CHECK((allow & GW_ALLOW_OWN_CAMERA) && n > 0 &&
                   gw_auth_camera_ok(who->cameras, cam, n));
    }
    /* a bound list: "*" admits any camera; an exact item admits itself only */
    if (who != NULL && who->role == GW_ROLE_CAMERA) {
        FUZZ_CHECK(!gw_auth_camera_ok(who->cameras, "", 0) || strcmp(who->cameras, "*") == 0 ||
                   strstr(who->cameras, ",*") != NULL || strncmp(who->cameras, "*,", 2) == 0);
    }
    gw_auth_destroy(a);
}

static void rate(const char *text)
{
    gw_rate_t r;
    if (gw_rate_parse(text, &r) != 0)
        return;
    FUZZ_CHECK((r.rate == 0 && r.burst == 0) || (r.rate > 0 && r.burst >= 1));
}

static void token_of(const uint8_t *data, size_t size)
{
    static gw_req_t r;
    memset(&r, 0, sizeof r);
    const uint8_t *nul = memchr(data, 0, size);
    size_t a = nul ? (size_t)(nul - data) : size;
    if (a >= sizeof r.authorization)
        a = sizeof r.authorization - 1;
    memcpy(r.authorization, data, a);
    if (nul != NULL) {
        size_t q = size - (size_t)(nul - data) - 1;
        if (q >= sizeof r.query)
            q = sizeof r.query - 1;
        memcpy(r.query, nul + 1, q);
    }
    r.authorization[strlen(r.authorization)] = '\0';
    char buf[GW_AUTH_TOKEN_MAX + 1];
    size_t n = gw_frontdoor_token(&r, buf, sizeof buf);
    FUZZ_CHECK(n < sizeof buf);
    if (n > 0)
        FUZZ_CHECK(buf[n] == '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static char text[1 << 16];
    size_t n = size - 1 < sizeof text - 1 ? size - 1 : sizeof text - 1;
    memcpy(text, data + 1, n);
    text[n] = '\0';
    switch (data[0] % 4) {
    case 0:
        tokens(text);
        break;
    case 1:
        rate(text);
        break;
    case 2:
        token_of(data + 1, size - 1);
        break;
    default:
        if (size >= 2)
            check(data[1], data + 2, size - 2);
        break;
    }
    return 0;
}
