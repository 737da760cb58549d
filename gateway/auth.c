/* The token table (see auth.h). */
#include "auth.h"

#include <mbedtls/sha256.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "err.h"
#include "msg.h"

#define FILE_MAX (1u << 20)

struct gw_auth {
    char path[1024];
    int open;
    gw_token_t *tokens;
    int n;
    struct stat st;    /* of the file read last */
    uint64_t compared; /* bytes of digests compared (gw_auth_compared) */
};

const char *gw_role_name(unsigned role)
{
    switch (role) {
    case GW_ROLE_CAMERA:
        return "camera";
    case GW_ROLE_VIEWER:
        return "viewer";
    case GW_ROLE_ADMIN:
        return "admin";
    default:
        return "?";
    }
}

static unsigned role_of(const char *s, size_t n)
{
    static const unsigned roles[] = {GW_ROLE_CAMERA, GW_ROLE_VIEWER, GW_ROLE_ADMIN};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        const char *name = gw_role_name(roles[i]);
        if (strlen(name) == n && memcmp(name, s, n) == 0)
            return roles[i];
    }
    return 0;
}

static void sha256(const void *data, size_t len, uint8_t out[32])
{
    mbedtls_sha256_ret(data, len, out, 0);
}

/* Splits the next space-separated word of *s (within one line) off; its length, 0 at the
 * line's end. */
static size_t word(const char **s, const char **w)
{
    while (**s == ' ' || **s == '\t' || **s == '\r')
        (*s)++;
    *w = *s;
    while (**s != '\0' && **s != '\n' && **s != ' ' && **s != '\t' && **s != '\r')
        (*s)++;
    return (size_t)(*s - *w);
}

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* A cameras= LIST: items of name characters not starting with '.' (storage.c writes a
 * leading '.' as '_': the key's first segment would not be the name), each optionally
 * ending in '*', or '*' alone; no empty item. 1 when well-formed. */
static int cameras_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i <= n) {
        size_t e = i;
        while (e < n && s[e] != ',')
            e++;
        size_t len = e - i, k;
        if (len == 0 || len > PROTO_CAMERA_MAX || s[i] == '.')
            return 0;
        for (k = i; k < e && name_char(s[k]); k++)
            ;
        if (k != e && !(k == e - 1 && s[k] == '*'))
            return 0;
        i = e + 1;
    }
    return 1;
}

int gw_auth_parse(const char *text, gw_token_t *tokens, int max, char *err, size_t errcap)
{
    int n = 0, line = 0;
    const char *s = text;
    while (*s != '\0') {
        line++;
        const char *tok, *role, *w[3];
        size_t tl = word(&s, &tok);
        if (tl == 0 || tok[0] == '#') {
            s += strcspn(s, "\n");
            if (*s == '\n')
                s++;
            continue;
        }
        size_t rl = word(&s, &role), wl[3];
        for (int i = 0; i < 3; i++)
            wl[i] = word(&s, &w[i]);
        s += strcspn(s, "\n");
        if (*s == '\n')
            s++;
        /* what follows the role: [NAME] [cameras=LIST] [# comment] */
        const char *name = "", *cams = NULL;
        size_t nl = 0, cl = 0;
        int i = 0, comment = 0;
        for (int k = 0; k < 3; k++) {
            comment |= wl[k] > 0 && w[k][0] == '#';
            if (comment)
                wl[k] = 0;
        }
        if (wl[i] > 0 && strncmp(w[i], "cameras=", 8) != 0)
            name = w[i], nl = wl[i], i++;
        if (wl[i] > 0 && strncmp(w[i], "cameras=", 8) == 0)
            cams = w[i] + 8, cl = wl[i] - 8, i++;
        unsigned r = role_of(role, rl);
        if (rl == 0 || r == 0) {
            snprintf(err, errcap,
                     "%d: the role must be camera, viewer or admin (TOKEN ROLE "
                     "[NAME] [cameras=LIST])",
                     line);
            return PROTO_ECONFIG;
        }
        if (tl < GW_AUTH_TOKEN_MIN || tl > GW_AUTH_TOKEN_MAX) {
            snprintf(err, errcap, "%d: a token has %d to %d characters", line, GW_AUTH_TOKEN_MIN,
                     GW_AUTH_TOKEN_MAX);
            return PROTO_ECONFIG;
        }
        if (i < 3 && wl[i] > 0) {
            snprintf(err, errcap, "%d: more than TOKEN ROLE [NAME] [cameras=LIST]", line);
            return PROTO_ECONFIG;
        }
        size_t ok = 0;
        while (ok < nl && name_char(name[ok]))
            ok++;
        if (nl >= GW_AUTH_NAME_MAX || ok < nl) {
            snprintf(err, errcap, "%d: a name has at most %d of [A-Za-z0-9_.-]", line,
                     GW_AUTH_NAME_MAX - 1);
            return PROTO_ECONFIG;
        }
        if (cams != NULL && r != GW_ROLE_CAMERA) {
            snprintf(err, errcap, "%d: cameras= binds camera tokens only", line);
            return PROTO_ECONFIG;
        }
        if (r == GW_ROLE_CAMERA && cams == NULL) {
            if (nl == 0) {
                snprintf(err, errcap,
                         "%d: a camera token names the camera(s) it speaks for: TOKEN camera "
                         "NAME, or cameras=A,B,PREFIX* ('*' = any camera)",
                         line);
                return PROTO_ECONFIG;
            }
            cams = name, cl = nl;
        }
        if (cams != NULL && (cl >= GW_AUTH_CAMERAS_MAX || !cameras_valid(cams, cl))) {
            snprintf(err, errcap,
                     "%d: cameras are comma-separated names of [A-Za-z0-9_.-] (not starting "
                     "with '.'), each may end in '*' (a prefix), or '*' alone; at most %d bytes",
                     line, GW_AUTH_CAMERAS_MAX - 1);
            return PROTO_ECONFIG;
        }
        if (n == max) {
            snprintf(err, errcap, "%d: more than %d tokens", line, max);
            return PROTO_ECONFIG;
        }
        gw_token_t *t = &tokens[n];
        sha256(tok, tl, t->hash);
        t->role = r;
        if (nl > 0)
            snprintf(t->name, sizeof t->name, "%.*s", (int)nl, name);
        else
            snprintf(t->name, sizeof t->name, "%s-%d", gw_role_name(r), line);
        snprintf(t->cameras, sizeof t->cameras, "%.*s", (int)cl, cams != NULL ? cams : "");
        for (int j = 0; j < n; j++)
            if (memcmp(tokens[j].hash, t->hash, 32) == 0) {
                snprintf(err, errcap, "%d: the same token as %s", line, tokens[j].name);
                return PROTO_ECONFIG;
            }
        n++;
    }
    return n;
}

