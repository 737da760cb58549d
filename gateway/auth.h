/* Who may do what: the token table (tokens_file) and the roles a route allows.
 *
 * The file holds `TOKEN ROLE [NAME]` lines ('#' comments, blank lines skipped); ROLE is
 * camera, viewer or admin; NAME (default ROLE-LINE) labels the token's metrics and, for a
 * camera, is the camera it speaks for (the routes that take GW_ALLOW_OWN_CAMERA). Only the
 * SHA-256 of each token is kept, and a presented token is compared with every entry with no
 * early exit, so a wrong token costs the time of a right one. The table is a plain value
 * replaced as a whole on reload: a file that does not parse leaves the previous one in
 * force. Loop thread. */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Roles, and what gw_route_t.allow holds: a mask of the roles that may use a route. 0 means
 * public (no token asked). Admin may use every route. */
enum {
    GW_ROLE_CAMERA = 1u << 0,
    GW_ROLE_VIEWER = 1u << 1,
    GW_ROLE_ADMIN = 1u << 2,
    /* a camera token may use the route when the route's '*' is its own name */
    GW_ALLOW_OWN_CAMERA = 1u << 3,
};

#define GW_AUTH_MAX_TOKENS 4096
#define GW_AUTH_TOKEN_MIN 8
#define GW_AUTH_TOKEN_MAX 256
#define GW_AUTH_NAME_MAX 64

typedef struct {
    uint8_t hash[32]; /* SHA-256 of the token */
    unsigned role;    /* one GW_ROLE_* */
    char name[GW_AUTH_NAME_MAX];
} gw_token_t;

typedef struct gw_auth gw_auth_t;

/* Reads `path` ("" = no tokens: every route open). 0, or PROTO_ECONFIG with "FILE:LINE: why"
 * in err. */
int gw_auth_create(gw_auth_t **out, const char *path, char *err, size_t errcap);
void gw_auth_destroy(gw_auth_t *a);

/* Re-reads the file if its mtime, size or inode changed (force: in any case). Returns 1 when
 * a new table is in force, 0 when nothing changed, or PROTO_ECONFIG with the reason in err
 * (the previous table stays). */
int gw_auth_reload(gw_auth_t *a, int force, char *err, size_t errcap);

/* 1 when no tokens_file is configured (every route open). */
int gw_auth_open(const gw_auth_t *a);

/* Tokens in force. */
int gw_auth_count(const gw_auth_t *a);

/* Decides whether `token` (len bytes; NULL or len 0 when the request had none) may use a
 * route that allows `allow` (see above); `param` is what the route's '*' matched (NULL if
 * none). 0 (then *who is the token's entry, or NULL on a public route or when open), or
 * PROTO_EUNAUTHORIZED (no token, or not one of ours) or PROTO_EFORBIDDEN (its role may not).
 * *who points into the table: valid until the next reload. */
int gw_auth_check(const gw_auth_t *a, const char *token, size_t len, unsigned allow,
                  const char *param, size_t param_len, const gw_token_t **who);

/* Parses a token file's text into tokens[0..max); the number, or PROTO_ECONFIG with
 * "LINE: why" in err. For tests and the reloader. */
int gw_auth_parse(const char *text, gw_token_t *tokens, int max, char *err, size_t errcap);

/* The role's name ("camera", ...), or "?". */
const char *gw_role_name(unsigned role);

#endif
