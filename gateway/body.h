/* Request body formats: media types, base64 (JSON uploads) and multipart/form-data. Pure
 * functions over caller buffers; every length is checked against the buffer it indexes. */
#ifndef GW_BODY_H
#define GW_BODY_H

#include <stddef.h>
#include <stdint.h>

/* Writes the lower-cased media type of a Content-Type value ("image/jpeg"), without
 * parameters, into out. Returns 0 or PROTO_EINVAL (empty, too long). */
int gw_body_media_type(const char *content_type, char *out, size_t cap);

/* Finds parameter `name` (e.g. "boundary") of a Content-Type value, unquoted. 0 or
 * PROTO_EINVAL if absent, empty or over cap. */
int gw_body_param(const char *content_type, const char *name, char *out, size_t cap);

/* Decodes base64 (standard or url-safe alphabet, padding optional, no whitespace other than
 * a trailing newline, an optional "data:<type>;base64," prefix). out needs at least
 * gw_body_b64_max(len) bytes. Returns 0 and *outlen, or PROTO_EINVAL on any bad character,
 * misplaced padding or an impossible length. */
size_t gw_body_b64_max(size_t len);
int gw_body_b64_decode(const char *in, size_t len, uint8_t *out, size_t *outlen);

/* One part of a multipart body: views into the body. */
typedef struct {
    char name[128];
    char filename[256];
    char content_type[128];
    const uint8_t *data;
    size_t len;
} gw_part_t;

/* Calls cb for every part, in order. Returns the number of parts, or PROTO_EINVAL for a
 * malformed body (no opening or closing delimiter, a part without its header end, headers
 * over 8 KiB) or a negative value returned by cb (which stops the walk). */
typedef int (*gw_part_cb)(void *arg, const gw_part_t *part);
int gw_body_multipart(const uint8_t *body, size_t len, const char *boundary, gw_part_cb cb,
                      void *arg);

/* True if s[0..len) is well-formed UTF-8 (no overlong forms, surrogates or code points
 * above U+10FFFF) without NUL bytes. */
int gw_body_utf8_valid(const char *s, size_t len);

/* Replaces every byte of s[0..len) that is not part of well-formed UTF-8 with '?'. */
void gw_body_utf8_sanitize(char *s, size_t len);

#endif
