/* AWS Signature Version 4 (header form) on mbedTLS: the canonical request, the string to sign
 * and the Authorization header value for one HTTP request. It knows nothing about S3 or EC2:
 * the caller says which headers are signed, gives the payload's hash and, for S3, adds
 * x-amz-content-sha256 itself. Pure functions, no I/O, any thread; tested against the AWS
 * suite's vectors (tests/unit/test_gw_sigv4.c). */
#ifndef GW_SIGV4_H
#define GW_SIGV4_H

#include <stddef.h>
#include <time.h>

/* The hash of an empty payload (e3b0c442...b855). */
#define GW_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct {
    const char *name; /* any case; lower-cased, sorted and joined when signing */
    const char *value;
} gw_sigv4_header_t;

/* One request to sign. Every string is borrowed for the call only. */
typedef struct {
    const char *method;               /* "GET", "PUT", ... */
    const char *uri;                  /* canonical URI, already URI-encoded ("/bucket/a%20b.jpg") */
    const char *query;                /* the query as sent, its names and values already encoded
                                       * ("b=2&a=1", "lifecycle"); sorted here. "" or NULL = none */
    const gw_sigv4_header_t *headers; /* every header to sign; must include host and
                                       * x-amz-date (see gw_sigv4_amz_date) */
    size_t nheaders;
    const char *payload_sha256; /* lower-case hex; NULL = the empty payload's */
    const char *region;         /* "us-east-1" */
    const char *service;        /* "s3", "ec2", ... */
    const char *access_key;
    const char *secret_key;
    const char *amz_date; /* "YYYYMMDDTHHMMSSZ": the x-amz-date header's value */
} gw_sigv4_req_t;

/* Writes the Authorization header's value ("AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
 * Signature=...") into out. Returns 0, PROTO_ENOSPC if cap is too small, PROTO_EINVAL for a
 * missing field or a header name/value with a control character, PROTO_ETOOBIG over
 * GW_SIGV4_MAX_HEADERS headers. */
int gw_sigv4_authorization(const gw_sigv4_req_t *r, char *out, size_t cap);

#define GW_SIGV4_MAX_HEADERS 32

/* The canonical request and the string to sign, as gw_sigv4_authorization builds them
 * (exposed for tests and debugging). Same return values. */
int gw_sigv4_canonical_request(const gw_sigv4_req_t *r, char *out, size_t cap);
int gw_sigv4_string_to_sign(const gw_sigv4_req_t *r, char *out, size_t cap);

/* SHA-256 of data as 64 lower-case hex digits and a NUL. */
void gw_sigv4_sha256_hex(const void *data, size_t len, char out[65]);

/* t (UTC) as "YYYYMMDDTHHMMSSZ" (16 characters and a NUL). */
void gw_sigv4_amz_date(time_t t, char out[17]);

/* URI-encodes in[0..len) the SigV4 way: unreserved characters (A-Z a-z 0-9 - _ . ~) as they
 * are, '/' too when keep_slash, every other byte %XX with upper-case hex. Returns the
 * length written (NUL added), or -1 if it does not fit in cap. */
int gw_sigv4_uri_encode(const char *in, size_t len, int keep_slash, char *out, size_t cap);

#endif
