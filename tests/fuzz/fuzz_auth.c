/* The front door's parsers (gateway/auth.h, limit.h, frontdoor.h). The first byte picks:
 *   0: a token file (gw_auth_parse): a count within bounds, or a refusal that says why;
 *      every token parsed is then found by gw_auth_check, and nothing else is;
 *   1: a rate ("50/s burst 100", gw_rate_parse): off, or a positive rate and burst >= 1;
 *   2: a request's token: the rest split at the first NUL into an Authorization header and a
 *      query (gw_frontdoor_token): a length within the buffer, NUL-terminated. */
#include <string.h>

#include "auth.h"
#include "err.h"
#include "frontdoor.h"
#include "fuzz.h"
#include "http.h"
#include "limit.h"

#define MAXT 16

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
    }
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
    switch (data[0] % 3) {
    case 0:
        tokens(text);
        break;
    case 1:
        rate(text);
        break;
    default:
        token_of(data + 1, size - 1);
        break;
    }
    return 0;
}
