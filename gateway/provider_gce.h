/* The GCE provider's pure parts, exposed for unit tests: base64url and the RS256 JWT a
 * service-account key signs for Google's token endpoint. The provider itself is
 * gw_provider_gce_create (provider.h). Pure functions, any thread. */
#ifndef GW_PROVIDER_GCE_H
#define GW_PROVIDER_GCE_H

#include <stddef.h>

/* base64url without padding (RFC 7515 §2) of in[0..len) into out; returns the length, or -1
 * if it does not fit in cap. */
int gw_gce_b64url(const void *in, size_t len, char *out, size_t cap);

/* RSASSA-PKCS1-v1_5 with SHA-256 (JWS RS256) of the NUL-terminated input with the PEM
 * private key (PKCS#8 or PKCS#1), as base64url into out. 0, PROTO_EINVAL (not an RSA key,
 * or signing failed) or PROTO_ENOSPC. */
int gw_gce_rs256(const char *key_pem, const char *input, char *out, size_t cap);

/* The signed JWT of Google's service-account flow: header {"alg":"RS256","typ":"JWT"} (with
 * "kid" when kid is not empty), claims {"iss","scope","aud","exp" = iat + 3600,"iat"} in
 * that order. 0 or a code of gw_gce_rs256. */
int gw_gce_jwt(const char *key_pem, const char *kid, const char *iss, const char *scope,
               const char *aud, long long iat, char *out, size_t cap);

#endif