/* Reads and parses the file into a new table; on success it replaces a's. */
static int load(gw_auth_t *a, const struct stat *st, char *err, size_t errcap)
{
    if (st->st_size > (off_t)FILE_MAX) {
        snprintf(err, errcap, "%s: over %u bytes", a->path, FILE_MAX);
        return PROTO_ECONFIG;
    }
    FILE *f = fopen(a->path, "r");
    char *text = malloc((size_t)st->st_size + 1);
    gw_token_t *t = calloc(GW_AUTH_MAX_TOKENS, sizeof *t);
    size_t len = 0;
    if (f != NULL && text != NULL)
        len = fread(text, 1, (size_t)st->st_size, f);
    if (f == NULL || text == NULL || t == NULL || (f != NULL && ferror(f))) {
        snprintf(err, errcap, "%s: cannot read it", a->path);
        if (f != NULL)
            fclose(f);
        free(text);
        free(t);
        return PROTO_ECONFIG;
    }
    fclose(f);
    text[len] = '\0';
    char why[256];
    int n = gw_auth_parse(text, t, GW_AUTH_MAX_TOKENS, why, sizeof why);
    memset(text, 0, len); /* the tokens themselves do not linger in freed memory */
    free(text);
    if (n < 0) {
        snprintf(err, errcap, "%s:%s", a->path, why);
        free(t);
        return PROTO_ECONFIG;
    }
    free(a->tokens);
    a->tokens = t;
    a->n = n;
    a->st = *st;
    return 0;
}

int gw_auth_create(gw_auth_t **out, const char *path, char *err, size_t errcap)
{
    gw_auth_t *a = calloc(1, sizeof *a);
    if (a == NULL)
        return PROTO_ENOMEM;
    a->open = path == NULL || path[0] == '\0';
    if (!a->open) {
        snprintf(a->path, sizeof a->path, "%s", path);
        struct stat st;
        int rv;
        if (stat(path, &st) != 0) {
            snprintf(err, errcap, "%s: no such file", path);
            free(a);
            return PROTO_ECONFIG;
        }
        if ((rv = load(a, &st, err, errcap)) != 0) {
            free(a);
            return rv;
        }
    }
    *out = a;
    return 0;
}

