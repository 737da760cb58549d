/* Who may do what: the token table (tokens_file) and the roles a route allows.
 *
 * The file holds `TOKEN ROLE [NAME] [cameras=LIST]` lines ('#' comments, blank lines
 * skipped); ROLE is camera, viewer or admin; NAME (default ROLE-LINE) labels the token's
 * metrics. A camera token is bound to the cameras it speaks for: LIST is comma-separated
 * names of [A-Za-z0-9_.-] (not starting with '.'), a name ending in '*' stands for every
 * camera whose name starts with what precedes it, and '*' alone for any camera; without
 * cameras= the camera is NAME (so a camera token needs one or the other). Every route that
 * takes a camera checks it: the '*' of a GW_ALLOW_OWN_CAMERA route here, a camera in the
 * query or body in its handler (frontdoor.h's gw_frontdoor_camera).
 *
 * Only the SHA-256 of each token is kept, and a presented token — right, wrong, of any
 * length, or none — is hashed and compared with every entry in full, with no early exit, so
 * a wrong token costs the time of a right one (gw_auth_compared counts the bytes compared,
 * for tests). The table is a plain value replaced as a whole on reload: a file that does not
 * parse leaves the previous one in force. Loop thread. */
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
    /* a camera token may use the route when the route's '*' is one of its cameras */
    GW_ALLOW_OWN_CAMERA = 1u << 3,
    /* with GW_ALLOW_OWN_CAMERA: the '*' is a stored object's key, whose first segment is the
     * camera (storage.h's keys: CAMERA/YYYY/...) */
    GW_OWN_CAMERA_KEY = 1u << 4,
};

#define GW_AUTH_MAX_TOKENS 4096
#define GW_AUTH_TOKEN_MIN 8
#define GW_AUTH_TOKEN_MAX 256
#define GW_AUTH_NAME_MAX 64
#define GW_AUTH_CAMERAS_MAX 256 /* a camera token's LIST, NUL included */

typedef struct {
    uint8_t hash[32]; /* SHA-256 of the token */
    unsigned role;    /* one GW_ROLE_* */
    char name[GW_AUTH_NAME_MAX];
    /* camera: the cameras it speaks for ("door1", "door1,yard-*", "*" = any); "" for the
     * other roles (not bound to cameras) */
    char cameras[GW_AUTH_CAMERAS_MAX];
} gw_token_t;

typedef struct gw_auth gw_auth_t;

/* Reads `path` ("" = no tokens: every route open). 0, or PROTO_ECONFIG with "FILE:LINE: why"
 * in err. */
int gw_auth_create(gw_auth_t **out, const char *path, char *err, size_t errcap);
void gw_auth_destroy(gw_auth_t *a);

/* A table from `text` (gw_auth_parse's syntax) with no file behind it, never reloaded: for
 * tests and fuzzing. 0, or PROTO_ECONFIG with "LINE: why" in err, or PROTO_ENOMEM. */
int gw_auth_create_text(gw_auth_t **out, const char *text, char *err, size_t errcap);

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
 * PROTO_EUNAUTHORIZED (no token, or not one of ours) or PROTO_EFORBIDDEN (its role may not,
 * or the camera is not one of its own; *who is then set too). *who points into the table:
 * valid until the next reload (copy what must outlive it). Not const: it counts the bytes
 * compared. */
int gw_auth_check(gw_auth_t *a, const char *token, size_t len, unsigned allow, const char *param,
                  size_t param_len, const gw_token_t **who);

/* 1 when `camera` (len bytes; len 0 = the request names none) is one of `list`'s (a
 * gw_token_t.cameras): "" (a token not bound to cameras) and "*" match any camera and none;
 * "pre*" a name that starts with "pre"; any other item the same name exactly. 0 otherwise. */
int gw_auth_camera_ok(const char *list, const char *camera, size_t len);

/* Bytes of token digests compared by gw_auth_check since create: n_tokens x 32 per call
 * that reaches the table, whatever the token. For tests (no timing in unit tests). */
uint64_t gw_auth_compared(const gw_auth_t *a);

/* Parses a token file's text into tokens[0..max); the number, or PROTO_ECONFIG with
 * "LINE: why" in err. For tests and the reloader. Every camera token has a non-empty
 * `cameras`; the other roles an empty one. */
int gw_auth_parse(const char *text, gw_token_t *tokens, int max, char *err, size_t errcap);

/* The role's name ("camera", ...), or "?". */
const char *gw_role_name(unsigned role);

#endif