int gw_auth_create_text(gw_auth_t **out, const char *text, char *err, size_t errcap)
{
    gw_auth_t *a = calloc(1, sizeof *a);
    gw_token_t *t = calloc(GW_AUTH_MAX_TOKENS, sizeof *t);
    if (a == NULL || t == NULL) {
        free(a);
        free(t);
        return PROTO_ENOMEM;
    }
    int n = gw_auth_parse(text, t, GW_AUTH_MAX_TOKENS, err, errcap);
    if (n < 0) {
        free(a);
        free(t);
        return n;
    }
    a->tokens = t;
    a->n = n;
    *out = a;
    return 0;
}

void gw_auth_destroy(gw_auth_t *a)
{
    if (a == NULL)
        return;
    free(a->tokens);
    free(a);
}

int gw_auth_reload(gw_auth_t *a, int force, char *err, size_t errcap)
{
    struct stat st;
    if (a->open || a->path[0] == '\0')
        return 0; /* no file (gw_auth_create_text): nothing to re-read */
    if (stat(a->path, &st) != 0) {
        snprintf(err, errcap, "%s: gone; the previous tokens stay in force", a->path);
        return PROTO_ECONFIG;
    }
    if (!force && st.st_mtim.tv_sec == a->st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == a->st.st_mtim.tv_nsec && st.st_size == a->st.st_size &&
        st.st_ino == a->st.st_ino)
        return 0;
    int rv = load(a, &st, err, errcap);
    if (rv != 0) {
        a->st = st; /* said once per change, not at every check */
        return rv;
    }
    return 1;
}

int gw_auth_open(const gw_auth_t *a)
{
    return a->open;
}

int gw_auth_count(const gw_auth_t *a)
{
    return a->n;
}

uint64_t gw_auth_compared(const gw_auth_t *a)
{
    return a->compared;
}

int gw_auth_camera_ok(const char *list, const char *camera, size_t len)
{
    if (list[0] == '\0')
        return 1; /* not bound to cameras */
    const char *s = list;
    for (;;) {
        size_t n = strcspn(s, ",");
        if (n == 1 && s[0] == '*')
            return 1;
        if (n > 0 && s[n - 1] == '*') {
            if (len >= n - 1 && memcmp(camera, s, n - 1) == 0)
                return 1;
        } else if (n == len && len > 0 && memcmp(camera, s, n) == 0) {
            return 1;
        }
        if (s[n] == '\0')
            return 0;
        s += n + 1;
    }
}

/* The index of the entry whose digest is h, or -1. Every entry is compared in full and the
 * match is picked without a branch on the bytes, so the time depends on the table's size
 * only: a match in the first entry, in the last or in none cost the same. */
static int lookup(gw_auth_t *a, const uint8_t h[32])
{
    int found = -1;
    uint64_t compared = 0;
    for (int i = 0; i < a->n; i++) {
        volatile uint8_t diff = 0;
        for (int k = 0; k < 32; k++) {
            diff |= (uint8_t)(a->tokens[i].hash[k] ^ h[k]);
            compared++;
        }
        int eq = (int)(((unsigned)diff - 1u) >> 8 & 1u); /* 1 when diff == 0 */
        int mask = -eq;
        found = (found & ~mask) | (i & mask);
    }
    a->compared += compared;
    return found;
}

int gw_auth_check(gw_auth_t *a, const char *token, size_t len, unsigned allow, const char *param,
                  size_t param_len, const gw_token_t **who)
{
    *who = NULL;
    if (a->open || allow == 0)
        return 0;
    /* No token, or one no entry can be, goes through the same hash and the same full scan
     * as any other: the time of a refusal says nothing about the table. */
    int present = token != NULL && len > 0 && len <= GW_AUTH_TOKEN_MAX;
    uint8_t h[32];
    sha256(present ? token : "", present ? len : 0, h);
    int found = lookup(a, h);
    if (!present || found < 0)
        return PROTO_EUNAUTHORIZED;
    const gw_token_t *t = &a->tokens[found];
    *who = t;
    if (t->role == GW_ROLE_ADMIN || (allow & t->role) != 0)
        return 0;
    if (t->role == GW_ROLE_CAMERA && (allow & GW_ALLOW_OWN_CAMERA) && param != NULL &&
        param_len > 0) {
        if (allow & GW_OWN_CAMERA_KEY) { /* CAMERA/YYYY/...: the first segment */
            const char *slash = memchr(param, '/', param_len);
            if (slash == NULL)
                return PROTO_EFORBIDDEN;
            param_len = (size_t)(slash - param);
        }
        if (param_len > 0 && gw_auth_camera_ok(t->cameras, param, param_len))
            return 0;
    }
    return PROTO_EFORBIDDEN;
}
